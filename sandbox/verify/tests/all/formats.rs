//! Checkpoints, tlog-proofs, hash lists, entries, timestamps, the trust file, tile paths and
//! entry bundles: the spec examples, round trips, and each way to get them wrong.

use sandbox_verify::checkpoint::{self, Checkpoint};
use sandbox_verify::entry::{self, Entry, MAX_ENTRY_SIZE, SignedBy, actor_role, kind};
use sandbox_verify::merkle::{Tree, inclusion_proof, leaf_hash};
use sandbox_verify::note::Note;
use sandbox_verify::proof::{TlogProof, format_hash_list, parse_hash_list};
use sandbox_verify::tiles::{Tile, TilePath, decode_bundle, encode_bundle, parse_path};
use sandbox_verify::time::Timestamp;
use sandbox_verify::trust::{Role, Trust};
use sandbox_verify::{Error, Hash};

use crate::{ORIGIN, TestLog, key, time};

fn fails_with<T: std::fmt::Debug>(result: Result<T, Error>, says: &str) {
    let e = result.unwrap_err();
    assert!(e.to_string().contains(says), "expected {says:?} in {e}");
    assert!(!e.zh().is_empty());
}

/// The example of c2sp.org/tlog-checkpoint.
const CHECKPOINT: &str = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";

#[test]
fn checkpoints_parse_and_format() {
    let c = Checkpoint::parse(CHECKPOINT).unwrap();
    assert_eq!((c.origin(), c.size()), ("example.com/behind-the-sofa", 20852163));
    assert_eq!(c.to_text(), CHECKPOINT);
    let with_extension = format!("{CHECKPOINT}extension line\n");
    assert_eq!(Checkpoint::parse(&with_extension).unwrap().extensions(), ["extension line"]);
    assert_eq!(Checkpoint::parse(&with_extension).unwrap().to_text(), with_extension);
    let root = "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=";
    for (text, says) in [
        (format!("o\n020852163\n{root}\n"), "without leading zeros"),
        (format!("o\n-1\n{root}\n"), "without leading zeros"),
        (format!("o\n18446744073709551616\n{root}\n"), "without leading zeros"),
        ("o\n1\n".to_owned(), "at least three lines"),
        (format!("o\n1\n{root}"), "end in a newline"),
        (format!("o\n1\n{root}\n\n"), "line 4 is empty"),
        (format!("\n1\n{root}\n"), "line 1 is empty"),
        ("o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I\n".to_owned(), "not base64"),
        ("o\n1\nAAAA\n".to_owned(), "not 32"),
    ] {
        fails_with(Checkpoint::parse(&text), says);
    }
    assert_eq!(Checkpoint::parse(&format!("o\n0\n{root}\n")).unwrap().size(), 0);
}

#[test]
fn a_checkpoint_needs_the_log_key_named_as_its_origin() {
    let log = TestLog::new();
    let note = log.sign_checkpoint(0, Tree::new().root());
    let (c, signers) = checkpoint::open(&note, &[log.log_key.verifier().clone()]).unwrap();
    assert_eq!((c.origin(), c.size(), signers.len()), (ORIGIN, 0, 1));
    // The same key under another name does not count, nor does another log's key.
    let renamed = key("other.example/log", 1);
    fails_with(checkpoint::open(&note, &[renamed.verifier().clone()]), "no valid signature");
    fails_with(checkpoint::open(&note, &[log.release_key.verifier().clone()]), "no valid signature");
}

/// The example of c2sp.org/tlog-proof (its signatures are elided, so its checkpoint is not
/// verified here, only carried).
const TLOG_PROOF: &str = "c2sp.org/tlog-proof@v1
extra YWdlLXYxLjIuMS1kYXJ3aW4tYXJtNjQudGFyLmd6kYXJ3aW4tYXJ
index 73894
gSKyXoYZUgZ6jduWYrkDOARinOMGJveXjgMkBTcdPlQ=
B95lDa8R83lS8n0eG+o0buTxRKQTYFi//1U8anccXmA=
EKNzoDWG8LGC0Yp9o+sv3qllpMP9uHQ9B20KNL+Q1zs=
RoopEkOdqkYqMB4MJXrbt/hMjOxsVn0IrWjpz1ZMMes=
AHCioX9nLjsrse6YhjRRmk1WUEirVOLLRoOQ6vfO5vk=

example.com/fancylog
109482
sFodV/vSp5O8n9a8QpW6PRY97tfOSW5bsc2Xl/EQi08=

\u{2014} example.com/fancylog hI2DJw[...]1roloI=
";

#[test]
fn tlog_proofs_parse_and_format() {
    let proof = TlogProof::parse(TLOG_PROOF.as_bytes()).unwrap();
    assert_eq!(proof.index, 73894);
    assert_eq!(proof.hashes.len(), 5);
    assert!(proof.extra.as_ref().unwrap().starts_with(b"age-v1.2.1-darwin-arm64.tar.gz"));
    assert!(proof.checkpoint.starts_with(b"example.com/fancylog\n109482\n"));
    assert_eq!(proof.to_bytes(), TLOG_PROOF.as_bytes());
    let without_extra = TLOG_PROOF.replace("extra YWdlLXYxLjIuMS1kYXJ3aW4tYXJtNjQudGFyLmd6kYXJ3aW4tYXJ\n", "");
    assert_eq!(TlogProof::parse(without_extra.as_bytes()).unwrap().extra, None);
    let no_hashes = "c2sp.org/tlog-proof@v1\nindex 0\n\nx\n";
    assert!(TlogProof::parse(no_hashes.as_bytes()).unwrap().hashes.is_empty());
    let hash = "gSKyXoYZUgZ6jduWYrkDOARinOMGJveXjgMkBTcdPlQ=\n";
    for (text, says) in [
        ("c2sp.org/tlog-proof@v2\nindex 0\n\nx\n".to_owned(), "first line must be"),
        ("c2sp.org/tlog-proof@v1\nindex 01\n\nx\n".to_owned(), "expected index"),
        ("c2sp.org/tlog-proof@v1\nindex -1\n\nx\n".to_owned(), "expected index"),
        ("c2sp.org/tlog-proof@v1\nextra !!\nindex 1\n\nx\n".to_owned(), "not base64"),
        (format!("c2sp.org/tlog-proof@v1\nindex 1\n{hash}"), "ends before the empty line"),
        ("c2sp.org/tlog-proof@v1\nindex 1\nAAAA\n\nx\n".to_owned(), "not 32"),
        (format!("c2sp.org/tlog-proof@v1\nindex 1\n{hash}\n"), "no checkpoint"),
        (format!("c2sp.org/tlog-proof@v1\nindex 1\n{}\nx\n", hash.repeat(65)), "more than 64"),
        ("c2sp.org/tlog-proof@v1".to_owned(), "ends before the header line"),
    ] {
        fails_with(TlogProof::parse(text.as_bytes()), says);
    }
}

#[test]
fn a_tlog_proof_verifies_its_entry_only() {
    let mut log = TestLog::new();
    log.append_story();
    log.fill(9);
    let checkpoint = log.checkpoint();
    let proof = TlogProof { extra: None, index: 3, hashes: inclusion_proof(3, 9, &log.tree).unwrap(), checkpoint };
    let keys = [log.log_key.verifier().clone()];
    assert_eq!(proof.verify(&log.entries[3], &keys).unwrap().size(), 9);
    fails_with(proof.verify(&log.entries[4], &keys), "inclusion proof invalid");
    fails_with(TlogProof { index: 4, ..proof.clone() }.verify(&log.entries[3], &keys), "inclusion proof invalid");
    fails_with(proof.verify(&log.entries[3], &[log.release_key.verifier().clone()]), "no valid signature");
    assert_eq!(TlogProof::parse(&proof.to_bytes()).unwrap(), proof);
}

#[test]
fn hash_lists_round_trip() {
    let hashes: Vec<Hash> = (0..3u8).map(|i| leaf_hash(&[i])).collect();
    let text = format_hash_list(&hashes);
    assert_eq!(parse_hash_list(text.as_bytes()).unwrap(), hashes);
    assert!(parse_hash_list(b"").unwrap().is_empty());
    fails_with(parse_hash_list(text.trim_end().as_bytes()), "does not end in a newline");
    fails_with(parse_hash_list(b"\n"), "decodes to 0 bytes");
    fails_with(parse_hash_list(format_hash_list(&vec![hashes[0]; 65]).as_bytes()), "more than 64");
}

fn release_entry() -> Entry {
    let hex = Hash::sha256(b"x").to_hex();
    let mut builder =
        Entry::builder(kind::RELEASE, time("2026-05-03T10:00:00Z"), "sandbox").field("result.table.csv", &hex);
    for field in ["module", "manifest", "datasets", "audit_report", "policy", "recipient", "agreement"] {
        builder = builder.field(field, &hex);
    }
    builder.build().unwrap()
}

#[test]
fn entries_round_trip_in_the_writer_s_order() {
    let entry = Entry::builder("dataset.registered", time("2026-05-01T08:00:00Z"), "bureau.admin")
        .field("dataset", "persons")
        .field("version", &Hash::sha256(b"v").to_hex())
        .field("title", "常住人口 (2025)")
        .build()
        .unwrap();
    let text = entry.to_text();
    assert!(text.starts_with("sandbox.log/entry/v1\nkind dataset.registered\ntime 2026-05-01T08:00:00Z\nactor bureau.admin\ndataset persons\n"));
    assert_eq!(Entry::parse(&text).unwrap(), entry);
    assert_eq!(entry.get("title"), Some("常住人口 (2025)"));
    // Unknown kinds are fine, for forward compatibility.
    let later = Entry::builder("model.retired", time("2030-01-01T00:00:00Z"), "x").field("k", "v").build().unwrap();
    assert_eq!(Entry::parse(&later.to_text()).unwrap(), later);
    assert_eq!(SignedBy::of("model.retired"), SignedBy::LogKey);
    assert_eq!(SignedBy::of(kind::MODULE_APPROVED), SignedBy::Actor);
    assert_eq!(SignedBy::of(kind::RELEASE), SignedBy::ReleaseKey);
    assert_eq!(SignedBy::of(kind::LICENCE_CONSENTED), SignedBy::Actor);
    assert_eq!(actor_role(kind::LICENCE_CONSENTED), Some("provider"));
    assert_eq!(kind::ALL.len(), 36);
    let release = release_entry();
    assert_eq!(release.results(), [("table.csv", Hash::sha256(b"x").to_hex().as_str())]);
}

#[test]
fn malformed_entries_are_refused() {
    let t = time("2026-05-01T08:00:00Z");
    let build = |fields: &[(&str, &str)]| {
        let mut builder = Entry::builder("feedback", t, "unit.a");
        for (k, v) in fields {
            builder = builder.field(k, v);
        }
        builder.build()
    };
    fails_with(build(&[("a", "1"), ("a", "2")]), "appears twice");
    fails_with(build(&[("time", "1")]), "appears twice");
    fails_with(build(&[("Upper", "1")]), "is not [a-z0-9_.-]+");
    fails_with(build(&[("a", " padded")]), "without surrounding spaces");
    fails_with(build(&[("a", "")]), "non-empty");
    fails_with(build(&[("a", "two\nlines")]), "printable");
    fails_with(Entry::builder("Feedback", t, "unit.a").build(), "kind");
    fails_with(Entry::builder("feedback", t, "unit a").build(), "principal id");
    fails_with(
        Entry::builder(kind::PRINCIPAL_REGISTERED, t, "bureau.admin").field("principal", "p").build(),
        "\"role\"",
    );
    let key = key("operator.acme", 3).verifier().to_string();
    let misnamed = Entry::builder(kind::PRINCIPAL_REGISTERED, t, "bureau.admin")
        .field("principal", "operator.other")
        .field("role", "operator")
        .field("key", &key)
        .build();
    fails_with(misnamed, "not after the principal");
    let no_results = release_entry().to_text().replace("result.table.csv", "resultant");
    fails_with(Entry::parse(&no_results), "no result.<file> field");
    let traversal = release_entry().to_text().replace("result.table.csv", "result..");
    fails_with(Entry::parse(&traversal), "not a file name");
    let not_hex =
        release_entry().to_text().replace(&format!("result.table.csv {}", Hash::sha256(b"x").to_hex()), "result.t x");
    fails_with(Entry::parse(&not_hex), "64 lowercase hex");
    let text = build(&[("a", "1")]).unwrap().to_text();
    fails_with(Entry::parse(&text.replace("sandbox.log/entry/v1", "sandbox.log/entry/v2")), "first line");
    fails_with(Entry::parse(&text.replace("kind feedback\ntime", "time")), "`kind <value>`");
    fails_with(Entry::parse(&text.replace("2026-05-01T08:00:00Z", "2026-05-01 08:00:00")), "YYYY-MM-DD");
    fails_with(Entry::parse(&text.replace("a 1\n", "a\n")), "not `key value`");
    fails_with(Entry::parse(text.trim_end()), "newline");
    // The size limit: 16 KiB, signatures included.
    let big = build(&[("a", &"x".repeat(MAX_ENTRY_SIZE - 200))]).unwrap();
    assert!(big.unsigned().unwrap().len() <= MAX_ENTRY_SIZE);
    let too_big = build(&[("a", &"x".repeat(MAX_ENTRY_SIZE))]).unwrap();
    fails_with(too_big.unsigned(), "too large");
    let signer = crate::key("unit.a", 7);
    let later = |size| Entry::builder("model.retired", t, "unit.a").field("a", &"x".repeat(size)).build().unwrap();
    assert!(later(MAX_ENTRY_SIZE - 300).sign(&[&signer]).unwrap().len() <= MAX_ENTRY_SIZE);
    fails_with(later(MAX_ENTRY_SIZE - 150).sign(&[&signer]), "too large");
    fails_with(entry::open(&vec![b'x'; MAX_ENTRY_SIZE + 1]), "too large");
}

#[test]
fn only_the_kinds_to_sign_are_signed() {
    let t = time("2026-05-01T08:00:00Z");
    let signer = key("unit.a", 7);
    let feedback = Entry::builder(kind::FEEDBACK, t, "unit.a").field("a", "1").build().unwrap();
    // The log's checkpoints vouch for a feedback: it is logged as bare text, never signed.
    let bytes = feedback.unsigned().unwrap();
    assert_eq!(bytes, feedback.to_text().as_bytes());
    let (opened, note) = entry::open(&bytes).unwrap();
    assert_eq!((opened, note.is_none()), (feedback.clone(), true));
    fails_with(feedback.sign(&[&signer]), "logged without signatures");
    let mut note = Note::new(&feedback.to_text()).unwrap();
    note.sign(&signer);
    fails_with(entry::open(&note.to_bytes()), "logged without signatures");
    // A release must be a signed note.
    let release = release_entry();
    fails_with(release.unsigned(), "must be a signed note");
    fails_with(entry::open(release.to_text().as_bytes()), "must be a signed note");
    let (opened, note) = entry::open(&release.sign(&[&signer]).unwrap()).unwrap();
    assert_eq!((opened, note.is_some()), (release, true));
    // A kind of a later version may come either way.
    let later = Entry::builder("model.retired", t, "unit.a").build().unwrap();
    assert!(entry::open(&later.unsigned().unwrap()).unwrap().1.is_none());
    assert!(entry::open(&later.sign(&[&signer]).unwrap()).unwrap().1.is_some());
    fails_with(entry::open(b"sandbox.log/entry/v1\nkind feedback\ntime 2026-05-01T08:00:00Z\nactor \xff\n"), "UTF-8");
}

#[test]
fn timestamps_are_one_spelling_per_second() {
    for text in [
        "1970-01-01T00:00:00Z",
        "2000-02-29T12:34:56Z",
        "2026-12-31T23:59:59Z",
        "9999-12-31T23:59:59Z",
        "0000-01-01T00:00:00Z",
    ] {
        assert_eq!(time(text).to_string(), text);
    }
    assert_eq!(time("1970-01-02T00:00:01Z"), Timestamp(86_401));
    assert_eq!(Timestamp(1_767_225_600).to_string(), "2026-01-01T00:00:00Z");
    for text in [
        "2023-02-29T00:00:00Z",
        "2026-04-31T00:00:00Z",
        "2026-01-01T24:00:00Z",
        "2026-01-01T00:60:00Z",
        "2026-01-01T00:00:60Z",
        "2026-13-01T00:00:00Z",
        "2026-01-01T00:00:00z",
        "2026-01-01T00:00:00+08:00",
        "2026-01-01T00:00:00.5Z",
        "+026-01-01T00:00:00Z",
    ] {
        fails_with(Timestamp::parse(text), "YYYY-MM-DDTHH:MM:SSZ");
    }
}

#[test]
fn trust_files_parse_with_line_numbers_in_errors() {
    let log = key(ORIGIN, 1).verifier().to_string();
    let release = key("release.sandbox.example", 2).verifier().to_string();
    let text = format!(
        "# keys\n\nlog {log} 2026-01-01T00:00:00Z -  # the log\nrelease {release} 2026-01-01T00:00:00Z 2027-01-01T00:00:00Z\n"
    );
    let trust = Trust::parse(&text).unwrap();
    assert_eq!(trust.keys(Role::Log).count(), 1);
    assert_eq!(trust.valid_at(Role::Release, time("2026-06-01T00:00:00Z")).len(), 1);
    assert!(trust.valid_at(Role::Release, time("2027-01-01T00:00:01Z")).is_empty());
    assert!(trust.valid_at(Role::Release, time("2025-12-31T23:59:59Z")).is_empty());
    assert_eq!(trust.checkpoint_keys(Some(time("2040-01-01T00:00:00Z"))).len(), 1);
    for (text, says) in [
        (format!("witness {log} 2026-01-01T00:00:00Z -"), "line 1: unknown role"),
        (format!("\nlog {log} 2026-01-01T00:00:00Z"), "line 2: expected"),
        (format!("log {log} 2026-01-01 -"), "line 1: \"2026-01-01\" is not"),
        (format!("log {log} 2026-01-01T00:00:00Z 2025-01-01T00:00:00Z"), "before valid from"),
        (format!("log {log} 2026-01-01T00:00:00Z -\nrelease {log} 2026-01-01T00:00:00Z -"), "line 2: key"),
        ("log nokey 2026-01-01T00:00:00Z -".to_owned(), "line 1: expected <name>"),
    ] {
        fails_with(Trust::parse(&text), says);
    }
}

#[test]
fn tile_paths_follow_the_spec() {
    let tile = Tile { level: 0, index: 1_234_067, width: 256 };
    assert_eq!(tile.path(), "tile/0/x001/x234/067");
    assert_eq!(Tile { width: 112, ..tile }.bundle_path(), "tile/entries/x001/x234/067.p/112");
    assert_eq!(Tile { level: 2, index: 0, width: 1 }.path(), "tile/2/000.p/1");
    for (path, parsed) in [
        ("tile/0/x001/x234/067", TilePath::Hashes(tile)),
        ("tile/3/000.p/17", TilePath::Hashes(Tile { level: 3, index: 0, width: 17 })),
        ("tile/63/999", TilePath::Hashes(Tile { level: 63, index: 999, width: 256 })),
        ("tile/entries/x001/000.p/255", TilePath::Entries(Tile { level: 0, index: 1000, width: 255 })),
    ] {
        assert_eq!(parse_path(path).unwrap(), parsed, "{path}");
    }
    for path in [
        "tile/0/1234",
        "tile/0/x001/234/067",
        "tile/0/x000/067",
        "tile/0/001/x067",
        "tile/00/000",
        "tile/64/000",
        "tile/0/000.p/0",
        "tile/0/000.p/256",
        "tile/0/000.p/07",
        "tile/0/000.p/",
        "tile/0/00a",
        "tile/x/000",
        "tile/entries/x000",
        "tile/0/x18446744/x073/x709/x551/x616/000",
        "tiles/0/000",
        "tile/0/000/",
    ] {
        fails_with(parse_path(path), "is not tile/<L>/<N>");
    }
}

#[test]
fn entry_bundles_frame_entries() {
    let entries: Vec<Vec<u8>> = vec![b"one".to_vec(), Vec::new(), vec![7; 300]];
    let bundle = encode_bundle(entries.iter().map(Vec::as_slice)).unwrap();
    assert_eq!(&bundle[..5], b"\x00\x03one");
    assert_eq!(decode_bundle(&bundle).unwrap(), entries);
    fails_with(decode_bundle(&bundle[..bundle.len() - 1]), "entry 2 declares 300 bytes, 299 remain");
    fails_with(decode_bundle(&[0]), "one byte left");
    fails_with(decode_bundle(&vec![0; 2 * 257]), "more than 256 entries");
    fails_with(encode_bundle([vec![0; 65_536].as_slice()]), "too large");
}
