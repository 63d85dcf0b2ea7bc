//! The `Mailer` gRPC service: administrators see, retry and cancel outbox messages.

use std::sync::Arc;

use dge_authz::Authenticator;
use dge_authz::caller::{Caller, unavailable};
use dge_core::{MaskedEmail, Violations};
use dge_proto::v1::mailer_server::Mailer;
use dge_proto::v1::{
    CancelMessageRequest, CancelMessageResponse, ListMessagesRequest, ListMessagesResponse,
    MailMessage, MessageStatus, RetryMessageRequest, RetryMessageResponse,
};
use dge_store::Db;
use lettre::message::Mailbox;
use sqlx::Row;
use sqlx::any::AnyRow;
use tokio::sync::Notify;
use tonic::{Request, Response, Status};

/// Messages listed when the request gives no limit.
const DEFAULT_LIMIT: u32 = 100;
/// The most messages one list returns.
const MAX_LIMIT: u32 = 1000;

/// Administrators' view of the outbox.
#[derive(Debug, Clone)]
pub struct MailerService {
    db: Db,
    auth: Authenticator,
    wake: Arc<Notify>,
    from: Option<Mailbox>,
}

impl MailerService {
    /// A new service; `wake` is the outbox's wake handle and `from` the sender
    /// mailbox, whose domain ends every `Message-ID`.
    #[must_use]
    pub fn new(db: Db, auth: Authenticator, wake: Arc<Notify>, from: &str) -> Self {
        Self {
            db,
            auth,
            wake,
            from: from.parse().ok(),
        }
    }

    fn message(&self, r: &AnyRow) -> Result<MailMessage, sqlx::Error> {
        let id: String = r.try_get("id")?;
        let recipient: String = r.try_get("recipient")?;
        let status: String = r.try_get("status")?;
        let attempts: i64 = r.try_get("attempts")?;
        let sent_at: Option<i64> = r.try_get("sent_at")?;
        Ok(MailMessage {
            message_id: self
                .from
                .as_ref()
                .map(|from| crate::dispatch::message_id(&id, from))
                .unwrap_or_default(),
            id,
            recipient: MaskedEmail(&recipient).to_string(),
            subject: r.try_get("subject")?,
            kind: r.try_get("kind")?,
            status: status_of(&status).into(),
            attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
            last_error: r.try_get("last_error")?,
            created_at: r.try_get("created_at")?,
            next_attempt_at: r.try_get("next_attempt_at")?,
            sent_at: sent_at.unwrap_or(0),
        })
    }
}

fn status_name(status: MessageStatus) -> Option<&'static str> {
    match status {
        MessageStatus::Queued => Some("queued"),
        MessageStatus::Sent => Some("sent"),
        MessageStatus::Failed => Some("failed"),
        MessageStatus::Cancelled => Some("cancelled"),
        MessageStatus::Unspecified => None,
    }
}

fn status_of(name: &str) -> MessageStatus {
    match name {
        "queued" => MessageStatus::Queued,
        "sent" => MessageStatus::Sent,
        "failed" => MessageStatus::Failed,
        "cancelled" => MessageStatus::Cancelled,
        _ => MessageStatus::Unspecified,
    }
}

/// INVALID_ARGUMENT with a field violation unless `id` is given.
fn require_id(id: &str) -> Result<(), Status> {
    if id.trim().is_empty() {
        let mut v = Violations::new();
        v.add("id", "required", "l'identifiant du message est obligatoire");
        return Err(v.into_status());
    }
    Ok(())
}

#[tonic::async_trait]
impl Mailer for MailerService {
    async fn list_messages(
        &self,
        request: Request<ListMessagesRequest>,
    ) -> Result<Response<ListMessagesResponse>, Status> {
        self.auth.require_admin(request.metadata()).await?;
        let req = request.into_inner();
        let Ok(status) = MessageStatus::try_from(req.status) else {
            let mut v = Violations::new();
            v.add("status", "unknown", "statut de message inconnu");
            return Err(v.into_status());
        };
        let limit = if req.limit == 0 {
            DEFAULT_LIMIT
        } else {
            req.limit.min(MAX_LIMIT)
        };
        let rows = sqlx::query(
            "SELECT id, recipient, subject, kind, status, attempts, last_error, created_at, \
             next_attempt_at, sent_at FROM outbox WHERE ($1 = '' OR status = $1) \
             ORDER BY created_at DESC, id DESC LIMIT $2",
        )
        .bind(status_name(status).unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_all(self.db.pool())
        .await
        .map_err(unavailable)?;
        let messages = rows
            .iter()
            .map(|r| self.message(r))
            .collect::<Result<_, _>>()
            .map_err(unavailable)?;
        Ok(Response::new(ListMessagesResponse { messages }))
    }

    async fn retry_message(
        &self,
        request: Request<RetryMessageRequest>,
    ) -> Result<Response<RetryMessageResponse>, Status> {
        let caller = self.auth.require_admin(request.metadata()).await?;
        let id = request.into_inner().id;
        self.transition(
            &caller,
            &id,
            Transition {
                update: "UPDATE outbox SET status = 'queued', attempts = 0, next_attempt_at = $1, \
                         lease_id = NULL, updated_at = $1 \
                         WHERE id = $2 AND status IN ('failed', 'cancelled')",
                action: "mail.retried",
                wanted: "failed or cancelled",
            },
        )
        .await?;
        self.wake.notify_one();
        Ok(Response::new(RetryMessageResponse {}))
    }

    async fn cancel_message(
        &self,
        request: Request<CancelMessageRequest>,
    ) -> Result<Response<CancelMessageResponse>, Status> {
        let caller = self.auth.require_admin(request.metadata()).await?;
        let id = request.into_inner().id;
        self.transition(
            &caller,
            &id,
            Transition {
                // A queued message whose lease is running is being sent: too late.
                update: "UPDATE outbox SET status = 'cancelled', lease_id = NULL, updated_at = $1 \
                         WHERE id = $2 AND (status = 'failed' OR (status = 'queued' \
                         AND (lease_id IS NULL OR next_attempt_at <= $1)))",
                action: "mail.cancelled",
                wanted: "queued (and not being sent) or failed",
            },
        )
        .await?;
        Ok(Response::new(CancelMessageResponse {}))
    }
}

/// An administrator's change of a message's status.
struct Transition {
    /// The update, with `$1` the time and `$2` the message id.
    update: &'static str,
    /// The audit action.
    action: &'static str,
    /// The statuses the update accepts, for the refusal message.
    wanted: &'static str,
}

impl MailerService {
    /// Applies `t` to message `id` and audits it, in one transaction.
    async fn transition(&self, caller: &Caller, id: &str, t: Transition) -> Result<(), Status> {
        require_id(id)?;
        let now = self.auth.now();
        let mut tx = self.db.begin().await.map_err(unavailable)?;
        let done = sqlx::query(t.update)
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        if done.rows_affected() == 0 {
            return Err(self.precondition(id, t.wanted).await);
        }
        dge_store::audit(&mut tx, &caller.actor(), t.action, id, "", now)
            .await
            .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        tracing::info!(message_id = %id, action = t.action, "outbox changed by an administrator");
        Ok(())
    }

    /// NOT_FOUND for an unknown id, else FAILED_PRECONDITION naming the status.
    async fn precondition(&self, id: &str, wanted: &str) -> Status {
        let status = sqlx::query("SELECT status FROM outbox WHERE id = $1")
            .bind(id)
            .fetch_optional(self.db.pool())
            .await;
        match status {
            Ok(Some(row)) => {
                let current: String = row.try_get("status").unwrap_or_default();
                Status::failed_precondition(format!(
                    "the message is {current}; it must be {wanted}"
                ))
            }
            Ok(None) => Status::not_found("no message with this id"),
            Err(e) => unavailable(e),
        }
    }
}
