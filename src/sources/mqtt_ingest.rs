//! `mqtt_ingest`: sensor readings from MQTT topics into sensor frames.
//!
//! Payloads are JSON objects as in the interface contract
//! (`{"unit","ts","UCWIT",...}`), or foreign shapes described by `mapping`
//! (renamed keys, units, scale and offset, epoch timestamps). A value may be
//! a number or `{"value": 900, "unit": "L/h"}`; it is converted to the
//! engine's canonical unit, and an unknown unit is an error, never a guess.
//!
//! Delivery is at-least-once at QoS ≥ 1: manual acknowledgements, sent only
//! when every downstream consumer of the frame (and of what was made from it)
//! has finished, or when the payload was dead-lettered — and in the order
//! the messages arrived, as MQTT requires. A crash before that means the
//! broker redelivers: duplicates are possible, losses are not.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use rumqttc::QoS;
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use crate::model::units::{self, Conversion, Quantity};
use crate::pipeline::component::{
    parse_config, AckToken, BuildContext, Component, ComponentConfig, ComponentDescriptor,
    ComponentError, Source, SourceOutput,
};
use crate::pipeline::message::{
    DeadLetter, KindSet, Message, MessageKind, SensorFrame, INPUT_FEATURES, OUTPUT_FEATURES,
};
use crate::protocol::mqtt::{
    self, BrokerConfig, Client, Connection, ConnectionMetrics, InPublish, Incoming,
};

pub const DESCRIPTOR: ComponentDescriptor = ComponentDescriptor {
    type_name: "mqtt_ingest",
    role: Role::Source,
    accepts: KindSet::EMPTY,
    emits: KindSet::of(&[MessageKind::Frame]),
    summary: "Reads sensor readings (JSON) from MQTT topics, at-least-once.",
    parse: parse_config::<MqttIngestConfig>,
};

use crate::pipeline::component::Role;

fn default_qos() -> u8 {
    1
}
fn default_max_payload() -> usize {
    64 * 1024
}
fn default_unit_key() -> String {
    "unit".into()
}
fn default_ts_key() -> String {
    "ts".into()
}

/// One topic filter to subscribe to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subscription {
    /// Topic filter; `+` and `#` wildcards, and `$share/<group>/<filter>` to
    /// split a stream between several twinflow instances.
    pub topic: String,
    /// QoS of the subscription (0, 1 or 2); default 1.
    #[serde(default = "default_qos")]
    pub qos: u8,
    /// Topic level (0-based) that holds the unit id, when the payload has
    /// none; default: the level of the filter's first `+`.
    #[serde(default)]
    pub unit_segment: Option<usize>,
}

impl Subscription {
    /// The filter without a `$share/<group>/` prefix.
    fn plain_filter(&self) -> &str {
        match self.topic.strip_prefix("$share/") {
            Some(rest) => rest.split_once('/').map(|(_, f)| f).unwrap_or(rest),
            None => &self.topic,
        }
    }

    fn unit_level(&self) -> Option<usize> {
        self.unit_segment
            .or_else(|| self.plain_filter().split('/').position(|l| l == "+"))
    }

    /// Whether `topic` matches this filter (MQTT wildcard rules).
    fn matches(&self, topic: &str) -> bool {
        let mut f = self.plain_filter().split('/');
        let mut t = topic.split('/');
        loop {
            match (f.next(), t.next()) {
                (Some("#"), _) => return true,
                (Some("+"), Some(_)) => {}
                (Some(a), Some(b)) if a == b => {}
                (None, None) => return true,
                _ => return false,
            }
        }
    }
}

/// How a timestamp is written in the payload.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TimestampFormat {
    /// `2026-12-04T10:00:00Z`
    #[default]
    Rfc3339,
    /// Seconds since 1970 (number, may have a fraction).
    EpochS,
    /// Milliseconds since 1970.
    EpochMs,
}

/// Where the timestamp is.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimestampMapping {
    /// Key of the timestamp; default `ts`.
    #[serde(default = "default_ts_key")]
    pub field: String,
    #[serde(default)]
    pub format: TimestampFormat,
    /// Use the arrival time when the payload has no timestamp (default:
    /// such a payload is dead-lettered).
    #[serde(default)]
    pub default_now: bool,
}

impl Default for TimestampMapping {
    fn default() -> Self {
        TimestampMapping {
            field: default_ts_key(),
            format: TimestampFormat::Rfc3339,
            default_now: false,
        }
    }
}

/// Where one feature comes from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldMapping {
    /// Payload key; default the feature's own name.
    #[serde(default)]
    pub from: Option<String>,
    /// Unit the payload uses for it (e.g. `L/h`, `degF`); default canonical.
    #[serde(default)]
    pub unit: Option<String>,
    /// Extra factor applied after the unit conversion.
    #[serde(default)]
    pub scale: Option<f64>,
    /// Extra offset added after scaling.
    #[serde(default)]
    pub offset: Option<f64>,
}

/// How payloads map onto sensor frames.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayloadMapping {
    /// Key holding the unit id; default `unit`.
    #[serde(default)]
    pub unit: Option<String>,
    #[serde(default)]
    pub timestamp: TimestampMapping,
    /// Per feature (UCWIT ... UCTSP, UCAOT, UCWOT, UCAF): key, unit, scale.
    #[serde(default)]
    pub fields: BTreeMap<String, FieldMapping>,
    /// Ignore keys the mapping does not use (default: they are an error,
    /// so a renamed or misspelt field is noticed).
    #[serde(default)]
    pub allow_extra_fields: bool,
}

/// Settings of an `mqtt_ingest` node.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttIngestConfig {
    pub broker: BrokerConfig,
    /// Topic filters.
    pub subscriptions: Vec<Subscription>,
    /// Payloads larger than this (bytes) are dead-lettered.
    #[serde(default = "default_max_payload")]
    pub max_payload_bytes: usize,
    #[serde(default)]
    pub mapping: PayloadMapping,
}

impl ComponentConfig for MqttIngestConfig {
    fn validate(&self, problems: &mut Vec<String>) {
        self.broker.problems(problems);
        if self.subscriptions.is_empty() {
            problems.push("subscriptions must list at least one topic".into());
        }
        for s in &self.subscriptions {
            if let Err(e) = mqtt::qos(s.qos) {
                problems.push(format!("subscription {}: {e}", s.topic));
            }
            if s.topic.is_empty() || s.plain_filter().is_empty() {
                problems.push("an empty topic filter".into());
            }
        }
        if self.max_payload_bytes == 0 {
            problems.push("max_payload_bytes must be at least 1".into());
        }
        if let Err(e) = Mapper::new(&self.mapping) {
            problems.push(e);
        }
    }

    fn build(&self, ctx: &BuildContext) -> Result<Component, ComponentError> {
        let mapper = Mapper::new(&self.mapping).map_err(|e| ComponentError::new("config", e))?;
        let options = self
            .broker
            .options(&format!("twinflow-{}", ctx.id), None, true)
            .map_err(|e| ComponentError::new("config", e.to_string()))?;
        let subs: Vec<(String, QoS)> = self
            .subscriptions
            .iter()
            .map(|s| {
                (
                    s.topic.clone(),
                    mqtt::qos(s.qos).unwrap_or(QoS::AtLeastOnce),
                )
            })
            .collect();
        let id = ctx.id.clone();
        let on_connect: mqtt::OnConnect = Box::new(move |client: &Client, session_present| {
            if !session_present {
                tracing::info!(component_id = %id, "subscribing (no stored session)");
            }
            // Subscribing again with a stored session is harmless and covers
            // a subscription list that changed since the session was made.
            if let Err(e) = client.try_subscribe_many(&subs) {
                tracing::error!(component_id = %id, error = %e, "subscribe request failed");
            }
        });
        let conn = Connection::start(
            &ctx.id,
            options,
            ConnectionMetrics::new(&ctx.metrics, &ctx.id),
            (
                Duration::from_millis(self.broker.reconnect_initial_ms),
                Duration::from_millis(self.broker.reconnect_max_ms),
            ),
            64,
            on_connect,
        );
        Ok(Component::Source(Box::new(MqttIngest {
            id: ctx.id.clone(),
            subscriptions: self.subscriptions.clone(),
            max_payload: self.max_payload_bytes,
            mapper,
            acks: Arc::new(AckTracker {
                client: conn.client.clone(),
                state: Mutex::new(AckState::default()),
            }),
            conn: Some(conn),
            metrics: ctx.component_metrics.clone(),
        })))
    }
}

/// In-order acknowledgement of QoS ≥ 1 messages.
struct AckTracker {
    client: Client,
    state: Mutex<AckState>,
}

#[derive(Default)]
struct AckState {
    next_seq: u64,
    /// Messages received and not yet acknowledged, in arrival order.
    waiting: VecDeque<(u64, InPublish)>,
    /// Sequence numbers whose processing finished, not yet at the front.
    finished: BTreeSet<u64>,
}

impl AckTracker {
    fn register(self: &Arc<Self>, p: InPublish) -> AckToken {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let seq = st.next_seq;
        st.next_seq += 1;
        st.waiting.push_back((seq, p));
        Arc::new(PendingAck {
            tracker: self.clone(),
            seq,
        })
    }

    /// Acknowledges every finished message at the front of the queue.
    fn flush(&self, newly_finished: Option<u64>) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(seq) = newly_finished {
            st.finished.insert(seq);
        }
        while let Some((seq, _)) = st.waiting.front() {
            let seq = *seq;
            if !st.finished.contains(&seq) {
                break;
            }
            let (_, p) = st.waiting.front().expect("checked");
            // Not awaiting: this runs in a Drop. A full request queue leaves
            // the ack at the front; the source's ticker retries it.
            if self.client.try_ack(p).is_err() {
                break;
            }
            st.waiting.pop_front();
            st.finished.remove(&seq);
        }
    }

    fn outstanding(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .waiting
            .len()
    }
}

struct PendingAck {
    tracker: Arc<AckTracker>,
    seq: u64,
}

impl Drop for PendingAck {
    fn drop(&mut self) {
        self.tracker.flush(Some(self.seq));
    }
}

/// A payload that cannot become a sensor frame.
#[derive(Debug, Clone, PartialEq)]
pub struct PayloadError {
    /// `too_large`, `not_json`, `no_unit`, `missing_field`, `unknown_field`,
    /// `not_a_number`, `non_finite`, `unknown_unit`, `bad_timestamp`.
    pub reason: &'static str,
    pub message: String,
}

fn perr(reason: &'static str, message: impl Into<String>) -> PayloadError {
    PayloadError {
        reason,
        message: message.into(),
    }
}

/// One feature's resolved mapping.
#[derive(Debug, Clone)]
struct FeatureSource {
    key: String,
    quantity: Quantity,
    conversion: Conversion,
    required: bool,
}

/// The compiled payload mapping.
#[derive(Debug, Clone)]
pub struct Mapper {
    unit_key: String,
    ts: TimestampMapping,
    features: Vec<FeatureSource>,
    allow_extra: bool,
}

impl Mapper {
    pub fn new(m: &PayloadMapping) -> Result<Mapper, String> {
        let mut problems = Vec::new();
        for name in m.fields.keys() {
            if !INPUT_FEATURES.contains(&name.as_str()) && !OUTPUT_FEATURES.contains(&name.as_str())
            {
                problems.push(format!(
                    "mapping.fields: unknown feature \"{name}\" (known: {}, {})",
                    INPUT_FEATURES.join(", "),
                    OUTPUT_FEATURES.join(", ")
                ));
            }
        }
        let mut features = Vec::new();
        for (name, required) in INPUT_FEATURES
            .iter()
            .map(|n| (*n, true))
            .chain(OUTPUT_FEATURES.iter().map(|n| (*n, false)))
        {
            let quantity = Quantity::of_feature(name).expect("features have quantities");
            let f = m.fields.get(name);
            let mut conversion = match f.and_then(|f| f.unit.as_deref()) {
                Some(u) => match units::conversion(quantity, u) {
                    Ok(c) => c,
                    Err(e) => {
                        problems.push(format!("mapping.fields.{name}: {e}"));
                        Conversion::IDENTITY
                    }
                },
                None => Conversion::IDENTITY,
            };
            if let Some(s) = f.and_then(|f| f.scale) {
                if !s.is_finite() || s == 0.0 {
                    problems.push(format!(
                        "mapping.fields.{name}.scale must be finite and non-zero"
                    ));
                }
                conversion.scale *= s;
                conversion.offset *= s;
            }
            if let Some(o) = f.and_then(|f| f.offset) {
                conversion.offset += o;
            }
            features.push(FeatureSource {
                key: f
                    .and_then(|f| f.from.clone())
                    .unwrap_or_else(|| name.to_string()),
                quantity,
                conversion,
                required,
            });
        }
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        Ok(Mapper {
            unit_key: m.unit.clone().unwrap_or_else(default_unit_key),
            ts: m.timestamp.clone(),
            features,
            allow_extra: m.allow_extra_fields,
        })
    }

    fn number(&self, f: &FeatureSource, v: &Value) -> Result<f64, PayloadError> {
        let (raw, conv) = match v {
            Value::Number(n) => (n.as_f64(), f.conversion),
            Value::Object(o) => {
                let raw = o.get("value").and_then(Value::as_f64);
                let conv = match o.get("unit").and_then(Value::as_str) {
                    // The payload names its unit: that conversion replaces
                    // the mapping's.
                    Some(u) => units::conversion(f.quantity, u)
                        .map_err(|e| perr("unknown_unit", format!("{}: {e}", f.key)))?,
                    None => f.conversion,
                };
                if o.keys().any(|k| k != "value" && k != "unit") {
                    return Err(perr(
                        "unknown_field",
                        format!("{}: an object value takes only `value` and `unit`", f.key),
                    ));
                }
                (raw, conv)
            }
            other => {
                return Err(perr(
                    "not_a_number",
                    format!("{}: expected a number, got {}", f.key, kind_of(other)),
                ))
            }
        };
        let raw = raw.ok_or_else(|| perr("not_a_number", format!("{}: not a number", f.key)))?;
        let v = conv.apply(raw);
        if !v.is_finite() {
            return Err(perr(
                "non_finite",
                format!("{}: {raw} is not finite", f.key),
            ));
        }
        Ok(v)
    }

    fn timestamp(
        &self,
        v: Option<&Value>,
        now: DateTime<Utc>,
    ) -> Result<DateTime<Utc>, PayloadError> {
        let key = &self.ts.field;
        let Some(v) = v else {
            return if self.ts.default_now {
                Ok(now)
            } else {
                Err(perr("missing_field", format!("missing timestamp `{key}`")))
            };
        };
        let bad = |why: &str| perr("bad_timestamp", format!("{key}: {why}"));
        match self.ts.format {
            TimestampFormat::Rfc3339 => {
                let s = v
                    .as_str()
                    .ok_or_else(|| bad("expected an RFC 3339 string"))?;
                DateTime::parse_from_rfc3339(s)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|e| bad(&format!("\"{s}\" is not RFC 3339 ({e})")))
            }
            TimestampFormat::EpochS | TimestampFormat::EpochMs => {
                let n = v.as_f64().ok_or_else(|| bad("expected a number"))?;
                let ms = if self.ts.format == TimestampFormat::EpochS {
                    n * 1000.0
                } else {
                    n
                };
                if !ms.is_finite() {
                    return Err(bad("not finite"));
                }
                Utc.timestamp_millis_opt(ms.round() as i64)
                    .single()
                    .ok_or_else(|| bad("out of range"))
            }
        }
    }

    /// Turns one payload into a frame. `topic_unit` is the unit id taken
    /// from the topic, if the subscription has a unit level.
    pub fn frame(
        &self,
        payload: &[u8],
        topic_unit: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<SensorFrame, PayloadError> {
        let v: Value = serde_json::from_slice(payload)
            .map_err(|e| perr("not_json", format!("not JSON: {e}")))?;
        let Value::Object(mut obj) = v else {
            return Err(perr(
                "not_json",
                format!("expected a JSON object, got {}", kind_of(&v)),
            ));
        };
        let unit: Arc<str> = match obj.remove(&self.unit_key) {
            Some(Value::String(s)) if !s.is_empty() => Arc::from(s.as_str()),
            Some(other) => {
                return Err(perr(
                    "not_a_number",
                    format!(
                        "{}: expected a unit id string, got {}",
                        self.unit_key,
                        kind_of(&other)
                    ),
                ))
            }
            None => match topic_unit {
                Some(u) if !u.is_empty() => Arc::from(u),
                _ => {
                    return Err(perr(
                        "no_unit",
                        format!(
                            "no `{}` in the payload and none in the topic",
                            self.unit_key
                        ),
                    ))
                }
            },
        };
        let ts = self.timestamp(obj.remove(&self.ts.field).as_ref(), now)?;
        let mut vals = [None; 9];
        let mut missing = Vec::new();
        for (i, f) in self.features.iter().enumerate() {
            match obj.remove(&f.key) {
                Some(v) => vals[i] = Some(self.number(f, &v)?),
                None if f.required => missing.push(f.key.as_str()),
                None => {}
            }
        }
        if !missing.is_empty() {
            return Err(perr(
                "missing_field",
                format!("missing {}", missing.join(", ")),
            ));
        }
        if !self.allow_extra && !obj.is_empty() {
            let extra: Vec<&str> = obj.keys().map(String::as_str).collect();
            return Err(perr(
                "unknown_field",
                format!("unknown field(s): {}", extra.join(", ")),
            ));
        }
        let r = |i: usize| vals[i].unwrap_or(f64::NAN);
        Ok(SensorFrame {
            unit,
            ts,
            ucwit: r(0),
            ucait: r(1),
            ucwf: r(2),
            ucaih: r(3),
            ambt: r(4),
            uctsp: r(5),
            ucaot: vals[6],
            ucwot: vals[7],
            ucaf: vals[8],
            quality: None,
        })
    }
}

/// What a JSON value is, for error messages ("got a string"); the HTTP
/// API's `/predict` says it the same way.
pub(crate) fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A running `mqtt_ingest`.
pub struct MqttIngest {
    id: Arc<str>,
    subscriptions: Vec<Subscription>,
    max_payload: usize,
    mapper: Mapper,
    acks: Arc<AckTracker>,
    conn: Option<Connection>,
    metrics: crate::metrics::ComponentMetrics,
}

/// How much of a bad payload a dead letter keeps.
const DEAD_LETTER_PAYLOAD_BYTES: usize = 1024;

impl MqttIngest {
    fn topic_unit<'t>(&self, topic: &'t str) -> Option<&'t str> {
        let sub = self.subscriptions.iter().find(|s| s.matches(topic))?;
        topic.split('/').nth(sub.unit_level()?)
    }

    fn dead_letter(&self, topic: &str, payload: &[u8], e: PayloadError) -> DeadLetter {
        let shown = &payload[..payload.len().min(DEAD_LETTER_PAYLOAD_BYTES)];
        let mut obj = Map::new();
        obj.insert("topic".into(), Value::String(topic.to_string()));
        obj.insert(
            "payload".into(),
            Value::String(String::from_utf8_lossy(shown).into_owned()),
        );
        obj.insert("bytes".into(), Value::from(payload.len()));
        obj.insert("truncated".into(), Value::Bool(shown.len() < payload.len()));
        DeadLetter {
            component: self.id.to_string(),
            reason: e.reason.to_string(),
            error: e.message,
            ts: Utc::now(),
            payload: Value::Object(obj),
        }
    }

    async fn handle(&mut self, p: InPublish, out: &mut SourceOutput<'_>) {
        self.metrics.received.inc();
        let topic = p.topic.clone();
        let payload = p.payload.clone();
        let ack = (p.qos != QoS::AtMostOnce).then(|| self.acks.register(p));
        let res = if payload.len() > self.max_payload {
            Err(perr(
                "too_large",
                format!("{} bytes, limit {}", payload.len(), self.max_payload),
            ))
        } else {
            self.mapper
                .frame(&payload, self.topic_unit(&topic), Utc::now())
        };
        match res {
            Ok(f) => out.send(Message::Frame(f), ack).await,
            Err(e) => {
                self.metrics.errors.inc();
                tracing::debug!(component_id = %self.id, %topic, reason = e.reason, error = %e.message, "bad payload");
                let dl = self.dead_letter(&topic, &payload, e);
                out.dead_letter(dl, ack).await;
            }
        }
    }
}

#[async_trait]
impl Source for MqttIngest {
    async fn run(
        &mut self,
        out: &mut SourceOutput<'_>,
        stop: &CancellationToken,
    ) -> Result<(), ComponentError> {
        let mut conn = self
            .conn
            .take()
            .ok_or_else(|| ComponentError::new("internal", "source run twice"))?;
        let mut retry = tokio::time::interval(Duration::from_millis(100));
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let res = loop {
            tokio::select! {
                biased;
                _ = stop.cancelled() => break Ok(()),
                ev = conn.incoming.recv() => match ev {
                    Some(Incoming::Publish(p)) => self.handle(p, out).await,
                    None => break Err(ComponentError::new("mqtt", "the MQTT connection task ended")),
                },
                _ = retry.tick() => self.acks.flush(None),
            }
        };
        // Acknowledgements still owed are sent as the pipeline drains (the
        // tokens hold the tracker, which holds the client); give them a
        // moment to reach the broker before the connection closes.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while self.acks.outstanding() > 0 && tokio::time::Instant::now() < deadline {
            self.acks.flush(None);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        drop(conn);
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapper(yaml: &str) -> Mapper {
        let m: PayloadMapping = serde_saphyr::from_str(yaml).unwrap();
        Mapper::new(&m).unwrap()
    }

    const GOOD: &str = r#"{"unit":"uc-01","ts":"2026-12-04T10:00:00Z","UCWIT":7.5,"UCAIT":25.0,
        "UCWF":15.0,"UCAIH":50.0,"AMBT":22.0,"UCTSP":21.0}"#;

    fn now() -> DateTime<Utc> {
        Utc::now()
    }

    #[test]
    fn contract_payload_parses() {
        let f = mapper("{}").frame(GOOD.as_bytes(), None, now()).unwrap();
        assert_eq!(&*f.unit, "uc-01");
        assert_eq!(f.ucwf, 15.0);
        assert_eq!(f.ucaot, None);
    }

    #[test]
    fn every_bad_payload_has_its_reason() {
        let m = mapper("{}");
        let cases: &[(&str, &str)] = &[
            ("not json", "not_json"),
            ("[1,2]", "not_json"),
            (
                r#"{"unit":"u","ts":"2026-12-04T10:00:00Z","UCWIT":7.5}"#,
                "missing_field",
            ),
            (
                &GOOD.replace("\"UCTSP\":21.0", "\"UCTSP\":21.0,\"EXTRA\":1"),
                "unknown_field",
            ),
            (
                &GOOD.replace("\"UCWF\":15.0", "\"UCWF\":\"15\""),
                "not_a_number",
            ),
            (
                &GOOD.replace("\"UCWF\":15.0", "\"UCWF\":null"),
                "not_a_number",
            ),
            (&GOOD.replace("\"UCWF\":15.0", "\"UCWF\":NaN"), "not_json"),
            (&GOOD.replace("\"UCWF\":15.0", "\"UCWF\":1e400"), "not_json"),
            (
                &GOOD.replace(
                    "\"UCWF\":15.0",
                    "\"UCWF\":{\"value\":900,\"unit\":\"furlongs\"}",
                ),
                "unknown_unit",
            ),
            (
                &GOOD.replace("2026-12-04T10:00:00Z", "yesterday"),
                "bad_timestamp",
            ),
            (&GOOD.replace("\"unit\":\"uc-01\",", ""), "no_unit"),
        ];
        for (payload, reason) in cases {
            let e = m.frame(payload.as_bytes(), None, now()).unwrap_err();
            assert_eq!(e.reason, *reason, "{payload}: {}", e.message);
        }
    }

    #[test]
    fn units_in_payload_and_mapping_are_converted() {
        let f = mapper("{}")
            .frame(
                GOOD.replace("\"UCWF\":15.0", "\"UCWF\":{\"value\":900,\"unit\":\"L/h\"}")
                    .as_bytes(),
                None,
                now(),
            )
            .unwrap();
        assert!((f.ucwf - 15.0).abs() < 1e-12);

        let m = mapper(
            "unit: device\ntimestamp: {field: time, format: epoch_ms}\nfields:\n  UCWIT: {from: water_in, unit: degF}\n  UCWF: {from: flow_lph, unit: L/h}\n  UCAIH: {from: rh, scale: 100}\n",
        );
        let p = r#"{"device":"ahu-7","time":1764842400000,"water_in":45.5,"UCAIT":25,
            "flow_lph":900,"rh":0.5,"AMBT":22,"UCTSP":21}"#;
        let f = m.frame(p.as_bytes(), None, now()).unwrap();
        assert_eq!(&*f.unit, "ahu-7");
        assert!((f.ucwit - 7.5).abs() < 1e-12);
        assert!((f.ucwf - 15.0).abs() < 1e-12);
        assert!((f.ucaih - 50.0).abs() < 1e-12);
        assert_eq!(f.ts.timestamp(), 1764842400);
    }

    #[test]
    fn unit_from_topic_level() {
        let s = Subscription {
            topic: "$share/g/hvac/+/sensors/data".into(),
            qos: 1,
            unit_segment: None,
        };
        assert!(s.matches("hvac/uc-07/sensors/data"));
        assert!(!s.matches("hvac/uc-07/other"));
        assert_eq!(s.unit_level(), Some(1));
        let f = mapper("{}")
            .frame(
                GOOD.replace("\"unit\":\"uc-01\",", "").as_bytes(),
                Some("uc-07"),
                now(),
            )
            .unwrap();
        assert_eq!(&*f.unit, "uc-07");
    }

    #[test]
    fn bad_mappings_are_config_errors() {
        let m: PayloadMapping =
            serde_saphyr::from_str("fields:\n  UCWF: {unit: gal/fortnight}\n  FOO: {}\n").unwrap();
        let e = Mapper::new(&m).unwrap_err();
        assert!(e.contains("gal/fortnight") && e.contains("FOO"), "{e}");
    }
}
