//! Differential privacy: noised host figures, clamped sums, what cannot be noised, and the
//! budget ledger (reserve, keep, refund, never refreshed).

use std::sync::Arc;

use arrow_array::{Float64Array, Int64Array, StringArray};
use sandbox_audit::budget::{BudgetError, Ledger};
use sandbox_audit::{AuditPolicy, DpSettings, History, Rule, UnitHasher, Verdict};

use crate::rules::{MANIFEST, audit_rows, cell, released, truth, write_shop_rows};
use crate::{audit_tables, output_table};

fn policy(rho: f64) -> AuditPolicy {
    AuditPolicy::parse(&format!(
        "[datasets.shops.dp]\nrho_per_run = {rho:?}\noperator_budget = {rho:?}\ndataset_budget = {rho:?}\nsum_bound = 50.0\n"
    ))
    .unwrap()
}

/// Districts B, C and H released: (counts, sums).
fn released_bch(audit: &sandbox_audit::Audit) -> (Vec<Option<i64>>, Vec<Option<f64>>) {
    let keys = ["B", "C", "H"];
    let counts = keys.iter().map(|k| released(audit, 0, k, 1).map(|v| v as i64)).collect();
    (counts, keys.iter().map(|k| released(audit, 0, k, 2)).collect())
}

#[test]
fn the_host_s_figures_are_released_with_noise_and_sums_clamped_per_unit() {
    // District H: one shop of 100, eleven of 1, ten of 10 (211). Clamped at 50: 161.
    let rows = [truth("B"), truth("C"), truth("H")];
    // ρ so large the noise is all but zero: what is released is the host's figure.
    let exact = audit_rows(&rows, &policy(1e9));
    assert_eq!(exact.report.outcome, Verdict::Suppressed, "{}", exact.report_text());
    assert_eq!(released_bch(&exact), (vec![Some(10), Some(10), Some(20)], vec![Some(100.0), Some(110.0), Some(161.0)]));
    let noted: Vec<_> =
        exact.report.tables[0].findings.iter().filter(|f| f.rule == Rule::DifferentialPrivacy).collect();
    assert!(noted.iter().all(|f| f.verdict == Verdict::Pass && f.row.is_none()), "{noted:?}");
    assert!(noted[1].en.contains("discrete Gaussian noise") && noted[1].zh.contains("离散高斯噪声"));
    // The released report says noise was added, not how much: the scale follows from the data.
    let words = crate::rules::released_words(&exact);
    assert!(words.contains("differential privacy") && !words.contains("scale"), "{words}");

    // A small ρ: the sums' noise has scale 51 / √ρ ≈ 2 300, so they move.
    let noisy = audit_rows(&rows, &policy(0.001));
    let (counts, sums) = released_bch(&noisy);
    assert!(sums.iter().zip([100.0, 110.0, 161.0]).any(|(s, t)| *s != Some(t)), "{sums:?}");
    assert!(counts.iter().flatten().all(|c| *c >= 0 && c % 5 == 0), "{counts:?}");
    // The threshold still runs on the true figures: district A (9 shops) is withheld.
    let with_a = audit_rows(&[truth("A"), truth("B")], &policy(1e9));
    assert_eq!(cell(&with_a, 0, "A").0, Verdict::Suppressed);
    assert_eq!(released(&with_a, 0, "A", 1), None);
}

#[test]
fn a_unit_in_two_cells_doubles_the_variance_of_the_noise() {
    // Shop S01 trades in districts B and C: removing it changes two cells, so the L2 sensitivity
    // of the counts is √2. ρ 1.0 split between two measures: σ = √2 / √(2 · 0.5) = 1.414.
    let dir = tempfile::tempdir().unwrap();
    let shop = |id: String, district: &str| (id, district.to_owned(), format!("{district}1"), 10.0);
    let rows = (1..=10)
        .map(|i| shop(format!("S{i:02}"), "B"))
        .chain((11..=20).map(|i| shop(format!("S{i:02}"), "C")))
        .chain([shop("S01".to_owned(), "C")]);
    let catalog = write_shop_rows(dir.path(), rows);
    let table = output_table(
        "t",
        vec![
            ("district", Arc::new(StringArray::from_iter_values(["B", "C"]))),
            ("shops", Arc::new(Int64Array::from_iter_values([10, 11]))),
            ("revenue", Arc::new(Float64Array::from_iter_values([100.0, 110.0]))),
        ],
    );
    let audit =
        audit_tables(&catalog, MANIFEST, &[table], &policy(1.0), &UnitHasher::new(&[5; 32]), &History::default());
    let counts = audit.report.tables[0].findings.iter().find(|f| f.column.as_deref() == Some("shops")).unwrap();
    assert!(counts.en.contains("noise of scale 1.414"), "{}", counts.en);
    // With one cell per shop the scale is 1.
    let single = audit_rows(&[truth("B"), truth("C")], &policy(1.0));
    assert!(!single.report.tables[0].findings.is_empty());
    let counts = single.report.tables[0].findings.iter().find(|f| f.column.as_deref() == Some("shops")).unwrap();
    assert!(counts.en.contains("noise of scale 1.000"), "{}", counts.en);
}

#[test]
fn what_cannot_be_noised_fails_with_the_rule_named() {
    let no_bound =
        AuditPolicy::parse("[datasets.shops.dp]\nrho_per_run = 0.1\noperator_budget = 1.0\ndataset_budget = 1.0\n")
            .unwrap();
    let audit = audit_rows(&[truth("B")], &no_bound);
    assert_eq!(audit.report.outcome, Verdict::Fail);
    let finding = audit.report.tables[0].findings.iter().find(|f| f.rule == Rule::DifferentialPrivacy).unwrap();
    assert!(finding.en.contains("no sum_bound"), "{}", finding.en);
    assert!(audit.released.is_empty());
}

fn settings(rho: f64, operator: f64, dataset: f64) -> DpSettings {
    DpSettings { rho_per_run: rho, operator_budget: operator, dataset_budget: dataset, sum_bound: None }
}

#[test]
fn budgets_are_reserved_kept_refunded_and_never_refreshed() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::new(dir.path().join("budget.json"));
    let s = settings(0.1, 0.3, 0.5);
    assert_eq!(ledger.queries_left("op.a", "persons", &s).unwrap(), 3);
    let first = ledger.reserve("op.a", &[("persons", &s)]).unwrap();
    let second = ledger.reserve("op.a", &[("persons", &s)]).unwrap();
    ledger.keep(first).unwrap();
    // A cancelled run gives its ρ back.
    ledger.refund(second).unwrap();
    assert_eq!(ledger.queries_left("op.a", "persons", &s).unwrap(), 2);
    assert!(matches!(ledger.refund(second), Err(BudgetError::UnknownReservation(_))));
    for _ in 0..2 {
        let id = ledger.reserve("op.a", &[("persons", &s)]).unwrap();
        ledger.keep(id).unwrap();
    }
    // The operator's budget is spent; a refused reservation changes nothing.
    let before = std::fs::read(dir.path().join("budget.json")).unwrap();
    let err = ledger.reserve("op.a", &[("persons", &s)]).unwrap_err();
    assert!(matches!(err, BudgetError::Operator { .. }), "{err}");
    assert!(err.to_string().contains("隐私预算不足"), "{err}");
    assert_eq!(std::fs::read(dir.path().join("budget.json")).unwrap(), before);
    assert_eq!(ledger.queries_left("op.a", "persons", &s).unwrap(), 0);
    // Another operator has its own budget, until the dataset's (0.5) runs out.
    let b = ledger.reserve("op.b", &[("persons", &s)]).unwrap();
    ledger.keep(b).unwrap();
    assert_eq!(ledger.queries_left("op.b", "persons", &s).unwrap(), 1);
    let c = ledger.reserve("op.c", &[("persons", &s)]).unwrap();
    assert!(matches!(ledger.reserve("op.d", &[("persons", &s)]), Err(BudgetError::Dataset { .. })));
    // All or nothing: a run over two datasets, one exhausted, reserves neither.
    let other = settings(0.1, 1.0, 1.0);
    assert!(ledger.reserve("op.c", &[("enterprises", &other), ("persons", &s)]).is_err());
    assert_eq!(ledger.queries_left("op.c", "enterprises", &other).unwrap(), 10);
    ledger.refund(c).unwrap();
    // A ledger that does not parse is refused, not reset.
    std::fs::write(dir.path().join("budget.json"), b"{ not json").unwrap();
    let err = ledger.reserve("op.a", &[("enterprises", &other)]).unwrap_err();
    assert!(err.to_string().contains("unreadable"), "{err}");
    assert_eq!(std::fs::read(dir.path().join("budget.json")).unwrap(), b"{ not json");
}

#[test]
fn concurrent_reservations_never_overspend() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::new(dir.path().join("budget.json"));
    let s = settings(0.1, 1.0, 1.0);
    let granted: usize = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..8)
            .map(|_| scope.spawn(|| (0..4).filter(|_| ledger.reserve("op.a", &[("persons", &s)]).is_ok()).count()))
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    assert_eq!(granted, 10);
    assert_eq!(ledger.queries_left("op.a", "persons", &s).unwrap(), 0);
}
