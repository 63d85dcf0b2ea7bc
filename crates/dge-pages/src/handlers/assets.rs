//! Static assets, embedded in the binary: no call to any outside host.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

const ASSETS: &[(&str, &str, &str)] = &[
    (
        "dge.css",
        "text/css; charset=utf-8",
        include_str!("../../static/dge.css"),
    ),
    (
        "dge.js",
        "text/javascript; charset=utf-8",
        include_str!("../../static/dge.js"),
    ),
];

/// `GET /static/{file}`.
pub(crate) async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, body)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, "public, max-age=3600"),
            ],
            *body,
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
