//! The four example modules on the generated twins (and real data, in production mode).

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use sandbox_catalog::Variant;
use sandbox_contract::RunMode;
use sandbox_policy::PolicyContext;

use crate::fixture::{Run, catalog, code, key, log, runtime};

fn example(name: &str) -> &'static sandbox_examples::Example {
    sandbox_examples::find(name).unwrap()
}

#[test]
fn population_equals_the_same_query_run_directly() {
    let ex = example("population");
    let outcome = Run::new(ex.wasm, ex.manifest).go();
    assert_eq!(code(&outcome), "ok", "{}", log(&outcome));
    let table = &outcome.tables[0];
    assert_eq!(table.name, "population");
    let names: Vec<&str> = table.schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ["district", "age_band", "gender", "residents"]);

    // The module's SQL, straight through the policy views: the same groups and counts.
    let policy = PolicyContext::new(catalog(), &["persons"], Variant::Twin, Some(key()), Default::default()).unwrap();
    let sql = "SELECT count(*) AS n FROM (SELECT district,
            CASE WHEN birth_date > DATE '2025-12-31' - INTERVAL '18 years' THEN '0-17'
                 WHEN birth_date > DATE '2025-12-31' - INTERVAL '35 years' THEN '18-34'
                 WHEN birth_date > DATE '2025-12-31' - INTERVAL '60 years' THEN '35-59'
                 ELSE '60+' END AS age_band, gender, count(*) AS residents
            FROM persons GROUP BY 1, 2, 3) t";
    let direct = runtime().block_on(policy.collect(sql)).unwrap();
    let groups = direct[0].column(0).as_primitive::<Int64Type>().value(0);
    assert_eq!(table.batch.num_rows() as i64, groups);
    let residents = table.batch.column(3).as_primitive::<Int64Type>();
    assert!(residents.iter().all(|r| r.unwrap() >= 10), "groups under the threshold are dropped");
    assert_eq!(outcome.record.queries, 1);
    assert!(outcome.record.fuel_used > 0);
}

#[test]
fn every_example_runs_on_the_twins() {
    for ex in sandbox_examples::examples() {
        let outcome = Run::new(ex.wasm, ex.manifest).go();
        assert_eq!(code(&outcome), "ok", "{}: {}", ex.name, log(&outcome));
        for table in &outcome.tables {
            assert!(table.batch.num_rows() > 0, "{}: {} is empty", ex.name, table.name);
        }
    }
}

#[test]
fn same_inputs_give_byte_identical_outputs() {
    for name in ["population", "electricity-model"] {
        let ex = example(name);
        let a = Run::new(ex.wasm, ex.manifest).go();
        let b = Run::new(ex.wasm, ex.manifest).go();
        assert_eq!(code(&a), "ok");
        assert_eq!(a.tables[0].sha256, b.tables[0].sha256, "{name}");
        assert_eq!(a.tables[0].ipc, b.tables[0].ipc);
        assert_eq!(a.record.fuel_used, b.record.fuel_used, "{name}: fuel is deterministic too");
    }
}

#[test]
fn parameters_change_results_and_bad_ones_are_refused() {
    let ex = example("contributions");
    let june = Run::new(ex.wasm, ex.manifest).go();
    let march = Run::new(ex.wasm, ex.manifest).param("month", "2025-03").go();
    assert_eq!(code(&june), "ok");
    assert_eq!(june.record.parameters, [("month".to_owned(), "2025-06".to_owned())]);
    assert_ne!(june.tables[0].sha256, march.tables[0].sha256);
    // The manifest bounds the text; the module checks its form.
    assert_eq!(code(&Run::new(ex.wasm, ex.manifest).param("month", "2025-13").go()), "host:invalid-parameter");

    for (name, value) in [("month", "2025-006"), ("colour", "red"), ("year", "2025")] {
        let outcome = Run::new(ex.wasm, ex.manifest).param(name, value).go();
        assert_eq!(code(&outcome), "invalid-manifest", "{name}={value}");
        assert_eq!(outcome.record.fuel_used, 0, "nothing ran");
    }
}

#[test]
fn the_model_reports_n_and_residual_degrees_of_freedom() {
    let ex = example("electricity-model");
    let outcome = Run::new(ex.wasm, ex.manifest).go();
    assert_eq!(code(&outcome), "ok", "{}", log(&outcome));
    let batch = &outcome.tables[0].batch;
    let terms = batch.column(0).as_string::<i32>();
    assert!(terms.iter().any(|t| t == Some("intercept")));
    let n = batch.column(2).as_primitive::<Int64Type>().value(0);
    let df = batch.column(3).as_primitive::<Int64Type>().value(0);
    assert_eq!(df, n - batch.num_rows() as i64, "residual df = n - number of coefficients");

    // n is the number of readings (household-months with a value) in cells that passed the
    // threshold: what the host counts when it fits the model itself.
    let policy =
        PolicyContext::new(catalog(), &["utility_usage"], Variant::Twin, Some(key()), Default::default()).unwrap();
    let sql = "SELECT sum(households) AS n FROM (SELECT district, month, count(electricity_kwh) AS households, \
               sum(electricity_kwh) AS kwh FROM utility_usage WHERE month >= '2025-01' AND month <= '2025-12' \
               GROUP BY district, month) t WHERE kwh IS NOT NULL";
    let direct = runtime().block_on(policy.collect(sql)).unwrap();
    assert_eq!(direct[0].column(0).as_primitive::<Int64Type>().value(0), n);
}

#[test]
fn production_runs_read_real_data_and_keep_no_log() {
    let ex = example("population");
    let dev = Run::new(ex.wasm, ex.manifest).go();
    let prod = Run::new(ex.wasm, ex.manifest).production().go();
    assert_eq!(code(&prod), "ok");
    assert_eq!(prod.record.mode, RunMode::Production);
    assert!(prod.dev_log.is_none());
    assert!(dev.dev_log.is_some());
    assert_ne!(dev.tables[0].sha256, prod.tables[0].sha256, "twins and real data differ");
}
