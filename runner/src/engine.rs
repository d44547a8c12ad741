//! The shared wasmtime engine: its configuration, the epoch ticker, and modules compiled once and
//! kept by SHA-256.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::host::{AnalysisPre, HostState};
use crate::limits::RunLimits;
use sandbox_contract::run::RunError;

/// How often the epoch advances; wall-clock limits are counted in these ticks.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Interface prefixes a module may import. Everything else — `wasi:sockets`, `wasi:http`, any
/// other package — is refused at load with the import's name.
const ALLOWED_IMPORTS: &[&str] =
    &["sandbox:analysis/", "wasi:cli/", "wasi:clocks/", "wasi:filesystem/", "wasi:io/", "wasi:random/"];

/// A compiled module, ready to instantiate.
#[derive(Clone)]
pub(crate) struct Loaded {
    bytes: Arc<[u8]>,
    pub(crate) sha256: [u8; 32],
    pub(crate) pre: Arc<AnalysisPre<HostState>>,
}

/// Compiles and keeps modules, and runs them (see `run.rs`). One per process; cheap to share.
pub struct Runner {
    pub(crate) engine: Engine,
    linker: Linker<HostState>,
    /// Compiled modules, found by their exact bytes: by length, then compared byte for byte. A
    /// comparison costs a fraction of the SHA-256 that names a module (for 2 MB, about 0.2 ms
    /// against 1.5 ms), and a cached run must cost well under a millisecond.
    modules: Mutex<HashMap<usize, Vec<Loaded>>>,
    cache_dir: Option<PathBuf>,
    pub(crate) limits: RunLimits,
    _ticker: EpochTicker,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner").field("limits", &self.limits).field("cache_dir", &self.cache_dir).finish()
    }
}

/// A thread that advances the engine's epoch every [`EPOCH_TICK`] until dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: &Engine) -> EpochTicker {
        let stop = Arc::new(AtomicBool::new(false));
        let engine = engine.clone();
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("epoch-ticker".to_owned())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .expect("cannot start the epoch thread");
        EpochTicker { stop, thread: Some(thread) }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The engine configuration: deterministic execution, interruptible, bounded.
fn config(limits: &RunLimits) -> Config {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .consume_fuel(limits.meter_fuel)
        .epoch_interruption(true)
        .max_wasm_stack(1 << 20)
        // Without the `threads` feature there are no threads or shared memories to turn off.
        // Host calls run on the fiber too (lightly: queries run on the runtime's threads).
        .async_stack_size(4 << 20)
        .cranelift_nan_canonicalization(true)
        .wasm_shared_everything_threads(false)
        .shared_memory(false)
        .wasm_relaxed_simd(false)
        .relaxed_simd_deterministic(true);

    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(16)
        .total_core_instances(16 * 32)
        .total_memories(16 * 8)
        .total_tables(16 * 32)
        .total_stacks(16)
        .max_memory_size(limits.memory_bytes)
        .table_elements(limits.table_elements.max(20_000))
        .max_core_instances_per_component(limits.instances as u32)
        .max_memories_per_component(limits.memories as u32)
        .max_tables_per_component(limits.tables as u32);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}

impl Runner {
    /// A runner with its own engine. With `cache_dir`, compiled modules are also kept on disk,
    /// by module SHA-256 and the engine's compatibility hash, for the next process.
    pub fn new(limits: RunLimits, cache_dir: Option<PathBuf>) -> Result<Runner, RunError> {
        let engine = Engine::new(&config(&limits)).map_err(|e| RunError::internal(format!("engine: {e}")))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| RunError::internal(e.to_string()))?;
        crate::host::Analysis::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |state| state)
            .map_err(|e| RunError::internal(e.to_string()))?;
        let ticker = EpochTicker::start(&engine);
        Ok(Runner { engine, linker, modules: Mutex::default(), cache_dir, limits, _ticker: ticker })
    }

    /// The limits runs get.
    pub fn limits(&self) -> &RunLimits {
        &self.limits
    }

    /// Compiles `wasm` (into the cache folder, if this runner has one) and checks it as a run
    /// would load it — imports, exports, linking — without instantiating it.
    pub fn prepare(&self, wasm: &[u8]) -> Result<(), RunError> {
        self.load(wasm).map(|_| ())
    }

    /// Compiles `wasm` (or finds it compiled), checks its imports and exports, and prepares it
    /// for instantiation.
    pub(crate) fn load(&self, wasm: &[u8]) -> Result<Loaded, RunError> {
        let cached = self
            .modules
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&wasm.len())
            .and_then(|same_length| same_length.iter().find(|loaded| *loaded.bytes == *wasm).cloned());
        if let Some(loaded) = cached {
            return Ok(loaded);
        }
        let hash: [u8; 32] = Sha256::digest(wasm).into();
        let component = self.compile(wasm, &hash)?;
        check_imports(&self.engine, &component)?;
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| RunError::invalid_module(format!("cannot link the module: {e}")))?;
        let pre = AnalysisPre::new(instance_pre).map_err(|e| {
            RunError::invalid_module(format!("the module does not export the sandbox:analysis world: {e}"))
        })?;
        let loaded = Loaded { bytes: Arc::from(wasm), sha256: hash, pre: Arc::new(pre) };
        self.modules.lock().unwrap_or_else(|e| e.into_inner()).entry(wasm.len()).or_default().push(loaded.clone());
        Ok(loaded)
    }

    fn compile(&self, wasm: &[u8], hash: &[u8; 32]) -> Result<Component, RunError> {
        if wasm.starts_with(b"\0asm") && wasm.get(4..8) == Some(&[1, 0, 0, 0]) {
            return Err(RunError::invalid_module(
                "this is a core WebAssembly module; build a component (cargo build --target wasm32-wasip2)".to_owned(),
            ));
        }
        let Some(dir) = &self.cache_dir else {
            return Component::new(&self.engine, wasm).map_err(refused_at_compile);
        };
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut hasher);
        let path = dir.join(format!("{}-{:016x}.cwasm", hex::encode(hash), hasher.finish()));
        if path.exists() {
            // SAFETY: files in the cache directory are written only by `Component::serialize`
            // below, by a runner: the server's are `sandbox-runner --compile` processes, which
            // never run a module, while the processes that do run one see every file system
            // read-only. The name carries the source's SHA-256 and the engine's compatibility
            // hash, and wasmtime checks the header again. Guests have no file system at all.
            #[allow(unsafe_code)]
            if let Ok(component) = unsafe { Component::deserialize_file(&self.engine, &path) } {
                return Ok(component);
            }
        }
        let component = Component::new(&self.engine, wasm).map_err(refused_at_compile)?;
        if let Ok(bytes) = component.serialize() {
            // Write then rename, so a reader never sees half a file.
            let tmp = path.with_extension(format!("tmp{}", std::process::id()));
            if std::fs::create_dir_all(dir).is_ok() && std::fs::write(&tmp, bytes).is_ok() {
                let _ = std::fs::rename(&tmp, &path);
            }
        }
        Ok(component)
    }
}

/// Why a module does not compile. The pooling allocator checks declared minimum sizes when the
/// module is compiled, so a module asking for a 4 GiB memory or a huge table is refused here,
/// before anything is allocated, and gets the code of the limit it asked past.
fn refused_at_compile(err: wasmtime::Error) -> RunError {
    let outer = err.to_string();
    if outer.starts_with("module memory does not fit") {
        RunError::MemoryLimit
    } else if outer.starts_with("module table does not fit") || outer.contains("instance size does not fit") {
        RunError::ResourceLimit
    } else {
        RunError::invalid_module(format!("{err:#}"))
    }
}

/// Refuses a module importing anything outside [`ALLOWED_IMPORTS`], naming the import.
fn check_imports(engine: &Engine, component: &Component) -> Result<(), RunError> {
    let ty = component.component_type();
    let mut refused = Vec::new();
    for (name, item) in ty.imports(engine) {
        let allowed = matches!(item.ty, ComponentItem::ComponentInstance(_))
            && ALLOWED_IMPORTS.iter().any(|prefix| name.starts_with(prefix));
        if !allowed {
            refused.push(name.to_owned());
        }
    }
    if refused.is_empty() { Ok(()) } else { Err(RunError::forbidden_import(refused)) }
}
