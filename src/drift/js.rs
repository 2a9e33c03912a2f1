//! Jensen–Shannon distance between two binned distributions, base 2, as
//! `scipy.spatial.distance.jensenshannon(p, q, base=2)`: the square root of the divergence,
//! so it is a metric in [0, 1].
//!
//! It is computed over the PSI bins on the raw proportions (no floor): unlike PSI, the
//! divergence is finite with empty bins, and flooring would only add noise. Inputs are
//! normalised to sum to 1 first, as scipy does.

/// x · ln(x / y), with 0 · ln(0 / y) = 0 (scipy's `rel_entr`).
fn rel_entr(x: f64, y: f64) -> f64 {
    if x > 0.0 && y > 0.0 {
        x * (x / y).ln()
    } else if x == 0.0 && y >= 0.0 {
        0.0
    } else {
        f64::INFINITY
    }
}

/// Jensen–Shannon distance (base 2) between the distributions `p` and `q` over the same bins.
pub fn js_distance(p: &[f64], q: &[f64]) -> f64 {
    assert_eq!(p.len(), q.len(), "JS needs the same bins");
    let sp: f64 = p.iter().sum();
    let sq: f64 = q.iter().sum();
    let (mut left, mut right) = (0.0, 0.0);
    for (&pi, &qi) in p.iter().zip(q) {
        let (pi, qi) = (pi / sp, qi / sq);
        let m = (pi + qi) / 2.0;
        left += rel_entr(pi, m);
        right += rel_entr(qi, m);
    }
    let js = (left + right) / std::f64::consts::LN_2;
    // Rounding can leave a tiny negative divergence for identical inputs.
    (js / 2.0).max(0.0).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_and_disjoint() {
        let p = [0.1, 0.2, 0.7];
        assert_eq!(js_distance(&p, &p), 0.0);
        assert!((js_distance(&[1.0, 0.0], &[0.0, 1.0]) - 1.0).abs() < 1e-15);
    }

    #[test]
    fn scipy_example() {
        // scipy.spatial.distance.jensenshannon([1.0, 0.0], [0.5, 0.5], base=2)
        let d = js_distance(&[1.0, 0.0], &[0.5, 0.5]);
        let m = [0.75, 0.25];
        let kl_p = (1.0f64 / m[0]).ln();
        let kl_q = 0.5 * (0.5f64 / m[0]).ln() + 0.5 * (0.5f64 / m[1]).ln();
        let expected = ((kl_p + kl_q) / std::f64::consts::LN_2 / 2.0).sqrt();
        assert!((d - expected).abs() < 1e-15);
        assert!((d - 0.557_923_045_284_143_8).abs() < 1e-12, "{d}");
    }

    #[test]
    fn unnormalised_inputs_are_normalised() {
        let a = js_distance(&[1.0, 3.0], &[2.0, 2.0]);
        let b = js_distance(&[0.25, 0.75], &[0.5, 0.5]);
        assert!((a - b).abs() < 1e-15);
    }
}
