//! Crash safety: the writer process is killed with SIGKILL at many points during concurrent
//! appends; after each kill the log reopens (repairing a torn tail), every acknowledged entry is
//! at its acknowledged index, and at the end the whole log verifies.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::Duration;

use sandbox_log::keys;
use sandbox_verify::merkle::Hash;

use crate::{assert_verifies, files_under, log_key, open, temp};

#[test]
fn a_writer_killed_at_any_point_loses_nothing_it_acknowledged() {
    let dir = temp();
    let log_dir = dir.path().join("log");
    let key_file = dir.path().join("log.key");
    keys::write_key_file(&key_file, &log_key()).unwrap();
    let mut acknowledged: BTreeMap<u64, String> = BTreeMap::new();
    let rounds = 16;
    for round in 0..rounds {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sandbox-log-load"))
            .arg("--dir")
            .arg(&log_dir)
            .arg("--key")
            .arg(&key_file)
            .args(["--writers", "16", "--entries", "5000"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        // Wait for the first acknowledgement, so the kill lands among appends, then a while.
        let mut first = Vec::new();
        stdout.read_until(b'\n', &mut first).unwrap();
        let reader = std::thread::spawn(move || {
            let mut lines = vec![first];
            loop {
                let mut line = Vec::new();
                if stdout.read_until(b'\n', &mut line).unwrap_or(0) == 0 {
                    break lines;
                }
                lines.push(line);
            }
        });
        std::thread::sleep(Duration::from_millis(round * 13 % 97));
        child.kill().unwrap();
        child.wait().unwrap();
        let lines = reader.join().unwrap();
        for line in lines {
            // A line cut by the kill was never complete: not an acknowledgement.
            let Some(line) = line.strip_suffix(b"\n") else { continue };
            let line = std::str::from_utf8(line).unwrap();
            let (index, hash) = line.split_once(' ').unwrap();
            let previous = acknowledged.insert(index.parse().unwrap(), hash.to_owned());
            assert!(previous.is_none_or(|p| p == hash), "index {index} acknowledged twice with different entries");
        }

        let log = open(&log_dir);
        let last = *acknowledged.keys().last().unwrap();
        assert!(log.size() > last, "round {round}: size {} lost acknowledged entry {last}", log.size());
        for (&index, hash) in &acknowledged {
            assert_eq!(&Hash::sha256(&log.entry(index).unwrap()).to_hex(), hash, "round {round}: entry {index}");
        }
    }
    assert!(acknowledged.len() > rounds as usize, "only {} acknowledgements", acknowledged.len());
    // `scan` reads the whole log back, every index once and in order.
    let log = open(&log_dir);
    let mut next = 1;
    for item in log.scan(1..log.size(), 100) {
        let (index, bytes) = item.unwrap();
        assert_eq!(index, next);
        if let Some(hash) = acknowledged.get(&index) {
            assert_eq!(&Hash::sha256(&bytes).to_hex(), hash, "scanned entry {index}");
        }
        next += 1;
    }
    assert_eq!(next, log.size());
    drop(log);
    let torn = if log_dir.join("torn").exists() { files_under(&log_dir.join("torn")).len() } else { 0 };
    eprintln!("{} acknowledged entries over {rounds} kills; {torn} torn files set aside", acknowledged.len());
    assert_verifies(&log_dir);
}
