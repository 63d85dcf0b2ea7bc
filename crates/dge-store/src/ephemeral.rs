//! Short-lived state shared by the replicas: rate-limit counters, values taken
//! exactly once, and notifications to every replica.
//!
//! Redis serves several replicas; without it, an in-process equivalent serves one.
//! Both sides answer the same calls the same way (the test suite runs each case on
//! both). Keys are namespaced with a prefix so that several deployments, or test
//! runs, can share one Redis.
//!
//! What lives here is allowed to vanish (a Redis restart resets counters and drops
//! notifications); what must last stays in the database.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use tokio::sync::broadcast;

/// Errors of the shared store.
#[derive(Debug, thiserror::Error)]
pub enum EphemeralError {
    /// Redis refused the command or could not be reached.
    #[error("redis error")]
    Redis(#[from] redis::RedisError),
}

/// A notification to every replica: a topic (`keys`, `rights`...) and a payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// What changed.
    pub topic: String,
    /// Which one, when it matters (an account id...), else empty.
    pub payload: String,
}

/// Short-lived shared state: see the module documentation.
#[derive(Clone)]
pub struct Ephemeral {
    inner: Inner,
    prefix: String,
    notices: broadcast::Sender<Notice>,
    /// A notice failed to reach Redis and a `resync` is being retried (one task at
    /// a time, shared by the clones).
    resync_owed: Arc<AtomicBool>,
}

#[derive(Clone)]
enum Inner {
    Local(Arc<Mutex<HashMap<String, (String, Instant)>>>),
    Redis(crate::redis_conn::RedisConn),
}

impl std::fmt::Debug for Ephemeral {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let backend = match self.inner {
            Inner::Local(_) => "local",
            Inner::Redis(_) => "redis",
        };
        f.debug_struct("Ephemeral")
            .field("backend", &backend)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// How many notices a slow subscriber may fall behind before it misses some.
const NOTICE_BACKLOG: usize = 256;

/// A mark that holds its own expiry (unix seconds), so that its holder can tell
/// when it is worth writing again: see [`mark_is_fresh`].
#[must_use]
pub fn mark_until(now: i64, lifetime_secs: u64) -> String {
    now.saturating_add(i64::try_from(lifetime_secs).unwrap_or(i64::MAX))
        .to_string()
}

/// Whether a mark written by [`mark_until`] has more than half of `lifetime_secs`
/// left at `now`: then it needs no rewrite, and a busy caller writes nothing. A mark
/// of another kind (an older "1") is not fresh.
#[must_use]
pub fn mark_is_fresh(mark: Option<&str>, now: i64, lifetime_secs: u64) -> bool {
    let half = i64::try_from(lifetime_secs / 2).unwrap_or(i64::MAX);
    mark.and_then(|v| v.parse::<i64>().ok())
        .is_some_and(|until| until.saturating_sub(now) > half)
}

impl Ephemeral {
    /// The in-process store of a single replica.
    #[must_use]
    pub fn local(prefix: &str) -> Self {
        let (notices, _) = broadcast::channel(NOTICE_BACKLOG);
        Self {
            inner: Inner::Local(Arc::default()),
            prefix: prefix.to_owned(),
            notices,
            resync_owed: Arc::default(),
        }
    }

    /// Connects to Redis and starts relaying its notifications to [`Self::subscribe`],
    /// with calls that end within [`crate::DEFAULT_REDIS_DEADLINE`]. The relay
    /// reconnects by itself when Redis goes away.
    ///
    /// # Errors
    /// A malformed URL, or Redis does not answer now.
    pub async fn redis(url: &str, prefix: &str) -> Result<Self, EphemeralError> {
        Self::redis_with_deadline(url, prefix, crate::DEFAULT_REDIS_DEADLINE).await
    }

    /// As [`Self::redis`], every call to Redis ending within `deadline`: past it, the
    /// call fails as if Redis had refused it (the connection stays; see
    /// `redis_conn` for when it is rebuilt). The notifications' connection is pinged
    /// every five deadlines and rebuilt (with a `resync` to this replica) when a ping
    /// gets no answer within twice the deadline, at least 5 s.
    ///
    /// # Errors
    /// A malformed URL, or Redis does not answer within a few seconds.
    pub async fn redis_with_deadline(
        url: &str,
        prefix: &str,
        deadline: Duration,
    ) -> Result<Self, EphemeralError> {
        let client = redis::Client::open(url)?;
        let conn = crate::redis_conn::RedisConn::connect(client.clone(), deadline).await?;
        let (notices, _) = broadcast::channel(NOTICE_BACKLOG);
        let channel = format!("{prefix}notices");
        // Subscribe before answering, so that a notice sent right after start-up is seen.
        let pubsub =
            crate::redis_conn::within(crate::redis_conn::START_LIMIT, subscribe(&client, &channel))
                .await?;
        let resync_owed = Arc::<AtomicBool>::default();
        tokio::spawn(relay(
            client,
            channel,
            pubsub,
            Relayed {
                notices: notices.clone(),
                handles: Arc::downgrade(&resync_owed),
            },
            deadline,
        ));
        Ok(Self {
            inner: Inner::Redis(conn),
            prefix: prefix.to_owned(),
            notices,
            resync_owed,
        })
    }

    /// Whether this store is shared through Redis.
    #[must_use]
    pub fn is_shared(&self) -> bool {
        matches!(self.inner, Inner::Redis(_))
    }

    /// The Redis connection and key prefix, when shared through Redis.
    pub(crate) fn redis_handle(&self) -> Option<(crate::redis_conn::RedisConn, &str)> {
        match &self.inner {
            Inner::Redis(manager) => Some((manager.clone(), &self.prefix)),
            Inner::Local(_) => None,
        }
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// Counts one hit on `key` in a fixed window of `window` and returns the count so
    /// far (1 for the first hit of a window).
    ///
    /// # Errors
    /// Redis failed.
    pub async fn hit(&self, key: &str, window: Duration) -> Result<u64, EphemeralError> {
        let key = self.key(key);
        match &self.inner {
            Inner::Local(map) => {
                let now = Instant::now();
                let mut map = map.lock().unwrap_or_else(PoisonError::into_inner);
                purge_expired(&mut map, &key, now);
                let entry = map
                    .entry(key)
                    .or_insert_with(|| ("0".to_owned(), now + window));
                if entry.1 <= now {
                    // The window is over: a new one starts with this hit.
                    *entry = ("0".to_owned(), now + window);
                }
                let count = entry.0.parse::<u64>().unwrap_or(0).saturating_add(1);
                entry.0 = count.to_string();
                Ok(count)
            }
            Inner::Redis(manager) => {
                let mut conn = manager.clone();
                let millis = u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1);
                // INCR then set the expiry only on the window's first hit (NX), in one
                // round trip.
                let (count,): (u64,) = redis::pipe()
                    .atomic()
                    .incr(&key, 1_u64)
                    .cmd("PEXPIRE")
                    .arg(&key)
                    .arg(millis)
                    .arg("NX")
                    .ignore()
                    .query_async(&mut conn)
                    .await?;
                Ok(count)
            }
        }
    }

    /// Forgets the counter or value at `key` (an administrator unlocks an account).
    ///
    /// # Errors
    /// Redis failed.
    pub async fn forget(&self, key: &str) -> Result<(), EphemeralError> {
        self.forget_many(&[key]).await
    }

    /// Forgets several values (or counters) at once: one round trip to Redis.
    ///
    /// # Errors
    /// Redis failed.
    pub async fn forget_many(&self, keys: &[&str]) -> Result<(), EphemeralError> {
        let keys: Vec<String> = keys.iter().map(|k| self.key(k)).collect();
        match &self.inner {
            Inner::Local(map) => {
                let mut map = map.lock().unwrap_or_else(PoisonError::into_inner);
                for key in &keys {
                    map.remove(key);
                }
                Ok(())
            }
            // DEL needs at least one key.
            Inner::Redis(_) if keys.is_empty() => Ok(()),
            Inner::Redis(manager) => {
                let mut conn = manager.clone();
                redis::cmd("DEL")
                    .arg(&keys)
                    .query_async::<()>(&mut conn)
                    .await?;
                Ok(())
            }
        }
    }

    /// Keeps `value` at `key` for `ttl`, replacing what was there.
    ///
    /// # Errors
    /// Redis failed.
    pub async fn put(&self, key: &str, value: &str, ttl: Duration) -> Result<(), EphemeralError> {
        let key = self.key(key);
        match &self.inner {
            Inner::Local(map) => {
                let now = Instant::now();
                let mut map = map.lock().unwrap_or_else(PoisonError::into_inner);
                purge_expired(&mut map, &key, now);
                map.insert(key, (value.to_owned(), now + ttl));
                Ok(())
            }
            Inner::Redis(manager) => {
                let mut conn = manager.clone();
                let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
                redis::cmd("SET")
                    .arg(&key)
                    .arg(value)
                    .arg("PX")
                    .arg(millis)
                    .query_async::<()>(&mut conn)
                    .await?;
                Ok(())
            }
        }
    }

    /// Reads the value (or counter) at `key` without changing it; an expired one is
    /// gone.
    ///
    /// # Errors
    /// Redis failed.
    pub async fn get(&self, key: &str) -> Result<Option<String>, EphemeralError> {
        let key = self.key(key);
        match &self.inner {
            Inner::Local(map) => {
                let now = Instant::now();
                let map = map.lock().unwrap_or_else(PoisonError::into_inner);
                Ok(map
                    .get(&key)
                    .filter(|(_, expires)| *expires > now)
                    .map(|(value, _)| value.clone()))
            }
            Inner::Redis(manager) => {
                let mut conn = manager.clone();
                Ok(redis::cmd("GET").arg(&key).query_async(&mut conn).await?)
            }
        }
    }

    /// Reads several values (or counters) at once, in the order of `keys`: one round
    /// trip to Redis instead of one per key.
    ///
    /// # Errors
    /// Redis failed.
    pub async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<String>>, EphemeralError> {
        let keys: Vec<String> = keys.iter().map(|k| self.key(k)).collect();
        match &self.inner {
            Inner::Local(map) => {
                let now = Instant::now();
                let map = map.lock().unwrap_or_else(PoisonError::into_inner);
                Ok(keys
                    .iter()
                    .map(|key| {
                        map.get(key)
                            .filter(|(_, expires)| *expires > now)
                            .map(|(value, _)| value.clone())
                    })
                    .collect())
            }
            Inner::Redis(manager) => {
                let mut conn = manager.clone();
                // MGET of one key answers a list too, unlike GET.
                Ok(redis::cmd("MGET").arg(&keys).query_async(&mut conn).await?)
            }
        }
    }

    /// How long the value (or counter) at `key` has left; `None` when there is none.
    ///
    /// # Errors
    /// Redis failed.
    pub async fn ttl(&self, key: &str) -> Result<Option<Duration>, EphemeralError> {
        let key = self.key(key);
        match &self.inner {
            Inner::Local(map) => {
                let now = Instant::now();
                let map = map.lock().unwrap_or_else(PoisonError::into_inner);
                Ok(map
                    .get(&key)
                    .filter(|(_, expires)| *expires > now)
                    .map(|(_, expires)| *expires - now))
            }
            Inner::Redis(manager) => {
                let mut conn = manager.clone();
                // -2: no key; -1: no expiry (never set by this store).
                let millis: i64 = redis::cmd("PTTL").arg(&key).query_async(&mut conn).await?;
                Ok(u64::try_from(millis).ok().map(Duration::from_millis))
            }
        }
    }

    /// Takes the value at `key`: of several concurrent callers, on any replica,
    /// exactly one gets it; an expired value is gone.
    ///
    /// # Errors
    /// Redis failed.
    pub async fn take(&self, key: &str) -> Result<Option<String>, EphemeralError> {
        let key = self.key(key);
        match &self.inner {
            Inner::Local(map) => {
                let now = Instant::now();
                let mut map = map.lock().unwrap_or_else(PoisonError::into_inner);
                Ok(map
                    .remove(&key)
                    .filter(|(_, expires)| *expires > now)
                    .map(|(value, _)| value))
            }
            Inner::Redis(manager) => {
                let mut conn = manager.clone();
                Ok(redis::cmd("GETDEL")
                    .arg(&key)
                    .query_async(&mut conn)
                    .await?)
            }
        }
    }

    /// Tells every replica (this one included) that `topic` changed.
    ///
    /// When Redis cannot take the notice, every replica is sent a `resync` once it
    /// can (retried every second in the background): what listens for notices
    /// reloads, as after an outage of Redis itself.
    ///
    /// # Errors
    /// Redis failed; the notice itself is lost.
    pub async fn notify(&self, topic: &str, payload: &str) -> Result<(), EphemeralError> {
        match &self.inner {
            Inner::Local(_) => {
                // No subscriber is not an error.
                drop(self.notices.send(Notice {
                    topic: topic.to_owned(),
                    payload: payload.to_owned(),
                }));
                Ok(())
            }
            Inner::Redis(manager) => {
                let channel = format!("{}notices", self.prefix);
                // Not tried twice: during an outage the second try would wait for the
                // manager's reconnection, holding the request up. A resync ends every
                // `WatchRights` stream of every replica, so a Redis that closes idle
                // clients (`timeout` other than 0) would cost one each time.
                let published = publish(manager.clone(), &channel, topic, payload).await;
                if published.is_err() && !self.resync_owed.swap(true, Ordering::AcqRel) {
                    tokio::spawn(publish_resync(
                        manager.clone(),
                        channel,
                        self.resync_owed.clone(),
                    ));
                }
                Ok(published?)
            }
        }
    }

    /// Notices from every replica, from now on.
    #[must_use]
    pub fn subscribe(&self) -> broadcast::Receiver<Notice> {
        self.notices.subscribe()
    }
}

/// Drops expired entries now and then, so that the map cannot grow without bound;
/// readers check expiry themselves, so what is left here is never seen.
/// Before `key` is written: sweeps the expired entries when a new key makes the map
/// reach a power of two (from 1024). Amortised O(1): the sweep runs once per doubling,
/// never again for writes to keys already there (a map holding exactly 1024 live keys
/// swept at every write before).
fn purge_expired(map: &mut HashMap<String, (String, Instant)>, key: &str, now: Instant) {
    if map.len() >= 1024 && map.len().is_power_of_two() && !map.contains_key(key) {
        map.retain(|_, (_, expires)| *expires > now);
    }
}

async fn publish(
    mut conn: crate::redis_conn::RedisConn,
    channel: &str,
    topic: &str,
    payload: &str,
) -> Result<(), redis::RedisError> {
    redis::cmd("PUBLISH")
        .arg(channel)
        .arg(format!("{topic}\n{payload}"))
        .query_async::<()>(&mut conn)
        .await
}

/// After a notice that could not be published: a `resync` to every replica as
/// soon as Redis takes it, so that none keeps what the lost notice changed.
async fn publish_resync(
    conn: crate::redis_conn::RedisConn,
    channel: String,
    owed: Arc<AtomicBool>,
) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if Arc::strong_count(&owed) == 1 {
            // Every handle is gone: nobody is left to notify for.
            return;
        }
        // Cleared first: a notice failing from now on owes another one.
        owed.store(false, Ordering::Release);
        match publish(conn.clone(), &channel, "resync", "").await {
            Ok(()) => {
                tracing::info!("replicas told to reload after a lost notice");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "redis still refuses notices");
                if owed.swap(true, Ordering::AcqRel) {
                    // Another failure already started a task of its own.
                    return;
                }
            }
        }
    }
}

async fn subscribe(
    client: &redis::Client,
    channel: &str,
) -> Result<redis::aio::PubSub, redis::RedisError> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(channel).await?;
    Ok(pubsub)
}

/// Where the relay passes notices on, and how it tells that every [`Ephemeral`]
/// handle is gone (their shared `resync_owed`): then it stops.
struct Relayed {
    notices: broadcast::Sender<Notice>,
    handles: std::sync::Weak<AtomicBool>,
}

impl Relayed {
    fn nobody_left(&self) -> bool {
        self.handles.strong_count() == 0
    }
}

/// Relays Redis notifications to the local subscribers, reconnecting with a delay
/// when the connection drops or stops answering pings, until no handle is left.
async fn relay(
    client: redis::Client,
    channel: String,
    pubsub: redis::aio::PubSub,
    to: Relayed,
    deadline: Duration,
) {
    let notices = &to.notices;
    let mut pubsub = Some(pubsub);
    loop {
        if let Some(live) = pubsub.take() {
            if relay_until_silent(live, &to, deadline).await {
                return;
            }
            tracing::warn!("redis notifications interrupted; reconnecting");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        if to.nobody_left() {
            return;
        }
        match crate::redis_conn::within(deadline, subscribe(&client, &channel)).await {
            Ok(fresh) => {
                pubsub = Some(fresh);
                // Whatever changed while disconnected: every replica reloads.
                drop(notices.send(Notice {
                    topic: "resync".to_owned(),
                    payload: String::new(),
                }));
            }
            Err(e) => tracing::warn!(error = %e, "redis still unreachable"),
        }
    }
}

/// Passes the messages of `pubsub` on until its connection ends or a ping goes
/// unanswered (false), or until no handle is left (true).
async fn relay_until_silent(pubsub: redis::aio::PubSub, to: &Relayed, deadline: Duration) -> bool {
    let (mut sink, mut messages) = pubsub.split();
    // A ping every five deadlines (10 s by default), each given at least 5 s: a
    // connection gone silent is found within 15 s, while a Redis pausing for a
    // second (a fork for a snapshot) does not make every replica resync at once.
    let patience = deadline.saturating_mul(2).max(Duration::from_secs(5));
    let mut ping = tokio::time::interval(deadline.saturating_mul(5));
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    loop {
        tokio::select! {
            message = messages.next() => {
                let Some(message) = message else { return false };
                let Ok(body) = message.get_payload::<String>() else {
                    continue;
                };
                let (topic, payload) = body.split_once('\n').unwrap_or((&body, ""));
                drop(to.notices.send(Notice {
                    topic: topic.to_owned(),
                    payload: payload.to_owned(),
                }));
            }
            _ = ping.tick() => {
                if to.nobody_left() {
                    return true;
                }
                // The answer comes back on the message stream's connection; the sink
                // waits for it, so a silent Redis shows here.
                let answered = tokio::time::timeout(patience, sink.ping::<redis::Value>()).await;
                if !matches!(answered, Ok(Ok(_))) {
                    return false;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_is_fresh_for_the_first_half_of_its_lifetime() {
        let mark = mark_until(1_000, 100);
        assert_eq!(mark, "1100");
        assert!(mark_is_fresh(Some(&mark), 1_000, 100));
        assert!(mark_is_fresh(Some(&mark), 1_049, 100));
        assert!(!mark_is_fresh(Some(&mark), 1_050, 100));
        assert!(!mark_is_fresh(Some("1"), 1_000, 100), "an older mark");
        assert!(!mark_is_fresh(None, 1_000, 100));
        // A stored value out of range does not overflow.
        assert!(mark_is_fresh(Some(&i64::MAX.to_string()), -10, 100));
    }

    #[test]
    fn the_local_map_is_swept_once_per_doubling_not_at_every_write() {
        let now = Instant::now();
        let mut map: HashMap<String, (String, Instant)> = (0..1023)
            .map(|i| {
                (
                    format!("live-{i}"),
                    ("1".to_owned(), now + Duration::from_secs(60)),
                )
            })
            .collect();
        map.insert("gone".into(), ("1".into(), now - Duration::from_secs(1)));
        // A write to a key already there: no sweep, whatever the size.
        purge_expired(&mut map, "live-7", now);
        assert!(map.contains_key("gone"));
        // A new key at 1024: the expired entry goes.
        purge_expired(&mut map, "new", now);
        assert!(!map.contains_key("gone"));
        assert_eq!(map.len(), 1023);
    }
}
