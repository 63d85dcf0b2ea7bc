//! Production commands: `serve`, `check-config`, `migrate`, `config-example` and
//! `create-admin-token`.

#![allow(clippy::print_stdout)] // these commands answer on stdout by design

use std::sync::Arc;

use anyhow::Context;
use dge_core::{Clock, SystemClock};

use crate::cli::{AdminTokenArgs, ConfigArgs};
use crate::{app, config, dev};

/// Serves until SIGTERM or Ctrl-C, then drains in-flight requests.
///
/// # Errors
/// A bad configuration, an unreachable database, a listener that cannot bind.
pub async fn run(args: &ConfigArgs) -> anyhow::Result<()> {
    let config = config::load(args.config.as_deref())?;
    let settings = config.settings()?;
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
    let settings = config::load(args.config.config.as_deref())?.settings()?;
    let db = app::open_database(&settings).await?;
    let token = dge_authz::caller::create_api_token(
        &db,
        args.name.trim(),
        dge_authz::caller::ADMIN_SCOPE,
        SystemClock.now(),
    )
    .await
    .context("creating the token (is the name already used?)")?;
    println!("{token}");
    tracing::info!(name = %args.name.trim(), "administrator token created");
    Ok(())
}
