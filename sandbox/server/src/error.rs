//! The one error of the service layer, told in English and Chinese, and how each front end
//! says it: a gRPC status ([`tonic::Status`]) and an HTTP status, each mapped here once.

use std::fmt;

/// What kind of refusal or failure; the front ends choose their codes from it alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No token, or one the server does not know (or whose principal is disabled).
    Unauthenticated,
    /// The request itself is wrong: fix it and send it again.
    Invalid,
    NotFound,
    /// What the request would create exists already.
    Exists,
    /// The caller may not do this, whatever the state.
    Denied,
    /// The state does not allow it now (a licence suspended, a module not approved).
    Precondition,
    /// A quota is used up (runs per day).
    Exhausted,
    /// An index or range past what exists (log entries, proofs).
    OutOfRange,
    /// Something the call needs is not there now (a runner that failed).
    Unavailable,
    /// The server's own fault; the details went to its log, never to the caller.
    Internal,
}

impl ErrorKind {
    /// The gRPC code's name, as refusals are logged (`request.refused`'s `code`) and counted.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::Unauthenticated => "Unauthenticated",
            ErrorKind::Invalid => "InvalidArgument",
            ErrorKind::NotFound => "NotFound",
            ErrorKind::Exists => "AlreadyExists",
            ErrorKind::Denied => "PermissionDenied",
            ErrorKind::Precondition => "FailedPrecondition",
            ErrorKind::Exhausted => "ResourceExhausted",
            ErrorKind::OutOfRange => "OutOfRange",
            ErrorKind::Unavailable => "Unavailable",
            ErrorKind::Internal => "Internal",
        }
    }
}

/// A refused or failed call: its kind and one bilingual message, `English / 中文`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceError {
    pub kind: ErrorKind,
    pub message: String,
}

impl ServiceError {
    fn new(kind: ErrorKind, en: impl fmt::Display, zh: impl fmt::Display) -> ServiceError {
        ServiceError { kind, message: format!("{en} / {zh}") }
    }

    pub fn unauthenticated(en: impl fmt::Display, zh: impl fmt::Display) -> ServiceError {
        ServiceError::new(ErrorKind::Unauthenticated, en, zh)
    }

    pub fn invalid(en: impl fmt::Display, zh: impl fmt::Display) -> ServiceError {
        ServiceError::new(ErrorKind::Invalid, en, zh)
    }

    /// No `what` (`zh` in Chinese) named `id`.
    pub fn not_found(what: &str, zh: &str, id: &str) -> ServiceError {
        ServiceError::new(ErrorKind::NotFound, format!("no {what} {id:?}"), format!("没有该{zh}：{id}"))
    }

    pub fn exists(en: impl fmt::Display, zh: impl fmt::Display) -> ServiceError {
        ServiceError::new(ErrorKind::Exists, en, zh)
    }

    pub fn denied(en: impl fmt::Display, zh: impl fmt::Display) -> ServiceError {
        ServiceError::new(ErrorKind::Denied, en, zh)
    }

    pub fn precondition(en: impl fmt::Display, zh: impl fmt::Display) -> ServiceError {
        ServiceError::new(ErrorKind::Precondition, en, zh)
    }

    pub fn exhausted(en: impl fmt::Display, zh: impl fmt::Display) -> ServiceError {
        ServiceError::new(ErrorKind::Exhausted, en, zh)
    }

    pub fn out_of_range(en: impl fmt::Display, zh: impl fmt::Display) -> ServiceError {
        ServiceError::new(ErrorKind::OutOfRange, en, zh)
    }

    pub fn unavailable(en: impl fmt::Display, zh: impl fmt::Display) -> ServiceError {
        ServiceError::new(ErrorKind::Unavailable, en, zh)
    }

    /// The server's own failure at `what`: `e` goes to the server's log only.
    pub fn internal(what: &str, e: impl fmt::Display) -> ServiceError {
        tracing::error!(%e, "{what} failed");
        ServiceError::new(ErrorKind::Internal, format!("{what} failed"), "服务器内部错误")
    }

    /// The answer to a token that is unknown, rotated, revoked or of a disabled principal: all
    /// alike, so that a token tells nothing about why it no longer works.
    pub fn bad_token() -> ServiceError {
        ServiceError::unauthenticated("unknown or disabled API token", "令牌无效或主体已停用")
    }
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ServiceError {}

impl From<crate::state::StoreError> for ServiceError {
    fn from(e: crate::state::StoreError) -> ServiceError {
        ServiceError::internal("state query", e)
    }
}

impl From<ServiceError> for tonic::Status {
    fn from(e: ServiceError) -> tonic::Status {
        let code = match e.kind {
            ErrorKind::Unauthenticated => tonic::Code::Unauthenticated,
            ErrorKind::Invalid => tonic::Code::InvalidArgument,
            ErrorKind::NotFound => tonic::Code::NotFound,
            ErrorKind::Exists => tonic::Code::AlreadyExists,
            ErrorKind::Denied => tonic::Code::PermissionDenied,
            ErrorKind::Precondition => tonic::Code::FailedPrecondition,
            ErrorKind::Exhausted => tonic::Code::ResourceExhausted,
            ErrorKind::OutOfRange => tonic::Code::OutOfRange,
            ErrorKind::Unavailable => tonic::Code::Unavailable,
            ErrorKind::Internal => tonic::Code::Internal,
        };
        tonic::Status::new(code, e.message)
    }
}

impl ServiceError {
    /// The HTTP status a web front end answers with.
    pub fn http_status(&self) -> axum::http::StatusCode {
        use axum::http::StatusCode;
        match self.kind {
            ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorKind::Invalid | ErrorKind::OutOfRange => StatusCode::BAD_REQUEST,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Exists | ErrorKind::Precondition => StatusCode::CONFLICT,
            ErrorKind::Denied => StatusCode::FORBIDDEN,
            ErrorKind::Exhausted => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each kind keeps the gRPC code it is logged under, and maps to that code and an HTTP
    /// status of the same family.
    #[test]
    fn kinds_map_once() {
        let kinds = [
            ErrorKind::Unauthenticated,
            ErrorKind::Invalid,
            ErrorKind::NotFound,
            ErrorKind::Exists,
            ErrorKind::Denied,
            ErrorKind::Precondition,
            ErrorKind::Exhausted,
            ErrorKind::OutOfRange,
            ErrorKind::Unavailable,
            ErrorKind::Internal,
        ];
        for kind in kinds {
            let e = ServiceError::new(kind, "en", "中文");
            let status = tonic::Status::from(e.clone());
            assert_eq!(format!("{:?}", status.code()), kind.code());
            assert_eq!(status.message(), "en / 中文");
            let http = e.http_status().as_u16();
            assert_eq!(http >= 500, matches!(kind, ErrorKind::Internal | ErrorKind::Unavailable), "{kind:?}");
        }
    }
}
