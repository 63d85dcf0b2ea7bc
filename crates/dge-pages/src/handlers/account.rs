//! "Mon compte": what a signed-in person does with their own account (profile,
//! password, email address, personal-data export, deletion), and the resend of a
//! sign-up's confirmation email.
//!
//! Every page needs a live session; without one it sends the person to the login
//! page. Every form is CSRF-protected. The email-change link, like the sign-up one,
//! shows a button and only the button (a POST) confirms.

use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::Cookie;
use dge_core::Secret;
use dge_oidc::session::SESSION_COOKIE;
use dge_registry::account::{EMAIL_CHANGE_ANSWER, ProfileForm, RESEND_ANSWER};
use dge_registry::domain::Account;
use dge_registry::reset::password_context;
use serde::Deserialize;
use serde_json::{Value, json};

use super::password::{errors_by_field, rules_json};
use super::{busy, csrf_refused, current_session, internal};
use crate::{Pages, csrf, next};

/// The resend form.
#[derive(Deserialize)]
pub(crate) struct ResendForm {
    csrf_token: Option<String>,
    #[serde(default)]
    email: String,
}

/// The profile form.
#[derive(Deserialize)]
pub(crate) struct ProfileFields {
    csrf_token: Option<String>,
    #[serde(default)]
    given_name: String,
    #[serde(default)]
    family_name: String,
    #[serde(default)]
    phone: String,
    #[serde(default)]
    function: String,
}

/// The password-change form. Not `Debug`: it carries passwords.
#[derive(Deserialize)]
pub(crate) struct PasswordFields {
    csrf_token: Option<String>,
    #[serde(default)]
    current_password: Secret<String>,
    #[serde(default)]
    password: Secret<String>,
    #[serde(default)]
    password_confirmation: Secret<String>,
}

/// The email-change form. Not `Debug`: it carries a password.
#[derive(Deserialize)]
pub(crate) struct EmailFields {
    csrf_token: Option<String>,
    #[serde(default)]
    new_email: String,
    #[serde(default)]
    current_password: Secret<String>,
}

/// `?token=` of an email-change link. Not `Debug`: the token is a secret.
#[derive(Deserialize)]
pub(crate) struct TokenQuery {
    token: Option<String>,
}

/// The email-change confirm button's form.
#[derive(Deserialize)]
pub(crate) struct TokenForm {
    csrf_token: Option<String>,
    #[serde(default)]
    token: String,
}

/// The deletion form. Not `Debug`: it carries a password.
#[derive(Deserialize)]
pub(crate) struct DeleteFields {
    csrf_token: Option<String>,
    #[serde(default)]
    current_password: Secret<String>,
    #[serde(default)]
    confirm: Option<String>,
}

/// The signed-in person's account, or the response to send instead: the login page,
/// which comes back to the account page `back` after the login (see [`crate::next`]).
pub(super) async fn signed_in(
    pages: &Pages,
    jar: &CookieJar,
    back: &str,
) -> Result<Account, Response> {
    let id = match current_session(pages, jar).await {
        Ok(Some((id, _))) => id,
        Ok(None) => return Err(next::login_first(pages, CookieJar::new(), back)),
        Err(e) => return Err(internal(pages, &e)),
    };
    match pages.registry.own_account(&id).await {
        Ok(a) => Ok(a),
        Err(dge_registry::Error::BadToken) => Err(next::login_first(pages, CookieJar::new(), back)),
        Err(e) => Err(internal(pages, &e)),
    }
}

fn notice(pages: &Pages, title: &str, message: &str, next: Option<(&str, &str)>) -> Response {
    pages.render.page(
        StatusCode::OK,
        "notice.html",
        json!({
            "title": title,
            "message": message,
            "next_url": next.map(|n| n.0),
            "next_label": next.map(|n| n.1),
        }),
    )
}

/// A form page with a fresh CSRF token added to `context`.
fn form_page(
    pages: &Pages,
    jar: CookieJar,
    status: StatusCode,
    template: &str,
    mut context: Value,
) -> Response {
    let (jar, token) = csrf::token(jar, pages.secure_cookies);
    if let Some(obj) = context.as_object_mut() {
        obj.insert("csrf_token".into(), json!(token));
    }
    (jar, pages.render.page(status, template, context)).into_response()
}

/// A registry error on a form: `Invalid` re-renders it, the rest are generic.
fn failed(
    pages: &Pages,
    err: dge_registry::Error,
    redraw: impl FnOnce(Value) -> Response,
) -> Response {
    match err {
        dge_registry::Error::Invalid(v) => redraw(errors_by_field(&v)),
        dge_registry::Error::Busy => busy(pages),
        e => internal(pages, &e),
    }
}

// ---- resend of the confirmation email ----

fn resend_page(
    pages: &Pages,
    jar: CookieJar,
    status: StatusCode,
    email: &str,
    errors: Value,
) -> Response {
    let days = (pages.registry.lifetimes().unconfirmed_ttl_secs / 86_400).max(1);
    form_page(
        pages,
        jar,
        status,
        "signup_resend.html",
        json!({ "email": email, "errors": errors, "unconfirmed_days": days }),
    )
}

/// `GET /signup/resend`.
pub(crate) async fn resend(State(pages): State<Pages>, jar: CookieJar) -> Response {
    resend_page(&pages, jar, StatusCode::OK, "", json!({}))
}

/// `POST /signup/resend`: the same answer whether or not the address is known.
pub(crate) async fn resend_submit(
    State(pages): State<Pages>,
    jar: CookieJar,
    Form(form): Form<ResendForm>,
) -> Response {
    if !csrf::verify(&jar, form.csrf_token.as_deref()) {
        return csrf_refused(&pages);
    }
    match pages.registry.request_confirmation_again(&form.email) {
        Ok(()) => notice(
            &pages,
            "Courriel de confirmation",
            RESEND_ANSWER,
            Some(("/login", "Aller à la page de connexion")),
        ),
        Err(e) => failed(&pages, e, |errors| {
            resend_page(&pages, jar, StatusCode::BAD_REQUEST, &form.email, errors)
        }),
    }
}

// ---- profile ----

/// The profile page; `form` holds `values`, `errors` and `notice`.
fn profile_page(
    pages: &Pages,
    jar: CookieJar,
    status: StatusCode,
    account: &Account,
    has_password: bool,
    form: Value,
) -> Response {
    let mut context = json!({
        "account": {
            "login": account.login,
            "email": account.email,
            "organisation_name": account.organisation_name,
        },
        "has_password": has_password,
    });
    if let (Some(c), Value::Object(more)) = (context.as_object_mut(), form) {
        c.extend(more);
    }
    form_page(pages, jar, status, "account.html", context)
}

fn values_of(a: &Account) -> Value {
    json!({
        "given_name": a.given_name,
        "family_name": a.family_name,
        "phone": a.phone,
        "function": a.function,
    })
}

/// `GET /account`.
pub(crate) async fn show(State(pages): State<Pages>, jar: CookieJar) -> Response {
    let account = match signed_in(&pages, &jar, "/account").await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let has_password = match pages.registry.has_password(&account.id).await {
        Ok(h) => h,
        Err(e) => return internal(&pages, &e),
    };
    let form = json!({ "values": values_of(&account), "errors": {} });
    profile_page(&pages, jar, StatusCode::OK, &account, has_password, form)
}

/// `POST /account`: saves the profile.
pub(crate) async fn submit(
    State(pages): State<Pages>,
    jar: CookieJar,
    Form(form): Form<ProfileFields>,
) -> Response {
    if !csrf::verify(&jar, form.csrf_token.as_deref()) {
        return csrf_refused(&pages);
    }
    let account = match signed_in(&pages, &jar, "/account").await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let has_password = match pages.registry.has_password(&account.id).await {
        Ok(h) => h,
        Err(e) => return internal(&pages, &e),
    };
    let profile = ProfileForm {
        given_name: form.given_name,
        family_name: form.family_name,
        phone: form.phone,
        function: form.function,
    };
    match pages.registry.update_profile(&account.id, &profile).await {
        Ok(updated) => {
            let form = json!({
                "values": values_of(&updated),
                "errors": {},
                "notice": "Vos informations ont été enregistrées.",
            });
            profile_page(&pages, jar, StatusCode::OK, &updated, has_password, form)
        }
        Err(e) => failed(&pages, e, |errors| {
            let values = json!({
                "given_name": profile.given_name,
                "family_name": profile.family_name,
                "phone": profile.phone,
                "function": profile.function,
            });
            let form = json!({ "values": values, "errors": errors });
            profile_page(
                &pages,
                jar,
                StatusCode::BAD_REQUEST,
                &account,
                has_password,
                form,
            )
        }),
    }
}

// ---- password ----

/// `GET /account/password`.
pub(crate) async fn password(State(pages): State<Pages>, jar: CookieJar) -> Response {
    let account = match signed_in(&pages, &jar, "/account/password").await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let rules = rules_json(None, &password_context(&account));
    form_page(
        &pages,
        jar,
        StatusCode::OK,
        "account_password.html",
        json!({ "errors": {}, "password_rules": rules }),
    )
}

/// `POST /account/password`: the person is then logged out everywhere.
pub(crate) async fn password_submit(
    State(pages): State<Pages>,
    jar: CookieJar,
    Form(form): Form<PasswordFields>,
) -> Response {
    if !csrf::verify(&jar, form.csrf_token.as_deref()) {
        return csrf_refused(&pages);
    }
    let account = match signed_in(&pages, &jar, "/account/password").await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let result = pages
        .registry
        .change_password(
            &account.id,
            &form.current_password,
            &form.password,
            &form.password_confirmation,
        )
        .await;
    match result {
        Ok(()) => (
            jar.remove(Cookie::build(SESSION_COOKIE).path("/")),
            notice(
                &pages,
                "Mot de passe changé",
                "Votre mot de passe a été changé et un courriel vous l'a confirmé. Vous avez été \
                 déconnecté(e) de tous vos appareils : connectez-vous avec le nouveau mot de passe.",
                Some(("/login", "Se connecter")),
            ),
        )
            .into_response(),
        Err(e) => failed(&pages, e, |errors| {
            let rules = rules_json(Some(form.password.expose()), &password_context(&account));
            form_page(
                &pages,
                jar,
                StatusCode::BAD_REQUEST,
                "account_password.html",
                json!({ "errors": errors, "password_rules": rules }),
            )
        }),
    }
}

// ---- email address ----

/// `GET /account/email`.
pub(crate) async fn email(State(pages): State<Pages>, jar: CookieJar) -> Response {
    let account = match signed_in(&pages, &jar, "/account/email").await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let has_password = match pages.registry.has_password(&account.id).await {
        Ok(h) => h,
        Err(e) => return internal(&pages, &e),
    };
    form_page(
        &pages,
        jar,
        StatusCode::OK,
        "account_email.html",
        json!({ "current_email": account.email, "has_password": has_password, "errors": {} }),
    )
}

/// `POST /account/email`: emails a link to the new address.
pub(crate) async fn email_submit(
    State(pages): State<Pages>,
    jar: CookieJar,
    Form(form): Form<EmailFields>,
) -> Response {
    if !csrf::verify(&jar, form.csrf_token.as_deref()) {
        return csrf_refused(&pages);
    }
    let account = match signed_in(&pages, &jar, "/account/email").await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let result = pages
        .registry
        .request_email_change(&account.id, &form.new_email, &form.current_password)
        .await;
    match result {
        Ok(()) => notice(
            &pages,
            "Changement d'adresse demandé",
            EMAIL_CHANGE_ANSWER,
            Some(("/account", "Retour à mon compte")),
        ),
        Err(e) => {
            let has_password = pages
                .registry
                .has_password(&account.id)
                .await
                .unwrap_or(true);
            failed(&pages, e, |errors| {
                form_page(
                    &pages,
                    jar,
                    StatusCode::BAD_REQUEST,
                    "account_email.html",
                    json!({
                        "current_email": account.email,
                        "new_email": form.new_email,
                        "has_password": has_password,
                        "errors": errors,
                    }),
                )
            })
        }
    }
}

/// The page for an email-change link that cannot work (anymore), or `None` when it can.
async fn unusable_change_link(pages: &Pages, token: &str) -> Option<Response> {
    use dge_registry::account::EmailChangeLink;
    match pages.registry.email_change_link(token).await {
        Ok(EmailChangeLink::Usable) => None,
        Ok(EmailChangeLink::Taken) => Some(pages.render.error(
            StatusCode::CONFLICT,
            "Adresse déjà utilisée",
            "Depuis votre demande, cette adresse est devenue celle d'un autre compte : elle ne \
             peut pas remplacer la vôtre. Votre adresse actuelle reste celle de votre compte ; \
             choisissez-en une autre depuis « Mon compte ».",
            Some("/account/email"),
        )),
        Ok(EmailChangeLink::Invalid) => Some(invalid_change_link(pages)),
        Err(e) => Some(internal(pages, &e)),
    }
}

fn invalid_change_link(pages: &Pages) -> Response {
    pages.render.error(
        StatusCode::BAD_REQUEST,
        "Lien de confirmation invalide",
        "Ce lien de changement d'adresse n'est pas valide ou a expiré. Il ne sert qu'une fois, et \
         seul le dernier lien demandé fonctionne. Recommencez depuis « Mon compte ».",
        Some("/account/email"),
    )
}

/// `GET /account/email/confirm?token=…`: a button when the link can still work, the
/// reason at once otherwise; a GET never confirms.
pub(crate) async fn email_confirm(
    State(pages): State<Pages>,
    jar: CookieJar,
    Query(q): Query<TokenQuery>,
) -> Response {
    let Some(token) = q.token.filter(|t| !t.trim().is_empty() && t.len() <= 128) else {
        return invalid_change_link(&pages);
    };
    if let Some(page) = unusable_change_link(&pages, &token).await {
        return page;
    }
    form_page(
        &pages,
        jar,
        StatusCode::OK,
        "account_email_confirm.html",
        json!({ "token": token }),
    )
}

/// `POST /account/email/confirm`. Works without a session: the token is the proof.
pub(crate) async fn email_confirm_submit(
    State(pages): State<Pages>,
    jar: CookieJar,
    Form(form): Form<TokenForm>,
) -> Response {
    if !csrf::verify(&jar, form.csrf_token.as_deref()) {
        return csrf_refused(&pages);
    }
    match pages.registry.confirm_email_change(&form.token).await {
        Ok(_) => notice(
            &pages,
            "Adresse électronique changée",
            "Votre nouvelle adresse est désormais celle de votre compte. L'ancienne adresse a été prévenue.",
            Some(("/account", "Aller à mon compte")),
        ),
        // Why it failed, read again: the address may have been taken meanwhile.
        Err(dge_registry::Error::BadToken) => unusable_change_link(&pages, &form.token)
            .await
            .unwrap_or_else(|| invalid_change_link(&pages)),
        Err(e) => internal(&pages, &e),
    }
}

// ---- export ----

/// `GET /account/export`: every piece of personal data, as a JSON download.
pub(crate) async fn export(State(pages): State<Pages>, jar: CookieJar) -> Response {
    let account = match signed_in(&pages, &jar, "/account").await {
        Ok(a) => a,
        Err(r) => return r,
    };
    match pages.registry.export_personal_data(&account.id).await {
        Ok(data) => {
            let body = serde_json::to_string_pretty(&data).unwrap_or_else(|_| data.to_string());
            let mut resp = (StatusCode::OK, body).into_response();
            let h = resp.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json; charset=utf-8"),
            );
            h.insert(
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static("attachment; filename=\"mes-donnees-datagrandest.json\""),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            resp
        }
        Err(e) => internal(&pages, &e),
    }
}

// ---- deletion ----

/// `GET /account/delete`.
pub(crate) async fn delete(State(pages): State<Pages>, jar: CookieJar) -> Response {
    let account = match signed_in(&pages, &jar, "/account/delete").await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let has_password = match pages.registry.has_password(&account.id).await {
        Ok(h) => h,
        Err(e) => return internal(&pages, &e),
    };
    form_page(
        &pages,
        jar,
        StatusCode::OK,
        "account_delete.html",
        json!({ "has_password": has_password, "errors": {} }),
    )
}

/// `POST /account/delete`.
pub(crate) async fn delete_submit(
    State(pages): State<Pages>,
    jar: CookieJar,
    Form(form): Form<DeleteFields>,
) -> Response {
    if !csrf::verify(&jar, form.csrf_token.as_deref()) {
        return csrf_refused(&pages);
    }
    let account = match signed_in(&pages, &jar, "/account/delete").await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let confirmed = form.confirm.as_deref() == Some("on");
    let result = pages
        .registry
        .delete_account(&account.id, &form.current_password, confirmed)
        .await;
    match result {
        Ok(()) => (
            jar.remove(Cookie::build(SESSION_COOKIE).path("/")),
            notice(
                &pages,
                "Compte supprimé",
                "Votre compte a été supprimé. Un dernier courriel vous le confirme.",
                None,
            ),
        )
            .into_response(),
        Err(e) => {
            let has_password = pages
                .registry
                .has_password(&account.id)
                .await
                .unwrap_or(true);
            failed(&pages, e, |errors| {
                form_page(
                    &pages,
                    jar,
                    StatusCode::BAD_REQUEST,
                    "account_delete.html",
                    json!({ "has_password": has_password, "errors": errors }),
                )
            })
        }
    }
}
