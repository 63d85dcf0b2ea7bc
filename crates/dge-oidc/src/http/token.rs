//! `POST /token`.

use axum::Form;
use axum::Json;
use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::Provider;
use crate::token::{TokenForm, basic_credentials};

/// Exchanges a code for tokens; OAuth errors as RFC 6749 §5.2 JSON.
pub(crate) async fn token(
    State(p): State<Provider>,
    headers: HeaderMap,
    form: Result<Form<TokenForm>, FormRejection>,
) -> Response {
    let no_store = [
        (header::CACHE_CONTROL, "no-store"),
        (header::PRAGMA, "no-cache"),
    ];
    let Ok(Form(form)) = form else {
        let body = crate::token::OAuthError {
            error: "invalid_request",
            error_description: "expected an application/x-www-form-urlencoded body",
        };
        return (StatusCode::BAD_REQUEST, no_store, Json(body)).into_response();
    };
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(basic_credentials);
    match p.exchange(&form, basic).await {
        Ok(Ok(tokens)) => (StatusCode::OK, no_store, Json(tokens)).into_response(),
        Ok(Err(e)) if e.error == "invalid_client" => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"dge-identity\"")],
            no_store,
            Json(e),
        )
            .into_response(),
        Ok(Err(e)) => (StatusCode::BAD_REQUEST, no_store, Json(e)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "token endpoint failed");
            let body = crate::token::OAuthError {
                error: "server_error",
                error_description: "internal error",
            };
            (StatusCode::INTERNAL_SERVER_ERROR, no_store, Json(body)).into_response()
        }
    }
}
