//! Where runs are carried out: the [`Executor`] trait, the seam for runners on other hosts, and
//! [`ProcessExecutor`], which gives each run a runner process (`sandbox runner`) of its own on
//! this one.
//!
//! The server's queue and `sandbox audit` both run modules through it, so that no production
//! run — by the server or from the command line — executes untrusted code in a process that
//! holds keys or reads raw data for the audit. What comes back is read by
//! `sandbox_contract::wire` (strict, bounded) and must be the run asked for
//! ([`RunRecord::is_of`](sandbox_contract::RunRecord::is_of), checked by the callers).

use std::process::Stdio;
use std::time::Duration;

use sandbox_contract::run::{DEFAULT_OUTPUT_BYTES, OutputTable, RunRecord};
use sandbox_contract::wire::{CompileAnswer, CompileRequest, RunnerAnswer, RunnerRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

/// Bytes a runner may answer with: the runner's output limit plus a megabyte for the header.
/// Equal to what the runner lets a module write, so that a module cannot cut its own answer
/// short and have the run end as "interrupted", an outcome that should only ever come from
/// outside.
pub const MAX_ANSWER: u64 = DEFAULT_OUTPUT_BYTES + (1 << 20);

/// A runner's answer, read, with its bytes as they came (kept with the run inside the domain).
#[derive(Debug)]
pub struct Answer {
    pub raw: Vec<u8>,
    pub record: RunRecord,
    /// Empty unless the run succeeded.
    pub tables: Vec<OutputTable>,
    /// Development runs only.
    pub dev_log: Option<String>,
    /// Whether the runner could confine itself (no network, read-only file systems).
    pub isolated: bool,
}

impl Answer {
    /// Reads an answer's bytes (as a runner sent them, or as kept with a run).
    pub fn from_raw(raw: Vec<u8>) -> Result<Answer, sandbox_contract::wire::WireError> {
        let RunnerAnswer { record, tables, dev_log, isolated } = RunnerAnswer::decode(&raw, MAX_ANSWER as usize)?;
        Ok(Answer { raw, record, tables, dev_log, isolated })
    }
}

/// How a run handed to an executor ended.
#[derive(Debug)]
pub enum Ended {
    Done(Box<Answer>),
    /// The runner could not answer: a code (`runner-unavailable`, `timeout`, `too-large`,
    /// `runner-protocol`), never the runner's own words.
    Failed(String),
    Cancelled,
}

/// Carries out runs and compilations. Implementations hold no signing key and give the module
/// no network; the caller keeps the queue, the log and the audit.
#[async_trait::async_trait]
pub trait Executor: Send + Sync {
    /// Runs a module as `request` says, until it ends, `cancel` turns true, or the executor's
    /// time limit passes.
    async fn run(&self, request: &RunnerRequest, cancel: watch::Receiver<bool>) -> Ended;

    /// Compiles a module into the cache and runs nothing: the code of what went wrong, if
    /// anything did.
    async fn compile(&self, request: &CompileRequest) -> Result<(), String>;

    /// Resolves once no runner process of this executor is still ending after its answer
    /// (freeing the run's memory): the run queue awaits it before a run gives back its slot,
    /// so that no run starts beside what is left of another.
    async fn settle(&self) {}
}

/// A runner process per run (`sandbox runner`), on this host: a clean environment, the request on stdin,
/// stderr discarded (it is the module's channel), killed at the timeout or on cancellation.
///
/// With spares, a few runner processes are started ahead of the runs and wait, unassigned, for
/// a request: a run takes one (and a new spare is started), so the run does not wait for the
/// process's start — loading and relocating a large executable, a fifth of a small job's runner
/// time. A spare has read nothing, been told nothing and holds nothing until its request comes;
/// it serves one run and ends, as a process started for the run would (the request is the first
/// thing a runner reads, before it confines itself: see `sandbox_runner::process`).
#[derive(Debug)]
pub struct ProcessExecutor {
    runner: crate::RunnerCommand,
    timeout: Duration,
    spares: usize,
    waiting: std::sync::Mutex<Vec<tokio::process::Child>>,
    /// How many runner processes that answered are still ending.
    ending: watch::Sender<usize>,
}

impl ProcessExecutor {
    /// A process started for each run, when the run starts.
    pub fn new(runner: crate::RunnerCommand, timeout: Duration) -> ProcessExecutor {
        ProcessExecutor { runner, timeout, spares: 0, waiting: Default::default(), ending: watch::Sender::new(0) }
    }

    /// Keeps up to `spares` runner processes started ahead of the runs (from the first run on).
    pub fn with_spares(self, spares: usize) -> ProcessExecutor {
        ProcessExecutor { spares, ..self }
    }

    /// How many spares are waiting now (for tests).
    pub fn spares_waiting(&self) -> usize {
        self.waiting.lock().expect("not poisoned").len()
    }

    fn start(&self, args: &[&str]) -> std::io::Result<tokio::process::Child> {
        tokio::process::Command::new(&self.runner.program)
            .args(&self.runner.args)
            .args(args)
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
    }

    /// A runner process for a run: a spare still waiting if there is one, else a new one; then
    /// the spares are made up again.
    fn take(&self) -> std::io::Result<tokio::process::Child> {
        let mut waiting = self.waiting.lock().expect("not poisoned");
        // A spare that has ended (killed from outside, say) cannot serve; dropping it reaps it.
        waiting.retain_mut(|child| matches!(child.try_wait(), Ok(None)));
        // The oldest: surely ready, so a run's time does not depend on how recently another
        // run started.
        let child = match (!waiting.is_empty()).then(|| waiting.remove(0)) {
            Some(child) => child,
            None => self.start(&[])?,
        };
        while waiting.len() < self.spares {
            match self.start(&[]) {
                Ok(spare) => waiting.push(spare),
                // The run still has its process; the next run tries again.
                Err(_) => break,
            }
        }
        Ok(child)
    }

    /// Starts the runner with `args`, writes `input`, and reads less than `limit` bytes of its
    /// answer; or how the exchange ended without one.
    async fn exchange(
        &self,
        args: &[&str],
        input: &[u8],
        limit: u64,
        cancel: &mut watch::Receiver<bool>,
    ) -> Result<Vec<u8>, Ended> {
        let child = if args.is_empty() { self.take() } else { self.start(args) };
        let mut child = child.map_err(|_| Ended::Failed("runner-unavailable".into()))?;
        let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(Ended::Failed("runner-unavailable".into()));
        };
        let work = async {
            stdin.write_all(input).await?;
            drop(stdin);
            let mut answer = Vec::new();
            stdout.take(limit).read_to_end(&mut answer).await?;
            Ok::<_, std::io::Error>(answer)
        };
        let answer = tokio::select! {
            answer = work => match answer {
                Ok(answer) if (answer.len() as u64) < limit => Ok(answer),
                Ok(_) => Err(Ended::Failed("too-large".into())),
                Err(_) => Err(Ended::Failed("runner-protocol".into())),
            },
            _ = tokio::time::sleep(self.timeout) => Err(Ended::Failed("timeout".into())),
            () = cancelled(cancel) => Err(Ended::Cancelled),
        };
        // The answer ends where the runner closes its output; the caller goes on with it while
        // the process ends (the teardown of the run's memory: 7 ms of a small job), which
        // [`Executor::settle`] waits for. A runner without an answer is killed at once, one
        // that does not end soon after its answer, then.
        if answer.is_err() {
            let _ = child.start_kill();
        }
        self.ending.send_modify(|n| *n += 1);
        let ending = self.ending.clone();
        tokio::spawn(async move {
            if tokio::time::timeout(Duration::from_secs(5), child.wait()).await.is_err() {
                let _ = child.kill().await;
            }
            ending.send_modify(|n| *n -= 1);
        });
        answer
    }
}

#[async_trait::async_trait]
impl Executor for ProcessExecutor {
    async fn run(&self, request: &RunnerRequest, mut cancel: watch::Receiver<bool>) -> Ended {
        let raw = match self.exchange(&[], &request.encode(), MAX_ANSWER, &mut cancel).await {
            Ok(raw) => raw,
            Err(ended) => return ended,
        };
        match Answer::from_raw(raw) {
            Ok(answer) => Ended::Done(Box::new(answer)),
            Err(_) => Ended::Failed("runner-protocol".into()),
        }
    }

    async fn settle(&self) {
        let _ = self.ending.subscribe().wait_for(|n| *n == 0).await;
    }

    async fn compile(&self, request: &CompileRequest) -> Result<(), String> {
        let (_never, mut cancel) = watch::channel(false);
        let raw = match self.exchange(&["--compile"], &request.encode(), 64 << 10, &mut cancel).await {
            Ok(raw) => raw,
            Err(Ended::Failed(code)) => return Err(code),
            Err(_) => return Err("cancelled".into()),
        };
        match CompileAnswer::decode(&raw) {
            Ok(CompileAnswer { error: None }) => Ok(()),
            Ok(CompileAnswer { error: Some(e) }) => Err(e.code()),
            Err(_) => Err("runner-protocol".into()),
        }
    }
}

/// Resolves when the run is asked to stop (never, if nobody can ask any more).
pub(crate) async fn cancelled(cancel: &mut watch::Receiver<bool>) {
    if cancel.wait_for(|c| *c).await.is_err() {
        std::future::pending::<()>().await;
    }
}
