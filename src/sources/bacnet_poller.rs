//! `bacnet_poller`: a unit cooler's sensors read from its BACnet/IP
//! controller into sensor frames.
//!
//! Per device: its address and device instance, the unit id its frames
//! carry, and a point map (feature → object, property, expected engineering
//! units, scale and offset; the default map is DESIGN.md's, analogInput
//! 0..5 for the inputs and 6..8 for the measured outputs). Each poll reads
//! every point's Present_Value, Status_Flags and Reliability in
//! ReadPropertyMultiple requests split to fit the device's max APDU, or with
//! ReadProperty when the device rejects RPM. Optionally the poller subscribes
//! to COV and sends a frame when a value changes, renewing the subscriptions
//! before their lifetime ends and falling back to polling when the device
//! refuses them.
//!
//! Quality is never hidden: a point in fault, out of service, unreadable or
//! in units that cannot be converted is listed in the frame's `quality`
//! (the predictor does not predict from such an input; a measured output so
//! marked is left out). Units the device reports are checked against the
//! configuration at every (re)connection and converted where they differ.
//!
//! Devices are independent: each has its own task, timeouts and retries.
//! One that stops answering raises DEVICE_OFFLINE (an engine event, so an
//! `engine_events` → `alerter` path announces it) after `offline_after`
//! failed polls, is retried with capped exponential backoff, and resolves
//! the alert when it answers again. The others keep flowing.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddrV4;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bacnet_types::enums::{ObjectType, PropertyIdentifier};
use bacnet_types::primitives::PropertyValue;
use chrono::Utc;
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::duration;
use crate::metrics::Metrics;
use crate::model::units::{Conversion, Quantity};
use crate::pipeline::component::{
    parse_config, BuildContext, Component, ComponentConfig, ComponentDescriptor, ComponentError,
    EngineEvents, Role, Source, SourceOutput,
};
use crate::pipeline::message::{
    Alert, AlertState, KindSet, Message, MessageKind, PointQuality, SensorFrame, Severity,
    INPUT_FEATURES, OUTPUT_FEATURES,
};
use crate::protocol::bacnet::{
    self, as_f64, Client, Device, DeviceAddress, DeviceLink, ObjectRef, PropRead, PropResult,
    RpmMode, StatusFlags, Units,
};

pub const DESCRIPTOR: ComponentDescriptor = ComponentDescriptor {
    type_name: "bacnet_poller",
    role: Role::Source,
    accepts: KindSet::EMPTY,
    emits: KindSet::of(&[MessageKind::Frame]),
    summary: "Reads unit coolers' sensors from BACnet/IP devices (RPM/RP, optional COV).",
    parse: parse_config::<BacnetPollerConfig>,
};

/// Event code raised when a device stops answering (and resolved when it
/// answers again).
pub const DEVICE_OFFLINE: &str = "DEVICE_OFFLINE";

fn default_local() -> String {
    "0.0.0.0:0".into()
}
fn default_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_timeout() -> Duration {
    Duration::from_secs(1)
}
fn default_retries() -> u8 {
    1
}
fn default_offline_after() -> u32 {
    3
}
fn default_backoff_max() -> Duration {
    Duration::from_secs(60)
}
fn default_cov_lifetime() -> Duration {
    Duration::from_secs(300)
}
fn default_scale() -> f64 {
    1.0
}
fn default_property() -> String {
    "presentValue".into()
}

/// Settings of a `bacnet_poller` node.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BacnetPollerConfig {
    /// Local BACnet/IP address to bind, `IP:port`. Default `0.0.0.0:0`: every
    /// interface, an ephemeral port (devices answer to the port a request
    /// came from). Use `:47808` where a device insists on the standard port.
    #[serde(default = "default_local")]
    pub local: String,
    /// Time between polls of each device; default 1 s.
    #[serde(
        default = "default_interval",
        deserialize_with = "duration::deserialize"
    )]
    pub interval: Duration,
    /// How long to wait for a device's answer to one request; default 1 s.
    #[serde(
        default = "default_timeout",
        deserialize_with = "duration::deserialize"
    )]
    pub timeout: Duration,
    /// Retries of an unanswered request before the poll counts as failed;
    /// default 1.
    #[serde(default = "default_retries")]
    pub retries: u8,
    /// Consecutive failed polls after which a device is offline
    /// (DEVICE_OFFLINE); default 3.
    #[serde(default = "default_offline_after")]
    pub offline_after: u32,
    /// Longest wait between attempts at an offline device (the wait doubles
    /// from `interval` up to this); default 60 s.
    #[serde(
        default = "default_backoff_max",
        deserialize_with = "duration::deserialize"
    )]
    pub backoff_max: Duration,
    /// Subscribe to COV instead of polling every interval (devices that
    /// refuse fall back to polling).
    #[serde(default)]
    pub cov: Option<CovConfig>,
    /// The devices, one unit cooler each.
    pub devices: Vec<DeviceConfig>,
}

/// COV subscriptions.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CovConfig {
    /// Subscription lifetime asked of the device; renewed when 80 % of it
    /// has passed. Default 300 s.
    #[serde(
        default = "default_cov_lifetime",
        deserialize_with = "duration::deserialize"
    )]
    pub lifetime: Duration,
    /// Read every point anyway when no notification came for this long,
    /// which also tells a silent device from a dead one. Default: 10 ×
    /// `interval`.
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub refresh: Option<Duration>,
}

/// One BACnet device, one unit cooler.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    /// Unit id the frames carry, e.g. `uc-01`.
    pub unit: String,
    /// The device's BACnet/IP address, `IP[:port]` (port 47808 by default).
    pub address: DeviceAddress,
    /// The device's instance number (its Device object).
    pub device_id: u32,
    /// `auto` (ReadPropertyMultiple, falling back to ReadProperty when the
    /// device rejects it), `always` or `never`.
    #[serde(default)]
    pub read_property_multiple: RpmMode,
    /// The device's max APDU in octets; default: read from the device.
    #[serde(default)]
    pub max_apdu: Option<u16>,
    /// Feature → point. Default: DESCRIPTOR.md's map (inputs analogInput
    /// 0..5, measured UCAOT/UCWOT/UCAF analogInput 6..8, canonical units).
    /// When given, it must name the six inputs; measured outputs are optional.
    #[serde(default)]
    pub points: Option<BTreeMap<String, PointConfig>>,
}

/// Where a feature is read, and in what units.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointConfig {
    /// The object, `type:instance` (`analogInput:0`).
    pub object: ObjectRef,
    /// The property read; default `presentValue`.
    #[serde(default = "default_property")]
    pub property: String,
    /// The engineering units the value is in (BACnet name, e.g.
    /// `degreesFahrenheit`); default the feature's canonical unit. The
    /// device's Units property is checked against it.
    #[serde(default)]
    pub units: Option<Units>,
    /// Multiplier applied to the raw value before unit conversion; default 1.
    #[serde(default = "default_scale")]
    pub scale: f64,
    /// Added after `scale`, before unit conversion; default 0.
    #[serde(default)]
    pub offset: f64,
}

impl BacnetPollerConfig {
    fn local_addr(&self) -> Result<SocketAddrV4, String> {
        self.local
            .parse()
            .map_err(|_| format!("local \"{}\" is not an IPv4 address:port", self.local))
    }
}

fn property(name: &str) -> Result<PropertyIdentifier, String> {
    name.parse()
        .map_err(|_| format!("\"{name}\" is not a BACnet property name (e.g. presentValue)"))
}

/// The default point map of a device.
fn default_points() -> BTreeMap<String, PointConfig> {
    let ai = |i| ObjectRef::new(ObjectType::ANALOG_INPUT, i);
    bacnet::INPUT_POINTS
        .iter()
        .chain(bacnet::MEASURED_POINTS.iter())
        .map(|(f, i)| {
            (
                f.to_string(),
                PointConfig {
                    object: ai(*i),
                    property: default_property(),
                    units: None,
                    scale: 1.0,
                    offset: 0.0,
                },
            )
        })
        .collect()
}

impl ComponentConfig for BacnetPollerConfig {
    fn validate(&self, problems: &mut Vec<String>) {
        if let Err(e) = self.local_addr() {
            problems.push(e);
        }
        if self.interval.is_zero() || self.timeout.is_zero() {
            problems.push("interval and timeout must be above zero".into());
        }
        if self.offline_after == 0 {
            problems.push("offline_after must be at least 1".into());
        }
        if self.devices.is_empty() {
            problems.push("devices must list at least one device".into());
        }
        let mut units_seen = HashMap::new();
        let mut ids_seen = HashMap::new();
        for d in &self.devices {
            let who = format!("device {} ({})", d.device_id, d.unit);
            if let Some(other) = units_seen.insert(d.unit.as_str(), d.device_id) {
                problems.push(format!(
                    "{who}: unit \"{}\" is already read from device {other}",
                    d.unit
                ));
            }
            if ids_seen.insert((d.address, d.device_id), ()).is_some() {
                problems.push(format!("{who}: listed twice"));
            }
            if d.device_id >= 4_194_303 {
                problems.push(format!("{who}: device_id must be below 4194303"));
            }
            if let Some(m) = d.max_apdu {
                if !(50..=1476).contains(&m) {
                    problems.push(format!("{who}: max_apdu must be 50..1476"));
                }
            }
            if let Some(points) = &d.points {
                for f in INPUT_FEATURES {
                    if !points.contains_key(f) {
                        problems.push(format!("{who}: points must include the input {f}"));
                    }
                }
                for (name, p) in points {
                    let Some(q) = Quantity::of_feature(name).filter(|_| {
                        INPUT_FEATURES.contains(&name.as_str())
                            || OUTPUT_FEATURES.contains(&name.as_str())
                    }) else {
                        problems.push(format!(
                            "{who}: point \"{name}\" is not a sensor feature ({} or {})",
                            INPUT_FEATURES.join(", "),
                            OUTPUT_FEATURES.join(", ")
                        ));
                        continue;
                    };
                    if let Err(e) = property(&p.property) {
                        problems.push(format!("{who}: point {name}: {e}"));
                    }
                    if let Some(u) = p.units {
                        if bacnet::conversion(q, u).is_none() {
                            problems.push(format!(
                                "{who}: point {name}: units {u} are not a {} unit twinflow converts ({})",
                                q,
                                q.accepted().join(", ")
                            ));
                        }
                    }
                    if !p.scale.is_finite() || p.scale == 0.0 || !p.offset.is_finite() {
                        problems.push(format!(
                            "{who}: point {name}: scale must be finite and non-zero, offset finite"
                        ));
                    }
                }
            }
        }
    }

    fn build(&self, ctx: &BuildContext) -> Result<Component, ComponentError> {
        let local = self
            .local_addr()
            .map_err(|e| ComponentError::new("config", e))?;
        let devices = self
            .devices
            .iter()
            .map(|d| DevicePlan::new(d).map_err(|e| ComponentError::new("config", e)))
            .collect::<Result<Vec<_>, _>>()?;
        for d in &devices {
            ctx.metrics
                .bacnet_device_online
                .with_label_values(&[ctx.id.as_ref(), &d.device.id.to_string(), &d.unit])
                .set(0);
        }
        Ok(Component::Source(Box::new(BacnetPoller {
            config: self.clone(),
            local,
            devices,
            id: ctx.id.clone(),
            metrics: ctx.metrics.clone(),
            events: ctx.events.clone(),
            received: ctx.component_metrics.received.clone(),
            errors: ctx.component_metrics.errors.clone(),
        })))
    }
}

/// One configured point, resolved.
#[derive(Debug, Clone)]
struct Point {
    feature: &'static str,
    quantity: Quantity,
    object: ObjectRef,
    property: PropertyIdentifier,
    /// The units the configuration expects.
    expected: Units,
    scale: f64,
    offset: f64,
}

/// A device as the poller runs it.
#[derive(Debug, Clone)]
struct DevicePlan {
    unit: String,
    device: Device,
    rpm: RpmMode,
    max_apdu: Option<u16>,
    points: Vec<Point>,
}

impl DevicePlan {
    fn new(d: &DeviceConfig) -> Result<DevicePlan, String> {
        let map = d.points.clone().unwrap_or_else(default_points);
        let mut points = Vec::new();
        for (name, p) in &map {
            let feature = INPUT_FEATURES
                .iter()
                .chain(OUTPUT_FEATURES.iter())
                .find(|f| **f == name)
                .copied()
                .ok_or_else(|| format!("point \"{name}\" is not a sensor feature"))?;
            let quantity = Quantity::of_feature(feature).expect("a sensor feature");
            points.push(Point {
                feature,
                quantity,
                object: p.object,
                property: property(&p.property)?,
                expected: p.units.unwrap_or(Units(bacnet::canonical_units(quantity))),
                scale: p.scale,
                offset: p.offset,
            });
        }
        Ok(DevicePlan {
            unit: d.unit.clone(),
            device: Device {
                id: d.device_id,
                addr: d.address,
            },
            rpm: d.read_property_multiple,
            max_apdu: d.max_apdu,
            points,
        })
    }
}

/// The running `bacnet_poller` source.
pub struct BacnetPoller {
    config: BacnetPollerConfig,
    local: SocketAddrV4,
    devices: Vec<DevicePlan>,
    id: Arc<str>,
    metrics: Arc<Metrics>,
    events: EngineEvents,
    received: prometheus::IntCounter,
    errors: prometheus::IntCounter,
}

#[async_trait]
impl Source for BacnetPoller {
    async fn run(
        &mut self,
        out: &mut SourceOutput<'_>,
        stop: &CancellationToken,
    ) -> Result<(), ComponentError> {
        let client = Client::bind(self.local, self.config.timeout, self.config.retries)
            .await
            .map_err(|e| ComponentError::new("bind", e.to_string()))?;
        let client = Arc::new(client);
        tracing::info!(component = %self.id, local = ?client.local_addr().map(|a| a.to_string()),
            devices = self.devices.len(), "polling BACnet devices");
        // Each device runs on its own task, so one that times out never
        // delays the others; frames meet here, in one bounded queue.
        let (tx, mut rx) = mpsc::channel::<SensorFrame>(self.devices.len().max(1) * 4);
        let tasks_stop = stop.child_token();
        let mut tasks = tokio::task::JoinSet::new();
        for (k, plan) in self.devices.iter().enumerate() {
            let w = DeviceWorker::new(
                plan.clone(),
                k as u32,
                &self.config,
                client.clone(),
                &self.id,
                &self.metrics,
                self.events.clone(),
                self.errors.clone(),
            );
            tasks.spawn(w.run(tx.clone(), tasks_stop.clone()));
        }
        drop(tx);
        let result = loop {
            let f = tokio::select! {
                biased;
                _ = stop.cancelled() => break Ok(()),
                f = rx.recv() => f,
            };
            let Some(f) = f else { break Ok(()) };
            self.received.inc();
            tokio::select! {
                biased;
                _ = stop.cancelled() => break Ok(()),
                _ = out.send(Message::Frame(f), None) => {}
            }
            if out.is_closed() {
                tracing::info!(component = %self.id, "every downstream node has stopped; ending");
                break Ok(());
            }
        };
        tasks_stop.cancel();
        // A device task in the middle of a request ends when it times out;
        // past that bound it is aborted, so shutdown never waits on a
        // device.
        let drained = tokio::time::timeout(
            self.config.timeout * (u32::from(self.config.retries) + 2),
            async { while tasks.join_next().await.is_some() {} },
        )
        .await;
        if drained.is_err() {
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
        }
        if let Ok(mut c) = Arc::try_unwrap(client) {
            let _ = tokio::time::timeout(Duration::from_secs(2), c.stop()).await;
        }
        result
    }
}

/// A point's conversion, as learned at (re)connection.
#[derive(Debug, Clone, Copy)]
enum Calibration {
    Convert(Conversion),
    /// The device reports units that cannot be converted to the feature's.
    Mismatch,
}

/// What one poll read of one point.
#[derive(Debug, Clone, Default)]
struct Reading {
    value: Option<f64>,
    /// Why the value is not to be trusted, if it is not.
    problem: Option<(&'static str, String)>,
}

struct DeviceWorker {
    plan: DevicePlan,
    link: DeviceLink,
    client: Arc<Client>,
    interval: Duration,
    backoff_max: Duration,
    offline_after: u32,
    cov: Option<CovConfig>,
    /// COV subscriber process id: unique per device within this poller.
    process_id: u32,
    calibration: Vec<Calibration>,
    /// Set after a (re)connection: units and max APDU are (re)learned.
    needs_setup: bool,
    failures: u32,
    offline: bool,
    component: Arc<str>,
    events: EngineEvents,
    online: prometheus::IntGauge,
    latency_rpm: prometheus::Histogram,
    latency_rp: prometheus::Histogram,
    timeouts: prometheus::IntCounter,
    request_errors: prometheus::IntCounter,
    faults: [prometheus::IntCounter; 4],
    errors: prometheus::IntCounter,
}

const FAULT_REASONS: [&str; 4] = ["fault", "out_of_service", "unreadable", "units"];

impl DeviceWorker {
    #[allow(clippy::too_many_arguments)]
    fn new(
        plan: DevicePlan,
        k: u32,
        config: &BacnetPollerConfig,
        client: Arc<Client>,
        component: &Arc<str>,
        metrics: &Metrics,
        events: EngineEvents,
        errors: prometheus::IntCounter,
    ) -> DeviceWorker {
        let dev = plan.device.id.to_string();
        let c = component.as_ref();
        let latency = |s: &str| {
            metrics
                .bacnet_request_duration
                .with_label_values(&[c, &dev, s])
        };
        let failed = |r: &str| {
            metrics
                .bacnet_request_failures
                .with_label_values(&[c, &dev, r])
        };
        let faults =
            FAULT_REASONS.map(|r| metrics.bacnet_point_faults.with_label_values(&[c, &dev, r]));
        DeviceWorker {
            link: DeviceLink::new(plan.device, plan.rpm, plan.max_apdu),
            online: metrics
                .bacnet_device_online
                .with_label_values(&[c, &dev, &plan.unit]),
            calibration: Vec::new(),
            plan,
            client,
            interval: config.interval,
            backoff_max: config.backoff_max.max(config.interval),
            offline_after: config.offline_after,
            cov: config.cov.clone(),
            process_id: k + 1,
            needs_setup: true,
            failures: 0,
            offline: false,
            component: component.clone(),
            events,
            latency_rpm: latency("rpm"),
            latency_rp: latency("rp"),
            timeouts: failed("timeout"),
            request_errors: failed("error"),
            faults,
            errors,
        }
    }

    /// Polls (or follows COV) until stopped.
    async fn run(mut self, tx: mpsc::Sender<SensorFrame>, stop: CancellationToken) {
        let mut cov_rx = self.cov.as_ref().map(|_| self.client.cov_notifications());
        let mut cov_state: Option<CovState> = None;
        let mut next = tokio::time::Instant::now();
        loop {
            // Sleep until the next poll, or handle COV notifications meanwhile.
            loop {
                let notified = async {
                    match (cov_rx.as_mut(), cov_state.is_some()) {
                        (Some(rx), true) => rx.recv().await.ok(),
                        _ => std::future::pending().await,
                    }
                };
                tokio::select! {
                    biased;
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep_until(next) => break,
                    n = notified => {
                        if let (Some(n), Some(st)) = (n, cov_state.as_mut()) {
                            if self.apply_cov(st, &n) {
                                st.dirty = true;
                            }
                        }
                    }
                }
            }
            let wait = match cov_state.as_mut() {
                // COV: a frame when something changed; a full read when the
                // device has been silent for `refresh` (a liveness check) or
                // the subscriptions are due for renewal.
                Some(st) if !st.due_for_read() && !st.due_for_renewal() => {
                    if st.dirty {
                        st.dirty = false;
                        let f = self.frame(&st.readings);
                        if tx.send(f).await.is_err() {
                            return;
                        }
                    }
                    self.interval
                }
                _ => match self.poll().await {
                    Ok(readings) => {
                        if let Some(cov) = self.cov.clone() {
                            if cov_state.as_ref().is_none_or(|s| s.due_for_renewal()) {
                                cov_state = self.subscribe(&cov).await;
                            }
                            if let Some(st) = cov_state.as_mut() {
                                st.last_read = Instant::now();
                                st.readings = readings.clone();
                                st.dirty = false;
                            }
                        }
                        let f = self.frame(&readings);
                        if tx.send(f).await.is_err() {
                            return;
                        }
                        self.interval
                    }
                    Err(wait) => {
                        // A device that went away has lost its subscriptions.
                        cov_state = None;
                        wait
                    }
                },
            };
            next = tokio::time::Instant::now() + wait;
        }
    }

    /// One full read. `Err` holds the wait before the next attempt.
    async fn poll(&mut self) -> Result<Vec<Reading>, Duration> {
        let r = async {
            if self.needs_setup {
                self.setup().await?;
            }
            self.read_points().await
        }
        .await;
        match r {
            Ok(readings) => {
                self.failures = 0;
                if self.offline {
                    self.offline = false;
                    self.announce(false, None);
                }
                self.online.set(1);
                Ok(readings)
            }
            Err(e) => {
                self.errors.inc();
                match e {
                    bacnet::BacnetError::Timeout { .. } => self.timeouts.inc(),
                    _ => self.request_errors.inc(),
                }
                self.failures += 1;
                self.needs_setup = true;
                if !self.offline && self.failures >= self.offline_after {
                    self.offline = true;
                    self.online.set(0);
                    self.announce(true, Some(&e));
                } else if !self.offline {
                    tracing::warn!(component = %self.component, unit = %self.plan.unit,
                        failures = self.failures, "poll failed: {e}");
                }
                // Capped exponential backoff once offline; the normal
                // interval before that.
                let k = self.failures.saturating_sub(self.offline_after);
                let wait = if self.offline {
                    self.interval
                        .saturating_mul(2u32.saturating_pow(k.min(16)))
                        .min(self.backoff_max)
                } else {
                    self.interval
                };
                Err(wait)
            }
        }
    }

    /// (Re)learns the device's max APDU and its points' units.
    async fn setup(&mut self) -> Result<(), bacnet::BacnetError> {
        self.link.max_apdu = self.plan.max_apdu;
        self.client.learn_max_apdu(&mut self.link).await?;
        let reads: Vec<PropRead> = self
            .plan
            .points
            .iter()
            .map(|p| PropRead::new(p.object, PropertyIdentifier::UNITS))
            .collect();
        let t = Instant::now();
        let results = self.client.read(&mut self.link, &reads).await?;
        self.observe(t);
        let dev = self.plan.device;
        self.calibration = self
            .plan
            .points
            .iter()
            .zip(results)
            .map(|(p, r)| {
                let reported = match r {
                    Ok(PropertyValue::Enumerated(u)) => Some(Units(
                        bacnet_types::enums::EngineeringUnits::from_raw(u),
                    )),
                    // A point without Units: trust the configuration.
                    _ => None,
                };
                let used = match reported {
                    Some(r) if r != p.expected => {
                        tracing::warn!(%dev, object = %p.object, feature = p.feature,
                            expected = %p.expected, reported = %r,
                            "device reports other units than configured; converting from the device's");
                        r
                    }
                    _ => p.expected,
                };
                match bacnet::conversion(p.quantity, used) {
                    Some(c) => Calibration::Convert(c),
                    None => {
                        tracing::error!(%dev, object = %p.object, feature = p.feature,
                            units = %used, "units are not a {} unit; the point is not used",
                            p.quantity);
                        Calibration::Mismatch
                    }
                }
            })
            .collect();
        self.needs_setup = false;
        tracing::info!(%dev, unit = %self.plan.unit, max_apdu = ?self.link.max_apdu,
            rpm = self.link.uses_rpm(), "device set up");
        Ok(())
    }

    fn observe(&self, t: Instant) {
        let h = if self.link.uses_rpm() {
            &self.latency_rpm
        } else {
            &self.latency_rp
        };
        h.observe(t.elapsed().as_secs_f64());
    }

    /// Present_Value, Status_Flags and Reliability of every point.
    async fn read_points(&mut self) -> Result<Vec<Reading>, bacnet::BacnetError> {
        let mut reads = Vec::with_capacity(self.plan.points.len() * 3);
        for p in &self.plan.points {
            reads.push(PropRead::new(p.object, p.property));
            reads.push(PropRead::new(p.object, PropertyIdentifier::STATUS_FLAGS));
            reads.push(PropRead::new(p.object, PropertyIdentifier::RELIABILITY));
        }
        let t = Instant::now();
        let results = self.client.read(&mut self.link, &reads).await?;
        self.observe(t);
        Ok(results
            .chunks(3)
            .enumerate()
            .map(|(i, r)| self.reading(i, &r[0], Some(&r[1]), Some(&r[2])))
            .collect())
    }

    /// Turns a point's raw properties into a reading in canonical units.
    fn reading(
        &self,
        i: usize,
        value: &PropResult,
        flags: Option<&PropResult>,
        reliability: Option<&PropResult>,
    ) -> Reading {
        let p = &self.plan.points[i];
        let flags = match flags {
            Some(Ok(PropertyValue::BitString { data, .. })) => StatusFlags::from_bits(data),
            _ => StatusFlags::default(),
        };
        let rel = match reliability {
            Some(Ok(PropertyValue::Enumerated(r))) => *r,
            _ => 0,
        };
        let raw = match value {
            Ok(v) => as_f64(v),
            Err(_) => None,
        };
        let problem = if flags.out_of_service {
            Some(("out_of_service", "out of service".to_string()))
        } else if flags.fault || rel != 0 {
            Some((
                "fault",
                format!("fault ({})", bacnet::reliability_name(rel)),
            ))
        } else if let Err(e) = value {
            Some(("unreadable", format!("unreadable ({e})")))
        } else if raw.is_none_or(|v| !v.is_finite()) {
            Some(("unreadable", "not a finite number".to_string()))
        } else if matches!(self.calibration.get(i), Some(Calibration::Mismatch)) {
            Some((
                "units",
                "units the device reports cannot be converted".to_string(),
            ))
        } else {
            None
        };
        let value = raw.map(|v| {
            let v = v * p.scale + p.offset;
            match self.calibration.get(i) {
                Some(Calibration::Convert(c)) => c.apply(v),
                _ => v,
            }
        });
        Reading { value, problem }
    }

    /// A sensor frame from one reading per point.
    fn frame(&self, readings: &[Reading]) -> SensorFrame {
        let mut quality = PointQuality::new();
        let mut get = |feature: &str| -> Option<f64> {
            let i = self.plan.points.iter().position(|p| p.feature == feature)?;
            let r = &readings[i];
            if let Some((reason, why)) = &r.problem {
                self.faults[FAULT_REASONS.iter().position(|x| x == reason).unwrap_or(2)].inc();
                quality.insert(feature.to_string(), why.clone());
            }
            r.value
        };
        let input = |v: Option<f64>| v.unwrap_or(f64::NAN);
        let x: Vec<f64> = INPUT_FEATURES.iter().map(|f| input(get(f))).collect();
        let mut measured: Vec<Option<f64>> = OUTPUT_FEATURES.iter().map(|f| get(f)).collect();
        for (m, f) in measured.iter_mut().zip(OUTPUT_FEATURES) {
            if quality.contains_key(f) {
                // A measured value the device does not vouch for is absent.
                *m = None;
            }
        }
        SensorFrame {
            unit: Arc::from(self.plan.unit.as_str()),
            ts: Utc::now(),
            ucwit: x[0],
            ucait: x[1],
            ucwf: x[2],
            ucaih: x[3],
            ambt: x[4],
            uctsp: x[5],
            ucaot: measured[0],
            ucwot: measured[1],
            ucaf: measured[2],
            quality: (!quality.is_empty()).then(|| Box::new(quality)),
        }
    }

    /// DEVICE_OFFLINE, firing or resolved.
    fn announce(&self, firing: bool, e: Option<&bacnet::BacnetError>) {
        let dev = self.plan.device;
        let message = if firing {
            format!(
                "unit {}: BACnet device {} at {} does not answer ({} polls failed): {}",
                self.plan.unit,
                dev.id,
                dev.addr,
                self.failures,
                e.map_or(String::new(), |e| e.to_string())
            )
        } else {
            format!(
                "unit {}: BACnet device {} at {} answers again",
                self.plan.unit, dev.id, dev.addr
            )
        };
        if firing {
            tracing::error!(component = %self.component, "{message}");
        } else {
            tracing::info!(component = %self.component, "{message}");
        }
        let mut a = Alert::event(
            DEVICE_OFFLINE,
            Severity::Error,
            Some(Arc::from(self.plan.unit.as_str())),
            message,
            Utc::now(),
        );
        if !firing {
            a.state = AlertState::Resolved;
        }
        a.key = Some(format!("{}:{}", self.component, dev.id));
        a.details = serde_json::json!({
            "component": self.component.as_ref(),
            "device_id": dev.id,
            "address": dev.addr.to_string(),
            "failed_polls": self.failures,
        });
        self.events.publish(a);
    }

    /// Subscribes every point's object; `None` (polling) if the device
    /// refuses.
    async fn subscribe(&mut self, cov: &CovConfig) -> Option<CovState> {
        let dev = self.plan.device;
        let mut objects: Vec<ObjectRef> = self.plan.points.iter().map(|p| p.object).collect();
        objects.dedup();
        for o in &objects {
            if let Err(e) = self
                .client
                .subscribe_cov(&dev, *o, self.process_id, cov.lifetime)
                .await
            {
                tracing::warn!(%dev, object = %o, "COV subscription refused; polling instead: {e}");
                return None;
            }
        }
        tracing::info!(%dev, objects = objects.len(), lifetime = ?cov.lifetime, "subscribed to COV");
        Some(CovState {
            subscribed: Instant::now(),
            renew_after: cov.lifetime.mul_f64(0.8),
            last_read: Instant::now(),
            refresh: cov.refresh.unwrap_or(self.interval * 10),
            readings: Vec::new(),
            dirty: false,
        })
    }

    /// Applies a COV notification from this device; true if it changed a
    /// reading.
    fn apply_cov(
        &self,
        st: &mut CovState,
        n: &bacnet_client::client::ReceivedCOVNotification,
    ) -> bool {
        let note = &n.notification;
        if note.subscriber_process_identifier != self.process_id
            || bacnet::DeviceAddress::from_mac(&n.source_mac) != Some(self.plan.device.addr)
        {
            return false;
        }
        let mut changed = false;
        for (i, p) in self.plan.points.iter().enumerate() {
            if p.object.0 != note.monitored_object_identifier || i >= st.readings.len() {
                continue;
            }
            let find = |prop: PropertyIdentifier| {
                note.list_of_values
                    .iter()
                    .find(|v| v.property_identifier == prop)
                    .map(|v| bacnet::decode_value(&v.value))
            };
            let Some(value) = find(p.property) else {
                continue;
            };
            let flags = find(PropertyIdentifier::STATUS_FLAGS);
            st.readings[i] = self.reading(i, &value, flags.as_ref(), None);
            changed = true;
        }
        if changed {
            st.last_read = Instant::now();
        }
        changed
    }
}

/// A device followed by COV.
struct CovState {
    subscribed: Instant,
    renew_after: Duration,
    /// Last full read or notification.
    last_read: Instant,
    refresh: Duration,
    readings: Vec<Reading>,
    dirty: bool,
}

impl CovState {
    fn due_for_read(&self) -> bool {
        self.last_read.elapsed() >= self.refresh
    }
    fn due_for_renewal(&self) -> bool {
        self.subscribed.elapsed() >= self.renew_after
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(s: &str) -> BacnetPollerConfig {
        crate::testkit::config_from_yaml(s)
    }

    fn problems(c: &BacnetPollerConfig) -> Vec<String> {
        crate::testkit::config_problems(c)
    }

    #[test]
    fn the_default_point_map_is_the_designs() {
        let c = yaml("devices: [{unit: uc-01, address: 127.0.0.1, device_id: 1234}]");
        assert!(problems(&c).is_empty(), "{:?}", problems(&c));
        let plan = DevicePlan::new(&c.devices[0]).unwrap();
        assert_eq!(plan.device.addr.0.port(), 47808);
        let by = |f: &str| plan.points.iter().find(|p| p.feature == f).unwrap().clone();
        assert_eq!(by("UCWIT").object.to_string(), "analogInput:0");
        assert_eq!(by("UCTSP").object.to_string(), "analogInput:5");
        assert_eq!(by("UCAF").object.to_string(), "analogInput:8");
        assert_eq!(by("UCWF").expected.to_string(), "litersPerMinute");
        assert_eq!(by("UCAIH").expected.to_string(), "percentRelativeHumidity");
        assert_eq!(plan.points.len(), 9);
    }

    #[test]
    fn validation_names_every_problem() {
        let c = yaml(
            r#"
interval: 0s
devices:
  - unit: uc-01
    address: 127.0.0.1:47809
    device_id: 5
    points:
      UCWIT: {object: "analogInput:0", units: kilowatts}
      UCAIT: {object: "analogInput:1", property: bogusProperty}
      BOGUS: {object: "analogInput:9"}
  - unit: uc-01
    address: 127.0.0.1:47809
    device_id: 5
"#,
        );
        let p = problems(&c).join("\n");
        for needle in [
            "interval and timeout",
            "must include the input UCWF",
            "units kilowatts are not a temperature unit",
            "bogusProperty",
            "\"BOGUS\" is not a sensor feature",
            "unit \"uc-01\" is already read",
            "listed twice",
        ] {
            assert!(p.contains(needle), "missing {needle:?} in:\n{p}");
        }
        assert!(serde_saphyr::from_str::<BacnetPollerConfig>(
            "devices: [{unit: u, address: 127.0.0.1, device_id: 1, colour: red}]"
        )
        .is_err());
        assert!(serde_saphyr::from_str::<BacnetPollerConfig>(
            "devices: [{unit: u, address: 'not-an-ip', device_id: 1}]"
        )
        .is_err());
    }
}
