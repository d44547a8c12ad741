//! Properties of every release, on random cities of shops (seeded, so a failure reproduces):
//! no released cell rests on fewer units than the threshold or is dominated; every released
//! count is a multiple of the rounding base; a released margin equals the sum of the released
//! cells it covers, so subtraction gives no suppressed cell back.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, Float64Array, Int64Array, StringArray};
use rand::{Rng, SeedableRng};
use sandbox_audit::{AuditPolicy, UnitHasher};
use sandbox_runner::OutputTable;

use crate::rules::write_shops;
use crate::{audit_tables, output_table};

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
    let mut columns: Vec<(&str, ArrayRef)> = names
        .iter()
        .enumerate()
        .map(|(i, d)| (*d, Arc::new(StringArray::from_iter_values(cells.keys().map(|k| k[i].as_str()))) as ArrayRef))
        .collect();
    columns.push(("shops", Arc::new(Int64Array::from_iter_values(cells.values().map(|v| v.len() as i64)))));
    columns.push(("revenue", Arc::new(Float64Array::from_iter_values(cells.values().map(|v| v.iter().sum::<f64>())))));
    output_table(name, columns)
}

#[test]
fn released_cells_keep_every_property_on_random_cities() {
    let root = tempfile::tempdir().unwrap();
    let mut checked = (0, 0);
    for seed in 0..24 {
        let shops = random_shops(seed);
        let catalog = write_shops(&root.path().join(seed.to_string()), shops.iter().cloned());
        let (districts, streets) = (cells(&shops, 1), cells(&shops, 2));
        let tables =
            [table("by_district", &["district"], &districts), table("by_street", &["district", "street"], &streets)];
        let audit = audit_tables(&catalog, MANIFEST, &tables, &AuditPolicy::default(), &UnitHasher::new(&[9; 32]), &[]);
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
