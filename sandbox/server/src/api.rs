//! The gRPC services (`proto/sandbox/v1`), `/healthz` and `/metrics`, on one port.
//!
//! Each call: authenticate the bearer token, check the role against [`auth::MATRIX`], then the
//! call's own checks (tenancy, states, validity) against the projection under the write lock,
//! then commit its entry. A refusal of a known principal is logged as `request.refused`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::routing::get;
use rusqlite::{OptionalExtension, Row, params};
use sandbox_contract::Manifest;
use sandbox_proto::v1 as pb;
use sandbox_proto::v1::{
    agreements_server::{Agreements, AgreementsServer},
    catalog_server::{Catalog, CatalogServer},
    feedback_server::{Feedback, FeedbackServer},
    licences_server::{Licences, LicencesServer},
    log_server::{Log, LogServer},
    modules_server::{Modules, ModulesServer},
    principals_server::{Principals, PrincipalsServer},
    releases_server::{Releases, ReleasesServer},
    runs_server::{Runs, RunsServer},
};
use sandbox_verify::entry::{self, Entry, kind};
use sandbox_verify::note::VerifierKey;
use sandbox_verify::time::Timestamp;
use sha2::{Digest, Sha256};
use tonic::{Request, Response, Status};

use crate::auth::{self, Caller, Role};
use crate::state::RunStatus;
use crate::{Core, DataDir, internal, runs};

/// The largest module a submission may carry.
pub(crate) const MAX_MODULE_BYTES: usize = 32 << 20;
/// The largest free text (purposes, scenarios, reasons, comments) a call may carry.
const MAX_TEXT: usize = 1000;
/// How far a signed entry's time may be from the server's clock.
const MAX_SKEW_SECONDS: i64 = 600;

#[derive(Clone)]
pub(crate) struct Api {
    core: Arc<Core>,
}

pub(crate) async fn serve(
    core: Arc<Core>,
    listener: tokio::net::TcpListener,
    tls: Option<tonic::transport::ServerTlsConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let api = Api { core: Arc::clone(&core) };
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
    let metrics = Arc::clone(&core);
    let router = routes.routes().into_axum_router().route("/healthz", get(|| async { "ok\n" })).route(
        "/metrics",
        get(move |headers: axum::http::HeaderMap| async move {
            // Counts of calls and runs move as other operators' runs end: administrators only.
            if is_admin(&metrics, &headers) {
                Ok(metrics.metrics.render())
            } else {
                Err((axum::http::StatusCode::UNAUTHORIZED, "an administrator's token is needed / 需要管理员令牌\n"))
            }
        }),
    );
    // A span per request: the RPC's path, and the caller once `begin` knows it.
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

/// Whether an HTTP request bears an administrator's token (`Authorization: Bearer …`).
fn is_admin(core: &Core, headers: &axum::http::HeaderMap) -> bool {
    let Some(token) =
        headers.get("authorization").and_then(|h| h.to_str().ok()).and_then(|h| h.strip_prefix("Bearer "))
    else {
        return false;
    };
    let hash = auth::token_hash(token.trim());
    let role: Option<String> = core
        .read(|db| {
            db.query_row("SELECT role FROM principals WHERE token_sha256 = ?1 AND disabled IS NULL", [&hash], |r| {
                r.get(0)
            })
            .optional()
        })
        .ok()
        .flatten();
    role.as_deref().and_then(Role::parse) == Some(Role::Admin)
}

type Reply<T> = Result<Response<T>, Status>;

// ---- checks shared by the calls ----

fn bad(en: impl std::fmt::Display, zh: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("{en} / {zh}"))
}

fn not_found(what: &str, zh: &str, id: &str) -> Status {
    Status::not_found(format!("no {what} {id:?} / 没有该{zh}：{id}"))
}

fn precondition(en: impl std::fmt::Display, zh: impl std::fmt::Display) -> Status {
    Status::failed_precondition(format!("{en} / {zh}"))
}

fn denied(en: impl std::fmt::Display, zh: impl std::fmt::Display) -> Status {
    Status::permission_denied(format!("{en} / {zh}"))
}

/// Identifiers chosen by people: `[a-z0-9][a-z0-9.-]{0,62}`.
fn check_id(what: &str, id: &str) -> Result<(), Status> {
    let ok = !id.is_empty()
        && id.len() <= 63
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && id.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(bad(format!("{what} {id:?} is not [a-z0-9][a-z0-9.-]{{0,62}}"), format!("{what} 格式无效")))
    }
}

/// Free text that goes into the log: one line, printable, at most [`MAX_TEXT`] characters.
fn check_text(what: &str, text: &str, required: bool) -> Result<(), Status> {
    if text.trim().is_empty() {
        return if required { Err(bad(format!("{what} is empty"), format!("{what} 不能为空"))) } else { Ok(()) };
    }
    if text.chars().count() > MAX_TEXT || text.chars().any(char::is_control) || text.trim() != text {
        return Err(bad(
            format!("{what} must be one line of at most {MAX_TEXT} characters without surrounding spaces"),
            format!("{what} 须为单行、不超过 {MAX_TEXT} 个字符且首尾无空格"),
        ));
    }
    if let Some(c) = text.chars().find(|&c| is_invisible_format(c)) {
        return Err(bad(
            format!("{what} holds U+{:04X}, which reorders or breaks the text around it without showing", c as u32),
            format!("{what} 含有 U+{:04X}：该字符不可见，却会改变周围文字的显示顺序或换行", c as u32),
        ));
    }
    Ok(())
}

/// Characters that change how the text around them reads without showing themselves: the
/// bidirectional marks, embeddings, overrides and isolates (a reason could show a reviewer its
/// words in another order: "Trojan Source", CVE-2021-42574), and the line and paragraph
/// separators (a comment could start a line of its own in a report).
fn is_invisible_format(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}')
}

fn check_time(what: &str, text: &str) -> Result<Timestamp, Status> {
    Timestamp::parse(text).map_err(|e| bad(format!("{what}: {e}"), format!("{what}：{}", e.zh())))
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn now() -> Timestamp {
    Timestamp::now()
}

// ---- rows of the projection as messages ----

fn licence_row(row: &Row<'_>) -> rusqlite::Result<pb::Licence> {
    let status: String = row.get("status")?;
    let (from, until): (String, String) = (row.get("valid_from")?, row.get("valid_until")?);
    let now = now().to_string();
    let datasets: String = row.get("datasets")?;
    Ok(pb::Licence {
        id: row.get("id")?,
        operator: row.get("operator")?,
        datasets: datasets.split(',').map(str::to_owned).collect(),
        purpose: row.get("purpose")?,
        in_force: status == "active" && from <= now && now < until,
        valid_from: from,
        valid_until: until,
        status: match status.as_str() {
            "active" => pb::LicenceStatus::Active,
            "suspended" => pb::LicenceStatus::Suspended,
            _ => pb::LicenceStatus::Revoked,
        } as i32,
    })
}

fn agreement_row(row: &Row<'_>) -> rusqlite::Result<pb::Agreement> {
    let ended: i64 = row.get("ended")?;
    let until: String = row.get("valid_until")?;
    Ok(pb::Agreement {
        id: row.get("id")?,
        licence: row.get("licence")?,
        operator: row.get("operator")?,
        application_unit: row.get("application_unit")?,
        scenario: row.get("scenario")?,
        ended: ended != 0,
        in_force: ended == 0 && now().to_string() < until,
        valid_until: until,
    })
}

fn module_row(row: &Row<'_>) -> rusqlite::Result<pb::Module> {
    let status: String = row.get("status")?;
    let datasets: String = row.get("datasets")?;
    let approvals: Option<String> = row.get("approved_by")?;
    Ok(pb::Module {
        module: row.get("sha256")?,
        manifest_sha256: row.get("manifest_sha256")?,
        name: row.get("name")?,
        operator: row.get("operator")?,
        licence: row.get("licence")?,
        status: match status.as_str() {
            "submitted" => pb::ModuleStatus::Submitted,
            "approved" => pb::ModuleStatus::Approved,
            "rejected" => pb::ModuleStatus::Rejected,
            _ => pb::ModuleStatus::Revoked,
        } as i32,
        approvals: approvals.map(|a| a.split(',').map(str::to_owned).collect()).unwrap_or_default(),
        approvals_needed: row.get("approvals_needed")?,
        reason: row.get::<_, Option<String>>("reason")?.unwrap_or_default(),
        datasets: datasets.split(',').map(str::to_owned).collect(),
        submitted_at: row.get("submitted_at")?,
    })
}

const MODULE_SELECT: &str = "SELECT m.*, (SELECT group_concat(reviewer, ',') FROM
    (SELECT reviewer FROM approvals a WHERE a.module = m.sha256 ORDER BY log_index)) AS approved_by FROM modules m";

fn run_row(row: &Row<'_>) -> rusqlite::Result<pb::Run> {
    let status: String = row.get("status")?;
    // The projection writes only these; anything else is a fault, never shown as "failed".
    let status = RunStatus::parse(&status).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            format!("run status {status:?}").into(),
        )
    })?;
    Ok(pb::Run {
        id: row.get("id")?,
        module: row.get("module")?,
        operator: row.get("operator")?,
        licence: row.get("licence")?,
        agreement: row.get("agreement")?,
        status: run_status(status) as i32,
        error_code: row.get::<_, Option<String>>("error_code")?.unwrap_or_default(),
        audit_outcome: row.get::<_, Option<String>>("audit_outcome")?.unwrap_or_default(),
        audit_report_id: row.get::<_, Option<String>>("report_id")?.unwrap_or_default(),
        audit_report_json: String::new(),
        audit_report_text: String::new(),
        release: row.get::<_, Option<String>>("release")?.unwrap_or_default(),
        requested_at: row.get("requested_at")?,
        finished_at: row.get::<_, Option<String>>("finished_at")?.unwrap_or_default(),
        held_tables: (row.get::<_, Option<String>>("held")?.iter())
            .flat_map(|h| h.split(','))
            .map(str::to_owned)
            .collect(),
    })
}

fn run_status(status: RunStatus) -> pb::RunStatus {
    match status {
        RunStatus::Queued => pb::RunStatus::Queued,
        RunStatus::Running => pb::RunStatus::Running,
        RunStatus::Auditing => pb::RunStatus::Auditing,
        RunStatus::Review => pb::RunStatus::InReview,
        RunStatus::Released => pb::RunStatus::Released,
        RunStatus::Withheld => pb::RunStatus::Withheld,
        RunStatus::Failed => pb::RunStatus::Failed,
        RunStatus::Cancelled => pb::RunStatus::Cancelled,
    }
}

fn release_row(row: &Row<'_>) -> rusqlite::Result<pb::Release> {
    let results: String = row.get("results")?;
    Ok(pb::Release {
        id: row.get("id")?,
        run: row.get("run")?,
        module: row.get("module")?,
        operator: row.get("operator")?,
        application_unit: row.get("application_unit")?,
        agreement: row.get("agreement")?,
        log_index: row.get::<_, i64>("log_index")? as u64,
        results: results.split(',').map(str::to_owned).collect(),
        released_at: row.get("released_at")?,
    })
}

fn principal_row(row: &Row<'_>) -> rusqlite::Result<pb::Principal> {
    let role: String = row.get("role")?;
    Ok(pb::Principal {
        name: row.get("name")?,
        role: Role::parse(&role).map_or(pb::Role::Unspecified, Role::to_proto) as i32,
        display_name: row.get("display_name")?,
        key: row.get("key")?,
        registered_at: row.get("registered_at")?,
        disabled: row.get::<_, Option<String>>("disabled")?.unwrap_or_default(),
        has_token: row.get::<_, Option<String>>("token_sha256")?.is_some(),
    })
}

// ---- the frame of every call ----

impl Api {
    /// Authenticates and checks the role. Refusals of known principals are logged.
    async fn begin<T>(&self, rpc: &'static str, request: &Request<T>) -> Result<Caller, Status> {
        let caller = match self.authenticate(request) {
            Ok(caller) => caller,
            Err(status) => {
                self.core.metrics.call(rpc, status.code());
                return Err(status);
            }
        };
        tracing::Span::current().record("caller", caller.name.as_str());
        if !auth::allowed(rpc, caller.role) {
            let status = denied(
                format!("{} {} may not call {rpc}", caller.role.code(), caller.name),
                format!("{}无权调用 {rpc}", caller.role.zh()),
            );
            return Err(self.refused(rpc, &caller, status).await);
        }
        Ok(caller)
    }

    fn authenticate<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .ok_or_else(|| Status::unauthenticated("no API token (authorization: Bearer …) / 缺少 API 令牌"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or_else(|| Status::unauthenticated("authorization must be `Bearer <token>` / 令牌格式无效"))?;
        let hash = auth::token_hash(token.trim());
        let found: Option<(String, String)> = self.core.read(|db| {
            db.query_row(
                "SELECT name, role FROM principals WHERE token_sha256 = ?1 AND disabled IS NULL",
                [&hash],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
        })?;
        // A disabled principal's token is refused as an unknown one is: nothing is logged of it.
        let (name, role) =
            found.ok_or_else(|| Status::unauthenticated("unknown or disabled API token / 令牌无效或主体已停用"))?;
        let role =
            Role::parse(&role).ok_or_else(|| Status::unauthenticated("principal without a role / 主体无角色"))?;
        Ok(Caller { name, role, token_sha256: hash })
    }

    /// The frame of every call, written once: authenticate and check the matrix ([`Api::begin`]),
    /// run `body` as the caller on the request's message, and answer — counted, and a refusal
    /// logged ([`Api::end`]).
    async fn call<M, T, F>(&self, rpc: &'static str, request: Request<M>, body: impl FnOnce(Caller, M) -> F) -> Reply<T>
    where
        F: Future<Output = Result<T, Status>>,
    {
        let caller = self.begin(rpc, &request).await?;
        let result = crate::CALLER.scope(caller.clone(), body(caller.clone(), request.into_inner())).await;
        self.end(rpc, &caller, result).await
    }

    /// The answer, counted; a refusal also logged.
    async fn end<T>(&self, rpc: &'static str, caller: &Caller, result: Result<T, Status>) -> Reply<T> {
        match result {
            Ok(value) => {
                self.core.metrics.call(rpc, tonic::Code::Ok);
                Ok(Response::new(value))
            }
            Err(status) => Err(self.refused(rpc, caller, status).await),
        }
    }

    async fn refused(&self, rpc: &'static str, caller: &Caller, status: Status) -> Status {
        self.core.metrics.call(rpc, status.code());
        tracing::info!(code = ?status.code(), "refused");
        if status.code() == tonic::Code::Internal {
            return status;
        }
        let mut reason: String =
            status.message().chars().map(|c| if c.is_control() { ' ' } else { c }).take(300).collect();
        reason = reason.trim().to_owned();
        if reason.is_empty() {
            reason = "-".into();
        }
        let code = format!("{:?}", status.code());
        let guard = self.core.write.lock().await;
        // Past the minute's allowance the refusal is only counted; the count goes with the
        // principal's next logged refusal.
        let unlogged = {
            let mut refusals = self.core.refusals.lock().unwrap_or_else(|e| e.into_inner());
            let now = std::time::Instant::now();
            let window =
                refusals.entry(caller.name.clone()).or_insert(crate::Refusals { since: now, logged: 0, unlogged: 0 });
            if now.duration_since(window.since) >= std::time::Duration::from_secs(60) {
                (window.since, window.logged) = (now, 0);
            }
            if window.logged >= self.core.config.refusals_per_minute {
                window.unlogged += 1;
                return status;
            }
            window.logged += 1;
            std::mem::take(&mut window.unlogged)
        };
        let unlogged = unlogged.to_string();
        let mut fields = vec![("rpc", rpc), ("code", code.as_str()), ("reason", reason.as_str())];
        if unlogged != "0" {
            fields.push(("unlogged", unlogged.as_str()));
        }
        match self.core.commit_entry(&guard, kind::REQUEST_REFUSED, &caller.name, &fields).await {
            Ok(_) => status,
            Err(e) => e,
        }
    }

    /// Whether `entry` concerns `caller`, an operator or an application unit: made by it, naming
    /// it, or about its own licence, agreement, module, run or release.
    fn concerns(&self, caller: &Caller, entry: &Entry) -> Result<bool, Status> {
        let me = caller.name.as_str();
        if entry.actor() == me
            || ["principal", "operator", "application_unit", "recipient"].iter().any(|k| entry.get(k) == Some(me))
        {
            return Ok(true);
        }
        let owned = [
            (
                "run",
                "SELECT count(*) > 0 FROM runs r JOIN agreements a ON a.id = r.agreement WHERE r.id = ?1 AND (r.operator = ?2 OR a.application_unit = ?2)",
            ),
            ("release", "SELECT count(*) > 0 FROM releases WHERE id = ?1 AND (operator = ?2 OR application_unit = ?2)"),
            ("licence", "SELECT count(*) > 0 FROM licences WHERE id = ?1 AND operator = ?2"),
            (
                "agreement",
                "SELECT count(*) > 0 FROM agreements WHERE id = ?1 AND (operator = ?2 OR application_unit = ?2)",
            ),
            ("module", "SELECT count(*) > 0 FROM modules WHERE sha256 = ?1 AND operator = ?2"),
        ];
        for (field, sql) in owned {
            if let Some(id) = entry.get(field)
                && self.core.read(|db| db.query_row(sql, [id, me], |r| r.get::<_, bool>(0)))?
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn licence(&self, id: &str) -> Result<pb::Licence, Status> {
        self.core
            .read(|db| db.query_row("SELECT * FROM licences WHERE id = ?1", [id], licence_row).optional())?
            .ok_or_else(|| not_found("licence", "授权运营协议", id))
    }

    /// The licence `id`, if new runs may start under it now.
    fn licence_in_force(&self, id: &str) -> Result<pb::Licence, Status> {
        let licence = self.licence(id)?;
        if !licence.in_force {
            return Err(precondition(
                format!("licence {id} is suspended, revoked or outside its period: no new run starts"),
                "授权运营协议已暂停、撤销或不在有效期内，不能开始新的运行",
            ));
        }
        Ok(licence)
    }

    fn agreement(&self, id: &str) -> Result<pb::Agreement, Status> {
        self.core
            .read(|db| db.query_row("SELECT * FROM agreements WHERE id = ?1", [id], agreement_row).optional())?
            .ok_or_else(|| not_found("agreement", "数据服务协议", id))
    }

    fn module(&self, sha: &str) -> Result<pb::Module, Status> {
        self.core
            .read(|db| db.query_row(&format!("{MODULE_SELECT} WHERE m.sha256 = ?1"), [sha], module_row).optional())?
            .ok_or_else(|| not_found("module", "分析模块", sha))
    }

    fn run(&self, id: &str) -> Result<pb::Run, Status> {
        self.core
            .read(|db| db.query_row("SELECT * FROM runs WHERE id = ?1", [id], run_row).optional())?
            .ok_or_else(|| not_found("run", "运行", id))
    }

    fn release(&self, id: &str) -> Result<pb::Release, Status> {
        self.core
            .read(|db| db.query_row("SELECT * FROM releases WHERE id = ?1", [id], release_row).optional())?
            .ok_or_else(|| not_found("release", "发布结果", id))
    }

    /// Whether `caller`'s token still stands: not rotated or revoked, its principal not disabled.
    fn still_valid(&self, caller: &Caller) -> bool {
        self.core
            .read(|db| {
                db.query_row(
                    "SELECT count(*) > 0 FROM principals WHERE name = ?1 AND token_sha256 = ?2 AND disabled IS NULL",
                    [&caller.name, &caller.token_sha256],
                    |r| r.get(0),
                )
            })
            .unwrap_or(false)
    }

    /// The principal `name` (never the log's own).
    fn principal(&self, name: &str) -> Result<pb::Principal, Status> {
        self.core
            .read(|db| {
                db.query_row("SELECT * FROM principals WHERE name = ?1 AND role != 'log'", [name], principal_row)
                    .optional()
            })?
            .ok_or_else(|| not_found("principal", "主体", name))
    }

    /// The principal `name`, if it has `role` and is not disabled.
    fn principal_acting_as(&self, name: &str, role: Role) -> Result<pb::Principal, Status> {
        let principal = self.principal(name).ok().filter(|p| p.role == role.to_proto() as i32);
        let Some(principal) = principal else {
            return Err(precondition(
                format!("{name} is not a registered {}", role.code()),
                format!("{name} 不是已登记的{}", role.zh()),
            ));
        };
        if !principal.disabled.is_empty() {
            return Err(precondition(format!("{name} is disabled"), format!("{name} 已被停用")));
        }
        Ok(principal)
    }

    fn principal_key(&self, name: &str) -> Result<VerifierKey, Status> {
        let key: String =
            self.core.read(|db| db.query_row("SELECT key FROM principals WHERE name = ?1", [name], |r| r.get(0)))?;
        VerifierKey::parse(&key).map_err(|e| internal("principal key", e))
    }

    /// Opens a signed entry of `expected` kind made by `caller` with its registered key.
    fn signed_entry(&self, caller: &Caller, bytes: &[u8], expected: &str) -> Result<Entry, Status> {
        let (entry, note) = entry::open(bytes).map_err(|e| bad(format!("entry: {e}"), format!("条目：{}", e.zh())))?;
        if entry.kind() != expected {
            return Err(bad(
                format!("the entry is a {}, not a {expected}", entry.kind()),
                format!("条目类型应为 {expected}"),
            ));
        }
        if entry.actor() != caller.name {
            return Err(denied(
                format!("the entry's actor {} is not the caller {}", entry.actor(), caller.name),
                "条目的行为人不是调用者本人",
            ));
        }
        let note = note.ok_or_else(|| bad("the entry is not signed", "条目未签名"))?;
        let key = self.principal_key(&caller.name)?;
        note.verify(std::slice::from_ref(&key))
            .map_err(|e| denied(format!("the entry's signature: {e}"), format!("条目签名无效：{}", e.zh())))?;
        if (entry.time().0 - now().0).abs() > MAX_SKEW_SECONDS {
            return Err(bad(
                format!("the entry's time {} is more than {MAX_SKEW_SECONDS} s from the server's", entry.time()),
                "条目时间与服务器时间相差过大",
            ));
        }
        Ok(entry)
    }
}

fn field<'e>(entry: &'e Entry, name: &str) -> Result<&'e str, Status> {
    entry.get(name).ok_or_else(|| bad(format!("the entry has no {name} field"), format!("条目缺少字段 {name}")))
}

// ---- principals ----

#[tonic::async_trait]
impl Principals for Api {
    async fn register(&self, request: Request<pb::RegisterPrincipalRequest>) -> Reply<pb::RegisterPrincipalResponse> {
        self.call("Principals.Register", request, |caller, r| async move {
            check_id("name", &r.name)?;
            let role = Role::from_proto(r.role).ok_or_else(|| bad("role is unspecified or unknown", "角色无效"))?;
            check_text("display_name", &r.display_name, true)?;
            let key = VerifierKey::parse(&r.key).map_err(|e| bad(format!("key: {e}"), format!("公钥：{}", e.zh())))?;
            if key.name() != r.name {
                return Err(bad(
                    format!("the key is named {}, not {}", key.name(), r.name),
                    "公钥名称须与主体名称一致",
                ));
            }
            let guard = self.core.write.lock().await;
            let exists: bool = self.core.read(|db| {
                db.query_row("SELECT count(*) > 0 FROM principals WHERE name = ?1", [&r.name], |r| r.get(0))
            })?;
            if exists {
                return Err(Status::already_exists(format!("principal {} exists / 主体已存在", r.name)));
            }
            let token = auth::new_token();
            let hash = auth::token_hash(&token);
            let index = self
                .core
                .commit_entry(
                    &guard,
                    kind::PRINCIPAL_REGISTERED,
                    &caller.name,
                    &[
                        ("principal", &r.name),
                        ("role", role.code()),
                        ("key", &r.key),
                        ("token_sha256", &hash),
                        ("display_name", &r.display_name),
                    ],
                )
                .await?;
            let principal = self
                .core
                .read(|db| db.query_row("SELECT * FROM principals WHERE name = ?1", [&r.name], principal_row))?;
            Ok(pb::RegisterPrincipalResponse { principal: Some(principal), token, log_index: index })
        })
        .await
    }

    async fn list(&self, request: Request<pb::Empty>) -> Reply<pb::PrincipalList> {
        self.call("Principals.List", request, |caller, _| async move {
            let all = caller.role == Role::Admin;
            let result = self.core.rows(
                "SELECT * FROM principals WHERE role != 'log' AND (?1 OR name = ?2) ORDER BY name",
                params![all, caller.name],
                principal_row,
            );
            result.map(|principals| pb::PrincipalList { principals })
        })
        .await
    }

    async fn whoami(&self, request: Request<pb::Empty>) -> Reply<pb::Principal> {
        self.call("Principals.Whoami", request, |caller, _| async move { self.principal(&caller.name) }).await
    }

    async fn disable(&self, request: Request<pb::PrincipalAction>) -> Reply<pb::Principal> {
        self.call("Principals.Disable", request, |caller, r| async move {
            check_id("name", &r.name)?;
            check_text("reason", &r.reason, true)?;
            if r.name == caller.name {
                return Err(precondition("an administrator cannot disable itself", "管理员不能停用自己"));
            }
            let guard = self.core.write.lock().await;
            if !self.principal(&r.name)?.disabled.is_empty() {
                return Err(precondition(format!("{} is disabled already", r.name), "该主体已被停用"));
            }
            let fields = [("principal", r.name.as_str()), ("reason", &r.reason)];
            self.core.commit_entry(&guard, kind::PRINCIPAL_DISABLED, &caller.name, &fields).await?;
            self.principal(&r.name)
        })
        .await
    }

    async fn enable(&self, request: Request<pb::PrincipalAction>) -> Reply<pb::Principal> {
        self.call("Principals.Enable", request, |caller, r| async move {
            check_id("name", &r.name)?;
            let guard = self.core.write.lock().await;
            if self.principal(&r.name)?.disabled.is_empty() {
                return Err(precondition(format!("{} is not disabled", r.name), "该主体未被停用"));
            }
            self.core.commit_entry(&guard, kind::PRINCIPAL_ENABLED, &caller.name, &[("principal", &r.name)]).await?;
            self.principal(&r.name)
        })
        .await
    }

    async fn rotate_token(&self, request: Request<pb::PrincipalAction>) -> Reply<pb::TokenRotated> {
        self.call("Principals.RotateToken", request, |caller, r| async move {
            let name = r.name;
            check_id("name", &name)?;
            if name != caller.name && caller.role != Role::Admin {
                return Err(denied("only an administrator rotates another's token", "只有管理员可以更换他人的令牌"));
            }
            let guard = self.core.write.lock().await;
            self.principal(&name)?;
            let token = auth::new_token();
            let fields = [("principal", name.as_str()), ("token_sha256", &auth::token_hash(&token))];
            let index = self.core.commit_entry(&guard, kind::TOKEN_ROTATED, &caller.name, &fields).await?;
            Ok(pb::TokenRotated { principal: Some(self.principal(&name)?), token, log_index: index })
        })
        .await
    }

    async fn revoke_token(&self, request: Request<pb::PrincipalAction>) -> Reply<pb::Principal> {
        self.call("Principals.RevokeToken", request, |caller, r| async move {
            check_id("name", &r.name)?;
            check_text("reason", &r.reason, true)?;
            if r.name == caller.name {
                return Err(precondition("an administrator cannot revoke its own token", "管理员不能撤销自己的令牌"));
            }
            let guard = self.core.write.lock().await;
            if !self.principal(&r.name)?.has_token {
                return Err(precondition(format!("{} has no token", r.name), "该主体没有令牌"));
            }
            let fields = [("principal", r.name.as_str()), ("reason", &r.reason)];
            self.core.commit_entry(&guard, kind::TOKEN_REVOKED, &caller.name, &fields).await?;
            self.principal(&r.name)
        })
        .await
    }
}

// ---- catalog ----

#[tonic::async_trait]
impl Catalog for Api {
    async fn list_datasets(&self, request: Request<pb::Empty>) -> Reply<pb::DatasetList> {
        self.call("Catalog.ListDatasets", request, |_, _| async move {
            let mut datasets = Vec::new();
            for d in &self.core.catalog.datasets {
                let version: Option<String> = self.core.read(|db| {
                    db.query_row("SELECT version FROM datasets WHERE id = ?1", [&d.id], |r| r.get(0)).optional()
                })?;
                datasets.push(pb::Dataset {
                    id: d.id.clone(),
                    title: format!("{} {}", d.title.zh, d.title.en),
                    level: format!("{} {}", d.level.zh(), d.level.code()),
                    provider: format!("{} {}", d.provider.zh, d.provider.en),
                    version: version.unwrap_or_default(),
                    privacy_unit: d.privacy_unit.clone(),
                });
            }
            Ok(pb::DatasetList { datasets })
        })
        .await
    }
}

// ---- licences and agreements ----

impl Api {
    async fn licence_action(
        &self,
        rpc: &'static str,
        request: Request<pb::LicenceActionRequest>,
        entry_kind: &str,
        from: &[i32],
    ) -> Reply<pb::Licence> {
        self.call(rpc, request, |caller, r| async move {
            check_id("id", &r.id)?;
            check_text("reason", &r.reason, entry_kind != kind::LICENCE_RESUMED)?;
            let guard = self.core.write.lock().await;
            let licence = self.licence(&r.id)?;
            if !from.contains(&licence.status) {
                let status = pb::LicenceStatus::try_from(licence.status).map_or("?", |s| s.as_str_name());
                return Err(precondition(
                    format!("licence {} is {status}; {rpc} does not apply", r.id),
                    format!("授权运营协议 {} 当前状态为 {status}，不能执行此操作", r.id),
                ));
            }
            let mut fields = vec![("licence", r.id.as_str())];
            if !r.reason.is_empty() {
                fields.push(("reason", r.reason.as_str()));
            }
            self.core.commit_entry(&guard, entry_kind, &caller.name, &fields).await?;
            runs::end_held(&self.core, &guard).await?;
            self.licence(&r.id)
        })
        .await
    }
}

#[tonic::async_trait]
impl Licences for Api {
    async fn grant(&self, request: Request<pb::GrantLicenceRequest>) -> Reply<pb::Licence> {
        self.call("Licences.Grant", request, |caller, r| async move {
            check_id("id", &r.id)?;
            check_id("operator", &r.operator)?;
            check_text("purpose", &r.purpose, true)?;
            let (from, until) = (check_time("valid_from", &r.valid_from)?, check_time("valid_until", &r.valid_until)?);
            if from >= until {
                return Err(bad("valid_from must be before valid_until", "生效时间须早于失效时间"));
            }
            if r.datasets.is_empty() {
                return Err(bad("a licence names at least one dataset", "授权须至少包含一个数据集"));
            }
            let mut datasets = r.datasets.clone();
            datasets.sort();
            datasets.dedup();
            for d in &datasets {
                if self.core.catalog.dataset(d).is_err() {
                    return Err(not_found("dataset", "数据集", d));
                }
            }
            let guard = self.core.write.lock().await;
            self.principal_acting_as(&r.operator, Role::Operator)?;
            if self.licence(&r.id).is_ok() {
                return Err(Status::already_exists(format!("licence {} exists / 授权运营协议已存在", r.id)));
            }
            let datasets = datasets.join(",");
            self.core
                .commit_entry(
                    &guard,
                    kind::LICENCE_GRANTED,
                    &caller.name,
                    &[
                        ("licence", &r.id),
                        ("operator", &r.operator),
                        ("datasets", &datasets),
                        ("purpose", &r.purpose),
                        ("valid_from", &r.valid_from),
                        ("valid_until", &r.valid_until),
                    ],
                )
                .await?;
            self.licence(&r.id)
        })
        .await
    }

    async fn suspend(&self, request: Request<pb::LicenceActionRequest>) -> Reply<pb::Licence> {
        self.licence_action("Licences.Suspend", request, kind::LICENCE_SUSPENDED, &[pb::LicenceStatus::Active as i32])
            .await
    }

    async fn resume(&self, request: Request<pb::LicenceActionRequest>) -> Reply<pb::Licence> {
        self.licence_action("Licences.Resume", request, kind::LICENCE_RESUMED, &[pb::LicenceStatus::Suspended as i32])
            .await
    }

    async fn revoke(&self, request: Request<pb::LicenceActionRequest>) -> Reply<pb::Licence> {
        let from = [pb::LicenceStatus::Active as i32, pb::LicenceStatus::Suspended as i32];
        self.licence_action("Licences.Revoke", request, kind::LICENCE_REVOKED, &from).await
    }

    async fn list(&self, request: Request<pb::Empty>) -> Reply<pb::LicenceList> {
        self.call("Licences.List", request, |caller, _| async move {
            let all = caller.role != Role::Operator;
            let result = self.core.rows(
                "SELECT * FROM licences WHERE ?1 OR operator = ?2 ORDER BY id",
                params![all, caller.name],
                licence_row,
            );
            result.map(|licences| pb::LicenceList { licences })
        })
        .await
    }
}

#[tonic::async_trait]
impl Agreements for Api {
    async fn create(&self, request: Request<pb::CreateAgreementRequest>) -> Reply<pb::Agreement> {
        self.call("Agreements.Create", request, |caller, r| async move {
            check_id("id", &r.id)?;
            check_id("licence", &r.licence)?;
            check_id("application_unit", &r.application_unit)?;
            check_text("scenario", &r.scenario, true)?;
            if check_time("valid_until", &r.valid_until)? <= now() {
                return Err(bad("valid_until is in the past", "失效时间已过"));
            }
            let guard = self.core.write.lock().await;
            let licence = self.licence(&r.licence)?;
            if licence.operator != caller.name {
                return Err(denied(format!("licence {} is not yours", r.licence), "该授权运营协议不属于调用者"));
            }
            if !licence.in_force {
                return Err(precondition(
                    format!("licence {} is not in force", r.licence),
                    "授权运营协议未生效或已暂停",
                ));
            }
            self.principal_acting_as(&r.application_unit, Role::ApplicationUnit)?;
            if self.agreement(&r.id).is_ok() {
                return Err(Status::already_exists(format!("agreement {} exists / 数据服务协议已存在", r.id)));
            }
            self.core
                .commit_entry(
                    &guard,
                    kind::AGREEMENT_SIGNED,
                    &caller.name,
                    &[
                        ("agreement", &r.id),
                        ("licence", &r.licence),
                        ("application_unit", &r.application_unit),
                        ("scenario", &r.scenario),
                        ("valid_until", &r.valid_until),
                    ],
                )
                .await?;
            self.agreement(&r.id)
        })
        .await
    }

    async fn end(&self, request: Request<pb::AgreementActionRequest>) -> Reply<pb::Agreement> {
        self.call("Agreements.End", request, |caller, r| async move {
            check_id("id", &r.id)?;
            check_text("reason", &r.reason, false)?;
            let guard = self.core.write.lock().await;
            let agreement = self.agreement(&r.id)?;
            if caller.role == Role::Operator && agreement.operator != caller.name {
                return Err(denied(format!("agreement {} is not yours", r.id), "该数据服务协议不属于调用者"));
            }
            if agreement.ended {
                return Err(precondition(format!("agreement {} has ended already", r.id), "数据服务协议已终止"));
            }
            let mut fields = vec![("agreement", r.id.as_str())];
            if !r.reason.is_empty() {
                fields.push(("reason", r.reason.as_str()));
            }
            self.core.commit_entry(&guard, kind::AGREEMENT_ENDED, &caller.name, &fields).await?;
            runs::end_held(&self.core, &guard).await?;
            self.agreement(&r.id)
        })
        .await
    }

    async fn list(&self, request: Request<pb::Empty>) -> Reply<pb::AgreementList> {
        self.call("Agreements.List", request, |caller, _| async move {
            let all = matches!(caller.role, Role::Admin | Role::Reviewer);
            let result = self.core.rows(
                "SELECT * FROM agreements WHERE ?1 OR operator = ?2 OR application_unit = ?2 ORDER BY id",
                params![all, caller.name],
                agreement_row,
            );
            result.map(|agreements| pb::AgreementList { agreements })
        })
        .await
    }
}

// ---- modules ----

impl Api {
    async fn decide(
        &self,
        rpc: &'static str,
        request: Request<pb::SignedDecision>,
        entry_kind: &str,
    ) -> Reply<pb::Module> {
        self.call(rpc, request, |caller, r| async move {
            let entry = self.signed_entry(&caller, &r.entry, entry_kind)?;
            let sha = field(&entry, "module")?;
            if entry_kind == kind::MODULE_REJECTED {
                check_text("reason", field(&entry, "reason")?, true)?;
            }
            let guard = self.core.write.lock().await;
            let module = self.module(sha)?;
            if module.status != pb::ModuleStatus::Submitted as i32 {
                return Err(precondition(format!("module {sha} is not waiting for review"), "该模块不在待审核状态"));
            }
            if module.operator == caller.name {
                return Err(denied("nobody reviews their own submission", "不得审核本人提交的模块"));
            }
            if module.approvals.contains(&caller.name) {
                return Err(precondition(
                    format!("{} has approved module {sha} already; it needs a different reviewer", caller.name),
                    "已审核通过过该模块，须由另一名审核员审核",
                ));
            }
            self.core.commit(&guard, r.entry).await?;
            let module = self.module(sha)?;
            if module.status == pb::ModuleStatus::Approved as i32 {
                runs::compile_approved(Arc::clone(&self.core), sha.to_owned());
            }
            Ok(module)
        })
        .await
    }
}

#[tonic::async_trait]
impl Modules for Api {
    async fn submit(&self, request: Request<pb::SubmitModuleRequest>) -> Reply<pb::Module> {
        self.call("Modules.Submit", request, |caller, r| async move {
            if r.module.is_empty() || r.module.len() > MAX_MODULE_BYTES {
                return Err(bad(
                    format!("a module has 1 to {MAX_MODULE_BYTES} bytes, this one {}", r.module.len()),
                    "模块大小超出范围",
                ));
            }
            let manifest = Manifest::parse(&r.manifest)
                .map_err(|e| bad(format!("manifest: {e}"), "模块清单（module.toml）无效"))?;
            // The output contract, judged like SQL before anyone reviews it.
            sandbox_policy::contract::judge(&manifest, &self.core.catalog, None)
                .await
                .map_err(|e| bad(format!("output contract: {e}"), "输出契约不符合列约束或公开分类"))?;
            let entry = self.signed_entry(&caller, &r.entry, kind::MODULE_SUBMITTED)?;
            let (sha, manifest_sha) = (sha256_hex(&r.module), sha256_hex(r.manifest.as_bytes()));
            if field(&entry, "module")? != sha || field(&entry, "manifest")? != manifest_sha {
                return Err(bad(
                    "the signed entry's module and manifest hashes are not those of the bytes sent",
                    "签名条目中的模块或清单哈希与上传内容不符",
                ));
            }
            let mut datasets = manifest.datasets.clone();
            datasets.sort();
            datasets.dedup();
            if field(&entry, "datasets")? != datasets.join(",") {
                return Err(bad(
                    format!("the entry's datasets must be the manifest's: {}", datasets.join(",")),
                    "签名条目中的数据集须与清单一致",
                ));
            }
            if field(&entry, "name")? != manifest.name {
                return Err(bad(
                    format!("the entry's name must be the manifest's: {}", manifest.name),
                    "名称须与清单一致",
                ));
            }
            let licence_id = field(&entry, "licence")?;
            let guard = self.core.write.lock().await;
            let licence = self.licence(licence_id)?;
            if licence.operator != caller.name {
                return Err(denied(format!("licence {licence_id} is not yours"), "该授权运营协议不属于调用者"));
            }
            if !licence.in_force {
                return Err(precondition(
                    format!("licence {licence_id} is not in force"),
                    "授权运营协议未生效或已暂停",
                ));
            }
            if let Some(d) = datasets.iter().find(|d| !licence.datasets.contains(d)) {
                return Err(denied(
                    format!("licence {licence_id} does not cover dataset {d}"),
                    format!("授权不包含数据集 {d}"),
                ));
            }
            if self.module(&sha).is_ok() {
                return Err(Status::already_exists(format!("module {sha} was submitted already / 该模块已提交")));
            }
            // Content-addressed and immutable: a file already there must hold these bytes.
            let modules = self.core.dir.modules();
            let [wasm, toml] = DataDir::module_files(&sha);
            let mut files = sandbox_log::files::Writer::new(&modules);
            files
                .create(&wasm, &r.module)
                .and_then(|()| files.create(&toml, r.manifest.as_bytes()))
                .and_then(|()| files.sync())
                .map_err(|e| internal("module files", e))?;
            self.core.commit(&guard, r.entry).await?;
            self.module(&sha)
        })
        .await
    }

    async fn approve(&self, request: Request<pb::SignedDecision>) -> Reply<pb::Module> {
        self.decide("Modules.Approve", request, kind::MODULE_APPROVED).await
    }

    async fn reject(&self, request: Request<pb::SignedDecision>) -> Reply<pb::Module> {
        self.decide("Modules.Reject", request, kind::MODULE_REJECTED).await
    }

    async fn revoke(&self, request: Request<pb::RevokeModuleRequest>) -> Reply<pb::Module> {
        self.call("Modules.Revoke", request, |caller, r| async move {
            check_text("reason", &r.reason, true)?;
            let guard = self.core.write.lock().await;
            let module = self.module(&r.module)?;
            if module.status == pb::ModuleStatus::Revoked as i32 || module.status == pb::ModuleStatus::Rejected as i32 {
                return Err(precondition(
                    format!("module {} is rejected or revoked already", r.module),
                    "该模块已被驳回或撤销",
                ));
            }
            self.core
                .commit_entry(
                    &guard,
                    kind::MODULE_REVOKED,
                    &caller.name,
                    &[("module", &r.module), ("reason", &r.reason)],
                )
                .await?;
            runs::end_held(&self.core, &guard).await?;
            self.module(&r.module)
        })
        .await
    }

    async fn list(&self, request: Request<pb::Empty>) -> Reply<pb::ModuleList> {
        self.call("Modules.List", request, |caller, _| async move {
            let all = caller.role != Role::Operator;
            let result = self.core.rows(
                &format!("{MODULE_SELECT} WHERE ?1 OR m.operator = ?2 ORDER BY m.log_index"),
                params![all, caller.name],
                module_row,
            );
            result.map(|modules| pb::ModuleList { modules })
        })
        .await
    }

    async fn download(&self, request: Request<pb::ModuleRef>) -> Reply<pb::ModuleBytes> {
        self.call("Modules.Download", request, |caller, r| async move {
            let module = self.module(&r.module)?;
            if caller.role == Role::Operator && module.operator != caller.name {
                return Err(denied(format!("module {} is not yours", r.module), "该模块不属于调用者"));
            }
            let bytes = std::fs::read(runs::module_path(&self.core, &r.module)).map_err(|e| internal("module", e))?;
            let manifest = std::fs::read_to_string(runs::manifest_path(&self.core, &r.module))
                .map_err(|e| internal("manifest", e))?;
            Ok(pb::ModuleBytes { module: bytes, manifest })
        })
        .await
    }
}

// ---- runs ----

fn parameters(given: &[pb::Parameter]) -> Vec<(String, String)> {
    given.iter().map(|p| (p.name.clone(), p.value.clone())).collect()
}

impl Api {
    /// The caller's own module, with its manifest, after checking the bytes on disk are still
    /// the ones submitted: a different byte is a new submission.
    fn own_module(&self, caller: &Caller, sha: &str) -> Result<(pb::Module, Manifest), Status> {
        let module = self.module(sha)?;
        if module.operator != caller.name {
            return Err(denied(format!("module {sha} is not yours"), "该模块不属于调用者"));
        }
        let bytes = std::fs::read(runs::module_path(&self.core, sha)).map_err(|e| internal("module", e))?;
        let text =
            std::fs::read_to_string(runs::manifest_path(&self.core, sha)).map_err(|e| internal("manifest", e))?;
        if sha256_hex(&bytes) != sha || sha256_hex(text.as_bytes()) != module.manifest_sha256 {
            return Err(precondition(
                format!("the stored bytes of module {sha} differ from what was submitted; submit it again"),
                "模块文件与提交时的哈希不符，须重新提交",
            ));
        }
        let manifest = Manifest::parse(&text).map_err(|e| internal("manifest", e))?;
        Ok((module, manifest))
    }

    /// The run with its released audit report: the one its operator may read.
    fn with_report(&self, mut run: pb::Run) -> pb::Run {
        let dir = self.core.dir.runs().join(&run.id);
        run.audit_report_json = std::fs::read_to_string(dir.join("report.json")).unwrap_or_default();
        run.audit_report_text = std::fs::read_to_string(dir.join("report.txt")).unwrap_or_default();
        run
    }

    /// Production runs the licence has started today (Beijing time), for `runs_per_day`.
    fn runs_today(&self, licence: &str) -> Result<u32, Status> {
        // Days of Beijing time (UTC+8, no daylight saving).
        let day = |t: Timestamp| (t.0 + 8 * 3600).div_euclid(86_400);
        let today = day(Timestamp::now());
        let starts: Vec<String> =
            self.core.rows("SELECT requested_at FROM runs WHERE licence = ?1", [licence], |r| r.get(0))?;
        let today_runs = starts.iter().filter(|at| Timestamp::parse(at).is_ok_and(|t| day(t) == today)).count();
        Ok(today_runs as u32)
    }

    fn visible_run(&self, caller: &Caller, id: &str) -> Result<pb::Run, Status> {
        let run = self.run(id)?;
        if caller.role == Role::Operator && run.operator != caller.name {
            return Err(denied(format!("run {id} is not yours"), "该运行不属于调用者"));
        }
        Ok(run)
    }
}

impl Api {
    /// A reviewer's signed decision on one table the audit held; the decision that completes
    /// the review with something approved releases it.
    async fn review_output(
        &self,
        rpc: &'static str,
        request: Request<pb::SignedDecision>,
        entry_kind: &str,
    ) -> Reply<pb::Run> {
        self.call(rpc, request, |caller, r| async move {
            let entry = self.signed_entry(&caller, &r.entry, entry_kind)?;
            let (id, report, table) = (field(&entry, "run")?, field(&entry, "report")?, field(&entry, "table")?);
            if entry_kind == kind::OUTPUT_REJECTED {
                check_text("reason", field(&entry, "reason")?, true)?;
            }
            let guard = self.core.write.lock().await;
            let run = self.run(id)?;
            if !run.held_tables.iter().any(|t| t == table) {
                return Err(precondition(
                    format!("run {id} has no table {table} waiting for review"),
                    format!("运行 {id} 没有待复核的表 {table}"),
                ));
            }
            if report != run.audit_report_id {
                return Err(precondition(
                    format!("the decision names audit report {report}; run {id}'s is {}", run.audit_report_id),
                    "复核意见针对的不是该运行当前的审核报告",
                ));
            }
            if run.operator == caller.name {
                return Err(denied("nobody reviews their own output", "不得复核本人的输出"));
            }
            // Nothing is let out under a licence or agreement no longer in force, nor by or to a
            // disabled principal.
            if entry_kind == kind::OUTPUT_APPROVED {
                self.licence_in_force(&run.licence)?;
                self.principal_acting_as(&run.operator, Role::Operator)?;
                if !self.agreement(&run.agreement)?.in_force {
                    return Err(precondition(
                        format!("agreement {} has ended or expired: no held table is let out", run.agreement),
                        "数据服务协议已终止或过期，待复核的表不能放行",
                    ));
                }
            }
            let decided: bool = self.core.read(|db| {
                db.query_row(
                    "SELECT count(*) > 0 FROM output_reviews WHERE run = ?1 AND tbl = ?2 AND reviewer = ?3",
                    [id, table, caller.name.as_str()],
                    |r| r.get(0),
                )
            })?;
            if decided {
                return Err(precondition(
                    format!(
                        "{} has decided on table {table} of run {id} already; it needs a different reviewer",
                        caller.name
                    ),
                    "已复核过该表，须由另一名审核员复核",
                ));
            }
            self.core.commit(&guard, r.entry).await?;
            let review = self.core.read(|db| crate::state::review(db, id))?;
            drop(guard);
            if review.undecided.is_empty() && !review.approved.is_empty() {
                runs::release_reviewed(&self.core, id).await?;
            }
            runs::forget_answer(&self.core, id)?;
            Ok(self.with_report(self.run(id)?))
        })
        .await
    }
}

fn terminal(status: i32) -> bool {
    [pb::RunStatus::Released, pb::RunStatus::Withheld, pb::RunStatus::Failed, pb::RunStatus::Cancelled]
        .iter()
        .any(|s| *s as i32 == status)
}

type RunStream = Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::Run, Status>> + Send>>;

#[tonic::async_trait]
impl Runs for Api {
    async fn start(&self, request: Request<pb::StartRunRequest>) -> Reply<pb::Run> {
        self.call("Runs.Start", request, |caller, r| async move {
            let given = parameters(&r.parameters);
            let guard = self.core.write.lock().await;
            let (module, manifest) = self.own_module(&caller, &r.module)?;
            if module.status != pb::ModuleStatus::Approved as i32 {
                return Err(precondition(format!("module {} is not approved", r.module), "模块未经审核通过"));
            }
            let bound = manifest.bind(&given).map_err(|e| bad(format!("parameters: {e}"), "参数不符合模块清单"))?;
            // The contract again, with this run's values (a cut a parameter moves).
            let bound: Vec<(String, String)> = bound.into_iter().map(|(n, v)| (n, v.to_string())).collect();
            sandbox_policy::contract::judge(&manifest, &self.core.catalog, Some(&bound))
                .await
                .map_err(|e| bad(format!("output contract: {e}"), "输出契约不符合列约束或公开分类"))?;
            let licence = self.licence_in_force(&module.licence)?;
            let per_day = self.core.policy.runs().runs_per_day;
            if self.runs_today(&licence.id)? >= per_day {
                return Err(Status::resource_exhausted(format!(
                    "licence {} has started {per_day} production runs today, the most the policy allows / 该授权今日的生产运行次数已达策略上限 {per_day}",
                    licence.id
                )));
            }
            let agreement = self.agreement(&r.agreement)?;
            if agreement.operator != caller.name || agreement.licence != licence.id {
                return Err(denied(
                    format!("agreement {} is not one of yours under licence {}", r.agreement, licence.id),
                    "数据服务协议不属于调用者或不在该授权之下",
                ));
            }
            if !agreement.in_force {
                return Err(precondition(
                    format!("agreement {} has ended or expired", r.agreement),
                    "数据服务协议已终止或过期",
                ));
            }
            self.principal_acting_as(&agreement.application_unit, Role::ApplicationUnit)?;
            // Files replaced since their version was hashed are a new version, logged first.
            crate::reversion(&self.core, &guard, &module.datasets).await?;
            let mut datasets = Vec::new();
            for d in &module.datasets {
                let version: String = self
                    .core
                    .read(|db| db.query_row("SELECT version FROM datasets WHERE id = ?1", [d], |r| r.get(0)))?;
                datasets.push(format!("{d}@{version}"));
            }
            let datasets = datasets.join(",");
            let id = runs::next_id(&self.core, "runs", "run")?;
            let parameters_sha = runs::parameters_digest(&self.core, &given);
            self.core
                .commit_entry(
                    &guard,
                    kind::RUN_QUEUED,
                    &caller.name,
                    &[
                        ("run", &id),
                        ("module", &r.module),
                        ("licence", &licence.id),
                        ("agreement", &agreement.id),
                        ("parameters", &parameters_sha),
                        ("datasets", &datasets),
                    ],
                )
                .await?;
            let spec = runs::Spec {
                id: id.clone(),
                module: r.module,
                operator: caller.name.clone(),
                licence: licence.id,
                agreement: agreement.id,
                recipient: agreement.application_unit,
                datasets,
                parameters: given,
            };
            runs::enqueue(Arc::clone(&self.core), spec);
            self.run(&id)
        })
        .await
    }

    async fn develop(&self, request: Request<pb::DevelopRequest>) -> Reply<pb::DevelopResponse> {
        self.call("Runs.Develop", request, |caller, r| async move {
            let given = parameters(&r.parameters);
            let (module, manifest) = self.own_module(&caller, &r.module)?;
            if module.status == pb::ModuleStatus::Revoked as i32 {
                return Err(precondition(format!("module {} is revoked", r.module), "模块已撤销"));
            }
            let licence = self.licence_in_force(&module.licence)?;
            manifest.bind(&given).map_err(|e| bad(format!("parameters: {e}"), "参数不符合模块清单"))?;
            let answer = runs::develop(&self.core, &r.module, &licence.id, &given).await;
            // Logged before it is answered, so the bureau can count development runs too.
            let outcome = match &answer {
                Ok(answer) => answer.record.error.as_ref().map_or_else(|| "ok".to_owned(), |e| e.code()),
                Err(code) => format!("runner:{code}"),
            };
            let usage =
                answer.as_ref().ok().map(|a| (a.record.fuel_used.to_string(), a.record.wall_time_ms.to_string()));
            let parameters_sha = runs::parameters_digest(&self.core, &given);
            let mut fields = vec![
                ("module", r.module.as_str()),
                ("licence", licence.id.as_str()),
                ("parameters", &parameters_sha),
                ("outcome", &outcome),
            ];
            if let Some((fuel, wall_ms)) = &usage {
                fields.extend([("fuel", fuel.as_str()), ("wall_ms", wall_ms.as_str())]);
            }
            let guard = self.core.write.lock().await;
            self.core.commit_entry(&guard, kind::RUN_DEVELOPED, &caller.name, &fields).await?;
            drop(guard);
            let answer =
                answer.map_err(|code| Status::unavailable(format!("the runner failed: {code} / 运行器失败")))?;
            let record = &answer.record;
            Ok(pb::DevelopResponse {
                error_code: record.error.as_ref().map(|e| e.code()).unwrap_or_default(),
                error_text: record.error.as_ref().map(|e| e.explain()).unwrap_or_default(),
                tables: answer
                    .tables
                    .into_iter()
                    .map(|t| pb::OutputTable { name: t.name, sha256: t.sha256, ipc: t.ipc })
                    .collect(),
                log: answer.dev_log.unwrap_or_default(),
                fuel_used: record.fuel_used,
                wall_time_ms: record.wall_time_ms,
                peak_memory_bytes: record.peak_memory_bytes,
            })
        })
        .await
    }

    async fn cancel(&self, request: Request<pb::RunRef>) -> Reply<pb::Run> {
        self.call("Runs.Cancel", request, |caller, r| async move {
            let run = self.visible_run(&caller, &r.run)?;
            if terminal(run.status) || !self.core.runs.cancel(&r.run) {
                return Err(precondition(format!("run {} is not queued or running", r.run), "该运行不在排队或运行中"));
            }
            // The run's task logs its end; wait for it (ten seconds at most).
            let mut applied = self.core.applied.subscribe();
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
            loop {
                let run = self.run(&r.run)?;
                if terminal(run.status) {
                    return Ok(run);
                }
                match tokio::time::timeout_at(deadline, applied.changed()).await {
                    Ok(Ok(())) => {}
                    _ => return Ok(run),
                }
            }
        })
        .await
    }

    async fn get(&self, request: Request<pb::RunRef>) -> Reply<pb::Run> {
        self.call("Runs.Get", request, |caller, r| async move {
            self.visible_run(&caller, &r.run).map(|run| self.with_report(run))
        })
        .await
    }

    type WatchStream = RunStream;

    async fn watch(&self, request: Request<pb::RunRef>) -> Reply<RunStream> {
        self.call("Runs.Watch", request, |caller, r| async move {
            let id = r.run.clone();
            // Subscribed before the first read, so no change between the two is missed.
            let mut applied = self.core.applied.subscribe();
            let first = self.visible_run(&caller, &id);
            first.map(|first| {
                let (api, watcher) = (self.clone(), caller.clone());
                let (tx, rx) = tokio::sync::mpsc::channel(4);
                tokio::spawn(async move {
                    let mut last = first;
                    if tx.send(Ok(api.with_report(last.clone()))).await.is_err() {
                        return;
                    }
                    // A run in review waits for people: the stream ends there too.
                    while !terminal(last.status) && last.status != pb::RunStatus::InReview as i32 {
                        if applied.changed().await.is_err() {
                            return;
                        }
                        // A caller disabled, or whose token was rotated or revoked, while it
                        // watches hears nothing more.
                        if !api.still_valid(&watcher) {
                            let status =
                                Status::unauthenticated("unknown or disabled API token / 令牌无效或主体已停用");
                            let _ = tx.send(Err(status)).await;
                            return;
                        }
                        let now = match api.run(&id) {
                            Ok(run) => run,
                            Err(e) => {
                                let _ = tx.send(Err(e)).await;
                                return;
                            }
                        };
                        if now != last {
                            if tx.send(Ok(api.with_report(now.clone()))).await.is_err() {
                                return;
                            }
                            last = now;
                        }
                    }
                });
                Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)) as RunStream
            })
        })
        .await
    }

    async fn approve_output(&self, request: Request<pb::SignedDecision>) -> Reply<pb::Run> {
        self.review_output("Runs.ApproveOutput", request, kind::OUTPUT_APPROVED).await
    }

    async fn get_internal_report(&self, request: Request<pb::RunRef>) -> Reply<pb::InternalReport> {
        self.call("Runs.GetInternalReport", request, |caller, r| async move {
            let run = self.run(&r.run)?;
            let dir = self.core.dir.runs().join(&run.id);
            let read = |name: &str| std::fs::read_to_string(dir.join(name));
            let (Ok(json), Ok(text)) = (read(runs::INTERNAL_JSON), read(runs::INTERNAL_TEXT)) else {
                return Err(precondition(format!("run {} has no audit report", run.id), "该运行没有审核报告"));
            };
            // Every read of figures that do not leave is on the record.
            let guard = self.core.write.lock().await;
            let fields = [("run", run.id.as_str()), ("report", run.audit_report_id.as_str())];
            self.core.commit_entry(&guard, kind::AUDIT_REPORT_READ, &caller.name, &fields).await?;
            Ok(pb::InternalReport { run: run.id, report_id: run.audit_report_id, json, text })
        })
        .await
    }

    async fn reject_output(&self, request: Request<pb::SignedDecision>) -> Reply<pb::Run> {
        self.review_output("Runs.RejectOutput", request, kind::OUTPUT_REJECTED).await
    }

    async fn list(&self, request: Request<pb::Empty>) -> Reply<pb::RunList> {
        self.call("Runs.List", request, |caller, _| async move {
            let all = caller.role != Role::Operator;
            let result = self.core.rows(
                "SELECT * FROM runs WHERE ?1 OR operator = ?2 ORDER BY id",
                params![all, caller.name],
                run_row,
            );
            result.map(|runs| pb::RunList { runs })
        })
        .await
    }
}

// ---- releases ----

#[tonic::async_trait]
impl Releases for Api {
    async fn list(&self, request: Request<pb::Empty>) -> Reply<pb::ReleaseList> {
        self.call("Releases.List", request, |caller, _| async move {
            let all = matches!(caller.role, Role::Admin | Role::Reviewer);
            let result = self.core.rows(
                "SELECT * FROM releases WHERE ?1 OR operator = ?2 OR application_unit = ?2 ORDER BY id",
                params![all, caller.name],
                release_row,
            );
            result.map(|releases| pb::ReleaseList { releases })
        })
        .await
    }

    async fn download(&self, request: Request<pb::ReleaseRef>) -> Reply<pb::ReleaseBundle> {
        self.call("Releases.Download", request, |caller, r| async move {
            let guard = self.core.write.lock().await;
            let release = self.release(&r.release)?;
            if release.application_unit != caller.name {
                return Err(denied(
                    format!("release {} is addressed to another application unit", r.release),
                    "该结果不是发给调用者的",
                ));
            }
            self.principal_acting_as(&release.operator, Role::Operator)?;
            let agreement = self.agreement(&release.agreement)?;
            if !agreement.in_force {
                return Err(precondition(
                    format!("agreement {} has ended or expired: nothing more is delivered under it", agreement.id),
                    "数据服务协议已终止或过期，不再交付",
                ));
            }
            if !self.licence(&agreement.licence)?.in_force {
                return Err(precondition(
                    format!(
                        "licence {} is suspended, revoked or outside its period: nothing more is delivered under it",
                        agreement.licence
                    ),
                    "授权运营协议已暂停、撤销或不在有效期内，不再交付",
                ));
            }
            let dir = self.core.dir.releases().join(&r.release);
            let mut files = Vec::new();
            for path in bundle_files(&dir).map_err(|e| internal("release bundle", e))? {
                let data = std::fs::read(dir.join(&path)).map_err(|e| internal("release bundle", e))?;
                files.push(pb::BundleFile { path, data });
            }
            self.core.commit_entry(&guard, kind::DELIVERY, &caller.name, &[("release", &r.release)]).await?;
            Ok(pb::ReleaseBundle { release: Some(release), files })
        })
        .await
    }
}

/// The files of a bundle, relative to it, sorted.
fn bundle_files(dir: &std::path::Path) -> std::io::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((path, prefix)) = stack.pop() {
        for item in std::fs::read_dir(&path)? {
            let item = item?;
            let name = format!("{prefix}{}", item.file_name().to_string_lossy());
            if item.file_type()?.is_dir() {
                stack.push((item.path(), format!("{name}/")));
            } else {
                out.push(name);
            }
        }
    }
    out.sort();
    Ok(out)
}

// ---- the log ----

#[tonic::async_trait]
impl Log for Api {
    async fn checkpoint(&self, request: Request<pb::Empty>) -> Reply<pb::CheckpointResponse> {
        self.call("Log.Checkpoint", request, |_, _| async move {
            Ok(pb::CheckpointResponse { checkpoint: self.core.log.checkpoint().to_vec(), size: self.core.log.size() })
        })
        .await
    }

    async fn entries(&self, request: Request<pb::EntriesRequest>) -> Reply<pb::EntriesResponse> {
        self.call("Log.Entries", request, |caller, r| async move {
            let size = self.core.log.size();
            if r.count == 0 || r.count > 1000 {
                return Err(bad("count must be 1 to 1000", "条目数须在 1 到 1000 之间"));
            }
            if r.start >= size {
                return Err(Status::out_of_range(format!("the log has {size} entries / 日志共 {size} 条")));
            }
            let end = (r.start + u64::from(r.count)).min(size);
            let mut entries = self.core.log.entries(r.start..end).map_err(|e| internal("log read", e))?;
            // Operators and application units read their own entries only, the others empty in
            // their places: other tenants' purposes, scenarios, feedback and refusals are not
            // theirs. Checkpoints and proofs stay public.
            if matches!(caller.role, Role::Operator | Role::ApplicationUnit) {
                for bytes in &mut entries {
                    let theirs = match entry::open(bytes) {
                        Ok((e, _)) => self.concerns(&caller, &e)?,
                        Err(_) => false,
                    };
                    if !theirs {
                        bytes.clear();
                    }
                }
            }
            Ok(pb::EntriesResponse { entries })
        })
        .await
    }

    async fn inclusion_proof(&self, request: Request<pb::IndexRequest>) -> Reply<pb::ProofResponse> {
        self.call("Log.InclusionProof", request, |_, r| async move {
            let index = r.index;
            let size = self.core.log.size();
            if index >= size {
                Err(Status::out_of_range(format!("the log has {size} entries / 日志共 {size} 条")))
            } else {
                self.core
                    .log
                    .tlog_proof(index)
                    .map(|p| pb::ProofResponse { proof: p.to_bytes() })
                    .map_err(|e| internal("proof", e))
            }
        })
        .await
    }

    async fn consistency_proof(&self, request: Request<pb::ConsistencyRequest>) -> Reply<pb::ConsistencyResponse> {
        self.call("Log.ConsistencyProof", request, |_, r| async move {
            let (old, new) = (r.old, r.new);
            let size = self.core.log.size();
            if old == 0 || old > new || new > size {
                Err(Status::out_of_range(format!("need 0 < old ≤ new ≤ {size} / 须满足 0 < old ≤ new ≤ {size}")))
            } else {
                self.core
                    .log
                    .consistency_proof(old, new)
                    .map(|hashes| pb::ConsistencyResponse { hashes: hashes.iter().map(|h| h.0.to_vec()).collect() })
                    .map_err(|e| internal("proof", e))
            }
        })
        .await
    }

    async fn file_report(&self, request: Request<pb::ReportRequest>) -> Reply<pb::AnnualReport> {
        self.call("Log.FileReport", request, |caller, r| async move {
            let year = r.year;
            // Entries below `size` never change: the report is computed without the write lock.
            let size = self.core.log.size();
            let mut annual = sandbox_verify::annual::Annual::new(year, &self.core.name, size)
                .map_err(|e| bad(format!("{e}"), e.zh()))?;
            if annual.period().0 > now() {
                return Err(bad(format!("year {year} has not begun"), "该年度尚未开始"));
            }
            tokio::task::block_in_place(|| {
                for item in self.core.log.scan(0..size, 4096) {
                    let (index, bytes) = item.map_err(|e| internal("log read", e))?;
                    annual.add(index, entry::open(&bytes).ok().map(|(e, _)| e).as_ref());
                }
                Ok::<_, Status>(())
            })?;
            let text = annual.render();
            let sha = sha256_hex(text.as_bytes());
            // Content-addressed and immutable, written before the entry that names it.
            let reports = self.core.dir.reports();
            let mut files = sandbox_log::files::Writer::new(&reports);
            files
                .create(&format!("{sha}.txt"), text.as_bytes())
                .and_then(|()| files.sync())
                .map_err(|e| internal("report file", e))?;
            let fields = [("year", year.to_string()), ("size", size.to_string()), ("sha256", sha)];
            let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let guard = self.core.write.lock().await;
            self.core.commit_entry(&guard, kind::REPORT, &caller.name, &fields).await?;
            self.report(year)
        })
        .await
    }

    async fn get_report(&self, request: Request<pb::ReportRequest>) -> Reply<pb::AnnualReport> {
        self.call("Log.GetReport", request, |_, r| async move { self.report(r.year) }).await
    }
}

impl Api {
    /// The latest annual report filed for `year`.
    fn report(&self, year: i32) -> Result<pb::AnnualReport, Status> {
        let report = self
            .core
            .read(|db| {
                db.query_row(
                    "SELECT year, size, sha256, log_index, filed_by, filed_at FROM reports WHERE year = ?1
                     ORDER BY log_index DESC LIMIT 1",
                    [year],
                    |r| {
                        Ok(pb::AnnualReport {
                            year: r.get(0)?,
                            size: r.get::<_, i64>(1)? as u64,
                            sha256: r.get(2)?,
                            text: String::new(),
                            log_index: r.get::<_, i64>(3)? as u64,
                            filed_by: r.get(4)?,
                            filed_at: r.get(5)?,
                        })
                    },
                )
                .optional()
            })?
            .ok_or_else(|| not_found("annual report for year", "年度运营报告", &year.to_string()))?;
        let path = self.core.dir.reports().join(format!("{}.txt", report.sha256));
        let text = std::fs::read_to_string(path).map_err(|e| internal("report file", e))?;
        Ok(pb::AnnualReport { text, ..report })
    }
}

// ---- feedback ----

#[tonic::async_trait]
impl Feedback for Api {
    async fn submit(&self, request: Request<pb::FeedbackRequest>) -> Reply<pb::FeedbackReceipt> {
        self.call("Feedback.Submit", request, |caller, r| async move {
            if !(1..=5).contains(&r.rating) {
                return Err(bad("rating must be 1 to 5", "评分须为 1 到 5"));
            }
            check_text("comment", &r.comment, false)?;
            let guard = self.core.write.lock().await;
            let release = self.release(&r.release)?;
            if release.application_unit != caller.name {
                return Err(denied(
                    format!("release {} was not addressed to you", r.release),
                    "该结果不是发给调用者的",
                ));
            }
            let id = runs::next_id(&self.core, "feedback", "fb")?;
            let rating = r.rating.to_string();
            let mut fields =
                vec![("feedback", id.as_str()), ("release", r.release.as_str()), ("rating", rating.as_str())];
            if !r.comment.is_empty() {
                fields.push(("comment", r.comment.as_str()));
            }
            let index = self.core.commit_entry(&guard, kind::FEEDBACK, &caller.name, &fields).await?;
            Ok(pb::FeedbackReceipt { id, log_index: index })
        })
        .await
    }

    async fn list(&self, request: Request<pb::Empty>) -> Reply<pb::FeedbackList> {
        self.call("Feedback.List", request, |caller, _| async move {
            let all = caller.role != Role::Operator;
            let result = self.core.rows(
                "SELECT f.* FROM feedback f JOIN releases r ON r.id = f.release WHERE ?1 OR r.operator = ?2 ORDER BY f.id",
                params![all, caller.name],
                |row| {
                    let comment: String = row.get("comment")?;
                    Ok(pb::FeedbackItem {
                        id: row.get("id")?,
                        release: row.get("release")?,
                        application_unit: row.get("application_unit")?,
                        rating: row.get("rating")?,
                        comment_sha256: sha256_hex(comment.as_bytes()),
                        comment,
                        at: row.get("at")?,
                    })
                },
            );
            result.map(|items| pb::FeedbackList { items })
        })
        .await
    }
}
