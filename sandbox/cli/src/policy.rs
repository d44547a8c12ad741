//! `sandbox policy check`: lints SQL against a licence's policy views without running it.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use sandbox_catalog::{Catalog, Variant};
use sandbox_policy::{PolicyConfig, PolicyContext, PolicyError, Source};
use serde_json::json;

#[derive(clap::Subcommand)]
pub(crate) enum Command {
    /// 检查 SQL 是否符合列约束（不执行）：通过时打印每个输出列的来源，退出码 0；拒绝时打印原因，退出码 1
    /// / Check SQL against the column constraints without running it: prints `accepted` with each
    /// output column's lineage (exit 0) or `rejected: …` (exit 1)
    Check(CheckArgs),
}

#[derive(clap::Args)]
pub(crate) struct CheckArgs {
    /// 目录文件夹 / Catalog folder
    #[arg(long)]
    catalog: PathBuf,
    /// 授权的数据集，逗号分隔 / The licence's datasets, comma-separated
    #[arg(long, value_delimiter = ',', required = true)]
    datasets: Vec<String>,
    /// 机器可读输出 / Machine-readable output
    #[arg(long)]
    json: bool,
    /// 要检查的 SQL；"-" 表示从标准输入读取 / The SQL to check; "-" reads it from standard input
    #[arg(allow_hyphen_values = true)]
    sql: String,
}

pub(crate) fn run(command: Command) -> anyhow::Result<ExitCode> {
    let Command::Check(args) = command;
    let sql = if args.sql == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        text
    } else {
        args.sql
    };
    let catalog = Catalog::open(&args.catalog)?;
    let datasets: Vec<&str> = args.datasets.iter().map(|d| d.trim()).collect();
    // Checking plans the query and never runs it: no pseudonymization key is needed.
    let ctx = PolicyContext::new(&catalog, &datasets, Variant::Real, None, PolicyConfig::default())?;
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
            let en = match &e {
                PolicyError::Rejected(r) => r.to_string(),
                other => other.to_string(),
            };
            if args.json {
                let out = json!({ "verdict": "rejected", "reason": en, "reason_zh": e.zh() });
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                println!("rejected: {en}");
                println!("{}", e.zh());
            }
            Ok(ExitCode::FAILURE)
        }
        Err(e) => Err(e.into()),
    }
}
