//! The example modules and the hostile module, run on a generated city and audited.

use std::path::PathBuf;
use std::sync::OnceLock;

use arrow_array::{Array, Int64Array};
use sandbox_audit::{Audit, AuditPolicy, AuditRequest, History, Rule, Verdict};
use sandbox_catalog::{Catalog, Variant};
use sandbox_contract::manifest::Statistic;
use sandbox_contract::{Manifest, RunMode};
use sandbox_policy::DomainSecret;
use sandbox_runner::{RunLimits, RunOutcome, RunRequest, Runner};

fn tmp() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
}

/// `<tmp>/<prefix>-<this process>`, after removing the folders earlier test processes, now
/// gone, left under the same prefix (a big city is 32 MB, and every run makes one).
fn scratch(prefix: &str) -> PathBuf {
    for entry in std::fs::read_dir(tmp()).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let pid = name.strip_prefix(prefix).and_then(|rest| rest.strip_prefix('-')).and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|pid| !PathBuf::from(format!("/proc/{pid}")).exists()) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    tmp().join(format!("{prefix}-{}", std::process::id()))
}

/// A city of 6 000 residents, generated once per test process.
pub(crate) fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(|| {
        let out = scratch("audit-city");
        let config = sandbox_datagen::Config {
            out: out.clone(),
            scale: 6_000,
            seed: 7,
            twin_scale: Some(2_000),
            progress: false,
        };
        sandbox_datagen::generate(&config).expect("generate the test city");
        Catalog::open(&out).expect("the generated catalog is valid")
    })
}

/// A city of 500 000 residents (33 000 legal entities), generated once per test process: the
/// smallest at which a quarter of 1991 has ten or more new manufacturers, among them two of the
/// planted giants.
fn big_catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(|| {
        let out = scratch("audit-big-city");
        let config = sandbox_datagen::Config {
            out: out.clone(),
            scale: 500_000,
            seed: 7,
            twin_scale: Some(1_000),
            progress: false,
        };
        sandbox_datagen::generate(&config).expect("generate the big test city");
        Catalog::open(&out).expect("the generated catalog is valid")
    })
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap())
}

fn runner() -> &'static Runner {
    static RUNNER: OnceLock<Runner> = OnceLock::new();
    RUNNER.get_or_init(|| Runner::new(RunLimits::default(), Some(tmp().join("module-cache"))).unwrap())
}

/// Runs a module in production mode on the real files and audits what it wrote.
fn run_and_audit(wasm: &[u8], manifest: &str, params: &[(&str, &str)]) -> (RunOutcome, Audit) {
    run_and_audit_on(catalog(), wasm, manifest, params)
}

fn run_and_audit_on(catalog: &Catalog, wasm: &[u8], manifest: &str, params: &[(&str, &str)]) -> (RunOutcome, Audit) {
    let params: Vec<(String, String)> = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let outcome = runtime().block_on(runner().run(RunRequest {
        module: wasm,
        manifest,
        parameters: &params,
        catalog,
        mode: RunMode::Production,
        key: Some(DomainSecret::from_bytes([9; 32]).licence_key("test-licence")),
        limits: None,
    }));
    assert!(outcome.record.error.is_none(), "the run failed: {:?}", outcome.record.error);
    let manifest = Manifest::parse(manifest).unwrap();
    let policy = AuditPolicy::default();
    let audit = runtime()
        .block_on(sandbox_audit::audit(AuditRequest {
            catalog,
            variant: Variant::Real,
            manifest: &manifest,
            record: &outcome.record,
            tables: &outcome.tables,
            policy: &policy,
            hasher: &sandbox_audit::UnitHasher::new(&[5; 32]),
            earlier: &History::default(),
        }))
        .expect("the audit computes its evidence");
    (outcome, audit)
}

#[test]
fn the_examples_agree_with_the_host_and_pass_or_get_suppressions_that_make_sense() {
    for example in sandbox_examples::examples() {
        let (outcome, audit) = run_and_audit(example.wasm, example.manifest, &[]);
        let text = audit.report_text();
        println!("{}", audit.released_report.text());
        assert!(audit.breach.is_empty(), "{}: the host disagrees with the module:\n{text}", example.name);
        assert!(audit.report.outcome <= Verdict::Suppressed, "{}: {:?}\n{text}", example.name, audit.report.outcome);
        assert_eq!(audit.released.len(), outcome.tables.len());
        // Every host cell is released; counts are multiples of 5, blank exactly where the
        // internal report says nothing leaves.
        let manifest = Manifest::parse(example.manifest).unwrap();
        for (table, report) in audit.released.iter().zip(&audit.report.tables) {
            assert_eq!(table.batch.num_rows(), report.rows);
            let spec = manifest.output(&table.name).unwrap();
            for (j, measure) in spec.measures.iter().enumerate() {
                let column = table.batch.column(spec.dimensions.len() + j);
                for (r, cell) in report.cells.iter().enumerate() {
                    assert_eq!(column.is_null(r), cell.released[j].is_none(), "{} row {r}", example.name);
                }
                if measure.statistic == Statistic::Count {
                    let counts = column.as_any().downcast_ref::<Int64Array>().unwrap();
                    assert!(counts.iter().flatten().all(|n| n % 5 == 0), "{}: {counts:?}", example.name);
                }
            }
        }
    }
}

#[test]
fn new_enterprises_of_1991_meet_the_planted_giants_and_lose_those_cells() {
    let example = sandbox_examples::examples().iter().find(|e| e.name == "new-enterprises").unwrap();
    let (_, audit) = run_and_audit_on(big_catalog(), example.wasm, example.manifest, &[("year", "1991")]);
    let text = audit.report_text();
    // Manufacturing in 1991Q4: the steel group (3.2 million 万元) and another giant (0.82
    // million) among some fifteen small firms: they hold 99.8% of the capital, so the cell is
    // suppressed for dominance, and its row is withheld whole.
    let (_, giants) = crate::rules::cell(&audit, 0, "C,1991Q4");
    assert!(giants.contains(&Rule::Dominance), "{text}");
    // The other manufacturing quarters have no giant and pass.
    for q in ["1991Q1", "1991Q2", "1991Q3"] {
        assert!(crate::rules::cell(&audit, 0, &format!("C,{q}")).1.is_empty(), "C {q}: {text}");
    }
    assert!(audit.breach.is_empty(), "{text}");
    assert_eq!(audit.report.outcome, Verdict::Suppressed, "{text}");
    assert_eq!(crate::rules::released(&audit, 0, "C,1991Q4", 1), None);
    assert_eq!(crate::rules::released(&audit, 0, "C,1991Q4", 2), None);
    assert!(crate::rules::released(&audit, 0, "C,1991Q2", 2).is_some());
    // The released report names the rule for the withheld cell and no figure of it.
    let words = crate::rules::released_words(&audit);
    assert!(words.contains("largest contributors hold more than 90%") && !words.contains("99.8"), "{words}");
}
