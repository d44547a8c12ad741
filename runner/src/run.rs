//! One run: (module bytes, manifest, parameters, views) → (output tables, run record).
//!
//! The record says what the run cost and how it ended, as a code (`sandbox_contract::run`).

use std::sync::Arc;
use std::time::Instant;

use arrow_schema::SchemaRef;
use sandbox_catalog::{Catalog, Variant};
use sandbox_contract::manifest::{Manifest, ParameterValue};
use sandbox_contract::run::{OutputTable, RunError, RunMode, RunRecord, canonical, sha256_hex};
use sandbox_policy::{PolicyContext, PseudonymKey};
use sha2::{Digest, Sha256};
use wasmtime::component::ResourceTable;
use wasmtime::{Store, Trap};

use crate::engine::{EPOCH_TICK, Runner};
use crate::host::sandbox::analysis::data;
use crate::host::{AnalysisPre, Failure, HostState, Parameter, Value};
use crate::limits::{LimitHit, Limiter, RunLimits};
use crate::wasi::{self, DevLog};

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

/// A finished run.
#[derive(Debug)]
pub struct RunOutcome {
    pub record: RunRecord,
    /// Empty unless the run succeeded.
    pub tables: Vec<OutputTable>,
    /// Kept for development runs only.
    pub dev_log: Option<(String, bool)>,
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
        let bad_manifest =
            |e: sandbox_contract::manifest::ManifestError| RunError::InvalidManifest { detail: e.to_string() };
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
