//! The audited release side by side with the same SQL over the raw file, in DataFusion and in
//! DuckDB, and the small job's latency (issue 19).
//!
//! `ops/bench/compare.sh` makes one data folder per scale with `sandbox demo --scale N`, builds
//! this with the binary (`cargo build --release -p sandbox -p sandbox-server --bins --bench
//! compare`) and runs it: `compare [--rounds R] [--small-runs S] [--duckdb SCRIPT]
//! DATA_DIR...`.
//! Per folder, each round times the three once, alternating, so a drift in the machine's speed
//! favours none of them; the medians are printed:
//! - the audited release: a production run of the approved `population` example through a server
//!   in this process, from `Runs.Start` to the application unit's verified download (the runner
//!   process, the policy views, the output audit, the signed release, four durable log appends);
//! - DataFusion: the module's SQL over the raw `persons` file, in this process, with the session's
//!   defaults (every core);
//! - DuckDB: the same SQL in DuckDB (`ops/bench/duckdb_query.py`, a child process that times
//!   itself, so the figure holds no process start).
//!
//! The small job is S production runs in a row on the first (smallest) folder: median and p99.
//! With `RUST_LOG=sandbox_server=debug` the server's phase timers go to stderr.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use datafusion::arrow::array::AsArray;
use datafusion::prelude::{ParquetReadOptions, SessionContext};

use common::{Job, ms, quantile};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let mut folders = Vec::new();
    let (mut rounds, mut small_runs) = (5usize, 100usize);
    let mut duckdb = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../ops/bench/duckdb_query.py"));
    while let Some(arg) = args.next() {
        let mut number = || -> anyhow::Result<usize> { Ok(args.next().context("a number")?.parse()?) };
        match arg.as_str() {
            "--rounds" => rounds = number()?,
            "--small-runs" => small_runs = number()?,
            "--duckdb" => duckdb = PathBuf::from(args.next().context("a path")?),
            _ => folders.push(PathBuf::from(arg)),
        }
    }
    anyhow::ensure!(!folders.is_empty() && rounds > 0, "usage: compare [--rounds R] [--small-runs S] DATA_DIR...");
    if let Ok(filter) = std::env::var("RUST_LOG") {
        let filter = tracing_subscriber::EnvFilter::try_new(filter)?;
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    }
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(async {
        println!("| residents | audited release | DataFusion | DuckDB | release / DataFusion | release / DuckDB |");
        println!("|---|---|---|---|---|---|");
        for data in &folders {
            compare(data, rounds, &duckdb).await?;
        }
        if small_runs > 0 {
            small_job(&folders[0], small_runs).await?;
        }
        anyhow::Ok(())
    })
}

/// The module's SQL (examples/modules/population) at the reference date the runs use.
fn sql() -> String {
    let at = common::REFERENCE_DATE;
    format!(
        "SELECT district, \
                CASE WHEN birth_date > DATE '{at}' - INTERVAL '18 years' THEN '0-17' \
                     WHEN birth_date > DATE '{at}' - INTERVAL '35 years' THEN '18-34' \
                     WHEN birth_date > DATE '{at}' - INTERVAL '60 years' THEN '35-59' \
                     ELSE '60+' END AS age_band, \
                gender, count(*) AS residents \
         FROM persons GROUP BY 1, 2, 3"
    )
}

async fn compare(data: &Path, rounds: usize, duckdb: &Path) -> anyhow::Result<()> {
    let file = persons(data)?;
    let server = common::server(data).await?;
    let downloads = tempfile::tempdir()?;
    let job = Job::open(&server, data, downloads.path()).await?;
    let ctx = raw(data).await?;
    let residents = residents(data).await?;
    let mut duck = DuckDb::start(duckdb, &file, &sql())?;

    // One of each first: the module compiled and cached, the file in the page cache.
    let groups = datafusion_once(&ctx).await?.1;
    job.once().await?;
    anyhow::ensure!(duck.once()?.1 == groups, "DuckDB and DataFusion disagree on the number of groups");

    let (mut release, mut fusion, mut duck_times) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        release.push(job.once().await?);
        fusion.push(datafusion_once(&ctx).await?.0);
        duck_times.push(duck.once()?.0);
    }
    server.stop().await?;
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        quantile(v, 0.5)
    };
    let (r, f, d) = (median(&mut release), median(&mut fusion), median(&mut duck_times));
    println!(
        "| {residents} | {:.0} ms | {:.0} ms | {:.0} ms | {:.2} | {:.2} |",
        ms(r),
        ms(f),
        ms(d),
        r.as_secs_f64() / f.as_secs_f64(),
        r.as_secs_f64() / d.as_secs_f64()
    );
    Ok(())
}

/// The `persons` file of a demo folder.
fn persons(data: &Path) -> anyhow::Result<PathBuf> {
    let catalog = sandbox_catalog::Catalog::open(&data.join("catalog"))?;
    let files = catalog.dataset("persons")?.files(sandbox_catalog::Variant::Real);
    anyhow::ensure!(files.len() == 1, "persons should be one file");
    Ok(std::path::absolute(&files[0].path)?)
}

/// A DataFusion session with the raw `persons` file as the table `persons`, defaults otherwise.
async fn raw(data: &Path) -> anyhow::Result<SessionContext> {
    let ctx = SessionContext::new();
    ctx.register_parquet("persons", persons(data)?.to_string_lossy().as_ref(), ParquetReadOptions::default()).await?;
    Ok(ctx)
}

async fn residents(data: &Path) -> anyhow::Result<i64> {
    let batches = raw(data).await?.sql("SELECT count(*) FROM persons").await?.collect().await?;
    let counts = batches[0].column(0).as_primitive::<datafusion::arrow::datatypes::Int64Type>();
    Ok(counts.value(0))
}

/// The SQL over the raw file, planned and run to the last batch; returns the time and the rows.
async fn datafusion_once(ctx: &SessionContext) -> anyhow::Result<(Duration, usize)> {
    let start = Instant::now();
    let batches = ctx.sql(&sql()).await?.collect().await?;
    Ok((start.elapsed(), batches.iter().map(|b| b.num_rows()).sum()))
}

/// A DuckDB process that runs the SQL each time it is asked and answers with its own timing.
struct DuckDb {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
}

impl DuckDb {
    fn start(script: &Path, file: &Path, sql: &str) -> anyhow::Result<DuckDb> {
        let mut child = Command::new("python3")
            .arg(script)
            .arg(file)
            .arg(sql)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", script.display()))?;
        let input = child.stdin.take().context("stdin")?;
        let output = BufReader::new(child.stdout.take().context("stdout")?);
        Ok(DuckDb { child, input, output })
    }

    fn once(&mut self) -> anyhow::Result<(Duration, usize)> {
        writeln!(self.input, "run")?;
        self.input.flush()?;
        let mut line = String::new();
        self.output.read_line(&mut line)?;
        let (seconds, rows) = line.trim().split_once(' ').with_context(|| format!("DuckDB answered {line:?}"))?;
        Ok((Duration::from_secs_f64(seconds.parse()?), rows.parse()?))
    }
}

impl Drop for DuckDb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn small_job(data: &Path, runs: usize) -> anyhow::Result<()> {
    let server = common::server(data).await?;
    let downloads = tempfile::tempdir()?;
    let job = Job::open(&server, data, downloads.path()).await?;
    let mut latencies = job.in_a_row(runs).await?;
    latencies.sort();
    println!(
        "\nsmall job: the same module over {} residents, {runs} runs one after another, warm server: \
         median {:.0} ms, p99 {:.0} ms",
        residents(data).await?,
        ms(quantile(&latencies, 0.5)),
        ms(quantile(&latencies, 0.99))
    );
    server.stop().await
}
