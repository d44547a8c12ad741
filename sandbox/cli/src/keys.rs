//! `sandbox keys`: the ed25519 keys that sign the log, releases and principals' entries.

use std::path::PathBuf;
use std::process::ExitCode;

use sandbox_log::keys;
use sandbox_verify::note::VerifierKey;
use sandbox_verify::time::Timestamp;

#[derive(clap::Subcommand)]
pub(crate) enum Command {
    /// 生成新密钥（私钥文件权限 600，公钥写入 <文件>.pub）/ Generate a key (private file mode 600,
    /// verifier key in <file>.pub)
    Generate {
        /// 密钥名：日志密钥即日志名（如 log.sandbox.example/baotou）/ The key's name; a log key's is
        /// the log's name
        #[arg(long)]
        name: String,
        /// 私钥文件（不会覆盖已有文件）/ The private key file (never overwritten)
        #[arg(long)]
        out: PathBuf,
        /// 同时向信任文件追加一行：log、release 或 principal / Also add a line for this role to the
        /// trust file
        #[arg(long, requires = "trust", value_parser = ["log", "release", "principal"])]
        role: Option<String>,
        /// 信任文件 / The trust file
        #[arg(long)]
        trust: Option<PathBuf>,
    },
    /// 轮换日志密钥：旧密钥签署 key.rotated 条目并更新信任文件 / Rotate the log key: the old key signs
    /// a key.rotated entry; the trust file is updated
    Rotate {
        /// 日志目录（写入进程须已停止）/ The log folder (its writer must be stopped)
        #[arg(long)]
        log: PathBuf,
        /// 当前日志私钥 / The current log key file
        #[arg(long)]
        old: PathBuf,
        /// 新日志私钥（用 keys generate 生成，同名）/ The new key file (same name)
        #[arg(long)]
        new: PathBuf,
        /// 更早轮换前的日志公钥（若最新检查点由其签署）/ Earlier log verifier keys, if the latest
        /// checkpoint is signed by one
        #[arg(long)]
        previous: Vec<String>,
        /// 信任文件 / The trust file
        #[arg(long)]
        trust: Option<PathBuf>,
    },
}

pub(crate) fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Generate { name, out, role, trust } => {
            let key = keys::generate(&name)?;
            keys::write_key_file(&out, &key)?;
            if let (Some(role), Some(trust)) = (role, trust) {
                let line = format!("{role} {} {} -\n", key.verifier(), Timestamp::now());
                let mut text = std::fs::read_to_string(&trust).unwrap_or_default();
                if !text.is_empty() && !text.ends_with('\n') {
                    text.push('\n');
                }
                text.push_str(&line);
                sandbox_verify::trust::Trust::parse(&text)
                    .map_err(|e| anyhow::anyhow!("{}: {e} / {}", trust.display(), e.zh()))?;
                std::fs::write(&trust, text)?;
            }
            println!("{}", key.verifier());
            eprintln!("私钥 / private key: {} (600)", out.display());
            eprintln!("公钥 / verifier key: {}", keys::public_path(&out).display());
        }
        Command::Rotate { log, old, new, previous, trust } => {
            let (old, new) = (keys::read_key_file(&old)?, keys::read_key_file(&new)?);
            let previous = previous
                .iter()
                .map(|k| VerifierKey::parse(k).map_err(|e| anyhow::anyhow!("--previous {k}: {e} / {}", e.zh())))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let appended = keys::rotate_log_key(&log, &old, &new, &previous, trust.as_deref())?;
            println!("key.rotated: index {} / 条目序号 {}", appended.index, appended.index);
            println!("{}", new.verifier());
        }
    }
    Ok(ExitCode::SUCCESS)
}
