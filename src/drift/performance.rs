//! Model performance over a window, per output, and the PERFORMANCE_DEGRADED rule.
//!
//! With measured outputs (UCAOT, UCWOT, UCAF) beside the predictions, each output gets MAE,
//! RMSE and R² over the window, compared with the same metrics over the reference period.
//! The product's original rule, the default here: degraded when MAE or RMSE grows by more
//! than 10 % or R² drops by more than 0.05. All three limits are settings.

use serde::{Deserialize, Serialize};

use super::sample::CompensatedSum;
use super::{DriftError, InsufficientData};

/// Error metrics of predictions against measurements.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PerformanceMetrics {
    /// Number of (measured, predicted) pairs.
    pub n: usize,
    pub mae: f64,
    pub rmse: f64,
    /// Coefficient of determination, 1 − SS_res / SS_tot. With constant measurements
    /// (SS_tot = 0) it is 1 for perfect predictions and 0 otherwise (scikit-learn's
    /// convention), so it is always finite.
    pub r2: f64,
}

/// MAE, RMSE and R² of `predicted` against `measured` (same length, not empty, finite).
pub fn performance(measured: &[f64], predicted: &[f64]) -> Result<PerformanceMetrics, DriftError> {
    if measured.len() != predicted.len() {
        return Err(DriftError::LengthMismatch {
            left: measured.len(),
            right: predicted.len(),
        });
    }
    if measured.is_empty() {
        return Err(DriftError::Empty {
            what: "performance window".into(),
        });
    }
    for (i, (&y, &p)) in measured.iter().zip(predicted).enumerate() {
        if !y.is_finite() || !p.is_finite() {
            return Err(DriftError::NonFinite {
                what: "performance window".into(),
                index: i,
                value: if y.is_finite() { p } else { y },
            });
        }
    }
    let n = measured.len() as f64;
    let mean_y = super::sample::mean(measured);
    let (mut abs, mut sq, mut tot) = (
        CompensatedSum::default(),
        CompensatedSum::default(),
        CompensatedSum::default(),
    );
    for (&y, &p) in measured.iter().zip(predicted) {
        let e = y - p;
        abs.add(e.abs());
        sq.add(e * e);
        tot.add((y - mean_y) * (y - mean_y));
    }
    let (ss_res, ss_tot) = (sq.value(), tot.value());
    let r2 = if ss_tot > 0.0 {
        1.0 - ss_res / ss_tot
    } else if ss_res == 0.0 {
        1.0
    } else {
        0.0
    };
    Ok(PerformanceMetrics {
        n: measured.len(),
        mae: abs.value() / n,
        rmse: (ss_res / n).sqrt(),
        r2,
    })
}

/// When a window's performance counts as degraded against the reference period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PerformanceRule {
    /// Largest tolerated relative growth of MAE over the reference period (0.10 = +10 %).
    pub max_mae_increase: f64,
    /// Largest tolerated relative growth of RMSE over the reference period.
    pub max_rmse_increase: f64,
    /// Largest tolerated absolute drop of R² below the reference period's.
    pub max_r2_drop: f64,
    /// Fewer measured pairs than this in the window: no verdict. Error metrics of a handful
    /// of points swing by far more than 10 %.
    pub min_samples: usize,
}

impl Default for PerformanceRule {
    fn default() -> Self {
        PerformanceRule {
            max_mae_increase: 0.10,
            max_rmse_increase: 0.10,
            max_r2_drop: 0.05,
            min_samples: 50,
        }
    }
}

/// Verdict of [`PerformanceRule::check`] for one output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PerformanceCheck {
    pub reference: PerformanceMetrics,
    pub current: PerformanceMetrics,
    /// 100 · (MAE_cur − MAE_ref) / MAE_ref (see [`PerformanceRule::check`] for MAE_ref = 0).
    pub mae_change_pct: f64,
    pub rmse_change_pct: f64,
    /// R²_cur − R²_ref.
    pub r2_change: f64,
    /// Which limits were exceeded; empty when not degraded.
    pub exceeded: Vec<PerformanceLimit>,
}

/// One limit of a [`PerformanceRule`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PerformanceLimit {
    Mae,
    Rmse,
    R2,
}

impl PerformanceCheck {
    /// PERFORMANCE_DEGRADED: at least one limit exceeded.
    pub fn degraded(&self) -> bool {
        !self.exceeded.is_empty()
    }
}

/// Relative growth in percent. Growth from an error of exactly 0 is infinite; it is reported
/// as 100 % so reports stay finite JSON (the check itself counts it as exceeded).
fn growth_pct(reference: f64, current: f64) -> f64 {
    if reference > 0.0 {
        100.0 * (current - reference) / reference
    } else if current > 0.0 {
        100.0
    } else {
        0.0
    }
}

impl PerformanceRule {
    /// Compares a window's metrics with the reference period's.
    pub fn check(
        &self,
        reference: &PerformanceMetrics,
        current: &PerformanceMetrics,
    ) -> Result<PerformanceCheck, InsufficientData> {
        if current.n < self.min_samples {
            return Err(InsufficientData {
                what: "measured outputs in the window".into(),
                have: current.n,
                need: self.min_samples,
            });
        }
        let grew = |r: f64, c: f64, limit: f64| c > r * (1.0 + limit) || (r == 0.0 && c > 0.0);
        let mut exceeded = Vec::new();
        if grew(reference.mae, current.mae, self.max_mae_increase) {
            exceeded.push(PerformanceLimit::Mae);
        }
        if grew(reference.rmse, current.rmse, self.max_rmse_increase) {
            exceeded.push(PerformanceLimit::Rmse);
        }
        if current.r2 < reference.r2 - self.max_r2_drop {
            exceeded.push(PerformanceLimit::R2);
        }
        Ok(PerformanceCheck {
            reference: *reference,
            current: *current,
            mae_change_pct: growth_pct(reference.mae, current.mae),
            rmse_change_pct: growth_pct(reference.rmse, current.rmse),
            r2_change: current.r2 - reference.r2,
            exceeded,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_of_a_known_case() {
        let y = [3.0, -0.5, 2.0, 7.0];
        let p = [2.5, 0.0, 2.0, 8.0];
        let m = performance(&y, &p).unwrap();
        assert_eq!(m.n, 4);
        assert!((m.mae - 0.5).abs() < 1e-15);
        assert!((m.rmse - 0.375f64.sqrt()).abs() < 1e-15);
        // sklearn.metrics.r2_score(y, p) == 0.9486081370449679
        assert!((m.r2 - 0.948_608_137_044_967_9).abs() < 1e-14);
    }

    #[test]
    fn constant_measurements_keep_r2_finite() {
        assert_eq!(performance(&[1.0, 1.0], &[1.0, 1.0]).unwrap().r2, 1.0);
        assert_eq!(performance(&[1.0, 1.0], &[1.0, 2.0]).unwrap().r2, 0.0);
    }

    #[test]
    fn bad_input() {
        assert!(performance(&[1.0], &[1.0, 2.0]).is_err());
        assert!(performance(&[], &[]).is_err());
        assert!(performance(&[f64::NAN], &[1.0]).is_err());
    }

    fn metrics(mae: f64, rmse: f64, r2: f64) -> PerformanceMetrics {
        PerformanceMetrics {
            n: 100,
            mae,
            rmse,
            r2,
        }
    }

    #[test]
    fn original_rule() {
        let rule = PerformanceRule::default();
        let r = metrics(1.0, 1.5, 0.90);
        let ok = rule.check(&r, &metrics(1.09, 1.64, 0.86)).unwrap();
        assert!(!ok.degraded(), "{ok:?}");
        let mae = rule.check(&r, &metrics(1.11, 1.5, 0.9)).unwrap();
        assert_eq!(mae.exceeded, vec![PerformanceLimit::Mae]);
        assert!((mae.mae_change_pct - 11.0).abs() < 1e-9);
        let rmse = rule.check(&r, &metrics(1.0, 1.66, 0.9)).unwrap();
        assert_eq!(rmse.exceeded, vec![PerformanceLimit::Rmse]);
        let r2 = rule.check(&r, &metrics(1.0, 1.5, 0.84)).unwrap();
        assert_eq!(r2.exceeded, vec![PerformanceLimit::R2]);
        assert!((r2.r2_change + 0.06).abs() < 1e-12);
    }

    #[test]
    fn thresholds_are_settings_and_small_windows_get_no_verdict() {
        let rule: PerformanceRule =
            serde_json::from_str(r#"{"max_mae_increase": 0.5, "min_samples": 10}"#).unwrap();
        assert_eq!(rule.max_rmse_increase, 0.10);
        let r = metrics(1.0, 1.0, 0.9);
        assert!(!rule.check(&r, &metrics(1.4, 1.0, 0.9)).unwrap().degraded());
        let few = PerformanceMetrics { n: 9, ..r };
        let err = rule.check(&r, &few).unwrap_err();
        assert_eq!((err.have, err.need), (9, 10));
        assert!(serde_json::from_str::<PerformanceRule>(r#"{"max_mae": 1}"#).is_err());
    }

    #[test]
    fn growth_from_a_perfect_reference() {
        let rule = PerformanceRule::default();
        let r = metrics(0.0, 0.0, 1.0);
        let c = rule.check(&r, &metrics(0.1, 0.1, 1.0)).unwrap();
        assert_eq!(
            c.exceeded,
            vec![PerformanceLimit::Mae, PerformanceLimit::Rmse]
        );
        assert_eq!(c.mae_change_pct, 100.0);
        assert_eq!(rule.check(&r, &r).unwrap().mae_change_pct, 0.0);
    }
}
