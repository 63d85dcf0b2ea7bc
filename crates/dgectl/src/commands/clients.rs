//! `dgectl clients add|list|update|rotate-secret|remove`.

use dge_proto::v1::{
    AddClientRequest, Client, ClientSettings, ListClientsRequest, RemoveClientRequest,
    RotateClientSecretRequest, StringList, UpdateClientRequest,
};
use serde_json::{Value, json};

use crate::cli::{ClientAddArgs, ClientUpdateArgs, ClientsCommand};
use crate::client::Api;
use crate::error::CliError;
use crate::output::{self, OutputFormat};

pub(super) async fn run(
    api: &Api,
    out: OutputFormat,
    verb: ClientsCommand,
) -> Result<(), CliError> {
    match verb {
        ClientsCommand::Add(args) => add(api, out, args).await,
        ClientsCommand::List => list(api, out).await,
        ClientsCommand::Update(args) => update(api, out, args).await,
        ClientsCommand::RotateSecret { id } => rotate_secret(api, out, id).await,
        // Confirmed before the connection (see `Confirmation`).
        ClientsCommand::Remove { id, .. } => remove(api, out, id).await,
    }
}

fn read_jwks(path: &std::path::Path) -> Result<String, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        CliError::Usage(format!("cannot read the JWKS file {}: {e}", path.display()))
    })?;
    // An empty value means "no keys" to the server: a wrong path to an empty file
    // must not remove a module's keys.
    if text.trim().is_empty() {
        return Err(CliError::Usage(format!(
            "the JWKS file {} is empty (to remove the client's keys, use --no-jwks)",
            path.display()
        )));
    }
    Ok(text)
}

/// The request of `clients update`: the options not given are left out, so the
/// server keeps those fields; `--no-…` send an empty value, which clears them.
fn update_request(args: ClientUpdateArgs) -> Result<UpdateClientRequest, CliError> {
    let list = |values: Option<Vec<String>>| values.map(|values| StringList { values });
    let jwks = match (&args.jwks_file, args.no_jwks) {
        (Some(path), _) => Some(read_jwks(path)?),
        (None, true) => Some(String::new()),
        (None, false) => None,
    };
    let backchannel_logout_uri = if args.no_backchannel_logout_uri {
        Some(String::new())
    } else {
        args.backchannel_logout_uri
    };
    Ok(UpdateClientRequest {
        id: args.id,
        name: args.name,
        redirect_uris: list(args.redirect_uris),
        post_logout_redirect_uris: list(args.post_logout_redirect_uris),
        first_party: args.first_party,
        service_scopes: list(args.service_scopes),
        userinfo_signed: args.userinfo_signed,
        id_token_alg: args.id_token_alg,
        backchannel_logout_uri,
        jwks,
    })
}

async fn update(api: &Api, out: OutputFormat, args: ClientUpdateArgs) -> Result<(), CliError> {
    let request = update_request(args)?;
    let response = api
        .clients()
        .update_client(request)
        .await
        .map_err(|status| api.fail(status))?
        .into_inner();
    let client = response.client.unwrap_or_default();
    match out {
        OutputFormat::Table => output::print_line(&format!("client {} updated", client.id))?,
        OutputFormat::Json => output::print_json(&json!({ "client": client_json(&client) }))?,
    }
    Ok(())
}

async fn rotate_secret(api: &Api, out: OutputFormat, id: String) -> Result<(), CliError> {
    let secret = api
        .clients()
        .rotate_client_secret(RotateClientSecretRequest { id: id.clone() })
        .await
        .map_err(|status| api.fail(status))?
        .into_inner()
        .client_secret;
    match out {
        OutputFormat::Table => output::print_line(&format!(
            "{}\nThe old secret is refused from now on.",
            added_text(&id, &secret)
        ))?,
        OutputFormat::Json => {
            output::print_json(&json!({ "client_id": id, "client_secret": secret }))?;
        }
    }
    Ok(())
}

async fn remove(api: &Api, out: OutputFormat, id: String) -> Result<(), CliError> {
    let removed = api
        .clients()
        .remove_client(RemoveClientRequest { id: id.clone() })
        .await
        .map_err(|status| api.fail(status))?
        .into_inner();
    match out {
        OutputFormat::Table => output::print_line(&format!(
            "client {id} removed: {} access token(s) revoked, {} refresh token(s) and \
             {} consent(s) deleted",
            removed.access_tokens_revoked, removed.refresh_tokens_deleted, removed.consents_deleted
        ))?,
        OutputFormat::Json => output::print_json(&json!({
            "client_id": id,
            "access_tokens_revoked": removed.access_tokens_revoked,
            "refresh_tokens_deleted": removed.refresh_tokens_deleted,
            "consents_deleted": removed.consents_deleted,
        }))?,
    }
    Ok(())
}

/// The per-client settings given on the command line; `None` keeps the defaults.
fn settings(args: &ClientAddArgs) -> Result<Option<ClientSettings>, CliError> {
    let jwks = match &args.jwks_file {
        Some(path) => read_jwks(path)?,
        None => String::new(),
    };
    let settings = ClientSettings {
        service_scopes: args.service_scopes.clone(),
        userinfo_signed: args.userinfo_signed,
        id_token_alg: args.id_token_alg.clone().unwrap_or_default(),
        backchannel_logout_uri: args.backchannel_logout_uri.clone().unwrap_or_default(),
        jwks,
    };
    Ok((settings != ClientSettings::default()).then_some(settings))
}

async fn add(api: &Api, out: OutputFormat, args: ClientAddArgs) -> Result<(), CliError> {
    let settings = settings(&args)?;
    let request = AddClientRequest {
        name: args.name.unwrap_or_else(|| args.id.clone()),
        id: args.id,
        redirect_uris: args.redirect_uris,
        confidential: !args.public,
        first_party: args.first_party,
        post_logout_redirect_uris: args.post_logout_redirect_uris,
        settings,
    };
    let requested_id = request.id.clone();
    let response = api
        .clients()
        .add_client(request)
        .await
        .map_err(|status| api.fail(status))?
        .into_inner();
    let client_id = response
        .client
        .as_ref()
        .map_or(requested_id, |client| client.id.clone());
    match out {
        OutputFormat::Table => {
            output::print_line(&added_text(&client_id, &response.client_secret))?
        }
        OutputFormat::Json => {
            let secret = &response.client_secret;
            output::print_json(&json!({
                "client": response.client.as_ref().map(client_json),
                "client_secret": (!secret.is_empty()).then_some(secret),
            }))?;
        }
    }
    Ok(())
}

/// What `clients add` prints for people: the id and, once, the secret.
fn added_text(client_id: &str, secret: &str) -> String {
    if secret.is_empty() {
        return format!("client id:     {client_id}\n(public client: no secret, PKCE only)");
    }
    format!(
        "client id:     {client_id}\nclient secret: {secret}\n\
         This secret is shown only once: store it now, the server keeps only its hash."
    )
}

async fn list(api: &Api, out: OutputFormat) -> Result<(), CliError> {
    let clients = api
        .clients()
        .list_clients(ListClientsRequest {})
        .await
        .map_err(|status| api.fail(status))?
        .into_inner()
        .clients;
    match out {
        OutputFormat::Table => {
            let mut table = output::table([
                "ID",
                "NAME",
                "TYPE",
                "FIRST PARTY",
                "REDIRECT URIS",
                "POST-LOGOUT URIS",
            ]);
            for client in &clients {
                table.add_row([
                    client.id.clone(),
                    client.name.clone(),
                    client_type(client).to_owned(),
                    output::yes_no(client.first_party).to_owned(),
                    client.redirect_uris.join(", "),
                    client.post_logout_redirect_uris.join(", "),
                ]);
            }
            output::print_table(&table)?;
        }
        OutputFormat::Json => {
            let clients: Vec<Value> = clients.iter().map(client_json).collect();
            output::print_json(&json!({ "clients": clients }))?;
        }
    }
    Ok(())
}

fn client_type(client: &Client) -> &'static str {
    if client.confidential {
        "confidential"
    } else {
        "public"
    }
}

fn client_json(client: &Client) -> Value {
    json!({
        "id": client.id,
        "name": client.name,
        "redirect_uris": client.redirect_uris,
        "confidential": client.confidential,
        "first_party": client.first_party,
        "post_logout_redirect_uris": client.post_logout_redirect_uris,
        "settings": client.settings.as_ref().map(|s| json!({
            "service_scopes": s.service_scopes,
            "userinfo_signed": s.userinfo_signed,
            "id_token_alg": s.id_token_alg,
            "backchannel_logout_uri": (!s.backchannel_logout_uri.is_empty()).then_some(&s.backchannel_logout_uri),
            "private_key_jwt": !s.jwks.is_empty(),
        })),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_confidential_client_shows_its_secret_once() {
        let text = added_text("geo", "s3cret");
        assert!(text.contains("client id:     geo"));
        assert!(text.contains("client secret: s3cret"));
        assert!(text.contains("shown only once"));
    }

    #[test]
    fn an_empty_jwks_file_is_refused_rather_than_read_as_no_keys() {
        let dir = std::env::temp_dir().join(format!("dgectl-jwks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.json");
        std::fs::write(&empty, " \n").unwrap();
        let err = read_jwks(&empty).unwrap_err();
        assert!(
            matches!(&err, CliError::Usage(m) if m.contains("is empty") && m.contains("--no-jwks")),
            "{err:?}"
        );
        let keys = dir.join("keys.json");
        std::fs::write(&keys, "{\"keys\": []}").unwrap();
        assert_eq!(read_jwks(&keys).unwrap(), "{\"keys\": []}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_public_client_has_no_secret_line() {
        let text = added_text("geo", "");
        assert!(text.contains("geo"));
        assert!(!text.contains("client secret"));
    }
}
