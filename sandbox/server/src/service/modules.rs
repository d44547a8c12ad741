//! Analysis modules: submission, review, revocation.

use std::sync::Arc;

use sandbox_contract::Manifest;
use sandbox_verify::entry::kind;
use sandbox_verify::event::Event;

use super::{MAX_MODULE_BYTES, Result, Service, check_text, field, now, sha256_hex};
use crate::auth::Caller;
use crate::error::ServiceError;
use crate::model::{Module, ModuleStatus};
use crate::state::Scope;
use crate::{DataDir, runs};

/// A module an operator submits: its bytes, its manifest and its signed `module.submitted`.
#[derive(Debug)]
pub(crate) struct SubmitModule {
    pub(crate) module: Vec<u8>,
    pub(crate) manifest: String,
    pub(crate) entry: Vec<u8>,
}

/// A module's stored bytes and manifest.
#[derive(Debug)]
pub(crate) struct ModuleFiles {
    pub(crate) module: Vec<u8>,
    pub(crate) manifest: String,
}

/// A reviewer's decision on a module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    Approve,
    Reject,
}

impl Service {
    pub(crate) async fn submit_module(&self, caller: &Caller, s: SubmitModule) -> Result<Module> {
        if s.module.is_empty() || s.module.len() > MAX_MODULE_BYTES {
            return Err(ServiceError::invalid(
                format!("a module has 1 to {MAX_MODULE_BYTES} bytes, this one {}", s.module.len()),
                "模块大小超出范围",
            ));
        }
        let manifest = Manifest::parse(&s.manifest)
            .map_err(|e| ServiceError::invalid(format!("manifest: {e}"), "模块清单（module.toml）无效"))?;
        // The output contract, judged like SQL before anyone reviews it.
        sandbox_policy::contract::judge(&manifest, &self.core.catalog, None)
            .await
            .map_err(|e| ServiceError::invalid(format!("output contract: {e}"), "输出契约不符合列约束或公开分类"))?;
        let entry = self.signed_entry(caller, &s.entry, kind::MODULE_SUBMITTED)?;
        let (sha, manifest_sha) = (sha256_hex(&s.module), sha256_hex(s.manifest.as_bytes()));
        if field(&entry, "module")? != sha || field(&entry, "manifest")? != manifest_sha {
            return Err(ServiceError::invalid(
                "the signed entry's module and manifest hashes are not those of the bytes sent",
                "签名条目中的模块或清单哈希与上传内容不符",
            ));
        }
        let mut datasets = manifest.datasets.clone();
        datasets.sort();
        datasets.dedup();
        if field(&entry, "datasets")? != datasets.join(",") {
            return Err(ServiceError::invalid(
                format!("the entry's datasets must be the manifest's: {}", datasets.join(",")),
                "签名条目中的数据集须与清单一致",
            ));
        }
        if field(&entry, "name")? != manifest.name {
            return Err(ServiceError::invalid(
                format!("the entry's name must be the manifest's: {}", manifest.name),
                "名称须与清单一致",
            ));
        }
        let licence_id = field(&entry, "licence")?;
        let guard = self.lock().await;
        let licence = self.licence(licence_id)?;
        if licence.operator != caller.name {
            return Err(ServiceError::not_found("licence", "授权运营协议", licence_id));
        }
        if !licence.in_force(now()) {
            return Err(ServiceError::precondition(
                format!("licence {licence_id} is not in force"),
                "授权运营协议未生效或已暂停",
            ));
        }
        if let Some(d) = datasets.iter().find(|d| !licence.datasets.contains(d)) {
            return Err(ServiceError::denied(
                format!("licence {licence_id} does not cover dataset {d}"),
                format!("授权不包含数据集 {d}"),
            ));
        }
        if self.core.view()?.module(&sha)?.is_some() {
            return Err(ServiceError::exists(format!("module {sha} was submitted already"), "该模块已提交"));
        }
        // Content-addressed and immutable: a file already there must hold these bytes.
        let modules = self.core.dir.modules();
        let [wasm, toml] = DataDir::module_files(&sha);
        let mut files = sandbox_log::files::Writer::new(&modules);
        files
            .create(&wasm, &s.module)
            .and_then(|()| files.create(&toml, s.manifest.as_bytes()))
            .and_then(|()| files.sync())
            .map_err(|e| ServiceError::internal("module files", e))?;
        self.core.commit(&guard, s.entry).await?;
        self.module(&sha)
    }

    /// A reviewer's signed approval or rejection; the approval that completes the review has
    /// the module compiled.
    pub(crate) async fn decide_module(&self, caller: &Caller, decision: Decision, signed: Vec<u8>) -> Result<Module> {
        let entry_kind = match decision {
            Decision::Approve => kind::MODULE_APPROVED,
            Decision::Reject => kind::MODULE_REJECTED,
        };
        let entry = self.signed_entry(caller, &signed, entry_kind)?;
        let sha = field(&entry, "module")?;
        if decision == Decision::Reject {
            check_text("reason", field(&entry, "reason")?, true)?;
        }
        let guard = self.lock().await;
        let module = self.module(sha)?;
        if module.status != ModuleStatus::Submitted {
            return Err(ServiceError::precondition(
                format!("module {sha} is not waiting for review"),
                "该模块不在待审核状态",
            ));
        }
        if module.operator == caller.name {
            return Err(ServiceError::denied("nobody reviews their own submission", "不得审核本人提交的模块"));
        }
        if module.approvals.contains(&caller.name) {
            return Err(ServiceError::precondition(
                format!("{} has approved module {sha} already; it needs a different reviewer", caller.name),
                "已审核通过过该模块，须由另一名审核员审核",
            ));
        }
        self.core.commit(&guard, signed.clone()).await?;
        let module = self.module(sha)?;
        if module.status == ModuleStatus::Approved {
            runs::compile_approved(Arc::clone(&self.core), sha.to_owned());
        }
        Ok(module)
    }

    /// Revokes a module; runs held for review of it end.
    pub(crate) async fn revoke_module(&self, caller: &Caller, sha: &str, reason: &str) -> Result<Module> {
        check_text("reason", reason, true)?;
        let guard = self.lock().await;
        let module = self.module(sha)?;
        if matches!(module.status, ModuleStatus::Revoked | ModuleStatus::Rejected) {
            return Err(ServiceError::precondition(
                format!("module {sha} is rejected or revoked already"),
                "该模块已被驳回或撤销",
            ));
        }
        let event = Event::ModuleRevoked { module: sha.to_owned(), reason: reason.to_owned() };
        self.core.commit_event(&guard, &caller.name, event).await?;
        runs::end_held(&self.core, &guard).await?;
        self.module(sha)
    }

    /// Operators see their own modules; the bureau, all.
    pub(crate) fn modules(&self, caller: &Caller) -> Result<Vec<Module>> {
        let scope = super::scope(caller);
        Ok(self.core.view()?.modules(scope)?)
    }

    pub(crate) fn module_files(&self, caller: &Caller, sha: &str) -> Result<ModuleFiles> {
        let module = self.module(sha)?;
        if super::scope(caller) != Scope::All && module.operator != caller.name {
            return Err(ServiceError::not_found("module", "分析模块", sha));
        }
        let read = |path| std::fs::read(path).map_err(|e| ServiceError::internal("module", e));
        let manifest = String::from_utf8(read(runs::manifest_path(&self.core, sha))?)
            .map_err(|e| ServiceError::internal("manifest", e))?;
        Ok(ModuleFiles { module: read(runs::module_path(&self.core, sha))?, manifest })
    }

    /// The caller's own module, with its manifest, after checking the bytes on disk are still
    /// the ones submitted: a different byte is a new submission.
    pub(super) fn own_module(&self, caller: &Caller, sha: &str) -> Result<(Module, Manifest)> {
        let module = self.module(sha)?;
        if module.operator != caller.name {
            return Err(ServiceError::not_found("module", "分析模块", sha));
        }
        let bytes =
            std::fs::read(runs::module_path(&self.core, sha)).map_err(|e| ServiceError::internal("module", e))?;
        let text = std::fs::read_to_string(runs::manifest_path(&self.core, sha))
            .map_err(|e| ServiceError::internal("manifest", e))?;
        if sha256_hex(&bytes) != sha || sha256_hex(text.as_bytes()) != module.manifest_sha256 {
            return Err(ServiceError::precondition(
                format!("the stored bytes of module {sha} differ from what was submitted; submit it again"),
                "模块文件与提交时的哈希不符，须重新提交",
            ));
        }
        let manifest = Manifest::parse(&text).map_err(|e| ServiceError::internal("manifest", e))?;
        Ok((module, manifest))
    }
}
