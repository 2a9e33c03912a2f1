//! `bacnet_poller` and `bacnet_writer` against bacpypes3 devices
//! (tests/support/bacnet_device.py) over BACnet/IP on loopback, unicast
//! only, with twinflow running as a child process; alerts checked with
//! paho-mqtt against Mosquitto.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::services::{
    bacnet_client, free_udp_port, BacnetDevice, Mosquitto, SimulatedBacnet, Subscriber, Twinflow,
};
use serde_json::{json, Value};

/// Lines of a JSON-lines file (none if it does not exist yet).
fn jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Polls `cond` until it holds, or panics with `what` after `within`.
fn wait_for(within: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn close(a: &Value, b: f64) -> bool {
    a.as_f64().is_some_and(|a| (a - b).abs() < 1e-3)
}

/// A pipeline: poll the device, predict, write predictions and dead letters
/// to files; `extra` nodes appended.
fn pipeline(dir: &Path, poller: &str, extra: &str) -> std::path::PathBuf {
    let yaml = format!(
        r#"
name: bacnet-test
dead_letter: dead
nodes:
  - id: poll
    type: bacnet_poller
    local: 127.0.0.1:0
{poller}
  - id: predict
    type: predictor
    inputs: [poll]
    model: {{kind: physics}}
  - id: out
    type: file
    inputs: [predict]
    path: {out}
    flush_interval_ms: 20
  - id: dead
    type: file
    inputs: []
    path: {dead}
    flush_interval_ms: 20
{extra}
"#,
        out = dir.join("predictions.jsonl").display(),
        dead = dir.join("dead.jsonl").display(),
    );
    let p = dir.join("pipeline.yaml");
    std::fs::write(&p, yaml).unwrap();
    p
}

fn device_block(unit: &str, port: u16, id: u32, more: &str) -> String {
    format!("      - {{unit: {unit}, address: \"127.0.0.1:{port}\", device_id: {id}{more}}}\n")
}

fn run(p: &Path) -> Twinflow {
    Twinflow::spawn(&["run", p.to_str().unwrap()], &[])
}

#[test]
fn polls_a_bacpypes3_device_converts_units_and_marks_faults() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_udp_port();
    // UCAIT in °F (77 °F = 25 °C): the poller reads the device's units and
    // converts.
    let mut dev = BacnetDevice::start(
        port,
        4001,
        &["--units-override", "analogInput:1=degreesFahrenheit"],
    );
    let poller = format!(
        "    interval: 200ms\n    timeout: 500ms\n    devices:\n{}",
        device_block("uc-07", port, 4001, "")
    );
    let p = pipeline(dir.path(), &poller, "");
    let tf = run(&p);
    let out = dir.path().join("predictions.jsonl");
    wait_for(Duration::from_secs(60), "predictions from BACnet", || {
        jsonl(&out).len() >= 3
    });
    let first = &jsonl(&out)[0];
    assert_eq!(first["unit"], "uc-07");
    let inputs = &first["inputs"];
    for (k, v) in [
        ("UCWIT", 7.5),
        ("UCAIT", 25.0),
        ("UCWF", 15.0),
        ("UCAIH", 50.0),
        ("AMBT", 22.0),
        ("UCTSP", 21.0),
    ] {
        assert!(close(&inputs[k], v), "{k}: {} (want {v})", inputs[k]);
    }

    // A changed value reaches the predictions.
    dev.control(json!({"set": "analogInput:0", "value": 8.25}));
    wait_for(Duration::from_secs(30), "UCWIT 8.25", || {
        jsonl(&out)
            .iter()
            .any(|p| close(&p["inputs"]["UCWIT"], 8.25))
    });

    // A point in fault is not predicted from: its frames are dead-lettered
    // with the reason, and counted.
    dev.control(json!({"set": "analogInput:2", "reliability": "communicationFailure"}));
    let dead = dir.path().join("dead.jsonl");
    wait_for(
        Duration::from_secs(30),
        "an input_fault dead letter",
        || jsonl(&dead).iter().any(|d| d["reason"] == "input_fault"),
    );
    let d = jsonl(&dead)
        .into_iter()
        .find(|d| d["reason"] == "input_fault")
        .unwrap();
    let text = d.to_string();
    assert!(
        text.contains("UCWF") && text.contains("communicationFailure"),
        "{text}"
    );
    let m = tf.metrics();
    assert!(
        common::metric_value(
            &m,
            "twinflow_bacnet_point_faults_total",
            &["reason=\"fault\""]
        )
        .unwrap()
            >= 1.0
    );
    assert_eq!(
        common::metric_value(&m, "twinflow_bacnet_device_online", &["device=\"4001\""]),
        Some(1.0)
    );
    assert!(
        common::metric_value(
            &m,
            "twinflow_bacnet_request_duration_seconds_count",
            &["service=\"rpm\""]
        )
        .unwrap()
            >= 3.0
    );
    // Out of service is marked too; back in service, predictions resume.
    dev.control(json!({"set": "analogInput:2", "reliability": "noFaultDetected"}));
    dev.control(json!({"set": "analogInput:3", "out_of_service": true}));
    wait_for(
        Duration::from_secs(30),
        "an out-of-service dead letter",
        || {
            jsonl(&dead)
                .iter()
                .any(|d| d.to_string().contains("out of service"))
        },
    );
    dev.control(json!({"set": "analogInput:3", "out_of_service": false}));
    let n = jsonl(&out).len();
    wait_for(Duration::from_secs(30), "predictions again", || {
        jsonl(&out).len() > n + 2
    });
    assert_eq!(tf.terminate(Duration::from_secs(30)), 0);
}

#[test]
fn falls_back_to_read_property_and_splits_for_a_small_max_apdu() {
    let dir = tempfile::tempdir().unwrap();
    let (p1, p2) = (free_udp_port(), free_udp_port());
    let mut no_rpm = BacnetDevice::start(p1, 4101, &["--no-rpm", "reject"]);
    let mut small = BacnetDevice::start(p2, 4102, &["--max-apdu", "128"]);
    let poller = format!(
        "    interval: 200ms\n    timeout: 500ms\n    devices:\n{}{}",
        device_block("uc-a", p1, 4101, ""),
        device_block("uc-b", p2, 4102, "")
    );
    let p = pipeline(dir.path(), &poller, "");
    let tf = run(&p);
    let out = dir.path().join("predictions.jsonl");
    let units = |u: &str| jsonl(&out).iter().filter(|p| p["unit"] == u).count();
    wait_for(Duration::from_secs(60), "predictions from both", || {
        units("uc-a") >= 3 && units("uc-b") >= 3
    });
    let m = tf.metrics();
    assert!(
        common::metric_value(
            &m,
            "twinflow_bacnet_request_duration_seconds_count",
            &["device=\"4101\"", "service=\"rp\""]
        )
        .unwrap()
            >= 3.0,
        "the RPM-less device is read with ReadProperty"
    );
    // The RPM-less device saw ReadProperty only (after the one rejected RPM).
    let s1 = no_rpm.control(json!({"stats": true}))["stats"].clone();
    assert!(s1["ReadPropertyRequest"].as_u64().unwrap() >= 27, "{s1}");
    assert!(
        s1["ReadPropertyMultipleRequest"].as_u64().unwrap_or(0) <= 2,
        "{s1}"
    );
    // 27 properties (9 points × value, flags, reliability) do not fit one
    // 128-octet answer: each poll is several RPMs, none aborted.
    let s2 = small.control(json!({"stats": true}))["stats"].clone();
    let rpm = s2["ReadPropertyMultipleRequest"].as_u64().unwrap();
    let polls = units("uc-b") as u64;
    assert!(rpm >= 3 * polls, "{rpm} RPMs for {polls} polls: {s2}");
    assert_eq!(tf.terminate(Duration::from_secs(30)), 0);
}

#[test]
fn a_dead_device_raises_device_offline_once_and_recovers() {
    let broker = Mosquitto::start();
    let sub = Subscriber::start(broker.port, &["hvac/alerts/#"]);
    let dir = tempfile::tempdir().unwrap();
    let (p1, p2) = (free_udp_port(), free_udp_port());
    let mut dying = BacnetDevice::start(p1, 4201, &[]);
    let _steady = BacnetDevice::start(p2, 4202, &[]);
    let poller = format!(
        "    interval: 200ms\n    timeout: 300ms\n    retries: 0\n    offline_after: 2\n    backoff_max: 1s\n    devices:\n{}{}",
        device_block("uc-dying", p1, 4201, ""),
        device_block("uc-steady", p2, 4202, "")
    );
    let extra = format!(
        r#"
  - id: events
    type: engine_events
  - id: alerts
    type: alerter
    inputs: [events]
  - id: mqtt
    type: mqtt_publish
    inputs: [alerts]
    broker: {{url: "mqtt://127.0.0.1:{}", client_id: tf-bacnet-offline}}
  - id: scada
    type: bacnet_writer
    inputs: [predict]
    local: 127.0.0.1:0
    timeout: 300ms
    retries: 0
    stale_after: 1s
    devices:
      - {{unit: uc-dying, address: "127.0.0.1:{p1}", device_id: 4201}}
"#,
        broker.port
    );
    let p = pipeline(dir.path(), &poller, &extra);
    let tf = run(&p);
    let out = dir.path().join("predictions.jsonl");
    let count = |u: &str| jsonl(&out).iter().filter(|p| p["unit"] == u).count();
    wait_for(Duration::from_secs(60), "both devices polled", || {
        count("uc-dying") >= 2 && count("uc-steady") >= 2
    });

    dying.kill();
    let offline = |m: &[Value]| {
        m.iter()
            .filter(|a| {
                a["payload"]["code"] == "DEVICE_OFFLINE" && a["payload"]["state"] == "firing"
            })
            .count()
    };
    sub.wait_until(Duration::from_secs(30), "DEVICE_OFFLINE", |m| {
        offline(m) >= 1
    });
    // The other device keeps flowing while this one is down, and the alert
    // is not repeated over several backoff rounds.
    let steady_before = count("uc-steady");
    wait_for(Duration::from_secs(30), "the steady device flowing", || {
        count("uc-steady") >= steady_before + 15
    });
    let msgs = sub.on("hvac/alerts/");
    let a = msgs
        .iter()
        .find(|a| a["payload"]["code"] == "DEVICE_OFFLINE")
        .unwrap();
    assert_eq!(a["topic"], "hvac/alerts/error");
    assert_eq!(a["payload"]["unit"], "uc-dying");
    assert_eq!(
        offline(&msgs),
        1,
        "one DEVICE_OFFLINE, not a storm: {msgs:?}"
    );
    assert_eq!(
        common::metric_value(
            &tf.metrics(),
            "twinflow_bacnet_device_online",
            &["device=\"4201\""]
        ),
        Some(0.0)
    );

    // The writer's attempt to give its slot back failed, and was counted.
    assert!(
        common::metric_value(
            &tf.metrics(),
            "twinflow_bacnet_writes_total",
            &["device=\"4201\"", "outcome=\"failed\""]
        )
        .unwrap()
            >= 1.0
    );

    // Back on the same port: the poller finds it by itself, and the writer
    // writes the predictions into the restarted controller again.
    let dying_before = count("uc-dying");
    let _back = BacnetDevice::start(p1, 4201, &[]);
    sub.wait_until(Duration::from_secs(30), "DEVICE_OFFLINE resolved", |m| {
        m.iter().any(|a| {
            a["payload"]["code"] == "DEVICE_OFFLINE" && a["payload"]["state"] == "resolved"
        })
    });
    wait_for(Duration::from_secs(30), "predictions again", || {
        count("uc-dying") > dying_before + 2
    });
    let msgs = sub.on("hvac/alerts/");
    assert_eq!(offline(&msgs), 1, "{msgs:?}");
    let target = format!("127.0.0.1:{p1}");
    wait_for(Duration::from_secs(30), "predictions written again", || {
        bacnet_client(&[
            "read",
            "--target",
            &target,
            "analogValue:0",
            "priority-array",
        ])[15]
            .is_number()
    });
    assert_eq!(
        common::metric_value(
            &tf.metrics(),
            "twinflow_bacnet_device_online",
            &["device=\"4201\""]
        ),
        Some(1.0)
    );
    assert_eq!(tf.terminate(Duration::from_secs(30)), 0);
}

#[test]
fn writes_predictions_at_priority_16_and_relinquishes() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_udp_port();
    let mut dev = BacnetDevice::start(port, 4301, &[]);
    let poller = format!(
        "    interval: 200ms\n    timeout: 500ms\n    devices:\n{}",
        device_block("uc-w", port, 4301, "")
    );
    // Only UCAOT and Q_thermal are configured: nothing else is written.
    let extra = format!(
        r#"
  - id: scada
    type: bacnet_writer
    inputs: [predict]
    local: 127.0.0.1:0
    verify: true
    stale_after: 2s
    refresh_every: 1s
    devices:
      - unit: uc-w
        address: "127.0.0.1:{port}"
        device_id: 4301
        points:
          UCAOT: {{object: "analogValue:0"}}
          Q_thermal: {{object: "analogValue:3", units: watts}}
"#
    );
    let p = pipeline(dir.path(), &poller, &extra);
    let tf = run(&p);
    let target = format!("127.0.0.1:{port}");
    let local = "127.0.0.1/32:0";
    let read = |obj: &str, prop: &str| {
        bacnet_client(&["read", "--local", local, "--target", &target, obj, prop])
    };
    let slot16 = |obj: &str| read(obj, "priority-array")[15].clone();
    wait_for(Duration::from_secs(60), "a written prediction", || {
        !slot16("analogValue:0").is_null()
    });
    let out = dir.path().join("predictions.jsonl");
    let last = jsonl(&out).last().cloned().unwrap();
    let written = slot16("analogValue:0").as_f64().unwrap();
    assert!(
        (written - last["UCAOT"].as_f64().unwrap()).abs() < 0.1,
        "{written} vs {}",
        last["UCAOT"]
    );
    // Q_thermal converted to the object's watts.
    let q = slot16("analogValue:3").as_f64().unwrap();
    assert!(
        (q - 1000.0 * last["Q_thermal"].as_f64().unwrap()).abs() < 100.0,
        "{q} W vs {} kW",
        last["Q_thermal"]
    );
    for unlisted in ["analogValue:1", "analogValue:2"] {
        let pa = read(unlisted, "priority-array");
        assert!(
            pa.as_array().unwrap().iter().all(Value::is_null),
            "{unlisted} must not be written: {pa}"
        );
    }
    let pv = read("analogValue:0", "present-value").as_f64().unwrap();
    assert!((pv - written).abs() < 1e-6);
    let m = tf.metrics();
    assert!(
        common::metric_value(&m, "twinflow_bacnet_writes_total", &["outcome=\"written\""]).unwrap()
            >= 2.0
    );
    assert_eq!(
        common::metric_value(
            &m,
            "twinflow_bacnet_writes_total",
            &["outcome=\"verify_failed\""]
        ),
        Some(0.0)
    );
    // The plant is steady: later predictions fall within the deadband.
    wait_for(
        Duration::from_secs(30),
        "a write skipped by the deadband",
        || {
            common::metric_value(
                &tf.metrics(),
                "twinflow_bacnet_writes_total",
                &["outcome=\"skipped_deadband\""],
            )
            .unwrap_or(0.0)
                >= 1.0
        },
    );

    // A controller that lost the value (as after its restart) gets it
    // again at the next refresh, though the prediction has not moved.
    bacnet_client(&[
        "write",
        "--target",
        &target,
        "analogValue:0",
        "present-value",
        "null",
        "--priority",
        "16",
    ]);
    wait_for(Duration::from_secs(30), "the slot refreshed", || {
        !slot16("analogValue:0").is_null()
    });

    // Predictions stop (an input in fault): after stale_after the writer
    // gives its slot back.
    dev.control(json!({"set": "analogInput:0", "reliability": "overRange"}));
    wait_for(
        Duration::from_secs(30),
        "the stale slot relinquished",
        || slot16("analogValue:0").is_null(),
    );
    // Predictions again: written again; at shutdown, relinquished.
    dev.control(json!({"set": "analogInput:0", "reliability": "noFaultDetected"}));
    wait_for(Duration::from_secs(30), "written again", || {
        !slot16("analogValue:0").is_null()
    });
    assert_eq!(tf.terminate(Duration::from_secs(30)), 0);
    assert!(
        slot16("analogValue:0").is_null(),
        "relinquished at shutdown"
    );
    assert!(
        slot16("analogValue:3").is_null(),
        "relinquished at shutdown"
    );
}

#[test]
fn follows_cov_and_renews_subscriptions() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_udp_port();
    let mut dev = BacnetDevice::start(port, 4401, &["--cov-increment", "0.01"]);
    // A long poll interval: a change arrives by COV long before a poll
    // would read it. Lifetime 4 s: renewed at 3.2 s.
    let poller = format!(
        "    interval: 100ms\n    timeout: 500ms\n    cov: {{lifetime: 4s, refresh: 60s}}\n    devices:\n{}",
        device_block("uc-c", port, 4401, "")
    );
    let p = pipeline(dir.path(), &poller, "");
    let tf = run(&p);
    let out = dir.path().join("predictions.jsonl");
    wait_for(Duration::from_secs(60), "a first prediction", || {
        !jsonl(&out).is_empty()
    });
    wait_for(Duration::from_secs(30), "subscriptions", || {
        dev.control(json!({"subscriptions": true}))["subscriptions"]
            .as_array()
            .is_some_and(|s| s.len() >= 9)
    });
    let reads_before = dev.control(json!({"stats": true}))["stats"]["ReadPropertyMultipleRequest"]
        .as_u64()
        .unwrap_or(0);
    dev.control(json!({"set": "analogInput:4", "value": 23.5}));
    wait_for(Duration::from_secs(30), "AMBT 23.5 by COV", || {
        jsonl(&out)
            .iter()
            .any(|p| close(&p["inputs"]["AMBT"], 23.5))
    });
    // Renewed before the 4 s lifetime ends: a subscription's time remaining
    // goes back up (the device drops one that runs out), and they are all
    // still there.
    let remaining = |dev: &mut BacnetDevice| -> Vec<u64> {
        dev.control(json!({"subscriptions": true}))["subscriptions"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| s["time_remaining"].as_u64())
            .collect()
    };
    let mut lowest = u64::MAX;
    wait_for(Duration::from_secs(30), "a renewal", || {
        let r = remaining(&mut dev);
        let min = r.iter().copied().min().unwrap_or(u64::MAX);
        let renewed = lowest <= 2 && min >= 3 && r.len() >= 9;
        lowest = lowest.min(min);
        renewed
    });
    dev.control(json!({"set": "analogInput:4", "value": 24.5}));
    wait_for(Duration::from_secs(30), "AMBT 24.5 by COV", || {
        jsonl(&out)
            .iter()
            .any(|p| close(&p["inputs"]["AMBT"], 24.5))
    });
    // Polls happened only for renewals (a full read each), not every 100 ms.
    let reads_after = dev.control(json!({"stats": true}))["stats"]["ReadPropertyMultipleRequest"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        reads_after - reads_before < 20,
        "{} RPMs while following COV",
        reads_after - reads_before
    );
    assert_eq!(tf.terminate(Duration::from_secs(30)), 0);
}

#[test]
fn the_shipped_bacnet_scada_pipeline_runs_against_twinflow_simulate() {
    // pipelines/bacnet-scada.yaml as its header says: `twinflow simulate
    // --bacnet` as the controller, the device from the environment.
    let sim = SimulatedBacnet::start(2345, 1, &["--rate-hz", "5"]);
    let target = sim.target(0);
    let tf = Twinflow::spawn(
        &["run", "pipelines/bacnet-scada.yaml"],
        &[
            ("TWINFLOW_BACNET_DEVICE", target.as_str()),
            ("TWINFLOW_BACNET_DEVICE_ID", "2345"),
        ],
    );
    let slot16 = |obj: &str| {
        bacnet_client(&["read", "--target", &target, obj, "priority-array"])[15].clone()
    };
    wait_for(Duration::from_secs(60), "predictions written back", || {
        [
            "analogValue:0",
            "analogValue:1",
            "analogValue:2",
            "analogValue:3",
        ]
        .iter()
        .all(|o| slot16(o).as_f64().is_some())
    });
    // The API sees the unit and its prediction.
    let units: Value = reqwest::blocking::get(format!("{}/api/units", tf.base))
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(units["units"][0]["unit"], "uc-01", "{units}");
    assert_eq!(
        common::metric_value(
            &tf.metrics(),
            "twinflow_bacnet_device_online",
            &["device=\"2345\""]
        ),
        Some(1.0)
    );
    // At shutdown the writer gives its slots back.
    assert_eq!(tf.terminate(Duration::from_secs(30)), 0);
    for o in ["analogValue:0", "analogValue:3"] {
        assert!(slot16(o).is_null(), "{o} relinquished at shutdown");
    }
    assert_eq!(sim.terminate(), 0);
}

/// tcpdump writing a capture file, stopped (and its packets listed) on
/// demand or when dropped.
struct Capture {
    child: std::process::Child,
    file: std::path::PathBuf,
}

impl Capture {
    fn start(dir: &Path, name: &str, filter: &str) -> Capture {
        let file = dir.join(name);
        // `-Z root`: keep writing as root into the test's private folder.
        let mut child = std::process::Command::new("tcpdump")
            .args(["-i", "any", "-n", "-U", "-Z", "root", "-w"])
            .arg(&file)
            .arg(filter)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("tcpdump (.ci/run installs it)");
        // It says "listening on ..." once it captures.
        let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut seen = String::new();
        loop {
            let mut line = String::new();
            let n = std::io::BufRead::read_line(&mut err, &mut line).unwrap();
            seen.push_str(&line);
            assert!(n > 0, "tcpdump did not start: {seen}");
            if line.contains("listening") {
                break;
            }
        }
        std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
        Capture { child, file }
    }

    /// Stops the capture; the packets, one line each.
    fn packets(mut self) -> Vec<String> {
        self.stop();
        let out = std::process::Command::new("tcpdump")
            .args(["-n", "-r"])
            .arg(&self.file)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn stop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A packet capture of BACnet/IP (BVLC type 0x81) while the poller and the
/// writer work against a bacpypes3 device and the simulated one, with the
/// default local address (0.0.0.0:0) a user's pipeline has: none of it
/// leaves 127.0.0.1 or goes to a broadcast address, while a capture on
/// loopback sees the traffic (so capturing works).
#[test]
fn bacnet_traffic_stays_on_loopback_and_is_never_broadcast() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_udp_port();
    let _dev = BacnetDevice::start(port, 4501, &[]);
    let sim = SimulatedBacnet::start(4502, 1, &["--rate-hz", "5"]);
    let bvlc = "udp and udp[8] == 0x81";
    let off_lo = Capture::start(
        dir.path(),
        "off-loopback.pcap",
        &format!("{bvlc} and not (src host 127.0.0.1 and dst host 127.0.0.1)"),
    );
    let on_lo = Capture::start(
        dir.path(),
        "loopback.pcap",
        &format!("{bvlc} and port {port}"),
    );
    let poller = format!(
        "    interval: 100ms\n    devices:\n{}{}",
        device_block("uc-a", port, 4501, ""),
        device_block("uc-b", sim.port, 4502, "")
    );
    let extra = format!(
        r#"
  - id: scada
    type: bacnet_writer
    inputs: [predict]
    devices:
      - {{unit: uc-a, address: "127.0.0.1:{port}", device_id: 4501}}
      - {{unit: uc-b, address: "127.0.0.1:{}", device_id: 4502}}
"#,
        sim.port
    );
    let p = pipeline(dir.path(), &poller, &extra);
    let yaml = std::fs::read_to_string(&p)
        .unwrap()
        .replace("    local: 127.0.0.1:0\n", "");
    std::fs::write(&p, yaml).unwrap();
    let tf = run(&p);
    let out = dir.path().join("predictions.jsonl");
    let count = |u: &str| jsonl(&out).iter().filter(|p| p["unit"] == u).count();
    wait_for(Duration::from_secs(60), "both devices polled", || {
        count("uc-a") >= 10 && count("uc-b") >= 10
    });
    assert_eq!(tf.terminate(Duration::from_secs(30)), 0);
    let on = on_lo.packets();
    assert!(
        on.len() >= 20,
        "the loopback capture saw {} packets",
        on.len()
    );
    let off = off_lo.packets();
    assert!(off.is_empty(), "BACnet packets off loopback: {off:#?}");
}
