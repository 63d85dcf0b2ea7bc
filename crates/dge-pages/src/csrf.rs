//! CSRF protection by double submit: a random token in an `HttpOnly`, `SameSite`
//! cookie, repeated in a hidden field of every form and compared in constant time.
//! A cross-site page can make the browser send the cookie but cannot read it to
//! fill the field.

use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};
use dge_core::token::{constant_time_eq, random_token};

/// Name of the CSRF cookie.
pub const CSRF_COOKIE: &str = "dge_csrf";

/// The jar's CSRF token, creating one (and its cookie) when missing.
pub fn token(jar: CookieJar, secure: bool) -> (CookieJar, String) {
    if let Some(existing) = jar
        .get(CSRF_COOKIE)
        .map(|c| c.value().to_owned())
        .filter(|v| v.len() >= 32)
    {
        return (jar, existing);
    }
    let value = random_token();
    let cookie = Cookie::build((CSRF_COOKIE, value.clone()))
        .http_only(true)
        .secure(secure)
        .same_site(SameSite::Lax)
        .path("/")
        .build();
    (jar.add(cookie), value)
}

/// Whether a submitted form's token matches the cookie.
#[must_use]
pub fn verify(jar: &CookieJar, submitted: Option<&str>) -> bool {
    match (jar.get(CSRF_COOKIE), submitted) {
        (Some(cookie), Some(field)) if cookie.value().len() >= 32 => {
            constant_time_eq(cookie.value().as_bytes(), field.as_bytes())
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_cookie_value_passes() {
        let (jar, t) = token(CookieJar::new(), false);
        assert!(verify(&jar, Some(&t)));
        assert!(!verify(&jar, Some("forged")));
        assert!(!verify(&jar, None));
        assert!(!verify(&CookieJar::new(), Some(&t)));
    }
}
