//! The service's domain types: what the projection answers and the service layer works on.
//! Front ends translate them into their own messages (`api/` into protobuf); nothing here
//! knows a wire format or a store.
//!
//! Times are the log's RFC 3339 UTC text ([`Timestamp`]'s), which orders as text.

use sandbox_verify::time::Timestamp;

use crate::auth::Role;

/// A registered principal (never the log's own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    pub display_name: String,
    /// Its ed25519 verifier key, in note form.
    pub key: String,
    pub registered_at: String,
    /// Why it was disabled, while it is.
    pub disabled: Option<String>,
    /// The SHA-256 of its current API token; none once revoked.
    pub token_sha256: Option<String>,
    /// A provider's organisation, as the catalog names it (in Chinese).
    pub provider: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LicenceStatus {
    Active,
    Suspended,
    Revoked,
}

impl LicenceStatus {
    /// As stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            LicenceStatus::Active => "active",
            LicenceStatus::Suspended => "suspended",
            LicenceStatus::Revoked => "revoked",
        }
    }

    pub fn parse(text: &str) -> Option<LicenceStatus> {
        [LicenceStatus::Active, LicenceStatus::Suspended, LicenceStatus::Revoked]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// An operating licence (授权运营协议) the bureau granted an operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Licence {
    pub id: String,
    pub operator: String,
    pub datasets: Vec<String>,
    pub purpose: String,
    pub valid_from: String,
    pub valid_until: String,
    pub status: LicenceStatus,
    /// Its conditionally shared datasets whose provider has not consented yet.
    pub awaiting: Vec<String>,
    /// Its datasets whose provider has consented.
    pub consented: Vec<String>,
}

impl Licence {
    /// Whether new work may start under it at `now`: active, within its period, and consented
    /// to by the provider of each conditionally shared dataset.
    pub fn in_force(&self, now: Timestamp) -> bool {
        let now = now.to_string();
        self.status == LicenceStatus::Active
            && self.awaiting.is_empty()
            && self.valid_from <= now
            && now < self.valid_until
    }
}

/// A data-service agreement (数据服务协议) between an operator and an application unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agreement {
    pub id: String,
    pub licence: String,
    pub operator: String,
    pub application_unit: String,
    pub scenario: String,
    pub valid_until: String,
    pub ended: bool,
}

impl Agreement {
    pub fn in_force(&self, now: Timestamp) -> bool {
        !self.ended && now.to_string() < self.valid_until
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModuleStatus {
    Submitted,
    Approved,
    Rejected,
    Revoked,
}

impl ModuleStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ModuleStatus::Submitted => "submitted",
            ModuleStatus::Approved => "approved",
            ModuleStatus::Rejected => "rejected",
            ModuleStatus::Revoked => "revoked",
        }
    }

    pub fn parse(text: &str) -> Option<ModuleStatus> {
        [ModuleStatus::Submitted, ModuleStatus::Approved, ModuleStatus::Rejected, ModuleStatus::Revoked]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// A submitted analysis module, by the SHA-256 of its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    pub sha256: String,
    pub manifest_sha256: String,
    pub name: String,
    pub operator: String,
    pub licence: String,
    pub datasets: Vec<String>,
    /// Reviewers who approved it, in the order they did.
    pub approvals: Vec<String>,
    pub approvals_needed: u32,
    pub status: ModuleStatus,
    /// Why it was rejected or revoked.
    pub reason: Option<String>,
    pub submitted_at: String,
}

pub use crate::state::RunStatus;

/// A production run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub id: String,
    pub module: String,
    pub operator: String,
    pub licence: String,
    pub agreement: String,
    /// The dataset versions it reads, `dataset@version,…`, as queued.
    pub datasets: String,
    pub status: RunStatus,
    pub error_code: Option<String>,
    pub audit_outcome: Option<String>,
    pub report_id: Option<String>,
    pub release: Option<String>,
    pub requested_at: String,
    pub finished_at: Option<String>,
    /// Tables the audit held for reviewers, while they wait.
    pub held: Vec<String>,
}

impl Run {
    /// Whether it has ended, whichever way.
    pub fn ended(&self) -> bool {
        matches!(self.status, RunStatus::Released | RunStatus::Withheld | RunStatus::Failed | RunStatus::Cancelled)
    }
}

/// Results released to an application unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub id: String,
    pub run: String,
    pub module: String,
    pub operator: String,
    pub application_unit: String,
    pub agreement: String,
    pub log_index: u64,
    pub results: Vec<String>,
    pub released_at: String,
}

/// An application unit's feedback on a release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feedback {
    pub id: String,
    pub release: String,
    pub application_unit: String,
    pub rating: u32,
    pub comment: String,
    pub at: String,
}

/// A security incident (安全事件) under a licence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incident {
    pub id: String,
    pub licence: String,
    pub reporter: String,
    pub category: String,
    pub description: String,
    pub closed: bool,
    pub measures: Vec<String>,
    pub runs_allowed: bool,
    pub reported_to: Option<String>,
    pub opened_at: String,
    pub closed_at: Option<String>,
}

/// A data provider's rating of an operator for a year (Beijing time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rating {
    pub id: String,
    pub provider: String,
    pub operator: String,
    pub year: i32,
    pub score: u32,
    pub comment: String,
    pub at: String,
}

/// An annual report as filed (its text is a file named by its SHA-256).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub year: i32,
    pub size: u64,
    pub sha256: String,
    pub log_index: u64,
    pub filed_by: String,
    pub filed_at: String,
}

/// Where the output review of a run stands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Review {
    /// Tables held for review and not yet released or ended.
    pub held: Vec<String>,
    /// Held tables two different reviewers approved, and nobody rejected.
    pub approved: Vec<String>,
    /// Held tables neither approved twice nor rejected.
    pub undecided: Vec<String>,
}

/// What stops a queued, running or held run: its standing is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Suspended, revoked or outside its period.
    Licence,
    /// No longer approved.
    Module,
    /// Ended or expired.
    Agreement,
    /// Its operator or recipient disabled.
    Principal,
    /// Its data changed since it was queued.
    Dataset,
    /// An incident under its licence is open, and the bureau has not allowed runs.
    Incident,
}

impl Stop {
    /// As logged in `run.finished`'s `stopped`.
    pub fn as_str(self) -> &'static str {
        match self {
            Stop::Licence => "licence",
            Stop::Module => "module",
            Stop::Agreement => "agreement",
            Stop::Principal => "principal",
            Stop::Dataset => "dataset",
            Stop::Incident => "incident",
        }
    }
}
