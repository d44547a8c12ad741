//! Integration tests of the log writer: what it writes verifies with `sandbox-verify`'s audit and
//! with an independent Python check; bad entries change nothing; a torn tail is set aside; a
//! tampered log refuses to open; a writer killed with SIGKILL at many points loses nothing it
//! acknowledged; keys are private files and rotate through the log.

mod crash;
mod keys;
mod python;
mod writer;

use std::path::{Path, PathBuf};

use sandbox_log::{Log, LogOptions};
use sandbox_verify::audit::{self, AuditReport};
use sandbox_verify::entry::{Entry, kind};
use sandbox_verify::note::SignerKey;
use sandbox_verify::time::Timestamp;
use sandbox_verify::trust::Trust;

pub(crate) const ORIGIN: &str = "log.sandbox.example/baotou";

/// A deterministic key: tests must not depend on randomness.
pub(crate) fn key(name: &str, seed: u8) -> SignerKey {
    SignerKey::from_seed(name, [seed; 32]).unwrap()
}

pub(crate) fn log_key() -> SignerKey {
    key(ORIGIN, 1)
}

pub(crate) fn release_key() -> SignerKey {
    key("release.sandbox.example", 2)
}

pub(crate) fn open(dir: &Path) -> Log {
    Log::open(dir, LogOptions::new(log_key())).unwrap()
}

/// An entry the log key vouches for.
pub(crate) fn entry(run: &str) -> Vec<u8> {
    Entry::builder(kind::RUN_STARTED, Timestamp::now(), "runner").field("run", run).build().unwrap().unsigned().unwrap()
}

/// The trust file an evaluator holds for the test log.
pub(crate) fn trust_text(log: &SignerKey) -> String {
    format!(
        "log {} 2020-01-01T00:00:00Z -\nrelease {} 2020-01-01T00:00:00Z -\n",
        log.verifier(),
        release_key().verifier()
    )
}

/// `sandbox-verify audit` of the log in `dir`, as a library call.
pub(crate) fn audit_with(dir: &Path, trust: &str) -> AuditReport {
    audit::audit(dir, &Trust::parse(trust).unwrap())
}

pub(crate) fn assert_verifies(dir: &Path) -> AuditReport {
    let report = audit_with(dir, &trust_text(&log_key()));
    assert!(report.verified(), "{:#?}", report.problems);
    report
}

pub(crate) fn temp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

pub(crate) fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(at) = stack.pop() {
        for entry in std::fs::read_dir(&at).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() { stack.push(path) } else { out.push(path) }
        }
    }
    out.sort();
    out
}
