//! Durable queues worked by several replicas: the mail outbox (`outbox`) and the
//! back-channel logouts (`backchannel_logouts`). Their rows share the columns `id`,
//! `status` (`queued`, then `sent`, `failed`…), `attempts`, `next_attempt_at`,
//! `lease_id`, `last_error`, `sent_at` and `updated_at`.
//!
//! A worker claims a row with one conditional `UPDATE` that writes its own lease id
//! and pushes `next_attempt_at` past the lease. The database runs such updates one
//! at a time per row (a row lock on PostgreSQL, the single writer on SQLite) and
//! re-checks the condition, so among replicas racing for a row exactly one claims
//! it. Only the lease holder records the outcome; a worker that dies leaves its
//! lease to run out, and the row is claimed again.

use sqlx::Row;

use crate::Db;

/// The queues of this module: table names are never built from input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queue {
    /// The mail outbox.
    Outbox,
    /// The back-channel logouts to the modules.
    BackchannelLogouts,
}

impl Queue {
    fn table(self) -> &'static str {
        match self {
            Self::Outbox => "outbox",
            Self::BackchannelLogouts => "backchannel_logouts",
        }
    }
}

/// What an attempt leaves on its row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome<'a> {
    /// `sent`, `failed`, or `queued` again for a retry.
    pub status: &'static str,
    /// Attempts made, this one included.
    pub attempts: i64,
    /// When the row is due again (a retry's).
    pub next_attempt_at: i64,
    /// Why the attempt failed; empty when sent.
    pub last_error: &'a str,
    /// When it was sent, if it was.
    pub sent_at: Option<i64>,
}

/// The ids of at most `batch` rows of `queue` due at `now`, oldest due first.
///
/// # Errors
/// The database failed.
pub async fn due(db: &Db, queue: Queue, now: i64, batch: i64) -> sqlx::Result<Vec<String>> {
    let rows = sqlx::query(&format!(
        "SELECT id FROM {} WHERE status = 'queued' AND next_attempt_at <= $1 \
         ORDER BY next_attempt_at, created_at LIMIT $2",
        queue.table()
    ))
    .bind(now)
    .bind(batch)
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(|r| r.try_get("id")).collect()
}

/// Claims row `id` of `queue` for `lease_secs` if it is still queued and due;
/// returns the lease id when this caller won it.
///
/// # Errors
/// The database failed.
pub async fn claim(
    db: &Db,
    queue: Queue,
    id: &str,
    now: i64,
    lease_secs: i64,
) -> sqlx::Result<Option<String>> {
    let lease = dge_core::new_id();
    let claimed = sqlx::query(&format!(
        "UPDATE {} SET lease_id = $1, next_attempt_at = $2, updated_at = $3 \
         WHERE id = $4 AND status = 'queued' AND next_attempt_at <= $3",
        queue.table()
    ))
    .bind(&lease)
    .bind(now + lease_secs)
    .bind(now)
    .bind(id)
    .execute(db.pool())
    .await?;
    Ok((claimed.rows_affected() == 1).then_some(lease))
}

/// Records `outcome` on row `id` of `queue` and frees it, if `lease` still holds it;
/// returns whether it did (an administrator may have cancelled the row, or the
/// lease ran out and another worker took it over).
///
/// # Errors
/// The database failed.
pub async fn record(
    db: &Db,
    queue: Queue,
    id: &str,
    lease: &str,
    outcome: &Outcome<'_>,
    now: i64,
) -> sqlx::Result<bool> {
    let done = sqlx::query(&format!(
        "UPDATE {} SET status = $1, attempts = $2, next_attempt_at = $3, \
         last_error = $4, sent_at = $5, lease_id = NULL, updated_at = $6 \
         WHERE id = $7 AND lease_id = $8",
        queue.table()
    ))
    .bind(outcome.status)
    .bind(outcome.attempts)
    .bind(outcome.next_attempt_at)
    .bind(outcome.last_error)
    .bind(outcome.sent_at)
    .bind(now)
    .bind(id)
    .bind(lease)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}
