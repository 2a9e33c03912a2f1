//! `POST /predict`: the request's checks (every bad field reported at once)
//! and the model that answers it — the one the pipeline's predictor runs.
//!
//! The predictor is found by node id in the validated pipeline and its
//! config is downcast to [`PredictorConfig`]. The physics model is stateless
//! and evaluated directly, without a lock. An ML model is loaded here from
//! the predictor's configured files on first use (its runtime copy lives
//! inside the running predictor, out of reach); when the predictor's
//! [`ModelControl`] reports a new version, the files are loaded again.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::config::PipelineSpec;
use crate::model::dataset::q_thermal;
use crate::model::physics::{self, CoilInputs, CoilState, PhysicsError, PhysicsParams};
use crate::model::serving::{FileKind, LoadedModel, ModelFiles, Outputs4};
use crate::pipeline::message::{
    FlagReason, InputFlag, Inputs, Measured, Outputs, Prediction, INPUT_FEATURES, OUTPUT_FEATURES,
};
use crate::sources::mqtt_ingest::kind_of;
use crate::transforms::predictor::{ModelConfig, ModelControl, PredictorConfig};

/// One problem with one field of the request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldError {
    /// The field (`UCWIT`, ...); empty for the body as a whole.
    pub field: String,
    pub message: String,
}

impl FieldError {
    fn new(field: &str, message: impl Into<String>) -> Self {
        FieldError {
            field: field.to_string(),
            message: message.into(),
        }
    }
}

/// Why a request cannot be answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Rejection {
    /// The body is not JSON at all (400).
    Syntax(String),
    /// The body is JSON but some fields are wrong (422).
    Fields(Vec<FieldError>),
}

/// A checked request.
#[derive(Debug, Clone, PartialEq)]
pub struct PredictRequest {
    pub inputs: [f64; 6],
    pub measured: [Option<f64>; 3],
    pub unit: Option<String>,
    pub ts: Option<DateTime<Utc>>,
}

fn number(field: &str, v: &Value, errors: &mut Vec<FieldError>) -> Option<f64> {
    match v.as_f64() {
        Some(x) if x.is_finite() => Some(x),
        Some(x) => {
            errors.push(FieldError::new(
                field,
                format!("must be a finite number, got {x}"),
            ));
            None
        }
        None => {
            let hint = match v {
                Value::String(s) => match s.trim().parse::<f64>() {
                    Ok(x) if x.is_finite() => format!(" ({s:?}: numbers are not quoted)"),
                    Ok(_) => format!(" ({s:?}: NaN and infinities are not readings)"),
                    Err(_) => format!(" ({s:?})"),
                },
                _ => String::new(),
            };
            errors.push(FieldError::new(
                field,
                format!("must be a number, got {}{hint}", kind_of(v)),
            ));
            None
        }
    }
}

/// Checks a request body: the six inputs (required, finite, within the
/// physical range of a unit cooler), optional measured outputs, optional
/// `unit` and `ts`, nothing else.
pub fn parse_request(body: &[u8]) -> Result<PredictRequest, Rejection> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| Rejection::Syntax(format!("the body is not valid JSON: {e}")))?;
    let Value::Object(map) = v else {
        return Err(Rejection::Fields(vec![FieldError::new(
            "",
            format!("the body must be a JSON object, got {}", kind_of(&v)),
        )]));
    };
    let mut errors = Vec::new();
    let mut inputs = [f64::NAN; 6];
    let mut present = [false; 6];
    for (i, name) in INPUT_FEATURES.iter().enumerate() {
        match map.get(*name) {
            None => errors.push(FieldError::new(name, "is required")),
            Some(v) => {
                if let Some(x) = number(name, v, &mut errors) {
                    inputs[i] = x;
                    present[i] = true;
                }
            }
        }
    }
    let mut measured = [None; 3];
    for (i, name) in OUTPUT_FEATURES.iter().enumerate() {
        match map.get(*name) {
            None | Some(Value::Null) => {}
            Some(v) => measured[i] = number(name, v, &mut errors),
        }
    }
    let unit = match map.get("unit") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 128 => Some(s.clone()),
        Some(v) => {
            errors.push(FieldError::new(
                "unit",
                format!(
                    "must be a unit id (1 to 128 characters), got {}",
                    kind_of(v)
                ),
            ));
            None
        }
    };
    let ts = match map.get("ts") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => match DateTime::parse_from_rfc3339(s) {
            Ok(t) => Some(t.with_timezone(&Utc)),
            Err(e) => {
                errors.push(FieldError::new(
                    "ts",
                    format!("must be an RFC 3339 time: {e}"),
                ));
                None
            }
        },
        Some(v) => {
            errors.push(FieldError::new(
                "ts",
                format!("must be an RFC 3339 time string, got {}", kind_of(v)),
            ));
            None
        }
    };
    let known = |k: &str| {
        INPUT_FEATURES.contains(&k) || OUTPUT_FEATURES.contains(&k) || k == "unit" || k == "ts"
    };
    for k in map.keys().filter(|k| !known(k)) {
        errors.push(FieldError::new(
            k,
            format!(
                "is not a known field (inputs: {}; optional: {}, unit, ts)",
                INPUT_FEATURES.join(", "),
                OUTPUT_FEATURES.join(", ")
            ),
        ));
    }
    // Range checks only for the fields that are numbers: a missing field is
    // already reported once.
    for e in physics::input_errors(&CoilInputs::from_features(inputs)) {
        if let PhysicsError::OutOfRange {
            field,
            value,
            reason,
        } = e
        {
            let i = INPUT_FEATURES.iter().position(|f| *f == field);
            if i.is_some_and(|i| present[i]) {
                errors.push(FieldError::new(
                    field,
                    format!("{value} is out of range: {reason}"),
                ));
            }
        }
    }
    if !errors.is_empty() {
        errors.sort_by_key(|e| field_order(&e.field));
        return Err(Rejection::Fields(errors));
    }
    Ok(PredictRequest {
        inputs,
        measured,
        unit,
        ts,
    })
}

/// Errors listed in the order of the payload's contract.
fn field_order(f: &str) -> usize {
    INPUT_FEATURES
        .iter()
        .chain(OUTPUT_FEATURES.iter())
        .chain(["unit", "ts"].iter())
        .position(|k| *k == f)
        .unwrap_or(usize::MAX)
}

/// An answer: the prediction in its contract form, plus the coil's state
/// for the physics model (regime, sensible/latent split) for the dashboard.
#[derive(Debug, Serialize)]
pub struct PredictAnswer {
    #[serde(flatten)]
    pub prediction: Prediction,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coil: Option<CoilState>,
}

/// The model behind `POST /predict`.
pub enum PredictModel {
    Physics {
        params: PhysicsParams,
        control: ModelControl,
    },
    File(Box<FileModel>),
    /// No usable predictor: why, for the 503 answer.
    Unavailable(String),
}

/// An ML model served from the predictor's files.
pub struct FileModel {
    files: ModelFiles,
    control: ModelControl,
    slot: Mutex<Option<Slot>>,
}

struct Slot {
    model: LoadedModel,
    out: Vec<Outputs4>,
    /// The serving label we last reloaded for (one reload per new version).
    followed: Option<String>,
}

impl std::fmt::Debug for PredictModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PredictModel::Physics { .. } => f.write_str("physics"),
            PredictModel::File(m) => write!(f, "file({})", m.files.model.display()),
            PredictModel::Unavailable(why) => write!(f, "unavailable({why})"),
        }
    }
}

impl PredictModel {
    /// The model of the predictor node `id`, or of the pipeline's only
    /// predictor when `id` is `None`.
    pub fn resolve(id: Option<&str>, spec: &PipelineSpec) -> PredictModel {
        let candidates: Vec<_> = spec
            .nodes
            .iter()
            .filter(|n| id.is_none_or(|id| n.id == id))
            .filter(|n| id.is_some() || n.descriptor.type_name == "predictor")
            .collect();
        let node = match (id, candidates.as_slice()) {
            (_, [n]) => *n,
            (Some(id), _) => {
                return PredictModel::Unavailable(format!("no node \"{id}\" in this pipeline"))
            }
            (None, []) => {
                return PredictModel::Unavailable(
                    "this pipeline has no predictor node (set `predictor:` on the api node)".into(),
                )
            }
            (None, _) => {
                return PredictModel::Unavailable(
                    "this pipeline has several predictors: name one with `predictor:` on the \
                     api node"
                        .into(),
                )
            }
        };
        let Some(cfg) = node
            .config
            .as_any()
            .and_then(|a| a.downcast_ref::<PredictorConfig>())
        else {
            return PredictModel::Unavailable(format!(
                "node \"{}\" is a {}, not a predictor",
                node.id, node.descriptor.type_name
            ));
        };
        let control = cfg.control.clone();
        let resolve = |p: &std::path::Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                spec.base_dir.join(p)
            }
        };
        let (kind, f) = match &cfg.model {
            ModelConfig::Physics { params } => {
                return PredictModel::Physics {
                    params: *params,
                    control,
                }
            }
            ModelConfig::Onnx(f) => (FileKind::Onnx, f),
            ModelConfig::TreeEnsemble(f) => (FileKind::TreeEnsemble, f),
        };
        let files = ModelFiles::new(kind, resolve(&f.path), f.metadata.as_deref().map(resolve));
        PredictModel::File(Box::new(FileModel {
            files,
            control,
            slot: Mutex::new(None),
        }))
    }

    /// Predicts one request; `Err` is a reason the model cannot answer now.
    pub fn predict(&self, req: &PredictRequest) -> Result<PredictAnswer, String> {
        let x = req.inputs;
        let (out, model, coil, flags) = match self {
            PredictModel::Physics { params, control } => {
                let s = physics::predict(params, &CoilInputs::from_features(x))
                    .map_err(|e| e.to_string())?;
                let out = Outputs4 {
                    ucaot: s.ucaot,
                    ucwot: s.ucwot,
                    ucaf: s.ucaf,
                    q_thermal: s.q_total,
                };
                let label: Arc<str> = control
                    .current()
                    .map(Arc::from)
                    .unwrap_or_else(|| Arc::from("physics@1"));
                (out, label, Some(s), Vec::new())
            }
            PredictModel::File(m) => {
                let (out, label, flags) = m.predict(&x)?;
                (out, label, None, flags)
            }
            PredictModel::Unavailable(why) => return Err(why.clone()),
        };
        let [ma, mw, mf] = req.measured;
        let residual = Outputs {
            ucaot: ma.map(|m| m - out.ucaot),
            ucwot: mw.map(|m| m - out.ucwot),
            ucaf: mf.map(|m| m - out.ucaf),
            q_thermal: mw.map(|m| q_thermal(x[0], m, x[2]) - out.q_thermal),
        };
        let inputs = Inputs {
            ucwit: x[0],
            ucait: x[1],
            ucwf: x[2],
            ucaih: x[3],
            ambt: x[4],
            uctsp: x[5],
        };
        Ok(PredictAnswer {
            prediction: Prediction {
                unit: Arc::from(req.unit.as_deref().unwrap_or("manual")),
                ts: req.ts.unwrap_or_else(Utc::now),
                ucaot: out.ucaot,
                ucwot: out.ucwot,
                ucaf: out.ucaf,
                q_thermal: out.q_thermal,
                model,
                inputs,
                measured: Measured {
                    ucaot: ma,
                    ucwot: mw,
                    ucaf: mf,
                },
                flags,
                residual,
                physics_residual: Outputs::default(),
            },
            coil,
        })
    }
}

impl FileModel {
    fn predict(&self, x: &[f64; 6]) -> Result<(Outputs4, Arc<str>, Vec<InputFlag>), String> {
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        let serving = self.control.current();
        let stale = match &*slot {
            None => true,
            Some(s) => {
                serving.is_some()
                    && serving.as_deref() != Some(&*s.model.label)
                    && s.followed != serving
            }
        };
        if stale {
            match LoadedModel::load(&self.files) {
                Ok(model) => {
                    *slot = Some(Slot {
                        model,
                        out: Vec::with_capacity(1),
                        followed: serving.clone(),
                    })
                }
                // Keep answering with the version we have; say why not newer.
                Err(e) if slot.is_some() => {
                    tracing::warn!(error = %e, "POST /predict keeps its loaded model");
                    if let Some(s) = slot.as_mut() {
                        s.followed = serving.clone();
                    }
                }
                Err(e) => return Err(format!("the model cannot be loaded: {e}")),
            }
        }
        let s = slot.as_mut().expect("loaded above");
        let mut out = std::mem::take(&mut s.out);
        let r = s.model.predict(std::slice::from_ref(x), &mut out);
        let y = out.first().copied();
        s.out = out;
        r?;
        let y = y.ok_or("the model returned no row")?;
        let flags = INPUT_FEATURES
            .iter()
            .zip(x)
            .zip(s.model.binding.ranges)
            .filter(|((_, v), (lo, hi))| *v < lo || *v > hi)
            .map(|((name, v), (lo, hi))| InputFlag {
                feature: name.to_string(),
                value: *v,
                reason: FlagReason::OutsideTrainingRange,
                min: lo.is_finite().then_some(lo),
                max: hi.is_finite().then_some(hi),
                clamped_to: None,
            })
            .collect();
        Ok((y, s.model.label.clone(), flags))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str =
        r#"{"UCWIT":7.5,"UCAIT":25.0,"UCWF":15.0,"UCAIH":50.0,"AMBT":22.0,"UCTSP":21.0}"#;

    fn fields(body: &str) -> Vec<FieldError> {
        match parse_request(body.as_bytes()) {
            Err(Rejection::Fields(f)) => f,
            other => panic!("expected field errors, got {other:?}"),
        }
    }

    #[test]
    fn the_example_parses() {
        let r = parse_request(EXAMPLE.as_bytes()).unwrap();
        assert_eq!(r.inputs, [7.5, 25.0, 15.0, 50.0, 22.0, 21.0]);
        assert_eq!(r.unit, None);
    }

    #[test]
    fn every_bad_field_is_listed_in_contract_order() {
        let f = fields(
            r#"{"UCWIT":"NaN","UCWF":-1,"UCAIH":null,"AMBT":200,"UCTSP":21,"FOO":1,
                "ts":"yesterday"}"#,
        );
        let names: Vec<&str> = f.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            names,
            ["UCWIT", "UCAIT", "UCWF", "UCAIH", "AMBT", "ts", "FOO"]
        );
        assert!(
            f[0].message.contains("must be a number, got a string"),
            "{f:?}"
        );
        assert_eq!(f[1].message, "is required");
        assert!(f[2].message.contains("out of range"), "{f:?}");
        assert!(f[3].message.contains("got null"), "{f:?}");
    }

    #[test]
    fn not_json_is_a_syntax_error_and_not_an_object_a_field_error() {
        assert!(matches!(
            parse_request(b"{\"UCWIT\": NaN}"),
            Err(Rejection::Syntax(_))
        ));
        assert_eq!(fields("[1,2]")[0].field, "");
    }

    #[test]
    fn physics_answers_like_the_model_itself() {
        let m = PredictModel::Physics {
            params: PhysicsParams::default(),
            control: ModelControl::default(),
        };
        let mut req = parse_request(EXAMPLE.as_bytes()).unwrap();
        req.measured[1] = Some(11.0);
        let a = m.predict(&req).unwrap();
        let s = physics::predict(&PhysicsParams::default(), &CoilInputs::EXAMPLE).unwrap();
        assert_eq!(a.prediction.ucaot, s.ucaot);
        assert_eq!(a.prediction.q_thermal, s.q_total);
        assert_eq!(&*a.prediction.model, "physics@1");
        assert_eq!(a.prediction.residual.ucwot, Some(11.0 - s.ucwot));
        let v = serde_json::to_value(&a).unwrap();
        assert_eq!(v["unit"], "manual");
        assert!(v["coil"]["regime"].is_string(), "{v}");
    }
}
