//! The views on real (generated) Parquet and CSV: what a query actually sees, and every limit.

use std::collections::HashSet;
use std::fs::File;
use std::time::Duration;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::Int64Type;
use datafusion::arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use sandbox_catalog::{Catalog, Level, Sharing, Variant};
use sandbox_policy::{DomainSecret, ErrorKind, KeyError, PolicyConfig, PolicyContext, PolicyError, Reason};

use crate::fixture::{self, ALL};

fn secret() -> DomainSecret {
    DomainSecret::from_bytes([7; 32])
}

fn context(datasets: &[&str], config: PolicyConfig) -> PolicyContext {
    let key = secret().licence_key("licence-1");
    PolicyContext::new(fixture::catalog(), datasets, Variant::Real, Some(key), config).unwrap()
}

fn strings(batches: &[RecordBatch], column: usize) -> Vec<String> {
    batches.iter().flat_map(|b| b.column(column).as_string::<i32>().iter().map(|v| v.unwrap().to_owned())).collect()
}

fn int(batches: &[RecordBatch]) -> i64 {
    batches[0].column(0).as_primitive::<Int64Type>().value(0)
}

/// The raw values of one string column of a generated Parquet file, read without the views.
fn raw_column(dataset: &str, column: &str) -> Vec<String> {
    let ds = fixture::catalog().dataset(dataset).unwrap();
    let reader =
        ParquetRecordBatchReaderBuilder::try_new(File::open(&ds.files[0].path).unwrap()).unwrap().build().unwrap();
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let array = batch.column_by_name(column).unwrap().as_string::<i32>().clone();
        out.extend(array.iter().map(|v| v.unwrap().to_owned()));
    }
    out
}

#[tokio::test]
async fn pseudonymized_columns_show_keyed_hashes_of_the_raw_values() {
    let ctx = context(&["persons"], PolicyConfig::default());
    let seen: HashSet<String> =
        strings(&ctx.collect("SELECT citizen_id FROM persons").await.unwrap(), 0).into_iter().collect();
    let raw = raw_column("persons", "citizen_id");
    assert_eq!(seen.len(), raw.len(), "one distinct pseudonym per person");
    let key = secret().licence_key("licence-1");
    for id in &raw {
        assert!(!seen.contains(id), "a raw ID number reached the query");
        assert!(seen.contains(&key.pseudonym(id)));
    }
    // Independent of our code: HMAC-SHA256 from the hmac crate, keyed with the derived key.
    let expected = {
        use hmac::{Hmac, KeyInit, Mac};
        let mut derive = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&[7; 32]).unwrap();
        derive.update(b"sandbox pseudonym key v1\0licence-1");
        let licence_key = derive.finalize().into_bytes();
        let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&licence_key).unwrap();
        mac.update(raw[0].as_bytes());
        hex::encode(mac.finalize().into_bytes())
    };
    assert!(seen.contains(&expected));
}

#[tokio::test]
async fn pseudonyms_join_across_datasets_and_differ_between_licences() {
    let ctx = context(&["persons", "social_insurance"], PolicyConfig::default());
    let sql =
        "SELECT count(DISTINCT p.citizen_id) FROM persons p JOIN social_insurance s ON s.person_id = p.citizen_id";
    let joined = int(&ctx.collect(sql).await.unwrap());
    let insured: HashSet<String> = raw_column("social_insurance", "person_id").into_iter().collect();
    assert_eq!(joined as usize, insured.len(), "every insured person joins to the register");

    let other = PolicyContext::new(
        fixture::catalog(),
        &["persons"],
        Variant::Real,
        Some(secret().licence_key("licence-2")),
        PolicyConfig::default(),
    )
    .unwrap();
    let a: HashSet<String> =
        strings(&ctx.collect("SELECT citizen_id FROM persons").await.unwrap(), 0).into_iter().collect();
    let b: HashSet<String> =
        strings(&other.collect("SELECT citizen_id FROM persons").await.unwrap(), 0).into_iter().collect();
    assert!(a.is_disjoint(&b), "two licences cannot link their results through pseudonyms");
}

#[tokio::test]
async fn filters_on_pseudonyms_are_applied_to_pseudonyms() {
    let ctx = context(&["persons"], PolicyConfig::default());
    let raw = raw_column("persons", "citizen_id");
    let by_raw = format!("SELECT count(*) FROM persons WHERE citizen_id = '{}'", raw[0]);
    assert_eq!(int(&ctx.collect(&by_raw).await.unwrap()), 0, "a raw ID matches nothing");
    let pseudonym = secret().licence_key("licence-1").pseudonym(&raw[0]);
    let by_pseudonym = format!("SELECT count(*) FROM persons WHERE citizen_id = '{pseudonym}'");
    assert_eq!(int(&ctx.collect(&by_pseudonym).await.unwrap()), 1);
}

#[tokio::test]
async fn aggregates_match_the_files() {
    let ctx = context(ALL, PolicyConfig::default());
    let rows = |id: &str| fixture::catalog().dataset(id).unwrap().row_count(Variant::Real).unwrap().unwrap() as i64;
    for id in ALL {
        let n = int(&ctx.collect(&format!("SELECT count(*) FROM {id}")).await.unwrap());
        assert_eq!(n, rows(id), "{id}");
    }
    let districts = ctx.collect("SELECT district, count(*) AS n FROM persons GROUP BY district").await.unwrap();
    let total: i64 =
        districts.iter().map(|b| b.column(1).as_primitive::<Int64Type>().iter().flatten().sum::<i64>()).sum();
    assert_eq!(total, rows("persons"));
}

#[tokio::test]
async fn checking_needs_no_key_but_reading_pseudonyms_does() {
    let ctx =
        PolicyContext::new(fixture::catalog(), &["persons"], Variant::Real, None, PolicyConfig::default()).unwrap();
    assert!(ctx.check("SELECT citizen_id FROM persons").await.is_ok());
    assert!(ctx.collect("SELECT count(*) FROM persons").await.is_ok(), "no pseudonym read");
    let err = ctx.collect("SELECT citizen_id FROM persons").await.unwrap_err();
    assert!(matches!(err, PolicyError::QueryFailed(ref m) if m.contains("pseudonymization key not loaded")), "{err}");
    // The threshold counts units by the raw value below the view's pseudonyms: a grouped query
    // that reads no pseudonymized column computes no pseudonym, its units' either (issue 19).
    let grouped = "SELECT district, count(*) FROM persons GROUP BY district";
    assert!(ctx.check(grouped).await.unwrap().drops_small_groups);
    assert!(ctx.collect(grouped).await.is_ok(), "units counted without the key");
}

#[tokio::test]
async fn units_are_counted_exactly_as_far_as_the_threshold() {
    // Counting stops at the threshold, which is all it asks: a district of exactly n people is
    // kept at a threshold of n and dropped at n + 1, with one partition or several.
    let all = residents_by_district();
    let (district, &n) = all.iter().max_by_key(|(_, n)| **n).unwrap();
    let sql = "SELECT district, count(*) AS n FROM persons GROUP BY district";
    for partitions in [1, 4] {
        for (threshold, kept) in [(n, true), (n + 1, false)] {
            let config = PolicyConfig {
                min_group_units: threshold as usize,
                target_partitions: partitions,
                batch_size: 64,
                ..PolicyConfig::default()
            };
            let rows = pairs(&context(ALL, config).collect(sql).await.unwrap());
            assert_eq!(rows.get(district) == Some(&n), kept, "{district} at threshold {threshold}, {partitions}");
        }
    }
}

#[tokio::test]
async fn rejected_queries_do_not_run() {
    let ctx = context(&["persons"], PolicyConfig::default());
    let err = ctx.execute("SELECT mobile FROM persons").await.err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Denied);
    assert!(err.zh().contains("禁止使用"), "{}", err.zh());
}

/// The deadline is checked each time the query yields, which DataFusion does between batches:
/// small batches make the check frequent. (A hard wall-clock limit is the runner process's job.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_past_its_deadline_is_stopped() {
    let config = PolicyConfig { query_timeout: Duration::from_millis(300), batch_size: 256, ..PolicyConfig::default() };
    let ctx = context(&["persons", "utility_usage"], config);
    // 41 million pairs compared: seconds of work, in little memory.
    let started = std::time::Instant::now();
    let sql = "SELECT count(*) FROM persons a JOIN utility_usage u ON a.citizen_id <> u.household_key";
    let err = ctx.collect(sql).await.unwrap_err();
    assert!(matches!(err, PolicyError::ResourcesExhausted(ref m) if m.contains("time")), "{err}");
    assert_eq!(err.kind(), ErrorKind::ResourcesExhausted);
    assert!(started.elapsed() < Duration::from_secs(10), "stopped near the deadline: {:?}", started.elapsed());
}

#[tokio::test]
async fn a_query_over_its_memory_pool_fails_without_spilling() {
    let config = PolicyConfig { memory_limit: 64 << 10, ..PolicyConfig::default() };
    let ctx = context(&["social_insurance"], config);
    let err = ctx
        .collect("SELECT person_id, month, count(*) FROM social_insurance GROUP BY person_id, month ORDER BY 1")
        .await;
    let err = err.unwrap_err();
    assert!(matches!(err, PolicyError::ResourcesExhausted(_)), "{err}");
    // The same query fits in the default pool.
    let ctx = context(&["social_insurance"], PolicyConfig::default());
    assert!(
        ctx.collect("SELECT person_id, month, count(*) FROM social_insurance GROUP BY person_id, month").await.is_ok()
    );
}

#[tokio::test]
async fn sql_text_and_nesting_are_bounded() {
    let config = PolicyConfig { max_sql_bytes: 100, ..PolicyConfig::default() };
    let ctx = context(&["persons"], config);
    let long = format!("SELECT count(*) FROM persons WHERE citizen_id <> '{}'", "x".repeat(100));
    let err = ctx.check(&long).await.unwrap_err();
    assert!(
        matches!(err, PolicyError::Rejected(ref r) if matches!(r.reason, Reason::TooLong { limit: 100, .. })),
        "{err}"
    );
    let ctx = context(&["persons"], PolicyConfig::default());
    assert!(ctx.check("SELECT count(*) FROM persons WHERE citizen_id <> 'x'").await.is_ok());

    let nested = format!("SELECT {}1{}", "(".repeat(200), ")".repeat(200));
    let err = ctx.check(&nested).await.unwrap_err();
    assert!(matches!(err, PolicyError::Rejected(ref r) if r.reason == Reason::TooDeep { limit: 50 }), "{err}");
    let shallow = format!("SELECT {}1{}", "(".repeat(10), ")".repeat(10));
    assert!(ctx.check(&shallow).await.is_ok());
}

#[tokio::test]
async fn deep_expressions_are_refused_before_they_can_overflow_a_stack() {
    // 8 000 terms, 16 KB of SQL: an expression tree 8 000 deep, on a 2 MiB test-thread stack.
    // DataFusion's planner would overflow cloning it.
    let ctx = context(&["persons"], PolicyConfig::default());
    let too_deep = |r: &Result<_, PolicyError>| matches!(r, Err(PolicyError::Rejected(r)) if r.reason == Reason::TooDeep { limit: 200 });
    assert!(too_deep(&ctx.check(&format!("SELECT 1{} AS n", "+1".repeat(8_000))).await));
    let ors = format!("SELECT count(*) FROM persons WHERE citizen_id = '1'{}", " OR citizen_id = '1'".repeat(3_000));
    assert!(too_deep(&ctx.check(&ors).await));
    // Under the limit, the query plans and runs.
    let batches = ctx.collect(&format!("SELECT 1{} AS n", "+1".repeat(150))).await.unwrap();
    assert_eq!(int(&batches), 151);
    let ors = format!("SELECT count(*) FROM persons WHERE citizen_id = '1'{}", " OR citizen_id = '1'".repeat(150));
    assert_eq!(int(&ctx.collect(&ors).await.unwrap()), 0);
}

#[tokio::test]
async fn twins_back_the_views_in_development() {
    let key = secret().licence_key("dev:licence-1");
    let ctx = PolicyContext::new(fixture::catalog(), &["persons"], Variant::Twin, Some(key), PolicyConfig::default())
        .unwrap();
    assert_eq!(int(&ctx.collect("SELECT count(*) FROM persons").await.unwrap()), 500);
}

#[tokio::test]
async fn datasets_that_may_not_be_licensed_are_refused() {
    let mut catalog: Catalog = fixture::catalog().clone();
    let refused = |catalog: &Catalog, id: &str, variant| {
        let err = PolicyContext::new(catalog, &[id], variant, None, PolicyConfig::default()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Denied, "{err}");
        err.to_string()
    };
    assert!(refused(&catalog, "no_such_dataset", Variant::Real).contains("not in the catalog"));
    let err = PolicyContext::new(&catalog, &["persons", "persons"], Variant::Real, None, PolicyConfig::default())
        .unwrap_err();
    assert!(err.to_string().contains("listed twice"));

    catalog.datasets.iter_mut().find(|d| d.id == "persons").unwrap().sharing = Sharing::None;
    assert!(refused(&catalog, "persons", Variant::Real).contains("不予共享"));
    let ds = catalog.datasets.iter_mut().find(|d| d.id == "enterprises").unwrap();
    ds.level = Level::Core;
    assert!(refused(&catalog, "enterprises", Variant::Real).contains("core data"));
    let ds = catalog.datasets.iter_mut().find(|d| d.id == "utility_usage").unwrap();
    ds.twin_files.clear();
    assert!(refused(&catalog, "utility_usage", Variant::Twin).contains("twin"));
}

#[tokio::test]
async fn views_show_only_the_declared_columns_with_forbidden_ones_as_null() {
    let ctx = context(&["persons"], PolicyConfig::default());
    let views = ctx.views();
    let (name, schema) = &views[0];
    assert_eq!(name, "persons");
    let columns: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(
        columns,
        ["citizen_id", "name", "gender", "birth_date", "district", "hukou_type", "education", "mobile"]
    );
}

#[tokio::test]
async fn csv_datasets_are_views_too() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("clinics.toml"),
        r#"id = "clinics"
title = { zh = "诊所", en = "Clinics" }
provider = { zh = "市卫生健康委员会", en = "Municipal Health Commission" }
level = "一般"
sub_level = 1
sharing = "无条件共享"
open = "无条件开放"
update_frequency = "每年"
privacy_unit = "clinic_id"
format = "csv"
files = ["clinics.csv"]
twin_files = ["clinics_twin.csv"]

[[columns]]
name = "clinic_id"
type = "string"
constraint = "pseudonymized"
description = { zh = "编号", en = "Clinic id" }

[[columns]]
name = "district"
type = "string"
constraint = "group_by_only"
description = { zh = "区", en = "District" }

[[columns]]
name = "beds"
type = "int64"
constraint = "aggregate_only"
description = { zh = "床位", en = "Beds" }
"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("clinics.csv"), "clinic_id,district,beds\nc1,150202,10\nc2,150202,5\nc3,150203,7\n")
        .unwrap();
    std::fs::write(dir.path().join("clinics_twin.csv"), "clinic_id,district,beds\nt1,150202,4\nt2,150203,9\n").unwrap();
    let catalog = Catalog::open(dir.path()).unwrap();
    let key = || Some(secret().licence_key("l"));
    // Three clinics: under the default threshold every district group is dropped.
    let ctx = PolicyContext::new(&catalog, &["clinics"], Variant::Real, key(), PolicyConfig::default()).unwrap();
    let batches = ctx.collect("SELECT district, sum(beds) AS beds FROM clinics GROUP BY district").await.unwrap();
    assert_eq!(batches.iter().map(RecordBatch::num_rows).sum::<usize>(), 0);
    let config = PolicyConfig { min_group_units: 1, ..PolicyConfig::default() };
    let ctx = PolicyContext::new(&catalog, &["clinics"], Variant::Real, key(), config).unwrap();
    let batches = ctx
        .collect("SELECT district, sum(beds) AS beds FROM clinics GROUP BY district ORDER BY district")
        .await
        .unwrap();
    assert_eq!(strings(&batches, 0), ["150202", "150203"]);
    let beds: Vec<i64> = batches[0].column(1).as_primitive::<Int64Type>().iter().flatten().collect();
    assert_eq!(beds, [15, 7]);
    assert!(ctx.check("SELECT beds FROM clinics").await.is_err());
    let ids = strings(&ctx.collect("SELECT clinic_id FROM clinics").await.unwrap(), 0);
    assert!(ids.iter().all(|id| id.len() == 64), "pseudonyms, not c1..c3: {ids:?}");
    let config = PolicyConfig { min_group_units: 1, ..PolicyConfig::default() };
    let twin = PolicyContext::new(&catalog, &["clinics"], Variant::Twin, key(), config).unwrap();
    assert_eq!(int(&twin.collect("SELECT sum(beds) FROM clinics").await.unwrap()), 13, "the twin's own beds");
}

#[test]
fn domain_secrets_come_from_private_key_files() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pseudonym.key");
    std::fs::write(&path, format!("{}\n", "ab".repeat(32))).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let secret = DomainSecret::load(&path).unwrap();
    assert_eq!(secret, DomainSecret::from_bytes([0xab; 32]));

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(matches!(DomainSecret::load(&path), Err(KeyError::Permissions { mode: 0o644, .. })));

    std::fs::write(&path, "not hex").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(matches!(DomainSecret::load(&path), Err(KeyError::Format { found: 7, .. })));
    assert!(matches!(DomainSecret::load(&dir.path().join("missing.key")), Err(KeyError::Io { .. })));
    assert!(!format!("{secret:?}").contains("ab"), "secrets are not printed");
}

/// Residents per district, read from the file without the views.
fn residents_by_district() -> std::collections::BTreeMap<String, i64> {
    let mut counts = std::collections::BTreeMap::new();
    for d in raw_column("persons", "district") {
        *counts.entry(d).or_insert(0) += 1;
    }
    counts
}

fn pairs(batches: &[RecordBatch]) -> std::collections::BTreeMap<String, i64> {
    let keys = strings(batches, 0);
    let counts = batches.iter().flat_map(|b| b.column(1).as_primitive::<Int64Type>().values().to_vec());
    keys.into_iter().zip(counts).collect()
}

#[tokio::test]
async fn groups_keyed_by_group_by_only_values_under_the_threshold_are_dropped() {
    let config = PolicyConfig { min_group_units: 100, ..PolicyConfig::default() };
    let ctx = context(ALL, config);
    let all = residents_by_district();
    let kept: std::collections::BTreeMap<String, i64> =
        all.iter().filter(|(_, n)| **n >= 100).map(|(d, n)| (d.clone(), *n)).collect();
    assert!(kept.len() < all.len() && !kept.is_empty(), "the fixture has small and large districts: {all:?}");

    let sql = "SELECT district, count(*) AS n FROM persons GROUP BY district";
    let checked = ctx.check(sql).await.unwrap();
    assert!(checked.drops_small_groups);
    assert_eq!(pairs(&ctx.collect(sql).await.unwrap()), kept);

    // Grouping by a pseudonym as well would list who is in each group: the checker refuses it
    // (the threshold would drop each one-person group, but not the groups of a self-join keyed
    // by one side's pseudonym).
    let per_person = "SELECT citizen_id, district, gender FROM persons GROUP BY citizen_id, district, gender";
    let err = ctx.check(per_person).await.unwrap_err();
    assert!(matches!(err, PolicyError::Rejected(ref r) if matches!(r.reason, Reason::MemberKey { .. })), "{err}");
    assert!(matches!(err, PolicyError::Rejected(ref r) if r.zh().contains("GROUP BY的分组键")), "{err}");

    // SELECT DISTINCT is grouping too.
    let distinct = strings(&ctx.collect("SELECT DISTINCT district FROM persons").await.unwrap(), 0);
    assert_eq!(distinct.into_iter().collect::<std::collections::BTreeSet<_>>(), kept.keys().cloned().collect());

    // Through a CTE's SELECT *, a HAVING, and a subquery.
    let sql =
        "WITH t AS (SELECT * FROM persons) SELECT district, count(*) AS n FROM t GROUP BY district HAVING count(*) > 0";
    assert_eq!(pairs(&ctx.collect(sql).await.unwrap()), kept);
    let sql = "SELECT count(*) FROM (SELECT district FROM persons GROUP BY district) AS g";
    assert_eq!(int(&ctx.collect(sql).await.unwrap()), kept.len() as i64);
    let sql = "SELECT (SELECT count(*) FROM (SELECT district FROM persons GROUP BY district) AS g) AS districts";
    assert_eq!(int(&ctx.collect(sql).await.unwrap()), kept.len() as i64);
}

#[tokio::test]
async fn the_threshold_counts_distinct_people_not_rows() {
    // A person contributes up to twelve rows of social insurance: grouping contributions by
    // district must count people. With 12 rows a person, a row count would keep groups of one.
    let config = PolicyConfig { min_group_units: 13, ..PolicyConfig::default() };
    let ctx = context(&["persons", "social_insurance"], config);
    let sql = "SELECT p.district, count(DISTINCT p.citizen_id) AS people, count(*) AS months \
               FROM persons p JOIN social_insurance s ON s.person_id = p.citizen_id \
               WHERE p.citizen_id = (SELECT min(citizen_id) FROM persons) GROUP BY p.district";
    let rows: usize = ctx.collect(sql).await.unwrap().iter().map(RecordBatch::num_rows).sum();
    assert_eq!(rows, 0, "one person's twelve months are one unit");
    let sql = "SELECT p.district, count(DISTINCT p.citizen_id) AS people FROM persons p \
               JOIN social_insurance s ON s.person_id = p.citizen_id GROUP BY p.district";
    let batches = ctx.collect(sql).await.unwrap();
    assert!(batches.iter().flat_map(|b| b.column(1).as_primitive::<Int64Type>().values().to_vec()).all(|n| n >= 13));
}

#[tokio::test]
async fn groups_by_other_keys_and_unions_keep_their_meaning() {
    let config = PolicyConfig { min_group_units: 100, ..PolicyConfig::default() };
    let ctx = context(ALL, config);
    // No group_by_only key: nothing is dropped, even groups of one firm.
    let sql = "SELECT status, count(*) AS n FROM enterprises GROUP BY status";
    assert!(!ctx.check(sql).await.unwrap().drops_small_groups);
    let statuses = pairs(&ctx.collect(sql).await.unwrap());
    assert_eq!(statuses.values().sum::<i64>(), 200);

    // A union of two datasets: each group needs enough units of each.
    let sql = "SELECT district, count(*) AS n FROM (SELECT district FROM persons UNION ALL SELECT district FROM utility_usage) AS t GROUP BY district";
    let groups = pairs(&ctx.collect(sql).await.unwrap());
    let residents = residents_by_district();
    for district in groups.keys() {
        assert!(residents[district] >= 100, "{district}");
    }
    assert!(!groups.is_empty());

    // ROLLUP: the grand total row survives with every district's rows behind it.
    let sql = "SELECT district, count(*) AS n FROM persons GROUP BY ROLLUP (district)";
    let batches = ctx.collect(sql).await.unwrap();
    let total: i64 = batches
        .iter()
        .flat_map(|b| {
            let keys = b.column(0).clone();
            let counts = b.column(1).as_primitive::<Int64Type>().clone();
            (0..b.num_rows()).filter(move |&i| keys.is_null(i)).map(move |i| counts.value(i))
        })
        .sum();
    assert_eq!(total, 3_000);
}

#[tokio::test]
async fn distinct_on_a_group_by_only_key_is_refused() {
    let ctx = context(&["persons"], PolicyConfig::default());
    let err = ctx.check("SELECT DISTINCT ON (district) citizen_id FROM persons ORDER BY district").await.unwrap_err();
    assert!(matches!(err, PolicyError::Rejected(ref r) if matches!(r.reason, Reason::SmallGroups(_))), "{err}");
}

/// Rows of a result, and how many values of column `column` are not NULL.
async fn shape(ctx: &PolicyContext, sql: &str, column: usize) -> (usize, usize) {
    let batches = ctx.collect(sql).await.unwrap();
    let rows = batches.iter().map(RecordBatch::num_rows).sum();
    let values = batches.iter().map(|b| b.num_rows() - b.column(column).null_count()).sum();
    (rows, values)
}

#[tokio::test]
async fn aggregates_of_aggregate_only_values_need_enough_units_behind_them() {
    let ctx = context(&["persons", "social_insurance", "enterprises"], PolicyConfig::default());
    let open =
        context(&["persons", "social_insurance"], PolicyConfig { min_group_units: 1, ..PolicyConfig::default() });
    // One person's total is that person's value: each per-person total is NULL. (With a
    // threshold of one, the control, they are all there.)
    let per_person = "SELECT person_id, sum(amount) AS total FROM social_insurance GROUP BY person_id";
    let (people, totals) = shape(&ctx, per_person, 1).await;
    assert!(people > 100 && totals == 0, "{people} people, {totals} totals");
    assert_eq!(shape(&open, per_person, 1).await, (people, people));
    let one = "SELECT sum(amount) AS total FROM social_insurance WHERE person_id = (SELECT min(person_id) FROM social_insurance)";
    assert_eq!(shape(&ctx, one, 0).await, (1, 0));
    // Counting rows per person uses no aggregate_only value.
    assert_eq!(
        shape(&ctx, "SELECT person_id, count(*) AS months FROM social_insurance GROUP BY person_id", 1).await,
        (people, people)
    );
    // Over everyone, the statistic is released.
    assert_eq!(
        shape(&ctx, "SELECT sum(amount) AS total, avg(contribution_base) AS base FROM social_insurance", 0).await,
        (1, 1)
    );
    // A FILTER that keeps one person makes the aggregate that person's value, whatever the group;
    // a FILTER on a grouping by district would place one person. The checker refuses both
    // (an identifier in a FILTER counts like one in the arguments), whatever the threshold.
    let one = "SELECT month, sum(amount) FILTER (WHERE person_id = (SELECT min(person_id) FROM social_insurance)) AS x \
               FROM social_insurance GROUP BY month";
    let placed = "SELECT district, count(*) FILTER (WHERE citizen_id = (SELECT min(citizen_id) FROM persons)) AS x \
                  FROM persons GROUP BY district";
    for ctx in [&ctx, &open] {
        let err = ctx.check(one).await.unwrap_err();
        assert!(
            matches!(err, PolicyError::Rejected(ref r) if matches!(r.reason, Reason::IdentifiedFilter { .. })),
            "{err}"
        );
        let err = ctx.check(placed).await.unwrap_err();
        assert!(
            matches!(err, PolicyError::Rejected(ref r) if matches!(r.reason, Reason::GroupMembersFilter { .. })),
            "{err}"
        );
    }
    // A small FILTERed cell is nulled; the row and its other cells stay.
    let sql = "SELECT industry, count(*) FILTER (WHERE established < DATE '1992-01-01') AS oldest, \
               avg(registered_capital) AS capital FROM enterprises GROUP BY industry";
    let (industries, oldest) = shape(&ctx, sql, 1).await;
    assert_eq!(shape(&ctx, sql, 2).await, (industries, industries), "every kept industry has its capital");
    assert!(oldest < industries, "few firms are that old: {oldest} of {industries}");
    // Industries with fewer than ten firms lose their rows (industry is a group_by_only key).
    let sql =
        "SELECT industry, count(*) AS firms, sum(registered_capital) AS capital FROM enterprises GROUP BY industry";
    let batches = ctx.collect(sql).await.unwrap();
    let firms: Vec<i64> =
        batches.iter().flat_map(|b| b.column(1).as_primitive::<Int64Type>().values().to_vec()).collect();
    assert!(!firms.is_empty() && firms.iter().all(|&n| n >= 10), "{firms:?}");
}

/// The red team's second round: small groups reached through subqueries inside aggregates, and
/// through DISTINCT ON.
#[tokio::test]
async fn small_groups_do_not_survive_inside_aggregates_or_distinct_on() {
    let ctx = context(&["persons", "social_insurance"], PolicyConfig::default());
    let inside = "SELECT gender, count(*) AS n, max((SELECT sum(amount) FROM social_insurance \
                  WHERE person_id = (SELECT min(person_id) FROM social_insurance))) AS x FROM persons GROUP BY gender";
    let (genders, values) = shape(&ctx, inside, 2).await;
    assert!(genders == 2 && values == 0, "{genders} {values}");
    // Where the list of people comes out under a grouping by gender, the checker refuses it
    // (member lists). Grouping by pseudonym and district is itself a member list: the checker
    // refuses it under any key, and after DISTINCT ON too.
    let refused = |err: PolicyError, member_key: bool| {
        let matched = match &err {
            PolicyError::Rejected(r) if member_key => matches!(r.reason, Reason::MemberKey { .. }),
            PolicyError::Rejected(r) => matches!(r.reason, Reason::GroupMembers { .. }),
            _ => false,
        };
        assert!(matched, "{err}");
    };
    let listed = "SELECT gender, max((SELECT string_agg(citizen_id || ':' || n, ',') FROM (SELECT citizen_id, \
                  CAST(count(*) AS VARCHAR) AS n FROM persons GROUP BY citizen_id) u)) AS x FROM persons GROUP BY gender";
    refused(ctx.check(listed).await.unwrap_err(), false);
    let listed = "SELECT (SELECT string_agg(citizen_id || ':' || n, ',') FROM (SELECT citizen_id, \
                  CAST(count(*) AS VARCHAR) AS n FROM persons GROUP BY citizen_id, district) u) AS x";
    refused(ctx.check(listed).await.unwrap_err(), true);
    let distinct_on = "SELECT citizen_id, d FROM (SELECT DISTINCT ON (citizen_id) citizen_id, district AS d FROM persons) t \
                       GROUP BY citizen_id, d";
    refused(ctx.check(distinct_on).await.unwrap_err(), true);
    let months = "SELECT person_id, month, sum(a) AS total FROM (SELECT DISTINCT ON (person_id, month) person_id, month, \
                  amount AS a FROM social_insurance) t GROUP BY person_id, month";
    assert_eq!(shape(&ctx, months, 2).await.1, 0);
}

/// The red team's wrong refusals: grouping() under the threshold, and memory for unit counts.
#[tokio::test]
async fn legitimate_statistics_run_under_the_threshold() {
    let ctx = context(&["social_insurance", "utility_usage"], PolicyConfig::default());
    let rollup = "SELECT month, grouping(month) AS total_row, sum(amount) AS total FROM social_insurance GROUP BY ROLLUP (month)";
    assert_eq!(shape(&ctx, rollup, 2).await, (13, 13));
    let residuals = "WITH g AS (SELECT district, month, sum(electricity_kwh) AS e, count(*) AS n FROM utility_usage \
                     GROUP BY district, month), d AS (SELECT district, avg(e / n) AS de FROM g GROUP BY district) \
                     SELECT g.district, g.month, g.e / g.n - d.de AS residual FROM g JOIN d ON g.district = d.district";
    let (cells, residuals) = shape(&ctx, residuals, 2).await;
    assert!(cells > 50 && residuals == cells, "{cells} {residuals}");
}
