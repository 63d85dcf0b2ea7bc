//! Templates, embedded in the binary, rendered with minijinja (auto-escaping on).

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use minijinja::Environment;
use serde::Serialize;
use serde_json::{Value, json};

/// The portal's look and links, configurable so another portal can reuse the binary.
#[derive(Debug, Clone, Serialize)]
pub struct Portal {
    /// Display name ("DataGrandEst").
    pub name: String,
    /// Home page of the portal.
    pub home_url: String,
    /// Main colour, `#rgb` or `#rrggbb`.
    pub primary_color: String,
    /// Line under the name in the header.
    pub tagline: String,
    /// Sentence after the portal's name in the footer.
    pub footer_text: String,
    /// Where people write for help (`portal.support_email`); empty: none given.
    pub support_email: String,
    /// Links of the footer, after the link back to the portal.
    pub footer_links: Vec<FooterLink>,
    /// The logo, served by us at [`LOGO_PATH`] (the CSP allows images from us only).
    #[serde(skip)]
    pub logo: Option<Logo>,
    /// Where pages find the logo; set from `logo` by [`Portal::with_logo`].
    logo_url: Option<String>,
}

/// A link of the footer.
#[derive(Debug, Clone, Serialize)]
pub struct FooterLink {
    /// Text of the link.
    pub label: String,
    /// Its target: `https://…`, `http://…` or a path on this server.
    pub url: String,
}

/// A logo image and its media type.
#[derive(Debug, Clone)]
pub struct Logo {
    /// `image/png`, `image/svg+xml`, `image/webp` or `image/jpeg`.
    pub content_type: &'static str,
    /// The file's bytes.
    pub bytes: axum::body::Bytes,
}

/// Path of the logo on this server.
pub const LOGO_PATH: &str = "/static/logo";

/// Whether `color` is `#rgb` or `#rrggbb`, the only colours the pages accept (the
/// value lands in CSS).
#[must_use]
pub fn is_hex_colour(color: &str) -> bool {
    color.strip_prefix('#').is_some_and(|hex| {
        (hex.len() == 3 || hex.len() == 6) && hex.chars().all(|c| c.is_ascii_hexdigit())
    })
}

impl Portal {
    /// This portal with `logo` shown in the header.
    #[must_use]
    pub fn with_logo(mut self, logo: Option<Logo>) -> Self {
        self.logo_url = logo.as_ref().map(|_| LOGO_PATH.to_owned());
        self.logo = logo;
        self
    }
}

impl Default for Portal {
    /// DataGrandEst's own settings.
    fn default() -> Self {
        Self {
            name: "DataGrandEst".into(),
            home_url: "https://www.datagrandest.fr".into(),
            primary_color: "#000091".into(),
            tagline: "Espace d'identification".into(),
            footer_text: "la plateforme régionale des données publiques en Grand Est.".into(),
            support_email: "contact@datagrandest.fr".into(),
            footer_links: Vec::new(),
            logo: None,
            logo_url: None,
        }
    }
}

impl Logo {
    /// The media type of a logo file named `file_name`, from its extension.
    #[must_use]
    pub fn content_type_of(file_name: &str) -> Option<&'static str> {
        let ext = file_name.rsplit_once('.')?.1.to_ascii_lowercase();
        match ext.as_str() {
            "png" => Some("image/png"),
            "svg" => Some("image/svg+xml"),
            "webp" => Some("image/webp"),
            "jpg" | "jpeg" => Some("image/jpeg"),
            _ => None,
        }
    }
}

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../templates/base.html")),
    ("login.html", include_str!("../templates/login.html")),
    ("signup.html", include_str!("../templates/signup.html")),
    (
        "signup_done.html",
        include_str!("../templates/signup_done.html"),
    ),
    ("confirm.html", include_str!("../templates/confirm.html")),
    (
        "confirmed.html",
        include_str!("../templates/confirmed.html"),
    ),
    (
        "logged_in.html",
        include_str!("../templates/logged_in.html"),
    ),
    ("error.html", include_str!("../templates/error.html")),
    ("consent.html", include_str!("../templates/consent.html")),
    ("device.html", include_str!("../templates/device.html")),
    (
        "device_confirm.html",
        include_str!("../templates/device_confirm.html"),
    ),
    (
        "logout_confirm.html",
        include_str!("../templates/logout_confirm.html"),
    ),
    ("_errors.html", include_str!("../templates/_errors.html")),
    ("_logout.html", include_str!("../templates/_logout.html")),
    (
        "_new_password.html",
        include_str!("../templates/_new_password.html"),
    ),
    (
        "password_forgot.html",
        include_str!("../templates/password_forgot.html"),
    ),
    (
        "password_forgot_sent.html",
        include_str!("../templates/password_forgot_sent.html"),
    ),
    (
        "password_reset.html",
        include_str!("../templates/password_reset.html"),
    ),
    (
        "password_reset_done.html",
        include_str!("../templates/password_reset_done.html"),
    ),
    (
        "broker_link.html",
        include_str!("../templates/broker_link.html"),
    ),
    // Issue 3: resend of the confirmation email, and the signed-in person's pages.
    ("notice.html", include_str!("../templates/notice.html")),
    (
        "signup_resend.html",
        include_str!("../templates/signup_resend.html"),
    ),
    ("account.html", include_str!("../templates/account.html")),
    (
        "account_password.html",
        include_str!("../templates/account_password.html"),
    ),
    (
        "account_email.html",
        include_str!("../templates/account_email.html"),
    ),
    (
        "account_email_confirm.html",
        include_str!("../templates/account_email_confirm.html"),
    ),
    (
        "account_delete.html",
        include_str!("../templates/account_delete.html"),
    ),
    // Security (issue 9): two-step verification.
    (
        "login_code.html",
        include_str!("../templates/login_code.html"),
    ),
    (
        "mfa_setup.html",
        include_str!("../templates/mfa_setup.html"),
    ),
    (
        "mfa_recovery_codes.html",
        include_str!("../templates/mfa_recovery_codes.html"),
    ),
    (
        "account_mfa.html",
        include_str!("../templates/account_mfa.html"),
    ),
];

/// Renders pages.
pub struct Renderer {
    env: Environment<'static>,
    portal: Portal,
}

impl std::fmt::Debug for Renderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Renderer")
            .field("portal", &self.portal)
            .finish_non_exhaustive()
    }
}

impl Renderer {
    /// A renderer for `portal`.
    ///
    /// # Panics
    /// When an embedded template does not parse (caught by this crate's tests).
    #[must_use]
    pub fn new(portal: Portal) -> Self {
        let mut env = Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        for (name, source) in TEMPLATES {
            env.add_template(name, source)
                .unwrap_or_else(|e| panic!("page template {name}: {e}"));
        }
        Self { env, portal }
    }

    /// The portal settings.
    #[must_use]
    pub fn portal(&self) -> &Portal {
        &self.portal
    }

    /// Renders `template` with `context` (an object) plus the portal settings.
    #[must_use]
    pub fn page(&self, status: StatusCode, template: &str, context: Value) -> Response {
        let mut ctx = json!({ "portal": self.portal, "lang": "fr" });
        if let (Some(base), Value::Object(more)) = (ctx.as_object_mut(), context) {
            base.extend(more);
        }
        match self.env.get_template(template).and_then(|t| t.render(&ctx)) {
            Ok(html) => (status, Html(html)).into_response(),
            Err(e) => {
                tracing::error!(error = %e, template, "page failed to render");
                (StatusCode::INTERNAL_SERVER_ERROR, "Erreur interne").into_response()
            }
        }
    }

    /// A French error page with a way back.
    #[must_use]
    pub fn error(
        &self,
        status: StatusCode,
        title: &str,
        message: &str,
        back_url: Option<&str>,
    ) -> Response {
        self.page(
            status,
            "error.html",
            json!({ "title": title, "message": message, "back_url": back_url }),
        )
    }

    /// An error page whose main button is `label`, to `url`: what to do next.
    #[must_use]
    pub fn error_with_action(
        &self,
        status: StatusCode,
        title: &str,
        message: &str,
        url: &str,
        label: &str,
    ) -> Response {
        self.page(
            status,
            "error.html",
            json!({ "title": title, "message": message, "back_url": url, "back_label": label }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn renderer() -> Renderer {
        Renderer::new(Portal::default())
    }

    #[test]
    fn error_page_escapes_what_it_is_given() {
        let r = renderer();
        let resp = r.error(
            StatusCode::BAD_REQUEST,
            "Oups",
            "<script>alert(1)</script>",
            None,
        );
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn every_template_renders_with_minimal_context() {
        let r = renderer();
        for (name, ctx) in [
            (
                "login.html",
                json!({"csrf_token": "t", "req": "", "identifier": "", "error": null, "providers": []}),
            ),
            (
                "signup.html",
                json!({"csrf_token": "t", "req": "", "values": {}, "errors": {}, "organisations": [], "password_rules": []}),
            ),
            ("signup_done.html", json!({"email_masked": "j***@x.fr"})),
            ("signup_done.html", json!({})),
            (
                "logout_confirm.html",
                json!({"csrf_token": "t", "requested_by_service": true, "client_id": "c", "id_token_hint": null, "post_logout_redirect_uri": null, "state": null}),
            ),
            (
                "logout_confirm.html",
                json!({"csrf_token": "t", "requested_by_service": false, "client_id": null, "id_token_hint": null, "post_logout_redirect_uri": null, "state": null}),
            ),
            ("confirm.html", json!({"csrf_token": "t", "token": "abc"})),
            ("confirmed.html", json!({})),
            ("confirmed.html", json!({ "active": true })),
            (
                "logged_in.html",
                json!({"name": "Jeanne", "csrf_token": "t"}),
            ),
            ("password_forgot.html", json!({"csrf_token": "t"})),
            ("password_forgot_sent.html", json!({"message": "m"})),
            (
                "password_reset.html",
                json!({"csrf_token": "t", "token": "abc", "login": "j", "errors": {"password": "x"}, "password_rules": [{"text": "r", "met": false}]}),
            ),
            ("password_reset_done.html", json!({})),
            ("notice.html", json!({"title": "t", "message": "m"})),
            (
                "signup_resend.html",
                json!({"csrf_token": "t", "unconfirmed_days": 7}),
            ),
            (
                "account.html",
                json!({"csrf_token": "t", "account": {"login": "j", "email": "j@x.fr"}, "values": {}, "errors": {"phone": "x"}, "has_password": true}),
            ),
            (
                "account_password.html",
                json!({"csrf_token": "t", "errors": {}, "password_rules": []}),
            ),
            (
                "account_email.html",
                json!({"csrf_token": "t", "current_email": "j@x.fr", "has_password": true}),
            ),
            (
                "account_email_confirm.html",
                json!({"csrf_token": "t", "token": "abc"}),
            ),
            (
                "account_delete.html",
                json!({"csrf_token": "t", "has_password": false}),
            ),
            (
                "broker_link.html",
                json!({"csrf_token": "t", "provider_label": "ProConnect", "masked_email": "j***@x.fr", "has_password": true, "code_sent": false}),
            ),
            (
                "broker_link.html",
                json!({"csrf_token": "t", "provider_label": "ProConnect", "masked_email": "j***@x.fr", "has_password": false, "code_sent": true, "error": "e"}),
            ),
            ("login_code.html", json!({"csrf_token": "t", "error": "e"})),
            (
                "mfa_setup.html",
                json!({"csrf_token": "t", "action": "/a", "cancel_url": "/c", "secret": "ABCD", "qr_svg": "<svg></svg>", "errors": {"code": "x"}}),
            ),
            (
                "mfa_recovery_codes.html",
                json!({"codes": ["abcd-efgh-jkmn"], "next_url": "/account"}),
            ),
            (
                "account_mfa.html",
                json!({"csrf_token": "t", "enabled": true, "required": false, "recovery_codes_left": 9, "has_password": true, "errors": {}}),
            ),
            (
                "account_mfa.html",
                json!({"csrf_token": "t", "enabled": false, "required": true, "recovery_codes_left": 0, "has_password": false}),
            ),
        ] {
            let resp = r.page(StatusCode::OK, name, ctx);
            assert_eq!(resp.status(), StatusCode::OK, "{name}");
        }
    }
}
