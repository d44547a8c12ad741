//! `sandbox run --dev`: the operator's development loop — a module on the synthetic twins, with
//! its output tables and development log printed in full. Production runs go through the server.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use sandbox_catalog::Catalog;
use sandbox_contract::RunMode;
use sandbox_policy::DomainSecret;
use sandbox_runner::{RunLimits, RunRequest, Runner};
use serde_json::json;

/// What names a run: the catalog, the module, its manifest and parameters.
#[derive(clap::Args)]
pub(crate) struct ModuleArgs {
    /// 目录所在文件夹 / Catalog folder
    #[arg(long)]
    pub(crate) catalog: PathBuf,
    /// 分析模块（wasm32-wasip2 组件）/ Analysis module (a wasm32-wasip2 component)
    #[arg(long)]
    pub(crate) module: PathBuf,
    /// 模块清单 module.toml / The module's manifest
    #[arg(long)]
    pub(crate) manifest: PathBuf,
    /// 参数 name=value，可重复 / A parameter name=value (repeatable)
    #[arg(long = "param", value_name = "NAME=VALUE")]
    params: Vec<String>,
}

/// The files a run reads, opened.
pub(crate) struct Loaded {
    pub(crate) catalog: Catalog,
    pub(crate) module: Vec<u8>,
    pub(crate) manifest: String,
    pub(crate) parameters: Vec<(String, String)>,
}

impl ModuleArgs {
    pub(crate) fn load(&self) -> anyhow::Result<Loaded> {
        let catalog =
            Catalog::open(&self.catalog).with_context(|| format!("opening catalog {}", self.catalog.display()))?;
        let module = std::fs::read(&self.module).with_context(|| format!("reading {}", self.module.display()))?;
        let manifest =
            std::fs::read_to_string(&self.manifest).with_context(|| format!("reading {}", self.manifest.display()))?;
        let mut parameters = Vec::new();
        for param in &self.params {
            let Some((name, value)) = param.split_once('=') else {
                bail!("--param {param:?} is not NAME=VALUE / 参数格式应为 NAME=VALUE");
            };
            parameters.push((name.to_owned(), value.to_owned()));
        }
        Ok(Loaded { catalog, module, manifest, parameters })
    }
}

/// `sandbox run`: with `--catalog`, a development run here on the twins (module and manifest
/// files); without, through the server — `--agreement` for a production run of an approved
/// module, `--dev` for a development run of a submitted one (modules named by SHA-256).
#[derive(clap::Args)]
pub(crate) struct Args {
    /// 在合成孪生数据上运行（开发调试）/ Run on the synthetic twins (development)
    #[arg(long)]
    dev: bool,
    /// 本地运行：目录所在文件夹 / Run here: the catalog folder
    #[arg(long, requires_all = ["dev", "manifest"])]
    catalog: Option<PathBuf>,
    /// 模块：本地运行时为 wasm 文件，经服务端时为其 SHA-256 / The module: a wasm file here, its
    /// SHA-256 on the server
    #[arg(long)]
    module: String,
    /// 模块清单 module.toml（本地运行）/ The module's manifest (runs here)
    #[arg(long)]
    manifest: Option<PathBuf>,
    /// 参数 name=value，可重复 / A parameter name=value (repeatable)
    #[arg(long = "param", value_name = "NAME=VALUE")]
    params: Vec<String>,
    /// 生产运行所依据的数据服务协议 / The service agreement a production run serves
    #[arg(long, conflicts_with = "dev")]
    agreement: Option<String>,
    /// 只排队，不等待结束 / Queue the run and return
    #[arg(long)]
    no_wait: bool,
    /// 每张表最多显示的行数 / Rows shown per table
    #[arg(long, default_value_t = 50)]
    max_rows: usize,
    #[command(flatten)]
    connect: crate::client::Connect,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let Some(catalog) = &args.catalog else {
        return crate::client::block_on(async {
            match &args.agreement {
                Some(agreement) => {
                    crate::client::production_run(
                        &args.connect,
                        args.module.clone(),
                        agreement.clone(),
                        &args.params,
                        !args.no_wait,
                    )
                    .await
                }
                None if args.dev => crate::client::develop_run(&args.connect, args.module.clone(), &args.params).await,
                None => bail!(
                    "a run through the server needs --agreement (production) or --dev; a run here needs --dev --catalog \
                     --manifest / 经服务端运行须指定 --agreement 或 --dev；本地运行须指定 --dev --catalog --manifest"
                ),
            }
        });
    };
    let local = ModuleArgs {
        catalog: catalog.clone(),
        module: PathBuf::from(&args.module),
        manifest: args.manifest.clone().unwrap_or_default(),
        params: args.params.clone(),
    };
    let Loaded { catalog, module, manifest, parameters } = local.load()?;

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let runner = Runner::new(RunLimits::default(), None)?;
    let key = DomainSecret::from_bytes(crate::policy::TWIN_SECRET).licence_key("dev");
    let request = RunRequest {
        module: &module,
        manifest: &manifest,
        parameters: &parameters,
        catalog: &catalog,
        mode: RunMode::Development,
        key: Some(key),
        limits: None,
    };
    let outcome = runtime.block_on(runner.run(request));
    let (log, truncated) = outcome.dev_log.clone().unwrap_or_default();
    let ok = outcome.record.error.is_none();

    if args.connect.json {
        let tables: Vec<_> = outcome
            .tables
            .iter()
            .map(|t| json!({ "name": t.name, "sha256": t.sha256, "rows": t.batch.num_rows() }))
            .collect();
        let out = json!({ "record": outcome.record, "tables": tables, "log": log, "log_truncated": truncated });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for table in &outcome.tables {
            let rows = table.batch.num_rows();
            println!("输出表 / output table {}  ({rows} 行 / rows, sha256 {})", table.name, table.sha256);
            println!("{}", crate::policy::result_table(std::slice::from_ref(&table.batch), args.max_rows)?);
        }
        if !log.is_empty() {
            println!("开发日志 / development log:");
            print!("{log}");
            if truncated {
                println!("…（日志已截断 / log truncated）");
            }
        }
        let r = &outcome.record;
        println!(
            "燃料 / fuel {}  用时 / wall {} ms  内存峰值 / peak memory {} MiB  查询 / queries {}",
            r.fuel_used,
            r.wall_time_ms,
            r.peak_memory_bytes >> 20,
            r.queries
        );
        match &r.error {
            None => println!("运行成功（合成孪生数据）/ run succeeded (synthetic twins)"),
            Some(err) => println!("运行失败 / run failed [{}]: {}", err.code(), err.explain()),
        }
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
