//! Twin files that are the real data are refused wherever they are opened for a query: a
//! development run would otherwise show real rows without an output audit.

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::Int64Type;
use sandbox_catalog::{Catalog, Variant};
use sandbox_policy::{DomainSecret, ErrorKind, PolicyConfig, PolicyContext, PolicyError, files_table};

const ENTRY: &str = r#"id = "clinics"
title = { zh = "诊所", en = "Clinics" }
provider = { zh = "市卫生健康委员会", en = "Municipal Health Commission" }
level = "general"
sharing = "unconditional"
open = "unconditional"
update_frequency = "yearly"
privacy_unit = "clinic_id"
format = "csv"
files = ["data/clinics.csv"]
twin_files = ["TWIN"]

[[columns]]
name = "clinic_id"
type = "string"
constraint = "pseudonymized"
description = { zh = "编号", en = "Clinic id" }

[[columns]]
name = "beds"
type = "int64"
constraint = "aggregate_only"
description = { zh = "床位", en = "Beds" }
"#;

const REAL: &str = "clinic_id,beds\nc1,10\nc2,5\nc3,7\n";
/// The same size as the real file, other bytes: only the hash tells them apart.
const SYNTHETIC: &str = "clinic_id,beds\nt1,11\nt2,4\nt3,8\n";

/// A catalog whose twin is `twin` (a path from the catalog folder), with the twin folder holding
/// `copy.csv` (the real bytes) and `synthetic.csv`.
fn clinics(twin: &str) -> (tempfile::TempDir, Catalog) {
    let dir = tempfile::tempdir().unwrap();
    for sub in ["data", "twin"] {
        std::fs::create_dir(dir.path().join(sub)).unwrap();
    }
    std::fs::write(dir.path().join("data/clinics.csv"), REAL).unwrap();
    std::fs::write(dir.path().join("twin/copy.csv"), REAL).unwrap();
    std::fs::write(dir.path().join("twin/synthetic.csv"), SYNTHETIC).unwrap();
    std::fs::write(dir.path().join("clinics.toml"), ENTRY.replace("TWIN", twin)).unwrap();
    let catalog = Catalog::open(dir.path()).unwrap();
    (dir, catalog)
}

/// Asserts that both ways of opening the twin refuse it, saying `why`, and the real files open.
fn refused(catalog: &Catalog, why: &str) {
    let dataset = catalog.dataset("clinics").unwrap();
    let err = files_table(dataset, Variant::Twin).expect_err("the twin is refused");
    assert!(matches!(err, PolicyError::Dataset { .. }) && err.to_string().contains(why), "{err}");
    assert!(err.to_string().contains("without an output audit"), "{err}");
    assert!(err.zh().contains("不经出域审核"), "{}", err.zh());

    let err = PolicyContext::new(catalog, &["clinics"], Variant::Twin, None, PolicyConfig::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Denied, "{err}");
    assert!(err.to_string().contains(why), "{err}");

    assert!(files_table(dataset, Variant::Real).is_ok());
    assert!(PolicyContext::new(catalog, &["clinics"], Variant::Real, None, PolicyConfig::default()).is_ok());
}

#[test]
fn a_twin_at_the_real_path_is_refused() {
    let (_dir, catalog) = clinics("data/clinics.csv");
    refused(&catalog, "twin file data/clinics.csv is the real file data/clinics.csv");
    let (_dir, catalog) = clinics("twin/../data/clinics.csv");
    refused(&catalog, "is the real file data/clinics.csv");
}

#[test]
fn a_twin_that_copies_the_real_bytes_is_refused() {
    let (_dir, catalog) = clinics("twin/copy.csv");
    refused(&catalog, "twin file twin/copy.csv has the same bytes as the real file data/clinics.csv");
}

#[test]
fn a_twin_overwritten_after_the_catalog_was_opened_is_refused() {
    let (dir, catalog) = clinics("twin/synthetic.csv");
    let dataset = catalog.dataset("clinics").unwrap();
    assert!(files_table(dataset, Variant::Twin).is_ok());
    std::fs::write(dir.path().join("twin/synthetic.csv"), REAL).unwrap();
    refused(&catalog, "has the same bytes as the real file");
}

#[tokio::test]
async fn a_synthetic_twin_of_the_same_size_backs_development_runs() {
    let (_dir, catalog) = clinics("twin/synthetic.csv");
    assert_eq!(REAL.len(), SYNTHETIC.len());
    let config = PolicyConfig { min_group_units: 1, ..PolicyConfig::default() };
    let key = DomainSecret::from_bytes([7; 32]).licence_key("dev:l");
    let ctx = PolicyContext::new(&catalog, &["clinics"], Variant::Twin, Some(key), config).unwrap();
    let batches = ctx.collect("SELECT sum(beds) AS beds FROM clinics").await.unwrap();
    let beds = batches[0].column(0).as_primitive::<Int64Type>().value(0);
    assert_eq!(beds, 23, "the twin's beds, not the real 22");
}
