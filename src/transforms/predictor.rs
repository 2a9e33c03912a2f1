//! `predictor`: turns sensor frames into predictions of the outlet
//! conditions, airflow and thermal power.
//!
//! Model kinds: `physics` (the effectiveness-NTU unit-cooler model of
//! `model::physics`), `onnx` (linear and neural models, run by tract) and
//! `tree_ensemble` (gradient-boosted and random-forest models exported as
//! ONNX TreeEnsembleRegressor, evaluated by `model::tree`). An ML model
//! comes with a metadata file naming its inputs, units, outputs, version and
//! training range; `validate` refuses a model whose metadata does not fit.
//!
//! Every frame is screened before it is predicted. NaN and infinities are
//! dead-lettered. A value outside the model's training range, or one no unit
//! cooler can read (negative flow, RH outside 0–100 %, −40…80 °C exceeded,
//! water warmer than the air while the unit is asked to cool), raises an
//! `INPUT_OUT_OF_RANGE` event and is handled per `on_out_of_range`: `flag`
//! predicts and lists the inputs in the prediction's `flags`, `clamp`
//! predicts from the inputs clamped into range (and flags them), `reject`
//! dead-letters the frame. A model is never silently extrapolated.
//!
//! Hot swap: a changed model file (checked every `reload_check_ms`) or a call
//! on the [`ModelControl`] handle loads the new model off the stream's path,
//! checks it against its metadata, and swaps it in between two messages.
//! Nothing queued is dropped, and each prediction names the model that made
//! it (`name@version`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use chrono::Utc;
use prometheus::{Gauge, Histogram, IntCounter};
use serde::Deserialize;
use serde_json::json;

use crate::model::dataset::q_thermal;
use crate::model::physics::{self, CoilInputs, PhysicsError, PhysicsParams, T_MAX, T_MIN};
use crate::model::serving::{FileKind, LoadedModel, ModelError, ModelFiles, Outputs4};
use crate::pipeline::component::{
    parse_config, BuildContext, Component, ComponentConfig, ComponentDescriptor, ComponentError,
    Emitter, Envelope, Processor, Role,
};
use crate::pipeline::message::{
    Alert, AlertState, FlagReason, InputFlag, Inputs, KindSet, Measured, Message, MessageKind,
    Outputs, Prediction, SensorFrame, Severity, INPUT_FEATURES,
};

pub const DESCRIPTOR: ComponentDescriptor = ComponentDescriptor {
    type_name: "predictor",
    role: Role::Transform,
    accepts: KindSet::of(&[MessageKind::Frame]),
    emits: KindSet::of(&[MessageKind::Prediction, MessageKind::Alert]),
    summary: "Predicts UCAOT, UCWOT, UCAF and Q_thermal from each sensor frame \
              (physics, ONNX or tree-ensemble models; input checks; hot swap).",
    parse: parse_config::<PredictorConfig>,
};

/// Reasons a frame is refused: the label of
/// `twinflow_predictor_rejected_inputs_total` and the dead letter's `reason`.
const NON_FINITE: &str = "non_finite_input";
const OUT_OF_RANGE: &str = "input_out_of_range";
/// Dead-letter reason of a frame whose source marked an input unusable
/// (a BACnet point in fault or out of service).
const INPUT_FAULT: &str = "input_fault";
/// Alert codes this component emits.
pub const INPUT_OUT_OF_RANGE: &str = "INPUT_OUT_OF_RANGE";
pub const MODEL_SWAPPED: &str = "MODEL_SWAPPED";
pub const MODEL_RELOAD_FAILED: &str = "MODEL_RELOAD_FAILED";

/// A model file and its metadata.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileModelConfig {
    /// The ONNX file, relative to the pipeline file's folder.
    pub path: PathBuf,
    /// Its metadata (inputs, units, outputs, version, training range);
    /// default: `path` with the extension `.json`.
    #[serde(default)]
    pub metadata: Option<PathBuf>,
}

/// Which model to run.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ModelConfig {
    /// The physics model (effectiveness-NTU coil, P-controlled fan).
    Physics {
        /// Coil and fan parameters; defaults are the reference unit cooler.
        #[serde(default)]
        params: PhysicsParams,
    },
    /// A linear or neural ONNX model (tract).
    Onnx(FileModelConfig),
    /// An ONNX TreeEnsembleRegressor model (LightGBM, XGBoost, scikit-learn).
    TreeEnsemble(FileModelConfig),
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig::Physics {
            params: PhysicsParams::default(),
        }
    }
}

impl ModelConfig {
    fn files(&self, resolve: impl Fn(&Path) -> PathBuf) -> Option<ModelFiles> {
        let (kind, f) = match self {
            ModelConfig::Physics { .. } => return None,
            ModelConfig::Onnx(f) => (FileKind::Onnx, f),
            ModelConfig::TreeEnsemble(f) => (FileKind::TreeEnsemble, f),
        };
        Some(ModelFiles::new(
            kind,
            resolve(&f.path),
            f.metadata.as_deref().map(&resolve),
        ))
    }
}

/// What to do with a frame whose inputs are out of range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutOfRangePolicy {
    /// Predict from the inputs as they are and flag the prediction.
    #[default]
    Flag,
    /// Predict from the inputs clamped into range, and flag the prediction.
    Clamp,
    /// Dead-letter the frame.
    Reject,
}

impl OutOfRangePolicy {
    fn as_str(self) -> &'static str {
        match self {
            OutOfRangePolicy::Flag => "flag",
            OutOfRangePolicy::Clamp => "clamp",
            OutOfRangePolicy::Reject => "reject",
        }
    }
}

fn default_max_batch() -> usize {
    256
}

fn default_reload_check_ms() -> u64 {
    2000
}

/// Settings of a `predictor` node.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictorConfig {
    /// The model; default `{kind: physics}` with the reference parameters.
    #[serde(default)]
    pub model: ModelConfig,
    /// `flag` (default), `clamp` or `reject`: what happens to a frame whose
    /// inputs are outside the training range or physically impossible.
    #[serde(default)]
    pub on_out_of_range: OutOfRangePolicy,
    /// Also run the physics model and report `physics_residual` (model −
    /// physics) per output.
    #[serde(default)]
    pub compare_physics: bool,
    /// Physics parameters for `compare_physics`; default the reference unit.
    #[serde(default)]
    pub physics: PhysicsParams,
    /// Most rows evaluated in one model call when the runner hands over a
    /// batch (ONNX and tree models).
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// How often an ML model's files are checked for a new version, ms;
    /// 0 turns the watch off (the [`ModelControl`] handle still swaps).
    #[serde(default = "default_reload_check_ms")]
    pub reload_check_ms: u64,
    /// Shared with every build of this node: the API's way in.
    #[serde(skip)]
    pub control: ModelControl,
}

impl Default for PredictorConfig {
    fn default() -> Self {
        PredictorConfig {
            model: ModelConfig::default(),
            on_out_of_range: OutOfRangePolicy::default(),
            compare_physics: false,
            physics: PhysicsParams::default(),
            max_batch: default_max_batch(),
            reload_check_ms: default_reload_check_ms(),
            control: ModelControl::default(),
        }
    }
}

/// A handle on a predictor's model, shared by every build of one node (a
/// restart keeps it). The HTTP API, or any code holding the node's config,
/// reaches it with [`control_of`].
///
/// `reload` and `load_from` load and check the model on the caller's thread,
/// so the stream never waits for a load; the predictor swaps the checked
/// model in before its next message (or at its next tick when idle).
#[derive(Debug, Clone, Default)]
pub struct ModelControl(Arc<ControlInner>);

#[derive(Debug, Default)]
struct ControlInner {
    /// The files the node serves from: its config's, or the last `load_from`.
    files: Mutex<Option<ModelFiles>>,
    pending: Mutex<Option<Box<LoadedModel>>>,
    has_pending: AtomicBool,
    /// Reload failures not yet reported as events.
    failures: Mutex<Vec<String>>,
    current: Mutex<Option<Arc<str>>>,
    swaps: AtomicU64,
}

impl ModelControl {
    /// `name@version` of the model now serving, once the node has started.
    pub fn current(&self) -> Option<String> {
        lock(&self.0.current).as_ref().map(|s| s.to_string())
    }

    /// Models swapped in since the node was first built.
    pub fn swaps(&self) -> u64 {
        self.0.swaps.load(Ordering::Acquire)
    }

    /// Loads the node's model files again and queues the model for a swap.
    /// Returns the new `name@version`.
    pub fn reload(&self) -> Result<String, ModelError> {
        let files = lock(&self.0.files).clone().ok_or_else(no_file_model)?;
        self.queue(LoadedModel::load(&files)?)
    }

    /// Loads a model of the node's kind from other files and queues it; the
    /// node serves from these files from then on (its watch follows them,
    /// and a restart loads them).
    pub fn load_from(
        &self,
        model: PathBuf,
        metadata: Option<PathBuf>,
    ) -> Result<String, ModelError> {
        let kind = lock(&self.0.files)
            .as_ref()
            .map(|f| f.kind)
            .ok_or_else(no_file_model)?;
        let files = ModelFiles::new(kind, model, metadata);
        let m = LoadedModel::load(&files)?;
        let label = self.queue(m)?;
        *lock(&self.0.files) = Some(files);
        Ok(label)
    }

    fn queue(&self, m: LoadedModel) -> Result<String, ModelError> {
        let label = m.label.to_string();
        if self.current().as_deref() == Some(label.as_str()) {
            return Err(ModelError::Mismatch {
                path: m.files.model.display().to_string(),
                message: format!(
                    "it is {label}, the version already serving: give a new model a new \
                     version in its metadata, so that predictions say which model made them"
                ),
            });
        }
        *lock(&self.0.pending) = Some(Box::new(m));
        self.0.has_pending.store(true, Ordering::Release);
        Ok(label)
    }

    fn take_pending(&self) -> Option<Box<LoadedModel>> {
        // The flag keeps the per-message cost at one atomic load.
        if !self.0.has_pending.swap(false, Ordering::AcqRel) {
            return None;
        }
        lock(&self.0.pending).take()
    }
}

fn no_file_model() -> ModelError {
    ModelError::Mismatch {
        path: "-".into(),
        message: "this predictor runs the physics model, which has no model file".into(),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these leaves plain data behind: go on.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The model control of a `predictor` node's config, if it is one.
pub fn control_of(config: &dyn ComponentConfig) -> Option<ModelControl> {
    config
        .as_any()?
        .downcast_ref::<PredictorConfig>()
        .map(|c| c.control.clone())
}

impl PredictorConfig {
    fn check(&self, resolve: impl Fn(&Path) -> PathBuf, problems: &mut Vec<String>) {
        match &self.model {
            ModelConfig::Physics { params } => {
                if let Err(e) = params.validate() {
                    problems.push(format!("model.params: {e}"));
                }
            }
            m => {
                let files = m.files(resolve).expect("a file model");
                if let Err(e) = LoadedModel::load(&files) {
                    problems.push(format!("model: {e}"));
                }
            }
        }
        if self.compare_physics {
            if let Err(e) = self.physics.validate() {
                problems.push(format!("physics: {e}"));
            }
        }
        if self.max_batch == 0 {
            problems.push("max_batch must be at least 1".into());
        }
        if self.reload_check_ms != 0 && self.reload_check_ms < 10 {
            problems.push(format!(
                "reload_check_ms {} is too short (>= 10 ms, or 0 for no watch)",
                self.reload_check_ms
            ));
        }
    }
}

impl ComponentConfig for PredictorConfig {
    /// Without the pipeline's folder, relative model paths resolve against
    /// the working directory.
    fn validate(&self, problems: &mut Vec<String>) {
        self.check(Path::to_path_buf, problems)
    }

    fn validate_at(&self, base_dir: &Path, problems: &mut Vec<String>) {
        let resolve = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base_dir.join(p)
            }
        };
        self.check(resolve, problems)
    }

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }

    fn build(&self, ctx: &BuildContext) -> Result<Component, ComponentError> {
        let control = self.control.clone();
        let engine = match &self.model {
            ModelConfig::Physics { params } => Engine::Physics(*params),
            m => {
                let configured = m.files(|p| ctx.resolve_path(p)).expect("a file model");
                // A restart serves what was last swapped in through the API.
                let files = {
                    let mut f = lock(&control.0.files);
                    f.get_or_insert(configured).clone()
                };
                let loaded = LoadedModel::load(&files)
                    .map_err(|e| ComponentError::new("model_load", e.to_string()))?;
                Engine::Ml(Box::new(loaded))
            }
        };
        let rejected = |reason: &str| {
            ctx.metrics
                .input_rejected
                .with_label_values(&[&ctx.id, reason])
        };
        let watch = match (&engine, self.reload_check_ms) {
            (Engine::Ml(m), ms) if ms > 0 => Some(Watch {
                interval: Duration::from_millis(ms),
                seen: m.mtimes,
                tried: m.mtimes,
                loading: Arc::new(AtomicBool::new(false)),
            }),
            _ => None,
        };
        let mut p = Predictor {
            id: ctx.id.clone(),
            label: Arc::from(""),
            engine,
            policy: self.on_out_of_range,
            compare: self.compare_physics.then_some(self.physics),
            max_batch: self.max_batch,
            control,
            watch,
            gauges: HashMap::new(),
            prediction_gauge: ctx.metrics.prediction.clone(),
            latency_vec: ctx.metrics.prediction_latency.clone(),
            latency: None,
            rejected_nan: rejected(NON_FINITE),
            rejected_range: rejected(OUT_OF_RANGE),
            rejected_fault: rejected(INPUT_FAULT),
            flagged_units: HashMap::new(),
            rows: Vec::new(),
            outputs: Vec::new(),
        };
        p.set_label();
        Ok(Component::Processor(Box::new(p)))
    }
}

enum Engine {
    Physics(PhysicsParams),
    Ml(Box<LoadedModel>),
}

/// The file watch of an ML model.
struct Watch {
    interval: Duration,
    /// Modification times at the previous tick: a change is loaded once the
    /// files have stopped changing for one interval, so a model and its
    /// metadata copied one after the other load together.
    seen: Option<(SystemTime, SystemTime)>,
    /// Modification times last loaded or tried: a broken file is tried once.
    tried: Option<(SystemTime, SystemTime)>,
    loading: Arc<AtomicBool>,
}

/// A running predictor.
pub struct Predictor {
    id: Arc<str>,
    /// `name@version` of the model serving.
    label: Arc<str>,
    engine: Engine,
    policy: OutOfRangePolicy,
    compare: Option<PhysicsParams>,
    max_batch: usize,
    control: ModelControl,
    watch: Option<Watch>,
    /// Last-prediction gauges per unit (UCAOT, UCWOT, UCAF, Q_thermal),
    /// resolved once per unit and model rather than per message.
    gauges: HashMap<Arc<str>, [Gauge; 4]>,
    prediction_gauge: prometheus::GaugeVec,
    latency_vec: prometheus::HistogramVec,
    latency: Option<Histogram>,
    rejected_nan: IntCounter,
    rejected_range: IntCounter,
    rejected_fault: IntCounter,
    /// Per unit, the inputs flagged in its last screened frame: an event is
    /// raised when the set changes, and resolved when it empties, rather
    /// than one per frame.
    flagged_units: HashMap<Arc<str>, Vec<&'static str>>,
    rows: Vec<[f64; 6]>,
    outputs: Vec<Outputs4>,
}

/// What screening decided for one frame.
enum Screened {
    Reject(ComponentError),
    Predict { x: [f64; 6], flags: Vec<InputFlag> },
}

const OUTPUT_NAMES: [&str; 4] = ["UCAOT", "UCWOT", "UCAF", "Q_thermal"];

/// Physical bounds of each input, [`INPUT_FEATURES`] order.
const PHYSICAL: [(f64, f64); 6] = [
    (T_MIN, T_MAX),
    (T_MIN, T_MAX),
    (0.0, f64::INFINITY),
    (0.0, 100.0),
    (T_MIN, T_MAX),
    (T_MIN, T_MAX),
];

fn finite_or_none(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

impl Predictor {
    fn set_label(&mut self) {
        let old = std::mem::replace(
            &mut self.label,
            match &self.engine {
                Engine::Physics(_) => Arc::from("physics@1"),
                Engine::Ml(m) => m.label.clone(),
            },
        );
        // The old model's last-prediction series would otherwise stay
        // exported with stale values forever.
        for unit in self.gauges.keys() {
            for o in OUTPUT_NAMES {
                let _ = self.prediction_gauge.remove_label_values(&[unit, o, &old]);
            }
        }
        self.gauges.clear();
        self.latency = Some(self.latency_vec.with_label_values(&[&self.id, &self.label]));
        *lock(&self.control.0.current) = Some(self.label.clone());
    }

    fn training_ranges(&self) -> Option<&[(f64, f64); 6]> {
        match &self.engine {
            Engine::Physics(_) => None,
            Engine::Ml(m) => Some(&m.binding.ranges),
        }
    }

    /// Flags, per input, what is out of range, in [`INPUT_FEATURES`] order.
    fn flags(&self, x: &[f64; 6]) -> Vec<InputFlag> {
        let mut flags = Vec::new();
        let ranges = self.training_ranges();
        for (i, name) in INPUT_FEATURES.iter().enumerate() {
            let v = x[i];
            let (plo, phi) = PHYSICAL[i];
            let flag = |reason, (lo, hi): (f64, f64)| InputFlag {
                feature: name.to_string(),
                value: v,
                reason,
                min: finite_or_none(lo),
                max: finite_or_none(hi),
                clamped_to: None,
            };
            if v < plo || v > phi {
                // The clamp target: the training range where there is one.
                let r = ranges.map_or((plo, phi), |r| r[i]);
                flags.push(flag(FlagReason::PhysicallyImpossible, r));
            } else if let Some(r) = ranges.filter(|r| v < r[i].0 || v > r[i].1) {
                flags.push(flag(FlagReason::OutsideTrainingRange, r[i]));
            } else if i == 0 && v >= x[1] && x[1] > x[5] {
                // Chilled water at or above the air temperature while the
                // controller asks for cooling: a sensor or plant fault.
                flags.push(InputFlag {
                    max: Some(x[1]),
                    ..flag(FlagReason::PhysicallyImpossible, (f64::NAN, f64::NAN))
                });
            }
        }
        flags
    }

    /// NaN check, range checks and the out-of-range policy for one frame;
    /// emits the INPUT_OUT_OF_RANGE event when the unit's flags change.
    fn screen(&mut self, f: &SensorFrame, out: &mut Emitter) -> Screened {
        let x = f.inputs();
        // A value its source marked as not to be trusted is never predicted
        // from, whatever it reads.
        let faulty = f
            .quality
            .as_deref()
            .and_then(|q| q.iter().find(|(n, _)| INPUT_FEATURES.contains(&n.as_str())));
        if let Some((name, why)) = faulty {
            self.rejected_fault.inc();
            return Screened::Reject(ComponentError::new(
                INPUT_FAULT,
                format!("unit {}: input {name} is not usable: {why}", f.unit),
            ));
        }
        if let Some(i) = x.iter().position(|v| !v.is_finite()) {
            self.rejected_nan.inc();
            return Screened::Reject(ComponentError::new(
                NON_FINITE,
                format!(
                    "unit {}: input {} must be a finite number, got {}",
                    f.unit, INPUT_FEATURES[i], x[i]
                ),
            ));
        }
        let mut flags = self.flags(&x);
        self.raise_event(f, &flags, out);
        if flags.is_empty() {
            return Screened::Predict { x, flags };
        }
        match self.policy {
            OutOfRangePolicy::Reject => {
                self.rejected_range.inc();
                Screened::Reject(ComponentError::new(
                    OUT_OF_RANGE,
                    format!("unit {}: {}", f.unit, describe(&flags)),
                ))
            }
            OutOfRangePolicy::Flag => Screened::Predict { x, flags },
            OutOfRangePolicy::Clamp => {
                let mut xc = x;
                for fl in &mut flags {
                    let i = INPUT_FEATURES
                        .iter()
                        .position(|n| *n == fl.feature)
                        .expect("a known input");
                    if let (Some(lo), Some(hi)) = (fl.min, fl.max) {
                        xc[i] = x[i].clamp(lo, hi);
                        fl.clamped_to = Some(xc[i]);
                    } else if let Some(lo) = fl.min.filter(|lo| x[i] < *lo) {
                        xc[i] = lo;
                        fl.clamped_to = Some(lo);
                    }
                }
                Screened::Predict { x: xc, flags }
            }
        }
    }

    fn raise_event(&mut self, f: &SensorFrame, flags: &[InputFlag], out: &mut Emitter) {
        let names: Vec<&'static str> = flags
            .iter()
            .filter_map(|fl| INPUT_FEATURES.iter().find(|n| **n == fl.feature).copied())
            .collect();
        let before = self.flagged_units.get(&f.unit);
        if before.map_or(names.is_empty(), |b| *b == names) {
            return;
        }
        let mut a = if names.is_empty() {
            let mut a = Alert::event(
                INPUT_OUT_OF_RANGE,
                Severity::Warning,
                Some(f.unit.clone()),
                format!("unit {}: inputs back within range", f.unit),
                f.ts,
            );
            a.state = AlertState::Resolved;
            self.flagged_units.remove(&f.unit);
            a
        } else {
            self.flagged_units.insert(f.unit.clone(), names);
            Alert::event(
                INPUT_OUT_OF_RANGE,
                Severity::Warning,
                Some(f.unit.clone()),
                format!("unit {}: {}", f.unit, describe(flags)),
                f.ts,
            )
        };
        a.details = json!({
            "features": flags,
            "policy": self.policy.as_str(),
            "model": &*self.label,
        });
        out.emit(Message::Alert(a));
    }

    /// Swaps in a model the control has queued, between two messages.
    fn apply_pending(&mut self, out: &mut Emitter) {
        let Some(new) = self.control.take_pending() else {
            return;
        };
        let old = self.label.clone();
        if let Some(w) = &mut self.watch {
            w.seen = new.mtimes;
            w.tried = new.mtimes;
        }
        self.engine = Engine::Ml(new);
        self.set_label();
        self.control.0.swaps.fetch_add(1, Ordering::AcqRel);
        tracing::info!(component_id = %self.id, from = %old, to = %self.label, "model swapped");
        let mut a = Alert::event(
            MODEL_SWAPPED,
            Severity::Info,
            None,
            format!(
                "predictor {}: model {old} replaced by {}",
                self.id, self.label
            ),
            Utc::now(),
        );
        a.details = json!({"from": &*old, "to": &*self.label, "component": &*self.id});
        out.emit(Message::Alert(a));
    }

    fn report_failures(&mut self, out: &mut Emitter) {
        let failures = std::mem::take(&mut *lock(&self.control.0.failures));
        for why in failures {
            tracing::error!(component_id = %self.id, "model reload failed: {why}");
            let mut a = Alert::event(
                MODEL_RELOAD_FAILED,
                Severity::Error,
                None,
                format!(
                    "predictor {}: the changed model was not loaded; {} keeps serving: {why}",
                    self.id, self.label
                ),
                Utc::now(),
            );
            a.details = json!({"error": why, "serving": &*self.label, "component": &*self.id});
            out.emit(Message::Alert(a));
        }
    }

    /// Looks at the model files; starts a background load of a change that
    /// has settled.
    fn watch_files(&mut self) {
        let Some(w) = &mut self.watch else { return };
        let Some(files) = lock(&self.control.0.files).clone() else {
            return;
        };
        let now = files.mtimes();
        let settled = now.is_some() && now == w.seen;
        w.seen = now;
        if !settled || now == w.tried || w.loading.load(Ordering::Acquire) {
            return;
        }
        w.tried = now;
        w.loading.store(true, Ordering::Release);
        let (control, loading) = (self.control.clone(), w.loading.clone());
        // A thread of its own: loading and optimising a model takes
        // milliseconds the stream should not wait for.
        std::thread::spawn(move || {
            match LoadedModel::load(&files) {
                Ok(m) => {
                    if let Err(e) = control.queue(m) {
                        tracing::warn!("changed model files not swapped in: {e}");
                    }
                }
                Err(e) => lock(&control.0.failures).push(e.to_string()),
            }
            loading.store(false, Ordering::Release);
        });
    }

    /// Predicts the screened rows, in order.
    fn evaluate(&mut self) -> Result<(), ComponentError> {
        self.outputs.clear();
        match &mut self.engine {
            Engine::Physics(p) => {
                for x in &self.rows {
                    // Physics is per row: a refused row is marked with NaN
                    // here and rejected, with the reason, when its
                    // prediction is made.
                    let y = match physics::predict(p, &CoilInputs::from_features(*x)) {
                        Ok(s) => Outputs4 {
                            ucaot: s.ucaot,
                            ucwot: s.ucwot,
                            ucaf: s.ucaf,
                            q_thermal: s.q_total,
                        },
                        Err(_) => Outputs4 {
                            ucaot: f64::NAN,
                            ucwot: f64::NAN,
                            ucaf: f64::NAN,
                            q_thermal: f64::NAN,
                        },
                    };
                    self.outputs.push(y);
                }
                Ok(())
            }
            Engine::Ml(m) => {
                let mut buf = Vec::with_capacity(self.max_batch);
                for chunk in self.rows.chunks(self.max_batch) {
                    m.predict(chunk, &mut buf)
                        .map_err(|e| ComponentError::new("model_error", e))?;
                    self.outputs.extend_from_slice(&buf);
                }
                Ok(())
            }
        }
    }

    fn prediction(
        &mut self,
        f: &SensorFrame,
        x: &[f64; 6],
        y: Outputs4,
        flags: Vec<InputFlag>,
    ) -> Result<Prediction, ComponentError> {
        if !(y.ucaot.is_finite() && y.ucwot.is_finite() && y.ucaf.is_finite()) {
            let e = match &self.engine {
                // Physics refuses rows it is not defined for: say why in
                // its own words.
                Engine::Physics(p) => match physics::predict(p, &CoilInputs::from_features(*x)) {
                    Err(e @ PhysicsError::NonFinite { .. }) => {
                        self.rejected_nan.inc();
                        ComponentError::new(NON_FINITE, e.to_string())
                    }
                    Err(e) => {
                        self.rejected_range.inc();
                        ComponentError::new(OUT_OF_RANGE, e.to_string())
                    }
                    Ok(_) => ComponentError::new("model_error", "non-finite physics result"),
                },
                Engine::Ml(_) => {
                    ComponentError::new("model_error", "the model returned a non-finite value")
                }
            };
            return Err(ComponentError::new(
                e.reason,
                format!("unit {}: {}", f.unit, e.message),
            ));
        }
        let physics_residual = match self.compare {
            Some(p) => match physics::predict(&p, &CoilInputs::from_features(*x)) {
                Ok(s) => Outputs {
                    ucaot: Some(y.ucaot - s.ucaot),
                    ucwot: Some(y.ucwot - s.ucwot),
                    ucaf: Some(y.ucaf - s.ucaf),
                    q_thermal: Some(y.q_thermal - s.q_total),
                },
                Err(_) => Outputs::default(),
            },
            None => Outputs::default(),
        };
        let residual = Outputs {
            ucaot: f.ucaot.map(|m| m - y.ucaot),
            ucwot: f.ucwot.map(|m| m - y.ucwot),
            ucaf: f.ucaf.map(|m| m - y.ucaf),
            q_thermal: f.ucwot.map(|m| q_thermal(f.ucwit, m, f.ucwf) - y.q_thermal),
        };
        let g = self.gauges.entry(f.unit.clone()).or_insert_with(|| {
            OUTPUT_NAMES.map(|o| {
                self.prediction_gauge
                    .with_label_values(&[&f.unit, o, &self.label])
            })
        });
        g[0].set(y.ucaot);
        g[1].set(y.ucwot);
        g[2].set(y.ucaf);
        g[3].set(y.q_thermal);
        Ok(Prediction {
            unit: f.unit.clone(),
            ts: f.ts,
            ucaot: y.ucaot,
            ucwot: y.ucwot,
            ucaf: y.ucaf,
            q_thermal: y.q_thermal,
            model: self.label.clone(),
            inputs: Inputs::from(f),
            measured: Measured {
                ucaot: f.ucaot,
                ucwot: f.ucwot,
                ucaf: f.ucaf,
            },
            flags,
            residual,
            physics_residual,
        })
    }

    /// Screens, predicts and emits a batch of messages, in order; `begin(out, i)`
    /// is called before anything made from message `i` is emitted.
    fn run(
        &mut self,
        msgs: &[&Message],
        out: &mut Emitter,
        mut begin: impl FnMut(&mut Emitter, usize),
    ) -> Vec<Result<(), ComponentError>> {
        let t0 = Instant::now();
        if let Some(i) = (!msgs.is_empty()).then_some(0) {
            begin(out, i);
        }
        self.apply_pending(out);
        let mut results: Vec<Result<(), ComponentError>> = Vec::with_capacity(msgs.len());
        let mut work: Vec<(usize, Vec<InputFlag>)> = Vec::with_capacity(msgs.len());
        self.rows.clear();
        // Screening emits events in message order; predictions follow once
        // the model has run, each after its own message's event.
        let mut events: Vec<Vec<crate::pipeline::component::Envelope>> = Vec::new();
        for (i, msg) in msgs.iter().enumerate() {
            results.push(Ok(()));
            let Message::Frame(f) = msg else { continue };
            begin(out, i);
            let mark = out.out.len();
            let s = self.screen(f, out);
            events.push(out.out.drain(mark..).collect());
            match s {
                Screened::Reject(e) => results[i] = Err(e),
                Screened::Predict { x, flags } => {
                    self.rows.push(x);
                    work.push((i, flags));
                }
            }
        }
        if let Err(e) = self.evaluate() {
            for (i, _) in &work {
                results[*i] = Err(e.clone());
            }
            work.clear();
        }
        let mut events = events.into_iter();
        let mut rows = std::mem::take(&mut self.rows);
        let mut outputs = std::mem::take(&mut self.outputs).into_iter();
        let mut pending = work.into_iter().zip(rows.iter()).peekable();
        for (i, msg) in msgs.iter().enumerate() {
            let Message::Frame(f) = msg else { continue };
            begin(out, i);
            out.out.extend(events.next().unwrap_or_default());
            if pending.peek().is_some_and(|((j, _), _)| *j == i) {
                let ((_, flags), x) = pending.next().expect("peeked");
                let y = outputs.next().expect("one output per row");
                match self.prediction(f, x, y, flags) {
                    Ok(p) => out.emit(Message::Prediction(p)),
                    Err(e) => results[i] = Err(e),
                }
            }
        }
        rows.clear();
        self.rows = rows;
        let n = msgs.len().max(1);
        if let Some(h) = &self.latency {
            let per = t0.elapsed().as_secs_f64() / n as f64;
            for _ in 0..msgs.len() {
                h.observe(per);
            }
        }
        results
    }
}

fn describe(flags: &[InputFlag]) -> String {
    let parts: Vec<String> = flags
        .iter()
        .map(|f| {
            let range = match (f.min, f.max) {
                (Some(lo), Some(hi)) => format!("{lo}..{hi}"),
                (Some(lo), None) => format!(">= {lo}"),
                (None, Some(hi)) => format!("< {hi}"),
                (None, None) => String::new(),
            };
            let why = match f.reason {
                FlagReason::OutsideTrainingRange => "outside the training range",
                FlagReason::PhysicallyImpossible => "physically impossible",
            };
            format!("{} = {} is {why} ({range})", f.feature, f.value)
        })
        .collect();
    parts.join("; ")
}

#[async_trait]
impl Processor for Predictor {
    async fn process(
        &mut self,
        msg: &Arc<Message>,
        out: &mut Emitter,
    ) -> Result<(), ComponentError> {
        self.run(&[&**msg], out, |_, _| {}).pop().unwrap_or(Ok(()))
    }

    fn batched(&self) -> bool {
        true
    }

    async fn process_batch(
        &mut self,
        batch: &[Envelope],
        out: &mut Emitter,
    ) -> Vec<Result<(), ComponentError>> {
        let msgs: Vec<&Message> = batch.iter().map(|e| &*e.msg).collect();
        self.run(&msgs, out, |out, i| out.begin(&batch[i]))
    }

    fn tick_interval(&self) -> Option<Duration> {
        self.watch.as_ref().map(|w| w.interval)
    }

    async fn tick(&mut self, out: &mut Emitter) -> Result<(), ComponentError> {
        self.report_failures(out);
        self.apply_pending(out);
        self.watch_files();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::pipeline::message::PointQuality;

    fn build(cfg: &PredictorConfig) -> Box<dyn Processor> {
        let metrics = Metrics::new();
        let ctx = BuildContext {
            id: "p".into(),
            component_metrics: metrics.component("p", "transform", "predictor"),
            metrics,
            base_dir: ".".into(),
            events: Default::default(),
        };
        match cfg.build(&ctx).unwrap() {
            Component::Processor(p) => p,
            Component::Source(_) => unreachable!(),
        }
    }

    fn predictor() -> Box<dyn Processor> {
        build(&PredictorConfig::default())
    }

    fn frame_with(edit: impl FnOnce(&mut SensorFrame)) -> Arc<Message> {
        let mut f = SensorFrame {
            unit: "uc-01".into(),
            ts: chrono::Utc::now(),
            ucwit: 7.5,
            ucait: 25.0,
            ucwf: 15.0,
            ucaih: 50.0,
            ambt: 22.0,
            uctsp: 21.0,
            ucaot: Some(16.0),
            ucwot: None,
            ucaf: None,
            quality: None,
        };
        edit(&mut f);
        Arc::new(Message::Frame(f))
    }

    fn frame(ucwit: f64) -> Arc<Message> {
        frame_with(|f| f.ucwit = ucwit)
    }

    fn predictions(em: &Emitter) -> Vec<&Prediction> {
        em.out
            .iter()
            .filter_map(|e| match &*e.msg {
                Message::Prediction(p) => Some(p),
                _ => None,
            })
            .collect()
    }

    fn alerts(em: &Emitter) -> Vec<&Alert> {
        em.out
            .iter()
            .filter_map(|e| match &*e.msg {
                Message::Alert(a) => Some(a),
                _ => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn predicts_with_the_reference_physics() {
        let mut p = predictor();
        let mut em = Emitter::default();
        p.process(&frame(7.5), &mut em).await.unwrap();
        assert_eq!(em.out.len(), 1);
        let pred = predictions(&em)[0];
        let x = CoilInputs::EXAMPLE;
        let s = physics::predict(&PhysicsParams::default(), &x).unwrap();
        assert_eq!(pred.ucaot, s.ucaot);
        assert_eq!(pred.q_thermal, s.q_total);
        assert!(pred.q_thermal > 0.0, "cooling is positive");
        assert_eq!(pred.measured.ucaot, Some(16.0));
        assert_eq!(pred.residual.ucaot, Some(16.0 - s.ucaot));
        assert_eq!(pred.residual.ucwot, None);
        assert!(pred.physics_residual.is_empty());
        assert!(pred.flags.is_empty());
        assert_eq!(&*pred.model, "physics@1");
    }

    #[tokio::test]
    async fn nan_is_an_error_with_a_reason_not_a_panic() {
        let mut p = predictor();
        let mut em = Emitter::default();
        let e = p.process(&frame(f64::NAN), &mut em).await.unwrap_err();
        assert_eq!(e.reason, "non_finite_input");
        assert!(e.message.contains("UCWIT"), "{}", e.message);
        assert!(em.out.is_empty(), "no prediction and no event for a NaN");
    }

    #[tokio::test]
    async fn an_input_its_source_marked_faulty_is_not_predicted_from() {
        let mut p = predictor();
        let mut em = Emitter::default();
        let bad = frame_with(|f| {
            f.quality = Some(Box::new(PointQuality::from([(
                "UCWF".to_string(),
                "fault (communicationFailure)".to_string(),
            )])))
        });
        let e = p.process(&bad, &mut em).await.unwrap_err();
        assert_eq!(e.reason, "input_fault");
        assert!(e.message.contains("UCWF") && e.message.contains("communicationFailure"));
        assert!(em.out.is_empty());
        // A marked measured output does not stop the prediction.
        let measured_only = frame_with(|f| {
            f.quality = Some(Box::new(PointQuality::from([(
                "UCAOT".to_string(),
                "out of service".to_string(),
            )])))
        });
        p.process(&measured_only, &mut em).await.unwrap();
        assert_eq!(predictions(&em).len(), 1);
    }

    #[tokio::test]
    async fn impossible_physics_inputs_raise_one_event_and_are_refused() {
        let mut p = predictor();
        let mut em = Emitter::default();
        for _ in 0..3 {
            let e = p
                .process(&frame_with(|f| f.ucwf = -3.0), &mut em)
                .await
                .unwrap_err();
            assert_eq!(e.reason, "input_out_of_range");
        }
        let a = alerts(&em);
        assert_eq!(a.len(), 1, "one event while the condition holds");
        assert_eq!(a[0].code, INPUT_OUT_OF_RANGE);
        assert_eq!(a[0].severity, Severity::Warning);
        assert_eq!(a[0].details["features"][0]["feature"], "UCWF");
        assert_eq!(
            a[0].details["features"][0]["reason"],
            "physically_impossible"
        );
        assert_eq!(a[0].details["features"][0]["value"], -3.0);
        // Back in range: resolved, and predicted again.
        em.out.clear();
        p.process(&frame(7.5), &mut em).await.unwrap();
        let a = alerts(&em);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].state, AlertState::Resolved);
        assert_eq!(predictions(&em).len(), 1);
    }

    #[tokio::test]
    async fn warm_water_while_cooling_is_flagged_and_still_predicted() {
        let mut p = predictor();
        let mut em = Emitter::default();
        // UCAIT 25 > UCTSP 21: cooling asked for, with 26 °C water.
        p.process(&frame(26.0), &mut em).await.unwrap();
        let pred = predictions(&em)[0];
        assert_eq!(pred.flags.len(), 1);
        assert_eq!(pred.flags[0].feature, "UCWIT");
        assert_eq!(pred.flags[0].max, Some(25.0));
        // Not cooling (air below setpoint): the same water is no fault.
        let mut em = Emitter::default();
        p.process(
            &frame_with(|f| {
                f.ucwit = 26.0;
                f.ucait = 20.0
            }),
            &mut em,
        )
        .await
        .unwrap();
        assert!(predictions(&em)[0].flags.is_empty());
    }

    #[tokio::test]
    async fn compare_physics_is_zero_for_physics_itself() {
        let mut p = build(&PredictorConfig {
            compare_physics: true,
            ..Default::default()
        });
        let mut em = Emitter::default();
        p.process(&frame(7.5), &mut em).await.unwrap();
        let r = predictions(&em)[0].physics_residual;
        assert_eq!(r.ucaot, Some(0.0));
        assert_eq!(r.q_thermal, Some(0.0));
    }

    #[tokio::test]
    async fn batches_keep_order_and_each_message_its_result() {
        let mut p = predictor();
        let mut em = Emitter::default();
        let batch: Vec<Envelope> = [frame(7.5), frame(f64::NAN), frame(8.0)]
            .into_iter()
            .map(|m| Envelope { msg: m, ack: None })
            .collect();
        let res = p.process_batch(&batch, &mut em).await;
        assert!(res[0].is_ok() && res[2].is_ok());
        assert_eq!(res[1].as_ref().unwrap_err().reason, "non_finite_input");
        let preds = predictions(&em);
        assert_eq!(preds.len(), 2);
        assert_eq!(preds[0].inputs.ucwit, 7.5);
        assert_eq!(preds[1].inputs.ucwit, 8.0);
    }

    #[test]
    fn config_parses_every_model_kind() {
        let p: PredictorConfig = serde_json::from_value(json!({
            "model": {"kind": "tree_ensemble", "path": "m.onnx"},
            "on_out_of_range": "clamp",
            "compare_physics": true,
            "max_batch": 64,
            "reload_check_ms": 0
        }))
        .unwrap();
        assert!(
            matches!(p.model, ModelConfig::TreeEnsemble(ref f) if f.path == Path::new("m.onnx"))
        );
        assert_eq!(p.on_out_of_range, OutOfRangePolicy::Clamp);
        let e = serde_json::from_value::<PredictorConfig>(json!({
            "model": {"kind": "onnx", "path": "m.onnx", "bogus": 1}
        }))
        .unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
        let mut problems = Vec::new();
        p.validate(&mut problems);
        assert!(problems[0].contains("m.onnx"), "{problems:?}");
    }
}
