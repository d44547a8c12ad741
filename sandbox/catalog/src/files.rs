//! Checks an entry against its data files: that they exist, are readable in the declared format,
//! and hold exactly the declared columns with compatible types.
//!
//! `Depth::Schema` reads only what a Parquet footer or CSV header says; `Depth::Full` also decodes
//! every value, which is what finds a corrupt page or a CSV cell that does not parse, and
//! compares the twin files with the real ones (see `twin.rs`).

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::sync::Arc;

use arrow_schema::Schema;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::entry::Entry;
use crate::problem::{Problem, ProblemKind};
use crate::{DataFile, FileFormat, Variant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Depth {
    Schema,
    Full,
}

pub(crate) fn check(entry: &Entry, depth: Depth, problems: &mut Vec<Problem>) {
    for variant in [Variant::Real, Variant::Twin] {
        for file in entry.dataset.files(variant) {
            check_file(entry, variant, file, depth, problems);
        }
    }
    // Only a full check looks for a twin that is real data: opening a catalog stays as cheap as
    // reading footers, and `sandbox_policy::files_table` refuses such a twin whenever one is
    // opened for a query. An I/O error here is a missing or unreadable file, which
    // `check_file` has already reported.
    if depth == Depth::Full
        && let Ok(Some(twin)) = entry.dataset.twin_is_real()
    {
        let line = Some(entry.lines.twin_files);
        problems.push(Problem::new(&entry.dataset.entry, line, ProblemKind::RealTwin(twin)));
    }
}

fn check_file(entry: &Entry, variant: Variant, file: &DataFile, depth: Depth, problems: &mut Vec<Problem>) {
    let ds = &entry.dataset;
    let at_files = |kind| Problem::new(&ds.entry, Some(entry.lines.files(variant)), kind);
    let handle = match File::open(&file.path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            problems.push(at_files(ProblemKind::MissingFile(file.name.clone())));
            return;
        }
        Err(e) => {
            let kind = ProblemKind::CorruptFile { file: file.name.clone(), detail: e.to_string() };
            problems.push(at_files(kind));
            return;
        }
    };
    let corrupt = |detail: String| at_files(ProblemKind::CorruptFile { file: file.name.clone(), detail });

    match ds.format {
        FileFormat::Parquet => {
            let builder = match ParquetRecordBatchReaderBuilder::try_new(handle) {
                Ok(b) => b,
                Err(e) => return problems.push(corrupt(e.to_string())),
            };
            let before = problems.len();
            compare_schema(entry, variant, file, builder.schema(), problems);
            if depth == Depth::Full && problems.len() == before {
                let reader = match builder.build() {
                    Ok(r) => r,
                    Err(e) => return problems.push(corrupt(e.to_string())),
                };
                for batch in reader {
                    if let Err(e) = batch {
                        problems.push(corrupt(e.to_string()));
                        break;
                    }
                }
            }
        }
        FileFormat::Csv => {
            let mut header = String::new();
            let mut reader = BufReader::new(handle);
            if let Err(e) = reader.read_line(&mut header) {
                return problems.push(corrupt(e.to_string()));
            }
            let found: Vec<&str> = header.trim_end_matches(['\r', '\n']).split(',').map(str::trim).collect();
            let expected: Vec<&str> = ds.columns.iter().map(|c| c.name.as_str()).collect();
            if found != expected {
                let kind = ProblemKind::CsvHeader { expected: expected.join(", "), found: found.join(", ") };
                problems.push(Problem::new(&file.path, Some(1), kind));
                return;
            }
            if depth == Depth::Full {
                check_csv_values(entry, file, problems);
            }
        }
    }
}

fn compare_schema(entry: &Entry, variant: Variant, file: &DataFile, found: &Arc<Schema>, problems: &mut Vec<Problem>) {
    let ds = &entry.dataset;
    for column in &ds.columns {
        let (name_line, type_line) = entry.lines.columns[&column.name];
        match found.field_with_name(&column.name) {
            Err(_) => problems.push(Problem::new(
                &ds.entry,
                Some(name_line),
                ProblemKind::MissingColumn { column: column.name.clone(), file: file.name.clone() },
            )),
            Ok(field) if !column.data_type.accepts(field.data_type()) => problems.push(Problem::new(
                &ds.entry,
                Some(type_line),
                ProblemKind::TypeMismatch {
                    column: column.name.clone(),
                    declared: column.data_type.to_string(),
                    found: field.data_type().to_string(),
                    file: file.name.clone(),
                },
            )),
            Ok(_) => {}
        }
    }
    for field in found.fields() {
        if ds.column(field.name()).is_none() {
            problems.push(Problem::new(
                &ds.entry,
                Some(entry.lines.files(variant)),
                ProblemKind::UndeclaredColumn { column: field.name().clone(), file: file.name.clone() },
            ));
        }
    }
}

/// Parses every CSV value into its declared type. The problem points at the CSV line.
fn check_csv_values(entry: &Entry, file: &DataFile, problems: &mut Vec<Problem>) {
    let schema = Arc::new(entry.dataset.arrow_schema());
    let reader = File::open(&file.path)
        .map_err(|e| e.to_string())
        .and_then(|f| arrow_csv::ReaderBuilder::new(schema).with_header(true).build(f).map_err(|e| e.to_string()));
    let reader = match reader {
        Ok(r) => r,
        Err(detail) => {
            let kind = ProblemKind::CorruptFile { file: file.name.clone(), detail };
            return problems.push(Problem::new(&entry.dataset.entry, Some(entry.lines.files), kind));
        }
    };
    for batch in reader {
        if let Err(e) = batch {
            let message = e.to_string();
            problems.push(Problem::new(&file.path, csv_line(&message), ProblemKind::CsvValue(message)));
            return;
        }
    }
}

/// arrow-csv names the failing line in its message ("... at line 7"), counting from 0 with the
/// header as line 0; lift it out as a 1-based file line.
fn csv_line(message: &str) -> Option<usize> {
    let rest = &message[message.find(" at line ")? + 9..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse::<usize>().ok().map(|n| n + 1)
}
