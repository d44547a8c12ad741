//! The public data resource catalog (公共数据资源目录): one TOML entry per dataset, describing
//! its classification, sharing and open attributes, provider, privacy unit, data files, and the
//! constraint on each column that the policy views enforce.
//!
//! This crate reads and checks entries and hashes data files. It never exposes a data value: it
//! reads data only to check it against its entry.

mod entry;
mod files;
mod model;
mod problem;
mod twin;
mod version;

use std::path::{Path, PathBuf};

pub use model::{
    Classification, Column, ColumnType, Constraint, DataFile, Dataset, FileFormat, Grain, Level, Openness, Sharing,
    Text, UpdateFrequency, Variant,
};
pub use problem::{Problem, ProblemKind};
pub use twin::{RealTwin, Sameness};
pub use version::{DatasetVersion, FileStamp};

use entry::Entry;
use files::Depth;

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot read catalog folder {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("the catalog has {} problem(s); run `sandbox catalog check` to list them:\n{}", .0.len(), list(.0))]
    Invalid(Vec<Problem>),
    #[error("no dataset {0:?} in the catalog")]
    UnknownDataset(String),
}

fn list(problems: &[Problem]) -> String {
    problems.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n")
}

/// A checked catalog: every entry parsed and its files present with the declared schema.
#[derive(Debug, Clone)]
pub struct Catalog {
    pub dir: PathBuf,
    /// Sorted by id.
    pub datasets: Vec<Dataset>,
}

impl Catalog {
    /// Reads every `*.toml` entry in `dir` and checks it against its files' schemas (not every
    /// value: that is [`check`]'s job). Any problem makes the whole catalog unusable.
    pub fn open(dir: &Path) -> Result<Catalog, CatalogError> {
        let (entries, problems) = read(dir, Depth::Schema)?;
        if !problems.is_empty() {
            return Err(CatalogError::Invalid(problems));
        }
        let datasets = entries.into_iter().map(|e| e.dataset).collect();
        Ok(Catalog { dir: dir.to_path_buf(), datasets })
    }

    pub fn dataset(&self, id: &str) -> Result<&Dataset, CatalogError> {
        self.datasets.iter().find(|d| d.id == id).ok_or_else(|| CatalogError::UnknownDataset(id.to_owned()))
    }
}

/// What `sandbox catalog check` prints: every problem in every entry and file.
#[derive(Debug)]
pub struct CheckReport {
    /// Entries that parsed, whether or not their files have problems.
    pub entries: usize,
    pub problems: Vec<Problem>,
}

/// Checks every entry in `dir` and decodes every value of every data file.
pub fn check(dir: &Path) -> Result<CheckReport, CatalogError> {
    let (entries, problems) = read(dir, Depth::Full)?;
    Ok(CheckReport { entries: entries.len(), problems })
}

fn read(dir: &Path, depth: Depth) -> Result<(Vec<Entry>, Vec<Problem>), CatalogError> {
    let io = |source| CatalogError::Io { path: dir.to_path_buf(), source };
    let mut paths = Vec::new();
    for item in std::fs::read_dir(dir).map_err(io)? {
        let path = item.map_err(io)?.path();
        if path.extension().is_some_and(|e| e == "toml") && path.is_file() {
            paths.push(path);
        }
    }
    paths.sort();

    let mut problems = Vec::new();
    let mut entries: Vec<Entry> = Vec::new();
    for path in &paths {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                problems.push(Problem::new(path, None, ProblemKind::Unreadable(e.to_string())));
                continue;
            }
        };
        match entry::parse(path, &text) {
            Ok(entry) => {
                let id = &entry.dataset.id;
                if let Some(first) = entries.iter().find(|e| &e.dataset.id == id) {
                    let other = first.dataset.entry.display().to_string();
                    let kind = ProblemKind::DuplicateId { id: id.clone(), other };
                    problems.push(Problem::new(path, Some(entry.lines.id), kind));
                    continue;
                }
                files::check(&entry, depth, &mut problems);
                entries.push(entry);
            }
            Err(mut found) => problems.append(&mut found),
        }
    }
    entries.sort_by(|a, b| a.dataset.id.cmp(&b.dataset.id));
    Ok((entries, problems))
}
