//! twinflow: the live side of an HVAC digital twin.
//!
//! A pipeline, declared in YAML, is a graph of supervised actors joined by
//! bounded channels: sources read a unit cooler's sensors (or simulate one),
//! a predictor turns each frame into predicted outlet temperatures, airflow
//! and thermal power, and sinks deliver the results. The engine counts every
//! event in Prometheus metrics and serves them with health and readiness on
//! one HTTP port.
//!
//! # Layout
//! - `config/`: the pipeline schema (`schema`), loading with `${VAR}`
//!   interpolation (`load`, `interpolate`), graph validation that collects
//!   every error (`validation`), engine settings (`settings`), durations.
//! - `pipeline/`: message types (`message`), the one place channels are made
//!   (`channel`), the component traits (`component`), the registry of kinds,
//!   the builder, the per-node runner and its actix actor, the supervisor,
//!   graph rendering, components' state files (`state`).
//! - `sources/` (simulator, mqtt_ingest, bacnet_poller, engine_events),
//!   `transforms/` (predictor, drift_monitor, alerter), `sinks/` (file, log,
//!   mqtt_publish, bacnet_writer, `api/` with the dashboard): one component per file (the API is a
//!   folder), config beside runtime; each folder's `mod.rs` lists its kinds
//!   in `COMPONENTS`.
//! - `model/`: the physics model of the unit cooler, ONNX (tract) and tree
//!   ensembles, model metadata and serving, engineering units.
//! - `drift/`: drift statistics as pure functions (PSI, KS, Wasserstein,
//!   JS, performance), the status rules, the report, the offline command.
//! - `protocol/`: shared protocol clients: MQTT (connection, embedded
//!   broker), BACnet/IP (`bacnet`: addresses, objects, units, the client
//!   with RPM splitting and fallback, COV) and the simulated unit-cooler
//!   BACnet device (`bacnet_device`, for `twinflow simulate --bacnet` and
//!   the simulator's `bacnet:` option).
//! - `metrics.rs`: the registry and every metric the engine exports.
//! - `server.rs`: the HTTP server (`/health`, `/ready`, `/metrics`, and the
//!   routes components mount, such as the API's).
//! - `testkit.rs`: engine-exercising components for tests and benches.
//! - `engine.rs`: runs a pipeline with its server until it ends or is stopped.
//!
//! Errors: each module has its own `thiserror` type naming the component or
//! file concerned; only the binary uses `anyhow`.

pub mod config;
pub mod drift;
pub mod engine;
pub mod metrics;
pub mod model;
pub mod pipeline;
pub mod protocol;
pub mod server;
pub mod sinks;
pub mod sources;
#[doc(hidden)]
pub mod testkit;
pub mod transforms;

pub use engine::{run, Engine, EngineError};
