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
use rumqttc::{AsyncClient, Event, EventLoop, LastWill, MqttOptions, Packet, Publish, QoS};
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

    /// rumqttc options. Reads the password and TLS files; the password is
    /// never logged or kept anywhere else.
    pub fn options(
        &self,
        default_client_id: &str,
        will: Option<LastWill>,
    ) -> Result<MqttOptions, MqttConfigError> {
        let (host, port, tls) = self.endpoint()?;
        let id = self
            .client_id
            .clone()
            .unwrap_or_else(|| default_client_id.to_string());
        let mut o = MqttOptions::new(id, host, port);
        o.set_keep_alive(Duration::from_secs(self.keepalive_secs))
            .set_clean_session(self.clean_session)
            .set_request_channel_capacity(self.request_queue)
            .set_inflight(self.max_inflight)
            .set_max_packet_size(self.max_packet_bytes, self.max_packet_bytes);
        if let Some(w) = will {
            o.set_last_will(w);
        }
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
        if let Some(user) = &self.username {
            o.set_credentials(user.clone(), password.unwrap_or_default());
        } else if password.is_some() {
            return Err(MqttConfigError::Invalid(
                "a password is configured but no username".into(),
            ));
        }
        if tls {
            let t = self.tls.as_ref().ok_or(MqttConfigError::TlsMissing)?;
            let ca = Self::read(&t.ca_file)?;
            let client_auth = match (&t.cert_file, &t.key_file) {
                (Some(c), Some(k)) => Some((Self::read(c)?, Self::read(k)?)),
                _ => None,
            };
            o.set_transport(rumqttc::Transport::Tls(rumqttc::TlsConfiguration::Simple {
                ca,
                alpn: None,
                client_auth,
            }));
        }
        Ok(o)
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
    Publish(Publish),
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
    pub client: AsyncClient,
    pub incoming: mpsc::Receiver<Incoming>,
    pub pending: Arc<PendingPublishes>,
    cancel: CancellationToken,
}

/// Called after every (re)connection, with whether the broker still had our
/// session; returns the requests to make (subscriptions, status).
pub type OnConnect = Box<dyn Fn(&AsyncClient, bool) + Send + Sync>;

impl Connection {
    /// Starts the connection task. `incoming_capacity` bounds the publishes
    /// buffered between the task and the component.
    pub fn start(
        id: &str,
        options: MqttOptions,
        metrics: ConnectionMetrics,
        reconnect: (Duration, Duration),
        incoming_capacity: usize,
        on_connect: OnConnect,
    ) -> Connection {
        let capacity = options.request_channel_capacity();
        let (client, eventloop) = AsyncClient::new(options, capacity);
        let (tx, rx) = mpsc::channel(incoming_capacity.max(1));
        let pending = Arc::new(PendingPublishes::default());
        let cancel = CancellationToken::new();
        tokio::spawn(drive(
            id.to_string(),
            client.clone(),
            eventloop,
            tx,
            pending.clone(),
            metrics,
            reconnect,
            on_connect,
            cancel.clone(),
        ));
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
    client: AsyncClient,
    mut eventloop: EventLoop,
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
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                metrics.connected.set(1);
                delay = initial;
                tracing::info!(component_id = %id, session_present = ack.session_present, "MQTT connected");
                on_connect(&client, ack.session_present);
                was_connected = true;
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                // Waiting here is the backpressure: the event loop is not
                // polled, the socket is not read, the broker keeps the rest.
                let send = tx.send(Incoming::Publish(p));
                tokio::select! {
                    biased;
                    _ = cancel.cancelled() => break,
                    r = send => if r.is_err() { break },
                }
            }
            Ok(Event::Incoming(Packet::PubAck(_)) | Event::Incoming(Packet::PubComp(_))) => {
                pending.complete_one(&metrics.publish_latency);
            }
            Ok(_) => {}
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

/// Error text for a failed request on the client handle.
pub fn client_error(e: rumqttc::ClientError) -> ComponentError {
    ComponentError::new("mqtt", format!("MQTT request failed: {e}"))
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
        let e = c.options("x", None).unwrap_err();
        assert!(matches!(e, MqttConfigError::PasswordEnv(_)));
        assert!(!format!("{c:?}").contains("secret"));
    }
}
