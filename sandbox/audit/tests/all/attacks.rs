//! Red team, round 4 (helper, briefed with the code and the rule): routes across runs, tables,
//! filters and bandings by which released figures gave back a withheld cell or one unit's
//! value, each asserting the secure outcome. All failed against 5c051f9 and pass since: A1 a
//! table without the join is the margin of the joined table (crossings read the rows
//! left-joined); A2 a margin kept its own figures when each cell under it hid a different
//! measure (relations are judged quantity by quantity); A3 one row of the hidden cell outside
//! the margin opened the whole group (groups with fewer rows outside than the threshold are
//! related); A4 two released cells ten units apart whose difference is dominated (a cell that
//! holds all of another's units and up to 48 more is judged on the difference's largest
//! contributions); A5 the cell key method's sums moved with units that contribute nothing (the
//! magnitude key leaves them out). Over-suppression and robustness: D1 one coarse table blanked
//! every later table over the same rows (the cheapest complementary cells now); D2 the history
//! kept cells that never left; D4 the size rule overflowed.

use std::fmt::Write as _;
use std::path::Path;

use sandbox_audit::{Audit, AuditPolicy, History, Rule, Verdict};
use sandbox_catalog::Catalog;

use crate::differencing::{HEADER, audit, output};
use crate::releases::{empty, hasher, run};
use crate::rules::{catalog, cell, released, write_shops};
use crate::{audit_tables, no_rows};

// ----- Helpers: catalogs of other shapes (the shops' are in rules.rs and releases.rs). -----

/// One run of one table `name` of shops and revenue by `dims` with `filters`, after `earlier`.
pub(crate) fn run_on(
    catalog: &Catalog,
    name: &str,
    dims: &[&str],
    filters: &str,
    policy: &AuditPolicy,
    earlier: &History,
) -> Audit {
    let manifest = format!("{HEADER}{}", output(name, dims, filters));
    audit_tables(catalog, &manifest, &[empty(name, dims)], policy, &hasher(), earlier)
}

/// A catalog entry of a CSV dataset `<id>.csv` beside it.
fn entry(id: &str, unit: &str, columns: &[(&str, &str, &str)]) -> String {
    let mut toml = format!(
        "id = \"{id}\"\ntitle = {{ zh = \"测试\", en = \"test\" }}\nprovider = {{ zh = \"测试\", en = \"test\" }}\n\
         level = \"general\"\nsub_level = 2\nsharing = \"unconditional\"\nopen = \"conditional\"\n\
         update_frequency = \"daily\"\nprivacy_unit = \"{unit}\"\nformat = \"csv\"\nfiles = [\"{id}.csv\"]\n\
         twin_files = [\"{id}_twin.csv\"]\n"
    );
    for (name, kind, constraint) in columns {
        write!(
            toml,
            "\n[[columns]]\nname = \"{name}\"\ntype = \"{kind}\"\nconstraint = \"{constraint}\"\n\
             description = {{ zh = \"列\", en = \"column\" }}\n"
        )
        .unwrap();
    }
    toml
}

/// Writes dataset `id` (its entry, `rows` as CSV under a header of the column names, and a twin
/// whose ids are changed by `twin`) into `dir`.
pub(crate) fn write_dataset(
    dir: &Path,
    id: &str,
    unit: &str,
    columns: &[(&str, &str, &str)],
    rows: &[String],
    twin: (&str, &str),
) {
    let header: Vec<&str> = columns.iter().map(|c| c.0).collect();
    let mut csv = header.join(",") + "\n";
    for row in rows {
        csv.push_str(row);
        csv.push('\n');
    }
    std::fs::write(dir.join(format!("{id}.csv")), &csv).unwrap();
    std::fs::write(dir.join(format!("{id}_twin.csv")), csv.replace(twin.0, twin.1)).unwrap();
    std::fs::write(dir.join(format!("{id}.toml")), entry(id, unit, columns)).unwrap();
}

// ----- A1: a table without the join is the margin of the joined table. -----

/// Staff joined to their employers. District X: twelve people of one firm, F01, paid 250 each;
/// district Y: twelve people of twelve firms, 100 each. Everybody is of grade A.
fn payroll_catalog(dir: &Path) -> Catalog {
    let mut staff = Vec::new();
    let mut firms = vec!["F01,X".to_owned()];
    for p in 0..12 {
        staff.push(format!("P{p:02},F01,A,250"));
    }
    for p in 12..24 {
        staff.push(format!("P{p:02},F{p:02},A,100"));
        firms.push(format!("F{p:02},Y"));
    }
    let staff_columns = [
        ("person_id", "string", "pseudonymized"),
        ("employer", "string", "pseudonymized"),
        ("grade", "string", "group_by_only"),
        ("amount", "float64", "aggregate_only"),
    ];
    write_dataset(dir, "staff", "person_id", &staff_columns, &staff, ("\nP", "\nQ"));
    let firm_columns = [("uscc", "string", "pseudonymized"), ("district", "string", "group_by_only")];
    write_dataset(dir, "firms", "uscc", &firm_columns, &firms, ("\nF", "\nG"));
    Catalog::open(dir).unwrap()
}

const PAYROLL: &str = r#"
name = "payroll"
version = "1"
datasets = ["staff", "firms"]
purpose = { zh = "测试", en = "test" }
[[outputs]]
name = "by_district"
zh = "表"
en = "table"
join = { from = "staff.employer", to = "firms.uscc" }
dimensions = [{ name = "district", source = "firms.district" }]
measures = [
    { name = "people", statistic = "count", of = "staff" },
    { name = "total", statistic = "sum", of = "staff.amount" },
]
[[outputs]]
name = "by_grade"
zh = "表"
en = "table"
dimensions = [{ name = "grade", source = "staff.grade" }]
measures = [
    { name = "people", statistic = "count", of = "staff" },
    { name = "total", statistic = "sum", of = "staff.amount" },
]
"#;

#[test]
fn a_table_without_the_join_is_the_margin_of_the_joined_table() {
    // Why: every staff row meets a firm, so by_grade's one cell holds exactly the rows of
    // by_district's X and Y. by_district withholds X (one firm behind twelve people); by_grade
    // is never related to it, because `relations` skips tables whose FROM differs (a join
    // against none), so A − Y = 4200 − 1200 = 3000 leaves: firm F01's payroll.
    let dir = tempfile::tempdir().unwrap();
    let catalog = payroll_catalog(dir.path());
    let tables = [
        no_rows("by_district", &["district"], &["people", "total"]),
        no_rows("by_grade", &["grade"], &["people", "total"]),
    ];
    let audit = audit_tables(&catalog, PAYROLL, &tables, &AuditPolicy::default(), &hasher(), &History::default());
    let text = audit.report_text();
    assert!(audit.breach.is_empty(), "{text}");
    assert_eq!(cell(&audit, 0, "X"), (Verdict::Suppressed, vec![Rule::Threshold]), "{text}");
    assert_eq!(released(&audit, 0, "Y", 2), Some(1200.0), "{text}");
    assert_ne!(
        released(&audit, 1, "A", 2),
        Some(4200.0),
        "by_grade A − by_district Y = 3000, the payroll of the firm by_district withholds: {text}"
    );
}

// ----- A2: "hides something" is judged over any measure, not the measure at hand. -----

/// Shops with two magnitudes, revenue and tax, either of which may be missing (NULL).
fn taxed_catalog(dir: &Path, rows: &[(&str, &str, Option<f64>, Option<f64>)]) -> Catalog {
    let value = |x: Option<f64>| x.map(|v| v.to_string()).unwrap_or_default();
    let lines: Vec<String> = rows
        .iter()
        .enumerate()
        .map(|(n, (district, street, revenue, tax))| {
            format!("S{:04},{district},{street},{},{}", n + 1, value(*revenue), value(*tax))
        })
        .collect();
    let columns = [
        ("shop_id", "string", "pseudonymized"),
        ("district", "string", "group_by_only"),
        ("street", "string", "group_by_only"),
        ("revenue", "float64", "aggregate_only"),
        ("tax", "float64", "aggregate_only"),
    ];
    write_dataset(dir, "shops", "shop_id", &columns, &lines, ("\nS", "\nT"));
    Catalog::open(dir).unwrap()
}

/// One `[[outputs]]` of shops by `dims` with `measures` (a TOML array's contents).
fn taxed_output(name: &str, dims: &[&str], measures: &str) -> String {
    let dimensions: Vec<String> =
        dims.iter().map(|d| format!("{{ name = \"{d}\", source = \"shops.{d}\" }}")).collect();
    format!(
        "\n[[outputs]]\nname = \"{name}\"\nzh = \"表\"\nen = \"table\"\ndimensions = [{}]\nmeasures = [{measures}]\n",
        dimensions.join(", ")
    )
}

const COUNT_REVENUE: &str = r#"{ name = "shops", statistic = "count", of = "shops" }, { name = "revenue", statistic = "sum", of = "shops.revenue" }"#;
const COUNT_REVENUE_TAX: &str = r#"{ name = "shops", statistic = "count", of = "shops" }, { name = "revenue", statistic = "sum", of = "shops.revenue" }, { name = "tax", statistic = "sum", of = "shops.tax" }"#;

#[test]
fn a_margin_is_recomputed_even_when_each_cell_under_it_hides_a_different_measure() {
    // Street H1: twelve shops, one with a revenue (37), all twelve with a tax of 5. Street H2:
    // twelve shops of revenue 10, one with a tax (29). So d withholds H1's revenue and H2's
    // tax (one unit each), and shows the rest. Every cell of d under H "hides something", so
    // `relate` takes the branch meant for "nothing of the other side shown" and m keeps its
    // own figures: m.revenue − H2.revenue = 157 − 120 = 37, one shop's revenue; m.tax − H1.tax
    // = 89 − 60 = 29, one shop's tax.
    let dir = tempfile::tempdir().unwrap();
    let mut rows = vec![("H", "H1", Some(37.0), Some(5.0))];
    rows.extend((0..11).map(|_| ("H", "H1", None, Some(5.0))));
    rows.push(("H", "H2", Some(10.0), Some(29.0)));
    rows.extend((0..11).map(|_| ("H", "H2", Some(10.0), None)));
    let catalog = taxed_catalog(dir.path(), &rows);
    let manifest = format!(
        "{HEADER}{}{}",
        taxed_output("d", &["district", "street"], COUNT_REVENUE_TAX),
        taxed_output("m", &["district"], COUNT_REVENUE_TAX)
    );
    let tables = [
        no_rows("d", &["district", "street"], &["shops", "revenue", "tax"]),
        no_rows("m", &["district"], &["shops", "revenue", "tax"]),
    ];
    let audit = audit_tables(&catalog, &manifest, &tables, &AuditPolicy::default(), &hasher(), &History::default());
    let text = audit.report_text();
    assert!(audit.breach.is_empty(), "{text}");
    // d: columns district, street, shops, revenue, tax.
    assert_eq!(released(&audit, 0, "H,H1", 3), None, "one shop's revenue: withheld. {text}");
    assert_eq!(released(&audit, 0, "H,H2", 3), Some(120.0), "{text}");
    assert_eq!(released(&audit, 0, "H,H1", 4), Some(60.0), "{text}");
    assert_eq!(released(&audit, 0, "H,H2", 4), None, "one shop's tax: withheld. {text}");
    // m: columns district, shops, revenue, tax. Secure: recomputed from d's shown cells (120,
    // 60) or withheld; never the true totals.
    assert_ne!(released(&audit, 1, "H", 2), Some(157.0), "157 − 120 = 37, one shop's revenue. {text}");
    assert_ne!(released(&audit, 1, "H", 3), Some(89.0), "89 − 60 = 29, one shop's tax. {text}");
}

#[test]
fn an_earlier_margin_that_withheld_another_measure_still_protects_its_detail() {
    // District H as in rules.rs (H1: one shop of 100 and eleven of 1, dominated; H2: ten of
    // 10), and a tax only three shops have. Run 1 releases the district total: revenue 211, its
    // tax withheld (three units). Run 2 releases H's streets. Because the earlier margin's
    // cell "hides something" (its tax), `relate` finds it does not "show all" and does nothing:
    // H2's revenue leaves beside the margin, and 211 − 100 = 111 is the dominated street H1.
    // The same route without the tax column is closed (releases.rs,
    // a_detail_released_after_its_margin_withholds_every_cell_under_it).
    let dir = tempfile::tempdir().unwrap();
    let mut rows = vec![("H", "H1", Some(100.0), None)];
    rows.extend((0..11).map(|_| ("H", "H1", Some(1.0), None)));
    rows.extend((0..3).map(|_| ("H", "H2", Some(10.0), Some(5.0))));
    rows.extend((0..7).map(|_| ("H", "H2", Some(10.0), None)));
    let catalog = taxed_catalog(dir.path(), &rows);
    let policy = AuditPolicy::default();
    let margin = audit_tables(
        &catalog,
        &format!("{HEADER}{}", taxed_output("m", &["district"], COUNT_REVENUE_TAX)),
        &[no_rows("m", &["district"], &["shops", "revenue", "tax"])],
        &policy,
        &hasher(),
        &History::default(),
    );
    assert_eq!(released(&margin, 0, "H", 2), Some(211.0), "{}", margin.report_text());
    assert_eq!(released(&margin, 0, "H", 3), None, "{}", margin.report_text());
    let detail = audit_tables(
        &catalog,
        &format!("{HEADER}{}", taxed_output("d", &["district", "street"], COUNT_REVENUE)),
        &[no_rows("d", &["district", "street"], &["shops", "revenue"])],
        &policy,
        &hasher(),
        &margin.history,
    );
    let text = detail.report_text();
    assert_eq!(cell(&detail, 0, "H,H1").0, Verdict::Suppressed, "{text}");
    assert_eq!(released(&detail, 0, "H,H2", 3), None, "211 − 100 = 111, the dominated street H1. {text}");
}

// ----- A3: one row of a hidden cell outside the margin opens the whole group. -----

#[test]
fn a_filter_that_drops_one_row_of_a_hidden_cell_lets_its_margin_leave_whole() {
    // District H: street H1 two shops (37 and 0.5: under the threshold), H2 and H3 ten shops
    // of 10 each. The streets leave first, H1 blank. A district table without a filter is
    // recomputed (200), but with revenue ≥ 1 — the lowest published edge, which drops the shop
    // of 0.5 — H1 has a row outside the margin, `components` marks the group open and drops it,
    // and the margin leaves whole: 237 − 100 − 100 = 37, one shop's exact revenue. Each
    // released cell is more than ten shops from every other, so differencing sees nothing.
    let dir = tempfile::tempdir().unwrap();
    let shop = |street: &str, revenue: f64| ("H".to_owned(), street.to_owned(), revenue);
    let rows: Vec<(String, String, f64)> = [shop("H1", 37.0), shop("H1", 0.5)]
        .into_iter()
        .chain((0..10).map(|_| shop("H2", 10.0)))
        .chain((0..10).map(|_| shop("H3", 10.0)))
        .collect();
    let catalog = write_shops(dir.path(), rows);
    let policy = AuditPolicy::default();
    let detail = run_on(&catalog, "detail", &["district", "street"], "", &policy, &History::default());
    assert_eq!(cell(&detail, 0, "H,H1"), (Verdict::Suppressed, vec![Rule::Threshold]), "{}", detail.report_text());
    assert_eq!(released(&detail, 0, "H,H2", 3), Some(100.0));
    assert_eq!(released(&detail, 0, "H,H3", 3), Some(100.0));
    // Without the cut the route is closed: the margin's revenue is recomputed, and its count
    // (22, two shops above the streets' twenty) is withheld with the row by inclusion–exclusion.
    let plain = run_on(&catalog, "plain", &["district"], "", &policy, &detail.history);
    assert_eq!(released(&plain, 0, "H", 2), None, "{}", plain.report_text());
    assert!(cell(&plain, 0, "H").1.contains(&Rule::Differencing), "{}", plain.report_text());
    let cut = run_on(
        &catalog,
        "cut",
        &["district"],
        r#"{ column = "shops.revenue", op = "ge", value = 1 }"#,
        &policy,
        &detail.history,
    );
    assert_ne!(released(&cut, 0, "H", 2), Some(237.0), "237 − 100 − 100 = 37: {}", cut.report_text());
}

#[test]
fn a_filter_that_drops_one_row_of_a_dominated_cell_lets_its_margin_leave_whole() {
    // The same route with a dominated street: H1 one shop of 100, ten of 1 and one of 0.5
    // (91% held by two), H2 ten shops of 10. The margin with revenue ≥ 1 leaves 210; 210 − 100
    // = 110 is H1 less half a unit of revenue, and the big shop's revenue is at most 100.
    let dir = tempfile::tempdir().unwrap();
    let shop = |street: &str, revenue: f64| ("H".to_owned(), street.to_owned(), revenue);
    let rows: Vec<(String, String, f64)> = [shop("H1", 100.0), shop("H1", 0.5)]
        .into_iter()
        .chain((0..10).map(|_| shop("H1", 1.0)))
        .chain((0..10).map(|_| shop("H2", 10.0)))
        .collect();
    let catalog = write_shops(dir.path(), rows);
    let policy = AuditPolicy::default();
    let detail = run_on(&catalog, "detail", &["district", "street"], "", &policy, &History::default());
    let (verdict, rules) = cell(&detail, 0, "H,H1");
    assert!(verdict == Verdict::Suppressed && rules.contains(&Rule::Dominance), "{}", detail.report_text());
    assert_eq!(released(&detail, 0, "H,H2", 3), Some(100.0));
    let cut = run_on(
        &catalog,
        "cut",
        &["district"],
        r#"{ column = "shops.revenue", op = "ge", value = 1 }"#,
        &policy,
        &detail.history,
    );
    assert_ne!(released(&cut, 0, "H", 2), Some(210.0), "210 − 100 = 110 ≈ H1: {}", cut.report_text());
}

// ----- A4: a difference of ten or more units is never judged for dominance. -----

#[test]
fn two_cells_ten_units_apart_do_not_give_a_dominated_difference_back() {
    // District H: thirty shops of 30, nine of 40 and one of 5000. The district (6260, 80% held
    // by two) and the district below revenue 40 (900) each pass every rule, and are ten shops
    // apart, so differencing passes them. Their difference is the district from revenue 40 up:
    // 5360, of which one shop holds 5000 — a cell the audit itself withholds for dominance when
    // asked for directly. Released, the two give it back, and the big shop's revenue to within
    // what nine shops of at least 40 hold.
    let dir = tempfile::tempdir().unwrap();
    let shop = |revenue: f64| ("H".to_owned(), "H1".to_owned(), revenue);
    let rows: Vec<(String, String, f64)> =
        (0..30).map(|_| shop(30.0)).chain((0..9).map(|_| shop(40.0))).chain([shop(5000.0)]).collect();
    let catalog = write_shops(dir.path(), rows);
    let policy = AuditPolicy::default();
    // The witness: asked for directly, the difference is withheld.
    let above = run_on(
        &catalog,
        "above",
        &["district"],
        r#"{ column = "shops.revenue", op = "ge", value = 40 }"#,
        &policy,
        &History::default(),
    );
    assert!(cell(&above, 0, "H").1.contains(&Rule::Dominance), "{}", above.report_text());
    assert_eq!(released(&above, 0, "H", 2), None);
    // The attack: two runs, days apart, by anyone.
    let all = run_on(&catalog, "all", &["district"], "", &policy, &History::default());
    let below = run_on(
        &catalog,
        "below",
        &["district"],
        r#"{ column = "shops.revenue", op = "lt", value = 40 }"#,
        &policy,
        &all.history,
    );
    let recovered = released(&all, 0, "H", 2).zip(released(&below, 0, "H", 2)).map(|(a, b)| a - b);
    assert_ne!(
        recovered,
        Some(5360.0),
        "all − below = the dominated cell 'revenue ≥ 40': {}\n{}",
        all.report_text(),
        below.report_text()
    );
}

// ----- A5: under the cell key method a sum moves by a multiple of its largest contribution. -----

/// Shops with a plaintext zone: one of 500 and twenty of 10 in zone M, and ten shops of zero
/// revenue in each of zones Z1 to Z4.
fn zoned_catalog(dir: &Path) -> Catalog {
    let mut rows = vec!["H,M,500".to_owned()];
    rows.extend((0..20).map(|_| "H,M,10".to_owned()));
    for zone in ["Z1", "Z2", "Z3", "Z4"] {
        rows.extend((0..10).map(|_| format!("H,{zone},0")));
    }
    let rows: Vec<String> = rows.iter().enumerate().map(|(n, r)| format!("S{:04},{r}", n + 1)).collect();
    let columns = [
        ("shop_id", "string", "pseudonymized"),
        ("district", "string", "group_by_only"),
        ("zone", "string", "plaintext"),
        ("revenue", "float64", "aggregate_only"),
    ];
    write_dataset(dir, "shops", "shop_id", &columns, &rows, ("\nS", "\nT"));
    Catalog::open(dir).unwrap()
}

#[test]
fn under_the_cell_key_method_the_same_sum_asked_again_does_not_give_its_largest_contribution_away() {
    // Sixteen one-cell tables of district H, each leaving out a different set of the zero
    // zones: the same true sum (700) and the same largest contribution (500), but a different
    // set of (unit, total) pairs, so a different key each. Each released sum is 700 + (v/D) ·
    // magnitude · 500 = 700 + 125·v, v in −2..2: the released figures differ by multiples of
    // 125 = 500 · 0.5 / 2, which gives the big shop's revenue (500) — and their mode the true
    // total. Any two of them are ten or more shops apart: differencing passes them.
    let dir = tempfile::tempdir().unwrap();
    let catalog = zoned_catalog(dir.path());
    let policy =
        AuditPolicy::parse("[datasets.shops.perturbation]\nmax_deviation = 2\nvariance = 1.0\njs = 2\n").unwrap();
    let zones = ["Z1", "Z2", "Z3", "Z4"];
    let mut manifest = HEADER.to_owned();
    let mut tables = Vec::new();
    for subset in 0..16u32 {
        let filters: Vec<String> = zones
            .iter()
            .enumerate()
            .filter(|&(i, _)| subset & (1 << i) != 0)
            .map(|(_, z)| format!(r#"{{ column = "shops.zone", op = "ne", value = "{z}" }}"#))
            .collect();
        let name = format!("v{subset}");
        manifest.push_str(&output(&name, &["district"], &filters.join(", ")));
        tables.push(empty(&name, &["district"]));
    }
    let audit = audit_tables(&catalog, &manifest, &tables, &policy, &hasher(), &History::default());
    let text = audit.report_text();
    assert!(audit.breach.is_empty(), "{text}");
    let sums: Vec<Option<f64>> = (0..16).map(|t| released(&audit, t, "H", 2)).collect();
    assert!(sums.iter().all(Option::is_some), "every variant passes every rule: {sums:?}\n{text}");
    assert!(
        sums.windows(2).all(|w| w[0] == w[1]),
        "the same nonzero contributions must move the same way; these differ by multiples of 125, \
         which gives the largest contribution (500) away: {sums:?}"
    );
}

// ----- D1: one coarse table released once blanks every later table over the same rows. -----

#[test]
fn one_coarse_table_released_once_does_not_blank_every_later_table_over_the_same_rows() {
    // Over-suppression (and an availability attack): two revenue bands (below 1: district E's
    // ten small shops; from 1 up: everyone else) are released once. Every later table of the
    // shops over the same rows falls into one component with them, and where it hides a cell
    // of its own (A: nine shops; E: dominated) `relate` withholds the whole component: every
    // district. A hostile operator who releases such a table first blanks every later table
    // of the dataset, for every operator. Withholding A and E alone gives nothing back: the
    // bands less the released districts are A + E, 21 shops, not dominated.
    let bands = r#"
[[outputs]]
name = "bands"
zh = "表"
en = "table"
dimensions = [{ name = "band", source = "shops.revenue", banding = { kind = "bins", edges = [1], labels = ["low", "high"] } }]
measures = [
    { name = "shops", statistic = "count", of = "shops" },
    { name = "revenue", statistic = "sum", of = "shops.revenue" },
]
"#;
    let first = audit_tables(
        catalog(),
        &format!("{HEADER}{bands}"),
        &[empty("bands", &["band"])],
        &AuditPolicy::default(),
        &hasher(),
        &History::default(),
    );
    assert!(released(&first, 0, "low", 2).is_some() && released(&first, 0, "high", 2).is_some());
    let districts = run("districts", &["district"], "", &first.history);
    assert_eq!(released(&districts, 0, "A", 2), None);
    assert_eq!(released(&districts, 0, "B", 2), Some(100.0), "{}", districts.report_text());
}

// ----- D2: the history keeps the sketches of cells that never left. -----

#[test]
fn a_cell_withheld_by_secondary_suppression_is_not_kept_as_released() {
    // The district total leaves first; the streets of H are then all withheld (secondary
    // suppression). But the history's cells are taken before `margins` runs, so H2's sketch is
    // kept as if it had left: later cells within nine shops of it are suppressed for nothing,
    // and the report's "differencing" tells their operator so.
    let margin = audit(&[&["district"]], &hasher(), &History::default());
    let detail = audit(&[&["district", "street"]], &hasher(), &margin.history);
    assert_eq!(released(&detail, 0, "H,H2", 3), None);
    let kept: Vec<&str> = detail.history.cells.iter().map(|c| c.label.as_str()).collect();
    assert!(!kept.iter().any(|l| l.ends_with("[H, H2]")), "{kept:?}");
}

// ----- D4: the size rule overflows on a grid too large to count. -----

#[test]
fn a_grid_too_large_to_count_fails_on_size_instead_of_overflowing() {
    // Twelve bandings of revenue at its forty published edges: 41^12 combinations, more than
    // u64 holds (the product saturates), and `Judge::size` multiplies it by 24 × measures: in a
    // debug build the audit panics; in release the byte estimate wraps (the row cap still
    // fails the table).
    let edges: Vec<String> = (1..=40).map(|e| e.to_string()).collect();
    let labels: Vec<String> = (0..=40).map(|i| format!("\"b{i}\"")).collect();
    let names: Vec<String> = (0..12).map(|i| format!("band{i}")).collect();
    let dimensions: Vec<String> = names
        .iter()
        .map(|n| {
            format!(
                r#"{{ name = "{n}", source = "shops.revenue", banding = {{ kind = "bins", edges = [{}], labels = [{}] }} }}"#,
                edges.join(", "),
                labels.join(", ")
            )
        })
        .collect();
    let manifest = format!(
        "{HEADER}\n[[outputs]]\nname = \"grid\"\nzh = \"表\"\nen = \"table\"\ndimensions = [{}]\nmeasures = [{COUNT_REVENUE}]\n",
        dimensions.join(", ")
    );
    let dims: Vec<&str> = names.iter().map(String::as_str).collect();
    let audit = audit_tables(
        catalog(),
        &manifest,
        &[empty("grid", &dims)],
        &AuditPolicy::default(),
        &hasher(),
        &History::default(),
    );
    assert_eq!(audit.report.outcome, Verdict::Fail);
    assert!(audit.report.tables[0].findings.iter().any(|f| f.rule == Rule::Size));
}
