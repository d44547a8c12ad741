//! What a run is and how it ended, on both sides of the runner process: the error codes, the
//! record, and the output tables in canonical form.
//!
//! Output tables are sorted canonically (every column, in order) and encoded with a fixed
//! layout before hashing, so the same inputs give byte-identical outputs whatever order the
//! module wrote its rows in.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_ord::sort::{SortColumn, lexsort_to_indices};
use arrow_schema::SchemaRef;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ipc;

/// The most bytes of IPC a run's output tables may hold together, unless a runner is given
/// other limits.
pub const DEFAULT_OUTPUT_BYTES: u64 = 64 << 20;

/// How a run ended badly. Codes only: free text from a production run could carry data out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "code", rename_all = "kebab-case")]
pub enum RunError {
    /// Not a component, does not compile, or does not export the `sandbox:analysis` world.
    InvalidModule { detail: String },
    /// Imports something the sandbox does not provide (sockets, HTTP, ...).
    ForbiddenImport { imports: Vec<String> },
    /// The manifest is invalid, does not fit the views, or a parameter does not fit it.
    InvalidManifest { detail: String },
    /// The fuel budget ran out.
    FuelExhausted,
    /// The wall-clock limit passed.
    Timeout,
    /// Linear memory would have grown past the limit.
    MemoryLimit,
    /// The wasm stack overflowed.
    StackOverflow,
    /// A table, instance or memory count went past its limit.
    ResourceLimit,
    /// The module trapped (a Rust panic is an `unreachable` trap).
    Trap,
    /// The module returned a host error code it had been given.
    Host { host: String },
    /// The module returned a code of its own.
    Module { module: u32 },
    /// The module broke the output contract or an output limit (see `host`), even if it then
    /// returned success.
    OutputRefused { host: String },
    /// A declared output table was not finished.
    MissingOutput { table: String },
    /// Something failed in the host itself.
    Internal { detail: String },
}

impl RunError {
    pub fn internal(detail: String) -> RunError {
        RunError::Internal { detail }
    }

    pub fn invalid_module(detail: String) -> RunError {
        RunError::InvalidModule { detail }
    }

    pub fn forbidden_import(imports: Vec<String>) -> RunError {
        RunError::ForbiddenImport { imports }
    }

    /// The code alone, as production runs report it.
    pub fn code(&self) -> String {
        match self {
            RunError::InvalidModule { .. } => "invalid-module".to_owned(),
            RunError::ForbiddenImport { .. } => "forbidden-import".to_owned(),
            RunError::InvalidManifest { .. } => "invalid-manifest".to_owned(),
            RunError::FuelExhausted => "fuel-exhausted".to_owned(),
            RunError::Timeout => "timeout".to_owned(),
            RunError::MemoryLimit => "memory-limit".to_owned(),
            RunError::StackOverflow => "stack-overflow".to_owned(),
            RunError::ResourceLimit => "resource-limit".to_owned(),
            RunError::Trap => "trap".to_owned(),
            RunError::Host { host } => format!("host:{host}"),
            RunError::Module { module } => format!("module:{module}"),
            RunError::OutputRefused { host } => format!("output-refused:{host}"),
            RunError::MissingOutput { .. } => "missing-output".to_owned(),
            RunError::Internal { .. } => "internal".to_owned(),
        }
    }

    /// How a production run that ended so is told to its operator: a class from a fixed set,
    /// never the module's own number or the host call it failed on. A module can choose to fail
    /// and how — `module` or `limits` freely, `contract` at the price of a breach — so each class
    /// is a channel (see ARCHITECTURE.md, "Channels that remain"). `interrupted` comes only from
    /// outside the module.
    pub fn failure(&self) -> Failed {
        match self {
            RunError::FuelExhausted
            | RunError::Timeout
            | RunError::MemoryLimit
            | RunError::StackOverflow
            | RunError::ResourceLimit => Failed::Limits,
            RunError::Host { host } | RunError::OutputRefused { host }
                if matches!(host.as_str(), "resources-exhausted" | "too-many-queries" | "too-large") =>
            {
                Failed::Limits
            }
            RunError::InvalidManifest { .. } | RunError::OutputRefused { .. } => Failed::Contract,
            RunError::InvalidModule { .. }
            | RunError::ForbiddenImport { .. }
            | RunError::Trap
            | RunError::Host { .. }
            | RunError::Module { .. }
            | RunError::MissingOutput { .. } => Failed::Module,
            RunError::Internal { .. } => Failed::Interrupted,
        }
    }

    /// Plain words in English and Chinese, for the development loop.
    pub fn explain(&self) -> String {
        match self {
            RunError::InvalidModule { detail } => format!("invalid module: {detail} / 模块无效"),
            RunError::ForbiddenImport { imports } => {
                format!(
                    "the module imports what the sandbox does not provide: {} / 模块导入了沙箱不提供的接口",
                    imports.join(", ")
                )
            }
            RunError::InvalidManifest { detail } => detail.clone(),
            RunError::FuelExhausted => {
                "the module used up its fuel (instruction budget) / 模块耗尽了燃料（指令预算）".to_owned()
            }
            RunError::Timeout => "the run took longer than its wall-clock limit / 运行超出时间限制".to_owned(),
            RunError::MemoryLimit => {
                "the module asked for more memory than its limit / 模块申请的内存超出限制".to_owned()
            }
            RunError::StackOverflow => "the module overflowed its stack / 模块栈溢出".to_owned(),
            RunError::ResourceLimit => {
                "the module needs more tables or instances than allowed / 模块所需的表或实例超出限制".to_owned()
            }
            RunError::Trap => "the module trapped (a panic, or an invalid operation) / 模块异常终止".to_owned(),
            RunError::Host { host } => {
                format!("the module failed on a refused host call: {host} / 模块因主机调用被拒绝而失败")
            }
            RunError::Module { module } => {
                format!("the module reported its own error code {module} / 模块报告错误码 {module}")
            }
            RunError::OutputRefused { host } => {
                format!("the host refused the module's output: {host} / 主机拒绝了模块的输出")
            }
            RunError::MissingOutput { table } => {
                format!("declared output table {table} was not finished / 声明的输出表 {table} 未完成")
            }
            RunError::Internal { detail } => format!("internal error: {detail} / 内部错误"),
        }
    }
}

/// Why a production run failed, as its operator is told: one of four codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Failed {
    /// The module failed: it trapped, returned an error, or did not finish its tables.
    Module,
    /// The run reached a limit: fuel, time, memory, stack, output size, queries.
    Limits,
    /// The module broke its output contract, or its declared values disagree with the host's.
    Contract,
    /// The run was stopped from outside: a restart, the host, the runner process.
    Interrupted,
}

impl Failed {
    pub const ALL: [Failed; 4] = [Failed::Module, Failed::Limits, Failed::Contract, Failed::Interrupted];

    pub fn as_str(self) -> &'static str {
        match self {
            Failed::Module => "module",
            Failed::Limits => "limits",
            Failed::Contract => "contract",
            Failed::Interrupted => "interrupted",
        }
    }

    pub fn zh(self) -> &'static str {
        match self {
            Failed::Module => "模块失败",
            Failed::Limits => "超出限制",
            Failed::Contract => "违反输出契约",
            Failed::Interrupted => "运行中断",
        }
    }

    pub fn parse(text: &str) -> Option<Failed> {
        Failed::ALL.into_iter().find(|f| f.as_str() == text)
    }
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}] {}", self.code(), self.explain())
    }
}

impl std::error::Error for RunError {}

/// Whose data a run reads, and what it may show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunMode {
    /// Synthetic twins; the development log is kept and errors are explained.
    Development,
    /// Real data; the development log is dropped and only codes come back.
    Production,
}

/// What a run cost and how it ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub module_sha256: String,
    pub manifest_sha256: String,
    pub mode: RunMode,
    pub parameters: Vec<(String, String)>,
    pub fuel_used: u64,
    pub wall_time_ms: u64,
    /// The guest's largest linear memory.
    pub peak_memory_bytes: u64,
    pub queries: u32,
    /// Bytes of Arrow IPC the guest read from its queries.
    pub query_bytes: u64,
    pub output_rows: u64,
    pub error: Option<RunError>,
}

impl RunRecord {
    /// The record of a run of `module` with `manifest` that has not started: nothing used yet.
    pub fn new(module: &[u8], manifest: &str, mode: RunMode) -> RunRecord {
        RunRecord::of(sha256_hex(module), manifest, mode)
    }

    /// [`RunRecord::new`] for a module whose SHA-256 is known.
    pub fn of(module_sha256: String, manifest: &str, mode: RunMode) -> RunRecord {
        RunRecord {
            module_sha256,
            manifest_sha256: sha256_hex(manifest.as_bytes()),
            mode,
            parameters: Vec::new(),
            fuel_used: 0,
            wall_time_ms: 0,
            peak_memory_bytes: 0,
            queries: 0,
            query_bytes: 0,
            output_rows: 0,
            error: None,
        }
    }
}

impl RunRecord {
    /// Whether this is the record of the run asked for: of `module` and `manifest` (their
    /// SHA-256 in hex), in `mode`, and — if it succeeded, having bound its parameters — with
    /// exactly the `bound` parameters (defaults included, as `Manifest::bind` gives them). A
    /// runner that ran something else (an escaped one, or a file changed under the caller)
    /// gives nothing to audit.
    pub fn is_of(&self, module: &str, manifest: &str, mode: RunMode, bound: &[(String, String)]) -> bool {
        self.module_sha256 == module
            && self.manifest_sha256 == manifest
            && self.mode == mode
            && (self.error.is_some() || self.parameters == bound)
    }
}

/// An output table after the run: rows in canonical order, its IPC bytes and their SHA-256.
#[derive(Debug, Clone)]
pub struct OutputTable {
    pub name: String,
    pub schema: SchemaRef,
    pub batch: RecordBatch,
    pub ipc: Vec<u8>,
    pub sha256: String,
}

impl OutputTable {
    /// A table as a `sandbox-runner` process sent it: its IPC bytes go through the same strict
    /// reader as a module's output, and must be in canonical order already (re-encoding them
    /// gives the same bytes), so a table cannot change on its way from the runner.
    pub fn from_ipc(name: &str, ipc: Vec<u8>, max_bytes: usize) -> Result<OutputTable, String> {
        let (schema, batches) = ipc::read_stream(&ipc, max_bytes).map_err(|e| format!("output {name}: {e}"))?;
        let table = canonical(name, schema, &batches).map_err(|e| e.explain())?;
        if table.ipc != ipc {
            return Err(format!("output {name}: not in canonical form"));
        }
        Ok(table)
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Sorts a table's rows by every column in order and encodes them.
///
/// Arrow's kernels panic on some schemas the IPC reader lets through (an empty table of a union
/// with no members, found by the fuzz targets): a panic here is a refused output, not a crash.
pub fn canonical(name: &str, schema: SchemaRef, batches: &[RecordBatch]) -> Result<OutputTable, RunError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sort_and_encode(name, schema, batches)))
        .unwrap_or_else(|_| Err(RunError::internal(format!("output {name}: Arrow refused the table"))))
}

fn sort_and_encode(name: &str, schema: SchemaRef, batches: &[RecordBatch]) -> Result<OutputTable, RunError> {
    let internal = |e: arrow_schema::ArrowError| RunError::internal(format!("output {name}: {e}"));
    let all = arrow_select::concat::concat_batches(&schema, batches).map_err(internal)?;
    let columns: Vec<SortColumn> =
        all.columns().iter().map(|c| SortColumn { values: Arc::clone(c), options: None }).collect();
    let batch = if all.num_rows() > 1 && !columns.is_empty() {
        let order = lexsort_to_indices(&columns, None).map_err(internal)?;
        arrow_select::take::take_record_batch(&all, &order).map_err(internal)?
    } else {
        all
    };
    let ipc = ipc::encode(&schema, std::slice::from_ref(&batch)).map_err(internal)?;
    Ok(OutputTable { name: name.to_owned(), sha256: sha256_hex(&ipc), schema, batch, ipc })
}
