//! The runner process: runs one module for the server, in a process of its own — `sandbox
//! runner` (a hidden subcommand of the one `sandbox` binary, which the server execs) or the
//! `sandbox-runner` binary (the same code, for this crate's tests and standalone use).
//!
//! The request comes on stdin and the answer goes to stdout, as `sandbox_contract::wire` says
//! (the licence's pseudonym key comes in the request, never in arguments or the environment).
//! Having read its request, and before anything else, the process confines itself, where Linux
//! allows: new user, network, mount, IPC, UTS and cgroup namespaces (no network at all; a root
//! file system of its own that holds only the files of its manifest's datasets in its own
//! variant, the module, its manifest and the module cache — not the data folder's keys, log or
//! state, the other variant or datasets, nor anything else of the host — and every file system
//! read-only: nothing a module could do to the host, the module cache above all, which later
//! runs load, outlives the run), no new privileges, a seccomp filter against the system calls
//! that would rebuild or leave the confinement, and resource limits. It never holds a
//! signing key and cannot reach the log. [`main`] must be called while the process has one
//! thread: before any runtime, logger or thread pool starts.
//!
//! `--compile` compiles a module into the cache and runs nothing: the server asks for it when a
//! module is approved, so the cache is written only by processes that never ran a module. Its
//! root holds the module and the cache only, the cache writable; its network is cut off all the
//! same.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::{RunLimits, RunRequest, Runner};
use anyhow::Context;
use nix::sys::resource::{Resource, setrlimit};
use sandbox_catalog::{Catalog, Variant};
use sandbox_contract::Manifest;
use sandbox_contract::run::RunMode;
use sandbox_contract::wire::{CompileAnswer, CompileRequest, MAX_REQUEST_BYTES, RunnerAnswer, RunnerRequest};
use sandbox_policy::PseudonymKey;

/// What this process was started to do.
enum Job {
    Run,
    Compile,
    /// Tries to reach an address, from inside the confinement (for tests).
    ProbeNetwork(String),
    /// Tries to allocate this many bytes.
    ProbeMemory(usize),
    /// Tries to create this file.
    ProbeWrite(String),
    /// Tries to remount `/` writable, as escaped code could, then to create this file.
    ProbeRemount(String),
    /// Prints its process id (1 inside the run's PID namespace).
    ProbePid,
    /// Confined to the first path, as a run is to its catalog and module, tries to read the
    /// second.
    ProbeRead(PathBuf, PathBuf),
    /// Reads a run's request and prints what the run would see, a path a line.
    ProbeKeep,
    /// Tries system calls escaped code would reach for: a new mount namespace, a tmpfs mount.
    ProbeSyscalls,
}

impl Job {
    fn from_args(args: &[String]) -> anyhow::Result<Job> {
        Ok(match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
            [] => Job::Run,
            ["--compile"] => Job::Compile,
            ["--probe-network", addr] => Job::ProbeNetwork((*addr).to_owned()),
            ["--probe-memory", bytes] => Job::ProbeMemory(bytes.parse().context("--probe-memory takes a byte count")?),
            ["--probe-write", path] => Job::ProbeWrite((*path).to_owned()),
            ["--probe-remount", path] => Job::ProbeRemount((*path).to_owned()),
            ["--probe-pid"] => Job::ProbePid,
            ["--probe-keep"] => Job::ProbeKeep,
            ["--probe-syscalls"] => Job::ProbeSyscalls,
            ["--probe-read", keep, path] => Job::ProbeRead(PathBuf::from(keep), PathBuf::from(path)),
            other => anyhow::bail!("unknown arguments {other:?}"),
        })
    }
}

/// Cuts the process off: a new user namespace (so no privilege is needed), a new network
/// namespace with nothing but a down loopback, new IPC, UTS and cgroup namespaces (no System V
/// or POSIX queue or shared memory a later run could read), and a new mount namespace whose root
/// holds only `keep` (when given, see [`enclose`]) and whose mounts are all made read-only
/// (unless `writable`) — then a second user and mount namespace inside the first. The second one is owned by a less privileged user namespace than the mounts it
/// copies, so their flags are locked (mount_namespaces(7)): code that escapes the module and
/// holds every capability of its namespace still cannot remount anything writable (red team
/// round 7 did, with one `mount(MS_REMOUNT|MS_BIND)`, before this). Must run while
/// single-threaded.
fn isolate(writable: bool, keep: &[PathBuf]) -> Result<(), String> {
    use nix::sched::{CloneFlags, unshare};
    let (uid, gid) = (nix::unistd::geteuid(), nix::unistd::getegid());
    let namespaces = CloneFlags::CLONE_NEWUSER
        | CloneFlags::CLONE_NEWNET
        | CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWCGROUP;
    unshare(namespaces).map_err(|e| e.to_string())?;
    // The outer user namespace maps this process's own ids (the only mapping an unprivileged
    // process may write): a nested user namespace can only be made by ids its parent maps.
    let write = |file: &str, text: String| {
        std::fs::write(format!("/proc/self/{file}"), text).map_err(|e| format!("/proc/self/{file}: {e}"))
    };
    write("setgroups", "deny".to_owned())?;
    write("uid_map", format!("0 {uid} 1"))?;
    write("gid_map", format!("0 {gid} 1"))?;
    if !keep.is_empty() {
        enclose(keep)?;
    }
    if writable {
        return Ok(());
    }
    read_only_everywhere()?;
    unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS).map_err(|e| format!("locking the mounts: {e}"))
}

/// Makes a root file system holding only `keep` (canonical paths, each at its own path) and
/// pivots into it, dropping the host's: escaped code finds no key, log, state database or home
/// folder to read, only what its run reads anyway. A small tmpfs is the new root, mounted on
/// the first of a few usual directories that holds none of `keep`; each kept path is bound into
/// it at its own path; the old root is detached.
fn enclose(keep: &[PathBuf]) -> Result<(), String> {
    use nix::mount::{MntFlags, MsFlags, mount, umount2};
    let none: Option<&str> = None;
    fn fail(what: &'static str) -> impl Fn(nix::errno::Errno) -> String {
        move |e| format!("{what}: {e}")
    }
    // Nothing done here reaches the host's mount namespace.
    mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none).map_err(fail("private mounts"))?;
    // Paths inside another kept path come with it (and a file created for one would be
    // created in the host's folder).
    let mut kept: Vec<&PathBuf> = keep.iter().collect();
    kept.sort();
    kept.dedup_by(|later, earlier| later.starts_with(earlier));
    let base = ["/mnt", "/tmp", "/run", "/var/tmp", "/srv", "/opt", "/media", "/home"]
        .into_iter()
        .map(Path::new)
        .find(|b| b.is_dir() && kept.iter().all(|k| !k.starts_with(b) && !b.starts_with(k)))
        .ok_or("no directory to build the run's root on")?;
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    mount(Some("tmpfs"), base, Some("tmpfs"), flags, Some("size=1m,mode=0755")).map_err(fail("the run's root"))?;
    for path in kept {
        let relative = path.strip_prefix("/").map_err(|_| format!("{} is not absolute", path.display()))?;
        let target = base.join(relative);
        let made = if path.is_dir() {
            std::fs::create_dir_all(&target)
        } else {
            let parent = target.parent().unwrap_or(base);
            std::fs::create_dir_all(parent)
                .and_then(|()| std::fs::OpenOptions::new().write(true).create_new(true).open(&target).map(drop))
        };
        made.map_err(|e| format!("{}: {e}", target.display()))?;
        mount(Some(path.as_path()), &target, none, MsFlags::MS_BIND | MsFlags::MS_REC, none)
            .map_err(|e| format!("binding {}: {e}", path.display()))?;
    }
    let old = base.join(".host");
    std::fs::create_dir(&old).map_err(|e| format!("{}: {e}", old.display()))?;
    nix::unistd::pivot_root(base, &old).map_err(fail("pivot_root"))?;
    std::env::set_current_dir("/").map_err(|e| format!("chdir /: {e}"))?;
    umount2("/.host", MntFlags::MNT_DETACH).map_err(fail("detaching the host's root"))?;
    std::fs::remove_dir("/.host").map_err(|e| format!("/.host: {e}"))
}

/// A new PID namespace, with this process's child as its first process: when that child ends,
/// the kernel kills every process left in the namespace, so nothing a module starts outlives
/// its run (round 7 left a daemon behind that killed later runs), and nothing in it can signal
/// a process outside. The parent only waits and passes the child's status on; the child dies
/// with its parent (the server kills the parent at a timeout or cancel). `None` in the child,
/// the exit code in the parent. Must run while single-threaded.
fn enter_pid_namespace() -> Result<Option<ExitCode>, String> {
    use nix::sys::wait::{WaitStatus, waitpid};
    use nix::unistd::{ForkResult, fork};
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWPID).map_err(|e| format!("PID namespace: {e}"))?;
    // SAFETY: the process has one thread here (nothing has started the runtime or the epoch
    // ticker yet), so the child may run anything.
    #[allow(unsafe_code)]
    let forked = unsafe { fork() }.map_err(|e| format!("fork: {e}"))?;
    match forked {
        ForkResult::Child => {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(|e| format!("parent-death signal: {e}"))?;
            Ok(None)
        }
        ForkResult::Parent { child } => loop {
            // The answer is the child's to write: with this copy of stdout closed, the server
            // reads the end of the answer when the child closes its own, not at the exit of both.
            let _ = nix::unistd::close(1);
            match waitpid(child, None) {
                Ok(WaitStatus::Exited(_, code)) => return Ok(Some(ExitCode::from(code as u8))),
                Ok(WaitStatus::Signaled(_, signal, _)) => return Ok(Some(ExitCode::from(128 + signal as u8))),
                Ok(_) => continue,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(format!("waiting for the run: {e}")),
            }
        },
    }
}

/// `mount_setattr(2)` on `/` with `AT_RECURSIVE`: every mount of this process's namespace
/// read-only, and private, so nothing propagates back. Linux 5.12 and later.
fn read_only_everywhere() -> Result<(), String> {
    /// `struct mount_attr` of `linux/mount.h`.
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    const MOUNT_ATTR_RDONLY: u64 = 0x1;
    let attr = MountAttr { attr_set: MOUNT_ATTR_RDONLY, attr_clr: 0, propagation: libc::MS_PRIVATE, userns_fd: 0 };
    // SAFETY: the path is a NUL-terminated string and `attr` a live `struct mount_attr` whose
    // size is passed; the call reads both and writes nothing of ours.
    #[allow(unsafe_code)]
    let result = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            c"/".as_ptr(),
            libc::AT_RECURSIVE as libc::c_uint,
            &attr as *const MountAttr,
            size_of::<MountAttr>(),
        )
    };
    if result == 0 { Ok(()) } else { Err(format!("read-only mounts: {}", std::io::Error::last_os_error())) }
}

/// The system calls nothing in a run needs and escaped code would reach for, refused with
/// `EPERM` by a seccomp filter (seccompiler, Firecracker's): new namespaces and mounts (the
/// confinement cannot be rebuilt from inside), tracing and reading other processes' memory,
/// io_uring (whose operations seccomp does not see), BPF, perf events, userfaultfd, keyrings,
/// kernel modules, kexec, reboot, swap, accounting, `personality` and handle-based opens. Needs
/// no_new_privs ([`set_limits`]).
fn deny_syscalls() -> Result<(), String> {
    use seccompiler::{BpfProgram, SeccompAction, SeccompFilter};
    let denied = [
        libc::SYS_unshare,
        libc::SYS_setns,
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_pivot_root,
        libc::SYS_chroot,
        libc::SYS_mount_setattr,
        libc::SYS_fsopen,
        libc::SYS_fsconfig,
        libc::SYS_fsmount,
        libc::SYS_fspick,
        libc::SYS_move_mount,
        libc::SYS_open_tree,
        libc::SYS_ptrace,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
        libc::SYS_bpf,
        libc::SYS_perf_event_open,
        libc::SYS_userfaultfd,
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_delete_module,
        libc::SYS_kexec_load,
        libc::SYS_kexec_file_load,
        libc::SYS_reboot,
        libc::SYS_swapon,
        libc::SYS_swapoff,
        libc::SYS_acct,
        libc::SYS_personality,
        libc::SYS_open_by_handle_at,
        libc::SYS_name_to_handle_at,
    ];
    let arch = std::env::consts::ARCH.try_into().map_err(|e| format!("seccomp: {e:?}"))?;
    let rules = denied.into_iter().map(|call| (call, Vec::new())).collect();
    let filter = SeccompFilter::new(rules, SeccompAction::Allow, SeccompAction::Errno(libc::EPERM as u32), arch)
        .map_err(|e| format!("seccomp: {e}"))?;
    let program: BpfProgram = filter.try_into().map_err(|e| format!("seccomp: {e}"))?;
    seccompiler::apply_filter(&program).map_err(|e| format!("seccomp: {e}"))
}

fn set_limits(limits: &RunLimits) -> Result<(), String> {
    let data = (limits.memory_bytes + limits.policy.memory_limit) as u64 + (2 << 30);
    let cpu = limits.wall_time.as_secs() * 4 + 10;
    for (resource, value) in [
        (Resource::RLIMIT_CORE, 0),
        (Resource::RLIMIT_NOFILE, 1024),
        (Resource::RLIMIT_DATA, data),
        (Resource::RLIMIT_CPU, cpu),
    ] {
        setrlimit(resource, value, value).map_err(|e| format!("{resource:?}: {e}"))?;
    }
    nix::sys::prctl::set_no_new_privs().map_err(|e| format!("no_new_privs: {e}"))?;
    Ok(())
}

/// Closes every file descriptor but stdin, stdout and stderr: whatever the server's own parent
/// left open without close-on-exec (a job server's pipe, a terminal, a socket) and the server
/// passed on is none of the run's business, and escaped code would find it open.
fn close_inherited() -> std::io::Result<()> {
    // SAFETY: close_range(2) takes two numbers and flags; nothing of this process uses a
    // descriptor above 2 yet (the Rust runtime opens none before main).
    #[allow(unsafe_code)]
    let closed =
        unsafe { libc::syscall(libc::SYS_close_range, 3 as libc::c_uint, libc::c_uint::MAX, 0 as libc::c_uint) };
    if closed == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

/// Runs the process's job, `args` being its arguments after the program (and subcommand) name.
pub fn main(args: &[String]) -> ExitCode {
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sandbox runner: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &[String]) -> anyhow::Result<ExitCode> {
    close_inherited().context("closing inherited file descriptors")?;
    let job = Job::from_args(args)?;
    // A run's request first: it names what the run may see.
    let prepared = match &job {
        Job::Run | Job::ProbeKeep => Some(prepare()?),
        _ => None,
    };
    let compile_request = match &job {
        Job::Compile => Some(prepare_compile()?),
        _ => None,
    };
    let keep = match (&job, &prepared, &compile_request) {
        (Job::Run, Some(prepared), _) => prepared.keep.clone(),
        (Job::Compile, _, Some(request)) => vec![request.module.clone(), request.cache_dir.clone()],
        (Job::ProbeRead(keep, _), _, _) => vec![keep.canonicalize().context("--probe-read")?],
        _ => Vec::new(),
    };
    // Then, while the process has one thread, the confinement.
    let mut isolation = isolate(matches!(job, Job::Compile), &keep);
    if isolation.is_ok() {
        match enter_pid_namespace() {
            Ok(Some(code)) => return Ok(code),
            Ok(None) => {}
            Err(e) => isolation = Err(e),
        }
    }
    let limits = RunLimits::default();
    set_limits(&limits).map_err(anyhow::Error::msg).context("setting resource limits")?;
    // Last, still on one thread (the filter holds for every thread started after it).
    if isolation.is_ok()
        && let Err(e) = deny_syscalls()
    {
        isolation = Err(e);
    }

    match job {
        Job::Run => {}
        Job::Compile => {
            return compile(compile_request.context("a compilation without its request")?, limits, isolation);
        }
        Job::ProbeSyscalls => {
            let unshared = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS);
            let none: Option<&str> = None;
            let mounted = nix::mount::mount(Some("tmpfs"), "/", Some("tmpfs"), nix::mount::MsFlags::empty(), none);
            println!("unshare: {unshared:?}; mount: {mounted:?}");
            return Ok(ExitCode::SUCCESS);
        }
        Job::ProbeKeep => {
            for path in prepared.context("no request")?.keep {
                println!("{}", path.display());
            }
            return Ok(ExitCode::SUCCESS);
        }
        Job::ProbeNetwork(addr) => {
            match std::net::TcpStream::connect(&addr) {
                Ok(_) => println!("connected"),
                Err(e) => println!("unreachable: {e}"),
            }
            return Ok(ExitCode::SUCCESS);
        }
        Job::ProbeMemory(bytes) => {
            let mut hoard: Vec<u8> = Vec::new();
            match hoard.try_reserve_exact(bytes) {
                Ok(()) => {
                    // Touch every page, so the memory is really there.
                    hoard.resize(bytes, 1);
                    println!("allocated {}", std::hint::black_box(&hoard).len());
                }
                Err(e) => println!("refused: {e}"),
            }
            return Ok(ExitCode::SUCCESS);
        }
        Job::ProbeWrite(path) => {
            match std::fs::write(&path, b"x") {
                Ok(()) => println!("written"),
                Err(e) => println!("refused: {e}"),
            }
            return Ok(ExitCode::SUCCESS);
        }
        Job::ProbeRemount(path) => {
            // SAFETY: NUL-terminated strings and null pointers where mount(2) takes them.
            #[allow(unsafe_code)]
            let remounted = unsafe {
                libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REMOUNT | libc::MS_BIND,
                    std::ptr::null(),
                )
            };
            let remount =
                if remounted == 0 { "remounted".to_owned() } else { std::io::Error::last_os_error().to_string() };
            match std::fs::write(&path, b"x") {
                Ok(()) => println!("written ({remount})"),
                Err(e) => println!("refused: {e} ({remount})"),
            }
            return Ok(ExitCode::SUCCESS);
        }
        Job::ProbePid => {
            println!("pid {}", std::process::id());
            return Ok(ExitCode::SUCCESS);
        }
        Job::ProbeRead(_, path) => {
            match (&isolation, std::fs::read(&path)) {
                (Err(e), _) => println!("not confined: {e}"),
                (Ok(()), Ok(bytes)) => println!("read {} bytes", bytes.len()),
                (Ok(()), Err(e)) => println!("refused: {e}"),
            }
            return Ok(ExitCode::SUCCESS);
        }
    }

    let Prepared { request, catalog, .. } = prepared.context("a run without its request")?;
    if let (Err(e), true) = (&isolation, request.require_isolation) {
        anyhow::bail!("cannot confine the process: {e}");
    }
    let key = match &request.key {
        Some(hex_key) => {
            let bytes: [u8; 32] =
                hex::decode(hex_key).ok().and_then(|b| b.try_into().ok()).context("key must be 64 hex digits")?;
            Some(PseudonymKey::from_bytes(bytes))
        }
        None => None,
    };
    let module = std::fs::read(&request.module).context("reading the module")?;
    let manifest = std::fs::read_to_string(&request.manifest).context("reading the manifest")?;

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let runner = Runner::new(limits, request.cache_dir.clone())?;
    let outcome = runtime.block_on(runner.run(RunRequest {
        module: &module,
        manifest: &manifest,
        parameters: &request.parameters,
        catalog: &catalog,
        mode: request.mode,
        key,
        limits: None,
    }));

    let failed = outcome.record.error.is_some();
    let answer = RunnerAnswer {
        record: outcome.record,
        tables: outcome.tables,
        dev_log: outcome.dev_log.map(|(text, _)| text),
        isolated: isolation.is_ok(),
    };
    let mut out = std::io::stdout().lock();
    answer.encode(&mut out)?;
    out.flush()?;
    // The end of the answer: the server goes on from here, not from this process's exit (the
    // runtime's shutdown and the unmapping of the run's memory took 7 ms of a small job's 41).
    let _ = nix::unistd::close(1);
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// A compilation's request from stdin, its paths canonical (the cache created if need be): the
/// compiling process sees the module and the cache only, the cache writable.
fn prepare_compile() -> anyhow::Result<CompileRequest> {
    let mut input = Vec::new();
    std::io::stdin().take(MAX_REQUEST_BYTES + 1).read_to_end(&mut input).context("reading the request")?;
    let mut request = CompileRequest::decode(&input).context("parsing the request")?;
    std::fs::create_dir_all(&request.cache_dir).with_context(|| format!("{}", request.cache_dir.display()))?;
    request.module = request.module.canonicalize().with_context(|| format!("{}", request.module.display()))?;
    request.cache_dir = request.cache_dir.canonicalize().with_context(|| format!("{}", request.cache_dir.display()))?;
    Ok(request)
}

/// A run as its request asks for it, before the process confines itself.
struct Prepared {
    /// Its paths absolute and canonical: the run sees them at those paths only.
    request: RunnerRequest,
    /// Opened (entries read, schemas checked) while the whole catalog is in view.
    catalog: Catalog,
    /// What the run reads, and all it will see (see [`enclose`]): the files of the manifest's
    /// datasets in the run's variant — the twins for a development run, the real files for a
    /// production run, never the other datasets nor the other variant —, the module, its
    /// manifest and the module cache.
    keep: Vec<PathBuf>,
}

/// Reads the request from stdin, opens the catalog and lists what the run may see.
fn prepare() -> anyhow::Result<Prepared> {
    let mut input = Vec::new();
    std::io::stdin().take(MAX_REQUEST_BYTES + 1).read_to_end(&mut input).context("reading the request")?;
    let mut request = RunnerRequest::decode(&input).context("parsing the request")?;
    let canonical = |path: &Path| path.canonicalize().with_context(|| format!("{}", path.display()));
    request.catalog = canonical(&request.catalog)?;
    request.module = canonical(&request.module)?;
    request.manifest = canonical(&request.manifest)?;
    if let Some(cache) = &request.cache_dir {
        // A cache that does not exist yet has nothing to load: the run compiles in memory.
        request.cache_dir = cache.canonicalize().ok();
    }
    let mut catalog = Catalog::open(&request.catalog).context("opening the catalog")?;
    let manifest = std::fs::read_to_string(&request.manifest).context("reading the manifest")?;
    let manifest = Manifest::parse(&manifest).context("parsing the manifest")?;
    let variant = match request.mode {
        RunMode::Production => Variant::Real,
        RunMode::Development => Variant::Twin,
    };
    // The run's catalog names only the files of its variant. A development run's twins are
    // compared with the real files here, where both are in view (inside the run's root the real
    // files are not there); twins that are the real data, or that cannot be compared, keep the
    // real files named, so that the run's own check refuses them.
    for dataset in &mut catalog.datasets {
        if !manifest.datasets.contains(&dataset.id) {
            // Not the run's: nothing of it is opened, nor named.
            dataset.files.clear();
            dataset.twin_files.clear();
            continue;
        }
        match request.mode {
            RunMode::Production => dataset.twin_files.clear(),
            RunMode::Development if matches!(dataset.twin_is_real(), Ok(None)) => dataset.files.clear(),
            RunMode::Development => {}
        }
    }
    let mut keep = vec![request.module.clone(), request.manifest.clone()];
    keep.extend(request.cache_dir.clone());
    for id in &manifest.datasets {
        // An unknown dataset fails the run later, with the module's error.
        let Ok(dataset) = catalog.dataset(id) else { continue };
        for file in dataset.files(variant) {
            keep.push(canonical(&file.path)?);
        }
    }
    Ok(Prepared { request, catalog, keep })
}

/// Compiles the requested module into the cache, checking it as a run would load it, and
/// answers with the artifact's outcome; instantiates and runs nothing.
fn compile(request: CompileRequest, limits: RunLimits, isolation: Result<(), String>) -> anyhow::Result<ExitCode> {
    if let (Err(e), true) = (&isolation, request.require_isolation) {
        anyhow::bail!("cannot confine the process: {e}");
    }
    let module = std::fs::read(&request.module).context("reading the module")?;
    let runner = Runner::new(limits, Some(request.cache_dir))?;
    let error = runner.prepare(&module).err();
    let failed = error.is_some();
    let mut out = std::io::stdout().lock();
    out.write_all(&CompileAnswer { error }.encode())?;
    out.flush()?;
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}
