//! `dge-idp dev`: the embedded default.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use dge_core::{Clock, Secret, SystemClock};

use crate::app;
use crate::cli::{AdminNotices, DevArgs};
use crate::seed;
use crate::settings::{MailDelivery, MailTransport, Settings};
use dge_workflow::notify::{NoticeMode, NotifySettings};

/// Runs on SQLite with emails as files until Ctrl-C or SIGTERM.
///
/// # Errors
/// Fails when the data folder, the database or a listener cannot be set up.
pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    // The database and the outbox below hold personal data and live links.
    dge_core::private_fs::private_dir(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let data_dir = args.data_dir.canonicalize()?;
    let public_url = args
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", args.http_addr));
    let settings = Settings {
        public_url: public_url.trim_end_matches('/').to_owned(),
        database_url: Secret::new(args.database_url.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}?mode=rwc",
                data_dir.join("dge-identity.sqlite3").display()
            )
        })),
        database_max_connections: 8,
        mail: match &args.smtp_url {
            Some(url) => MailTransport::Smtp(Secret::new(url.clone())),
            None => MailTransport::Files(data_dir.join("outbox")),
        },
        mail_from: "DataGrandEst <no-reply@datagrandest.fr>".into(),
        mail_delivery: MailDelivery {
            max_attempts: args.mail_max_attempts,
            retry_base_secs: args.mail_retry_base_secs,
            // Short waits: the embedded default is for trying things out.
            retry_max_secs: 60.max(args.mail_retry_base_secs),
            ..MailDelivery::default()
        },
        confirmation_ttl_secs: args.confirmation_ttl_secs,
        unconfirmed_ttl_secs: args.unconfirmed_ttl_secs,
        account_limits: dge_registry::AccountLifetimes {
            signups_per_address_max: args.signups_per_address_max,
            ..dge_registry::AccountLifetimes::default()
        },
        token_ttl_secs: args.token_ttl_secs,
        device_code_ttl_secs: args.device_code_ttl_secs,
        // The embedded default listens on loopback over plain HTTP.
        secure_cookies: public_url.starts_with("https://"),
        notify: NotifySettings {
            admin_emails: args
                .admin_emails
                .iter()
                .map(|e| e.trim().to_owned())
                .filter(|e| !e.is_empty())
                .collect(),
            mode: match args.admin_notices {
                AdminNotices::PerSignup => NoticeMode::PerSignup,
                AdminNotices::DailyDigest => NoticeMode::DailyDigest {
                    hour_utc: args.digest_hour_utc,
                },
            },
            reminder_after_secs: args.reminder_after_days * 86_400,
        },
        upstreams: match &args.upstreams_file {
            Some(path) => dge_broker::config::load_file(path)
                .with_context(|| format!("reading upstreams from {}", path.display()))?,
            None => dge_broker::default_providers(),
        },
        portal: dge_pages::Portal::default(),
        support_email: "contact@datagrandest.fr".into(),
        hash_concurrency: 2,
        redis_url: args.redis_url.clone().map(Secret::new),
        redis_prefix: args.redis_prefix.clone(),
        redis_timeout: dge_store::DEFAULT_REDIS_DEADLINE,
        database_statement_timeout: dge_store::DEFAULT_STATEMENT_TIMEOUT,
        throttle: dge_registry::ThrottleSettings {
            free_failures: args.login_free_failures,
            delay_base_ms: args.login_delay_base_ms,
            lock_after: args.login_lock_after,
            lock_secs: args.login_lock_secs,
            address_lock_after: args.address_lock_after,
            ..dge_registry::ThrottleSettings::default()
        },
        // The embedded default is reached directly, never through a proxy.
        trusted_proxies: Vec::new(),
        http_limits: crate::http_server::HttpLimits {
            header_timeout: Duration::from_secs(args.http_header_timeout_secs),
            request_timeout: Duration::from_secs(args.http_request_timeout_secs),
            max_connections: usize::try_from(args.http_max_connections).unwrap_or(usize::MAX),
        },
        grpc_limits: crate::grpc_server::GrpcLimits {
            max_connections: usize::try_from(args.grpc_max_connections).unwrap_or(usize::MAX),
            handshake_timeout: Duration::from_secs(args.grpc_handshake_timeout_secs),
        },
        rate_limits: dge_oidc::rate::RateLimits {
            authorize_max: args.authorize_max_requests,
            authorize_window_secs: args.authorize_window_secs,
            client_auth_max_failures: args.client_auth_max_failures,
            client_auth_window_secs: args.client_auth_window_secs,
        },
        hash_params: dge_registry::hashing::HashParams::default(),
        key_min_activate_secs: args.key_min_activate_secs,
        key_encryption_key: dge_authz::keys::KeyEncryptionKey::from_env_or_file(&data_dir)
            .context("loading the key-encryption key")?,
    };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let db = app::open_database(&settings).await?;
    let now = clock.now();
    seed::directory(&db, now).await?;
    seed::demo_clients(&db, now).await?;
    if let Some(token) = seed::bootstrap_admin(&db, &data_dir, now).await? {
        // Shown once, on the terminal that started the first run, never through the
        // log pipeline (stderr redirected to a file or a collector gets nothing); the
        // file keeps it for dgectl.
        #[allow(clippy::print_stderr)]
        if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            eprintln!(
                "\n  Bootstrap administrator token (shown once, also in {}):\n  {token}\n",
                data_dir.join("admin.token").display()
            );
        }
        tracing::info!(path = %data_dir.join("admin.token").display(), "bootstrap administrator token created");
    }
    let http = tokio::net::TcpListener::bind(args.http_addr)
        .await
        .with_context(|| format!("binding {}", args.http_addr))?;
    let grpc = tokio::net::TcpListener::bind(args.grpc_addr)
        .await
        .with_context(|| format!("binding {}", args.grpc_addr))?;
    app::run(
        settings,
        db,
        clock,
        app::Listeners {
            http,
            grpc,
            metrics: crate::serve::bind_optional(args.metrics_addr).await?,
        },
        shutdown_signal(),
    )
    .await
}

pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutdown requested");
}
