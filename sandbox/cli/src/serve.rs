//! `sandbox serve`, `sandbox state rebuild` and `sandbox demo`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use sandbox_proto::v1 as pb;
use sandbox_server::state::Projection;
use sandbox_server::{Config, RunnerCommand};
use sandbox_verify::time::Timestamp;

use sandbox_client::Session;

use crate::client;

/// `sandbox serve`'s settings. Each is taken, from the lowest layer to the highest, from the
/// defaults (`sandbox_server::Config::new`, the one place they are written), the `--config`
/// file, the `SANDBOX_SERVE_*` environment variables, and the flags; `--print-config` shows the
/// result.
#[derive(clap::Args)]
pub(crate) struct ServeArgs {
    /// 配置文件（TOML，键名同下列选项，如 max_runs = 4）/ A configuration file (TOML; keys as the
    /// flags below, e.g. max_runs = 4)
    #[arg(long, env = "SANDBOX_SERVE_CONFIG")]
    config: Option<PathBuf>,
    /// 打印合并后的配置并退出 / Print the merged configuration and exit
    #[arg(long)]
    print_config: bool,
    /// 数据目录（目录 catalog/、日志、密钥、状态库；默认 sandbox-data）/ The data folder (catalog/,
    /// log, keys, state; default sandbox-data)
    #[arg(long, env = "SANDBOX_SERVE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// 监听地址（gRPC 与 /healthz、/metrics 同端口；默认 127.0.0.1:7700）/ Address for gRPC,
    /// /healthz and /metrics (default 127.0.0.1:7700)
    #[arg(long, env = "SANDBOX_SERVE_LISTEN")]
    listen: Option<SocketAddr>,
    /// 独立的运行器可执行文件，如 sandbox-runner（默认：本程序的 sandbox runner）/ A runner
    /// executable of its own, such as sandbox-runner (default: this program's `sandbox runner`)
    #[arg(long, env = "SANDBOX_SERVE_RUNNER")]
    runner: Option<PathBuf>,
    /// 同时运行的模块数（默认 2）/ Runs at once (default 2)
    #[arg(long, env = "SANDBOX_SERVE_MAX_RUNS")]
    max_runs: Option<usize>,
    /// 单次运行时限（秒，默认 600）/ Seconds a run may take (default 600)
    #[arg(long, env = "SANDBOX_SERVE_RUN_TIMEOUT")]
    run_timeout: Option<u64>,
    /// 每个主体每分钟逐条记入日志的被拒请求数，其余只计数（默认 60）/ Refused calls of one
    /// principal logged one by one per minute; the rest are counted and the count logged with
    /// the next (default 60)
    #[arg(long, env = "SANDBOX_SERVE_REFUSALS_PER_MINUTE")]
    refusals_per_minute: Option<u32>,
    /// 无法隔离（断网、只读文件系统、独立进程空间）时拒绝运行（默认 true）/ Refuse runs where the
    /// runner cannot confine itself: no network, read-only file systems, its own PID namespace
    /// (default true; false only on a machine without user namespaces, knowingly)
    #[arg(long, env = "SANDBOX_SERVE_REQUIRE_ISOLATION", num_args = 0..=1, default_missing_value = "true")]
    require_isolation: Option<bool>,
    /// 服务端证书（PEM），启用 TLS / The server's certificate (PEM): serve TLS
    #[arg(long, env = "SANDBOX_SERVE_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// 服务端私钥（PEM）/ The server's private key (PEM)
    #[arg(long, env = "SANDBOX_SERVE_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// 客户端证书的签发 CA（PEM）：双向 TLS，无此 CA 签发证书的连接一律拒绝 / CA of client
    /// certificates (PEM): mutual TLS; connections without a certificate it signed are refused
    #[arg(long, env = "SANDBOX_SERVE_TLS_CLIENT_CA")]
    tls_client_ca: Option<PathBuf>,
    /// 日志级别过滤（如 info、sandbox_server=debug；默认 info）/ Log filter (e.g. info,
    /// sandbox_server=debug; default info)
    #[arg(long, env = "SANDBOX_SERVE_LOG")]
    log: Option<String>,
    /// 日志格式 text 或 json（默认 text）/ Log format, text or json (default text)
    #[arg(long, env = "SANDBOX_SERVE_LOG_FORMAT")]
    log_format: Option<LogFormat>,
}

/// How the server's own log (tracing, on stderr) is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogFormat {
    #[default]
    Text,
    Json,
}

/// One layer of settings: the file, or the environment and flags. Every key optional; unknown
/// keys refused.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Layer {
    data_dir: Option<PathBuf>,
    listen: Option<SocketAddr>,
    runner: Option<PathBuf>,
    max_runs: Option<usize>,
    run_timeout: Option<u64>,
    refusals_per_minute: Option<u32>,
    require_isolation: Option<bool>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_client_ca: Option<PathBuf>,
    log: Option<String>,
    log_format: Option<LogFormat>,
}

impl Layer {
    /// `self`, with what `over` sets instead.
    fn under(self, over: Layer) -> Layer {
        Layer {
            data_dir: over.data_dir.or(self.data_dir),
            listen: over.listen.or(self.listen),
            runner: over.runner.or(self.runner),
            max_runs: over.max_runs.or(self.max_runs),
            run_timeout: over.run_timeout.or(self.run_timeout),
            refusals_per_minute: over.refusals_per_minute.or(self.refusals_per_minute),
            require_isolation: over.require_isolation.or(self.require_isolation),
            tls_cert: over.tls_cert.or(self.tls_cert),
            tls_key: over.tls_key.or(self.tls_key),
            tls_client_ca: over.tls_client_ca.or(self.tls_client_ca),
            log: over.log.or(self.log),
            log_format: over.log_format.or(self.log_format),
        }
    }

    /// The defaults, as a layer with every key set.
    fn defaults() -> Layer {
        let config = Config::new(PathBuf::from(sandbox_server::DEFAULT_DATA_DIR));
        Layer {
            data_dir: Some(config.data_dir),
            listen: Some(config.listen),
            // None: this program's own `sandbox runner`.
            runner: None,
            max_runs: Some(config.max_concurrent_runs),
            run_timeout: Some(config.run_timeout.as_secs()),
            refusals_per_minute: Some(config.refusals_per_minute),
            require_isolation: Some(config.require_isolation),
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            log: Some("info".to_owned()),
            log_format: Some(LogFormat::Text),
        }
    }
}

/// The merged settings of `sandbox serve`.
pub(crate) struct Settings {
    pub(crate) config: Config,
    pub(crate) log: String,
    pub(crate) log_format: LogFormat,
    /// The merged layer, for `--print-config`.
    merged: Layer,
}

impl ServeArgs {
    pub(crate) fn settings(&self) -> anyhow::Result<Settings> {
        let file = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
                toml::from_str::<Layer>(&text)
                    .with_context(|| format!("{}: not a server configuration / 配置文件无效", path.display()))?
            }
            None => Layer::default(),
        };
        let given = Layer {
            data_dir: self.data_dir.clone(),
            listen: self.listen,
            runner: self.runner.clone(),
            max_runs: self.max_runs,
            run_timeout: self.run_timeout,
            refusals_per_minute: self.refusals_per_minute,
            require_isolation: self.require_isolation,
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            tls_client_ca: self.tls_client_ca.clone(),
            log: self.log.clone(),
            log_format: self.log_format,
        };
        let merged = Layer::defaults().under(file).under(given);
        let some = |what: &str| anyhow::anyhow!("{what} has no value");
        let mut config = Config::new(merged.data_dir.clone().ok_or_else(|| some("data_dir"))?);
        config.listen = merged.listen.ok_or_else(|| some("listen"))?;
        config.runner = match &merged.runner {
            Some(path) => RunnerCommand::standalone(path.clone()),
            None => own_runner()?,
        };
        config.max_concurrent_runs = merged.max_runs.ok_or_else(|| some("max_runs"))?;
        config.run_timeout = Duration::from_secs(merged.run_timeout.ok_or_else(|| some("run_timeout"))?);
        config.refusals_per_minute = merged.refusals_per_minute.ok_or_else(|| some("refusals_per_minute"))?;
        config.require_isolation = merged.require_isolation.unwrap_or_default();
        anyhow::ensure!(config.max_concurrent_runs > 0, "max_runs must be at least 1 / max_runs 至少为 1");
        anyhow::ensure!(!config.run_timeout.is_zero(), "run_timeout must be at least 1 / run_timeout 至少为 1");
        config.tls = match (&merged.tls_cert, &merged.tls_key, &merged.tls_client_ca) {
            (Some(cert), Some(key), client_ca) => {
                Some(sandbox_server::Tls { cert: cert.clone(), key: key.clone(), client_ca: client_ca.clone() })
            }
            (None, None, None) => None,
            _ => anyhow::bail!(
                "tls_cert and tls_key go together, and tls_client_ca needs them / tls_cert 与 tls_key 须同时给出，tls_client_ca 需要二者"
            ),
        };
        let log = merged.log.clone().unwrap_or_default();
        let log_format = merged.log_format.unwrap_or_default();
        Ok(Settings { config, log, log_format, merged })
    }
}

pub(crate) fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let settings = args.settings()?;
    if args.print_config {
        print!("{}", toml::to_string(&settings.merged)?);
        return Ok(ExitCode::SUCCESS);
    }
    crate::init_tracing(&settings.log, settings.log_format)?;
    let config = settings.config;
    client::block_on(async {
        let admin = config.data_dir.join("identities/admin");
        let scheme = if config.tls.is_some() { "https" } else { "http" };
        let server = sandbox_server::start(config).await?;
        // Tests and scripts wait for this line.
        println!("listening on {scheme}://{} / 服务已启动", server.addr);
        println!("管理员身份 / admin identity: {}", admin.display());
        server.wait().await?;
        Ok(ExitCode::SUCCESS)
    })
}

#[derive(clap::Subcommand)]
pub(crate) enum StateCommand {
    /// 从日志重建状态库并与现有状态比较（服务须已停止）/ Rebuild the state database from the log
    /// and compare it with the live one (the server must be stopped)
    Rebuild {
        #[arg(long, default_value = sandbox_server::DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
        /// 只比较，不替换 / Compare only; keep the live database
        #[arg(long)]
        check: bool,
    },
}

pub(crate) fn state(command: StateCommand) -> anyhow::Result<ExitCode> {
    let StateCommand::Rebuild { data_dir, check } = command;
    let dir = sandbox_server::DataDir::new(&data_dir);
    let out = data_dir.join("state.rebuilt.sqlite");
    let _ = std::fs::remove_file(&out);
    let rebuilt = sandbox_server::rebuild(&data_dir, &out)?;
    let live = if dir.state().exists() { Some(sandbox_server::State::open(&dir.state())?.dump()?) } else { None };
    let from_log = rebuilt.dump()?;
    let same = live.as_deref() == Some(from_log.as_str());
    drop(rebuilt);
    if check {
        std::fs::remove_file(&out)?;
        if same {
            println!("一致 / identical: the live state equals the state rebuilt from the log");
            return Ok(ExitCode::SUCCESS);
        }
        println!("不一致 / DIFFERENT: the live state is not what the log gives");
        // The first lines that differ, live (-) against rebuilt (+).
        let live = live.unwrap_or_default();
        let (a, b): (Vec<&str>, Vec<&str>) = (live.lines().collect(), from_log.lines().collect());
        let differ = (0..a.len().max(b.len())).filter(|&i| a.get(i) != b.get(i)).take(5);
        for i in differ {
            println!("  - {}\n  + {}", a.get(i).unwrap_or(&""), b.get(i).unwrap_or(&""));
        }
        return Ok(ExitCode::FAILURE);
    }
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", dir.state().display()));
    }
    std::fs::rename(&out, dir.state())?;
    println!(
        "已重建 / rebuilt {} from the log{}",
        dir.state().display(),
        if live.is_some() && !same { " (the old state differed / 旧状态与日志不一致)" } else { "" }
    );
    Ok(ExitCode::SUCCESS)
}

/// `sandbox runner` of this very program, whatever its file is called.
pub(crate) fn own_runner() -> anyhow::Result<RunnerCommand> {
    let program = std::env::current_exe().context("the path of this program / 无法确定本程序路径")?;
    Ok(RunnerCommand::subcommand(program))
}

#[derive(clap::Args)]
pub(crate) struct DemoArgs {
    /// 数据目录（保留，之后可 sandbox serve）/ The data folder, kept for `sandbox serve`
    #[arg(long, default_value = sandbox_server::DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// 合成城市的居民数 / Residents of the synthetic city
    #[arg(long, default_value_t = 100_000)]
    scale: u64,
    /// 独立的运行器可执行文件（默认：本程序的 sandbox runner）/ A runner executable of its own
    /// (default: this program's `sandbox runner`)
    #[arg(long)]
    runner: Option<PathBuf>,
    /// 审核策略文件，复制为数据目录的 policy.toml（如 examples/policy.toml：单元格键值扰动）
    /// / Audit policy file, copied into the data folder as policy.toml (e.g. examples/policy.toml:
    /// the cell key method)
    #[arg(long)]
    policy: Option<PathBuf>,
}

fn step(n: u32, zh: &str, en: &str) {
    println!("\n[{n}] {zh} / {en}");
}

/// The whole flow, once, on a fresh or earlier demo data folder.
pub(crate) fn demo(args: DemoArgs) -> anyhow::Result<ExitCode> {
    client::block_on(async move {
        let dir = &args.data_dir;
        step(1, "生成合成城市数据", "generate the synthetic city");
        if dir.join("catalog").exists() {
            println!("    {} exists; reusing it / 已存在，沿用", dir.join("catalog").display());
        } else {
            let config = sandbox_datagen::Config {
                out: dir.join("catalog"),
                scale: args.scale,
                seed: 1,
                twin_scale: None,
                progress: false,
            };
            let summary = sandbox_datagen::generate(&config).context("generating data")?;
            let rows: u64 = summary.datasets.iter().map(|d| d.rows + d.twin_rows).sum();
            println!("    {} residents, {rows} rows → {}", args.scale, dir.join("catalog").display());
        }

        if let Some(policy) = &args.policy {
            let text = std::fs::read_to_string(policy).with_context(|| format!("reading {}", policy.display()))?;
            sandbox_audit::AuditPolicy::parse(&text)?;
            std::fs::write(dir.join("policy.toml"), text)?;
            println!("    审核策略 / audit policy: {} → {}", policy.display(), dir.join("policy.toml").display());
        }

        step(2, "在回环地址上启动服务", "start the server on a loopback port");
        let mut config = Config::new(dir.clone());
        config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config.runner = match &args.runner {
            Some(path) => RunnerCommand::standalone(path.clone()),
            None => own_runner()?,
        };
        anyhow::ensure!(config.runner.program.exists(), "{} not found / 找不到运行器", config.runner.program.display());
        let server = sandbox_server::start(config).await?;
        let url = format!("http://{}", server.addr);
        println!("    {url}  (gRPC; {url}/healthz, {url}/metrics)");
        let result = flow(dir, &url).await;
        server.stop().await?;
        result?;
        println!("\n数据目录已保留 / the data folder is kept: {}", dir.display());
        println!("    sandbox serve --data-dir {}            # 继续使用 / carry on", dir.display());
        println!(
            "    sandbox --as {}/identities/operator-demo module list --server http://127.0.0.1:7700",
            dir.display()
        );
        println!("    sandbox-verify audit {}/log --trust {}/keys/trust", dir.display(), dir.display());
        Ok(ExitCode::SUCCESS)
    })
}

const OPERATOR: &str = "operator-demo";
const UNIT: &str = "unit-demo";
/// The persons register's data provider (数源部门).
const PROVIDER: &str = "provider-psb";
const REVIEWERS: [&str; 2] = ["reviewer-a", "reviewer-b"];
const LICENCE: &str = "lic-demo";
const AGREEMENT: &str = "agr-demo";

async fn flow(dir: &Path, url: &str) -> anyhow::Result<()> {
    let ids = dir.join("identities");
    let admin = Session::open(url, &ids.join("admin"), None).await?;

    step(
        3,
        "登记数据局审核员、运营单位、应用单位和评估机构",
        "register reviewers, an operator, an application unit, an evaluator",
    );
    for (name, role, display_name, provider) in [
        (REVIEWERS[0], "reviewer", "包头市数据局审核员甲 Reviewer A", None),
        (REVIEWERS[1], "reviewer", "包头市数据局审核员乙 Reviewer B", None),
        (OPERATOR, "operator", "示例数据运营有限公司 Demo Operator Ltd", None),
        (UNIT, "application_unit", "示例区人民政府 Demo District Government", None),
        ("evaluator-demo", "evaluator", "示例评估中心 Demo Evaluation Centre", None),
        // The persons register's 数源部门, as the generated catalog names it.
        (PROVIDER, "provider", "包头市公安局 Baotou Public Security Bureau", Some("包头市公安局")),
    ] {
        if ids.join(name).join("token").exists() {
            println!("    {name}: registered before / 已登记");
            continue;
        }
        let new = client::NewPrincipal { name, role, display_name, provider };
        client::register(&admin, &new, &ids.join(name)).await?;
        println!("    {name} ({role}) → {}", ids.join(name).display());
    }
    let operator = Session::open(url, &ids.join(OPERATOR), None).await?;
    let unit = Session::open(url, &ids.join(UNIT), None).await?;

    step(4, "授予授权运营协议，签订数据服务协议", "grant a licence, file a service agreement");
    let until = Timestamp(Timestamp::now().0 + 365 * 86_400).to_string();
    let licences = admin.licences().list(pb::Empty {}).await?.into_inner().licences;
    if !licences.iter().any(|l| l.id == LICENCE) {
        admin
            .licences()
            .grant(pb::GrantLicenceRequest {
                id: LICENCE.into(),
                operator: OPERATOR.into(),
                datasets: vec!["persons".into(), "enterprises".into()],
                purpose: "人口结构与市场主体分析产品 Population and market-entity products".into(),
                valid_from: Timestamp::now().to_string(),
                valid_until: until.clone(),
            })
            .await?;
    }
    println!("    licence {LICENCE}: {OPERATOR} × persons, enterprises, until {until}");
    // The persons register is shared on conditions (有条件共享): its provider consents, signed.
    let provider = Session::open(url, &ids.join(PROVIDER), None).await?;
    let licences = provider.licences().list(pb::Empty {}).await?.into_inner().licences;
    if licences.iter().any(|l| l.id == LICENCE && l.awaiting_consent.iter().any(|d| d == "persons")) {
        let entry = provider.signed(sandbox_verify::event::Event::LicenceConsented {
            licence: LICENCE.into(),
            dataset: "persons".into(),
        })?;
        provider.licences().consent(pb::SignedConsent { entry }).await?;
    }
    println!("    {PROVIDER} (数源部门 provider) consents to {LICENCE} over persons / 同意");
    let agreements = operator.agreements().list(pb::Empty {}).await?.into_inner().agreements;
    if !agreements.iter().any(|a| a.id == AGREEMENT) {
        operator
            .agreements()
            .create(pb::CreateAgreementRequest {
                id: AGREEMENT.into(),
                licence: LICENCE.into(),
                application_unit: UNIT.into(),
                scenario: "区级养老服务设施规划 Planning district elderly-care facilities".into(),
                valid_until: until,
            })
            .await?;
    }
    println!("    agreement {AGREEMENT}: {OPERATOR} → {UNIT}");

    step(5, "运营单位提交签名的分析模块", "the operator submits a signed analysis module");
    let sha = submit(&operator, "population").await?;

    step(6, "两名不同的审核员签名批准", "two different reviewers approve, each signing");
    approve(url, &ids, &operator, &sha).await?;

    step(
        7,
        "在真实数据上运行（生产运行，只返回状态码和审核报告）",
        "run on the real data (production: status codes and the audit report only)",
    );
    let run = operator
        .runs()
        .start(pb::StartRunRequest {
            module: sha.clone(),
            agreement: AGREEMENT.into(),
            parameters: vec![pb::Parameter { name: "reference_date".into(), value: "2024-12-31".into() }],
        })
        .await?
        .into_inner();
    let run = operator.follow(&run.id, |r| println!("    {}  {}", r.id, client::status_name(r.status))).await?;

    step(8, "出域审核报告", "the output audit's report");
    for line in run.audit_report_text.lines().take(20) {
        println!("    {line}");
    }
    if run.audit_report_text.lines().count() > 20 {
        println!("    … ({} lines; `sandbox runs show {}`)", run.audit_report_text.lines().count(), run.id);
    }
    anyhow::ensure!(
        run.status == pb::RunStatus::Released as i32,
        "the run ended {} ({}) / 运行未发布",
        client::status_name(run.status),
        run.error_code
    );

    step(9, "应用单位下载签名结果", "the application unit downloads the signed result");
    let out = dir.join("downloads").join(&run.release);
    let _ = std::fs::remove_dir_all(&out);
    let bundle = unit.download(&run.release, &out).await?;
    for file in &bundle.files {
        println!("    {}/{} ({} bytes)", out.display(), file.path, file.data.len());
    }

    step(10, "用 sandbox-verify 核验", "verify it with sandbox-verify");
    let trust = dir.join("keys/trust");
    println!("    sandbox-verify release {} --trust {}", out.display(), trust.display());
    let report = sandbox_client::verify_bundle(&out, &trust)?;
    for problem in &report.problems {
        println!("    ✗ {problem}");
    }
    anyhow::ensure!(report.verified(), "the release did not verify / 核验未通过");
    let checkpoint = unit.log().checkpoint(pb::Empty {}).await?.into_inner();
    println!(
        "    ✓ signed by the release key, entry {} of a log of {} entries, {} result files match",
        report.index.unwrap_or_default(),
        checkpoint.size,
        report.results.len()
    );

    step(
        11,
        "第二个模块：审核扣下的单元格只注明规则，不给数值",
        "a second module: the audit withholds cells, naming the rule and no figure of them",
    );
    let sha = submit(&operator, "capital").await?;
    approve(url, &ids, &operator, &sha).await?;
    let run = operator
        .runs()
        .start(pb::StartRunRequest { module: sha, agreement: AGREEMENT.into(), parameters: vec![] })
        .await?
        .into_inner();
    let run = operator.follow(&run.id, |r| println!("    {}  {}", r.id, client::status_name(r.status))).await?;
    anyhow::ensure!(
        run.status == pb::RunStatus::Released as i32,
        "the run ended {} ({}) / 运行未发布",
        client::status_name(run.status),
        run.error_code
    );
    let out = dir.join("downloads").join(&run.release);
    let _ = std::fs::remove_dir_all(&out);
    unit.download(&run.release, &out).await?;
    show_withheld(&out)?;

    step(
        12,
        "数据主管部门备案年度运营报告，评估机构从日志重新计算并核验",
        "the bureau files the annual operation report; the evaluator computes it again from the log",
    );
    let year = sandbox_verify::annual::year_of(Timestamp::now());
    let filed = admin.log().file_report(pb::ReportRequest { year }).await?.into_inner();
    println!("    {year}: log entries 0..{}, sha256 {}…, entry {}", filed.size, &filed.sha256[..16], filed.log_index);
    let evaluator = Session::open(url, &ids.join("evaluator-demo"), None).await?;
    let got = evaluator.log().get_report(pb::ReportRequest { year }).await?.into_inner();
    let path = dir.join("reports-demo").join(format!("annual-{year}.txt"));
    std::fs::create_dir_all(path.parent().expect("a folder"))?;
    std::fs::write(&path, &got.text)?;
    let operator_section = got.text.lines().skip_while(|l| !l.starts_with("  operator-demo")).take(6);
    for line in operator_section {
        println!("    {line}");
    }
    println!("    sandbox-verify report {}/log {} --trust {}", dir.display(), path.display(), trust.display());
    let trust = sandbox_verify::trust::Trust::parse(&std::fs::read_to_string(&trust)?)?;
    let check = sandbox_verify::annual::verify(&dir.join("log"), &path.display().to_string(), &got.text, &trust)?;
    for problem in &check.problems {
        println!("    ✗ {problem}");
    }
    anyhow::ensure!(check.problems.is_empty(), "the annual report did not verify / 年度报告核验未通过");
    println!("    ✓ the same report, computed again from the verified log, filed as entry {}", got.log_index);
    Ok(())
}

/// Submits an example module (signed by the operator), unless it was before; its SHA-256.
async fn submit(operator: &Session, name: &str) -> anyhow::Result<String> {
    let example = sandbox_examples::find(name).with_context(|| format!("the {name} example"))?;
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(example.wasm));
    let modules = operator.modules().list(pb::Empty {}).await?.into_inner().modules;
    if modules.iter().any(|m| m.module == sha) {
        println!("    {name} {}… submitted before / 已提交", &sha[..16]);
    } else {
        let module = operator.submit(example.wasm.to_vec(), example.manifest.to_owned(), LICENCE).await?;
        println!(
            "    {name} {}… ({} bytes); {} reviewer(s) needed for the level of its data",
            &sha[..16],
            example.wasm.len(),
            module.approvals_needed
        );
    }
    Ok(sha)
}

/// Both reviewers approve the module (as many as its data's level needs).
async fn approve(url: &str, ids: &Path, operator: &Session, sha: &str) -> anyhow::Result<()> {
    for reviewer in REVIEWERS {
        let session = Session::open(url, &ids.join(reviewer), None).await?;
        let module = operator.modules().list(pb::Empty {}).await?.into_inner().modules;
        let module = module.iter().find(|m| m.module == sha).context("the module")?;
        if module.status == pb::ModuleStatus::Approved as i32 {
            println!("    {reviewer}: not needed, the module is approved / 模块已批准，无需再审");
            continue;
        }
        if module.approvals.iter().any(|a| a == reviewer) {
            println!("    {reviewer}: approved before / 已批准");
            continue;
        }
        let module = session.approve(sha).await?;
        println!("    {reviewer} approved: {}/{}", module.approvals.len(), module.approvals_needed);
    }
    Ok(())
}

/// A released table's withheld cells beside what the released report says of each: the rule,
/// never a figure.
fn show_withheld(bundle: &Path) -> anyhow::Result<()> {
    let results = bundle.join("results");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(results.join("audit-report.json"))?)?;
    let csv = std::fs::read_to_string(results.join("capital.csv"))?;
    let rows: Vec<&str> = csv.lines().collect();
    let findings = report["tables"][0]["findings"].as_array().cloned().unwrap_or_default();
    let mut shown = 0;
    println!("    {}  ← 出域审核 / output audit", rows.first().copied().unwrap_or_default());
    for (r, row) in rows.iter().skip(1).enumerate() {
        let rules: Vec<&str> = findings
            .iter()
            .filter(|f| f["row"].as_u64() == Some(r as u64) && f["verdict"] == "suppressed")
            .filter_map(|f| f["rule"].as_str())
            .collect();
        if !rules.is_empty() || shown < 3 {
            let note = if rules.is_empty() {
                "通过 / pass".to_owned()
            } else {
                format!("抑制 / suppressed: {}", rules.join(", "))
            };
            println!("    {row}  ← {note}");
            shown += 1;
        }
        if shown >= 12 {
            break;
        }
    }
    let withheld: std::collections::BTreeSet<u64> =
        findings.iter().filter(|f| f["verdict"] == "suppressed").filter_map(|f| f["row"].as_u64()).collect();
    println!(
        "    {} rows, {} withheld and named by rule; the figures are the host's own (counts to 5, sums to 4 digits)",
        rows.len().saturating_sub(1),
        withheld.len()
    );
    println!("    {}", results.join("audit-report.json").display());
    Ok(())
}
