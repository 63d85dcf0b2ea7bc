//! Access tokens and ID tokens.
//!
//! Access tokens are JWTs in the RFC 9068 profile (`typ: at+jwt`), so a module or
//! the `Authorization` service can verify them with the JWKS alone; ID tokens carry
//! `typ: JWT` and are refused where an access token is expected.

use jsonwebtoken::{Algorithm, Validation};
use serde::{Deserialize, Serialize};

use crate::Keys;
use crate::cache;
use crate::keys::VerifiedToken;

/// The JOSE `typ` of access tokens (RFC 9068 §2.1).
pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";

/// Claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Issuer: the provider's public URL.
    pub iss: String,
    /// Subject: the account id, or the client id for `client_credentials`.
    pub sub: String,
    /// Audience: the provider itself, where the token is presented.
    pub aud: String,
    /// The client the token was issued to.
    pub client_id: String,
    /// Space-separated scopes.
    pub scope: String,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Expiry, Unix seconds.
    pub exp: i64,
    /// Unique id, for revocation.
    pub jti: String,
}

/// Why a token was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// Not a JWT we issued, a bad signature, an unknown key or a wrong `typ` or `alg`.
    #[error("token is malformed or not signed by this provider")]
    Invalid,
    /// Past its `exp`.
    #[error("token has expired")]
    Expired,
}

impl Keys {
    /// Verifies an access token's signature, type, issuer, audience and expiry.
    ///
    /// # Errors
    /// [`TokenError::Invalid`] or [`TokenError::Expired`].
    pub fn verify_access_token(
        &self,
        token: &str,
        issuer: &str,
        now: i64,
    ) -> Result<AccessClaims, TokenError> {
        self.verify_access_token_digested(token, cache::digest(token), issuer, now)
    }

    /// [`Self::verify_access_token`] for a caller that already has the token's
    /// [`cache::digest`] (one SHA-256 of a token less per call on the `Check` path).
    pub(crate) fn verify_access_token_digested(
        &self,
        token: &str,
        key: [u8; 32],
        issuer: &str,
        now: i64,
    ) -> Result<AccessClaims, TokenError> {
        let known = self.verified.get(&key, |v| {
            v.issuer == issuer && v.claims.exp > now && self.publishes(&v.kid)
        });
        if let Some(known) = known {
            return Ok(known.claims);
        }
        let (claims, kid) = self.verify_signature(token, issuer)?;
        if claims.exp <= now {
            return Err(TokenError::Expired);
        }
        let verified = VerifiedToken {
            claims: claims.clone(),
            kid,
            issuer: issuer.to_owned(),
        };
        self.verified.insert(key, verified, |v| {
            v.claims.exp > now && self.publishes(&v.kid)
        });
        Ok(claims)
    }

    fn verify_signature(
        &self,
        token: &str,
        issuer: &str,
    ) -> Result<(AccessClaims, String), TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        // Only ES256 is accepted: `none`, HMAC and RSA tokens are refused before any
        // key is looked up (RFC 8725 §3.1).
        if header.alg != Algorithm::ES256 || header.typ.as_deref() != Some(ACCESS_TOKEN_TYPE) {
            return Err(TokenError::Invalid);
        }
        let kid = header.kid.ok_or(TokenError::Invalid)?;
        let (alg, key) = self.decoding_key(&kid).ok_or(TokenError::Invalid)?;
        if alg != Algorithm::ES256 {
            return Err(TokenError::Invalid);
        }
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[issuer]);
        // Expiry is checked by the caller against the injected clock.
        validation.validate_exp = false;
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<AccessClaims>(token, &key, &validation)
            .map_err(|_| TokenError::Invalid)?;
        Ok((data.claims, kid))
    }
}

/// Whether the access token `jti` was revoked (a replayed code, a revocation).
///
/// # Errors
/// Fails when the database fails.
pub async fn is_revoked(db: &dge_store::Db, jti: &str) -> sqlx::Result<bool> {
    let row = sqlx::query(
        "SELECT 1 AS revoked FROM issued_tokens WHERE jti = $1 AND revoked_at IS NOT NULL",
    )
    .bind(jti)
    .fetch_optional(db.pool())
    .await?;
    Ok(row.is_some())
}

/// The claims of an `id_token_hint` that matter to `/authorize` and `/logout`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct IdTokenHint {
    /// The person.
    pub sub: String,
    /// The client it was issued to.
    pub aud: String,
    /// When it was issued: a client registered again under the same id after that
    /// is another client, and the hint is not its own.
    pub iat: i64,
    /// The session it was issued in, if any (OIDC Back-Channel Logout §2.1).
    #[serde(default)]
    pub sid: Option<String>,
}

impl Keys {
    /// The client (`aud`), subject and issue time of an ID token this provider
    /// signed, even past its expiry, as the authorization request and RP-initiated logout allow (OIDC
    /// Core §3.1.2.1, RP-Initiated Logout §2).
    /// `None` for anything not signed by one of our published keys.
    #[must_use]
    pub fn id_token_hint(&self, token: &str, issuer: &str) -> Option<IdTokenHint> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        if !matches!(header.alg, Algorithm::ES256 | Algorithm::RS256)
            || header.typ.as_deref() == Some(ACCESS_TOKEN_TYPE)
        {
            return None;
        }
        let (alg, key) = self.decoding_key(header.kid.as_deref()?)?;
        if alg != header.alg {
            return None;
        }
        let mut validation = Validation::new(alg);
        validation.set_issuer(&[issuer]);
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["iss", "sub", "aud"]);
        jsonwebtoken::decode::<IdTokenHint>(token, &key, &validation)
            .ok()
            .map(|t| t.claims)
    }
}
