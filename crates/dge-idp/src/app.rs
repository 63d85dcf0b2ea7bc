//! Builds every service and serves HTTP and gRPC until shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::request_id::REQUEST_ID;
use anyhow::Context;
use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::routing::get;
use dge_authz::grpc::AuthorizationService;
use dge_authz::keys_grpc::SigningKeysService;
use dge_authz::{Authenticator, Keys};
use dge_broker::Broker;
use dge_broker::grpc::IdentityBrokerService;
use dge_core::Clock;
use dge_mailer::grpc::MailerService;
use dge_mailer::{DispatchSettings, Dispatcher, MailSettings, Outbox, SmtpOptions, Transport};
use dge_oidc::grpc::ClientRegistryService;
use dge_oidc::{Provider, ProviderSettings};
use dge_proto::v1::account_registry_server::AccountRegistryServer;
use dge_proto::v1::authorization_server::AuthorizationServer;
use dge_proto::v1::client_registry_server::ClientRegistryServer;
use dge_proto::v1::identity_broker_server::IdentityBrokerServer;
use dge_proto::v1::mailer_server::MailerServer;
use dge_proto::v1::signing_keys_server::SigningKeysServer;
use dge_proto::v1::validation_workflow_server::ValidationWorkflowServer;
use dge_registry::grpc::AccountRegistryService;
use dge_registry::{AccountLifetimes, Hasher, Registry, RegistrySettings};
use dge_store::Db;
use dge_workflow::Workflow;
use dge_workflow::grpc::ValidationWorkflowService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::trace::TraceLayer;

use crate::settings::{MailTransport, Settings};

/// Largest request body accepted over HTTP: forms and token requests are small.
const HTTP_BODY_LIMIT: usize = 64 * 1024;
/// Largest gRPC message accepted.
const GRPC_MESSAGE_LIMIT: usize = 1024 * 1024;
/// Concurrent gRPC streams per connection (`dgectl` opens a handful).
const GRPC_MAX_STREAMS: u32 = 100;

/// The listeners `run` serves on, bound by the caller (tests bind port 0).
#[derive(Debug)]
pub struct Listeners {
    /// Pages and OpenID Connect.
    pub http: TcpListener,
    /// gRPC services.
    pub grpc: TcpListener,
    /// Prometheus metrics, when asked for; kept off the public HTTP port.
    pub metrics: Option<TcpListener>,
}

/// Connects to the database and applies pending migrations.
///
/// # Errors
/// Fails when the database cannot be reached or a migration fails.
pub async fn open_database(settings: &Settings) -> anyhow::Result<Db> {
    let db = Db::connect_bounded(
        settings.database_url.expose(),
        settings.database_max_connections,
        settings.database_statement_timeout,
    )
    .await
    .context("connecting to the database")?;
    db.migrate().await.context("applying migrations")?;
    Ok(db)
}

/// Serves until `shutdown` completes, then drains in-flight requests.
///
/// # Errors
/// Fails when a service cannot be built or a server stops with an error.
pub async fn run(
    settings: Settings,
    db: Db,
    clock: Arc<dyn Clock>,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let keys = Arc::new(
        Keys::load_or_create(
            db.clone(),
            clock.clone(),
            settings.key_encryption_key.clone(),
        )
        .await
        .context("loading signing keys")?,
    );
    let ephemeral = match &settings.redis_url {
        Some(url) => dge_store::ephemeral::Ephemeral::redis_with_deadline(
            url.expose(),
            &settings.redis_prefix,
            settings.redis_timeout,
        )
        .await
        .context("connecting to Redis")?,
        None => dge_store::ephemeral::Ephemeral::local(&settings.redis_prefix),
    };
    // Revocations, status changes and grants reach every replica's `Check` caches.
    db.share_access_changes(ephemeral.clone());
    let auth = Authenticator::new(
        db.clone(),
        keys.clone(),
        clock.clone(),
        settings.public_url.clone(),
    );
    let outbox = Outbox::new(MailSettings {
        portal_name: settings.portal.name.clone(),
        home_url: settings.portal.home_url.clone(),
        support_email: settings.support_email.clone(),
        from: settings.mail_from.clone(),
    });
    let transport = match &settings.mail {
        MailTransport::Files(dir) => Transport::file(dir.clone())?,
        MailTransport::Smtp(url) => Transport::smtp(
            url.expose(),
            &SmtpOptions {
                timeout: Duration::from_secs(settings.mail_delivery.smtp_timeout_secs),
                ca_file: settings.mail_delivery.smtp_ca_file.clone(),
            },
        )?,
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let hasher = Hasher::new(settings.hash_params, settings.hash_concurrency, HASH_WAIT);
    let provider = Provider::new(
        db.clone(),
        keys.clone(),
        clock.clone(),
        ProviderSettings {
            token_ttl_secs: settings.token_ttl_secs,
            device_code_ttl_secs: settings.device_code_ttl_secs,
            limits: settings.rate_limits,
            trusted_proxies: settings.trusted_proxies.clone(),
            ..ProviderSettings::new(settings.public_url.clone())
        },
    )
    .with_ephemeral(ephemeral.clone());
    // Sessions go to Redis with the codes when it is configured; the provider picks
    // the same store from `with_ephemeral`, and introspection over gRPC reads them.
    let sessions = dge_store::sessions::Sessions::new(db.clone(), &ephemeral);
    let registry = Registry::new(
        db.clone(),
        hasher,
        outbox.clone(),
        clock.clone(),
        RegistrySettings {
            public_url: settings.public_url.clone(),
            confirmation_ttl_secs: settings.confirmation_ttl_secs,
        },
    )
    .with_lifetimes(AccountLifetimes {
        unconfirmed_ttl_secs: settings.unconfirmed_ttl_secs,
        ..settings.account_limits.clone()
    })
    .with_throttle(ephemeral.clone(), settings.throttle.clone())
    .with_sessions(sessions.clone())
    .with_mfa_key(settings.key_encryption_key.clone())
    // Account changes that end sessions tell their modules (back-channel logout).
    .with_sessions_ended(Arc::new(provider.clone()));
    let purge_task = tokio::spawn(purge_loop(registry.clone(), stopped_signal(&stop_rx)));
    let workflow = Workflow::new(registry.clone(), settings.public_url.clone())
        .with_notices(ephemeral.clone());
    let relay_task = tokio::spawn(workflow.clone().relay_changes(stopped_signal(&stop_rx)));
    let notify_task = tokio::spawn(notify_loop(
        workflow.clone(),
        settings.notify.clone(),
        stopped_signal(&stop_rx),
    ));
    let broker = Broker::new(
        db.clone(),
        clock.clone(),
        settings.upstreams.clone(),
        settings.public_url.clone(),
        outbox.clone(),
    );

    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };

    let dispatcher = Dispatcher::new(
        db.clone(),
        transport,
        clock.clone(),
        DispatchSettings {
            from: settings.mail_from.clone(),
            max_attempts: settings.mail_delivery.max_attempts,
            retry_base_secs: settings.mail_delivery.retry_base_secs,
            retry_max_secs: settings.mail_delivery.retry_max_secs,
            sent_retention_secs: settings.mail_delivery.sent_retention_secs,
            failed_retention_secs: settings.mail_delivery.failed_retention_secs,
            ..DispatchSettings::default()
        },
        outbox.wake_handle(),
    )?;
    let mail_task = tokio::spawn(dispatcher.run(stopped()));
    // Back-channel logouts queued by logouts and account changes, on every replica.
    let backchannel = dge_oidc::backchannel::Dispatcher::new(
        provider.clone(),
        dge_oidc::backchannel::Settings::default(),
    )?;
    let backchannel_task = tokio::spawn(backchannel.run(stopped()));

    let pages = dge_pages::Pages {
        render: Arc::new(dge_pages::render::Renderer::new(settings.portal.clone())),
        registry: registry.clone(),
        provider: provider.clone(),
        broker: broker.clone(),
        secure_cookies: settings.secure_cookies,
        trusted_proxies: Arc::new(settings.trusted_proxies.clone()),
    };
    let http_app = http_router(
        pages,
        provider.clone(),
        db.clone(),
        settings.public_url.starts_with("https://"),
        &settings.http_limits,
    );

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<AccountRegistryServer<AccountRegistryService>>()
        .await;
    health_reporter
        .set_serving::<ValidationWorkflowServer<ValidationWorkflowService>>()
        .await;
    health_reporter
        .set_serving::<AuthorizationServer<AuthorizationService>>()
        .await;
    health_reporter
        .set_serving::<ClientRegistryServer<ClientRegistryService>>()
        .await;
    health_reporter
        .set_serving::<MailerServer<MailerService>>()
        .await;
    health_reporter
        .set_serving::<IdentityBrokerServer<IdentityBrokerService>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(dge_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("building gRPC reflection")?;

    let grpc = tonic::transport::Server::builder()
        .timeout(Duration::from_secs(30))
        // Dead peers and stalled streams do not hold connections: pings every 30 s,
        // closed when one goes unanswered for 10 s; bounded work per connection. The
        // connection cap and the handshake deadline are in `grpc_server::incoming`.
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .max_concurrent_streams(Some(GRPC_MAX_STREAMS))
        .concurrency_limit_per_connection(GRPC_MAX_STREAMS as usize)
        .layer(crate::request_id::layers())
        .layer(crate::metrics::GrpcMetricsLayer)
        // Innermost, so that the metrics and logs see the code sent.
        .layer(crate::grpc_errors::DecodeErrorsLayer)
        .add_service(health_service)
        .add_service(reflection)
        .add_service(
            AccountRegistryServer::new(AccountRegistryService::new(registry.clone(), auth.clone()))
                .max_decoding_message_size(GRPC_MESSAGE_LIMIT),
        )
        .add_service(
            ValidationWorkflowServer::new(ValidationWorkflowService::new(workflow, auth.clone()))
                .max_decoding_message_size(GRPC_MESSAGE_LIMIT),
        )
        .add_service(
            AuthorizationServer::new(AuthorizationService::new(
                db.clone(),
                auth.clone(),
                sessions,
            ))
            .max_decoding_message_size(GRPC_MESSAGE_LIMIT),
        )
        .add_service(
            ClientRegistryServer::new(ClientRegistryService::new(db.clone(), auth.clone()))
                .max_decoding_message_size(GRPC_MESSAGE_LIMIT),
        )
        .add_service(
            MailerServer::new(MailerService::new(
                db.clone(),
                auth.clone(),
                outbox.wake_handle(),
                &settings.mail_from,
            ))
            .max_decoding_message_size(GRPC_MESSAGE_LIMIT),
        )
        .add_service(
            SigningKeysServer::new(
                SigningKeysService::new(keys.clone(), auth.clone(), settings.token_ttl_secs)
                    .with_min_activate_secs(settings.key_min_activate_secs),
            )
            .max_decoding_message_size(GRPC_MESSAGE_LIMIT),
        )
        .add_service(
            IdentityBrokerServer::new(IdentityBrokerService::new(db.clone(), broker, auth))
                .max_decoding_message_size(GRPC_MESSAGE_LIMIT),
        );

    let access_task = tokio::spawn(db.clone().relay_access_changes(stopped()));
    let keys_task = tokio::spawn(keys_refresh_loop(
        keys.clone(),
        ephemeral.clone(),
        stopped(),
    ));
    let metrics_handle = crate::metrics::install();
    let metrics_task = match listeners.metrics {
        Some(listener) => {
            tracing::info!(metrics = %listener.local_addr()?, "serving Prometheus metrics");
            let router = crate::metrics::router(metrics_handle, db.clone())
                .layer(settings.http_limits.timeout_layer());
            let stop = stopped();
            Some(tokio::spawn(crate::http_server::serve(
                listener,
                router,
                settings.http_limits,
                stop,
            )))
        }
        None => None,
    };
    tracing::info!(
        http = %listeners.http.local_addr()?,
        grpc = %listeners.grpc.local_addr()?,
        issuer = %settings.public_url,
        worker_threads = tokio::runtime::Handle::current().metrics().num_workers(),
        "dge-idp ready"
    );
    let grpc_task = tokio::spawn(grpc.serve_with_incoming_shutdown(
        crate::grpc_server::incoming(listeners.grpc, settings.grpc_limits, stopped()),
        stopped(),
    ));
    // The peer address (ConnectInfo) feeds the per-address login throttle.
    let http_task = tokio::spawn(crate::http_server::serve(
        listeners.http,
        http_app,
        settings.http_limits,
        stopped(),
    ));

    shutdown.await;
    let _ = stop_tx.send(true);
    http_task.await?.context("HTTP server")?;
    grpc_task.await?.context("gRPC server")?;
    mail_task.await?;
    backchannel_task.await?;
    notify_task.await?;
    keys_task.await?;
    access_task.await?;
    if let Some(task) = metrics_task {
        task.await?.context("metrics server")?;
    }
    purge_task.await?;
    relay_task.await?;
    tracing::info!("dge-idp stopped");
    Ok(())
}

/// Deletes unconfirmed sign-ups once they expire, which frees their login and address.
/// Runs ten times per lifetime (at most every 10 minutes, at least every second).
async fn purge_loop(registry: Registry, stop: impl Future<Output = ()>) {
    let every = (registry.lifetimes().unconfirmed_ttl_secs / 10).clamp(1, 600);
    let every = Duration::from_secs(every.unsigned_abs());
    tokio::pin!(stop);
    loop {
        if let Err(e) = registry.purge_unconfirmed().await {
            tracing::error!(error = %dge_core::ErrorChain(&e), "purge of unconfirmed sign-ups failed");
        }
        match dge_store::expiry::purge_expired(registry.db(), registry.now()).await {
            Ok(0) => {}
            Ok(count) => tracing::info!(
                count,
                "expired tokens, sessions, requests and old back-channel logouts purged"
            ),
            Err(e) => {
                tracing::error!(error = %dge_core::ErrorChain(&e), "purge of expired rows failed");
            }
        }
        tokio::select! {
            () = &mut stop => break,
            () = tokio::time::sleep(every) => {}
        }
    }
}

fn stopped_signal(rx: &watch::Receiver<bool>) -> impl Future<Output = ()> + Send + 'static {
    let mut rx = rx.clone();
    async move {
        let _ = rx.wait_for(|s| *s).await;
    }
}

/// How long a login or sign-up may wait for a password-hash slot before its 503 with
/// `Retry-After`; callers whose estimated wait exceeds half of it are refused at once
/// (`dge_registry::hashing`). Half of it is about what a full queue of 64 callers takes
/// on 2 busy cores (a hash takes 15 ms alone, 30 ms when the cores are shared with
/// the rest of the login). With 1 s, part of the benchmark's 64 connections were
/// refused on PostgreSQL (issue 10, docs/performance.md).
pub const HASH_WAIT: Duration = Duration::from_secs(4);

/// How often a replica reloads the signing keys even without a notice. A rotated key
/// starts signing only after a delay longer than this, so every replica publishes it
/// in its JWKS before any token signed with it exists.
pub const KEYS_REFRESH: Duration = Duration::from_secs(60);

/// Reloads the signing keys when a replica announces a change (`keys` notice, or a
/// `resync` after a Redis outage), and every [`KEYS_REFRESH`].
async fn keys_refresh_loop(
    keys: Arc<Keys>,
    ephemeral: dge_store::ephemeral::Ephemeral,
    stop: impl Future<Output = ()>,
) {
    let mut notices = ephemeral.subscribe();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            notice = notices.recv() => match notice {
                Ok(n) if n.topic != "keys" && n.topic != "resync" => continue,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            },
            () = tokio::time::sleep(KEYS_REFRESH) => {}
        }
        if let Err(e) = keys.reload().await {
            tracing::error!(error = %dge_core::ErrorChain(&e), "signing keys not reloaded");
        }
    }
}

/// Tells administrators of new and old sign-ups, and ends the suspensions that reached
/// their end date, once a minute.
async fn notify_loop(
    workflow: Workflow,
    settings: dge_workflow::notify::NotifySettings,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        if let Err(e) = workflow.notify_admins(&settings).await {
            tracing::error!(error = %dge_core::ErrorChain(&e), "administrator notices failed");
        }
        // Suspensions with an end date end within a minute of it.
        match workflow.end_due_suspensions().await {
            Ok(0) => {}
            Ok(count) => tracing::info!(count, "suspensions ended at their date"),
            Err(e) => {
                tracing::error!(error = %dge_core::ErrorChain(&e), "ending due suspensions failed");
            }
        }
        tokio::select! {
            () = &mut stop => break,
            () = tokio::time::sleep(Duration::from_secs(60)) => {}
        }
    }
}

fn http_router(
    pages: dge_pages::Pages,
    provider: Provider,
    db: Db,
    https: bool,
    limits: &crate::http_server::HttpLimits,
) -> Router {
    let ops = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .with_state(db);
    let render = pages.render.clone();
    let app = Router::new()
        .merge(dge_pages::router(pages))
        .merge(dge_oidc::http::router(provider))
        .merge(ops)
        .layer(RequestBodyLimitLayer::new(HTTP_BODY_LIMIT))
        .layer(limits.timeout_layer())
        // Around the body limit, the timeout and the fallback, inside the security
        // headers: every framework error (404, 405, 408, 413, 415, 422) becomes a French
        // page with them.
        .layer(axum::middleware::from_fn_with_state(
            render,
            dge_pages::errors::framework_errors,
        ));
    let app = if https {
        app.layer(axum::middleware::from_fn(dge_pages::cookies::host_prefix))
    } else {
        app
    };
    let app = dge_pages::security::apply(app, https);
    app.route_layer(axum::middleware::from_fn(crate::metrics::http_middleware))
        .layer(
            // The span names the matched route, never the raw URI: query strings of OIDC
            // endpoints carry codes, states and tokens.
            TraceLayer::new_for_http().make_span_with(|req: &Request| {
                let route = req
                    .extensions()
                    .get::<MatchedPath>()
                    .map_or("unmatched", MatchedPath::as_str);
                // Always plausible here: the outer layers replaced any other.
                let request_id = req
                    .headers()
                    .get(REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                    .filter(|v| crate::request_id::plausible(v.as_bytes()))
                    .unwrap_or("invalid");
                tracing::info_span!("http", method = %req.method(), route, request_id)
            }),
        )
        // Outermost: every request gets an id (a proxy's own is kept when it is
        // plausible, else replaced) that is logged with its span and sent back.
        .layer(crate::request_id::layers())
}

/// How long `/readyz` waits for the database (probes usually give up after 1 to
/// 5 s).
const READY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(2);

async fn ready(State(db): State<Db>) -> StatusCode {
    if db.ready(READY_DEADLINE).await {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}
