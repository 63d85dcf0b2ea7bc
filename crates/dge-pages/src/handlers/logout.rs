//! `GET|POST /logout`: RP-initiated logout, the `end_session_endpoint`.

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::Cookie;
use dge_oidc::logout::{LogoutOutcome, LogoutParams};
use dge_oidc::session::SESSION_COOKIE;

use serde::Deserialize;
use serde_json::json;

use super::{csrf_refused, current_session, internal, see_other};
use crate::{Pages, csrf};

/// `/logout` parameters, plus the confirmation form's own fields.
#[derive(Debug, Deserialize)]
pub(crate) struct LogoutForm {
    #[serde(flatten)]
    params: LogoutParams,
    confirm: Option<String>,
    csrf_token: Option<String>,
}

/// Parameters come in the query (GET) or the form body (POST).
pub(crate) async fn logout(
    State(pages): State<Pages>,
    method: Method,
    jar: CookieJar,
    form: Result<Form<LogoutForm>, FormRejection>,
) -> Response {
    // axum's Form reads the query string of a GET and the body of a POST.
    let Ok(Form(form)) = form else {
        return pages.render.error(
            StatusCode::BAD_REQUEST,
            "Demande de déconnexion invalide",
            "La demande de déconnexion envoyée par le service est mal formée.",
            None,
        );
    };
    let mut confirmed = method == Method::POST && form.confirm.is_some();
    if confirmed && !csrf::verify(&jar, form.csrf_token.as_deref()) {
        // A logout form sent again (twice, or after the back button) finds no session:
        // its token was bound to the one it ended. It changes nothing then, so it gets
        // the logged-out answer instead of « Formulaire expiré »; with a live session,
        // a stale or forged form is refused.
        match current_session(&pages, &jar).await {
            Ok(None) => confirmed = false,
            Ok(Some(_)) => return csrf_refused(&pages),
            Err(e) => return internal(&pages, &e),
        }
    }
    let cookie = jar.get(SESSION_COOKIE).map(|c| c.value().to_owned());
    let params = form.params;
    match pages
        .provider
        .logout(params.clone(), cookie.as_deref(), confirmed)
        .await
    {
        Ok(LogoutOutcome::Refused(message)) => pages.render.error(
            StatusCode::BAD_REQUEST,
            "Déconnexion refusée",
            &message,
            None,
        ),
        Ok(LogoutOutcome::Confirm) => {
            let (jar, token) = csrf::token(jar, pages.secure_cookies);
            // Typed by the person, or the account pages' button: no service asked.
            let requested_by_service = [
                &params.client_id,
                &params.id_token_hint,
                &params.post_logout_redirect_uri,
            ]
            .iter()
            .any(|p| p.as_deref().is_some_and(|v| !v.is_empty()));
            let context = json!({
                "csrf_token": token,
                "requested_by_service": requested_by_service,
                "client_id": params.client_id,
                "id_token_hint": params.id_token_hint,
                "post_logout_redirect_uri": params.post_logout_redirect_uri,
                "state": params.state,
            });
            let page = pages
                .render
                .page(StatusCode::OK, "logout_confirm.html", context);
            (jar, page).into_response()
        }
        Ok(LogoutOutcome::Redirect(url)) => {
            if let Some(upstream) = upstream_logout(&pages, cookie.as_deref(), &url).await {
                return (jar.remove(removal()), see_other(&upstream)).into_response();
            }
            (jar.remove(removal()), see_other(&url)).into_response()
        }
        Ok(LogoutOutcome::LoggedOut) => {
            if let Some(upstream) = upstream_logout(&pages, cookie.as_deref(), "").await {
                return (jar.remove(removal()), see_other(&upstream)).into_response();
            }
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

/// When the closed session came through an upstream provider, where to end it there
/// too; the upstream sends the browser back to `return_to` (or to the logged-out page)
/// through `/broker/{name}/logged-out`.
async fn upstream_logout(pages: &Pages, session: Option<&str>, return_to: &str) -> Option<String> {
    let session = session?;
    match pages.broker.end_session_url(session, return_to).await {
        Ok(url) => url,
        Err(e) => {
            // Logged out here; the upstream session may outlive this one.
            tracing::warn!(error = %dge_core::ErrorChain(&e), "upstream logout skipped");
            None
        }
    }
}

/// The removal of the session cookie (same name and path as when it was set).
fn removal() -> Cookie<'static> {
    Cookie::build((SESSION_COOKIE, "")).path("/").build()
}
