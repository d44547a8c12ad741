//! `classify` when it runs: its labels and band indexes, exactly at the edges and for NULLs; the
//! threshold on groups keyed by a published classification; and the checker's judgment of
//! grains and edges a catalog does not publish, on a catalog of its own.

use std::collections::BTreeMap;
use std::fs::File;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{Date32Type, Decimal128Type, Int64Type};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::temporal_conversions::date32_to_datetime;
use datafusion::prelude::SessionContext;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use sandbox_catalog::{Catalog, Grain, Variant};
use sandbox_policy::{
    Classes, DomainSecret, PolicyConfig, PolicyContext, PolicyError, Reason, RestrictedKeys, classify_udf,
};

use crate::fixture;

fn context(datasets: &[&str], config: PolicyConfig) -> PolicyContext {
    let key = DomainSecret::from_bytes([7; 32]).licence_key("licence-1");
    PolicyContext::new(fixture::catalog(), datasets, Variant::Real, Some(key), config).unwrap()
}

/// A session with nothing but `classify`, as the output audit's trusted session may hold it.
fn trusted() -> SessionContext {
    let ctx = SessionContext::new();
    ctx.register_udf(classify_udf());
    ctx
}

/// Every value of the first column, as text (`NULL` for a null).
async fn column(ctx: &SessionContext, sql: &str) -> Vec<String> {
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    let mut out = Vec::new();
    for b in &batches {
        let a = b.column(0);
        for i in 0..a.len() {
            out.push(match a.is_null(i) {
                true => "NULL".to_owned(),
                false => datafusion::arrow::util::display::array_value_to_string(a, i).unwrap(),
            });
        }
    }
    out
}

#[tokio::test]
async fn labels_are_the_catalog_s_and_bands_start_at_their_edges() {
    let ctx = trusted();
    let dates = "SELECT classify(d, '{grain}') FROM (VALUES (DATE '2024-01-01'), (DATE '2024-03-31'), \
                 (DATE '2024-04-01'), (DATE '2024-12-31'), (DATE '0999-07-15'), (CAST(NULL AS DATE))) AS t(d)";
    let labels = |grain: &str| dates.replace("{grain}", grain);
    assert_eq!(column(&ctx, &labels("year")).await, ["2024", "2024", "2024", "2024", "0999", "NULL"]);
    assert_eq!(column(&ctx, &labels("quarter")).await, ["2024Q1", "2024Q1", "2024Q2", "2024Q4", "0999Q3", "NULL"]);
    assert_eq!(column(&ctx, &labels("month")).await, ["2024-01", "2024-03", "2024-04", "2024-12", "0999-07", "NULL"]);
    // The catalog's own labels, for every day of a leap year.
    let days = "SELECT d, classify(d, 'quarter'), classify(d, 'month') FROM \
                (SELECT DATE '2024-01-01' + CAST(n AS INT) AS d FROM (SELECT unnest(range(366)) AS n))";
    let batches = ctx.sql(days).await.unwrap().collect().await.unwrap();
    for b in &batches {
        let (d, q, m) = (b.column(0).as_primitive::<Date32Type>(), b.column(1).as_string::<i32>(), b.column(2));
        for i in 0..b.num_rows() {
            let date = date32_to_datetime(d.value(i)).unwrap().date();
            assert_eq!(q.value(i), Grain::Quarter.label(date));
            assert_eq!(m.as_string::<i32>().value(i), Grain::Month.label(date));
        }
    }
    // Timestamps are labelled by their day, before the epoch too.
    let ts = "SELECT classify(t, 'quarter') FROM (VALUES (TIMESTAMP '1969-12-31 23:59:59.999999'), \
              (TIMESTAMP '1970-01-01 00:00:00'), (TIMESTAMP '2025-06-30 23:59:59')) AS v(t)";
    assert_eq!(column(&ctx, ts).await, ["1969Q4", "1970Q1", "2025Q2"]);

    // Band i is [e_i, e_{i+1}): an edge starts the band above it.
    let numbers = "SELECT classify(x, 10, 50.0, 5000) FROM (VALUES (-1.0), (9.999), (10.0), (49.99), (50.0), \
                   (4999.999), (5000.0), (1e300), (CAST(NULL AS DOUBLE)), (CAST('NaN' AS DOUBLE))) AS t(x)";
    assert_eq!(column(&ctx, numbers).await, ["0", "0", "1", "1", "2", "2", "3", "3", "NULL", "NULL"]);
    // Integers and decimals compare as numbers with the same edges.
    let integers = "SELECT classify(x, 10.0, 50.0) FROM (VALUES (9), (10), (50), (CAST(NULL AS BIGINT))) AS t(x)";
    assert_eq!(column(&ctx, integers).await, ["0", "1", "2", "NULL"]);
    let decimals = "SELECT classify(CAST(x AS DECIMAL(18, 2)), 100) FROM (VALUES (99.99), (100.00)) AS t(x)";
    assert_eq!(column(&ctx, decimals).await, ["0", "1"]);
    // A constant is classified as a constant.
    assert_eq!(column(&ctx, "SELECT classify(DATE '2025-02-03', 'month')").await, ["2025-02"]);

    // Malformed grains and edges are refused when the call is planned.
    for sql in [
        "SELECT classify(DATE '2024-01-01', 'week')",
        "SELECT classify(DATE '2024-01-01', NULL)",
        "SELECT classify(1.0, 5, 5)",
        "SELECT classify(1.0, CAST('NaN' AS DOUBLE))",
        "SELECT classify(1.0, 'year')",
        "SELECT classify(DATE '2024-01-01', 10)",
        "SELECT classify('2024-01-01', 'year')",
        "SELECT classify(DATE '2024-01-01')",
    ] {
        let planned = async { ctx.sql(sql).await?.collect().await };
        assert!(planned.await.is_err(), "{sql}");
    }
    // A grain that only the data decides fails when it runs, outside the checker too.
    let varying = "SELECT classify(DATE '2024-01-01', g) FROM (VALUES ('year'), ('month')) AS t(g)";
    assert!(ctx.sql(varying).await.unwrap().collect().await.is_err());
}

/// One column of a generated dataset's Parquet file, read without the views.
fn raw<T>(dataset: &str, column: &str, read: impl Fn(&dyn Array, usize) -> T) -> Vec<Option<T>> {
    let ds = fixture::catalog().dataset(dataset).unwrap();
    let reader =
        ParquetRecordBatchReaderBuilder::try_new(File::open(&ds.files[0].path).unwrap()).unwrap().build().unwrap();
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let array = batch.column_by_name(column).unwrap();
        out.extend((0..array.len()).map(|i| (!array.is_null(i)).then(|| read(array.as_ref(), i))));
    }
    out
}

/// Firms per label of their founding date, from the file.
fn firms_by(grain: Grain) -> BTreeMap<String, i64> {
    let dates = raw("enterprises", "established", |a, i| a.as_primitive::<Date32Type>().value(i));
    let mut counts = BTreeMap::new();
    for day in dates.into_iter().flatten() {
        *counts.entry(grain.label(date32_to_datetime(day).unwrap().date())).or_insert(0) += 1;
    }
    counts
}

fn pairs(batches: &[RecordBatch]) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for b in batches {
        let (keys, counts) = (b.column(0), b.column(1).as_primitive::<Int64Type>());
        for i in 0..b.num_rows() {
            out.insert(datafusion::arrow::util::display::array_value_to_string(keys, i).unwrap(), counts.value(i));
        }
    }
    out
}

#[tokio::test]
async fn classify_in_the_views_gives_the_catalog_s_labels_and_bands() {
    let all = PolicyContext::new(
        fixture::catalog(),
        fixture::ALL,
        Variant::Real,
        Some(DomainSecret::from_bytes([7; 32]).licence_key("licence-1")),
        PolicyConfig { min_group_units: 1, ..PolicyConfig::default() },
    )
    .unwrap();
    for grain in Grain::ALL {
        let sql = format!("SELECT classify(established, '{grain}') AS p, count(*) AS n FROM enterprises GROUP BY 1");
        assert_eq!(pairs(&all.collect(&sql).await.unwrap()), firms_by(grain), "{grain}");
    }
    // Bands of registered capital at published edges, against the file's decimals.
    let capital = raw("enterprises", "registered_capital", |a, i| a.as_primitive::<Decimal128Type>().value(i));
    let mut expected = BTreeMap::new();
    for cents in capital.into_iter().flatten() {
        // Edges 100 and 1000 (10 000 yuan), in hundredths.
        let band = [10_000, 100_000].iter().filter(|&&edge| cents >= edge).count();
        *expected.entry(band.to_string()).or_insert(0) += 1;
    }
    let sql = "SELECT classify(registered_capital, 100.0, 1000.0) AS b, count(*) AS n FROM enterprises GROUP BY 1";
    assert_eq!(pairs(&all.collect(sql).await.unwrap()), expected);
    assert_eq!(expected.len(), 3, "the fixture has firms in every band: {expected:?}");
    // A published band in a condition keeps the firms from the edge up.
    let sql = "SELECT 'big' AS k, count(*) AS n FROM enterprises WHERE classify(registered_capital, 1000.0) = 1";
    assert_eq!(pairs(&all.collect(sql).await.unwrap())["big"], expected["2"]);
}

#[tokio::test]
async fn groups_keyed_by_a_published_quarter_under_the_threshold_are_dropped() {
    let ctx = context(&["enterprises"], PolicyConfig::default());
    let all = firms_by(Grain::Quarter);
    let kept: BTreeMap<String, i64> = all.iter().filter(|(_, n)| **n >= 10).map(|(q, n)| (q.clone(), *n)).collect();
    assert!(kept.len() < all.len() && !kept.is_empty(), "the fixture has small and large quarters: {all:?}");

    let sql = "SELECT classify(established, 'quarter') AS quarter, count(*) AS n FROM enterprises GROUP BY 1";
    let checked = ctx.check(sql).await.unwrap();
    assert!(checked.drops_small_groups);
    assert_eq!(checked.columns[0].to_string(), "quarter: enterprises.established [compare_only, group key]");
    assert_eq!(pairs(&ctx.collect(sql).await.unwrap()), kept);

    // Classified in a CTE and grouped outside, or made distinct: the same quarters survive.
    let sql = "WITH q AS (SELECT classify(established, 'quarter') AS quarter FROM enterprises) \
               SELECT quarter, count(*) AS n FROM q GROUP BY quarter";
    assert_eq!(pairs(&ctx.collect(sql).await.unwrap()), kept);
    let sql = "SELECT DISTINCT classify(established, 'quarter') AS quarter, 0 AS n FROM enterprises";
    let distinct: Vec<String> = pairs(&ctx.collect(sql).await.unwrap()).into_keys().collect();
    assert_eq!(distinct, kept.keys().cloned().collect::<Vec<_>>());

    // A quarter only filtered by is not a key: nothing is dropped (as for a raw date).
    let sql =
        "SELECT status, count(*) AS n FROM enterprises WHERE classify(established, 'year') >= '1900' GROUP BY status";
    assert!(!ctx.check(sql).await.unwrap().drops_small_groups);

    // Bands of capital as keys are counted too.
    let sql = "SELECT classify(registered_capital, 10.0, 50.0, 100.0, 500.0, 1000.0, 5000.0) AS b, count(*) AS n \
               FROM enterprises GROUP BY 1";
    assert!(ctx.check(sql).await.unwrap().drops_small_groups);
    assert!(pairs(&ctx.collect(sql).await.unwrap()).values().all(|&n| n >= 10));
}

const PERMITS: &str = r#"id = "permits"
title = { zh = "许可", en = "Permits" }
provider = { zh = "市行政审批局", en = "Municipal Administrative Approval Bureau" }
level = "general"
sharing = "unconditional"
open = "unconditional"
update_frequency = "yearly"
privacy_unit = "holder"
format = "csv"
files = ["permits.csv"]
twin_files = ["permits_twin.csv"]

[[columns]]
name = "holder"
type = "string"
constraint = "pseudonymized"
description = { zh = "持证人", en = "Holder" }

[[columns]]
name = "issued"
type = "date"
constraint = "compare_only"
description = { zh = "发证日期", en = "Issued on" }
classification = { grains = ["year"] }

[[columns]]
name = "expires"
type = "date"
constraint = "forbidden"
description = { zh = "到期日期", en = "Expires on" }

[[columns]]
name = "fee"
type = "float64"
constraint = "aggregate_only"
description = { zh = "费用", en = "Fee" }

[[columns]]
name = "area"
type = "float64"
constraint = "group_by_only"
description = { zh = "面积", en = "Area" }
"#;

fn rejection(result: Result<sandbox_policy::CheckedQuery, PolicyError>) -> sandbox_policy::Rejection {
    match result {
        Err(PolicyError::Rejected(r)) => r,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[tokio::test]
async fn grains_and_edges_a_catalog_does_not_publish_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("permits.toml"), PERMITS).unwrap();
    let rows = "holder,issued,expires,fee,area\na,2024-02-01,2026-02-01,10.5,80\nb,2024-05-01,2026-05-01,20,120\n";
    std::fs::write(dir.path().join("permits.csv"), rows).unwrap();
    std::fs::write(
        dir.path().join("permits_twin.csv"),
        "holder,issued,expires,fee,area\nt,2023-01-01,2025-01-01,1,1\n",
    )
    .unwrap();
    let catalog = Catalog::open(dir.path()).unwrap();
    let config = PolicyConfig { min_group_units: 1, ..PolicyConfig::default() };
    let key = DomainSecret::from_bytes([7; 32]).licence_key("l");
    let ctx = PolicyContext::new(&catalog, &["permits"], Variant::Real, Some(key), config).unwrap();

    // The published grain.
    let sql = "SELECT classify(issued, 'year') AS y, count(*) AS n FROM permits GROUP BY 1";
    assert_eq!(pairs(&ctx.collect(sql).await.unwrap()), BTreeMap::from([("2024".to_owned(), 2)]));

    // A grain the catalog does not publish, in a key or a condition.
    for sql in [
        "SELECT classify(issued, 'quarter') AS q, count(*) AS n FROM permits GROUP BY 1",
        "SELECT count(*) AS n FROM permits WHERE classify(issued, 'quarter') = '2024Q2'",
    ] {
        let r = rejection(ctx.check(sql).await);
        let Reason::Unpublished { ref asked, ref published, .. } = r.reason else { panic!("{r}") };
        assert_eq!(*asked, Classes::Grains(vec![Grain::Quarter]));
        assert_eq!(*published, Some(Classes::Grains(vec![Grain::Year])));
        assert_eq!(
            r.to_string(),
            "permits.issued is compare_only: classify may cut it only by its published grains (year), not by quarter"
        );
        assert_eq!(r.zh(), "permits.issued 为仅限比较列：classify 只能按其公开粒度（年）分类，不能按季度分类");
    }

    // A restricted column with no published classification may not be cut at all.
    let r = rejection(ctx.check("SELECT classify(fee, 10.0) AS b, count(*) AS n FROM permits GROUP BY 1").await);
    assert!(matches!(r.reason, Reason::Unpublished { published: None, .. }), "{r}");
    assert_eq!(
        r.to_string(),
        "permits.fee is aggregate_only: the catalog publishes no classification of it, so classify may not cut it at 10"
    );
    assert_eq!(r.zh(), "permits.fee 为仅限聚合列：目录未公布其分类，classify 不能在 10 处分段");

    // A forbidden date is typed in the view (as NULLs), so the call plans; the checker refuses it.
    let r = rejection(ctx.check("SELECT classify(expires, 'year') AS y, count(*) AS n FROM permits GROUP BY 1").await);
    assert!(matches!(r.reason, Reason::Unclassifiable { .. }), "{r}");
    assert_eq!(
        r.to_string(),
        "classify() may not take column permits.expires (forbidden): a forbidden column may not be used at all"
    );
    assert!(r.zh().contains("禁止使用的列不得以任何方式使用"), "{}", r.zh());

    // A group_by_only number may be banded anywhere, as a key; its groups are counted.
    let sql = "SELECT classify(area, 100.0) AS b, count(*) AS n FROM permits GROUP BY 1";
    assert!(ctx.check(sql).await.unwrap().drops_small_groups);
    assert_eq!(pairs(&ctx.collect(sql).await.unwrap()), BTreeMap::from([("0".to_owned(), 1), ("1".to_owned(), 1)]));
    // As a condition, a band of any width would be the raw value.
    let sql = "SELECT holder FROM permits WHERE classify(area, 80.0, 80.5) = 1";
    let r = rejection(ctx.check(sql).await);
    assert!(matches!(r.reason, Reason::ClassifiedUse { .. }), "{r}");

    // Members of a grouping by a published classification may only be counted.
    let r = rejection(
        ctx.check("SELECT classify(issued, 'year') AS y, array_agg(holder) AS who FROM permits GROUP BY 1").await,
    );
    assert!(matches!(r.reason, Reason::GroupMembers { keys: RestrictedKeys::Classified, .. }), "{r}");
    assert!(r.zh().contains("在按公开分类分组时"), "{}", r.zh());
}
