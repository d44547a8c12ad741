//! Red team, round 5 (helper, briefed with the code and the rule): routes by which released
//! figures still gave back a withheld cell, one unit's value or a cell's largest contribution,
//! and ways to force suppression on other operators. Each test asserts the secure outcome.
//! Closed since: A2 a complementary cell given back by a third table over exactly its rows (a
//! cell withheld to protect another counts as withheld in every relation, and a margin over it
//! does not keep its figure); A3 a ratio's denominator (a ratio relates to the sums of both
//! its columns); D1 one withheld total blanked every later split (the cheapest cells now, as
//! against an earlier table); A4 under the cell key method, units of almost no revenue redrew a
//! sum's noise (its key is now its two largest contributions); W1 three cells of two earlier
//! releases gave a dominated zone back (inclusion–exclusion, `inclusion.rs`). Still open, kept
//! as an ignored test until it passes: A1 a dominated difference whose dominant unit is smaller
//! than the smaller cell's largest. Not kept as a test (it measured time): D2, released cells nested in a cell make each
//! later audit of it solve one interpolation per nested cell, uncapped, under the history's
//! lock (ARCHITECTURE.md).

use std::path::Path;

use sandbox_audit::{AuditPolicy, History, Rule, Verdict};
use sandbox_catalog::Catalog;

use crate::attacks::run_on;
use crate::differencing::{HEADER, output};
use crate::releases::{empty, hasher};
use crate::rules::{cell, released};
use crate::{audit_tables, no_rows};

// ----- Helpers: one catalog of shops with a city, a zone (plaintext) and a tax. -----

/// A shop: (district, street, zone, revenue). Every shop is in city C and pays a tax of 1.
pub(crate) type Shop = (&'static str, &'static str, &'static str, f64);

const COLUMNS: [(&str, &str, &str); 7] = [
    ("shop_id", "string", "pseudonymized"),
    ("city", "string", "plaintext"),
    ("district", "string", "group_by_only"),
    ("street", "string", "group_by_only"),
    ("zone", "string", "plaintext"),
    ("revenue", "float64", "aggregate_only"),
    ("tax", "float64", "aggregate_only"),
];

/// Writes the shops (ids S0001, S0002, … in order) and their catalog into `dir`.
pub(crate) fn shops_catalog(dir: &Path, shops: &[Shop]) -> Catalog {
    let rows: Vec<String> = (shops.iter().enumerate())
        .map(|(n, (district, street, zone, revenue))| format!("S{:04},C,{district},{street},{zone},{revenue},1", n + 1))
        .collect();
    crate::attacks::write_dataset(dir, "shops", "shop_id", &COLUMNS, &rows, ("\nS", "\nT"));
    Catalog::open(dir).unwrap()
}

/// `n` shops alike.
pub(crate) fn many(n: usize, shop: Shop) -> impl Iterator<Item = Shop> {
    std::iter::repeat_n(shop, n)
}

/// One `[[outputs]]` of shops by `dims` with `measures` (a TOML array's contents).
fn table(name: &str, dims: &[&str], measures: &str) -> String {
    let dimensions: Vec<String> =
        dims.iter().map(|d| format!("{{ name = \"{d}\", source = \"shops.{d}\" }}")).collect();
    format!(
        "\n[[outputs]]\nname = \"{name}\"\nzh = \"表\"\nen = \"table\"\ndimensions = [{}]\nmeasures = [{measures}]\n",
        dimensions.join(", ")
    )
}

pub(crate) fn zone_is(zone: &str) -> String {
    format!(r#"{{ column = "shops.zone", op = "eq", value = "{zone}" }}"#)
}

pub(crate) fn zone_is_not(zone: &str) -> String {
    format!(r#"{{ column = "shops.zone", op = "ne", value = "{zone}" }}"#)
}

// ----- A1: a dominated difference below the smaller cell's largest contributions. -----

#[test]
#[ignore = "open (issue 17): the history keeps a cell's two largest contributions, not which units hold them"]
fn a_dominated_difference_is_seen_whatever_the_smaller_cell_s_largest_contributions() {
    // District H: zone Z1 two shops of 1000 and 900 and twenty of 15 (2200: 86% held by two,
    // passes); zone Z2 one shop of 500 and nine of 1 (509: 98% held by one). `all` (2709) and
    // `most` (zone ≠ Z2: 2200) pass every rule and are ten shops apart; the cell that holds
    // the other and ten more is judged on "the bigger cell's two largest above the smaller's
    // largest" — 1000 and 900 are both in the smaller cell, so nothing is "outside", the top is
    // 0, and the dominated difference 509 leaves: the shop of 500 to within 9.
    let dir = tempfile::tempdir().unwrap();
    let shops: Vec<Shop> = [("H", "H1", "Z1", 1000.0), ("H", "H1", "Z1", 900.0)]
        .into_iter()
        .chain(many(20, ("H", "H1", "Z1", 15.0)))
        .chain([("H", "H1", "Z2", 500.0)])
        .chain(many(9, ("H", "H1", "Z2", 1.0)))
        .collect();
    let catalog = shops_catalog(dir.path(), &shops);
    let policy = AuditPolicy::default();
    let z2 = run_on(&catalog, "z2", &["district"], &zone_is("Z2"), &policy, &History::default());
    assert!(cell(&z2, 0, "H").1.contains(&Rule::Dominance), "{}", z2.report_text());
    assert_eq!(released(&z2, 0, "H", 2), None);

    let all = run_on(&catalog, "all", &["district"], "", &policy, &History::default());
    assert_eq!(released(&all, 0, "H", 2), Some(2709.0), "{}", all.report_text());
    let most = run_on(&catalog, "most", &["district"], &zone_is_not("Z2"), &policy, &all.history);
    let recovered = released(&all, 0, "H", 2).zip(released(&most, 0, "H", 2)).map(|(a, b)| a - b);
    assert_ne!(
        recovered,
        Some(509.0),
        "all − most = zone Z2 of H, dominated by one shop of 500: {}",
        most.report_text()
    );
}

// ----- A2: a complementary cell is shown by another table over the same rows. -----

/// District B: street B1, ten shops of 50 (zone Z1). District H: street H1 one shop of 100 and
/// eleven of 1 (dominated, zone Z1), H2 ten shops of 10 (zone Z2), H3 ten shops of 10 (zone
/// Z1). Zone Z2 is exactly street H2.
fn complement_shops() -> Vec<Shop> {
    many(10, ("B", "B1", "Z1", 50.0))
        .chain([("H", "H1", "Z1", 100.0)])
        .chain(many(11, ("H", "H1", "Z1", 1.0)))
        .chain(many(10, ("H", "H2", "Z2", 10.0)))
        .chain(many(10, ("H", "H3", "Z1", 10.0)))
        .collect()
}

#[test]
fn a_complementary_cell_is_not_given_back_by_a_later_table_of_the_same_rows() {
    // e1 (by district) shows H = 311. d (by district × street) withholds H1 (dominance) and, as
    // e1 shows all of H, the cheapest complementary cell, H2; H3 (100) leaves. Its released
    // report says H2 is withheld by secondary suppression. e3 (by zone) has a cell, Z2, whose
    // rows are exactly H2's: `components` relates them one to one; from e3's side `relate`
    // finds d hides H2 but shows nothing of the group and keeps e3's own figure ("a margin
    // over cells none of which is shown ... passed its own rules"); from d's side one cell of
    // e3 is "a margin, recomputed from the other direction" (`theirs.len() > 1` fails). So
    // Z2 = 100 leaves, and e1.H − d.H3 − e3.Z2 = 311 − 100 − 100 = 111: the dominated street H1.
    let dir = tempfile::tempdir().unwrap();
    let catalog = shops_catalog(dir.path(), &complement_shops());
    let policy = AuditPolicy::default();
    let mut history = History::default();
    let e1 = run_on(&catalog, "e1", &["district"], "", &policy, &history);
    assert_eq!(released(&e1, 0, "H", 2), Some(311.0), "{}", e1.report_text());
    history.extend(e1.history.clone());
    let d = run_on(&catalog, "d", &["district", "street"], "", &policy, &history);
    let text = d.report_text();
    assert!(cell(&d, 0, "H,H1").1.contains(&Rule::Dominance), "{text}");
    assert_eq!(released(&d, 0, "H,H2", 3), None, "the complementary cell: {text}");
    assert_eq!(released(&d, 0, "H,H3", 3), Some(100.0), "{text}");
    history.extend(d.history.clone());
    let e3 = run_on(&catalog, "e3", &["zone"], "", &policy, &history);
    let recovered = (released(&e1, 0, "H", 2).zip(released(&d, 0, "H,H3", 3)))
        .zip(released(&e3, 0, "Z2", 2))
        .map(|((h, h3), z2)| h - h3 - z2);
    assert_ne!(recovered, Some(111.0), "e1.H − d.H3 − e3.Z2 = H1, dominated: {}", e3.report_text());
}

#[test]
fn a_complementary_cell_is_not_one_an_earlier_table_of_the_same_rows_shows() {
    // The same shops; e2 (by zone) is released before d. d's complement for e1 is again H2
    // (for e2's Z1 it is B1), and `margins` never protects H2 against e2: `primary` leaves out
    // what secondary suppression withheld ("already covered where it arose"), so the component
    // {H2} ↔ {Z2} asks nothing. e1.H − e2.Z2 − d.H3 = 111 = H1.
    let dir = tempfile::tempdir().unwrap();
    let catalog = shops_catalog(dir.path(), &complement_shops());
    let policy = AuditPolicy::default();
    let mut history = History::default();
    let e1 = run_on(&catalog, "e1", &["district"], "", &policy, &history);
    history.extend(e1.history.clone());
    let e2 = run_on(&catalog, "e2", &["zone"], "", &policy, &history);
    assert_eq!(released(&e2, 0, "Z2", 2), Some(100.0), "{}", e2.report_text());
    history.extend(e2.history.clone());
    let d = run_on(&catalog, "d", &["district", "street"], "", &policy, &history);
    let text = d.report_text();
    assert!(cell(&d, 0, "H,H1").1.contains(&Rule::Dominance), "{text}");
    let recovered = (released(&e1, 0, "H", 2).zip(released(&e2, 0, "Z2", 2)))
        .zip(released(&d, 0, "H,H3", 3))
        .map(|((h, z2), h3)| h - z2 - h3);
    assert_ne!(recovered, Some(111.0), "e1.H − e2.Z2 − d.H3 = H1, dominated: {text}");
}

// ----- A3: a ratio's denominator is a sum the relations do not see. -----

#[test]
fn a_margin_s_ratio_does_not_give_back_the_denominator_its_detail_withholds() {
    // District H: street H1 one shop of 100 and eleven of 1 (revenue 111, dominated), H2 ten of
    // 10; every shop pays a tax of 1. d (by district × street: shops, revenue) withholds H1.
    // m (by district: tax, tax per revenue) is a margin of d, but its quantities are "sum tax"
    // (the sum and the ratio's numerator) and d hides "count" and "sum revenue": `relate` finds
    // nothing to do, and `dominated_differences` skips m because m leaves no revenue total.
    // m releases tax 22 and rate 0.1043 (22/211): revenue(H) = 22 / 0.1043 ≈ 210.9, less H2's
    // 100 = 110.9 ≈ 111, the dominated street H1.
    let dir = tempfile::tempdir().unwrap();
    let shops: Vec<Shop> = [("H", "H1", "Z1", 100.0)]
        .into_iter()
        .chain(many(11, ("H", "H1", "Z1", 1.0)))
        .chain(many(10, ("H", "H2", "Z1", 10.0)))
        .collect();
    let catalog = shops_catalog(dir.path(), &shops);
    let measures = r#"{ name = "tax", statistic = "sum", of = "shops.tax" }, { name = "rate", statistic = "ratio", of = "shops.tax", per = "shops.revenue" }"#;
    let manifest =
        format!("{HEADER}{}{}", output("d", &["district", "street"], ""), table("m", &["district"], measures));
    let tables = [empty("d", &["district", "street"]), no_rows("m", &["district"], &["tax", "rate"])];
    let audit = audit_tables(&catalog, &manifest, &tables, &AuditPolicy::default(), &hasher(), &History::default());
    let text = audit.report_text();
    assert!(audit.breach.is_empty(), "{text}");
    assert!(cell(&audit, 0, "H,H1").1.contains(&Rule::Dominance), "{text}");
    assert_eq!(released(&audit, 0, "H,H2", 3), Some(100.0), "{text}");
    // m: columns district, tax, rate.
    if let (Some(tax), Some(rate)) = (released(&audit, 1, "H", 1), released(&audit, 1, "H", 2)) {
        let h1 = tax / rate - 100.0;
        assert!((h1 - 111.0).abs() > 1.0, "tax / rate − H2 = {h1}, the withheld street H1 (111): {text}");
    }
}

// ----- A4: the cell key method, shops of almost no revenue. -----

#[test]
fn under_the_cell_key_method_shops_of_almost_no_revenue_do_not_redraw_a_sum_s_noise() {
    // Round 4's A5 with 0.001 instead of 0: zone M one shop of 500 and twenty of 10, zones Z1–Z4
    // ten shops of 0.001 each. Sixteen one-cell tables of H leave out a different set of zones:
    // true sums 700.00 to 700.04 — the same at four significant digits — but a different set
    // of nonzero (unit, total) pairs, so a different key each. Each released sum is
    // round(700.0x + 125·v), v in −2..2: they differ by multiples of 125 = 0.5 · 500 / 2, which
    // gives the big shop's revenue, and their mode the true total. Any two are ten or more
    // shops apart, and no difference is dominated: every rule passes them.
    let dir = tempfile::tempdir().unwrap();
    const ZONES: [&str; 4] = ["Z1", "Z2", "Z3", "Z4"];
    let mut shops: Vec<Shop> = [("H", "H1", "M", 500.0)].into_iter().chain(many(20, ("H", "H1", "M", 10.0))).collect();
    for zone in ZONES {
        shops.extend(many(10, ("H", "H1", zone, 0.001)));
    }
    let catalog = shops_catalog(dir.path(), &shops);
    let policy =
        AuditPolicy::parse("[datasets.shops.perturbation]\nmax_deviation = 2\nvariance = 1.0\njs = 2\n").unwrap();
    let mut manifest = HEADER.to_owned();
    let mut tables = Vec::new();
    for subset in 0..16u32 {
        let filters: Vec<String> =
            (ZONES.iter().enumerate()).filter(|&(i, _)| subset & (1 << i) != 0).map(|(_, z)| zone_is_not(z)).collect();
        let name = format!("v{subset}");
        manifest.push_str(&output(&name, &["district"], &filters.join(", ")));
        tables.push(empty(&name, &["district"]));
    }
    let audit = audit_tables(&catalog, &manifest, &tables, &policy, &hasher(), &History::default());
    let text = audit.report_text();
    assert!(audit.breach.is_empty(), "{text}");
    let sums: Vec<Option<f64>> = (0..16).map(|t| released(&audit, t, "H", 2)).collect();
    let shown: Vec<f64> = sums.iter().flatten().copied().collect();
    let lattice = shown.iter().any(|a| {
        shown.iter().any(|b| {
            let k = (a - b) / 125.0;
            a != b && (k - k.round()).abs() < 1e-9
        })
    });
    assert!(!lattice, "released sums {sums:?} differ by multiples of 125 = magnitude · 500 / D: {text}");
}

// ----- D1: one withheld total blanks every later table that splits it. -----

#[test]
fn one_withheld_total_does_not_blank_every_later_table_that_splits_it() {
    // Four districts of twelve shops of 10, and three shops of 0.5 in W's zone Z9. An attacker
    // releases the city's shops outside Z9 (one cell, 480), then all of them: three shops
    // apart, the second is withheld (differencing) and kept in the history as a blank total.
    // From then on any table over the same rows whose cells all pass — here an honest table by
    // district, each district clean — is one component with that blank and "shows all" of it:
    // `relate` withholds every figure of every district (`(false, _) if shows_all && hides`,
    // the arm for splits of this run, taken against an earlier table that hides). One
    // complementary district protects the three small shops — it is what the relation with
    // `most` already withholds (X, the cheapest) — so the attacker blanks every such table of
    // the dataset, for every operator, for good, at the price of two runs.
    let dir = tempfile::tempdir().unwrap();
    let mut shops: Vec<Shop> = Vec::new();
    for district in ["W", "X", "Y", "Z"] {
        shops.extend(many(12, (district, "S1", "Z1", 10.0)));
    }
    shops.extend(many(3, ("W", "S1", "Z9", 0.5)));
    let catalog = shops_catalog(dir.path(), &shops);
    let policy = AuditPolicy::default();
    let mut history = History::default();
    let most = run_on(&catalog, "most", &["city"], &zone_is_not("Z9"), &policy, &history);
    assert_eq!(released(&most, 0, "C", 2), Some(480.0), "{}", most.report_text());
    history.extend(most.history.clone());
    let all = run_on(&catalog, "all", &["city"], "", &policy, &history);
    let (verdict, rules) = cell(&all, 0, "C");
    assert!(verdict == Verdict::Suppressed && rules.contains(&Rule::Differencing), "{}", all.report_text());
    history.extend(all.history.clone());

    let victim = run_on(&catalog, "districts", &["district"], "", &policy, &history);
    let text = victim.report_text();
    let shown = ["W", "X", "Y", "Z"].iter().filter(|d| released(&victim, 0, d, 2).is_some()).count();
    assert!(shown < 4, "all four would add up to the withheld total: {text}");
    assert!(shown >= 1, "one withheld total blanked every district of a clean table: {text}");
}

// ----- W1: what dominated_differences withholds, and three cells of two releases. -----

/// Failed against d215fc0; 0b6d05b withheld B, whose figure `below` had already released:
/// total − below.B − below.H gave zone Z2 of H back before `districts` ran at all — three
/// cells of two releases, ten rows apart. Inclusion–exclusion (`inclusion.rs`) now withholds
/// the total's sum: its remainder, ten shops, one of them dominates.
#[test]
fn a_cell_withheld_for_a_dominated_difference_is_protected_against_margins_too() {
    // District H: thirty shops of 30 in zone Z1, nine of 40 and one of 5000 in zone Z2 (6260);
    // district B: ten shops of 100 in Z1. Three honest-looking releases, by anyone:
    //   below     — by district, zone Z1: H 900, B 1000;
    //   total     — by city (one cell, every shop): 7260 (with B, its difference with below's H
    //               is not dominated);
    //   districts — by district: H 6260 would give H − below.H = 5360, zone Z2 of H, one shop
    //               of 5000: dominated_differences withholds H. B (1000) leaves.
    // `relations` ran before dominated_differences and skipped the pair (districts, total)
    // because neither withheld anything then; `margins` runs again on the same map, so B
    // leaves beside the total: total − B = 6260 = H, and H − below.H = 5360.
    let dir = tempfile::tempdir().unwrap();
    let shops: Vec<Shop> = many(30, ("H", "H1", "Z1", 30.0))
        .chain(many(9, ("H", "H1", "Z2", 40.0)))
        .chain([("H", "H1", "Z2", 5000.0)])
        .chain(many(10, ("B", "B1", "Z1", 100.0)))
        .collect();
    let catalog = shops_catalog(dir.path(), &shops);
    let policy = AuditPolicy::default();
    // The witness: zone Z2 of H asked for directly is withheld (dominance).
    let z2 = run_on(&catalog, "z2", &["district"], &zone_is("Z2"), &policy, &History::default());
    assert!(cell(&z2, 0, "H").1.contains(&Rule::Dominance), "{}", z2.report_text());

    let mut history = History::default();
    let below = run_on(&catalog, "below", &["district"], &zone_is("Z1"), &policy, &history);
    assert_eq!(released(&below, 0, "H", 2), Some(900.0), "{}", below.report_text());
    history.extend(below.history.clone());
    let total = run_on(&catalog, "total", &["city"], "", &policy, &history);
    assert_eq!(released(&total, 0, "C", 2), None, "total − below.B − below.H = 5360: {}", total.report_text());
    assert!(cell(&total, 0, "C").1.contains(&Rule::Differencing), "{}", total.report_text());
    history.extend(total.history.clone());
    let districts = run_on(&catalog, "districts", &["district"], "", &policy, &history);
    let text = districts.report_text();
    // H is withheld: with the total withheld, H and B would give it back (B's twin in `below`
    // is shown, so H is the cell chosen); and H − below.H is dominated.
    assert_eq!(released(&districts, 0, "H", 2), None, "{text}");
    let recovered = released(&total, 0, "C", 2).zip(released(&districts, 0, "B", 2)).map(|(c, b)| c - b);
    assert_ne!(
        recovered,
        Some(6260.0),
        "total − B = the withheld district H, and H − below.H = 5360, one shop of 5000: {text}"
    );
}
