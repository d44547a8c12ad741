//! Models the host fits itself, cross-checked against statsmodels (`tests/models/fit.py`): the
//! module's claim is statsmodels' fit, which must agree with the host's, and what leaves is the
//! host's coefficients and standard errors rounded, n rounded and residual df from it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, Int64Array, StringArray};
use sandbox_audit::{AuditPolicy, History, Rule, UnitHasher, Verdict};
use sandbox_catalog::Catalog;

use crate::rules::released;
use crate::{audit_tables, output_table};

const ENTRY: &str = r#"
id = "homes"
title = { zh = "住户用能", en = "Household energy" }
provider = { zh = "测试", en = "Test" }
level = "general"
sub_level = 2
sharing = "unconditional"
open = "conditional"
update_frequency = "monthly"
privacy_unit = "household_key"
format = "csv"
files = ["homes.csv"]
twin_files = ["twin.csv"]

[[columns]]
name = "household_key"
type = "string"
constraint = "pseudonymized"
description = { zh = "户号", en = "Household" }

[[columns]]
name = "district"
type = "string"
constraint = "group_by_only"
description = { zh = "区", en = "District" }

[[columns]]
name = "month"
type = "string"
constraint = "plaintext"
description = { zh = "月份", en = "Month" }

[[columns]]
name = "kwh"
type = "float64"
constraint = "aggregate_only"
description = { zh = "用电量", en = "Electricity" }

[[columns]]
name = "gas"
type = "int64"
constraint = "aggregate_only"
description = { zh = "是否用气", en = "Uses gas" }
"#;

const MANIFEST: &str = r#"
name = "models"
version = "1"
datasets = ["homes"]
purpose = { zh = "测试", en = "test" }

[[outputs]]
name = "ols"
zh = "最小二乘"
en = "least squares"
model = "ols"
dimensions = [{ name = "term", terms = ["homes.district", "homes.month"] }]
measures = [
    { name = "estimate", statistic = "coefficient", of = "homes.kwh" },
    { name = "se", statistic = "std_error", of = "homes.kwh" },
    { name = "n", statistic = "count", of = "homes" },
    { name = "residual_df", statistic = "residual_df", of = "homes" },
]

[[outputs]]
name = "logistic"
zh = "逻辑回归"
en = "logistic regression"
model = "logistic"
dimensions = [{ name = "term", terms = ["homes.district"] }]
measures = [
    { name = "estimate", statistic = "coefficient", of = "homes.gas" },
    { name = "se", statistic = "std_error", of = "homes.gas" },
    { name = "n", statistic = "count", of = "homes" },
]
"#;

/// 3 districts × 4 months × 30 households each month: 360 observations, deterministic.
fn observations() -> Vec<(String, String, String, f64, i64)> {
    let mut state: u64 = 7;
    let mut next = move || {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) as f64 / (1u64 << 31) as f64
    };
    let mut rows = Vec::new();
    for (d, district) in ["A", "B", "C"].iter().enumerate() {
        for h in 0..30 {
            for (m, month) in ["2025-01", "2025-02", "2025-03", "2025-04"].iter().enumerate() {
                let kwh = 200.0 + [0.0, 35.0, -20.0][d] + [0.0, 15.0, -10.0, 5.0][m] + 40.0 * (next() - 0.5);
                let gas = i64::from(next() < [0.3, 0.6, 0.45][d]);
                rows.push((
                    format!("H{d}{h:02}"),
                    district.to_string(),
                    month.to_string(),
                    (kwh * 100.0).round() / 100.0,
                    gas,
                ));
            }
        }
    }
    rows
}

fn catalog(dir: &Path, rows: &[(String, String, String, f64, i64)]) -> Catalog {
    let mut csv = String::from("household_key,district,month,kwh,gas\n");
    for (key, district, month, kwh, gas) in rows {
        writeln!(csv, "{key},{district},{month},{kwh},{gas}").unwrap();
    }
    std::fs::write(dir.join("homes.csv"), &csv).unwrap();
    std::fs::write(dir.join("twin.csv"), csv.replace("\nH", "\nT")).unwrap();
    std::fs::write(dir.join("homes.toml"), ENTRY).unwrap();
    Catalog::open(dir).unwrap()
}

/// statsmodels' fits: per model, term → (coefficient, standard error).
fn statsmodels(
    dir: &Path,
    rows: &[(String, String, String, f64, i64)],
) -> BTreeMap<String, BTreeMap<String, (f64, f64)>> {
    let mut csv = String::from("district,month,kwh,gas\n");
    for (_, district, month, kwh, gas) in rows {
        writeln!(csv, "{district},{month},{kwh},{gas}").unwrap();
    }
    let input = dir.join("observations.csv");
    std::fs::write(&input, csv).unwrap();
    let script = Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("tests/models/fit.py");
    let output = Command::new("python3").arg(script).arg(&input).output().expect("python3 runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("ModuleNotFoundError"), "statsmodels is not installed: run ops/setup\n{stderr}");
    assert!(output.status.success(), "fit.py failed:\n{stderr}");
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    ["ols", "logistic"]
        .iter()
        .map(|model| {
            let terms = json[model].as_object().unwrap();
            let fit =
                terms.iter().map(|(t, v)| (t.clone(), (v[0].as_f64().unwrap(), v[1].as_f64().unwrap()))).collect();
            (model.to_string(), fit)
        })
        .collect()
}

/// The module's table of a model: statsmodels' figures, `shift` added to every coefficient.
fn claim(
    name: &str,
    fit: &BTreeMap<String, (f64, f64)>,
    n: i64,
    df: Option<i64>,
    shift: f64,
) -> sandbox_contract::OutputTable {
    let mut columns: Vec<(&str, ArrayRef)> = vec![
        ("term", Arc::new(StringArray::from_iter_values(fit.keys().map(String::as_str)))),
        ("estimate", Arc::new(Float64Array::from_iter_values(fit.values().map(|v| v.0 + shift)))),
        ("se", Arc::new(Float64Array::from_iter_values(fit.values().map(|v| v.1)))),
        ("n", Arc::new(Int64Array::from_iter_values(fit.keys().map(|_| n)))),
    ];
    if let Some(df) = df {
        columns.push(("residual_df", Arc::new(Int64Array::from_iter_values(fit.keys().map(|_| df)))));
    }
    output_table(name, columns)
}

fn round_sig(x: f64) -> f64 {
    format!("{x:.3e}").parse().unwrap()
}

#[test]
fn the_host_fits_least_squares_and_logistic_regression_as_statsmodels_does() {
    let dir = tempfile::tempdir().unwrap();
    let rows = observations();
    let catalog = catalog(dir.path(), &rows);
    let fits = statsmodels(dir.path(), &rows);
    let (ols, logistic) = (&fits["ols"], &fits["logistic"]);
    assert_eq!(ols.len(), 6, "intercept, two districts, three months: {ols:?}");
    let honest = [claim("ols", ols, 360, Some(354), 0.0), claim("logistic", logistic, 360, None, 0.0)];
    let audit = audit_tables(
        &catalog,
        MANIFEST,
        &honest,
        &AuditPolicy::default(),
        &UnitHasher::new(&[5; 32]),
        &History::default(),
    );
    assert!(audit.breach.is_empty(), "the host disagrees with statsmodels:\n{}", audit.report_text());
    assert_eq!(audit.report.outcome, Verdict::Pass, "{}", audit.report_text());
    for (t, fit) in [(0, ols), (1, logistic)] {
        for (term, (b, se)) in fit {
            // What leaves is the host's figure, to four significant digits: statsmodels' rounded.
            assert_eq!(released(&audit, t, term, 1), Some(round_sig(*b)), "{term}");
            assert_eq!(released(&audit, t, term, 2), Some(round_sig(*se)), "{term}");
            assert_eq!(released(&audit, t, term, 3), Some(360.0));
        }
    }
    assert_eq!(released(&audit, 0, "intercept", 4), Some(354.0), "the released n minus six terms");

    // A module whose coefficients are off by a hundredth breaches its contract.
    let lie = [claim("ols", ols, 360, Some(354), 0.01), claim("logistic", logistic, 360, None, 0.0)];
    let audit = audit_tables(
        &catalog,
        MANIFEST,
        &lie,
        &AuditPolicy::default(),
        &UnitHasher::new(&[5; 32]),
        &History::default(),
    );
    assert_eq!(audit.breach, ["ols"]);
    assert!(audit.released.is_empty());
}

#[test]
fn a_small_level_or_too_few_degrees_of_freedom_fail_the_model_and_separation_fails_the_fit() {
    let dir = tempfile::tempdir().unwrap();
    // District D: eight households, each in every month: cells of 8 (under the views' 10) are
    // left out of the fit, so D has no coefficient; a table that claims one breaches.
    let mut rows = observations();
    for h in 0..8 {
        for month in ["2025-01", "2025-02", "2025-03", "2025-04"] {
            rows.push((format!("D{h}"), "D".to_owned(), month.to_owned(), 150.0 + h as f64, 1));
        }
    }
    let homes = catalog(dir.path(), &rows);
    let fits = statsmodels(dir.path(), &observations());
    let table = claim("ols", &fits["ols"], 360, Some(354), 0.0);
    let parts: Vec<&str> = MANIFEST.split("[[outputs]]").collect();
    let ols_only = format!("{}[[outputs]]{}", parts[0], parts[1]);
    let manifest = ols_only.as_str();
    let audit = audit_tables(
        &homes,
        manifest,
        &[table],
        &AuditPolicy::default(),
        &UnitHasher::new(&[5; 32]),
        &History::default(),
    );
    assert!(audit.breach.is_empty(), "D's cells are left out as the views leave them out:\n{}", audit.report_text());
    assert!(!audit.report.tables[0].cells.iter().any(|c| c.key[0].as_deref() == Some("district=D")));

    // A stricter policy: levels of 40 units; each district has 30 households.
    let strict = AuditPolicy::parse("[defaults]\nmin_units = 40\n").unwrap();
    let audit = audit_tables(
        &homes,
        manifest,
        &[claim("ols", &fits["ols"], 360, Some(354), 0.0)],
        &strict,
        &UnitHasher::new(&[5; 32]),
        &History::default(),
    );
    let rules: Vec<Rule> = audit.report.tables[0].findings.iter().map(|f| f.rule).collect();
    assert!(rules.contains(&Rule::Threshold), "levels of 30 households under 40: {rules:?}");
    assert!(audit.released.is_empty());
    let words = crate::rules::released_words(&audit);
    assert!(!words.contains("30") && !words.contains("district=A"), "{words}");

    // Every household of district B uses gas: a 100% share, which no logistic fit may release.
    let mut separated = observations();
    for row in separated.iter_mut().filter(|r| r.1 == "B") {
        row.4 = 1;
    }
    let dir = tempfile::tempdir().unwrap();
    let separated = catalog(dir.path(), &separated);
    let manifest = format!("{}[[outputs]]{}", parts[0], parts[2]);
    let fit: BTreeMap<String, (f64, f64)> =
        ["intercept", "district=B", "district=C"].iter().map(|t| (t.to_string(), (0.0, 0.0))).collect();
    let audit = audit_tables(
        &separated,
        &manifest,
        &[claim("logistic", &fit, 360, None, 0.0)],
        &AuditPolicy::default(),
        &UnitHasher::new(&[5; 32]),
        &History::default(),
    );
    assert_eq!(audit.report.tables[0].outcome, Verdict::Fail, "{}", audit.report_text());
    assert!(audit.report.tables[0].findings.iter().any(|f| f.rule == Rule::ModelFit));
    assert!(audit.breach.is_empty(), "a fit the host cannot make is no breach");
}
