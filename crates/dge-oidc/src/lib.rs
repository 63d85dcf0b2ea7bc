//! The OpenID Connect provider that portal modules log in through.
//!
//! - [`clients`]: registered clients, exact redirect URI matching, secrets kept hashed.
//! - [`authorize`]: the authorization request (code flow, PKCE S256 only).
//! - [`consent`]: consent for clients that are not first-party.
//! - [`session`]: the single sign-on session shared by every module.
//! - [`token`]: the token endpoint: codes, refresh tokens (rotated) and
//!   `client_credentials`; introspection and revocation.
//! - [`http`]: the JSON endpoints (discovery, JWKS, token, userinfo); the pages
//!   crate serves `/authorize` and the login form because they render HTML.
//! - [`logout`]: RP-initiated logout, exact post-logout redirect URIs.
//! - [`backchannel`]: back-channel logouts to the modules, queued in the database
//!   and retried until they are acknowledged.
//! - [`device`]: the device authorization grant (RFC 8628) for `dgectl login`.
//! - [`grpc`]: the `ClientRegistry` gRPC service.
//! - [`rate`]: rate limits of `/authorize` and of failed client authentications.
//! - [`fuzzing`]: entry points for `cargo fuzz`.

pub mod authorize;
pub mod backchannel;
pub mod clients;
pub mod consent;
pub mod device;
pub mod fuzzing;
pub mod grpc;
pub mod http;
pub mod logout;
pub mod rate;
pub mod session;
pub mod token;

use std::sync::Arc;

use dge_authz::Keys;
use dge_core::Clock;
use dge_store::Db;
use dge_store::ephemeral::Ephemeral;
use dge_store::sessions::{SessionError, Sessions};
use tokio::sync::Notify;

pub use authorize::{AuthorizeOutcome, AuthorizeParams};

/// Lifetimes and URLs of the provider.
#[derive(Debug, Clone)]
pub struct ProviderSettings {
    /// The issuer: the provider's public URL, without a trailing slash.
    pub issuer: String,
    /// Authorization codes live this long (RFC 6749 §4.1.2 recommends 10 minutes at most).
    pub code_ttl_secs: i64,
    /// Access and ID tokens live this long.
    pub token_ttl_secs: i64,
    /// Refresh tokens live this long (each rotation starts a new one).
    pub refresh_ttl_secs: i64,
    /// A person has this long to log in or sign up before the request expires.
    pub request_ttl_secs: i64,
    /// The single sign-on session lasts this long.
    pub session_ttl_secs: i64,
    /// Device codes (RFC 8628) wait this long for the person's approval.
    pub device_code_ttl_secs: i64,
    /// Rate limits of `/authorize` and of failed client authentications.
    pub limits: rate::RateLimits,
    /// Reverse proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

impl ProviderSettings {
    /// Defaults for `issuer`.
    #[must_use]
    pub fn new(issuer: String) -> Self {
        Self {
            issuer: issuer.trim_end_matches('/').to_owned(),
            code_ttl_secs: 60,
            token_ttl_secs: 3600,
            refresh_ttl_secs: 30 * 24 * 3600,
            request_ttl_secs: 3600,
            session_ttl_secs: 8 * 3600,
            device_code_ttl_secs: device::DEVICE_TTL_SECS,
            limits: rate::RateLimits::default(),
            trusted_proxies: Vec::new(),
        }
    }
}

/// The provider. Cheap to clone: one reference count, as axum clones it for every
/// request.
#[derive(Clone)]
pub struct Provider(Arc<ProviderState>);

/// What a [`Provider`] holds, shared by its clones.
#[derive(Clone)]
pub struct ProviderState {
    pub(crate) db: Db,
    pub(crate) keys: Arc<Keys>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) settings: ProviderSettings,
    /// Short-lived state shared by the replicas through Redis: authorization codes
    /// (taken exactly once) and device codes.
    pub(crate) ephemeral: Ephemeral,
    /// The single sign-on sessions: in Redis with `ephemeral` when it is shared,
    /// else in the database.
    pub(crate) sessions: Sessions,
    /// Clients authenticated at `/token`, `/introspect` and `/revoke`, by id: the
    /// same answers cache as `Check`'s (valid for one access generation, at most
    /// 1 s; `clients::set_settings` and `clients::lifecycle` bump the generation).
    pub(crate) clients: Arc<dge_authz::cache::Answers<String, clients::Client>>,
    /// Notified when back-channel logouts are queued, so that this replica's
    /// [`backchannel::Dispatcher`] posts them at once.
    pub(crate) backchannel_wake: Arc<Notify>,
}

impl std::ops::Deref for Provider {
    type Target = ProviderState;

    fn deref(&self) -> &ProviderState {
        &self.0
    }
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Provider {
    /// A provider over `db`, signing with `keys`; authorization codes stay in this
    /// process until [`Self::with_ephemeral`] shares them.
    #[must_use]
    pub fn new(db: Db, keys: Arc<Keys>, clock: Arc<dyn Clock>, settings: ProviderSettings) -> Self {
        Self(Arc::new(ProviderState {
            keys,
            clock,
            settings,
            ephemeral: Ephemeral::local("dge:"),
            sessions: Sessions::database(db.clone()),
            db,
            clients: Arc::new(dge_authz::cache::Answers::new(dge_authz::cache::CAPACITY)),
            backchannel_wake: Arc::new(Notify::new()),
        }))
    }

    /// Keeps short-lived state (authorization and device codes) in `ephemeral`, shared by the replicas,
    /// rather than in this process; sessions move to Redis too when `ephemeral` is
    /// shared through it.
    #[must_use]
    pub fn with_ephemeral(mut self, ephemeral: Ephemeral) -> Self {
        let state = Arc::get_mut(&mut self.0)
            .expect("with_ephemeral is called before the provider is cloned");
        state.sessions = Sessions::new(state.db.clone(), &ephemeral);
        state.ephemeral = ephemeral;
        self
    }

    /// The session store, for the services that end an account's sessions.
    #[must_use]
    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    /// The issuer URL.
    #[must_use]
    pub fn issuer(&self) -> &str {
        &self.settings.issuer
    }

    /// The settings.
    #[must_use]
    pub fn settings(&self) -> &ProviderSettings {
        &self.settings
    }

    /// The current time.
    #[must_use]
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// The client (`aud`), subject and issue time of an `id_token_hint`: an ID token
    /// signed by one of our keys with our issuer, even past its expiry (OIDC Core
    /// §3.1.2.1, RP-Initiated Logout §2). `None` for anything else. `/authorize` and
    /// `/logout` both check their hints here.
    pub(crate) fn id_token_hint(&self, hint: &str) -> Option<dge_authz::tokens::IdTokenHint> {
        self.keys.id_token_hint(hint, self.issuer())
    }
}

/// Errors of the provider's storage and signing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database failed.
    #[error("storage error")]
    Store(#[from] sqlx::Error),
    /// The shared short-lived store (Redis) failed.
    #[error("shared store error")]
    Ephemeral(#[from] dge_store::ephemeral::EphemeralError),
    /// The session store (database or Redis) failed.
    #[error("session store error")]
    Sessions(#[from] SessionError),
    /// Signing a token failed.
    #[error("signing failed")]
    Sign(#[from] dge_authz::Error),
    /// A setting is out of range, or a client cannot be built from the settings.
    #[error("configuration: {0}")]
    Config(String),
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
