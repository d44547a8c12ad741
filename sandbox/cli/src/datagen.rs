//! `sandbox datagen`: writes the synthetic city and reports the rate it wrote at.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use sandbox_datagen::{Config, generate};

#[derive(clap::Args)]
pub(crate) struct Args {
    /// 居民人数，其他数据集随之缩放 / Residents; the other datasets scale with it
    #[arg(long, default_value_t = 100_000)]
    scale: u64,
    /// 随机种子：相同种子生成相同字节 / Random seed: the same seed writes the same bytes
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// 输出目录（目录条目、data/、twin/） / Output folder (catalog entries, data/, twin/)
    #[arg(long, default_value = "sandbox-data/catalog")]
    out: PathBuf,
    /// 合成孪生数据的居民人数（默认取 scale 与 100000 的较小者） / Residents in the synthetic twin (default: the smaller of scale and 100000)
    #[arg(long)]
    twin_scale: Option<u64>,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = Config {
        out: args.out.clone(),
        scale: args.scale,
        seed: args.seed,
        twin_scale: args.twin_scale,
        progress: std::io::stderr().is_terminal(),
    };
    let summary = generate(&config)?;
    let mut table = crate::catalog::table(["数据集 Dataset", "行数 Rows", "孪生行数 Twin rows", "大小 Size"]);
    let mut rows = 0;
    for d in &summary.datasets {
        rows += d.rows + d.twin_rows;
        table.add_row(vec![
            d.id.to_owned(),
            d.rows.to_string(),
            d.twin_rows.to_string(),
            format!("{:.1} MiB", d.bytes as f64 / (1 << 20) as f64),
        ]);
    }
    println!("{table}");
    let seconds = summary.elapsed.as_secs_f64();
    println!(
        "已写入 {} / wrote {rows} rows in {seconds:.1} s ({:.0} rows/s, {:.0} residents/s)",
        args.out.display(),
        rows as f64 / seconds,
        args.scale as f64 / seconds,
    );
    println!("下一步 / next: sandbox catalog check {}", args.out.display());
    Ok(ExitCode::SUCCESS)
}
