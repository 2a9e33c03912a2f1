//! Checked, sorted samples and the summary numbers every statistic shares.
//!
//! Every statistic in this module works on sorted data: sorting once per window is what makes
//! PSI bin counts, the KS statistic and the Wasserstein distance linear (or sub-linear) merges
//! instead of repeated searches. NaN has no place in an order, so samples are checked once,
//! here, and everything downstream may assume finite values.

use super::DriftError;

/// Returns `values` sorted ascending, or an error naming `what` if one is not finite.
///
/// `-0.0` is stored as `0.0`: the two compare equal, and normalising them keeps the radix order
/// (which would put `-0.0` first) identical to the comparison order.
pub fn sorted_finite(what: &str, values: &[f64]) -> Result<Vec<f64>, DriftError> {
    let mut v = Vec::with_capacity(values.len());
    for (i, &x) in values.iter().enumerate() {
        if !x.is_finite() {
            return Err(DriftError::NonFinite {
                what: what.to_string(),
                index: i,
                value: x,
            });
        }
        v.push(x + 0.0);
    }
    sort_finite_in_place(&mut v);
    Ok(v)
}

/// Sorts finite values ascending.
///
/// Above a few thousand values a byte-wise LSD radix sort on the order-preserving bit pattern
/// beats the standard library's comparison sort by about 1.6x (0.6 ms against 1.0 ms for
/// 50,000 normal samples, measured), and sorting is a quarter of a full report. Small
/// inputs use the standard sort.
pub fn sort_finite_in_place(v: &mut [f64]) {
    const RADIX_MIN: usize = 2048;
    if v.len() < RADIX_MIN {
        v.sort_unstable_by(f64::total_cmp);
        return;
    }
    let mut keys: Vec<u64> = v.iter().map(|&x| order_key(x)).collect();
    let mut buf = vec![0u64; keys.len()];
    let mut counts = [[0usize; 256]; 8];
    for &k in &keys {
        for (byte, c) in counts.iter_mut().enumerate() {
            c[((k >> (8 * byte)) & 0xff) as usize] += 1;
        }
    }
    let mut src = &mut keys;
    let mut dst = &mut buf;
    for (byte, c) in counts.iter().enumerate() {
        // A byte that every key shares (the sign and exponent of same-sign data in one octave,
        // for example) would only copy the array.
        if c.contains(&src.len()) {
            continue;
        }
        let mut offsets = [0usize; 256];
        let mut total = 0;
        for (o, &n) in offsets.iter_mut().zip(c.iter()) {
            *o = total;
            total += n;
        }
        for &k in src.iter() {
            let d = ((k >> (8 * byte)) & 0xff) as usize;
            dst[offsets[d]] = k;
            offsets[d] += 1;
        }
        std::mem::swap(&mut src, &mut dst);
    }
    for (x, &k) in v.iter_mut().zip(src.iter()) {
        *x = from_order_key(k);
    }
}

/// Maps a float to an integer whose unsigned order is the float's numeric order.
fn order_key(x: f64) -> u64 {
    let b = x.to_bits();
    if b >> 63 == 1 {
        !b
    } else {
        b | (1 << 63)
    }
}

fn from_order_key(k: u64) -> f64 {
    if k >> 63 == 1 {
        f64::from_bits(k & !(1 << 63))
    } else {
        f64::from_bits(!k)
    }
}

/// Sum with Neumaier's compensation: the error stays at a few ulps of the result however
/// many terms there are, which the parity checks against numpy's pairwise sums rely on.
#[derive(Debug, Clone, Copy, Default)]
pub struct CompensatedSum {
    sum: f64,
    compensation: f64,
}

impl CompensatedSum {
    pub fn add(&mut self, x: f64) {
        let t = self.sum + x;
        if self.sum.abs() >= x.abs() {
            self.compensation += (self.sum - t) + x;
        } else {
            self.compensation += (x - t) + self.sum;
        }
        self.sum = t;
    }

    pub fn value(&self) -> f64 {
        self.sum + self.compensation
    }
}

/// Arithmetic mean (compensated). `values` must not be empty.
pub fn mean(values: &[f64]) -> f64 {
    let mut s = CompensatedSum::default();
    for &x in values {
        s.add(x);
    }
    s.value() / values.len() as f64
}

/// Population standard deviation (ddof = 0, numpy's `np.std` default) around `mean`.
///
/// Population rather than sample deviation because it only scales distances (the
/// Wasserstein normalisation) and matches what Evidently and numpy users expect.
pub fn std_dev(values: &[f64], mean: f64) -> f64 {
    let mut s = CompensatedSum::default();
    for &x in values {
        let d = x - mean;
        s.add(d * d);
    }
    (s.value() / values.len() as f64).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn radix_sort_matches_comparison_sort() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for len in [0usize, 1, 5, 2047, 2048, 5000, 40_000] {
            let mut v: Vec<f64> = (0..len)
                .map(|i| match i % 7 {
                    0 => rng.random_range(-1e6..1e6),
                    1 => rng.random_range(-1.0..1.0) * 1e-300,
                    2 => 0.0,
                    3 => f64::MAX * rng.random_range(-1.0..1.0),
                    _ => rng.random_range(20.0..30.0),
                })
                .collect();
            let mut expected = v.clone();
            expected.sort_by(|a, b| a.partial_cmp(b).unwrap());
            sort_finite_in_place(&mut v);
            assert_eq!(v, expected, "len {len}");
        }
    }

    #[test]
    fn sorted_finite_rejects_nan_and_normalises_negative_zero() {
        let err = sorted_finite("UCWIT", &[1.0, f64::NAN]).unwrap_err();
        assert!(err.to_string().contains("UCWIT"), "{err}");
        assert!(sorted_finite("x", &[f64::INFINITY]).is_err());
        let v = sorted_finite("x", &[0.0, -0.0, -1.0]).unwrap();
        assert_eq!(v, vec![-1.0, 0.0, 0.0]);
        assert!(v[1].is_sign_positive());
    }

    #[test]
    fn compensated_mean_and_std() {
        // A sum that loses every small term in plain f64.
        let mut v = vec![1e16];
        v.extend(std::iter::repeat_n(1.0, 1000));
        v.push(-1e16);
        assert_eq!(mean(&v) * v.len() as f64, 1000.0);
        let x = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0];
        let m = mean(&x);
        assert_eq!(m, 5.0);
        assert_eq!(std_dev(&x, m), 2.0);
    }
}
