//! `POST /token`, `POST /introspect` (RFC 7662) and `POST /revoke` (RFC 7009).

use axum::Form;
use axum::Json;
use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::Peer;
use crate::Provider;
use crate::clients::Client;
use crate::token::{OAuthError, TokenForm, basic_credentials, oauth};

pub(super) const NO_STORE: [(header::HeaderName, &str); 2] = [
    (header::CACHE_CONTROL, "no-store"),
    (header::PRAGMA, "no-cache"),
];

/// An OAuth error as RFC 6749 §5.2 JSON: 401 with a challenge for `invalid_client`;
/// 429 with `Retry-After` when a rate limit refused the request.
pub(super) fn oauth_error(e: OAuthError) -> Response {
    if let Some(secs) = e.retry_after {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, secs.to_string())],
            NO_STORE,
            Json(e),
        )
            .into_response();
    }
    if e.error == "invalid_client" {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"dge-identity\"")],
            NO_STORE,
            Json(e),
        )
            .into_response();
    }
    (StatusCode::BAD_REQUEST, NO_STORE, Json(e)).into_response()
}

pub(super) fn server_error(e: &crate::Error) -> Response {
    tracing::error!(error = %dge_core::ErrorChain(e), "token endpoint failed");
    // Not 503 for a store that did not answer: clients retry those by themselves,
    // and a code or refresh token may already be spent by the call that timed out.
    let body = oauth("server_error", "internal error");
    (StatusCode::INTERNAL_SERVER_ERROR, NO_STORE, Json(body)).into_response()
}

pub(super) fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(basic_credentials)
}

/// The answer to a body that is not a form we can read, saying which: the wrong
/// type, a parameter given twice, or a malformed form.
pub(super) fn bad_body(rejection: &FormRejection) -> Response {
    let why = match rejection {
        FormRejection::FailedToDeserializeForm(e) => Some(e.body_text()),
        FormRejection::FailedToDeserializeFormBody(e) => Some(e.body_text()),
        _ => None,
    };
    let description = match why {
        Some(why) if why.contains("duplicate field") => {
            "a parameter is given more than once (RFC 6749 section 3.2)"
        }
        Some(_) => "the form could not be read: a parameter is malformed",
        None => "expected an application/x-www-form-urlencoded body",
    };
    oauth_error(oauth("invalid_request", description))
}

/// Answers a token request; OAuth errors as RFC 6749 §5.2 JSON.
pub(crate) async fn token(
    State(p): State<Provider>,
    Peer(address): Peer,
    headers: HeaderMap,
    form: Result<Form<TokenForm>, FormRejection>,
) -> Response {
    let form = match form {
        Ok(Form(form)) => form,
        Err(rejection) => return bad_body(&rejection),
    };
    match p.exchange(&form, basic(&headers), &address).await {
        Ok(Ok(tokens)) => (StatusCode::OK, NO_STORE, Json(tokens)).into_response(),
        Ok(Err(e)) => oauth_error(e),
        Err(e) => server_error(&e),
    }
}

/// The client of an introspection or revocation request, and its token.
async fn client_and_token(
    p: &Provider,
    address: &str,
    headers: &HeaderMap,
    form: Result<Form<TokenForm>, FormRejection>,
) -> Result<(Client, String), Response> {
    let form = match form {
        Ok(Form(form)) => form,
        Err(rejection) => return Err(bad_body(&rejection)),
    };
    let client = match p.authenticate_client(&form, basic(headers), address).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return Err(oauth_error(e)),
        Err(e) => return Err(server_error(&e)),
    };
    match form.token.filter(|t| !t.trim().is_empty()) {
        Some(token) => Ok((client, token)),
        None => Err(oauth_error(oauth("invalid_request", "token is required"))),
    }
}

/// `POST /introspect`: whether a token is active, for the client it was issued to
/// only; any other client gets `{"active": false}`.
pub(crate) async fn introspect(
    State(p): State<Provider>,
    Peer(address): Peer,
    headers: HeaderMap,
    form: Result<Form<TokenForm>, FormRejection>,
) -> Response {
    let (client, token) = match client_and_token(&p, &address, &headers, form).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let info = match p.inspect(&token).await {
        Ok(i) => i,
        Err(e) => return server_error(&e),
    };
    // The audience rule of `Caller::audience_includes`: a client, service or not,
    // sees only its own tokens (RFC 7662 §2.2).
    let body = match info.filter(|i| i.client_id == client.id) {
        Some(i) => json!({
            "active": true,
            "scope": i.scope,
            "client_id": i.client_id,
            "sub": i.sub,
            "exp": i.exp,
            "iat": i.iat,
            "iss": p.issuer(),
            "token_type": match i.kind {
                dge_authz::grants::TokenKind::Access => "Bearer",
                dge_authz::grants::TokenKind::Refresh => "refresh_token",
            },
        }),
        None => json!({ "active": false }),
    };
    (StatusCode::OK, NO_STORE, Json(body)).into_response()
}

/// `POST /revoke`: revokes a token of the calling client. Unknown or inactive
/// tokens answer 200 (RFC 7009 §2.2); another client's token is refused.
pub(crate) async fn revoke(
    State(p): State<Provider>,
    Peer(address): Peer,
    headers: HeaderMap,
    form: Result<Form<TokenForm>, FormRejection>,
) -> Response {
    let (client, token) = match client_and_token(&p, &address, &headers, form).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    match p.revoke(&client, &token).await {
        Ok(true) => (StatusCode::OK, NO_STORE).into_response(),
        Ok(false) => oauth_error(oauth(
            "unauthorized_client",
            "this token was issued to another client",
        )),
        Err(e) => server_error(&e),
    }
}
