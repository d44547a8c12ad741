//! One run: (module bytes, manifest, parameters, views) → (output tables, run record).
//!
//! The record says what the run cost and how it ended, as a code. Output tables are sorted
//! canonically (every column, in order) and encoded with a fixed layout before hashing, so the
//! same inputs give byte-identical outputs whatever order the module wrote its rows in.

use std::sync::Arc;
use std::time::Instant;

use arrow_array::RecordBatch;
use arrow_ord::sort::{SortColumn, lexsort_to_indices};
use arrow_schema::SchemaRef;
use sandbox_catalog::{Catalog, Variant};
use sandbox_policy::{PolicyContext, PseudonymKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use wasmtime::component::ResourceTable;
use wasmtime::{Store, Trap};

use crate::engine::{EPOCH_TICK, Runner};
use crate::host::sandbox::analysis::data;
use crate::host::{AnalysisPre, Failure, HostState, Parameter, Value};
use crate::ipc;
use crate::limits::{LimitHit, Limiter, RunLimits};
use crate::manifest::{Manifest, ParameterValue};
use crate::wasi::{self, DevLog};

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
    pub(crate) fn internal(detail: String) -> RunError {
        RunError::Internal { detail }
    }

    pub(crate) fn invalid_module(detail: String) -> RunError {
        RunError::InvalidModule { detail }
    }

    pub(crate) fn forbidden_import(imports: Vec<String>) -> RunError {
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

/// What a run needs.
#[derive(Debug)]
pub struct RunRequest<'a> {
    pub module: &'a [u8],
    /// The manifest's text: its SHA-256 goes into the record.
    pub manifest: &'a str,
    /// `name=value` pairs, checked against the manifest.
    pub parameters: &'a [(String, String)],
    pub catalog: &'a Catalog,
    pub mode: RunMode,
    /// The licence's pseudonym key (never a signing key).
    pub key: Option<PseudonymKey>,
    /// Limits for this run instead of the runner's. Memory and table limits cannot exceed the
    /// runner's: its pooling allocator is sized by those.
    pub limits: Option<RunLimits>,
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

    fn of(module_sha256: String, manifest: &str, mode: RunMode) -> RunRecord {
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

/// A finished run.
#[derive(Debug)]
pub struct RunOutcome {
    pub record: RunRecord,
    /// Empty unless the run succeeded.
    pub tables: Vec<OutputTable>,
    /// Kept for development runs only.
    pub dev_log: Option<(String, bool)>,
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Sorts a table's rows by every column in order and encodes them.
fn canonical(name: &str, schema: SchemaRef, batches: &[RecordBatch]) -> Result<OutputTable, RunError> {
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

fn classify(err: &wasmtime::Error, limiter: &Limiter) -> RunError {
    match err.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => RunError::FuelExhausted,
        Some(Trap::Interrupt) => RunError::Timeout,
        Some(Trap::StackOverflow) => RunError::StackOverflow,
        _ => match limiter.hit {
            Some(LimitHit::Memory) => RunError::MemoryLimit,
            Some(LimitHit::Table) => RunError::ResourceLimit,
            None => RunError::Trap,
        },
    }
}

impl Runner {
    /// Runs a module. Never panics on bad input: every failure is in the record.
    pub async fn run(&self, request: RunRequest<'_>) -> RunOutcome {
        let started = Instant::now();
        let loaded = self.load(request.module);
        let module_sha256 = match &loaded {
            Ok(loaded) => hex::encode(loaded.sha256),
            Err(_) => sha256_hex(request.module),
        };
        let mut record = RunRecord::of(module_sha256, request.manifest, request.mode);
        let limits = request.limits.clone().unwrap_or_else(|| self.limits.clone());
        let dev_log = DevLog::new(limits.dev_log_bytes, request.mode == RunMode::Development);
        let result = match loaded {
            Ok(loaded) => self.run_inner(&request, &loaded.pre, &limits, &mut record, &dev_log).await,
            Err(err) => Err(err),
        };
        let tables = match result {
            Ok(tables) => tables,
            Err(err) => {
                if request.mode == RunMode::Development {
                    dev_log.line("run", &err.explain());
                }
                record.error = Some(err);
                Vec::new()
            }
        };
        record.wall_time_ms = started.elapsed().as_millis() as u64;
        let dev_log = (request.mode == RunMode::Development).then(|| dev_log.contents());
        RunOutcome { record, tables, dev_log }
    }

    async fn run_inner(
        &self,
        request: &RunRequest<'_>,
        pre: &AnalysisPre<HostState>,
        limits: &RunLimits,
        record: &mut RunRecord,
        log: &DevLog,
    ) -> Result<Vec<OutputTable>, RunError> {
        let bad_manifest = |e: crate::manifest::ManifestError| RunError::InvalidManifest { detail: e.to_string() };
        let manifest = Arc::new(Manifest::parse(request.manifest).map_err(bad_manifest)?);
        let bound = manifest.bind(request.parameters).map_err(bad_manifest)?;
        record.parameters = bound.iter().map(|(n, v)| (n.clone(), v.to_string())).collect();

        let variant = match request.mode {
            RunMode::Development => Variant::Twin,
            RunMode::Production => Variant::Real,
        };
        let datasets: Vec<&str> = manifest.datasets.iter().map(String::as_str).collect();
        let policy =
            PolicyContext::new(request.catalog, &datasets, variant, request.key.clone(), limits.policy.clone())
                .map_err(|e| RunError::InvalidManifest { detail: format!("{e} / {}", e.zh()) })?;
        let views = policy.views();
        manifest.check_views(&views).map_err(bad_manifest)?;
        let view_list = view_list(request.catalog, &views);

        // The run's seed: the same module, manifest and parameters give the same randomness.
        let mut seed_input = Sha256::new();
        seed_input.update(&record.module_sha256);
        seed_input.update(&record.manifest_sha256);
        for (name, value) in &record.parameters {
            seed_input.update(format!("{name}={value}\n"));
        }
        let seed: [u8; 32] = seed_input.finalize().into();

        let state = HostState {
            wasi: wasi::context(&seed, log),
            table: ResourceTable::new(),
            limiter: Limiter::new(limits),
            limits: limits.clone(),
            policy: Arc::new(policy),
            views,
            view_list,
            manifest: Arc::clone(&manifest),
            log: log.clone(),
            live_queries: 0,
            queries: 0,
            query_bytes: 0,
            outputs: Default::default(),
            output_rows: 0,
            output_bytes: 0,
            violation: None,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        if self.limits.meter_fuel {
            store.set_fuel(limits.fuel).map_err(|e| RunError::internal(e.to_string()))?;
        }
        let ticks = (limits.wall_time.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64;
        store.set_epoch_deadline(ticks);
        store.epoch_deadline_trap();

        let parameters: Vec<Parameter> = bound
            .into_iter()
            .map(|(name, value)| Parameter {
                name,
                value: match value {
                    ParameterValue::Integer(v) => Value::Integer(v),
                    ParameterValue::Number(v) => Value::Number(v),
                    ParameterValue::Text(v) => Value::Text(v),
                    ParameterValue::Boolean(v) => Value::Boolean(v),
                },
            })
            .collect();

        // The epoch stops wasm code; this stops a run stuck in a host call (a long query, a
        // guest asleep in WASI).
        let grace = limits.wall_time + std::time::Duration::from_secs(1);
        let outcome = tokio::time::timeout(grace, async {
            let bindings = pre.instantiate_async(&mut store).await?;
            bindings.call_run(&mut store, &parameters).await
        })
        .await;

        if self.limits.meter_fuel {
            let remaining = store.get_fuel().unwrap_or(0);
            record.fuel_used = limits.fuel.saturating_sub(remaining);
        }
        let state = store.data();
        record.peak_memory_bytes = state.limiter.peak_memory as u64;
        record.queries = state.queries;
        record.query_bytes = state.query_bytes;

        match outcome {
            Err(_elapsed) => return Err(RunError::Timeout),
            Ok(Err(err)) => {
                log.line("trap", &format!("{err:?}"));
                return Err(classify(&err, &state.limiter));
            }
            Ok(Ok(Err(failure))) => {
                if let Some(code) = state.violation {
                    return Err(RunError::OutputRefused { host: code.as_str().to_owned() });
                }
                return Err(match failure {
                    Failure::Host(code) => RunError::Host { host: code.as_str().to_owned() },
                    Failure::Module(code) => RunError::Module { module: code },
                });
            }
            Ok(Ok(Ok(()))) => {}
        }
        if let Some(code) = state.violation {
            return Err(RunError::OutputRefused { host: code.as_str().to_owned() });
        }
        let mut tables = Vec::new();
        for spec in &manifest.outputs {
            match state.outputs.get(&spec.name) {
                Some(out) if out.finished => tables.push(canonical(&spec.name, Arc::clone(&out.schema), &out.batches)?),
                _ => return Err(RunError::MissingOutput { table: spec.name.clone() }),
            }
        }
        record.output_rows = tables.iter().map(|t| t.batch.num_rows() as u64).sum();
        Ok(tables)
    }
}

/// The views as the guest sees them: columns with their types and constraints.
fn view_list(catalog: &Catalog, views: &[(String, SchemaRef)]) -> Vec<data::View> {
    views
        .iter()
        .map(|(name, schema)| {
            let dataset = catalog.dataset(name).ok();
            let columns = schema
                .fields()
                .iter()
                .map(|field| data::Column {
                    name: field.name().clone(),
                    data_type: field.data_type().to_string(),
                    constraint: dataset
                        .and_then(|d| d.columns.iter().find(|c| &c.name == field.name()))
                        .map(|c| c.constraint.as_str().to_owned())
                        .unwrap_or_default(),
                })
                .collect();
            data::View { name: name.clone(), columns }
        })
        .collect()
}
