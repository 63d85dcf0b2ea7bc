//! Command-line arguments.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// DGE Identity: the identity provider of the DataGrandEst portal.
#[derive(Debug, Parser)]
#[command(name = "dge-idp", version, about)]
pub struct Cli {
    /// Threads running requests (default: one per core available to the process).
    /// Fewer on a machine whose cores other busy processes share, such as a
    /// database or a load generator: with more busy threads than cores, requests
    /// wait for the processor in turn and their slowest times grow.
    #[arg(long, global = true, env = "DGE_WORKER_THREADS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub worker_threads: Option<u16>,
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Sub-commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs on the embedded default: SQLite, in-process caches, emails as `.eml`
    /// files, with demo clients and organisations.
    Dev(Box<DevArgs>),
    /// Runs in production: configuration from a TOML file and `DGE_` variables.
    Serve(ConfigArgs),
    /// Validates a configuration and says exactly what is wrong.
    CheckConfig(ConfigArgs),
    /// Applies pending database migrations, then exits.
    Migrate(ConfigArgs),
    /// Prints a commented example configuration.
    ConfigExample,
    /// Creates an administrator API token and prints it once.
    CreateAdminToken(AdminTokenArgs),
    /// Lists the administrator API tokens: names and dates, never the tokens.
    ListAdminTokens(ConfigArgs),
    /// Revokes an administrator API token by name: refused at its next use.
    RevokeAdminToken(AdminTokenNameArgs),
    /// Exits 0 when `GET URL` answers 200: a health check for images without curl.
    Probe(ProbeArgs),
}

/// Options of `dge-idp probe`.
#[derive(Debug, Clone, Args)]
pub struct ProbeArgs {
    /// A plain `http://` URL, usually `http://127.0.0.1:8080/readyz`.
    pub url: String,
}

/// Where the configuration comes from.
#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    /// TOML configuration file (every key can also come from `DGE_<SECTION>__<KEY>`).
    #[arg(long, short, env = "DGE_CONFIG")]
    pub config: Option<PathBuf>,
}

/// Options of `dge-idp create-admin-token`.
#[derive(Debug, Clone, Args)]
pub struct AdminTokenArgs {
    /// Configuration, for the database.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// A label for the token, unique (`ops-2027`).
    #[arg(long)]
    pub name: String,
    /// Refused after this many days (1 to 3650); without it, until revoked.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=3650))]
    pub expires_in_days: Option<u16>,
}

/// Options of `dge-idp revoke-admin-token`.
#[derive(Debug, Clone, Args)]
pub struct AdminTokenNameArgs {
    /// Configuration, for the database.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// The token's label, as `list-admin-tokens` shows it.
    #[arg(long)]
    pub name: String,
}

/// Options of `dge-idp dev`.
#[derive(Debug, Clone, Args)]
pub struct DevArgs {
    /// Folder for the database, the outbox and the admin token.
    #[arg(long, env = "DGE_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// HTTP address (pages and OpenID Connect).
    #[arg(long, env = "DGE_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,
    /// gRPC address.
    #[arg(long, env = "DGE_GRPC_ADDR", default_value = "127.0.0.1:50051")]
    pub grpc_addr: SocketAddr,
    /// Redis for counters and notifications shared between replicas; in-process
    /// without it.
    #[arg(long, env = "DGE_DEV_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Prefix of every key in Redis, so that several servers (or test runs) can share
    /// one Redis without sharing counters.
    #[arg(long, env = "DGE_DEV_REDIS_PREFIX", default_value = "dge:")]
    pub redis_prefix: String,
    /// Prometheus metrics listener (`GET /metrics`); none by default.
    #[arg(long, env = "DGE_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Seconds for an HTTP request's head to arrive (also the idle keep-alive time).
    #[arg(long, env = "DGE_HTTP_HEADER_TIMEOUT_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub http_header_timeout_secs: u64,
    /// Seconds for a whole HTTP request, body included, before a 408.
    #[arg(long, env = "DGE_HTTP_REQUEST_TIMEOUT_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub http_request_timeout_secs: u64,
    /// HTTP connections open at once; more are closed at once.
    #[arg(long, env = "DGE_HTTP_MAX_CONNECTIONS", default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub http_max_connections: u64,
    /// gRPC connections open at once, handshakes included; more are closed at once.
    #[arg(long, env = "DGE_GRPC_MAX_CONNECTIONS", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub grpc_max_connections: u64,
    /// Seconds for a gRPC client's HTTP/2 handshake (preface and first SETTINGS).
    #[arg(long, env = "DGE_GRPC_HANDSHAKE_TIMEOUT_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub grpc_handshake_timeout_secs: u64,
    /// Public URL, also the OIDC issuer (default `http://<http-addr>`).
    #[arg(long, env = "DGE_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// How long confirmation links stay valid, in seconds.
    #[arg(long, env = "DGE_CONFIRMATION_TTL_SECS", default_value_t = 48 * 3600, value_parser = clap::value_parser!(i64).range(1..=31_536_000))]
    pub confirmation_ttl_secs: i64,
    /// How long an unconfirmed sign-up is kept before it is purged (freeing its login
    /// and email address), in seconds.
    #[arg(long, env = "DGE_UNCONFIRMED_TTL_SECS", default_value_t = 7 * 24 * 3600, value_parser = clap::value_parser!(i64).range(1..=31_536_000))]
    pub unconfirmed_ttl_secs: i64,
    /// Failed password logins on one account (in 15 minutes) that lock it.
    #[arg(long, env = "DGE_LOGIN_LOCK_AFTER", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub login_lock_after: u64,
    /// How long a login lock lasts, in seconds (the tests shorten it).
    #[arg(long, env = "DGE_LOGIN_LOCK_SECS", default_value_t = 900, value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub login_lock_secs: u64,
    /// Failed password logins answered at once, before growing delays start.
    #[arg(long, env = "DGE_LOGIN_FREE_FAILURES", default_value_t = 3)]
    pub login_free_failures: u64,
    /// The first delay after the free failures, in milliseconds (doubles each time).
    #[arg(long, env = "DGE_LOGIN_DELAY_BASE_MS", default_value_t = 500, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub login_delay_base_ms: u64,
    /// Failed password logins from one address (in 15 minutes) that lock the address
    /// for the accounts never logged into from it.
    #[arg(long, env = "DGE_ADDRESS_LOCK_AFTER", default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..))]
    pub address_lock_after: u64,
    /// Sign-ups filed from one client address per hour (an IPv6 address counts by its
    /// /64); the tests, which sign everyone up from loopback, raise it.
    #[arg(long, env = "DGE_SIGNUPS_PER_ADDRESS_MAX", default_value_t = 10, value_parser = clap::value_parser!(i64).range(1..=1_000_000))]
    pub signups_per_address_max: i64,
    /// Requests to /authorize from one address per `authorize_window_secs`.
    #[arg(long, env = "DGE_AUTHORIZE_MAX_REQUESTS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub authorize_max_requests: u64,
    /// The window of `authorize_max_requests`, in seconds.
    #[arg(long, env = "DGE_AUTHORIZE_WINDOW_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub authorize_window_secs: u64,
    /// Failed client authentications per client id and per address, per window.
    #[arg(long, env = "DGE_CLIENT_AUTH_MAX_FAILURES", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub client_auth_max_failures: u64,
    /// The window of `client_auth_max_failures`, in seconds.
    #[arg(long, env = "DGE_CLIENT_AUTH_WINDOW_SECS", default_value_t = 900, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub client_auth_window_secs: u64,
    /// Least delay, in seconds, between publishing a rotated signing key and its first
    /// signature (`dgectl keys rotate --activate-after`); the tests shorten it.
    #[arg(long, env = "DGE_KEY_MIN_ACTIVATE_SECS", default_value_t = 300, value_parser = clap::value_parser!(i64).range(1..=3600))]
    pub key_min_activate_secs: i64,
    /// How long access and ID tokens live, in seconds (the tests shorten it).
    #[arg(long, env = "DGE_TOKEN_TTL_SECS", default_value_t = 3600, value_parser = clap::value_parser!(i64).range(1..=86400))]
    pub token_ttl_secs: i64,
    /// How long a device code of `dgectl login` waits for approval, in seconds (the
    /// tests shorten it).
    #[arg(long, env = "DGE_DEVICE_CODE_TTL_SECS", default_value_t = 600, value_parser = clap::value_parser!(i64).range(5..=3600))]
    pub device_code_ttl_secs: i64,
    /// JSON file describing the upstream identity providers (ProConnect, the Région);
    /// without it both are shown as not configured. See the README.
    #[arg(long, env = "DGE_UPSTREAMS_FILE")]
    pub upstreams_file: Option<PathBuf>,
    /// Database URL instead of the SQLite file in the data folder (the test suite runs
    /// the embedded default on PostgreSQL this way).
    #[arg(long, env = "DGE_DEV_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Administrators told of new sign-ups (repeat, or comma-separated in the environment).
    #[arg(long = "admin-email", env = "DGE_ADMIN_EMAILS", value_delimiter = ',')]
    pub admin_emails: Vec<String>,
    /// How administrators hear of new sign-ups: one email each, or a daily digest.
    #[arg(long, env = "DGE_ADMIN_NOTICES", value_enum, default_value_t = AdminNotices::PerSignup)]
    pub admin_notices: AdminNotices,
    /// Hour (UTC) of the daily digest.
    #[arg(long, env = "DGE_DIGEST_HOUR_UTC", default_value_t = 7, value_parser = clap::value_parser!(u32).range(0..24))]
    pub digest_hour_utc: u32,
    /// Send emails through this SMTP server instead of writing `.eml` files
    /// (`smtp://127.0.0.1:2525`, `smtp://user:pass@host:587?tls=required`, `smtps://host:465`).
    #[arg(long, env = "DGE_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,
    /// Attempts before an email is marked failed.
    #[arg(long, env = "DGE_MAIL_MAX_ATTEMPTS", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub mail_max_attempts: u32,
    /// Wait after the first failed delivery, in seconds, doubled after each further one.
    #[arg(long, env = "DGE_MAIL_RETRY_BASE_SECS", default_value_t = 30, value_parser = clap::value_parser!(i64).range(1..=3600))]
    pub mail_retry_base_secs: i64,
    /// Remind administrators of sign-ups pending longer than this many days.
    #[arg(long, env = "DGE_REMINDER_AFTER_DAYS", default_value_t = 3, value_parser = clap::value_parser!(i64).range(1..366))]
    pub reminder_after_days: i64,
}

/// How administrators hear of new sign-ups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AdminNotices {
    /// One email per sign-up.
    PerSignup,
    /// One email a day.
    DailyDigest,
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory as _, FromArgMatches as _};

    use super::Cli;

    #[test]
    fn worker_threads_go_before_or_after_the_command() {
        // Without the variable, so that a `DGE_WORKER_THREADS` of the shell is not read.
        let threads = |args: &[&str]| {
            let matches = Cli::command()
                .mut_arg("worker_threads", |a| a.env(None))
                .try_get_matches_from(args)?;
            Cli::from_arg_matches(&matches).map(|cli| cli.worker_threads)
        };
        assert_eq!(threads(&["dge-idp", "config-example"]).ok(), Some(None));
        assert_eq!(
            threads(&["dge-idp", "--worker-threads", "2", "config-example"]).ok(),
            Some(Some(2))
        );
        assert_eq!(
            threads(&["dge-idp", "dev", "--worker-threads", "1"]).ok(),
            Some(Some(1))
        );
        for bad in ["0", "1025", "-1", "two"] {
            let arg = format!("--worker-threads={bad}");
            let refused = threads(&["dge-idp", &arg, "dev"]).expect_err(bad);
            assert_eq!(
                refused.kind(),
                clap::error::ErrorKind::ValueValidation,
                "{bad}"
            );
        }
    }
}
