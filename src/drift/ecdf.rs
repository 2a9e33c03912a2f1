//! One merge of two sorted samples yielding both ECDF statistics: the KS statistic
//! D = max |F_a − F_b| and the Wasserstein distance W₁ = ∫ |F_a − F_b| dx.
//!
//! Both walk the same merged sequence, so a full report (50,000 against 50,000) pays for one
//! merge, not two. The walk is written without data-dependent branches: which sample
//! advances is a 0/1 increment, because on continuous data that choice is a coin flip a
//! branch predictor loses half the time.
//!
//! The ECDF difference at a point is kept as the exact integer i·n_b − j·n_a; D is the
//! float `|i / n_a − j / n_b|` that scipy evaluates, taken at the maximising point (the
//! largest of those floats if several points share the maximum).

/// (D, W₁) of two sorted, non-empty samples.
pub fn merge_d_w(a: &[f64], b: &[f64]) -> (f64, f64) {
    assert!(
        !a.is_empty() && !b.is_empty(),
        "ECDF statistics of an empty sample"
    );
    debug_assert!(a.windows(2).all(|w| w[0] <= w[1]));
    debug_assert!(b.windows(2).all(|w| w[0] <= w[1]));
    let (na, nb) = (a.len(), b.len());
    let (na_i, nb_i) = (na as i64, nb as i64);
    let head = |s: &[f64], k: usize| if k < s.len() { s[k] } else { f64::INFINITY };
    let (mut i, mut j) = (0usize, 0usize);
    let (mut x, mut y) = (a[0], b[0]);
    let mut best = 0i64;
    let mut d = 0.0f64;
    let mut w = super::sample::CompensatedSum::default();
    for _ in 0..na + nb {
        let take_a = usize::from(x <= y);
        let v = x.min(y);
        i += take_a;
        j += 1 - take_a;
        x = head(a, i);
        y = head(b, j);
        let next = x.min(y);
        let diff = (i as i64 * nb_i - j as i64 * na_i).abs();
        // The ECDFs are compared after the last of equal values, as scipy does.
        if next != v && diff >= best {
            let f = (i as f64 / na as f64 - j as f64 / nb as f64).abs();
            if diff > best || f > d {
                best = diff;
                d = f;
            }
        }
        if next.is_finite() {
            w.add(diff as f64 * (next - v));
        }
    }
    (d, w.value() / (na as f64 * nb as f64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn brute(a: &[f64], b: &[f64]) -> (f64, f64) {
        let cdf = |s: &[f64], x: f64| s.iter().filter(|&&v| v <= x).count() as f64 / s.len() as f64;
        let mut all: Vec<f64> = a.iter().chain(b).copied().collect();
        all.sort_by(f64::total_cmp);
        let d = all
            .iter()
            .map(|&x| (cdf(a, x) - cdf(b, x)).abs())
            .fold(0.0, f64::max);
        let w = all
            .windows(2)
            .map(|p| (cdf(a, p[0]) - cdf(b, p[0])).abs() * (p[1] - p[0]))
            .sum();
        (d, w)
    }

    #[test]
    fn matches_brute_force_with_and_without_ties() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for (na, nb, grid) in [
            (1, 1, 0.0),
            (1, 9, 0.0),
            (13, 7, 0.0),
            (60, 90, 0.5),
            (200, 30, 0.25),
        ] {
            let mut gen = |n: usize, shift: f64| {
                let mut v: Vec<f64> = (0..n)
                    .map(|_| {
                        let x: f64 = rng.random_range(-2.0..2.0) + shift;
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
            let a = gen(na, 0.0);
            let b = gen(nb, 0.3);
            let (d, w) = merge_d_w(&a, &b);
            let (bd, bw) = brute(&a, &b);
            assert_eq!(d, bd, "{na}x{nb}");
            assert!(
                (w - bw).abs() <= 1e-14 * bw.max(1.0),
                "{na}x{nb}: {w} vs {bw}"
            );
            let (d2, w2) = merge_d_w(&b, &a);
            assert_eq!(d2, d);
            assert!((w2 - w).abs() <= 1e-15 * w.max(1.0));
        }
    }

    #[test]
    fn identical_and_all_equal() {
        let a = [1.0, 2.0, 3.0];
        assert_eq!(merge_d_w(&a, &a), (0.0, 0.0));
        assert_eq!(merge_d_w(&[5.0; 4], &[5.0; 3]), (0.0, 0.0));
        assert_eq!(merge_d_w(&[0.0], &[2.0]), (1.0, 2.0));
    }
}
