//! Differential privacy (差分隐私), per dataset, when the bureau's policy asks for it.
//!
//! Accounting is in zero-concentrated DP (zCDP, Bun and Steinke 2016), in ρ: the discrete
//! Gaussian mechanism with scale σ on a value of L2 sensitivity Δ costs ρ = Δ² / (2σ²), and the
//! ρ of several releases add up. A run spends its dataset's `rho_per_run`, split evenly among the
//! measures it releases from that dataset; the spending is reserved against the operator's and
//! the dataset's budgets before the run ([`crate::budget`]).
//!
//! What is released from such a table is the host's own figure plus noise, never the module's:
//! a count is the cell's distinct units; a sum adds each unit's total in the cell clamped to
//! `[-sum_bound, sum_bound]`, rounded to an integer. A unit that falls in `m` cells of a table
//! changes `m` of its cells, by at most one (counts) or `sum_bound` + 1 (sums, the 1 for the
//! rounding) each, so Δ is that times √m. The noise is OpenDP's discrete Gaussian sampler
//! (Canonne, Kamath and Steinke 2020), with OpenSSL's generator.
//!
//! The statistical rules still run on the true figures first: a cell under the threshold is
//! withheld, noise or not. That choice depends on the data, as it does in every release with
//! both suppression and noise; the noise covers the released values.

use opendp::domains::AtomDomain;
use opendp::measurements::make_gaussian;
use opendp::measures::ZeroConcentratedDivergence;
use opendp::metrics::AbsoluteDistance;
use serde::{Deserialize, Serialize};

/// A dataset's differential-privacy settings, in the bureau's policy file:
///
/// ```toml
/// [datasets.persons.dp]
/// rho_per_run = 0.05
/// operator_budget = 1.0
/// dataset_budget = 5.0
/// sum_bound = 10000.0   # only for tables that release sums
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpSettings {
    /// ρ one run spends on the dataset, split among the measures it releases from it.
    pub rho_per_run: f64,
    /// ρ one operator may ever spend on the dataset. Never refreshed.
    pub operator_budget: f64,
    /// ρ all operators together may ever spend on the dataset. Never refreshed.
    pub dataset_budget: f64,
    /// Each unit's total in a cell is clamped to `[-sum_bound, sum_bound]` before summing. Without
    /// it a table releasing sums from the dataset fails.
    #[serde(default)]
    pub sum_bound: Option<f64>,
}

impl DpSettings {
    /// What is wrong with these settings, if anything (English, Chinese).
    pub(crate) fn problem(&self) -> Option<(String, String)> {
        let positive = |x: f64| x.is_finite() && x > 0.0;
        if !positive(self.rho_per_run) || !positive(self.operator_budget) || !positive(self.dataset_budget) {
            return Some((
                "rho_per_run, operator_budget and dataset_budget must be positive numbers".to_owned(),
                "rho_per_run、operator_budget、dataset_budget 必须是正数".to_owned(),
            ));
        }
        if self.rho_per_run > self.operator_budget || self.operator_budget > self.dataset_budget {
            return Some((
                "rho_per_run <= operator_budget <= dataset_budget must hold".to_owned(),
                "必须满足 rho_per_run <= operator_budget <= dataset_budget".to_owned(),
            ));
        }
        if self.sum_bound.is_some_and(|b| !positive(b)) {
            return Some(("sum_bound must be a positive number".to_owned(), "sum_bound 必须是正数".to_owned()));
        }
        None
    }
}

/// The discrete Gaussian's scale for L2 sensitivity `delta` at a cost of `rho`.
pub(crate) fn sigma(delta: f64, rho: f64) -> f64 {
    delta / (2.0 * rho).sqrt()
}

/// `value` plus discrete Gaussian noise of scale `sigma`; also the ρ OpenDP accounts for one
/// unit of sensitivity, for the report.
pub(crate) fn noisy(value: i64, sigma: f64) -> Result<i64, String> {
    let measurement = make_gaussian::<_, _, ZeroConcentratedDivergence>(
        AtomDomain::<i64>::default(),
        AbsoluteDistance::<i64>::default(),
        sigma,
        None,
    )
    .map_err(|e| e.to_string())?;
    measurement.invoke(&value).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scale_gives_the_rho_opendp_accounts() {
        // ρ = Δ² / (2σ²): with Δ = 1 and ρ = 0.5, σ = 1.
        assert!((sigma(1.0, 0.5) - 1.0).abs() < 1e-12);
        let s = sigma(3.0, 0.02);
        let measurement = make_gaussian::<_, _, ZeroConcentratedDivergence>(
            AtomDomain::<i64>::default(),
            AbsoluteDistance::<i64>::default(),
            s,
            None,
        )
        .unwrap();
        let rho = measurement.map(&3).unwrap();
        assert!((rho - 0.02).abs() < 1e-9, "{rho}");
    }

    #[test]
    fn noise_has_the_scale_asked_for() {
        let draws: Vec<f64> = (0..4000).map(|_| noisy(1000, 5.0).unwrap() as f64 - 1000.0).collect();
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        let sd = (draws.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / draws.len() as f64).sqrt();
        // Generous bounds: the check must not fail by chance (4000 draws: sd of the mean 0.08).
        assert!(mean.abs() < 0.6, "{mean}");
        assert!((4.5..5.5).contains(&sd), "{sd}");
    }

    #[test]
    fn settings_must_be_consistent() {
        let good = DpSettings { rho_per_run: 0.1, operator_budget: 1.0, dataset_budget: 2.0, sum_bound: None };
        assert_eq!(good.problem(), None);
        for bad in [
            DpSettings { rho_per_run: 0.0, ..good.clone() },
            DpSettings { rho_per_run: f64::NAN, ..good.clone() },
            DpSettings { operator_budget: 3.0, ..good.clone() },
            DpSettings { rho_per_run: 2.0, ..good.clone() },
            DpSettings { sum_bound: Some(-1.0), ..good.clone() },
        ] {
            assert!(bad.problem().is_some(), "{bad:?}");
        }
    }
}
