//! `mqtt_publish`: predictions, alerts, drift reports, frames and dead
//! letters to MQTT topics, plus a retained status with an `offline` last
//! will.
//!
//! Backpressure: a publish waits while the client's request queue is full
//! and the broker has `max_inflight` messages unacknowledged, so a slow
//! broker slows the pipeline instead of growing a buffer. At QoS ≥ 1 a
//! message counts as delivered — and the acknowledgement of the input it
//! came from is released — only when the broker has acknowledged it.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rumqttc::QoS;
use serde::Deserialize;
use serde_json::json;

use crate::pipeline::component::{
    parse_config, BuildContext, Component, ComponentConfig, ComponentDescriptor, ComponentError,
    Emitter, Processor, Role,
};
use crate::pipeline::message::{KindSet, Message, MessageKind};
use crate::protocol::mqtt::{
    self, BrokerConfig, Client, Connection, ConnectionMetrics, PendingPublishes, Will,
};

pub const DESCRIPTOR: ComponentDescriptor = ComponentDescriptor {
    type_name: "mqtt_publish",
    role: Role::Sink,
    accepts: KindSet::of(&MessageKind::ALL),
    emits: KindSet::EMPTY,
    summary: "Publishes predictions, alerts, drift reports and dead letters to MQTT.",
    parse: parse_config::<MqttPublishConfig>,
};

fn t(s: &str) -> Option<String> {
    Some(s.to_string())
}

/// Topic templates per message type. `{unit}` is the unit id, `{severity}`
/// and `{code}` an alert's; set one to null to not publish that type.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Topics {
    pub prediction: Option<String>,
    pub alert: Option<String>,
    pub drift: Option<String>,
    pub deadletter: Option<String>,
    pub frame: Option<String>,
}

impl Default for Topics {
    fn default() -> Self {
        Topics {
            prediction: t("hvac/predictions/results"),
            alert: t("hvac/alerts/{severity}"),
            drift: t("hvac/drift/{unit}"),
            deadletter: t("hvac/deadletter"),
            frame: t("hvac/{unit}/sensors/data"),
        }
    }
}

fn default_status() -> Option<String> {
    t("hvac/status")
}
fn one() -> u8 {
    1
}
fn default_flush() -> f64 {
    5.0
}

/// Settings of an `mqtt_publish` node.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttPublishConfig {
    pub broker: BrokerConfig,
    #[serde(default)]
    pub topics: Topics,
    /// QoS of published messages (alerts always go at QoS ≥ 1); default 1.
    #[serde(default = "one")]
    pub qos: u8,
    /// Retain published messages (not alerts or dead letters); default false.
    #[serde(default)]
    pub retain: bool,
    /// Retained status topic (`online` while connected, `offline` as last
    /// will and at shutdown); null to disable.
    #[serde(default = "default_status")]
    pub status_topic: Option<String>,
    /// At shutdown, how long to wait for the broker to acknowledge what was
    /// published, seconds.
    #[serde(default = "default_flush")]
    pub flush_timeout_secs: f64,
}

impl ComponentConfig for MqttPublishConfig {
    fn validate(&self, problems: &mut Vec<String>) {
        self.broker.problems(problems);
        if let Err(e) = mqtt::qos(self.qos) {
            problems.push(e);
        }
        if !(self.flush_timeout_secs.is_finite() && self.flush_timeout_secs > 0.0) {
            problems.push("flush_timeout_secs must be positive".into());
        }
        let all = [
            &self.topics.prediction,
            &self.topics.alert,
            &self.topics.drift,
            &self.topics.deadletter,
            &self.topics.frame,
            &self.status_topic,
        ];
        for topic in all.into_iter().flatten() {
            if topic.is_empty() || topic.contains(['+', '#']) {
                problems.push(format!(
                    "topic \"{topic}\" must be non-empty and have no wildcards"
                ));
            }
        }
    }

    fn build(&self, ctx: &BuildContext) -> Result<Component, ComponentError> {
        let will = self.status_topic.as_ref().map(|topic| Will {
            topic: topic.clone(),
            payload: status_payload("offline", &ctx.id),
            qos: QoS::AtLeastOnce,
            retain: true,
        });
        let options = self
            .broker
            .options(&format!("twinflow-{}", ctx.id), will, false)
            .map_err(|e| ComponentError::new("config", e.to_string()))?;
        let status = self.status_topic.clone();
        let id = ctx.id.clone();
        let on_connect: mqtt::OnConnect = Box::new(move |client: &Client, _| {
            if let Some(topic) = &status {
                // Not awaited: this runs inside the connection task.
                let _ = client.try_publish(
                    topic.clone(),
                    QoS::AtLeastOnce,
                    true,
                    status_payload("online", &id),
                );
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
            1,
            on_connect,
        );
        Ok(Component::Processor(Box::new(MqttPublish {
            id: ctx.id.clone(),
            qos: mqtt::qos(self.qos).unwrap_or(QoS::AtLeastOnce),
            retain: self.retain,
            topics: self.topics.clone(),
            status_topic: self.status_topic.clone(),
            flush_timeout: Duration::from_secs_f64(self.flush_timeout_secs),
            pending: conn.pending.clone(),
            client: conn.client.clone(),
            _conn: conn,
        })))
    }
}

fn status_payload(status: &str, id: &str) -> Vec<u8> {
    json!({"status": status, "component": id, "ts": chrono::Utc::now()})
        .to_string()
        .into_bytes()
}

fn fill(template: &str, msg: &Message) -> String {
    let mut s = template.replace("{unit}", msg.unit().unwrap_or("unknown"));
    if let Message::Alert(a) = msg {
        s = s
            .replace("{severity}", a.severity.as_str())
            .replace("{code}", &a.code);
    }
    s
}

pub struct MqttPublish {
    id: Arc<str>,
    qos: QoS,
    retain: bool,
    topics: Topics,
    status_topic: Option<String>,
    flush_timeout: Duration,
    pending: Arc<PendingPublishes>,
    client: Client,
    /// Keeps the connection task alive as long as this component.
    _conn: Connection,
}

impl MqttPublish {
    async fn publish(
        &self,
        topic: String,
        qos: QoS,
        retain: bool,
        payload: Vec<u8>,
        ack: Option<crate::pipeline::component::AckToken>,
    ) -> Result<(), ComponentError> {
        if qos != QoS::AtMostOnce {
            self.pending.push(ack);
        }
        let res = self.client.publish(topic, qos, retain, payload).await;
        Ok(res?)
    }
}

#[async_trait]
impl Processor for MqttPublish {
    async fn process(
        &mut self,
        msg: &Arc<Message>,
        out: &mut Emitter,
    ) -> Result<(), ComponentError> {
        let (template, qos, retain) = match &**msg {
            Message::Prediction(_) => (&self.topics.prediction, self.qos, self.retain),
            Message::Frame(_) => (&self.topics.frame, self.qos, self.retain),
            Message::Drift(_) => (&self.topics.drift, self.qos, self.retain),
            // Alerts and dead letters are events: at least once, never retained.
            Message::Alert(_) => {
                let qos = match self.qos {
                    QoS::AtMostOnce => QoS::AtLeastOnce,
                    q => q,
                };
                (&self.topics.alert, qos, false)
            }
            Message::DeadLetter(_) => (&self.topics.deadletter, self.qos, false),
        };
        let Some(template) = template else {
            return Ok(());
        };
        let payload = serde_json::to_vec(&**msg)
            .map_err(|e| ComponentError::new("serialize", e.to_string()))?;
        self.publish(fill(template, msg), qos, retain, payload, out.ack_token())
            .await
    }

    async fn flush(&mut self, _out: &mut Emitter) -> Result<(), ComponentError> {
        if let Some(topic) = self.status_topic.clone() {
            // A clean stop says so; the last will covers a crash.
            self.publish(
                topic,
                QoS::AtLeastOnce,
                true,
                status_payload("offline", &self.id),
                None,
            )
            .await?;
        }
        if !self.pending.wait_empty(self.flush_timeout).await {
            return Err(ComponentError::new(
                "mqtt",
                format!(
                    "{} publish(es) not acknowledged by the broker within {:?}",
                    self.pending.len(),
                    self.flush_timeout
                ),
            ));
        }
        self.client.disconnect().await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::message::{Alert, Severity};

    #[test]
    fn topic_templates() {
        let a = Message::Alert(Alert {
            code: "DEVICE_OFFLINE".into(),
            message: "x".into(),
            severity: Severity::Critical,
            unit: Some("uc-02".into()),
            ts: chrono::Utc::now(),
            details: json!({}),
            state: Default::default(),
            key: None,
        });
        assert_eq!(fill("hvac/alerts/{severity}", &a), "hvac/alerts/critical");
        assert_eq!(fill("x/{unit}/{code}", &a), "x/uc-02/DEVICE_OFFLINE");
    }

    #[test]
    fn wildcard_topics_are_rejected() {
        let c: MqttPublishConfig = serde_saphyr::from_str(
            "broker: {url: 'mqtt://127.0.0.1:1883'}\ntopics: {prediction: 'a/+/b'}\nqos: 3\n",
        )
        .unwrap();
        let mut p = Vec::new();
        c.validate(&mut p);
        assert_eq!(p.len(), 2, "{p:?}");
    }
}
