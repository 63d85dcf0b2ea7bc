//! `dgectl orgs list`.

use dge_proto::v1::{ListOrganisationsRequest, Organisation};
use serde_json::{Value, json};

use crate::client::Api;
use crate::error::CliError;
use crate::output::{self, OutputFormat};

pub(super) async fn list(api: &Api, out: OutputFormat) -> Result<(), CliError> {
    let organisations = api
        .workflow()
        .list_organisations(ListOrganisationsRequest {})
        .await
        .map_err(|status| api.fail(status))?
        .into_inner()
        .organisations;
    match out {
        OutputFormat::Table => {
            let mut table =
                output::table(["ID", "NAME", "SIRET", "TRUSTED", "STATUS", "EMAIL DOMAINS"]);
            for org in &organisations {
                table.add_row([
                    org.id.clone(),
                    org.name.clone(),
                    org.siret.clone(),
                    output::yes_no(org.trusted).to_owned(),
                    org.status.clone(),
                    org.email_domains.join(", "),
                ]);
            }
            output::print_table(&table)?;
        }
        OutputFormat::Json => {
            let organisations: Vec<Value> = organisations.iter().map(organisation_json).collect();
            output::print_json(&json!({ "organisations": organisations }))?;
        }
    }
    Ok(())
}

fn organisation_json(org: &Organisation) -> Value {
    json!({
        "id": org.id,
        "name": org.name,
        "siret": org.siret,
        "trusted": org.trusted,
        "status": org.status,
        "email_domains": org.email_domains,
    })
}
