//! Dataset versions can be recomputed by an evaluator with `sha256sum` alone.

use std::process::Command;

use sandbox_catalog::{Catalog, Variant};

use crate::Fixture;

#[test]
fn the_version_is_sha256sum_of_the_listing() {
    let fixture = Fixture::new(|e| {
        e.replace("files = [\"data/shops.parquet\"]", "files = [\"data/shops.parquet\", \"twin/shops.parquet\"]")
    });
    let catalog = Catalog::open(fixture.dir.path()).unwrap();
    let version = catalog.dataset("shops").unwrap().version(Variant::Real).unwrap();

    // What the module documentation promises: `sha256sum FILES | sha256sum`, run in the entry's folder.
    let out = Command::new("sh")
        .arg("-c")
        .arg("sha256sum data/shops.parquet twin/shops.parquet | sha256sum")
        .current_dir(fixture.dir.path())
        .output()
        .expect("sha256sum from coreutils");
    let expected = String::from_utf8(out.stdout).unwrap();
    assert_eq!(version.as_str(), format!("sha256:{}", &expected[..64]));
    assert_eq!(version.short(), &expected[..12]);
}

#[test]
fn the_version_changes_with_any_byte() {
    let fixture = Fixture::new(str::to_owned);
    let version =
        || Catalog::open(fixture.dir.path()).unwrap().dataset("shops").unwrap().version(Variant::Real).unwrap();
    let before = version();
    let path = fixture.path("data/shops.parquet");
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    assert_ne!(version(), before);
}
