//! `dgectl roles define|grant`.

use dge_proto::v1::{DefineRoleRequest, DefineRoleResponse, GrantRoleRequest};
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
            let change = api
                .workflow()
                .define_role(request)
                .await
                .map_err(|status| api.fail(status))?
                .into_inner();
            match out {
                OutputFormat::Table => {
                    for line in define_lines(&name, &rights, &change) {
                        output::print_line(&line)?;
                    }
                }
                OutputFormat::Json => {
                    output::print_json(&json!({
                        "role": name,
                        "rights": rights,
                        "created": change.created,
                        "added": change.added,
                        "removed": change.removed,
                    }))?;
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

/// What `roles define` prints: a new role, one unchanged, or what a redefinition changed
/// (and that it takes nothing back from the accounts granted the role before).
fn define_lines(name: &str, rights: &[String], change: &DefineRoleResponse) -> Vec<String> {
    let rights = rights.join(", ");
    if change.created {
        return vec![format!("role {name} defined: {rights}")];
    }
    if change.added.is_empty() && change.removed.is_empty() {
        return vec![format!("role {name} unchanged: {rights}")];
    }
    let mut lines = vec![format!("role {name} redefined: {rights}")];
    if !change.added.is_empty() {
        lines.push(format!("  added: {}", change.added.join(", ")));
    }
    if !change.removed.is_empty() {
        lines.push(format!("  removed: {}", change.removed.join(", ")));
        lines.push(
            "  accounts granted the role before keep the rights they hold; revoke them with `dgectl rights revoke`"
                .to_owned(),
        );
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(created: bool, added: &[&str], removed: &[&str]) -> DefineRoleResponse {
        DefineRoleResponse {
            created,
            added: added.iter().map(|s| (*s).to_owned()).collect(),
            removed: removed.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    #[test]
    fn a_redefinition_says_what_changed() {
        let rights = ["datahub:publish".to_owned(), "datahub:edit".to_owned()];
        assert_eq!(
            define_lines("editor", &rights, &change(true, &[], &[])),
            ["role editor defined: datahub:publish, datahub:edit"]
        );
        assert_eq!(
            define_lines("editor", &rights, &change(false, &[], &[])),
            ["role editor unchanged: datahub:publish, datahub:edit"]
        );
        let lines = define_lines(
            "editor",
            &rights,
            &change(false, &["datahub:edit"], &["datahub:dashboards"]),
        );
        assert_eq!(
            lines[0],
            "role editor redefined: datahub:publish, datahub:edit"
        );
        assert_eq!(lines[1], "  added: datahub:edit");
        assert_eq!(lines[2], "  removed: datahub:dashboards");
        assert!(lines[3].contains("keep the rights they hold"), "{lines:?}");
    }
}
