//! `module.toml`: what a module declares about itself — purpose, datasets, parameters and the
//! output contract — checked before anything runs.
//!
//! The output contract is what the host holds a module to: it may write only these tables, with
//! exactly these columns, and the output audit reads each column's meaning (a dimension tied to a
//! view column or a banding of it, or a measure with its statistic) from here. Nothing here is
//! trusted to describe the data: the host checks the schema as batches arrive, and the audit
//! recomputes the evidence.

use std::collections::BTreeSet;
use std::fmt;

use arrow_schema::{DataType, Schema, SchemaRef};
use serde::{Deserialize, Serialize};

/// A module's manifest, parsed and checked on its own (see [`Manifest::check_views`] for the
/// checks against the views).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    pub purpose: Text,
    /// The datasets whose views the module reads, in the order the views are built.
    pub datasets: Vec<String>,
    #[serde(default)]
    pub parameters: Vec<ParameterSpec>,
    pub outputs: Vec<OutputSpec>,
}

/// Text in Chinese and English.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Text {
    pub zh: String,
    pub en: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParameterSpec {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ParameterType,
    pub min: Option<toml::Value>,
    pub max: Option<toml::Value>,
    pub default: Option<toml::Value>,
    /// For text: the longest value accepted, in bytes.
    pub max_length: Option<usize>,
    /// For text: the only values accepted.
    pub choices: Option<Vec<String>>,
    pub zh: String,
    pub en: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParameterType {
    Integer,
    Number,
    Text,
    Boolean,
    /// `YYYY-MM-DD`, passed to the module as text.
    Date,
}

/// A parameter value after checking, in the form the module receives.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ParameterValue {
    Integer(i64),
    Number(f64),
    Text(String),
    Boolean(bool),
}

impl fmt::Display for ParameterValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParameterValue::Integer(v) => write!(f, "{v}"),
            ParameterValue::Number(v) => write!(f, "{v}"),
            ParameterValue::Text(v) => f.write_str(v),
            ParameterValue::Boolean(v) => write!(f, "{v}"),
        }
    }
}

/// One declared output table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    pub name: String,
    pub zh: String,
    pub en: String,
    pub dimensions: Vec<Dimension>,
    pub measures: Vec<Measure>,
    /// Which rows the table counts: every condition holds. The host's audit reads the same rows.
    #[serde(default)]
    pub filters: Vec<Filter>,
    /// How the counted dataset (the one the measures are `of`) reaches a second dataset whose
    /// columns the dimensions or filters use. Many rows to one: each counted row meets at most
    /// one row of the other dataset.
    pub join: Option<Join>,
    /// For a model's table (its dimension is the model's `terms`): which model the host fits.
    pub model: Option<ModelKind>,
}

/// The models the host can fit itself, so the models a manifest may declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// Ordinary least squares.
    Ols,
    /// Logistic regression of a 0/1 response, fitted by iteratively reweighted least squares.
    Logistic,
}

impl ModelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::Ols => "ols",
            ModelKind::Logistic => "logistic",
        }
    }
}

/// One condition on the rows a table counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// `dataset.column`.
    pub column: String,
    /// Compare the `YYYY`, `YYYYQn` or `YYYY-MM` label of a date column instead of the date.
    pub part: Option<DatePart>,
    pub op: FilterOp,
    /// The value compared with: a literal, or a parameter's value (exactly one of the two).
    pub value: Option<toml::Value>,
    pub parameter: Option<String>,
}

/// A date's label, as the year, quarter and month bandings write it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DatePart {
    Year,
    Quarter,
    Month,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FilterOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// Text that starts with the value.
    StartsWith,
}

/// An equi-join from the counted dataset to another.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Join {
    /// `dataset.column` of the counted dataset.
    pub from: String,
    /// `dataset.column` of the other dataset.
    pub to: String,
}

/// A column that says which cell a row is: a view column, a banding of one, or a model's terms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dimension {
    pub name: String,
    /// `dataset.column`.
    pub source: Option<String>,
    pub banding: Option<Banding>,
    /// For a model's coefficient table: the `dataset.column`s whose levels are the terms
    /// (`intercept`, `column=value`).
    pub terms: Option<Vec<String>>,
}

/// How a dimension groups its source column's values into labelled bands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Banding {
    /// Numeric bands: below `edges[0]` is `labels[0]`, `[edges[i-1], edges[i])` is `labels[i]`,
    /// from the last edge up is the last label.
    Bins { edges: Vec<f64>, labels: Vec<String> },
    /// Bands of age in whole years on a day, of a date column.
    Age { at: AgeAt, edges: Vec<i64>, labels: Vec<String> },
    /// `YYYY` of a date column.
    Year,
    /// `YYYYQn` of a date column.
    Quarter,
    /// `YYYY-MM` of a date column.
    Month,
}

/// The day ages are taken at: a date, or a date parameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AgeAt {
    Date(String),
    Parameter { parameter: String },
}

/// A column holding a statistic of the cell's rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Measure {
    pub name: String,
    pub statistic: Statistic,
    /// `dataset` (for counts of its privacy units or rows) or `dataset.column`.
    pub of: String,
    /// For `quantile`: which one, in (0, 1).
    pub quantile: Option<f64>,
    /// For `ratio`: the denominator's `dataset.column`.
    pub per: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Statistic {
    Count,
    Sum,
    Mean,
    Quantile,
    Min,
    Max,
    Ratio,
    /// A model coefficient, in a table whose dimension is the model's terms.
    Coefficient,
    /// A coefficient's standard error.
    StdError,
    /// A model's residual degrees of freedom.
    ResidualDf,
}

impl Statistic {
    pub fn as_str(self) -> &'static str {
        match self {
            Statistic::Count => "count",
            Statistic::Sum => "sum",
            Statistic::Mean => "mean",
            Statistic::Quantile => "quantile",
            Statistic::Min => "min",
            Statistic::Max => "max",
            Statistic::Ratio => "ratio",
            Statistic::Coefficient => "coefficient",
            Statistic::StdError => "std_error",
            Statistic::ResidualDf => "residual_df",
        }
    }

    /// Whether only a model's table may declare it.
    pub fn is_model(self) -> bool {
        matches!(self, Statistic::Coefficient | Statistic::StdError | Statistic::ResidualDf)
    }

    fn needs_column(self) -> bool {
        !matches!(self, Statistic::Count | Statistic::ResidualDf)
    }

    fn is_integer(self) -> bool {
        matches!(self, Statistic::Count | Statistic::ResidualDf)
    }
}

/// What is wrong with a manifest: every problem found, each in English and Chinese.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n"))]
pub struct ManifestError {
    pub problems: Vec<ManifestProblem>,
}

/// One problem, at a place in the manifest (`outputs[0].measures[1]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ManifestProblem {
    pub place: String,
    pub en: String,
    pub zh: String,
}

impl fmt::Display for ManifestProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} / {}", self.place, self.en, self.zh)
    }
}

#[derive(Default)]
struct Problems(Vec<ManifestProblem>);

impl Problems {
    fn add(&mut self, place: impl Into<String>, en: impl Into<String>, zh: impl Into<String>) {
        self.0.push(ManifestProblem { place: place.into(), en: en.into(), zh: zh.into() });
    }

    fn finish(self) -> Result<(), ManifestError> {
        if self.0.is_empty() { Ok(()) } else { Err(ManifestError { problems: self.0 }) }
    }
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 63
}

fn parse_date(text: &str) -> Option<chrono::NaiveDate> {
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").ok().filter(|_| text.len() == 10)
}

impl Manifest {
    /// Parses and checks `text` (TOML).
    pub fn parse(text: &str) -> Result<Manifest, ManifestError> {
        let manifest: Manifest = toml::from_str(text).map_err(|e| {
            let place = match e.span() {
                Some(span) => format!("line {}", text[..span.start].lines().count().max(1)),
                None => "module.toml".to_owned(),
            };
            let message = e.message().to_owned();
            ManifestError {
                problems: vec![ManifestProblem { place, zh: format!("无法解析：{message}"), en: message }]
            }
        })?;
        manifest.check()?;
        Ok(manifest)
    }

    fn check(&self) -> Result<(), ManifestError> {
        let mut p = Problems::default();
        let valid_name = |n: &str| {
            !n.is_empty()
                && n.len() <= 64
                && n.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        };
        if !valid_name(&self.name) {
            p.add(
                "name",
                format!("{:?} is not a module name (a-z, 0-9, -)", self.name),
                "模块名只能包含小写字母、数字和连字符",
            );
        }
        if self.version.is_empty() || !self.version.chars().all(|c| c.is_ascii_alphanumeric() || ".-+".contains(c)) {
            p.add("version", format!("{:?} is not a version", self.version), "版本号无效");
        }
        if self.purpose.zh.trim().is_empty() || self.purpose.en.trim().is_empty() {
            p.add("purpose", "the purpose needs both zh and en text", "用途必须有中文和英文说明");
        }
        if self.datasets.is_empty() {
            p.add("datasets", "no datasets are listed", "未列出数据集");
        }
        let mut seen = BTreeSet::new();
        for d in &self.datasets {
            if !seen.insert(d) {
                p.add("datasets", format!("{d:?} is listed twice"), format!("数据集 {d} 重复列出"));
            }
        }

        let mut names = BTreeSet::new();
        for (i, param) in self.parameters.iter().enumerate() {
            let place = format!("parameters[{i}]");
            if !is_identifier(&param.name) {
                p.add(&place, format!("{:?} is not a parameter name", param.name), "参数名无效");
            }
            if !names.insert(param.name.as_str()) {
                p.add(&place, format!("parameter {:?} is declared twice", param.name), "参数重复声明");
            }
            self.check_parameter(param, &place, &mut p);
        }

        if self.outputs.is_empty() {
            p.add("outputs", "no output tables are declared", "未声明输出表");
        }
        let mut tables = BTreeSet::new();
        for (i, out) in self.outputs.iter().enumerate() {
            let place = format!("outputs[{i}]");
            if !is_identifier(&out.name) {
                p.add(&place, format!("{:?} is not a table name (a-z, 0-9, _)", out.name), "表名无效");
            }
            if !tables.insert(out.name.as_str()) {
                p.add(&place, format!("table {:?} is declared twice", out.name), "输出表重复声明");
            }
            if out.measures.is_empty() {
                p.add(&place, "a table needs at least one measure", "输出表至少需要一个度量列");
            }
            let mut columns = BTreeSet::new();
            for name in out.dimensions.iter().map(|d| &d.name).chain(out.measures.iter().map(|m| &m.name)) {
                if !is_identifier(name) {
                    p.add(&place, format!("{name:?} is not a column name (a-z, 0-9, _)"), format!("列名 {name} 无效"));
                }
                if !columns.insert(name.as_str()) {
                    p.add(&place, format!("column {name:?} appears twice"), format!("列 {name} 重复"));
                }
            }
            for (j, dim) in out.dimensions.iter().enumerate() {
                self.check_dimension(dim, &format!("{place}.dimensions[{j}]"), &mut p);
            }
            for (j, measure) in out.measures.iter().enumerate() {
                self.check_measure(measure, &format!("{place}.measures[{j}]"), &mut p);
            }
            self.check_rows(out, &place, &mut p);
            self.check_model(out, &place, &mut p);
        }
        p.finish()
    }

    /// A model's table: one dimension, its terms, each column once; the model the host fits;
    /// one coefficient and one count (n), and at most one standard error and residual degrees
    /// of freedom, all of one response. Other tables declare none of these.
    fn check_model(&self, out: &OutputSpec, place: &str, p: &mut Problems) {
        let terms: Vec<&Dimension> = out.dimensions.iter().filter(|d| d.terms.is_some()).collect();
        if terms.is_empty() {
            if out.model.is_some() {
                p.add(
                    place,
                    "model applies only to a table whose dimension is the model's terms",
                    "只有以模型项为维度的表才能声明 model",
                );
            }
            if let Some(m) = out.measures.iter().find(|m| m.statistic.is_model()) {
                p.add(
                    place,
                    format!("{} is a model's statistic: this table has no terms dimension", m.statistic.as_str()),
                    format!("{} 是模型统计量，但该表没有模型项维度", m.statistic.as_str()),
                );
            }
            return;
        }
        if out.dimensions.len() != 1 {
            p.add(place, "a model's table has one dimension, its terms", "模型表只能有一个维度，即模型项");
        }
        if out.model.is_none() {
            p.add(
                place,
                "a model's table names the model the host fits: model = \"ols\" or \"logistic\"",
                "模型表必须声明主机拟合的模型：model = \"ols\" 或 \"logistic\"",
            );
        }
        for dim in terms {
            let mut seen = BTreeSet::new();
            for t in dim.terms.iter().flatten() {
                if !seen.insert(t) {
                    p.add(place, format!("term column {t:?} is listed twice"), format!("模型项列 {t} 重复列出"));
                }
            }
        }
        let count = |s: Statistic| out.measures.iter().filter(|m| m.statistic == s).count();
        if count(Statistic::Coefficient) != 1 {
            p.add(place, "a model's table has exactly one coefficient measure", "模型表必须恰有一个系数度量");
        }
        if count(Statistic::Count) != 1 {
            p.add(
                place,
                "a model's table has exactly one count measure, its n (observations)",
                "模型表必须恰有一个计数度量（样本量 n）",
            );
        }
        if count(Statistic::StdError) > 1 || count(Statistic::ResidualDf) > 1 {
            p.add(
                place,
                "std_error and residual_df are declared at most once",
                "std_error 与 residual_df 至多各声明一次",
            );
        }
        if let Some(m) = out.measures.iter().find(|m| {
            !matches!(
                m.statistic,
                Statistic::Coefficient | Statistic::StdError | Statistic::Count | Statistic::ResidualDf
            )
        }) {
            p.add(
                place,
                format!(
                    "a model's table declares coefficient, std_error, count and residual_df only, not {}",
                    m.statistic.as_str()
                ),
                format!(
                    "模型表只能声明 coefficient、std_error、count 和 residual_df，不能声明 {}",
                    m.statistic.as_str()
                ),
            );
        }
        let responses: BTreeSet<&str> = out
            .measures
            .iter()
            .filter(|m| matches!(m.statistic, Statistic::Coefficient | Statistic::StdError))
            .map(|m| m.of.as_str())
            .collect();
        if responses.len() > 1 {
            p.add(
                place,
                format!("the coefficient and its standard error are of one response, not {responses:?}"),
                "系数与标准误必须针对同一个响应变量",
            );
        }
    }

    /// The counted dataset, the join and the filters: the host must be able to read the rows
    /// the table counts.
    fn check_rows(&self, out: &OutputSpec, place: &str, p: &mut Problems) {
        let counted: BTreeSet<&str> = out.measures.iter().map(|m| dataset_of(&m.of)).collect();
        if counted.len() > 1 {
            p.add(
                place,
                format!("the measures count more than one dataset: {counted:?}"),
                "同一输出表的度量必须来自同一数据集",
            );
        }
        let Some(&counted) = counted.iter().next() else { return };
        let mut reachable = vec![counted];
        if let Some(join) = &out.join {
            self.check_source(&join.from, &format!("{place}.join"), p);
            self.check_source(&join.to, &format!("{place}.join"), p);
            if dataset_of(&join.from) != counted || dataset_of(&join.to) == counted {
                p.add(
                    format!("{place}.join"),
                    format!("join.from must be a column of {counted} and join.to one of another dataset"),
                    format!("join.from 必须是 {counted} 的列，join.to 必须是另一数据集的列"),
                );
            }
            reachable.push(dataset_of(&join.to));
        }
        let sources = out
            .dimensions
            .iter()
            .flat_map(|d| d.source.iter().chain(d.terms.iter().flatten()))
            .chain(out.measures.iter().flat_map(|m| m.per.iter()))
            .chain(out.filters.iter().map(|f| &f.column));
        for source in sources {
            if !reachable.contains(&dataset_of(source)) {
                p.add(
                    place,
                    format!("{source:?} is not a column of {counted}, nor reached by the table's join"),
                    format!("{source} 既不属于 {counted}，也无法通过 join 关联"),
                );
            }
        }
        for (k, filter) in out.filters.iter().enumerate() {
            let place = format!("{place}.filters[{k}]");
            self.check_source(&filter.column, &place, p);
            match (&filter.value, &filter.parameter) {
                (Some(_), None) => {}
                (None, Some(name)) => {
                    if !self.parameters.iter().any(|q| &q.name == name) {
                        p.add(&place, format!("parameter {name:?} is not declared"), format!("参数 {name} 未声明"));
                    }
                }
                _ => p.add(
                    &place,
                    "a filter needs exactly one of value and parameter",
                    "过滤条件必须且只能指定 value 或 parameter 之一",
                ),
            }
            if let Some(v) = &filter.value
                && !matches!(
                    v,
                    toml::Value::String(_) | toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_)
                )
            {
                p.add(&place, "a filter value is text, a number or a boolean", "过滤值必须是文本、数值或布尔值");
            }
        }
    }

    fn check_parameter(&self, param: &ParameterSpec, place: &str, p: &mut Problems) {
        let typed = |v: &toml::Value| typed(param.kind, v);
        for (what, value) in [("min", &param.min), ("max", &param.max), ("default", &param.default)] {
            if let Some(v) = value
                && typed(v).is_none()
            {
                p.add(
                    place,
                    format!("{what} = {v} is not a {:?} value", param.kind),
                    format!("{what} 的值与参数类型不符"),
                );
            }
        }
        if (param.min.is_some() || param.max.is_some())
            && matches!(param.kind, ParameterType::Text | ParameterType::Boolean)
        {
            p.add(
                place,
                "min and max apply to integer, number and date parameters",
                "min/max 仅适用于整数、数值和日期参数",
            );
        }
        if (param.max_length.is_some() || param.choices.is_some()) && param.kind != ParameterType::Text {
            p.add(place, "max_length and choices apply to text parameters", "max_length/choices 仅适用于文本参数");
        }
        if let (Some(min), Some(max)) = (&param.min, &param.max)
            && let (Some(a), Some(b)) = (typed(min), typed(max))
            && compare(&a, &b) == Some(std::cmp::Ordering::Greater)
        {
            p.add(place, "min is greater than max", "最小值大于最大值");
        }
        if param.zh.trim().is_empty() || param.en.trim().is_empty() {
            p.add(place, "a parameter needs zh and en descriptions", "参数必须有中英文说明");
        }
        if let Some(default) = &param.default
            && let Some(v) = typed(default)
            && let Err(problem) = self.in_range(param, &v)
        {
            p.add(place, format!("the default {problem}"), "默认值不在允许范围内");
        }
    }

    fn in_range(&self, param: &ParameterSpec, value: &ParameterValue) -> Result<(), String> {
        let bound = |v: &Option<toml::Value>| v.as_ref().and_then(|v| typed(param.kind, v));
        if let Some(min) = bound(&param.min)
            && compare(value, &min) == Some(std::cmp::Ordering::Less)
        {
            return Err(format!("is below the minimum {min}"));
        }
        if let Some(max) = bound(&param.max)
            && compare(value, &max) == Some(std::cmp::Ordering::Greater)
        {
            return Err(format!("is above the maximum {max}"));
        }
        if let ParameterValue::Text(text) = value {
            if let Some(limit) = param.max_length
                && text.len() > limit
            {
                return Err(format!("is longer than the {limit} bytes allowed"));
            }
            if let Some(choices) = &param.choices
                && !choices.contains(text)
            {
                return Err(format!("is not one of {choices:?}"));
            }
        }
        Ok(())
    }

    fn check_source(&self, source: &str, place: &str, p: &mut Problems) {
        match source.split_once('.') {
            Some((dataset, column)) if !column.is_empty() => {
                if !self.datasets.iter().any(|d| d == dataset) {
                    p.add(
                        place,
                        format!("{source:?} names dataset {dataset:?}, which is not in datasets"),
                        format!("{source} 引用的数据集 {dataset} 未在 datasets 中列出"),
                    );
                }
            }
            _ => p.add(place, format!("{source:?} is not dataset.column"), format!("{source} 不是“数据集.列”形式")),
        }
    }

    fn check_dimension(&self, dim: &Dimension, place: &str, p: &mut Problems) {
        match (&dim.source, &dim.terms) {
            (Some(source), None) => self.check_source(source, place, p),
            (None, Some(terms)) => {
                if dim.banding.is_some() {
                    p.add(place, "a terms dimension has no banding", "模型项维度不能分段");
                }
                if terms.is_empty() {
                    p.add(place, "terms lists no columns", "terms 未列出任何列");
                }
                for t in terms {
                    self.check_source(t, place, p);
                }
            }
            _ => p.add(
                place,
                "a dimension needs exactly one of source and terms",
                "维度必须且只能指定 source 或 terms 之一",
            ),
        }
        let labels_fit = |edges: usize, labels: &[String], p: &mut Problems| {
            if edges == 0 || labels.len() != edges + 1 {
                p.add(
                    place,
                    format!("{edges} edge(s) need {} labels, not {}", edges + 1, labels.len()),
                    "分段标签数必须比边界数多一个",
                );
            }
            if labels.iter().collect::<BTreeSet<_>>().len() != labels.len() {
                p.add(place, "banding labels repeat", "分段标签重复");
            }
        };
        match &dim.banding {
            Some(Banding::Bins { edges, labels }) => {
                if edges.windows(2).any(|w| w[0].partial_cmp(&w[1]) != Some(std::cmp::Ordering::Less)) {
                    p.add(place, "banding edges must increase", "分段边界必须递增");
                }
                labels_fit(edges.len(), labels, p);
            }
            Some(Banding::Age { at, edges, labels }) => {
                if edges.windows(2).any(|w| w[0] >= w[1]) || edges.first().is_some_and(|&e| e <= 0) {
                    p.add(place, "age edges must be positive and increase", "年龄分段边界必须为正且递增");
                }
                labels_fit(edges.len(), labels, p);
                match at {
                    AgeAt::Date(d) if parse_date(d).is_none() => {
                        p.add(place, format!("at = {d:?} is not a date (YYYY-MM-DD)"), "基准日不是有效日期")
                    }
                    AgeAt::Parameter { parameter } => {
                        if !self.parameters.iter().any(|q| &q.name == parameter && q.kind == ParameterType::Date) {
                            p.add(
                                place,
                                format!("at names {parameter:?}, which is not a date parameter"),
                                format!("基准日引用的 {parameter} 不是日期参数"),
                            );
                        }
                    }
                    AgeAt::Date(_) => {}
                }
            }
            Some(Banding::Year | Banding::Quarter | Banding::Month) | None => {}
        }
    }

    fn check_measure(&self, measure: &Measure, place: &str, p: &mut Problems) {
        if measure.of.contains('.') && !measure.statistic.needs_column() {
            p.add(
                place,
                format!(
                    "{} counts a dataset's privacy units: of names the dataset, not a column",
                    measure.statistic.as_str()
                ),
                format!("{} 计数的是数据集的隐私单元：of 应为数据集名，而不是列", measure.statistic.as_str()),
            );
        } else if measure.of.contains('.') {
            self.check_source(&measure.of, place, p);
        } else if measure.statistic.needs_column() {
            p.add(
                place,
                format!("{:?} needs a column (dataset.column) in of", measure.statistic),
                "该统计量的 of 必须是“数据集.列”",
            );
        } else if !self.datasets.contains(&measure.of) {
            p.add(
                place,
                format!("of = {:?} is not a listed dataset", measure.of),
                format!("of 引用的数据集 {} 未列出", measure.of),
            );
        }
        match (measure.statistic, measure.quantile) {
            (Statistic::Quantile, Some(q)) if q > 0.0 && q < 1.0 => {}
            (Statistic::Quantile, _) => {
                p.add(place, "a quantile needs quantile in (0, 1)", "分位数必须指定 0 到 1 之间的 quantile")
            }
            (_, Some(_)) => p.add(place, "quantile applies only to the quantile statistic", "quantile 仅适用于分位数"),
            _ => {}
        }
        match (&measure.statistic, &measure.per) {
            (Statistic::Ratio, Some(per)) => self.check_source(per, place, p),
            (Statistic::Ratio, None) => {
                p.add(place, "a ratio needs per (the denominator's dataset.column)", "比率必须用 per 指定分母列")
            }
            (_, Some(_)) => p.add(place, "per applies only to ratios", "per 仅适用于比率"),
            _ => {}
        }
    }

    /// Checks every `dataset.column` against the views the module will read, and bandings
    /// against their columns' types.
    pub fn check_views(&self, views: &[(String, SchemaRef)]) -> Result<(), ManifestError> {
        let mut p = Problems::default();
        let column_type = |source: &str| view_column_type(views, source);
        for dataset in &self.datasets {
            if !views.iter().any(|(name, _)| name == dataset) {
                p.add(
                    "datasets",
                    format!("dataset {dataset:?} is not among the views"),
                    format!("数据集 {dataset} 不在可用视图中"),
                );
            }
        }
        for (i, out) in self.outputs.iter().enumerate() {
            for (j, dim) in out.dimensions.iter().enumerate() {
                let place = format!("outputs[{i}].dimensions[{j}]");
                for source in dim.source.iter().chain(dim.terms.iter().flatten()) {
                    match column_type(source) {
                        None => p.add(
                            &place,
                            format!("{source:?} is not a column of the views"),
                            format!("{source} 不是视图中的列"),
                        ),
                        Some(t) => {
                            let fits = match &dim.banding {
                                None => true,
                                Some(Banding::Bins { .. }) => t.is_numeric(),
                                Some(_) => matches!(t, DataType::Date32 | DataType::Date64 | DataType::Timestamp(..)),
                            };
                            if !fits {
                                p.add(
                                    &place,
                                    format!("{source:?} has type {t}, which this banding cannot band"),
                                    format!("{source} 的类型 {t} 不能按此方式分段"),
                                );
                            }
                        }
                    }
                }
            }
            let row_columns = out
                .filters
                .iter()
                .map(|f| (&f.column, f.part.is_some()))
                .chain(out.join.iter().flat_map(|j| [(&j.from, false), (&j.to, false)]));
            for (source, dated) in row_columns {
                let place = format!("outputs[{i}]");
                match column_type(source) {
                    None => p.add(
                        &place,
                        format!("{source:?} is not a column of the views"),
                        format!("{source} 不是视图中的列"),
                    ),
                    Some(t) if dated && !matches!(t, DataType::Date32 | DataType::Date64 | DataType::Timestamp(..)) => {
                        p.add(
                            &place,
                            format!("{source:?} is not a date, so it has no part"),
                            format!("{source} 不是日期列"),
                        )
                    }
                    Some(_) => {}
                }
            }
            for (j, m) in out.measures.iter().enumerate() {
                let place = format!("outputs[{i}].measures[{j}]");
                for source in std::iter::once(&m.of).chain(m.per.iter()).filter(|s| s.contains('.')) {
                    if column_type(source).is_none() {
                        p.add(
                            &place,
                            format!("{source:?} is not a column of the views"),
                            format!("{source} 不是视图中的列"),
                        );
                    }
                }
            }
        }
        p.finish()
    }

    /// Turns `name=value` texts into the parameters the module receives, in the manifest's
    /// order, with defaults filled in. Unknown, missing, mistyped and out-of-range values are
    /// refused. No problem quotes a value given, nor a name the manifest does not declare:
    /// refusals are logged, and a value may be anything an operator typed, an identity number
    /// among them.
    pub fn bind(&self, given: &[(String, String)]) -> Result<Vec<(String, ParameterValue)>, ManifestError> {
        let mut p = Problems::default();
        for (i, (name, _)) in given.iter().enumerate() {
            if !self.parameters.iter().any(|q| &q.name == name) {
                p.add(
                    format!("--param #{}", i + 1),
                    "the manifest declares no parameter of this name",
                    "清单未声明该名称的参数",
                );
            } else if given.iter().filter(|(n, _)| n == name).count() > 1 {
                p.add(format!("--param {name}"), "given more than once", "重复给出");
            }
        }
        let mut bound = Vec::new();
        for param in &self.parameters {
            let place = format!("--param {}", param.name);
            let value = match given.iter().find(|(n, _)| n == &param.name) {
                Some((_, text)) => match parse_value(param.kind, text) {
                    Some(v) => v,
                    None => {
                        p.add(&place, format!("the value is not a {:?} value", param.kind), "参数值类型不符");
                        continue;
                    }
                },
                None => match param.default.as_ref().and_then(|d| typed(param.kind, d)) {
                    Some(v) => v,
                    None => {
                        p.add(&place, "required, and has no default", "必填参数，且没有默认值");
                        continue;
                    }
                },
            };
            if let Err(problem) = self.in_range(param, &value) {
                p.add(&place, problem, "参数值不在允许范围内");
                continue;
            }
            bound.push((param.name.clone(), value));
        }
        p.finish()?;
        Ok(bound)
    }

    /// The declared output table `name`.
    pub fn output(&self, name: &str) -> Option<&OutputSpec> {
        self.outputs.iter().find(|o| o.name == name)
    }
}

fn parse_value(kind: ParameterType, text: &str) -> Option<ParameterValue> {
    match kind {
        ParameterType::Integer => text.parse().ok().map(ParameterValue::Integer),
        ParameterType::Number => text.parse::<f64>().ok().filter(|f| f.is_finite()).map(ParameterValue::Number),
        ParameterType::Text => Some(ParameterValue::Text(text.to_owned())),
        ParameterType::Boolean => text.parse().ok().map(ParameterValue::Boolean),
        ParameterType::Date => parse_date(text).map(|_| ParameterValue::Text(text.to_owned())),
    }
}

/// A manifest value (min, max, default) as a value of the parameter's type; `None` when it is not
/// one.
fn typed(kind: ParameterType, value: &toml::Value) -> Option<ParameterValue> {
    match (kind, value) {
        (ParameterType::Integer, toml::Value::Integer(i)) => Some(ParameterValue::Integer(*i)),
        (ParameterType::Number, toml::Value::Float(f)) => Some(ParameterValue::Number(*f)),
        (ParameterType::Number, toml::Value::Integer(i)) => Some(ParameterValue::Number(*i as f64)),
        (ParameterType::Text, toml::Value::String(s)) => Some(ParameterValue::Text(s.clone())),
        (ParameterType::Boolean, toml::Value::Boolean(b)) => Some(ParameterValue::Boolean(*b)),
        (ParameterType::Date, toml::Value::String(s)) if parse_date(s).is_some() => {
            Some(ParameterValue::Text(s.clone()))
        }
        _ => None,
    }
}

/// The dataset of `dataset` or `dataset.column`.
pub fn dataset_of(source: &str) -> &str {
    source.split_once('.').map_or(source, |(dataset, _)| dataset)
}

/// The type of `dataset.column` among the views.
fn view_column_type(views: &[(String, SchemaRef)], source: &str) -> Option<DataType> {
    let (dataset, column) = source.split_once('.')?;
    let (_, schema) = views.iter().find(|(name, _)| name == dataset)?;
    schema.field_with_name(column).ok().map(|f| f.data_type().clone())
}

fn compare(a: &ParameterValue, b: &ParameterValue) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (ParameterValue::Integer(x), ParameterValue::Integer(y)) => Some(x.cmp(y)),
        (ParameterValue::Number(x), ParameterValue::Number(y)) => x.partial_cmp(y),
        (ParameterValue::Text(x), ParameterValue::Text(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

/// What an output column must look like in Arrow.
fn column_fits(expected: &Expected, actual: &DataType) -> bool {
    let is_string = matches!(actual, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
    match expected {
        Expected::String => is_string,
        Expected::Like(view) => {
            let view_is_string = matches!(view, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
            if view_is_string { is_string } else { view == actual }
        }
        Expected::Integer => actual.is_integer(),
        Expected::Numeric => actual.is_numeric(),
    }
}

#[derive(Debug)]
enum Expected {
    String,
    Like(DataType),
    Integer,
    Numeric,
}

impl fmt::Display for Expected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expected::String => f.write_str("text"),
            Expected::Like(t) => write!(f, "{t} (as the view column)"),
            Expected::Integer => f.write_str("an integer type"),
            Expected::Numeric => f.write_str("a numeric type"),
        }
    }
}

impl OutputSpec {
    /// The column names in order: dimensions, then measures.
    pub fn column_names(&self) -> Vec<&str> {
        self.dimensions.iter().map(|d| d.name.as_str()).chain(self.measures.iter().map(|m| m.name.as_str())).collect()
    }

    /// Checks a schema a module offers for this table: the declared columns in order, each of a
    /// type that fits its meaning. The error says what differs (for the development log).
    pub fn check_schema(&self, schema: &Schema, views: &[(String, SchemaRef)]) -> Result<(), String> {
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        let expected_names = self.column_names();
        if names != expected_names {
            return Err(format!("table {} must have columns {expected_names:?}, not {names:?}", self.name));
        }
        let expected = self
            .dimensions
            .iter()
            .map(|d| match (&d.source, &d.banding) {
                (Some(source), None) => view_column_type(views, source).map_or(Expected::String, Expected::Like),
                _ => Expected::String,
            })
            .chain(
                self.measures
                    .iter()
                    .map(|m| if m.statistic.is_integer() { Expected::Integer } else { Expected::Numeric }),
            );
        for (field, expected) in schema.fields().iter().zip(expected) {
            if !column_fits(&expected, field.data_type()) {
                return Err(format!(
                    "column {} of table {} must be {expected}, not {}",
                    field.name(),
                    self.name,
                    field.data_type()
                ));
            }
        }
        Ok(())
    }
}
