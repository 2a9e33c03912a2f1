//! An evaluator for ONNX `ai.onnx.ml` TreeEnsembleRegressor graphs, the
//! form in which LightGBM (onnxmltools), XGBoost (onnxmltools) and
//! scikit-learn (skl2onnx) export gradient-boosted and random-forest
//! regressors. tract has no such operator, so twinflow evaluates the trees
//! itself.
//!
//! Parity with onnxruntime is the contract (`tests/models.rs` checks it on
//! held-out data), so the arithmetic follows onnxruntime's rather than the
//! obvious one: with float thresholds (`nodes_values`) the input is rounded
//! to f32 before comparing and the leaf weights are summed in f32, tree by
//! tree in the order the trees first appear, the base value added last; with
//! double thresholds (`nodes_values_as_tensor`) the same happens in f64.
//! Summing an f32 model in f64 would be "more precise" and differ from
//! onnxruntime by a few ulps of the output (≈1e-3 for an air flow of
//! 5000 m³/h).
//!
//! The graph around the ensembles may hold `Identity`, `Cast`, `Reshape`
//! and `Concat` (along the last axis): what the exporters emit, including
//! one ensemble per output joined by a `Concat`. Any other operator is
//! refused when the model loads, with its name.

use std::collections::HashMap;
use std::path::Path;

use tract_onnx::pb::{self, AttributeProto, NodeProto, TensorProto};
use tract_onnx::prelude::Framework;

/// Why a tree model could not be loaded or run.
#[derive(Debug, Clone, thiserror::Error)]
#[error("tree ensemble {path}: {message}")]
pub struct TreeError {
    pub path: String,
    pub message: String,
}

/// ONNX element types the graph may carry.
use super::onnx::{ONNX_DOUBLE, ONNX_FLOAT};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Precision {
    F32,
    F64,
}

impl Precision {
    #[inline]
    fn round(self, v: f64) -> f64 {
        match self {
            Precision::F32 => v as f32 as f64,
            Precision::F64 => v,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Leq,
    Lt,
    Gte,
    Gt,
    Eq,
    Neq,
    Leaf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Aggregate {
    Sum,
    Average,
    Min,
    Max,
}

/// One node, with children as indices into the ensemble's node vector and
/// its leaf weights as a range into the weight vector.
#[derive(Debug, Clone, Copy)]
struct Node {
    mode: Mode,
    feature: u32,
    threshold: f64,
    if_true: u32,
    if_false: u32,
    missing_true: bool,
    weights: (u32, u32),
}

/// One TreeEnsembleRegressor operator.
#[derive(Debug, Clone)]
struct Ensemble {
    nodes: Vec<Node>,
    roots: Vec<u32>,
    /// (target, weight) per leaf entry, weights already in the model's precision.
    weights: Vec<(u32, f64)>,
    n_targets: usize,
    base: Vec<f64>,
    aggregate: Aggregate,
    precision: Precision,
    /// Round the result to f32: the operator's declared output type.
    output_f32: bool,
    n_features: usize,
}

fn mode_of(s: &[u8]) -> Option<Mode> {
    Some(match s {
        b"BRANCH_LEQ" => Mode::Leq,
        b"BRANCH_LT" => Mode::Lt,
        b"BRANCH_GTE" => Mode::Gte,
        b"BRANCH_GT" => Mode::Gt,
        b"BRANCH_EQ" => Mode::Eq,
        b"BRANCH_NEQ" => Mode::Neq,
        b"LEAF" => Mode::Leaf,
        _ => return None,
    })
}

struct Attrs<'a>(HashMap<&'a str, &'a AttributeProto>);

impl<'a> Attrs<'a> {
    fn new(node: &'a NodeProto) -> Self {
        Attrs(
            node.attribute
                .iter()
                .map(|a| (a.name.as_str(), a))
                .collect(),
        )
    }
    fn ints(&self, name: &str) -> &'a [i64] {
        self.0.get(name).map(|a| a.ints.as_slice()).unwrap_or(&[])
    }
    fn int(&self, name: &str) -> Option<i64> {
        self.0.get(name).map(|a| a.i)
    }
    fn string(&self, name: &str) -> Option<&'a [u8]> {
        self.0.get(name).map(|a| a.s.as_slice())
    }
    fn strings(&self, name: &str) -> &'a [Vec<u8>] {
        self.0
            .get(name)
            .map(|a| a.strings.as_slice())
            .unwrap_or(&[])
    }
    /// A real-valued attribute given either as floats or as a double tensor
    /// (`<name>_as_tensor`); the flag says which.
    fn reals(&self, name: &str) -> Result<(Vec<f64>, Precision), String> {
        if let Some(t) = self.0.get(format!("{name}_as_tensor").as_str()) {
            let t =
                t.t.as_ref()
                    .ok_or_else(|| format!("attribute {name}_as_tensor has no tensor"))?;
            return Ok((tensor_reals(t)?, Precision::F64));
        }
        let v = self
            .0
            .get(name)
            .map(|a| a.floats.iter().map(|f| *f as f64).collect())
            .unwrap_or_default();
        Ok((v, Precision::F32))
    }
}

fn tensor_reals(t: &TensorProto) -> Result<Vec<f64>, String> {
    match t.data_type {
        ONNX_DOUBLE if !t.double_data.is_empty() => Ok(t.double_data.clone()),
        ONNX_DOUBLE => Ok(t
            .raw_data
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect()),
        ONNX_FLOAT if !t.float_data.is_empty() => {
            Ok(t.float_data.iter().map(|f| *f as f64).collect())
        }
        ONNX_FLOAT => Ok(t
            .raw_data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")) as f64)
            .collect()),
        other => Err(format!(
            "tensor of element type {other}: expected float or double"
        )),
    }
}

impl Ensemble {
    fn parse(node: &NodeProto, n_features: usize, output_f32: bool) -> Result<Ensemble, String> {
        let a = Attrs::new(node);
        let tree_ids = a.ints("nodes_treeids");
        let node_ids = a.ints("nodes_nodeids");
        let features = a.ints("nodes_featureids");
        let modes = a.strings("nodes_modes");
        let trues = a.ints("nodes_truenodeids");
        let falses = a.ints("nodes_falsenodeids");
        let missing = a.ints("nodes_missing_value_tracks_true");
        let (values, precision) = a.reals("nodes_values")?;
        let n = tree_ids.len();
        for (name, len) in [
            ("nodes_nodeids", node_ids.len()),
            ("nodes_featureids", features.len()),
            ("nodes_modes", modes.len()),
            ("nodes_truenodeids", trues.len()),
            ("nodes_falsenodeids", falses.len()),
            ("nodes_values", values.len()),
        ] {
            if len != n {
                return Err(format!("{name} has {len} entries, nodes_treeids {n}"));
            }
        }
        if !missing.is_empty() && missing.len() != n {
            return Err("nodes_missing_value_tracks_true has the wrong length".into());
        }
        let n_targets = a.int("n_targets").unwrap_or(1);
        if n_targets < 1 {
            return Err(format!("n_targets {n_targets} must be >= 1"));
        }
        let n_targets = n_targets as usize;
        let post = a.string("post_transform").unwrap_or(b"NONE");
        if post != b"NONE" {
            return Err(format!(
                "post_transform {} is not supported for a regressor (only NONE)",
                String::from_utf8_lossy(post)
            ));
        }
        let aggregate = match a.string("aggregate_function").unwrap_or(b"SUM") {
            b"SUM" => Aggregate::Sum,
            b"AVERAGE" => Aggregate::Average,
            b"MIN" => Aggregate::Min,
            b"MAX" => Aggregate::Max,
            other => {
                return Err(format!(
                    "aggregate_function {} is unknown",
                    String::from_utf8_lossy(other)
                ))
            }
        };

        // (tree, node) -> index; roots in order of first appearance, which
        // is the order onnxruntime sums the trees in.
        let mut index: HashMap<(i64, i64), u32> = HashMap::with_capacity(n);
        let mut roots = Vec::new();
        let mut root_of_tree: HashMap<i64, ()> = HashMap::new();
        for i in 0..n {
            if index.insert((tree_ids[i], node_ids[i]), i as u32).is_some() {
                return Err(format!(
                    "node {} of tree {} appears twice",
                    node_ids[i], tree_ids[i]
                ));
            }
        }
        let mut nodes = Vec::with_capacity(n);
        for i in 0..n {
            let mode = mode_of(&modes[i]).ok_or_else(|| {
                format!(
                    "node mode {} is unknown",
                    String::from_utf8_lossy(&modes[i])
                )
            })?;
            let child = |id: i64| -> Result<u32, String> {
                index.get(&(tree_ids[i], id)).copied().ok_or_else(|| {
                    format!(
                        "node {} of tree {} points at node {id}, which does not exist",
                        node_ids[i], tree_ids[i]
                    )
                })
            };
            let (if_true, if_false) = if mode == Mode::Leaf {
                (0, 0)
            } else {
                if features[i] < 0 || features[i] as usize >= n_features {
                    return Err(format!(
                        "node {} of tree {} reads feature {}, but the input has {n_features}",
                        node_ids[i], tree_ids[i], features[i]
                    ));
                }
                (child(trues[i])?, child(falses[i])?)
            };
            nodes.push(Node {
                mode,
                feature: features[i].max(0) as u32,
                threshold: values[i],
                if_true,
                if_false,
                missing_true: missing.get(i).is_some_and(|m| *m != 0),
                weights: (0, 0),
            });
        }
        // A root is the node no other node of its tree points at.
        let mut pointed = vec![false; n];
        for nd in &nodes {
            if nd.mode != Mode::Leaf {
                pointed[nd.if_true as usize] = true;
                pointed[nd.if_false as usize] = true;
            }
        }
        for i in 0..n {
            if !pointed[i] && root_of_tree.insert(tree_ids[i], ()).is_none() {
                roots.push(i as u32);
            } else if !pointed[i] {
                return Err(format!("tree {} has more than one root", tree_ids[i]));
            }
        }

        let t_trees = a.ints("target_treeids");
        let t_nodes = a.ints("target_nodeids");
        let t_ids = a.ints("target_ids");
        let (t_weights, wp) = a.reals("target_weights")?;
        if t_nodes.len() != t_trees.len()
            || t_ids.len() != t_trees.len()
            || t_weights.len() != t_trees.len()
        {
            return Err("target_* attributes differ in length".into());
        }
        if wp != precision {
            return Err("thresholds and weights differ in precision".into());
        }
        let mut per_leaf: Vec<Vec<(u32, f64)>> = vec![Vec::new(); n];
        for k in 0..t_trees.len() {
            let &i = index.get(&(t_trees[k], t_nodes[k])).ok_or_else(|| {
                format!(
                    "a weight points at node {} of tree {}, which does not exist",
                    t_nodes[k], t_trees[k]
                )
            })?;
            if nodes[i as usize].mode != Mode::Leaf {
                return Err(format!(
                    "a weight points at node {} of tree {}, which is not a leaf",
                    t_nodes[k], t_trees[k]
                ));
            }
            if t_ids[k] < 0 || t_ids[k] as usize >= n_targets {
                return Err(format!("target id {} is outside 0..{n_targets}", t_ids[k]));
            }
            per_leaf[i as usize].push((t_ids[k] as u32, precision.round(t_weights[k])));
        }
        let mut weights = Vec::with_capacity(t_trees.len());
        for (nd, w) in nodes.iter_mut().zip(per_leaf) {
            let start = weights.len() as u32;
            weights.extend(w);
            nd.weights = (start, weights.len() as u32);
        }

        let (mut base, _) = a.reals("base_values")?;
        if base.is_empty() {
            base = vec![0.0; n_targets];
        }
        if base.len() != n_targets {
            return Err(format!(
                "base_values has {} entries for {n_targets} targets",
                base.len()
            ));
        }
        for b in &mut base {
            *b = precision.round(*b);
        }
        if roots.is_empty() {
            return Err("the ensemble has no trees".into());
        }
        Ok(Ensemble {
            nodes,
            roots,
            weights,
            n_targets,
            base,
            aggregate,
            precision,
            output_f32,
            n_features,
        })
    }

    #[inline]
    fn leaf(&self, x: &[f64], root: u32) -> &Node {
        let mut nd = &self.nodes[root as usize];
        loop {
            let v = x[nd.feature as usize];
            let go_true = match nd.mode {
                Mode::Leaf => return nd,
                _ if v.is_nan() => nd.missing_true,
                Mode::Leq => v <= nd.threshold,
                Mode::Lt => v < nd.threshold,
                Mode::Gte => v >= nd.threshold,
                Mode::Gt => v > nd.threshold,
                Mode::Eq => v == nd.threshold,
                Mode::Neq => v != nd.threshold,
            };
            nd = &self.nodes[if go_true { nd.if_true } else { nd.if_false } as usize];
        }
    }

    /// Evaluates one row (already rounded to the ensemble's precision) into
    /// `out[..n_targets]`.
    fn eval(&self, x: &[f64], out: &mut [f64]) {
        match self.precision {
            Precision::F32 => self.eval_in::<f32>(x, out),
            Precision::F64 => self.eval_in::<f64>(x, out),
        }
    }

    fn eval_in<T: Real>(&self, x: &[f64], out: &mut [f64]) {
        let n = self.n_targets;
        let mut score = [T::ZERO; MAX_TARGETS_ON_STACK];
        let mut heap;
        let score: &mut [T] = if n <= MAX_TARGETS_ON_STACK {
            &mut score[..n]
        } else {
            heap = vec![T::ZERO; n];
            &mut heap
        };
        let mut has = [false; MAX_TARGETS_ON_STACK];
        let mut has_heap;
        let has: &mut [bool] = if n <= MAX_TARGETS_ON_STACK {
            &mut has[..n]
        } else {
            has_heap = vec![false; n];
            &mut has_heap
        };
        for &r in &self.roots {
            let leaf = self.leaf(x, r);
            for &(t, w) in &self.weights[leaf.weights.0 as usize..leaf.weights.1 as usize] {
                let (t, w) = (t as usize, T::from_f64(w));
                match self.aggregate {
                    Aggregate::Sum | Aggregate::Average => score[t] = score[t] + w,
                    Aggregate::Min => {
                        if !has[t] || w < score[t] {
                            score[t] = w
                        }
                    }
                    Aggregate::Max => {
                        if !has[t] || w > score[t] {
                            score[t] = w
                        }
                    }
                }
                has[t] = true;
            }
        }
        let n_trees = T::from_f64(self.roots.len() as f64);
        for t in 0..n {
            let s = match self.aggregate {
                Aggregate::Average => score[t] / n_trees,
                _ => score[t],
            };
            let v = (s + T::from_f64(self.base[t])).to_f64();
            out[t] = if self.output_f32 { v as f32 as f64 } else { v };
        }
    }
}

const MAX_TARGETS_ON_STACK: usize = 8;

/// The arithmetic an ensemble sums in.
trait Real: Copy + PartialOrd + std::ops::Add<Output = Self> + std::ops::Div<Output = Self> {
    const ZERO: Self;
    fn from_f64(v: f64) -> Self;
    fn to_f64(self) -> f64;
}

impl Real for f32 {
    const ZERO: f32 = 0.0;
    fn from_f64(v: f64) -> f32 {
        v as f32
    }
    fn to_f64(self) -> f64 {
        self as f64
    }
}

impl Real for f64 {
    const ZERO: f64 = 0.0;
    fn from_f64(v: f64) -> f64 {
        v
    }
    fn to_f64(self) -> f64 {
        self
    }
}

/// One step of the graph, over value slots.
#[derive(Debug, Clone)]
enum Step {
    Ensemble {
        input: usize,
        output: usize,
        ensemble: Box<Ensemble>,
    },
    Cast {
        input: usize,
        output: usize,
        to: Precision,
    },
    Alias {
        input: usize,
        output: usize,
    },
    Concat {
        inputs: Vec<usize>,
        output: usize,
    },
}

/// A loaded tree-ensemble model: evaluates rows of `n_inputs` features into
/// rows of `n_outputs` values.
#[derive(Debug, Clone)]
pub struct TreeModel {
    steps: Vec<Step>,
    /// Width (columns) of each value slot; slot 0 is the graph input.
    widths: Vec<usize>,
    input_precision: Precision,
    output_slot: usize,
    pub n_inputs: usize,
    pub n_outputs: usize,
}

fn elem_type(v: &pb::ValueInfoProto) -> Option<i32> {
    let pb::type_proto::Value::TensorType(t) = v.r#type.as_ref()?.value.as_ref()?;
    Some(t.elem_type)
}

impl TreeModel {
    /// Loads an ONNX file of tree ensembles.
    pub fn load(path: &Path) -> Result<TreeModel, TreeError> {
        let err = |message: String| TreeError {
            path: path.display().to_string(),
            message,
        };
        let proto = tract_onnx::onnx()
            .proto_model_for_path(path)
            .map_err(|e| err(format!("cannot read it as ONNX: {e}")))?;
        Self::from_proto(&proto).map_err(err)
    }

    /// Builds the evaluator from a parsed ONNX model.
    pub fn from_proto(proto: &pb::ModelProto) -> Result<TreeModel, String> {
        let g = proto.graph.as_ref().ok_or("the model has no graph")?;
        let (input, input_f64, n_inputs) = super::onnx::graph_input(g)?;
        let [graph_output] = g.output.as_slice() else {
            return Err(format!(
                "the graph must have one output, it has {}",
                g.output.len()
            ));
        };
        let input_precision = if input_f64 {
            Precision::F64
        } else {
            Precision::F32
        };
        let output_f32 = elem_type(graph_output) == Some(ONNX_FLOAT);

        let mut slots: HashMap<&str, (usize, Precision)> = HashMap::new();
        slots.insert(input.name.as_str(), (0, input_precision));
        let mut widths = vec![n_inputs];
        let mut steps = Vec::new();
        for node in &g.node {
            let get = |name: &str| {
                slots
                    .get(name)
                    .copied()
                    .ok_or_else(|| format!("{} reads {name}, which nothing produces", node.op_type))
            };
            let [out_name] = node.output.as_slice() else {
                return Err(format!("{} must have one output", node.op_type));
            };
            let output = widths.len();
            let (step, width, precision) = match node.op_type.as_str() {
                "TreeEnsembleRegressor" => {
                    let (input, p) = get(&node.input[0])?;
                    let feeds_output = *out_name == graph_output.name;
                    let ens = Ensemble::parse(node, widths[input], !feeds_output || output_f32)
                        .map_err(|e| format!("TreeEnsembleRegressor {}: {e}", node.name))?;
                    let step_p = ens.precision;
                    let width = ens.n_targets;
                    // The operator casts its input to its threshold type.
                    let input = if p != step_p {
                        let cast_slot = widths.len();
                        widths.push(widths[input]);
                        steps.push(Step::Cast {
                            input,
                            output: cast_slot,
                            to: step_p,
                        });
                        cast_slot
                    } else {
                        input
                    };
                    let output = widths.len();
                    (
                        Step::Ensemble {
                            input,
                            output,
                            ensemble: Box::new(ens),
                        },
                        width,
                        step_p,
                    )
                }
                "Identity" | "Reshape" => {
                    // Reshape only ever turns [n, k] into [n·k, 1] or back
                    // in these graphs: rows stay in memory order, so it is
                    // a view here and the final width comes from the metadata.
                    let (input, p) = get(&node.input[0])?;
                    (Step::Alias { input, output }, widths[input], p)
                }
                "Cast" => {
                    let (input, _) = get(&node.input[0])?;
                    let to = match Attrs::new(node).int("to") {
                        Some(t) if t == ONNX_FLOAT as i64 => Precision::F32,
                        Some(t) if t == ONNX_DOUBLE as i64 => Precision::F64,
                        other => return Err(format!("Cast to element type {other:?}")),
                    };
                    (Step::Cast { input, output, to }, widths[input], to)
                }
                "Concat" => {
                    let axis = Attrs::new(node).int("axis").unwrap_or(1);
                    if axis != 1 && axis != -1 {
                        return Err(format!("Concat along axis {axis}: only the last axis"));
                    }
                    let ins = node
                        .input
                        .iter()
                        .map(|n| get(n))
                        .collect::<Result<Vec<_>, _>>()?;
                    let width = ins.iter().map(|(s, _)| widths[*s]).sum();
                    let p = if ins.iter().all(|(_, p)| *p == Precision::F32) {
                        Precision::F32
                    } else {
                        Precision::F64
                    };
                    (
                        Step::Concat {
                            inputs: ins.into_iter().map(|(s, _)| s).collect(),
                            output,
                        },
                        width,
                        p,
                    )
                }
                other => {
                    return Err(format!(
                        "operator {other} (node \"{}\") is not supported in a tree_ensemble \
                         model: only TreeEnsembleRegressor, Identity, Cast, Reshape and Concat \
                         (use kind: onnx for neural and linear models)",
                        node.name
                    ))
                }
            };
            let output = match &step {
                Step::Ensemble { output, .. } => *output,
                _ => output,
            };
            debug_assert_eq!(output, widths.len());
            widths.push(width);
            steps.push(step);
            slots.insert(out_name.as_str(), (output, precision));
        }
        if !steps.iter().any(|s| matches!(s, Step::Ensemble { .. })) {
            return Err("the graph has no TreeEnsembleRegressor".into());
        }
        let (output_slot, _) = slots
            .get(graph_output.name.as_str())
            .copied()
            .ok_or("nothing produces the graph's output")?;
        Ok(TreeModel {
            n_outputs: widths[output_slot],
            steps,
            widths,
            input_precision,
            output_slot,
            n_inputs,
        })
    }

    /// Evaluates `rows` (each `n_inputs` wide, row-major) into `out`
    /// (`n_outputs` per row, row-major; resized).
    pub fn predict(&self, rows: &[f64], out: &mut Vec<f64>) {
        let n = rows.len() / self.n_inputs;
        let mut values: Vec<Vec<f64>> = vec![Vec::new(); self.widths.len()];
        values[0] = rows
            .iter()
            .map(|v| self.input_precision.round(*v))
            .collect();
        for step in &self.steps {
            match step {
                Step::Ensemble {
                    input,
                    output,
                    ensemble,
                } => {
                    let k = ensemble.n_targets;
                    let w = ensemble.n_features;
                    let mut o = vec![0.0; n * k];
                    for (x, y) in values[*input].chunks_exact(w).zip(o.chunks_exact_mut(k)) {
                        ensemble.eval(x, y);
                    }
                    values[*output] = o;
                }
                Step::Cast { input, output, to } => {
                    values[*output] = values[*input].iter().map(|v| to.round(*v)).collect();
                }
                Step::Alias { input, output } => values[*output] = values[*input].clone(),
                Step::Concat { inputs, output } => {
                    let width = self.widths[*output];
                    let mut o = Vec::with_capacity(n * width);
                    for r in 0..n {
                        for s in inputs {
                            let w = self.widths[*s];
                            o.extend_from_slice(&values[*s][r * w..(r + 1) * w]);
                        }
                    }
                    values[*output] = o;
                }
            }
        }
        *out = std::mem::take(&mut values[self.output_slot]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            ints: v.to_vec(),
            ..Default::default()
        }
    }
    fn attr_floats(name: &str, v: &[f32]) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            floats: v.to_vec(),
            ..Default::default()
        }
    }
    fn attr_strings(name: &str, v: &[&str]) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            strings: v.iter().map(|s| s.as_bytes().to_vec()).collect(),
            ..Default::default()
        }
    }
    fn attr_str(name: &str, v: &str) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            s: v.as_bytes().to_vec(),
            ..Default::default()
        }
    }

    fn value(name: &str, width: i64) -> pb::ValueInfoProto {
        use pb::tensor_shape_proto::{dimension::Value as D, Dimension};
        pb::ValueInfoProto {
            name: name.into(),
            r#type: Some(pb::TypeProto {
                value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                    elem_type: ONNX_FLOAT,
                    shape: Some(pb::TensorShapeProto {
                        dim: vec![
                            Dimension {
                                value: Some(D::DimParam("N".into())),
                                ..Default::default()
                            },
                            Dimension {
                                value: Some(D::DimValue(width)),
                                ..Default::default()
                            },
                        ],
                    }),
                })),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Two stumps on feature 0 and 1, two targets, SUM, base (10, 20):
    /// tree 0: x0 <= 0.5 ? (t0 += 1) : (t0 += 2, t1 += 5)
    /// tree 1: x1 <  3.0 ? (t1 += 100) : (t0 += -1)
    fn stumps(aggregate: &str) -> pb::ModelProto {
        let node = NodeProto {
            op_type: "TreeEnsembleRegressor".into(),
            domain: "ai.onnx.ml".into(),
            input: vec!["x".into()],
            output: vec!["y".into()],
            attribute: vec![
                AttributeProto {
                    name: "n_targets".into(),
                    i: 2,
                    ..Default::default()
                },
                attr_ints("nodes_treeids", &[0, 0, 0, 1, 1, 1]),
                attr_ints("nodes_nodeids", &[0, 1, 2, 0, 1, 2]),
                attr_ints("nodes_featureids", &[0, 0, 0, 1, 0, 0]),
                attr_floats("nodes_values", &[0.5, 0.0, 0.0, 3.0, 0.0, 0.0]),
                attr_strings(
                    "nodes_modes",
                    &["BRANCH_LEQ", "LEAF", "LEAF", "BRANCH_LT", "LEAF", "LEAF"],
                ),
                attr_ints("nodes_truenodeids", &[1, 0, 0, 1, 0, 0]),
                attr_ints("nodes_falsenodeids", &[2, 0, 0, 2, 0, 0]),
                attr_ints("nodes_missing_value_tracks_true", &[1, 0, 0, 0, 0, 0]),
                attr_ints("target_treeids", &[0, 0, 0, 1, 1]),
                attr_ints("target_nodeids", &[1, 2, 2, 1, 2]),
                attr_ints("target_ids", &[0, 0, 1, 1, 0]),
                attr_floats("target_weights", &[1.0, 2.0, 5.0, 100.0, -1.0]),
                attr_floats("base_values", &[10.0, 20.0]),
                attr_str("aggregate_function", aggregate),
                attr_str("post_transform", "NONE"),
            ],
            ..Default::default()
        };
        pb::ModelProto {
            graph: Some(pb::GraphProto {
                node: vec![node],
                input: vec![value("x", 2)],
                output: vec![value("y", 2)],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn run(m: &TreeModel, rows: &[f64]) -> Vec<f64> {
        let mut out = Vec::new();
        m.predict(rows, &mut out);
        out
    }

    #[test]
    fn evaluates_branches_targets_and_base_values() {
        let m = TreeModel::from_proto(&stumps("SUM")).unwrap();
        assert_eq!((m.n_inputs, m.n_outputs), (2, 2));
        // Row 1: x0 = 0.5 (<= true) → t0 1; x1 = 1 (< 3) → t1 100.
        // Row 2: x0 = 0.7 → t0 2, t1 5; x1 = 3 (not < 3) → t0 −1.
        // Row 3: NaN in x0 tracks true.
        let out = run(&m, &[0.5, 1.0, 0.7, 3.0, f64::NAN, 5.0]);
        assert_eq!(out, vec![11.0, 120.0, 11.0, 25.0, 10.0, 20.0]);
    }

    #[test]
    fn aggregates_average_min_max() {
        let row = [0.7, 3.0];
        let avg = run(&TreeModel::from_proto(&stumps("AVERAGE")).unwrap(), &row);
        assert_eq!(avg, vec![10.0 + 1.0 / 2.0, 20.0 + 5.0 / 2.0]);
        let min = run(&TreeModel::from_proto(&stumps("MIN")).unwrap(), &row);
        assert_eq!(min, vec![9.0, 25.0]);
        let max = run(&TreeModel::from_proto(&stumps("MAX")).unwrap(), &row);
        assert_eq!(max, vec![12.0, 25.0]);
    }

    #[test]
    fn sums_in_f32_like_onnxruntime() {
        let mut p = stumps("SUM");
        let g = p.graph.as_mut().unwrap();
        for a in &mut g.node[0].attribute {
            if a.name == "target_weights" {
                a.floats = vec![0.1, 1e8, 5.0, 100.0, 3.0];
            }
        }
        let m = TreeModel::from_proto(&p).unwrap();
        // Target 0 on row 2: f32(10) + (f32(1e8) + f32(3)) loses the 3 in f32.
        let out = run(&m, &[0.7, 3.0]);
        let expect = ((1e8f32 + 3.0f32) + 10.0f32) as f64;
        assert_eq!(out[0], expect);
        assert_ne!(out[0], 1e8 + 3.0 + 10.0);
    }

    #[test]
    fn refuses_what_it_cannot_evaluate() {
        let mut p = stumps("SUM");
        p.graph.as_mut().unwrap().node[0].op_type = "LinearRegressor".into();
        let e = TreeModel::from_proto(&p).unwrap_err();
        assert!(
            e.contains("LinearRegressor") && e.contains("kind: onnx"),
            "{e}"
        );

        let mut p = stumps("SUM");
        for a in &mut p.graph.as_mut().unwrap().node[0].attribute {
            if a.name == "nodes_falsenodeids" {
                a.ints[0] = 7;
            }
        }
        let e = TreeModel::from_proto(&p).unwrap_err();
        assert!(e.contains("does not exist"), "{e}");

        let mut p = stumps("SUM");
        for a in &mut p.graph.as_mut().unwrap().node[0].attribute {
            if a.name == "post_transform" {
                a.s = b"LOGISTIC".to_vec();
            }
        }
        assert!(TreeModel::from_proto(&p)
            .unwrap_err()
            .contains("post_transform"));
    }
}
