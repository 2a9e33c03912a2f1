//! Data and model drift: pure statistics, the status rules and the report builder, shared
//! by the streaming drift monitor and the offline `twinflow drift` command.
//!
//! Nothing here does I/O except the CSV loader ([`data`]) used by the offline command
//! ([`cli`]); the monitor feeds windows in and gets [`DriftReport`]s out.
//!
//! # Layout
//! - [`psi`]: reference-quantile bins and PSI, and [`ReferenceProfile`], the per-feature
//!   reference statistics computed once (sorted samples, edges, bin proportions, mean, std)
//!   and persisted by the monitor.
//! - [`ks`]: the two-sample KS test on sorted data; [`kolmogorov`]: the distributions behind
//!   its p-values (exact and finite-n asymptotic, as scipy computes them); [`ecdf`]: the KS
//!   statistic and the Wasserstein distance from one merge.
//! - [`wasserstein`], [`js`]: Wasserstein-1 (in reference σ) and Jensen–Shannon distances.
//! - [`performance`]: MAE, RMSE, R² per output and the PERFORMANCE_DEGRADED rule.
//! - [`report`]: [`FeatureStats`], the status rules ([`StatusRule`]: the product's original
//!   rule and the effect-size default), the minimum window, and the report builder.
//! - [`window`]: a count-based sliding window kept sorted as samples arrive.
//! - [`sample`]: sorting and summation shared by the statistics.
//! - [`data`], [`cli`]: CSV loading and the offline report command.
//!
//! # Parity
//! PSI, the KS statistic and p-value, the Wasserstein and JS distances equal a numpy/scipy
//! computation within 1e-9 relative (`tests/drift_parity.rs`, which runs
//! `tests/support/drift_reference.py`).
//!
//! [`DriftReport`]: crate::pipeline::message::DriftReport

pub mod cli;
pub mod data;
pub mod ecdf;
pub mod js;
pub mod kolmogorov;
pub mod ks;
pub mod performance;
pub mod psi;
pub mod report;
pub mod sample;
pub mod wasserstein;
pub mod window;

pub use ks::{KsMethod, KsResult};
pub use performance::{PerformanceCheck, PerformanceLimit, PerformanceMetrics, PerformanceRule};
pub use psi::ReferenceProfile;
pub use report::{
    build_report, compare, compare_sorted, report_from_stats, DriftConfig, EffectSizeRule,
    FeatureStats, OriginalRule, ReferenceSet, ReportError, StatusRule,
};
pub use window::SortedWindow;

/// Errors of the drift statistics: bad samples, named by what they belong to.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DriftError {
    #[error("{what}: no samples")]
    Empty { what: String },
    #[error("{what}: sample {index} is {value}, not a finite number")]
    NonFinite {
        what: String,
        index: usize,
        value: f64,
    },
    #[error("measured and predicted values differ in length ({left} vs {right})")]
    LengthMismatch { left: usize, right: usize },
    #[error("invalid reference profile: {0}")]
    InvalidProfile(String),
}

/// Too few samples for a verdict. Not a failure: the monitor reports "no verdict yet" and
/// waits for more data, where a STABLE status would claim evidence that does not exist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("insufficient data: {have} {what}, at least {need} needed for a verdict")]
pub struct InsufficientData {
    /// What was counted, e.g. "samples of UCWIT in the window".
    pub what: String,
    pub have: usize,
    pub need: usize,
}
