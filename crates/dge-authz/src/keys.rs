//! Signing keys.
//!
//! One ES256 key signs everything; it is created on first start and kept in
//! `signing_keys`. Every key that is not retired is published in the JWKS, so a key
//! can be published before it signs and stay published after it stops signing.

use std::sync::{Arc, RwLock};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use dge_core::Clock;
use dge_store::Db;
use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use p256::pkcs8::EncodePrivateKey;
use sqlx::Row;

use crate::{Error, Result};

/// A key able to sign, with its public half.
struct SigningKey {
    kid: String,
    encoding: EncodingKey,
}

/// A published public key.
struct PublicKey {
    kid: String,
    decoding: DecodingKey,
    jwk: Jwk,
}

#[derive(Default)]
struct KeyRing {
    signing: Option<SigningKey>,
    public: Vec<PublicKey>,
}

/// The provider's key ring. Cheap to share behind an `Arc`.
pub struct Keys {
    db: Db,
    clock: Arc<dyn Clock>,
    ring: RwLock<KeyRing>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys").finish_non_exhaustive()
    }
}

impl Keys {
    /// Loads the key ring, creating the first key when there is none.
    ///
    /// # Errors
    /// Fails when the database fails or a stored key is unreadable.
    pub async fn load_or_create(db: Db, clock: Arc<dyn Clock>) -> Result<Self> {
        let keys = Self {
            db,
            clock,
            ring: RwLock::new(KeyRing::default()),
        };
        keys.reload().await?;
        let has_signing = keys
            .ring
            .read()
            .map(|r| r.signing.is_some())
            .unwrap_or(false);
        if !has_signing {
            keys.create_key().await?;
            keys.reload().await?;
        }
        Ok(keys)
    }

    async fn create_key(&self) -> Result<()> {
        // TODO: private keys are stored unencrypted in the database; encryption at rest
        // with a configured key-encryption key comes with key rotation (issue 5).
        let secret = p256::SecretKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
        let der = secret.to_pkcs8_der().map_err(|_| Error::BadKey)?;
        let encoding = EncodingKey::from_ec_der(der.as_bytes());
        let kid = dge_core::new_id();
        let jwk = public_jwk(&encoding, &kid)?;
        let now = self.clock.now();
        // Two replicas starting at once may both create a key; both are published
        // and the newest signs, which is harmless.
        sqlx::query(
            "INSERT INTO signing_keys (kid, alg, private_der, public_jwk, created_at) \
             VALUES ($1, 'ES256', $2, $3, $4)",
        )
        .bind(&kid)
        .bind(STANDARD.encode(der.as_bytes()))
        .bind(serde_json::to_string(&jwk).map_err(|_| Error::BadKey)?)
        .bind(now)
        .execute(self.db.pool())
        .await?;
        tracing::info!(kid = %kid, "signing key created");
        Ok(())
    }

    /// Reads the keys from the database again.
    ///
    /// # Errors
    /// Fails when the database fails or a stored key is unreadable.
    pub async fn reload(&self) -> Result<()> {
        let rows = sqlx::query(
            "SELECT kid, private_der, public_jwk FROM signing_keys \
             WHERE retired_at IS NULL ORDER BY created_at DESC, kid DESC",
        )
        .fetch_all(self.db.pool())
        .await?;
        let mut ring = KeyRing::default();
        for row in rows {
            let kid: String = row.try_get("kid")?;
            let der: String = row.try_get("private_der")?;
            let jwk: String = row.try_get("public_jwk")?;
            let der = STANDARD.decode(der).map_err(|_| Error::BadKey)?;
            let jwk: Jwk = serde_json::from_str(&jwk).map_err(|_| Error::BadKey)?;
            let decoding = DecodingKey::from_jwk(&jwk).map_err(|_| Error::BadKey)?;
            if ring.signing.is_none() {
                ring.signing = Some(SigningKey {
                    kid: kid.clone(),
                    encoding: EncodingKey::from_ec_der(&der),
                });
            }
            ring.public.push(PublicKey { kid, decoding, jwk });
        }
        if let Ok(mut guard) = self.ring.write() {
            *guard = ring;
        }
        Ok(())
    }

    /// The published keys, as served at the JWKS endpoint.
    #[must_use]
    pub fn jwks(&self) -> JwkSet {
        let keys = self
            .ring
            .read()
            .map(|r| r.public.iter().map(|k| k.jwk.clone()).collect())
            .unwrap_or_default();
        JwkSet { keys }
    }

    /// Signs `claims` as a JWT of type `typ` with the current key.
    ///
    /// # Errors
    /// Fails when no key is loaded or signing fails.
    pub fn sign<T: serde::Serialize>(&self, typ: &str, claims: &T) -> Result<String> {
        let ring = self.ring.read().map_err(|_| Error::BadKey)?;
        let key = ring.signing.as_ref().ok_or(Error::BadKey)?;
        let mut header = jsonwebtoken::Header::new(Algorithm::ES256);
        header.kid = Some(key.kid.clone());
        header.typ = Some(typ.to_owned());
        Ok(jsonwebtoken::encode(&header, claims, &key.encoding)?)
    }

    /// The decoding key published under `kid`.
    pub(crate) fn decoding_key(&self, kid: &str) -> Option<DecodingKey> {
        let ring = self.ring.read().ok()?;
        ring.public
            .iter()
            .find(|k| k.kid == kid)
            .map(|k| k.decoding.clone())
    }
}

fn public_jwk(encoding: &EncodingKey, kid: &str) -> Result<Jwk> {
    let mut jwk = Jwk::from_encoding_key(encoding, Algorithm::ES256)?;
    jwk.common.key_id = Some(kid.to_owned());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    jwk.common.key_algorithm = Some(KeyAlgorithm::ES256);
    Ok(jwk)
}
