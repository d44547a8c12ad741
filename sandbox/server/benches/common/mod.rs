//! What the service benches share: a server in the bench's process over a folder made by
//! `sandbox demo`, and one timed production run from the request to a verified release.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use sandbox_client::Session;
use sandbox_proto::v1 as pb;

const OPERATOR: &str = "operator-demo";
const UNIT: &str = "unit-demo";
const AGREEMENT: &str = "agr-demo";

/// The day the `population` example takes ages at in every timed run.
pub(crate) const REFERENCE_DATE: &str = "2024-12-31";

/// Starts the server on a loopback port over `data`, its runs in `sandbox runner` of the release
/// `sandbox` beside the bench's own folder.
pub(crate) async fn server(data: &Path) -> anyhow::Result<sandbox_server::Server> {
    let exe = std::env::current_exe()?;
    let release_dir = exe.parent().and_then(Path::parent).context("the bench's folder")?;
    let mut config = sandbox_server::Config::new(data.to_owned());
    config.listen = ([127, 0, 0, 1], 0).into();
    config.runner = sandbox_server::RunnerCommand::subcommand(release_dir.join("sandbox"));
    let program = &config.runner.program;
    anyhow::ensure!(program.exists(), "{} missing: build it with --release", program.display());
    sandbox_server::start(config).await
}

#[derive(Clone)]
pub(crate) struct Job {
    operator: Arc<Session>,
    unit: Arc<Session>,
    module: String,
    trust: sandbox_verify::trust::Trust,
    downloads: PathBuf,
}

impl Job {
    /// The demo's operator and application unit, and its approved `population` module.
    pub(crate) async fn open(server: &sandbox_server::Server, data: &Path, downloads: &Path) -> anyhow::Result<Job> {
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
        Ok(Job { operator, unit, module, trust, downloads: downloads.to_owned() })
    }

    /// `runs` production runs one after another, after three to warm the server: their times.
    pub(crate) async fn in_a_row(&self, runs: usize) -> anyhow::Result<Vec<Duration>> {
        for _ in 0..3 {
            self.once().await?;
        }
        let mut latencies = Vec::with_capacity(runs);
        for _ in 0..runs {
            latencies.push(self.once().await?);
        }
        Ok(latencies)
    }

    /// One production run, from the request to a verified release on the application unit's disk.
    pub(crate) async fn once(&self) -> anyhow::Result<Duration> {
        let start = Instant::now();
        let request = pb::StartRunRequest {
            module: self.module.clone(),
            agreement: AGREEMENT.into(),
            parameters: vec![pb::Parameter { name: "reference_date".into(), value: REFERENCE_DATE.into() }],
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

/// The `q` quantile of sorted durations (nearest rank).
pub(crate) fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1]
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
