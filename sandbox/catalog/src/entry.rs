//! Reading one catalog entry (a TOML file) into a [`Dataset`], keeping the line of every value
//! so that problems found later, in the data files, point back at the entry.
//!
//! Enumerated values are read as strings and checked here rather than by serde, so that one pass
//! reports every bad value in a file instead of stopping at the first.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use crate::problem::{Problem, ProblemKind};
use crate::{Classification, Column, ColumnType, Constraint, DataFile, Dataset, FileFormat, Grain, Level, Openness};
use crate::{Sharing, Text, UpdateFrequency, Variant};

/// A parsed entry and where its values sit in the file.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) dataset: Dataset,
    pub(crate) lines: Lines,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Lines {
    pub(crate) id: usize,
    pub(crate) files: usize,
    pub(crate) twin_files: usize,
    /// Column name → (line of its name, line of its type).
    pub(crate) columns: HashMap<String, (usize, usize)>,
}

impl Lines {
    pub(crate) fn files(&self, variant: Variant) -> usize {
        match variant {
            Variant::Real => self.files,
            Variant::Twin => self.twin_files,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    id: Spanned<String>,
    title: Text,
    provider: Text,
    level: Spanned<String>,
    sub_level: Option<Spanned<i64>>,
    sharing: Spanned<String>,
    open: Spanned<String>,
    update_frequency: Spanned<String>,
    privacy_unit: Spanned<String>,
    format: Spanned<String>,
    files: Spanned<Vec<String>>,
    twin_files: Option<Spanned<Vec<String>>>,
    columns: Spanned<Vec<RawColumn>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawColumn {
    name: Spanned<String>,
    #[serde(rename = "type")]
    data_type: Spanned<String>,
    constraint: Spanned<String>,
    description: Text,
    classification: Option<Spanned<RawClassification>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClassification {
    grains: Option<Spanned<Vec<Spanned<String>>>>,
    edges: Option<Spanned<Vec<Spanned<f64>>>>,
}

/// Parses `text`, the contents of `path`. Returns every problem found, or the entry.
pub(crate) fn parse(path: &Path, text: &str) -> Result<Entry, Vec<Problem>> {
    let line_of = |offset: usize| 1 + text[..offset.min(text.len())].matches('\n').count();
    let raw: RawEntry = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            let line = e.span().map(|s| line_of(s.start));
            let message = e.message().trim_end().to_owned();
            // A document that is not TOML at all and one with the wrong shape read differently.
            let kind = match toml::from_str::<toml::Table>(text) {
                Err(_) => ProblemKind::Syntax(message),
                Ok(_) => ProblemKind::Structure(message),
            };
            return Err(vec![Problem::new(path, line, kind)]);
        }
    };

    let mut problems = Vec::new();
    let mut problem = |span: std::ops::Range<usize>, kind: ProblemKind| {
        problems.push(Problem::new(path, Some(line_of(span.start)), kind));
    };

    let id = raw.id.get_ref().clone();
    if !is_identifier(&id) || id.starts_with('_') {
        problem(raw.id.span(), ProblemKind::InvalidId(id.clone()));
    }

    let level = parse_coded(&raw.level, "level", Level::parse, Level::expected, &mut problem);
    if level == Some(Level::Core) {
        problem(raw.level.span(), ProblemKind::CoreData);
    }
    let sub_level = match &raw.sub_level {
        Some(s) if (1..=4).contains(s.get_ref()) => Some(*s.get_ref() as u8),
        Some(s) => {
            problem(s.span(), ProblemKind::InvalidSubLevel(*s.get_ref()));
            None
        }
        None => None,
    };
    let sharing = parse_coded(&raw.sharing, "sharing", Sharing::parse, Sharing::expected, &mut problem);
    let open = parse_coded(&raw.open, "open", Openness::parse, Openness::expected, &mut problem);
    let update_frequency = parse_coded(
        &raw.update_frequency,
        "update_frequency",
        UpdateFrequency::parse,
        UpdateFrequency::expected,
        &mut problem,
    );
    let format = parse_coded(&raw.format, "format", FileFormat::parse, FileFormat::expected, &mut problem);

    let mut lines = Lines { id: line_of(raw.id.span().start), ..Lines::default() };
    let mut columns = Vec::new();
    if raw.columns.get_ref().is_empty() {
        problem(raw.columns.span(), ProblemKind::NoColumns);
    }
    for c in raw.columns.into_inner() {
        let name = c.name.get_ref().clone();
        if !is_identifier(&name) {
            problem(c.name.span(), ProblemKind::InvalidColumnName(name.clone()));
        }
        if lines.columns.contains_key(&name) {
            problem(c.name.span(), ProblemKind::DuplicateColumn(name.clone()));
        }
        lines.columns.insert(name.clone(), (line_of(c.name.span().start), line_of(c.data_type.span().start)));
        let data_type = ColumnType::parse(c.data_type.get_ref());
        if data_type.is_none() {
            problem(c.data_type.span(), ProblemKind::UnknownType(c.data_type.get_ref().clone()));
        }
        let constraint = Constraint::parse(c.constraint.get_ref());
        if constraint.is_none() {
            problem(c.constraint.span(), ProblemKind::UnknownConstraint(c.constraint.get_ref().clone()));
        }
        let classification =
            c.classification.and_then(|raw| parse_classification(&name, raw, data_type, constraint, &mut problem));
        if let (Some(data_type), Some(constraint)) = (data_type, constraint) {
            columns.push(Column { name, data_type, constraint, description: c.description, classification });
        }
    }

    let privacy_unit = raw.privacy_unit.get_ref().clone();
    if !lines.columns.contains_key(&privacy_unit) {
        problem(raw.privacy_unit.span(), ProblemKind::UnknownPrivacyUnit(privacy_unit.clone()));
    }

    if raw.files.get_ref().is_empty() {
        problem(raw.files.span(), ProblemKind::NoFiles);
    }
    lines.files = line_of(raw.files.span().start);
    let folder = path.parent().unwrap_or(Path::new("."));
    let resolve = |names: Vec<String>| -> Vec<DataFile> {
        names.into_iter().map(|name| DataFile { path: folder.join(&name), name }).collect()
    };
    let files = resolve(raw.files.into_inner());
    let twin_files = match raw.twin_files {
        Some(t) => {
            lines.twin_files = line_of(t.span().start);
            resolve(t.into_inner())
        }
        None => Vec::new(),
    };

    match (level, sharing, open, update_frequency, format) {
        (Some(level), Some(sharing), Some(open), Some(update_frequency), Some(format)) if problems.is_empty() => {
            let dataset = Dataset {
                id,
                title: raw.title,
                provider: raw.provider,
                level,
                sub_level,
                sharing,
                open,
                update_frequency,
                privacy_unit,
                format,
                files,
                twin_files,
                columns,
                entry: path.to_path_buf(),
            };
            Ok(Entry { dataset, lines })
        }
        _ => Err(problems),
    }
}

fn parse_coded<T>(
    value: &Spanned<String>,
    field: &'static str,
    parse: fn(&str) -> Option<T>,
    expected: fn() -> String,
    problem: &mut impl FnMut(std::ops::Range<usize>, ProblemKind),
) -> Option<T> {
    let parsed = parse(value.get_ref());
    if parsed.is_none() {
        let kind = ProblemKind::UnknownValue { field, value: value.get_ref().clone(), expected: expected() };
        problem(value.span(), kind);
    }
    parsed
}

/// Checks a column's published classification on its own and against the column's type and
/// constraint (where those parsed). Whatever it returns is used only if the entry has no problem.
fn parse_classification(
    column: &str,
    raw: Spanned<RawClassification>,
    data_type: Option<ColumnType>,
    constraint: Option<Constraint>,
    problem: &mut impl FnMut(std::ops::Range<usize>, ProblemKind),
) -> Option<Classification> {
    let at = raw.span();
    let raw = raw.into_inner();
    let column_name = || column.to_owned();
    if let Some(constraint @ (Constraint::Pseudonymized | Constraint::Forbidden)) = constraint {
        problem(at.clone(), ProblemKind::ClassificationNotBanded { column: column_name(), constraint });
    }
    match (raw.grains, raw.edges) {
        (Some(grains), None) => {
            if let Some(t) = data_type.filter(|t| !t.is_temporal()) {
                problem(at, ProblemKind::GrainsNeedDates { column: column_name(), data_type: t.to_string() });
            }
            if grains.get_ref().is_empty() {
                problem(grains.span(), ProblemKind::EmptyClassification { column: column_name(), key: "grains" });
            }
            let mut parsed = Vec::new();
            for grain in grains.into_inner() {
                let written = || grain.get_ref().clone();
                match Grain::parse(grain.get_ref()) {
                    None => {
                        problem(grain.span(), ProblemKind::UnknownGrain { column: column_name(), grain: written() })
                    }
                    Some(g) if parsed.contains(&g) => {
                        problem(grain.span(), ProblemKind::DuplicateGrain { column: column_name(), grain: written() })
                    }
                    Some(g) => parsed.push(g),
                }
            }
            Some(Classification::Grains(parsed))
        }
        (None, Some(edges)) => {
            if let Some(t) = data_type.filter(|t| !t.is_numeric()) {
                problem(at, ProblemKind::EdgesNeedNumbers { column: column_name(), data_type: t.to_string() });
            }
            if edges.get_ref().is_empty() {
                problem(edges.span(), ProblemKind::EmptyClassification { column: column_name(), key: "edges" });
            }
            let mut parsed: Vec<f64> = Vec::new();
            for edge in edges.into_inner() {
                let value = *edge.get_ref();
                if !value.is_finite() {
                    problem(edge.span(), ProblemKind::NonFiniteEdge { column: column_name(), edge: value.to_string() });
                    continue;
                }
                if let Some(&previous) = parsed.last().filter(|&&p| value <= p) {
                    let kind = ProblemKind::EdgesNotIncreasing {
                        column: column_name(),
                        edge: value.to_string(),
                        previous: previous.to_string(),
                    };
                    problem(edge.span(), kind);
                }
                parsed.push(value);
            }
            Some(Classification::Edges(parsed))
        }
        _ => {
            problem(at, ProblemKind::ClassificationNeedsOne(column_name()));
            None
        }
    }
}

/// Names that SQL reads without quotes and DataFusion does not fold: `[a-z_][a-z0-9_]*`.
pub(crate) fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some('a'..='z' | '_'))
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
        && s.len() <= 63
}
