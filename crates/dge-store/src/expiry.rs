//! Rows that expire: once past their expiry (and a day of grace, for the logs and
//! an administrator's questions), nothing reads them any more, and every login,
//! token and abandoned authorization request would otherwise stay forever.
//!
//! Deleted by primary key in batches, so that a first purge of a large table does not
//! hold SQLite's write lock (or a long PostgreSQL transaction) for long. Every replica
//! may run it: the deletes are idempotent.

use crate::Db;

/// Expired rows are kept this long past their expiry (1 day).
pub const GRACE_SECS: i64 = 24 * 3600;

/// Back-channel logouts sent or failed are kept this long after their last change
/// (7 days), for an administrator's questions ("was the module told?"); queued ones
/// are never deleted here.
pub const BACKCHANNEL_RETENTION_SECS: i64 = 7 * 24 * 3600;

/// Rows deleted per statement.
const BATCH: i64 = 1000;

/// The tables of expiring rows, with their primary key (refresh tokens go with their
/// whole family, see [`purge_expired`]). Not here: email tokens and
/// email changes (their expired links still say "expired, ask again"), grants and
/// API tokens (an administrator's records).
const TABLES: [(&str, &str); 7] = [
    ("issued_tokens", "jti"),
    ("refresh_tokens", "token_hash"),
    ("sessions", "id_hash"),
    ("auth_requests", "id_hash"),
    ("upstream_logins", "state_hash"),
    ("upstream_link_offers", "token_hash"),
    ("upstream_logouts", "state_hash"),
];

/// Deletes the rows expired before `now - GRACE_SECS`, and the back-channel
/// logouts finished before `now - BACKCHANNEL_RETENTION_SECS`; returns how many went.
///
/// # Errors
/// The database failed; what was deleted before stays deleted.
pub async fn purge_expired(db: &Db, now: i64) -> sqlx::Result<u64> {
    let before = now - GRACE_SECS;
    let mut deleted = 0;
    for (table, key) in TABLES {
        let sql = if table == "refresh_tokens" {
            // A rotated refresh token is kept while its family lives: presenting it
            // again revokes the family (reuse detection), however old it is.
            format!(
                "DELETE FROM {table} WHERE {key} IN \
                 (SELECT r.{key} FROM {table} r WHERE r.expires_at < $1 AND NOT EXISTS \
                  (SELECT 1 FROM {table} n WHERE n.family_id = r.family_id AND n.expires_at >= $1) \
                  LIMIT {BATCH})"
            )
        } else {
            format!(
                "DELETE FROM {table} WHERE {key} IN \
                 (SELECT {key} FROM {table} WHERE expires_at < $1 LIMIT {BATCH})"
            )
        };
        deleted += in_batches(db, &sql, Some(before)).await?;
    }
    // The clients of a database session (the embedded default; with Redis they live
    // and expire beside the session there) go once their session is gone, whichever
    // way it went.
    let orphans = format!(
        "DELETE FROM session_clients WHERE session_hash IN \
         (SELECT c.session_hash FROM session_clients c WHERE NOT EXISTS \
          (SELECT 1 FROM sessions s WHERE s.id_hash = c.session_hash) LIMIT {BATCH})"
    );
    deleted += in_batches(db, &orphans, None).await?;
    let backchannel = format!(
        "DELETE FROM backchannel_logouts WHERE id IN \
         (SELECT id FROM backchannel_logouts WHERE status IN ('sent', 'failed') \
          AND updated_at < $1 LIMIT {BATCH})"
    );
    deleted += in_batches(db, &backchannel, Some(now - BACKCHANNEL_RETENTION_SECS)).await?;
    Ok(deleted)
}

/// Runs `sql` (a `DELETE` of at most [`BATCH`] rows, with `before` as `$1` if
/// given) until it deletes fewer; returns how many went.
async fn in_batches(db: &Db, sql: &str, before: Option<i64>) -> sqlx::Result<u64> {
    let mut deleted = 0;
    loop {
        let query = sqlx::query(sql);
        let query = match before {
            Some(before) => query.bind(before),
            None => query,
        };
        let gone = query.execute(db.pool()).await?.rows_affected();
        deleted += gone;
        if gone < u64::try_from(BATCH).unwrap_or(u64::MAX) {
            return Ok(deleted);
        }
        // Let the writers queued meanwhile go first.
        tokio::task::yield_now().await;
    }
}
