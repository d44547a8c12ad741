//! Every parser that faces untrusted bytes, fed random and mutated inputs: none panics, and
//! whatever parses formats back to the same bytes (one spelling per value). The fuzz targets in
//! `fuzz/` do the same without end; this keeps a fixed sample in every test run.

use sandbox_verify::checkpoint::Checkpoint;
use sandbox_verify::entry::{self, Entry};
use sandbox_verify::note::{Note, SignerKey, VerifierKey};
use sandbox_verify::proof::{TlogProof, format_hash_list, parse_hash_list};
use sandbox_verify::tiles::{decode_bundle, parse_path};
use sandbox_verify::time::Timestamp;
use sandbox_verify::trust::Trust;

use crate::TestLog;

/// xorshift64*: a fixed stream, so a failure repeats.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// A copy of `seed` with a few bytes flipped, inserted, deleted or lines duplicated, or cut.
    fn mutate(&mut self, seed: &[u8]) -> Vec<u8> {
        let mut bytes = seed.to_vec();
        for _ in 0..1 + self.below(4) {
            let at = self.below(bytes.len() + 1);
            match self.below(6) {
                0 if at < bytes.len() => bytes[at] ^= 1 << self.below(8),
                1 => bytes.insert(at, [b'\n', b' ', b'+', b'0', 0xe2, 0x80, 0x94, 0xff][self.below(8)]),
                2 if at < bytes.len() => {
                    bytes.remove(at);
                }
                3 => bytes.truncate(at),
                4 => {
                    let end = (at + self.below(60)).min(bytes.len());
                    let copy = bytes[at..end].to_vec();
                    let to = self.below(bytes.len() + 1);
                    bytes.splice(to..to, copy);
                }
                _ => {
                    let random = (0..self.below(16)).map(|_| self.next() as u8);
                    bytes.splice(at..at, random.collect::<Vec<_>>());
                }
            }
        }
        bytes
    }
}

/// Valid examples of each format, taken from a real test log.
fn seeds() -> Vec<Vec<u8>> {
    let mut log = TestLog::new();
    log.append_story();
    let bundle_dir = log.release(&[("a.csv", b"1")]);
    let mut seeds = vec![
        std::fs::read(bundle_dir.join("statement")).unwrap(),
        std::fs::read(bundle_dir.join("statement.tlog-proof")).unwrap(),
        log.checkpoints[0].clone(),
        log.trust().into_bytes(),
        log.read("tile/entries/000.p/6"),
        log.consistency(2, 6).into_bytes(),
        b"tile/0/x001/x234/067.p/5".to_vec(),
        b"2026-05-01T08:00:00Z".to_vec(),
        log.log_key.verifier().to_string().into_bytes(),
        log.log_key.encode().into_bytes(),
    ];
    seeds.extend(log.entries.iter().take(4).cloned());
    seeds
}

/// Runs every parser on `input`; where one accepts, its output must parse back identically.
fn parse_everything(input: &[u8]) {
    if let Ok(note) = Note::parse(input) {
        assert_eq!(note.to_bytes(), input, "note round trip");
        if let Ok(entry) = Entry::parse(note.text()) {
            assert_eq!(entry.to_text(), note.text(), "entry round trip");
        }
    }
    let _ = entry::open(input);
    if let Ok(proof) = TlogProof::parse(input) {
        assert_eq!(proof.to_bytes(), input, "tlog-proof round trip");
    }
    if let Ok(hashes) = parse_hash_list(input) {
        assert_eq!(format_hash_list(&hashes).as_bytes(), input, "hash list round trip");
    }
    if let Ok(entries) = decode_bundle(input) {
        let again = sandbox_verify::tiles::encode_bundle(entries.iter().copied()).unwrap();
        assert_eq!(again, input, "bundle round trip");
    }
    let Ok(text) = std::str::from_utf8(input) else { return };
    if let Ok(checkpoint) = Checkpoint::parse(text) {
        assert_eq!(checkpoint.to_text(), text, "checkpoint round trip");
    }
    if let Ok(time) = Timestamp::parse(text) {
        assert_eq!(time.to_string(), text, "timestamp round trip");
    }
    if let Ok(key) = VerifierKey::parse(text) {
        assert_eq!(key.to_string(), text, "verifier key round trip");
    }
    if let Ok(key) = SignerKey::parse(text) {
        assert_eq!(key.encode(), text, "signer key round trip");
    }
    let _ = Trust::parse(text);
    let _ = parse_path(text);
}

#[test]
fn mutated_inputs_never_panic_and_what_parses_round_trips() {
    let seeds = seeds();
    for seed in &seeds {
        parse_everything(seed);
    }
    let mut random = Random(0x5eed_1234_abcd_0001);
    for _ in 0..20_000 {
        let seed = &seeds[random.below(seeds.len())];
        parse_everything(&random.mutate(seed));
        // The checkpoint note inside a tlog-proof, and an entry's text alone, mutated too.
        if let Ok(note) = Note::parse(seed) {
            parse_everything(&random.mutate(note.text().as_bytes()));
        }
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut random = Random(42);
    for _ in 0..10_000 {
        let len = random.below(300);
        let bytes: Vec<u8> = (0..len).map(|_| random.next() as u8).collect();
        parse_everything(&bytes);
        // Mostly printable, with the separators the formats use.
        let text: Vec<u8> = (0..len).map(|_| b"ab0 \n+/=-:TZx.p\xe2\x80\x94"[random.below(18)]).collect();
        parse_everything(&text);
    }
}
