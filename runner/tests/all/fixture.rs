//! A generated city, one shared runner, and a helper to run a module on it.

use std::path::PathBuf;
use std::sync::OnceLock;

use sandbox_catalog::Catalog;
use sandbox_contract::RunMode;
use sandbox_policy::DomainSecret;
use sandbox_runner::{RunLimits, RunOutcome, RunRequest, Runner};

pub(crate) fn tmp() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
}

pub(crate) fn catalog_dir() -> PathBuf {
    catalog();
    tmp().join(format!("runner-city-{}", std::process::id()))
}

/// A city of 6 000 residents whose twin has 6 000 too, regenerated once per test process.
pub(crate) fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(|| {
        let out = tmp().join(format!("runner-city-{}", std::process::id()));
        let config = sandbox_datagen::Config {
            out: out.clone(),
            scale: 6_000,
            seed: 7,
            twin_scale: Some(6_000),
            progress: false,
        };
        sandbox_datagen::generate(&config).expect("generate the test city");
        Catalog::open(&out).expect("the generated catalog is valid")
    })
}

pub(crate) fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap())
}

/// One runner for the whole process, compiled modules kept on disk between test runs.
pub(crate) fn runner() -> &'static Runner {
    static RUNNER: OnceLock<Runner> = OnceLock::new();
    RUNNER.get_or_init(|| Runner::new(RunLimits::default(), Some(tmp().join("module-cache"))).unwrap())
}

pub(crate) fn key() -> sandbox_policy::PseudonymKey {
    DomainSecret::from_bytes([9; 32]).licence_key("test-licence")
}

pub(crate) struct Run<'a> {
    pub(crate) wasm: &'a [u8],
    pub(crate) manifest: &'a str,
    pub(crate) params: Vec<(String, String)>,
    pub(crate) mode: RunMode,
    pub(crate) limits: Option<RunLimits>,
}

impl<'a> Run<'a> {
    pub(crate) fn new(wasm: &'a [u8], manifest: &'a str) -> Run<'a> {
        Run { wasm, manifest, params: Vec::new(), mode: RunMode::Development, limits: None }
    }

    pub(crate) fn param(mut self, name: &str, value: &str) -> Self {
        self.params.push((name.to_owned(), value.to_owned()));
        self
    }

    pub(crate) fn production(mut self) -> Self {
        self.mode = RunMode::Production;
        self
    }

    pub(crate) fn limits(mut self, limits: RunLimits) -> Self {
        self.limits = Some(limits);
        self
    }

    pub(crate) fn go(self) -> RunOutcome {
        let request = RunRequest {
            module: self.wasm,
            manifest: self.manifest,
            parameters: &self.params,
            catalog: catalog(),
            mode: self.mode,
            key: Some(key()),
            limits: self.limits,
        };
        runtime().block_on(runner().run(request))
    }
}

/// The error code of a run, or "ok".
pub(crate) fn code(outcome: &RunOutcome) -> String {
    outcome.record.error.as_ref().map_or_else(|| "ok".to_owned(), |e| e.code())
}

pub(crate) fn log(outcome: &RunOutcome) -> String {
    outcome.dev_log.clone().map(|(text, _)| text).unwrap_or_default()
}
