//! Training data: simulated frames written as CSV (`twinflow simulate --csv`),
//! and the settings of the live simulated device (`twinflow simulate --bacnet`).
//!
//! The CSV carries what a unit's sensors would have logged: the six inputs,
//! the measured outputs, and `Q_thermal` computed from the *measured* water
//! temperatures and flow, as a site historian would compute it. Nothing from
//! the plant's internal state leaks into it, so a model trained on it learns
//! from the same kind of data it will see live.

use std::io::Write;
use std::path::Path;

use crate::model::physics::{CP_W, RHO_W};
use crate::pipeline::component::ComponentConfig;
use crate::pipeline::message::SensorFrame;
use crate::sources::simulator::{self, SimulatorBacnet, SimulatorConfig};

/// Columns of the training CSV, in order.
pub const CSV_COLUMNS: [&str; 12] = [
    "ts",
    "unit",
    "UCWIT",
    "UCAIT",
    "UCWF",
    "UCAIH",
    "AMBT",
    "UCTSP",
    "UCAOT",
    "UCWOT",
    "UCAF",
    "Q_thermal",
];

/// Why a dataset could not be made.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("cannot read the scenario file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("scenario file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("invalid simulator settings: {0}")]
    Invalid(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// Water-side thermal power, kW, positive when the water warms (cooling the
/// air). UCWF is in L/min, so the mass flow is UCWF·ρ/60 kg/s.
pub fn q_thermal(ucwit: f64, ucwot: f64, ucwf: f64) -> f64 {
    ucwf * RHO_W / 60.0 * CP_W * (ucwot - ucwit)
}

/// Simulator settings for `twinflow simulate`: the settings of a
/// `simulator` node read from `scenario_file` (any of its keys), else the
/// defaults, with `units` and `seed` from the command line on top. The run
/// is not paced (`realtime: false`) and starts at a fixed instant unless the
/// file says otherwise, so the same arguments give the same file.
pub fn simulator_settings(
    scenario_file: Option<&Path>,
    units: Option<usize>,
    seed: Option<u64>,
) -> Result<SimulatorConfig, DatasetError> {
    let mut cfg = read_scenario_file(scenario_file)?;
    cfg.realtime = false;
    if cfg.start.is_none() {
        cfg.start = Some(
            chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
                .expect("a valid constant")
                .to_utc(),
        );
    }
    overrides(cfg, units, seed)
}

/// Simulator settings for `twinflow simulate --bacnet`: as
/// [`simulator_settings`], but live: paced by the clock (`realtime: true`),
/// starting now unless the file sets `start`, at `rate_hz` when given, and
/// served as BACnet devices by `bacnet`.
pub fn live_simulator_settings(
    scenario_file: Option<&Path>,
    units: Option<usize>,
    seed: Option<u64>,
    rate_hz: Option<f64>,
    bacnet: SimulatorBacnet,
) -> Result<SimulatorConfig, DatasetError> {
    let mut cfg = read_scenario_file(scenario_file)?;
    cfg.realtime = true;
    if let Some(r) = rate_hz {
        cfg.rate_hz = r;
    }
    cfg.bacnet = Some(bacnet);
    overrides(cfg, units, seed)
}

/// The settings of a `simulator` node read from `scenario_file`, else the defaults.
fn read_scenario_file(scenario_file: Option<&Path>) -> Result<SimulatorConfig, DatasetError> {
    let Some(p) = scenario_file else {
        return Ok(SimulatorConfig::default());
    };
    let path = p.display().to_string();
    let text = std::fs::read_to_string(p).map_err(|source| DatasetError::Read {
        path: path.clone(),
        source,
    })?;
    serde_saphyr::from_str::<SimulatorConfig>(&text).map_err(|e| DatasetError::Parse {
        path,
        message: e.to_string(),
    })
}

/// The command line's `units` and `seed` on top of the file; then validation.
fn overrides(
    mut cfg: SimulatorConfig,
    units: Option<usize>,
    seed: Option<u64>,
) -> Result<SimulatorConfig, DatasetError> {
    if let Some(n) = units {
        cfg.units = Some(n);
        cfg.unit_ids = None;
    }
    if let Some(s) = seed {
        cfg.seed = s;
    }
    let mut problems = Vec::new();
    cfg.validate(&mut problems);
    if !problems.is_empty() {
        return Err(DatasetError::Invalid(problems.join("; ")));
    }
    Ok(cfg)
}

fn cell(v: Option<f64>) -> String {
    v.map(|x| x.to_string()).unwrap_or_default()
}

/// Writes frames as the training CSV. A frame without measurements (a plant
/// state the simulator refused) keeps its inputs and leaves the outputs empty.
pub fn write_csv<W: Write>(frames: &[SensorFrame], w: W) -> std::io::Result<()> {
    let mut out = csv::Writer::from_writer(w);
    out.write_record(CSV_COLUMNS)?;
    for f in frames {
        let q = match (f.ucwot, f.ucwit, f.ucwf) {
            (Some(wot), wit, wf) => Some(q_thermal(wit, wot, wf)),
            _ => None,
        };
        let x = f.inputs();
        out.write_record([
            f.ts.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            f.unit.to_string(),
            x[0].to_string(),
            x[1].to_string(),
            x[2].to_string(),
            x[3].to_string(),
            x[4].to_string(),
            x[5].to_string(),
            cell(f.ucaot),
            cell(f.ucwot),
            cell(f.ucaf),
            cell(q),
        ])?;
    }
    out.flush()
}

/// Simulates `frames_per_unit` frames per unit and writes them to `path`;
/// returns the number of rows written.
pub fn simulate_to_csv(
    cfg: &SimulatorConfig,
    frames_per_unit: usize,
    path: &Path,
) -> Result<usize, DatasetError> {
    let frames = simulator::generate(cfg, frames_per_unit);
    let werr = |source| DatasetError::Write {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(werr)?;
    }
    let file = std::fs::File::create(path).map_err(werr)?;
    write_csv(&frames, std::io::BufWriter::new(file)).map_err(werr)?;
    Ok(frames.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_has_the_columns_and_a_measured_q_thermal() {
        let cfg = simulator_settings(None, Some(2), Some(7)).unwrap();
        let frames = simulator::generate(&cfg, 5);
        let mut buf = Vec::new();
        write_csv(&frames, &mut buf).unwrap();
        let mut r = csv::Reader::from_reader(buf.as_slice());
        assert_eq!(r.headers().unwrap(), CSV_COLUMNS.as_slice());
        let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 10);
        for (row, f) in rows.iter().zip(&frames) {
            let num = |i: usize| row[i].parse::<f64>().unwrap();
            assert_eq!(num(2), f.ucwit);
            let q = q_thermal(f.ucwit, f.ucwot.unwrap(), f.ucwf);
            assert_eq!(num(11), q);
            assert!(q > 0.0, "a chilled-water coil cools: {q}");
        }
        // Same arguments, same data.
        let again = simulator::generate(&simulator_settings(None, Some(2), Some(7)).unwrap(), 5);
        assert_eq!(frames, again);
    }

    #[test]
    fn scenario_file_errors_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.yaml");
        std::fs::write(&p, "rate_hz: -1\n").unwrap();
        let e = simulator_settings(Some(&p), None, None).unwrap_err();
        assert!(e.to_string().contains("rate_hz"), "{e}");
        std::fs::write(&p, "no_such_key: 1\n").unwrap();
        let e = simulator_settings(Some(&p), None, None).unwrap_err();
        assert!(e.to_string().contains("no_such_key"), "{e}");
    }

    #[test]
    fn live_settings_run_on_the_clock_and_serve_bacnet() {
        let b = SimulatorBacnet::default();
        let cfg = live_simulator_settings(None, Some(2), Some(3), Some(5.0), b).unwrap();
        assert!(cfg.realtime);
        assert_eq!(cfg.start, None, "starts now");
        assert_eq!(cfg.rate_hz, 5.0);
        assert_eq!(cfg.unit_ids(), ["uc-01", "uc-02"]);
        assert_eq!(cfg.bacnet, Some(b));
        let e = live_simulator_settings(None, None, None, Some(0.0), b).unwrap_err();
        assert!(e.to_string().contains("rate_hz"), "{e}");
        // A file asking for generated time is overruled: a device is live.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.yaml");
        std::fs::write(&p, "realtime: false\nrate_hz: 2\n").unwrap();
        let cfg = live_simulator_settings(Some(&p), None, None, None, b).unwrap();
        assert!(cfg.realtime);
        assert_eq!(cfg.rate_hz, 2.0);
    }
}
