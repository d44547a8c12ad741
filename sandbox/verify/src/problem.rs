//! What verification found wrong, each problem at the file or entry it concerns, in English and
//! Chinese.

use std::fmt;

use crate::error::Error;
use crate::merkle::Hash;
use crate::time::Timestamp;

/// One thing wrong with a release, a proof or an archive, and where.
#[derive(Debug)]
pub struct Problem {
    /// A path relative to what was checked (`tile/0/000`, `results/a.csv`), or `entry <n>
    /// (<bundle path>)`.
    pub at: String,
    pub kind: ProblemKind,
}

impl Problem {
    pub(crate) fn new(at: impl Into<String>, kind: ProblemKind) -> Problem {
        Problem { at: at.into(), kind }
    }

    /// The message in Chinese, with its place.
    /// The message in Chinese.
    pub fn zh(&self) -> String {
        format!("{}：{}", self.at, self.kind.zh())
    }
}

impl fmt::Display for Problem {
    /// `place: message` in English.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.kind)
    }
}

/// Two validly signed checkpoints of one log that cannot both be true: the evidence of a fork,
/// complete in itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fork {
    /// The signed checkpoint notes, verbatim; `first` is not larger than `second`.
    pub first: Vec<u8>,
    pub second: Vec<u8>,
    /// When `second` is larger: a consistency proof that `second`'s tree had the root
    /// `root_in_second` at `first`'s size, which is not `first`'s root.
    pub proof: Vec<Hash>,
    pub root_in_second: Option<Hash>,
}

/// What the content of the entries and the tiles says about a checkpoint's root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootSource {
    /// The entries hash to another root; the stored tiles hash to this one.
    Entries,
    /// Neither the entries nor the stored tiles hash to this root.
    EntriesAndTiles,
}

#[derive(Debug)]
pub enum ProblemKind {
    /// Fails a check of the formats (malformed, bad signature, proof...).
    Invalid(Error),
    /// A file the log must have is not there.
    Missing,
    /// A file the log does not define, or beyond what any checkpoint covers.
    Unexpected,
    /// A stored tile's hash differs from the tree rebuilt from the entries.
    TileChanged {
        position: u16,
        level: u8,
        index: u64,
    },
    /// The entry at `index` is not the one the tiles and a signed checkpoint logged there.
    EntryChanged {
        index: u64,
    },
    /// The entry at `index` is the one logged at `logged_at`: entries were reordered.
    EntryMoved {
        index: u64,
        logged_at: u64,
    },
    /// A bundle with another number of entries than the checkpoints call for.
    EntryCount {
        found: usize,
        expected: u64,
    },
    /// A signed checkpoint whose root the log's content does not give.
    RootMismatch {
        size: u64,
        source: RootSource,
    },
    /// A checkpoint stored under another tree size than its own.
    WrongSize {
        named: u64,
        found: u64,
    },
    /// A checkpoint of another log.
    OtherOrigin {
        expected: String,
        found: String,
    },
    /// The latest checkpoint is smaller than one in the history: the log was rolled back.
    Rollback {
        latest: u64,
        largest: u64,
    },
    /// The latest checkpoint is not in the history of checkpoints.
    NotInHistory {
        size: u64,
    },
    /// Entries from `available` on are missing, so this checkpoint cannot be recomputed.
    Unverifiable {
        size: u64,
        available: u64,
    },
    Fork(Box<Fork>),
    /// Signed by a key outside its validity at `time`.
    KeyNotValid {
        key: String,
        time: Timestamp,
    },
    /// An entry signed by an actor no `principal.registered` entry (or trusted key) introduced.
    UnknownActor {
        actor: String,
    },
    /// An actor whose registered role may not make this kind of entry.
    WrongRole {
        actor: String,
        role: String,
        needed: &'static str,
    },
    AlreadyRegistered {
        principal: String,
    },
    /// An entry whose actor was disabled (`principal.disabled`) and not enabled again.
    DisabledActor {
        actor: String,
    },
    /// A statement that is not a `release` entry.
    NotARelease {
        kind: String,
    },
    /// A result file whose SHA-256 is not the one the statement signs.
    ResultChanged {
        expected: Hash,
        found: Hash,
    },
    /// A result file the statement does not name.
    UnlistedResult,
    /// An annual report that is not what the log gives: the first line that differs.
    ReportDiffers {
        line: usize,
    },
    /// An annual report no `report` entry of the log names.
    ReportNotFiled,
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProblemKind::Invalid(e) => write!(f, "{e}"),
            ProblemKind::Missing => f.write_str("missing"),
            ProblemKind::Unexpected => f.write_str("unexpected file: not part of the log any checkpoint covers"),
            ProblemKind::TileChanged { position, level, index } => write!(
                f,
                "hash {position} (level {level}, index {index}) differs from the tree rebuilt from the entries: \
                 the tile was changed"
            ),
            ProblemKind::EntryChanged { index } => write!(
                f,
                "entry {index} is not the logged entry: its leaf hash differs from the tiles, which a signed \
                 checkpoint confirms (the entry was changed)"
            ),
            ProblemKind::EntryMoved { index, logged_at } => {
                write!(f, "entry {index} is the entry logged at {logged_at}: entries were reordered")
            }
            ProblemKind::EntryCount { found, expected } => write!(
                f,
                "holds {found} entries, the checkpoints call for {expected}{}",
                if (*found as u64) < *expected { " (truncated)" } else { "" }
            ),
            ProblemKind::RootMismatch { size, source: RootSource::Entries } => {
                write!(f, "the entries do not hash to this checkpoint's root at size {size}; the stored tiles do")
            }
            ProblemKind::RootMismatch { size, source: RootSource::EntriesAndTiles } => {
                write!(f, "neither the entries nor the stored tiles hash to this checkpoint's root at size {size}")
            }
            ProblemKind::WrongSize { named, found } => {
                write!(f, "stored as the checkpoint of size {named}, but its size is {found}")
            }
            ProblemKind::OtherOrigin { expected, found } => {
                write!(f, "checkpoint of log {found:?}, not of {expected:?}")
            }
            ProblemKind::Rollback { latest, largest } => write!(
                f,
                "the latest checkpoint has size {latest}, but the log once signed size {largest}: rolled back"
            ),
            ProblemKind::NotInHistory { size } => {
                write!(f, "the latest checkpoint (size {size}) is missing from checkpoints/")
            }
            ProblemKind::Unverifiable { size, available } => {
                write!(f, "cannot recompute the root at size {size}: only the first {available} entries are readable")
            }
            ProblemKind::Fork(fork) => write!(
                f,
                "FORK: the log signed two checkpoints that cannot both hold (sizes {} and {})",
                size_of(&fork.first),
                size_of(&fork.second)
            ),
            ProblemKind::KeyNotValid { key, time } => write!(f, "signed by key {key}, which is not valid at {time}"),
            ProblemKind::UnknownActor { actor } => write!(f, "actor {actor:?} is not a registered principal"),
            ProblemKind::WrongRole { actor, role, needed } => {
                write!(f, "actor {actor:?} is registered as {role:?}; this kind of entry needs the role {needed:?}")
            }
            ProblemKind::AlreadyRegistered { principal } => {
                write!(f, "principal {principal:?} is registered twice (use key.rotated)")
            }
            ProblemKind::DisabledActor { actor } => {
                write!(f, "actor {actor:?} acts while disabled (principal.disabled, not enabled since)")
            }
            ProblemKind::NotARelease { kind } => write!(f, "the statement is a {kind:?} entry, not a release"),
            ProblemKind::ResultChanged { expected, found } => {
                write!(f, "SHA-256 is {found}, the statement signs {expected}: the file was changed")
            }
            ProblemKind::UnlistedResult => f.write_str("the statement does not name this file"),
            ProblemKind::ReportDiffers { line } => write!(
                f,
                "line {line} differs from the report computed again from the log: the report was changed or \
                 the log does not back it"
            ),
            ProblemKind::ReportNotFiled => f.write_str(
                "no report entry in the log names this report's SHA-256 (year and size): it was never filed",
            ),
        }
    }
}

impl ProblemKind {
    pub fn zh(&self) -> String {
        match self {
            ProblemKind::Invalid(e) => e.zh(),
            ProblemKind::Missing => "缺失".to_owned(),
            ProblemKind::Unexpected => "多余的文件：不属于任何检查点覆盖的日志".to_owned(),
            ProblemKind::TileChanged { position, level, index } => {
                format!("第 {position} 个哈希（第 {level} 层，序号 {index}）与由条目重建的树不符：瓦片被改动")
            }
            ProblemKind::EntryChanged { index } => {
                format!("第 {index} 个条目不是日志记录的条目：其叶哈希与经签名检查点确认的瓦片不符（条目被改动）")
            }
            ProblemKind::EntryMoved { index, logged_at } => {
                format!("第 {index} 个条目是记录在第 {logged_at} 个位置的条目：条目顺序被调换")
            }
            ProblemKind::EntryCount { found, expected } => format!(
                "含 {found} 个条目，检查点要求 {expected} 个{}",
                if (*found as u64) < *expected { "（被截断）" } else { "" }
            ),
            ProblemKind::RootMismatch { size, source: RootSource::Entries } => {
                format!("条目算不出该检查点在大小 {size} 时的根哈希，存储的瓦片可以")
            }
            ProblemKind::RootMismatch { size, source: RootSource::EntriesAndTiles } => {
                format!("条目和存储的瓦片都算不出该检查点在大小 {size} 时的根哈希")
            }
            ProblemKind::WrongSize { named, found } => format!("按大小 {named} 存放，但检查点大小为 {found}"),
            ProblemKind::OtherOrigin { expected, found } => format!("是日志 {found:?} 的检查点，不是 {expected:?} 的"),
            ProblemKind::Rollback { latest, largest } => {
                format!("最新检查点大小为 {latest}，但日志曾签署过大小 {largest}：发生了回滚")
            }
            ProblemKind::NotInHistory { size } => format!("最新检查点（大小 {size}）不在 checkpoints/ 历史中"),
            ProblemKind::Unverifiable { size, available } => {
                format!("无法重算大小 {size} 时的根哈希：只有前 {available} 个条目可读")
            }
            ProblemKind::Fork(fork) => format!(
                "分叉：日志签署了两个不可能同时成立的检查点（大小 {} 和 {}）",
                size_of(&fork.first),
                size_of(&fork.second)
            ),
            ProblemKind::KeyNotValid { key, time } => format!("签名密钥 {key} 在 {time} 时不在有效期内"),
            ProblemKind::UnknownActor { actor } => format!("行为人 {actor:?} 不是已登记的主体"),
            ProblemKind::WrongRole { actor, role, needed } => {
                format!("行为人 {actor:?} 登记的角色是 {role:?}，此类条目需要角色 {needed:?}")
            }
            ProblemKind::AlreadyRegistered { principal } => {
                format!("主体 {principal:?} 被重复登记（应使用 key.rotated）")
            }
            ProblemKind::DisabledActor { actor } => {
                format!("行为人 {actor:?} 已被停用（principal.disabled，其后未恢复），却仍有其行为")
            }
            ProblemKind::NotARelease { kind } => format!("声明是 {kind:?} 条目，不是发布条目"),
            ProblemKind::ResultChanged { expected, found } => {
                format!("SHA-256 为 {found}，声明签署的是 {expected}：文件被改动")
            }
            ProblemKind::UnlistedResult => "声明中没有这个文件".to_owned(),
            ProblemKind::ReportDiffers { line } => {
                format!("第 {line} 行与由日志重新计算的报告不同：报告被改动，或日志不支持其内容")
            }
            ProblemKind::ReportNotFiled => {
                "日志中没有任何 report 条目记载此报告的 SHA-256（及年份、条目数）：报告从未备案".to_owned()
            }
        }
    }
}

/// The tree size a checkpoint note states, for messages (`?` if unreadable).
fn size_of(note: &[u8]) -> String {
    std::str::from_utf8(note).ok().and_then(|t| t.lines().nth(1)).unwrap_or("?").to_owned()
}
