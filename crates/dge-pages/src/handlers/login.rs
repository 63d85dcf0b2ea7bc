//! The login page and the local login form.

use std::borrow::Cow;

use axum::Form;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::CookieJar;
use dge_core::Secret;
use dge_oidc::session::SESSION_COOKIE;
use dge_registry::{AccountStatus, LoginError};
use serde::Deserialize;
use serde_json::json;

use super::broker::UpstreamHints;
use super::{
    busy, csrf_refused, current_session, expired_request, foreign_request, internal, see_other,
};
use crate::client::ClientAddr;
use crate::{Pages, Portal, binding, csrf, next};

/// `?req=` on the login and sign-up pages.
#[derive(Debug, Deserialize, Default)]
pub(crate) struct ReqQuery {
    pub(crate) req: Option<String>,
}

/// The login page's query: `req`, and the upstream hints `/authorize` carried.
#[derive(Debug, Deserialize, Default)]
pub(crate) struct LoginQuery {
    req: Option<String>,
    #[serde(flatten)]
    hints: UpstreamHints,
}

/// The login form. Not `Debug`: it carries the password.
#[derive(Deserialize)]
pub(crate) struct LoginForm {
    csrf_token: Option<String>,
    #[serde(default)]
    req: String,
    #[serde(default)]
    pub(crate) identifier: String,
    #[serde(default)]
    password: Secret<String>,
}

fn provider_links(pages: &Pages, req: &str, hints: &str) -> serde_json::Value {
    let suffix = if req.is_empty() {
        String::new()
    } else {
        format!("?req={req}{hints}")
    };
    pages
        .broker
        .providers()
        .iter()
        .map(|p| {
            json!({
                "name": p.name,
                "label": p.label,
                "configured": p.configured(),
                "url": format!("/broker/{}/start{suffix}", p.name),
            })
        })
        .collect()
}

pub(crate) fn login_page(
    pages: &Pages,
    jar: CookieJar,
    status: StatusCode,
    req: &str,
    identifier: &str,
    error: Option<&str>,
) -> Response {
    login_page_with_hints(pages, jar, status, req, identifier, error, "")
}

/// The login page; `hints` (`&siret_hint=…`) go on the upstream buttons.
fn login_page_with_hints(
    pages: &Pages,
    jar: CookieJar,
    status: StatusCode,
    req: &str,
    identifier: &str,
    error: Option<&str>,
    hints: &str,
) -> Response {
    let (jar, token) = csrf::token(jar, pages.secure_cookies);
    let context = json!({
        "csrf_token": token,
        "req": req,
        "identifier": identifier,
        "error": error,
        "resend_link": error == Some(UNCONFIRMED_MESSAGE),
        "providers": provider_links(pages, req, hints),
    });
    (jar, pages.render.page(status, "login.html", context)).into_response()
}

/// `GET /`: for people who come to the provider directly, the login page, or with a
/// live session the connected state (with « Mon compte » and « Se déconnecter »).
pub(crate) async fn home(State(pages): State<Pages>, jar: CookieJar) -> Response {
    let account_id = match current_session(&pages, &jar).await {
        Ok(Some((id, _))) => id,
        Ok(None) => return login_page(&pages, jar, StatusCode::OK, "", "", None),
        Err(e) => return internal(&pages, &e),
    };
    match pages.registry.own_account(&account_id).await {
        Ok(account) => {
            let name = format!("{} {}", account.given_name, account.family_name);
            let name = Some(name.trim())
                .filter(|n| !n.is_empty())
                .or(account.login.as_deref())
                .unwrap_or_default();
            logged_in_page(&pages, jar, name)
        }
        // The account went away with the session still read as live: log in again.
        Err(dge_registry::Error::BadToken) => login_page(&pages, jar, StatusCode::OK, "", "", None),
        Err(e) => internal(&pages, &e),
    }
}

/// « Vous êtes connecté(e) », with the logout form (its CSRF token is bound to the
/// session in `jar`).
fn logged_in_page(pages: &Pages, jar: CookieJar, name: &str) -> Response {
    let (jar, token) = csrf::token(jar, pages.secure_cookies);
    let context = json!({ "name": name, "csrf_token": token });
    let page = pages.render.page(StatusCode::OK, "logged_in.html", context);
    (jar, page).into_response()
}

/// `GET /login`.
pub(crate) async fn show(
    State(pages): State<Pages>,
    jar: CookieJar,
    Query(q): Query<LoginQuery>,
) -> Response {
    let req = q.req.unwrap_or_default();
    if !req.is_empty() && !binding::is_bound(&jar, &req) {
        return foreign_request(&pages);
    }
    let hint = match pages.provider.pending_request(&req).await {
        Ok(Some(p)) => p.login_hint.unwrap_or_default(),
        // A finished request (the back button after logging in) or an expired one:
        // its form could only fail.
        Ok(None) if !req.is_empty() => return expired_request(&pages),
        Ok(None) => String::new(),
        Err(e) => return internal(&pages, &e),
    };
    let hints = q.hints.as_query();
    login_page_with_hints(&pages, jar, StatusCode::OK, &req, &hint, None, &hints)
}

/// What a suspended account is told, whichever way it tries to log in (password,
/// ProConnect, the Région), with the support address when one is configured. Only
/// after a right password or an upstream's proof, so that it tells nothing to
/// someone who does not hold the account.
pub(crate) fn suspended_message(portal: &Portal) -> String {
    let address = portal.support_email.trim();
    if address.is_empty() {
        format!(
            "Votre compte est suspendu. Pour en savoir plus, écrivez à l'équipe {}.",
            portal.name
        )
    } else {
        format!(
            "Votre compte est suspendu. Pour en savoir plus, écrivez à l'équipe {} à l'adresse \
             {address}.",
            portal.name
        )
    }
}

/// The answer to a right password of a sign-up not confirmed yet; the login page puts
/// the link to « Renvoyer le courriel de confirmation » under it.
const UNCONFIRMED_MESSAGE: &str = "Votre adresse électronique n'est pas encore confirmée : ouvrez \
     le lien du courriel de confirmation que nous vous avons envoyé, ou demandez-en un nouveau.";

pub(crate) fn not_active_message(portal: &Portal, status: AccountStatus) -> Cow<'static, str> {
    Cow::Borrowed(match status {
        AccountStatus::Suspended => return Cow::Owned(suspended_message(portal)),
        AccountStatus::Unconfirmed => UNCONFIRMED_MESSAGE,
        AccountStatus::Pending => {
            "Votre compte est en attente de validation par l'équipe DataGrandEst. Vous recevrez \
             un courriel dès qu'il sera actif."
        }
        AccountStatus::Rejected | AccountStatus::Active => {
            "Votre demande de compte n'a pas été acceptée. Le courriel que vous avez reçu en \
             donne le motif."
        }
    })
}

/// The answer to a locked identifier or address, the same whether the account exists.
pub(crate) const LOCKED_MESSAGE: &str = "Trop de tentatives de connexion ont échoué. Par sécurité, la \
     connexion par mot de passe est suspendue pendant quelques minutes : réessayez plus tard, \
     ou choisissez un nouveau mot de passe avec « Mot de passe oublié ? ».";

/// `POST /login`.
pub(crate) async fn submit(
    State(pages): State<Pages>,
    ClientAddr(address): ClientAddr,
    jar: CookieJar,
    Form(form): Form<LoginForm>,
) -> Response {
    if !csrf::verify_anonymous_form(&jar, form.csrf_token.as_deref()) {
        return csrf_refused(&pages);
    }
    if !form.req.is_empty() && !binding::is_bound(&jar, &form.req) {
        return foreign_request(&pages);
    }
    let outcome = match pages
        .registry
        .login_with_state(&form.identifier, &form.password, &address)
        .await
    {
        Ok(o) => o,
        Err(dge_registry::Error::Busy) => return busy(&pages),
        Err(e) => return internal(&pages, &e),
    };
    let label = match &outcome {
        Ok(_) => "success",
        Err(LoginError::BadCredentials) => "bad_credentials",
        Err(LoginError::NotActive(_)) => "not_active",
        Err(LoginError::Locked) => "locked",
    };
    metrics::counter!("dge_logins_total", "method" => "password", "outcome" => label).increment(1);
    let state = match outcome {
        Ok(s) => s,
        Err(LoginError::BadCredentials) => {
            // An address that logs in through an upstream has no local password: say
            // which button to use rather than leave the person stuck. This tells that
            // the address has such an account; accepted, as the brief of issue 6 asks.
            let labels = match pages.broker.federated_labels(&form.identifier).await {
                Ok(l) => l,
                Err(e) => return internal(&pages, &e),
            };
            let message = match labels.first() {
                Some(label) => format!(
                    "Ce compte n'a pas de mot de passe DataGrandEst : il se connecte avec \
                     {label}. Utilisez le bouton « {label} » ci-dessus."
                ),
                None => "Identifiant ou mot de passe incorrect.".to_owned(),
            };
            return login_page(
                &pages,
                jar,
                StatusCode::UNAUTHORIZED,
                &form.req,
                &form.identifier,
                Some(&message),
            );
        }
        Err(LoginError::Locked) => {
            return login_page(
                &pages,
                jar,
                StatusCode::TOO_MANY_REQUESTS,
                &form.req,
                &form.identifier,
                Some(LOCKED_MESSAGE),
            );
        }
        Err(LoginError::NotActive(status)) => {
            return login_page(
                &pages,
                jar,
                StatusCode::FORBIDDEN,
                &form.req,
                &form.identifier,
                Some(&not_active_message(pages.render.portal(), status)),
            );
        }
    };
    // The session opens now, or after the code of two-step verification.
    let pending = dge_registry::mfa::PendingLogin {
        account_id: state.account.id.clone(),
        req: form.req,
        upstream: None,
        upstream_id_token: None,
        epoch: None,
    };
    super::mfa::after_first_step(&pages, jar, pending, Some(state)).await
}

/// After any successful login: back to the portal module, or a confirmation page.
/// `epoch` is the account's `sessions_epoch` if this request read it.
pub(crate) async fn finish_login(
    pages: &Pages,
    jar: CookieJar,
    req: &str,
    account_id: &str,
    name: &str,
    auth_time: i64,
    epoch: Option<i64>,
) -> Response {
    if req.is_empty() {
        // A person sent here from the device page or an account page goes back there.
        if let Some(next) = next::after_login(&jar) {
            return (next::forget(jar), see_other(&next)).into_response();
        }
        return logged_in_page(pages, jar, name);
    }
    let cookie = jar.get(SESSION_COOKIE).map(|c| c.value().to_owned());
    match pages
        .provider
        .complete(req, account_id, auth_time, cookie.as_deref(), epoch)
        .await
    {
        Ok(Some(url)) => (jar, see_other(&url)).into_response(),
        Ok(None) => (
            jar,
            pages.render.error(
                StatusCode::BAD_REQUEST,
                "Demande de connexion expirée",
                "Vous êtes bien connecté(e), mais la demande du service a expiré. Retournez sur le \
                 service et cliquez à nouveau sur « Se connecter ».",
                None,
            ),
        )
            .into_response(),
        Err(e) => internal(pages, &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_suspended_person_is_given_the_support_address_when_there_is_one() {
        let mut portal = Portal::default();
        portal.name = "Portail Ouvert".into();
        portal.support_email = "aide@portail.example.org".into();
        assert_eq!(
            not_active_message(&portal, AccountStatus::Suspended),
            "Votre compte est suspendu. Pour en savoir plus, écrivez à l'équipe Portail Ouvert \
             à l'adresse aide@portail.example.org."
        );
        portal.support_email = String::new();
        assert_eq!(
            suspended_message(&portal),
            "Votre compte est suspendu. Pour en savoir plus, écrivez à l'équipe Portail Ouvert."
        );
    }
}
