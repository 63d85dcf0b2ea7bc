//! The upstream-provider buttons: `/broker/{provider}/start`, its callback, the page
//! offering to link an upstream identity to an existing account, and the return
//! from an upstream logout.

use std::borrow::Cow;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};
use dge_broker::accounts::{PendingOffer, Proof};
use dge_broker::{BrokerError, FederatedLogin, Hints, LinkOffer, Outcome};
use dge_core::Secret;
use dge_core::token::constant_time_eq;
use dge_registry::{AccountStatus, LoginError};
use serde::Deserialize;
use serde_json::json;

use super::{busy, csrf_refused, foreign_request, internal, see_other};
use crate::client::ClientAddr;
use crate::{Pages, binding, csrf};

/// Binds a started upstream login to the browser that started it.
const STATE_COOKIE: &str = "dge_upstream_state";
/// The pending link offer of this browser.
const LINK_COOKIE: &str = "dge_link";

/// `?req=` and the hints a portal module may pass through to the upstream.
#[derive(Debug, Deserialize, Default)]
pub(crate) struct StartQuery {
    req: Option<String>,
    login_hint: Option<String>,
    siret_hint: Option<String>,
    idp_hint: Option<String>,
}

/// The upstream's answer. Not `Debug`: `code` and `state` are secrets.
#[derive(Deserialize)]
pub(crate) struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// The linking form: the account's password, or the code emailed to it. Not
/// `Debug`: it carries the password.
#[derive(Deserialize)]
pub(crate) struct LinkForm {
    csrf_token: Option<String>,
    #[serde(default)]
    password: Secret<String>,
    #[serde(default)]
    code: Option<String>,
}

/// The cancel form.
#[derive(Deserialize)]
pub(crate) struct CancelForm {
    csrf_token: Option<String>,
}

/// The upstream's return after its logout. Not `Debug`: `state` is a secret.
#[derive(Deserialize)]
pub(crate) struct LoggedOutQuery {
    state: Option<String>,
}

fn failure(pages: &Pages, provider: &str, err: &BrokerError) -> Response {
    count_login(pages, provider, "refused");
    let suspended = super::login::suspended_message(pages.render.portal());
    let (status, message) = match err {
        BrokerError::UnknownProvider => {
            (StatusCode::NOT_FOUND, "Ce mode de connexion n'existe pas.")
        }
        BrokerError::NotConfigured => (
            StatusCode::SERVICE_UNAVAILABLE,
            "Ce mode de connexion n'est pas encore disponible sur ce service. Utilisez votre compte \
             DataGrandEst, ou créez-en un.",
        ),
        BrokerError::EmailInUse => (
            StatusCode::CONFLICT,
            "Cette adresse électronique appartient déjà à un compte DataGrandEst. Connectez-vous avec \
             votre login et votre mot de passe ; en cas d'oubli, utilisez « Mot de passe oublié ? ».",
        ),
        BrokerError::Refused(_) => (
            StatusCode::FORBIDDEN,
            "La connexion a été annulée ou refusée par le fournisseur d'identité. Aucun compte n'a \
             été créé.",
        ),
        BrokerError::NotAllowed(_) => (
            StatusCode::FORBIDDEN,
            "Votre identité a bien été reconnue, mais ce service est réservé à certaines \
             organisations et votre compte n'en fait pas partie (adresse, organisation ou rôle). \
             Utilisez votre compte DataGrandEst, ou écrivez à l'équipe DataGrandEst.",
        ),
        BrokerError::AcrNotAccepted => (
            StatusCode::FORBIDDEN,
            "Le niveau de sécurité de votre connexion est insuffisant pour ce service. Reconnectez-vous \
             avec un moyen d'identification plus sûr.",
        ),
        BrokerError::NoEmail => (
            StatusCode::BAD_GATEWAY,
            "Le fournisseur d'identité n'a pas transmis votre adresse électronique. Aucun compte n'a \
             été créé.",
        ),
        BrokerError::EmailNotVerified => (
            StatusCode::FORBIDDEN,
            "Votre fournisseur d'identité indique que votre adresse électronique n'est pas encore \
             vérifiée. Vérifiez-la auprès de lui, puis reconnectez-vous. Aucun compte n'a été créé.",
        ),
        BrokerError::BadEmail => (
            StatusCode::BAD_GATEWAY,
            "Le fournisseur d'identité a transmis une adresse électronique qu'un compte ne peut pas \
             porter. Aucun compte n'a été créé : faites corriger votre adresse auprès de lui, ou \
             utilisez votre compte DataGrandEst.",
        ),
        // The person holds the address (the upstream vouched for it): each case gets
        // its next step.
        BrokerError::NotActive(AccountStatus::Unconfirmed) => (
            StatusCode::FORBIDDEN,
            "Une demande de compte DataGrandEst attend la confirmation de cette adresse \
             électronique. Si c'est la vôtre, ouvrez le lien du courriel de confirmation (ou \
             faites-le renvoyer depuis la page « Renvoyer le courriel de confirmation »), puis \
             attendez la validation du compte. Si vous ne l'avez pas faite, ignorez-la : elle \
             sera effacée d'elle-même au bout de quelques jours, et vous pourrez alors vous \
             connecter ici.",
        ),
        BrokerError::NotActive(AccountStatus::Pending) => (
            StatusCode::FORBIDDEN,
            "Votre compte DataGrandEst, qui porte cette adresse électronique, attend la \
             validation de l'équipe DataGrandEst. Vous recevrez un courriel dès qu'il sera actif ; \
             vous pourrez alors vous connecter ici et le relier à ce mode de connexion.",
        ),
        BrokerError::NotActive(_) => (
            StatusCode::FORBIDDEN,
            "Une demande de compte DataGrandEst avec cette adresse électronique n'a pas été \
             acceptée : cette adresse ne peut pas servir à un autre compte. Pour en parler, \
             écrivez à l'équipe DataGrandEst.",
        ),
        BrokerError::Suspended => (StatusCode::FORBIDDEN, suspended.as_str()),
        BrokerError::BadState | BrokerError::WrongCode => (
            StatusCode::BAD_REQUEST,
            "Cette connexion a expiré ou a déjà été utilisée. Recommencez depuis la page de connexion.",
        ),
        BrokerError::BadOffer => (
            StatusCode::BAD_REQUEST,
            "Cette demande de liaison n'est plus valable : elle a expiré, a déjà servi, ou trop \
             d'essais ont échoué (cinq au plus, codes envoyés compris). Recommencez depuis la \
             page de connexion.",
        ),
        BrokerError::Upstream(_)
        | BrokerError::BadIdToken(_)
        | BrokerError::BadUserinfo(_)
        | BrokerError::Mail(_)
        | BrokerError::Store(_) => (
            StatusCode::BAD_GATEWAY,
            "Le fournisseur d'identité n'a pas répondu correctement. Réessayez plus tard ou utilisez \
             votre compte DataGrandEst.",
        ),
    };
    tracing::warn!(upstream = %provider, error = %err, "federated login failed");
    pages
        .render
        .error(status, "Connexion impossible", message, Some("/login"))
}

fn broker_cookie(name: &'static str, value: String, secure: bool) -> Cookie<'static> {
    Cookie::build((name, value))
        .http_only(true)
        .secure(secure)
        .same_site(SameSite::Lax)
        .path("/broker")
        .build()
}

fn removal(name: &'static str) -> Cookie<'static> {
    Cookie::build(name).path("/broker").build()
}

/// ProConnect's hints beyond `login_hint`, carried from `/authorize` through the
/// login page to the upstream buttons. Only well-formed values are kept.
#[derive(Debug, Deserialize, Default)]
pub(crate) struct UpstreamHints {
    siret_hint: Option<String>,
    idp_hint: Option<String>,
}

impl UpstreamHints {
    /// The same hints without `idp_hint`, when it named one of our own upstreams.
    pub(crate) fn without_idp_hint(self) -> Self {
        Self {
            idp_hint: None,
            ..self
        }
    }

    /// `&siret_hint=…&idp_hint=…` for the well-formed hints, or nothing.
    pub(crate) fn as_query(&self) -> String {
        let mut out = url::form_urlencoded::Serializer::new(String::new());
        if let Some(v) = clean(self.siret_hint.as_ref(), siret_ok) {
            out.append_pair("siret_hint", &v);
        }
        if let Some(v) = clean(self.idp_hint.as_ref(), idp_ok) {
            out.append_pair("idp_hint", &v);
        }
        let query = out.finish();
        if query.is_empty() {
            query
        } else {
            format!("&{query}")
        }
    }
}

fn clean(v: Option<&String>, ok: fn(&str) -> bool) -> Option<String> {
    v.map(|v| v.trim()).filter(|v| ok(v)).map(str::to_owned)
}

fn siret_ok(v: &str) -> bool {
    v.len() == 14 && v.bytes().all(|b| b.is_ascii_digit())
}

fn idp_ok(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 128
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn email_ok(v: &str) -> bool {
    v.contains('@') && v.len() <= 254
}

/// A hint kept only when it looks like what the upstream expects.
fn hints(q: &StartQuery, pending_login_hint: Option<String>) -> Hints {
    Hints {
        login_hint: clean(q.login_hint.as_ref(), email_ok)
            .or_else(|| clean(pending_login_hint.as_ref(), email_ok)),
        siret_hint: clean(q.siret_hint.as_ref(), siret_ok),
        idp_hint: clean(q.idp_hint.as_ref(), idp_ok),
    }
}

/// `GET /broker/{provider}/start?req=…[&login_hint=…&siret_hint=…&idp_hint=…]`.
pub(crate) async fn start(
    State(pages): State<Pages>,
    jar: CookieJar,
    Path(provider): Path<String>,
    Query(q): Query<StartQuery>,
) -> Response {
    let req = q.req.as_deref().filter(|r| !r.is_empty());
    if req.is_some_and(|r| !binding::is_bound(&jar, r)) {
        return foreign_request(&pages);
    }
    let pending_hint = match req {
        Some(r) => match pages.provider.pending_request(r).await {
            Ok(p) => p.and_then(|p| p.login_hint),
            Err(e) => return internal(&pages, &e),
        },
        None => None,
    };
    match pages
        .broker
        .start(&provider, req, &hints(&q, pending_hint))
        .await
    {
        Ok(started) => {
            let cookie = broker_cookie(
                STATE_COOKIE,
                started.state.expose().clone(),
                pages.secure_cookies,
            );
            (jar.add(cookie), see_other(&started.url)).into_response()
        }
        Err(BrokerError::Store(e)) => internal(&pages, &e),
        Err(e) => failure(&pages, &provider, &e),
    }
}

/// `GET /broker/{provider}/callback`.
pub(crate) async fn callback(
    State(pages): State<Pages>,
    jar: CookieJar,
    Path(provider): Path<String>,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let bound = jar.get(STATE_COOKIE).map(|c| c.value().to_owned());
    let jar = jar.remove(removal(STATE_COOKIE));
    if let Some(error) = q.error {
        if let Some(state) = &q.state
            && let Err(e) = pages.broker.abandon(state).await
        {
            return internal(&pages, &e);
        }
        let code: String = error.chars().take(64).collect();
        return (jar, failure(&pages, &provider, &BrokerError::Refused(code))).into_response();
    }
    let (Some(code), Some(state)) = (q.code, q.state) else {
        return (jar, failure(&pages, &provider, &BrokerError::BadState)).into_response();
    };
    // Login CSRF: the callback must come back to the browser that started the login.
    if !bound.is_some_and(|b| constant_time_eq(b.as_bytes(), state.as_bytes())) {
        return (jar, failure(&pages, &provider, &BrokerError::BadState)).into_response();
    }
    match pages.broker.callback(&provider, &state, &code).await {
        Ok(Outcome::LoggedIn(login)) => log_in(&pages, jar, &login).await,
        Ok(Outcome::LinkOffered(offer)) => offer_page(&pages, jar, &offer),
        Err(BrokerError::Store(e)) => internal(&pages, &e),
        Err(e) => (jar, failure(&pages, &provider, &e)).into_response(),
    }
}

/// Counts an upstream login by provider (only configured names, so that a URL cannot
/// create labels) and outcome.
fn count_login(pages: &Pages, provider: &str, outcome: &'static str) {
    let method = pages
        .broker
        .providers()
        .iter()
        .find(|p| p.name == provider)
        .map_or_else(|| "unknown".to_owned(), |p| p.name.clone());
    metrics::counter!("dge_logins_total", "method" => method, "outcome" => outcome).increment(1);
}

async fn log_in(pages: &Pages, jar: CookieJar, login: &FederatedLogin) -> Response {
    count_login(pages, &login.provider, "success");
    let detail = format!("upstream={}", login.provider);
    if let Err(e) = pages
        .registry
        .record(
            &login.account_id,
            "login.succeeded",
            &login.account_id,
            &detail,
        )
        .await
    {
        return internal(pages, &e);
    }
    // The session opens now, or after the code of two-step verification (an
    // account linked to an upstream keeps its own second step).
    let pending = dge_registry::mfa::PendingLogin {
        account_id: login.account_id.clone(),
        req: login.auth_request.clone().unwrap_or_default(),
        upstream: Some(login.provider.clone()),
        upstream_id_token: Some(login.id_token.expose().clone()),
        epoch: None,
    };
    super::mfa::after_first_step(pages, jar, pending, None).await
}

fn offer_page(pages: &Pages, jar: CookieJar, offer: &LinkOffer) -> Response {
    let jar = jar.add(broker_cookie(
        LINK_COOKIE,
        offer.token.expose().clone(),
        pages.secure_cookies,
    ));
    let view = LinkView {
        provider_label: &offer.provider_label,
        masked_email: &offer.masked_email,
        has_password: offer.has_password,
        code_sent: false,
    };
    link_page(pages, jar, StatusCode::OK, &view, None)
}

/// What the linking page shows.
struct LinkView<'a> {
    provider_label: &'a str,
    masked_email: &'a str,
    has_password: bool,
    code_sent: bool,
}

fn link_page(
    pages: &Pages,
    jar: CookieJar,
    status: StatusCode,
    view: &LinkView<'_>,
    error: Option<&str>,
) -> Response {
    let (jar, token) = csrf::token(jar, pages.secure_cookies);
    let context = json!({
        "csrf_token": token,
        "provider_label": view.provider_label,
        "masked_email": view.masked_email,
        "has_password": view.has_password,
        "code_sent": view.code_sent,
        "error": error,
    });
    (jar, pages.render.page(status, "broker_link.html", context)).into_response()
}

/// `POST /broker/link`: the person proves the existing account with its password,
/// or with the code emailed to it.
pub(crate) async fn link(
    State(pages): State<Pages>,
    ClientAddr(address): ClientAddr,
    jar: CookieJar,
    Form(form): Form<LinkForm>,
) -> Response {
    if !csrf::verify(&jar, form.csrf_token.as_deref()) {
        return csrf_refused(&pages);
    }
    let Some(token) = jar.get(LINK_COOKIE).map(|c| c.value().to_owned()) else {
        return failure(&pages, "", &BrokerError::BadOffer);
    };
    let offer = match pages.broker.pending_offer(&token).await {
        Ok(o) => o,
        Err(BrokerError::Store(e)) => return internal(&pages, &e),
        Err(e) => return failure(&pages, "", &e),
    };
    let masked = dge_core::MaskedEmail(&offer.email).to_string();
    let mut view = LinkView {
        provider_label: &offer.provider_label,
        masked_email: &masked,
        has_password: offer.has_password,
        code_sent: false,
    };
    let proof = match form.code.as_deref().filter(|c| !c.trim().is_empty()) {
        Some(code) => {
            view.code_sent = true;
            match pages.broker.check_link_code(&token, code).await {
                Ok(()) => Ok(Proof::EmailedCode),
                Err(BrokerError::WrongCode) => Err(
                    "Code incorrect. Vérifiez le dernier courriel reçu, ou demandez un nouveau code."
                        .into(),
                ),
                Err(BrokerError::Store(e)) => return internal(&pages, &e),
                Err(e) => return failure(&pages, &offer.provider, &e),
            }
        }
        None => match password_proof(&pages, &token, &offer, &form.password, &address).await {
            Ok(result) => result,
            Err(response) => return response,
        },
    };
    match proof {
        Ok(proof) => match pages
            .broker
            .accept_offer(&token, &offer.account_id, proof)
            .await
        {
            Ok(login) => log_in(&pages, jar.remove(removal(LINK_COOKIE)), &login).await,
            Err(BrokerError::Store(e)) => internal(&pages, &e),
            Err(e) => failure(&pages, &offer.provider, &e),
        },
        Err(error) => {
            tracing::info!(account_id = %offer.account_id, upstream = %offer.provider, "link proof refused");
            link_page(&pages, jar, StatusCode::UNAUTHORIZED, &view, Some(&error))
        }
    }
}

/// Checks the account's password as the login form does, throttled on the account's
/// and the address's counters (delays, lock, the owner's lock email, the audit): the
/// link form is no way around them. A wrong one also counts against the offer.
async fn password_proof(
    pages: &Pages,
    token: &str,
    offer: &PendingOffer,
    password: &Secret<String>,
    address: &str,
) -> Result<Result<Proof, Cow<'static, str>>, Response> {
    let checked = match pages.registry.login(&offer.email, password, address).await {
        Ok(o) => o,
        Err(dge_registry::Error::Busy) => return Err(busy(pages)),
        Err(e) => return Err(internal(pages, &e)),
    };
    let error = match checked {
        Ok(account) if account.id == offer.account_id => return Ok(Ok(Proof::Password)),
        Ok(_) | Err(LoginError::BadCredentials) => "Mot de passe incorrect.".into(),
        Err(LoginError::NotActive(AccountStatus::Suspended)) => {
            super::login::suspended_message(pages.render.portal()).into()
        }
        Err(LoginError::NotActive(_)) => {
            "Ce compte n'est pas actif : il ne peut pas être lié pour le moment.".into()
        }
        Err(LoginError::Locked) => super::login::LOCKED_MESSAGE.into(),
    };
    if let Err(e) = pages.broker.offer_failed(token).await {
        return Err(internal(pages, &e));
    }
    Ok(Err(error))
}

/// `POST /broker/link/code`: emails a one-time code to the account's address.
pub(crate) async fn send_code(
    State(pages): State<Pages>,
    jar: CookieJar,
    Form(form): Form<CancelForm>,
) -> Response {
    if !csrf::verify(&jar, form.csrf_token.as_deref()) {
        return csrf_refused(&pages);
    }
    let Some(token) = jar.get(LINK_COOKIE).map(|c| c.value().to_owned()) else {
        return failure(&pages, "", &BrokerError::BadOffer);
    };
    let offer = match pages.broker.pending_offer(&token).await {
        Ok(o) => o,
        Err(BrokerError::Store(e)) => return internal(&pages, &e),
        Err(e) => return failure(&pages, "", &e),
    };
    let masked = match pages.broker.send_link_code(&token).await {
        Ok(m) => m,
        Err(BrokerError::Store(e)) => return internal(&pages, &e),
        Err(e) => return failure(&pages, &offer.provider, &e),
    };
    let view = LinkView {
        provider_label: &offer.provider_label,
        masked_email: &masked,
        has_password: offer.has_password,
        code_sent: true,
    };
    link_page(&pages, jar, StatusCode::OK, &view, None)
}

/// `POST /broker/link/cancel`: nothing is linked or created.
pub(crate) async fn cancel(
    State(pages): State<Pages>,
    jar: CookieJar,
    Form(form): Form<CancelForm>,
) -> Response {
    if !csrf::verify(&jar, form.csrf_token.as_deref()) {
        return csrf_refused(&pages);
    }
    let mut back = "/login".to_owned();
    if let Some(token) = jar.get(LINK_COOKIE).map(|c| c.value().to_owned()) {
        if let Ok(offer) = pages.broker.pending_offer(&token).await
            && let Some(req) = offer.auth_request
        {
            back = format!("/login?req={req}");
        }
        if let Err(e) = pages.broker.cancel_offer(&token).await {
            return internal(&pages, &e);
        }
    }
    let page = pages.render.error(
        StatusCode::OK,
        "Connexion annulée",
        "Aucun compte n'a été lié ni créé. Vous pouvez vous connecter avec votre compte \
         DataGrandEst, ou avec un autre mode de connexion.",
        Some(&back),
    );
    (jar.remove(removal(LINK_COOKIE)), page).into_response()
}

/// `GET /broker/{provider}/logged-out?state=…`: back from the upstream's logout.
pub(crate) async fn logged_out(
    State(pages): State<Pages>,
    Path(provider): Path<String>,
    Query(q): Query<LoggedOutQuery>,
) -> Response {
    let Some(state) = q.state else {
        return logged_out_page(&pages);
    };
    match pages.broker.logged_out(&provider, &state).await {
        Ok(return_to) if return_to.is_empty() => logged_out_page(&pages),
        Ok(return_to) => see_other(&return_to),
        Err(BrokerError::Store(e)) => internal(&pages, &e),
        Err(e) => {
            tracing::warn!(upstream = %provider, error = %e, "upstream logout return refused");
            logged_out_page(&pages)
        }
    }
}

fn logged_out_page(pages: &Pages) -> Response {
    pages.render.error(
        StatusCode::OK,
        "Vous êtes déconnecté(e)",
        "Votre session est terminée. Retournez sur le service pour vous connecter à nouveau.",
        Some("/login"),
    )
}
