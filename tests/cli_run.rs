//! `twinflow run` as a user runs it: the demo pipeline with SIGTERM, a
//! finite pipeline that dead-letters NaN frames, and a pipeline whose sink
//! can never start.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::metric_value;
use common::services::{free_port, wait_exit, Twinflow};

fn twinflow() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_twinflow"));
    c.env("TWINFLOW_HTTP_ADDR", "127.0.0.1:0")
        .env("TWINFLOW_LOG_FORMAT", "text")
        .env("TWINFLOW_LOG_LEVEL", "info");
    c
}

fn lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("every line is JSON"))
        .collect()
}

#[test]
fn demo_runs_serves_metrics_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("predictions.jsonl");
    let out_s = out.display().to_string();
    let port = free_port();
    let (port_s, url) = (port.to_string(), format!("mqtt://127.0.0.1:{port}"));
    let bacnet = common::services::demo_bacnet_env(20);
    let mut envs = vec![
        ("TWINFLOW_DEMO_OUT", out_s.as_str()),
        ("TWINFLOW_EMBEDDED_MQTT_PORT", &port_s),
        ("TWINFLOW_MQTT_URL", &url),
    ];
    envs.extend(bacnet.iter().map(|(k, v)| (*k, v.as_str())));
    let tf = Twinflow::spawn(&["run", "pipelines/demo.yaml"], &envs);
    let base = tf.base.clone();
    let client = reqwest::blocking::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut predicted = 0.0;
    while Instant::now() < deadline {
        if let Ok(r) = client.get(format!("{base}/metrics")).send() {
            let text = r.text().unwrap();
            predicted = metric_value(
                &text,
                "twinflow_component_sent_events_total",
                &["component_id=\"predict\""],
            )
            .unwrap_or(0.0);
            // Every unit's controller answered (over BACnet) and was predicted.
            let all_units = ["uc-01", "uc-02", "uc-03"].iter().all(|u| {
                text.lines()
                    .any(|l| l.starts_with("twinflow_prediction{") && l.contains(u))
            });
            if predicted >= 30.0 && all_units {
                assert!(
                    text.contains("twinflow_prediction{"),
                    "domain gauge exported"
                );
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(predicted >= 30.0, "the demo produced predictions");
    assert_eq!(
        client.get(format!("{base}/ready")).send().unwrap().status(),
        200
    );

    let code = tf.terminate(Duration::from_secs(30));
    assert_eq!(code, 0, "graceful shutdown exits 0");

    // Everything predicted before the stop reached the file (drained, flushed).
    let got = lines(&out);
    assert!(
        got.len() as f64 >= predicted,
        "{} lines < {predicted} predictions",
        got.len()
    );
    for p in &got {
        for key in twinflow::pipeline::message::PREDICTION_KEYS {
            assert!(p.get(key).is_some(), "{key} missing in {p}");
        }
    }
    let units: std::collections::BTreeSet<_> = got
        .iter()
        .map(|p| p["unit"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(units.len(), 3, "three simulated units: {units:?}");
}

#[test]
fn nan_frames_are_dead_lettered_and_the_stream_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = twinflow()
        .args(["run", "tests/pipelines/nan_faults.yaml"])
        .env("OUT_DIR", dir.path())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let code = wait_exit(&mut child, Duration::from_secs(60));
    assert_eq!(code, 0, "a finite pipeline ends by itself with exit 0");
    let preds = lines(&dir.path().join("predictions.jsonl"));
    let dead = lines(&dir.path().join("dead.jsonl"));
    assert_eq!(preds.len() + dead.len(), 200, "nothing lost");
    assert!(
        dead.len() >= 40 && dead.len() <= 60,
        "about 50 NaN frames: {}",
        dead.len()
    );
    for d in &dead {
        assert_eq!(d["component"], "predict");
        assert_eq!(d["reason"], "non_finite_input");
        assert!(d["error"].as_str().unwrap().contains("UCWIT"), "{d}");
        assert!(d["payload"]["unit"].is_string(), "the frame is kept: {d}");
    }
    for p in &preds {
        assert!(p["UCAOT"].as_f64().unwrap().is_finite());
    }
}

#[test]
fn a_sink_that_never_starts_exhausts_the_budget_and_exits_1() {
    let out = twinflow()
        .args(["run", "tests/pipelines/unwritable.yaml"])
        .env("TWINFLOW_RESTART_BACKOFF_INITIAL_MS", "1")
        .env("TWINFLOW_RESTART_BACKOFF_MAX_MS", "5")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("restart budget exhausted"), "{err}");
    assert!(
        err.contains("cannot create /proc/twinflow-cannot-write-here"),
        "{err}"
    );
}

#[test]
fn restarts_become_one_component_restarted_alert() {
    let dir = tempfile::tempdir().unwrap();
    let out = twinflow()
        .args(["run", "tests/pipelines/restart_alerts.yaml"])
        .env("OUT_DIR", dir.path())
        .env("TWINFLOW_RESTART_BACKOFF_INITIAL_MS", "1")
        .env("TWINFLOW_RESTART_BACKOFF_MAX_MS", "5")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "the budget is spent");
    let alerts = lines(&dir.path().join("alerts.jsonl"));
    assert_eq!(alerts.len(), 1, "one alert for five restarts: {alerts:?}");
    let a = &alerts[0];
    assert_eq!(a["code"], "COMPONENT_RESTARTED");
    assert_eq!(a["key"], "out");
    assert_eq!(a["state"], "firing");
    assert!(
        a["message"].as_str().unwrap().contains("cannot create"),
        "{a}"
    );
}
