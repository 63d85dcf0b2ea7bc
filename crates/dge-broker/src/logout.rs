//! Ending the upstream session when the person logs out of the portal.
//!
//! ProConnect keeps its own session (single sign-on): without this, the next
//! ProConnect click would log the person back in silently. The pages remember the
//! upstream's raw ID token with each session ([`Broker::remember_session`]); the
//! logout endpoint asks [`Broker::end_session_url`] where to send the browser, and
//! the upstream comes back to `/broker/{name}/logged-out` with our `state`, which
//! [`Broker::logged_out`] turns into the module's post-logout redirect.

use std::str::FromStr;

use dge_core::token::{hash_token, random_token};
use openidconnect::core::CoreIdToken;
use openidconnect::{CsrfToken, LogoutRequest, PostLogoutRedirectUrl};
use sqlx::Row;

use crate::flow::FederatedLogin;
use crate::{Broker, BrokerError};

const LOGOUT_TTL_SECS: i64 = 600;
/// ProConnect's own session lasts 12 h; we keep the token no longer.
const UPSTREAM_SESSION_TTL_SECS: i64 = 12 * 3600;

impl Broker {
    /// Keeps the upstream ID token of the session whose cookie is `session`.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn remember_session(
        &self,
        session: &str,
        login: &FederatedLogin,
    ) -> Result<(), BrokerError> {
        let now = self.clock.now();
        sqlx::query(
            "INSERT INTO upstream_sessions (session_hash, provider, id_token, expires_at, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(hash_token(session))
        .bind(&login.provider)
        .bind(login.id_token.expose())
        .bind(now + UPSTREAM_SESSION_TTL_SECS)
        .bind(now)
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// Where to send the browser to end the upstream session of `session` (a
    /// session cookie), with `id_token_hint`, a fresh `state` and our registered
    /// post-logout redirect; after it the person is sent to `return_to`. `None` when
    /// the session did not come through an upstream (or its token expired): the
    /// caller redirects to `return_to` itself. The stored token is forgotten either way.
    ///
    /// # Errors
    /// Storage errors; [`BrokerError::Upstream`] when the upstream's discovery fails
    /// or it has no end-session endpoint (the caller should still log out locally).
    pub async fn end_session_url(
        &self,
        session: &str,
        return_to: &str,
    ) -> Result<Option<String>, BrokerError> {
        let now = self.clock.now();
        let row = sqlx::query(
            "SELECT provider, id_token FROM upstream_sessions WHERE session_hash = $1 AND expires_at > $2",
        )
        .bind(hash_token(session))
        .bind(now)
        .fetch_optional(self.db.pool())
        .await?;
        sqlx::query("DELETE FROM upstream_sessions WHERE session_hash = $1 OR expires_at <= $2")
            .bind(hash_token(session))
            .bind(now)
            .execute(self.db.pool())
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let name: String = row.try_get("provider")?;
        let raw: String = row.try_get("id_token")?;
        let p = self.provider(&name)?;
        let metadata = self.discover(p).await?;
        let endpoint = metadata
            .additional_metadata()
            .end_session_endpoint
            .clone()
            .ok_or_else(|| BrokerError::Upstream("no end_session_endpoint".into()))?;
        let id_token = CoreIdToken::from_str(&raw)
            .map_err(|e| BrokerError::Upstream(format!("stored id token: {e}")))?;
        let redirect = PostLogoutRedirectUrl::new(self.logged_out_url(&name))
            .map_err(|e| BrokerError::Upstream(e.to_string()))?;
        let state = random_token();
        sqlx::query(
            "INSERT INTO upstream_logouts (state_hash, provider, return_to, expires_at, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(hash_token(&state))
        .bind(&name)
        .bind(return_to)
        .bind(now + LOGOUT_TTL_SECS)
        .bind(now)
        .execute(self.db.pool())
        .await?;
        let url = LogoutRequest::from(endpoint)
            .set_id_token_hint(&id_token)
            .set_post_logout_redirect_uri(redirect)
            .set_state(CsrfToken::new(state))
            .http_get_url();
        tracing::info!(upstream = %name, "ending the upstream session");
        Ok(Some(url.to_string()))
    }

    /// The upstream came back from its logout: where to send the person now.
    ///
    /// # Errors
    /// [`BrokerError::BadState`] when the state is unknown, used or expired.
    pub async fn logged_out(&self, name: &str, state: &str) -> Result<String, BrokerError> {
        let row = sqlx::query(
            "SELECT return_to FROM upstream_logouts WHERE state_hash = $1 AND provider = $2 AND expires_at > $3",
        )
        .bind(hash_token(state))
        .bind(name)
        .bind(self.clock.now())
        .fetch_optional(self.db.pool())
        .await?
        .ok_or(BrokerError::BadState)?;
        let consumed = sqlx::query("DELETE FROM upstream_logouts WHERE state_hash = $1")
            .bind(hash_token(state))
            .execute(self.db.pool())
            .await?;
        if consumed.rows_affected() != 1 {
            return Err(BrokerError::BadState);
        }
        Ok(row.try_get("return_to")?)
    }
}

impl Broker {
    /// Where to send the browser after logout for a portal module's request: its
    /// `post_logout_redirect_uri` when registered for `client_id` (exact string
    /// match), with `state` appended. `None` when it is not registered.
    ///
    /// The OpenID Connect provider's full RP-initiated logout (`id_token_hint`,
    /// back-channel logout) belongs to issue 5; this reads the client's registered
    /// URIs directly so the portal's logout can end the upstream session meanwhile.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn post_logout_target(
        &self,
        client_id: &str,
        uri: &str,
        state: Option<&str>,
    ) -> Result<Option<String>, BrokerError> {
        let row = sqlx::query("SELECT post_logout_redirect_uris FROM oidc_clients WHERE id = $1")
            .bind(client_id)
            .fetch_optional(self.db.pool())
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let registered: Vec<String> =
            serde_json::from_str(&row.try_get::<String, _>("post_logout_redirect_uris")?)
                .unwrap_or_default();
        if !registered.iter().any(|r| r == uri) {
            return Ok(None);
        }
        let Ok(mut target) = url::Url::parse(uri) else {
            return Ok(None);
        };
        if let Some(state) = state {
            target.query_pairs_mut().append_pair("state", state);
        }
        Ok(Some(target.to_string()))
    }
}
