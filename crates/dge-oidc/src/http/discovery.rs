//! Discovery (OIDC Discovery 1.0 §3) and the JWKS.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::json;

use crate::Provider;

/// `GET /.well-known/openid-configuration`.
pub(crate) async fn configuration(State(p): State<Provider>) -> impl IntoResponse {
    let issuer = p.issuer();
    // TODO: built by hand; issue 5 moves it to openidconnect's ProviderMetadata
    // types once the endpoints it lists (revocation, introspection, logout) exist.
    let body = json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "userinfo_endpoint": format!("{issuer}/userinfo"),
        "jwks_uri": format!("{issuer}/jwks"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": ["openid", "profile", "email", "phone"],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "email",
            "email_verified", "given_name", "family_name", "name", "phone_number"],
        "prompt_values_supported": ["none", "login"],
        "authorization_response_iss_parameter_supported": true,
        "ui_locales_supported": ["fr"],
    });
    ([(header::CACHE_CONTROL, "public, max-age=300")], Json(body))
}

/// `GET /jwks`.
pub(crate) async fn jwks(State(p): State<Provider>) -> impl IntoResponse {
    (
        [(header::CACHE_CONTROL, "public, max-age=300")],
        Json(p.keys.jwks()),
    )
}
