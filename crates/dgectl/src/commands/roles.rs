//! `dgectl roles define|grant`.

use dge_proto::v1::{DefineRoleRequest, GrantRoleRequest};
use serde_json::json;

use crate::cli::RolesCommand;
use crate::client::Api;
use crate::error::CliError;
use crate::output::{self, OutputFormat};

pub(super) async fn run(api: &Api, out: OutputFormat, verb: RolesCommand) -> Result<(), CliError> {
    match verb {
        RolesCommand::Define {
            name,
            rights,
            label,
        } => {
            let rights = super::distinct(rights);
            let request = DefineRoleRequest {
                name: name.clone(),
                label: label.unwrap_or_default(),
                rights: rights.clone(),
            };
            api.workflow()
                .define_role(request)
                .await
                .map_err(|status| api.fail(status))?;
            match out {
                OutputFormat::Table => {
                    output::print_line(&format!("role {name} defined: {}", rights.join(", ")))?
                }
                OutputFormat::Json => {
                    output::print_json(&json!({ "role": name, "rights": rights }))?;
                }
            }
        }
        RolesCommand::Grant {
            login,
            role,
            reason,
        } => {
            let request = GrantRoleRequest {
                account: login.clone(),
                role: role.clone(),
                reason: reason.unwrap_or_default(),
            };
            let granted = api
                .workflow()
                .grant_role(request)
                .await
                .map_err(|status| api.fail(status))?
                .into_inner()
                .granted;
            match out {
                OutputFormat::Table if granted.is_empty() => {
                    output::print_line(&format!("{login} already holds every right of {role}"))?
                }
                OutputFormat::Table => output::print_line(&format!(
                    "granted {role} to {login}: {}",
                    granted.join(", ")
                ))?,
                OutputFormat::Json => output::print_json(&json!({
                    "account": login,
                    "role": role,
                    "granted": granted,
                }))?,
            }
        }
    }
    Ok(())
}
