//! The `client_credentials` grant (RFC 6749 §4.4) for internal services. The
//! scopes a client may ask are set per client (`service_scopes`); each guards gRPC
//! methods (`authz:check` lets a service call `Authorization.Check`, …).

use super::{Grant, TokenForm, TokenResponse, oauth, subset};
use crate::Provider;
use crate::clients::Client;

impl Provider {
    /// Issues an access token to a service, for itself.
    pub(super) async fn service_grant(&self, client: &Client, form: &TokenForm) -> Grant {
        if !client.confidential || client.settings.service_scopes.is_empty() {
            return Ok(Err(oauth(
                "unauthorized_client",
                "this client may not use client_credentials",
            )));
        }
        let allowed: Vec<&str> = client
            .settings
            .service_scopes
            .iter()
            .map(String::as_str)
            .collect();
        let scope = match form.scope.as_deref().map(str::trim) {
            Some(asked) if !asked.is_empty() => {
                if !subset(asked, &allowed) {
                    return Ok(Err(oauth(
                        "invalid_scope",
                        "a scope asked for is not granted to this client",
                    )));
                }
                asked
                    .split(' ')
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
                    .join(" ")
            }
            _ => allowed.join(" "),
        };
        // Recorded by `exchange`, in the commit of its audit row.
        let (access_token, row) = self.unrecorded_access_token(client, None, &scope, None)?;
        tracing::info!(client_id = %client.id, scope = %scope, "service token issued");
        Ok(Ok(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in: self.settings.token_ttl_secs,
            id_token: None,
            refresh_token: None,
            scope,
            unrecorded: vec![row],
            replay_watch: None,
        }))
    }
}
