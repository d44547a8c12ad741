//! The service layer: every command and query of the platform, on domain types, with every
//! authorization decision. Front ends (gRPC in `api/`, later the portal) only translate.
//!
//! [`Service::call`] is the frame of every call, written once: authenticate the token, check
//! the role against [`auth::MATRIX`], run the command as the caller (its own checks — tenancy,
//! states, validity — against the projection under the write lock, then its entry committed),
//! and count the answer; a refusal of a known principal is logged as `request.refused`, at most
//! [`crate::Config::refusals_per_minute`] a minute, the rest counted.

mod catalog;
mod licences;
mod log;
mod modules;
mod principals;
mod releases;
mod runs;

use std::future::Future;
use std::sync::Arc;

use sandbox_verify::entry::{self, Entry};
use sandbox_verify::event::Event;
use sandbox_verify::note::VerifierKey;
use sandbox_verify::time::Timestamp;
use sha2::{Digest, Sha256};

pub(crate) use self::licences::{GrantLicence, LicenceAction, NewAgreement};
pub(crate) use self::log::AnnualReport;
pub(crate) use self::modules::{Decision, SubmitModule};
pub(crate) use self::principals::{NewPrincipal, WithToken};
pub(crate) use self::runs::ReportedRun;
use crate::auth::{self, Caller, Role};
use crate::error::ServiceError;
use crate::model::{Agreement, Licence, Module, Principal, Release, Run};
use crate::{Core, WriteGuard};

/// The largest module a submission may carry.
pub(crate) const MAX_MODULE_BYTES: usize = 32 << 20;
/// The largest free text (purposes, scenarios, reasons, comments) a call may carry.
const MAX_TEXT: usize = 1000;
/// How far a signed entry's time may be from the server's clock.
const MAX_SKEW_SECONDS: i64 = 600;

type Result<T, E = ServiceError> = std::result::Result<T, E>;

/// The platform's commands and queries.
#[derive(Clone)]
pub(crate) struct Service {
    core: Arc<Core>,
}

impl Service {
    pub(crate) fn new(core: Arc<Core>) -> Service {
        Service { core }
    }

    /// The frame of every call: authenticate `authorization` (`Bearer <token>`), check the
    /// matrix for `op` (`Service.Method`), run `body` as the caller, count the answer and log a
    /// refusal.
    pub(crate) async fn call<T, F>(
        &self,
        op: &'static str,
        authorization: Option<&str>,
        body: impl FnOnce(Caller) -> F,
    ) -> Result<T>
    where
        F: Future<Output = Result<T>>,
    {
        let caller = match self.authenticate(authorization) {
            Ok(caller) => caller,
            Err(e) => {
                self.core.metrics.call(op, e.kind.code());
                return Err(e);
            }
        };
        tracing::Span::current().record("caller", caller.name.as_str());
        if !auth::allowed(op, caller.role) {
            let e = ServiceError::denied(
                format!("{} {} may not call {op}", caller.role.code(), caller.name),
                format!("{}无权调用 {op}", caller.role.zh()),
            );
            return Err(self.refused(op, &caller, e).await);
        }
        match crate::CALLER.scope(caller.clone(), body(caller.clone())).await {
            Ok(value) => {
                self.core.metrics.call(op, "Ok");
                Ok(value)
            }
            Err(e) => Err(self.refused(op, &caller, e).await),
        }
    }

    /// The principal `authorization` (`Bearer <token>`) names, if it is known and enabled.
    pub(crate) fn authenticate(&self, authorization: Option<&str>) -> Result<Caller> {
        let header = authorization
            .ok_or_else(|| ServiceError::unauthenticated("no API token (authorization: Bearer …)", "缺少 API 令牌"))?;
        let token = header
            .strip_prefix("Bearer ")
            .ok_or_else(|| ServiceError::unauthenticated("authorization must be `Bearer <token>`", "令牌格式无效"))?;
        let hash = auth::token_hash(token.trim());
        // A disabled principal's token is refused as an unknown one is: nothing is logged of it.
        let principal = self.core.view()?.principal_by_token(&hash)?.filter(|p| p.disabled.is_none());
        let principal = principal.ok_or_else(ServiceError::bad_token)?;
        let datasets = match &principal.provider {
            Some(provider) => {
                self.core.catalog.datasets.iter().filter(|d| d.provider.zh == *provider).map(|d| d.id.clone()).collect()
            }
            None => Vec::new(),
        };
        Ok(Caller { name: principal.name, role: principal.role, token_sha256: hash, datasets })
    }

    async fn refused(&self, op: &'static str, caller: &Caller, e: ServiceError) -> ServiceError {
        self.core.metrics.call(op, e.kind.code());
        tracing::info!(code = e.kind.code(), "refused");
        if e.kind == crate::error::ErrorKind::Internal {
            return e;
        }
        let mut reason: String = e.message.chars().map(|c| if c.is_control() { ' ' } else { c }).take(300).collect();
        reason = reason.trim().to_owned();
        if reason.is_empty() {
            reason = "-".into();
        }
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
                return e;
            }
            window.logged += 1;
            std::mem::take(&mut window.unlogged)
        };
        let event = Event::RequestRefused {
            rpc: op.to_owned(),
            code: e.kind.code().to_owned(),
            reason,
            unlogged: (unlogged > 0).then_some(unlogged),
        };
        match self.core.commit_event(&guard, &caller.name, event).await {
            Ok(_) => e,
            Err(failed) => failed,
        }
    }

    /// Whether `caller`'s token still stands: not rotated or revoked, its principal not disabled.
    pub(crate) fn still_valid(&self, caller: &Caller) -> bool {
        let principal = self.core.view().ok().and_then(|v| v.principal(&caller.name).ok().flatten());
        principal
            .is_some_and(|p| p.disabled.is_none() && p.token_sha256.as_deref() == Some(caller.token_sha256.as_str()))
    }

    // ---- lookups shared by the commands ----

    fn licence(&self, id: &str) -> Result<Licence> {
        self.core.view()?.licence(id)?.ok_or_else(|| ServiceError::not_found("licence", "授权运营协议", id))
    }

    /// The licence `id`, if new runs may start under it now: in force, and no incident under it
    /// open that the bureau has not allowed runs beside.
    fn licence_in_force(&self, id: &str) -> Result<Licence> {
        let licence = self.licence(id)?;
        if self.core.view()?.incident_blocks(id)? {
            return Err(ServiceError::precondition(
                format!(
                    "an incident under licence {id} is open: no new run starts until the bureau closes it or allows runs"
                ),
                "该授权下有未结案的安全事件：数据主管部门结案或允许运行前，不能开始新的运行",
            ));
        }
        if !licence.in_force(now()) {
            return Err(ServiceError::precondition(
                format!("licence {id} is suspended, revoked or outside its period: no new run starts"),
                "授权运营协议已暂停、撤销或不在有效期内，不能开始新的运行",
            ));
        }
        Ok(licence)
    }

    fn agreement(&self, id: &str) -> Result<Agreement> {
        self.core.view()?.agreement(id)?.ok_or_else(|| ServiceError::not_found("agreement", "数据服务协议", id))
    }

    fn module(&self, sha: &str) -> Result<Module> {
        self.core.view()?.module(sha)?.ok_or_else(|| ServiceError::not_found("module", "分析模块", sha))
    }

    fn run(&self, id: &str) -> Result<Run> {
        self.core.view()?.run(id)?.ok_or_else(|| ServiceError::not_found("run", "运行", id))
    }

    fn release(&self, id: &str) -> Result<Release> {
        self.core.view()?.release(id)?.ok_or_else(|| ServiceError::not_found("release", "发布结果", id))
    }

    /// The principal `name` (never the log's own).
    fn principal(&self, name: &str) -> Result<Principal> {
        self.core.view()?.principal(name)?.ok_or_else(|| ServiceError::not_found("principal", "主体", name))
    }

    /// The principal `name`, if it has `role` and is not disabled; one answer whichever it is
    /// not (a tenant learns nothing of other principals from it).
    fn principal_acting_as(&self, name: &str, role: Role) -> Result<Principal> {
        self.principal(name).ok().filter(|p| p.role == role && p.disabled.is_none()).ok_or_else(|| {
            ServiceError::precondition(
                format!("{name} is not a registered {} in good standing", role.code()),
                format!("{name} 不是已登记且未停用的{}", role.zh()),
            )
        })
    }

    /// Opens a signed entry of `expected` kind made by `caller` with its registered key.
    fn signed_entry(&self, caller: &Caller, bytes: &[u8], expected: &str) -> Result<Entry> {
        let (entry, note) = entry::open(bytes)
            .map_err(|e| ServiceError::invalid(format!("entry: {e}"), format!("条目：{}", e.zh())))?;
        if entry.kind() != expected {
            return Err(ServiceError::invalid(
                format!("the entry is a {}, not a {expected}", entry.kind()),
                format!("条目类型应为 {expected}"),
            ));
        }
        if entry.actor() != caller.name {
            return Err(ServiceError::denied(
                format!("the entry's actor {} is not the caller {}", entry.actor(), caller.name),
                "条目的行为人不是调用者本人",
            ));
        }
        let note = note.ok_or_else(|| ServiceError::invalid("the entry is not signed", "条目未签名"))?;
        let key = VerifierKey::parse(&self.principal(&caller.name)?.key)
            .map_err(|e| ServiceError::internal("principal key", e))?;
        note.verify(std::slice::from_ref(&key)).map_err(|e| {
            ServiceError::denied(format!("the entry's signature: {e}"), format!("条目签名无效：{}", e.zh()))
        })?;
        if (entry.time().0 - now().0).abs() > MAX_SKEW_SECONDS {
            return Err(ServiceError::invalid(
                format!("the entry's time {} is more than {MAX_SKEW_SECONDS} s from the server's", entry.time()),
                "条目时间与服务器时间相差过大",
            ));
        }
        Ok(entry)
    }

    /// The write lock, for a command's checks, its entry and its effects.
    async fn lock(&self) -> WriteGuard<'_> {
        self.core.write.lock().await
    }
}

/// What lists a caller reads: administrators, reviewers and evaluators all of it, operators and
/// application units what they are party to, providers also what touches their datasets.
fn scope(caller: &Caller) -> crate::state::Scope<'_> {
    match caller.role {
        Role::Admin | Role::Reviewer | Role::Evaluator => crate::state::Scope::All,
        Role::Operator | Role::ApplicationUnit => crate::state::Scope::Own(&caller.name),
        Role::Provider => crate::state::Scope::Provider { name: &caller.name, datasets: &caller.datasets },
    }
}

// ---- checks of input ----

fn field<'e>(entry: &'e Entry, name: &str) -> Result<&'e str> {
    entry
        .get(name)
        .ok_or_else(|| ServiceError::invalid(format!("the entry has no {name} field"), format!("条目缺少字段 {name}")))
}

/// Identifiers chosen by people: `[a-z0-9][a-z0-9.-]{0,62}`.
fn check_id(what: &str, id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 63
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && id.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(ServiceError::invalid(
            format!("{what} {id:?} is not [a-z0-9][a-z0-9.-]{{0,62}}"),
            format!("{what} 格式无效"),
        ))
    }
}

/// Free text that goes into the log: one line, printable, at most [`MAX_TEXT`] characters.
fn check_text(what: &str, text: &str, required: bool) -> Result<()> {
    if text.trim().is_empty() {
        return if required {
            Err(ServiceError::invalid(format!("{what} is empty"), format!("{what} 不能为空")))
        } else {
            Ok(())
        };
    }
    if text.chars().count() > MAX_TEXT || text.chars().any(char::is_control) || text.trim() != text {
        return Err(ServiceError::invalid(
            format!("{what} must be one line of at most {MAX_TEXT} characters without surrounding spaces"),
            format!("{what} 须为单行、不超过 {MAX_TEXT} 个字符且首尾无空格"),
        ));
    }
    if let Some(c) = text.chars().find(|&c| is_invisible_format(c)) {
        return Err(ServiceError::invalid(
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

fn check_time(what: &str, text: &str) -> Result<Timestamp> {
    Timestamp::parse(text).map_err(|e| ServiceError::invalid(format!("{what}: {e}"), format!("{what}：{}", e.zh())))
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn now() -> Timestamp {
    Timestamp::now()
}
