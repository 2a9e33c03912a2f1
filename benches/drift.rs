//! Cost of drift reports: a 50,000 × 6 reference against a 50,000 × 6 current (reference
//! profiling and window comparison timed separately and together), and one step of a
//! sliding window of 500 over a prebuilt 50,000-sample reference. After the criterion
//! groups, the same full report is timed against its numpy/scipy equivalent
//! (`benches/drift_numpy.py`) in the same run, on the same data, and the ratio printed.
//!
//! The current data mix what a report meets: features with no drift (KS p-value by
//! Pelz-Good), a 0.05σ and a 0.2σ shift (the p-value is the long Smirnov sum) and a 0.5σ
//! shift (p underflows early).
//!
//! `cargo bench --bench drift`; Python: `$TWINFLOW_PYTHON`, else `.venv/bin/python`, else
//! `python3` (the comparison is skipped, with the reason, if numpy/scipy are missing).

use std::hint::black_box;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use criterion::{Criterion, Throughput};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use std::collections::BTreeMap;
use twinflow::drift::{
    build_report, compare, compare_sorted, report_from_stats, DriftConfig, ReferenceSet,
    SortedWindow,
};

const ROWS: usize = 50_000;
const WINDOW: usize = 500;

/// (feature, mean, sd, shift of the current data in sd).
const FEATURES: [(&str, f64, f64, f64); 6] = [
    ("UCWIT", 9.0, 0.8, 0.0),
    ("UCAIT", 25.0, 2.0, 0.05),
    ("UCWF", 15.0, 1.5, 0.5),
    ("UCAIH", 50.0, 5.0, 0.0),
    ("AMBT", 22.0, 2.0, 0.2),
    ("UCTSP", 21.0, 0.5, 0.0),
];

type Columns = Vec<(String, Vec<f64>)>;

fn data() -> (Columns, Columns) {
    let mut rng = ChaCha8Rng::seed_from_u64(20261204);
    let mut reference = Vec::new();
    let mut current = Vec::new();
    for (name, mean, sd, shift) in FEATURES {
        let r = Normal::new(mean, sd).unwrap();
        let c = Normal::new(mean + shift * sd, sd).unwrap();
        reference.push((
            name.to_string(),
            (0..ROWS).map(|_| r.sample(&mut rng)).collect(),
        ));
        current.push((
            name.to_string(),
            (0..ROWS).map(|_| c.sample(&mut rng)).collect(),
        ));
    }
    (reference, current)
}

fn ts() -> DateTime<Utc> {
    "2026-12-04T10:00:00Z".parse().unwrap()
}

fn profiles(reference: &Columns) -> ReferenceSet {
    ReferenceSet::from_columns(reference.iter().map(|(k, v)| (k, v))).unwrap()
}

fn full_report(config: &DriftConfig, set: &ReferenceSet, current: &Columns) -> usize {
    let r = build_report(
        config,
        set,
        current.iter().map(|(k, v)| (k, v)),
        "bench",
        ts(),
    )
    .unwrap();
    r.summary.critical
}

/// The comparison on one thread: the per-core cost (a monitor with many units).
fn report_one_thread(config: &DriftConfig, set: &ReferenceSet, current: &Columns) -> usize {
    let mut stats = BTreeMap::new();
    for (name, values) in current {
        let p = set.get(name).unwrap();
        stats.insert(
            name.clone(),
            compare(name, p, values, config.ks_method).unwrap(),
        );
    }
    report_from_stats(config, "bench", ts(), &stats)
        .unwrap()
        .summary
        .critical
}

/// Six sorted windows of `WINDOW`, filled from the current data.
fn windows(current: &Columns) -> Vec<SortedWindow> {
    current
        .iter()
        .map(|(_, v)| {
            let mut w = SortedWindow::new(WINDOW);
            for &x in &v[..WINDOW] {
                w.push(x).unwrap();
            }
            w
        })
        .collect()
}

/// One sliding step: a new sample per feature, the six comparisons and the report.
fn slide(
    config: &DriftConfig,
    set: &ReferenceSet,
    current: &Columns,
    windows: &mut [SortedWindow],
    i: &mut usize,
) -> usize {
    *i = (*i + 1) % ROWS;
    let mut stats = BTreeMap::new();
    for ((name, values), w) in current.iter().zip(windows.iter_mut()) {
        w.push(values[*i]).unwrap();
        let p = set.get(name).unwrap();
        stats.insert(
            name.clone(),
            compare_sorted(p, w.sorted(), config.ks_method).unwrap(),
        );
    }
    report_from_stats(config, "bench", ts(), &stats)
        .unwrap()
        .summary
        .critical
}

fn benches(c: &mut Criterion, reference: &Columns, current: &Columns) {
    let config = DriftConfig::default();
    let set = profiles(reference);

    let mut g = c.benchmark_group("drift_50k_x6");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(20)
        .throughput(Throughput::Elements((ROWS * FEATURES.len()) as u64));
    g.bench_function("profiles", |b| b.iter(|| profiles(black_box(reference))));
    g.bench_function("compare", |b| {
        b.iter(|| full_report(&config, &set, black_box(current)))
    });
    g.bench_function("compare_one_thread", |b| {
        b.iter(|| report_one_thread(&config, &set, black_box(current)))
    });
    g.bench_function("full", |b| {
        b.iter(|| full_report(&config, &profiles(black_box(reference)), current))
    });
    g.finish();

    let mut g = c.benchmark_group("drift_window_500");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(20)
        .throughput(Throughput::Elements(1));
    let mut ws = windows(current);
    let mut i = WINDOW;
    g.bench_function("slide_one_step_6_features", |b| {
        b.iter(|| slide(&config, &set, current, &mut ws, &mut i))
    });
    g.finish();
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

/// Best of `n` wall times of `f`, in milliseconds.
fn best_ms(n: usize, mut f: impl FnMut()) -> f64 {
    (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .fold(f64::INFINITY, f64::min)
}

fn write_columns(path: &std::path::Path, columns: &Columns) -> std::io::Result<()> {
    let mut bytes = Vec::with_capacity(ROWS * FEATURES.len() * 8);
    for (_, v) in columns {
        for x in v {
            bytes.extend_from_slice(&x.to_le_bytes());
        }
    }
    std::fs::write(path, bytes)
}

fn compare_with_numpy(reference: &Columns, current: &Columns) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (rp, cp) = (dir.path().join("ref.bin"), dir.path().join("cur.bin"));
    write_columns(&rp, reference).map_err(|e| e.to_string())?;
    write_columns(&cp, current).map_err(|e| e.to_string())?;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/drift_numpy.py");
    let python = python();
    let out = Command::new(&python)
        .arg(&script)
        .arg(&rp)
        .arg(&cp)
        .arg(FEATURES.len().to_string())
        .arg("5")
        .output()
        .map_err(|e| format!("cannot run `{python}`: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`{python} {}` failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let py: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("unexpected output from {}: {e}", script.display()))?;
    let py_ms = |k: &str| py[k].as_f64().unwrap_or(f64::NAN);

    let config = DriftConfig::default();
    let set = profiles(reference);
    let rust = [
        (
            "profile",
            best_ms(10, || {
                black_box(profiles(reference));
            }),
        ),
        (
            "compare",
            best_ms(10, || {
                black_box(full_report(&config, &set, current));
            }),
        ),
        (
            "compare (1 thread)",
            best_ms(10, || {
                black_box(report_one_thread(&config, &set, current));
            }),
        ),
        (
            "full",
            best_ms(10, || {
                black_box(full_report(&config, &profiles(reference), current));
            }),
        ),
    ];
    let python_ms = [
        py_ms("profile_ms"),
        py_ms("compare_ms"),
        py_ms("compare_ms"),
        py_ms("full_ms"),
    ];
    println!(
        "\ndrift report, {ROWS} x {} against {ROWS} x {}, best of 10 (Rust) / 5 (Python), \
         same run; numpy {}, scipy {}:",
        FEATURES.len(),
        FEATURES.len(),
        py["numpy"].as_str().unwrap_or("?"),
        py["scipy"].as_str().unwrap_or("?")
    );
    println!(
        "  {:<20} {:>10} {:>14} {:>8}",
        "", "Rust ms", "numpy/scipy ms", "ratio"
    );
    for ((name, r), p) in rust.iter().zip(python_ms) {
        println!("  {name:<20} {r:>10.2} {p:>14.2} {:>7.1}x", p / r);
    }
    Ok(())
}

fn main() {
    let (reference, current) = data();
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c, &reference, &current);
    c.final_summary();
    // Only under `cargo bench`, which passes --bench: `cargo test --benches` runs each
    // bench once as a smoke test, where a Python run of seconds has no place.
    let args: Vec<String> = std::env::args().collect();
    let benching = args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--list");
    if benching {
        if let Err(why) = compare_with_numpy(&reference, &current) {
            println!("\nnumpy/scipy comparison skipped: {why}");
        }
    }
}
