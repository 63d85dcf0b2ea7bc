//! `dgectl rights grant|revoke|list|declare|watch`.

use dge_proto::v1::{
    AccountStatus, DeclareRightRequest, GetAccountRequest, GrantRightRequest, ListRightsRequest,
    RevokeRightRequest, WatchRightsRequest,
};
use serde_json::json;

use crate::cli::RightsCommand;
use crate::client::Api;
use crate::error::CliError;
use crate::output::{self, OutputFormat};
use crate::status::account_status_name;

pub(super) async fn run(api: &Api, out: OutputFormat, verb: RightsCommand) -> Result<(), CliError> {
    match verb {
        RightsCommand::Grant {
            login,
            right,
            reason,
            expires,
        } => {
            let right = right.trim().to_owned();
            grant(api, out, login, right, reason.unwrap_or_default(), expires).await
        }
        RightsCommand::Declare { name, label } => {
            api.workflow()
                .declare_right(DeclareRightRequest {
                    name: name.clone(),
                    label: label.unwrap_or_default(),
                })
                .await
                .map_err(|status| api.fail(status))?;
            match out {
                OutputFormat::Table => output::print_line(&format!("right {name} declared"))?,
                OutputFormat::Json => output::print_json(&json!({ "right": name }))?,
            }
            Ok(())
        }
        RightsCommand::Revoke { login, right, .. } => {
            revoke(api, out, login, right.trim().to_owned()).await
        }
        RightsCommand::List { login } => list(api, out, login).await,
        RightsCommand::Watch { account } => watch(api, out, account).await,
    }
}

async fn grant(
    api: &Api,
    out: OutputFormat,
    login: String,
    right: String,
    reason: String,
    expires: Option<i64>,
) -> Result<(), CliError> {
    let request = GrantRightRequest {
        account: login.clone(),
        right: right.clone(),
        reason,
        expires_at: expires.unwrap_or(0),
    };
    let answer = api
        .workflow()
        .grant_right(request)
        .await
        .map_err(|status| api.fail(status))?
        .into_inner();
    let until = expires.map_or(String::new(), |at| {
        format!(" until {} UTC", output::utc_minutes(at))
    });
    match out {
        OutputFormat::Table if answer.granted => {
            output::print_line(&format!("granted {right} to {login}{until}"))?
        }
        OutputFormat::Table if answer.end_changed => {
            let end = if until.is_empty() {
                " with no end date".to_owned()
            } else {
                until
            };
            output::print_line(&format!("{login} holds {right}{end} now"))?
        }
        OutputFormat::Table => {
            output::print_line(&format!("{login} already holds {right}{until}"))?
        }
        OutputFormat::Json => output::print_json(&json!({
            "account": login,
            "right": right,
            "granted": answer.granted,
            "end_changed": answer.end_changed,
            "expires_at": expires.unwrap_or(0),
        }))?,
    }
    Ok(())
}

async fn revoke(
    api: &Api,
    out: OutputFormat,
    login: String,
    right: String,
) -> Result<(), CliError> {
    let request = RevokeRightRequest {
        account: login.clone(),
        right: right.clone(),
    };
    let revoked = api
        .workflow()
        .revoke_right(request)
        .await
        .map_err(|status| api.fail(status))?
        .into_inner()
        .revoked;
    match out {
        OutputFormat::Table if revoked => {
            output::print_line(&format!("revoked {right} from {login}"))?
        }
        OutputFormat::Table => output::print_line(&format!("{login} did not hold {right}"))?,
        OutputFormat::Json => output::print_json(&json!({
            "account": login,
            "right": right,
            "revoked": revoked,
        }))?,
    }
    Ok(())
}

async fn list(api: &Api, out: OutputFormat, login: String) -> Result<(), CliError> {
    let rights = api
        .authorization()
        .list_rights(ListRightsRequest {
            subject: login.clone(),
        })
        .await
        .map_err(|status| api.fail(status))?
        .into_inner()
        .rights;
    // The server lists nothing for an account that is not active (a suspended one keeps
    // its rights, and they count for nothing): an empty list says why, when the caller
    // may read accounts (a service token with `authz:rights` may list rights but not
    // read accounts; an account deleted meanwhile has nothing to say).
    let inactive = if rights.is_empty() {
        match api
            .accounts()
            .get_account(GetAccountRequest { key: login.clone() })
            .await
        {
            Ok(answer) => answer
                .into_inner()
                .account
                .filter(|a| a.status != AccountStatus::Active as i32)
                .map(|a| account_status_name(a.status)),
            Err(status)
                if matches!(
                    status.code(),
                    tonic::Code::PermissionDenied | tonic::Code::NotFound
                ) =>
            {
                None
            }
            Err(status) => return Err(api.fail(status)),
        }
    } else {
        None
    };
    match out {
        OutputFormat::Table => {
            let mut table = output::table(["RIGHT"]);
            for right in rights {
                table.add_row([right]);
            }
            output::print_table(&table)?;
            if let Some(status) = &inactive {
                output::print_line(&format!(
                    "{login} is {status}: rights of an account that is not active are not \
                     listed and count for nothing; a suspended account gets those it held \
                     back when it is reactivated"
                ))?;
            }
        }
        OutputFormat::Json => {
            let mut body = json!({ "account": login, "rights": rights });
            if let Some(status) = inactive {
                body["account_status"] = json!(status);
            }
            output::print_json(&body)?;
        }
    }
    Ok(())
}

/// Prints each change as it comes: a table line, or one JSON object per line.
async fn watch(api: &Api, out: OutputFormat, account: Option<String>) -> Result<(), CliError> {
    // The stream filters by account id; a login is looked up first.
    let account_id = match account {
        Some(key) => api
            .accounts()
            .get_account(GetAccountRequest { key })
            .await
            .map_err(|status| api.fail(status))?
            .into_inner()
            .account
            .map(|a| a.id)
            .unwrap_or_default(),
        None => String::new(),
    };
    let mut stream = api
        .workflow()
        .watch_rights(WatchRightsRequest { account_id })
        .await
        .map_err(|status| api.fail(status))?
        .into_inner();
    if out == OutputFormat::Table {
        output::print_line(
            "WHEN (UTC)        CHANGE   ACCOUNT                               RIGHT",
        )?;
    }
    while let Some(change) = stream.message().await.map_err(|status| api.fail(status))? {
        let verb = if change.granted { "granted" } else { "revoked" };
        match out {
            OutputFormat::Table => output::print_line(&format!(
                "{:<17} {verb:<8} {:<37} {}",
                output::utc_minutes(change.at),
                change.account_id,
                change.right
            ))?,
            OutputFormat::Json => output::print_line(
                &json!({
                    "account_id": change.account_id,
                    "right": change.right,
                    "granted": change.granted,
                    "at": change.at,
                })
                .to_string(),
            )?,
        }
    }
    Ok(())
}
