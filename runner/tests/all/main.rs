//! The runner's tests: the example modules on generated data, every hostile behaviour, the
//! manifest checks, and the `sandbox-runner` process.

mod contract;
mod examples;
mod fixture;
mod hostile;
mod manifest;
mod process;
