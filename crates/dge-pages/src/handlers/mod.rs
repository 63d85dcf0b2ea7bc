//! One module per page.

pub mod account;
pub mod assets;
pub mod authorize;
pub mod broker;
pub mod confirm;
pub mod consent;
pub mod device;
pub mod login;
pub mod logout;
pub mod mfa;
pub mod password;
pub mod signup;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};
use dge_oidc::session::SESSION_COOKIE;

use crate::Pages;

/// The page shown when something failed on our side; the cause is logged once. A
/// store that did not answer in time (Redis silent, no database connection) is a
/// passing outage: 503 with `Retry-After`. It does not say that nothing was done: a
/// call that timed out may still have run, or a step before it committed.
pub(crate) fn internal(pages: &Pages, err: &(dyn std::error::Error + 'static)) -> Response {
    tracing::error!(error = %dge_core::ErrorChain(err), "page failed");
    if dge_store::is_unreachable(err) {
        return unavailable(
            pages,
            "Service momentanément indisponible",
            "Le service ne peut pas répondre pour le moment. Réessayez dans quelques secondes.",
            "5",
        );
    }
    pages.render.error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Le service rencontre un problème",
        "Une erreur inattendue s'est produite. Réessayez dans quelques instants.",
        None,
    )
}

/// A French 503 page with `Retry-After: retry_secs`.
fn unavailable(pages: &Pages, title: &str, message: &str, retry_secs: &'static str) -> Response {
    let mut page = pages
        .render
        .error(StatusCode::SERVICE_UNAVAILABLE, title, message, None);
    page.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static(retry_secs));
    page
}

/// Refused forms: the CSRF token is missing or wrong.
pub(crate) fn csrf_refused(pages: &Pages) -> Response {
    pages.render.error(
        StatusCode::FORBIDDEN,
        "Formulaire expiré",
        "Ce formulaire n'est plus valide (il a peut-être été ouvert dans un autre onglet). \
         Rechargez la page et recommencez.",
        None,
    )
}

/// A pending authorization request this browser did not start (see
/// [`crate::binding`]): nothing is done with it.
pub(crate) fn foreign_request(pages: &Pages) -> Response {
    pages.render.error(
        StatusCode::FORBIDDEN,
        "Demande de connexion ouverte ailleurs",
        "Cette demande de connexion n'a pas été ouverte dans ce navigateur : par sécurité, \
         elle ne peut pas y être poursuivie. Retournez sur le portail ou sur le service, puis \
         cliquez à nouveau sur « Se connecter ».",
        None,
    )
}

/// A pending authorization request that is gone: finished (a page opened again with
/// the back button) or expired.
pub(crate) fn expired_request(pages: &Pages) -> Response {
    pages.render.error(
        StatusCode::BAD_REQUEST,
        "Demande de connexion expirée",
        "Cette demande de connexion est terminée ou a expiré. Retournez sur le service et \
         cliquez à nouveau sur « Se connecter ».",
        None,
    )
}

/// A page that only a service's login request opens, reached without one.
pub(crate) fn no_request(pages: &Pages) -> Response {
    pages.render.error(
        StatusCode::BAD_REQUEST,
        "Aucune demande de connexion",
        "Cette page s'ouvre quand un service du portail vous demande de vous connecter. \
         Retournez sur le service et cliquez sur « Se connecter ».",
        None,
    )
}

/// Too many password checks at once: refuse fast with `Retry-After`.
pub(crate) fn busy(pages: &Pages) -> Response {
    unavailable(
        pages,
        "Service très sollicité",
        "Le service est très sollicité en ce moment. Réessayez dans quelques secondes.",
        "2",
    )
}

/// A 303 to `url`.
pub(crate) fn see_other(url: &str) -> Response {
    Redirect::to(url).into_response()
}

/// The session cookie for `value`.
pub(crate) fn session_cookie(value: String, secure: bool) -> Cookie<'static> {
    Cookie::build((SESSION_COOKIE, value))
        .http_only(true)
        .secure(secure)
        .same_site(SameSite::Lax)
        .path("/")
        .build()
}

/// The account of the live session in `jar`, if any.
pub(crate) async fn current_session(
    pages: &Pages,
    jar: &CookieJar,
) -> dge_oidc::Result<Option<(String, i64)>> {
    match jar.get(SESSION_COOKIE) {
        Some(c) => pages.provider.session(c.value()).await,
        None => Ok(None),
    }
}
