//! The command line: global options, nouns and verbs, as clap derive types.
//!
//! Doc comments on the types are the help text that `dgectl --help` shows.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use clap::builder::NonEmptyStringValueParser;
use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use clap_complete::Shell;

use crate::output::OutputFormat;
use crate::status::{AccountStatusArg, MessageStatusArg};

/// Administrators' command-line tool for DGE Identity, the identity provider of the
/// DataGrandEst open-data portal. Talks to the server over gRPC.
#[derive(Debug, Parser)]
#[command(
    name = "dgectl",
    version,
    after_help = "Exit codes: 0 ok, 1 refused or failed call, 2 usage, \
                  3 server unreachable, 4 not authenticated."
)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: GlobalOpts,

    #[command(subcommand)]
    pub(crate) command: Command,
}

impl Cli {
    /// Parses the process arguments, exiting with status 2 on a usage error
    /// (status 0 for `--help` and `--version`).
    pub(crate) fn parse_or_exit() -> Self {
        match Self::try_parse_args(std::env::args_os()) {
            Ok(cli) => cli,
            Err(err) => err.exit(),
        }
    }

    /// Parses `args` (the first one is the program name).
    ///
    /// Unlike `try_parse_from`, this also settles which token source wins when
    /// both a token and a token file are given (see [`ConnectionOpts`]).
    pub(crate) fn try_parse_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let mut cmd = Self::command();
        let matches = cmd.try_get_matches_from_mut(args)?;
        let mut cli = Self::from_arg_matches(&matches).map_err(|err| err.format(&mut cmd))?;
        cli.global.connection.server_given =
            matches.value_source("server") != Some(ValueSource::DefaultValue);
        cli.global
            .connection
            .settle_token_sources(&matches)
            .map_err(|msg| cmd.error(ErrorKind::ArgumentConflict, msg))?;
        cli.global.connection.note_token_source(&matches);
        Ok(cli)
    }
}

/// Options shared by every command; they may be given before or after the command.
#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub(crate) struct GlobalOpts {
    #[command(flatten)]
    pub(crate) connection: ConnectionOpts,

    /// How to print results
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = OutputFormat::Table)]
    pub(crate) output: OutputFormat,
}

/// Where the server is and how to authenticate to it.
///
/// A token given on the command line wins over one from the environment;
/// when `DGECTL_TOKEN` and `DGECTL_TOKEN_FILE` are both set, `DGECTL_TOKEN` wins.
/// Without either, the token saved by `dgectl login` is used.
#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub(crate) struct ConnectionOpts {
    /// URL of the DGE Identity gRPC server
    #[arg(
        long,
        global = true,
        env = "DGECTL_SERVER",
        value_name = "URL",
        default_value = "http://127.0.0.1:50051"
    )]
    pub(crate) server: ServerUrl,

    /// Administrator's bearer token, sent with every call
    ///
    /// Other local users can see a token typed on the command line in the
    /// process list: prefer --token-file or DGECTL_TOKEN.
    #[arg(
        long,
        global = true,
        env = "DGECTL_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub(crate) token: Option<Token>,

    /// File holding the bearer token (surrounding white space is ignored)
    #[arg(long, global = true, env = "DGECTL_TOKEN_FILE", value_name = "FILE")]
    pub(crate) token_file: Option<PathBuf>,

    /// PEM file of a certificate authority trusted for an https:// server, besides
    /// the system's roots (a private CA, or a self-signed certificate)
    #[arg(long, global = true, env = "DGECTL_CA_CERT", value_name = "FILE")]
    pub(crate) ca_cert: Option<PathBuf>,

    /// Whether --server or DGECTL_SERVER was given (else the saved login's server wins).
    #[arg(skip)]
    pub(crate) server_given: bool,

    /// Where the token comes from (`--token`, `DGECTL_TOKEN_FILE`…), named when the
    /// server refuses it; empty for the login saved by `dgectl login`.
    #[arg(skip)]
    pub(crate) token_source: &'static str,
}

impl ConnectionOpts {
    /// Keeps one of `token` and `token_file` when both were given.
    fn settle_token_sources(&mut self, matches: &ArgMatches) -> Result<(), &'static str> {
        if self.token.is_none() || self.token_file.is_none() {
            return Ok(());
        }
        let typed = |id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);
        match (typed("token"), typed("token_file")) {
            (true, true) => return Err("--token and --token-file cannot be used together"),
            (false, true) => self.token = None,
            // A typed --token, or both from the environment: the token wins.
            (_, false) => self.token_file = None,
        }
        Ok(())
    }

    /// Names the option or variable the token in use comes from.
    fn note_token_source(&mut self, matches: &ArgMatches) {
        let typed = |id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);
        self.token_source = match (self.token.is_some(), self.token_file.is_some()) {
            (true, _) if typed("token") => "--token",
            (true, _) => "DGECTL_TOKEN",
            (false, true) if typed("token_file") => "--token-file",
            (false, true) => "DGECTL_TOKEN_FILE",
            (false, false) => "",
        };
    }
}

/// A server address: an `http://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServerUrl(String);

impl ServerUrl {
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for ServerUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some(rest) = s
            .strip_prefix("https://")
            .or_else(|| s.strip_prefix("http://"))
        else {
            return Err("expected a URL starting with https:// or http://".to_owned());
        };
        if rest.is_empty() || rest.starts_with('/') {
            return Err("the URL has no host".to_owned());
        }
        tonic::transport::Endpoint::from_shared(s.to_owned())
            .map_err(|_| "not a valid URL".to_owned())?;
        Ok(Self(s.to_owned()))
    }
}

/// A bearer token. Its `Debug` never shows the value, so a token cannot reach
/// an error message or a log line by accident.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Token(String);

impl Token {
    /// The token itself, for the one place that sends it.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token([redacted])")
    }
}

impl FromStr for Token {
    type Err = &'static str;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let token = s.trim();
        if token.is_empty() {
            return Err("the token is empty");
        }
        Ok(Self(token.to_owned()))
    }
}

/// The nouns.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// List, show, approve and reject accounts; the pending queue
    #[command(subcommand)]
    Accounts(AccountsCommand),

    /// Declare rights; grant, revoke and list the rights of an account
    #[command(subcommand)]
    Rights(RightsCommand),

    /// Global administrators of DGE Identity (not the delegated ones of `orgs admins`)
    #[command(subcommand)]
    Admins(AdminsCommand),

    /// Grants held by an account: who granted them, when, why, until when
    #[command(subcommand)]
    Grants(GrantsCommand),

    /// Role bundles: several rights granted at once
    #[command(subcommand)]
    Roles(RolesCommand),

    /// Register and list OpenID Connect clients
    #[command(subcommand)]
    Clients(ClientsCommand),

    /// The organisation directory
    #[command(subcommand)]
    Orgs(OrgsCommand),

    /// Portal modules and the rights they declare
    #[command(subcommand)]
    Modules(ModulesCommand),

    /// The append-only audit log of every decision
    #[command(subcommand)]
    Audit(AuditCommand),

    /// The outbox of every email the server sends
    #[command(subcommand)]
    Mail(MailCommand),

    /// Upstream identity providers (ProConnect, Région Grand Est)
    #[command(subcommand)]
    Providers(ListOnly),

    /// Upstream identities linked to an account
    #[command(subcommand)]
    Links(LinksCommand),

    /// The keys that sign ID and access tokens
    #[command(subcommand)]
    Keys(KeysCommand),

    /// Check whether a person's access token grants a right (exit 1 when it does not)
    Check(CheckArgs),

    /// Print a shell completion script
    Completion(CompletionArgs),

    /// Log in through the browser (OAuth 2.0 device grant) and keep the token for
    /// later commands; no password goes through dgectl
    Login(LoginArgs),

    /// Forget the token kept by `dgectl login`
    Logout,
}

/// Arguments of `dgectl login`.
#[derive(Debug, Args)]
pub(crate) struct LoginArgs {
    /// Public URL of DGE Identity (its OpenID Connect issuer)
    #[arg(
        long,
        env = "DGECTL_ISSUER",
        value_name = "URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub(crate) issuer: String,

    /// The client dgectl logs in as (a public client registered without redirect URIs)
    #[arg(long, value_name = "ID", default_value = "dgectl")]
    pub(crate) client_id: String,
}

/// Verbs of `dgectl accounts`.
#[derive(Debug, Subcommand)]
pub(crate) enum AccountsCommand {
    /// List accounts, newest first
    List {
        /// Only accounts with this status
        #[arg(long, value_enum)]
        status: Option<AccountStatusArg>,

        /// At most this many accounts (the server's default is 100)
        #[arg(long, value_name = "N")]
        limit: Option<u32>,
    },

    /// The pending queue, oldest first, with each person's request
    Pending(PendingArgs),

    /// Show one account, with the person's request (the sign-up description)
    Show {
        /// Account id, login or email address
        key: String,
    },

    /// Lift the temporary lock that failed password logins put on an account
    Unlock {
        /// Login, email address or account id
        login: String,
    },

    /// Activate pending accounts and email each person (exit 1 if one was not approved)
    Approve {
        /// Logins or account ids
        #[arg(required = true, num_args = 1..)]
        logins: Vec<String>,

        /// A right granted in the same step, e.g. what the person asked for (repeatable)
        #[arg(long = "grant", value_name = "RIGHT")]
        grants: Vec<String>,
    },

    /// Reject pending accounts; the reason is emailed to each person
    Reject {
        /// Logins or account ids
        #[arg(required = true, num_args = 1..)]
        logins: Vec<String>,

        /// Why the accounts are refused (sent to each person)
        #[arg(long, value_parser = NonEmptyStringValueParser::new())]
        reason: String,

        #[command(flatten)]
        confirm: ConfirmOpts,
    },

    /// Suspend an active account: no more logins, its sessions and tokens end at once;
    /// its rights are kept for a reactivation; the person is emailed
    Suspend {
        /// Login, email address or account id
        login: String,

        /// Why (kept in the audit log for administrators; not sent to the person)
        #[arg(long, value_parser = NonEmptyStringValueParser::new())]
        reason: String,

        /// When the suspension ends on its own (the account is then reactivated, within
        /// a minute): a date `YYYY-MM-DD` (00:00 UTC), `YYYY-MM-DDTHH:MM` (UTC) or a
        /// delay from now such as `30d`; without it, until reactivated by hand
        #[arg(long, value_name = "WHEN", value_parser = crate::when::parse_expiry)]
        until: Option<i64>,

        #[command(flatten)]
        confirm: ConfirmOpts,
    },

    /// Reactivate a suspended account, with the rights it held; the person is emailed
    Reactivate {
        /// Login, email address or account id
        login: String,

        /// Why (kept in the audit log)
        #[arg(long)]
        reason: Option<String>,
    },
}

/// Arguments of `dgectl accounts pending`.
#[derive(Debug, Args)]
pub(crate) struct PendingArgs {
    /// Only members of this organisation (its id)
    #[arg(long, value_name = "ID")]
    pub(crate) org: Option<String>,

    /// Only members of trusted organisations
    #[arg(long, conflicts_with = "untrusted")]
    pub(crate) trusted: bool,

    /// Only members of organisations that are not trusted
    #[arg(long)]
    pub(crate) untrusted: bool,

    /// Only accounts pending for at least this long: `90s`, `30m`, `12h`, `3d`
    #[arg(long, value_name = "AGE", value_parser = crate::when::parse_duration)]
    pub(crate) older_than: Option<i64>,

    /// Only accounts whose name, login, email, organisation or request contains this
    #[arg(long)]
    pub(crate) text: Option<String>,

    /// At most this many accounts per page (the server's default is 50, at most 500)
    #[arg(long, value_name = "N")]
    pub(crate) page_size: Option<u32>,

    /// The page after a previous one (its `next_page_token`)
    #[arg(long, value_name = "TOKEN", conflicts_with = "all")]
    pub(crate) page_token: Option<String>,

    /// Follow every page to the end
    #[arg(long)]
    pub(crate) all: bool,
}

/// Verbs of `dgectl rights`.
#[derive(Debug, Subcommand)]
pub(crate) enum RightsCommand {
    /// Grant a right such as `datahub:publish`
    Grant {
        /// Login or account id
        login: String,

        /// `module:right`, for example `datahub:publish`
        right: String,

        /// Why the right is granted (kept with the grant)
        #[arg(long)]
        reason: Option<String>,

        /// When the grant ends: a date `YYYY-MM-DD` (00:00 UTC), `YYYY-MM-DDTHH:MM` (UTC)
        /// or a delay from now such as `30d`
        #[arg(long, value_name = "WHEN", value_parser = crate::when::parse_expiry)]
        expires: Option<i64>,
    },

    /// Revoke a right
    Revoke {
        /// Login or account id
        login: String,

        /// `module:right`, for example `datahub:publish`
        right: String,

        #[command(flatten)]
        confirm: ConfirmOpts,
    },

    /// List the rights an account holds
    List {
        /// Login or account id
        login: String,
    },

    /// Declare a right of an existing module (idempotent)
    Declare {
        /// `module:right`, for example `communautes:space:mobilite`
        name: String,

        /// What the right allows, shown to administrators (default: the name; declaring
        /// again without it keeps the label stored before)
        #[arg(long)]
        label: Option<String>,
    },

    /// Print grants and revocations as they happen, on every replica, until interrupted
    Watch {
        /// Only changes of this account (login or account id)
        #[arg(long, value_name = "LOGIN")]
        account: Option<String>,
    },
}

/// Verbs of `dgectl grants`.
#[derive(Debug, Subcommand)]
pub(crate) enum GrantsCommand {
    /// List the grants of an account
    List {
        /// Login or account id
        login: String,
    },
}

/// Verbs of `dgectl roles`.
#[derive(Debug, Subcommand)]
pub(crate) enum RolesCommand {
    /// Define (or redefine) a role bundle
    Define {
        /// Role name, for example `publisher`
        name: String,

        /// The rights of the role
        #[arg(required = true, num_args = 1..)]
        rights: Vec<String>,

        /// What the role is for (default: its name; defining it again without it keeps
        /// the label stored before)
        #[arg(long)]
        label: Option<String>,
    },

    /// Grant every right of a role to an account
    Grant {
        /// Login or account id
        login: String,

        /// Role name
        role: String,

        /// Why the role is granted (kept with each grant)
        #[arg(long)]
        reason: Option<String>,
    },
}

/// Verbs of `dgectl orgs`.
#[derive(Debug, Subcommand)]
pub(crate) enum OrgsCommand {
    /// List the directory
    List,

    /// Add an organisation to the directory
    Create {
        /// Name of the organisation
        name: String,

        /// 14-digit SIRET (its checksum is checked)
        #[arg(long)]
        siret: Option<String>,

        /// A member organisation: simplified validation of its members
        #[arg(long)]
        trusted: bool,

        /// An email domain of its staff (repeat or list several)
        #[arg(long = "domain", value_name = "DOMAIN", num_args = 1..)]
        domains: Vec<String>,
    },

    /// Change an organisation's name, SIRET, trusted flag or domains
    #[command(group(
        clap::ArgGroup::new("change")
            .required(true)
            .multiple(true)
            .args(["name", "siret", "trusted", "domains", "no_domains"])
    ))]
    Update {
        /// Organisation id
        id: String,

        #[arg(long)]
        name: Option<String>,

        #[arg(long)]
        siret: Option<String>,

        /// `yes` or `no`
        #[arg(long, value_name = "yes|no", value_parser = parse_yes_no)]
        trusted: Option<bool>,

        /// Replaces every email domain (repeat or list several)
        #[arg(long = "domain", value_name = "DOMAIN", num_args = 1.., conflicts_with = "no_domains")]
        domains: Vec<String>,

        /// Removes every email domain
        #[arg(long)]
        no_domains: bool,
    },

    /// Accept a proposed organisation into the directory, optionally renamed
    Accept {
        /// Organisation id
        id: String,

        /// A corrected name
        #[arg(long)]
        name: Option<String>,

        /// Its SIRET
        #[arg(long)]
        siret: Option<String>,
    },

    /// Merge a proposed organisation into another: its members move, it disappears
    Merge {
        /// The proposed organisation that disappears
        source: String,

        /// The organisation its members join
        #[arg(long, value_name = "ID")]
        into: String,

        #[command(flatten)]
        confirm: ConfirmOpts,
    },

    /// Import organisations from a CSV file (header: name,siret,trusted,email_domains)
    ///
    /// By default one rejected line cancels the whole import (nothing is written);
    /// with --skip-invalid the valid lines are written, all in one transaction.
    /// Exit status 1 when a line was rejected.
    Import {
        /// The CSV file; `trusted` is yes/no/true/false/1/0, domains are separated by
        /// spaces or `;`
        file: PathBuf,

        /// Write the valid lines even if others are rejected
        #[arg(long)]
        skip_invalid: bool,
    },

    /// Delegated administrators of an organisation
    #[command(subcommand)]
    Admins(OrgAdminsCommand),
}

/// Verbs of `dgectl admins`.
#[derive(Debug, Subcommand)]
pub(crate) enum AdminsCommand {
    /// List the global administrator accounts
    List,

    /// Make an active account a global administrator (idempotent)
    Grant {
        /// Login or account id
        login: String,

        /// Why (kept in the audit log)
        #[arg(long)]
        reason: Option<String>,
    },

    /// Take global administration away from an account (not your own, not the last one)
    Revoke {
        /// Login or account id
        login: String,

        /// Why (kept in the audit log)
        #[arg(long)]
        reason: Option<String>,

        #[command(flatten)]
        confirm: ConfirmOpts,
    },
}

/// Verbs of `dgectl orgs admins`.
#[derive(Debug, Subcommand)]
pub(crate) enum OrgAdminsCommand {
    /// Make an account administrator of its organisation's members
    Add {
        /// Login or account id
        login: String,
    },
}

/// Verbs of `dgectl modules`.
#[derive(Debug, Subcommand)]
pub(crate) enum ModulesCommand {
    /// List the modules and their rights
    List,

    /// Declare a module (idempotent)
    Declare {
        /// Module name, for example `datahub`
        name: String,

        /// Display name (default: the name; declaring again without it keeps the label
        /// stored before)
        #[arg(long)]
        label: Option<String>,
    },
}

/// Verbs of `dgectl audit`.
#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// List audit events, newest first
    List {
        /// Only events about this subject (account or organisation id; a login or an
        /// address stands for its account)
        #[arg(long)]
        subject: Option<String>,

        /// Only events by this actor (a login or an address stands for its account)
        #[arg(long)]
        actor: Option<String>,

        /// From this time: `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM` (UTC) or a delay ago such as `7d`
        #[arg(long, value_name = "WHEN", value_parser = crate::when::parse_past)]
        since: Option<i64>,

        /// Up to this time, same forms as --since
        #[arg(long, value_name = "WHEN", value_parser = crate::when::parse_past)]
        until: Option<i64>,

        /// At most this many events
        #[arg(long, value_name = "N")]
        limit: Option<u32>,
    },
}

/// `yes`/`no` (also `true`/`false`, `1`/`0`, `oui`/`non`).
pub(crate) fn parse_yes_no(s: &str) -> Result<bool, String> {
    match s.trim().to_lowercase().as_str() {
        "yes" | "y" | "true" | "1" | "oui" | "o" => Ok(true),
        "no" | "n" | "false" | "0" | "non" | "" => Ok(false),
        other => Err(format!("expected yes or no, not {other:?}")),
    }
}

/// Verbs of `dgectl clients`.
#[derive(Debug, Subcommand)]
pub(crate) enum ClientsCommand {
    /// Register a client; a confidential client's secret is printed once
    Add(ClientAddArgs),

    /// List the registered clients
    List,

    /// Change a client's fields; those not given are kept
    Update(ClientUpdateArgs),

    /// Give a confidential client a new secret, printed once; the old one is refused
    /// at once
    RotateSecret {
        /// Client id
        id: String,
    },

    /// Remove a client: its access tokens are revoked, its refresh tokens, consents
    /// and pending logins deleted
    Remove {
        /// Client id
        id: String,

        #[command(flatten)]
        confirm: ConfirmOpts,
    },
}

/// Arguments of `dgectl clients update`.
#[derive(Debug, Args)]
pub(crate) struct ClientUpdateArgs {
    /// Client id
    pub(crate) id: String,

    /// Display name (empty: the client id)
    #[arg(long)]
    pub(crate) name: Option<String>,

    /// Exact redirect URIs, replacing the registered ones (repeat or list several)
    #[arg(long = "redirect-uri", value_name = "URI", num_args = 1..)]
    pub(crate) redirect_uris: Option<Vec<String>>,

    /// Exact post-logout redirect URIs, replacing the registered ones
    #[arg(long = "post-logout-redirect-uri", value_name = "URI", num_args = 1..)]
    pub(crate) post_logout_redirect_uris: Option<Vec<String>>,

    /// First-party client: skips the consent screen
    #[arg(long, value_name = "yes|no", value_parser = parse_yes_no)]
    pub(crate) first_party: Option<bool>,

    /// Scopes of client_credentials, replacing the registered ones
    #[arg(long = "service-scope", value_name = "SCOPE", num_args = 1..)]
    pub(crate) service_scopes: Option<Vec<String>>,

    /// How its ID tokens are signed: `ES256` or `RS256`
    #[arg(long, value_name = "ALG")]
    pub(crate) id_token_alg: Option<String>,

    /// UserInfo answers this client with a signed JWT instead of JSON
    #[arg(long, value_name = "yes|no", value_parser = parse_yes_no)]
    pub(crate) userinfo_signed: Option<bool>,

    /// Where back-channel logout tokens are posted
    #[arg(long, value_name = "URI")]
    pub(crate) backchannel_logout_uri: Option<String>,

    /// No back-channel logout any more
    #[arg(long, conflicts_with = "backchannel_logout_uri")]
    pub(crate) no_backchannel_logout_uri: bool,

    /// File holding the client's public keys (a JWKS) for private_key_jwt, replacing
    /// the registered ones
    #[arg(long, value_name = "FILE")]
    pub(crate) jwks_file: Option<std::path::PathBuf>,

    /// No private_key_jwt any more: the registered keys are dropped
    #[arg(long, conflicts_with = "jwks_file")]
    pub(crate) no_jwks: bool,
}

/// Arguments of `dgectl clients add`.
#[derive(Debug, Args)]
pub(crate) struct ClientAddArgs {
    /// Client id, for example `datahub`
    pub(crate) id: String,

    /// Exact redirect URI (repeat or list several)
    #[arg(
        long = "redirect-uri",
        value_name = "URI",
        required_unless_present = "device",
        num_args = 1..
    )]
    pub(crate) redirect_uris: Vec<String>,

    /// A tool without a browser, such as `dgectl` itself: registered without redirect
    /// URIs, it logs people in with the device authorization grant only
    #[arg(long, conflicts_with = "redirect_uris")]
    pub(crate) device: bool,

    /// Display name (default: the client id)
    #[arg(long)]
    pub(crate) name: Option<String>,

    /// Public client: PKCE only, no secret
    #[arg(long)]
    pub(crate) public: bool,

    /// First-party client: skips the consent screen
    #[arg(long)]
    pub(crate) first_party: bool,

    /// Exact post-logout redirect URI (repeat or list several)
    #[arg(long = "post-logout-redirect-uri", value_name = "URI", num_args = 1..)]
    pub(crate) post_logout_redirect_uris: Vec<String>,

    /// Scope the client may ask with client_credentials, guarding gRPC methods
    /// (`authz:check`, `authz:rights`, `authz:introspect`, `authz:revoke`; repeat)
    #[arg(long = "service-scope", value_name = "SCOPE", num_args = 1..)]
    pub(crate) service_scopes: Vec<String>,

    /// UserInfo answers this client with a signed JWT instead of JSON
    #[arg(long)]
    pub(crate) userinfo_signed: bool,

    /// How its ID tokens are signed: `ES256` (default) or `RS256`
    #[arg(long, value_name = "ALG")]
    pub(crate) id_token_alg: Option<String>,

    /// Where back-channel logout tokens are posted
    #[arg(long, value_name = "URI")]
    pub(crate) backchannel_logout_uri: Option<String>,

    /// File holding the client's public keys (a JWKS) for private_key_jwt
    #[arg(long, value_name = "FILE")]
    pub(crate) jwks_file: Option<std::path::PathBuf>,
}

/// Verbs of `dgectl keys`.
#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// List the published signing keys, newest first
    List,

    /// Publish a new key now; it signs after a delay and the old key stays
    /// published until every token it signed has expired
    Rotate {
        /// `ES256` (default) or `RS256`
        #[arg(long, default_value = "ES256")]
        alg: String,

        /// Seconds between publication and first signature; relying parties cache
        /// the JWKS for 300 seconds
        #[arg(long, value_name = "SECS", default_value_t = 300)]
        activate_after: i64,
    },
}

/// The single verb of nouns that can only be listed.
#[derive(Debug, Subcommand)]
pub(crate) enum ListOnly {
    /// List them all
    List,
}

/// Verbs of `dgectl mail`.
#[derive(Debug, Subcommand)]
pub(crate) enum MailCommand {
    /// List messages in the outbox
    List {
        /// Only messages with this status
        #[arg(long, value_enum)]
        status: Option<MessageStatusArg>,
    },

    /// Put a failed or cancelled message back in the queue
    Retry {
        /// Message id
        id: String,
    },

    /// Cancel a queued or failed message so that it is never sent
    Cancel {
        /// Message id
        id: String,
    },
}

/// Verbs of `dgectl links`.
#[derive(Debug, Subcommand)]
pub(crate) enum LinksCommand {
    /// List the upstream identities linked to an account
    List {
        /// Login or account id
        login: String,
    },

    /// Remove one upstream identity from an account (the account is kept)
    Remove {
        /// Login or account id
        login: String,

        /// Provider name, for example `proconnect`
        provider: String,

        /// The upstream subject (`sub`), as shown by `links list`
        subject: String,

        #[command(flatten)]
        confirm: ConfirmOpts,
    },
}

/// Arguments of `dgectl check`.
#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    /// An access token issued by DGE Identity to a person
    #[arg(value_name = "TOKEN")]
    pub(crate) access_token: Token,

    /// `module:right`, for example `datahub:publish`
    pub(crate) right: String,
}

/// Arguments of `dgectl completion`.
#[derive(Debug, Args)]
pub(crate) struct CompletionArgs {
    /// The shell to write the script for
    #[arg(value_enum)]
    pub(crate) shell: Shell,
}

/// Confirmation of a destructive command.
#[derive(Debug, Args)]
pub(crate) struct ConfirmOpts {
    /// Do not ask for confirmation (needed when standard input is not a terminal)
    #[arg(long, short = 'y')]
    pub(crate) yes: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_args(std::iter::once("dgectl").chain(args.iter().copied()))
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn accounts_list_takes_a_status_and_a_limit() {
        let cli = parse(&["accounts", "list", "--status", "pending", "--limit", "5"])
            .expect("valid arguments");
        let Command::Accounts(AccountsCommand::List { status, limit }) = cli.command else {
            panic!("parsed as {:?}", cli.command);
        };
        assert_eq!(status, Some(AccountStatusArg::Pending));
        assert_eq!(limit, Some(5));
    }

    #[test]
    fn an_unknown_status_is_a_usage_error() {
        let err = parse(&["accounts", "list", "--status", "asleep"]).expect_err("bad status");
        assert_eq!(err.kind(), ErrorKind::InvalidValue);
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn suspend_requires_a_reason_and_reactivate_does_not() {
        let err = parse(&["accounts", "suspend", "alice"]).expect_err("no reason");
        assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument);
        let err = parse(&["accounts", "suspend", "alice", "--reason", ""]).expect_err("empty");
        assert_eq!(err.exit_code(), 2);
        let cli = parse(&[
            "accounts", "suspend", "alice", "--reason", "départ", "--yes",
        ])
        .expect("valid arguments");
        let Command::Accounts(AccountsCommand::Suspend {
            login,
            reason,
            confirm,
            ..
        }) = cli.command
        else {
            panic!("parsed as {:?}", cli.command);
        };
        assert_eq!((login.as_str(), reason.as_str()), ("alice", "départ"));
        assert!(confirm.yes);
        let cli = parse(&["accounts", "reactivate", "alice"]).expect("valid arguments");
        assert!(matches!(
            cli.command,
            Command::Accounts(AccountsCommand::Reactivate { reason: None, .. })
        ));
        let cli = parse(&["accounts", "list", "--status", "suspended"]).expect("valid");
        assert!(matches!(
            cli.command,
            Command::Accounts(AccountsCommand::List {
                status: Some(AccountStatusArg::Suspended),
                ..
            })
        ));
    }

    #[test]
    fn reject_requires_a_reason() {
        let err = parse(&["accounts", "reject", "alice"]).expect_err("no reason");
        assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument);
        assert_eq!(err.exit_code(), 2);

        let err = parse(&["accounts", "reject", "alice", "--reason", ""]).expect_err("empty");
        assert_eq!(err.kind(), ErrorKind::InvalidValue);
    }

    #[test]
    fn reject_accepts_yes() {
        let cli = parse(&[
            "accounts", "reject", "alice", "--reason", "doublon", "--yes",
        ])
        .expect("valid arguments");
        let Command::Accounts(AccountsCommand::Reject {
            logins,
            reason,
            confirm,
        }) = cli.command
        else {
            panic!("parsed as {:?}", cli.command);
        };
        assert_eq!(logins, ["alice"]);
        assert_eq!(reason, "doublon");
        assert!(confirm.yes);
    }

    #[test]
    fn orgs_update_needs_something_to_change() {
        let err = parse(&["orgs", "update", "org-1"]).expect_err("nothing to change");
        assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument);
        assert!(parse(&["orgs", "update", "org-1", "--trusted", "no"]).is_ok());
        assert!(parse(&["orgs", "update", "org-1", "--no-domains"]).is_ok());
    }

    #[test]
    fn revoke_asks_by_default() {
        let cli = parse(&["rights", "revoke", "alice", "datahub:publish"]).expect("valid");
        let Command::Rights(RightsCommand::Revoke { confirm, .. }) = cli.command else {
            panic!("parsed as {:?}", cli.command);
        };
        assert!(!confirm.yes);
    }

    #[test]
    fn clients_add_collects_repeated_and_listed_uris() {
        let cli = parse(&[
            "clients",
            "add",
            "geo",
            "--redirect-uri",
            "http://localhost:8083/cb",
            "http://127.0.0.1:8083/cb",
            "--redirect-uri",
            "http://geo.example/cb",
            "--public",
            "--post-logout-redirect-uri",
            "http://geo.example/",
        ])
        .expect("valid arguments");
        let Command::Clients(ClientsCommand::Add(args)) = cli.command else {
            panic!("parsed as {:?}", cli.command);
        };
        assert_eq!(args.id, "geo");
        assert_eq!(args.redirect_uris.len(), 3);
        assert!(args.public);
        assert!(!args.first_party);
        assert_eq!(args.post_logout_redirect_uris, ["http://geo.example/"]);
        assert_eq!(args.name, None);
    }

    #[test]
    fn clients_update_tells_absent_from_given() {
        let cli = parse(&[
            "clients",
            "update",
            "geo",
            "--redirect-uri",
            "https://geo.example/cb",
            "--first-party",
            "no",
            "--no-jwks",
        ])
        .expect("valid arguments");
        let Command::Clients(ClientsCommand::Update(args)) = cli.command else {
            panic!("parsed as {:?}", cli.command);
        };
        assert_eq!(
            args.redirect_uris.as_deref(),
            Some(&["https://geo.example/cb".to_owned()][..])
        );
        assert_eq!(args.first_party, Some(false));
        assert!(args.no_jwks && args.jwks_file.is_none());
        assert_eq!(args.post_logout_redirect_uris, None);
        assert_eq!(args.name, None);
        assert!(!args.no_backchannel_logout_uri);
        let err = parse(&[
            "clients",
            "update",
            "geo",
            "--no-backchannel-logout-uri",
            "--backchannel-logout-uri",
            "https://geo.example/bc",
        ])
        .expect_err("both");
        assert_eq!(err.kind(), ErrorKind::ArgumentConflict);
    }

    #[test]
    fn clients_remove_asks_by_default() {
        let cli = parse(&["clients", "remove", "geo"]).expect("valid");
        let Command::Clients(ClientsCommand::Remove { id, confirm }) = cli.command else {
            panic!("parsed as {:?}", cli.command);
        };
        assert_eq!(id, "geo");
        assert!(!confirm.yes);
    }

    #[test]
    fn clients_add_requires_a_redirect_uri() {
        let err = parse(&["clients", "add", "geo"]).expect_err("no redirect URI");
        assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument);
        let cli = parse(&["clients", "add", "tool", "--device", "--public"]).expect("device");
        let Command::Clients(ClientsCommand::Add(args)) = cli.command else {
            panic!("parsed as {:?}", cli.command);
        };
        assert!(args.device && args.redirect_uris.is_empty());
        let err = parse(&[
            "clients",
            "add",
            "t",
            "--device",
            "--redirect-uri",
            "http://a/",
        ])
        .expect_err("both");
        assert_eq!(err.kind(), ErrorKind::ArgumentConflict);
    }

    #[test]
    fn global_options_may_follow_the_command() {
        let cli = parse(&[
            "orgs",
            "list",
            "--output",
            "json",
            "--server",
            "http://127.0.0.1:9",
            "--token",
            "abc",
        ])
        .expect("valid arguments");
        assert_eq!(cli.global.output, OutputFormat::Json);
        assert_eq!(cli.global.connection.server.as_str(), "http://127.0.0.1:9");
        assert_eq!(
            cli.global.connection.token.as_ref().map(Token::expose),
            Some("abc")
        );
    }

    #[test]
    fn token_and_token_file_cannot_both_be_typed() {
        let err = parse(&["--token", "abc", "--token-file", "/tmp/t", "orgs", "list"])
            .expect_err("both typed");
        assert_eq!(err.kind(), ErrorKind::ArgumentConflict);
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn https_and_http_are_accepted_and_other_schemes_refused() {
        for url in [
            "https://idp.example",
            "https://127.0.0.1:50051",
            "http://idp:50051",
        ] {
            assert!(parse(&["--server", url, "orgs", "list"]).is_ok(), "{url}");
        }
        for url in ["https://", "ftp://x", "127.0.0.1:50051", "http://"] {
            let err = parse(&["--server", url, "orgs", "list"]).expect_err(url);
            assert_eq!(err.kind(), ErrorKind::ValueValidation, "{url}");
        }
    }

    #[test]
    fn token_debug_hides_the_value() {
        let token: Token = " s3cret \n".parse().expect("non-empty");
        assert_eq!(token.expose(), "s3cret");
        assert!(!format!("{token:?}").contains("s3cret"));
    }

    #[test]
    fn check_and_completion_parse() {
        let cli = parse(&["check", "eyJ.x.y", "datahub:publish"]).expect("valid");
        assert!(matches!(cli.command, Command::Check(_)));
        assert!(!format!("{:?}", cli.command).contains("eyJ"));

        let cli = parse(&["completion", "zsh"]).expect("valid");
        let Command::Completion(args) = cli.command else {
            panic!("parsed as {:?}", cli.command);
        };
        assert_eq!(args.shell, Shell::Zsh);
    }

    #[test]
    fn a_noun_without_a_verb_is_a_usage_error() {
        let err = parse(&["accounts"]).expect_err("no verb");
        assert_eq!(err.exit_code(), 2);
    }
}
