//! Our log entries, version 1. An entry's text is
//!
//! ```text
//! sandbox.log/entry/v1
//! kind <kind>
//! time <YYYY-MM-DDTHH:MM:SSZ>
//! actor <principal id>
//! <field> <value>
//! ...
//! ```
//!
//! Keys are `[a-z0-9_.-]+`, each used once; values are non-empty printable UTF-8 without
//! surrounding spaces; fields stay in the order the writer gave.
//!
//! Who signs depends on the kind ([`SignedBy`]). An entry a principal or the release key signs is
//! logged as a signed note (c2sp.org/signed-note) of that text. An entry only the log vouches for
//! is logged as the bare text: the checkpoints, signed by the log key, already commit to it, and a
//! signature of its own by the same key would add bytes and work, not assurance. The leaf of an
//! entry is its exact logged bytes, at most [`MAX_ENTRY_SIZE`].
//! Entries carry hashes and identifiers only, never data values. Kinds this version does not
//! know are accepted if well formed, so old verifiers can read newer logs.

use crate::error::{Error, Format};
use crate::merkle::Hash;
use crate::note::{Note, SignerKey, VerifierKey, is_valid_name};
use crate::time::Timestamp;

/// The first line of every entry of this version.
pub const ENTRY_HEADER: &str = "sandbox.log/entry/v1";
/// The largest entry, signatures included.
pub const MAX_ENTRY_SIZE: usize = 16 * 1024;

/// The kinds of entry the sandbox writes.
pub mod kind {
    /// A dataset version entered in the catalog (公共数据资源目录登记).
    pub const DATASET_REGISTERED: &str = "dataset.registered";
    /// Fields `principal`, `role`, `key` (a verifier key string named as the principal).
    pub const PRINCIPAL_REGISTERED: &str = "principal.registered";
    /// Fields `principal`, `key`: the principal's new key, from this entry on.
    pub const KEY_ROTATED: &str = "key.rotated";
    /// Fields `principal`, `reason`: from this entry on the principal acts no more (its token is
    /// refused; its queued runs end withheld) until `principal.enabled`.
    pub const PRINCIPAL_DISABLED: &str = "principal.disabled";
    /// Field `principal`: a disabled principal may act again.
    pub const PRINCIPAL_ENABLED: &str = "principal.enabled";
    /// Fields `principal`, `token_sha256`: the principal's API token is replaced; the old one is
    /// refused from this entry on.
    pub const TOKEN_ROTATED: &str = "token.rotated";
    /// Fields `principal`, `reason`: the principal's API token is refused from this entry on; it
    /// has none until `token.rotated`.
    pub const TOKEN_REVOKED: &str = "token.revoked";
    /// An operation licence (授权运营协议) granted.
    pub const LICENCE_GRANTED: &str = "licence.granted";
    /// A licence suspended, effective at once.
    pub const LICENCE_SUSPENDED: &str = "licence.suspended";
    /// A suspended licence in force again.
    pub const LICENCE_RESUMED: &str = "licence.resumed";
    /// A licence ended for good.
    pub const LICENCE_REVOKED: &str = "licence.revoked";
    /// Signed by a data provider (the actor, role `provider`): its consent to a licence over its
    /// conditionally shared (有条件共享) dataset; fields `licence`, `dataset`. A licence that
    /// names such datasets (its `consent` field) takes effect once each has its consent.
    pub const LICENCE_CONSENTED: &str = "licence.consented";
    /// The server (the actor) found, at start, a licence over datasets the catalog now shares
    /// on conditions whose providers have not consented (granted before, or reclassified since):
    /// fields `licence`, `datasets`; the licence is not in force until they consent.
    pub const LICENCE_CONSENT_REQUIRED: &str = "licence.consent_required";
    /// An operator or application unit (the actor) reports a security incident (安全事件) under a
    /// licence: fields `incident`, `licence`, `category` (`leak`, `loss`, `misuse`, `other`),
    /// `description`. New runs under the licence wait until it is closed or runs are allowed.
    pub const INCIDENT_REPORTED: &str = "incident.reported";
    /// The bureau (the actor) records a measure on an incident: fields `incident`, `licence`,
    /// `measure` (`contain`, `suspend`, `terminate`, `allow_runs`), `note`.
    pub const INCIDENT_MEASURE: &str = "incident.measure";
    /// The bureau (the actor) closes an incident: fields `incident`, `licence`, `reported_to` (its
    /// report to the authorities, by reference, or `-`), `note`.
    pub const INCIDENT_CLOSED: &str = "incident.closed";
    /// A service agreement (数据服务协议) between an operator (the actor) and an application unit.
    pub const AGREEMENT_SIGNED: &str = "agreement.signed";
    /// A service agreement ended before its term.
    pub const AGREEMENT_ENDED: &str = "agreement.ended";
    /// Signed by the operator (the actor). Fields include `module`, `manifest`.
    pub const MODULE_SUBMITTED: &str = "module.submitted";
    /// Signed by the reviewer (the actor). Fields include `module`.
    pub const MODULE_APPROVED: &str = "module.approved";
    /// Signed by the reviewer (the actor). Fields include `module`.
    pub const MODULE_REJECTED: &str = "module.rejected";
    /// An approved module withdrawn: no new run of it starts.
    pub const MODULE_REVOKED: &str = "module.revoked";
    /// Signed by the reviewer (the actor): a table the output audit held for review (人工复核)
    /// may leave. Fields `run`, `report` (the internal audit report's name, a keyed digest),
    /// `table`.
    pub const OUTPUT_APPROVED: &str = "output.approved";
    /// Signed by the reviewer (the actor): a held table stays in. Fields as for
    /// [`OUTPUT_APPROVED`], and `reason`.
    pub const OUTPUT_REJECTED: &str = "output.rejected";
    /// A production run of an approved module queued by its operator (the actor).
    pub const RUN_QUEUED: &str = "run.queued";
    /// A production run of an approved module started.
    pub const RUN_STARTED: &str = "run.started";
    /// A development run on the synthetic twins: fields `module`, `licence`, `parameters` (a
    /// keyed digest of them), `outcome` (`ok` or an error code), and `fuel`, `wall_ms` when the
    /// runner answered.
    /// Its output went to the operator and is not logged.
    pub const RUN_DEVELOPED: &str = "run.developed";
    /// A production run finished: `status` `ok`, `failed` (with `error`, one of `module`,
    /// `limits`, `contract`, `interrupted`) or `cancelled`. Never a number the module chose.
    pub const RUN_FINISHED: &str = "run.finished";
    /// The output audit's (出域审核) outcome for a run: `outcome` (`pass`, `suppressed`, `review`,
    /// `fail`, `breach` — the module's declared values disagree with the host's —, `stale`,
    /// `error`), `report` (the internal report's name), `released` (tables), `held`.
    pub const AUDIT_OUTCOME: &str = "audit.outcome";
    /// A reviewer or administrator (the actor) read a run's internal audit report, which holds
    /// figures that do not leave: fields `run`, `report`.
    pub const AUDIT_REPORT_READ: &str = "audit.report.read";
    /// Signed by the sandbox release key; see [`crate::release`] for its fields.
    pub const RELEASE: &str = "release";
    /// A released result delivered to the application unit.
    pub const DELIVERY: &str = "delivery";
    /// An application unit's feedback on a product.
    pub const FEEDBACK: &str = "feedback";
    /// A data provider (the actor) rates an operator that used its data, for the year's
    /// evaluation: fields `rating` (its id), `operator`, `year`, `score` (1 to 5), `comment`.
    pub const OPERATOR_RATED: &str = "operator.rated";
    /// An annual operation report (年度运营报告, see [`crate::annual`]) filed by the bureau (the
    /// actor): fields `year`, `size` (the log entries it covers), `sha256` (of its text).
    pub const REPORT: &str = "report";
    /// A request the sandbox refused, with the reason's code.
    pub const REQUEST_REFUSED: &str = "request.refused";

    /// Every kind above.
    pub const ALL: &[&str] = &[
        DATASET_REGISTERED,
        PRINCIPAL_REGISTERED,
        KEY_ROTATED,
        PRINCIPAL_DISABLED,
        PRINCIPAL_ENABLED,
        TOKEN_ROTATED,
        TOKEN_REVOKED,
        LICENCE_GRANTED,
        LICENCE_SUSPENDED,
        LICENCE_RESUMED,
        LICENCE_REVOKED,
        LICENCE_CONSENTED,
        LICENCE_CONSENT_REQUIRED,
        INCIDENT_REPORTED,
        INCIDENT_MEASURE,
        INCIDENT_CLOSED,
        AGREEMENT_SIGNED,
        AGREEMENT_ENDED,
        MODULE_SUBMITTED,
        MODULE_APPROVED,
        MODULE_REJECTED,
        MODULE_REVOKED,
        OUTPUT_APPROVED,
        OUTPUT_REJECTED,
        RUN_QUEUED,
        RUN_STARTED,
        RUN_DEVELOPED,
        RUN_FINISHED,
        AUDIT_OUTCOME,
        AUDIT_REPORT_READ,
        RELEASE,
        DELIVERY,
        FEEDBACK,
        OPERATOR_RATED,
        REPORT,
        REQUEST_REFUSED,
    ];
}

/// The role a principal must have registered to act as the actor of a kind, if any.
pub fn actor_role(kind: &str) -> Option<&'static str> {
    match kind {
        kind::MODULE_SUBMITTED => Some("operator"),
        kind::MODULE_APPROVED | kind::MODULE_REJECTED | kind::OUTPUT_APPROVED | kind::OUTPUT_REJECTED => {
            Some("reviewer")
        }
        kind::LICENCE_CONSENTED => Some("provider"),
        _ => None,
    }
}

/// Whose signature an entry needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignedBy {
    /// The actor's own principal key, as registered in the log (the key's name is the actor).
    Actor,
    /// A trusted sandbox release key.
    ReleaseKey,
    /// A trusted log key: the writer vouches for entries no principal signs.
    LogKey,
}

impl SignedBy {
    /// Who signs entries of `kind`; unknown kinds are the log's.
    pub fn of(kind: &str) -> SignedBy {
        match kind {
            kind::MODULE_SUBMITTED
            | kind::MODULE_APPROVED
            | kind::MODULE_REJECTED
            | kind::OUTPUT_APPROVED
            | kind::OUTPUT_REJECTED
            | kind::LICENCE_CONSENTED => SignedBy::Actor,
            kind::RELEASE => SignedBy::ReleaseKey,
            _ => SignedBy::LogKey,
        }
    }
}

/// The fields a known kind cannot do without (beyond `kind`, `time`, `actor`).
fn required_fields(kind: &str) -> &'static [&'static str] {
    match kind {
        kind::PRINCIPAL_REGISTERED => &["principal", "role", "key"],
        kind::KEY_ROTATED => &["principal", "key"],
        kind::PRINCIPAL_DISABLED | kind::TOKEN_REVOKED => &["principal", "reason"],
        kind::PRINCIPAL_ENABLED => &["principal"],
        kind::TOKEN_ROTATED => &["principal", "token_sha256"],
        kind::MODULE_SUBMITTED => &["module", "manifest"],
        kind::MODULE_APPROVED | kind::MODULE_REJECTED => &["module"],
        kind::LICENCE_CONSENTED => &["licence", "dataset"],
        kind::OUTPUT_APPROVED | kind::OUTPUT_REJECTED => &["run", "report", "table"],
        kind::RUN_DEVELOPED => &["module", "licence", "parameters", "outcome"],
        kind::REPORT => &["year", "size", "sha256"],
        kind::RELEASE => &["module", "manifest", "datasets", "audit_report", "policy", "recipient", "agreement"],
        _ => &[],
    }
}

/// One log entry's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    kind: String,
    time: Timestamp,
    actor: String,
    fields: Vec<(String, String)>,
}

fn malformed(en: impl Into<String>, zh: impl Into<String>) -> Error {
    Error::malformed(Format::Entry, en, zh)
}

fn is_key(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-'))
}

fn check_value(key: &str, value: &str) -> Result<(), Error> {
    if value.is_empty() || value.contains(char::is_control) || value.trim() != value {
        return Err(malformed(
            format!("field {key:?}: value {value:?} must be non-empty printable text without surrounding spaces"),
            format!("字段 {key:?}：值 {value:?} 必须是非空、可打印、前后无空格的文本"),
        ));
    }
    Ok(())
}

/// Checks everything an entry must satisfy, wherever it came from.
fn check(entry: &Entry) -> Result<(), Error> {
    if !is_key(&entry.kind) {
        return Err(malformed(
            format!("kind {:?} is not [a-z0-9_.-]+", entry.kind),
            format!("类型 {:?} 不符合 [a-z0-9_.-]+", entry.kind),
        ));
    }
    if !is_valid_name(&entry.actor) || entry.actor.contains(char::is_control) {
        return Err(malformed(
            format!("actor {:?} is not a principal id (non-empty, no spaces or '+')", entry.actor),
            format!("行为人 {:?} 不是有效的主体标识（非空，不含空白或 '+'）", entry.actor),
        ));
    }
    let mut seen: Vec<&str> = vec!["kind", "time", "actor"];
    for (key, value) in &entry.fields {
        if !is_key(key) {
            return Err(malformed(
                format!("field name {key:?} is not [a-z0-9_.-]+"),
                format!("字段名 {key:?} 不符合 [a-z0-9_.-]+"),
            ));
        }
        if seen.contains(&key.as_str()) {
            return Err(malformed(format!("field {key:?} appears twice"), format!("字段 {key:?} 出现了两次")));
        }
        seen.push(key);
        check_value(key, value)?;
    }
    if let Some(missing) = required_fields(&entry.kind).iter().find(|f| !seen.contains(f)) {
        return Err(malformed(
            format!("a {} entry needs the field {missing:?}", entry.kind),
            format!("{} 条目缺少字段 {missing:?}", entry.kind),
        ));
    }
    if matches!(entry.kind.as_str(), kind::PRINCIPAL_REGISTERED | kind::KEY_ROTATED) {
        entry.principal_key()?;
    }
    if entry.kind == kind::RELEASE {
        let results = entry.results();
        if results.is_empty() {
            return Err(malformed("a release names no result.<file> field", "发布条目没有任何 result.<文件名> 字段"));
        }
        for (name, hash) in results {
            if name.is_empty() || name == "." || name == ".." {
                return Err(malformed(
                    format!("result file name {name:?} is not a file name"),
                    format!("结果文件名 {name:?} 无效"),
                ));
            }
            Hash::from_hex(hash)?;
        }
    }
    Ok(())
}

impl Entry {
    /// Starts an entry; add fields in the order they should appear, then [`EntryBuilder::build`].
    pub fn builder(kind: &str, time: Timestamp, actor: &str) -> EntryBuilder {
        EntryBuilder { entry: Entry { kind: kind.to_owned(), time, actor: actor.to_owned(), fields: Vec::new() } }
    }

    /// Parses an entry's note text.
    pub fn parse(text: &str) -> Result<Entry, Error> {
        let Some(body) = text.strip_suffix('\n') else {
            return Err(malformed("the text must end in a newline", "正文必须以换行结尾"));
        };
        let mut lines = body.split('\n');
        if lines.next() != Some(ENTRY_HEADER) {
            return Err(malformed(
                format!("the first line must be {ENTRY_HEADER}"),
                format!("第一行必须是 {ENTRY_HEADER}"),
            ));
        }
        let mut header = |key: &str| {
            lines
                .next()
                .and_then(|line| line.strip_prefix(key)?.strip_prefix(' '))
                .ok_or_else(|| malformed(format!("expected the line `{key} <value>`"), format!("缺少 `{key} <值>` 行")))
        };
        let kind = header("kind")?.to_owned();
        let time = Timestamp::parse(header("time")?)?;
        let actor = header("actor")?.to_owned();
        let fields = lines
            .map(|line| match line.split_once(' ') {
                Some((key, value)) => Ok((key.to_owned(), value.to_owned())),
                None => Err(malformed(
                    format!("line {line:?} is not `key value`"),
                    format!("行 {line:?} 不是 `键 值` 格式"),
                )),
            })
            .collect::<Result<_, _>>()?;
        let entry = Entry { kind, time, actor, fields };
        check(&entry)?;
        Ok(entry)
    }

    /// The note text.
    pub fn to_text(&self) -> String {
        let mut text = format!("{ENTRY_HEADER}\nkind {}\ntime {}\nactor {}\n", self.kind, self.time, self.actor);
        for (key, value) in &self.fields {
            text.push_str(&format!("{key} {value}\n"));
        }
        text
    }

    /// The signed note: the text signed by `keys`, at most [`MAX_ENTRY_SIZE`] bytes. These are
    /// the exact bytes to log. Kinds the log vouches for are logged [`Entry::unsigned`] instead.
    pub fn sign(&self, keys: &[&SignerKey]) -> Result<Vec<u8>, Error> {
        if vouched_by_log(&self.kind) {
            return Err(signed_but_vouched(&self.kind));
        }
        let mut note = Note::new(&self.to_text())?;
        for key in keys {
            note.sign(key);
        }
        let bytes = note.to_bytes();
        check_size(&bytes)?;
        Ok(bytes)
    }

    /// The bare text, at most [`MAX_ENTRY_SIZE`] bytes: the exact bytes to log of an entry the
    /// log vouches for. Kinds a principal or the release key signs are logged [`Entry::sign`]ed.
    pub fn unsigned(&self) -> Result<Vec<u8>, Error> {
        if SignedBy::of(&self.kind) != SignedBy::LogKey {
            return Err(unsigned_but_needs_signature(&self.kind));
        }
        let bytes = self.to_text().into_bytes();
        check_size(&bytes)?;
        Ok(bytes)
    }

    /// What happened: one of [`kind`], or a kind of a later version.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// When it happened.
    pub fn time(&self) -> Timestamp {
        self.time
    }

    /// The principal who did what the entry records.
    pub fn actor(&self) -> &str {
        &self.actor
    }

    /// The fields after `actor`, in order.
    pub fn fields(&self) -> &[(String, String)] {
        &self.fields
    }

    /// The value of field `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// For `principal.registered` and `key.rotated`: the principal and its key, whose name must
    /// be the principal's id.
    pub fn principal_key(&self) -> Result<(&str, VerifierKey), Error> {
        let principal = self.get("principal").unwrap_or_default();
        let key = VerifierKey::parse(self.get("key").unwrap_or_default())?;
        if key.name() != principal {
            return Err(malformed(
                format!("the key is named {:?}, not after the principal {principal:?}", key.name()),
                format!("密钥名为 {:?}，与主体 {principal:?} 不符", key.name()),
            ));
        }
        Ok((principal, key))
    }

    /// For a `release`: each `result.<file name>` field's file name and hex SHA-256.
    pub fn results(&self) -> Vec<(&str, &str)> {
        self.fields.iter().filter_map(|(k, v)| Some((k.strip_prefix("result.")?, v.as_str()))).collect()
    }
}

/// Builds an [`Entry`] field by field; everything is checked once, in `build`.
#[derive(Debug, Clone)]
pub struct EntryBuilder {
    entry: Entry,
}

impl EntryBuilder {
    /// Adds a field after those already added.
    pub fn field(mut self, key: &str, value: &str) -> EntryBuilder {
        self.entry.fields.push((key.to_owned(), value.to_owned()));
        self
    }

    /// The entry, if it is well formed (see the module's rules).
    pub fn build(self) -> Result<Entry, Error> {
        check(&self.entry)?;
        Ok(self.entry)
    }
}

fn check_size(bytes: &[u8]) -> Result<(), Error> {
    if bytes.len() > MAX_ENTRY_SIZE {
        return Err(Error::TooLarge { format: Format::Entry, size: bytes.len() as u64, limit: MAX_ENTRY_SIZE as u64 });
    }
    Ok(())
}

/// A kind of this version that only the log vouches for, logged unsigned. Kinds of later
/// versions may be logged either way: their signers are theirs to define.
fn vouched_by_log(kind: &str) -> bool {
    kind::ALL.contains(&kind) && SignedBy::of(kind) == SignedBy::LogKey
}

fn signed_but_vouched(kind: &str) -> Error {
    malformed(
        format!("a {kind} entry is vouched for by the log's checkpoints and is logged without signatures"),
        format!("{kind} 条目由日志检查点担保，记录时不带签名"),
    )
}

fn unsigned_but_needs_signature(kind: &str) -> Error {
    malformed(format!("a {kind} entry must be a signed note"), format!("{kind} 条目必须是签名注记"))
}

/// Reads a logged entry: its content and, for a signed entry, its note (signatures not yet
/// verified). Signed kinds must be signed notes, kinds the log vouches for bare text.
pub fn open(bytes: &[u8]) -> Result<(Entry, Option<Note>), Error> {
    check_size(bytes)?;
    // An entry's text has no blank line; a signed note has one before its signatures.
    if bytes.windows(2).any(|w| w == b"\n\n") {
        let note = Note::parse(bytes)?;
        let entry = Entry::parse(note.text())?;
        if vouched_by_log(entry.kind()) {
            return Err(signed_but_vouched(entry.kind()));
        }
        return Ok((entry, Some(note)));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| malformed("not UTF-8", "不是 UTF-8 文本"))?;
    let entry = Entry::parse(text)?;
    if SignedBy::of(entry.kind()) != SignedBy::LogKey {
        return Err(unsigned_but_needs_signature(entry.kind()));
    }
    Ok((entry, None))
}
