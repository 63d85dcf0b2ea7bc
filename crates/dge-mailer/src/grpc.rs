//! The `Mailer` gRPC service: administrators see and retry the outbox.

use dge_authz::Authenticator;
use dge_authz::caller::unavailable;
use dge_core::MaskedEmail;
use dge_proto::v1::mailer_server::Mailer;
use dge_proto::v1::{
    ListMessagesRequest, ListMessagesResponse, MailMessage, MessageStatus, RetryMessageRequest,
    RetryMessageResponse,
};
use dge_store::Db;
use sqlx::Row;
use tonic::{Request, Response, Status};

/// Administrators' view of the outbox.
#[derive(Debug, Clone)]
pub struct MailerService {
    db: Db,
    auth: Authenticator,
    wake: std::sync::Arc<tokio::sync::Notify>,
}

impl MailerService {
    /// A new service; `wake` is the outbox's wake handle.
    #[must_use]
    pub fn new(db: Db, auth: Authenticator, wake: std::sync::Arc<tokio::sync::Notify>) -> Self {
        Self { db, auth, wake }
    }
}

fn status_name(status: MessageStatus) -> Option<&'static str> {
    match status {
        MessageStatus::Queued => Some("queued"),
        MessageStatus::Sent => Some("sent"),
        MessageStatus::Failed => Some("failed"),
        MessageStatus::Unspecified => None,
    }
}

fn status_of(name: &str) -> MessageStatus {
    match name {
        "queued" => MessageStatus::Queued,
        "sent" => MessageStatus::Sent,
        "failed" => MessageStatus::Failed,
        _ => MessageStatus::Unspecified,
    }
}

#[tonic::async_trait]
impl Mailer for MailerService {
    async fn list_messages(
        &self,
        request: Request<ListMessagesRequest>,
    ) -> Result<Response<ListMessagesResponse>, Status> {
        self.auth.require_admin(request.metadata()).await?;
        let req = request.into_inner();
        let status = MessageStatus::try_from(req.status)
            .map_err(|_| Status::invalid_argument("unknown message status"))?;
        let limit = i64::from(if req.limit == 0 {
            100
        } else {
            req.limit.min(1000)
        });
        let rows = sqlx::query(
            "SELECT id, recipient, subject, kind, status, attempts, last_error, created_at \
             FROM outbox WHERE ($1 = '' OR status = $1) ORDER BY created_at DESC, id DESC LIMIT $2",
        )
        .bind(status_name(status).unwrap_or(""))
        .bind(limit)
        .fetch_all(self.db.pool())
        .await
        .map_err(unavailable)?;
        let messages = rows
            .iter()
            .map(|r| -> Result<MailMessage, sqlx::Error> {
                let recipient: String = r.try_get("recipient")?;
                let status: String = r.try_get("status")?;
                let attempts: i64 = r.try_get("attempts")?;
                Ok(MailMessage {
                    id: r.try_get("id")?,
                    recipient: MaskedEmail(&recipient).to_string(),
                    subject: r.try_get("subject")?,
                    kind: r.try_get("kind")?,
                    status: status_of(&status).into(),
                    attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                    last_error: r.try_get("last_error")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect::<Result<_, _>>()
            .map_err(unavailable)?;
        Ok(Response::new(ListMessagesResponse { messages }))
    }

    async fn retry_message(
        &self,
        request: Request<RetryMessageRequest>,
    ) -> Result<Response<RetryMessageResponse>, Status> {
        self.auth.require_admin(request.metadata()).await?;
        let id = request.into_inner().id;
        let now = self.auth.now();
        let done = sqlx::query(
            "UPDATE outbox SET status = 'queued', attempts = 0, next_attempt_at = $1, \
             updated_at = $1 WHERE id = $2 AND status = 'failed'",
        )
        .bind(now)
        .bind(&id)
        .execute(self.db.pool())
        .await
        .map_err(unavailable)?;
        if done.rows_affected() == 0 {
            return Err(Status::failed_precondition(
                "no failed message with this id",
            ));
        }
        self.wake.notify_one();
        Ok(Response::new(RetryMessageResponse {}))
    }
}
