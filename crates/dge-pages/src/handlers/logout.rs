//! `GET|POST /logout`: RP-initiated logout, the `end_session_endpoint`.

use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::Cookie;
use dge_oidc::logout::{LogoutOutcome, LogoutParams};
use dge_oidc::session::SESSION_COOKIE;

use super::{internal, see_other};
use crate::Pages;

/// Parameters come in the query (GET) or the form body (POST).
pub(crate) async fn logout(
    State(pages): State<Pages>,
    method: Method,
    jar: CookieJar,
    query: Result<Query<LogoutParams>, QueryRejection>,
    form: Result<Form<LogoutParams>, FormRejection>,
) -> Response {
    let params = if method == Method::POST {
        form.map(|f| f.0).ok()
    } else {
        query.map(|q| q.0).ok()
    };
    let Some(params) = params else {
        return pages.render.error(
            StatusCode::BAD_REQUEST,
            "Demande de déconnexion invalide",
            "La demande de déconnexion envoyée par le service est mal formée.",
            None,
        );
    };
    let cookie = jar.get(SESSION_COOKIE).map(|c| c.value().to_owned());
    match pages.provider.logout(params, cookie.as_deref()).await {
        Ok(LogoutOutcome::Refused(message)) => pages.render.error(
            StatusCode::BAD_REQUEST,
            "Déconnexion refusée",
            &message,
            None,
        ),
        Ok(LogoutOutcome::Redirect(url)) => {
            (jar.remove(removal()), see_other(&url)).into_response()
        }
        Ok(LogoutOutcome::LoggedOut) => {
            let page = pages.render.error(
                StatusCode::OK,
                "Vous êtes déconnecté(e)",
                "Votre session est terminée. Retournez sur le service pour vous connecter à nouveau.",
                Some("/login"),
            );
            (jar.remove(removal()), page).into_response()
        }
        Err(e) => internal(&pages, &e),
    }
}

/// The removal of the session cookie (same name and path as when it was set).
fn removal() -> Cookie<'static> {
    Cookie::build((SESSION_COOKIE, "")).path("/").build()
}
