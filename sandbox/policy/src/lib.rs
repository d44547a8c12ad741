//! Policy views: the only way analysis code sees public data.
//!
//! For a licence (a set of catalog datasets) this crate builds a DataFusion session that holds
//! nothing but one view per dataset, gates SQL to a single query, checks every use of every
//! column against its constraint before anything runs, and runs admitted queries within a memory
//! pool and a deadline.
//!
//! It must never register a raw table, a file, a table function or the pseudonymization
//! function in the session, and never run a query the checker has not admitted. A module's
//! output contract is judged here too (`contract`): as the SQL the host will run, by the same
//! checker.

mod checker;
mod classify;
pub mod contract;
mod gate;
mod lineage;
mod pseudonym;
mod rejection;
mod threshold;
mod units;
mod views;

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::DataFusionError;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream};
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::{Stream, StreamExt};
use sandbox_catalog::{Catalog, Variant};
use tokio::time::{Instant, Sleep};

pub use classify::classify_udf;
pub use lineage::{Flow, OutputColumn, Source};
pub use pseudonym::{DomainSecret, KeyError, PseudonymKey};
pub use rejection::{Classes, Place, Reason, Rejection, RestrictedKeys};
pub use views::files_table;

/// Limits on what one query may take.
#[derive(Debug, Clone)]
pub struct PolicyConfig {
    /// Bytes of memory a query's operators may hold. Queries do not spill to disk: raw rows are
    /// never written to temporary files, so a query over the limit fails.
    pub memory_limit: usize,
    /// Wall-clock time from planning to the last batch.
    pub query_timeout: Duration,
    pub max_sql_bytes: usize,
    /// How deeply SQL may nest (parentheses, subqueries), as the parser counts.
    pub max_sql_nesting: usize,
    /// How deep an expression tree may be, a chain `a + b + c ...` counting one level a term.
    /// Bounds the recursion of everything downstream that walks expressions.
    pub max_expr_depth: usize,
    /// Groups keyed by raw `group_by_only` values with fewer distinct privacy units than this
    /// are dropped from query results (DESIGN.md section 4; the audit's default threshold).
    pub min_group_units: usize,
    pub target_partitions: usize,
    pub batch_size: usize,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            memory_limit: 512 << 20,
            query_timeout: Duration::from_secs(60),
            max_sql_bytes: 64 << 10,
            max_sql_nesting: 50,
            max_expr_depth: 200,
            min_group_units: 10,
            target_partitions: std::thread::available_parallelism().map_or(2, |n| n.get()),
            batch_size: 8192,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The SQL breaks the gate or a column constraint. Nothing ran.
    #[error("rejected: {0}")]
    Rejected(Rejection),
    /// The SQL does not parse or plan (unknown column, type error ...). Nothing ran.
    #[error("invalid SQL: {0}")]
    InvalidSql(String),
    #[error("dataset {dataset} cannot be used: {reason}")]
    Dataset { dataset: String, reason: String },
    #[error("the query ran out of {0}")]
    ResourcesExhausted(String),
    /// The query failed while running. The text may quote data values: it must not leave the
    /// domain in production runs.
    #[error("the query failed: {0}")]
    QueryFailed(String),
}

/// What a caller can do about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidInput,
    Denied,
    ResourcesExhausted,
    Internal,
}

impl PolicyError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            PolicyError::Rejected(_) | PolicyError::Dataset { .. } => ErrorKind::Denied,
            PolicyError::InvalidSql(_) => ErrorKind::InvalidInput,
            PolicyError::ResourcesExhausted(_) => ErrorKind::ResourcesExhausted,
            PolicyError::QueryFailed(_) => ErrorKind::Internal,
        }
    }

    /// The message in Chinese, for operators.
    pub fn zh(&self) -> String {
        match self {
            PolicyError::Rejected(r) => format!("已拒绝：{}", r.zh()),
            PolicyError::InvalidSql(e) => format!("SQL 无效：{e}"),
            PolicyError::Dataset { dataset, reason } => format!("数据集 {dataset} 不可使用：{reason}"),
            PolicyError::ResourcesExhausted(what) => format!("查询超出资源限制：{what}"),
            PolicyError::QueryFailed(_) => "查询执行失败".to_owned(),
        }
    }

    fn from_datafusion(e: DataFusionError) -> PolicyError {
        match e.find_root() {
            DataFusionError::ResourcesExhausted(what) => PolicyError::ResourcesExhausted(what.clone()),
            _ => PolicyError::QueryFailed(e.strip_backtrace()),
        }
    }
}

/// An admitted query: where each output column comes from, and the plan that runs it.
#[derive(Debug, Clone)]
pub struct CheckedQuery {
    pub columns: Vec<OutputColumn>,
    /// Whether some grouping drops groups under the threshold.
    pub drops_small_groups: bool,
    plan: LogicalPlan,
}

/// A session holding one licence's policy views and nothing else.
pub struct PolicyContext {
    ctx: SessionContext,
    views: views::Views,
    config: PolicyConfig,
}

impl std::fmt::Debug for PolicyContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.views.views.iter().map(|v| v.name.as_str()).collect();
        f.debug_struct("PolicyContext").field("views", &names).field("config", &self.config).finish()
    }
}

impl PolicyContext {
    /// Builds the views of `datasets` over their `variant` files. Without a `key`, the views
    /// can check SQL but refuse to run a query that reads a pseudonymized column.
    pub fn new(
        catalog: &Catalog,
        datasets: &[&str],
        variant: Variant,
        key: Option<PseudonymKey>,
        config: PolicyConfig,
    ) -> Result<PolicyContext, PolicyError> {
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(FairSpillPool::new(config.memory_limit)))
            .with_disk_manager_builder(DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled))
            .build_arc()
            .map_err(|e| PolicyError::QueryFailed(e.strip_backtrace()))?;
        let session = SessionConfig::new()
            .with_information_schema(false)
            .with_target_partitions(config.target_partitions)
            .with_batch_size(config.batch_size);
        // The default functions, but no table functions (range, generate_series ...) and no
        // table factories: the views are the only relations.
        let state = SessionStateBuilder::new()
            .with_config(session)
            .with_runtime_env(runtime)
            .with_default_features()
            .with_table_functions(Default::default())
            .with_table_factories(Default::default())
            .build();
        let ctx = SessionContext::new_with_state(state);
        // The published classifications, which the checker lets restricted columns be grouped
        // and compared by.
        ctx.register_udf(classify_udf());

        let mut views = views::Views::default();
        for &id in datasets {
            let dataset = catalog.dataset(id).map_err(|_| PolicyError::Dataset {
                dataset: id.to_owned(),
                reason: "not in the catalog".to_owned(),
            })?;
            if views.views.iter().any(|v| v.name == id) {
                return Err(PolicyError::Dataset { dataset: id.to_owned(), reason: "listed twice".to_owned() });
            }
            let view = views::view(dataset, variant, key.as_ref())?;
            ctx.register_table(id, Arc::clone(&view.provider))
                .map_err(|e| PolicyError::Dataset { dataset: id.to_owned(), reason: e.strip_backtrace() })?;
            views.views.push(view);
        }
        Ok(PolicyContext { ctx, views, config })
    }

    /// The views and their schemas, as analysis code sees them.
    pub fn views(&self) -> Vec<(String, SchemaRef)> {
        self.views.views.iter().map(|v| (v.name.clone(), v.provider.schema())).collect()
    }

    /// Gates, plans and checks `sql` without running it, and prepares the plan that will run:
    /// the same query with groups under the threshold dropped.
    pub async fn check(&self, sql: &str) -> Result<CheckedQuery, PolicyError> {
        let plan = gate::plan(&self.ctx.state(), sql, &self.config).await?;
        let columns = checker::check(&self.views, &plan).map_err(PolicyError::Rejected)?;
        let (plan, drops_small_groups) =
            threshold::apply(&plan, &self.views, self.config.min_group_units).map_err(|e| {
                let detail = match e {
                    DataFusionError::Plan(message) => message,
                    other => other.strip_backtrace(),
                };
                PolicyError::Rejected(Rejection::new(Reason::SmallGroups(detail)))
            })?;
        Ok(CheckedQuery { columns, drops_small_groups, plan })
    }

    /// Checks `sql` and, if admitted, runs it. The stream ends with an error once the query's
    /// deadline passes.
    pub async fn execute(&self, sql: &str) -> Result<SendableRecordBatchStream, PolicyError> {
        let deadline = Instant::now() + self.config.query_timeout;
        let timeout = || PolicyError::ResourcesExhausted(format!("time (limit {:?})", self.config.query_timeout));
        let checked = self.check(sql).await?;
        let start = async {
            let frame = self.ctx.execute_logical_plan(checked.plan).await?;
            frame.execute_stream().await
        };
        let stream = tokio::time::timeout_at(deadline, start)
            .await
            .map_err(|_| timeout())?
            .map_err(PolicyError::from_datafusion)?;
        let limit = self.config.query_timeout;
        Ok(Box::pin(Deadline {
            schema: stream.schema(),
            inner: Some(stream),
            sleep: Box::pin(tokio::time::sleep_until(deadline)),
            limit,
        }))
    }

    /// Runs `sql` and gathers its result.
    pub async fn collect(&self, sql: &str) -> Result<Vec<RecordBatch>, PolicyError> {
        let mut stream = self.execute(sql).await?;
        let mut batches = Vec::new();
        while let Some(batch) = stream.next().await {
            batches.push(batch.map_err(PolicyError::from_datafusion)?);
        }
        Ok(batches)
    }
}

/// A result stream that fails, and drops the running query, when its deadline passes.
struct Deadline {
    schema: SchemaRef,
    inner: Option<SendableRecordBatchStream>,
    sleep: Pin<Box<Sleep>>,
    limit: Duration,
}

impl Stream for Deadline {
    type Item = datafusion::error::Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let Some(inner) = self.inner.as_mut() else { return Poll::Ready(None) };
        if let Poll::Ready(item) = inner.poll_next_unpin(cx) {
            return Poll::Ready(item);
        }
        if self.sleep.as_mut().poll(cx).is_ready() {
            self.inner = None;
            let message = format!("time (limit {:?})", self.limit);
            return Poll::Ready(Some(Err(DataFusionError::ResourcesExhausted(message))));
        }
        Poll::Pending
    }
}

impl RecordBatchStream for Deadline {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }
}
