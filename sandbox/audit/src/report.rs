//! The audit report: JSON for machines (its SHA-256 is what a release signs) and text in Chinese
//! and English for people — which rule, which cell, why, and what to change.

use serde::Serialize;
use sha2::{Digest, Sha256};

use sandbox_runner::RunRecord;

use crate::{Rule, Rules, Verdict};

/// One finding: a rule that decided a cell, or a whole table when `row` is empty.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CellFinding {
    pub row: Option<usize>,
    pub column: Option<String>,
    pub rule: Rule,
    pub verdict: Verdict,
    pub en: String,
    pub zh: String,
}

/// One output table's audit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TableReport {
    pub name: String,
    pub outcome: Verdict,
    pub rows: usize,
    pub suppressed_cells: usize,
    /// The rules as applied to this table (the policy's strictest for its datasets).
    pub rules: Rules,
    pub findings: Vec<CellFinding>,
}

/// The audit of one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditReport {
    pub version: u32,
    pub module_sha256: String,
    pub manifest_sha256: String,
    pub parameters: Vec<(String, String)>,
    pub policy_sha256: String,
    /// The worst table outcome.
    pub outcome: Verdict,
    pub tables: Vec<TableReport>,
}

impl AuditReport {
    pub(crate) fn new(record: &RunRecord, policy_sha256: String, tables: Vec<TableReport>) -> AuditReport {
        AuditReport {
            version: 1,
            module_sha256: record.module_sha256.clone(),
            manifest_sha256: record.manifest_sha256.clone(),
            parameters: record.parameters.clone(),
            policy_sha256,
            outcome: tables.iter().map(|t| t.outcome).max().unwrap_or(Verdict::Pass),
            tables,
        }
    }

    /// The canonical JSON bytes: what is kept with the run and hashed.
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
            if let Some(advice) = advice(table) {
                out += &format!("  建议 / what to change: {advice}\n");
            }
        }
        out
    }
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

/// What the operator can change, for the rule that matters most in a table.
fn advice(table: &TableReport) -> Option<&'static str> {
    let worst = table.findings.iter().max_by_key(|f| (f.verdict, f.rule))?;
    Some(match worst.rule {
        Rule::Threshold | Rule::Dominance | Rule::PRatio => {
            "合并类别或使用更粗的分段，使每个单元格有足够多且不被少数主体支配的单位 / merge categories or use coarser bands so each cell has enough units and no dominant contributor"
        }
        Rule::Zero | Rule::NegativeValues => {
            "由审核人员复核；如无必要，去掉零值单元格或负值 / a reviewer will look at it; drop zero cells or negative values if they are not needed"
        }
        Rule::Extremes => "只在足够大的组上给出极值和分位数 / report extremes and quantiles only for large groups",
        Rule::ModelDf => "减少模型项或使用更多数据 / use fewer terms or more data",
        Rule::Identifier | Rule::Membership => {
            "输出中不得含有标识符或敏感列的值 / outputs may not carry identifiers or values of sensitive columns"
        }
        Rule::DimensionDomain => {
            "维度值必须来自声明的来源列或分段标签 / dimension values must come from the declared column or banding labels"
        }
        Rule::Inconsistent => {
            "输出值必须与清单声明的口径一致（过滤条件、关联、统计量） / values must match the manifest's contract (filters, join, statistic)"
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
            "该数据集按差分隐私发布：只输出计数，以及策略设有 sum_bound 时的求和；发布值为加噪的主机自算值 / this dataset is released under differential privacy: output counts, and sums where the policy sets a sum_bound; what leaves is the host's own figure plus noise"
        }
    })
}
