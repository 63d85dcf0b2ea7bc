//! `POST /device_authorization` (RFC 8628 §3.1): a tool asks for a device code and
//! a user code. Public clients send their `client_id`; confidential ones authenticate
//! as at the token endpoint.

use axum::Form;
use axum::Json;
use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::Peer;
use super::token::{NO_STORE, bad_body, basic, oauth_error, server_error};
use crate::Provider;
use crate::token::TokenForm;

/// Answers a device authorization request; OAuth errors as RFC 6749 §5.2 JSON.
pub(crate) async fn authorize(
    State(p): State<Provider>,
    Peer(address): Peer,
    headers: HeaderMap,
    form: Result<Form<TokenForm>, FormRejection>,
) -> Response {
    let form = match form {
        Ok(Form(form)) => form,
        Err(rejection) => return bad_body(&rejection),
    };
    let client = match p
        .authenticate_client(&form, basic(&headers), &address)
        .await
    {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return oauth_error(e),
        Err(e) => return server_error(&e),
    };
    match p.device_authorize(&client, form.scope.as_deref()).await {
        Ok(Ok(answer)) => (StatusCode::OK, NO_STORE, Json(answer)).into_response(),
        Ok(Err(e)) => oauth_error(e),
        Err(e) => server_error(&e),
    }
}
