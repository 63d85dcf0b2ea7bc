//! The dispatcher: sends what the outbox holds, exactly once per message.
//!
//! A message is claimed by moving its `next_attempt_at` past a lease: the update
//! only succeeds for one replica, so two dispatchers never send the same row at
//! the same time. A replica that dies mid-send leaves the lease to expire and the
//! message is sent again with the same `Message-ID`, so receivers can deduplicate.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use dge_core::{Clock, MaskedEmail};
use dge_store::Db;
use lettre::Message;
use lettre::message::MultiPart;
use sqlx::Row;
use tokio::sync::Notify;

use crate::transport::{SendError, Transport};

/// How long a claimed message is reserved for one dispatcher.
const LEASE_SECS: i64 = 120;
/// Messages claimed per pass.
const BATCH: i64 = 20;

/// Sends queued mail.
pub struct Dispatcher {
    db: Db,
    transport: Transport,
    clock: Arc<dyn Clock>,
    from: lettre::message::Mailbox,
    message_id_domain: String,
    max_attempts: i64,
    wake: Arc<Notify>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("transport", &self.transport)
            .finish_non_exhaustive()
    }
}

struct Queued {
    id: String,
    recipient: String,
    subject: String,
    body_text: String,
    body_html: String,
    attempts: i64,
}

impl Dispatcher {
    /// A dispatcher sending from `from` (a mailbox such as `Name <addr@host>`).
    ///
    /// # Errors
    /// Fails when `from` is not a valid mailbox.
    pub fn new(
        db: Db,
        transport: Transport,
        clock: Arc<dyn Clock>,
        from: &str,
        max_attempts: u32,
        wake: Arc<Notify>,
    ) -> crate::Result<Self> {
        let from: lettre::message::Mailbox = from
            .parse()
            .map_err(|_| crate::Error::Config("invalid sender mailbox".to_owned()))?;
        let message_id_domain = from.email.domain().to_owned();
        Ok(Self {
            db,
            transport,
            clock,
            from,
            message_id_domain,
            max_attempts: i64::from(max_attempts),
            wake,
        })
    }

    /// Runs until `shutdown` completes, sending as mail is queued and retrying
    /// failures when they come due.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            match self.run_once().await {
                Ok(n) if n > 0 => continue,
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "mail dispatch pass failed"),
            }
            tokio::select! {
                () = &mut shutdown => break,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// One pass: claims due messages and sends them. Returns how many were handled.
    ///
    /// # Errors
    /// Fails when the database fails.
    pub async fn run_once(&self) -> sqlx::Result<usize> {
        let now = self.clock.now();
        let due = sqlx::query(
            "SELECT id FROM outbox WHERE status = 'queued' AND next_attempt_at <= $1 \
             ORDER BY next_attempt_at, created_at LIMIT $2",
        )
        .bind(now)
        .bind(BATCH)
        .fetch_all(self.db.pool())
        .await?;
        let mut handled = 0;
        for row in due {
            let id: String = row.try_get("id")?;
            if let Some(msg) = self.claim(&id, now).await? {
                self.deliver(msg).await?;
                handled += 1;
            }
        }
        Ok(handled)
    }

    async fn claim(&self, id: &str, now: i64) -> sqlx::Result<Option<Queued>> {
        let claimed = sqlx::query(
            "UPDATE outbox SET next_attempt_at = $1, updated_at = $2 \
             WHERE id = $3 AND status = 'queued' AND next_attempt_at <= $2",
        )
        .bind(now + LEASE_SECS)
        .bind(now)
        .bind(id)
        .execute(self.db.pool())
        .await?;
        if claimed.rows_affected() != 1 {
            return Ok(None);
        }
        let row = sqlx::query(
            "SELECT id, recipient, subject, body_text, body_html, attempts FROM outbox WHERE id = $1",
        )
        .bind(id)
        .fetch_one(self.db.pool())
        .await?;
        Ok(Some(Queued {
            id: row.try_get("id")?,
            recipient: row.try_get("recipient")?,
            subject: row.try_get("subject")?,
            body_text: row.try_get("body_text")?,
            body_html: row.try_get("body_html")?,
            attempts: row.try_get("attempts")?,
        }))
    }

    async fn deliver(&self, msg: Queued) -> sqlx::Result<()> {
        let outcome = match self.build(&msg) {
            Ok(message) => self.transport.send(message).await,
            Err(reason) => Err(SendError::Permanent(reason)),
        };
        let now = self.clock.now();
        let attempts = msg.attempts + 1;
        match outcome {
            Ok(()) => {
                sqlx::query(
                    "UPDATE outbox SET status = 'sent', attempts = $1, sent_at = $2, \
                     last_error = '', updated_at = $2 WHERE id = $3",
                )
                .bind(attempts)
                .bind(now)
                .bind(&msg.id)
                .execute(self.db.pool())
                .await?;
                tracing::info!(message_id = %msg.id, recipient = %MaskedEmail(&msg.recipient), "mail sent");
            }
            Err(SendError::Transient(reason)) if attempts < self.max_attempts => {
                let delay = backoff_secs(attempts);
                sqlx::query(
                    "UPDATE outbox SET attempts = $1, next_attempt_at = $2, last_error = $3, \
                     updated_at = $4 WHERE id = $5",
                )
                .bind(attempts)
                .bind(now + delay)
                .bind(&reason)
                .bind(now)
                .bind(&msg.id)
                .execute(self.db.pool())
                .await?;
                tracing::warn!(message_id = %msg.id, attempts, retry_in_secs = delay, error = %reason, "mail delivery deferred");
            }
            Err(SendError::Transient(reason) | SendError::Permanent(reason)) => {
                sqlx::query(
                    "UPDATE outbox SET status = 'failed', attempts = $1, last_error = $2, \
                     updated_at = $3 WHERE id = $4",
                )
                .bind(attempts)
                .bind(&reason)
                .bind(now)
                .bind(&msg.id)
                .execute(self.db.pool())
                .await?;
                tracing::error!(message_id = %msg.id, attempts, error = %reason, "mail delivery failed");
            }
        }
        Ok(())
    }

    fn build(&self, msg: &Queued) -> Result<Message, String> {
        let to: lettre::message::Mailbox = msg
            .recipient
            .parse()
            .map_err(|_| "invalid recipient address".to_owned())?;
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(msg.subject.clone())
            .message_id(Some(format!("<{}@{}>", msg.id, self.message_id_domain)))
            .multipart(MultiPart::alternative_plain_html(
                msg.body_text.clone(),
                msg.body_html.clone(),
            ))
            .map_err(|e| e.to_string())
    }
}

/// Exponential back-off: 30 s, 1 min, 2 min … capped at 1 h.
fn backoff_secs(attempts: i64) -> i64 {
    let exp = u32::try_from(attempts.clamp(1, 8) - 1).unwrap_or(0);
    (30 * 2_i64.pow(exp)).min(3600)
}

#[cfg(test)]
mod tests {
    use super::backoff_secs;

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff_secs(1), 30);
        assert_eq!(backoff_secs(2), 60);
        assert_eq!(backoff_secs(3), 120);
        assert_eq!(backoff_secs(20), 3600);
    }
}
