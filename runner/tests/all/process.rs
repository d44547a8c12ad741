//! The `sandbox-runner` process: request on stdin, record and tables on stdout, no network.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::fixture::{catalog_dir, tmp};

fn runner_binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sandbox-runner"))
}

#[test]
fn the_process_runs_a_module_and_returns_its_tables() {
    let ex = sandbox_examples::find("population").unwrap();
    let dir = tmp().join(format!("runner-process-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("module.wasm"), ex.wasm).unwrap();
    std::fs::write(dir.join("module.toml"), ex.manifest).unwrap();
    let request = serde_json::json!({
        "catalog": catalog_dir(),
        "module": dir.join("module.wasm"),
        "manifest": dir.join("module.toml"),
        "parameters": [["reference_date", "2024-12-31"]],
        "mode": "production",
        "key": hex::encode(crate::fixture::key().to_bytes()),
        "cache_dir": tmp().join("module-cache"),
    });
    let mut child = runner_binary().stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(request.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let newline = out.stdout.iter().position(|&b| b == b'\n').unwrap();
    let header: serde_json::Value = serde_json::from_slice(&out.stdout[..newline]).unwrap();
    assert_eq!(header["record"]["error"], serde_json::Value::Null);
    assert_eq!(header["record"]["mode"], "production");
    assert_eq!(header["dev_log"], serde_json::Value::Null, "production keeps no log");
    assert_eq!(header["isolated"], true, "the run was confined, on a root of its own");
    let table = &header["tables"][0];
    let bytes = &out.stdout[newline + 1..];
    assert_eq!(bytes.len() as u64, table["bytes"].as_u64().unwrap());
    assert_eq!(hex::encode(sha2::Sha256::digest(bytes)), table["sha256"].as_str().unwrap());
    let reader = arrow_ipc::reader::StreamReader::try_new(bytes, None).unwrap();
    let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(rows as u64, table["rows"].as_u64().unwrap());
}

#[test]
fn a_bad_request_is_refused_with_exit_2() {
    let mut child = runner_binary().stdin(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"{\"catalog\": 1}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("parsing the request"));
}

#[test]
fn the_process_has_no_network() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    // From here the listener is reachable.
    assert!(std::net::TcpStream::connect(&addr).is_ok());
    let out = runner_binary().args(["--probe-network", &addr]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("unreachable"), "the runner reached {addr}: {text}");
}

/// Nothing a run does outlives it on disk: every file system is read-only inside the runner,
/// the module cache above all (later runs load it), and the data folder.
#[test]
fn the_process_writes_nowhere() {
    for dir in [tmp().join("module-cache"), tmp(), std::env::temp_dir()] {
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("written-by-a-run-{}", std::process::id()));
        let out = runner_binary().args(["--probe-write", path.to_str().unwrap()]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.starts_with("refused") && text.contains("Read-only"), "{}: {text}", path.display());
        assert!(!path.exists());
    }
}

/// Code that escapes the module finds only what its run reads — the catalog, the module and the
/// cache — and not the data folder's keys beside them, nor anything else of the host.
#[test]
fn the_process_sees_only_what_its_run_reads() {
    let dir = tmp().join(format!("runner-enclosed-{}", std::process::id()));
    let (catalog, keys) = (dir.join("catalog"), dir.join("keys"));
    std::fs::create_dir_all(&catalog).unwrap();
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::write(catalog.join("persons.csv"), "rows").unwrap();
    std::fs::write(keys.join("release.key"), "secret").unwrap();
    let probe = |path: &std::path::Path| {
        let out = runner_binary().arg("--probe-read").arg(&catalog).arg(path).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert_eq!(probe(&catalog.join("persons.csv")), "read 4 bytes");
    let host = [
        keys.join("release.key"),
        "/etc/passwd".into(),
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"),
    ];
    for path in host {
        let text = probe(&path);
        assert!(text.starts_with("refused") && text.contains("No such file"), "{}: {text}", path.display());
    }
    // The host's files are where they were.
    assert_eq!(std::fs::read_to_string(keys.join("release.key")).unwrap(), "secret");
}

/// What a run may see is the files of its manifest's datasets in its own variant: a development
/// run the twins only (its answer goes to the operator unaudited), a production run the real
/// files only; never the catalog's other datasets, entries or the data folder around them.
#[test]
fn a_run_sees_its_datasets_in_its_variant_only() {
    let ex = sandbox_examples::find("population").unwrap();
    let dir = tmp().join(format!("runner-keep-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("module.wasm"), ex.wasm).unwrap();
    std::fs::write(dir.join("module.toml"), ex.manifest).unwrap();
    let catalog = crate::fixture::catalog();
    let persons = catalog.dataset("persons").unwrap();
    let canonical = |files: &[sandbox_catalog::DataFile]| -> Vec<String> {
        files.iter().map(|f| f.path.canonicalize().unwrap().display().to_string()).collect()
    };
    let (real, twins) = (
        canonical(persons.files(sandbox_catalog::Variant::Real)),
        canonical(persons.files(sandbox_catalog::Variant::Twin)),
    );
    for (mode, seen, unseen) in [("development", &twins, &real), ("production", &real, &twins)] {
        let request = serde_json::json!({
            "catalog": catalog_dir(),
            "module": dir.join("module.wasm"),
            "manifest": dir.join("module.toml"),
            "parameters": [],
            "mode": mode,
        });
        let mut child =
            runner_binary().arg("--probe-keep").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
        child.stdin.take().unwrap().write_all(request.to_string().as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        let kept: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect();
        assert!(seen.iter().all(|f| kept.contains(f)), "{mode}: {kept:?}");
        assert!(unseen.iter().all(|f| !kept.contains(f)), "{mode} sees the other variant: {kept:?}");
        let catalog_dir = catalog_dir().canonicalize().unwrap().display().to_string();
        assert!(!kept.contains(&catalog_dir), "{mode} sees the whole catalog: {kept:?}");
        assert_eq!(kept.len(), 2 + seen.len(), "the module, its manifest and the dataset's files: {kept:?}");
    }
}

/// A twin that is a copy of the real data is still refused to a development run, though the
/// run's root holds no real file to compare with: the runner compares them before it confines
/// itself.
#[test]
fn a_twin_that_is_the_real_data_is_refused_through_the_process() {
    let ex = sandbox_examples::find("population").unwrap();
    let dir = tmp().join(format!("runner-real-twin-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let copied = Command::new("cp").arg("-a").arg(catalog_dir()).arg(dir.join("catalog")).status().unwrap();
    assert!(copied.success());
    let catalog = sandbox_catalog::Catalog::open(&dir.join("catalog")).unwrap();
    let persons = catalog.dataset("persons").unwrap();
    let (real, twin) =
        (&persons.files(sandbox_catalog::Variant::Real)[0], &persons.files(sandbox_catalog::Variant::Twin)[0]);
    std::fs::copy(&real.path, &twin.path).unwrap();
    std::fs::write(dir.join("module.wasm"), ex.wasm).unwrap();
    std::fs::write(dir.join("module.toml"), ex.manifest).unwrap();
    let request = serde_json::json!({
        "catalog": dir.join("catalog"),
        "module": dir.join("module.wasm"),
        "manifest": dir.join("module.toml"),
        "parameters": [["reference_date", "2024-12-31"]],
        "mode": "development",
        "key": hex::encode(crate::fixture::key().to_bytes()),
        "require_isolation": true,
    });
    let mut child = runner_binary().stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(request.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let newline = out.stdout.iter().position(|&b| b == b'\n').unwrap();
    let header: serde_json::Value = serde_json::from_slice(&out.stdout[..newline]).unwrap();
    assert_eq!(header["isolated"], true);
    assert!(header["tables"].as_array().unwrap().is_empty(), "{header}");
    let error = header["record"]["error"].to_string();
    assert!(error.contains("persons") && error.contains("twin"), "the run is refused on its dataset: {error}");
}

/// Code that escapes the module holds every capability of the runner's innermost user
/// namespace, yet cannot remount a file system writable (the mounts are locked), and runs as
/// the first process of a PID namespace of its own: what it starts dies with it, and no process
/// outside is in its reach.
#[test]
fn escaped_code_cannot_undo_the_confinement() {
    let path = tmp().join(format!("written-after-remount-{}", std::process::id()));
    let out = runner_binary().args(["--probe-remount", path.to_str().unwrap()]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("refused") && text.contains("Read-only"), "{text}");
    assert!(!path.exists());
    let out = runner_binary().arg("--probe-pid").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "pid 1");
    // Nor build a confinement of its own inside: new namespaces and mounts are refused by a
    // seccomp filter, though the innermost user namespace would allow them.
    let out = runner_binary().arg("--probe-syscalls").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "unshare: Err(EPERM); mount: Err(EPERM)");
}

/// `--compile` writes the compiled module into the cache and runs nothing; a run then finds it
/// there, and adds nothing of its own.
#[test]
fn modules_are_compiled_by_a_process_that_runs_none() {
    let ex = sandbox_examples::find("new-enterprises").unwrap();
    let dir = tmp().join(format!("runner-compile-{}", std::process::id()));
    let cache = dir.join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::write(dir.join("module.wasm"), ex.wasm).unwrap();
    std::fs::write(dir.join("module.toml"), ex.manifest).unwrap();
    let request = sandbox_contract::wire::CompileRequest {
        module: dir.join("module.wasm"),
        cache_dir: cache.clone(),
        require_isolation: false,
    };
    let mut child = runner_binary().arg("--compile").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(&request.encode()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let answer = sandbox_contract::wire::CompileAnswer::decode(&out.stdout).unwrap();
    assert_eq!(answer.error, None);
    let listing = || {
        let mut names: Vec<_> =
            std::fs::read_dir(&cache).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        names
    };
    let compiled = listing();
    let sha = hex::encode(sha2::Sha256::digest(ex.wasm));
    assert!(compiled.len() == 1 && compiled[0].starts_with(&sha), "{compiled:?}");

    // A module that is not a component is refused with its code, and nothing is cached.
    std::fs::write(dir.join("module.wasm"), b"\0asm\x01\0\0\0").unwrap();
    let mut child = runner_binary().arg("--compile").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(&request.encode()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    let answer = sandbox_contract::wire::CompileAnswer::decode(&out.stdout).unwrap();
    assert_eq!(answer.error.map(|e| e.code()).as_deref(), Some("invalid-module"));
    assert_eq!(listing(), compiled);
}

#[test]
fn the_process_cannot_allocate_past_its_data_limit() {
    // The limit is the guest's memory, the query pool and 2 GiB for the host itself.
    let limits = sandbox_runner::RunLimits::default();
    let limit = limits.memory_bytes + limits.policy.memory_limit + (2 << 30);
    let probe = |bytes: usize| {
        let out = runner_binary().args(["--probe-memory", &bytes.to_string()]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let small = probe(64 << 20);
    assert!(small.starts_with("allocated"), "{small}");
    let past = probe(limit + (1 << 30));
    assert!(past.starts_with("refused"), "allocated {} bytes past the data limit: {past}", limit + (1 << 30));
}

use sha2::Digest as _;
