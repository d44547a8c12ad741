//! The `sandbox-runner` process's protocol, typed on both sides.
//!
//! The server writes one [`RunnerRequest`] as JSON on the runner's stdin (paths, parameters and
//! the licence's pseudonym key, which never appears in arguments or the environment). The
//! runner answers on stdout with one JSON header line — the run record and each table's name,
//! SHA-256 and byte length — followed by the tables' Arrow IPC bytes, in that order
//! ([`RunnerAnswer`]). The answer comes from a process that ran hostile code: [`RunnerAnswer::decode`]
//! refuses unknown fields, tables cut short or trailing bytes, reads every table with the strict
//! IPC reader, and accepts only tables already in canonical form whose hash is the header's.

use std::io::Write;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::run::{OutputTable, RunMode, RunRecord};

/// The most bytes a request may take.
pub const MAX_REQUEST_BYTES: u64 = 1 << 20;

/// What the server asks a runner process to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunnerRequest {
    pub catalog: PathBuf,
    pub module: PathBuf,
    pub manifest: PathBuf,
    #[serde(default)]
    pub parameters: Vec<(String, String)>,
    pub mode: RunMode,
    /// The licence's pseudonym key, 64 hex digits. The server derives it from the domain
    /// secret; the secret itself never reaches the runner.
    pub key: Option<String>,
    /// Compiled modules, which the runner reads (its file systems are read-only).
    pub cache_dir: Option<PathBuf>,
    /// Refuse to run if the network cannot be cut off.
    #[serde(default)]
    pub require_isolation: bool,
}

impl RunnerRequest {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a request always serializes")
    }

    pub fn decode(bytes: &[u8]) -> Result<RunnerRequest, WireError> {
        if bytes.len() as u64 > MAX_REQUEST_BYTES {
            return Err(WireError(format!("a request of {} bytes is too large", bytes.len())));
        }
        serde_json::from_slice(bytes).map_err(|e| WireError(format!("request: {e}")))
    }
}

/// A runner's answer.
#[derive(Debug, Clone)]
pub struct RunnerAnswer {
    pub record: RunRecord,
    /// Empty unless the run succeeded.
    pub tables: Vec<OutputTable>,
    /// Development runs only.
    pub dev_log: Option<String>,
    /// Whether the runner could confine itself: no network, every file system read-only.
    pub isolated: bool,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    record: RunRecord,
    tables: Vec<TableHeader>,
    dev_log: Option<String>,
    isolated: bool,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TableHeader {
    name: String,
    sha256: String,
    rows: usize,
    bytes: usize,
}

/// Why an answer (or a request) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("runner protocol: {0}")]
pub struct WireError(pub String);

impl RunnerAnswer {
    /// Writes the header line and the tables.
    pub fn encode(&self, out: &mut impl Write) -> std::io::Result<()> {
        let tables = self
            .tables
            .iter()
            .map(|t| TableHeader {
                name: t.name.clone(),
                sha256: t.sha256.clone(),
                rows: t.batch.num_rows(),
                bytes: t.ipc.len(),
            })
            .collect();
        let header =
            Header { record: self.record.clone(), tables, dev_log: self.dev_log.clone(), isolated: self.isolated };
        serde_json::to_writer(&mut *out, &header)?;
        out.write_all(b"\n")?;
        for table in &self.tables {
            out.write_all(&table.ipc)?;
        }
        out.flush()
    }

    /// Reads an answer of at most `max_bytes`, each table through the strict IPC reader.
    pub fn decode(bytes: &[u8], max_bytes: usize) -> Result<RunnerAnswer, WireError> {
        let bad = |e: String| WireError(e);
        if bytes.len() > max_bytes {
            return Err(bad(format!("an answer of {} bytes is more than the {max_bytes} allowed", bytes.len())));
        }
        let newline = bytes.iter().position(|b| *b == b'\n').ok_or_else(|| bad("no header line".into()))?;
        let header: Header = serde_json::from_slice(&bytes[..newline]).map_err(|e| bad(format!("header: {e}")))?;
        let mut rest = &bytes[newline + 1..];
        let mut tables: Vec<OutputTable> = Vec::new();
        for table in header.tables {
            if tables.iter().any(|t| t.name == table.name) {
                return Err(bad(format!("table {} sent twice", table.name)));
            }
            if table.bytes > rest.len() {
                return Err(bad(format!("table {} cut short", table.name)));
            }
            let (ipc, tail) = rest.split_at(table.bytes);
            rest = tail;
            let output = OutputTable::from_ipc(&table.name, ipc.to_vec(), max_bytes).map_err(bad)?;
            if output.sha256 != table.sha256 || output.batch.num_rows() != table.rows {
                return Err(bad(format!("table {}: hash or rows differ from the header's", table.name)));
            }
            tables.push(output);
        }
        if !rest.is_empty() {
            return Err(bad("bytes after the last table".into()));
        }
        Ok(RunnerAnswer { record: header.record, tables, dev_log: header.dev_log, isolated: header.isolated })
    }
}

/// What the server asks `sandbox-runner --compile` to do: compile one module into the cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompileRequest {
    pub module: PathBuf,
    pub cache_dir: PathBuf,
    #[serde(default)]
    pub require_isolation: bool,
}

impl CompileRequest {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a request always serializes")
    }

    pub fn decode(bytes: &[u8]) -> Result<CompileRequest, WireError> {
        if bytes.len() as u64 > MAX_REQUEST_BYTES {
            return Err(WireError(format!("a request of {} bytes is too large", bytes.len())));
        }
        serde_json::from_slice(bytes).map_err(|e| WireError(format!("compile request: {e}")))
    }
}

/// How a compilation ended: one JSON line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompileAnswer {
    pub error: Option<crate::run::RunError>,
}

impl CompileAnswer {
    pub fn encode(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).expect("an answer always serializes");
        line.push(b'\n');
        line
    }

    pub fn decode(bytes: &[u8]) -> Result<CompileAnswer, WireError> {
        if bytes.len() > 64 << 10 {
            return Err(WireError("a compile answer of more than 64 KiB".into()));
        }
        serde_json::from_slice(bytes).map_err(|e| WireError(format!("compile answer: {e}")))
    }
}
