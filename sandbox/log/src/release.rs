//! Writing a release bundle (the layout [`sandbox_verify::release`] checks): the statement signed
//! by the release key, appended to the log, its tlog-proof, and the released files.

use std::path::{Path, PathBuf};

use sandbox_verify::entry::{Entry, kind};
use sandbox_verify::merkle::Hash;
use sandbox_verify::note::SignerKey;
use sandbox_verify::release::{RESULTS, STATEMENT, STATEMENT_PROOF};
use sandbox_verify::time::Timestamp;

use crate::files::Writer;
use crate::{Log, LogError, format, io};

/// What a release states besides its files: hex SHA-256s and identifiers, in the order the
/// statement lists them (`module`, `manifest`, `datasets`, `audit_report`, `policy`,
/// `recipient`, `agreement`, and any others).
#[derive(Debug, Clone)]
pub struct Statement<'a> {
    pub actor: &'a str,
    pub time: Timestamp,
    pub fields: &'a [(&'a str, &'a str)],
    /// File name and content of each released result.
    pub results: &'a [(&'a str, &'a [u8])],
}

/// The suffix of a bundle's folder while it is written: its files wait there for the
/// statement's append, and a crash leaves them there (see [`recover_bundle`]).
pub const PARTIAL_SUFFIX: &str = ".partial";

/// Where the bundle for `out` is written before the statement is appended.
pub fn partial_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().expect("a bundle folder has a name").to_owned();
    name.push(PARTIAL_SUFFIX);
    out.with_file_name(name)
}

/// Signs the statement with `release_key`, appends it to `log`, and writes the bundle into the
/// new directory `out`. Returns the statement's index in the log.
///
/// The results and the statement are written and fsynced in [`partial_path`] first; after the
/// append the proof joins them and the folder is renamed to `out`. A crash between the two
/// leaves a logged release whose files are all on disk, for [`recover_bundle`] to finish.
pub fn write_bundle(
    log: &Log,
    release_key: &SignerKey,
    statement: &Statement<'_>,
    out: &Path,
) -> Result<u64, LogError> {
    let mut builder = Entry::builder(kind::RELEASE, statement.time, statement.actor);
    for (key, value) in statement.fields {
        builder = builder.field(key, value);
    }
    let hashes: Vec<(String, String)> =
        statement.results.iter().map(|(name, data)| (format!("result.{name}"), Hash::sha256(data).to_hex())).collect();
    for (key, value) in &hashes {
        builder = builder.field(key, value);
    }
    let bytes = builder.build().and_then(|e| e.sign(&[release_key])).map_err(format("release statement"))?;
    if out.exists() {
        return Err(io(out)(std::io::Error::from(std::io::ErrorKind::AlreadyExists)));
    }
    let partial = partial_path(out);
    // Left by a crash before its statement was appended: nothing refers to it.
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(io(&partial))?;
    }
    std::fs::create_dir(&partial).map_err(io(&partial))?;
    let mut writer = Writer::new(&partial);
    for (name, data) in statement.results {
        writer.create(&format!("{RESULTS}/{name}"), data).map_err(io(partial.join(name)))?;
    }
    writer.create(STATEMENT, &bytes).map_err(io(partial.join(STATEMENT)))?;
    writer.sync().map_err(io(&partial))?;
    let appended = log.append_blocking(bytes)?;
    complete(log, appended.index, out)?;
    Ok(appended.index)
}

/// Adds the proof of the statement at `index` to the partial folder of `out` and renames it.
fn complete(log: &Log, index: u64, out: &Path) -> Result<(), LogError> {
    let partial = partial_path(out);
    let proof = log.tlog_proof(index)?;
    let mut writer = Writer::new(&partial);
    writer.create(STATEMENT_PROOF, &proof.to_bytes()).map_err(io(partial.join(STATEMENT_PROOF)))?;
    writer.sync().map_err(io(&partial))?;
    std::fs::rename(&partial, out).map_err(io(out))?;
    let parent = out.parent().expect("a bundle folder has a parent");
    std::fs::File::open(parent).and_then(|dir| dir.sync_all()).map_err(io(parent))
}

/// Finishes the bundle `out` of the release statement logged at `index` if a crash stopped
/// [`write_bundle`] after the append: returns whether it had to. It is an error if the folder
/// is missing and no partial folder holds that very statement.
pub fn recover_bundle(log: &Log, index: u64, out: &Path) -> Result<bool, LogError> {
    if out.is_dir() {
        return Ok(false);
    }
    let partial = partial_path(out);
    let path = partial.join(STATEMENT);
    let written = std::fs::read(&path).map_err(io(&path))?;
    if written != log.entry(index)? {
        return Err(io(&path)(std::io::Error::other(format!(
            "the statement waiting here is not the one logged at index {index} / 此处待完成的发布声明与日志第 {index} 条不符"
        ))));
    }
    complete(log, index, out)?;
    Ok(true)
}
