//! Email confirmation. Opening the link shows a button; only the button (a POST)
//! confirms, so mail scanners that fetch links cannot use the token up. A link that
//! cannot confirm says so at once, and a used one that its address is confirmed.

use axum::Form;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::CookieJar;
use dge_registry::ConfirmLink;
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

/// A link already used (the page reloaded, the button pressed twice): the address is
/// confirmed, nothing more to do. Shown only to the holder of a link sent to it.
fn already_confirmed(pages: &Pages) -> Response {
    pages.render.page(
        StatusCode::OK,
        "notice.html",
        json!({
            "title": "Adresse déjà confirmée",
            "message": "Votre adresse électronique est déjà confirmée : il n'y a rien d'autre \
                        à faire. Vous recevrez un courriel dès que votre compte sera actif ; \
                        s'il l'est déjà, vous pouvez vous connecter.",
            "next_url": "/login",
            "next_label": "Aller à la page de connexion",
        }),
    )
}

/// The page for a link that cannot confirm (anymore), or `None` when it can.
async fn unusable(pages: &Pages, token: &str) -> Option<Response> {
    match pages.registry.confirmation_link(token).await {
        Ok(ConfirmLink::Usable) => None,
        Ok(ConfirmLink::AlreadyConfirmed) => Some(already_confirmed(pages)),
        Ok(ConfirmLink::Invalid) => Some(invalid_link(pages)),
        Err(e) => Some(internal(pages, &e)),
    }
}

/// `GET /confirm?token=…`: the button, when the link can still confirm.
pub(crate) async fn show(
    State(pages): State<Pages>,
    jar: CookieJar,
    Query(q): Query<TokenQuery>,
) -> Response {
    let Some(token) = q.token.filter(|t| !t.trim().is_empty() && t.len() <= 128) else {
        return invalid_link(&pages);
    };
    if let Some(page) = unusable(&pages, &token).await {
        return page;
    }
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
        // A member of a trusted organisation is active at once: not told to wait.
        Ok(account) => pages.render.page(
            StatusCode::OK,
            "confirmed.html",
            json!({ "active": account.status == dge_registry::AccountStatus::Active }),
        ),
        // Used meanwhile (a second press, a reload) or never usable: say which.
        Err(dge_registry::Error::BadToken) => unusable(&pages, &form.token)
            .await
            .unwrap_or_else(|| invalid_link(&pages)),
        Err(e) => internal(&pages, &e),
    }
}
