//! `GET|POST /authorize`: where portal modules send people to log in.
//!
//! OIDC Core §3.1.2.1 lets a module post the request as a form. A module's form is
//! posted from its own site, and our cookies are `SameSite=Lax`: the browser sends
//! them with a cross-site GET navigation but not with a cross-site POST. Answered
//! there, the request would see no session (a person logged in would log in again,
//! `prompt=none` would be `login_required`) and would replace the browser's CSRF and
//! request-binding cookies. So a POST is answered by a 303 to the very same request
//! as a GET, which the browser follows with its cookies; everything else (checks,
//! errors, rate limit, binding to the browser) is the GET's.

use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Query, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::CookieJar;
use dge_oidc::{AuthorizeOutcome, AuthorizeParams};

use dge_oidc::session::SESSION_COOKIE;

use super::broker::UpstreamHints;
use super::{internal, see_other};
use crate::client::ClientAddr;
use crate::{Pages, binding};

/// Checks the request, then sends the person to the client (a code or an error) or
/// to the login page. ProConnect's `siret_hint` and `idp_hint`, when the module gives
/// them, ride along to the login page, whose upstream buttons pass them on.
pub(crate) async fn authorize(
    State(pages): State<Pages>,
    ClientAddr(address): ClientAddr,
    jar: CookieJar,
    hints: Result<Query<UpstreamHints>, QueryRejection>,
    query: Result<Query<AuthorizeParams>, QueryRejection>,
) -> Response {
    // Counted before anything is parsed or stored: a flood costs one counter.
    match pages.provider.authorize_rate(&address).await {
        Ok(None) => {}
        Ok(Some(secs)) => {
            let mut page = pages.render.error(
                StatusCode::TOO_MANY_REQUESTS,
                "Trop de demandes",
                &format!(
                    "Trop de demandes de connexion sont arrivées depuis votre adresse. \
                     Réessayez dans {}.",
                    wait_in_french(secs)
                ),
                None,
            );
            if let Ok(value) = secs.to_string().parse() {
                page.headers_mut().insert(header::RETRY_AFTER, value);
            }
            return page;
        }
        Err(e) => return internal(&pages, &e),
    }
    let Ok(Query(params)) = query else {
        return malformed(&pages);
    };
    let cookie = jar.get(SESSION_COOKIE).map(|c| c.value().to_owned());
    let outcome = pages.provider.authorize(params, cookie.as_deref()).await;
    // A stored request is bound to this browser before it leaves /authorize.
    let jar = match &outcome {
        Ok(AuthorizeOutcome::Consent { req } | AuthorizeOutcome::Login { req, .. }) => {
            binding::bind(jar, pages.secure_cookies, req)
        }
        _ => jar,
    };
    let response = match outcome {
        Ok(AuthorizeOutcome::ErrorPage(message)) => pages.render.error(
            StatusCode::BAD_REQUEST,
            "Demande de connexion refusée",
            &message,
            None,
        ),
        Ok(AuthorizeOutcome::Redirect(url)) => see_other(&url),
        Ok(AuthorizeOutcome::Consent { req }) => see_other(&format!("/consent?req={req}")),
        // `idp_hint` naming one of our upstreams (`proconnect`, `region`) skips the
        // login page; any other value is ProConnect's own hint and rides along.
        Ok(AuthorizeOutcome::Login {
            req,
            idp_hint: Some(idp),
            ..
        }) if pages.broker.providers().iter().any(|p| p.name == idp) => {
            let hints = hints.map(|Query(h)| h).unwrap_or_default();
            see_other(&format!(
                "/broker/{}/start?req={req}{}",
                url::form_urlencoded::byte_serialize(idp.as_bytes()).collect::<String>(),
                hints.without_idp_hint().as_query()
            ))
        }
        Ok(AuthorizeOutcome::Login { req, .. }) => {
            let hints = hints.map(|Query(h)| h).unwrap_or_default();
            see_other(&format!("/login?req={req}{}", hints.as_query()))
        }
        Err(e) => internal(&pages, &e),
    };
    (jar, response).into_response()
}

/// `POST /authorize`: the parameters of the query and of the form body, in that
/// order, sent back as the query of a GET. Nothing is checked or stored here: a
/// parameter given twice (in both, or twice in one) is refused by the GET as a
/// repeated query parameter is. The body is a form within the pages' limits
/// ([`crate::limits`]); the request may come from another origin
/// ([`crate::origin`]) and carries no CSRF token of ours: it only starts a login.
pub(crate) async fn authorize_post(
    State(pages): State<Pages>,
    RawQuery(query): RawQuery,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let Ok(Form(body)) = form else {
        return malformed(&pages);
    };
    let query = query.unwrap_or_default();
    let mut as_get = url::form_urlencoded::Serializer::new(String::new());
    as_get.extend_pairs(url::form_urlencoded::parse(query.as_bytes()));
    as_get.extend_pairs(body);
    see_other(&format!("/authorize?{}", as_get.finish()))
}

/// The page for a request that cannot be read.
fn malformed(pages: &Pages) -> Response {
    pages.render.error(
        StatusCode::BAD_REQUEST,
        "Demande de connexion invalide",
        "La demande de connexion envoyée par le service est mal formée.",
        None,
    )
}

/// `secs` as a French duration: « 45 secondes », « 2 minutes ».
fn wait_in_french(secs: u64) -> String {
    match secs {
        0 | 1 => "1 seconde".to_owned(),
        2..=90 => format!("{secs} secondes"),
        _ => format!("{} minutes", secs.div_ceil(60)),
    }
}

#[cfg(test)]
mod tests {
    use super::wait_in_french;

    #[test]
    fn waits_read_as_french_durations() {
        assert_eq!(wait_in_french(1), "1 seconde");
        assert_eq!(wait_in_french(45), "45 secondes");
        assert_eq!(wait_in_french(91), "2 minutes");
        assert_eq!(wait_in_french(900), "15 minutes");
    }
}
