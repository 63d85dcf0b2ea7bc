//! The `authorization_code` grant (RFC 6749 §4.1.3, RFC 7636 §4.6).

use std::borrow::Cow;
use std::time::Duration;

use dge_core::token::hash_token;
use dge_registry::store::account_with_epoch;
use oxide_auth::code_grant::extensions::Pkce;
use oxide_auth::primitives::grant::Value;
use serde::{Deserialize, Serialize};

use super::mint::Lineage;
use super::{Grant, OAuthError, ReplayWatch, TokenForm, oauth};
use crate::clients::Client;
use crate::{Provider, Result};

/// What an authorization code stands for, kept in the shared short-lived store under
/// the code's hash (never the code itself) for the code's lifetime.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct StoredCode {
    pub(crate) client_id: String,
    pub(crate) account_id: String,
    pub(crate) redirect_uri: String,
    pub(crate) scope: String,
    pub(crate) nonce: Option<String>,
    pub(crate) code_challenge: String,
    pub(crate) auth_time: i64,
    /// On the provider's clock, checked at exchange; the store's own expiry only
    /// frees the memory.
    pub(crate) expires_at: i64,
    pub(crate) session_hash: Option<String>,
    /// The account's `sessions_epoch` when the code was issued: a code issued before
    /// everything of the account ended (a reset, a suspension…) is refused after.
    #[serde(default)]
    pub(crate) epoch: Option<i64>,
    /// The client's registration (see `Client::registration`): a client removed and
    /// registered again under the same id cannot exchange it. `None`: stored before.
    #[serde(default)]
    pub(crate) registration: Option<String>,
}

fn code_key(code_hash: &str) -> String {
    format!("oidc:code:{code_hash}")
}

/// Remembers, under the hash of a consumed code, the client it was issued to, so that
/// a replay revokes what the code gave (RFC 6749 §4.1.2). Kept for a day, well past
/// the code's own minute: a replay later than that is refused without revoking (the
/// access tokens it gave have expired by then; a refresh token would survive).
fn used_key(code_hash: &str) -> String {
    format!("oidc:code-used:{code_hash}")
}

const USED_MEMORY: Duration = Duration::from_secs(24 * 3600);

fn bad_grant() -> OAuthError {
    oauth(
        "invalid_grant",
        "the code is invalid, expired, used, or was issued to another client",
    )
}

impl Provider {
    /// Stores a freshly issued code for its lifetime.
    pub(crate) async fn store_code(&self, code_hash: &str, code: &StoredCode) -> Result<()> {
        let ttl = u64::try_from(self.settings.code_ttl_secs)
            .unwrap_or(0)
            .max(1);
        let value = serde_json::to_string(code).unwrap_or_default();
        self.ephemeral
            .put(&code_key(code_hash), &value, Duration::from_secs(ttl))
            .await?;
        Ok(())
    }

    async fn load_code(&self, code_hash: &str) -> Result<Option<StoredCode>> {
        let Some(value) = self.ephemeral.get(&code_key(code_hash)).await? else {
            return Ok(None);
        };
        let decoded = serde_json::from_str(&value);
        if decoded.is_err() {
            tracing::warn!("an authorization code in the shared store could not be read");
        }
        Ok(decoded.ok())
    }

    /// Revokes every token issued from a code, after the code was presented twice
    /// (RFC 6749 §4.1.2: the code may have been stolen), those of an exchange still
    /// under way included ([`ReplayWatch`]).
    async fn revoke_code_family(&self, code_hash: &str) -> Result<()> {
        self.replayed(ReplayWatch::Code(code_hash.to_owned())).await
    }

    /// Checks a code row against the request; `Err` is the OAuth error to answer.
    fn check_code(
        row: &StoredCode,
        client: &Client,
        form: &TokenForm,
        now: i64,
    ) -> Result<(), OAuthError> {
        if row.client_id != client.id
            || row
                .registration
                .as_deref()
                .is_some_and(|r| r != client.registration)
            || row.expires_at <= now
            || form.redirect_uri.as_deref() != Some(row.redirect_uri.as_str())
            // Still registered: one taken off since the code was issued gets nothing.
            || !client.redirect_allowed(&row.redirect_uri)
        {
            return Err(bad_grant());
        }
        // RFC 7636 §4.1: 43 to 128 unreserved characters. A wrong verifier does not
        // burn the code: whoever stole it without the verifier could otherwise
        // destroy the rightful client's login.
        let verifier_ok = form.code_verifier.as_deref().is_some_and(|v| {
            (43..=128).contains(&v.len())
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
        });
        if !verifier_ok {
            return Err(oauth("invalid_grant", "PKCE verification failed"));
        }
        let verified = Pkce::required().verify(
            Some(Value::private(Some(row.code_challenge.clone()))),
            form.code_verifier.as_deref().map(Cow::Borrowed),
        );
        if verified.is_err() {
            return Err(oauth("invalid_grant", "PKCE verification failed"));
        }
        Ok(())
    }

    /// Exchanges a code for tokens.
    pub(super) async fn code_grant(&self, client: &Client, form: &TokenForm) -> Grant {
        let Some(code) = form.code.as_deref().filter(|c| !c.is_empty()) else {
            return Ok(Err(oauth("invalid_request", "code is required")));
        };
        let code_hash = hash_token(code);
        let Some(row) = self.load_code(&code_hash).await? else {
            // Gone: never issued, expired, or consumed. A replay by the client it was
            // issued to revokes the family; a code of another client changes nothing.
            let used_by = self.ephemeral.get(&used_key(&code_hash)).await?;
            if used_by.as_deref() == Some(client.id.as_str()) {
                self.revoke_code_family(&code_hash).await?;
            }
            return Ok(Err(bad_grant()));
        };
        if let Err(e) = Self::check_code(&row, client, form, self.now()) {
            return Ok(Err(e));
        }
        // Consume the code: of concurrent exchanges, on any replica, only one takes it
        // (GETDEL on Redis). The replay marker goes first, so that no presentation
        // after the take can miss it.
        self.ephemeral
            .put(&used_key(&code_hash), &row.client_id, USED_MEMORY)
            .await?;
        if self.ephemeral.take(&code_key(&code_hash)).await?.is_none() {
            self.revoke_code_family(&code_hash).await?;
            return Ok(Err(bad_grant()));
        }
        let Some((account, epoch)) = account_with_epoch(&self.db, &row.account_id).await? else {
            return Ok(Err(bad_grant()));
        };
        if account.status != dge_registry::AccountStatus::Active {
            return Ok(Err(bad_grant()));
        }
        if row.epoch != Some(epoch) {
            return Ok(Err(bad_grant()));
        }
        // The session the code was issued in must still be open: a logout between the
        // code and its exchange ends what the code would give (the logout's own
        // revocation found nothing of it to revoke yet).
        if let Some(session) = row.session_hash.as_deref() {
            let live = self.sessions.get(session, self.now()).await?;
            if live.is_none_or(|(account_id, _)| account_id != row.account_id) {
                return Ok(Err(bad_grant()));
            }
        }
        let family_id = dge_core::new_id();
        let lineage = Lineage {
            scope: &row.scope,
            grant_scope: &row.scope,
            auth_time: row.auth_time,
            nonce: row.nonce.as_deref(),
            code_hash: Some(&code_hash),
            family_id: &family_id,
            session_hash: row.session_hash.as_deref(),
        };
        let mut response = self.person_tokens(client, &account, &lineage).await?;
        response.replay_watch = Some(ReplayWatch::Code(code_hash));
        Ok(Ok(response))
    }
}
