//! MQTT end to end against a real Mosquitto, with paho-mqtt (Python) as the
//! field devices and the consumers: throughput without loss, bad payloads,
//! a broker restart and a `kill -9` of twinflow in the middle of a stream.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::metric_value;
use common::services::{publish, publish_in_background, Mosquitto, Subscriber, Twinflow};

const LONG: Duration = Duration::from_secs(120);

fn run_pipeline(broker: &Mosquitto) -> Twinflow {
    run_pipeline_with(broker, "3.1.1")
}

fn run_pipeline_with(broker: &Mosquitto, protocol: &str) -> Twinflow {
    Twinflow::spawn(
        &["run", "tests/pipelines/mqtt_e2e.yaml"],
        &[("MQTT_URL", &broker.url()), ("MQTT_PROTOCOL", protocol)],
    )
}

/// The distinct readings predicted, as (unit, ts).
fn predicted(sub: &Subscriber) -> BTreeSet<(String, String)> {
    sub.on("hvac/predictions/results")
        .iter()
        .map(|m| {
            let p = &m["payload"];
            (
                p["unit"].as_str().unwrap_or_default().to_string(),
                p["ts"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn wait_predicted(sub: &Subscriber, n: usize) -> BTreeSet<(String, String)> {
    sub.wait_until(LONG, &format!("{n} distinct predictions"), |_| {
        predicted(sub).len() >= n
    });
    predicted(sub)
}

#[test]
fn thousands_of_readings_in_the_same_number_of_predictions_out() {
    let broker = Mosquitto::start();
    let sub = Subscriber::start(broker.port, &["hvac/#"]);
    let tf = run_pipeline(&broker);
    sub.wait_until(LONG, "the online status", |m| {
        m.iter()
            .any(|m| m["topic"] == "hvac/status" && m["payload"]["status"] == "online")
    });

    publish(broker.port, &["--count", "5000", "--units", "4"]);
    let got = wait_predicted(&sub, 5000);
    assert_eq!(got.len(), 5000);
    let all = sub.on("hvac/predictions/results");
    assert_eq!(all.len(), 5000, "no duplicates without failures");
    // Units come from the payload or from the topic level.
    let units: BTreeSet<_> = got.iter().map(|(u, _)| u.clone()).collect();
    assert_eq!(units.len(), 4, "{units:?}");
    let p = &all[0]["payload"];
    assert!(p["Q_thermal"].as_f64().unwrap().is_finite());
    assert_eq!(p["model"], "physics@1");

    let text = tf.metrics();
    assert_eq!(
        metric_value(
            &text,
            "twinflow_component_received_events_total",
            &["component_id=\"sensors\""]
        ),
        Some(5000.0)
    );
    assert_eq!(
        metric_value(
            &text,
            "twinflow_mqtt_connected",
            &["component_id=\"sensors\""]
        ),
        Some(1.0)
    );
    assert_eq!(tf.terminate(Duration::from_secs(30)), 0);
    // A clean stop says so on the retained status topic.
    sub.wait_until(LONG, "the offline status", |m| {
        m.iter()
            .any(|m| m["topic"] == "hvac/status" && m["payload"]["status"] == "offline")
    });
}

#[test]
fn bad_payloads_are_dead_lettered_with_their_reason_and_the_stream_goes_on() {
    let broker = Mosquitto::start();
    let sub = Subscriber::start(broker.port, &["hvac/deadletter", "hvac/predictions/#"]);
    let tf = run_pipeline(&broker);
    let good = r#"{"unit":"uc-09","ts":"2026-12-04T10:00:00Z","UCWIT":7.5,"UCAIT":25.0,"UCWF":15.0,"UCAIH":50.0,"AMBT":22.0,"UCTSP":21.0}"#;
    let huge = format!(r#"{{"unit":"uc-09","pad":"{}"}}"#, "x".repeat(4000));
    let cases: Vec<(String, &str)> = vec![
        ("this is not json".into(), "not_json"),
        (
            r#"{"unit":"uc-09","ts":"2026-12-04T10:00:00Z","UCWIT":7.5}"#.into(),
            "missing_field",
        ),
        (
            good.replace("\"UCTSP\":21.0", "\"UCTSP\":21.0,\"EXTRA\":1"),
            "unknown_field",
        ),
        (
            good.replace("\"UCWF\":15.0", "\"UCWF\":\"fifteen\""),
            "not_a_number",
        ),
        (good.replace("\"UCWF\":15.0", "\"UCWF\":NaN"), "not_json"),
        (
            good.replace("\"UCWF\":15.0", "\"UCWF\":Infinity"),
            "not_json",
        ),
        (huge, "too_large"),
        (
            good.replace(
                "\"UCWF\":15.0",
                "\"UCWF\":{\"value\":15,\"unit\":\"barrels/day\"}",
            ),
            "unknown_unit",
        ),
        (
            good.replace("\"UCWF\":15.0", "\"UCWF\":-3"),
            "input_out_of_range",
        ),
    ];
    for (payload, _) in &cases {
        publish(broker.port, &["--raw", "hvac/sensors/data", payload]);
    }
    // The stream goes on: a good reading after all the bad ones is predicted.
    publish(broker.port, &["--raw", "hvac/sensors/data", good]);
    sub.wait_until(LONG, "the good reading's prediction", |m| {
        m.iter().any(|m| m["topic"] == "hvac/predictions/results")
    });
    let dead = sub.wait_until(LONG, "every dead letter", |m| {
        m.iter().filter(|m| m["topic"] == "hvac/deadletter").count() >= cases.len()
    });
    let reasons: Vec<&str> = dead
        .iter()
        .filter(|m| m["topic"] == "hvac/deadletter")
        .map(|m| m["payload"]["reason"].as_str().unwrap())
        .collect();
    let expected: Vec<&str> = cases.iter().map(|(_, r)| *r).collect();
    assert_eq!(
        reasons, expected,
        "one dead letter per bad payload, in order"
    );
    for m in dead.iter().filter(|m| m["topic"] == "hvac/deadletter") {
        let p = &m["payload"];
        assert!(!p["error"].as_str().unwrap().is_empty());
        if p["component"] == "sensors" {
            assert_eq!(p["payload"]["topic"], "hvac/sensors/data");
            assert!(
                p["payload"]["payload"].as_str().unwrap().len() <= 1024,
                "truncated"
            );
        } else {
            assert_eq!(p["component"], "predict", "{p}");
        }
    }
    let text = tf.metrics();
    let mut by_reason: BTreeMap<&str, f64> = BTreeMap::new();
    for r in &expected {
        *by_reason.entry(r).or_default() += 1.0;
    }
    for (r, n) in by_reason {
        assert_eq!(
            metric_value(
                &text,
                "twinflow_dead_letters_total",
                &[&format!("reason=\"{r}\"")]
            ),
            Some(n),
            "{r}"
        );
    }
    assert_eq!(tf.terminate(Duration::from_secs(30)), 0);
}

#[test]
fn a_broker_restart_mid_stream_loses_nothing() {
    let mut broker = Mosquitto::start();
    let sub = Subscriber::start(broker.port, &["hvac/predictions/#"]);
    let tf = run_pipeline(&broker);
    let mut pubr = publish_in_background(
        broker.port,
        &[
            "--count",
            "3000",
            "--rate",
            "1000",
            "--client-id",
            "restart-pub",
        ],
    );
    sub.wait_until(LONG, "a first part of the stream", |m| m.len() >= 500);
    broker.restart();
    assert!(
        pubr.wait().unwrap().success(),
        "the publisher delivered everything"
    );
    let got = wait_predicted(&sub, 3000);
    assert_eq!(got.len(), 3000);
    let text = tf.metrics();
    assert!(
        metric_value(
            &text,
            "twinflow_mqtt_reconnects_total",
            &["component_id=\"sensors\""]
        )
        .unwrap()
            >= 1.0,
        "the restart was seen"
    );
    assert_eq!(tf.terminate(Duration::from_secs(30)), 0);
}

#[test]
fn kill_9_of_twinflow_mid_stream_loses_nothing() {
    kill_9_mid_stream("3.1.1");
}

#[test]
fn mqtt5_kill_9_of_twinflow_mid_stream_loses_nothing() {
    kill_9_mid_stream("5");
}

fn kill_9_mid_stream(protocol: &str) {
    let broker = Mosquitto::start();
    let sub = Subscriber::start(broker.port, &["hvac/predictions/#", "hvac/status"]);
    let tf = run_pipeline_with(&broker, protocol);
    sub.wait_until(LONG, "online", |m| {
        m.iter().any(|m| m["payload"]["status"] == "online")
    });
    // Mosquitto logs each client's protocol: p2 is 3.1.1, p5 is MQTT 5.
    let level = if protocol == "5" { "p5" } else { "p2" };
    let expected = format!("as twinflow-e2e-ingest ({level}");
    let deadline = std::time::Instant::now() + LONG;
    while !broker.log().contains(&expected) {
        assert!(
            std::time::Instant::now() < deadline,
            "twinflow did not connect with MQTT {protocol}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut pubr = publish_in_background(
        broker.port,
        &[
            "--count",
            "3000",
            "--rate",
            "1000",
            "--client-id",
            "kill-pub",
        ],
    );
    sub.wait_until(LONG, "a first part of the stream", |m| {
        m.iter()
            .filter(|m| m["topic"] == "hvac/predictions/results")
            .count()
            >= 500
    });
    tf.kill_9();
    // The broker publishes the last will at once.
    sub.wait_until(LONG, "the last will", |m| {
        m.iter().any(|m| m["payload"]["status"] == "offline")
    });
    assert!(pubr.wait().unwrap().success());
    // Restarted with the same client ids, it resumes its session: the
    // broker redelivers what was never acknowledged.
    let tf = run_pipeline_with(&broker, protocol);
    let got = wait_predicted(&sub, 3000);
    assert_eq!(got.len(), 3000, "every reading predicted at least once");
    assert_eq!(tf.terminate(Duration::from_secs(30)), 0);
}

fn openssl(dir: &std::path::Path, args: &[&str]) {
    let st = std::process::Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl");
    assert!(st.success(), "openssl {args:?}");
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate.
fn make_certs(dir: &std::path::Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-subj",
            "/CN=twinflow test CA",
        ],
    );
    for (name, san) in [
        ("server", "subjectAltName=IP:127.0.0.1"),
        ("client", "subjectAltName=DNS:twinflow"),
    ] {
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN={name}"),
            ],
        );
        std::fs::write(dir.join(format!("{name}.ext")), san).unwrap();
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-out",
                &format!("{name}.pem"),
                "-extfile",
                &format!("{name}.ext"),
            ],
        );
    }
    // Mosquitto drops to its own user: it must read these.
    for f in std::fs::read_dir(dir).unwrap() {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(f.unwrap().path(), std::fs::Permissions::from_mode(0o644));
    }
}

#[test]
fn publishes_over_tls_with_a_client_certificate_and_a_password() {
    let certs = tempfile::tempdir().unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(certs.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    make_certs(certs.path());
    let passwd = certs.path().join("passwd");
    let st = std::process::Command::new("mosquitto_passwd")
        .args(["-b", "-c"])
        .arg(&passwd)
        .args(["twinflow", "s3cret-for-tests"])
        .status()
        .unwrap();
    assert!(st.success());
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&passwd, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let tls_port = common::services::free_port();
    let d = certs.path().display();
    // The default listener stays plain and anonymous (for the test's
    // subscriber); the second one wants TLS, a client certificate and a password.
    let broker = Mosquitto::start_with(&format!(
        "per_listener_settings true\n\
         listener {tls_port} 127.0.0.1\ncafile {d}/ca.pem\ncertfile {d}/server.pem\nkeyfile {d}/server.key\n\
         require_certificate true\nallow_anonymous false\npassword_file {d}/passwd\n"
    ));
    let sub = Subscriber::start(broker.port, &["hvac/predictions/#"]);
    let tf = Twinflow::spawn(
        &["run", "tests/pipelines/mqtt_tls.yaml"],
        &[
            ("TLS_PORT", &tls_port.to_string()),
            ("CERTS", &d.to_string()),
            ("TEST_MQTT_PASSWORD", "s3cret-for-tests"),
        ],
    );
    let mut child = tf.child;
    let code = common::services::wait_exit(&mut child, Duration::from_secs(60));
    assert_eq!(
        code, 0,
        "the finite pipeline ends once everything is acknowledged"
    );
    let got = sub.wait_until(LONG, "50 predictions over TLS", |m| m.len() >= 50);
    assert_eq!(got.len(), 50);
}
