//! Differencing: a cell whose privacy units differ from a released cell's by fewer than the
//! threshold is suppressed, whether the other cell was released earlier (by anyone, on the same
//! data) or in the same run. On the shops: district C has 11 shops; street C1 has 10 of them.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use sandbox_audit::{Audit, AuditPolicy, AuditRequest, ReleasedCell, Rule, UnitHasher, Verdict};
use sandbox_catalog::Variant;
use sandbox_runner::{Manifest, OutputTable, RunMode, RunRecord};

use crate::rules::{catalog, shops, street};

fn manifest(tables: &[&str]) -> String {
    let mut text = String::from(
        "name = \"differencing-test\"\nversion = \"1\"\ndatasets = [\"shops\"]\npurpose = { zh = \"测试\", en = \"test\" }\n",
    );
    for dim in tables {
        text.push_str(&format!(
            r#"
[[outputs]]
name = "by_{dim}"
zh = "表"
en = "table"
dimensions = [{{ name = "{dim}", source = "shops.{dim}" }}]
measures = [
    {{ name = "shops", statistic = "count", of = "shops" }},
    {{ name = "revenue", statistic = "sum", of = "shops.revenue" }},
]
"#
        ));
    }
    text
}

/// The true table of shops by `dim` (district or street), without district G (its negative
/// value would send the whole table to review).
fn table(dim: &str) -> OutputTable {
    let mut cells: BTreeMap<String, (i64, f64)> = BTreeMap::new();
    for (district, revenues) in shops().into_iter().filter(|(d, _)| *d != "G") {
        for (i, revenue) in revenues.into_iter().enumerate() {
            let key = if dim == "district" { district.to_owned() } else { street(district, i) };
            let cell = cells.entry(key).or_default();
            cell.0 += 1;
            cell.1 += revenue;
        }
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new(dim, DataType::Utf8, true),
        Field::new("shops", DataType::Int64, true),
        Field::new("revenue", DataType::Float64, true),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(cells.keys())),
        Arc::new(Int64Array::from_iter_values(cells.values().map(|c| c.0))),
        Arc::new(Float64Array::from_iter_values(cells.values().map(|c| c.1))),
    ];
    let batch = RecordBatch::try_new(Arc::clone(&schema), columns).unwrap();
    OutputTable { name: format!("by_{dim}"), schema, batch, ipc: Vec::new(), sha256: String::new() }
}

fn audit(dims: &[&str], hasher: &UnitHasher, earlier: &[ReleasedCell]) -> Audit {
    let text = manifest(dims);
    let manifest = Manifest::parse(&text).unwrap();
    let tables: Vec<OutputTable> = dims.iter().map(|d| table(d)).collect();
    let record = RunRecord::new(dims.join(",").as_bytes(), &text, RunMode::Production);
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    runtime
        .block_on(sandbox_audit::audit(AuditRequest {
            catalog: catalog(),
            variant: Variant::Real,
            manifest: &manifest,
            record: &record,
            tables: &tables,
            policy: &AuditPolicy::default(),
            hasher,
            earlier,
        }))
        .unwrap()
}

/// The row of `value` in table `t` of the audit, and the rules that found something in it.
fn row(audit: &Audit, t: usize, value: &str) -> (Verdict, Vec<Rule>) {
    let report = &audit.report.tables[t];
    let dim = if report.name == "by_district" { "district" } else { "street" };
    let r = table(dim)
        .batch
        .column(0)
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap()
        .iter()
        .position(|v| v == Some(value))
        .unwrap();
    let found: Vec<_> = report.findings.iter().filter(|f| f.row == Some(r)).collect();
    (found.iter().map(|f| f.verdict).max().unwrap_or(Verdict::Pass), found.iter().map(|f| f.rule).collect())
}

#[test]
fn two_releases_one_shop_apart_the_second_is_suppressed() {
    let hasher = UnitHasher::new(&[3; 32]);
    let first = audit(&["district"], &hasher, &[]);
    assert_eq!(row(&first, 0, "C"), (Verdict::Pass, vec![]));
    // The released cells carry sketches, never units.
    let c = first.cells.iter().find(|c| c.label.ends_with("[C]")).unwrap();
    assert_eq!((c.dataset.as_str(), c.sketch.size), ("shops", 11));
    assert!(!serde_json::to_string(c).unwrap().contains("S00"), "a sketch holds no unit id");

    let second = audit(&["street"], &hasher, &first.cells);
    let (verdict, rules) = row(&second, 0, "C1");
    assert_eq!((verdict, rules), (Verdict::Suppressed, vec![Rule::Differencing]));
    let finding = second.report.tables[0].findings.iter().find(|f| f.rule == Rule::Differencing).unwrap();
    assert!(finding.en.contains("by 1, fewer than 10") && finding.en.contains("by_district [C]"), "{}", finding.en);
    assert!(finding.zh.contains("仅相差 1 个"), "{}", finding.zh);
    // Street B1 holds exactly district B's shops: the same set says nothing new and passes.
    assert_eq!(row(&second, 0, "B1"), (Verdict::Pass, vec![]));
    // The suppressed cell is blank in the release and is not kept for later comparisons.
    assert!(!second.cells.iter().any(|c| c.label.ends_with("[C1]")));
    assert!(second.report.text().contains("differencing"));

    // With no history (or another key) the two releases cannot be compared: that is why the key
    // and the history are kept for every audit of the data.
    assert_eq!(row(&audit(&["street"], &hasher, &[]), 0, "C1"), (Verdict::Pass, vec![]));
}

#[test]
fn two_tables_of_one_run_one_shop_apart_the_later_is_suppressed() {
    let both = audit(&["district", "street"], &UnitHasher::new(&[3; 32]), &[]);
    assert_eq!(row(&both, 0, "C"), (Verdict::Pass, vec![]));
    assert_eq!(row(&both, 1, "C1"), (Verdict::Suppressed, vec![Rule::Differencing]));
    // What the run releases for later audits: every passing cell of both tables.
    let labels: Vec<&str> = both.cells.iter().map(|c| c.label.as_str()).collect();
    assert!(labels.iter().any(|l| l.ends_with("by_district [C]")), "{labels:?}");
    assert!(labels.iter().any(|l| l.ends_with("by_street [B1]")), "{labels:?}");
}
