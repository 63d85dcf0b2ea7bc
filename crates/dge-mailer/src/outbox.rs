//! Rendering an email and writing it to the outbox.

use std::sync::Arc;

use dge_core::MaskedEmail;
use minijinja::Environment;
use serde_json::{Value, json};
use sqlx::AnyConnection;
use tokio::sync::Notify;

use crate::{Error, Result, templates};

/// What every email says about the portal.
#[derive(Debug, Clone)]
pub struct MailSettings {
    /// Display name of the portal ("DataGrandEst").
    pub portal_name: String,
    /// The portal's home page.
    pub home_url: String,
    /// Where people can ask for help.
    pub support_email: String,
    /// The `From` mailbox, e.g. `DataGrandEst <no-reply@datagrandest.fr>`.
    pub from: String,
}

/// Renders emails into the outbox. Cheap to clone.
#[derive(Clone)]
pub struct Outbox {
    env: Arc<Environment<'static>>,
    settings: Arc<MailSettings>,
    wake: Arc<Notify>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Outbox {
    /// An outbox with the embedded templates.
    #[must_use]
    pub fn new(settings: MailSettings) -> Self {
        Self {
            env: Arc::new(templates::environment()),
            settings: Arc::new(settings),
            wake: Arc::new(Notify::new()),
        }
    }

    /// The portal settings used in emails.
    #[must_use]
    pub fn settings(&self) -> &MailSettings {
        &self.settings
    }

    /// Notified after a commit that queued mail, so the dispatcher sends at once.
    #[must_use]
    pub fn wake_handle(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Tells the dispatcher new mail is committed.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Renders `kind` for `to` and writes it to the outbox on `conn`, which should be
    /// the transaction of the change that causes the email. Returns the message id.
    ///
    /// # Errors
    /// Fails when a template does not render or the insert fails.
    pub async fn enqueue(
        &self,
        conn: &mut AnyConnection,
        kind: &str,
        to: &str,
        name: &str,
        extra: Value,
        now: i64,
    ) -> Result<String> {
        let mut context = json!({
            "portal": {
                "name": self.settings.portal_name,
                "home_url": self.settings.home_url,
                "support_email": self.settings.support_email,
            },
            "name": name,
        });
        if let (Some(base), Value::Object(more)) = (context.as_object_mut(), extra) {
            base.extend(more);
        }
        let subject = self.render(kind, "subject.txt", &context)?;
        let subject = single_line(&subject);
        let text = self.render(kind, "txt", &context)?;
        let html = self.render(kind, "html", &context)?;
        let id = dge_core::new_id();
        sqlx::query(
            "INSERT INTO outbox (id, recipient, kind, subject, body_text, body_html, status, \
             attempts, next_attempt_at, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 'queued', 0, $7, $7, $7)",
        )
        .bind(&id)
        .bind(to)
        .bind(kind)
        .bind(&subject)
        .bind(&text)
        .bind(&html)
        .bind(now)
        .execute(conn)
        .await?;
        tracing::debug!(message_id = %id, kind, recipient = %MaskedEmail(to), "mail queued");
        Ok(id)
    }

    fn render(&self, kind: &str, suffix: &str, context: &Value) -> Result<String> {
        let name = format!("{kind}.{suffix}");
        let template = self
            .env
            .get_template(&name)
            .map_err(|source| Error::Template {
                kind: kind.to_owned(),
                source,
            })?;
        template.render(context).map_err(|source| Error::Template {
            kind: kind.to_owned(),
            source,
        })
    }
}

/// A subject on one line: control characters (CR and LF included) become spaces,
/// so nothing typed by a person can start a new header.
fn single_line(s: &str) -> String {
    let cleaned: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    cleaned.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::single_line;

    #[test]
    fn subjects_cannot_carry_header_breaks() {
        assert_eq!(
            single_line("Bonjour\r\nBcc: x@y.fr\n"),
            "Bonjour Bcc: x@y.fr"
        );
    }
}
