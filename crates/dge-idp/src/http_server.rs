//! The HTTP/1.1 accept loop of the public and metrics listeners.
//!
//! `axum::serve` keeps a connection open as long as the client wants: a client that
//! sends half a request head, or nothing, holds a file descriptor for ever, and a few
//! hundred of them starve the process. Here:
//!
//! - the whole request head must arrive within [`HttpLimits::header_timeout`]; hyper
//!   also runs this timer while a keep-alive connection waits for its next request, so
//!   it is the idle timeout as well;
//! - a request (its body included) gets [`HttpLimits::request_timeout`], then a 408
//!   (the routers add [`HttpLimits::timeout_layer`] where its answer gets the pages'
//!   headers and French text);
//! - at most [`HttpLimits::max_connections`] connections are open: the next ones are
//!   closed at once, so descriptors stay for the requests that are served;
//! - accept errors (`EMFILE` when descriptors run out) pause the loop instead of
//!   spinning on them.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::StatusCode;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt as _;
use tower_http::timeout::TimeoutLayer;

/// How long the loop pauses after an accept error such as `EMFILE`.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(250);

/// Timeouts and connection cap of an HTTP listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Time for a request's head to arrive, from the connection's opening or the end of
    /// the previous answer (hence also the idle keep-alive timeout).
    pub header_timeout: Duration,
    /// Time for a whole request, body included; past it the client gets a 408.
    pub request_timeout: Duration,
    /// Connections open at once; the next ones are closed without an answer.
    pub max_connections: usize,
}

impl HttpLimits {
    /// The request timeout: a 408 once [`Self::request_timeout`] has passed.
    #[must_use]
    pub fn timeout_layer(&self) -> TimeoutLayer {
        TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, self.request_timeout)
    }
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connections: 4096,
        }
    }
}

/// Serves `app` (which carries [`HttpLimits::timeout_layer`]) on `listener` until
/// `shutdown` completes, then lets the requests in flight finish. Handlers see the peer
/// as `ConnectInfo<SocketAddr>`.
///
/// # Errors
/// Never today: accept errors are logged and retried.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accept error; pausing");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(
                max_connections = limits.max_connections,
                "connection refused: too many open connections"
            );
            drop(stream);
            continue;
        };
        let service = app
            .clone()
            .map_request(move |mut request: axum::extract::Request<_>| {
                request
                    .extensions_mut()
                    .insert(ConnectInfo::<SocketAddr>(peer));
                request
            });
        let connection =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "HTTP connection closed with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
