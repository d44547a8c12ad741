//! `sandbox audit`: runs a module and prints only what the output audit lets out — the audit
//! report and the released tables. On real data it is the bureau's tool; with `--twin`, on the
//! synthetic twins, operators use it to see how their outputs would fare before submitting.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use datafusion::arrow::util::display::array_value_to_string;
use sandbox_audit::{AuditPolicy, AuditRequest, Verdict};
use sandbox_catalog::Variant;
use sandbox_policy::DomainSecret;
use sandbox_runner::{Manifest, RunLimits, RunMode, RunRequest, Runner};
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
    /// 每张表最多显示的行数 / Rows shown per table
    #[arg(long, default_value_t = 50)]
    max_rows: usize,
    /// 以 JSON 输出 / Print JSON
    #[arg(long)]
    json: bool,
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
    let variant = if args.twin { Variant::Twin } else { Variant::Real };

    // A production run: codes only, no development log. Pseudonyms never leave the host, so a
    // key of this invocation's own serves.
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let runner = Runner::new(RunLimits::default(), None)?;
    let key = DomainSecret::from_bytes(rand::random()).licence_key("audit");
    let mode = if args.twin { RunMode::Development } else { RunMode::Production };
    let outcome = runtime.block_on(runner.run(RunRequest {
        module: &module,
        manifest: &manifest_text,
        parameters: &parameters,
        catalog: &catalog,
        mode,
        key: Some(key),
        limits: None,
    }));
    if let Some(err) = &outcome.record.error {
        if args.json {
            println!("{}", json!({ "run_error": err.code() }));
        } else {
            println!("运行失败，未审核 / the run failed, nothing to audit: [{}]", err.code());
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
    }))?;

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
        let report: serde_json::Value = serde_json::from_slice(&audit.report.to_json())?;
        let out = json!({ "report": report, "report_sha256": audit.report.sha256(), "released": released });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print!("{}", audit.report.text());
        for table in &audit.released {
            println!("\n可出域的表 / released table {}", table.name);
            println!("{}", crate::policy::result_table(std::slice::from_ref(&table.batch), args.max_rows)?);
        }
        if args.twin {
            println!("（合成孪生数据上的预演 / a rehearsal on the synthetic twins）");
        }
    }
    Ok(if audit.report.outcome <= Verdict::Suppressed { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
