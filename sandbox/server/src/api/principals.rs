use sandbox_proto::v1 as pb;
use sandbox_proto::v1::principals_server::Principals;
use tonic::Request;

use super::{Api, Reply, principal};
use crate::auth::Role;
use crate::service::{NewPrincipal, WithToken};

#[tonic::async_trait]
impl Principals for Api {
    async fn register(&self, request: Request<pb::RegisterPrincipalRequest>) -> Reply<pb::RegisterPrincipalResponse> {
        self.call("Principals.Register", request, |s, caller, r| async move {
            let provider = (!r.provider.is_empty()).then_some(r.provider);
            let role = Role::from_proto(r.role);
            let new = NewPrincipal { name: r.name, role, display_name: r.display_name, key: r.key, provider };
            let WithToken { principal: p, token, log_index } = s.register_principal(&caller, new).await?;
            Ok(pb::RegisterPrincipalResponse { principal: Some(principal(p)), token, log_index })
        })
        .await
    }

    async fn list(&self, request: Request<pb::Empty>) -> Reply<pb::PrincipalList> {
        self.call("Principals.List", request, |s, caller, _| async move {
            Ok(pb::PrincipalList { principals: s.principals(&caller)?.into_iter().map(principal).collect() })
        })
        .await
    }

    async fn whoami(&self, request: Request<pb::Empty>) -> Reply<pb::Principal> {
        self.call("Principals.Whoami", request, |s, caller, _| async move { s.whoami(&caller).map(principal) }).await
    }

    async fn disable(&self, request: Request<pb::PrincipalAction>) -> Reply<pb::Principal> {
        self.call("Principals.Disable", request, |s, caller, r| async move {
            s.disable_principal(&caller, &r.name, &r.reason).await.map(principal)
        })
        .await
    }

    async fn enable(&self, request: Request<pb::PrincipalAction>) -> Reply<pb::Principal> {
        self.call("Principals.Enable", request, |s, caller, r| async move {
            s.enable_principal(&caller, &r.name).await.map(principal)
        })
        .await
    }

    async fn rotate_token(&self, request: Request<pb::PrincipalAction>) -> Reply<pb::TokenRotated> {
        self.call("Principals.RotateToken", request, |s, caller, r| async move {
            let WithToken { principal: p, token, log_index } = s.rotate_token(&caller, &r.name).await?;
            Ok(pb::TokenRotated { principal: Some(principal(p)), token, log_index })
        })
        .await
    }

    async fn revoke_token(&self, request: Request<pb::PrincipalAction>) -> Reply<pb::Principal> {
        self.call("Principals.RevokeToken", request, |s, caller, r| async move {
            s.revoke_token(&caller, &r.name, &r.reason).await.map(principal)
        })
        .await
    }
}
