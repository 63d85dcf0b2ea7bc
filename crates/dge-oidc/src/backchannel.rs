//! Back-channel logout (OpenID Connect Back-Channel Logout 1.0), through a durable
//! queue.
//!
//! When a session ends (a logout, or an account change: suspension, password reset
//! or change, deletion, two-step enrolment), each module of the session that
//! registered a back-channel logout URI gets a row in `backchannel_logouts`. A
//! [`Dispatcher`], run by every replica, claims the due rows, signs a fresh logout
//! token for each (tokens live two minutes; the row keeps none), posts it to the
//! module's URI as registered at that moment, and records the outcome: a 2xx answer
//! ends the row `sent`; anything else is retried with a growing wait, and after
//! [`Settings::max_attempts`] the row ends `failed` with the last reason. A client
//! deleted meanwhile, or whose URI was removed, ends `failed` at once, without a post.
//!
//! Rows are claimed with a lease, as the mail outbox's ([`dge_store::leases`]): among
//! replicas racing for a row exactly one claims it, and only the lease holder
//! records the outcome. A replica that dies mid-post leaves its lease to expire and
//! the row is posted again, with a new token (new `jti`) for the same `sid`: a
//! module may be told twice that a session ended.
//!
//! Finished rows are deleted by the expiry job (`dge_store::expiry`) a week after
//! their last change.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use dge_store::leases::{self, Outcome, Queue};
use serde::Serialize;
use serde_json::json;
use sqlx::Row;
use tokio::task::JoinSet;

use crate::{Error, Provider, Result, clients};

/// The event of a logout token (OIDC Back-Channel Logout 1.0 §2.4).
const BACKCHANNEL_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// Logout tokens are accepted for this long.
const LOGOUT_TOKEN_TTL_SECS: i64 = 120;

/// How long one module may take to answer a back-channel notification.
const BACKCHANNEL_TIMEOUT_SECS: u64 = 5;

/// Claims of a logout token (OIDC Back-Channel Logout 1.0 §2.4).
#[derive(Debug, Serialize)]
struct LogoutClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
    jti: String,
    sid: &'a str,
    events: serde_json::Value,
}

/// How the dispatcher posts and retries.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Attempts before a notification is marked failed (at least 1).
    pub max_attempts: u32,
    /// Wait after the first failed attempt; it doubles after each further one.
    pub retry_base_secs: i64,
    /// The longest wait between two attempts.
    pub retry_max_secs: i64,
    /// How long a claimed notification is reserved for one dispatcher: longer than
    /// a post can take ([`BACKCHANNEL_TIMEOUT_SECS`]).
    pub lease_secs: i64,
    /// Notifications claimed per pass; their posts run side by side, so one slow
    /// module does not hold back the others.
    pub batch: i64,
}

impl Default for Settings {
    /// 8 attempts over about an hour: 30 s, 1, 2, 4, 8, 16 and 32 min apart. A module
    /// down longer than that can still ask `Check` or `/introspect`, which refuse the
    /// person's tokens.
    fn default() -> Self {
        Self {
            max_attempts: 8,
            retry_base_secs: 30,
            retry_max_secs: 3600,
            lease_secs: 60,
            batch: 20,
        }
    }
}

impl Provider {
    /// Queues a back-channel logout of the session `session_hash` of `account_id`
    /// for each of `client_ids` that registers a back-channel logout URI now (the
    /// URI itself is read again at each attempt); returns how many were queued.
    /// [`Self::wake_backchannel`] after, so the first attempt is immediate.
    pub(crate) async fn queue_backchannel(
        &self,
        account_id: &str,
        session_hash: &str,
        client_ids: Vec<String>,
    ) -> Result<usize> {
        let sid = crate::session::session_id(session_hash);
        let now = self.now();
        let mut queued = 0;
        for (client, _) in self.backchannel_clients(client_ids).await? {
            sqlx::query(
                "INSERT INTO backchannel_logouts (id, client_id, account_id, sid, status, \
                 attempts, next_attempt_at, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, 'queued', 0, $5, $5, $5)",
            )
            .bind(dge_core::new_id())
            .bind(&client.id)
            .bind(account_id)
            .bind(&sid)
            .bind(now)
            .execute(self.db.pool())
            .await?;
            queued += 1;
        }
        Ok(queued)
    }

    /// Tells this replica's dispatcher that notifications were queued.
    pub(crate) fn wake_backchannel(&self) {
        self.backchannel_wake.notify_one();
    }

    /// A logout token for `client`, about the session `sid` of `sub`, signed now.
    async fn logout_token(&self, client: &clients::Client, sub: &str, sid: &str) -> Result<String> {
        let now = self.now();
        let claims = LogoutClaims {
            iss: self.issuer(),
            sub,
            aud: &client.id,
            iat: now,
            exp: now + LOGOUT_TOKEN_TTL_SECS,
            jti: dge_core::new_id(),
            sid,
            events: json!({ BACKCHANNEL_EVENT: {} }),
        };
        self.keys.ensure_alg(&client.settings.id_token_alg).await?;
        Ok(self
            .keys
            .sign_as(&client.settings.id_token_alg, "logout+jwt", &claims)?)
    }
}

/// Posts the queued back-channel logouts. Cheap to clone.
#[derive(Clone)]
pub struct Dispatcher {
    provider: Provider,
    http: reqwest::Client,
    settings: Arc<Settings>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// A notification this dispatcher holds the lease of.
struct Claimed {
    id: String,
    lease: String,
    client_id: String,
    account_id: String,
    sid: String,
    attempts: i64,
}

/// Why an attempt did not deliver.
enum Undelivered {
    /// Worth another attempt (the module is down, refused, or our storage failed).
    Transient(String),
    /// Never deliverable: the client or its URI is gone.
    Permanent(String),
}

/// Whether the provider must never post to `ip`: link-local addresses (the cloud
/// metadata service at 169.254.169.254 among them, and fe80::/10), the metadata
/// services that sit elsewhere (Alibaba's 100.100.100.200, AWS's fd00:ec2::254), the
/// unspecified, multicast, broadcast and reserved ones, and an IPv4 address wrapped in
/// IPv6 (mapped, translated, NAT64 64:ff9b::/96, 6to4 2002::/16) that would be one.
/// Loopback and private networks stay allowed: the portal's modules often live there.
#[must_use]
pub fn is_forbidden_target(ip: IpAddr) -> bool {
    use std::net::{Ipv4Addr, Ipv6Addr};
    // Metadata and host services of the clouds, outside the link-local range:
    // Alibaba, Azure's WireServer, Oracle Cloud Classic.
    const METADATA_V4: [Ipv4Addr; 3] = [
        Ipv4Addr::new(100, 100, 100, 200),
        Ipv4Addr::new(168, 63, 129, 16),
        Ipv4Addr::new(192, 0, 0, 192),
    ];
    // AWS's and Google's IPv6 metadata addresses.
    const METADATA_V6: [Ipv6Addr; 2] = [
        Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254),
        Ipv6Addr::new(0xfd20, 0xce, 0, 0, 0, 0, 0, 0x254),
    ];
    match ip {
        IpAddr::V4(v4) => {
            v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.octets()[0] >= 240
                || METADATA_V4.contains(&v4)
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let embedded = |hi: u16, lo: u16| {
                let [a, b] = hi.to_be_bytes();
                let [c, d] = lo.to_be_bytes();
                is_forbidden_target(IpAddr::V4(Ipv4Addr::new(a, b, c, d)))
            };
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_forbidden_target(IpAddr::V4(v4));
            }
            // ::ffff:0:a.b.c.d (translated), ::a.b.c.d (compatible), 64:ff9b::a.b.c.d
            // (NAT64) and 64:ff9b:1::/48 (local-use NAT64, RFC 8215): the address in
            // the last 32 bits.
            let translated = s[..4] == [0, 0, 0, 0] && s[4] == 0xffff && s[5] == 0;
            let compatible = s[..6] == [0, 0, 0, 0, 0, 0] && !v6.is_loopback();
            let nat64 = s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] || s[..3] == [0x64, 0xff9b, 1];
            if (translated || compatible || nat64) && embedded(s[6], s[7]) {
                return true;
            }
            // 6to4 (2002::/16): the address in bits 16 to 48. Teredo (2001::/32): the
            // client's address, inverted, in the last 32 bits.
            if s[0] == 0x2002 && embedded(s[1], s[2]) {
                return true;
            }
            if s[..2] == [0x2001, 0] && embedded(!s[6], !s[7]) {
                return true;
            }
            // Oracle Cloud's IPv6 metadata, fd00:c1::a9fe:a9fe.
            let oracle = s[..2] == [0xfd00, 0xc1] && embedded(s[6], s[7]);
            v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] & 0xffc0) == 0xfec0
                || s[..4] == [0x100, 0, 0, 0]
                || METADATA_V6.contains(&v6)
                || oracle
        }
    }
}

/// The IP address written in `uri`'s host, if it is one.
fn literal_ip(uri: &str) -> Option<IpAddr> {
    match url::Url::parse(uri).ok()?.host()? {
        url::Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
        url::Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
        url::Host::Domain(_) => None,
    }
}

/// Whether `uri` names a forbidden address itself ([`is_forbidden_target`]); a host
/// name is checked when it is resolved, at each post.
#[must_use]
pub fn names_forbidden_target(uri: &str) -> bool {
    literal_ip(uri).is_some_and(is_forbidden_target)
}

/// Resolves module host names as the system does, then drops the addresses
/// [`is_forbidden_target`] refuses: a name pointing at the metadata service reaches
/// nothing.
struct GuardedResolver;

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0))
                .await?
                .filter(|a| !is_forbidden_target(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(format!(
                    "{} resolves to no address a back-channel logout may be posted to",
                    name.as_str()
                )
                .into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

impl Dispatcher {
    /// A dispatcher for `provider`'s queue, woken by its logouts.
    ///
    /// # Errors
    /// [`Error::Config`] when a setting is out of range or the HTTP client cannot
    /// be built.
    pub fn new(provider: Provider, settings: Settings) -> Result<Self> {
        if settings.max_attempts == 0 || settings.lease_secs < 1 || settings.batch < 1 {
            return Err(Error::Config(
                "max_attempts, lease_secs and batch must be at least 1".to_owned(),
            ));
        }
        // No redirects: a module answers where it registered, or not at all.
        // No proxy either: a proxy would resolve names itself, past the guard.
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(BACKCHANNEL_TIMEOUT_SECS))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver))
            .build()
            .map_err(|e| {
                Error::Config(format!(
                    "back-channel logout HTTP client: {}",
                    dge_core::ErrorChain(&e)
                ))
            })?;
        Ok(Self {
            provider,
            http,
            settings: Arc::new(settings),
        })
    }

    /// Runs until `shutdown` completes: posts as soon as notifications are queued
    /// on this replica, and every second picks up those due (retries, and those
    /// queued by other replicas or left by a replica that stopped).
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            match self.run_once().await {
                Ok(n) if n > 0 => continue,
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(error = %dge_core::ErrorChain(&e), "back-channel logout pass failed");
                }
            }
            tokio::select! {
                () = &mut shutdown => break,
                () = self.provider.backchannel_wake.notified() => {}
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// One pass: claims the due notifications and posts them, side by side. Returns
    /// how many this dispatcher handled (others may have claimed some of the due ones).
    ///
    /// # Errors
    /// Fails when the database fails; the notifications claimed are posted again
    /// when their lease runs out.
    pub async fn run_once(&self) -> Result<usize> {
        let due = leases::due(
            &self.provider.db,
            Queue::BackchannelLogouts,
            self.provider.now(),
            self.settings.batch,
        )
        .await?;
        let mut posts = JoinSet::new();
        for id in due {
            if let Some(claimed) = self.claim(&id).await? {
                let this = self.clone();
                posts.spawn(async move { this.deliver(claimed).await });
            }
        }
        let mut handled = 0;
        let mut failure = None;
        while let Some(done) = posts.join_next().await {
            match done {
                Ok(Ok(())) => handled += 1,
                Ok(Err(e)) => failure = Some(e),
                Err(e) => tracing::error!(error = %e, "back-channel logout post panicked"),
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(handled),
        }
    }

    async fn claim(&self, id: &str) -> Result<Option<Claimed>> {
        let db = &self.provider.db;
        let (now, lease_secs) = (self.provider.now(), self.settings.lease_secs);
        let claimed = leases::claim(db, Queue::BackchannelLogouts, id, now, lease_secs);
        let Some(lease) = claimed.await? else {
            return Ok(None);
        };
        let row = sqlx::query(
            "SELECT client_id, account_id, sid, attempts FROM backchannel_logouts \
             WHERE id = $1 AND lease_id = $2",
        )
        .bind(id)
        .bind(&lease)
        .fetch_optional(self.provider.db.pool())
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        Ok(Some(Claimed {
            id: id.to_owned(),
            lease,
            client_id: row.try_get("client_id")?,
            account_id: row.try_get("account_id")?,
            sid: row.try_get("sid")?,
            attempts: row.try_get("attempts")?,
        }))
    }

    /// Signs and posts one notification, then records the outcome.
    async fn deliver(&self, n: Claimed) -> Result<()> {
        let outcome = self.post(&n).await;
        let now = self.provider.now();
        let attempts = n.attempts + 1;
        let (status, next_attempt_at, last_error, sent_at) = match &outcome {
            Ok(()) => ("sent", now, "", Some(now)),
            Err(Undelivered::Transient(reason))
                if attempts < i64::from(self.settings.max_attempts) =>
            {
                let wait = dge_core::retry::backoff_secs(
                    attempts,
                    self.settings.retry_base_secs,
                    self.settings.retry_max_secs,
                );
                ("queued", now + wait, reason.as_str(), None)
            }
            Err(Undelivered::Transient(reason) | Undelivered::Permanent(reason)) => {
                ("failed", now, reason.as_str(), None)
            }
        };
        let outcome = Outcome {
            status,
            attempts,
            next_attempt_at,
            last_error,
            sent_at,
        };
        let queue = Queue::BackchannelLogouts;
        let recorded =
            leases::record(&self.provider.db, queue, &n.id, &n.lease, &outcome, now).await?;
        let client_id = n.client_id.as_str();
        match status {
            "sent" => tracing::info!(%client_id, attempts, "back-channel logout delivered"),
            "queued" => tracing::warn!(
                %client_id,
                attempts,
                retry_in_secs = next_attempt_at - now,
                error = %last_error,
                "back-channel logout deferred"
            ),
            // The module keeps its own session of the person until it ends, unless
            // it asks `Check` or `/introspect`, which refuse the person's tokens.
            _ => {
                tracing::error!(%client_id, attempts, error = %last_error, "back-channel logout failed")
            }
        }
        if !recorded {
            // The lease ran out while this post was slow, and another dispatcher
            // took the notification over: the module may be told twice.
            tracing::warn!(%client_id, "back-channel logout outcome not recorded: lease lost");
        }
        Ok(())
    }

    /// One attempt: the client as registered now, a fresh token, one post.
    async fn post(&self, n: &Claimed) -> std::result::Result<(), Undelivered> {
        let client = match clients::find(&self.provider.db, &n.client_id).await {
            Ok(Some(client)) => client,
            Ok(None) => return Err(Undelivered::Permanent("the client was deleted".to_owned())),
            Err(e) => {
                return Err(Undelivered::Transient(format!(
                    "client not read: {}",
                    dge_core::ErrorChain(&e)
                )));
            }
        };
        let Some(uri) = client.settings.backchannel_logout_uri.clone() else {
            return Err(Undelivered::Permanent(
                "the client no longer has a back-channel logout URI".to_owned(),
            ));
        };
        // Registered before the rule, or as an address: never posted to.
        if names_forbidden_target(&uri) {
            return Err(Undelivered::Permanent(
                "the back-channel logout URI is a forbidden address (link-local, cloud metadata, multicast, reserved or unspecified)"
                    .to_owned(),
            ));
        }
        let token = self
            .provider
            .logout_token(&client, &n.account_id, &n.sid)
            .await
            .map_err(|e| {
                Undelivered::Transient(format!("not signed: {}", dge_core::ErrorChain(&e)))
            })?;
        let sent = self
            .http
            .post(&uri)
            .form(&[("logout_token", token.as_str())])
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(Undelivered::Transient(format!("answered {}", r.status()))),
            Err(e) => Err(Undelivered::Transient(format!(
                "not reached: {}",
                dge_core::ErrorChain(&e)
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_local_multicast_and_unspecified_addresses_are_never_posted_to() {
        for forbidden in [
            "169.254.169.254",
            "169.254.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "fe80::1",
            "febf::1",
            "::",
            "ff02::1",
            "::ffff:169.254.169.254",
            // A tester's finds: other wrappings, other clouds, reserved ranges.
            "64:ff9b::a9fe:a9fe",
            "::ffff:0:a9fe:a9fe",
            "2002:a9fe:a9fe::",
            "fd00:ec2::254",
            "100.100.100.200",
            "240.0.0.1",
            "fec0::1",
            "100::1",
            // A second tester's finds.
            "168.63.129.16",
            "192.0.0.192",
            "fd20:ce::254",
            "fd00:c1::a9fe:a9fe",
            "64:ff9b:1::a9fe:a9fe",
            "::a9fe:a9fe",
            "2001:0:4136:e378:8000:63bf:5601:5601",
        ] {
            let ip: IpAddr = forbidden.parse().expect("an address");
            assert!(is_forbidden_target(ip), "{forbidden}");
        }
        for allowed in [
            "127.0.0.1",
            "10.0.0.5",
            "192.168.1.2",
            "172.16.0.1",
            "::1",
            "fd00::1",
            "2001:db8::1",
            "64:ff9b::a00:5",
            "100.64.0.1",
        ] {
            let ip: IpAddr = allowed.parse().expect("an address");
            assert!(!is_forbidden_target(ip), "{allowed}");
        }
        assert!(names_forbidden_target(
            "https://169.254.169.254/latest/meta-data"
        ));
        assert!(names_forbidden_target("http://[fe80::1]:8080/bc"));
        assert!(!names_forbidden_target("https://module.example.fr/bc"));
        assert!(!names_forbidden_target("http://127.0.0.1:9/bc"));
    }

    #[tokio::test]
    async fn the_resolver_keeps_allowed_addresses_of_a_name() {
        use reqwest::dns::Resolve as _;
        let name: reqwest::dns::Name = "localhost".parse().expect("a name");
        let addrs: Vec<SocketAddr> = GuardedResolver
            .resolve(name)
            .await
            .expect("resolved")
            .collect();
        assert!(!addrs.is_empty());
        assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
    }
}
