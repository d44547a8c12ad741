//! Releases, their delivery, and the application units' feedback.

use sandbox_verify::event::Event;
use sandbox_verify::release::{RESULTS, STATEMENT, STATEMENT_PROOF};

use super::{Result, Service, check_id, check_text, now};
use crate::auth::{Caller, Role};
use crate::error::ServiceError;
use crate::model::{Feedback, ModuleStatus, Rating, Release};

/// A release's bundle: its files, relative to the bundle, sorted.
#[derive(Debug)]
pub(crate) struct Bundle {
    pub(crate) release: Release,
    pub(crate) files: Vec<(String, Vec<u8>)>,
}

#[derive(Debug)]
pub(crate) struct FeedbackReceipt {
    pub(crate) id: String,
    pub(crate) log_index: u64,
}

impl Service {
    /// Operators and application units see their own releases; administrators and reviewers,
    /// all.
    pub(crate) fn releases(&self, caller: &Caller) -> Result<Vec<Release>> {
        let scope = super::scope(caller);
        Ok(self.core.view()?.releases(scope)?)
    }

    /// The bundle of a release, to the application unit it is addressed to, while its
    /// agreement and licence are in force and its operator is enabled; each delivery is logged.
    pub(crate) async fn download_release(&self, caller: &Caller, id: &str) -> Result<Bundle> {
        let guard = self.lock().await;
        let release = self.release(id)?;
        if release.application_unit != caller.name {
            return Err(ServiceError::not_found("release", "发布结果", id));
        }
        self.principal_acting_as(&release.operator, Role::Operator)?;
        // A module withdrawn after its release delivers nothing more.
        if self.module(&release.module)?.status != ModuleStatus::Approved {
            return Err(ServiceError::precondition(
                format!("module {} of release {id} is revoked: nothing more is delivered from it", release.module),
                "该结果的分析模块已撤销，不再交付",
            ));
        }
        let agreement = self.agreement(&release.agreement)?;
        if !agreement.in_force(now()) {
            return Err(ServiceError::precondition(
                format!("agreement {} has ended or expired: nothing more is delivered under it", agreement.id),
                "数据服务协议已终止或过期，不再交付",
            ));
        }
        if !self.licence(&agreement.licence)?.in_force(now()) {
            return Err(ServiceError::precondition(
                format!(
                    "licence {} is suspended, revoked or outside its period: nothing more is delivered under it",
                    agreement.licence
                ),
                "授权运营协议已暂停、撤销或不在有效期内，不再交付",
            ));
        }
        // Nothing more leaves under a licence while an incident under it is open (a leak may be
        // under way), unless the bureau allows it.
        if self.core.view()?.incident_blocks(&agreement.licence)? {
            return Err(ServiceError::precondition(
                format!("an incident under licence {} is open: nothing is delivered under it", agreement.licence),
                "该授权下有未结案的安全事件，暂停交付",
            ));
        }
        let files = self.bundle(&release)?;
        self.core.commit_event(&guard, &caller.name, Event::Delivery { release: id.to_owned() }).await?;
        Ok(Bundle { release, files })
    }

    pub(crate) async fn submit_feedback(
        &self,
        caller: &Caller,
        release: &str,
        rating: u32,
        comment: &str,
    ) -> Result<FeedbackReceipt> {
        if !(1..=5).contains(&rating) {
            return Err(ServiceError::invalid("rating must be 1 to 5", "评分须为 1 到 5"));
        }
        check_text("comment", comment, false)?;
        let guard = self.lock().await;
        if self.release(release)?.application_unit != caller.name {
            return Err(ServiceError::not_found("release", "发布结果", release));
        }
        let id = self.core.next_id("fb");
        let event = Event::Feedback {
            feedback: id.clone(),
            release: release.to_owned(),
            rating,
            comment: (!comment.is_empty()).then(|| comment.to_owned()),
        };
        let log_index = self.core.commit_event(&guard, &caller.name, event).await?;
        Ok(FeedbackReceipt { id, log_index })
    }

    /// Operators see the feedback on their own releases; the others, all.
    pub(crate) fn feedback(&self, caller: &Caller) -> Result<Vec<Feedback>> {
        let scope = super::scope(caller);
        Ok(self.core.view()?.feedback(scope)?)
    }

    /// A data provider's rating of an operator holding a licence over its data, once a year
    /// (Beijing time), for the annual evaluation.
    pub(crate) async fn rate_operator(
        &self,
        caller: &Caller,
        operator: &str,
        score: u32,
        comment: &str,
    ) -> Result<FeedbackReceipt> {
        check_id("operator", operator)?;
        if !(1..=5).contains(&score) {
            return Err(ServiceError::invalid("score must be 1 to 5", "评分须为 1 到 5"));
        }
        check_text("comment", comment, false)?;
        let year = sandbox_verify::annual::year_of(now());
        let guard = self.lock().await;
        // Only an operator that used its data; any other is answered as an unknown one.
        let licensed = self.core.view()?.licences(super::scope(caller))?.into_iter().any(|l| l.operator == operator);
        if !licensed {
            return Err(ServiceError::not_found(
                "operator licensed on your data",
                "使用本部门数据的运营单位",
                operator,
            ));
        }
        let rated = self.core.view()?.ratings(super::scope(caller))?;
        if rated.iter().any(|r| r.provider == caller.name && r.operator == operator && r.year == year) {
            return Err(ServiceError::exists(
                format!("{} has rated {operator} for {year} already", caller.name),
                format!("本年度（{year}）已评价过该运营单位"),
            ));
        }
        let id = self.core.next_id("rating");
        let event = Event::OperatorRated {
            rating: id.clone(),
            operator: operator.to_owned(),
            year,
            score,
            comment: (!comment.is_empty()).then(|| comment.to_owned()),
        };
        let log_index = self.core.commit_event(&guard, &caller.name, event).await?;
        Ok(FeedbackReceipt { id, log_index })
    }

    /// The bureau and evaluators see every rating; a provider its own, an operator those of it.
    pub(crate) fn ratings(&self, caller: &Caller) -> Result<Vec<Rating>> {
        Ok(self.core.view()?.ratings(super::scope(caller))?)
    }
}

impl Service {
    /// A release's bundle as its entry names it: the statement, its proof and each result whose
    /// bytes have the SHA-256 the signed statement gives — nothing else that may lie in the
    /// folder, and no link.
    fn bundle(&self, release: &Release) -> Result<Vec<(String, Vec<u8>)>> {
        let fault = |e: &dyn std::fmt::Display| ServiceError::internal("release bundle", e);
        let bytes = self.core.log.entry(release.log_index).map_err(|e| fault(&e))?;
        let (entry, _) = sandbox_verify::entry::open(&bytes).map_err(|e| fault(&e))?;
        let Ok(Event::Release { results, .. }) = Event::decode(&entry) else {
            return Err(fault(&format!("entry {} is not release {}", release.log_index, release.id)));
        };
        let dir = self.core.dir.releases().join(&release.id);
        let read = |path: &str| {
            let full = dir.join(path);
            let meta = std::fs::symlink_metadata(&full).map_err(|e| fault(&e))?;
            if !meta.file_type().is_file() {
                return Err(fault(&format!("{} is not a plain file", full.display())));
            }
            std::fs::read(&full).map_err(|e| fault(&e))
        };
        let mut files = Vec::new();
        for (name, sha256) in &results.0 {
            let path = format!("{RESULTS}/{name}");
            let data = read(&path)?;
            if super::sha256_hex(&data) != *sha256 {
                return Err(fault(&format!("{path} of {} is not the file its statement signs", release.id)));
            }
            files.push((path, data));
        }
        for path in [STATEMENT, STATEMENT_PROOF] {
            files.push((path.to_owned(), read(path)?));
        }
        files.sort();
        Ok(files)
    }
}
