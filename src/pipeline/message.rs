//! The typed messages that travel on the pipeline's edges.
//!
//! Their JSON forms are the interface contract of DESIGN.md: MQTT consumers,
//! the HTTP API and the file sink all see exactly these shapes. Fields may be
//! added; none may be renamed.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Names of the six model inputs, in the order every model sees them.
pub const INPUT_FEATURES: [&str; 6] = ["UCWIT", "UCAIT", "UCWF", "UCAIH", "AMBT", "UCTSP"];
/// Top-level keys of a prediction's JSON that consumers rely on (the
/// interface contract); `measured` is added when the frame had measurements.
pub const PREDICTION_KEYS: [&str; 8] = [
    "unit",
    "ts",
    "UCAOT",
    "UCWOT",
    "UCAF",
    "Q_thermal",
    "model",
    "inputs",
];

/// Names of the measured or predicted outputs.
pub const OUTPUT_FEATURES: [&str; 3] = ["UCAOT", "UCWOT", "UCAF"];

/// One reading of a unit cooler's sensors, in the engine's canonical units
/// (°C, water flow L/min, %RH, air flow m³/h).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SensorFrame {
    /// Unit cooler id, e.g. `uc-01`.
    pub unit: Arc<str>,
    /// When the reading was taken.
    pub ts: DateTime<Utc>,
    /// Water inlet temperature, °C.
    #[serde(rename = "UCWIT")]
    pub ucwit: f64,
    /// Air inlet temperature, °C.
    #[serde(rename = "UCAIT")]
    pub ucait: f64,
    /// Water flow, L/min.
    #[serde(rename = "UCWF")]
    pub ucwf: f64,
    /// Air inlet relative humidity, %RH.
    #[serde(rename = "UCAIH")]
    pub ucaih: f64,
    /// Ambient temperature, °C.
    #[serde(rename = "AMBT")]
    pub ambt: f64,
    /// Temperature setpoint, °C.
    #[serde(rename = "UCTSP")]
    pub uctsp: f64,
    /// Measured air outlet temperature, °C, when the unit has the sensor.
    #[serde(rename = "UCAOT", default, skip_serializing_if = "Option::is_none")]
    pub ucaot: Option<f64>,
    /// Measured water outlet temperature, °C.
    #[serde(rename = "UCWOT", default, skip_serializing_if = "Option::is_none")]
    pub ucwot: Option<f64>,
    /// Measured air flow, m³/h.
    #[serde(rename = "UCAF", default, skip_serializing_if = "Option::is_none")]
    pub ucaf: Option<f64>,
    /// Points the source could not vouch for, by feature name, with why:
    /// `fault (communicationFailure)`, `out of service`, ... (a BACnet
    /// point's status flags and reliability). An input listed here is not
    /// used for a prediction; a measured output listed here is absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<Box<PointQuality>>,
}

/// Per feature, why a source's reading of it is not trustworthy.
pub type PointQuality = std::collections::BTreeMap<String, String>;

impl SensorFrame {
    /// The six inputs in [`INPUT_FEATURES`] order.
    pub fn inputs(&self) -> [f64; 6] {
        [
            self.ucwit, self.ucait, self.ucwf, self.ucaih, self.ambt, self.uctsp,
        ]
    }

    /// The measured outputs in [`OUTPUT_FEATURES`] order.
    pub fn measured(&self) -> [Option<f64>; 3] {
        [self.ucaot, self.ucwot, self.ucaf]
    }
}

/// The six inputs a prediction was made from, as they appear in its JSON.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inputs {
    #[serde(rename = "UCWIT")]
    pub ucwit: f64,
    #[serde(rename = "UCAIT")]
    pub ucait: f64,
    #[serde(rename = "UCWF")]
    pub ucwf: f64,
    #[serde(rename = "UCAIH")]
    pub ucaih: f64,
    #[serde(rename = "AMBT")]
    pub ambt: f64,
    #[serde(rename = "UCTSP")]
    pub uctsp: f64,
}

impl From<&SensorFrame> for Inputs {
    fn from(f: &SensorFrame) -> Self {
        Inputs {
            ucwit: f.ucwit,
            ucait: f.ucait,
            ucwf: f.ucwf,
            ucaih: f.ucaih,
            ambt: f.ambt,
            uctsp: f.uctsp,
        }
    }
}

/// Measured outputs carried beside a prediction, so the drift monitor can
/// compute residuals without joining streams.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Measured {
    #[serde(rename = "UCAOT", default, skip_serializing_if = "Option::is_none")]
    pub ucaot: Option<f64>,
    #[serde(rename = "UCWOT", default, skip_serializing_if = "Option::is_none")]
    pub ucwot: Option<f64>,
    #[serde(rename = "UCAF", default, skip_serializing_if = "Option::is_none")]
    pub ucaf: Option<f64>,
}

impl Measured {
    pub fn is_empty(&self) -> bool {
        self.ucaot.is_none() && self.ucwot.is_none() && self.ucaf.is_none()
    }
}

/// A model's prediction for one sensor frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prediction {
    pub unit: Arc<str>,
    /// Timestamp of the frame the prediction was made from.
    pub ts: DateTime<Utc>,
    /// Predicted air outlet temperature, °C.
    #[serde(rename = "UCAOT")]
    pub ucaot: f64,
    /// Predicted water outlet temperature, °C.
    #[serde(rename = "UCWOT")]
    pub ucwot: f64,
    /// Predicted air flow, m³/h.
    #[serde(rename = "UCAF")]
    pub ucaf: f64,
    /// Thermal power taken from the air, kW, positive when cooling.
    #[serde(rename = "Q_thermal")]
    pub q_thermal: f64,
    /// Model name and version, e.g. `physics@1`.
    pub model: Arc<str>,
    /// The inputs the prediction was made from.
    pub inputs: Inputs,
    /// Measured outputs from the same frame, when the unit has them.
    #[serde(default, skip_serializing_if = "Measured::is_empty")]
    pub measured: Measured,
    /// Inputs that were outside the model's training range or physically
    /// impossible; empty for a clean prediction.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<InputFlag>,
    /// Measured minus predicted, per output the frame measured (Q_thermal
    /// from the measured UCWOT).
    #[serde(default, skip_serializing_if = "Outputs::is_empty")]
    pub residual: Outputs,
    /// Predicted minus the physics model's prediction, per output, when the
    /// predictor runs physics beside its model (`compare_physics`).
    #[serde(default, skip_serializing_if = "Outputs::is_empty")]
    pub physics_residual: Outputs,
}

/// Why an input was flagged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlagReason {
    /// Outside the range the model was trained on: the model extrapolates.
    OutsideTrainingRange,
    /// No real unit cooler reads this (negative flow, RH outside 0–100 %,
    /// water warmer than the air while cooling).
    PhysicallyImpossible,
}

/// One input a prediction was flagged for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputFlag {
    /// Input name (`UCWIT`, ...).
    pub feature: String,
    /// The value the frame carried.
    pub value: f64,
    pub reason: FlagReason,
    /// Lower end of the accepted range, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Upper end of the accepted range, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// The value the model was given instead (`on_out_of_range: clamp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clamped_to: Option<f64>,
}

/// A value per output, each optional (residuals).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outputs {
    #[serde(rename = "UCAOT", default, skip_serializing_if = "Option::is_none")]
    pub ucaot: Option<f64>,
    #[serde(rename = "UCWOT", default, skip_serializing_if = "Option::is_none")]
    pub ucwot: Option<f64>,
    #[serde(rename = "UCAF", default, skip_serializing_if = "Option::is_none")]
    pub ucaf: Option<f64>,
    #[serde(rename = "Q_thermal", default, skip_serializing_if = "Option::is_none")]
    pub q_thermal: Option<f64>,
}

impl Outputs {
    pub fn is_empty(&self) -> bool {
        self.ucaot.is_none()
            && self.ucwot.is_none()
            && self.ucaf.is_none()
            && self.q_thermal.is_none()
    }
}

/// Drift status of a feature or a whole unit, ordered by severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum DriftStatus {
    Stable,
    Warning,
    Critical,
}

/// Summary of one drift window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftSummary {
    pub overall_status: DriftStatus,
    pub total_features: usize,
    pub critical: usize,
    pub warning: usize,
    pub stable: usize,
    pub drift_percentage: f64,
}

/// Drift statistics of one feature in one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureDrift {
    pub status: DriftStatus,
    pub psi: f64,
    pub ks_statistic: f64,
    pub ks_pvalue: f64,
    pub wasserstein: f64,
    pub js: f64,
    pub mean_change_pct: f64,
}

/// A drift report for one unit and one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftReport {
    pub unit: Arc<str>,
    pub ts: DateTime<Utc>,
    /// Number of samples in the current window.
    pub window_size: usize,
    pub summary: DriftSummary,
    pub features: BTreeMap<String, FeatureDrift>,
}

/// Alert severity; each has its own MQTT topic `hvac/alerts/{severity}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Error,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
            Severity::Critical => "critical",
        }
    }
}

/// Whether an alert starts or ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// The condition holds (an event, or an alert raised).
    #[default]
    Firing,
    /// The condition has cleared.
    Resolved,
}

/// An alert or an event that may become one (DEVICE_OFFLINE,
/// INPUT_OUT_OF_RANGE, DRIFT_DETECTED, ...). Components emit events; the
/// `alerter` turns them into alerts (deduplicated, rate-limited, resolved).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// What happened: DRIFT_DETECTED, PERFORMANCE_DEGRADED, DEVICE_OFFLINE,
    /// INPUT_OUT_OF_RANGE, PREDICTION_RESIDUAL, THRESHOLD, ...
    pub code: String,
    pub message: String,
    pub severity: Severity,
    pub unit: Option<Arc<str>>,
    pub ts: DateTime<Utc>,
    #[serde(default)]
    pub details: serde_json::Value,
    /// `firing` or `resolved`.
    #[serde(default)]
    pub state: AlertState,
    /// Tells apart alerts of one code and unit (a rule name, a feature, a
    /// device); absent when the code and unit say it all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl Alert {
    /// A firing event with no details and no key.
    pub fn event(
        code: &str,
        severity: Severity,
        unit: Option<Arc<str>>,
        message: impl Into<String>,
        ts: DateTime<Utc>,
    ) -> Alert {
        Alert {
            code: code.to_string(),
            message: message.into(),
            severity,
            unit,
            ts,
            details: serde_json::Value::Null,
            state: AlertState::Firing,
            key: None,
        }
    }
}

/// Something a component could not process, with the reason. Routed to the
/// pipeline's `dead_letter` node (for example an MQTT publisher on
/// `hvac/deadletter`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Id of the component that gave up on the message.
    pub component: String,
    /// Short machine-readable reason, used as a metric label.
    pub reason: String,
    /// Human-readable explanation.
    pub error: String,
    pub ts: DateTime<Utc>,
    /// The message (or raw payload) that could not be processed.
    pub payload: serde_json::Value,
}

/// Every message type the engine moves.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Message {
    Frame(SensorFrame),
    Prediction(Prediction),
    Drift(DriftReport),
    Alert(Alert),
    DeadLetter(DeadLetter),
}

impl Message {
    pub fn kind(&self) -> MessageKind {
        match self {
            Message::Frame(_) => MessageKind::Frame,
            Message::Prediction(_) => MessageKind::Prediction,
            Message::Drift(_) => MessageKind::Drift,
            Message::Alert(_) => MessageKind::Alert,
            Message::DeadLetter(_) => MessageKind::DeadLetter,
        }
    }

    /// The unit this message is about, when it is about one.
    pub fn unit(&self) -> Option<&str> {
        match self {
            Message::Frame(f) => Some(&f.unit),
            Message::Prediction(p) => Some(&p.unit),
            Message::Drift(d) => Some(&d.unit),
            Message::Alert(a) => a.unit.as_deref(),
            Message::DeadLetter(_) => None,
        }
    }

    /// The message as its contract JSON.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

/// The type of a message, used to check that an edge's receiver accepts what
/// its sender emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MessageKind {
    Frame,
    Prediction,
    Drift,
    Alert,
    DeadLetter,
}

impl MessageKind {
    pub const ALL: [MessageKind; 5] = [
        MessageKind::Frame,
        MessageKind::Prediction,
        MessageKind::Drift,
        MessageKind::Alert,
        MessageKind::DeadLetter,
    ];

    /// The kind with this name (as in [`MessageKind::name`]).
    pub fn from_name(name: &str) -> Option<MessageKind> {
        MessageKind::ALL.into_iter().find(|k| k.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            MessageKind::Frame => "SensorFrame",
            MessageKind::Prediction => "Prediction",
            MessageKind::Drift => "DriftReport",
            MessageKind::Alert => "Alert",
            MessageKind::DeadLetter => "DeadLetter",
        }
    }

    const fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for MessageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A small set of message kinds (what a component accepts or emits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KindSet(u8);

impl KindSet {
    pub const EMPTY: KindSet = KindSet(0);

    pub const fn of(kinds: &[MessageKind]) -> KindSet {
        let mut bits = 0;
        let mut i = 0;
        while i < kinds.len() {
            bits |= kinds[i].bit();
            i += 1;
        }
        KindSet(bits)
    }

    pub fn contains(self, k: MessageKind) -> bool {
        self.0 & k.bit() != 0
    }

    pub fn intersects(self, other: KindSet) -> bool {
        self.0 & other.0 != 0
    }

    pub fn union(self, other: KindSet) -> KindSet {
        KindSet(self.0 | other.0)
    }

    pub fn intersection(self, other: KindSet) -> KindSet {
        KindSet(self.0 & other.0)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = MessageKind> {
        MessageKind::ALL
            .into_iter()
            .filter(move |k| self.contains(*k))
    }
}

impl fmt::Display for KindSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.iter().map(MessageKind::name).collect();
        if names.is_empty() {
            f.write_str("nothing")
        } else {
            f.write_str(&names.join(" | "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame() -> SensorFrame {
        serde_json::from_str(
            r#"{"unit":"uc-01","ts":"2026-12-04T10:00:00Z","UCWIT":7.5,"UCAIT":25.0,
                "UCWF":15.0,"UCAIH":50.0,"AMBT":22.0,"UCTSP":21.0}"#,
        )
        .unwrap()
    }

    #[test]
    fn sensor_frame_round_trips_contract_json() {
        let f = frame();
        assert_eq!(&*f.unit, "uc-01");
        assert_eq!(f.ucaot, None);
        let v = serde_json::to_value(&f).unwrap();
        assert_eq!(v["ts"], "2026-12-04T10:00:00Z");
        assert_eq!(v["UCWF"], 15.0);
        assert!(v.get("UCAOT").is_none(), "absent measurements stay absent");
        let back: SensorFrame = serde_json::from_value(v).unwrap();
        assert_eq!(back, f);
    }

    #[test]
    fn json_numbers_parse_to_the_exact_float_they_print_as() {
        // A reading seen in a test failure: without serde_json's
        // `float_roundtrip` it parses 1 ulp off and prints as ...826.
        let text = "24.276796475903822";
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(v.to_string(), text);
        assert_eq!(v.as_f64(), Some(24.276796475903822));
    }

    #[test]
    fn sensor_frame_rejects_unknown_and_missing_fields() {
        let extra = r#"{"unit":"u","ts":"2026-12-04T10:00:00Z","UCWIT":7.5,"UCAIT":25.0,
            "UCWF":15.0,"UCAIH":50.0,"AMBT":22.0,"UCTSP":21.0,"FOO":1}"#;
        assert!(serde_json::from_str::<SensorFrame>(extra).is_err());
        let missing = r#"{"unit":"u","ts":"2026-12-04T10:00:00Z","UCWIT":7.5}"#;
        let err = serde_json::from_str::<SensorFrame>(missing).unwrap_err();
        assert!(err.to_string().contains("UCAIT"), "{err}");
    }

    #[test]
    fn prediction_json_has_contract_keys() {
        let f = frame();
        let p = Prediction {
            unit: f.unit.clone(),
            ts: f.ts,
            ucaot: 15.0,
            ucwot: 10.0,
            ucaf: 4000.0,
            q_thermal: 2.5,
            model: "physics@1".into(),
            inputs: Inputs::from(&f),
            measured: Measured::default(),
            flags: Vec::new(),
            residual: Outputs::default(),
            physics_residual: Outputs::default(),
        };
        let v = Message::Prediction(p).to_json();
        for key in PREDICTION_KEYS {
            assert!(v.get(key).is_some(), "missing {key} in {v}");
        }
        assert_eq!(v["inputs"]["UCTSP"], 21.0);
        assert!(v.get("measured").is_none());
        for key in ["flags", "residual", "physics_residual"] {
            assert!(v.get(key).is_none(), "{key} is left out when empty: {v}");
        }
    }

    #[test]
    fn alert_json_has_contract_keys() {
        let a = Alert {
            code: "DEVICE_OFFLINE".into(),
            message: "device 1234 stopped answering".into(),
            severity: Severity::Error,
            unit: Some("uc-01".into()),
            ts: frame().ts,
            details: serde_json::json!({"device": 1234}),
            state: AlertState::Firing,
            key: None,
        };
        let v = Message::Alert(a).to_json();
        assert_eq!(v["severity"], "error");
        assert_eq!(v["code"], "DEVICE_OFFLINE");
        assert_eq!(v["details"]["device"], 1234);
        assert_eq!(v["state"], "firing");
    }

    #[test]
    fn kind_sets() {
        let s = KindSet::of(&[MessageKind::Frame, MessageKind::Alert]);
        assert!(s.contains(MessageKind::Frame));
        assert!(!s.contains(MessageKind::Prediction));
        assert!(s.intersects(KindSet::of(&[MessageKind::Alert])));
        assert!(!s.intersects(KindSet::of(&[MessageKind::Drift])));
        assert_eq!(s.to_string(), "SensorFrame | Alert");
    }
}
