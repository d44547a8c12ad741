//! Key files and their rotation.
//!
//! A key file holds one signer key string (`PRIVATE+KEY+<name>+<id>+<base64>`, the form Go's
//! `golang.org/x/mod/sumdb/note` reads) and is created with mode 0600; `<file>.pub` beside it
//! holds the verifier key. Files that others can read are refused. Rotating the log key appends
//! a `key.rotated` entry, under a checkpoint signed by the outgoing key, and closes the outgoing
//! key's line in the trust file at that entry's time, opening one for the new key.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sandbox_verify::entry::{Entry, kind};
use sandbox_verify::note::{SignerKey, VerifierKey};
use sandbox_verify::time::Timestamp;
use sandbox_verify::trust::{Role, Trust};

use crate::{Appended, Log, LogError, LogOptions, format, io};

fn key_error(path: &Path, en: impl Into<String>, zh: impl Into<String>) -> LogError {
    LogError::KeyFile { path: path.to_owned(), en: en.into(), zh: zh.into() }
}

/// A new ed25519 key named `name`, from the operating system's randomness.
pub fn generate(name: &str) -> Result<SignerKey, LogError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed)
        .map_err(|e| LogError::Io { path: "getrandom".into(), source: std::io::Error::other(e.to_string()) })?;
    SignerKey::from_seed(name, seed).map_err(format("key name"))
}

/// Where the verifier key of the key file `path` goes: `<path>.pub`.
pub fn public_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

/// Writes `key` to a new file at `path` (mode 0600; an existing file is never overwritten) and
/// its verifier key to `<path>.pub`.
pub fn write_key_file(path: &Path, key: &SignerKey) -> Result<(), LogError> {
    let public = public_path(path);
    if public.exists() {
        return Err(key_error(
            path,
            format!("{} exists already", public.display()),
            format!("{} 已存在", public.display()),
        ));
    }
    write_secret(path, &format!("{}\n", key.encode()))?;
    let mut file = fs::File::options().write(true).create_new(true).mode(0o644).open(&public).map_err(io(&public))?;
    file.write_all(format!("{}\n", key.verifier()).as_bytes()).map_err(io(&public))?;
    file.sync_all().map_err(io(&public))
}

/// Writes `text` to a new file at `path`, mode 0600, synced; an existing file is never
/// overwritten. For keys, tokens and secrets.
pub fn write_secret(path: &Path, text: &str) -> Result<(), LogError> {
    let mut file = fs::File::options().write(true).create_new(true).mode(0o600).open(path).map_err(io(path))?;
    file.write_all(text.as_bytes()).map_err(io(path))?;
    file.sync_all().map_err(io(path))
}

/// Reads a key file; refuses one that anyone but its owner can read or write.
pub fn read_key_file(path: &Path) -> Result<SignerKey, LogError> {
    let metadata = fs::metadata(path).map_err(io(path))?;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(key_error(
            path,
            format!("mode {mode:o} lets others read or change the key; it must be 600 (chmod 600)"),
            format!("权限 {mode:o} 允许他人读取或修改私钥，必须为 600（chmod 600）"),
        ));
    }
    if metadata.len() > 1024 {
        return Err(key_error(path, "too large for a key file", "文件过大，不是密钥文件"));
    }
    let text = fs::read_to_string(path).map_err(io(path))?;
    SignerKey::parse(text.trim_end()).map_err(|e| key_error(path, e.to_string(), e.zh()))
}

/// The trust file with `old`'s line closed at `at` and a line for `new` (same role) valid from
/// `at` on. `old` must be listed with no end.
pub fn rotate_trust(text: &str, old: &VerifierKey, new: &VerifierKey, at: Timestamp) -> Result<String, LogError> {
    let trust = Trust::parse(text).map_err(format("trust file"))?;
    let role = [Role::Log, Role::Release, Role::Principal]
        .into_iter()
        .find(|&role| trust.keys(role).any(|k| k.key == *old && k.valid_until.is_none()))
        .ok_or_else(|| LogError::KeyFile {
            path: "trust".into(),
            en: format!("the trust file lists no open-ended key {}", old.label()),
            zh: format!("信任文件中没有未到期的密钥 {}", old.label()),
        })?;
    let old_text = old.to_string();
    let mut out = String::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split('#').next().unwrap_or_default().split_whitespace().collect();
        if let [role, key, from, "-"] = words.as_slice()
            && *key == old_text
        {
            out.push_str(&format!("{role} {key} {from} {at}\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str(&format!("{} {new} {at} -\n", role.as_str()));
    Trust::parse(&out).map_err(format("trust file"))?;
    Ok(out)
}

/// Rotates the log's key from `old` to `new`: appends `key.rotated` (in a checkpoint signed by
/// `old`) and rewrites the trust file at `trust` (if given) to match. The log must not be open elsewhere. From then
/// on open the log with `new`, listing `old` among its previous keys.
pub fn rotate_log_key(
    dir: &Path,
    old: &SignerKey,
    new: &SignerKey,
    previous: &[VerifierKey],
    trust: Option<&Path>,
) -> Result<Appended, LogError> {
    if old.verifier().name() != new.verifier().name() {
        return Err(LogError::Origin {
            found: new.verifier().name().to_owned(),
            expected: old.verifier().name().to_owned(),
        });
    }
    let rotated_at = Timestamp::now();
    let trust_text = match trust {
        Some(path) => {
            let text = fs::read_to_string(path).map_err(io(path))?;
            Some(rotate_trust(&text, old.verifier(), new.verifier(), rotated_at)?)
        }
        None => None,
    };
    let name = old.verifier().name();
    let entry = Entry::builder(kind::KEY_ROTATED, rotated_at, name)
        .field("principal", name)
        .field("key", &new.verifier().to_string())
        .build()
        .and_then(|entry| entry.unsigned())
        .map_err(format("key.rotated entry"))?;
    let appended = {
        let log = Log::open(dir, LogOptions { previous_keys: previous.to_vec(), ..LogOptions::new(old.clone()) })?;
        log.append_blocking(entry)?
    };
    if let (Some(path), Some(text)) = (trust, trust_text) {
        let tmp = path.with_extension("tmp");
        fs::write(&tmp, text).map_err(io(&tmp))?;
        fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(io(&tmp))?;
        fs::rename(&tmp, path).map_err(io(path))?;
    }
    Ok(appended)
}
