//! 1-D Wasserstein (earth mover's) distance between two empirical distributions.
//!
//! W₁ = ∫ |F_a(x) − F_b(x)| dx, evaluated as `scipy.stats.wasserstein_distance` does: over
//! the merged sorted values, each gap between consecutive values times the difference of
//! the two ECDFs at its left end. Reported normalised by the reference's standard
//! deviation, so one threshold fits every feature whatever its unit (Evidently's
//! convention; a 0.1 normalised distance is a 0.1σ location shift).

use super::ecdf::merge_d_w;
use super::sample::CompensatedSum;

/// W₁ between two sorted, non-empty samples: one merge, O(m + n).
pub fn wasserstein_sorted(a: &[f64], b: &[f64]) -> f64 {
    merge_d_w(a, b).1
}

/// Prefix sums of a sorted sample, centred on its median so the sums stay small and a
/// difference of two of them loses little to cancellation.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PrefixSums {
    center: f64,
    /// `sums[k]` = Σ_{i<k} (x_i − center), each correctly rounded from a compensated sum.
    sums: Vec<f64>,
}

impl PrefixSums {
    pub fn new(sorted: &[f64]) -> Self {
        let center = sorted.get(sorted.len() / 2).copied().unwrap_or(0.0);
        let mut acc = CompensatedSum::default();
        let mut sums = Vec::with_capacity(sorted.len() + 1);
        sums.push(0.0);
        for &x in sorted {
            acc.add(x - center);
            sums.push(acc.value());
        }
        PrefixSums { center, sums }
    }

    /// Σ_{lo <= i < hi} |x_i − c| for sorted x, given `split`, the first index in
    /// `lo..hi` with x_i >= c.
    fn abs_dev(&self, lo: usize, split: usize, hi: usize, c: f64) -> f64 {
        let c = c - self.center;
        let below = (split - lo) as f64 * c - (self.sums[split] - self.sums[lo]);
        let above = (self.sums[hi] - self.sums[split]) - (hi - split) as f64 * c;
        below + above
    }
}

/// W₁ between a large sorted reference (with its [`PrefixSums`]) and a small sorted
/// sample, in O(small · log(large / small)) instead of a merge of both.
///
/// Uses the quantile form W₁ = ∫₀¹ |Q_ref(u) − Q_cur(u)| du. In units of 1/(n·m) of u,
/// reference value i covers [i·m, (i+1)·m) and current value j covers [j·n, (j+1)·n); a
/// current value's block spans at most two partially covered reference values and a run of
/// fully covered ones, whose Σ |x_i − c_j| comes from the prefix sums once the run is split
/// where x_i crosses c_j (a binary search within the run, ~n/m values).
pub fn wasserstein_small_large(reference: &[f64], prefix: &PrefixSums, current: &[f64]) -> f64 {
    assert!(
        !reference.is_empty() && !current.is_empty(),
        "Wasserstein of an empty sample"
    );
    assert_eq!(
        prefix.sums.len(),
        reference.len() + 1,
        "prefix sums of another sample"
    );
    let (n, m) = (reference.len() as u64, current.len() as u64);
    let mut total = CompensatedSum::default();
    for (j, &c) in current.iter().enumerate() {
        let (start, end) = (j as u64 * n, (j as u64 + 1) * n);
        let first = (start / m) as usize;
        let last = ((end - 1) / m) as usize;
        let covered = |i: usize| -> u64 {
            let (lo, hi) = (i as u64 * m, (i as u64 + 1) * m);
            hi.min(end) - lo.max(start)
        };
        let mut block = covered(first) as f64 * (reference[first] - c).abs();
        if last > first {
            block += covered(last) as f64 * (reference[last] - c).abs();
            let (lo, hi) = (first + 1, last);
            if hi > lo {
                let split = lo + reference[lo..hi].partition_point(|&x| x < c);
                block += m as f64 * prefix.abs_dev(lo, split, hi, c);
            }
        }
        total.add(block);
    }
    total.value() / (n as f64 * m as f64)
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
    fn quantile_form_matches_the_merge() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        for (n, m, grid) in [
            (1000, 7, 0.0),
            (5000, 500, 0.0),
            (997, 13, 0.1),
            (50, 50, 0.0),
            (3, 10, 0.0),
        ] {
            let mut gen = |k: usize, shift: f64| {
                let mut v: Vec<f64> = (0..k)
                    .map(|_| {
                        let x: f64 = 20.0 + rng.random_range(-3.0..3.0) + shift;
                        if grid > 0.0 {
                            (x / grid).round() * grid
                        } else {
                            x
                        }
                    })
                    .collect();
                v.sort_by(f64::total_cmp);
                v
            };
            let r = gen(n, 0.0);
            let c = gen(m, 0.4);
            let p = PrefixSums::new(&r);
            let fast = wasserstein_small_large(&r, &p, &c);
            let merged = wasserstein_sorted(&r, &c);
            assert!(
                (fast - merged).abs() <= 1e-12 * merged,
                "{n}x{m}: {fast} vs {merged}"
            );
        }
    }

    #[test]
    fn normalisation() {
        assert_eq!(normalised(0.5, 2.0), 0.25);
        assert_eq!(normalised(0.5, 0.0), 0.5);
    }
}
