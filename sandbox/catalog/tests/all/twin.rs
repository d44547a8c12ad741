//! A twin that is the real data (the same file, or a copy of its bytes) is refused by
//! `catalog check`; a twin that merely has the same size is not.

use sandbox_catalog::{Catalog, ProblemKind, RealTwin, Sameness};

use crate::Fixture;

fn twin(fixture: &Fixture) -> Option<RealTwin> {
    Catalog::open(fixture.dir.path()).unwrap().dataset("shops").unwrap().twin_is_real().unwrap()
}

/// Asserts that `check` reports exactly `expected`, at the `twin_files` line, in both languages.
fn refused(fixture: &Fixture, expected: RealTwin) {
    let problems = fixture.problems();
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!((&problems[0].kind, problems[0].line), (&ProblemKind::RealTwin(expected.clone()), Some(13)));
    let text = problems[0].to_string();
    assert!(text.contains("without an output audit") && text.contains("不经出域审核"), "{text}");
    // Opening stays cheap and leaves the twin to whoever opens it for a query.
    assert_eq!(twin(fixture), Some(expected));
}

#[test]
fn a_twin_that_is_the_real_path_is_refused() {
    for spelling in ["data/shops.parquet", "twin/../data/shops.parquet", "./data/shops.parquet"] {
        let fixture = Fixture::new(|e| {
            e.replace("twin_files = [\"twin/shops.parquet\"]", &format!("twin_files = [\"{spelling}\"]"))
        });
        let expected = RealTwin { twin: spelling.into(), real: "data/shops.parquet".into(), same: Sameness::Path };
        refused(&fixture, expected);
        assert!(fixture.problems()[0].to_string().contains(&format!("twin file {spelling} is the real file")));
    }
}

#[test]
fn a_twin_linked_to_the_real_file_is_refused() {
    let fixture = Fixture::new(str::to_owned);
    let twin = fixture.path("twin/shops.parquet");
    std::fs::remove_file(&twin).unwrap();
    std::os::unix::fs::symlink(fixture.path("data/shops.parquet"), &twin).unwrap();
    let expected =
        RealTwin { twin: "twin/shops.parquet".into(), real: "data/shops.parquet".into(), same: Sameness::Path };
    refused(&fixture, expected);
}

#[test]
fn a_twin_that_copies_the_real_bytes_is_refused() {
    let fixture = Fixture::new(|e| {
        e.replace("files = [\"data/shops.parquet\"]", "files = [\"data/other.parquet\", \"data/shops.parquet\"]")
    });
    std::fs::copy(fixture.path("twin/shops.parquet"), fixture.path("data/other.parquet")).unwrap();
    std::fs::copy(fixture.path("data/shops.parquet"), fixture.path("twin/shops.parquet")).unwrap();
    let expected =
        RealTwin { twin: "twin/shops.parquet".into(), real: "data/shops.parquet".into(), same: Sameness::Bytes };
    refused(&fixture, expected);
    assert!(fixture.problems()[0].to_string().contains("has the same bytes as the real file data/shops.parquet"));
}

#[test]
fn a_twin_of_the_same_size_with_other_bytes_is_accepted() {
    let fixture = Fixture::new(str::to_owned);
    let size = |name| std::fs::metadata(fixture.path(name)).unwrap().len();
    // The fixture's twin differs only in three numbers: the sizes agree, so the bytes are hashed.
    assert_eq!(size("data/shops.parquet"), size("twin/shops.parquet"));
    assert!(fixture.problems().is_empty(), "{:#?}", fixture.problems());
    assert_eq!(twin(&fixture), None);
}

#[test]
fn a_missing_file_is_an_error_not_a_safe_twin() {
    let fixture = Fixture::new(str::to_owned);
    let catalog = Catalog::open(fixture.dir.path()).unwrap();
    std::fs::remove_file(fixture.path("twin/shops.parquet")).unwrap();
    assert!(catalog.dataset("shops").unwrap().twin_is_real().is_err());
    // `check` reports the missing file once, not a second problem for the comparison.
    assert_eq!(fixture.problems().len(), 1);
}
