//! Published classifications (公开分类): a valid one reaches the model, and each way of getting one
//! wrong is reported at its line, in both languages.

use chrono::NaiveDate;
use sandbox_catalog::{Catalog, Classification, Grain, ProblemKind};

use crate::Fixture;

/// [`crate::ENTRY`] with `classification` added to the column described as `description`.
fn classify(description: &str, classification: &str) -> Fixture {
    Fixture::new(|e| {
        let line = format!("description = {{ zh = \"{description}\"");
        let at = e.find(&line).expect("a column of the fixture");
        let end = at + e[at..].find('\n').unwrap() + 1;
        format!("{}classification = {classification}\n{}", &e[..end], &e[end..])
    })
}

/// The line `classification` lands on for each column of the fixture.
const SHOP_ID: usize = 20;
const DISTRICT: usize = 26;
const TURNOVER: usize = 32;

/// Asserts the fixture's only problem: its kind, line, and message in both languages.
fn refused(fixture: &Fixture, kind: ProblemKind, line: usize, en: &str, zh: &str) {
    let problems = fixture.problems();
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!((&problems[0].kind, problems[0].line), (&kind, Some(line)));
    let text = problems[0].to_string();
    let at = format!("{}:{line}: ", fixture.path("shops.toml").display());
    assert!(text.starts_with(&at) && text.contains(en) && text.contains(zh), "{text}");
}

/// A CSV catalog with a date column, classified by grains, and a classified number.
fn dated(opened: &str, turnover: &str) -> Fixture {
    let entry = format!(
        r#"id = "shops"
title = {{ zh = "商户", en = "Shops" }}
provider = {{ zh = "市场监督管理局", en = "Market regulation" }}
level = "general"
sharing = "conditional"
open = "none"
update_frequency = "monthly"
privacy_unit = "shop_id"
format = "csv"
files = ["data/shops.csv"]

[[columns]]
name = "shop_id"
type = "string"
constraint = "pseudonymized"
description = {{ zh = "编号", en = "Shop id" }}

[[columns]]
name = "opened"
type = "date"
constraint = "compare_only"
description = {{ zh = "开业日期", en = "Opened" }}
classification = {opened}

[[columns]]
name = "turnover"
type = "decimal(12,2)"
constraint = "aggregate_only"
description = {{ zh = "营业额", en = "Turnover" }}
classification = {turnover}
"#
    );
    let fixture = Fixture::new(|_| entry);
    std::fs::write(fixture.path("data/shops.csv"), "shop_id,opened,turnover\ns1,2024-01-01,10.50\n").unwrap();
    fixture
}

#[test]
fn a_valid_classification_reaches_the_model() {
    let fixture = dated(r#"{ grains = ["year", "季度", "month"] }"#, "{ edges = [10, 50.5, 100, 1e3] }  # 公开分类");
    assert!(fixture.problems().is_empty(), "{:#?}", fixture.problems());
    let catalog = Catalog::open(fixture.dir.path()).unwrap();
    let shops = catalog.dataset("shops").unwrap();
    let opened = shops.column("opened").unwrap().classification.as_ref().unwrap();
    assert_eq!(opened, &Classification::Grains(vec![Grain::Year, Grain::Quarter, Grain::Month]));
    assert!(opened.has_grain(Grain::Quarter) && opened.edges().is_none());
    let turnover = shops.column("turnover").unwrap().classification.as_ref().unwrap();
    assert_eq!(turnover.edges(), Some(&[10.0, 50.5, 100.0, 1000.0][..]));
    assert!(!turnover.has_grain(Grain::Year) && turnover.grains().is_empty());
    assert!(turnover.has_edge(50.5) && !turnover.has_edge(50.0));
    assert!(turnover.admits_edges(&[10.0, 1000.0]) && !turnover.admits_edges(&[10.0, 20.0]));
    assert_eq!(shops.column("shop_id").unwrap().classification, None);

    // Only some grains: a year filter may cut at 1 January only.
    let fixture = dated(r#"{ grains = ["年"] }"#, "{ edges = [10] }");
    let catalog = Catalog::open(fixture.dir.path()).unwrap();
    let opened = catalog.dataset("shops").unwrap().column("opened").unwrap().classification.clone().unwrap();
    assert_eq!(opened.grains(), [Grain::Year]);
    let day = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
    assert!(opened.starts_period(day(2024, 1, 1)) && !opened.starts_period(day(2024, 4, 1)));
}

#[test]
fn grains_label_and_start_periods() {
    let day = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
    let labels = |date| Grain::ALL.map(|g| g.label(date));
    assert_eq!(labels(day(2025, 11, 30)), ["2025", "2025Q4", "2025-11"]);
    assert_eq!(labels(day(987, 3, 31)), ["0987", "0987Q1", "0987-03"]);
    assert_eq!(labels(day(2024, 4, 1)), ["2024", "2024Q2", "2024-04"]);
    let starts = |date| Grain::ALL.map(|g| g.starts_period(date));
    assert_eq!(starts(day(2024, 1, 1)), [true, true, true]);
    assert_eq!(starts(day(2024, 7, 1)), [false, true, true]);
    assert_eq!(starts(day(2024, 8, 1)), [false, false, true]);
    assert_eq!(starts(day(2024, 7, 2)), [false, false, false]);
    for g in Grain::ALL {
        assert_eq!(Grain::parse(g.as_str()), Some(g));
        assert_eq!(Grain::parse(g.zh()), Some(g));
    }
    assert_eq!(Grain::parse("week"), None);
}

#[test]
fn a_classification_has_grains_or_edges_not_both_nor_neither() {
    let kind = ProblemKind::ClassificationNeedsOne("turnover".into());
    let fixture = classify("营业额", r#"{ grains = ["year"], edges = [10] }"#);
    refused(&fixture, kind.clone(), TURNOVER, "needs exactly one of grains or edges", "二者之一");
    refused(&classify("营业额", "{}"), kind, TURNOVER, "needs exactly one of grains or edges", "二者之一");
}

#[test]
fn grains_and_edges_are_not_empty() {
    let empty = |key| ProblemKind::EmptyClassification { column: "turnover".into(), key };
    refused(&classify("营业额", "{ edges = [] }"), empty("edges"), TURNOVER, "lists no edges", "为空");
    let empty = ProblemKind::EmptyClassification { column: "opened".into(), key: "grains" };
    refused(&dated("{ grains = [] }", "{ edges = [10] }"), empty, 23, "lists no grains", "为空");
}

#[test]
fn grains_are_known() {
    let fixture = dated(r#"{ grains = ["year", "week"] }"#, "{ edges = [10] }");
    let kind = ProblemKind::UnknownGrain { column: "opened".into(), grain: "week".into() };
    refused(&fixture, kind, 23, "unknown grain \"week\"", "日期粒度 \"week\" 无效");
}

#[test]
fn grains_are_not_repeated() {
    // The same grain in two spellings is a repeat.
    let fixture = dated(r#"{ grains = ["year", "month", "年"] }"#, "{ edges = [10] }");
    let kind = ProblemKind::DuplicateGrain { column: "opened".into(), grain: "年".into() };
    refused(&fixture, kind, 23, "is listed twice", "重复");
}

#[test]
fn edges_are_finite() {
    for (edges, edge) in [("[10, inf]", "inf"), ("[-inf, 10]", "-inf"), ("[nan]", "NaN")] {
        let fixture = classify("营业额", &format!("{{ edges = {edges} }}"));
        let kind = ProblemKind::NonFiniteEdge { column: "turnover".into(), edge: edge.into() };
        refused(&fixture, kind, TURNOVER, "is not a finite number", "不是有限数值");
    }
}

#[test]
fn edges_increase_strictly() {
    for (edges, edge, previous) in [("[10, 50, 50]", "50", "50"), ("[10, 50, 20.5]", "20.5", "50")] {
        let fixture = classify("营业额", &format!("{{ edges = {edges} }}"));
        let kind =
            ProblemKind::EdgesNotIncreasing { column: "turnover".into(), edge: edge.into(), previous: previous.into() };
        refused(&fixture, kind, TURNOVER, "must increase strictly", "严格递增");
    }
}

#[test]
fn grains_classify_only_dates_and_times() {
    let fixture = classify("营业额", r#"{ grains = ["year"] }"#);
    let kind = ProblemKind::GrainsNeedDates { column: "turnover".into(), data_type: "int64".into() };
    refused(&fixture, kind, TURNOVER, "grains classify only date and timestamp columns", "日期粒度只适用于");
    let fixture = classify("区", r#"{ grains = ["year"] }"#);
    let kind = ProblemKind::GrainsNeedDates { column: "district".into(), data_type: "string".into() };
    refused(&fixture, kind, DISTRICT, "grains classify only date and timestamp columns", "日期粒度只适用于");
    // A timestamp takes grains.
    let fixture = Fixture::new(|e| {
        e.replace("type = \"int64\"", "type = \"timestamp\"")
            .replace("en = \"Turnover\" }", "en = \"Turnover\" }\nclassification = { grains = [\"month\"] }")
    });
    let problems = fixture.problems();
    assert!(problems.iter().all(|p| matches!(p.kind, ProblemKind::TypeMismatch { .. })), "{problems:#?}");
}

#[test]
fn edges_classify_only_numbers() {
    let fixture = classify("区", "{ edges = [10] }");
    let kind = ProblemKind::EdgesNeedNumbers { column: "district".into(), data_type: "string".into() };
    refused(&fixture, kind, DISTRICT, "edges classify only numeric columns", "分段边界只适用于数值列");
    let fixture = dated("{ edges = [10] }", "{ edges = [10] }");
    let kind = ProblemKind::EdgesNeedNumbers { column: "opened".into(), data_type: "date".into() };
    refused(&fixture, kind, 23, "edges classify only numeric columns", "分段边界只适用于数值列");
    for ty in ["int8", "int16", "int32", "float32", "float64", "decimal(18,2)"] {
        let fixture = Fixture::new(|e| {
            e.replace("type = \"int64\"", &format!("type = \"{ty}\""))
                .replace("en = \"Turnover\" }", "en = \"Turnover\" }\nclassification = { edges = [10] }")
        });
        let problems = fixture.problems();
        assert!(problems.iter().all(|p| matches!(p.kind, ProblemKind::TypeMismatch { .. })), "{ty}: {problems:#?}");
    }
}

#[test]
fn pseudonymized_and_forbidden_columns_are_never_classified() {
    let fixture = classify("编号", "{ edges = [10] }");
    let problems = fixture.problems();
    let kind = ProblemKind::ClassificationNotBanded {
        column: "shop_id".into(),
        constraint: sandbox_catalog::Constraint::Pseudonymized,
    };
    assert!(problems.iter().any(|p| p.kind == kind && p.line == Some(SHOP_ID)), "{problems:#?}");

    let fixture = Fixture::new(|e| {
        e.replace("constraint = \"aggregate_only\"", "constraint = \"禁止使用\"")
            .replace("en = \"Turnover\" }", "en = \"Turnover\" }\nclassification = { edges = [10] }")
    });
    let kind = ProblemKind::ClassificationNotBanded {
        column: "turnover".into(),
        constraint: sandbox_catalog::Constraint::Forbidden,
    };
    refused(&fixture, kind, TURNOVER, "is forbidden and never banded", "从不分段");
}

#[test]
fn unknown_keys_and_wrong_types_are_refused() {
    let fixture = classify("营业额", "{ edges = [10], labels = [\"small\"] }");
    let problems = fixture.problems();
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(matches!(problems[0].kind, ProblemKind::Structure(ref m) if m.contains("labels")), "{problems:#?}");
    assert_eq!(problems[0].line, Some(TURNOVER));

    let fixture = classify("营业额", "{ edges = [\"ten\"] }");
    let problems = fixture.problems();
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(matches!(problems[0].kind, ProblemKind::Structure(_)), "{problems:#?}");
    assert_eq!(problems[0].line, Some(TURNOVER));
}
