//! Refuses state-changing page requests sent from another origin.
//!
//! Browsers send `Origin` with every POST; a form posted from another site, or from a
//! sandboxed or opaque context (`Origin: null`), is refused with a French 403 before
//! any handler runs. Requests without `Origin` (older clients, tools) go on to the
//! CSRF token check. `/logout` and `/authorize` are left out: OpenID Connect lets a
//! relying party post its requests there. Logging out still asks for a confirmation
//! form, and a posted authorization request is only turned into the same request as a
//! GET, which any site can already send the browser to.

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use crate::Pages;

/// Paths whose POST may come from another origin.
const CROSS_ORIGIN_PATHS: [&str; 2] = ["/logout", "/authorize"];

/// The ASCII origin (`https://host[:port]`) of `url`; `None` if it has none.
#[must_use]
pub fn origin_of(url: &str) -> Option<String> {
    let origin = url::Url::parse(url).ok()?.origin();
    origin.is_tuple().then(|| origin.ascii_serialization())
}

/// Whether a request with this method, path and `Origin` header may go on.
#[must_use]
pub fn allowed(method: &Method, path: &str, origin: Option<&[u8]>, ours: &str) -> bool {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
        || CROSS_ORIGIN_PATHS.contains(&path)
    {
        return true;
    }
    origin.is_none_or(|o| o == ours.as_bytes())
}

/// The middleware on the page routes.
pub(crate) async fn same_origin(
    State(pages): State<Pages>,
    request: Request,
    next: Next,
) -> Response {
    let ours = origin_of(pages.provider.issuer()).unwrap_or_default();
    let origin = request.headers().get(header::ORIGIN).map(|v| v.as_bytes());
    if allowed(request.method(), request.uri().path(), origin, &ours) {
        return next.run(request).await;
    }
    tracing::warn!(path = request.uri().path(), "cross-origin form refused");
    pages.render.error(
        StatusCode::FORBIDDEN,
        "Requête refusée",
        "Ce formulaire a été envoyé depuis un autre site. Revenez sur le portail et \
         recommencez.",
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const OURS: &str = "https://connexion.example.fr";

    #[test]
    fn only_our_origin_or_none_may_post() {
        assert_eq!(
            origin_of("https://connexion.example.fr/").as_deref(),
            Some(OURS)
        );
        assert_eq!(
            origin_of("http://127.0.0.1:8080").as_deref(),
            Some("http://127.0.0.1:8080")
        );
        let post = Method::POST;
        assert!(allowed(&post, "/account", Some(OURS.as_bytes()), OURS));
        assert!(allowed(&post, "/account", None, OURS));
        assert!(!allowed(
            &post,
            "/account",
            Some(b"http://evil.example"),
            OURS
        ));
        assert!(!allowed(&post, "/account", Some(b"null"), OURS));
        assert!(!allowed(
            &post,
            "/login",
            Some(b"https://connexion.example.fr.evil"),
            OURS
        ));
        assert!(allowed(&Method::GET, "/account", Some(b"null"), OURS));
        for path in ["/logout", "/authorize"] {
            assert!(allowed(&post, path, Some(b"https://module.example"), OURS));
            assert!(allowed(&post, path, Some(b"null"), OURS));
        }
        assert!(!allowed(
            &post,
            "/authorize/x",
            Some(b"https://module.example"),
            OURS
        ));
    }
}
