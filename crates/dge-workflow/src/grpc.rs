//! The `ValidationWorkflow` gRPC service.

use std::pin::Pin;

use dge_authz::Authenticator;
use dge_core::Violations;
use dge_proto::v1 as pb;
use dge_proto::v1::validation_workflow_server::ValidationWorkflow;
use dge_registry::grpc::account_to_proto;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::organisations::NewOrganisation;
use crate::queue::PendingFilter;
use crate::rights::AuditFilter;
use crate::{Actor, Error, Workflow};

/// Largest import accepted in one call.
const IMPORT_MAX_ROWS: usize = 50_000;

type GrpcResult<T> = Result<Response<T>, Status>;

/// gRPC face of the [`Workflow`]. Administrators may do everything; delegated
/// organisation administrators only act on their organisations' members.
#[derive(Debug, Clone)]
pub struct ValidationWorkflowService {
    workflow: Workflow,
    auth: Authenticator,
    /// How often a `WatchRights` stream checks its caller again.
    recheck: std::time::Duration,
}

/// A `WatchRights` stream checks its caller again this often: a revoked or expired
/// token, or a suspended account, stops receiving changes within this delay.
pub const WATCH_RECHECK: std::time::Duration = std::time::Duration::from_secs(30);

impl ValidationWorkflowService {
    /// A new service.
    #[must_use]
    pub fn new(workflow: Workflow, auth: Authenticator) -> Self {
        Self {
            workflow,
            auth,
            recheck: WATCH_RECHECK,
        }
    }

    /// The same service, checking `WatchRights` callers again every `every` (tests).
    #[must_use]
    pub fn with_recheck(mut self, every: std::time::Duration) -> Self {
        self.recheck = every;
        self
    }

    async fn actor<T>(&self, request: &Request<T>) -> Result<Actor, Status> {
        let caller = self.auth.authenticate(request.metadata()).await?;
        Ok(Actor::of(self.workflow.db(), &caller).await?)
    }
}

fn require(fields: &[(&'static str, &str)]) -> Result<(), Status> {
    let mut v = Violations::new();
    for (field, value) in fields {
        if value.trim().is_empty() {
            v.add(field, "required", "ce champ est obligatoire");
        }
    }
    v.into_result().map_err(Violations::into_status)
}

fn org_of(r: &pb::ImportOrganisationRow) -> NewOrganisation {
    NewOrganisation {
        name: r.name.clone(),
        siret: r.siret.clone(),
        trusted: r.trusted,
        email_domains: r.email_domains.clone(),
    }
}

#[tonic::async_trait]
impl ValidationWorkflow for ValidationWorkflowService {
    async fn approve_account(
        &self,
        request: Request<pb::ApproveAccountRequest>,
    ) -> GrpcResult<pb::ApproveAccountResponse> {
        let actor = self.actor(&request).await?;
        let r = request.into_inner();
        require(&[("account", &r.account)])?;
        let account = self
            .workflow
            .approve(&actor, &r.account, &r.grant_rights)
            .await?;
        Ok(Response::new(pb::ApproveAccountResponse {
            account: Some(account_to_proto(account)),
        }))
    }

    async fn reject_account(
        &self,
        request: Request<pb::RejectAccountRequest>,
    ) -> GrpcResult<pb::RejectAccountResponse> {
        let actor = self.actor(&request).await?;
        let r = request.into_inner();
        require(&[("account", &r.account), ("reason", &r.reason)])?;
        let account = self.workflow.reject(&actor, &r.account, &r.reason).await?;
        Ok(Response::new(pb::RejectAccountResponse {
            account: Some(account_to_proto(account)),
        }))
    }

    async fn grant_right(
        &self,
        request: Request<pb::GrantRightRequest>,
    ) -> GrpcResult<pb::GrantRightResponse> {
        let actor = self.actor(&request).await?;
        let r = request.into_inner();
        require(&[("account", &r.account), ("right", &r.right)])?;
        // 0 means "no end date"; a negative time is a mistake, not "for ever".
        if r.expires_at < 0 {
            return Err(Error::field(
                "expires_at",
                "in_the_past",
                "la date de fin doit être dans le futur",
            )
            .into());
        }
        let until = (r.expires_at > 0).then_some(r.expires_at);
        let outcome = self
            .workflow
            .grant(&actor, &r.account, r.right.trim(), &r.reason, until)
            .await?;
        Ok(Response::new(pb::GrantRightResponse {
            granted: outcome == crate::rights::GrantOutcome::Granted,
            end_changed: outcome == crate::rights::GrantOutcome::EndChanged,
        }))
    }

    async fn revoke_right(
        &self,
        request: Request<pb::RevokeRightRequest>,
    ) -> GrpcResult<pb::RevokeRightResponse> {
        let actor = self.actor(&request).await?;
        let r = request.into_inner();
        require(&[("account", &r.account), ("right", &r.right)])?;
        let revoked = self
            .workflow
            .revoke(&actor, &r.account, r.right.trim())
            .await?;
        Ok(Response::new(pb::RevokeRightResponse { revoked }))
    }

    async fn list_organisations(
        &self,
        request: Request<pb::ListOrganisationsRequest>,
    ) -> GrpcResult<pb::ListOrganisationsResponse> {
        self.actor(&request).await?;
        let organisations = self.workflow.organisations().await?;
        Ok(Response::new(pb::ListOrganisationsResponse {
            organisations,
        }))
    }

    async fn list_modules(
        &self,
        request: Request<pb::ListModulesRequest>,
    ) -> GrpcResult<pb::ListModulesResponse> {
        self.actor(&request).await?;
        let modules = self.workflow.modules().await?;
        Ok(Response::new(pb::ListModulesResponse { modules }))
    }

    async fn list_pending(
        &self,
        request: Request<pb::ListPendingRequest>,
    ) -> GrpcResult<pb::ListPendingResponse> {
        let actor = self.actor(&request).await?;
        let r = request.into_inner();
        let filter = PendingFilter {
            organisation_id: (!r.organisation_id.is_empty()).then_some(r.organisation_id),
            trusted: r.trusted,
            min_age_secs: r.min_age_secs,
            text: (!r.text.trim().is_empty()).then_some(r.text),
        };
        let (accounts, next) = self
            .workflow
            .pending(&actor, &filter, r.page_size, &r.page_token)
            .await?;
        Ok(Response::new(pb::ListPendingResponse {
            accounts: accounts.into_iter().map(account_to_proto).collect(),
            next_page_token: next,
        }))
    }

    async fn decide_accounts(
        &self,
        request: Request<pb::DecideAccountsRequest>,
    ) -> GrpcResult<pb::DecideAccountsResponse> {
        let actor = self.actor(&request).await?;
        let r = request.into_inner();
        let approve = match pb::Decision::try_from(r.decision) {
            Ok(pb::Decision::Approve) => true,
            Ok(pb::Decision::Reject) => {
                // Checked once for the whole batch: a bad reason refuses the call with
                // its field named, rather than failing each account.
                crate::service::rejection_reason(&r.reason)?;
                false
            }
            _ => {
                let mut v = Violations::new();
                v.add("decision", "required", "approve ou reject");
                return Err(v.into_status());
            }
        };
        if r.accounts.is_empty() || r.accounts.len() > 1000 {
            let mut v = Violations::new();
            v.add("accounts", "invalid", "de 1 à 1000 comptes");
            return Err(v.into_status());
        }
        let results = self
            .workflow
            .decide_many(&actor, &r.accounts, approve, &r.reason)
            .await
            .into_iter()
            .map(|(account, outcome)| {
                let error = match outcome {
                    Ok(_) => String::new(),
                    Err(crate::Error::AccountNotFound) => "not_found".into(),
                    Err(crate::Error::WrongState(_)) => "not_pending".into(),
                    Err(crate::Error::NotAllowed) => "not_allowed".into(),
                    Err(e) => {
                        tracing::error!(error = %dge_core::ErrorChain(&e), "bulk decision failed for one account");
                        "internal".into()
                    }
                };
                pb::DecisionResult { account, ok: error.is_empty(), error }
            })
            .collect();
        Ok(Response::new(pb::DecideAccountsResponse { results }))
    }

    async fn create_organisation(
        &self,
        request: Request<pb::CreateOrganisationRequest>,
    ) -> GrpcResult<pb::CreateOrganisationResponse> {
        let actor = self.actor(&request).await?;
        let r = request.into_inner();
        let new = NewOrganisation {
            name: r.name,
            siret: r.siret,
            trusted: r.trusted,
            email_domains: r.email_domains,
        };
        let organisation = self.workflow.create_organisation(&actor, &new).await?;
        Ok(Response::new(pb::CreateOrganisationResponse {
            organisation: Some(organisation),
        }))
    }

    async fn update_organisation(
        &self,
        request: Request<pb::UpdateOrganisationRequest>,
    ) -> GrpcResult<pb::UpdateOrganisationResponse> {
        let actor = self.actor(&request).await?;
        let r = request.into_inner();
        require(&[("id", &r.id)])?;
        if r.name.is_none() && r.siret.is_none() && r.trusted.is_none() && !r.set_email_domains {
            return Err(Error::field(
                "organisation",
                "nothing_to_change",
                "rien à changer : donnez un nom, un SIRET, le statut de membre ou les domaines",
            )
            .into());
        }
        // Domains sent without the flag would be dropped without a word.
        if !r.set_email_domains && !r.email_domains.is_empty() {
            return Err(Error::field(
                "email_domains",
                "set_email_domains",
                "pour remplacer les domaines, mettez set_email_domains à vrai",
            )
            .into());
        }
        let domains = r.set_email_domains.then_some(r.email_domains);
        let (organisation, changed) = self
            .workflow
            .update_organisation(&actor, &r.id, r.name, r.siret, r.trusted, domains)
            .await?;
        Ok(Response::new(pb::UpdateOrganisationResponse {
            organisation: Some(organisation),
            changed,
        }))
    }

    async fn accept_organisation(
        &self,
        request: Request<pb::AcceptOrganisationRequest>,
    ) -> GrpcResult<pb::AcceptOrganisationResponse> {
        let actor = self.actor(&request).await?;
        let r = request.into_inner();
        require(&[("id", &r.id)])?;
        let organisation = self
            .workflow
            .accept_organisation(&actor, &r.id, &r.name, &r.siret)
            .await?;
        Ok(Response::new(pb::AcceptOrganisationResponse {
            organisation: Some(organisation),
        }))
    }

    async fn merge_organisation(
        &self,
        request: Request<pb::MergeOrganisationRequest>,
    ) -> GrpcResult<pb::MergeOrganisationResponse> {
        let actor = self.actor(&request).await?;
        let r = request.into_inner();
        require(&[("source_id", &r.source_id), ("target_id", &r.target_id)])?;
        let moved_accounts = self
            .workflow
            .merge_organisation(&actor, &r.source_id, &r.target_id)
            .await?;
        Ok(Response::new(pb::MergeOrganisationResponse {
            moved_accounts,
        }))
    }

    async fn import_organisations(
        &self,
        request: Request<Streaming<pb::ImportOrganisationRow>>,
    ) -> GrpcResult<pb::ImportOrganisationsResponse> {
        let actor = self.actor(&request).await?;
        actor.require_admin()?;
        let mut stream = request.into_inner();
        let mut rows = Vec::new();
        let mut strict = false;
        while let Some(row) = stream.next().await {
            let row = row?;
            strict |= row.strict;
            if rows.len() >= IMPORT_MAX_ROWS {
                return Err(Status::resource_exhausted(format!(
                    "at most {IMPORT_MAX_ROWS} rows per import"
                )));
            }
            rows.push((row.line, org_of(&row)));
        }
        let report = self
            .workflow
            .import_organisations(&actor, &rows, strict)
            .await?;
        Ok(Response::new(pb::ImportOrganisationsResponse {
            imported: report.imported,
            unchanged: report.unchanged,
            rejected: report
                .rejected
                .into_iter()
                .map(|(line, reason)| pb::RejectedRow { line, reason })
                .collect(),
            committed: report.committed,
        }))
    }

    async fn add_organisation_admin(
        &self,
        request: Request<pb::AddOrganisationAdminRequest>,
    ) -> GrpcResult<pb::AddOrganisationAdminResponse> {
        let actor = self.actor(&request).await?;
        let r = request.into_inner();
        require(&[("account", &r.account)])?;
        self.workflow
            .add_organisation_admin(&actor, &r.account)
            .await?;
        Ok(Response::new(pb::AddOrganisationAdminResponse {}))
    }

    async fn grant_admin(
        &self,
        request: Request<pb::GrantAdminRequest>,
    ) -> GrpcResult<pb::GrantAdminResponse> {
        let actor = self.actor(&request).await?;
        actor.require_admin()?;
        let r = request.into_inner();
        require(&[("account", &r.account)])?;
        let (granted, account) = self
            .workflow
            .grant_admin(&actor, &r.account, &r.reason)
            .await?;
        Ok(Response::new(pb::GrantAdminResponse {
            granted,
            account: Some(account_to_proto(account)),
        }))
    }

    async fn revoke_admin(
        &self,
        request: Request<pb::RevokeAdminRequest>,
    ) -> GrpcResult<pb::RevokeAdminResponse> {
        let actor = self.actor(&request).await?;
        actor.require_admin()?;
        let r = request.into_inner();
        require(&[("account", &r.account)])?;
        let (revoked, account) = self
            .workflow
            .revoke_admin(&actor, &r.account, &r.reason)
            .await?;
        Ok(Response::new(pb::RevokeAdminResponse {
            revoked,
            account: Some(account_to_proto(account)),
        }))
    }

    async fn suspend_account(
        &self,
        request: Request<pb::SuspendAccountRequest>,
    ) -> GrpcResult<pb::SuspendAccountResponse> {
        let actor = self.actor(&request).await?;
        actor.require_admin()?;
        let r = request.into_inner();
        require(&[("account", &r.account), ("reason", &r.reason)])?;
        let until = (r.until != 0).then_some(r.until);
        let account = self
            .workflow
            .suspend_until(&actor, &r.account, &r.reason, until)
            .await?;
        Ok(Response::new(pb::SuspendAccountResponse {
            account: Some(account_to_proto(account)),
        }))
    }

    async fn reactivate_account(
        &self,
        request: Request<pb::ReactivateAccountRequest>,
    ) -> GrpcResult<pb::ReactivateAccountResponse> {
        let actor = self.actor(&request).await?;
        actor.require_admin()?;
        let r = request.into_inner();
        require(&[("account", &r.account)])?;
        let account = self
            .workflow
            .reactivate(&actor, &r.account, &r.reason)
            .await?;
        Ok(Response::new(pb::ReactivateAccountResponse {
            account: Some(account_to_proto(account)),
        }))
    }

    async fn list_admins(
        &self,
        request: Request<pb::ListAdminsRequest>,
    ) -> GrpcResult<pb::ListAdminsResponse> {
        let actor = self.actor(&request).await?;
        let accounts = self.workflow.list_admins(&actor).await?;
        Ok(Response::new(pb::ListAdminsResponse {
            accounts: accounts.into_iter().map(account_to_proto).collect(),
        }))
    }

    async fn declare_module(
        &self,
        request: Request<pb::DeclareModuleRequest>,
    ) -> GrpcResult<pb::DeclareModuleResponse> {
        let actor = self.actor(&request).await?;
        let r = request.into_inner();
        self.workflow
            .declare_module(&actor, r.name.trim(), &r.label)
            .await?;
        Ok(Response::new(pb::DeclareModuleResponse {}))
    }

    async fn declare_right(
        &self,
        request: Request<pb::DeclareRightRequest>,
    ) -> GrpcResult<pb::DeclareRightResponse> {
        let actor = self.actor(&request).await?;
        let r = request.into_inner();
        self.workflow
            .declare_right(&actor, r.name.trim(), &r.label)
            .await?;
        Ok(Response::new(pb::DeclareRightResponse {}))
    }

    async fn define_role(
        &self,
        request: Request<pb::DefineRoleRequest>,
    ) -> GrpcResult<pb::DefineRoleResponse> {
        let actor = self.actor(&request).await?;
        let r = request.into_inner();
        let change = self
            .workflow
            .define_role(&actor, r.name.trim(), &r.label, &r.rights)
            .await?;
        Ok(Response::new(pb::DefineRoleResponse {
            created: change.created,
            added: change.added,
            removed: change.removed,
        }))
    }

    async fn grant_role(
        &self,
        request: Request<pb::GrantRoleRequest>,
    ) -> GrpcResult<pb::GrantRoleResponse> {
        let actor = self.actor(&request).await?;
        let r = request.into_inner();
        require(&[("account", &r.account), ("role", &r.role)])?;
        let granted = self
            .workflow
            .grant_role(&actor, &r.account, r.role.trim(), &r.reason)
            .await?;
        Ok(Response::new(pb::GrantRoleResponse { granted }))
    }

    async fn list_grants(
        &self,
        request: Request<pb::ListGrantsRequest>,
    ) -> GrpcResult<pb::ListGrantsResponse> {
        let actor = self.actor(&request).await?;
        let r = request.into_inner();
        require(&[("account", &r.account)])?;
        let grants = self
            .workflow
            .grants(&actor, &r.account)
            .await?
            .into_iter()
            .map(|g| pb::Grant {
                right: g.right,
                granted_by: g.granted_by,
                reason: g.reason,
                granted_at: g.granted_at,
                expires_at: g.expires_at.unwrap_or(0),
            })
            .collect();
        Ok(Response::new(pb::ListGrantsResponse { grants }))
    }

    type WatchRightsStream =
        Pin<Box<dyn Stream<Item = Result<pb::RightChange, Status>> + Send + 'static>>;

    async fn watch_rights(
        &self,
        request: Request<pb::WatchRightsRequest>,
    ) -> GrpcResult<Self::WatchRightsStream> {
        // Everyone's rights go by here: modules watch with a service token holding the
        // rights scope; administrators may too; a person's token may not.
        self.auth
            .require_scope(request.metadata(), dge_authz::caller::RIGHTS_SCOPE)
            .await?;
        // The caller is checked again while the stream lasts: a token revoked or
        // expired since, or an account suspended, ends it.
        let (ended, end) = tokio::sync::mpsc::channel(1);
        let (auth, metadata, every) = (self.auth.clone(), request.metadata().clone(), self.recheck);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = ended.closed() => return,
                    () = tokio::time::sleep(every) => {}
                }
                let again = auth
                    .require_scope(&metadata, dge_authz::caller::RIGHTS_SCOPE)
                    .await;
                if let Err(status) = again {
                    let _ = ended.send(Err(status)).await;
                    return;
                }
            }
        });
        let only = request.into_inner().account_id;
        // Changes from every replica arrive here through the shared store's notices
        // (see `Workflow::relay_changes`).
        let changes = tokio_stream::wrappers::BroadcastStream::new(self.workflow.watch())
            .filter_map(move |item| match item {
                Ok(c) if only.is_empty() || c.account_id == only => Some(Ok(pb::RightChange {
                    account_id: c.account_id,
                    right: c.right,
                    granted: c.granted,
                    at: c.at,
                })),
                Ok(_) => None,
                // A watcher too slow to keep up is told so and must reload its cache.
                Err(_) => Some(Err(Status::data_loss(
                    "missed rights changes; reload and watch again",
                ))),
            });
        // Changes lost on their way to this replica (a Redis outage): the same.
        let missed = tokio_stream::wrappers::BroadcastStream::new(self.workflow.watch_missed())
            .map(|_| {
                Err(Status::data_loss(
                    "rights changes may have been lost on their way to this server; reload and watch again",
                ))
            });
        let revoked = tokio_stream::wrappers::ReceiverStream::new(end);
        Ok(Response::new(Box::pin(
            changes.merge(missed).merge(revoked),
        )))
    }

    async fn list_audit_events(
        &self,
        request: Request<pb::ListAuditEventsRequest>,
    ) -> GrpcResult<pb::ListAuditEventsResponse> {
        let actor = self.actor(&request).await?;
        let r = request.into_inner();
        let filter = AuditFilter {
            subject: r.subject,
            actor: r.actor,
            since: r.since,
            until: r.until,
            limit: i64::from(r.limit),
        };
        let events = self
            .workflow
            .audit_events(&actor, &filter)
            .await?
            .into_iter()
            .map(|e| pb::AuditEvent {
                id: e.id,
                actor: e.actor,
                action: e.action,
                subject: e.subject,
                detail: e.detail,
                created_at: e.created_at,
            })
            .collect();
        Ok(Response::new(pb::ListAuditEventsResponse { events }))
    }
}
