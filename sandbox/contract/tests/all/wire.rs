//! The runner's answer as the server reads it: what a well-behaved runner writes comes back as
//! it was; whatever an escaped runner could write instead is refused, never half-read.

use std::sync::Arc;

use arrow_array::{Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use sandbox_contract::run::{OutputTable, RunMode, RunRecord, canonical};
use sandbox_contract::wire::{RunnerAnswer, RunnerRequest};

const MAX: usize = 1 << 20;

fn table(name: &str, rows: &[(&str, i64)]) -> OutputTable {
    let schema = Arc::new(Schema::new(vec![
        Field::new("district", DataType::Utf8, false),
        Field::new("people", DataType::Int64, false),
    ]));
    let districts = StringArray::from_iter_values(rows.iter().map(|r| r.0));
    let people = Int64Array::from_iter_values(rows.iter().map(|r| r.1));
    let batch = RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(districts), Arc::new(people)]).unwrap();
    canonical(name, schema, &[batch]).unwrap()
}

pub(crate) fn answer() -> RunnerAnswer {
    let mut record = RunRecord::new(b"module", "manifest", RunMode::Production);
    record.parameters = vec![("year".into(), "2024".into())];
    record.fuel_used = 12_345;
    RunnerAnswer {
        record,
        tables: vec![table("population", &[("昆都仑区", 120), ("青山区", 80)]), table("empty", &[])],
        dev_log: None,
        isolated: true,
    }
}

fn encoded(answer: &RunnerAnswer) -> Vec<u8> {
    let mut bytes = Vec::new();
    answer.encode(&mut bytes).unwrap();
    bytes
}

fn refused(bytes: &[u8], says: &str) {
    let e = RunnerAnswer::decode(bytes, MAX).unwrap_err().to_string();
    assert!(e.contains(says), "{e:?} does not say {says:?}");
}

#[test]
fn an_answer_round_trips() {
    let sent = answer();
    let got = RunnerAnswer::decode(&encoded(&sent), MAX).unwrap();
    assert_eq!(got.record, sent.record);
    assert!(got.isolated);
    let names: Vec<_> = got.tables.iter().map(|t| (t.name.as_str(), t.batch.num_rows(), t.sha256.as_str())).collect();
    let sent: Vec<_> = sent.tables.iter().map(|t| (t.name.as_str(), t.batch.num_rows(), t.sha256.as_str())).collect();
    assert_eq!(names, sent);
}

#[test]
fn an_escaped_runner_s_answer_is_refused() {
    let good = encoded(&answer());
    let newline = good.iter().position(|b| *b == b'\n').unwrap();
    let (header, body) = (std::str::from_utf8(&good[..newline]).unwrap(), &good[newline + 1..]);
    let with_header = |h: &str| [h.as_bytes(), b"\n", body].concat();

    refused(&[&good[..], b"x"].concat(), "bytes after the last table");
    refused(&good[..good.len() - 1], "cut short");
    refused(b"no newline", "no header line");
    refused(&with_header(&header.replace("\"isolated\"", "\"extra\":1,\"isolated\"")), "unknown field");
    // A header whose hash or row count is not the table's.
    let sha = &answer().tables[0].sha256;
    refused(&with_header(&header.replacen(sha.as_str(), &"0".repeat(64), 1)), "differ from the header");
    refused(&with_header(&header.replacen("\"rows\":2", "\"rows\":3", 1)), "differ from the header");
    // The same table twice: the second could stand in for a table the audit already judged.
    let population = &answer().tables[0];
    let twice = RunnerAnswer { tables: vec![population.clone(), population.clone()], ..answer() };
    refused(&encoded(&twice), "sent twice");
    // Rows out of canonical order: the same table could hash two ways.
    let mut shuffled = population.clone();
    shuffled.ipc = sandbox_contract::ipc::encode(&shuffled.schema, &[reversed(&shuffled.batch)]).unwrap();
    shuffled.sha256 = sandbox_contract::run::sha256_hex(&shuffled.ipc);
    refused(&encoded(&RunnerAnswer { tables: vec![shuffled], ..answer() }), "not in canonical form");
    // Bigger than the limit, before anything is parsed.
    let e = RunnerAnswer::decode(&good, good.len() - 1).unwrap_err().to_string();
    assert!(e.contains("more than"), "{e}");
}

/// The batch's rows in reverse order.
fn reversed(batch: &RecordBatch) -> RecordBatch {
    let n = batch.num_rows() as u64;
    let indices = arrow_array::UInt64Array::from_iter_values((0..n).rev());
    let columns = batch.columns().iter().map(|c| arrow_select::take::take(c, &indices, None).unwrap()).collect();
    RecordBatch::try_new(batch.schema(), columns).unwrap()
}

#[test]
fn a_request_round_trips_and_refuses_unknown_fields() {
    let request = RunnerRequest {
        catalog: "/data/catalog".into(),
        module: "/data/modules/m.wasm".into(),
        manifest: "/data/modules/m.toml".into(),
        parameters: vec![("year".into(), "2024".into())],
        mode: RunMode::Production,
        key: Some("ab".repeat(32)),
        cache_dir: None,
        require_isolation: true,
    };
    assert_eq!(RunnerRequest::decode(&request.encode()).unwrap(), request);
    let text = String::from_utf8(request.encode()).unwrap().replace("\"mode\"", "\"secret\":\"x\",\"mode\"");
    assert!(RunnerRequest::decode(text.as_bytes()).unwrap_err().to_string().contains("unknown field"));
    assert!(RunnerRequest::decode(&vec![b' '; (1 << 20) + 1]).unwrap_err().to_string().contains("too large"));
}
