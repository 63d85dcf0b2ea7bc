//! In-process caches of the `Check` path: verified tokens, and authorization answers.
//!
//! `Check` is on the path of every page of the portal; without caches each call
//! verified two ES256 signatures and read the database twice.
//!
//! - Verified tokens ([`Keys`](crate::Keys) holds one): the claims of a token whose
//!   signature was verified, keyed by the SHA-256 of the token. A signature does not
//!   change, so an entry lives until the token's `exp`; the whole cache is dropped
//!   when the key ring is reloaded (a retired key must stop verifying at once).
//! - Answers ([`Answers`]): what the database said about a token (revoked? the
//!   account's status, a right held). These change: an answer is used only while the
//!   access generation of the [`Db`](dge_store::Db) it was read under is current
//!   (every revocation, logout, password reset, status change, grant, client change
//!   bumps it, on this replica at once and on the others through the shared store's
//!   notices), and never longer than [`ANSWER_TTL`], so that a lost notice (Redis
//!   down) cannot keep an "allowed" alive for more than that.
//!
//! Both are bounded: when full, expired entries are swept, and if that frees nothing
//! the map is emptied (a flood of distinct tokens then costs only re-verification).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// How long an answer read from the database may be reused at most, even when no
/// change was announced: the bound on staleness when a notice is lost.
pub const ANSWER_TTL: Duration = Duration::from_secs(1);

/// Entries per cache; a few MiB at most.
pub const CAPACITY: usize = 16_384;

/// The SHA-256 of a token: tokens are not kept in memory longer than the call.
pub(crate) fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A map of at most `capacity` entries; `V` says itself whether it is still good.
#[derive(Debug)]
pub(crate) struct Bounded<K, V> {
    map: Mutex<HashMap<K, V>>,
    capacity: usize,
}

impl<K: Eq + Hash, V: Clone> Bounded<K, V> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    /// The entry at `key` if `fresh` says it is still good; a stale one is removed.
    pub(crate) fn get(&self, key: &K, fresh: impl Fn(&V) -> bool) -> Option<V> {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        match map.get(key) {
            Some(v) if fresh(v) => Some(v.clone()),
            Some(_) => {
                map.remove(key);
                None
            }
            None => None,
        }
    }

    /// Keeps `value` at `key`; when full, first drops what `fresh` rejects, then all.
    pub(crate) fn insert(&self, key: K, value: V, fresh: impl Fn(&V) -> bool) {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= self.capacity && !map.contains_key(&key) {
            map.retain(|_, v| fresh(v));
            if map.len() >= self.capacity {
                map.clear();
            }
        }
        map.insert(key, value);
    }

    /// Forgets everything.
    pub(crate) fn clear(&self) {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// An answer read from the database, with when and under which generation.
#[derive(Debug, Clone)]
struct Answer<V> {
    value: V,
    generation: u64,
    read_at: Instant,
}

impl<V> Answer<V> {
    fn fresh(&self, generation: u64) -> bool {
        self.generation == generation && self.read_at.elapsed() < ANSWER_TTL
    }
}

/// Answers keyed by `K`, valid for one access generation and [`ANSWER_TTL`].
#[derive(Debug)]
pub struct Answers<K, V> {
    map: Bounded<K, Answer<V>>,
}

impl<K: Eq + Hash, V: Clone> Answers<K, V> {
    /// An empty cache of at most `capacity` answers.
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        Self {
            map: Bounded::new(capacity),
        }
    }

    /// The answer at `key` if read under `generation` less than [`ANSWER_TTL`] ago.
    pub fn get(&self, key: &K, generation: u64) -> Option<V> {
        self.map.get(key, |a| a.fresh(generation)).map(|a| a.value)
    }

    /// Keeps `value`, read from the database under `generation`: the generation must
    /// be taken *before* the read, so that a change committed during the read leaves
    /// the answer stale.
    pub fn insert(&self, key: K, value: V, generation: u64) {
        let answer = Answer {
            value,
            generation,
            read_at: Instant::now(),
        };
        self.map.insert(key, answer, |a| a.fresh(generation));
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_stale_once_the_generation_moves() {
        let answers: Answers<&str, bool> = Answers::new(4);
        answers.insert("jti", true, 7);
        assert_eq!(answers.get(&"jti", 7), Some(true));
        // A revocation on any replica bumps the generation.
        assert_eq!(answers.get(&"jti", 8), None);
        // And the stale entry is gone, not revived by the old generation.
        assert_eq!(answers.get(&"jti", 7), None);
    }

    #[test]
    fn an_answer_read_before_a_change_is_never_served_after_it() {
        let answers: Answers<&str, bool> = Answers::new(4);
        // Generation taken before the read, the change lands during the read.
        let before = 3;
        let after = 4;
        answers.insert("jti", true, before);
        assert_eq!(answers.get(&"jti", after), None);
    }

    #[tokio::test]
    async fn an_answer_expires_after_its_ttl_even_without_a_notice() {
        let answers: Answers<&str, bool> = Answers::new(4);
        answers.insert("jti", true, 1);
        tokio::time::sleep(ANSWER_TTL + Duration::from_millis(50)).await;
        assert_eq!(answers.get(&"jti", 1), None);
    }

    #[test]
    fn a_full_cache_stays_bounded() {
        let answers: Answers<u32, bool> = Answers::new(8);
        for i in 0..100 {
            answers.insert(i, true, 1);
            assert!(answers.len() <= 8);
        }
        assert_eq!(answers.get(&99, 1), Some(true));
    }

    #[test]
    fn tokens_are_keyed_by_digest() {
        assert_eq!(digest("a"), digest("a"));
        assert_ne!(digest("a"), digest("b"));
    }
}
