//! `cargo bench -p sandbox-runner --bench runner -- CATALOG_DIR`: the runner's four figures.
//!
//! 1. a trivial run (cached module: instantiate, call, emit an empty table), median of 200;
//! 2. Arrow IPC from the host into the guest: the hostile module's `read-all` reads and decodes a
//!    large plaintext column of CATALOG_DIR's real data; bytes moved over the whole run's time;
//! 3. fuel: the same `read-all` run on a runner with fuel metering and on one without;
//! 4. the population example over CATALOG_DIR's real data vs the same SQL run directly through
//!    the policy views, and their ratio.
//!
//! Results go into ops/bench/RESULTS.md by hand, with the machine.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use sandbox_catalog::{Catalog, Variant};
use sandbox_contract::RunMode;
use sandbox_policy::{DomainSecret, PolicyContext};
use sandbox_runner::{RunLimits, RunOutcome, RunRequest, Runner};

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

struct Bench {
    catalog: Catalog,
    runtime: tokio::runtime::Runtime,
    key: sandbox_policy::PseudonymKey,
}

impl Bench {
    fn run(
        &self,
        runner: &Runner,
        example: &sandbox_examples::Example,
        params: &[(&str, &str)],
    ) -> (Duration, RunOutcome) {
        let params: Vec<(String, String)> = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let request = RunRequest {
            module: example.wasm,
            manifest: example.manifest,
            parameters: &params,
            catalog: &self.catalog,
            mode: RunMode::Production,
            key: Some(self.key.clone()),
            limits: None,
        };
        let started = Instant::now();
        let outcome = self.runtime.block_on(runner.run(request));
        assert!(outcome.record.error.is_none(), "{:?}", outcome.record.error);
        (started.elapsed(), outcome)
    }

    /// The wall time of one direct run of `sql` through the policy views, no module.
    fn direct(&self, datasets: &[&str], sql: &str) -> Duration {
        let started = Instant::now();
        let policy = PolicyContext::new(
            &self.catalog,
            datasets,
            Variant::Real,
            Some(self.key.clone()),
            RunLimits::default().policy,
        )
        .unwrap();
        self.runtime.block_on(policy.collect(sql)).unwrap();
        started.elapsed()
    }
}

/// Medians of `n` rounds of `a` then `b`, after one warm-up of each. Alternating keeps a drift
/// in the machine's speed (other tenants of the VM) from favouring either side.
fn interleaved(n: usize, mut a: impl FnMut() -> Duration, mut b: impl FnMut() -> Duration) -> (Duration, Duration) {
    a();
    b();
    let (mut times_a, mut times_b) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        times_a.push(a());
        times_b.push(b());
    }
    (median(times_a), median(times_b))
}

fn main() {
    let dir =
        std::env::args().skip(1).find(|a| !a.starts_with('-')).map(PathBuf::from).expect("usage: runner CATALOG_DIR");
    let bench = Bench {
        catalog: Catalog::open(&dir).expect("catalog"),
        runtime: tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap(),
        key: DomainSecret::from_bytes([3; 32]).licence_key("bench"),
    };
    let metered = Runner::new(RunLimits::default(), None).unwrap();
    let hostile = sandbox_examples::hostile();

    // 1. A trivial run.
    let empty = [("attack", "emit-empty")];
    bench.run(&metered, hostile, &empty);
    let trivial = median((0..200).map(|_| bench.run(&metered, hostile, &empty).0).collect());
    println!("1. trivial run (cached module), median of 200: {trivial:?}");
    let policy_context = median(
        (0..50)
            .map(|_| {
                let started = Instant::now();
                let policy = PolicyContext::new(
                    &bench.catalog,
                    &["persons"],
                    Variant::Real,
                    Some(bench.key.clone()),
                    RunLimits::default().policy,
                )
                .unwrap();
                drop(policy);
                started.elapsed()
            })
            .collect(),
    );
    println!("   of which building the policy context (views of one dataset), median of 50: {policy_context:?}");

    // 2. IPC into the guest. The month column is plaintext, so rows may leave a query as they are;
    // the hostile module decodes every batch and emits nothing.
    let read_sql = "SELECT month FROM social_insurance";
    let read = [("attack", "read-all"), ("payload", read_sql)];
    let hostile_si = sandbox_examples::Example {
        manifest: Box::leak(
            hostile
                .manifest
                .replace(r#"datasets = ["persons"]"#, r#"datasets = ["persons", "social_insurance"]"#)
                .into_boxed_str(),
        ),
        ..*hostile
    };
    let outcome = bench.run(&metered, &hostile_si, &read).1;
    let bytes = outcome.record.query_bytes;
    let (whole, direct) =
        interleaved(7, || bench.run(&metered, &hostile_si, &read).0, || bench.direct(&["social_insurance"], read_sql));
    let transfer = whole.saturating_sub(direct);
    println!(
        "2. IPC into the guest: {:.1} MB in {whole:?} (median of 7) = {:.2} GB/s over the whole run, query \
         included; the query alone, collected directly: {direct:?}; the rest, moving and decoding the \
         batches in the guest: {transfer:?} = {:.2} GB/s",
        bytes as f64 / 1e6,
        bytes as f64 / whole.as_secs_f64() / 1e9,
        bytes as f64 / transfer.as_secs_f64() / 1e9,
    );

    // 3. Fuel on and off, on the same guest-heavy run.
    let unmetered = Runner::new(RunLimits { meter_fuel: false, ..RunLimits::default() }, None).unwrap();
    let (with_fuel, without_fuel) =
        interleaved(7, || bench.run(&metered, &hostile_si, &read).0, || bench.run(&unmetered, &hostile_si, &read).0);
    println!(
        "3. fuel: read-all with fuel {with_fuel:?}, without {without_fuel:?} (medians of 7), ratio {:.3} \
         (fuel used {})",
        with_fuel.as_secs_f64() / without_fuel.as_secs_f64(),
        outcome.record.fuel_used,
    );
    drop(unmetered);

    // 4. A GROUP BY through a module vs the same SQL directly.
    let population = sandbox_examples::find("population").unwrap();
    const SQL: &str = "SELECT district,
        CASE WHEN birth_date > DATE '2025-12-31' - INTERVAL '18 years' THEN '0-17'
             WHEN birth_date > DATE '2025-12-31' - INTERVAL '35 years' THEN '18-34'
             WHEN birth_date > DATE '2025-12-31' - INTERVAL '60 years' THEN '35-59'
             ELSE '60+' END AS age_band, gender, count(*) AS residents
        FROM persons GROUP BY 1, 2, 3";
    let (module, direct) =
        interleaved(5, || bench.run(&metered, population, &[]).0, || bench.direct(&["persons"], SQL));
    println!("4. population via module: {module:?}; same SQL directly: {direct:?} (medians of 5, alternating)");
    println!("   ratio module / direct: {:.3}", module.as_secs_f64() / direct.as_secs_f64());
}
