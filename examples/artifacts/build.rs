//! Builds the guest crates to `wasm32-wasip2` components with a nested cargo, as wasmtime's
//! `test-programs` do, and writes a Rust file that embeds them.
//!
//! The nested build uses its own target directory beside the outer one (`<target>/guests`): the
//! outer cargo holds the lock on its own directories while build scripts run.

use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// (crate name, folder under the workspace root holding `module.toml`).
const GUESTS: &[(&str, &str)] = &[
    ("example-population", "examples/modules/population"),
    ("example-new-enterprises", "examples/modules/new-enterprises"),
    ("example-contributions", "examples/modules/contributions"),
    ("example-electricity-model", "examples/modules/electricity-model"),
    ("example-capital", "examples/modules/capital"),
    ("hostile-module", "runner/tests/hostile"),
];

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().parent().unwrap().to_path_buf();
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    // OUT_DIR is <target>/<profile>/build/<pkg>-<hash>/out.
    let target_dir = out_dir.ancestors().nth(4).unwrap().join("guests");

    // Relative paths, which cargo resolves from this package's folder: the target directory is
    // shared with other checkouts (CI's fresh clones), whose paths must not stand in for ours.
    for dir in ["examples/sdk", "examples/modules", "runner/tests/hostile", "runner/wit", "Cargo.lock"] {
        println!("cargo:rerun-if-changed=../../{dir}");
    }

    let cargo = env::var("CARGO").unwrap();
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args(["build", "--profile", "guest", "--locked", "--target", "wasm32-wasip2", "--target-dir"])
        .arg(&target_dir);
    for (name, _) in GUESTS {
        cmd.args(["-p", name]);
    }
    // Flags meant for the outer build (coverage, sanitizers, a host linker) must not reach the
    // guests.
    for var in
        ["CARGO_ENCODED_RUSTFLAGS", "RUSTFLAGS", "CARGO_BUILD_RUSTFLAGS", "CARGO_TARGET_DIR", "CARGO_BUILD_TARGET"]
    {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("cannot run cargo for the guest modules");
    assert!(status.success(), "building the guest modules failed: {status}");

    let mut code = String::new();
    for (name, dir) in GUESTS {
        let wasm = target_dir.join("wasm32-wasip2/guest").join(format!("{}.wasm", name.replace('-', "_")));
        assert!(wasm.exists(), "{} was not built", wasm.display());
        let short = name.strip_prefix("example-").unwrap_or(name);
        // The manifest from this checkout, whichever checkout last ran this script.
        let manifest = format!("concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/../../{dir}/module.toml\")");
        writeln!(
            code,
            "Example {{ name: {short:?}, wasm: include_bytes!({wasm:?}), manifest: include_str!({manifest}) }},",
            wasm = path_str(&wasm),
        )
        .unwrap();
    }
    std::fs::write(out_dir.join("examples.rs"), format!("&[\n{code}]")).unwrap();
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("paths under the workspace are UTF-8")
}
