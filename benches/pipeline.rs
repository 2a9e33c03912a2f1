//! Engine overhead: a 4-stage pipeline (source → relay → relay → sink) built
//! by the real builder, against a bare chain of tokio mpsc channels doing
//! the same hops, in the same run. Report the ratio, not the absolute figure.
//!
//! `cargo bench --bench pipeline`

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tokio_util::sync::CancellationToken;
use twinflow::config::Settings;
use twinflow::pipeline::Message;
use twinflow::testkit::*;

const N: u64 = 200_000;
const CAP: usize = 1024;

fn engine_once(system: &actix_rt::SystemRunner, batch: usize) -> Duration {
    let src = CountingSourceConfig {
        sent: Default::default(),
        limit: N,
        batch,
    };
    let sink = RecordingSinkConfig {
        record: false,
        ..Default::default()
    };
    let count = sink.count.clone();
    let s = spec(
        vec![
            node("src", SOURCE, &[], CAP, Arc::new(src)),
            node("r1", RELAY, &["src"], CAP, Arc::new(RelayConfig::default())),
            node("r2", RELAY, &["r1"], CAP, Arc::new(RelayConfig::default())),
            node("sink", SINK, &["r2"], CAP, Arc::new(sink)),
        ],
        None,
        256,
    );
    let settings = Settings {
        http_addr: "127.0.0.1:0".into(),
        ..Settings::default()
    };
    system.block_on(async move {
        let t0 = Instant::now();
        twinflow::run(&s, settings, CancellationToken::new())
            .await
            .expect("pipeline runs");
        let el = t0.elapsed();
        assert_eq!(count.load(Ordering::SeqCst), N);
        el
    })
}

fn bare_once(rt: &tokio::runtime::Runtime) -> Duration {
    rt.block_on(async {
        let msg = Arc::new(frame(0));
        let (tx1, mut rx1) = tokio::sync::mpsc::channel::<Arc<Message>>(CAP);
        let (tx2, mut rx2) = tokio::sync::mpsc::channel::<Arc<Message>>(CAP);
        let (tx3, mut rx3) = tokio::sync::mpsc::channel::<Arc<Message>>(CAP);
        let t0 = Instant::now();
        let src = tokio::spawn(async move {
            for _ in 0..N {
                tx1.send(msg.clone()).await.unwrap();
            }
        });
        let r1 = tokio::spawn(async move {
            while let Some(m) = rx1.recv().await {
                tx2.send(m).await.unwrap();
            }
        });
        let r2 = tokio::spawn(async move {
            while let Some(m) = rx2.recv().await {
                tx3.send(m).await.unwrap();
            }
        });
        let sink = tokio::spawn(async move {
            let mut n = 0u64;
            while rx3.recv().await.is_some() {
                n += 1;
            }
            n
        });
        let _ = (src.await, r1.await, r2.await);
        assert_eq!(sink.await.unwrap(), N);
        t0.elapsed()
    })
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("four_stage_pipeline");
    g.throughput(Throughput::Elements(N));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(8));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    g.bench_function("bare_tokio_mpsc_chain", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| bare_once(&rt)).sum())
    });
    let system = actix_rt::System::new();
    // The source sends one message per call, as the bare chain does.
    g.bench_function("twinflow_engine", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| engine_once(&system, 1)).sum())
    });
    // The source hands over 256 at a time, as the simulator does per tick.
    g.bench_function("twinflow_engine_batched_source", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| engine_once(&system, 256)).sum())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
