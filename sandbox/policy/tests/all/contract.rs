//! The output contract judged like SQL: the attack cases in `tests/contracts/*.toml` (a file per
//! class, each case with why), the examples, and the manifest reference's examples.

use std::path::Path;

use sandbox_contract::Manifest;
use sandbox_policy::contract;
use serde::Deserialize;

use crate::fixture::catalog;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Cases {
    case: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    why: String,
    verdict: String,
    expect: Option<String>,
    datasets: Vec<String>,
    #[serde(default)]
    parameters: String,
    outputs: String,
    /// Parameter values a run binds; without them, the judgment at submission.
    bind: Option<Vec<(String, String)>>,
}

fn judge(text: &str, bind: Option<&[(String, String)]>) -> Result<Vec<contract::ContractQuery>, String> {
    let manifest = Manifest::parse(text).map_err(|e| e.to_string())?;
    runtime().block_on(contract::judge(&manifest, catalog(), bind)).map_err(|e| e.to_string())
}

#[test]
fn contract_cases() {
    let dir = Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("tests/contracts");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let mut failures = Vec::new();
    let mut counted = (0, 0);
    for file in files.iter().filter(|f| f.extension().is_some_and(|e| e == "toml")) {
        let cases: Cases = toml::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        for case in cases.case {
            let datasets = case.datasets.iter().map(|d| format!("{d:?}")).collect::<Vec<_>>().join(", ");
            let text = format!(
                "name = \"contract-case\"\nversion = \"1\"\ndatasets = [{datasets}]\npurpose = {{ zh = \"测试\", en = \"test\" }}\n{}\n{}",
                case.parameters, case.outputs
            );
            let result = judge(&text, case.bind.as_deref());
            let name = format!("{}: {}", file.file_name().unwrap().to_string_lossy(), case.why);
            match (case.verdict.as_str(), &result) {
                ("accept", Ok(_)) => counted.0 += 1,
                ("reject", Err(problem)) => {
                    counted.1 += 1;
                    if let Some(expect) = &case.expect
                        && !problem.contains(expect.as_str())
                    {
                        failures.push(format!("{name}\n  expected {expect:?} in: {problem}"));
                    }
                    // Refusals are logged: they never quote a value a run was given.
                    for (_, value) in case.bind.iter().flatten() {
                        if problem.contains(value.as_str()) {
                            failures.push(format!("{name}\n  the problem quotes {value:?}: {problem}"));
                        }
                    }
                }
                (verdict, result) => failures.push(format!("{name}\n  expected {verdict}, got {result:?}")),
            }
        }
    }
    assert!(failures.is_empty(), "{} cases failed:\n{}", failures.len(), failures.join("\n"));
    assert!(counted.0 >= 4 && counted.1 >= 15, "{counted:?} (accepted, rejected)");
}

#[test]
fn every_example_contract_is_admitted_and_rendered_as_sql() {
    for ex in sandbox_examples::examples() {
        let queries = judge(ex.manifest, None).unwrap_or_else(|e| panic!("{}: {e}", ex.name));
        for q in &queries {
            assert!(q.sql.starts_with("SELECT ") && q.sql.contains(" FROM "), "{}: {}", ex.name, q.sql);
        }
    }
    let population = sandbox_examples::find("population").unwrap();
    let sql = &judge(population.manifest, Some(&[("reference_date".into(), "2024-12-31".into())])).unwrap()[0].sql;
    assert!(sql.contains("count(DISTINCT \"persons\".\"citizen_id\")") && sql.contains("DATE '2024-12-31'"), "{sql}");
}

#[test]
fn the_manifest_reference_s_examples_parse_and_are_admitted() {
    let path = Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("../../examples/MANIFEST.md");
    let text = std::fs::read_to_string(path).unwrap();
    let mut blocks = 0;
    let mut rest = text.as_str();
    while let Some(start) = rest.find("```toml\n") {
        let body = &rest[start + 8..];
        let end = body.find("```").unwrap();
        let manifest = &body[..end];
        judge(manifest, None).unwrap_or_else(|e| panic!("{e}\nin:\n{manifest}"));
        blocks += 1;
        rest = &body[end + 3..];
    }
    assert!(blocks >= 5, "{blocks} examples");
}
