//! `GET|POST /userinfo` (OIDC Core §5.3).

use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::http::Method;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use serde::Deserialize;
use serde_json::json;

use crate::Provider;

fn unauthorized(error: &str) -> Response {
    let challenge = format!("Bearer error=\"{error}\"");
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, challenge)],
        Json(json!({ "error": error })),
    )
        .into_response()
}

/// A POST body may carry the token instead of the header (RFC 6750 §2.2).
#[derive(Deserialize)]
pub(crate) struct BodyToken {
    access_token: Option<String>,
}

/// Claims about the person behind the bearer access token, sent in the
/// `Authorization` header or, on POST, in the form body; never both.
pub(crate) async fn userinfo(
    State(p): State<Provider>,
    method: Method,
    headers: HeaderMap,
    body: Result<Form<BodyToken>, FormRejection>,
) -> Response {
    let header_token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::to_owned);
    let body_token = match body {
        Ok(Form(b)) if method == Method::POST => b.access_token.filter(|t| !t.is_empty()),
        _ => None,
    };
    let ((Some(token), None) | (None, Some(token))) = (header_token, body_token) else {
        return unauthorized("invalid_request");
    };
    let claims = match p.access_claims(token.trim()).await {
        Ok(Some(c)) => c,
        Ok(None) => return unauthorized("invalid_token"),
        Err(e) => {
            tracing::error!(error = %e, "userinfo failed");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    match claims_for(&p, &claims.sub, &claims.scope).await {
        Ok(Some(body)) => answer(&p, &claims.client_id, body).await,
        Ok(None) => unauthorized("invalid_token"),
        Err(e) => {
            tracing::error!(error = %e, "userinfo failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

async fn claims_for(
    p: &Provider,
    sub: &str,
    scope: &str,
) -> crate::Result<Option<serde_json::Value>> {
    let Some(a) = dge_registry::store::find_account(&p.db, sub).await? else {
        return Ok(None);
    };
    if a.status != dge_registry::AccountStatus::Active {
        return Ok(None);
    }
    let scopes: Vec<&str> = scope.split(' ').collect();
    let mut body = json!({ "sub": a.id });
    if scopes.contains(&"email") {
        body["email"] = json!(a.email);
        body["email_verified"] = json!(a.email_verified);
    }
    if scopes.contains(&"profile") {
        body["given_name"] = json!(a.given_name);
        body["family_name"] = json!(a.family_name);
        body["name"] = json!(a.display_name());
        body["organisation"] = json!({ "id": a.organisation_id, "name": a.organisation_name });
        body["rights"] = json!(dge_authz::rights::rights_of(&p.db, &a.id, p.now()).await?);
    }
    if scopes.contains(&"phone") && !a.phone.is_empty() {
        body["phone_number"] = json!(a.phone);
    }
    Ok(Some(body))
}

/// JSON, or a JWT signed with the client's ID token algorithm for clients that
/// registered for it (OIDC Core §5.3.2).
async fn answer(p: &Provider, client_id: &str, mut body: serde_json::Value) -> Response {
    let client = match crate::clients::find(&p.db, client_id).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "userinfo failed");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let Some(client) = client.filter(|c| c.settings.userinfo_signed) else {
        return ([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response();
    };
    body["iss"] = json!(p.issuer());
    body["aud"] = json!(client.id);
    let alg = &client.settings.id_token_alg;
    let signed = match p.keys.ensure_alg(alg).await {
        Ok(()) => p.keys.sign_as(alg, "JWT", &body),
        Err(e) => Err(e),
    };
    match signed {
        Ok(jwt) => (
            [
                (header::CACHE_CONTROL, "no-store"),
                (header::CONTENT_TYPE, "application/jwt"),
            ],
            jwt,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "signing userinfo failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}
