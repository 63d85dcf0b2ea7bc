//! The cryptography behind `jsonwebtoken`: its RustCrypto provider, except for
//! ES256, which `ring` signs and verifies.
//!
//! Every access token and ID token is an ES256 signature, and every `Check` or
//! introspection that misses the caches verifies one. With the RustCrypto provider,
//! a signature cost two P-256 scalar multiplications (the key is parsed again for
//! each token, which derives its public half) at about 80 µs each: half of the CPU
//! of `client_credentials` in the benchmark (docs/performance.md). `ring`, already
//! built for TLS, signs in a fraction of that with precomputed tables; its parsed
//! signing keys are kept here, by their bytes. The tokens are the same (JWS ES256:
//! the 64-byte `r || s` signature), verified by either provider.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, PoisonError, RwLock};

use jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER;
use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier};
use jsonwebtoken::errors::Result;
use jsonwebtoken::signature::{Error as SignatureError, Signer, Verifier};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, EncodingKey};
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, UnparsedPublicKey,
};

/// Signing keys in use at once are a handful (the ring's current and next keys);
/// past this many, the map starts afresh rather than grow.
const MAX_KEYS: usize = 64;

static SIGNING: LazyLock<RwLock<HashMap<Vec<u8>, Arc<EcdsaKeyPair>>>> =
    LazyLock::new(Default::default);

static PROVIDER: LazyLock<CryptoProvider> = LazyLock::new(|| CryptoProvider {
    signer_factory: new_signer,
    verifier_factory: new_verifier,
    ..DEFAULT_PROVIDER.clone()
});

/// Makes this the process's provider. Call it before any token is signed or
/// verified; once `jsonwebtoken` has picked its default, this returns `false`
/// (the default then works as well, only slower).
pub fn install() -> bool {
    PROVIDER.install_default().is_ok()
}

/// The key pair of a PKCS#8 document, parsed once.
fn key_pair(der: &[u8]) -> Option<Arc<EcdsaKeyPair>> {
    if let Some(pair) = SIGNING
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(der)
    {
        return Some(Arc::clone(pair));
    }
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &SystemRandom::new())
            .ok()?;
    let pair = Arc::new(pair);
    let mut map = SIGNING.write().unwrap_or_else(PoisonError::into_inner);
    if map.len() >= MAX_KEYS {
        map.clear();
    }
    map.insert(der.to_vec(), Arc::clone(&pair));
    Some(pair)
}

fn new_signer(alg: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
    if *alg != Algorithm::ES256 || key.family() != AlgorithmFamily::Ec {
        return (DEFAULT_PROVIDER.signer_factory)(alg, key);
    }
    // A document `ring` does not read (no public key inside, say): RustCrypto's way.
    match key_pair(key.inner()) {
        Some(pair) => Ok(Box::new(Es256Signer(pair))),
        None => (DEFAULT_PROVIDER.signer_factory)(alg, key),
    }
}

fn new_verifier(alg: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    // The family first: `as_bytes` panics on an RSA key given as modulus and exponent.
    if *alg != Algorithm::ES256 || key.family() != AlgorithmFamily::Ec {
        return (DEFAULT_PROVIDER.verifier_factory)(alg, key);
    }
    // `ring` takes the uncompressed point (what JWKs and our keys give); other forms
    // (a compressed point, a PEM's SPKI) go to RustCrypto.
    match key.as_bytes() {
        bytes if bytes.len() == 65 && bytes[0] == 0x04 => {
            Ok(Box::new(Es256Verifier(bytes.to_vec())))
        }
        _ => (DEFAULT_PROVIDER.verifier_factory)(alg, key),
    }
}

struct Es256Signer(Arc<EcdsaKeyPair>);

impl Signer<Vec<u8>> for Es256Signer {
    fn try_sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, SignatureError> {
        self.0
            .sign(&SystemRandom::new(), msg)
            .map(|signature| signature.as_ref().to_vec())
            .map_err(|_| SignatureError::new())
    }
}

impl JwtSigner for Es256Signer {
    fn algorithm(&self) -> Algorithm {
        Algorithm::ES256
    }
}

/// An uncompressed P-256 point.
struct Es256Verifier(Vec<u8>);

impl Verifier<Vec<u8>> for Es256Verifier {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> std::result::Result<(), SignatureError> {
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &self.0)
            .verify(msg, signature)
            .map_err(|_| SignatureError::new())
    }
}

impl JwtVerifier for Es256Verifier {
    fn algorithm(&self) -> Algorithm {
        Algorithm::ES256
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{Header, Validation, decode, encode};
    use p256::ecdsa::SigningKey;
    use p256::elliptic_curve::rand_core::OsRng;
    use p256::pkcs8::EncodePrivateKey;
    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Claims {
        sub: String,
        exp: i64,
    }

    fn keys() -> (EncodingKey, DecodingKey) {
        let signing = SigningKey::random(&mut OsRng);
        let der = signing.to_pkcs8_der().unwrap();
        let point = signing.verifying_key().to_encoded_point(false);
        let decoding = DecodingKey::from_ec_components(
            &base64_url(point.x().unwrap()),
            &base64_url(point.y().unwrap()),
        )
        .unwrap();
        (EncodingKey::from_ec_der(der.as_bytes()), decoding)
    }

    fn base64_url(bytes: &[u8]) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    #[test]
    fn signatures_verify_both_ways_with_the_stock_provider() {
        let (encoding, decoding) = keys();
        // Our signer is ring's (the stock one would do if the key were not readable),
        // parsed once.
        let pair = key_pair(encoding.inner()).unwrap();
        assert!(Arc::ptr_eq(&pair, &key_pair(encoding.inner()).unwrap()));
        let ours = new_signer(&Algorithm::ES256, &encoding).unwrap();
        let stock = (DEFAULT_PROVIDER.signer_factory)(&Algorithm::ES256, &encoding).unwrap();
        let our_verifier = new_verifier(&Algorithm::ES256, &decoding).unwrap();
        let stock_verifier =
            (DEFAULT_PROVIDER.verifier_factory)(&Algorithm::ES256, &decoding).unwrap();
        let (by_us, by_them) = (
            ours.try_sign(b"a.b").unwrap(),
            stock.try_sign(b"a.b").unwrap(),
        );
        assert_eq!(by_us.len(), 64, "JWS ES256 is r || s");
        for signature in [&by_us, &by_them] {
            assert!(our_verifier.verify(b"a.b", signature).is_ok());
            assert!(stock_verifier.verify(b"a.b", signature).is_ok());
            assert!(our_verifier.verify(b"a.c", signature).is_err());
        }
        let mut changed = by_us.clone();
        changed[10] ^= 1;
        assert!(our_verifier.verify(b"a.b", &changed).is_err());
        assert!(our_verifier.verify(b"a.b", &by_us[..63].to_vec()).is_err());
    }

    #[test]
    fn tokens_round_trip_through_the_installed_provider() {
        install();
        let (encoding, decoding) = keys();
        let claims = Claims {
            sub: "a".into(),
            exp: 4_000_000_000,
        };
        let token = encode(&Header::new(Algorithm::ES256), &claims, &encoding).unwrap();
        let validation = Validation::new(Algorithm::ES256);
        assert_eq!(
            decode::<Claims>(&token, &decoding, &validation)
                .unwrap()
                .claims,
            claims
        );
    }

    #[test]
    fn rsa_keys_go_to_the_stock_provider_and_never_panic() {
        use rsa::traits::PublicKeyParts;
        let private = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
        let public = private.to_public_key();
        let b64 = |v: &rsa::BigUint| base64_url(&v.to_bytes_be());
        // A JWK's RSA key is kept as modulus and exponent, which `as_bytes` cannot give.
        let rsa = DecodingKey::from_rsa_components(&b64(public.n()), &b64(public.e())).unwrap();
        assert!(new_verifier(&Algorithm::RS256, &rsa).is_ok());
        // The ES256 verifier asked with an RSA key (an `alg` swapped by an attacker):
        // refused, not a panic.
        assert!(new_verifier(&Algorithm::ES256, &rsa).is_err());
        let der = rsa::pkcs1::EncodeRsaPrivateKey::to_pkcs1_der(&private).unwrap();
        let rsa_signing = EncodingKey::from_rsa_der(der.as_bytes());
        assert!(new_signer(&Algorithm::RS256, &rsa_signing).is_ok());
        assert!(new_signer(&Algorithm::ES256, &rsa_signing).is_err());
    }

    #[test]
    fn another_key_does_not_verify() {
        let (encoding, _) = keys();
        let (_, other) = keys();
        let token = encode(
            &Header::new(Algorithm::ES256),
            &Claims {
                sub: "a".into(),
                exp: 4_000_000_000,
            },
            &encoding,
        )
        .unwrap();
        let validation = Validation::new(Algorithm::ES256);
        assert!(decode::<Claims>(&token, &other, &validation).is_err());
    }
}
