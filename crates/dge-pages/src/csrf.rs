//! CSRF protection by double submit, bound to the session: a random secret in an
//! `HttpOnly`, `SameSite` cookie, and in every form a token derived from it, the
//! HMAC-SHA256 of the session cookie (empty without a session) keyed by that secret.
//! A cross-site page can make the browser send the cookie but cannot read it to fill
//! the field; and a secret and token pair obtained on another visit (the attacker's
//! own, planted in a victim's browser) does not match the victim's session.

use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};
use dge_core::token::{constant_time_eq, random_token};
use dge_oidc::session::SESSION_COOKIE;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Name of the CSRF cookie (`__Host-dge_csrf` over HTTPS, see [`crate::cookies`]).
pub const CSRF_COOKIE: &str = "dge_csrf";

/// The form token of `jar`'s secret and session.
fn bound_token(secret: &str, jar: &CookieJar) -> String {
    token_for(secret, jar.get(SESSION_COOKIE).map_or("", |c| c.value()))
}

/// The form token of `secret` for the session cookie `session` (empty: none).
fn token_for(secret: &str, session: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any size");
    mac.update(b"dge-csrf\0");
    mac.update(session.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The browser's CSRF secret, when it has one (also the key of
/// [`crate::binding`]'s tags).
pub(crate) fn secret(jar: &CookieJar) -> Option<&str> {
    jar.get(CSRF_COOKIE)
        .map(Cookie::value)
        .filter(|v| v.len() >= 32)
}

/// The form token for `jar`, creating the secret (and its cookie) when missing. Call it
/// after the session cookie of the response, if any, was added to `jar`.
pub fn token(jar: CookieJar, secure: bool) -> (CookieJar, String) {
    if let Some(existing) = secret(&jar) {
        let token = bound_token(existing, &jar);
        return (jar, token);
    }
    let value = random_token();
    let cookie = Cookie::build((CSRF_COOKIE, value.clone()))
        .http_only(true)
        .secure(secure)
        .same_site(SameSite::Lax)
        .path("/")
        .build();
    let jar = jar.add(cookie);
    let token = bound_token(&value, &jar);
    (jar, token)
}

/// Whether a submitted form's token matches the cookie's secret and the session.
#[must_use]
pub fn verify(jar: &CookieJar, submitted: Option<&str>) -> bool {
    match (secret(jar), submitted) {
        (Some(secret), Some(field)) => {
            constant_time_eq(bound_token(secret, jar).as_bytes(), field.as_bytes())
        }
        _ => false,
    }
}

/// [`verify`] for the forms a person fills before logging in (login, sign-up,
/// forgotten password): the token of the same secret without a session passes too.
/// A login page opened in a second tab stays usable after logging in in the first
/// one; these forms act on no session, so a token without one gives nothing away,
/// and login requests are bound to their browser besides ([`crate::binding`]).
#[must_use]
pub fn verify_anonymous_form(jar: &CookieJar, submitted: Option<&str>) -> bool {
    verify(jar, submitted)
        || matches!((secret(jar), submitted), (Some(secret), Some(field))
            if constant_time_eq(token_for(secret, "").as_bytes(), field.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_token_of_the_cookie_passes() {
        let (jar, t) = token(CookieJar::new(), false);
        assert!(verify(&jar, Some(&t)));
        assert!(!verify(&jar, Some("forged")));
        assert!(!verify(&jar, None));
        assert!(!verify(&CookieJar::new(), Some(&t)));
        let secret = jar.get(CSRF_COOKIE).unwrap().value().to_owned();
        assert!(
            !verify(&jar, Some(&secret)),
            "the secret itself is not the token"
        );
    }

    #[test]
    fn a_token_is_bound_to_the_session() {
        let (anonymous, t) = token(CookieJar::new(), false);
        let victim = anonymous
            .clone()
            .add(Cookie::new(SESSION_COOKIE, "victim-session"));
        assert!(!verify(&victim, Some(&t)));
        let (victim, bound) = token(victim, false);
        assert!(verify(&victim, Some(&bound)));
        let other = victim.add(Cookie::new(SESSION_COOKIE, "other-session"));
        assert!(!verify(&other, Some(&bound)));
    }

    #[test]
    fn forms_filled_before_login_accept_the_token_of_no_session() {
        let (anonymous, t) = token(CookieJar::new(), false);
        let logged_in = anonymous.add(Cookie::new(SESSION_COOKIE, "new-session"));
        assert!(!verify(&logged_in, Some(&t)));
        assert!(verify_anonymous_form(&logged_in, Some(&t)));
        assert!(!verify_anonymous_form(&logged_in, Some("forged")));
        assert!(!verify_anonymous_form(&CookieJar::new(), Some(&t)));
    }
}
