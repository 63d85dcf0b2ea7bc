//! Rate limits of `/authorize` (per client address) and of failed client
//! authentications at the token endpoints (per client id and per address).
//!
//! Counters live in the shared [`Ephemeral`](dge_store::ephemeral::Ephemeral) store
//! (Redis when replicas run, so that every replica sees the same counts; in the process
//! otherwise), in fixed windows that start at the first hit. Keys hold SHA-256 digests,
//! never an address or a client id in clear.
//!
//! Failed client authentications: once `client_auth_max_failures` failures within
//! `client_auth_window_secs` come from one address, or name one client id, further
//! requests are refused before any secret or assertion is checked and without an audit
//! row each (the failure that reaches the limit writes one `token.client_auth_limited`
//! row). As with the login throttle, an address where the client authenticated
//! successfully within [`KNOWN_ADDRESS_SECS`] is "known" to it, and each limit alone
//! spares it: someone guessing from elsewhere cannot lock a service out of its own
//! tokens, and a module that fails on a host shared with others (or behind one NAT)
//! does not lock them out. Both limits at once refuse even a known address: someone
//! there is guessing this very client's secret.

use std::time::Duration;

use dge_core::token::hash_token;
use dge_store::ephemeral::{mark_is_fresh, mark_until};

use crate::{Provider, Result};

/// How long an address where a client authenticated stays known to it (30 days).
pub const KNOWN_ADDRESS_SECS: u64 = 30 * 24 * 3600;

/// The limits, with defaults fit for production.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// Requests to `/authorize` from one address within the window (300).
    pub authorize_max: u64,
    /// The window of `authorize_max`, seconds (60).
    pub authorize_window_secs: u64,
    /// Failed client authentications, per client id and per address, within the
    /// window, after which requests are refused at once (10).
    pub client_auth_max_failures: u64,
    /// The window of `client_auth_max_failures`, seconds (900).
    pub client_auth_window_secs: u64,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            authorize_max: 300,
            authorize_window_secs: 60,
            client_auth_max_failures: 10,
            client_auth_window_secs: 900,
        }
    }
}

fn authorize_key(address: &str) -> String {
    format!("rate:authorize:{}", hash_token(address))
}

fn client_fail_key(kind: &str, subject: &str) -> String {
    format!("rate:client_fail:{kind}:{}", hash_token(subject))
}

fn client_known_key(client_id: &str, address: &str) -> String {
    format!(
        "rate:client_known:{}:{}",
        hash_token(client_id),
        hash_token(address)
    )
}

/// Whole seconds, at least 1, for a `Retry-After` header.
fn retry_secs(left: Option<Duration>, window_secs: u64) -> u64 {
    left.map_or(window_secs, |d| {
        d.as_secs() + u64::from(d.subsec_nanos() > 0)
    })
    .max(1)
}

impl Provider {
    /// Counts a request to `/authorize` from `address`. `Some(seconds)` to wait when
    /// the address is over its limit.
    ///
    /// # Errors
    /// The shared store failed.
    pub async fn authorize_rate(&self, address: &str) -> Result<Option<u64>> {
        let l = self.settings.limits;
        let key = authorize_key(address);
        let window = Duration::from_secs(l.authorize_window_secs);
        let count = self.ephemeral.hit(&key, window).await?;
        if count <= l.authorize_max {
            return Ok(None);
        }
        if count == l.authorize_max + 1 {
            tracing::warn!("client address over the /authorize rate limit");
        }
        let left = self.ephemeral.ttl(&key).await?;
        Ok(Some(retry_secs(left, l.authorize_window_secs)))
    }

    /// What the shared store says of a client authentication for `client_id` from
    /// `address` before it is checked (one round trip: both counters and the known
    /// address): whether it is refused at once.
    ///
    /// # Errors
    /// The shared store failed.
    pub(crate) async fn client_auth_gate(
        &self,
        client_id: &str,
        address: &str,
    ) -> Result<ClientAuthGate> {
        let l = self.settings.limits;
        let addr_key = client_fail_key("addr", address);
        let id_key = client_fail_key("id", client_id);
        let known_key = client_known_key(client_id, address);
        let values = self
            .ephemeral
            .get_many(&[&addr_key, &id_key, &known_key])
            .await?;
        let mut values = values.into_iter();
        let mut next = || values.next().flatten();
        let (addr_count, id_count, known) = (next(), next(), next());
        let over = |count: Option<String>| {
            count
                .and_then(|c| c.parse::<u64>().ok())
                .is_some_and(|c| c >= l.client_auth_max_failures)
        };
        let (addr_over, id_over) = (over(addr_count), over(id_count));
        let fresh = mark_is_fresh(known.as_deref(), self.now(), KNOWN_ADDRESS_SECS);
        let mut gate = ClientAuthGate {
            retry_after: None,
            fresh_known_for: fresh.then(|| client_id.to_owned()),
        };
        // See the module documentation: each limit alone spares a known address.
        if !addr_over && !id_over || (addr_over != id_over && known.is_some()) {
            return Ok(gate);
        }
        let key = if addr_over { addr_key } else { id_key };
        let left = self.ephemeral.ttl(&key).await?;
        gate.retry_after = Some(retry_secs(left, l.client_auth_window_secs));
        Ok(gate)
    }

    /// Counts a failed client authentication; writes one audit row when a counter
    /// reaches the limit.
    pub(crate) async fn client_auth_failed(&self, client_id: &str, address: &str) -> Result<()> {
        let l = self.settings.limits;
        let window = Duration::from_secs(l.client_auth_window_secs);
        let by_addr = self
            .ephemeral
            .hit(&client_fail_key("addr", address), window)
            .await?;
        let by_id = self
            .ephemeral
            .hit(&client_fail_key("id", client_id), window)
            .await?;
        let max = l.client_auth_max_failures;
        if by_addr == max || by_id == max {
            let over = match (by_addr == max, by_id == max) {
                (true, true) => "address,client_id",
                (true, false) => "address",
                _ => "client_id",
            };
            let detail = format!(
                "address={address} limit={over} failures={max} window_secs={}",
                l.client_auth_window_secs
            );
            let mut conn = self.db.pool().acquire().await?;
            dge_store::audit(
                &mut conn,
                client_id,
                "token.client_auth_limited",
                client_id,
                &detail,
                self.now(),
            )
            .await?;
            tracing::warn!(
                limit = over,
                "failed client authentications over the limit: further ones refused at once"
            );
        }
        Ok(())
    }

    /// Remembers that `client_id` authenticated from `address`, unless the gate found
    /// it remembered for more than half of [`KNOWN_ADDRESS_SECS`] still: a busy service
    /// then costs no write per token.
    pub(crate) async fn client_auth_succeeded(
        &self,
        client_id: &str,
        address: &str,
        gate: &ClientAuthGate,
    ) -> Result<()> {
        if gate.fresh_known_for.as_deref() == Some(client_id) {
            return Ok(());
        }
        self.ephemeral
            .put(
                &client_known_key(client_id, address),
                &mark_until(self.now(), KNOWN_ADDRESS_SECS),
                Duration::from_secs(KNOWN_ADDRESS_SECS),
            )
            .await?;
        Ok(())
    }
}

/// See [`Provider::client_auth_gate`].
#[derive(Debug)]
pub(crate) struct ClientAuthGate {
    /// Refused at once: the seconds to wait.
    pub(crate) retry_after: Option<u64>,
    /// The client whose known address needs no refresh yet.
    fresh_known_for: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_and_is_never_zero() {
        assert_eq!(retry_secs(Some(Duration::from_millis(1500)), 60), 2);
        assert_eq!(retry_secs(Some(Duration::from_secs(3)), 60), 3);
        assert_eq!(retry_secs(Some(Duration::ZERO), 60), 1);
        assert_eq!(retry_secs(None, 60), 60);
    }
}
