//! Operating licences (授权运营协议) and data-service agreements (数据服务协议).

use sandbox_catalog::Sharing;
use sandbox_verify::entry::kind;
use sandbox_verify::event::Event;

use super::{Result, Service, check_id, check_text, check_time, field, now};
use crate::auth::{Caller, Role};
use crate::error::ServiceError;
use crate::model::{Agreement, Incident, Licence, LicenceStatus};
use crate::runs;
use crate::state::Scope;

/// A licence to grant.
#[derive(Debug)]
pub(crate) struct GrantLicence {
    pub(crate) id: String,
    pub(crate) operator: String,
    pub(crate) datasets: Vec<String>,
    pub(crate) purpose: String,
    pub(crate) valid_from: String,
    pub(crate) valid_until: String,
}

/// An agreement an operator signs with an application unit.
#[derive(Debug)]
pub(crate) struct NewAgreement {
    pub(crate) id: String,
    pub(crate) licence: String,
    pub(crate) application_unit: String,
    pub(crate) scenario: String,
    pub(crate) valid_until: String,
}

/// What an administrator does to a licence: the entry, and the states it applies to.
#[derive(Debug, Clone, Copy)]
pub(crate) enum LicenceAction {
    Suspend,
    Resume,
    Revoke,
}

impl LicenceAction {
    fn event(self, id: &str, reason: &str) -> Event {
        let (licence, reason) = (id.to_owned(), (!reason.is_empty()).then(|| reason.to_owned()));
        match self {
            LicenceAction::Suspend => Event::LicenceSuspended { licence, reason },
            LicenceAction::Resume => Event::LicenceResumed { licence, reason },
            LicenceAction::Revoke => Event::LicenceRevoked { licence, reason },
        }
    }

    fn applies_to(self, status: LicenceStatus) -> bool {
        match self {
            LicenceAction::Suspend => status == LicenceStatus::Active,
            LicenceAction::Resume => status == LicenceStatus::Suspended,
            LicenceAction::Revoke => status != LicenceStatus::Revoked,
        }
    }
}

impl Service {
    pub(crate) async fn grant_licence(&self, caller: &Caller, g: GrantLicence) -> Result<Licence> {
        check_id("id", &g.id)?;
        check_id("operator", &g.operator)?;
        check_text("purpose", &g.purpose, true)?;
        let (from, until) = (check_time("valid_from", &g.valid_from)?, check_time("valid_until", &g.valid_until)?);
        if from >= until {
            return Err(ServiceError::invalid("valid_from must be before valid_until", "生效时间须早于失效时间"));
        }
        if g.datasets.is_empty() {
            return Err(ServiceError::invalid("a licence names at least one dataset", "授权须至少包含一个数据集"));
        }
        let mut datasets = g.datasets.clone();
        datasets.sort();
        datasets.dedup();
        if let Some(d) = datasets.iter().find(|d| self.core.catalog.dataset(d).is_err()) {
            return Err(ServiceError::not_found("dataset", "数据集", d));
        }
        let sharing = |d: &String| self.core.catalog.dataset(d).map(|d| d.sharing).ok();
        // 不予共享: never licensed. 有条件共享: in effect once its provider consents.
        if let Some(d) = datasets.iter().find(|d| sharing(d) == Some(Sharing::None)) {
            return Err(ServiceError::precondition(
                format!("dataset {d} may not be shared (sharing = none): it is never licensed"),
                format!("数据集 {d} 属于不予共享类，不能授权运营"),
            ));
        }
        let consent: Vec<String> =
            datasets.iter().filter(|d| sharing(d) == Some(Sharing::Conditional)).cloned().collect();
        let guard = self.lock().await;
        self.principal_acting_as(&g.operator, Role::Operator)?;
        if self.core.view()?.licence(&g.id)?.is_some() {
            return Err(ServiceError::exists(format!("licence {} exists", g.id), "授权运营协议已存在"));
        }
        let event = Event::LicenceGranted {
            licence: g.id.clone(),
            operator: g.operator,
            datasets,
            purpose: g.purpose,
            valid_from: g.valid_from,
            valid_until: g.valid_until,
            consent: (!consent.is_empty()).then_some(consent),
        };
        self.core.commit_event(&guard, &caller.name, event).await?;
        self.licence(&g.id)
    }

    /// A security incident under `licence`, reported by its operator or by an application unit
    /// with an agreement under it; any other licence is answered as a missing one.
    pub(crate) async fn report_incident(
        &self,
        caller: &Caller,
        licence: &str,
        category: &str,
        description: &str,
    ) -> Result<Incident> {
        check_id("licence", licence)?;
        if !["leak", "loss", "misuse", "other"].contains(&category) {
            return Err(ServiceError::invalid(
                "category must be leak, loss, misuse or other",
                "类别须为 leak（泄露）、loss（丢失）、misuse（滥用）或 other（其他）",
            ));
        }
        check_text("description", description, true)?;
        let guard = self.lock().await;
        // Its operator, or a unit with an agreement under it still in force (red team: an
        // ended agreement let a unit hold the operator's runs for ever).
        let party = self.core.view()?.is_party(super::scope(caller), crate::state::Thing::Licence, licence)?
            || self
                .core
                .view()?
                .agreements(super::scope(caller))?
                .iter()
                .any(|a| a.licence == licence && a.in_force(now()));
        if !party {
            return Err(ServiceError::not_found("licence", "授权运营协议", licence));
        }
        // One open report a reporter a licence: more would only be more to close.
        let open = self.core.view()?.incidents(super::scope(caller))?;
        if open.iter().any(|i| i.licence == licence && i.reporter == caller.name && !i.closed) {
            return Err(ServiceError::precondition(
                format!("{} has an open incident under licence {licence} already", caller.name),
                "已报告的该授权下安全事件尚未结案",
            ));
        }
        let id = self.core.next_id("inc");
        let event = Event::IncidentReported {
            incident: id.clone(),
            licence: licence.to_owned(),
            category: category.to_owned(),
            description: description.to_owned(),
        };
        self.core.commit_event(&guard, &caller.name, event).await?;
        self.incident(&id)
    }

    /// The bureau's measure on an open incident; `suspend` and `terminate` act on its licence
    /// (its suspension or revocation is logged after the measure).
    pub(crate) async fn incident_measure(
        &self,
        caller: &Caller,
        id: &str,
        measure: &str,
        note: &str,
    ) -> Result<Incident> {
        check_id("incident", id)?;
        if !["contain", "suspend", "terminate", "allow_runs"].contains(&measure) {
            return Err(ServiceError::invalid(
                "measure must be contain, suspend, terminate or allow_runs",
                "措施须为 contain（控制）、suspend（暂停授权）、terminate（终止授权）或 allow_runs（允许运行）",
            ));
        }
        check_text("note", note, true)?;
        let guard = self.lock().await;
        let incident = self.open_incident(id)?;
        let event = Event::IncidentMeasure {
            incident: id.to_owned(),
            licence: incident.licence.clone(),
            measure: measure.to_owned(),
            note: note.to_owned(),
        };
        self.core.commit_event(&guard, &caller.name, event).await?;
        let status = self.licence(&incident.licence)?.status;
        let action = match measure {
            "suspend" if status == LicenceStatus::Active => Some(LicenceAction::Suspend),
            "terminate" if status != LicenceStatus::Revoked => Some(LicenceAction::Revoke),
            _ => None,
        };
        if let Some(action) = action {
            // A fixed reason: the bureau's note stays with the incident, not with the licence,
            // which its providers read too.
            let reason = format!("incident {id} / 安全事件 {id}");
            self.core.commit_event(&guard, &caller.name, action.event(&incident.licence, &reason)).await?;
            runs::end_held(&self.core, &guard).await?;
        }
        self.incident(id)
    }

    pub(crate) async fn close_incident(
        &self,
        caller: &Caller,
        id: &str,
        reported_to: &str,
        note: &str,
    ) -> Result<Incident> {
        check_id("incident", id)?;
        check_text("reported_to", reported_to, false)?;
        check_text("note", note, true)?;
        let guard = self.lock().await;
        let incident = self.open_incident(id)?;
        let reported_to = if reported_to.trim().is_empty() { "-" } else { reported_to.trim() };
        let event = Event::IncidentClosed {
            incident: id.to_owned(),
            licence: incident.licence,
            reported_to: reported_to.to_owned(),
            note: note.to_owned(),
        };
        self.core.commit_event(&guard, &caller.name, event).await?;
        self.incident(id)
    }

    pub(crate) fn incidents(&self, caller: &Caller) -> Result<Vec<Incident>> {
        Ok(self.core.view()?.incidents(super::scope(caller))?)
    }

    fn incident(&self, id: &str) -> Result<Incident> {
        self.core.view()?.incident(id)?.ok_or_else(|| ServiceError::not_found("incident", "安全事件", id))
    }

    /// The incident `id`, if it is not closed.
    fn open_incident(&self, id: &str) -> Result<Incident> {
        let incident = self.incident(id)?;
        if incident.closed {
            return Err(ServiceError::precondition(format!("incident {id} is closed"), "该安全事件已结案"));
        }
        Ok(incident)
    }

    /// A data provider's signed consent to a licence over its conditionally shared dataset.
    pub(crate) async fn consent_licence(&self, caller: &Caller, signed: Vec<u8>) -> Result<Licence> {
        let entry = self.signed_entry(caller, &signed, kind::LICENCE_CONSENTED)?;
        let (id, dataset) = (field(&entry, "licence")?, field(&entry, "dataset")?);
        // Nothing else: another field (an `operator`, a `recipient`) would show the entry to
        // other tenants, and the log keeps whatever it is given.
        if entry.fields().len() != 2 {
            return Err(ServiceError::invalid(
                "a consent has the fields licence and dataset, nothing else",
                "同意条目只能包含 licence 与 dataset 两个字段",
            ));
        }
        check_id("licence", id)?;
        if !caller.datasets.iter().any(|d| d == dataset) {
            return Err(ServiceError::denied(
                format!("{} does not provide dataset {dataset}", caller.name),
                format!("数据集 {dataset} 不由本部门提供"),
            ));
        }
        let guard = self.lock().await;
        // A licence over none of its datasets is answered as a missing one.
        let licence = self.licence(id).ok().filter(|l| l.datasets.iter().any(|d| caller.datasets.contains(d)));
        let licence = licence.ok_or_else(|| ServiceError::not_found("licence", "授权运营协议", id))?;
        if licence.status == LicenceStatus::Revoked || !licence.awaiting.iter().any(|d| d == dataset) {
            return Err(ServiceError::precondition(
                format!("licence {id} awaits no consent for {dataset}"),
                format!("授权运营协议 {id} 无须就数据集 {dataset} 征得同意"),
            ));
        }
        self.core.commit(&guard, signed).await?;
        self.licence(id)
    }

    /// Suspends, resumes or revokes a licence; runs held for review under a revoked one end.
    pub(crate) async fn licence_action(
        &self,
        caller: &Caller,
        action: LicenceAction,
        id: &str,
        reason: &str,
    ) -> Result<Licence> {
        check_id("id", id)?;
        check_text("reason", reason, !matches!(action, LicenceAction::Resume))?;
        let guard = self.lock().await;
        let licence = self.licence(id)?;
        if !action.applies_to(licence.status) {
            let status = licence.status.as_str();
            return Err(ServiceError::precondition(
                format!("licence {id} is {status}; {action:?} does not apply"),
                format!("授权运营协议 {id} 当前状态为 {status}，不能执行此操作"),
            ));
        }
        self.core.commit_event(&guard, &caller.name, action.event(id, reason)).await?;
        runs::end_held(&self.core, &guard).await?;
        self.licence(id)
    }

    /// Operators see their own licences; the bureau, all.
    pub(crate) fn licences(&self, caller: &Caller) -> Result<Vec<Licence>> {
        let scope = super::scope(caller);
        Ok(self.core.view()?.licences(scope)?)
    }

    pub(crate) async fn create_agreement(&self, caller: &Caller, a: NewAgreement) -> Result<Agreement> {
        check_id("id", &a.id)?;
        check_id("licence", &a.licence)?;
        check_id("application_unit", &a.application_unit)?;
        check_text("scenario", &a.scenario, true)?;
        if check_time("valid_until", &a.valid_until)? <= now() {
            return Err(ServiceError::invalid("valid_until is in the past", "失效时间已过"));
        }
        let guard = self.lock().await;
        let licence = self.licence(&a.licence)?;
        if licence.operator != caller.name {
            return Err(ServiceError::not_found("licence", "授权运营协议", &a.licence));
        }
        if !licence.in_force(now()) {
            return Err(ServiceError::precondition(
                format!("licence {} is not in force", a.licence),
                "授权运营协议未生效或已暂停",
            ));
        }
        self.principal_acting_as(&a.application_unit, Role::ApplicationUnit)?;
        if self.core.view()?.agreement(&a.id)?.is_some() {
            return Err(ServiceError::exists(format!("agreement {} exists", a.id), "数据服务协议已存在"));
        }
        let event = Event::AgreementSigned {
            agreement: a.id.clone(),
            licence: a.licence,
            application_unit: a.application_unit,
            scenario: a.scenario,
            valid_until: a.valid_until,
        };
        self.core.commit_event(&guard, &caller.name, event).await?;
        self.agreement(&a.id)
    }

    /// Ends an agreement (an operator, its own); runs held for review under it end.
    pub(crate) async fn end_agreement(&self, caller: &Caller, id: &str, reason: &str) -> Result<Agreement> {
        check_id("id", id)?;
        check_text("reason", reason, false)?;
        let guard = self.lock().await;
        let agreement = self.agreement(id)?;
        if super::scope(caller) != Scope::All && agreement.operator != caller.name {
            return Err(ServiceError::not_found("agreement", "数据服务协议", id));
        }
        if agreement.ended {
            return Err(ServiceError::precondition(format!("agreement {id} has ended already"), "数据服务协议已终止"));
        }
        let event =
            Event::AgreementEnded { agreement: id.to_owned(), reason: (!reason.is_empty()).then(|| reason.to_owned()) };
        self.core.commit_event(&guard, &caller.name, event).await?;
        runs::end_held(&self.core, &guard).await?;
        self.agreement(id)
    }

    /// Operators and application units see their own agreements; administrators and
    /// reviewers, all.
    pub(crate) fn agreements(&self, caller: &Caller) -> Result<Vec<Agreement>> {
        let scope = super::scope(caller);
        Ok(self.core.view()?.agreements(scope)?)
    }
}
