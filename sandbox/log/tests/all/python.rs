//! The independent check: a log and a release bundle written here verify with a Python script
//! that uses only hashlib and the `cryptography` package (`tests/python/check_log.py`), and the
//! script catches a changed result, statement, proof and entry.

use std::path::Path;
use std::process::Command;

use sandbox_log::release::{Statement, write_bundle};
use sandbox_verify::time::Timestamp;

use crate::{entry, log_key, open, release_key, temp};

fn python_check(log: Option<&Path>, bundle: Option<&Path>) -> (bool, String) {
    let script = Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .join("tests/python/check_log.py");
    let mut command = Command::new("python3");
    command
        .arg(script)
        .args(["--log-key", &log_key().verifier().to_string()])
        .args(["--release-key", &release_key().verifier().to_string()]);
    if let Some(log) = log {
        command.arg("--log").arg(log);
    }
    if let Some(bundle) = bundle {
        command.arg("--bundle").arg(bundle);
    }
    let output = command.output().expect("python3 runs (see README: set-up)");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(!text.contains("ModuleNotFoundError"), "the Python packages are missing: run ops/setup\n{text}");
    (output.status.success(), text)
}

#[test]
fn a_release_and_its_log_verify_with_an_independent_python_check() {
    let dir = temp();
    let log_dir = dir.path().join("log");
    let bundle = dir.path().join("bundle");
    let log = open(&log_dir);
    // Enough entries for full bundles and tiles of two levels' worth of indexes.
    for i in 0..300 {
        log.append_blocking(entry(&format!("before-{i}"))).unwrap();
    }
    let statement = Statement {
        actor: "sandbox",
        time: Timestamp::now(),
        fields: &[
            ("module", &"ab".repeat(32)),
            ("manifest", &"cd".repeat(32)),
            ("datasets", "persons@2026-06"),
            ("audit_report", &"ef".repeat(32)),
            ("policy", &"01".repeat(32)),
            ("recipient", "unit.civil-affairs"),
            ("agreement", "BT-2026-007"),
        ],
        results: &[("population.csv", b"district,count\nA,120\n"), ("report.json", b"{}")],
    };
    let index = write_bundle(&log, &release_key(), &statement, &bundle).unwrap();
    assert_eq!(index, 301);
    log.append_blocking(entry("after")).unwrap();
    drop(log);

    let (ok, text) = python_check(Some(&log_dir), Some(&bundle));
    assert!(ok, "{text}");
    assert!(text.contains("log: 303 entries") && text.contains("statement at index 301"), "{text}");
    // sandbox-verify agrees.
    let trust = sandbox_verify::trust::Trust::parse(&crate::trust_text(&log_key())).unwrap();
    let report = sandbox_verify::release::verify(&bundle, &trust);
    assert!(report.verified(), "{:#?}", report.problems);

    let flip = |path: &Path, at: usize| {
        let mut bytes = std::fs::read(path).unwrap();
        let at = at.min(bytes.len() - 1);
        bytes[at] ^= 1;
        std::fs::write(path, bytes).unwrap();
    };
    for (path, at, says) in [
        (bundle.join("results/population.csv"), 16, "SHA-256"),
        (bundle.join("statement"), 40, "signature"),
        (bundle.join("statement.tlog-proof"), 40, ""),
        (log_dir.join("tile/entries/000"), 100, "another root"),
    ] {
        let original = std::fs::read(&path).unwrap();
        flip(&path, at);
        let (ok, text) = python_check(Some(&log_dir), Some(&bundle));
        assert!(!ok && text.contains("NOT VERIFIED") && text.contains(says), "{}: {text}", path.display());
        std::fs::write(&path, original).unwrap();
    }
    assert!(python_check(Some(&log_dir), Some(&bundle)).0);
}
