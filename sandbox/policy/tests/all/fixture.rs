//! A small synthetic city, generated once per test process.

use std::path::PathBuf;
use std::sync::OnceLock;

use sandbox_catalog::Catalog;

pub(crate) const SEED: u64 = 20_251_122;

/// The catalog folder of a 3 000-resident city (twin: 500), regenerated at the start of each run.
pub(crate) fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(|| {
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("policy-city");
        let config = sandbox_datagen::Config {
            out: out.clone(),
            scale: 3_000,
            seed: SEED,
            twin_scale: Some(500),
            progress: false,
        };
        sandbox_datagen::generate(&config).expect("generate the test city");
        Catalog::open(&out).expect("the generated catalog is valid")
    })
}

pub(crate) const ALL: &[&str] = &["persons", "enterprises", "social_insurance", "utility_usage"];
