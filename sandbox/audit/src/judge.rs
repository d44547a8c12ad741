//! One table's audit: the host builds its own table of the contract from the raw data
//! ([`HostTable`]), compares the module's table with it (the operator's claim, never released),
//! and judges every host cell against the rules. What may leave is the host's table, rounded.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use sandbox_contract::OutputTable;
use sandbox_contract::manifest::{Banding, ModelKind, OutputSpec, Statistic, dataset_of};

use crate::evidence::{self, Evidence, Key, Magnitude, TableEvidence, numbers, quantiles_of, text};
use crate::model::{self, Fit};
use crate::{
    AuditError, CellFinding, DpSettings, ReleasedCell, Rule, Rules, Sketch, Verdict, differencing, identifiers,
};

/// Groups the policy views keep (`min_group_units`): a model is fitted on the cross cells of its
/// terms that hold at least this many units, which is what a module sees through the views.
pub(crate) const VIEW_THRESHOLD: u64 = 10;

/// The host's own table of a contract: its cells (or a model's terms) in canonical order, each
/// measure's true figure, and the figure as it would be released.
#[derive(Debug, Default)]
pub(crate) struct HostTable {
    pub(crate) keys: Vec<Key>,
    /// Distinct privacy units behind each row (a model's: behind each term's observations).
    pub(crate) units: Vec<u64>,
    /// Per measure, per row: the true statistic. Stays inside the domain.
    pub(crate) figures: Vec<Vec<Option<f64>>>,
    /// Per measure, per row: what would be released, rounded and protected, before suppression.
    pub(crate) released: Vec<Vec<Option<f64>>>,
}

/// The nearest multiple of `base`, halves rounding up.
pub(crate) fn round_to(value: i64, base: i64) -> i64 {
    if base <= 1 {
        return value;
    }
    (value + base / 2).div_euclid(base) * base
}

/// `value` to `digits` significant decimal digits (halves away from zero), as the shortest
/// decimal prints it: the same bytes for the same figure.
pub(crate) fn round_sig(value: f64, digits: u32) -> f64 {
    if value == 0.0 || !value.is_finite() {
        return value;
    }
    let text = format!("{:.*e}", digits.saturating_sub(1) as usize, value);
    text.parse().unwrap_or(value)
}

/// Two numbers agree when they differ by the rounding of another order of addition only.
fn agrees(declared: f64, host: f64, tolerance: f64) -> bool {
    (declared - host).abs() <= tolerance * host.abs().max(1.0)
}

/// Judges one table, collecting findings on the host's rows.
pub(crate) struct Judge<'a> {
    pub(crate) spec: &'a OutputSpec,
    /// The module's table: the operator's claim.
    pub(crate) module: &'a OutputTable,
    pub(crate) rules: &'a Rules,
    pub(crate) host: HostTable,
    pub(crate) findings: Vec<CellFinding>,
    /// Each host row's verdict so far.
    pub(crate) cells: Vec<Verdict>,
    /// Rows a rule suppressed whole: they stay blank if the table leaves after a review.
    pub(crate) suppressed: Vec<bool>,
    /// Released figures that differ from `host.released`: (measure, row) → value, `None` blank.
    pub(crate) overrides: HashMap<(usize, usize), Option<f64>>,
    /// Each host row's privacy units, per dataset they belong to (the counted one, a joined
    /// one), where the evidence has them: for differencing.
    pub(crate) sketches: Vec<Vec<(String, Sketch)>>,
    /// Per row, per magnitude column: its units' (unit, total) pairs, sketched.
    pub(crate) contributions: Vec<Vec<(String, Sketch)>>,
    /// Each host row's evidence (a table of cells; none for a model): for secondary suppression.
    pub(crate) evidence: Vec<evidence::Cell>,
    /// Differences with other cells that are dominated: judged after secondary suppression.
    pub(crate) dominated: Vec<Dominated>,
    /// The module's declared values disagree with the host's.
    pub(crate) breach: bool,
}

impl<'a> Judge<'a> {
    pub(crate) fn new(spec: &'a OutputSpec, module: &'a OutputTable, rules: &'a Rules) -> Judge<'a> {
        Judge {
            spec,
            module,
            rules,
            host: HostTable::default(),
            findings: Vec::new(),
            cells: Vec::new(),
            suppressed: Vec::new(),
            overrides: HashMap::new(),
            sketches: Vec::new(),
            contributions: Vec::new(),
            evidence: Vec::new(),
            dominated: Vec::new(),
            breach: false,
        }
    }

    pub(crate) fn outcome(&self) -> Verdict {
        crate::worst(&self.cells, &self.findings)
    }

    /// Records a finding; one on a row sets the whole row's verdict.
    pub(crate) fn find(
        &mut self,
        row: Option<usize>,
        column: Option<&str>,
        rule: Rule,
        verdict: Verdict,
        en: String,
        zh: String,
    ) {
        if let Some(r) = row {
            self.cells[r] = self.cells[r].max(verdict);
            self.suppressed[r] |= verdict == Verdict::Suppressed;
        }
        self.findings.push(CellFinding { row, column: column.map(str::to_owned), rule, verdict, en, zh });
    }

    /// Withholds one measure of one row, leaving the rest of the row.
    fn withhold(&mut self, row: usize, measure: usize, rule: Rule, en: String, zh: String) {
        let column = self.spec.measures[measure].name.clone();
        self.overrides.insert((measure, row), None);
        self.findings.push(CellFinding {
            row: Some(row),
            column: Some(column),
            rule,
            verdict: Verdict::Suppressed,
            en,
            zh,
        });
    }

    /// The key of a row, for the internal report.
    fn cell_name(&self, row: usize) -> String {
        label(&self.host.keys[row])
    }

    /// The host's table of cells and every rule on them.
    pub(crate) async fn cells(&mut self, evidence: &mut Evidence<'_>) -> Result<TableEvidence, AuditError> {
        let mut table = evidence.cells(self.spec, self.rules.min_units_extremes).await?;
        // Every combination of the dimensions' labels, filled or not: an empty combination and
        // a cell of one person look alike (both under the threshold), so the rows that leave
        // say nothing of which combinations the counted rows fill.
        let domains = evidence.domains(self.spec, &table).await?;
        let combinations = domains.iter().map(|d| d.len() as u64).fold(1u64, |n, d| n.saturating_mul(d));
        let filled = combinations <= self.rules.max_rows;
        if filled {
            fill(&mut table, &domains);
        }
        self.host = host_cells(self.spec, &table, self.rules);
        if let Some(p) = &self.rules.perturbation {
            perturb(&mut self.host, self.spec, &table, &evidence.hasher, p, self.rules.significant_digits);
        }
        let rows = self.host.keys.len();
        self.cells = vec![Verdict::Pass; rows];
        self.suppressed = vec![false; rows];
        let (counted, joined) =
            (evidence::counted(self.spec).to_owned(), self.spec.join.as_ref().map(|j| dataset_of(&j.to).to_owned()));
        self.sketches = table
            .cells
            .values()
            .map(|c| {
                let mut sketches: Vec<(String, Sketch)> =
                    c.sketch.iter().map(|s| (counted.clone(), s.clone())).collect();
                if let (Some(other), Some(j)) = (&joined, &c.joined) {
                    sketches.push((other.clone(), j.sketch.clone()));
                }
                sketches
            })
            .collect();
        self.contributions = (table.cells.values())
            .map(|c| {
                let mut pairs: Vec<(String, Sketch)> =
                    c.magnitudes.iter().filter_map(|(column, m)| Some((column.clone(), m.pairs.clone()?))).collect();
                pairs.sort_by(|a, b| a.0.cmp(&b.0));
                pairs
            })
            .collect();
        self.evidence = table.cells.values().cloned().collect();
        self.size(combinations.max(rows as u64));
        self.consistency(1e-9, filled);
        let rules = self.rules.clone();
        let joined = self.spec.join.as_ref().map(|j| dataset_of(&j.to).to_owned());
        for (r, cell) in table.cells.values().enumerate() {
            let name = self.cell_name(r);
            if cell.units < rules.min_units {
                self.find(
                    Some(r),
                    None,
                    Rule::Threshold,
                    Verdict::Suppressed,
                    format!("[{name}] {} privacy units, fewer than {}", cell.units, rules.min_units),
                    format!("[{name}] 隐私单元数 {} 少于 {}", cell.units, rules.min_units),
                );
                continue;
            }
            // The joined dataset's units too: a cell of one employer's insured describes it.
            if let (Some(other), Some(j)) = (&joined, &cell.joined) {
                if j.units < rules.min_units {
                    self.find(
                        Some(r),
                        None,
                        Rule::Threshold,
                        Verdict::Suppressed,
                        format!("[{name}] {} privacy units of {other}, fewer than {}", j.units, rules.min_units),
                        format!("[{name}] {other} 的隐私单元数 {} 少于 {}", j.units, rules.min_units),
                    );
                    continue;
                }
                for (m, (largest, second)) in &j.contributions {
                    let total = cell.magnitudes.get(m).map_or(0.0, |x| x.total);
                    let by_other = Magnitude { total, largest: *largest, second: *second, ..Magnitude::default() };
                    let column = m.split_once('.').map_or(m.as_str(), |(_, c)| c).to_owned();
                    self.dominance(r, &format!("{column} ({other})"), &by_other);
                }
                // A count of many people of one firm is that firm's headcount.
                if let Some(count) = self.spec.measures.iter().find(|m| m.statistic == Statistic::Count) {
                    let (largest, second) = j.counts;
                    let by_other = Magnitude { total: cell.units as f64, largest, second, ..Magnitude::default() };
                    let name = format!("{} ({other})", count.name);
                    self.dominance(r, &name, &by_other);
                }
            }
            for (j, m) in self.spec.measures.iter().enumerate() {
                if m.statistic == Statistic::Count {
                    continue;
                }
                let magnitude = cell.magnitudes.get(&m.of).cloned().unwrap_or_default();
                let measure = m.name.clone();
                if magnitude.valued_units < rules.min_units {
                    self.withhold(
                        r,
                        j,
                        Rule::Threshold,
                        format!(
                            "[{name}] {measure} rests on the values of {} privacy units, fewer than {}",
                            magnitude.valued_units, rules.min_units
                        ),
                        format!(
                            "[{name}] {measure} 仅基于 {} 个隐私单元的取值，少于 {}",
                            magnitude.valued_units, rules.min_units
                        ),
                    );
                    continue;
                }
                match m.statistic {
                    Statistic::Sum | Statistic::Mean => self.dominance(r, &measure, &magnitude),
                    Statistic::Ratio => {
                        self.dominance(r, &measure, &magnitude);
                        let per = m.per.clone().unwrap_or_default();
                        let denominator = cell.magnitudes.get(&per).cloned().unwrap_or_default();
                        self.dominance(r, &format!("{measure} ({per})"), &denominator);
                        if denominator.total == 0.0 {
                            self.withhold(
                                r,
                                j,
                                Rule::Zero,
                                format!("[{name}] {measure}: the denominator {per} is zero"),
                                format!("[{name}] {measure}：分母 {per} 为零"),
                            );
                        }
                    }
                    // The k-th smallest of ten units is the largest one's value: an extreme
                    // leaves, like a quantile, only where k units stand beyond it on each side.
                    Statistic::Min | Statistic::Max
                        if self.host.released[j][r].is_none()
                            || !matches!((magnitude.kth_min, magnitude.kth_max), (Some(lo), Some(hi)) if lo <= hi) =>
                    {
                        let k = rules.min_units_extremes;
                        self.withhold(
                            r,
                            j,
                            Rule::Extremes,
                            format!("[{name}] {measure}: fewer than {k} privacy units stand beyond the k-th extreme on its other side"),
                            format!("[{name}] {measure}：第 k 个极值另一侧的隐私单元少于 {k} 个"),
                        );
                    }
                    Statistic::Quantile => self.quantile(r, j, &magnitude),
                    _ => {}
                }
                if magnitude.values > 0 && magnitude.nonzero == 0 {
                    self.find(
                        Some(r),
                        Some(&measure),
                        Rule::Zero,
                        Verdict::Review,
                        format!("[{name}] every value of {measure} in the cell is zero"),
                        format!("[{name}] 该单元格 {measure} 的取值全部为零"),
                    );
                }
            }
        }
        Ok(table)
    }

    /// A quantile leaves only where at least `min_units_extremes` units reach it from each side:
    /// between the k-th smallest of the units' smallest values and the k-th largest of their
    /// largest.
    fn quantile(&mut self, r: usize, j: usize, magnitude: &Magnitude) {
        let value = self.host.figures[j][r];
        let inside = match (value, magnitude.kth_min, magnitude.kth_max) {
            (Some(v), Some(lo), Some(hi)) => lo <= v && v <= hi,
            _ => false,
        };
        if !inside {
            let (name, measure, k) =
                (self.cell_name(r), self.spec.measures[j].name.clone(), self.rules.min_units_extremes);
            let (en, zh) = (
                format!(
                    "[{name}] {measure} = {value:?}: fewer than {k} privacy units stand at or beyond it on one side (k-th extremes {:?}, {:?})",
                    magnitude.kth_min, magnitude.kth_max
                ),
                format!("[{name}] {measure} = {value:?}：其一侧达到或超过该值的隐私单元少于 {k} 个"),
            );
            self.withhold(r, j, Rule::Extremes, en, zh);
        }
    }

    /// nk-dominance and p-ratio on a magnitude (sum, mean, ratio numerator and denominator).
    fn dominance(&mut self, r: usize, measure: &str, m: &Magnitude) {
        let name = self.cell_name(r);
        let rules = self.rules;
        if m.negatives > 0 {
            self.find(
                Some(r),
                Some(measure),
                Rule::NegativeValues,
                Verdict::Review,
                format!("[{name}] {} negative values: dominance cannot be judged", m.negatives),
                format!("[{name}] 存在 {} 个负值，无法判断支配性", m.negatives),
            );
            return;
        }
        if m.total <= 0.0 {
            return;
        }
        let top = if rules.dominance_n >= 2 { m.largest + m.second } else { m.largest };
        if top > rules.dominance_k * m.total {
            let share = 100.0 * top / m.total;
            self.find(
                Some(r),
                Some(measure),
                Rule::Dominance,
                Verdict::Suppressed,
                format!(
                    "[{name}] the {} largest contributors hold {share:.1}% of {measure}, more than {:.0}%",
                    rules.dominance_n,
                    100.0 * rules.dominance_k
                ),
                format!(
                    "[{name}] 最大的 {} 个贡献者占 {measure} 的 {share:.1}%，超过 {:.0}%",
                    rules.dominance_n,
                    100.0 * rules.dominance_k
                ),
            );
        }
        let rest = m.total - m.largest - m.second;
        if rest < rules.p_ratio * m.largest {
            self.find(
                Some(r),
                Some(measure),
                Rule::PRatio,
                Verdict::Suppressed,
                format!(
                    "[{name}] without its two largest contributors {measure} ({rest}) is less than {:.0}% of the largest ({})",
                    100.0 * rules.p_ratio,
                    m.largest
                ),
                format!(
                    "[{name}] 去掉最大的两个贡献者后，{measure} 的其余部分（{rest}）不足最大贡献者（{}）的 {:.0}%",
                    m.largest,
                    100.0 * rules.p_ratio
                ),
            );
        }
    }

    /// The module's table against the host's: every row it writes must be a host cell (or a
    /// zero cell the host has no rows for) with the host's figures. A row it leaves out is no
    /// claim: the policy views drop groups under their threshold before a module sees them.
    /// Any disagreement is a breach of the contract.
    /// `complete`: the host's table has every combination of the labels, so a row outside it is
    /// no honest zero but bytes of the module's choosing (and time spent reading them).
    fn consistency(&mut self, tolerance: f64, complete: bool) {
        let dims = self.spec.dimensions.len();
        let batch = &self.module.batch;
        let keys: Vec<Key> = match (0..dims).map(|i| text(batch.column(i))).collect::<Result<Vec<_>, _>>() {
            Ok(columns) => (0..batch.num_rows()).map(|r| columns.iter().map(|c| c[r].clone()).collect()).collect(),
            Err(e) => {
                self.disagree(format!("its dimensions cannot be read: {e}"), "其维度无法读取".to_owned());
                return;
            }
        };
        let declared: Vec<Vec<Option<f64>>> =
            match (0..self.spec.measures.len()).map(|j| numbers(batch.column(dims + j))).collect() {
                Ok(columns) => columns,
                Err(e) => {
                    self.disagree(format!("its measures cannot be read: {e}"), "其度量无法读取".to_owned());
                    return;
                }
            };
        let at: HashMap<Key, usize> = self.host.keys.iter().cloned().enumerate().map(|(r, k)| (k, r)).collect();
        let mut seen = BTreeSet::new();
        // Collected, then reported once each: one mistyped label would otherwise make a finding
        // of every row.
        let (mut twice, mut unknown, mut differ) = (Vec::new(), Vec::new(), Vec::new());
        if complete && keys.len() > self.host.keys.len() {
            self.disagree(
                format!("it writes {} rows; the contract's table has {}", keys.len(), self.host.keys.len()),
                format!("写出 {} 行，而契约的表只有 {} 行", keys.len(), self.host.keys.len()),
            );
            return;
        }
        for (r, key) in keys.iter().enumerate() {
            let name = label(key);
            if !seen.insert(key) {
                twice.push(name);
                continue;
            }
            let host_row = at.get(key).copied();
            if complete && host_row.is_none() {
                unknown.push(name);
                continue;
            }
            for (j, m) in self.spec.measures.iter().enumerate() {
                let Some(value) = declared[j][r] else { continue };
                let host = match host_row {
                    Some(h) => self.host.figures[j][h],
                    // A cell without rows: only a zero claims nothing.
                    None if value == 0.0 => continue,
                    None => {
                        unknown.push(name.clone());
                        break;
                    }
                };
                let tolerance = if m.statistic.is_model() || self.spec.model.is_some() { 1e-6 } else { tolerance };
                let fits = match host {
                    Some(h) if m.statistic == Statistic::Count || m.statistic == Statistic::ResidualDf => value == h,
                    Some(h) => agrees(value, h, tolerance),
                    None => false,
                };
                if !fits {
                    differ.push(format!("[{name}] {} declares {value} where the host computes {host:?}", m.name));
                }
            }
        }
        let few = |items: &[String]| items.iter().take(3).cloned().collect::<Vec<_>>().join("; ");
        if !twice.is_empty() {
            self.disagree(
                format!("{} cells are written twice: {}", twice.len(), few(&twice)),
                format!("{} 个单元格重复出现：{}", twice.len(), few(&twice)),
            );
        }
        if !unknown.is_empty() {
            self.disagree(
                format!(
                    "{} rows are cells the host's table does not have, e.g. {}: labels must be the contract's (a banding's labels, or values of the source column)",
                    unknown.len(),
                    few(&unknown)
                ),
                format!("{} 行不是主机表中的单元格，例如 {}：标签须与契约一致（分段标签或来源列的取值）", unknown.len(), few(&unknown)),
            );
        }
        if !differ.is_empty() {
            self.disagree(
                format!("{} figures disagree with the host's: {}", differ.len(), few(&differ)),
                format!("{} 个数值与主机计算值不一致：{}", differ.len(), few(&differ)),
            );
        }
    }

    fn disagree(&mut self, en: String, zh: String) {
        self.breach = true;
        let table = &self.spec.name;
        self.findings.push(CellFinding {
            row: None,
            column: None,
            rule: Rule::Inconsistent,
            verdict: Verdict::Fail,
            en: format!("the module's table {table}: {en}"),
            zh: format!("模块输出表 {table}：{zh}"),
        });
    }

    /// The size caps, on the table's `rows` (every combination of its labels).
    fn size(&mut self, rows: u64) {
        // What the released CSV would hold at most: every label and a number per measure.
        let bytes: u64 = self
            .host
            .keys
            .iter()
            .map(|k| k.iter().map(|v| v.as_ref().map_or(0, |s| s.len() as u64 + 1)).sum::<u64>())
            .sum::<u64>()
            .saturating_add(rows.saturating_mul(24).saturating_mul(self.spec.measures.len() as u64));
        if rows > self.rules.max_rows || bytes > self.rules.max_bytes {
            self.find(
                None,
                None,
                Rule::Size,
                Verdict::Fail,
                format!(
                    "{rows} cells, about {bytes} bytes: more than {} rows or {} bytes",
                    self.rules.max_rows, self.rules.max_bytes
                ),
                format!(
                    "{rows} 个单元格、约 {bytes} 字节，超过 {} 行或 {} 字节的上限",
                    self.rules.max_rows, self.rules.max_bytes
                ),
            );
        }
    }

    /// A model's table: the host fits the declared model on the contract's rows that have a
    /// response and every term, in the cross cells of its terms that hold at least
    /// [`VIEW_THRESHOLD`] units (those a module sees through the policy views), and releases its
    /// own coefficients. Every level, and the whole, must rest on `min_units` units with a
    /// response.
    pub(crate) async fn model(&mut self, evidence: &mut Evidence<'_>) -> Result<(), AuditError> {
        let spec = self.spec;
        let term_columns: Vec<String> =
            spec.dimensions.iter().flat_map(|d| d.terms.iter().flatten().cloned()).collect();
        let bare: Vec<String> =
            term_columns.iter().map(|t| t.split_once('.').map_or(t.as_str(), |(_, c)| c).to_owned()).collect();
        let response = spec
            .measures
            .iter()
            .find(|m| m.statistic == Statistic::Coefficient)
            .map(|m| m.of.clone())
            .ok_or_else(|| AuditError::Evidence("a model table without a coefficient".to_owned()))?;
        let cross = evidence.model(spec, &term_columns, &response).await?;
        let kept: Vec<_> = cross.into_iter().filter(|c| c.everyone >= VIEW_THRESHOLD).collect();
        let rules = self.rules.clone();
        let base = rules.rounding_base;
        let fit = match spec.model {
            Some(ModelKind::Logistic) => model::logistic(&kept, &bare, base),
            _ => model::ols(&kept, &bare, base),
        };
        let fit = match fit {
            Ok(fit) => fit,
            Err(problem) => {
                // Nothing to hold the module's figures to: nothing of the table leaves.
                self.find(None, None, Rule::ModelFit, Verdict::Fail, problem.en(), problem.zh());
                return Ok(());
            }
        };
        let behind = evidence.model_levels(spec, &term_columns, &response, VIEW_THRESHOLD).await?;
        let level = |t: &str| behind.levels.iter().find_map(|levels| levels.get(t));
        // The intercept is the reference combination's mean: the first term column's first
        // level stands for it in differencing.
        let reference = behind.levels.first().and_then(|levels| levels.values().next());
        let (counted, joined) =
            (evidence::counted(spec).to_owned(), spec.join.as_ref().map(|j| dataset_of(&j.to).to_owned()));
        let sketches_of = |l: Option<&evidence::Level>| -> Vec<(String, Sketch)> {
            let Some(l) = l else { return Vec::new() };
            let mut sketches = vec![(counted.clone(), l.units.clone())];
            if let (Some(other), Some((sketch, _, _))) = (&joined, &l.joined) {
                sketches.push((other.clone(), sketch.clone()));
            }
            sketches
        };
        let units: Vec<u64> = fit
            .terms
            .iter()
            .map(|t| if t == "intercept" { behind.units.size } else { level(t).map_or(0, |l| l.units.size) })
            .collect();
        self.host = host_model(spec, &fit, &units, &rules);
        self.cells = vec![Verdict::Pass; fit.terms.len()];
        self.suppressed = vec![false; fit.terms.len()];
        self.sketches = fit
            .terms
            .iter()
            .map(|t| if t == "intercept" { sketches_of(reference) } else { sketches_of(level(t)) })
            .collect();
        self.consistency(1e-6, true);
        if behind.units.size < rules.min_units {
            let all = behind.units.size;
            self.find(
                None,
                None,
                Rule::Threshold,
                Verdict::Fail,
                format!("the model rests on {all} privacy units, fewer than {}", rules.min_units),
                format!("模型仅基于 {all} 个隐私单元，少于 {}", rules.min_units),
            );
        }
        // A level's coefficient is its group's mean against the reference, and where the kept
        // combinations of levels form a tree a coefficient is one combination's mean: every
        // level and every combination is judged as a cell — its units with a response (and a
        // joined dataset's), dominance, negatives — and one that would be withheld as a cell
        // fails the model.
        let all_levels: Vec<(String, evidence::Level)> =
            (behind.levels.iter().flatten()).chain(&behind.combinations).map(|(n, l)| (n.clone(), l.clone())).collect();
        for (name, l) in &all_levels {
            let mut units = vec![(counted.clone(), l.units.size)];
            if let (Some(other), Some((sketch, _, _))) = (&joined, &l.joined) {
                units.push((other.clone(), sketch.size));
            }
            for (dataset, n) in units {
                if n < rules.min_units {
                    self.find(
                        None,
                        None,
                        Rule::Threshold,
                        Verdict::Fail,
                        format!("level {name} rests on {n} privacy units of {dataset}, fewer than {}", rules.min_units),
                        format!("水平 {name} 仅基于 {dataset} 的 {n} 个隐私单元，少于 {}", rules.min_units),
                    );
                }
            }
            if l.negatives > 0 {
                self.find(
                    None,
                    None,
                    Rule::NegativeValues,
                    Verdict::Review,
                    format!("level {name}: {} negative responses, dominance cannot be judged", l.negatives),
                    format!("水平 {name}：存在 {} 个负值，无法判断支配性", l.negatives),
                );
                continue;
            }
            let mut contributions = vec![(counted.clone(), l.largest, l.second)];
            if let (Some(other), Some((_, largest, second))) = (&joined, &l.joined) {
                contributions.push((other.clone(), *largest, *second));
            }
            for (dataset, largest, second) in contributions {
                let top = if rules.dominance_n >= 2 { largest + second } else { largest };
                let dominated = l.total > 0.0
                    && (top > rules.dominance_k * l.total || l.total - largest - second < rules.p_ratio * largest);
                if dominated {
                    self.find(
                        None,
                        None,
                        Rule::Dominance,
                        Verdict::Fail,
                        format!(
                            "level {name}: a few units of {dataset} hold {:.1}% of the response",
                            100.0 * top / l.total
                        ),
                        format!("水平 {name}：{dataset} 的少数单位占响应合计的 {:.1}%", 100.0 * top / l.total),
                    );
                }
            }
        }
        if fit.residual_df < rules.min_residual_df {
            self.find(
                None,
                None,
                Rule::ModelDf,
                Verdict::Fail,
                format!("{} residual degrees of freedom, fewer than {}", fit.residual_df, rules.min_residual_df),
                format!("残差自由度 {} 少于 {}", fit.residual_df, rules.min_residual_df),
            );
        }
        Ok(())
    }

    /// Identifiers in the released labels, and values of sensitive columns. Labels a manifest
    /// wrote (a banding's) are checked for identifiers' shapes only: looking them up in the data
    /// would tell the operator whether a value of its choosing is some person's.
    pub(crate) async fn texts(&mut self, evidence: &mut Evidence<'_>, sensitive: &[String]) -> Result<(), AuditError> {
        let names: Vec<String> = self.spec.dimensions.iter().map(|d| d.name.clone()).collect();
        let written: Vec<bool> = self
            .spec
            .dimensions
            .iter()
            .map(|d| matches!(d.banding, Some(Banding::Bins { .. } | Banding::Age { .. })))
            .collect();
        let mut strings: BTreeSet<String> = BTreeSet::new();
        let mut where_found: Vec<(usize, String, String)> = Vec::new();
        let keys = self.host.keys.clone();
        for (r, key) in keys.iter().enumerate() {
            for ((name, value), written) in names.iter().zip(key).zip(&written) {
                let Some(value) = value else { continue };
                if let Some(kind) = identifiers::find(value) {
                    self.identifier(r, name, kind);
                }
                if *written {
                    continue;
                }
                strings.insert(value.clone());
                // A model's term is `column=value`: the value too.
                if let Some((_, x)) = value.split_once('=') {
                    strings.insert(x.to_owned());
                }
                where_found.push((r, name.clone(), value.clone()));
            }
            let texts: Vec<&str> = key.iter().flatten().map(String::as_str).collect();
            if texts.len() > 1
                && let Some(kind) = identifiers::find_across(&texts)
                && texts.iter().all(|t| identifiers::find(t).is_none())
            {
                self.identifier(r, &names.join("+"), kind);
            }
        }
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
                        format!("{name} = {value:?} is a value of {source}, a column that may not be shown"),
                        format!("{name} 含有不得展示的列 {source} 的值"),
                    );
                }
            }
        }
        Ok(())
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

    /// The figures differential privacy releases for this table, or findings that it cannot:
    /// only counts, and sums under a `sum_bound`, can be noised.
    pub(crate) async fn dp(
        &mut self,
        evidence: &mut Evidence<'_>,
        settings: &DpSettings,
    ) -> Result<Option<crate::DpTable>, AuditError> {
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
        if self.spec.model.is_some() {
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
        let spread = (evidence.max_cells_per_unit(self.spec).await?.max(1) as f64).sqrt();
        let mut values = Vec::new();
        let mut sensitivity = Vec::new();
        for m in &self.spec.measures {
            let column: Vec<i64> = self
                .host
                .keys
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
        Ok(Some(crate::DpTable { dataset: evidence::counted(self.spec).to_owned(), values, sensitivity }))
    }

    /// Suppresses the rows whose units — of the counted dataset, and of a joined dataset or a
    /// model level's — differ from an earlier released cell's, or another row's of this audit,
    /// by fewer than the threshold; returns the cells that still pass.
    pub(crate) fn differencing(
        &mut self,
        label: &str,
        earlier: &[ReleasedCell],
        this_run: &[ReleasedCell],
    ) -> Vec<(usize, ReleasedCell)> {
        let limit = (self.rules.min_units as usize).saturating_sub(1).min(differencing::MAX_DIFFERENCE);
        // A unit whose total differs is two pairs apart: one gone, one new.
        let pair_limit = (2 * self.rules.min_units as usize).saturating_sub(1).min(differencing::MAX_DIFFERENCE);
        // Only cells whose sizes differ by at most `limit` can be that close: index by size.
        let mut known: BTreeMap<(&str, u64), Vec<&ReleasedCell>> = BTreeMap::new();
        for cell in earlier.iter().chain(this_run) {
            known.entry((cell.dataset.as_str(), cell.sketch.size)).or_default().push(cell);
        }
        let mut passed: Vec<(usize, ReleasedCell)> = Vec::new();
        for r in 0..self.host.keys.len() {
            // Cells held for review may leave later: they are compared and kept too.
            if !matches!(self.cells[r], Verdict::Pass | Verdict::Review) || self.sketches[r].is_empty() {
                continue;
            }
            let sketches = self.sketches[r].clone();
            let counted = evidence::counted(self.spec);
            let mine = self.contributions.get(r).cloned().unwrap_or_default();
            let close = sketches.iter().find_map(|(dataset, sketch)| {
                let sizes = sketch.size.saturating_sub(limit as u64)..=sketch.size.saturating_add(limit as u64);
                // A model's levels are not compared with each other: one term column's levels
                // share their units across the other columns' levels (the same households in
                // every month), and no level's total leaves (its n does not).
                let model = self.spec.model.is_some();
                let this = (passed.iter().map(|(_, c)| c))
                    .filter(|c| !model && c.dataset == *dataset && sizes.contains(&c.sketch.size));
                known
                    .range((dataset.as_str(), *sizes.start())..=(dataset.as_str(), *sizes.end()))
                    .flat_map(|(_, cells)| cells.iter().copied())
                    .chain(this)
                    .find_map(|c| {
                        let d = sketch.difference(&c.sketch, limit)?;
                        if d > 0 {
                            return Some(Close {
                                other: c.label.clone(),
                                dataset: dataset.clone(),
                                units: d,
                                column: None,
                            });
                        }
                        // The same units: their totals must not differ in a few of them either
                        // (one row of one unit filtered out of a sum), each counted twice.
                        if dataset != counted {
                            return None;
                        }
                        mine.iter().find_map(|(column, pairs)| {
                            let (_, theirs) = c.contributions.iter().find(|(x, _)| x == column)?;
                            let changed = pairs.difference(theirs, pair_limit)?;
                            (changed > 0).then(|| Close {
                                other: c.label.clone(),
                                dataset: dataset.clone(),
                                units: changed.div_ceil(2),
                                column: Some(column.clone()),
                            })
                        })
                    })
            });
            let magnitudes: Vec<(String, [f64; 3])> = self.evidence.get(r).map_or_else(Vec::new, |c| {
                let mut m: Vec<(String, [f64; 3])> =
                    c.magnitudes.iter().map(|(column, m)| (column.clone(), [m.total, m.largest, m.second])).collect();
                m.sort_by(|a, b| a.0.cmp(&b.0));
                m
            });
            // Cells that hold all of another's units (but a few) and ten to 48 more: their
            // difference is a cell of its own, which must not be dominated. Noted, and judged once secondary
            // suppression has run: a margin it recomputes no longer gives the difference.
            let dominated = close.is_none().then(|| {
                let (_, sketch) = sketches.iter().find(|(d, _)| d == counted)?;
                if magnitudes.is_empty() || self.spec.model.is_some() {
                    return None;
                }
                let lo = sketch.size.saturating_sub(differencing::MAX_DIFFERENCE as u64);
                let hi = sketch.size.saturating_add(differencing::MAX_DIFFERENCE as u64);
                let this = (passed.iter().map(|(_, c)| c)).filter(|c| c.dataset == counted);
                known
                    .range((counted, lo)..=(counted, hi))
                    .flat_map(|(_, cells)| cells.iter().copied())
                    .chain(this)
                    .filter(|c| !c.magnitudes.is_empty())
                    .find_map(|c| {
                        let (bigger, smaller, mine_bigger) = if sketch.size > c.sketch.size {
                            (sketch, &c.sketch, true)
                        } else {
                            (&c.sketch, sketch, false)
                        };
                        // All of the smaller's units but a few negligible ones (fewer than a
                        // cell needs) do not step around it.
                        let lacking = (self.rules.min_units as usize).saturating_sub(1);
                        let (extra, _) = bigger.holds_all_but(smaller, lacking)?;
                        magnitudes.iter().find_map(|(column, own)| {
                            let (_, theirs) = c.magnitudes.iter().find(|(x, _)| x == column)?;
                            let (big, small) = if mine_bigger { (own, theirs) } else { (theirs, own) };
                            // The bigger cell's contributions above the smaller's largest are not
                            // in the smaller: they are in the difference.
                            let outside: Vec<f64> = [big[1], big[2]].into_iter().filter(|&x| x > small[1]).collect();
                            let top: f64 = outside.iter().take(self.rules.dominance_n.max(1)).sum();
                            let total = big[0] - small[0];
                            (total > 0.0 && top > self.rules.dominance_k * total).then(|| Dominated {
                                row: r,
                                column: column.clone(),
                                other: c.label.clone(),
                                units: extra,
                            })
                        })
                    })
            });
            self.dominated.extend(dominated.flatten());
            let cell = self.cell_name(r);
            if let Some(Close { other, dataset, units: d, column }) = close {
                let k = self.rules.min_units;
                // A model's coefficients hang together (each against the reference): one left
                // out would come back from the others, so the whole model is withheld.
                let verdict = if self.spec.model.is_some() { Verdict::Fail } else { Verdict::Suppressed };
                let (en, zh) = match column {
                    None => (
                        format!(
                            "[{cell}] its privacy units of {dataset} differ from those of {other} by {d}, fewer than {k}: subtracting one cell from the other would reveal them"
                        ),
                        format!(
                            "[{cell}] 其 {dataset} 隐私单元与 {other} 仅相差 {d} 个，少于 {k}：两者相减即可推出这些单位"
                        ),
                    ),
                    Some(column) => (
                        format!(
                            "[{cell}] the same privacy units as {other}, but {d} of them, fewer than {k}, contribute differently to {column}: subtracting one cell from the other would reveal their rows"
                        ),
                        format!(
                            "[{cell}] 与 {other} 的隐私单元相同，但其中 {d} 个（少于 {k}）对 {column} 的取值不同：两者相减即可推出这些单位的记录"
                        ),
                    ),
                };
                self.find(Some(r), None, Rule::Differencing, verdict, en, zh);
                continue;
            }
            for (dataset, sketch) in sketches {
                let contributions = if dataset == counted { mine.clone() } else { Vec::new() };
                let magnitudes = if dataset == counted { magnitudes.clone() } else { Vec::new() };
                passed.push((
                    r,
                    ReleasedCell { dataset, label: format!("{label} [{cell}]"), sketch, contributions, magnitudes },
                ));
            }
        }
        passed
    }
}

/// A cell that, with an earlier one it holds or that holds it, differs by a few units whose
/// values of `column` a few of them dominate.
#[derive(Debug, Clone)]
pub(crate) struct Dominated {
    pub(crate) row: usize,
    pub(crate) column: String,
    pub(crate) other: String,
    pub(crate) units: usize,
}

/// A released cell too close to one of the table's.
struct Close {
    other: String,
    dataset: String,
    /// How many units differ: in or out of the cell, or (`column`) in their totals of it.
    units: usize,
    column: Option<String>,
}

/// Adds to `table` every combination of `domains` it does not have, as an empty cell.
fn fill(table: &mut TableEvidence, domains: &[BTreeSet<Option<String>>]) {
    let mut keys: Vec<Key> = vec![Vec::new()];
    for domain in domains {
        keys =
            keys.into_iter().flat_map(|k| domain.iter().map(move |v| [k.clone(), vec![v.clone()]].concat())).collect();
    }
    for key in keys {
        table.cells.entry(key).or_default();
    }
}

/// A cell's labels as the internal report names it.
pub(crate) fn label(key: &Key) -> String {
    key.iter().map(|v| v.as_deref().unwrap_or("NULL")).collect::<Vec<_>>().join(", ")
}

/// The host's table of cells: each measure's true figure and the figure it would release.
fn host_cells(spec: &OutputSpec, table: &TableEvidence, rules: &Rules) -> HostTable {
    let base = rules.rounding_base as i64;
    let digits = rules.significant_digits;
    let mut host = HostTable {
        keys: table.cells.keys().cloned().collect(),
        units: table.cells.values().map(|c| c.units).collect(),
        ..HostTable::default()
    };
    for m in &spec.measures {
        let mut figures = Vec::new();
        let mut released = Vec::new();
        for cell in table.cells.values() {
            let magnitude = cell.magnitudes.get(&m.of).cloned().unwrap_or_default();
            let (figure, leaves) = match m.statistic {
                Statistic::Count => (Some(cell.units as f64), Some(round_to(cell.units as i64, base) as f64)),
                Statistic::Sum => (Some(magnitude.total), Some(round_sig(magnitude.total, digits))),
                Statistic::Mean => {
                    let mean = (magnitude.values > 0).then(|| magnitude.total / magnitude.values as f64);
                    // From the released sum and the rounded number of values: the sum divided by
                    // the mean gives back only a rounded count.
                    let values = round_to(magnitude.values as i64, base);
                    let leaves =
                        (values > 0).then(|| round_sig(round_sig(magnitude.total, digits) / values as f64, digits));
                    (mean, leaves)
                }
                Statistic::Ratio => {
                    let per = m.per.as_deref().and_then(|p| cell.magnitudes.get(p)).map_or(0.0, |d| d.total);
                    let ratio = (per != 0.0).then(|| magnitude.total / per);
                    (ratio, ratio.map(|x| round_sig(x, digits)))
                }
                Statistic::Min => (magnitude.min, magnitude.kth_min.map(|x| round_sig(x, digits))),
                Statistic::Max => (magnitude.max, magnitude.kth_max.map(|x| round_sig(x, digits))),
                Statistic::Quantile => {
                    let at = m.quantile.and_then(|q| quantiles_of(spec, &m.of).iter().position(|x| *x == q));
                    let value = at.and_then(|i| magnitude.quantiles.get(i).copied().flatten());
                    (value, value.map(|x| round_sig(x, digits)))
                }
                // Model statistics belong to model tables (the manifest check).
                Statistic::Coefficient | Statistic::StdError | Statistic::ResidualDf => (None, None),
            };
            figures.push(figure);
            released.push(leaves);
        }
        host.figures.push(figures);
        host.released.push(released);
    }
    host
}

/// The cell key method on the figures `host` would release: counts perturbed by the ptable with
/// the key of the cell's units, sums by the magnitude variant with the key of its (unit, total)
/// pairs, means and ratios from the perturbed sums and counts; no rounding besides significant
/// digits. Extremes and quantiles keep their own rules. Empty cells stay empty.
fn perturb(
    host: &mut HostTable,
    spec: &OutputSpec,
    table: &TableEvidence,
    hasher: &differencing::UnitHasher,
    settings: &crate::Perturbation,
    digits: u32,
) {
    let ptable = settings.table();
    for (r, cell) in table.cells.values().enumerate() {
        let Some(units) = &cell.sketch else { continue };
        let n = ptable.count(cell.units as i64, hasher.cell_key("count", units)) as f64;
        let total = |column: &str| -> f64 {
            let Some(m) = cell.magnitudes.get(column) else { return 0.0 };
            // The key of the sum's two largest contributions: units that add little (or nothing)
            // do not redraw it, so asking with them many ways averages nothing away.
            let key = hasher.key_of(&format!("sum {column}"), &[m.largest.to_bits(), m.second.to_bits()]);
            let largest = m.largest.abs().max(m.min.map_or(0.0, f64::abs));
            ptable.total(m.total, largest, settings.magnitude, key)
        };
        for (j, m) in spec.measures.iter().enumerate() {
            let value = match m.statistic {
                Statistic::Count => Some(n),
                Statistic::Sum => Some(round_sig(total(&m.of), digits)),
                Statistic::Mean => (n > 0.0).then(|| round_sig(round_sig(total(&m.of), digits) / n, digits)),
                Statistic::Ratio => {
                    let per = m.per.as_deref().map_or(0.0, total);
                    (per != 0.0).then(|| round_sig(total(&m.of) / per, digits))
                }
                _ => continue,
            };
            host.released[j][r] = value;
        }
    }
}

/// The host's model table: one row per term.
fn host_model(spec: &OutputSpec, fit: &Fit, units: &[u64], rules: &Rules) -> HostTable {
    let base = rules.rounding_base as i64;
    let digits = rules.significant_digits;
    let p = fit.terms.len() as i64;
    let n = round_to(fit.n as i64, base);
    let mut host = HostTable {
        keys: fit.terms.iter().map(|t| vec![Some(t.clone())]).collect(),
        units: units.to_vec(),
        ..HostTable::default()
    };
    for m in &spec.measures {
        let (figures, released): (Vec<_>, Vec<_>) = (0..fit.terms.len())
            .map(|t| match m.statistic {
                Statistic::Coefficient => {
                    let b = fit.coefficients[t];
                    (Some(b), Some(round_sig(b, digits)))
                }
                Statistic::StdError => (fit.std_errors[t], fit.released_std_errors[t].map(|s| round_sig(s, digits))),
                Statistic::Count => (Some(fit.n as f64), Some(n as f64)),
                // From the rounded n: the exact n does not come back as df + p.
                Statistic::ResidualDf => (Some(fit.residual_df as f64), Some((n - p) as f64)),
                _ => (None, None),
            })
            .unzip();
        host.figures.push(figures);
        host.released.push(released);
    }
    host
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
    fn figures_round_to_significant_digits() {
        assert_eq!(round_sig(1101.12, 4), 1101.0);
        assert_eq!(round_sig(12_345_678.9, 4), 12_350_000.0);
        assert_eq!(round_sig(0.000_123_456, 3), 0.000_123);
        assert_eq!(round_sig(-98_765.0, 2), -99_000.0);
        assert_eq!(round_sig(0.0, 4), 0.0);
        // The shortest decimal of the result has at most the digits asked for.
        assert_eq!(round_sig(2.0 / 3.0, 4).to_string(), "0.6667");
    }
}
