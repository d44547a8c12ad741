//! The example analysis modules and the runner's hostile test guest, built by `build.rs` to
//! `wasm32-wasip2` components and embedded with their manifests, so that the CLI and tests can
//! use them without committed `.wasm` files.

/// A built guest module and its manifest.
#[derive(Debug, Clone, Copy)]
pub struct Example {
    /// The short name: `population`, `new-enterprises`, `contributions`, `electricity-model`,
    /// `capital`, or `hostile-module`.
    pub name: &'static str,
    /// The component's bytes.
    pub wasm: &'static [u8],
    /// The `module.toml` beside its source.
    pub manifest: &'static str,
}

const ALL: &[Example] = include!(concat!(env!("OUT_DIR"), "/examples.rs"));

/// The example modules: the four of the runner issue, then `capital`, whose table the output
/// audit suppresses in part (the demo's second run).
pub fn examples() -> &'static [Example] {
    &ALL[..5]
}

/// The guest the runner's tests use for hostile behaviour (chosen by its `attack` parameter).
pub fn hostile() -> &'static Example {
    &ALL[5]
}

/// An example by short name.
pub fn find(name: &str) -> Option<&'static Example> {
    examples().iter().find(|e| e.name == name)
}
