//! The single sign-on session: one cookie, shared by every portal module.
//!
//! The sessions live in [`dge_store::sessions`]: in Redis when it is configured
//! (several replicas), in the database otherwise. Only the cookie's SHA-256 is kept.
//! A password reset or change, a deletion, a suspension or a two-step enrolment ends
//! all of an account's sessions in its own transaction (the account's sessions
//! epoch), then tells their modules on the back channel; each use checks the account
//! is still active.

use dge_core::token::{hash_token, random_token};

use crate::{Provider, Result};

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "dge_session";

/// The `sid` claim of a session (OIDC Back-Channel Logout §2.1), derived from the
/// digest kept at rest, so it reveals nothing about the cookie.
#[must_use]
pub fn session_id(session_hash: &str) -> String {
    hash_token(session_hash).chars().take(32).collect()
}

impl Provider {
    /// Opens a session for `account_id`; returns the cookie value (only its hash is kept).
    ///
    /// # Errors
    /// Storage errors.
    pub async fn open_session(&self, account_id: &str, auth_time: i64) -> Result<String> {
        self.open_session_at_epoch(account_id, auth_time, None)
            .await
    }

    /// [`Self::open_session`] with the account's `sessions_epoch` as this login read
    /// it, if it did ([`dge_store::sessions::Sessions::open`]).
    ///
    /// # Errors
    /// Storage errors.
    pub async fn open_session_at_epoch(
        &self,
        account_id: &str,
        auth_time: i64,
        epoch: Option<i64>,
    ) -> Result<String> {
        let id = random_token();
        let now = self.now();
        self.sessions
            .open(
                &hash_token(&id),
                account_id,
                auth_time,
                now + self.settings.session_ttl_secs,
                now,
                epoch,
            )
            .await?;
        Ok(id)
    }

    /// [`Self::open_session_at_epoch`] for a login in a browser that presents the
    /// cookie `previous` of an earlier session (`prompt=login`, `max_age` exceeded, a
    /// second login): the earlier session does not survive unseen. If it is live and
    /// of the same account, its refresh-token families and its modules move to the
    /// new session and it is closed, so a later logout ends everything this browser
    /// held. A code issued in it and not yet exchanged is refused (its session is
    /// closed): codes are kept in the ephemeral store and live a minute, so they
    /// are not moved; the module asks again. If it is of another account, it is ended as a
    /// logout would end it (tokens revoked, modules told on the back channel).
    ///
    /// # Errors
    /// Storage errors.
    pub async fn open_session_replacing(
        &self,
        account_id: &str,
        auth_time: i64,
        epoch: Option<i64>,
        previous: Option<&str>,
    ) -> Result<String> {
        let id = self
            .open_session_at_epoch(account_id, auth_time, epoch)
            .await?;
        let Some(previous) = previous.filter(|p| !p.is_empty() && *p != id) else {
            return Ok(id);
        };
        // Not covered: two logins sent at the same moment with the same earlier cookie
        // (scripted, or a browser resending) both find it live; one takes its tokens
        // into a session whose cookie the browser may then drop, and the logout of
        // the other does not reach them. Serialising the take-over and following it
        // at logout needs a successor record per session.
        // An expired or ended session has nothing left to carry: its tokens without
        // `offline_access` already died with it, and moving them would revive them.
        let Some((previous_account, _)) = self.session(previous).await? else {
            return Ok(id);
        };
        let (from, to) = (hash_token(previous), hash_token(&id));
        if previous_account == account_id {
            self.carry_over(&from, &to).await?;
        } else {
            self.end_session(&from, Some(&previous_account), "replaced_by_another_login")
                .await?;
        }
        Ok(id)
    }

    /// Moves the refresh-token families and the modules of the session `from` to the
    /// session `to` of the same account, then closes `from`. A refresh racing this move may still write its new token
    /// under `from` (it read its parent before the move): without `offline_access`
    /// that token dies with `from`; with it, it escapes the later logout of `to`.
    async fn carry_over(&self, from: &str, to: &str) -> Result<()> {
        sqlx::query("UPDATE refresh_tokens SET session_hash = $1 WHERE session_hash = $2")
            .bind(to)
            .bind(from)
            .execute(self.db.pool())
            .await?;
        self.sessions.carry_over(from, to, self.now()).await?;
        Ok(())
    }

    /// The account and `auth_time` of a live session whose account is still active.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn session(&self, cookie: &str) -> Result<Option<(String, i64)>> {
        Ok(self.sessions.get(&hash_token(cookie), self.now()).await?)
    }

    /// Records that `client_id` received a code in the session `session_hash`.
    pub(crate) async fn remember_client(&self, session_hash: &str, client_id: &str) -> Result<()> {
        self.sessions
            .remember_client(session_hash, client_id, self.now())
            .await?;
        Ok(())
    }

    /// Those of the clients `ids` that registered a back-channel logout URI, with it.
    pub(crate) async fn backchannel_clients(
        &self,
        ids: Vec<String>,
    ) -> Result<Vec<(crate::clients::Client, String)>> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(client) = crate::clients::find(&self.db, &id).await?
                && let Some(uri) = client.settings.backchannel_logout_uri.clone()
            {
                out.push((client, uri));
            }
        }
        Ok(out)
    }

    /// The account of the session `session_hash`, even if it has expired.
    pub(crate) async fn session_account(&self, session_hash: &str) -> Result<Option<String>> {
        Ok(self.sessions.account(session_hash).await?)
    }

    /// Ends a session.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn close_session(&self, cookie: &str) -> Result<()> {
        self.sessions.close(&hash_token(cookie)).await?;
        Ok(())
    }
}
