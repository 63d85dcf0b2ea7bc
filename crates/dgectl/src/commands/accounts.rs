//! `dgectl accounts list|pending|show|unlock|approve|reject|suspend|reactivate`.

use dge_proto::v1::{
    Account, AccountStatus, ApproveAccountRequest, DecideAccountsRequest, Decision, DecisionResult,
    GetAccountRequest, ListAccountsRequest, ListPendingRequest, ReactivateAccountRequest,
    RejectAccountRequest, SuspendAccountRequest, UnlockAccountRequest,
};
use serde_json::{Value, json};

use crate::cli::{AccountsCommand, PendingArgs};
use crate::client::Api;
use crate::error::CliError;
use crate::output::{self, OutputFormat};
use crate::status::{AccountStatusArg, account_kind_name, account_status_name};

/// Width of the DESCRIPTION column of the account table.
const DESCRIPTION_WIDTH: usize = 40;

pub(super) async fn run(
    api: &Api,
    out: OutputFormat,
    verb: AccountsCommand,
) -> Result<(), CliError> {
    match verb {
        AccountsCommand::List { status, limit } => list(api, out, status, limit).await,
        AccountsCommand::Pending(args) => pending(api, out, args).await,
        AccountsCommand::Show { key } => show(api, out, key).await,
        AccountsCommand::Unlock { login } => unlock(api, out, login).await,
        AccountsCommand::Approve { logins, grants } => approve(api, out, logins, grants).await,
        AccountsCommand::Reject { logins, reason, .. } => reject(api, out, logins, reason).await,
        AccountsCommand::Suspend {
            login,
            reason,
            until,
            ..
        } => suspend(api, out, login, reason, until).await,
        AccountsCommand::Reactivate { login, reason } => {
            reactivate(api, out, login, reason.unwrap_or_default()).await
        }
    }
}

async fn pending(api: &Api, out: OutputFormat, args: PendingArgs) -> Result<(), CliError> {
    let mut request = ListPendingRequest {
        organisation_id: args.org.unwrap_or_default(),
        trusted: match (args.trusted, args.untrusted) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        },
        min_age_secs: args.older_than.unwrap_or(0),
        text: args.text.unwrap_or_default(),
        page_size: args.page_size.unwrap_or(0),
        page_token: args.page_token.unwrap_or_default(),
    };
    let mut accounts = Vec::new();
    let next_page_token = loop {
        let page = api
            .workflow()
            .list_pending(request.clone())
            .await
            .map_err(|status| api.fail(status))?
            .into_inner();
        accounts.extend(page.accounts);
        if !args.all || page.next_page_token.is_empty() {
            break page.next_page_token;
        }
        request.page_token = page.next_page_token;
    };
    match out {
        OutputFormat::Table => {
            output::print_table(&pending_table(&accounts))?;
            if !next_page_token.is_empty() {
                output::print_line(&format!("more: --page-token {next_page_token} (or --all)"))?;
            }
        }
        OutputFormat::Json => {
            let accounts: Vec<Value> = accounts.iter().map(account_json).collect();
            output::print_json(&json!({
                "accounts": accounts,
                "next_page_token": next_page_token,
            }))?;
        }
    }
    Ok(())
}

async fn list(
    api: &Api,
    out: OutputFormat,
    status: Option<AccountStatusArg>,
    limit: Option<u32>,
) -> Result<(), CliError> {
    let request = ListAccountsRequest {
        status: status.map_or(AccountStatus::Unspecified, AccountStatus::from) as i32,
        // Zero lets the server apply its default.
        limit: limit.unwrap_or(0),
    };
    let accounts = api
        .accounts()
        .list_accounts(request)
        .await
        .map_err(|status| api.fail(status))?
        .into_inner()
        .accounts;
    match out {
        OutputFormat::Table => output::print_table(&accounts_table(&accounts))?,
        OutputFormat::Json => {
            let accounts: Vec<Value> = accounts.iter().map(account_json).collect();
            output::print_json(&json!({ "accounts": accounts }))?;
        }
    }
    Ok(())
}

async fn show(api: &Api, out: OutputFormat, key: String) -> Result<(), CliError> {
    let response = api
        .accounts()
        .get_account(GetAccountRequest { key })
        .await
        .map_err(|status| api.fail(status))?
        .into_inner();
    print_one(out, response.account.as_ref(), None)
}

async fn unlock(api: &Api, out: OutputFormat, login: String) -> Result<(), CliError> {
    let response = api
        .accounts()
        .unlock_account(UnlockAccountRequest { key: login.clone() })
        .await
        .map_err(|status| api.fail(status))?
        .into_inner();
    let note = format!("account {login} unlocked");
    print_one(out, response.account.as_ref(), Some(note))
}

async fn approve(
    api: &Api,
    out: OutputFormat,
    logins: Vec<String>,
    grants: Vec<String>,
) -> Result<(), CliError> {
    let grants = super::distinct(grants);
    let logins = super::distinct(logins);
    if let [login] = logins.as_slice() {
        let response = api
            .workflow()
            .approve_account(ApproveAccountRequest {
                account: login.clone(),
                grant_rights: grants.clone(),
            })
            .await
            .map_err(|status| api.fail(status))?
            .into_inner();
        let mut note = format!("account {login} approved");
        if !grants.is_empty() {
            note = format!("{note}, granted {}", grants.join(", "));
        }
        return print_one(out, response.account.as_ref(), Some(note));
    }
    let results = if grants.is_empty() {
        decide(api, logins, Decision::Approve, String::new()).await?
    } else {
        // The bulk call grants nothing: each account is approved with its grants in
        // one transaction of its own.
        let mut results = Vec::with_capacity(logins.len());
        for login in logins {
            let request = ApproveAccountRequest {
                account: login.clone(),
                grant_rights: grants.clone(),
            };
            let outcome = api.workflow().approve_account(request).await;
            results.push(match outcome {
                Ok(_) => DecisionResult {
                    account: login,
                    ok: true,
                    error: String::new(),
                },
                Err(status) => match api.fail(status) {
                    CliError::Call(status) => DecisionResult {
                        account: login,
                        ok: false,
                        error: status.message().to_owned(),
                    },
                    // Unreachable or token refused: the others would fail the same way.
                    other => return Err(other),
                },
            });
        }
        results
    };
    print_decisions(out, "approved", &results)
}

async fn reject(
    api: &Api,
    out: OutputFormat,
    logins: Vec<String>,
    reason: String,
) -> Result<(), CliError> {
    // A login named twice is decided once.
    let logins = super::distinct(logins);
    if let [login] = logins.as_slice() {
        let request = RejectAccountRequest {
            account: login.clone(),
            reason,
        };
        let response = api
            .workflow()
            .reject_account(request)
            .await
            .map_err(|status| api.fail(status))?
            .into_inner();
        let note = format!("account {login} rejected");
        return print_one(out, response.account.as_ref(), Some(note));
    }
    let results = decide(api, logins, Decision::Reject, reason).await?;
    print_decisions(out, "rejected", &results)
}

async fn suspend(
    api: &Api,
    out: OutputFormat,
    login: String,
    reason: String,
    until: Option<i64>,
) -> Result<(), CliError> {
    let response = api
        .workflow()
        .suspend_account(SuspendAccountRequest {
            account: login.clone(),
            reason,
            until: until.unwrap_or_default(),
        })
        .await
        .map_err(|status| api.fail(status))?
        .into_inner();
    let note = format!("account {login} suspended; its sessions and tokens are ended");
    print_one(out, response.account.as_ref(), Some(note))?;
    // Not in the JSON on stdout, which scripts read: said on stderr there.
    match out {
        OutputFormat::Table => output::print_line(API_TOKENS_NOTE)?,
        OutputFormat::Json => eprintln!("{API_TOKENS_NOTE}"),
    }
    Ok(())
}

/// What a suspension does not end: admin API tokens belong to no account.
const API_TOKENS_NOTE: &str = "note: administrator API tokens (dgeat_…, such as the bootstrap \
     token in <data-dir>/admin.token) are not tied to accounts and keep working: if this person \
     held or could read one, revoke it on the server: dge-idp list-admin-tokens, then \
     dge-idp revoke-admin-token --name NAME (see the README, \"Suspending an account\")";

async fn reactivate(
    api: &Api,
    out: OutputFormat,
    login: String,
    reason: String,
) -> Result<(), CliError> {
    let response = api
        .workflow()
        .reactivate_account(ReactivateAccountRequest {
            account: login.clone(),
            reason,
        })
        .await
        .map_err(|status| api.fail(status))?
        .into_inner();
    let note = format!("account {login} reactivated");
    print_one(out, response.account.as_ref(), Some(note))
}

/// One bulk decision; each account is decided on its own.
async fn decide(
    api: &Api,
    logins: Vec<String>,
    decision: Decision,
    reason: String,
) -> Result<Vec<DecisionResult>, CliError> {
    let request = DecideAccountsRequest {
        accounts: logins,
        decision: decision as i32,
        reason,
    };
    Ok(api
        .workflow()
        .decide_accounts(request)
        .await
        .map_err(|status| api.fail(status))?
        .into_inner()
        .results)
}

/// The outcome of each account of a bulk decision; fails (exit 1) when one was not decided.
fn print_decisions(
    out: OutputFormat,
    done: &str,
    results: &[DecisionResult],
) -> Result<(), CliError> {
    match out {
        OutputFormat::Table => {
            let mut table = output::table(["ACCOUNT", "RESULT"]);
            for result in results {
                let outcome = if result.ok {
                    done.to_owned()
                } else {
                    format!("not {done}: {}", result.error)
                };
                table.add_row([result.account.clone(), outcome]);
            }
            output::print_table(&table)?;
        }
        OutputFormat::Json => {
            let results: Vec<Value> = results
                .iter()
                .map(|r| json!({ "account": r.account, "ok": r.ok, "error": r.error }))
                .collect();
            output::print_json(&json!({ "results": results }))?;
        }
    }
    let failed = results.iter().filter(|r| !r.ok).count();
    if failed > 0 {
        return Err(CliError::Partial(format!(
            "{failed} of {} accounts not {done}",
            results.len()
        )));
    }
    Ok(())
}

/// Prints one account returned by a call, after `note` in table mode.
fn print_one(
    out: OutputFormat,
    account: Option<&Account>,
    note: Option<String>,
) -> Result<(), CliError> {
    match out {
        OutputFormat::Table => {
            if let Some(note) = note {
                output::print_line(&note)?;
            }
            if let Some(account) = account {
                output::print_table(&account_details(account))?;
            }
        }
        OutputFormat::Json => {
            output::print_json(&json!({ "account": account.map(account_json) }))?;
        }
    }
    Ok(())
}

/// One row per account.
fn accounts_table(accounts: &[Account]) -> comfy_table::Table {
    let mut table = output::table([
        "LOGIN",
        "NAME",
        "EMAIL",
        "ORGANISATION",
        "STATUS",
        "CREATED",
        "DESCRIPTION",
    ]);
    for account in accounts {
        table.add_row([
            account.login.clone(),
            full_name(account),
            account.email.clone(),
            organisation(account),
            account_status_name(account.status),
            output::created(account.created_at),
            output::truncate(&account.description, DESCRIPTION_WIDTH),
        ]);
    }
    table
}

/// The pending queue: who, from where, since when, and what they ask for.
fn pending_table(accounts: &[Account]) -> comfy_table::Table {
    let mut table = output::table([
        "LOGIN",
        "NAME",
        "EMAIL",
        "ORGANISATION",
        "CREATED",
        "REQUEST",
    ]);
    for account in accounts {
        table.add_row([
            account.login.clone(),
            full_name(account),
            account.email.clone(),
            organisation(account),
            output::created(account.created_at),
            output::truncate(&account.description, DESCRIPTION_WIDTH),
        ]);
    }
    table
}

/// One account, one field per line.
fn account_details(account: &Account) -> comfy_table::Table {
    let mut rows = vec![
        ("ID", account.id.clone()),
        ("LOGIN", account.login.clone()),
        ("NAME", full_name(account)),
        ("EMAIL", account.email.clone()),
        (
            "EMAIL VERIFIED",
            output::yes_no(account.email_verified).to_owned(),
        ),
        ("PHONE", account.phone.clone()),
        ("ORGANISATION", organisation(account)),
        ("ORGANISATION ID", account.organisation_id.clone()),
        ("FUNCTION", account.function.clone()),
        ("STATUS", account_status_name(account.status)),
        ("KIND", account_kind_name(account.kind)),
        ("CREATED", output::created(account.created_at)),
        ("REQUEST", account.description.clone()),
    ];
    if !account.rejection_reason.is_empty() {
        rows.push(("REJECTION REASON", account.rejection_reason.clone()));
    }
    if account.suspended_until != 0 {
        rows.push((
            "SUSPENDED UNTIL",
            format!("{} UTC", output::utc_minutes(account.suspended_until)),
        ));
    }
    let mut table = output::table(["FIELD", "VALUE"]);
    for (field, value) in rows {
        table.add_row([field.to_owned(), value]);
    }
    table
}

pub(super) fn full_name(account: &Account) -> String {
    format!("{} {}", account.given_name, account.family_name)
        .trim()
        .to_owned()
}

/// The organisation's name; one the person proposed (no id yet) is marked so.
pub(super) fn organisation(account: &Account) -> String {
    match (
        account.organisation_id.is_empty(),
        account.organisation_name.is_empty(),
    ) {
        (true, false) => format!("{} (proposed)", account.organisation_name),
        (false, true) => account.organisation_id.clone(),
        _ => account.organisation_name.clone(),
    }
}

/// An account as JSON, every field included.
pub(super) fn account_json(account: &Account) -> Value {
    json!({
        "id": account.id,
        "login": account.login,
        "email": account.email,
        "given_name": account.given_name,
        "family_name": account.family_name,
        "phone": account.phone,
        "organisation_id": account.organisation_id,
        "organisation_name": account.organisation_name,
        "function": account.function,
        "description": account.description,
        "status": account_status_name(account.status),
        "kind": account_kind_name(account.kind),
        "created_at": account.created_at,
        "email_verified": account.email_verified,
        "rejection_reason": account.rejection_reason,
        "suspended_until": (account.suspended_until != 0).then_some(account.suspended_until),
    })
}

#[cfg(test)]
mod tests {
    use dge_proto::v1::AccountKind;

    use super::*;

    fn alice() -> Account {
        Account {
            id: "01J0000000000000000000000".to_owned(),
            login: "alice".to_owned(),
            email: "alice@strasbourg.eu".to_owned(),
            given_name: "Alice".to_owned(),
            family_name: "Martin".to_owned(),
            organisation_id: "eurometropole-strasbourg".to_owned(),
            organisation_name: "Eurométropole de Strasbourg".to_owned(),
            description: "Je souhaite publier les jeux de données de mobilité de la métropole."
                .to_owned(),
            status: AccountStatus::Pending as i32,
            kind: AccountKind::Local as i32,
            created_at: 1_700_000_000,
            ..Account::default()
        }
    }

    #[test]
    fn account_rows_have_the_contract_columns() {
        let text = accounts_table(&[alice()]).trim_fmt();
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().expect("header").split_whitespace().collect();
        assert_eq!(
            header,
            [
                "LOGIN",
                "NAME",
                "EMAIL",
                "ORGANISATION",
                "STATUS",
                "CREATED",
                "DESCRIPTION"
            ]
        );
        let row = lines.next().expect("one row");
        assert!(row.starts_with("alice  "));
        assert!(row.contains("Alice Martin"));
        assert!(row.contains("pending"));
        assert!(row.contains("2023-11-14 22:13"));
        assert!(row.contains("Je souhaite publier les jeux de données…"));
        assert!(!row.contains("mobilité"));
    }

    #[test]
    fn a_proposed_organisation_is_marked() {
        let mut account = alice();
        account.organisation_id.clear();
        account.organisation_name = "Commune de Sélestat".to_owned();
        assert_eq!(organisation(&account), "Commune de Sélestat (proposed)");
    }

    #[test]
    fn account_json_uses_words_for_enums() {
        let value = account_json(&alice());
        assert_eq!(value["login"], "alice");
        assert_eq!(value["status"], "pending");
        assert_eq!(value["kind"], "local");
        assert_eq!(value["created_at"], 1_700_000_000);
    }

    #[test]
    fn details_show_the_rejection_reason_only_when_there_is_one() {
        let text = account_details(&alice()).trim_fmt();
        assert!(!text.contains("REJECTION REASON"));
        let mut account = alice();
        account.rejection_reason = "doublon".to_owned();
        let text = account_details(&account).trim_fmt();
        assert!(text.contains("REJECTION REASON  doublon"));
    }
}
