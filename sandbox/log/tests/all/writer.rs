use std::sync::Arc;

use sandbox_log::{Log, LogError, LogOptions};
use sandbox_verify::checkpoint;
use sandbox_verify::merkle::{self, Hash};
use sandbox_verify::tiles::{TILE_WIDTH, Tile};

use crate::{assert_verifies, entry, files_under, log_key, open, temp};

#[test]
fn concurrent_appends_share_commits_and_the_log_verifies() {
    let dir = temp();
    let log = Arc::new(open(dir.path()));
    assert_eq!(log.size(), 1, "a new log registers its key first");
    // 600 entries cross two full level-0 tiles; 8 writers make commits take several each.
    let appended: Vec<(u64, Vec<u8>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|w| {
                let log = log.clone();
                scope.spawn(move || {
                    (0..75)
                        .map(|i| {
                            let bytes = entry(&format!("w{w}-{i}"));
                            let appended = log.append_blocking(bytes.clone()).unwrap();
                            // The acknowledgement's checkpoint is signed and covers the entry.
                            let (signed, _) =
                                checkpoint::open(&appended.checkpoint, &[log_key().verifier().clone()]).unwrap();
                            assert!(appended.index < signed.size());
                            (appended.index, bytes)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(log.size(), 601);
    let checkpoints = files_under(&dir.path().join("checkpoints")).len();
    assert!(checkpoints < 601, "group commit: {checkpoints} checkpoints for 601 entries");
    for (index, bytes) in &appended {
        assert_eq!(&log.entry(*index).unwrap(), bytes);
        let proof = log.tlog_proof(*index).unwrap();
        proof.verify(bytes, &[log_key().verifier().clone()]).unwrap();
    }
    // `scan` gives every entry once, in order, across batches and bundles; past the end, an error.
    let scanned: Vec<(u64, Vec<u8>)> = log.scan(3..601, 7).map(Result::unwrap).collect();
    assert_eq!(scanned.iter().map(|(i, _)| *i).collect::<Vec<_>>(), (3..601).collect::<Vec<_>>());
    for (index, bytes) in &scanned {
        assert_eq!(&log.entry(*index).unwrap(), bytes);
    }
    assert!(log.scan(590..602, 7).any(|item| item.is_err()));
    // Consistency from an old checkpoint to the latest.
    let (old, _) = checkpoint::open(
        &std::fs::read(dir.path().join("checkpoints/00000000000000000001")).unwrap(),
        &[log_key().verifier().clone()],
    )
    .unwrap();
    let (new, _) = checkpoint::open(&log.checkpoint(), &[log_key().verifier().clone()]).unwrap();
    let proof = log.consistency_proof(1, 601).unwrap();
    merkle::verify_consistency(1, 601, old.root(), new.root(), &proof).unwrap();
    let report = assert_verifies(dir.path());
    assert_eq!(report.entries, 601);
    drop(log);

    // Reopened, it continues where it stopped.
    let log = open(dir.path());
    assert_eq!(log.size(), 601);
    assert_eq!(log.append_blocking(entry("after")).unwrap().index, 601);
    drop(log);
    assert_verifies(dir.path());
}

#[test]
fn bad_entries_are_refused_and_change_nothing() {
    let dir = temp();
    let log = open(dir.path());
    let before = log.checkpoint();
    let not_an_entry = b"hello\n\n\xe2\x80\x94 x abc\n".to_vec();
    let mut truncated = entry("t");
    truncated.truncate(truncated.len() - 10);
    // An entry the log vouches for, signed all the same: one entry, one encoding.
    let mut signed = sandbox_verify::note::Note::new(std::str::from_utf8(&entry("s")).unwrap()).unwrap();
    signed.sign(&log_key());
    for bad in [Vec::new(), not_an_entry, truncated, signed.to_bytes()] {
        assert!(matches!(log.append_blocking(bad), Err(LogError::Entry(_))));
    }
    // An oversized entry cannot even be made: make one by hand.
    let mut huge = entry("h");
    huge.extend(std::iter::repeat_n(b'x', 17 * 1024));
    let error = log.append_blocking(huge).unwrap_err();
    assert!(error.to_string().contains("16384"), "{error}");
    assert_eq!(log.checkpoint(), before);
    assert_eq!(log.size(), 1);
    // A good entry after them still lands.
    assert_eq!(log.append_blocking(entry("ok")).unwrap().index, 1);
}

#[test]
fn one_writer_at_a_time() {
    let dir = temp();
    let _log = open(dir.path());
    let error = Log::open(dir.path(), LogOptions::new(log_key())).unwrap_err();
    assert!(matches!(error, LogError::Locked { .. }), "{error}");
}

#[test]
fn a_torn_tail_is_set_aside_and_the_log_goes_on() {
    let dir = temp();
    let log = open(dir.path());
    for i in 0..299 {
        log.append_blocking(entry(&format!("a{i}"))).unwrap();
    }
    assert_eq!(log.size(), 300);
    let durable = std::fs::read(dir.path().join("checkpoint")).unwrap();
    for i in 0..20 {
        log.append_blocking(entry(&format!("lost{i}"))).unwrap();
    }
    drop(log);
    // As if the writer died after writing the tiles of size 320 but before its checkpoint.
    std::fs::write(dir.path().join("checkpoint"), &durable).unwrap();
    std::fs::write(dir.path().join("tile/0/001.p/70.tmp"), b"half").unwrap();
    let tail: Vec<_> = ["tile/0/001.p/64", "tile/entries/001.p/64", "checkpoints/00000000000000000320"]
        .iter()
        .map(|p| (p.to_string(), std::fs::read(dir.path().join(p)).unwrap()))
        .collect();

    let log = open(dir.path());
    assert_eq!(log.size(), 300);
    let torn = files_under(&dir.path().join("torn"));
    for (path, bytes) in &tail {
        assert!(!dir.path().join(path).exists(), "{path} was left in the log");
        let kept = torn.iter().find(|p| p.ends_with(path)).unwrap_or_else(|| panic!("{path} not kept: {torn:?}"));
        assert_eq!(&std::fs::read(kept).unwrap(), bytes, "torn bytes are kept as they were");
    }
    // New entries take the torn ones' places, and the log verifies.
    for i in 0..20 {
        log.append_blocking(entry(&format!("b{i}"))).unwrap();
    }
    assert!(log.entry(300).unwrap().windows(2).any(|w| w == b"b0"));
    // A range across a bundle boundary reads what single reads do.
    let range = log.entries(250..320).unwrap();
    assert_eq!(range.len(), 70);
    for (i, bytes) in (250..320).zip(&range) {
        assert_eq!(&log.entry(i).unwrap(), bytes, "entry {i}");
    }
    assert!(matches!(log.entries(300..321), Err(LogError::NoSuchEntry { index: 320, size: 320 })));
    drop(log);
    assert_verifies(dir.path());
}

#[test]
fn a_log_whose_storage_disagrees_with_its_checkpoint_refuses_to_open() {
    let dir = temp();
    let log = open(dir.path());
    for i in 0..40 {
        log.append_blocking(entry(&format!("e{i}"))).unwrap();
    }
    drop(log);
    let tile = Tile { level: 0, index: 0, width: 41 }.path();
    let pristine = std::fs::read(dir.path().join(&tile)).unwrap();

    // A changed hash in the rightmost tile.
    let mut changed = pristine.clone();
    changed[32 * 40] ^= 1;
    std::fs::write(dir.path().join(&tile), &changed).unwrap();
    let error = Log::open(dir.path(), LogOptions::new(log_key())).unwrap_err();
    assert!(matches!(error, LogError::RootMismatch { size: 41, .. }), "{error}");
    assert!(error.to_string().contains("拒绝打开"), "{error}");
    std::fs::write(dir.path().join(&tile), &pristine).unwrap();

    // A changed entry in the rightmost bundle.
    let bundle = Tile { level: 0, index: 0, width: 41 }.bundle_path();
    let original = std::fs::read(dir.path().join(&bundle)).unwrap();
    let mut changed = original.clone();
    let at = changed.len() - 5;
    changed[at] ^= 1;
    std::fs::write(dir.path().join(&bundle), &changed).unwrap();
    let error = Log::open(dir.path(), LogOptions::new(log_key())).unwrap_err();
    assert!(matches!(error, LogError::BundleMismatch { .. }), "{error}");
    std::fs::write(dir.path().join(&bundle), &original).unwrap();

    // A checkpoint signed by another key, or changed.
    let checkpoint = std::fs::read(dir.path().join("checkpoint")).unwrap();
    let other = LogOptions::new(crate::key(crate::ORIGIN, 9));
    assert!(matches!(Log::open(dir.path(), other), Err(LogError::Format { .. })));
    let mut changed = checkpoint.clone();
    changed[ORIGIN_LEN + 1] ^= 1;
    std::fs::write(dir.path().join("checkpoint"), &changed).unwrap();
    assert!(matches!(Log::open(dir.path(), LogOptions::new(log_key())), Err(LogError::Format { .. })));

    // No checkpoint at all, over existing tiles.
    std::fs::remove_file(dir.path().join("checkpoint")).unwrap();
    assert!(matches!(Log::open(dir.path(), LogOptions::new(log_key())), Err(LogError::NoCheckpoint { .. })));

    // Restored, it opens: refusing changed nothing.
    std::fs::write(dir.path().join("checkpoint"), &checkpoint).unwrap();
    let log = open(dir.path());
    assert_eq!(log.size(), 41);
    drop(log);
    assert_verifies(dir.path());
}

const ORIGIN_LEN: usize = crate::ORIGIN.len();

#[test]
fn entries_and_proofs_out_of_range_are_errors() {
    let dir = temp();
    let log = open(dir.path());
    assert!(matches!(log.entry(1), Err(LogError::NoSuchEntry { index: 1, size: 1 })));
    assert!(matches!(log.tlog_proof(5), Err(LogError::NoSuchEntry { .. })));
    assert!(log.consistency_proof(1, 2).is_err());
    let width = u64::from(TILE_WIDTH);
    for i in 0..width {
        log.append_blocking(entry(&format!("f{i}"))).unwrap();
    }
    // Entries of a full bundle are read from it.
    assert!(log.entry(width - 1).is_ok());
    assert_eq!(merkle::leaf_hash(&log.entry(width).unwrap()), leaf_at(dir.path(), width));
}

fn leaf_at(dir: &std::path::Path, index: u64) -> Hash {
    let data = std::fs::read(dir.join("tile/0/001.p/1")).unwrap();
    assert_eq!(index, 256);
    Hash::from_slice(&data[..32]).unwrap()
}

/// A stop between a release statement's append and its bundle folder leaves the files in the
/// partial folder; `recover_bundle` finishes exactly that bundle, and nothing else.
#[test]
fn a_bundle_cut_off_after_its_append_is_completed() {
    use sandbox_log::release::{Statement, partial_path, recover_bundle, write_bundle};

    let dir = temp();
    let log = open(&dir.path().join("log"));
    let bundle = dir.path().join("rel-000001");
    let partial = partial_path(&bundle);
    // A partial folder from a stop before any append is replaced, not reused.
    std::fs::create_dir_all(partial.join("results")).unwrap();
    std::fs::write(partial.join("results/left-over.csv"), b"x").unwrap();
    let sha = "ab".repeat(32);
    let statement = Statement {
        actor: "sandbox",
        time: sandbox_verify::time::Timestamp::now(),
        fields: &[
            ("module", &sha),
            ("manifest", &sha),
            ("datasets", "persons@1"),
            ("audit_report", &sha),
            ("policy", &sha),
            ("recipient", "unit"),
            ("agreement", "agr"),
        ],
        results: &[("population.csv", b"district,count\nA,120\n")],
    };
    let index = write_bundle(&log, &crate::release_key(), &statement, &bundle).unwrap();
    assert!(!partial.exists() && !bundle.join("results/left-over.csv").exists());
    let trust = sandbox_verify::trust::Trust::parse(&crate::trust_text(&log_key())).unwrap();
    assert!(sandbox_verify::release::verify(&bundle, &trust).verified());
    assert!(!recover_bundle(&log, index, &bundle).unwrap(), "a whole bundle needs nothing");

    // A second bundle at the same place is refused before anything is appended.
    let size = log.size();
    assert!(write_bundle(&log, &crate::release_key(), &statement, &bundle).is_err());
    assert_eq!(log.size(), size);

    // The state a stop after the append leaves: results and statement, no proof, no folder.
    std::fs::rename(&bundle, &partial).unwrap();
    std::fs::remove_file(partial.join("statement.tlog-proof")).unwrap();
    assert!(recover_bundle(&log, index, &bundle).unwrap());
    assert!(!partial.exists());
    let report = sandbox_verify::release::verify(&bundle, &trust);
    assert!(report.verified(), "{:#?}", report.problems);

    // A partial folder with another statement is not passed off as this release.
    std::fs::rename(&bundle, &partial).unwrap();
    let err = recover_bundle(&log, index - 1, &bundle).unwrap_err();
    assert!(err.to_string().contains("not the one logged"), "{err}");
    assert!(partial.exists() && !bundle.exists(), "nothing moved");
    std::fs::remove_dir_all(&partial).unwrap();
    assert!(recover_bundle(&log, index, &bundle).is_err(), "a release whose files are gone is an error");
}
