//! The data sandbox's service, `sandbox serve`: one process holding the log writer, the release
//! key and the SQLite projection, serving gRPC (and `/healthz`, `/metrics`) on one port.
//!
//! Every state change is first a log entry: a call validates against the projection, appends
//! its entry (awaiting the checkpoint that covers it), applies the entry to the projection, and
//! only then answers, all under one write lock so that the projection follows the log's order.
//! A refused call by a known principal leaves exactly one trace, its `request.refused` entry.
//! Untrusted code never runs here: production and development runs go through an
//! [`executor::Executor`] to runner processes (`sandbox runner`), which hold no key, have no
//! network and see every file system read-only.

mod api;
pub mod auth;
pub mod datadir;
pub mod error;
pub mod executor;
mod metrics;
pub mod model;
mod runs;
mod service;
pub mod state;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use sandbox_audit::AuditPolicy;
use sandbox_audit::budget::Ledger;
use sandbox_catalog::{Catalog, Variant};
use sandbox_log::{Log, LogOptions};
use sandbox_policy::DomainSecret;
use sandbox_verify::entry;
use sandbox_verify::event::Event;
use sandbox_verify::note::SignerKey;
use sandbox_verify::time::Timestamp;
use tokio::sync::oneshot;

use crate::error::ServiceError;
use crate::state::Projection;

pub use datadir::DataDir;

/// The data folder when none is given.
pub const DEFAULT_DATA_DIR: &str = "sandbox-data";
pub use state::State;

/// How `sandbox serve` runs.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// How to start a runner process.
    pub runner: RunnerCommand,
    /// Runs (production and development) at once; the rest wait in the queue.
    pub max_concurrent_runs: usize,
    /// A run still going after this is killed and fails with `timeout`.
    pub run_timeout: Duration,
    /// Refuse to run modules where the runner cannot confine itself (no network, locked
    /// read-only file systems, a PID namespace of its own). On by default: a machine without
    /// user namespaces must turn it off knowingly.
    pub require_isolation: bool,
    /// Refusals of one principal logged one by one per minute; the rest are counted, and the
    /// count is logged with its next logged refusal (a principal refused a thousand times a
    /// second must not grow the log a thousand entries a second).
    pub refusals_per_minute: u32,
    /// Serve TLS instead of plain HTTP/2, and with a client CA, mutual TLS.
    pub tls: Option<Tls>,
}

/// PEM files for TLS. With `client_ca`, every connection must present a certificate that CA
/// signed (mutual TLS) before any call is read; the bearer token is still checked per call.
#[derive(Debug, Clone)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

/// How the server starts a runner process: a program and the arguments before each job's own
/// (`--compile`, or none for a run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerCommand {
    pub program: PathBuf,
    pub args: Vec<String>,
}

impl RunnerCommand {
    /// `sandbox runner`: the hidden subcommand of the `sandbox` binary at `program`, which holds
    /// the runner (one binary to build and ship, DataFusion and wasmtime linked once).
    pub fn subcommand(program: PathBuf) -> RunnerCommand {
        RunnerCommand { program, args: vec!["runner".to_owned()] }
    }

    /// A runner executable of its own, such as `sandbox-runner`.
    pub fn standalone(program: PathBuf) -> RunnerCommand {
        RunnerCommand { program, args: Vec::new() }
    }
}

impl Config {
    /// The defaults for a data directory: loopback port 7700, `sandbox runner` of the `sandbox`
    /// beside the current executable (the current one, for the `sandbox` binary), two runs at a
    /// time, ten minutes per run, runs confined or refused.
    pub fn new(data_dir: PathBuf) -> Config {
        let sandbox = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|dir| dir.join("sandbox")))
            .unwrap_or_else(|| PathBuf::from("sandbox"));
        let runner = RunnerCommand::subcommand(sandbox);
        Config {
            data_dir,
            listen: SocketAddr::from(([127, 0, 0, 1], 7700)),
            runner,
            max_concurrent_runs: 2,
            run_timeout: Duration::from_secs(600),
            require_isolation: true,
            refusals_per_minute: 60,
            tls: None,
        }
    }
}

impl Tls {
    fn server_config(&self) -> anyhow::Result<tonic::transport::ServerTlsConfig> {
        let read = |path: &PathBuf| {
            std::fs::read(path).with_context(|| format!("reading {} / 无法读取 TLS 文件", path.display()))
        };
        let mut config = tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(read(&self.cert)?, read(&self.key)?));
        if let Some(ca) = &self.client_ca {
            config = config.client_ca_root(tonic::transport::Certificate::from_pem(read(ca)?));
        }
        Ok(config)
    }
}

tokio::task_local! {
    /// The principal and token of the call being served, where there is one (`Api::call` sets
    /// it around a handler's body): `Core::commit` checks the token again under the write lock.
    pub(crate) static CALLER: auth::Caller;
}

/// What every call shares.
pub(crate) struct Core {
    pub(crate) dir: DataDir,
    pub(crate) config: Config,
    pub(crate) log: Log,
    /// The name the server acts under in entries it makes of its own accord.
    pub(crate) name: String,
    pub(crate) release_key: SignerKey,
    /// The projection of the log (SQLite today: the store is behind [`Projection`]).
    pub(crate) state: Mutex<Box<dyn Projection>>,
    /// Held from a call's validation through its append and projection.
    pub(crate) write: tokio::sync::Mutex<()>,
    pub(crate) catalog: Catalog,
    pub(crate) secret: DomainSecret,
    pub(crate) policy: AuditPolicy,
    pub(crate) ledger: Ledger,
    pub(crate) metrics: metrics::Metrics,
    pub(crate) runs: runs::Queue,
    /// Where runs are carried out.
    pub(crate) executor: Box<dyn executor::Executor>,
    /// The index of the last entry applied to the projection; watchers wake on each change.
    pub(crate) applied: tokio::sync::watch::Sender<u64>,
    /// Refusals logged per principal in the current minute, and those counted but not logged.
    pub(crate) refusals: Mutex<std::collections::HashMap<String, Refusals>>,
    /// The files each dataset's registered version was hashed from, as the operating system
    /// describes them: files changed since are hashed again before a run reads them.
    pub(crate) versioned: Mutex<std::collections::HashMap<String, Vec<sandbox_catalog::FileStamp>>>,
    /// The differencing history, followed: a run reads only what was appended since the last.
    pub(crate) history: Mutex<sandbox_audit::history::Follower>,
}

/// One principal's refusals in the current minute: a durable entry each up to
/// [`Config::refusals_per_minute`], then only counted, the count logged with the next entry.
#[derive(Debug)]
pub(crate) struct Refusals {
    pub(crate) since: std::time::Instant,
    pub(crate) logged: u32,
    pub(crate) unlogged: u64,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core").field("dir", &self.dir).finish_non_exhaustive()
    }
}

/// Proof that the caller holds the write lock.
pub(crate) type WriteGuard<'a> = tokio::sync::MutexGuard<'a, ()>;

impl Core {
    /// Appends an entry and applies it to the projection. Answers once both are durable.
    pub(crate) async fn commit(&self, _guard: &WriteGuard<'_>, bytes: Vec<u8>) -> Result<u64, ServiceError> {
        // Checked again here, under the write lock, entry by entry: a principal disabled after
        // its call was authenticated but before its entry acts no more (red team round 7: two
        // administrators disabling each other at once locked every administrator out, and a
        // development run finished for an operator disabled while it ran).
        // The caller's own entries need its token still standing too (not rotated or revoked
        // while the call ran).
        let (entry, _) = entry::open(&bytes).map_err(|e| internal("entry", e))?;
        // What the projection will read, read first: an entry it could not apply never reaches
        // the log, where it would stop every later entry's projection.
        Event::decode(&entry).map_err(|e| ServiceError::invalid(&e, e.zh()))?;
        let actor = entry.actor().to_owned();
        if actor != self.name {
            let token = CALLER.try_with(|c| (c.name == actor).then(|| c.token_sha256.clone())).ok().flatten();
            let standing = self.view()?.principal(&actor)?.is_none_or(|p| {
                p.disabled.is_none() && token.as_ref().is_none_or(|t| p.token_sha256.as_ref() == Some(t))
            });
            if !standing {
                return Err(ServiceError::bad_token());
            }
        }
        let appended = self.log.append(bytes.clone()).await.map_err(|e| internal("log append", e))?;
        self.apply(appended.index, &bytes)?;
        Ok(appended.index)
    }

    pub(crate) fn apply(&self, index: u64, bytes: &[u8]) -> Result<(), ServiceError> {
        let mut state = self.state.lock().map_err(|_| internal("state", "lock poisoned"))?;
        state.apply(index, bytes).map_err(|e| internal("state", e))?;
        self.metrics.log_size.set(index as i64 + 1);
        self.applied.send_replace(index);
        Ok(())
    }

    /// Appends `event` as an entry made by `actor` now that only the log vouches for, and
    /// applies it.
    pub(crate) async fn commit_event(
        &self,
        guard: &WriteGuard<'_>,
        actor: &str,
        event: Event,
    ) -> Result<u64, ServiceError> {
        let bytes = event
            .entry(Timestamp::now(), actor)
            .and_then(|e| e.unsigned())
            .map_err(|e| ServiceError::invalid(&e, e.zh()))?;
        self.commit(guard, bytes).await
    }

    /// [`Core::commit_event`] in the server's own name.
    pub(crate) async fn commit_own(&self, guard: &WriteGuard<'_>, event: Event) -> Result<u64, ServiceError> {
        self.commit_event(guard, &self.name, event).await
    }

    /// The projection, to query. Held only for the queries of one statement: never across an
    /// `.await`.
    pub(crate) fn view(&self) -> Result<std::sync::MutexGuard<'_, Box<dyn Projection>>, ServiceError> {
        self.state.lock().map_err(|_| internal("state", "lock poisoned"))
    }

    /// The id of what the next entry creates: `<prefix>-<its log index>`, six digits at least.
    /// Taken under the write lock, as entries are appended, so the index is the entry's own: an
    /// id finds its entry, and no store's row count decides it.
    pub(crate) fn next_id(&self, prefix: &str) -> String {
        format!("{prefix}-{:06}", self.log.size())
    }
}

pub(crate) fn internal(what: &str, e: impl std::fmt::Display) -> ServiceError {
    ServiceError::internal(what, e)
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Server {
    /// Stops taking calls, waits for those under way, and closes the log.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.await.context("server task")?
    }

    /// Runs until interrupted (Ctrl-C or SIGTERM).
    pub async fn wait(self) -> anyhow::Result<()> {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("stopping / 正在停止");
        self.stop().await
    }
}

/// Opens the data directory (creating keys and the first administrator on first use), brings
/// the projection up to the log, registers new dataset versions, fails runs a restart
/// interrupted, and starts serving on `config.listen`.
pub async fn start(config: Config) -> anyhow::Result<Server> {
    // Runners get the licences' pseudonym keys: never a program found by a search of PATH.
    anyhow::ensure!(
        config.runner.program.is_absolute(),
        "the runner program {} must be an absolute path / 运行器程序必须为绝对路径",
        config.runner.program.display()
    );
    let dir = DataDir::new(&config.data_dir);
    let setup = dir.prepare()?;
    let catalog =
        Catalog::open(&dir.catalog()).with_context(|| format!("opening the catalog {}", dir.catalog().display()))?;
    let log = tokio::task::block_in_place(|| Log::open(dir.log(), LogOptions::new(setup.log_key.clone())))
        .with_context(|| format!("opening the log {}", dir.log().display()))?;
    let name = setup.log_key.verifier().name().to_owned();
    if dir.state().exists() && !State::is_current(&dir.state())? {
        tracing::warn!(
            "the state database's schema changed: rebuilding it from the log / 状态库结构已更新，从日志重建"
        );
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", dir.state().display()));
        }
    }
    let mut state = State::open(&dir.state())?;
    // Entries acknowledged but not yet projected when the server last stopped.
    state.catch_up(&log)?;
    let policy = match std::fs::read_to_string(dir.policy()) {
        Ok(text) => AuditPolicy::parse(&text).with_context(|| format!("{}", dir.policy().display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => AuditPolicy::default(),
        Err(e) => return Err(e).context(format!("reading {}", dir.policy().display())),
    };
    let history = sandbox_audit::history::Follower::open(&dir.history()).context("the differencing history")?;
    let metrics = metrics::Metrics::new();
    metrics.log_size.set(log.size() as i64);
    let core = Arc::new(Core {
        ledger: Ledger::new(dir.budget()),
        runs: runs::Queue::new(config.max_concurrent_runs),
        executor: Box::new(
            executor::ProcessExecutor::new(config.runner.clone(), config.run_timeout)
                .with_spares(config.max_concurrent_runs),
        ),
        secret: DomainSecret::load(&dir.secret()).context("the domain secret")?,
        release_key: setup.release_key,
        state: Mutex::new(Box::new(state)),
        write: tokio::sync::Mutex::new(()),
        dir,
        config: config.clone(),
        log,
        name,
        catalog,
        policy,
        metrics,
        applied: tokio::sync::watch::Sender::new(0),
        refusals: Mutex::new(std::collections::HashMap::new()),
        versioned: Mutex::new(std::collections::HashMap::new()),
        history: Mutex::new(history),
    });
    {
        let guard = core.write.lock().await;
        if setup.new_log {
            bootstrap(&core, &guard).await?;
        }
        register_datasets(&core, &guard).await?;
        require_consents(&core, &guard).await?;
        runs::fail_interrupted(&core, &guard).await?;
        tokio::task::block_in_place(|| runs::recover_releases(&core))?;
    }
    runs::resume_reviews(&core).await?;

    let tls = config.tls.as_ref().map(Tls::server_config).transpose()?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(api::serve(core, listener, tls, async {
        let _ = rx.await;
    }));
    Ok(Server { addr, shutdown: Some(tx), task })
}

/// The first administrator of a new data directory, whose token and key the operator of the
/// machine finds in `identities/admin/`.
async fn bootstrap(core: &Core, guard: &WriteGuard<'_>) -> anyhow::Result<()> {
    let identity = core.dir.identities().join(datadir::ADMIN);
    let created = sandbox_client::Identity::create(&identity, datadir::ADMIN, &auth::new_token())?;
    let key = created.key.verifier().to_string();
    let token = auth::token_hash(&created.token);
    let event = Event::PrincipalRegistered {
        principal: datadir::ADMIN.to_owned(),
        role: auth::Role::Admin.code().to_owned(),
        key,
        token_sha256: Some(token),
        display_name: Some("数据主管部门管理员 Bureau administrator".to_owned()),
        provider: None,
    };
    core.commit_own(guard, event).await?;
    Ok(())
}

/// Logs each catalog dataset whose version (the SHA-256 of its files) is new.
async fn register_datasets(core: &Core, guard: &WriteGuard<'_>) -> anyhow::Result<()> {
    for dataset in &core.catalog.datasets {
        register_dataset(core, guard, dataset).await?;
    }
    Ok(())
}

/// Hashes `dataset`'s files and logs their version if the projection does not have it; records
/// which files it hashed. Whether a version is new is decided by the log, not the stamps.
async fn register_dataset(
    core: &Core,
    guard: &WriteGuard<'_>,
    dataset: &sandbox_catalog::Dataset,
) -> anyhow::Result<bool> {
    let files = dataset.stamps(Variant::Real).with_context(|| format!("reading {}", dataset.id))?;
    let version = tokio::task::block_in_place(|| dataset.version(Variant::Real))
        .with_context(|| format!("hashing {}", dataset.id))?;
    core.versioned.lock().unwrap_or_else(|e| e.into_inner()).insert(dataset.id.clone(), files);
    let known = core.view()?.dataset_version(&dataset.id)?;
    if known.as_deref() == Some(version.as_str()) {
        return Ok(false);
    }
    let event = Event::DatasetRegistered {
        dataset: dataset.id.clone(),
        version: version.to_string(),
        level: dataset.level.code().to_owned(),
    };
    core.commit_own(guard, event).await?;
    Ok(true)
}

/// Registers a new version of each of `datasets` whose files changed since their version was
/// hashed (a file replaced under a running server); whether any version is new.
/// At start: a licence over datasets the catalog shares on conditions whose provider has not
/// consented — granted before consents existed, or reclassified since — waits for their
/// consent from now on (`licence.consent_required`): the catalog, read at start, is what the
/// licence is held to, not what it said at the grant (red team of issue 20).
async fn require_consents(core: &Core, guard: &WriteGuard<'_>) -> anyhow::Result<()> {
    let licences = core.view()?.licences(state::Scope::All)?;
    for licence in licences.into_iter().filter(|l| l.status != model::LicenceStatus::Revoked) {
        let conditional =
            |d: &String| core.catalog.dataset(d).is_ok_and(|d| d.sharing == sandbox_catalog::Sharing::Conditional);
        let missing: Vec<String> = licence
            .datasets
            .iter()
            .filter(|d| conditional(d) && !licence.awaiting.contains(d) && !licence.consented.contains(d))
            .cloned()
            .collect();
        if !missing.is_empty() {
            tracing::warn!(licence = %licence.id, ?missing, "the licence waits for its providers' consent");
            core.commit_own(guard, Event::LicenceConsentRequired { licence: licence.id, datasets: missing }).await?;
        }
    }
    Ok(())
}

pub(crate) async fn reversion(core: &Core, guard: &WriteGuard<'_>, datasets: &[String]) -> Result<bool, ServiceError> {
    let mut new = false;
    for id in datasets {
        let Ok(dataset) = core.catalog.dataset(id) else { continue };
        let now = dataset.stamps(Variant::Real).map_err(|e| internal("dataset files", e))?;
        let same = core.versioned.lock().unwrap_or_else(|e| e.into_inner()).get(id) == Some(&now);
        if !same {
            new |= register_dataset(core, guard, dataset).await.map_err(|e| internal("dataset version", e))?;
        }
    }
    Ok(new)
}

/// Rebuilds the projection from the log into `out` (which must not exist) and returns it.
/// Opening the log takes its lock: this refuses while a server runs on the directory.
pub fn rebuild(data_dir: &std::path::Path, out: &std::path::Path) -> anyhow::Result<State> {
    let dir = DataDir::new(data_dir);
    let key = sandbox_log::keys::read_key_file(&dir.log_key())?;
    let log = Log::open(dir.log(), LogOptions::new(key))
        .with_context(|| format!("opening the log {} (is the server still running?)", dir.log().display()))?;
    anyhow::ensure!(!out.exists(), "{} exists / 已存在", out.display());
    let mut state = State::open(out)?;
    state.catch_up(&log)?;
    Ok(state)
}
