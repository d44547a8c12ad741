//! The output audit (出域审核): the only gate between a run and the outside.
//!
//! It trusts the module for nothing, and releases nothing of it. For every output table the host
//! computes its own table of the output contract from the raw data (`evidence`, `judge`) —
//! every cell the contract's dimensions, filters and join give, with its privacy units and each
//! declared statistic, models included (`model`) — and judges every cell against the rules of
//! DESIGN.md section 5 with the bureau's policy (`policy`). The module's table is the operator's
//! claim: its figures are compared with the host's, and a disagreement fails the whole run as a
//! breach of the contract. What may leave is the host's own table, suppressed cells blank,
//! figures rounded by policy.
//!
//! Two reports come out (`report`): the internal one keeps every figure and stays inside the
//! domain (reviewers, administrators); the released one, which the operator and the application
//! unit read and the release signs, names per table and cell only the outcome, the rule and the
//! advice — never a figure of anything that does not leave.

pub mod budget;
pub mod differencing;
pub mod dp;
mod evidence;
pub mod history;
pub mod identifiers;
mod judge;
mod model;
mod policy;
mod report;
pub mod review;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use sandbox_catalog::{Catalog, Constraint, Variant};
use sandbox_runner::manifest::{Manifest, OutputSpec, Statistic, dataset_of};
use sandbox_runner::{OutputTable, RunRecord};
use serde::Serialize;

pub use crate::differencing::{Sketch, UnitHasher};
pub use crate::dp::DpSettings;
use crate::evidence::{Evidence, Key};
use crate::judge::{HostTable, Judge};
pub use crate::policy::{AuditPolicy, PolicyFileError, Rules, RunPolicy};
pub use crate::report::{AuditReport, CellFigures, CellFinding, ReleasedFinding, ReleasedReport, TableReport};

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
    ModelFit,
    Identifier,
    Membership,
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
            Rule::ModelFit => "model-fit",
            Rule::Identifier => "identifier",
            Rule::Membership => "membership",
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
    /// The output contract is one the checker refuses: the host does not run it.
    #[error("the output contract is refused / 输出契约被拒绝: {0}")]
    Contract(String),
    /// The host could not compute its evidence: the audit cannot decide, so nothing is released.
    #[error("the audit could not compute its evidence: {0}")]
    Evidence(String),
}

/// A table as it may leave: the host's own figures, suppressed cells blank, rounded.
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
    /// Every figure: for reviewers and administrators, inside the domain.
    pub report: AuditReport,
    /// What leaves with the run: outcomes, rules and advice, no figure of what is withheld.
    pub released_report: ReleasedReport,
    /// The tables that pass or pass with suppressions. Tables held for review or failed are not
    /// here.
    pub released: Vec<ReleasedTable>,
    /// The released (unsuppressed) cells of `released`, for later audits' differencing.
    pub cells: Vec<ReleasedCell>,
    /// Tables whose declared values disagree with the host's: a breach of the contract, and the
    /// whole run fails.
    pub breach: Vec<String>,
    /// Tables held for review, which leave only through [`Audit::approve`].
    held: Vec<review::HeldTable>,
    /// The key that names the internal report ([`AuditReport::id`]).
    key: UnitHasher,
}

impl Audit {
    /// The internal report's name: a keyed digest of its JSON, so that a name in the log
    /// cannot be tested against guessed figures.
    pub fn report_id(&self) -> String {
        self.report.id(&self.key)
    }

    /// The internal report as text, with every figure: for reviewers and administrators.
    pub fn report_text(&self) -> String {
        self.report.text(&self.key)
    }
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
    /// Maps privacy units into sketches, and names internal reports; one key for every audit of
    /// the same data, kept inside the domain.
    pub hasher: &'a UnitHasher,
    /// Cells released earlier, by any operator: no cell may differ from one of them by fewer
    /// units than the threshold.
    pub earlier: &'a [ReleasedCell],
}

/// Audits a run's output tables.
pub async fn audit(request: AuditRequest<'_>) -> Result<Audit, AuditError> {
    let manifest = request.manifest;
    // The host runs the contract with its own privileges over the raw files: never one the
    // checker would refuse, whichever way the run came (the server judges it at submission and
    // at the start of every run; this is the last line).
    sandbox_runner::contract::judge(manifest, request.catalog, Some(&request.record.parameters))
        .await
        .map_err(|e| AuditError::Contract(e.to_string()))?;
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
    for spec in &manifest.outputs {
        let Some(table) = request.tables.iter().find(|t| t.name == spec.name) else {
            return Err(AuditError::Evidence(format!("the run wrote no table {}", spec.name)));
        };
        let datasets: BTreeSet<&str> = manifest_datasets(spec);
        let rules = request.policy.rules_for(datasets.iter().copied());
        let mut judge = Judge::new(spec, table, &rules);
        if spec.model.is_some() {
            judge.model(&mut evidence).await?;
        } else {
            judge.cells(&mut evidence).await?;
        }
        judge.texts(&mut evidence, &sensitive).await?;
        let dp = match request.policy.dp(evidence::counted(spec)) {
            Some(settings) => judge.dp(&mut evidence, settings).await?,
            None => None,
        };
        // Noise is calibrated to the counted dataset's units: a dataset under differential
        // privacy that is only joined, for its columns, would leave without any.
        for other in datasets.iter().filter(|&&d| d != evidence::counted(spec) && request.policy.dp(d).is_some()) {
            judge.find(
                None,
                None,
                Rule::DifferentialPrivacy,
                Verdict::Fail,
                format!("{other} is released only under differential privacy, as the dataset a table counts, not joined to another"),
                format!("{other} 仅在差分隐私下作为表所计数的数据集发布，不能连接到其他数据集使用"),
            );
        }
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
            format!("{} {}", &request.record.module_sha256[..request.record.module_sha256.len().min(12)], spec.name);
        // Compared with this run's earlier tables, held ones too: they leave if approved.
        let this_run: Vec<ReleasedCell> = cells.iter().chain(held_cells.values().flatten()).cloned().collect();
        let passed = judge.differencing(&label, request.earlier, &this_run);
        let outcome = judge.outcome();
        if outcome <= Verdict::Suppressed {
            cells.extend(passed);
        } else if outcome == Verdict::Review {
            held_cells.insert(spec.name.clone(), passed);
        }
        let Judge { host, findings, cells: verdicts, suppressed, overrides, breach, evidence: cells_evidence, .. } =
            judge;
        judged.push(Judged {
            spec,
            rules,
            host,
            findings,
            verdicts,
            suppressed,
            overrides,
            dp,
            breach,
            cells: cells_evidence,
        });
    }

    // A table that disagrees with the host fails the whole run: nothing of it leaves.
    let breach: Vec<String> = judged.iter().filter(|j| j.breach).map(|j| j.spec.name.clone()).collect();
    if !breach.is_empty() {
        cells.clear();
        held_cells.clear();
        for j in judged.iter_mut().filter(|j| !j.breach) {
            j.findings.push(CellFinding {
                row: None,
                column: None,
                rule: Rule::Inconsistent,
                verdict: Verdict::Fail,
                en: format!(
                    "the run fails: the module's declared values disagree with the host's in {}",
                    breach.join(", ")
                ),
                zh: format!("本次运行不通过：模块在 {} 中的声明值与主机计算值不一致", breach.join(", ")),
            });
        }
    }
    margins(&mut judged);
    if breach.is_empty() {
        add_noise(&mut judged, request.policy)?;
    }
    let mut tables = Vec::new();
    let mut released = Vec::new();
    let mut held = Vec::new();
    for j in judged {
        let outcome = j.outcome();
        if outcome <= Verdict::Suppressed {
            released.push(ReleasedTable {
                name: j.spec.name.clone(),
                batch: release(j.spec, &j.host, &j.verdicts, &j.overrides)?,
            });
        }
        // Held for review: ready to leave with its review cells shown, once two reviewers
        // approve. Tables under differential privacy are not held: their noise is drawn only
        // for what leaves at once.
        if outcome == Verdict::Review && j.dp.is_none() {
            // A cell both held and suppressed stays suppressed.
            let shown: Vec<Verdict> = (j.verdicts.iter().enumerate())
                .map(|(r, v)| match v {
                    Verdict::Review if j.suppressed[r] => Verdict::Suppressed,
                    Verdict::Review => Verdict::Pass,
                    v => *v,
                })
                .collect();
            held.push(review::HeldTable {
                table: ReleasedTable {
                    name: j.spec.name.clone(),
                    batch: release(j.spec, &j.host, &shown, &j.overrides)?,
                },
                cells: held_cells.remove(&j.spec.name).unwrap_or_default(),
            });
        }
        tables.push(TableReport::new(j.spec, outcome, j.rules, j.findings, &j.host, &j.verdicts, &j.overrides));
    }
    let report = AuditReport::new(request.record, request.policy.sha256(), !breach.is_empty(), tables);
    let released_report = ReleasedReport::of(&report);
    Ok(Audit { report, released_report, released, cells, breach, held, key: request.hasher.clone() })
}

/// A judged table, before its release.
struct Judged<'a> {
    spec: &'a OutputSpec,
    rules: Rules,
    host: HostTable,
    findings: Vec<CellFinding>,
    verdicts: Vec<Verdict>,
    /// Rows a rule suppressed whole (not one measure of them).
    suppressed: Vec<bool>,
    /// Released values that differ from the host's: (measure, row) → the value, `None` blank.
    overrides: HashMap<(usize, usize), Option<f64>>,
    /// What differential privacy releases instead of the host's figures, if its dataset asks.
    dp: Option<DpTable>,
    breach: bool,
    /// Each row's evidence (none for a model).
    cells: Vec<evidence::Cell>,
}

/// A table released under differential privacy: the host's figures, before noise.
pub(crate) struct DpTable {
    dataset: String,
    /// Per measure, per row: the distinct units (counts) or the clamped sum, rounded.
    values: Vec<Vec<i64>>,
    /// L2 sensitivity of each measure's column.
    sensitivity: Vec<f64>,
}

/// Adds differential-privacy noise to the released cells of every table that needs it. Each
/// dataset's `rho_per_run` is split evenly among the measures released from it.
fn add_noise(judged: &mut [Judged<'_>], policy: &AuditPolicy) -> Result<(), AuditError> {
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
            // A figure a rule withheld stays withheld: noise does not bring it back.
            let leaving: Vec<usize> = (0..values.len())
                .filter(|&r| j.verdicts[r] == Verdict::Pass && j.overrides.get(&(m, r)) != Some(&None))
                .collect();
            for (r, &value) in leaving.into_iter().map(|r| (r, &values[r])) {
                let noisy = dp::noisy(value, sigma).map_err(AuditError::Evidence)?;
                // Rounded as any released figure (post-processing: it spends no budget).
                let noisy = if is_count {
                    judge::round_to(noisy.max(0), j.rules.rounding_base as i64) as f64
                } else {
                    judge::round_sig(noisy as f64, j.rules.significant_digits)
                };
                j.overrides.insert((m, r), Some(noisy));
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
    Ok(())
}

/// A table's outcome: the worst of its rows' verdicts and of every finding (a finding on one
/// measure of a row withholds that measure only, and still makes the table "suppressed").
fn worst(verdicts: &[Verdict], findings: &[CellFinding]) -> Verdict {
    verdicts.iter().copied().chain(findings.iter().map(|f| f.verdict)).max().unwrap_or(Verdict::Pass)
}

impl Judged<'_> {
    fn outcome(&self) -> Verdict {
        worst(&self.verdicts, &self.findings)
    }

    /// Row `r`'s measure `j` as it would leave: `None` when withheld.
    /// A held table's cells held for review count as shown: they leave if approved.
    fn shown(&self, j: usize, r: usize) -> Option<f64> {
        let leaves = match self.verdicts[r] {
            Verdict::Pass => true,
            Verdict::Review => !self.suppressed[r],
            _ => false,
        };
        if !leaves {
            return None;
        }
        match self.overrides.get(&(j, r)) {
            Some(value) => *value,
            None => self.host.released[j][r],
        }
    }
}

/// Where each of `margin`'s dimensions is among `detail`'s, if `margin` could be a margin of
/// `detail`: a table of cells of the same counted dataset, its dimensions (source and banding)
/// some of `detail`'s. Whether its cells are sums of `detail`'s is decided by the data
/// ([`nested`]), not by the filters as written: two spellings of one filter count the same rows.
fn margin_of(margin: &OutputSpec, detail: &OutputSpec) -> Option<Vec<usize>> {
    let same = |a: &sandbox_runner::manifest::Dimension, b: &sandbox_runner::manifest::Dimension| {
        a.terms.is_none() && a.source == b.source && a.banding == b.banding && a.terms == b.terms
    };
    if margin.model.is_some()
        || detail.model.is_some()
        || evidence::counted(margin) != evidence::counted(detail)
        || margin.dimensions.len() >= detail.dimensions.len()
    {
        return None;
    }
    margin.dimensions.iter().map(|m| detail.dimensions.iter().position(|d| same(m, d))).collect()
}

/// Whether a margin cell counts exactly the rows of the detail cells under it: the same rows,
/// and the same total of every magnitude.
fn nested(margin: &evidence::Cell, under: &[&evidence::Cell]) -> bool {
    let rows: u64 = under.iter().map(|c| c.rows).sum();
    margin.rows > 0
        && margin.rows == rows
        && margin.magnitudes.iter().all(|(column, m)| {
            let total: f64 = under.iter().filter_map(|c| c.magnitudes.get(column)).map(|x| x.total).sum();
            (m.total - total).abs() <= 1e-9 * m.total.abs().max(1.0)
        })
}

/// Secondary suppression, across the tables of a run that leave at once or after review.
/// Subtracting released cells from another table's released cells over the same rows must never
/// give a suppressed cell back:
/// - where one table's cells are sums of another's (a margin, a total), the margin's counts and
///   sums are released recomputed from the other's released cells only, blank where all of them
///   are suppressed (or where two tables would recompute it differently), and its other
///   statistics (means, ratios, extremes, quantiles) withheld;
/// - where two tables split the same rows differently (district × street and district ×
///   status), and under one value of the dimensions they share one of them withholds a cell
///   while the other shows every cell, the other's cells there are withheld too: adding them up
///   would give the hidden cell's total.
///
/// Withholding a cell can expose another, so the passes repeat until nothing changes; each cell
/// only ever goes from shown to recomputed to blank, so they end.
fn margins(judged: &mut [Judged<'_>]) {
    // Tables with noise are left alone (the noise covers what subtraction would give), and
    // so are tables that do not leave.
    let leaving: Vec<usize> = (0..judged.len())
        .filter(|&t| {
            judged[t].dp.is_none()
                && matches!(judged[t].outcome(), o if o <= Verdict::Suppressed || o == Verdict::Review)
        })
        .collect();
    let mut notes: BTreeMap<(usize, usize, usize), Secondary> = BTreeMap::new();
    loop {
        let mut changed = false;
        for &m in &leaving {
            for &d in &leaving {
                if m == d {
                    continue;
                }
                // What the other table withholds by a rule of its own, not to protect a third:
                // what secondary suppression withheld is already covered where it arose.
                let primary = |j: usize, r: usize| judged[d].shown(j, r).is_none() && !notes.contains_key(&(d, r, j));
                let changes = match margin_of(judged[m].spec, judged[d].spec) {
                    Some(positions) => recompute(&judged[m], &judged[d], &positions, primary),
                    None => linked(&judged[m], &judged[d], primary),
                };
                let detail = judged[d].spec.name.clone();
                for (j, r, value) in changes {
                    let note = notes.entry((m, r, j)).or_insert_with(|| Secondary { value, from: BTreeSet::new() });
                    note.from.insert(detail.clone());
                    // Two recomputations that disagree leave nothing.
                    if note.value != value {
                        note.value = None;
                    }
                    let now = note.value;
                    if judged[m].overrides.get(&(j, r)) != Some(&now) {
                        judged[m].overrides.insert((j, r), now);
                        changed = true;
                    }
                }
            }
        }
        if !changed {
            break;
        }
    }
    for ((t, r, j), note) in notes {
        let table = &mut judged[t];
        let name = table.spec.measures[j].name.clone();
        let from = note.from.into_iter().collect::<Vec<_>>().join(", ");
        let (verdict, en, zh) = match note.value {
            Some(_) => (
                Verdict::Pass,
                format!("{name} recomputed from the released cells of {from}, some of which are suppressed"),
                format!("{name} 按 {from} 已发布的单元格重新计算（其中部分单元格被抑制）"),
            ),
            None => (
                Verdict::Suppressed,
                format!("{name} together with the released cells of {from} would give back their suppressed cells"),
                format!("{name} 与 {from} 已发布的单元格相结合可推出其中被抑制的单元格"),
            ),
        };
        table.findings.push(CellFinding {
            row: Some(r),
            column: Some(name),
            rule: Rule::SecondarySuppression,
            verdict,
            en,
            zh,
        });
    }
}

/// What secondary suppression made of one released figure.
struct Secondary {
    /// Recomputed, or blank.
    value: Option<f64>,
    /// The tables it was judged against.
    from: BTreeSet<String>,
}

/// A margin's figures recomputed from the released cells of `detail` under each of its cells
/// that covers a withheld one: (measure, row, value).
fn recompute(
    margin: &Judged<'_>,
    detail: &Judged<'_>,
    positions: &[usize],
    hidden: impl Fn(usize, usize) -> bool,
) -> Vec<(usize, usize, Option<f64>)> {
    let detail_keys: Vec<Key> =
        detail.host.keys.iter().map(|k| positions.iter().map(|&p| k[p].clone()).collect()).collect();
    let mut changes = Vec::new();
    for (r, key) in margin.host.keys.iter().enumerate() {
        let under: Vec<usize> = (0..detail_keys.len()).filter(|&x| detail_keys[x] == *key).collect();
        let cells: Vec<&evidence::Cell> = under.iter().filter_map(|&x| detail.cells.get(x)).collect();
        let Some(cell) = margin.cells.get(r) else { continue };
        if under.is_empty() || !nested(cell, &cells) {
            continue;
        }
        // Anything withheld under the margin cell, a whole row or one measure of it.
        let withheld = |dj: usize| under.iter().filter(|&&x| hidden(dj, x)).count();
        let any = (0..detail.spec.measures.len()).map(withheld).max().unwrap_or(0);
        if any == 0 {
            continue;
        }
        for (j, measure) in margin.spec.measures.iter().enumerate() {
            let dj = detail.spec.measures.iter().position(|x| match measure.statistic {
                Statistic::Count => x.statistic == Statistic::Count,
                Statistic::Sum => x.statistic == Statistic::Sum && x.of == measure.of,
                _ => false,
            });
            // A count or sum the detail has: the sum of its released cells, if any. Anything
            // else would give the withheld cells back with the recomputed ones.
            let value = match dj {
                Some(dj) if withheld(dj) == 0 => continue,
                Some(dj) => {
                    let shown: Vec<f64> = under.iter().filter_map(|&x| detail.shown(dj, x)).collect();
                    (!shown.is_empty()).then(|| shown.iter().sum())
                }
                None => None,
            };
            changes.push((j, r, value));
        }
    }
    changes
}

/// Where `table` and `other` count the same rows split by different dimensions: the rows of
/// `table` to withhold (every measure: a mean times a rounded count is nearly a sum), under
/// each value of their shared dimensions where `other` withholds a cell with rows and `table`
/// withholds none.
fn linked(
    table: &Judged<'_>,
    other: &Judged<'_>,
    hidden: impl Fn(usize, usize) -> bool,
) -> Vec<(usize, usize, Option<f64>)> {
    if table.spec.model.is_some()
        || other.spec.model.is_some()
        || evidence::counted(table.spec) != evidence::counted(other.spec)
    {
        return Vec::new();
    }
    let same = |a: &sandbox_runner::manifest::Dimension, b: &sandbox_runner::manifest::Dimension| {
        a.terms.is_none() && b.terms.is_none() && a.source == b.source && a.banding == b.banding
    };
    // The shared dimensions' positions in each table.
    let shared: Vec<(usize, usize)> = (table.spec.dimensions.iter().enumerate())
        .filter_map(|(a, x)| other.spec.dimensions.iter().position(|y| same(x, y)).map(|b| (a, b)))
        .collect();
    let group = |keys: &[Key], side: usize| -> BTreeMap<Key, Vec<usize>> {
        let mut groups: BTreeMap<Key, Vec<usize>> = BTreeMap::new();
        for (r, key) in keys.iter().enumerate() {
            let g: Key = shared.iter().map(|&(a, b)| key[if side == 0 { a } else { b }].clone()).collect();
            groups.entry(g).or_default().push(r);
        }
        groups
    };
    let (mine, theirs) = (group(&table.host.keys, 0), group(&other.host.keys, 1));
    let has_rows = |j: &Judged<'_>, r: usize| j.cells.get(r).is_some_and(|c| c.rows > 0);
    // What adds up: counts, sums, and means and ratios (a mean times a rounded count).
    let additive = |s: Statistic| matches!(s, Statistic::Count | Statistic::Sum | Statistic::Mean | Statistic::Ratio);
    let hides = |j: &Judged<'_>, r: usize, hidden: &dyn Fn(usize, usize) -> bool| {
        has_rows(j, r) && (j.spec.measures.iter().enumerate()).any(|(m, x)| additive(x.statistic) && hidden(m, r))
    };
    let mut changes = Vec::new();
    for (g, rows) in &mine {
        let Some(their_rows) = theirs.get(g) else { continue };
        let (theirs_hidden, mine_hidden) = (
            their_rows.iter().any(|&r| hides(other, r, &hidden)),
            rows.iter().any(|&r| hides(table, r, &|m, r| table.shown(m, r).is_none())),
        );
        if !theirs_hidden || mine_hidden {
            continue;
        }
        if !same_rows(
            rows.iter().filter_map(|&r| table.cells.get(r)),
            their_rows.iter().filter_map(|&r| other.cells.get(r)),
        ) {
            continue;
        }
        for &r in rows.iter().filter(|&&r| has_rows(table, r)) {
            changes.extend((0..table.spec.measures.len()).map(|j| (j, r, None)));
        }
    }
    changes
}

/// Whether two sets of cells count the same rows: as many rows, the same totals.
fn same_rows<'c>(a: impl Iterator<Item = &'c evidence::Cell>, b: impl Iterator<Item = &'c evidence::Cell>) -> bool {
    let sum = |cells: Vec<&'c evidence::Cell>| {
        let rows: u64 = cells.iter().map(|c| c.rows).sum();
        let mut totals: BTreeMap<&str, f64> = BTreeMap::new();
        for c in &cells {
            for (column, m) in &c.magnitudes {
                *totals.entry(column.as_str()).or_default() += m.total;
            }
        }
        (rows, totals)
    };
    let ((rows_a, totals_a), (rows_b, totals_b)) = (sum(a.collect()), sum(b.collect()));
    rows_a > 0
        && rows_a == rows_b
        && totals_a.iter().all(|(column, x)| match totals_b.get(column) {
            Some(y) => (x - y).abs() <= 1e-9 * x.abs().max(1.0),
            None => true,
        })
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

/// The host's table as released: labels as text, counts as integers, other figures as
/// decimals; a row not passing, or a measure withheld, blank.
fn release(
    spec: &OutputSpec,
    host: &HostTable,
    verdicts: &[Verdict],
    overrides: &HashMap<(usize, usize), Option<f64>>,
) -> Result<RecordBatch, AuditError> {
    let mut fields: Vec<Field> = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for (i, dim) in spec.dimensions.iter().enumerate() {
        fields.push(Field::new(&dim.name, DataType::Utf8, true));
        columns.push(Arc::new(host.keys.iter().map(|k| k[i].clone()).collect::<StringArray>()));
    }
    for (j, m) in spec.measures.iter().enumerate() {
        let value = |r: usize| -> Option<f64> {
            if verdicts[r] != Verdict::Pass {
                return None;
            }
            match overrides.get(&(j, r)) {
                Some(v) => *v,
                None => host.released[j][r],
            }
        };
        let rows = 0..host.keys.len();
        if matches!(m.statistic, Statistic::Count | Statistic::ResidualDf) {
            fields.push(Field::new(&m.name, DataType::Int64, true));
            columns.push(Arc::new(rows.map(|r| value(r).map(|v| v as i64)).collect::<Int64Array>()));
        } else {
            fields.push(Field::new(&m.name, DataType::Float64, true));
            columns.push(Arc::new(rows.map(value).collect::<Float64Array>()));
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(|e| AuditError::Evidence(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_order_from_best_to_worst() {
        assert!(
            Verdict::Pass < Verdict::Suppressed
                && Verdict::Suppressed < Verdict::Review
                && Verdict::Review < Verdict::Fail
        );
    }
}
