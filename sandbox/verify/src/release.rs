//! Release bundles: what an application unit receives and an evaluator checks.
//!
//! ```text
//! <bundle>/statement             a `release` entry, signed by the sandbox release key
//! <bundle>/statement.tlog-proof  the statement's inclusion in a signed log checkpoint
//! <bundle>/results/<file>        the released files, each named in the statement
//! ```
//!
//! The statement's fields: `result.<file name> <hex SHA-256>` for every file under `results/`,
//! and `module`, `manifest`, `datasets`, `audit_report`, `policy`, `recipient`, `agreement`
//! (hex SHA-256s and identifiers). The statement's leaf in the log is its exact bytes.

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::checkpoint::Checkpoint;
use crate::entry::{self, Entry, MAX_ENTRY_SIZE, kind};
use crate::error::{Error, Format};
use crate::merkle::Hash;
use crate::problem::{Problem, ProblemKind};
use crate::proof::{MAX_TLOG_PROOF_SIZE, TlogProof};
use crate::tiles::read_limited;
use crate::trust::{Role, Trust};

/// The signed release statement, relative to the bundle.
pub const STATEMENT: &str = "statement";
/// The statement's tlog-proof.
pub const STATEMENT_PROOF: &str = "statement.tlog-proof";
/// The directory of released files.
pub const RESULTS: &str = "results";

/// What was checked in a bundle, and what failed. Verified when `problems` is empty.
#[derive(Debug, Default)]
pub struct ReleaseReport {
    pub statement: Option<Entry>,
    /// The checkpoint the statement is proved in, once its signature verified.
    pub checkpoint: Option<Checkpoint>,
    pub index: Option<u64>,
    /// Result files whose hash matched the statement.
    pub results: Vec<(String, Hash)>,
    pub problems: Vec<Problem>,
}

impl ReleaseReport {
    /// Whether everything in the bundle verified.
    pub fn verified(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Verifies a release bundle against the trusted keys: the statement's signature by a release
/// key valid at its time, every result file's hash, and the statement's inclusion in a
/// checkpoint signed by a log key.
pub fn verify(bundle: &Path, trust: &Trust) -> ReleaseReport {
    let mut report = ReleaseReport::default();
    let problem = |at: &str, e: Error| Problem::new(at, ProblemKind::Invalid(e));
    let statement = match read_limited(&bundle.join(STATEMENT), MAX_ENTRY_SIZE) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => {
            report.problems.push(Problem::new(STATEMENT, ProblemKind::Missing));
            return report;
        }
        Err(e) => {
            report.problems.push(problem(STATEMENT, e));
            return report;
        }
    };
    match check_statement(&statement, trust) {
        Ok(entry) => {
            check_results(bundle, &entry, &mut report);
            report.statement = Some(entry);
        }
        Err(p) => report.problems.push(p),
    }
    let time = report.statement.as_ref().map(Entry::time);
    match read_limited(&bundle.join(STATEMENT_PROOF), MAX_TLOG_PROOF_SIZE) {
        Ok(Some(bytes)) => match TlogProof::parse(&bytes)
            .and_then(|proof| Ok((proof.index, proof.verify(&statement, &trust.checkpoint_keys(time))?)))
        {
            Ok((index, checkpoint)) => {
                report.index = Some(index);
                report.checkpoint = Some(checkpoint);
            }
            Err(e) => report.problems.push(problem(STATEMENT_PROOF, e)),
        },
        Ok(None) => report.problems.push(Problem::new(STATEMENT_PROOF, ProblemKind::Missing)),
        Err(e) => report.problems.push(problem(STATEMENT_PROOF, e)),
    }
    report
}

/// The statement as an entry: a release, signed by a trusted release key valid at its time.
fn check_statement(bytes: &[u8], trust: &Trust) -> Result<Entry, Problem> {
    let invalid = |e| Problem::new(STATEMENT, ProblemKind::Invalid(e));
    let (entry, note) = entry::open(bytes).map_err(invalid)?;
    let Some(note) = note.filter(|_| entry.kind() == kind::RELEASE) else {
        return Err(Problem::new(STATEMENT, ProblemKind::NotARelease { kind: entry.kind().to_owned() }));
    };
    let keys: Vec<_> = trust.keys(Role::Release).map(|k| k.key.clone()).collect();
    let signers = note.verify(&keys).map_err(invalid)?;
    if trust.valid_at(Role::Release, entry.time()).iter().all(|k| !signers.contains(&k)) {
        let key = signers.first().map(|k| k.label()).unwrap_or_default();
        return Err(Problem::new(STATEMENT, ProblemKind::KeyNotValid { key, time: entry.time() }));
    }
    Ok(entry)
}

fn check_results(bundle: &Path, statement: &Entry, report: &mut ReleaseReport) {
    let listed = statement.results();
    for (name, hex) in &listed {
        let at = format!("{RESULTS}/{name}");
        let expected = match Hash::from_hex(hex) {
            Ok(hash) => hash,
            Err(e) => {
                report.problems.push(Problem::new(at, ProblemKind::Invalid(e)));
                continue;
            }
        };
        match sha256_file(&bundle.join(RESULTS).join(name)) {
            Ok(found) if found == expected => report.results.push((name.to_string(), found)),
            Ok(found) => report.problems.push(Problem::new(at, ProblemKind::ResultChanged { expected, found })),
            Err(Error::Missing { .. }) => report.problems.push(Problem::new(at, ProblemKind::Missing)),
            Err(e) => report.problems.push(Problem::new(at, ProblemKind::Invalid(e))),
        }
    }
    let dir = bundle.join(RESULTS);
    let names = match std::fs::read_dir(&dir) {
        Ok(entries) => entries.map(|e| e.map(|e| e.file_name())).collect::<Result<Vec<_>, _>>(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    };
    match names {
        Ok(names) => {
            for name in names {
                let name = name.to_string_lossy();
                if !listed.iter().any(|(listed, _)| *listed == name) {
                    report.problems.push(Problem::new(format!("{RESULTS}/{name}"), ProblemKind::UnlistedResult));
                }
            }
        }
        Err(e) => report.problems.push(Problem::new(RESULTS, ProblemKind::Invalid(Error::io(dir, e)))),
    }
}

/// SHA-256 of a file, read in pieces.
fn sha256_file(path: &Path) -> Result<Hash, Error> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    if !file.metadata().map_err(|e| Error::io(path, e))?.is_file() {
        return Err(Error::malformed(Format::File, "not a regular file", "不是普通文件"));
    }
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 1 << 16];
    loop {
        let n = file.read(&mut buffer).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(Hash(hasher.finalize().into()))
}
