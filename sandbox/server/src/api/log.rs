use sandbox_proto::v1 as pb;
use sandbox_proto::v1::log_server::Log;
use tonic::Request;

use super::{Api, Reply};
use crate::service::AnnualReport;

fn annual(a: AnnualReport) -> pb::AnnualReport {
    pb::AnnualReport {
        year: a.report.year,
        size: a.report.size,
        sha256: a.report.sha256,
        text: a.text,
        log_index: a.report.log_index,
        filed_by: a.report.filed_by,
        filed_at: a.report.filed_at,
    }
}

#[tonic::async_trait]
impl Log for Api {
    async fn checkpoint(&self, request: Request<pb::Empty>) -> Reply<pb::CheckpointResponse> {
        self.call("Log.Checkpoint", request, |s, caller, _| async move {
            let checkpoint = s.checkpoint(&caller);
            Ok(pb::CheckpointResponse { checkpoint: checkpoint.note, size: checkpoint.size })
        })
        .await
    }

    async fn entries(&self, request: Request<pb::EntriesRequest>) -> Reply<pb::EntriesResponse> {
        self.call("Log.Entries", request, |s, caller, r| async move {
            Ok(pb::EntriesResponse { entries: s.entries(&caller, r.start, r.count)? })
        })
        .await
    }

    async fn inclusion_proof(&self, request: Request<pb::IndexRequest>) -> Reply<pb::ProofResponse> {
        self.call("Log.InclusionProof", request, |s, caller, r| async move {
            Ok(pb::ProofResponse { proof: s.inclusion_proof(&caller, r.index)? })
        })
        .await
    }

    async fn consistency_proof(&self, request: Request<pb::ConsistencyRequest>) -> Reply<pb::ConsistencyResponse> {
        self.call("Log.ConsistencyProof", request, |s, caller, r| async move {
            let hashes = s.consistency_proof(&caller, r.old, r.new)?;
            Ok(pb::ConsistencyResponse { hashes: hashes.iter().map(|h| h.to_vec()).collect() })
        })
        .await
    }

    async fn file_report(&self, request: Request<pb::ReportRequest>) -> Reply<pb::AnnualReport> {
        self.call(
            "Log.FileReport",
            request,
            |s, caller, r| async move { s.file_report(&caller, r.year).await.map(annual) },
        )
        .await
    }

    async fn get_report(&self, request: Request<pb::ReportRequest>) -> Reply<pb::AnnualReport> {
        self.call("Log.GetReport", request, |s, caller, r| async move { s.report(&caller, r.year).map(annual) }).await
    }
}
