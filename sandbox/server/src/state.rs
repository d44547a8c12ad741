//! The queryable state: an SQLite projection of the log.
//!
//! Every row here comes from a log entry through [`State::apply`], the one function both the
//! live server and `sandbox state rebuild` use, so a rebuilt database is the live one by
//! construction; [`State::dump`] renders every table in a fixed order so tests can compare them.
//! `meta.applied` is the number of log entries applied: on start the server applies whatever the
//! log holds beyond it (an entry acknowledged just before a crash).

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use sandbox_verify::entry::{self, Entry, kind};

const SCHEMA: &str = "
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;
CREATE TABLE principals (
    name TEXT PRIMARY KEY, role TEXT NOT NULL, display_name TEXT NOT NULL, key TEXT NOT NULL,
    token_sha256 TEXT, registered_at TEXT NOT NULL, log_index INTEGER NOT NULL, disabled TEXT) STRICT;
CREATE UNIQUE INDEX principals_token ON principals (token_sha256);
CREATE TABLE datasets (
    id TEXT PRIMARY KEY, version TEXT NOT NULL, level TEXT NOT NULL, registered_at TEXT NOT NULL,
    log_index INTEGER NOT NULL) STRICT;
CREATE TABLE licences (
    id TEXT PRIMARY KEY, operator TEXT NOT NULL, datasets TEXT NOT NULL, purpose TEXT NOT NULL,
    valid_from TEXT NOT NULL, valid_until TEXT NOT NULL, status TEXT NOT NULL, reason TEXT,
    log_index INTEGER NOT NULL) STRICT;
CREATE TABLE agreements (
    id TEXT PRIMARY KEY, licence TEXT NOT NULL, operator TEXT NOT NULL,
    application_unit TEXT NOT NULL, scenario TEXT NOT NULL, valid_until TEXT NOT NULL,
    ended INTEGER NOT NULL, reason TEXT, log_index INTEGER NOT NULL) STRICT;
CREATE TABLE modules (
    sha256 TEXT PRIMARY KEY, manifest_sha256 TEXT NOT NULL, name TEXT NOT NULL,
    operator TEXT NOT NULL, licence TEXT NOT NULL, datasets TEXT NOT NULL,
    approvals_needed INTEGER NOT NULL, status TEXT NOT NULL, reason TEXT,
    submitted_at TEXT NOT NULL, log_index INTEGER NOT NULL) STRICT;
CREATE TABLE approvals (
    module TEXT NOT NULL, reviewer TEXT NOT NULL, at TEXT NOT NULL, log_index INTEGER NOT NULL,
    PRIMARY KEY (module, reviewer)) STRICT;
CREATE TABLE runs (
    id TEXT PRIMARY KEY, module TEXT NOT NULL, operator TEXT NOT NULL, licence TEXT NOT NULL,
    agreement TEXT NOT NULL, parameters_sha256 TEXT NOT NULL, datasets TEXT NOT NULL,
    status TEXT NOT NULL, error_code TEXT, audit_outcome TEXT, report_id TEXT,
    release TEXT, requested_at TEXT NOT NULL, finished_at TEXT, log_index INTEGER NOT NULL,
    held TEXT) STRICT;
CREATE TABLE output_reviews (
    run TEXT NOT NULL, tbl TEXT NOT NULL, reviewer TEXT NOT NULL, decision TEXT NOT NULL,
    report TEXT NOT NULL, reason TEXT, at TEXT NOT NULL, log_index INTEGER NOT NULL,
    PRIMARY KEY (run, tbl, reviewer)) STRICT;
CREATE TABLE releases (
    id TEXT PRIMARY KEY, run TEXT NOT NULL, module TEXT NOT NULL, operator TEXT NOT NULL,
    application_unit TEXT NOT NULL, agreement TEXT NOT NULL, results TEXT NOT NULL,
    released_at TEXT NOT NULL, log_index INTEGER NOT NULL) STRICT;
CREATE TABLE deliveries (
    log_index INTEGER PRIMARY KEY, release TEXT NOT NULL, application_unit TEXT NOT NULL,
    at TEXT NOT NULL) STRICT;
CREATE TABLE feedback (
    id TEXT PRIMARY KEY, release TEXT NOT NULL, application_unit TEXT NOT NULL,
    rating INTEGER NOT NULL, comment TEXT NOT NULL, at TEXT NOT NULL,
    log_index INTEGER NOT NULL) STRICT;
CREATE TABLE refusals (
    log_index INTEGER PRIMARY KEY, actor TEXT NOT NULL, rpc TEXT NOT NULL, code TEXT NOT NULL,
    reason TEXT NOT NULL, at TEXT NOT NULL) STRICT;
CREATE TABLE reports (
    log_index INTEGER PRIMARY KEY, year INTEGER NOT NULL, size INTEGER NOT NULL, sha256 TEXT NOT NULL,
    filed_by TEXT NOT NULL, filed_at TEXT NOT NULL) STRICT;
INSERT INTO meta VALUES ('applied', '0');
INSERT INTO meta VALUES ('schema', '6');
";

/// The schema's version, in `meta.schema`. A database of another version is rebuilt from the
/// log when the server starts: the projection holds nothing the log does not.
const SCHEMA_VERSION: &str = "6";

/// The tables [`State::dump`] renders, each with the columns it orders by.
const TABLES: &[(&str, &str)] = &[
    ("principals", "name"),
    ("datasets", "id"),
    ("licences", "id"),
    ("agreements", "id"),
    ("modules", "sha256"),
    ("approvals", "module, reviewer"),
    ("runs", "id"),
    ("output_reviews", "run, tbl, reviewer"),
    ("releases", "id"),
    ("deliveries", "log_index"),
    ("feedback", "id"),
    ("refusals", "log_index"),
    ("reports", "log_index"),
    ("meta", "key"),
];

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

/// A projection database.
#[derive(Debug)]
pub struct State {
    db: Connection,
}

/// Why an entry could not be applied: the log holds something this server cannot project.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ApplyError(pub String);

impl From<rusqlite::Error> for ApplyError {
    fn from(e: rusqlite::Error) -> ApplyError {
        ApplyError(format!("state database: {e}"))
    }
}

impl State {
    /// Opens the database at `path`, creating it with the schema if it does not exist.
    pub fn open(path: &Path) -> Result<State, ApplyError> {
        let new = !path.exists();
        let db = Connection::open(path)?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "FULL")?;
        if new {
            db.execute_batch(SCHEMA)?;
        }
        Ok(State { db })
    }

    /// Whether the database at `path` is of this server's schema (false if it does not exist).
    pub fn is_current(path: &Path) -> Result<bool, ApplyError> {
        if !path.exists() {
            return Ok(false);
        }
        let db = Connection::open(path)?;
        let version: Option<String> =
            db.query_row("SELECT value FROM meta WHERE key = 'schema'", [], |r| r.get(0)).optional()?;
        Ok(version.as_deref() == Some(SCHEMA_VERSION))
    }

    /// How many log entries are applied.
    pub fn applied(&self) -> Result<u64, ApplyError> {
        let text: String = self.db.query_row("SELECT value FROM meta WHERE key = 'applied'", [], |r| r.get(0))?;
        text.parse().map_err(|_| ApplyError(format!("meta.applied is {text:?}")))
    }

    /// Applies the log entry at `index`, which must be the next one, in one transaction.
    pub fn apply(&mut self, index: u64, bytes: &[u8]) -> Result<(), ApplyError> {
        let applied = self.applied()?;
        if index != applied {
            return Err(ApplyError(format!("entry {index} applied after {applied} entries")));
        }
        let (entry, _) = entry::open(bytes).map_err(|e| ApplyError(format!("entry {index}: {e}")))?;
        let tx = self.db.transaction()?;
        project(&tx, index as i64, &entry)?;
        tx.execute("UPDATE meta SET value = ?1 WHERE key = 'applied'", [(index + 1).to_string()])?;
        tx.commit()?;
        Ok(())
    }

    /// Applies whatever `log` holds beyond what is applied already.
    pub fn catch_up(&mut self, log: &sandbox_log::Log) -> Result<(), ApplyError> {
        for entry in log.scan(self.applied()?..log.size(), 4096) {
            let (index, bytes) = entry.map_err(|e| ApplyError(format!("reading the log: {e}")))?;
            self.apply(index, &bytes)?;
        }
        Ok(())
    }

    /// Every table's rows in a fixed order, one line per row: equal dumps, equal states.
    pub fn dump(&self) -> Result<String, ApplyError> {
        let mut out = String::new();
        for (table, order) in TABLES {
            out.push_str(&format!("[{table}]\n"));
            let mut statement = self.db.prepare(&format!("SELECT * FROM {table} ORDER BY {order}"))?;
            let columns = statement.column_count();
            let mut rows = statement.query([])?;
            while let Some(row) = rows.next()? {
                let values: Vec<String> = (0..columns)
                    .map(|i| match row.get_ref(i) {
                        Ok(rusqlite::types::ValueRef::Null) => "NULL".to_owned(),
                        Ok(rusqlite::types::ValueRef::Integer(n)) => n.to_string(),
                        Ok(rusqlite::types::ValueRef::Text(t)) => format!("{:?}", String::from_utf8_lossy(t)),
                        Ok(other) => format!("{other:?}"),
                        Err(e) => format!("<{e}>"),
                    })
                    .collect();
                out.push_str(&values.join("\t"));
                out.push('\n');
            }
        }
        Ok(out)
    }

    pub(crate) fn db(&self) -> &Connection {
        &self.db
    }
}

fn field<'e>(entry: &'e Entry, name: &str) -> Result<&'e str, ApplyError> {
    entry.get(name).ok_or_else(|| ApplyError(format!("a {} entry without {name}", entry.kind())))
}

/// One entry's effect on the tables.
fn number(text: &str) -> Result<i64, ApplyError> {
    text.parse().map_err(|_| ApplyError(format!("{text:?} is not a number")))
}

fn project(tx: &Transaction<'_>, index: i64, entry: &Entry) -> Result<(), ApplyError> {
    let at = entry.time().to_string();
    let actor = entry.actor();
    let f = |name: &str| field(entry, name);
    let changed = |n: usize, what: &str| {
        if n == 1 { Ok(()) } else { Err(ApplyError(format!("{} entry {index}: no such {what}", entry.kind()))) }
    };
    match entry.kind() {
        kind::PRINCIPAL_REGISTERED => {
            let display = entry.get("display_name").unwrap_or(f("principal")?);
            tx.execute(
                "INSERT INTO principals VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL)",
                params![f("principal")?, f("role")?, display, f("key")?, entry.get("token_sha256"), at, index],
            )?;
        }
        kind::KEY_ROTATED => {
            let n =
                tx.execute("UPDATE principals SET key = ?2 WHERE name = ?1", params![f("principal")?, f("key")?])?;
            changed(n, "principal")?;
        }
        kind::PRINCIPAL_DISABLED => {
            let n = tx.execute(
                "UPDATE principals SET disabled = ?2 WHERE name = ?1",
                params![f("principal")?, f("reason")?],
            )?;
            changed(n, "principal")?;
        }
        kind::PRINCIPAL_ENABLED => {
            let n = tx.execute("UPDATE principals SET disabled = NULL WHERE name = ?1", [f("principal")?])?;
            changed(n, "principal")?;
            // A reviewer's approvals count again: modules they complete are approved now.
            tx.execute(
                "UPDATE modules SET status = 'approved' WHERE status = 'submitted'
                 AND approvals_needed <= (SELECT count(*) FROM approvals a JOIN principals p ON p.name = a.reviewer
                                          WHERE a.module = modules.sha256 AND p.disabled IS NULL)",
                [],
            )?;
        }
        kind::TOKEN_ROTATED => {
            let n = tx.execute(
                "UPDATE principals SET token_sha256 = ?2 WHERE name = ?1",
                params![f("principal")?, f("token_sha256")?],
            )?;
            changed(n, "principal")?;
        }
        kind::TOKEN_REVOKED => {
            let n = tx.execute("UPDATE principals SET token_sha256 = NULL WHERE name = ?1", [f("principal")?])?;
            changed(n, "principal")?;
        }
        kind::DATASET_REGISTERED => {
            tx.execute(
                "INSERT INTO datasets VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (id) DO UPDATE SET version = ?2, level = ?3, registered_at = ?4, log_index = ?5",
                params![f("dataset")?, f("version")?, f("level")?, at, index],
            )?;
        }
        kind::LICENCE_GRANTED => {
            tx.execute(
                "INSERT INTO licences VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'active', NULL, ?7)",
                params![
                    f("licence")?,
                    f("operator")?,
                    f("datasets")?,
                    f("purpose")?,
                    f("valid_from")?,
                    f("valid_until")?,
                    index
                ],
            )?;
        }
        kind::LICENCE_SUSPENDED | kind::LICENCE_RESUMED | kind::LICENCE_REVOKED => {
            let status = match entry.kind() {
                kind::LICENCE_SUSPENDED => "suspended",
                kind::LICENCE_RESUMED => "active",
                _ => "revoked",
            };
            let n = tx.execute(
                "UPDATE licences SET status = ?2, reason = ?3 WHERE id = ?1",
                params![f("licence")?, status, entry.get("reason")],
            )?;
            changed(n, "licence")?;
        }
        kind::AGREEMENT_SIGNED => {
            tx.execute(
                "INSERT INTO agreements VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, NULL, ?7)",
                params![
                    f("agreement")?,
                    f("licence")?,
                    actor,
                    f("application_unit")?,
                    f("scenario")?,
                    f("valid_until")?,
                    index
                ],
            )?;
        }
        kind::AGREEMENT_ENDED => {
            let n = tx.execute(
                "UPDATE agreements SET ended = 1, reason = ?2 WHERE id = ?1",
                params![f("agreement")?, entry.get("reason")],
            )?;
            changed(n, "agreement")?;
        }
        kind::MODULE_SUBMITTED => {
            let datasets = f("datasets")?;
            // Important-level data needs two different reviewers (DESIGN section 2, step 6).
            let mut needed = 1;
            for dataset in datasets.split(',') {
                let level: Option<String> =
                    tx.query_row("SELECT level FROM datasets WHERE id = ?1", [dataset], |r| r.get(0)).optional()?;
                if level.as_deref() != Some("general") {
                    needed = 2;
                }
            }
            tx.execute(
                "INSERT INTO modules VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'submitted', NULL, ?8, ?9)",
                params![f("module")?, f("manifest")?, f("name")?, actor, f("licence")?, datasets, needed, at, index],
            )?;
        }
        kind::MODULE_APPROVED => {
            let module = f("module")?;
            tx.execute("INSERT INTO approvals VALUES (?1, ?2, ?3, ?4)", params![module, actor, at, index])?;
            tx.execute(
                "UPDATE modules SET status = 'approved' WHERE sha256 = ?1 AND status = 'submitted'
                 AND approvals_needed <= (SELECT count(*) FROM approvals a JOIN principals p ON p.name = a.reviewer
                                          WHERE a.module = ?1 AND p.disabled IS NULL)",
                [module],
            )?;
        }
        kind::MODULE_REJECTED | kind::MODULE_REVOKED => {
            let status = if entry.kind() == kind::MODULE_REJECTED { "rejected" } else { "revoked" };
            let n = tx.execute(
                "UPDATE modules SET status = ?2, reason = ?3 WHERE sha256 = ?1",
                params![f("module")?, status, entry.get("reason")],
            )?;
            changed(n, "module")?;
        }
        kind::RUN_QUEUED => {
            tx.execute(
                "INSERT INTO runs VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'queued', NULL, NULL, NULL, NULL, ?8, NULL, ?9, NULL)",
                params![
                    f("run")?,
                    f("module")?,
                    actor,
                    f("licence")?,
                    f("agreement")?,
                    f("parameters")?,
                    f("datasets")?,
                    at,
                    index
                ],
            )?;
        }
        kind::RUN_STARTED => {
            let n = tx.execute("UPDATE runs SET status = 'running' WHERE id = ?1", [f("run")?])?;
            changed(n, "run")?;
        }
        kind::RUN_FINISHED => {
            // `ok` goes on to the audit; anything else ends the run.
            let (status, finished) = match f("status")? {
                "ok" => ("auditing", None),
                other => (other, Some(at.as_str())),
            };
            let n = tx.execute(
                "UPDATE runs SET status = ?2, error_code = ?3, finished_at = ?4, held = NULL WHERE id = ?1",
                params![f("run")?, status, entry.get("error"), finished],
            )?;
            changed(n, "run")?;
        }
        kind::AUDIT_OUTCOME if f("outcome")? == "breach" => {
            // The module's declared values disagree with the host's: the run fails on its
            // contract, and the breach counts against its licence.
            let n = tx.execute(
                "UPDATE runs SET audit_outcome = 'breach', report_id = ?2, held = NULL, status = 'failed',
                    error_code = 'contract', finished_at = ?3 WHERE id = ?1",
                params![f("run")?, f("report")?, at],
            )?;
            changed(n, "run")?;
        }
        kind::AUDIT_OUTCOME => {
            // A run that releases something goes on to its release entry; one with tables held
            // waits for its reviewers; any other ends here (released, if an earlier entry of the
            // run released something: an audit again at review that found the report stale).
            let released: u32 = f("released")?.parse().map_err(|_| ApplyError("released is not a count".into()))?;
            let held = entry.get("held").filter(|h| !h.is_empty());
            let n = tx.execute(
                "UPDATE runs SET audit_outcome = ?2, report_id = ?3, held = ?4,
                    status = CASE WHEN ?5 THEN 'auditing' WHEN ?4 IS NOT NULL THEN 'review'
                        WHEN release IS NULL THEN 'withheld' ELSE 'released' END,
                    finished_at = CASE WHEN ?5 OR ?4 IS NOT NULL THEN NULL ELSE ?6 END
                 WHERE id = ?1",
                params![f("run")?, f("outcome")?, f("report")?, held, released > 0, at],
            )?;
            changed(n, "run")?;
        }
        kind::OUTPUT_APPROVED | kind::OUTPUT_REJECTED => {
            let decision = if entry.kind() == kind::OUTPUT_APPROVED { "approved" } else { "rejected" };
            let run = f("run")?;
            tx.execute(
                "INSERT INTO output_reviews VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![run, f("table")?, actor, decision, f("report")?, entry.get("reason"), at, index],
            )?;
            // Every held table decided and none approved: the run ends without a review release.
            let review = review(tx, run)?;
            if review.undecided.is_empty() && review.approved.is_empty() {
                tx.execute(
                    "UPDATE runs SET held = NULL, finished_at = ?2,
                        status = CASE WHEN release IS NULL THEN 'withheld' ELSE 'released' END
                     WHERE id = ?1",
                    params![run, at],
                )?;
            }
        }
        kind::RELEASE => {
            let results: Vec<&str> = entry.results().iter().map(|(name, _)| *name).collect();
            let (release, run) = (f("release")?, f("run")?);
            let (module, operator): (String, String) =
                tx.query_row("SELECT module, operator FROM runs WHERE id = ?1", [run], |r| Ok((r.get(0)?, r.get(1)?)))?;
            tx.execute(
                "INSERT INTO releases VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![release, run, module, operator, f("recipient")?, f("agreement")?, results.join(","), at, index],
            )?;
            // The release of tables reviewers approved (`reviewed`) ends the review.
            if entry.get("reviewed").is_some() {
                tx.execute("UPDATE runs SET held = NULL WHERE id = ?1", [run])?;
            }
            tx.execute(
                "UPDATE runs SET release = ?2,
                    status = CASE WHEN held IS NULL THEN 'released' ELSE 'review' END,
                    finished_at = CASE WHEN held IS NULL THEN ?3 ELSE NULL END
                 WHERE id = ?1",
                params![run, release, at],
            )?;
        }
        kind::DELIVERY => {
            tx.execute("INSERT INTO deliveries VALUES (?1, ?2, ?3, ?4)", params![index, f("release")?, actor, at])?;
        }
        kind::FEEDBACK => {
            let rating: i64 = f("rating")?.parse().map_err(|_| ApplyError("rating is not a number".into()))?;
            tx.execute(
                "INSERT INTO feedback VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![f("feedback")?, f("release")?, actor, rating, entry.get("comment").unwrap_or(""), at, index],
            )?;
        }
        kind::REQUEST_REFUSED => {
            tx.execute(
                "INSERT INTO refusals VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![index, actor, f("rpc")?, f("code")?, f("reason")?, at],
            )?;
        }
        kind::REPORT => {
            tx.execute(
                "INSERT INTO reports VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![index, number(f("year")?)?, number(f("size")?)?, f("sha256")?, actor, at],
            )?;
        }
        // Kinds that change nothing queryable here (development runs, later kinds) stay in the
        // log only.
        _ => {}
    }
    Ok(())
}

/// Where the output review of a run stands.
#[derive(Debug, Default)]
pub(crate) struct Review {
    /// Tables held for review and not yet released or ended.
    pub(crate) held: Vec<String>,
    /// Held tables two different reviewers approved, and nobody rejected.
    pub(crate) approved: Vec<String>,
    /// Held tables neither approved twice nor rejected.
    pub(crate) undecided: Vec<String>,
}

pub(crate) fn review(db: &Connection, run: &str) -> rusqlite::Result<Review> {
    let held: Option<String> =
        db.query_row("SELECT held FROM runs WHERE id = ?1", [run], |r| r.get(0)).optional()?.flatten();
    let mut review = Review::default();
    for table in held.iter().flat_map(|h| h.split(',')) {
        let (approvals, rejections): (i64, i64) = db.query_row(
            "SELECT count(*) FILTER (WHERE decision = 'approved' AND reviewer NOT IN
                                        (SELECT name FROM principals WHERE disabled IS NOT NULL)),
                    count(*) FILTER (WHERE decision = 'rejected')
             FROM output_reviews WHERE run = ?1 AND tbl = ?2",
            [run, table],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        if rejections == 0 && approvals >= 2 {
            review.approved.push(table.to_owned());
        } else if rejections == 0 {
            review.undecided.push(table.to_owned());
        }
        review.held.push(table.to_owned());
    }
    Ok(review)
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
