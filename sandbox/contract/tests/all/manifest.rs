//! Manifest checks: every example parses; each kind of mistake is reported with its place.

use sandbox_contract::Manifest;

#[test]
fn every_example_manifest_is_valid() {
    for ex in sandbox_examples::examples().iter().chain([sandbox_examples::hostile()]) {
        Manifest::parse(ex.manifest).unwrap_or_else(|e| panic!("{}: {e}", ex.name));
    }
}

fn problems(text: &str) -> String {
    Manifest::parse(text).unwrap_err().to_string()
}

const GOOD: &str = r#"
name = "m"
version = "1.0"
datasets = ["persons"]
purpose = { zh = "用途", en = "purpose" }
[[parameters]]
name = "year"
type = "integer"
min = 2000
max = 2025
default = 2025
zh = "年"
en = "year"
[[outputs]]
name = "t"
zh = "表"
en = "table"
dimensions = [{ name = "district", source = "persons.district" }]
measures = [{ name = "n", statistic = "count", of = "persons" }]
"#;

#[test]
fn mistakes_are_named_with_their_place() {
    assert!(Manifest::parse(GOOD).is_ok());
    let cases = [
        (GOOD.replace("name = \"m\"", "name = \"M!\""), "name: \"M!\" is not a module name"),
        (GOOD.replace("[\"persons\"]", "[]"), "datasets: no datasets are listed"),
        (GOOD.replace("default = 2025", "default = 1990"), "the default is below the minimum 2000"),
        (GOOD.replace("min = 2000", "min = \"x\""), "min = \"x\" is not a Integer value"),
        (GOOD.replace("persons.district", "people.district"), "names dataset \"people\""),
        (GOOD.replace("persons.district", "district"), "is not dataset.column"),
        (GOOD.replace("statistic = \"count\"", "statistic = \"sum\""), "needs a column"),
        (GOOD.replace("name = \"n\"", "name = \"district\""), "column \"district\" appears twice"),
        (GOOD.replace("statistic = \"count\"", "statistic = \"median\""), "unknown variant `median`"),
        (GOOD.replace("version = \"1.0\"", "version = \"1.0\"\nauthor = \"x\""), "unknown field `author`"),
        (
            GOOD.replace(
                "source = \"persons.district\"",
                "source = \"persons.birth_date\", banding = { kind = \"age\", at = \"2025-02-30\", edges = [18, 10], labels = [\"a\"] }",
            ),
            "age edges must be positive and increase",
        ),
        (
            GOOD.replace("zh = \"表\"", "zh = \"表\"\nfilters = [{ column = \"persons.gender\", op = \"eq\" }]"),
            "a filter needs exactly one of value and parameter",
        ),
        (
            GOOD.replace("zh = \"表\"", "zh = \"表\"\nfilters = [{ column = \"persons.gender\", op = \"eq\", parameter = \"sex\" }]"),
            "parameter \"sex\" is not declared",
        ),
        (
            GOOD.replace("zh = \"表\"", "zh = \"表\"\nfilters = [{ column = \"persons.gender\", op = \"like\", value = \"x\" }]"),
            "unknown variant `like`",
        ),
        (
            GOOD.replace("source = \"persons.district\"", "source = \"enterprises.district\"")
                .replace("[\"persons\"]", "[\"persons\", \"enterprises\"]"),
            "is not a column of persons, nor reached by the table's join",
        ),
        (
            GOOD.replace("zh = \"表\"", "zh = \"表\"\njoin = { from = \"enterprises.uscc\", to = \"persons.citizen_id\" }")
                .replace("[\"persons\"]", "[\"persons\", \"enterprises\"]"),
            "join.from must be a column of persons",
        ),
        (
            GOOD.replace("of = \"persons\"", "of = \"persons\" }, { name = \"m\", statistic = \"sum\", of = \"enterprises.registered_capital\"")
                .replace("[\"persons\"]", "[\"persons\", \"enterprises\"]"),
            "the measures count more than one dataset",
        ),
    ];
    for (text, expected) in cases {
        let got = problems(&text);
        assert!(got.contains(expected), "expected {expected:?} in:\n{got}");
    }
    let dates = GOOD.replace(
        "source = \"persons.district\"",
        "source = \"persons.birth_date\", banding = { kind = \"age\", at = \"2025-02-30\", edges = [18], labels = [\"a\", \"b\"] }",
    );
    assert!(problems(&dates).contains("is not a date"));
}

#[test]
fn parameters_are_bound_in_order_with_defaults() {
    let m = Manifest::parse(GOOD).unwrap();
    let bound = m.bind(&[]).unwrap();
    assert_eq!(bound[0].1.to_string(), "2025");
    let given = [("year".to_owned(), "2001".to_owned())];
    assert_eq!(m.bind(&given).unwrap()[0].1.to_string(), "2001");
    for bad in ["2026", "x", "20.5"] {
        let given = [("year".to_owned(), bad.to_owned())];
        assert!(m.bind(&given).is_err(), "{bad}");
    }
    let twice = [("year".to_owned(), "2001".to_owned()), ("year".to_owned(), "2002".to_owned())];
    assert!(m.bind(&twice).unwrap_err().to_string().contains("more than once"));
}

#[test]
fn a_refused_parameter_is_never_quoted() {
    // Refusals are logged, and an operator may type anything, an identity number among them.
    let m = Manifest::parse(GOOD).unwrap();
    let secret = "11010519491231002X";
    for given in [
        vec![("year".to_owned(), secret.to_owned())],
        vec![("year".to_owned(), "3026".to_owned())],
        vec![(secret.to_owned(), "2001".to_owned())],
        vec![("year".to_owned(), "2001".to_owned()), (format!("x{secret}"), secret.to_owned())],
    ] {
        let text = m.bind(&given).unwrap_err().to_string();
        for (name, value) in &given {
            assert!(!text.contains(value.as_str()) || value == "2001", "{text}");
            assert!(name == "year" || !text.contains(name.as_str()), "{text}");
        }
    }
}
