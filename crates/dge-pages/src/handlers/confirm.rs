//! Email confirmation. Opening the link shows a button; only the button (a POST)
//! confirms, so mail scanners that fetch links cannot use the token up.

use axum::Form;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::CookieJar;
use serde::Deserialize;
use serde_json::json;

use super::{csrf_refused, internal};
use crate::{Pages, csrf};

/// `?token=` of a confirmation link. Not `Debug`: the token is a secret.
#[derive(Deserialize)]
pub(crate) struct TokenQuery {
    token: Option<String>,
}

/// The confirm button's form.
#[derive(Deserialize)]
pub(crate) struct ConfirmForm {
    csrf_token: Option<String>,
    #[serde(default)]
    token: String,
}

fn invalid_link(pages: &Pages) -> Response {
    // Signing up again would find the login and address still held by the waiting
    // account: a fresh link is what the person needs.
    pages.render.error_with_action(
        StatusCode::BAD_REQUEST,
        "Lien de confirmation invalide",
        "Ce lien de confirmation n'est pas valide ou a expiré. Si vous avez reçu plusieurs \
         courriels, utilisez le lien du dernier ; sinon, demandez un nouveau lien avec votre \
         adresse électronique.",
        "/signup/resend",
        "Renvoyer le courriel de confirmation",
    )
}

/// `GET /confirm?token=…`.
pub(crate) async fn show(
    State(pages): State<Pages>,
    jar: CookieJar,
    Query(q): Query<TokenQuery>,
) -> Response {
    let Some(token) = q.token.filter(|t| !t.trim().is_empty() && t.len() <= 128) else {
        return invalid_link(&pages);
    };
    let (jar, csrf_token) = csrf::token(jar, pages.secure_cookies);
    (
        jar,
        pages.render.page(
            StatusCode::OK,
            "confirm.html",
            json!({ "csrf_token": csrf_token, "token": token }),
        ),
    )
        .into_response()
}

/// `POST /confirm`.
pub(crate) async fn submit(
    State(pages): State<Pages>,
    jar: CookieJar,
    Form(form): Form<ConfirmForm>,
) -> Response {
    if !csrf::verify(&jar, form.csrf_token.as_deref()) {
        return csrf_refused(&pages);
    }
    match pages.registry.confirm_email(&form.token).await {
        Ok(_) => pages
            .render
            .page(StatusCode::OK, "confirmed.html", json!({})),
        Err(dge_registry::Error::BadToken) => invalid_link(&pages),
        Err(e) => internal(&pages, &e),
    }
}
