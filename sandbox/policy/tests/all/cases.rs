//! Runs the policy cases in `tests/cases/*.policy`.
//!
//! A case is a comment saying why (required), a verdict line, the SQL, `----`, and the expected
//! outcome, separated from the next case by a blank line:
//!
//! ```text
//! # A group_by_only column may be a GROUP BY key: its values come out once per group.
//! accept
//! SELECT district, count(*) AS n FROM persons GROUP BY district
//! ----
//! district: persons.district [group_by_only, group key]
//! n: (no view column)
//! ```
//!
//! `accept` expects the column lineage; `reject` expects the error, as `sandbox policy check`
//! prints it. The verdict line may name the licence's datasets (`accept persons,enterprises`);
//! the default is all four. `BLESS=1` rewrites the expected outcomes of cases whose verdict
//! matches; a verdict that differs always fails, because verdicts are decided by people from
//! DESIGN.md's semantics, not by the code under test.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use sandbox_catalog::Variant;
use sandbox_policy::{PolicyConfig, PolicyContext};

use crate::fixture;

struct Case {
    why: Vec<String>,
    verdict: Verdict,
    datasets: Option<String>,
    sql: String,
    expected: Vec<String>,
    line: usize,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Verdict {
    Accept,
    Reject,
}

fn parse(path: &Path, text: &str) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut lines = text.lines().enumerate().peekable();
    while lines.peek().is_some() {
        let mut why = Vec::new();
        let mut line = 0;
        let mut header = None;
        for (n, l) in lines.by_ref() {
            if let Some(comment) = l.strip_prefix('#') {
                why.push(comment.trim().to_owned());
            } else if !l.trim().is_empty() {
                header = Some(l.trim().to_owned());
                line = n + 1;
                break;
            }
        }
        let Some(header) = header else { break };
        let (verdict, datasets) = match header.split_once(' ') {
            Some((v, d)) => (v.to_owned(), Some(d.trim().to_owned())),
            None => (header.clone(), None),
        };
        let verdict = match verdict.as_str() {
            "accept" => Verdict::Accept,
            "reject" => Verdict::Reject,
            other => panic!("{}:{line}: expected `accept` or `reject`, found {other:?}", path.display()),
        };
        assert!(!why.is_empty(), "{}:{line}: every case needs a `#` comment saying why", path.display());
        let mut sql = Vec::new();
        for (_, l) in lines.by_ref() {
            if l == "----" {
                break;
            }
            sql.push(l);
        }
        let mut expected = Vec::new();
        for (_, l) in lines.by_ref() {
            if l.is_empty() {
                break;
            }
            expected.push(l.to_owned());
        }
        cases.push(Case { why, verdict, datasets, sql: sql.join("\n"), expected, line });
    }
    cases
}

fn render(cases: &[Case], actual: &[Vec<String>]) -> String {
    let mut out = String::new();
    for (i, (case, actual)) in cases.iter().zip(actual).enumerate() {
        if i > 0 {
            out.push('\n');
        }
        for w in &case.why {
            let _ = writeln!(out, "# {w}");
        }
        let verdict = match case.verdict {
            Verdict::Accept => "accept",
            Verdict::Reject => "reject",
        };
        match &case.datasets {
            Some(d) => {
                let _ = writeln!(out, "{verdict} {d}");
            }
            None => {
                let _ = writeln!(out, "{verdict}");
            }
        }
        let _ = writeln!(out, "{}\n----", case.sql);
        for l in actual {
            let _ = writeln!(out, "{l}");
        }
    }
    out
}

async fn outcome(case: &Case) -> (Verdict, Vec<String>) {
    let catalog = fixture::catalog();
    let datasets: Vec<&str> = match &case.datasets {
        Some(d) => d.split(',').map(str::trim).collect(),
        None => fixture::ALL.to_vec(),
    };
    let ctx = PolicyContext::new(catalog, &datasets, Variant::Real, None, PolicyConfig::default()).expect("views");
    match ctx.check(&case.sql).await {
        Ok(checked) => (Verdict::Accept, checked.columns.iter().map(ToString::to_string).collect()),
        Err(e) => (Verdict::Reject, e.to_string().lines().map(str::to_owned).collect()),
    }
}

#[tokio::test]
async fn policy_cases() {
    let bless = std::env::var_os("BLESS").is_some();
    let dir =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR")).join("tests/cases");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "policy"))
        .collect();
    files.sort();
    let (mut total, mut accepted, mut failures) = (0, 0, Vec::new());
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let cases = parse(&path, &text);
        let mut actual = Vec::new();
        for case in &cases {
            total += 1;
            let (verdict, lines) = outcome(case).await;
            accepted += usize::from(case.verdict == Verdict::Accept);
            let name = format!("{}:{}", path.file_name().unwrap().to_string_lossy(), case.line);
            if verdict != case.verdict {
                failures.push(format!(
                    "{name}: expected {:?}, got {verdict:?}:\n  {}\n  {}",
                    case.verdict,
                    case.sql,
                    lines.join("\n  ")
                ));
                actual.push(case.expected.clone());
                continue;
            }
            if lines != case.expected && !bless {
                failures.push(format!(
                    "{name}: {}\n  expected: {}\n  actual:   {}",
                    case.sql,
                    case.expected.join("\n            "),
                    lines.join("\n            ")
                ));
            }
            actual.push(lines);
        }
        if bless {
            std::fs::write(&path, render(&cases, &actual)).unwrap();
        }
    }
    assert!(failures.is_empty(), "{} of {total} policy cases failed:\n\n{}", failures.len(), failures.join("\n\n"));
    assert!(total >= 60 && accepted >= 20 && total - accepted >= 30, "too few cases: {total} ({accepted} accepted)");
}
