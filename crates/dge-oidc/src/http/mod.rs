//! The provider's JSON endpoints.

mod device;
mod discovery;
mod token;
mod userinfo;

use axum::Router;
use axum::routing::{get, post};

use crate::Provider;

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
