use std::os::unix::fs::PermissionsExt;

use sandbox_log::keys::{self, public_path};
use sandbox_log::{Log, LogError, LogOptions};
use sandbox_verify::note::VerifierKey;

use crate::{ORIGIN, audit_with, entry, log_key, temp, trust_text};

#[test]
fn key_files_are_private_and_never_overwritten() {
    let dir = temp();
    let path = dir.path().join("log.key");
    let key = keys::generate(ORIGIN).unwrap();
    keys::write_key_file(&path, &key).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(keys::read_key_file(&path).unwrap().verifier(), key.verifier());
    let public = std::fs::read_to_string(public_path(&path)).unwrap();
    assert_eq!(VerifierKey::parse(public.trim_end()).unwrap(), *key.verifier());

    // Two keys are never the same, and an existing file is not replaced.
    let other = keys::generate(ORIGIN).unwrap();
    assert_ne!(other.verifier(), key.verifier());
    assert!(keys::write_key_file(&path, &other).is_err());
    assert_eq!(keys::read_key_file(&path).unwrap().verifier(), key.verifier());

    // A key others can read is refused.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let error = keys::read_key_file(&path).unwrap_err();
    assert!(error.to_string().contains("chmod 600"), "{error}");
    // So is a file that is not a key.
    let junk = dir.path().join("junk.key");
    std::fs::write(&junk, "PRIVATE+KEY+nothing\n").unwrap();
    std::fs::set_permissions(&junk, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(matches!(keys::read_key_file(&junk), Err(LogError::KeyFile { .. })));
}

#[test]
fn the_log_key_rotates_through_the_log_and_the_trust_file() {
    let dir = temp();
    let log_dir = dir.path().join("log");
    let old = log_key();
    let new = crate::key(ORIGIN, 7);
    let trust = dir.path().join("trust");
    std::fs::write(&trust, format!("# the evaluator's keys\n{}", trust_text(&old))).unwrap();
    {
        let log = Log::open(&log_dir, LogOptions::new(old.clone())).unwrap();
        log.append_blocking(entry("before")).unwrap();
    }
    let rotated = keys::rotate_log_key(&log_dir, &old, &new, &[], Some(&trust)).unwrap();
    assert_eq!(rotated.index, 2);

    // The trust file closes the old key at the rotation and opens the new one there.
    let text = std::fs::read_to_string(&trust).unwrap();
    assert!(text.starts_with("# the evaluator's keys\n"), "{text}");
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("log ")).collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(!lines[0].ends_with(" -") && lines[1].ends_with(" -"), "{text}");
    assert!(lines[1].contains(&new.verifier().to_string()));

    // The new key alone cannot open a log the old key signed last; with it as previous key it can.
    assert!(Log::open(&log_dir, LogOptions::new(new.clone())).is_err());
    let options = LogOptions { previous_keys: vec![old.verifier().clone()], ..LogOptions::new(new.clone()) };
    let log = Log::open(&log_dir, options).unwrap();
    log.append_blocking(
        sandbox_verify::entry::Entry::builder("run.started", sandbox_verify::time::Timestamp::now(), "runner")
            .field("run", "after")
            .build()
            .unwrap()
            .unsigned()
            .unwrap(),
    )
    .unwrap();
    drop(log);
    let report = audit_with(&log_dir, &text);
    assert!(report.verified(), "{:#?}", report.problems);
    // Verified with the old trust file, the new key's checkpoint is not trusted.
    assert!(!audit_with(&log_dir, &trust_text(&old)).verified());
}

#[test]
fn rotation_refuses_a_key_of_another_log_and_a_trust_file_without_the_old_key() {
    let dir = temp();
    let log_dir = dir.path().join("log");
    drop(Log::open(&log_dir, LogOptions::new(log_key())).unwrap());
    let stranger = crate::key("another.log", 8);
    assert!(matches!(keys::rotate_log_key(&log_dir, &log_key(), &stranger, &[], None), Err(LogError::Origin { .. })));
    let trust = dir.path().join("trust");
    std::fs::write(&trust, trust_text(&crate::key(ORIGIN, 5))).unwrap();
    let error = keys::rotate_log_key(&log_dir, &log_key(), &crate::key(ORIGIN, 7), &[], Some(&trust)).unwrap_err();
    assert!(error.to_string().contains("no open-ended key"), "{error}");
    // Nothing was appended.
    assert_eq!(Log::open(&log_dir, LogOptions::new(log_key())).unwrap().size(), 1);
}
