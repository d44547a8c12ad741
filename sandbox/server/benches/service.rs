//! The service's latency and throughput, client to verified release.
//!
//! `ops/bench/service.sh` prepares a data folder with `sandbox demo --scale 100000` (a licence,
//! an agreement, and the `population` example approved by two reviewers) and runs this with it:
//! `service DATA_DIR [--runs N] [--clients C] [--per-client M]` (25, 16 and 1 by default: a
//! licence starts at most 50 production runs a day). The server runs in this process, its runs
//! in `sandbox runner` of the release `sandbox` beside the bench's own folder; every timed run is
//! one production run of the module over the 100 000 persons: `Runs.Start`, `Runs.Watch` until released, `Releases.Download` as the
//! application unit, the files written and checked as `sandbox-verify release` checks them.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;

use common::{Job, ms, quantile};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let mut data = None;
    let (mut runs, mut clients, mut per_client) = (25usize, 16usize, 1usize);
    while let Some(arg) = args.next() {
        let mut number = || -> anyhow::Result<usize> { Ok(args.next().context("a number")?.parse()?) };
        match arg.as_str() {
            "--runs" => runs = number()?,
            "--clients" => clients = number()?,
            "--per-client" => per_client = number()?,
            _ => data = Some(PathBuf::from(arg)),
        }
    }
    let data = data.context("usage: service DATA_DIR (made by `sandbox demo --data-dir DATA_DIR`)")?;
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(bench(&data, runs, clients, per_client))
}

async fn bench(data: &Path, runs: usize, clients: usize, per_client: usize) -> anyhow::Result<()> {
    let server = common::server(data).await?;
    println!("{} runs at once", sandbox_server::Config::new(data.to_owned()).max_concurrent_runs);
    let downloads = tempfile::tempdir()?;
    let job = Job::open(&server, data, downloads.path()).await?;

    let mut latencies = job.in_a_row(runs).await?;
    report(&format!("one client, {runs} runs one after another"), &mut latencies);

    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let job = job.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(per_client);
                for _ in 0..per_client {
                    latencies.push(job.once().await?);
                }
                anyhow::Ok(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    let elapsed = start.elapsed();
    report(&format!("{clients} clients × {per_client} runs"), &mut latencies);
    println!(
        "throughput: {} verified releases in {:.1} s = {:.2}/s",
        latencies.len(),
        elapsed.as_secs_f64(),
        latencies.len() as f64 / elapsed.as_secs_f64()
    );
    server.stop().await
}

fn report(what: &str, latencies: &mut [Duration]) {
    latencies.sort();
    println!(
        "{what}: median {:.0} ms, p99 {:.0} ms, min {:.0} ms, max {:.0} ms",
        ms(quantile(latencies, 0.5)),
        ms(quantile(latencies, 0.99)),
        ms(latencies[0]),
        ms(latencies[latencies.len() - 1])
    );
}
