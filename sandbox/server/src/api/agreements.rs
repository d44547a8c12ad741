use sandbox_proto::v1 as pb;
use sandbox_proto::v1::agreements_server::Agreements;
use tonic::Request;

use super::{Api, Reply, agreement};
use crate::service::NewAgreement;

#[tonic::async_trait]
impl Agreements for Api {
    async fn create(&self, request: Request<pb::CreateAgreementRequest>) -> Reply<pb::Agreement> {
        self.call("Agreements.Create", request, |s, caller, r| async move {
            let new = NewAgreement {
                id: r.id,
                licence: r.licence,
                application_unit: r.application_unit,
                scenario: r.scenario,
                valid_until: r.valid_until,
            };
            s.create_agreement(&caller, new).await.map(agreement)
        })
        .await
    }

    async fn end(&self, request: Request<pb::AgreementActionRequest>) -> Reply<pb::Agreement> {
        self.call("Agreements.End", request, |s, caller, r| async move {
            s.end_agreement(&caller, &r.id, &r.reason).await.map(agreement)
        })
        .await
    }

    async fn list(&self, request: Request<pb::Empty>) -> Reply<pb::AgreementList> {
        self.call("Agreements.List", request, |s, caller, _| async move {
            Ok(pb::AgreementList { agreements: s.agreements(&caller)?.into_iter().map(agreement).collect() })
        })
        .await
    }
}
