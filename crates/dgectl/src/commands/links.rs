//! `dgectl links list` and `dgectl links remove`.

use dge_proto::v1::{Link, ListLinksRequest, RemoveLinkRequest};
use serde_json::{Value, json};

use crate::cli::LinksCommand;
use crate::client::Api;
use crate::error::CliError;
use crate::output::{self, OutputFormat};

pub(super) async fn run(api: &Api, out: OutputFormat, verb: LinksCommand) -> Result<(), CliError> {
    match verb {
        LinksCommand::List { login } => list(api, out, login).await,
        LinksCommand::Remove {
            login,
            provider,
            subject,
            ..
        } => remove(api, out, login, provider, subject).await,
    }
}

async fn list(api: &Api, out: OutputFormat, login: String) -> Result<(), CliError> {
    let links = api
        .broker()
        .list_links(ListLinksRequest {
            account: login.clone(),
        })
        .await
        .map_err(|status| api.fail(status))?
        .into_inner()
        .links;
    match out {
        OutputFormat::Table => {
            let mut table = output::table(["PROVIDER", "SUBJECT", "EMAIL", "CREATED"]);
            for link in &links {
                table.add_row([
                    link.provider.clone(),
                    link.subject.clone(),
                    link.email.clone(),
                    output::created(link.created_at),
                ]);
            }
            output::print_table(&table)?;
        }
        OutputFormat::Json => {
            let links: Vec<Value> = links.iter().map(link_json).collect();
            output::print_json(&json!({ "account": login, "links": links }))?;
        }
    }
    Ok(())
}

async fn remove(
    api: &Api,
    out: OutputFormat,
    login: String,
    provider: String,
    subject: String,
) -> Result<(), CliError> {
    api.broker()
        .remove_link(RemoveLinkRequest {
            account: login.clone(),
            provider: provider.clone(),
            subject: subject.clone(),
        })
        .await
        .map_err(|status| api.fail(status))?;
    match out {
        OutputFormat::Table => {
            output::print_line(&format!("Removed the {provider} identity from {login}."))?;
        }
        OutputFormat::Json => output::print_json(
            &json!({ "account": login, "provider": provider, "subject": subject, "removed": true }),
        )?,
    }
    Ok(())
}

fn link_json(link: &Link) -> Value {
    json!({
        "provider": link.provider,
        "subject": link.subject,
        "email": link.email,
        "created_at": link.created_at,
    })
}
