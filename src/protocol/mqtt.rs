//! MQTT connections (rumqttc, MQTT 3.1.1), shared by `mqtt_ingest` and
//! `mqtt_publish`, and the optional embedded broker (rumqttd).
//!
//! A [`Connection`] owns the rumqttc event loop in a task of its own. That
//! task reconnects with capped exponential backoff and jitter, subscribes
//! again whenever the broker reports no stored session, keeps the
//! connection-state metrics, and hands incoming publishes to the component
//! through a bounded channel — when the component is slow the task stops
//! polling, the socket stops being read, and the broker holds the rest.
//!
//! Persistent sessions (`clean_session: false`, the default) with a stable
//! client id are what make at-least-once delivery work across restarts: the
//! broker keeps unacknowledged QoS ≥ 1 messages for the session and
//! redelivers them when the client comes back.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::{Histogram, IntCounter, IntGauge};
use rand::Rng;
use rumqttc::{v5, AsyncClient, Event, EventLoop, LastWill, MqttOptions, Packet, QoS};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::pipeline::component::{AckToken, ComponentError};

fn default_keepalive() -> u64 {
    30
}
fn default_request_queue() -> usize {
    256
}
fn default_inflight() -> u16 {
    100
}
fn default_max_packet() -> usize {
    1024 * 1024
}
fn default_reconnect_initial() -> u64 {
    200
}
fn default_reconnect_max() -> u64 {
    10_000
}
fn default_session_expiry() -> u32 {
    86_400
}

/// MQTT protocol version: `3.1.1` (the default; every broker speaks it) or `5`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    #[default]
    V311,
    V5,
}

impl<'de> Deserialize<'de> for Protocol {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Protocol;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("the MQTT version: \"3.1.1\" or 5")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Protocol, E> {
                match v {
                    "3.1.1" | "3" | "4" | "v3.1.1" => Ok(Protocol::V311),
                    "5" | "5.0" | "v5" => Ok(Protocol::V5),
                    other => Err(E::custom(format!(
                        "unknown MQTT version \"{other}\": use \"3.1.1\" or 5"
                    ))),
                }
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Protocol, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Protocol, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Protocol, E> {
                self.visit_str(&v.to_string())
            }
        }
        d.deserialize_any(V)
    }
}

/// TLS material, as PEM files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// CA certificate(s) that signed the broker's certificate.
    pub ca_file: PathBuf,
    /// Client certificate, for brokers that require client authentication.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// Client private key (with `cert_file`).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

/// How to reach a broker. Shared by every MQTT component.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerConfig {
    /// `mqtt://host:port` (default port 1883) or `mqtts://host:port` (8883).
    pub url: String,
    /// Client id; default `twinflow-<node id>`. Must be stable across
    /// restarts (the broker keeps the session under it) and unique per
    /// running instance.
    #[serde(default)]
    pub client_id: Option<String>,
    /// User name, if the broker wants one.
    #[serde(default)]
    pub username: Option<String>,
    /// Name of the environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// File holding the password (first line), e.g. a mounted secret.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// TLS files; required by `mqtts://`.
    #[serde(default)]
    pub tls: Option<TlsFiles>,
    /// Keep-alive interval, seconds.
    #[serde(default = "default_keepalive")]
    pub keepalive_secs: u64,
    /// Start with a fresh session (loses what the broker kept for us).
    /// Default false: persistent session, needed for at-least-once.
    #[serde(default)]
    pub clean_session: bool,
    /// Requests (publishes, acks) queued towards the broker before senders wait.
    #[serde(default = "default_request_queue")]
    pub request_queue: usize,
    /// QoS ≥ 1 publishes in flight (sent, not yet acknowledged) at most.
    #[serde(default = "default_inflight")]
    pub max_inflight: u16,
    /// Largest MQTT packet accepted or sent, bytes.
    #[serde(default = "default_max_packet")]
    pub max_packet_bytes: usize,
    /// First reconnect delay, ms; doubles (with jitter) up to `reconnect_max_ms`.
    #[serde(default = "default_reconnect_initial")]
    pub reconnect_initial_ms: u64,
    #[serde(default = "default_reconnect_max")]
    pub reconnect_max_ms: u64,
    /// `"3.1.1"` (default) or `"5"`.
    #[serde(default)]
    pub protocol: Protocol,
    /// MQTT 5: how long the broker keeps our session after a disconnect,
    /// seconds (MQTT 5 ends a session at disconnect unless this is set).
    #[serde(default = "default_session_expiry")]
    pub session_expiry_secs: u32,
}

/// A broker setting that cannot work.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MqttConfigError {
    #[error("broker url \"{0}\": expected mqtt://host:port or mqtts://host:port")]
    Url(String),
    #[error("mqtts:// needs `tls.ca_file`")]
    TlsMissing,
    #[error("reading {path}: {error}")]
    File { path: String, error: String },
    #[error("password_env {0} is not set")]
    PasswordEnv(String),
    #[error("{0}")]
    Invalid(String),
}

impl BrokerConfig {
    /// Host, port and whether TLS is on.
    pub fn endpoint(&self) -> Result<(String, u16, bool), MqttConfigError> {
        let bad = || MqttConfigError::Url(self.url.clone());
        let (tls, rest) = if let Some(r) = self.url.strip_prefix("mqtt://") {
            (false, r)
        } else if let Some(r) = self.url.strip_prefix("mqtts://") {
            (true, r)
        } else if let Some(r) = self.url.strip_prefix("tcp://") {
            (false, r)
        } else {
            return Err(bad());
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().map_err(|_| bad())?),
            None => (rest, if tls { 8883 } else { 1883 }),
        };
        if host.is_empty() || host.contains('/') {
            return Err(bad());
        }
        Ok((host.trim_matches(['[', ']']).to_string(), port, tls))
    }

    /// Value checks for `validate` (no file or environment access).
    pub fn problems(&self, problems: &mut Vec<String>) {
        match self.endpoint() {
            Err(e) => problems.push(e.to_string()),
            Ok((_, _, true)) if self.tls.is_none() => {
                problems.push(MqttConfigError::TlsMissing.to_string())
            }
            Ok(_) => {}
        }
        if self.password_env.is_some() && self.password_file.is_some() {
            problems.push("give password_env or password_file, not both".into());
        }
        if self.keepalive_secs < 5 {
            problems.push("keepalive_secs must be at least 5".into());
        }
        if self.request_queue == 0 || self.max_inflight == 0 {
            problems.push("request_queue and max_inflight must be at least 1".into());
        }
        if self.max_packet_bytes < 1024 {
            problems.push("max_packet_bytes must be at least 1024".into());
        }
        if self.reconnect_initial_ms == 0 || self.reconnect_max_ms < self.reconnect_initial_ms {
            problems.push("reconnect_initial_ms must be ≥ 1 and ≤ reconnect_max_ms".into());
        }
        if let Some(t) = &self.tls {
            if t.cert_file.is_some() != t.key_file.is_some() {
                problems.push("tls.cert_file and tls.key_file go together".into());
            }
        }
    }

    fn read(path: &std::path::Path) -> Result<Vec<u8>, MqttConfigError> {
        std::fs::read(path).map_err(|e| MqttConfigError::File {
            path: path.display().to_string(),
            error: e.to_string(),
        })
    }

    /// Client options for the configured protocol. Reads the password and
    /// TLS files; the password is never logged or kept anywhere else.
    pub fn options(
        &self,
        default_client_id: &str,
        will: Option<Will>,
        manual_acks: bool,
    ) -> Result<Options, MqttConfigError> {
        let (host, port, tls) = self.endpoint()?;
        let id = self
            .client_id
            .clone()
            .unwrap_or_else(|| default_client_id.to_string());
        let password = match (&self.password_env, &self.password_file) {
            (Some(var), _) => {
                Some(std::env::var(var).map_err(|_| MqttConfigError::PasswordEnv(var.clone()))?)
            }
            (None, Some(f)) => {
                let text = String::from_utf8_lossy(&Self::read(f)?).into_owned();
                Some(text.lines().next().unwrap_or_default().to_string())
            }
            (None, None) => None,
        };
        if self.username.is_none() && password.is_some() {
            return Err(MqttConfigError::Invalid(
                "a password is configured but no username".into(),
            ));
        }
        let transport = if tls {
            install_crypto_provider();
            let t = self.tls.as_ref().ok_or(MqttConfigError::TlsMissing)?;
            let ca = Self::read(&t.ca_file)?;
            let client_auth = match (&t.cert_file, &t.key_file) {
                (Some(c), Some(k)) => Some((Self::read(c)?, Self::read(k)?)),
                _ => None,
            };
            Some(rumqttc::Transport::Tls(rumqttc::TlsConfiguration::Simple {
                ca,
                alpn: None,
                client_auth,
            }))
        } else {
            None
        };
        let keepalive = Duration::from_secs(self.keepalive_secs);
        Ok(match self.protocol {
            Protocol::V311 => {
                let mut o = MqttOptions::new(id, host, port);
                o.set_keep_alive(keepalive)
                    .set_clean_session(self.clean_session)
                    .set_request_channel_capacity(self.request_queue)
                    .set_inflight(self.max_inflight)
                    .set_max_packet_size(self.max_packet_bytes, self.max_packet_bytes)
                    .set_manual_acks(manual_acks);
                if let Some(w) = will {
                    o.set_last_will(LastWill::new(w.topic, w.payload, w.qos, w.retain));
                }
                if let Some(user) = &self.username {
                    o.set_credentials(user.clone(), password.unwrap_or_default());
                }
                if let Some(t) = transport {
                    o.set_transport(t);
                }
                Options::V311(Box::new(o))
            }
            Protocol::V5 => {
                let mut o = v5::MqttOptions::new(id, host, port);
                o.set_keep_alive(keepalive)
                    .set_clean_start(self.clean_session)
                    .set_request_channel_capacity(self.request_queue)
                    .set_outgoing_inflight_upper_limit(self.max_inflight)
                    .set_max_packet_size(Some(self.max_packet_bytes as u32))
                    .set_manual_acks(manual_acks);
                if !self.clean_session {
                    o.set_session_expiry_interval(Some(self.session_expiry_secs));
                }
                if let Some(w) = will {
                    o.set_last_will(v5::mqttbytes::v5::LastWill::new(
                        w.topic,
                        w.payload,
                        qos_v5(w.qos),
                        w.retain,
                        None,
                    ));
                }
                if let Some(user) = &self.username {
                    o.set_credentials(user.clone(), password.unwrap_or_default());
                }
                if let Some(t) = transport {
                    o.set_transport(t);
                }
                Options::V5(Box::new(o))
            }
        })
    }
}

/// Two TLS stacks meet in this binary (MQTT's and the webhook client's),
/// each bringing a rustls crypto provider; rustls then refuses to pick one
/// by itself. Choose once, for the whole process.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// A last will: published by the broker if the connection drops uncleanly.
pub struct Will {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: QoS,
    pub retain: bool,
}

/// Client options for one protocol version.
pub enum Options {
    V311(Box<MqttOptions>),
    V5(Box<v5::MqttOptions>),
}

fn qos_v5(q: QoS) -> v5::mqttbytes::QoS {
    match q {
        QoS::AtMostOnce => v5::mqttbytes::QoS::AtMostOnce,
        QoS::AtLeastOnce => v5::mqttbytes::QoS::AtLeastOnce,
        QoS::ExactlyOnce => v5::mqttbytes::QoS::ExactlyOnce,
    }
}

fn qos_from_v5(q: v5::mqttbytes::QoS) -> QoS {
    match q {
        v5::mqttbytes::QoS::AtMostOnce => QoS::AtMostOnce,
        v5::mqttbytes::QoS::AtLeastOnce => QoS::AtLeastOnce,
        v5::mqttbytes::QoS::ExactlyOnce => QoS::ExactlyOnce,
    }
}

/// A request could not be queued towards the broker.
#[derive(Debug, Clone, thiserror::Error)]
#[error("MQTT request failed: {0}")]
pub struct RequestError(String);

/// The handle for requests, whatever the protocol version.
#[derive(Clone)]
pub enum Client {
    V311(AsyncClient),
    V5(v5::AsyncClient),
}

/// A received publish, whatever the protocol version.
#[derive(Debug, Clone)]
pub struct InPublish {
    pub topic: String,
    pub payload: bytes::Bytes,
    pub qos: QoS,
    raw: RawPublish,
}

#[derive(Debug, Clone)]
enum RawPublish {
    V311(rumqttc::Publish),
    V5(v5::mqttbytes::v5::Publish),
}

impl Client {
    /// Publishes, waiting while the request queue is full (backpressure).
    pub async fn publish(
        &self,
        topic: String,
        qos: QoS,
        retain: bool,
        payload: Vec<u8>,
    ) -> Result<(), RequestError> {
        let r = match self {
            Client::V311(c) => c
                .publish(topic, qos, retain, payload)
                .await
                .map_err(|e| e.to_string()),
            Client::V5(c) => c
                .publish(topic, qos_v5(qos), retain, payload)
                .await
                .map_err(|e| e.to_string()),
        };
        r.map_err(RequestError)
    }

    /// Publishes without waiting (fails when the request queue is full).
    pub fn try_publish(
        &self,
        topic: String,
        qos: QoS,
        retain: bool,
        payload: Vec<u8>,
    ) -> Result<(), RequestError> {
        let r = match self {
            Client::V311(c) => c
                .try_publish(topic, qos, retain, payload)
                .map_err(|e| e.to_string()),
            Client::V5(c) => c
                .try_publish(topic, qos_v5(qos), retain, payload)
                .map_err(|e| e.to_string()),
        };
        r.map_err(RequestError)
    }

    /// Acknowledges a received publish (manual acknowledgements).
    pub fn try_ack(&self, p: &InPublish) -> Result<(), RequestError> {
        let r = match (self, &p.raw) {
            (Client::V311(c), RawPublish::V311(raw)) => c.try_ack(raw).map_err(|e| e.to_string()),
            (Client::V5(c), RawPublish::V5(raw)) => c.try_ack(raw).map_err(|e| e.to_string()),
            _ => Err("publish and client are of different protocol versions".into()),
        };
        r.map_err(RequestError)
    }

    pub fn try_subscribe_many(&self, subs: &[(String, QoS)]) -> Result<(), RequestError> {
        let r = match self {
            Client::V311(c) => c
                .try_subscribe_many(
                    subs.iter()
                        .map(|(t, q)| rumqttc::SubscribeFilter::new(t.clone(), *q)),
                )
                .map_err(|e| e.to_string()),
            Client::V5(c) => c
                .try_subscribe_many(
                    subs.iter()
                        .map(|(t, q)| v5::mqttbytes::v5::Filter::new(t.clone(), qos_v5(*q))),
                )
                .map_err(|e| e.to_string()),
        };
        r.map_err(RequestError)
    }

    pub async fn disconnect(&self) {
        let _ = match self {
            Client::V311(c) => c.disconnect().await.map_err(|e| e.to_string()),
            Client::V5(c) => c.disconnect().await.map_err(|e| e.to_string()),
        };
    }
}

/// What the connection task cares about in an event.
// Moved once per event and never stored: boxing the publish would cost an
// allocation per message for nothing.
#[allow(clippy::large_enum_variant)]
enum Polled {
    Connected {
        session_present: bool,
    },
    Publish(InPublish),
    /// The broker acknowledged one of our QoS ≥ 1 publishes.
    Acknowledged,
    Other,
}

/// One event loop, either protocol.
enum Loop {
    V311(Box<EventLoop>),
    V5(Box<v5::EventLoop>),
}

impl Loop {
    async fn poll(&mut self) -> Result<Polled, String> {
        match self {
            Loop::V311(el) => Ok(match el.poll().await.map_err(|e| e.to_string())? {
                Event::Incoming(Packet::ConnAck(a)) => Polled::Connected {
                    session_present: a.session_present,
                },
                Event::Incoming(Packet::Publish(p)) => Polled::Publish(InPublish {
                    topic: p.topic.clone(),
                    payload: p.payload.clone(),
                    qos: p.qos,
                    raw: RawPublish::V311(p),
                }),
                Event::Incoming(Packet::PubAck(_) | Packet::PubComp(_)) => Polled::Acknowledged,
                _ => Polled::Other,
            }),
            Loop::V5(el) => {
                use v5::mqttbytes::v5::Packet as P5;
                Ok(match el.poll().await.map_err(|e| e.to_string())? {
                    v5::Event::Incoming(P5::ConnAck(a)) => Polled::Connected {
                        session_present: a.session_present,
                    },
                    v5::Event::Incoming(P5::Publish(p)) => Polled::Publish(InPublish {
                        topic: String::from_utf8_lossy(&p.topic).into_owned(),
                        payload: p.payload.clone(),
                        qos: qos_from_v5(p.qos),
                        raw: RawPublish::V5(p),
                    }),
                    v5::Event::Incoming(P5::PubAck(_) | P5::PubComp(_)) => Polled::Acknowledged,
                    _ => Polled::Other,
                })
            }
        }
    }
}

/// Parses a QoS level from configuration.
pub fn qos(level: u8) -> Result<QoS, String> {
    match level {
        0 => Ok(QoS::AtMostOnce),
        1 => Ok(QoS::AtLeastOnce),
        2 => Ok(QoS::ExactlyOnce),
        n => Err(format!("qos must be 0, 1 or 2, got {n}")),
    }
}

/// What the connection task hands the component.
#[derive(Debug)]
pub enum Incoming {
    Publish(InPublish),
}

/// Outgoing QoS ≥ 1 publishes awaiting the broker's acknowledgement, in
/// order: the broker acknowledges in the order it received them, so each
/// PUBACK (PUBCOMP for QoS 2) completes the oldest entry and releases its
/// acknowledgement token.
#[derive(Default)]
pub struct PendingPublishes {
    queue: Mutex<VecDeque<(Instant, Option<AckToken>)>>,
    /// Rung whenever an entry completes, for `wait_empty`.
    done: tokio::sync::Notify,
}

impl PendingPublishes {
    pub fn push(&self, ack: Option<AckToken>) {
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back((Instant::now(), ack));
    }

    fn complete_one(&self, latency: &Histogram) {
        let front = self
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front();
        if let Some((t0, ack)) = front {
            latency.observe(t0.elapsed().as_secs_f64());
            drop(ack); // releases the upstream acknowledgement
        }
        self.done.notify_waiters();
    }

    pub fn len(&self) -> usize {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until every publish is acknowledged, or `timeout` passes.
    pub async fn wait_empty(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.done.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_empty() {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.is_empty();
            }
        }
    }
}

/// Per-connection metrics.
#[derive(Clone)]
pub struct ConnectionMetrics {
    pub connected: IntGauge,
    pub reconnects: IntCounter,
    pub publish_latency: Histogram,
}

impl ConnectionMetrics {
    pub fn new(metrics: &Metrics, component_id: &str) -> Self {
        ConnectionMetrics {
            connected: metrics.mqtt_connected.with_label_values(&[component_id]),
            reconnects: metrics.mqtt_reconnects.with_label_values(&[component_id]),
            publish_latency: metrics
                .mqtt_publish_latency
                .with_label_values(&[component_id]),
        }
    }
}

/// A live MQTT client: the handle for requests, the incoming stream, and
/// the task that drives the connection (stopped on drop).
pub struct Connection {
    pub client: Client,
    pub incoming: mpsc::Receiver<Incoming>,
    pub pending: Arc<PendingPublishes>,
    cancel: CancellationToken,
}

/// Called after every (re)connection, with whether the broker still had our
/// session; returns the requests to make (subscriptions, status).
pub type OnConnect = Box<dyn Fn(&Client, bool) + Send + Sync>;

impl Connection {
    /// Starts the connection task. `incoming_capacity` bounds the publishes
    /// buffered between the task and the component.
    pub fn start(
        id: &str,
        options: Options,
        metrics: ConnectionMetrics,
        reconnect: (Duration, Duration),
        incoming_capacity: usize,
        on_connect: OnConnect,
    ) -> Connection {
        let (client, eventloop) = match options {
            Options::V311(o) => {
                let cap = o.request_channel_capacity();
                let (c, el) = AsyncClient::new(*o, cap);
                (Client::V311(c), Loop::V311(Box::new(el)))
            }
            Options::V5(o) => {
                let cap = o.request_channel_capacity();
                let (c, el) = v5::AsyncClient::new(*o, cap);
                (Client::V5(c), Loop::V5(Box::new(el)))
            }
        };
        let (tx, rx) = mpsc::channel(incoming_capacity.max(1));
        let pending = Arc::new(PendingPublishes::default());
        let cancel = CancellationToken::new();
        let task_id = id.to_string();
        let driver = drive(
            id.to_string(),
            client.clone(),
            eventloop,
            tx,
            pending.clone(),
            metrics,
            reconnect,
            on_connect,
            cancel.clone(),
        );
        tokio::spawn(async move {
            // A panic here would otherwise vanish with the task; the
            // component notices the connection is gone (closed channels).
            if let Err(p) =
                futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(driver)).await
            {
                let why = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                tracing::error!(component_id = %task_id, "MQTT connection task panicked: {why}");
            }
        });
        Connection {
            client,
            incoming: rx,
            pending,
            cancel,
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

#[allow(clippy::too_many_arguments)]
async fn drive(
    id: String,
    client: Client,
    mut eventloop: Loop,
    tx: mpsc::Sender<Incoming>,
    pending: Arc<PendingPublishes>,
    metrics: ConnectionMetrics,
    (initial, max): (Duration, Duration),
    on_connect: OnConnect,
    cancel: CancellationToken,
) {
    let mut delay = initial;
    let mut was_connected = false;
    loop {
        // Cancellation first: a dropped component must not keep a
        // connection (and its session's client id) busy.
        let ev = tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            ev = eventloop.poll() => ev,
        };
        match ev {
            Ok(Polled::Connected { session_present }) => {
                metrics.connected.set(1);
                delay = initial;
                tracing::info!(component_id = %id, session_present, "MQTT connected");
                on_connect(&client, session_present);
                was_connected = true;
            }
            Ok(Polled::Publish(p)) => {
                // Waiting here is the backpressure: the event loop is not
                // polled, the socket is not read, the broker keeps the rest.
                let send = tx.send(Incoming::Publish(p));
                tokio::select! {
                    biased;
                    _ = cancel.cancelled() => break,
                    r = send => if r.is_err() { break },
                }
            }
            Ok(Polled::Acknowledged) => {
                pending.complete_one(&metrics.publish_latency);
            }
            Ok(Polled::Other) => {}
            Err(e) => {
                metrics.connected.set(0);
                if was_connected {
                    metrics.reconnects.inc();
                    was_connected = false;
                }
                let jitter = rand::rng().random_range(0.8..1.2);
                let wait = delay.mul_f64(jitter);
                tracing::warn!(component_id = %id, error = %e, retry_in_ms = wait.as_millis() as u64, "MQTT connection lost");
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(wait) => {}
                }
                delay = (delay * 2).min(max);
            }
        }
    }
    metrics.connected.set(0);
}

impl From<RequestError> for ComponentError {
    fn from(e: RequestError) -> Self {
        ComponentError::new("mqtt", e.to_string())
    }
}

/// The embedded broker of the demo (rumqttd), for a machine with no broker.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddedBrokerConfig {
    /// Listen address; default 127.0.0.1:1884, so it does not collide with a
    /// Mosquitto on 1883.
    #[serde(default = "default_embedded_listen")]
    pub listen: String,
}

fn default_embedded_listen() -> String {
    "127.0.0.1:1884".into()
}

impl EmbeddedBrokerConfig {
    pub fn problems(&self, problems: &mut Vec<String>) {
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            problems.push(format!(
                "embedded_broker.listen \"{}\" is not an address like 127.0.0.1:1884",
                self.listen
            ));
        }
        if cfg!(not(feature = "embedded-broker")) {
            problems.push("this twinflow was built without the embedded-broker feature".into());
        }
    }

    /// Starts the broker on its own threads; it lives as long as the process.
    #[cfg(feature = "embedded-broker")]
    pub fn start(&self) -> Result<std::net::SocketAddr, String> {
        let addr: std::net::SocketAddr = self
            .listen
            .parse()
            .map_err(|_| format!("bad listen address {}", self.listen))?;
        // Fail now, with a clear message, if the port is taken; rumqttd
        // would only log it from its own thread.
        drop(
            std::net::TcpListener::bind(addr)
                .map_err(|e| format!("embedded broker cannot listen on {addr}: {e}"))?,
        );
        let config: rumqttd::Config = serde_json::from_value(serde_json::json!({
            "id": 0,
            "router": {
                "id": 0,
                "max_connections": 1000,
                "max_outgoing_packet_count": 200,
                "max_segment_size": 104857600,
                "max_segment_count": 10
            },
            "v4": { "1": {
                "name": "twinflow-embedded",
                "listen": addr.to_string(),
                "next_connection_delay_ms": 1,
                "connections": {
                    "connection_timeout_ms": 60000,
                    "max_payload_size": 1048576,
                    "max_inflight_count": 500,
                    "dynamic_filters": true
                }
            }}
        }))
        .map_err(|e| format!("embedded broker config: {e}"))?;
        std::thread::Builder::new()
            .name("embedded-mqtt".into())
            .spawn(move || {
                let mut broker = rumqttd::Broker::new(config);
                if let Err(e) = broker.start() {
                    tracing::error!(error = %e, "embedded MQTT broker stopped");
                }
            })
            .map_err(|e| e.to_string())?;
        // Wait until rumqttd holds the port, so the pipeline's first connect
        // succeeds. (A probe connection would make rumqttd log an error.)
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::net::TcpListener::bind(addr).is_ok() {
            if Instant::now() > deadline {
                return Err(format!("embedded broker did not start listening on {addr}"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        tracing::info!(%addr, "embedded MQTT broker listening");
        Ok(addr)
    }

    #[cfg(not(feature = "embedded-broker"))]
    pub fn start(&self) -> Result<std::net::SocketAddr, String> {
        Err("this twinflow was built without the embedded-broker feature".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(url: &str) -> BrokerConfig {
        serde_saphyr::from_str(&format!("url: {url}")).unwrap()
    }

    #[test]
    fn parses_urls() {
        assert_eq!(
            cfg("mqtt://127.0.0.1:1884").endpoint().unwrap(),
            ("127.0.0.1".into(), 1884, false)
        );
        assert_eq!(
            cfg("mqtt://broker").endpoint().unwrap(),
            ("broker".into(), 1883, false)
        );
        assert_eq!(
            cfg("mqtts://broker").endpoint().unwrap(),
            ("broker".into(), 8883, true)
        );
        assert!(cfg("http://x").endpoint().is_err());
        assert!(cfg("mqtt://x:notaport").endpoint().is_err());
    }

    #[test]
    fn protocol_versions() {
        let p = |y: &str| {
            serde_saphyr::from_str::<BrokerConfig>(&format!("url: mqtt://x\nprotocol: {y}\n"))
        };
        assert_eq!(p("5").unwrap().protocol, Protocol::V5);
        assert_eq!(p("3.1.1").unwrap().protocol, Protocol::V311);
        assert_eq!(p("'5'").unwrap().protocol, Protocol::V5);
        assert!(p("6").is_err());
    }

    #[test]
    fn problems_are_collected() {
        let mut p = Vec::new();
        let mut c = cfg("mqtts://broker");
        c.keepalive_secs = 1;
        c.password_env = Some("A".into());
        c.password_file = Some("/f".into());
        c.problems(&mut p);
        assert_eq!(p.len(), 3, "{p:?}");
    }

    #[test]
    fn password_comes_from_the_environment_and_is_not_in_debug_output() {
        let mut c = cfg("mqtt://127.0.0.1:1");
        c.username = Some("u".into());
        c.password_env = Some("TWINFLOW_TEST_MQTT_PASSWORD_UNSET".into());
        let e = c.options("x", None, false).err().expect("no password");
        assert!(matches!(e, MqttConfigError::PasswordEnv(_)));
        assert!(!format!("{c:?}").contains("secret"));
    }
}
