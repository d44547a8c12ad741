//! The output audit (出域审核): the only gate between a module's output tables and the outside.
//!
//! It trusts the module for nothing. For every output table the host computes its own evidence
//! from the raw data (`evidence`), with the output contract's dimensions, filters and join, and
//! judges every cell against the rules of DESIGN.md section 5 with the bureau's policy
//! (`policy`): declared counts and sums must match the evidence, every cell needs enough privacy
//! units and no dominant contributor, dimension values must come from their column's domain, and
//! no text or number may carry an identifier or a sensitive column's value. What passes is
//! released with suppressed cells blanked and counts rounded; the report says which rule decided
//! each cell, in English and Chinese, and its SHA-256 is what the release signs.

pub mod budget;
pub mod differencing;
pub mod dp;
mod evidence;
pub mod history;
pub mod identifiers;
mod policy;
mod report;
pub mod review;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, Float64Array, Int64Array, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use sandbox_catalog::{Catalog, Constraint, Variant};
use sandbox_runner::manifest::{Manifest, OutputSpec, Statistic, dataset_of};
use sandbox_runner::{OutputTable, RunRecord};
use serde::Serialize;

pub use crate::differencing::{Sketch, UnitHasher};
pub use crate::dp::DpSettings;
use crate::evidence::{Cell, Evidence, Key, numbers, text};
pub use crate::policy::{AuditPolicy, PolicyFileError, Rules};
pub use crate::report::{AuditReport, CellFinding, TableReport};

/// How a cell or a table fares, from best to worst; a table takes its worst cell's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    /// Blanked in the release; the rest of the table goes out.
    Suppressed,
    /// Held until two different bureau reviewers approve.
    Review,
    /// Nothing of the table leaves.
    Fail,
}

impl Verdict {
    /// As in the report's JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Suppressed => "suppressed",
            Verdict::Review => "review",
            Verdict::Fail => "fail",
        }
    }

    pub fn zh(self) -> &'static str {
        match self {
            Verdict::Pass => "通过",
            Verdict::Suppressed => "抑制",
            Verdict::Review => "人工复核",
            Verdict::Fail => "不通过",
        }
    }
}

/// Which rule decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    Threshold,
    Dominance,
    PRatio,
    Zero,
    NegativeValues,
    Extremes,
    ModelDf,
    Identifier,
    Membership,
    DimensionDomain,
    Inconsistent,
    Size,
    Differencing,
    SecondarySuppression,
    DifferentialPrivacy,
    ManualReview,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Threshold => "threshold",
            Rule::Dominance => "dominance",
            Rule::PRatio => "p-ratio",
            Rule::Zero => "zero",
            Rule::NegativeValues => "negative-values",
            Rule::Extremes => "extremes",
            Rule::ModelDf => "model-df",
            Rule::Identifier => "identifier",
            Rule::Membership => "membership",
            Rule::DimensionDomain => "dimension-domain",
            Rule::Inconsistent => "inconsistent",
            Rule::Size => "size",
            Rule::Differencing => "differencing",
            Rule::SecondarySuppression => "secondary-suppression",
            Rule::DifferentialPrivacy => "differential-privacy",
            Rule::ManualReview => "manual-review",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The host could not compute its evidence: the audit cannot decide, so nothing is released.
    #[error("the audit could not compute its evidence: {0}")]
    Evidence(String),
}

/// A table as it may leave: suppressed cells blank, counts rounded.
#[derive(Debug, Clone)]
pub struct ReleasedTable {
    pub name: String,
    pub batch: RecordBatch,
}

/// A released cell's privacy units, as differencing keeps them: a sketch, never the units.
/// The caller keeps every audit's [`Audit::cells`] and passes them to later audits.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReleasedCell {
    /// The dataset whose privacy units the cell counts.
    pub dataset: String,
    /// Which release, table and cell: for the report.
    pub label: String,
    pub sketch: Sketch,
}

/// The audit of one run.
#[derive(Debug)]
pub struct Audit {
    pub report: AuditReport,
    /// The tables that pass or pass with suppressions. Tables held for review or failed are not
    /// here.
    pub released: Vec<ReleasedTable>,
    /// The released (unsuppressed) cells of `released`, for later audits' differencing.
    pub cells: Vec<ReleasedCell>,
    /// The datasets whose released figures carry differential-privacy noise, with the ρ the run
    /// spent on each: the reservation to keep ([`budget::Ledger::commit`]); any other
    /// reservation of the run is refunded.
    pub dp_spent: Vec<(String, f64)>,
    /// Tables held for review, which leave only through [`Audit::approve`].
    held: Vec<review::HeldTable>,
}

/// What an audit needs.
#[derive(Debug)]
pub struct AuditRequest<'a> {
    pub catalog: &'a Catalog,
    /// The data the module read: the audit recomputes on the same files.
    pub variant: Variant,
    pub manifest: &'a Manifest,
    pub record: &'a RunRecord,
    pub tables: &'a [OutputTable],
    pub policy: &'a AuditPolicy,
    /// Maps privacy units into sketches; one key for every audit of the same data, kept inside
    /// the domain.
    pub hasher: &'a UnitHasher,
    /// Cells released earlier, by any operator: no cell may differ from one of them by fewer
    /// units than the threshold.
    pub earlier: &'a [ReleasedCell],
}

/// Audits a run's output tables.
pub async fn audit(request: AuditRequest<'_>) -> Result<Audit, AuditError> {
    let manifest = request.manifest;
    let mut evidence = Evidence::new(
        request.catalog,
        request.variant,
        &manifest.datasets,
        &request.record.parameters,
        request.hasher,
    )?;
    let mut cells = Vec::new();
    let sensitive = sensitive_columns(request.catalog, &manifest.datasets);
    let mut judged = Vec::new();
    let mut held_cells: HashMap<String, Vec<ReleasedCell>> = HashMap::new();
    for table in request.tables {
        let Some(spec) = manifest.output(&table.name) else {
            return Err(AuditError::Evidence(format!("table {} is not in the manifest", table.name)));
        };
        let datasets: BTreeSet<&str> = manifest_datasets(spec);
        let rules = request.policy.rules_for(datasets.iter().copied());
        let mut judge = Judge {
            spec,
            table,
            rules: &rules,
            findings: Vec::new(),
            cells: vec![Verdict::Pass; table.batch.num_rows()],
            sketches: vec![None; table.batch.num_rows()],
        };
        judge.size();
        if spec.dimensions.iter().any(|d| d.terms.is_some()) {
            judge.model(&mut evidence).await?;
        } else {
            judge.cells(&mut evidence).await?;
        }
        judge.texts(&mut evidence, &sensitive).await?;
        let dp = match request.policy.dp(evidence::counted(spec)) {
            Some(settings) => judge.dp(&mut evidence, settings).await?,
            None => None,
        };
        if rules.review_all && dp.is_none() && judge.outcome() <= Verdict::Suppressed {
            judge.find(
                None,
                None,
                Rule::ManualReview,
                Verdict::Review,
                "the audit policy sends every table of its data to two reviewers".to_owned(),
                "审核策略要求该数据的每张表经两名审核员人工复核".to_owned(),
            );
        }
        let label =
            format!("{} {}", &request.record.module_sha256[..request.record.module_sha256.len().min(12)], table.name);
        let dataset = evidence::counted(spec).to_owned();
        let passed = judge.differencing(&dataset, &label, request.earlier, &cells)?;
        let outcome = judge.outcome();
        if outcome <= Verdict::Suppressed {
            cells.extend(passed);
        } else if outcome == Verdict::Review {
            held_cells.insert(table.name.clone(), passed);
        }
        let Judge { findings, cells: verdicts, .. } = judge;
        judged.push(Judged { spec, table, rules, findings, verdicts, overrides: HashMap::new(), dp });
    }
    margins(&mut judged)?;
    let dp_spent = add_noise(&mut judged, request.policy)?;
    let mut tables = Vec::new();
    let mut released = Vec::new();
    let mut held = Vec::new();
    for j in judged {
        let outcome = j.outcome();
        if outcome <= Verdict::Suppressed {
            released.push(ReleasedTable {
                name: j.table.name.clone(),
                batch: release(j.spec, &j.table.batch, &j.verdicts, &j.overrides, &j.rules)?,
            });
        }
        // Held for review: ready to leave with its review cells shown, once two reviewers
        // approve. Tables under differential privacy are not held: their noise is drawn only
        // for what leaves at once.
        if outcome == Verdict::Review && j.dp.is_none() {
            // A cell both held and suppressed stays suppressed.
            let suppressed: BTreeSet<usize> =
                j.findings.iter().filter(|f| f.verdict == Verdict::Suppressed).filter_map(|f| f.row).collect();
            let shown: Vec<Verdict> = (j.verdicts.iter().enumerate())
                .map(|(r, v)| match v {
                    Verdict::Review if suppressed.contains(&r) => Verdict::Suppressed,
                    Verdict::Review => Verdict::Pass,
                    v => *v,
                })
                .collect();
            held.push(review::HeldTable {
                table: ReleasedTable {
                    name: j.table.name.clone(),
                    batch: release(j.spec, &j.table.batch, &shown, &j.overrides, &j.rules)?,
                },
                cells: held_cells.remove(&j.table.name).unwrap_or_default(),
            });
        }
        tables.push(TableReport {
            name: j.table.name.clone(),
            outcome,
            rows: j.table.batch.num_rows(),
            suppressed_cells: j.verdicts.iter().filter(|v| **v == Verdict::Suppressed).count(),
            rules: j.rules,
            findings: j.findings,
        });
    }
    let report = AuditReport::new(request.record, request.policy.sha256(), tables);
    Ok(Audit { report, released, cells, dp_spent, held })
}

/// A judged table, before its release.
struct Judged<'a> {
    spec: &'a OutputSpec,
    table: &'a OutputTable,
    rules: Rules,
    findings: Vec<CellFinding>,
    verdicts: Vec<Verdict>,
    /// Released values that differ from the table's: (measure, row) → the value, `None` blank.
    overrides: HashMap<(usize, usize), Option<f64>>,
    /// What differential privacy releases instead of the table's figures, if its dataset asks.
    dp: Option<DpTable>,
}

/// A table released under differential privacy: the host's figures, before noise.
struct DpTable {
    dataset: String,
    /// Per measure, per row: the distinct units (counts) or the clamped sum, rounded.
    values: Vec<Vec<i64>>,
    /// L2 sensitivity of each measure's column.
    sensitivity: Vec<f64>,
}

/// Adds differential-privacy noise to the released cells of every table that needs it. Each
/// dataset's `rho_per_run` is split evenly among the measures released from it. Returns the ρ
/// spent per dataset.
fn add_noise(judged: &mut [Judged<'_>], policy: &AuditPolicy) -> Result<Vec<(String, f64)>, AuditError> {
    let mut measures: BTreeMap<String, usize> = BTreeMap::new();
    for j in judged.iter().filter(|j| j.outcome() <= Verdict::Suppressed) {
        if let Some(dp) = &j.dp {
            *measures.entry(dp.dataset.clone()).or_default() += dp.values.len();
        }
    }
    for j in judged.iter_mut().filter(|j| j.outcome() <= Verdict::Suppressed) {
        let Some(dp) = &j.dp else { continue };
        let Some(settings) = policy.dp(&dp.dataset) else { continue };
        let rho = settings.rho_per_run / measures[&dp.dataset] as f64;
        let mut noted = Vec::new();
        for (m, (values, delta)) in dp.values.iter().zip(&dp.sensitivity).enumerate() {
            let sigma = dp::sigma(*delta, rho);
            let is_count = j.spec.measures[m].statistic == Statistic::Count;
            for (r, &value) in values.iter().enumerate().filter(|(r, _)| j.verdicts[*r] == Verdict::Pass) {
                let noisy = dp::noisy(value, sigma).map_err(AuditError::Evidence)?;
                let noisy = if is_count { noisy.max(0) } else { noisy };
                j.overrides.insert((m, r), Some(noisy as f64));
            }
            noted.push((j.spec.measures[m].name.clone(), sigma));
        }
        for (name, sigma) in noted {
            j.findings.push(CellFinding {
                row: None,
                column: Some(name.clone()),
                rule: Rule::DifferentialPrivacy,
                verdict: Verdict::Pass,
                en: format!(
                    "{name} is the host's own figure plus discrete Gaussian noise of scale {sigma:.3} (zCDP ρ {rho:.4} of the run's {})",
                    settings.rho_per_run
                ),
                zh: format!("{name} 为主机自算值加尺度 {sigma:.3} 的离散高斯噪声（本次运行 ρ {} 中的 {rho:.4}）", settings.rho_per_run),
            });
        }
    }
    Ok(measures
        .into_keys()
        .map(|dataset| {
            let rho = policy.dp(&dataset).map_or(0.0, |s| s.rho_per_run);
            (dataset, rho)
        })
        .collect())
}

/// A table's outcome: the worst of its rows' and its table-wide findings.
fn worst(verdicts: &[Verdict], findings: &[CellFinding]) -> Verdict {
    verdicts
        .iter()
        .copied()
        .chain(findings.iter().filter(|f| f.row.is_none()).map(|f| f.verdict))
        .max()
        .unwrap_or(Verdict::Pass)
}

impl Judged<'_> {
    fn outcome(&self) -> Verdict {
        worst(&self.verdicts, &self.findings)
    }

    /// Each row's dimension values.
    fn keys(&self) -> Result<Vec<Key>, AuditError> {
        let columns: Vec<Vec<Option<String>>> =
            (0..self.spec.dimensions.len()).map(|i| text(self.table.batch.column(i))).collect::<Result<_, _>>()?;
        Ok((0..self.table.batch.num_rows()).map(|r| columns.iter().map(|c| c[r].clone()).collect()).collect())
    }
}

/// Whether every cell of `margin` is a sum of cells of `detail`: the same rows counted, and
/// dimensions that are some of `detail`'s. Returns where each of `margin`'s dimensions is in
/// `detail`.
fn margin_of(margin: &OutputSpec, detail: &OutputSpec) -> Option<Vec<usize>> {
    let same = |a: &sandbox_runner::manifest::Dimension, b: &sandbox_runner::manifest::Dimension| {
        a.terms.is_none() && a.source == b.source && a.banding == b.banding && a.terms == b.terms
    };
    if margin.filters != detail.filters
        || margin.join != detail.join
        || evidence::counted(margin) != evidence::counted(detail)
        || margin.dimensions.len() >= detail.dimensions.len()
    {
        return None;
    }
    margin.dimensions.iter().map(|m| detail.dimensions.iter().position(|d| same(m, d))).collect()
}

/// Secondary suppression. Where one released table's cells are sums of another released
/// table's cells (a margin, a total), the margin is released recomputed from the other's
/// released cells only, and blank where all of them are suppressed: subtracting released cells
/// from a margin can then never give a suppressed cell back.
fn margins(judged: &mut [Judged<'_>]) -> Result<(), AuditError> {
    for m in 0..judged.len() {
        for d in 0..judged.len() {
            let (margin, detail) = (&judged[m], &judged[d]);
            // Tables with noise are left alone: the noise covers what subtraction would give.
            if m == d
                || margin.outcome() > Verdict::Suppressed
                || detail.outcome() > Verdict::Suppressed
                || margin.dp.is_some()
                || detail.dp.is_some()
            {
                continue;
            }
            let Some(positions) = margin_of(margin.spec, detail.spec) else { continue };
            let detail_keys: Vec<Key> =
                detail.keys()?.into_iter().map(|k| positions.iter().map(|&p| k[p].clone()).collect()).collect();
            let margin_keys = margin.keys()?;
            let mut changes: Vec<(usize, usize, Option<f64>, usize)> = Vec::new();
            for (j, measure) in margin.spec.measures.iter().enumerate() {
                if !matches!(measure.statistic, Statistic::Count | Statistic::Sum) {
                    continue;
                }
                let Some(dj) =
                    detail.spec.measures.iter().position(|x| x.statistic == measure.statistic && x.of == measure.of)
                else {
                    continue;
                };
                let values = numbers(detail.table.batch.column(detail.spec.dimensions.len() + dj))?;
                for (r, key) in margin_keys.iter().enumerate() {
                    let under: Vec<usize> = (0..detail_keys.len()).filter(|&x| detail_keys[x] == *key).collect();
                    let hidden = under.iter().filter(|&&x| detail.verdicts[x] != Verdict::Pass).count();
                    if hidden == 0 || under.is_empty() {
                        continue;
                    }
                    let shown: Vec<f64> = under
                        .iter()
                        .filter(|&&x| detail.verdicts[x] == Verdict::Pass)
                        .filter_map(|&x| values[x])
                        .collect();
                    let value = (!shown.is_empty()).then(|| shown.iter().sum());
                    changes.push((j, r, value, hidden));
                }
            }
            let detail_name = detail.table.name.clone();
            let margin = &mut judged[m];
            for (j, r, value, hidden) in changes {
                let name = margin.spec.measures[j].name.clone();
                let (verdict, en, zh) = match value {
                    Some(_) => (
                        Verdict::Pass,
                        format!(
                            "{name} recomputed from the released cells of {detail_name} ({hidden} of its cells are suppressed)"
                        ),
                        format!("{name} 按 {detail_name} 已发布的单元格重新计算（其中 {hidden} 个单元格被抑制）"),
                    ),
                    None => (
                        Verdict::Suppressed,
                        format!("every cell of {detail_name} that {name} adds up is suppressed"),
                        format!("{name} 所汇总的 {detail_name} 单元格全部被抑制"),
                    ),
                };
                margin.verdicts[r] = margin.verdicts[r].max(verdict);
                margin.overrides.insert((j, r), value);
                margin.findings.push(CellFinding {
                    row: Some(r),
                    column: Some(name),
                    rule: Rule::SecondarySuppression,
                    verdict,
                    en,
                    zh,
                });
            }
        }
    }
    Ok(())
}

/// Every dataset a table reads.
fn manifest_datasets(spec: &OutputSpec) -> BTreeSet<&str> {
    let mut datasets: BTreeSet<&str> = spec.measures.iter().map(|m| dataset_of(&m.of)).collect();
    datasets.extend(spec.join.iter().map(|j| dataset_of(&j.to)));
    datasets
}

/// The string columns no output may quote: pseudonymized, aggregate-only and forbidden ones.
fn sensitive_columns(catalog: &Catalog, datasets: &[String]) -> Vec<String> {
    let mut columns = Vec::new();
    for id in datasets {
        let Ok(dataset) = catalog.dataset(id) else { continue };
        for c in &dataset.columns {
            let sensitive =
                matches!(c.constraint, Constraint::Pseudonymized | Constraint::AggregateOnly | Constraint::Forbidden);
            if sensitive && matches!(c.data_type.to_arrow(), DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
            {
                columns.push(format!("{id}.{}", c.name));
            }
        }
    }
    columns
}

/// Judges one table's cells and texts, collecting findings.
struct Judge<'a> {
    spec: &'a OutputSpec,
    table: &'a OutputTable,
    rules: &'a Rules,
    findings: Vec<CellFinding>,
    /// Each row's verdict so far.
    cells: Vec<Verdict>,
    /// Each row's privacy units, where the evidence has them.
    sketches: Vec<Option<Sketch>>,
}

/// Two numbers agree when they differ by rounding only.
fn agrees(declared: f64, host: f64) -> bool {
    (declared - host).abs() <= 1e-9 * host.abs().max(1.0)
}

impl Judge<'_> {
    fn outcome(&self) -> Verdict {
        worst(&self.cells, &self.findings)
    }

    fn find(&mut self, row: Option<usize>, column: Option<&str>, rule: Rule, verdict: Verdict, en: String, zh: String) {
        if let Some(r) = row {
            self.cells[r] = self.cells[r].max(verdict);
        }
        self.findings.push(CellFinding { row, column: column.map(str::to_owned), rule, verdict, en, zh });
    }

    /// Suppresses the rows whose units differ from an earlier released cell's, or another row's
    /// of this audit, by fewer than the threshold; returns the rows that still pass.
    fn differencing(
        &mut self,
        dataset: &str,
        label: &str,
        earlier: &[ReleasedCell],
        this_run: &[ReleasedCell],
    ) -> Result<Vec<ReleasedCell>, AuditError> {
        let limit = (self.rules.min_units as usize).saturating_sub(1).min(differencing::MAX_DIFFERENCE);
        let keys = self.keys()?;
        // Only cells whose sizes differ by at most `limit` can be that close: index by size.
        let mut known: BTreeMap<u64, Vec<&ReleasedCell>> = BTreeMap::new();
        for cell in earlier.iter().chain(this_run).filter(|c| c.dataset == dataset) {
            known.entry(cell.sketch.size).or_default().push(cell);
        }
        let mut passed: Vec<ReleasedCell> = Vec::new();
        let mut passed_by_size: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
        for (r, key) in keys.iter().enumerate() {
            let Some(sketch) = self.sketches[r].take() else { continue };
            // Cells held for review may leave later: they are compared and kept too.
            if !matches!(self.cells[r], Verdict::Pass | Verdict::Review) {
                continue;
            }
            let sizes = sketch.size.saturating_sub(limit as u64)..=sketch.size.saturating_add(limit as u64);
            let close = known
                .range(sizes.clone())
                .flat_map(|(_, cells)| cells.iter().copied())
                .chain(passed_by_size.range(sizes).flat_map(|(_, at)| at.iter().map(|&i| &passed[i])))
                .find_map(|c| {
                    let d = sketch.difference(&c.sketch, limit)?;
                    (d > 0).then(|| (c.label.clone(), d))
                });
            if let Some((other, d)) = close {
                let k = self.rules.min_units;
                self.find(
                    Some(r),
                    None,
                    Rule::Differencing,
                    Verdict::Suppressed,
                    format!("its privacy units differ from those of {other} by {d}, fewer than {k}: subtracting one cell from the other would reveal them"),
                    format!("其隐私单元与 {other} 仅相差 {d} 个，少于 {k}：两者相减即可推出这些单位"),
                );
                continue;
            }
            let cell = key.iter().map(|v| v.as_deref().unwrap_or("NULL")).collect::<Vec<_>>().join(", ");
            passed_by_size.entry(sketch.size).or_default().push(passed.len());
            passed.push(ReleasedCell { dataset: dataset.to_owned(), label: format!("{label} [{cell}]"), sketch });
        }
        Ok(passed)
    }

    fn size(&mut self) {
        let (rows, bytes) = (self.table.batch.num_rows() as u64, self.table.ipc.len() as u64);
        if rows > self.rules.max_rows || bytes > self.rules.max_bytes {
            self.find(
                None,
                None,
                Rule::Size,
                Verdict::Fail,
                format!(
                    "{rows} rows, {bytes} bytes: more than {} rows or {} bytes",
                    self.rules.max_rows, self.rules.max_bytes
                ),
                format!(
                    "{rows} 行、{bytes} 字节，超过 {} 行或 {} 字节的上限",
                    self.rules.max_rows, self.rules.max_bytes
                ),
            );
        }
    }

    /// The key of every output row, as the evidence writes keys.
    fn keys(&self) -> Result<Vec<Key>, AuditError> {
        let columns: Vec<Vec<Option<String>>> =
            (0..self.spec.dimensions.len()).map(|i| text(self.table.batch.column(i))).collect::<Result<_, _>>()?;
        Ok((0..self.table.batch.num_rows()).map(|r| columns.iter().map(|c| c[r].clone()).collect()).collect())
    }

    fn measure(&self, index: usize) -> Result<Vec<Option<f64>>, AuditError> {
        numbers(self.table.batch.column(self.spec.dimensions.len() + index))
    }

    async fn cells(&mut self, evidence: &mut Evidence<'_>) -> Result<(), AuditError> {
        let keys = self.keys()?;
        let shown: Vec<BTreeSet<String>> =
            (0..self.spec.dimensions.len()).map(|i| keys.iter().filter_map(|k| k[i].clone()).collect()).collect();
        let host = evidence.cells(self.spec, &shown).await?;
        let measures: Vec<Vec<Option<f64>>> =
            (0..self.spec.measures.len()).map(|j| self.measure(j)).collect::<Result<_, _>>()?;
        let rules = self.rules.clone();
        let mut seen = HashMap::new();
        for (r, key) in keys.iter().enumerate() {
            if let Some(first) = seen.insert(key.clone(), r) {
                self.find(
                    Some(r),
                    None,
                    Rule::Inconsistent,
                    Verdict::Fail,
                    format!("row {r} repeats the cell of row {first}"),
                    format!("第 {r} 行与第 {first} 行是同一单元格"),
                );
            }
            for (i, (value, outside)) in key.iter().zip(&host.outside).enumerate() {
                let name = &self.spec.dimensions[i].name;
                if let Some(v) = value
                    && outside.contains(v)
                {
                    self.find(
                        Some(r),
                        Some(name),
                        Rule::DimensionDomain,
                        Verdict::Fail,
                        format!("{name} = {v:?} is not a value of its source column"),
                        format!("{name} 的值不属于其来源列的取值范围"),
                    );
                }
            }
            let empty = Cell::default();
            let cell = host.cells.get(key).unwrap_or(&empty);
            self.sketches[r] = cell.sketch.clone();
            for (j, m) in self.spec.measures.iter().enumerate() {
                let declared = measures[j][r];
                let name = m.name.as_str();
                let magnitude = cell.magnitudes.get(&m.of).cloned().unwrap_or_default();
                let host_value = match m.statistic {
                    Statistic::Count => Some(cell.units as f64),
                    Statistic::Sum => Some(magnitude.total),
                    Statistic::Mean if magnitude.values > 0 => Some(magnitude.total / magnitude.values as f64),
                    _ => None,
                };
                if let (Some(host_value), Some(declared)) = (host_value, declared)
                    && !agrees(declared, host_value)
                {
                    self.find(
                        Some(r),
                        Some(name),
                        Rule::Inconsistent,
                        Verdict::Fail,
                        format!("{name} declares {declared} where the host computes {host_value}"),
                        format!("{name} 声明值 {declared} 与主机重算值 {host_value} 不一致"),
                    );
                }
                if m.statistic == Statistic::Count && declared == Some(0.0) {
                    self.find(
                        Some(r),
                        Some(name),
                        Rule::Zero,
                        Verdict::Review,
                        "a zero count".to_owned(),
                        "计数为零".to_owned(),
                    );
                }
                if matches!(m.statistic, Statistic::Min | Statistic::Max | Statistic::Quantile)
                    && cell.units < rules.min_units_extremes
                {
                    self.find(
                        Some(r),
                        Some(name),
                        Rule::Extremes,
                        Verdict::Fail,
                        format!(
                            "{name} shows one value of {} privacy units, fewer than {}",
                            cell.units, rules.min_units_extremes
                        ),
                        format!(
                            "{name} 给出的极值或分位数背后只有 {} 个隐私单元，少于 {}",
                            cell.units, rules.min_units_extremes
                        ),
                    );
                }
                if matches!(m.statistic, Statistic::Sum | Statistic::Mean | Statistic::Ratio) {
                    self.dominance(r, name, &magnitude, &rules);
                }
            }
            if cell.units < rules.min_units {
                self.find(
                    Some(r),
                    None,
                    Rule::Threshold,
                    Verdict::Suppressed,
                    format!("{} privacy units, fewer than {}", cell.units, rules.min_units),
                    format!("隐私单元数 {} 少于 {}", cell.units, rules.min_units),
                );
            }
        }
        Ok(())
    }

    /// nk-dominance and p-ratio on a magnitude (sum, mean, ratio numerator).
    fn dominance(&mut self, r: usize, name: &str, m: &evidence::Magnitude, rules: &Rules) {
        if m.negatives > 0 {
            self.find(
                Some(r),
                Some(name),
                Rule::NegativeValues,
                Verdict::Review,
                format!("{} negative values: dominance cannot be judged", m.negatives),
                format!("存在 {} 个负值，无法判断支配性", m.negatives),
            );
            return;
        }
        if m.total <= 0.0 {
            return;
        }
        let top = if rules.dominance_n >= 2 { m.largest + m.second } else { m.largest };
        if top > rules.dominance_k * m.total {
            self.find(
                Some(r),
                Some(name),
                Rule::Dominance,
                Verdict::Suppressed,
                format!(
                    "the {} largest contributors hold {:.1}% of {name}, more than {:.0}%",
                    rules.dominance_n,
                    100.0 * top / m.total,
                    100.0 * rules.dominance_k
                ),
                format!(
                    "最大的 {} 个贡献者占 {name} 的 {:.1}%，超过 {:.0}%",
                    rules.dominance_n,
                    100.0 * top / m.total,
                    100.0 * rules.dominance_k
                ),
            );
        }
        let rest = m.total - m.largest - m.second;
        if rest < rules.p_ratio * m.largest {
            self.find(
                Some(r),
                Some(name),
                Rule::PRatio,
                Verdict::Suppressed,
                format!(
                    "without its two largest contributors {name} is less than {:.0}% of the largest",
                    100.0 * rules.p_ratio
                ),
                format!("去掉最大的两个贡献者后，{name} 的其余部分不足最大贡献者的 {:.0}%", 100.0 * rules.p_ratio),
            );
        }
    }

    async fn model(&mut self, evidence: &mut Evidence<'_>) -> Result<(), AuditError> {
        let terms: Vec<String> = self.spec.dimensions.iter().flat_map(|d| d.terms.iter().flatten().cloned()).collect();
        let host = evidence.model(self.spec, &terms).await?;
        let rules = self.rules.clone();
        let keys = self.keys()?;
        let rows = keys.len();
        for (r, key) in keys.iter().enumerate() {
            let Some(Some(term)) = key.first() else { continue };
            let known = term == "intercept"
                || term
                    .split_once('=')
                    .is_some_and(|(c, v)| host.domains.iter().any(|(name, d)| name == c && d.contains(v)));
            if !known {
                self.find(
                    Some(r),
                    Some(&self.spec.dimensions[0].name.clone()),
                    Rule::DimensionDomain,
                    Verdict::Fail,
                    format!("term {term:?} is neither intercept nor column=value of the model's term columns"),
                    "模型项既不是 intercept，也不是模型列的“列=值”".to_owned(),
                );
            }
        }
        for (j, m) in self.spec.measures.iter().enumerate() {
            let values = self.measure(j)?;
            for (r, declared) in values.iter().enumerate() {
                let Some(declared) = *declared else { continue };
                match m.statistic {
                    Statistic::ResidualDf if declared < rules.min_residual_df as f64 => self.find(
                        Some(r),
                        Some(&m.name),
                        Rule::ModelDf,
                        Verdict::Fail,
                        format!("{declared} residual degrees of freedom, fewer than {}", rules.min_residual_df),
                        format!("残差自由度 {declared} 少于 {}", rules.min_residual_df),
                    ),
                    Statistic::ResidualDf if declared > host.rows as f64 - rows as f64 => self.find(
                        Some(r),
                        Some(&m.name),
                        Rule::Inconsistent,
                        Verdict::Fail,
                        format!(
                            "{declared} residual degrees of freedom, but {} rows and {rows} terms leave at most {}",
                            host.rows,
                            host.rows as f64 - rows as f64
                        ),
                        format!(
                            "声明残差自由度 {declared}，但 {} 行数据和 {rows} 个模型项至多留下 {}",
                            host.rows,
                            host.rows as f64 - rows as f64
                        ),
                    ),
                    Statistic::Count if declared > host.rows as f64 => self.find(
                        Some(r),
                        Some(&m.name),
                        Rule::Inconsistent,
                        Verdict::Fail,
                        format!("n = {declared}, but only {} rows fit the model's filters", host.rows),
                        format!("n = {declared}，但符合条件的数据只有 {} 行", host.rows),
                    ),
                    _ => {}
                }
            }
        }
        if host.units < rules.min_units {
            self.find(
                None,
                None,
                Rule::Threshold,
                Verdict::Fail,
                format!("the model rests on {} privacy units, fewer than {}", host.units, rules.min_units),
                format!("模型仅基于 {} 个隐私单元，少于 {}", host.units, rules.min_units),
            );
        }
        Ok(())
    }

    /// Identifiers in any text or unverified number, and values of sensitive columns.
    async fn texts(&mut self, evidence: &mut Evidence<'_>, sensitive: &[String]) -> Result<(), AuditError> {
        let batch = &self.table.batch;
        let mut strings: BTreeSet<String> = BTreeSet::new();
        let mut where_found: Vec<(usize, String, String)> = Vec::new();
        for (i, field) in batch.schema().fields().iter().enumerate() {
            let column = batch.column(i);
            if matches!(field.data_type(), DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View) {
                for (r, value) in text(column)?.into_iter().enumerate() {
                    let Some(value) = value else { continue };
                    if let Some(kind) = identifiers::find(&value) {
                        self.identifier(r, field.name(), kind);
                    }
                    strings.insert(value.clone());
                    where_found.push((r, field.name().clone(), value));
                }
            } else if i >= self.spec.dimensions.len() {
                // Counts, sums and means are checked against the host's own figures; other
                // numbers could be anything the module chose.
                let statistic = self.spec.measures[i - self.spec.dimensions.len()].statistic;
                if matches!(statistic, Statistic::Count | Statistic::Sum | Statistic::Mean | Statistic::ResidualDf) {
                    continue;
                }
                for (r, value) in numbers(column)?.into_iter().enumerate() {
                    if let Some(kind) = value.and_then(identifiers::find_in_number) {
                        self.identifier(r, field.name(), kind);
                    }
                }
            }
        }
        // An identifier spelled across a row's strings, in column order.
        let mut rows: Vec<Vec<(&str, &str)>> = vec![Vec::new(); batch.num_rows()];
        for (r, column, value) in &where_found {
            rows[*r].push((column, value));
        }
        for (r, row) in rows.iter().enumerate().filter(|(_, row)| row.len() > 1) {
            let texts: Vec<&str> = row.iter().map(|(_, v)| *v).collect();
            // Only what no single string holds: those are reported already.
            if let Some(kind) = identifiers::find_across(&texts)
                && texts.iter().all(|t| identifiers::find(t).is_none())
            {
                let columns: Vec<&str> = row.iter().map(|(c, _)| *c).collect();
                self.identifier(r, &columns.join("+"), kind);
            }
        }
        // Also each `column=value` term's value.
        strings.extend(where_found.iter().filter_map(|(_, _, v)| v.split_once('=').map(|(_, x)| x.to_owned())));
        for source in sensitive {
            let found = evidence.members(source, &strings).await?;
            for (r, name, value) in &where_found {
                let inner = value.split_once('=').map(|(_, x)| x);
                if found.contains(value) || inner.is_some_and(|x| found.contains(x)) {
                    self.find(
                        Some(*r),
                        Some(name),
                        Rule::Membership,
                        Verdict::Fail,
                        format!("{name} holds a value of {source}, a column that may not be shown"),
                        format!("{name} 含有不得展示的列 {source} 的值"),
                    );
                }
            }
        }
        Ok(())
    }

    /// The figures differential privacy releases for this table, or findings that it cannot:
    /// only counts, and sums under a `sum_bound`, can be noised.
    async fn dp(&mut self, evidence: &mut Evidence<'_>, settings: &DpSettings) -> Result<Option<DpTable>, AuditError> {
        let mut refused = Vec::new();
        for m in &self.spec.measures {
            match m.statistic {
                Statistic::Count => {}
                Statistic::Sum if settings.sum_bound.is_some() => {}
                Statistic::Sum => refused.push((
                    m.name.clone(),
                    format!("{}: the policy sets no sum_bound for this dataset, so its sums cannot be noised", m.name),
                    format!("{}：策略未为该数据集设置 sum_bound，求和无法加噪", m.name),
                )),
                _ => refused.push((
                    m.name.clone(),
                    format!("{}: under differential privacy only counts and sums are released", m.name),
                    format!("{}：差分隐私下只发布计数和求和", m.name),
                )),
            }
        }
        if self.spec.dimensions.iter().any(|d| d.terms.is_some()) {
            refused.push((
                self.spec.name.clone(),
                "under differential privacy models are not released".to_owned(),
                "差分隐私下不发布模型".to_owned(),
            ));
        }
        if !refused.is_empty() {
            for (column, en, zh) in refused {
                self.find(None, Some(&column), Rule::DifferentialPrivacy, Verdict::Fail, en, zh);
            }
            return Ok(None);
        }
        let bound = settings.sum_bound.unwrap_or(0.0);
        let host = evidence.dp_cells(self.spec, bound).await?;
        let keys = self.keys()?;
        let spread = (evidence.max_cells_per_unit(self.spec).await?.max(1) as f64).sqrt();
        let mut values = Vec::new();
        let mut sensitivity = Vec::new();
        for m in &self.spec.measures {
            let column: Vec<i64> = keys
                .iter()
                .map(|key| match host.cells.get(key) {
                    None => 0,
                    Some(cell) if m.statistic == Statistic::Count => cell.units as i64,
                    Some(cell) => cell.magnitudes.get(&m.of).map_or(0.0, |x| x.clamped).round() as i64,
                })
                .collect();
            values.push(column);
            let per_cell = if m.statistic == Statistic::Count { 1.0 } else { bound.ceil() + 1.0 };
            sensitivity.push(per_cell * spread);
        }
        Ok(Some(DpTable { dataset: evidence::counted(self.spec).to_owned(), values, sensitivity }))
    }

    fn identifier(&mut self, r: usize, column: &str, kind: identifiers::Identifier) {
        self.find(
            Some(r),
            Some(column),
            Rule::Identifier,
            Verdict::Fail,
            format!("{column} contains {}", kind.en()),
            format!("{column} 含有{}", kind.zh()),
        );
    }
}

/// The table as released: suppressed rows' measures blank, counts rounded to the base.
fn release(
    spec: &OutputSpec,
    batch: &RecordBatch,
    verdicts: &[Verdict],
    overrides: &HashMap<(usize, usize), Option<f64>>,
    rules: &Rules,
) -> Result<RecordBatch, AuditError> {
    let dims = spec.dimensions.len();
    let mut fields: Vec<Field> = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    let failed = |e: datafusion::arrow::error::ArrowError| AuditError::Evidence(e.to_string());
    for (i, field) in batch.schema().fields().iter().enumerate() {
        let column = batch.column(i);
        if i < dims {
            fields.push(field.as_ref().clone());
            columns.push(Arc::clone(column));
            continue;
        }
        let shown = |r: usize| verdicts[r] == Verdict::Pass;
        let j = i - dims;
        let statistic = spec.measures[j].statistic;
        if statistic == Statistic::Count {
            let values = cast(column, &DataType::Int64).map_err(failed)?;
            let values =
                values.as_any().downcast_ref::<Int64Array>().ok_or_else(|| AuditError::Evidence("count".to_owned()))?;
            let base = rules.rounding_base as i64;
            let rounded: Int64Array = (0..values.len())
                .map(|r| {
                    let value = match overrides.get(&(j, r)) {
                        Some(recomputed) => recomputed.map(|v| v as i64),
                        None => values.is_valid(r).then(|| values.value(r)),
                    };
                    value.filter(|_| shown(r)).map(|v| round_to(v, base))
                })
                .collect();
            fields.push(Field::new(field.name(), DataType::Int64, true));
            columns.push(Arc::new(rounded));
        } else {
            let values = numbers(column)?;
            let kept: Float64Array = values
                .iter()
                .enumerate()
                .map(|(r, v)| if shown(r) { overrides.get(&(j, r)).copied().unwrap_or(*v) } else { None })
                .collect();
            fields.push(Field::new(field.name(), DataType::Float64, true));
            columns.push(Arc::new(kept));
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(failed)
}

/// The nearest multiple of `base`, halves rounding up.
fn round_to(value: i64, base: i64) -> i64 {
    if base <= 1 {
        return value;
    }
    (value + base / 2).div_euclid(base) * base
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_round_to_the_nearest_multiple_of_five() {
        let cases = [(0, 0), (2, 0), (3, 5), (7, 5), (8, 10), (10, 10), (12, 10), (13, 15)];
        for (value, rounded) in cases {
            assert_eq!(round_to(value, 5), rounded, "{value}");
        }
    }

    #[test]
    fn verdicts_order_from_best_to_worst() {
        assert!(
            Verdict::Pass < Verdict::Suppressed
                && Verdict::Suppressed < Verdict::Review
                && Verdict::Review < Verdict::Fail
        );
    }
}
