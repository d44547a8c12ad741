//! The queryable state: a projection of the log behind one seam, [`Projection`].
//!
//! Every row comes from a log entry through [`Projection::apply`], the one function both the
//! live server and `sandbox state rebuild` use, so a rebuilt store is the live one by
//! construction; [`Projection::dump`] renders everything in a fixed order so tests can compare
//! them. The queries are typed (domain types from [`crate::model`]) and take the caller's
//! [`Scope`], so who-sees-what is decided by the service layer and carried out by the store;
//! no SQL leaves the store's module. [`sqlite::State`] is the one store today.

mod sqlite;

use sandbox_audit::review::Approval;

use crate::model::{Agreement, Feedback, Incident, Licence, Module, Principal, Rating, Release, Report, Review, Run};
pub use sqlite::State;

/// Why the store failed: it holds something this server cannot project, or its database failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

/// Whose rows a list holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    All,
    /// Those the principal is party to: for each list, as its query says.
    Own(&'a str),
    /// A provider's: what it is party to and whatever touches these datasets — licences,
    /// agreements under them, modules, runs and releases that read one.
    Provider {
        name: &'a str,
        datasets: &'a [String],
    },
}

/// Things a principal can be party to, for [`Projection::is_party`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Thing {
    /// Its operator, or its agreement's application unit.
    Run,
    /// Its operator or application unit.
    Release,
    /// Its operator.
    Licence,
    /// Its operator or application unit.
    Agreement,
    /// Its operator.
    Module,
}

/// The projection of the log: applied entry by entry, in order, and queried.
pub trait Projection: Send {
    /// Applies the log entry at `index`, which must be the next one, atomically.
    fn apply(&mut self, index: u64, bytes: &[u8]) -> Result<(), StoreError>;

    /// How many log entries are applied.
    fn applied(&self) -> Result<u64, StoreError>;

    /// Everything, in a fixed order, one line per row: equal dumps, equal states.
    fn dump(&self) -> Result<String, StoreError>;

    /// Applies whatever `log` holds beyond what is applied already.
    fn catch_up(&mut self, log: &sandbox_log::Log) -> Result<(), StoreError> {
        for entry in log.scan(self.applied()?..log.size(), 4096) {
            let (index, bytes) = entry.map_err(|e| StoreError(format!("reading the log: {e}")))?;
            self.apply(index, &bytes)?;
        }
        Ok(())
    }

    /// A principal by name; `Own` of principals is the principal itself.
    fn principal(&self, name: &str) -> Result<Option<Principal>, StoreError>;
    /// The principal whose current token has this SHA-256, disabled or not.
    fn principal_by_token(&self, token_sha256: &str) -> Result<Option<Principal>, StoreError>;
    fn principals(&self, scope: Scope<'_>) -> Result<Vec<Principal>, StoreError>;

    /// A dataset's registered version.
    fn dataset_version(&self, id: &str) -> Result<Option<String>, StoreError>;

    fn licence(&self, id: &str) -> Result<Option<Licence>, StoreError>;
    /// `Own`: the operator's.
    fn licences(&self, scope: Scope<'_>) -> Result<Vec<Licence>, StoreError>;
    /// The runs under a licence that failed on their output contract.
    fn contract_failures(&self, licence: &str) -> Result<u32, StoreError>;

    fn agreement(&self, id: &str) -> Result<Option<Agreement>, StoreError>;
    /// `Own`: the operator's and the application unit's.
    fn agreements(&self, scope: Scope<'_>) -> Result<Vec<Agreement>, StoreError>;

    fn module(&self, sha256: &str) -> Result<Option<Module>, StoreError>;
    /// In the order submitted. `Own`: the operator's.
    fn modules(&self, scope: Scope<'_>) -> Result<Vec<Module>, StoreError>;

    fn run(&self, id: &str) -> Result<Option<Run>, StoreError>;
    /// `Own`: the operator's.
    fn runs(&self, scope: Scope<'_>) -> Result<Vec<Run>, StoreError>;
    /// The runs of these statuses, by id.
    fn runs_in(&self, statuses: &[RunStatus]) -> Result<Vec<Run>, StoreError>;
    /// When each production run under a licence was queued.
    fn run_times(&self, licence: &str) -> Result<Vec<String>, StoreError>;
    /// Where the output review of a run stands (approvals of disabled reviewers do not count).
    fn review(&self, run: &str) -> Result<Review, StoreError>;
    /// Whether `reviewer` has decided on `table` of `run`.
    fn output_decided(&self, run: &str, table: &str, reviewer: &str) -> Result<bool, StoreError>;
    /// The approvals of a run's held tables, in the order made.
    fn output_approvals(&self, run: &str) -> Result<Vec<Approval>, StoreError>;

    fn release(&self, id: &str) -> Result<Option<Release>, StoreError>;
    /// `Own`: the operator's and the application unit's.
    fn releases(&self, scope: Scope<'_>) -> Result<Vec<Release>, StoreError>;

    /// `Own`: feedback on the operator's releases.
    fn feedback(&self, scope: Scope<'_>) -> Result<Vec<Feedback>, StoreError>;

    /// Providers' ratings of operators; `Own` and `Provider`: those by or of the principal.
    fn ratings(&self, scope: Scope<'_>) -> Result<Vec<Rating>, StoreError>;

    fn incident(&self, id: &str) -> Result<Option<Incident>, StoreError>;
    /// Whether an incident under `licence` is open and the bureau has not allowed runs beside it.
    fn incident_blocks(&self, licence: &str) -> Result<bool, StoreError>;
    /// `Own`: those the principal reported or of its licences; `Provider`: also those under
    /// licences over its datasets.
    fn incidents(&self, scope: Scope<'_>) -> Result<Vec<Incident>, StoreError>;

    /// The latest annual report filed for `year`.
    fn report(&self, year: i32) -> Result<Option<Report>, StoreError>;

    /// Whether the thing of that kind with that id is in `scope` (see [`Thing`] and [`Scope`]).
    fn is_party(&self, scope: Scope<'_>, thing: Thing, id: &str) -> Result<bool, StoreError>;
}

/// A production run's status in the projection (`runs.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunStatus {
    Queued,
    Running,
    /// The runner answered; the audit is under way.
    Auditing,
    /// Tables wait for reviewers.
    Review,
    Released,
    /// Nothing of it left: the audit withheld it, or its standing stopped it.
    Withheld,
    Failed,
    Cancelled,
}

impl RunStatus {
    pub const ALL: [RunStatus; 8] = [
        RunStatus::Queued,
        RunStatus::Running,
        RunStatus::Auditing,
        RunStatus::Review,
        RunStatus::Released,
        RunStatus::Withheld,
        RunStatus::Failed,
        RunStatus::Cancelled,
    ];

    /// As stored in `runs.status` (and, for how a run ends, in `run.finished`'s `status`).
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Auditing => "auditing",
            RunStatus::Review => "review",
            RunStatus::Released => "released",
            RunStatus::Withheld => "withheld",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<RunStatus> {
        RunStatus::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

#[cfg(test)]
mod tests {
    use super::RunStatus;

    /// Every status the projection writes reads back as itself, and nothing else reads as one.
    #[test]
    fn run_statuses_round_trip() {
        for status in RunStatus::ALL {
            assert_eq!(RunStatus::parse(status.as_str()), Some(status));
        }
        for written in ["queued", "running", "auditing", "review", "released", "withheld", "failed", "cancelled"] {
            assert!(RunStatus::parse(written).is_some(), "{written}");
        }
        assert_eq!(RunStatus::parse("ok"), None);
        assert_eq!(RunStatus::parse(""), None);
    }
}
