//! The limits of one run, and the store's resource limiter that enforces the memory and table
//! ones and remembers which was hit.

use std::time::Duration;

use sandbox_policy::PolicyConfig;

/// What one run may use. Defaults follow DESIGN.md section 3 and the runner issue.
#[derive(Debug, Clone)]
pub struct RunLimits {
    /// Fuel: a deterministic budget of wasm instructions.
    pub fuel: u64,
    /// Whether fuel is counted at all. An engine setting: a runner's own limits decide it, a
    /// run's cannot. Off only to measure what metering costs (the runner benchmark); without it
    /// a run is bounded by wall time alone and `fuel_used` is 0.
    pub meter_fuel: bool,
    /// Wall-clock time for the whole run, host calls included.
    pub wall_time: Duration,
    /// Linear memory of the guest.
    pub memory_bytes: usize,
    /// Elements of any one table.
    pub table_elements: usize,
    pub instances: usize,
    pub tables: usize,
    pub memories: usize,
    /// The most bytes of IPC one `next` returns.
    pub chunk_bytes: usize,
    /// The most bytes one `append` or `begin` accepts.
    pub append_bytes: usize,
    /// Query results open at once.
    pub live_queries: usize,
    /// Rows and IPC bytes over all output tables.
    pub output_rows: u64,
    pub output_bytes: u64,
    /// The development log.
    pub dev_log_bytes: usize,
    /// The memory pool, timeout and SQL limits of each query, and the threshold.
    pub policy: PolicyConfig,
}

impl Default for RunLimits {
    fn default() -> Self {
        RunLimits {
            fuel: 50_000_000_000,
            meter_fuel: true,
            wall_time: Duration::from_secs(300),
            memory_bytes: 256 << 20,
            table_elements: 100_000,
            instances: 32,
            tables: 32,
            memories: 8,
            chunk_bytes: 16 << 20,
            append_bytes: 16 << 20,
            live_queries: 16,
            output_rows: 1_000_000,
            output_bytes: sandbox_contract::run::DEFAULT_OUTPUT_BYTES,
            dev_log_bytes: 1 << 20,
            // One partition: sums of floating-point values then always add in the same order, so
            // the same inputs give byte-identical outputs.
            policy: PolicyConfig { target_partitions: 1, ..PolicyConfig::default() },
        }
    }
}

/// Which limit of the store refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LimitHit {
    Memory,
    Table,
}

/// Enforces the memory and table limits and records the peak memory and what was refused.
#[derive(Debug)]
pub(crate) struct Limiter {
    pub(crate) memory_bytes: usize,
    pub(crate) table_elements: usize,
    pub(crate) instances: usize,
    pub(crate) tables: usize,
    pub(crate) memories: usize,
    pub(crate) peak_memory: usize,
    pub(crate) hit: Option<LimitHit>,
}

impl Limiter {
    pub(crate) fn new(limits: &RunLimits) -> Limiter {
        Limiter {
            memory_bytes: limits.memory_bytes,
            table_elements: limits.table_elements,
            instances: limits.instances,
            tables: limits.tables,
            memories: limits.memories,
            peak_memory: 0,
            hit: None,
        }
    }
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            self.hit.get_or_insert(LimitHit::Memory);
            return Ok(false);
        }
        self.peak_memory = self.peak_memory.max(desired);
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.table_elements {
            self.hit.get_or_insert(LimitHit::Table);
            return Ok(false);
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        self.instances
    }

    fn tables(&self) -> usize {
        self.tables
    }

    fn memories(&self) -> usize {
        self.memories
    }
}
