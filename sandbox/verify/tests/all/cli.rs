//! The `sandbox-verify` binary on logs and releases built with the library: exit status 0, 1 or
//! 2, and a specific message for each kind of tampering.

use std::path::Path;
use std::process::Command;

use sandbox_verify::Hash;
use sandbox_verify::audit::{LATEST, history_path};
use sandbox_verify::entry::{Entry, kind};
use sandbox_verify::tiles::{decode_bundle, encode_bundle};

use crate::{TestLog, key, time};

struct Run {
    status: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn says(&self, text: &str) -> &Run {
        assert!(
            self.stdout.contains(text) || self.stderr.contains(text),
            "no {text:?} in:\n{}{}",
            self.stdout,
            self.stderr
        );
        self
    }

    fn status(&self, status: i32) -> &Run {
        assert_eq!(self.status, status, "{}{}", self.stdout, self.stderr);
        self
    }
}

fn run<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_sandbox-verify")).args(args).output().unwrap();
    Run {
        status: output.status.code().unwrap(),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

const TABLE: &[u8] = b"district,people\n\xe6\x98\x86\xe9\x83\xbd\xe4\xbb\x91\xe5\x8c\xba,12345\n";

/// A log with checkpoints at 5, 12, 13 (after a release) and 20 entries.
fn log() -> TestLog {
    let mut log = TestLog::new();
    log.append_story();
    log.checkpoint();
    log.fill(12);
    log.checkpoint();
    log.release(&[("table.csv", TABLE)]);
    log.fill(20);
    log.checkpoint();
    log
}

fn audit(log: &TestLog) -> Run {
    run(&["audit".as_ref(), log.path().as_os_str(), "--trust".as_ref(), log.write_trust().as_os_str()])
}

fn flip(log: &TestLog, path: &str, at: usize) {
    let mut bytes = log.read(path);
    bytes[at] ^= 1;
    log.write(path, &bytes);
}

/// The byte offset of entry `index` in a bundle.
fn entry_offset(bundle: &[u8], index: usize) -> usize {
    decode_bundle(bundle).unwrap()[index].as_ptr() as usize - bundle.as_ptr() as usize
}

#[test]
fn a_faithful_archive_is_verified() {
    let log = log();
    audit(&log).status(0).says("verified / 已验证").says("20 entries");
    let trust = log.write_trust();
    let json =
        run(&["audit".as_ref(), log.path().as_os_str(), "--trust".as_ref(), trust.as_os_str(), "--json".as_ref()]);
    let value: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(value["verified"], true);
    assert_eq!(value["log"]["size"], 20);
    assert_eq!(value["log"]["checkpoints"], 5, "checkpoint and checkpoints/*");
    assert_eq!(value["problems"].as_array().unwrap().len(), 0);
}

#[test]
fn a_changed_tile_is_found() {
    let log = log();
    flip(&log, "tile/0/000.p/20", 7 * 32 + 5);
    audit(&log)
        .status(1)
        .says("NOT verified / 未通过验证 (1 problem(s)")
        .says("tile/0/000.p/20: hash 7 (level 0, index 7) differs from the tree rebuilt from the entries: the tile was changed");
}

#[test]
fn a_changed_entry_is_found() {
    let log = log();
    let bundle = log.read("tile/entries/000.p/20");
    flip(&log, "tile/entries/000.p/20", entry_offset(&bundle, 9) + 40);
    audit(&log)
        .status(1)
        .says("entry 9 (tile/entries/000.p/20): entry 9 is not the logged entry")
        .says("checkpoints/00000000000000000012: the entries do not hash to this checkpoint's root at size 12; the stored tiles do")
        .says("第 9 个条目不是日志记录的条目");
}

#[test]
fn a_changed_entry_signature_is_found() {
    let log = log();
    // Entry 12 is the release, signed by the release key; its last bytes are the signature's.
    let bundle = log.read("tile/entries/000.p/20");
    let end = entry_offset(&bundle, 12) + decode_bundle(&bundle).unwrap()[12].len();
    flip(&log, "tile/entries/000.p/20", end - 5);
    audit(&log)
        .status(1)
        .says("entry 12 (tile/entries/000.p/20): entry 12 is not the logged entry")
        .says("entry 12 (tile/entries/000.p/20): the signature by key release.sandbox.example+");
}

#[test]
fn reordered_entries_are_found() {
    let log = log();
    let bundle = log.read("tile/entries/000.p/20");
    let mut entries: Vec<&[u8]> = decode_bundle(&bundle).unwrap();
    entries.swap(7, 8);
    log.write("tile/entries/000.p/20", &encode_bundle(entries).unwrap());
    audit(&log)
        .status(1)
        .says("entry 7 (tile/entries/000.p/20): entry 7 is the entry logged at 8: entries were reordered")
        .says("entry 8 (tile/entries/000.p/20): entry 8 is the entry logged at 7: entries were reordered");
}

#[test]
fn a_changed_checkpoint_and_a_changed_signature_are_found() {
    let log = log();
    let path = history_path(12);
    let at = String::from_utf8(log.read(&path)).unwrap().find("\n12\n").unwrap() + 2;
    flip(&log, &path, at);
    // In the latest checkpoint, change one character in the middle of the signature.
    let mut latest = log.read(LATEST);
    let at = latest.len() - 20;
    latest[at] = if latest[at] == b'A' { b'B' } else { b'A' };
    log.write(LATEST, &latest);
    audit(&log)
        .status(1)
        .says("checkpoints/00000000000000000012: the signature by key log.sandbox.example/baotou+")
        .says("checkpoint: the signature by key log.sandbox.example/baotou+")
        .says("签名验证失败");
}

#[test]
fn truncation_is_found() {
    // The last entry cut off cleanly.
    let log = log();
    let bundle = log.read("tile/entries/000.p/20");
    log.write("tile/entries/000.p/20", &bundle[..entry_offset(&bundle, 19) - 2]);
    audit(&log)
        .status(1)
        .says("tile/entries/000.p/20: holds 19 entries, the checkpoints call for 20 (truncated)")
        .says("cannot recompute the root at size 20: only the first 19 entries are readable");
    // Cut in the middle of an entry.
    log.write("tile/entries/000.p/20", &bundle[..bundle.len() - 10]);
    audit(&log).status(1).says("tile/entries/000.p/20: malformed entry bundle: truncated: entry 19 declares");
    // A tile cut short, and one gone.
    let log = self::log();
    let tile = log.read("tile/0/000.p/20");
    log.write("tile/0/000.p/20", &tile[..tile.len() - 20]);
    audit(&log).status(1).says("tile/0/000.p/20 is 620 bytes, not 640 (20 hashes)");
    std::fs::remove_file(log.path().join("tile/0/000.p/20")).unwrap();
    audit(&log).status(1).says("tile/0/000.p/20: missing");
}

#[test]
fn a_rollback_is_found() {
    let log = log();
    log.write(LATEST, &log.read(&history_path(12)));
    audit(&log)
        .status(1)
        .says("checkpoint: the latest checkpoint has size 12, but the log once signed size 20: rolled back");
}

#[test]
fn forks_are_found_with_their_evidence() {
    // Same size, another root, validly signed.
    let log = log();
    let bogus = log.sign_checkpoint(20, Hash::sha256(b"another history"));
    log.write(LATEST, &bogus);
    audit(&log)
        .status(1)
        .says("checkpoint and checkpoints/00000000000000000020: FORK")
        .says("fork evidence / 分叉证据")
        .says(String::from_utf8(bogus).unwrap().lines().nth(2).unwrap());
    // An older size whose root the later checkpoint's tree does not have.
    let log = self::log();
    log.write(&history_path(12), &log.sign_checkpoint(12, Hash::sha256(b"another history")));
    let trust = log.write_trust();
    audit(&log)
        .status(1)
        .says("checkpoints/00000000000000000012 and checkpoints/00000000000000000020: FORK: the log signed two checkpoints that cannot both hold (sizes 12 and 20)")
        .says("consistency proof / 一致性证明");
    let json =
        run(&["audit".as_ref(), log.path().as_os_str(), "--trust".as_ref(), trust.as_os_str(), "--json".as_ref()]);
    let value: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let fork = &value["problems"].as_array().unwrap().iter().find(|p| p["fork"].is_object()).unwrap()["fork"];
    // The evidence stands on its own: the real root at 12 is proved to lead to the root at 20.
    let proof: Vec<Hash> =
        fork["proof"].as_array().unwrap().iter().map(|h| Hash::from_base64(h.as_str().unwrap()).unwrap()).collect();
    let root_in_second = Hash::from_base64(fork["root_in_second"].as_str().unwrap()).unwrap();
    sandbox_verify::merkle::verify_consistency(12, 20, &root_in_second, &log.tree.root(), &proof).unwrap();
    assert!(fork["first"].as_str().unwrap().contains("\n12\n"));
}

#[test]
fn entries_need_their_signer() {
    let mut log = TestLog::new();
    log.append_story();
    // A submission by a principal the log never registered, and one by a reviewer.
    let rogue = key("operator.rogue", 9);
    let module = Hash::sha256(b"m").to_hex();
    for (signer, actor) in [(&rogue, "operator.rogue"), (&log.reviewer.clone(), "reviewer.bureau")] {
        let entry = Entry::builder(kind::MODULE_SUBMITTED, time("2026-05-04T00:00:00Z"), actor)
            .field("module", &module)
            .field("manifest", &module)
            .build()
            .unwrap();
        log.append(entry.sign(&[signer]).unwrap());
    }
    // A release signed with the log key instead of the release key.
    let release = Entry::builder(kind::RELEASE, time("2026-05-04T00:00:00Z"), "sandbox").field("result.a", &module);
    let release = ["module", "manifest", "datasets", "audit_report", "policy", "recipient", "agreement"]
        .iter()
        .fold(release, |b, f| b.field(f, &module))
        .build()
        .unwrap();
    log.append(release.sign(&[&log.log_key]).unwrap());
    log.checkpoint();
    audit(&log)
        .status(1)
        .says("entry 5 (tile/entries/000.p/8): actor \"operator.rogue\" is not a registered principal")
        .says("entry 6 (tile/entries/000.p/8): actor \"reviewer.bureau\" is registered as \"reviewer\"; this kind of entry needs the role \"operator\"")
        .says("entry 7 (tile/entries/000.p/8): no valid signature by a trusted key (signed by: log.sandbox.example/baotou+");
}

#[test]
fn principals_are_learned_from_the_log() {
    let mut log = TestLog::new();
    log.append_story();
    let operator = log.operator.verifier().clone();
    let (name, old_key) = (operator.name().to_owned(), operator.to_string());
    // Registered twice: refused. Rotated: the new key signs from then on, the old one no more.
    log.append_logged(kind::PRINCIPAL_REGISTERED, &[("principal", &name), ("role", "operator"), ("key", &old_key)]);
    let new_key = key(&name, 30);
    log.append_logged(kind::KEY_ROTATED, &[("principal", &name), ("key", &new_key.verifier().to_string())]);
    let module = Hash::sha256(b"m2").to_hex();
    let submission = Entry::builder(kind::MODULE_SUBMITTED, time("2026-05-05T00:00:00Z"), &name)
        .field("module", &module)
        .field("manifest", &module)
        .build()
        .unwrap();
    log.append(submission.sign(&[&new_key]).unwrap());
    log.append(submission.sign(&[&log.operator.clone()]).unwrap());
    log.append_logged(
        kind::KEY_ROTATED,
        &[("principal", "nobody"), ("key", &key("nobody", 31).verifier().to_string())],
    );
    log.checkpoint();
    let run = audit(&log);
    run.status(1)
        .says("entry 5 (tile/entries/000.p/10): principal \"operator.acme\" is registered twice (use key.rotated)")
        .says("entry 8 (tile/entries/000.p/10): no valid signature by a trusted key (signed by: operator.acme+")
        .says("entry 9 (tile/entries/000.p/10): actor \"nobody\" is not a registered principal")
        .says("NOT verified / 未通过验证 (3 problem(s)");
}

/// An evaluator sees any entry by a principal the bureau had disabled: the server refuses a
/// disabled principal's token, so such an entry means the log's writer let one through.
#[test]
fn a_disabled_principal_acts_no_more() {
    let mut log = TestLog::new();
    log.append_story();
    let name = log.operator.verifier().name().to_owned();
    let module = Hash::sha256(b"m3").to_hex();
    let submission = |at: &str| {
        Entry::builder(kind::MODULE_SUBMITTED, time(at), &name)
            .field("module", &module)
            .field("manifest", &module)
            .build()
            .unwrap()
    };
    log.append_logged(kind::PRINCIPAL_DISABLED, &[("principal", &name), ("reason", "licence misuse")]);
    log.append(submission("2026-05-05T00:00:00Z").sign(&[&log.operator.clone()]).unwrap());
    let queued = Entry::builder(kind::RUN_QUEUED, time("2026-05-05T00:00:00Z"), &name).field("run", "r-9");
    log.append(queued.build().unwrap().unsigned().unwrap());
    log.append_logged(kind::PRINCIPAL_ENABLED, &[("principal", &name)]);
    log.append(submission("2026-05-06T00:00:00Z").sign(&[&log.operator.clone()]).unwrap());
    log.append_logged(kind::PRINCIPAL_DISABLED, &[("principal", "nobody"), ("reason", "-")]);
    log.checkpoint();
    audit(&log)
        .status(1)
        .says("entry 6 (tile/entries/000.p/11): actor \"operator.acme\" acts while disabled")
        .says("entry 7 (tile/entries/000.p/11): actor \"operator.acme\" acts while disabled")
        .says("entry 10 (tile/entries/000.p/11): actor \"nobody\" is not a registered principal")
        .says("NOT verified / 未通过验证 (3 problem(s)");
}

#[test]
fn the_history_of_checkpoints_is_checked() {
    let log = log();
    // A checkpoint filed under another size, the latest missing from the history.
    log.write(&history_path(7), &log.read(&history_path(5)));
    std::fs::remove_file(log.path().join(history_path(20))).unwrap();
    audit(&log)
        .status(1)
        .says("checkpoints/00000000000000000007: stored as the checkpoint of size 7, but its size is 5")
        .says("checkpoint: the latest checkpoint (size 20) is missing from checkpoints/");
    // A checkpoint of another log whose key the evaluator also trusts.
    let log = self::log();
    let other = key("other.example/log", 40);
    let mut note = sandbox_verify::note::Note::new(&format!(
        "other.example/log\n0\n{}\n",
        sandbox_verify::merkle::empty_root().to_base64()
    ))
    .unwrap();
    note.sign(&other);
    log.write(&history_path(0), &note.to_bytes());
    let path = log.path().join("two-logs.txt");
    std::fs::write(&path, format!("{}log {} 2026-01-01T00:00:00Z -\n", log.trust(), other.verifier())).unwrap();
    run(&["audit".as_ref(), log.path().as_os_str(), "--trust".as_ref(), path.as_os_str()])
        .status(1)
        .says("checkpoints/00000000000000000000: checkpoint of log \"other.example/log\", not of \"log.sandbox.example/baotou\"");
    // A signed checkpoint that neither the entries nor the tiles support, and no later one.
    let log = self::log();
    let bogus = log.sign_checkpoint(20, Hash::sha256(b"nothing supports this"));
    log.write(LATEST, &bogus);
    log.write(&history_path(20), &bogus);
    audit(&log).status(1).says(
        "checkpoints/00000000000000000020: neither the entries nor the stored tiles hash to this checkpoint's root at size 20",
    );
}

#[test]
fn keys_outside_their_validity_are_found() {
    let log = log();
    // The log key retired before the entries were written.
    let trust = log.trust().replace("2026-01-01T00:00:00Z -", "2026-01-01T00:00:00Z 2026-04-30T00:00:00Z");
    let path = log.path().join("trust.txt");
    std::fs::write(&path, trust).unwrap();
    run(&["audit".as_ref(), log.path().as_os_str(), "--trust".as_ref(), path.as_os_str()])
        .status(1)
        .says("checkpoints/00000000000000000005: signed by key log.sandbox.example/baotou+")
        .says("which is not valid at 2026-05-01T08:00:00Z");
    // The release key retired before the release.
    let trust = log.trust().replace("2030-01-01T00:00:00Z", "2026-05-02T00:00:00Z");
    std::fs::write(&path, trust).unwrap();
    run(&["audit".as_ref(), log.path().as_os_str(), "--trust".as_ref(), path.as_os_str()])
        .status(1)
        .says("entry 12 (tile/entries/000.p/20): signed by key release.sandbox.example+")
        .says("which is not valid at 2026-05-03T10:00:00Z");
}

#[test]
fn unexpected_files_are_found() {
    let log = log();
    log.write("tile/0/999", &[0; 32]);
    log.write("tile/0/000.p/30", &[0; 960]);
    log.write("checkpoints/12", &log.read(&history_path(12)));
    audit(&log)
        .status(1)
        .says("tile/0/999: unexpected file")
        .says("tile/0/000.p/30: unexpected file")
        .says("checkpoints/12: unexpected file");
}

/// The largest case: more than one tile, and a tile of level 1.
#[test]
fn tiles_of_every_level_are_compared() {
    let mut log = TestLog::new();
    log.append_story();
    log.fill(300);
    log.checkpoint();
    flip(&log, "tile/0/000", 100 * 32);
    flip(&log, "tile/1/000.p/1", 3);
    let run = audit(&log);
    run.status(1)
        .says("NOT verified / 未通过验证 (2 problem(s)")
        .says("tile/0/000: hash 100 (level 0, index 100)")
        .says("tile/1/000.p/1: hash 0 (level 8, index 0)")
        .says("300 entries / 个条目, 3 tiles");
}

fn release_run(bundle: &Path, trust: &Path) -> Run {
    run(&["release".as_ref(), bundle.as_os_str(), "--trust".as_ref(), trust.as_os_str()])
}

#[test]
fn a_release_verifies_and_each_tampering_is_named() {
    let mut log = TestLog::new();
    log.append_story();
    let bundle = log.release(&[("table.csv", TABLE), ("notes.txt", b"n")]);
    let trust = log.write_trust();
    release_run(&bundle, &trust)
        .status(0)
        .says("verified / 已验证")
        .says(
            "release at 2026-05-03T10:00:00Z by sandbox, recipient unit.transport-bureau, agreement agreement-2026-017",
        )
        .says("logged as entry / 日志条目序号: 5")
        .says(&format!("results/table.csv sha256 {} ✓", Hash::sha256(TABLE)));
    let json = run(&["release".as_ref(), bundle.as_os_str(), "--trust".as_ref(), trust.as_os_str(), "--json".as_ref()]);
    let value: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(value["verified"], true);
    assert_eq!(value["checkpoint"]["size"], 6);
    assert_eq!(value["statement"]["actor"], "sandbox");
    assert_eq!(value["results"].as_array().unwrap().len(), 2);

    std::fs::write(bundle.join("results/table.csv"), b"district,people\nx,1\n").unwrap();
    std::fs::write(bundle.join("results/extra.csv"), b"x").unwrap();
    std::fs::remove_file(bundle.join("results/notes.txt")).unwrap();
    release_run(&bundle, &trust)
        .status(1)
        .says(&format!(
            "results/table.csv: SHA-256 is {}, the statement signs {}",
            Hash::sha256(b"district,people\nx,1\n"),
            Hash::sha256(TABLE)
        ))
        .says("results/extra.csv: the statement does not name this file")
        .says("results/notes.txt: missing")
        .says("文件被改动");

    let statement = std::fs::read(bundle.join("statement")).unwrap();
    let mut changed = statement.clone();
    let at = String::from_utf8(statement.clone()).unwrap().find("agreement-2026-017").unwrap();
    changed[at + 17] = b'8';
    std::fs::write(bundle.join("statement"), &changed).unwrap();
    release_run(&bundle, &trust)
        .status(1)
        .says("statement: the signature by key release.sandbox.example+")
        .says("statement.tlog-proof: inclusion proof invalid: the proof leads to another root than the one given");
}

#[test]
fn a_release_needs_trusted_keys() {
    let mut log = TestLog::new();
    log.append_story();
    let bundle = log.release(&[("table.csv", TABLE)]);
    let other_release = key("release.sandbox.example", 8).verifier().to_string();
    let other_log = key(crate::ORIGIN, 9).verifier().to_string();
    let path = log.path().join("other-trust.txt");
    for (trust, says) in [
        (
            log.trust().replace(&log.release_key.verifier().to_string(), &other_release),
            "statement: no valid signature by a trusted key (signed by: release.sandbox.example+",
        ),
        (
            log.trust().replace(&log.log_key.verifier().to_string(), &other_log),
            "statement.tlog-proof: no valid signature by a trusted key",
        ),
        (
            log.trust().replace("2026-01-01T00:00:00Z 2030", "2026-06-01T00:00:00Z 2030"),
            "statement: signed by key release.sandbox.example+",
        ),
    ] {
        std::fs::write(&path, trust).unwrap();
        release_run(&bundle, &path).status(1).says(says);
    }
    run(&["release", "/nonexistent", "--trust", path.to_str().unwrap()]).status(2).says("not a directory");
    std::fs::write(&path, log.trust()).unwrap();
    std::fs::write(bundle.join("statement"), &log.entries[0]).unwrap();
    release_run(&bundle, &path)
        .status(1)
        .says("statement: the statement is a \"principal.registered\" entry, not a release");
}

#[test]
fn consistency_between_two_checkpoints() {
    let log = log();
    let trust = log.write_trust();
    let dir = log.path();
    let proof = |name: &str, text: String| {
        std::fs::write(dir.join(name), text).unwrap();
        dir.join(name)
    };
    let cp = |size: u64| dir.join(history_path(size));
    let args = |old: u64, new: u64, proof: &Path| {
        run(&[
            "consistency".as_ref(),
            cp(old).as_os_str(),
            cp(new).as_os_str(),
            proof.as_os_str(),
            "--trust".as_ref(),
            trust.as_os_str(),
        ])
    };
    let good = proof("5-20", log.consistency(5, 20));
    args(5, 20, &good).status(0).says("old / 旧检查点: log.sandbox.example/baotou at size 5").says("verified / 已验证");
    args(12, 20, &good).status(1).says("consistency proof invalid");
    args(20, 5, &good).status(1).says("old tree size 20 is larger than new size 5");
    args(20, 20, &proof("empty", String::new())).status(0);
    args(5, 20, &proof("garbage", "not base64\n".to_owned())).status(1).says("\"not base64\" is not base64");
    args(5, 20, &dir.join("absent")).status(2).says("does not exist");
    log.write("fork-20", &log.sign_checkpoint(20, Hash::sha256(b"fork")));
    let fork = dir.join("fork-20");
    let empty = dir.join("empty");
    run(&[
        "consistency".as_ref(),
        cp(20).as_os_str(),
        fork.as_os_str(),
        empty.as_os_str(),
        "--trust".as_ref(),
        trust.as_os_str(),
    ])
    .status(1)
    .says("FORK")
    .says("fork evidence / 分叉证据");
    let mut changed = std::fs::read(cp(5)).unwrap();
    changed[0] ^= 1;
    std::fs::write(dir.join("changed"), changed).unwrap();
    run(&[
        "consistency".as_ref(),
        dir.join("changed").as_os_str(),
        cp(20).as_os_str(),
        good.as_os_str(),
        "--trust".as_ref(),
        trust.as_os_str(),
    ])
    .status(1)
    .says("no valid signature by a trusted key");
}

#[test]
fn a_monitor_follows_the_log_and_refuses_rollback_and_forks() {
    let log = log();
    let trust = log.write_trust();
    let dir = log.path();
    let state = dir.join("state");
    let monitor = |size: u64, proof: Option<&str>| {
        let checkpoint = dir.join(history_path(size));
        let mut args = vec!["monitor".as_ref(), "--state".as_ref(), state.as_os_str(), checkpoint.as_os_str()];
        let proof_path = dir.join(format!("proof-{size}"));
        if let Some(proof) = proof {
            std::fs::write(&proof_path, proof).unwrap();
            args.extend(["--proof".as_ref(), proof_path.as_os_str()]);
        }
        args.extend(["--trust".as_ref(), trust.as_os_str()]);
        run(&args)
    };
    monitor(5, None).status(0).says("first use: remembered / 首次使用：已记录");
    assert_eq!(std::fs::read(&state).unwrap(), log.read(&history_path(5)));
    monitor(12, Some(&log.consistency(5, 12))).status(0).says("consistent, remembered / 一致，已记录");
    assert_eq!(std::fs::read(&state).unwrap(), log.read(&history_path(12)));
    monitor(12, None).status(0).says("unchanged / 未变化");
    monitor(5, None).status(1).says("the latest checkpoint has size 5, but the log once signed size 12: rolled back");
    monitor(20, None).status(2).says("proof: missing");
    monitor(20, Some(&log.consistency(5, 20))).status(1).says("proof: consistency proof invalid");
    // A validly signed checkpoint of the remembered size with another root.
    let remembered = std::fs::read(&state).unwrap();
    log.write(&history_path(12), &log.sign_checkpoint(12, Hash::sha256(b"fork")));
    monitor(12, None).status(1).says("FORK").says("fork evidence / 分叉证据");
    assert_eq!(std::fs::read(&state).unwrap(), remembered, "a refusal changes nothing");
    monitor(20, Some(&log.consistency(12, 20))).status(0);
    std::fs::write(&state, b"garbage").unwrap();
    monitor(20, None).status(2).says("state: malformed signed note");
}

#[test]
fn unusable_input_exits_2() {
    let log = log();
    let trust = log.write_trust();
    let archive = log.path().to_str().unwrap();
    let trust = trust.to_str().unwrap();
    run::<&str>(&[]).status(2).says("usage / 用法");
    run(&["--help"]).status(0).says("usage / 用法");
    run(&["inspect", archive, "--trust", trust]).status(2).says("unknown command \"inspect\"");
    run(&["audit", archive]).status(2).says("--trust FILE is required");
    run(&["audit", archive, archive, "--trust", trust]).status(2).says("audit takes 1 path(s), got 2");
    run(&["audit", archive, "--trust", trust, "--fast"]).status(2).says("unknown option --fast");
    run(&["audit", archive, "--trust"]).status(2).says("--trust needs a value");
    run(&["monitor", archive, "--trust", trust]).status(2).says("monitor needs --state FILE");
    run(&["audit", archive, "--trust", "/nonexistent"]).status(2).says("/nonexistent does not exist");
    let bad = log.path().join("bad-trust");
    std::fs::write(&bad, "log x 2026-01-01T00:00:00Z -\n").unwrap();
    run(&["audit", archive, "--trust", bad.to_str().unwrap()]).status(2).says("malformed trust file: line 1");
    std::fs::write(&bad, "# nothing\n").unwrap();
    run(&["audit", archive, "--trust", bad.to_str().unwrap()]).status(2).says("the trust file has no log key");
    let json = run(&["audit", archive, "--json", "--trust=/nonexistent"]);
    let value: serde_json::Value = serde_json::from_str(&json.status(2).stdout).unwrap();
    assert_eq!(value["verified"], false);
    assert!(value["unusable"]["message_zh"].as_str().unwrap().contains("不存在"));
}
