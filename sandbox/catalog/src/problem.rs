//! Problems found in a catalog, each located at a file and line.

use std::fmt;
use std::path::{Path, PathBuf};

/// One thing wrong with a catalog, where it is, and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The entry file, or the data file for problems inside CSV data.
    pub file: PathBuf,
    /// 1-based line, where one can be named.
    pub line: Option<usize>,
    pub kind: ProblemKind,
}

impl Problem {
    pub(crate) fn new(file: &Path, line: Option<usize>, kind: ProblemKind) -> Problem {
        Problem { file: file.to_path_buf(), line, kind }
    }
}

impl fmt::Display for Problem {
    /// `file:line: message / 中文说明` — one line, so editors and grep can jump to it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(f, ": {} / {}", self.kind, self.kind.zh())
    }
}

/// The classes of problem. Each has a test that produces it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProblemKind {
    #[error("cannot read entry: {0}")]
    Unreadable(String),
    #[error("invalid TOML: {0}")]
    Syntax(String),
    #[error("{0}")]
    Structure(String),
    #[error("invalid dataset id {0:?}: use lowercase letters, digits and '_', starting with a letter")]
    InvalidId(String),
    #[error("dataset id {id:?} is also used by {other}")]
    DuplicateId { id: String, other: String },
    #[error("unknown {field} {value:?} (expected one of {expected})")]
    UnknownValue { field: &'static str, value: String, expected: String },
    #[error(
        "unknown constraint {0:?} (expected one of plaintext, pseudonymized, group_by_only, aggregate_only, compare_only, forbidden)"
    )]
    UnknownConstraint(String),
    #[error("unknown column type {0:?} (expected one of {types})", types = crate::ColumnType::NAMES)]
    UnknownType(String),
    #[error("core data (核心数据) is never admitted to the sandbox")]
    CoreData,
    #[error("sub_level {0} is out of range 1..=4")]
    InvalidSubLevel(i64),
    #[error("invalid column name {0:?}: use lowercase letters, digits and '_', starting with a letter or '_'")]
    InvalidColumnName(String),
    #[error("column {0:?} is declared twice")]
    DuplicateColumn(String),
    #[error("no columns are declared")]
    NoColumns,
    #[error("no data files are listed")]
    NoFiles,
    #[error("privacy unit {0:?} is not a declared column")]
    UnknownPrivacyUnit(String),
    #[error("data file {0} does not exist")]
    MissingFile(String),
    #[error("data file {file} is corrupt: {detail}")]
    CorruptFile { file: String, detail: String },
    #[error("column {column:?} is declared but missing from {file}")]
    MissingColumn { column: String, file: String },
    #[error("{file} has column {column:?}, which is not declared (every column needs a constraint)")]
    UndeclaredColumn { column: String, file: String },
    #[error("column {column:?} is declared {declared} but {file} stores {found}")]
    TypeMismatch { column: String, declared: String, found: String, file: String },
    #[error("CSV header is [{found}], expected the declared columns in order: [{expected}]")]
    CsvHeader { expected: String, found: String },
    #[error("CSV value does not parse: {0}")]
    CsvValue(String),
    #[error("{0}")]
    RealTwin(crate::RealTwin),
    #[error("the classification of column {0:?} needs exactly one of grains or edges")]
    ClassificationNeedsOne(String),
    #[error("the classification of column {column:?} lists no {key}")]
    EmptyClassification { column: String, key: &'static str },
    #[error(
        "unknown grain {grain:?} in the classification of column {column:?} (expected one of year (年), quarter (季度), month (月))"
    )]
    UnknownGrain { column: String, grain: String },
    #[error("grain {grain:?} is listed twice in the classification of column {column:?}")]
    DuplicateGrain { column: String, grain: String },
    #[error("edge {edge} in the classification of column {column:?} is not a finite number")]
    NonFiniteEdge { column: String, edge: String },
    #[error("edges in the classification of column {column:?} must increase strictly, but {edge} follows {previous}")]
    EdgesNotIncreasing { column: String, edge: String, previous: String },
    #[error("column {column:?} is {data_type}: grains classify only date and timestamp columns")]
    GrainsNeedDates { column: String, data_type: String },
    #[error("column {column:?} is {data_type}: edges classify only numeric columns (int*, float*, decimal)")]
    EdgesNeedNumbers { column: String, data_type: String },
    #[error("column {column:?} is {constraint} and never banded: it takes no classification")]
    ClassificationNotBanded { column: String, constraint: crate::Constraint },
}

impl ProblemKind {
    /// The same message for Chinese readers.
    pub fn zh(&self) -> String {
        match self {
            ProblemKind::Unreadable(e) => format!("无法读取目录条目：{e}"),
            ProblemKind::Syntax(e) => format!("TOML 语法错误：{e}"),
            ProblemKind::Structure(e) => format!("条目结构错误：{e}"),
            ProblemKind::InvalidId(id) => format!("数据集标识 {id:?} 无效：只能用小写字母、数字和下划线，且以字母开头"),
            ProblemKind::DuplicateId { id, other } => format!("数据集标识 {id:?} 与 {other} 重复"),
            ProblemKind::UnknownValue { field, value, .. } => format!("{field} 的取值 {value:?} 无效"),
            ProblemKind::UnknownConstraint(c) => format!("未知的列约束 {c:?}"),
            ProblemKind::UnknownType(t) => format!("未知的列类型 {t:?}"),
            ProblemKind::CoreData => "核心数据不得进入沙箱".to_owned(),
            ProblemKind::InvalidSubLevel(n) => format!("分级子级 {n} 超出 1–4 的范围"),
            ProblemKind::InvalidColumnName(n) => format!("列名 {n:?} 无效：只能用小写字母、数字和下划线"),
            ProblemKind::DuplicateColumn(n) => format!("列 {n:?} 重复声明"),
            ProblemKind::NoColumns => "未声明任何列".to_owned(),
            ProblemKind::NoFiles => "未列出数据文件".to_owned(),
            ProblemKind::UnknownPrivacyUnit(n) => format!("隐私单元列 {n:?} 未声明"),
            ProblemKind::MissingFile(f) => format!("数据文件 {f} 不存在"),
            ProblemKind::CorruptFile { file, .. } => format!("数据文件 {file} 已损坏"),
            ProblemKind::MissingColumn { column, file } => format!("已声明的列 {column:?} 在 {file} 中不存在"),
            ProblemKind::UndeclaredColumn { column, file } => {
                format!("{file} 中的列 {column:?} 未在目录中声明（每列都须有约束）")
            }
            ProblemKind::TypeMismatch { column, declared, found, file } => {
                format!("列 {column:?} 声明为 {declared}，但 {file} 中为 {found}")
            }
            ProblemKind::CsvHeader { .. } => "CSV 表头与声明的列（及顺序）不一致".to_owned(),
            ProblemKind::CsvValue(_) => "CSV 数据值无法按声明的类型解析".to_owned(),
            ProblemKind::RealTwin(t) => t.zh(),
            ProblemKind::ClassificationNeedsOne(c) => {
                format!("列 {c:?} 的公开分类须给出 grains（日期粒度）或 edges（分段边界）二者之一")
            }
            ProblemKind::EmptyClassification { column, key } => format!("列 {column:?} 的公开分类 {key} 为空"),
            ProblemKind::UnknownGrain { column, grain } => {
                format!("列 {column:?} 的公开分类中日期粒度 {grain:?} 无效（可用：年、季度、月）")
            }
            ProblemKind::DuplicateGrain { column, grain } => {
                format!("列 {column:?} 的公开分类中日期粒度 {grain:?} 重复")
            }
            ProblemKind::NonFiniteEdge { column, edge } => format!("列 {column:?} 的分段边界 {edge} 不是有限数值"),
            ProblemKind::EdgesNotIncreasing { column, edge, previous } => {
                format!("列 {column:?} 的分段边界须严格递增，但 {edge} 位于 {previous} 之后")
            }
            ProblemKind::GrainsNeedDates { column, data_type } => {
                format!("列 {column:?} 的类型为 {data_type}：日期粒度只适用于日期和时间列")
            }
            ProblemKind::EdgesNeedNumbers { column, data_type } => {
                format!("列 {column:?} 的类型为 {data_type}：分段边界只适用于数值列")
            }
            ProblemKind::ClassificationNotBanded { column, constraint } => {
                format!("列 {column:?} 的约束为{}，从不分段，不能设公开分类", constraint.zh())
            }
        }
    }
}
