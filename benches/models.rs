//! Predictions per second of the `predictor` for each model kind, through
//! the component itself (input checks, residuals, gauges and latency metric
//! included), one message per call (`process`) and in batches of 256
//! (`process_batch`, what the runner hands over under load).
//!
//! The inputs are the held-out rows of `models/heldout.csv`, as frames with
//! measured outputs. `cargo bench --bench models`.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use futures::executor::block_on;
use twinflow::metrics::Metrics;
use twinflow::pipeline::message::{Message, SensorFrame};
use twinflow::pipeline::{BuildContext, Component, ComponentConfig, Emitter, Envelope, Processor};
use twinflow::transforms::predictor::{FileModelConfig, ModelConfig, PredictorConfig};

const BATCH: usize = 256;

fn models() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models")
}

fn frames() -> Vec<Envelope> {
    let mut r = csv::Reader::from_path(models().join("heldout.csv")).expect("models/heldout.csv");
    r.records()
        .map(|rec| {
            let v: Vec<f64> = rec.unwrap().iter().map(|s| s.parse().unwrap()).collect();
            Envelope::new(Message::Frame(SensorFrame {
                unit: "uc-01".into(),
                ts: chrono::Utc::now(),
                ucwit: v[0],
                ucait: v[1],
                ucwf: v[2],
                ucaih: v[3],
                ambt: v[4],
                uctsp: v[5],
                ucaot: Some(v[6]),
                ucwot: Some(v[7]),
                ucaf: Some(v[8]),
                quality: None,
            }))
        })
        .take(BATCH)
        .collect()
}

fn build(model: ModelConfig) -> Box<dyn Processor> {
    let metrics = Metrics::new();
    let ctx = BuildContext {
        id: "predict".into(),
        component_metrics: metrics.component("predict", "transform", "predictor"),
        metrics,
        base_dir: models(),
        events: Default::default(),
    };
    let cfg = PredictorConfig {
        model,
        reload_check_ms: 0,
        ..Default::default()
    };
    match cfg.build(&ctx).expect("the example model loads") {
        Component::Processor(p) => p,
        Component::Source(_) => unreachable!(),
    }
}

fn file(name: &str) -> FileModelConfig {
    FileModelConfig {
        path: format!("{name}.onnx").into(),
        metadata: None,
    }
}

fn bench(c: &mut Criterion) {
    let batch = frames();
    assert_eq!(batch.len(), BATCH);
    let kinds: Vec<(&str, ModelConfig)> = vec![
        ("physics", ModelConfig::default()),
        ("onnx_ridge", ModelConfig::Onnx(file("ridge"))),
        ("onnx_mlp", ModelConfig::Onnx(file("mlp"))),
        ("tree_gbm", ModelConfig::TreeEnsemble(file("gbm"))),
        ("tree_forest", ModelConfig::TreeEnsemble(file("forest"))),
    ];
    let mut g = c.benchmark_group("predictor");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(20)
        .throughput(Throughput::Elements(BATCH as u64));
    for (name, model) in kinds {
        let mut p = build(model);
        g.bench_function(format!("{name}/per_row"), |b| {
            b.iter_batched_ref(
                Emitter::default,
                |em| {
                    for env in &batch {
                        black_box(block_on(p.process(&env.msg, em)).is_ok());
                    }
                },
                BatchSize::SmallInput,
            )
        });
        g.bench_function(format!("{name}/batch_{BATCH}"), |b| {
            b.iter_batched_ref(
                Emitter::default,
                |em| black_box(block_on(p.process_batch(&batch, em)).len()),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
