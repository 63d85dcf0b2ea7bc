//! Entry point for `cargo fuzz` (see `fuzz/` and docs/security.md): the JWTs an
//! upstream provider sends us, checked as a login checks them, against a fixed key.

use std::str::FromStr;

use jsonwebtoken::jwk::JwkSet;
use openidconnect::core::{CoreIdToken, CoreIdTokenVerifier, CoreJsonWebKeySet};
use openidconnect::{ClientId, IssuerUrl, Nonce};

/// The upstream's keys: one P-256 key whose private half signed the seed corpus
/// (`fuzz/corpus/upstream_jwt/`) and was then thrown away.
pub const JWKS: &str = r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"fuzz","alg":"ES256","use":"sig","x":"YO_v7o3K3tljZQZI4H6leHWks_4Yd0Tlvl9qd6i51_U","y":"0zzLXzjNPSjH8vlkFNGogJ0weam7XuClSXuDnbOag2I"}]}"#;
/// The upstream's issuer in the seeds.
pub const ISSUER: &str = "https://upstream.test";
/// Our client id at the upstream, the seeds' audience.
pub const CLIENT_ID: &str = "dge-identity";
/// The nonce the seeds' ID tokens carry.
pub const NONCE: &str = "fuzz-nonce";

/// An upstream JWT, checked both as an ID token (openidconnect's verifier, then
/// our algorithm, nonce and assurance level checks, then its payload) and as a
/// signed userinfo response.
///
/// # Panics
/// When the fixed keys or issuer do not parse (a bug of this file).
pub fn upstream_jwt(data: &[u8]) {
    let Ok(jwt) = std::str::from_utf8(data) else {
        return;
    };
    let jwk_set: JwkSet = serde_json::from_str(JWKS).expect("the fixed JWKS parses");
    let _ = crate::userinfo::verify_signed(jwt, ISSUER, CLIENT_ID, &jwk_set);
    let Ok(id_token) = CoreIdToken::from_str(jwt) else {
        return;
    };
    let keys: CoreJsonWebKeySet = serde_json::from_str(JWKS).expect("the fixed JWKS parses");
    let verifier = CoreIdTokenVerifier::new_public_client(
        ClientId::new(CLIENT_ID.into()),
        IssuerUrl::new(ISSUER.into()).expect("the fixed issuer parses"),
        keys,
    );
    let acr = ["eidas1".to_owned()];
    let nonce = Nonce::new(NONCE.into());
    if crate::flow::check_id_token(verifier, &acr, &id_token, &nonce).is_ok() {
        let _ = crate::flow::payload(&id_token);
    }
}
