//! The token endpoint (RFC 6749 §4.1.3, OIDC Core §3.1.3).

use std::borrow::Cow;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use dge_authz::AccessClaims;
use dge_authz::tokens::ACCESS_TOKEN_TYPE;
use dge_core::token::hash_token;
use dge_registry::store::find_account;
use oxide_auth::code_grant::extensions::Pkce;
use oxide_auth::primitives::grant::Value;
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::clients::{self, Client};
use crate::{Provider, Result};

/// The form posted to `/token`. Not `Debug`: it carries secrets.
#[derive(Default, Deserialize)]
pub struct TokenForm {
    /// Only `authorization_code` for now.
    pub grant_type: Option<String>,
    /// The code.
    pub code: Option<String>,
    /// Must equal the authorization request's.
    pub redirect_uri: Option<String>,
    /// PKCE verifier.
    pub code_verifier: Option<String>,
    /// `client_secret_post` or public clients.
    pub client_id: Option<String>,
    /// `client_secret_post`.
    pub client_secret: Option<String>,
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
    /// The ID token.
    pub id_token: String,
    /// Granted scopes.
    pub scope: String,
}

/// An OAuth error (RFC 6749 §5.2).
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct OAuthError {
    /// `invalid_request`, `invalid_client`, `invalid_grant` …
    pub error: &'static str,
    /// A sentence for the developer.
    pub error_description: &'static str,
}

const fn oauth(error: &'static str, error_description: &'static str) -> OAuthError {
    OAuthError {
        error,
        error_description,
    }
}

/// Claims of an ID token (OIDC Core §2).
#[derive(Debug, Serialize)]
struct IdClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: i64,
    iat: i64,
    auth_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email_verified: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    given_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    family_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
}

/// Credentials taken from the `Authorization: Basic` header (RFC 6749 §2.3.1).
#[must_use]
pub fn basic_credentials(header: &str) -> Option<(String, String)> {
    let (scheme, value) = header.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(value.trim()).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let unescape = |s: &str| form_urlencoded_decode(s);
    Some((unescape(id)?, unescape(secret)?))
}

fn form_urlencoded_decode(s: &str) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(&format!("v={s}")).ok()?;
    pairs.into_iter().next().map(|(_, v)| v)
}

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
}

impl Provider {
    async fn authenticate_client(
        &self,
        form: &TokenForm,
        basic: Option<(String, String)>,
    ) -> Result<Result<Client, OAuthError>> {
        let invalid = || oauth("invalid_client", "client authentication failed");
        let (id, secret) = match (basic, form.client_id.as_deref()) {
            (Some((id, secret)), None) => (id, Some(secret)),
            (Some((id, secret)), Some(body_id)) if body_id == id => (id, Some(secret)),
            (Some(_), Some(_)) => return Ok(Err(invalid())),
            (None, Some(id)) => (id.to_owned(), form.client_secret.clone()),
            (None, None) => return Ok(Err(invalid())),
        };
        let Some(client) = clients::find(&self.db, &id).await? else {
            return Ok(Err(invalid()));
        };
        let ok = match (client.confidential, secret.as_deref()) {
            (true, Some(secret)) => client.secret_matches(secret),
            (false, None) => true,
            _ => false,
        };
        Ok(if ok { Ok(client) } else { Err(invalid()) })
    }

    async fn load_code(&self, code_hash: &str) -> Result<Option<CodeRow>> {
        let row = sqlx::query(
            "SELECT client_id, account_id, redirect_uri, scope, nonce, code_challenge, auth_time, \
             expires_at, used_at FROM auth_codes WHERE code_hash = $1",
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
        }))
    }

    /// Revokes every token issued from a code, after the code was presented twice
    /// (RFC 6749 §4.1.2: the code may have been stolen).
    async fn revoke_code_family(&self, code_hash: &str) -> Result<()> {
        let n = sqlx::query(
            "UPDATE issued_tokens SET revoked_at = $1 WHERE code_hash = $2 AND revoked_at IS NULL",
        )
        .bind(self.now())
        .bind(code_hash)
        .execute(self.db.pool())
        .await?;
        tracing::warn!(
            revoked = n.rows_affected(),
            "authorization code replayed; its tokens are revoked"
        );
        Ok(())
    }

    /// Exchanges a code for tokens.
    ///
    /// # Errors
    /// Storage or signing errors; protocol errors are `Ok(Err(_))`.
    pub async fn exchange(
        &self,
        form: &TokenForm,
        basic: Option<(String, String)>,
    ) -> Result<Result<TokenResponse, OAuthError>> {
        if form.grant_type.as_deref() != Some("authorization_code") {
            return Ok(Err(oauth(
                "unsupported_grant_type",
                "only authorization_code is supported",
            )));
        }
        let client = match self.authenticate_client(form, basic).await? {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        let Some(code) = form.code.as_deref().filter(|c| !c.is_empty()) else {
            return Ok(Err(oauth("invalid_request", "code is required")));
        };
        let code_hash = hash_token(code);
        let bad_grant = || {
            oauth(
                "invalid_grant",
                "the code is invalid, expired, used, or was issued to another client",
            )
        };
        let Some(row) = self.load_code(&code_hash).await? else {
            return Ok(Err(bad_grant()));
        };
        if row.client_id != client.id {
            return Ok(Err(bad_grant()));
        }
        if row.used_at.is_some() {
            self.revoke_code_family(&code_hash).await?;
            return Ok(Err(bad_grant()));
        }
        if row.expires_at <= self.now()
            || form.redirect_uri.as_deref() != Some(row.redirect_uri.as_str())
        {
            return Ok(Err(bad_grant()));
        }
        let verified = Pkce::required().verify(
            Some(Value::private(Some(row.code_challenge.clone()))),
            form.code_verifier.as_deref().map(Cow::Borrowed),
        );
        if verified.is_err() {
            return Ok(Err(oauth("invalid_grant", "PKCE verification failed")));
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
        Ok(Ok(self.mint(&client, &account, &row, &code_hash).await?))
    }

    async fn mint(
        &self,
        client: &Client,
        account: &dge_registry::Account,
        row: &CodeRow,
        code_hash: &str,
    ) -> Result<TokenResponse> {
        let now = self.now();
        let ttl = self.settings.token_ttl_secs;
        let jti = dge_core::new_id();
        let access = AccessClaims {
            iss: self.issuer().to_owned(),
            sub: account.id.clone(),
            aud: self.issuer().to_owned(),
            client_id: client.id.clone(),
            scope: row.scope.clone(),
            iat: now,
            exp: now + ttl,
            jti: jti.clone(),
        };
        let access_token = self.keys.sign(ACCESS_TOKEN_TYPE, &access)?;
        let scopes: Vec<&str> = row.scope.split(' ').collect();
        let email = scopes.contains(&"email");
        let profile = scopes.contains(&"profile");
        let id = IdClaims {
            iss: self.issuer(),
            sub: &account.id,
            aud: &client.id,
            exp: now + ttl,
            iat: now,
            auth_time: row.auth_time,
            nonce: row.nonce.as_deref(),
            email: email.then_some(account.email.as_str()),
            email_verified: email.then_some(account.email_verified),
            given_name: profile.then_some(account.given_name.as_str()),
            family_name: profile.then_some(account.family_name.as_str()),
            name: profile.then(|| account.display_name()),
        };
        let id_token = self.keys.sign("JWT", &id)?;
        sqlx::query(
            "INSERT INTO issued_tokens (jti, code_hash, client_id, account_id, expires_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&jti)
        .bind(code_hash)
        .bind(&client.id)
        .bind(&account.id)
        .bind(now + ttl)
        .bind(now)
        .execute(self.db.pool())
        .await?;
        tracing::info!(client_id = %client.id, account_id = %account.id, "tokens issued");
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in: ttl,
            id_token,
            scope: row.scope.clone(),
        })
    }

    /// Verifies an access token and that it was not revoked.
    ///
    /// # Errors
    /// Storage errors; an invalid token is `Ok(None)`.
    pub async fn access_claims(&self, token: &str) -> Result<Option<AccessClaims>> {
        let Ok(claims) = self
            .keys
            .verify_access_token(token, self.issuer(), self.now())
        else {
            return Ok(None);
        };
        let revoked = dge_authz::tokens::is_revoked(&self.db, &claims.jti).await?;
        Ok((!revoked).then_some(claims))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_decoded() {
        let header = format!("Basic {}", STANDARD.encode("data%2Bhub:s%3Acret"));
        assert_eq!(
            basic_credentials(&header),
            Some(("data+hub".into(), "s:cret".into()))
        );
        assert_eq!(basic_credentials("Bearer abc"), None);
        assert_eq!(basic_credentials("Basic !!!"), None);
    }
}
