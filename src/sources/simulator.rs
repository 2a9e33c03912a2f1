//! `simulator`: unit coolers driven by the physics model, so a pipeline runs
//! with no hardware.
//!
//! Each simulated unit follows a daily load pattern (a sine per input, peaking
//! at `load.peak_hour`, plus a small seeded per-unit offset), the plant
//! responds with [`physics::predict`] using its own — possibly fouled —
//! parameters, and the frame carries what the unit's sensors would read:
//! every reading with Gaussian noise, and with any configured sensor fault.
//!
//! The plant responds to the *true* inputs and the sensors report them with
//! noise, the way a real unit works. So a stuck or spiking input sensor shows
//! up downstream as a residual between prediction and measurement, exactly as
//! it would on site, rather than as a plant that obeys its broken sensor.
//!
//! Determinism: every random draw comes from ChaCha8 streams derived from
//! `seed` and the unit's position in the unit list, one stream per purpose
//! (per-unit offsets, sensor noise, fault draws). Enabling a scenario therefore
//! never changes the noise a unit would otherwise have had, and the same
//! config gives bit-identical frames. A restart rebuilds the source, which
//! starts the sequence over from the seed (and from `start`, or from the
//! rebuild time when `start` is not set): downstream sees simulated time begin
//! again, which is acceptable for a simulator.
//!
//! [`generate`] runs the same [`Plant`] without a runtime, in simulated time;
//! the CLI uses it to write CSV.

use std::collections::{BTreeMap, HashSet};
use std::f64::consts::TAU;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Timelike, Utc};
use prometheus::IntCounter;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::model::physics::{self, CoilInputs, PhysicsParams};
use crate::pipeline::component::{
    parse_config, BuildContext, Component, ComponentConfig, ComponentDescriptor, ComponentError,
    Envelope, Role, Source, SourceOutput,
};
use crate::pipeline::message::{
    KindSet, Message, MessageKind, SensorFrame, INPUT_FEATURES, OUTPUT_FEATURES,
};
use crate::protocol::bacnet::{DeviceAddress, DEFAULT_PORT};
use crate::protocol::bacnet_device::SimulatedDevice;

pub const DESCRIPTOR: ComponentDescriptor = ComponentDescriptor {
    type_name: "simulator",
    role: Role::Source,
    accepts: KindSet::EMPTY,
    emits: KindSet::of(&[MessageKind::Frame]),
    summary:
        "Simulated unit coolers (physics model, daily load, drift/fouling/sensor-fault scenarios).",
    parse: parse_config::<SimulatorConfig>,
};

/// Realtime pacing relies on tokio's timer, whose resolution is 1 ms.
const MAX_REALTIME_HZ: f64 = 1000.0;

/// Settings of a `simulator` node. Every key has a default: `type: simulator`
/// alone simulates one unit at 1 Hz in real time.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimulatorConfig {
    /// Number of simulated units, named `uc-01`, `uc-02`, ...; default 1. With
    /// `unit_ids` it may be omitted, and if given must match their count.
    pub units: Option<usize>,
    /// Explicit unit ids, in order; overrides the generated names.
    pub unit_ids: Option<Vec<String>>,
    /// Frames per second, per unit.
    pub rate_hz: f64,
    /// Seed of every random draw; the same seed and config give the same frames.
    pub seed: u64,
    /// `true`: paced by the wall clock, timestamps = `start` + elapsed time.
    /// `false`: as fast as downstream takes them, timestamps advancing by
    /// `1 / rate_hz` of simulated time per frame.
    pub realtime: bool,
    /// Start of simulated time (RFC 3339); default: now, truncated to the second.
    pub start: Option<DateTime<Utc>>,
    /// Frames per unit after which the source ends (and the pipeline drains);
    /// default: run until stopped.
    pub max_frames: Option<u64>,
    /// Sensor noise standard deviations; `false` turns noise off, `true` keeps
    /// the defaults.
    #[serde(deserialize_with = "noise_or_switch")]
    pub noise: NoiseConfig,
    /// Physics parameters of the simulated plant (clean coil); default the
    /// reference unit cooler.
    pub physics: PhysicsParams,
    /// Daily load pattern of the inputs.
    pub load: LoadConfig,
    /// What happens to the plant or its sensors over time; empty = steady.
    pub scenarios: Vec<Scenario>,
    /// Also serve each unit as a BACnet/IP device (its controller, as
    /// `twinflow simulate --bacnet` does): unit i is device `device_id + i`
    /// on port `port + i`. Needs `realtime: true`. Default: no device.
    pub bacnet: Option<SimulatorBacnet>,
    /// `false`: send no frames downstream, so the plant is seen only through
    /// its BACnet devices (needs `bacnet`; the node then needs no readers).
    pub emit_frames: bool,
}

/// `bacnet:` of a `simulator` node: where its devices listen.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimulatorBacnet {
    /// IPv4 address and UDP port of the first unit's device (the port
    /// defaults to 47808); unit i listens on port + i. Keep it on 127.0.0.1
    /// unless the plant network should see the simulated devices.
    pub listen: DeviceAddress,
    /// Device instance of the first unit; unit i is `device_id + i`.
    pub device_id: u32,
}

impl Default for SimulatorBacnet {
    fn default() -> Self {
        SimulatorBacnet {
            listen: DeviceAddress(SocketAddrV4::new(Ipv4Addr::LOCALHOST, DEFAULT_PORT)),
            device_id: 1234,
        }
    }
}

impl SimulatorBacnet {
    /// Address and device instance of unit `i`'s device (`None` past the
    /// port or instance range; validation reports that).
    pub fn for_unit(&self, i: usize) -> Option<(SocketAddrV4, u32)> {
        let i16 = u16::try_from(i).ok()?;
        let port = self.listen.0.port().checked_add(i16)?;
        let id = self.device_id.checked_add(u32::try_from(i).ok()?)?;
        (id <= MAX_DEVICE_INSTANCE).then(|| (SocketAddrV4::new(*self.listen.0.ip(), port), id))
    }
}

/// The largest device instance BACnet allows (4194303 is "unconfigured").
const MAX_DEVICE_INSTANCE: u32 = 4_194_302;

impl Default for SimulatorConfig {
    fn default() -> Self {
        SimulatorConfig {
            units: None,
            unit_ids: None,
            rate_hz: 1.0,
            seed: 42,
            realtime: true,
            start: None,
            max_frames: None,
            noise: NoiseConfig::default(),
            physics: PhysicsParams::default(),
            load: LoadConfig::default(),
            scenarios: Vec::new(),
            bacnet: None,
            emit_frames: true,
        }
    }
}

/// Standard deviations of the Gaussian sensor noise. The setpoint UCTSP is
/// a configured value, not a measurement, so it has none.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NoiseConfig {
    /// Every temperature sensor (UCWIT, UCAIT, AMBT, UCAOT, UCWOT), °C.
    pub temperature: f64,
    /// Air inlet relative humidity UCAIH, %RH.
    pub humidity: f64,
    /// Water flow UCWF, L/min.
    pub water_flow: f64,
    /// Air flow UCAF, m³/h.
    pub air_flow: f64,
}

impl Default for NoiseConfig {
    fn default() -> Self {
        NoiseConfig {
            temperature: 0.05,
            humidity: 0.5,
            water_flow: 0.1,
            air_flow: 15.0,
        }
    }
}

impl NoiseConfig {
    /// No noise at all.
    pub const OFF: NoiseConfig = NoiseConfig {
        temperature: 0.0,
        humidity: 0.0,
        water_flow: 0.0,
        air_flow: 0.0,
    };

    /// Standard deviation per feature, in [`FEATURES`] order.
    fn per_feature(&self) -> [f64; 9] {
        let t = self.temperature;
        [
            t,
            t,
            self.water_flow,
            self.humidity,
            t,
            0.0,
            t,
            t,
            self.air_flow,
        ]
    }
}

/// Accepts `noise: false` / `noise: true` besides the mapping, while a
/// mapping still gets `deny_unknown_fields` errors (an untagged enum would
/// hide them behind "did not match any variant").
fn noise_or_switch<'de, D: Deserializer<'de>>(d: D) -> Result<NoiseConfig, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = NoiseConfig;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a mapping of noise standard deviations, or true/false")
        }
        fn visit_bool<E: de::Error>(self, on: bool) -> Result<NoiseConfig, E> {
            Ok(if on {
                NoiseConfig::default()
            } else {
                NoiseConfig::OFF
            })
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<NoiseConfig, A::Error> {
            NoiseConfig::deserialize(de::value::MapAccessDeserializer::new(map))
        }
    }
    d.deserialize_any(V)
}

/// One input's daily course: `mean + amplitude · cos(2π (hour − peak_hour) / 24)`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Band {
    /// Daily mean, in the feature's canonical unit.
    pub mean: f64,
    /// Half the daily swing; negative puts the trough at `peak_hour`.
    #[serde(default)]
    pub amplitude: f64,
}

const fn band(mean: f64, amplitude: f64) -> Band {
    Band { mean, amplitude }
}

/// The daily load pattern every unit follows before scenarios and noise.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoadConfig {
    /// Hour of the day (UTC, 0–24) at which the load peaks.
    pub peak_hour: f64,
    /// Water inlet temperature, °C: the chiller loop warms a little under load.
    #[serde(rename = "UCWIT")]
    pub ucwit: Band,
    /// Air inlet (return air) temperature, °C.
    #[serde(rename = "UCAIT")]
    pub ucait: Band,
    /// Water flow, L/min: the valve opens with the load.
    #[serde(rename = "UCWF")]
    pub ucwf: Band,
    /// Air inlet relative humidity, %: lowest when the air is warmest.
    #[serde(rename = "UCAIH")]
    pub ucaih: Band,
    /// Outdoor (ambient) temperature, °C.
    #[serde(rename = "AMBT")]
    pub ambt: Band,
    /// Room setpoint, °C.
    #[serde(rename = "UCTSP")]
    pub uctsp: Band,
    /// Scale of the seeded per-unit offsets (about ±0.5 °C air, ±0.2 °C water,
    /// ±1 L/min, ±3 %RH, ±0.5 °C setpoint, ±30 min phase at 1.0); 0 makes
    /// every unit follow the same pattern.
    pub unit_spread: f64,
}

impl Default for LoadConfig {
    fn default() -> Self {
        LoadConfig {
            peak_hour: 15.0,
            ucwit: band(7.5, 0.5),
            ucait: band(24.0, 3.0),
            ucwf: band(15.0, 2.0),
            ucaih: band(50.0, -10.0),
            ambt: band(22.0, 6.0),
            uctsp: band(21.0, 0.0),
            unit_spread: 1.0,
        }
    }
}

impl LoadConfig {
    /// The bands in [`INPUT_FEATURES`] order.
    fn bands(&self) -> [Band; 6] {
        [
            self.ucwit, self.ucait, self.ucwf, self.ucaih, self.ambt, self.uctsp,
        ]
    }
}

/// A scenario: what changes in the plant or its sensors, and when. Times are
/// simulated seconds since `start`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Scenario {
    /// Nothing changes (the same as no scenario).
    Steady(SteadyScenario),
    /// The operating conditions shift gradually (data drift: the model stays right).
    InputDrift(InputDrift),
    /// The coil's conductance falls (the plant departs from the clean-coil model).
    Fouling(Fouling),
    /// One sensor misbehaves.
    SensorFault(SensorFault),
}

/// `kind: steady`: no keys.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SteadyScenario {}

/// `kind: input_drift`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputDrift {
    /// Simulated seconds after `start` when the shift begins.
    #[serde(default)]
    pub start_after_s: f64,
    /// Seconds over which the shift grows linearly to full size; 0 = a step.
    #[serde(default)]
    pub ramp_s: f64,
    /// Full shift of each input, in its canonical unit, e.g. `{UCAIT: 3.0}`.
    pub shift: BTreeMap<String, f64>,
    /// Ids of the units affected; default all.
    #[serde(default)]
    pub units: Option<Vec<String>>,
}

/// `kind: fouling`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fouling {
    /// Simulated seconds after `start` when the conductance begins to fall.
    #[serde(default)]
    pub start_after_s: f64,
    /// Seconds over which it falls linearly to `ua_factor`; 0 = a step.
    #[serde(default)]
    pub ramp_s: f64,
    /// Final plant UA as a fraction of the clean coil's, in (0, 1].
    pub ua_factor: f64,
    /// Ids of the units affected; default all.
    #[serde(default)]
    pub units: Option<Vec<String>>,
}

/// How a faulty sensor misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultMode {
    /// Keeps reporting the last value it reported before the fault.
    Stuck,
    /// Reports NaN.
    Nan,
    /// Now and then reports a value off by ±`magnitude`.
    Spike,
}

/// `kind: sensor_fault`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SensorFault {
    /// Simulated seconds after `start` when the fault begins.
    #[serde(default)]
    pub start_after_s: f64,
    /// How long it lasts, seconds; default until the end.
    #[serde(default)]
    pub duration_s: Option<f64>,
    /// The faulty sensor: an input (UCWIT UCAIT UCWF UCAIH AMBT UCTSP) or a
    /// measured output (UCAOT UCWOT UCAF).
    pub feature: String,
    /// `stuck`, `nan` or `spike`.
    pub mode: FaultMode,
    /// `spike` only: chance per frame of a spike, in [0, 1]; default 0.05.
    #[serde(default)]
    pub probability: Option<f64>,
    /// `spike` only (required there): size of a spike, in the feature's unit;
    /// the sign is random.
    #[serde(default)]
    pub magnitude: Option<f64>,
    /// Ids of the units affected; default all.
    #[serde(default)]
    pub units: Option<Vec<String>>,
}

const DEFAULT_SPIKE_PROBABILITY: f64 = 0.05;

/// Inputs, then measured outputs: the order of every per-feature array here.
const FEATURES: [&str; 9] = [
    INPUT_FEATURES[0],
    INPUT_FEATURES[1],
    INPUT_FEATURES[2],
    INPUT_FEATURES[3],
    INPUT_FEATURES[4],
    INPUT_FEATURES[5],
    OUTPUT_FEATURES[0],
    OUTPUT_FEATURES[1],
    OUTPUT_FEATURES[2],
];

fn feature_index(name: &str) -> Option<usize> {
    FEATURES.iter().position(|f| *f == name)
}

fn is_input(idx: usize) -> bool {
    idx < INPUT_FEATURES.len()
}

impl SimulatorConfig {
    /// The unit ids this config simulates, in order.
    pub fn unit_ids(&self) -> Vec<String> {
        match &self.unit_ids {
            Some(ids) => ids.clone(),
            None => (1..=self.units.unwrap_or(1))
                .map(|i| format!("uc-{i:02}"))
                .collect(),
        }
    }
}

fn check_time(problems: &mut Vec<String>, what: &str, key: &str, v: f64, zero_ok: bool) {
    if !v.is_finite() || v < 0.0 || (!zero_ok && v == 0.0) {
        let need = if zero_ok { ">= 0" } else { "> 0" };
        problems.push(format!(
            "{what}: {key} must be a finite number {need} seconds, got {v}"
        ));
    }
}

fn check_units_filter(
    problems: &mut Vec<String>,
    what: &str,
    filter: &Option<Vec<String>>,
    known: &HashSet<&str>,
) {
    let Some(list) = filter else { return };
    if list.is_empty() {
        problems.push(format!(
            "{what}: units is empty, so the scenario affects nothing (omit it for all units)"
        ));
    }
    for u in list {
        if !known.contains(u.as_str()) {
            let mut ids: Vec<&str> = known.iter().copied().collect();
            ids.sort_unstable();
            problems.push(format!(
                "{what}: unit \"{u}\" is not simulated (units: {})",
                ids.join(", ")
            ));
        }
    }
}

fn unknown_feature(what: &str, name: &str) -> String {
    format!(
        "{what}: unknown feature \"{name}\" (expected one of {})",
        FEATURES.join(", ")
    )
}

impl ComponentConfig for SimulatorConfig {
    fn validate(&self, problems: &mut Vec<String>) {
        if !self.rate_hz.is_finite() || self.rate_hz <= 0.0 {
            problems.push(format!(
                "rate_hz must be a finite number > 0 (frames per second per unit), got {}",
                self.rate_hz
            ));
        } else if self.realtime && self.rate_hz > MAX_REALTIME_HZ {
            problems.push(format!(
                "rate_hz {} is above {MAX_REALTIME_HZ} Hz, the finest pacing the timer allows \
                 in realtime mode (set realtime: false to generate as fast as possible)",
                self.rate_hz
            ));
        }
        if self.units == Some(0) {
            problems.push("units must be at least 1".into());
        }
        if let Some(ids) = &self.unit_ids {
            if ids.is_empty() {
                problems.push("unit_ids must list at least one unit".into());
            }
            if let Some(n) = self.units {
                if n != ids.len() && n != 0 {
                    problems.push(format!(
                        "units is {n} but unit_ids lists {} ids (give one or the other)",
                        ids.len()
                    ));
                }
            }
            let mut seen = HashSet::new();
            for id in ids {
                if id.trim().is_empty() {
                    problems.push("unit_ids has an empty id".into());
                } else if !seen.insert(id.as_str()) {
                    problems.push(format!("unit_ids lists \"{id}\" more than once"));
                }
            }
        }
        match &self.bacnet {
            None if !self.emit_frames => problems
                .push("emit_frames: false needs bacnet: the plant would be visible nowhere".into()),
            None => {}
            Some(b) => {
                if !self.realtime {
                    problems.push(
                        "bacnet serves live devices, so it needs realtime: true (simulated \
                         time running ahead of the clock would make no sense to a poller)"
                            .into(),
                    );
                }
                let listen = b.listen.0;
                if listen.port() == 0 {
                    problems.push(format!(
                        "bacnet.listen {listen} needs a port: pollers must know where the \
                         devices are (47808 is BACnet's)"
                    ));
                }
                if listen.ip().is_multicast() || listen.ip().is_broadcast() {
                    problems.push(format!(
                        "bacnet.listen {listen} must be a unicast address (e.g. 127.0.0.1)"
                    ));
                }
                let n = self.unit_ids().len();
                if n > 0 && listen.port() != 0 && b.for_unit(n - 1).is_none() {
                    problems.push(format!(
                        "bacnet: {n} units need ports {}..{} and device ids {}..{}, past \
                         the UDP port range or BACnet's largest device instance \
                         ({MAX_DEVICE_INSTANCE})",
                        listen.port(),
                        u64::from(listen.port()) + n as u64 - 1,
                        b.device_id,
                        u64::from(b.device_id) + n as u64 - 1
                    ));
                }
            }
        }
        if self.max_frames == Some(0) {
            problems.push("max_frames must be at least 1 (omit it to run until stopped)".into());
        }
        for (key, v) in [
            ("temperature", self.noise.temperature),
            ("humidity", self.noise.humidity),
            ("water_flow", self.noise.water_flow),
            ("air_flow", self.noise.air_flow),
        ] {
            if !v.is_finite() || v < 0.0 {
                problems.push(format!(
                    "noise.{key} must be a finite standard deviation >= 0, got {v}"
                ));
            }
        }
        if let Err(e) = self.physics.validate() {
            problems.push(format!("physics: {e}"));
        }
        let load = &self.load;
        if !(0.0..=24.0).contains(&load.peak_hour) {
            problems.push(format!(
                "load.peak_hour must be an hour of the day in 0..=24, got {}",
                load.peak_hour
            ));
        }
        if !load.unit_spread.is_finite() || load.unit_spread < 0.0 {
            problems.push(format!(
                "load.unit_spread must be a finite number >= 0, got {}",
                load.unit_spread
            ));
        }
        for (name, b) in INPUT_FEATURES.iter().zip(load.bands()) {
            if !b.mean.is_finite() || !b.amplitude.is_finite() {
                problems.push(format!(
                    "load.{name}: mean and amplitude must be finite numbers"
                ));
            }
        }

        let ids = self.unit_ids();
        let known: HashSet<&str> = ids.iter().map(String::as_str).collect();
        for (i, sc) in self.scenarios.iter().enumerate() {
            match sc {
                Scenario::Steady(_) => {}
                Scenario::InputDrift(d) => {
                    let what = format!("scenarios[{i}] (input_drift)");
                    check_time(problems, &what, "start_after_s", d.start_after_s, true);
                    check_time(problems, &what, "ramp_s", d.ramp_s, true);
                    if d.shift.is_empty() {
                        problems.push(format!(
                            "{what}: shift is empty; give at least one input, e.g. {{UCAIT: 3.0}}"
                        ));
                    }
                    for (name, v) in &d.shift {
                        match feature_index(name) {
                            None => problems.push(unknown_feature(&what, name)),
                            Some(idx) if !is_input(idx) => problems.push(format!(
                                "{what}: {name} is a measured output, not an input; the plant \
                                 computes it (use fouling or sensor_fault to disturb it)"
                            )),
                            Some(_) => {}
                        }
                        if !v.is_finite() {
                            problems.push(format!("{what}: shift of {name} must be finite"));
                        }
                    }
                    check_units_filter(problems, &what, &d.units, &known);
                }
                Scenario::Fouling(f) => {
                    let what = format!("scenarios[{i}] (fouling)");
                    check_time(problems, &what, "start_after_s", f.start_after_s, true);
                    check_time(problems, &what, "ramp_s", f.ramp_s, true);
                    if !(f.ua_factor > 0.0 && f.ua_factor <= 1.0) {
                        problems.push(format!(
                            "{what}: ua_factor must be in (0, 1] (fraction of the clean coil's \
                             UA), got {}",
                            f.ua_factor
                        ));
                    }
                    check_units_filter(problems, &what, &f.units, &known);
                }
                Scenario::SensorFault(s) => {
                    let what = format!("scenarios[{i}] (sensor_fault)");
                    check_time(problems, &what, "start_after_s", s.start_after_s, true);
                    if let Some(d) = s.duration_s {
                        check_time(problems, &what, "duration_s", d, false);
                    }
                    if feature_index(&s.feature).is_none() {
                        problems.push(unknown_feature(&what, &s.feature));
                    }
                    if s.mode == FaultMode::Spike {
                        if let Some(p) = s.probability {
                            if !(0.0..=1.0).contains(&p) {
                                problems.push(format!(
                                    "{what}: probability must be in [0, 1], got {p}"
                                ));
                            }
                        }
                        match s.magnitude {
                            None => problems.push(format!(
                                "{what}: mode spike needs a magnitude (in the feature's unit)"
                            )),
                            Some(m) if !m.is_finite() => {
                                problems.push(format!("{what}: magnitude must be finite, got {m}"))
                            }
                            Some(_) => {}
                        }
                    } else if s.probability.is_some() || s.magnitude.is_some() {
                        problems.push(format!(
                            "{what}: probability and magnitude apply only to mode spike"
                        ));
                    }
                    check_units_filter(problems, &what, &s.units, &known);
                }
            }
        }
    }

    fn emits_messages(&self) -> bool {
        self.emit_frames
    }

    fn build(&self, ctx: &BuildContext) -> Result<Component, ComponentError> {
        let mut problems = Vec::new();
        self.validate(&mut problems);
        if !problems.is_empty() {
            return Err(ComponentError::new("invalid_config", problems.join("; ")));
        }
        let period = Duration::try_from_secs_f64(1.0 / self.rate_hz).map_err(|e| {
            ComponentError::new("invalid_config", format!("rate_hz {}: {e}", self.rate_hz))
        })?;
        Ok(Component::Source(Box::new(Simulator {
            plant: Plant::new(self),
            rate_hz: self.rate_hz,
            period,
            realtime: self.realtime,
            max_frames: self.max_frames,
            received: ctx.component_metrics.received.clone(),
            bacnet: self.bacnet,
            emit_frames: self.emit_frames,
            unit_ids: self.unit_ids(),
            id: ctx.id.clone(),
        })))
    }
}

/// Frames for `n_per_unit` ticks of simulated time (`k / rate_hz` seconds
/// after `start`), ordered by time and then by unit, exactly as the
/// non-realtime source emits them. Pure: the same config gives the same
/// frames (set `start` for that; its default is the current time).
///
/// Call [`ComponentConfig::validate`] first: an unknown feature or unit in a
/// scenario is skipped here rather than reported.
pub fn generate(config: &SimulatorConfig, n_per_unit: usize) -> Vec<SensorFrame> {
    let mut plant = Plant::new(config);
    let mut out = Vec::with_capacity(n_per_unit * plant.units.len());
    for k in 0..n_per_unit {
        out.extend(plant.frames_at(k as f64 / config.rate_hz));
    }
    out
}

/// Linear ramp from 0 (before `start`) to 1 (after `start + ramp`).
fn ramp_fraction(t: f64, start: f64, ramp: f64) -> f64 {
    if t < start {
        0.0
    } else if ramp <= 0.0 {
        1.0
    } else {
        ((t - start) / ramp).min(1.0)
    }
}

struct DriftState {
    start: f64,
    ramp: f64,
    shift: [f64; 6],
}

struct FoulingState {
    start: f64,
    ramp: f64,
    ua_factor: f64,
}

struct FaultState {
    start: f64,
    end: f64,
    feature: usize,
    mode: FaultMode,
    probability: f64,
    magnitude: f64,
    /// For `stuck`: the reading being held (the outer `None` = not captured yet).
    held: Option<Option<f64>>,
}

// Stream numbers per unit: adding a purpose must not renumber the others.
const STREAM_OFFSETS: u64 = 0;
const STREAM_NOISE: u64 = 1;
const STREAM_FAULTS: u64 = 2;
const STREAMS_PER_UNIT: u64 = 3;

fn unit_rng(seed: u64, unit: usize, purpose: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(unit as u64 * STREAMS_PER_UNIT + purpose);
    rng
}

fn normal(rng: &mut ChaCha8Rng) -> f64 {
    rng.sample(StandardNormal)
}

/// One simulated unit cooler: its load, plant, sensors and scenario state.
pub struct UnitState {
    id: Arc<str>,
    start: DateTime<Utc>,
    load: LoadConfig,
    /// Per-unit offsets of the daily means, [`INPUT_FEATURES`] order.
    offsets: [f64; 6],
    /// Per-unit shift of the daily cycle, hours.
    phase_h: f64,
    physics: PhysicsParams,
    noise_sd: [f64; 9],
    drifts: Vec<DriftState>,
    foulings: Vec<FoulingState>,
    faults: Vec<FaultState>,
    noise_rng: ChaCha8Rng,
    fault_rng: ChaCha8Rng,
    /// What the sensors reported last, for `stuck` faults.
    last: Option<[Option<f64>; 9]>,
}

fn applies(filter: &Option<Vec<String>>, id: &str) -> bool {
    filter.as_ref().is_none_or(|l| l.iter().any(|u| u == id))
}

impl UnitState {
    fn new(config: &SimulatorConfig, index: usize, id: &str, start: DateTime<Utc>) -> Self {
        let mut off_rng = unit_rng(config.seed, index, STREAM_OFFSETS);
        let k = config.load.unit_spread;
        // Typical unit-to-unit spread of a building's fan coils; drawn in a
        // fixed order so the offsets never depend on other settings.
        let sd = [0.2, 0.5, 1.0, 3.0, 0.3];
        let mut offsets = [0.0; 6];
        for (o, s) in offsets.iter_mut().zip(sd) {
            *o = k * s * normal(&mut off_rng);
        }
        // Setpoints are entered by people in half degrees.
        offsets[5] = (k * normal(&mut off_rng)).round() * 0.5;
        let phase_h = k * 0.5 * normal(&mut off_rng);

        let mut drifts = Vec::new();
        let mut foulings = Vec::new();
        let mut faults = Vec::new();
        for sc in &config.scenarios {
            match sc {
                Scenario::Steady(_) => {}
                Scenario::InputDrift(d) if applies(&d.units, id) => {
                    let mut shift = [0.0; 6];
                    for (name, v) in &d.shift {
                        if let Some(i) = feature_index(name).filter(|i| is_input(*i)) {
                            shift[i] += v;
                        }
                    }
                    drifts.push(DriftState {
                        start: d.start_after_s,
                        ramp: d.ramp_s,
                        shift,
                    });
                }
                Scenario::Fouling(f) if applies(&f.units, id) => foulings.push(FoulingState {
                    start: f.start_after_s,
                    ramp: f.ramp_s,
                    ua_factor: f.ua_factor,
                }),
                Scenario::SensorFault(s) if applies(&s.units, id) => {
                    let Some(feature) = feature_index(&s.feature) else {
                        continue;
                    };
                    faults.push(FaultState {
                        start: s.start_after_s,
                        end: s.start_after_s + s.duration_s.unwrap_or(f64::INFINITY),
                        feature,
                        mode: s.mode,
                        probability: s.probability.unwrap_or(DEFAULT_SPIKE_PROBABILITY),
                        magnitude: s.magnitude.unwrap_or(0.0),
                        held: None,
                    })
                }
                _ => {}
            }
        }

        UnitState {
            id: Arc::from(id),
            start,
            load: config.load,
            offsets,
            phase_h,
            physics: config.physics,
            noise_sd: config.noise.per_feature(),
            drifts,
            foulings,
            faults,
            noise_rng: unit_rng(config.seed, index, STREAM_NOISE),
            fault_rng: unit_rng(config.seed, index, STREAM_FAULTS),
            last: None,
        }
    }

    /// The frame this unit's sensors report `t` simulated seconds after `start`.
    pub fn next_frame(&mut self, t: f64) -> SensorFrame {
        let ts = timestamp(self.start, t);
        let hour = f64::from(ts.num_seconds_from_midnight()) / 3600.0
            + f64::from(ts.nanosecond()) / 3.6e12;
        let cycle = (TAU * (hour + self.phase_h - self.load.peak_hour) / 24.0).cos();

        let mut x = [0.0; 6];
        for (i, b) in self.load.bands().iter().enumerate() {
            x[i] = b.mean + b.amplitude * cycle + self.offsets[i];
        }
        for d in &self.drifts {
            let frac = ramp_fraction(t, d.start, d.ramp);
            for (xi, s) in x.iter_mut().zip(d.shift) {
                *xi += frac * s;
            }
        }
        let ua_factor: f64 = self
            .foulings
            .iter()
            .map(|f| 1.0 - (1.0 - f.ua_factor) * ramp_fraction(t, f.start, f.ramp))
            .product();
        let plant = PhysicsParams {
            ua_nom: self.physics.ua_nom * ua_factor,
            ..self.physics
        };
        let inputs = CoilInputs::from_features(x);
        // A plant state the model refuses (a drift pushing RH past 100 %, say)
        // still yields a frame: the inputs are what the sensors saw, and the
        // predictor is the one that decides what to do with them.
        let state = physics::predict(&plant, &inputs).ok();

        let truth: [Option<f64>; 9] = [
            Some(x[0]),
            Some(x[1]),
            Some(x[2]),
            Some(x[3]),
            Some(x[4]),
            Some(x[5]),
            state.map(|s| s.ucaot),
            state.map(|s| s.ucwot),
            state.map(|s| s.ucaf),
        ];
        let mut r = [None; 9];
        for ((reading, truth), sd) in r.iter_mut().zip(truth).zip(self.noise_sd) {
            // Draw for every feature every frame, so the noise sequence does
            // not depend on which outputs the physics produced.
            let z = normal(&mut self.noise_rng);
            *reading = truth.map(|v| v + sd * z);
        }

        for f in &mut self.faults {
            // Spike draws happen every frame, active or not, so a fault's
            // timing never shifts the draws of the faults after it.
            let u: f64 = self.fault_rng.random();
            let negative: bool = self.fault_rng.random();
            if t < f.start || t >= f.end {
                f.held = None;
                continue;
            }
            let v = &mut r[f.feature];
            match f.mode {
                FaultMode::Stuck => {
                    let prev = self.last.map_or(*v, |l| l[f.feature]);
                    *v = *f.held.get_or_insert(prev);
                }
                FaultMode::Nan => {
                    if is_input(f.feature) || v.is_some() {
                        *v = Some(f64::NAN);
                    }
                }
                FaultMode::Spike => {
                    if u < f.probability {
                        let m = if negative { -f.magnitude } else { f.magnitude };
                        *v = v.map(|v| v + m);
                    }
                }
            }
        }
        self.last = Some(r);

        let input = |i: usize| r[i].unwrap_or(f64::NAN);
        SensorFrame {
            unit: self.id.clone(),
            ts,
            ucwit: input(0),
            ucait: input(1),
            ucwf: input(2),
            ucaih: input(3),
            ambt: input(4),
            uctsp: input(5),
            ucaot: r[6],
            ucwot: r[7],
            ucaf: r[8],
            quality: None,
        }
    }
}

fn timestamp(start: DateTime<Utc>, t: f64) -> DateTime<Utc> {
    // `as` saturates, and checked_add keeps absurd times from panicking.
    let nanos = (t * 1e9).round() as i64;
    start
        .checked_add_signed(TimeDelta::nanoseconds(nanos))
        .unwrap_or(start)
}

/// All simulated units; shared by the source and [`generate`].
pub struct Plant {
    units: Vec<UnitState>,
}

impl Plant {
    pub fn new(config: &SimulatorConfig) -> Self {
        let start = config.start.unwrap_or_else(|| {
            let now = Utc::now();
            now.with_nanosecond(0).unwrap_or(now)
        });
        let units = config
            .unit_ids()
            .iter()
            .enumerate()
            .map(|(i, id)| UnitState::new(config, i, id, start))
            .collect();
        Plant { units }
    }

    /// One frame per unit, `t` simulated seconds after `start`.
    pub fn frames_at(&mut self, t: f64) -> Vec<SensorFrame> {
        self.units.iter_mut().map(|u| u.next_frame(t)).collect()
    }
}

/// Runs the plant on the clock and serves each unit as a BACnet/IP device
/// (`config.bacnet`, else its defaults) until `stop`, or until
/// `max_frames`: `twinflow simulate --bacnet`. Validate `config` first.
pub async fn serve_bacnet(
    config: &SimulatorConfig,
    stop: &CancellationToken,
) -> Result<(), ComponentError> {
    let b = config.bacnet.unwrap_or_default();
    let period = Duration::try_from_secs_f64(1.0 / config.rate_hz).map_err(|e| {
        ComponentError::new("invalid_config", format!("rate_hz {}: {e}", config.rate_hz))
    })?;
    let node = "simulate";
    let mut devices = start_devices(node, &b, &config.unit_ids()).await?;
    let mut plant = Plant::new(config);
    let t0 = tokio::time::Instant::now();
    let mut ticker = tokio::time::interval_at(t0, period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut k: u64 = 0;
    let result = loop {
        if config.max_frames.is_some_and(|max| k >= max) {
            break Ok(());
        }
        let t = tokio::select! {
            biased;
            _ = stop.cancelled() => break Ok(()),
            at = ticker.tick() => at.saturating_duration_since(t0).as_secs_f64(),
        };
        let frames = plant.frames_at(t);
        let mut failed = None;
        for (d, f) in devices.iter_mut().zip(&frames) {
            if let Err(e) = d.update(f).await {
                failed = Some(ComponentError::new("bacnet_device", e.to_string()));
                break;
            }
        }
        if let Some(e) = failed {
            break Err(e);
        }
        k += 1;
    };
    stop_devices(node, devices).await;
    result
}

/// The running `simulator` source.
pub struct Simulator {
    plant: Plant,
    rate_hz: f64,
    period: Duration,
    realtime: bool,
    max_frames: Option<u64>,
    received: IntCounter,
    bacnet: Option<SimulatorBacnet>,
    emit_frames: bool,
    unit_ids: Vec<String>,
    /// The node id, for log lines.
    id: Arc<str>,
}

/// One device per unit, in unit order, logged as it starts; on a failure
/// the ones already started are stopped again. `node` names the caller in
/// the log.
async fn start_devices(
    node: &str,
    b: &SimulatorBacnet,
    unit_ids: &[String],
) -> Result<Vec<SimulatedDevice>, ComponentError> {
    let mut devices: Vec<SimulatedDevice> = Vec::with_capacity(unit_ids.len());
    for (i, unit) in unit_ids.iter().enumerate() {
        let started = match b.for_unit(i) {
            Some((addr, id)) => SimulatedDevice::start(addr, id, unit)
                .await
                .map_err(|e| ComponentError::new("bacnet_device", e.to_string())),
            None => Err(ComponentError::new(
                "invalid_config",
                format!("bacnet: no port or device id left for unit {unit}"),
            )),
        };
        match started {
            Ok(d) => {
                tracing::info!(
                    "{node}: serving BACnet device {} on {} (unit {unit})",
                    d.device_id(),
                    d.address()
                );
                devices.push(d);
            }
            Err(e) => {
                stop_devices(node, devices).await;
                return Err(e);
            }
        }
    }
    Ok(devices)
}

/// Stops the devices together, each within a bound: a device stop joins
/// the requests it has admitted, and shutdown must not hang on one.
async fn stop_devices(node: &str, devices: Vec<SimulatedDevice>) {
    const STOP_WITHIN: Duration = Duration::from_secs(3);
    futures::future::join_all(devices.into_iter().map(|d| async move {
        let id = d.device_id();
        match tokio::time::timeout(STOP_WITHIN, d.stop()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("{node}: stopping BACnet device {id}: {e}"),
            Err(_) => {
                tracing::warn!("{node}: BACnet device {id} did not stop within {STOP_WITHIN:?}")
            }
        }
    }))
    .await;
}

#[async_trait]
impl Source for Simulator {
    async fn run(
        &mut self,
        out: &mut SourceOutput<'_>,
        stop: &CancellationToken,
    ) -> Result<(), ComponentError> {
        let node = format!("simulator \"{}\"", self.id);
        let mut devices = match self.bacnet {
            Some(b) => start_devices(&node, &b, &self.unit_ids).await?,
            None => Vec::new(),
        };
        let result = self.produce(out, stop, &mut devices).await;
        // The devices live exactly as long as the node runs: a restart
        // rebuilds the node, which binds the ports again.
        stop_devices(&node, devices).await;
        result
    }
}

impl Simulator {
    async fn produce(
        &mut self,
        out: &mut SourceOutput<'_>,
        stop: &CancellationToken,
        devices: &mut [SimulatedDevice],
    ) -> Result<(), ComponentError> {
        let t0 = tokio::time::Instant::now();
        let mut ticker = self.realtime.then(|| {
            let mut iv = tokio::time::interval_at(t0, self.period);
            // After a backpressure stall, carry on at the normal pace rather
            // than bursting to catch up: a real unit would not send the
            // readings it missed.
            iv.set_missed_tick_behavior(MissedTickBehavior::Delay);
            iv
        });
        let mut k: u64 = 0;
        loop {
            if self.max_frames.is_some_and(|max| k >= max) {
                return Ok(());
            }
            let t = match ticker.as_mut() {
                // Realtime: simulated time is the time since the source
                // started, so timestamps stay on the wall clock even when
                // backpressure delayed some ticks.
                Some(iv) => tokio::select! {
                    biased;
                    _ = stop.cancelled() => return Ok(()),
                    at = iv.tick() => at.saturating_duration_since(t0).as_secs_f64(),
                },
                None => {
                    // The edges' send does not yield while they have room (or
                    // when they drop on overflow), so a fast generator would
                    // otherwise never let other tasks on its thread run.
                    tokio::task::yield_now().await;
                    k as f64 / self.rate_hz
                }
            };
            if stop.is_cancelled() {
                return Ok(());
            }
            let frames = self.plant.frames_at(t);
            self.received.inc_by(frames.len() as u64);
            for (d, f) in devices.iter_mut().zip(&frames) {
                d.update(f)
                    .await
                    .map_err(|e| ComponentError::new("bacnet_device", e.to_string()))?;
            }
            if !self.emit_frames {
                k += 1;
                continue;
            }
            let batch: Vec<Envelope> = frames
                .into_iter()
                .map(|f| Envelope::new(Message::Frame(f)))
                .collect();
            tokio::select! {
                biased;
                // A batch cut short at shutdown is fine: nothing acknowledges it.
                _ = stop.cancelled() => return Ok(()),
                _ = out.send_batch(batch) => {}
            }
            if out.is_closed() {
                tracing::info!("simulator: every downstream node has stopped; ending");
                return Ok(());
            }
            k += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: &str = "2026-06-01T00:00:00Z";

    fn base() -> SimulatorConfig {
        SimulatorConfig {
            start: Some(START.parse().unwrap()),
            realtime: false,
            ..SimulatorConfig::default()
        }
    }

    fn yaml(s: &str) -> SimulatorConfig {
        crate::testkit::config_from_yaml(s)
    }

    fn problems(c: &SimulatorConfig) -> Vec<String> {
        crate::testkit::config_problems(c)
    }

    fn mean(v: impl Iterator<Item = f64>) -> f64 {
        let (s, n) = v.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
        s / n as f64
    }

    fn get(f: &SensorFrame, name: &str) -> Option<f64> {
        match name {
            "UCAOT" => f.ucaot,
            "UCWOT" => f.ucwot,
            "UCAF" => f.ucaf,
            _ => Some(f.inputs()[INPUT_FEATURES.iter().position(|n| *n == name).unwrap()]),
        }
    }

    fn secs(f: &SensorFrame) -> f64 {
        (f.ts - START.parse::<DateTime<Utc>>().unwrap()).as_seconds_f64()
    }

    fn clean(f: &SensorFrame) -> physics::CoilState {
        let x = f.inputs();
        let inputs = CoilInputs::from_features(x);
        physics::predict(&PhysicsParams::default(), &inputs).unwrap()
    }

    #[test]
    fn empty_config_is_valid_with_documented_defaults() {
        let c = yaml("{}");
        assert!(problems(&c).is_empty(), "{:?}", problems(&c));
        assert_eq!(c.unit_ids(), ["uc-01"]);
        assert_eq!((c.rate_hz, c.seed, c.realtime), (1.0, 42, true));
        assert_eq!(c.noise, NoiseConfig::default());
        assert_eq!(c.physics, PhysicsParams::default());
        assert!(c.scenarios.is_empty() && c.start.is_none() && c.max_frames.is_none());
        let three = yaml("units: 3");
        assert_eq!(three.unit_ids(), ["uc-01", "uc-02", "uc-03"]);
    }

    #[test]
    fn full_yaml_parses() {
        let c = yaml(
            r#"
units: 2
unit_ids: [ahu-a, ahu-b]
rate_hz: 0.5
seed: 7
realtime: false
start: 2026-12-04T10:00:00Z
max_frames: 100
noise: {temperature: 0.1, humidity: 1, water_flow: 0.2, air_flow: 20}
physics: {ua_nom: 1.8}
load:
  peak_hour: 16
  unit_spread: 0.5
  UCAIT: {mean: 25, amplitude: 2}
  UCWF: {mean: 12}
scenarios:
  - kind: steady
  - kind: input_drift
    start_after_s: 3600
    ramp_s: 1800
    shift: {UCAIT: 3.0, UCWIT: 1}
    units: [ahu-a]
  - kind: fouling
    start_after_s: 0
    ramp_s: 86400
    ua_factor: 0.6
  - kind: sensor_fault
    feature: UCAOT
    mode: spike
    probability: 0.1
    magnitude: 4
    duration_s: 600
  - kind: sensor_fault
    feature: UCWF
    mode: stuck
"#,
        );
        assert!(problems(&c).is_empty(), "{:?}", problems(&c));
        assert_eq!(c.unit_ids(), ["ahu-a", "ahu-b"]);
        assert_eq!(c.start.unwrap().to_rfc3339(), "2026-12-04T10:00:00+00:00");
        assert_eq!(c.noise.humidity, 1.0);
        assert_eq!(c.physics.ua_nom, 1.8);
        assert_eq!(c.physics.v_max, 6000.0);
        assert_eq!(c.load.ucwf, band(12.0, 0.0));
        assert_eq!(c.load.ambt, LoadConfig::default().ambt);
        assert_eq!(c.scenarios.len(), 5);
        assert!(matches!(&c.scenarios[1], Scenario::InputDrift(d) if d.shift["UCWIT"] == 1.0));
        let frames = generate(&c, 3);
        assert_eq!(frames.len(), 6);
        assert_eq!(&*frames[1].unit, "ahu-b");
        assert_eq!(secs(&frames[2]) - secs(&frames[0]), 2.0);
    }

    #[test]
    fn noise_switch() {
        assert_eq!(yaml("noise: false").noise, NoiseConfig::OFF);
        assert_eq!(yaml("noise: true").noise, NoiseConfig::default());
        let partial = yaml("noise: {air_flow: 0}").noise;
        assert_eq!(partial.air_flow, 0.0);
        assert_eq!(partial.temperature, 0.05);
    }

    #[test]
    fn unknown_keys_are_rejected() {
        for bad in [
            "rate_hzz: 2",
            "noise: {temprature: 0.1}",
            "load: {UCAIT: {mean: 24, amp: 3}}",
            "load: {ucait: {mean: 24}}",
            "physics: {ua: 1}",
            "scenarios: [{kind: steady, ramp_s: 3}]",
            "scenarios: [{kind: fouling, ua_factor: 0.5, ramp: 60}]",
            "scenarios: [{kind: input_drift, shift: {UCAIT: 1}, unit: [uc-01]}]",
            "scenarios: [{kind: sensor_fault, feature: UCAIT, mode: nan, duration: 5}]",
            "scenarios: [{kind: sensor_fault, feature: UCAIT, mode: frozen}]",
            "scenarios: [{kind: heatwave}]",
        ] {
            let err = serde_saphyr::from_str::<SimulatorConfig>(bad);
            assert!(err.is_err(), "accepted: {bad}");
        }
        let err = serde_saphyr::from_str::<SimulatorConfig>("rate_hzz: 2")
            .unwrap_err()
            .to_string();
        assert!(err.contains("rate_hzz"), "{err}");
    }

    #[test]
    fn validation_catches_each_bad_value() {
        let with = |s: &str| problems(&yaml(s));
        let cases: &[(&str, &str)] = &[
            ("rate_hz: 0", "rate_hz"),
            ("rate_hz: -1", "rate_hz"),
            ("rate_hz: .nan", "rate_hz"),
            ("rate_hz: .inf", "rate_hz"),
            ("rate_hz: 5000", "realtime"),
            ("units: 0", "units must be at least 1"),
            ("unit_ids: []", "at least one unit"),
            ("unit_ids: [a, b, a]", "\"a\" more than once"),
            ("{units: 3, unit_ids: [a, b]}", "units is 3"),
            ("max_frames: 0", "max_frames"),
            ("noise: {humidity: -1}", "noise.humidity"),
            ("physics: {u_min: 0}", "physics"),
            ("load: {peak_hour: 25}", "peak_hour"),
            ("load: {unit_spread: -1}", "unit_spread"),
            (
                "scenarios: [{kind: input_drift, ramp_s: -5, shift: {UCAIT: 1}}]",
                "ramp_s",
            ),
            (
                "scenarios: [{kind: input_drift, start_after_s: -1, shift: {UCAIT: 1}}]",
                "start_after_s",
            ),
            ("scenarios: [{kind: input_drift, shift: {}}]", "shift is empty"),
            (
                "scenarios: [{kind: input_drift, shift: {UCAT: 1}}]",
                "unknown feature \"UCAT\"",
            ),
            (
                "scenarios: [{kind: input_drift, shift: {UCAOT: 1}}]",
                "measured output",
            ),
            (
                "scenarios: [{kind: input_drift, shift: {UCAIT: 1}, units: [uc-07]}]",
                "\"uc-07\" is not simulated",
            ),
            ("scenarios: [{kind: fouling, ua_factor: 0}]", "ua_factor"),
            ("scenarios: [{kind: fouling, ua_factor: 1.5}]", "ua_factor"),
            ("scenarios: [{kind: fouling, ua_factor: -0.2}]", "ua_factor"),
            (
                "scenarios: [{kind: fouling, ua_factor: 0.5, ramp_s: -1}]",
                "ramp_s",
            ),
            (
                "scenarios: [{kind: sensor_fault, feature: UCAIT, mode: nan, duration_s: -3}]",
                "duration_s",
            ),
            (
                "scenarios: [{kind: sensor_fault, feature: FOO, mode: nan}]",
                "unknown feature \"FOO\"",
            ),
            (
                "scenarios: [{kind: sensor_fault, feature: UCAF, mode: spike, probability: 1.5, magnitude: 100}]",
                "probability",
            ),
            (
                "scenarios: [{kind: sensor_fault, feature: UCAF, mode: spike, probability: -0.1, magnitude: 100}]",
                "probability",
            ),
            (
                "scenarios: [{kind: sensor_fault, feature: UCAF, mode: spike}]",
                "needs a magnitude",
            ),
            (
                "scenarios: [{kind: sensor_fault, feature: UCAF, mode: stuck, magnitude: 3}]",
                "only to mode spike",
            ),
        ];
        for (src, expected) in cases {
            let p = with(src);
            assert_eq!(p.len(), 1, "{src}: {p:?}");
            assert!(p[0].contains(expected), "{src}: {p:?}");
        }
        // Every problem is reported in one pass, and scenarios are named by position.
        let p = with(
            "{rate_hz: 0, units: 0, scenarios: [{kind: steady}, {kind: fouling, ua_factor: 2}]}",
        );
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p[2].starts_with("scenarios[1] (fouling)"), "{p:?}");
        // A spike that always fires is a valid (if noisy) config.
        assert!(with("scenarios: [{kind: sensor_fault, feature: UCAIT, mode: spike, magnitude: 2, probability: 1}]").is_empty());
    }

    #[test]
    fn deterministic_under_a_seed() {
        let c = SimulatorConfig {
            units: Some(3),
            scenarios: vec![Scenario::SensorFault(SensorFault {
                start_after_s: 10.0,
                duration_s: None,
                feature: "UCAIT".into(),
                mode: FaultMode::Spike,
                probability: Some(0.3),
                magnitude: Some(2.0),
                units: None,
            })],
            ..base()
        };
        let a = generate(&c, 200);
        let b = generate(&c, 200);
        assert_eq!(a.len(), 600);
        assert_eq!(a, b);
        let other = generate(
            &SimulatorConfig {
                seed: 43,
                ..c.clone()
            },
            200,
        );
        assert_eq!(other.len(), 600);
        assert!(a.iter().zip(&other).all(|(x, y)| x.ucait != y.ucait));
        // Units differ from one another.
        assert_ne!(a[0].ucait, a[1].ucait);
        assert_ne!(a[0].ucwf, a[1].ucwf);
        // The Plant used by the source yields the same frames tick by tick.
        let mut plant = Plant::new(&c);
        let ticked: Vec<SensorFrame> = (0..200).flat_map(|k| plant.frames_at(k as f64)).collect();
        assert_eq!(ticked, a);
    }

    #[test]
    fn daily_pattern_has_expected_range_and_peak() {
        let c = SimulatorConfig {
            rate_hz: 1.0 / 60.0,
            noise: NoiseConfig::OFF,
            load: LoadConfig {
                unit_spread: 0.0,
                ..LoadConfig::default()
            },
            ..base()
        };
        let day = generate(&c, 24 * 60);
        let range = |name: &str| {
            let v: Vec<f64> = day.iter().map(|f| get(f, name).unwrap()).collect();
            let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            (lo, hi)
        };
        let close = |(lo, hi): (f64, f64), (elo, ehi): (f64, f64)| {
            (lo - elo).abs() < 1e-6 && (hi - ehi).abs() < 1e-6
        };
        assert!(close(range("UCAIT"), (21.0, 27.0)), "{:?}", range("UCAIT"));
        assert!(close(range("AMBT"), (16.0, 28.0)), "{:?}", range("AMBT"));
        assert!(close(range("UCAIH"), (40.0, 60.0)), "{:?}", range("UCAIH"));
        assert!(close(range("UCWIT"), (7.0, 8.0)), "{:?}", range("UCWIT"));
        assert!(close(range("UCWF"), (13.0, 17.0)), "{:?}", range("UCWF"));
        assert!(close(range("UCTSP"), (21.0, 21.0)), "{:?}", range("UCTSP"));
        let peak = day
            .iter()
            .max_by(|a, b| a.ucait.total_cmp(&b.ucait))
            .unwrap();
        assert_eq!(peak.ts.hour(), 15);
        // The plant answers every point of the default day.
        assert!(day.iter().all(|f| f.measured().iter().all(Option::is_some)));

        // With the default spread and noise, several units stay near the pattern.
        let noisy = generate(
            &SimulatorConfig {
                units: Some(5),
                ..c.clone()
            },
            24 * 60,
        );
        for f in &noisy {
            assert!((19.0..29.5).contains(&f.ucait), "{f:?}");
            assert!((6.0..9.0).contains(&f.ucwit), "{f:?}");
            assert!((28.0..72.0).contains(&f.ucaih), "{f:?}");
            assert!((9.0..21.0).contains(&f.ucwf), "{f:?}");
        }
        let m = mean(noisy.iter().map(|f| f.ucait));
        assert!((m - 24.0).abs() < 0.6, "{m}");
    }

    #[test]
    fn input_drift_shifts_the_chosen_input_after_the_ramp() {
        let base_cfg = SimulatorConfig {
            units: Some(2),
            ..base()
        };
        let drifted_cfg = SimulatorConfig {
            scenarios: vec![Scenario::InputDrift(InputDrift {
                start_after_s: 1000.0,
                ramp_s: 500.0,
                shift: BTreeMap::from([("UCAIT".to_string(), 3.0)]),
                units: Some(vec!["uc-02".into()]),
            })],
            ..base_cfg.clone()
        };
        let plain = generate(&base_cfg, 3000);
        let drifted = generate(&drifted_cfg, 3000);
        let diffs = |lo: f64, hi: f64, unit: &str| {
            plain
                .iter()
                .zip(&drifted)
                .filter(|(f, _)| &*f.unit == unit && (lo..hi).contains(&secs(f)))
                .map(|(a, b)| b.ucait - a.ucait)
                .collect::<Vec<_>>()
        };
        // Same noise stream with or without the scenario: the difference is the shift.
        assert!(diffs(0.0, 1000.0, "uc-02").iter().all(|d| *d == 0.0));
        assert!(diffs(1500.0, 3000.0, "uc-02")
            .iter()
            .all(|d| (d - 3.0).abs() < 1e-9));
        let mid = diffs(1250.0, 1251.0, "uc-02");
        assert!((mid[0] - 1.5).abs() < 1e-9, "{mid:?}");
        assert!(diffs(0.0, 3000.0, "uc-01").iter().all(|d| *d == 0.0));

        // And in distribution terms: the mean moves by about the shift.
        let m = |frames: &[SensorFrame], lo: f64, hi: f64| {
            mean(
                frames
                    .iter()
                    .filter(|f| &*f.unit == "uc-02" && (lo..hi).contains(&secs(f)))
                    .map(|f| f.ucait),
            )
        };
        let before = m(&drifted, 0.0, 1000.0) - m(&plain, 0.0, 1000.0);
        let after = m(&drifted, 1500.0, 3000.0) - m(&plain, 1500.0, 3000.0);
        assert!(before.abs() < 0.01, "{before}");
        assert!((after - 3.0).abs() < 0.05, "{after}");
        // The plant responds: a warmer return air means a warmer outlet.
        let out = |frames: &[SensorFrame]| {
            mean(
                frames
                    .iter()
                    .filter(|f| &*f.unit == "uc-02" && secs(f) >= 1500.0)
                    .map(|f| f.ucaot.unwrap()),
            )
        };
        assert!(out(&drifted) > out(&plain) + 0.3);
        // Other inputs are untouched.
        assert!(plain.iter().zip(&drifted).all(|(a, b)| a.ucwit == b.ucwit));
    }

    fn fouling_cfg(noise: NoiseConfig) -> SimulatorConfig {
        SimulatorConfig {
            noise,
            scenarios: vec![Scenario::Fouling(Fouling {
                start_after_s: 600.0,
                ramp_s: 600.0,
                ua_factor: 0.6,
                units: None,
            })],
            ..base()
        }
    }

    #[test]
    fn fouling_warms_the_outlet_beyond_the_clean_coil_prediction() {
        let frames = generate(&fouling_cfg(NoiseConfig::OFF), 3600);
        for f in &frames {
            let p = clean(f);
            let resid = f.ucaot.unwrap() - p.ucaot;
            if secs(f) < 600.0 {
                assert!(resid.abs() < 1e-9, "{resid}");
            } else if secs(f) >= 1200.0 {
                assert!(resid > 0.3, "{resid} at {}", secs(f));
                // Less heat reaches the water.
                assert!(f.ucwot.unwrap() < p.ucwot - 0.1);
                assert_eq!(f.ucaf.unwrap(), p.ucaf);
            }
        }

        // With sensor noise, the residual is still clear on average.
        let frames = generate(&fouling_cfg(NoiseConfig::default()), 3600);
        let resid = |lo: f64, hi: f64| {
            mean(
                frames
                    .iter()
                    .filter(|f| (lo..hi).contains(&secs(f)))
                    .map(|f| f.ucaot.unwrap() - clean(f).ucaot),
            )
        };
        assert!(resid(0.0, 600.0).abs() < 0.05, "{}", resid(0.0, 600.0));
        assert!(resid(1200.0, 3600.0) > 0.3, "{}", resid(1200.0, 3600.0));
    }

    fn fault(feature: &str, mode: FaultMode) -> SimulatorConfig {
        SimulatorConfig {
            scenarios: vec![Scenario::SensorFault(SensorFault {
                start_after_s: 100.0,
                duration_s: Some(50.0),
                feature: feature.into(),
                mode,
                probability: (mode == FaultMode::Spike).then_some(0.2),
                magnitude: (mode == FaultMode::Spike).then_some(5.0),
                units: None,
            })],
            ..base()
        }
    }

    #[test]
    fn sensor_fault_nan_in_the_chosen_feature() {
        for feature in ["UCAIT", "UCWF", "UCAOT"] {
            let frames = generate(&fault(feature, FaultMode::Nan), 300);
            for f in &frames {
                let v = get(f, feature).unwrap();
                let faulty = (100.0..150.0).contains(&secs(f));
                assert_eq!(v.is_nan(), faulty, "{feature} at {}", secs(f));
                // Only the chosen feature is affected.
                for other in FEATURES.iter().filter(|n| **n != feature) {
                    assert!(get(f, other).unwrap().is_finite(), "{other}");
                }
            }
        }
    }

    #[test]
    fn sensor_fault_stuck_and_spike() {
        let plain = generate(&base(), 300);
        let stuck = generate(&fault("UCWOT", FaultMode::Stuck), 300);
        let held = plain[99].ucwot;
        for (p, s) in plain.iter().zip(&stuck) {
            if (100.0..150.0).contains(&secs(s)) {
                assert_eq!(s.ucwot, held);
            } else {
                assert_eq!(s.ucwot, p.ucwot);
            }
        }

        let spiky = generate(&fault("UCAIT", FaultMode::Spike), 300);
        let spikes: Vec<f64> = plain
            .iter()
            .zip(&spiky)
            .map(|(p, s)| s.ucait - p.ucait)
            .filter(|d| *d != 0.0)
            .collect();
        // 50 frames at p = 0.2: about 10 spikes, all of size 5.
        assert!((3..=20).contains(&spikes.len()), "{spikes:?}");
        assert!(spikes.iter().all(|d| (d.abs() - 5.0).abs() < 1e-9));
        assert!(spiky.iter().zip(&plain).all(|(s, p)| s.ucaot == p.ucaot));
    }

    #[test]
    fn refused_plant_state_still_yields_a_frame() {
        let c = SimulatorConfig {
            scenarios: vec![Scenario::InputDrift(InputDrift {
                start_after_s: 10.0,
                ramp_s: 0.0,
                shift: BTreeMap::from([("UCAIH".to_string(), 80.0)]),
                units: None,
            })],
            ..base()
        };
        let frames = generate(&c, 20);
        assert_eq!(frames.len(), 20);
        assert!(frames[..10].iter().all(|f| f.ucaot.is_some()));
        assert!(frames[10..]
            .iter()
            .all(|f| f.ucaih > 100.0 && f.measured() == [None; 3]));
    }

    #[test]
    fn bacnet_keys_parse_and_validate() {
        let c = yaml("bacnet: {listen: \"127.0.0.1:47900\", device_id: 77}\nunits: 2");
        let b = c.bacnet.unwrap();
        assert_eq!(b.listen.to_string(), "127.0.0.1:47900");
        assert_eq!(b.for_unit(1).unwrap().0.to_string(), "127.0.0.1:47901");
        assert_eq!(b.for_unit(1).unwrap().1, 78);
        assert!(c.emit_frames);
        assert!(problems(&c).is_empty(), "{:?}", problems(&c));
        // Defaults: the shipped pipelines' TWINFLOW_BACNET_DEVICE(_ID) defaults.
        let d = yaml("bacnet: {}").bacnet.unwrap();
        assert_eq!(d.listen.to_string(), "127.0.0.1:47808");
        assert_eq!(d.device_id, 1234);
        for bad in [
            "bacnet: {listen: 127.0.0.1, port: 3}",
            "bacnet: {device: 3}",
        ] {
            assert!(
                serde_saphyr::from_str::<SimulatorConfig>(bad).is_err(),
                "{bad}"
            );
        }

        let cases: &[(&str, &str)] = &[
            ("emit_frames: false", "needs bacnet"),
            ("{bacnet: {}, realtime: false}", "realtime: true"),
            ("bacnet: {listen: \"127.0.0.1:0\"}", "needs a port"),
            ("bacnet: {listen: \"224.0.0.1:47808\"}", "unicast"),
            (
                "{units: 3, bacnet: {listen: \"127.0.0.1:65534\"}}",
                "UDP port range",
            ),
            ("bacnet: {device_id: 4194303}", "largest device instance"),
        ];
        for (src, expected) in cases {
            let p = problems(&yaml(src));
            assert_eq!(p.len(), 1, "{src}: {p:?}");
            assert!(p[0].contains(expected), "{src}: {p:?}");
        }
        assert!(problems(&yaml("{emit_frames: false, bacnet: {}}")).is_empty());
    }

    fn pipeline(sim: &str, extra: &str) -> Result<crate::config::load::PipelineSpec, String> {
        let text = format!("name: t\nnodes:\n  - id: plant\n    type: simulator\n{sim}{extra}");
        crate::config::load::parse_pipeline(&text, "t.yaml", std::path::Path::new("."), |_| None)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_silent_simulator_needs_no_reader_and_takes_none() {
        let silent = "    emit_frames: false\n    bacnet: {listen: \"127.0.0.1:47901\"}\n";
        assert!(
            pipeline(silent, "").is_ok(),
            "{:?}",
            pipeline(silent, "").err()
        );
        // One that emits still needs a reader.
        let e = pipeline("    bacnet: {listen: \"127.0.0.1:47901\"}\n", "").unwrap_err();
        assert!(e.contains("is not an input of any node"), "{e}");
        // And a silent one takes no reader: it would wait forever.
        let reader = "  - id: out\n    type: log\n    inputs: [plant]\n";
        let e = pipeline(silent, reader).unwrap_err();
        assert!(
            e.contains("\"plant\" for node \"out\" sends nothing"),
            "{e}"
        );
        let e = pipeline("    emit_frames: false\n", "").unwrap_err();
        assert!(e.contains("needs bacnet"), "{e}");
    }

    /// A pair of neighbouring free UDP ports on loopback.
    fn free_udp_ports() -> u16 {
        loop {
            let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let p = a.local_addr().unwrap().port();
            if p < u16::MAX && std::net::UdpSocket::bind(("127.0.0.1", p + 1)).is_ok() {
                return p;
            }
        }
    }

    #[actix_rt::test]
    async fn the_node_serves_its_units_as_bacnet_devices_until_it_stops() {
        use bacnet_client::client::BACnetClient;
        use bacnet_types::enums::{ObjectType, PropertyIdentifier};
        use bacnet_types::primitives::{ObjectIdentifier, PropertyValue};

        let port = free_udp_ports();
        let spec = pipeline(
            &format!(
                "    units: 2\n    rate_hz: 20\n    emit_frames: false\n    \
                 bacnet: {{listen: \"127.0.0.1:{port}\", device_id: 9000}}\n"
            ),
            "",
        )
        .unwrap();
        let settings = crate::config::Settings {
            http_addr: "127.0.0.1:0".into(),
            workers: 2,
            ..Default::default()
        };
        let engine = crate::Engine::start(&spec, settings).unwrap();
        let stop = CancellationToken::new();
        let run = actix_rt::spawn(engine.run_until(stop.clone()));

        let mut c = BACnetClient::bip_builder()
            .interface(Ipv4Addr::LOCALHOST)
            .port(0)
            .apdu_timeout_ms(2000)
            .build()
            .await
            .unwrap();
        // The second unit is device 9001 on port + 1.
        let mac = DeviceAddress(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port + 1)).mac();
        let ucait = ObjectIdentifier::new(ObjectType::ANALOG_INPUT, 1).unwrap();
        let dev = ObjectIdentifier::new(ObjectType::DEVICE, 9001).unwrap();
        let read = |oid, prop| {
            let c = &c;
            async move {
                let ack = c.read_property(&mac, oid, prop, None).await.ok()?;
                bacnet_encoding::primitives::decode_application_value(&ack.property_value, 0)
                    .ok()
                    .map(|(v, _)| v)
            }
        };
        // Its readings change with the plant (noise at least), frame by frame.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        while seen.len() < 3 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "UCAIT did not change: {seen:?}"
            );
            if let Some(PropertyValue::Real(v)) =
                read(ucait, PropertyIdentifier::PRESENT_VALUE).await
            {
                if v != 0.0 && seen.last() != Some(&v) {
                    seen.push(v);
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(seen.iter().all(|v| (15.0..35.0).contains(v)), "{seen:?}");
        assert_eq!(
            read(dev, PropertyIdentifier::OBJECT_NAME).await,
            Some(PropertyValue::CharacterString("uc-02".into()))
        );

        stop.cancel();
        run.await.unwrap().expect("graceful stop");
        // The devices stopped with the node: their ports are free again.
        for p in [port, port + 1] {
            std::net::UdpSocket::bind(("127.0.0.1", p)).expect("port freed");
        }
        c.stop().await.unwrap();
    }
}
