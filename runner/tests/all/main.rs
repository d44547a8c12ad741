//! The runner's tests: the example modules on generated data, every hostile behaviour, and the
//! `sandbox-runner` process.

mod examples;
mod fixture;
mod hostile;
mod process;
