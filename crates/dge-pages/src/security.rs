//! Security headers on every response.

use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use tower_http::set_header::SetResponseHeaderLayer;

/// A strict policy: everything from us, nothing inline, no framing.
// `form-action` is left out on purpose: Chromium applies it to the redirect that
// follows the login POST, which goes to the portal module's own origin.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/// Adds the security headers; HSTS only when served over HTTPS.
pub fn apply(router: Router, https: bool) -> Router {
    let set = |name: HeaderName, value: &'static str| {
        SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value))
    };
    let router = router
        .layer(set(header::CONTENT_SECURITY_POLICY, CSP))
        .layer(set(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(set(header::X_FRAME_OPTIONS, "DENY"))
        // `same-origin`, not `no-referrer`: under `no-referrer` browsers send
        // `Origin: null` with our own form posts, which the origin check must refuse;
        // other sites still get no referrer at all.
        .layer(set(header::REFERRER_POLICY, "same-origin"))
        .layer(set(
            HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ))
        // Pages show names, addresses and form tokens: no browser or proxy keeps them.
        // Responses that may be cached (assets, discovery, keys) say so themselves.
        .layer(set(header::CACHE_CONTROL, "no-store"));
    if https {
        router.layer(set(
            header::STRICT_TRANSPORT_SECURITY,
            "max-age=31536000; includeSubDomains",
        ))
    } else {
        router
    }
}
