//! Hostile modules: each attack ends with its own error code, at a bounded cost, and the runner
//! runs a well-behaved module right after.

use std::sync::Arc;
use std::time::Duration;

use arrow_array::{Int64Array, RecordBatch, StringArray};
use arrow_ipc::CompressionType;
use arrow_ipc::writer::{IpcWriteOptions, StreamWriter};
use arrow_schema::{DataType, Field, Schema};
use sandbox_runner::{RunLimits, RunOutcome};

use crate::fixture::{Run, code, log};

fn hostile() -> &'static sandbox_examples::Example {
    sandbox_examples::hostile()
}

fn attack(name: &str) -> Run<'static> {
    Run::new(hostile().wasm, hostile().manifest).param("attack", name)
}

/// Runs an attack, checks its code, then checks that the runner still works.
fn expect(run: Run<'_>, expected: &str) -> RunOutcome {
    let outcome = run.go();
    assert_eq!(code(&outcome), expected, "log:\n{}", log(&outcome));
    assert!(outcome.tables.is_empty() || expected == "ok", "a failed run releases nothing");
    let after = attack("valid").go();
    assert_eq!(code(&after), "ok", "the runner must be intact after {expected}: {}", log(&after));
    outcome
}

#[test]
fn a_well_behaved_run_succeeds() {
    let outcome = expect(attack("valid"), "ok");
    assert_eq!(outcome.tables[0].name, "probe");
}

#[test]
fn an_endless_loop_runs_out_of_fuel() {
    let limits = RunLimits { fuel: 200_000_000, ..RunLimits::default() };
    let outcome = expect(attack("loop").limits(limits), "fuel-exhausted");
    assert!(outcome.record.fuel_used >= 200_000_000);
}

#[test]
fn an_endless_loop_with_fuel_to_spare_is_stopped_by_the_clock() {
    let limits = RunLimits { wall_time: Duration::from_millis(500), ..RunLimits::default() };
    let outcome = expect(attack("loop").limits(limits), "timeout");
    assert!(outcome.record.wall_time_ms < 5_000, "stopped promptly: {} ms", outcome.record.wall_time_ms);
}

#[test]
fn growing_memory_past_the_limit_stops_the_run() {
    let outcome = expect(attack("memory"), "memory-limit");
    assert!(outcome.record.peak_memory_bytes <= 256 << 20);
}

#[test]
fn deep_recursion_overflows_the_wasm_stack() {
    expect(attack("stack"), "stack-overflow");
}

#[test]
fn thousands_of_query_handles_are_refused() {
    let outcome = expect(attack("handles"), "host:too-many-queries");
    assert_eq!(outcome.record.queries, 16, "only the allowed number of queries ran");
}

#[test]
fn undeclared_tables_and_columns_are_refused() {
    expect(attack("undeclared-table"), "output-refused:undeclared-table");
    expect(attack("twice"), "output-refused:undeclared-table");
    let outcome = expect(attack("undeclared-column"), "output-refused:schema-mismatch");
    assert!(log(&outcome).contains("must have columns [\"district\", \"residents\"]"));
    expect(attack("wrong-type"), "output-refused:schema-mismatch");
}

#[test]
fn unfinished_tables_are_missing_output() {
    expect(attack("unfinished"), "missing-output");
}

fn probe_ipc(options: IpcWriteOptions) -> Vec<u8> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("district", DataType::Utf8, true),
        Field::new("residents", DataType::Int64, true),
    ]));
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![Arc::new(StringArray::from(vec!["150202"; 100])), Arc::new(Int64Array::from(vec![11; 100]))],
    )
    .unwrap();
    let mut writer = StreamWriter::try_new_with_options(Vec::new(), &schema, options).unwrap();
    writer.write(&batch).unwrap();
    writer.finish().unwrap();
    writer.into_inner().unwrap()
}

#[test]
fn malformed_compressed_and_oversized_ipc_is_refused() {
    let good = probe_ipc(IpcWriteOptions::default());
    let ok = attack("raw-append").param("payload", &hex::encode(&good)).go();
    assert_eq!(code(&ok), "ok", "{}", log(&ok));

    let compressed =
        probe_ipc(IpcWriteOptions::default().try_with_compression(Some(CompressionType::LZ4_FRAME)).unwrap());
    let outcome =
        expect(attack("raw-append").param("payload", &hex::encode(&compressed)), "output-refused:invalid-ipc");
    assert!(log(&outcome).contains("compressed"));

    let mut truncated = good.clone();
    truncated.truncate(good.len() - 20);
    expect(attack("raw-append").param("payload", &hex::encode(&truncated)), "output-refused:invalid-ipc");
    let mut flipped = good.clone();
    let at = flipped.len() / 3;
    flipped[at] ^= 0xff;
    flipped[at + 1] ^= 0xff;
    let outcome = attack("raw-append").param("payload", &hex::encode(&flipped)).go();
    assert!(code(&outcome).starts_with("output-refused:"), "{}", code(&outcome));
    expect(attack("raw-schema").param("payload", "00ff00ff"), "output-refused:invalid-ipc");
    expect(attack("raw-schema").param("payload", &hex::encode(&good)), "output-refused:invalid-ipc");

    let small = RunLimits { append_bytes: 256, ..RunLimits::default() };
    expect(attack("raw-append").param("payload", &hex::encode(&good)).limits(small), "output-refused:too-large");
}

#[test]
fn output_past_the_row_limit_is_refused() {
    let limits = RunLimits { output_rows: 250_000, ..RunLimits::default() };
    let outcome = expect(attack("output-flood").limits(limits), "output-refused:too-large");
    assert!(log(&outcome).contains("the limits are 250000 rows"));
}

#[test]
fn ddl_and_raw_tables_never_run() {
    // (Selecting a pseudonymized column is allowed here: its values are pseudonyms. The output
    // audit is what refuses pseudonyms in released tables.)
    for sql in [
        "CREATE TABLE stolen AS SELECT * FROM persons",
        "DROP TABLE persons",
        "INSERT INTO persons VALUES (1)",
        "COPY persons TO '/tmp/out.csv'",
    ] {
        let outcome = expect(attack("sql").param("payload", sql), "host:denied");
        assert!(log(&outcome).contains("only a single SELECT query is allowed"), "{sql}: {}", log(&outcome));
    }
    for sql in [
        "SELECT * FROM 'data/persons.parquet'",
        "SELECT * FROM read_parquet('data/persons.parquet')",
        "SELECT industry AS district, count(*) AS residents FROM enterprises GROUP BY industry",
        "SELECT mobile AS district, count(*) AS residents FROM persons GROUP BY mobile",
    ] {
        let outcome = attack("sql").param("payload", sql).go();
        let got = code(&outcome);
        assert!(got == "host:denied" || got == "host:invalid-sql", "{sql}: {got}");
    }
}

#[test]
fn wasi_gives_nothing_real() {
    let a = expect(attack("wasi-probe"), "ok");
    let text = log(&a);
    assert!(text.contains("file=Err("), "{text}");
    assert!(text.contains("dir=Err("), "{text}");
    assert!(text.contains("env=[]"), "{text}");
    assert!(text.contains("now=Ok(0)"), "the wall clock is frozen at the epoch: {text}");
    assert!(text.contains("elapsed=0ns"), "the monotonic clock does not move: {text}");
    assert!(text.contains("stderr works"));
    let b = attack("wasi-probe").go();
    let hash = |t: &str| t.lines().find(|l| l.contains("hash=")).map(str::to_owned);
    assert_eq!(hash(&text), hash(&log(&b)), "randomness is a function of the run's inputs");
}

#[test]
fn a_chatty_module_is_cut_off_at_the_log_limit() {
    let limits = RunLimits { dev_log_bytes: 64 << 10, ..RunLimits::default() };
    let outcome = expect(attack("log-flood").limits(limits), "ok");
    let (text, truncated) = outcome.dev_log.unwrap();
    assert!(truncated);
    assert!(text.len() <= 64 << 10);
}

#[test]
fn panics_and_module_errors_have_their_codes() {
    let outcome = expect(attack("panic"), "trap");
    assert!(log(&outcome).contains("the module gave up"));
    expect(attack("module-error"), "module:7");
    expect(attack("no-such-attack"), "host:invalid-parameter");
}

#[test]
fn production_runs_keep_no_explanations() {
    let outcome = attack("sql").param("payload", "SELECT mobile AS district FROM persons").production().go();
    assert!(code(&outcome).starts_with("host:"));
    assert!(outcome.dev_log.is_none());
}

fn load(bytes: &[u8]) -> String {
    let manifest = hostile().manifest;
    let outcome = Run::new(bytes, manifest).param("attack", "valid").go();
    code(&outcome)
}

#[test]
fn modules_that_are_not_components_of_the_world_are_refused_at_load() {
    assert_eq!(load(b"not wasm at all"), "invalid-module");
    let core = wat::parse_str("(module (func (export \"run\")))").unwrap();
    assert_eq!(load(&core), "invalid-module");
    let empty = wat::parse_str("(component)").unwrap();
    assert_eq!(load(&empty), "invalid-module");
}

#[test]
fn socket_and_http_imports_are_refused_at_load() {
    for import in ["wasi:sockets/tcp@0.2.0", "wasi:http/outgoing-handler@0.2.0", "evil:exfiltrate/send"] {
        let wat = format!("(component (import \"{import}\" (instance)))");
        let bytes = wat::parse_str(&wat).unwrap();
        let outcome = Run::new(&bytes, hostile().manifest).param("attack", "valid").go();
        assert_eq!(code(&outcome), "forbidden-import", "{import}");
        assert!(outcome.record.error.unwrap().explain().contains(import));
    }
    // The runner is fine afterwards.
    assert_eq!(code(&attack("valid").go()), "ok");
}

/// A component of the `sandbox:analysis` world around a hand-written core module, for attacks a
/// Rust guest cannot express. `run` returns the empty list's `ok` without doing anything.
fn world_component(core_items: &str) -> Vec<u8> {
    let mut resolve = wit_parser::Resolve::default();
    let (package, _) = resolve
        .push_dir(format!("{}/wit", std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR")))
        .unwrap();
    let world = resolve.select_world(&[package], Some("analysis")).unwrap();
    let wat = format!(
        r#"(module
            {core_items}
            (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32) i32.const 1024)
            (func (export "run") (param i32 i32) (result i32) i32.const 2048))"#
    );
    let mut core = wat::parse_str(&wat).unwrap();
    wit_component::embed_component_metadata(&mut core, &resolve, world, wit_component::StringEncoding::UTF8).unwrap();
    wit_component::ComponentEncoder::default().module(&core).unwrap().validate(true).encode().unwrap()
}

#[test]
fn a_hand_written_component_of_the_world_runs() {
    // The control for the two attacks below: the same shell with sane sizes loads and runs (and
    // fails only because it wrote no output).
    let bytes = world_component(r#"(memory (export "memory") 1) (table 10 funcref)"#);
    let outcome = Run::new(&bytes, hostile().manifest).param("attack", "valid").go();
    assert_eq!(code(&outcome), "missing-output", "{}", log(&outcome));
}

#[test]
fn a_huge_table_is_refused_at_instantiation() {
    let bytes = world_component(r#"(memory (export "memory") 1) (table 50000000 funcref)"#);
    let outcome = Run::new(&bytes, hostile().manifest).param("attack", "valid").go();
    assert_eq!(code(&outcome), "resource-limit", "{}", log(&outcome));
    assert_eq!(code(&attack("valid").go()), "ok");
}

#[test]
fn a_huge_initial_memory_is_refused_at_instantiation() {
    // 60 000 pages = 3.7 GiB, far past the 256 MiB limit.
    let bytes = world_component(r#"(memory (export "memory") 60000)"#);
    let outcome = Run::new(&bytes, hostile().manifest).param("attack", "valid").go();
    assert_eq!(code(&outcome), "memory-limit", "{}", log(&outcome));
    assert_eq!(outcome.record.peak_memory_bytes, 0, "nothing was allocated");
    assert_eq!(code(&attack("valid").go()), "ok");
}

#[test]
fn query_results_stream_into_the_guest_in_bounded_chunks() {
    let limits = RunLimits { chunk_bytes: 4096, ..RunLimits::default() };
    let outcome = attack("read-all").param("payload", "SELECT citizen_id, name FROM persons").limits(limits).go();
    assert_eq!(code(&outcome), "ok", "{}", log(&outcome));
    assert!(log(&outcome).contains("read 6000 rows"), "{}", log(&outcome));
    // 6000 rows of two pseudonyms cannot fit in a few 4 KiB chunks; every byte was counted.
    assert!(outcome.record.query_bytes > 40_000, "{}", outcome.record.query_bytes);
}
