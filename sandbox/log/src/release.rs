//! Writing a release bundle (the layout [`sandbox_verify::release`] checks): the statement signed
//! by the release key, appended to the log, its tlog-proof, and the released files.

use std::path::Path;

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

/// Signs the statement with `release_key`, appends it to `log`, and writes the bundle into the
/// new directory `out`. Returns the statement's index in the log.
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
    let appended = log.append_blocking(bytes.clone())?;
    let proof = log.tlog_proof(appended.index)?;
    std::fs::create_dir(out).map_err(io(out))?;
    let mut writer = Writer::new(out);
    for (name, data) in statement.results {
        writer.create(&format!("{RESULTS}/{name}"), data).map_err(io(out.join(name)))?;
    }
    writer.create(STATEMENT, &bytes).map_err(io(out.join(STATEMENT)))?;
    writer.create(STATEMENT_PROOF, &proof.to_bytes()).map_err(io(out.join(STATEMENT_PROOF)))?;
    writer.sync().map_err(io(out))?;
    Ok(appended.index)
}
