//! The French HTML pages people see: login, sign-up, email confirmation, the
//! authorization endpoint that leads to them, and the upstream-provider buttons.
//!
//! - [`render`]: the embedded templates and the portal's look.
//! - [`binding`]: a pending login request belongs to the browser that started it.
//! - [`fuzzing`]: the entry point of the `forms` fuzz target.
//! - [`csrf`]: double-submit CSRF tokens on every form, bound to the session.
//! - [`origin`]: form posts from another origin refused.
//! - [`cookies`]: `__Host-` cookie names over HTTPS.
//! - [`next`]: where a login started by a page comes back to.
//! - [`handlers`]: one module per page.
//! - [`errors`]: French pages (or OAuth JSON) for the framework's own errors.
//! - [`security`]: response headers (CSP, frame-ancestors, HSTS …).

pub mod binding;
pub mod client;
pub mod cookies;
pub mod csrf;
pub mod errors;
pub mod fuzzing;
pub mod handlers;
pub mod limits;
pub mod next;
pub mod origin;
pub mod render;
pub mod security;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use dge_broker::Broker;
use dge_oidc::Provider;
use dge_registry::Registry;

pub use render::{FooterLink, Logo, Portal};

/// Everything the pages need. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Pages {
    /// Templates and portal settings.
    pub render: Arc<render::Renderer>,
    /// Local accounts.
    pub registry: Registry,
    /// The OIDC provider.
    pub provider: Provider,
    /// Upstream providers.
    pub broker: Broker,
    /// Whether cookies carry `Secure` (off only for the embedded default on loopback).
    pub secure_cookies: bool,
    /// Reverse proxies whose `X-Forwarded-For` is believed (see [`client`]).
    pub trusted_proxies: Arc<Vec<std::net::IpAddr>>,
}

/// The page routes.
pub fn router(pages: Pages) -> Router {
    Router::new()
        .route("/", get(handlers::login::home))
        .route(
            "/authorize",
            get(handlers::authorize::authorize).post(handlers::authorize::authorize_post),
        )
        .route(
            "/login",
            get(handlers::login::show).post(handlers::login::submit),
        )
        .route(
            "/consent",
            get(handlers::consent::show).post(handlers::consent::submit),
        )
        .route(
            "/device",
            get(handlers::device::show).post(handlers::device::submit),
        )
        .route(
            "/logout",
            get(handlers::logout::logout).post(handlers::logout::logout),
        )
        .route(
            "/signup",
            get(handlers::signup::show).post(handlers::signup::submit),
        )
        .route(handlers::signup::DONE_PATH, get(handlers::signup::done))
        .route(
            "/confirm",
            get(handlers::confirm::show).post(handlers::confirm::submit),
        )
        .route(
            "/password/forgot",
            get(handlers::password::forgot).post(handlers::password::forgot_submit),
        )
        .route(
            "/password/reset",
            get(handlers::password::reset).post(handlers::password::reset_submit),
        )
        .route(
            "/signup/resend",
            get(handlers::account::resend).post(handlers::account::resend_submit),
        )
        .route(
            "/account",
            get(handlers::account::show).post(handlers::account::submit),
        )
        .route(
            "/account/password",
            get(handlers::account::password).post(handlers::account::password_submit),
        )
        .route(
            "/account/email",
            get(handlers::account::email).post(handlers::account::email_submit),
        )
        .route(
            "/account/email/confirm",
            get(handlers::account::email_confirm).post(handlers::account::email_confirm_submit),
        )
        .route("/account/export", get(handlers::account::export))
        .route(
            "/login/code",
            get(handlers::mfa::code).post(handlers::mfa::code_submit),
        )
        .route(
            "/login/mfa-setup",
            get(handlers::mfa::login_setup).post(handlers::mfa::login_setup_submit),
        )
        .route("/account/mfa", get(handlers::mfa::profile))
        .route("/account/mfa/start", post(handlers::mfa::profile_start))
        .route("/account/mfa/confirm", post(handlers::mfa::profile_confirm))
        .route("/account/mfa/disable", post(handlers::mfa::profile_disable))
        .route(
            "/account/delete",
            get(handlers::account::delete).post(handlers::account::delete_submit),
        )
        .route("/broker/{provider}/start", get(handlers::broker::start))
        .route(
            "/broker/{provider}/callback",
            get(handlers::broker::callback),
        )
        .route(
            "/broker/{provider}/logged-out",
            get(handlers::broker::logged_out),
        )
        .route("/broker/link", post(handlers::broker::link))
        .route("/broker/link/cancel", post(handlers::broker::cancel))
        .route("/broker/link/code", post(handlers::broker::send_code))
        .route("/static/portal.css", get(handlers::assets::portal_css))
        .route(render::LOGO_PATH, get(handlers::assets::logo))
        .route("/static/{file}", get(handlers::assets::asset))
        .route_layer(axum::middleware::from_fn_with_state(
            pages.clone(),
            limits::limit_forms,
        ))
        // Outside the form limits: a foreign post is refused before its body is read.
        .route_layer(axum::middleware::from_fn_with_state(
            pages.clone(),
            origin::same_origin,
        ))
        .with_state(pages)
}
