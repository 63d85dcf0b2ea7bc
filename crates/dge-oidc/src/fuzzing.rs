//! Entry points for `cargo fuzz` (see `fuzz/` and docs/security.md): the parsers of
//! this crate that face the network, callable without a database.

use crate::authorize::with_params;
use crate::clients::{Client, ClientSettings, valid_redirect_uri};
use crate::token::{TokenForm, basic_credentials};

/// Redirect URI matching. `data` is `registered\nrequested` (one URI alone is both).
///
/// # Panics
/// When a requested URI that is not byte for byte the registered one is accepted:
/// matching must stay an exact string comparison.
pub fn redirect_uri(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (registered, requested) = text.split_once('\n').unwrap_or((text, text));
    let client = Client {
        id: "fuzz".into(),
        name: "fuzz".into(),
        secret_hash: None,
        redirect_uris: vec![registered.to_owned()],
        post_logout_redirect_uris: Vec::new(),
        confidential: false,
        first_party: false,
        settings: ClientSettings::default(),
        registration: String::new(),
        registered_at: 0,
    };
    let allowed = client.redirect_allowed(requested);
    assert!(
        !allowed || requested == registered,
        "{requested:?} accepted for {registered:?}"
    );
    let _ = valid_redirect_uri(registered);
    if allowed {
        let _ = with_params(requested, &[("code", "c"), ("state", "s"), ("iss", "i")]);
    }
}

/// The body of `/token`, `/introspect` and `/revoke`, and a Basic header's value.
pub fn token_request(data: &[u8]) {
    let _ = serde_urlencoded::from_bytes::<TokenForm>(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = basic_credentials(text);
    }
}
