//! Differencing and secondary suppression, the two ways to get a suppressed cell back by
//! subtraction. A cell whose privacy units differ from a released cell's by fewer than the
//! threshold is suppressed, whether the other cell was released earlier (by anyone, on the same
//! data) or in the same run: district C has 11 shops, street C1 has 10 of them. A margin is
//! released recomputed from the released cells it adds up: district H = streets H1 + H2, and H1
//! is dominated.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, Int64Array, StringArray};
use sandbox_audit::{Audit, AuditPolicy, History, Rule, UnitHasher, Verdict};
use sandbox_contract::OutputTable;

use crate::rules::{catalog, cell, released, shops, street};
use crate::{audit_tables, output_table};

pub(crate) const HEADER: &str = "name = \"differencing-test\"\nversion = \"1\"\ndatasets = [\"shops\"]\npurpose = { zh = \"测试\", en = \"test\" }\n";

/// One output of shops and revenue by `dims` (`district`, `street`), with `filters` (TOML).
pub(crate) fn output(name: &str, dims: &[&str], filters: &str) -> String {
    let dimensions: Vec<String> =
        dims.iter().map(|d| format!("{{ name = \"{d}\", source = \"shops.{d}\" }}")).collect();
    format!(
        r#"
[[outputs]]
name = "{name}"
zh = "表"
en = "table"
dimensions = [{}]
filters = [{filters}]
measures = [
    {{ name = "shops", statistic = "count", of = "shops" }},
    {{ name = "revenue", statistic = "sum", of = "shops.revenue" }},
]
"#,
        dimensions.join(", ")
    )
}

/// Each table by its dimensions, named `by_<dims>`.
fn manifest(tables: &[&[&str]]) -> String {
    let outputs: String = tables.iter().map(|dims| output(&format!("by_{}", dims.join("_")), dims, "")).collect();
    format!("{HEADER}{outputs}")
}

/// A shop's value of a dimension.
fn value(dim: &str, district: &str, i: usize) -> String {
    if dim == "district" { district.to_owned() } else { street(district, i) }
}

/// The true table of shops by `dims`, as an honest module writes it.
pub(crate) fn table(dims: &[&str]) -> OutputTable {
    let mut cells: BTreeMap<Vec<String>, (i64, f64)> = BTreeMap::new();
    for (district, revenues) in shops() {
        for (i, revenue) in revenues.into_iter().enumerate() {
            let cell = cells.entry(dims.iter().map(|d| value(d, district, i)).collect()).or_default();
            cell.0 += 1;
            cell.1 += revenue;
        }
    }
    let mut columns: Vec<(&str, ArrayRef)> = dims
        .iter()
        .enumerate()
        .map(|(i, d)| (*d, Arc::new(StringArray::from_iter_values(cells.keys().map(|k| k[i].as_str()))) as ArrayRef))
        .collect();
    columns.push(("shops", Arc::new(Int64Array::from_iter_values(cells.values().map(|c| c.0)))));
    columns.push(("revenue", Arc::new(Float64Array::from_iter_values(cells.values().map(|c| c.1)))));
    output_table(&format!("by_{}", dims.join("_")), columns)
}

pub(crate) fn audit(tables: &[&[&str]], hasher: &UnitHasher, earlier: &History) -> Audit {
    let outputs: Vec<OutputTable> = tables.iter().map(|d| table(d)).collect();
    audit_tables(catalog(), &manifest(tables), &outputs, &AuditPolicy::default(), hasher, earlier)
}

#[test]
fn two_releases_one_shop_apart_the_second_is_suppressed() {
    let hasher = UnitHasher::new(&[3; 32]);
    let first = audit(&[&["district"]], &hasher, &History::default());
    assert_eq!(cell(&first, 0, "C"), (Verdict::Pass, vec![]));
    // The released cells carry sketches, never units.
    let c = first.history.cells.iter().find(|c| c.label.ends_with("[C]")).unwrap();
    assert_eq!((c.dataset.as_str(), c.sketch.size), ("shops", 11));
    assert!(!serde_json::to_string(c).unwrap().contains("S00"), "a sketch holds no unit id");

    let second = audit(&[&["street"]], &hasher, &first.history);
    let (verdict, rules) = cell(&second, 0, "C1");
    assert_eq!((verdict, rules), (Verdict::Suppressed, vec![Rule::Differencing]));
    let finding = second.report.tables[0].findings.iter().find(|f| f.rule == Rule::Differencing).unwrap();
    assert!(finding.en.contains("by 1, fewer than 10") && finding.en.contains("by_district [C]"), "{}", finding.en);
    assert!(finding.zh.contains("仅相差 1 个"), "{}", finding.zh);
    // Street B1 holds exactly district B's shops: the same set says nothing new and passes.
    assert_eq!(cell(&second, 0, "B1"), (Verdict::Pass, vec![]));
    // The suppressed cell is blank in the release and is not kept for later comparisons.
    assert!(!second.history.cells.iter().any(|c| c.label.ends_with("[C1]")));
    assert!(second.released_report.text().contains("differencing"));

    // With no history (or another key) the two releases cannot be compared: that is why the key
    // and the history are kept for every audit of the data.
    assert_eq!(cell(&audit(&[&["street"]], &hasher, &History::default()), 0, "C1"), (Verdict::Pass, vec![]));
}

#[test]
fn two_tables_of_one_run_one_shop_apart_the_later_is_suppressed() {
    let both = audit(&[&["district"], &["street"]], &UnitHasher::new(&[3; 32]), &History::default());
    assert_eq!(cell(&both, 0, "C"), (Verdict::Pass, vec![]));
    assert_eq!(cell(&both, 1, "C1"), (Verdict::Suppressed, vec![Rule::Differencing]));
    // What the run releases for later audits: every passing cell of both tables.
    let labels: Vec<&str> = both.history.cells.iter().map(|c| c.label.as_str()).collect();
    assert!(labels.iter().any(|l| l.ends_with("by_district [C]")), "{labels:?}");
    assert!(labels.iter().any(|l| l.ends_with("by_street [B1]")), "{labels:?}");
}

#[test]
fn a_margin_is_recomputed_from_released_cells_so_subtraction_gives_nothing_back() {
    let audit = audit(&[&["district"], &["district", "street"]], &UnitHasher::new(&[3; 32]), &History::default());
    // H1 is dominated; H2 and the district pass their own rules.
    assert_eq!(cell(&audit, 1, "H,H1").0, Verdict::Suppressed);
    assert!(cell(&audit, 1, "H,H1").1.contains(&Rule::Dominance));
    assert_eq!(cell(&audit, 1, "H,H2"), (Verdict::Pass, vec![]));
    let (verdict, rules) = cell(&audit, 0, "H");
    assert_eq!(verdict, Verdict::Pass);
    assert_eq!(rules, vec![Rule::SecondarySuppression, Rule::SecondarySuppression], "count and revenue");

    // Released: H's revenue is H2's (100), not 211, so H − H2 says nothing about H1.
    assert_eq!(released(&audit, 0, "H", 2), Some(100.0));
    assert_eq!(released(&audit, 1, "H,H2", 3), Some(100.0));
    assert_eq!(released(&audit, 1, "H,H1", 3), None);
    // The count too: H2's 10 shops, not 22.
    assert_eq!(released(&audit, 0, "H", 1), Some(10.0));
    // District C: street C2 (one shop) is under the threshold and C1 is within one shop of C,
    // so nothing of C's streets is released; C, the total of both, passed its own rules and
    // leaves: it gives neither back.
    assert_eq!(released(&audit, 1, "C,C1", 2), None);
    assert_eq!(released(&audit, 1, "C,C2", 2), None);
    assert_eq!(released(&audit, 0, "C", 2), Some(110.0));
    // District B's one street releases all of it; the table's other combinations with B are
    // empty, and hidden like small cells (an empty combination and a one-shop cell look alike),
    // so B too is the sum of its released streets: here its own figure.
    assert_eq!(released(&audit, 0, "B", 2), Some(100.0));
    assert_eq!(cell(&audit, 0, "B").0, Verdict::Pass);
    assert_eq!(released(&audit, 1, "B,A1", 1), None, "an empty combination is released blank");
    assert!(audit.released_report.text().contains("secondary-suppression"));
}

#[test]
fn reconstruction_by_many_overlapping_tables_is_cut_down_to_groups_of_ten() {
    // 40 shops with revenues 1 to 40. The module asks for 30 one-cell tables, "shops with
    // revenue of at least t" for t = 1..30: each holds at least 11 shops, and any two neighbours
    // subtracted would give one shop's revenue.
    let dir = tempfile::tempdir().unwrap();
    let catalog = crate::rules::write_shops(dir.path(), (1..=40).map(|r| ("R".to_owned(), "R1".to_owned(), r as f64)));
    let mut manifest = HEADER.to_owned();
    let mut tables = Vec::new();
    for t in 1..=30 {
        let filter = format!(r#"{{ column = "shops.revenue", op = "ge", value = {t}.0 }}"#);
        manifest.push_str(&output(&format!("from_{t}"), &["district"], &filter));
        let kept: Vec<i64> = (t..=40).collect();
        tables.push(output_table(
            &format!("from_{t}"),
            vec![
                ("district", Arc::new(StringArray::from_iter_values(["R"]))),
                ("shops", Arc::new(Int64Array::from_iter_values([kept.len() as i64]))),
                ("revenue", Arc::new(Float64Array::from_iter_values([kept.iter().sum::<i64>() as f64]))),
            ],
        ));
    }
    let audit = audit_tables(
        &catalog,
        &manifest,
        &tables,
        &AuditPolicy::default(),
        &UnitHasher::new(&[9; 32]),
        &History::default(),
    );
    // Released: t = 1, 11, 21 (40, 30 and 20 shops), ten shops apart; every other table's cell
    // is within ten shops of one of them and suppressed, naming differencing.
    let mut released = Vec::new();
    for (t, report) in (1..=30).zip(&audit.report.tables) {
        let rules: Vec<Rule> = report.findings.iter().map(|f| f.rule).collect();
        if report.suppressed_cells == 0 {
            assert!(rules.is_empty(), "from_{t}: {rules:?}");
            released.push(t);
        } else {
            assert_eq!(rules, [Rule::Differencing], "from_{t}");
        }
    }
    assert_eq!(released, [1, 11, 21]);
    // What is left to subtract: groups of ten shops, never fewer.
    for (i, a) in audit.history.cells.iter().enumerate() {
        for b in &audit.history.cells[i + 1..] {
            assert_eq!(a.sketch.difference(&b.sketch, 9), None, "{} and {}", a.label, b.label);
        }
    }
}
