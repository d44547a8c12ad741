use sandbox_proto::v1 as pb;
use sandbox_proto::v1::modules_server::Modules;
use tonic::Request;

use super::{Api, Reply, module};
use crate::service::{Decision, SubmitModule};

#[tonic::async_trait]
impl Modules for Api {
    async fn submit(&self, request: Request<pb::SubmitModuleRequest>) -> Reply<pb::Module> {
        self.call("Modules.Submit", request, |s, caller, r| async move {
            let submission = SubmitModule { module: r.module, manifest: r.manifest, entry: r.entry };
            s.submit_module(&caller, submission).await.map(module)
        })
        .await
    }

    async fn approve(&self, request: Request<pb::SignedDecision>) -> Reply<pb::Module> {
        self.call("Modules.Approve", request, |s, caller, r| async move {
            s.decide_module(&caller, Decision::Approve, r.entry).await.map(module)
        })
        .await
    }

    async fn reject(&self, request: Request<pb::SignedDecision>) -> Reply<pb::Module> {
        self.call("Modules.Reject", request, |s, caller, r| async move {
            s.decide_module(&caller, Decision::Reject, r.entry).await.map(module)
        })
        .await
    }

    async fn revoke(&self, request: Request<pb::RevokeModuleRequest>) -> Reply<pb::Module> {
        self.call("Modules.Revoke", request, |s, caller, r| async move {
            s.revoke_module(&caller, &r.module, &r.reason).await.map(module)
        })
        .await
    }

    async fn list(&self, request: Request<pb::Empty>) -> Reply<pb::ModuleList> {
        self.call("Modules.List", request, |s, caller, _| async move {
            Ok(pb::ModuleList { modules: s.modules(&caller)?.into_iter().map(module).collect() })
        })
        .await
    }

    async fn download(&self, request: Request<pb::ModuleRef>) -> Reply<pb::ModuleBytes> {
        self.call("Modules.Download", request, |s, caller, r| async move {
            let files = s.module_files(&caller, &r.module)?;
            Ok(pb::ModuleBytes { module: files.module, manifest: files.manifest })
        })
        .await
    }
}
