//! What a catalog entry says about a dataset, as typed values.
//!
//! Parsing lives in `entry.rs`; this module only names things. Every enum that an entry spells as
//! a string keeps its canonical English spelling here and accepts the Chinese term too, because
//! the people who edit entries are bureau staff.

use std::fmt;
use std::path::PathBuf;

use arrow_schema::{DataType, TimeUnit};
use chrono::{Datelike, NaiveDate};

/// A text in both languages the platform's users read.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Text {
    pub zh: String,
    pub en: String,
}

/// One dataset of the catalog (one TOML file).
#[derive(Debug, Clone)]
pub struct Dataset {
    /// The SQL name of its policy view: lowercase ASCII identifier.
    pub id: String,
    pub title: Text,
    /// 数源部门: the department the data comes from.
    pub provider: Text,
    pub level: Level,
    /// Sub-level within the level (1–4), where the bureau's grading uses one.
    pub sub_level: Option<u8>,
    pub sharing: Sharing,
    pub open: Openness,
    pub update_frequency: UpdateFrequency,
    /// The column whose distinct values are the people or firms the audit protects.
    pub privacy_unit: String,
    pub format: FileFormat,
    /// The real data, resolved against the entry file's folder.
    pub files: Vec<DataFile>,
    /// The synthetic twin operators develop against (same schema, generated data).
    pub twin_files: Vec<DataFile>,
    pub columns: Vec<Column>,
    /// The entry file this dataset was read from.
    pub entry: PathBuf,
}

/// A data file as the entry names it and as it resolves on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataFile {
    /// As written in the entry; this spelling goes into the dataset version.
    pub name: String,
    pub path: PathBuf,
}

/// Which of a dataset's two file sets to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// The real public data: production runs and the bureau's audit.
    Real,
    /// The synthetic twin: development runs.
    Twin,
}

impl Dataset {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    pub fn files(&self, variant: Variant) -> &[DataFile] {
        match variant {
            Variant::Real => &self.files,
            Variant::Twin => &self.twin_files,
        }
    }

    /// The Arrow schema the entry declares, in column order.
    pub fn arrow_schema(&self) -> arrow_schema::Schema {
        arrow_schema::Schema::new(
            self.columns
                .iter()
                .map(|c| arrow_schema::Field::new(&c.name, c.data_type.to_arrow(), true))
                .collect::<Vec<_>>(),
        )
    }
}

/// Not `Eq`: a classification's edges are floating-point numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub data_type: ColumnType,
    pub constraint: Constraint,
    pub description: Text,
    /// 公开分类: the only boundaries at which an output contract may band or filter the column.
    pub classification: Option<Classification>,
}

/// A published classification (公开分类) of one column. Statistical agencies publish tables only
/// on fixed classifications, so that two tables cut at different boundaries cannot be
/// subtracted from each other to isolate the few units between the cuts.
#[derive(Debug, Clone, PartialEq)]
pub enum Classification {
    /// 日期粒度: the calendar periods a date or timestamp column is published by.
    Grains(Vec<Grain>),
    /// 数值分段边界: strictly increasing, finite band edges of a numeric column. The bands are
    /// below the first edge, `[edges[i-1], edges[i])`, and from the last edge up, as the output
    /// contract's `bins` banding reads its edges.
    Edges(Vec<f64>),
}

impl Classification {
    /// Whether dates may be labelled or cut by `grain`.
    pub fn has_grain(&self, grain: Grain) -> bool {
        matches!(self, Classification::Grains(grains) if grains.contains(&grain))
    }

    /// The published grains; empty for a numeric classification.
    pub fn grains(&self) -> &[Grain] {
        match self {
            Classification::Grains(grains) => grains,
            Classification::Edges(_) => &[],
        }
    }

    /// The published edges; `None` for a date classification.
    pub fn edges(&self) -> Option<&[f64]> {
        match self {
            Classification::Edges(edges) => Some(edges),
            Classification::Grains(_) => None,
        }
    }

    /// Whether `value` is one of the published edges.
    pub fn has_edge(&self, value: f64) -> bool {
        self.edges().is_some_and(|edges| edges.contains(&value))
    }

    /// Whether bands cut at `edges` are unions of published bands: every edge is a published one.
    pub fn admits_edges(&self, edges: &[f64]) -> bool {
        edges.iter().all(|&e| self.has_edge(e))
    }

    /// Whether `date` begins a period of one of the published grains, so that a filter cutting
    /// there selects whole published periods.
    pub fn starts_period(&self, date: NaiveDate) -> bool {
        self.grains().iter().any(|g| g.starts_period(date))
    }
}

/// A calendar period dates are published by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Grain {
    Year,
    Quarter,
    Month,
}

impl Grain {
    pub const ALL: [Grain; 3] = [Grain::Year, Grain::Quarter, Grain::Month];

    pub fn as_str(self) -> &'static str {
        match self {
            Grain::Year => "year",
            Grain::Quarter => "quarter",
            Grain::Month => "month",
        }
    }

    pub fn zh(self) -> &'static str {
        match self {
            Grain::Year => "年",
            Grain::Quarter => "季度",
            Grain::Month => "月",
        }
    }

    pub fn parse(s: &str) -> Option<Grain> {
        Grain::ALL.into_iter().find(|g| g.as_str() == s || g.zh() == s)
    }

    /// The period's label, as the output contract's year, quarter and month bandings write it:
    /// `YYYY`, `YYYYQn`, `YYYY-MM`.
    pub fn label(self, date: NaiveDate) -> String {
        match self {
            Grain::Year => format!("{:04}", date.year()),
            Grain::Quarter => format!("{:04}Q{}", date.year(), date.month0() / 3 + 1),
            Grain::Month => format!("{:04}-{:02}", date.year(), date.month()),
        }
    }

    /// Whether `date` is the first day of its year, quarter or month.
    pub fn starts_period(self, date: NaiveDate) -> bool {
        let first_month = match self {
            Grain::Year => date.month0() == 0,
            Grain::Quarter => date.month0().is_multiple_of(3),
            Grain::Month => true,
        };
        first_month && date.day() == 1
    }
}

impl fmt::Display for Grain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What analysis code may do with a column (DESIGN.md section 4, after SCQL's column control
/// lists).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Constraint {
    /// Use and read the value.
    Plaintext,
    /// Read only a keyed hash of the value: joinable, not reversible.
    Pseudonymized,
    /// Use only as a GROUP BY key.
    GroupByOnly,
    /// Use only inside reducing aggregates (COUNT, SUM, AVG, MIN, MAX and the like).
    AggregateOnly,
    /// Use only in predicates (WHERE, HAVING, JOIN ON).
    CompareOnly,
    /// Do not touch at all.
    Forbidden,
}

impl Constraint {
    pub const ALL: [Constraint; 6] = [
        Constraint::Plaintext,
        Constraint::Pseudonymized,
        Constraint::GroupByOnly,
        Constraint::AggregateOnly,
        Constraint::CompareOnly,
        Constraint::Forbidden,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Constraint::Plaintext => "plaintext",
            Constraint::Pseudonymized => "pseudonymized",
            Constraint::GroupByOnly => "group_by_only",
            Constraint::AggregateOnly => "aggregate_only",
            Constraint::CompareOnly => "compare_only",
            Constraint::Forbidden => "forbidden",
        }
    }

    pub fn zh(self) -> &'static str {
        match self {
            Constraint::Plaintext => "明文",
            Constraint::Pseudonymized => "去标识化",
            Constraint::GroupByOnly => "仅限分组",
            Constraint::AggregateOnly => "仅限聚合",
            Constraint::CompareOnly => "仅限比较",
            Constraint::Forbidden => "禁止使用",
        }
    }

    pub fn parse(s: &str) -> Option<Constraint> {
        Constraint::ALL.into_iter().find(|c| c.as_str() == s || c.zh() == s)
    }
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The column types an entry may declare. A deliberately small vocabulary: each maps to one Arrow
/// type, and CSV values parse into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    String,
    Boolean,
    Int8,
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    /// Calendar date (Arrow `Date32`).
    Date,
    /// Time without zone; any unit is accepted in files, CSV parses to microseconds.
    Timestamp,
    Decimal {
        precision: u8,
        scale: i8,
    },
}

impl ColumnType {
    pub const NAMES: &'static str =
        "string, boolean, int8, int16, int32, int64, float32, float64, date, timestamp, decimal(P,S)";

    pub fn parse(s: &str) -> Option<ColumnType> {
        Some(match s {
            "string" => ColumnType::String,
            "boolean" => ColumnType::Boolean,
            "int8" => ColumnType::Int8,
            "int16" => ColumnType::Int16,
            "int32" => ColumnType::Int32,
            "int64" => ColumnType::Int64,
            "float32" => ColumnType::Float32,
            "float64" => ColumnType::Float64,
            "date" => ColumnType::Date,
            "timestamp" => ColumnType::Timestamp,
            _ => {
                let inner = s.strip_prefix("decimal(")?.strip_suffix(')')?;
                let (p, s) = inner.split_once(',')?;
                let precision: u8 = p.trim().parse().ok()?;
                let scale: i8 = s.trim().parse().ok()?;
                let valid = (1..=38).contains(&precision) && (0..=precision as i8).contains(&scale);
                if !valid {
                    return None;
                }
                ColumnType::Decimal { precision, scale }
            }
        })
    }

    pub fn to_arrow(self) -> DataType {
        match self {
            ColumnType::String => DataType::Utf8,
            ColumnType::Boolean => DataType::Boolean,
            ColumnType::Int8 => DataType::Int8,
            ColumnType::Int16 => DataType::Int16,
            ColumnType::Int32 => DataType::Int32,
            ColumnType::Int64 => DataType::Int64,
            ColumnType::Float32 => DataType::Float32,
            ColumnType::Float64 => DataType::Float64,
            ColumnType::Date => DataType::Date32,
            ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            ColumnType::Decimal { precision, scale } => DataType::Decimal128(precision, scale),
        }
    }

    /// Whether values are numbers, which a classification's edges may band.
    pub fn is_numeric(self) -> bool {
        matches!(
            self,
            ColumnType::Int8
                | ColumnType::Int16
                | ColumnType::Int32
                | ColumnType::Int64
                | ColumnType::Float32
                | ColumnType::Float64
                | ColumnType::Decimal { .. }
        )
    }

    /// Whether values are dates or times, which a classification's grains may label.
    pub fn is_temporal(self) -> bool {
        matches!(self, ColumnType::Date | ColumnType::Timestamp)
    }

    /// Whether a file column of type `found` holds values of this declared type without loss.
    pub fn accepts(self, found: &DataType) -> bool {
        match (self, found) {
            (ColumnType::String, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View) => true,
            (ColumnType::Timestamp, DataType::Timestamp(_, None)) => true,
            (declared, found) => declared.to_arrow() == *found,
        }
    }
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ColumnType::String => f.write_str("string"),
            ColumnType::Boolean => f.write_str("boolean"),
            ColumnType::Int8 => f.write_str("int8"),
            ColumnType::Int16 => f.write_str("int16"),
            ColumnType::Int32 => f.write_str("int32"),
            ColumnType::Int64 => f.write_str("int64"),
            ColumnType::Float32 => f.write_str("float32"),
            ColumnType::Float64 => f.write_str("float64"),
            ColumnType::Date => f.write_str("date"),
            ColumnType::Timestamp => f.write_str("timestamp"),
            ColumnType::Decimal { precision, scale } => write!(f, "decimal({precision},{scale})"),
        }
    }
}

/// Declares an enum spelled in entries by an English code or its Chinese term.
macro_rules! coded_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $code:literal, $zh:literal;)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($variant,)+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            pub fn code(self) -> &'static str {
                match self {
                    $($name::$variant => $code,)+
                }
            }

            pub fn zh(self) -> &'static str {
                match self {
                    $($name::$variant => $zh,)+
                }
            }

            pub fn parse(s: &str) -> Option<$name> {
                $name::ALL.iter().copied().find(|v| v.code() == s || v.zh() == s)
            }

            /// The accepted spellings, for error messages.
            pub fn expected() -> String {
                $name::ALL
                    .iter()
                    .map(|v| format!("{} ({})", v.code(), v.zh()))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.code())
            }
        }
    };
}

coded_enum! {
    /// Classification level (数据分级). Core data is never admitted to the sandbox.
    Level {
        Core => "core", "核心";
        Important => "important", "重要";
        General => "general", "一般";
    }
}

coded_enum! {
    /// Sharing type (共享类型). Data that may not be shared is never licensed.
    Sharing {
        Unconditional => "unconditional", "无条件共享";
        Conditional => "conditional", "有条件共享";
        None => "none", "不予共享";
    }
}

coded_enum! {
    /// Open attribute (开放属性).
    Openness {
        Unconditional => "unconditional", "无条件开放";
        Conditional => "conditional", "有条件开放";
        None => "none", "不予开放";
    }
}

coded_enum! {
    /// Update frequency (更新频率).
    UpdateFrequency {
        RealTime => "real-time", "实时";
        Daily => "daily", "每日";
        Weekly => "weekly", "每周";
        Monthly => "monthly", "每月";
        Quarterly => "quarterly", "每季度";
        Yearly => "yearly", "每年";
        Irregular => "irregular", "不定期";
    }
}

coded_enum! {
    /// How the data files are stored.
    FileFormat {
        Parquet => "parquet", "parquet";
        Csv => "csv", "csv";
    }
}
