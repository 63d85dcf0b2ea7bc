//! `GET /authorize`: where portal modules send people to log in.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum_extra::extract::CookieJar;
use dge_oidc::{AuthorizeOutcome, AuthorizeParams};

use dge_oidc::session::SESSION_COOKIE;

use super::{internal, see_other};
use crate::Pages;

/// Checks the request, then sends the person to the client (a code or an error) or
/// to the login page.
pub(crate) async fn authorize(
    State(pages): State<Pages>,
    jar: CookieJar,
    query: Result<Query<AuthorizeParams>, QueryRejection>,
) -> Response {
    let Ok(Query(params)) = query else {
        return pages.render.error(
            StatusCode::BAD_REQUEST,
            "Demande de connexion invalide",
            "La demande de connexion envoyée par le service est mal formée.",
            None,
        );
    };
    let cookie = jar.get(SESSION_COOKIE).map(|c| c.value().to_owned());
    match pages.provider.authorize(params, cookie.as_deref()).await {
        Ok(AuthorizeOutcome::ErrorPage(message)) => pages.render.error(
            StatusCode::BAD_REQUEST,
            "Demande de connexion refusée",
            &message,
            None,
        ),
        Ok(AuthorizeOutcome::Redirect(url)) => see_other(&url),
        Ok(AuthorizeOutcome::Consent { req }) => see_other(&format!("/consent?req={req}")),
        Ok(AuthorizeOutcome::Login {
            req,
            idp_hint: Some(idp),
            ..
        }) => see_other(&format!(
            "/broker/{}/start?req={req}",
            url::form_urlencoded::byte_serialize(idp.as_bytes()).collect::<String>()
        )),
        Ok(AuthorizeOutcome::Login { req, .. }) => see_other(&format!("/login?req={req}")),
        Err(e) => internal(&pages, &e),
    }
}
