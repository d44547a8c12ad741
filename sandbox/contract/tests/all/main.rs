//! The contract crate's tests: manifest checks, the runner's wire protocol, and the fuzz targets
//! over their seeds and mutations of them.

mod fuzz;
mod manifest;
mod wire;
