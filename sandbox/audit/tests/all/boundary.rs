//! The red team's routes out of one run, each asserting the secure outcome: labels of cells a
//! single unit fills, cells of one firm behind many people, margins spelled differently, and a
//! sensitive-value lookup through banding labels.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, Int64Array, StringArray};
use sandbox_audit::{AuditPolicy, Rule, UnitHasher, Verdict};
use sandbox_catalog::Catalog;

use crate::rules::{MANIFEST, cell, module_rows, released, released_words, write_shops};
use crate::{audit_tables, output_table};

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
    let audit = audit_tables(&catalog, &manifest, &[table], &AuditPolicy::default(), &UnitHasher::new(&[5; 32]), &[]);
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
    let audit = audit_tables(&catalog, STAFF, &[table], &AuditPolicy::default(), &UnitHasher::new(&[5; 32]), &[]);
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
    let record = sandbox_runner::RunRecord::new(b"m", STAFF, sandbox_runner::RunMode::Production);
    let manifest = sandbox_runner::Manifest::parse(STAFF).unwrap();
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
            earlier: &[],
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
    // here), so H1 holds 11 shops of 1, H2 ten of 10 — and district K: street K1 nine shops of
    // 5 (under the threshold), K2 eleven of 5.
    let dir = tempfile::tempdir().unwrap();
    let rows = (0..11)
        .map(|_| ("H".to_owned(), "H1".to_owned(), 1.0))
        .chain((0..10).map(|_| ("H".to_owned(), "H2".to_owned(), 10.0)))
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
    let audit = audit_tables(&catalog, &manifest, &tables, &AuditPolicy::default(), &UnitHasher::new(&[5; 32]), &[]);
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
    assert_eq!(released(&audit, 1, "H", 3), None);
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
            &[],
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

fn no_rows(name: &str, dims: &[&str], measures: &[&str]) -> sandbox_runner::OutputTable {
    let mut columns: Vec<(&str, ArrayRef)> =
        dims.iter().map(|d| (*d, Arc::new(StringArray::from(Vec::<String>::new())) as ArrayRef)).collect();
    for m in measures {
        if *m == "people" || *m == "n" {
            columns.push((m, Arc::new(Int64Array::from(Vec::<i64>::new()))));
        } else {
            columns.push((m, Arc::new(Float64Array::from(Vec::<f64>::new()))));
        }
    }
    output_table(name, columns)
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
    let audit = audit_tables(&catalog, &both, &tables, &AuditPolicy::default(), &UnitHasher::new(&[5; 32]), &[]);
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
    let audit = audit_tables(&catalog, manifest, &tables, &AuditPolicy::default(), &UnitHasher::new(&[5; 32]), &[]);
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
    let audit = audit_tables(&catalog, model, &[table], &AuditPolicy::default(), &UnitHasher::new(&[5; 32]), &[]);
    assert_eq!(audit.report.outcome, Verdict::Fail, "{}", audit.report_text());
    assert!(
        audit.report_text().contains("level district=X rests on 1 privacy units of firms"),
        "{}",
        audit.report_text()
    );
    assert!(audit.released.is_empty());
}
