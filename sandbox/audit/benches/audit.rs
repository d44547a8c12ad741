//! `cargo bench -p sandbox-audit --bench audit -- CATALOG_DIR`: the output audit's cost against
//! the run it audits. The runner's hostile test module runs a GROUP BY over every resident
//! (district × birth year × gender × household registration: thousands of rows) through the
//! policy views and emits the result; the audit then recomputes every cell from the raw files.
//! CATALOG_DIR is `sandbox datagen --scale 10000000 --seed 7`.
//!
//! Results go into ops/bench/RESULTS.md by hand, with the machine.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{DataType, Field, Schema};
use sandbox_audit::{AuditPolicy, AuditRequest, History, UnitHasher};
use sandbox_catalog::{Catalog, Variant};
use sandbox_contract::{Manifest, RunMode};
use sandbox_policy::DomainSecret;
use sandbox_runner::{RunLimits, RunRequest, Runner};

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
    let key = DomainSecret::from_bytes([3; 32]).licence_key("bench");
    let hasher = UnitHasher::new(&[4; 32]);
    let policy = AuditPolicy::default();

    let audit_with = |record: &sandbox_contract::RunRecord,
                      manifest: &Manifest,
                      tables: &[sandbox_contract::OutputTable],
                      earlier: &History| {
        runtime
            .block_on(sandbox_audit::audit(AuditRequest {
                catalog: &catalog,
                variant: Variant::Real,
                manifest,
                record,
                tables,
                policy: &policy,
                hasher: &hasher,
                earlier,
            }))
            .unwrap()
    };

    // The hostile module's `sql` attack with `payload`, under `manifest`, timed.
    let run_module = |manifest: &str, payload: &str| {
        let parameters = [("attack".to_owned(), "sql".to_owned()), ("payload".to_owned(), payload.to_owned())];
        let started = Instant::now();
        let outcome = runtime.block_on(runner.run(RunRequest {
            module: hostile.wasm,
            manifest,
            parameters: &parameters,
            catalog: &catalog,
            mode: RunMode::Production,
            key: Some(key.clone()),
            limits: None,
        }));
        assert!(outcome.record.error.is_none(), "{:?}", outcome.record.error);
        (outcome, started.elapsed())
    };

    let (mut runs, mut audits) = (Vec::new(), Vec::new());
    let mut rows = 0;
    for _ in 0..3 {
        let (outcome, took) = run_module(&manifest_text, SQL);
        runs.push(took);
        rows = outcome.record.output_rows;

        let started = Instant::now();
        let audit = audit_with(&outcome.record, &manifest, &outcome.tables, &History::default());
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

    // Against a history of earlier releases on the same dataset. The table above has more rows
    // than the default `max_rows` and does not leave, so nothing relates it: the probe here is
    // district × birth year × gender (it leaves, with suppressions), run by the module and
    // audited with histories of about 10 000 and 100 000 released cells — the same table
    // released before (no scan), and tables by other dimensions, each kept several times as a
    // product released every month would be (one crossing for all alike).
    let probe: &[&str] = &["district", "birth_year", "gender"];
    let header = &manifest_text[..manifest_text.find("[[outputs]]").unwrap()];
    let probe_text = format!("{header}{}", contract(probe, "probe").0);
    let probe_manifest = Manifest::parse(&probe_text).unwrap();
    let payload = "SELECT district, to_char(birth_date, '%Y') AS birth_year, gender, count(*) AS residents
        FROM persons GROUP BY 1, 2, 3";
    let mut probe_runs = Vec::new();
    let mut outcome = None;
    for _ in 0..3 {
        let (o, took) = run_module(&probe_text, payload);
        probe_runs.push(took);
        outcome = Some(o);
    }
    let (outcome, run) = (outcome.expect("three runs"), median(probe_runs));
    let earlier = |dims: &[&str]| -> History {
        let (spec, table) = contract(dims, &format!("t_{}", dims.join("_")));
        let text = format!("{header}{spec}");
        let manifest = Manifest::parse(&text).unwrap();
        let record = sandbox_contract::RunRecord::new(b"earlier", &text, RunMode::Production);
        let audit = audit_with(&record, &manifest, &[table], &History::default());
        assert!(!audit.history.tables.is_empty(), "{dims:?} leaves: {}", audit.report_text());
        audit.history
    };
    let others: Vec<History> = [
        &["district", "birth_year", "hukou_type"][..],
        &["birth_year", "gender", "hukou_type"],
        &["district", "gender", "hukou_type"],
        &["district", "birth_year"],
        &["birth_year", "gender"],
        &["birth_year", "hukou_type"],
    ]
    .iter()
    .map(|dims| earlier(dims))
    .collect();
    let same = audit_with(&outcome.record, &probe_manifest, &outcome.tables, &History::default());
    assert!(!same.history.tables.is_empty(), "the probe leaves: {}", same.report_text());
    let grown = |copies: usize| {
        let mut history = History::default();
        for _ in 0..copies {
            history.extend(same.history.clone());
            for other in &others {
                history.extend(other.clone());
            }
        }
        history
    };
    let cells_per_copy = grown(1).cells.len().max(1);
    for target in [0usize, 10_000, 100_000] {
        let history = grown(target.div_ceil(cells_per_copy));
        let times: Vec<Duration> = (0..3)
            .map(|_| {
                let started = Instant::now();
                let audit = audit_with(&outcome.record, &probe_manifest, &outcome.tables, &history);
                assert!(audit.breach.is_empty(), "{}", audit.report_text());
                started.elapsed()
            })
            .collect();
        let audit = median(times);
        println!(
            "probe ({} rows) with a history of {} released cells in {} tables: run {run:?}, audit {audit:?} (medians of 3), ratio audit / run {:.2}",
            outcome.record.output_rows,
            history.cells.len(),
            history.tables.len(),
            audit.as_secs_f64() / run.as_secs_f64()
        );
    }
}

/// The probe's contract by only `dims`, and an empty table for it: the module claims nothing,
/// and the host's table is what the history keeps.
fn contract(dims: &[&str], name: &str) -> (String, sandbox_contract::OutputTable) {
    let sources = [
        ("district", "source = \"persons.district\""),
        ("birth_year", "source = \"persons.birth_date\"\nbanding = { kind = \"year\" }"),
        ("gender", "source = \"persons.gender\""),
        ("hukou_type", "source = \"persons.hukou_type\""),
    ];
    let mut spec = format!("[[outputs]]\nname = \"{name}\"\nzh = \"表\"\nen = \"table\"\n");
    for (name, source) in sources.iter().filter(|(n, _)| dims.contains(n)) {
        spec += &format!("[[outputs.dimensions]]\nname = \"{name}\"\n{source}\n");
    }
    spec += "[[outputs.measures]]\nname = \"residents\"\nstatistic = \"count\"\nof = \"persons\"\n";
    let mut fields: Vec<Field> = dims.iter().map(|d| Field::new(*d, DataType::Utf8, true)).collect();
    fields.push(Field::new("residents", DataType::Int64, true));
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::new_empty(schema.clone());
    let table =
        sandbox_contract::OutputTable { name: name.to_owned(), schema, batch, ipc: Vec::new(), sha256: String::new() };
    (spec, table)
}
