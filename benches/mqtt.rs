//! MQTT end to end: Mosquitto → twinflow (mqtt_ingest → predictor →
//! mqtt_publish) → subscriber, against a bare rumqttc relay (subscribe and
//! republish, no processing) in the same run, at QoS 0 and QoS 1.
//!
//! `cargo bench --bench mqtt` (needs `mosquitto` on the PATH). Prints
//! throughput (as a ratio to the relay) and end-to-end latency percentiles
//! at a paced 5,000 messages/s.

#[allow(dead_code)]
#[path = "../tests/common/services.rs"]
mod services;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio_util::sync::CancellationToken;

const BURST: usize = 20_000;
const RATE: u64 = 5_000;
const PACED_SECS: u64 = 4;

fn client(port: u16, id: &str) -> (AsyncClient, rumqttc::EventLoop) {
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(30))
        .set_inflight(100)
        .set_max_packet_size(1 << 20, 1 << 20);
    AsyncClient::new(o, 1000)
}

fn payload(k: u64) -> Vec<u8> {
    // ts carries the send time (ns): the prediction keeps the frame's ts.
    serde_json::json!({
        "unit": format!("uc-{:02}", k % 4), "ts": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        "UCWIT": 7.5, "UCAIT": 25.0, "UCWF": 15.0, "UCAIH": 50.0, "AMBT": 22.0, "UCTSP": 21.0
    })
    .to_string()
    .into_bytes()
}

/// Subscribes to the output topic; counts messages and records latencies.
struct Sink {
    count: Arc<AtomicU64>,
    latencies: Arc<Mutex<Vec<f64>>>,
    stop: CancellationToken,
}

async fn start_sink(port: u16, qos: QoS) -> Sink {
    let (c, mut el) = client(port, "bench-sink");
    c.subscribe("hvac/predictions/results", qos).await.unwrap();
    let count = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let stop = CancellationToken::new();
    let (cn, lat, st) = (count.clone(), latencies.clone(), stop.clone());
    let (tx, rx) = tokio::sync::oneshot::channel();
    let mut tx = Some(tx);
    tokio::spawn(async move {
        let _keep = c;
        loop {
            let ev = tokio::select! { _ = st.cancelled() => break, ev = el.poll() => ev };
            match ev {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let v: serde_json::Value =
                        serde_json::from_slice(&p.payload).unwrap_or_default();
                    if let Some(ts) = v["ts"]
                        .as_str()
                        .and_then(|s| s.parse::<DateTime<Utc>>().ok())
                    {
                        let l = (Utc::now() - ts).num_nanoseconds().unwrap_or(0) as f64 / 1e9;
                        lat.lock().unwrap().push(l);
                    }
                    cn.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(e) => panic!("sink connection: {e}"),
            }
        }
    });
    rx.await.unwrap();
    Sink {
        count,
        latencies,
        stop,
    }
}

/// Publishes `n` readings, paced at `rate` per second (0 = as fast as possible).
async fn publish(port: u16, qos: QoS, n: u64, rate: u64) {
    let (c, mut el) = client(port, "bench-source");
    let driver = tokio::spawn(async move {
        loop {
            if el.poll().await.is_err() {
                break;
            }
        }
    });
    let t0 = Instant::now();
    for k in 0..n {
        if rate > 0 {
            let due = t0 + Duration::from_secs_f64(k as f64 / rate as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                tokio::time::sleep(wait).await;
            }
        }
        c.publish("hvac/sensors/data", qos, false, payload(k))
            .await
            .unwrap();
    }
    // Let the event loop drain its queue, then stop it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = c.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(5), driver).await;
}

/// The baseline: subscribe and republish, nothing else. Two connections,
/// as twinflow has (one subscribing, one publishing), joined by a bounded
/// queue; each event loop has a task of its own.
fn start_relay(port: u16, qos: QoS) -> CancellationToken {
    let stop = CancellationToken::new();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(1024);
    let st = stop.clone();
    tokio::spawn(async move {
        let (c, mut el) = client(port, "bench-relay-in");
        c.subscribe("hvac/sensors/data", qos).await.unwrap();
        loop {
            let ev = tokio::select! { _ = st.cancelled() => break, ev = el.poll() => ev };
            if let Ok(Event::Incoming(Packet::Publish(p))) = ev {
                if tx.send(p.payload).await.is_err() {
                    break;
                }
            }
        }
    });
    let st = stop.clone();
    tokio::spawn(async move {
        let (c, mut el) = client(port, "bench-relay-out");
        let st2 = st.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! { _ = st2.cancelled() => break, ev = el.poll() => if ev.is_err() { break } }
            }
        });
        while let Some(p) = tokio::select! { _ = st.cancelled() => None, p = rx.recv() => p } {
            c.publish("hvac/predictions/results", qos, false, p)
                .await
                .unwrap();
        }
    });
    stop
}

fn twinflow_spec(port: u16, qos: u8) -> twinflow::config::PipelineSpec {
    let yaml = format!(
        "name: bench\nnodes:\n  - id: in\n    type: mqtt_ingest\n    broker: {{url: 'mqtt://127.0.0.1:{port}', client_id: bench-tf-in, clean_session: true}}\n    subscriptions: [{{topic: hvac/sensors/data, qos: {qos}}}]\n  - id: predict\n    type: predictor\n    inputs: [in]\n  - id: out\n    type: mqtt_publish\n    inputs: [predict]\n    qos: {qos}\n    status_topic: null\n    broker: {{url: 'mqtt://127.0.0.1:{port}', client_id: bench-tf-out, clean_session: true}}\n"
    );
    twinflow::config::parse_pipeline(&yaml, "bench.yaml", std::path::Path::new("."), |_| None)
        .expect("bench pipeline is valid")
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

struct Run {
    throughput: f64,
    received: u64,
    p50_ms: f64,
    p99_ms: f64,
}

/// One measurement: a burst for throughput, then a paced run for latency.
async fn measure(port: u16, qos: QoS) -> Run {
    let sink = start_sink(port, qos).await;
    let t0 = Instant::now();
    publish(port, qos, BURST as u64, 0).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while sink.count.load(Ordering::Relaxed) < BURST as u64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let received = sink.count.load(Ordering::Relaxed);
    let throughput = received as f64 / t0.elapsed().as_secs_f64();
    sink.latencies.lock().unwrap().clear();
    let before = sink.count.load(Ordering::Relaxed);
    let paced = RATE * PACED_SECS;
    publish(port, qos, paced, RATE).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while sink.count.load(Ordering::Relaxed) < before + paced && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut lat = sink.latencies.lock().unwrap().clone();
    sink.stop.cancel();
    Run {
        throughput,
        received,
        p50_ms: percentile(&mut lat, 0.5) * 1e3,
        p99_ms: percentile(&mut lat, 0.99) * 1e3,
    }
}

fn main() {
    // `cargo test --benches` runs bench targets with --bench absent: skip
    // the heavy run there, it is a load tool.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let broker = services::Mosquitto::start();
    let port = broker.port;
    println!("MQTT end to end, {BURST} readings per burst; latency at {RATE}/s for {PACED_SECS} s");
    println!(
        "{:<10} {:<4} {:>12} {:>9} {:>9} {:>9} {:>9}",
        "path", "qos", "msg/s", "received", "ratio", "p50 ms", "p99 ms"
    );
    for (qos, level) in [(QoS::AtMostOnce, 0u8), (QoS::AtLeastOnce, 1)] {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let relay = rt.block_on(async {
            let stop = start_relay(port, qos);
            tokio::time::sleep(Duration::from_millis(300)).await;
            let r = measure(port, qos).await;
            stop.cancel();
            r
        });
        drop(rt);
        let system = actix_rt::System::new();
        let tf = system.block_on(async {
            let settings = twinflow::config::Settings {
                http_addr: "127.0.0.1:0".into(),
                ..Default::default()
            };
            let engine = twinflow::Engine::start(&twinflow_spec(port, level), settings).unwrap();
            let stop = CancellationToken::new();
            let run = actix_rt::spawn(engine.run_until(stop.clone()));
            tokio::time::sleep(Duration::from_millis(300)).await;
            let r = measure(port, qos).await;
            stop.cancel();
            let _ = run.await;
            r
        });
        for (name, r) in [("relay", &relay), ("twinflow", &tf)] {
            println!(
                "{:<10} {:<4} {:>12.0} {:>9} {:>9.2} {:>9.2} {:>9.2}",
                name,
                level,
                r.throughput,
                r.received,
                r.throughput / relay.throughput,
                r.p50_ms,
                r.p99_ms
            );
        }
    }
}
