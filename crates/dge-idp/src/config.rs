//! Production configuration: a TOML file plus `DGE_` environment variables.
//!
//! Every key of the file can be set from the environment: `DGE_DATABASE__URL`
//! sets `database.url` (two underscores separate the levels). Unknown keys are
//! refused, so a misspelt setting fails at start instead of being ignored. Error
//! messages name the key, never its value: a misplaced secret must not reach a log.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use dge_broker::UpstreamConfig;
use dge_core::Secret;
use dge_registry::hashing::HashParams;
use dge_workflow::notify::{NoticeMode, NotifySettings};
use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::Deserialize;

use crate::settings::{MailDelivery, MailTransport, Settings};

/// The whole configuration file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listeners and public URL.
    pub server: ServerConfig,
    /// The database.
    pub database: DatabaseConfig,
    /// Outgoing email.
    pub mail: MailConfig,
    /// Keys of the provider.
    pub keys: KeysConfig,
    /// Redis, shared by the replicas.
    #[serde(default)]
    pub redis: RedisConfig,
    /// The portal's name, look and links.
    #[serde(default)]
    pub portal: PortalConfig,
    /// Local-account settings.
    #[serde(default)]
    pub accounts: AccountsConfig,
    /// Notices to administrators.
    #[serde(default)]
    pub notify: NotifyConfig,
    /// Brute-force throttling and the reverse proxies believed.
    #[serde(default)]
    pub security: SecurityConfig,
    /// OpenTelemetry trace export; off by default.
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    /// Upstream identity providers; ProConnect and the Région, unconfigured, by default.
    #[serde(default = "dge_broker::default_providers")]
    pub upstreams: Vec<UpstreamConfig>,
}

/// `[server]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// HTTP listener (pages and OpenID Connect).
    #[serde(default = "default_http")]
    pub http_addr: SocketAddr,
    /// gRPC listener.
    #[serde(default = "default_grpc")]
    pub grpc_addr: SocketAddr,
    /// Public URL, also the OIDC issuer: `https://…` (plain `http` only on loopback).
    pub public_url: String,
    /// Prometheus metrics listener (`GET /metrics`), kept off the public port; none
    /// when absent.
    #[serde(default)]
    pub metrics_addr: Option<SocketAddr>,
    /// Seconds for a request's head to arrive; also how long an idle keep-alive
    /// connection is kept.
    #[serde(default = "default_header_timeout")]
    pub header_timeout_secs: u64,
    /// Seconds for a whole request, body included, before a 408.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_secs: u64,
    /// HTTP connections open at once (public and metrics listeners each); more are
    /// closed at once.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// gRPC connections open at once, handshakes included; more are closed at once.
    #[serde(default = "default_grpc_max_connections")]
    pub grpc_max_connections: usize,
    /// Seconds for a gRPC client's HTTP/2 preface and first SETTINGS frame to arrive.
    #[serde(default = "default_grpc_handshake_timeout")]
    pub grpc_handshake_timeout_secs: u64,
}

impl ServerConfig {
    /// The HTTP listeners' limits.
    #[must_use]
    pub fn http_limits(&self) -> crate::http_server::HttpLimits {
        crate::http_server::HttpLimits {
            header_timeout: std::time::Duration::from_secs(self.header_timeout_secs),
            request_timeout: std::time::Duration::from_secs(self.request_timeout_secs),
            max_connections: self.max_connections,
        }
    }

    /// The gRPC listener's limits.
    #[must_use]
    pub fn grpc_limits(&self) -> crate::grpc_server::GrpcLimits {
        crate::grpc_server::GrpcLimits {
            max_connections: self.grpc_max_connections,
            handshake_timeout: std::time::Duration::from_secs(self.grpc_handshake_timeout_secs),
        }
    }
}

/// `[redis]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://host:6379` (or `rediss://` for TLS). Required with more than one
    /// replica; without it, counters and notifications stay inside the process.
    pub url: Option<Secret<String>>,
    /// Prefix of every key (`dge:` by default), so that several deployments (or test
    /// runs) can share one Redis: 1 to 64 of `A-Za-z0-9_:.-`.
    pub prefix: Option<String>,
    /// How long one call to Redis may take, in milliseconds (2000 by default, 50 to
    /// 60000): past it the call fails and the request that needed it is answered
    /// "unavailable" instead of waiting for a Redis that went silent.
    pub timeout_ms: Option<u64>,
}

/// `[telemetry]`: spans exported over OTLP/HTTP (protobuf) to a collector.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// Base URL of the collector's OTLP/HTTP receiver, e.g. `http://otel-collector:4318`
    /// (spans are posted to `/v1/traces` below it). No export when absent.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported spans.
    pub service_name: String,
    /// Share of traces exported, 0.0 (none) to 1.0 (all).
    pub sampling_ratio: f64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            service_name: "dge-idp".into(),
            sampling_ratio: 1.0,
        }
    }
}

impl TelemetryConfig {
    /// What [`crate::telemetry::export`] needs, when an endpoint is set.
    #[must_use]
    pub fn export(&self) -> Option<crate::telemetry::ExportSettings> {
        self.otlp_endpoint
            .as_ref()
            .map(|endpoint| crate::telemetry::ExportSettings {
                otlp_endpoint: endpoint.clone(),
                service_name: self.service_name.clone(),
                sampling_ratio: self.sampling_ratio,
            })
    }

    fn check(&self, errors: &mut Vec<String>) {
        if let Some(endpoint) = &self.otlp_endpoint {
            match url::Url::parse(endpoint) {
                Ok(u)
                    if matches!(u.scheme(), "http" | "https")
                        && u.host_str().is_some()
                        && u.query().is_none() => {}
                _ => errors.push(
                    "telemetry.otlp_endpoint: an http:// or https:// URL such as http://collector:4318"
                        .into(),
                ),
            }
        }
        if self.service_name.trim().is_empty() {
            errors.push("telemetry.service_name: must not be empty".into());
        }
        if !(0.0..=1.0).contains(&self.sampling_ratio) {
            errors.push("telemetry.sampling_ratio: 0.0 to 1.0".into());
        }
    }
}

/// `[keys]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysConfig {
    /// 32 random bytes in base64 that encrypt the private signing keys at rest
    /// (AES-256-GCM). The same on every replica; keep it in
    /// `DGE_KEYS__ENCRYPTION_KEY`, not in the file.
    pub encryption_key: Secret<String>,
    /// Least delay between publishing a rotated key and its first signature (300 s,
    /// the relying parties' JWKS cache); at least 60, the replicas' reload period.
    #[serde(default = "default_min_activate")]
    pub min_activate_secs: i64,
}

const fn default_min_activate() -> i64 {
    dge_authz::keys_grpc::DEFAULT_MIN_ACTIVATE_SECS
}

/// `[database]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `postgres://…` for several replicas, `sqlite://…` for one.
    pub url: Secret<String>,
    /// Pool size of each replica.
    #[serde(default = "default_pool")]
    pub max_connections: u32,
    /// How long PostgreSQL lets one statement run, lock waits included, in
    /// milliseconds (30000 by default, 100 to 600000); a session idle inside a
    /// transaction is ended after twice that. Not used by SQLite.
    pub statement_timeout_ms: Option<u64>,
}

/// `[mail]`: exactly one of `smtp_url` and `outbox_dir`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailConfig {
    /// The `From` mailbox, e.g. `DataGrandEst <no-reply@datagrandest.fr>`.
    pub from: String,
    /// `smtp://host:25`, `smtp://user:pass@host:587?tls=required`, `smtps://host:465`.
    #[serde(default)]
    pub smtp_url: Option<Secret<String>>,
    /// Write `.eml` files here instead (tests, demos).
    #[serde(default)]
    pub outbox_dir: Option<PathBuf>,
    /// Attempts before a message is marked failed for an administrator to retry.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Wait after the first failed attempt, doubled after each further one.
    #[serde(default = "default_retry_base")]
    pub retry_base_secs: i64,
    /// The longest wait between two attempts.
    #[serde(default = "default_retry_max")]
    pub retry_max_secs: i64,
    /// SMTP connection and command timeout.
    #[serde(default = "default_smtp_timeout")]
    pub smtp_timeout_secs: u64,
    /// PEM file of an extra certificate authority trusted for the SMTP server.
    #[serde(default)]
    pub smtp_ca_file: Option<PathBuf>,
    /// Sent messages (an address and a personal text) are deleted this long after
    /// sending; at least 3600.
    #[serde(default = "default_sent_retention")]
    pub sent_retention_secs: i64,
    /// Failed and cancelled messages are deleted this long after their last change.
    #[serde(default = "default_failed_retention")]
    pub failed_retention_secs: i64,
}

fn default_sent_retention() -> i64 {
    dge_mailer::DispatchSettings::default().sent_retention_secs
}

fn default_failed_retention() -> i64 {
    dge_mailer::DispatchSettings::default().failed_retention_secs
}

const fn default_max_attempts() -> u32 {
    8
}

const fn default_retry_base() -> i64 {
    30
}

const fn default_retry_max() -> i64 {
    3600
}

const fn default_smtp_timeout() -> u64 {
    30
}

/// `[portal]`: the look and links of the pages, so another portal can use the binary.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PortalConfig {
    /// Display name.
    pub name: String,
    /// Home page.
    pub home_url: String,
    /// Logo file (PNG, SVG, WebP or JPEG, at most 256 KiB), read at start and served
    /// by us at `/static/logo`.
    pub logo_file: Option<PathBuf>,
    /// Main colour, `#rgb` or `#rrggbb`.
    pub primary_color: String,
    /// Support address shown in emails.
    pub support_email: String,
    /// Line under the name in the header.
    pub tagline: String,
    /// Sentence after the name in the footer.
    pub footer_text: String,
    /// Links of the footer (legal notice, accessibility, personal data…).
    pub footer_links: Vec<FooterLinkConfig>,
}

/// `[[portal.footer_links]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FooterLinkConfig {
    /// Text of the link.
    pub label: String,
    /// `https://…`, `http://…` or a path on this server (`/…`).
    pub url: String,
}

/// The largest logo file accepted: it is held in memory and sent with every header.
const MAX_LOGO_BYTES: u64 = 256 * 1024;

impl Default for PortalConfig {
    fn default() -> Self {
        let pages = dge_pages::Portal::default();
        Self {
            name: pages.name,
            home_url: pages.home_url,
            logo_file: None,
            primary_color: pages.primary_color,
            support_email: "contact@datagrandest.fr".into(),
            tagline: pages.tagline,
            footer_text: pages.footer_text,
            footer_links: Vec::new(),
        }
    }
}

impl PortalConfig {
    /// What is wrong with these settings, one line per key.
    fn problems(&self) -> Vec<String> {
        let mut errors = Vec::new();
        let web_url =
            |u: &str| url::Url::parse(u).is_ok_and(|u| matches!(u.scheme(), "https" | "http"));
        if self.name.trim().is_empty() || self.name.chars().count() > 80 {
            errors.push("portal.name: 1 to 80 characters".into());
        }
        // Shown in pages and email subjects: a newline or control character would
        // break a header line or the layout.
        let texts = [
            ("portal.name", &self.name),
            ("portal.tagline", &self.tagline),
            ("portal.footer_text", &self.footer_text),
        ];
        for (key, text) in texts {
            if has_control(text) {
                errors.push(format!("{key}: no newline or control character"));
            }
        }
        if !web_url(&self.home_url) {
            errors.push("portal.home_url: an http(s) URL".into());
        }
        if !dge_pages::render::is_hex_colour(&self.primary_color) {
            errors.push("portal.primary_color: #rgb or #rrggbb".into());
        }
        if dge_registry::domain::signup::normalise_email(&self.support_email).is_none() {
            errors.push("portal.support_email: not an email address".into());
        }
        if self.tagline.chars().count() > 80 {
            errors.push("portal.tagline: at most 80 characters".into());
        }
        if self.footer_text.chars().count() > 300 {
            errors.push("portal.footer_text: at most 300 characters".into());
        }
        for (i, link) in self.footer_links.iter().enumerate() {
            if link.label.trim().is_empty() || link.label.chars().count() > 80 {
                errors.push(format!(
                    "portal.footer_links[{i}].label: 1 to 80 characters"
                ));
            }
            if has_control(&link.label) {
                errors.push(format!(
                    "portal.footer_links[{i}].label: no newline or control character"
                ));
            }
            // A path on this server, or a web address: never javascript: or data:.
            // Browsers read `/\` as `//` (another host), and drop tabs and newlines
            // inside URLs: a local path has neither backslash nor blank nor control.
            let local_path = link.url.starts_with('/')
                && !link.url.starts_with("//")
                && !link
                    .url
                    .chars()
                    .any(|c| c == '\\' || c.is_whitespace() || c.is_control());
            if !(local_path || web_url(&link.url)) {
                errors.push(format!(
                    "portal.footer_links[{i}].url: an http(s) URL or a path starting with /"
                ));
            }
        }
        if let Some(path) = &self.logo_file {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if dge_pages::Logo::content_type_of(name).is_none() {
                errors.push("portal.logo_file: a .png, .svg, .webp or .jpg file".into());
            }
            match std::fs::metadata(path) {
                Ok(m) if m.is_file() && m.len() <= MAX_LOGO_BYTES => {}
                Ok(m) if m.is_file() => {
                    errors.push("portal.logo_file: at most 256 KiB".into());
                }
                _ => errors.push(format!(
                    "portal.logo_file: {} is not a readable file",
                    path.display()
                )),
            }
        }
        errors
    }

    /// The pages' settings, with the logo file read.
    fn pages(&self) -> Result<dge_pages::Portal, ConfigError> {
        let logo = match &self.logo_file {
            None => None,
            Some(path) => {
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                let content_type = dge_pages::Logo::content_type_of(name).ok_or_else(|| {
                    ConfigError(vec![
                        "portal.logo_file: a .png, .svg, .webp or .jpg file".into(),
                    ])
                })?;
                let bytes = std::fs::read(path).map_err(|e| {
                    ConfigError(vec![format!("portal.logo_file: {}: {e}", path.display())])
                })?;
                Some(dge_pages::Logo {
                    content_type,
                    bytes: bytes.into(),
                })
            }
        };
        let mut portal = dge_pages::Portal::default();
        portal.name.clone_from(&self.name);
        portal.home_url.clone_from(&self.home_url);
        portal.primary_color.clone_from(&self.primary_color);
        portal.tagline.clone_from(&self.tagline);
        portal.footer_text.clone_from(&self.footer_text);
        portal.support_email.clone_from(&self.support_email);
        portal.footer_links = self
            .footer_links
            .iter()
            .map(|l| dge_pages::FooterLink {
                label: l.label.clone(),
                url: l.url.clone(),
            })
            .collect();
        Ok(portal.with_logo(logo))
    }
}

/// `[accounts]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccountsConfig {
    /// Lifetime of confirmation links, seconds.
    pub confirmation_ttl_secs: i64,
    /// How long an unconfirmed sign-up is kept before it is purged, seconds.
    pub unconfirmed_ttl_secs: i64,
    /// Password hashes run at once per replica (each holds 19 MiB).
    pub hash_concurrency: usize,
    /// argon2id memory cost in KiB (OWASP: 19456, that is 19 MiB).
    pub hash_memory_kib: u32,
    /// argon2id passes (OWASP: 2).
    pub hash_iterations: u32,
    /// argon2id lanes (OWASP: 1).
    pub hash_parallelism: u32,
    /// Least time between two confirmation emails for one sign-up, seconds.
    pub resend_interval_secs: i64,
    /// At most this many confirmation emails per sign-up per day (the first counts).
    pub resend_max_per_day: i64,
    /// At most this many "someone tried to sign up with your address" emails per
    /// address per `signup_notice_window_secs`.
    pub signup_notice_max: i64,
    /// The window of `signup_notice_max`, seconds.
    pub signup_notice_window_secs: i64,
    /// At most this many sign-ups filed from one client address (an IPv6 address
    /// counts by its /64) per `signups_per_address_window_secs`.
    pub signups_per_address_max: i64,
    /// The window of `signups_per_address_max`, seconds.
    pub signups_per_address_window_secs: i64,
}

impl Default for AccountsConfig {
    fn default() -> Self {
        Self {
            confirmation_ttl_secs: 48 * 3600,
            unconfirmed_ttl_secs: 7 * 24 * 3600,
            hash_concurrency: 2,
            hash_memory_kib: HashParams::default().memory_kib,
            hash_iterations: HashParams::default().iterations,
            hash_parallelism: HashParams::default().parallelism,
            resend_interval_secs: dge_registry::AccountLifetimes::default().resend_interval_secs,
            resend_max_per_day: dge_registry::AccountLifetimes::default().resend_max_per_day,
            signup_notice_max: dge_registry::AccountLifetimes::default().signup_notice_max,
            signup_notice_window_secs: dge_registry::AccountLifetimes::default()
                .signup_notice_window_secs,
            signups_per_address_max: dge_registry::AccountLifetimes::default()
                .signups_per_address_max,
            signups_per_address_window_secs: dge_registry::AccountLifetimes::default()
                .signups_per_address_window_secs,
        }
    }
}

/// argon2id memory cost above which a setting is surely a mistake: 1 GiB.
const MAX_HASH_MEMORY_KIB: u32 = 1024 * 1024;
/// Memory all concurrent hashes of one replica may hold together: 4 GiB.
const MAX_HASH_MEMORY_TOTAL_KIB: u64 = 4 * 1024 * 1024;
/// The longest lifetime of links, sign-ups and kept messages: a year.
const MAX_TTL_SECS: i64 = 365 * 86_400;
/// The longest delay answering a failed login: a minute.
const MAX_LOGIN_DELAY_MS: u64 = 60_000;

impl AccountsConfig {
    /// argon2id costs `serve` can afford: each hash allocates `hash_memory_kib`, up
    /// to `hash_concurrency` at once, so a typo must not abort the start or the
    /// first login on an allocation failure.
    fn check_hashing(&self, errors: &mut Vec<String>) {
        if !(1..=64).contains(&self.hash_concurrency) {
            errors.push("accounts.hash_concurrency: 1 to 64".into());
        }
        if !(8 * 1024..=MAX_HASH_MEMORY_KIB).contains(&self.hash_memory_kib)
            || !(1..=20).contains(&self.hash_iterations)
            || !(1..=16).contains(&self.hash_parallelism)
        {
            errors.push(
                "accounts.hash_memory_kib, hash_iterations, hash_parallelism: 8192 to 1048576 (1 GiB), 1 to 20 and 1 to 16"
                    .into(),
            );
        }
        let total = u64::from(self.hash_memory_kib)
            .saturating_mul(u64::try_from(self.hash_concurrency).unwrap_or(u64::MAX));
        if total > MAX_HASH_MEMORY_TOTAL_KIB {
            errors.push(
                "accounts.hash_concurrency × hash_memory_kib: at most 4194304 KiB (4 GiB) in all"
                    .into(),
            );
        }
    }
}

/// `[security]`: throttling of password logins (see `dge_registry::throttle`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// Failures answered at once before delays start.
    pub login_free_failures: u64,
    /// First delay after the free failures, milliseconds; doubles at each failure.
    pub login_delay_base_ms: u64,
    /// Longest delay, milliseconds.
    pub login_delay_max_ms: u64,
    /// Failures on one account within the window that lock it.
    pub login_lock_after: u64,
    /// Failures from one client address within the window that lock the address.
    pub address_lock_after: u64,
    /// How long failures are counted, seconds.
    pub login_window_secs: u64,
    /// How long a lock lasts, seconds (it always expires).
    pub login_lock_secs: u64,
    /// Requests to `/authorize` from one client address within
    /// `authorize_window_secs`; more get a 429 page.
    pub authorize_max_requests: u64,
    /// The window of `authorize_max_requests`, seconds.
    pub authorize_window_secs: u64,
    /// Failed client authentications at the token endpoints, per client id and per
    /// address, within `client_auth_window_secs`; more are refused at once with 429.
    pub client_auth_max_failures: u64,
    /// The window of `client_auth_max_failures`, seconds.
    pub client_auth_window_secs: u64,
    /// Reverse proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        let t = dge_registry::ThrottleSettings::default();
        let r = dge_oidc::rate::RateLimits::default();
        Self {
            login_free_failures: t.free_failures,
            login_delay_base_ms: t.delay_base_ms,
            login_delay_max_ms: t.delay_max_ms,
            login_lock_after: t.lock_after,
            address_lock_after: t.address_lock_after,
            login_window_secs: t.window_secs,
            login_lock_secs: t.lock_secs,
            authorize_max_requests: r.authorize_max,
            authorize_window_secs: r.authorize_window_secs,
            client_auth_max_failures: r.client_auth_max_failures,
            client_auth_window_secs: r.client_auth_window_secs,
            trusted_proxies: Vec::new(),
        }
    }
}

impl SecurityConfig {
    /// The throttle settings.
    #[must_use]
    pub fn throttle(&self) -> dge_registry::ThrottleSettings {
        dge_registry::ThrottleSettings {
            free_failures: self.login_free_failures,
            delay_base_ms: self.login_delay_base_ms,
            delay_max_ms: self.login_delay_max_ms,
            lock_after: self.login_lock_after,
            address_lock_after: self.address_lock_after,
            window_secs: self.login_window_secs,
            lock_secs: self.login_lock_secs,
            ..dge_registry::ThrottleSettings::default()
        }
    }

    /// The rate limits of `/authorize` and of client authentication.
    #[must_use]
    pub fn rate_limits(&self) -> dge_oidc::rate::RateLimits {
        dge_oidc::rate::RateLimits {
            authorize_max: self.authorize_max_requests,
            authorize_window_secs: self.authorize_window_secs,
            client_auth_max_failures: self.client_auth_max_failures,
            client_auth_window_secs: self.client_auth_window_secs,
        }
    }
}

/// `[notify]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// Administrators told of new sign-ups.
    pub admin_emails: Vec<String>,
    /// `per-signup` or `daily-digest`.
    pub mode: String,
    /// Hour (UTC) of the daily digest.
    pub digest_hour_utc: u32,
    /// Remind of sign-ups pending longer than this many days.
    pub reminder_after_days: i64,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            admin_emails: Vec::new(),
            mode: "per-signup".into(),
            digest_hour_utc: 7,
            reminder_after_days: 3,
        }
    }
}

fn default_http() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 8080))
}

fn default_grpc() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 50051))
}

fn default_header_timeout() -> u64 {
    crate::http_server::HttpLimits::default()
        .header_timeout
        .as_secs()
}

fn default_request_timeout() -> u64 {
    crate::http_server::HttpLimits::default()
        .request_timeout
        .as_secs()
}

fn default_max_connections() -> usize {
    crate::http_server::HttpLimits::default().max_connections
}

fn default_grpc_max_connections() -> usize {
    crate::grpc_server::GrpcLimits::default().max_connections
}

fn default_grpc_handshake_timeout() -> u64 {
    crate::grpc_server::GrpcLimits::default()
        .handshake_timeout
        .as_secs()
}

const fn default_pool() -> u32 {
    16
}

/// Top-level sections, so unrelated `DGE_…` variables (those of `dge-idp dev`)
/// are not mistaken for configuration keys.
const SECTIONS: [&str; 11] = [
    "server",
    "database",
    "redis",
    "security",
    "telemetry",
    "keys",
    "mail",
    "portal",
    "accounts",
    "notify",
    "upstreams",
];

/// What is wrong with a configuration: one line per problem, keys only.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  {}", .0.join("\n  "))]
pub struct ConfigError(pub Vec<String>);

/// Reads `path` (if given) and the environment.
///
/// # Errors
/// [`ConfigError`] naming each bad key.
pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
    let mut figment = Figment::new();
    if let Some(path) = path {
        if !path.is_file() {
            return Err(ConfigError(vec![format!(
                "{}: no such file",
                path.display()
            )]));
        }
        figment = figment.merge(Toml::file(path));
    }
    let env = Env::prefixed("DGE_").split("__").filter(|key| {
        // The key keeps the variable's case until figment lower-cases it later.
        let top = key.as_str().split('.').next().unwrap_or_default();
        SECTIONS.iter().any(|s| s.eq_ignore_ascii_case(top))
    });
    let config: Config = figment
        .merge(env)
        .extract()
        .map_err(|e| ConfigError(e.into_iter().map(describe).collect()))?;
    config.validate()?;
    Ok(config)
}

/// Parses a configuration file's text alone, without the environment, then checks
/// it and derives the settings as `serve` would: the entry point of the `config`
/// fuzz target (fuzz/).
///
/// # Errors
/// [`ConfigError`] naming each bad key.
pub fn parse_toml(text: &str) -> Result<Settings, ConfigError> {
    let config: Config = Figment::from(Toml::string(text))
        .extract()
        .map_err(|e| ConfigError(e.into_iter().map(describe).collect()))?;
    config.validate()?;
    config.settings()
}

/// A figment error without the offending value.
fn describe(e: figment::Error) -> String {
    use figment::error::Kind;
    let key = if e.path.is_empty() {
        "(top level)".to_owned()
    } else {
        e.path.join(".")
    };
    let what = match &e.kind {
        Kind::MissingField(field) => return format!("{}: missing", join_key(&e.path, field)),
        Kind::UnknownField(field, _) => {
            return format!("{}: unknown key", join_key(&e.path, field));
        }
        Kind::InvalidType(_, expected) => format!("expected {expected}"),
        Kind::InvalidValue(_, expected) => format!("expected {expected}"),
        Kind::InvalidLength(_, expected) => format!("expected {expected}"),
        Kind::UnknownVariant(_, expected) => format!("expected one of {}", expected.join(", ")),
        Kind::DuplicateField(field) => format!("duplicated key {field}"),
        // A TOML syntax error quotes the offending line, which may hold a secret:
        // only its position is kept.
        Kind::Message(m) => match m.lines().next() {
            Some(first) if first.starts_with("TOML parse error at line") => {
                // The last line is the parser's own words; only a duplicate is
                // named, by its key (never the quoted source line or a value).
                let what = match m.lines().rev().find(|l| !l.trim().is_empty()) {
                    Some(last) if last.starts_with("duplicate key") => duplicate_key(last),
                    _ => "syntax error".to_owned(),
                };
                format!(
                    "{}: {what}",
                    first.trim_start_matches("TOML parse error at ")
                )
            }
            _ => "invalid value".to_owned(),
        },
        // Other kinds may print the value itself.
        _ => "invalid value".to_owned(),
    };
    format!("{key}: {what}")
}

/// `duplicate key `name``, keeping the key only when it is a plain TOML name.
fn duplicate_key(line: &str) -> String {
    let name = line
        .strip_prefix("duplicate key `")
        .and_then(|rest| rest.split('`').next())
        .filter(|n| {
            !n.is_empty()
                && n.len() <= 64
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        });
    match name {
        Some(name) => format!("duplicate key `{name}`"),
        None => "duplicate key".to_owned(),
    }
}

fn join_key(path: &[String], field: &str) -> String {
    // figment's path sometimes already ends with the field.
    if path.last().is_some_and(|last| last == field) {
        return path.join(".");
    }
    if path.is_empty() {
        field.to_owned()
    } else {
        format!("{}.{field}", path.join("."))
    }
}

fn has_control(text: &str) -> bool {
    text.chars().any(char::is_control)
}

fn loopback_http(url: &url::Url) -> bool {
    url.scheme() == "http" && matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"))
}

impl Config {
    /// Checks what serde cannot: URLs, choices, ranges.
    ///
    /// # Errors
    /// [`ConfigError`] naming each bad key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut errors = Vec::new();
        match url::Url::parse(&self.server.public_url) {
            // The issuer is compared byte for byte by relying parties: no query or
            // fragment may hide in it (RFC 8414 section 2).
            Ok(u) if u.query().is_some() || u.fragment().is_some() => {
                errors.push("server.public_url: no query (?…) or fragment (#…) in an issuer".into())
            }
            Ok(u) if u.scheme() == "https" || loopback_http(&u) => {}
            Ok(_) => {
                errors.push("server.public_url: must be https (plain http only on loopback)".into())
            }
            Err(_) => errors.push("server.public_url: not a URL".into()),
        }
        let server = &self.server;
        if !(1..=300).contains(&server.header_timeout_secs) {
            errors.push("server.header_timeout_secs: 1 to 300".into());
        }
        if !(1..=600).contains(&server.request_timeout_secs) {
            errors.push("server.request_timeout_secs: 1 to 600".into());
        }
        if !(16..=1_000_000).contains(&server.max_connections) {
            errors.push("server.max_connections: 16 to 1000000".into());
        }
        if !(16..=1_000_000).contains(&server.grpc_max_connections) {
            errors.push("server.grpc_max_connections: 16 to 1000000".into());
        }
        if !(1..=300).contains(&server.grpc_handshake_timeout_secs) {
            errors.push("server.grpc_handshake_timeout_secs: 1 to 300".into());
        }
        let sec = &self.security;
        if sec.login_lock_after == 0 || sec.address_lock_after == 0 {
            errors.push("security.login_lock_after: must be at least 1".into());
        }
        if sec.login_lock_secs == 0 || sec.login_window_secs == 0 {
            errors.push("security.login_lock_secs: must be at least 1 second".into());
        }
        if sec.login_lock_secs > 24 * 3600 {
            errors.push("security.login_lock_secs: at most 86400 (a lock must not last)".into());
        }
        if sec.login_delay_max_ms > MAX_LOGIN_DELAY_MS
            || sec.login_delay_base_ms > sec.login_delay_max_ms
        {
            errors.push(
                "security.login_delay_base_ms, login_delay_max_ms: base at most max, max at most 60000"
                    .into(),
            );
        }
        if sec.login_window_secs > 7 * 86_400 {
            errors.push("security.login_window_secs: at most 604800".into());
        }
        if !(1..=1_000_000).contains(&sec.authorize_max_requests) {
            errors.push("security.authorize_max_requests: 1 to 1000000".into());
        }
        if !(1..=3600).contains(&sec.authorize_window_secs) {
            errors.push("security.authorize_window_secs: 1 to 3600".into());
        }
        if !(1..=10_000).contains(&sec.client_auth_max_failures) {
            errors.push("security.client_auth_max_failures: 1 to 10000".into());
        }
        if !(1..=86_400).contains(&sec.client_auth_window_secs) {
            errors.push("security.client_auth_window_secs: 1 to 86400".into());
        }
        let db = self.database.url.expose();
        if !(db.starts_with("postgres://")
            || db.starts_with("postgresql://")
            || db.starts_with("sqlite:"))
        {
            errors.push("database.url: must start with postgres:// or sqlite:".into());
        }
        if dge_authz::keys::KeyEncryptionKey::from_base64(self.keys.encryption_key.expose())
            .is_err()
        {
            errors.push(
                "keys.encryption_key: must be 32 bytes in base64 (openssl rand -base64 32)".into(),
            );
        }
        if let Some(url) = &self.redis.url
            && !(url.expose().starts_with("redis://") || url.expose().starts_with("rediss://"))
        {
            errors.push("redis.url: must start with redis:// or rediss://".into());
        }
        if let Some(prefix) = &self.redis.prefix
            && !((1..=64).contains(&prefix.len())
                && prefix
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_:.-".contains(&b)))
        {
            errors.push("redis.prefix: 1 to 64 of A-Za-z0-9_:.-".into());
        }
        if let Some(ms) = self.redis.timeout_ms
            && !(50..=60_000).contains(&ms)
        {
            errors.push("redis.timeout_ms: 50 to 60000 (milliseconds)".into());
        }
        if let Some(ms) = self.database.statement_timeout_ms
            && !(100..=600_000).contains(&ms)
        {
            errors.push("database.statement_timeout_ms: 100 to 600000 (milliseconds)".into());
        }
        if !(1..=1000).contains(&self.database.max_connections) {
            errors.push("database.max_connections: 1 to 1000".into());
        }
        match (&self.mail.smtp_url, &self.mail.outbox_dir) {
            (Some(u), None) => {
                // The very check `serve` makes, CA file included; its messages never
                // repeat the URL, which may hold a password.
                let options = dge_mailer::SmtpOptions {
                    timeout: std::time::Duration::from_secs(self.mail.smtp_timeout_secs),
                    ca_file: self.mail.smtp_ca_file.clone(),
                };
                if let Err(e) = dge_mailer::Transport::smtp(u.expose(), &options) {
                    errors.push(format!("mail.smtp_url, smtp_ca_file: {e}"));
                }
            }
            (None, Some(_)) => {}
            _ => errors.push("mail: set exactly one of smtp_url and outbox_dir".into()),
        }
        if !(1..=100).contains(&self.mail.max_attempts) {
            errors.push("mail.max_attempts: 1 to 100".into());
        }
        if self.mail.retry_base_secs < 1 || self.mail.retry_max_secs < self.mail.retry_base_secs {
            errors.push("mail.retry_base_secs: at least 1, and at most retry_max_secs".into());
        }
        if !(1..=600).contains(&self.mail.smtp_timeout_secs) {
            errors.push("mail.smtp_timeout_secs: 1 to 600".into());
        }
        if self.mail.from.parse::<lettre::message::Mailbox>().is_err() {
            errors.push("mail.from: not a mailbox such as `Name <address@host>`".into());
        }
        self.accounts.check_hashing(&mut errors);
        if !(300..=MAX_TTL_SECS).contains(&self.accounts.confirmation_ttl_secs) {
            errors.push("accounts.confirmation_ttl_secs: 300 to 31536000 (a year)".into());
        }
        if self.accounts.unconfirmed_ttl_secs > MAX_TTL_SECS {
            errors.push("accounts.unconfirmed_ttl_secs: at most 31536000 (a year)".into());
        }
        if self.mail.retry_max_secs > 7 * 86_400 {
            errors.push("mail.retry_max_secs: at most 604800".into());
        }
        if self.mail.failed_retention_secs > MAX_TTL_SECS {
            errors.push("mail.failed_retention_secs: at most 31536000 (a year)".into());
        }
        if self.accounts.resend_interval_secs > 86_400
            || self.accounts.signup_notice_window_secs > 30 * 86_400
            || self.accounts.resend_max_per_day > 1000
            || self.accounts.signup_notice_max > 1000
        {
            errors.push(
                "accounts.resend_interval_secs, signup_notice_window_secs, resend_max_per_day, signup_notice_max: at most 86400, 2592000, 1000 and 1000"
                    .into(),
            );
        }
        if self.accounts.unconfirmed_ttl_secs < self.accounts.confirmation_ttl_secs {
            errors.push(
                "accounts.unconfirmed_ttl_secs: at least accounts.confirmation_ttl_secs".into(),
            );
        }
        if !(60..=dge_authz::keys_grpc::MAX_ACTIVATE_SECS).contains(&self.keys.min_activate_secs) {
            errors.push("keys.min_activate_secs: 60 to 2592000".into());
        }
        if self.accounts.resend_interval_secs < 1 || self.accounts.resend_max_per_day < 1 {
            errors.push("accounts.resend_interval_secs, resend_max_per_day: at least 1".into());
        }
        if self.accounts.signup_notice_max < 1 || self.accounts.signup_notice_window_secs < 1 {
            errors.push("accounts.signup_notice_max, signup_notice_window_secs: at least 1".into());
        }
        if !(1..=1_000_000).contains(&self.accounts.signups_per_address_max)
            || !(1..=30 * 86_400).contains(&self.accounts.signups_per_address_window_secs)
        {
            errors.push(
                "accounts.signups_per_address_max, signups_per_address_window_secs: 1 to 1000000 and 1 to 2592000"
                    .into(),
            );
        }
        if self.mail.sent_retention_secs < dge_mailer::dispatch::MIN_SENT_RETENTION_SECS
            || self.mail.failed_retention_secs < self.mail.sent_retention_secs
        {
            errors.push(
                "mail.sent_retention_secs: at least 3600; mail.failed_retention_secs: at least as long"
                    .into(),
            );
        }
        if !matches!(self.notify.mode.as_str(), "per-signup" | "daily-digest") {
            errors.push("notify.mode: per-signup or daily-digest".into());
        }
        if self.notify.digest_hour_utc > 23 {
            errors.push("notify.digest_hour_utc: 0 to 23".into());
        }
        if !(1..=365).contains(&self.notify.reminder_after_days) {
            errors.push("notify.reminder_after_days: 1 to 365".into());
        }
        for (i, e) in self.notify.admin_emails.iter().enumerate() {
            if dge_registry::domain::signup::normalise_email(e).is_none() {
                errors.push(format!("notify.admin_emails[{i}]: not an email address"));
            }
        }
        self.telemetry.check(&mut errors);
        if let Err(dge_broker::config::ConfigError::Invalid { name, problem }) =
            dge_broker::config::check(&self.upstreams)
        {
            errors.push(format!("upstreams[name = {name:?}]: {problem}"));
        }
        for (i, u) in self.upstreams.iter().enumerate() {
            if u.name.is_empty()
                || !u
                    .name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            {
                errors.push(format!(
                    "upstreams[{i}].name: lower-case letters, digits or '-'"
                ));
            }
            if !u.issuer.is_empty() && url::Url::parse(&u.issuer).is_err() {
                errors.push(format!("upstreams[{i}].issuer: not a URL"));
            }
        }
        errors.extend(self.portal.problems());
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigError(errors))
        }
    }

    /// The settings `app::run` needs.
    ///
    /// # Errors
    /// [`ConfigError`] when a value [`Config::validate`] would refuse slipped in.
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        let key_encryption_key =
            dge_authz::keys::KeyEncryptionKey::from_base64(self.keys.encryption_key.expose())
                .map_err(|_| {
                    ConfigError(vec![
                        "keys.encryption_key: must be 32 bytes in base64".into(),
                    ])
                })?;
        let mail = match (&self.mail.smtp_url, &self.mail.outbox_dir) {
            (Some(url), _) => MailTransport::Smtp(url.clone()),
            (None, dir) => {
                MailTransport::Files(dir.clone().unwrap_or_else(|| PathBuf::from("outbox")))
            }
        };
        let public_url = self.server.public_url.trim_end_matches('/').to_owned();
        Ok(Settings {
            secure_cookies: public_url.starts_with("https://"),
            public_url,
            database_url: self.database.url.clone(),
            database_max_connections: self.database.max_connections,
            mail,
            mail_from: self.mail.from.clone(),
            mail_delivery: MailDelivery {
                max_attempts: self.mail.max_attempts,
                retry_base_secs: self.mail.retry_base_secs,
                retry_max_secs: self.mail.retry_max_secs,
                smtp_timeout_secs: self.mail.smtp_timeout_secs,
                smtp_ca_file: self.mail.smtp_ca_file.clone(),
                sent_retention_secs: self.mail.sent_retention_secs,
                failed_retention_secs: self.mail.failed_retention_secs,
            },
            confirmation_ttl_secs: self.accounts.confirmation_ttl_secs,
            unconfirmed_ttl_secs: self.accounts.unconfirmed_ttl_secs,
            account_limits: dge_registry::AccountLifetimes {
                resend_interval_secs: self.accounts.resend_interval_secs,
                resend_max_per_day: self.accounts.resend_max_per_day,
                signup_notice_max: self.accounts.signup_notice_max,
                signup_notice_window_secs: self.accounts.signup_notice_window_secs,
                signups_per_address_max: self.accounts.signups_per_address_max,
                signups_per_address_window_secs: self.accounts.signups_per_address_window_secs,
                ..dge_registry::AccountLifetimes::default()
            },
            token_ttl_secs: 3600,
            device_code_ttl_secs: dge_oidc::device::DEVICE_TTL_SECS,
            notify: NotifySettings {
                admin_emails: self.notify.admin_emails.clone(),
                mode: if self.notify.mode == "daily-digest" {
                    NoticeMode::DailyDigest {
                        hour_utc: self.notify.digest_hour_utc,
                    }
                } else {
                    NoticeMode::PerSignup
                },
                reminder_after_secs: self.notify.reminder_after_days * 86_400,
            },
            upstreams: self.upstreams.clone(),
            portal: self.portal.pages()?,
            support_email: self.portal.support_email.clone(),
            hash_concurrency: self.accounts.hash_concurrency,
            redis_url: self.redis.url.clone(),
            redis_prefix: self.redis.prefix.clone().unwrap_or_else(|| "dge:".into()),
            database_statement_timeout: self.database.statement_timeout_ms.map_or(
                dge_store::DEFAULT_STATEMENT_TIMEOUT,
                std::time::Duration::from_millis,
            ),
            redis_timeout: self.redis.timeout_ms.map_or(
                dge_store::DEFAULT_REDIS_DEADLINE,
                std::time::Duration::from_millis,
            ),
            hash_params: HashParams {
                memory_kib: self.accounts.hash_memory_kib,
                iterations: self.accounts.hash_iterations,
                parallelism: self.accounts.hash_parallelism,
            },
            key_encryption_key,
            key_min_activate_secs: self.keys.min_activate_secs,
            throttle: self.security.throttle(),
            trusted_proxies: self.security.trusted_proxies.clone(),
            http_limits: self.server.http_limits(),
            grpc_limits: self.server.grpc_limits(),
            rate_limits: self.security.rate_limits(),
        })
    }
}

/// A commented example configuration, printed by `dge-idp config-example`.
pub const EXAMPLE: &str = include_str!("../../../deploy/dge-idp.example.toml");

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, body: &str) -> PathBuf {
        let path = dir.join("dge-idp.toml");
        std::fs::write(&path, body).unwrap();
        path
    }

    /// A scratch folder, removed when the test ends (pass or fail).
    struct Scratch(PathBuf);

    impl Drop for Scratch {
        fn drop(&mut self) {
            drop(std::fs::remove_dir_all(&self.0));
        }
    }

    impl std::ops::Deref for Scratch {
        type Target = Path;

        fn deref(&self) -> &Path {
            &self.0
        }
    }

    fn tmp() -> Scratch {
        let dir = std::env::temp_dir().join(format!("dge-config-{}", dge_core::new_id()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    #[test]
    fn parse_toml_checks_and_derives_the_settings_like_load() {
        let minimal = include_str!("../../../fuzz/corpus/config/minimal.toml");
        let settings = parse_toml(minimal).expect("the fuzz seed is a valid configuration");
        assert_eq!(settings.public_url, "https://identite.example.org");
        assert!(settings.secure_cookies);
        let refused = parse_toml(EXAMPLE).unwrap_err().to_string();
        assert!(refused.contains("keys.encryption_key"), "{refused}");
        let broken = parse_toml("[server\npublic_url = 1")
            .unwrap_err()
            .to_string();
        assert!(broken.contains("syntax error"), "{broken}");
    }

    #[test]
    fn the_example_configuration_is_valid() {
        let dir = tmp();
        let placeholder = load(Some(&write(&dir, EXAMPLE))).unwrap_err().to_string();
        assert!(
            placeholder.contains("keys.encryption_key: must be 32 bytes"),
            "{placeholder}"
        );
        let body = EXAMPLE.replace("REPLACE-WITH-openssl-rand-base64-32", KEY);
        let config = load(Some(&write(&dir, &body))).expect("example loads");
        assert_eq!(
            config.server.public_url,
            "https://connexion.datagrandest.fr"
        );
    }

    #[test]
    fn errors_name_keys_but_never_values() {
        let dir = tmp();
        let body = "[server]\npublic_url = \"http://portal.example.fr\"\n[database]\nurl = \"mysql://root:hunter2@db/x\"\nmax_conections = 3\n[mail]\nfrom = \"x\"\n";
        let err = load(Some(&write(&dir, body))).unwrap_err().to_string();
        assert!(
            err.contains("database.max_conections: unknown key"),
            "{err}"
        );
        assert!(!err.contains("hunter2"), "{err}");
        let body = format!(
            "[server]\npublic_url = \"http://portal.example.fr\"\n[keys]\nencryption_key = \"{KEY}\"\n[database]\nurl = \"mysql://root:hunter2@db/x\"\n[mail]\nfrom = \"x\"\n"
        );
        let err = load(Some(&write(&dir, &body))).unwrap_err().to_string();
        for key in ["server.public_url", "database.url", "mail:", "mail.from"] {
            assert!(err.contains(key), "{key} in {err}");
        }
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn the_redis_prefix_defaults_and_is_checked() {
        let minimal = include_str!("../../../fuzz/corpus/config/minimal.toml");
        assert_eq!(parse_toml(minimal).unwrap().redis_prefix, "dge:");
        let with =
            |prefix: &str| parse_toml(&format!("{minimal}\n[redis]\nprefix = \"{prefix}\"\n"));
        assert_eq!(with("dge-staging:").unwrap().redis_prefix, "dge-staging:");
        for bad in ["", "dge prod:", &"x".repeat(65)] {
            let err = with(bad).unwrap_err().to_string();
            assert!(err.contains("redis.prefix: 1 to 64"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn the_redis_deadline_defaults_to_two_seconds_and_is_bounded() {
        let minimal = include_str!("../../../fuzz/corpus/config/minimal.toml");
        assert_eq!(
            parse_toml(minimal).unwrap().redis_timeout,
            std::time::Duration::from_secs(2)
        );
        let with = |ms: &str| parse_toml(&format!("{minimal}\n[redis]\ntimeout_ms = {ms}\n"));
        assert_eq!(
            with("250").unwrap().redis_timeout,
            std::time::Duration::from_millis(250)
        );
        for bad in ["0", "49", "60001"] {
            let err = with(bad).unwrap_err().to_string();
            assert!(
                err.contains("redis.timeout_ms: 50 to 60000"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn the_statement_timeout_defaults_to_thirty_seconds_and_is_bounded() {
        let minimal = include_str!("../../../fuzz/corpus/config/minimal.toml");
        assert_eq!(
            parse_toml(minimal).unwrap().database_statement_timeout,
            std::time::Duration::from_secs(30)
        );
        let with = |extra: &str| {
            parse_toml(&minimal.replace("[database]\n", &format!("[database]\n{extra}\n")))
        };
        assert_eq!(
            with("statement_timeout_ms = 5000")
                .unwrap()
                .database_statement_timeout,
            std::time::Duration::from_secs(5)
        );
        for bad in ["99", "600001"] {
            let err = with(&format!("statement_timeout_ms = {bad}"))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("database.statement_timeout_ms: 100 to 600000"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn http_limits_default_and_are_bounded() {
        let dir = tmp();
        let base = format!(
            "[keys]\nencryption_key = \"{KEY}\"\n[database]\nurl = \"sqlite://x\"\n[mail]\nfrom = \"A <a@example.fr>\"\noutbox_dir = \"o\"\n[server]\npublic_url = \"https://idp.example.fr\"\n"
        );
        let config = load(Some(&write(&dir, &base))).expect("defaults load");
        assert_eq!(
            config.server.http_limits(),
            crate::http_server::HttpLimits::default()
        );
        assert_eq!(
            config.server.grpc_limits(),
            crate::grpc_server::GrpcLimits::default()
        );
        let body = format!(
            "{base}header_timeout_secs = 0\nrequest_timeout_secs = 601\nmax_connections = 3\ngrpc_max_connections = 3\ngrpc_handshake_timeout_secs = 0\n"
        );
        let err = load(Some(&write(&dir, &body))).unwrap_err().to_string();
        for key in [
            "server.header_timeout_secs",
            "server.request_timeout_secs",
            "server.max_connections",
            "server.grpc_max_connections",
            "server.grpc_handshake_timeout_secs",
        ] {
            assert!(err.contains(key), "{key} in {err}");
        }
    }

    #[test]
    fn rate_limits_default_and_are_bounded() {
        let dir = tmp();
        let base = format!(
            "[keys]\nencryption_key = \"{KEY}\"\n[database]\nurl = \"sqlite://x\"\n[mail]\nfrom = \"A <a@example.fr>\"\noutbox_dir = \"o\"\n[server]\npublic_url = \"https://idp.example.fr\"\n"
        );
        let config = load(Some(&write(&dir, &base))).expect("defaults load");
        assert_eq!(
            config.security.rate_limits(),
            dge_oidc::rate::RateLimits::default()
        );
        let body = format!(
            "{base}[security]\nauthorize_max_requests = 0\nauthorize_window_secs = 3601\nclient_auth_max_failures = 0\nclient_auth_window_secs = 86401\n"
        );
        let err = load(Some(&write(&dir, &body))).unwrap_err().to_string();
        for key in [
            "security.authorize_max_requests",
            "security.authorize_window_secs",
            "security.client_auth_max_failures",
            "security.client_auth_window_secs",
        ] {
            assert!(err.contains(key), "{key} in {err}");
        }
    }

    #[test]
    fn mail_delivery_settings_are_checked() {
        let dir = tmp();
        let body = format!(
            "[server]\npublic_url = \"https://idp.example.fr\"\n[keys]\nencryption_key = \"{KEY}\"\n[database]\nurl = \"sqlite://x\"\n[mail]\nfrom = \"A <a@example.fr>\"\nsmtp_url = \"smtp://u:hunter2@relay:587?tls=required\"\nmax_attempts = 0\nretry_base_secs = 100\nretry_max_secs = 10\nsmtp_timeout_secs = 0\n"
        );
        let err = load(Some(&write(&dir, &body))).unwrap_err().to_string();
        for key in [
            "mail.max_attempts",
            "mail.retry_base_secs",
            "mail.smtp_timeout_secs",
        ] {
            assert!(err.contains(key), "{key} in {err}");
        }
        assert!(!err.contains("hunter2"), "{err}");
        let body = body
            .replace("max_attempts = 0", "max_attempts = 3")
            .replace("retry_base_secs = 100", "retry_base_secs = 5")
            .replace("smtp_timeout_secs = 0", "smtp_timeout_secs = 20");
        let settings = load(Some(&write(&dir, &body))).unwrap().settings().unwrap();
        let delivery = settings.mail_delivery;
        assert_eq!(
            (
                delivery.max_attempts,
                delivery.retry_base_secs,
                delivery.retry_max_secs
            ),
            (3, 5, 10)
        );
        assert_eq!(delivery.smtp_timeout_secs, 20);
    }

    #[test]
    fn account_limits_retention_and_key_delay_are_read_and_checked() {
        let dir = tmp();
        let head = format!(
            "[server]\npublic_url = \"https://idp.example.fr\"\n[database]\nurl = \"sqlite://x\"\n\
             [keys]\nencryption_key = \"{KEY}\"\n"
        );
        let body = format!(
            "{head}min_activate_secs = 10\n[mail]\nfrom = \"a@b.fr\"\noutbox_dir = \"/tmp/x\"\n\
             sent_retention_secs = 60\n[accounts]\nresend_interval_secs = 0\nsignup_notice_max = 0\n\
             signups_per_address_max = 0\n"
        );
        let err = load(Some(&write(&dir, &body))).unwrap_err().to_string();
        for key in [
            "keys.min_activate_secs",
            "mail.sent_retention_secs",
            "accounts.resend_interval_secs",
            "accounts.signup_notice_max",
            "accounts.signups_per_address_max",
        ] {
            assert!(err.contains(key), "{key} in {err}");
        }
        let body = format!(
            "{head}min_activate_secs = 600\n[mail]\nfrom = \"a@b.fr\"\noutbox_dir = \"/tmp/x\"\n\
             sent_retention_secs = 7200\n[accounts]\nresend_interval_secs = 120\nresend_max_per_day = 3\n\
             signup_notice_max = 2\nsignup_notice_window_secs = 86400\n\
             signups_per_address_max = 40\nsignups_per_address_window_secs = 600\n"
        );
        let settings = load(Some(&write(&dir, &body))).unwrap().settings().unwrap();
        let limits = &settings.account_limits;
        assert_eq!(
            (
                limits.resend_interval_secs,
                limits.resend_max_per_day,
                limits.signup_notice_max,
                limits.signup_notice_window_secs,
                limits.signups_per_address_max,
                limits.signups_per_address_window_secs,
            ),
            (120, 3, 2, 86400, 40, 600)
        );
        assert_eq!(settings.mail_delivery.sent_retention_secs, 7200);
        assert_eq!(settings.mail_delivery.failed_retention_secs, 7 * 86400);
        assert_eq!(settings.key_min_activate_secs, 600);
    }

    #[test]
    fn syntax_errors_say_where_but_never_quote_the_line() {
        let dir = tmp();
        for body in [
            "[database]\nurl = \"postgres://u:DBPASSLEAK1@db/x\n",
            "[keys]\nencryption_key = \"SECRETKEY1\"\nencryption_key = \"SECRETKEY2\"\n",
        ] {
            let err = load(Some(&write(&dir, body))).unwrap_err().to_string();
            assert!(err.contains("line"), "{err}");
            for secret in ["DBPASSLEAK1", "SECRETKEY1", "SECRETKEY2"] {
                assert!(!err.contains(secret), "{err}");
            }
        }
    }

    #[test]
    fn upstreams_in_the_configuration_follow_the_broker_rules() {
        let dir = tmp();
        let body = format!(
            "[server]\npublic_url = \"https://idp.example.fr\"\n[keys]\nencryption_key = \"{KEY}\"\n\
             [database]\nurl = \"postgres://db/x\"\n[mail]\nfrom = \"a@b.fr\"\noutbox_dir = \"/tmp/x\"\n\
             [[upstreams]]\nname = \"proconnect\"\nlabel = \"ProConnect\"\n\
             issuer = \"http://auth.example.gouv.fr/api/v2\"\nclient_id = \"c\"\nclient_secret = \"s\"\n"
        );
        let err = load(Some(&write(&dir, &body))).unwrap_err().to_string();
        assert!(err.contains("issuer must use https://"), "{err}");
    }

    #[test]
    fn telemetry_is_off_by_default_and_checked_when_set() {
        let dir = tmp();
        let base = format!(
            "[server]\npublic_url = \"https://idp.example.fr\"\n[keys]\nencryption_key = \"{KEY}\"\n\
             [database]\nurl = \"postgres://db/x\"\n[mail]\nfrom = \"a@b.fr\"\noutbox_dir = \"/tmp/x\"\n"
        );
        let config = load(Some(&write(&dir, &base))).unwrap();
        assert!(config.telemetry.export().is_none());
        let bad = format!(
            "{base}[telemetry]\notlp_endpoint = \"collector:4318\"\nservice_name = \" \"\nsampling_ratio = 1.5\n"
        );
        let err = load(Some(&write(&dir, &bad))).unwrap_err().to_string();
        for key in [
            "telemetry.otlp_endpoint",
            "telemetry.service_name",
            "telemetry.sampling_ratio",
        ] {
            assert!(err.contains(key), "{key} in {err}");
        }
        let good = format!(
            "{base}[telemetry]\notlp_endpoint = \"http://127.0.0.1:4318\"\nsampling_ratio = 0.25\n"
        );
        let export = load(Some(&write(&dir, &good)))
            .unwrap()
            .telemetry
            .export()
            .unwrap();
        assert_eq!(export.otlp_endpoint, "http://127.0.0.1:4318");
        assert_eq!(export.service_name, "dge-idp");
        assert!((export.sampling_ratio - 0.25).abs() < f64::EPSILON);
    }

    fn base_config() -> String {
        format!(
            "[server]\npublic_url = \"https://idp.example.fr\"\n[keys]\nencryption_key = \"{KEY}\"\n\
             [database]\nurl = \"postgres://db/x\"\n"
        )
    }

    const OUTBOX: &str = "[mail]\nfrom = \"a@b.fr\"\noutbox_dir = \"/tmp/x\"\n";

    /// The error of `body`, asserting that it names `key`.
    fn refused(dir: &Path, body: &str, key: &str) -> String {
        let err = load(Some(&write(dir, body)))
            .map(|_| ())
            .expect_err(key)
            .to_string();
        assert!(err.contains(key), "{key} in {err}");
        err
    }

    #[test]
    fn hashing_costs_that_would_abort_serve_are_refused() {
        let dir = tmp();
        let base = format!("{}{OUTBOX}", base_config());
        for (setting, key) in [
            ("hash_memory_kib = 4294967295", "accounts.hash_memory_kib"),
            ("hash_memory_kib = 2097152", "accounts.hash_memory_kib"),
            (
                "hash_iterations = 1000",
                "accounts.hash_memory_kib, hash_iterations",
            ),
            ("hash_parallelism = 255", "hash_parallelism"),
            (
                "hash_concurrency = 100000",
                "accounts.hash_concurrency: 1 to 64",
            ),
            (
                "hash_concurrency = 64\nhash_memory_kib = 1048576",
                "accounts.hash_concurrency × hash_memory_kib",
            ),
        ] {
            refused(&dir, &format!("{base}[accounts]\n{setting}\n"), key);
        }
        let ok = format!(
            "{base}[accounts]\nhash_concurrency = 4\nhash_memory_kib = 65536\nhash_iterations = 3\nhash_parallelism = 2\n"
        );
        let settings = load(Some(&write(&dir, &ok))).unwrap().settings().unwrap();
        assert_eq!(settings.hash_params.memory_kib, 65536);
        assert_eq!(settings.hash_concurrency, 4);
    }

    #[test]
    fn durations_and_sizes_that_would_overflow_or_hang_are_refused() {
        let dir = tmp();
        let base = base_config();
        for (setting, key) in [
            (
                "[accounts]\nconfirmation_ttl_secs = 9223372036854775807\nunconfirmed_ttl_secs = 9223372036854775807",
                "accounts.confirmation_ttl_secs",
            ),
            (
                "[accounts]\nresend_interval_secs = 9223372036854775807",
                "accounts.resend_interval_secs",
            ),
            (
                "[notify]\nreminder_after_days = 9223372036854775807",
                "notify.reminder_after_days",
            ),
            (
                "[security]\nlogin_delay_max_ms = 9223372036854775807",
                "security.login_delay_base_ms",
            ),
            (
                "[security]\nlogin_window_secs = 9223372036854775807",
                "security.login_window_secs",
            ),
            (
                "[database]\nmax_connections = 4000000000",
                "database.max_connections",
            ),
        ] {
            let body = if setting.starts_with("[database]") {
                format!(
                    "{}{OUTBOX}",
                    base.replace("[database]\n", &format!("{setting}\n"))
                )
            } else {
                format!("{base}{OUTBOX}{setting}\n")
            };
            refused(&dir, &body, key);
        }
        let body = format!(
            "{base}[mail]\nfrom = \"a@b.fr\"\noutbox_dir = \"/tmp/x\"\nretry_max_secs = 9223372036854775807\n"
        );
        refused(&dir, &body, "mail.retry_max_secs");
    }

    #[test]
    fn smtp_settings_get_the_same_check_as_serve() {
        let dir = tmp();
        let base = base_config();
        let smtp = |url: &str, extra: &str| {
            format!("{base}[mail]\nfrom = \"a@b.fr\"\nsmtp_url = \"{url}\"\n{extra}")
        };
        for url in [
            "smtp://user:hunter2@127.0.0.1:28025?tls=bogus",
            "smtp://user:hunter2@",
            "http://user:hunter2@relay",
        ] {
            let err = refused(&dir, &smtp(url, ""), "mail.smtp_url");
            assert!(!err.contains("hunter2"), "{err}");
        }
        let missing = dir.join("missing-ca.pem");
        let err = refused(
            &dir,
            &smtp(
                "smtp://user:hunter2@127.0.0.1:28025?tls=required",
                &format!("smtp_ca_file = \"{}\"\n", missing.display()),
            ),
            "smtp_ca_file",
        );
        assert!(err.contains("cannot read"), "{err}");
        let not_pem = dir.join("ca.pem");
        std::fs::write(&not_pem, "hello\n").unwrap();
        let err = refused(
            &dir,
            &smtp(
                "smtp://user:hunter2@127.0.0.1:28025?tls=required",
                &format!("smtp_ca_file = \"{}\"\n", not_pem.display()),
            ),
            "smtp_ca_file",
        );
        assert!(
            err.contains("no PEM certificate") && !err.contains("hunter2"),
            "{err}"
        );
        load(Some(&write(
            &dir,
            &smtp("smtp://user:hunter2@127.0.0.1:28025?tls=required", ""),
        )))
        .expect("a sound SMTP URL");
    }

    #[test]
    fn portal_texts_links_issuer_and_delays_are_checked_strictly() {
        let dir = tmp();
        let base = format!("{}{OUTBOX}", base_config());
        let link = |url: &str| {
            format!("{base}[[portal.footer_links]]\nlabel = \"Mentions\"\nurl = \"{url}\"\n")
        };
        for url in [
            "/\\\\evil.example",
            "/a b",
            "/a\\tb",
            "/a\\nb",
            "//evil.example",
        ] {
            refused(&dir, &link(url), "portal.footer_links[0].url");
        }
        load(Some(&write(&dir, &link("/mentions-legales")))).expect("a local path");
        for (key, setting) in [
            ("portal.name", "name = \"DataGrandEst\\nBcc: x\""),
            ("portal.tagline", "tagline = \"a\\u0007b\""),
            ("portal.footer_text", "footer_text = \"a\\rb\""),
        ] {
            refused(&dir, &format!("{base}[portal]\n{setting}\n"), key);
        }
        refused(
            &dir,
            &format!("{base}[[portal.footer_links]]\nlabel = \"a\\nb\"\nurl = \"/x\"\n"),
            "portal.footer_links[0].label: no newline",
        );
        for url in ["https://example.com/?x=1", "https://example.com/#f"] {
            let body = base.replace("https://idp.example.fr", url);
            refused(&dir, &body, "server.public_url: no query");
        }
        refused(
            &dir,
            &format!("{base}[security]\nlogin_delay_base_ms = 2000\nlogin_delay_max_ms = 1000\n"),
            "security.login_delay_base_ms",
        );
    }

    #[test]
    fn a_duplicate_key_or_table_is_named_without_its_value() {
        let dir = tmp();
        for (body, named) in [
            (
                "[keys]\nencryption_key = \"SECRETKEY1\"\nencryption_key = \"SECRETKEY2\"\n",
                "duplicate key `encryption_key`",
            ),
            (
                "[keys]\nencryption_key = \"SECRETKEY1\"\n[keys]\nmin_activate_secs = 300\n",
                "duplicate key `keys`",
            ),
        ] {
            let err = refused(&dir, body, named);
            assert!(!err.contains("SECRETKEY"), "{err}");
        }
    }

    #[test]
    fn a_missing_file_is_reported() {
        let err = load(Some(Path::new("/nonexistent/dge.toml")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no such file"));
    }
}
