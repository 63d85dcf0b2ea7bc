//! Signing keys.
//!
//! ES256 signs by default; RS256 is there for clients that ask for it. Keys live in
//! `signing_keys`, their private half encrypted with AES-256-GCM under a
//! key-encryption key (see [`KeyEncryptionKey`]), the key id as associated data.
//!
//! Rotation ([`Keys::rotate`]) publishes a new key at once but lets it sign only
//! from `signs_from`, once relying parties had time to fetch the new JWKS; the
//! key it replaces stays published until every token it signed has expired.

use std::path::Path;
use std::sync::{Arc, RwLock};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use dge_core::{Clock, Secret};
use dge_store::Db;
use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use p256::pkcs8::EncodePrivateKey;
use rand::RngCore;
use rsa::pkcs1::EncodeRsaPrivateKey;
use sqlx::Row;

use crate::cache::{self, Bounded};
use crate::{Error, Result};

/// Environment variable holding the key-encryption key (32 bytes, base64).
pub const KEK_ENV: &str = "DGE_KEY_ENCRYPTION_KEY";
/// File in the data dir holding the embedded default's key-encryption key.
pub const KEK_FILE: &str = "key-encryption.key";
/// Prefix of encrypted private keys at rest.
const SEALED_PREFIX: &str = "a256gcm:";
/// RSA modulus size.
const RSA_BITS: usize = 2048;

/// The key that encrypts private signing keys at rest (its `Debug` is redacted).
#[derive(Clone, Debug)]
pub struct KeyEncryptionKey(Secret<[u8; 32]>);

impl KeyEncryptionKey {
    /// A key from its base64 form.
    ///
    /// # Errors
    /// [`Error::BadKek`] unless it decodes to exactly 32 bytes.
    pub fn from_base64(value: &str) -> Result<Self> {
        let bytes = STANDARD.decode(value.trim()).map_err(|_| Error::BadKek)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| Error::BadKek)?;
        Ok(Self(Secret::new(key)))
    }

    /// `DGE_KEY_ENCRYPTION_KEY` when set, else `<data_dir>/key-encryption.key`,
    /// created (mode 0600) on first use.
    ///
    /// # Errors
    /// A malformed key, or the file cannot be read or written.
    pub fn from_env_or_file(data_dir: &Path) -> Result<Self> {
        if let Ok(value) = std::env::var(KEK_ENV) {
            return Self::from_base64(&value);
        }
        let path = data_dir.join(KEK_FILE);
        if let Ok(value) = std::fs::read_to_string(&path) {
            return Self::from_base64(&value);
        }
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        write_private(&path, &STANDARD.encode(key)).map_err(Error::KekFile)?;
        tracing::info!(path = %path.display(), "key-encryption key created");
        Ok(Self(Secret::new(key)))
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(self.0.expose().into())
    }

    /// Encrypts `plaintext` (AES-256-GCM, random nonce), bound to `kid` as associated
    /// data: the result opens only with the same key and the same `kid`.
    ///
    /// # Errors
    /// [`Error::BadKey`] if encryption fails.
    pub fn seal(&self, kid: &str, plaintext: &[u8]) -> Result<String> {
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let payload = Payload {
            msg: plaintext,
            aad: kid.as_bytes(),
        };
        let sealed = self
            .cipher()
            .encrypt(&Nonce::from(nonce), payload)
            .map_err(|_| Error::BadKey)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(format!("{SEALED_PREFIX}{}", STANDARD.encode(out)))
    }

    /// Decrypts what [`Self::seal`] made with the same `kid`.
    ///
    /// # Errors
    /// [`Error::BadKey`] for a malformed value, [`Error::BadKek`] for another key or
    /// `kid`.
    pub fn open(&self, kid: &str, stored: &str) -> Result<Vec<u8>> {
        let raw = stored.strip_prefix(SEALED_PREFIX).ok_or(Error::BadKey)?;
        let raw = STANDARD.decode(raw).map_err(|_| Error::BadKey)?;
        if raw.len() < 12 {
            return Err(Error::BadKey);
        }
        let (nonce, sealed) = raw.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().map_err(|_| Error::BadKey)?;
        let payload = Payload {
            msg: sealed,
            aad: kid.as_bytes(),
        };
        self.cipher()
            .decrypt(&Nonce::from(nonce), payload)
            .map_err(|_| Error::BadKek)
    }
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())
}

/// A loaded key.
struct LoadedKey {
    kid: String,
    alg: Algorithm,
    encoding: EncodingKey,
    decoding: DecodingKey,
    jwk: Jwk,
    signs_from: i64,
    published_until: Option<i64>,
}

impl LoadedKey {
    fn published(&self, now: i64) -> bool {
        self.published_until.is_none_or(|until| until > now)
    }
}

/// A key as `dgectl keys list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// Key id.
    pub kid: String,
    /// `ES256` or `RS256`.
    pub alg: String,
    /// Created at.
    pub created_at: i64,
    /// Signs from this time on (published before).
    pub signs_from: i64,
    /// Published until this time (set once a newer key replaces it).
    pub published_until: Option<i64>,
}

/// The provider's key ring. Cheap to share behind an `Arc`.
pub struct Keys {
    db: Db,
    clock: Arc<dyn Clock>,
    kek: KeyEncryptionKey,
    ring: RwLock<Vec<LoadedKey>>,
    /// Access tokens whose signature was verified (see [`crate::cache`]).
    pub(crate) verified: Bounded<[u8; 32], VerifiedToken>,
}

/// The claims of an access token whose signature, type, issuer and audience were
/// verified, and the key that signed it.
#[derive(Debug, Clone)]
pub(crate) struct VerifiedToken {
    pub(crate) claims: crate::AccessClaims,
    pub(crate) kid: String,
    pub(crate) issuer: String,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys").finish_non_exhaustive()
    }
}

fn alg_name(alg: Algorithm) -> &'static str {
    if alg == Algorithm::RS256 {
        "RS256"
    } else {
        "ES256"
    }
}

fn parse_alg(name: &str) -> Result<Algorithm> {
    match name {
        "ES256" => Ok(Algorithm::ES256),
        "RS256" => Ok(Algorithm::RS256),
        _ => Err(Error::BadKey),
    }
}

/// A new private key of `alg` as DER (PKCS#8 for EC, PKCS#1 for RSA).
fn generate(alg: Algorithm) -> Result<Vec<u8>> {
    if alg == Algorithm::RS256 {
        let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, RSA_BITS)
            .map_err(|_| Error::BadKey)?;
        let der = key.to_pkcs1_der().map_err(|_| Error::BadKey)?;
        return Ok(der.as_bytes().to_vec());
    }
    let secret = p256::SecretKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
    let der = secret.to_pkcs8_der().map_err(|_| Error::BadKey)?;
    Ok(der.as_bytes().to_vec())
}

fn encoding_key(alg: Algorithm, der: &[u8]) -> EncodingKey {
    if alg == Algorithm::RS256 {
        EncodingKey::from_rsa_der(der)
    } else {
        EncodingKey::from_ec_der(der)
    }
}

impl Keys {
    /// Loads the key ring, creating the first ES256 key when there is none, and an
    /// RS256 key when a client signs with RS256 and none exists. Keys stored
    /// unencrypted by an earlier version are encrypted in place.
    ///
    /// # Errors
    /// Fails when the database fails, a stored key is unreadable or the
    /// key-encryption key is not the one the keys were sealed with.
    pub async fn load_or_create(
        db: Db,
        clock: Arc<dyn Clock>,
        kek: KeyEncryptionKey,
    ) -> Result<Self> {
        // Usually done by `main` already; tests and tools come through here.
        crate::jose::install();
        let keys = Self {
            db,
            clock,
            kek,
            ring: RwLock::new(Vec::new()),
            verified: Bounded::new(cache::CAPACITY),
        };
        keys.seal_legacy_keys().await?;
        keys.reload().await?;
        keys.ensure(Algorithm::ES256).await?;
        let rs256_wanted =
            sqlx::query("SELECT 1 AS x FROM oidc_clients WHERE id_token_alg = 'RS256'")
                .fetch_optional(keys.db.pool())
                .await?
                .is_some();
        if rs256_wanted {
            keys.ensure(Algorithm::RS256).await?;
        }
        Ok(keys)
    }

    /// Creates a key of `alg` when none can sign.
    ///
    /// # Errors
    /// Fails when the database fails.
    pub async fn ensure_alg(&self, alg: &str) -> Result<()> {
        self.ensure(parse_alg(alg)?).await
    }

    async fn ensure(&self, alg: Algorithm) -> Result<()> {
        let has = || {
            self.ring
                .read()
                .map(|r| r.iter().any(|k| k.alg == alg))
                .unwrap_or(false)
        };
        if has() {
            return Ok(());
        }
        // Another replica may have made one since this one last read the ring.
        self.reload().await?;
        if !has() {
            self.create_key(alg, self.clock.now()).await?;
            self.reload().await?;
        }
        Ok(())
    }

    async fn create_key(&self, alg: Algorithm, signs_from: i64) -> Result<String> {
        let der = generate(alg)?;
        let kid = dge_core::new_id();
        let jwk = public_jwk(&encoding_key(alg, &der), alg, &kid)?;
        // Two replicas starting at once may both create a key; both are published
        // and the newest signs, which is harmless.
        sqlx::query(
            "INSERT INTO signing_keys (kid, alg, private_der, public_jwk, created_at, signs_from) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&kid)
        .bind(alg_name(alg))
        .bind(self.kek.seal(&kid, &der)?)
        .bind(serde_json::to_string(&jwk).map_err(|_| Error::BadKey)?)
        .bind(self.clock.now())
        .bind(signs_from)
        .execute(self.db.pool())
        .await?;
        tracing::info!(kid = %kid, alg = alg_name(alg), signs_from, "signing key created");
        Ok(kid)
    }

    /// Encrypts private keys that an earlier version stored in the clear.
    async fn seal_legacy_keys(&self) -> Result<()> {
        let rows = sqlx::query("SELECT kid, private_der FROM signing_keys")
            .fetch_all(self.db.pool())
            .await?;
        for row in rows {
            let kid: String = row.try_get("kid")?;
            let stored: String = row.try_get("private_der")?;
            if stored.starts_with(SEALED_PREFIX) {
                continue;
            }
            let der = STANDARD.decode(stored).map_err(|_| Error::BadKey)?;
            sqlx::query("UPDATE signing_keys SET private_der = $1 WHERE kid = $2")
                .bind(self.kek.seal(&kid, &der)?)
                .bind(&kid)
                .execute(self.db.pool())
                .await?;
            tracing::info!(kid = %kid, "signing key encrypted at rest");
        }
        Ok(())
    }

    /// Reads the published keys from the database again.
    ///
    /// # Errors
    /// Fails when the database fails or a stored key is unreadable.
    pub async fn reload(&self) -> Result<()> {
        let rows = sqlx::query(
            "SELECT kid, alg, private_der, public_jwk, signs_from, published_until FROM signing_keys \
             WHERE retired_at IS NULL AND (published_until IS NULL OR published_until > $1) \
             ORDER BY signs_from DESC, created_at DESC, kid DESC",
        )
        .bind(self.clock.now())
        .fetch_all(self.db.pool())
        .await?;
        let mut ring = Vec::with_capacity(rows.len());
        for row in rows {
            let kid: String = row.try_get("kid")?;
            let alg = parse_alg(&row.try_get::<String, _>("alg")?)?;
            let der = self
                .kek
                .open(&kid, &row.try_get::<String, _>("private_der")?)?;
            let jwk: Jwk = serde_json::from_str(&row.try_get::<String, _>("public_jwk")?)
                .map_err(|_| Error::BadKey)?;
            ring.push(LoadedKey {
                decoding: DecodingKey::from_jwk(&jwk).map_err(|_| Error::BadKey)?,
                encoding: encoding_key(alg, &der),
                signs_from: row.try_get("signs_from")?,
                published_until: row.try_get("published_until")?,
                kid,
                alg,
                jwk,
            });
        }
        if let Ok(mut guard) = self.ring.write() {
            *guard = ring;
        }
        // A key may have been retired: what it signed must be verified again.
        self.verified.clear();
        Ok(())
    }

    /// Rotates the `alg` key: the new key is published now and signs from
    /// `now + activate_after_secs`; the keys it replaces stay published until
    /// `signs_from + token_ttl_secs`, when the last token they signed expires.
    /// Returns the new key id.
    ///
    /// # Errors
    /// Fails when the database fails.
    pub async fn rotate(
        &self,
        alg: &str,
        activate_after_secs: i64,
        token_ttl_secs: i64,
    ) -> Result<String> {
        let alg = parse_alg(alg)?;
        let signs_from = self.clock.now() + activate_after_secs.max(0);
        let kid = self.create_key(alg, signs_from).await?;
        sqlx::query(
            "UPDATE signing_keys SET published_until = $1 \
             WHERE alg = $2 AND kid <> $3 AND published_until IS NULL AND retired_at IS NULL",
        )
        .bind(signs_from + token_ttl_secs)
        .bind(alg_name(alg))
        .bind(&kid)
        .execute(self.db.pool())
        .await?;
        self.reload().await?;
        tracing::info!(kid = %kid, "signing key rotated");
        Ok(kid)
    }

    /// Every key not yet withdrawn, newest first.
    ///
    /// # Errors
    /// Fails when the database fails.
    pub async fn list(&self) -> Result<Vec<KeyInfo>> {
        let rows = sqlx::query(
            "SELECT kid, alg, created_at, signs_from, published_until FROM signing_keys \
             WHERE retired_at IS NULL ORDER BY created_at DESC, kid DESC",
        )
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(KeyInfo {
                    kid: r.try_get("kid")?,
                    alg: r.try_get("alg")?,
                    created_at: r.try_get("created_at")?,
                    signs_from: r.try_get("signs_from")?,
                    published_until: r.try_get("published_until")?,
                })
            })
            .collect()
    }

    /// The published keys, as served at the JWKS endpoint.
    #[must_use]
    pub fn jwks(&self) -> JwkSet {
        let now = self.clock.now();
        let keys = self
            .ring
            .read()
            .map(|r| {
                r.iter()
                    .filter(|k| k.published(now))
                    .map(|k| k.jwk.clone())
                    .collect()
            })
            .unwrap_or_default();
        JwkSet { keys }
    }

    /// Signs `claims` as a JWT of type `typ` with the current ES256 key.
    ///
    /// # Errors
    /// Fails when no key is loaded or signing fails.
    pub fn sign<T: serde::Serialize>(&self, typ: &str, claims: &T) -> Result<String> {
        self.sign_as("ES256", typ, claims)
    }

    /// Signs `claims` with the current key of `alg` (`ES256` or `RS256`).
    ///
    /// # Errors
    /// Fails when no key of `alg` may sign yet or signing fails.
    pub fn sign_as<T: serde::Serialize>(&self, alg: &str, typ: &str, claims: &T) -> Result<String> {
        let alg = parse_alg(alg)?;
        let now = self.clock.now();
        let ring = self.ring.read().map_err(|_| Error::BadKey)?;
        let key = ring
            .iter()
            .find(|k| k.alg == alg && k.signs_from <= now && k.published(now))
            .ok_or(Error::BadKey)?;
        let mut header = jsonwebtoken::Header::new(alg);
        header.kid = Some(key.kid.clone());
        header.typ = Some(typ.to_owned());
        Ok(jsonwebtoken::encode(&header, claims, &key.encoding)?)
    }

    /// Whether the key `kid` is in the ring and published now.
    pub(crate) fn publishes(&self, kid: &str) -> bool {
        let now = self.clock.now();
        self.ring
            .read()
            .is_ok_and(|ring| ring.iter().any(|k| k.kid == kid && k.published(now)))
    }

    /// The decoding key published under `kid`, with its algorithm.
    pub(crate) fn decoding_key(&self, kid: &str) -> Option<(Algorithm, DecodingKey)> {
        let now = self.clock.now();
        let ring = self.ring.read().ok()?;
        ring.iter()
            .find(|k| k.kid == kid && k.published(now))
            .map(|k| (k.alg, k.decoding.clone()))
    }
}

fn public_jwk(encoding: &EncodingKey, alg: Algorithm, kid: &str) -> Result<Jwk> {
    let mut jwk = Jwk::from_encoding_key(encoding, alg)?;
    jwk.common.key_id = Some(kid.to_owned());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    jwk.common.key_algorithm = Some(if alg == Algorithm::RS256 {
        KeyAlgorithm::RS256
    } else {
        KeyAlgorithm::ES256
    });
    Ok(jwk)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_keys_open_only_with_the_same_kek_and_kid() {
        let kek = KeyEncryptionKey::from_base64(&STANDARD.encode([7u8; 32])).unwrap();
        let other = KeyEncryptionKey::from_base64(&STANDARD.encode([8u8; 32])).unwrap();
        let sealed = kek.seal("kid-1", b"private key").unwrap();
        assert!(sealed.starts_with(SEALED_PREFIX));
        assert!(!sealed.contains("private key"));
        assert_eq!(kek.open("kid-1", &sealed).unwrap(), b"private key");
        assert!(kek.open("kid-2", &sealed).is_err());
        assert!(other.open("kid-1", &sealed).is_err());
    }

    #[test]
    fn a_kek_must_be_32_bytes() {
        assert!(KeyEncryptionKey::from_base64(&STANDARD.encode([1u8; 16])).is_err());
        assert!(KeyEncryptionKey::from_base64("not base64!").is_err());
    }
}
