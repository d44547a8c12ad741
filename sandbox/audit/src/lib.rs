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
mod inclusion;
mod judge;
mod model;
pub mod perturbation;
mod policy;
mod report;
pub mod review;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use sandbox_catalog::{Catalog, Constraint, Variant};
use sandbox_contract::manifest::{Manifest, Measure, OutputSpec, Statistic, dataset_of};
use sandbox_contract::{OutputTable, RunRecord};
use serde::Serialize;

pub use crate::differencing::{Sketch, UnitHasher};
pub use crate::dp::DpSettings;
use crate::evidence::{Evidence, Key};
use crate::judge::{HostTable, Judge};
pub use crate::perturbation::Perturbation;
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
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ReleasedCell {
    /// The dataset whose privacy units the cell counts.
    pub dataset: String,
    /// Which release, table and cell: for the report.
    pub label: String,
    pub sketch: Sketch,
    /// Per magnitude column (`dataset.column`), its units' totals as (unit, total) pairs,
    /// sketched: a later cell of the same units is compared on them too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contributions: Vec<(String, Sketch)>,
    /// Per magnitude column: the cell's total and its two largest contributions. Inside the
    /// domain, like the whole history: a later cell that holds all of this one's units and a few
    /// more must not leave a dominated difference.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub magnitudes: Vec<(String, [f64; 3])>,
}

/// A table released earlier, as later audits relate their tables to it: its contract with the
/// run's parameters written in, so that the host can divide today's rows by it again, and what
/// left of each of its cells.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EarlierTable {
    /// The dataset whose privacy units it counts.
    pub dataset: String,
    /// Which release and table: for the report.
    pub label: String,
    pub contract: OutputSpec,
    /// Each row's labels.
    pub keys: Vec<Vec<Option<String>>>,
    /// Per measure, per row: the released figure, `None` where withheld.
    pub figures: Vec<Vec<Option<f64>>>,
    /// (row, measure) withheld to protect another cell: a later table over exactly its rows
    /// must not show it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secondary: Vec<(usize, usize)>,
}

/// What has left, as later audits compare with it: every released cell's units (differencing)
/// and every released table's contract and figures (margins across runs).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    pub cells: Vec<ReleasedCell>,
    pub tables: Vec<EarlierTable>,
}

impl History {
    /// How many entries it holds: a history that grew has had a release.
    pub fn len(&self) -> usize {
        self.cells.len() + self.tables.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn extend(&mut self, other: History) {
        self.cells.extend(other.cells);
        self.tables.extend(other.tables);
    }
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
    /// What `released` adds to the history: its unsuppressed cells, for later audits'
    /// differencing, and its tables, for their margins.
    pub history: History,
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
    /// What left earlier, by any operator: no cell may differ from a released one by fewer
    /// units than the threshold, nor a released table add up with this run's to a withheld cell.
    pub earlier: &'a History,
}

/// The answers of the host's evidence queries for a run's tables, asked while its module runs:
/// they need the contract, its parameters and the raw files, not the module's output. An audit
/// given them ([`audit_prefetched`]) takes from them the answer to a query of the same text (the
/// parameters written in) and asks every other query itself, so they can only save time.
#[derive(Debug, Default)]
pub struct Prefetched(HashMap<String, Vec<RecordBatch>>);

/// Asks the evidence queries of each table of `manifest` (its cells and its dimensions' labels)
/// with `parameters` bound as a run binds them, defaults filled in — none where the contract is
/// refused with them. A query that fails is left for the audit to ask again and report.
pub async fn prefetch(
    catalog: &Catalog,
    variant: Variant,
    manifest: &Manifest,
    parameters: &[(String, String)],
    policy: &AuditPolicy,
    hasher: &UnitHasher,
) -> Prefetched {
    let Ok(bound) = manifest.bind(parameters) else { return Prefetched::default() };
    let bound: Vec<(String, String)> = bound.iter().map(|(n, v)| (n.clone(), v.to_string())).collect();
    // Never a query the checker would refuse, with the host's privileges, as in `audit`.
    if sandbox_policy::contract::judge(manifest, catalog, Some(&bound)).await.is_err() {
        return Prefetched::default();
    }
    let Ok(mut evidence) = Evidence::new(catalog, variant, &manifest.datasets, &bound, hasher) else {
        return Prefetched::default();
    };
    for spec in manifest.outputs.iter().filter(|s| s.model.is_none()) {
        let rules = policy.rules_for(manifest_datasets(spec));
        if let Ok(table) = evidence.cells(spec, rules.min_units_extremes).await {
            let _ = evidence.domains(spec, &table).await;
        }
    }
    Prefetched(evidence.into_answers())
}

/// Audits a run's output tables.
pub async fn audit(request: AuditRequest<'_>) -> Result<Audit, AuditError> {
    audit_prefetched(request, &Prefetched::default()).await
}

/// Audits a run's output tables, with the answers [`prefetch`] asked for while the module ran.
pub async fn audit_prefetched(request: AuditRequest<'_>, prefetched: &Prefetched) -> Result<Audit, AuditError> {
    let manifest = request.manifest;
    // The host runs the contract with its own privileges over the raw files: never one the
    // checker would refuse, whichever way the run came (the server judges it at submission and
    // at the start of every run; this is the last line).
    sandbox_policy::contract::judge(manifest, request.catalog, Some(&request.record.parameters))
        .await
        .map_err(|e| AuditError::Contract(e.to_string()))?;
    let mut evidence = Evidence::new(
        request.catalog,
        request.variant,
        &manifest.datasets,
        &request.record.parameters,
        request.hasher,
    )?
    .with_answers(&prefetched.0);
    let sensitive = sensitive_columns(request.catalog, &manifest.datasets);
    let mut judged = Vec::new();
    // Cells that pass differencing, by (table, row): kept for later audits once it is known
    // that their row leaves.
    let mut cells: Vec<(usize, usize, ReleasedCell)> = Vec::new();
    let mut held_cells: HashMap<String, Vec<(usize, usize, ReleasedCell)>> = HashMap::new();
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
        let label = label_of(request.record, spec);
        // Compared with this run's earlier tables, held ones too: they leave if approved.
        let this_run: Vec<ReleasedCell> =
            cells.iter().chain(held_cells.values().flatten()).map(|(_, _, c)| c.clone()).collect();
        let t = judged.len();
        let passed: Vec<(usize, usize, ReleasedCell)> = (judge.differencing(&label, &request.earlier.cells, &this_run))
            .into_iter()
            .map(|(r, c)| (t, r, c))
            .collect();
        let outcome = judge.outcome();
        if outcome <= Verdict::Suppressed {
            cells.extend(passed);
        } else if outcome == Verdict::Review {
            held_cells.insert(spec.name.clone(), passed);
        }
        let Judge {
            host,
            findings,
            cells: verdicts,
            suppressed,
            overrides,
            breach,
            evidence: cells_evidence,
            dominated,
            ..
        } = judge;
        judged.push(Judged {
            name: spec.name.clone(),
            label: label.clone(),
            fixed: false,
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
            dominated,
            secondary: BTreeSet::new(),
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
    // The tables released earlier, as they left: they cannot change, this run's tables must
    // not add up with them to a withheld cell.
    let ours = judged.len();
    for earlier in &request.earlier.tables {
        judged.push(Judged::earlier(earlier, request.policy));
    }
    let (relations, nested) = relations(&judged, &request.record.parameters, &mut evidence).await?;
    margins(&mut judged, &relations);
    // A cell withheld now can expose another through a margin: the margins again.
    let this_run: HashMap<String, (usize, usize)> =
        (cells.iter().chain(held_cells.values().flatten())).map(|(t, r, c)| (c.label.clone(), (*t, *r))).collect();
    let mut changed = dominated_differences(&mut judged, &this_run);
    let passed: Vec<(usize, usize, ReleasedCell)> =
        cells.iter().chain(held_cells.values().flatten()).cloned().collect();
    changed |= inclusion::withhold_triples(&mut judged, &nested, &request.earlier.cells, &passed);
    if changed {
        margins(&mut judged, &relations);
    }
    judged.truncate(ours);
    if breach.is_empty() {
        add_noise(&mut judged, request.policy)?;
    }
    let mut tables = Vec::new();
    let mut released = Vec::new();
    let mut held = Vec::new();
    // A cell withheld after differencing (secondary suppression) never left: it is not kept.
    // Its totals are kept only where they left as they are (not recomputed).
    let cells = (cells.into_iter())
        .filter(|&(t, r, _)| leaves(&judged[t], r))
        .map(|(t, r, c)| kept_as_left(&judged[t], r, c))
        .collect();
    let mut history = History { cells, tables: Vec::new() };
    for j in judged {
        let outcome = j.outcome();
        // What later tables are related to: counts and sums as they left. Noise covers what
        // subtraction would give, and models have no cells.
        let earlier = (j.dp.is_none() && j.spec.model.is_none() && breach.is_empty())
            .then(|| j.as_earlier(&request.record.parameters, &label_of(request.record, j.spec)))
            .transpose()?;
        if outcome <= Verdict::Suppressed {
            history.tables.extend(earlier.clone());
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
                history: History {
                    cells: (held_cells.remove(&j.spec.name).unwrap_or_default().into_iter())
                        .filter(|&(_, r, _)| leaves(&j, r))
                        .map(|(_, r, c)| kept_as_left(&j, r, c))
                        .collect(),
                    tables: earlier.into_iter().collect(),
                },
            });
        }
        tables.push(TableReport::new(j.spec, outcome, j.rules, j.findings, &j.host, &j.verdicts, &j.overrides));
    }
    let report = AuditReport::new(request.record, request.policy.sha256(), !breach.is_empty(), tables);
    let released_report = ReleasedReport::of(&report);
    Ok(Audit { report, released_report, released, history, breach, held, key: request.hasher.clone() })
}

/// A cell whose difference with another (which it holds, or which holds it) a few units
/// dominate is withheld, where it would leave with its own figure of that column: a sum that
/// secondary suppression recomputed no longer gives the difference.
fn dominated_differences(judged: &mut [Judged<'_>], this_run: &HashMap<String, (usize, usize)>) -> bool {
    let mut changed = false;
    for t in 0..judged.len() {
        for d in std::mem::take(&mut judged[t].dominated) {
            // An earlier release keeps the figures of cells that left their own totals only.
            let other = this_run.get(&d.other).is_none_or(|&(u, q)| judged[u].leaves_total(q, &d.column));
            if !judged[t].leaves_total(d.row, &d.column) || !other {
                continue;
            }
            let table = &mut judged[t];
            let name = judge::label(&table.host.keys[d.row]);
            let (other, units, column) = (&d.other, d.units, &d.column);
            table.verdicts[d.row] = table.verdicts[d.row].max(Verdict::Suppressed);
            table.suppressed[d.row] = true;
            changed = true;
            table.findings.push(CellFinding {
                row: Some(d.row),
                column: None,
                rule: Rule::Differencing,
                verdict: Verdict::Suppressed,
                en: format!("[{name}] it and {other} differ by {units} privacy units whose {column} a few of them dominate: subtracting one cell from the other would reveal them"),
                zh: format!("[{name}] 与 {other} 相差 {units} 个隐私单元，其 {column} 由少数单位支配：两者相减即可推出这些单位"),
            });
        }
    }
    changed
}

/// `cell` (row `r` of `table`) as the history keeps it: its totals only for the columns whose
/// sums leave unchanged.
fn kept_as_left(table: &Judged<'_>, r: usize, mut cell: ReleasedCell) -> ReleasedCell {
    cell.magnitudes.retain(|(column, _)| table.leaves_total(r, column));
    cell
}

/// Whether row `r` of `table` leaves (or would, approved): some figure of it is shown.
fn leaves(table: &Judged<'_>, r: usize) -> bool {
    (0..table.spec.measures.len()).any(|j| table.shown(j, r).is_some())
}

/// A release's table, as the history and the internal report name it.
fn label_of(record: &RunRecord, spec: &OutputSpec) -> String {
    format!("{} {}", &record.module_sha256[..record.module_sha256.len().min(12)], spec.name)
}

/// A judged table, before its release; or one released earlier (`fixed`), as it left.
struct Judged<'a> {
    /// Its name in the internal report: an earlier table's label.
    name: String,
    /// Which release and table, as the history's cells name it ([`label_of`]).
    label: String,
    fixed: bool,
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
    /// Each row's evidence (none for a model or an earlier table).
    cells: Vec<evidence::Cell>,
    /// Its differences with other cells that a few units dominate.
    dominated: Vec<judge::Dominated>,
    /// (row, measure) withheld to protect another cell (secondary suppression).
    secondary: BTreeSet<(usize, usize)>,
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

impl<'a> Judged<'a> {
    /// A table released earlier, as it left: its shown figures, nothing to change.
    fn earlier(table: &'a EarlierTable, policy: &AuditPolicy) -> Judged<'a> {
        let rows = table.keys.len();
        Judged {
            name: format!("{} ({})", table.label, "earlier release / 此前发布"),
            label: table.label.clone(),
            fixed: true,
            spec: &table.contract,
            rules: policy.rules_for(manifest_datasets(&table.contract)),
            host: HostTable {
                keys: table.keys.clone(),
                units: vec![0; rows],
                figures: table.figures.clone(),
                released: table.figures.clone(),
            },
            findings: Vec::new(),
            verdicts: vec![Verdict::Pass; rows],
            suppressed: vec![false; rows],
            overrides: HashMap::new(),
            dp: None,
            breach: false,
            cells: Vec::new(),
            dominated: Vec::new(),
            secondary: table.secondary.iter().copied().collect(),
        }
    }

    /// This table as the history keeps it once released.
    fn as_earlier(&self, parameters: &[(String, String)], label: &str) -> Result<EarlierTable, AuditError> {
        let measures = 0..self.spec.measures.len();
        Ok(EarlierTable {
            dataset: evidence::counted(self.spec).to_owned(),
            label: label.to_owned(),
            contract: evidence::resolve(self.spec, parameters)?,
            keys: self.host.keys.clone(),
            figures: measures.map(|j| (0..self.host.keys.len()).map(|r| self.shown(j, r)).collect()).collect(),
            secondary: self.secondary.iter().copied().collect(),
        })
    }

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

/// Cells of two tables that hold nearly the same rows: a group of `x`'s and `y`'s cells linked
/// by shared rows in the crossing, with fewer rows outside the other table than a cell needs
/// units. Either side's cells add up to the other's, but for those few rows.
#[derive(Debug)]
struct Component {
    x: Vec<usize>,
    y: Vec<usize>,
    /// Rows of the component outside the other table (fewer than a cell needs units): what one
    /// side's total less the other's gives — a small group of its own.
    outside: u64,
}

/// The components of two tables' crossing ([`Component`]) with at most `slack` rows outside the
/// other table; cells without rows are in none. A filter that drops one row of a withheld cell
/// from its margin leaves a margin that still gives the cell back, but for that row.
fn components(x: &HostTable, y: &HostTable, crossing: &evidence::Crossing, slack: u64) -> Vec<Component> {
    let index =
        |keys: &[Key]| -> HashMap<Key, usize> { keys.iter().cloned().enumerate().map(|(i, k)| (k, i)).collect() };
    let (xs, ys) = (index(&x.keys), index(&y.keys));
    let nx = x.keys.len();
    // Union–find over x's rows (0..nx) and y's (nx..).
    let mut parent: Vec<usize> = (0..nx + y.keys.len()).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    let mut open = vec![0u64; parent.len()];
    let mut filled = vec![false; parent.len()];
    for part in crossing.parts.iter().filter(|p| p.rows > 0) {
        // A label a table does not have (an earlier table, on data that changed since) is
        // outside it.
        let a = part.a.as_ref().and_then(|k| xs.get(k).copied());
        let b = part.b.as_ref().and_then(|k| ys.get(k).map(|i| nx + i));
        match (a, b) {
            (Some(a), Some(b)) => {
                (filled[a], filled[b]) = (true, true);
                let (ra, rb) = (root(&mut parent, a), root(&mut parent, b));
                parent[ra] = rb;
            }
            (Some(one), None) | (None, Some(one)) => {
                filled[one] = true;
                open[one] += part.rows;
            }
            (None, None) => {}
        }
    }
    let mut groups: BTreeMap<usize, (Component, u64)> = BTreeMap::new();
    for i in (0..parent.len()).filter(|&i| filled[i]) {
        let r = root(&mut parent, i);
        let (component, outside) =
            groups.entry(r).or_insert_with(|| (Component { x: Vec::new(), y: Vec::new(), outside: 0 }, 0));
        *outside += open[i];
        if i < nx { component.x.push(i) } else { component.y.push(i - nx) }
    }
    (groups.into_values())
        .filter(|(c, outside)| *outside <= slack && !c.x.is_empty() && !c.y.is_empty())
        .map(|(c, outside)| Component { outside, ..c })
        .collect()
}

/// Secondary suppression, across the tables that leave now or after review and the tables
/// released earlier (`relations`: the components of each pair that share rows). Subtracting
/// released cells from other released cells over the same rows must never give a withheld cell
/// back. Where one table hides a cell of a component:
/// - a cell of this run's that is all of the other side (a margin, a total, a coarser band)
///   has its counts and sums released recomputed from the other's released cells only (blank
///   where two tables would recompute it differently), and its other statistics (means,
///   ratios, extremes, quantiles) withheld — unless the other side shows none of its cells:
///   the margin is then the total of all of them, which passed its own rules;
/// - several cells of this run's that show every figure (district × street against district ×
///   status) are withheld: adding them up would give the hidden cell's total;
/// - where the other side was released earlier and shows every figure, and so cannot change,
///   the hiding side's cells of the component are all withheld: what they add up to is known,
///   what each holds is not.
///
/// Withholding a cell can expose another, so the passes repeat until nothing changes; each cell
/// only ever goes from shown to recomputed to blank, so they end.
fn margins(judged: &mut [Judged<'_>], relations: &BTreeMap<(usize, usize), Vec<Component>>) {
    let mut notes: BTreeMap<(usize, usize, usize), Secondary> = BTreeMap::new();
    // Cells of two tables over exactly the same rows: one shown gives the other's figure.
    let twins: Vec<((usize, usize), (usize, usize))> = (relations.iter())
        .flat_map(|(&(a, b), components)| {
            components
                .iter()
                .filter(|c| c.outside == 0 && c.x.len() == 1 && c.y.len() == 1)
                .map(move |c| ((a, c.x[0]), (b, c.y[0])))
        })
        .collect();
    loop {
        let mut changes = Vec::new();
        for (&(a, b), components) in relations {
            for (m, d) in [(a, b), (b, a)] {
                // What the other table withholds, by a rule of its own or to protect another cell:
                // a cell withheld to protect one must not come back through a third table.
                let hidden = |j: usize, r: usize| judged[d].shown(j, r).is_none();
                let secondary =
                    |j: usize, r: usize| notes.contains_key(&(d, r, j)) || judged[d].secondary.contains(&(r, j));
                // Whether a cell's figure of a quantity is shown by a twin in another table.
                let known = |t: usize, r: usize, q: &str| {
                    twins.iter().any(|&(x, y)| {
                        (x == (t, r) && judged[y.0].shows(y.1, q)) || (y == (t, r) && judged[x.0].shows(x.1, q))
                    })
                };
                let seen = Seen { hidden: &hidden, secondary: &secondary, known: &known };
                for c in components {
                    changes.extend(relate(judged, (m, d), c, m == a, &seen));
                }
            }
        }
        let mut changed = false;
        for (t, j, r, value, from) in changes {
            let from = judged[from].name.clone();
            let note = notes.entry((t, r, j)).or_insert_with(|| Secondary { value, from: BTreeSet::new() });
            note.from.insert(from);
            // Two recomputations that disagree leave nothing.
            if note.value != value {
                note.value = None;
            }
            let now = note.value;
            if judged[t].overrides.get(&(j, r)) != Some(&now) {
                judged[t].overrides.insert((j, r), now);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    for ((t, r, j), note) in notes {
        let table = &mut judged[t];
        if note.value.is_none() {
            table.secondary.insert((r, j));
        }
        let name = table.spec.measures[j].name.clone();
        let from = note.from.into_iter().collect::<Vec<_>>().join(", ");
        let (verdict, en, zh) = match note.value {
            Some(_) => (
                Verdict::Pass,
                format!("{name} recomputed from the released cells of {from}, some of which are withheld"),
                format!("{name} 按 {from} 已发布的单元格重新计算（其中部分单元格被抑制）"),
            ),
            None => (
                Verdict::Suppressed,
                format!("{name} together with the released cells of {from} would give back withheld cells"),
                format!("{name} 与 {from} 已发布的单元格相结合可推出被抑制的单元格"),
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

/// What relating a pair of tables reads of the other table `d`: its figures withheld (by any
/// rule), withheld to protect another cell (secondary suppression, this run's or an earlier
/// table's), and cells whose figure a twin in a third table shows.
struct Seen<'s> {
    hidden: &'s dyn Fn(usize, usize) -> bool,
    secondary: &'s dyn Fn(usize, usize) -> bool,
    known: &'s dyn Fn(usize, usize, &str) -> bool,
}

/// What secondary suppression made of one released figure.
struct Secondary {
    /// Recomputed, or blank.
    value: Option<f64>,
    /// The tables it was judged against.
    from: BTreeSet<String>,
}

/// What a measure adds up to, for relating tables: counts to counts, sums — and the means made
/// from them, a mean times a rounded count being nearly a sum — to sums of the same column, a
/// ratio to sums of both its columns (with the numerator's sum, it gives the denominator's).
/// Other statistics add up to nothing.
fn quantities(m: &Measure) -> Vec<String> {
    match m.statistic {
        Statistic::Count => vec!["count".to_owned()],
        Statistic::Sum | Statistic::Mean => vec![format!("sum {}", m.of)],
        Statistic::Ratio => std::iter::once(&m.of).chain(&m.per).map(|c| format!("sum {c}")).collect(),
        _ => Vec::new(),
    }
}

fn measures(m: &Measure, q: &str) -> bool {
    quantities(m).iter().any(|x| x == q)
}

impl Judged<'_> {
    /// Whether row `r` withholds (by `hidden`) a figure of quantity `q`.
    fn hides(&self, r: usize, q: &str, hidden: &dyn Fn(usize, usize) -> bool) -> bool {
        (self.spec.measures.iter().enumerate()).any(|(j, m)| measures(m, q) && hidden(j, r))
    }

    /// Whether row `r` leaves its own total of `column`, not one secondary suppression recomputed.
    fn leaves_total(&self, r: usize, column: &str) -> bool {
        let q = format!("sum {column}");
        (self.spec.measures.iter().enumerate())
            .filter(|(_, m)| measures(m, &q))
            .any(|(j, _)| self.shown(j, r).is_some() && !self.overrides.contains_key(&(j, r)))
    }

    /// Whether row `r` shows a figure of quantity `q`.
    fn shows(&self, r: usize, q: &str) -> bool {
        (self.spec.measures.iter().enumerate()).any(|(j, m)| measures(m, q) && self.shown(j, r).is_some())
    }
}

/// What one component asks where table `d` hides a figure in it by a rule of its own
/// (`hidden`), or where a few rows of it (`outside`) lie in one table only — the difference of
/// the two sides' totals, a group too small to leave, as a cell hidden in neither (X − Y − Z =
/// one shop): (table, measure, row, value, the table it is judged against). `mine` are table
/// `m`'s cells of the component, `theirs` `d`'s. Quantity by quantity: a count hidden in `d` is
/// given back only by counts of `m`, a sum only by sums (means, ratios) of the same column. See
/// [`margins`].
fn relate(
    judged: &[Judged<'_>],
    (m, d): (usize, usize),
    component: &Component,
    m_is_x: bool,
    seen: &Seen<'_>,
) -> Vec<(usize, usize, usize, Option<f64>, usize)> {
    let (hidden, secondary) = (seen.hidden, seen.secondary);
    let (table, other) = (&judged[m], &judged[d]);
    let (mine, theirs) =
        if m_is_x { (&component.x[..], &component.y[..]) } else { (&component.y[..], &component.x[..]) };
    let outside = component.outside;
    // The quantities `d` hides here (all of them, with rows outside) that `m` has.
    let mut related: Vec<String> = other.spec.measures.iter().flat_map(quantities).collect();
    related.sort();
    related.dedup();
    let hides = |q: &str| theirs.iter().any(|&r| other.hides(r, q, hidden));
    related.retain(|q| (outside > 0 || hides(q)) && table.spec.measures.iter().any(|x| measures(x, q)));
    if related.is_empty() {
        return Vec::new();
    }
    // Every figure of `t`'s `rows` still shown, withheld.
    let withhold = |t: usize, rows: &[usize], from: usize| -> Vec<(usize, usize, usize, Option<f64>, usize)> {
        let table = &judged[t];
        (rows.iter())
            .flat_map(|&r| (0..table.spec.measures.len()).map(move |j| (j, r)))
            .filter(|&(j, r)| table.shown(j, r).is_some())
            .map(|(j, r)| (t, j, r, None, from))
            .collect()
    };
    let shows_all = |q: &str| mine.iter().all(|&r| table.shows(r, q));
    match (table.fixed, other.fixed) {
        // A margin of this run: its counts and sums recomputed from what the other side shows,
        // its other figures of those quantities withheld — unless the other side shows none of
        // them: the margin is then the total of all of them, which passed its own rules.
        (false, _) if mine.len() == 1 => {
            let r = mine[0];
            let shown_any = |q: &str| theirs.iter().any(|&x| other.shows(x, q));
            // A cell withheld to protect another (by secondary suppression) is no total of
            // cells that passed their own rules: the margin over it does not keep its figure.
            let protecting = |q: &str| theirs.iter().any(|&x| other.hides(x, q, secondary));
            // Recomputing from the other side's figures leaves out the rows outside it.
            let mut changes = Vec::new();
            for (j, measure) in table.spec.measures.iter().enumerate() {
                let own = quantities(measure);
                let hit: Vec<&String> = own.iter().filter(|q| related.contains(q)).collect();
                let value = if own.is_empty() {
                    // Extremes and quantiles of a margin whose detail hides something, beside
                    // recomputed counts and sums: withheld, as before.
                    if !related.iter().any(|q| shown_any(q) || protecting(q)) {
                        continue;
                    }
                    None
                } else if hit.is_empty() || hit.iter().all(|q| !shown_any(q) && !protecting(q)) {
                    continue;
                } else {
                    let dj = other.spec.measures.iter().position(|x| {
                        matches!(measure.statistic, Statistic::Count | Statistic::Sum)
                            && x.statistic == measure.statistic
                            && quantities(x) == own
                    });
                    match dj {
                        Some(dj) => {
                            let shown: Vec<f64> = theirs.iter().filter_map(|&x| other.shown(dj, x)).collect();
                            (!shown.is_empty()).then(|| shown.iter().sum())
                        }
                        None => None,
                    }
                };
                // A figure withheld by a rule of its own stays withheld.
                if table.shown(j, r).is_some_and(|shown| Some(shown) != value) {
                    changes.push((m, j, r, value, d));
                }
            }
            changes
        }
        // Another split of the same rows, of this run: where it shows all of a quantity the
        // other hides, it is withheld here. (Against an earlier table that hides nothing and
        // only has rows outside, the earlier table's side decides: `complement`, below.)
        // The cheapest cells of it, as against an earlier table (below).
        (false, _) if related.iter().any(|q| shows_all(q) && (hides(q) || !other.fixed)) => {
            let mut changes = Vec::new();
            for q in related.iter().filter(|q| shows_all(q) && (hides(q) || !other.fixed)) {
                for r in complement(table, mine, q, outside, &|r| (seen.known)(m, r, q)) {
                    changes.extend(withhold(m, &[r], d));
                }
            }
            changes
        }
        // Released earlier, all of a quantity the new table hides part of: it cannot change, so
        // the new table withholds the cheapest further cells that leave what it hides a group
        // of at least two cells that passes the threshold and dominance rules as one.
        // (A single cell of the new table is a margin of the earlier one's: recomputed above, from
        // the other direction.)
        (true, false) if theirs.len() > 1 => {
            let mut changes = Vec::new();
            for q in related.iter().filter(|q| shows_all(q)) {
                for r in complement(other, theirs, q, outside, &|r| (seen.known)(d, r, q)) {
                    changes.extend(withhold(d, &[r], m));
                }
            }
            changes
        }
        _ => Vec::new(),
    }
}

/// The cells of `table` among `rows` to withhold besides those that withhold quantity `q`, so
/// that what they withhold together, with the `outside` rows of the group that are in no cell
/// of it — which a released total of the group gives back — is at least two parts (cells, or
/// the outside rows), of at least `min_units` units, not dominated: the smallest first (fewest
/// units, then first in the table), so the same cells are chosen every time. The outside rows'
/// units are not counted: the cells withheld must hold `min_units` units by themselves.
fn complement(table: &Judged<'_>, rows: &[usize], q: &str, outside: u64, known: &dyn Fn(usize) -> bool) -> Vec<usize> {
    let rules = &table.rules;
    let column = q.strip_prefix("sum ");
    // A cell whose figure another table shows hides nothing: it neither counts nor is chosen.
    let safe = |group: &[usize]| {
        let group: Vec<usize> = group.iter().copied().filter(|&r| !known(r)).collect();
        let cells: Vec<&evidence::Cell> = group.iter().filter_map(|&r| table.cells.get(r)).collect();
        let units: u64 = cells.iter().map(|c| c.units).sum();
        let dominated = column.is_some_and(|column| {
            let total: f64 = cells.iter().filter_map(|c| c.magnitudes.get(column)).map(|m| m.total).sum();
            let mut top: Vec<f64> =
                (cells.iter().filter_map(|c| c.magnitudes.get(column))).flat_map(|m| [m.largest, m.second]).collect();
            top.sort_by(|a, b| b.total_cmp(a));
            let n = rules.dominance_n.max(1);
            total > 0.0 && top.iter().take(n).sum::<f64>() > rules.dominance_k * total
        });
        let parts = group.len() + usize::from(outside > 0);
        parts >= 2 && units >= rules.min_units && !dominated
    };
    let mut group: Vec<usize> =
        rows.iter().copied().filter(|&r| table.hides(r, q, &|j, r| table.shown(j, r).is_none())).collect();
    let mut candidates: Vec<usize> = rows.iter().copied().filter(|&r| !group.contains(&r) && !known(r)).collect();
    candidates.sort_by_key(|&r| (table.cells.get(r).map_or(0, |c| c.units), r));
    let mut added = Vec::new();
    for r in candidates {
        if safe(&group) {
            break;
        }
        group.push(r);
        added.push(r);
    }
    added
}

/// The components of every pair of tables that may give each other's withheld cells back:
/// tables that leave, over the same rows (one counted dataset, one join or one of them none),
/// one of them of this run. A table of this run is crossed with all its partners
/// in one scan; with a table released earlier under the same contract (the same run asked
/// again), each cell is the other's and no scan is needed.
async fn relations(
    judged: &[Judged<'_>],
    parameters: &[(String, String)],
    evidence: &mut Evidence<'_>,
) -> Result<(BTreeMap<(usize, usize), Vec<Component>>, Vec<inclusion::Nested>), AuditError> {
    let leaving = |t: &Judged<'_>| {
        t.fixed
            || (t.dp.is_none()
                && t.spec.model.is_none()
                && matches!(t.outcome(), o if o <= Verdict::Suppressed || o == Verdict::Review))
    };
    let mut relations = BTreeMap::new();
    let mut nested = Vec::new();
    for a in (0..judged.len()).filter(|&a| !judged[a].fixed && leaving(&judged[a])) {
        let x = &judged[a];
        let resolved = evidence::resolve(x.spec, parameters)?;
        let mut partners = Vec::new();
        for b in (a + 1..judged.len()).filter(|&b| leaving(&judged[b])) {
            let y = &judged[b];
            // The same counted rows, joined alike or one of them not at all.
            let joins = match (&x.spec.join, &y.spec.join) {
                (Some(p), Some(q)) => p == q,
                _ => true,
            };
            // Even two tables that withhold nothing: a few rows in one only are a group of their own.
            if evidence::counted(x.spec) != evidence::counted(y.spec) || !joins {
                continue;
            }
            if y.fixed && divides_alike(y.spec, &resolved) {
                let rows: HashMap<&Key, usize> = y.host.keys.iter().enumerate().map(|(s, k)| (k, s)).collect();
                let same: Vec<Component> = (x.host.keys.iter().enumerate())
                    .filter(|&(r, _)| x.host.units[r] > 0)
                    .filter_map(|(r, key)| rows.get(key).map(|&s| Component { x: vec![r], y: vec![s], outside: 0 }))
                    .collect();
                relations.insert((a, b), same);
                continue;
            }
            partners.push(b);
        }
        // One scan per join the partners read the rows through (this table's, or another's
        // where this table joins nothing); tables that divide the rows alike (a product released
        // every month) share a crossing.
        let join_of = |b: usize| x.spec.join.as_ref().or(judged[b].spec.join.as_ref());
        let mut joins: Vec<Option<&sandbox_contract::manifest::Join>> = Vec::new();
        for &b in &partners {
            if !joins.contains(&join_of(b)) {
                joins.push(join_of(b));
            }
        }
        for join in joins {
            let group: Vec<usize> = partners.iter().copied().filter(|&b| join_of(b) == join).collect();
            let mut specs: Vec<&OutputSpec> = Vec::new();
            let mut crossing_of = Vec::new();
            for &b in &group {
                let spec = judged[b].spec;
                crossing_of.push(specs.iter().position(|o| divides_alike(o, spec)).unwrap_or_else(|| {
                    specs.push(spec);
                    specs.len() - 1
                }));
            }
            let crossings = evidence.crossings(x.spec, &specs).await?;
            for (b, c) in group.into_iter().zip(crossing_of) {
                let slack = x.rules.min_units.max(judged[b].rules.min_units).saturating_sub(1);
                let found = components(&x.host, &judged[b].host, &crossings[c], slack);
                nested.extend(inclusion::nestings((a, &x.host), (b, &judged[b].host), &crossings[c], slack));
                if !found.is_empty() {
                    relations.insert((a, b), found);
                }
            }
        }
    }
    Ok((relations, nested))
}

/// Whether two contracts divide the same rows into the same cells: the same dimensions, filters
/// and join (parameters written in).
fn divides_alike(a: &OutputSpec, b: &OutputSpec) -> bool {
    a.dimensions == b.dimensions && a.filters == b.filters && a.join == b.join
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
