//! Properties of every release, on random cities of shops (seeded, so a failure reproduces):
//! every released number is the host's own figure, rounded (counts to 5, sums to four
//! significant digits), whatever the module wrote; no released cell rests on fewer units than
//! the threshold or is dominated; a released margin over a suppressed cell equals the sum of
//! the released cells it covers, so subtraction gives no suppressed cell back.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, Float64Array, Int64Array, StringArray};
use rand::{Rng, SeedableRng};
use sandbox_audit::{AuditPolicy, History, UnitHasher};
use sandbox_contract::OutputTable;

use crate::rules::write_shops;
use crate::{audit_tables, output_table};

/// One shop: district, street, revenue.
pub(crate) type Shop = (String, String, f64);

pub(crate) fn random_shops(seed: u64) -> Vec<Shop> {
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

/// Four significant digits, as the default policy rounds sums.
fn round_sig(x: f64) -> f64 {
    format!("{x:.3e}").parse().unwrap()
}

/// The exact sum of revenues in cents, as the nearest double: the host adds in decimals.
fn exact(revenues: &[f64]) -> f64 {
    revenues.iter().map(|r| (r * 100.0).round() as i64).sum::<i64>() as f64 / 100.0
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
        let audit = audit_tables(
            &catalog,
            MANIFEST,
            &tables,
            &AuditPolicy::default(),
            &UnitHasher::new(&[9; 32]),
            &History::default(),
        );
        assert_eq!(audit.released.len(), 2, "seed {seed}: both tables are released:\n{}", audit.report_text());

        // Per table: each released cell's figures, and per district what the streets release.
        let mut released_streets: BTreeMap<String, (f64, i64, bool, bool)> = BTreeMap::new();
        let mut district_figures = Vec::new();
        for ((released, truth), report) in audit.released.iter().zip([&districts, &streets]).zip(&audit.report.tables) {
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
            // Every cell of the contract, and every other combination of its labels.
            assert!(counts.len() >= truth.len(), "seed {seed}: every cell of the contract");
            for (r, cell) in report.cells.iter().enumerate() {
                let key: Vec<String> = cell.key.iter().map(|k| k.clone().unwrap_or_default()).collect();
                let empty = Vec::new();
                let revenues = truth.get(&key).unwrap_or(&empty);
                let shown = sums.is_valid(r);
                if counts.is_valid(r) {
                    checked.0 += 1;
                    assert_eq!(counts.value(r) % 5, 0, "seed {seed} {key:?}: count not rounded");
                    assert!(revenues.len() >= 10, "seed {seed} {key:?}: released with {} units", revenues.len());
                }
                if shown {
                    let mut sorted = revenues.clone();
                    sorted.sort_by(|a, b| b.total_cmp(a));
                    let total: f64 = sorted.iter().sum();
                    assert!(
                        sorted.iter().take(2).sum::<f64>() <= 0.9 * total,
                        "seed {seed} {key:?}: released dominated"
                    );
                } else if !revenues.is_empty() {
                    checked.1 += 1;
                }
                if released.name == "by_street" {
                    let entry = released_streets.entry(key[0].clone()).or_default();
                    if shown {
                        entry.0 += sums.value(r);
                        entry.1 += counts.value(r);
                        entry.3 = true;
                    } else if !revenues.is_empty() {
                        entry.2 = true;
                    }
                    // A street is never a recomputed margin: its figures are the host's, rounded.
                    if shown {
                        assert_eq!(sums.value(r), round_sig(exact(revenues)), "seed {seed} {key:?}");
                        let n = revenues.len() as i64;
                        assert_eq!(counts.value(r), (n + 2).div_euclid(5) * 5, "seed {seed} {key:?}");
                    }
                } else {
                    district_figures.push((
                        key[0].clone(),
                        shown.then(|| (sums.value(r), counts.value(r))),
                        revenues.clone(),
                    ));
                }
            }
        }
        // A district over a suppressed street and a released one releases the sum of its
        // released streets, so subtraction gives nothing back; over none suppressed, or none
        // released, the host's own figure, rounded.
        for (district, figures, revenues) in district_figures {
            let Some((sum, count)) = figures else { continue };
            let (streets_sum, streets_count, hidden, some_shown) =
                released_streets.get(&district).copied().unwrap_or_default();
            if hidden && some_shown {
                assert!((sum - streets_sum).abs() < 1e-6, "seed {seed} {district}: {sum} vs {streets_sum}");
                assert_eq!(count, streets_count, "seed {seed} {district}");
            } else {
                assert_eq!(sum, round_sig(exact(&revenues)), "seed {seed} {district}");
            }
        }
    }
    // Both outcomes occur often enough for the properties to mean something.
    assert!(checked.0 >= 40 && checked.1 >= 40, "{checked:?} (released, suppressed)");
}

/// One random admissible contract over shops: its dimensions, its second measure, the revenue
/// from which shops are counted (a published edge), as manifest TOML.
fn random_contract(rng: &mut rand_chacha::ChaCha8Rng) -> (Vec<&'static str>, &'static str, Option<u32>) {
    let dims = match rng.random_range(0..3) {
        0 => vec!["district"],
        1 => vec!["street"],
        _ => vec!["district", "street"],
    };
    let statistic = ["sum", "mean", "max", "min", "quantile"][rng.random_range(0..5)];
    let from = rng.random_bool(0.4).then(|| [1, 5, 10, 20][rng.random_range(0..4)]);
    (dims, statistic, from)
}

/// The k-th largest of `values` (k = 10, the default `min_units_extremes`), if there are k.
fn kth_largest(values: &[f64], k: usize) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    sorted.get(k - 1).copied()
}

/// `percentile_cont`: linear interpolation at q (n − 1).
fn percentile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let at = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (at.floor() as usize, at.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (at - lo as f64)
}

#[test]
fn every_released_number_is_a_rounded_host_figure_for_random_contracts() {
    let root = tempfile::tempdir().unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(99);
    let mut checked = 0;
    for seed in 0..20u64 {
        let shops = random_shops(100 + seed);
        let catalog = write_shops(&root.path().join(seed.to_string()), shops.iter().cloned());
        let (dims, statistic, from) = random_contract(&mut rng);
        let kept: Vec<&Shop> = shops.iter().filter(|s| from.is_none_or(|f| s.2 >= f as f64)).collect();
        let mut cells: BTreeMap<Vec<String>, Vec<f64>> = BTreeMap::new();
        for (district, street, revenue) in &kept {
            let key = dims.iter().map(|d| if *d == "district" { district.clone() } else { street.clone() }).collect();
            cells.entry(key).or_default().push(*revenue);
        }
        let quantile = if statistic == "quantile" { ", quantile = 0.5" } else { "" };
        let filter = from.map_or(String::new(), |f| {
            format!(r#"filters = [{{ column = "shops.revenue", op = "ge", value = {f} }}]"#)
        });
        let dimensions: Vec<String> =
            dims.iter().map(|d| format!(r#"{{ name = "{d}", source = "shops.{d}" }}"#)).collect();
        let manifest = format!(
            r#"
name = "random"
version = "1"
datasets = ["shops"]
purpose = {{ zh = "测试", en = "test" }}
[[outputs]]
name = "t"
zh = "表"
en = "table"
{filter}
dimensions = [{}]
measures = [
    {{ name = "shops", statistic = "count", of = "shops" }},
    {{ name = "x", statistic = "{statistic}", of = "shops.revenue"{quantile} }},
]
"#,
            dimensions.join(", ")
        );
        // The honest module's claim: the true statistic of each cell.
        let truth = |values: &[f64]| -> f64 {
            match statistic {
                "sum" => exact(values),
                "mean" => exact(values) / values.len() as f64,
                "max" => values.iter().copied().fold(f64::MIN, f64::max),
                "min" => values.iter().copied().fold(f64::MAX, f64::min),
                _ => percentile(values, 0.5),
            }
        };
        let mut columns: Vec<(&str, ArrayRef)> = dims
            .iter()
            .enumerate()
            .map(|(i, d)| {
                (*d, Arc::new(StringArray::from_iter_values(cells.keys().map(|k| k[i].as_str()))) as ArrayRef)
            })
            .collect();
        columns.push(("shops", Arc::new(Int64Array::from_iter_values(cells.values().map(|v| v.len() as i64)))));
        columns.push(("x", Arc::new(Float64Array::from_iter_values(cells.values().map(|v| truth(v))))));
        let table = output_table("t", columns);
        let audit = audit_tables(
            &catalog,
            &manifest,
            &[table],
            &AuditPolicy::default(),
            &UnitHasher::new(&[9; 32]),
            &History::default(),
        );
        assert!(audit.breach.is_empty(), "seed {seed}: {}", audit.report_text());
        let Some(released) = audit.released.first() else { continue };
        let counts = released.batch.column(dims.len()).as_any().downcast_ref::<Int64Array>().unwrap().clone();
        let xs = released.batch.column(dims.len() + 1).as_any().downcast_ref::<Float64Array>().unwrap().clone();
        assert!(counts.len() >= cells.len(), "seed {seed}: every cell of the contract");
        for (r, cell) in audit.report.tables[0].cells.iter().enumerate() {
            let key: Vec<String> = cell.key.iter().map(|k| k.clone().unwrap_or_default()).collect();
            let Some(values) = cells.get(&key) else {
                assert!(counts.is_null(r) && xs.is_null(r), "seed {seed} {key:?}: an empty combination leaves blank");
                continue;
            };
            if counts.is_valid(r) {
                checked += 1;
                let n = values.len() as i64;
                assert_eq!(counts.value(r), (n + 2).div_euclid(5) * 5, "seed {seed} {key:?}");
                assert!(n >= 10, "seed {seed} {key:?}: released with {n} units");
            }
            if !xs.is_valid(r) {
                continue;
            }
            let expected = match statistic {
                "sum" => round_sig(exact(values)),
                "mean" => {
                    let rounded = (values.len() as i64 + 2).div_euclid(5) * 5;
                    round_sig(round_sig(exact(values)) / rounded as f64)
                }
                "max" => round_sig(kth_largest(values, 10).unwrap()),
                "min" => {
                    let negated: Vec<f64> = values.iter().map(|v| -v).collect();
                    round_sig(-kth_largest(&negated, 10).unwrap())
                }
                _ => {
                    let v = percentile(values, 0.5);
                    let negated: Vec<f64> = values.iter().map(|v| -v).collect();
                    let (lo, hi) = (-kth_largest(&negated, 10).unwrap(), kth_largest(values, 10).unwrap());
                    assert!(lo <= v && v <= hi, "seed {seed} {key:?}: a quantile fewer than 10 units reach");
                    round_sig(v)
                }
            };
            assert_eq!(xs.value(r), expected, "seed {seed} {key:?} {statistic}");
        }
        // The released report holds no number but the policy's own parameters.
        let words = crate::rules::released_words(&audit);
        for number in words.split(|c: char| !c.is_ascii_digit()).filter(|w| !w.is_empty()) {
            assert!(["2", "10", "90", "5000", "16777216"].contains(&number), "seed {seed}: {number} in {words}");
        }
    }
    assert!(checked >= 30, "{checked} released cells checked");
}
