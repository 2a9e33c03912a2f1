//! The predictor's ML models end to end: the example models under `models/`
//! predict through each kind, the tree evaluator and tract agree with
//! onnxruntime (run through the venv's Python), `twinflow validate` refuses
//! metadata that does not fit, the out-of-range policies, physics beside ML,
//! and a hot swap under a running pipeline that loses nothing.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use twinflow::metrics::Metrics;
use twinflow::pipeline::message::{AlertState, FlagReason, Message, Prediction, SensorFrame};
use twinflow::pipeline::{BuildContext, Component, ComponentConfig, Emitter, Envelope, Processor};
use twinflow::sources::simulator::{self, NoiseConfig, SimulatorConfig};
use twinflow::transforms::predictor::{
    self, FileModelConfig, ModelConfig, OutOfRangePolicy, PredictorConfig,
};
use twinflow::Engine;

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn models() -> PathBuf {
    crate_dir().join("models")
}

/// The Python with onnxruntime: `TWINFLOW_PYTHON`, else the crate's venv.
/// Missing is a failure, never a skip: parity is what these tests are for.
fn python() -> PathBuf {
    let p = std::env::var_os("TWINFLOW_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate_dir().join(".venv/bin/python"));
    let ok = Command::new(&p)
        .args(["-c", "import onnxruntime, numpy"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "these tests need a Python with onnxruntime and numpy at {} (set TWINFLOW_PYTHON, \
         or: python3 -m venv .venv && .venv/bin/pip install onnxruntime numpy)",
        p.display()
    );
    p
}

/// Held-out rows from `models/heldout.csv`: six inputs, then the measured
/// UCAOT, UCWOT, UCAF and Q_thermal.
fn heldout() -> Vec<[f64; 10]> {
    let mut r = csv::Reader::from_path(models().join("heldout.csv")).unwrap();
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            let mut row = [0.0; 10];
            for (i, v) in rec.iter().enumerate() {
                row[i] = v.parse().unwrap();
            }
            row
        })
        .collect()
}

fn frame_of(row: &[f64], unit: &str) -> SensorFrame {
    SensorFrame {
        unit: unit.into(),
        ts: chrono::Utc::now(),
        ucwit: row[0],
        ucait: row[1],
        ucwf: row[2],
        ucaih: row[3],
        ambt: row[4],
        uctsp: row[5],
        ucaot: row.get(6).copied(),
        ucwot: row.get(7).copied(),
        ucaf: row.get(8).copied(),
        quality: None,
    }
}

fn file_model(kind: &str, name: &str) -> ModelConfig {
    let f = FileModelConfig {
        path: models().join(format!("{name}.onnx")),
        metadata: None,
    };
    match kind {
        "onnx" => ModelConfig::Onnx(f),
        _ => ModelConfig::TreeEnsemble(f),
    }
}

fn build(cfg: &PredictorConfig) -> Box<dyn Processor> {
    let metrics = Metrics::new();
    let ctx = BuildContext {
        id: "predict".into(),
        component_metrics: metrics.component("predict", "transform", "predictor"),
        metrics,
        base_dir: crate_dir(),
        events: Default::default(),
    };
    match cfg.build(&ctx).unwrap() {
        Component::Processor(p) => p,
        Component::Source(_) => unreachable!(),
    }
}

fn predictor(kind: &str, name: &str) -> Box<dyn Processor> {
    build(&PredictorConfig {
        model: file_model(kind, name),
        ..Default::default()
    })
}

fn envelopes(frames: Vec<SensorFrame>) -> Vec<Envelope> {
    frames
        .into_iter()
        .map(|f| Envelope::new(Message::Frame(f)))
        .collect()
}

fn predictions(em: &Emitter) -> Vec<Prediction> {
    em_messages(em)
        .into_iter()
        .filter_map(|m| match m {
            Message::Prediction(p) => Some(p),
            _ => None,
        })
        .collect()
}

fn em_messages(em: &Emitter) -> Vec<Message> {
    em.emitted().cloned().collect()
}

/// Runs `model` in onnxruntime on `rows` (six inputs each).
fn onnxruntime(model: &Path, rows: &[[f64; 6]]) -> Vec<Vec<f64>> {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("rows.json");
    std::fs::write(&input, serde_json::to_string(rows).unwrap()).unwrap();
    let out = Command::new(python())
        .arg(crate_dir().join("tests/support/ort_eval.py"))
        .arg(model)
        .arg(&input)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ort_eval.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Vec<Vec<String>> = serde_json::from_slice(&out.stdout).unwrap();
    v.into_iter()
        .map(|r| r.iter().map(|s| s.parse().unwrap()).collect())
        .collect()
}

/// Rows the model is asked about: held-out rows, plus rows well outside
/// the training range (a flagged prediction must still be onnxruntime's).
fn parity_rows() -> Vec<[f64; 6]> {
    let mut rows: Vec<[f64; 6]> = heldout()
        .iter()
        .map(|r| r[..6].try_into().unwrap())
        .collect();
    rows.push([2.0, 35.0, 40.0, 95.0, 40.0, 17.0]);
    rows.push([15.0, 16.0, 1.0, 5.0, 0.0, 26.0]);
    rows
}

/// Predicts rows of six inputs, optionally followed by measured outputs.
async fn predict_all<R: AsRef<[f64]>>(p: &mut Box<dyn Processor>, rows: &[R]) -> Vec<Prediction> {
    let frames = rows.iter().map(|r| frame_of(r.as_ref(), "uc-01")).collect();
    let mut em = Emitter::default();
    let res = p.process_batch(&envelopes(frames), &mut em).await;
    assert!(res.iter().all(Result::is_ok), "{res:?}");
    predictions(&em)
}

/// The outputs the metadata names, in its order, from a prediction.
fn model_outputs(p: &Prediction, names: &[String]) -> Vec<f64> {
    names
        .iter()
        .map(|n| match n.as_str() {
            "UCAOT" => p.ucaot,
            "UCWOT" => p.ucwot,
            "UCAF" => p.ucaf,
            "Q_thermal" => p.q_thermal,
            other => panic!("unknown output {other}"),
        })
        .collect()
}

fn output_names(name: &str) -> Vec<String> {
    let meta: Value = serde_json::from_str(
        &std::fs::read_to_string(models().join(format!("{name}.json"))).unwrap(),
    )
    .unwrap();
    meta["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn tree_evaluator_equals_onnxruntime_within_1e_5() {
    let rows = parity_rows();
    for name in ["gbm", "forest"] {
        let mut p = predictor("tree_ensemble", name);
        let ours = predict_all(&mut p, &rows).await;
        let theirs = onnxruntime(&models().join(format!("{name}.onnx")), &rows);
        let names = output_names(name);
        assert_eq!(ours.len(), rows.len());
        let mut worst: f64 = 0.0;
        for (i, (p, t)) in ours.iter().zip(&theirs).enumerate() {
            for (a, b) in model_outputs(p, &names).iter().zip(t) {
                let d = (a - b).abs();
                worst = worst.max(d);
                assert!(d <= 1e-5, "{name} row {i}: twinflow {a}, onnxruntime {b}");
            }
        }
        eprintln!(
            "{name}: {} rows, largest difference from onnxruntime {worst:e}",
            rows.len()
        );
    }
}

#[tokio::test]
async fn onnx_models_run_by_tract_agree_with_onnxruntime() {
    let rows = parity_rows();
    for name in ["ridge", "mlp"] {
        let mut p = predictor("onnx", name);
        let ours = predict_all(&mut p, &rows).await;
        let theirs = onnxruntime(&models().join(format!("{name}.onnx")), &rows);
        let names = output_names(name);
        for (i, (p, t)) in ours.iter().zip(&theirs).enumerate() {
            for (a, b) in model_outputs(p, &names).iter().zip(t) {
                // f32 models: tract and onnxruntime may sum a dot product
                // in different orders, a few ulps apart.
                assert!(
                    (a - b).abs() <= 1e-5 * b.abs().max(1.0),
                    "{name} row {i}: tract {a}, onnxruntime {b}"
                );
            }
        }
    }
}

#[tokio::test]
async fn each_kind_predicts_and_names_its_model() {
    let rows = heldout();
    let cases = [
        ("physics", "", "physics@1"),
        ("onnx", "ridge", "ridge@1"),
        ("onnx", "mlp", "mlp@1"),
        ("tree_ensemble", "gbm", "gbm@1"),
        ("tree_ensemble", "forest", "forest@1"),
    ];
    for (kind, name, label) in cases {
        let mut p = if kind == "physics" {
            build(&PredictorConfig::default())
        } else {
            predictor(kind, name)
        };
        let preds = predict_all(&mut p, &rows).await;
        assert_eq!(preds.len(), rows.len(), "{kind} {name}");
        // Held-out accuracy (other units than the training ones): every
        // model explains most of the water outlet temperature.
        let measured: Vec<f64> = rows.iter().map(|r| r[7]).collect();
        let mean = measured.iter().sum::<f64>() / measured.len() as f64;
        let ss_tot: f64 = measured.iter().map(|y| (y - mean).powi(2)).sum();
        let ss_res: f64 = preds
            .iter()
            .zip(&measured)
            .map(|(p, y)| (y - p.ucwot).powi(2))
            .sum();
        let r2 = 1.0 - ss_res / ss_tot;
        assert!(r2 > 0.7, "{kind} {name}: UCWOT R² {r2}");
        for p in &preds {
            assert_eq!(&*p.model, label);
            assert!(p.ucaot.is_finite() && p.ucaf.is_finite() && p.q_thermal.is_finite());
            // The frames carried measurements: residuals are reported.
            assert_eq!(p.residual.ucwot, Some(p.measured.ucwot.unwrap() - p.ucwot));
            assert!(p.residual.q_thermal.is_some());
        }
    }
}

#[tokio::test]
async fn batched_and_per_row_predictions_agree() {
    let inputs: Vec<[f64; 6]> = heldout()
        .iter()
        .take(50)
        .map(|r| r[..6].try_into().unwrap())
        .collect();
    for (kind, name) in [("onnx", "mlp"), ("tree_ensemble", "gbm")] {
        let mut p = predictor(kind, name);
        let batched = predict_all(&mut p, &inputs).await;
        for (x, b) in inputs.iter().zip(&batched) {
            let mut em = Emitter::default();
            p.process(&Arc::new(Message::Frame(frame_of(x, "uc-01"))), &mut em)
                .await
                .unwrap();
            let one = &predictions(&em)[0];
            for (a, b) in [
                (one.ucaot, b.ucaot),
                (one.ucwot, b.ucwot),
                (one.ucaf, b.ucaf),
            ] {
                assert!(
                    (a - b).abs() <= 1e-5 * b.abs().max(1.0),
                    "{name}: {a} vs {b}"
                );
            }
        }
    }
}

fn training_range(name: &str, feature: &str) -> (f64, f64) {
    let meta: Value = serde_json::from_str(
        &std::fs::read_to_string(models().join(format!("{name}.json"))).unwrap(),
    )
    .unwrap();
    let i = meta["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == feature)
        .unwrap();
    (i["min"].as_f64().unwrap(), i["max"].as_f64().unwrap())
}

#[tokio::test]
async fn out_of_range_inputs_are_flagged_clamped_or_rejected() {
    let (_, hi) = training_range("ridge", "UCAIT");
    let inside = [9.0, 24.0, 15.0, 50.0, 22.0, 21.0];
    let mut outside = inside;
    outside[1] = hi + 5.0;
    let mut at_edge = inside;
    at_edge[1] = hi;
    let cfg = |policy| PredictorConfig {
        model: file_model("onnx", "ridge"),
        on_out_of_range: policy,
        ..Default::default()
    };

    // flag: predicted from the inputs as they are, flagged, one event.
    let mut p = build(&cfg(OutOfRangePolicy::Flag));
    let mut em = Emitter::default();
    for x in [&outside, &outside] {
        p.process(&Arc::new(Message::Frame(frame_of(x, "uc-01"))), &mut em)
            .await
            .unwrap();
    }
    let msgs = em_messages(&em);
    let alerts: Vec<_> = msgs
        .iter()
        .filter_map(|m| match m {
            Message::Alert(a) => Some(a),
            _ => None,
        })
        .collect();
    assert_eq!(
        alerts.len(),
        1,
        "one event while the unit stays out of range"
    );
    let a = alerts[0];
    assert_eq!(a.code, "INPUT_OUT_OF_RANGE");
    assert_eq!(a.severity.as_str(), "warning");
    assert_eq!(a.unit.as_deref(), Some("uc-01"));
    let f = &a.details["features"][0];
    assert_eq!(f["feature"], "UCAIT");
    assert_eq!(f["value"], hi + 5.0);
    assert_eq!(f["max"], hi);
    assert_eq!(f["reason"], "outside_training_range");
    let preds = predictions(&em);
    assert_eq!(preds.len(), 2);
    let flagged = &preds[0];
    assert_eq!(flagged.flags.len(), 1);
    assert_eq!(flagged.flags[0].reason, FlagReason::OutsideTrainingRange);
    assert_eq!(flagged.flags[0].clamped_to, None);
    assert_eq!(flagged.inputs.ucait, hi + 5.0);
    let json = Message::Prediction(flagged.clone()).to_json();
    assert_eq!(json["flags"][0]["feature"], "UCAIT", "{json}");
    // Back in range: the event resolves.
    let mut em = Emitter::default();
    p.process(
        &Arc::new(Message::Frame(frame_of(&inside, "uc-01"))),
        &mut em,
    )
    .await
    .unwrap();
    let msgs = em_messages(&em);
    assert!(matches!(&msgs[0], Message::Alert(a) if a.state == AlertState::Resolved));
    assert!(matches!(&msgs[1], Message::Prediction(p) if p.flags.is_empty()));

    // clamp: the prediction is the one at the edge of the range.
    let mut p = build(&cfg(OutOfRangePolicy::Clamp));
    let preds = predict_all(&mut p, &[outside, at_edge]).await;
    assert_eq!(preds[0].ucaot, preds[1].ucaot);
    assert_eq!(preds[0].ucaf, preds[1].ucaf);
    assert_eq!(preds[0].flags[0].clamped_to, Some(hi));
    assert_eq!(preds[0].inputs.ucait, hi + 5.0, "inputs stay as measured");
    assert!(preds[1].flags.is_empty(), "the edge itself is in range");

    // reject: an error with the reason (the runner dead-letters it), and
    // the event.
    let mut p = build(&cfg(OutOfRangePolicy::Reject));
    let mut em = Emitter::default();
    let e = p
        .process(
            &Arc::new(Message::Frame(frame_of(&outside, "uc-02"))),
            &mut em,
        )
        .await
        .unwrap_err();
    assert_eq!(e.reason, "input_out_of_range");
    assert!(
        e.message.contains("UCAIT") && e.message.contains("training range"),
        "{e}"
    );
    let msgs = em_messages(&em);
    assert_eq!(msgs.len(), 1);
    assert!(matches!(&msgs[0], Message::Alert(a) if a.code == "INPUT_OUT_OF_RANGE"));

    // Physically impossible values are flagged as such, whatever the range.
    let mut p = build(&cfg(OutOfRangePolicy::Flag));
    let mut bad = inside;
    bad[2] = -1.0; // negative flow
    bad[3] = 120.0; // RH
    let preds = predict_all(&mut p, &[bad]).await;
    let reasons: Vec<_> = preds[0]
        .flags
        .iter()
        .map(|f| (f.feature.as_str(), f.reason))
        .collect();
    assert_eq!(
        reasons,
        [
            ("UCWF", FlagReason::PhysicallyImpossible),
            ("UCAIH", FlagReason::PhysicallyImpossible)
        ]
    );

    // NaN: dead-lettered, no prediction, no event.
    let mut em = Emitter::default();
    let mut nan = inside;
    nan[4] = f64::NAN;
    let e = p
        .process(&Arc::new(Message::Frame(frame_of(&nan, "uc-03"))), &mut em)
        .await
        .unwrap_err();
    assert_eq!(e.reason, "non_finite_input");
    assert!(em_messages(&em).is_empty());
}

#[tokio::test]
async fn physics_beside_ml_reports_the_disagreement() {
    let mut p = build(&PredictorConfig {
        model: file_model("onnx", "mlp"),
        compare_physics: true,
        ..Default::default()
    });
    let rows: Vec<[f64; 6]> = heldout()
        .iter()
        .take(200)
        .map(|r| r[..6].try_into().unwrap())
        .collect();
    let preds = predict_all(&mut p, &rows).await;
    let params = twinflow::model::physics::PhysicsParams::default();
    for (x, pr) in rows.iter().zip(&preds) {
        let s = twinflow::model::physics::predict(
            &params,
            &twinflow::model::physics::CoilInputs::from_features(*x),
        )
        .unwrap();
        assert_eq!(pr.physics_residual.ucaot, Some(pr.ucaot - s.ucaot));
        assert_eq!(pr.physics_residual.ucaf, Some(pr.ucaf - s.ucaf));
        assert_eq!(
            pr.physics_residual.q_thermal,
            Some(pr.q_thermal - s.q_total)
        );
    }
    // The MLP learned the physics from noisy data: close on average.
    let mae = preds
        .iter()
        .map(|p| p.physics_residual.ucwot.unwrap().abs())
        .sum::<f64>()
        / preds.len() as f64;
    assert!(mae < 1.0, "mean |MLP − physics| UCWOT {mae} K");
    let json = Message::Prediction(preds[0].clone()).to_json();
    assert!(json["physics_residual"]["UCAOT"].is_number(), "{json}");
}

// ---- twinflow validate ---------------------------------------------------

fn twinflow() -> Command {
    Command::new(env!("CARGO_BIN_EXE_twinflow"))
}

/// A pipeline file in `dir` whose predictor serves `model` (a path relative
/// to `dir`) of `kind`.
fn pipeline(dir: &Path, kind: &str, model: &str, extra: &str) -> PathBuf {
    let p = dir.join("pipeline.yaml");
    std::fs::write(
        &p,
        format!(
            "name: models\nnodes:\n  - id: sim\n    type: simulator\n  - id: predict\n    \
             type: predictor\n    inputs: [sim]\n    model:\n      kind: {kind}\n      path: \
             {model}\n{extra}  - id: out\n    type: log\n    inputs: [predict]\n"
        ),
    )
    .unwrap();
    p
}

fn copy_model(dir: &Path, name: &str, as_name: &str) -> Value {
    std::fs::copy(
        models().join(format!("{name}.onnx")),
        dir.join(format!("{as_name}.onnx")),
    )
    .unwrap();
    serde_json::from_str(&std::fs::read_to_string(models().join(format!("{name}.json"))).unwrap())
        .unwrap()
}

fn write_meta(dir: &Path, as_name: &str, meta: &Value) {
    std::fs::write(
        dir.join(format!("{as_name}.json")),
        serde_json::to_string_pretty(meta).unwrap(),
    )
    .unwrap();
}

fn validate(p: &Path) -> (i32, String) {
    // From another directory: relative model paths resolve against the
    // pipeline file's folder, not the working directory.
    let out = twinflow()
        .arg("validate")
        .arg(p)
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn validate_accepts_fitting_models_and_refuses_each_misfit() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let good = copy_model(d, "ridge", "m");
    write_meta(d, "m", &good);
    let (code, err) = validate(&pipeline(d, "onnx", "m.onnx", ""));
    assert_eq!(code, 0, "{err}");
    copy_model(d, "gbm", "t");
    write_meta(d, "t", &copy_model(d, "gbm", "t"));
    let (code, err) = validate(&pipeline(d, "tree_ensemble", "t.onnx", ""));
    assert_eq!(code, 0, "{err}");

    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "five inputs",
            Box::new(|m| {
                m["inputs"].as_array_mut().unwrap().pop();
            }),
            "inputs must be the six features",
        ),
        (
            "an unknown input",
            Box::new(|m| m["inputs"][2]["name"] = "FLOW".into()),
            "input \"FLOW\" is not a feature",
        ),
        (
            "an unknown output",
            Box::new(|m| m["outputs"][0]["name"] = "UCXX".into()),
            "output \"UCXX\" is unknown",
        ),
        (
            "a unit that is not canonical",
            Box::new(|m| m["inputs"][2]["unit"] = "L/h".into()),
            "UCWF has unit \"L/h\" but the engine's unit for water flow is \"L/min\"",
        ),
        (
            "no training range",
            Box::new(|m| {
                m["inputs"][0].as_object_mut().unwrap().remove("max");
            }),
            "missing field `max`",
        ),
        (
            "no version",
            Box::new(|m| m["version"] = "".into()),
            "version must be non-empty",
        ),
    ];
    for (what, edit, needle) in cases {
        let mut m = good.clone();
        edit(&mut m);
        write_meta(d, "m", &m);
        let (code, err) = validate(&pipeline(d, "onnx", "m.onnx", ""));
        assert_eq!(code, 2, "{what}: {err}");
        assert!(err.contains(needle), "{what}: {needle:?} not in\n{err}");
        assert!(
            err.contains("pipeline.yaml:") && err.contains("transform \"predict\""),
            "{what}: names the file and node:\n{err}"
        );
    }

    // Missing metadata file.
    std::fs::remove_file(d.join("m.json")).unwrap();
    let (code, err) = validate(&pipeline(d, "onnx", "m.onnx", ""));
    assert_eq!(code, 2);
    assert!(
        err.contains("m.json") && err.contains("cannot read"),
        "{err}"
    );
    // Missing model file.
    let (code, err) = validate(&pipeline(d, "onnx", "nope.onnx", ""));
    assert_eq!(code, 2);
    assert!(err.contains("nope.onnx"), "{err}");
    // A model whose outputs do not match its metadata.
    write_meta(d, "m", &good);
    let mut two = good.clone();
    two["outputs"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"name": "Q_thermal", "unit": "kW"}));
    write_meta(d, "m", &two);
    let (code, err) = validate(&pipeline(d, "onnx", "m.onnx", ""));
    assert_eq!(code, 2);
    assert!(
        err.contains("outputs of [3] values") || err.contains("4 outputs"),
        "{err}"
    );
    // A tree model under kind onnx: tract cannot run it, and says which kind to use.
    let (code, err) = validate(&pipeline(d, "onnx", "t.onnx", "      metadata: t.json\n"));
    assert_eq!(code, 2);
    assert!(err.contains("tree_ensemble"), "{err}");
    // A neural model under kind tree_ensemble.
    write_meta(d, "m", &good);
    let (code, err) = validate(&pipeline(d, "tree_ensemble", "m.onnx", ""));
    assert_eq!(code, 2);
    assert!(
        err.contains("not supported in a tree_ensemble model"),
        "{err}"
    );
}

#[test]
fn simulate_writes_training_csv_and_needs_an_output() {
    let dir = tempfile::tempdir().unwrap();
    let csv_path = dir.path().join("d/train.csv");
    let out = twinflow()
        .args([
            "simulate", "--frames", "20", "--units", "3", "--seed", "5", "--csv",
        ])
        .arg(&csv_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut r = csv::Reader::from_path(&csv_path).unwrap();
    let header: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(header, twinflow::model::dataset::CSV_COLUMNS);
    assert_eq!(r.records().count(), 60);

    let out = twinflow()
        .args(["simulate", "--frames", "5"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--csv"));
}

// ---- hot swap ------------------------------------------------------------

fn labels(seen: &std::sync::Mutex<Vec<Message>>) -> Vec<String> {
    seen.lock()
        .unwrap()
        .iter()
        .filter_map(|m| match m {
            Message::Prediction(p) => Some(p.model.to_string()),
            _ => None,
        })
        .collect()
}

fn alert_codes(seen: &std::sync::Mutex<Vec<Message>>) -> Vec<String> {
    seen.lock()
        .unwrap()
        .iter()
        .filter_map(|m| match m {
            Message::Alert(a) => Some(a.code.clone()),
            _ => None,
        })
        .collect()
}

#[actix_rt::test]
async fn hot_swap_under_a_running_pipeline_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let set_version = |m: &mut Value, v: &str| {
        m["name"] = "hvac".into();
        m["version"] = v.into();
    };
    let mut v1 = copy_model(d, "ridge", "model");
    set_version(&mut v1, "1");
    write_meta(d, "model", &v1);

    // Unbounded and paced: the swaps happen while frames keep arriving,
    // however slow the machine; the test stops the pipeline at the end.
    let sim = SimulatorConfig {
        units: Some(2),
        rate_hz: 500.0,
        realtime: true,
        noise: NoiseConfig::default(),
        ..Default::default()
    };
    let pred_cfg = PredictorConfig {
        model: ModelConfig::Onnx(FileModelConfig {
            path: "model.onnx".into(),
            metadata: None,
        }),
        reload_check_ms: 20,
        ..Default::default()
    };
    let control = pred_cfg.control.clone();
    let sink = RecordingSinkConfig::default();
    let seen = sink.seen.clone();
    let mut s = spec(
        vec![
            node("sim", simulator::DESCRIPTOR, &[], 64, Arc::new(sim)),
            node(
                "predict",
                predictor::DESCRIPTOR,
                &["sim"],
                64,
                Arc::new(pred_cfg),
            ),
            node("sink", SINK, &["predict"], 64, Arc::new(sink)),
        ],
        None,
        32,
    );
    s.base_dir = d.to_path_buf();
    // The API's way to the handle: from the spec's config.
    let from_spec = predictor::control_of(&*s.nodes[1].config).expect("a predictor config");

    let engine = Engine::start(&s, settings()).unwrap();
    let view = engine.view();
    let stop = CancellationToken::new();
    let run = actix_rt::spawn(engine.run_until(stop.clone()));
    let wait = Duration::from_secs(20);
    let count = |v: &str| labels(&seen).iter().filter(|l| *l == v).count();

    assert!(eventually(wait, || count("hvac@1") >= 100).await);
    assert_eq!(control.current().as_deref(), Some("hvac@1"));

    // 1. New files, copied in place one after the other (not atomically):
    // the watch waits until they have settled.
    let mut v2 = copy_model(d, "mlp", "model");
    set_version(&mut v2, "2");
    write_meta(d, "model", &v2);
    assert!(
        eventually(wait, || count("hvac@2") >= 50).await,
        "v2 never served"
    );

    // 2. A broken file: reported, and the serving model stays.
    std::fs::write(d.join("model.onnx"), b"not a model").unwrap();
    assert!(
        eventually(wait, || alert_codes(&seen)
            .iter()
            .any(|c| c == "MODEL_RELOAD_FAILED"))
        .await
    );
    let before = count("hvac@2");
    assert!(eventually(wait, || count("hvac@2") > before + 20).await);

    // 3. Through the handle (the API's path), from other files; refused
    // when the version is the one serving.
    let other = tempfile::tempdir().unwrap();
    let mut v3 = copy_model(other.path(), "ridge", "m3");
    set_version(&mut v3, "2");
    write_meta(other.path(), "m3", &v3);
    let e = from_spec
        .load_from(other.path().join("m3.onnx"), None)
        .unwrap_err();
    assert!(e.to_string().contains("already serving"), "{e}");
    set_version(&mut v3, "3");
    write_meta(other.path(), "m3", &v3);
    assert_eq!(
        from_spec
            .load_from(other.path().join("m3.onnx"), None)
            .unwrap(),
        "hvac@3"
    );
    assert!(
        eventually(wait, || count("hvac@3") >= 50).await,
        "v3 never served"
    );

    stop.cancel();
    run.await
        .unwrap()
        .expect("a graceful stop drains the pipeline");

    let all = labels(&seen);
    let made = metric_value(
        &view.metrics.render(),
        "twinflow_component_received_events_total",
        &["component_id=\"sim\""],
    )
    .unwrap();
    assert_eq!(
        all.len() as f64,
        made,
        "every frame the simulator made was predicted exactly once across the swaps"
    );
    // Versions only move forward: a swap happens between two messages.
    let rank = |l: &str| {
        ["hvac@1", "hvac@2", "hvac@3"]
            .iter()
            .position(|x| *x == l)
            .unwrap()
    };
    assert!(
        all.windows(2).all(|w| rank(&w[0]) <= rank(&w[1])),
        "versions interleave"
    );
    assert_eq!(control.swaps(), 2);
    let codes = alert_codes(&seen);
    assert_eq!(codes.iter().filter(|c| *c == "MODEL_SWAPPED").count(), 2);
    // Every prediction of each unit arrived in order.
    let seen = seen.lock().unwrap();
    for unit in ["uc-01", "uc-02"] {
        let ts: Vec<_> = seen
            .iter()
            .filter_map(|m| match m {
                Message::Prediction(p) if &*p.unit == unit => Some(p.ts),
                _ => None,
            })
            .collect();
        assert_eq!(ts.len() * 2, all.len());
        assert!(ts.windows(2).all(|w| w[0] < w[1]), "{unit} out of order");
    }
}
