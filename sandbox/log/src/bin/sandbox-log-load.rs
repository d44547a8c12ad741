//! `sandbox-log-load --dir LOG --key KEYFILE --writers N --entries M`: appends M `run.started`
//! entries (which the log vouches for, unsigned) to the log at LOG from N concurrent writers,
//! printing `<index> <entry SHA-256>` on stdout as each append is acknowledged, and the rate on
//! stderr at the end. Entries are made before the clock starts. The crash test kills it mid-run; the benchmark reads its rate.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Instant;

use sandbox_log::{Log, LogOptions, keys};
use sandbox_verify::entry::{Entry, kind};
use sandbox_verify::merkle::Hash;
use sandbox_verify::time::Timestamp;

struct Args {
    dir: PathBuf,
    key: PathBuf,
    writers: usize,
    entries: usize,
}

fn parse() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let (mut dir, mut key, mut writers, mut entries) = (None, None, 8, 1000);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--dir" => dir = Some(PathBuf::from(value)),
            "--key" => key = Some(PathBuf::from(value)),
            "--writers" => writers = value.parse().map_err(|_| "--writers: a number")?,
            "--entries" => entries = value.parse().map_err(|_| "--entries: a number")?,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(Args { dir: dir.ok_or("--dir is required")?, key: key.ok_or("--key is required")?, writers, entries })
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("sandbox-log-load: {e}");
            return ExitCode::from(2);
        }
    };
    let key = match keys::read_key_file(&args.key) {
        Ok(key) => key,
        Err(e) => {
            eprintln!("sandbox-log-load: {e}");
            return ExitCode::from(2);
        }
    };
    let log = match Log::open(&args.dir, LogOptions::new(key.clone())) {
        Ok(log) => log,
        Err(e) => {
            eprintln!("sandbox-log-load: {e}");
            return ExitCode::FAILURE;
        }
    };
    let start = log.size();
    let now = Timestamp::now();
    let entries: Vec<Vec<u8>> = (0..args.entries)
        .map(|i| {
            Entry::builder(kind::RUN_STARTED, now, "runner")
                .field("run", &format!("load-{start}-{i}"))
                .build()
                .and_then(|e| e.unsigned())
                .expect("a well-formed entry")
        })
        .collect();
    let stdout = Mutex::new(std::io::stdout());
    let failed = Mutex::new(None);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for chunk in entries.chunks(args.entries.div_ceil(args.writers.max(1)).max(1)) {
            let (log, stdout, failed) = (&log, &stdout, &failed);
            scope.spawn(move || {
                for entry in chunk {
                    match log.append_blocking(entry.clone()) {
                        Ok(appended) => {
                            let mut out = stdout.lock().expect("not poisoned");
                            let _ = writeln!(out, "{} {}", appended.index, Hash::sha256(entry).to_hex());
                            let _ = out.flush();
                        }
                        Err(e) => {
                            *failed.lock().expect("not poisoned") = Some(e.to_string());
                            return;
                        }
                    }
                }
            });
        }
    });
    let elapsed = started.elapsed();
    if let Some(e) = failed.into_inner().expect("not poisoned") {
        eprintln!("sandbox-log-load: {e}");
        return ExitCode::FAILURE;
    }
    eprintln!(
        "appended {} entries from {} writers in {:.3} s: {:.0} appends/s",
        args.entries,
        args.writers,
        elapsed.as_secs_f64(),
        args.entries as f64 / elapsed.as_secs_f64()
    );
    ExitCode::SUCCESS
}
