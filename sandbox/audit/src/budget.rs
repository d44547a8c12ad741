//! Privacy budgets (隐私预算) for differential privacy, in zCDP ρ: per (dataset, operator) and
//! per dataset, from the bureau's policy ([`DpSettings`]). A run's ρ is reserved before it
//! starts, atomically for all its datasets, and kept once the module has run on the data
//! ([`Ledger::keep`]), whether it failed, was withheld or released noised figures: its outcome,
//! the audit's verdicts and the released report depend on the data too, and a refund for a
//! failing run would make them free. Only a cancelled run, which tells nothing, is given back
//! ([`Ledger::refund`]). Budgets are never refreshed: what was spent stays spent.
//!
//! The ledger is one JSON file, changed under an exclusive lock on `<file>.lock`: read, check,
//! write a temporary file, fsync, rename over the ledger, fsync the folder. A reservation counts
//! as spent until it is refunded, so a crash between reserving and keeping errs on the side of
//! privacy.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::dp::DpSettings;

/// Slack for floating-point sums of ρ: a budget of 1.0 takes ten runs of 0.1.
const SLACK: f64 = 1e-9;

/// Why a budget operation did not happen. Nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum BudgetError {
    #[error(
        "privacy budget exhausted: {operator} has spent ρ {spent} of {budget} on {dataset}, a run needs {needed} / \
         隐私预算不足：{operator} 在 {dataset} 上已用 ρ {spent}（上限 {budget}），本次运行需要 {needed}"
    )]
    Operator { operator: String, dataset: String, spent: f64, budget: f64, needed: f64 },
    #[error(
        "privacy budget exhausted: ρ {spent} of {budget} has been spent on {dataset} by all operators, a run needs \
         {needed} / 隐私预算不足：{dataset} 的总预算 {budget} 已用 {spent}，本次运行需要 {needed}"
    )]
    Dataset { dataset: String, spent: f64, budget: f64, needed: f64 },
    #[error("no reservation {0} in the budget ledger / 预算账本中没有预留 {0}")]
    UnknownReservation(u64),
    #[error("budget ledger {path}: {detail} / 预算账本 {path}：{detail}")]
    Ledger { path: PathBuf, detail: String },
}

/// A reservation's number in the ledger.
pub type ReservationId = u64;

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct State {
    /// Dataset → operator → ρ spent or reserved.
    spent: BTreeMap<String, BTreeMap<String, f64>>,
    /// Open reservations: id → (operator, [(dataset, ρ)]).
    reservations: BTreeMap<ReservationId, (String, Vec<(String, f64)>)>,
    next: ReservationId,
}

impl State {
    fn operator_spent(&self, dataset: &str, operator: &str) -> f64 {
        self.spent.get(dataset).and_then(|o| o.get(operator)).copied().unwrap_or(0.0)
    }

    fn dataset_spent(&self, dataset: &str) -> f64 {
        self.spent.get(dataset).map_or(0.0, |o| o.values().sum())
    }
}

/// The budget ledger at a path.
#[derive(Debug, Clone)]
pub struct Ledger {
    path: PathBuf,
}

impl Ledger {
    /// The ledger kept in `path` (created by the first reservation).
    pub fn new(path: impl Into<PathBuf>) -> Ledger {
        Ledger { path: path.into() }
    }

    fn error(&self, detail: impl std::fmt::Display) -> BudgetError {
        BudgetError::Ledger { path: self.path.clone(), detail: detail.to_string() }
    }

    /// Runs `change` on the state under the lock and stores the result, or nothing if it fails.
    fn change<T>(&self, change: impl FnOnce(&mut State) -> Result<T, BudgetError>) -> Result<T, BudgetError> {
        let lock_path = self.path.with_extension("lock");
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| self.error(e))?;
        lock.lock().map_err(|e| self.error(e))?;
        let mut state = self.read()?;
        let result = change(&mut state)?;
        let tmp = self.path.with_extension("tmp");
        let mut file = fs::File::create(&tmp).map_err(|e| self.error(e))?;
        let json = serde_json::to_vec_pretty(&state).map_err(|e| self.error(e))?;
        file.write_all(&json).and_then(|()| file.sync_all()).map_err(|e| self.error(e))?;
        fs::rename(&tmp, &self.path).map_err(|e| self.error(e))?;
        let folder = self.path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        fs::File::open(folder).and_then(|d| d.sync_all()).map_err(|e| self.error(e))?;
        Ok(result)
    }

    fn read(&self) -> Result<State, BudgetError> {
        match fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| self.error(format!("unreadable: {e}"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(self.error(e)),
        }
    }

    /// Reserves one run's ρ on each of `datasets` for `operator`, all or nothing.
    pub fn reserve(&self, operator: &str, datasets: &[(&str, &DpSettings)]) -> Result<ReservationId, BudgetError> {
        self.change(|state| {
            for (dataset, settings) in datasets {
                let needed = settings.rho_per_run;
                let spent = state.operator_spent(dataset, operator);
                if spent + needed > settings.operator_budget + SLACK {
                    return Err(BudgetError::Operator {
                        operator: operator.to_owned(),
                        dataset: dataset.to_string(),
                        spent,
                        budget: settings.operator_budget,
                        needed,
                    });
                }
                let spent = state.dataset_spent(dataset);
                if spent + needed > settings.dataset_budget + SLACK {
                    return Err(BudgetError::Dataset {
                        dataset: dataset.to_string(),
                        spent,
                        budget: settings.dataset_budget,
                        needed,
                    });
                }
            }
            let charges: Vec<(String, f64)> = datasets.iter().map(|(d, s)| (d.to_string(), s.rho_per_run)).collect();
            for (dataset, rho) in &charges {
                *state.spent.entry(dataset.clone()).or_default().entry(operator.to_owned()).or_default() += rho;
            }
            let id = state.next;
            state.next += 1;
            state.reservations.insert(id, (operator.to_owned(), charges));
            Ok(id)
        })
    }

    /// Gives reservation `id`'s ρ back: the run was cancelled, and nothing it did (not even
    /// whether it failed) reached anyone.
    pub fn refund(&self, id: ReservationId) -> Result<(), BudgetError> {
        self.change(|state| {
            let (operator, charges) = state.reservations.remove(&id).ok_or(BudgetError::UnknownReservation(id))?;
            for (dataset, rho) in &charges {
                give_back(state, dataset, &operator, *rho);
            }
            Ok(())
        })
    }

    /// Keeps all of reservation `id`'s ρ: the module ran on the data, and its outcome, the
    /// audit's verdicts and what left depend on it, noised or not.
    pub fn keep(&self, id: ReservationId) -> Result<(), BudgetError> {
        self.change(|state| {
            state.reservations.remove(&id).ok_or(BudgetError::UnknownReservation(id))?;
            Ok(())
        })
    }

    /// How many more runs `operator` can make on `dataset`.
    pub fn queries_left(&self, operator: &str, dataset: &str, settings: &DpSettings) -> Result<u64, BudgetError> {
        let state = self.read()?;
        let left = (settings.operator_budget - state.operator_spent(dataset, operator))
            .min(settings.dataset_budget - state.dataset_spent(dataset));
        Ok(((left + SLACK) / settings.rho_per_run).floor().max(0.0) as u64)
    }
}

fn give_back(state: &mut State, dataset: &str, operator: &str, rho: f64) {
    if let Some(spent) = state.spent.get_mut(dataset).and_then(|o| o.get_mut(operator)) {
        *spent = (*spent - rho).max(0.0);
    }
}
