//! Signed notes and keys, against the vectors published with golang.org/x/mod/sumdb/note
//! (`note_test.go`, BSD-3-Clause, The Go Authors): same keys, same key ids, byte-identical
//! signatures (Ed25519 is deterministic), same verdicts, except where we are stricter on purpose.

use sandbox_verify::Error;
use sandbox_verify::note::{MAX_SIGNATURES, Note, SignerKey, VerifierKey, key_id};

const PETER_SKEY: &str = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const ENOCH_VKEY: &str = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
const TEXT: &str =
    "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
const PETER_SIG: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
const ENOCH_SIG: &str =
    "\u{2014} EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

fn peter() -> VerifierKey {
    VerifierKey::parse(PETER_VKEY).unwrap()
}

fn enoch() -> VerifierKey {
    VerifierKey::parse(ENOCH_VKEY).unwrap()
}

fn message(signatures: &[&str]) -> Vec<u8> {
    format!("{TEXT}\n{}", signatures.concat()).into_bytes()
}

#[test]
fn keys_parse_and_print_as_go_writes_them() {
    let key = peter();
    assert_eq!((key.name(), key.id()), ("PeterNeumann", 0xc74f20a3));
    assert_eq!(key.to_string(), PETER_VKEY);
    assert_eq!(key_id("PeterNeumann", &key.public_key()), 0xc74f20a3);
    let signer = SignerKey::parse(PETER_SKEY).unwrap();
    assert_eq!(signer.verifier(), &key);
    assert_eq!(signer.encode(), PETER_SKEY);
    assert_eq!(format!("{signer:?}"), "SignerKey(PeterNeumann+c74f20a3)", "Debug never shows the seed");
    assert_eq!(enoch().id(), 0xaf0cfe78);
}

/// Go's `TestNewVerifier` and `TestNewSigner`: every proper substring and every one-byte change
/// of a key string is refused.
#[test]
fn mangled_keys_are_refused() {
    for (text, parse) in [
        (PETER_VKEY, (|s: &str| VerifierKey::parse(s).is_ok()) as fn(&str) -> bool),
        (PETER_SKEY, |s: &str| SignerKey::parse(s).is_ok()),
    ] {
        let bytes = text.as_bytes();
        for i in 0..=bytes.len() {
            for j in i + 1..=bytes.len() {
                if (i, j) != (0, bytes.len()) {
                    let part = std::str::from_utf8(&bytes[i..j]).unwrap();
                    assert!(!parse(part), "{part:?}");
                }
            }
        }
        for i in 0..bytes.len() {
            let mut changed = bytes.to_vec();
            changed[i] += 1;
            assert!(!parse(&String::from_utf8(changed).unwrap()), "byte {i} of {text}");
        }
    }
    // Go's wrong-length key (its base64 is not canonical either) and unknown algorithm, each
    // with a matching key id; and a key one byte short.
    let wrong_length = "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==";
    assert!(VerifierKey::parse(wrong_length).is_err());
    let short = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10Q=";
    assert!(VerifierKey::parse(short).unwrap_err().to_string().contains("32 bytes, not 31"));
    let unknown = "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    assert!(VerifierKey::parse(unknown).unwrap_err().to_string().contains("unknown signature type 0x65"));
    // Each refusal says why.
    for (text, says) in [
        ("PeterNeumann", "expected <name>+<key id>+<base64 key>"),
        ("Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "without spaces"),
        ("PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "8 lowercase hex"),
        ("PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "does not match the key"),
        ("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T", "not base64"),
    ] {
        let e = VerifierKey::parse(text).unwrap_err();
        assert!(e.to_string().contains(says), "{text}: {e}");
        assert!(!e.zh().is_empty());
    }
    assert!(SignerKey::parse(PETER_VKEY).unwrap_err().to_string().contains("PRIVATE+KEY+"));
    // The identity point is a valid encoding but of small order: refused.
    let mut small = [0u8; 32];
    small[0] = 1;
    assert!(VerifierKey::new("weak", small).is_err());
}

#[test]
fn signing_gives_go_s_bytes() {
    let signer = SignerKey::parse(PETER_SKEY).unwrap();
    let mut note = Note::new(TEXT).unwrap();
    note.sign(&signer);
    assert_eq!(note.to_bytes(), message(&[PETER_SIG]));
    // Signing again by the same key replaces, not adds.
    note.sign(&signer);
    assert_eq!(note.signatures().len(), 1);
    assert!(Note::new("no newline").is_err());
    assert!(Note::new("bell \x07\n").is_err());
}

#[test]
fn open_verifies_known_keys_and_ignores_unknown_ones() {
    let (peter, enoch) = (peter(), enoch());
    let note = Note::parse(&message(&[PETER_SIG, ENOCH_SIG])).unwrap();
    assert_eq!(note.text(), TEXT);
    assert_eq!(note.verify(std::slice::from_ref(&peter)).unwrap(), [&peter]);
    assert_eq!(note.verify(&[peter.clone(), enoch.clone()]).unwrap(), [&peter, &enoch]);
    assert!(matches!(note.verify(&[]), Err(Error::NotSigned { signers }) if signers.len() == 2));
    // A key with the same name but another id is another key, and ignored.
    let other = SignerKey::from_seed("PeterNeumann", [9; 32]).unwrap();
    assert!(matches!(note.verify(std::slice::from_ref(other.verifier())), Err(Error::NotSigned { .. })));
    // A signature by a known key that does not verify fails the note.
    let (head, tail) = PETER_SIG.split_at(60);
    let forged = Note::parse(&message(&[&format!("{head}ABCD{tail}")])).unwrap();
    let e = forged.verify(std::slice::from_ref(&peter)).unwrap_err();
    assert_eq!(e.to_string(), "the signature by key PeterNeumann+c74f20a3 does not verify");
    // A forged signature by an unknown key is ignored, as the spec requires.
    let (head, tail) = ENOCH_SIG.split_at(60);
    let with_junk = Note::parse(&message(&[PETER_SIG, &format!("{head}ABCD{tail}")])).unwrap();
    assert_eq!(with_junk.verify(std::slice::from_ref(&peter)).unwrap(), [&peter]);
}

/// Go drops a known key's repeated signature unverified; we refuse the note, so no line of an
/// accepted note goes unchecked.
#[test]
fn a_known_key_signing_twice_is_refused() {
    let note = Note::parse(&message(&[PETER_SIG, PETER_SIG])).unwrap();
    assert!(note.verify(&[peter()]).unwrap_err().to_string().contains("signs twice"));
    // Unknown keys may repeat.
    let note = Note::parse(&message(&[PETER_SIG, ENOCH_SIG, ENOCH_SIG])).unwrap();
    assert!(note.verify(&[peter()]).is_ok());
}

#[test]
fn malformed_notes_are_refused() {
    let too_many: Vec<&str> = vec![ENOCH_SIG; MAX_SIGNATURES + 1];
    let bad: Vec<(Vec<u8>, &str)> = vec![
        (TEXT.as_bytes().to_vec(), "no blank line"),
        (format!("{TEXT}\n").into_bytes(), "no signature lines"),
        (format!("{TEXT}\n{}", PETER_SIG.trim_end()).into_bytes(), "does not end in a newline"),
        ([b"\x01".as_slice(), &message(&[PETER_SIG])].concat(), "control character"),
        ([b"\xff".as_slice(), &message(&[PETER_SIG])].concat(), "not UTF-8"),
        (format!("{TEXT}\n\u{2014} Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n").into_bytes(), "bad signature line"),
        (format!("{TEXT}\n{PETER_SIG}Unexpected line.\n").into_bytes(), "bad signature line"),
        (format!("{TEXT}\n- PeterNeumann x08go/ZJku\n").into_bytes(), "bad signature line"),
        (format!("{TEXT}\n\u{2014} PeterNeumann AAAA\n").into_bytes(), "bad signature line"),
        (message(&too_many), "more than 100"),
        (vec![b'a'; 200 * 1024], "too large"),
    ];
    for (bytes, says) in bad {
        let e = Note::parse(&bytes).unwrap_err();
        assert!(e.to_string().contains(says), "{says}: {e}");
    }
}

#[test]
fn notes_round_trip_and_keep_blank_lines_in_the_text() {
    let signer = SignerKey::from_seed("example.com/log", [5; 32]).unwrap();
    let text = "first\n\nafter a blank line\n";
    let mut note = Note::new(text).unwrap();
    note.sign(&signer);
    let bytes = note.to_bytes();
    let parsed = Note::parse(&bytes).unwrap();
    assert_eq!(parsed, note);
    assert_eq!(parsed.text(), text);
    assert_eq!(parsed.to_bytes(), bytes);
    parsed.verify(std::slice::from_ref(signer.verifier())).unwrap();
}
