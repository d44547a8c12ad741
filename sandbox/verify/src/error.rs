//! The one error type of the library: what was wrong, with which value, in English (`Display`)
//! and Chinese ([`Error::zh`]).

use std::fmt;
use std::path::PathBuf;

/// The formats this crate reads, to say which one a malformed input claimed to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Note,
    VerifierKey,
    SignerKey,
    Checkpoint,
    TlogProof,
    HashList,
    Hash,
    Entry,
    Timestamp,
    TilePath,
    Tile,
    EntryBundle,
    TrustFile,
    /// Any file read with a size limit.
    File,
}

impl Format {
    fn en(self) -> &'static str {
        match self {
            Format::Note => "signed note",
            Format::VerifierKey => "verifier key",
            Format::SignerKey => "signer key",
            Format::Checkpoint => "checkpoint",
            Format::TlogProof => "tlog-proof",
            Format::HashList => "hash list",
            Format::Hash => "hash",
            Format::Entry => "log entry",
            Format::Timestamp => "timestamp",
            Format::TilePath => "tile path",
            Format::Tile => "tile",
            Format::EntryBundle => "entry bundle",
            Format::TrustFile => "trust file",
            Format::File => "file",
        }
    }

    fn zh(self) -> &'static str {
        match self {
            Format::Note => "签名注记",
            Format::VerifierKey => "验证公钥",
            Format::SignerKey => "签名私钥",
            Format::Checkpoint => "检查点",
            Format::TlogProof => "日志证明",
            Format::HashList => "哈希列表",
            Format::Hash => "哈希值",
            Format::Entry => "日志条目",
            Format::Timestamp => "时间戳",
            Format::TilePath => "瓦片路径",
            Format::Tile => "瓦片",
            Format::EntryBundle => "条目包",
            Format::TrustFile => "信任文件",
            Format::File => "文件",
        }
    }
}

/// Which Merkle proof failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofKind {
    Inclusion,
    Consistency,
}

/// Why a Merkle proof does not verify, or cannot exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofFault {
    /// An inclusion proof for a leaf index not below the tree size.
    IndexNotBelowSize { index: u64, size: u64 },
    /// A consistency proof from a larger tree to a smaller one.
    OldLargerThanNew { old: u64, new: u64 },
    /// From the empty tree there is no consistency proof (RFC 9162 defines them for 0 < m < n):
    /// every tree extends it, so it proves nothing.
    FromEmptyTree,
    /// Trees of equal size: the proof must be empty.
    NotEmpty,
    /// Trees of different sizes: the proof must not be empty.
    Empty,
    /// More hashes than the tree sizes call for.
    TooLong,
    /// Fewer hashes than the tree sizes call for.
    TooShort,
    /// The proof leads to another root than the one given (the old one for `old == true`).
    RootMismatch { old: bool },
}

/// Everything that can go wrong in this library. Messages are lowercase, name the value, and have
/// no trailing period.
#[derive(Debug)]
pub enum Error {
    /// Bytes that do not follow their format.
    Malformed {
        format: Format,
        en: String,
        zh: String,
    },
    /// An input over its size limit: a bound on every parser.
    TooLarge {
        format: Format,
        size: u64,
        limit: u64,
    },
    /// A signed note with no valid signature by any of the keys it was checked against.
    NotSigned {
        signers: Vec<String>,
    },
    /// A signature by a known key that does not verify.
    BadSignature {
        key: String,
    },
    /// A Merkle proof that does not verify, or was asked for where none exists.
    Proof {
        kind: ProofKind,
        fault: ProofFault,
    },
    /// A hash reader asked for a subtree it does not have.
    HashUnavailable {
        level: u8,
        index: u64,
    },
    /// A file that must exist does not.
    Missing {
        path: PathBuf,
    },
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn malformed(format: Format, en: impl Into<String>, zh: impl Into<String>) -> Error {
        Error::Malformed { format, en: en.into(), zh: zh.into() }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        let path = path.into();
        match source.kind() {
            std::io::ErrorKind::NotFound => Error::Missing { path },
            _ => Error::Io { path, source },
        }
    }

    /// The same message for Chinese readers.
    pub fn zh(&self) -> String {
        match self {
            Error::Malformed { format, zh, .. } => format!("{}格式错误：{zh}", format.zh()),
            Error::TooLarge { format, size, limit } => format!("{}过大：{size} 字节，上限 {limit} 字节", format.zh()),
            Error::NotSigned { signers } if signers.is_empty() => "没有受信任密钥的有效签名".to_owned(),
            Error::NotSigned { signers } => {
                format!("没有受信任密钥的有效签名（签名者：{}）", signers.join("、"))
            }
            Error::BadSignature { key } => format!("密钥 {key} 的签名验证失败"),
            Error::Proof { kind, fault } => {
                let kind = match kind {
                    ProofKind::Inclusion => "包含性证明",
                    ProofKind::Consistency => "一致性证明",
                };
                format!("{kind}无效：{}", fault.zh())
            }
            Error::HashUnavailable { level, index } => format!("缺少第 {level} 层第 {index} 个子树的哈希"),
            Error::Missing { path } => format!("{} 不存在", path.display()),
            Error::Io { path, source } => format!("无法读取 {}：{source}", path.display()),
        }
    }
}

impl ProofFault {
    fn zh(self) -> String {
        match self {
            ProofFault::IndexNotBelowSize { index, size } => format!("叶子序号 {index} 不小于树大小 {size}"),
            ProofFault::OldLargerThanNew { old, new } => format!("旧树大小 {old} 大于新树大小 {new}"),
            ProofFault::FromEmptyTree => "从空树出发的一致性证明不存在，也证明不了任何事".to_owned(),
            ProofFault::NotEmpty => "两棵树大小相同，证明应为空".to_owned(),
            ProofFault::Empty => "两棵树大小不同，证明不应为空".to_owned(),
            ProofFault::TooLong => "证明中的哈希多于所需".to_owned(),
            ProofFault::TooShort => "证明中的哈希少于所需".to_owned(),
            ProofFault::RootMismatch { old: true } => "推导出的根哈希与旧检查点的根哈希不符".to_owned(),
            ProofFault::RootMismatch { old: false } => "推导出的根哈希与给定的根哈希不符".to_owned(),
        }
    }
}

impl fmt::Display for ProofFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProofFault::IndexNotBelowSize { index, size } => {
                write!(f, "leaf index {index} is not below tree size {size}")
            }
            ProofFault::OldLargerThanNew { old, new } => write!(f, "old tree size {old} is larger than new size {new}"),
            ProofFault::FromEmptyTree => {
                f.write_str("there is no consistency proof from the empty tree; it would prove nothing")
            }
            ProofFault::NotEmpty => f.write_str("the trees have the same size, so the proof must be empty"),
            ProofFault::Empty => f.write_str("the trees differ in size, so the proof must not be empty"),
            ProofFault::TooLong => f.write_str("the proof has more hashes than the tree sizes call for"),
            ProofFault::TooShort => f.write_str("the proof has fewer hashes than the tree sizes call for"),
            ProofFault::RootMismatch { old: true } => f.write_str("the proof leads to another root than the old one"),
            ProofFault::RootMismatch { old: false } => {
                f.write_str("the proof leads to another root than the one given")
            }
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Malformed { format, en, .. } => write!(f, "malformed {}: {en}", format.en()),
            Error::TooLarge { format, size, limit } => {
                write!(f, "{} too large: {size} bytes, the limit is {limit}", format.en())
            }
            Error::NotSigned { signers } if signers.is_empty() => f.write_str("no valid signature by a trusted key"),
            Error::NotSigned { signers } => {
                write!(f, "no valid signature by a trusted key (signed by: {})", signers.join(", "))
            }
            Error::BadSignature { key } => write!(f, "the signature by key {key} does not verify"),
            Error::Proof { kind: ProofKind::Inclusion, fault } => write!(f, "inclusion proof invalid: {fault}"),
            Error::Proof { kind: ProofKind::Consistency, fault } => write!(f, "consistency proof invalid: {fault}"),
            Error::HashUnavailable { level, index } => {
                write!(f, "no hash for the subtree at level {level}, index {index}")
            }
            Error::Missing { path } => write!(f, "{} does not exist", path.display()),
            Error::Io { path, source } => write!(f, "cannot read {}: {source}", path.display()),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
