use std::pin::Pin;

use sandbox_proto::v1 as pb;
use sandbox_proto::v1::runs_server::Runs;
use tokio_stream::StreamExt;
use tonic::{Request, Status};

use super::{Api, Reply, parameters, reported_run, run};
use crate::service::Decision;

type RunStream = Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::Run, Status>> + Send>>;

#[tonic::async_trait]
impl Runs for Api {
    async fn start(&self, request: Request<pb::StartRunRequest>) -> Reply<pb::Run> {
        self.call("Runs.Start", request, |s, caller, r| async move {
            s.start_run(&caller, &r.module, &r.agreement, parameters(r.parameters)).await.map(run)
        })
        .await
    }

    async fn develop(&self, request: Request<pb::DevelopRequest>) -> Reply<pb::DevelopResponse> {
        self.call("Runs.Develop", request, |s, caller, r| async move {
            let answer = s.develop(&caller, &r.module, parameters(r.parameters)).await?;
            let record = &answer.record;
            Ok(pb::DevelopResponse {
                error_code: record.error.as_ref().map(|e| e.code()).unwrap_or_default(),
                error_text: record.error.as_ref().map(|e| e.explain()).unwrap_or_default(),
                fuel_used: record.fuel_used,
                wall_time_ms: record.wall_time_ms,
                peak_memory_bytes: record.peak_memory_bytes,
                tables: answer
                    .tables
                    .into_iter()
                    .map(|t| pb::OutputTable { name: t.name, sha256: t.sha256, ipc: t.ipc })
                    .collect(),
                log: answer.dev_log.unwrap_or_default(),
            })
        })
        .await
    }

    async fn cancel(&self, request: Request<pb::RunRef>) -> Reply<pb::Run> {
        self.call("Runs.Cancel", request, |s, caller, r| async move { s.cancel_run(&caller, &r.run).await.map(run) })
            .await
    }

    async fn get(&self, request: Request<pb::RunRef>) -> Reply<pb::Run> {
        self.call("Runs.Get", request, |s, caller, r| async move { s.get_run(&caller, &r.run).map(reported_run) }).await
    }

    type WatchStream = RunStream;

    async fn watch(&self, request: Request<pb::RunRef>) -> Reply<RunStream> {
        self.call("Runs.Watch", request, |s, caller, r| async move {
            let stream = s.watch_run(&caller, &r.run)?;
            Ok(Box::pin(stream.map(|item| item.map(reported_run).map_err(Status::from))) as RunStream)
        })
        .await
    }

    async fn approve_output(&self, request: Request<pb::SignedDecision>) -> Reply<pb::Run> {
        self.call("Runs.ApproveOutput", request, |s, caller, r| async move {
            s.review_output(&caller, Decision::Approve, r.entry).await.map(reported_run)
        })
        .await
    }

    async fn reject_output(&self, request: Request<pb::SignedDecision>) -> Reply<pb::Run> {
        self.call("Runs.RejectOutput", request, |s, caller, r| async move {
            s.review_output(&caller, Decision::Reject, r.entry).await.map(reported_run)
        })
        .await
    }

    async fn get_internal_report(&self, request: Request<pb::RunRef>) -> Reply<pb::InternalReport> {
        self.call("Runs.GetInternalReport", request, |s, caller, r| async move {
            let report = s.internal_report(&caller, &r.run).await?;
            Ok(pb::InternalReport {
                run: report.run,
                report_id: report.report_id,
                json: report.json,
                text: report.text,
            })
        })
        .await
    }

    async fn list(&self, request: Request<pb::Empty>) -> Reply<pb::RunList> {
        self.call("Runs.List", request, |s, caller, _| async move {
            Ok(pb::RunList { runs: s.runs(&caller)?.into_iter().map(run).collect() })
        })
        .await
    }
}
