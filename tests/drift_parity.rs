//! Parity of `drift` with numpy/scipy: PSI, KS statistic and p-value, Wasserstein and
//! Jensen–Shannon distances, plus the Kolmogorov distributions behind the p-values, must
//! equal `tests/support/drift_reference.py` within 1e-9 relative.
//!
//! The data are generated here with fixed seeds and handed to Python as JSON. Cases cover
//! the exact KS p-value (equal and unequal sizes), the asymptotic one at every branch of
//! scipy's `kstwo` (n ≤ 140 and beyond), ties on the PSI edges, values outside the
//! reference's range, and the engine's exact/asymptotic choice against scipy's: where the
//! two rules agree (m·n ≤ 10,000, or max(m, n) > 10,000) scipy runs with `method="auto"`;
//! in between the test pins scipy's method to the one the engine chose, and checks
//! `KsMethod::ScipyAuto` against scipy's own `auto`.
//!
//! Python: `$TWINFLOW_PYTHON`, else `<crate>/.venv/bin/python` when it exists, else
//! `python3`. It must import numpy and scipy; if it cannot, the test fails (a parity test
//! that skips proves nothing).

use std::path::PathBuf;
use std::process::Command;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use serde::Deserialize;
use twinflow::drift::kolmogorov::{kstwo_sf, smirnov_sf};
use twinflow::drift::report::compare_sorted;
use twinflow::drift::sample::sorted_finite;
use twinflow::drift::{KsMethod, ReferenceProfile};

const TOL: f64 = 1e-9;

struct Case {
    name: String,
    reference: Vec<f64>,
    current: Vec<f64>,
    rust: KsMethod,
    scipy: &'static str,
}

#[allow(clippy::too_many_arguments)]
fn case(
    name: &str,
    seed: u64,
    n_ref: usize,
    n_cur: usize,
    shift: f64,
    scale: f64,
    step: Option<f64>,
    rust: KsMethod,
    scipy: &'static str,
) -> Case {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mean, sd) = (24.0, 2.0);
    let r = Normal::new(mean, sd).unwrap();
    let c = Normal::new(mean + shift * sd, sd * scale).unwrap();
    let round = |x: f64| step.map_or(x, |s| (x / s).round() * s);
    Case {
        name: name.to_string(),
        reference: (0..n_ref).map(|_| round(r.sample(&mut rng))).collect(),
        current: (0..n_cur).map(|_| round(c.sample(&mut rng))).collect(),
        rust,
        scipy,
    }
}

fn cases() -> Vec<Case> {
    use KsMethod::*;
    vec![
        // Exact p-value under both rules (m·n ≤ 10,000).
        case("exact_unequal", 1, 80, 120, 0.3, 1.0, None, Auto, "auto"),
        case("exact_equal", 2, 100, 100, 0.5, 1.0, None, Auto, "auto"),
        case(
            "exact_equal_same",
            3,
            100,
            100,
            0.0,
            1.0,
            None,
            Auto,
            "auto",
        ),
        case("exact_tiny", 4, 7, 13, 1.0, 1.0, None, Auto, "auto"),
        // Asymptotic under both rules (max(m, n) > 10,000): Pelz-Good, 2·Smirnov, 0.
        case(
            "large_same",
            5,
            20_000,
            15_000,
            0.0,
            1.0,
            None,
            Auto,
            "auto",
        ),
        case(
            "large_small_shift",
            6,
            20_000,
            20_000,
            0.05,
            1.0,
            None,
            Auto,
            "auto",
        ),
        case(
            "large_shift",
            7,
            20_000,
            15_000,
            0.3,
            1.0,
            None,
            Auto,
            "auto",
        ),
        case(
            "large_spread",
            8,
            20_000,
            12_000,
            0.0,
            1.3,
            None,
            Auto,
            "auto",
        ),
        // Window of 100 against 20,000: n = round(m·n/(m+n)) = 100 ≤ 140 (DMTW, Pomeranz,
        // Smirnov) depending on D.
        case("w100_same", 9, 20_000, 100, 0.0, 1.0, None, Auto, "auto"),
        case("w100_shift", 10, 20_000, 100, 0.35, 1.0, None, Auto, "auto"),
        case(
            "w100_big_shift",
            11,
            20_000,
            100,
            1.2,
            1.0,
            None,
            Auto,
            "auto",
        ),
        // The streaming shape: a window of 500 against 50,000.
        case("w500_same", 12, 50_000, 500, 0.0, 1.0, None, Auto, "auto"),
        case(
            "w500_half_sigma",
            13,
            50_000,
            500,
            0.5,
            1.0,
            None,
            Auto,
            "auto",
        ),
        // Where the rules differ: the engine is asymptotic, scipy's auto exact.
        case("mid_engine", 14, 5_000, 500, 0.2, 1.0, None, Auto, "asymp"),
        case(
            "mid_scipy_auto",
            14,
            5_000,
            500,
            0.2,
            1.0,
            None,
            ScipyAuto,
            "auto",
        ),
        case(
            "mid_scipy_auto_same",
            15,
            3_000,
            700,
            0.0,
            1.0,
            None,
            ScipyAuto,
            "auto",
        ),
        case("mid_exact", 16, 300, 700, 0.15, 1.0, None, Exact, "exact"),
        // Ties: values on a 0.5 grid, so many sit exactly on PSI edges.
        case(
            "ties",
            17,
            3_000,
            2_000,
            0.1,
            1.0,
            Some(0.5),
            ScipyAuto,
            "auto",
        ),
        case(
            "ties_large",
            18,
            30_000,
            20_000,
            0.1,
            1.0,
            Some(0.25),
            Auto,
            "auto",
        ),
        // A current far wider than the reference: values outside its range count.
        case(
            "outside_range",
            19,
            1_000,
            800,
            0.0,
            3.0,
            None,
            Exact,
            "exact",
        ),
    ]
}

/// (n, x) points covering every branch of scipy's `kstwo.sf`.
fn kstwo_points() -> Vec<(u64, f64)> {
    let mut v = Vec::new();
    for n in [
        1u64, 2, 5, 10, 50, 100, 140, 141, 200, 495, 1000, 5000, 25_000, 100_000, 100_001,
    ] {
        let nf = n as f64;
        let mut xs = vec![0.45 / nf, 0.7 / nf, 1.0 / nf, 1.5 / nf];
        for c in [
            0.3, 0.7, 0.754, 0.76, 1.0, 2.0, 2.1, 2.3, 3.0, 4.5, 10.0, 50.0, 200.0, 369.0,
        ] {
            xs.push((c / nf).sqrt());
        }
        // Just inside scipy's Durbin-matrix region for large n (n·x^1.5 ≤ 1.4).
        xs.push((1.4 / nf).powf(2.0 / 3.0) * 0.9);
        xs.extend([0.3, 0.5, 0.6, 0.9, 1.0 - 1.5 / nf, 1.0 - 0.5 / nf]);
        for x in xs {
            if x > 0.0 && x < 1.0 {
                v.push((n, x));
            }
        }
    }
    v
}

fn smirnov_points() -> Vec<(u64, f64)> {
    let mut v = Vec::new();
    for n in [2u64, 10, 100, 1000, 25_000] {
        for x in [0.01, 0.05, 0.1, 0.3, 0.5, 0.8, 0.99] {
            v.push((n, x));
        }
    }
    v
}

fn python() -> String {
    if let Ok(p) = std::env::var("TWINFLOW_PYTHON") {
        return p;
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    if venv.exists() {
        return venv.display().to_string();
    }
    "python3".into()
}

fn exact<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map_err(serde::de::Error::custom)
}

fn exact_vec<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|s| s.parse().map_err(serde::de::Error::custom))
        .collect()
}

#[derive(Debug, Deserialize)]
struct PyCase {
    name: String,
    #[serde(deserialize_with = "exact_vec")]
    edges: Vec<f64>,
    #[serde(deserialize_with = "exact_vec")]
    reference_proportions: Vec<f64>,
    #[serde(deserialize_with = "exact_vec")]
    current_proportions: Vec<f64>,
    #[serde(deserialize_with = "exact")]
    psi: f64,
    #[serde(deserialize_with = "exact")]
    ks_statistic: f64,
    #[serde(deserialize_with = "exact")]
    ks_pvalue: f64,
    #[serde(deserialize_with = "exact")]
    wasserstein: f64,
    #[serde(deserialize_with = "exact")]
    js: f64,
}

#[derive(Debug, Deserialize)]
struct PyOut {
    versions: serde_json::Value,
    cases: Vec<PyCase>,
    #[serde(deserialize_with = "exact_vec")]
    kstwo: Vec<f64>,
    #[serde(deserialize_with = "exact_vec")]
    smirnov: Vec<f64>,
    warnings: Vec<String>,
}

fn run_python(cases: &[Case], kstwo: &[(u64, f64)], smirnov: &[(u64, f64)]) -> PyOut {
    let python = python();
    let probe = Command::new(&python)
        .args(["-c", "import numpy, scipy"])
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `{python}` for the drift parity test: {e}. Set TWINFLOW_PYTHON to a \
                 Python with numpy and scipy, or create <crate>/.venv: \
                 python3 -m venv .venv && .venv/bin/pip install numpy scipy"
            )
        });
    assert!(
        probe.status.success(),
        "`{python}` cannot import numpy and scipy, which the drift parity test needs:\n{}\n\
         Set TWINFLOW_PYTHON to a Python that has them, or create <crate>/.venv: \
         python3 -m venv .venv && .venv/bin/pip install numpy scipy",
        String::from_utf8_lossy(&probe.stderr)
    );
    let spec = serde_json::json!({
        "cases": cases.iter().map(|c| serde_json::json!({
            "name": c.name, "reference": c.reference, "current": c.current, "method": c.scipy,
        })).collect::<Vec<_>>(),
        "kstwo": kstwo,
        "smirnov": smirnov,
    });
    let file = tempfile::NamedTempFile::new().expect("create temp file");
    serde_json::to_writer(&file, &spec).expect("write cases");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/drift_reference.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(file.path())
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{python}`: {e}"));
    assert!(
        out.status.success(),
        "{} failed ({}):\n{}",
        script.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("reference output is not the expected JSON")
}

/// Relative error; values both below 1e-290 (subnormal territory, where scipy and this crate
/// legitimately round differently) compare absolutely.
fn rel(rust: f64, py: f64) -> f64 {
    if rust == py {
        0.0
    } else if rust.abs() < 1e-290 && py.abs() < 1e-290 {
        (rust - py).abs()
    } else {
        (rust - py).abs() / py.abs()
    }
}

#[derive(Default)]
struct MaxErr(Vec<(&'static str, f64, String)>);

impl MaxErr {
    fn check(&mut self, stat: &'static str, rust: f64, py: f64, ctx: &str) {
        let e = rel(rust, py);
        assert!(
            e <= TOL,
            "{stat} differs: rust {rust:e}, python {py:e} (relative {e:e}) in {ctx}"
        );
        match self.0.iter_mut().find(|(s, _, _)| *s == stat) {
            Some(entry) if e > entry.1 => {
                entry.1 = e;
                entry.2 = ctx.to_string();
            }
            Some(_) => {}
            None => self.0.push((stat, e, ctx.to_string())),
        }
    }
}

#[test]
fn drift_statistics_match_numpy_and_scipy() {
    let cases = cases();
    let kstwo = kstwo_points();
    let smirnov = smirnov_points();
    let py = run_python(&cases, &kstwo, &smirnov);
    assert!(py.warnings.is_empty(), "scipy warned: {:?}", py.warnings);
    assert_eq!(py.cases.len(), cases.len());

    let mut max = MaxErr::default();
    let mut exact_cases = 0;
    for (c, p) in cases.iter().zip(&py.cases) {
        assert_eq!(c.name, p.name);
        let profile = ReferenceProfile::new(&c.name, &c.reference).unwrap();
        let current = sorted_finite(&c.name, &c.current).unwrap();
        let s = compare_sorted(&profile, &current, c.rust).unwrap();
        let ctx = format!(
            "case {} (m {}, n {}, {:?})",
            c.name,
            c.reference.len(),
            c.current.len(),
            c.rust
        );

        assert_eq!(profile.edges(), &p.edges[..], "edges differ in {ctx}");
        assert_eq!(
            profile.proportions(),
            &p.reference_proportions[..],
            "reference proportions differ in {ctx}"
        );
        assert_eq!(
            profile.current_proportions(&current),
            p.current_proportions,
            "current proportions differ in {ctx}"
        );
        // The engine's exact/asymptotic choice is the one scipy made.
        let scipy_exact = match c.scipy {
            "exact" => true,
            "asymp" => false,
            _ => c.reference.len().max(c.current.len()) <= 10_000,
        };
        assert_eq!(
            s.ks_exact, scipy_exact,
            "exact/asymptotic choice differs in {ctx}"
        );
        exact_cases += usize::from(s.ks_exact);

        max.check("PSI", s.psi, p.psi, &ctx);
        max.check("KS D", s.ks_statistic, p.ks_statistic, &ctx);
        max.check("KS p", s.ks_pvalue, p.ks_pvalue, &ctx);
        max.check("Wasserstein", s.wasserstein, p.wasserstein, &ctx);
        max.check("JS", s.js, p.js, &ctx);
    }
    assert!(exact_cases >= 6, "too few exact cases: {exact_cases}");

    for (&(n, x), &p) in kstwo.iter().zip(&py.kstwo) {
        max.check(
            "kstwo.sf",
            kstwo_sf(n, x),
            p,
            &format!("kstwo.sf({x:e}, {n})"),
        );
    }
    for (&(n, x), &p) in smirnov.iter().zip(&py.smirnov) {
        max.check(
            "smirnov",
            smirnov_sf(n, x),
            p,
            &format!("smirnov({n}, {x})"),
        );
    }

    println!(
        "drift parity against numpy {} / scipy {}: {} cases, {} kstwo and {} smirnov points",
        py.versions["numpy"],
        py.versions["scipy"],
        cases.len(),
        kstwo.len(),
        smirnov.len()
    );
    for (stat, e, ctx) in &max.0 {
        println!("  {stat:<12} max relative error {e:.1e}  ({ctx})");
    }
}
