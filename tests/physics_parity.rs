//! Parity of `model::physics` with the Python reference (`reference/coil_model.py`).
//!
//! Random valid inputs (fixed seed) go to `tests/support/coil_reference.py`, which runs the
//! reference's `fan_airflow` + `coil` at default parameters; every output must agree to 1e-6.
//! The reference lives in the shared folder (`$TWINFLOW_SHARED`, else `<crate>/../shared`);
//! if it or python3 is missing the test fails: a parity test that skips proves nothing.

use std::path::PathBuf;
use std::process::Command;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;
use twinflow::model::physics::{coil, fan_airflow, CoilInputs, PhysicsParams, Regime};

const SAMPLES: usize = 400;
const TOL: f64 = 1e-6;
const MIN_PER_REGIME: usize = 30;

/// One reference result. Numbers arrive as Python `repr` strings (see the script) so that
/// they convert to exactly the f64 Python computed.
#[derive(Debug, Deserialize)]
#[allow(non_snake_case)]
struct Reference {
    #[serde(deserialize_with = "exact")]
    UCAF: f64,
    #[serde(deserialize_with = "exact")]
    fan_fraction: f64,
    #[serde(deserialize_with = "exact")]
    UCAOT: f64,
    #[serde(deserialize_with = "exact")]
    UCWOT: f64,
    #[serde(deserialize_with = "exact")]
    Q_total: f64,
    #[serde(deserialize_with = "exact")]
    Q_sens: f64,
    #[serde(deserialize_with = "exact")]
    Q_lat: f64,
    #[serde(deserialize_with = "exact")]
    UA: f64,
    #[serde(deserialize_with = "exact")]
    eps: f64,
    #[serde(deserialize_with = "exact")]
    Tdp_in: f64,
    #[serde(deserialize_with = "exact")]
    Tsurf_out: f64,
    #[serde(deserialize_with = "exact_opt")]
    RH_out: Option<f64>,
    #[serde(deserialize_with = "exact")]
    cond_kg_h: f64,
    regime: String,
}

fn exact<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map_err(serde::de::Error::custom)
}

fn exact_opt<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Option::<String>::deserialize(d)?
        .map(|s| s.parse().map_err(serde::de::Error::custom))
        .transpose()
}

fn shared_dir() -> PathBuf {
    match std::env::var_os("TWINFLOW_SHARED") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"),
    }
}

fn sample_inputs() -> Vec<CoilInputs> {
    let mut rng = ChaCha8Rng::seed_from_u64(20261204);
    let mut v: Vec<CoilInputs> = (0..SAMPLES)
        .map(|_| CoilInputs::random_valid(&mut rng))
        .collect();
    // The reference script's own example (a "dry(max)" point) and its wet variant.
    v.push(CoilInputs::EXAMPLE);
    v.push(CoilInputs {
        ucwf: 40.0,
        ..CoilInputs::EXAMPLE
    });
    v
}

fn run_reference(inputs: &[CoilInputs]) -> Vec<Reference> {
    let shared = shared_dir();
    let model = shared.join("reference/coil_model.py");
    assert!(
        model.is_file(),
        "Python reference not found at {} (set TWINFLOW_SHARED to the folder holding \
         reference/coil_model.py); this parity test must not be skipped",
        model.display()
    );
    let json: Vec<serde_json::Value> = inputs
        .iter()
        .map(|x| {
            serde_json::json!({
                "UCWIT": x.ucwit, "UCAIT": x.ucait, "UCWF": x.ucwf,
                "UCAIH": x.ucaih, "AMBT": x.ambt, "UCTSP": x.uctsp,
            })
        })
        .collect();
    let file = tempfile::NamedTempFile::new().expect("create temp file");
    serde_json::to_writer(&file, &json).expect("write inputs");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/coil_reference.py");
    let python = std::env::var("TWINFLOW_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(&python)
        .arg(&script)
        .arg(file.path())
        .env("TWINFLOW_SHARED", &shared)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{python}` (needed for the parity test): {e}"));
    assert!(
        out.status.success(),
        "{} failed ({}):\n{}",
        script.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("reference output is not the expected JSON")
}

#[test]
fn rust_physics_matches_python_reference() {
    let p = PhysicsParams::default();
    let inputs = sample_inputs();
    let refs = run_reference(&inputs);
    assert_eq!(refs.len(), inputs.len());

    const NAMES: [&str; 12] = [
        "UCAF", "fan", "UCAOT", "UCWOT", "Q_total", "Q_sens", "Q_lat", "UA", "eps", "Tdp", "Tsurf",
        "RH_out",
    ];
    let mut max_err = [0.0f64; NAMES.len()];
    let (mut dry, mut dry_max, mut wet) = (0usize, 0usize, 0usize);
    for (x, r) in inputs.iter().zip(&refs) {
        let (ucaf, u) = fan_airflow(&p, x.ucait, x.uctsp);
        let s = coil(&p, x.ucwit, x.ucait, x.ucwf, x.ucaih, ucaf);
        let ctx = format!("input {x:?}\n rust {s:?}\n python {r:?}");
        assert_eq!(
            s.regime.reference_label(),
            r.regime,
            "regime differs: {ctx}"
        );
        match s.regime {
            Regime::Dry => dry += 1,
            Regime::DryMax => dry_max += 1,
            Regime::Wet => wet += 1,
        }
        let rh = match (s.rh_out, r.RH_out) {
            (Some(a), Some(b)) => (a - b).abs(),
            (None, None) => 0.0,
            _ => panic!("RH_out presence differs: {ctx}"),
        };
        let errs = [
            (ucaf - r.UCAF).abs(),
            (u - r.fan_fraction).abs(),
            (s.ucaot - r.UCAOT).abs(),
            (s.ucwot - r.UCWOT).abs(),
            (s.q_total - r.Q_total).abs(),
            (s.q_sensible - r.Q_sens).abs(),
            (s.q_latent - r.Q_lat).abs(),
            (s.ua - r.UA).abs(),
            (s.eps - r.eps).abs(),
            (s.t_dew_in - r.Tdp_in).abs(),
            (s.t_surf_out - r.Tsurf_out).abs(),
            rh,
        ];
        for (i, e) in errs.iter().enumerate() {
            assert!(*e <= TOL, "{} differs by {e:e}: {ctx}", NAMES[i]);
            max_err[i] = max_err[i].max(*e);
        }
        assert!(
            (s.condensate_kg_h - r.cond_kg_h).abs() <= TOL,
            "condensate differs: {ctx}"
        );
    }
    let summary: Vec<String> = NAMES
        .iter()
        .zip(max_err)
        .map(|(n, e)| format!("{n} {e:.1e}"))
        .collect();
    println!(
        "physics parity: {} inputs (dry {dry}, dry(max) {dry_max}, wet {wet}); max abs error: {}",
        inputs.len(),
        summary.join(", ")
    );
    assert!(
        dry + dry_max >= MIN_PER_REGIME && wet >= MIN_PER_REGIME,
        "sample must exercise both regimes (>= {MIN_PER_REGIME} each): dry {dry}, \
         dry(max) {dry_max}, wet {wet}"
    );
}
