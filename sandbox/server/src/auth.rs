//! Who may call what: principals, their roles, API tokens, and the authorization matrix.
//!
//! A token is 32 random bytes in hex; the server keeps and logs only its SHA-256. The matrix
//! below is the whole of role-based authorization; tenancy (an operator's own modules, an
//! application unit's own releases) is checked by each call on top of it.

use sandbox_proto::v1 as pb;
use sha2::{Digest, Sha256};

/// The roles of DESIGN.md section 1 that call the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Admin,
    Reviewer,
    Operator,
    ApplicationUnit,
    Evaluator,
    /// 数源部门: speaks for the datasets whose catalog entry names its organisation.
    Provider,
}

impl Role {
    pub const ALL: [Role; 6] =
        [Role::Admin, Role::Reviewer, Role::Operator, Role::ApplicationUnit, Role::Evaluator, Role::Provider];

    /// As logged in `principal.registered` (`operator` and `reviewer` are what `sandbox-verify`
    /// checks signers against).
    pub fn code(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Reviewer => "reviewer",
            Role::Operator => "operator",
            Role::ApplicationUnit => "application_unit",
            Role::Evaluator => "evaluator",
            Role::Provider => "provider",
        }
    }

    pub fn zh(self) -> &'static str {
        match self {
            Role::Admin => "数据主管部门管理员",
            Role::Reviewer => "数据主管部门审核员",
            Role::Operator => "运营单位",
            Role::ApplicationUnit => "应用单位",
            Role::Evaluator => "第三方评估机构",
            Role::Provider => "数源部门",
        }
    }

    pub fn parse(code: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.code() == code)
    }

    pub fn from_proto(role: i32) -> Option<Role> {
        match pb::Role::try_from(role).ok()? {
            pb::Role::Admin => Some(Role::Admin),
            pb::Role::Reviewer => Some(Role::Reviewer),
            pb::Role::Operator => Some(Role::Operator),
            pb::Role::ApplicationUnit => Some(Role::ApplicationUnit),
            pb::Role::Evaluator => Some(Role::Evaluator),
            pb::Role::Provider => Some(Role::Provider),
            pb::Role::Unspecified => None,
        }
    }

    pub fn to_proto(self) -> pb::Role {
        match self {
            Role::Admin => pb::Role::Admin,
            Role::Reviewer => pb::Role::Reviewer,
            Role::Operator => pb::Role::Operator,
            Role::ApplicationUnit => pb::Role::ApplicationUnit,
            Role::Evaluator => pb::Role::Evaluator,
            Role::Provider => pb::Role::Provider,
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub role: Role,
    /// The SHA-256 of the token the call came with, to check again later in a long call.
    pub token_sha256: String,
    /// A provider's datasets (by the catalog's `provider`); empty for every other role.
    pub datasets: Vec<String>,
}

/// A new API token: 64 hex digits.
pub fn new_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// What the server keeps of a token.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

use Role::{Admin as A, ApplicationUnit as U, Evaluator as E, Operator as O, Provider as P, Reviewer as R};

/// Every RPC (`Service.Method`) and the roles that may call it.
pub const MATRIX: &[(&str, &[Role])] = &[
    ("Principals.Register", &[A]),
    ("Principals.List", &[A, R, O, U, E, P]),
    ("Principals.Whoami", &[A, R, O, U, E, P]),
    ("Principals.Disable", &[A]),
    ("Principals.Enable", &[A]),
    ("Principals.RotateToken", &[A, R, O, U, E, P]),
    ("Principals.RevokeToken", &[A]),
    ("Catalog.ListDatasets", &[A, R, O, U, P]),
    ("Licences.Grant", &[A]),
    ("Licences.Suspend", &[A]),
    ("Licences.Resume", &[A]),
    ("Licences.Revoke", &[A]),
    ("Licences.List", &[A, R, O, P]),
    ("Licences.Consent", &[P]),
    ("Licences.ReportIncident", &[O, U]),
    ("Licences.IncidentMeasure", &[A]),
    ("Licences.CloseIncident", &[A]),
    ("Licences.ListIncidents", &[A, R, O, U, E, P]),
    ("Agreements.Create", &[O]),
    ("Agreements.End", &[A, O]),
    ("Agreements.List", &[A, R, O, U, P]),
    ("Modules.Submit", &[O]),
    ("Modules.Approve", &[R]),
    ("Modules.Reject", &[R]),
    ("Modules.Revoke", &[A, R]),
    ("Modules.List", &[A, R, O, P]),
    ("Modules.Download", &[A, R, O]),
    ("Runs.Start", &[O]),
    ("Runs.Develop", &[O]),
    ("Runs.Cancel", &[A, O]),
    ("Runs.Get", &[A, R, O]),
    ("Runs.Watch", &[A, R, O]),
    ("Runs.List", &[A, R, O, P]),
    ("Runs.ApproveOutput", &[R]),
    ("Runs.RejectOutput", &[R]),
    ("Runs.GetInternalReport", &[A, R]),
    ("Releases.List", &[A, R, O, U, P]),
    ("Releases.Download", &[U]),
    ("Log.Checkpoint", &[A, R, O, U, E, P]),
    ("Log.Entries", &[A, R, O, U, E, P]),
    ("Log.InclusionProof", &[A, R, O, U, E, P]),
    ("Log.ConsistencyProof", &[A, R, O, U, E, P]),
    ("Log.FileReport", &[A]),
    ("Log.GetReport", &[A, R, E]),
    ("Feedback.Submit", &[U]),
    ("Feedback.List", &[A, R, O, E]),
    ("Feedback.RateOperator", &[P]),
    ("Feedback.ListRatings", &[A, R, O, E, P]),
];

/// Whether `role` may call `rpc` at all.
pub fn allowed(rpc: &str, role: Role) -> bool {
    MATRIX.iter().any(|(name, roles)| *name == rpc && roles.contains(&role))
}
