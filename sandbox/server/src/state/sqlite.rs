//! The projection in SQLite: every SQL statement of the server is in this file.
//!
//! `meta.applied` is the number of log entries applied: on start the server applies whatever the
//! log holds beyond it (an entry acknowledged just before a crash).

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};
use sandbox_audit::review::Approval;
use sandbox_verify::entry::{self, Entry};
use sandbox_verify::event::Event;

use super::{Projection, RunStatus, Scope, StoreError, Thing};
use crate::auth::Role;
use crate::model::{
    Agreement, Feedback, Incident, Licence, LicenceStatus, Module, ModuleStatus, Principal, Rating, Release, Report,
    Review, Run,
};

const SCHEMA: &str = "
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;
CREATE TABLE principals (
    name TEXT PRIMARY KEY, role TEXT NOT NULL, display_name TEXT NOT NULL, key TEXT NOT NULL,
    token_sha256 TEXT, registered_at TEXT NOT NULL, log_index INTEGER NOT NULL, disabled TEXT,
    provider TEXT) STRICT;
CREATE UNIQUE INDEX principals_token ON principals (token_sha256);
CREATE TABLE datasets (
    id TEXT PRIMARY KEY, version TEXT NOT NULL, level TEXT NOT NULL, registered_at TEXT NOT NULL,
    log_index INTEGER NOT NULL) STRICT;
CREATE TABLE licences (
    id TEXT PRIMARY KEY, operator TEXT NOT NULL, datasets TEXT NOT NULL, purpose TEXT NOT NULL,
    valid_from TEXT NOT NULL, valid_until TEXT NOT NULL, status TEXT NOT NULL, reason TEXT,
    log_index INTEGER NOT NULL, awaiting TEXT NOT NULL, consented TEXT NOT NULL) STRICT;
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
CREATE TABLE incidents (
    id TEXT PRIMARY KEY, licence TEXT NOT NULL, reporter TEXT NOT NULL, category TEXT NOT NULL,
    description TEXT NOT NULL, closed INTEGER NOT NULL, measures TEXT NOT NULL,
    runs_allowed INTEGER NOT NULL, reported_to TEXT, opened_at TEXT NOT NULL, closed_at TEXT,
    log_index INTEGER NOT NULL) STRICT;
CREATE TABLE ratings (
    id TEXT PRIMARY KEY, provider TEXT NOT NULL, operator TEXT NOT NULL, year INTEGER NOT NULL,
    score INTEGER NOT NULL, comment TEXT NOT NULL, at TEXT NOT NULL, log_index INTEGER NOT NULL) STRICT;
CREATE TABLE refusals (
    log_index INTEGER PRIMARY KEY, actor TEXT NOT NULL, rpc TEXT NOT NULL, code TEXT NOT NULL,
    reason TEXT NOT NULL, at TEXT NOT NULL) STRICT;
CREATE TABLE reports (
    log_index INTEGER PRIMARY KEY, year INTEGER NOT NULL, size INTEGER NOT NULL, sha256 TEXT NOT NULL,
    filed_by TEXT NOT NULL, filed_at TEXT NOT NULL) STRICT;
INSERT INTO meta VALUES ('applied', '0');
INSERT INTO meta VALUES ('schema', '11');
";

/// The schema's version, in `meta.schema`. A database of another version is rebuilt from the
/// log when the server starts: the projection holds nothing the log does not.
const SCHEMA_VERSION: &str = "11";

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
    ("ratings", "id"),
    ("incidents", "id"),
    ("refusals", "log_index"),
    ("reports", "log_index"),
    ("meta", "key"),
];

/// A projection database.
#[derive(Debug)]
pub struct State {
    db: Connection,
}

impl State {
    /// Opens the database at `path`, creating it with the schema if it does not exist.
    pub fn open(path: &Path) -> Result<State, StoreError> {
        let new = !path.exists();
        let db = Connection::open(path)?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        // NORMAL, not FULL: a commit is not synced on its own (WAL keeps the database whole
        // across a crash; the last commits may be lost). The log is what is durable: the
        // projection records the entries it applied in the same transaction, and `catch_up`
        // applies again, at start, whatever a crash took back. FULL cost a sync per entry.
        db.pragma_update(None, "synchronous", "NORMAL")?;
        if new {
            db.execute_batch(SCHEMA)?;
        }
        Ok(State { db })
    }

    /// Whether the database at `path` is of this server's schema (false if it does not exist).
    pub fn is_current(path: &Path) -> Result<bool, StoreError> {
        if !path.exists() {
            return Ok(false);
        }
        let db = Connection::open(path)?;
        let version: Option<String> =
            db.query_row("SELECT value FROM meta WHERE key = 'schema'", [], |r| r.get(0)).optional()?;
        Ok(version.as_deref() == Some(SCHEMA_VERSION))
    }
}

/// One entry's effect on the tables, read through its [`Event`].
fn project(tx: &Transaction<'_>, index: i64, entry: &Entry) -> Result<(), StoreError> {
    let at = entry.time().to_string();
    let actor = entry.actor();
    let changed = |n: usize, what: &str| {
        if n == 1 { Ok(()) } else { Err(StoreError(format!("{} entry {index}: no such {what}", entry.kind()))) }
    };
    let event = Event::decode(entry).map_err(|e| StoreError(format!("entry {index}: {e}")))?;
    match event {
        Event::PrincipalRegistered { principal, role, key, token_sha256, display_name, provider } => {
            let display = display_name.as_deref().unwrap_or(&principal);
            tx.execute(
                "INSERT INTO principals VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL, ?8)",
                params![principal, role, display, key, token_sha256, at, index, provider],
            )?;
        }
        Event::KeyRotated { principal, key } => {
            let n = tx.execute("UPDATE principals SET key = ?2 WHERE name = ?1", params![principal, key])?;
            changed(n, "principal")?;
        }
        Event::PrincipalDisabled { principal, reason } => {
            let n = tx.execute("UPDATE principals SET disabled = ?2 WHERE name = ?1", params![principal, reason])?;
            changed(n, "principal")?;
        }
        Event::PrincipalEnabled { principal } => {
            let n = tx.execute("UPDATE principals SET disabled = NULL WHERE name = ?1", [principal])?;
            changed(n, "principal")?;
            // A reviewer's approvals count again: modules they complete are approved now.
            tx.execute(
                "UPDATE modules SET status = 'approved' WHERE status = 'submitted'
                 AND approvals_needed <= (SELECT count(*) FROM approvals a JOIN principals p ON p.name = a.reviewer
                                          WHERE a.module = modules.sha256 AND p.disabled IS NULL)",
                [],
            )?;
        }
        Event::TokenRotated { principal, token_sha256 } => {
            let n = tx
                .execute("UPDATE principals SET token_sha256 = ?2 WHERE name = ?1", params![principal, token_sha256])?;
            changed(n, "principal")?;
        }
        Event::TokenRevoked { principal, .. } => {
            let n = tx.execute("UPDATE principals SET token_sha256 = NULL WHERE name = ?1", [principal])?;
            changed(n, "principal")?;
        }
        Event::DatasetRegistered { dataset, version, level } => {
            tx.execute(
                "INSERT INTO datasets VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (id) DO UPDATE SET version = ?2, level = ?3, registered_at = ?4, log_index = ?5",
                params![dataset, version, level, at, index],
            )?;
        }
        Event::LicenceGranted { licence, operator, datasets, purpose, valid_from, valid_until, consent } => {
            let awaiting = consent.unwrap_or_default().join(",");
            tx.execute(
                "INSERT INTO licences VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'active', NULL, ?7, ?8, '')",
                params![licence, operator, datasets.join(","), purpose, valid_from, valid_until, index, awaiting],
            )?;
        }
        Event::LicenceConsented { licence, dataset } => {
            let (awaiting, consented): (String, String) =
                tx.query_row("SELECT awaiting, consented FROM licences WHERE id = ?1", [&licence], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?;
            let left: Vec<&str> = awaiting.split(',').filter(|d| !d.is_empty() && *d != dataset).collect();
            let mut consented: Vec<&str> = consented.split(',').filter(|d| !d.is_empty()).collect();
            consented.push(&dataset);
            tx.execute(
                "UPDATE licences SET awaiting = ?2, consented = ?3 WHERE id = ?1",
                params![licence, left.join(","), consented.join(",")],
            )?;
        }
        Event::LicenceConsentRequired { licence, datasets } => {
            let awaiting: String =
                tx.query_row("SELECT awaiting FROM licences WHERE id = ?1", [&licence], |r| r.get(0))?;
            let mut awaiting: Vec<&str> = awaiting.split(',').filter(|d| !d.is_empty()).collect();
            for dataset in &datasets {
                if !awaiting.contains(&dataset.as_str()) {
                    awaiting.push(dataset);
                }
            }
            tx.execute("UPDATE licences SET awaiting = ?2 WHERE id = ?1", params![licence, awaiting.join(",")])?;
        }
        Event::LicenceSuspended { licence, reason } => {
            changed(licence_status(tx, &licence, LicenceStatus::Suspended, reason)?, "licence")?;
        }
        Event::LicenceResumed { licence, reason } => {
            changed(licence_status(tx, &licence, LicenceStatus::Active, reason)?, "licence")?;
        }
        Event::LicenceRevoked { licence, reason } => {
            changed(licence_status(tx, &licence, LicenceStatus::Revoked, reason)?, "licence")?;
        }
        Event::AgreementSigned { agreement, licence, application_unit, scenario, valid_until } => {
            tx.execute(
                "INSERT INTO agreements VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, NULL, ?7)",
                params![agreement, licence, actor, application_unit, scenario, valid_until, index],
            )?;
        }
        Event::AgreementEnded { agreement, reason } => {
            let n =
                tx.execute("UPDATE agreements SET ended = 1, reason = ?2 WHERE id = ?1", params![agreement, reason])?;
            changed(n, "agreement")?;
        }
        Event::ModuleSubmitted { module, manifest, licence, name, datasets } => {
            // Important-level data needs two different reviewers (DESIGN section 2, step 6).
            let mut needed = 1;
            for dataset in &datasets {
                let level: Option<String> =
                    tx.query_row("SELECT level FROM datasets WHERE id = ?1", [dataset], |r| r.get(0)).optional()?;
                if level.as_deref() != Some("general") {
                    needed = 2;
                }
            }
            tx.execute(
                "INSERT INTO modules VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'submitted', NULL, ?8, ?9)",
                params![module, manifest, name, actor, licence, datasets.join(","), needed, at, index],
            )?;
        }
        Event::ModuleApproved { module } => {
            tx.execute("INSERT INTO approvals VALUES (?1, ?2, ?3, ?4)", params![module, actor, at, index])?;
            tx.execute(
                "UPDATE modules SET status = 'approved' WHERE sha256 = ?1 AND status = 'submitted'
                 AND approvals_needed <= (SELECT count(*) FROM approvals a JOIN principals p ON p.name = a.reviewer
                                          WHERE a.module = ?1 AND p.disabled IS NULL)",
                [module],
            )?;
        }
        Event::ModuleRejected { module, reason } => {
            changed(module_status(tx, &module, ModuleStatus::Rejected, &reason)?, "module")?;
        }
        Event::ModuleRevoked { module, reason } => {
            changed(module_status(tx, &module, ModuleStatus::Revoked, &reason)?, "module")?;
        }
        Event::RunQueued { run, module, licence, agreement, parameters, datasets } => {
            tx.execute(
                "INSERT INTO runs VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'queued', NULL, NULL, NULL, NULL, ?8, NULL, ?9, NULL)",
                params![run, module, actor, licence, agreement, parameters, datasets.join(","), at, index],
            )?;
        }
        Event::RunStarted { run } => {
            let n = tx.execute("UPDATE runs SET status = 'running' WHERE id = ?1", [run])?;
            changed(n, "run")?;
        }
        Event::RunFinished { run, status, error, .. } => {
            // `ok` goes on to the audit; anything else ends the run.
            let (status, finished) = match status.as_str() {
                "ok" => (RunStatus::Auditing, None),
                other => (
                    RunStatus::parse(other)
                        .ok_or_else(|| StoreError(format!("entry {index}: run status {other:?}")))?,
                    Some(at.as_str()),
                ),
            };
            let n = tx.execute(
                "UPDATE runs SET status = ?2, error_code = ?3, finished_at = ?4, held = NULL WHERE id = ?1",
                params![run, status.as_str(), error, finished],
            )?;
            changed(n, "run")?;
        }
        Event::AuditOutcome { run, outcome, report, .. } if outcome == "breach" => {
            // The module's declared values disagree with the host's: the run fails on its
            // contract, and the breach counts against its licence.
            let n = tx.execute(
                "UPDATE runs SET audit_outcome = 'breach', report_id = ?2, held = NULL, status = 'failed',
                    error_code = 'contract', finished_at = ?3 WHERE id = ?1",
                params![run, report, at],
            )?;
            changed(n, "run")?;
        }
        Event::AuditOutcome { run, outcome, report, released, held } => {
            // A run that releases something goes on to its release entry; one with tables held
            // waits for its reviewers; any other ends here (released, if an earlier entry of the
            // run released something: an audit again at review that found the report stale).
            let held = held.map(|h| h.join(",")).filter(|h| !h.is_empty());
            let n = tx.execute(
                "UPDATE runs SET audit_outcome = ?2, report_id = ?3, held = ?4,
                    status = CASE WHEN ?5 THEN 'auditing' WHEN ?4 IS NOT NULL THEN 'review'
                        WHEN release IS NULL THEN 'withheld' ELSE 'released' END,
                    finished_at = CASE WHEN ?5 OR ?4 IS NOT NULL THEN NULL ELSE ?6 END
                 WHERE id = ?1",
                params![run, outcome, report, held, released > 0, at],
            )?;
            changed(n, "run")?;
        }
        Event::OutputApproved { run, report, table } => {
            review_decision(tx, index, &at, actor, &run, &table, "approved", &report, None)?
        }
        Event::OutputRejected { run, report, table, reason } => {
            review_decision(tx, index, &at, actor, &run, &table, "rejected", &report, Some(&reason))?
        }
        Event::Release { release, run, recipient, agreement, reviewed, results, .. } => {
            let results: Vec<&str> = results.0.iter().map(|(name, _)| name.as_str()).collect();
            let (module, operator): (String, String) =
                tx.query_row("SELECT module, operator FROM runs WHERE id = ?1", [&run], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?;
            tx.execute(
                "INSERT INTO releases VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![release, run, module, operator, recipient, agreement, results.join(","), at, index],
            )?;
            // The release of tables reviewers approved (`reviewed`) ends the review.
            if reviewed.is_some() {
                tx.execute("UPDATE runs SET held = NULL WHERE id = ?1", [&run])?;
            }
            tx.execute(
                "UPDATE runs SET release = ?2,
                    status = CASE WHEN held IS NULL THEN 'released' ELSE 'review' END,
                    finished_at = CASE WHEN held IS NULL THEN ?3 ELSE NULL END
                 WHERE id = ?1",
                params![run, release, at],
            )?;
        }
        Event::Delivery { release } => {
            tx.execute("INSERT INTO deliveries VALUES (?1, ?2, ?3, ?4)", params![index, release, actor, at])?;
        }
        Event::Feedback { feedback, release, rating, comment } => {
            tx.execute(
                "INSERT INTO feedback VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![feedback, release, actor, rating, comment.unwrap_or_default(), at, index],
            )?;
        }
        Event::IncidentReported { incident, licence, category, description } => {
            tx.execute(
                "INSERT INTO incidents VALUES (?1, ?2, ?3, ?4, ?5, 0, '', 0, NULL, ?6, NULL, ?7)",
                params![incident, licence, actor, category, description, at, index],
            )?;
        }
        Event::IncidentMeasure { incident, measure, .. } => {
            let n = tx.execute(
                "UPDATE incidents SET measures = ltrim(measures || ',' || ?2, ','),
                 runs_allowed = runs_allowed OR ?2 = 'allow_runs' WHERE id = ?1",
                params![incident, measure],
            )?;
            changed(n, "incident")?;
        }
        Event::IncidentClosed { incident, reported_to, .. } => {
            let n = tx.execute(
                "UPDATE incidents SET closed = 1, reported_to = ?2, closed_at = ?3 WHERE id = ?1",
                params![incident, reported_to, at],
            )?;
            changed(n, "incident")?;
        }
        Event::OperatorRated { rating, operator, year, score, comment } => {
            tx.execute(
                "INSERT INTO ratings VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![rating, actor, operator, year, score, comment.unwrap_or_default(), at, index],
            )?;
        }
        Event::RequestRefused { rpc, code, reason, .. } => {
            tx.execute(
                "INSERT INTO refusals VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![index, actor, rpc, code, reason, at],
            )?;
        }
        Event::Report { year, size, sha256 } => {
            tx.execute(
                "INSERT INTO reports VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![index, year, size as i64, sha256, actor, at],
            )?;
        }
        // Events that change nothing queryable here (development runs, reads of reports) and
        // kinds of later versions stay in the log only.
        Event::RunDeveloped { .. } | Event::AuditReportRead { .. } | Event::Unknown { .. } => {}
    }
    Ok(())
}

/// A licence's new status, and why; the rows changed.
fn licence_status(
    tx: &Transaction<'_>,
    licence: &str,
    status: LicenceStatus,
    reason: Option<String>,
) -> Result<usize, StoreError> {
    let sql = "UPDATE licences SET status = ?2, reason = ?3 WHERE id = ?1";
    Ok(tx.execute(sql, params![licence, status.as_str(), reason])?)
}

/// A module's end (rejected or revoked), and why; the rows changed.
fn module_status(tx: &Transaction<'_>, module: &str, status: ModuleStatus, reason: &str) -> Result<usize, StoreError> {
    let sql = "UPDATE modules SET status = ?2, reason = ?3 WHERE sha256 = ?1";
    Ok(tx.execute(sql, params![module, status.as_str(), reason])?)
}

/// A reviewer's decision on a held table; every held table decided and none approved ends the
/// run without a review release.
#[allow(clippy::too_many_arguments)]
fn review_decision(
    tx: &Transaction<'_>,
    index: i64,
    at: &str,
    reviewer: &str,
    run: &str,
    table: &str,
    decision: &str,
    report: &str,
    reason: Option<&str>,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO output_reviews VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![run, table, reviewer, decision, report, reason, at, index],
    )?;
    let review = review(tx, run)?;
    if review.undecided.is_empty() && review.approved.is_empty() {
        tx.execute(
            "UPDATE runs SET held = NULL, finished_at = ?2,
                status = CASE WHEN release IS NULL THEN 'withheld' ELSE 'released' END
             WHERE id = ?1",
            params![run, at],
        )?;
    }
    Ok(())
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> StoreError {
        StoreError(format!("state database: {e}"))
    }
}

fn review(db: &Connection, run: &str) -> rusqlite::Result<Review> {
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

// ---- rows as domain types ----

/// A text column the projection writes from a fixed set, read back; anything else is a fault.
fn parsed<T>(row: &Row<'_>, column: &str, parse: impl FnOnce(&str) -> Option<T>) -> rusqlite::Result<T> {
    let text: String = row.get(column)?;
    parse(&text).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, format!("{column} {text:?}").into())
    })
}

fn list(text: Option<String>) -> Vec<String> {
    text.iter().flat_map(|t| t.split(',')).filter(|t| !t.is_empty()).map(str::to_owned).collect()
}

/// SQL that is true when the comma-separated dataset ids in `column` name one of the datasets
/// of the JSON array `?3` (a provider's, [`State::touching`]).
fn touches(column: &str) -> String {
    format!("EXISTS (SELECT 1 FROM json_each(?3) d WHERE instr(',' || {column} || ',', ',' || d.value || ',') > 0)")
}

/// [`touches`] for a column of `id@version` items (a run's datasets).
fn touches_versioned(column: &str) -> String {
    format!("EXISTS (SELECT 1 FROM json_each(?3) d WHERE instr(',' || {column}, ',' || d.value || '@') > 0)")
}

fn principal_row(row: &Row<'_>) -> rusqlite::Result<Principal> {
    Ok(Principal {
        name: row.get("name")?,
        role: parsed(row, "role", Role::parse)?,
        display_name: row.get("display_name")?,
        key: row.get("key")?,
        registered_at: row.get("registered_at")?,
        disabled: row.get("disabled")?,
        token_sha256: row.get("token_sha256")?,
        provider: row.get("provider")?,
    })
}

fn licence_row(row: &Row<'_>) -> rusqlite::Result<Licence> {
    Ok(Licence {
        id: row.get("id")?,
        operator: row.get("operator")?,
        datasets: list(row.get("datasets")?),
        purpose: row.get("purpose")?,
        valid_from: row.get("valid_from")?,
        valid_until: row.get("valid_until")?,
        status: parsed(row, "status", LicenceStatus::parse)?,
        awaiting: list(row.get("awaiting")?),
        consented: list(row.get("consented")?),
    })
}

fn agreement_row(row: &Row<'_>) -> rusqlite::Result<Agreement> {
    Ok(Agreement {
        id: row.get("id")?,
        licence: row.get("licence")?,
        operator: row.get("operator")?,
        application_unit: row.get("application_unit")?,
        scenario: row.get("scenario")?,
        valid_until: row.get("valid_until")?,
        ended: row.get::<_, i64>("ended")? != 0,
    })
}

const MODULE_SELECT: &str = "SELECT m.*, (SELECT group_concat(reviewer, ',') FROM
    (SELECT reviewer FROM approvals a WHERE a.module = m.sha256 ORDER BY log_index)) AS approved_by FROM modules m";

fn module_row(row: &Row<'_>) -> rusqlite::Result<Module> {
    Ok(Module {
        sha256: row.get("sha256")?,
        manifest_sha256: row.get("manifest_sha256")?,
        name: row.get("name")?,
        operator: row.get("operator")?,
        licence: row.get("licence")?,
        datasets: list(row.get("datasets")?),
        approvals: list(row.get("approved_by")?),
        approvals_needed: row.get("approvals_needed")?,
        status: parsed(row, "status", ModuleStatus::parse)?,
        reason: row.get("reason")?,
        submitted_at: row.get("submitted_at")?,
    })
}

fn run_row(row: &Row<'_>) -> rusqlite::Result<Run> {
    Ok(Run {
        id: row.get("id")?,
        module: row.get("module")?,
        operator: row.get("operator")?,
        licence: row.get("licence")?,
        agreement: row.get("agreement")?,
        datasets: row.get("datasets")?,
        status: parsed(row, "status", RunStatus::parse)?,
        error_code: row.get("error_code")?,
        audit_outcome: row.get("audit_outcome")?,
        report_id: row.get("report_id")?,
        release: row.get("release")?,
        requested_at: row.get("requested_at")?,
        finished_at: row.get("finished_at")?,
        held: list(row.get("held")?),
    })
}

fn release_row(row: &Row<'_>) -> rusqlite::Result<Release> {
    Ok(Release {
        id: row.get("id")?,
        run: row.get("run")?,
        module: row.get("module")?,
        operator: row.get("operator")?,
        application_unit: row.get("application_unit")?,
        agreement: row.get("agreement")?,
        log_index: row.get::<_, i64>("log_index")? as u64,
        results: list(row.get("results")?),
        released_at: row.get("released_at")?,
    })
}

fn feedback_row(row: &Row<'_>) -> rusqlite::Result<Feedback> {
    Ok(Feedback {
        id: row.get("id")?,
        release: row.get("release")?,
        application_unit: row.get("application_unit")?,
        rating: row.get("rating")?,
        comment: row.get("comment")?,
        at: row.get("at")?,
    })
}

fn incident_row(row: &Row<'_>) -> rusqlite::Result<Incident> {
    Ok(Incident {
        id: row.get("id")?,
        licence: row.get("licence")?,
        reporter: row.get("reporter")?,
        category: row.get("category")?,
        description: row.get("description")?,
        closed: row.get("closed")?,
        measures: list(row.get("measures")?),
        runs_allowed: row.get("runs_allowed")?,
        reported_to: row.get("reported_to")?,
        opened_at: row.get("opened_at")?,
        closed_at: row.get("closed_at")?,
    })
}

fn rating_row(row: &Row<'_>) -> rusqlite::Result<Rating> {
    Ok(Rating {
        id: row.get("id")?,
        provider: row.get("provider")?,
        operator: row.get("operator")?,
        year: row.get("year")?,
        score: row.get("score")?,
        comment: row.get("comment")?,
        at: row.get("at")?,
    })
}

fn report_row(row: &Row<'_>) -> rusqlite::Result<Report> {
    Ok(Report {
        year: row.get("year")?,
        size: row.get::<_, i64>("size")? as u64,
        sha256: row.get("sha256")?,
        log_index: row.get::<_, i64>("log_index")? as u64,
        filed_by: row.get("filed_by")?,
        filed_at: row.get("filed_at")?,
    })
}

impl State {
    fn one<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        row: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Option<T>, StoreError> {
        Ok(self.db.query_row(sql, params, row).optional()?)
    }

    fn all<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        row: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>, StoreError> {
        Ok(self.db.prepare(sql)?.query_map(params, row)?.collect::<rusqlite::Result<_>>()?)
    }

    /// `All` as true, `Own` as false and the name: the two parameters of a scoped query.
    fn scoped(scope: Scope<'_>) -> (bool, &str) {
        match scope {
            Scope::All => (true, ""),
            Scope::Own(name) | Scope::Provider { name, .. } => (false, name),
        }
    }

    /// A provider's datasets as a JSON array, the `?3` of [`touches`]; none for other scopes.
    fn touching(scope: Scope<'_>) -> String {
        let datasets = match scope {
            Scope::Provider { datasets, .. } => datasets,
            _ => &[],
        };
        serde_json::to_string(datasets).expect("strings serialize")
    }
}

impl Projection for State {
    /// How many log entries are applied.
    fn applied(&self) -> Result<u64, StoreError> {
        let text: String = self.db.query_row("SELECT value FROM meta WHERE key = 'applied'", [], |r| r.get(0))?;
        text.parse().map_err(|_| StoreError(format!("meta.applied is {text:?}")))
    }

    /// Applies the log entry at `index`, which must be the next one, in one transaction.
    fn apply(&mut self, index: u64, bytes: &[u8]) -> Result<(), StoreError> {
        let applied = self.applied()?;
        if index != applied {
            return Err(StoreError(format!("entry {index} applied after {applied} entries")));
        }
        let (entry, _) = entry::open(bytes).map_err(|e| StoreError(format!("entry {index}: {e}")))?;
        let tx = self.db.transaction()?;
        project(&tx, index as i64, &entry)?;
        tx.execute("UPDATE meta SET value = ?1 WHERE key = 'applied'", [(index + 1).to_string()])?;
        tx.commit()?;
        Ok(())
    }

    /// Every table's rows in a fixed order, one line per row: equal dumps, equal states.
    fn dump(&self) -> Result<String, StoreError> {
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

    fn principal(&self, name: &str) -> Result<Option<Principal>, StoreError> {
        self.one("SELECT * FROM principals WHERE name = ?1 AND role != 'log'", [name], principal_row)
    }

    fn principal_by_token(&self, token_sha256: &str) -> Result<Option<Principal>, StoreError> {
        self.one("SELECT * FROM principals WHERE token_sha256 = ?1 AND role != 'log'", [token_sha256], principal_row)
    }

    fn principals(&self, scope: Scope<'_>) -> Result<Vec<Principal>, StoreError> {
        let (all, name) = State::scoped(scope);
        let sql = "SELECT * FROM principals WHERE role != 'log' AND (?1 OR name = ?2) ORDER BY name";
        self.all(sql, params![all, name], principal_row)
    }

    fn dataset_version(&self, id: &str) -> Result<Option<String>, StoreError> {
        self.one("SELECT version FROM datasets WHERE id = ?1", [id], |r| r.get(0))
    }

    fn licence(&self, id: &str) -> Result<Option<Licence>, StoreError> {
        self.one("SELECT * FROM licences WHERE id = ?1", [id], licence_row)
    }

    fn licences(&self, scope: Scope<'_>) -> Result<Vec<Licence>, StoreError> {
        let (all, name) = State::scoped(scope);
        let sql =
            format!("SELECT * FROM licences l WHERE ?1 OR operator = ?2 OR {} ORDER BY id", touches("l.datasets"));
        self.all(&sql, params![all, name, State::touching(scope)], licence_row)
    }

    fn contract_failures(&self, licence: &str) -> Result<u32, StoreError> {
        let sql = "SELECT count(*) FROM runs WHERE licence = ?1 AND error_code = 'contract'";
        Ok(self.db.query_row(sql, [licence], |r| r.get(0))?)
    }

    fn agreement(&self, id: &str) -> Result<Option<Agreement>, StoreError> {
        self.one("SELECT * FROM agreements WHERE id = ?1", [id], agreement_row)
    }

    fn agreements(&self, scope: Scope<'_>) -> Result<Vec<Agreement>, StoreError> {
        let (all, name) = State::scoped(scope);
        let sql = format!(
            "SELECT a.* FROM agreements a JOIN licences l ON l.id = a.licence
             WHERE ?1 OR a.operator = ?2 OR a.application_unit = ?2 OR {} ORDER BY a.id",
            touches("l.datasets")
        );
        self.all(&sql, params![all, name, State::touching(scope)], agreement_row)
    }

    fn module(&self, sha256: &str) -> Result<Option<Module>, StoreError> {
        self.one(&format!("{MODULE_SELECT} WHERE m.sha256 = ?1"), [sha256], module_row)
    }

    fn modules(&self, scope: Scope<'_>) -> Result<Vec<Module>, StoreError> {
        let (all, name) = State::scoped(scope);
        let sql =
            format!("{MODULE_SELECT} WHERE ?1 OR m.operator = ?2 OR {} ORDER BY m.log_index", touches("m.datasets"));
        self.all(&sql, params![all, name, State::touching(scope)], module_row)
    }

    fn run(&self, id: &str) -> Result<Option<Run>, StoreError> {
        self.one("SELECT * FROM runs WHERE id = ?1", [id], run_row)
    }

    fn runs(&self, scope: Scope<'_>) -> Result<Vec<Run>, StoreError> {
        let (all, name) = State::scoped(scope);
        let sql = format!(
            "SELECT * FROM runs r WHERE ?1 OR operator = ?2 OR {} ORDER BY id",
            touches_versioned("r.datasets")
        );
        self.all(&sql, params![all, name, State::touching(scope)], run_row)
    }

    fn runs_in(&self, statuses: &[RunStatus]) -> Result<Vec<Run>, StoreError> {
        let marks = vec!["?"; statuses.len()].join(", ");
        let sql = format!("SELECT * FROM runs WHERE status IN ({marks}) ORDER BY id");
        self.all(&sql, rusqlite::params_from_iter(statuses.iter().map(|s| s.as_str())), run_row)
    }

    fn run_times(&self, licence: &str) -> Result<Vec<String>, StoreError> {
        self.all("SELECT requested_at FROM runs WHERE licence = ?1", [licence], |r| r.get(0))
    }

    fn review(&self, run: &str) -> Result<Review, StoreError> {
        Ok(review(&self.db, run)?)
    }

    fn output_decided(&self, run: &str, table: &str, reviewer: &str) -> Result<bool, StoreError> {
        let sql = "SELECT count(*) > 0 FROM output_reviews WHERE run = ?1 AND tbl = ?2 AND reviewer = ?3";
        Ok(self.db.query_row(sql, [run, table, reviewer], |r| r.get(0))?)
    }

    fn output_approvals(&self, run: &str) -> Result<Vec<Approval>, StoreError> {
        let sql = "SELECT reviewer, report, tbl FROM output_reviews WHERE run = ?1 AND decision = 'approved'
                   ORDER BY log_index";
        self.all(sql, [run], |r| Ok(Approval { reviewer: r.get(0)?, report_id: r.get(1)?, table: r.get(2)? }))
    }

    fn release(&self, id: &str) -> Result<Option<Release>, StoreError> {
        self.one("SELECT * FROM releases WHERE id = ?1", [id], release_row)
    }

    fn releases(&self, scope: Scope<'_>) -> Result<Vec<Release>, StoreError> {
        let (all, name) = State::scoped(scope);
        let sql = format!(
            "SELECT e.* FROM releases e JOIN runs r ON r.id = e.run
             WHERE ?1 OR e.operator = ?2 OR e.application_unit = ?2 OR {} ORDER BY e.id",
            touches_versioned("r.datasets")
        );
        self.all(&sql, params![all, name, State::touching(scope)], release_row)
    }

    fn feedback(&self, scope: Scope<'_>) -> Result<Vec<Feedback>, StoreError> {
        let (all, name) = State::scoped(scope);
        let sql = "SELECT f.* FROM feedback f JOIN releases r ON r.id = f.release WHERE ?1 OR r.operator = ?2
                   ORDER BY f.id";
        self.all(sql, params![all, name], feedback_row)
    }

    fn incident(&self, id: &str) -> Result<Option<Incident>, StoreError> {
        self.one("SELECT * FROM incidents WHERE id = ?1", [id], incident_row)
    }

    fn incident_blocks(&self, licence: &str) -> Result<bool, StoreError> {
        let sql = "SELECT count(*) > 0 FROM incidents WHERE licence = ?1 AND closed = 0 AND runs_allowed = 0";
        Ok(self.db.query_row(sql, [licence], |r| r.get(0))?)
    }

    fn incidents(&self, scope: Scope<'_>) -> Result<Vec<Incident>, StoreError> {
        let (all, name) = State::scoped(scope);
        let sql = format!(
            "SELECT i.* FROM incidents i JOIN licences l ON l.id = i.licence
             WHERE ?1 OR i.reporter = ?2 OR l.operator = ?2 OR {} ORDER BY i.id",
            touches("l.datasets")
        );
        self.all(&sql, params![all, name, State::touching(scope)], incident_row)
    }

    fn ratings(&self, scope: Scope<'_>) -> Result<Vec<Rating>, StoreError> {
        let (all, name) = State::scoped(scope);
        let sql = "SELECT * FROM ratings WHERE ?1 OR provider = ?2 OR operator = ?2 ORDER BY id";
        self.all(sql, params![all, name], rating_row)
    }

    fn report(&self, year: i32) -> Result<Option<Report>, StoreError> {
        self.one("SELECT * FROM reports WHERE year = ?1 ORDER BY log_index DESC LIMIT 1", [year], report_row)
    }

    fn is_party(&self, scope: Scope<'_>, thing: Thing, id: &str) -> Result<bool, StoreError> {
        let (all, name) = State::scoped(scope);
        let sql = match thing {
            Thing::Run => format!(
                "SELECT count(*) > 0 FROM runs r JOIN agreements a ON a.id = r.agreement
                 WHERE r.id = ?1 AND (?4 OR r.operator = ?2 OR a.application_unit = ?2 OR {})",
                touches_versioned("r.datasets")
            ),
            Thing::Release => format!(
                "SELECT count(*) > 0 FROM releases e JOIN runs r ON r.id = e.run
                 WHERE e.id = ?1 AND (?4 OR e.operator = ?2 OR e.application_unit = ?2 OR {})",
                touches_versioned("r.datasets")
            ),
            Thing::Licence => format!(
                "SELECT count(*) > 0 FROM licences l WHERE l.id = ?1 AND (?4 OR l.operator = ?2 OR {})",
                touches("l.datasets")
            ),
            Thing::Agreement => format!(
                "SELECT count(*) > 0 FROM agreements a JOIN licences l ON l.id = a.licence
                 WHERE a.id = ?1 AND (?4 OR a.operator = ?2 OR a.application_unit = ?2 OR {})",
                touches("l.datasets")
            ),
            Thing::Module => format!(
                "SELECT count(*) > 0 FROM modules m WHERE m.sha256 = ?1 AND (?4 OR m.operator = ?2 OR {})",
                touches("m.datasets")
            ),
        };
        Ok(self.db.query_row(&sql, params![id, name, State::touching(scope), all], |r| r.get(0))?)
    }
}
