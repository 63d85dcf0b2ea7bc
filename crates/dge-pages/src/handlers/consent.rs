//! `GET|POST /consent`: a client that is not first-party asks the person's consent.

use axum::Form;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::CookieJar;
use dge_oidc::session::SESSION_COOKIE;
use serde::Deserialize;
use serde_json::json;

use super::login::ReqQuery;
use super::{
    csrf_refused, expired_request as expired, foreign_request, internal, no_request, see_other,
};
use crate::{Pages, binding, csrf};

/// The consent form.
#[derive(Debug, Deserialize)]
pub(crate) struct ConsentForm {
    csrf_token: Option<String>,
    #[serde(default)]
    req: String,
    #[serde(default)]
    decision: String,
}

/// What each scope gives, in French.
pub(crate) fn describe(scope: &str) -> String {
    match scope {
        "openid" => "votre identifiant sur le portail".into(),
        "profile" => "vos nom et prénom, votre organisation et vos droits".into(),
        "email" => "votre adresse électronique".into(),
        "phone" => "votre numéro de téléphone".into(),
        // A refresh token comes with every login and ends with its session; with
        // offline_access it outlives the session's hours, not a logout (see
        // docs/oidc-conformance.md).
        "offline_access" => {
            "un accès renouvelé sans vous redemander de vous connecter, même après la fin \
             de votre session (30 jours au plus ; une déconnexion ou un changement de mot \
             de passe y met fin)"
                .into()
        }
        other => format!("l'accès « {other} »"),
    }
}

/// `GET /consent?req=`: the scopes asked, with Autoriser and Refuser.
pub(crate) async fn show(
    State(pages): State<Pages>,
    jar: CookieJar,
    Query(q): Query<ReqQuery>,
) -> Response {
    let req = q.req.unwrap_or_default();
    if req.is_empty() {
        return no_request(&pages);
    }
    if !binding::is_bound(&jar, &req) {
        return foreign_request(&pages);
    }
    if jar.get(SESSION_COOKIE).is_none() {
        return see_other(&format!("/login?req={req}"));
    }
    let screen = match pages.provider.consent_screen(&req).await {
        Ok(Some(s)) => s,
        Ok(None) => return expired(&pages),
        Err(e) => return internal(&pages, &e),
    };
    let (jar, token) = csrf::token(jar, pages.secure_cookies);
    let context = json!({
        "csrf_token": token,
        "req": req,
        "client_name": screen.client_name,
        "scopes": screen.scopes.iter().map(|s| describe(s)).collect::<Vec<_>>(),
    });
    (
        jar,
        pages.render.page(StatusCode::OK, "consent.html", context),
    )
        .into_response()
}

/// `POST /consent`: the answer; back to the client with a code or `access_denied`.
pub(crate) async fn submit(
    State(pages): State<Pages>,
    jar: CookieJar,
    Form(form): Form<ConsentForm>,
) -> Response {
    if !csrf::verify(&jar, form.csrf_token.as_deref()) {
        return csrf_refused(&pages);
    }
    if !binding::is_bound(&jar, &form.req) {
        return foreign_request(&pages);
    }
    let Some(cookie) = jar.get(SESSION_COOKIE).map(|c| c.value().to_owned()) else {
        return see_other(&format!("/login?req={}", form.req));
    };
    let granted = form.decision == "allow";
    match pages
        .provider
        .answer_consent(&form.req, &cookie, granted)
        .await
    {
        Ok(Some(url)) => see_other(&url),
        Ok(None) => expired(&pages),
        Err(e) => internal(&pages, &e),
    }
}
