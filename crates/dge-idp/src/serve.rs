//! Production commands: `serve`, `check-config`, `migrate`, `config-example`, and
//! `create-admin-token`, `list-admin-tokens` and `revoke-admin-token`.

#![allow(clippy::print_stdout)] // these commands answer on stdout by design

use std::sync::Arc;

use anyhow::Context;
use dge_core::{Clock, SystemClock};

use crate::cli::{AdminTokenArgs, AdminTokenNameArgs, ConfigArgs};
use crate::{app, config, dev, telemetry};

/// Serves until SIGTERM or Ctrl-C, then drains in-flight requests.
///
/// # Errors
/// A bad configuration, an unreachable database, a listener that cannot bind.
pub async fn run(args: &ConfigArgs) -> anyhow::Result<()> {
    let config = config::load(args.config.as_deref())?;
    let settings = config.settings()?;
    // Kept to the end: dropping it flushes the spans still queued.
    let _exporting = match config.telemetry.export() {
        Some(export) => Some(telemetry::export(&export).context("starting the trace export")?),
        None => None,
    };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let db = app::open_database(&settings).await?;
    let http = tokio::net::TcpListener::bind(config.server.http_addr)
        .await
        .with_context(|| format!("binding {}", config.server.http_addr))?;
    let grpc = tokio::net::TcpListener::bind(config.server.grpc_addr)
        .await
        .with_context(|| format!("binding {}", config.server.grpc_addr))?;
    let metrics = bind_optional(config.server.metrics_addr).await?;
    app::run(
        settings,
        db,
        clock,
        app::Listeners {
            http,
            grpc,
            metrics,
        },
        dev::shutdown_signal(),
    )
    .await
}

/// Binds `addr` when one is given.
///
/// # Errors
/// The address cannot be bound.
pub(crate) async fn bind_optional(
    addr: Option<std::net::SocketAddr>,
) -> anyhow::Result<Option<tokio::net::TcpListener>> {
    match addr {
        Some(addr) => Ok(Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding {addr}"))?,
        )),
        None => Ok(None),
    }
}

/// Validates the configuration; prints `configuration is valid` or each problem.
///
/// # Errors
/// The list of problems.
pub fn check(args: &ConfigArgs) -> anyhow::Result<()> {
    config::load(args.config.as_deref())?;
    println!("configuration is valid");
    Ok(())
}

/// Applies pending migrations.
///
/// # Errors
/// A bad configuration, an unreachable database, a failed migration.
pub async fn migrate(args: &ConfigArgs) -> anyhow::Result<()> {
    let settings = config::load(args.config.as_deref())?.settings()?;
    app::open_database(&settings).await?;
    println!("database is up to date");
    Ok(())
}

/// Prints the example configuration.
///
/// # Errors
/// Never.
pub fn example() -> anyhow::Result<()> {
    print!("{}", config::EXAMPLE);
    Ok(())
}

/// Creates an administrator API token; only its digest is stored.
///
/// # Errors
/// A bad configuration, an unreachable database, a name already used.
pub async fn create_admin_token(args: &AdminTokenArgs) -> anyhow::Result<()> {
    let name = args.name.trim();
    anyhow::ensure!(
        !name.is_empty() && name.chars().count() <= 100 && !name.chars().any(char::is_control),
        "--name must be 1 to 100 characters, without control characters"
    );
    let settings = config::load(args.config.config.as_deref())?.settings()?;
    let db = app::open_database(&settings).await?;
    let now = SystemClock.now();
    let expires_at = args
        .expires_in_days
        .map(|days| now + i64::from(days) * 24 * 3600);
    let token = dge_authz::caller::create_api_token_until(
        &db,
        name,
        dge_authz::caller::ADMIN_SCOPE,
        now,
        expires_at,
        &cli_actor("create-admin-token"),
    )
    .await
    .context("creating the token (is the name already used?)")?;
    println!("{token}");
    tracing::info!(%name, "administrator token created");
    Ok(())
}

/// Lists the API tokens, one per line: name, scopes, creation and expiry (UTC).
///
/// # Errors
/// A bad configuration, an unreachable database.
pub async fn list_admin_tokens(args: &ConfigArgs) -> anyhow::Result<()> {
    let settings = config::load(args.config.as_deref())?.settings()?;
    let db = app::open_database(&settings).await?;
    let tokens = dge_authz::caller::list_api_tokens(&db).await?;
    let date = dge_core::time::format_utc;
    let now = SystemClock.now();
    println!("NAME\tSCOPES\tCREATED\tEXPIRES");
    for t in tokens {
        let expires = match t.expires_at {
            None => "never".to_owned(),
            Some(at) if at <= now => format!("{} (expired)", date(at)),
            Some(at) => date(at),
        };
        println!(
            "{}\t{}\t{}\t{expires}",
            t.name,
            t.scopes,
            date(t.created_at)
        );
    }
    Ok(())
}

/// Revokes the API token `--name`; fails when there is none by that name.
///
/// # Errors
/// A bad configuration, an unreachable database, an unknown name.
pub async fn revoke_admin_token(args: &AdminTokenNameArgs) -> anyhow::Result<()> {
    let settings = config::load(args.config.config.as_deref())?.settings()?;
    let db = app::open_database(&settings).await?;
    let name = args.name.trim();
    let revoked = dge_authz::caller::revoke_api_token(
        &db,
        name,
        &cli_actor("revoke-admin-token"),
        SystemClock.now(),
    )
    .await?;
    anyhow::ensure!(
        revoked,
        "no API token is named {name:?} (dge-idp list-admin-tokens lists them)"
    );
    println!("revoked {name}: refused from its next use");
    tracing::info!(%name, "administrator token revoked");
    Ok(())
}

/// The audit actor of a command run on the server: the command, and the system user
/// who ran it when the environment names one.
fn cli_actor(command: &str) -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.is_empty() && u.len() <= 64 && !u.chars().any(char::is_control));
    match user {
        Some(user) => format!("dge-idp {command} (system user {user})"),
        None => format!("dge-idp {command}"),
    }
}

/// `GET url` over plain HTTP/1.0; succeeds on a 200 answer within 3 seconds.
///
/// # Errors
/// Not an `http://` URL, no connection, or another status.
pub async fn probe(url: &str) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let url = url::Url::parse(url).context("not a URL")?;
    anyhow::ensure!(url.scheme() == "http", "only http:// URLs can be probed");
    let host = url.host_str().context("no host in the URL")?;
    let port = url.port_or_known_default().unwrap_or(80);
    let ask = async {
        let mut stream = tokio::net::TcpStream::connect((host, port)).await?;
        let request = format!("GET {} HTTP/1.0\r\nHost: {host}\r\n\r\n", url.path());
        stream.write_all(request.as_bytes()).await?;
        let mut head = [0_u8; 12];
        stream.read_exact(&mut head).await?;
        std::io::Result::Ok(head)
    };
    let head = tokio::time::timeout(std::time::Duration::from_secs(3), ask)
        .await
        .context("no answer within 3 s")?
        .with_context(|| format!("probing {url}"))?;
    let status = String::from_utf8_lossy(&head[9..12]).into_owned();
    anyhow::ensure!(status == "200", "{url} answered {status}");
    println!("{url}: ok");
    Ok(())
}
