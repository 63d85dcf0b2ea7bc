//! `dgectl providers list`.

use dge_proto::v1::{ListProvidersRequest, Provider};
use serde_json::{Value, json};

use crate::client::Api;
use crate::error::CliError;
use crate::output::{self, OutputFormat};

pub(super) async fn list(api: &Api, out: OutputFormat) -> Result<(), CliError> {
    let providers = api
        .broker()
        .list_providers(ListProvidersRequest {})
        .await
        .map_err(|status| api.fail(status))?
        .into_inner()
        .providers;
    match out {
        OutputFormat::Table => {
            let mut table = output::table(["NAME", "LABEL", "ISSUER", "CONFIGURED"]);
            for provider in &providers {
                table.add_row([
                    provider.name.as_str(),
                    provider.label.as_str(),
                    provider.issuer.as_str(),
                    output::yes_no(provider.configured),
                ]);
            }
            output::print_table(&table)?;
        }
        OutputFormat::Json => {
            let providers: Vec<Value> = providers.iter().map(provider_json).collect();
            output::print_json(&json!({ "providers": providers }))?;
        }
    }
    Ok(())
}

fn provider_json(provider: &Provider) -> Value {
    json!({
        "name": provider.name,
        "label": provider.label,
        "issuer": provider.issuer,
        "configured": provider.configured,
    })
}
