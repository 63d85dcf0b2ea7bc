//! The identity broker: people log in through an upstream OpenID Connect provider
//! (ProConnect, the Région Grand Est) instead of a local password.
//!
//! - [`config`]: the upstream providers, as configured, and the file they come from.
//! - [`domain`]: rules only: claims mapped to a profile, allow rules.
//! - [`flow`]: the login through an upstream (openidconnect client, PKCE, nonce, acr).
//! - [`fuzzing`]: the entry point of the `upstream_jwt` fuzz target.
//! - `userinfo`: signed userinfo, verified.
//! - [`accounts`]: federated accounts, profile refresh, link offers.
//! - [`logout`]: ending the upstream session at logout.
//! - [`grpc`]: the `IdentityBroker` gRPC service.

pub mod accounts;
pub mod config;
pub mod domain;
pub mod flow;
pub mod fuzzing;
pub mod grpc;
pub mod logout;
mod userinfo;

pub use config::{UpstreamConfig, default_providers};
pub use flow::{Broker, BrokerError, FederatedLogin, Hints, LinkOffer, Outcome, Started};
