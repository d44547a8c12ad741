//! Red team, round 6 (helper, briefed with the code and the rule, after inclusion–exclusion of
//! three cells, `inclusion.rs`): routes by which sums and differences of released cells still
//! give back a group of fewer than `min_units` units or a dominated sum, around the shapes
//! inclusion.rs and the pair checks recognise. Each test asserts the secure outcome. Closed
//! since: R2 a gap less an overlap (the threshold is judged on the symmetric difference of the
//! two parts and the big cell), R3 a dominated overlap of two cells that cover a third, R4 a
//! dominated difference of two cells one of which sticks out by a negligible shop
//! (`Sketch::holds_all_but`), D1 one module released again and again multiplied the pairs to
//! try (one index entry per label and distinct units, pairs bounded by size), R6 a total less
//! the sums of two tables' cells within it (a table's sum is a part of its own, `sum_of`; this
//! also closes R6's complement, chosen among cells two released cells add up to, since the
//! total it protected no longer leaves). Still open, ignored with the reason: R1 four cells, R5
//! a joined dataset's units in three cells, R6 with the total released first (a table's sum is
//! a part only where the big cell is this run's), R7 a dominated remainder beyond 48 units.
//!
//! Every catalog is the shops of `attacks5.rs` (district, street, zone, revenue) unless said; all
//! cells below are district H, one shop per privacy unit, sums at four significant digits.

use std::path::Path;

use sandbox_audit::{Audit, AuditPolicy, History, Rule};
use sandbox_catalog::Catalog;

use crate::attacks::{run_on, write_dataset};
use crate::attacks5::{Shop, many, shops_catalog, zone_is, zone_is_not};
use crate::rules::{cell, released};
use crate::{audit_tables, no_rows};

/// Runs `releases` (name, filters) by district, one run each and in order, each audited against
/// everything before; their audits.
fn in_order(catalog: &Catalog, releases: &[(&str, String)]) -> Vec<Audit> {
    let policy = AuditPolicy::default();
    let mut history = History::default();
    let mut audits = Vec::new();
    for (name, filters) in releases {
        let audit = run_on(catalog, name, &["district"], filters, &policy, &history);
        history.extend(audit.history.clone());
        audits.push(audit);
    }
    audits
}

/// District H's revenue as each audit released it, `None` where withheld.
fn revenues(audits: &[Audit]) -> Vec<Option<f64>> {
    audits.iter().map(|a| released(a, 0, "H", 2)).collect()
}

/// Filters (TOML array contents) for "zone is none of `zones`".
fn zone_none_of(zones: &[&str]) -> String {
    zones.iter().map(|z| zone_is_not(z)).collect::<Vec<_>>().join(", ")
}

// ----- R1: four cells. -----

#[test]
#[ignore = "open: inclusion.rs relates three cells only; C − A − B − D is never formed"]
fn four_cells_do_not_leave_one_shop() {
    // District H: zone Z1 ten shops of 15, Z2 one shop of 777, Z3 ten of 35, Z4 ten of 50
    // (1777, 31 shops). Released by district: all, zone Z1, zone Z3, zone Z4. Every pair is ten
    // or more shops apart and any nested pair's difference is undominated (all − z4 = 1277, the
    // 777 holds 61%); every triple all − zX − zY leaves eleven shops (Z2 and one zone) whose sum
    // is not dominated either (all − z3 − z4 = 927: 777 is 83.8% < 90%). So inclusion.rs finds
    // nothing, and all − z1 − z3 − z4 = 1777 − 150 − 350 − 500 = 777: the one shop of Z2.
    // (Gap: inclusion.rs `triple` pairs `within` two at a time; nothing sums three.)
    let dir = tempfile::tempdir().unwrap();
    let shops: Vec<Shop> = many(10, ("H", "H1", "Z1", 15.0))
        .chain([("H", "H1", "Z2", 777.0)])
        .chain(many(10, ("H", "H1", "Z3", 35.0)))
        .chain(many(10, ("H", "H1", "Z4", 50.0)))
        .collect();
    let catalog = shops_catalog(dir.path(), &shops);
    let audits = in_order(
        &catalog,
        &[("z1", zone_is("Z1")), ("z3", zone_is("Z3")), ("z4", zone_is("Z4")), ("all", String::new())],
    );
    let shown = revenues(&audits);
    let recovered = match shown[..] {
        [Some(z1), Some(z3), Some(z4), Some(all)] => Some(all - z1 - z3 - z4),
        _ => None,
    };
    assert_ne!(recovered, Some(777.0), "all − z1 − z3 − z4 = the shop of Z2: {shown:?}: {}", audits[3].report_text());
}

// ----- R2: two parts within the big cell that overlap in one unit and miss another. -----

#[test]
fn two_parts_that_share_a_negligible_shop_do_not_leave_the_shop_they_both_miss() {
    // District H: Z1 ten shops of 15, Z2 one of 777, Z3 ten of 35, Z4 one shop of 0.01.
    // A = zone ∉ {Z2, Z3} = Z1 + Z4 (11 shops, 150.0), B = zone ∉ {Z1, Z2} = Z3 + Z4 (11, 350.0),
    // C = all (22 shops, 1277). Pairs: C ⊇ A by 11 (1127, undominated: 72%), C ⊇ B by 11 (927:
    // 83.8%), A, B 20 apart; no two tables relate (11 rows outside). Inclusion: A, B are nested
    // in C, but χ_C / (χ_A χ_B) = χ_{Z2} / χ_{Z4} is no polynomial (not disjoint) and
    // χ_A χ_B / χ_C no polynomial either (they do not cover C): `judge_three` returns None in
    // both branches. C − A − B = 1277 − 150 − 350 = 777 = Z2 − Z4: the shop of 777 (to 0.01).
    // The same with A sticking out of C by one negligible shop (nested within the slack).
    let dir = tempfile::tempdir().unwrap();
    let shops: Vec<Shop> = many(10, ("H", "H1", "Z1", 15.0))
        .chain([("H", "H1", "Z2", 777.0)])
        .chain(many(10, ("H", "H1", "Z3", 35.0)))
        .chain([("H", "H1", "Z4", 0.01)])
        .collect();
    let catalog = shops_catalog(dir.path(), &shops);
    let audits = in_order(
        &catalog,
        &[("a", zone_none_of(&["Z2", "Z3"])), ("b", zone_none_of(&["Z1", "Z2"])), ("c", String::new())],
    );
    let shown = revenues(&audits);
    let recovered = match shown[..] {
        [Some(a), Some(b), Some(c)] => Some(c - a - b),
        _ => None,
    };
    assert_ne!(recovered, Some(777.0), "C − A − B = Z2 − Z4 ≈ the shop of 777: {shown:?}: {}", audits[2].report_text());
}

// ----- R3: the overlap of two cells that cover a third, ten units or more, dominated. -----

#[test]
fn the_overlap_of_two_cells_that_cover_a_third_is_not_a_dominated_sum() {
    // District H: Z1 ten shops of 800, Z2 one shop of 5000 and nine of 1 (5009: dominated),
    // Z3 ten of 800. A = zone ≠ Z3 (20 shops, 13009 → 13010), B = zone ≠ Z1 (20, 13010),
    // C = all (30, 21010). Each cell passes (5800 of 13009 is 45%). Pairs: C ⊇ A by ten (Z3,
    // 8000: undominated; C's largest is A's too), C ⊇ B likewise, A and B 20 apart, not nested.
    // Inclusion: A and B cover C and overlap in Z2 — ten units, so the bucket bound `over` is
    // 10 ≥ min_units and the cover is dropped before any dominance test (and past it, `if
    // overlap { return None }`). A + B − C = 13010 + 13010 − 21010 = 5010 = Z2: the shop of 5000.
    let dir = tempfile::tempdir().unwrap();
    let shops: Vec<Shop> = many(10, ("H", "H1", "Z1", 800.0))
        .chain([("H", "H1", "Z2", 5000.0)])
        .chain(many(9, ("H", "H1", "Z2", 1.0)))
        .chain(many(10, ("H", "H1", "Z3", 800.0)))
        .collect();
    let catalog = shops_catalog(dir.path(), &shops);
    // The witness: zone Z2 asked for directly is withheld (dominance).
    let z2 = run_on(&catalog, "z2", &["district"], &zone_is("Z2"), &AuditPolicy::default(), &History::default());
    assert!(cell(&z2, 0, "H").1.contains(&Rule::Dominance), "{}", z2.report_text());

    let audits = in_order(&catalog, &[("a", zone_is_not("Z3")), ("b", zone_is_not("Z1")), ("c", String::new())]);
    let shown = revenues(&audits);
    let recovered = match shown[..] {
        [Some(a), Some(b), Some(c)] => Some(a + b - c),
        _ => None,
    };
    assert!(
        recovered.is_none_or(|z2| (z2 - 5009.0).abs() > 50.0),
        "A + B − C = Z2, dominated by one shop of 5000: {shown:?}: {}",
        audits[2].report_text()
    );
}

// ----- R4: two cells that do not nest, whose difference is dominated. -----

#[test]
fn two_cells_that_do_not_nest_do_not_leave_a_dominated_difference() {
    // District H: Z1 thirty shops of 300, Z2 one shop of 5000 and nine of 1 (5009: dominated),
    // Z8 one shop of 1. C = zone ≠ Z8 (40 shops, 14009 → 14010), A = zone ≠ Z2 (31 shops, 9001).
    // The symmetric difference is eleven units (Z2 and Z8): differencing passes; neither holds
    // the other, so `holds_all_of` fails both ways and the dominance of the difference is never
    // judged; no table relates (11 rows outside). C − A = Z2 − Z8 = 5009 (5008 exactly): the
    // shop of 5000, to within 9. One shop that sticks out is enough to step around the check.
    let dir = tempfile::tempdir().unwrap();
    let shops: Vec<Shop> = many(30, ("H", "H1", "Z1", 300.0))
        .chain([("H", "H1", "Z2", 5000.0)])
        .chain(many(9, ("H", "H1", "Z2", 1.0)))
        .chain([("H", "H1", "Z8", 1.0)])
        .collect();
    let catalog = shops_catalog(dir.path(), &shops);
    let audits = in_order(&catalog, &[("a", zone_is_not("Z2")), ("c", zone_is_not("Z8"))]);
    let shown = revenues(&audits);
    let recovered = match shown[..] {
        [Some(a), Some(c)] => Some(c - a),
        _ => None,
    };
    assert!(
        recovered.is_none_or(|z2| (z2 - 5009.0).abs() > 50.0),
        "C − A = Z2 − Z8, dominated by one shop of 5000: {shown:?}: {}",
        audits[1].report_text()
    );
}

// ----- R5: the remainder's units of a joined dataset. -----

/// Staff (person, employer, amount) joined to firms (uscc, district, plaintext status).
/// District X: firms F01–F12 of status "a" and F13–F24 of status "c", one person each paid
/// 100; firm F99 of status "b", twelve people paid 250.
fn one_firm_between_two_statuses(dir: &Path) -> Catalog {
    let mut staff = Vec::new();
    let mut firms = Vec::new();
    for f in 1..=24 {
        staff.push(format!("P{f:03},F{f:02},100"));
        firms.push(format!("F{f:02},X,{}", if f <= 12 { "a" } else { "c" }));
    }
    for p in 0..12 {
        staff.push(format!("P{:03},F99,250", 100 + p));
    }
    firms.push("F99,X,b".to_owned());
    let staff_columns = [
        ("person_id", "string", "pseudonymized"),
        ("employer", "string", "pseudonymized"),
        ("amount", "float64", "aggregate_only"),
    ];
    write_dataset(dir, "staff", "person_id", &staff_columns, &staff, ("\nP", "\nQ"));
    let firm_columns = [
        ("uscc", "string", "pseudonymized"),
        ("district", "string", "group_by_only"),
        ("status", "string", "plaintext"),
    ];
    write_dataset(dir, "firms", "uscc", &firm_columns, &firms, ("\nF", "\nG"));
    Catalog::open(dir).unwrap()
}

/// A manifest of staff by firms' district, joined, with `filters`.
fn staff_by_district(name: &str, filters: &str) -> String {
    format!(
        r#"
name = "staff-{name}"
version = "1"
datasets = ["staff", "firms"]
purpose = {{ zh = "测试", en = "test" }}
[[outputs]]
name = "{name}"
zh = "表"
en = "table"
join = {{ from = "staff.employer", to = "firms.uscc" }}
dimensions = [{{ name = "district", source = "firms.district" }}]
filters = [{filters}]
measures = [
    {{ name = "people", statistic = "count", of = "staff" }},
    {{ name = "total", statistic = "sum", of = "staff.amount" }},
]
"#
    )
}

#[test]
#[ignore = "open: inclusion.rs relates the counted dataset's sketches only (`Index::at`), never a joined dataset's"]
fn three_joined_cells_do_not_leave_one_firm() {
    // C = district X (36 people, 25 firms, 5400), A = firms of status a (12 people, 12 firms,
    // 1200), B = status c (12, 12, 1200). Pairs: 24 people and 13 firms apart. Each cell passes
    // the threshold of both datasets and neither's dominance (F99 holds 3000 of 5400). The
    // remainder C − A − B is twelve people (≥ min_units, 250 each: undominated), and that is all
    // inclusion.rs looks at: it is also ONE firm, F99, which a cell of its own must not be
    // (`boundary.rs`: a cell of twelve people of one firm describes the firm). 5400 − 1200 −
    // 1200 = 3000: firm F99's payroll.
    let dir = tempfile::tempdir().unwrap();
    let catalog = one_firm_between_two_statuses(dir.path());
    let status_is = |s: &str| format!(r#"{{ column = "firms.status", op = "eq", value = "{s}" }}"#);
    let policy = AuditPolicy::default();
    let mut history = History::default();
    let mut shown = Vec::new();
    let mut last = String::new();
    for (name, filters) in [("a", status_is("a")), ("c", status_is("c")), ("all", String::new())] {
        let tables = [no_rows(name, &["district"], &["people", "total"])];
        let audit = audit_tables(
            &catalog,
            &staff_by_district(name, &filters),
            &tables,
            &policy,
            &crate::releases::hasher(),
            &history,
        );
        assert!(audit.breach.is_empty(), "{}", audit.report_text());
        history.extend(audit.history.clone());
        shown.push(released(&audit, 0, "X", 2));
        last = audit.report_text();
    }
    let recovered = match shown[..] {
        [Some(a), Some(c), Some(all)] => Some(all - a - c),
        _ => None,
    };
    assert_ne!(recovered, Some(3000.0), "all − a − c = the payroll of firm F99: {shown:?}: {last}");
}

// ----- R6: a complementary cell that two released cells add up to. -----

/// R6's shops: H: Z1 ten shops of 15, Z2 one of 777, Z3 ten of 35; X: Z1 and Z3 ten of 20 each;
/// Y: Z1 thirty of 10.
fn r6_shops() -> Vec<Shop> {
    many(10, ("H", "H1", "Z1", 15.0))
        .chain([("H", "H1", "Z2", 777.0)])
        .chain(many(10, ("H", "H1", "Z3", 35.0)))
        .chain(many(10, ("X", "X1", "Z1", 20.0)))
        .chain(many(10, ("X", "X1", "Z3", 20.0)))
        .chain(many(30, ("Y", "Y1", "Z1", 10.0)))
        .collect()
}

#[test]
fn a_total_is_not_released_where_two_tables_sum_to_it_but_one_shop() {
    // R6 at its root: after z1 (by district, zone Z1) and z3 (zone Z3), the city total less
    // every cell of z1 and every cell of z3 is the shop of Z2: 1977 − 650 − 550 = 777. The sums
    // of each table's cells within the total are parts of their own (`sum_of`): the total is
    // withheld.
    let dir = tempfile::tempdir().unwrap();
    let catalog = shops_catalog(dir.path(), &r6_shops());
    let policy = AuditPolicy::default();
    let mut history = History::default();
    for zone in ["Z1", "Z3"] {
        let audit = run_on(&catalog, &zone.to_lowercase(), &["district"], &zone_is(zone), &policy, &history);
        assert!(released(&audit, 0, "H", 2).is_some(), "{}", audit.report_text());
        history.extend(audit.history.clone());
    }
    let city = run_on(&catalog, "city", &["city"], "", &policy, &history);
    assert_eq!(released(&city, 0, "C", 2), None, "{}", city.report_text());
    assert!(cell(&city, 0, "C").1.contains(&Rule::Differencing), "{}", city.report_text());
}

#[test]
#[ignore = "open: a table's sum is a part only where the big cell is this run's; released first, the total is related to single cells"]
fn a_total_released_first_is_not_given_back_by_two_tables_released_after() {
    // The same releases, the city total first: z3's cells, each within the total, are related
    // to single released cells of the rest's size, never to z1's sum.
    let dir = tempfile::tempdir().unwrap();
    let catalog = shops_catalog(dir.path(), &r6_shops());
    let policy = AuditPolicy::default();
    let mut history = History::default();
    let mut totals = Vec::new();
    for (name, filters) in [("city", String::new()), ("z1", zone_is("Z1")), ("z3", zone_is("Z3"))] {
        let dims: &[&str] = if name == "city" { &["city"] } else { &["district"] };
        let audit = run_on(&catalog, name, dims, &filters, &policy, &history);
        let keys: &[&str] = if name == "city" {
            &["C"]
        } else if name == "z1" {
            &["H", "X", "Y"]
        } else {
            &["H", "X"]
        };
        totals.push(keys.iter().map(|k| released(&audit, 0, k, 2)).sum::<Option<f64>>());
        history.extend(audit.history.clone());
    }
    let recovered = match totals[..] {
        [Some(city), Some(z1), Some(z3)] => Some(city - z1 - z3),
        _ => None,
    };
    assert_ne!(recovered, Some(777.0), "{totals:?}");
}

#[test]
fn a_complementary_cell_is_not_one_that_two_released_cells_add_up_to() {
    // H: Z1 ten shops of 15, Z2 one of 777, Z3 ten of 35 (1277); X: Z1 ten of 20, Z3 ten of 20
    // (400, no shop in Z2); Y: Z1 thirty of 10 (300). Releases, in order:
    //   z1   — by district, zone Z1: H 150, X 200, Y 300;
    //   z3   — by district, zone Z3: H 350, X 200;
    //   city — by city: 1977 (every triple leaves 21 or more shops, undominated);
    //   districts — by district: inclusion.rs withholds H (H − z1.H − z3.H = one shop), and the
    //     city total, released and fixed, makes `complement` withhold one more district: Y is
    //     a twin of z1.Y (`known`), so X — whose total z1.X + z3.X = 400 gives back exactly
    //     (inclusion: remainder 0, nothing to judge). Y = 300 leaves.
    // city − Y − z1.X − z3.X − z1.H − z3.H = 1977 − 300 − 200 − 200 − 150 − 350 = 777.
    let dir = tempfile::tempdir().unwrap();
    let catalog = shops_catalog(dir.path(), &r6_shops());
    let policy = AuditPolicy::default();
    let mut history = History::default();
    let z1 = run_on(&catalog, "z1", &["district"], &zone_is("Z1"), &policy, &history);
    history.extend(z1.history.clone());
    let z3 = run_on(&catalog, "z3", &["district"], &zone_is("Z3"), &policy, &history);
    history.extend(z3.history.clone());
    // Closed at this step since: the city total less the sums of z1's and z3's cells is the
    // shop, so the total is withheld (`sum_of`). The complement's blind spot stays (below).
    let city = run_on(&catalog, "city", &["city"], "", &policy, &history);
    history.extend(city.history.clone());
    let districts = run_on(&catalog, "districts", &["district"], "", &policy, &history);
    let text = districts.report_text();
    assert_eq!(released(&districts, 0, "H", 2), None, "H − z1.H − z3.H is one shop: {text}");
    let figures = [
        released(&city, 0, "C", 2),
        released(&districts, 0, "Y", 2),
        released(&z1, 0, "X", 2),
        released(&z3, 0, "X", 2),
        released(&z1, 0, "H", 2),
        released(&z3, 0, "H", 2),
    ];
    let recovered = match figures {
        [Some(c), Some(y), Some(x1), Some(x3), Some(h1), Some(h3)] => Some(c - y - x1 - x3 - h1 - h3),
        _ => None,
    };
    assert_ne!(recovered, Some(777.0), "city − Y − X (z1 + z3) − z1.H − z3.H = the shop of Z2: {figures:?}: {text}");
}

// ----- R7: a remainder of more than 48 units. -----

#[test]
#[ignore = "open (documented): a remainder beyond MAX_DIFFERENCE (48) is never judged for dominance"]
fn three_cells_do_not_leave_a_dominated_remainder_of_forty_nine_shops() {
    // District H: Z1 ten shops of 3000, Z2 one shop of 50000 and 48 of 1 (49 shops, 50048:
    // dominated), Z3 ten of 3000. C = all (69 shops, 110048 → 110000; its two largest hold
    // 48%), z1 = 30000, z3 = 30000. Pairs: C ⊇ z1 by 59 units, beyond `holds_all_of`'s 48.
    // Inclusion: 10 + 10 + 48 < 69, `triple` skips the pair before any test. C − z1 − z3 =
    // 50000: the big shop (true remainder 50048).
    let dir = tempfile::tempdir().unwrap();
    let shops: Vec<Shop> = many(10, ("H", "H1", "Z1", 3000.0))
        .chain([("H", "H1", "Z2", 50000.0)])
        .chain(many(48, ("H", "H1", "Z2", 1.0)))
        .chain(many(10, ("H", "H1", "Z3", 3000.0)))
        .collect();
    let catalog = shops_catalog(dir.path(), &shops);
    let audits = in_order(&catalog, &[("z1", zone_is("Z1")), ("z3", zone_is("Z3")), ("all", String::new())]);
    let shown = revenues(&audits);
    let recovered = match shown[..] {
        [Some(z1), Some(z3), Some(all)] => Some(all - z1 - z3),
        _ => None,
    };
    assert!(
        recovered.is_none_or(|r| (r - 50048.0).abs() > 100.0),
        "all − z1 − z3 = Z2, dominated by one shop of 50000: {shown:?}: {}",
        audits[2].report_text()
    );
}

// ----- D1: one label released many times makes inclusion.rs quartic. -----

#[test]
fn releasing_one_module_many_times_does_not_make_later_audits_quartic() {
    // District H: twenty streets of ten shops. An attacker releases the same module (one table
    // by district × street) T times on the same data: each run passes (every cell is the same
    // units as before, differencing finds a difference of 0), costs the same, and is never
    // nested with its own earlier releases (`divides_alike`). Every cell it adds has the label
    // of its street ("module streets [H, S01]"), shared by all T releases. An honest operator's
    // table by district then crosses each of the T tables (one scan, shared), finds H holding
    // each street of each (T·S nestings), and `Index::at` answers each nesting with all T cells
    // of that label: `within` holds T²·S cells and `triple` walks every pair of them, (T²·S)²/2
    // iterations — for one district cell, under the history's lock. T = 4: 320 cells, 5 × 10⁴
    // pairs; T = 48: 46 080 cells, 1.06 × 10⁹ pairs (0.1 s → 6 s here). At 50 runs a day,
    // T = 350 after a week: ~2 800 times the T = 48 audit; with a hundred streets, 25 times that
    // again. The attacker's own runs stay at ~0.1 s.
    let dir = tempfile::tempdir().unwrap();
    const STREETS: [&str; 20] = [
        "S01", "S02", "S03", "S04", "S05", "S06", "S07", "S08", "S09", "S10", "S11", "S12", "S13", "S14", "S15", "S16",
        "S17", "S18", "S19", "S20",
    ];
    let shops: Vec<Shop> = STREETS.iter().flat_map(|s| many(10, ("H", *s, "Z1", 10.0))).collect();
    let catalog = shops_catalog(dir.path(), &shops);
    let policy = AuditPolicy::default();
    let mut history = History::default();
    for releases in [4, 24] {
        while history.tables.len() < releases {
            let again = run_on(&catalog, "streets", &["district", "street"], "", &policy, &history);
            assert_eq!(released(&again, 0, "H,S01", 3), Some(100.0), "{}", again.report_text());
            history.extend(again.history.clone());
        }
        // Closed: the index keeps one entry per label and distinct units (`Index::new`), and
        // pairs are tried only where their sizes add up (a unit test in inclusion.rs counts
        // the entries; the time is the benchmark's to measure, not a test's).
        let victim = run_on(&catalog, "districts", &["district"], "", &policy, &history);
        assert_eq!(released(&victim, 0, "H", 2), Some(2000.0), "{}", victim.report_text());
    }
}
