//! `/metrics` in the Prometheus text format (prometheus-client).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

pub(crate) struct Metrics {
    registry: Registry,
    /// Calls by RPC and gRPC status code.
    pub(crate) calls: Family<Labels, Counter>,
    /// Runs that ended, by final status.
    pub(crate) runs: Family<Labels, Counter>,
    pub(crate) queued: Gauge,
    pub(crate) running: Gauge,
    pub(crate) log_size: Gauge,
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        let mut registry = Registry::with_prefix("sandbox");
        let calls = Family::<Labels, Counter>::default();
        let runs = Family::<Labels, Counter>::default();
        let (queued, running, log_size) = (Gauge::default(), Gauge::default(), Gauge::default());
        registry.register("calls", "gRPC calls by method and status code", calls.clone());
        registry.register("runs_ended", "Runs that ended, by status", runs.clone());
        registry.register("runs_queued", "Runs waiting for a runner", queued.clone());
        registry.register("runs_running", "Runs in a runner process or in the audit", running.clone());
        registry.register("log_entries", "Entries in the transparency log", log_size.clone());
        Metrics { registry, calls, runs, queued, running, log_size }
    }

    /// A call answered with `code`, a gRPC code's name (`Ok`, `PermissionDenied`, …).
    pub(crate) fn call(&self, rpc: &str, code: &str) {
        self.calls.get_or_create(&vec![("method", rpc.to_owned()), ("code", code.to_owned())]).inc();
    }

    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
