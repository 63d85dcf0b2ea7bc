//! The `authorization_code` grant (RFC 6749 §4.1.3, RFC 7636 §4.6).

use std::borrow::Cow;

use dge_authz::grants;
use dge_core::token::hash_token;
use dge_registry::store::find_account;
use oxide_auth::code_grant::extensions::Pkce;
use oxide_auth::primitives::grant::Value;
use sqlx::Row;

use super::mint::Lineage;
use super::{Grant, OAuthError, TokenForm, oauth};
use crate::clients::Client;
use crate::{Provider, Result};

struct CodeRow {
    client_id: String,
    account_id: String,
    redirect_uri: String,
    scope: String,
    nonce: Option<String>,
    code_challenge: String,
    auth_time: i64,
    expires_at: i64,
    used_at: Option<i64>,
    session_hash: Option<String>,
}

fn bad_grant() -> OAuthError {
    oauth(
        "invalid_grant",
        "the code is invalid, expired, used, or was issued to another client",
    )
}

impl Provider {
    async fn load_code(&self, code_hash: &str) -> Result<Option<CodeRow>> {
        let row = sqlx::query(
            "SELECT client_id, account_id, redirect_uri, scope, nonce, code_challenge, auth_time, \
             expires_at, used_at, session_hash FROM auth_codes WHERE code_hash = $1",
        )
        .bind(code_hash)
        .fetch_optional(self.db.pool())
        .await?;
        let Some(r) = row else { return Ok(None) };
        Ok(Some(CodeRow {
            client_id: r.try_get("client_id")?,
            account_id: r.try_get("account_id")?,
            redirect_uri: r.try_get("redirect_uri")?,
            scope: r.try_get("scope")?,
            nonce: r.try_get("nonce")?,
            code_challenge: r.try_get("code_challenge")?,
            auth_time: r.try_get("auth_time")?,
            expires_at: r.try_get("expires_at")?,
            used_at: r.try_get("used_at")?,
            session_hash: r.try_get("session_hash")?,
        }))
    }

    /// Revokes every token issued from a code, after the code was presented twice
    /// (RFC 6749 §4.1.2: the code may have been stolen).
    async fn revoke_code_family(&self, code_hash: &str) -> Result<()> {
        let n = grants::revoke_code(&self.db, code_hash, self.now()).await?;
        tracing::warn!(
            revoked = n,
            "authorization code replayed; its tokens are revoked"
        );
        Ok(())
    }

    /// Checks a code row against the request; `Err` is the OAuth error to answer.
    fn check_code(
        row: &CodeRow,
        client: &Client,
        form: &TokenForm,
        now: i64,
    ) -> Result<(), OAuthError> {
        if row.client_id != client.id
            || row.expires_at <= now
            || form.redirect_uri.as_deref() != Some(row.redirect_uri.as_str())
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
            return Ok(Err(bad_grant()));
        };
        // A replay by the client it was issued to revokes the family; a code of
        // another client changes nothing.
        if row.used_at.is_some() && row.client_id == client.id {
            self.revoke_code_family(&code_hash).await?;
            return Ok(Err(bad_grant()));
        }
        if let Err(e) = Self::check_code(&row, client, form, self.now()) {
            return Ok(Err(e));
        }
        // Consume the code: only one concurrent exchange can win this update.
        let consumed = sqlx::query(
            "UPDATE auth_codes SET used_at = $1 WHERE code_hash = $2 AND used_at IS NULL",
        )
        .bind(self.now())
        .bind(&code_hash)
        .execute(self.db.pool())
        .await?;
        if consumed.rows_affected() != 1 {
            self.revoke_code_family(&code_hash).await?;
            return Ok(Err(bad_grant()));
        }
        let Some(account) = find_account(&self.db, &row.account_id).await? else {
            return Ok(Err(bad_grant()));
        };
        if account.status != dge_registry::AccountStatus::Active {
            return Ok(Err(bad_grant()));
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
        Ok(Ok(self.person_tokens(client, &account, &lineage).await?))
    }
}
