//! Notices to administrators about new sign-ups, and reminders for old ones.
//!
//! A periodic pass (run by `dge-idp`) finds confirmed sign-ups nobody has been told
//! about yet. In `PerSignup` mode each gets its own email; in `DailyDigest` mode
//! they are gathered into one email a day. Sign-ups pending longer than the
//! reminder delay are listed again in a reminder, at most once per delay. Each
//! account is marked in the transaction that queues its email, so replicas running
//! the same pass never send twice.

use dge_core::time::format_fr;
use dge_registry::{Account, store};
use serde_json::{Value, json};
use sqlx::Row;

use crate::{Result, Workflow};

/// How administrators hear of new sign-ups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeMode {
    /// One email per sign-up.
    PerSignup,
    /// One email a day, at this hour (UTC), listing the day's sign-ups.
    DailyDigest {
        /// Hour of the day, 0 to 23.
        hour_utc: u32,
    },
}

/// Who is told, how, and when to remind.
#[derive(Debug, Clone)]
pub struct NotifySettings {
    /// Administrators' addresses; none disables notices and reminders.
    pub admin_emails: Vec<String>,
    /// Per sign-up or daily digest.
    pub mode: NoticeMode,
    /// Remind about sign-ups pending longer than this.
    pub reminder_after_secs: i64,
}

fn summary(a: &Account) -> Value {
    json!({
        "display_name": a.display_name(),
        "login": a.login.clone().unwrap_or_default(),
        "email": a.email,
        "organisation": a.organisation_name.clone().unwrap_or_default(),
        "function": a.function,
        "description": a.description,
        "created_at": format_fr(a.created_at),
    })
}

/// The last time a digest went out.
async fn last_digest(w: &Workflow) -> Result<i64> {
    let row = sqlx::query(
        "SELECT MAX(created_at) AS at FROM audit_events WHERE action = 'admin.digest_sent'",
    )
    .fetch_one(w.db().pool())
    .await?;
    Ok(row.try_get::<Option<i64>, _>("at")?.unwrap_or(0))
}

/// Whether a digest is due at `now`: the day's hour has passed and none went out since.
fn digest_due(now: i64, hour_utc: u32, last: i64) -> bool {
    let today = now - now.rem_euclid(86_400) + i64::from(hour_utc.min(23)) * 3600;
    let slot = if now >= today { today } else { today - 86_400 };
    last < slot
}

impl Workflow {
    async fn unannounced(&self) -> Result<Vec<Account>> {
        let rows = sqlx::query(
            "SELECT id FROM accounts WHERE status = 'pending' AND admin_notified_at IS NULL ORDER BY created_at LIMIT 200",
        )
        .fetch_all(self.db().pool())
        .await?;
        let mut out = Vec::new();
        for r in rows {
            let id: String = r.try_get("id")?;
            if let Some(a) = store::find_account(self.db(), &id).await? {
                out.push(a);
            }
        }
        Ok(out)
    }

    /// One pass of notices and reminders. Returns how many emails were queued.
    ///
    /// # Errors
    /// Storage or mail errors.
    pub async fn notify_admins(&self, settings: &NotifySettings) -> Result<usize> {
        if settings.admin_emails.is_empty() {
            return Ok(0);
        }
        let mut queued = 0;
        let now = self.registry.now();
        let fresh = self.unannounced().await?;
        match settings.mode {
            NoticeMode::PerSignup => {
                for account in &fresh {
                    queued += self
                        .announce(
                            settings,
                            std::slice::from_ref(account),
                            "admin_signup_notice",
                            now,
                        )
                        .await?;
                }
            }
            NoticeMode::DailyDigest { hour_utc } => {
                if !fresh.is_empty() && digest_due(now, hour_utc, last_digest(self).await?) {
                    queued += self
                        .announce(settings, &fresh, "admin_signup_digest", now)
                        .await?;
                }
            }
        }
        queued += self.remind(settings, now).await?;
        if queued > 0 {
            self.registry.outbox().wake();
        }
        Ok(queued)
    }

    async fn announce(
        &self,
        settings: &NotifySettings,
        accounts: &[Account],
        kind: &str,
        now: i64,
    ) -> Result<usize> {
        let mut tx = self.db().begin().await?;
        let mut marked = Vec::new();
        for a in accounts {
            let done = sqlx::query("UPDATE accounts SET admin_notified_at = $1 WHERE id = $2 AND admin_notified_at IS NULL")
                .bind(now)
                .bind(&a.id)
                .execute(&mut *tx)
                .await?;
            if done.rows_affected() == 1 {
                marked.push(summary(a));
            }
        }
        if marked.is_empty() {
            return Ok(0);
        }
        let context =
            json!({ "accounts": marked, "count": marked.len(), "account": marked[0].clone() });
        for admin in &settings.admin_emails {
            self.registry
                .outbox()
                .enqueue(&mut tx, kind, admin, "", context.clone(), now)
                .await?;
        }
        if kind == "admin_signup_digest" {
            dge_store::audit(
                &mut tx,
                "system",
                "admin.digest_sent",
                "pending",
                &marked.len().to_string(),
                now,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(settings.admin_emails.len())
    }

    async fn remind(&self, settings: &NotifySettings, now: i64) -> Result<usize> {
        let due = now - settings.reminder_after_secs.max(3600);
        let mut tx = self.db().begin().await?;
        let rows = sqlx::query(
            "SELECT id FROM accounts WHERE status = 'pending' AND created_at <= $1 \
             AND (reminded_at IS NULL OR reminded_at <= $1) ORDER BY created_at LIMIT 200",
        )
        .bind(due)
        .fetch_all(&mut *tx)
        .await?;
        let mut listed = Vec::new();
        for r in rows {
            let id: String = r.try_get("id")?;
            let done = sqlx::query("UPDATE accounts SET reminded_at = $1 WHERE id = $2 AND (reminded_at IS NULL OR reminded_at <= $3)")
                .bind(now)
                .bind(&id)
                .bind(due)
                .execute(&mut *tx)
                .await?;
            if done.rows_affected() == 1
                && let Some(a) = store::find_account_in(&mut tx, &id).await?
            {
                listed.push(summary(&a));
            }
        }
        if listed.is_empty() {
            return Ok(0);
        }
        let days = (settings.reminder_after_secs / 86_400).max(1);
        let context = json!({ "accounts": listed, "count": listed.len(), "older_than_days": days });
        for admin in &settings.admin_emails {
            self.registry
                .outbox()
                .enqueue(
                    &mut tx,
                    "admin_pending_reminder",
                    admin,
                    "",
                    context.clone(),
                    now,
                )
                .await?;
        }
        tx.commit().await?;
        Ok(settings.admin_emails.len())
    }
}

#[cfg(test)]
mod tests {
    use super::digest_due;

    #[test]
    fn a_digest_is_due_once_per_day_after_its_hour() {
        let day = 1_800_000_000 - 1_800_000_000 % 86_400;
        let eight = day + 8 * 3600;
        assert!(
            !digest_due(eight - 60, 8, day - 86_400 + 8 * 3600),
            "before the hour, yesterday's was sent"
        );
        assert!(
            digest_due(eight + 60, 8, day - 86_400 + 8 * 3600),
            "after the hour, not yet today"
        );
        assert!(
            !digest_due(eight + 7200, 8, eight + 60),
            "already sent today"
        );
        assert!(
            digest_due(eight - 60, 8, 0),
            "never sent: yesterday's slot is due"
        );
    }
}
