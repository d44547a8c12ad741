//! What an entry says, typed: one [`Event`] variant per [`kind`], with the fields the sandbox
//! writes, so that the writer, the projection and the annual report read and write the same
//! schema instead of naming fields as strings each on their own.
//!
//! [`Event::decode`] reads an entry of a known kind strictly (every field the kind has, each
//! parsed; fields it does not know are ignored, so later versions may add some) and keeps an
//! entry of an unknown kind as it is ([`Event::Unknown`]). [`Event::fields`] writes the fields in
//! the order the sandbox has always written them, so an entry encoded from an event reads
//! exactly like one written by hand before.

use crate::entry::{Entry, kind};
use crate::error::{Error, Format};
use crate::time::Timestamp;

/// One field's value: how it is read from an entry and written back.
pub trait Value: Sized {
    /// Reads field `name` of `entry`.
    fn decode(entry: &Entry, name: &str) -> Result<Self, Error>;
    /// Appends field `name` (none for an absent optional field).
    fn encode(&self, name: &str, out: &mut Vec<(String, String)>);
}

fn missing(entry: &Entry, name: &str) -> Error {
    Error::malformed(
        Format::Entry,
        format!("a {} entry needs the field {name:?}", entry.kind()),
        format!("{} 条目缺少字段 {name:?}", entry.kind()),
    )
}

fn not_a(entry: &Entry, name: &str, what: &str, zh: &str) -> Error {
    Error::malformed(
        Format::Entry,
        format!("field {name:?} of a {} entry is not {what}", entry.kind()),
        format!("{} 条目的字段 {name:?} 不是{zh}", entry.kind()),
    )
}

impl Value for String {
    fn decode(entry: &Entry, name: &str) -> Result<String, Error> {
        entry.get(name).map(str::to_owned).ok_or_else(|| missing(entry, name))
    }

    fn encode(&self, name: &str, out: &mut Vec<(String, String)>) {
        out.push((name.to_owned(), self.clone()));
    }
}

macro_rules! numbers {
    ($($ty:ty),*) => {$(
        impl Value for $ty {
            fn decode(entry: &Entry, name: &str) -> Result<$ty, Error> {
                String::decode(entry, name)?.parse().map_err(|_| not_a(entry, name, "a number", "数字"))
            }

            fn encode(&self, name: &str, out: &mut Vec<(String, String)>) {
                out.push((name.to_owned(), self.to_string()));
            }
        }
    )*};
}

numbers!(u32, u64, i32);

/// A comma-separated list (`datasets`, `held`).
impl Value for Vec<String> {
    fn decode(entry: &Entry, name: &str) -> Result<Vec<String>, Error> {
        Ok(String::decode(entry, name)?.split(',').map(str::to_owned).collect())
    }

    fn encode(&self, name: &str, out: &mut Vec<(String, String)>) {
        out.push((name.to_owned(), self.join(",")));
    }
}

impl<T: Value> Value for Option<T> {
    fn decode(entry: &Entry, name: &str) -> Result<Option<T>, Error> {
        match entry.get(name) {
            None => Ok(None),
            Some(_) => T::decode(entry, name).map(Some),
        }
    }

    fn encode(&self, name: &str, out: &mut Vec<(String, String)>) {
        if let Some(value) = self {
            value.encode(name, out);
        }
    }
}

/// A release's results: each `result.<file name>` field, the file's name and hex SHA-256, in
/// order. Its own name in the event is not a field's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Results(pub Vec<(String, String)>);

impl Value for Results {
    fn decode(entry: &Entry, _: &str) -> Result<Results, Error> {
        Ok(Results(entry.results().into_iter().map(|(n, h)| (n.to_owned(), h.to_owned())).collect()))
    }

    fn encode(&self, _: &str, out: &mut Vec<(String, String)>) {
        out.extend(self.0.iter().map(|(name, hash)| (format!("result.{name}"), hash.clone())));
    }
}

macro_rules! events {
    ($( $(#[$doc:meta])* $variant:ident = $kind:ident { $($field:ident : $ty:ty),* $(,)? } )*) => {
        /// An entry's kind and fields, typed.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum Event {
            $( $(#[$doc])* $variant { $($field: $ty),* }, )*
            /// A kind this version does not know, kept as it is.
            Unknown { kind: String, fields: Vec<(String, String)> },
        }

        impl Event {
            /// The entry kind ([`kind`]).
            pub fn kind(&self) -> &str {
                match self {
                    $( Event::$variant { .. } => kind::$kind, )*
                    Event::Unknown { kind, .. } => kind,
                }
            }

            /// Reads what `entry` says; an entry of a known kind without a field its kind has,
            /// or with a field that does not parse, is malformed.
            pub fn decode(entry: &Entry) -> Result<Event, Error> {
                Ok(match entry.kind() {
                    $( kind::$kind => Event::$variant { $($field: Value::decode(entry, stringify!($field))?),* }, )*
                    other => Event::Unknown { kind: other.to_owned(), fields: entry.fields().to_vec() },
                })
            }

            /// The entry's fields after `actor`, in the order they are written.
            pub fn fields(&self) -> Vec<(String, String)> {
                let mut out = Vec::new();
                match self {
                    $( Event::$variant { $($field),* } => { $( Value::encode($field, stringify!($field), &mut out); )* } )*
                    Event::Unknown { fields, .. } => out.extend(fields.iter().cloned()),
                }
                out
            }
        }
    };
}

events! {
    /// A dataset version (the SHA-256 of its files) entered in the catalog, at its level.
    DatasetRegistered = DATASET_REGISTERED { dataset: String, version: String, level: String }
    /// A principal with its role, key, token's SHA-256 (none for the log's own) and name.
    PrincipalRegistered = PRINCIPAL_REGISTERED {
        principal: String, role: String, key: String, token_sha256: Option<String>, display_name: Option<String>,
        provider: Option<String>,
    }
    KeyRotated = KEY_ROTATED { principal: String, key: String }
    PrincipalDisabled = PRINCIPAL_DISABLED { principal: String, reason: String }
    PrincipalEnabled = PRINCIPAL_ENABLED { principal: String }
    TokenRotated = TOKEN_ROTATED { principal: String, token_sha256: String }
    TokenRevoked = TOKEN_REVOKED { principal: String, reason: String }
    LicenceGranted = LICENCE_GRANTED {
        licence: String, operator: String, datasets: Vec<String>, purpose: String, valid_from: String,
        valid_until: String, consent: Option<Vec<String>>,
    }
    /// Signed by the dataset's provider.
    LicenceConsented = LICENCE_CONSENTED { licence: String, dataset: String }
    LicenceConsentRequired = LICENCE_CONSENT_REQUIRED { licence: String, datasets: Vec<String> }
    IncidentReported = INCIDENT_REPORTED { incident: String, licence: String, category: String, description: String }
    IncidentMeasure = INCIDENT_MEASURE { incident: String, licence: String, measure: String, note: String }
    IncidentClosed = INCIDENT_CLOSED { incident: String, licence: String, reported_to: String, note: String }
    LicenceSuspended = LICENCE_SUSPENDED { licence: String, reason: Option<String> }
    LicenceResumed = LICENCE_RESUMED { licence: String, reason: Option<String> }
    LicenceRevoked = LICENCE_REVOKED { licence: String, reason: Option<String> }
    /// Signed by the operator (the actor) with the application unit.
    AgreementSigned = AGREEMENT_SIGNED {
        agreement: String, licence: String, application_unit: String, scenario: String, valid_until: String,
    }
    AgreementEnded = AGREEMENT_ENDED { agreement: String, reason: Option<String> }
    /// Signed by the operator: the module's and manifest's SHA-256, its licence, name and datasets.
    ModuleSubmitted = MODULE_SUBMITTED {
        module: String, manifest: String, licence: String, name: String, datasets: Vec<String>,
    }
    ModuleApproved = MODULE_APPROVED { module: String }
    ModuleRejected = MODULE_REJECTED { module: String, reason: String }
    ModuleRevoked = MODULE_REVOKED { module: String, reason: String }
    OutputApproved = OUTPUT_APPROVED { run: String, report: String, table: String }
    OutputRejected = OUTPUT_REJECTED { run: String, report: String, table: String, reason: String }
    /// `parameters` is a keyed digest; `datasets` the versions read, `dataset@version`.
    RunQueued = RUN_QUEUED {
        run: String, module: String, licence: String, agreement: String, parameters: String, datasets: Vec<String>,
    }
    RunStarted = RUN_STARTED { run: String }
    RunDeveloped = RUN_DEVELOPED {
        module: String, licence: String, parameters: String, outcome: String, fuel: Option<u64>, wall_ms: Option<u64>,
    }
    /// `status` `ok` (on to the audit), `failed` with `error`, `cancelled`, or `withheld` with
    /// `stopped` (what stopped it).
    RunFinished = RUN_FINISHED { run: String, status: String, error: Option<String>, stopped: Option<String> }
    AuditOutcome = AUDIT_OUTCOME {
        run: String, outcome: String, report: String, released: u32, held: Option<Vec<String>>,
    }
    AuditReportRead = AUDIT_REPORT_READ { run: String, report: String }
    /// Signed by the release key; see [`crate::release`].
    Release = RELEASE {
        module: String, manifest: String, datasets: String, audit_report: String, policy: String,
        recipient: String, agreement: String, run: String, release: String, history_cells: Option<u64>,
        history_tables: Option<u64>, reviewed: Option<String>, results: Results,
    }
    Delivery = DELIVERY { release: String }
    Feedback = FEEDBACK { feedback: String, release: String, rating: u32, comment: Option<String> }
    OperatorRated = OPERATOR_RATED { rating: String, operator: String, year: i32, score: u32, comment: Option<String> }
    Report = REPORT { year: i32, size: u64, sha256: String }
    RequestRefused = REQUEST_REFUSED { rpc: String, code: String, reason: String, unlogged: Option<u64> }
}

impl Event {
    /// The entry of this event made by `actor` at `time`, checked like any entry.
    pub fn entry(&self, time: Timestamp, actor: &str) -> Result<Entry, Error> {
        let mut builder = Entry::builder(self.kind(), time, actor);
        for (key, value) in self.fields() {
            builder = builder.field(&key, &value);
        }
        builder.build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> Timestamp {
        Timestamp::parse("2026-05-01T09:00:00Z").unwrap()
    }

    /// An entry written field by field as the server always wrote them reads as its event, and
    /// the event writes it back byte for byte.
    #[test]
    fn entries_round_trip_through_events() {
        let (zeros, ones) = ("0".repeat(64), "1".repeat(64));
        let written = [
            (
                kind::RUN_QUEUED,
                vec![
                    ("run", "run-000042"),
                    ("module", "ab"),
                    ("licence", "lic"),
                    ("agreement", "agr"),
                    ("parameters", "cd"),
                    ("datasets", "persons@1,firms@2"),
                ],
            ),
            (
                kind::AUDIT_OUTCOME,
                vec![("run", "run-1"), ("outcome", "review"), ("report", "r"), ("released", "0"), ("held", "a,b")],
            ),
            (kind::RUN_FINISHED, vec![("run", "run-1"), ("status", "withheld"), ("stopped", "licence")]),
            (kind::FEEDBACK, vec![("feedback", "fb-7"), ("release", "rel-5"), ("rating", "4")]),
            (
                kind::REQUEST_REFUSED,
                vec![("rpc", "Runs.Start"), ("code", "PermissionDenied"), ("reason", "no"), ("unlogged", "12")],
            ),
            (
                kind::RELEASE,
                vec![
                    ("module", "m"),
                    ("manifest", "f"),
                    ("datasets", "persons@1"),
                    ("audit_report", "a"),
                    ("policy", "p"),
                    ("recipient", "unit"),
                    ("agreement", "agr"),
                    ("run", "run-1"),
                    ("release", "rel-2"),
                    ("history_cells", "5"),
                    ("history_tables", "1"),
                    ("result.t.csv", &zeros),
                    ("result.audit-report.json", &ones),
                ],
            ),
            ("a.later.kind", vec![("anything", "as it is")]),
        ];
        for (kind, fields) in written {
            let mut builder = Entry::builder(kind, t(), "sandbox");
            for (k, v) in &fields {
                builder = builder.field(k, v);
            }
            let entry = builder.build().unwrap();
            let event = Event::decode(&entry).unwrap();
            assert_eq!(event.kind(), kind);
            assert_eq!(event.entry(t(), "sandbox").unwrap().to_text(), entry.to_text(), "{kind}");
        }
    }

    #[test]
    fn fields_are_typed_and_checked() {
        let event = Event::Feedback { feedback: "fb-1".into(), release: "rel-1".into(), rating: 5, comment: None };
        let entry = event.entry(t(), "unit").unwrap();
        assert_eq!(entry.get("rating"), Some("5"));
        assert_eq!(entry.get("comment"), None, "an absent optional field is not written");
        let bad = Entry::builder(kind::FEEDBACK, t(), "unit")
            .field("feedback", "fb-1")
            .field("release", "rel-1")
            .field("rating", "five")
            .build()
            .unwrap();
        assert!(Event::decode(&bad).unwrap_err().to_string().contains("not a number"));
        let short = Entry::builder(kind::FEEDBACK, t(), "unit").field("feedback", "fb-1").build().unwrap();
        assert!(Event::decode(&short).unwrap_err().to_string().contains("\"release\""));
    }
}
