//! The provider's JSON endpoints.

mod device;
mod discovery;
mod token;
mod userinfo;

use std::net::{IpAddr, SocketAddr};

use axum::Router;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::routing::{get, post};

use crate::Provider;

/// The client's address (behind the trusted proxies), for the rate limits.
pub(crate) struct Peer(pub(crate) String);

impl FromRequestParts<Provider> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, p: &Provider) -> Result<Self, Self::Rejection> {
        Ok(Self(client_address_of(parts, &p.settings.trusted_proxies)))
    }
}

/// The address of the client of a request: the TCP peer, or behind `trusted_proxies`
/// the address they forwarded ([`dge_core::net::client_address`]); `unknown` when the
/// server was not given peers. The pages' extractor uses it too.
#[must_use]
pub fn client_address_of(parts: &Parts, trusted_proxies: &[IpAddr]) -> String {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let forwarded = parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>();
    dge_core::net::client_address(peer, &forwarded, trusted_proxies)
}

/// Routes: discovery, JWKS, token, device authorization, introspection, revocation and userinfo.
pub fn router(provider: Provider) -> Router {
    Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(discovery::configuration),
        )
        .route("/jwks", get(discovery::jwks))
        .route("/token", post(token::token))
        .route("/device_authorization", post(device::authorize))
        .route("/introspect", post(token::introspect))
        .route("/revoke", post(token::revoke))
        .route(
            "/userinfo",
            get(userinfo::userinfo).post(userinfo::userinfo),
        )
        .with_state(provider)
}
