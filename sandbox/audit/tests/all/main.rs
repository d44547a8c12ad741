//! The output audit: each rule at its boundary on a hand-made dataset, real module runs on a
//! generated city, and the cross-check against ACRO on both.

mod acro;
mod attacks;
mod attacks5;
mod attacks6;
mod boundary;
mod differencing;
mod dp;
mod examples;
mod inclusion;
mod models;
mod properties;
mod releases;
mod rules;

use arrow_array::{ArrayRef, RecordBatch};
use sandbox_audit::{Audit, AuditPolicy, AuditRequest, History, UnitHasher};
use sandbox_catalog::{Catalog, Variant};
use sandbox_contract::{Manifest, OutputTable, RunMode, RunRecord};

/// An output table as a module would emit it, from its named columns: the audit must not care
/// whether a module or anything else wrote it.
pub(crate) fn output_table(name: &str, columns: Vec<(&str, ArrayRef)>) -> OutputTable {
    let batch = RecordBatch::try_from_iter_with_nullable(columns.into_iter().map(|(n, c)| (n, c, true))).unwrap();
    OutputTable { name: name.to_owned(), schema: batch.schema(), batch, ipc: Vec::new(), sha256: String::new() }
}

/// A table the module leaves empty: it claims nothing, and the host's table leaves. Measures
/// named `people`, `n` or `shops` are counts, the others decimals.
pub(crate) fn no_rows(name: &str, dims: &[&str], measures: &[&str]) -> OutputTable {
    use std::sync::Arc;

    use arrow_array::{Float64Array, Int64Array, StringArray};
    let mut columns: Vec<(&str, ArrayRef)> =
        dims.iter().map(|d| (*d, Arc::new(StringArray::from(Vec::<String>::new())) as ArrayRef)).collect();
    for m in measures {
        if ["people", "n", "shops"].contains(m) {
            columns.push((m, Arc::new(Int64Array::from(Vec::<i64>::new()))));
        } else {
            columns.push((m, Arc::new(Float64Array::from(Vec::<f64>::new()))));
        }
    }
    output_table(name, columns)
}

/// The audit of `tables`, declared by `manifest`, on `catalog`'s real files.
pub(crate) fn audit_tables(
    catalog: &Catalog,
    manifest: &str,
    tables: &[OutputTable],
    policy: &AuditPolicy,
    hasher: &UnitHasher,
    earlier: &History,
) -> Audit {
    let record = RunRecord::new(manifest.as_bytes(), manifest, RunMode::Production);
    let parsed = Manifest::parse(manifest).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let request = AuditRequest {
        catalog,
        variant: Variant::Real,
        manifest: &parsed,
        record: &record,
        tables,
        policy,
        hasher,
        earlier,
    };
    runtime.block_on(sandbox_audit::audit(request)).unwrap()
}
