//! Checkpoints (c2sp.org/tlog-checkpoint): the note text `origin`, tree size, base64 root hash,
//! then optional extension lines, each ending in a newline.
//!
//! [`open`] is the only way a verifier should take a checkpoint from bytes: it accepts the text
//! only under a valid signature by a trusted log key named as the origin.

use crate::error::{Error, Format};
use crate::merkle::Hash;
use crate::note::{Note, VerifierKey};

/// A log's signed statement of its tree: at `size` leaves, the root is `root`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    origin: String,
    size: u64,
    root: Hash,
    extensions: Vec<String>,
}

fn malformed(en: impl Into<String>, zh: impl Into<String>) -> Error {
    Error::malformed(Format::Checkpoint, en, zh)
}

/// Parses a decimal with no leading zero (but `0` itself) and no sign, as tree sizes and indexes
/// are written in C2SP formats.
pub(crate) fn parse_decimal(text: &str) -> Option<u64> {
    let canonical =
        !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) && (text == "0" || !text.starts_with('0'));
    canonical.then(|| text.parse().ok()).flatten()
}

impl Checkpoint {
    /// A checkpoint without extension lines. The origin must be a non-empty line.
    pub fn new(origin: &str, size: u64, root: Hash) -> Result<Checkpoint, Error> {
        if origin.is_empty() || origin.contains(|c: char| c.is_control()) {
            return Err(malformed(
                format!("origin {origin:?} must be a non-empty line"),
                format!("来源 {origin:?} 必须是非空的一行"),
            ));
        }
        Ok(Checkpoint { origin: origin.to_owned(), size, root, extensions: Vec::new() })
    }

    /// Parses a checkpoint's note text.
    pub fn parse(text: &str) -> Result<Checkpoint, Error> {
        let Some(body) = text.strip_suffix('\n') else {
            return Err(malformed("the text must end in a newline", "正文必须以换行结尾"));
        };
        let lines: Vec<&str> = body.split('\n').collect();
        if let Some(n) = lines.iter().position(|l| l.is_empty()) {
            return Err(malformed(format!("line {} is empty", n + 1), format!("第 {} 行为空", n + 1)));
        }
        let [origin, size, root, extensions @ ..] = lines.as_slice() else {
            return Err(malformed(
                "needs at least three lines: origin, tree size, root hash",
                "至少需要三行：来源、树大小、根哈希",
            ));
        };
        let size = parse_decimal(size).ok_or_else(|| {
            malformed(
                format!("tree size {size:?} is not a decimal number without leading zeros"),
                format!("树大小 {size:?} 不是不带前导零的十进制数"),
            )
        })?;
        let root = Hash::from_base64(root)?;
        let mut checkpoint = Checkpoint::new(origin, size, root)?;
        checkpoint.extensions = extensions.iter().map(|e| e.to_string()).collect();
        Ok(checkpoint)
    }

    /// The note text.
    pub fn to_text(&self) -> String {
        let mut text = format!("{}\n{}\n{}\n", self.origin, self.size, self.root.to_base64());
        for extension in &self.extensions {
            text.push_str(extension);
            text.push('\n');
        }
        text
    }

    /// The log's identity, the first line.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The RFC 6962 root of the tree of `size` leaves.
    pub fn root(&self) -> &Hash {
        &self.root
    }

    /// Extension lines, opaque and unauthenticated by monitors; our log writes none.
    pub fn extensions(&self) -> &[String] {
        &self.extensions
    }
}

/// Opens a signed checkpoint: the note must carry a valid signature by one of `log_keys` whose
/// name is the checkpoint's origin (so a key cannot vouch for another log's checkpoints).
/// Returns the checkpoint and the keys whose signatures verified.
pub fn open(bytes: &[u8], log_keys: &[VerifierKey]) -> Result<(Checkpoint, Vec<VerifierKey>), Error> {
    let note = Note::parse(bytes)?;
    let checkpoint = Checkpoint::parse(note.text())?;
    let keys: Vec<VerifierKey> = log_keys.iter().filter(|k| k.name() == checkpoint.origin).cloned().collect();
    let signers = note.verify(&keys)?.into_iter().cloned().collect();
    Ok((checkpoint, signers))
}
