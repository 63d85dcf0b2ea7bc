//! The single sign-on session: one cookie, shared by every portal module.
//!
//! Sessions stay in the database, shared by every replica, rather than in Redis with
//! the codes: a password reset ends all of an account's sessions in the same
//! transaction as the new password (`dge_registry::reset`), deleting an account drops
//! them by foreign key, each use checks the account is still active by a join, and
//! `session_clients` lists the modules to tell at back-channel logout. Redis would
//! need a per-account index kept in step by hand, and sessions of eight hours should
//! survive a Redis restart.

use dge_core::token::{hash_token, random_token};
use sqlx::Row;

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
        let id = random_token();
        let now = self.now();
        sqlx::query(
            "INSERT INTO sessions (id_hash, account_id, auth_time, expires_at, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(hash_token(&id))
        .bind(account_id)
        .bind(auth_time)
        .bind(now + self.settings.session_ttl_secs)
        .bind(now)
        .execute(self.db.pool())
        .await?;
        Ok(id)
    }

    /// The account and `auth_time` of a live session whose account is still active.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn session(&self, cookie: &str) -> Result<Option<(String, i64)>> {
        let row = sqlx::query(
            "SELECT s.account_id, s.auth_time FROM sessions s JOIN accounts a ON a.id = s.account_id \
             WHERE s.id_hash = $1 AND s.expires_at > $2 AND a.status = 'active'",
        )
        .bind(hash_token(cookie))
        .bind(self.now())
        .fetch_optional(self.db.pool())
        .await?;
        row.map(|r| Ok((r.try_get("account_id")?, r.try_get("auth_time")?)))
            .transpose()
    }

    /// Records that `client_id` received a code in the session `session_hash`.
    pub(crate) async fn remember_client(&self, session_hash: &str, client_id: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO session_clients (session_hash, client_id, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (session_hash, client_id) DO NOTHING",
        )
        .bind(session_hash)
        .bind(client_id)
        .bind(self.now())
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// The clients of a session that registered a back-channel logout URI.
    pub(crate) async fn backchannel_clients(
        &self,
        session_hash: &str,
    ) -> Result<Vec<(crate::clients::Client, String)>> {
        let rows = sqlx::query(
            "SELECT sc.client_id FROM session_clients sc JOIN oidc_clients c ON c.id = sc.client_id \
             WHERE sc.session_hash = $1 AND c.backchannel_logout_uri IS NOT NULL ORDER BY sc.client_id",
        )
        .bind(session_hash)
        .fetch_all(self.db.pool())
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let id: String = row.try_get("client_id")?;
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
        let row = sqlx::query("SELECT account_id FROM sessions WHERE id_hash = $1")
            .bind(session_hash)
            .fetch_optional(self.db.pool())
            .await?;
        row.map(|r| r.try_get("account_id"))
            .transpose()
            .map_err(Into::into)
    }

    /// Ends a session.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn close_session(&self, cookie: &str) -> Result<()> {
        let hash = hash_token(cookie);
        sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
            .bind(&hash)
            .execute(self.db.pool())
            .await?;
        sqlx::query("DELETE FROM session_clients WHERE session_hash = $1")
            .bind(&hash)
            .execute(self.db.pool())
            .await?;
        Ok(())
    }
}
