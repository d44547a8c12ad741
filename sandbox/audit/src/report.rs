//! The audit's two reports, each as JSON for machines and text in Chinese and English.
//!
//! The internal report ([`AuditReport`]) keeps every figure — each cell's privacy units, the
//! host's figures, what would be released, shares and values in the findings — for the
//! bureau's reviewers and administrators. It never leaves the domain, and its name in the log
//! is a keyed digest ([`AuditReport::id`]), not a hash anyone could test guessed figures
//! against.
//!
//! The released report ([`ReleasedReport`]) is what the operator of a production run and the
//! application unit read, and what a release signs: per table its outcome, and per cell of a
//! released table its position, the rule and the advice. It holds no count, value, share or
//! row count of anything that does not leave: a table that does not leave is named with the
//! rules that kept it in, nothing more.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;
use sha2::{Digest, Sha256};

use sandbox_contract::RunRecord;
use sandbox_contract::manifest::OutputSpec;

use crate::judge::{HostTable, label};
use crate::{Rule, Rules, UnitHasher, Verdict};

/// One finding: a rule that decided a cell (or one measure of it), or a whole table when
/// `row` is empty. Its text may hold figures: internal only.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CellFinding {
    pub row: Option<usize>,
    pub column: Option<String>,
    pub rule: Rule,
    pub verdict: Verdict,
    pub en: String,
    pub zh: String,
}

/// One host cell, with every figure: internal only.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CellFigures {
    /// The cell's labels (a model's: its term).
    pub key: Vec<Option<String>>,
    pub units: u64,
    /// Per measure: the host's true figure.
    pub figures: Vec<Option<f64>>,
    /// Per measure: what leaves (blank: withheld).
    pub released: Vec<Option<f64>>,
    pub verdict: Verdict,
}

/// One output table's audit, internal.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TableReport {
    pub name: String,
    pub outcome: Verdict,
    /// The host's cells (or a model's terms).
    pub rows: usize,
    pub suppressed_cells: usize,
    /// The rules as applied to this table (the policy's strictest for its datasets).
    pub rules: Rules,
    pub findings: Vec<CellFinding>,
    pub cells: Vec<CellFigures>,
}

impl TableReport {
    pub(crate) fn new(
        spec: &OutputSpec,
        outcome: Verdict,
        rules: Rules,
        findings: Vec<CellFinding>,
        host: &HostTable,
        verdicts: &[Verdict],
        overrides: &HashMap<(usize, usize), Option<f64>>,
    ) -> TableReport {
        let cells = (0..host.keys.len())
            .map(|r| CellFigures {
                key: host.keys[r].clone(),
                units: host.units[r],
                figures: host.figures.iter().map(|m| m[r]).collect(),
                released: (0..spec.measures.len())
                    .map(|j| {
                        let leaves = outcome <= Verdict::Suppressed && verdicts[r] == Verdict::Pass;
                        leaves.then(|| overrides.get(&(j, r)).copied().unwrap_or(host.released[j][r])).flatten()
                    })
                    .collect(),
                verdict: verdicts[r],
            })
            .collect();
        TableReport {
            name: spec.name.clone(),
            outcome,
            rows: host.keys.len(),
            suppressed_cells: verdicts.iter().filter(|v| **v == Verdict::Suppressed).count(),
            rules,
            findings,
            cells,
        }
    }
}

/// The audit of one run, with every figure: inside the domain only.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditReport {
    pub version: u32,
    pub module_sha256: String,
    pub manifest_sha256: String,
    pub parameters: Vec<(String, String)>,
    pub policy_sha256: String,
    /// The worst table outcome.
    pub outcome: Verdict,
    /// The module's declared values disagree with the host's somewhere: the run fails.
    pub breach: bool,
    pub tables: Vec<TableReport>,
}

impl AuditReport {
    pub(crate) fn new(
        record: &RunRecord,
        policy_sha256: String,
        breach: bool,
        tables: Vec<TableReport>,
    ) -> AuditReport {
        AuditReport {
            version: 2,
            module_sha256: record.module_sha256.clone(),
            manifest_sha256: record.manifest_sha256.clone(),
            parameters: record.parameters.clone(),
            policy_sha256,
            outcome: tables.iter().map(|t| t.outcome).max().unwrap_or(Verdict::Pass),
            breach,
            tables,
        }
    }

    /// The canonical JSON bytes: what is kept with the run.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The report's name: HMAC-SHA-256 of its JSON under the audit's key (hex). Reviewers
    /// approve a report by it; the log may show it to anyone.
    pub fn id(&self, key: &UnitHasher) -> String {
        key.digest("sandbox.audit/internal-report", &self.to_json())
    }

    /// The report as text, each line in Chinese and English, with every figure.
    pub fn text(&self, key: &UnitHasher) -> String {
        let mut out = String::new();
        out += &format!("出域审核报告（内部）/ Output audit report (internal)  {}\n", self.id(key));
        out += "本报告含有未出域的数据，仅限审核人员和管理员阅读 / holds figures that do not leave: reviewers and administrators only\n";
        out += &format!(
            "模块 / module {}  审核策略 / policy {}\n",
            short(&self.module_sha256),
            short(&self.policy_sha256)
        );
        out += &format!("结论 / outcome: {} / {}\n", self.outcome.zh(), verdict_en(self.outcome));
        if self.breach {
            out +=
                "违约 / breach: 模块声明值与主机计算值不一致 / the module's declared values disagree with the host's\n";
        }
        for table in &self.tables {
            out += &format!(
                "\n表 / table {}: {} / {}  ({} 行 rows, {} 个单元格被抑制 cells suppressed)\n",
                table.name,
                table.outcome.zh(),
                verdict_en(table.outcome),
                table.rows,
                table.suppressed_cells
            );
            for f in &table.findings {
                let place = match (f.row, &f.column) {
                    (Some(r), Some(c)) => format!("第 {r} 行 {c} / row {r} {c}"),
                    (Some(r), None) => format!("第 {r} 行 / row {r}"),
                    (None, _) => "整表 / table".to_owned(),
                };
                out += &format!("  [{}] {} — {}: {} / {}\n", f.rule.as_str(), place, f.verdict.zh(), f.zh, f.en);
            }
            for (r, cell) in table.cells.iter().enumerate() {
                let figures: Vec<String> = cell
                    .figures
                    .iter()
                    .zip(&cell.released)
                    .map(|(f, l)| format!("{} → {}", number(*f), number(*l)))
                    .collect();
                out += &format!(
                    "  {r}. [{}] {} units; {}; {}\n",
                    label(&cell.key),
                    cell.units,
                    figures.join("; "),
                    cell.verdict.as_str()
                );
            }
        }
        out
    }
}

fn number(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// A finding as it leaves: where, which rule, and its meaning in words without figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReleasedFinding {
    /// The row of the released table, for a table that leaves; none for a table-wide rule.
    pub row: Option<usize>,
    pub column: Option<String>,
    pub rule: Rule,
    pub verdict: Verdict,
    pub en: String,
    pub zh: String,
}

/// One table, as the released report tells it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReleasedTableReport {
    pub name: String,
    pub outcome: Verdict,
    /// The policy's rules for the table: public parameters, not figures.
    pub rules: Rules,
    pub findings: Vec<ReleasedFinding>,
}

/// What leaves with a run: outcomes, rules and advice; no figure of anything withheld.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReleasedReport {
    pub version: u32,
    pub module_sha256: String,
    pub manifest_sha256: String,
    pub parameters: Vec<(String, String)>,
    pub policy_sha256: String,
    pub outcome: Verdict,
    pub tables: Vec<ReleasedTableReport>,
}

impl ReleasedReport {
    /// The released form of an internal report.
    pub fn of(report: &AuditReport) -> ReleasedReport {
        let tables = report
            .tables
            .iter()
            .map(|t| {
                let leaves = t.outcome <= Verdict::Suppressed;
                // One line per place and rule; a table that does not leave has no places.
                let mut seen: BTreeMap<(Option<usize>, Option<String>, Rule), Verdict> = BTreeMap::new();
                for f in &t.findings {
                    let place = if leaves { (f.row, f.column.clone()) } else { (None, None) };
                    let verdict = seen.entry((place.0, place.1, f.rule)).or_insert(f.verdict);
                    *verdict = (*verdict).max(f.verdict);
                }
                let findings = seen
                    .into_iter()
                    .map(|((row, column, rule), verdict)| {
                        let (en, zh) = meaning(rule, verdict, &t.rules);
                        ReleasedFinding { row, column, rule, verdict, en, zh }
                    })
                    .collect();
                ReleasedTableReport { name: t.name.clone(), outcome: t.outcome, rules: t.rules.clone(), findings }
            })
            .collect();
        ReleasedReport {
            version: 2,
            module_sha256: report.module_sha256.clone(),
            manifest_sha256: report.manifest_sha256.clone(),
            parameters: report.parameters.clone(),
            policy_sha256: report.policy_sha256.clone(),
            outcome: report.outcome,
            tables,
        }
    }

    /// The canonical JSON bytes: what a release bundle holds and its statement signs.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn sha256(&self) -> String {
        hex::encode(Sha256::digest(self.to_json()))
    }

    /// The report as text, each line in Chinese and English.
    pub fn text(&self) -> String {
        let mut out = String::new();
        out += &format!("出域审核报告 / Output audit report  (SHA-256 {})\n", self.sha256());
        out += &format!(
            "模块 / module {}  审核策略 / policy {}\n",
            short(&self.module_sha256),
            short(&self.policy_sha256)
        );
        out += &format!("结论 / outcome: {} / {}\n", self.outcome.zh(), verdict_en(self.outcome));
        for table in &self.tables {
            out += &format!("\n表 / table {}: {} / {}\n", table.name, table.outcome.zh(), verdict_en(table.outcome));
            if let Some(p) = &table.rules.perturbation {
                out += &format!(
                    "  计数与合计经单元格键值扰动（最大偏差 {d}，方差 {v}，不发布小于 {js} 的正计数，合计最多偏移最大贡献的 {m}）/ counts and sums perturbed by the cell key method (maximum deviation {d}, variance {v}, no positive count below {js}, sums moved by at most {m} of their largest contribution)\n",
                    d = p.max_deviation,
                    v = p.variance,
                    js = p.js,
                    m = p.magnitude,
                );
            }
            for f in &table.findings {
                let place = match (f.row, &f.column) {
                    (Some(r), Some(c)) => format!("第 {r} 行 {c} / row {r} {c}"),
                    (Some(r), None) => format!("第 {r} 行 / row {r}"),
                    (None, _) => "整表 / table".to_owned(),
                };
                out += &format!("  [{}] {} — {}: {} / {}\n", f.rule.as_str(), place, f.verdict.zh(), f.zh, f.en);
            }
            let rules: BTreeSet<(Verdict, Rule)> =
                table.findings.iter().filter(|f| f.verdict > Verdict::Pass).map(|f| (f.verdict, f.rule)).collect();
            if let Some((_, rule)) = rules.last() {
                out += &format!("  建议 / what to change: {}\n", advice(*rule));
            }
        }
        out
    }
}

/// What a rule's finding means, in words that hold no figure of the data (policy parameters
/// are public).
fn meaning(rule: Rule, verdict: Verdict, rules: &Rules) -> (String, String) {
    let (en, zh): (String, String) = match rule {
        Rule::Threshold => (
            format!("fewer privacy units than the threshold ({})", rules.min_units),
            format!("隐私单元数少于阈值（{}）", rules.min_units),
        ),
        Rule::Dominance => (
            format!(
                "its {} largest contributors hold more than {:.0}% of the value",
                rules.dominance_n,
                100.0 * rules.dominance_k
            ),
            format!("最大的 {} 个贡献者占比超过 {:.0}%", rules.dominance_n, 100.0 * rules.dominance_k),
        ),
        Rule::PRatio => (
            "its largest contributor could be estimated too closely (p-ratio)".to_owned(),
            "最大贡献者可被过于精确地估计（p 比例规则）".to_owned(),
        ),
        Rule::Zero => ("zero values: a zero denominator, or every value zero".to_owned(), "零值：分母为零或取值全为零".to_owned()),
        Rule::NegativeValues => {
            ("negative contributions: a reviewer decides".to_owned(), "存在负值贡献：由审核人员决定".to_owned())
        }
        Rule::Extremes => (
            format!("fewer than {} privacy units reach the value from one side", rules.min_units_extremes),
            format!("从一侧达到该值的隐私单元少于 {} 个", rules.min_units_extremes),
        ),
        Rule::ModelDf => (
            format!("fewer residual degrees of freedom than {}", rules.min_residual_df),
            format!("残差自由度少于 {}", rules.min_residual_df),
        ),
        Rule::ModelFit => {
            ("the host cannot fit the declared model on this data".to_owned(), "主机无法在该数据上拟合所声明的模型".to_owned())
        }
        Rule::Identifier | Rule::Membership => (
            "a label resembles an identifier or a value of a column that may not be shown".to_owned(),
            "标签疑似标识符或不得展示的列的值".to_owned(),
        ),
        Rule::Inconsistent => (
            "the module's declared values disagree with the host's: the run fails, and it is recorded as a breach of the contract"
                .to_owned(),
            "模块声明值与主机计算值不一致：本次运行不通过，并记为违约".to_owned(),
        ),
        Rule::Size => (
            format!("the table is larger than allowed ({} rows, {} bytes)", rules.max_rows, rules.max_bytes),
            format!("输出表超出大小上限（{} 行，{} 字节）", rules.max_rows, rules.max_bytes),
        ),
        Rule::Differencing => (
            "its privacy units differ from those of a cell released earlier by fewer than the threshold".to_owned(),
            "其隐私单元与此前已发布的单元格相差少于阈值".to_owned(),
        ),
        Rule::SecondarySuppression if verdict == Verdict::Pass => (
            "recomputed from the released cells of a more detailed table".to_owned(),
            "按更细表中已发布的单元格重新计算".to_owned(),
        ),
        Rule::SecondarySuppression => {
            ("every cell it adds up is suppressed".to_owned(), "其所汇总的单元格全部被抑制".to_owned())
        }
        Rule::DifferentialPrivacy if verdict == Verdict::Pass => (
            "the host's figure plus noise (differential privacy)".to_owned(),
            "主机自算值加噪声（差分隐私）".to_owned(),
        ),
        Rule::DifferentialPrivacy => (
            "under differential privacy only counts, and sums under a bound, are released".to_owned(),
            "差分隐私下只发布计数，以及设有上界的求和".to_owned(),
        ),
        Rule::ManualReview => (
            "the audit policy holds every table of this data for two reviewers".to_owned(),
            "审核策略要求该数据的每张表经两名审核员复核".to_owned(),
        ),
    };
    (en, zh)
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(16)]
}

fn verdict_en(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "pass",
        Verdict::Suppressed => "passed with suppressed cells",
        Verdict::Review => "held for review by two reviewers",
        Verdict::Fail => "fail",
    }
}

/// What the operator can change, for a rule.
fn advice(rule: Rule) -> &'static str {
    match rule {
        Rule::Threshold | Rule::Dominance | Rule::PRatio => {
            "合并类别或使用更粗的分段，使每个单元格有足够多且不被少数主体支配的单位 / merge categories or use coarser bands so each cell has enough units and no dominant contributor"
        }
        Rule::Zero | Rule::NegativeValues => {
            "由审核人员复核；如无必要，去掉零值或负值 / a reviewer will look at it; leave out zero or negative values if they are not needed"
        }
        Rule::Extremes => {
            "只在足够大的组上给出极值和分位数，或改用更居中的分位数 / report extremes and quantiles only for large groups, or a more central quantile"
        }
        Rule::ModelDf | Rule::ModelFit => {
            "减少模型项、合并水平或使用更多数据 / use fewer terms, merge levels or use more data"
        }
        Rule::Identifier | Rule::Membership => {
            "输出中不得含有标识符或敏感列的值 / outputs may not carry identifiers or values of sensitive columns"
        }
        Rule::Inconsistent => {
            "模块输出必须与清单声明的口径一致（过滤条件、关联、统计量）；请在合成数据上用 sandbox audit --twin 检查 / the module's values must match the manifest's contract (filters, join, statistic); check with sandbox audit --twin on the synthetic twins"
        }
        Rule::Size => "缩小输出表 / make the table smaller",
        Rule::SecondarySuppression => {
            "合计按已发布的单元格重新计算，与明细相减不再能推出被抑制的单元格 / totals are recomputed from the released cells, so subtracting cannot give back a suppressed cell"
        }
        Rule::Differencing => {
            "与已发布的单元格仅差几个单位：改变分组或过滤条件，使两者之差不少于阈值 / it differs from a released cell by a few units only: change the grouping or filters so that they differ by at least the threshold"
        }
        Rule::ManualReview => {
            "审核策略要求人工复核：两名审核员通过后发布 / the audit policy has every table reviewed: it leaves once two reviewers approve it"
        }
        Rule::DifferentialPrivacy => {
            "该数据集按差分隐私发布：只输出计数，以及策略设有 sum_bound 时的求和 / this dataset is released under differential privacy: output counts, and sums where the policy sets a sum_bound"
        }
    }
}
