//! The host's own evidence: for each output table, a grouped query over the raw files of the
//! datasets the table counts, with the output contract's dimensions, filters and join.
//!
//! Every identifier in the generated SQL is a catalog column the manifest check has matched,
//! quoted; every value is a manifest literal or bound parameter, quoted as a string literal. The
//! session holds nothing but the datasets' raw tables and two aggregate functions (the second
//! largest value; a cell's unit sketch for differencing); nothing it computes leaves the host
//! except as a verdict.

use std::collections::{BTreeMap, BTreeSet, HashMap};
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
use sandbox_catalog::{Catalog, FileStamp, Variant};
use sandbox_contract::manifest::{
    AgeAt, Banding, DatePart, Dimension, Filter, FilterOp, Measure, OutputSpec, Statistic, dataset_of,
};

use crate::AuditError;
use crate::differencing::{Sketch, UnitHasher};

/// A cell's key: its dimension values as text (NULL as `None`).
pub(crate) type Key = Vec<Option<String>>;

/// What the host knows about one magnitude column in one cell.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Magnitude {
    /// The exact sum (decimal arithmetic, six decimals a value).
    pub(crate) total: f64,
    /// The largest and second-largest sum per privacy unit.
    pub(crate) largest: f64,
    pub(crate) second: f64,
    /// Non-NULL values, negative values, NULL values, values other than zero (rows).
    pub(crate) values: u64,
    pub(crate) negatives: u64,
    pub(crate) missing: u64,
    pub(crate) nonzero: u64,
    /// Units with at least one non-NULL value.
    pub(crate) valued_units: u64,
    /// The smallest and largest value of any row.
    pub(crate) min: Option<f64>,
    pub(crate) max: Option<f64>,
    /// The k-th smallest of the units' smallest values and the k-th largest of their largest
    /// (k = `min_units_extremes`): the most extreme values at least k units reach. `None` when
    /// fewer than k units have a value.
    pub(crate) kth_min: Option<f64>,
    pub(crate) kth_max: Option<f64>,
    /// The quantiles the table declares of this column ([`quantiles_of`]), over its rows.
    pub(crate) quantiles: Vec<Option<f64>>,
    /// For differential privacy: the sum of each unit's total clamped to the policy's bound.
    pub(crate) clamped: f64,
    /// Each unit's total as a set of (unit, total) pairs, sketched: two cells of the same units
    /// whose sums differ by a few units' rows differ in a few pairs (row-level differencing).
    pub(crate) pairs: Option<Sketch>,
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
    /// For rows joined to another dataset: its distinct units behind the cell, and per
    /// magnitude the largest and second-largest total one of them contributes.
    pub(crate) joined: Option<Joined>,
}

/// What the joined dataset's units stand behind in one cell.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Joined {
    pub(crate) units: u64,
    /// Those units, for differencing.
    pub(crate) sketch: Sketch,
    /// The largest and second-largest number of the counted dataset's units one of them has:
    /// a count of many people of one firm describes the firm.
    pub(crate) counts: (f64, f64),
    /// By `dataset.column` of the counted dataset: (largest, second) per joined unit.
    pub(crate) contributions: HashMap<String, (f64, f64)>,
}

/// The host's table of cells: every cell the contract's rows fall in, by label.
#[derive(Debug, Default)]
pub(crate) struct TableEvidence {
    pub(crate) cells: BTreeMap<Key, Cell>,
}

/// How two tables' cells share rows ([`Evidence::crossing`]).
#[derive(Debug, Default)]
pub(crate) struct Crossing {
    pub(crate) parts: Vec<Part>,
}

/// The rows that fall in cell `a` of the first table and cell `b` of the second; `None` where
/// they are outside that table.
#[derive(Debug)]
pub(crate) struct Part {
    pub(crate) a: Option<Key>,
    pub(crate) b: Option<Key>,
    pub(crate) rows: u64,
}

/// One combination of a model's term levels.
#[derive(Debug, Clone)]
pub(crate) struct CrossCell {
    pub(crate) levels: Vec<String>,
    /// Observations (rows with a response and every term).
    pub(crate) n: u64,
    pub(crate) sum_y: f64,
    pub(crate) sum_yy: f64,
    /// Responses other than 0 and 1 (a logistic model's response must be binary).
    pub(crate) non_binary: u64,
    /// Units with a row in the combination, with a response or not: what the policy views count.
    pub(crate) everyone: u64,
}

/// What stands behind a model ([`Evidence::model_levels`]).
#[derive(Debug, Default)]
pub(crate) struct ModelLevels {
    /// The units behind the whole model, and a joined dataset's.
    pub(crate) units: Sketch,
    pub(crate) joined: Option<Sketch>,
    /// Per term column, in order: its levels (`column=level`).
    pub(crate) levels: Vec<BTreeMap<String, Level>>,
    /// With two or more term columns, the combinations of their levels the fit uses
    /// (`a=x, b=y`): where the kept combinations form a tree, a coefficient is one
    /// combination's mean.
    pub(crate) combinations: BTreeMap<String, Level>,
}

/// One level of a term column.
#[derive(Debug, Clone)]
pub(crate) struct Level {
    pub(crate) units: Sketch,
    /// The response's total, and the largest and second-largest total of one unit.
    pub(crate) total: f64,
    pub(crate) largest: f64,
    pub(crate) second: f64,
    pub(crate) negatives: u64,
    /// A joined dataset's units, with their largest and second-largest totals.
    pub(crate) joined: Option<(Sketch, f64, f64)>,
}

/// The columns of one magnitude in a batch of the rows pass.
struct RowColumns {
    total: Vec<f64>,
    largest: Vec<f64>,
    smallest: Vec<Option<f64>>,
    second: Vec<f64>,
    values: Vec<u64>,
    negatives: Vec<u64>,
    missing: Vec<u64>,
    nonzero: Vec<u64>,
    kmax: Vec<Option<f64>>,
    kmin: Vec<Option<f64>>,
    quantiles: Vec<Vec<Option<f64>>>,
    pairs: Vec<Sketch>,
}

/// A column of unit sketches.
fn sketch_column(batch: &RecordBatch, name: &str) -> Result<Vec<Sketch>, AuditError> {
    (0..batch.num_rows()).map(|r| sketch_at(batch, name, r)).collect()
}

/// The unit sketch in column `name`, row `r`.
fn sketch_at(batch: &RecordBatch, name: &str, r: usize) -> Result<Sketch, AuditError> {
    let array = batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<BinaryArray>())
        .ok_or_else(|| AuditError::Evidence(format!("no sketch column {name}")))?;
    Sketch::from_bytes(array.value(r)).ok_or_else(|| AuditError::Evidence("a malformed unit sketch".to_owned()))
}

/// The trusted session and the answers it has given, kept so that tables sharing a query share
/// its result.
pub(crate) struct Evidence<'a> {
    ctx: SessionContext,
    catalog: &'a Catalog,
    variant: Variant,
    parameters: &'a [(String, String)],
    answers: HashMap<String, Vec<RecordBatch>>,
    /// The key units are sketched with (and cells keyed with, for perturbation).
    pub(crate) hasher: UnitHasher,
}

/// Which labels are values of a sensitive column, per column and per set of files it was read
/// from ([`FileStamp`]): every run of a product asks the same labels (districts, years) of the
/// same columns, and each answer was a scan of ten million strings. Inside the domain, in this
/// process only.
type Members = HashMap<(String, Vec<FileStamp>), HashMap<String, bool>>;

static MEMBERS: std::sync::LazyLock<std::sync::Mutex<Members>> = std::sync::LazyLock::new(Default::default);
/// Columns (with their files) remembered at most, and answers per column: past either, the
/// cache starts again.
const MEMBERS_COLUMNS: usize = 256;
const MEMBERS_VALUES: usize = 100_000;

fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

/// A banding's labels belong to its dimension's domain, whether rows fill them or not.
fn add_band_labels(spec: &OutputSpec, domains: &mut [BTreeSet<Option<String>>]) {
    for (dim, domain) in spec.dimensions.iter().zip(domains) {
        if let Some(Banding::Bins { labels, .. } | Banding::Age { labels, .. }) = &dim.banding {
            domain.extend(labels.iter().cloned().map(Some));
        }
    }
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

/// A dimension's label of column `x`, as SQL: the value as text, or its band (`at`: the date
/// an age band counts ages at).
fn label_expr(x: &str, banding: Option<&Banding>, at: Option<&str>) -> String {
    let bands = |conditions: Vec<String>, labels: &[String]| {
        let mut case = format!("CASE WHEN {x} IS NULL THEN NULL");
        for (condition, label) in conditions.iter().zip(labels) {
            case += &format!(" WHEN {condition} THEN {}", literal(label));
        }
        case + &format!(" ELSE {} END", literal(labels.last().map_or("", String::as_str)))
    };
    match banding {
        None => format!("CAST({x} AS VARCHAR)"),
        Some(Banding::Year) => date_label(x, DatePart::Year),
        Some(Banding::Quarter) => date_label(x, DatePart::Quarter),
        Some(Banding::Month) => date_label(x, DatePart::Month),
        Some(Banding::Bins { edges, labels }) => bands(bin_conditions(x, edges), labels),
        Some(Banding::Age { edges, labels, .. }) => bands(age_conditions(x, edges, at.unwrap_or_default()), labels),
    }
}

/// Below each edge, in order.
fn bin_conditions(x: &str, edges: &[f64]) -> Vec<String> {
    edges.iter().map(|edge| format!("CAST({x} AS DOUBLE) < {edge:?}")).collect()
}

/// Younger than each edge's years on `at`: born after `at` minus that many years.
fn age_conditions(x: &str, edges: &[i64], at: &str) -> Vec<String> {
    edges.iter().map(|edge| format!("{x} > DATE {} - INTERVAL '{edge} years'", literal(at))).collect()
}

/// A dimension as two steps, for groupings of many rows: a cheap key that divides the rows
/// exactly as its label ([`label_expr`]) does — a year as an integer, a band as its index — and
/// the label as an SQL expression of that key (`{KEY}`), computed once per group. Strings built
/// for every one of ten million rows were most of a crossing's time.
fn key_and_label(x: &str, banding: Option<&Banding>, at: Option<&str>) -> (String, String) {
    let part = |name: &str| format!("CAST(date_part('{name}', {x}) AS BIGINT)");
    let padded = |expr: &str, width: u8| format!("lpad(CAST({expr} AS VARCHAR), {width}, '0')");
    let bands = |conditions: Vec<String>, labels: &[String]| {
        let mut key = format!("CASE WHEN {x} IS NULL THEN NULL");
        let mut label = "CASE {KEY}".to_owned();
        for (i, (condition, text)) in conditions.iter().zip(labels).enumerate() {
            key += &format!(" WHEN {condition} THEN {i}");
            label += &format!(" WHEN {i} THEN {}", literal(text));
        }
        let last = labels.len().saturating_sub(1);
        key += &format!(" ELSE {last} END");
        label += &format!(" WHEN {last} THEN {} END", literal(labels.last().map_or("", String::as_str)));
        (key, label)
    };
    match banding {
        None => (x.to_owned(), "CAST({KEY} AS VARCHAR)".to_owned()),
        Some(Banding::Year) => (part("year"), padded("{KEY}", 4)),
        Some(Banding::Quarter) => (
            format!("{} * 10 + {}", part("year"), part("quarter")),
            format!("({} || 'Q' || {})", padded("{KEY} / 10", 4), padded("{KEY} % 10", 1)),
        ),
        Some(Banding::Month) => (
            format!("{} * 100 + {}", part("year"), part("month")),
            format!("({} || '-' || {})", padded("{KEY} / 100", 4), padded("{KEY} % 100", 2)),
        ),
        Some(Banding::Bins { edges, labels }) => bands(bin_conditions(x, edges), labels),
        Some(Banding::Age { edges, labels, .. }) => bands(age_conditions(x, edges, at.unwrap_or_default()), labels),
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
        Ok(Evidence { ctx, catalog, variant, parameters, answers: HashMap::new(), hasher: hasher.clone() })
    }

    /// The session with answers asked before (`crate::prefetch`), by their SQL.
    pub(crate) fn with_answers(mut self, answers: &HashMap<String, Vec<RecordBatch>>) -> Evidence<'a> {
        self.answers.extend(answers.iter().map(|(sql, batches)| (sql.clone(), batches.clone())));
        self
    }

    pub(crate) fn into_answers(self) -> HashMap<String, Vec<RecordBatch>> {
        self.answers
    }

    /// Registers `dataset`'s raw files if the session does not have them yet: an earlier table
    /// may join a dataset this run's manifest does not name.
    fn ensure(&mut self, dataset: &str) -> Result<(), AuditError> {
        let failed = |e: datafusion::error::DataFusionError| AuditError::Evidence(e.strip_backtrace());
        if self.ctx.table_exist(dataset).map_err(failed)? {
            return Ok(());
        }
        let entry = self.catalog.dataset(dataset).map_err(|e| AuditError::Evidence(e.to_string()))?;
        let table =
            sandbox_policy::files_table(entry, self.variant).map_err(|e| AuditError::Evidence(e.to_string()))?;
        self.ctx.register_table(dataset, table).map_err(failed)?;
        Ok(())
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
        let conditions: Vec<String> = spec.filters.iter().map(|f| self.condition(f)).collect::<Result<_, _>>()?;
        if !conditions.is_empty() {
            sql += &format!(" WHERE {}", conditions.join(" AND "));
        }
        Ok(sql)
    }

    /// One filter as an SQL condition.
    fn condition(&self, filter: &Filter) -> Result<String, AuditError> {
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
            None => {
                format!("arrow_cast({}, {})", literal(&value), literal(&self.column_type(&filter.column)?.to_string()))
            }
        };
        Ok(match filter.op {
            FilterOp::Eq => format!("{lhs} = {rhs}"),
            FilterOp::Ne => format!("{lhs} <> {rhs}"),
            FilterOp::Lt => format!("{lhs} < {rhs}"),
            FilterOp::Le => format!("{lhs} <= {rhs}"),
            FilterOp::Gt => format!("{lhs} > {rhs}"),
            FilterOp::Ge => format!("{lhs} >= {rhs}"),
            FilterOp::StartsWith => format!("starts_with(CAST({lhs} AS VARCHAR), {})", literal(&value)),
        })
    }

    /// Every label each dimension takes, whatever the rows a table counts: over the counted
    /// dataset (and its join) with only the filters on that dimension's own column, plus a
    /// banding's labels. The host's table is every combination of them, so which combinations
    /// the counted rows fill — one person's attributes, where a cell holds one person — never
    /// shows in which rows leave. One scan: a grouping set per dimension; none where the table
    /// has no filter, since its cells (`table`) then hold every row and so every label.
    pub(crate) async fn domains(
        &mut self,
        spec: &OutputSpec,
        table: &TableEvidence,
    ) -> Result<Vec<BTreeSet<Option<String>>>, AuditError> {
        if spec.dimensions.is_empty() {
            return Ok(Vec::new());
        }
        if spec.filters.is_empty() {
            let mut domains: Vec<BTreeSet<Option<String>>> = vec![BTreeSet::new(); spec.dimensions.len()];
            for key in table.cells.keys() {
                for (domain, label) in domains.iter_mut().zip(key) {
                    domain.insert(label.clone());
                }
            }
            add_band_labels(spec, &mut domains);
            return Ok(domains);
        }
        let mut select = Vec::new();
        let mut sets = Vec::new();
        for (i, dim) in spec.dimensions.iter().enumerate() {
            let own: Vec<String> = spec
                .filters
                .iter()
                .filter(|f| Some(&f.column) == dim.source.as_ref())
                .map(|f| self.condition(f))
                .collect::<Result<_, _>>()?;
            let kept =
                if own.is_empty() { "true".to_owned() } else { format!("coalesce({}, false)", own.join(" AND ")) };
            select.push(format!("{} AS d{i}", self.dimension(dim)?));
            select.push(format!("{kept} AS k{i}"));
            sets.push(format!("(d{i}, k{i})"));
        }
        let columns: Vec<String> =
            (0..spec.dimensions.len()).flat_map(|i| [format!("d{i}"), format!("k{i}")]).collect();
        let sql = format!(
            "SELECT {} FROM (SELECT {} {}) labels GROUP BY GROUPING SETS ({})",
            columns.join(", "),
            select.join(", "),
            from(spec),
            sets.join(", ")
        );
        let batches = self.query(sql).await?;
        let mut domains: Vec<BTreeSet<Option<String>>> = vec![BTreeSet::new(); spec.dimensions.len()];
        for batch in &batches {
            for (i, domain) in domains.iter_mut().enumerate() {
                let labels = strings(std::slice::from_ref(batch), 2 * i)?;
                let kept = batch.column(2 * i + 1).as_boolean();
                for (r, label) in labels.into_iter().enumerate() {
                    // A row of dimension i's grouping set: its flag is set (true or false).
                    if kept.is_valid(r) && kept.value(r) {
                        domain.insert(label);
                    }
                }
            }
        }
        add_band_labels(spec, &mut domains);
        Ok(domains)
    }

    /// The SQL expression of a dimension's label.
    fn dimension(&self, dim: &Dimension) -> Result<String, AuditError> {
        let (x, at) = self.dimension_parts(dim)?;
        Ok(label_expr(&x, dim.banding.as_ref(), at.as_deref()))
    }

    /// A dimension's column, as SQL, and the date ages are counted at.
    fn dimension_parts(&self, dim: &Dimension) -> Result<(String, Option<String>), AuditError> {
        let source = dim.source.as_deref().ok_or_else(|| AuditError::Evidence("a terms dimension".to_owned()))?;
        let at = match &dim.banding {
            Some(Banding::Age { at: AgeAt::Date(date), .. }) => Some(date.clone()),
            Some(Banding::Age { at: AgeAt::Parameter { parameter }, .. }) => {
                Some(self.parameter(parameter)?.to_owned())
            }
            _ => None,
        };
        Ok((column(source), at))
    }

    /// A dimension as two steps, for groupings of many rows ([`key_and_label`]).
    fn dimension_key(&self, dim: &Dimension) -> Result<(String, String), AuditError> {
        let (x, at) = self.dimension_parts(dim)?;
        Ok(key_and_label(&x, dim.banding.as_ref(), at.as_deref()))
    }

    /// The evidence for a table of cells: every cell the contract's rows fall in, in canonical
    /// order (by label, NULL first). `k` is the number of units that must reach a released
    /// minimum or maximum (`min_units_extremes`).
    ///
    /// One grouped pass over the rows gives each cell's rows, distinct units (and their sketch)
    /// and, per magnitude, its exact total, the rows' extremes and quantiles. Where each unit has
    /// one row in a cell its rows are its contributions; where some cell has more rows than
    /// units, a second pass takes each unit's rows together first (their sum for dominance, their
    /// smallest and largest values for the extremes).
    pub(crate) async fn cells(&mut self, spec: &OutputSpec, k: u64) -> Result<TableEvidence, AuditError> {
        let mut evidence = self.rows_pass(spec, k).await?;
        let repeated = evidence.cells.values().any(|c| c.units != c.rows);
        if repeated && !magnitude_columns(spec).is_empty() {
            self.units_pass(spec, k, None, &mut evidence).await?;
        }
        if spec.join.is_some() {
            self.joined_pass(spec, &mut evidence).await?;
        }
        Ok(evidence)
    }

    /// For rows joined to another dataset: that dataset's units behind each cell, and the
    /// largest totals one of them contributes. A cell of many insured people of one employer
    /// describes the employer.
    async fn joined_pass(&mut self, spec: &OutputSpec, evidence: &mut TableEvidence) -> Result<(), AuditError> {
        let Some(join) = &spec.join else { return Ok(()) };
        let other = dataset_of(&join.to);
        let other_unit = column(&format!("{other}.{}", self.privacy_unit(other)?));
        // Many rows to one: a key the other dataset repeats would count its rows more than once.
        let key = column(&join.to);
        let unique = self
            .query(format!("SELECT count({key}) = count(DISTINCT {key}) AS unique_key FROM {}", quote(other)))
            .await?;
        let unique = unique.first().map(|b| b.column(0).as_boolean().value(0)).unwrap_or(true);
        if !unique {
            return Err(AuditError::Contract(format!(
                "the join's key {} is not unique in {other}: each counted row must meet at most one row / 关联键在 {other} 中不唯一",
                join.to
            )));
        }
        let (mut inner, keys) = self.labelled_rows(spec)?;
        // The joined unit instead of the counted one.
        inner.pop();
        inner.push(format!("arrow_cast({other_unit}, 'Utf8') AS other"));
        let magnitudes = magnitude_columns(spec);
        let mut outer = keys.clone();
        outer.push("unit_set(other) AS others".to_owned());
        inner.push(format!(
            "CAST(count(DISTINCT {}) AS DOUBLE) AS c",
            column(&format!("{}.{}", counted(spec), self.privacy_unit(counted(spec))?))
        ));
        outer.push("max(c) AS most".to_owned());
        outer.push("second_largest(c) AS next".to_owned());
        for (j, m) in magnitudes.iter().enumerate() {
            inner.push(format!("CAST(sum(CAST({} AS DECIMAL(38, 6))) AS DOUBLE) AS t{j}", column(m)));
            outer.push(format!("max(t{j}) AS largest{j}"));
            outer.push(format!("second_largest(t{j}) AS second{j}"));
        }
        // One row per (cell, joined unit).
        let positions: Vec<String> = (1..=keys.len() + 1).map(|i| i.to_string()).collect();
        let group = if keys.is_empty() { String::new() } else { format!(" GROUP BY {}", keys.join(", ")) };
        let sql = format!(
            "SELECT {} FROM (SELECT {} {} GROUP BY {}) joined{group}",
            outer.join(", "),
            inner.join(", "),
            self.rows(spec)?,
            positions.join(", "),
        );
        let batches = self.query(sql).await?;
        for batch in &batches {
            let key_columns: Vec<Vec<Option<String>>> =
                (0..keys.len()).map(|i| strings(std::slice::from_ref(batch), i)).collect::<Result<_, _>>()?;
            let columns: Vec<(Vec<f64>, Vec<f64>)> = (0..magnitudes.len())
                .map(|j| Ok((floats(batch, &format!("largest{j}"))?, floats(batch, &format!("second{j}"))?)))
                .collect::<Result<_, AuditError>>()?;
            let (most, next) = (floats(batch, "most")?, floats(batch, "next")?);
            for r in 0..batch.num_rows() {
                let key: Key = key_columns.iter().map(|k| k[r].clone()).collect();
                let sketch = sketch_at(batch, "others", r)?;
                let contributions =
                    magnitudes.iter().zip(&columns).map(|(m, (l, s))| (m.clone(), (l[r], s[r]))).collect();
                if let Some(cell) = evidence.cells.get_mut(&key) {
                    cell.joined =
                        Some(Joined { units: sketch.size, sketch, counts: (most[r], next[r]), contributions });
                }
            }
        }
        Ok(())
    }

    /// What differential privacy releases of a table of cells: each cell's distinct units and,
    /// per magnitude, the sum of each unit's total clamped to `[-bound, bound]`.
    pub(crate) async fn dp_cells(&mut self, spec: &OutputSpec, bound: f64) -> Result<TableEvidence, AuditError> {
        let mut evidence = self.rows_pass(spec, 1).await?;
        self.units_pass(spec, 1, Some(bound), &mut evidence).await?;
        Ok(evidence)
    }

    /// The inner select every pass groups: each row's cell labels (`d0` ...) and privacy unit.
    fn labelled_rows(&self, spec: &OutputSpec) -> Result<(Vec<String>, Vec<String>), AuditError> {
        let unit = column(&format!("{}.{}", counted(spec), self.privacy_unit(counted(spec))?));
        let mut select = Vec::new();
        let mut keys = Vec::new();
        for (i, d) in spec.dimensions.iter().enumerate() {
            select.push(format!("{} AS d{i}", self.dimension(d)?));
            keys.push(format!("d{i}"));
        }
        select.push(format!("arrow_cast({unit}, 'Utf8') AS unit"));
        Ok((select, keys))
    }

    /// One pass over the rows: see [`Evidence::cells`].
    async fn rows_pass(&mut self, spec: &OutputSpec, k: u64) -> Result<TableEvidence, AuditError> {
        let (mut inner, keys) = self.labelled_rows(spec)?;
        let magnitudes = magnitude_columns(spec);
        let top = self.top_k(k);
        let mut outer = keys.clone();
        outer.push("count(*) AS rows".to_owned());
        outer.push("unit_set(unit) AS sketch".to_owned());
        for (j, m) in magnitudes.iter().enumerate() {
            let x = column(m);
            // Totals in exact decimal arithmetic: the same sum in any order, so the released
            // (rounded) figure is the same on every run, whatever the partitioning.
            inner.push(format!("CAST({x} AS DECIMAL(38, 6)) AS s{j}"));
            inner.push(format!("CAST({x} AS DOUBLE) AS x{j}"));
            outer.push(format!("CAST(sum(s{j}) AS DOUBLE) AS total{j}"));
            outer.push(format!("max(x{j}) AS largest{j}"));
            outer.push(format!("min(x{j}) AS smallest{j}"));
            outer.push(format!("second_largest(x{j}) AS second{j}"));
            outer.push(format!("count(x{j}) AS values{j}"));
            outer.push(format!("sum(CASE WHEN x{j} < 0 THEN 1 ELSE 0 END) AS negatives{j}"));
            outer.push(format!("sum(CASE WHEN x{j} IS NULL THEN 1 ELSE 0 END) AS missing{j}"));
            outer.push(format!("sum(CASE WHEN x{j} <> 0 THEN 1 ELSE 0 END) AS nonzero{j}"));
            outer.push(format!("{top}(x{j}) AS kmax{j}"));
            outer.push(format!("{top}(-x{j}) AS kmin{j}"));
            // Units that contribute nothing are left out: adding them changes neither the sum nor,
            // so, the key its perturbation is drawn with.
            outer.push(format!(
                "unit_set(CASE WHEN s{j} <> 0 THEN arrow_cast(unit || '|' || CAST(s{j} AS VARCHAR), 'Utf8') END) AS pairs{j}"
            ));
            for (i, q) in quantiles_of(spec, m).iter().enumerate() {
                outer.push(format!("percentile_cont(x{j}, {q:?}) AS q{j}_{i}"));
            }
        }
        let group = if keys.is_empty() { String::new() } else { format!(" GROUP BY {}", keys.join(", ")) };
        let sql =
            format!("SELECT {} FROM (SELECT {} {}) cells{group}", outer.join(", "), inner.join(", "), self.rows(spec)?);
        let batches = self.query(sql).await?;

        let mut evidence = TableEvidence::default();
        for batch in &batches {
            let key_columns: Vec<Vec<Option<String>>> =
                (0..keys.len()).map(|i| strings(std::slice::from_ref(batch), i)).collect::<Result<_, _>>()?;
            let rows = integers(batch, "rows")?;
            let mut columns = Vec::new();
            for (j, m) in magnitudes.iter().enumerate() {
                let quantiles = (0..quantiles_of(spec, m).len())
                    .map(|i| optional_floats(batch, &format!("q{j}_{i}")))
                    .collect::<Result<Vec<_>, _>>()?;
                columns.push(RowColumns {
                    total: floats(batch, &format!("total{j}"))?,
                    largest: floats(batch, &format!("largest{j}"))?,
                    smallest: optional_floats(batch, &format!("smallest{j}"))?,
                    second: floats(batch, &format!("second{j}"))?,
                    values: integers(batch, &format!("values{j}"))?,
                    negatives: integers(batch, &format!("negatives{j}"))?,
                    missing: integers(batch, &format!("missing{j}"))?,
                    nonzero: integers(batch, &format!("nonzero{j}"))?,
                    kmax: optional_floats(batch, &format!("kmax{j}"))?,
                    kmin: optional_floats(batch, &format!("kmin{j}"))?,
                    quantiles,
                    pairs: sketch_column(batch, &format!("pairs{j}"))?,
                });
            }
            for r in 0..batch.num_rows() {
                let key: Key = key_columns.iter().map(|k| k[r].clone()).collect();
                let sketch = sketch_at(batch, "sketch", r)?;
                let mut cell = Cell {
                    units: sketch.size,
                    rows: rows[r],
                    magnitudes: HashMap::new(),
                    sketch: Some(sketch),
                    joined: None,
                };
                for (m, c) in magnitudes.iter().zip(&columns) {
                    let largest = (c.values[r] > 0).then_some(c.largest[r]);
                    cell.magnitudes.insert(
                        m.clone(),
                        Magnitude {
                            total: c.total[r],
                            largest: c.largest[r],
                            second: c.second[r],
                            values: c.values[r],
                            negatives: c.negatives[r],
                            missing: c.missing[r],
                            nonzero: c.nonzero[r],
                            // One row per unit (checked by the caller): rows are units.
                            valued_units: c.values[r],
                            min: c.smallest[r],
                            max: largest,
                            kth_min: c.kmin[r].map(|v| -v),
                            kth_max: c.kmax[r],
                            quantiles: c.quantiles.iter().map(|q| q[r]).collect(),
                            clamped: 0.0,
                            pairs: Some(c.pairs[r].clone()),
                        },
                    );
                }
                evidence.cells.insert(key, cell);
            }
        }
        Ok(evidence)
    }

    /// The second pass of [`Evidence::cells`], over one row per (cell, unit): each unit's total,
    /// smallest and largest value. Replaces what the first pass read from rows as if they were
    /// units, and adds the clamped sums of differential privacy (`bound`).
    async fn units_pass(
        &mut self,
        spec: &OutputSpec,
        k: u64,
        bound: Option<f64>,
        evidence: &mut TableEvidence,
    ) -> Result<(), AuditError> {
        let (mut inner, keys) = self.labelled_rows(spec)?;
        let magnitudes = magnitude_columns(spec);
        let top = self.top_k(k);
        let mut outer = keys.clone();
        for (j, m) in magnitudes.iter().enumerate() {
            let x = column(m);
            inner.push(format!("CAST(sum(CAST({x} AS DECIMAL(38, 6))) AS DOUBLE) AS t{j}"));
            inner.push(format!("sum(CAST({x} AS DECIMAL(38, 6))) AS e{j}"));
            inner.push(format!("count({x}) AS n{j}"));
            inner.push(format!("max(CAST({x} AS DOUBLE)) AS hi{j}"));
            inner.push(format!("min(CAST({x} AS DOUBLE)) AS lo{j}"));
            outer.push(format!("max(t{j}) AS largest{j}"));
            outer.push(format!("second_largest(t{j}) AS second{j}"));
            outer.push(format!("sum(CASE WHEN n{j} > 0 THEN 1 ELSE 0 END) AS valued{j}"));
            outer.push(format!("{top}(hi{j}) AS kmax{j}"));
            outer.push(format!("{top}(-lo{j}) AS kmin{j}"));
            outer.push(format!(
                "unit_set(CASE WHEN e{j} <> 0 THEN arrow_cast(unit || '|' || CAST(e{j} AS VARCHAR), 'Utf8') END) AS pairs{j}"
            ));
            if let Some(b) = bound {
                // Units only: rows without one are no unit's contribution.
                outer.push(format!(
                    "sum(CASE WHEN unit IS NULL THEN 0 ELSE greatest(least(t{j}, {b:?}), {:?}) END) AS clamped{j}",
                    -b
                ));
            }
        }
        let positions: Vec<String> = (1..=keys.len() + 1).map(|i| i.to_string()).collect();
        let group = if keys.is_empty() { String::new() } else { format!(" GROUP BY {}", keys.join(", ")) };
        let sql = format!(
            "SELECT {} FROM (SELECT {} {} GROUP BY {}) units{group}",
            outer.join(", "),
            inner.join(", "),
            self.rows(spec)?,
            positions.join(", "),
        );
        let batches = self.query(sql).await?;
        for batch in &batches {
            let key_columns: Vec<Vec<Option<String>>> =
                (0..keys.len()).map(|i| strings(std::slice::from_ref(batch), i)).collect::<Result<_, _>>()?;
            for (j, m) in magnitudes.iter().enumerate() {
                let largest = floats(batch, &format!("largest{j}"))?;
                let second = floats(batch, &format!("second{j}"))?;
                let valued = integers(batch, &format!("valued{j}"))?;
                let kmax = optional_floats(batch, &format!("kmax{j}"))?;
                let kmin = optional_floats(batch, &format!("kmin{j}"))?;
                let pairs = sketch_column(batch, &format!("pairs{j}"))?;
                let clamped = match bound {
                    Some(_) => floats(batch, &format!("clamped{j}"))?,
                    None => vec![0.0; batch.num_rows()],
                };
                for r in 0..batch.num_rows() {
                    let key: Key = key_columns.iter().map(|k| k[r].clone()).collect();
                    let magnitude = evidence
                        .cells
                        .get_mut(&key)
                        .and_then(|c| c.magnitudes.get_mut(m))
                        .ok_or_else(|| AuditError::Evidence("the passes disagree on the cells".to_owned()))?;
                    magnitude.largest = largest[r];
                    magnitude.second = second[r];
                    magnitude.valued_units = valued[r];
                    magnitude.kth_max = kmax[r];
                    magnitude.kth_min = kmin[r].map(|v| -v);
                    magnitude.clamped = clamped[r];
                    magnitude.pairs = Some(pairs[r].clone());
                }
            }
        }
        Ok(())
    }

    /// The name of `top<k>(x)`, the k-th largest value of a group, registered on first use.
    fn top_k(&mut self, k: u64) -> String {
        let name = format!("top{k}");
        if !self.ctx.state().aggregate_functions().contains_key(&name) {
            self.ctx.register_udaf(top_k(k as usize));
        }
        name
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

    /// The evidence for a model: per combination of its term columns' levels (rows with every
    /// term), the observations (rows with a response too), the response's exact sum and sum of
    /// squares, how many responses are neither 0 nor 1, and how many units it holds (what the
    /// policy views' threshold counts).
    pub(crate) async fn model(
        &mut self,
        spec: &OutputSpec,
        terms: &[String],
        response: &str,
    ) -> Result<Vec<CrossCell>, AuditError> {
        let unit = column(&format!("{}.{}", counted(spec), self.privacy_unit(counted(spec))?));
        let y = column(response);
        let mut select = Vec::new();
        let mut present = Vec::new();
        for (i, t) in terms.iter().enumerate() {
            select.push(format!("CAST({} AS VARCHAR) AS l{i}", column(t)));
            present.push(format!("{} IS NOT NULL", column(t)));
        }
        let keys: Vec<String> = (0..terms.len()).map(|i| format!("l{i}")).collect();
        let rows = self.rows(spec)?;
        let rows = if rows.contains(" WHERE ") {
            format!("{rows} AND {}", present.join(" AND "))
        } else {
            format!("{rows} WHERE {}", present.join(" AND "))
        };
        let sql = format!(
            "SELECT {keys}, count(x) AS n, CAST(sum(s) AS DOUBLE) AS sy, CAST(sum(ss) AS DOUBLE) AS syy, \
             sum(CASE WHEN x IS NULL OR x = 0 OR x = 1 THEN 0 ELSE 1 END) AS non_binary, \
             unit_set(unit) AS everyone \
             FROM (SELECT {select}, arrow_cast({unit}, 'Utf8') AS unit, CAST({y} AS DOUBLE) AS x, \
             CAST({y} AS DECIMAL(38, 6)) AS s, CAST(CAST({y} AS DOUBLE) * CAST({y} AS DOUBLE) AS DECIMAL(38, 6)) AS ss \
             {rows}) obs GROUP BY {keys}",
            keys = keys.join(", "),
            select = select.join(", "),
        );
        let batches = self.query(sql).await?;
        let mut cells = Vec::new();
        for batch in &batches {
            let levels: Vec<Vec<Option<String>>> =
                (0..terms.len()).map(|i| strings(std::slice::from_ref(batch), i)).collect::<Result<_, _>>()?;
            let (n, sy, syy) = (integers(batch, "n")?, floats(batch, "sy")?, floats(batch, "syy")?);
            let non_binary = integers(batch, "non_binary")?;
            let sketch = |name: &str, r: usize| sketch_at(batch, name, r);
            for r in 0..batch.num_rows() {
                cells.push(CrossCell {
                    levels: levels.iter().map(|l| l[r].clone().unwrap_or_default()).collect(),
                    n: n[r],
                    sum_y: sy[r],
                    sum_yy: syy[r],
                    non_binary: non_binary[r],
                    everyone: sketch("everyone", r)?.size,
                });
            }
        }
        cells.sort_by(|a, b| a.levels.cmp(&b.levels));
        Ok(cells)
    }

    /// What stands behind a model, in the combinations of its terms' levels that hold at least
    /// `threshold` units (those the fit uses), over the rows with a response: in all, and per
    /// level of each term column (`column=level`), the counted dataset's units (and a joined
    /// dataset's), the response's total and the largest contributions of one unit of each, and
    /// negative responses. A level is a cell like any other: its coefficient is its mean against
    /// the reference's.
    pub(crate) async fn model_levels(
        &mut self,
        spec: &OutputSpec,
        terms: &[String],
        response: &str,
        threshold: u64,
    ) -> Result<ModelLevels, AuditError> {
        let unit = column(&format!("{}.{}", counted(spec), self.privacy_unit(counted(spec))?));
        let other = match &spec.join {
            Some(join) => {
                let other = dataset_of(&join.to);
                Some(column(&format!("{other}.{}", self.privacy_unit(other)?)))
            }
            None => None,
        };
        let y = column(response);
        let levels: Vec<String> = (0..terms.len()).map(|i| format!("l{i}")).collect();
        let mut select: Vec<String> =
            terms.iter().enumerate().map(|(i, t)| format!("CAST({} AS VARCHAR) AS l{i}", column(t))).collect();
        select.push(format!("arrow_cast({unit}, 'Utf8') AS unit"));
        if let Some(other) = &other {
            select.push(format!("arrow_cast({other}, 'Utf8') AS other"));
        }
        let present: Vec<String> = terms.iter().map(|t| format!("{} IS NOT NULL", column(t))).collect();
        let rows = self.rows(spec)?;
        let rows = if rows.contains(" WHERE ") {
            format!("{rows} AND {}", present.join(" AND "))
        } else {
            format!("{rows} WHERE {}", present.join(" AND "))
        };
        let on: Vec<String> = levels.iter().map(|l| format!("obs.{l} = kept.{l}")).collect();
        let with = format!(
            "WITH obs AS (SELECT {}, {y} AS x {rows}), \
             kept AS (SELECT {levels} FROM obs GROUP BY {levels} HAVING count(DISTINCT unit) >= {threshold}), \
             used AS (SELECT obs.* FROM obs JOIN kept ON {} WHERE obs.x IS NOT NULL)",
            select.join(", "),
            on.join(" AND "),
            levels = levels.join(", "),
        );
        let joined_all = if other.is_some() { ", unit_set(other) AS others" } else { "" };
        let all = self.query(format!("{with} SELECT unit_set(unit) AS units{joined_all} FROM used")).await?;
        let mut result = ModelLevels::default();
        if let Some(batch) = all.first().filter(|b| b.num_rows() == 1) {
            result.units = sketch_at(batch, "units", 0)?;
            result.joined = other.is_some().then(|| sketch_at(batch, "others", 0)).transpose()?;
        }
        let bare: Vec<&str> = terms.iter().map(|t| t.split_once('.').map_or(t.as_str(), |(_, c)| c)).collect();
        // Each term column's levels, then (with two or more) the combinations of them.
        let mut groupings: Vec<(String, Vec<usize>)> = (0..terms.len()).map(|i| (format!("l{i}"), vec![i])).collect();
        if terms.len() > 1 {
            groupings.push((levels.join(", "), (0..terms.len()).collect()));
        }
        for (g, (group, columns)) in groupings.iter().enumerate() {
            let outer: Vec<String> = (0..columns.len()).map(|c| format!("g{c}")).collect();
            let inner: Vec<String> = columns.iter().enumerate().map(|(c, &i)| format!("l{i} AS g{c}")).collect();
            // Per counted unit, then per joined unit: each one's total in the level.
            let by = |who: &str| {
                format!(
                    "{with} SELECT {outer}, unit_set({who}) AS units, CAST(sum(t) AS DOUBLE) AS total, max(t) AS largest, \
                     second_largest(t) AS second, sum(neg) AS negatives FROM (SELECT {inner}, {who}, \
                     CAST(sum(CAST(x AS DECIMAL(38, 6))) AS DOUBLE) AS t, sum(CASE WHEN x < 0 THEN 1 ELSE 0 END) AS neg \
                     FROM used GROUP BY {group}, {who}) per_unit GROUP BY {outer}",
                    outer = outer.join(", "),
                    inner = inner.join(", "),
                )
            };
            let name_of = |batch: &RecordBatch| -> Result<Vec<String>, AuditError> {
                let parts: Vec<Vec<Option<String>>> =
                    (0..columns.len()).map(|c| strings(std::slice::from_ref(batch), c)).collect::<Result<_, _>>()?;
                Ok((0..batch.num_rows())
                    .map(|r| {
                        let named: Vec<String> = columns
                            .iter()
                            .zip(&parts)
                            .map(|(&i, p)| format!("{}={}", bare[i], p[r].clone().unwrap_or_default()))
                            .collect();
                        named.join(", ")
                    })
                    .collect())
            };
            let mut found: BTreeMap<String, Level> = BTreeMap::new();
            for batch in &self.query(by("unit")).await? {
                let (total, largest, second) =
                    (floats(batch, "total")?, floats(batch, "largest")?, floats(batch, "second")?);
                let negatives = integers(batch, "negatives")?;
                for (r, name) in name_of(batch)?.into_iter().enumerate() {
                    let level = Level {
                        units: sketch_at(batch, "units", r)?,
                        total: total[r],
                        largest: largest[r],
                        second: second[r],
                        negatives: negatives[r],
                        joined: None,
                    };
                    found.insert(name, level);
                }
            }
            if other.is_some() {
                for batch in &self.query(by("other")).await? {
                    let (largest, second) = (floats(batch, "largest")?, floats(batch, "second")?);
                    for (r, name) in name_of(batch)?.into_iter().enumerate() {
                        if let Some(level) = found.get_mut(&name) {
                            level.joined = Some((sketch_at(batch, "units", r)?, largest[r], second[r]));
                        }
                    }
                }
            }
            if g < terms.len() {
                result.levels.push(found);
            } else {
                result.combinations = found;
            }
        }
        Ok(result)
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
        let (dataset, _) = source.split_once('.').unwrap_or((source, ""));
        // Answers already known for these very files (the same labels are asked of every run).
        let entry = self.catalog.dataset(dataset).map_err(|e| AuditError::Evidence(e.to_string()))?;
        let files = entry.stamps(self.variant).map_err(|e| AuditError::Evidence(e.to_string()))?;
        let key = (source.to_owned(), files);
        let (mut found, unknown) = {
            let cache = MEMBERS.lock().unwrap_or_else(|e| e.into_inner());
            let known = cache.get(&key);
            let found: BTreeSet<String> =
                values.iter().filter(|v| known.is_some_and(|k| k.get(*v) == Some(&true))).cloned().collect();
            let unknown: Vec<&String> = values.iter().filter(|v| known.is_none_or(|k| !k.contains_key(*v))).collect();
            (found, unknown)
        };
        if unknown.is_empty() {
            return Ok(found);
        }
        let list: Vec<String> = unknown.iter().map(|v| literal(v)).collect();
        let x = column(source);
        let sql = format!(
            "SELECT DISTINCT CAST({x} AS VARCHAR) AS v FROM {} WHERE CAST({x} AS VARCHAR) IN ({})",
            quote(dataset),
            list.join(", ")
        );
        let batches = self.query(sql).await?;
        let members: BTreeSet<String> = strings(&batches, 0)?.into_iter().flatten().collect();
        let mut cache = MEMBERS.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= MEMBERS_COLUMNS {
            cache.clear();
        }
        let known = cache.entry(key).or_default();
        if known.len() + unknown.len() > MEMBERS_VALUES {
            known.clear();
        }
        for v in unknown {
            known.insert(v.clone(), members.contains(v));
        }
        found.extend(members);
        Ok(found)
    }

    /// How table `a` and each of `others` over the same rows (one counted dataset, one join)
    /// divide them: per other table, the rows in each pair of their cells, and in each cell
    /// outside the other table (`None` on that side). Decided by the data, whatever the
    /// contracts' spelling: a coarser banding, another column that nests (street in district), a
    /// filter that keeps every row. One scan and one grouping, however many other tables.
    pub(crate) async fn crossings(
        &mut self,
        a: &OutputSpec,
        others: &[&OutputSpec],
    ) -> Result<Vec<Crossing>, AuditError> {
        if others.is_empty() {
            return Ok(Vec::new());
        }
        // A table that joins another dataset counts the rows that meet it; one that does not
        // counts them all: both are read from the counted rows left-joined to it.
        let join = std::iter::once(a).chain(others.iter().copied()).find_map(|s| s.join.clone());
        if let Some(join) = &join {
            self.ensure(dataset_of(&join.to))?;
        }
        let kept = |spec: &OutputSpec| -> Result<String, AuditError> {
            let mut conditions: Vec<String> =
                spec.filters.iter().map(|f| self.condition(f)).collect::<Result<_, _>>()?;
            if let Some(join) = &spec.join {
                conditions.push(format!("{} IS NOT NULL", column(&join.to)));
            }
            Ok(if conditions.is_empty() {
                "true".to_owned()
            } else {
                format!("coalesce({}, false)", conditions.join(" AND "))
            })
        };
        // One grouping by every distinct label expression and flag of all the tables (the finest
        // grain they share), rolled up here per partner: one hash aggregation over the rows,
        // however many partners.
        let mut keys_sql: Vec<String> = Vec::new();
        let mut labels_sql: Vec<String> = Vec::new();
        let mut flags_sql: Vec<String> = Vec::new();
        let index = |list: &mut Vec<String>, expr: String| match list.iter().position(|e| *e == expr) {
            Some(i) => i,
            None => {
                list.push(expr);
                list.len() - 1
            }
        };
        let mut layout = |spec: &OutputSpec| -> Result<(usize, Vec<usize>), AuditError> {
            let flag = index(&mut flags_sql, kept(spec)?);
            let dims = (spec.dimensions.iter())
                .map(|d| {
                    let (key, label) = self.dimension_key(d)?;
                    let k = index(&mut keys_sql, key);
                    Ok(index(&mut labels_sql, label.replace("{KEY}", &format!("k{k}"))))
                })
                .collect::<Result<_, AuditError>>()?;
            Ok((flag, dims))
        };
        let mine = layout(a)?;
        let theirs: Vec<(usize, Vec<usize>)> = others.iter().map(|b| layout(b)).collect::<Result<_, _>>()?;
        // Grouped by the keys first, then by the labels computed from them, group by group.
        let flags: Vec<String> = (0..flags_sql.len()).map(|i| format!("f{i}")).collect();
        let mut select: Vec<String> = flags_sql.iter().enumerate().map(|(i, e)| format!("{e} AS f{i}")).collect();
        select.extend(keys_sql.iter().enumerate().map(|(i, e)| format!("{e} AS k{i}")));
        let keys: Vec<String> = flags.iter().cloned().chain((0..keys_sql.len()).map(|i| format!("k{i}"))).collect();
        let mut labelled: Vec<String> = flags.clone();
        labelled.extend(labels_sql.iter().enumerate().map(|(i, e)| format!("{e} AS e{i}")));
        let columns: Vec<String> =
            flags.iter().cloned().chain((0..labels_sql.len()).map(|i| format!("e{i}"))).collect();
        let sql = format!(
            "SELECT {columns}, CAST(sum(n) AS BIGINT) AS n FROM (SELECT {labelled}, n FROM (\
             SELECT {keys}, count(*) AS n FROM (SELECT {} {}) crossing WHERE {} GROUP BY {keys}) keyed) labelled \
             GROUP BY {columns}",
            select.join(", "),
            match &join {
                Some(join) => format!(
                    "FROM {} LEFT JOIN {} ON {} = {}",
                    quote(counted(a)),
                    quote(dataset_of(&join.to)),
                    column(&join.from),
                    column(&join.to)
                ),
                None => from(a),
            },
            flags.join(" OR "),
            columns = columns.join(", "),
            keys = keys.join(", "),
            labelled = labelled.join(", "),
        );
        let batches = self.query(sql).await?;
        // Per partner: rows by (this table's cell, the partner's cell), `None` outside.
        type Sides = (Option<Key>, Option<Key>);
        let mut rolled: Vec<HashMap<Sides, u64>> = others.iter().map(|_| HashMap::new()).collect();
        for batch in &batches {
            let flags: Vec<&BooleanArray> = (0..flags_sql.len()).map(|i| batch.column(i).as_boolean()).collect();
            let labels: Vec<Vec<Option<String>>> = (0..labels_sql.len())
                .map(|i| strings(std::slice::from_ref(batch), flags_sql.len() + i))
                .collect::<Result<_, _>>()?;
            let rows = integers(batch, "n")?;
            for r in 0..batch.num_rows() {
                let key = |dims: &[usize]| -> Key { dims.iter().map(|&i| labels[i][r].clone()).collect() };
                let ia = flags[mine.0].value(r);
                for (k, (flag, dims)) in theirs.iter().enumerate() {
                    let ib = flags[*flag].value(r);
                    if !ia && !ib {
                        continue;
                    }
                    let part = (ia.then(|| key(&mine.1)), ib.then(|| key(dims)));
                    *rolled[k].entry(part).or_default() += rows[r];
                }
            }
        }
        let crossings: Vec<Crossing> = (rolled.into_iter())
            .map(|parts| Crossing { parts: parts.into_iter().map(|((a, b), rows)| Part { a, b, rows }).collect() })
            .collect();
        Ok(crossings)
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

/// `spec` with the run's parameters written in, so that a later audit can compute it again
/// without them (the history keeps it so).
pub(crate) fn resolve(spec: &OutputSpec, parameters: &[(String, String)]) -> Result<OutputSpec, AuditError> {
    let value = |name: &str| {
        parameters
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| AuditError::Evidence(format!("parameter {name} is not bound")))
    };
    let mut spec = spec.clone();
    for filter in &mut spec.filters {
        let text = match (&filter.value, &filter.parameter) {
            (Some(toml::Value::String(s)), _) => s.clone(),
            (Some(v), _) => v.to_string(),
            (None, Some(name)) => value(name)?,
            (None, None) => return Err(AuditError::Evidence("a filter has no value".to_owned())),
        };
        (filter.value, filter.parameter) = (Some(toml::Value::String(text)), None);
    }
    for dim in &mut spec.dimensions {
        if let Some(Banding::Age { at: at @ AgeAt::Parameter { .. }, .. }) = &mut dim.banding {
            let AgeAt::Parameter { parameter } = at else { unreachable!() };
            *at = AgeAt::Date(value(parameter)?);
        }
    }
    Ok(spec)
}

/// `FROM` the counted dataset, joined as the contract says; no filters.
pub(crate) fn from(spec: &OutputSpec) -> String {
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

/// The quantiles the table declares of `source`, in order.
pub(crate) fn quantiles_of(spec: &OutputSpec, source: &str) -> Vec<f64> {
    let mut out: Vec<f64> = Vec::new();
    for m in spec.measures.iter().filter(|m| m.statistic == Statistic::Quantile && m.of == source) {
        if let Some(q) = m.quantile.filter(|q| !out.contains(q)) {
            out.push(q);
        }
    }
    out
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
    Ok(optional_floats(batch, name)?.into_iter().map(|v| v.unwrap_or(0.0)).collect())
}

fn optional_floats(batch: &RecordBatch, name: &str) -> Result<Vec<Option<f64>>, AuditError> {
    let array = batch.column_by_name(name).ok_or_else(|| AuditError::Evidence(format!("no column {name}")))?;
    numbers(array)
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

/// `top<k>(x)`: the k-th largest value of a group, NULL when it has fewer than k values. It
/// keeps the k largest values seen, so its memory does not grow with the group.
fn top_k(k: usize) -> AggregateUDF {
    create_udaf(
        &format!("top{k}"),
        vec![DataType::Float64],
        Arc::new(DataType::Float64),
        Volatility::Immutable,
        Arc::new(move |_| Ok(Box::new(TopK { k: k.max(1), largest: Vec::new() }))),
        Arc::new(vec![DataType::Binary]),
    )
}

#[derive(Debug)]
struct TopK {
    k: usize,
    /// At most k values, largest first.
    largest: Vec<f64>,
}

impl TopK {
    fn push(&mut self, value: f64) {
        if self.largest.len() == self.k && self.largest.last().is_some_and(|&last| value <= last) {
            return;
        }
        let at = self.largest.partition_point(|&v| v >= value);
        self.largest.insert(at, value);
        self.largest.truncate(self.k);
    }
}

impl Accumulator for TopK {
    fn update_batch(&mut self, values: &[ArrayRef]) -> datafusion::error::Result<()> {
        for v in values[0].as_primitive::<Float64Type>().iter().flatten() {
            self.push(v);
        }
        Ok(())
    }

    fn evaluate(&mut self) -> datafusion::error::Result<ScalarValue> {
        let kth = (self.largest.len() == self.k).then(|| self.largest[self.k - 1]);
        Ok(ScalarValue::Float64(kth))
    }

    fn size(&self) -> usize {
        size_of_val(self) + self.largest.capacity() * 8
    }

    fn state(&mut self) -> datafusion::error::Result<Vec<ScalarValue>> {
        let bytes = self.largest.iter().flat_map(|v| v.to_le_bytes()).collect();
        Ok(vec![ScalarValue::Binary(Some(bytes))])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> datafusion::error::Result<()> {
        for state in binary(&states[0])?.iter().flatten() {
            for v in state.chunks_exact(8) {
                self.push(f64::from_le_bytes(v.try_into().expect("8 bytes")));
            }
        }
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
    async fn labels_from_keys_are_the_labels_of_the_rows() {
        let ctx = SessionContext::new();
        let values = "SELECT CAST(d AS DATE) AS d, CAST(v AS DOUBLE) AS v, s FROM (VALUES \
                      ('0999-01-05', 0.5, 'a'), ('1985-02-28', 1.0, 'b'), ('2024-10-01', 17.25, NULL), \
                      ('2024-12-31', -3.0, 'a'), (NULL, NULL, 'c')) AS t(d, v, s)";
        let labels = |sql: String| {
            let ctx = ctx.clone();
            async move {
                let batches = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
                strings(&batches, 0).unwrap()
            }
        };
        let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let bandings = [
            ("s", None),
            ("v", None),
            ("d", Some(Banding::Year)),
            ("d", Some(Banding::Quarter)),
            ("d", Some(Banding::Month)),
            ("v", Some(Banding::Bins { edges: vec![1.0, 10.0], labels: words(&["low", "mid", "high"]) })),
            (
                "d",
                Some(Banding::Age {
                    at: AgeAt::Date("2025-01-01".to_owned()),
                    edges: vec![18, 60],
                    labels: words(&["young", "adult", "old"]),
                }),
            ),
        ];
        for (x, banding) in bandings {
            let at = Some("2025-01-01");
            let direct = labels(format!("SELECT {} FROM ({values})", label_expr(x, banding.as_ref(), at))).await;
            let (key, label) = key_and_label(x, banding.as_ref(), at);
            let label = label.replace("{KEY}", "k");
            let keyed = labels(format!("SELECT {label} FROM (SELECT {key} AS k FROM ({values}))")).await;
            assert_eq!(direct, keyed, "{x} {banding:?}");
        }
    }

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
    fn top_k_gives_the_kth_largest_or_nothing() {
        let mut top = TopK { k: 3, largest: Vec::new() };
        for v in [3.0, 9.0, 1.0, 9.0, 4.0, 2.0] {
            top.push(v);
        }
        assert_eq!(top.largest, [9.0, 9.0, 4.0]);
        assert_eq!(top.evaluate().unwrap(), ScalarValue::Float64(Some(4.0)));
        let mut few = TopK { k: 3, largest: Vec::new() };
        few.push(1.0);
        few.push(2.0);
        assert_eq!(few.evaluate().unwrap(), ScalarValue::Float64(None));
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
