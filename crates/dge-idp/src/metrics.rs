//! Prometheus metrics: HTTP and gRPC requests and latencies, logins by method and
//! outcome (counted where they happen), pending accounts and outbox depth.
//!
//! They are served on their own listener (`server.metrics_addr`, `--metrics-addr`),
//! kept off the public HTTP port.

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::get;
use dge_store::Db;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use sqlx::Row;

/// Latency buckets, seconds: from a cached check to a slow password hash.
const LATENCY_BUCKETS: [f64; 12] = [
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder once and returns its handle.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &LATENCY_BUCKETS)
                .map_or_else(
                    |_| PrometheusBuilder::new().build_recorder(),
                    PrometheusBuilder::build_recorder,
                );
            let handle = recorder.handle();
            // Another recorder already installed (never in dge-idp) keeps its place.
            drop(metrics::set_global_recorder(recorder));
            describe();
            handle
        })
        .clone()
}

fn describe() {
    metrics::describe_counter!(
        "dge_http_requests_total",
        "HTTP requests by route, method and status."
    );
    metrics::describe_histogram!(
        "dge_http_request_duration_seconds",
        metrics::Unit::Seconds,
        "HTTP request latency by route and method."
    );
    metrics::describe_counter!(
        "dge_grpc_requests_total",
        "gRPC calls by method and status code."
    );
    metrics::describe_histogram!(
        "dge_grpc_request_duration_seconds",
        metrics::Unit::Seconds,
        "gRPC call latency by method (until the response headers)."
    );
    metrics::describe_counter!("dge_logins_total", "Logins by method and outcome.");
    metrics::describe_gauge!("dge_accounts", "Local accounts by status.");
    metrics::describe_gauge!("dge_outbox_emails", "Emails in the outbox by status.");
}

/// The router of the metrics listener. The gauges read from the database are
/// refreshed at each scrape, so they are never older than the scrape itself.
pub fn router(handle: PrometheusHandle, db: Db) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let handle = handle.clone();
            let db = db.clone();
            async move {
                if let Err(e) = refresh_gauges(&db).await {
                    tracing::warn!(error = %dge_core::ErrorChain(&e), "metrics gauges not refreshed");
                }
                handle.run_upkeep();
                (
                    [("content-type", "text/plain; version=0.0.4")],
                    handle.render(),
                )
            }
        }),
    )
}

/// Axum middleware counting requests by matched route (never the raw path, which
/// would let anyone create labels).
pub async fn http_middleware(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("dge_http_requests_total", "route" => route.clone(), "method" => method.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("dge_http_request_duration_seconds", "route" => route, "method" => method)
        .record(started.elapsed().as_secs_f64());
    response
}

/// A tower layer counting gRPC calls by method and status.
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcMetricsLayer;

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics { inner }
    }
}

/// See [`GrpcMetricsLayer`].
#[derive(Debug, Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, B, RB> tower::Service<http::Request<B>> for GrpcMetrics<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    RB: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = grpc_method_label(request.uri().path());
        let started = Instant::now();
        let future = self.inner.call(request);
        Box::pin(async move {
            let result = future.await;
            // An error answered at once carries grpc-status in its headers; a
            // successful unary answer carries it in the trailers, as 0.
            let code = match &result {
                Ok(response) => response
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("0")
                    .to_owned(),
                Err(_) => "transport".to_owned(),
            };
            metrics::counter!("dge_grpc_requests_total", "method" => method, "code" => code)
                .increment(1);
            metrics::histogram!("dge_grpc_request_duration_seconds", "method" => method)
                .record(started.elapsed().as_secs_f64());
            result
        })
    }
}

/// Our services' and the standard ones' methods by name; anything else is `other`,
/// so that random paths cannot create labels.
fn grpc_method_label(path: &str) -> &'static str {
    static KNOWN: OnceLock<Vec<&'static str>> = OnceLock::new();
    let known = KNOWN.get_or_init(known_grpc_methods);
    known
        .iter()
        .find(|m| **m == path)
        .copied()
        .unwrap_or("other")
}

fn known_grpc_methods() -> Vec<&'static str> {
    use prost::Message as _;
    let mut methods = Vec::new();
    for set in [
        dge_proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
    ] {
        let Ok(fds) = prost_types::FileDescriptorSet::decode(set) else {
            continue;
        };
        for file in fds.file {
            let package = file.package.unwrap_or_default();
            for service in file.service {
                let service_name = service.name.unwrap_or_default();
                for method in service.method {
                    let path = format!(
                        "/{package}.{service_name}/{}",
                        method.name.unwrap_or_default()
                    );
                    methods.push(&*Box::leak(path.into_boxed_str()));
                }
            }
        }
    }
    methods.push("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo");
    methods
}

async fn refresh_gauges(db: &Db) -> sqlx::Result<()> {
    for (table, gauge, statuses) in [
        (
            "accounts",
            "dge_accounts",
            &["unconfirmed", "pending", "active", "rejected", "suspended"][..],
        ),
        (
            "outbox",
            "dge_outbox_emails",
            &["queued", "sent", "failed"][..],
        ),
    ] {
        let rows = sqlx::query(&format!(
            "SELECT status, COUNT(*) AS n FROM {table} GROUP BY status"
        ))
        .fetch_all(db.pool())
        .await?;
        for status in statuses {
            let n = rows
                .iter()
                .find(|r| r.try_get::<String, _>("status").is_ok_and(|s| s == *status))
                .and_then(|r| r.try_get::<i64, _>("n").ok())
                .unwrap_or(0);
            #[allow(clippy::cast_precision_loss)] // counts far below 2^52
            metrics::gauge!(gauge, "status" => *status).set(n as f64);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_labels_are_known_methods_or_other() {
        assert_eq!(
            grpc_method_label("/dge.identity.v1.Authorization/Check"),
            "/dge.identity.v1.Authorization/Check"
        );
        assert_eq!(
            grpc_method_label("/grpc.health.v1.Health/Check"),
            "/grpc.health.v1.Health/Check"
        );
        assert_eq!(
            grpc_method_label("/dge.identity.v1.Authorization/Nope"),
            "other"
        );
        assert_eq!(grpc_method_label("/random/../path"), "other");
    }
}
