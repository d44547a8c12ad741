//! Review (人工复核): a table the audit holds for review (zeros, negative values) leaves only
//! once two different bureau reviewers, neither of them the operator whose module wrote it,
//! approve it by the internal audit report's name ([`Audit::report_id`]). The server signs and logs each approval; this is
//! the rule it applies.

use std::collections::{BTreeMap, BTreeSet};

use crate::{Audit, History, ReleasedTable};

/// A table held for review, as it would leave: its review cells shown.
#[derive(Debug, Clone)]
pub(crate) struct HeldTable {
    pub(crate) table: ReleasedTable,
    /// What it adds to the history once it leaves: its cells that pass differencing, and
    /// itself.
    pub(crate) history: History,
}

/// One reviewer's approval of one held table of one audit report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    pub reviewer: String,
    /// The internal report's name ([`Audit::report_id`]).
    pub report_id: String,
    pub table: String,
}

/// Why approvals release nothing. Nothing leaves.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReviewError {
    #[error("table {0} is not held for review in this audit / 本次审核没有待复核的表 {0}")]
    NotHeld(String),
    #[error("an approval of table {table} names another audit report / 表 {table} 的复核意见针对的是另一份审核报告")]
    WrongReport { table: String },
    #[error(
        "{reviewer} wrote the module and cannot review its output {table} / {reviewer} 是模块提交方，不能复核其输出 {table}"
    )]
    OwnOutput { table: String, reviewer: String },
    #[error(
        "table {table} needs two different reviewers, it has {reviewers} / 表 {table} 需要两名不同的复核人，目前 {reviewers} 名"
    )]
    TooFew { table: String, reviewers: usize },
}

impl Audit {
    /// The names of the tables held for review.
    pub fn held(&self) -> Vec<&str> {
        self.held.iter().map(|h| h.table.name.as_str()).collect()
    }

    /// The held tables that `approvals` release, and what they add to the history.
    /// Every approval must be of this report, of a held table, by someone other than
    /// `operator`; every table approved at all needs two different reviewers. Any fault and
    /// nothing leaves.
    pub fn approve(
        &self,
        operator: &str,
        approvals: &[Approval],
    ) -> Result<(Vec<ReleasedTable>, History), ReviewError> {
        let report = self.report_id();
        let mut reviewers: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for approval in approvals {
            let table = approval.table.clone();
            if !self.held.iter().any(|h| h.table.name == approval.table) {
                return Err(ReviewError::NotHeld(table));
            }
            if approval.report_id != report {
                return Err(ReviewError::WrongReport { table });
            }
            if approval.reviewer == operator {
                return Err(ReviewError::OwnOutput { table, reviewer: approval.reviewer.clone() });
            }
            reviewers.entry(&approval.table).or_default().insert(&approval.reviewer);
        }
        if let Some((table, who)) = reviewers.iter().find(|(_, who)| who.len() < 2) {
            return Err(ReviewError::TooFew { table: table.to_string(), reviewers: who.len() });
        }
        let approved = self.held.iter().filter(|h| reviewers.contains_key(h.table.name.as_str()));
        let mut history = History::default();
        let mut tables = Vec::new();
        for h in approved {
            tables.push(h.table.clone());
            history.extend(h.history.clone());
        }
        Ok((tables, history))
    }
}
