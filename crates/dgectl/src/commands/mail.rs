//! `dgectl mail list|retry|cancel`.

use dge_proto::v1::{
    CancelMessageRequest, ListMessagesRequest, MailMessage, MessageStatus, RetryMessageRequest,
};
use serde_json::{Value, json};

use crate::cli::MailCommand;
use crate::client::Api;
use crate::error::CliError;
use crate::output::{self, OutputFormat};
use crate::status::{MessageStatusArg, message_status_name};

/// Width of the LAST ERROR column.
const ERROR_WIDTH: usize = 40;

pub(super) async fn run(api: &Api, out: OutputFormat, verb: MailCommand) -> Result<(), CliError> {
    match verb {
        MailCommand::List { status } => list(api, out, status).await,
        MailCommand::Retry { id } => retry(api, out, id).await,
        MailCommand::Cancel { id } => cancel(api, out, id).await,
    }
}

async fn list(
    api: &Api,
    out: OutputFormat,
    status: Option<MessageStatusArg>,
) -> Result<(), CliError> {
    let request = ListMessagesRequest {
        status: status.map_or(MessageStatus::Unspecified, MessageStatus::from) as i32,
        // Zero lets the server apply its default.
        limit: 0,
    };
    let messages = api
        .mailer()
        .list_messages(request)
        .await
        .map_err(|status| api.fail(status))?
        .into_inner()
        .messages;
    match out {
        OutputFormat::Table => {
            let mut table = output::table([
                "ID",
                "KIND",
                "RECIPIENT",
                "STATUS",
                "ATTEMPTS",
                "CREATED",
                "NEXT ATTEMPT",
                "LAST ERROR",
            ]);
            for message in &messages {
                table.add_row([
                    message.id.clone(),
                    message.kind.clone(),
                    message.recipient.clone(),
                    message_status_name(message.status),
                    message.attempts.to_string(),
                    output::created(message.created_at),
                    next_attempt(message),
                    output::truncate(&message.last_error, ERROR_WIDTH),
                ]);
            }
            output::print_table(&table)?;
        }
        OutputFormat::Json => {
            let messages: Vec<Value> = messages.iter().map(message_json).collect();
            output::print_json(&json!({ "messages": messages }))?;
        }
    }
    Ok(())
}

async fn retry(api: &Api, out: OutputFormat, id: String) -> Result<(), CliError> {
    api.mailer()
        .retry_message(RetryMessageRequest { id: id.clone() })
        .await
        .map_err(|status| api.fail(status))?;
    match out {
        OutputFormat::Table => output::print_line(&format!("message {id} queued again"))?,
        OutputFormat::Json => output::print_json(&json!({ "id": id }))?,
    }
    Ok(())
}

async fn cancel(api: &Api, out: OutputFormat, id: String) -> Result<(), CliError> {
    api.mailer()
        .cancel_message(CancelMessageRequest { id: id.clone() })
        .await
        .map_err(|status| api.fail(status))?;
    match out {
        OutputFormat::Table => output::print_line(&format!("message {id} cancelled"))?,
        OutputFormat::Json => output::print_json(&json!({ "id": id, "status": "cancelled" }))?,
    }
    Ok(())
}

/// When a queued message is tried next; empty for the others.
fn next_attempt(message: &MailMessage) -> String {
    if message.status == MessageStatus::Queued as i32 {
        output::created(message.next_attempt_at)
    } else {
        String::new()
    }
}

fn message_json(message: &MailMessage) -> Value {
    json!({
        "id": message.id,
        "recipient": message.recipient,
        "subject": message.subject,
        "kind": message.kind,
        "status": message_status_name(message.status),
        "attempts": message.attempts,
        "last_error": message.last_error,
        "created_at": message.created_at,
        "next_attempt_at": message.next_attempt_at,
        "sent_at": (message.sent_at != 0).then_some(message.sent_at),
        "message_id": message.message_id,
    })
}
