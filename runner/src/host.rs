//! The host side of `sandbox:analysis`: the only door a module has.
//!
//! Every call is bounded (query handles, bytes per chunk and per append, total output) and every
//! refusal reaches the guest as an `error-code`. Explanations — the checker's rejection, the
//! query engine's error text — go only to the development log, which production runs drop: such
//! text can quote data values.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use datafusion::physical_plan::SendableRecordBatchStream;
use futures::StreamExt;
use sandbox_policy::{PolicyContext, PolicyError};
use tokio::sync::mpsc;
use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::limits::{Limiter, RunLimits};
use crate::wasi::DevLog;
use sandbox_contract::ipc;
use sandbox_contract::manifest::Manifest;

wasmtime::component::bindgen!({
    path: "wit",
    world: "analysis",
    imports: { default: async | trappable },
    exports: { default: async },
    with: {
        "sandbox:analysis/data.query-result": QueryHandle,
        "sandbox:analysis/output.table-writer": WriterHandle,
    },
});

use sandbox::analysis::{data, log, output};

impl ErrorCode {
    /// The code as WIT spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidSql => "invalid-sql",
            ErrorCode::Denied => "denied",
            ErrorCode::ResourcesExhausted => "resources-exhausted",
            ErrorCode::QueryFailed => "query-failed",
            ErrorCode::TooManyQueries => "too-many-queries",
            ErrorCode::Closed => "closed",
            ErrorCode::UndeclaredTable => "undeclared-table",
            ErrorCode::SchemaMismatch => "schema-mismatch",
            ErrorCode::InvalidIpc => "invalid-ipc",
            ErrorCode::TooLarge => "too-large",
            ErrorCode::InvalidParameter => "invalid-parameter",
            ErrorCode::NoData => "no-data",
            ErrorCode::ModuleFailed => "module-failed",
        }
    }
}

/// A running query: batches arrive from a task on the host's runtime (so that DataFusion never
/// runs on the guest's fiber stack), and a partly sent batch waits in `pending`.
#[allow(unreachable_pub)] // named by the generated bindings
pub struct QueryHandle {
    schema: SchemaRef,
    batches: mpsc::Receiver<Result<RecordBatch, PolicyError>>,
    pending: Option<RecordBatch>,
    done: bool,
}

/// An output table being written, by its declared name.
#[allow(unreachable_pub)] // named by the generated bindings
pub struct WriterHandle {
    table: String,
}

/// An output table as the host holds it while the run goes on.
#[derive(Debug)]
pub(crate) struct OutputState {
    pub(crate) schema: SchemaRef,
    pub(crate) batches: Vec<RecordBatch>,
    pub(crate) finished: bool,
}

/// Everything a run's store holds.
pub(crate) struct HostState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limiter: Limiter,
    pub(crate) limits: RunLimits,
    pub(crate) policy: Arc<PolicyContext>,
    pub(crate) views: Vec<(String, SchemaRef)>,
    pub(crate) view_list: Vec<data::View>,
    pub(crate) manifest: Arc<Manifest>,
    pub(crate) log: DevLog,
    pub(crate) live_queries: usize,
    pub(crate) queries: u32,
    /// Bytes of Arrow IPC handed to the guest by `next`.
    pub(crate) query_bytes: u64,
    pub(crate) outputs: BTreeMap<String, OutputState>,
    pub(crate) output_rows: u64,
    pub(crate) output_bytes: u64,
    /// The first breach of the output contract or of an output limit. It fails the run even if
    /// the module carries on as if nothing happened.
    pub(crate) violation: Option<ErrorCode>,
}

impl std::fmt::Debug for HostState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostState").field("queries", &self.queries).field("outputs", &self.outputs.len()).finish()
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

fn policy_code(err: &PolicyError) -> ErrorCode {
    match err {
        PolicyError::Rejected(_) | PolicyError::Dataset { .. } => ErrorCode::Denied,
        PolicyError::InvalidSql(_) => ErrorCode::InvalidSql,
        PolicyError::ResourcesExhausted(_) => ErrorCode::ResourcesExhausted,
        PolicyError::QueryFailed(_) => ErrorCode::QueryFailed,
    }
}

impl HostState {
    fn refuse(&mut self, code: ErrorCode, why: &str) -> ErrorCode {
        self.log.line("host", &format!("{}: {why}", code.as_str()));
        code
    }

    fn breach(&mut self, code: ErrorCode, why: &str) -> ErrorCode {
        self.violation.get_or_insert(code);
        self.refuse(code, why)
    }
}

impl sandbox::analysis::types::Host for HostState {}

impl data::Host for HostState {
    async fn views(&mut self) -> wasmtime::Result<Vec<data::View>> {
        Ok(self.view_list.clone())
    }

    async fn query(&mut self, sql: String) -> wasmtime::Result<Result<Resource<QueryHandle>, ErrorCode>> {
        if self.live_queries >= self.limits.live_queries {
            let why = format!("{} query results are open; finish one first", self.live_queries);
            return Ok(Err(self.refuse(ErrorCode::TooManyQueries, &why)));
        }
        self.queries += 1;
        self.log.line("query", &sql);
        // Planning and execution run as a task on the host runtime, off the guest's fiber stack.
        let policy = Arc::clone(&self.policy);
        let started = tokio::spawn(async move { policy.execute(&sql).await }).await;
        let stream: SendableRecordBatchStream = match started {
            Ok(Ok(stream)) => stream,
            Ok(Err(err)) => {
                let why = format!("{err} / {}", err.zh());
                return Ok(Err(self.refuse(policy_code(&err), &why)));
            }
            Err(join) => return Ok(Err(self.refuse(ErrorCode::QueryFailed, &join.to_string()))),
        };
        let schema = stream.schema();
        let (tx, rx) = mpsc::channel(2);
        tokio::spawn(async move {
            let mut stream = stream;
            while let Some(batch) = stream.next().await {
                let batch = batch.map_err(|e| match e.find_root() {
                    datafusion::error::DataFusionError::ResourcesExhausted(what) => {
                        PolicyError::ResourcesExhausted(what.clone())
                    }
                    _ => PolicyError::QueryFailed(e.strip_backtrace()),
                });
                let failed = batch.is_err();
                if tx.send(batch).await.is_err() || failed {
                    break;
                }
            }
        });
        let handle = self.table.push(QueryHandle { schema, batches: rx, pending: None, done: false })?;
        self.live_queries += 1;
        Ok(Ok(handle))
    }
}

impl data::HostQueryResult for HostState {
    async fn schema(&mut self, handle: Resource<QueryHandle>) -> wasmtime::Result<Vec<u8>> {
        let schema = Arc::clone(&self.table.get(&handle)?.schema);
        Ok(ipc::encode(&schema, &[])?)
    }

    async fn next(
        &mut self,
        handle: Resource<QueryHandle>,
        max_bytes: u64,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, ErrorCode>> {
        let cap = usize::try_from(max_bytes).unwrap_or(usize::MAX).min(self.limits.chunk_bytes);
        let query = self.table.get_mut(&handle)?;
        loop {
            if query.done {
                return Ok(Ok(None));
            }
            let batch = match query.pending.take() {
                Some(batch) => batch,
                None => match query.batches.recv().await {
                    None => {
                        query.done = true;
                        return Ok(Ok(None));
                    }
                    Some(Ok(batch)) => batch,
                    Some(Err(err)) => {
                        query.done = true;
                        let why = format!("{err} / {}", err.zh());
                        return Ok(Err(self.refuse(policy_code(&err), &why)));
                    }
                },
            };
            if batch.num_rows() == 0 {
                continue;
            }
            match ipc::encode_chunk(&batch, cap)? {
                Some((bytes, rest)) => {
                    query.pending = rest;
                    self.query_bytes += bytes.len() as u64;
                    return Ok(Ok(Some(bytes)));
                }
                None => {
                    query.pending = Some(batch);
                    let why = format!("one row is larger than {cap} bytes; ask for more");
                    return Ok(Err(self.refuse(ErrorCode::TooLarge, &why)));
                }
            }
        }
    }

    async fn drop(&mut self, handle: Resource<QueryHandle>) -> wasmtime::Result<()> {
        // Dropping the receiver stops the task that feeds it, and with it the query.
        self.table.delete(handle)?;
        self.live_queries -= 1;
        Ok(())
    }
}

impl output::Host for HostState {
    async fn begin(
        &mut self,
        name: String,
        schema: Vec<u8>,
    ) -> wasmtime::Result<Result<Resource<WriterHandle>, ErrorCode>> {
        let Some(spec) = self.manifest.output(&name) else {
            let why = format!("the manifest declares no output table {name:?}");
            return Ok(Err(self.breach(ErrorCode::UndeclaredTable, &why)));
        };
        if self.outputs.contains_key(&name) {
            let why = format!("output table {name:?} was already begun");
            return Ok(Err(self.breach(ErrorCode::UndeclaredTable, &why)));
        }
        let schema = match ipc::read_schema(&schema, self.limits.append_bytes) {
            Ok(schema) => schema,
            Err(err) => return Ok(Err(self.breach(ipc_code(&err), &err.to_string()))),
        };
        if let Err(why) = spec.check_schema(&schema, &self.views) {
            return Ok(Err(self.breach(ErrorCode::SchemaMismatch, &why)));
        }
        self.outputs.insert(name.clone(), OutputState { schema, batches: Vec::new(), finished: false });
        Ok(Ok(self.table.push(WriterHandle { table: name })?))
    }
}

fn ipc_code(err: &ipc::IpcError) -> ErrorCode {
    match err {
        ipc::IpcError::TooLarge(..) => ErrorCode::TooLarge,
        ipc::IpcError::SchemaMismatch => ErrorCode::SchemaMismatch,
        ipc::IpcError::Malformed(_) | ipc::IpcError::Compressed => ErrorCode::InvalidIpc,
    }
}

impl output::HostTableWriter for HostState {
    async fn append(
        &mut self,
        handle: Resource<WriterHandle>,
        bytes: Vec<u8>,
    ) -> wasmtime::Result<Result<(), ErrorCode>> {
        let table = self.table.get(&handle)?.table.clone();
        let output = self.outputs.get(&table).expect("writers exist only for begun tables");
        if output.finished {
            return Ok(Err(self.refuse(ErrorCode::Closed, &format!("output table {table:?} is finished"))));
        }
        let batches = match ipc::read_batches(&bytes, &output.schema, self.limits.append_bytes) {
            Ok(batches) => batches,
            Err(err) => return Ok(Err(self.breach(ipc_code(&err), &format!("table {table:?}: {err}")))),
        };
        let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
        let total_rows = self.output_rows + rows;
        let total_bytes = self.output_bytes + bytes.len() as u64;
        if total_rows > self.limits.output_rows || total_bytes > self.limits.output_bytes {
            let why = format!(
                "the output would hold {total_rows} rows and {total_bytes} bytes; the limits are {} rows and {} bytes",
                self.limits.output_rows, self.limits.output_bytes
            );
            return Ok(Err(self.breach(ErrorCode::TooLarge, &why)));
        }
        self.output_rows = total_rows;
        self.output_bytes = total_bytes;
        self.outputs.get_mut(&table).expect("checked above").batches.extend(batches);
        Ok(Ok(()))
    }

    async fn finish(&mut self, handle: Resource<WriterHandle>) -> wasmtime::Result<Result<(), ErrorCode>> {
        let table = self.table.get(&handle)?.table.clone();
        let output = self.outputs.get_mut(&table).expect("writers exist only for begun tables");
        if output.finished {
            return Ok(Err(self.refuse(ErrorCode::Closed, &format!("output table {table:?} is finished"))));
        }
        output.finished = true;
        Ok(Ok(()))
    }

    async fn drop(&mut self, handle: Resource<WriterHandle>) -> wasmtime::Result<()> {
        self.table.delete(handle)?;
        Ok(())
    }
}

impl log::Host for HostState {
    async fn write(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        let tag = match level {
            log::Level::Debug => "debug",
            log::Level::Info => "info",
            log::Level::Warn => "warn",
            log::Level::Error => "error",
        };
        self.log.line(tag, &message);
        Ok(())
    }
}
