//! `sandbox`: the data sandbox's command line (数据沙箱命令行).
//!
//! A thin shell over the libraries: it parses arguments, calls one library function per command,
//! and prints for people (tables, in Chinese and English) or for programs (`--json`).

mod audit;
mod catalog;
mod client;
mod datagen;
mod examples;
mod keys;
mod policy;
mod run;
mod serve;

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
    /// 启动服务（gRPC，/healthz，/metrics）/ Run the server (gRPC, /healthz, /metrics)
    Serve(serve::ServeArgs),
    /// 演示完整流程：生成数据、启动服务、授权、提交、审核、运行、发布、核验 / The whole flow once:
    /// data, server, licence, submission, review, run, audit, release, verification
    Demo(serve::DemoArgs),
    /// 状态库（日志的投影）/ The state database (the log's projection)
    #[command(subcommand)]
    State(serve::StateCommand),
    /// 主体与令牌（管理员）/ Principals and tokens (admin)
    Principal(client::Client<client::PrincipalCommand>),
    /// 授权运营协议 / Operation licences
    Licence(client::Client<client::LicenceCommand>),
    /// 数据服务协议 / Service agreements
    Agreement(client::Client<client::AgreementCommand>),
    /// 分析模块：提交、审核 / Analysis modules: submission and review
    Module(client::Client<client::ModuleCommand>),
    /// 服务端上的运行 / Runs on the server
    Runs(client::Client<client::RunsCommand>),
    /// 出域人工复核（审核员）/ Output review of held tables (reviewers)
    Output(client::Client<client::OutputCommand>),
    /// 发布结果 / Released results
    Release(client::Client<client::ReleaseCommand>),
    /// 应用单位反馈 / Application units' feedback
    Feedback(client::Client<client::FeedbackCommand>),
    /// 安全事件：报告、处置、结案 / Security incidents: report, measures, closure
    Incident(client::Client<client::IncidentCommand>),
    /// 年度运营报告：备案与取得 / Annual operation reports: file and get
    Report(client::Client<client::ReportCommand>),
}

/// The process's one tracing subscriber, on stderr: `filter` as `EnvFilter` reads it (`info`,
/// `sandbox_server=debug,info`), lines of text or of JSON.
pub(crate) fn init_tracing(filter: &str, format: serve::LogFormat) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .map_err(|e| anyhow::anyhow!("log filter {filter:?}: {e} / 日志过滤条件无效"))?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let installed = match format {
        serve::LogFormat::Text => builder.try_init(),
        serve::LogFormat::Json => builder.json().try_init(),
    };
    installed.map_err(|e| anyhow::anyhow!("tracing: {e}"))
}

fn main() -> ExitCode {
    // `sandbox runner [--compile]`, hidden: the runner process the server execs for every run
    // (`sandbox_runner::process`). Taken before anything else runs, since it confines itself
    // while the process still has one thread.
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("runner") {
        return sandbox_runner::process::main(&args[2..]);
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Datagen(args) => datagen::run(args),
        Command::Catalog(command) => catalog::run(command),
        Command::Policy(command) => policy::run(command),
        Command::Run(args) => run::run(args),
        Command::Audit(args) => audit::run(args),
        Command::Examples(command) => examples::run(command),
        Command::Keys(command) => keys::run(command),
        Command::Serve(args) => serve::serve(args),
        Command::Demo(args) => serve::demo(args),
        Command::State(command) => serve::state(command),
        Command::Principal(c) => client::block_on(client::principal(c.connect, c.command)),
        Command::Licence(c) => client::block_on(client::licence(c.connect, c.command)),
        Command::Agreement(c) => client::block_on(client::agreement(c.connect, c.command)),
        Command::Module(c) => client::block_on(client::module(c.connect, c.command)),
        Command::Runs(c) => client::block_on(client::runs(c.connect, c.command)),
        Command::Output(c) => client::block_on(client::output(c.connect, c.command)),
        Command::Release(c) => client::block_on(client::release(c.connect, c.command)),
        Command::Feedback(c) => client::block_on(client::feedback(c.connect, c.command)),
        Command::Incident(c) => client::block_on(client::incident(c.connect, c.command)),
        Command::Report(c) => client::block_on(client::report(c.connect, c.command)),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // The server's refusals: their code and the server's own bilingual message.
            if let Some(status) = e.downcast_ref::<tonic::Status>() {
                eprintln!("refused / 请求被拒绝 [{:?}]: {}", status.code(), status.message());
                return ExitCode::from(2);
            }
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
