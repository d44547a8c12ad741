//! Inclusion–exclusion of three released cells (issue 17): a district, its shops in one zone and
//! its shops in another, released in any order and by anyone, are each ten or more shops from the
//! others — no pair gives anything away, no two tables add up — yet the district less both
//! zones is the one shop in neither. The third cell to leave is withheld, whichever it is.

use sandbox_audit::{Audit, AuditPolicy, History, Rule};

use crate::attacks::run_on;
use crate::attacks5::{Shop, many, shops_catalog, zone_is, zone_is_not};
use crate::audit_tables;
use crate::differencing::{HEADER, output};
use crate::releases::{empty, hasher};
use crate::rules::{cell, released};

/// District H: ten shops in zone Z1, one of 777 in Z2, ten in Z3; district B: ten in Z1.
fn shops() -> Vec<Shop> {
    many(10, ("H", "H1", "Z1", 15.0))
        .chain([("H", "H1", "Z2", 777.0)])
        .chain(many(10, ("H", "H1", "Z3", 35.0)))
        .chain(many(10, ("B", "B1", "Z1", 20.0)))
        .collect()
}

/// The three releases by district: every zone, zone Z1, zone Z3.
fn three() -> [(&'static str, String); 3] {
    [("all", String::new()), ("z1", zone_is("Z1")), ("z3", zone_is("Z3"))]
}

/// Whether district H's figure of measure `column` leaves in `audit`'s only table.
fn shows_h(audit: &Audit, column: usize) -> bool {
    released(audit, 0, "H", column).is_some()
}

#[test]
fn the_third_of_three_cells_that_leave_one_shop_is_withheld_in_any_order() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = shops_catalog(dir.path(), &shops());
    let policy = AuditPolicy::default();
    // Every order: the last cell is the district (two cells within it) or a zone (a cell that
    // holds it, and one the size of the rest).
    for order in [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]] {
        let mut history = History::default();
        let mut audits = Vec::new();
        for &i in &order {
            let (name, filters) = &three()[i];
            let audit = run_on(&catalog, name, &["district"], filters, &policy, &history);
            history.extend(audit.history.clone());
            audits.push(audit);
        }
        let (first, second, last) = (&audits[0], &audits[1], &audits[2]);
        assert!(shows_h(first, 1) && shows_h(first, 2), "{order:?}: {}", first.report_text());
        assert!(shows_h(second, 1) && shows_h(second, 2), "{order:?}: {}", second.report_text());
        let text = last.report_text();
        assert!(!shows_h(last, 1) && !shows_h(last, 2), "{order:?}: H less Z1 less Z3 is the shop of 777: {text}");
        assert!(cell(last, 0, "H").1.contains(&Rule::Differencing), "{order:?}: {text}");
        // District B is in none of the three relations: it leaves.
        assert_eq!(released(last, 0, "B", 1).is_some(), order[2] != 2, "{order:?}: {text}");
    }
}

#[test]
fn three_tables_of_one_run_are_related_like_three_releases() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = shops_catalog(dir.path(), &shops());
    let manifest: String = std::iter::once(HEADER.to_owned())
        .chain(three().iter().map(|(name, filters)| output(name, &["district"], filters)))
        .collect();
    let tables: Vec<_> = three().iter().map(|(name, _)| empty(name, &["district"])).collect();
    let audit = audit_tables(&catalog, &manifest, &tables, &AuditPolicy::default(), &hasher(), &History::default());
    let text = audit.report_text();
    let shown: Vec<bool> = (0..3).map(|t| released(&audit, t, "H", 2).is_some()).collect();
    assert!(shown.iter().filter(|&&s| s).count() <= 2, "{shown:?}: {text}");
    assert!(shown.iter().any(|&s| s), "one withheld cell is enough: {shown:?}: {text}");
}

#[test]
fn two_cells_that_overlap_in_one_shop_and_cover_a_third_are_not_all_released() {
    // H less Z3 (Z1 and Z2: 11 shops) and H less Z1 (Z2 and Z3: 11 shops) cover H (21 shops)
    // and share the shop of 777: their sum less H is that shop.
    let dir = tempfile::tempdir().unwrap();
    let catalog = shops_catalog(dir.path(), &shops());
    let policy = AuditPolicy::default();
    let mut history = History::default();
    let mut audits = Vec::new();
    for (name, filters) in [("all", String::new()), ("not_z3", zone_is_not("Z3")), ("not_z1", zone_is_not("Z1"))] {
        let audit = run_on(&catalog, name, &["district"], &filters, &policy, &history);
        history.extend(audit.history.clone());
        audits.push(audit);
    }
    let last = &audits[2];
    assert!(shows_h(&audits[0], 2) && shows_h(&audits[1], 2), "{}", audits[1].report_text());
    assert!(!shows_h(last, 2), "{}", last.report_text());
    assert!(cell(last, 0, "H").1.contains(&Rule::Differencing), "{}", last.report_text());
}

#[test]
fn three_cells_a_group_apart_all_leave() {
    // Ten shops of alike revenue between the zones: H less Z1 less Z3 is a group that passes
    // the threshold and dominance rules. Nothing is withheld.
    let dir = tempfile::tempdir().unwrap();
    let shops: Vec<Shop> = many(10, ("H", "H1", "Z1", 15.0))
        .chain(many(10, ("H", "H1", "Z2", 25.0)))
        .chain(many(10, ("H", "H1", "Z3", 35.0)))
        .collect();
    let catalog = shops_catalog(dir.path(), &shops);
    let policy = AuditPolicy::default();
    let mut history = History::default();
    for (name, filters) in three() {
        let audit = run_on(&catalog, name, &["district"], &filters, &policy, &history);
        assert!(shows_h(&audit, 1) && shows_h(&audit, 2), "{name}: {}", audit.report_text());
        history.extend(audit.history.clone());
    }
}

#[test]
fn three_cells_whose_remainder_one_shop_dominates_are_not_all_released() {
    // Zone Z2 of H has ten shops, but one of 1000 against nine of 1: the district (9009, of
    // which the two largest hold 16%) less both other zones is that shop, to within 9.
    let dir = tempfile::tempdir().unwrap();
    let shops: Vec<Shop> = many(10, ("H", "H1", "Z1", 400.0))
        .chain([("H", "H1", "Z2", 1000.0)])
        .chain(many(9, ("H", "H1", "Z2", 1.0)))
        .chain(many(10, ("H", "H1", "Z3", 400.0)))
        .collect();
    let catalog = shops_catalog(dir.path(), &shops);
    let policy = AuditPolicy::default();
    let mut history = History::default();
    let mut last = None;
    for (name, filters) in three() {
        if let Some(before) = &last {
            assert!(shows_h(before, 2), "{}", before.report_text());
        }
        let audit = run_on(&catalog, name, &["district"], &filters, &policy, &history);
        history.extend(audit.history.clone());
        last = Some(audit);
    }
    let last = last.unwrap();
    let text = last.report_text();
    // The counts (ten shops) may leave; the sum must not.
    assert!(!shows_h(&last, 2), "{text}");
    assert!(cell(&last, 0, "H").1.contains(&Rule::Differencing), "{text}");
}
