//! Runs: a queue with a concurrency limit in front of runner processes (`sandbox runner`), then
//! the output audit, signing, logging and release, all in this (key-holding) process.
//!
//! The runner process gets its request on stdin (paths, parameters and the licence's pseudonym
//! key, never a signing key) and answers on stdout; it has no network and is killed at the
//! run's timeout or on cancellation. Production runs keep only codes from it: its stderr is
//! discarded and its development log is never asked for.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use sandbox_audit::AuditRequest;
use sandbox_audit::review::Approval;
use sandbox_catalog::Variant;
use sandbox_contract::Manifest;
use sandbox_contract::run::{Failed, RunMode};
use sandbox_contract::wire::{CompileRequest, RunnerRequest};
use sandbox_verify::event::Event;
use sandbox_verify::time::Timestamp;
use serde_json::json;
use tokio::sync::{Semaphore, watch};

use crate::error::ServiceError;
use crate::executor::{Answer, Ended, cancelled};
use crate::model::{RunStatus, Stop};
use crate::{Core, DataDir, WriteGuard, internal};

/// The queue: a permit per concurrent run, and a way to cancel each run under way.
pub(crate) struct Queue {
    permits: Arc<Semaphore>,
    cancels: Mutex<HashMap<String, watch::Sender<bool>>>,
    /// Development runs run alone: one beside a production run could time how the production
    /// module loads the machine, and a development run's times go to its operator in full.
    development: tokio::sync::RwLock<()>,
}

impl Queue {
    pub(crate) fn new(max: usize) -> Queue {
        Queue {
            permits: Arc::new(Semaphore::new(max.max(1))),
            cancels: Mutex::default(),
            development: tokio::sync::RwLock::new(()),
        }
    }

    /// Asks the run to stop; false if it is not queued or running here.
    pub(crate) fn cancel(&self, run: &str) -> bool {
        let cancels = self.cancels.lock().unwrap_or_else(|e| e.into_inner());
        cancels.get(run).is_some_and(|tx| tx.send(true).is_ok())
    }
}

/// A production run as queued.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    pub(crate) id: String,
    pub(crate) module: String,
    pub(crate) operator: String,
    pub(crate) licence: String,
    pub(crate) agreement: String,
    pub(crate) recipient: String,
    pub(crate) datasets: String,
    pub(crate) parameters: Vec<(String, String)>,
}

pub(crate) fn module_path(core: &Core, module: &str) -> PathBuf {
    core.dir.modules().join(&DataDir::module_files(module)[0])
}

pub(crate) fn manifest_path(core: &Core, module: &str) -> PathBuf {
    core.dir.modules().join(&DataDir::module_files(module)[1])
}

/// Runs a module through the executor. `production` reads the real data with the licence's
/// pseudonym key; otherwise the twins, with a key of their own. An answer that is not of the
/// run asked for (module, manifest, mode, bound parameters) is `runner-protocol`.
async fn run_process(
    core: &Core,
    module: &str,
    licence: &str,
    parameters: &[(String, String)],
    production: bool,
    cancel: watch::Receiver<bool>,
) -> Ended {
    let scope = if production { licence.to_owned() } else { format!("dev:{licence}") };
    let key = hex::encode(core.secret.licence_key(&scope).to_bytes());
    let mode = if production { RunMode::Production } else { RunMode::Development };
    let request = RunnerRequest {
        catalog: core.dir.catalog(),
        module: module_path(core, module),
        manifest: manifest_path(core, module),
        parameters: parameters.to_vec(),
        mode,
        key: Some(key),
        cache_dir: Some(core.dir.cache()),
        require_isolation: core.config.require_isolation,
    };
    match core.executor.run(&request, cancel).await {
        Ended::Done(answer) if answers(core, module, mode, parameters, &answer) => Ended::Done(answer),
        Ended::Done(_) => {
            tracing::warn!("the runner's answer is not of the run asked for (record or tables)");
            Ended::Failed("runner-protocol".into())
        }
        other => other,
    }
}

/// Whether a runner's answer is of the run asked for, by the module and manifest the server
/// holds: its record (module, manifest, mode, bound parameters), and every table one the
/// manifest declares, once, with its columns in order — the audit reads columns by position
/// (red team round 7: a table of another module's shape made it panic).
fn answers(core: &Core, module: &str, mode: RunMode, parameters: &[(String, String)], answer: &Answer) -> bool {
    let manifest_sha256 = core.view().ok().and_then(|v| v.module(module).ok().flatten()).map(|m| m.manifest_sha256);
    let (Some(manifest_sha256), Ok(manifest)) = (manifest_sha256, read_manifest(core, module)) else {
        return false;
    };
    let Ok(bound) = manifest.bind(parameters) else { return false };
    let bound: Vec<(String, String)> = bound.into_iter().map(|(name, value)| (name, value.to_string())).collect();
    let tables = &answer.tables;
    answer.record.is_of(module, &manifest_sha256, mode, &bound)
        && tables.iter().enumerate().all(|(i, table)| {
            let names: Vec<&str> = table.schema.fields().iter().map(|f| f.name().as_str()).collect();
            !tables[..i].iter().any(|t| t.name == table.name)
                && manifest.output(&table.name).is_some_and(|spec| spec.column_names() == names)
        })
}

/// Compiles an approved module into the cache through the executor (`sandbox runner
/// --compile`, which runs no module; the processes that run modules see the cache read-only).
/// A failure is only noted: a run then compiles the module in its own memory, as it would
/// without a cache.
pub(crate) fn compile_approved(core: Arc<Core>, module: String) {
    tokio::spawn(async move {
        let request = CompileRequest {
            module: module_path(&core, &module),
            cache_dir: core.dir.cache(),
            require_isolation: core.config.require_isolation,
        };
        if let Err(code) = core.executor.compile(&request).await {
            tracing::warn!(%module, %code, "compiling the approved module failed; runs compile it themselves");
        }
    });
}

/// A development run on the synthetic twins, answered in full to the operator.
pub(crate) async fn develop(
    core: &Core,
    module: &str,
    licence: &str,
    parameters: &[(String, String)],
) -> Result<Answer, String> {
    let _permit = core.runs.permits.acquire().await.map_err(|_| "the queue is closed".to_owned())?;
    let _alone = core.runs.development.write().await;
    let (_tx, rx) = watch::channel(false);
    let ended = run_process(core, module, licence, parameters, false, rx).await;
    core.executor.settle().await;
    match ended {
        Ended::Done(answer) => Ok(*answer),
        Ended::Failed(code) => Err(code),
        Ended::Cancelled => Err("cancelled".into()),
    }
}

/// Queues a production run whose `run.queued` entry is logged.
pub(crate) fn enqueue(core: Arc<Core>, spec: Spec) {
    let (tx, rx) = watch::channel(false);
    core.runs.cancels.lock().unwrap_or_else(|e| e.into_inner()).insert(spec.id.clone(), tx);
    core.metrics.queued.inc();
    let span = tracing::info_span!("run", id = %spec.id, module = %spec.module, operator = %spec.operator);
    let ended = async move {
        let id = spec.id.clone();
        // In a task of its own, so that a panic anywhere in the pipeline (the audit on an
        // answer it did not expect, red team round 7) ends the run as failed instead of
        // leaving it running for ever.
        let pipeline = tokio::spawn({
            let (core, spec) = (Arc::clone(&core), spec.clone());
            tracing::Instrument::in_current_span(async move { production(&core, &spec, rx).await })
        });
        let status = match pipeline.await {
            Ok(Ok(status)) => status,
            failed => {
                match failed {
                    Ok(Err(e)) => tracing::error!(%e, "the run failed in the server"),
                    _ => tracing::error!("the run's pipeline panicked"),
                }
                let _ = finish(&core, &id, RunStatus::Failed, Some(Failed::Interrupted)).await;
                RunStatus::Failed
            }
        };
        core.metrics.runs.get_or_create(&vec![("status", status.as_str().to_owned())]).inc();
        core.runs.cancels.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
        tracing::info!(status = status.as_str(), "run ended");
    };
    tokio::spawn(tracing::Instrument::instrument(ended, span));
}

/// Logs the end of a run that ends before its audit; returns `status`. A failure is told as
/// one of four codes ([`Failed`]), never the runner's own.
async fn finish(core: &Core, run: &str, status: RunStatus, error: Option<Failed>) -> Result<RunStatus, ServiceError> {
    let guard = core.write.lock().await;
    finish_locked(core, &guard, run, status, error).await?;
    Ok(status)
}

async fn finish_locked(
    core: &Core,
    guard: &WriteGuard<'_>,
    run: &str,
    status: RunStatus,
    error: Option<Failed>,
) -> Result<u64, ServiceError> {
    let event = Event::RunFinished {
        run: run.to_owned(),
        status: status.as_str().to_owned(),
        error: error.map(|code| code.as_str().to_owned()),
        stopped: None,
    };
    core.commit_own(guard, event).await
}

/// The audit's outcome for `run`, as logged.
fn outcome(run: &str, outcome: &str, report: &str, released: usize, held: &[&str]) -> Event {
    Event::AuditOutcome {
        run: run.to_owned(),
        outcome: outcome.to_owned(),
        report: report.to_owned(),
        released: released as u32,
        held: (!held.is_empty()).then(|| held.iter().map(|t| (*t).to_owned()).collect()),
    }
}

/// What stops a run that was queued, is running or waits for its reviewers, if anything: its
/// licence suspended, revoked or outside its period, its module no longer approved, its
/// agreement ended or expired, or its operator or recipient disabled. Checked when it starts
/// and again, under the write lock, before anything of it is released: a suspension stops what
/// was already queued.
pub(crate) fn stopped(core: &Core, run: &str) -> Result<Option<Stop>, ServiceError> {
    let view = core.view()?;
    let now = Timestamp::now();
    let missing = |what: &str| internal("run standing", format!("run {run}'s {what} is not in the projection"));
    let run = view.run(run)?.ok_or_else(|| missing("row"))?;
    let licence = view.licence(&run.licence)?.ok_or_else(|| missing("licence"))?;
    let module = view.module(&run.module)?.ok_or_else(|| missing("module"))?;
    let agreement = view.agreement(&run.agreement)?.ok_or_else(|| missing("agreement"))?;
    let disabled = |name: &str| view.principal(name).map(|p| p.is_some_and(|p| p.disabled.is_some()));
    Ok(if !licence.in_force(now) {
        Some(Stop::Licence)
    } else if view.incident_blocks(&licence.id)? {
        Some(Stop::Incident)
    } else if module.status != crate::model::ModuleStatus::Approved {
        Some(Stop::Module)
    } else if !agreement.in_force(now) {
        Some(Stop::Agreement)
    } else if disabled(&run.operator)? || disabled(&agreement.application_unit)? {
        Some(Stop::Principal)
    } else {
        None
    })
}

/// Ends a run that [`stopped`] names a reason for, or whose data changed since it was queued:
/// withheld, nothing of it released, the reason logged (`stopped`: licence, module, agreement,
/// principal or dataset).
pub(crate) async fn end_stopped(
    core: &Core,
    guard: &WriteGuard<'_>,
    run: &str,
    what: Stop,
) -> Result<RunStatus, ServiceError> {
    let event = Event::RunFinished {
        run: run.to_owned(),
        status: RunStatus::Withheld.as_str().to_owned(),
        error: None,
        stopped: Some(what.as_str().to_owned()),
    };
    core.commit_own(guard, event).await?;
    Ok(RunStatus::Withheld)
}

/// Ends every run waiting for its reviewers whose licence or module was revoked, or whose
/// agreement ended or expired: nothing of it can leave any more (a suspension only pauses it:
/// approvals are refused until the licence is resumed). Called after each such entry.
pub(crate) async fn end_held(core: &Core, guard: &WriteGuard<'_>) -> Result<(), ServiceError> {
    let now = Timestamp::now();
    let mut ended = Vec::new();
    {
        let view = core.view()?;
        for run in view.runs_in(&[RunStatus::Review])? {
            let licence = view.licence(&run.licence)?;
            let module = view.module(&run.module)?;
            let agreement = view.agreement(&run.agreement)?;
            let licence_gone = licence
                .is_none_or(|l| l.status == crate::model::LicenceStatus::Revoked || now.to_string() >= l.valid_until);
            let what = if licence_gone {
                Stop::Licence
            } else if module.is_none_or(|m| m.status != crate::model::ModuleStatus::Approved) {
                Stop::Module
            } else if agreement.is_none_or(|a| !a.in_force(now)) {
                Stop::Agreement
            } else {
                continue;
            };
            ended.push((run.id, what));
        }
    }
    for (run, what) in ended {
        end_stopped(core, guard, &run, what).await?;
        forget_answer(core, &run)?;
    }
    Ok(())
}

/// How a runner process's own failure is told: it ran too long or answered too much (limits),
/// or the host stopped it.
fn process_failure(code: &str) -> Failed {
    if matches!(code, "timeout" | "too-large") { Failed::Limits } else { Failed::Interrupted }
}

/// Waits until a whole number of `quantum`s has passed since `started` (nothing, for a zero
/// quantum): a production run's end is logged and answered only then, so how long the module
/// ran says less.
async fn pad(started: tokio::time::Instant, quantum: std::time::Duration) {
    if quantum.is_zero() {
        return;
    }
    let elapsed = started.elapsed().as_nanos();
    let step = quantum.as_nanos();
    let wait = (step - elapsed % step) % step;
    tokio::time::sleep(std::time::Duration::from_nanos(wait as u64)).await;
}

/// One production run from the queue to its release; returns its final status.
async fn production(
    core: &Arc<Core>,
    spec: &Spec,
    mut cancel: watch::Receiver<bool>,
) -> Result<RunStatus, ServiceError> {
    let permit = tokio::select! {
        permit = core.runs.permits.acquire() => permit.map_err(|_| ServiceError::unavailable("the run queue is closed", "运行队列已关闭"))?,
        () = cancelled(&mut cancel) => {
            core.metrics.queued.dec();
            return finish(core, &spec.id, RunStatus::Cancelled, None).await;
        }
    };
    core.metrics.queued.dec();
    core.metrics.running.inc();
    let shared = core.runs.development.read().await;
    let result = production_with_permit(core, spec, &mut cancel).await;
    core.executor.settle().await;
    drop(shared);
    core.metrics.running.dec();
    drop(permit);
    result
}

async fn production_with_permit(
    core: &Arc<Core>,
    spec: &Spec,
    cancel: &mut watch::Receiver<bool>,
) -> Result<RunStatus, ServiceError> {
    // A run queued before its licence was suspended (or its module revoked, its agreement
    // ended) does not start.
    {
        let guard = core.write.lock().await;
        if let Some(what) = stopped(core, &spec.id)? {
            return end_stopped(core, &guard, &spec.id, what).await;
        }
        // Its data changed since it was queued: the run would read other data than the
        // versions its entry names. A new version is logged and the run ends.
        let named: Vec<(&str, &str)> = spec.datasets.split(',').filter_map(|d| d.split_once('@')).collect();
        let datasets: Vec<String> = named.iter().map(|(d, _)| (*d).to_owned()).collect();
        crate::reversion(core, &guard, &datasets).await?;
        for (dataset, version) in named {
            let now = core.view()?.dataset_version(dataset)?;
            if now.as_deref() != Some(version) {
                return end_stopped(core, &guard, &spec.id, Stop::Dataset).await;
            }
        }
    }
    {
        let guard = core.write.lock().await;
        core.commit_own(&guard, Event::RunStarted { run: spec.id.clone() }).await?;
    }
    let started = tokio::time::Instant::now();
    let quantum = std::time::Duration::from_millis(core.policy.runs().answer_quantum_ms);
    let manifest = read_manifest(core, &spec.module)?;

    // Differential privacy: the run's ρ is reserved before it runs and kept once the module has
    // run on the data, however the run ends (its outcome and the audit's verdicts depend on the
    // data too); only a cancelled run, which tells nothing, gives it back.
    let dp: Vec<(&str, &sandbox_audit::DpSettings)> =
        manifest.datasets.iter().filter_map(|d| core.policy.dp(d).map(|s| (d.as_str(), s))).collect();
    let reservation = if dp.is_empty() {
        None
    } else {
        match core.ledger.reserve(&spec.operator, &dp) {
            Ok(id) => Some(id),
            Err(e) => {
                tracing::warn!(%e, "no privacy budget left");
                pad(started, quantum).await;
                return finish(core, &spec.id, RunStatus::Failed, Some(Failed::Limits)).await;
            }
        }
    };
    let settle = |cancelled: bool| {
        if let Some(id) = reservation {
            let _ = if cancelled { core.ledger.refund(id) } else { core.ledger.keep(id) };
        }
    };
    // Nothing of the run is logged or answered until a whole number of quanta after it started,
    // whichever way it ends: how long the module, or the audit of its table, took says nothing.
    // A cancel asked for before then ends it as cancelled, whether or not it had finished.
    let ending = |cancel: watch::Receiver<bool>| async move {
        pad(started, quantum).await;
        cancel.has_changed().is_ok() && *cancel.borrow()
    };

    // The host's evidence is asked for while the module runs: it needs the contract and the
    // data, not the module's output (on two cores, the module's query takes one).
    let (hasher, _) = history(core)?;
    let prefetch =
        sandbox_audit::prefetch(&core.catalog, Variant::Real, &manifest, &spec.parameters, &core.policy, &hasher);
    let running = run_process(core, &spec.module, &spec.licence, &spec.parameters, true, cancel.clone());
    let (ended, prefetched) = beside(running, prefetch).await;
    let process_ms = started.elapsed().as_millis();
    let run_dir = core.dir.runs().join(&spec.id);
    std::fs::create_dir_all(&run_dir).map_err(|e| internal("run folder", e))?;
    let answer = match ended {
        Ended::Done(answer) => answer,
        Ended::Failed(code) => {
            let cancelled = ending(cancel.clone()).await;
            settle(cancelled);
            return match cancelled {
                true => finish(core, &spec.id, RunStatus::Cancelled, None).await,
                false => finish(core, &spec.id, RunStatus::Failed, Some(process_failure(&code))).await,
            };
        }
        Ended::Cancelled => {
            settle(true);
            ending(cancel.clone()).await;
            return finish(core, &spec.id, RunStatus::Cancelled, None).await;
        }
    };
    // The record (fuel, time, memory, the module's own error) stays inside the domain: every
    // number in it is one the module could choose.
    let record = serde_json::to_vec(&answer.record).map_err(|e| internal("run record", e))?;
    std::fs::write(run_dir.join("record.json"), &record).map_err(|e| internal("run record", e))?;
    if let Some(error) = &answer.record.error {
        let cancelled = ending(cancel.clone()).await;
        settle(cancelled);
        if cancelled {
            return finish(core, &spec.id, RunStatus::Cancelled, None).await;
        }
        let failure = error.failure();
        let guard = core.write.lock().await;
        finish_locked(core, &guard, &spec.id, RunStatus::Failed, Some(failure)).await?;
        if failure == Failed::Contract {
            suspend_if_breached(core, &guard, &spec.licence).await?;
        }
        return Ok(RunStatus::Failed);
    }

    // The output audit, in this process, on the host's own evidence, before anything is logged.
    let audited = audit_answer(core, &manifest, &answer, &prefetched).await?;
    // For the bureau's own logs (where the time goes); nothing of it reaches a tenant.
    tracing::debug!(process_ms, audit_ms = started.elapsed().as_millis() - process_ms, "production run phases");
    if ending(cancel.clone()).await {
        settle(true);
        return finish(core, &spec.id, RunStatus::Cancelled, None).await;
    }
    settle(false);
    let guard = core.write.lock().await;
    // Suspended, revoked or ended while it ran: nothing of it leaves.
    if let Some(what) = stopped(core, &spec.id)? {
        return end_stopped(core, &guard, &spec.id, what).await;
    }
    let ok = Event::RunFinished { run: spec.id.clone(), status: "ok".to_owned(), error: None, stopped: None };
    core.commit_own(&guard, ok).await?;
    // Released cells are compared with the history as it is now: a run that ended while this
    // one waited for its quantum may have released cells a few units from its own.
    let audited = if audited.history == history_size(core)? {
        audited
    } else {
        audit_answer(core, &manifest, &answer, &prefetched).await?
    };
    let audit = match audited.audit {
        Ok(audit) => audit,
        Err(e) => {
            tracing::error!(%e, "the audit could not compute its evidence");
            core.commit_own(&guard, outcome(&spec.id, "error", "-", 0, &[])).await?;
            return Ok(RunStatus::Withheld);
        }
    };
    let report_id = audit.report_id();
    keep_reports(&run_dir, &audit)?;
    if !audit.breach.is_empty() {
        return breach(core, &guard, spec, &report_id).await;
    }

    // Held tables wait for reviewers; the runner's answer stays inside the domain so that the
    // output can be audited again when they decide.
    let held = audit.held();
    if !held.is_empty() {
        // Durable before the entry that puts the run in review: the release reads it.
        let mut writer = sandbox_log::files::Writer::new(&run_dir);
        writer.replace(ANSWER, &answer.raw).and_then(|()| writer.sync()).map_err(|e| internal("run answer", e))?;
    }
    let event = outcome(&spec.id, audit.report.outcome.as_str(), &report_id, audit.released.len(), &held);
    core.commit_own(&guard, event).await?;
    if audit.released.is_empty() {
        return Ok(if held.is_empty() { RunStatus::Withheld } else { RunStatus::Review });
    }
    sandbox_audit::history::append(&core.dir.history(), &audit.history)
        .map_err(|e| internal("differencing history", e))?;
    let to = Recipient::of(spec, &answer.record.manifest_sha256);
    release(core, &guard, &to, &audit.released_report, &audit.released, None).await?;
    tracing::debug!(total_ms = started.elapsed().as_millis(), "production run released");
    Ok(if held.is_empty() { RunStatus::Released } else { RunStatus::Review })
}

/// The runner's end and, if it answered, the prefetched evidence: the prefetch runs beside the
/// runner and is dropped unfinished when the runner ends without an answer (failed, timed out,
/// cancelled), so such a run ends when its runner does, whatever the evidence would have taken.
async fn beside(
    running: impl Future<Output = Ended>,
    prefetch: impl Future<Output = sandbox_audit::Prefetched>,
) -> (Ended, sandbox_audit::Prefetched) {
    tokio::pin!(running, prefetch);
    let mut prefetched = None;
    let ended = loop {
        tokio::select! {
            ended = &mut running => break ended,
            done = &mut prefetch, if prefetched.is_none() => prefetched = Some(done),
        }
    };
    let prefetched = match (&ended, prefetched) {
        (Ended::Done(_), Some(done)) => done,
        (Ended::Done(_), None) => prefetch.await,
        _ => sandbox_audit::Prefetched::default(),
    };
    (ended, prefetched)
}

/// How many released cells the differencing history holds.
fn history_size(core: &Core) -> Result<usize, ServiceError> {
    Ok(history(core)?.1.len())
}

/// The differencing history's unit hasher and what it holds now.
fn history(core: &Core) -> Result<(sandbox_audit::UnitHasher, Arc<sandbox_audit::History>), ServiceError> {
    let mut follower = core.history.lock().map_err(|_| internal("differencing history", "lock poisoned"))?;
    let history = follower.current().map_err(|e| internal("differencing history", e))?;
    Ok((follower.hasher().clone(), history))
}

/// A run whose declared values disagree with the host's: logged as a breach of the contract.
async fn breach(core: &Core, guard: &WriteGuard<'_>, spec: &Spec, report_id: &str) -> Result<RunStatus, ServiceError> {
    core.commit_own(guard, outcome(&spec.id, "breach", report_id, 0, &[])).await?;
    suspend_if_breached(core, guard, &spec.licence).await?;
    Ok(RunStatus::Failed)
}

/// Suspends `licence` at once (pending the bureau's review, 包头 第四十九条) when its runs that
/// failed on their contract — declared values the host disagrees with, or output the contract
/// does not declare — reach the policy's `max_breaches`. Failing on the contract is the one
/// outcome a module can choose that the operator pays for: it bounds that channel.
async fn suspend_if_breached(core: &Core, guard: &WriteGuard<'_>, licence: &str) -> Result<(), ServiceError> {
    let (breaches, status) = {
        let view = core.view()?;
        (view.contract_failures(licence)?, view.licence(licence)?.map(|l| l.status))
    };
    let limit = core.policy.runs().max_breaches;
    if breaches >= limit && status == Some(crate::model::LicenceStatus::Active) {
        let reason = format!(
            "自动暂停：模块声明值与主机计算值不一致 {breaches} 次（上限 {limit}），待数据主管部门审查 / suspended automatically: \
             {breaches} breaches of the output contract (limit {limit}), pending the bureau's review"
        );
        core.commit_own(guard, Event::LicenceSuspended { licence: licence.to_owned(), reason: Some(reason) }).await?;
    }
    Ok(())
}

/// Who a release is for and what it states about its run.
struct Recipient<'a> {
    run: &'a str,
    module: &'a str,
    manifest: &'a str,
    datasets: &'a str,
    recipient: &'a str,
    agreement: &'a str,
}

impl Recipient<'_> {
    fn of<'a>(spec: &'a Spec, manifest: &'a str) -> Recipient<'a> {
        Recipient {
            run: &spec.id,
            module: &spec.module,
            manifest,
            datasets: &spec.datasets,
            recipient: &spec.recipient,
            agreement: &spec.agreement,
        }
    }
}

/// Signs, logs and writes the release of `tables` (as CSV, with the released audit report) to
/// the agreement's application unit; `reviewed` names the held tables reviewers approved.
async fn release(
    core: &Core,
    _guard: &WriteGuard<'_>,
    to: &Recipient<'_>,
    report: &sandbox_audit::ReleasedReport,
    tables: &[sandbox_audit::ReleasedTable],
    reviewed: Option<&str>,
) -> Result<String, ServiceError> {
    let mut results: Vec<(String, Vec<u8>)> = Vec::new();
    for table in tables {
        results.push((format!("{}.csv", table.name), csv(&table.batch)?));
    }
    // The released report, never the internal one: the bundle goes to the application unit.
    let report_sha = report.sha256();
    results.push(("audit-report.json".to_owned(), report.to_json()));
    let release = core.next_id("rel");
    let results: Vec<(&str, &[u8])> = results.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect();
    let policy_sha = core.policy.sha256();
    // The history later audits compare with, as this release leaves it (appended just before).
    let (_, history) = history(core)?;
    let (cells, earlier) = (history.cells.len().to_string(), history.tables.len().to_string());
    let mut fields = vec![
        ("module", to.module),
        ("manifest", to.manifest),
        ("datasets", to.datasets),
        ("audit_report", report_sha.as_str()),
        ("policy", policy_sha.as_str()),
        ("recipient", to.recipient),
        ("agreement", to.agreement),
        ("run", to.run),
        ("release", release.as_str()),
        ("history_cells", cells.as_str()),
        ("history_tables", earlier.as_str()),
    ];
    if let Some(reviewed) = reviewed {
        fields.push(("reviewed", reviewed));
    }
    let statement = sandbox_log::release::Statement {
        actor: &core.name,
        time: Timestamp::now(),
        fields: &fields,
        results: &results,
    };
    let out = core.dir.releases().join(&release);
    let index = tokio::task::block_in_place(|| {
        sandbox_log::release::write_bundle(&core.log, &core.release_key, &statement, &out)
    })
    .map_err(|e| internal("release bundle", e))?;
    let bytes = core.log.entry(index).map_err(|e| internal("log read", e))?;
    core.apply(index, &bytes)?;
    Ok(release)
}

/// Releases the held tables of `run` that reviewers approved, once every held table is
/// decided. The run's output is audited again first, against the differencing history as it
/// is now: if the report is not the one the reviewers approved (a release since then that a
/// held cell differs from by a few units), nothing leaves and the run ends `stale`.
pub(crate) async fn release_reviewed(core: &Core, run: &str) -> Result<(), ServiceError> {
    let (row, recipient) = {
        let view = core.view()?;
        let missing = |what: &str| internal("output review", format!("run {run}'s {what} is not in the projection"));
        let row = view.run(run)?.ok_or_else(|| missing("row"))?;
        let agreement = view.agreement(&row.agreement)?.ok_or_else(|| missing("agreement"))?;
        (row, agreement.application_unit)
    };
    let manifest = read_manifest(core, &row.module)?;
    let run_dir = core.dir.runs().join(run);

    // The lock is held from the audit to the release: no other release may come between.
    let guard = core.write.lock().await;
    let review = core.view()?.review(run)?;
    if !review.undecided.is_empty() || review.approved.is_empty() {
        return Ok(());
    }
    let raw = std::fs::read(run_dir.join(ANSWER)).map_err(|e| internal("run answer", e))?;
    let answer = Answer::from_raw(raw).map_err(|e| internal("run answer", e))?;
    if let Some(what) = stopped(core, run)? {
        end_stopped(core, &guard, run, what).await?;
        return Ok(());
    }
    let audit =
        audit_answer(core, &manifest, &answer, &Default::default()).await?.audit.map_err(|e| internal("audit", e))?;
    let report_id = audit.report_id();
    if Some(&report_id) != row.report_id.as_ref() {
        // What the reviewers read no longer holds; the new report says why.
        keep_reports(&run_dir, &audit)?;
        core.commit_own(&guard, outcome(run, "stale", &report_id, 0, &[])).await?;
        return Ok(());
    }
    let approvals = core.view()?.output_approvals(run)?;
    let approvals: Vec<Approval> = approvals.into_iter().filter(|a| review.approved.contains(&a.table)).collect();
    // The server checked each decision as it came; a fault here is the server's own.
    let (tables, added) = audit.approve(&row.operator, &approvals).map_err(|e| internal("output review", e))?;
    sandbox_audit::history::append(&core.dir.history(), &added).map_err(|e| internal("release history", e))?;
    let to = Recipient {
        run,
        module: &row.module,
        manifest: &answer.record.manifest_sha256,
        datasets: &row.datasets,
        recipient: &recipient,
        agreement: &row.agreement,
    };
    let reviewed = review.approved.join(",");
    release(core, &guard, &to, &audit.released_report, &tables, Some(&reviewed)).await?;
    Ok(())
}

/// At start: reviews completed before a stop whose release was not yet made, and the answers
/// of runs no reviewer waits for any more.
pub(crate) async fn resume_reviews(core: &Core) -> anyhow::Result<()> {
    let waiting = core.view()?.runs_in(&[RunStatus::Review])?;
    for run in waiting {
        release_reviewed(core, &run.id).await?;
    }
    for entry in std::fs::read_dir(core.dir.runs())? {
        let entry = entry?;
        if entry.path().join(ANSWER).exists() {
            forget_answer(core, &entry.file_name().to_string_lossy())?;
        }
    }
    Ok(())
}

/// The runner's answer, kept beside a run while its held tables wait for reviewers.
const ANSWER: &str = "answer";

/// Deletes the answer kept for the review of `run` once it waits for nobody.
pub(crate) fn forget_answer(core: &Core, run: &str) -> Result<(), ServiceError> {
    let in_review = core.view()?.run(run)?.is_some_and(|r| r.status == RunStatus::Review);
    if in_review {
        return Ok(());
    }
    match std::fs::remove_file(core.dir.runs().join(run).join(ANSWER)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(internal("run answer", e)),
        _ => Ok(()),
    }
}

fn read_manifest(core: &Core, module: &str) -> Result<Manifest, ServiceError> {
    let text = std::fs::read_to_string(manifest_path(core, module)).map_err(|e| internal("manifest", e))?;
    Manifest::parse(&text).map_err(|e| internal("manifest", e))
}

/// Audits a runner's answer against the differencing history as it is now. The outer error is
/// the server's; the inner one, the audit's own (it could not compute its evidence).
async fn audit_answer(
    core: &Core,
    manifest: &Manifest,
    answer: &Answer,
    prefetched: &sandbox_audit::Prefetched,
) -> Result<Audited, ServiceError> {
    let (hasher, earlier) = history(core)?;
    let history = earlier.len();
    let request = AuditRequest {
        catalog: &core.catalog,
        variant: Variant::Real,
        manifest,
        record: &answer.record,
        tables: &answer.tables,
        policy: &core.policy,
        hasher: &hasher,
        earlier: &earlier,
    };
    let audit = sandbox_audit::audit_prefetched(request, prefetched).await;
    Ok(Audited { history, audit })
}

/// An audit, and the size of the differencing history it compared with.
struct Audited {
    history: usize,
    audit: Result<sandbox_audit::Audit, sandbox_audit::AuditError>,
}

/// Writes both reports beside the run: the released one (`report.json`, `report.txt`), which
/// its operator reads, and the internal one (`internal-report.json`, `internal-report.txt`),
/// which only reviewers and administrators read.
fn keep_reports(run_dir: &std::path::Path, audit: &sandbox_audit::Audit) -> Result<(), ServiceError> {
    let write = |name: &str, bytes: &[u8]| std::fs::write(run_dir.join(name), bytes).map_err(|e| internal("report", e));
    write("report.json", &audit.released_report.to_json())?;
    write("report.txt", audit.released_report.text().as_bytes())?;
    write(INTERNAL_JSON, &audit.report.to_json())?;
    write(INTERNAL_TEXT, audit.report_text().as_bytes())
}

/// The internal report's files in a run's folder.
pub(crate) const INTERNAL_JSON: &str = "internal-report.json";
pub(crate) const INTERNAL_TEXT: &str = "internal-report.txt";

/// A released table as CSV with a header row.
fn csv(batch: &arrow_array::RecordBatch) -> Result<Vec<u8>, ServiceError> {
    let mut out = Vec::new();
    let mut writer = arrow_csv::WriterBuilder::new().with_header(true).build(&mut out);
    writer.write(batch).map_err(|e| internal("csv", e))?;
    drop(writer);
    Ok(out)
}

/// At start: runs a stop interrupted end as failed (`interrupted`); nothing acknowledged about
/// them is lost, and no result of theirs leaves.
pub(crate) async fn fail_interrupted(core: &Core, guard: &WriteGuard<'_>) -> anyhow::Result<()> {
    let open = core.view()?.runs_in(&[RunStatus::Queued, RunStatus::Running, RunStatus::Auditing])?;
    for run in open {
        finish_locked(core, guard, &run.id, RunStatus::Failed, Some(Failed::Interrupted)).await?;
    }
    Ok(())
}

/// At start: finishes the bundle folders of releases a stop interrupted after their statement's
/// append (see [`sandbox_log::release::write_bundle`]), and removes the partial folders of
/// releases that were never appended.
pub(crate) fn recover_releases(core: &Core) -> anyhow::Result<()> {
    let releases: Vec<(String, u64)> =
        core.view()?.releases(crate::state::Scope::All)?.into_iter().map(|r| (r.id, r.log_index)).collect();
    for (id, index) in releases {
        let out = core.dir.releases().join(&id);
        if sandbox_log::release::recover_bundle(&core.log, index, &out)? {
            tracing::info!(release = %id, "its bundle folder, interrupted by a stop, is complete / 发布文件夹在中断后已补全");
        }
    }
    for entry in std::fs::read_dir(core.dir.releases())? {
        let path = entry?.path();
        if path.to_string_lossy().ends_with(sandbox_log::release::PARTIAL_SUFFIX) {
            std::fs::remove_dir_all(&path)?;
        }
    }
    Ok(())
}

/// What the log keeps of a run's parameters: HMAC-SHA-256 under a key of the domain secret's,
/// so that a run can be matched with another of the same parameters inside the domain, but a
/// reader of the log cannot test guessed values (an identity number, a date) against it.
pub(crate) fn parameters_digest(core: &Core, parameters: &[(String, String)]) -> String {
    core.secret.licence_key("log:parameters").pseudonym(&json!(parameters).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run whose runner ends without an answer ends then, not when its evidence would have.
    #[tokio::test]
    async fn a_prefetch_is_dropped_when_the_runner_gives_no_answer() {
        for ended in [Ended::Failed("timeout".into()), Ended::Cancelled] {
            let never = std::future::pending::<sandbox_audit::Prefetched>();
            let quick = tokio::time::timeout(std::time::Duration::from_secs(5), beside(async { ended }, never));
            let (ended, _) = quick.await.expect("the run ends with its runner");
            assert!(!matches!(ended, Ended::Done(_)));
        }
    }
}
