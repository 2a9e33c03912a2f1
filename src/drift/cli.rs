//! `twinflow drift --reference A.csv --current B.csv [--format json|table] [--features ...]`:
//! the offline drift report, through the same profile, statistics and rules as the monitor.
//!
//! The reference file plays the reference period; the whole current file is one window.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use chrono::Utc;

use super::data::{self, DataError};
use super::report::{build_report, DriftConfig, ReferenceSet, ReportError, StatusRule};
use crate::pipeline::message::{DriftReport, DriftStatus};

/// Output format of the offline report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// The product's summary, then one row per feature.
    #[default]
    Table,
    /// The [`DriftReport`] as JSON (unit `offline`).
    Json,
}

impl FromStr for OutputFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "table" => Ok(OutputFormat::Table),
            "json" => Ok(OutputFormat::Json),
            other => Err(format!(
                "unknown format \"{other}\" (expected json or table)"
            )),
        }
    }
}

/// Arguments of the offline drift command.
#[derive(Debug, Clone)]
pub struct DriftArgs {
    /// CSV of the reference period.
    pub reference: PathBuf,
    /// CSV of the period to check.
    pub current: PathBuf,
    pub format: OutputFormat,
    /// Columns to compare; `None`: the model inputs present in the reference file.
    pub features: Option<Vec<String>>,
    /// Status rule (`"original".parse()` or `"effect_size".parse()`).
    pub rule: StatusRule,
}

/// Why the offline command produced no report.
#[derive(Debug, thiserror::Error)]
pub enum DriftCliError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("{}: {source}", path.display())]
    Report {
        path: PathBuf,
        #[source]
        source: ReportError,
    },
    #[error("cannot render the report as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl DriftCliError {
    /// Suggested process exit code: 2 for anything wrong with the input files (including
    /// too few rows for a verdict), 1 for a failure of the program itself.
    pub fn exit_code(&self) -> u8 {
        match self {
            DriftCliError::Data(_) | DriftCliError::Report { .. } => 2,
            DriftCliError::Json(_) => 1,
        }
    }
}

/// Runs the offline drift report and returns the text to print (JSON or table).
pub fn run_drift_command(args: DriftArgs) -> Result<String, DriftCliError> {
    let features = match &args.features {
        Some(list) => {
            let mut unique: Vec<String> = Vec::new();
            for f in list.iter().flat_map(|f| f.split(',')).map(str::trim) {
                if !f.is_empty() && !unique.iter().any(|u| u == f) {
                    unique.push(f.to_string());
                }
            }
            if unique.is_empty() {
                return Err(DataError::NoFeatures.into());
            }
            unique
        }
        None => {
            let header = data::read_header(&args.reference)?;
            let defaults = data::default_features(&header);
            if defaults.is_empty() {
                return Err(DataError::NoDefaultFeatures {
                    path: args.reference.clone(),
                    available: header,
                }
                .into());
            }
            defaults
        }
    };
    let reference_columns = data::load_columns(&args.reference, &features)?;
    let current_columns = data::load_columns(&args.current, &features)?;
    let config = DriftConfig {
        rule: args.rule.clone(),
        ..DriftConfig::default()
    };
    let reference = ReferenceSet::from_columns(reference_columns.iter().map(|(k, v)| (k, v)))
        .map_err(|source| DriftCliError::Report {
            path: args.reference.clone(),
            source,
        })?;
    let report = build_report(
        &config,
        &reference,
        current_columns.iter().map(|(k, v)| (k, v)),
        "offline",
        Utc::now(),
    )
    .map_err(|source| DriftCliError::Report {
        // A size problem is the reference's when its check failed, else the window's.
        path: match &source {
            ReportError::InsufficientData(d) if d.what.ends_with("in the reference") => {
                args.reference.clone()
            }
            _ => args.current.clone(),
        },
        source,
    })?;
    match args.format {
        OutputFormat::Json => Ok(serde_json::to_string_pretty(&report)? + "\n"),
        OutputFormat::Table => Ok(render_table(
            &report,
            &features,
            &args,
            reference_columns[0].1.len(),
        )),
    }
}

fn status_name(s: DriftStatus) -> &'static str {
    match s {
        DriftStatus::Stable => "STABLE",
        DriftStatus::Warning => "WARNING",
        DriftStatus::Critical => "CRITICAL",
    }
}

/// p-values span hundreds of decades: fixed notation while readable, scientific below.
fn pvalue(p: f64) -> String {
    if p >= 1e-4 {
        format!("{p:.4}")
    } else {
        format!("{p:.2e}")
    }
}

fn render_table(report: &DriftReport, order: &[String], args: &DriftArgs, n_ref: usize) -> String {
    let s = &report.summary;
    let mut out = String::new();
    let file = |p: &Path| p.display().to_string();
    let _ = writeln!(
        out,
        "Drift report: {} ({} rows) against reference {} ({} rows), rule {}",
        file(&args.current),
        report.window_size,
        file(&args.reference),
        n_ref,
        args.rule
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "Summary");
    let _ = writeln!(out, "  Overall status   {}", status_name(s.overall_status));
    let _ = writeln!(out, "  Total features   {}", s.total_features);
    let _ = writeln!(out, "  Critical         {}", s.critical);
    let _ = writeln!(out, "  Warning          {}", s.warning);
    let _ = writeln!(out, "  Stable           {}", s.stable);
    let _ = writeln!(out, "  Drift            {:.1} %", s.drift_percentage);
    let _ = writeln!(out);
    let _ = writeln!(out, "Feature details");
    let width = order.iter().map(String::len).max().unwrap_or(7).max(7);
    let _ = writeln!(
        out,
        "  {:<width$}  {:<8}  {:>8}  {:>6}  {:>9}  {:>11}  {:>6}  {:>13}",
        "Feature", "Status", "PSI", "KS D", "KS p", "Wasserstein", "JS", "Mean change %"
    );
    for name in order {
        let Some(f) = report.features.get(name) else {
            continue;
        };
        let _ = writeln!(
            out,
            "  {:<width$}  {:<8}  {:>8.4}  {:>6.4}  {:>9}  {:>11.4}  {:>6.4}  {:>+13.2}",
            name,
            status_name(f.status),
            f.psi,
            f.ks_statistic,
            pvalue(f.ks_pvalue),
            f.wasserstein,
            f.js,
            f.mean_change_pct
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use rand_distr::{Distribution, Normal};
    use std::io::Write;

    fn csv_file(rows: usize, seed: u64, shift: f64) -> tempfile::NamedTempFile {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let d = Normal::new(0.0, 1.0).unwrap();
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(f, "ts,UCWIT,UCAIT,UCWF,UCAIH,AMBT,UCTSP,UCAOT").unwrap();
        for i in 0..rows {
            let mut z = || d.sample(&mut rng);
            writeln!(
                f,
                "{i},{},{},{},{},{},{},{}",
                9.0 + 0.8 * z(),
                25.0 + shift + 2.0 * z(),
                15.0 + z(),
                50.0 + 5.0 * z(),
                22.0 + z(),
                21.0 + 0.5 * z(),
                17.0 + z()
            )
            .unwrap();
        }
        f
    }

    fn args(r: &Path, c: &Path, format: OutputFormat) -> DriftArgs {
        DriftArgs {
            reference: r.to_path_buf(),
            current: c.to_path_buf(),
            format,
            features: None,
            rule: StatusRule::default(),
        }
    }

    #[test]
    fn table_report_on_default_features() {
        let r = csv_file(3000, 1, 0.0);
        let c = csv_file(1000, 2, 2.0);
        let out = run_drift_command(args(r.path(), c.path(), OutputFormat::Table)).unwrap();
        assert!(out.contains("Overall status   CRITICAL"), "{out}");
        assert!(out.contains("Total features   6"), "{out}");
        assert!(out.contains("Drift            16.7 %"), "{out}");
        let rows: Vec<&str> = out
            .lines()
            .skip_while(|l| !l.contains("Mean change %"))
            .skip(1)
            .collect();
        assert_eq!(rows.len(), 6, "{out}");
        assert!(
            rows[0].trim_start().starts_with("UCWIT"),
            "input order: {out}"
        );
        assert!(
            rows[1].contains("UCAIT") && rows[1].contains("CRITICAL"),
            "{out}"
        );
        assert!(
            !out.contains("UCAOT"),
            "outputs are not default features: {out}"
        );
    }

    #[test]
    fn json_report_is_the_drift_report() {
        let r = csv_file(500, 3, 0.0);
        let c = csv_file(400, 4, 0.0);
        let mut a = args(r.path(), c.path(), OutputFormat::Json);
        a.features = Some(vec!["UCAOT,UCWIT".into(), "UCWIT".into()]);
        a.rule = "original".parse().unwrap();
        let out = run_drift_command(a).unwrap();
        let report: DriftReport = serde_json::from_str(&out).unwrap();
        assert_eq!(&*report.unit, "offline");
        assert_eq!(report.window_size, 400);
        assert_eq!(
            report.features.keys().collect::<Vec<_>>(),
            ["UCAOT", "UCWIT"]
        );
    }

    #[test]
    fn input_errors_exit_2() {
        let r = csv_file(500, 5, 0.0);
        let small = csv_file(50, 6, 0.0);
        let err = run_drift_command(args(r.path(), small.path(), OutputFormat::Table)).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let msg = err.to_string();
        assert!(
            msg.starts_with(&small.path().display().to_string()),
            "{msg}"
        );
        assert!(msg.contains("insufficient data: 50 samples"), "{msg}");

        let mut a = args(r.path(), small.path(), OutputFormat::Table);
        a.features = Some(vec!["nope".into()]);
        let err = run_drift_command(a).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("missing column(s) nope"), "{err}");

        let mut plain = tempfile::NamedTempFile::new().unwrap();
        writeln!(plain, "a,b\n1,2").unwrap();
        let err = run_drift_command(args(plain.path(), r.path(), OutputFormat::Json)).unwrap_err();
        assert!(
            err.to_string().contains("none of the model inputs"),
            "{err}"
        );
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn formats_parse() {
        assert_eq!("json".parse::<OutputFormat>(), Ok(OutputFormat::Json));
        assert_eq!("table".parse::<OutputFormat>(), Ok(OutputFormat::Table));
        assert!("yaml".parse::<OutputFormat>().is_err());
    }
}
