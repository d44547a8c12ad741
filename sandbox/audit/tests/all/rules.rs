//! Every rule at its boundary, on a hand-made dataset of shops whose cells have exactly the unit
//! counts and contributions each rule turns on. The host builds its own table of every cell the
//! contract's rows fall in; the module's table (built here by hand: the audit must not care
//! whether a module or anything else wrote it) is only the operator's claim.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use arrow_array::{Array, ArrayRef, Float64Array, Int64Array, StringArray};
use sandbox_audit::{Audit, AuditPolicy, History, Rule, UnitHasher, Verdict};
use sandbox_catalog::Catalog;

use crate::{audit_tables, output_table};

/// District → the revenue of each of its shops.
pub(crate) fn shops() -> Vec<(&'static str, Vec<f64>)> {
    vec![
        ("A", vec![10.0; 9]),
        ("B", vec![10.0; 10]),
        ("C", vec![10.0; 11]),
        // The two largest hold exactly 90%: not more than k, so it passes.
        ("D", [vec![45.0, 45.0], vec![1.0; 10]].concat()),
        // 91%: dominated.
        ("E", [vec![46.0, 45.0], vec![0.9; 10]].concat()),
        // 77% for the two largest, but the rest (15) is under half the largest (40).
        ("F", [vec![40.0, 10.0], vec![1.5; 10]].concat()),
        // On street H1 one shop dominates (91%); on H2 nobody does; the district passes (52%).
        ("H", [vec![100.0], vec![1.0; 11], vec![10.0; 10]].concat()),
    ]
}

/// District G: one negative contribution. A catalog of its own, since a negative value sends
/// its whole table to review.
pub(crate) fn negative_district() -> Vec<f64> {
    [vec![-5.0], vec![10.0; 11]].concat()
}

/// The street of a district's `i`th shop: one per district, except that district C's last shop
/// is on a street of its own, so street C1 holds all of C's shops but one (for differencing), and
/// district H has two streets (for secondary suppression).
pub(crate) fn street(district: &str, i: usize) -> String {
    match (district, i) {
        ("C", 10) => "C2".to_owned(),
        ("H", 12..) => "H2".to_owned(),
        _ => format!("{district}1"),
    }
}

/// Writes a catalog with one CSV dataset, `shops`, of (district, street, revenue) rows into `dir`,
/// one shop each.
pub(crate) fn write_shops(dir: &Path, rows: impl IntoIterator<Item = (String, String, f64)>) -> Catalog {
    let rows = rows.into_iter().enumerate().map(|(n, (d, s, r))| (format!("S{:04}", n + 1), d, s, r));
    write_shop_rows(dir, rows)
}

/// Writes the `shops` catalog of (shop id, district, street, revenue) rows: a shop may have
/// several.
pub(crate) fn write_shop_rows(dir: &Path, rows: impl IntoIterator<Item = (String, String, String, f64)>) -> Catalog {
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let mut csv = String::from("shop_id,district,street,revenue,owner\n");
    for (n, (shop, district, street, revenue)) in rows.into_iter().enumerate() {
        writeln!(csv, "{shop},{district},{street},{revenue},店主{}", n + 1).unwrap();
    }
    std::fs::write(dir.join("data/shops.csv"), &csv).unwrap();
    // The twin has the same shape and other values: a twin may never be the real file.
    std::fs::write(dir.join("data/twin.csv"), csv.replace(",店主", ",twin")).unwrap();
    std::fs::write(dir.join("shops.toml"), SHOPS_ENTRY).unwrap();
    Catalog::open(dir).unwrap()
}

/// All the shops of every district of [`shops`] with their streets.
pub(crate) fn shop_rows() -> Vec<(String, String, f64)> {
    shops()
        .into_iter()
        .flat_map(|(district, revenues)| {
            revenues
                .into_iter()
                .enumerate()
                .map(move |(i, revenue)| (district.to_owned(), street(district, i), revenue))
        })
        .collect()
}

/// The shops of [`shops`] as a catalog, written once per test process.
pub(crate) fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("audit-shops-{}", std::process::id()));
        write_shops(&dir, shop_rows())
    })
}

const SHOPS_ENTRY: &str = r#"
id = "shops"
title = { zh = "商户", en = "Shops" }
provider = { zh = "测试", en = "Test" }
level = "general"
sub_level = 2
sharing = "unconditional"
open = "conditional"
update_frequency = "daily"
privacy_unit = "shop_id"
format = "csv"
files = ["data/shops.csv"]
twin_files = ["data/twin.csv"]

[[columns]]
name = "shop_id"
type = "string"
constraint = "pseudonymized"
description = { zh = "商户编号", en = "Shop" }

[[columns]]
name = "district"
type = "string"
constraint = "group_by_only"
description = { zh = "区", en = "District" }

[[columns]]
name = "street"
type = "string"
constraint = "group_by_only"
description = { zh = "街道", en = "Street" }

[[columns]]
name = "revenue"
type = "float64"
constraint = "aggregate_only"
description = { zh = "营业额", en = "Revenue" }
# Published at every whole number to 40: the differencing tests cut at each of them.
classification = { edges = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40] }

[[columns]]
name = "owner"
type = "string"
constraint = "forbidden"
description = { zh = "店主", en = "Owner" }
"#;

pub(crate) const MANIFEST: &str = r#"
name = "shops-test"
version = "1"
datasets = ["shops"]
purpose = { zh = "测试", en = "test" }
[[outputs]]
name = "t"
zh = "表"
en = "table"
dimensions = [{ name = "district", source = "shops.district" }]
measures = [
    { name = "shops", statistic = "count", of = "shops" },
    { name = "revenue", statistic = "sum", of = "shops.revenue" },
]
"#;

/// The true row of a district, as an honest module would write it.
pub(crate) fn truth(district: &str) -> (String, i64, f64) {
    let (_, revenues) = shops().into_iter().find(|(d, _)| *d == district).unwrap();
    (district.to_owned(), revenues.len() as i64, revenues.iter().sum())
}

/// The module's table `t` of (district, shops, revenue) rows.
pub(crate) fn module_rows(rows: &[(String, i64, f64)]) -> sandbox_contract::OutputTable {
    output_table(
        "t",
        vec![
            ("district", Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0.as_str())))),
            ("shops", Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1)))),
            ("revenue", Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.2)))),
        ],
    )
}

pub(crate) fn audit_rows(rows: &[(String, i64, f64)], policy: &AuditPolicy) -> Audit {
    audit_tables(catalog(), MANIFEST, &[module_rows(rows)], policy, &UnitHasher::new(&[5; 32]), &History::default())
}

/// The host row of table `t` whose labels are `key` (comma-separated).
pub(crate) fn row_of(audit: &Audit, t: usize, key: &str) -> usize {
    let table = &audit.report.tables[t];
    let label = |k: &[Option<String>]| k.iter().map(|v| v.as_deref().unwrap_or("NULL")).collect::<Vec<_>>().join(",");
    table.cells.iter().position(|c| label(&c.key) == key).unwrap_or_else(|| panic!("no cell {key} in {}", table.name))
}

/// A cell's verdict and the rules that found something in it (any measure).
pub(crate) fn cell(audit: &Audit, t: usize, key: &str) -> (Verdict, Vec<Rule>) {
    let r = row_of(audit, t, key);
    let found: Vec<_> = audit.report.tables[t].findings.iter().filter(|f| f.row == Some(r)).collect();
    (found.iter().map(|f| f.verdict).max().unwrap_or(Verdict::Pass), found.iter().map(|f| f.rule).collect())
}

/// What table `t` releases of a cell's measure `column` (1 = the first measure).
pub(crate) fn released(audit: &Audit, t: usize, key: &str, column: usize) -> Option<f64> {
    let r = row_of(audit, t, key);
    let batch = &audit.released.iter().find(|x| x.name == audit.report.tables[t].name).expect("released").batch;
    let values =
        datafusion::arrow::compute::cast(batch.column(column), &datafusion::arrow::datatypes::DataType::Float64)
            .unwrap();
    let values = values.as_any().downcast_ref::<Float64Array>().unwrap();
    values.is_valid(r).then(|| values.value(r))
}

#[test]
fn the_host_releases_every_cell_of_the_contract_with_its_own_rounded_figures() {
    // The module writes two districts only; the host's table has all seven.
    let audit = audit_rows(&[truth("B"), truth("C")], &AuditPolicy::default());
    assert!(audit.breach.is_empty(), "{}", audit.report_text());
    let keys: Vec<String> = audit.report.tables[0].cells.iter().map(|c| c.key[0].clone().unwrap()).collect();
    assert_eq!(keys, ["A", "B", "C", "D", "E", "F", "H"]);
    assert_eq!(audit.released[0].batch.num_rows(), 7);
    // Counts rounded to 5; sums to four significant digits (H: 211 → 211, D: 100).
    assert_eq!((released(&audit, 0, "B", 1), released(&audit, 0, "C", 1)), (Some(10.0), Some(10.0)));
    assert_eq!(released(&audit, 0, "H", 1), Some(20.0));
    assert_eq!(released(&audit, 0, "H", 2), Some(211.0));
    // Released labels are text, whatever the module wrote.
    assert_eq!(audit.released[0].batch.schema().field(0).data_type(), &arrow_schema::DataType::Utf8);
}

#[test]
fn threshold_suppresses_nine_units_and_passes_ten_and_eleven() {
    let audit = audit_rows(&[truth("A"), truth("B"), truth("C")], &AuditPolicy::default());
    assert_eq!(cell(&audit, 0, "A"), (Verdict::Suppressed, vec![Rule::Threshold]));
    assert_eq!(cell(&audit, 0, "B"), (Verdict::Pass, vec![]));
    assert_eq!(cell(&audit, 0, "C"), (Verdict::Pass, vec![]));
    // Released: the suppressed row blank.
    assert_eq!((released(&audit, 0, "A", 1), released(&audit, 0, "A", 2)), (None, None));
    assert_eq!(released(&audit, 0, "C", 2), Some(110.0));
}

#[test]
fn dominance_at_exactly_k_passes_and_above_it_is_suppressed() {
    let audit = audit_rows(&[truth("D"), truth("E")], &AuditPolicy::default());
    assert_eq!(cell(&audit, 0, "D"), (Verdict::Pass, vec![]));
    let (verdict, rules) = cell(&audit, 0, "E");
    assert_eq!(verdict, Verdict::Suppressed);
    assert!(rules.contains(&Rule::Dominance), "{rules:?}");
}

#[test]
fn dominance_adds_up_each_unit_s_rows_first() {
    // Shop S01 has two rows of 45 in district D, ten other shops one row of 1 each. Row by row
    // the two largest make 90% (at k: would pass); shop by shop S01 alone has 90 and the two
    // largest 91%. The count is of shops, 11, not of rows, 12.
    let dir = tempfile::tempdir().unwrap();
    let shop = |id: &str, street: &str, revenue: f64| (id.to_owned(), "D".to_owned(), street.to_owned(), revenue);
    let rows = [shop("S01", "D1", 45.0), shop("S01", "D1", 45.0)];
    let others = (2..=11).map(|i| shop(&format!("S{i:02}"), "D2", 1.0));
    let catalog = write_shop_rows(dir.path(), rows.into_iter().chain(others));
    let table = module_rows(&[("D".to_owned(), 11, 100.0)]);
    let audit = audit_tables(
        &catalog,
        MANIFEST,
        &[table],
        &AuditPolicy::default(),
        &UnitHasher::new(&[5; 32]),
        &History::default(),
    );
    assert_eq!(cell(&audit, 0, "D"), (Verdict::Suppressed, vec![Rule::Dominance]), "{}", audit.report_text());
}

#[test]
fn p_ratio_catches_what_dominance_misses_under_a_tightened_policy() {
    let defaults = audit_rows(&[truth("F")], &AuditPolicy::default());
    assert_eq!(cell(&defaults, 0, "F"), (Verdict::Pass, vec![]));
    let tight = AuditPolicy::parse("[datasets.shops]\np_ratio = 0.5\n").unwrap();
    let audit = audit_rows(&[truth("F")], &tight);
    assert_eq!(cell(&audit, 0, "F"), (Verdict::Suppressed, vec![Rule::PRatio]));
    assert_ne!(audit.report.policy_sha256, defaults.report.policy_sha256);
}

/// District G alone, with its negative contribution.
fn negative_audit(policy: &AuditPolicy) -> Audit {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    let catalog = CATALOG.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("audit-negative-{}", std::process::id()));
        write_shops(&dir, negative_district().into_iter().map(|r| ("G".to_owned(), "G1".to_owned(), r)))
    });
    let table = module_rows(&[("G".to_owned(), 12, 105.0)]);
    audit_tables(catalog, MANIFEST, &[table], policy, &UnitHasher::new(&[5; 32]), &History::default())
}

/// Everything the released report says in words, without its hashes.
pub(crate) fn released_words(audit: &Audit) -> String {
    let mut words = String::new();
    for table in &audit.released_report.tables {
        for f in &table.findings {
            writeln!(words, "{} / {}", f.en, f.zh).unwrap();
        }
    }
    words
}

#[test]
fn negative_contributions_go_to_review() {
    let audit = negative_audit(&AuditPolicy::default());
    assert_eq!(cell(&audit, 0, "G"), (Verdict::Review, vec![Rule::NegativeValues]));
    assert!(audit.released.is_empty(), "a table held for review is not released");
}

#[test]
fn a_policy_can_send_every_table_to_review() {
    let policy = AuditPolicy::parse("[datasets.shops]\nreview_all = true\n").unwrap();
    let audit = audit_rows(&[truth("F")], &policy);
    assert_eq!(cell(&audit, 0, "F"), (Verdict::Pass, vec![]), "no cell is at fault");
    assert_eq!(audit.report.outcome, Verdict::Review);
    assert!(audit.report.tables[0].findings.iter().any(|f| f.rule == Rule::ManualReview && f.row.is_none()));
    assert!(audit.released.is_empty());
    assert_eq!(audit.held(), ["t"]);
    // Set for every dataset, a dataset cannot unset it: the strictest setting wins.
    let text = "[defaults]\nreview_all = true\n[datasets.shops]\nreview_all = false\n";
    assert!(AuditPolicy::parse(text).unwrap().rules_for(["shops"]).review_all);
}

#[test]
fn a_table_held_for_review_leaves_after_two_different_reviewers() {
    use sandbox_audit::review::{Approval, ReviewError};
    let audit = negative_audit(&AuditPolicy::default());
    assert_eq!(audit.held(), ["t"]);
    let id = audit.report_id();
    let approval = |reviewer: &str, table: &str| Approval {
        reviewer: reviewer.to_owned(),
        report_id: id.clone(),
        table: table.to_owned(),
    };
    let operator = "operator.acme";
    // One reviewer, or the same one twice, is not enough.
    for approvals in [vec![approval("r1", "t")], vec![approval("r1", "t"), approval("r1", "t")]] {
        let err = audit.approve(operator, &approvals).unwrap_err();
        assert_eq!(err, ReviewError::TooFew { table: "t".to_owned(), reviewers: 1 });
    }
    // Nobody reviews their own output; approvals are of this report and of held tables only.
    let own = audit.approve("r2", &[approval("r1", "t"), approval("r2", "t")]).unwrap_err();
    assert!(matches!(own, ReviewError::OwnOutput { .. }), "{own}");
    let other = Approval { report_id: "0".repeat(64), ..approval("r2", "t") };
    let wrong = audit.approve(operator, &[approval("r1", "t"), other]).unwrap_err();
    assert!(matches!(wrong, ReviewError::WrongReport { .. }), "{wrong}");
    assert!(matches!(
        audit.approve(operator, &[approval("r1", "t"), approval("r2", "x")]),
        Err(ReviewError::NotHeld(_))
    ));
    // Two different reviewers: the table leaves, its review cell shown, the host's figures.
    let (tables, added) = audit.approve(operator, &[approval("r1", "t"), approval("r2", "t")]).unwrap();
    let batch = &tables[0].batch;
    let shops = batch.column(1).as_any().downcast_ref::<Int64Array>().unwrap();
    let revenue = batch.column(2).as_any().downcast_ref::<Float64Array>().unwrap();
    assert_eq!((shops.value(0), revenue.value(0)), (10, 105.0));
    // What it adds to the history: its one cell that passes differencing, and itself.
    assert_eq!((added.cells.len(), added.tables.len()), (1, 1));
    assert!(audit.released.is_empty(), "nothing left before the review");
}

#[test]
fn the_internal_report_is_named_by_a_keyed_digest() {
    // Anyone may read the name in the log; without the key it cannot be tested against a
    // report rebuilt from guessed figures.
    let audit = audit_rows(&[truth("B")], &AuditPolicy::default());
    let id = audit.report_id();
    assert_eq!(id.len(), 64);
    let plain = sha2_hex(&audit.report.to_json());
    assert_ne!(id, plain);
    let other_key = audit_tables(
        catalog(),
        MANIFEST,
        &[module_rows(&[truth("B")])],
        &AuditPolicy::default(),
        &UnitHasher::new(&[6; 32]),
        &History::default(),
    );
    assert_eq!(other_key.report.to_json(), audit.report.to_json(), "the same figures");
    assert_ne!(other_key.report_id(), id, "another key, another name");
}

fn sha2_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[test]
fn a_module_whose_figures_differ_from_the_host_s_fails_the_whole_run_as_a_breach() {
    let (district, shops, revenue) = truth("C");
    for lie in [
        (district.clone(), shops + 1, revenue),
        (district.clone(), shops, revenue - 10.0),
        (district.clone(), shops, revenue + 1e-6),
    ] {
        let audit = audit_rows(&[truth("B"), lie.clone()], &AuditPolicy::default());
        assert_eq!(audit.breach, ["t"], "{lie:?}");
        assert_eq!(audit.report.outcome, Verdict::Fail);
        assert!(audit.report.breach);
        assert!(audit.released.is_empty() && audit.history.is_empty(), "nothing of a breached run leaves");
        // The internal report says what differs; the released one only that the run fails.
        assert!(audit.report_text().contains("where the host computes"), "{}", audit.report_text());
        let released = audit.released_report.text();
        assert!(released.contains("[inconsistent]") && released.contains("违约"), "{released}");
        let words = released_words(&audit);
        assert!(!words.contains("110") && !words.contains("11") && !words.contains("host computes"), "{words}");
    }
    // A row outside the host's table (every combination of the labels) is bytes of the
    // module's choosing, zero or not; so is a row with no figure at all.
    for z in [("Z".to_owned(), 0, 0.0), ("Z".to_owned(), 12, 0.0)] {
        assert_eq!(audit_rows(&[truth("B"), z], &AuditPolicy::default()).breach, ["t"]);
    }
    // The same cell twice.
    assert_eq!(audit_rows(&[truth("B"), truth("B")], &AuditPolicy::default()).breach, ["t"]);
}

#[test]
fn identifiers_and_sensitive_values_in_the_host_s_labels_fail() {
    // A catalog whose group_by_only column holds what should never be shown: a mobile number,
    // an ID number, and an owner's name (a value of the forbidden column).
    for (label, rule) in
        [("13800138000", Rule::Identifier), ("11010519491231002X", Rule::Identifier), ("店主3", Rule::Membership)]
    {
        let dir = tempfile::tempdir().unwrap();
        let rows = (0..12).map(|_| (label.to_owned(), "X1".to_owned(), 10.0));
        let catalog = write_shops(dir.path(), rows.chain((0..12).map(|_| ("B".to_owned(), "B1".to_owned(), 10.0))));
        let table = module_rows(&[("B".to_owned(), 12, 120.0)]);
        let audit = audit_tables(
            &catalog,
            MANIFEST,
            &[table],
            &AuditPolicy::default(),
            &UnitHasher::new(&[5; 32]),
            &History::default(),
        );
        let (verdict, rules) = cell(&audit, 0, label);
        assert_eq!(verdict, Verdict::Fail, "{label}");
        assert!(rules.contains(&rule), "{label}: {rules:?}");
        assert!(audit.released.is_empty());
        assert!(!audit.released_report.text().contains(label), "the released report never quotes it");
    }
}

#[test]
fn a_sensitive_value_is_found_again_when_the_files_change() {
    // Which labels are values of a sensitive column is remembered per set of files: the same
    // labels are asked of every run. District "店主30" is no owner while the file has 24 shops,
    // and is one once the file is rewritten with 36: the answer must not be the one remembered.
    let dir = tempfile::tempdir().unwrap();
    let run = |shops: usize| {
        let rows = (0..12).map(|_| ("店主30".to_owned(), "X1".to_owned(), 10.0));
        let rest = (12..shops).map(|_| ("B".to_owned(), "B1".to_owned(), 10.0));
        let catalog = write_shops(dir.path(), rows.chain(rest));
        let table = module_rows(&[]);
        let audit = audit_tables(
            &catalog,
            MANIFEST,
            &[table],
            &AuditPolicy::default(),
            &UnitHasher::new(&[5; 32]),
            &History::default(),
        );
        cell(&audit, 0, "店主30").1.contains(&Rule::Membership)
    };
    assert!(!run(24), "no shop has owner 30 among 24");
    assert!(!run(24), "asked again, remembered");
    assert!(run(36), "the 30th shop's owner, in the rewritten file");
}

#[test]
fn tables_over_the_size_cap_fail() {
    let small = AuditPolicy::parse("[defaults]\nmax_rows = 1\n").unwrap();
    let audit = audit_rows(&[truth("B")], &small);
    let table = &audit.report.tables[0];
    assert!(table.findings.iter().any(|f| f.rule == Rule::Size && f.row.is_none()));
    assert_eq!(table.outcome, Verdict::Fail);
}

#[test]
fn the_released_report_names_rule_cell_and_remedy_and_no_figure_of_a_withheld_cell() {
    let audit = audit_rows(&[truth("A"), truth("E")], &AuditPolicy::default());
    let text = audit.released_report.text();
    for expected in
        ["[threshold]", "第 0 行 / row 0", "[dominance]", "建议 / what to change", &audit.released_report.sha256()]
    {
        assert!(text.contains(expected), "{expected:?} in\n{text}");
    }
    // A (9 shops, 90) and E (12 shops, 100, 91% held by two) are withheld: none of their
    // figures, shares or unit counts is in the released report's words.
    let words = released_words(&audit);
    for figure in ["9 ", "91", "12", "100", "privacy units, fewer"] {
        assert!(!words.contains(figure), "{figure:?} in\n{words}");
    }
    let json: serde_json::Value = serde_json::from_slice(&audit.released_report.to_json()).unwrap();
    assert_eq!(json["tables"][0]["findings"][0]["rule"], "threshold");
    assert!(json["tables"][0].get("rows").is_none() && json["tables"][0].get("cells").is_none());
    // The internal report has them, for reviewers.
    let internal = audit.report_text();
    assert!(internal.contains("9 privacy units, fewer than 10") && internal.contains("91.0%"), "{internal}");
}

#[test]
fn a_table_that_does_not_leave_is_named_with_its_rules_only() {
    let audit = negative_audit(&AuditPolicy::default());
    let table = &audit.released_report.tables[0];
    assert_eq!(table.outcome, Verdict::Review);
    assert!(table.findings.iter().all(|f| f.row.is_none() && f.column.is_none()), "{:?}", table.findings);
    assert_eq!(table.findings.iter().map(|f| f.rule).collect::<Vec<_>>(), [Rule::NegativeValues]);
}

const STATISTICS: &str = r#"
name = "shops-statistics"
version = "1"
datasets = ["shops"]
purpose = { zh = "测试", en = "test" }
[[outputs]]
name = "t"
zh = "表"
en = "table"
dimensions = [{ name = "district", source = "shops.district" }]
measures = [
    { name = "mean", statistic = "mean", of = "shops.revenue" },
    { name = "largest", statistic = "max", of = "shops.revenue" },
    { name = "smallest", statistic = "min", of = "shops.revenue" },
    { name = "median", statistic = "quantile", of = "shops.revenue", quantile = 0.5 },
    { name = "p95", statistic = "quantile", of = "shops.revenue", quantile = 0.95 },
]
"#;

/// Revenues 1, 2, ..., n in district R.
fn ladder_catalog(dir: &Path, n: usize) -> Catalog {
    write_shops(dir, (1..=n).map(|r| ("R".to_owned(), "R1".to_owned(), r as f64)))
}

fn statistics(catalog: &Catalog, row: [f64; 5]) -> Audit {
    let table = output_table(
        "t",
        vec![
            ("district", Arc::new(StringArray::from_iter_values(["R"])) as ArrayRef),
            ("mean", Arc::new(Float64Array::from_iter_values([row[0]]))),
            ("largest", Arc::new(Float64Array::from_iter_values([row[1]]))),
            ("smallest", Arc::new(Float64Array::from_iter_values([row[2]]))),
            ("median", Arc::new(Float64Array::from_iter_values([row[3]]))),
            ("p95", Arc::new(Float64Array::from_iter_values([row[4]]))),
        ],
    );
    audit_tables(
        catalog,
        STATISTICS,
        &[table],
        &AuditPolicy::default(),
        &UnitHasher::new(&[5; 32]),
        &History::default(),
    )
}

#[test]
fn extremes_and_quantiles_are_the_host_s_and_leave_only_where_ten_units_reach_them() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = ladder_catalog(dir.path(), 41);
    // The honest module: mean 21, max 41, min 1, median 21, 95th percentile 39.
    let audit = statistics(&catalog, [21.0, 41.0, 1.0, 21.0, 39.0]);
    assert!(audit.breach.is_empty(), "{}", audit.report_text());
    // Released: the largest value ten shops reach (32), the smallest (10), the median; the 95th
    // percentile (39) is reached from above by only three shops: withheld.
    assert_eq!(released(&audit, 0, "R", 2), Some(32.0));
    assert_eq!(released(&audit, 0, "R", 3), Some(10.0));
    assert_eq!(released(&audit, 0, "R", 4), Some(21.0));
    assert_eq!(released(&audit, 0, "R", 5), None);
    assert!(cell(&audit, 0, "R").1.contains(&Rule::Extremes));
    // The mean comes from the released sum (861) and the rounded number of values (40).
    assert_eq!(released(&audit, 0, "R", 1), Some(21.52));
    // A module that writes any other maximum or quantile breaches its contract.
    for lie in [[21.0, 40.0, 1.0, 21.0, 39.0], [21.0, 41.0, 1.0, 21.5, 39.0], [21.1, 41.0, 1.0, 21.0, 39.0]] {
        assert_eq!(statistics(&catalog, lie).breach, ["t"], "{lie:?}");
    }
}

#[test]
fn sums_and_means_are_rounded_so_that_their_ratio_gives_no_exact_count_back() {
    // Twelve shops, revenues 1000.37 each: sum 12 004.44, mean 1000.37.
    let dir = tempfile::tempdir().unwrap();
    let catalog = write_shops(dir.path(), (0..12).map(|_| ("R".to_owned(), "R1".to_owned(), 1000.37)));
    let manifest = MANIFEST.replace(
        r#"{ name = "revenue", statistic = "sum", of = "shops.revenue" },"#,
        r#"{ name = "revenue", statistic = "sum", of = "shops.revenue" },
    { name = "mean", statistic = "mean", of = "shops.revenue" },"#,
    );
    let table = output_table(
        "t",
        vec![
            ("district", Arc::new(StringArray::from_iter_values(["R"])) as ArrayRef),
            ("shops", Arc::new(Int64Array::from_iter_values([12]))),
            ("revenue", Arc::new(Float64Array::from_iter_values([12_004.44]))),
            ("mean", Arc::new(Float64Array::from_iter_values([1000.37]))),
        ],
    );
    let audit = audit_tables(
        &catalog,
        &manifest,
        &[table],
        &AuditPolicy::default(),
        &UnitHasher::new(&[5; 32]),
        &History::default(),
    );
    let (count, sum, mean) = (
        released(&audit, 0, "R", 1).unwrap(),
        released(&audit, 0, "R", 2).unwrap(),
        released(&audit, 0, "R", 3).unwrap(),
    );
    assert_eq!((count, sum), (10.0, 12_000.0));
    // sum ÷ mean is the rounded count, never the exact 12.
    assert_eq!(mean, 1200.0);
    assert!(((sum / mean) - 12.0).abs() > 1.0, "{sum} / {mean}");
    // A policy may publish fewer digits, never more.
    let two = AuditPolicy::parse("[defaults]\nsignificant_digits = 2\n").unwrap();
    assert_eq!(two.rules_for(["shops"]).significant_digits, 2);
    assert!(AuditPolicy::parse("[defaults]\nsignificant_digits = 6\n").is_err());
    assert!(AuditPolicy::parse("[defaults]\nsignificant_digits = 0\n").is_err());
}

#[test]
fn run_limits_may_only_be_tightened() {
    let policy = AuditPolicy::parse("[runs]\nmax_breaches = 1\nruns_per_day = 5\nanswer_quantum_ms = 2000\n").unwrap();
    assert_eq!((policy.runs().max_breaches, policy.runs().runs_per_day, policy.runs().answer_quantum_ms), (1, 5, 2000));
    assert_eq!(AuditPolicy::default().runs().max_breaches, 3);
    for loose in [
        "[runs]\nmax_breaches = 4",
        "[runs]\nmax_breaches = 0",
        "[runs]\nruns_per_day = 1000",
        "[runs]\nanswer_quantum_ms = 99999999",
    ] {
        assert!(AuditPolicy::parse(loose).is_err(), "{loose}");
    }
}
