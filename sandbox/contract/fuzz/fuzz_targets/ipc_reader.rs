#![no_main]

// The reader turns Arrow's decoder panics into refusals (catch_unwind): libFuzzer's panic hook,
// which aborts on any panic, caught or not, is replaced by a silent one. A panic the reader does
// not catch still ends the process: it cannot unwind out of the fuzzer's entry point.
libfuzzer_sys::fuzz_target!(
    init: std::panic::set_hook(Box::new(|_| {})),
    |data: &[u8]| sandbox_contract::fuzz::ipc_reader(data)
);
