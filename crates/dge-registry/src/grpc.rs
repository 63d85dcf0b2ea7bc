//! The `AccountRegistry` gRPC service.

use dge_authz::Authenticator;
use dge_authz::caller::unavailable;
use dge_core::{Secret, Violations};
use dge_proto::v1 as pb;
use dge_proto::v1::account_registry_server::AccountRegistry;
use tonic::{Request, Response, Status};

use crate::domain::{Account, AccountStatus, SignUpForm};
use crate::{Registry, store};

/// The message every sign-up gets, whatever happened to the address.
pub const SIGN_UP_ANSWER: &str = "Un courriel de confirmation a été envoyé à l'adresse indiquée.";

/// gRPC face of the [`Registry`].
#[derive(Debug, Clone)]
pub struct AccountRegistryService {
    registry: Registry,
    auth: Authenticator,
}

impl AccountRegistryService {
    /// A new service.
    #[must_use]
    pub fn new(registry: Registry, auth: Authenticator) -> Self {
        Self { registry, auth }
    }
}

/// The wire form of an account status.
#[must_use]
pub fn status_to_proto(status: AccountStatus) -> pb::AccountStatus {
    match status {
        AccountStatus::Unconfirmed => pb::AccountStatus::Unconfirmed,
        AccountStatus::Pending => pb::AccountStatus::Pending,
        AccountStatus::Active => pb::AccountStatus::Active,
        AccountStatus::Rejected => pb::AccountStatus::Rejected,
    }
}

/// The wire form of an account.
#[must_use]
pub fn account_to_proto(a: Account) -> pb::Account {
    let kind = if a.kind == "federated" {
        pb::AccountKind::Federated
    } else {
        pb::AccountKind::Local
    };
    pb::Account {
        id: a.id,
        login: a.login.unwrap_or_default(),
        email: a.email,
        given_name: a.given_name,
        family_name: a.family_name,
        phone: a.phone,
        organisation_id: a.organisation_id.unwrap_or_default(),
        organisation_name: a.organisation_name.unwrap_or_default(),
        function: a.function,
        description: a.description,
        status: status_to_proto(a.status).into(),
        kind: kind.into(),
        created_at: a.created_at,
        email_verified: a.email_verified,
        rejection_reason: a.rejection_reason,
    }
}

fn required(field: &'static str, value: &str) -> Result<(), Status> {
    if value.trim().is_empty() {
        let mut v = Violations::new();
        v.add(field, "required", "ce champ est obligatoire");
        return Err(v.into_status());
    }
    Ok(())
}

#[tonic::async_trait]
impl AccountRegistry for AccountRegistryService {
    async fn sign_up(
        &self,
        request: Request<pb::SignUpRequest>,
    ) -> Result<Response<pb::SignUpResponse>, Status> {
        self.auth.authenticate(request.metadata()).await?;
        let r = request.into_inner();
        let form = SignUpForm {
            given_name: r.given_name,
            family_name: r.family_name,
            email: r.email,
            phone: r.phone,
            organisation_id: r.organisation_id,
            proposed_organisation: r.proposed_organisation,
            function: r.function,
            description: r.description,
            login: r.login,
            password: Secret::new(r.password),
            password_confirmation: Secret::new(r.password_confirmation),
        };
        self.registry.sign_up(&form).await?;
        Ok(Response::new(pb::SignUpResponse {
            message: SIGN_UP_ANSWER.to_owned(),
        }))
    }

    async fn confirm_email(
        &self,
        request: Request<pb::ConfirmEmailRequest>,
    ) -> Result<Response<pb::ConfirmEmailResponse>, Status> {
        self.auth.authenticate(request.metadata()).await?;
        let token = request.into_inner().token;
        required("token", &token)?;
        let account = self.registry.confirm_email(&token).await?;
        Ok(Response::new(pb::ConfirmEmailResponse {
            status: status_to_proto(account.status).into(),
        }))
    }

    async fn get_account(
        &self,
        request: Request<pb::GetAccountRequest>,
    ) -> Result<Response<pb::GetAccountResponse>, Status> {
        self.auth.require_admin(request.metadata()).await?;
        let key = request.into_inner().key;
        required("key", &key)?;
        let account = store::find_account(self.registry.db(), &key)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| Status::not_found("account not found"))?;
        Ok(Response::new(pb::GetAccountResponse {
            account: Some(account_to_proto(account)),
        }))
    }

    async fn list_accounts(
        &self,
        request: Request<pb::ListAccountsRequest>,
    ) -> Result<Response<pb::ListAccountsResponse>, Status> {
        self.auth.require_admin(request.metadata()).await?;
        let r = request.into_inner();
        let status = match pb::AccountStatus::try_from(r.status) {
            Ok(pb::AccountStatus::Unspecified) => None,
            Ok(pb::AccountStatus::Unconfirmed) => Some(AccountStatus::Unconfirmed),
            Ok(pb::AccountStatus::Pending) => Some(AccountStatus::Pending),
            Ok(pb::AccountStatus::Active) => Some(AccountStatus::Active),
            Ok(pb::AccountStatus::Rejected) => Some(AccountStatus::Rejected),
            Err(_) => {
                let mut v = Violations::new();
                v.add("status", "unknown", "statut inconnu");
                return Err(v.into_status());
            }
        };
        let limit = i64::from(if r.limit == 0 { 100 } else { r.limit.min(1000) });
        let accounts = store::list_accounts(self.registry.db(), status, limit)
            .await
            .map_err(unavailable)?;
        Ok(Response::new(pb::ListAccountsResponse {
            accounts: accounts.into_iter().map(account_to_proto).collect(),
        }))
    }
}
