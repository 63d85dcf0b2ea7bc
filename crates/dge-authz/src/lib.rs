//! Keys, tokens and the question "who is calling, and may they?".
//!
//! - [`keys`]: the signing keys (ES256, RS256), published as a JWKS, encrypted at rest,
//!   rotated.
//! - [`tokens`]: access tokens (RFC 9068 JWTs) and ID tokens minted and verified.
//! - [`grants`]: what was issued: revocation, refresh-token families, introspection.
//! - [`caller`]: authenticates gRPC callers (API tokens and access tokens).
//! - [`rights`]: which rights an account holds.
//! - [`cache`]: verified tokens and authorization answers kept in memory for `Check`.
//! - [`grpc`]: the `Authorization` gRPC service (`Check`, `ListRights`, `Introspect`,
//!   `Revoke`).
//! - [`keys_grpc`]: the `SigningKeys` gRPC service (list, rotate).

pub mod cache;
pub mod caller;
pub mod grants;
pub mod grpc;
pub mod jose;
pub mod keys;
pub mod keys_grpc;
pub mod rights;
pub mod tokens;

pub use caller::{Authenticator, Caller};
pub use keys::Keys;
pub use tokens::{AccessClaims, TokenError};

/// Errors of this crate that are not token verification failures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database failed.
    #[error("storage error")]
    Store(#[from] sqlx::Error),
    /// A stored key could not be read back.
    #[error("stored signing key is unreadable")]
    BadKey,
    /// Signing failed.
    #[error("signing failed")]
    Sign(#[from] jsonwebtoken::errors::Error),
    /// The key-encryption key is malformed, or not the one the keys were sealed with.
    #[error("key-encryption key is malformed or does not open the stored keys")]
    BadKek,
    /// The key-encryption key file cannot be read or written.
    #[error("key-encryption key file")]
    KekFile(#[source] std::io::Error),
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
