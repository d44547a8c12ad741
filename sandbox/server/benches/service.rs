//! The service's latency and throughput, client to verified release.
//!
//! `ops/bench/service.sh` prepares a data folder with `sandbox demo --scale 100000` (a licence,
//! an agreement, and the `population` example approved by two reviewers) and runs this with it:
//! `cargo bench -p sandbox-server --bench service -- DATA_DIR [--runs N] [--clients C]
//! [--per-client M]`. The server runs in this process with the release `sandbox-runner` beside
//! the bench's own folder; every timed run is one production run of the module over the
//! 100 000 persons: `Runs.Start`, `Runs.Watch` until released, `Releases.Download` as the
//! application unit, the files written and checked as `sandbox-verify release` checks them.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use std::sync::Arc;

use anyhow::Context;
use sandbox_client::Session;
use sandbox_proto::v1 as pb;

const OPERATOR: &str = "operator-demo";
const UNIT: &str = "unit-demo";
const AGREEMENT: &str = "agr-demo";

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let mut data = None;
    let (mut runs, mut clients, mut per_client) = (100usize, 16usize, 10usize);
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
    let exe = std::env::current_exe()?;
    let release_dir = exe.parent().and_then(Path::parent).context("the bench's folder")?;
    let mut config = sandbox_server::Config::new(data.to_owned());
    config.listen = ([127, 0, 0, 1], 0).into();
    config.runner = release_dir.join("sandbox-runner");
    anyhow::ensure!(config.runner.exists(), "{} missing: run ops/bench/service.sh", config.runner.display());
    println!("runner {}, {} runs at once", config.runner.display(), config.max_concurrent_runs);
    let server = sandbox_server::start(config).await?;
    let url = format!("http://{}", server.addr);

    let operator = Arc::new(Session::open(&url, &data.join("identities").join(OPERATOR), None).await?);
    let unit = Arc::new(Session::open(&url, &data.join("identities").join(UNIT), None).await?);
    let trust = sandbox_verify::trust::Trust::parse(&std::fs::read_to_string(data.join("keys/trust"))?)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let modules = operator.modules().list(pb::Empty {}).await?.into_inner().modules;
    let module = modules
        .iter()
        .find(|m| m.name == "population" && m.status == pb::ModuleStatus::Approved as i32)
        .context("no approved population module: prepare the folder with `sandbox demo`")?
        .module
        .clone();
    let downloads = tempfile::tempdir()?;
    let job = Job { operator, unit, module, trust, downloads: downloads.path().to_owned() };

    for _ in 0..3 {
        job.once().await?;
    }
    let mut latencies = Vec::with_capacity(runs);
    for _ in 0..runs {
        latencies.push(job.once().await?);
    }
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

#[derive(Clone)]
struct Job {
    operator: Arc<Session>,
    unit: Arc<Session>,
    module: String,
    trust: sandbox_verify::trust::Trust,
    downloads: PathBuf,
}

impl Job {
    /// One production run, from the request to a verified release on the application unit's disk.
    async fn once(&self) -> anyhow::Result<Duration> {
        let start = Instant::now();
        let request = pb::StartRunRequest {
            module: self.module.clone(),
            agreement: AGREEMENT.into(),
            parameters: vec![pb::Parameter { name: "reference_date".into(), value: "2024-12-31".into() }],
        };
        let run = self.operator.runs().start(request).await?.into_inner();
        let run = self.operator.follow(&run.id, |_| {}).await?;
        anyhow::ensure!(
            run.status == pb::RunStatus::Released as i32,
            "{} ended {:?} {}",
            run.id,
            run.status,
            run.error_code
        );
        let out = self.downloads.join(&run.release);
        self.unit.download(&run.release, &out).await?;
        let report = sandbox_verify::release::verify(&out, &self.trust);
        anyhow::ensure!(report.verified(), "{} did not verify: {:?}", run.release, report.problems);
        let took = start.elapsed();
        std::fs::remove_dir_all(&out)?;
        Ok(took)
    }
}

fn report(what: &str, latencies: &mut [Duration]) {
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{what}: median {:.0} ms, p99 {:.0} ms, min {:.0} ms, max {:.0} ms",
        ms(at(0.5)),
        ms(at(0.99)),
        ms(latencies[0]),
        ms(latencies[latencies.len() - 1])
    );
}
