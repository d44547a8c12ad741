//! The trust file: the keys an evaluator decides to trust, obtained out of band. One key a line:
//!
//! ```text
//! # role  verifier key                       valid from            valid until (or -)
//! log     sandbox.example/log+1a2b3c4d+AX…   2026-01-01T00:00:00Z  -
//! release sandbox.example/release+…          2026-01-01T00:00:00Z  2031-01-01T00:00:00Z
//! ```
//!
//! Roles: `log` signs checkpoints (and entries no principal signs), `release` signs release
//! statements, `principal` is a principal key trusted without its registration in the log. The
//! validity bounds the `time` of the entries a key may sign; checkpoints carry no time, so a log
//! key's `valid until` bounds the time of the newest entry a checkpoint it signs may cover.

use crate::error::{Error, Format};
use crate::note::VerifierKey;
use crate::time::Timestamp;

/// What a trusted key may sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Log,
    Release,
    Principal,
}

impl Role {
    /// The role as the trust file writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Log => "log",
            Role::Release => "release",
            Role::Principal => "principal",
        }
    }
}

/// One line of the trust file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedKey {
    pub role: Role,
    pub key: VerifierKey,
    pub valid_from: Timestamp,
    /// `None` for `-`: no end yet.
    pub valid_until: Option<Timestamp>,
}

impl TrustedKey {
    /// Whether the key may sign something dated `time` (both bounds included).
    pub fn valid_at(&self, time: Timestamp) -> bool {
        self.valid_from <= time && self.valid_until.is_none_or(|until| time <= until)
    }
}

/// The parsed trust file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trust {
    keys: Vec<TrustedKey>,
}

/// The largest trust file read.
pub const MAX_TRUST_FILE: usize = 1 << 20;

impl Trust {
    /// Parses the file; errors name the line.
    pub fn parse(text: &str) -> Result<Trust, Error> {
        if text.len() > MAX_TRUST_FILE {
            return Err(Error::TooLarge {
                format: Format::TrustFile,
                size: text.len() as u64,
                limit: MAX_TRUST_FILE as u64,
            });
        }
        let mut keys: Vec<TrustedKey> = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let n = n + 1;
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let at_line = |e: Error| match e {
                Error::Malformed { en, zh, .. } => {
                    Error::malformed(Format::TrustFile, format!("line {n}: {en}"), format!("第 {n} 行：{zh}"))
                }
                other => other,
            };
            let words: Vec<&str> = line.split_whitespace().collect();
            let [role, key, from, until] = words.as_slice() else {
                return Err(at_line(Error::malformed(
                    Format::TrustFile,
                    "expected: <role> <verifier key> <valid from> <valid until or ->",
                    "应为：<角色> <验证公钥> <生效时间> <失效时间或 ->",
                )));
            };
            let role = match *role {
                "log" => Role::Log,
                "release" => Role::Release,
                "principal" => Role::Principal,
                other => {
                    return Err(at_line(Error::malformed(
                        Format::TrustFile,
                        format!("unknown role {other:?} (log, release or principal)"),
                        format!("未知角色 {other:?}（应为 log、release 或 principal）"),
                    )));
                }
            };
            let key = VerifierKey::parse(key).map_err(at_line)?;
            let valid_from = Timestamp::parse(from).map_err(at_line)?;
            let valid_until = match *until {
                "-" => None,
                until => Some(Timestamp::parse(until).map_err(at_line)?),
            };
            if valid_until.is_some_and(|until| until < valid_from) {
                return Err(at_line(Error::malformed(
                    Format::TrustFile,
                    "valid until is before valid from",
                    "失效时间早于生效时间",
                )));
            }
            if keys.iter().any(|k| k.key.name() == key.name() && k.key.id() == key.id()) {
                return Err(at_line(Error::malformed(
                    Format::TrustFile,
                    format!("key {} is listed twice", key.label()),
                    format!("密钥 {} 重复列出", key.label()),
                )));
            }
            keys.push(TrustedKey { role, key, valid_from, valid_until });
        }
        Ok(Trust { keys })
    }

    /// The trusted keys of `role`.
    pub fn keys(&self, role: Role) -> impl Iterator<Item = &TrustedKey> {
        self.keys.iter().filter(move |k| k.role == role)
    }

    /// The verifier keys of `role` that may sign something dated `time`.
    pub fn valid_at(&self, role: Role, time: Timestamp) -> Vec<VerifierKey> {
        self.keys(role).filter(|k| k.valid_at(time)).map(|k| k.key.clone()).collect()
    }

    /// The log keys that may sign a checkpoint covering entries up to `newest` (any log key when
    /// the newest entry's time is unknown).
    pub fn checkpoint_keys(&self, newest: Option<Timestamp>) -> Vec<VerifierKey> {
        self.keys(Role::Log)
            .filter(|k| newest.is_none_or(|t| k.valid_until.is_none_or(|until| t <= until)))
            .map(|k| k.key.clone())
            .collect()
    }
}
