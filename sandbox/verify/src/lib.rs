//! `sandbox-verify`: the formats of the sandbox's transparency log, and the offline verifier that
//! evaluators (第三方评估机构) run over a release, a consistency proof, or a whole archive.
//!
//! The formats are C2SP's: RFC 6962 SHA-256 Merkle trees ([`merkle`]), signed notes with Ed25519
//! ([`note`]), checkpoints ([`checkpoint`]), the tlog-tiles layout ([`tiles`]) and tlog-proof
//! files ([`proof`]); on top of them our own entries ([`entry`]) and what they say, typed
//! ([`event`]), release bundles ([`release`]), the trust file ([`trust`]), archive audits
//! ([`audit`]) and monitoring ([`monitor`]). The log
//! writer builds hashes, proofs, notes, entries and tile paths with this crate, so there is one
//! definition of each format.
//!
//! This crate depends on `sha2`, `ed25519-dalek`, `base64` and `std` only, so an evaluator can
//! read all of it. It never touches the network, never writes a log, and holds no key: signing
//! takes a key the caller brings.

#![forbid(unsafe_code)]

pub mod annual;
pub mod audit;
pub mod checkpoint;
pub mod entry;
mod error;
pub mod event;
pub mod merkle;
pub mod monitor;
pub mod note;
mod problem;
pub mod proof;
pub mod release;
pub mod tiles;
pub mod time;
pub mod trust;

pub use error::{Error, Format, ProofFault, ProofKind};
pub use merkle::Hash;
pub use problem::{Fork, Problem, ProblemKind, RootSource};
