//! "Mot de passe oublié ?": the request form, then the page behind the emailed link.
//!
//! The request answers the same page whatever the address; the link's page only
//! shows a form (a GET never uses the link up), and only its POST changes the password.

use std::collections::BTreeMap;

use axum::Form;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::CookieJar;
use dge_core::{Secret, Violations};
use dge_registry::domain::password::{PasswordContext, rules_for_page};
use dge_registry::reset::{RESET_ANSWER, password_context};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{busy, csrf_refused, internal};
use crate::{Pages, csrf};

/// The request form.
#[derive(Deserialize)]
pub(crate) struct ForgotForm {
    csrf_token: Option<String>,
    #[serde(default)]
    email: String,
}

/// `?token=` of a reset link. Not `Debug`: the token is a secret.
#[derive(Deserialize)]
pub(crate) struct TokenQuery {
    token: Option<String>,
}

/// The new-password form. Not `Debug`: it carries the token and passwords.
#[derive(Deserialize)]
pub(crate) struct ResetForm {
    csrf_token: Option<String>,
    #[serde(default)]
    token: String,
    #[serde(default)]
    password: Secret<String>,
    #[serde(default)]
    password_confirmation: Secret<String>,
}

/// Field → first message, for the templates.
pub(crate) fn errors_by_field(violations: &Violations) -> Value {
    let mut map = BTreeMap::new();
    for v in violations {
        map.entry(v.field).or_insert_with(|| v.message.clone());
    }
    json!(map)
}

/// The password rules for a template, with which are met after a try.
pub(crate) fn rules_json(password: Option<&str>, ctx: &PasswordContext) -> Value {
    rules_for_page(password, ctx)
        .into_iter()
        .map(|(text, met)| json!({ "text": text, "met": met }))
        .collect()
}

fn forgot_page(
    pages: &Pages,
    jar: CookieJar,
    status: StatusCode,
    email: &str,
    errors: Value,
) -> Response {
    let (jar, token) = csrf::token(jar, pages.secure_cookies);
    let context = json!({ "csrf_token": token, "email": email, "errors": errors });
    (
        jar,
        pages.render.page(status, "password_forgot.html", context),
    )
        .into_response()
}

/// `GET /password/forgot`.
pub(crate) async fn forgot(State(pages): State<Pages>, jar: CookieJar) -> Response {
    forgot_page(&pages, jar, StatusCode::OK, "", json!({}))
}

/// `POST /password/forgot`: the same page whether or not the address is known.
pub(crate) async fn forgot_submit(
    State(pages): State<Pages>,
    jar: CookieJar,
    Form(form): Form<ForgotForm>,
) -> Response {
    if !csrf::verify_anonymous_form(&jar, form.csrf_token.as_deref()) {
        return csrf_refused(&pages);
    }
    match pages.registry.request_password_reset(&form.email) {
        Ok(()) => pages.render.page(
            StatusCode::OK,
            "password_forgot_sent.html",
            json!({ "message": RESET_ANSWER }),
        ),
        Err(dge_registry::Error::Invalid(v)) => forgot_page(
            &pages,
            jar,
            StatusCode::BAD_REQUEST,
            &form.email,
            errors_by_field(&v),
        ),
        Err(e) => internal(&pages, &e),
    }
}

fn invalid_link(pages: &Pages) -> Response {
    pages.render.error(
        StatusCode::BAD_REQUEST,
        "Lien de réinitialisation invalide",
        "Ce lien de réinitialisation n'est pas valide ou a expiré. Il ne sert qu'une fois, \
         pendant une heure, et seul le dernier lien demandé fonctionne. Demandez-en un nouveau.",
        Some("/password/forgot"),
    )
}

fn reset_page(
    pages: &Pages,
    jar: CookieJar,
    status: StatusCode,
    token: &str,
    login: &str,
    errors: Value,
    rules: Value,
) -> Response {
    let (jar, csrf_token) = csrf::token(jar, pages.secure_cookies);
    let context = json!({
        "csrf_token": csrf_token,
        "token": token,
        "login": login,
        "errors": errors,
        "password_rules": rules,
    });
    (
        jar,
        pages.render.page(status, "password_reset.html", context),
    )
        .into_response()
}

/// `GET /password/reset?token=…`: the form, if the link is valid.
pub(crate) async fn reset(
    State(pages): State<Pages>,
    jar: CookieJar,
    Query(q): Query<TokenQuery>,
) -> Response {
    let Some(token) = q.token.filter(|t| !t.trim().is_empty() && t.len() <= 128) else {
        return invalid_link(&pages);
    };
    match pages.registry.reset_token_account(&token).await {
        Ok(account) => {
            let rules = rules_json(None, &password_context(&account));
            let login = account.login.unwrap_or_default();
            reset_page(
                &pages,
                jar,
                StatusCode::OK,
                &token,
                &login,
                json!({}),
                rules,
            )
        }
        Err(dge_registry::Error::BadToken) => invalid_link(&pages),
        Err(e) => internal(&pages, &e),
    }
}

/// `POST /password/reset`.
pub(crate) async fn reset_submit(
    State(pages): State<Pages>,
    jar: CookieJar,
    Form(form): Form<ResetForm>,
) -> Response {
    if !csrf::verify(&jar, form.csrf_token.as_deref()) {
        return csrf_refused(&pages);
    }
    let result = pages
        .registry
        .reset_password(&form.token, &form.password, &form.password_confirmation)
        .await;
    match result {
        Ok(_) => pages
            .render
            .page(StatusCode::OK, "password_reset_done.html", json!({})),
        Err(dge_registry::Error::Invalid(v)) => {
            let account = match pages.registry.reset_token_account(&form.token).await {
                Ok(a) => a,
                Err(dge_registry::Error::BadToken) => return invalid_link(&pages),
                Err(e) => return internal(&pages, &e),
            };
            let rules = rules_json(Some(form.password.expose()), &password_context(&account));
            let login = account.login.unwrap_or_default();
            let errors = errors_by_field(&v);
            reset_page(
                &pages,
                jar,
                StatusCode::BAD_REQUEST,
                &form.token,
                &login,
                errors,
                rules,
            )
        }
        Err(dge_registry::Error::BadToken) => invalid_link(&pages),
        Err(dge_registry::Error::Busy) => busy(&pages),
        Err(e) => internal(&pages, &e),
    }
}
