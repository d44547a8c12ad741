//! Properties of every release, on random cities of shops (seeded, so a failure reproduces):
//! no released cell rests on fewer units than the threshold or is dominated; every released
//! count is a multiple of the rounding base; a released margin equals the sum of the released
//! cells it covers, so subtraction gives no suppressed cell back.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use rand::{Rng, SeedableRng};
use sandbox_audit::{Audit, AuditPolicy, AuditRequest, UnitHasher};
use sandbox_catalog::{Catalog, Variant};
use sandbox_runner::{Manifest, OutputTable, RunMode, RunRecord};

use crate::rules::SHOPS_ENTRY;

/// One shop: district, street, revenue.
type Shop = (String, String, f64);

fn random_shops(seed: u64) -> Vec<Shop> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut shops = Vec::new();
    for d in 0..rng.random_range(2..6) {
        for s in 0..rng.random_range(1..4) {
            for _ in 0..rng.random_range(1..25) {
                // Mostly small shops, now and then a giant.
                let revenue =
                    if rng.random_bool(0.05) { rng.random_range(500.0..5000.0) } else { rng.random_range(1.0..50.0) };
                shops.push((format!("D{d}"), format!("D{d}S{s}"), (revenue * 100.0_f64).round() / 100.0));
            }
        }
    }
    shops
}

fn catalog(dir: &std::path::Path, shops: &[Shop]) -> Catalog {
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let mut csv = String::from("shop_id,district,street,revenue,owner\n");
    for (n, (district, street, revenue)) in shops.iter().enumerate() {
        writeln!(csv, "S{n:05},{district},{street},{revenue},店主{n}").unwrap();
    }
    std::fs::write(dir.join("data/shops.csv"), csv).unwrap();
    std::fs::write(dir.join("shops.toml"), SHOPS_ENTRY).unwrap();
    Catalog::open(dir).unwrap()
}

const MANIFEST: &str = r#"
name = "properties"
version = "1"
datasets = ["shops"]
purpose = { zh = "测试", en = "test" }
[[outputs]]
name = "by_district"
zh = "表"
en = "table"
dimensions = [{ name = "district", source = "shops.district" }]
measures = [
    { name = "shops", statistic = "count", of = "shops" },
    { name = "revenue", statistic = "sum", of = "shops.revenue" },
]
[[outputs]]
name = "by_street"
zh = "表"
en = "table"
dimensions = [{ name = "district", source = "shops.district" }, { name = "street", source = "shops.street" }]
measures = [
    { name = "shops", statistic = "count", of = "shops" },
    { name = "revenue", statistic = "sum", of = "shops.revenue" },
]
"#;

/// The true cells of `shops` by the first `dims` of (district, street): key → revenues.
fn cells(shops: &[Shop], dims: usize) -> BTreeMap<Vec<String>, Vec<f64>> {
    let mut cells: BTreeMap<Vec<String>, Vec<f64>> = BTreeMap::new();
    for (district, street, revenue) in shops {
        let key = [district.clone(), street.clone()][..dims].to_vec();
        cells.entry(key).or_default().push(*revenue);
    }
    cells
}

fn table(name: &str, names: &[&str], cells: &BTreeMap<Vec<String>, Vec<f64>>) -> OutputTable {
    let mut fields: Vec<Field> = names.iter().map(|d| Field::new(*d, DataType::Utf8, true)).collect();
    fields.push(Field::new("shops", DataType::Int64, true));
    fields.push(Field::new("revenue", DataType::Float64, true));
    let schema = Arc::new(Schema::new(fields));
    let mut columns: Vec<ArrayRef> = (0..names.len())
        .map(|i| Arc::new(StringArray::from_iter_values(cells.keys().map(|k| k[i].as_str()))) as ArrayRef)
        .collect();
    columns.push(Arc::new(Int64Array::from_iter_values(cells.values().map(|v| v.len() as i64))));
    columns.push(Arc::new(Float64Array::from_iter_values(cells.values().map(|v| v.iter().sum::<f64>()))));
    let batch = RecordBatch::try_new(Arc::clone(&schema), columns).unwrap();
    OutputTable { name: name.to_owned(), schema, batch, ipc: Vec::new(), sha256: String::new() }
}

fn audit(catalog: &Catalog, tables: &[OutputTable]) -> Audit {
    let manifest = Manifest::parse(MANIFEST).unwrap();
    let record = RunRecord::new(b"properties", MANIFEST, RunMode::Production);
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    runtime
        .block_on(sandbox_audit::audit(AuditRequest {
            catalog,
            variant: Variant::Real,
            manifest: &manifest,
            record: &record,
            tables,
            policy: &AuditPolicy::default(),
            hasher: &UnitHasher::new(&[9; 32]),
            earlier: &[],
        }))
        .unwrap()
}

#[test]
fn released_cells_keep_every_property_on_random_cities() {
    let root = tempfile::tempdir().unwrap();
    let mut checked = (0, 0);
    for seed in 0..24 {
        let shops = random_shops(seed);
        let catalog = catalog(&root.path().join(seed.to_string()), &shops);
        let (districts, streets) = (cells(&shops, 1), cells(&shops, 2));
        let tables =
            [table("by_district", &["district"], &districts), table("by_street", &["district", "street"], &streets)];
        let audit = audit(&catalog, &tables);
        assert_eq!(audit.released.len(), 2, "seed {seed}: both tables are released:\n{}", audit.report.text());

        let mut released_streets: BTreeMap<String, f64> = BTreeMap::new();
        for (released, truth) in audit.released.iter().zip([&districts, &streets]) {
            let counts =
                released.batch.column_by_name("shops").unwrap().as_any().downcast_ref::<Int64Array>().unwrap().clone();
            let sums = released
                .batch
                .column_by_name("revenue")
                .unwrap()
                .as_any()
                .downcast_ref::<Float64Array>()
                .unwrap()
                .clone();
            for (r, (key, revenues)) in truth.iter().enumerate() {
                if counts.is_valid(r) {
                    checked.0 += 1;
                    assert_eq!(counts.value(r) % 5, 0, "seed {seed} {key:?}: count not rounded");
                    assert!(revenues.len() >= 10, "seed {seed} {key:?}: released with {} units", revenues.len());
                }
                if sums.is_valid(r) {
                    let mut sorted = revenues.clone();
                    sorted.sort_by(|a, b| b.total_cmp(a));
                    let total: f64 = sorted.iter().sum();
                    assert!(
                        sorted.iter().take(2).sum::<f64>() <= 0.9 * total,
                        "seed {seed} {key:?}: released dominated"
                    );
                    if released.name == "by_street" {
                        *released_streets.entry(key[0].clone()).or_default() += sums.value(r);
                    }
                } else {
                    checked.1 += 1;
                }
            }
        }
        // Every released district total is the sum of its released streets.
        let by_district = &audit.released[0].batch;
        let sums = by_district.column_by_name("revenue").unwrap().as_any().downcast_ref::<Float64Array>().unwrap();
        for (r, key) in districts.keys().enumerate() {
            if sums.is_valid(r) {
                let streets = released_streets.get(&key[0]).copied().unwrap_or(0.0);
                assert!((sums.value(r) - streets).abs() < 1e-6, "seed {seed} {key:?}: {} vs {streets}", sums.value(r));
            }
        }
    }
    // Both outcomes occur often enough for the properties to mean something.
    assert!(checked.0 >= 40 && checked.1 >= 40, "{checked:?} (released, suppressed)");
}
