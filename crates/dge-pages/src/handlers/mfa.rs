//! Two-step verification pages: the code asked at login after the password (or the
//! upstream login), the enrolment an administrator must go through before any
//! session exists, and « Vérification en deux étapes » in the profile.
//!
//! Between the two steps no session exists: the browser holds a random token in the
//! `dge_mfa` cookie naming the waiting login in the shared store (10 minutes). Only
//! the code (or, for an administrator without two-step verification, the confirmed
//! enrolment) opens the session.

use axum::Form;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};
use dge_broker::FederatedLogin;
use dge_core::Secret;
use dge_oidc::session::SESSION_COOKIE;
use dge_registry::LoginState;
use dge_registry::domain::Account;
use dge_registry::mfa::{CodeError, Enrolment, PendingLogin};
use serde::Deserialize;
use serde_json::{Value, json};

use super::account::signed_in;
use super::login::finish_login;
use super::password::errors_by_field;
use super::{busy, csrf_refused, internal, see_other, session_cookie};
use crate::{Pages, csrf};

/// The cookie naming a login waiting for its second step.
pub const MFA_COOKIE: &str = "dge_mfa";

/// The code form. Not `Debug`: it carries a code.
#[derive(Deserialize)]
pub(crate) struct CodeForm {
    csrf_token: Option<String>,
    #[serde(default)]
    code: String,
}

/// The disable form. Not `Debug`: it carries a password and a code.
#[derive(Deserialize)]
pub(crate) struct DisableForm {
    csrf_token: Option<String>,
    #[serde(default)]
    current_password: Secret<String>,
    #[serde(default)]
    code: String,
}

/// A form with only the CSRF token.
#[derive(Deserialize)]
pub(crate) struct EmptyForm {
    csrf_token: Option<String>,
}

const LOCKED_MESSAGE: &str = "Trop de codes erronés. Par sécurité, la connexion est suspendue \
     pendant quelques minutes : réessayez plus tard.";

const WRONG_CODE: &str = "Code incorrect ou expiré : saisissez le code à 6 chiffres affiché en \
     ce moment par votre application d'authentification, ou un de vos codes de secours.";

/// After the first step of a login (password or upstream): the session at once for
/// an account without two-step verification, else the code page (or the enrolment
/// page for an administrator who has none yet). `read_now` is what a password
/// login read of the account with its password check, in this same request.
pub(crate) async fn after_first_step(
    pages: &Pages,
    jar: CookieJar,
    pending: PendingLogin,
    read_now: Option<LoginState>,
) -> Response {
    let read_now = read_now.filter(|s| s.account.id == pending.account_id);
    let state = match &read_now {
        Some(s) => s.mfa,
        None => match pages.registry.mfa_state(&pending.account_id).await {
            Ok(s) => s,
            Err(e) => return internal(pages, &e),
        },
    };
    if !state.enabled && !state.required {
        return open_and_finish(pages, jar, &pending, read_now).await;
    }
    let token = match pages.registry.begin_second_step(&pending).await {
        Ok(t) => t,
        Err(e) => return internal(pages, &e),
    };
    let cookie = Cookie::build((MFA_COOKIE, token))
        .http_only(true)
        .secure(pages.secure_cookies)
        .same_site(SameSite::Lax)
        .path("/")
        .build();
    let next = if state.enabled {
        "/login/code"
    } else {
        "/login/mfa-setup"
    };
    (jar.add(cookie), see_other(next)).into_response()
}

/// Opens the session of a login whose steps all passed, and goes on. `read_now` is
/// the account as this same request read it (a password login without a second step):
/// read again otherwise, as time passed since the first step.
async fn open_and_finish(
    pages: &Pages,
    jar: CookieJar,
    pending: &PendingLogin,
    read_now: Option<LoginState>,
) -> Response {
    let (account, epoch) = match read_now.filter(|s| s.account.id == pending.account_id) {
        Some(s) => (s.account, Some(s.sessions_epoch)),
        None => match pages.registry.own_account(&pending.account_id).await {
            Ok(a) => (a, None),
            Err(e) => return internal(pages, &e),
        },
    };
    // Suspended (or otherwise closed) since the first step, during the code step, or
    // reached through an upstream: no session.
    if account.status != dge_registry::AccountStatus::Active {
        tracing::info!(account_id = %account.id, status = account.status.as_str(), "login refused: account not active");
        let via = pending.upstream.as_deref().unwrap_or("password");
        if let Err(e) = pages
            .registry
            .audit_refused_inactive(&account.id, via, account.status)
            .await
        {
            // The person is refused all the same; only the audit row is missing.
            tracing::error!(error = %dge_core::ErrorChain(&e), "refused login not audited");
        }
        return super::login::login_page(
            pages,
            jar,
            StatusCode::FORBIDDEN,
            &pending.req,
            "",
            Some(&super::login::not_active_message(
                pages.render.portal(),
                account.status,
            )),
        );
    }
    let now = pages.provider.now();
    // A session this browser already holds is carried over or ended, not left open
    // behind the new cookie (a logout would miss it). Its upstream session (a
    // ProConnect login) is not carried over: a later logout does not end that one
    // upstream.
    let previous = jar.get(SESSION_COOKIE).map(|c| c.value().to_owned());
    let session = match pages
        .provider
        .open_session_replacing(&pending.account_id, now, epoch, previous.as_deref())
        .await
    {
        Ok(s) => s,
        Err(e) => return internal(pages, &e),
    };
    if let (Some(provider), Some(id_token)) = (&pending.upstream, &pending.upstream_id_token) {
        let login = FederatedLogin {
            account_id: pending.account_id.clone(),
            auth_request: Some(pending.req.clone()).filter(|r| !r.is_empty()),
            provider: provider.clone(),
            id_token: Secret::new(id_token.clone()),
        };
        if let Err(e) = pages.broker.remember_session(&session, &login).await {
            return internal(pages, &e);
        }
    }
    let jar = jar.add(session_cookie(session, pages.secure_cookies));
    finish_login(
        pages,
        jar,
        &pending.req,
        &pending.account_id,
        &account.given_name,
        now,
        epoch,
    )
    .await
}

fn expired(pages: &Pages) -> Response {
    pages.render.error(
        StatusCode::BAD_REQUEST,
        "Connexion expirée",
        "Cette étape de connexion a expiré ou a déjà été terminée. Reprenez la connexion depuis \
         le service, ou depuis la page d'identification.",
        Some("/login"),
    )
}

/// The waiting login of this browser, or the page to show instead.
async fn waiting(pages: &Pages, jar: &CookieJar) -> Result<(String, PendingLogin), Response> {
    let Some(token) = jar.get(MFA_COOKIE).map(|c| c.value().to_owned()) else {
        return Err(expired(pages));
    };
    match pages.registry.pending_second_step(&token).await {
        Ok(Some(p)) => Ok((token, p)),
        Ok(None) => Err(expired(pages)),
        Err(e) => Err(internal(pages, &e)),
    }
}

fn forget_waiting(jar: CookieJar) -> CookieJar {
    jar.remove(Cookie::build(MFA_COOKIE).path("/"))
}

fn with_csrf(pages: &Pages, jar: CookieJar, mut context: Value) -> (CookieJar, Value) {
    let (jar, token) = csrf::token(jar, pages.secure_cookies);
    if let Some(obj) = context.as_object_mut() {
        obj.insert("csrf_token".into(), json!(token));
    }
    (jar, context)
}

// ---- the code at login ----

fn code_page(pages: &Pages, jar: CookieJar, status: StatusCode, error: Option<&str>) -> Response {
    let (jar, context) = with_csrf(pages, jar, json!({ "error": error }));
    (jar, pages.render.page(status, "login_code.html", context)).into_response()
}

/// The enrolment page instead of the code page, for a waiting login whose account
/// has no two-step verification yet (an administrator who must enrol first).
async fn enrolment_first(pages: &Pages, pending: &PendingLogin) -> Option<Response> {
    match pages.registry.mfa_state(&pending.account_id).await {
        Ok(state) if state.enabled => None,
        Ok(_) => Some(see_other("/login/mfa-setup")),
        Err(e) => Some(internal(pages, &e)),
    }
}

/// `GET /login/code`.
pub(crate) async fn code(State(pages): State<Pages>, jar: CookieJar) -> Response {
    let pending = match waiting(&pages, &jar).await {
        Ok((_, p)) => p,
        Err(r) => return r,
    };
    if let Some(r) = enrolment_first(&pages, &pending).await {
        return r;
    }
    code_page(&pages, jar, StatusCode::OK, None)
}

/// `POST /login/code`.
pub(crate) async fn code_submit(
    State(pages): State<Pages>,
    jar: CookieJar,
    Form(form): Form<CodeForm>,
) -> Response {
    if !csrf::verify_anonymous_form(&jar, form.csrf_token.as_deref()) {
        return csrf_refused(&pages);
    }
    let (token, pending) = match waiting(&pages, &jar).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    if let Some(r) = enrolment_first(&pages, &pending).await {
        return r;
    }
    match pages
        .registry
        .verify_mfa(&pending.account_id, &form.code)
        .await
    {
        Ok(Ok(())) => {}
        Ok(Err(CodeError::Wrong)) => {
            return code_page(&pages, jar, StatusCode::UNAUTHORIZED, Some(WRONG_CODE));
        }
        Ok(Err(CodeError::Locked)) => {
            return code_page(
                &pages,
                jar,
                StatusCode::TOO_MANY_REQUESTS,
                Some(LOCKED_MESSAGE),
            );
        }
        Err(dge_registry::Error::Busy) => return busy(&pages),
        Err(e) => return internal(&pages, &e),
    }
    // Only one request completes the login, even if the form was sent twice.
    match pages.registry.end_second_step(&token).await {
        Ok(Some(_)) => {}
        Ok(None) => return expired(&pages),
        Err(e) => return internal(&pages, &e),
    }
    open_and_finish(&pages, forget_waiting(jar), &pending, None).await
}

// ---- enrolment (at login for administrators, and from the profile) ----

/// An inline SVG QR code of `text`, or `None` if it cannot be drawn.
fn qr_svg(text: &str) -> Option<String> {
    let code = qrcode::QrCode::new(text.as_bytes()).ok()?;
    let svg = code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .quiet_zone(true)
        .build();
    // The XML declaration has no place inside an HTML page.
    svg.find("<svg").map(|i| svg[i..].to_owned())
}

struct SetupPage<'a> {
    action: &'a str,
    cancel: &'a str,
    intro: &'a str,
}

const LOGIN_SETUP: SetupPage<'static> = SetupPage {
    action: "/login/mfa-setup",
    cancel: "/login",
    intro: "Votre compte est administrateur : la vérification en deux étapes est obligatoire. \
            Activez-la pour terminer votre connexion.",
};

const PROFILE_SETUP: SetupPage<'static> = SetupPage {
    action: "/account/mfa/confirm",
    cancel: "/account/mfa",
    intro: "",
};

fn setup_page(
    pages: &Pages,
    jar: CookieJar,
    status: StatusCode,
    page: &SetupPage<'_>,
    enrolment: &Enrolment,
    errors: Value,
) -> Response {
    let (jar, context) = with_csrf(
        pages,
        jar,
        json!({
            "action": page.action,
            "cancel_url": page.cancel,
            "intro": page.intro,
            "secret": enrolment.secret_base32.expose(),
            "qr_svg": qr_svg(enrolment.uri.expose()),
            "errors": errors,
        }),
    );
    let mut resp = pages.render.page(status, "mfa_setup.html", context);
    // The secret must not stay in a cache.
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    (jar, resp).into_response()
}

/// The enrolment waiting for its first code, or a new one.
async fn enrolment_of(pages: &Pages, account_id: &str) -> dge_registry::Result<Enrolment> {
    let issuer = pages.render.portal().name.clone();
    match pages
        .registry
        .pending_mfa_enrolment(account_id, &issuer)
        .await?
    {
        Some(e) => Ok(e),
        None => {
            pages
                .registry
                .start_mfa_enrolment(account_id, &issuer)
                .await
        }
    }
}

fn recovery_page(pages: &Pages, codes: &[Secret<String>], next: &str) -> Response {
    let codes: Vec<&str> = codes.iter().map(|c| c.expose().as_str()).collect();
    let mut resp = pages.render.page(
        StatusCode::OK,
        "mfa_recovery_codes.html",
        json!({ "codes": codes, "next_url": next }),
    );
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    resp
}

/// `GET /login/mfa-setup`: an administrator without two-step verification.
pub(crate) async fn login_setup(State(pages): State<Pages>, jar: CookieJar) -> Response {
    let (_, pending) = match waiting(&pages, &jar).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    match enrolment_of(&pages, &pending.account_id).await {
        Ok(e) => setup_page(&pages, jar, StatusCode::OK, &LOGIN_SETUP, &e, json!({})),
        // Already on (enrolled meanwhile, in another tab): the code page then.
        Err(dge_registry::Error::Invalid(_)) => see_other("/login/code"),
        Err(e) => internal(&pages, &e),
    }
}

/// `POST /login/mfa-setup`: the first code confirms the enrolment; the session opens
/// and the recovery codes are shown once, with the way on.
pub(crate) async fn login_setup_submit(
    State(pages): State<Pages>,
    jar: CookieJar,
    Form(form): Form<CodeForm>,
) -> Response {
    if !csrf::verify_anonymous_form(&jar, form.csrf_token.as_deref()) {
        return csrf_refused(&pages);
    }
    let (token, pending) = match waiting(&pages, &jar).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let codes = match pages
        .registry
        .confirm_mfa_enrolment(&pending.account_id, &form.code)
        .await
    {
        Ok(c) => c,
        Err(dge_registry::Error::Invalid(v)) => {
            let status = status_of(&v);
            return match enrolment_of(&pages, &pending.account_id).await {
                Ok(e) => setup_page(&pages, jar, status, &LOGIN_SETUP, &e, errors_by_field(&v)),
                // Two-step verification is already on (this login waits for a code, or
                // it was enrolled meanwhile in another tab): the code page then.
                Err(dge_registry::Error::Invalid(_)) => see_other("/login/code"),
                Err(e) => internal(&pages, &e),
            };
        }
        Err(e) => return internal(&pages, &e),
    };
    match pages.registry.end_second_step(&token).await {
        Ok(_) => {}
        Err(e) => return internal(&pages, &e),
    }
    let finished = open_and_finish(&pages, forget_waiting(jar), &pending, None).await;
    show_codes_then(&pages, finished, &codes)
}

/// The recovery codes page in place of `finished` (the end of a login): its way on
/// becomes the page's button, and its cookies are kept.
fn show_codes_then(pages: &Pages, finished: Response, codes: &[Secret<String>]) -> Response {
    let status = finished.status();
    if status.is_server_error() || status.is_client_error() {
        return finished;
    }
    let next = if status.is_redirection() {
        finished
            .headers()
            .get(header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .unwrap_or("/account")
            .to_owned()
    } else {
        "/account".to_owned()
    };
    let mut page = recovery_page(pages, codes, &next);
    for cookie in finished.headers().get_all(header::SET_COOKIE) {
        page.headers_mut()
            .append(header::SET_COOKIE, cookie.clone());
    }
    page
}

fn status_of(v: &dge_core::Violations) -> StatusCode {
    if v.iter().any(|x| x.code == "locked") {
        StatusCode::TOO_MANY_REQUESTS
    } else {
        StatusCode::BAD_REQUEST
    }
}

// ---- the profile ----

async fn profile_page(
    pages: &Pages,
    jar: CookieJar,
    status: StatusCode,
    account: &Account,
    errors: Value,
) -> Response {
    let state = match pages.registry.mfa_state(&account.id).await {
        Ok(s) => s,
        Err(e) => return internal(pages, &e),
    };
    let has_password = match pages.registry.has_password(&account.id).await {
        Ok(h) => h,
        Err(e) => return internal(pages, &e),
    };
    let (jar, context) = with_csrf(
        pages,
        jar,
        json!({
            "enabled": state.enabled,
            "required": state.required,
            "recovery_codes_left": state.recovery_codes_left,
            "has_password": has_password,
            "errors": errors,
        }),
    );
    (jar, pages.render.page(status, "account_mfa.html", context)).into_response()
}

/// `GET /account/mfa`.
pub(crate) async fn profile(State(pages): State<Pages>, jar: CookieJar) -> Response {
    let account = match signed_in(&pages, &jar, "/account/mfa").await {
        Ok(a) => a,
        Err(r) => return r,
    };
    profile_page(&pages, jar, StatusCode::OK, &account, json!({})).await
}

/// `POST /account/mfa/start`: a new secret to scan.
pub(crate) async fn profile_start(
    State(pages): State<Pages>,
    jar: CookieJar,
    Form(form): Form<EmptyForm>,
) -> Response {
    if !csrf::verify(&jar, form.csrf_token.as_deref()) {
        return csrf_refused(&pages);
    }
    let account = match signed_in(&pages, &jar, "/account/mfa").await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let issuer = pages.render.portal().name.clone();
    match pages
        .registry
        .start_mfa_enrolment(&account.id, &issuer)
        .await
    {
        Ok(e) => setup_page(&pages, jar, StatusCode::OK, &PROFILE_SETUP, &e, json!({})),
        Err(dge_registry::Error::Invalid(v)) => {
            profile_page(
                &pages,
                jar,
                StatusCode::BAD_REQUEST,
                &account,
                errors_by_field(&v),
            )
            .await
        }
        Err(e) => internal(&pages, &e),
    }
}

/// `POST /account/mfa/confirm`: the first code turns it on. The account's sessions
/// end (see `dge_registry::mfa`); this browser gets a new one at once.
pub(crate) async fn profile_confirm(
    State(pages): State<Pages>,
    jar: CookieJar,
    Form(form): Form<CodeForm>,
) -> Response {
    if !csrf::verify(&jar, form.csrf_token.as_deref()) {
        return csrf_refused(&pages);
    }
    let account = match signed_in(&pages, &jar, "/account/mfa").await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let codes = match pages
        .registry
        .confirm_mfa_enrolment(&account.id, &form.code)
        .await
    {
        Ok(c) => c,
        Err(dge_registry::Error::Invalid(v)) => {
            let status = status_of(&v);
            let issuer = pages.render.portal().name.clone();
            return match pages
                .registry
                .pending_mfa_enrolment(&account.id, &issuer)
                .await
            {
                Ok(Some(e)) => {
                    setup_page(&pages, jar, status, &PROFILE_SETUP, &e, errors_by_field(&v))
                }
                Ok(None) => profile_page(&pages, jar, status, &account, errors_by_field(&v)).await,
                Err(e) => internal(&pages, &e),
            };
        }
        Err(e) => return internal(&pages, &e),
    };
    let now = pages.provider.now();
    let session = match pages.provider.open_session(&account.id, now).await {
        Ok(s) => s,
        Err(e) => return internal(&pages, &e),
    };
    let jar = jar.add(session_cookie(session, pages.secure_cookies));
    (jar, recovery_page(&pages, &codes, "/account/mfa")).into_response()
}

/// `POST /account/mfa/disable`: with the current password and a code.
pub(crate) async fn profile_disable(
    State(pages): State<Pages>,
    jar: CookieJar,
    Form(form): Form<DisableForm>,
) -> Response {
    if !csrf::verify(&jar, form.csrf_token.as_deref()) {
        return csrf_refused(&pages);
    }
    let account = match signed_in(&pages, &jar, "/account/mfa").await {
        Ok(a) => a,
        Err(r) => return r,
    };
    match pages
        .registry
        .disable_mfa(&account.id, &form.current_password, &form.code)
        .await
    {
        Ok(()) => pages.render.page(
            StatusCode::OK,
            "notice.html",
            json!({
                "title": "Vérification en deux étapes désactivée",
                "message": "La vérification en deux étapes est désactivée : votre mot de passe \
                            suffit désormais pour vous connecter. Un courriel vous le confirme.",
                "next_url": "/account",
                "next_label": "Retour à mon compte",
            }),
        ),
        Err(dge_registry::Error::Invalid(v)) => {
            let status = status_of(&v);
            profile_page(&pages, jar, status, &account, errors_by_field(&v)).await
        }
        Err(dge_registry::Error::Busy) => busy(&pages),
        Err(e) => internal(&pages, &e),
    }
}
