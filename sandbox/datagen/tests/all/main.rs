//! Integration tests of the generator: what it writes is valid, consistent across datasets,
//! skewed where the audit needs skew, and the same bytes for the same seed.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::{Date32Type, Decimal128Type};
use arrow_array::{Array, RecordBatch};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use sandbox_catalog::{Catalog, Classification, Grain};
use sandbox_datagen::ids::{is_valid_citizen_id, is_valid_uscc};
use sandbox_datagen::{Config, DatagenError, generate};

const DISTRICTS: [&str; 9] = ["150202", "150203", "150204", "150205", "150206", "150207", "150221", "150222", "150223"];

fn config(out: &Path, scale: u64, seed: u64) -> Config {
    Config { out: out.to_path_buf(), scale, seed, twin_scale: Some(300), progress: false }
}

fn read(path: &Path) -> Vec<RecordBatch> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap().build().unwrap();
    reader.map(Result::unwrap).collect()
}

fn strings(batches: &[RecordBatch], column: &str) -> Vec<String> {
    batches
        .iter()
        .flat_map(|b| {
            let a = b.column_by_name(column).unwrap().as_string::<i32>().clone();
            (0..a.len()).map(move |i| a.value(i).to_owned())
        })
        .collect()
}

#[test]
fn the_same_seed_writes_the_same_bytes_and_another_seed_does_not() {
    let (a, b, c) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    generate(&config(a.path(), 2_000, 9)).unwrap();
    generate(&config(b.path(), 2_000, 9)).unwrap();
    generate(&config(c.path(), 2_000, 10)).unwrap();
    for file in [
        "persons.toml",
        "data/persons.parquet",
        "data/enterprises.parquet",
        "data/social_insurance.parquet",
        "data/utility_usage.parquet",
        "twin/persons.parquet",
        "twin/social_insurance.parquet",
    ] {
        let bytes = |dir: &Path| std::fs::read(dir.join(file)).unwrap();
        assert_eq!(bytes(a.path()), bytes(b.path()), "{file}");
        if file.ends_with(".parquet") {
            assert_ne!(bytes(a.path()), bytes(c.path()), "{file}");
        }
    }
}

#[test]
fn the_output_is_a_valid_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let summary = generate(&config(dir.path(), 1_500, 1)).unwrap();
    let report = sandbox_catalog::check(dir.path()).unwrap();
    assert!(report.problems.is_empty(), "{:#?}", report.problems);
    assert_eq!(report.entries, 4);
    let persons = summary.datasets.iter().find(|d| d.id == "persons").unwrap();
    assert_eq!((persons.rows, persons.twin_rows), (1_500, 300));
}

#[test]
fn entries_publish_classifications() {
    let dir = tempfile::tempdir().unwrap();
    generate(&config(dir.path(), 1_000, 12)).unwrap();
    let catalog = Catalog::open(dir.path()).unwrap();
    let calendar = Classification::Grains(vec![Grain::Year, Grain::Quarter, Grain::Month]);
    let edges = |e: &[f64]| Classification::Edges(e.to_vec());
    let expected = [
        ("persons", "birth_date", calendar.clone()),
        ("enterprises", "established", calendar),
        ("enterprises", "registered_capital", edges(&[10.0, 50.0, 100.0, 500.0, 1000.0, 5000.0])),
        ("social_insurance", "contribution_base", edges(&[5000.0, 6000.0, 8000.0, 12000.0, 20000.0])),
        ("social_insurance", "amount", edges(&[1200.0, 1500.0, 2000.0, 3000.0, 5000.0])),
        ("utility_usage", "water_m3", edges(&[2.0, 5.0, 10.0, 15.0, 20.0])),
        ("utility_usage", "electricity_kwh", edges(&[100.0, 200.0, 300.0, 400.0, 500.0])),
        ("utility_usage", "gas_m3", edges(&[10.0, 20.0, 30.0, 50.0, 80.0])),
    ];
    let mut classified = 0;
    for d in &catalog.datasets {
        for c in &d.columns {
            let published = expected.iter().find(|(id, column, _)| *id == d.id && *column == c.name);
            assert_eq!(c.classification.as_ref(), published.map(|p| &p.2), "{}.{}", d.id, c.name);
            classified += usize::from(c.classification.is_some());
        }
    }
    assert_eq!(classified, expected.len());
    let text = std::fs::read_to_string(dir.path().join("enterprises.toml")).unwrap();
    assert!(text.contains("classification = { edges = [10, 50, 100, 500, 1000, 5000] }  # 公开分类"), "{text}");
    assert!(
        text.contains(
            "classification = { grains = [\"year\", \"quarter\", \"month\"] }  # 公开分类：按年、季度、月发布"
        )
    );
}

#[test]
fn citizen_ids_are_valid_unique_and_agree_with_the_person() {
    let dir = tempfile::tempdir().unwrap();
    generate(&config(dir.path(), 20_000, 3)).unwrap();
    let batches = read(&dir.path().join("data/persons.parquet"));
    let ids = strings(&batches, "citizen_id");
    let genders = strings(&batches, "gender");
    let hukou = strings(&batches, "hukou_type");
    let births: Vec<i32> = batches
        .iter()
        .flat_map(|b| b.column_by_name("birth_date").unwrap().as_primitive::<Date32Type>().values().to_vec())
        .collect();
    assert_eq!(ids.len(), 20_000);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ids.len(), "unique");
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
    for i in 0..ids.len() {
        let id = &ids[i];
        assert!(is_valid_citizen_id(id), "{id}");
        let birth = epoch + chrono::TimeDelta::days(i64::from(births[i]));
        assert_eq!(&id[6..14], birth.format("%Y%m%d").to_string(), "birth date embedded: {id}");
        let sequence: u32 = id[14..17].parse().unwrap();
        assert_eq!(sequence % 2 == 1, genders[i] == "男", "odd sequence for men: {id}");
        let local = hukou[i].starts_with("本地");
        assert_eq!(local, id.starts_with("1502"), "local registration, local address code: {id} {}", hukou[i]);
    }
}

#[test]
fn credit_codes_are_valid_unique_and_carry_the_district() {
    let dir = tempfile::tempdir().unwrap();
    generate(&config(dir.path(), 30_000, 4)).unwrap();
    let batches = read(&dir.path().join("data/enterprises.parquet"));
    let codes = strings(&batches, "uscc");
    let districts = strings(&batches, "district");
    assert_eq!(codes.len(), 2_000);
    assert_eq!(codes.iter().collect::<HashSet<_>>().len(), codes.len(), "unique");
    for (code, district) in codes.iter().zip(&districts) {
        assert!(is_valid_uscc(code), "{code}");
        assert_eq!(&code[2..8], district, "registration district embedded: {code}");
        assert!(DISTRICTS.contains(&district.as_str()));
    }
}

#[test]
fn contributions_reference_real_people_and_employers() {
    let dir = tempfile::tempdir().unwrap();
    generate(&config(dir.path(), 5_000, 5)).unwrap();
    let people: HashSet<String> =
        strings(&read(&dir.path().join("data/persons.parquet")), "citizen_id").into_iter().collect();
    let firms: HashSet<String> =
        strings(&read(&dir.path().join("data/enterprises.parquet")), "uscc").into_iter().collect();
    let insurance = read(&dir.path().join("data/social_insurance.parquet"));
    let persons = strings(&insurance, "person_id");
    assert!(persons.len() > 5_000, "most working-age people contribute for most months");
    assert!(persons.iter().all(|p| people.contains(p)));
    assert!(strings(&insurance, "employer_uscc").iter().all(|e| firms.contains(e)));
    for b in &insurance {
        let base = b.column_by_name("contribution_base").unwrap().as_primitive::<Decimal128Type>();
        let amount = b.column_by_name("amount").unwrap().as_primitive::<Decimal128Type>();
        for i in 0..b.num_rows() {
            assert!((449_400..=2_247_000).contains(&base.value(i)), "base within floor and ceiling");
            assert_eq!(amount.value(i), (base.value(i) as f64 * 0.24).round() as i128);
        }
    }
}

#[test]
fn some_cells_are_dominated_and_some_districts_small() {
    let dir = tempfile::tempdir().unwrap();
    generate(&config(dir.path(), 30_000, 6)).unwrap();
    let firms = read(&dir.path().join("data/enterprises.parquet"));
    let industry = strings(&firms, "industry");
    let district = strings(&firms, "district");
    let capital: Vec<i128> = firms
        .iter()
        .flat_map(|b| {
            b.column_by_name("registered_capital").unwrap().as_primitive::<Decimal128Type>().values().to_vec()
        })
        .collect();
    let mut cells: HashMap<(String, String), Vec<i128>> = HashMap::new();
    for i in 0..capital.len() {
        cells.entry((industry[i].clone(), district[i].clone())).or_default().push(capital[i]);
    }
    // nk-dominance at n=2, k=0.9: the two largest hold over 90 % of the cell.
    let dominated = |cell: &[i128]| {
        let mut sorted = cell.to_vec();
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        let top: i128 = sorted.iter().take(2).sum();
        top as f64 > 0.9 * sorted.iter().sum::<i128>() as f64
    };
    for cell in [("C", "150203"), ("B", "150206"), ("C", "150204")] {
        let firms = &cells[&(cell.0.to_owned(), cell.1.to_owned())];
        assert!(
            firms.len() >= 5 && dominated(firms),
            "{cell:?} has {} firms, dominated by the planted giants",
            firms.len()
        );
    }

    let people = strings(&read(&dir.path().join("data/persons.parquet")), "district");
    let share = |d: &str| people.iter().filter(|p| p.as_str() == d).count() as f64 / people.len() as f64;
    assert!(share("150205") < 0.02 && share("150206") < 0.02, "石拐区 and 白云鄂博矿区 are small");
    assert!(share("150203") > 0.2, "昆都仑区 is large");
}

#[test]
fn utility_use_has_empty_homes_and_missing_readings() {
    let dir = tempfile::tempdir().unwrap();
    generate(&config(dir.path(), 20_000, 8)).unwrap();
    let batches = read(&dir.path().join("data/utility_usage.parquet"));
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    assert_eq!(rows, 20_000 * 10 / 26 * 12 + 12, "twelve months per household");
    let water = |b: &RecordBatch| {
        b.column_by_name("water_m3").unwrap().as_primitive::<arrow_array::types::Float64Type>().clone()
    };
    let zeros: usize = batches.iter().map(|b| water(b).iter().filter(|v| *v == Some(0.0)).count()).sum();
    let nulls: usize = batches.iter().map(|b| water(b).null_count()).sum();
    assert!(zeros > rows / 50, "vacant homes use nothing: {zeros}");
    assert!(nulls > 0 && nulls < rows / 100, "a few missing readings: {nulls}");
}

#[test]
fn twins_share_the_schema_but_not_the_people() {
    let dir = tempfile::tempdir().unwrap();
    generate(&config(dir.path(), 1_000, 11)).unwrap();
    let catalog = Catalog::open(dir.path()).unwrap();
    for d in &catalog.datasets {
        let real = read(&d.files[0].path);
        let twin = read(&d.twin_files[0].path);
        assert_eq!(real[0].schema(), twin[0].schema(), "{}", d.id);
    }
    let real: HashSet<String> =
        strings(&read(&dir.path().join("data/persons.parquet")), "citizen_id").into_iter().collect();
    let twin: HashSet<String> =
        strings(&read(&dir.path().join("twin/persons.parquet")), "citizen_id").into_iter().collect();
    assert_eq!(twin.len(), 300);
    assert!(real.is_disjoint(&twin), "a twin is generated from another seed");
}

#[test]
fn scales_out_of_range_are_refused_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("catalog");
    for scale in [0, sandbox_datagen::MAX_SCALE + 1] {
        let err = generate(&config(&out, scale, 1)).unwrap_err();
        assert!(matches!(err, DatagenError::Scale(s) if s == scale), "{err}");
    }
    let err = generate(&Config { twin_scale: Some(0), ..config(&out, 10, 1) }).unwrap_err();
    assert!(matches!(err, DatagenError::Scale(0)));
    assert!(!out.exists(), "nothing written");
}
