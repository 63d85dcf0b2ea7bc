//! Consent: first-party clients (the portal's own modules) skip it; any other
//! client needs the person's consent to the scopes it asks, remembered per client.

use sqlx::Row;

use crate::authorize::PendingRequest;
use crate::clients::{self, Client};
use crate::{Provider, Result};

/// What the consent page shows.
#[derive(Debug, Clone)]
pub struct ConsentScreen {
    /// The client's display name.
    pub client_name: String,
    /// The scopes asked for.
    pub scopes: Vec<String>,
}

fn scopes_of(scope: &str) -> Vec<&str> {
    scope.split(' ').filter(|s| !s.is_empty()).collect()
}

impl Provider {
    /// Whether `account_id` must consent before `client` gets `scope`.
    pub(crate) async fn needs_consent(
        &self,
        client: &Client,
        account_id: &str,
        scope: &str,
    ) -> Result<bool> {
        if client.first_party {
            return Ok(false);
        }
        let row =
            sqlx::query("SELECT scope FROM consents WHERE account_id = $1 AND client_id = $2")
                .bind(account_id)
                .bind(&client.id)
                .fetch_optional(self.db.pool())
                .await?;
        let Some(row) = row else { return Ok(true) };
        let granted: String = row.try_get("scope")?;
        let granted = scopes_of(&granted);
        Ok(!scopes_of(scope).iter().all(|s| granted.contains(s)))
    }

    /// The consent page of the stored request `req`, if it is still pending.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn consent_screen(&self, req: &str) -> Result<Option<ConsentScreen>> {
        let Some(pending) = self.pending_request(req).await? else {
            return Ok(None);
        };
        let Some(client) = clients::find(&self.db, &pending.client_id).await? else {
            return Ok(None);
        };
        Ok(Some(ConsentScreen {
            client_name: client.name,
            scopes: scopes_of(&pending.scope)
                .into_iter()
                .map(str::to_owned)
                .collect(),
        }))
    }

    /// The person of the session `cookie` answers the consent page of `req`.
    /// Returns where to send them: the client with a code (granted) or with
    /// `access_denied`; `None` when the request or the session is gone.
    ///
    /// # Errors
    /// Storage or signing errors.
    pub async fn answer_consent(
        &self,
        req: &str,
        cookie: &str,
        granted: bool,
    ) -> Result<Option<String>> {
        let Some((account_id, auth_time)) = self.session(cookie).await? else {
            return Ok(None);
        };
        let Some(pending) = self.pending_request(req).await? else {
            return Ok(None);
        };
        if !granted {
            return self.deny(req, &pending).await;
        }
        self.remember_consent(&account_id, &pending).await?;
        tracing::info!(client_id = %pending.client_id, "consent granted");
        self.finish_request(req, &pending, &account_id, auth_time, Some(cookie), None)
            .await
    }

    async fn deny(&self, req: &str, pending: &PendingRequest) -> Result<Option<String>> {
        sqlx::query("DELETE FROM auth_requests WHERE id_hash = $1")
            .bind(dge_core::token::hash_token(req))
            .execute(self.db.pool())
            .await?;
        tracing::info!(client_id = %pending.client_id, "consent refused");
        let outcome = self.error_redirect(
            &pending.redirect_uri,
            "access_denied",
            "the person refused",
            pending.state.as_deref(),
        );
        Ok(match outcome {
            crate::AuthorizeOutcome::Redirect(url) => Some(url),
            _ => None,
        })
    }

    async fn remember_consent(&self, account_id: &str, pending: &PendingRequest) -> Result<()> {
        sqlx::query("DELETE FROM consents WHERE account_id = $1 AND client_id = $2")
            .bind(account_id)
            .bind(&pending.client_id)
            .execute(self.db.pool())
            .await?;
        sqlx::query(
            "INSERT INTO consents (account_id, client_id, scope, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(account_id)
        .bind(&pending.client_id)
        .bind(&pending.scope)
        .bind(self.now())
        .execute(self.db.pool())
        .await?;
        Ok(())
    }
}
