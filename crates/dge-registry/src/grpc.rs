//! The `AccountRegistry` gRPC service.

use dge_authz::Authenticator;
use dge_authz::caller::unavailable;
use dge_core::{Secret, Violations};
use dge_proto::v1 as pb;
use dge_proto::v1::account_registry_server::AccountRegistry;
use tonic::{Request, Response, Status};

use crate::account::{EMAIL_CHANGE_ANSWER, ProfileForm, RESEND_ANSWER};
use crate::domain::{Account, AccountStatus, SignUpForm};
use crate::reset::RESET_ANSWER;
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
        AccountStatus::Suspended => pb::AccountStatus::Suspended,
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
        suspended_until: a.suspended_until.unwrap_or_default(),
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

impl AccountRegistryService {
    /// The account id of a person calling with their own access token.
    async fn me(&self, metadata: &tonic::metadata::MetadataMap) -> Result<String, Status> {
        self.auth.require_own_account(metadata).await
    }

    async fn profile(&self, id: &str) -> Result<pb::Account, Status> {
        let account = self.registry.own_account(id).await?;
        Ok(account_to_proto(account))
    }
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

    async fn unlock_account(
        &self,
        request: Request<pb::UnlockAccountRequest>,
    ) -> Result<Response<pb::UnlockAccountResponse>, Status> {
        let caller = self.auth.require_admin(request.metadata()).await?;
        let key = request.into_inner().key;
        required("key", &key)?;
        let account = self
            .registry
            .unlock(&key, &caller.actor())
            .await?
            .ok_or_else(|| Status::not_found("account not found"))?;
        Ok(Response::new(pb::UnlockAccountResponse {
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
            Ok(pb::AccountStatus::Suspended) => Some(AccountStatus::Suspended),
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

    async fn resend_confirmation(
        &self,
        request: Request<pb::ResendConfirmationRequest>,
    ) -> Result<Response<pb::ResendConfirmationResponse>, Status> {
        self.auth.authenticate(request.metadata()).await?;
        let email = request.into_inner().email;
        required("email", &email)?;
        self.registry.request_confirmation_again(&email)?;
        Ok(Response::new(pb::ResendConfirmationResponse {
            message: RESEND_ANSWER.to_owned(),
        }))
    }

    async fn request_password_reset(
        &self,
        request: Request<pb::RequestPasswordResetRequest>,
    ) -> Result<Response<pb::RequestPasswordResetResponse>, Status> {
        self.auth.authenticate(request.metadata()).await?;
        let email = request.into_inner().email;
        required("email", &email)?;
        self.registry.request_password_reset(&email)?;
        Ok(Response::new(pb::RequestPasswordResetResponse {
            message: RESET_ANSWER.to_owned(),
        }))
    }

    async fn reset_password(
        &self,
        request: Request<pb::ResetPasswordRequest>,
    ) -> Result<Response<pb::ResetPasswordResponse>, Status> {
        self.auth.authenticate(request.metadata()).await?;
        let r = request.into_inner();
        required("token", &r.token)?;
        self.registry
            .reset_password(
                &r.token,
                &Secret::new(r.password),
                &Secret::new(r.password_confirmation),
            )
            .await?;
        Ok(Response::new(pb::ResetPasswordResponse {}))
    }

    async fn get_profile(
        &self,
        request: Request<pb::GetProfileRequest>,
    ) -> Result<Response<pb::GetProfileResponse>, Status> {
        let id = self.me(request.metadata()).await?;
        Ok(Response::new(pb::GetProfileResponse {
            account: Some(self.profile(&id).await?),
        }))
    }

    async fn update_profile(
        &self,
        request: Request<pb::UpdateProfileRequest>,
    ) -> Result<Response<pb::UpdateProfileResponse>, Status> {
        let id = self.me(request.metadata()).await?;
        let r = request.into_inner();
        let form = ProfileForm {
            given_name: r.given_name,
            family_name: r.family_name,
            phone: r.phone,
            function: r.function,
        };
        let account = self.registry.update_profile(&id, &form).await?;
        Ok(Response::new(pb::UpdateProfileResponse {
            account: Some(account_to_proto(account)),
        }))
    }

    async fn change_password(
        &self,
        request: Request<pb::ChangePasswordRequest>,
    ) -> Result<Response<pb::ChangePasswordResponse>, Status> {
        let id = self.me(request.metadata()).await?;
        let r = request.into_inner();
        self.registry
            .change_password(
                &id,
                &Secret::new(r.current_password),
                &Secret::new(r.password),
                &Secret::new(r.password_confirmation),
            )
            .await?;
        Ok(Response::new(pb::ChangePasswordResponse {}))
    }

    async fn request_email_change(
        &self,
        request: Request<pb::RequestEmailChangeRequest>,
    ) -> Result<Response<pb::RequestEmailChangeResponse>, Status> {
        let id = self.me(request.metadata()).await?;
        let r = request.into_inner();
        required("new_email", &r.new_email)?;
        self.registry
            .request_email_change(&id, &r.new_email, &Secret::new(r.current_password))
            .await?;
        Ok(Response::new(pb::RequestEmailChangeResponse {
            message: EMAIL_CHANGE_ANSWER.to_owned(),
        }))
    }

    async fn confirm_email_change(
        &self,
        request: Request<pb::ConfirmEmailChangeRequest>,
    ) -> Result<Response<pb::ConfirmEmailChangeResponse>, Status> {
        self.auth.authenticate(request.metadata()).await?;
        let token = request.into_inner().token;
        required("token", &token)?;
        self.registry.confirm_email_change(&token).await?;
        Ok(Response::new(pb::ConfirmEmailChangeResponse {}))
    }

    async fn export_personal_data(
        &self,
        request: Request<pb::ExportPersonalDataRequest>,
    ) -> Result<Response<pb::ExportPersonalDataResponse>, Status> {
        let id = self.me(request.metadata()).await?;
        let data = self.registry.export_personal_data(&id).await?;
        Ok(Response::new(pb::ExportPersonalDataResponse {
            json: data.to_string(),
        }))
    }

    async fn delete_account(
        &self,
        request: Request<pb::DeleteAccountRequest>,
    ) -> Result<Response<pb::DeleteAccountResponse>, Status> {
        let id = self.me(request.metadata()).await?;
        let r = request.into_inner();
        self.registry
            .delete_account(&id, &Secret::new(r.current_password), r.confirm)
            .await?;
        Ok(Response::new(pb::DeleteAccountResponse {}))
    }
}
