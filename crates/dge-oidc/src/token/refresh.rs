//! The `refresh_token` grant (RFC 6749 §6), with rotation: every use returns a new
//! refresh token and retires the old one; presenting a retired one revokes the
//! whole family (OAuth 2.0 Security BCP §4.14.2).

use dge_authz::grants;
use dge_registry::store::find_account;

use super::mint::Lineage;
use super::{Grant, OAuthError, ReplayWatch, TokenForm, oauth, subset};
use crate::Provider;
use crate::clients::Client;

fn bad_grant() -> OAuthError {
    oauth(
        "invalid_grant",
        "the refresh token is invalid, expired, revoked, or was issued to another client",
    )
}

impl Provider {
    /// Rotates a refresh token.
    pub(super) async fn refresh_grant(&self, client: &Client, form: &TokenForm) -> Grant {
        let Some(token) = form.refresh_token.as_deref().filter(|t| !t.is_empty()) else {
            return Ok(Err(oauth("invalid_request", "refresh_token is required")));
        };
        let now = self.now();
        let Some(old) = grants::find_refresh(&self.db, token).await? else {
            return Ok(Err(bad_grant()));
        };
        // Another client's token: refused, and nothing changes for its owner.
        if old.client_id != client.id {
            return Ok(Err(bad_grant()));
        }
        if old.used_at.is_some() {
            tracing::warn!(client_id = %client.id, "refresh token reused");
            self.replayed(ReplayWatch::Family(old.family_id)).await?;
            return Ok(Err(bad_grant()));
        }
        if !old.usable(now) {
            return Ok(Err(bad_grant()));
        }
        let granted: Vec<&str> = old.scope.split(' ').collect();
        let scope = match form.scope.as_deref().map(str::trim) {
            Some(asked) if !asked.is_empty() => {
                if !subset(asked, &granted) {
                    return Ok(Err(oauth(
                        "invalid_scope",
                        "a refresh can only keep or narrow the granted scopes",
                    )));
                }
                asked.to_owned()
            }
            _ => old.scope.clone(),
        };
        if !old.session_holds(&self.sessions, now).await? {
            return Ok(Err(bad_grant()));
        }
        let Some(account) = find_account(&self.db, &old.account_id).await? else {
            return Ok(Err(bad_grant()));
        };
        if account.status != dge_registry::AccountStatus::Active {
            return Ok(Err(bad_grant()));
        }
        if !grants::consume_refresh(&self.db, &old.token_hash, now).await? {
            // Lost a race with another use of the same token: that is a reuse.
            self.replayed(ReplayWatch::Family(old.family_id)).await?;
            return Ok(Err(bad_grant()));
        }
        let lineage = Lineage {
            scope: &scope,
            grant_scope: &old.scope,
            auth_time: old.auth_time,
            nonce: None,
            code_hash: old.code_hash.as_deref(),
            family_id: &old.family_id,
            session_hash: old.session_hash.as_deref(),
        };
        let mut response = self.person_tokens(client, &account, &lineage).await?;
        response.replay_watch = Some(ReplayWatch::Family(old.family_id.clone()));
        Ok(Ok(response))
    }
}
