//! The cell key method (单元格键值扰动), per dataset, when the bureau's policy asks for it: the
//! protection the Australian Bureau of Statistics' TableBuilder and the ONS census flexible
//! tables give tables that users define on confidential microdata (Thompson, Broadfoot and
//! Elazar, "Methodology for the automatic confidentialisation of statistical outputs from remote
//! servers at the Australian Bureau of Statistics", UNECE SDC work session, 2013).
//!
//! Every cell gets a key in `[0, 1)` that depends only on the set of privacy units behind it: a
//! keyed hash of the cell's unit sketch (which the audit computes anyway, for differencing), under
//! the half of the domain key the units are not hashed with. The same units give the same key,
//! whoever asks and whenever, so asking again gives the same answer and averaging many asks
//! gives nothing. A perturbation table (ptable) maps a count `n` and a key to a change `v`:
//! - `|v| ≤ D` (`max_deviation`);
//! - unbiased: for each `n`, the expected change is zero;
//! - variance `V` (`variance`) wherever the constraints leave room for it, less for the small
//!   counts they bind;
//! - `n + v ≥ 0`, and no released count is positive and below `js`: small counts go to zero or
//!   to `js` and above;
//! - zero stays zero (an empty cell is not made to look filled).
//!
//! Each row is the distribution of largest entropy under those constraints, `p(v) ∝ exp(a·v +
//! b·v²)` on the allowed changes, as in sdcTools' `ptable` package (Enderle, Giessing and
//! Tent): `a` found by bisection so that the mean is zero, `b` so that the variance is `V`. The
//! key picks `v` by the row's cumulative distribution.
//!
//! Sums use the magnitude variant: the cell's total moves by `(v / D) · magnitude · x₁`, `x₁` its
//! largest contribution and `v` drawn from the full row with a key of its two largest
//! contributions — so a dominant contribution is blurred by a share of itself, unbiased, and
//! adding units that contribute little does not redraw the noise (red team: sixteen variants with
//! shops of almost no revenue averaged it away). Cells that share their two largest
//! contributions share the noise, and their difference leaves exact: differencing and the
//! dominance of differences judge it.
//!
//! The statistical rules still run on the true figures first (threshold, dominance,
//! differencing, margins): perturbation is a layer on top, as differential privacy is. What it
//! adds is that the routes those rules do not see — inclusion–exclusion of three or more cells,
//! differences of cells released years apart — return noise of variance 2V or more rather than a
//! unit's value.

use serde::{Deserialize, Serialize};

/// A dataset's perturbation settings, in the bureau's policy file:
///
/// ```toml
/// [datasets.persons.perturbation]
/// max_deviation = 3     # D
/// variance = 2.0        # V, below D²
/// js = 3                # no released count in 1..3; at most D
/// magnitude = 0.5       # sums move by at most this share of their largest contribution
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Perturbation {
    pub max_deviation: u32,
    pub variance: f64,
    #[serde(default)]
    pub js: u32,
    #[serde(default = "default_magnitude")]
    pub magnitude: f64,
}

fn default_magnitude() -> f64 {
    0.5
}

impl Perturbation {
    /// What is wrong with these settings, if anything (English, Chinese).
    pub(crate) fn problem(&self) -> Option<(String, String)> {
        let d = f64::from(self.max_deviation);
        if !(1..=20).contains(&self.max_deviation) {
            return Some(("max_deviation must be 1 to 20".to_owned(), "max_deviation 必须在 1 到 20 之间".to_owned()));
        }
        if !(self.variance.is_finite() && self.variance > 0.0 && self.variance < d * d) {
            return Some((
                "variance must be positive and below max_deviation squared".to_owned(),
                "variance 必须为正且小于 max_deviation 的平方".to_owned(),
            ));
        }
        if self.js > self.max_deviation {
            return Some((
                "js must be at most max_deviation: a small count must be able to reach zero or js".to_owned(),
                "js 不得大于 max_deviation：小计数须能变为零或不小于 js".to_owned(),
            ));
        }
        if !(self.magnitude.is_finite() && self.magnitude > 0.0 && self.magnitude <= 2.0) {
            return Some((
                "magnitude must be above 0 and at most 2".to_owned(),
                "magnitude 必须大于 0 且不超过 2".to_owned(),
            ));
        }
        None
    }

    /// The stricter of two settings: the larger of each.
    pub(crate) fn strictest(&self, other: &Perturbation) -> Perturbation {
        Perturbation {
            max_deviation: self.max_deviation.max(other.max_deviation),
            variance: self.variance.max(other.variance),
            js: self.js.max(other.js),
            magnitude: self.magnitude.max(other.magnitude),
        }
    }

    /// The perturbation table.
    pub fn table(&self) -> PTable {
        let d = i64::from(self.max_deviation);
        let js = i64::from(self.js);
        // From n = D + js up, every change is allowed: one row serves them all.
        let rows = (0..=d + js).map(|n| row(n, d, js, self.variance)).collect();
        PTable { rows, max_deviation: d }
    }
}

/// A perturbation table: per original count (the last row for every larger one), the changes
/// and their probabilities.
#[derive(Debug, Clone, PartialEq)]
pub struct PTable {
    pub rows: Vec<Vec<(i64, f64)>>,
    max_deviation: i64,
}

impl PTable {
    /// The row of count `n`.
    pub fn row(&self, n: i64) -> &[(i64, f64)] {
        &self.rows[(n.max(0) as usize).min(self.rows.len() - 1)]
    }

    /// The change the key `u` (in `[0, 1)`) picks in row `n`.
    pub fn change(&self, n: i64, u: f64) -> i64 {
        let row = self.row(n);
        let mut cumulative = 0.0;
        for &(v, p) in row {
            cumulative += p;
            if u < cumulative {
                return v;
            }
        }
        row.last().map_or(0, |&(v, _)| v)
    }

    /// `n` perturbed with key `u`.
    pub fn count(&self, n: i64, u: f64) -> i64 {
        n + self.change(n, u)
    }

    /// A total perturbed with key `u`: moved by a share of its largest contribution, drawn from
    /// the full row.
    pub fn total(&self, total: f64, largest: f64, magnitude: f64, u: f64) -> f64 {
        let v = self.change(i64::MAX, u) as f64 / self.max_deviation as f64;
        total + v * magnitude * largest.abs()
    }
}

/// The row of count `n`: changes `v` in `[-d, d]` with `n + v` zero or at least `js` (and
/// `n + v = 0` for `n = 0`), of largest entropy with mean zero and variance as near `variance`
/// as the allowed changes permit.
fn row(n: i64, d: i64, js: i64, variance: f64) -> Vec<(i64, f64)> {
    if n == 0 {
        return vec![(0, 1.0)];
    }
    let support: Vec<i64> = (-d..=d).filter(|v| n + v == 0 || n + v >= js.max(1)).collect();
    let at = |b: f64| {
        let a = bisect(|a| moments(&support, a, b).0, -200.0, 200.0);
        (a, moments(&support, a, b).1)
    };
    // The variance grows with b; find b that gives the target, or the nearest end.
    let b = bisect(|b| at(b).1 - variance, -20.0, 20.0);
    let (a, _) = at(b);
    weights(&support, a, b).into_iter().zip(&support).map(|(p, &v)| (v, p)).collect()
}

/// The normalized weights `exp(a·v + b·v²)`.
fn weights(support: &[i64], a: f64, b: f64) -> Vec<f64> {
    let exponents: Vec<f64> = support.iter().map(|&v| a * v as f64 + b * (v * v) as f64).collect();
    let top = exponents.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let raw: Vec<f64> = exponents.iter().map(|e| (e - top).exp()).collect();
    let sum: f64 = raw.iter().sum();
    raw.iter().map(|w| w / sum).collect()
}

/// (mean, variance) of the weights.
fn moments(support: &[i64], a: f64, b: f64) -> (f64, f64) {
    let w = weights(support, a, b);
    let mean: f64 = w.iter().zip(support).map(|(p, &v)| p * v as f64).sum();
    let second: f64 = w.iter().zip(support).map(|(p, &v)| p * (v * v) as f64).sum();
    (mean, second - mean * mean)
}

/// The root of increasing `f` in `[lo, hi]`, or the end nearest it.
fn bisect(f: impl Fn(f64) -> f64, mut lo: f64, mut hi: f64) -> f64 {
    if f(lo) >= 0.0 {
        return lo;
    }
    if f(hi) <= 0.0 {
        return hi;
    }
    for _ in 0..200 {
        let mid = (lo + hi) / 2.0;
        if f(mid) < 0.0 { lo = mid } else { hi = mid }
    }
    (lo + hi) / 2.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(d: u32, v: f64, js: u32) -> Perturbation {
        Perturbation { max_deviation: d, variance: v, js, magnitude: 0.5 }
    }

    #[test]
    fn every_row_is_unbiased_bounded_and_has_no_small_positive_counts() {
        for (d, v, js) in [(2, 1.0, 0), (3, 2.0, 3), (5, 4.0, 2), (1, 0.5, 1), (4, 3.0, 4)] {
            let table = settings(d, v, js).table();
            for (n, row) in table.rows.iter().enumerate() {
                let n = n as i64;
                let total: f64 = row.iter().map(|(_, p)| p).sum();
                let mean: f64 = row.iter().map(|&(v, p)| v as f64 * p).sum();
                assert!((total - 1.0).abs() < 1e-12, "D={d} V={v} js={js} n={n}: sums to {total}");
                assert!(mean.abs() < 1e-9, "D={d} V={v} js={js} n={n}: biased by {mean}");
                for &(change, p) in row {
                    assert!(p >= 0.0 && change.abs() <= i64::from(d), "n={n} v={change}");
                    let out = n + change;
                    assert!(out >= 0 && (out == 0 || out >= i64::from(js)), "n={n} gives {out} with js={js}");
                }
            }
            // Where every change is allowed, the variance is the one asked for.
            let full = table.row(1000);
            let variance: f64 = full.iter().map(|&(v, p)| (v * v) as f64 * p).sum();
            assert!((variance - v).abs() < 1e-9, "D={d}: variance {variance}, asked {v}");
            assert_eq!(table.row(0), &[(0, 1.0)], "zero stays zero");
        }
    }

    #[test]
    fn the_key_picks_changes_in_proportion_to_their_probability() {
        let table = settings(3, 2.0, 0).table();
        let draws = 100_000;
        let mut mean = 0.0;
        let mut square = 0.0;
        for i in 0..draws {
            let v = table.change(50, (i as f64 + 0.5) / draws as f64) as f64;
            mean += v / draws as f64;
            square += v * v / draws as f64;
        }
        assert!(mean.abs() < 1e-3 && (square - 2.0).abs() < 1e-3, "mean {mean}, variance {square}");
        // A total moves by at most the magnitude share of its largest contribution, unbiased.
        let moved: Vec<f64> =
            (0..draws).map(|i| table.total(1000.0, 100.0, 0.5, (i as f64 + 0.5) / draws as f64)).collect();
        assert!(moved.iter().all(|t| (t - 1000.0).abs() <= 50.0 + 1e-9));
        let average = moved.iter().sum::<f64>() / draws as f64;
        assert!((average - 1000.0).abs() < 0.01, "{average}");
    }

    #[test]
    fn a_difference_of_two_cells_one_unit_apart_is_noise_not_the_unit() {
        // Differencing and margins by subtraction: A and A + {p}, released perturbed. Over many
        // such pairs the difference is unbiased (1 on average) but rarely exactly 1: the two
        // keys are independent, so its variance is 2V.
        use crate::differencing::{Sketch, UnitHasher};
        let hasher = UnitHasher::new(&[9; 32]);
        let table = settings(3, 2.0, 0).table();
        let trials = 4000;
        let (mut exact, mut sum, mut square) = (0, 0.0, 0.0);
        for t in 0..trials {
            let mut a = Sketch::default();
            for u in 0..20 {
                a.insert(&hasher, format!("unit {t} {u}").as_bytes());
            }
            let mut b = a.clone();
            b.insert(&hasher, format!("unit {t} p").as_bytes());
            let (na, nb) =
                (table.count(20, hasher.cell_key("count", &a)), table.count(21, hasher.cell_key("count", &b)));
            let d = (nb - na) as f64;
            exact += usize::from(d == 1.0);
            sum += d;
            square += (d - 1.0) * (d - 1.0);
            // The same units, asked again: the same key, the same figure.
            assert_eq!(table.count(20, hasher.cell_key("count", &a.clone())), na);
        }
        let (mean, variance) = (sum / trials as f64, square / trials as f64);
        assert!((mean - 1.0).abs() < 0.1, "unbiased: {mean}");
        assert!((variance - 4.0).abs() < 0.4, "variance 2V: {variance}");
        assert!(exact < trials / 2, "the unit's count came back {exact} times in {trials}");
    }

    #[test]
    fn settings_out_of_range_are_refused() {
        assert!(settings(3, 2.0, 3).problem().is_none());
        for bad in [settings(0, 0.5, 0), settings(2, 4.0, 0), settings(2, 1.0, 3), settings(2, -1.0, 0)] {
            assert!(bad.problem().is_some(), "{bad:?}");
        }
    }
}
