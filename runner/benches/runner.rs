//! `cargo bench -p sandbox-runner --bench runner -- CATALOG_DIR`: the runner's figures.
//!
//! 1. a trivial run (cached module: instantiate, call, emit an empty table), median of 200;
//! 2. the population example over CATALOG_DIR's real data vs the same SQL run directly through
//!    the policy views, median of 5 each, and their ratio.
//!
//! Results go into ops/bench/RESULTS.md by hand, with the machine.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use sandbox_catalog::{Catalog, Variant};
use sandbox_policy::{DomainSecret, PolicyContext};
use sandbox_runner::{RunLimits, RunMode, RunRequest, Runner};

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn main() {
    let dir =
        std::env::args().skip(1).find(|a| !a.starts_with('-')).map(PathBuf::from).expect("usage: runner CATALOG_DIR");
    let catalog = Catalog::open(&dir).expect("catalog");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let runner = Runner::new(RunLimits::default(), None).unwrap();
    let key = DomainSecret::from_bytes([3; 32]).licence_key("bench");
    let run = |wasm: &[u8], manifest: &str, params: &[(String, String)], mode| {
        let request = RunRequest {
            module: wasm,
            manifest,
            parameters: params,
            catalog: &catalog,
            mode,
            key: Some(key.clone()),
            limits: None,
        };
        let started = Instant::now();
        let outcome = runtime.block_on(runner.run(request));
        assert!(outcome.record.error.is_none(), "{:?}", outcome.record.error);
        (started.elapsed(), outcome)
    };

    let hostile = sandbox_examples::hostile();
    let params = [("attack".to_owned(), "emit-empty".to_owned())];
    run(hostile.wasm, hostile.manifest, &params, RunMode::Development);
    let times: Vec<Duration> =
        (0..200).map(|_| run(hostile.wasm, hostile.manifest, &params, RunMode::Development).0).collect();
    println!("trivial run (cached module), median of 200: {:?}", median(times));

    let population = sandbox_examples::find("population").unwrap();
    run(population.wasm, population.manifest, &[], RunMode::Production);
    let module: Vec<Duration> =
        (0..5).map(|_| run(population.wasm, population.manifest, &[], RunMode::Production).0).collect();
    let sql = "SELECT district,
        CASE WHEN birth_date > DATE '2025-12-31' - INTERVAL '18 years' THEN '0-17'
             WHEN birth_date > DATE '2025-12-31' - INTERVAL '35 years' THEN '18-34'
             WHEN birth_date > DATE '2025-12-31' - INTERVAL '60 years' THEN '35-59'
             ELSE '60+' END AS age_band, gender, count(*) AS residents
        FROM persons GROUP BY 1, 2, 3";
    let direct: Vec<Duration> = (0..5)
        .map(|_| {
            let started = Instant::now();
            let policy = PolicyContext::new(
                &catalog,
                &["persons"],
                Variant::Real,
                Some(key.clone()),
                RunLimits::default().policy,
            )
            .unwrap();
            runtime.block_on(policy.collect(sql)).unwrap();
            started.elapsed()
        })
        .collect();
    let (m, d) = (median(module), median(direct));
    println!("population via module, median of 5: {m:?}");
    println!("same SQL directly, median of 5:     {d:?}");
    println!("ratio module / direct: {:.3}", m.as_secs_f64() / d.as_secs_f64());
}
