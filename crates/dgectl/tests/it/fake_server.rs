//! A stand-in DGE Identity gRPC server on 127.0.0.1, port chosen by the system,
//! answering from fixed data so that dgectl can be run end to end.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use dge_proto::v1::account_registry_server::{AccountRegistry, AccountRegistryServer};
use dge_proto::v1::authorization_server::{Authorization, AuthorizationServer};
use dge_proto::v1::client_registry_server::{ClientRegistry, ClientRegistryServer};
use dge_proto::v1::validation_workflow_server::{ValidationWorkflow, ValidationWorkflowServer};
use dge_proto::v1::*;
use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The administrator token the fake accepts.
pub(crate) const ADMIN_TOKEN: &str = "test-admin-token-5f1c";
/// The person's access token for which `Check` says yes.
pub(crate) const GOOD_ACCESS_TOKEN: &str = "good-access-token";
/// The secret the fake hands out for confidential clients.
pub(crate) const CLIENT_SECRET: &str = "generated-client-secret-9a8b";

type Answer<T> = Result<Response<T>, Status>;

/// Counts calls that change state, so tests can assert none was made.
#[derive(Default)]
pub(crate) struct Fake {
    pub(crate) rejections: AtomicUsize,
    pub(crate) revocations: AtomicUsize,
}

/// Starts the fake and returns its address and its call counters.
pub(crate) async fn start() -> (SocketAddr, Arc<Fake>) {
    start_with(Server::builder()).await
}

/// Starts the fake over TLS with this certificate and key (PEM).
pub(crate) async fn start_tls(cert_pem: &str, key_pem: &str) -> (SocketAddr, Arc<Fake>) {
    let tls = tonic::transport::ServerTlsConfig::new()
        .identity(tonic::transport::Identity::from_pem(cert_pem, key_pem));
    start_with(Server::builder().tls_config(tls).expect("TLS config")).await
}

async fn start_with(mut builder: Server) -> (SocketAddr, Arc<Fake>) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("bound address");
    let fake = Arc::new(Fake::default());
    let router = builder
        .add_service(AccountRegistryServer::from_arc(fake.clone()))
        .add_service(ValidationWorkflowServer::from_arc(fake.clone()))
        .add_service(ClientRegistryServer::from_arc(fake.clone()))
        .add_service(AuthorizationServer::from_arc(fake.clone()));
    tokio::spawn(router.serve_with_incoming(TcpIncoming::from(listener)));
    (addr, fake)
}

fn authorise<T>(request: &Request<T>) -> Result<(), Status> {
    let expected = format!("Bearer {ADMIN_TOKEN}");
    match request.metadata().get("authorization") {
        Some(value) if value.to_str().ok() == Some(expected.as_str()) => Ok(()),
        _ => Err(Status::unauthenticated("invalid token")),
    }
}

fn account(login: &str, status: AccountStatus) -> Account {
    Account {
        id: format!("id-{login}"),
        login: login.to_owned(),
        email: format!("{login}@strasbourg.eu"),
        given_name: "Alice".to_owned(),
        family_name: "Martin".to_owned(),
        organisation_id: "eurometropole-strasbourg".to_owned(),
        organisation_name: "Eurométropole de Strasbourg".to_owned(),
        description: "Publier les données de mobilité de la métropole, chaque semaine.".to_owned(),
        status: status as i32,
        kind: AccountKind::Local as i32,
        created_at: 1_700_000_000,
        email_verified: true,
        ..Account::default()
    }
}

fn known_account(key: &str) -> Result<Account, Status> {
    match key {
        "alice" => Ok(account("alice", AccountStatus::Pending)),
        "bob" => Ok(account("bob", AccountStatus::Active)),
        _ => Err(Status::not_found("account not found")),
    }
}

#[tonic::async_trait]
impl AccountRegistry for Fake {
    async fn sign_up(&self, _: Request<SignUpRequest>) -> Answer<SignUpResponse> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn confirm_email(&self, _: Request<ConfirmEmailRequest>) -> Answer<ConfirmEmailResponse> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn get_account(&self, request: Request<GetAccountRequest>) -> Answer<GetAccountResponse> {
        authorise(&request)?;
        let account = known_account(&request.get_ref().key)?;
        Ok(Response::new(GetAccountResponse {
            account: Some(account),
        }))
    }

    async fn unlock_account(
        &self,
        request: Request<UnlockAccountRequest>,
    ) -> Answer<UnlockAccountResponse> {
        authorise(&request)?;
        let account = known_account(&request.get_ref().key)?;
        Ok(Response::new(UnlockAccountResponse {
            account: Some(account),
        }))
    }

    async fn list_accounts(
        &self,
        request: Request<ListAccountsRequest>,
    ) -> Answer<ListAccountsResponse> {
        authorise(&request)?;
        let wanted = request.get_ref().status;
        let accounts = [
            account("alice", AccountStatus::Pending),
            account("bob", AccountStatus::Active),
        ]
        .into_iter()
        .filter(|a| wanted == AccountStatus::Unspecified as i32 || a.status == wanted)
        .collect();
        Ok(Response::new(ListAccountsResponse { accounts }))
    }

    // Issue 3's calls: dgectl does not use them.
    async fn resend_confirmation(
        &self,
        _: Request<dge_proto::v1::ResendConfirmationRequest>,
    ) -> Answer<dge_proto::v1::ResendConfirmationResponse> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn request_password_reset(
        &self,
        _: Request<dge_proto::v1::RequestPasswordResetRequest>,
    ) -> Answer<dge_proto::v1::RequestPasswordResetResponse> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn reset_password(
        &self,
        _: Request<dge_proto::v1::ResetPasswordRequest>,
    ) -> Answer<dge_proto::v1::ResetPasswordResponse> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn get_profile(
        &self,
        _: Request<dge_proto::v1::GetProfileRequest>,
    ) -> Answer<dge_proto::v1::GetProfileResponse> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn update_profile(
        &self,
        _: Request<dge_proto::v1::UpdateProfileRequest>,
    ) -> Answer<dge_proto::v1::UpdateProfileResponse> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn change_password(
        &self,
        _: Request<dge_proto::v1::ChangePasswordRequest>,
    ) -> Answer<dge_proto::v1::ChangePasswordResponse> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn request_email_change(
        &self,
        _: Request<dge_proto::v1::RequestEmailChangeRequest>,
    ) -> Answer<dge_proto::v1::RequestEmailChangeResponse> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn confirm_email_change(
        &self,
        _: Request<dge_proto::v1::ConfirmEmailChangeRequest>,
    ) -> Answer<dge_proto::v1::ConfirmEmailChangeResponse> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn export_personal_data(
        &self,
        _: Request<dge_proto::v1::ExportPersonalDataRequest>,
    ) -> Answer<dge_proto::v1::ExportPersonalDataResponse> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn delete_account(
        &self,
        _: Request<dge_proto::v1::DeleteAccountRequest>,
    ) -> Answer<dge_proto::v1::DeleteAccountResponse> {
        Err(Status::unimplemented("not in the fake"))
    }
}

#[tonic::async_trait]
impl ValidationWorkflow for Fake {
    // Calls the dgectl tests do not exercise answer UNIMPLEMENTED.
    async fn list_pending(
        &self,
        _: Request<ListPendingRequest>,
    ) -> Result<Response<ListPendingResponse>, Status> {
        Err(Status::unimplemented("not faked"))
    }

    async fn decide_accounts(
        &self,
        _: Request<DecideAccountsRequest>,
    ) -> Result<Response<DecideAccountsResponse>, Status> {
        Err(Status::unimplemented("not faked"))
    }

    async fn create_organisation(
        &self,
        _: Request<CreateOrganisationRequest>,
    ) -> Result<Response<CreateOrganisationResponse>, Status> {
        Err(Status::unimplemented("not faked"))
    }

    async fn update_organisation(
        &self,
        _: Request<UpdateOrganisationRequest>,
    ) -> Result<Response<UpdateOrganisationResponse>, Status> {
        Err(Status::unimplemented("not faked"))
    }

    async fn accept_organisation(
        &self,
        _: Request<AcceptOrganisationRequest>,
    ) -> Result<Response<AcceptOrganisationResponse>, Status> {
        Err(Status::unimplemented("not faked"))
    }

    async fn merge_organisation(
        &self,
        _: Request<MergeOrganisationRequest>,
    ) -> Result<Response<MergeOrganisationResponse>, Status> {
        Err(Status::unimplemented("not faked"))
    }

    async fn add_organisation_admin(
        &self,
        _: Request<AddOrganisationAdminRequest>,
    ) -> Result<Response<AddOrganisationAdminResponse>, Status> {
        Err(Status::unimplemented("not faked"))
    }

    async fn grant_admin(&self, _: Request<GrantAdminRequest>) -> Answer<GrantAdminResponse> {
        Err(Status::unimplemented("not faked"))
    }

    async fn revoke_admin(&self, _: Request<RevokeAdminRequest>) -> Answer<RevokeAdminResponse> {
        Err(Status::unimplemented("not faked"))
    }

    async fn list_admins(&self, _: Request<ListAdminsRequest>) -> Answer<ListAdminsResponse> {
        Err(Status::unimplemented("not faked"))
    }

    async fn suspend_account(
        &self,
        _: Request<SuspendAccountRequest>,
    ) -> Answer<SuspendAccountResponse> {
        Err(Status::unimplemented("not faked"))
    }

    async fn reactivate_account(
        &self,
        _: Request<ReactivateAccountRequest>,
    ) -> Answer<ReactivateAccountResponse> {
        Err(Status::unimplemented("not faked"))
    }

    async fn declare_module(
        &self,
        _: Request<DeclareModuleRequest>,
    ) -> Result<Response<DeclareModuleResponse>, Status> {
        Err(Status::unimplemented("not faked"))
    }

    async fn declare_right(
        &self,
        _: Request<DeclareRightRequest>,
    ) -> Result<Response<DeclareRightResponse>, Status> {
        Err(Status::unimplemented("not faked"))
    }

    async fn define_role(
        &self,
        _: Request<DefineRoleRequest>,
    ) -> Result<Response<DefineRoleResponse>, Status> {
        Err(Status::unimplemented("not faked"))
    }

    async fn grant_role(
        &self,
        _: Request<GrantRoleRequest>,
    ) -> Result<Response<GrantRoleResponse>, Status> {
        Err(Status::unimplemented("not faked"))
    }

    async fn list_grants(
        &self,
        _: Request<ListGrantsRequest>,
    ) -> Result<Response<ListGrantsResponse>, Status> {
        Err(Status::unimplemented("not faked"))
    }

    async fn list_audit_events(
        &self,
        _: Request<ListAuditEventsRequest>,
    ) -> Result<Response<ListAuditEventsResponse>, Status> {
        Err(Status::unimplemented("not faked"))
    }

    async fn import_organisations(
        &self,
        _: Request<tonic::Streaming<ImportOrganisationRow>>,
    ) -> Result<Response<ImportOrganisationsResponse>, Status> {
        Err(Status::unimplemented("not faked"))
    }

    type WatchRightsStream = tokio_stream::Empty<Result<RightChange, Status>>;

    async fn watch_rights(
        &self,
        _: Request<WatchRightsRequest>,
    ) -> Result<Response<Self::WatchRightsStream>, Status> {
        Err(Status::unimplemented("not faked"))
    }

    async fn approve_account(
        &self,
        request: Request<ApproveAccountRequest>,
    ) -> Answer<ApproveAccountResponse> {
        authorise(&request)?;
        let mut account = known_account(&request.get_ref().account)?;
        account.status = AccountStatus::Active as i32;
        Ok(Response::new(ApproveAccountResponse {
            account: Some(account),
        }))
    }

    async fn reject_account(
        &self,
        request: Request<RejectAccountRequest>,
    ) -> Answer<RejectAccountResponse> {
        authorise(&request)?;
        self.rejections.fetch_add(1, Ordering::SeqCst);
        let request = request.into_inner();
        let mut details = ErrorDetails::new();
        if request.reason.chars().count() < 10 {
            details.add_bad_request_violation("reason", "must be at least 10 characters");
        }
        if request.account != "alice" {
            details.add_bad_request_violation("account", "no pending account with this login");
        }
        if details.has_bad_request_violations() {
            return Err(Status::with_error_details(
                Code::InvalidArgument,
                "the rejection is not valid",
                details,
            ));
        }
        let mut account = account("alice", AccountStatus::Rejected);
        account.rejection_reason = request.reason;
        Ok(Response::new(RejectAccountResponse {
            account: Some(account),
        }))
    }

    async fn grant_right(&self, request: Request<GrantRightRequest>) -> Answer<GrantRightResponse> {
        authorise(&request)?;
        Ok(Response::new(GrantRightResponse {
            granted: true,
            end_changed: false,
        }))
    }

    async fn revoke_right(
        &self,
        request: Request<RevokeRightRequest>,
    ) -> Answer<RevokeRightResponse> {
        authorise(&request)?;
        self.revocations.fetch_add(1, Ordering::SeqCst);
        Ok(Response::new(RevokeRightResponse { revoked: true }))
    }

    async fn list_organisations(
        &self,
        request: Request<ListOrganisationsRequest>,
    ) -> Answer<ListOrganisationsResponse> {
        authorise(&request)?;
        Ok(Response::new(ListOrganisationsResponse {
            organisations: vec![Organisation {
                id: "region-grand-est".to_owned(),
                name: "Région Grand Est".to_owned(),
                siret: String::new(),
                trusted: true,
                status: "active".to_owned(),
                email_domains: vec!["grandest.fr".to_owned()],
            }],
        }))
    }

    async fn list_modules(
        &self,
        request: Request<ListModulesRequest>,
    ) -> Answer<ListModulesResponse> {
        authorise(&request)?;
        Ok(Response::new(ListModulesResponse { modules: vec![] }))
    }
}

#[tonic::async_trait]
impl ClientRegistry for Fake {
    async fn add_client(&self, request: Request<AddClientRequest>) -> Answer<AddClientResponse> {
        authorise(&request)?;
        let request = request.into_inner();
        let client_secret = if request.confidential {
            CLIENT_SECRET.to_owned()
        } else {
            String::new()
        };
        let client = Client {
            id: request.id,
            name: request.name,
            redirect_uris: request.redirect_uris,
            confidential: request.confidential,
            first_party: request.first_party,
            post_logout_redirect_uris: request.post_logout_redirect_uris,
            settings: request.settings,
        };
        Ok(Response::new(AddClientResponse {
            client: Some(client),
            client_secret,
        }))
    }

    async fn list_clients(
        &self,
        request: Request<ListClientsRequest>,
    ) -> Answer<ListClientsResponse> {
        authorise(&request)?;
        Ok(Response::new(ListClientsResponse { clients: vec![] }))
    }

    async fn update_client(
        &self,
        request: Request<UpdateClientRequest>,
    ) -> Answer<UpdateClientResponse> {
        authorise(&request)?;
        Err(Status::not_found("aucun client ne porte cet identifiant"))
    }

    async fn rotate_client_secret(
        &self,
        request: Request<RotateClientSecretRequest>,
    ) -> Answer<RotateClientSecretResponse> {
        authorise(&request)?;
        Ok(Response::new(RotateClientSecretResponse {
            client_secret: CLIENT_SECRET.to_owned(),
        }))
    }

    async fn remove_client(
        &self,
        request: Request<RemoveClientRequest>,
    ) -> Answer<RemoveClientResponse> {
        authorise(&request)?;
        Ok(Response::new(RemoveClientResponse::default()))
    }
}

#[tonic::async_trait]
impl Authorization for Fake {
    async fn check(&self, request: Request<CheckRequest>) -> Answer<CheckResponse> {
        authorise(&request)?;
        let request = request.into_inner();
        let response = if request.access_token == GOOD_ACCESS_TOKEN {
            CheckResponse {
                allowed: true,
                subject: "id-bob".to_owned(),
                reason: String::new(),
            }
        } else {
            CheckResponse {
                allowed: false,
                subject: String::new(),
                reason: "invalid_token".to_owned(),
            }
        };
        Ok(Response::new(response))
    }

    async fn list_rights(&self, request: Request<ListRightsRequest>) -> Answer<ListRightsResponse> {
        authorise(&request)?;
        Ok(Response::new(ListRightsResponse {
            rights: vec!["datahub:publish".to_owned()],
        }))
    }

    async fn introspect(
        &self,
        _request: Request<dge_proto::v1::IntrospectRequest>,
    ) -> Answer<dge_proto::v1::IntrospectResponse> {
        Err(Status::unimplemented("not faked"))
    }

    async fn revoke(
        &self,
        _request: Request<dge_proto::v1::RevokeRequest>,
    ) -> Answer<dge_proto::v1::RevokeResponse> {
        Err(Status::unimplemented("not faked"))
    }
}
