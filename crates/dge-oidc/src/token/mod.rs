//! The token endpoint (RFC 6749 §3.2, OIDC Core §3.1.3), one file per grant:
//!
//! - [`code`]: `authorization_code`: codes exchanged once, a replay revokes the family.
//! - [`refresh`]: `refresh_token`: rotated on every use, reuse revokes the family.
//! - [`service`]: `client_credentials` for internal services.
//! - the device grant (RFC 8628) lives in [`crate::device`].
//! - [`client_auth`]: `client_secret_basic`, `client_secret_post`, `private_key_jwt`, none.
//! - [`mint`]: signs access tokens and ID tokens and records them.

pub mod client_auth;
pub(crate) mod code;
pub(crate) mod mint;
mod refresh;
mod service;

use dge_authz::grants::{self, TokenInfo, TokenKind};
use serde::{Deserialize, Serialize};

use crate::clients::Client;

pub use client_auth::basic_credentials;

use crate::{Provider, Result};

/// The form posted to `/token`. Not `Debug`: it carries secrets.
#[derive(Default, Deserialize)]
pub struct TokenForm {
    /// `authorization_code`, `refresh_token` or `client_credentials`.
    pub grant_type: Option<String>,
    /// The code.
    pub code: Option<String>,
    /// Must equal the authorization request's.
    pub redirect_uri: Option<String>,
    /// PKCE verifier.
    pub code_verifier: Option<String>,
    /// The device code (device grant, RFC 8628).
    pub device_code: Option<String>,
    /// The refresh token.
    pub refresh_token: Option<String>,
    /// Scopes asked for (`refresh_token` may narrow, `client_credentials` chooses).
    pub scope: Option<String>,
    /// `client_secret_post` or public clients.
    pub client_id: Option<String>,
    /// `client_secret_post`.
    pub client_secret: Option<String>,
    /// `private_key_jwt` (RFC 7523): the assertion type.
    pub client_assertion_type: Option<String>,
    /// `private_key_jwt`: the signed assertion.
    pub client_assertion: Option<String>,
    /// Introspection and revocation: the token.
    pub token: Option<String>,
    /// Introspection and revocation: a hint, ignored (both kinds are recognised).
    pub token_type_hint: Option<String>,
}

/// A successful token response.
#[derive(Debug, Serialize)]
pub struct TokenResponse {
    /// The access token (JWT, `at+jwt`).
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until expiry.
    pub expires_in: i64,
    /// The ID token (not for `client_credentials`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    /// The refresh token (not for `client_credentials`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Granted scopes.
    pub scope: String,
    /// Rows recording what this response hands out, not committed yet: `exchange`
    /// commits them with its audit row, before the response leaves.
    #[serde(skip)]
    pub(crate) unrecorded: Vec<dge_store::grouped::Statement>,
    /// The replay this response must still look for once its rows are committed.
    #[serde(skip)]
    pub(crate) replay_watch: Option<ReplayWatch>,
}

/// A replay of what a response was exchanged for (its code, or the refresh token it
/// rotates) that arrives while the response is being made finds none of its tokens
/// to revoke: they are recorded only at the commit, just before the answer. Such a
/// replay leaves a mark first; the exchange reads it after its commit, and then
/// revokes what it recorded and answers `invalid_grant`. One of the two always sees
/// the other: the replay marks, then revokes what is recorded; the exchange records,
/// then reads the mark.
#[derive(Debug, Clone)]
pub(crate) enum ReplayWatch {
    /// The hash of the code exchanged.
    Code(String),
    /// The family of the rotated refresh token.
    Family(String),
}

/// How long a replay's mark is kept: far longer than any exchange takes.
const REPLAY_MARK: std::time::Duration = std::time::Duration::from_secs(600);

fn replay_key(watch: &ReplayWatch) -> String {
    match watch {
        ReplayWatch::Code(hash) => format!("oidc:code-replayed:{hash}"),
        ReplayWatch::Family(id) => format!("oidc:family-replayed:{id}"),
    }
}

impl Provider {
    /// Marks a replay (see [`ReplayWatch`]), then revokes what is recorded of it.
    pub(crate) async fn replayed(&self, watch: ReplayWatch) -> Result<()> {
        self.ephemeral
            .put(&replay_key(&watch), "1", REPLAY_MARK)
            .await?;
        self.revoke_replayed(&watch).await
    }

    async fn revoke_replayed(&self, watch: &ReplayWatch) -> Result<()> {
        let now = self.now();
        let revoked = match watch {
            ReplayWatch::Code(hash) => grants::revoke_code(&self.db, hash, now).await?,
            ReplayWatch::Family(id) => grants::revoke_family(&self.db, id, now).await?,
        };
        let what = match watch {
            ReplayWatch::Code(_) => "authorization code",
            ReplayWatch::Family(_) => "refresh token",
        };
        tracing::warn!(revoked, "{what} replayed; the tokens it gave are revoked");
        Ok(())
    }

    /// After the commit of a response's rows: whether a replay came meanwhile, in
    /// which case what was just recorded is revoked.
    async fn replayed_meanwhile(&self, watch: &ReplayWatch) -> Result<bool> {
        if self.ephemeral.get(&replay_key(watch)).await?.is_none() {
            return Ok(false);
        }
        self.revoke_replayed(watch).await?;
        Ok(true)
    }
}

/// An OAuth error (RFC 6749 §5.2).
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct OAuthError {
    /// `invalid_request`, `invalid_client`, `invalid_grant` …
    pub error: &'static str,
    /// A sentence for the developer.
    pub error_description: &'static str,
    /// Set when the request was refused by a rate limit: seconds to wait, sent as
    /// `Retry-After` with a 429.
    #[serde(skip)]
    pub retry_after: Option<u64>,
}

/// An OAuth error.
#[must_use]
pub const fn oauth(error: &'static str, error_description: &'static str) -> OAuthError {
    OAuthError {
        error,
        error_description,
        retry_after: None,
    }
}

/// The answer of a grant: tokens, or a protocol error.
pub type Grant = Result<Result<TokenResponse, OAuthError>>;

/// Whether every scope of `asked` is in `allowed`.
fn subset(asked: &str, allowed: &[&str]) -> bool {
    asked
        .split(' ')
        .filter(|s| !s.is_empty())
        .all(|s| allowed.contains(&s))
}

impl Provider {
    /// Answers a token request.
    ///
    /// # Errors
    /// Storage or signing errors; protocol errors are `Ok(Err(_))`.
    pub async fn exchange(
        &self,
        form: &TokenForm,
        basic: Option<(String, String)>,
        address: &str,
    ) -> Grant {
        let grant = form.grant_type.as_deref().unwrap_or("");
        if !matches!(
            grant,
            "authorization_code"
                | "refresh_token"
                | "client_credentials"
                | crate::device::DEVICE_GRANT
        ) {
            return Ok(Err(oauth(
                "unsupported_grant_type",
                "grant_type must be authorization_code, refresh_token, client_credentials \
                 or urn:ietf:params:oauth:grant-type:device_code",
            )));
        }
        // The client id as claimed, for the audit log; bounded and without control
        // characters, as it is the caller's (PostgreSQL refuses a NUL in text, which
        // would fail the group commit the audit row joins).
        let claimed: String = basic
            .as_ref()
            .map(|(id, _)| id.as_str())
            .or(form.client_id.as_deref())
            .unwrap_or_default()
            .chars()
            .filter(|c| !c.is_control())
            .take(100)
            .collect();
        let mut outcome = match self.authenticate_client(form, basic, address).await? {
            Ok(client) => match grant {
                "authorization_code" => self.code_grant(&client, form).await?,
                "refresh_token" => self.refresh_grant(&client, form).await?,
                crate::device::DEVICE_GRANT => self.device_grant(&client, form).await?,
                _ => self.service_grant(&client, form).await?,
            },
            Err(e) => Err(e),
        };
        // A device polling every few seconds would fill the audit log with waits; a
        // flood of refused client authentications has its one summary row.
        if let Err(e) = &outcome
            && (matches!(e.error, "authorization_pending" | "slow_down") || e.retry_after.is_some())
        {
            return Ok(outcome);
        }
        let (action, detail) = match &outcome {
            Ok(_) => ("token.issued", format!("grant={grant}")),
            Err(e) => ("token.refused", format!("grant={grant} error={}", e.error)),
        };
        let audit = dge_store::audit_statement(&claimed, action, &claimed, &detail, self.now());
        // The token's own row (`client_credentials`) and the audit row share one
        // commit: one wait instead of two, and the token never leaves unrecorded.
        let mut rows = match &mut outcome {
            Ok(response) => std::mem::take(&mut response.unrecorded),
            Err(_) => Vec::new(),
        };
        rows.push(audit);
        self.db.execute_grouped_all(rows).await?;
        if let Ok(response) = &outcome
            && let Some(watch) = &response.replay_watch
            && self.replayed_meanwhile(watch).await?
        {
            // The row committed above says issued; this one says what became of it.
            let detail = format!("grant={grant} error=invalid_grant replayed_during_exchange");
            let refused = dge_store::audit_statement(
                &claimed,
                "token.refused",
                &claimed,
                &detail,
                self.now(),
            );
            self.db.execute_grouped_all(vec![refused]).await?;
            return Ok(Err(oauth(
                "invalid_grant",
                "the grant was presented twice: what it gave is revoked",
            )));
        }
        Ok(outcome)
    }
}

impl Provider {
    /// Inspects a token (RFC 7662): ours, valid, unexpired, unrevoked, with an
    /// active account.
    ///
    /// # Errors
    /// Storage errors; an invalid token is `Ok(None)`.
    pub async fn inspect(&self, token: &str) -> Result<Option<TokenInfo>> {
        Ok(grants::inspect(
            &self.db,
            &self.sessions,
            &self.keys,
            self.issuer(),
            self.now(),
            token,
        )
        .await?)
    }

    /// The claims of a person's valid access token.
    ///
    /// # Errors
    /// Storage errors; an invalid token is `Ok(None)`.
    pub async fn access_claims(&self, token: &str) -> Result<Option<TokenInfo>> {
        Ok(self
            .inspect(token)
            .await?
            .filter(|i| i.kind == TokenKind::Access && i.person))
    }

    /// Revokes a token for `client` (RFC 7009). `Ok(false)` when the token is
    /// another client's: it is left alone.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn revoke(&self, client: &Client, token: &str) -> Result<bool> {
        let Some(info) = self.inspect(token).await? else {
            return Ok(true);
        };
        if info.client_id != client.id {
            return Ok(false);
        }
        grants::revoke(&self.db, &info, self.now()).await?;
        tracing::info!(client_id = %client.id, "token revoked");
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::subset;

    #[test]
    fn scopes_must_be_a_subset() {
        assert!(subset("openid email", &["openid", "email", "profile"]));
        assert!(subset("", &["openid"]));
        assert!(!subset("openid phone", &["openid", "email"]));
    }
}
