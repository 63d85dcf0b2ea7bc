//! The `IdentityBroker` gRPC service.

use dge_authz::Authenticator;
use dge_authz::caller::unavailable;
use dge_proto::v1 as pb;
use dge_proto::v1::identity_broker_server::IdentityBroker;
use dge_store::Db;
use sqlx::Row;
use tonic::{Request, Response, Status};

use crate::Broker;

/// Administrators' view of upstream providers and links.
#[derive(Debug, Clone)]
pub struct IdentityBrokerService {
    db: Db,
    broker: Broker,
    auth: Authenticator,
}

impl IdentityBrokerService {
    /// A new service.
    #[must_use]
    pub fn new(db: Db, broker: Broker, auth: Authenticator) -> Self {
        Self { db, broker, auth }
    }
}

#[tonic::async_trait]
impl IdentityBroker for IdentityBrokerService {
    async fn list_providers(
        &self,
        request: Request<pb::ListProvidersRequest>,
    ) -> Result<Response<pb::ListProvidersResponse>, Status> {
        self.auth.require_admin(request.metadata()).await?;
        let providers = self
            .broker
            .providers()
            .iter()
            .map(|p| pb::Provider {
                name: p.name.clone(),
                label: p.label.clone(),
                issuer: p.issuer.clone(),
                configured: p.configured(),
            })
            .collect();
        Ok(Response::new(pb::ListProvidersResponse { providers }))
    }

    async fn list_links(
        &self,
        request: Request<pb::ListLinksRequest>,
    ) -> Result<Response<pb::ListLinksResponse>, Status> {
        self.auth.require_admin(request.metadata()).await?;
        let key = request.into_inner().account;
        let id = dge_authz::rights::resolve_account(&self.db, &key)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| Status::not_found("account not found"))?;
        let rows = sqlx::query("SELECT provider, subject, email, created_at FROM federated_links WHERE account_id = $1 ORDER BY provider")
            .bind(&id)
            .fetch_all(self.db.pool())
            .await
            .map_err(unavailable)?;
        let links = rows
            .iter()
            .map(|r| {
                Ok(pb::Link {
                    provider: r.try_get("provider")?,
                    subject: r.try_get("subject")?,
                    email: r.try_get("email")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect::<sqlx::Result<_>>()
            .map_err(unavailable)?;
        Ok(Response::new(pb::ListLinksResponse { links }))
    }

    async fn remove_link(
        &self,
        request: Request<pb::RemoveLinkRequest>,
    ) -> Result<Response<pb::RemoveLinkResponse>, Status> {
        let caller = self.auth.require_admin(request.metadata()).await?;
        let r = request.into_inner();
        let mut violations = dge_core::Violations::new();
        for (field, value) in [
            ("account", &r.account),
            ("provider", &r.provider),
            ("subject", &r.subject),
        ] {
            if value.trim().is_empty() {
                violations.add(field, "required", "must not be empty");
            }
        }
        violations
            .into_result()
            .map_err(dge_core::Violations::into_status)?;
        let id = dge_authz::rights::resolve_account(&self.db, &r.account)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| Status::not_found("account not found"))?;
        let now = self.broker.clock.now();
        let mut tx = self.db.begin().await.map_err(unavailable)?;
        let removed = sqlx::query(
            "DELETE FROM federated_links WHERE account_id = $1 AND provider = $2 AND subject = $3",
        )
        .bind(&id)
        .bind(&r.provider)
        .bind(&r.subject)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        if removed.rows_affected() == 0 {
            return Err(Status::not_found("link not found"));
        }
        let detail = format!("provider={}", r.provider);
        dge_store::audit(
            &mut tx,
            &caller.actor(),
            "account.link_removed",
            &id,
            &detail,
            now,
        )
        .await
        .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        tracing::info!(account_id = %id, upstream = %r.provider, "federated link removed");
        Ok(Response::new(pb::RemoveLinkResponse {}))
    }
}
