//! Keys, tokens and the question "who is calling, and may they?".
//!
//! - [`keys`]: the ES256 signing keys, published as a JWKS, kept in the database.
//! - [`tokens`]: access tokens (RFC 9068 JWTs) and ID tokens minted and verified.
//! - [`caller`]: authenticates gRPC callers (API tokens and access tokens).
//! - [`rights`]: which rights an account holds.
//! - [`grpc`]: the `Authorization` gRPC service (`Check`, `ListRights`).

pub mod caller;
pub mod grpc;
pub mod keys;
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
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
