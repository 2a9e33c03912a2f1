//! An ML model ready to serve: the model file, its metadata, and the
//! evaluator for its kind, behind one `predict` over rows of the engine's
//! six inputs.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use crate::model::dataset::q_thermal;
use crate::model::metadata::{self, Binding, MetadataError, ModelMetadata};
use crate::model::onnx::{OnnxError, OnnxModel};
use crate::model::tree::{TreeError, TreeModel};

/// Which evaluator a model file needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// Linear and neural models, run by tract.
    Onnx,
    /// `ai.onnx.ml` TreeEnsembleRegressor graphs, run by [`TreeModel`].
    TreeEnsemble,
}

impl FileKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FileKind::Onnx => "onnx",
            FileKind::TreeEnsemble => "tree_ensemble",
        }
    }
}

/// Why a model could not be loaded.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error(transparent)]
    Onnx(#[from] OnnxError),
    #[error(transparent)]
    Tree(#[from] TreeError),
    #[error("model {path}: {message}")]
    Mismatch { path: String, message: String },
    #[error("model {path}: cannot read it: {reason}")]
    Missing { path: String, reason: String },
}

/// Where a model and its metadata live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFiles {
    pub kind: FileKind,
    pub model: PathBuf,
    pub metadata: PathBuf,
}

impl ModelFiles {
    pub fn new(kind: FileKind, model: PathBuf, metadata: Option<PathBuf>) -> Self {
        let metadata = metadata.unwrap_or_else(|| metadata::default_path(&model));
        ModelFiles {
            kind,
            model,
            metadata,
        }
    }

    /// Modification times of both files, to notice a new version.
    pub fn mtimes(&self) -> Option<(SystemTime, SystemTime)> {
        let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        Some((m(&self.model)?, m(&self.metadata)?))
    }
}

enum Evaluator {
    Onnx(OnnxModel),
    Trees(TreeModel),
}

/// The four values every prediction carries, in canonical units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outputs4 {
    pub ucaot: f64,
    pub ucwot: f64,
    pub ucaf: f64,
    pub q_thermal: f64,
}

/// A loaded model and its checked metadata.
pub struct LoadedModel {
    pub metadata: ModelMetadata,
    pub binding: Binding,
    /// `name@version`.
    pub label: Arc<str>,
    pub files: ModelFiles,
    /// Modification times when it was loaded.
    pub mtimes: Option<(SystemTime, SystemTime)>,
    eval: Evaluator,
    rows: Vec<f64>,
    raw: Vec<f64>,
}

impl std::fmt::Debug for LoadedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedModel")
            .field("label", &self.label)
            .field("files", &self.files)
            .finish()
    }
}

impl LoadedModel {
    /// Reads the metadata, loads the model and checks that they agree.
    pub fn load(files: &ModelFiles) -> Result<LoadedModel, ModelError> {
        let mtimes = files.mtimes();
        if !files.model.is_file() {
            return Err(ModelError::Missing {
                path: files.model.display().to_string(),
                reason: "no such file".into(),
            });
        }
        let (metadata, binding) = ModelMetadata::load(&files.metadata)?;
        let path = files.model.display().to_string();
        let mismatch = |message: String| ModelError::Mismatch {
            path: path.clone(),
            message,
        };
        let eval = match files.kind {
            FileKind::Onnx => Evaluator::Onnx(OnnxModel::load(&files.model, binding.n_outputs)?),
            FileKind::TreeEnsemble => {
                let t = TreeModel::load(&files.model)?;
                if t.n_outputs != binding.n_outputs {
                    return Err(mismatch(format!(
                        "it has {} outputs but its metadata names {}",
                        t.n_outputs, binding.n_outputs
                    )));
                }
                Evaluator::Trees(t)
            }
        };
        let n_inputs = match &eval {
            Evaluator::Onnx(m) => m.n_inputs,
            Evaluator::Trees(t) => t.n_inputs,
        };
        if n_inputs != binding.input_order.len() {
            return Err(mismatch(format!(
                "it takes {n_inputs} input columns but its metadata names {}",
                binding.input_order.len()
            )));
        }
        Ok(LoadedModel {
            label: Arc::from(metadata.label()),
            metadata,
            binding,
            files: files.clone(),
            mtimes,
            eval,
            rows: Vec::new(),
            raw: Vec::new(),
        })
    }

    /// Predicts every row (engine feature order) into `out` (cleared).
    /// Q_thermal comes from the model when it predicts it, else from the
    /// predicted UCWOT and the inputs, by the contract's definition.
    pub fn predict(&mut self, rows: &[[f64; 6]], out: &mut Vec<Outputs4>) -> Result<(), String> {
        out.clear();
        if rows.is_empty() {
            return Ok(());
        }
        self.rows.clear();
        for r in rows {
            self.rows.extend_from_slice(&self.binding.model_row(r));
        }
        match &mut self.eval {
            Evaluator::Onnx(m) => m
                .predict(&self.rows, &mut self.raw)
                .map_err(|e| e.to_string())?,
            Evaluator::Trees(t) => t.predict(&self.rows, &mut self.raw),
        }
        let k = self.binding.n_outputs;
        let [a, w, f, q] = self.binding.outputs;
        let (a, w, f) = (a.expect("bound"), w.expect("bound"), f.expect("bound"));
        for (x, y) in rows.iter().zip(self.raw.chunks_exact(k)) {
            let ucwot = y[w];
            out.push(Outputs4 {
                ucaot: y[a],
                ucwot,
                ucaf: y[f],
                q_thermal: match q {
                    Some(i) => y[i],
                    None => q_thermal(x[0], ucwot, x[2]),
                },
            });
        }
        Ok(())
    }
}
