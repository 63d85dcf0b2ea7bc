//! Entry point for `cargo fuzz` (see `fuzz/` and docs/security.md): a posted form
//! or query string, taken as every page and endpoint would take it, up to the
//! checks that need no database.

use dge_registry::domain::signup::{normalise_email, normalise_phone};

use crate::handlers::{account, broker, confirm, consent, login, logout, password, signup};
use crate::limits;

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Option<T> {
    serde_urlencoded::from_bytes(body).ok()
}

/// An `application/x-www-form-urlencoded` body (or a query string): the form
/// limits first, as the middleware applies them, then each form struct, the
/// sign-up rules, the login identifier's normalisation, the upstream hints, and
/// the `/authorize` and `/token` parameters.
pub fn posted_form(body: &[u8]) {
    if !limits::within_limits(body) {
        return;
    }
    signup::check_posted(body);
    if let Some(form) = parse::<login::LoginForm>(body) {
        let _ = normalise_email(&form.identifier);
        let _ = normalise_phone(&form.identifier);
    }
    if let Some(hints) = parse::<broker::UpstreamHints>(body) {
        let _ = hints.as_query();
    }
    let _ = parse::<consent::ConsentForm>(body);
    let _ = parse::<broker::StartQuery>(body);
    let _ = parse::<broker::LinkForm>(body);
    let _ = parse::<broker::CancelForm>(body);
    let _ = parse::<confirm::ConfirmForm>(body);
    let _ = parse::<logout::LogoutForm>(body);
    let _ = parse::<password::ForgotForm>(body);
    let _ = parse::<password::ResetForm>(body);
    let _ = parse::<account::ProfileFields>(body);
    let _ = parse::<account::PasswordFields>(body);
    let _ = parse::<account::EmailFields>(body);
    let _ = parse::<account::DeleteFields>(body);
    let _ = parse::<dge_oidc::AuthorizeParams>(body);
    dge_oidc::fuzzing::token_request(body);
}
