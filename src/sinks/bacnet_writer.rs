//! `bacnet_writer`: predictions written back into a unit cooler's BACnet
//! controller, so the SCADA or BMS the operators already use shows them.
//!
//! Per device: the unit whose predictions it takes and a point map (output →
//! commandable analogValue; default DESIGN.md's analogValue 0..3 for UCAOT,
//! UCWOT, UCAF, Q_thermal). Only the objects the configuration lists are
//! ever written, at the configured priority (default 16, the lowest; 6 is
//! refused: it is reserved for minimum on/off).
//!
//! Writes are decoupled from the stream: each device has a task that writes
//! the latest prediction, so a slow or dead controller never holds up the
//! pipeline (a SCADA wants the current value, not every value). A write that
//! changes a point by less than its deadband is skipped; a failed write is
//! counted and retried with capped backoff; with `verify` the priority slot
//! is read back after each write. When a unit's predictions stop coming for
//! `stale_after`, and at shutdown, the writer relinquishes its slot (writes
//! Null), so the controller falls back to whatever commands below it or to
//! its relinquish default rather than showing a stale prediction.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddrV4;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bacnet_types::enums::ObjectType;
use serde::Deserialize;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::duration;
use crate::metrics::Metrics;
use crate::model::units::{Conversion, Quantity};
use crate::pipeline::component::{
    parse_config, BuildContext, Component, ComponentConfig, ComponentDescriptor, ComponentError,
    Emitter, Processor, Role,
};
use crate::pipeline::message::{KindSet, Message, MessageKind, Prediction};
use crate::protocol::bacnet::{self, Client, Device, DeviceAddress, ObjectRef, Units};

pub const DESCRIPTOR: ComponentDescriptor = ComponentDescriptor {
    type_name: "bacnet_writer",
    role: Role::Sink,
    accepts: KindSet::of(&[MessageKind::Prediction]),
    emits: KindSet::EMPTY,
    summary: "Writes predictions to commandable BACnet objects for SCADA (priority, deadband, relinquish).",
    parse: parse_config::<BacnetWriterConfig>,
};

/// The outputs a prediction carries, in [`Prediction`] order.
const OUTPUTS: [&str; 4] = ["UCAOT", "UCWOT", "UCAF", "Q_thermal"];

fn default_local() -> String {
    "0.0.0.0:0".into()
}
fn default_priority() -> u8 {
    16
}
fn default_timeout() -> Duration {
    Duration::from_secs(1)
}
fn default_retries() -> u8 {
    1
}
fn default_stale() -> Duration {
    Duration::from_secs(300)
}
fn default_refresh() -> Duration {
    Duration::from_secs(60)
}
fn default_backoff_max() -> Duration {
    Duration::from_secs(30)
}
fn default_true() -> bool {
    true
}

/// Settings of a `bacnet_writer` node.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BacnetWriterConfig {
    /// Local BACnet/IP address to bind, `IP:port`; default `0.0.0.0:0`.
    #[serde(default = "default_local")]
    pub local: String,
    /// Write priority, 1..16 (not 6); default 16.
    #[serde(default = "default_priority")]
    pub priority: u8,
    /// How long to wait for a device's answer to one request; default 1 s.
    #[serde(
        default = "default_timeout",
        deserialize_with = "duration::deserialize"
    )]
    pub timeout: Duration,
    /// Retries of an unanswered request (BACnet APDU retries); default 1.
    #[serde(default = "default_retries")]
    pub retries: u8,
    /// Skip a write that changes a point by less than this, in the output's
    /// canonical unit; default 0.05. Per point `deadband` overrides it.
    #[serde(default = "default_deadband")]
    pub deadband: f64,
    /// Relinquish a unit's points when its last prediction is older than
    /// this; default 300 s.
    #[serde(default = "default_stale", deserialize_with = "duration::deserialize")]
    pub stale_after: Duration,
    /// Write every point again this often even when it has not moved past
    /// its deadband, so a controller that restarted (and lost its priority
    /// array) shows the prediction again; default 60 s.
    #[serde(
        default = "default_refresh",
        deserialize_with = "duration::deserialize"
    )]
    pub refresh_every: Duration,
    /// Relinquish every written point at shutdown; default true.
    #[serde(default = "default_true")]
    pub relinquish_on_shutdown: bool,
    /// Read the priority slot back after each write and count a mismatch
    /// (`verify_failed`), rewriting it next time; default false.
    #[serde(default)]
    pub verify: bool,
    /// Longest wait between retries of failed writes (the wait doubles from
    /// 1 s); default 30 s.
    #[serde(
        default = "default_backoff_max",
        deserialize_with = "duration::deserialize"
    )]
    pub backoff_max: Duration,
    /// The devices, one unit cooler each.
    pub devices: Vec<WriterDeviceConfig>,
}

fn default_deadband() -> f64 {
    0.05
}

/// One device written to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriterDeviceConfig {
    /// Unit id whose predictions go to this device.
    pub unit: String,
    /// The device's BACnet/IP address, `IP[:port]`.
    pub address: DeviceAddress,
    /// The device's instance number.
    pub device_id: u32,
    /// Output → object. Default: UCAOT, UCWOT, UCAF, Q_thermal to
    /// analogValue 0..3. Only the outputs listed are written.
    #[serde(default)]
    pub points: Option<BTreeMap<String, WritePointConfig>>,
}

/// Where an output is written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WritePointConfig {
    /// The object, `type:instance`; its Present_Value is written.
    pub object: ObjectRef,
    /// Units the object is in (BACnet name); default the output's canonical
    /// unit (°C, m³/h, kW). The value is converted before it is written.
    #[serde(default)]
    pub units: Option<Units>,
    /// Deadband for this point; default the writer's.
    #[serde(default)]
    pub deadband: Option<f64>,
}

impl BacnetWriterConfig {
    fn local_addr(&self) -> Result<SocketAddrV4, String> {
        self.local
            .parse()
            .map_err(|_| format!("local \"{}\" is not an IPv4 address:port", self.local))
    }
}

fn output_quantity(name: &str) -> Option<Quantity> {
    OUTPUTS
        .contains(&name)
        .then(|| Quantity::of_feature(name))
        .flatten()
}

impl ComponentConfig for BacnetWriterConfig {
    fn validate(&self, problems: &mut Vec<String>) {
        if let Err(e) = self.local_addr() {
            problems.push(e);
        }
        if !(1..=16).contains(&self.priority) || self.priority == 6 {
            problems.push(format!(
                "priority must be 1..16 and not 6 (reserved for minimum on/off), got {}",
                self.priority
            ));
        }
        if self.timeout.is_zero() || self.stale_after.is_zero() || self.refresh_every.is_zero() {
            problems.push("timeout, stale_after and refresh_every must be above zero".into());
        }
        if !(self.deadband >= 0.0 && self.deadband.is_finite()) {
            problems.push("deadband must be a finite number ≥ 0".into());
        }
        if self.devices.is_empty() {
            problems.push("devices must list at least one device".into());
        }
        let mut units = HashMap::new();
        for d in &self.devices {
            let who = format!("device {} ({})", d.device_id, d.unit);
            if units.insert(d.unit.as_str(), d.device_id).is_some() {
                problems.push(format!("{who}: unit \"{}\" is listed twice", d.unit));
            }
            for (name, p) in d.points.iter().flatten() {
                let Some(q) = output_quantity(name) else {
                    problems.push(format!(
                        "{who}: point \"{name}\" is not an output ({})",
                        OUTPUTS.join(", ")
                    ));
                    continue;
                };
                if p.object.kind() == ObjectType::ANALOG_INPUT {
                    problems.push(format!(
                        "{who}: point {name}: {} is an input; write to an analogValue or analogOutput",
                        p.object
                    ));
                }
                if let Some(u) = p.units.filter(|u| bacnet::conversion(q, *u).is_none()) {
                    problems.push(format!(
                        "{who}: point {name}: units {u} are not a {q} unit twinflow converts"
                    ));
                }
                if p.deadband.is_some_and(|d| !(d >= 0.0 && d.is_finite())) {
                    problems.push(format!("{who}: point {name}: deadband must be ≥ 0"));
                }
            }
        }
    }

    fn build(&self, ctx: &BuildContext) -> Result<Component, ComponentError> {
        let local = self
            .local_addr()
            .map_err(|e| ComponentError::new("config", e))?;
        let mut targets = Vec::new();
        for d in &self.devices {
            let map = d.points.clone().unwrap_or_else(|| {
                bacnet::PREDICTION_POINTS
                    .iter()
                    .map(|(o, i)| {
                        (
                            o.to_string(),
                            WritePointConfig {
                                object: ObjectRef::new(ObjectType::ANALOG_VALUE, *i),
                                units: None,
                                deadband: None,
                            },
                        )
                    })
                    .collect()
            });
            let mut points = Vec::new();
            for (name, p) in map {
                let Some(q) = output_quantity(&name) else {
                    return Err(ComponentError::new(
                        "config",
                        format!("\"{name}\" is not an output"),
                    ));
                };
                let to_device = to_device(q, p.units).ok_or_else(|| {
                    ComponentError::new("config", format!("units of {name} are not a {q} unit"))
                })?;
                points.push(WritePoint {
                    output: OUTPUTS.iter().position(|o| *o == name).expect("an output"),
                    object: p.object,
                    to_device,
                    deadband: p.deadband.unwrap_or(self.deadband),
                });
            }
            targets.push(Target {
                unit: d.unit.clone(),
                device: Device {
                    id: d.device_id,
                    addr: d.address,
                },
                points,
            });
        }
        Ok(Component::Processor(Box::new(BacnetWriter {
            config: self.clone(),
            local,
            targets,
            by_unit: HashMap::new(),
            workers: Vec::new(),
            client: None,
            stop: CancellationToken::new(),
            id: ctx.id.clone(),
            metrics: ctx.metrics.clone(),
            discarded: ctx.component_metrics.discarded.clone(),
            errors: ctx.component_metrics.errors.clone(),
        })))
    }
}

/// Canonical unit → the object's units: the inverse of the object's
/// conversion to canonical.
fn to_device(q: Quantity, units: Option<Units>) -> Option<Conversion> {
    let Some(u) = units else {
        return Some(Conversion::IDENTITY);
    };
    let c = bacnet::conversion(q, u)?;
    Some(Conversion {
        scale: 1.0 / c.scale,
        offset: -c.offset / c.scale,
    })
}

#[derive(Debug, Clone)]
struct WritePoint {
    /// Index into [`OUTPUTS`].
    output: usize,
    object: ObjectRef,
    to_device: Conversion,
    deadband: f64,
}

#[derive(Debug, Clone)]
struct Target {
    unit: String,
    device: Device,
    points: Vec<WritePoint>,
}

/// The latest prediction for a device, shared with its task.
#[derive(Default)]
struct Desired {
    values: Option<[f64; 4]>,
    /// When the last prediction arrived.
    at: Option<Instant>,
}

struct Shared {
    desired: Mutex<Desired>,
    wake: Notify,
}

/// The running `bacnet_writer` sink.
pub struct BacnetWriter {
    config: BacnetWriterConfig,
    local: SocketAddrV4,
    targets: Vec<Target>,
    by_unit: HashMap<Arc<str>, Arc<Shared>>,
    workers: Vec<tokio::task::JoinHandle<()>>,
    client: Option<Arc<Client>>,
    stop: CancellationToken,
    id: Arc<str>,
    metrics: Arc<Metrics>,
    discarded: prometheus::IntCounter,
    errors: prometheus::IntCounter,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl BacnetWriter {
    /// Binds the client and starts one task per device (on first use: the
    /// tasks must run on the runtime the node runs on).
    async fn start(&mut self) -> Result<(), ComponentError> {
        let client = Client::bind(self.local, self.config.timeout, self.config.retries)
            .await
            .map_err(|e| ComponentError::new("bind", e.to_string()))?;
        let client = Arc::new(client);
        for t in &self.targets {
            let shared = Arc::new(Shared {
                desired: Mutex::new(Desired::default()),
                wake: Notify::new(),
            });
            self.by_unit
                .insert(Arc::from(t.unit.as_str()), shared.clone());
            let w = Worker::new(
                t.clone(),
                shared,
                client.clone(),
                &self.config,
                &self.id,
                &self.metrics,
            );
            self.workers.push(tokio::spawn(w.run(self.stop.clone())));
        }
        self.client = Some(client);
        Ok(())
    }
}

#[async_trait]
impl Processor for BacnetWriter {
    async fn process(
        &mut self,
        msg: &Arc<Message>,
        _out: &mut Emitter,
    ) -> Result<(), ComponentError> {
        let Message::Prediction(p) = &**msg else {
            return Ok(());
        };
        if self.client.is_none() {
            self.start().await?;
        }
        let Some(shared) = self.by_unit.get(&p.unit) else {
            // A unit this writer has no device for.
            self.discarded.inc();
            return Ok(());
        };
        let values = outputs(p);
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            self.errors.inc();
            return Err(ComponentError::new(
                "non_finite_output",
                format!(
                    "unit {}: {} is {}; not written",
                    p.unit, OUTPUTS[i], values[i]
                ),
            ));
        }
        {
            let mut d = lock(&shared.desired);
            d.values = Some(values);
            d.at = Some(Instant::now());
        }
        shared.wake.notify_one();
        Ok(())
    }

    /// Stops the device tasks, then relinquishes what they wrote.
    async fn flush(&mut self, _out: &mut Emitter) -> Result<(), ComponentError> {
        self.stop.cancel();
        // Each task finishes its write in flight, then relinquishes (one
        // failed request ends that); past this bound it is aborted, so a
        // dead controller never holds up shutdown.
        let bound =
            self.config.timeout * (u32::from(self.config.retries) + 1) * 3 + Duration::from_secs(1);
        for mut w in self.workers.drain(..) {
            if tokio::time::timeout(bound, &mut w).await.is_err() {
                tracing::warn!(component = %self.id, "a BACnet write task did not finish; aborted");
                w.abort();
            }
        }
        if let Some(c) = self.client.take() {
            if let Ok(mut c) = Arc::try_unwrap(c) {
                let _ = tokio::time::timeout(Duration::from_secs(2), c.stop()).await;
            }
        }
        Ok(())
    }
}

impl Drop for BacnetWriter {
    fn drop(&mut self) {
        // A rebuilt or dropped writer must not leave its tasks writing.
        self.stop.cancel();
    }
}

/// When a prediction that arrived at `at` turns stale.
fn stale_at(at: Option<Instant>, after: Duration) -> Option<Instant> {
    at.map(|t| t + after)
}

/// Whether a written value still stands for `v`: closer than the deadband
/// (a deadband of 0 skips only an identical value).
fn within(written: f64, v: f64, deadband: f64) -> bool {
    (written - v).abs() < deadband.max(f64::MIN_POSITIVE)
}

fn outputs(p: &Prediction) -> [f64; 4] {
    [p.ucaot, p.ucwot, p.ucaf, p.q_thermal]
}

/// Writes one device's points.
struct Worker {
    target: Target,
    shared: Arc<Shared>,
    client: Arc<Client>,
    priority: u8,
    stale_after: Duration,
    relinquish_on_shutdown: bool,
    verify: bool,
    backoff_max: Duration,
    /// What each point holds at our priority: `Some(v)` written, `None`
    /// relinquished or never written.
    written: Vec<Option<f64>>,
    /// Whether this writer has ever written the point (and so owns a slot
    /// to relinquish).
    owned: Vec<bool>,
    failures: u32,
    /// When failed writes are tried again.
    retry_at: Option<Instant>,
    /// When every point last held the latest prediction.
    last_full: Option<Instant>,
    refresh_every: Duration,
    component: Arc<str>,
    latency: prometheus::Histogram,
    outcome: HashMap<&'static str, prometheus::IntCounter>,
    timeouts: prometheus::IntCounter,
    request_errors: prometheus::IntCounter,
}

const OUTCOMES: [&str; 5] = [
    "written",
    "skipped_deadband",
    "relinquished",
    "failed",
    "verify_failed",
];

impl Worker {
    fn new(
        target: Target,
        shared: Arc<Shared>,
        client: Arc<Client>,
        c: &BacnetWriterConfig,
        component: &Arc<str>,
        metrics: &Metrics,
    ) -> Worker {
        let dev = target.device.id.to_string();
        let id = component.as_ref();
        let n = target.points.len();
        Worker {
            latency: metrics
                .bacnet_request_duration
                .with_label_values(&[id, &dev, "write"]),
            outcome: OUTCOMES
                .iter()
                .map(|o| (*o, metrics.bacnet_writes.with_label_values(&[id, &dev, o])))
                .collect(),
            timeouts: metrics
                .bacnet_request_failures
                .with_label_values(&[id, &dev, "timeout"]),
            request_errors: metrics
                .bacnet_request_failures
                .with_label_values(&[id, &dev, "error"]),
            target,
            shared,
            client,
            priority: c.priority,
            stale_after: c.stale_after,
            relinquish_on_shutdown: c.relinquish_on_shutdown,
            verify: c.verify,
            backoff_max: c.backoff_max,
            written: vec![None; n],
            owned: vec![false; n],
            failures: 0,
            retry_at: None,
            last_full: None,
            refresh_every: c.refresh_every,
            component: component.clone(),
        }
    }

    fn count(&self, outcome: &str) {
        if let Some(c) = self.outcome.get(outcome) {
            c.inc();
        }
    }

    async fn run(mut self, stop: CancellationToken) {
        let mut seen_at = None;
        // Checked on every turn, not only while waiting: a write pass cut
        // short by the stop leaves the values pending.
        while !stop.is_cancelled() {
            // Wake on a new prediction, when a retry is due, when the
            // points are due to be refreshed, or when the latest prediction
            // turns stale.
            let (values, at) = {
                let d = lock(&self.shared.desired);
                (d.values, d.at)
            };
            // A controller that restarted has lost its priority array:
            // what was written is written again every `refresh_every`,
            // deadband or not.
            let refresh_at = self.last_full.map(|t| t + self.refresh_every);
            if values.is_some() && refresh_at.is_some_and(|t| Instant::now() >= t) {
                self.written.fill(None);
                self.last_full = None;
            }
            let pending = values.is_some() && !self.is_current(values);
            if at != seen_at {
                seen_at = at;
                if values.is_some() && !pending {
                    // A new prediction within every point's deadband.
                    for _ in 0..self.target.points.len() {
                        self.count("skipped_deadband");
                    }
                }
            }
            if pending && self.failures == 0 {
                self.write_all(values.expect("pending"), &stop).await;
                continue;
            }
            let wake_at = [
                self.retry_at.filter(|_| pending),
                stale_at(at, self.stale_after).filter(|_| self.holds_any()),
                refresh_at.filter(|_| values.is_some()),
            ]
            .into_iter()
            .flatten()
            .min();
            let sleep = async {
                match wake_at {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                _ = self.shared.wake.notified() => {}
                _ = sleep => {
                    let stale = stale_at(at, self.stale_after).is_some_and(|t| Instant::now() >= t);
                    if stale && self.holds_any() {
                        tracing::warn!(component = %self.component, unit = %self.target.unit,
                            "no prediction for {:?}; relinquishing", self.stale_after);
                        self.relinquish_all().await;
                        // Until a new prediction comes, nothing is pending.
                        let mut d = lock(&self.shared.desired);
                        if d.at == at {
                            d.values = None;
                        }
                    } else if let (Some(v), true) = (values, pending) {
                        // A retry that is due.
                        self.write_all(v, &stop).await;
                    }
                    // A refresh that is due: the next turn forgets what was
                    // written and writes it again.
                }
            }
        }
        if self.relinquish_on_shutdown {
            self.relinquish_all().await;
        }
    }

    /// True when every point holds (within its deadband) what `values` asks.
    fn is_current(&self, values: Option<[f64; 4]>) -> bool {
        let Some(v) = values else { return true };
        self.target
            .points
            .iter()
            .zip(&self.written)
            .all(|(p, w)| w.is_some_and(|w| within(w, v[p.output], p.deadband)))
    }

    fn holds_any(&self) -> bool {
        self.written.iter().any(Option::is_some)
    }

    async fn write_all(&mut self, values: [f64; 4], stop: &CancellationToken) {
        let dev = self.target.device;
        let mut failed = false;
        for i in 0..self.target.points.len() {
            if stop.is_cancelled() {
                return;
            }
            let p = self.target.points[i].clone();
            let v = values[p.output];
            if self.written[i].is_some_and(|w| within(w, v, p.deadband)) {
                self.count("skipped_deadband");
                continue;
            }
            let device_value = p.to_device.apply(v) as f32;
            let t = std::time::Instant::now();
            let r = self
                .client
                .write_present_value(&dev, p.object, Some(device_value), self.priority)
                .await;
            self.latency.observe(t.elapsed().as_secs_f64());
            match r {
                Ok(()) => {
                    self.written[i] = Some(v);
                    self.owned[i] = true;
                    self.count("written");
                    if self.verify && !self.verify_slot(&p, device_value).await {
                        self.written[i] = None;
                        failed = true;
                    }
                }
                Err(e) => {
                    self.count("failed");
                    match e {
                        bacnet::BacnetError::Timeout { .. } => self.timeouts.inc(),
                        _ => self.request_errors.inc(),
                    }
                    if self.failures == 0 {
                        tracing::warn!(component = %self.component, unit = %self.target.unit,
                            "write failed; retrying with backoff: {e}");
                    }
                    failed = true;
                    // A device that does not answer will not answer the
                    // next point either.
                    if matches!(e, bacnet::BacnetError::Timeout { .. }) {
                        break;
                    }
                }
            }
        }
        if failed {
            // Whatever the device holds now is unknown (it may have
            // restarted): everything is written again once it answers.
            self.written.fill(None);
            self.failures = self.failures.saturating_add(1);
            let backoff = Duration::from_secs(1)
                .saturating_mul(2u32.saturating_pow((self.failures - 1).min(16)))
                .min(self.backoff_max);
            self.retry_at = Some(Instant::now() + backoff);
        } else {
            self.retry_at = None;
            self.last_full = Some(Instant::now());
            if self.failures > 0 {
                tracing::info!(component = %self.component, unit = %self.target.unit,
                    "writes succeed again");
            }
            self.failures = 0;
        }
    }

    /// Reads the priority slot back; false (and counted) on a mismatch.
    async fn verify_slot(&self, p: &WritePoint, v: f32) -> bool {
        let dev = self.target.device;
        match self.client.read_priority_array(&dev, p.object).await {
            Ok(slots) => {
                let got = slots.get(usize::from(self.priority) - 1).copied().flatten();
                if got.is_some_and(|g| (g as f32 - v).abs() <= f32::EPSILON * v.abs().max(1.0)) {
                    true
                } else {
                    self.count("verify_failed");
                    tracing::warn!(component = %self.component, %dev, object = %p.object,
                        priority = self.priority, wrote = v, read_back = ?got,
                        "read-back does not match the write");
                    false
                }
            }
            Err(e) => {
                self.count("verify_failed");
                tracing::warn!(component = %self.component, %dev, "read-back failed: {e}");
                false
            }
        }
    }

    /// Writes Null at our priority to every point this writer wrote. A
    /// device that does not take the first is not asked again this time:
    /// its slots stay until the next attempt (stale) or its own restart.
    async fn relinquish_all(&mut self) {
        let dev = self.target.device;
        for i in 0..self.target.points.len() {
            if !self.owned[i] {
                continue;
            }
            let object = self.target.points[i].object;
            match self
                .client
                .write_present_value(&dev, object, None, self.priority)
                .await
            {
                Ok(()) => {
                    self.count("relinquished");
                    self.written[i] = None;
                    self.owned[i] = false;
                }
                Err(e) => {
                    self.count("failed");
                    tracing::warn!(component = %self.component, unit = %self.target.unit,
                        "could not relinquish priority {} on {dev}: {e}", self.priority);
                    // What the device holds is unknown now: not asked again
                    // until a new prediction is written (or at shutdown).
                    self.written.fill(None);
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(s: &str) -> BacnetWriterConfig {
        crate::testkit::config_from_yaml(s)
    }

    fn problems(c: &BacnetWriterConfig) -> Vec<String> {
        crate::testkit::config_problems(c)
    }

    #[test]
    fn defaults_are_priority_16_and_the_designs_objects() {
        let c = yaml("devices: [{unit: uc-01, address: 127.0.0.1:47808, device_id: 1234}]");
        assert!(problems(&c).is_empty());
        assert_eq!(c.priority, 16);
        assert!(c.relinquish_on_shutdown);
        assert_eq!(c.deadband, 0.05);
    }

    #[test]
    fn validation_refuses_what_would_write_the_wrong_thing() {
        let c = yaml(
            r#"
priority: 6
devices:
  - unit: uc-01
    address: 127.0.0.1
    device_id: 1
    points:
      UCAOT: {object: "analogInput:0"}
      UCWIT: {object: "analogValue:9"}
      UCAF: {object: "analogValue:2", units: degreesCelsius}
  - unit: uc-01
    address: 127.0.0.1
    device_id: 2
"#,
        );
        let p = problems(&c).join("\n");
        for needle in [
            "priority must be 1..16 and not 6",
            "analogInput:0 is an input",
            "\"UCWIT\" is not an output",
            "units degreesCelsius are not a air flow unit",
            "listed twice",
        ] {
            assert!(p.contains(needle), "missing {needle:?} in:\n{p}");
        }
    }

    #[test]
    fn values_are_converted_to_the_objects_units() {
        let u = |s: &str| Some(s.parse::<Units>().unwrap());
        let f = to_device(Quantity::Temperature, u("degreesFahrenheit")).unwrap();
        assert!((f.apply(20.0) - 68.0).abs() < 1e-9);
        let cfm = to_device(Quantity::AirFlow, u("cubicFeetPerMinute")).unwrap();
        assert!((cfm.apply(1699.0108) - 1000.0).abs() < 1e-6);
        let w = to_device(Quantity::Power, u("watts")).unwrap();
        assert!((w.apply(2.5) - 2500.0).abs() < 1e-9);
        assert_eq!(to_device(Quantity::Power, None), Some(Conversion::IDENTITY));
        assert_eq!(to_device(Quantity::Power, u("degreesCelsius")), None);
    }
}
