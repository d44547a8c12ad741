//! `sandbox`: the data sandbox's command line (数据沙箱命令行).
//!
//! A thin shell over the libraries: it parses arguments, calls one library function per command,
//! and prints for people (tables, in Chinese and English) or for programs (`--json`).

mod audit;
mod catalog;
mod datagen;
mod examples;
mod keys;
mod policy;
mod run;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "sandbox",
    version,
    about = "数据沙箱：公共数据授权运营，原始数据不出域、数据可用不可见\n\
             Data sandbox for public-data authorized operation: raw data never leaves the domain",
    max_term_width = 100
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// 生成合成公共数据及目录条目 / Generate synthetic public data with catalog entries
    Datagen(datagen::Args),
    /// 公共数据资源目录 / The public data resource catalog
    #[command(subcommand)]
    Catalog(catalog::Command),
    /// 策略视图与列约束 / Policy views and column constraints
    #[command(subcommand)]
    Policy(policy::Command),
    /// 运行分析模块（--dev：合成孪生数据）/ Run an analysis module (--dev: on synthetic twins)
    Run(run::Args),
    /// 出域审核：运行模块并只输出审核报告和可出域的表 / Output audit: run a module, print only the audit
    /// report and the tables that may leave
    Audit(audit::Args),
    /// 内置示例分析模块 / The built-in example analysis modules
    #[command(subcommand)]
    Examples(examples::Command),
    /// 签名密钥：生成与轮换 / Signing keys: generate and rotate
    #[command(subcommand)]
    Keys(keys::Command),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Datagen(args) => datagen::run(args),
        Command::Catalog(command) => catalog::run(command),
        Command::Policy(command) => policy::run(command),
        Command::Run(args) => run::run(args),
        Command::Audit(args) => audit::run(args),
        Command::Examples(command) => examples::run(command),
        Command::Keys(command) => keys::run(command),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
