//! Checkpoint texts, and checkpoint notes opened against no key: no panic, one spelling.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sandbox_verify::checkpoint::{self, Checkpoint};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(checkpoint) = Checkpoint::parse(text)
    {
        assert_eq!(checkpoint.to_text(), text);
    }
    assert!(checkpoint::open(data, &[]).is_err());
});
