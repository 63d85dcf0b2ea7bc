//! Binds a pending authorization request (`req`) to the browser that started it,
//! against login CSRF: without it, an attacker could start a request in their own
//! browser and have a victim finish it (log in, consent, come back from an
//! upstream) through a link carrying the attacker's `req`.
//!
//! `/authorize` adds a tag of `req` to the `dge_authreq` cookie; the login page, its
//! POST, the upstream buttons and the consent page refuse a `req` whose tag is
//! missing. The tag is a SHA-256 of the browser's own CSRF token and `req`, so a
//! tag seen in one browser is worthless in another. The cookie keeps the newest
//! few tags, so several tabs may log in to several modules at once.

use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};
use dge_core::token::{constant_time_eq, hash_token};

use crate::csrf;

/// Name of the cookie holding the tags of the requests this browser started.
pub const AUTHREQ_COOKIE: &str = "dge_authreq";

/// Requests remembered at once (one per tab logging in, with room to spare).
const KEPT: usize = 8;
/// Hex characters of a tag (128 bits).
const TAG_LEN: usize = 32;

fn tag(csrf_token: &str, req: &str) -> String {
    let mut t = hash_token(&format!("dge-authreq\n{csrf_token}\n{req}"));
    t.truncate(TAG_LEN);
    t
}

/// Remembers in the browser that it started `req`. Creates the CSRF token (the
/// tag's key) when the browser has none yet.
pub fn bind(jar: CookieJar, secure: bool, req: &str) -> CookieJar {
    // The key is the CSRF cookie's secret, not the form token (which changes with the
    // session).
    let (jar, _) = csrf::token(jar, secure);
    let key = csrf::secret(&jar).unwrap_or_default().to_owned();
    let mut tags: Vec<String> = jar
        .get(AUTHREQ_COOKIE)
        .map(|c| {
            c.value()
                .split('.')
                .filter(|t| t.len() == TAG_LEN)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    tags.push(tag(&key, req));
    let skip = tags.len().saturating_sub(KEPT);
    let value = tags[skip..].join(".");
    let cookie = Cookie::build((AUTHREQ_COOKIE, value))
        .http_only(true)
        .secure(secure)
        .same_site(SameSite::Lax)
        .path("/")
        .build();
    jar.add(cookie)
}

/// Whether this browser started `req`.
#[must_use]
pub fn is_bound(jar: &CookieJar, req: &str) -> bool {
    let (Some(key), Some(tags)) = (csrf::secret(jar), jar.get(AUTHREQ_COOKIE)) else {
        return false;
    };
    let expected = tag(key, req);
    tags.value()
        .split('.')
        .any(|t| constant_time_eq(t.as_bytes(), expected.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn browser() -> CookieJar {
        csrf::token(CookieJar::new(), false).0
    }

    #[test]
    fn only_the_browser_that_started_a_request_may_finish_it() {
        let mine = bind(browser(), false, "req-1");
        assert!(is_bound(&mine, "req-1"));
        assert!(!is_bound(&mine, "req-2"));
        // The attacker's browser has its own CSRF key: copying the tag is not enough.
        let tags = mine.get(AUTHREQ_COOKIE).unwrap().value().to_owned();
        let theirs = browser().add(Cookie::new(AUTHREQ_COOKIE, tags));
        assert!(!is_bound(&theirs, "req-1"));
        assert!(!is_bound(&CookieJar::new(), "req-1"));
        assert!(!is_bound(&browser(), "req-1"));
    }

    #[test]
    fn a_request_stays_bound_once_the_browser_has_a_session() {
        // Bound before login, checked again at consent with the session cookie set:
        // the tag's key is the CSRF secret, not the session-bound form token.
        let jar = bind(browser(), false, "req-1");
        let logged_in = jar.add(Cookie::new(dge_oidc::session::SESSION_COOKIE, "session"));
        assert!(is_bound(&logged_in, "req-1"));
    }

    #[test]
    fn the_newest_requests_are_kept() {
        let mut jar = browser();
        for i in 0..=KEPT {
            jar = bind(jar, false, &format!("req-{i}"));
        }
        assert!(!is_bound(&jar, "req-0"), "the oldest is dropped");
        assert!((1..=KEPT).all(|i| is_bound(&jar, &format!("req-{i}"))));
    }
}
