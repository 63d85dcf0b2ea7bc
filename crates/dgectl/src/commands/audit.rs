//! `dgectl audit list` and `dgectl grants list`.

use dge_proto::v1::{ListAuditEventsRequest, ListGrantsRequest};
use serde_json::{Value, json};

use crate::cli::{AuditCommand, GrantsCommand};
use crate::client::Api;
use crate::error::CliError;
use crate::output::{self, OutputFormat};

/// Width of the DETAIL column.
const DETAIL_WIDTH: usize = 60;

pub(super) async fn run(api: &Api, out: OutputFormat, verb: AuditCommand) -> Result<(), CliError> {
    let AuditCommand::List {
        subject,
        actor,
        since,
        until,
        limit,
    } = verb;
    let request = ListAuditEventsRequest {
        subject: subject.unwrap_or_default(),
        actor: actor.unwrap_or_default(),
        since: since.unwrap_or(0),
        until: until.unwrap_or(0),
        limit: limit.unwrap_or(0),
    };
    let events = api
        .workflow()
        .list_audit_events(request)
        .await
        .map_err(|status| api.fail(status))?
        .into_inner()
        .events;
    match out {
        OutputFormat::Table => {
            let mut table = output::table(["AT", "ACTOR", "ACTION", "SUBJECT", "DETAIL"]);
            for event in &events {
                table.add_row([
                    output::created(event.created_at),
                    event.actor.clone(),
                    event.action.clone(),
                    event.subject.clone(),
                    output::truncate(&event.detail, DETAIL_WIDTH),
                ]);
            }
            output::print_table(&table)?;
        }
        OutputFormat::Json => {
            let events: Vec<Value> = events
                .iter()
                .map(|e| {
                    json!({
                        "id": e.id,
                        "actor": e.actor,
                        "action": e.action,
                        "subject": e.subject,
                        "detail": e.detail,
                        "created_at": e.created_at,
                    })
                })
                .collect();
            output::print_json(&json!({ "events": events }))?;
        }
    }
    Ok(())
}

pub(super) async fn grants(
    api: &Api,
    out: OutputFormat,
    verb: GrantsCommand,
) -> Result<(), CliError> {
    let GrantsCommand::List { login } = verb;
    let grants = api
        .workflow()
        .list_grants(ListGrantsRequest {
            account: login.clone(),
        })
        .await
        .map_err(|status| api.fail(status))?
        .into_inner()
        .grants;
    match out {
        OutputFormat::Table => {
            let mut table = output::table(["RIGHT", "GRANTED BY", "GRANTED", "EXPIRES", "REASON"]);
            for grant in &grants {
                table.add_row([
                    grant.right.clone(),
                    grant.granted_by.clone(),
                    output::created(grant.granted_at),
                    output::created(grant.expires_at),
                    output::truncate(&grant.reason, DETAIL_WIDTH),
                ]);
            }
            output::print_table(&table)?;
        }
        OutputFormat::Json => {
            let grants: Vec<Value> = grants
                .iter()
                .map(|g| {
                    json!({
                        "right": g.right,
                        "granted_by": g.granted_by,
                        "reason": g.reason,
                        "granted_at": g.granted_at,
                        "expires_at": g.expires_at,
                    })
                })
                .collect();
            output::print_json(&json!({ "account": login, "grants": grants }))?;
        }
    }
    Ok(())
}
