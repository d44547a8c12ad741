//! The log as principals read it, and the annual reports filed from it.

use sandbox_verify::entry::{self, Entry};
use sandbox_verify::event::Event;

use super::{Result, Service, now, sha256_hex};
use crate::auth::Caller;
use crate::error::ServiceError;
use crate::model::Report;
use crate::state::Thing;

/// The log's latest signed checkpoint and its size.
#[derive(Debug)]
pub(crate) struct Checkpoint {
    pub(crate) note: Vec<u8>,
    pub(crate) size: u64,
}

/// An annual report as filed, with its text.
#[derive(Debug)]
pub(crate) struct AnnualReport {
    pub(crate) report: Report,
    pub(crate) text: String,
}

impl Service {
    pub(crate) fn checkpoint(&self, _caller: &Caller) -> Checkpoint {
        Checkpoint { note: self.core.log.checkpoint().to_vec(), size: self.core.log.size() }
    }

    /// Up to `count` (1 to 1 000) entries from `start`. Operators and application units read
    /// their own entries only, the others empty in their places: other tenants' purposes,
    /// scenarios, feedback and refusals are not theirs. Checkpoints and proofs stay public.
    pub(crate) fn entries(&self, caller: &Caller, start: u64, count: u32) -> Result<Vec<Vec<u8>>> {
        let size = self.core.log.size();
        if count == 0 || count > 1000 {
            return Err(ServiceError::invalid("count must be 1 to 1000", "条目数须在 1 到 1000 之间"));
        }
        if start >= size {
            return Err(ServiceError::out_of_range(format!("the log has {size} entries"), format!("日志共 {size} 条")));
        }
        let end = (start + u64::from(count)).min(size);
        let mut entries = self.core.log.entries(start..end).map_err(|e| ServiceError::internal("log read", e))?;
        if super::scope(caller) != crate::state::Scope::All {
            for bytes in &mut entries {
                let theirs = match entry::open(bytes) {
                    Ok((e, _)) => self.concerns(caller, &e)?,
                    Err(_) => false,
                };
                if !theirs {
                    bytes.clear();
                }
            }
        }
        Ok(entries)
    }

    /// Whether `entry` concerns `caller`: made by it, naming it, or about its own licence,
    /// agreement, module, run or release.
    fn concerns(&self, caller: &Caller, entry: &Entry) -> Result<bool> {
        let me = caller.name.as_str();
        if entry.actor() == me
            || ["principal", "operator", "application_unit", "recipient"].iter().any(|k| entry.get(k) == Some(me))
        {
            return Ok(true);
        }
        // The things an entry may be about, the most specific first.
        let owned = [
            ("run", Thing::Run),
            ("release", Thing::Release),
            ("module", Thing::Module),
            ("agreement", Thing::Agreement),
            ("licence", Thing::Licence),
        ];
        let scope = super::scope(caller);
        if let crate::state::Scope::Provider { .. } = scope {
            // A provider's by the most specific thing the entry is about: a run, release or
            // module over another provider's data is not its own because the licence or
            // agreement it ran under also names its data (red team of issue 20).
            let Some((id, thing)) = owned.into_iter().find_map(|(field, thing)| Some((entry.get(field)?, thing)))
            else {
                return Ok(false);
            };
            return Ok(self.core.view()?.is_party(scope, thing, id)?);
        }
        for (field, thing) in owned {
            if let Some(id) = entry.get(field)
                && self.core.view()?.is_party(scope, thing, id)?
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The inclusion proof of entry `index` in the current checkpoint, in tlog-proof form.
    /// Operators and application units prove their own entries only: a proof holds the hash of
    /// the entry beside it, and an entry the server made can be guessed and checked against it.
    pub(crate) fn inclusion_proof(&self, caller: &Caller, index: u64) -> Result<Vec<u8>> {
        let size = self.core.log.size();
        if index >= size {
            return Err(ServiceError::out_of_range(format!("the log has {size} entries"), format!("日志共 {size} 条")));
        }
        if super::scope(caller) != crate::state::Scope::All {
            let bytes = self.core.log.entry(index).map_err(|e| ServiceError::internal("log read", e))?;
            let theirs = match entry::open(&bytes) {
                Ok((e, _)) => self.concerns(caller, &e)?,
                Err(_) => false,
            };
            if !theirs {
                return Err(ServiceError::not_found("entry of yours at index", "调用者的日志条目", &index.to_string()));
            }
        }
        let proof = self.core.log.tlog_proof(index).map_err(|e| ServiceError::internal("proof", e))?;
        Ok(proof.to_bytes())
    }

    /// The hashes proving the tree of `old` entries is a prefix of that of `new`.
    pub(crate) fn consistency_proof(&self, _caller: &Caller, old: u64, new: u64) -> Result<Vec<[u8; 32]>> {
        let size = self.core.log.size();
        if old == 0 || old > new || new > size {
            return Err(ServiceError::out_of_range(
                format!("need 0 < old ≤ new ≤ {size}"),
                format!("须满足 0 < old ≤ new ≤ {size}"),
            ));
        }
        let hashes = self.core.log.consistency_proof(old, new).map_err(|e| ServiceError::internal("proof", e))?;
        Ok(hashes.iter().map(|h| h.0).collect())
    }

    /// Computes the annual report of `year` from the whole log, keeps its text and logs it.
    pub(crate) async fn file_report(&self, caller: &Caller, year: i32) -> Result<AnnualReport> {
        // Entries below `size` never change: the report is computed without the write lock.
        let size = self.core.log.size();
        let mut annual = sandbox_verify::annual::Annual::new(year, &self.core.name, size)
            .map_err(|e| ServiceError::invalid(&e, e.zh()))?;
        if annual.period().0 > now() {
            return Err(ServiceError::invalid(format!("year {year} has not begun"), "该年度尚未开始"));
        }
        tokio::task::block_in_place(|| {
            for item in self.core.log.scan(0..size, 4096) {
                let (index, bytes) = item.map_err(|e| ServiceError::internal("log read", e))?;
                annual.add(index, entry::open(&bytes).ok().map(|(e, _)| e).as_ref());
            }
            Ok::<_, ServiceError>(())
        })?;
        let text = annual.render();
        let sha = sha256_hex(text.as_bytes());
        // Content-addressed and immutable, written before the entry that names it.
        let reports = self.core.dir.reports();
        let mut files = sandbox_log::files::Writer::new(&reports);
        files
            .create(&format!("{sha}.txt"), text.as_bytes())
            .and_then(|()| files.sync())
            .map_err(|e| ServiceError::internal("report file", e))?;
        let guard = self.lock().await;
        self.core.commit_event(&guard, &caller.name, Event::Report { year, size, sha256: sha }).await?;
        drop(guard);
        self.report(caller, year)
    }

    /// The latest annual report filed for `year`.
    pub(crate) fn report(&self, _caller: &Caller, year: i32) -> Result<AnnualReport> {
        let report = self
            .core
            .view()?
            .report(year)?
            .ok_or_else(|| ServiceError::not_found("annual report for year", "年度运营报告", &year.to_string()))?;
        let path = self.core.dir.reports().join(format!("{}.txt", report.sha256));
        let text = std::fs::read_to_string(path).map_err(|e| ServiceError::internal("report file", e))?;
        Ok(AnnualReport { report, text })
    }
}
