//! The red teams' routes out of one run, each asserting the secure outcome: labels of cells a
//! single unit fills, cells of one firm behind many people, margins spelled differently, a
//! sensitive-value lookup through banding labels, extremes of ten units, tables held for review,
//! two splits of the same rows, a model's combinations of levels, and differential privacy on a
//! joined dataset.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, Int64Array, StringArray};
use sandbox_audit::{AuditPolicy, History, Rule, UnitHasher, Verdict};
use sandbox_catalog::Catalog;

use crate::rules::{MANIFEST, cell, module_rows, released, released_words, write_shops};
use crate::{audit_tables, no_rows, output_table};

/// Staff of firms: `staff` (one row per person: employer, amount) joined to `firms` (district,
/// industry).
fn staff_catalog(dir: &Path, staff: &[(&str, &str, f64)], firms: &[(&str, &str, &str)]) -> Catalog {
    let firms: Vec<(&str, &str, &str, &str)> = firms.iter().map(|(u, d, i)| (*u, *d, *i, "open")).collect();
    staff_catalog_with_status(dir, staff, &firms)
}

/// [`staff_catalog`], each firm with a plaintext status.
fn staff_catalog_with_status(dir: &Path, staff: &[(&str, &str, f64)], firms: &[(&str, &str, &str, &str)]) -> Catalog {
    let mut csv = String::from("person_id,employer,amount\n");
    for (person, employer, amount) in staff {
        writeln!(csv, "{person},{employer},{amount}").unwrap();
    }
    std::fs::write(dir.join("staff.csv"), &csv).unwrap();
    std::fs::write(dir.join("staff_twin.csv"), csv.replace("\nP", "\nQ")).unwrap();
    let mut csv = String::from("uscc,district,industry,status\n");
    for (uscc, district, industry, status) in firms {
        writeln!(csv, "{uscc},{district},{industry},{status}").unwrap();
    }
    std::fs::write(dir.join("firms.csv"), &csv).unwrap();
    std::fs::write(dir.join("firms_twin.csv"), csv.replace("\nF", "\nG")).unwrap();
    let entry = |id: &str, unit: &str, columns: &[(&str, &str, &str)]| {
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
    };
    let staff_entry = entry(
        "staff",
        "person_id",
        &[
            ("person_id", "string", "pseudonymized"),
            ("employer", "string", "pseudonymized"),
            ("amount", "float64", "aggregate_only"),
        ],
    );
    let firms_entry = entry(
        "firms",
        "uscc",
        &[
            ("uscc", "string", "pseudonymized"),
            ("district", "string", "group_by_only"),
            ("industry", "string", "group_by_only"),
            ("status", "string", "plaintext"),
        ],
    );
    std::fs::write(dir.join("staff.toml"), staff_entry).unwrap();
    std::fs::write(dir.join("firms.toml"), firms_entry).unwrap();
    Catalog::open(dir).unwrap()
}

const STAFF: &str = r#"
name = "staff"
version = "1"
datasets = ["staff", "firms"]
purpose = { zh = "测试", en = "test" }
[[outputs]]
name = "t"
zh = "表"
en = "table"
join = { from = "staff.employer", to = "firms.uscc" }
dimensions = [{ name = "district", source = "firms.district" }]
measures = [
    { name = "people", statistic = "count", of = "staff" },
    { name = "total", statistic = "sum", of = "staff.amount" },
]
"#;

#[test]
fn a_combination_one_unit_fills_and_an_empty_one_leave_alike() {
    // District B: one shop on street B9; the table is district × street.
    let dir = tempfile::tempdir().unwrap();
    let rows = (0..12)
        .map(|_| ("A".to_owned(), "A1".to_owned(), 10.0))
        .chain((0..12).map(|_| ("B".to_owned(), "B1".to_owned(), 10.0)))
        .chain([("B".to_owned(), "B9".to_owned(), 77.0)]);
    let catalog = write_shops(dir.path(), rows.collect::<Vec<_>>());
    let manifest = MANIFEST.replace(
        r#"dimensions = [{ name = "district", source = "shops.district" }]"#,
        r#"dimensions = [{ name = "district", source = "shops.district" }, { name = "street", source = "shops.street" }]"#,
    );
    let table = output_table(
        "t",
        vec![
            ("district", Arc::new(StringArray::from_iter_values(["A", "B"])) as ArrayRef),
            ("street", Arc::new(StringArray::from_iter_values(["A1", "B1"]))),
            ("shops", Arc::new(Int64Array::from_iter_values([12, 12]))),
            ("revenue", Arc::new(Float64Array::from_iter_values([120.0, 120.0]))),
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
    // Every combination of the labels leaves: A × B9 (empty) and B × B9 (one shop) alike.
    let keys: Vec<String> = audit.report.tables[0].cells.iter().map(|c| format!("{:?}", c.key)).collect();
    assert_eq!(keys.len(), 6, "{keys:?}");
    for key in ["A,B9", "B,B9", "A,B1", "B,A1"] {
        assert_eq!(released(&audit, 0, key, 2), None, "{key}");
        assert_eq!(cell(&audit, 0, key), (Verdict::Suppressed, vec![Rule::Threshold]), "{key}");
    }
    assert_eq!(released(&audit, 0, "B,B1", 2), Some(10.0), "{}", audit.report_text());
}

#[test]
fn a_cell_of_many_people_and_one_firm_is_withheld_for_the_firm() {
    // District X: twelve people, all working for firm F1; district Y: twelve people over
    // twelve firms.
    let dir = tempfile::tempdir().unwrap();
    let people: Vec<(String, String)> = (0..12)
        .map(|i| (format!("P{i:02}"), "F01".to_owned()))
        .chain((12..24).map(|i| (format!("P{i:02}"), format!("F{i:02}"))))
        .collect();
    let staff: Vec<(&str, &str, f64)> = people.iter().map(|(p, f)| (p.as_str(), f.as_str(), 100.0)).collect();
    let firm_ids: Vec<String> = (12..24).map(|i| format!("F{i:02}")).collect();
    let mut firms: Vec<(&str, &str, &str)> = vec![("F01", "X", "C")];
    firms.extend(firm_ids.iter().map(|f| (f.as_str(), "Y", "C")));
    let catalog = staff_catalog(dir.path(), &staff, &firms);
    let table = output_table(
        "t",
        vec![
            ("district", Arc::new(StringArray::from_iter_values(["X", "Y"])) as ArrayRef),
            ("people", Arc::new(Int64Array::from_iter_values([12, 12]))),
            ("total", Arc::new(Float64Array::from_iter_values([1200.0, 1200.0]))),
        ],
    );
    let audit = audit_tables(
        &catalog,
        STAFF,
        &[table],
        &AuditPolicy::default(),
        &UnitHasher::new(&[5; 32]),
        &History::default(),
    );
    assert!(audit.breach.is_empty(), "{}", audit.report_text());
    assert_eq!(cell(&audit, 0, "X"), (Verdict::Suppressed, vec![Rule::Threshold]), "{}", audit.report_text());
    assert!(audit.report_text().contains("privacy units of firms"), "{}", audit.report_text());
    assert_eq!(released(&audit, 0, "X", 2), None);
    assert_eq!(released(&audit, 0, "Y", 2), Some(1200.0));

    // A join whose key the other dataset repeats would count rows twice: refused.
    let dir = tempfile::tempdir().unwrap();
    let twice = staff_catalog(dir.path(), &staff, &[&firms[..], &[("F01", "Z", "D")]].concat());
    let request_table = module_rows(&[]);
    let _ = request_table;
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let record = sandbox_contract::RunRecord::new(b"m", STAFF, sandbox_contract::RunMode::Production);
    let manifest = sandbox_contract::Manifest::parse(STAFF).unwrap();
    let tables = [output_table(
        "t",
        vec![
            ("district", Arc::new(StringArray::from_iter_values(["Y"])) as ArrayRef),
            ("people", Arc::new(Int64Array::from_iter_values([12]))),
            ("total", Arc::new(Float64Array::from_iter_values([1200.0]))),
        ],
    )];
    let error = runtime
        .block_on(sandbox_audit::audit(sandbox_audit::AuditRequest {
            catalog: &twice,
            variant: sandbox_catalog::Variant::Real,
            manifest: &manifest,
            record: &record,
            tables: &tables,
            policy: &AuditPolicy::default(),
            hasher: &UnitHasher::new(&[5; 32]),
            earlier: &History::default(),
        }))
        .unwrap_err();
    assert!(error.to_string().contains("not unique"), "{error}");
}

#[test]
fn a_margin_spelled_with_other_filters_is_still_recomputed_and_its_mean_withheld() {
    // District H: street H1 dominated, H2 not (see rules.rs). The margin table writes its
    // filter twice and in another order, and asks for a mean too.
    let detail = r#"
[[outputs]]
name = "d"
zh = "表"
en = "table"
filters = [{ column = "shops.revenue", op = "ge", value = 1 }]
dimensions = [{ name = "district", source = "shops.district" }, { name = "street", source = "shops.street" }]
measures = [
    { name = "shops", statistic = "count", of = "shops" },
    { name = "revenue", statistic = "sum", of = "shops.revenue" },
]
[[outputs]]
name = "m"
zh = "表"
en = "table"
filters = [{ column = "shops.revenue", op = "lt", value = 40 }, { column = "shops.revenue", op = "ge", value = 1 }, { column = "shops.revenue", op = "lt", value = 40 }]
dimensions = [{ name = "district", source = "shops.district" }]
measures = [
    { name = "shops", statistic = "count", of = "shops" },
    { name = "revenue", statistic = "sum", of = "shops.revenue" },
    { name = "mean", statistic = "mean", of = "shops.revenue" },
]
"#;
    let manifest = format!(
        "name = \"margins\"\nversion = \"1\"\ndatasets = [\"shops\"]\npurpose = {{ zh = \"测试\", en = \"test\" }}\n{detail}"
    );
    // Shops of district H: one of 100 (dominating H1, but cut off by both tables' filters: not
    // here), so H1 holds 11 shops of 1, H2 ten of 10, H3 three of 2 (under the threshold) — and
    // district K: street K1 nine shops of 5 (under the threshold), K2 eleven of 5. Cells of
    // streets and districts that do not meet (K, H1) are empty: nothing to protect there.
    let dir = tempfile::tempdir().unwrap();
    let rows = (0..11)
        .map(|_| ("H".to_owned(), "H1".to_owned(), 1.0))
        .chain((0..10).map(|_| ("H".to_owned(), "H2".to_owned(), 10.0)))
        .chain((0..3).map(|_| ("H".to_owned(), "H3".to_owned(), 2.0)))
        .chain((0..9).map(|_| ("K".to_owned(), "K1".to_owned(), 5.0)))
        .chain((0..11).map(|_| ("K".to_owned(), "K2".to_owned(), 5.0)));
    let catalog = write_shops(dir.path(), rows.collect::<Vec<_>>());
    // The module writes nothing: it claims nothing, and the host's tables leave.
    let empty = |name: &str, dims: &[&str], means: bool| {
        let mut columns: Vec<(&str, ArrayRef)> =
            dims.iter().map(|d| (*d, Arc::new(StringArray::from(Vec::<String>::new())) as ArrayRef)).collect();
        columns.push(("shops", Arc::new(Int64Array::from(Vec::<i64>::new()))));
        columns.push(("revenue", Arc::new(Float64Array::from(Vec::<f64>::new()))));
        if means {
            columns.push(("mean", Arc::new(Float64Array::from(Vec::<f64>::new()))));
        }
        output_table(name, columns)
    };
    let tables = [empty("d", &["district", "street"], false), empty("m", &["district"], true)];
    let audit = audit_tables(
        &catalog,
        &manifest,
        &tables,
        &AuditPolicy::default(),
        &UnitHasher::new(&[5; 32]),
        &History::default(),
    );
    assert!(audit.breach.is_empty(), "{}", audit.report_text());
    assert_eq!(released(&audit, 0, "K,K1", 2), None, "nine shops: suppressed");
    // K is within nine shops of K2: withheld whole (differencing), its mean with it.
    for j in 1..=3 {
        assert_eq!(released(&audit, 1, "K", j), None, "{}", audit.report_text());
    }
    // H's count and sum are those of its released streets; its mean, which together with them
    // would give a hidden cell back, is withheld.
    assert_eq!(released(&audit, 1, "H", 1), Some(20.0));
    assert_eq!(released(&audit, 1, "H", 2), Some(111.0));
    assert_eq!(released(&audit, 1, "H", 3), None, "{}", audit.report_text());
    assert!(cell(&audit, 1, "H").1.contains(&Rule::SecondarySuppression));
}

#[test]
fn banding_labels_are_never_looked_up_in_the_data() {
    // A label equal to an owner's name (a forbidden column): looking it up would tell the
    // operator whether that person owns a shop. It is not looked up; an identifier's shape
    // alone fails a label, whoever it belongs to.
    let dir = tempfile::tempdir().unwrap();
    let catalog =
        write_shops(dir.path(), (0..24).map(|i| ("A".to_owned(), "A1".to_owned(), i as f64)).collect::<Vec<_>>());
    let banded = |labels: &str| {
        MANIFEST.replace(
            r#"dimensions = [{ name = "district", source = "shops.district" }]"#,
            &format!(r#"dimensions = [{{ name = "band", source = "shops.revenue", banding = {{ kind = "bins", edges = [12], labels = {labels} }} }}]"#),
        )
    };
    let outcome = |labels: &str| {
        let audit = audit_tables(
            &catalog,
            &banded(labels),
            &[module_rows(&[])],
            &AuditPolicy::default(),
            &UnitHasher::new(&[5; 32]),
            &History::default(),
        );
        (audit.report.outcome, released_words(&audit))
    };
    let (owner, _) = outcome(r#"["店主3", "other"]"#);
    let (nobody, _) = outcome(r#"["店主999", "other"]"#);
    assert_eq!(owner, nobody, "the same outcome whether or not the label is someone's");
    assert_eq!(owner, Verdict::Pass);
    let (id, words) = outcome(r#"["11010519491231002X", "other"]"#);
    assert_eq!(id, Verdict::Fail);
    assert!(words.contains("identifier"), "{words}");
}

/// Twelve firms in district Y, the last with twelve people and "closed", the others five each.
fn twelve_firms(dir: &Path) -> Catalog {
    let mut people: Vec<(String, String)> = Vec::new();
    for f in 0..12 {
        for p in 0..if f == 11 { 12 } else { 5 } {
            people.push((format!("P{f:02}{p:02}"), format!("F{f:02}")));
        }
    }
    let staff: Vec<(&str, &str, f64)> = people.iter().map(|(p, f)| (p.as_str(), f.as_str(), 100.0)).collect();
    let ids: Vec<String> = (0..12).map(|f| format!("F{f:02}")).collect();
    let firms: Vec<(&str, &str, &str, &str)> =
        ids.iter().enumerate().map(|(i, f)| (f.as_str(), "Y", "C", if i == 11 { "closed" } else { "open" })).collect();
    staff_catalog_with_status(dir, &staff, &firms)
}

#[test]
fn two_joined_tables_one_firm_apart_are_caught_by_the_firm_s_units() {
    // Without the closed firm the people differ by twelve (not close), the firms by one.
    let dir = tempfile::tempdir().unwrap();
    let catalog = twelve_firms(dir.path());
    let both = STAFF.replace("name = \"t\"", "name = \"a\"")
        + &STAFF[STAFF.find("[[outputs]]").unwrap()..].replace("name = \"t\"", "name = \"b\"").replace(
            "join = {",
            "filters = [{ column = \"firms.status\", op = \"ne\", value = \"closed\" }]\njoin = {",
        );
    let tables = [no_rows("a", &["district"], &["people", "total"]), no_rows("b", &["district"], &["people", "total"])];
    let audit = audit_tables(
        &catalog,
        &both,
        &tables,
        &AuditPolicy::default(),
        &UnitHasher::new(&[5; 32]),
        &History::default(),
    );
    assert!(audit.breach.is_empty(), "{}", audit.report_text());
    assert_eq!(released(&audit, 0, "Y", 2), Some(6700.0));
    assert_eq!(cell(&audit, 1, "Y"), (Verdict::Suppressed, vec![Rule::Differencing]), "{}", audit.report_text());
    assert!(audit.report_text().contains("privacy units of firms differ"), "{}", audit.report_text());
}

#[test]
fn a_margin_over_a_detail_with_no_count_is_recomputed_too() {
    // District K: street K1 nine shops (under the threshold), K2 and K3 eleven each; sums only.
    // (With two streets the margin would be within nine shops of K2: differencing.)
    let dir = tempfile::tempdir().unwrap();
    let rows = (0..9)
        .map(|_| ("K".to_owned(), "K1".to_owned(), 5.0))
        .chain((0..11).map(|_| ("K".to_owned(), "K2".to_owned(), 7.0)))
        .chain((0..11).map(|_| ("K".to_owned(), "K3".to_owned(), 7.0)));
    let catalog = write_shops(dir.path(), rows.collect::<Vec<_>>());
    let manifest = r#"
name = "margins"
version = "1"
datasets = ["shops"]
purpose = { zh = "测试", en = "test" }
[[outputs]]
name = "d"
zh = "表"
en = "table"
dimensions = [{ name = "district", source = "shops.district" }, { name = "street", source = "shops.street" }]
measures = [{ name = "revenue", statistic = "sum", of = "shops.revenue" }]
[[outputs]]
name = "m"
zh = "表"
en = "table"
dimensions = [{ name = "district", source = "shops.district" }]
measures = [{ name = "revenue", statistic = "sum", of = "shops.revenue" }]
"#;
    let tables = [no_rows("d", &["district", "street"], &["revenue"]), no_rows("m", &["district"], &["revenue"])];
    let audit = audit_tables(
        &catalog,
        manifest,
        &tables,
        &AuditPolicy::default(),
        &UnitHasher::new(&[5; 32]),
        &History::default(),
    );
    assert_eq!(released(&audit, 0, "K,K1", 2), None);
    assert_eq!(released(&audit, 0, "K,K2", 2), Some(77.0));
    // Not 199: the margin is K2's and K3's, so margin − K2 − K3 gives nothing.
    assert_eq!(released(&audit, 1, "K", 1), Some(154.0), "{}", audit.report_text());
}

#[test]
fn a_model_level_of_one_firm_fails_and_so_does_a_model_a_few_units_from_another() {
    // District X: twelve people of one firm; district Y: twelve firms.
    let dir = tempfile::tempdir().unwrap();
    let mut people: Vec<(String, String, f64)> =
        (0..12).map(|i| (format!("P{i:02}"), "F01".to_owned(), 100.0 + i as f64)).collect();
    people.extend((12..36).map(|i| (format!("P{i:02}"), format!("F{:02}", 12 + i % 12), 50.0 + i as f64)));
    let staff: Vec<(&str, &str, f64)> = people.iter().map(|(p, f, a)| (p.as_str(), f.as_str(), *a)).collect();
    let ids: Vec<String> = (12..24).map(|f| format!("F{f:02}")).collect();
    let mut firms: Vec<(&str, &str, &str)> = vec![("F01", "X", "C")];
    firms.extend(ids.iter().map(|f| (f.as_str(), "Y", "C")));
    let catalog = staff_catalog(dir.path(), &staff, &firms);
    let model = r#"
name = "model"
version = "1"
datasets = ["staff", "firms"]
purpose = { zh = "测试", en = "test" }
[[outputs]]
name = "fit"
zh = "表"
en = "table"
model = "ols"
join = { from = "staff.employer", to = "firms.uscc" }
dimensions = [{ name = "term", terms = ["firms.district"] }]
measures = [
    { name = "estimate", statistic = "coefficient", of = "staff.amount" },
    { name = "n", statistic = "count", of = "staff" },
]
"#;
    let table = no_rows("fit", &["term"], &["estimate", "n"]);
    let audit = audit_tables(
        &catalog,
        model,
        &[table],
        &AuditPolicy::default(),
        &UnitHasher::new(&[5; 32]),
        &History::default(),
    );
    assert_eq!(audit.report.outcome, Verdict::Fail, "{}", audit.report_text());
    assert!(
        audit.report_text().contains("level district=X rests on 1 privacy units of firms"),
        "{}",
        audit.report_text()
    );
    assert!(audit.released.is_empty());
}

/// A manifest of `shops` tables.
fn shops_manifest(outputs: &str) -> String {
    format!(
        "name = \"shops\"\nversion = \"1\"\ndatasets = [\"shops\"]\npurpose = {{ zh = \"测试\", en = \"test\" }}\n{outputs}"
    )
}

/// One `[[outputs]]` of shops: its dimensions and measures as TOML arrays' contents, and any
/// other keys.
fn shops_output(name: &str, dimensions: &str, measures: &str, extra: &str) -> String {
    format!(
        "[[outputs]]\nname = \"{name}\"\nzh = \"表\"\nen = \"table\"\n{extra}\ndimensions = [{dimensions}]\nmeasures = [{measures}]\n"
    )
}

const DISTRICT: &str = r#"{ name = "district", source = "shops.district" }"#;
const STREET: &str = r#"{ name = "street", source = "shops.street" }"#;
const COUNT_SUM: &str = r#"{ name = "shops", statistic = "count", of = "shops" }, { name = "revenue", statistic = "sum", of = "shops.revenue" }"#;

#[test]
fn an_extreme_leaves_only_where_ten_units_stand_beyond_it_on_both_sides() {
    // Shops of revenue 1, 2, … n in districts of n = 10, 18, 19 and 20 shops. Of ten, the
    // tenth smallest is the largest shop's own value, and the tenth largest the smallest's.
    let dir = tempfile::tempdir().unwrap();
    let rows = [("A", 10), ("B", 18), ("C", 19), ("D", 20)]
        .into_iter()
        .flat_map(|(d, n)| (1..=n).map(move |i| (d.to_owned(), format!("{d}1"), i as f64)));
    let catalog = write_shops(dir.path(), rows.collect::<Vec<_>>());
    let measures = r#"{ name = "shops", statistic = "count", of = "shops" }, { name = "lo", statistic = "min", of = "shops.revenue" }, { name = "hi", statistic = "max", of = "shops.revenue" }"#;
    let manifest = shops_manifest(&shops_output("t", DISTRICT, measures, ""));
    let table = no_rows("t", &["district"], &["shops", "lo", "hi"]);
    let audit = audit_tables(
        &catalog,
        &manifest,
        &[table],
        &AuditPolicy::default(),
        &UnitHasher::new(&[5; 32]),
        &History::default(),
    );
    assert!(audit.breach.is_empty(), "{}", audit.report_text());
    let extremes = |key: &str| (released(&audit, 0, key, 2), released(&audit, 0, key, 3));
    // Ten and eighteen shops: fewer than ten stand beyond the figure on its other side.
    for key in ["A", "B"] {
        assert_eq!(extremes(key), (None, None), "{key}: {}", audit.report_text());
        assert!(cell(&audit, 0, key).1.contains(&Rule::Extremes));
        assert_eq!(released(&audit, 0, key, 1), Some(if key == "A" { 10.0 } else { 20.0 }));
    }
    // Nineteen: the tenth from either end is the same shop's 10, reached by ten from each side.
    assert_eq!(extremes("C"), (Some(10.0), Some(10.0)));
    assert_eq!(extremes("D"), (Some(10.0), Some(11.0)));
}

#[test]
fn a_table_held_for_review_is_differenced_and_recomputed_as_if_it_left() {
    // District X: twelve shops of 10 and one of 60; district H as in rules.rs (street H1
    // dominated by one shop of 100, H2 ten shops of 10). Every table of shops goes to review.
    let dir = tempfile::tempdir().unwrap();
    let rows = (0..12)
        .map(|_| ("X".to_owned(), "X1".to_owned(), 10.0))
        .chain([("X".to_owned(), "X1".to_owned(), 60.0), ("H".to_owned(), "H1".to_owned(), 100.0)])
        .chain((0..11).map(|_| ("H".to_owned(), "H1".to_owned(), 1.0)))
        .chain((0..10).map(|_| ("H".to_owned(), "H2".to_owned(), 10.0)));
    let catalog = write_shops(dir.path(), rows.collect::<Vec<_>>());
    let policy = AuditPolicy::parse("[datasets.shops]\nreview_all = true\n").unwrap();
    let filter = r#"filters = [{ column = "shops.revenue", op = "lt", value = 40 }]"#;
    let manifest = shops_manifest(
        &[
            shops_output("m", DISTRICT, COUNT_SUM, ""),
            shops_output("c", DISTRICT, COUNT_SUM, filter),
            shops_output("d", &format!("{DISTRICT}, {STREET}"), COUNT_SUM, ""),
        ]
        .concat(),
    );
    let tables = [
        no_rows("m", &["district"], &["shops", "revenue"]),
        no_rows("c", &["district"], &["shops", "revenue"]),
        no_rows("d", &["district", "street"], &["shops", "revenue"]),
    ];
    let audit = audit_tables(&catalog, &manifest, &tables, &policy, &UnitHasher::new(&[5; 32]), &History::default());
    assert_eq!(audit.held(), ["m", "c", "d"], "{}", audit.report_text());
    // c's X is one shop short of m's X, which waits for review: still withheld.
    assert_eq!(cell(&audit, 1, "X"), (Verdict::Suppressed, vec![Rule::Differencing]), "{}", audit.report_text());
    // What leaves once reviewers approve all three: m's H is the sum of d's released streets.
    use sandbox_audit::review::Approval;
    let approvals: Vec<Approval> = ["r1", "r2"]
        .into_iter()
        .flat_map(|reviewer| {
            ["m", "c", "d"].map(|table| Approval {
                reviewer: reviewer.to_owned(),
                report_id: audit.report_id(),
                table: table.to_owned(),
            })
        })
        .collect();
    let (tables, _) = audit.approve("operator.acme", &approvals).unwrap();
    let value = |t: usize, key: &str, column: usize| {
        let r = crate::rules::row_of(&audit, t, key);
        let batch = &tables.iter().find(|x| x.name == audit.report.tables[t].name).unwrap().batch;
        let values =
            datafusion::arrow::compute::cast(batch.column(column), &datafusion::arrow::datatypes::DataType::Float64)
                .unwrap();
        let values = values.as_any().downcast_ref::<Float64Array>().unwrap();
        arrow_array::Array::is_valid(values, r).then(|| values.value(r))
    };
    assert_eq!(value(2, "H,H1", 3), None, "dominated");
    assert_eq!(value(2, "H,H2", 3), Some(100.0));
    assert_eq!(value(0, "H", 2), Some(100.0), "not 211: m − d's H2 would give H1 back");
    assert_eq!(value(1, "X", 2), None);
}

#[test]
fn a_second_split_of_the_same_rows_does_not_add_up_to_a_hidden_cell() {
    // District Q: street Q1 one shop of 1000 and eleven of 1 (dominated), Q2 ten shops of 1
    // and thirty of 40. By revenue band, Q's shops are all shown — below 5 the twenty-one of
    // 1, above it the one of 1000 with the thirty — and no band is within ten shops of Q2. The
    // bands added up, less Q2, would give Q1: Q's bands are withheld instead, and the margin by
    // district is Q2's alone. District R (twelve shops of 10, one street, one band) is
    // unaffected.
    let dir = tempfile::tempdir().unwrap();
    let shop = |district: &str, street: &str, revenue: f64| (district.to_owned(), street.to_owned(), revenue);
    let rows = [shop("Q", "Q1", 1000.0)]
        .into_iter()
        .chain((0..11).map(|_| shop("Q", "Q1", 1.0)))
        .chain((0..10).map(|_| shop("Q", "Q2", 1.0)))
        .chain((0..30).map(|_| shop("Q", "Q2", 40.0)))
        .chain((0..12).map(|_| shop("R", "R1", 10.0)));
    let catalog = write_shops(dir.path(), rows.collect::<Vec<_>>());
    let bands = r#"{ name = "band", source = "shops.revenue", banding = { kind = "bins", edges = [5], labels = ["low", "high"] } }"#;
    let manifest = shops_manifest(
        &[
            shops_output("s", &format!("{DISTRICT}, {STREET}"), COUNT_SUM, ""),
            shops_output("b", &format!("{DISTRICT}, {bands}"), COUNT_SUM, ""),
            shops_output("m", DISTRICT, COUNT_SUM, ""),
        ]
        .concat(),
    );
    let tables = [
        no_rows("s", &["district", "street"], &["shops", "revenue"]),
        no_rows("b", &["district", "band"], &["shops", "revenue"]),
        no_rows("m", &["district"], &["shops", "revenue"]),
    ];
    let audit = audit_tables(
        &catalog,
        &manifest,
        &tables,
        &AuditPolicy::default(),
        &UnitHasher::new(&[5; 32]),
        &History::default(),
    );
    let text = audit.report_text();
    assert!(audit.breach.is_empty(), "{text}");
    // Columns: the dimensions, then shops and revenue.
    assert!(cell(&audit, 0, "Q,Q1").1.contains(&Rule::Dominance), "{text}");
    assert_eq!(released(&audit, 0, "Q,Q2", 3), Some(1210.0));
    for key in ["Q,low", "Q,high"] {
        assert_eq!((released(&audit, 1, key, 2), released(&audit, 1, key, 3)), (None, None), "{key}: {text}");
        assert_eq!(cell(&audit, 1, key).1, [Rule::SecondarySuppression, Rule::SecondarySuppression], "{text}");
    }
    // Q is the total of the bands, both withheld to protect Q1: recomputed from the streets it
    // would be 1210, from the bands nothing — two recomputations that disagree leave it blank.
    assert_eq!(released(&audit, 2, "Q", 2), None, "{text}");
    for (t, key) in [(0, "R,R1"), (1, "R,high")] {
        assert_eq!(released(&audit, t, key, 3), Some(120.0), "{key}: {text}");
    }
    assert_eq!(released(&audit, 2, "R", 2), Some(120.0));
}

#[test]
fn a_model_whose_combination_of_levels_is_one_firm_fails() {
    // Districts X and Y, firms open and closed: twelve one-person firms in each combination
    // but (Y, closed), which is one firm of twelve people. Every level rests on at least
    // thirteen firms; the combination, whose mean the coefficients may pin down, on one.
    let dir = tempfile::tempdir().unwrap();
    let mut firms: Vec<(String, &str, &str, &str)> = Vec::new();
    let mut people: Vec<(String, String, f64)> = Vec::new();
    for (district, status) in [("X", "open"), ("Y", "open"), ("X", "closed")] {
        for f in 0..12 {
            let id = format!("F{district}{status}{f:02}");
            people.push((format!("P{district}{status}{f:02}"), id.clone(), 100.0 + 7.0 * f as f64));
            firms.push((id, district, "C", status));
        }
    }
    firms.push(("FK".to_owned(), "Y", "C", "closed"));
    people.extend((0..12).map(|p| (format!("PK{p:02}"), "FK".to_owned(), 150.0 + 3.0 * p as f64)));
    let staff: Vec<(&str, &str, f64)> = people.iter().map(|(p, f, a)| (p.as_str(), f.as_str(), *a)).collect();
    let firms: Vec<(&str, &str, &str, &str)> = firms.iter().map(|(u, d, i, s)| (u.as_str(), *d, *i, *s)).collect();
    let catalog = staff_catalog_with_status(dir.path(), &staff, &firms);
    let model = r#"
name = "model"
version = "1"
datasets = ["staff", "firms"]
purpose = { zh = "测试", en = "test" }
[[outputs]]
name = "fit"
zh = "表"
en = "table"
model = "ols"
join = { from = "staff.employer", to = "firms.uscc" }
dimensions = [{ name = "term", terms = ["firms.district", "firms.status"] }]
measures = [
    { name = "estimate", statistic = "coefficient", of = "staff.amount" },
    { name = "n", statistic = "count", of = "staff" },
]
"#;
    let table = no_rows("fit", &["term"], &["estimate", "n"]);
    let audit = audit_tables(
        &catalog,
        model,
        &[table],
        &AuditPolicy::default(),
        &UnitHasher::new(&[5; 32]),
        &History::default(),
    );
    let text = audit.report_text();
    assert_eq!(audit.report.outcome, Verdict::Fail, "{text}");
    assert!(text.contains("level district=Y, status=closed rests on 1 privacy units of firms"), "{text}");
    assert!(!text.contains("level district=Y rests") && !text.contains("level status=closed rests"), "{text}");
    assert!(audit.released.is_empty());
}

#[test]
fn a_dataset_under_differential_privacy_is_never_joined_for_its_columns() {
    // firms is released under differential privacy; a table of staff joined to firms would
    // describe firms without any noise.
    let dir = tempfile::tempdir().unwrap();
    let catalog = twelve_firms(dir.path());
    let policy = AuditPolicy::parse(
        "[datasets.firms.dp]\nrho_per_run = 1.0\noperator_budget = 1.0\ndataset_budget = 1.0\nsum_bound = 1000.0\n",
    )
    .unwrap();
    let table = no_rows("t", &["district"], &["people", "total"]);
    let audit = audit_tables(&catalog, STAFF, &[table], &policy, &UnitHasher::new(&[5; 32]), &History::default());
    assert_eq!(audit.report.outcome, Verdict::Fail, "{}", audit.report_text());
    let finding = audit.report.tables[0].findings.iter().find(|f| f.rule == Rule::DifferentialPrivacy).unwrap();
    assert!(finding.en.contains("firms is released only under differential privacy"), "{}", finding.en);
    assert!(audit.released.is_empty());
}

#[test]
fn noise_does_not_bring_back_a_figure_a_rule_withheld() {
    // District N: twelve shops, two with a revenue: the count leaves (noised), the sum of two
    // shops' revenue does not, noised or not.
    let dir = tempfile::tempdir().unwrap();
    let rows = (0..12).map(|i| ("N".to_owned(), "N1".to_owned(), if i < 2 { 10.0 } else { 999.0 }));
    write_shops(dir.path(), rows.collect::<Vec<_>>());
    let csv = std::fs::read_to_string(dir.path().join("data/shops.csv")).unwrap();
    std::fs::write(dir.path().join("data/shops.csv"), csv.replace(",999,", ",,")).unwrap();
    let catalog = Catalog::open(dir.path()).unwrap();
    let policy = AuditPolicy::parse(
        "[datasets.shops.dp]\nrho_per_run = 1e9\noperator_budget = 1e9\ndataset_budget = 1e9\nsum_bound = 50.0\n",
    )
    .unwrap();
    let audit =
        audit_tables(&catalog, MANIFEST, &[module_rows(&[])], &policy, &UnitHasher::new(&[5; 32]), &History::default());
    assert_eq!(released(&audit, 0, "N", 1), Some(10.0), "{}", audit.report_text());
    assert_eq!(released(&audit, 0, "N", 2), None, "{}", audit.report_text());
}
