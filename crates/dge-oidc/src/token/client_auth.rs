//! Client authentication at the token, introspection and revocation endpoints
//! (RFC 6749 §2.3, OIDC Core §9): `client_secret_basic`, `client_secret_post`,
//! `private_key_jwt` (RFC 7523) and, for public clients, none.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use dge_core::token::hash_token;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::{OAuthError, TokenForm, oauth};
use crate::clients::{self, Client};
use crate::{Provider, Result};

/// The only assertion type of `private_key_jwt`.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Assertions live at most this long, so the replay table stays small.
const MAX_ASSERTION_LIFETIME_SECS: i64 = 300;

/// Credentials taken from the `Authorization: Basic` header (RFC 6749 §2.3.1).
#[must_use]
pub fn basic_credentials(header: &str) -> Option<(String, String)> {
    let (scheme, value) = header.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(value.trim()).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let unescape = |s: &str| form_urlencoded_decode(s);
    Some((unescape(id)?, unescape(secret)?))
}

fn form_urlencoded_decode(s: &str) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(&format!("v={s}")).ok()?;
    pairs.into_iter().next().map(|(_, v)| v)
}

#[derive(Deserialize)]
struct AssertionClaims {
    iss: String,
    sub: String,
    exp: i64,
    jti: String,
}

fn invalid() -> OAuthError {
    oauth("invalid_client", "client authentication failed")
}

/// The answer once failed authentications are over the limit (see [`crate::rate`]):
/// still `invalid_client`, the RFC 6749 §5.2 code for a failed client authentication
/// (clients stop and report it; `slow_down` belongs to device-code polling), sent with
/// 429 and `Retry-After` (RFC 6585 §4) so that the client knows when to try again.
fn limited(retry_after: u64) -> OAuthError {
    OAuthError {
        retry_after: Some(retry_after),
        ..oauth(
            "invalid_client",
            "too many failed client authentications: retry later",
        )
    }
}

/// The client id a request claims, for the rate limits: the Basic user, else
/// `client_id`, else the unverified `sub` of an assertion; bounded, as it is the caller's.
fn claimed_client_id(form: &TokenForm, basic: Option<&(String, String)>) -> String {
    let from_assertion = || {
        form.client_assertion.as_deref().and_then(|a| {
            jsonwebtoken::dangerous::insecure_decode::<AssertionClaims>(a)
                .ok()
                .map(|t| t.claims.sub)
        })
    };
    basic
        .map(|(id, _)| id.clone())
        .or_else(|| form.client_id.clone())
        .or_else(from_assertion)
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control())
        .take(100)
        .collect()
}

impl Provider {
    /// Authenticates the client of a token, introspection, revocation or device
    /// authorization request from `address`, within the rate limits of
    /// [`crate::rate`]: over them, the request is refused before any check.
    ///
    /// # Errors
    /// Storage errors; a failed authentication is `Ok(Err(invalid_client))`.
    pub async fn authenticate_client(
        &self,
        form: &TokenForm,
        basic: Option<(String, String)>,
        address: &str,
    ) -> Result<Result<Client, OAuthError>> {
        let claimed = claimed_client_id(form, basic.as_ref());
        let gate = self.client_auth_gate(&claimed, address).await?;
        if let Some(secs) = gate.retry_after {
            return Ok(Err(limited(secs)));
        }
        let outcome = self.check_client(form, basic).await?;
        match &outcome {
            Ok(client) => {
                self.client_auth_succeeded(&client.id, address, &gate)
                    .await?;
            }
            Err(e) if e.error == "invalid_client" => {
                self.client_auth_failed(&claimed, address).await?;
            }
            Err(_) => {}
        }
        Ok(outcome)
    }

    async fn check_client(
        &self,
        form: &TokenForm,
        basic: Option<(String, String)>,
    ) -> Result<Result<Client, OAuthError>> {
        let assertion = form.client_assertion.is_some() || form.client_assertion_type.is_some();
        // RFC 6749 §2.3: a client MUST NOT use more than one authentication method
        // in each request.
        let methods = usize::from(assertion)
            + usize::from(basic.is_some())
            + usize::from(form.client_secret.is_some());
        if methods > 1 {
            return Ok(Err(oauth(
                "invalid_request",
                "use a single client authentication method",
            )));
        }
        if assertion {
            return self.private_key_jwt(form).await;
        }
        let (id, secret) = match (basic, form.client_id.as_deref()) {
            (Some((id, secret)), None) => (id, Some(secret)),
            (Some((id, secret)), Some(body_id)) if body_id == id => (id, Some(secret)),
            (Some(_), Some(_)) | (None, None) => return Ok(Err(invalid())),
            (None, Some(id)) => (id.to_owned(), form.client_secret.clone()),
        };
        let Some(client) = self.client(&id).await? else {
            return Ok(Err(invalid()));
        };
        let ok = match (client.confidential, secret.as_deref()) {
            (true, Some(secret)) => client.secret_matches(secret),
            (false, None) => true,
            _ => false,
        };
        Ok(if ok { Ok(client) } else { Err(invalid()) })
    }

    /// The client `id`, from the cache of answers or the database. Unknown ids are
    /// not cached, so that random ones cannot fill it. A client's settings change
    /// only through `clients::set_settings`, which drops the cache on every replica.
    pub(crate) async fn client(&self, id: &str) -> Result<Option<Client>> {
        let generation = self.db.access_generation();
        let key = id.to_owned();
        if let Some(client) = self.clients.get(&key, generation) {
            return Ok(Some(client));
        }
        let client = clients::find(&self.db, id).await?;
        if let Some(client) = &client {
            self.clients.insert(key, client.clone(), generation);
        }
        Ok(client)
    }

    /// `private_key_jwt`: a JWT signed with a key of the client's registered JWKS,
    /// `iss` = `sub` = client id, `aud` the token endpoint or the issuer, short-lived,
    /// and its `jti` used once.
    async fn private_key_jwt(&self, form: &TokenForm) -> Result<Result<Client, OAuthError>> {
        let (Some(JWT_BEARER), Some(assertion)) = (
            form.client_assertion_type.as_deref(),
            form.client_assertion.as_deref(),
        ) else {
            return Ok(Err(invalid()));
        };
        let Ok(unverified) = jsonwebtoken::dangerous::insecure_decode::<AssertionClaims>(assertion)
        else {
            return Ok(Err(invalid()));
        };
        let id = unverified.claims.sub;
        if form.client_id.as_deref().is_some_and(|c| c != id) {
            return Ok(Err(invalid()));
        }
        let Some(client) = self.client(&id).await? else {
            return Ok(Err(invalid()));
        };
        let Some(claims) = self.verify_assertion(&client, assertion) else {
            return Ok(Err(invalid()));
        };
        if !self.first_use_of_assertion(&client.id, &claims).await? {
            return Ok(Err(invalid()));
        }
        Ok(Ok(client))
    }

    fn verify_assertion(&self, client: &Client, assertion: &str) -> Option<AssertionClaims> {
        let jwks: JwkSet = serde_json::from_str(client.settings.jwks.as_deref()?).ok()?;
        let header = jsonwebtoken::decode_header(assertion).ok()?;
        // Asymmetric algorithms only: `none` and HMAC are refused (RFC 8725 §3.1).
        if !matches!(header.alg, Algorithm::ES256 | Algorithm::RS256) {
            return None;
        }
        let jwk = match header.kid.as_deref() {
            Some(kid) => jwks.find(kid)?,
            None if jwks.keys.len() == 1 => jwks.keys.first()?,
            None => return None,
        };
        let key = DecodingKey::from_jwk(jwk).ok()?;
        let mut validation = Validation::new(header.alg);
        let token_endpoint = format!("{}/token", self.issuer());
        validation.set_audience(&[token_endpoint.as_str(), self.issuer()]);
        validation.set_issuer(&[client.id.as_str()]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // Expiry is checked against the injected clock below.
        validation.validate_exp = false;
        let claims = jsonwebtoken::decode::<AssertionClaims>(assertion, &key, &validation)
            .ok()?
            .claims;
        let now = self.now();
        let fresh = claims.exp > now && claims.exp <= now + MAX_ASSERTION_LIFETIME_SECS;
        (fresh && claims.sub == client.id && claims.iss == client.id && !claims.jti.is_empty())
            .then_some(claims)
    }

    async fn first_use_of_assertion(&self, client_id: &str, c: &AssertionClaims) -> Result<bool> {
        let now = self.now();
        sqlx::query("DELETE FROM client_assertions WHERE expires_at <= $1")
            .bind(now)
            .execute(self.db.pool())
            .await?;
        let inserted = sqlx::query(
            "INSERT INTO client_assertions (jti_hash, client_id, expires_at) VALUES ($1, $2, $3)",
        )
        .bind(hash_token(&format!("{client_id}\n{}", c.jti)))
        .bind(client_id)
        .bind(c.exp)
        .execute(self.db.pool())
        .await;
        match inserted {
            Ok(_) => Ok(true),
            Err(e)
                if dge_store::is_unique_violation(
                    &e,
                    "client_assertions_pkey",
                    "client_assertions.jti_hash",
                ) =>
            {
                tracing::warn!(client_id = %client_id, "client assertion replayed");
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_decoded() {
        let header = format!("Basic {}", STANDARD.encode("data%2Bhub:s%3Acret"));
        assert_eq!(
            basic_credentials(&header),
            Some(("data+hub".into(), "s:cret".into()))
        );
        assert_eq!(basic_credentials("Bearer abc"), None);
        assert_eq!(basic_credentials("Basic !!!"), None);
    }
}
