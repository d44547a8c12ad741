//! The server's data directory:
//!
//! ```text
//! catalog/             the public data resource catalog (sandbox datagen writes one)
//! keys/log.key         the log's signing key (600) and .pub
//! keys/release.key     the sandbox release key (600) and .pub
//! keys/domain.secret   the pseudonymization secret (600)
//! keys/trust           the trust file evaluators verify with (log and release keys)
//! log/                 the transparency log (c2sp tlog-tiles)
//! state.sqlite         the projection of the log
//! modules/<sha256>.wasm, .toml   submitted modules and manifests, by the module's hash
//! runs/<run>/          audit reports
//! releases/<release>/  release bundles
//! audit/               differencing history (+ key) and the privacy budget ledger
//! policy.toml          the bureau's audit policy (optional; tightens the defaults)
//! identities/<name>/   token and signing key of a principal created here (the first admin)
//! ```

use std::path::{Path, PathBuf};

use anyhow::Context;
use sandbox_log::keys;
use sandbox_verify::note::SignerKey;
use sandbox_verify::time::Timestamp;

/// The name of the first administrator.
pub const ADMIN: &str = "admin";

#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

/// Keys `prepare` found or made.
#[derive(Debug)]
pub(crate) struct Setup {
    pub(crate) log_key: SignerKey,
    pub(crate) release_key: SignerKey,
    /// The log did not exist: the first administrator must be registered.
    pub(crate) new_log: bool,
}

impl DataDir {
    pub fn new(root: &Path) -> DataDir {
        DataDir { root: root.to_path_buf() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn catalog(&self) -> PathBuf {
        self.root.join("catalog")
    }
    pub fn log(&self) -> PathBuf {
        self.root.join("log")
    }
    pub fn keys(&self) -> PathBuf {
        self.root.join("keys")
    }
    pub fn log_key(&self) -> PathBuf {
        self.keys().join("log.key")
    }
    pub fn release_key(&self) -> PathBuf {
        self.keys().join("release.key")
    }
    pub fn secret(&self) -> PathBuf {
        self.keys().join("domain.secret")
    }
    pub fn trust(&self) -> PathBuf {
        self.keys().join("trust")
    }
    pub fn state(&self) -> PathBuf {
        self.root.join("state.sqlite")
    }
    pub fn modules(&self) -> PathBuf {
        self.root.join("modules")
    }
    pub fn runs(&self) -> PathBuf {
        self.root.join("runs")
    }
    pub fn releases(&self) -> PathBuf {
        self.root.join("releases")
    }
    /// Filed annual reports, by SHA-256: `<sha256>.txt`.
    pub fn reports(&self) -> PathBuf {
        self.root.join("reports")
    }
    pub fn history(&self) -> PathBuf {
        self.root.join("audit/history.jsonl")
    }
    pub fn budget(&self) -> PathBuf {
        self.root.join("audit/budget.json")
    }
    pub fn policy(&self) -> PathBuf {
        self.root.join("policy.toml")
    }
    /// The file names, under `modules()`, of a submitted module and its manifest.
    pub fn module_files(sha256: &str) -> [String; 2] {
        [format!("{sha256}.wasm"), format!("{sha256}.toml")]
    }
    pub fn identities(&self) -> PathBuf {
        self.root.join("identities")
    }
    pub fn cache(&self) -> PathBuf {
        self.root.join("cache")
    }

    /// Creates what a first start needs (keys, trust file, folders) and reads the keys.
    pub(crate) fn prepare(&self) -> anyhow::Result<Setup> {
        anyhow::ensure!(
            self.catalog().is_dir(),
            "{} has no catalog: generate one with `sandbox datagen --out {}` / 数据目录中没有公共数据资源目录",
            self.root.display(),
            self.catalog().display()
        );
        for dir in [
            self.keys(),
            self.modules(),
            self.runs(),
            self.releases(),
            self.reports(),
            self.root.join("audit"),
            self.cache(),
        ] {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let mut trust = String::new();
        let mut key = |path: PathBuf, name: &str, role: &str| -> anyhow::Result<SignerKey> {
            if !path.exists() {
                let key = keys::generate(name)?;
                keys::write_key_file(&path, &key)?;
                trust.push_str(&format!("{role} {} {} -\n", key.verifier(), Timestamp::now()));
            }
            Ok(keys::read_key_file(&path)?)
        };
        let log_key = key(self.log_key(), "sandbox.local/log", "log")?;
        let release_key = key(self.release_key(), "sandbox.local/release", "release")?;
        if !trust.is_empty() {
            let mut text = std::fs::read_to_string(self.trust()).unwrap_or_default();
            text.push_str(&trust);
            std::fs::write(self.trust(), text).with_context(|| format!("writing {}", self.trust().display()))?;
        }
        if !self.secret().exists() {
            keys::write_secret(&self.secret(), &hex::encode(rand::random::<[u8; 32]>()))?;
        }
        let new_log = !self.log().join("checkpoint").exists();
        Ok(Setup { log_key, release_key, new_log })
    }
}
