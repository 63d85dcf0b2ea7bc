//! One module per noun. Each turns its verbs into gRPC calls and prints the
//! answer as a table or as JSON.
//!
//! JSON output mirrors the response message (proto field names, enums as the
//! lower-case words used on the command line), plus the identifiers given on
//! the command line for calls whose response does not name them.

mod accounts;
mod admins;
mod audit;
mod check;
mod clients;
mod completion;
mod keys;
mod links;
mod login;
mod mail;
mod modules;
mod orgs;
mod providers;
mod rights;
mod roles;

use std::io::{self, BufRead, IsTerminal, Write};
use std::process::ExitCode;

use crate::cli::{
    AccountsCommand, AdminsCommand, Cli, ClientsCommand, Command, LinksCommand, OrgsCommand,
    RightsCommand,
};
use crate::client::{Api, BearerAuth, answers_http1, resolve_token};
use crate::error::CliError;

/// Runs the parsed command line.
pub(crate) async fn run(cli: Cli) -> Result<ExitCode, CliError> {
    let Cli { global, command } = cli;
    if let Command::Completion(args) = &command {
        completion::print(args.shell)?;
        return Ok(ExitCode::SUCCESS);
    }

    let command = match command {
        Command::Login(args) => {
            login::login(&global.connection, global.output, args).await?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Logout => {
            login::logout(global.output).await?;
            return Ok(ExitCode::SUCCESS);
        }
        other => other,
    };

    // Everything that can be refused without the server is refused first.
    let (token, server) = resolve_token(&global.connection)?;
    let auth = BearerAuth::new(&token)?;
    if let Some(question) = Confirmation::for_command(&command) {
        question.ask()?;
    }

    let api = match Api::connect(
        &server,
        global.connection.ca_cert.as_deref(),
        auth,
        global.connection.token_source,
    )
    .await
    {
        Ok(api) => api,
        Err(e) => return Err(explain_unreachable(&server, e).await),
    };
    match dispatch(&api, global.output, command).await {
        Err(e) => Err(explain_unreachable(&server, e).await),
        done => done,
    }
}

/// A server that cannot be reached, or that breaks the connection (tonic's "unknown:
/// transport error", a status made here rather than sent), may be the web port given
/// for the gRPC one: it then answers HTTP/1.1, which is said instead.
async fn explain_unreachable(server: &crate::cli::ServerUrl, err: CliError) -> CliError {
    let transport = match &err {
        CliError::Unreachable { .. } => true,
        CliError::Call(status) => std::error::Error::source(status).is_some(),
        _ => false,
    };
    if transport && answers_http1(server).await {
        return CliError::NotGrpc {
            server: server.to_string(),
        };
    }
    err
}

/// Runs a command that needs the server.
async fn dispatch(
    api: &Api,
    out: crate::output::OutputFormat,
    command: Command,
) -> Result<ExitCode, CliError> {
    match command {
        Command::Accounts(verb) => accounts::run(api, out, verb).await?,
        Command::Rights(verb) => rights::run(api, out, verb).await?,
        Command::Admins(verb) => admins::run(api, out, verb).await?,
        Command::Clients(verb) => clients::run(api, out, verb).await?,
        Command::Grants(verb) => audit::grants(api, out, verb).await?,
        Command::Roles(verb) => roles::run(api, out, verb).await?,
        Command::Orgs(verb) => orgs::run(api, out, verb).await?,
        Command::Modules(verb) => modules::run(api, out, verb).await?,
        Command::Audit(verb) => audit::run(api, out, verb).await?,
        Command::Mail(verb) => mail::run(api, out, verb).await?,
        Command::Providers(_) => providers::list(api, out).await?,
        Command::Links(verb) => links::run(api, out, verb).await?,
        Command::Keys(verb) => keys::run(api, out, verb).await?,
        Command::Check(args) => return check::run(api, out, args).await,
        // Done above, without a connection.
        Command::Completion(_) | Command::Login(_) | Command::Logout => {}
    }
    Ok(ExitCode::SUCCESS)
}

/// The question asked before a destructive command.
struct Confirmation {
    /// What will happen, as a verb phrase: "reject the account alice".
    action: String,
    /// `--yes` was given.
    pre_approved: bool,
}

impl Confirmation {
    fn for_command(command: &Command) -> Option<Self> {
        let (action, confirm) = match command {
            Command::Accounts(AccountsCommand::Reject {
                logins, confirm, ..
            }) => (
                format!(
                    "reject {} {} (the reason is emailed to each person)",
                    if logins.len() == 1 {
                        "the account"
                    } else {
                        "the accounts"
                    },
                    logins.join(", ")
                ),
                confirm,
            ),
            Command::Accounts(AccountsCommand::Suspend { login, confirm, .. }) => (
                format!(
                    "suspend the account {login} (it can no longer log in; its sessions and \
                     tokens end now)"
                ),
                confirm,
            ),
            Command::Orgs(OrgsCommand::Merge {
                source,
                into,
                confirm,
            }) => (
                format!("merge the organisation {source} into {into} (it disappears)"),
                confirm,
            ),
            Command::Rights(RightsCommand::Revoke {
                login,
                right,
                confirm,
            }) => (format!("revoke {right} from {login}"), confirm),
            Command::Admins(AdminsCommand::Revoke { login, confirm, .. }) => (
                format!("take global administration away from {login}"),
                confirm,
            ),
            Command::Links(LinksCommand::Remove {
                login,
                provider,
                confirm,
                ..
            }) => (
                format!("remove the {provider} identity from {login}"),
                confirm,
            ),
            Command::Clients(ClientsCommand::Remove { id, confirm }) => (
                format!(
                    "remove the client {id} (its access tokens are revoked, its refresh \
                     tokens, consents and pending logins deleted; its users must log in \
                     again once it is registered anew)"
                ),
                confirm,
            ),
            _ => return None,
        };
        Some(Self {
            action,
            pre_approved: confirm.yes,
        })
    }

    /// Asks "y/N" on the terminal; without a terminal, refuses unless `--yes`.
    fn ask(&self) -> Result<(), CliError> {
        if self.pre_approved {
            return Ok(());
        }
        let stdin = io::stdin();
        if !stdin.is_terminal() {
            return Err(CliError::Usage(format!(
                "refusing to {} without confirmation: standard input is not a terminal \
                 (add --yes to confirm)",
                self.action
            )));
        }
        let mut stderr = io::stderr().lock();
        write!(stderr, "About to {}. Continue? [y/N] ", self.action)?;
        stderr.flush()?;
        let mut answer = String::new();
        stdin.lock().read_line(&mut answer)?;
        if is_yes(&answer) {
            Ok(())
        } else {
            Err(CliError::Cancelled)
        }
    }
}

/// Whether a typed answer means yes; anything else, the empty line included, is no.
fn is_yes(answer: &str) -> bool {
    matches!(
        answer.trim().to_lowercase().as_str(),
        "y" | "yes" | "o" | "oui"
    )
}

/// Rights (or logins) as the server keeps them: spaces around each dropped, each
/// once, in the order typed; what dgectl then prints is what was stored, and a login
/// named twice is decided once.
pub(super) fn distinct(items: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    items
        .into_iter()
        .map(|r| r.trim().to_owned())
        .filter(|r| seen.insert(r.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn rights_are_sent_once_each_and_trimmed() {
        let typed = ["datahub:publish", " datahub:publish ", "datahub:dashboards"];
        assert_eq!(
            super::distinct(typed.iter().map(|r| (*r).to_owned()).collect()),
            ["datahub:publish", "datahub:dashboards"]
        );
    }

    use super::*;

    #[test]
    fn only_y_or_yes_confirms() {
        for yes in ["y\n", "Y", " yes ", "oui\n"] {
            assert!(is_yes(yes), "{yes:?}");
        }
        for no in ["", "\n", "n", "no", "yep", "non"] {
            assert!(!is_yes(no), "{no:?}");
        }
    }

    #[test]
    fn reject_and_revoke_ask_for_confirmation() {
        let cli = Cli::try_parse_args(["dgectl", "accounts", "reject", "bob", "--reason", "x"])
            .expect("valid");
        let question = Confirmation::for_command(&cli.command).expect("destructive");
        assert!(question.action.contains("bob"));
        assert!(!question.pre_approved);

        let cli =
            Cli::try_parse_args(["dgectl", "rights", "revoke", "bob", "a:b", "-y"]).expect("valid");
        let question = Confirmation::for_command(&cli.command).expect("destructive");
        assert!(question.pre_approved);

        let cli = Cli::try_parse_args(["dgectl", "admins", "revoke", "bob"]).expect("valid");
        let question = Confirmation::for_command(&cli.command).expect("destructive");
        assert!(question.action.contains("bob"));
        assert!(!question.pre_approved);

        let cli = Cli::try_parse_args(["dgectl", "admins", "grant", "bob"]).expect("valid");
        assert!(Confirmation::for_command(&cli.command).is_none());

        let cli = Cli::try_parse_args(["dgectl", "accounts", "suspend", "bob", "--reason", "x"])
            .expect("valid");
        let question = Confirmation::for_command(&cli.command).expect("destructive");
        assert!(question.action.contains("suspend the account bob"));
        assert!(!question.pre_approved);

        let cli = Cli::try_parse_args(["dgectl", "accounts", "reactivate", "bob"]).expect("valid");
        assert!(Confirmation::for_command(&cli.command).is_none());

        let cli = Cli::try_parse_args(["dgectl", "accounts", "approve", "bob"]).expect("valid");
        assert!(Confirmation::for_command(&cli.command).is_none());
    }
}
