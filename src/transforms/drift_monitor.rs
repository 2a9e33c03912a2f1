//! `drift_monitor`: per unit and per feature, whether the plant still looks
//! like the data the model was trained on (data drift), and whether the
//! model has started to miss (performance drift).
//!
//! For each unit the monitor keeps a window of each feature — the last
//! `window.size` samples, or the last `window.duration` of them — and every
//! `window.step` new samples compares it with the unit's reference (from a
//! CSV file, or learned from the unit's first frames and kept in
//! `state_file`) using the statistics of `crate::drift`: PSI, two-sample KS
//! with an effect-size guard, normalised Wasserstein, Jensen–Shannon. With
//! measured outputs it also tracks MAE, RMSE and R² of the predictions against
//! the reference period's. It emits a `DriftReport` per evaluation, updates
//! gauges, and emits DRIFT_DETECTED and PERFORMANCE_DEGRADED events only when
//! a unit's status changes (and `resolved` when it returns to normal).
//! Below the minimum window no verdict is issued.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use prometheus::GaugeVec;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::config::duration;
use crate::drift::{
    compare_sorted, report_from_stats, DriftConfig, FeatureStats, PerformanceMetrics,
    PerformanceRule, ReferenceSet,
};
use crate::pipeline::component::{
    parse_config, BuildContext, Component, ComponentConfig, ComponentDescriptor, ComponentError,
    Emitter, Processor, Role,
};
use crate::pipeline::message::{
    Alert, AlertState, DriftReport, DriftStatus, KindSet, Message, MessageKind, Severity,
    INPUT_FEATURES, OUTPUT_FEATURES,
};

pub const DESCRIPTOR: ComponentDescriptor = ComponentDescriptor {
    type_name: "drift_monitor",
    role: Role::Transform,
    accepts: KindSet::of(&[MessageKind::Frame, MessageKind::Prediction]),
    emits: KindSet::of(&[MessageKind::Drift, MessageKind::Alert]),
    summary: "Per-unit data drift (PSI, KS, Wasserstein, JS) and model performance drift.",
    parse: parse_config::<DriftMonitorConfig>,
};

/// Where the reference comes from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferenceConfig {
    /// A CSV file with a header naming the features (the training data):
    /// one reference for every unit.
    #[serde(default)]
    pub csv: Option<PathBuf>,
    /// Otherwise: learn each unit's reference from its first this many frames.
    #[serde(default = "default_learn")]
    pub learn_frames: usize,
}

fn default_learn() -> usize {
    1000
}

impl Default for ReferenceConfig {
    fn default() -> Self {
        ReferenceConfig {
            csv: None,
            learn_frames: default_learn(),
        }
    }
}

/// The window compared with the reference.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowConfig {
    /// Samples in the window (count-based; default 500).
    #[serde(default)]
    pub size: Option<usize>,
    /// Or: the span of message time the window covers (time-based).
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub duration: Option<Duration>,
    /// Evaluate every this many new samples; `step = size` makes tumbling
    /// windows. Default: a fifth of the size (sliding).
    #[serde(default)]
    pub step: Option<usize>,
}

impl Default for WindowConfig {
    fn default() -> Self {
        WindowConfig {
            size: Some(500),
            duration: None,
            step: None,
        }
    }
}

/// Settings of a `drift_monitor` node.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriftMonitorConfig {
    /// Features watched; default the six model inputs.
    #[serde(default = "default_features")]
    pub features: Vec<String>,
    #[serde(default)]
    pub reference: ReferenceConfig,
    #[serde(default)]
    pub window: WindowConfig,
    /// Status rule, KS method and minimum sizes (see `twinflow drift`).
    #[serde(default)]
    pub drift: DriftConfig,
    /// PERFORMANCE_DEGRADED thresholds (original: MAE or RMSE +10 %, R² −0.05).
    #[serde(default)]
    pub performance: PerformanceRule,
    /// A new status (drift or performance) must hold for this many
    /// consecutive evaluations before an event is emitted, so a window
    /// straddling a change, or an error metric wobbling at its limit, does
    /// not flap (default 3).
    #[serde(default = "default_confirm")]
    pub confirm: usize,
    /// File keeping the learned references (and reference-period model
    /// errors) across restarts.
    #[serde(default)]
    pub state_file: Option<PathBuf>,
}

fn default_confirm() -> usize {
    3
}

fn default_features() -> Vec<String> {
    INPUT_FEATURES.iter().map(|s| s.to_string()).collect()
}

impl ComponentConfig for DriftMonitorConfig {
    fn validate(&self, problems: &mut Vec<String>) {
        let known: Vec<&str> = INPUT_FEATURES
            .iter()
            .chain(OUTPUT_FEATURES.iter())
            .copied()
            .collect();
        for f in &self.features {
            if !known.contains(&f.as_str()) {
                problems.push(format!(
                    "unknown feature \"{f}\" (known: {})",
                    known.join(", ")
                ));
            }
        }
        if self.features.is_empty() {
            problems.push("features must not be empty".into());
        }
        match (self.window.size, self.window.duration) {
            (Some(_), Some(_)) => problems.push("window: give size or duration, not both".into()),
            (Some(0), _) => problems.push("window.size must be at least 1".into()),
            (_, Some(d)) if d.is_zero() => problems.push("window.duration must be positive".into()),
            (None, None) => problems.push("window: give size or duration".into()),
            _ => {}
        }
        if self.confirm == 0 {
            problems.push("confirm must be at least 1".into());
        }
        if self.window.step == Some(0) {
            problems.push("window.step must be at least 1".into());
        }
        if let (Some(size), Some(step)) = (self.window.size, self.window.step) {
            if step > size {
                problems.push(format!(
                    "window.step ({step}) must not exceed window.size ({size})"
                ));
            }
        }
        if let Some(size) = self.window.size {
            if size < self.drift.min_window {
                problems.push(format!(
                    "window.size {size} is below drift.min_window {}: no verdict would ever be issued",
                    self.drift.min_window
                ));
            }
        }
        if self.reference.csv.is_none() && self.reference.learn_frames < self.drift.min_reference {
            problems.push(format!(
                "reference.learn_frames {} is below drift.min_reference {}",
                self.reference.learn_frames, self.drift.min_reference
            ));
        }
        if let Some(csv) = &self.reference.csv {
            if let Err(e) = crate::drift::data::load_columns(csv, &self.features) {
                problems.push(format!("reference.csv: {e}"));
            }
        }
    }

    fn build(&self, ctx: &BuildContext) -> Result<Component, ComponentError> {
        let shared = match &self.reference.csv {
            Some(csv) => {
                let path = ctx.resolve_path(csv);
                let cols = crate::drift::data::load_columns(&path, &self.features)
                    .map_err(|e| ComponentError::new("reference", e.to_string()))?;
                Some(
                    ReferenceSet::from_columns(cols)
                        .map_err(|e| ComponentError::new("reference", e.to_string()))?,
                )
            }
            None => None,
        };
        let state_file = self.state_file.as_ref().map(|p| ctx.resolve_path(p));
        let mut m = DriftMonitor {
            id: ctx.id.clone(),
            cfg: self.clone(),
            shared,
            state_file,
            units: HashMap::new(),
            g: Gauges::new(&ctx.metrics),
        };
        m.load_state()?;
        Ok(Component::Processor(Box::new(m)))
    }
}

/// A value with the time of the message it came from.
type Timed<T> = (DateTime<Utc>, T);

/// (measured, predicted) of one output, when the message has them.
type Pair = (Option<f64>, Option<f64>);

/// What a message offers the monitor: unit, time, the nine features in
/// [`feature_index`] order (NaN when absent), and the output pairs.
struct Observation {
    unit: Arc<str>,
    ts: DateTime<Utc>,
    values: [f64; 9],
    pairs: [Pair; 3],
}

/// What is persisted per unit.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Learned {
    reference: Option<ReferenceSet>,
    /// Model errors over the reference period, per output.
    performance: BTreeMap<String, PerformanceMetrics>,
}

#[derive(Default)]
struct UnitState {
    learned: Learned,
    /// Samples collected for learning (per feature), until the reference exists.
    learning: BTreeMap<String, Vec<f64>>,
    /// (measured, predicted) pairs per output during the reference period.
    learning_pairs: BTreeMap<String, (Vec<f64>, Vec<f64>)>,
    windows: BTreeMap<String, VecDeque<Timed<f64>>>,
    pairs: BTreeMap<String, VecDeque<Timed<(f64, f64)>>>,
    since_eval: usize,
    status: Option<DriftStatus>,
    degraded: Option<bool>,
    /// A different status seen in the last evaluations, and how often.
    pending_status: Option<(DriftStatus, usize)>,
    pending_degraded: Option<(bool, usize)>,
}

/// Debounces a state: returns the previous confirmed value when `seen`
/// becomes the new confirmed one, `None` otherwise.
fn confirm<T: Copy + PartialEq>(
    current: &mut Option<T>,
    pending: &mut Option<(T, usize)>,
    seen: T,
    needed: usize,
) -> Option<Option<T>> {
    if *current == Some(seen) {
        *pending = None;
        return None;
    }
    let count = match *pending {
        Some((s, n)) if s == seen => n + 1,
        _ => 1,
    };
    // The first verdict needs no confirmation: there is nothing to flap from.
    if count >= needed || current.is_none() {
        *pending = None;
        return Some(current.replace(seen));
    }
    *pending = Some((seen, count));
    None
}

struct Gauges {
    psi: GaugeVec,
    ks: GaugeVec,
    ks_p: GaugeVec,
    wasserstein: GaugeVec,
    feature_status: GaugeVec,
    status: GaugeVec,
    perf: GaugeVec,
}

impl Gauges {
    fn new(m: &crate::metrics::Metrics) -> Gauges {
        Gauges {
            psi: m.drift_psi.clone(),
            ks: m.drift_ks_statistic.clone(),
            ks_p: m.drift_ks_pvalue.clone(),
            wasserstein: m.drift_wasserstein.clone(),
            feature_status: m.drift_feature_status.clone(),
            status: m.drift_status.clone(),
            perf: m.model_error.clone(),
        }
    }
}

fn status_value(s: DriftStatus) -> f64 {
    match s {
        DriftStatus::Stable => 0.0,
        DriftStatus::Warning => 1.0,
        DriftStatus::Critical => 2.0,
    }
}

pub struct DriftMonitor {
    id: Arc<str>,
    cfg: DriftMonitorConfig,
    /// The CSV reference, shared by every unit.
    shared: Option<ReferenceSet>,
    state_file: Option<PathBuf>,
    units: HashMap<Arc<str>, UnitState>,
    g: Gauges,
}

fn observe_message(m: &Message) -> Option<Observation> {
    let nan = |v: Option<f64>| v.unwrap_or(f64::NAN);
    match m {
        Message::Frame(f) => {
            let [a, b, c, d, e, g] = f.inputs();
            let [o1, o2, o3] = f.measured();
            Some(Observation {
                unit: f.unit.clone(),
                ts: f.ts,
                values: [a, b, c, d, e, g, nan(o1), nan(o2), nan(o3)],
                pairs: [(None, None); 3],
            })
        }
        Message::Prediction(p) => {
            let i = &p.inputs;
            let m = &p.measured;
            Some(Observation {
                unit: p.unit.clone(),
                ts: p.ts,
                values: [
                    i.ucwit,
                    i.ucait,
                    i.ucwf,
                    i.ucaih,
                    i.ambt,
                    i.uctsp,
                    nan(m.ucaot),
                    nan(m.ucwot),
                    nan(m.ucaf),
                ],
                pairs: [
                    (m.ucaot, Some(p.ucaot)),
                    (m.ucwot, Some(p.ucwot)),
                    (m.ucaf, Some(p.ucaf)),
                ],
            })
        }
        _ => None,
    }
}

fn feature_index(name: &str) -> Option<usize> {
    INPUT_FEATURES
        .iter()
        .chain(OUTPUT_FEATURES.iter())
        .position(|f| *f == name)
}

impl DriftMonitor {
    fn load_state(&mut self) -> Result<(), ComponentError> {
        let Some(path) = &self.state_file else {
            return Ok(());
        };
        let Some(saved) =
            crate::pipeline::state::load::<BTreeMap<String, Learned>>(path, "drift state")?
        else {
            return Ok(());
        };
        for (unit, learned) in saved {
            self.units.insert(
                Arc::from(unit.as_str()),
                UnitState {
                    learned,
                    ..Default::default()
                },
            );
        }
        tracing::info!(component_id = %self.id, units = self.units.len(), "drift references restored");
        Ok(())
    }

    fn save_state(&self) {
        let Some(path) = &self.state_file else {
            return;
        };
        let all: BTreeMap<&str, &Learned> = self
            .units
            .iter()
            .filter(|(_, u)| u.learned.reference.is_some())
            .map(|(k, u)| (&**k, &u.learned))
            .collect();
        let res = crate::pipeline::state::save(path, &all);
        if let Err(e) = res {
            tracing::error!(component_id = %self.id, path = %path.display(), error = %e, "cannot save drift state");
        }
    }

    fn observe(&mut self, msg: &Message, out: &mut Emitter) -> Result<(), ComponentError> {
        let Some(Observation {
            unit,
            ts,
            values: vals,
            pairs,
        }) = observe_message(msg)
        else {
            return Ok(());
        };
        let learn_n = self.cfg.reference.learn_frames;
        let learning_from_stream = self.shared.is_none();
        let st = self.units.entry(unit.clone()).or_default();

        // Learning: the first frames of the unit are its reference.
        if learning_from_stream && st.learned.reference.is_none() {
            for f in &self.cfg.features {
                let v = vals[feature_index(f).expect("validated")];
                if v.is_finite() {
                    st.learning.entry(f.clone()).or_default().push(v);
                }
            }
            collect_pairs(&mut st.learning_pairs, &pairs);
            let done = self
                .cfg
                .features
                .iter()
                .all(|f| st.learning.get(f).is_some_and(|v| v.len() >= learn_n));
            if done {
                let cols = std::mem::take(&mut st.learning);
                st.learned.reference = Some(
                    ReferenceSet::from_columns(cols)
                        .map_err(|e| ComponentError::new("reference", e.to_string()))?,
                );
                for (o, (m, p)) in std::mem::take(&mut st.learning_pairs) {
                    if let Ok(pm) = crate::drift::performance::performance(&m, &p) {
                        st.learned.performance.insert(o, pm);
                    }
                }
                tracing::info!(component_id = %self.id, %unit, samples = learn_n, "drift reference learned");
                self.save_state();
            }
            return Ok(());
        }
        if !learning_from_stream && st.learned.performance.is_empty() {
            // With a CSV reference, the reference period for model errors is
            // still the unit's first frames.
            collect_pairs(&mut st.learning_pairs, &pairs);
            if st.learning_pairs.values().any(|(m, _)| m.len() >= learn_n) {
                for (o, (m, p)) in std::mem::take(&mut st.learning_pairs) {
                    if let Ok(pm) = crate::drift::performance::performance(&m, &p) {
                        st.learned.performance.insert(o, pm);
                    }
                }
            }
        }

        // The window.
        for f in &self.cfg.features {
            let v = vals[feature_index(f).expect("validated")];
            if !v.is_finite() {
                continue;
            }
            let w = st.windows.entry(f.clone()).or_default();
            w.push_back((ts, v));
            trim(w, self.cfg.window.size, self.cfg.window.duration, ts);
        }
        for (i, (m, p)) in pairs.iter().enumerate() {
            if let (Some(m), Some(p)) = (m, p) {
                if m.is_finite() && p.is_finite() {
                    let w = st.pairs.entry(OUTPUT_FEATURES[i].to_string()).or_default();
                    w.push_back((ts, (*m, *p)));
                    trim(w, self.cfg.window.size, self.cfg.window.duration, ts);
                }
            }
        }
        st.since_eval += 1;
        let step = self
            .cfg
            .window
            .step
            .unwrap_or_else(|| (self.cfg.window.size.unwrap_or(500) / 5).max(1));
        if st.since_eval >= step {
            st.since_eval = 0;
            self.evaluate(&unit, ts, out)?;
        }
        Ok(())
    }

    fn evaluate(
        &mut self,
        unit: &Arc<str>,
        ts: DateTime<Utc>,
        out: &mut Emitter,
    ) -> Result<(), ComponentError> {
        let st = self.units.get_mut(unit).expect("unit exists");
        let Some(reference) = st.learned.reference.as_ref().or(self.shared.as_ref()) else {
            return Ok(());
        };
        let mut stats: BTreeMap<String, FeatureStats> = BTreeMap::new();
        for f in &self.cfg.features {
            let (Some(w), Some(profile)) = (st.windows.get(f), reference.get(f)) else {
                continue;
            };
            if w.is_empty() {
                continue;
            }
            let mut sorted: Vec<f64> = w.iter().map(|(_, v)| *v).collect();
            sorted.sort_by(f64::total_cmp);
            let s = compare_sorted(profile, &sorted, self.cfg.drift.ks_method)
                .map_err(|e| ComponentError::new("drift", format!("{f}: {e}")))?;
            stats.insert(f.clone(), s);
        }
        let report = match report_from_stats(&self.cfg.drift, unit, ts, &stats) {
            Ok(r) => Some(r),
            // Too little data: no verdict, by design.
            Err(e) if e.is_insufficient_data() => None,
            Err(e) => return Err(ComponentError::new("drift", e.to_string())),
        };
        if let Some(report) = report {
            self.publish_drift(unit, report, out);
        }
        self.check_performance(unit, ts, out);
        Ok(())
    }

    fn publish_drift(&mut self, unit: &Arc<str>, report: DriftReport, out: &mut Emitter) {
        for (f, d) in &report.features {
            let l = [&**unit, f.as_str()];
            self.g.psi.with_label_values(&l).set(d.psi);
            self.g.ks.with_label_values(&l).set(d.ks_statistic);
            self.g.ks_p.with_label_values(&l).set(d.ks_pvalue);
            self.g.wasserstein.with_label_values(&l).set(d.wasserstein);
            self.g
                .feature_status
                .with_label_values(&l)
                .set(status_value(d.status));
        }
        let overall = report.summary.overall_status;
        self.g
            .status
            .with_label_values(&[unit])
            .set(status_value(overall));
        let st = self.units.get_mut(unit).expect("unit exists");
        let needed = self.cfg.confirm.max(1);
        // Events only on a confirmed change of status, not every window. The
        // first verdict after a start is always sent, a stable one as
        // `resolved`: an alert restored from before the restart may be
        // waiting for it (the alerter ignores a resolution it has no alert for).
        let changed = confirm(&mut st.status, &mut st.pending_status, overall, needed);
        if changed.is_some() {
            let mut e = Alert::event(
                "DRIFT_DETECTED",
                match overall {
                    DriftStatus::Critical => Severity::Critical,
                    _ => Severity::Warning,
                },
                Some(unit.clone()),
                format!(
                    "unit {unit}: drift {} ({} critical, {} warning of {} features)",
                    match overall {
                        DriftStatus::Stable => "cleared",
                        DriftStatus::Warning => "warning",
                        DriftStatus::Critical => "critical",
                    },
                    report.summary.critical,
                    report.summary.warning,
                    report.summary.total_features
                ),
                report.ts,
            );
            e.state = if overall == DriftStatus::Stable {
                AlertState::Resolved
            } else {
                AlertState::Firing
            };
            e.details = json!({"summary": report.summary, "window_size": report.window_size});
            out.emit(Message::Alert(e));
        }
        out.emit(Message::Drift(report));
    }

    fn check_performance(&mut self, unit: &Arc<str>, ts: DateTime<Utc>, out: &mut Emitter) {
        let st = self.units.get_mut(unit).expect("unit exists");
        let mut degraded_outputs = Vec::new();
        let mut any_verdict = false;
        // Error metrics of a part-filled window swing far more than the
        // limits: judge full windows only.
        let full = self
            .cfg
            .window
            .size
            .unwrap_or(self.cfg.performance.min_samples)
            .max(self.cfg.performance.min_samples);
        for (o, w) in &st.pairs {
            let Some(reference) = st.learned.performance.get(o) else {
                continue;
            };
            if self.cfg.window.size.is_some() && w.len() < full {
                continue;
            }
            let (m, p): (Vec<f64>, Vec<f64>) = w.iter().map(|(_, mp)| *mp).unzip();
            let Ok(current) = crate::drift::performance::performance(&m, &p) else {
                continue;
            };
            for (name, v) in [
                ("mae", current.mae),
                ("rmse", current.rmse),
                ("r2", current.r2),
            ] {
                self.g
                    .perf
                    .with_label_values(&[unit, o.as_str(), name])
                    .set(v);
            }
            if let Ok(check) = self.cfg.performance.check(reference, &current) {
                any_verdict = true;
                if check.degraded() {
                    degraded_outputs.push(json!({"output": o, "check": check}));
                }
            }
        }
        if !any_verdict {
            return;
        }
        let degraded = !degraded_outputs.is_empty();
        let needed = self.cfg.confirm.max(1);
        let changed = confirm(&mut st.degraded, &mut st.pending_degraded, degraded, needed);
        if changed.is_some() {
            let mut e = Alert::event(
                "PERFORMANCE_DEGRADED",
                Severity::Warning,
                Some(unit.clone()),
                if degraded {
                    format!("unit {unit}: the model's errors grew beyond the reference period's")
                } else {
                    format!("unit {unit}: the model's errors are back within limits")
                },
                ts,
            );
            e.state = if degraded {
                AlertState::Firing
            } else {
                AlertState::Resolved
            };
            e.details = json!({"outputs": degraded_outputs});
            out.emit(Message::Alert(e));
        }
    }
}

fn collect_pairs(into: &mut BTreeMap<String, (Vec<f64>, Vec<f64>)>, pairs: &[Pair; 3]) {
    for (i, (m, p)) in pairs.iter().enumerate() {
        if let (Some(m), Some(p)) = (m, p) {
            if m.is_finite() && p.is_finite() {
                let e = into.entry(OUTPUT_FEATURES[i].to_string()).or_default();
                e.0.push(*m);
                e.1.push(*p);
            }
        }
    }
}

/// Keeps a window to its size or time span.
fn trim<T>(
    w: &mut VecDeque<(DateTime<Utc>, T)>,
    size: Option<usize>,
    span: Option<Duration>,
    now: DateTime<Utc>,
) {
    if let Some(n) = size {
        while w.len() > n {
            w.pop_front();
        }
    }
    if let Some(d) = span.and_then(|d| chrono::Duration::from_std(d).ok()) {
        while w.front().is_some_and(|(t, _)| now - *t > d) {
            w.pop_front();
        }
    }
}

#[async_trait]
impl Processor for DriftMonitor {
    async fn process(
        &mut self,
        msg: &Arc<Message>,
        out: &mut Emitter,
    ) -> Result<(), ComponentError> {
        self.observe(msg, out)
    }
}
