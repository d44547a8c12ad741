//! The runner: analysis modules (WebAssembly components of the `sandbox:analysis` world in
//! `wit/`) run in wasmtime against policy views, and their declared output tables come back.
//!
//! This crate runs untrusted code. It must never hold a signing key or write the log; its
//! `process` (`sandbox runner`, and the `sandbox-runner` binary) is what the server spawns for
//! every run, in a process of its own with no network. What reaches a module is only what `host.rs` serves: policy views
//! through the gate and checker, output tables checked against the manifest, a development log,
//! and WASI with nothing real behind it (`wasi.rs`).

//!
//! What crosses the process boundary — manifests, output tables, run records and errors, the
//! IPC reader — lives in `sandbox-contract`, which links no wasmtime.

mod engine;
mod host;
mod limits;
pub mod process;
mod run;
mod wasi;

pub use engine::Runner;
pub use host::sandbox::analysis::types::ErrorCode;
pub use limits::RunLimits;
pub use run::{RunOutcome, RunRequest};
pub use wasi::DevLog;
