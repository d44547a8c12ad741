//! One test per class of catalog problem: the problem is found, with its kind and line, and a
//! catalog with any problem cannot be opened.

use arrow_schema::DataType;
use sandbox_catalog::{Catalog, CatalogError, Level, ProblemKind, Variant};

use crate::{ENTRY, Fixture, write_shops};

/// The only problem of a fixture, as (kind, line).
fn single(fixture: &Fixture) -> (ProblemKind, Option<usize>) {
    let problems = fixture.problems();
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(matches!(Catalog::open(fixture.dir.path()), Err(CatalogError::Invalid(_))), "open refuses it");
    (problems[0].kind.clone(), problems[0].line)
}

#[test]
fn a_valid_catalog_opens() {
    let fixture = Fixture::new(str::to_owned);
    assert!(fixture.problems().is_empty());
    let catalog = Catalog::open(fixture.dir.path()).unwrap();
    let shops = catalog.dataset("shops").unwrap();
    assert_eq!(shops.level, Level::General);
    assert_eq!(shops.sub_level, Some(2));
    assert_eq!(shops.row_count(Variant::Real).unwrap(), Some(3));
    assert_eq!(shops.files[0].path, fixture.path("data/shops.parquet"));
    assert!(matches!(catalog.dataset("nope"), Err(CatalogError::UnknownDataset(_))));
}

#[test]
fn chinese_terms_are_accepted_for_coded_values() {
    let fixture = Fixture::new(|e| {
        e.replace("level = \"general\"", "level = \"一般\"")
            .replace("sharing = \"conditional\"", "sharing = \"有条件共享\"")
            .replace("constraint = \"group_by_only\"", "constraint = \"仅限分组\"")
    });
    assert!(fixture.problems().is_empty(), "{:#?}", fixture.problems());
}

#[test]
fn problems_print_as_file_line_message() {
    let fixture = Fixture::new(|e| e.replace("constraint = \"group_by_only\"", "constraint = \"group_only\""));
    let problem = &fixture.problems()[0];
    let text = problem.to_string();
    let expected = format!("{}:24: unknown constraint \"group_only\"", fixture.path("shops.toml").display());
    assert!(text.starts_with(&expected), "{text}");
    assert!(text.contains("未知的列约束"), "Chinese too: {text}");
}

#[test]
fn toml_syntax_errors() {
    let fixture = Fixture::new(|e| e.replace("open = \"none\"", "open = \"none"));
    let (kind, line) = single(&fixture);
    assert!(matches!(kind, ProblemKind::Syntax(_)), "{kind:?}");
    assert_eq!(line, Some(8));
}

#[test]
fn missing_and_unknown_fields() {
    let fixture = Fixture::new(|e| e.replace("privacy_unit = \"shop_id\"\n", ""));
    let (kind, _) = single(&fixture);
    assert!(matches!(kind, ProblemKind::Structure(ref m) if m.contains("privacy_unit")), "{kind:?}");

    let fixture = Fixture::new(|e| e.replace("open = \"none\"", "open = \"none\"\nowner = \"me\""));
    let (kind, line) = single(&fixture);
    assert!(matches!(kind, ProblemKind::Structure(ref m) if m.contains("owner")), "{kind:?}");
    assert_eq!(line, Some(9));
}

#[test]
fn unreadable_entries() {
    let fixture = Fixture::new(str::to_owned);
    std::fs::write(fixture.path("shops.toml"), b"id = \"\xff\xfe\"").unwrap();
    let (kind, line) = single(&fixture);
    assert!(matches!(kind, ProblemKind::Unreadable(_)), "{kind:?}");
    assert_eq!(line, None);
}

#[test]
fn invalid_dataset_ids() {
    for id in ["Shops", "1shops", "shop-s", "_shops", ""] {
        let fixture = Fixture::new(|e| e.replace("id = \"shops\"", &format!("id = \"{id}\"")));
        let (kind, line) = single(&fixture);
        assert_eq!(kind, ProblemKind::InvalidId(id.to_owned()));
        assert_eq!(line, Some(2));
    }
}

#[test]
fn duplicate_dataset_ids() {
    let fixture = Fixture::new(str::to_owned);
    std::fs::write(fixture.path("shops_again.toml"), ENTRY).unwrap();
    let (kind, line) = single(&fixture);
    assert!(matches!(kind, ProblemKind::DuplicateId { ref id, .. } if id == "shops"), "{kind:?}");
    assert_eq!(line, Some(2));
}

#[test]
fn unknown_coded_values() {
    for (from, to, field, line) in [
        ("level = \"general\"", "level = \"secret\"", "level", 5),
        ("sharing = \"conditional\"", "sharing = \"maybe\"", "sharing", 7),
        ("open = \"none\"", "open = \"closed\"", "open", 8),
        ("update_frequency = \"monthly\"", "update_frequency = \"fortnightly\"", "update_frequency", 9),
        ("format = \"parquet\"", "format = \"xlsx\"", "format", 11),
    ] {
        let fixture = Fixture::new(|e| e.replace(from, to));
        let (kind, at) = single(&fixture);
        assert!(matches!(kind, ProblemKind::UnknownValue { field: f, .. } if f == field), "{kind:?}");
        assert_eq!(at, Some(line), "{field}");
    }
}

#[test]
fn unknown_constraints_and_types_are_all_reported() {
    let fixture = Fixture::new(|e| {
        e.replace("constraint = \"aggregate_only\"", "constraint = \"sum_only\"")
            .replace("type = \"int64\"", "type = \"money\"")
            .replace("constraint = \"pseudonymized\"", "constraint = \"hashed\"")
    });
    let problems = fixture.problems();
    let kinds: Vec<_> = problems.iter().map(|p| (p.kind.clone(), p.line)).collect();
    assert_eq!(
        kinds,
        [
            (ProblemKind::UnknownConstraint("hashed".into()), Some(18)),
            (ProblemKind::UnknownType("money".into()), Some(29)),
            (ProblemKind::UnknownConstraint("sum_only".into()), Some(30)),
        ]
    );
}

#[test]
fn decimal_types_are_checked() {
    for (ty, ok) in
        [("decimal(18,2)", true), ("decimal(0,0)", false), ("decimal(10,11)", false), ("decimal(39,2)", false)]
    {
        let fixture = Fixture::new(|e| e.replace("type = \"int64\"", &format!("type = \"{ty}\"")));
        let problems = fixture.problems();
        let unknown = problems.iter().any(|p| matches!(p.kind, ProblemKind::UnknownType(_)));
        assert_eq!(!unknown, ok, "{ty}: {problems:#?}");
    }
}

#[test]
fn core_data_is_refused() {
    for spelling in ["core", "核心"] {
        let fixture = Fixture::new(|e| e.replace("level = \"general\"", &format!("level = \"{spelling}\"")));
        assert_eq!(single(&fixture), (ProblemKind::CoreData, Some(5)));
    }
}

#[test]
fn sub_levels_are_one_to_four() {
    for n in [0, 5, -1] {
        let fixture = Fixture::new(|e| e.replace("sub_level = 2", &format!("sub_level = {n}")));
        assert_eq!(single(&fixture), (ProblemKind::InvalidSubLevel(n), Some(6)));
    }
}

#[test]
fn invalid_and_duplicate_column_names() {
    let fixture = Fixture::new(|e| e.replace("name = \"district\"", "name = \"District\""));
    let problems = fixture.problems();
    assert_eq!(problems[0].kind, ProblemKind::InvalidColumnName("District".into()));
    assert_eq!(problems[0].line, Some(22));

    let fixture = Fixture::new(|e| e.replace("name = \"district\"", "name = \"shop_id\""));
    let problems = fixture.problems();
    assert_eq!(
        (problems[0].kind.clone(), problems[0].line),
        (ProblemKind::DuplicateColumn("shop_id".into()), Some(22))
    );
}

#[test]
fn entries_need_columns_and_files() {
    let without_columns = ENTRY[..ENTRY.find("[[columns]]").unwrap()].to_owned() + "columns = []\n";
    let fixture = Fixture::new(|_| without_columns.clone());
    let problems = fixture.problems();
    assert!(problems.iter().any(|p| p.kind == ProblemKind::NoColumns), "{problems:#?}");

    let fixture = Fixture::new(|e| e.replace("files = [\"data/shops.parquet\"]", "files = []"));
    assert_eq!(single(&fixture), (ProblemKind::NoFiles, Some(12)));
}

#[test]
fn privacy_unit_must_be_a_column() {
    let fixture = Fixture::new(|e| e.replace("privacy_unit = \"shop_id\"", "privacy_unit = \"owner_id\""));
    assert_eq!(single(&fixture), (ProblemKind::UnknownPrivacyUnit("owner_id".into()), Some(10)));
}

#[test]
fn missing_files() {
    let fixture = Fixture::new(str::to_owned);
    std::fs::remove_file(fixture.path("twin/shops.parquet")).unwrap();
    assert_eq!(single(&fixture), (ProblemKind::MissingFile("twin/shops.parquet".into()), Some(13)));
}

#[test]
fn corrupt_footers_are_found_when_opening() {
    let fixture = Fixture::new(str::to_owned);
    std::fs::write(fixture.path("data/shops.parquet"), b"this is not parquet").unwrap();
    let (kind, line) = single(&fixture);
    assert!(matches!(kind, ProblemKind::CorruptFile { ref file, .. } if file == "data/shops.parquet"), "{kind:?}");
    assert_eq!(line, Some(12));
}

#[test]
fn corrupt_pages_are_found_only_by_check() {
    let fixture = Fixture::new(str::to_owned);
    let path = fixture.path("data/shops.parquet");
    let mut bytes = std::fs::read(&path).unwrap();
    // The first page header starts right after the 4-byte magic number.
    bytes[4..20].fill(0xff);
    std::fs::write(&path, bytes).unwrap();
    assert!(Catalog::open(fixture.dir.path()).is_ok(), "the footer and schema are intact");
    let problems = fixture.problems();
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(matches!(problems[0].kind, ProblemKind::CorruptFile { .. }), "{problems:#?}");
}

#[test]
fn columns_missing_from_or_undeclared_in_files() {
    let fixture = Fixture::new(|e| {
        let extra = "\n[[columns]]\nname = \"owner\"\ntype = \"string\"\nconstraint = \"forbidden\"\ndescription = { zh = \"业主\", en = \"Owner\" }\n";
        format!("{e}{extra}")
    });
    let problems = fixture.problems();
    assert_eq!(problems.len(), 2, "real and twin: {problems:#?}");
    assert!(problems.iter().all(|p| p.line == Some(34)));
    assert!(matches!(problems[0].kind, ProblemKind::MissingColumn { ref column, .. } if column == "owner"));

    let fixture = Fixture::new(|e| e[..e.rfind("[[columns]]").unwrap()].to_owned());
    let problems = fixture.problems();
    let kinds: Vec<_> = problems.iter().map(|p| (p.kind.clone(), p.line)).collect();
    assert_eq!(
        kinds,
        [
            (ProblemKind::UndeclaredColumn { column: "turnover".into(), file: "data/shops.parquet".into() }, Some(12)),
            (ProblemKind::UndeclaredColumn { column: "turnover".into(), file: "twin/shops.parquet".into() }, Some(13)),
        ]
    );
}

#[test]
fn type_mismatches() {
    let fixture = Fixture::new(str::to_owned);
    write_shops(&fixture.path("twin/shops.parquet"), DataType::Int32, Variant::Twin);
    let (kind, line) = single(&fixture);
    assert_eq!(
        kind,
        ProblemKind::TypeMismatch {
            column: "turnover".into(),
            declared: "int64".into(),
            found: "Int32".into(),
            file: "twin/shops.parquet".into(),
        }
    );
    assert_eq!(line, Some(29));
}

/// The entry of a CSV dataset with the given data.
fn csv_fixture(csv: &str) -> Fixture {
    let fixture = Fixture::new(|e| {
        e.replace("format = \"parquet\"", "format = \"csv\"")
            .replace("files = [\"data/shops.parquet\"]", "files = [\"data/shops.csv\"]")
            .replace("twin_files = [\"twin/shops.parquet\"]\n", "")
    });
    std::fs::write(fixture.path("data/shops.csv"), csv).unwrap();
    fixture
}

#[test]
fn csv_data_is_checked_against_the_declared_columns() {
    let fixture = csv_fixture("shop_id,district,turnover\ns1,150202,10\ns2,150203,20\n");
    assert!(fixture.problems().is_empty(), "{:#?}", fixture.problems());

    let fixture = csv_fixture("shop_id,turnover,district\ns1,10,150202\n");
    let problems = fixture.problems();
    assert_eq!(problems.len(), 1);
    assert!(matches!(problems[0].kind, ProblemKind::CsvHeader { .. }));
    assert_eq!((problems[0].file.clone(), problems[0].line), (fixture.path("data/shops.csv"), Some(1)));

    let fixture = csv_fixture("shop_id,district,turnover\ns1,150202,10\ns2,150203,lots\n");
    assert!(Catalog::open(fixture.dir.path()).is_ok(), "values are only read by check");
    let problems = fixture.problems();
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(matches!(problems[0].kind, ProblemKind::CsvValue(ref m) if m.contains("lots")), "{problems:#?}");
    assert_eq!((problems[0].file.clone(), problems[0].line), (fixture.path("data/shops.csv"), Some(3)));
}

#[test]
fn a_missing_catalog_folder_is_an_error_not_a_problem() {
    let err = sandbox_catalog::check(std::path::Path::new("/nonexistent/catalog")).unwrap_err();
    assert!(matches!(err, CatalogError::Io { .. }), "{err}");
}
