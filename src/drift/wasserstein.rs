//! 1-D Wasserstein (earth mover's) distance between two empirical distributions.
//!
//! W₁ = ∫ |F_a(x) − F_b(x)| dx, evaluated as `scipy.stats.wasserstein_distance` does: over
//! the merged sorted values, each gap between consecutive values times the difference of
//! the two ECDFs at its left end. Reported normalised by the reference's standard
//! deviation, so one threshold fits every feature whatever its unit (Evidently's
//! convention; a 0.1 normalised distance is a 0.1σ location shift).

use super::sample::CompensatedSum;

/// W₁ between two sorted, non-empty samples: one merge, O(m + n).
pub fn wasserstein_sorted(a: &[f64], b: &[f64]) -> f64 {
    assert!(!a.is_empty() && !b.is_empty(), "Wasserstein of an empty sample");
    debug_assert!(a.windows(2).all(|w| w[0] <= w[1]));
    debug_assert!(b.windows(2).all(|w| w[0] <= w[1]));
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j) = (0, 0);
    let mut total = CompensatedSum::default();
    // Value at the left end of the current gap; ECDFs counted at it (right-continuous).
    let mut v = a[0].min(b[0]);
    loop {
        while i < a.len() && a[i] <= v {
            i += 1;
        }
        while j < b.len() && b[j] <= v {
            j += 1;
        }
        let next = match (a.get(i), b.get(j)) {
            (Some(&x), Some(&y)) => x.min(y),
            (Some(&x), None) => x,
            (None, Some(&y)) => y,
            (None, None) => break,
        };
        total.add((i as f64 / na - j as f64 / nb).abs() * (next - v));
        v = next;
    }
    total.value()
}

/// W₁ divided by `reference_std`. A reference with no spread has nothing to normalise by:
/// the raw distance is returned (so any movement of a constant feature still shows).
pub fn normalised(distance: f64, reference_std: f64) -> f64 {
    if reference_std > 0.0 && reference_std.is_finite() {
        distance / reference_std
    } else {
        distance
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shift_of_a_sample_is_the_shift() {
        let a: Vec<f64> = (0..100).map(f64::from).collect();
        let b: Vec<f64> = a.iter().map(|x| x + 2.5).collect();
        assert!((wasserstein_sorted(&a, &b) - 2.5).abs() < 1e-12);
        assert_eq!(wasserstein_sorted(&a, &a), 0.0);
    }

    #[test]
    fn known_values() {
        // scipy.stats.wasserstein_distance([0, 1, 3], [5, 6, 8]) == 5.0
        assert!((wasserstein_sorted(&[0.0, 1.0, 3.0], &[5.0, 6.0, 8.0]) - 5.0).abs() < 1e-15);
        // scipy.stats.wasserstein_distance([0, 1], [0, 1, 2, 3]) == 1.0
        let w = wasserstein_sorted(&[0.0, 1.0], &[0.0, 1.0, 2.0, 3.0]);
        assert!((w - 1.0).abs() < 1e-15, "{w}");
        // Ties across samples: [1, 1, 2] vs [1, 2, 2] -> 1/3.
        let w = wasserstein_sorted(&[1.0, 1.0, 2.0], &[1.0, 2.0, 2.0]);
        assert!((w - 1.0 / 3.0).abs() < 1e-15, "{w}");
        // Symmetric.
        assert_eq!(
            wasserstein_sorted(&[0.0, 1.0], &[0.0, 1.0, 2.0, 3.0]),
            wasserstein_sorted(&[0.0, 1.0, 2.0, 3.0], &[0.0, 1.0])
        );
    }

    #[test]
    fn normalisation() {
        assert_eq!(normalised(0.5, 2.0), 0.25);
        assert_eq!(normalised(0.5, 0.0), 0.5);
    }
}
