//! `GET|POST /device`: the person types the user code a tool without a browser
//! (`dgectl login`) showed them, sees which client asks for what, and approves or
//! refuses (RFC 8628 §3.3). A signed-in session is needed: without one the person
//! logs in first and comes back here (see [`crate::next`]).

use axum::Form;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::CookieJar;
use dge_oidc::device::{Lookup, normalise_user_code};
use serde::Deserialize;
use serde_json::json;

use super::consent::describe;
use super::{csrf_refused, current_session, internal};
use crate::{Pages, csrf, next};

/// `?user_code=` of the verification URI.
#[derive(Debug, Deserialize, Default)]
pub(crate) struct DeviceQuery {
    user_code: Option<String>,
}

/// The code form and the decision form.
#[derive(Debug, Deserialize)]
pub(crate) struct DeviceForm {
    csrf_token: Option<String>,
    #[serde(default)]
    user_code: String,
    #[serde(default)]
    decision: String,
}

/// To the login page, remembering to come back to this device page.
fn login_first(pages: &Pages, jar: CookieJar, user_code: Option<&str>) -> Response {
    next::login_first(pages, jar, &next::device_path(user_code))
}

fn code_page(
    pages: &Pages,
    jar: CookieJar,
    status: StatusCode,
    code: &str,
    error: Option<&str>,
) -> Response {
    let (jar, token) = csrf::token(jar, pages.secure_cookies);
    let context = json!({ "csrf_token": token, "user_code": code, "error": error });
    (jar, pages.render.page(status, "device.html", context)).into_response()
}

const UNKNOWN_CODE: &str = "Ce code est inconnu, a expiré ou a déjà servi. Vérifiez-le, ou \
     relancez la commande sur votre terminal pour en obtenir un nouveau.";
const TOO_MANY: &str = "Trop de codes erronés ont été saisis. Par sécurité, attendez un quart \
     d'heure avant de réessayer.";

/// `GET /device`: the form to type the code, filled in from `?user_code=`.
pub(crate) async fn show(
    State(pages): State<Pages>,
    jar: CookieJar,
    Query(q): Query<DeviceQuery>,
) -> Response {
    match current_session(&pages, &jar).await {
        Ok(Some(_)) => {}
        Ok(None) => return login_first(&pages, jar, q.user_code.as_deref()),
        Err(e) => return internal(&pages, &e),
    }
    let code = q
        .user_code
        .as_deref()
        .and_then(normalise_user_code)
        .unwrap_or_default();
    code_page(&pages, jar, StatusCode::OK, &code, None)
}

/// `POST /device`: without `decision`, shows what the code asks for; with
/// `decision=allow|deny`, records the answer.
pub(crate) async fn submit(
    State(pages): State<Pages>,
    jar: CookieJar,
    Form(form): Form<DeviceForm>,
) -> Response {
    if !csrf::verify(&jar, form.csrf_token.as_deref()) {
        return csrf_refused(&pages);
    }
    let (account_id, auth_time) = match current_session(&pages, &jar).await {
        Ok(Some(s)) => s,
        Ok(None) => return login_first(&pages, jar, Some(&form.user_code)),
        Err(e) => return internal(&pages, &e),
    };
    let session_cookie = jar
        .get(dge_oidc::session::SESSION_COOKIE)
        .map(|c| c.value().to_owned())
        .unwrap_or_default();
    let typed = form.user_code.chars().take(32).collect::<String>();
    if matches!(form.decision.as_str(), "allow" | "deny") {
        return decide(
            &pages,
            jar,
            &typed,
            &session_cookie,
            &account_id,
            auth_time,
            form.decision == "allow",
        )
        .await;
    }
    let request = match pages.provider.device_lookup(&typed, &account_id).await {
        Ok(Lookup::Found(r)) => r,
        Ok(Lookup::Unknown) => {
            return code_page(
                &pages,
                jar,
                StatusCode::BAD_REQUEST,
                &typed,
                Some(UNKNOWN_CODE),
            );
        }
        Ok(Lookup::Throttled) => {
            return code_page(
                &pages,
                jar,
                StatusCode::TOO_MANY_REQUESTS,
                "",
                Some(TOO_MANY),
            );
        }
        Err(e) => return internal(&pages, &e),
    };
    let (jar, token) = csrf::token(jar, pages.secure_cookies);
    let context = json!({
        "csrf_token": token,
        "user_code": request.user_code,
        "client_name": request.client_name,
        "client_id": request.client_id,
        "scopes": request.scopes.iter().map(|s| describe(s)).collect::<Vec<_>>(),
    });
    (
        jar,
        pages
            .render
            .page(StatusCode::OK, "device_confirm.html", context),
    )
        .into_response()
}

async fn decide(
    pages: &Pages,
    jar: CookieJar,
    typed: &str,
    session_cookie: &str,
    account_id: &str,
    auth_time: i64,
    allow: bool,
) -> Response {
    match pages
        .provider
        .device_decide(typed, session_cookie, account_id, auth_time, allow)
        .await
    {
        Ok(Some(request)) => {
            let (title, message) = if allow {
                (
                    "Appareil autorisé",
                    format!(
                        "{} est autorisé à agir en votre nom. Vous pouvez fermer cette page et \
                         revenir à votre terminal.",
                        request.client_name
                    ),
                )
            } else {
                (
                    "Demande refusée",
                    format!(
                        "La demande de {} a été refusée : il n'aura pas accès à votre compte.",
                        request.client_name
                    ),
                )
            };
            let context = json!({ "title": title, "message": message });
            (
                jar,
                pages.render.page(StatusCode::OK, "notice.html", context),
            )
                .into_response()
        }
        Ok(None) => code_page(
            pages,
            jar,
            StatusCode::BAD_REQUEST,
            typed,
            Some(UNKNOWN_CODE),
        ),
        Err(e) => internal(pages, &e),
    }
}
