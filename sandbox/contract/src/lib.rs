//! The contract between the sandbox's processes: what a module declares (`manifest`), the
//! strict reader of the Arrow IPC a module or a runner sends (`ipc`), what a run is and how it
//! ended (`run`), and the runner process's wire protocol (`wire`).
//!
//! This crate holds types and parsers only. It links Arrow but no WebAssembly engine and no
//! query engine, so the key-holding server and the raw-data audit can depend on it without
//! linking the code that runs modules: `cargo tree -p sandbox-server` shows no wasmtime.
//! Everything here parses bytes that may come from a hostile module through a runner that may
//! have been escaped; each parser has a fuzz target in `fuzz/`.

#[doc(hidden)]
pub mod fuzz;
pub mod ipc;
pub mod manifest;
pub mod run;
pub mod wire;

pub use manifest::{Manifest, ManifestError};
pub use run::{Failed, OutputTable, RunError, RunMode, RunRecord};
