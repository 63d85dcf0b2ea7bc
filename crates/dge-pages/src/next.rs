//! Where a person goes back to after logging in, when a page sent them to log in
//! first: the device page (`dgectl login`) or one of the "Mon compte" pages.
//!
//! The place is kept in a cookie ([`NEXT_COOKIE`]) and checked again on the way out
//! against the pages that may ask for it: nothing else, and never another site, can
//! come out of it.

use axum::response::{IntoResponse, Response};
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};
use dge_oidc::device::normalise_user_code;

use crate::Pages;
use crate::handlers::see_other;

/// The cookie that holds the place to come back to.
pub const NEXT_COOKIE: &str = "dge_next";

/// The account pages a login comes back to (GET pages that change nothing).
const ACCOUNT_PAGES: [&str; 5] = [
    "/account",
    "/account/password",
    "/account/email",
    "/account/mfa",
    "/account/delete",
];

/// The device page for `user_code` (normalised, or nothing).
pub(crate) fn device_path(user_code: Option<&str>) -> String {
    match user_code.and_then(normalise_user_code) {
        Some(code) => format!("/device?user_code={code}"),
        None => "/device".to_owned(),
    }
}

/// `value` when it is one of the places to come back to, rebuilt from its parts.
fn checked(value: &str) -> Option<String> {
    if let Some(page) = ACCOUNT_PAGES.iter().find(|p| **p == value) {
        return Some((*page).to_owned());
    }
    let code = value.strip_prefix("/device?user_code=");
    (value == "/device" || code.is_some_and(|c| normalise_user_code(c).is_some()))
        .then(|| device_path(code))
}

/// The place to go back to after a login, from the jar, if any.
pub(crate) fn after_login(jar: &CookieJar) -> Option<String> {
    checked(jar.get(NEXT_COOKIE)?.value())
}

/// Forgets where to go back to.
pub(crate) fn forget(jar: CookieJar) -> CookieJar {
    jar.remove(Cookie::build(NEXT_COOKIE).path("/"))
}

/// To the login page, remembering to come back to `path` (ignored unless it is one of
/// the places above).
pub(crate) fn login_first(pages: &Pages, jar: CookieJar, path: &str) -> Response {
    let Some(path) = checked(path) else {
        return see_other("/login");
    };
    let cookie = Cookie::build((NEXT_COOKIE, path))
        .http_only(true)
        .secure(pages.secure_cookies)
        .same_site(SameSite::Lax)
        .path("/")
        .build();
    (jar.add(cookie), see_other("/login")).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_device_and_account_pages_are_places_to_come_back_to() {
        let with = |v: &str| CookieJar::new().add(Cookie::new(NEXT_COOKIE, v.to_owned()));
        assert_eq!(after_login(&with("/device")), Some("/device".into()));
        assert_eq!(
            after_login(&with("/device?user_code=bcdf-ghjk")),
            Some("/device?user_code=BCDF-GHJK".into())
        );
        for page in ACCOUNT_PAGES {
            assert_eq!(after_login(&with(page)), Some(page.into()));
        }
        for bad in [
            "https://evil.example/",
            "//evil.example",
            "/\\evil.example",
            "/device?user_code=x&y=1",
            "/account/../logout",
            "/account?x=1",
            "/account/export",
            "/logout",
            "",
        ] {
            assert_eq!(after_login(&with(bad)), None, "{bad}");
        }
        assert_eq!(after_login(&CookieJar::new()), None);
    }
}
