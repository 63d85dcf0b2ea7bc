//! The dispatcher: sends what the outbox holds, once per message.
//!
//! A dispatcher claims a message with a lease ([`dge_store::leases`]), so among
//! replicas racing for a message exactly one claims it, and only the lease holder
//! records the outcome.
//!
//! A replica that dies mid-send leaves its lease to expire and the message is sent
//! again, with the same `Message-ID` (built from the outbox id), so receivers can
//! tell it is the same email.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use dge_core::{Clock, MaskedEmail};
use dge_store::Db;
use dge_store::leases::{self, Outcome, Queue};
use lettre::Message;
use lettre::message::{Mailbox, MultiPart};
use sqlx::Row;
use tokio::sync::Notify;

use crate::transport::{SendError, Transport};

/// How the dispatcher sends and retries.
#[derive(Debug, Clone)]
pub struct DispatchSettings {
    /// The `From` mailbox, such as `DataGrandEst <no-reply@datagrandest.fr>`; its
    /// domain also ends every `Message-ID`.
    pub from: String,
    /// Attempts before a message is marked failed (at least 1).
    pub max_attempts: u32,
    /// Wait after the first failed attempt; it doubles after each further one.
    pub retry_base_secs: i64,
    /// The longest wait between two attempts.
    pub retry_max_secs: i64,
    /// How long a claimed message is reserved for one dispatcher. Longer than a
    /// send can take (a few SMTP timeouts), or a slow send may be repeated.
    pub lease_secs: i64,
    /// Messages claimed per pass.
    pub batch: i64,
    /// Sent messages are deleted this long after they were sent (24 h): they hold an
    /// address and a personal text that nobody needs once delivered. At least an hour,
    /// because the reset limit counts the emails of the last hour.
    pub sent_retention_secs: i64,
    /// Failed and cancelled messages are deleted this long after their last change
    /// (7 days), which leaves an administrator time to retry them.
    pub failed_retention_secs: i64,
}

/// The least retention of sent messages: the password-reset limit counts the reset
/// emails of the last hour in the outbox.
pub const MIN_SENT_RETENTION_SECS: i64 = 3600;

impl Default for DispatchSettings {
    fn default() -> Self {
        Self {
            from: "DataGrandEst <no-reply@datagrandest.fr>".to_owned(),
            max_attempts: 8,
            retry_base_secs: 30,
            retry_max_secs: 3600,
            lease_secs: 300,
            batch: 20,
            sent_retention_secs: 24 * 3600,
            failed_retention_secs: 7 * 24 * 3600,
        }
    }
}

impl DispatchSettings {
    /// Wait before the next attempt, after `attempts` failed ones: base, 2×base,
    /// 4×base … capped at `retry_max_secs`.
    #[must_use]
    pub fn backoff_secs(&self, attempts: i64) -> i64 {
        dge_core::retry::backoff_secs(attempts, self.retry_base_secs, self.retry_max_secs)
    }
}

/// How often the dispatcher applies the retention policy.
const PURGE_EVERY_SECS: i64 = 600;

/// Sends queued mail.
pub struct Dispatcher {
    db: Db,
    transport: Transport,
    clock: Arc<dyn Clock>,
    settings: DispatchSettings,
    from: Mailbox,
    wake: Arc<Notify>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("transport", &self.transport)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// A message this dispatcher holds the lease of.
struct Claimed {
    id: String,
    lease: String,
    recipient: String,
    subject: String,
    body_text: String,
    body_html: String,
    attempts: i64,
}

impl Dispatcher {
    /// A dispatcher; `wake` is the outbox's wake handle.
    ///
    /// # Errors
    /// Fails when `from` is not a valid mailbox or a setting is out of range.
    pub fn new(
        db: Db,
        transport: Transport,
        clock: Arc<dyn Clock>,
        settings: DispatchSettings,
        wake: Arc<Notify>,
    ) -> crate::Result<Self> {
        let from: Mailbox = settings
            .from
            .parse()
            .map_err(|_| crate::Error::Config("invalid sender mailbox".to_owned()))?;
        if settings.max_attempts == 0 || settings.lease_secs < 1 || settings.batch < 1 {
            return Err(crate::Error::Config(
                "max_attempts, lease_secs and batch must be at least 1".to_owned(),
            ));
        }
        if settings.sent_retention_secs < MIN_SENT_RETENTION_SECS
            || settings.failed_retention_secs < settings.sent_retention_secs
        {
            return Err(crate::Error::Config(
                "sent_retention_secs must be at least 3600, failed_retention_secs at least as long"
                    .to_owned(),
            ));
        }
        Ok(Self {
            db,
            transport,
            clock,
            settings,
            from,
            wake,
        })
    }

    /// Runs until `shutdown` completes, sending as mail is queued and retrying
    /// failures when they come due.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut purged_at = i64::MIN;
        loop {
            let now = self.clock.now();
            if now.saturating_sub(purged_at) >= PURGE_EVERY_SECS {
                purged_at = now;
                if let Err(e) = self.purge_old().await {
                    tracing::error!(error = %e, "outbox retention pass failed");
                }
            }
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

    /// Applies the retention policy: deletes the messages sent more than
    /// `sent_retention_secs` ago and the failed or cancelled ones untouched for
    /// `failed_retention_secs`. Queued messages are never deleted. Returns how many
    /// went.
    ///
    /// # Errors
    /// Fails when the database fails.
    pub async fn purge_old(&self) -> sqlx::Result<u64> {
        let now = self.clock.now();
        let sent = sqlx::query("DELETE FROM outbox WHERE status = 'sent' AND sent_at < $1")
            .bind(now - self.settings.sent_retention_secs)
            .execute(self.db.pool())
            .await?
            .rows_affected();
        let failed = sqlx::query(
            "DELETE FROM outbox WHERE status IN ('failed', 'cancelled') AND updated_at < $1",
        )
        .bind(now - self.settings.failed_retention_secs)
        .execute(self.db.pool())
        .await?
        .rows_affected();
        let total = sent + failed;
        if total > 0 {
            tracing::info!(count = total, "old outbox messages deleted");
        }
        Ok(total)
    }

    /// One pass: claims due messages and sends them. Returns how many this
    /// dispatcher handled (others may have claimed some of the due ones).
    ///
    /// # Errors
    /// Fails when the database fails.
    pub async fn run_once(&self) -> sqlx::Result<usize> {
        let due = leases::due(
            &self.db,
            Queue::Outbox,
            self.clock.now(),
            self.settings.batch,
        )
        .await?;
        let mut handled = 0;
        for id in due {
            if let Some(msg) = self.claim(&id).await? {
                self.deliver(msg).await?;
                handled += 1;
            }
        }
        Ok(handled)
    }

    async fn claim(&self, id: &str) -> sqlx::Result<Option<Claimed>> {
        let now = self.clock.now();
        let claimed = leases::claim(&self.db, Queue::Outbox, id, now, self.settings.lease_secs);
        let Some(lease) = claimed.await? else {
            return Ok(None);
        };
        let row = sqlx::query(
            "SELECT recipient, subject, body_text, body_html, attempts FROM outbox \
             WHERE id = $1 AND lease_id = $2",
        )
        .bind(id)
        .bind(&lease)
        .fetch_optional(self.db.pool())
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        Ok(Some(Claimed {
            id: id.to_owned(),
            lease,
            recipient: row.try_get("recipient")?,
            subject: row.try_get("subject")?,
            body_text: row.try_get("body_text")?,
            body_html: row.try_get("body_html")?,
            attempts: row.try_get("attempts")?,
        }))
    }

    async fn deliver(&self, msg: Claimed) -> sqlx::Result<()> {
        let outcome = match self.build(&msg) {
            Ok(message) => self.transport.send(message).await,
            Err(reason) => Err(SendError::Permanent(reason)),
        };
        let now = self.clock.now();
        let attempts = msg.attempts + 1;
        let record = match &outcome {
            Ok(()) => Outcome {
                status: "sent",
                attempts,
                next_attempt_at: now,
                last_error: "",
                sent_at: Some(now),
            },
            Err(SendError::Transient(reason))
                if attempts < i64::from(self.settings.max_attempts) =>
            {
                Outcome {
                    status: "queued",
                    attempts,
                    next_attempt_at: now + self.settings.backoff_secs(attempts),
                    last_error: reason,
                    sent_at: None,
                }
            }
            Err(SendError::Transient(reason) | SendError::Permanent(reason)) => Outcome {
                status: "failed",
                attempts,
                next_attempt_at: now,
                last_error: reason,
                sent_at: None,
            },
        };
        let recorded =
            leases::record(&self.db, Queue::Outbox, &msg.id, &msg.lease, &record, now).await?;
        let recipient = MaskedEmail(&msg.recipient);
        let error = mask_addresses(record.last_error);
        match record.status {
            "sent" => tracing::info!(message_id = %msg.id, %recipient, attempts, "mail sent"),
            "queued" => tracing::warn!(
                message_id = %msg.id,
                attempts,
                retry_in_secs = record.next_attempt_at - now,
                %error,
                "mail delivery deferred"
            ),
            // An operator must act: read the reason, then `dgectl mail retry`.
            _ => tracing::error!(message_id = %msg.id, attempts, %error, "mail delivery failed"),
        }
        if !recorded {
            // An administrator cancelled it, or the lease ran out and another
            // dispatcher took it over, while this one was sending.
            tracing::warn!(message_id = %msg.id, "mail outcome not recorded: lease lost");
        }
        Ok(())
    }

    fn build(&self, msg: &Claimed) -> Result<Message, String> {
        let to: Mailbox = msg
            .recipient
            .parse()
            .map_err(|_| "invalid recipient address".to_owned())?;
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(msg.subject.clone())
            .message_id(Some(message_id(&msg.id, &self.from)))
            .multipart(MultiPart::alternative_plain_html(
                msg.body_text.clone(),
                msg.body_html.clone(),
            ))
            .map_err(|e| e.to_string())
    }
}

/// The `Message-ID` of an outbox message: the same on every attempt.
#[must_use]
pub fn message_id(outbox_id: &str, from: &Mailbox) -> String {
    format!("<{outbox_id}@{}>", from.email.domain())
}

/// A server's reason with every address in it masked, for the logs (the outbox
/// keeps the full text for administrators).
fn mask_addresses(reason: &str) -> String {
    reason
        .split(' ')
        .map(|word| {
            if word.contains('@') {
                let bare = word.trim_matches(|c: char| "<>,;:()[]\"'".contains(c));
                word.replacen(bare, &MaskedEmail(bare).to_string(), 1)
            } else {
                word.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let s = DispatchSettings::default();
        assert_eq!(s.backoff_secs(1), 30);
        assert_eq!(s.backoff_secs(2), 60);
        assert_eq!(s.backoff_secs(3), 120);
        assert_eq!(s.backoff_secs(20), 3600);
        assert_eq!(s.backoff_secs(i64::MAX), 3600);
        let fast = DispatchSettings {
            retry_base_secs: 1,
            retry_max_secs: 4,
            ..s
        };
        assert_eq!(
            (1..=5).map(|n| fast.backoff_secs(n)).collect::<Vec<_>>(),
            [1, 2, 4, 4, 4]
        );
    }

    #[test]
    fn reasons_in_logs_mask_addresses() {
        assert_eq!(
            mask_addresses("permanent error (550): 5.1.1 <camille.martin@nancy.fr>: unknown"),
            "permanent error (550): 5.1.1 <c***@nancy.fr>: unknown"
        );
    }

    #[test]
    fn a_sender_name_cannot_carry_a_header() {
        let hostile = "Portail\r\nBcc: intrus@pirate.example <no-reply@portail.example>";
        if let Ok(from) = hostile.parse::<Mailbox>() {
            let message = Message::builder()
                .from(from)
                .to("zoe@nancy.fr".parse().unwrap())
                .subject("s")
                .body(String::from("b"))
                .unwrap();
            let raw = String::from_utf8(message.formatted()).unwrap();
            assert!(!raw.contains("\r\nBcc:"), "{raw}");
        }
    }

    #[test]
    fn message_ids_are_stable_and_use_the_sender_domain() {
        let from: Mailbox = "DataGrandEst <no-reply@datagrandest.fr>".parse().unwrap();
        assert_eq!(message_id("abc", &from), "<abc@datagrandest.fr>");
        assert_eq!(message_id("abc", &from), message_id("abc", &from));
    }
}
