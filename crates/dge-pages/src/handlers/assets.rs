//! Static assets, embedded in the binary: no call to any outside host.

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::Pages;

const ASSETS: &[(&str, &str, &str)] = &[
    (
        "dge.css",
        "text/css; charset=utf-8",
        include_str!("../../static/dge.css"),
    ),
    (
        "proconnect.svg",
        "image/svg+xml",
        include_str!("../../static/proconnect.svg"),
    ),
    (
        "dge.js",
        "text/javascript; charset=utf-8",
        include_str!("../../static/dge.js"),
    ),
];

/// `GET /static/{file}`.
pub(crate) async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, body)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, "public, max-age=3600"),
            ],
            *body,
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// `GET /static/logo`: the portal's logo, when one is configured.
pub(crate) async fn logo(State(pages): State<Pages>) -> Response {
    match &pages.render.portal().logo {
        Some(logo) => (
            [
                (header::CONTENT_TYPE, logo.content_type),
                (header::CACHE_CONTROL, "public, max-age=3600"),
                // An SVG opened on its own must not run scripts it may carry.
                (
                    header::CONTENT_SECURITY_POLICY,
                    "default-src 'none'; style-src 'unsafe-inline'; sandbox",
                ),
            ],
            logo.bytes.clone(),
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// `GET /static/portal.css`: the portal's main colour as a CSS variable, so another
/// portal can use the same binary (served by us: the CSP allows no inline style).
pub(crate) async fn portal_css(State(pages): State<Pages>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        portal_stylesheet(&pages.render.portal().primary_color),
    )
        .into_response()
}

/// The stylesheet for `color`; anything but `#rgb` or `#rrggbb` keeps the default
/// colour (the value lands in CSS, so nothing else may pass). Whether the colour has
/// enough contrast on white is the operator's choice: nothing checks it here.
fn portal_stylesheet(color: &str) -> String {
    if crate::render::is_hex_colour(color) {
        format!(":root {{ --blue: {color}; --blue-hover: {color}; }}\n")
    } else {
        tracing::warn!("portal primary colour is not #rgb or #rrggbb; the default is kept");
        "/* default colours */\n".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::portal_stylesheet;

    #[test]
    fn a_hex_colour_becomes_the_main_colour() {
        assert_eq!(
            portal_stylesheet("#1f6f43"),
            ":root { --blue: #1f6f43; --blue-hover: #1f6f43; }\n"
        );
        assert!(portal_stylesheet("#abc").contains("--blue: #abc;"));
    }

    #[test]
    fn anything_else_keeps_the_default() {
        for bad in [
            "red",
            "#12345",
            "#1f6f43; } body { display: none",
            "",
            "1f6f43",
            "#ggg",
        ] {
            assert_eq!(portal_stylesheet(bad), "/* default colours */\n", "{bad}");
        }
    }
}
