//! The metadata file that travels beside every ML model (`model.onnx` +
//! `model.json`).
//!
//! A model file alone does not say which column is which, in what unit, or
//! over what range it was trained, and a model fed litres per hour where it
//! learned litres per minute answers confidently and wrongly. So twinflow
//! refuses to serve a model without metadata that names the six inputs in
//! the model's column order with their canonical units and training ranges,
//! and its outputs with their units:
//!
//! ```json
//! {
//!   "name": "mlp", "version": "3",
//!   "inputs": [{"name": "UCWIT", "unit": "degC", "min": 6.4, "max": 13.7}, ...],
//!   "outputs": [{"name": "UCAOT", "unit": "degC"}, {"name": "UCWOT", "unit": "degC"},
//!               {"name": "UCAF", "unit": "m3/h"}],
//!   "training": {...}, "metrics": {...}
//! }
//! ```
//!
//! `training` and `metrics` are free-form provenance that twinflow keeps but
//! does not read.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::model::units::Quantity;
use crate::pipeline::message::{INPUT_FEATURES, OUTPUT_FEATURES};

/// Outputs a model may predict, in the order of [`Binding::outputs`].
pub const MODEL_OUTPUTS: [&str; 4] = [
    OUTPUT_FEATURES[0],
    OUTPUT_FEATURES[1],
    OUTPUT_FEATURES[2],
    "Q_thermal",
];

/// One input column of the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// Feature name: one of UCWIT, UCAIT, UCWF, UCAIH, AMBT, UCTSP.
    pub name: String,
    /// Its unit; must be the engine's canonical unit (degC, L/min, %RH).
    pub unit: String,
    /// Smallest value in the training data.
    pub min: f64,
    /// Largest value in the training data.
    pub max: f64,
}

/// One output column of the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    /// UCAOT, UCWOT, UCAF or Q_thermal.
    pub name: String,
    /// Its unit; must be canonical (degC, m3/h, kW).
    pub unit: String,
}

/// The contents of a model's metadata file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelMetadata {
    /// Model name, used in predictions as `name@version`.
    pub name: String,
    /// Model version; a hot swap is refused unless the file names one.
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The model's input columns, in the model's order.
    pub inputs: Vec<InputSpec>,
    /// The model's output columns, in the model's order.
    pub outputs: Vec<OutputSpec>,
    /// How it was trained (free-form).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub training: serde_json::Value,
    /// Held-out accuracy (free-form).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub metrics: serde_json::Value,
}

/// Why a model's metadata is refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MetadataError {
    #[error(
        "model metadata {path}: cannot read it ({reason}); every ML model needs a metadata \
         file beside it naming its inputs, units, outputs, version and training range"
    )]
    Missing { path: String, reason: String },
    #[error("model metadata {path}: not valid metadata JSON: {reason}")]
    Malformed { path: String, reason: String },
    #[error("model metadata {path}: {}", problems.join("; "))]
    DoesNotFit { path: String, problems: Vec<String> },
}

/// How a model's columns map onto the engine's features.
#[derive(Debug, Clone, PartialEq)]
pub struct Binding {
    /// For each model input column, the index of the engine feature
    /// ([`INPUT_FEATURES`]) it takes.
    pub input_order: [usize; 6],
    /// Training range per engine feature, in [`INPUT_FEATURES`] order.
    pub ranges: [(f64, f64); 6],
    /// For each of [`MODEL_OUTPUTS`], the model output column holding it.
    pub outputs: [Option<usize>; 4],
    /// Number of model output columns.
    pub n_outputs: usize,
}

impl Binding {
    /// Reorders the engine's feature row into the model's column order.
    #[inline]
    pub fn model_row(&self, x: &[f64; 6]) -> [f64; 6] {
        self.input_order.map(|i| x[i])
    }
}

/// Where the metadata of `model` is, unless the config names it: the model
/// path with its extension replaced by `.json`.
pub fn default_path(model: &Path) -> PathBuf {
    model.with_extension("json")
}

impl ModelMetadata {
    /// Reads and checks a metadata file.
    pub fn load(path: &Path) -> Result<(ModelMetadata, Binding), MetadataError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| MetadataError::Missing {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
        let meta: ModelMetadata =
            serde_json::from_str(&text).map_err(|e| MetadataError::Malformed {
                path: shown.clone(),
                reason: e.to_string(),
            })?;
        let binding = meta.bind().map_err(|problems| MetadataError::DoesNotFit {
            path: shown,
            problems,
        })?;
        Ok((meta, binding))
    }

    /// `name@version`, the model label in every prediction.
    pub fn label(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }

    /// Checks the metadata against what the engine feeds and expects, and
    /// maps the columns. Every problem is listed.
    pub fn bind(&self) -> Result<Binding, Vec<String>> {
        let mut problems = Vec::new();
        if self.name.trim().is_empty() || self.name.contains('@') {
            problems.push(format!(
                "name \"{}\" must be non-empty and without '@'",
                self.name
            ));
        }
        if self.version.trim().is_empty() {
            problems.push("version must be non-empty (predictions name it)".into());
        }

        let mut input_order = [usize::MAX; 6];
        let mut ranges = [(f64::NAN, f64::NAN); 6];
        let mut seen = [false; 6];
        if self.inputs.len() != INPUT_FEATURES.len() {
            problems.push(format!(
                "inputs must be the six features {} (in the model's column order), got {} \
                 inputs",
                INPUT_FEATURES.join(", "),
                self.inputs.len()
            ));
        }
        for (col, spec) in self.inputs.iter().enumerate() {
            let Some(idx) = INPUT_FEATURES.iter().position(|f| *f == spec.name) else {
                problems.push(format!(
                    "input \"{}\" is not a feature the engine has (expected {})",
                    spec.name,
                    INPUT_FEATURES.join(", ")
                ));
                continue;
            };
            if std::mem::replace(&mut seen[idx], true) {
                problems.push(format!("input {} is listed twice", spec.name));
                continue;
            }
            check_unit(&mut problems, "input", &spec.name, &spec.unit);
            if !(spec.min.is_finite() && spec.max.is_finite() && spec.min <= spec.max) {
                problems.push(format!(
                    "input {}: training range min {} .. max {} must be finite with min <= max",
                    spec.name, spec.min, spec.max
                ));
            }
            if col < 6 {
                input_order[col] = idx;
            }
            ranges[idx] = (spec.min, spec.max);
        }
        for (idx, name) in INPUT_FEATURES.iter().enumerate() {
            if !seen[idx] && self.inputs.len() == INPUT_FEATURES.len() {
                problems.push(format!("input {name} is missing"));
            }
        }

        let mut outputs = [None; 4];
        if self.outputs.is_empty() {
            problems.push("outputs is empty".into());
        }
        for (col, spec) in self.outputs.iter().enumerate() {
            let Some(idx) = MODEL_OUTPUTS.iter().position(|f| *f == spec.name) else {
                problems.push(format!(
                    "output \"{}\" is unknown (expected {})",
                    spec.name,
                    MODEL_OUTPUTS.join(", ")
                ));
                continue;
            };
            if outputs[idx].replace(col).is_some() {
                problems.push(format!("output {} is listed twice", spec.name));
            }
            check_unit(&mut problems, "output", &spec.name, &spec.unit);
        }
        for (idx, name) in OUTPUT_FEATURES.iter().enumerate() {
            if outputs[idx].is_none() && self.outputs.iter().all(|o| o.name != *name) {
                problems.push(format!(
                    "output {name} is missing: a model must predict UCAOT, UCWOT and UCAF \
                     (Q_thermal is optional: it is computed from UCWOT otherwise)"
                ));
            }
        }
        if problems.is_empty() {
            Ok(Binding {
                input_order,
                ranges,
                outputs,
                n_outputs: self.outputs.len(),
            })
        } else {
            Err(problems)
        }
    }
}

fn check_unit(problems: &mut Vec<String>, what: &str, name: &str, unit: &str) {
    let Some(q) = Quantity::of_feature(name) else {
        return;
    };
    if unit != q.canonical() {
        problems.push(format!(
            "{what} {name} has unit \"{unit}\" but the engine's unit for {q} is \"{}\": \
             retrain or export the model in canonical units (twinflow converts at the \
             edge, never inside a model)",
            q.canonical()
        ));
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn example() -> ModelMetadata {
        let unit = |n: &str| Quantity::of_feature(n).unwrap().canonical().to_string();
        ModelMetadata {
            name: "m".into(),
            version: "1".into(),
            description: None,
            inputs: INPUT_FEATURES
                .iter()
                .map(|n| InputSpec {
                    name: n.to_string(),
                    unit: unit(n),
                    min: 0.0,
                    max: 100.0,
                })
                .collect(),
            outputs: OUTPUT_FEATURES
                .iter()
                .map(|n| OutputSpec {
                    name: n.to_string(),
                    unit: unit(n),
                })
                .collect(),
            training: serde_json::Value::Null,
            metrics: serde_json::Value::Null,
        }
    }

    #[test]
    fn binds_canonical_metadata_in_any_column_order() {
        let mut m = example();
        m.inputs.swap(0, 5);
        m.outputs.swap(0, 2);
        let b = m.bind().unwrap();
        assert_eq!(b.input_order, [5, 1, 2, 3, 4, 0]);
        assert_eq!(b.outputs, [Some(2), Some(1), Some(0), None]);
        let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        assert_eq!(b.model_row(&x), [6.0, 2.0, 3.0, 4.0, 5.0, 1.0]);
        assert_eq!(m.label(), "m@1");
    }

    #[test]
    fn refuses_each_kind_of_misfit_with_a_reason() {
        type Edit = Box<dyn Fn(&mut ModelMetadata)>;
        let cases: Vec<(Edit, &str)> = vec![
            (Box::new(|m| m.inputs.truncate(5)), "six features"),
            (Box::new(|m| m.inputs[2].name = "FLOW".into()), "\"FLOW\""),
            (Box::new(|m| m.inputs[2].unit = "L/h".into()), "\"L/h\""),
            (Box::new(|m| m.inputs[1] = m.inputs[0].clone()), "twice"),
            (Box::new(|m| m.inputs[0].min = f64::NAN), "training range"),
            (Box::new(|m| m.inputs[0].min = 200.0), "min <= max"),
            (Box::new(|m| m.outputs[0].name = "UCXX".into()), "unknown"),
            (Box::new(|m| m.outputs.truncate(2)), "UCAF is missing"),
            (Box::new(|m| m.outputs[2].unit = "cfm".into()), "\"cfm\""),
            (Box::new(|m| m.version = " ".into()), "version"),
            (Box::new(|m| m.name = "a@b".into()), "'@'"),
        ];
        for (edit, needle) in cases {
            let mut m = example();
            edit(&mut m);
            let errs = m.bind().unwrap_err().join("; ");
            assert!(errs.contains(needle), "{needle:?} not in {errs}");
        }
    }

    #[test]
    fn load_reports_missing_and_malformed_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.json");
        let e = ModelMetadata::load(&p).unwrap_err().to_string();
        assert!(e.contains("cannot read") && e.contains("m.json"), "{e}");
        std::fs::write(&p, "{\"name\": 1}").unwrap();
        let e = ModelMetadata::load(&p).unwrap_err().to_string();
        assert!(e.contains("not valid metadata JSON"), "{e}");
        std::fs::write(&p, serde_json::to_string(&example()).unwrap()).unwrap();
        assert!(ModelMetadata::load(&p).is_ok());
        assert_eq!(default_path(Path::new("a/b.onnx")), Path::new("a/b.json"));
    }
}
