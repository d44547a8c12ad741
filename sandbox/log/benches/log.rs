//! `cargo bench -p sandbox-log --bench log [-- DIR]`: the log's two figures.
//!
//! 1. durable appends per second with group commit under 64 concurrent writers (entries made
//!    beforehand; each append answered only after its checkpoint is on disk);
//! 2. `sandbox-verify audit` over a log of one million entries (built once under DIR, default
//!    `~/.cache/bench-log-1m`, and reused).
//!
//! The entries are those of production runs, five per run, one of them a release signed by the
//! release key (see `runs`).
//!
//! Results go into ops/bench/RESULTS.md by hand, with the machine.

use std::path::{Path, PathBuf};
use std::time::Instant;

use sandbox_log::{Log, LogOptions};
use sandbox_verify::entry::{Entry, kind};
use sandbox_verify::merkle::Hash;
use sandbox_verify::note::SignerKey;
use sandbox_verify::time::Timestamp;
use sandbox_verify::trust::Trust;

const ORIGIN: &str = "log.sandbox.example/bench";

/// `count` entries as production runs log them, five per run: `run.started`, `run.finished`,
/// `audit.outcome`, `release` (signed by the release key) and `delivery`; the other four are
/// vouched for by the log's checkpoints and logged unsigned.
fn runs(release_key: &SignerKey, count: usize, tag: &str) -> Vec<Vec<u8>> {
    let now = Timestamp::now();
    let hash = |what: &str| Hash::sha256(what.as_bytes()).to_hex();
    let entry = |i: usize| {
        let run = format!("{tag}-{}", i / 5);
        let logged = |kind: &str, field: &str, value: &str| {
            Entry::builder(kind, now, "sandbox").field("run", &run).field(field, value).build()?.unsigned()
        };
        match i % 5 {
            0 => logged(kind::RUN_STARTED, "module", &hash("module")),
            1 => logged(kind::RUN_FINISHED, "record", &hash(&run)),
            2 => logged(kind::AUDIT_OUTCOME, "report", &hash(&run)),
            3 => Entry::builder(kind::RELEASE, now, "sandbox")
                .field("run", &run)
                .field("result.table.csv", &hash(&run))
                .field("module", &hash("module"))
                .field("manifest", &hash("manifest"))
                .field("datasets", "persons@8f2a,enterprises@91c0")
                .field("audit_report", &hash(&run))
                .field("policy", &hash("policy"))
                .field("recipient", "unit.transport-bureau")
                .field("agreement", "agreement-2026-017")
                .build()?
                .sign(&[release_key]),
            _ => logged(kind::DELIVERY, "recipient", "unit.transport-bureau"),
        }
    };
    std::thread::scope(|scope| {
        let chunks: Vec<_> = (0..2)
            .map(|part| scope.spawn(move || (part..count).step_by(2).map(|i| entry(i).unwrap()).collect::<Vec<_>>()))
            .collect();
        let mut chunks: Vec<_> = chunks.into_iter().map(|c| c.join().unwrap().into_iter()).collect();
        // Back in order: even, odd, even...
        (0..count).map(|i| chunks[i % 2].next().unwrap()).collect()
    })
}

/// Appends `entries` from `writers` threads; returns the rate.
fn append_all(log: &Log, entries: &[Vec<u8>], writers: usize) -> f64 {
    let started = Instant::now();
    std::thread::scope(|scope| {
        for chunk in entries.chunks(entries.len().div_ceil(writers)) {
            scope.spawn(move || {
                for entry in chunk {
                    log.append_blocking(entry.clone()).unwrap();
                }
            });
        }
    });
    entries.len() as f64 / started.elapsed().as_secs_f64()
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

fn main() {
    let key = SignerKey::from_seed(ORIGIN, [7; 32]).unwrap();
    let release_key = SignerKey::from_seed("release.sandbox.example", [8; 32]).unwrap();
    let trust = Trust::parse(&format!(
        "log {} 2020-01-01T00:00:00Z -\nrelease {} 2020-01-01T00:00:00Z -\n",
        key.verifier(),
        release_key.verifier()
    ))
    .unwrap();
    let big = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/bench-log-1m"));

    // 1. Appends under 64 concurrent writers.
    let dir = tempfile::tempdir_in(big.parent().unwrap()).unwrap();
    let entries = runs(&release_key, 50_000, "append");
    let log = Log::open(dir.path(), LogOptions::new(key.clone())).unwrap();
    let rate = append_all(&log, &entries, 64);
    let commits = count_files(&dir.path().join("checkpoints"));
    println!(
        "appends: {} entries from 64 writers: {rate:.0} durable appends/s, {commits} commits ({:.1} entries per commit)",
        entries.len(),
        entries.len() as f64 / commits as f64
    );
    let rate1 = append_all(&log, &entries[..2_000], 1);
    println!("appends: one writer: {rate1:.0} durable appends/s (one commit each)");
    drop(log);

    // 2. Audit of one million entries.
    const MILLION: u64 = 1_000_000;
    let log = Log::open(&big, LogOptions::new(key.clone())).unwrap();
    if log.size() < MILLION {
        let missing = (MILLION - log.size()) as usize;
        eprintln!("building the 1M-entry log under {}: {missing} entries", big.display());
        for (n, part) in runs(&release_key, missing, &format!("big{}", log.size())).chunks(100_000).enumerate() {
            append_all(&log, part, 64);
            eprintln!("  {} / {missing}", (n + 1) * 100_000);
        }
    }
    let size = log.size();
    drop(log);
    let started = Instant::now();
    let report = sandbox_verify::audit::audit(&big, &trust);
    let elapsed = started.elapsed();
    assert!(report.verified(), "{:#?}", &report.problems[..report.problems.len().min(5)]);
    println!(
        "audit: {size} entries, {} checkpoints, {} tiles verified in {:.1} s ({:.0} entries/s)",
        report.checkpoints,
        report.tiles,
        elapsed.as_secs_f64(),
        size as f64 / elapsed.as_secs_f64()
    );
}
