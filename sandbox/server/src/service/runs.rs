//! Production and development runs, and the review of held output.

use std::pin::Pin;
use std::sync::Arc;

use sandbox_verify::entry::kind;
use sandbox_verify::event::Event;
use sandbox_verify::time::Timestamp;

use super::modules::Decision;
use super::{Result, Service, check_text, field};
use crate::auth::{Caller, Role};
use crate::error::ServiceError;
use crate::executor::Answer;
use crate::model::{ModuleStatus, Run, RunStatus};
use crate::runs;
use crate::state::Scope;

/// A run with its released audit report: what its operator may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReportedRun {
    pub(crate) run: Run,
    pub(crate) report_json: String,
    pub(crate) report_text: String,
}

/// The internal audit report of a run: figures that never leave, for reviewers.
#[derive(Debug)]
pub(crate) struct InternalReport {
    pub(crate) run: String,
    pub(crate) report_id: String,
    pub(crate) json: String,
    pub(crate) text: String,
}

/// A run as it changes, until it ends or waits for its reviewers.
pub(crate) type RunStream = Pin<Box<dyn tokio_stream::Stream<Item = Result<ReportedRun>> + Send>>;

impl Service {
    /// Queues a production run of the caller's approved module under one of its agreements.
    pub(crate) async fn start_run(
        &self,
        caller: &Caller,
        module: &str,
        agreement: &str,
        given: Vec<(String, String)>,
    ) -> Result<Run> {
        // Reading and hashing the module, binding the parameters and judging the contract take
        // time: not under the write lock, which every commit of the platform waits for.
        let (module, manifest) = self.own_module(caller, module)?;
        let bound = manifest
            .bind(&given)
            .map_err(|e| ServiceError::invalid(format!("parameters: {e}"), "参数不符合模块清单"))?;
        // The contract again, with this run's values (a cut a parameter moves).
        let bound: Vec<(String, String)> = bound.into_iter().map(|(n, v)| (n, v.to_string())).collect();
        sandbox_policy::contract::judge(&manifest, &self.core.catalog, Some(&bound))
            .await
            .map_err(|e| ServiceError::invalid(format!("output contract: {e}"), "输出契约不符合列约束或公开分类"))?;
        let guard = self.lock().await;
        // Its standing now, under the lock.
        let module = self.module(&module.sha256)?;
        if module.status != ModuleStatus::Approved {
            return Err(ServiceError::precondition(
                format!("module {} is not approved", module.sha256),
                "模块未经审核通过",
            ));
        }
        let licence = self.licence_in_force(&module.licence)?;
        let per_day = self.core.policy.runs().runs_per_day;
        if self.runs_today(&licence.id)? >= per_day {
            return Err(ServiceError::exhausted(
                format!(
                    "licence {} has started {per_day} production runs today, the most the policy allows",
                    licence.id
                ),
                format!("该授权今日的生产运行次数已达策略上限 {per_day}"),
            ));
        }
        let agreement = self.agreement(agreement)?;
        if agreement.operator != caller.name {
            return Err(ServiceError::not_found("agreement", "数据服务协议", &agreement.id));
        }
        if agreement.licence != licence.id {
            return Err(ServiceError::denied(
                format!("agreement {} is not under licence {}", agreement.id, licence.id),
                "数据服务协议不在该授权之下",
            ));
        }
        if !agreement.in_force(super::now()) {
            return Err(ServiceError::precondition(
                format!("agreement {} has ended or expired", agreement.id),
                "数据服务协议已终止或过期",
            ));
        }
        self.principal_acting_as(&agreement.application_unit, Role::ApplicationUnit)?;
        // Files replaced since their version was hashed are a new version, logged first.
        crate::reversion(&self.core, &guard, &module.datasets).await?;
        let mut datasets = Vec::new();
        for d in &module.datasets {
            let version = self.core.view()?.dataset_version(d)?.unwrap_or_default();
            datasets.push(format!("{d}@{version}"));
        }
        let id = self.core.next_id("run");
        let event = Event::RunQueued {
            run: id.clone(),
            module: module.sha256.clone(),
            licence: licence.id.clone(),
            agreement: agreement.id.clone(),
            parameters: runs::parameters_digest(&self.core, &given),
            datasets: datasets.clone(),
        };
        self.core.commit_event(&guard, &caller.name, event).await?;
        let datasets = datasets.join(",");
        let spec = runs::Spec {
            id: id.clone(),
            module: module.sha256,
            operator: caller.name.clone(),
            licence: licence.id,
            agreement: agreement.id,
            recipient: agreement.application_unit,
            datasets,
            parameters: given,
        };
        runs::enqueue(Arc::clone(&self.core), spec);
        self.run(&id)
    }

    /// Production runs the licence has started today (Beijing time), for `runs_per_day`.
    fn runs_today(&self, licence: &str) -> Result<u32> {
        // Days of Beijing time (UTC+8, no daylight saving).
        let day = |t: Timestamp| (t.0 + 8 * 3600).div_euclid(86_400);
        let today = day(Timestamp::now());
        let times = self.core.view()?.run_times(licence)?;
        Ok(times.iter().filter(|at| Timestamp::parse(at).is_ok_and(|t| day(t) == today)).count() as u32)
    }

    /// Runs the caller's module on the twins and answers in full (tables, log, usage); logged.
    pub(crate) async fn develop(&self, caller: &Caller, module: &str, given: Vec<(String, String)>) -> Result<Answer> {
        let (module, manifest) = self.own_module(caller, module)?;
        if module.status == ModuleStatus::Revoked {
            return Err(ServiceError::precondition(format!("module {} is revoked", module.sha256), "模块已撤销"));
        }
        let licence = self.licence_in_force(&module.licence)?;
        manifest.bind(&given).map_err(|e| ServiceError::invalid(format!("parameters: {e}"), "参数不符合模块清单"))?;
        let answer = runs::develop(&self.core, &module.sha256, &licence.id, &given).await;
        // Logged before it is answered, so the bureau can count development runs too.
        let outcome = match &answer {
            Ok(answer) => answer.record.error.as_ref().map_or_else(|| "ok".to_owned(), |e| e.code()),
            Err(code) => format!("runner:{code}"),
        };
        let record = answer.as_ref().ok().map(|a| &a.record);
        let event = Event::RunDeveloped {
            module: module.sha256.clone(),
            licence: licence.id.clone(),
            parameters: runs::parameters_digest(&self.core, &given),
            outcome,
            fuel: record.map(|r| r.fuel_used),
            wall_ms: record.map(|r| r.wall_time_ms),
        };
        let guard = self.lock().await;
        // Revoked or suspended while it ran: logged, and nothing of it answered.
        let module_now = self.module(&module.sha256)?;
        let stopped = if module_now.status == ModuleStatus::Revoked {
            Some(crate::model::Stop::Module)
        } else if !self.licence(&licence.id)?.in_force(super::now()) {
            Some(crate::model::Stop::Licence)
        } else {
            None
        };
        let event = match (stopped, event) {
            (Some(stop), Event::RunDeveloped { module, licence, parameters, fuel, wall_ms, .. }) => {
                let outcome = format!("stopped:{}", stop.as_str());
                Event::RunDeveloped { module, licence, parameters, outcome, fuel, wall_ms }
            }
            (_, event) => event,
        };
        self.core.commit_event(&guard, &caller.name, event).await?;
        drop(guard);
        if let Some(stop) = stopped {
            return Err(ServiceError::precondition(
                format!("the {} was withdrawn while the development run ran: nothing of it is answered", stop.as_str()),
                "开发运行期间模块已撤销或授权已暂停，运行结果不予返回",
            ));
        }
        answer.map_err(|code| ServiceError::unavailable(format!("the runner failed: {code}"), "运行器失败"))
    }

    /// Asks a queued or running run to stop and waits (ten seconds at most) for its end.
    pub(crate) async fn cancel_run(&self, caller: &Caller, id: &str) -> Result<Run> {
        let run = self.visible_run(caller, id)?;
        if run.ended() || !self.core.runs.cancel(id) {
            return Err(ServiceError::precondition(
                format!("run {id} is not queued or running"),
                "该运行不在排队或运行中",
            ));
        }
        // The run's task logs its end.
        let mut applied = self.core.applied.subscribe();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let run = self.run(id)?;
            if run.ended() {
                return Ok(run);
            }
            match tokio::time::timeout_at(deadline, applied.changed()).await {
                Ok(Ok(())) => {}
                _ => return Ok(run),
            }
        }
    }

    pub(crate) fn get_run(&self, caller: &Caller, id: &str) -> Result<ReportedRun> {
        self.visible_run(caller, id).map(|run| self.with_report(run))
    }

    /// Operators see their own runs; the bureau, all.
    pub(crate) fn runs(&self, caller: &Caller) -> Result<Vec<Run>> {
        let scope = super::scope(caller);
        Ok(self.core.view()?.runs(scope)?)
    }

    /// The run now and at each change, until it ends or waits for its reviewers, or the
    /// caller's token stops standing (disabled, rotated, revoked: it hears nothing more).
    pub(crate) fn watch_run(&self, caller: &Caller, id: &str) -> Result<RunStream> {
        // Subscribed before the first read, so no change between the two is missed.
        let mut applied = self.core.applied.subscribe();
        let first = self.visible_run(caller, id)?;
        let (service, watcher, id) = (self.clone(), caller.clone(), id.to_owned());
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            let mut last = first;
            if tx.send(Ok(service.with_report(last.clone()))).await.is_err() {
                return;
            }
            while !last.ended() && last.status != RunStatus::Review {
                if applied.changed().await.is_err() {
                    return;
                }
                if !service.still_valid(&watcher) {
                    let _ = tx.send(Err(ServiceError::bad_token())).await;
                    return;
                }
                let now = match service.run(&id) {
                    Ok(run) => run,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                if now != last {
                    if tx.send(Ok(service.with_report(now.clone()))).await.is_err() {
                        return;
                    }
                    last = now;
                }
            }
        });
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }

    /// A reviewer's signed decision on one table the audit held; the decision that completes
    /// the review with something approved releases it.
    pub(crate) async fn review_output(
        &self,
        caller: &Caller,
        decision: Decision,
        signed: Vec<u8>,
    ) -> Result<ReportedRun> {
        let entry_kind = match decision {
            Decision::Approve => kind::OUTPUT_APPROVED,
            Decision::Reject => kind::OUTPUT_REJECTED,
        };
        let entry = self.signed_entry(caller, &signed, entry_kind)?;
        let (id, report, table) = (field(&entry, "run")?, field(&entry, "report")?, field(&entry, "table")?);
        if decision == Decision::Reject {
            check_text("reason", field(&entry, "reason")?, true)?;
        }
        let guard = self.lock().await;
        let run = self.run(id)?;
        if !run.held.iter().any(|t| t == table) {
            return Err(ServiceError::precondition(
                format!("run {id} has no table {table} waiting for review"),
                format!("运行 {id} 没有待复核的表 {table}"),
            ));
        }
        let report_id = run.report_id.clone().unwrap_or_default();
        if report != report_id {
            return Err(ServiceError::precondition(
                format!("the decision names audit report {report}; run {id}'s is {report_id}"),
                "复核意见针对的不是该运行当前的审核报告",
            ));
        }
        if run.operator == caller.name {
            return Err(ServiceError::denied("nobody reviews their own output", "不得复核本人的输出"));
        }
        // Nothing is let out under a licence or agreement no longer in force, nor by or to a
        // disabled principal.
        if decision == Decision::Approve {
            self.licence_in_force(&run.licence)?;
            self.principal_acting_as(&run.operator, Role::Operator)?;
            if !self.agreement(&run.agreement)?.in_force(super::now()) {
                return Err(ServiceError::precondition(
                    format!("agreement {} has ended or expired: no held table is let out", run.agreement),
                    "数据服务协议已终止或过期，待复核的表不能放行",
                ));
            }
        }
        if self.core.view()?.output_decided(id, table, &caller.name)? {
            return Err(ServiceError::precondition(
                format!(
                    "{} has decided on table {table} of run {id} already; it needs a different reviewer",
                    caller.name
                ),
                "已复核过该表，须由另一名审核员复核",
            ));
        }
        self.core.commit(&guard, signed.clone()).await?;
        let review = self.core.view()?.review(id)?;
        drop(guard);
        if review.undecided.is_empty() && !review.approved.is_empty() {
            runs::release_reviewed(&self.core, id).await?;
        }
        runs::forget_answer(&self.core, id)?;
        Ok(self.with_report(self.run(id)?))
    }

    /// The internal audit report, for reviewers and administrators; every read is logged.
    pub(crate) async fn internal_report(&self, caller: &Caller, id: &str) -> Result<InternalReport> {
        let run = self.run(id)?;
        let dir = self.core.dir.runs().join(&run.id);
        let read = |name: &str| std::fs::read_to_string(dir.join(name));
        let (Ok(json), Ok(text)) = (read(runs::INTERNAL_JSON), read(runs::INTERNAL_TEXT)) else {
            return Err(ServiceError::precondition(format!("run {id} has no audit report"), "该运行没有审核报告"));
        };
        let report_id = run.report_id.unwrap_or_default();
        // Every read of figures that do not leave is on the record.
        let guard = self.lock().await;
        let event = Event::AuditReportRead { run: run.id.clone(), report: report_id.clone() };
        self.core.commit_event(&guard, &caller.name, event).await?;
        Ok(InternalReport { run: run.id, report_id, json, text })
    }

    fn visible_run(&self, caller: &Caller, id: &str) -> Result<Run> {
        let run = self.run(id)?;
        if super::scope(caller) != Scope::All && run.operator != caller.name {
            return Err(ServiceError::not_found("run", "运行", id));
        }
        Ok(run)
    }

    /// The run with its released audit report.
    fn with_report(&self, run: Run) -> ReportedRun {
        let dir = self.core.dir.runs().join(&run.id);
        let report_json = std::fs::read_to_string(dir.join("report.json")).unwrap_or_default();
        let report_text = std::fs::read_to_string(dir.join("report.txt")).unwrap_or_default();
        ReportedRun { run, report_json, report_text }
    }
}
