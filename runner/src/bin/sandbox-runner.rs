//! `sandbox-runner`: runs one module for the server, in a process of its own.
//!
//! The request comes on stdin and the answer goes to stdout, as `sandbox_contract::wire` says
//! (the licence's pseudonym key comes in the request, never in arguments or the environment). Before reading anything the process confines itself, where Linux
//! allows: a new user and network namespace (no network at all), no new privileges, and
//! resource limits. It never holds a signing key and cannot reach the log.

use std::io::Read;
use std::process::ExitCode;

use anyhow::Context;
use nix::sys::resource::{Resource, setrlimit};
use sandbox_catalog::Catalog;
use sandbox_contract::wire::{MAX_REQUEST_BYTES, RunnerAnswer, RunnerRequest};
use sandbox_policy::PseudonymKey;
use sandbox_runner::{RunLimits, RunRequest, Runner};

/// Cuts the process off from the network: a new user namespace (so no privilege is needed) and
/// a new network namespace with nothing but a down loopback. Must run while single-threaded.
fn isolate_network() -> Result<(), String> {
    use nix::sched::{CloneFlags, unshare};
    unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNET).map_err(|e| e.to_string())
}

fn set_limits(limits: &RunLimits) -> Result<(), String> {
    let data = (limits.memory_bytes + limits.policy.memory_limit) as u64 + (2 << 30);
    let cpu = limits.wall_time.as_secs() * 4 + 10;
    for (resource, value) in [
        (Resource::RLIMIT_CORE, 0),
        (Resource::RLIMIT_NOFILE, 1024),
        (Resource::RLIMIT_DATA, data),
        (Resource::RLIMIT_CPU, cpu),
    ] {
        setrlimit(resource, value, value).map_err(|e| format!("{resource:?}: {e}"))?;
    }
    nix::sys::prctl::set_no_new_privs().map_err(|e| format!("no_new_privs: {e}"))?;
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sandbox-runner: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    // First, while the process has one thread.
    let isolation = isolate_network();
    let limits = RunLimits::default();
    set_limits(&limits).map_err(anyhow::Error::msg).context("setting resource limits")?;

    // `sandbox-runner --probe-network ADDR` tries to reach ADDR, and `--probe-memory BYTES` to
    // allocate BYTES, from inside the confinement, so that tests can show the limits hold.
    let args: Vec<String> = std::env::args().collect();
    match args.as_slice() {
        [_, flag, addr] if flag == "--probe-network" => {
            match std::net::TcpStream::connect(addr) {
                Ok(_) => println!("connected"),
                Err(e) => println!("unreachable: {e}"),
            }
            return Ok(ExitCode::SUCCESS);
        }
        [_, flag, bytes] if flag == "--probe-memory" => {
            let bytes: usize = bytes.parse().context("--probe-memory takes a byte count")?;
            let mut hoard: Vec<u8> = Vec::new();
            match hoard.try_reserve_exact(bytes) {
                Ok(()) => {
                    // Touch every page, so the memory is really there.
                    hoard.resize(bytes, 1);
                    println!("allocated {}", std::hint::black_box(&hoard).len());
                }
                Err(e) => println!("refused: {e}"),
            }
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }

    let mut input = Vec::new();
    std::io::stdin().take(MAX_REQUEST_BYTES + 1).read_to_end(&mut input).context("reading the request")?;
    let request = RunnerRequest::decode(&input).context("parsing the request")?;
    if let (Err(e), true) = (&isolation, request.require_isolation) {
        anyhow::bail!("cannot isolate the network: {e}");
    }
    let key = match &request.key {
        Some(hex_key) => {
            let bytes: [u8; 32] =
                hex::decode(hex_key).ok().and_then(|b| b.try_into().ok()).context("key must be 64 hex digits")?;
            Some(PseudonymKey::from_bytes(bytes))
        }
        None => None,
    };
    let catalog = Catalog::open(&request.catalog).context("opening the catalog")?;
    let module = std::fs::read(&request.module).context("reading the module")?;
    let manifest = std::fs::read_to_string(&request.manifest).context("reading the manifest")?;

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let runner = Runner::new(limits, request.cache_dir.clone())?;
    let outcome = runtime.block_on(runner.run(RunRequest {
        module: &module,
        manifest: &manifest,
        parameters: &request.parameters,
        catalog: &catalog,
        mode: request.mode,
        key,
        limits: None,
    }));

    let failed = outcome.record.error.is_some();
    let answer = RunnerAnswer {
        record: outcome.record,
        tables: outcome.tables,
        dev_log: outcome.dev_log.map(|(text, _)| text),
        network_isolated: isolation.is_ok(),
    };
    answer.encode(&mut std::io::stdout().lock())?;
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}
