//! Releases, their delivery, and the application units' feedback.

use sandbox_verify::event::Event;

use super::{Result, Service, check_text, now};
use crate::auth::{Caller, Role};
use crate::error::ServiceError;
use crate::model::{Feedback, ModuleStatus, Release};

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
        let dir = self.core.dir.releases().join(id);
        let mut files = Vec::new();
        for path in bundle_files(&dir).map_err(|e| ServiceError::internal("release bundle", e))? {
            let data = std::fs::read(dir.join(&path)).map_err(|e| ServiceError::internal("release bundle", e))?;
            files.push((path, data));
        }
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
}

/// The files of a bundle, relative to it, sorted.
fn bundle_files(dir: &std::path::Path) -> std::io::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((path, prefix)) = stack.pop() {
        for item in std::fs::read_dir(&path)? {
            let item = item?;
            let name = format!("{prefix}{}", item.file_name().to_string_lossy());
            if item.file_type()?.is_dir() {
                stack.push((item.path(), format!("{name}/")));
            } else {
                out.push(name);
            }
        }
    }
    out.sort();
    Ok(out)
}
