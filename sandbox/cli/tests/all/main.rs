//! End-to-end tests of the `sandbox` binary.
