//! `sandbox policy check|run`: lints SQL against a licence's policy views without running it,
//! or runs it on the synthetic twins (never on real data).

use std::io::Read;

use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use sandbox_catalog::{Catalog, Variant};
use sandbox_policy::{DomainSecret, PolicyConfig, PolicyContext, PolicyError, PseudonymKey, Source};
use serde_json::json;

#[derive(clap::Subcommand)]
pub(crate) enum Command {
    /// 检查 SQL 是否符合列约束（不执行）：通过时打印每个输出列的来源，退出码 0；拒绝时打印原因，退出码 1
    /// / Check SQL against the column constraints without running it: prints `accepted` with each
    /// output column's lineage (exit 0) or `rejected: …` (exit 1)
    Check(CheckArgs),
    /// 在合成孪生数据上执行 SQL 并打印结果（开发用；从不读取真实数据）
    /// / Run SQL on the synthetic twins and print the result (for development; never reads real data)
    Run(RunArgs),
}

/// What both subcommands take: a licence's datasets and one query.
#[derive(clap::Args)]
pub(crate) struct Query {
    /// 目录文件夹 / Catalog folder
    #[arg(long)]
    catalog: PathBuf,
    /// 授权的数据集，逗号分隔 / The licence's datasets, comma-separated
    #[arg(long, value_delimiter = ',', required = true)]
    datasets: Vec<String>,
    /// SQL；"-" 表示从标准输入读取 / The SQL; "-" reads it from standard input
    #[arg(allow_hyphen_values = true)]
    sql: String,
}

impl Query {
    /// The licence's views over `variant` files, and the SQL text.
    fn open(
        self,
        variant: Variant,
        key: Option<PseudonymKey>,
        config: PolicyConfig,
    ) -> anyhow::Result<(PolicyContext, String)> {
        let sql = if self.sql == "-" {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text)?;
            text
        } else {
            self.sql
        };
        let catalog = Catalog::open(&self.catalog)?;
        let datasets: Vec<&str> = self.datasets.iter().map(|d| d.trim()).collect();
        Ok((PolicyContext::new(&catalog, &datasets, variant, key, config)?, sql))
    }
}

#[derive(clap::Args)]
pub(crate) struct CheckArgs {
    /// 目录文件夹 / Catalog folder
    #[arg(long)]
    catalog: PathBuf,
    /// 授权的数据集，逗号分隔 / The licence's datasets, comma-separated
    #[arg(long, value_delimiter = ',', required_unless_present = "manifest", conflicts_with = "manifest")]
    datasets: Vec<String>,
    /// 检查模块清单的输出契约：每张表渲染为主机将在策略视图上执行的 SQL 并按列约束与公开分类审查
    /// / Check a module manifest's output contract: each table rendered as the SQL the host runs
    /// over the policy views, judged by the column constraints and published classifications
    #[arg(long, conflicts_with = "sql")]
    manifest: Option<PathBuf>,
    /// 与 --manifest 一起：按这些参数值审查（name=value，可重复）/ With --manifest: judge with
    /// these parameter values (name=value, repeatable)
    #[arg(long = "param", requires = "manifest")]
    params: Vec<String>,
    /// SQL；"-" 表示从标准输入读取 / The SQL; "-" reads it from standard input
    #[arg(allow_hyphen_values = true, required_unless_present = "manifest")]
    sql: Option<String>,
    /// 机器可读输出 / Machine-readable output
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    query: Query,
    /// 最多打印的行数 / Most rows to print
    #[arg(long, default_value_t = 50)]
    max_rows: usize,
    /// 低于此隐私单元数的分组被剔除 / Groups with fewer privacy units are dropped
    #[arg(long, default_value_t = PolicyConfig::default().min_group_units)]
    min_group_units: usize,
}

pub(crate) fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Check(args) => check(args),
        Command::Run(args) => run_on_twins(args),
    }
}

/// Twins are invented data: their pseudonyms need no secret, and a fixed one keeps runs
/// reproducible. Real data is never opened here.
pub(crate) const TWIN_SECRET: [u8; 32] = *b"synthetic twins: no secret here.";

fn run_on_twins(args: RunArgs) -> anyhow::Result<ExitCode> {
    let key = DomainSecret::from_bytes(TWIN_SECRET).licence_key("dev");
    let config = PolicyConfig { min_group_units: args.min_group_units, ..PolicyConfig::default() };
    let (ctx, sql) = args.query.open(Variant::Twin, Some(key), config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match runtime.block_on(ctx.collect(&sql)) {
        Ok(batches) => {
            let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
            println!("{}", result_table(&batches, args.max_rows)?);
            println!("{rows} 行（合成孪生数据）/ {rows} row(s) (synthetic twins)");
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ (PolicyError::Rejected(_) | PolicyError::InvalidSql(_))) => {
            println!("rejected: {}\n{}", rejection(&e), e.zh());
            Ok(ExitCode::FAILURE)
        }
        Err(e) => Err(e.into()),
    }
}

/// The first `max_rows` rows as a table for people (CJK-width aware, like every CLI table).
pub(crate) fn result_table(batches: &[RecordBatch], max_rows: usize) -> anyhow::Result<comfy_table::Table> {
    let names: Vec<String> =
        batches.first().map_or_else(Vec::new, |b| b.schema().fields().iter().map(|f| f.name().clone()).collect());
    let mut table = crate::catalog::table_of(names);
    let options = FormatOptions::default().with_null("NULL");
    let mut left = max_rows;
    for batch in batches {
        let formatters: Vec<ArrayFormatter> =
            batch.columns().iter().map(|c| ArrayFormatter::try_new(c.as_ref(), &options)).collect::<Result<_, _>>()?;
        for row in 0..batch.num_rows().min(left) {
            table.add_row(formatters.iter().map(|f| f.value(row).to_string()).collect::<Vec<_>>());
        }
        left -= batch.num_rows().min(left);
    }
    Ok(table)
}

fn rejection(e: &PolicyError) -> String {
    match e {
        PolicyError::Rejected(r) => r.to_string(),
        other => other.to_string(),
    }
}

/// `policy check --manifest`: each output table's contract as SQL, with its verdict.
fn check_manifest(args: &CheckArgs, path: &std::path::Path) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let manifest = sandbox_contract::Manifest::parse(&text)?;
    let catalog = Catalog::open(&args.catalog)?;
    let bound = if args.params.is_empty() {
        None
    } else {
        let mut given = Vec::new();
        for param in &args.params {
            let (name, value) = param.split_once('=').context("--param takes NAME=VALUE / 参数格式应为 NAME=VALUE")?;
            given.push((name.to_owned(), value.to_owned()));
        }
        let bound = manifest.bind(&given)?;
        Some(bound.into_iter().map(|(n, v)| (n, v.to_string())).collect::<Vec<_>>())
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let tables = runtime.block_on(sandbox_policy::contract::judge_tables(&manifest, &catalog, bound.as_deref()))?;
    let admitted = tables.iter().all(|t| t.problems.is_empty());
    if args.json {
        let tables: Vec<_> = tables
            .iter()
            .map(|t| {
                let problems: Vec<_> =
                    t.problems.iter().map(|p| json!({ "place": p.place, "en": p.en, "zh": p.zh })).collect();
                let verdict = if t.problems.is_empty() { "accepted" } else { "rejected" };
                json!({ "table": t.query.table, "sql": t.query.sql, "verdict": verdict, "problems": problems })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&json!({ "tables": tables }))?);
    } else {
        for t in &tables {
            let verdict = if t.problems.is_empty() { "accepted / 通过" } else { "rejected / 拒绝" };
            println!("{} {verdict}\n  {}", t.query.table, t.query.sql);
            for p in &t.problems {
                println!("  {p}");
            }
        }
    }
    Ok(if admitted { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    if let Some(path) = &args.manifest {
        return check_manifest(&args, path);
    }
    let query = Query {
        catalog: args.catalog.clone(),
        datasets: args.datasets.clone(),
        sql: args.sql.clone().unwrap_or_default(),
    };
    // Checking plans the query and never runs it: no pseudonymization key is needed.
    let (ctx, sql) = query.open(Variant::Real, None, PolicyConfig::default())?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let checked = runtime.block_on(ctx.check(&sql));
    match checked {
        Ok(query) if args.json => {
            let columns: Vec<_> = query
                .columns
                .iter()
                .map(|c| {
                    let sources: Vec<_> = c
                        .sources
                        .iter()
                        .filter_map(|(source, flow)| match source {
                            Source::Column { view, column, constraint } => Some(json!({
                                "view": view, "column": column, "constraint": constraint.as_str(), "flow": flow.as_str(),
                            })),
                            Source::Rows => None,
                        })
                        .collect();
                    json!({ "name": c.name, "sources": sources })
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&json!({ "verdict": "accepted", "columns": columns }))?);
            Ok(ExitCode::SUCCESS)
        }
        Ok(query) => {
            println!("accepted");
            for column in &query.columns {
                println!("  {column}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ (PolicyError::Rejected(_) | PolicyError::InvalidSql(_))) => {
            let en = rejection(&e);
            if args.json {
                let out = json!({ "verdict": "rejected", "reason": en, "reason_zh": e.zh() });
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                println!("rejected: {en}\n{}", e.zh());
            }
            Ok(ExitCode::FAILURE)
        }
        Err(e) => Err(e.into()),
    }
}
