//! The engine end to end with the real builder, channels, actors and
//! supervisor: backpressure, drop policies, panics and restarts, the restart
//! budget, graceful drain, and the HTTP endpoints.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use tokio_util::sync::CancellationToken;
use twinflow::config::EdgeSpec;
use twinflow::pipeline::channel::Overflow;
use twinflow::pipeline::Message;
use twinflow::Engine;

const WAIT: Duration = Duration::from_secs(60);

#[actix_rt::test]
async fn backpressure_slows_the_source_and_bounds_what_is_in_flight() {
    let src = CountingSourceConfig {
        sent: Default::default(),
        limit: u64::MAX,
        batch: 1,
    };
    let sink = RecordingSinkConfig {
        delay: Duration::from_millis(2),
        ..Default::default()
    };
    let (sent, count) = (src.sent.clone(), sink.count.clone());
    let cap = 8;
    let batch = 4;
    let s = spec(
        vec![
            node("src", SOURCE, &[], cap, Arc::new(src)),
            node("r1", RELAY, &["src"], cap, Arc::new(RelayConfig::default())),
            node("r2", RELAY, &["r1"], cap, Arc::new(RelayConfig::default())),
            node("sink", SINK, &["r2"], cap, Arc::new(sink)),
        ],
        None,
        batch,
    );
    let engine = Engine::start(&s, settings()).unwrap();
    let view = engine.view();
    let stop = CancellationToken::new();
    let run = actix_rt::spawn(engine.run_until(stop.clone()));

    // Edges hold at most `cap` each; each of the three consumers holds at
    // most one batch (plus what it emitted from it); the source one message.
    let bound = (3 * cap + 3 * 2 * batch + 1) as u64;
    let mut checked = 0;
    let mut last = 0;
    while checked < 20 {
        let target = last + 10;
        assert!(eventually(WAIT, || count.load(Ordering::SeqCst) >= target).await);
        let (s_now, c_now) = (sent.load(Ordering::SeqCst), count.load(Ordering::SeqCst));
        assert!(
            s_now.saturating_sub(c_now) <= bound,
            "source ran ahead: sent {s_now}, sink saw {c_now}, bound {bound}"
        );
        for e in &view.edges {
            assert!(e.probe.depth() <= e.probe.capacity());
        }
        last = c_now;
        checked += 1;
    }
    // The slow sink (≈2 ms a message) sets the pace: without backpressure
    // the source would have sent millions by now.
    assert!(sent.load(Ordering::SeqCst) < 10_000);

    stop.cancel();
    run.await.unwrap().expect("graceful stop");
    assert_eq!(
        sent.load(Ordering::SeqCst),
        count.load(Ordering::SeqCst),
        "every message sent before the stop was drained to the sink"
    );
}

#[actix_rt::test]
async fn drop_policies_discard_and_count_instead_of_blocking() {
    for overflow in [Overflow::DropNewest, Overflow::DropOldest] {
        let src = CountingSourceConfig {
            sent: Default::default(),
            limit: 3000,
            batch: 1,
        };
        let sink = RecordingSinkConfig {
            delay: Duration::from_micros(200),
            ..Default::default()
        };
        let count = sink.count.clone();
        let mut sink_node = node("sink", SINK, &["src"], 4, Arc::new(sink));
        sink_node.inputs = vec![EdgeSpec {
            from: "src".into(),
            capacity: 4,
            overflow,
            kinds: SINK.accepts,
        }];
        let s = spec(
            vec![node("src", SOURCE, &[], 4, Arc::new(src)), sink_node],
            None,
            1,
        );
        let engine = Engine::start(&s, settings()).unwrap();
        let view = engine.view();
        engine
            .run_until(CancellationToken::new())
            .await
            .expect("the finite source ends the pipeline");
        let text = view.metrics.render();
        let discarded = metric_value(
            &text,
            "twinflow_channel_discarded_events_total",
            &["from=\"src\"", "to=\"sink\""],
        )
        .unwrap();
        let got = count.load(Ordering::SeqCst);
        assert!(
            discarded > 0.0,
            "{overflow:?}: a slow sink must cause drops"
        );
        assert_eq!(
            got + discarded as u64,
            3000,
            "{overflow:?}: every message is delivered or counted"
        );
    }
}

#[actix_rt::test]
async fn a_panic_restarts_the_component_and_loses_only_the_poison_message() {
    let src = CountingSourceConfig {
        sent: Default::default(),
        limit: 2000,
        batch: 1,
    };
    let relay = RelayConfig {
        panic_on: vec![100, 1500],
        ..Default::default()
    };
    let builds = relay.builds.clone();
    let sink = RecordingSinkConfig::default();
    let dead = RecordingSinkConfig::default();
    let (seen, dead_seen) = (sink.seen.clone(), dead.seen.clone());
    let s = spec(
        vec![
            node("src", SOURCE, &[], 64, Arc::new(src)),
            node("relay", RELAY, &["src"], 64, Arc::new(relay)),
            node("sink", SINK, &["relay"], 64, Arc::new(sink)),
            node("dead", SINK, &["relay"], 64, Arc::new(dead)),
        ],
        Some("dead"),
        32,
    );
    // `dead` reads relay's frames as well as every node's dead letters; only
    // the dead letters matter here.
    let engine = Engine::start(&s, settings()).unwrap();
    let view = engine.view();
    engine
        .run_until(CancellationToken::new())
        .await
        .expect("two restarts are within the budget");

    let got: Vec<u64> = seen.lock().unwrap().iter().map(index_of).collect();
    let expected: Vec<u64> = (0..2000).filter(|i| *i != 100 && *i != 1500).collect();
    assert_eq!(got, expected, "queued messages survive restarts, in order");
    assert_eq!(
        builds.load(Ordering::SeqCst),
        3,
        "built once, rebuilt twice"
    );

    let dls: Vec<_> = dead_seen
        .lock()
        .unwrap()
        .iter()
        .filter_map(|m| match m {
            Message::DeadLetter(d) => Some(d.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(dls.len(), 2);
    for d in &dls {
        assert_eq!(d.component, "relay");
        assert_eq!(d.reason, "panic");
        assert!(d.error.contains("injected panic"), "{}", d.error);
    }
    let text = view.metrics.render();
    let restarts = metric_value(
        &text,
        "twinflow_component_restarts_total",
        &["component_id=\"relay\""],
    );
    assert_eq!(restarts, Some(2.0));
    let dead_total = metric_value(
        &text,
        "twinflow_dead_letters_total",
        &["component_id=\"relay\"", "reason=\"panic\""],
    );
    assert_eq!(dead_total, Some(2.0));
}

#[actix_rt::test]
async fn exhausting_the_restart_budget_stops_the_pipeline_with_an_error() {
    let src = CountingSourceConfig {
        sent: Default::default(),
        limit: u64::MAX,
        batch: 1,
    };
    let relay = RelayConfig {
        always_panic: true,
        ..Default::default()
    };
    let s = spec(
        vec![
            node("src", SOURCE, &[], 16, Arc::new(src)),
            node("relay", RELAY, &["src"], 16, Arc::new(relay)),
            node(
                "sink",
                SINK,
                &["relay"],
                16,
                Arc::new(RecordingSinkConfig::default()),
            ),
        ],
        None,
        8,
    );
    let settings = twinflow::config::Settings {
        restart_budget: 3,
        ..settings()
    };
    let engine = Engine::start(&s, settings).unwrap();
    let err = engine
        .run_until(CancellationToken::new())
        .await
        .expect_err("a component that always panics must fail the pipeline");
    let msg = err.to_string();
    assert!(msg.contains("restart budget exhausted"), "{msg}");
    assert!(msg.contains("relay"), "{msg}");
}

#[actix_rt::test]
async fn health_ready_and_metrics_are_served() {
    let src = CountingSourceConfig {
        sent: Default::default(),
        limit: u64::MAX,
        batch: 1,
    };
    let sink = RecordingSinkConfig {
        delay: Duration::from_millis(1),
        ..Default::default()
    };
    let count = sink.count.clone();
    let s = spec(
        vec![
            node("src", SOURCE, &[], 16, Arc::new(src)),
            node("sink", SINK, &["src"], 16, Arc::new(sink)),
        ],
        None,
        8,
    );
    let engine = Engine::start(&s, settings()).unwrap();
    let base = format!("http://{}", engine.http_addr());
    let stop = CancellationToken::new();
    let run = actix_rt::spawn(engine.run_until(stop.clone()));
    assert!(eventually(WAIT, || count.load(Ordering::SeqCst) > 20).await);

    let client = reqwest::Client::new();
    let ready = client.get(format!("{base}/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let health: serde_json::Value = client
        .get(format!("{base}/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    let comps = health["components"].as_array().unwrap();
    assert_eq!(comps.len(), 2);
    assert!(comps.iter().all(|c| c["state"] == "running"), "{health}");

    let resp = client.get(format!("{base}/metrics")).send().await.unwrap();
    assert!(resp
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = resp.text().await.unwrap();
    let received = metric_value(
        &text,
        "twinflow_component_received_events_total",
        &[
            "component_id=\"sink\"",
            "component_kind=\"sink\"",
            "component_type=\"test_sink\"",
        ],
    )
    .unwrap();
    assert!(received > 0.0);
    for name in [
        "twinflow_component_sent_events_total",
        "twinflow_component_errors_total",
        "twinflow_component_discarded_events_total",
        "twinflow_component_restarts_total",
        "twinflow_component_processing_seconds_bucket",
        "twinflow_channel_depth",
        "twinflow_channel_capacity",
        "twinflow_pipeline_ready",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics");
    }
    assert_eq!(
        metric_value(&text, "twinflow_pipeline_ready", &[]),
        Some(1.0)
    );

    // The exposition passes Prometheus' own linter.
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("metrics.txt");
    std::fs::write(&f, &text).unwrap();
    let out = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&f).unwrap())
        .output()
        .expect("promtool is installed by .ci/run");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    stop.cancel();
    run.await.unwrap().unwrap();
}
