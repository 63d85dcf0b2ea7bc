//! `__Host-` cookie names over HTTPS.
//!
//! A browser accepts a `__Host-` cookie only when it is `Secure`, has `Path=/` and no
//! `Domain`, so a sibling subdomain cannot plant one. Over HTTPS this middleware
//! renames the cookies below on the way out (`dge_session` → `__Host-dge_session`), and
//! on the way in hands the handlers the prefixed ones under their plain names while it
//! drops plain ones, which anybody could have set. Plain HTTP (the loopback dev server)
//! keeps plain names: browsers refuse `__Host-` there.
//!
//! Missing: the broker's cookies (`dge_upstream_state`, `dge_link`) keep plain names
//! because they are scoped to `/broker`; both are checked against a random value.

use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

/// The prefix.
pub const HOST_PREFIX: &str = "__Host-";
/// Cookies with `Path=/` that get the prefix over HTTPS.
pub const HOST_COOKIES: [&str; 4] = [
    dge_oidc::session::SESSION_COOKIE,
    crate::csrf::CSRF_COOKIE,
    crate::next::NEXT_COOKIE,
    crate::handlers::mfa::MFA_COOKIE,
];

/// The name a cookie is sent under.
#[must_use]
pub fn wire_name(name: &str, secure: bool) -> String {
    if secure && HOST_COOKIES.contains(&name) {
        format!("{HOST_PREFIX}{name}")
    } else {
        name.to_owned()
    }
}

/// A `Cookie` request header as handlers see it: prefixed cookies renamed, plain ones
/// of [`HOST_COOKIES`] dropped.
#[must_use]
pub fn incoming(cookie_header: &str) -> String {
    cookie_header
        .split(';')
        .map(str::trim)
        .filter_map(|pair| {
            let name = pair.split('=').next().unwrap_or_default();
            match name.strip_prefix(HOST_PREFIX) {
                Some(plain) if HOST_COOKIES.contains(&plain) => Some(&pair[HOST_PREFIX.len()..]),
                _ if HOST_COOKIES.contains(&name) => None,
                _ => Some(pair),
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// A `Set-Cookie` header as sent: [`HOST_COOKIES`] prefixed.
#[must_use]
pub fn outgoing(set_cookie: &str) -> String {
    let name = set_cookie.split('=').next().unwrap_or_default();
    format!("{}{}", wire_name(name, true), &set_cookie[name.len()..])
}

/// The middleware, for HTTPS deployments only.
pub async fn host_prefix(mut request: Request, next: Next) -> Response {
    let cookies: Vec<String> = request
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(incoming)
        .filter(|v| !v.is_empty())
        .collect();
    request.headers_mut().remove(header::COOKIE);
    for value in cookies {
        if let Ok(value) = HeaderValue::from_str(&value) {
            request.headers_mut().append(header::COOKIE, value);
        }
    }
    let mut response = next.run(request).await;
    let set: Vec<HeaderValue> = response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| HeaderValue::from_str(&outgoing(v)).ok())
        .collect();
    response.headers_mut().remove(header::SET_COOKIE);
    for value in set {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_get_the_prefix_only_over_https() {
        assert_eq!(wire_name("dge_session", true), "__Host-dge_session");
        assert_eq!(wire_name("dge_csrf", true), "__Host-dge_csrf");
        assert_eq!(wire_name("dge_next", true), "__Host-dge_next");
        assert_eq!(wire_name("dge_session", false), "dge_session");
        assert_eq!(wire_name("dge_link", true), "dge_link");
    }

    #[test]
    fn planted_plain_cookies_are_dropped_and_prefixed_ones_renamed() {
        assert_eq!(
            incoming("dge_csrf=planted; __Host-dge_csrf=mine; __Host-dge_session=s; dge_link=l"),
            "dge_csrf=mine; dge_session=s; dge_link=l"
        );
        assert_eq!(incoming("dge_session=planted"), "");
        assert_eq!(incoming("__Host-other=x"), "__Host-other=x");
    }

    #[test]
    fn set_cookies_are_prefixed() {
        assert_eq!(
            outgoing("dge_session=abc; HttpOnly; Secure; Path=/"),
            "__Host-dge_session=abc; HttpOnly; Secure; Path=/"
        );
        assert_eq!(
            outgoing("dge_link=x; Path=/broker"),
            "dge_link=x; Path=/broker"
        );
    }
}
