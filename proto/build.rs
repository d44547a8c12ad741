//! Generates the services' Rust code from `sandbox/v1/*.proto` with protox (a protobuf compiler
//! in Rust, so no `protoc` is needed) and keeps the descriptor set for gRPC reflection.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read when the script runs, not when it is compiled: a build script compiled for a clone
    // elsewhere may be reused from a shared target directory.
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(dir.join("sandbox/v1"))?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
    files.retain(|p| p.extension().is_some_and(|e| e == "proto"));
    files.sort();
    println!("cargo:rerun-if-changed=sandbox/v1");
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.strip_prefix(&dir)?.display());
    }
    let fds = protox::compile(&files, [&dir])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("descriptor.bin"), prost::Message::encode_to_vec(&fds))?;
    tonic_prost_build::configure()
        .emit_rerun_if_changed(false)
        // For `--json` output of the command line.
        .type_attribute(".sandbox.v1", "#[derive(serde::Serialize)]")
        .compile_fds(fds)?;
    Ok(())
}
