//! The local-account registry.
//!
//! - [`domain`]: accounts and the sign-up rules (no I/O).
//! - [`hashing`]: argon2id, off the async threads, with bounded concurrency.
//! - [`store`]: account queries shared with the other services.
//! - [`service`]: sign-up, email confirmation and login checks.
//! - [`reset`]: password reset, and what every password change does.
//! - [`account`]: resend and purge of sign-ups; profile, email change, export, deletion.
//! - [`mfa`]: two-step verification (TOTP and recovery codes).
//! - [`throttle`]: brute-force throttling of password logins.
//! - [`grpc`]: the `AccountRegistry` gRPC service.

pub mod account;
pub mod domain;
pub mod grpc;
pub mod hashing;
pub mod mfa;
pub mod reset;
pub mod service;
pub mod store;
pub mod throttle;

pub use domain::{Account, AccountStatus, SignUpForm};
pub use hashing::Hasher;
pub use service::{
    AccountLifetimes, ConfirmLink, LoginError, LoginState, Registry, RegistrySettings,
};
pub use throttle::{Throttle, ThrottleSettings};

/// Errors of the registry.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request broke one or more rules.
    #[error("invalid request")]
    Invalid(dge_core::Violations),
    /// The confirmation link is unknown, used or expired.
    #[error("confirmation token is invalid or expired")]
    BadToken,
    /// Too many password hashes are already running.
    #[error("password hashing is saturated")]
    Busy,
    /// Too many sign-ups were filed from one client address lately; the value is
    /// how many seconds until the window ends.
    #[error("too many sign-ups from one address")]
    TooManySignUps(u64),
    /// The database failed.
    #[error("storage error")]
    Store(#[from] sqlx::Error),
    /// The mail could not be queued.
    #[error("mail could not be queued")]
    Mail(#[from] dge_mailer::Error),
    /// The shared store (Redis) failed: logins are refused rather than unthrottled.
    #[error("shared store error")]
    Shared(#[from] dge_store::ephemeral::EphemeralError),
    /// The session store (database or Redis) failed.
    #[error("session store error")]
    Sessions(#[from] dge_store::sessions::SessionError),
    /// A hashing task failed (a bug).
    #[error("password hashing failed")]
    Hash,
    /// A two-step secret could not be sealed or opened (no key, or the wrong key).
    #[error("two-step secret cannot be sealed or opened")]
    Sealing,
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for tonic::Status {
    fn from(err: Error) -> Self {
        match err {
            Error::Invalid(v) => v.into_status(),
            Error::BadToken => tonic::Status::failed_precondition("invalid or expired token"),
            Error::Busy => tonic::Status::resource_exhausted("too many concurrent logins"),
            Error::TooManySignUps(_) => {
                tonic::Status::resource_exhausted("too many sign-ups from this address")
            }
            Error::Store(_)
            | Error::Mail(_)
            | Error::Shared(_)
            | Error::Sessions(_)
            | Error::Hash
            | Error::Sealing => {
                tracing::error!(error = %dge_core::ErrorChain(&err), "registry call failed");
                tonic::Status::internal("internal error")
            }
        }
    }
}
