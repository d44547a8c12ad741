//! The host's own evidence: for each output table, a grouped query over the raw files of the
//! datasets the table counts, with the output contract's dimensions, filters and join.
//!
//! Every identifier in the generated SQL is a catalog column the manifest check has matched,
//! quoted; every value is a manifest literal or bound parameter, quoted as a string literal. The
//! session holds nothing but the datasets' raw tables and two aggregate functions (the second
//! largest value; a cell's unit sketch for differencing); nothing it computes leaves the host
//! except as a verdict.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, BinaryArray, Float64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{Accumulator, Volatility, create_udaf};
use datafusion::prelude::{SessionConfig, SessionContext};
use sandbox_catalog::{Catalog, Variant};
use sandbox_runner::manifest::{AgeAt, Banding, DatePart, Dimension, FilterOp, Measure, OutputSpec, dataset_of};

use crate::AuditError;
use crate::differencing::{Sketch, UnitHasher};

/// A cell's key: its dimension values as text (NULL as `None`).
pub(crate) type Key = Vec<Option<String>>;

/// What the host knows about one magnitude column in one cell.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Magnitude {
    pub(crate) total: f64,
    /// The largest and second-largest sum per privacy unit.
    pub(crate) largest: f64,
    pub(crate) second: f64,
    /// Non-NULL values, negative values, NULL values (rows).
    pub(crate) values: u64,
    pub(crate) negatives: u64,
    pub(crate) missing: u64,
}

/// What the host knows about one cell.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Cell {
    pub(crate) units: u64,
    pub(crate) rows: u64,
    /// By `dataset.column`.
    pub(crate) magnitudes: HashMap<String, Magnitude>,
    /// The cell's privacy units, for differencing.
    pub(crate) sketch: Option<Sketch>,
}

/// For a table of cells: each cell's evidence, and each dimension's domain.
#[derive(Debug, Default)]
pub(crate) struct TableEvidence {
    pub(crate) cells: HashMap<Key, Cell>,
    pub(crate) domains: Vec<BTreeSet<String>>,
}

/// For a model's coefficient table.
#[derive(Debug, Default)]
pub(crate) struct ModelEvidence {
    pub(crate) rows: u64,
    pub(crate) units: u64,
    /// For each term column (its bare name): the values it takes among all rows.
    pub(crate) domains: Vec<(String, BTreeSet<String>)>,
}

/// The trusted session and the answers it has given, kept so that tables sharing a query share
/// its result.
pub(crate) struct Evidence<'a> {
    ctx: SessionContext,
    catalog: &'a Catalog,
    parameters: &'a [(String, String)],
    answers: HashMap<String, Vec<RecordBatch>>,
}

fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

/// `dataset.column` as a quoted SQL column.
fn column(source: &str) -> String {
    match source.split_once('.') {
        Some((dataset, col)) => format!("{}.{}", quote(dataset), quote(col)),
        None => quote(source),
    }
}

fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn date_label(expr: &str, part: DatePart) -> String {
    match part {
        DatePart::Year => format!("to_char({expr}, '%Y')"),
        DatePart::Month => format!("to_char({expr}, '%Y-%m')"),
        DatePart::Quarter => {
            format!("concat(to_char({expr}, '%Y'), 'Q', CAST(CAST(date_part('quarter', {expr}) AS BIGINT) AS VARCHAR))")
        }
    }
}

impl<'a> Evidence<'a> {
    pub(crate) fn new(
        catalog: &'a Catalog,
        variant: Variant,
        datasets: &[String],
        parameters: &'a [(String, String)],
        hasher: &UnitHasher,
    ) -> Result<Evidence<'a>, AuditError> {
        // Every core: the evidence is never released, and declared sums are compared with a
        // relative tolerance of 1e-9 (`agrees`), far above what another order of addition
        // changes. (The module's own run uses one partition, for byte-identical outputs.)
        let ctx = SessionContext::new_with_config(SessionConfig::new());
        for id in datasets {
            let dataset = catalog.dataset(id).map_err(|e| AuditError::Evidence(e.to_string()))?;
            let table =
                sandbox_policy::files_table(dataset, variant).map_err(|e| AuditError::Evidence(e.to_string()))?;
            ctx.register_table(id.as_str(), table).map_err(|e| AuditError::Evidence(e.strip_backtrace()))?;
        }
        ctx.register_udaf(second_largest());
        ctx.register_udaf(unit_sketch(hasher.clone()));
        Ok(Evidence { ctx, catalog, parameters, answers: HashMap::new() })
    }

    async fn query(&mut self, sql: String) -> Result<Vec<RecordBatch>, AuditError> {
        if let Some(batches) = self.answers.get(&sql) {
            return Ok(batches.clone());
        }
        let failed = |e: datafusion::error::DataFusionError| AuditError::Evidence(e.strip_backtrace());
        let batches = self.ctx.sql(&sql).await.map_err(failed)?.collect().await.map_err(failed)?;
        self.answers.insert(sql, batches.clone());
        Ok(batches)
    }

    fn parameter(&self, name: &str) -> Result<&str, AuditError> {
        self.parameters
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| AuditError::Evidence(format!("parameter {name} is not bound")))
    }

    /// `FROM ... WHERE ...` for the rows a table counts.
    fn rows(&self, spec: &OutputSpec) -> Result<String, AuditError> {
        let mut sql = from(spec);
        let mut conditions = Vec::new();
        for filter in &spec.filters {
            let mut lhs = column(&filter.column);
            if let Some(part) = filter.part {
                lhs = date_label(&lhs, part);
            }
            let value = match (&filter.value, &filter.parameter) {
                (Some(toml::Value::String(s)), _) => s.clone(),
                (Some(v), _) => v.to_string(),
                (None, Some(name)) => self.parameter(name)?.to_owned(),
                (None, None) => return Err(AuditError::Evidence("a filter has no value".to_owned())),
            };
            // Compare in the column's own type: the literal is cast to it.
            let rhs = match filter.part {
                Some(_) => literal(&value),
                None => format!(
                    "arrow_cast({}, {})",
                    literal(&value),
                    literal(&self.column_type(&filter.column)?.to_string())
                ),
            };
            conditions.push(match filter.op {
                FilterOp::Eq => format!("{lhs} = {rhs}"),
                FilterOp::Ne => format!("{lhs} <> {rhs}"),
                FilterOp::Lt => format!("{lhs} < {rhs}"),
                FilterOp::Le => format!("{lhs} <= {rhs}"),
                FilterOp::Gt => format!("{lhs} > {rhs}"),
                FilterOp::Ge => format!("{lhs} >= {rhs}"),
                FilterOp::StartsWith => format!("starts_with(CAST({lhs} AS VARCHAR), {})", literal(&value)),
            });
        }
        if !conditions.is_empty() {
            sql += &format!(" WHERE {}", conditions.join(" AND "));
        }
        Ok(sql)
    }

    /// The SQL expression of a dimension's label.
    fn dimension(&self, dim: &Dimension) -> Result<String, AuditError> {
        let source = dim.source.as_deref().ok_or_else(|| AuditError::Evidence("a terms dimension".to_owned()))?;
        let x = column(source);
        Ok(match &dim.banding {
            None => format!("CAST({x} AS VARCHAR)"),
            Some(Banding::Year) => date_label(&x, DatePart::Year),
            Some(Banding::Quarter) => date_label(&x, DatePart::Quarter),
            Some(Banding::Month) => date_label(&x, DatePart::Month),
            Some(Banding::Bins { edges, labels }) => {
                let mut case = format!("CASE WHEN {x} IS NULL THEN NULL");
                for (edge, label) in edges.iter().zip(labels) {
                    case += &format!(" WHEN CAST({x} AS DOUBLE) < {edge:?} THEN {}", literal(label));
                }
                case + &format!(" ELSE {} END", literal(labels.last().map_or("", String::as_str)))
            }
            Some(Banding::Age { at, edges, labels }) => {
                let at = match at {
                    AgeAt::Date(date) => date.clone(),
                    AgeAt::Parameter { parameter } => self.parameter(parameter)?.to_owned(),
                };
                // Younger than `edge` years on `at`: born after `at` minus `edge` years.
                let mut case = format!("CASE WHEN {x} IS NULL THEN NULL");
                for (edge, label) in edges.iter().zip(labels) {
                    case +=
                        &format!(" WHEN {x} > DATE {} - INTERVAL '{edge} years' THEN {}", literal(&at), literal(label));
                }
                case + &format!(" ELSE {} END", literal(labels.last().map_or("", String::as_str)))
            }
        })
    }

    /// Every label a dimension can take: the banding's labels, or the distinct values of its
    /// source over the whole dataset (not only the filtered rows).
    async fn domain(&mut self, spec: &OutputSpec, dim: &Dimension) -> Result<BTreeSet<String>, AuditError> {
        if let Some(Banding::Bins { labels, .. } | Banding::Age { labels, .. }) = &dim.banding {
            return Ok(labels.iter().cloned().collect());
        }
        let expr = self.dimension(dim)?;
        let batches = self.query(format!("SELECT DISTINCT {expr} AS v {}", from(spec))).await?;
        Ok(strings(&batches, 0)?.into_iter().flatten().collect())
    }

    /// The evidence for a table of cells.
    pub(crate) async fn cells(&mut self, spec: &OutputSpec) -> Result<TableEvidence, AuditError> {
        let unit = column(&format!("{}.{}", counted(spec), self.privacy_unit(counted(spec))?));
        let dims: Vec<String> = spec.dimensions.iter().map(|d| self.dimension(d)).collect::<Result<_, _>>()?;
        let magnitudes = magnitude_columns(spec);

        let mut inner = Vec::new();
        let mut outer = Vec::new();
        for (i, d) in dims.iter().enumerate() {
            inner.push(format!("{d} AS d{i}"));
            outer.push(format!("d{i}"));
        }
        let keys = outer.clone();
        inner.push(format!("{unit} AS unit"));
        inner.push("count(*) AS rows".to_owned());
        outer.push("count(*) AS units".to_owned());
        outer.push("sum(rows) AS rows".to_owned());
        outer.push("unit_sketch(arrow_cast(unit, 'Utf8')) AS sketch".to_owned());
        for (j, m) in magnitudes.iter().enumerate() {
            let x = column(m);
            inner.push(format!("sum(CAST({x} AS DOUBLE)) AS s{j}"));
            inner.push(format!("count({x}) AS n{j}"));
            inner.push(format!("sum(CASE WHEN {x} < 0 THEN 1 ELSE 0 END) AS neg{j}"));
            inner.push(format!("sum(CASE WHEN {x} IS NULL THEN 1 ELSE 0 END) AS miss{j}"));
            outer.push(format!("sum(s{j}) AS total{j}"));
            outer.push(format!("max(s{j}) AS largest{j}"));
            outer.push(format!("second_largest(s{j}) AS second{j}"));
            outer.push(format!("sum(n{j}) AS values{j}"));
            outer.push(format!("sum(neg{j}) AS negatives{j}"));
            outer.push(format!("sum(miss{j}) AS missing{j}"));
        }
        let group_inner: Vec<String> = (1..=dims.len() + 1).map(|i| i.to_string()).collect();
        let group_outer = if keys.is_empty() { String::new() } else { format!(" GROUP BY {}", keys.join(", ")) };
        let sql = format!(
            "SELECT {} FROM (SELECT {} {} GROUP BY {}) cells{group_outer}",
            outer.join(", "),
            inner.join(", "),
            self.rows(spec)?,
            group_inner.join(", "),
        );
        let batches = self.query(sql).await?;

        let mut evidence = TableEvidence::default();
        for batch in &batches {
            let keys: Vec<Vec<Option<String>>> =
                (0..dims.len()).map(|i| strings(std::slice::from_ref(batch), i)).collect::<Result<_, _>>()?;
            let int = |name: &str| -> Result<Vec<u64>, AuditError> { integers(batch, name) };
            let float = |name: &str| -> Result<Vec<f64>, AuditError> { floats(batch, name) };
            let units = int("units")?;
            let rows = int("rows")?;
            let sketches = batch
                .column_by_name("sketch")
                .and_then(|c| c.as_any().downcast_ref::<BinaryArray>())
                .ok_or_else(|| AuditError::Evidence("no sketch column".to_owned()))?;
            let mut columns = Vec::new();
            for j in 0..magnitudes.len() {
                columns.push((
                    float(&format!("total{j}"))?,
                    float(&format!("largest{j}"))?,
                    float(&format!("second{j}"))?,
                    int(&format!("values{j}"))?,
                    int(&format!("negatives{j}"))?,
                    int(&format!("missing{j}"))?,
                ));
            }
            for r in 0..batch.num_rows() {
                let key: Key = keys.iter().map(|k| k[r].clone()).collect();
                let sketch = Sketch::from_bytes(sketches.value(r));
                let mut cell = Cell { units: units[r], rows: rows[r], magnitudes: HashMap::new(), sketch };
                for (m, c) in magnitudes.iter().zip(&columns) {
                    cell.magnitudes.insert(
                        m.clone(),
                        Magnitude {
                            total: c.0[r],
                            largest: c.1[r],
                            second: c.2[r],
                            values: c.3[r],
                            negatives: c.4[r],
                            missing: c.5[r],
                        },
                    );
                }
                evidence.cells.insert(key, cell);
            }
        }
        for dim in &spec.dimensions {
            let domain = self.domain(spec, dim).await?;
            evidence.domains.push(domain);
        }
        Ok(evidence)
    }

    /// The evidence for a model's coefficient table: the rows and units it could have used, and
    /// the values of its term columns.
    pub(crate) async fn model(&mut self, spec: &OutputSpec, terms: &[String]) -> Result<ModelEvidence, AuditError> {
        let counted = counted(spec);
        let unit = column(&format!("{counted}.{}", self.privacy_unit(counted)?));
        let rows = self.rows(spec)?;
        let batches = self.query(format!("SELECT count(*) AS rows, count(DISTINCT {unit}) AS units {rows}")).await?;
        let mut evidence = ModelEvidence::default();
        if let Some(batch) = batches.first().filter(|b| b.num_rows() == 1) {
            evidence.rows = integers(batch, "rows")?[0];
            evidence.units = integers(batch, "units")?[0];
        }
        for term in terms {
            let dim = Dimension { name: String::new(), source: Some(term.clone()), banding: None, terms: None };
            let bare = term.split_once('.').map_or(term.as_str(), |(_, c)| c).to_owned();
            let domain = self.domain(spec, &dim).await?;
            evidence.domains.push((bare, domain));
        }
        Ok(evidence)
    }

    /// Which of `values` appear in string column `source` (raw values).
    pub(crate) async fn members(
        &mut self,
        source: &str,
        values: &BTreeSet<String>,
    ) -> Result<BTreeSet<String>, AuditError> {
        if values.is_empty() {
            return Ok(BTreeSet::new());
        }
        let list: Vec<String> = values.iter().map(|v| literal(v)).collect();
        let x = column(source);
        let (dataset, _) = source.split_once('.').unwrap_or((source, ""));
        let sql = format!(
            "SELECT DISTINCT CAST({x} AS VARCHAR) AS v FROM {} WHERE CAST({x} AS VARCHAR) IN ({})",
            quote(dataset),
            list.join(", ")
        );
        let batches = self.query(sql).await?;
        Ok(strings(&batches, 0)?.into_iter().flatten().collect())
    }

    fn column_type(&self, source: &str) -> Result<DataType, AuditError> {
        let (dataset, name) = source.split_once('.').unwrap_or((source, ""));
        let dataset = self.catalog.dataset(dataset).map_err(|e| AuditError::Evidence(e.to_string()))?;
        let col = dataset.column(name).ok_or_else(|| AuditError::Evidence(format!("no column {source}")))?;
        Ok(col.data_type.to_arrow())
    }

    fn privacy_unit(&self, dataset: &str) -> Result<String, AuditError> {
        self.catalog.dataset(dataset).map(|d| d.privacy_unit.clone()).map_err(|e| AuditError::Evidence(e.to_string()))
    }
}

/// `FROM` the counted dataset, joined as the contract says; no filters.
fn from(spec: &OutputSpec) -> String {
    let mut sql = format!("FROM {}", quote(counted(spec)));
    if let Some(join) = &spec.join {
        sql += &format!(" JOIN {} ON {} = {}", quote(dataset_of(&join.to)), column(&join.from), column(&join.to));
    }
    sql
}

/// The dataset a table's measures are `of`.
pub(crate) fn counted(spec: &OutputSpec) -> &str {
    spec.measures.first().map_or("", |m| dataset_of(&m.of))
}

/// The columns whose sums the evidence needs: every measure's `of` column and ratio
/// denominator.
pub(crate) fn magnitude_columns(spec: &OutputSpec) -> Vec<String> {
    let mut columns: Vec<String> = Vec::new();
    let all = spec.measures.iter().flat_map(|m: &Measure| std::iter::once(&m.of).chain(m.per.iter()));
    for source in all.filter(|s| s.contains('.')) {
        if dataset_of(source) == counted(spec) && !columns.contains(source) {
            columns.push(source.clone());
        }
    }
    columns
}

/// Column `index` of every batch as text.
pub(crate) fn strings(batches: &[RecordBatch], index: usize) -> Result<Vec<Option<String>>, AuditError> {
    let mut out = Vec::new();
    for batch in batches {
        out.extend(text(batch.column(index))?);
    }
    Ok(out)
}

/// Any column as text, the way keys are compared.
pub(crate) fn text(array: &ArrayRef) -> Result<Vec<Option<String>>, AuditError> {
    let utf8 = cast(array, &DataType::Utf8).map_err(|e| AuditError::Evidence(e.to_string()))?;
    Ok(utf8.as_string::<i32>().iter().map(|v| v.map(str::to_owned)).collect())
}

fn integers(batch: &RecordBatch, name: &str) -> Result<Vec<u64>, AuditError> {
    let array = batch.column_by_name(name).ok_or_else(|| AuditError::Evidence(format!("no column {name}")))?;
    let array = cast(array, &DataType::Int64).map_err(|e| AuditError::Evidence(e.to_string()))?;
    Ok(array.as_primitive::<Int64Type>().iter().map(|v| v.unwrap_or(0).max(0) as u64).collect())
}

fn floats(batch: &RecordBatch, name: &str) -> Result<Vec<f64>, AuditError> {
    let array = batch.column_by_name(name).ok_or_else(|| AuditError::Evidence(format!("no column {name}")))?;
    Ok(numbers(array)?.into_iter().map(|v| v.unwrap_or(0.0)).collect())
}

/// Any numeric column as `f64`s.
pub(crate) fn numbers(array: &ArrayRef) -> Result<Vec<Option<f64>>, AuditError> {
    let array = cast(array, &DataType::Float64).map_err(|e| AuditError::Evidence(e.to_string()))?;
    Ok(array.as_primitive::<Float64Type>().iter().collect())
}

/// `second_largest(x)`: the second-largest value of a group (0 when it has one value).
fn second_largest() -> datafusion::logical_expr::AggregateUDF {
    create_udaf(
        "second_largest",
        vec![DataType::Float64],
        Arc::new(DataType::Float64),
        Volatility::Immutable,
        Arc::new(|_| Ok(Box::new(TopTwo::default()))),
        Arc::new(vec![DataType::Float64, DataType::Float64]),
    )
}

#[derive(Debug, Default)]
struct TopTwo {
    first: Option<f64>,
    second: Option<f64>,
}

impl TopTwo {
    fn push(&mut self, value: f64) {
        match self.first {
            Some(first) if value > first => {
                self.second = Some(first);
                self.first = Some(value);
            }
            Some(_) => {
                if self.second.is_none_or(|s| value > s) {
                    self.second = Some(value);
                }
            }
            None => self.first = Some(value),
        }
    }

    fn push_all(&mut self, array: &ArrayRef) {
        let values: &Float64Array = array.as_primitive::<Float64Type>();
        for v in values.iter().flatten() {
            self.push(v);
        }
    }
}

impl Accumulator for TopTwo {
    fn update_batch(&mut self, values: &[ArrayRef]) -> datafusion::error::Result<()> {
        self.push_all(&values[0]);
        Ok(())
    }

    fn evaluate(&mut self) -> datafusion::error::Result<ScalarValue> {
        Ok(ScalarValue::Float64(Some(self.second.unwrap_or(0.0))))
    }

    fn size(&self) -> usize {
        size_of_val(self)
    }

    fn state(&mut self) -> datafusion::error::Result<Vec<ScalarValue>> {
        Ok(vec![ScalarValue::Float64(self.first), ScalarValue::Float64(self.second)])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> datafusion::error::Result<()> {
        self.push_all(&states[0]);
        self.push_all(&states[1]);
        Ok(())
    }
}

/// `unit_sketch(unit)`: the [`Sketch`] of the distinct units of a group (each unit comes once:
/// the inner query groups by unit), as [`Sketch::to_bytes`].
fn unit_sketch(hasher: UnitHasher) -> datafusion::logical_expr::AggregateUDF {
    create_udaf(
        "unit_sketch",
        vec![DataType::Utf8],
        Arc::new(DataType::Binary),
        Volatility::Immutable,
        Arc::new(move |_| Ok(Box::new(Sketching { hasher: hasher.clone(), sketch: Sketch::default() }))),
        Arc::new(vec![DataType::Binary]),
    )
}

#[derive(Debug)]
struct Sketching {
    hasher: UnitHasher,
    sketch: Sketch,
}

impl Sketching {
    fn encoded(&self) -> ScalarValue {
        ScalarValue::Binary(Some(self.sketch.to_bytes()))
    }
}

impl Accumulator for Sketching {
    fn update_batch(&mut self, values: &[ArrayRef]) -> datafusion::error::Result<()> {
        for unit in values[0].as_string::<i32>().iter().flatten() {
            self.sketch.insert(&self.hasher, unit.as_bytes());
        }
        Ok(())
    }

    fn evaluate(&mut self) -> datafusion::error::Result<ScalarValue> {
        Ok(self.encoded())
    }

    fn size(&self) -> usize {
        size_of_val(self) + self.sketch.evaluations.len() * 8
    }

    fn state(&mut self) -> datafusion::error::Result<Vec<ScalarValue>> {
        Ok(vec![self.encoded()])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> datafusion::error::Result<()> {
        let states = states[0].as_any().downcast_ref::<BinaryArray>().ok_or_else(|| {
            datafusion::error::DataFusionError::Internal("unit_sketch state is not binary".to_owned())
        })?;
        for state in states.iter().flatten() {
            let other = Sketch::from_bytes(state).ok_or_else(|| {
                datafusion::error::DataFusionError::Internal("unit_sketch state is malformed".to_owned())
            })?;
            self.sketch.merge(&other);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_two_keeps_the_two_largest() {
        let mut top = TopTwo::default();
        for v in [3.0, 9.0, 1.0, 9.0, 4.0] {
            top.push(v);
        }
        assert_eq!((top.first, top.second), (Some(9.0), Some(9.0)));
        let mut one = TopTwo::default();
        one.push(5.0);
        assert_eq!(one.evaluate().unwrap(), ScalarValue::Float64(Some(0.0)));
    }
}
