//! The `ValidationWorkflow` gRPC service.

use dge_authz::Authenticator;
use dge_core::Violations;
use dge_proto::v1 as pb;
use dge_proto::v1::validation_workflow_server::ValidationWorkflow;
use dge_registry::grpc::account_to_proto;
use tonic::{Request, Response, Status};

use crate::Workflow;

/// gRPC face of the [`Workflow`]; every call needs an administrator.
#[derive(Debug, Clone)]
pub struct ValidationWorkflowService {
    workflow: Workflow,
    auth: Authenticator,
}

impl ValidationWorkflowService {
    /// A new service.
    #[must_use]
    pub fn new(workflow: Workflow, auth: Authenticator) -> Self {
        Self { workflow, auth }
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

#[tonic::async_trait]
impl ValidationWorkflow for ValidationWorkflowService {
    async fn approve_account(
        &self,
        request: Request<pb::ApproveAccountRequest>,
    ) -> Result<Response<pb::ApproveAccountResponse>, Status> {
        let caller = self.auth.require_admin(request.metadata()).await?;
        let r = request.into_inner();
        require(&[("account", &r.account)])?;
        let account = self.workflow.approve(&caller.actor(), &r.account).await?;
        Ok(Response::new(pb::ApproveAccountResponse {
            account: Some(account_to_proto(account)),
        }))
    }

    async fn reject_account(
        &self,
        request: Request<pb::RejectAccountRequest>,
    ) -> Result<Response<pb::RejectAccountResponse>, Status> {
        let caller = self.auth.require_admin(request.metadata()).await?;
        let r = request.into_inner();
        require(&[("account", &r.account), ("reason", &r.reason)])?;
        let account = self
            .workflow
            .reject(&caller.actor(), &r.account, &r.reason)
            .await?;
        Ok(Response::new(pb::RejectAccountResponse {
            account: Some(account_to_proto(account)),
        }))
    }

    async fn grant_right(
        &self,
        request: Request<pb::GrantRightRequest>,
    ) -> Result<Response<pb::GrantRightResponse>, Status> {
        let caller = self.auth.require_admin(request.metadata()).await?;
        let r = request.into_inner();
        require(&[("account", &r.account), ("right", &r.right)])?;
        let granted = self
            .workflow
            .grant(&caller.actor(), &r.account, &r.right, &r.reason)
            .await?;
        Ok(Response::new(pb::GrantRightResponse { granted }))
    }

    async fn revoke_right(
        &self,
        request: Request<pb::RevokeRightRequest>,
    ) -> Result<Response<pb::RevokeRightResponse>, Status> {
        let caller = self.auth.require_admin(request.metadata()).await?;
        let r = request.into_inner();
        require(&[("account", &r.account), ("right", &r.right)])?;
        let revoked = self
            .workflow
            .revoke(&caller.actor(), &r.account, &r.right)
            .await?;
        Ok(Response::new(pb::RevokeRightResponse { revoked }))
    }

    async fn list_organisations(
        &self,
        request: Request<pb::ListOrganisationsRequest>,
    ) -> Result<Response<pb::ListOrganisationsResponse>, Status> {
        self.auth.require_admin(request.metadata()).await?;
        let organisations = self.workflow.organisations().await?;
        Ok(Response::new(pb::ListOrganisationsResponse {
            organisations,
        }))
    }

    async fn list_modules(
        &self,
        request: Request<pb::ListModulesRequest>,
    ) -> Result<Response<pb::ListModulesResponse>, Status> {
        self.auth.require_admin(request.metadata()).await?;
        let modules = self.workflow.modules().await?;
        Ok(Response::new(pb::ListModulesResponse { modules }))
    }
}
