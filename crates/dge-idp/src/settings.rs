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
    /// Confirmation link lifetime.
    pub confirmation_ttl_secs: i64,
    /// Lifetime of access and ID tokens.
    pub token_ttl_secs: i64,
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
    /// Encrypts the private signing keys at rest.
    pub key_encryption_key: dge_authz::keys::KeyEncryptionKey,
}
