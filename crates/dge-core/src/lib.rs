//! Shared domain types of DGE Identity.
//!
//! - [`secret`]: values that must never reach a log line.
//! - [`email`]: email addresses with a masked `Display`.
//! - [`net`]: the client address behind trusted reverse proxies.
//! - [`clock`]: the injected source of time.
//! - [`time`]: dates for people.
//! - [`retry`]: the waits between the attempts of the durable queues.
//! - [`token`]: random tokens, their at-rest hashes and constant-time comparison.
//! - [`chain`]: an error with all its causes, for the one log line at the edge.
//! - [`violation`]: per-field validation errors, in French, mapped to gRPC `BadRequest`.

pub mod clock;
pub mod email;
pub mod net;
pub mod private_fs;
pub mod retry;
pub mod secret;
pub mod time;
pub mod token;
pub mod violation;

pub mod chain;

pub use chain::ErrorChain;
pub use clock::{Clock, SystemClock};
pub use email::MaskedEmail;
pub use secret::Secret;
pub use violation::{Violation, Violations};

/// A new, time-ordered identifier (UUID v7), used for accounts, organisations and messages.
#[must_use]
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}
