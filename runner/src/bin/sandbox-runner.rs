//! `sandbox-runner`: the runner process on its own (`sandbox_runner::process`); the server execs
//! the same code as `sandbox runner`, a hidden subcommand of the one `sandbox` binary.

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    sandbox_runner::process::main(&args)
}
