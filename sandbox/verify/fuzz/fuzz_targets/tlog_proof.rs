//! tlog-proof files and hash lists: no panic, and what parses writes back unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sandbox_verify::proof::{TlogProof, format_hash_list, parse_hash_list};

fuzz_target!(|data: &[u8]| {
    if let Ok(proof) = TlogProof::parse(data) {
        assert_eq!(proof.to_bytes(), data);
        let _ = proof.verify(b"entry", &[]);
    }
    if let Ok(hashes) = parse_hash_list(data) {
        assert_eq!(format_hash_list(&hashes).as_bytes(), data);
    }
});
