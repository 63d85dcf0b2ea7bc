//! The single sign-on session: one cookie, shared by every portal module.

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

    /// Ends a session.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn close_session(&self, cookie: &str) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
            .bind(hash_token(cookie))
            .execute(self.db.pool())
            .await?;
        Ok(())
    }
}
