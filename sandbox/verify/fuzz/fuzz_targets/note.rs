//! Signed notes and the entries inside them: no panic, and what parses writes back unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sandbox_verify::entry::Entry;
use sandbox_verify::note::Note;

fuzz_target!(|data: &[u8]| {
    if let Ok(note) = Note::parse(data) {
        assert_eq!(note.to_bytes(), data);
        let _ = note.verify(&[]);
        if let Ok(entry) = Entry::parse(note.text()) {
            assert_eq!(entry.to_text(), note.text());
        }
    }
});
