//! The alerter in a running pipeline, with paho-mqtt as the consumer of
//! `hvac/alerts/#` and a local HTTP receiver as the webhook.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::services::{wait_exit, Mosquitto, Subscriber, Twinflow};

/// A webhook receiver that answers 500 to the first request (to exercise
/// the retries) and 200 after, keeping every body.
fn webhook_receiver() -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/alerts", listener.local_addr().unwrap());
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let got = bodies.clone();
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(mut s) = stream else { continue };
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            let _ = r.read_exact(&mut body);
            let status = if n == 0 {
                "500 Internal Server Error"
            } else {
                "200 OK"
            };
            if n > 0 {
                if let Ok(v) = serde_json::from_slice(&body) {
                    got.lock().unwrap().push(v);
                }
            }
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
        }
    });
    (url, bodies)
}

#[test]
fn one_alert_when_it_goes_wrong_one_when_it_clears_and_no_storm() {
    let broker = Mosquitto::start();
    let sub = Subscriber::start(broker.port, &["hvac/alerts/#"]);
    let (url, hooks) = webhook_receiver();
    let state = tempfile::tempdir().unwrap();
    let tf = Twinflow::spawn(
        &["run", "tests/pipelines/alerts.yaml"],
        &[
            ("MQTT_URL", &broker.url()),
            ("WEBHOOK_URL", &url),
            ("STATE_DIR", &state.path().display().to_string()),
        ],
    );
    let mut child = tf.child;
    assert_eq!(wait_exit(&mut child, Duration::from_secs(120)), 0);

    let alerts = sub.wait_until(Duration::from_secs(60), "three alert messages", |m| {
        m.len() >= 3
    });
    let of = |unit: &str| -> Vec<(String, String)> {
        alerts
            .iter()
            .filter(|m| m["payload"]["unit"] == unit)
            .map(|m| {
                (
                    m["topic"].as_str().unwrap().to_string(),
                    m["payload"]["state"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    assert_eq!(
        of("uc-steady"),
        vec![
            ("hvac/alerts/warning".to_string(), "firing".to_string()),
            ("hvac/alerts/warning".to_string(), "resolved".to_string()),
        ],
        "one alert when the air got hot, one when it cooled"
    );
    // uc-flap hovers at 27 ± 0.1 °C for two hours, crossing 27 constantly:
    // never 60 s above (the first rule stays quiet), and the second rule
    // fires once and holds, as it never falls below its clearing threshold.
    assert_eq!(
        of("uc-flap"),
        vec![("hvac/alerts/info".to_string(), "firing".to_string())]
    );
    let first = &alerts
        .iter()
        .find(|m| m["payload"]["unit"] == "uc-steady")
        .unwrap()["payload"];
    assert_eq!(first["code"], "THRESHOLD");
    assert_eq!(first["key"], "return_air_hot");
    assert!(first["details"]["value"].as_f64().unwrap() > 27.0);

    // The webhook got every announcement, despite failing the first time.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while hooks.lock().unwrap().len() < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(hooks.lock().unwrap().len(), 3);

    // The active alert was kept for the next start.
    let saved = std::fs::read_to_string(state.path().join("alerts.json")).unwrap();
    assert!(
        saved.contains("uc-flap") && !saved.contains("uc-steady"),
        "{saved}"
    );
}

#[test]
fn input_drift_raises_one_drift_alert_and_one_resolution() {
    let broker = Mosquitto::start();
    let sub = Subscriber::start(broker.port, &["hvac/alerts/#"]);
    let state = tempfile::tempdir().unwrap();
    let tf = Twinflow::spawn(
        &["run", "tests/pipelines/drift_alerts.yaml"],
        &[
            ("MQTT_URL", &broker.url()),
            ("STATE_DIR", &state.path().display().to_string()),
        ],
    );
    let mut child = tf.child;
    assert_eq!(wait_exit(&mut child, Duration::from_secs(120)), 0);
    let alerts = sub.wait_until(Duration::from_secs(60), "two drift alerts", |m| {
        m.len() >= 2
    });
    let got: Vec<(String, String)> = alerts
        .iter()
        .map(|m| {
            (
                m["payload"]["code"].as_str().unwrap().to_string(),
                m["payload"]["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("DRIFT_DETECTED".to_string(), "firing".to_string()),
            ("DRIFT_DETECTED".to_string(), "resolved".to_string()),
        ]
    );
    // The reports say when: drifting only while the air was warmer.
    let reports: Vec<serde_json::Value> =
        std::fs::read_to_string(state.path().join("reports.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    assert!(reports.len() > 50, "{} reports", reports.len());
    let fired = alerts[0]["payload"]["ts"].as_str().unwrap();
    let resolved = alerts[1]["payload"]["ts"].as_str().unwrap();
    assert!(
        fired > "2026-06-01T01:00:00Z" && fired < "2026-06-01T01:30:00Z",
        "fired at {fired}"
    );
    assert!(
        resolved > "2026-06-01T02:30:00Z" && resolved < "2026-06-01T03:00:00Z",
        "resolved at {resolved}"
    );
    for r in &reports {
        let ts = r["ts"].as_str().unwrap();
        if ts < "2026-06-01T01:00:00Z" {
            assert_eq!(
                r["summary"]["overall_status"], "STABLE",
                "no false alarm at {ts}: {r}"
            );
        }
    }
    let d = &reports
        .iter()
        .find(|r| r["summary"]["overall_status"] != "STABLE")
        .unwrap();
    assert_ne!(d["features"]["UCAIT"]["status"], "STABLE");
    assert_eq!(
        d["features"]["UCWF"]["status"], "STABLE",
        "only the drifted input drifts"
    );
    // The learned reference is kept for the next start.
    assert!(state.path().join("drift.json").exists());
}
