//! `sandbox audit`: runs a module and prints only what the output audit lets out — the released
//! audit report and the host's released tables (with `--internal`, the internal report with
//! every figure instead: the bureau's view). On real data it is the bureau's tool; with
//! `--twin`, on the synthetic twins, operators use it to see how their outputs would fare
//! before submitting, and the internal report is theirs to read.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use datafusion::arrow::util::display::array_value_to_string;
use sandbox_audit::budget::Ledger;
use sandbox_audit::{AuditPolicy, AuditRequest, UnitHasher, Verdict};
use sandbox_catalog::Variant;
use sandbox_contract::wire::RunnerRequest;
use sandbox_contract::{Manifest, RunMode};
use sandbox_policy::DomainSecret;
use sandbox_server::RunnerCommand;
use sandbox_server::executor::{Ended, Executor, ProcessExecutor};
use serde_json::json;

use crate::run::{Loaded, ModuleArgs};

#[derive(clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    module: ModuleArgs,
    /// 在合成孪生数据上预演审核 / Rehearse the audit on the synthetic twins
    #[arg(long)]
    twin: bool,
    /// 审核策略文件（只能收紧默认规则）/ Audit policy file (may only tighten the defaults)
    #[arg(long)]
    policy: Option<PathBuf>,
    /// 发布历史：已发布单元格的草图（JSON 行，差分检查）与已发布的表（<文件>.tables，跨次边际检查），
    /// 审核后追加本次发布的内容；密钥在 <文件>.key，同一历史的审核依次进行（<文件>.lock）
    /// / Release history: sketches of released cells (JSON lines, for differencing) and released
    /// tables (<file>.tables, for margins across runs), to which this audit's release is appended;
    /// its key is in <file>.key, and audits of one history take turns (<file>.lock)
    #[arg(long)]
    history: Option<PathBuf>,
    /// 隐私预算账本（策略对所读数据集启用差分隐私时必需）/ Privacy budget ledger (needed when the
    /// policy puts a dataset the module reads under differential privacy)
    #[arg(long, requires = "operator")]
    budget: Option<PathBuf>,
    /// 运营单位标识，按其扣减隐私预算 / The operator whose privacy budget the run spends
    #[arg(long)]
    operator: Option<String>,
    /// 每张表最多显示的行数 / Rows shown per table
    #[arg(long, default_value_t = 50)]
    max_rows: usize,
    /// 打印内部审核报告（含全部数值；仅限数据主管部门，或 --twin 预演）/ Print the internal
    /// report, with every figure (the bureau's view, or a rehearsal with --twin)
    #[arg(long)]
    internal: bool,
    /// 以 JSON 输出 / Print JSON
    #[arg(long)]
    json: bool,
    /// 独立的运行器可执行文件（默认：本程序的 sandbox runner）：模块在其进程中运行，不在本进程 /
    /// A runner executable of its own (default: this program's `sandbox runner`): the module runs
    /// in its process, never in this one
    #[arg(long)]
    runner: Option<PathBuf>,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let Loaded { catalog, module, manifest: manifest_text, parameters } = args.module.load()?;
    let policy = match &args.policy {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            AuditPolicy::parse(&text)?
        }
        None => AuditPolicy::default(),
    };
    let manifest = Manifest::parse(&manifest_text)?;
    // The contract is judged before anything runs, with this run's parameter values: its
    // problems, each with its place and what to change, are the operator's to read.
    let bound = manifest.bind(&parameters)?;
    let bound: Vec<(String, String)> = bound.into_iter().map(|(n, v)| (n, v.to_string())).collect();
    let judge = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(sandbox_policy::contract::judge(&manifest, &catalog, Some(&bound)));
    if let Err(problems) = judge {
        if args.json {
            let problems: Vec<_> =
                problems.problems.iter().map(|p| json!({ "place": p.place, "en": p.en, "zh": p.zh })).collect();
            println!("{}", json!({ "contract_refused": problems }));
        } else {
            println!("输出契约被拒绝，未运行 / the output contract is refused, nothing ran:");
            for p in &problems.problems {
                println!("  {p}");
            }
        }
        return Ok(ExitCode::FAILURE);
    }
    // One order of releases: another audit of the same history waits until this one has
    // appended what it released.
    let _lock = args.history.as_deref().map(sandbox_audit::history::lock).transpose()?;
    let (hasher, earlier) = match &args.history {
        Some(path) => sandbox_audit::history::open(path)?,
        // Without a history, differencing compares this run's cells with each other only.
        None => (UnitHasher::new(&rand::random()), Default::default()),
    };
    let variant = if args.twin { Variant::Twin } else { Variant::Real };

    // Differential privacy: one run's ρ reserved on each such dataset before the run. A
    // rehearsal on the twins spends nothing.
    let dp: Vec<(&str, &sandbox_audit::DpSettings)> =
        manifest.datasets.iter().filter_map(|d| policy.dp(d).map(|s| (d.as_str(), s))).filter(|_| !args.twin).collect();
    let reservation = match (&dp[..], &args.budget, &args.operator) {
        ([], _, _) => None,
        (_, Some(path), Some(operator)) => {
            let ledger = Ledger::new(path);
            let id = ledger.reserve(operator, &dp)?;
            Some((ledger, id))
        }
        _ => anyhow::bail!(
            "{} is released under differential privacy: give --budget and --operator / 该数据集启用了差分隐私，须提供 --budget 和 --operator",
            dp[0].0
        ),
    };
    // The module runs on the data: whatever it or the audit answers depends on it, noised or
    // not, so the reservation is kept however the run ends.
    let settle = || -> anyhow::Result<()> {
        if let Some((ledger, id)) = &reservation {
            ledger.keep(*id)?;
        }
        Ok(())
    };

    // A production run: codes only, no development log, in a runner process (no
    // network, read-only file systems, rlimits) as the server's runs are: untrusted code never
    // runs in this process, which reads the raw data for the audit. Pseudonyms never leave the
    // host, so a key of this invocation's own serves.
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let config = sandbox_server::Config::new(PathBuf::new());
    let runner = match args.runner.clone() {
        Some(path) => RunnerCommand::standalone(path),
        None => crate::serve::own_runner()?,
    };
    anyhow::ensure!(runner.program.exists(), "{} not found / 找不到运行器", runner.program.display());
    let executor = ProcessExecutor::new(runner, config.run_timeout);
    let key = DomainSecret::from_bytes(rand::random()).licence_key("audit");
    let mode = if args.twin { RunMode::Development } else { RunMode::Production };
    let request = RunnerRequest {
        catalog: args.module.catalog.clone(),
        module: args.module.module.clone(),
        manifest: args.module.manifest.clone(),
        parameters: parameters.clone(),
        mode,
        key: Some(hex::encode(key.to_bytes())),
        cache_dir: None,
        // Real data or twins, the module runs confined or not at all.
        require_isolation: true,
    };
    let (_never, cancel) = tokio::sync::watch::channel(false);
    let outcome = match runtime.block_on(executor.run(&request, cancel)) {
        Ended::Done(answer) => answer,
        Ended::Failed(code) => {
            settle()?;
            anyhow::bail!("the runner gave no answer: {code} / 运行进程未给出结果：{code}");
        }
        Ended::Cancelled => unreachable!("nothing cancels this run"),
    };
    // The files were read twice, here and by the runner: its record must be of these bytes.
    let sha = |bytes: &[u8]| hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes));
    if !outcome.record.is_of(&sha(&module), &sha(manifest_text.as_bytes()), mode, &bound) {
        settle()?;
        anyhow::bail!(
            "the runner's record is of another module, manifest or parameters (a file changed?) / 运行记录与所给模块、清单或参数不符"
        );
    }
    if let Some(err) = &outcome.record.error {
        settle()?;
        // On real data only the fixed code leaves; a rehearsal on the twins explains it.
        let told = if args.twin { err.to_string() } else { err.failure().as_str().to_owned() };
        if args.json {
            println!("{}", json!({ "run_error": told }));
        } else {
            println!("运行失败，未审核 / the run failed, nothing to audit: {told}");
        }
        return Ok(ExitCode::FAILURE);
    }
    let audit = runtime.block_on(sandbox_audit::audit(AuditRequest {
        catalog: &catalog,
        variant,
        manifest: &manifest,
        record: &outcome.record,
        tables: &outcome.tables,
        policy: &policy,
        hasher: &hasher,
        earlier: &earlier,
    }));
    let audit = match audit {
        Ok(audit) => audit,
        Err(e) => {
            settle()?;
            return Err(e.into());
        }
    };
    settle()?;
    let mut left = Vec::new();
    if let (Some((ledger, _)), Some(operator)) = (&reservation, &args.operator) {
        for (dataset, settings) in &dp {
            left.push((dataset.to_string(), ledger.queries_left(operator, dataset, settings)?));
        }
    }
    // Rehearsals on the twins release nothing, so they add nothing to the history.
    if let (Some(path), false) = (&args.history, args.twin) {
        sandbox_audit::history::append(path, &audit.history)?;
    }

    if args.json {
        let released: Vec<_> = audit
            .released
            .iter()
            .map(|t| {
                let columns: Vec<String> = t.batch.schema().fields().iter().map(|f| f.name().clone()).collect();
                let rows: Vec<Vec<String>> = (0..t.batch.num_rows())
                    .map(|r| {
                        t.batch.columns().iter().map(|c| array_value_to_string(c, r).unwrap_or_default()).collect()
                    })
                    .collect();
                json!({ "name": t.name, "columns": columns, "rows": rows })
            })
            .collect();
        let report: serde_json::Value = if args.internal {
            serde_json::from_slice(&audit.report.to_json())?
        } else {
            serde_json::from_slice(&audit.released_report.to_json())?
        };
        let left: serde_json::Map<String, serde_json::Value> =
            left.iter().map(|(d, n)| (d.clone(), json!(n))).collect();
        let out = json!({
            "report": report,
            "report_sha256": audit.released_report.sha256(),
            "breach": !audit.breach.is_empty(),
            "released": released,
            "queries_left": left,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        if args.internal {
            print!("{}", audit.report_text());
        } else {
            print!("{}", audit.released_report.text());
        }
        for table in &audit.released {
            println!("\n可出域的表 / released table {}", table.name);
            println!("{}", crate::policy::result_table(std::slice::from_ref(&table.batch), args.max_rows)?);
        }
        if args.twin {
            println!("（合成孪生数据上的预演 / a rehearsal on the synthetic twins）");
        }
        for (dataset, n) in &left {
            println!("隐私预算：{dataset} 剩余查询 {n} 次 / privacy budget: {n} queries left on {dataset}");
        }
    }
    Ok(if audit.report.outcome <= Verdict::Suppressed { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
