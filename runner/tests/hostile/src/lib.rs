//! A module that attacks its host in the way its `attack` parameter names. The runner's tests run
//! it once per attack and check that each ends with its own error code, at a bounded cost, with
//! the host intact for the next run.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::Arc;

use sandbox_sdk::arrow_array::{ArrayRef, Int64Array, StringArray};
use sandbox_sdk::arrow_schema::{DataType, Field, Schema};
use sandbox_sdk::{Analysis, Error, ErrorCode, Params, Table};

struct Hostile;

fn probe(district: &str, residents: i64) -> Result<sandbox_sdk::RecordBatch, Error> {
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("district", Arc::new(StringArray::from(vec![district]))),
        ("residents", Arc::new(Int64Array::from(vec![residents]))),
    ];
    sandbox_sdk::batch(columns)
}

fn probe_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("district", DataType::Utf8, true),
        Field::new("residents", DataType::Int64, true),
    ]))
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len() / 2).map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap_or(0)).collect()
}

/// Recursion on the wasm stack itself: scalars only, so nothing lands on Rust's shadow stack in
/// linear memory, and `black_box` keeps LLVM from turning it into a loop.
#[inline(never)]
#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    std::hint::black_box(recurse(depth + 1)) ^ depth
}

impl Analysis for Hostile {
    fn run(params: &Params) -> Result<(), Error> {
        let attack = params.text("attack")?;
        let payload = params.text("payload")?;
        match attack {
            "emit-empty" => Table::begin("probe", probe_schema())?.finish(),
            "valid" => {
                let rows = sandbox_sdk::query("SELECT district, count(*) AS residents FROM persons GROUP BY district")?;
                sandbox_sdk::emit("probe", &rows.collect_batches()?)
            }
            "loop" => {
                let mut x = 0u64;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "memory" => {
                let mut hoard = Vec::new();
                loop {
                    hoard.push(vec![1u8; 16 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "stack" => {
                std::hint::black_box(recurse(0));
                Ok(())
            }
            "handles" => {
                let mut open = Vec::new();
                for _ in 0..5000 {
                    open.push(sandbox_sdk::query("SELECT count(*) AS n FROM persons")?);
                }
                Ok(())
            }
            "undeclared-table" => sandbox_sdk::emit("secrets", &[probe("150202", 1)?]),
            "undeclared-column" => {
                let columns: Vec<(&str, ArrayRef)> = vec![
                    ("district", Arc::new(StringArray::from(vec!["150202"]))),
                    ("residents", Arc::new(Int64Array::from(vec![1]))),
                    ("note", Arc::new(StringArray::from(vec!["extra"]))),
                ];
                sandbox_sdk::emit("probe", &[sandbox_sdk::batch(columns)?])
            }
            "wrong-type" => {
                let columns: Vec<(&str, ArrayRef)> = vec![
                    ("district", Arc::new(StringArray::from(vec!["150202"]))),
                    ("residents", Arc::new(StringArray::from(vec!["many"]))),
                ];
                sandbox_sdk::emit("probe", &[sandbox_sdk::batch(columns)?])
            }
            "twice" => {
                let _first = Table::begin("probe", probe_schema())?;
                Table::begin("probe", probe_schema())?.finish()
            }
            "raw-schema" => {
                let writer = sandbox_sdk::bindings::sandbox::analysis::output::begin("probe", &hex(payload))?;
                Ok(writer.finish()?)
            }
            "raw-append" => {
                let table = Table::begin("probe", probe_schema())?;
                sandbox_sdk::bindings::sandbox::analysis::output::TableWriter::append(
                    table_writer(&table),
                    &hex(payload),
                )?;
                table.finish()
            }
            "unfinished" => {
                let table = Table::begin("probe", probe_schema())?;
                table.append(&probe("150202", 1)?)?;
                std::mem::forget(table);
                Ok(())
            }
            "output-flood" => {
                let table = Table::begin("probe", probe_schema())?;
                let districts: Vec<String> = (0..100_000).map(|i| format!("{i:06}")).collect();
                let residents: Vec<i64> = (0..100_000).collect();
                let columns: Vec<(&str, ArrayRef)> = vec![
                    ("district", Arc::new(StringArray::from(districts))),
                    ("residents", Arc::new(Int64Array::from(residents))),
                ];
                let batch = sandbox_sdk::batch(columns)?;
                loop {
                    table.append(&batch)?;
                }
            }
            "read-all" => {
                // Reads and decodes every batch of the payload's query, then emits nothing: what
                // it costs to move query results into the guest.
                let mut rows = 0;
                for batch in sandbox_sdk::query(payload)? {
                    rows += std::hint::black_box(batch?).num_rows();
                }
                sandbox_sdk::info(&format!("read {rows} rows"));
                Table::begin("probe", probe_schema())?.finish()
            }
            "sql" => {
                let rows = sandbox_sdk::query(payload)?;
                sandbox_sdk::emit("probe", &rows.collect_batches()?)
            }
            "log-flood" => {
                for i in 0..100_000 {
                    sandbox_sdk::info(&format!("line {i}"));
                    println!("stdout line {i}");
                }
                Table::begin("probe", probe_schema())?.finish()
            }
            "wasi-probe" => {
                let file = std::fs::read("/etc/passwd").map(|b| b.len()).map_err(|e| e.kind().to_string());
                let dir = std::fs::read_dir(".").map(|_| ()).map_err(|e| e.kind().to_string());
                let env: Vec<(String, String)> = std::env::vars().collect();
                let args: Vec<String> = std::env::args().collect();
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos());
                let start = std::time::Instant::now();
                let hash = RandomState::new().hash_one(42u64);
                println!("file={file:?} dir={dir:?} env={env:?} args={args:?}");
                println!("now={now:?} elapsed={:?} hash={hash}", start.elapsed());
                eprintln!("stderr works");
                Table::begin("probe", probe_schema())?.finish()
            }
            "panic" => panic!("the module gave up"),
            "module-error" => Err(Error::Module(7)),
            _ => Err(Error::Host(ErrorCode::InvalidParameter)),
        }
    }
}

fn table_writer(table: &Table) -> &sandbox_sdk::bindings::sandbox::analysis::output::TableWriter {
    table.writer()
}

sandbox_sdk::analysis!(Hostile);
