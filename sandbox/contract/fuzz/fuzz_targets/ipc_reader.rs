#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sandbox_contract::fuzz::ipc_reader(data));
