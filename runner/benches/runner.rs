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
use sandbox_policy::{DomainSecret, PolicyContext};
use sandbox_runner::{RunLimits, RunMode, RunOutcome, RunRequest, Runner};

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

    /// Median wall time of `n` runs after one warm-up, and the last outcome.
    fn median_of(
        &self,
        n: usize,
        runner: &Runner,
        example: &sandbox_examples::Example,
        params: &[(&str, &str)],
    ) -> (Duration, RunOutcome) {
        let mut last = self.run(runner, example, params).1;
        let mut times = Vec::with_capacity(n);
        for _ in 0..n {
            let (time, outcome) = self.run(runner, example, params);
            times.push(time);
            last = outcome;
        }
        (median(times), last)
    }

    /// Median wall time of `n` direct runs of `sql` through the policy views, no module.
    fn direct(&self, n: usize, datasets: &[&str], sql: &str) -> Duration {
        let once = || {
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
        };
        once();
        median((0..n).map(|_| once()).collect())
    }
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
    let (trivial, _) = bench.median_of(200, &metered, hostile, &[("attack", "emit-empty")]);
    println!("1. trivial run (cached module), median of 200: {trivial:?}");

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
    let (with_fuel, outcome) = bench.median_of(3, &metered, &hostile_si, &read);
    let bytes = outcome.record.query_bytes;
    let direct = bench.direct(3, &["social_insurance"], read_sql);
    println!(
        "2. IPC into the guest: {:.1} MB in {with_fuel:?} (median of 3) = {:.2} GB/s over the whole run, \
         query included (the query alone, collected directly: {direct:?})",
        bytes as f64 / 1e6,
        bytes as f64 / with_fuel.as_secs_f64() / 1e9,
    );

    // 3. Fuel on and off, on the same guest-heavy run.
    let unmetered = Runner::new(RunLimits { meter_fuel: false, ..RunLimits::default() }, None).unwrap();
    let (without_fuel, _) = bench.median_of(3, &unmetered, &hostile_si, &read);
    println!(
        "3. fuel: read-all with fuel {with_fuel:?}, without {without_fuel:?}, ratio {:.3} (fuel used {})",
        with_fuel.as_secs_f64() / without_fuel.as_secs_f64(),
        outcome.record.fuel_used,
    );
    drop(unmetered);

    // 4. A GROUP BY through a module vs the same SQL directly.
    let population = sandbox_examples::find("population").unwrap();
    let (module, _) = bench.median_of(5, &metered, population, &[]);
    let sql = "SELECT district,
        CASE WHEN birth_date > DATE '2025-12-31' - INTERVAL '18 years' THEN '0-17'
             WHEN birth_date > DATE '2025-12-31' - INTERVAL '35 years' THEN '18-34'
             WHEN birth_date > DATE '2025-12-31' - INTERVAL '60 years' THEN '35-59'
             ELSE '60+' END AS age_band, gender, count(*) AS residents
        FROM persons GROUP BY 1, 2, 3";
    let direct = bench.direct(5, &["persons"], sql);
    println!("4. population via module, median of 5: {module:?}; same SQL directly: {direct:?}");
    println!("   ratio module / direct: {:.3}", module.as_secs_f64() / direct.as_secs_f64());
}
