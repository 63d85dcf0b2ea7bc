//! The identity broker: people log in through an upstream OpenID Connect provider
//! (ProConnect, the Région Grand Est) instead of a local password.
//!
//! - [`config`]: the upstream providers, as configured.
//! - [`flow`]: the login through an upstream (openidconnect client, PKCE, nonce).
//! - [`grpc`]: the `IdentityBroker` gRPC service.

pub mod config;
pub mod flow;
pub mod grpc;

pub use config::{UpstreamConfig, default_providers};
pub use flow::{Broker, BrokerError, FederatedLogin};
