//! The audit's parameters: DESIGN.md section 5's defaults, which the bureau may tighten per
//! dataset in a policy file and nobody may loosen.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::dp::DpSettings;
use crate::perturbation::Perturbation;

/// One set of rule parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    /// Fewest distinct privacy units behind a released cell.
    pub min_units: u64,
    /// nk-dominance: a cell is sensitive when its `dominance_n` largest contributors hold more
    /// than `dominance_k` of its total.
    pub dominance_n: usize,
    pub dominance_k: f64,
    /// p-ratio: a cell is sensitive when the rest, after its two largest contributors, is less
    /// than `p_ratio` times the largest (the second could then estimate the largest too well).
    pub p_ratio: f64,
    /// Fewest privacy units behind a minimum, maximum or quantile.
    pub min_units_extremes: u64,
    /// Fewest residual degrees of freedom of a model.
    pub min_residual_df: i64,
    pub max_rows: u64,
    pub max_bytes: u64,
    /// Released counts are rounded to a multiple of this.
    pub rounding_base: u64,
    /// Released sums, means, ratios, extremes, quantiles, coefficients and standard errors are
    /// rounded to this many significant digits.
    pub significant_digits: u32,
    /// Every table goes to two reviewers (人工复核) even when every check passes, as
    /// OpenSAFELY's output checkers see every output. Tables under differential privacy are
    /// released with their noise instead: it is drawn only for what leaves at once.
    pub review_all: bool,
    /// The cell key method, for tables that read a dataset under it: released counts and sums
    /// are perturbed (see `perturbation`) instead of rounded. Public, like every parameter here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub perturbation: Option<Perturbation>,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            min_units: 10,
            dominance_n: 2,
            dominance_k: 0.90,
            p_ratio: 0.10,
            min_units_extremes: 10,
            min_residual_df: 10,
            max_rows: 5000,
            max_bytes: 16 << 20,
            rounding_base: 5,
            significant_digits: 4,
            review_all: false,
            perturbation: None,
        }
    }
}

/// Limits on production runs, per licence, that bound what a run's outcome and timing can
/// carry out (see ARCHITECTURE.md, "Channels that remain").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunPolicy {
    /// Breaches of the output contract (declared values that disagree with the host's, output
    /// the contract does not declare) after which a licence is suspended at once, pending the
    /// bureau's review (包头 第四十九条).
    pub max_breaches: u32,
    /// Production runs a licence may start in one day (Beijing time).
    pub runs_per_day: u32,
    /// When not zero, a production run's end is logged and answered only at a multiple of this
    /// many milliseconds after it started, so its duration carries less.
    pub answer_quantum_ms: u64,
}

impl Default for RunPolicy {
    fn default() -> Self {
        RunPolicy { max_breaches: 3, runs_per_day: 50, answer_quantum_ms: 0 }
    }
}

/// Changes to the defaults, for one dataset or all.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Tightening {
    min_units: Option<u64>,
    dominance_n: Option<usize>,
    dominance_k: Option<f64>,
    p_ratio: Option<f64>,
    min_units_extremes: Option<u64>,
    min_residual_df: Option<i64>,
    max_rows: Option<u64>,
    max_bytes: Option<u64>,
    rounding_base: Option<u64>,
    significant_digits: Option<u32>,
    review_all: Option<bool>,
    /// Differential privacy for the dataset's tables (only under `[datasets.<id>]`).
    dp: Option<DpSettings>,
    /// The cell key method for the dataset's tables (only under `[datasets.<id>]`).
    perturbation: Option<Perturbation>,
}

/// The bureau's audit policy: the defaults and any per-dataset tightening.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditPolicy {
    #[serde(default)]
    defaults: Tightening,
    #[serde(default)]
    datasets: BTreeMap<String, Tightening>,
    #[serde(default)]
    runs: RunPolicy,
}

/// A policy file that cannot be used: it does not parse or it loosens a rule.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("audit policy: {en} / 审核策略：{zh}")]
pub struct PolicyFileError {
    pub en: String,
    pub zh: String,
}

impl AuditPolicy {
    /// Parses a policy file. Every value must be at least as strict as the default.
    pub fn parse(text: &str) -> Result<AuditPolicy, PolicyFileError> {
        let policy: AuditPolicy = toml::from_str(text)
            .map_err(|e| PolicyFileError {
                en: e.message().to_owned(), zh: format!("无法解析：{}", e.message())
            })?;
        let base = Rules::default();
        for (scope, t) in std::iter::once(("defaults", &policy.defaults))
            .chain(policy.datasets.iter().map(|(name, t)| (name.as_str(), t)))
        {
            if let Some(dp) = &t.dp {
                if scope == "defaults" {
                    return Err(PolicyFileError {
                        en: "defaults: dp is set per dataset, under [datasets.<id>.dp]".to_owned(),
                        zh: "defaults：差分隐私按数据集设置，写在 [datasets.<id>.dp] 下".to_owned(),
                    });
                }
                if let Some((en, zh)) = dp.problem() {
                    return Err(PolicyFileError { en: format!("{scope}.dp: {en}"), zh: format!("{scope}.dp：{zh}") });
                }
            }
            if let Some(p) = &t.perturbation {
                if scope == "defaults" {
                    return Err(PolicyFileError {
                        en: "defaults: perturbation is set per dataset, under [datasets.<id>.perturbation]".to_owned(),
                        zh: "defaults：扰动按数据集设置，写在 [datasets.<id>.perturbation] 下".to_owned(),
                    });
                }
                if t.dp.is_some() {
                    return Err(PolicyFileError {
                        en: format!("{scope}: dp and perturbation are alternatives; choose one"),
                        zh: format!("{scope}：差分隐私与扰动只能择一"),
                    });
                }
                if let Some((en, zh)) = p.problem() {
                    return Err(PolicyFileError {
                        en: format!("{scope}.perturbation: {en}"),
                        zh: format!("{scope}.perturbation：{zh}"),
                    });
                }
            }
            let tightened = t.apply(&base);
            if let Some(rule) = loosened(&base, &tightened) {
                return Err(PolicyFileError {
                    en: format!("{scope}: {rule} is looser than the default; a policy may only tighten"),
                    zh: format!("{scope}：{rule} 比默认值宽松；策略只能收紧，不能放宽"),
                });
            }
        }
        let (runs, defaults) = (&policy.runs, RunPolicy::default());
        let looser = [
            (!(1..=defaults.max_breaches).contains(&runs.max_breaches), "max_breaches"),
            (!(1..=defaults.runs_per_day).contains(&runs.runs_per_day), "runs_per_day"),
            (runs.answer_quantum_ms > 3_600_000, "answer_quantum_ms (at most an hour)"),
        ];
        if let Some((_, rule)) = looser.into_iter().find(|(looser, _)| *looser) {
            return Err(PolicyFileError {
                en: format!("runs: {rule} is out of range; a policy may only tighten"),
                zh: format!("runs：{rule} 超出允许范围；策略只能收紧"),
            });
        }
        Ok(policy)
    }

    /// The rules for a table that reads `datasets`: the strictest of their settings.
    pub fn rules_for<'a>(&self, datasets: impl IntoIterator<Item = &'a str>) -> Rules {
        let mut rules = self.defaults.apply(&Rules::default());
        for dataset in datasets {
            if let Some(t) = self.datasets.get(dataset) {
                rules = strictest(&rules, &t.apply(&rules));
            }
        }
        rules
    }

    /// The limits on production runs.
    pub fn runs(&self) -> &RunPolicy {
        &self.runs
    }

    /// The differential-privacy settings of `dataset`, if its tables are released with noise.
    pub fn dp(&self, dataset: &str) -> Option<&DpSettings> {
        self.datasets.get(dataset).and_then(|t| t.dp.as_ref())
    }

    /// SHA-256 of the policy's canonical JSON form, for every audit report.
    pub fn sha256(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        hex::encode(Sha256::digest(json))
    }
}

impl Tightening {
    fn apply(&self, base: &Rules) -> Rules {
        Rules {
            min_units: self.min_units.unwrap_or(base.min_units),
            dominance_n: self.dominance_n.unwrap_or(base.dominance_n),
            dominance_k: self.dominance_k.unwrap_or(base.dominance_k),
            p_ratio: self.p_ratio.unwrap_or(base.p_ratio),
            min_units_extremes: self.min_units_extremes.unwrap_or(base.min_units_extremes),
            min_residual_df: self.min_residual_df.unwrap_or(base.min_residual_df),
            max_rows: self.max_rows.unwrap_or(base.max_rows),
            max_bytes: self.max_bytes.unwrap_or(base.max_bytes),
            rounding_base: self.rounding_base.unwrap_or(base.rounding_base),
            significant_digits: self.significant_digits.unwrap_or(base.significant_digits),
            review_all: self.review_all.unwrap_or(base.review_all),
            perturbation: match (&self.perturbation, &base.perturbation) {
                (Some(a), Some(b)) => Some(a.strictest(b)),
                (a, b) => a.clone().or_else(|| b.clone()),
            },
        }
    }
}

/// The first rule `b` sets looser than `a`.
fn loosened(a: &Rules, b: &Rules) -> Option<&'static str> {
    let checks = [
        (b.min_units < a.min_units, "min_units"),
        (b.dominance_n < a.dominance_n, "dominance_n"),
        (!(b.dominance_k > 0.0 && b.dominance_k <= a.dominance_k), "dominance_k"),
        (!(b.p_ratio >= a.p_ratio && b.p_ratio < 1.0), "p_ratio"),
        (b.min_units_extremes < a.min_units_extremes, "min_units_extremes"),
        (b.min_residual_df < a.min_residual_df, "min_residual_df"),
        (b.max_rows > a.max_rows, "max_rows"),
        (b.max_bytes > a.max_bytes, "max_bytes"),
        (b.rounding_base < a.rounding_base || !b.rounding_base.is_multiple_of(a.rounding_base), "rounding_base"),
        (!(1..=a.significant_digits).contains(&b.significant_digits), "significant_digits"),
        (a.review_all && !b.review_all, "review_all"),
        (a.perturbation.is_some() && b.perturbation.is_none(), "perturbation"),
    ];
    checks.into_iter().find(|(looser, _)| *looser).map(|(_, rule)| rule)
}

fn strictest(a: &Rules, b: &Rules) -> Rules {
    Rules {
        min_units: a.min_units.max(b.min_units),
        dominance_n: a.dominance_n.max(b.dominance_n),
        dominance_k: a.dominance_k.min(b.dominance_k),
        p_ratio: a.p_ratio.max(b.p_ratio),
        min_units_extremes: a.min_units_extremes.max(b.min_units_extremes),
        min_residual_df: a.min_residual_df.max(b.min_residual_df),
        max_rows: a.max_rows.min(b.max_rows),
        max_bytes: a.max_bytes.min(b.max_bytes),
        rounding_base: a.rounding_base.max(b.rounding_base),
        significant_digits: a.significant_digits.min(b.significant_digits),
        review_all: a.review_all || b.review_all,
        perturbation: match (&a.perturbation, &b.perturbation) {
            (Some(x), Some(y)) => Some(x.strictest(y)),
            (x, y) => x.clone().or_else(|| y.clone()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datasets_tighten_and_nobody_loosens() {
        let policy = AuditPolicy::parse("[datasets.persons]\nmin_units = 20\ndominance_k = 0.8\n").unwrap();
        let rules = policy.rules_for(["enterprises", "persons"]);
        assert_eq!((rules.min_units, rules.dominance_k), (20, 0.8));
        assert_eq!(policy.rules_for(["enterprises"]), Rules::default());

        for loose in ["[defaults]\nmin_units = 5", "[datasets.x]\ndominance_k = 0.95", "[defaults]\nrounding_base = 3"]
        {
            let err = AuditPolicy::parse(loose).unwrap_err();
            assert!(err.to_string().contains("looser than the default"), "{loose}: {err}");
        }
        assert!(AuditPolicy::parse("[defaults]\nthreshold = 5").unwrap_err().en.contains("unknown field"));
        assert_ne!(policy.sha256(), AuditPolicy::default().sha256());

        let dp = "[datasets.persons.dp]\nrho_per_run = 0.1\noperator_budget = 1.0\ndataset_budget = 4.0\n";
        let policy = AuditPolicy::parse(dp).unwrap();
        assert_eq!(policy.dp("persons").map(|d| d.rho_per_run), Some(0.1));
        assert_eq!(policy.dp("enterprises"), None);
        let err = AuditPolicy::parse(&dp.replace("4.0", "0.5")).unwrap_err();
        assert!(err.en.contains("operator_budget <= dataset_budget"), "{err}");
        let err = AuditPolicy::parse(&dp.replace("datasets.persons", "defaults")).unwrap_err();
        assert!(err.en.contains("per dataset"), "{err}");
    }
}
