//! Principals and their tokens.

use sandbox_verify::event::Event;
use sandbox_verify::note::VerifierKey;

use super::{Result, Service, check_id, check_text};
use crate::auth::{self, Caller, Role};
use crate::error::ServiceError;
use crate::model::Principal;
use crate::state::Scope;

/// A principal to register.
#[derive(Debug)]
pub(crate) struct NewPrincipal {
    pub(crate) name: String,
    pub(crate) role: Option<Role>,
    pub(crate) display_name: String,
    /// Its ed25519 verifier key, in note form, named as the principal.
    pub(crate) key: String,
    /// A provider's organisation, as a dataset's catalog entry names it (in Chinese or English).
    pub(crate) provider: Option<String>,
}

/// A principal with its new token, shown once, and the entry that set it.
#[derive(Debug)]
pub(crate) struct WithToken {
    pub(crate) principal: Principal,
    pub(crate) token: String,
    pub(crate) log_index: u64,
}

impl Service {
    pub(crate) async fn register_principal(&self, caller: &Caller, new: NewPrincipal) -> Result<WithToken> {
        check_id("name", &new.name)?;
        let role = new.role.ok_or_else(|| ServiceError::invalid("role is unspecified or unknown", "角色无效"))?;
        check_text("display_name", &new.display_name, true)?;
        let key = VerifierKey::parse(&new.key)
            .map_err(|e| ServiceError::invalid(format!("key: {e}"), format!("公钥：{}", e.zh())))?;
        if key.name() != new.name {
            return Err(ServiceError::invalid(
                format!("the key is named {}, not {}", key.name(), new.name),
                "公钥名称须与主体名称一致",
            ));
        }
        // A provider speaks for an organisation of the catalog, kept as its Chinese name; no
        // other role speaks for one.
        let provider = match (role, new.provider) {
            (Role::Provider, Some(provider)) => Some(
                self.core
                    .catalog
                    .datasets
                    .iter()
                    .map(|d| &d.provider)
                    .find(|p| p.zh == provider || p.en == provider)
                    .map(|p| p.zh.clone())
                    .ok_or_else(|| {
                        ServiceError::invalid(
                            format!("no dataset of the catalog is provided by {provider:?}"),
                            format!("目录中没有由“{provider}”提供的数据集"),
                        )
                    })?,
            ),
            (Role::Provider, None) => {
                return Err(ServiceError::invalid(
                    "a provider needs its organisation as the catalog names it (provider)",
                    "数源部门须注明目录中的提供部门名称",
                ));
            }
            (_, Some(_)) => {
                return Err(ServiceError::invalid(
                    "only a provider speaks for a provider",
                    "只有数源部门可注明提供部门",
                ));
            }
            (_, None) => None,
        };
        let guard = self.lock().await;
        if self.core.view()?.principal(&new.name)?.is_some() {
            return Err(ServiceError::exists(format!("principal {} exists", new.name), "主体已存在"));
        }
        // One principal speaks for an organisation: a second, registered later by whoever
        // grants licences, could consent in its place (red team of issue 20).
        if let Some(provider) = &provider {
            let all = self.core.view()?.principals(Scope::All)?;
            if let Some(other) = all.iter().find(|p| p.provider.as_ref() == Some(provider)) {
                return Err(ServiceError::exists(
                    format!("{} speaks for {provider} already", other.name),
                    format!("{provider} 已由主体 {} 代表", other.name),
                ));
            }
        }
        let token = auth::new_token();
        let event = Event::PrincipalRegistered {
            principal: new.name.clone(),
            role: role.code().to_owned(),
            key: new.key,
            token_sha256: Some(auth::token_hash(&token)),
            display_name: Some(new.display_name),
            provider,
        };
        let log_index = self.core.commit_event(&guard, &caller.name, event).await?;
        Ok(WithToken { principal: self.principal(&new.name)?, token, log_index })
    }

    /// Administrators see every principal; the others, themselves.
    pub(crate) fn principals(&self, caller: &Caller) -> Result<Vec<Principal>> {
        let scope = if caller.role == Role::Admin { Scope::All } else { Scope::Own(&caller.name) };
        Ok(self.core.view()?.principals(scope)?)
    }

    pub(crate) fn whoami(&self, caller: &Caller) -> Result<Principal> {
        self.principal(&caller.name)
    }

    pub(crate) async fn disable_principal(&self, caller: &Caller, name: &str, reason: &str) -> Result<Principal> {
        check_id("name", name)?;
        check_text("reason", reason, true)?;
        if name == caller.name {
            return Err(ServiceError::precondition("an administrator cannot disable itself", "管理员不能停用自己"));
        }
        let guard = self.lock().await;
        if self.principal(name)?.disabled.is_some() {
            return Err(ServiceError::precondition(format!("{name} is disabled already"), "该主体已被停用"));
        }
        let event = Event::PrincipalDisabled { principal: name.to_owned(), reason: reason.to_owned() };
        self.core.commit_event(&guard, &caller.name, event).await?;
        self.principal(name)
    }

    pub(crate) async fn enable_principal(&self, caller: &Caller, name: &str) -> Result<Principal> {
        check_id("name", name)?;
        let guard = self.lock().await;
        if self.principal(name)?.disabled.is_none() {
            return Err(ServiceError::precondition(format!("{name} is not disabled"), "该主体未被停用"));
        }
        self.core.commit_event(&guard, &caller.name, Event::PrincipalEnabled { principal: name.to_owned() }).await?;
        self.principal(name)
    }

    /// A new token for `name`: the caller's own, or, for an administrator, anyone's.
    pub(crate) async fn rotate_token(&self, caller: &Caller, name: &str) -> Result<WithToken> {
        check_id("name", name)?;
        if name != caller.name && caller.role != Role::Admin {
            return Err(ServiceError::denied(
                "only an administrator rotates another's token",
                "只有管理员可以更换他人的令牌",
            ));
        }
        let guard = self.lock().await;
        self.principal(name)?;
        let token = auth::new_token();
        let event = Event::TokenRotated { principal: name.to_owned(), token_sha256: auth::token_hash(&token) };
        let log_index = self.core.commit_event(&guard, &caller.name, event).await?;
        Ok(WithToken { principal: self.principal(name)?, token, log_index })
    }

    pub(crate) async fn revoke_token(&self, caller: &Caller, name: &str, reason: &str) -> Result<Principal> {
        check_id("name", name)?;
        check_text("reason", reason, true)?;
        if name == caller.name {
            return Err(ServiceError::precondition(
                "an administrator cannot revoke its own token",
                "管理员不能撤销自己的令牌",
            ));
        }
        let guard = self.lock().await;
        if self.principal(name)?.token_sha256.is_none() {
            return Err(ServiceError::precondition(format!("{name} has no token"), "该主体没有令牌"));
        }
        let event = Event::TokenRevoked { principal: name.to_owned(), reason: reason.to_owned() };
        self.core.commit_event(&guard, &caller.name, event).await?;
        self.principal(name)
    }
}
