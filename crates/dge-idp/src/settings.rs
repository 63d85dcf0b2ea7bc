//! What the server needs to run, whichever command filled it.

use std::path::PathBuf;

/// Where emails go.
#[derive(Debug, Clone)]
pub enum MailTransport {
    /// `.eml` files in this folder.
    Files(PathBuf),
    /// An SMTP URL (`smtp://host:25`, `smtps://user:pass@host:465`). Never logged.
    Smtp(dge_core::Secret<String>),
}

/// How emails are delivered and retried.
#[derive(Debug, Clone)]
pub struct MailDelivery {
    /// Attempts before a message is marked failed.
    pub max_attempts: u32,
    /// Wait after the first failure, doubled after each further one.
    pub retry_base_secs: i64,
    /// The longest wait between attempts.
    pub retry_max_secs: i64,
    /// SMTP connection and command timeout.
    pub smtp_timeout_secs: u64,
    /// Extra trusted CA (PEM) for the SMTP server's certificate.
    pub smtp_ca_file: Option<PathBuf>,
    /// Sent messages are deleted this long after sending.
    pub sent_retention_secs: i64,
    /// Failed and cancelled messages are deleted this long after their last change.
    pub failed_retention_secs: i64,
}

impl Default for MailDelivery {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            retry_base_secs: 30,
            retry_max_secs: 3600,
            smtp_timeout_secs: 30,
            smtp_ca_file: None,
            sent_retention_secs: dge_mailer::DispatchSettings::default().sent_retention_secs,
            failed_retention_secs: dge_mailer::DispatchSettings::default().failed_retention_secs,
        }
    }
}

/// Settings of a running server.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Public URL and OIDC issuer, without a trailing slash.
    pub public_url: String,
    /// Database URL.
    pub database_url: dge_core::Secret<String>,
    /// Pool size.
    pub database_max_connections: u32,
    /// Mail transport.
    pub mail: MailTransport,
    /// The `From` of emails.
    pub mail_from: String,
    /// Retries and SMTP options.
    pub mail_delivery: MailDelivery,
    /// Confirmation link lifetime.
    pub confirmation_ttl_secs: i64,
    /// How long an unconfirmed sign-up is kept before it is purged.
    pub unconfirmed_ttl_secs: i64,
    /// Resend and sign-up-notice limits (their `unconfirmed_ttl_secs` is replaced by
    /// the field above).
    pub account_limits: dge_registry::AccountLifetimes,
    /// Lifetime of access and ID tokens.
    pub token_ttl_secs: i64,
    /// Lifetime of device codes (`dgectl login`).
    pub device_code_ttl_secs: i64,
    /// Whether cookies are `Secure`.
    pub secure_cookies: bool,
    /// Notices to administrators about sign-ups.
    pub notify: dge_workflow::notify::NotifySettings,
    /// Upstream identity providers.
    pub upstreams: Vec<dge_broker::UpstreamConfig>,
    /// Portal look and links.
    pub portal: dge_pages::Portal,
    /// Support address shown in emails.
    pub support_email: String,
    /// Concurrent password hashes.
    pub hash_concurrency: usize,
    /// Redis for state shared between replicas; `None`: in-process (one replica).
    pub redis_url: Option<dge_core::Secret<String>>,
    /// Prefix of every key in Redis (`dge:`), so that deployments can share one.
    pub redis_prefix: String,
    /// How long one call to Redis may take before it fails as unavailable.
    pub redis_timeout: std::time::Duration,
    /// How long PostgreSQL lets one statement run (SQLite: unused).
    pub database_statement_timeout: std::time::Duration,
    /// argon2id cost of new password hashes; older hashes are redone at login.
    pub hash_params: dge_registry::hashing::HashParams,
    /// Least delay between publishing a rotated signing key and its first signature.
    pub key_min_activate_secs: i64,
    /// Encrypts the private signing keys at rest.
    pub key_encryption_key: dge_authz::keys::KeyEncryptionKey,
    /// Brute-force throttling of password logins.
    pub throttle: dge_registry::ThrottleSettings,
    /// Reverse proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Timeouts and connection cap of the HTTP listeners.
    pub http_limits: crate::http_server::HttpLimits,
    /// Handshake deadline and connection cap of the gRPC listener.
    pub grpc_limits: crate::grpc_server::GrpcLimits,
    /// Rate limits of `/authorize` and of failed client authentications.
    pub rate_limits: dge_oidc::rate::RateLimits,
}
