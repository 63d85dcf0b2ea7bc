//! Entry point for `cargo fuzz` (see `fuzz/` and docs/security.md): the JWTs an
//! upstream provider sends us, checked as a login checks them, against a fixed key.

use std::str::FromStr;

use jsonwebtoken::jwk::JwkSet;
use openidconnect::core::{CoreIdToken, CoreIdTokenVerifier, CoreJsonWebKeySet};
use openidconnect::{ClientId, IssuerUrl, Nonce};

use crate::BrokerError;

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
pub fn upstream_jwt(data: &[u8]) {
    if let Ok(jwt) = std::str::from_utf8(data) {
        let _ = check(jwt);
    }
}

/// What the two checks say of `jwt`: the userinfo claims, and the ID token's
/// subject (`None` when it does not even parse as a JWT).
type Checked = (
    Result<serde_json::Map<String, serde_json::Value>, BrokerError>,
    Option<Result<String, BrokerError>>,
);

fn check(jwt: &str) -> Checked {
    let jwk_set: JwkSet = serde_json::from_str(JWKS).expect("the fixed JWKS parses");
    let userinfo = crate::userinfo::verify_signed(jwt, ISSUER, CLIENT_ID, &jwk_set);
    let Ok(id_token) = CoreIdToken::from_str(jwt) else {
        return (userinfo, None);
    };
    let keys: CoreJsonWebKeySet = serde_json::from_str(JWKS).expect("the fixed JWKS parses");
    let verifier = CoreIdTokenVerifier::new_public_client(
        ClientId::new(CLIENT_ID.into()),
        IssuerUrl::new(ISSUER.into()).expect("the fixed issuer parses"),
        keys,
    );
    let acr = ["eidas1".to_owned()];
    let nonce = Nonce::new(NONCE.into());
    let subject = crate::flow::check_id_token(verifier, &acr, &id_token, &nonce);
    if subject.is_ok() {
        let _ = crate::flow::payload(&id_token);
    }
    (userinfo, Some(subject))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed(name: &str) -> String {
        let path = format!(
            "{}/../../fuzz/corpus/upstream_jwt/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(path).expect("seed")
    }

    #[test]
    fn the_seeds_are_real_tokens_and_the_bad_ones_are_refused() {
        let (_, id) = check(&seed("id_token"));
        assert_eq!(id.expect("parses").expect("valid ID token"), "f3a1c2");
        let (userinfo, _) = check(&seed("userinfo"));
        assert_eq!(userinfo.expect("valid userinfo")["sub"], "f3a1c2");
        let (_, acr) = check(&seed("wrong_acr"));
        assert!(matches!(acr, Some(Err(BrokerError::AcrNotAccepted))));
        for bad in ["alg_none", "hs256"] {
            let (userinfo, id) = check(&seed(bad));
            assert!(userinfo.is_err(), "{bad} accepted as userinfo");
            assert!(!matches!(id, Some(Ok(_))), "{bad} accepted as an ID token");
        }
    }
}
