//! Every rule at its boundary, on a hand-made dataset of shops whose cells have exactly the unit
//! counts and contributions each rule turns on. The output tables are built by hand: the audit
//! must not care whether a module or anything else wrote them.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use arrow_array::{Array, Float64Array, Int64Array, StringArray};
use sandbox_audit::{Audit, AuditPolicy, Rule, UnitHasher, Verdict, identifiers};
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
        ("G", [vec![-5.0], vec![10.0; 11]].concat()),
        // On street H1 one shop dominates (91%); on H2 nobody does; the district passes (52%).
        ("H", [vec![100.0], vec![1.0; 11], vec![10.0; 10]].concat()),
    ]
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
    std::fs::write(dir.join("data/shops.csv"), csv).unwrap();
    std::fs::write(dir.join("shops.toml"), SHOPS_ENTRY).unwrap();
    Catalog::open(dir).unwrap()
}

/// The shops of [`shops`] as a catalog, written once per test process.
pub(crate) fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("audit-shops-{}", std::process::id()));
        let rows = shops().into_iter().flat_map(|(district, revenues)| {
            revenues
                .into_iter()
                .enumerate()
                .map(move |(i, revenue)| (district.to_owned(), street(district, i), revenue))
        });
        write_shops(&dir, rows)
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
twin_files = ["data/shops.csv"]

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

pub(crate) fn audit_rows(rows: &[(String, i64, f64)], policy: &AuditPolicy) -> Audit {
    let table = output_table(
        "t",
        vec![
            ("district", Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0.as_str())))),
            ("shops", Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1)))),
            ("revenue", Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.2)))),
        ],
    );
    audit_tables(catalog(), MANIFEST, &[table], policy, &UnitHasher::new(&[5; 32]), &[])
}

/// Each row's verdict and the rules that found something in it.
pub(crate) fn verdicts(audit: &Audit) -> Vec<(Verdict, Vec<Rule>)> {
    let table = &audit.report.tables[0];
    (0..table.rows)
        .map(|r| {
            let found: Vec<_> = table.findings.iter().filter(|f| f.row == Some(r)).collect();
            (found.iter().map(|f| f.verdict).max().unwrap_or(Verdict::Pass), found.iter().map(|f| f.rule).collect())
        })
        .collect()
}

#[test]
fn threshold_suppresses_nine_units_and_passes_ten_and_eleven() {
    let audit = audit_rows(&[truth("A"), truth("B"), truth("C")], &AuditPolicy::default());
    let v = verdicts(&audit);
    assert_eq!(v[0], (Verdict::Suppressed, vec![Rule::Threshold]));
    assert_eq!(v[1], (Verdict::Pass, vec![]));
    assert_eq!(v[2], (Verdict::Pass, vec![]));
    assert_eq!(audit.report.outcome, Verdict::Suppressed);

    // Released: the suppressed row blank, counts rounded to 5, sums as they are.
    let released = &audit.released[0].batch;
    let shops = released.column(1).as_any().downcast_ref::<Int64Array>().unwrap();
    let revenue = released.column(2).as_any().downcast_ref::<Float64Array>().unwrap();
    assert!(shops.is_null(0) && revenue.is_null(0));
    assert_eq!((shops.value(1), shops.value(2)), (10, 10));
    assert_eq!(revenue.value(2), 110.0);
}

#[test]
fn dominance_at_exactly_k_passes_and_above_it_is_suppressed() {
    let audit = audit_rows(&[truth("D"), truth("E")], &AuditPolicy::default());
    let v = verdicts(&audit);
    assert_eq!(v[0], (Verdict::Pass, vec![]));
    assert_eq!(v[1].0, Verdict::Suppressed);
    assert!(v[1].1.contains(&Rule::Dominance), "{:?}", v[1]);
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
    let table = output_table(
        "t",
        vec![
            ("district", Arc::new(StringArray::from_iter_values(["D"]))),
            ("shops", Arc::new(Int64Array::from_iter_values([11]))),
            ("revenue", Arc::new(Float64Array::from_iter_values([100.0]))),
        ],
    );
    let audit = audit_tables(&catalog, MANIFEST, &[table], &AuditPolicy::default(), &UnitHasher::new(&[5; 32]), &[]);
    assert_eq!(verdicts(&audit), [(Verdict::Suppressed, vec![Rule::Dominance])], "{}", audit.report.text());
}

#[test]
fn p_ratio_catches_what_dominance_misses_under_a_tightened_policy() {
    let defaults = audit_rows(&[truth("F")], &AuditPolicy::default());
    assert_eq!(verdicts(&defaults)[0], (Verdict::Pass, vec![]));
    let tight = AuditPolicy::parse("[datasets.shops]\np_ratio = 0.5\n").unwrap();
    let audit = audit_rows(&[truth("F")], &tight);
    assert_eq!(verdicts(&audit)[0], (Verdict::Suppressed, vec![Rule::PRatio]));
    assert_ne!(audit.report.policy_sha256, defaults.report.policy_sha256);
}

#[test]
fn negative_contributions_go_to_review() {
    let audit = audit_rows(&[truth("G")], &AuditPolicy::default());
    assert_eq!(verdicts(&audit)[0], (Verdict::Review, vec![Rule::NegativeValues]));
    assert!(audit.released.is_empty(), "a table held for review is not released");
}

#[test]
fn a_policy_can_send_every_table_to_review() {
    let policy = AuditPolicy::parse("[datasets.shops]\nreview_all = true\n").unwrap();
    let audit = audit_rows(&[truth("F")], &policy);
    assert_eq!(verdicts(&audit)[0], (Verdict::Pass, vec![]), "no cell is at fault");
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
    let audit = audit_rows(&[truth("G")], &AuditPolicy::default());
    assert_eq!(audit.held(), ["t"]);
    let sha = audit.report.sha256();
    let approval = |reviewer: &str, table: &str| Approval {
        reviewer: reviewer.to_owned(),
        report_sha256: sha.clone(),
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
    let other = Approval { report_sha256: "0".repeat(64), ..approval("r2", "t") };
    let wrong = audit.approve(operator, &[approval("r1", "t"), other]).unwrap_err();
    assert!(matches!(wrong, ReviewError::WrongReport { .. }), "{wrong}");
    assert!(matches!(audit.approve(operator, &[approval("r1", "x")]), Err(ReviewError::NotHeld(_))));
    // Two different reviewers: the table leaves, its review cell shown, counts rounded.
    let (tables, cells) = audit.approve(operator, &[approval("r1", "t"), approval("r2", "t")]).unwrap();
    let batch = &tables[0].batch;
    let shops = batch.column(1).as_any().downcast_ref::<Int64Array>().unwrap();
    let revenue = batch.column(2).as_any().downcast_ref::<Float64Array>().unwrap();
    assert_eq!((shops.value(0), revenue.value(0)), (10, 105.0));
    assert_eq!(cells.len(), 1);
    assert!(audit.released.is_empty(), "nothing left before the review");
}

#[test]
fn a_module_lying_about_its_counts_fails_the_table() {
    let (district, shops, revenue) = truth("C");
    for lie in [(district.clone(), shops + 1, revenue), (district.clone(), shops, revenue - 10.0)] {
        let audit = audit_rows(&[truth("B"), lie], &AuditPolicy::default());
        assert_eq!(audit.report.outcome, Verdict::Fail);
        assert!(verdicts(&audit)[1].1.contains(&Rule::Inconsistent));
        assert!(audit.released.is_empty(), "nothing of a failed table leaves");
    }
}

#[test]
fn dimension_values_outside_the_domain_fail() {
    let audit = audit_rows(&[truth("B"), ("Z".to_owned(), 0, 0.0)], &AuditPolicy::default());
    assert!(verdicts(&audit)[1].1.contains(&Rule::DimensionDomain));
    assert_eq!(audit.report.outcome, Verdict::Fail);
}

#[test]
fn identifiers_and_sensitive_values_smuggled_as_dimensions_fail() {
    for (smuggled, rule) in [
        ("13800138000", Rule::Identifier),
        ("B-11010519491231002X", Rule::Identifier),
        ("店主3", Rule::Membership),
        ("S0003", Rule::Membership),
    ] {
        let audit = audit_rows(&[truth("B"), (smuggled.to_owned(), 0, 0.0)], &AuditPolicy::default());
        let (verdict, rules) = &verdicts(&audit)[1];
        assert_eq!(*verdict, Verdict::Fail, "{smuggled}");
        assert!(rules.contains(&rule), "{smuggled}: {rules:?}");
    }
}

#[test]
fn identifiers_smuggled_through_string_concatenation_fail() {
    // Within one label: separators, full-width digits, glued to a real label.
    for smuggled in ["B 1101-0519-4912-3100-2X", "１３８ ００１３ ８０００", "B13800138000", "B|138.0013.8000"]
    {
        let audit = audit_rows(&[truth("B"), (smuggled.to_owned(), 0, 0.0)], &AuditPolicy::default());
        let (verdict, rules) = &verdicts(&audit)[1];
        assert_eq!(*verdict, Verdict::Fail, "{smuggled}");
        assert!(rules.contains(&Rule::Identifier), "{smuggled}: {rules:?}");
    }
    // Across the strings of a row: an ID number split between district and street.
    let manifest = MANIFEST.replace(
        r#"dimensions = [{ name = "district", source = "shops.district" }]"#,
        r#"dimensions = [{ name = "district", source = "shops.district" }, { name = "street", source = "shops.street" }]"#,
    );
    let (_, shops, revenue) = truth("B");
    let table = output_table(
        "t",
        vec![
            ("district", Arc::new(StringArray::from_iter_values(["B", "1101051949"]))),
            ("street", Arc::new(StringArray::from_iter_values([street("B", 0).as_str(), "-1231-002X"]))),
            ("shops", Arc::new(Int64Array::from_iter_values([shops, 0]))),
            ("revenue", Arc::new(Float64Array::from_iter_values([revenue, 0.0]))),
        ],
    );
    let audit = audit_tables(catalog(), &manifest, &[table], &AuditPolicy::default(), &UnitHasher::new(&[5; 32]), &[]);
    let found: Vec<_> = audit.report.tables[0].findings.iter().filter(|f| f.row == Some(1)).collect();
    assert!(
        found.iter().any(|f| f.rule == Rule::Identifier && f.column.as_deref() == Some("district+street")),
        "{}",
        audit.report.text()
    );
    assert_eq!(audit.report.outcome, Verdict::Fail);
    // Legitimate labels glued together spell nothing.
    assert_eq!(identifiers::find_across(&["150202", "1985", "03", "男"]), None);
}

#[test]
fn a_zero_cell_goes_to_review_and_repeated_cells_fail() {
    let zero = audit_rows(&[truth("B"), ("A".to_owned(), 0, 0.0)], &AuditPolicy::default());
    assert!(verdicts(&zero)[1].1.contains(&Rule::Zero));
    let twice = audit_rows(&[truth("B"), truth("B")], &AuditPolicy::default());
    assert_eq!(verdicts(&twice)[1].0, Verdict::Fail);
}

#[test]
fn tables_over_the_size_cap_fail() {
    let small = AuditPolicy::parse("[defaults]\nmax_rows = 1\n").unwrap();
    let audit = audit_rows(&[truth("B"), truth("C")], &small);
    let table = &audit.report.tables[0];
    assert!(table.findings.iter().any(|f| f.rule == Rule::Size && f.row.is_none()));
    assert_eq!(table.outcome, Verdict::Fail);
}

#[test]
fn the_report_names_rule_cell_and_remedy_in_both_languages() {
    let audit = audit_rows(&[truth("A"), truth("E")], &AuditPolicy::default());
    let text = audit.report.text();
    for expected in ["[threshold]", "row 0", "第 0 行", "[dominance]", "建议 / what to change", &audit.report.sha256()]
    {
        assert!(text.contains(expected), "{expected:?} in\n{text}");
    }
    let json: serde_json::Value = serde_json::from_slice(&audit.report.to_json()).unwrap();
    assert_eq!(json["tables"][0]["findings"][0]["rule"], "threshold");
}

const EXTREMES: &str = r#"
name = "shops-extremes"
version = "1"
datasets = ["shops"]
purpose = { zh = "测试", en = "test" }
[[outputs]]
name = "t"
zh = "表"
en = "table"
dimensions = [{ name = "district", source = "shops.district" }]
measures = [{ name = "largest", statistic = "max", of = "shops.revenue" }]
"#;

#[test]
fn identifiers_smuggled_as_measure_values_and_in_floats_fail() {
    // A maximum is not recomputed by the host, so a module could put anything there.
    let audit_max = |value: f64| {
        let table = output_table(
            "t",
            vec![
                ("district", Arc::new(StringArray::from(vec!["C"]))),
                ("largest", Arc::new(Float64Array::from(vec![value]))),
            ],
        );
        audit_tables(catalog(), EXTREMES, &[table], &AuditPolicy::default(), &UnitHasher::new(&[5; 32]), &[])
    };
    // The honest value passes: district C's largest revenue, 11 shops behind it.
    assert_eq!(verdicts(&audit_max(10.0))[0], (Verdict::Pass, vec![]));
    for smuggled in [
        13_800_138_000.0,        // a mobile number as the value
        4_111_111_111_111_111.0, // a Luhn-valid bank card number
        0.138_123_456_78,        // a mobile number as the digits of a fraction
        13_812_345_678.25,       // ... with a fraction after it
    ] {
        let audit = audit_max(smuggled);
        let (verdict, rules) = &verdicts(&audit)[0];
        assert_eq!(*verdict, Verdict::Fail, "{smuggled}: {rules:?}");
        assert!(rules.contains(&Rule::Identifier), "{smuggled}: {rules:?}");
    }
}
