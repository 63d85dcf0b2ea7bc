//! The upstream-provider buttons: `/broker/{provider}/start` and its callback.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum_extra::extract::CookieJar;
use dge_broker::BrokerError;
use serde::Deserialize;

use super::login::{ReqQuery, finish_login};
use super::{internal, see_other, session_cookie};
use crate::Pages;

/// The upstream's answer. Not `Debug`: `code` and `state` are secrets.
#[derive(Deserialize)]
pub(crate) struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

fn failure(pages: &Pages, err: &BrokerError) -> Response {
    let (status, message) = match err {
        BrokerError::UnknownProvider => {
            (StatusCode::NOT_FOUND, "Ce mode de connexion n'existe pas.")
        }
        BrokerError::NotConfigured => (
            StatusCode::SERVICE_UNAVAILABLE,
            "Ce mode de connexion n'est pas encore disponible sur ce service. Utilisez votre compte \
             DataGrandEst, ou créez-en un.",
        ),
        BrokerError::EmailInUse => (
            StatusCode::CONFLICT,
            "Cette adresse électronique appartient déjà à un compte DataGrandEst. Connectez-vous avec \
             votre login et votre mot de passe ; en cas d'oubli, utilisez « Mot de passe oublié ? ».",
        ),
        BrokerError::Refused(_) => (
            StatusCode::FORBIDDEN,
            "La connexion a été annulée ou refusée par le fournisseur d'identité.",
        ),
        BrokerError::BadState => (
            StatusCode::BAD_REQUEST,
            "Cette connexion a expiré ou a déjà été utilisée. Recommencez depuis la page de connexion.",
        ),
        _ => (
            StatusCode::BAD_GATEWAY,
            "Le fournisseur d'identité n'a pas répondu correctement. Réessayez plus tard ou utilisez \
             votre compte DataGrandEst.",
        ),
    };
    tracing::warn!(error = %err, "federated login failed");
    pages
        .render
        .error(status, "Connexion impossible", message, Some("/login"))
}

/// `GET /broker/{provider}/start?req=…`.
pub(crate) async fn start(
    State(pages): State<Pages>,
    Path(provider): Path<String>,
    Query(q): Query<ReqQuery>,
) -> Response {
    match pages
        .broker
        .start(&provider, q.req.as_deref().filter(|r| !r.is_empty()))
        .await
    {
        Ok(url) => see_other(&url),
        Err(BrokerError::Store(e)) => internal(&pages, &e),
        Err(e) => failure(&pages, &e),
    }
}

/// `GET /broker/{provider}/callback`.
pub(crate) async fn callback(
    State(pages): State<Pages>,
    jar: CookieJar,
    Path(provider): Path<String>,
    Query(q): Query<CallbackQuery>,
) -> Response {
    if let Some(error) = q.error {
        return failure(
            &pages,
            &BrokerError::Refused(error.chars().take(64).collect()),
        );
    }
    let (Some(code), Some(state)) = (q.code, q.state) else {
        return failure(&pages, &BrokerError::BadState);
    };
    let login = match pages.broker.callback(&provider, &state, &code).await {
        Ok(l) => l,
        Err(BrokerError::Store(e)) => return internal(&pages, &e),
        Err(e) => return failure(&pages, &e),
    };
    let now = pages.provider.now();
    let session = match pages.provider.open_session(&login.account_id, now).await {
        Ok(s) => s,
        Err(e) => return internal(&pages, &e),
    };
    let jar = jar.add(session_cookie(session, pages.secure_cookies));
    finish_login(
        &pages,
        jar,
        login.auth_request.as_deref().unwrap_or(""),
        &login.account_id,
        "",
        now,
    )
    .await
}
