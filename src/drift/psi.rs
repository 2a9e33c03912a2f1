//! Population stability index over the reference's quantile bins, and the per-feature
//! [`ReferenceProfile`] that holds everything a window comparison needs from the reference.
//!
//! The conventions are the ones in the shared domain notes ("Drift conventions"):
//! - 10 bins; the inner edges are the reference's 10 %, 20 %, … 90 % quantiles with linear
//!   interpolation exactly as numpy's default (`np.quantile(ref, np.arange(1, 10) / 10)`,
//!   Hyndman & Fan type 7, including numpy's two-sided lerp), duplicates removed (a reference
//!   with many equal values has fewer bins);
//! - the outer edges are −∞ and +∞, so values outside the reference's range are counted
//!   (the original product dropped them, which hid the worst drift);
//! - a value equal to an edge falls in the bin above it (`np.searchsorted(edges, x, "right")`);
//! - each bin proportion (count / n) is floored at [`PROPORTION_FLOOR`] before the log, for
//!   the reference and the current window alike, and **not renormalised**: renormalising
//!   would move every other bin by a data-dependent amount for no gain in meaning;
//! - PSI = Σ (c − r) · ln(c / r) over the bins.

use serde::{Deserialize, Serialize};

use super::sample::{mean, sorted_finite, std_dev};
use super::wasserstein::PrefixSums;
use super::DriftError;

/// Number of PSI bins before duplicate edges are removed.
pub const BINS: usize = 10;

/// Floor applied to each bin proportion before the log in [`psi`].
pub const PROPORTION_FLOOR: f64 = 1e-4;

/// Quantile of sorted data with numpy's default ("linear") method, bit for bit.
///
/// numpy computes the virtual index as `(n - 1) * q` and interpolates from the nearer end
/// (`b - (b - a) * (1 - t)` when `t >= 0.5`); doing the same keeps the edges identical to
/// the Python check, so no value near an edge can land in a different bin.
pub fn quantile_linear(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    assert!(n > 0, "quantile of an empty sample");
    let virtual_index = (n - 1) as f64 * q;
    if virtual_index >= (n - 1) as f64 {
        return sorted[n - 1];
    }
    if virtual_index < 0.0 {
        return sorted[0];
    }
    let previous = virtual_index.floor();
    let i = previous as usize;
    let t = virtual_index - previous;
    let (a, b) = (sorted[i], sorted[i + 1]);
    let diff = b - a;
    if t >= 0.5 {
        b - diff * (1.0 - t)
    } else {
        a + diff * t
    }
}

/// Inner bin edges of sorted reference data: its 10 %, …, 90 % quantiles, sorted and without
/// duplicates (numpy's `np.unique` of the quantiles).
pub fn quantile_edges(sorted: &[f64]) -> Vec<f64> {
    let mut edges: Vec<f64> = (1..BINS)
        .map(|i| quantile_linear(sorted, i as f64 / BINS as f64))
        .collect();
    edges.sort_by(f64::total_cmp);
    edges.dedup();
    edges
}

/// Index of the bin holding `x`: the number of edges `<= x`, so a value equal to an edge is
/// in the bin above it.
pub fn bin_index(edges: &[f64], x: f64) -> usize {
    edges.partition_point(|&e| e <= x)
}

/// Bin counts of sorted data: one binary search per edge instead of one per value.
pub fn bin_counts_sorted(edges: &[f64], sorted: &[f64]) -> Vec<usize> {
    let mut counts = Vec::with_capacity(edges.len() + 1);
    let mut below = 0;
    for &e in edges {
        // values < e sit in this bin or an earlier one; values == e belong above.
        let upto = sorted.partition_point(|&v| v < e);
        counts.push(upto - below);
        below = upto;
    }
    counts.push(sorted.len() - below);
    counts
}

/// Bin counts of data in any order.
pub fn bin_counts(edges: &[f64], values: &[f64]) -> Vec<usize> {
    let mut counts = vec![0; edges.len() + 1];
    for &x in values {
        counts[bin_index(edges, x)] += 1;
    }
    counts
}

/// Proportions `count / n` (not floored; see [`psi`]).
pub fn proportions(counts: &[usize]) -> Vec<f64> {
    let n: usize = counts.iter().sum();
    counts.iter().map(|&c| c as f64 / n as f64).collect()
}

/// PSI between reference and current bin proportions: each proportion is floored at
/// [`PROPORTION_FLOOR`], without renormalising, then Σ (c − r) · ln(c / r).
pub fn psi(reference: &[f64], current: &[f64]) -> f64 {
    assert_eq!(reference.len(), current.len(), "PSI needs the same bins");
    reference
        .iter()
        .zip(current)
        .map(|(&r, &c)| {
            let r = r.max(PROPORTION_FLOOR);
            let c = c.max(PROPORTION_FLOOR);
            (c - r) * (c / r).ln()
        })
        .sum()
}

/// Everything a window comparison needs from one feature's reference data, computed once:
/// the sorted samples (KS, Wasserstein) and their prefix sums, the PSI edges and the
/// reference's own bin proportions, mean and population standard deviation.
///
/// Serialisable so a monitor can persist it and keep its reference across restarts.
/// Numbers are written as their shortest round-trip decimal strings: serde_json's default
/// float parser may be off by an ulp, and a restored reference must give the very same
/// verdicts. Deserialising accepts strings or plain numbers and checks the invariants the
/// statistics rely on (finite, sorted, edges that fit the proportions), so a damaged file
/// is an error rather than a wrong verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ProfileData")]
pub struct ReferenceProfile {
    #[serde(serialize_with = "exact::serialize_vec")]
    sorted: Vec<f64>,
    #[serde(serialize_with = "exact::serialize_vec")]
    edges: Vec<f64>,
    #[serde(serialize_with = "exact::serialize_vec")]
    proportions: Vec<f64>,
    #[serde(serialize_with = "exact::serialize")]
    mean: f64,
    #[serde(serialize_with = "exact::serialize")]
    std: f64,
    /// Derived from `sorted` (rebuilt on load, never stored): the Wasserstein distance of a
    /// small window in O(window · log) instead of a merge with the whole reference.
    #[serde(skip_serializing)]
    prefix: PrefixSums,
}

/// The unchecked serialised form of a [`ReferenceProfile`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileData {
    sorted: Vec<exact::Exact>,
    edges: Vec<exact::Exact>,
    proportions: Vec<exact::Exact>,
    mean: exact::Exact,
    std: exact::Exact,
}

/// Lossless f64 (de)serialisation through decimal strings.
mod exact {
    use serde::de::{self, Deserializer, Visitor};
    use serde::ser::{SerializeSeq, Serializer};
    use serde::Deserialize;
    use std::fmt;

    struct Repr(f64);

    impl fmt::Display for Repr {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            // Both forms print the shortest digits that parse back to the same f64; the
            // exponent form only where the plain one would run to dozens of zeros.
            let a = self.0.abs();
            if a == 0.0 || (1e-5..1e16).contains(&a) {
                write!(f, "{}", self.0)
            } else {
                write!(f, "{:e}", self.0)
            }
        }
    }

    pub fn serialize<S: Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&Repr(*x))
    }

    pub fn serialize_vec<S: Serializer>(v: &[f64], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for &x in v {
            seq.serialize_element(&Repr(x).to_string())?;
        }
        seq.end()
    }

    /// An f64 read from a decimal string (correctly rounded) or a plain number.
    pub struct Exact(pub f64);

    impl<'de> Deserialize<'de> for Exact {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl Visitor<'_> for V {
                type Value = Exact;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a number or a decimal string")
                }
                fn visit_str<E: de::Error>(self, s: &str) -> Result<Exact, E> {
                    s.trim()
                        .parse()
                        .map(Exact)
                        .map_err(|_| E::custom(format!("\"{s}\" is not a number")))
                }
                fn visit_f64<E: de::Error>(self, x: f64) -> Result<Exact, E> {
                    Ok(Exact(x))
                }
                fn visit_i64<E: de::Error>(self, x: i64) -> Result<Exact, E> {
                    Ok(Exact(x as f64))
                }
                fn visit_u64<E: de::Error>(self, x: u64) -> Result<Exact, E> {
                    Ok(Exact(x as f64))
                }
            }
            d.deserialize_any(V)
        }
    }

    pub fn unwrap(v: Vec<Exact>) -> Vec<f64> {
        v.into_iter().map(|e| e.0).collect()
    }
}

impl TryFrom<ProfileData> for ReferenceProfile {
    type Error = DriftError;

    fn try_from(d: ProfileData) -> Result<Self, DriftError> {
        let d = ProfileValues {
            sorted: exact::unwrap(d.sorted),
            edges: exact::unwrap(d.edges),
            proportions: exact::unwrap(d.proportions),
            mean: d.mean.0,
            std: d.std.0,
        };
        let bad = |why: &str| Err(DriftError::InvalidProfile(why.to_string()));
        if d.sorted.is_empty() {
            return bad("no samples");
        }
        if d.sorted.iter().any(|x| !x.is_finite()) {
            return bad("a sample is not finite");
        }
        if d.sorted.windows(2).any(|w| w[0] > w[1]) {
            return bad("samples are not sorted");
        }
        if d.edges.len() >= BINS || d.edges.windows(2).any(|w| w[0] >= w[1]) {
            return bad("edges are not at most 9 strictly increasing values");
        }
        if d.proportions.len() != d.edges.len() + 1
            || d.proportions.iter().any(|p| !(0.0..=1.0).contains(p))
        {
            return bad("proportions do not match the edges");
        }
        if !d.mean.is_finite() || !d.std.is_finite() || d.std < 0.0 {
            return bad("mean or standard deviation is not finite");
        }
        Ok(ReferenceProfile {
            prefix: PrefixSums::new(&d.sorted),
            sorted: d.sorted,
            edges: d.edges,
            proportions: d.proportions,
            mean: d.mean,
            std: d.std,
        })
    }
}

struct ProfileValues {
    sorted: Vec<f64>,
    edges: Vec<f64>,
    proportions: Vec<f64>,
    mean: f64,
    std: f64,
}

impl ReferenceProfile {
    /// Builds the profile of one feature's reference samples (any order).
    /// `feature` only names the feature in errors.
    pub fn new(feature: &str, samples: &[f64]) -> Result<Self, DriftError> {
        if samples.is_empty() {
            return Err(DriftError::Empty {
                what: feature.to_string(),
            });
        }
        let sorted = sorted_finite(feature, samples)?;
        Ok(Self::from_sorted_unchecked(sorted))
    }

    /// Builds the profile from samples the caller has already sorted and checked.
    fn from_sorted_unchecked(sorted: Vec<f64>) -> Self {
        let edges = quantile_edges(&sorted);
        let proportions = proportions(&bin_counts_sorted(&edges, &sorted));
        let mean = mean(&sorted);
        let std = std_dev(&sorted, mean);
        ReferenceProfile {
            prefix: PrefixSums::new(&sorted),
            sorted,
            edges,
            proportions,
            mean,
            std,
        }
    }

    /// The reference samples, ascending.
    pub fn sorted(&self) -> &[f64] {
        &self.sorted
    }

    /// Number of reference samples.
    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    /// Always false: a profile has at least one sample.
    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    /// Inner PSI edges (at most 9, strictly increasing).
    pub fn edges(&self) -> &[f64] {
        &self.edges
    }

    /// The reference's own bin proportions (not floored), one per bin.
    pub fn proportions(&self) -> &[f64] {
        &self.proportions
    }

    pub fn mean(&self) -> f64 {
        self.mean
    }

    /// Population standard deviation (ddof = 0).
    pub fn std(&self) -> f64 {
        self.std
    }

    /// Prefix sums of the sorted samples.
    pub fn prefix_sums(&self) -> &PrefixSums {
        &self.prefix
    }

    /// Bin proportions of sorted current data on this reference's edges.
    pub fn current_proportions(&self, current_sorted: &[f64]) -> Vec<f64> {
        proportions(&bin_counts_sorted(&self.edges, current_sorted))
    }

    /// PSI of sorted current data against this reference.
    pub fn psi_sorted(&self, current_sorted: &[f64]) -> f64 {
        psi(&self.proportions, &self.current_proportions(current_sorted))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_follow_numpy_linear() {
        // np.quantile([1, 2, 3, 4], [0.1, 0.5, 0.9]) == [1.3, 2.5, 3.7]
        let s = [1.0, 2.0, 3.0, 4.0];
        assert!((quantile_linear(&s, 0.1) - 1.3).abs() < 1e-15);
        assert_eq!(quantile_linear(&s, 0.5), 2.5);
        assert!((quantile_linear(&s, 0.9) - 3.7).abs() < 1e-15);
        assert_eq!(quantile_linear(&s, 1.0), 4.0);
        assert_eq!(quantile_linear(&[5.0], 0.3), 5.0);
        // The t >= 0.5 branch interpolates from the upper value, as numpy does.
        let t = 0.7;
        let (a, b) = (0.1, 0.7);
        assert_eq!(quantile_linear(&[a, b], t), b - (b - a) * (1.0 - t));
    }

    #[test]
    fn edges_of_0_to_100() {
        let s: Vec<f64> = (0..=100).map(f64::from).collect();
        let edges = quantile_edges(&s);
        assert_eq!(edges.len(), 9);
        for (i, e) in edges.iter().enumerate() {
            assert!((e - 10.0 * (i + 1) as f64).abs() < 1e-12, "{edges:?}");
        }
    }

    #[test]
    fn duplicate_edges_are_removed() {
        // 80 % of the mass at one value: edges 0.1..0.8 collapse.
        let mut s = vec![1.0; 80];
        s.extend((0..20).map(|i| 2.0 + f64::from(i)));
        let p = ReferenceProfile::new("x", &s).unwrap();
        assert!(p.edges().windows(2).all(|w| w[0] < w[1]));
        assert!(p.edges().len() < 9);
        assert_eq!(p.proportions().len(), p.edges().len() + 1);
        let total: f64 = p.proportions().iter().sum();
        assert!((total - 1.0).abs() < 1e-12);
    }

    #[test]
    fn value_on_an_edge_goes_to_the_bin_above() {
        let edges = [1.0, 2.0, 3.0];
        assert_eq!(bin_index(&edges, 0.5), 0);
        assert_eq!(bin_index(&edges, 1.0), 1);
        assert_eq!(bin_index(&edges, 2.5), 2);
        assert_eq!(bin_index(&edges, 3.0), 3);
        let data = [0.0, 1.0, 1.0, 2.0, 3.0, 9.0];
        assert_eq!(bin_counts_sorted(&edges, &data), vec![1, 2, 1, 2]);
        assert_eq!(bin_counts(&edges, &data), vec![1, 2, 1, 2]);
    }

    #[test]
    fn values_outside_the_reference_range_are_counted() {
        let reference: Vec<f64> = (0..1000).map(|i| f64::from(i) / 1000.0).collect();
        let p = ReferenceProfile::new("x", &reference).unwrap();
        let current: Vec<f64> = (0..1000).map(|i| 5.0 + f64::from(i)).collect();
        let c = p.current_proportions(&current);
        assert_eq!(c[c.len() - 1], 1.0, "everything lands in the open top bin");
        // Floored at 1e-4, not renormalised: 9 bins of (1e-4 - 0.1) ln(1e-3) and one of
        // (1 - 0.1) ln(10).
        let expected = 9.0 * (1e-4 - 0.1) * (1e-4f64 / 0.1).ln() + 0.9 * (10.0f64).ln();
        assert!((p.psi_sorted(&current) - expected).abs() < 1e-12);
    }

    #[test]
    fn psi_of_identical_data_is_zero() {
        let reference: Vec<f64> = (0..500).map(|i| (f64::from(i) * 0.37).sin()).collect();
        let p = ReferenceProfile::new("x", &reference).unwrap();
        assert_eq!(p.psi_sorted(p.sorted()), 0.0);
    }

    #[test]
    fn psi_floors_without_renormalising() {
        let r = [0.5, 0.5, 0.0];
        let c = [0.5, 0.4, 0.1];
        let expected = (0.4 - 0.5) * (0.4f64 / 0.5).ln() + (0.1 - 1e-4) * (0.1f64 / 1e-4).ln();
        assert!((psi(&r, &c) - expected).abs() < 1e-15);
    }

    #[test]
    fn profile_summary_and_errors() {
        let p = ReferenceProfile::new("x", &[3.0, 1.0, 2.0]).unwrap();
        assert_eq!(p.sorted(), &[1.0, 2.0, 3.0]);
        assert_eq!(p.mean(), 2.0);
        assert!((p.std() - (2.0f64 / 3.0).sqrt()).abs() < 1e-15);
        assert!(ReferenceProfile::new("UCWF", &[]).is_err());
        let err = ReferenceProfile::new("UCWF", &[1.0, f64::NAN]).unwrap_err();
        assert!(err.to_string().contains("UCWF"), "{err}");
    }

    #[test]
    fn profile_round_trips_and_rejects_damage() {
        let reference: Vec<f64> = (0..300).map(|i| f64::from(i % 17) * 1.5).collect();
        let p = ReferenceProfile::new("x", &reference).unwrap();
        let json = serde_json::to_string(&p).unwrap();
        let back: ReferenceProfile = serde_json::from_str(&json).unwrap();
        assert_eq!(back, p);

        // Exact: shortest decimal strings, parsed back with Rust's correctly rounded parser.
        let tricky = ReferenceProfile::new("x", &[0.1 + 0.2, 1e-300, 2.5e17, -7.0 / 3.0]).unwrap();
        let back: ReferenceProfile =
            serde_json::from_str(&serde_json::to_string(&tricky).unwrap()).unwrap();
        assert_eq!(back, tricky);
        // Plain numbers are accepted too.
        let plain = r#"{"sorted":[1,2.5],"edges":[1.75],"proportions":[0.5,0.5],
            "mean":1.75,"std":0.75}"#;
        assert_eq!(
            serde_json::from_str::<ReferenceProfile>(plain)
                .unwrap()
                .edges(),
            &[1.75]
        );

        let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
        v["sorted"][0] = serde_json::json!("1e9");
        let err = serde_json::from_value::<ReferenceProfile>(v).unwrap_err();
        assert!(err.to_string().contains("not sorted"), "{err}");

        let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
        v["proportions"].as_array_mut().unwrap().pop();
        assert!(serde_json::from_value::<ReferenceProfile>(v).is_err());
    }
}
