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

    async fn report_incident(&self, request: Request<pb::IncidentReport>) -> Reply<pb::Incident> {
        self.call("Licences.ReportIncident", request, |s, caller, r| async move {
            s.report_incident(&caller, &r.licence, &r.category, &r.description).await.map(incident)
        })
        .await
    }

    async fn incident_measure(&self, request: Request<pb::IncidentMeasureRequest>) -> Reply<pb::Incident> {
        self.call("Licences.IncidentMeasure", request, |s, caller, r| async move {
            s.incident_measure(&caller, &r.incident, &r.measure, &r.note).await.map(incident)
        })
        .await
    }

    async fn close_incident(&self, request: Request<pb::CloseIncidentRequest>) -> Reply<pb::Incident> {
        self.call("Licences.CloseIncident", request, |s, caller, r| async move {
            s.close_incident(&caller, &r.incident, &r.reported_to, &r.note).await.map(incident)
        })
        .await
    }

    async fn list_incidents(&self, request: Request<pb::Empty>) -> Reply<pb::IncidentList> {
        self.call("Licences.ListIncidents", request, |s, caller, _| async move {
            Ok(pb::IncidentList { incidents: s.incidents(&caller)?.into_iter().map(incident).collect() })
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

fn incident(i: crate::model::Incident) -> pb::Incident {
    pb::Incident {
        id: i.id,
        licence: i.licence,
        reporter: i.reporter,
        category: i.category,
        description: i.description,
        status: if i.closed { "closed" } else { "open" }.to_owned(),
        measures: i.measures,
        runs_allowed: i.runs_allowed,
        reported_to: i.reported_to.unwrap_or_default(),
        opened_at: i.opened_at,
        closed_at: i.closed_at.unwrap_or_default(),
    }
}
