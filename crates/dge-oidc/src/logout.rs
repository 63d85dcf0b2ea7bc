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
use serde::Deserialize;
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
        let mut hinted_iat = None;
        let mut hinted_sid = None;
        let hinted = match p.id_token_hint.as_deref().filter(|h| !h.is_empty()) {
            Some(hint) => match self.id_token_hint(hint) {
                Some(h) => {
                    hinted_sub = Some(h.sub);
                    hinted_iat = Some(h.iat);
                    hinted_sid = h.sid;
                    Some(h.aud)
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
        let redirect = p.post_logout_redirect_uri.filter(|u| !u.is_empty());
        // The module a hint or a return address names must be registered, and a hint
        // must come from its current registration: an ID token of a removed client
        // proves nothing, not even who is logging out.
        let client = match &client_id {
            Some(id) if hinted_iat.is_some() || redirect.is_some() => {
                let Some(client) = clients::find(&self.db, id).await? else {
                    return refused(
                        "Ce service n'est pas enregistré auprès du fournisseur d'identité.",
                    );
                };
                if hinted_iat.is_some_and(|iat| iat < client.registered_at) {
                    return refused(
                        "Le jeton d'identité fourni a été émis pour une version retirée de ce service.",
                    );
                }
                Some(client)
            }
            _ => None,
        };
        let target = match redirect {
            None => None,
            Some(uri) => {
                let Some(client) = client else {
                    return refused("La demande ne précise pas le service à qui revenir.");
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
        // The hint must belong to this very session, not only to this person: an ID
        // token of an earlier session (from a history, a log, an old logout link)
        // would otherwise let any site end the current one without a question
        // (RP-Initiated Logout §2). A hint without `sid` is judged by its person.
        let current_sid = cookie.map(|c| crate::session::session_id(&hash_token(c)));
        let same_person = matches!((&session, &hinted_sub), (Some((a, _)), Some(s)) if a == s)
            && hinted_sid.is_none_or(|sid| current_sid.as_deref() == Some(sid.as_str()));
        if session.is_some() && !same_person && !confirmed {
            return Ok(LogoutOutcome::Confirm);
        }
        if let Some(cookie) = cookie {
            let account_id = session.map(|(account_id, _)| account_id);
            self.end_session(&hash_token(cookie), account_id.as_deref(), "")
                .await?;
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

impl Provider {
    /// Ends the session `session_hash` as a logout does: audited as `logout` (with
    /// `detail`) for `account_id`, the live session's account if it has one, its
    /// modules told on the back channel, its tokens revoked, the session closed.
    pub(crate) async fn end_session(
        &self,
        session_hash: &str,
        account_id: Option<&str>,
        detail: &str,
    ) -> Result<()> {
        if let Some(account_id) = account_id {
            let mut conn = self.db.pool().acquire().await?;
            let now = self.now();
            dge_store::audit(&mut conn, account_id, "logout", account_id, detail, now).await?;
        }
        self.notify_backchannel(session_hash).await?;
        self.revoke_session_tokens(session_hash).await?;
        self.sessions.close(session_hash).await?;
        Ok(())
    }

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

    /// Queues a back-channel logout for every module of the session that registered
    /// a back-channel logout URI ([`crate::backchannel`]): the dispatcher posts
    /// them at once and retries those that fail, so a slow or absent module does not
    /// hold the person's logout.
    async fn notify_backchannel(&self, session_hash: &str) -> Result<()> {
        let Some(account_id) = self.session_account(session_hash).await? else {
            return Ok(());
        };
        let clients = self.sessions.clients(session_hash).await?;
        if self
            .queue_backchannel(&account_id, session_hash, clients)
            .await?
            > 0
        {
            self.wake_backchannel();
        }
        Ok(())
    }
}

/// Account changes that end every session of an account (a password reset or
/// change, a suspension, a deletion…) tell the modules of those sessions, as a
/// logout does, through the same queue.
impl dge_store::sessions::SessionsEnded for Provider {
    fn sessions_ended(&self, account_id: &str, sessions: Vec<dge_store::sessions::EndingSession>) {
        let provider = self.clone();
        let account_id = account_id.to_owned();
        // Queued after the change's commit (this hook must not block, and the
        // registry's transaction is not ours): a crash between that commit and these
        // inserts loses the notifications, and the modules are not told.
        tokio::spawn(async move {
            for session in sessions {
                if let Err(e) = provider
                    .queue_backchannel(&account_id, &session.hash, session.clients)
                    .await
                {
                    tracing::error!(error = %dge_core::ErrorChain(&e), "back-channel logouts not queued");
                }
            }
            provider.wake_backchannel();
        });
    }
}
