//! RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0).
//!
//! A module sends the person to `/logout` with `post_logout_redirect_uri`, `state`
//! and an `id_token_hint` or `client_id`. The redirect URI must be registered for
//! that client, compared as an exact string; otherwise the request is refused on our
//! own page and the session stays open.
//!
//! Without an `id_token_hint` of the person logged in, the person is asked first
//! (RP-Initiated Logout §2: the provider MUST ask then), so a third-party page cannot
//! log someone out. Logging out revokes every token family the session gave.

use dge_core::token::hash_token;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::Row;

use crate::authorize::with_params;
use crate::{Provider, Result, clients};

/// Parameters of `/logout` (query or form).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct LogoutParams {
    /// An ID token we issued to the module (may have expired).
    pub id_token_hint: Option<String>,
    /// The module, when it sends no `id_token_hint`.
    pub client_id: Option<String>,
    /// Where to send the person back; registered exactly.
    pub post_logout_redirect_uri: Option<String>,
    /// Echoed back to the module.
    pub state: Option<String>,
}

/// What `/logout` should do.
#[derive(Debug, PartialEq, Eq)]
pub enum LogoutOutcome {
    /// Refuse on our own page (French message); nothing was changed.
    Refused(String),
    /// The session is closed; send the person back to the module.
    Redirect(String),
    /// The session is closed; show our own "logged out" page.
    LoggedOut,
    /// Ask the person to confirm before anything is closed.
    Confirm,
}

fn refused(message: &str) -> Result<LogoutOutcome> {
    Ok(LogoutOutcome::Refused(message.to_owned()))
}

impl Provider {
    /// Checks a logout request, then closes the session of `cookie` (if any).
    /// `confirmed`: the person pressed the button of our confirmation page.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn logout(
        &self,
        p: LogoutParams,
        cookie: Option<&str>,
        confirmed: bool,
    ) -> Result<LogoutOutcome> {
        let mut hinted_sub = None;
        let hinted = match p.id_token_hint.as_deref().filter(|h| !h.is_empty()) {
            Some(hint) => match self.keys.id_token_hint(hint, self.issuer()) {
                Some((aud, sub)) => {
                    hinted_sub = Some(sub);
                    Some(aud)
                }
                None => {
                    return refused("Le jeton d'identité fourni n'a pas été émis par ce service.");
                }
            },
            None => None,
        };
        let client_id = match (hinted, p.client_id.filter(|c| !c.is_empty())) {
            (Some(a), Some(b)) if a != b => {
                return refused("Le jeton d'identité fourni appartient à un autre service.");
            }
            (Some(a), _) | (None, Some(a)) => Some(a),
            (None, None) => None,
        };
        let target = match p.post_logout_redirect_uri.filter(|u| !u.is_empty()) {
            None => None,
            Some(uri) => {
                let Some(id) = client_id else {
                    return refused("La demande ne précise pas le service à qui revenir.");
                };
                let Some(client) = clients::find(&self.db, &id).await? else {
                    return refused(
                        "Ce service n'est pas enregistré auprès du fournisseur d'identité.",
                    );
                };
                if !client.post_logout_redirect_uris.contains(&uri) {
                    tracing::warn!(client_id = %client.id, "logout redirect not registered");
                    return refused(
                        "L'adresse de retour après déconnexion n'est pas enregistrée pour ce service.",
                    );
                }
                Some(uri)
            }
        };
        let session = match cookie {
            Some(c) => self.session(c).await?,
            None => None,
        };
        let same_person = matches!((&session, &hinted_sub), (Some((a, _)), Some(s)) if a == s);
        if session.is_some() && !same_person && !confirmed {
            return Ok(LogoutOutcome::Confirm);
        }
        if let Some(cookie) = cookie {
            if let Some((account_id, _)) = &session {
                let mut conn = self.db.pool().acquire().await?;
                let now = self.now();
                dge_store::audit(&mut conn, account_id, "logout", account_id, "", now).await?;
            }
            self.notify_backchannel(&hash_token(cookie)).await?;
            self.revoke_session_tokens(&hash_token(cookie)).await?;
            self.close_session(cookie).await?;
        }
        Ok(match target {
            Some(uri) => {
                let mut params = Vec::new();
                if let Some(state) = p.state.as_deref() {
                    params.push(("state", state));
                }
                LogoutOutcome::Redirect(with_params(&uri, &params))
            }
            None => LogoutOutcome::LoggedOut,
        })
    }
}

/// The event of a logout token (OIDC Back-Channel Logout 1.0 §2.4).
const BACKCHANNEL_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// Logout tokens are accepted for this long.
const LOGOUT_TOKEN_TTL_SECS: i64 = 120;

/// How long one module may take to answer a back-channel notification.
const BACKCHANNEL_TIMEOUT_SECS: u64 = 5;

/// Claims of a logout token (OIDC Back-Channel Logout 1.0 §2.4).
#[derive(Debug, Serialize)]
struct LogoutClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
    jti: String,
    sid: String,
    events: serde_json::Value,
}

impl Provider {
    /// Revokes the access and refresh tokens of every family born in the session.
    async fn revoke_session_tokens(&self, session_hash: &str) -> Result<()> {
        let rows = sqlx::query(
            "SELECT DISTINCT family_id FROM refresh_tokens WHERE session_hash = $1 AND revoked_at IS NULL",
        )
        .bind(session_hash)
        .fetch_all(self.db.pool())
        .await?;
        let now = self.now();
        for row in rows {
            let family: String = row.try_get("family_id")?;
            dge_authz::grants::revoke_family(&self.db, &family, now).await?;
        }
        Ok(())
    }

    /// Posts a signed logout token to every module of the session that registered a
    /// back-channel logout URI. The posts run in the background: a slow module must
    /// not hold the person's logout, and a failure is logged, not retried.
    async fn notify_backchannel(&self, session_hash: &str) -> Result<()> {
        let Some(account_id) = self.session_account(session_hash).await? else {
            return Ok(());
        };
        let clients = self.sessions.clients(session_hash).await?;
        let posts = self
            .backchannel_posts(&account_id, session_hash, clients)
            .await?;
        spawn_posts(posts);
        Ok(())
    }

    /// The signed logout tokens of the session `session_hash` of `account_id`, for
    /// those of `client_ids` that registered a back-channel logout URI.
    async fn backchannel_posts(
        &self,
        account_id: &str,
        session_hash: &str,
        client_ids: Vec<String>,
    ) -> Result<Vec<BackchannelPost>> {
        let sid = crate::session::session_id(session_hash);
        let now = self.now();
        let mut posts = Vec::new();
        for (client, uri) in self.backchannel_clients(client_ids).await? {
            let claims = LogoutClaims {
                iss: self.issuer(),
                sub: account_id,
                aud: &client.id,
                iat: now,
                exp: now + LOGOUT_TOKEN_TTL_SECS,
                jti: dge_core::new_id(),
                sid: sid.clone(),
                events: json!({ BACKCHANNEL_EVENT: {} }),
            };
            self.keys.ensure_alg(&client.settings.id_token_alg).await?;
            let token = self
                .keys
                .sign_as(&client.settings.id_token_alg, "logout+jwt", &claims)?;
            posts.push(BackchannelPost {
                client_id: client.id,
                uri,
                token,
            });
        }
        Ok(posts)
    }
}

/// One logout token to post to one module.
struct BackchannelPost {
    client_id: String,
    uri: String,
    token: String,
}

/// Posts the logout tokens in the background (see [`post_all`]).
fn spawn_posts(posts: Vec<BackchannelPost>) {
    if !posts.is_empty() {
        tokio::spawn(post_all(posts));
    }
}

/// Posts the logout tokens, one module after the other; failures are logged.
async fn post_all(posts: Vec<BackchannelPost>) {
    if posts.is_empty() {
        return;
    }
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(BACKCHANNEL_TIMEOUT_SECS))
        .redirect(reqwest::redirect::Policy::none())
        .build();
    let Ok(http) = http else {
        tracing::error!("cannot build the back-channel logout HTTP client");
        return;
    };
    for BackchannelPost {
        client_id,
        uri,
        token,
    } in posts
    {
        let sent = http
            .post(&uri)
            .form(&[("logout_token", token.as_str())])
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => {
                tracing::info!(client_id = %client_id, "back-channel logout delivered");
            }
            Ok(r) => {
                tracing::warn!(client_id = %client_id, status = %r.status(), "back-channel logout refused");
            }
            Err(e) => {
                tracing::warn!(client_id = %client_id, error = %e, "back-channel logout failed");
            }
        }
    }
}

/// Account changes that end every session of an account (a password reset or
/// change, a suspension, a deletion…) tell the modules of those sessions, as a
/// logout does. Like a logout's, the posts are not retried: a module that misses
/// one still sees the person's tokens refused by `Check` and introspection.
impl dge_store::sessions::SessionsEnded for Provider {
    fn sessions_ended(&self, account_id: &str, sessions: Vec<dge_store::sessions::EndingSession>) {
        let provider = self.clone();
        let account_id = account_id.to_owned();
        tokio::spawn(async move {
            let mut posts = Vec::new();
            for session in sessions {
                match provider
                    .backchannel_posts(&account_id, &session.hash, session.clients)
                    .await
                {
                    Ok(more) => posts.extend(more),
                    Err(e) => {
                        tracing::error!(error = %dge_core::ErrorChain(&e), "back-channel logout tokens not made");
                    }
                }
            }
            post_all(posts).await;
        });
    }
}
