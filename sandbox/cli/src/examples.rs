//! `sandbox examples`: the example analysis modules built into this binary, written out as
//! `.wasm` files with their manifests for `sandbox run --dev`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

#[derive(clap::Subcommand)]
pub(crate) enum Command {
    /// 列出示例模块 / List the example modules
    List,
    /// 写出示例模块及清单 / Write the example modules and manifests to a folder
    Write {
        /// 目标文件夹 / Folder to write to
        dir: PathBuf,
    },
}

pub(crate) fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::List => {
            let mut table = crate::catalog::table_of(vec!["name".to_owned(), "bytes".to_owned(), "purpose".to_owned()]);
            for example in sandbox_examples::examples() {
                let manifest = sandbox_contract::Manifest::parse(example.manifest)?;
                let purpose = format!("{}\n{}", manifest.purpose.zh, manifest.purpose.en);
                table.add_row([example.name.to_owned(), example.wasm.len().to_string(), purpose]);
            }
            println!("{table}");
        }
        Command::Write { dir } => {
            for example in sandbox_examples::examples() {
                let folder = dir.join(example.name);
                std::fs::create_dir_all(&folder).with_context(|| format!("creating {}", folder.display()))?;
                std::fs::write(folder.join("module.wasm"), example.wasm)?;
                std::fs::write(folder.join("module.toml"), example.manifest)?;
                println!("{}", folder.display());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
