//! `dgectl keys list|rotate`.

use dge_proto::v1::{ListKeysRequest, RotateKeyRequest, SigningKey};
use serde_json::{Value, json};

use crate::cli::KeysCommand;
use crate::client::Api;
use crate::error::CliError;
use crate::output::{self, OutputFormat};

pub(super) async fn run(api: &Api, out: OutputFormat, verb: KeysCommand) -> Result<(), CliError> {
    match verb {
        KeysCommand::List => list(api, out).await,
        KeysCommand::Rotate {
            alg,
            activate_after,
        } => rotate(api, out, alg, activate_after).await,
    }
}

async fn list(api: &Api, out: OutputFormat) -> Result<(), CliError> {
    let keys = api
        .keys()
        .list_keys(ListKeysRequest {})
        .await
        .map_err(|status| api.fail(status))?
        .into_inner()
        .keys;
    match out {
        OutputFormat::Table => {
            let mut table = output::table(["KID", "ALG", "SIGNS FROM", "PUBLISHED UNTIL"]);
            for key in &keys {
                table.add_row([
                    key.kid.clone(),
                    key.alg.clone(),
                    output::utc_minutes(key.signs_from),
                    until(key),
                ]);
            }
            output::print_table(&table)?;
        }
        OutputFormat::Json => {
            let keys: Vec<Value> = keys.iter().map(key_json).collect();
            output::print_json(&json!({ "keys": keys }))?;
        }
    }
    Ok(())
}

async fn rotate(
    api: &Api,
    out: OutputFormat,
    alg: String,
    activate_after_secs: i64,
) -> Result<(), CliError> {
    let key = api
        .keys()
        .rotate_key(RotateKeyRequest {
            alg,
            activate_after_secs,
        })
        .await
        .map_err(|status| api.fail(status))?
        .into_inner()
        .key;
    match (out, key) {
        (OutputFormat::Table, Some(key)) => output::print_line(&format!(
            "New {} key {} published; it signs from {}.",
            key.alg,
            key.kid,
            output::utc_minutes(key.signs_from)
        ))?,
        (OutputFormat::Table, None) => output::print_line("New key published.")?,
        (OutputFormat::Json, key) => {
            output::print_json(&json!({ "key": key.as_ref().map(key_json) }))?;
        }
    }
    Ok(())
}

fn until(key: &SigningKey) -> String {
    if key.published_until == 0 {
        "-".to_owned()
    } else {
        output::utc_minutes(key.published_until)
    }
}

fn key_json(key: &SigningKey) -> Value {
    json!({
        "kid": key.kid,
        "alg": key.alg,
        "created_at": key.created_at,
        "signs_from": key.signs_from,
        "published_until": (key.published_until != 0).then_some(key.published_until),
    })
}
