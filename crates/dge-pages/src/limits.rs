//! Limits on posted forms, before any handler parses them: at most
//! [`MAX_FORM_FIELDS`] fields, none longer than [`MAX_FIELD_BYTES`]. The body itself is
//! already bounded by the server's body limit; this stops a flood of small fields or
//! one giant field with a fast 400, before deserialisation or password hashing.

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use crate::Pages;

/// The largest form of the pages (sign-up) has about 15 fields.
pub const MAX_FORM_FIELDS: usize = 64;
/// The longest field, a sign-up's description of at most 2000 characters, takes up to
/// 18 000 bytes once percent-encoded (3 bytes of UTF-8, 3 characters each).
pub const MAX_FIELD_BYTES: usize = 24 * 1024;
/// Bodies are read up to this much; the server's own limit is lower.
const READ_LIMIT: usize = 256 * 1024;

/// Whether an urlencoded body stays within the limits.
#[must_use]
pub fn within_limits(body: &[u8]) -> bool {
    let mut fields = 0;
    for field in body.split(|b| *b == b'&').filter(|f| !f.is_empty()) {
        fields += 1;
        if fields > MAX_FORM_FIELDS || field.len() > MAX_FIELD_BYTES {
            return false;
        }
    }
    true
}

/// The middleware: checks urlencoded bodies, passes everything else untouched.
pub(crate) async fn limit_forms(
    State(pages): State<Pages>,
    request: Request,
    next: Next,
) -> Response {
    let urlencoded = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !urlencoded {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let Ok(bytes) = to_bytes(body, READ_LIMIT).await else {
        let (title, text) = crate::errors::TOO_LARGE;
        return pages
            .render
            .error(StatusCode::PAYLOAD_TOO_LARGE, title, text, None);
    };
    if !within_limits(&bytes) {
        return pages.render.error(
            StatusCode::BAD_REQUEST,
            "Formulaire invalide",
            "Le formulaire envoyé contient trop de champs ou un champ trop long.",
            None,
        );
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_fields_and_measures_each() {
        assert!(within_limits(b""));
        assert!(within_limits(b"a=1&b=2"));
        let flood = vec!["f=x"; MAX_FORM_FIELDS + 1].join("&");
        assert!(!within_limits(flood.as_bytes()));
        let just = vec!["f=x"; MAX_FORM_FIELDS].join("&");
        assert!(within_limits(just.as_bytes()));
        let long = format!("f={}", "a".repeat(MAX_FIELD_BYTES));
        assert!(!within_limits(long.as_bytes()));
    }
}
