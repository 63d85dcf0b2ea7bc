//! `dgectl admins list|grant|revoke`: global administrators.

use dge_proto::v1::{Account, GrantAdminRequest, ListAdminsRequest, RevokeAdminRequest};
use serde_json::{Value, json};

use super::accounts::{account_json, full_name, organisation};
use crate::cli::AdminsCommand;
use crate::client::Api;
use crate::error::CliError;
use crate::output::{self, OutputFormat};
use crate::status::account_status_name;

pub(super) async fn run(api: &Api, out: OutputFormat, verb: AdminsCommand) -> Result<(), CliError> {
    match verb {
        AdminsCommand::List => list(api, out).await,
        AdminsCommand::Grant { login, reason } => {
            let response = api
                .workflow()
                .grant_admin(GrantAdminRequest {
                    account: login.clone(),
                    reason: reason.unwrap_or_default(),
                })
                .await
                .map_err(|status| api.fail(status))?
                .into_inner();
            let (changed, account) = (response.granted, response.account);
            let note = if changed {
                format!("{login} is now a global administrator")
            } else {
                format!("{login} already was a global administrator")
            };
            print_change(out, "granted", changed, account.as_ref(), &note)
        }
        AdminsCommand::Revoke { login, reason, .. } => {
            let response = api
                .workflow()
                .revoke_admin(RevokeAdminRequest {
                    account: login.clone(),
                    reason: reason.unwrap_or_default(),
                })
                .await
                .map_err(|status| api.fail(status))?
                .into_inner();
            let (changed, account) = (response.revoked, response.account);
            let note = if changed {
                format!("{login} is no longer a global administrator")
            } else {
                format!("{login} was not a global administrator")
            };
            print_change(out, "revoked", changed, account.as_ref(), &note)
        }
    }
}

fn print_change(
    out: OutputFormat,
    verb: &str,
    changed: bool,
    account: Option<&Account>,
    note: &str,
) -> Result<(), CliError> {
    match out {
        OutputFormat::Table => output::print_line(note)?,
        OutputFormat::Json => output::print_json(&json!({
            verb: changed,
            "account": account.map_or(Value::Null, account_json),
        }))?,
    }
    Ok(())
}

async fn list(api: &Api, out: OutputFormat) -> Result<(), CliError> {
    let accounts = api
        .workflow()
        .list_admins(ListAdminsRequest {})
        .await
        .map_err(|status| api.fail(status))?
        .into_inner()
        .accounts;
    match out {
        OutputFormat::Table => {
            let mut table =
                output::table(["LOGIN", "NAME", "EMAIL", "ORGANISATION", "STATUS", "ID"]);
            for account in &accounts {
                table.add_row([
                    account.login.clone(),
                    full_name(account),
                    account.email.clone(),
                    organisation(account),
                    account_status_name(account.status),
                    account.id.clone(),
                ]);
            }
            output::print_table(&table)?;
        }
        OutputFormat::Json => {
            let accounts: Vec<Value> = accounts.iter().map(account_json).collect();
            output::print_json(&json!({ "accounts": accounts }))?;
        }
    }
    Ok(())
}
