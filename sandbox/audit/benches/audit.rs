//! `cargo bench -p sandbox-audit --bench audit -- CATALOG_DIR`: the output audit's cost against
//! the run it audits. The runner's hostile test module runs a GROUP BY over every resident
//! (district × birth year × gender × household registration: thousands of rows) through the
//! policy views and emits the result; the audit then recomputes every cell from the raw files.
//! CATALOG_DIR is `sandbox datagen --scale 10000000 --seed 7`.
//!
//! Results go into ops/bench/RESULTS.md by hand, with the machine.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use sandbox_audit::{AuditPolicy, AuditRequest, UnitHasher};
use sandbox_catalog::{Catalog, Variant};
use sandbox_policy::DomainSecret;
use sandbox_runner::{Manifest, RunLimits, RunMode, RunRequest, Runner};

const SQL: &str = "SELECT district, to_char(birth_date, '%Y') AS birth_year, gender, hukou_type, count(*) AS residents
    FROM persons GROUP BY 1, 2, 3, 4";

const OUTPUT: &str = r#"
[[outputs]]
name = "probe"
zh = "分区、出生年份、性别、户籍类型人口数"
en = "Residents by district, birth year, gender and household registration"

[[outputs.dimensions]]
name = "district"
source = "persons.district"

[[outputs.dimensions]]
name = "birth_year"
source = "persons.birth_date"
banding = { kind = "year" }

[[outputs.dimensions]]
name = "gender"
source = "persons.gender"

[[outputs.dimensions]]
name = "hukou_type"
source = "persons.hukou_type"

[[outputs.measures]]
name = "residents"
statistic = "count"
of = "persons"
"#;

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn main() {
    let dir =
        std::env::args().skip(1).find(|a| !a.starts_with('-')).map(PathBuf::from).expect("usage: audit CATALOG_DIR");
    let catalog = Catalog::open(&dir).expect("catalog");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let runner = Runner::new(RunLimits::default(), None).unwrap();
    let hostile = sandbox_examples::hostile();
    let manifest_text = format!("{}{OUTPUT}", &hostile.manifest[..hostile.manifest.find("[[outputs]]").unwrap()]);
    let manifest = Manifest::parse(&manifest_text).unwrap();
    let parameters = vec![("attack".to_owned(), "sql".to_owned()), ("payload".to_owned(), SQL.to_owned())];
    let key = DomainSecret::from_bytes([3; 32]).licence_key("bench");
    let hasher = UnitHasher::new(&[4; 32]);
    let policy = AuditPolicy::default();

    let (mut runs, mut audits) = (Vec::new(), Vec::new());
    let mut rows = 0;
    for _ in 0..3 {
        let started = Instant::now();
        let outcome = runtime.block_on(runner.run(RunRequest {
            module: hostile.wasm,
            manifest: &manifest_text,
            parameters: &parameters,
            catalog: &catalog,
            mode: RunMode::Production,
            key: Some(key.clone()),
            limits: None,
        }));
        runs.push(started.elapsed());
        assert!(outcome.record.error.is_none(), "{:?}", outcome.record.error);
        rows = outcome.record.output_rows;

        let started = Instant::now();
        let audit = runtime
            .block_on(sandbox_audit::audit(AuditRequest {
                catalog: &catalog,
                variant: Variant::Real,
                manifest: &manifest,
                record: &outcome.record,
                tables: &outcome.tables,
                policy: &policy,
                hasher: &hasher,
                earlier: &sandbox_audit::History::default(),
            }))
            .unwrap();
        audits.push(started.elapsed());
        let table = &audit.report.tables[0];
        assert!(audit.breach.is_empty(), "{}", audit.report_text());
        eprintln!(
            "run {:?}, audit {:?}: {} rows, {} suppressed",
            runs.last().unwrap(),
            audits.last().unwrap(),
            table.rows,
            table.suppressed_cells
        );
    }
    let (run, audit) = (median(runs), median(audits));
    println!(
        "audit of a {rows}-row table over {}: run {run:?}, audit {audit:?} (medians of 3), ratio audit / run {:.2}",
        dir.display(),
        audit.as_secs_f64() / run.as_secs_f64()
    );
}
