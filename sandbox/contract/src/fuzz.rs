//! The fuzz targets' bodies: each takes arbitrary bytes, must never panic, and checks what must
//! hold of whatever it accepts. `fuzz/` runs them under libFuzzer (`cargo +nightly fuzz run
//! runner_answer`); the crate's tests run them on every build over a seed corpus and thousands of
//! mutations of it, so they cannot rot.

use crate::ipc;
use crate::manifest::Manifest;
use crate::run::canonical;
use crate::wire::RunnerAnswer;

/// The most bytes a target reads, as the server's limits are far larger than a fuzzer needs.
const MAX: usize = 1 << 20;

/// A runner's answer: what decodes, encodes and decodes again to the same record and tables.
pub fn runner_answer(data: &[u8]) {
    let Ok(answer) = RunnerAnswer::decode(data, MAX) else { return };
    let mut bytes = Vec::new();
    answer.encode(&mut bytes).expect("writing to memory");
    let again = RunnerAnswer::decode(&bytes, MAX).expect("an answer the reader accepted, written again, reads");
    assert_eq!(again.record, answer.record);
    let hashes = |a: &RunnerAnswer| a.tables.iter().map(|t| (t.name.clone(), t.sha256.clone())).collect::<Vec<_>>();
    assert_eq!(hashes(&again), hashes(&answer));
}

/// A manifest: parsing never panics, nor does binding no parameters or asking for each output.
pub fn manifest(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(manifest) = Manifest::parse(text) else { return };
    let _ = manifest.bind(&[]);
    for output in &manifest.outputs {
        assert!(manifest.output(&output.name).is_some());
        assert_eq!(output.column_names().len(), output.dimensions.len() + output.measures.len());
    }
}

/// A module's or a runner's IPC: whatever the strict reader accepts can be put in canonical
/// form, and that form reads back to the same rows.
pub fn ipc_reader(data: &[u8]) {
    let _ = ipc::read_schema(data, MAX);
    let Ok((schema, batches)) = ipc::read_stream(data, MAX) else { return };
    let _ = ipc::read_batches(data, &schema, MAX);
    let Ok(table) = canonical("t", schema, &batches) else { return };
    let (_, again) = ipc::read_stream(&table.ipc, usize::MAX).expect("the canonical form reads");
    let rows = |b: &[arrow_array::RecordBatch]| b.iter().map(|b| b.num_rows()).sum::<usize>();
    assert_eq!(rows(&again), rows(&batches));
}
