//! Userinfo: a signed JWT (`application/jwt`) whose signature is verified against the
//! upstream's keys, or plain JSON only when the upstream is configured so.
//!
//! openidconnect 4's userinfo verifier accepts RS256 only, and ProConnect signs
//! userinfo with ES256 by default, so the JWT is verified here with jsonwebtoken,
//! against the keys the openidconnect discovery fetched.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use openidconnect::reqwest;
use openidconnect::{ProviderMetadataWithLogout, reqwest::header};
use serde_json::{Map, Value};

use crate::{BrokerError, UpstreamConfig};

const LARGEST_USERINFO: usize = 64 * 1024;

fn bad(what: impl std::fmt::Display) -> BrokerError {
    BrokerError::BadUserinfo(what.to_string())
}

/// Fetches and verifies userinfo; its `sub` must be the ID token's.
pub(crate) async fn fetch(
    http: &reqwest::Client,
    p: &UpstreamConfig,
    metadata: &ProviderMetadataWithLogout,
    endpoint: &str,
    access_token: &str,
    subject: &str,
) -> Result<Map<String, Value>, BrokerError> {
    let answer = http
        .get(endpoint)
        .bearer_auth(access_token)
        .header(header::ACCEPT, "application/jwt, application/json;q=0.5")
        .send()
        .await
        .map_err(|e| BrokerError::Upstream(format!("userinfo: {}", dge_core::ErrorChain(&e))))?;
    if !answer.status().is_success() {
        return Err(BrokerError::Upstream(format!(
            "userinfo answered {}",
            answer.status()
        )));
    }
    let content_type = answer
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let body = answer
        .bytes()
        .await
        .map_err(|e| BrokerError::Upstream(format!("userinfo: {}", dge_core::ErrorChain(&e))))?;
    if body.len() > LARGEST_USERINFO {
        return Err(bad("userinfo too large"));
    }
    let claims = if content_type.starts_with("application/jwt") {
        let jwt = std::str::from_utf8(&body).map_err(bad)?.trim();
        verify_jwt(jwt, p, metadata)?
    } else if content_type.starts_with("application/json") && !p.userinfo_signed {
        serde_json::from_slice(&body).map_err(bad)?
    } else {
        return Err(bad(format!("expected a signed JWT, got {content_type:?}")));
    };
    if claims.get("sub").and_then(Value::as_str) != Some(subject) {
        return Err(bad("userinfo sub differs from the ID token's"));
    }
    Ok(claims)
}

/// Verifies a userinfo JWT: ES256 or RS256, a key of the upstream, its issuer and
/// our client id as audience.
fn verify_jwt(
    jwt: &str,
    p: &UpstreamConfig,
    metadata: &ProviderMetadataWithLogout,
) -> Result<Map<String, Value>, BrokerError> {
    let keys: JwkSet = serde_json::to_value(metadata.jwks())
        .and_then(serde_json::from_value)
        .map_err(bad)?;
    verify_signed(jwt, metadata.issuer().as_str(), &p.client_id, &keys)
}

/// The checks of [`verify_jwt`] against the upstream's `keys`, its `issuer` and our
/// client id as `audience`.
pub(crate) fn verify_signed(
    jwt: &str,
    issuer: &str,
    audience: &str,
    keys: &JwkSet,
) -> Result<Map<String, Value>, BrokerError> {
    // `decode_header` refuses `alg: none` (jsonwebtoken has no such algorithm).
    let head = jsonwebtoken::decode_header(jwt).map_err(bad)?;
    if !matches!(head.alg, Algorithm::ES256 | Algorithm::RS256) {
        return Err(bad(format!("algorithm {:?} not accepted", head.alg)));
    }
    let jwk = match &head.kid {
        Some(kid) => keys.find(kid),
        None => keys.keys.iter().find(|k| {
            k.common.key_algorithm.map(|a| a.to_string()) == Some(format!("{:?}", head.alg))
        }),
    }
    .ok_or_else(|| bad("no upstream key matches the userinfo JWT"))?;
    let key = DecodingKey::from_jwk(jwk).map_err(bad)?;
    let mut validation = Validation::new(head.alg);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["iss", "aud", "sub"]);
    jsonwebtoken::decode::<Map<String, Value>>(jwt, &key, &validation)
        .map(|d| d.claims)
        .map_err(bad)
}
