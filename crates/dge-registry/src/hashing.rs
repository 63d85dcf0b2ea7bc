//! Password hashing with argon2id.
//!
//! Hashing is CPU-bound and deliberately slow, so it runs on the blocking pool,
//! never on an async worker, and a semaphore bounds how many run at once: a flood
//! of logins waits briefly, then is refused, instead of exhausting memory
//! (each hash holds 19 MiB). A caller that could not get a slot within half the
//! wait, judging by the queue ahead of it and the time a hash takes, is refused at
//! once; the other half is the margin for that estimate, which lags when the load
//! changes, so that an admitted caller is seldom refused after waiting.
//!
//! The 19 MiB of each hash are kept and reused by the next one instead of being
//! allocated every time: the allocator would otherwise keep such blocks in every
//! blocking thread's arena, and the process grew by hundreds of MiB under logins.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::{Output, ParamsString, PasswordHash, PasswordHasher, Salt, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::Semaphore;

use crate::{Error, Result};

/// argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Default for HashParams {
    /// OWASP's recommendation: 19 MiB, 2 iterations, 1 lane.
    fn default() -> Self {
        Self {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
        }
    }
}

/// Hashes and verifies passwords.
#[derive(Debug, Clone)]
pub struct Hasher {
    params: HashParams,
    permits: Arc<Semaphore>,
    concurrency: usize,
    wait: Duration,
    /// Callers waiting for a slot.
    waiting: Arc<AtomicUsize>,
    /// A moving average of how long one hash takes, in microseconds (0: unknown yet).
    hash_micros: Arc<AtomicU64>,
    /// argon2 memory kept between hashes: at most one per slot.
    memory: Arc<Mutex<Vec<Vec<Block>>>>,
    /// A hash of a random password, verified when the account does not exist so
    /// that "unknown login" costs the same time as "wrong password".
    dummy: Arc<String>,
}

impl Hasher {
    /// A hasher running at most `concurrency` hashes at once; a caller waits at
    /// most `wait` for a slot before [`Error::Busy`].
    ///
    /// # Panics
    /// When `params` are outside argon2's bounds (a configuration bug caught at start).
    #[must_use]
    pub fn new(params: HashParams, concurrency: usize, wait: Duration) -> Self {
        let argon = argon(params);
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let dummy = argon
            .hash_password(dge_core::token::random_token().as_bytes(), &salt)
            .map(|h| h.to_string())
            .unwrap_or_else(|e| panic!("argon2 parameters rejected: {e}"));
        Self {
            params,
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            concurrency: concurrency.max(1),
            wait,
            waiting: Arc::new(AtomicUsize::new(0)),
            hash_micros: Arc::new(AtomicU64::new(0)),
            memory: Arc::new(Mutex::new(Vec::new())),
            dummy: Arc::new(dummy),
        }
    }

    /// Whether a newcomer behind `ahead` waiting callers would not get a slot
    /// within half the wait (see the module documentation).
    fn hopeless(&self, ahead: usize) -> bool {
        let per_hash = self.hash_micros.load(Ordering::Relaxed);
        let wait = u64::try_from(self.wait.as_micros() / 2).unwrap_or(u64::MAX);
        let rounds = (ahead / self.concurrency) as u64 + 1;
        per_hash > 0 && rounds.saturating_mul(per_hash) > wait
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Vec<Block>) -> T + Send + 'static,
    ) -> Result<T> {
        let queued = Queued::join(&self.waiting);
        if self.hopeless(queued.ahead) {
            return Err(Error::Busy);
        }
        let permit = tokio::time::timeout(self.wait, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| Error::Busy)?
            .map_err(|_| Error::Busy)?;
        drop(queued);
        let memory = self.memory.clone();
        let hash_micros = self.hash_micros.clone();
        let out = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let mut blocks = memory
                .lock()
                .ok()
                .and_then(|mut kept| kept.pop())
                .unwrap_or_default();
            let out = f(&mut blocks);
            if let Ok(mut kept) = memory.lock() {
                kept.push(blocks);
            }
            let took = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            let old = hash_micros.load(Ordering::Relaxed);
            let average = if old == 0 {
                took
            } else {
                old - old / 8 + took / 8
            };
            hash_micros.store(average, Ordering::Relaxed);
            drop(permit);
            out
        })
        .await
        .map_err(|_| Error::Hash)?;
        Ok(out)
    }

    /// Hashes a password into a PHC string.
    ///
    /// # Errors
    /// [`Error::Busy`] when saturated.
    pub async fn hash(&self, password: String) -> Result<String> {
        let params = self.params;
        self.run(move |blocks| {
            let salt = SaltString::generate(&mut rand::rngs::OsRng);
            let argon = argon(params);
            let output = compute(&argon, password.as_bytes(), salt.as_salt(), blocks)?;
            let phc = PasswordHash {
                algorithm: Algorithm::Argon2id.ident(),
                version: Some(Version::V0x13.into()),
                params: ParamsString::try_from(argon.params())?,
                salt: Some(salt.as_salt()),
                hash: Some(output),
            };
            Ok::<_, argon2::password_hash::Error>(phc.to_string())
        })
        .await?
        .map_err(|_| Error::Hash)
    }

    /// Whether `password` matches `phc`; with `None`, verifies against a dummy hash
    /// and answers `false`, taking the same time.
    ///
    /// # Errors
    /// [`Error::Busy`] when saturated.
    pub async fn verify(&self, password: String, phc: Option<String>) -> Result<bool> {
        let known = phc.is_some();
        let phc = phc.unwrap_or_else(|| (*self.dummy).clone());
        let ok = self
            .run(move |blocks| matches(password.as_bytes(), &phc, blocks))
            .await?;
        Ok(known && ok)
    }

    /// Whether a stored hash was made with other parameters and should be redone
    /// at the next successful login.
    #[must_use]
    pub fn needs_rehash(&self, phc: &str) -> bool {
        let Ok(hash) = PasswordHash::new(phc) else {
            return true;
        };
        let Ok(params) = Params::try_from(&hash) else {
            return true;
        };
        hash.algorithm.as_str() != "argon2id"
            || params.m_cost() != self.params.memory_kib
            || params.t_cost() != self.params.iterations
            || params.p_cost() != self.params.parallelism
    }
}

/// Waiting for a slot; leaving the queue when dropped.
struct Queued<'a> {
    waiting: &'a AtomicUsize,
    /// Callers that were already waiting.
    ahead: usize,
}

impl<'a> Queued<'a> {
    fn join(waiting: &'a AtomicUsize) -> Self {
        let ahead = waiting.fetch_add(1, Ordering::Relaxed);
        Self { waiting, ahead }
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

/// argon2 of `password` with `salt`, in `blocks` (grown when too small).
fn compute(
    argon: &Argon2<'_>,
    password: &[u8],
    salt: Salt<'_>,
    blocks: &mut Vec<Block>,
) -> argon2::password_hash::Result<Output> {
    let needed = argon.params().block_count();
    if blocks.len() < needed {
        *blocks = vec![Block::new(); needed];
    }
    let mut salt_buffer = [0_u8; 64];
    let salt = salt.decode_b64(&mut salt_buffer)?;
    let len = argon
        .params()
        .output_len()
        .unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    Output::init_with(len, |out| {
        argon
            .hash_password_into_with_memory(password, salt, out, &mut blocks[..needed])
            .map_err(Into::into)
    })
}

/// Whether `password` matches the PHC string `phc`, with the parameters it names,
/// as `PasswordVerifier::verify_password` decides but in reused memory. `Output`
/// compares in constant time.
fn matches(password: &[u8], phc: &str, blocks: &mut Vec<Block>) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else {
        return false;
    };
    let (Ok(algorithm), Ok(params)) =
        (Algorithm::try_from(hash.algorithm), Params::try_from(&hash))
    else {
        return false;
    };
    let version = match hash.version.map(Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    let argon = Argon2::new(algorithm, version, params);
    compute(&argon, password, salt, blocks).is_ok_and(|computed| computed == expected)
}

fn argon(params: HashParams) -> Argon2<'static> {
    let p = Params::new(
        params.memory_kib,
        params.iterations,
        params.parallelism,
        None,
    )
    .unwrap_or_else(|e| panic!("argon2 parameters rejected: {e}"));
    Argon2::new(Algorithm::Argon2id, Version::V0x13, p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_report_old_parameters() {
        let hasher = Hasher::new(HashParams::default(), 2, Duration::from_secs(5));
        let phc = hasher.hash("Correct-Horse-9".into()).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(
            hasher
                .verify("Correct-Horse-9".into(), Some(phc.clone()))
                .await
                .unwrap()
        );
        assert!(
            !hasher
                .verify("Wrong-Horse-9".into(), Some(phc.clone()))
                .await
                .unwrap()
        );
        assert!(!hasher.verify("Correct-Horse-9".into(), None).await.unwrap());
        assert!(!hasher.needs_rehash(&phc));
        let stronger = Hasher::new(
            HashParams {
                iterations: 3,
                ..HashParams::default()
            },
            1,
            Duration::from_secs(5),
        );
        assert!(stronger.needs_rehash(&phc));
    }

    #[tokio::test]
    async fn agrees_with_the_stock_argon2_verifier_and_reuses_its_memory() {
        use argon2::password_hash::PasswordVerifier;

        let hasher = Hasher::new(HashParams::default(), 2, Duration::from_secs(5));
        let ours = hasher.hash("Correct-Horse-9".into()).await.unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"Correct-Horse-9", &parsed)
                .is_ok()
        );
        assert!(
            Argon2::default()
                .verify_password(b"Correct-Horse-8", &parsed)
                .is_err()
        );
        // A hash made elsewhere, with other parameters (smaller memory, 3 passes).
        let other = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(8 * 1024, 3, 1, None).unwrap(),
        )
        .hash_password(
            b"Correct-Horse-9",
            &SaltString::generate(&mut rand::rngs::OsRng),
        )
        .unwrap()
        .to_string();
        assert!(
            hasher
                .verify("Correct-Horse-9".into(), Some(other.clone()))
                .await
                .unwrap()
        );
        assert!(
            !hasher
                .verify("Correct-Horse-8".into(), Some(other))
                .await
                .unwrap()
        );
        assert!(
            !hasher
                .verify("x".into(), Some("not a hash".into()))
                .await
                .unwrap()
        );
        for _ in 0..4 {
            assert!(
                hasher
                    .verify("Correct-Horse-9".into(), Some(ours.clone()))
                    .await
                    .unwrap()
            );
        }
        let kept = hasher.memory.lock().unwrap();
        assert!(
            !kept.is_empty() && kept.len() <= 2,
            "{} buffers kept",
            kept.len()
        );
        assert!(kept.iter().all(|b| b.len() == 19 * 1024));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_caller_that_cannot_be_served_in_time_is_refused_at_once() {
        // A hash is known to take about a second and the wait is 100 ms: with one
        // caller already queued, the next one gets Busy without waiting.
        let hasher = Hasher::new(HashParams::default(), 1, Duration::from_millis(100));
        hasher.hash_micros.store(1_000_000, Ordering::Relaxed);
        let queued = Queued::join(&hasher.waiting);
        let started = std::time::Instant::now();
        assert!(matches!(
            hasher.verify("Wrong-Horse-9".into(), None).await,
            Err(Error::Busy)
        ));
        assert!(started.elapsed() < Duration::from_millis(50));
        drop(queued);
        assert_eq!(hasher.waiting.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn only_callers_served_within_half_the_wait_are_admitted() {
        // 40 ms a hash, one slot, 100 ms of wait: alone, a caller is served in 40 ms;
        // behind one, in 80 ms, within the wait but not within its half, which keeps
        // the other half for a wrong estimate: refused at once.
        let hasher = Hasher::new(HashParams::default(), 1, Duration::from_millis(100));
        hasher.hash_micros.store(40_000, Ordering::Relaxed);
        assert!(!hasher.hopeless(0));
        assert!(hasher.hopeless(1));
        // Unknown hash time (no hash yet): nobody is refused by the estimate.
        hasher.hash_micros.store(0, Ordering::Relaxed);
        assert!(!hasher.hopeless(1000));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flood_of_logins_is_refused_fast_beyond_the_hash_permits() {
        // One permit, 20 ms of patience: of 8 simultaneous checks, most are refused
        // as Busy instead of queueing (each would hold 19 MiB).
        let hasher = Hasher::new(HashParams::default(), 1, Duration::from_millis(20));
        let started = std::time::Instant::now();
        let checks: Vec<_> = (0..8)
            .map(|_| {
                let h = hasher.clone();
                tokio::spawn(async move { h.verify("Wrong-Horse-9".into(), None).await })
            })
            .collect();
        let mut busy = 0;
        for check in checks {
            match check.await.unwrap() {
                Err(Error::Busy) => busy += 1,
                Ok(false) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(busy >= 4, "only {busy} of 8 refused");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
