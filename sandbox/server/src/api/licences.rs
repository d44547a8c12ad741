use sandbox_proto::v1 as pb;
use sandbox_proto::v1::licences_server::Licences;
use tonic::Request;

use super::{Api, Reply, licence};
use crate::service::{GrantLicence, LicenceAction};

impl Api {
    async fn licence_action(
        &self,
        op: &'static str,
        request: Request<pb::LicenceActionRequest>,
        action: LicenceAction,
    ) -> Reply<pb::Licence> {
        self.call(op, request, |s, caller, r| async move {
            s.licence_action(&caller, action, &r.id, &r.reason).await.map(licence)
        })
        .await
    }
}

#[tonic::async_trait]
impl Licences for Api {
    async fn grant(&self, request: Request<pb::GrantLicenceRequest>) -> Reply<pb::Licence> {
        self.call("Licences.Grant", request, |s, caller, r| async move {
            let grant = GrantLicence {
                id: r.id,
                operator: r.operator,
                datasets: r.datasets,
                purpose: r.purpose,
                valid_from: r.valid_from,
                valid_until: r.valid_until,
            };
            s.grant_licence(&caller, grant).await.map(licence)
        })
        .await
    }

    async fn suspend(&self, request: Request<pb::LicenceActionRequest>) -> Reply<pb::Licence> {
        self.licence_action("Licences.Suspend", request, LicenceAction::Suspend).await
    }

    async fn resume(&self, request: Request<pb::LicenceActionRequest>) -> Reply<pb::Licence> {
        self.licence_action("Licences.Resume", request, LicenceAction::Resume).await
    }

    async fn revoke(&self, request: Request<pb::LicenceActionRequest>) -> Reply<pb::Licence> {
        self.licence_action("Licences.Revoke", request, LicenceAction::Revoke).await
    }

    async fn list(&self, request: Request<pb::Empty>) -> Reply<pb::LicenceList> {
        self.call("Licences.List", request, |s, caller, _| async move {
            Ok(pb::LicenceList { licences: s.licences(&caller)?.into_iter().map(licence).collect() })
        })
        .await
    }

    async fn consent(&self, request: Request<pb::SignedConsent>) -> Reply<pb::Licence> {
        self.call("Licences.Consent", request, |s, caller, r| async move {
            s.consent_licence(&caller, r.entry).await.map(licence)
        })
        .await
    }
}
