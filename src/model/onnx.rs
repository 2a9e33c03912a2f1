//! Linear and neural ONNX models, run by tract.
//!
//! skl2onnx's exports need two adjustments before tract can serve them:
//!
//! * **`Scaler`** (`ai.onnx.ml`, what a `StandardScaler` in a pipeline
//!   becomes) is not a tract operator. It is rewritten in the protobuf, before
//!   tract sees the model, into what it computes: `Cast(float)` →
//!   `Sub(offset)` → `Mul(scale)`. The same arithmetic in the same precision
//!   as onnxruntime's Scaler, so outputs agree to the last f32 ulp or two.
//! * **The `[-1, 1]` reshape** that skl2onnx appends to an `MLPRegressor`
//!   whatever its number of outputs (a multi-output MLP's `[n, k]` result
//!   becomes `[n·k, 1]`, and the declared output shape `[?, 1]` is wrong).
//!   A reshape never moves data: row-major `[n·k, 1]` holds the same numbers
//!   in the same order as `[n, k]`. So the model is run with its declared
//!   output shapes ignored, and the output is read as `n·k` numbers, `k`
//!   per row, `k` taken from the metadata; anything but `n·k` numbers is an
//!   error. No graph surgery needed for that one.
//!
//! A model with several outputs (one tensor per target) is read the same
//! way, output after output.

use std::path::Path;
use std::sync::Arc;

use tract_onnx::pb;
use tract_onnx::prelude::*;

/// Why an ONNX model could not be loaded or run.
#[derive(Debug, Clone, thiserror::Error)]
#[error("ONNX model {path}: {message}")]
pub struct OnnxError {
    pub path: String,
    pub message: String,
}

pub(crate) const ONNX_FLOAT: i32 = 1;
pub(crate) const ONNX_DOUBLE: i32 = 11;

/// A loaded, optimised ONNX model with a symbolic batch dimension.
pub struct OnnxModel {
    plan: Arc<TypedSimplePlan>,
    /// Kept between calls: spawning a state per call costs allocations that
    /// show at one row per call.
    state: TypedSimpleState,
    input_f64: bool,
    path: String,
    pub n_inputs: usize,
    pub n_outputs: usize,
}

impl std::fmt::Debug for OnnxModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxModel")
            .field("path", &self.path)
            .field("n_inputs", &self.n_inputs)
            .field("n_outputs", &self.n_outputs)
            .finish()
    }
}

fn float_tensor(name: &str, values: &[f32]) -> pb::TensorProto {
    pb::TensorProto {
        name: name.to_string(),
        dims: vec![values.len() as i64],
        data_type: ONNX_FLOAT,
        float_data: values.to_vec(),
        ..Default::default()
    }
}

/// Rewrites the operators tract lacks into ones it has. Returns what was
/// rewritten, for the log.
pub fn rewrite_for_tract(proto: &mut pb::ModelProto) -> Result<Vec<String>, String> {
    let Some(g) = proto.graph.as_mut() else {
        return Err("the model has no graph".into());
    };
    let mut notes = Vec::new();
    let mut nodes = Vec::with_capacity(g.node.len() + 4);
    let mut inits = Vec::new();
    for (i, node) in std::mem::take(&mut g.node).into_iter().enumerate() {
        if node.op_type != "Scaler" {
            nodes.push(node);
            continue;
        }
        let attr = |n: &str| -> Vec<f32> {
            node.attribute
                .iter()
                .find(|a| a.name == n)
                .map(|a| a.floats.clone())
                .unwrap_or_default()
        };
        let (offset, scale) = (attr("offset"), attr("scale"));
        if offset.is_empty() || scale.is_empty() {
            return Err(format!("Scaler \"{}\" lacks offset or scale", node.name));
        }
        let [x] = node.input.as_slice() else {
            return Err(format!("Scaler \"{}\" must have one input", node.name));
        };
        let [y] = node.output.as_slice() else {
            return Err(format!("Scaler \"{}\" must have one output", node.name));
        };
        let p = format!("twinflow_scaler{i}");
        inits.push(float_tensor(&format!("{p}_offset"), &offset));
        inits.push(float_tensor(&format!("{p}_scale"), &scale));
        let mk = |op: &str, inputs: Vec<String>, output: String, attribute| pb::NodeProto {
            op_type: op.into(),
            name: format!("{p}_{op}"),
            input: inputs,
            output: vec![output],
            attribute,
            ..Default::default()
        };
        nodes.push(mk(
            "Cast",
            vec![x.clone()],
            format!("{p}_x"),
            vec![pb::AttributeProto {
                name: "to".into(),
                i: ONNX_FLOAT as i64,
                r#type: 2, // INT
                ..Default::default()
            }],
        ));
        nodes.push(mk(
            "Sub",
            vec![format!("{p}_x"), format!("{p}_offset")],
            format!("{p}_centred"),
            vec![],
        ));
        nodes.push(mk(
            "Mul",
            vec![format!("{p}_centred"), format!("{p}_scale")],
            y.clone(),
            vec![],
        ));
        notes.push(format!(
            "Scaler \"{}\" rewritten as Cast, Sub, Mul",
            node.name
        ));
    }
    g.node = nodes;
    g.initializer.extend(inits);
    Ok(notes)
}

/// The graph's one data input (not an initializer): whether it takes
/// doubles (else floats), and its fixed feature width. Shared by the tract
/// path and the tree-ensemble evaluator.
pub(crate) fn graph_input(
    g: &pb::GraphProto,
) -> Result<(&pb::ValueInfoProto, bool, usize), String> {
    let inits: Vec<&str> = g.initializer.iter().map(|t| t.name.as_str()).collect();
    let inputs: Vec<&pb::ValueInfoProto> = g
        .input
        .iter()
        .filter(|i| !inits.contains(&i.name.as_str()))
        .collect();
    let [input] = inputs.as_slice() else {
        return Err(format!(
            "the graph must have one input (rows of features), it has {}",
            inputs.len()
        ));
    };
    let pb::type_proto::Value::TensorType(t) = input
        .r#type
        .as_ref()
        .and_then(|t| t.value.as_ref())
        .ok_or("the input is not a tensor")?;
    let f64_in = match t.elem_type {
        ONNX_FLOAT => false,
        ONNX_DOUBLE => true,
        other => return Err(format!("input element type {other}: float or double")),
    };
    let width = t
        .shape
        .as_ref()
        .and_then(|s| s.dim.last())
        .and_then(|d| match d.value {
            Some(pb::tensor_shape_proto::dimension::Value::DimValue(v)) if v > 0 => {
                Some(v as usize)
            }
            _ => None,
        })
        .ok_or("the input's feature dimension must be fixed")?;
    Ok((input, f64_in, width))
}

impl OnnxModel {
    /// Loads a model that maps `[n, n_inputs]` to `n_outputs` values per row.
    pub fn load(path: &Path, n_outputs: usize) -> Result<OnnxModel, OnnxError> {
        let shown = path.display().to_string();
        let err = |message: String| OnnxError {
            path: shown.clone(),
            message,
        };
        let onnx = tract_onnx::onnx()
            .with_ignore_output_shapes(true)
            .with_ignore_value_info(true);
        let mut proto = onnx
            .proto_model_for_path(path)
            .map_err(|e| err(format!("cannot read it as ONNX: {e}")))?;
        let notes = rewrite_for_tract(&mut proto).map_err(err)?;
        for n in notes {
            tracing::debug!(model = %shown, "{n}");
        }
        let graph = proto
            .graph
            .as_ref()
            .ok_or_else(|| err("the model has no graph".into()))?;
        let (_, input_f64, n_inputs) = graph_input(graph).map_err(err)?;
        let plan = (|| -> TractResult<_> {
            let mut model = onnx.model_for_proto_model(&proto)?;
            let batch = model.symbols.sym("N");
            let dt = if input_f64 {
                f64::datum_type()
            } else {
                f32::datum_type()
            };
            let shape: TVec<TDim> = tvec![batch.into(), (n_inputs as i64).into()];
            model.set_input_fact(0, InferenceFact::dt_shape(dt, shape))?;
            model.into_optimized()?.into_runnable()
        })()
        .map_err(|e| {
            err(format!(
                "tract cannot run it: {e:#} (kind: onnx serves linear and neural models; \
                 tree ensembles take kind: tree_ensemble)"
            ))
        })?;
        let state = TypedSimpleState::new(&plan).map_err(|e| err(e.to_string()))?;
        let mut m = OnnxModel {
            plan,
            state,
            input_f64,
            path: shown,
            n_inputs,
            n_outputs,
        };
        // A trial row: a model whose outputs do not match its metadata is
        // refused at load, not at the first message.
        let mut out = Vec::new();
        m.predict(&vec![1.0; n_inputs], &mut out)?;
        Ok(m)
    }

    /// Evaluates `rows` (row-major, `n_inputs` per row) into `out`
    /// (`n_outputs` per row; resized).
    pub fn predict(&mut self, rows: &[f64], out: &mut Vec<f64>) -> Result<(), OnnxError> {
        let n = rows.len() / self.n_inputs;
        let err = |message: String| OnnxError {
            path: self.path.clone(),
            message,
        };
        let input = if self.input_f64 {
            Tensor::from_shape(&[n, self.n_inputs], rows)
        } else {
            let v: Vec<f32> = rows.iter().map(|x| *x as f32).collect();
            Tensor::from_shape(&[n, self.n_inputs], &v)
        }
        .map_err(|e| err(e.to_string()))?;
        let outputs = self
            .state
            .run(tvec![input.into_tvalue()])
            .map_err(|e| err(format!("evaluation failed: {e:#}")))?;
        let k = self.n_outputs;
        let mut cols: Vec<Vec<f64>> = Vec::with_capacity(outputs.len());
        for t in &outputs {
            let v: Vec<f64> = if t.datum_type() == f64::datum_type() {
                t.to_plain_array_view::<f64>()
                    .map_err(|e| err(e.to_string()))?
                    .iter()
                    .copied()
                    .collect()
            } else {
                t.cast_to::<f32>()
                    .map_err(|e| err(e.to_string()))?
                    .to_plain_array_view::<f32>()
                    .map_err(|e| err(e.to_string()))?
                    .iter()
                    .map(|x| *x as f64)
                    .collect()
            };
            cols.push(v);
        }
        out.clear();
        match cols.as_slice() {
            [one] if one.len() == n * k => out.extend_from_slice(one),
            many if many.len() == k && many.iter().all(|c| c.len() == n) => {
                out.reserve(n * k);
                for r in 0..n {
                    out.extend(many.iter().map(|c| c[r]));
                }
            }
            _ => {
                let sizes: Vec<usize> = cols.iter().map(Vec::len).collect();
                return Err(err(format!(
                    "for {n} rows it produced outputs of {sizes:?} values; the metadata names \
                     {k} outputs, so {} values (one output) or {k} outputs of {n} were expected",
                    n * k
                )));
            }
        }
        Ok(())
    }

    /// The optimised plan (for inspection in tests).
    pub fn plan(&self) -> &Arc<TypedSimplePlan> {
        &self.plan
    }
}
