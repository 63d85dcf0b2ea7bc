//! Signs access tokens and ID tokens, and records what was issued.

use dge_authz::AccessClaims;
use dge_authz::grants::{self, IssuedAccess, NewRefresh};
use dge_authz::tokens::ACCESS_TOKEN_TYPE;
use dge_registry::Account;
use dge_store::grouped::Statement;
use serde::Serialize;

use super::TokenResponse;
use crate::clients::Client;
use crate::{Provider, Result};

/// Claims of an ID token (OIDC Core §2).
#[derive(Debug, Serialize)]
pub(crate) struct IdClaims<'a> {
    pub(crate) iss: &'a str,
    pub(crate) sub: &'a str,
    pub(crate) aud: &'a str,
    pub(crate) exp: i64,
    pub(crate) iat: i64,
    pub(crate) auth_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) nonce: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) sid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) email_verified: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) given_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) family_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) name: Option<String>,
}

/// What a person's tokens descend from.
#[derive(Debug, Clone)]
pub(crate) struct Lineage<'a> {
    /// Granted scopes.
    pub(crate) scope: &'a str,
    /// Scopes the refresh token keeps (the original grant's).
    pub(crate) grant_scope: &'a str,
    /// When the person authenticated.
    pub(crate) auth_time: i64,
    /// The ID token's nonce (code flow only).
    pub(crate) nonce: Option<&'a str>,
    /// The code the family descends from.
    pub(crate) code_hash: Option<&'a str>,
    /// The family.
    pub(crate) family_id: &'a str,
    /// Digest of the SSO session.
    pub(crate) session_hash: Option<&'a str>,
}

impl Provider {
    /// Signs an access token and returns it with the row that records it: the token
    /// must not leave before that row is committed (the caller commits it, with rows
    /// of its own).
    pub(crate) fn unrecorded_access_token(
        &self,
        client: &Client,
        account_id: Option<&str>,
        scope: &str,
        lineage: Option<&Lineage<'_>>,
    ) -> Result<(String, Statement)> {
        let now = self.now();
        let claims = AccessClaims {
            iss: self.issuer().to_owned(),
            sub: account_id.unwrap_or(&client.id).to_owned(),
            aud: self.issuer().to_owned(),
            client_id: client.id.clone(),
            scope: scope.to_owned(),
            iat: now,
            exp: now + self.settings.token_ttl_secs,
            jti: dge_core::new_id(),
        };
        let token = self.keys.sign(ACCESS_TOKEN_TYPE, &claims)?;
        let issued = IssuedAccess {
            jti: &claims.jti,
            code_hash: lineage.and_then(|l| l.code_hash),
            family_id: lineage.map(|l| l.family_id),
            client_id: &client.id,
            account_id,
            expires_at: claims.exp,
        };
        Ok((token, grants::access_statement(&issued, now)))
    }

    /// Signs an ID token for `account`, with the claims its scopes allow.
    pub(crate) fn id_token(
        &self,
        client: &Client,
        account: &Account,
        l: &Lineage<'_>,
    ) -> Result<String> {
        let now = self.now();
        let scopes: Vec<&str> = l.scope.split(' ').collect();
        let email = scopes.contains(&"email");
        let profile = scopes.contains(&"profile");
        let sid = l.session_hash.map(crate::session::session_id);
        let id = IdClaims {
            iss: self.issuer(),
            sub: &account.id,
            aud: &client.id,
            exp: now + self.settings.token_ttl_secs,
            iat: now,
            auth_time: l.auth_time,
            nonce: l.nonce,
            sid: sid.as_deref(),
            email: email.then_some(account.email.as_str()),
            email_verified: email.then_some(account.email_verified),
            given_name: profile.then_some(account.given_name.as_str()),
            family_name: profile.then_some(account.family_name.as_str()),
            name: profile.then(|| account.display_name()),
        };
        Ok(self
            .keys
            .sign_as(&client.settings.id_token_alg, "JWT", &id)?)
    }

    /// Access, ID and refresh tokens for a person, with the rows that record the
    /// access and refresh tokens: `exchange` commits them with its audit row, in one
    /// group, before the answer leaves.
    pub(crate) async fn person_tokens(
        &self,
        client: &Client,
        account: &Account,
        l: &Lineage<'_>,
    ) -> Result<TokenResponse> {
        let now = self.now();
        let (access_token, access_row) =
            self.unrecorded_access_token(client, Some(&account.id), l.scope, Some(l))?;
        // A client registered for RS256 at run time gets its key on first use.
        self.keys.ensure_alg(&client.settings.id_token_alg).await?;
        let id_token = self.id_token(client, account, l)?;
        let refresh = NewRefresh {
            family_id: l.family_id,
            code_hash: l.code_hash,
            client_id: &client.id,
            account_id: &account.id,
            session_hash: l.session_hash,
            scope: l.grant_scope,
            auth_time: l.auth_time,
            expires_at: now + self.settings.refresh_ttl_secs,
        };
        let (refresh_token, refresh_row) = grants::refresh_statement(&refresh, now);
        tracing::info!(client_id = %client.id, account_id = %account.id, "tokens issued");
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in: self.settings.token_ttl_secs,
            id_token: Some(id_token),
            refresh_token: Some(refresh_token),
            scope: l.scope.to_owned(),
            unrecorded: vec![access_row, refresh_row],
            replay_watch: None,
        })
    }
}
