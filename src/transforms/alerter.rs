//! `alerter`: turns events and threshold rules into alerts an operator can
//! trust — one message when something goes wrong, one when it clears.
//!
//! Inputs:
//! - events (`Alert` messages) from other components: DRIFT_DETECTED,
//!   DEVICE_OFFLINE, INPUT_OUT_OF_RANGE, ... Some codes end with an explicit
//!   `resolved` event; others (a predictor flags every out-of-range frame)
//!   resolve after a quiet period (`codes.<CODE>.auto_resolve_after`);
//! - drift reports, whose overall status becomes DRIFT_DETECTED (warning or
//!   critical) and resolves when it is stable again;
//! - frames and predictions, checked against threshold `rules`, each with
//!   its own clearing threshold (hysteresis) and a `for` duration.
//!
//! An active alert is announced once (optionally re-announced every
//! `renotify_every`), announcements per code and unit are rate-limited, and
//! the active set is kept in `state_file` so a restart neither announces an
//! alert again nor forgets to resolve it. Rule timing uses the messages'
//! timestamps; quiet periods and re-notification use the wall clock.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use prometheus::{IntCounterVec, IntGaugeVec};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::config::duration;
use crate::pipeline::component::{
    parse_config, BuildContext, Component, ComponentConfig, ComponentDescriptor, ComponentError,
    Emitter, Processor, Role,
};
use crate::pipeline::message::{
    Alert, AlertState, DriftStatus, KindSet, Message, MessageKind, Severity,
};

pub const DESCRIPTOR: ComponentDescriptor = ComponentDescriptor {
    type_name: "alerter",
    role: Role::Transform,
    accepts: KindSet::of(&[
        MessageKind::Alert,
        MessageKind::Drift,
        MessageKind::Frame,
        MessageKind::Prediction,
    ]),
    emits: KindSet::of(&[MessageKind::Alert]),
    summary: "Turns events, drift reports and threshold rules into deduplicated alerts.",
    parse: parse_config::<AlerterConfig>,
};

/// Where a rule reads its field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleSource {
    /// Sensor frames (inputs and measured outputs).
    Frame,
    /// Predictions (predicted outputs, Q_thermal; `inputs.X`, `measured.X`).
    Prediction,
}

/// A threshold rule: `field > above for 5m → severity`, cleared when the
/// value falls back below `clear`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdRule {
    /// Unique name; the alert's `key`.
    pub name: String,
    /// `UCAOT`, `Q_thermal`, `UCWIT`, ...; on predictions also
    /// `inputs.UCWIT` or `measured.UCAOT`.
    pub field: String,
    /// Which messages the rule reads; default predictions.
    #[serde(default = "default_source")]
    pub source: RuleSource,
    /// Fires when the value is above this...
    #[serde(default)]
    pub above: Option<f64>,
    /// ...or below this.
    #[serde(default)]
    pub below: Option<f64>,
    /// Clears when the value is back past this (hysteresis); default the
    /// trigger threshold itself.
    #[serde(default)]
    pub clear: Option<f64>,
    /// How long the condition must hold before the alert fires.
    #[serde(default, rename = "for", deserialize_with = "duration::deserialize")]
    pub for_: Duration,
    #[serde(default = "default_rule_severity")]
    pub severity: Severity,
    /// Text of the alert; default derived from the rule.
    #[serde(default)]
    pub message: Option<String>,
    /// Only these units; default all.
    #[serde(default)]
    pub units: Option<Vec<String>>,
}

fn default_source() -> RuleSource {
    RuleSource::Prediction
}
fn default_rule_severity() -> Severity {
    Severity::Warning
}

/// How events of one code are treated.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodePolicy {
    /// Resolve when no event of the code (for the unit) came for this long.
    /// Codes that send explicit `resolved` events need none.
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub auto_resolve_after: Option<Duration>,
    /// Override the events' severity.
    #[serde(default)]
    pub severity: Option<Severity>,
    /// Drop events of this code.
    #[serde(default)]
    pub ignore: bool,
}

/// At most `max` announcements per code and unit within `per`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub max: usize,
    #[serde(deserialize_with = "duration::deserialize")]
    pub per: Duration,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            max: 5,
            per: Duration::from_secs(3600),
        }
    }
}

/// HTTP POST of every announcement (Alertmanager- or chat-style consumers).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// `http://` or `https://` URL.
    pub url: String,
    /// Environment variable holding a bearer token, if the receiver wants one.
    #[serde(default)]
    pub bearer_token_env: Option<String>,
    /// Per request.
    #[serde(
        default = "default_webhook_timeout",
        deserialize_with = "duration::deserialize"
    )]
    pub timeout: Duration,
    /// Attempts after the first, with doubling delays from 500 ms.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Announcements waiting for delivery at most; beyond, they are dropped and counted.
    #[serde(default = "default_webhook_queue")]
    pub queue: usize,
    /// At shutdown, how long to keep delivering what is queued.
    #[serde(
        default = "default_webhook_flush",
        deserialize_with = "duration::deserialize"
    )]
    pub flush_timeout: Duration,
}

fn default_webhook_flush() -> Duration {
    Duration::from_secs(5)
}

fn default_webhook_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_retries() -> u32 {
    5
}
fn default_webhook_queue() -> usize {
    1000
}

/// Settings of an `alerter` node.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlerterConfig {
    #[serde(default)]
    pub rules: Vec<ThresholdRule>,
    /// Per event code: quiet period, severity override, ignore.
    /// Default: INPUT_OUT_OF_RANGE, PREDICTION_RESIDUAL and
    /// COMPONENT_RESTARTED resolve after 10 quiet minutes.
    #[serde(default = "default_codes")]
    pub codes: HashMap<String, CodePolicy>,
    /// Turn drift reports into DRIFT_DETECTED alerts. Default false: the
    /// `drift_monitor` emits DRIFT_DETECTED events itself, debounced; use
    /// this for reports from elsewhere.
    #[serde(default)]
    pub drift_alerts: bool,
    /// Announce an alert again when it escalates to a higher severity (it
    /// is then announced on the higher severity's topic). Default false: one
    /// message when something goes wrong, one when it clears.
    #[serde(default)]
    pub announce_escalations: bool,
    /// Announce an active alert again this often; default never.
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub renotify_every: Option<Duration>,
    #[serde(default)]
    pub rate_limit: RateLimit,
    /// File keeping the active alerts across restarts.
    #[serde(default)]
    pub state_file: Option<PathBuf>,
    #[serde(default)]
    pub webhook: Option<WebhookConfig>,
}

fn default_codes() -> HashMap<String, CodePolicy> {
    let quiet = || CodePolicy {
        auto_resolve_after: Some(Duration::from_secs(600)),
        ..Default::default()
    };
    HashMap::from([
        ("INPUT_OUT_OF_RANGE".to_string(), quiet()),
        ("PREDICTION_RESIDUAL".to_string(), quiet()),
        ("COMPONENT_RESTARTED".to_string(), quiet()),
    ])
}

impl ComponentConfig for AlerterConfig {
    fn validate(&self, problems: &mut Vec<String>) {
        let mut names = std::collections::HashSet::new();
        for r in &self.rules {
            if !names.insert(&r.name) {
                problems.push(format!("rule name \"{}\" is used twice", r.name));
            }
            match (r.above, r.below) {
                (None, None) | (Some(_), Some(_)) => problems.push(format!(
                    "rule \"{}\": give exactly one of `above` and `below`",
                    r.name
                )),
                (Some(a), None) if r.clear.is_some_and(|c| c > a) => problems.push(format!(
                    "rule \"{}\": `clear` must be at or below `above` (hysteresis)",
                    r.name
                )),
                (None, Some(b)) if r.clear.is_some_and(|c| c < b) => problems.push(format!(
                    "rule \"{}\": `clear` must be at or above `below` (hysteresis)",
                    r.name
                )),
                _ => {}
            }
            if field_reader(r.source, &r.field).is_none() {
                problems.push(format!(
                    "rule \"{}\": unknown field \"{}\" for {} messages",
                    r.name,
                    r.field,
                    if r.source == RuleSource::Frame {
                        "frame"
                    } else {
                        "prediction"
                    }
                ));
            }
        }
        if self.rate_limit.max == 0 || self.rate_limit.per.is_zero() {
            problems.push("rate_limit.max and rate_limit.per must be positive".into());
        }
        if self.renotify_every.is_some_and(|d| d.is_zero()) {
            problems.push("renotify_every must be positive".into());
        }
        if let Some(w) = &self.webhook {
            if !(w.url.starts_with("http://") || w.url.starts_with("https://")) {
                problems.push(format!(
                    "webhook.url \"{}\" must be http:// or https://",
                    w.url
                ));
            }
            if w.queue == 0 || w.timeout.is_zero() {
                problems.push("webhook.queue and webhook.timeout must be positive".into());
            }
        }
    }

    fn build(&self, ctx: &BuildContext) -> Result<Component, ComponentError> {
        let webhook = match &self.webhook {
            Some(w) => Some(Webhook::start(w, ctx)?),
            None => None,
        };
        let mut a = Alerter {
            id: ctx.id.clone(),
            cfg: self.clone(),
            rules: self
                .rules
                .iter()
                .map(|r| {
                    (
                        r.clone(),
                        field_reader(r.source, &r.field).expect("validated"),
                    )
                })
                .collect(),
            rule_state: HashMap::new(),
            active: HashMap::new(),
            announced_at: HashMap::new(),
            active_gauge: ctx.metrics.alerts_active.clone(),
            total: ctx.metrics.alerts_total.clone(),
            suppressed: ctx.metrics.alerts_suppressed.clone(),
            webhook,
        };
        a.load_state()?;
        Ok(Component::Processor(Box::new(a)))
    }
}

/// Reads one numeric field of a frame or prediction.
type FieldReader = fn(&Message) -> Option<f64>;

fn field_reader(source: RuleSource, field: &str) -> Option<FieldReader> {
    macro_rules! frame {
        ($e:expr) => {{
            let f: FieldReader = |m| match m {
                Message::Frame(f) => $e(f),
                _ => None,
            };
            Some(f)
        }};
    }
    macro_rules! pred {
        ($e:expr) => {{
            let f: FieldReader = |m| match m {
                Message::Prediction(p) => $e(p),
                _ => None,
            };
            Some(f)
        }};
    }
    use crate::pipeline::message::{Prediction, SensorFrame};
    match (source, field) {
        (RuleSource::Frame, "UCWIT") => frame!(|f: &SensorFrame| Some(f.ucwit)),
        (RuleSource::Frame, "UCAIT") => frame!(|f: &SensorFrame| Some(f.ucait)),
        (RuleSource::Frame, "UCWF") => frame!(|f: &SensorFrame| Some(f.ucwf)),
        (RuleSource::Frame, "UCAIH") => frame!(|f: &SensorFrame| Some(f.ucaih)),
        (RuleSource::Frame, "AMBT") => frame!(|f: &SensorFrame| Some(f.ambt)),
        (RuleSource::Frame, "UCTSP") => frame!(|f: &SensorFrame| Some(f.uctsp)),
        (RuleSource::Frame, "UCAOT") => frame!(|f: &SensorFrame| f.ucaot),
        (RuleSource::Frame, "UCWOT") => frame!(|f: &SensorFrame| f.ucwot),
        (RuleSource::Frame, "UCAF") => frame!(|f: &SensorFrame| f.ucaf),
        (RuleSource::Prediction, "UCAOT") => pred!(|p: &Prediction| Some(p.ucaot)),
        (RuleSource::Prediction, "UCWOT") => pred!(|p: &Prediction| Some(p.ucwot)),
        (RuleSource::Prediction, "UCAF") => pred!(|p: &Prediction| Some(p.ucaf)),
        (RuleSource::Prediction, "Q_thermal") => pred!(|p: &Prediction| Some(p.q_thermal)),
        (RuleSource::Prediction, "inputs.UCWIT") => pred!(|p: &Prediction| Some(p.inputs.ucwit)),
        (RuleSource::Prediction, "inputs.UCAIT") => pred!(|p: &Prediction| Some(p.inputs.ucait)),
        (RuleSource::Prediction, "inputs.UCWF") => pred!(|p: &Prediction| Some(p.inputs.ucwf)),
        (RuleSource::Prediction, "inputs.UCAIH") => pred!(|p: &Prediction| Some(p.inputs.ucaih)),
        (RuleSource::Prediction, "inputs.AMBT") => pred!(|p: &Prediction| Some(p.inputs.ambt)),
        (RuleSource::Prediction, "inputs.UCTSP") => pred!(|p: &Prediction| Some(p.inputs.uctsp)),
        (RuleSource::Prediction, "measured.UCAOT") => pred!(|p: &Prediction| p.measured.ucaot),
        (RuleSource::Prediction, "measured.UCWOT") => pred!(|p: &Prediction| p.measured.ucwot),
        (RuleSource::Prediction, "measured.UCAF") => pred!(|p: &Prediction| p.measured.ucaf),
        _ => None,
    }
}

/// Identity of an alert: code, unit and key.
type AlertKey = (String, Option<Arc<str>>, Option<String>);

fn key_of(a: &Alert) -> AlertKey {
    (a.code.clone(), a.unit.clone(), a.key.clone())
}

/// A threshold rule's state for one unit.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Normal,
    /// Violating since this time, not yet for long enough.
    Pending(DateTime<Utc>),
    Firing,
}

/// An alert that is on.
#[derive(Debug, Clone)]
struct Active {
    alert: Alert,
    /// Whether it was announced (a rate-limited one is active but silent,
    /// and so is its resolution).
    announced: bool,
    last_seen: Instant,
    last_notified: Instant,
}

/// What the state file holds.
#[derive(Serialize, Deserialize)]
struct Persisted {
    active: Vec<(Alert, bool)>,
}

pub struct Alerter {
    id: Arc<str>,
    cfg: AlerterConfig,
    rules: Vec<(ThresholdRule, FieldReader)>,
    rule_state: HashMap<(usize, Arc<str>), Phase>,
    active: HashMap<AlertKey, Active>,
    /// Announcement times per (code, unit), for the rate limit.
    announced_at: HashMap<(String, Option<Arc<str>>), VecDeque<Instant>>,
    active_gauge: IntGaugeVec,
    total: IntCounterVec,
    suppressed: IntCounterVec,
    webhook: Option<Webhook>,
}

impl Alerter {
    fn load_state(&mut self) -> Result<(), ComponentError> {
        let Some(path) = &self.cfg.state_file else {
            return Ok(());
        };
        let Some(p) = crate::pipeline::state::load::<Persisted>(path, "alert state")? else {
            return Ok(());
        };
        let now = Instant::now();
        for (alert, announced) in p.active {
            // A rule's alert that was on is on again: the next value either
            // keeps it (no new announcement) or resolves it.
            if let Some(i) = self.rules.iter().position(|(r, _)| {
                alert.code == "THRESHOLD" && alert.key.as_deref() == Some(&r.name)
            }) {
                if let Some(u) = &alert.unit {
                    self.rule_state.insert((i, u.clone()), Phase::Firing);
                }
            }
            self.active.insert(
                key_of(&alert),
                Active {
                    alert,
                    announced,
                    last_seen: now,
                    last_notified: now,
                },
            );
        }
        self.refresh_gauge();
        tracing::info!(component_id = %self.id, active = self.active.len(), "alert state restored");
        Ok(())
    }

    fn save_state(&self) {
        let Some(path) = &self.cfg.state_file else {
            return;
        };
        let p = Persisted {
            active: self
                .active
                .values()
                .map(|a| (a.alert.clone(), a.announced))
                .collect(),
        };
        if let Err(e) = crate::pipeline::state::save(path, &p) {
            tracing::error!(component_id = %self.id, path = %path.display(), error = %e, "cannot save alert state");
        }
    }

    fn refresh_gauge(&self) {
        let mut counts: HashMap<(Severity, &str), i64> = HashMap::new();
        for a in self.active.values() {
            *counts
                .entry((a.alert.severity, a.alert.code.as_str()))
                .or_default() += 1;
        }
        self.active_gauge.reset();
        for ((sev, code), n) in counts {
            self.active_gauge
                .with_label_values(&[sev.as_str(), code])
                .set(n);
        }
    }

    /// Whether the rate limit lets one more announcement through.
    fn admit(&mut self, a: &Alert) -> bool {
        let now = Instant::now();
        let q = self
            .announced_at
            .entry((a.code.clone(), a.unit.clone()))
            .or_default();
        while q
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.cfg.rate_limit.per)
        {
            q.pop_front();
        }
        if q.len() >= self.cfg.rate_limit.max {
            return false;
        }
        q.push_back(now);
        true
    }

    fn announce(&mut self, a: &Alert, out: &mut Emitter) {
        self.total
            .with_label_values(&[a.severity.as_str(), &a.code, state_str(a.state)])
            .inc();
        if let Some(w) = &self.webhook {
            w.send(a);
        }
        out.emit(Message::Alert(a.clone()));
    }

    /// An alert starts, or is seen again.
    fn raise(&mut self, alert: Alert, out: &mut Emitter) {
        let k = key_of(&alert);
        let now = Instant::now();
        if let Some(active) = self.active.get_mut(&k) {
            active.last_seen = now;
            // The same condition again is not news; an escalation is, if
            // the operator asked for it.
            if self.cfg.announce_escalations && alert.severity > active.alert.severity {
                active.alert.severity = alert.severity;
                active.alert.message = alert.message.clone();
                active.last_notified = now;
                let a = active.alert.clone();
                let announced = active.announced;
                if announced {
                    self.announce(&a, out);
                }
                self.refresh_gauge();
                self.save_state();
            }
            return;
        }
        let announced = self.admit(&alert);
        if announced {
            self.announce(&alert, out);
        } else {
            self.suppressed
                .with_label_values(&[&alert.code, "rate_limit"])
                .inc();
            tracing::info!(component_id = %self.id, code = %alert.code, "alert rate-limited");
        }
        self.active.insert(
            k,
            Active {
                alert,
                announced,
                last_seen: now,
                last_notified: now,
            },
        );
        self.refresh_gauge();
        self.save_state();
    }

    /// An alert ends.
    fn resolve(&mut self, k: &AlertKey, ts: DateTime<Utc>, why: &str, out: &mut Emitter) {
        let Some(active) = self.active.remove(k) else {
            return;
        };
        if active.announced {
            let mut a = active.alert;
            a.state = AlertState::Resolved;
            a.ts = ts;
            a.message = format!("resolved: {} ({why})", a.message);
            self.announce(&a, out);
        }
        self.refresh_gauge();
        self.save_state();
    }

    fn on_event(&mut self, e: &Alert, out: &mut Emitter) {
        let policy = self.cfg.codes.get(&e.code).cloned().unwrap_or_default();
        if policy.ignore {
            return;
        }
        match e.state {
            AlertState::Firing => {
                let mut a = e.clone();
                if let Some(s) = policy.severity {
                    a.severity = s;
                }
                self.raise(a, out);
            }
            AlertState::Resolved => self.resolve(&key_of(e), e.ts, "the condition cleared", out),
        }
    }

    fn on_drift(&mut self, d: &crate::pipeline::message::DriftReport, out: &mut Emitter) {
        let k: AlertKey = ("DRIFT_DETECTED".into(), Some(d.unit.clone()), None);
        let severity = match d.summary.overall_status {
            DriftStatus::Stable => {
                self.resolve(&k, d.ts, "inputs match the reference again", out);
                return;
            }
            DriftStatus::Warning => Severity::Warning,
            DriftStatus::Critical => Severity::Critical,
        };
        let drifting: Vec<&String> = d
            .features
            .iter()
            .filter(|(_, f)| f.status != DriftStatus::Stable)
            .map(|(n, _)| n)
            .collect();
        let mut a = Alert::event(
            "DRIFT_DETECTED",
            severity,
            Some(d.unit.clone()),
            format!(
                "unit {}: input drift in {} of {} features ({})",
                d.unit,
                d.summary.warning + d.summary.critical,
                d.summary.total_features,
                drifting
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            d.ts,
        );
        a.details = json!({
            "overall_status": d.summary.overall_status,
            "drift_percentage": d.summary.drift_percentage,
            "features": drifting,
            "window_size": d.window_size,
        });
        self.raise(a, out);
    }

    fn on_value(&mut self, m: &Message, out: &mut Emitter) {
        let Some(unit) = m.unit().map(Arc::<str>::from) else {
            return;
        };
        let ts = match m {
            Message::Frame(f) => f.ts,
            Message::Prediction(p) => p.ts,
            _ => return,
        };
        for i in 0..self.rules.len() {
            let (rule, read) = &self.rules[i];
            if rule
                .units
                .as_ref()
                .is_some_and(|us| !us.iter().any(|u| **u == *unit))
            {
                continue;
            }
            let Some(v) = read(m).filter(|v| v.is_finite()) else {
                continue;
            };
            let (violating, cleared) = match (rule.above, rule.below) {
                (Some(a), _) => (v > a, v < rule.clear.unwrap_or(a)),
                (None, Some(b)) => (v < b, v > rule.clear.unwrap_or(b)),
                (None, None) => continue,
            };
            let for_ = chrono::Duration::from_std(rule.for_).unwrap_or_default();
            let phase = *self
                .rule_state
                .get(&(i, unit.clone()))
                .unwrap_or(&Phase::Normal);
            let next = match phase {
                Phase::Normal if violating && for_.is_zero() => Phase::Firing,
                Phase::Normal if violating => Phase::Pending(ts),
                Phase::Pending(_) if !violating => Phase::Normal,
                Phase::Pending(since) if ts - since >= for_ => Phase::Firing,
                Phase::Firing if cleared => Phase::Normal,
                p => p,
            };
            if next == phase {
                continue;
            }
            self.rule_state.insert((i, unit.clone()), next);
            let rule = rule.clone();
            match (phase, next) {
                (_, Phase::Firing) => {
                    let limit = rule.above.or(rule.below).unwrap_or_default();
                    let dir = if rule.above.is_some() {
                        "above"
                    } else {
                        "below"
                    };
                    let mut a = Alert::event(
                        "THRESHOLD",
                        rule.severity,
                        Some(unit.clone()),
                        rule.message.clone().unwrap_or_else(|| {
                            format!(
                                "unit {unit}: {} = {v:.2} {dir} {limit} for {:?}",
                                rule.field, rule.for_
                            )
                        }),
                        ts,
                    );
                    a.key = Some(rule.name.clone());
                    a.details = json!({"rule": rule.name, "field": rule.field, "value": v,
                        "threshold": limit, "clear": rule.clear.unwrap_or(limit)});
                    self.raise(a, out);
                }
                (Phase::Firing, Phase::Normal) => {
                    let k = (
                        "THRESHOLD".to_string(),
                        Some(unit.clone()),
                        Some(rule.name.clone()),
                    );
                    self.resolve(&k, ts, &format!("{} = {v:.2}", rule.field), out);
                }
                _ => {}
            }
        }
    }
}

fn state_str(s: AlertState) -> &'static str {
    match s {
        AlertState::Firing => "firing",
        AlertState::Resolved => "resolved",
    }
}

#[async_trait]
impl Processor for Alerter {
    async fn process(
        &mut self,
        msg: &Arc<Message>,
        out: &mut Emitter,
    ) -> Result<(), ComponentError> {
        match &**msg {
            Message::Alert(e) => self.on_event(e, out),
            Message::Drift(d) if self.cfg.drift_alerts => self.on_drift(d, out),
            Message::Frame(_) | Message::Prediction(_) => self.on_value(msg, out),
            _ => {}
        }
        Ok(())
    }

    fn tick_interval(&self) -> Option<Duration> {
        Some(Duration::from_secs(1))
    }

    async fn tick(&mut self, out: &mut Emitter) -> Result<(), ComponentError> {
        let now = Instant::now();
        // Quiet periods: events that never resolve explicitly.
        let quiet: Vec<AlertKey> = self
            .active
            .iter()
            .filter(|(k, a)| {
                self.cfg
                    .codes
                    .get(&k.0)
                    .and_then(|p| p.auto_resolve_after)
                    .is_some_and(|d| now.duration_since(a.last_seen) >= d)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in quiet {
            self.resolve(&k, Utc::now(), "no new event within the quiet period", out);
        }
        if let Some(every) = self.cfg.renotify_every {
            let due: Vec<Alert> = self
                .active
                .values_mut()
                .filter(|a| a.announced && now.duration_since(a.last_notified) >= every)
                .map(|a| {
                    a.last_notified = now;
                    a.alert.clone()
                })
                .collect();
            for a in due {
                self.announce(&a, out);
            }
        }
        Ok(())
    }

    async fn flush(&mut self, _out: &mut Emitter) -> Result<(), ComponentError> {
        if let Some(w) = &self.webhook {
            if !w.drain().await {
                return Err(ComponentError::new(
                    "webhook",
                    format!(
                        "webhook deliveries still pending after {:?} at shutdown",
                        w.flush_timeout
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Delivers announcements over HTTP from a task of its own, so a slow or
/// dead receiver never holds up the pipeline.
struct Webhook {
    tx: tokio::sync::mpsc::Sender<Alert>,
    dropped: prometheus::IntCounter,
    /// Announcements queued or being delivered.
    in_flight: Arc<std::sync::atomic::AtomicUsize>,
    flush_timeout: Duration,
}

impl Webhook {
    fn start(cfg: &WebhookConfig, ctx: &BuildContext) -> Result<Webhook, ComponentError> {
        let token = match &cfg.bearer_token_env {
            Some(var) => Some(std::env::var(var).map_err(|_| {
                ComponentError::new(
                    "config",
                    format!("webhook.bearer_token_env {var} is not set"),
                )
            })?),
            None => None,
        };
        crate::protocol::mqtt::install_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .build()
            .map_err(|e| ComponentError::new("config", format!("webhook client: {e}")))?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Alert>(cfg.queue);
        let url = cfg.url.clone();
        let retries = cfg.retries;
        let id = ctx.id.clone();
        let delivered = ctx
            .metrics
            .webhook_deliveries
            .with_label_values(&[&ctx.id, "delivered"]);
        let failed = ctx
            .metrics
            .webhook_deliveries
            .with_label_values(&[&ctx.id, "failed"]);
        let dropped = ctx
            .metrics
            .webhook_deliveries
            .with_label_values(&[&ctx.id, "dropped"]);
        let in_flight = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let busy = in_flight.clone();
        tokio::spawn(async move {
            while let Some(alert) = rx.recv().await {
                let mut delay = Duration::from_millis(500);
                let mut attempt = 0;
                loop {
                    let mut req = client.post(&url).json(&alert);
                    if let Some(t) = &token {
                        req = req.bearer_auth(t);
                    }
                    let res = req.send().await;
                    let err = match res {
                        Ok(r) if r.status().is_success() => None,
                        Ok(r) => Some(format!("HTTP {}", r.status())),
                        Err(e) => Some(e.to_string()),
                    };
                    let Some(err) = err else {
                        delivered.inc();
                        break;
                    };
                    if attempt >= retries {
                        failed.inc();
                        tracing::error!(component_id = %id, %url, error = %err, "webhook delivery failed; giving up");
                        break;
                    }
                    attempt += 1;
                    tracing::warn!(component_id = %id, %url, error = %err, attempt, "webhook delivery failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(60));
                }
                busy.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
            }
        });
        Ok(Webhook {
            tx,
            dropped,
            in_flight,
            flush_timeout: cfg.flush_timeout,
        })
    }

    fn send(&self, a: &Alert) {
        self.in_flight
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        if self.tx.try_send(a.clone()).is_err() {
            self.in_flight
                .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
            self.dropped.inc();
        }
    }

    /// Waits (bounded) until everything queued was delivered or given up on.
    async fn drain(&self) -> bool {
        let deadline = tokio::time::Instant::now() + self.flush_timeout;
        while self.in_flight.load(std::sync::atomic::Ordering::Acquire) > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::pipeline::message::Prediction;

    fn build(yaml: &str) -> Box<dyn Processor> {
        let cfg: AlerterConfig = serde_saphyr::from_str(yaml).unwrap();
        let mut problems = Vec::new();
        cfg.validate(&mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        let metrics = Metrics::new();
        let ctx = BuildContext {
            id: "alerts".into(),
            component_metrics: metrics.component("alerts", "transform", "alerter"),
            metrics,
            base_dir: ".".into(),
            events: Default::default(),
        };
        match cfg.build(&ctx).unwrap() {
            Component::Processor(p) => p,
            Component::Source(_) => unreachable!(),
        }
    }

    fn pred(unit: &str, secs: i64, ucaot: f64) -> Arc<Message> {
        let ts = DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap();
        let p: Prediction = serde_json::from_value(json!({
            "unit": unit, "ts": ts, "UCAOT": ucaot, "UCWOT": 12.0, "UCAF": 4000.0,
            "Q_thermal": 3.0, "model": "physics@1",
            "inputs": {"UCWIT": 7.5, "UCAIT": 25.0, "UCWF": 15.0, "UCAIH": 50.0, "AMBT": 22.0, "UCTSP": 21.0}
        }))
        .unwrap();
        Arc::new(Message::Prediction(p))
    }

    async fn feed(a: &mut Box<dyn Processor>, msgs: &[Arc<Message>]) -> Vec<Alert> {
        let mut em = Emitter::default();
        for m in msgs {
            a.process(m, &mut em).await.unwrap();
        }
        em.out
            .iter()
            .filter_map(|e| match &*e.msg {
                Message::Alert(a) => Some(a.clone()),
                _ => None,
            })
            .collect()
    }

    const RULE: &str = "rules:\n  - {name: warm, field: UCAOT, above: 22, clear: 21, for: 60s}\n";

    #[tokio::test]
    async fn fires_after_for_and_resolves_below_the_clear_threshold() {
        let mut a = build(RULE);
        // 30 s above: not yet.
        let out = feed(&mut a, &[pred("u", 0, 23.0), pred("u", 30, 23.0)]).await;
        assert!(out.is_empty());
        // 60 s above: fires once; staying above does not fire again.
        let out = feed(&mut a, &[pred("u", 60, 23.0), pred("u", 90, 23.5)]).await;
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].state, AlertState::Firing);
        assert_eq!(out[0].key.as_deref(), Some("warm"));
        // Between clear and trigger: still active (hysteresis).
        assert!(feed(&mut a, &[pred("u", 120, 21.5)]).await.is_empty());
        let out = feed(&mut a, &[pred("u", 150, 20.5)]).await;
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].state, AlertState::Resolved);
    }

    #[tokio::test]
    async fn a_flapping_signal_does_not_storm() {
        let mut a = build(RULE);
        // Oscillates around the trigger every 10 s for an hour.
        let msgs: Vec<_> = (0..360)
            .map(|k| pred("u", k * 10, if k % 2 == 0 { 22.3 } else { 21.7 }))
            .collect();
        let out = feed(&mut a, &msgs).await;
        assert!(out.is_empty(), "never above for 60 s in a row: {out:?}");
        // Without `for`, hysteresis alone keeps it to one alert.
        let mut a = build("rules:\n  - {name: warm, field: UCAOT, above: 22, clear: 21}\n");
        let out = feed(&mut a, &msgs).await;
        assert_eq!(out.len(), 1, "{out:?}");
    }

    #[tokio::test]
    async fn events_are_deduplicated_and_rate_limited() {
        let mut a = build("rate_limit: {max: 2, per: 1h}\n");
        let ev = |unit: &str, state| {
            let mut e = Alert::event(
                "DEVICE_OFFLINE",
                Severity::Error,
                Some(unit.into()),
                "down",
                Utc::now(),
            );
            e.state = state;
            Arc::new(Message::Alert(e))
        };
        let out = feed(
            &mut a,
            &[
                ev("u", AlertState::Firing),
                ev("u", AlertState::Firing),
                ev("u", AlertState::Firing),
            ],
        )
        .await;
        assert_eq!(out.len(), 1, "the same event again is not news");
        // Flapping device: down/up/down/up... limited to 2 announcements of DEVICE_OFFLINE.
        let mut msgs = vec![ev("u", AlertState::Resolved)];
        for _ in 0..10 {
            msgs.push(ev("u", AlertState::Firing));
            msgs.push(ev("u", AlertState::Resolved));
        }
        let out = feed(&mut a, &msgs).await;
        let firing = out.iter().filter(|a| a.state == AlertState::Firing).count();
        assert_eq!(firing, 1, "one more within the limit of 2 per hour");
        assert_eq!(
            out.len(),
            3,
            "resolutions of silent alerts stay silent: {out:?}"
        );
    }

    #[tokio::test]
    async fn state_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let yaml = format!("{RULE}state_file: {}/alerts.json\n", dir.path().display());
        let mut a = build(&yaml);
        let out = feed(&mut a, &[pred("u", 0, 23.0), pred("u", 60, 23.0)]).await;
        assert_eq!(out.len(), 1);
        drop(a);
        // Restarted: still hot, no new announcement; cools down: resolved.
        let mut a = build(&yaml);
        assert!(feed(&mut a, &[pred("u", 120, 23.0), pred("u", 180, 23.0)])
            .await
            .is_empty());
        let out = feed(&mut a, &[pred("u", 240, 20.0)]).await;
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].state, AlertState::Resolved);
    }

    #[test]
    fn bad_rules_are_reported() {
        let cfg: AlerterConfig = serde_saphyr::from_str(
            "rules:\n  - {name: a, field: NOPE, above: 1}\n  - {name: a, field: UCAOT, above: 1, below: 0}\n  - {name: b, field: UCAOT, above: 1, clear: 2}\n",
        )
        .unwrap();
        let mut p = Vec::new();
        cfg.validate(&mut p);
        assert_eq!(p.len(), 4, "{p:?}");
    }
}
