//! Proof files: the `.tlog-proof` of c2sp.org/tlog-proof (an entry's index, its inclusion proof,
//! and the checkpoint it is proved in), and hash lists (one base64 hash per line), the form of a
//! consistency proof handed to `sandbox-verify consistency`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::checkpoint::{self, Checkpoint, parse_decimal};
use crate::error::{Error, Format};
use crate::merkle::{self, Hash};
use crate::note::{MAX_NOTE_SIZE, VerifierKey};

/// The first line of a tlog-proof.
pub const TLOG_PROOF_HEADER: &str = "c2sp.org/tlog-proof@v1";
/// A tree of fewer than 2^64 leaves has proofs of at most 64 hashes.
pub const MAX_PROOF_HASHES: usize = 64;
/// The largest extra data accepted.
pub const MAX_EXTRA: usize = 4096;
/// The largest tlog-proof accepted.
pub const MAX_TLOG_PROOF_SIZE: usize = MAX_NOTE_SIZE + MAX_EXTRA * 2 + MAX_PROOF_HASHES * 46 + 64;

fn malformed(en: impl Into<String>, zh: impl Into<String>) -> Error {
    Error::malformed(Format::TlogProof, en, zh)
}

/// A tlog-proof: the entry at `index` is in the tree of the `checkpoint` note, by `hashes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlogProof {
    /// Opaque, unauthenticated data for the application; our releases carry none.
    pub extra: Option<Vec<u8>>,
    pub index: u64,
    /// The RFC 6962 inclusion proof, leaf side first.
    pub hashes: Vec<Hash>,
    /// The signed checkpoint note, verbatim.
    pub checkpoint: Vec<u8>,
}

impl TlogProof {
    /// Parses the format: the header line, an optional `extra <base64>` line, `index <decimal>`,
    /// zero or more base64 hash lines, an empty line, then the checkpoint note to the end.
    pub fn parse(bytes: &[u8]) -> Result<TlogProof, Error> {
        if bytes.len() > MAX_TLOG_PROOF_SIZE {
            return Err(Error::TooLarge {
                format: Format::TlogProof,
                size: bytes.len() as u64,
                limit: MAX_TLOG_PROOF_SIZE as u64,
            });
        }
        let mut rest = bytes;
        let mut next_line = |(en, zh): (&str, &str)| -> Result<&str, Error> {
            let end = rest
                .iter()
                .position(|&b| b == b'\n')
                .ok_or_else(|| malformed(format!("ends before {en}"), format!("在{zh}之前就结束了")))?;
            let line = std::str::from_utf8(&rest[..end])
                .map_err(|_| malformed(format!("{en} is not UTF-8"), format!("{zh}不是 UTF-8")))?;
            rest = &rest[end + 1..];
            Ok(line)
        };
        const INDEX: (&str, &str) = ("the index line", "index 行");
        if next_line(("the header line", "首行"))? != TLOG_PROOF_HEADER {
            return Err(malformed(
                format!("the first line must be {TLOG_PROOF_HEADER}"),
                format!("第一行必须是 {TLOG_PROOF_HEADER}"),
            ));
        }
        let mut line = next_line(INDEX)?;
        let mut extra = None;
        if let Some(data) = line.strip_prefix("extra ") {
            if data.len() > MAX_EXTRA * 2 {
                return Err(Error::TooLarge {
                    format: Format::TlogProof,
                    size: data.len() as u64,
                    limit: (MAX_EXTRA * 2) as u64,
                });
            }
            extra =
                Some(BASE64.decode(data).map_err(|_| malformed("extra data is not base64", "extra 数据不是 base64"))?);
            line = next_line(INDEX)?;
        }
        let index = line.strip_prefix("index ").and_then(parse_decimal).ok_or_else(|| {
            malformed(
                format!("expected index <decimal without leading zeros>, found {line:?}"),
                format!("应为 index <不带前导零的十进制数>，实际为 {line:?}"),
            )
        })?;
        let mut hashes = Vec::new();
        loop {
            let line = next_line(("the empty line before the checkpoint", "检查点前的空行"))?;
            if line.is_empty() {
                break;
            }
            if hashes.len() == MAX_PROOF_HASHES {
                return Err(malformed(
                    format!("more than {MAX_PROOF_HASHES} proof hashes"),
                    format!("证明哈希超过 {MAX_PROOF_HASHES} 个"),
                ));
            }
            hashes.push(Hash::from_base64(line)?);
        }
        if rest.is_empty() {
            return Err(malformed("no checkpoint after the empty line", "空行之后没有检查点"));
        }
        Ok(TlogProof { extra, index, hashes, checkpoint: rest.to_vec() })
    }

    /// The file, as [`TlogProof::parse`] reads it.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!("{TLOG_PROOF_HEADER}\n");
        if let Some(extra) = &self.extra {
            out.push_str(&format!("extra {}\n", BASE64.encode(extra)));
        }
        out.push_str(&format!("index {}\n", self.index));
        for hash in &self.hashes {
            out.push_str(&hash.to_base64());
            out.push('\n');
        }
        out.push('\n');
        let mut out = out.into_bytes();
        out.extend_from_slice(&self.checkpoint);
        out
    }

    /// Verifies that `entry` (the leaf's data) is at `index` in the checkpoint's tree, and that
    /// the checkpoint is signed by one of `log_keys` named as its origin. Returns the checkpoint.
    pub fn verify(&self, entry: &[u8], log_keys: &[VerifierKey]) -> Result<Checkpoint, Error> {
        let (checkpoint, _) = checkpoint::open(&self.checkpoint, log_keys)?;
        merkle::verify_inclusion(
            &merkle::leaf_hash(entry),
            self.index,
            checkpoint.size(),
            &self.hashes,
            checkpoint.root(),
        )?;
        Ok(checkpoint)
    }
}

/// Parses a hash list: one base64 hash per line, each line ending in a newline; empty for an
/// empty list. At most [`MAX_PROOF_HASHES`].
pub fn parse_hash_list(bytes: &[u8]) -> Result<Vec<Hash>, Error> {
    let text = std::str::from_utf8(bytes).map_err(|_| Error::malformed(Format::HashList, "not UTF-8", "不是 UTF-8"))?;
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let Some(body) = text.strip_suffix('\n') else {
        return Err(Error::malformed(
            Format::HashList,
            "the last line does not end in a newline",
            "最后一行没有以换行结尾",
        ));
    };
    let lines: Vec<&str> = body.split('\n').collect();
    if lines.len() > MAX_PROOF_HASHES {
        return Err(Error::malformed(
            Format::HashList,
            format!("{} hashes, more than {MAX_PROOF_HASHES}", lines.len()),
            format!("有 {} 个哈希，超过 {MAX_PROOF_HASHES} 个", lines.len()),
        ));
    }
    lines.into_iter().map(Hash::from_base64).collect()
}

/// Formats a hash list for [`parse_hash_list`].
pub fn format_hash_list(hashes: &[Hash]) -> String {
    hashes.iter().map(|h| h.to_base64() + "\n").collect()
}
