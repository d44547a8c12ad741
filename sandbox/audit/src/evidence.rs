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

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Float64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type, Int64Type};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, EmitTo, GroupsAccumulator, Signature, Volatility, create_udaf,
};
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
    /// For differential privacy: the sum of each unit's total clamped to the policy's bound.
    pub(crate) clamped: f64,
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

/// For a table of cells: each cell's evidence, and per dimension the shown labels that are not
/// values of its source.
#[derive(Debug, Default)]
pub(crate) struct TableEvidence {
    pub(crate) cells: HashMap<Key, Cell>,
    pub(crate) outside: Vec<BTreeSet<String>>,
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

/// `YYYY`, `YYYY-MM` or `YYYYQn`, from integer date parts: formatting with `to_char` costs
/// twice the whole grouped query over ten million rows.
fn date_label(expr: &str, part: DatePart) -> String {
    let field = |name: &str, width: u8| {
        format!("lpad(CAST(CAST(date_part('{name}', {expr}) AS BIGINT) AS VARCHAR), {width}, '0')")
    };
    // `||`, not `concat`: a NULL date gives a NULL label.
    match part {
        DatePart::Year => field("year", 4),
        DatePart::Month => format!("({} || '-' || {})", field("year", 4), field("month", 2)),
        DatePart::Quarter => format!("({} || 'Q' || {})", field("year", 4), field("quarter", 1)),
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
        ctx.register_udaf(unit_set(hasher.clone()));
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

    /// The evidence for a table of cells. `shown` holds, per dimension, the labels the output
    /// shows; those found in no cell are looked up in the dimension's domain.
    ///
    /// One grouped pass over the rows gives each cell's rows, distinct units (and their sketch)
    /// and, per magnitude, the rows' largest and second-largest values. Those are the largest
    /// contributions per unit only where each unit has one row in the cell; where some cell has
    /// more rows than units, a second pass sums each unit's rows first.
    pub(crate) async fn cells(
        &mut self,
        spec: &OutputSpec,
        shown: &[BTreeSet<String>],
    ) -> Result<TableEvidence, AuditError> {
        let mut evidence = self.cells_query(spec, false, None).await?;
        let repeated = evidence.cells.values().any(|c| c.sketch.as_ref().is_some_and(|s| s.size != c.rows));
        if repeated && !magnitude_columns(spec).is_empty() {
            evidence = self.cells_query(spec, true, None).await?;
        }
        for (i, dim) in spec.dimensions.iter().enumerate() {
            let in_cells: BTreeSet<&str> = evidence.cells.keys().filter_map(|k| k[i].as_deref()).collect();
            let unseen: BTreeSet<String> =
                shown.get(i).into_iter().flatten().filter(|v| !in_cells.contains(v.as_str())).cloned().collect();
            let outside = if unseen.is_empty() {
                unseen
            } else {
                let domain = self.domain(spec, dim).await?;
                unseen.into_iter().filter(|v| !domain.contains(v)).collect()
            };
            evidence.outside.push(outside);
        }
        Ok(evidence)
    }

    /// The grouped query of [`Evidence::cells`]: over rows, or over per-unit sums (`by_unit`),
    /// which may also be clamped to `[-bound, bound]` ([`Magnitude::clamped`]).
    async fn cells_query(
        &mut self,
        spec: &OutputSpec,
        by_unit: bool,
        bound: Option<f64>,
    ) -> Result<TableEvidence, AuditError> {
        let unit = column(&format!("{}.{}", counted(spec), self.privacy_unit(counted(spec))?));
        let dims: Vec<String> = spec.dimensions.iter().map(|d| self.dimension(d)).collect::<Result<_, _>>()?;
        let magnitudes = magnitude_columns(spec);

        // The inner select: rows, or one row per (cell, unit).
        let mut inner = Vec::new();
        let mut outer = Vec::new();
        for (i, d) in dims.iter().enumerate() {
            inner.push(format!("{d} AS d{i}"));
            outer.push(format!("d{i}"));
        }
        let keys = outer.clone();
        inner.push(format!("arrow_cast({unit}, 'Utf8') AS unit"));
        inner.push(if by_unit { "count(*) AS rows" } else { "1 AS rows" }.to_owned());
        outer.push("sum(rows) AS rows".to_owned());
        outer.push("unit_set(unit) AS sketch".to_owned());
        for (j, m) in magnitudes.iter().enumerate() {
            let x = format!("CAST({} AS DOUBLE)", column(m));
            let (s, n, neg, miss) = (
                format!("sum({x})"),
                format!("count({x})"),
                format!("sum(CASE WHEN {x} < 0 THEN 1 ELSE 0 END)"),
                format!("sum(CASE WHEN {x} IS NULL THEN 1 ELSE 0 END)"),
            );
            if by_unit {
                inner.extend([format!("{s} AS s{j}"), format!("{n} AS n{j}"), format!("{neg} AS neg{j}")]);
                inner.push(format!("{miss} AS miss{j}"));
            } else {
                inner.extend([format!("{x} AS s{j}"), format!("CASE WHEN {x} IS NULL THEN 0 ELSE 1 END AS n{j}")]);
                inner.push(format!("CASE WHEN {x} < 0 THEN 1 ELSE 0 END AS neg{j}"));
                inner.push(format!("CASE WHEN {x} IS NULL THEN 1 ELSE 0 END AS miss{j}"));
            }
            outer.push(format!("sum(s{j}) AS total{j}"));
            outer.push(format!("max(s{j}) AS largest{j}"));
            outer.push(format!("second_largest(s{j}) AS second{j}"));
            outer.push(format!("sum(n{j}) AS values{j}"));
            outer.push(format!("sum(neg{j}) AS negatives{j}"));
            outer.push(format!("sum(miss{j}) AS missing{j}"));
            if let (true, Some(b)) = (by_unit, bound) {
                // Units only: rows without one are no unit's contribution.
                outer.push(format!(
                    "sum(CASE WHEN unit IS NULL THEN 0 ELSE greatest(least(s{j}, {b:?}), {:?}) END) AS clamped{j}",
                    -b
                ));
            }
        }
        let group_inner = if by_unit {
            let positions: Vec<String> = (1..=dims.len() + 1).map(|i| i.to_string()).collect();
            format!(" GROUP BY {}", positions.join(", "))
        } else {
            String::new()
        };
        let group_outer = if keys.is_empty() { String::new() } else { format!(" GROUP BY {}", keys.join(", ")) };
        let sql = format!(
            "SELECT {} FROM (SELECT {} {}{group_inner}) cells{group_outer}",
            outer.join(", "),
            inner.join(", "),
            self.rows(spec)?,
        );
        let batches = self.query(sql).await?;

        let mut evidence = TableEvidence::default();
        for batch in &batches {
            let keys: Vec<Vec<Option<String>>> =
                (0..dims.len()).map(|i| strings(std::slice::from_ref(batch), i)).collect::<Result<_, _>>()?;
            let int = |name: &str| -> Result<Vec<u64>, AuditError> { integers(batch, name) };
            let float = |name: &str| -> Result<Vec<f64>, AuditError> { floats(batch, name) };
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
                    if bound.is_some() { float(&format!("clamped{j}"))? } else { vec![0.0; batch.num_rows()] },
                ));
            }
            for r in 0..batch.num_rows() {
                let key: Key = keys.iter().map(|k| k[r].clone()).collect();
                let sketch = Sketch::from_bytes(sketches.value(r))
                    .ok_or_else(|| AuditError::Evidence("a malformed unit sketch".to_owned()))?;
                let mut cell =
                    Cell { units: sketch.size, rows: rows[r], magnitudes: HashMap::new(), sketch: Some(sketch) };
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
                            clamped: c.6[r],
                        },
                    );
                }
                evidence.cells.insert(key, cell);
            }
        }
        Ok(evidence)
    }

    /// What differential privacy releases of a table of cells: each cell's distinct units and,
    /// per magnitude, the sum of each unit's total clamped to `[-bound, bound]`.
    pub(crate) async fn dp_cells(&mut self, spec: &OutputSpec, bound: f64) -> Result<TableEvidence, AuditError> {
        self.cells_query(spec, true, Some(bound)).await
    }

    /// The most cells of the table one unit falls in: its figures' sensitivity grows with it.
    pub(crate) async fn max_cells_per_unit(&mut self, spec: &OutputSpec) -> Result<u64, AuditError> {
        let unit = column(&format!("{}.{}", counted(spec), self.privacy_unit(counted(spec))?));
        let mut select: Vec<String> = spec.dimensions.iter().map(|d| self.dimension(d)).collect::<Result<_, _>>()?;
        select.push(format!("{unit} AS unit"));
        let positions: Vec<String> = (1..=select.len()).map(|i| i.to_string()).collect();
        let per_cell = format!("SELECT {} {} GROUP BY {}", select.join(", "), self.rows(spec)?, positions.join(", "));
        let batches = self
            .query(format!(
                "SELECT coalesce(max(cells), 0) AS most FROM \
                 (SELECT unit, count(*) AS cells FROM ({per_cell}) t WHERE unit IS NOT NULL GROUP BY unit) u"
            ))
            .await?;
        Ok(batches.first().map(|b| integers(b, "most")).transpose()?.and_then(|v| v.first().copied()).unwrap_or(0))
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
fn second_largest() -> AggregateUDF {
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

/// `unit_set(unit)`: the [`Sketch`] of a group's distinct units, as [`Sketch::to_bytes`]; its
/// size is the number of distinct units. Each group keeps its units' field elements
/// ([`UnitHasher::element`], 8 bytes a row) and sorts out the repeats at the end, so a table
/// whose rows are one per unit needs no inner grouping by unit to count and sketch them. A
/// groups accumulator: one call per batch for all groups, not one per group.
fn unit_set(hasher: UnitHasher) -> AggregateUDF {
    AggregateUDF::new_from_impl(UnitSet {
        hasher,
        signature: Signature::exact(vec![DataType::Utf8], Volatility::Immutable),
    })
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct UnitSet {
    hasher: UnitHasher,
    signature: Signature,
}

impl AggregateUDFImpl for UnitSet {
    fn name(&self) -> &str {
        "unit_set"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(DataType::Binary)
    }

    fn state_fields(&self, args: StateFieldsArgs) -> datafusion::error::Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(format_state_name(args.name, "elements"), DataType::Binary, true))])
    }

    fn accumulator(&self, _: AccumulatorArgs) -> datafusion::error::Result<Box<dyn Accumulator>> {
        Ok(Box::new(OneUnitSet { hasher: self.hasher.clone(), elements: Vec::new() }))
    }

    fn groups_accumulator_supported(&self, _: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(&self, _: AccumulatorArgs) -> datafusion::error::Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(UnitSets { hasher: self.hasher.clone(), groups: Vec::new(), elements: 0 }))
    }
}

/// The sketch of distinct `elements`.
fn sketch_of(mut elements: Vec<u64>) -> Vec<u8> {
    elements.sort_unstable();
    elements.dedup();
    let mut sketch = Sketch::default();
    for x in elements {
        sketch.insert_element(x);
    }
    sketch.to_bytes()
}

fn encode_elements(elements: &[u64]) -> Vec<u8> {
    elements.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn decode_elements(bytes: &[u8]) -> impl Iterator<Item = u64> + '_ {
    bytes.chunks_exact(8).map(|w| u64::from_le_bytes(w.try_into().expect("8 bytes")))
}

fn binary(array: &ArrayRef) -> datafusion::error::Result<&BinaryArray> {
    array
        .as_any()
        .downcast_ref::<BinaryArray>()
        .ok_or_else(|| datafusion::error::DataFusionError::Internal("unit_set state is not binary".to_owned()))
}

fn included(filter: Option<&BooleanArray>, row: usize) -> bool {
    filter.is_none_or(|f| f.is_valid(row) && f.value(row))
}

/// `unit_set` without grouping.
#[derive(Debug)]
struct OneUnitSet {
    hasher: UnitHasher,
    elements: Vec<u64>,
}

impl Accumulator for OneUnitSet {
    fn update_batch(&mut self, values: &[ArrayRef]) -> datafusion::error::Result<()> {
        self.elements.extend(values[0].as_string::<i32>().iter().flatten().map(|u| self.hasher.element(u.as_bytes())));
        Ok(())
    }

    fn evaluate(&mut self) -> datafusion::error::Result<ScalarValue> {
        Ok(ScalarValue::Binary(Some(sketch_of(std::mem::take(&mut self.elements)))))
    }

    fn size(&self) -> usize {
        size_of_val(self) + self.elements.capacity() * 8
    }

    fn state(&mut self) -> datafusion::error::Result<Vec<ScalarValue>> {
        Ok(vec![ScalarValue::Binary(Some(encode_elements(&self.elements)))])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> datafusion::error::Result<()> {
        for state in binary(&states[0])?.iter().flatten() {
            self.elements.extend(decode_elements(state));
        }
        Ok(())
    }
}

/// `unit_set` for every group of a GROUP BY.
struct UnitSets {
    hasher: UnitHasher,
    groups: Vec<Vec<u64>>,
    /// Elements held, for `size`.
    elements: usize,
}

impl GroupsAccumulator for UnitSets {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> datafusion::error::Result<()> {
        self.groups.resize_with(total_num_groups, Vec::new);
        for (row, (unit, &group)) in values[0].as_string::<i32>().iter().zip(group_indices).enumerate() {
            if let Some(unit) = unit
                && included(opt_filter, row)
            {
                self.groups[group].push(self.hasher.element(unit.as_bytes()));
                self.elements += 1;
            }
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> datafusion::error::Result<ArrayRef> {
        let groups = emit_to.take_needed(&mut self.groups);
        self.elements -= groups.iter().map(Vec::len).sum::<usize>();
        Ok(Arc::new(groups.into_iter().map(|g| Some(sketch_of(g))).collect::<BinaryArray>()))
    }

    fn state(&mut self, emit_to: EmitTo) -> datafusion::error::Result<Vec<ArrayRef>> {
        let groups = emit_to.take_needed(&mut self.groups);
        self.elements -= groups.iter().map(Vec::len).sum::<usize>();
        Ok(vec![Arc::new(groups.iter().map(|g| Some(encode_elements(g))).collect::<BinaryArray>())])
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> datafusion::error::Result<()> {
        self.groups.resize_with(total_num_groups, Vec::new);
        for (state, &group) in binary(&values[0])?.iter().zip(group_indices) {
            let before = self.groups[group].len();
            self.groups[group].extend(decode_elements(state.unwrap_or_default()));
            self.elements += self.groups[group].len() - before;
        }
        Ok(())
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> datafusion::error::Result<Vec<ArrayRef>> {
        let states: BinaryArray = values[0]
            .as_string::<i32>()
            .iter()
            .enumerate()
            .map(|(row, unit)| {
                let elements = match unit {
                    Some(unit) if included(opt_filter, row) => vec![self.hasher.element(unit.as_bytes())],
                    _ => Vec::new(),
                };
                Some(encode_elements(&elements))
            })
            .collect();
        Ok(vec![Arc::new(states)])
    }

    fn size(&self) -> usize {
        self.groups.capacity() * size_of::<Vec<u64>>() + self.elements * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn date_labels_are_those_of_to_char() {
        let ctx = SessionContext::new();
        let dates = "SELECT CAST(d AS DATE) AS d FROM (VALUES ('0999-01-05'), ('1985-02-28'), ('2024-10-01'), \
                     ('2024-12-31'), (NULL)) AS t(d)";
        let labels = |expr: String| {
            let ctx = ctx.clone();
            async move {
                let batches = ctx.sql(&format!("SELECT {expr} FROM ({dates})")).await.unwrap().collect().await.unwrap();
                strings(&batches, 0).unwrap()
            }
        };
        for (part, format) in [(DatePart::Year, "'%Y'"), (DatePart::Month, "'%Y-%m'")] {
            assert_eq!(labels(date_label("d", part)).await, labels(format!("to_char(d, {format})")).await);
        }
        let quarters = labels(date_label("d", DatePart::Quarter)).await;
        let expected = ["0999Q1", "1985Q1", "2024Q4", "2024Q4"].map(|q| Some(q.to_owned()));
        assert_eq!(quarters, [&expected[..], &[None]].concat());
    }

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
