//! Two-sample Kolmogorov–Smirnov test on sorted samples.
//!
//! The statistic D = max |F_ref − F_cur| is computed on sorted data without re-sorting: a
//! linear merge in O(m + n) ([`super::ecdf`]), or, when one sample is much smaller than the
//! other (a window of 500 against a reference of 50,000), one pair of galloping searches per
//! distinct value of the small sample, O(min · log(max / min)). Both evaluate the
//! differences `count_a / n_a − count_b / n_b` that `scipy.stats.ks_2samp` evaluates, so D
//! is the same number.
//!
//! The p-value follows `scipy.stats.ks_2samp(alternative="two-sided")`:
//! - exact: the lattice-path probability (Hodges 1958) with scipy's numerically stable
//!   forms: for m = n the alternating sum evaluated Horner-style, otherwise Viehmann's
//!   (2021) recursion for 1 − p; D is rounded to the lattice h / lcm(m, n), as scipy does;
//! - asymptotic: `kstwo.sf(D, round(m·n / (m + n)))` ([`kstwo_sf`]), the finite-n
//!   distribution at the effective sample size, not Kolmogorov's limit.
//!
//! Which one is used is [`KsMethod`]. The engine default ([`KsMethod::Auto`]) is exact when
//! m·n ≤ 10,000, as the design notes (and statrs' `ks_twosample`) specify; scipy's own
//! `method="auto"` is exact up to max(m, n) ≤ 10,000 ([`KsMethod::ScipyAuto`]). The two
//! choices agree whenever m·n ≤ 10,000 or max(m, n) > 10,000; in between (a window of 500
//! against a reference of 5,000, say) the engine takes the asymptotic value, because the
//! exact recursion costs O(max · band) per window and the two values differ by a few
//! percent of p at most there (0.06 % to 4 % measured with scipy at 500 against 5,000),
//! which no threshold on p can tell apart.
//!
//! statrs 0.19's `ks_twosample` is not used on the hot path: it takes owned vectors and
//! sorts them (and their concatenation) on every call, accumulates D by repeated addition
//! of 1/n (not bit-identical to scipy), and its asymptotic p-value is the limiting series.
//! The tests use it as an independent check of the exact p-value.

use serde::{Deserialize, Serialize};

use super::ecdf::merge_d_w;
use super::kolmogorov::kstwo_sf;
use super::DriftError;

/// Largest m·n for which [`KsMethod::Auto`] computes the exact p-value.
pub const EXACT_MAX_PRODUCT: u64 = 10_000;
/// Largest max(m, n) for which [`KsMethod::ScipyAuto`] computes the exact p-value.
pub const SCIPY_EXACT_MAX_N: usize = 10_000;

/// How the KS p-value is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KsMethod {
    /// Exact when m·n ≤ 10,000, else asymptotic (the engine's rule).
    #[default]
    Auto,
    /// Exact when max(m, n) ≤ 10,000, else asymptotic (`scipy.stats.ks_2samp` default).
    ScipyAuto,
    /// Always exact, unless lcm(m, n) is too large to count lattice paths (then asymptotic).
    Exact,
    /// Always asymptotic.
    Asymptotic,
}

/// Result of a two-sample KS test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KsResult {
    /// D statistic (on the lattice h / lcm(m, n) when `exact`).
    pub statistic: f64,
    /// Two-sided p-value.
    pub pvalue: f64,
    /// Whether the p-value is the exact one.
    pub exact: bool,
}

/// D statistic of two sorted, non-empty samples: a merge when the sizes are comparable,
/// [`statistic_small_large`] when one is much smaller.
pub fn ks_statistic_sorted(a: &[f64], b: &[f64]) -> f64 {
    let (small, large) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    if prefer_search(small.len(), large.len()) {
        statistic_small_large(small, large)
    } else {
        merge_d_w(a, b).0
    }
}

/// Whether visiting only the small sample's values (a galloping search of the large one
/// per value, ~2·log2(large/small) probes in cache-near memory) beats a merge of both.
pub(crate) fn prefer_search(small: usize, large: usize) -> bool {
    let ratio = large / small.max(1);
    let probes = 2 * (usize::BITS - ratio.leading_zeros()) as usize + 4;
    small * probes < small + large
}

/// First index at or after `from` whose value fails `pred` (`pred` true on a prefix):
/// exponential steps from `from`, then a binary search of the last step. Consecutive
/// calls with increasing values stay in nearby cache lines, unlike a search of the whole
/// slice each time.
fn gallop(s: &[f64], from: usize, pred: impl Fn(f64) -> bool) -> usize {
    let mut lo = from;
    let mut step = 1;
    let mut hi = from;
    while hi < s.len() && pred(s[hi]) {
        lo = hi + 1;
        hi = from + step;
        step *= 2;
    }
    let hi = hi.min(s.len());
    lo + s[lo..hi].partition_point(|&x| pred(x))
}

/// D from the small sample's distinct values only. Between two of them the small sample's
/// ECDF is flat while the large one's rises, so |difference| peaks at an end: just below a
/// value (`#large < v`, at the last large point before it) or at it (`#large <= v`). Both
/// are differences scipy evaluates at an actual data point, so D is the same number.
pub fn statistic_small_large(small: &[f64], large: &[f64]) -> f64 {
    debug_assert!(small.windows(2).all(|w| w[0] <= w[1]));
    debug_assert!(large.windows(2).all(|w| w[0] <= w[1]));
    let (ns, nl) = (small.len() as f64, large.len() as f64);
    let mut d = 0.0f64;
    let mut i = 0;
    let mut lo_from = 0;
    while i < small.len() {
        let v = small[i];
        let below = i;
        while i < small.len() && small[i] == v {
            i += 1;
        }
        let lo = gallop(large, lo_from, |x| x < v);
        let hi = gallop(large, lo, |x| x <= v);
        lo_from = hi;
        d = d
            .max((lo as f64 / nl - below as f64 / ns).abs())
            .max((hi as f64 / nl - i as f64 / ns).abs());
    }
    d
}

/// Two-sample KS test of sorted, non-empty, finite samples.
pub fn ks_2samp_sorted(a: &[f64], b: &[f64], method: KsMethod) -> Result<KsResult, DriftError> {
    if a.is_empty() || b.is_empty() {
        return Err(DriftError::Empty {
            what: "KS sample".into(),
        });
    }
    let d = ks_statistic_sorted(a, b);
    Ok(ks_pvalue(d, a.len(), b.len(), method))
}

/// Two-sample KS test of samples in any order (sorts copies).
pub fn ks_2samp(a: &[f64], b: &[f64], method: KsMethod) -> Result<KsResult, DriftError> {
    let a = super::sample::sorted_finite("KS sample", a)?;
    let b = super::sample::sorted_finite("KS sample", b)?;
    ks_2samp_sorted(&a, &b, method)
}

/// p-value of the statistic `d` of samples of sizes `n1` and `n2` (both > 0).
pub fn ks_pvalue(d: f64, n1: usize, n2: usize, method: KsMethod) -> KsResult {
    let want_exact = match method {
        KsMethod::Auto => (n1 as u64).saturating_mul(n2 as u64) <= EXACT_MAX_PRODUCT,
        KsMethod::ScipyAuto => n1.max(n2) <= SCIPY_EXACT_MAX_N,
        KsMethod::Exact => true,
        KsMethod::Asymptotic => false,
    };
    if want_exact {
        if let Some((d_lattice, p)) = exact_pvalue(n1 as u64, n2 as u64, d) {
            return KsResult {
                statistic: d_lattice,
                pvalue: p.clamp(0.0, 1.0),
                exact: true,
            };
        }
    }
    let (m, n) = (n1.max(n2) as f64, n1.min(n2) as f64);
    let en = (m * n / (m + n)).round_ties_even();
    KsResult {
        statistic: d,
        pvalue: kstwo_sf(en as u64, d).clamp(0.0, 1.0),
        exact: false,
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Exact two-sided p-value, or `None` when it cannot be computed (lattice too large, or a
/// non-finite intermediate), in which case scipy too falls back to the asymptotic value.
fn exact_pvalue(n1: u64, n2: u64, d: f64) -> Option<(f64, f64)> {
    let g = gcd(n1, n2);
    let (n1g, n2g) = (n1 / g, n2 / g);
    if n1g >= i32::MAX as u64 / n2g {
        return None;
    }
    let lcm = n1g * n2;
    let h = (d * lcm as f64).round_ties_even() as u64;
    let d = h as f64 / lcm as f64;
    if h == 0 {
        return Some((d, 1.0));
    }
    let p = if n1 == n2 {
        prob_outside_square(n1, h)
    } else {
        outer_prob_inside(n1, n2, g, h)
    };
    (p.is_finite() && (0.0..=1.0).contains(&p)).then_some((d, p))
}

/// P(D_{n,n} ≥ h/n) = 2 Σ_k (−1)^(k−1) C(2n, n − kh) / C(2n, n), written as
/// 2·A₀(1 − A₁(1 − A₂(…))) with each ratio Aₖ a product of h simple factors, so the
/// alternating sum never cancels.
fn prob_outside_square(n: u64, h: u64) -> f64 {
    let (n, h) = (n as i64, h as i64);
    let mut p = 0.0;
    let mut k = n / h;
    while k >= 0 {
        let mut p1 = 1.0;
        for j in 0..h {
            p1 = (n - k * h - j) as f64 * p1 / (n + k * h + j + 1) as f64;
        }
        p = p1 * (1.0 - p);
        k -= 1;
    }
    2.0 * p
}

/// 1 − (paths from (0,0) to (m,n) staying strictly inside |x/m − y/n| < h/lcm) / C(m+n, n),
/// by Viehmann's recursion, which carries the complement directly: a column of the lattice
/// at a time, only the band of y the boundary allows, every entry a probability in [0, 1].
fn outer_prob_inside(m: u64, n: u64, g: u64, h: u64) -> f64 {
    let (m, n) = if m < n { (n, m) } else { (m, n) };
    let (m, n, h) = (m as i64, n as i64, h as i64);
    let (mg, ng) = ((m as u64 / g) as i64, (n as u64 / g) as i64);
    let ceil_div = |a: i64, b: i64| -((-a).div_euclid(b));
    let mut minj = 0i64;
    let mut maxj = ceil_div(h, mg).min(n + 1);
    let mut curlen = maxj - minj;
    let len_a = (2 * maxj + 2).min(n + 1) as usize;
    let mut a = vec![1.0f64; len_a];
    for x in &mut a[minj as usize..maxj as usize] {
        *x = 0.0;
    }
    for i in 1..=m {
        let (lastminj, lastlen) = (minj, curlen);
        minj = ((ng * i - h).div_euclid(mg) + 1).max(0).min(n);
        maxj = ceil_div(ng * i + h, mg).min(n + 1);
        if maxj <= minj {
            return 1.0;
        }
        let mut val = if minj == 0 { 0.0 } else { 1.0 };
        let fi = i as f64;
        for jj in 0..(maxj - minj) {
            let j = jj + minj;
            val = (a[(jj + minj - lastminj) as usize] * fi + val * j as f64) / (fi + j as f64);
            a[jj as usize] = val;
        }
        curlen = maxj - minj;
        if lastlen > curlen {
            // Entries the next column reads beyond this band are outside the boundary: 1.
            let from = (maxj - minj) as usize;
            let to = (from + (lastlen - curlen) as usize).min(a.len());
            for x in &mut a[from..to] {
                *x = 1.0;
            }
        }
    }
    a[(maxj - minj - 1) as usize]
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use rand_distr::{Distribution, Normal};
    use statrs::stats_tests::ks_test::{ks_twosample, KSTwoSampleAlternativeMethod};
    use statrs::stats_tests::NaNPolicy;

    fn normal(seed: u64, n: usize, shift: f64) -> Vec<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let d = Normal::new(shift, 1.0).unwrap();
        let mut v: Vec<f64> = (0..n).map(|_| d.sample(&mut rng)).collect();
        v.sort_by(f64::total_cmp);
        v
    }

    fn brute_force_d(a: &[f64], b: &[f64]) -> f64 {
        let count = |s: &[f64], x: f64| s.iter().filter(|&&v| v <= x).count() as f64;
        a.iter()
            .chain(b)
            .map(|&x| (count(a, x) / a.len() as f64 - count(b, x) / b.len() as f64).abs())
            .fold(0.0, f64::max)
    }

    #[test]
    fn statistic_paths_agree_with_brute_force_including_ties() {
        for (na, nb, round) in [
            (7, 9, false),
            (40, 3000, false),
            (50, 60, true),
            (30, 5000, true),
        ] {
            let mut a = normal(1, na, 0.3);
            let mut b = normal(2, nb, 0.0);
            if round {
                for x in a.iter_mut().chain(b.iter_mut()) {
                    *x = (*x * 4.0).round() / 4.0;
                }
            }
            let expected = brute_force_d(&a, &b);
            assert_eq!(merge_d_w(&a, &b).0, expected, "{na}x{nb}");
            assert_eq!(statistic_small_large(&a, &b), expected, "{na}x{nb}");
            assert_eq!(statistic_small_large(&b, &a), expected, "{na}x{nb}");
            assert_eq!(ks_statistic_sorted(&b, &a), expected, "{na}x{nb}");
        }
    }

    #[test]
    fn exact_pvalues_agree_with_statrs() {
        // statrs counts lattice paths directly (Schröer & Trenkler); the recursions here
        // must give the same probabilities wherever no cancellation is involved.
        for (na, nb, shift) in [(10, 15, 0.5), (40, 60, 0.2), (50, 50, 0.4), (100, 100, 0.0)] {
            let a = normal(3, na, shift);
            let b = normal(4, nb, 0.0);
            let r = ks_2samp_sorted(&a, &b, KsMethod::Auto).unwrap();
            assert!(r.exact);
            let (sd, sp) = ks_twosample(
                a.clone(),
                b.clone(),
                KSTwoSampleAlternativeMethod::TwoSidedExact,
                NaNPolicy::Error,
            )
            .unwrap();
            assert!((r.statistic - sd).abs() < 1e-12, "{na}x{nb}");
            assert!(
                (r.pvalue - sp).abs() < 1e-10,
                "{na}x{nb}: {} vs {sp}",
                r.pvalue
            );
        }
    }

    #[test]
    fn scipy_reference_values() {
        // statrs' own scipy example: scipy.stats.ks_2samp(data1, data2) (exact).
        let mut a = vec![
            0.75857220,
            0.45485367,
            -1.79747176,
            0.01034235,
            0.99762664,
            0.93219930,
            0.11124772,
            -0.01541150,
            -1.16067678,
            -0.49210878,
        ];
        let mut b = vec![
            -0.009876332,
            0.119263550,
            -2.048604274,
            0.997550468,
            -0.419749716,
            -0.352510481,
            1.196767584,
            0.726644239,
            -0.329687578,
            0.275964060,
            -0.170640773,
            1.834959167,
            -1.083563713,
            1.665032060,
            1.636287642,
        ];
        a.sort_by(f64::total_cmp);
        b.sort_by(f64::total_cmp);
        let r = ks_2samp_sorted(&a, &b, KsMethod::Auto).unwrap();
        assert!((r.statistic - 0.266_666_666_666_666_66).abs() < 1e-15);
        assert!((r.pvalue - 0.731_542_236_199_659_7).abs() < 1e-14);
    }

    #[test]
    fn method_choice() {
        let a = normal(5, 100, 0.0);
        let b = normal(6, 101, 0.0);
        assert!(!ks_2samp_sorted(&a, &b, KsMethod::Auto).unwrap().exact);
        assert!(ks_2samp_sorted(&a, &b, KsMethod::ScipyAuto).unwrap().exact);
        assert!(ks_2samp_sorted(&a, &b, KsMethod::Exact).unwrap().exact);
        assert!(
            !ks_2samp_sorted(&a[..50], &b[..50], KsMethod::Asymptotic)
                .unwrap()
                .exact
        );
        assert!(
            ks_2samp_sorted(&a[..100], &b[..100], KsMethod::Auto)
                .unwrap()
                .exact
        );
    }

    #[test]
    fn identical_samples_and_disjoint_samples() {
        let a = normal(7, 300, 0.0);
        let r = ks_2samp_sorted(&a, &a, KsMethod::Auto).unwrap();
        assert_eq!((r.statistic, r.pvalue), (0.0, 1.0));
        let b: Vec<f64> = a.iter().map(|x| x + 100.0).collect();
        let r = ks_2samp_sorted(&a, &b, KsMethod::Auto).unwrap();
        assert_eq!(r.statistic, 1.0);
        assert!(r.pvalue < 1e-100);
        assert!(ks_2samp_sorted(&a, &[], KsMethod::Auto).is_err());
    }

    #[test]
    fn unsorted_input_is_sorted_first() {
        let a = [3.0, 1.0, 2.0, 5.0, 4.0];
        let b = [9.0, 7.0, 8.0, 6.0];
        let r = ks_2samp(&a, &b, KsMethod::Auto).unwrap();
        assert_eq!(r.statistic, 1.0);
        assert!(ks_2samp(&[f64::NAN], &b, KsMethod::Auto).is_err());
    }
}
