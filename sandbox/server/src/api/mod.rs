//! The gRPC front end (`proto/sandbox/v1`), `/healthz` and `/metrics`, on one port: thin
//! adapters, one file per proto service, that turn messages into the service layer's commands
//! and its domain types and errors back into messages and statuses. No rule lives here.

mod agreements;
mod catalog;
mod feedback;
mod licences;
mod log;
mod modules;
mod principals;
mod releases;
mod runs;

use std::future::Future;
use std::sync::Arc;

use axum::routing::get;
use sandbox_proto::v1 as pb;
use sandbox_proto::v1::{
    agreements_server::AgreementsServer, catalog_server::CatalogServer, feedback_server::FeedbackServer,
    licences_server::LicencesServer, log_server::LogServer, modules_server::ModulesServer,
    principals_server::PrincipalsServer, releases_server::ReleasesServer, runs_server::RunsServer,
};
use tonic::{Request, Response, Status};

use crate::Core;
use crate::auth::{Caller, Role};
use crate::error::ServiceError;
use crate::model;
use crate::service::{MAX_MODULE_BYTES, Service};

#[derive(Clone)]
pub(crate) struct Api {
    service: Service,
}

type Reply<T> = Result<Response<T>, Status>;

impl Api {
    /// One call: the request's `authorization` and message to the service layer's frame
    /// ([`Service::call`]) with `body`, its answer or error back as gRPC.
    async fn call<M, T, F>(
        &self,
        op: &'static str,
        request: Request<M>,
        body: impl FnOnce(Service, Caller, M) -> F,
    ) -> Reply<T>
    where
        F: Future<Output = Result<T, ServiceError>>,
    {
        let authorization = request.metadata().get("authorization").map(|h| h.to_str().unwrap_or(""));
        let authorization = authorization.map(str::to_owned);
        let message = request.into_inner();
        let service = self.service.clone();
        let answer = self.service.call(op, authorization.as_deref(), |caller| body(service, caller, message)).await;
        answer.map(Response::new).map_err(Status::from)
    }
}

pub(crate) async fn serve(
    core: Arc<Core>,
    listener: tokio::net::TcpListener,
    tls: Option<tonic::transport::ServerTlsConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let service = Service::new(Arc::clone(&core));
    let api = Api { service: service.clone() };
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<RunsServer<Api>>().await;
    // Reflection in both versions: v1, and v1alpha for the clients that speak only it
    // (Python's grpcio-reflection, older grpcurl, several GUI clients).
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let mut routes = tonic::service::Routes::builder();
    routes
        .add_service(health_service)
        .add_service(reflection().build_v1()?)
        .add_service(reflection().build_v1alpha()?)
        .add_service(PrincipalsServer::new(api.clone()))
        .add_service(CatalogServer::new(api.clone()))
        .add_service(LicencesServer::new(api.clone()))
        .add_service(AgreementsServer::new(api.clone()))
        .add_service(ModulesServer::new(api.clone()).max_decoding_message_size(MAX_MODULE_BYTES + (1 << 20)))
        .add_service(RunsServer::new(api.clone()))
        .add_service(ReleasesServer::new(api.clone()))
        .add_service(LogServer::new(api.clone()))
        .add_service(FeedbackServer::new(api));
    let router = routes.routes().into_axum_router().route("/healthz", get(|| async { "ok\n" })).route(
        "/metrics",
        get(move |headers: axum::http::HeaderMap| async move {
            // Counts of calls and runs move as other operators' runs end: administrators only.
            let authorization = headers.get("authorization").and_then(|h| h.to_str().ok());
            match service.authenticate(authorization) {
                Ok(caller) if caller.role == Role::Admin => Ok(core.metrics.render()),
                _ => {
                    Err((axum::http::StatusCode::UNAUTHORIZED, "an administrator's token is needed / 需要管理员令牌\n"))
                }
            }
        }),
    );
    // A span per request: the RPC's path, and the caller once the service knows it.
    let mut server = tonic::transport::Server::builder()
        .trace_fn(|request| tracing::info_span!("call", rpc = %request.uri().path(), caller = tracing::field::Empty));
    if let Some(tls) = tls {
        server = server.tls_config(tls)?;
    }
    server
        .accept_http1(true)
        .add_routes(tonic::service::Routes::from(router))
        .serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(listener), shutdown)
        .await?;
    Ok(())
}

// ---- domain types as messages ----

fn principal(p: model::Principal) -> pb::Principal {
    pb::Principal {
        name: p.name,
        role: p.role.to_proto() as i32,
        display_name: p.display_name,
        key: p.key,
        registered_at: p.registered_at,
        disabled: p.disabled.unwrap_or_default(),
        has_token: p.token_sha256.is_some(),
        provider: p.provider.unwrap_or_default(),
    }
}

fn licence(l: model::Licence) -> pb::Licence {
    let in_force = l.in_force(sandbox_verify::time::Timestamp::now());
    let awaiting_consent = l.awaiting.clone();
    pb::Licence {
        id: l.id,
        operator: l.operator,
        datasets: l.datasets,
        purpose: l.purpose,
        in_force,
        valid_from: l.valid_from,
        valid_until: l.valid_until,
        status: match l.status {
            model::LicenceStatus::Active => pb::LicenceStatus::Active,
            model::LicenceStatus::Suspended => pb::LicenceStatus::Suspended,
            model::LicenceStatus::Revoked => pb::LicenceStatus::Revoked,
        } as i32,
        awaiting_consent,
    }
}

fn agreement(a: model::Agreement) -> pb::Agreement {
    let in_force = a.in_force(sandbox_verify::time::Timestamp::now());
    pb::Agreement {
        id: a.id,
        licence: a.licence,
        operator: a.operator,
        application_unit: a.application_unit,
        scenario: a.scenario,
        ended: a.ended,
        in_force,
        valid_until: a.valid_until,
    }
}

fn module(m: model::Module) -> pb::Module {
    pb::Module {
        module: m.sha256,
        manifest_sha256: m.manifest_sha256,
        name: m.name,
        operator: m.operator,
        licence: m.licence,
        status: match m.status {
            model::ModuleStatus::Submitted => pb::ModuleStatus::Submitted,
            model::ModuleStatus::Approved => pb::ModuleStatus::Approved,
            model::ModuleStatus::Rejected => pb::ModuleStatus::Rejected,
            model::ModuleStatus::Revoked => pb::ModuleStatus::Revoked,
        } as i32,
        approvals: m.approvals,
        approvals_needed: m.approvals_needed,
        reason: m.reason.unwrap_or_default(),
        datasets: m.datasets,
        submitted_at: m.submitted_at,
    }
}

fn run(r: model::Run) -> pb::Run {
    pb::Run {
        id: r.id,
        module: r.module,
        operator: r.operator,
        licence: r.licence,
        agreement: r.agreement,
        status: match r.status {
            model::RunStatus::Queued => pb::RunStatus::Queued,
            model::RunStatus::Running => pb::RunStatus::Running,
            model::RunStatus::Auditing => pb::RunStatus::Auditing,
            model::RunStatus::Review => pb::RunStatus::InReview,
            model::RunStatus::Released => pb::RunStatus::Released,
            model::RunStatus::Withheld => pb::RunStatus::Withheld,
            model::RunStatus::Failed => pb::RunStatus::Failed,
            model::RunStatus::Cancelled => pb::RunStatus::Cancelled,
        } as i32,
        error_code: r.error_code.unwrap_or_default(),
        audit_outcome: r.audit_outcome.unwrap_or_default(),
        audit_report_id: r.report_id.unwrap_or_default(),
        audit_report_json: String::new(),
        audit_report_text: String::new(),
        release: r.release.unwrap_or_default(),
        requested_at: r.requested_at,
        finished_at: r.finished_at.unwrap_or_default(),
        held_tables: r.held,
    }
}

fn reported_run(r: crate::service::ReportedRun) -> pb::Run {
    pb::Run { audit_report_json: r.report_json, audit_report_text: r.report_text, ..run(r.run) }
}

fn release(r: model::Release) -> pb::Release {
    pb::Release {
        id: r.id,
        run: r.run,
        module: r.module,
        operator: r.operator,
        application_unit: r.application_unit,
        agreement: r.agreement,
        log_index: r.log_index,
        results: r.results,
        released_at: r.released_at,
    }
}

fn parameters(given: Vec<pb::Parameter>) -> Vec<(String, String)> {
    given.into_iter().map(|p| (p.name, p.value)).collect()
}
