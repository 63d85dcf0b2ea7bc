//! Password hashing with argon2id.
//!
//! Hashing is CPU-bound and deliberately slow, so it runs on the blocking pool,
//! never on an async worker, and a semaphore bounds how many run at once: a flood
//! of logins waits briefly, then is refused, instead of exhausting memory
//! (each hash holds 19 MiB).

use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
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
    wait: Duration,
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
            wait,
            dummy: Arc::new(dummy),
        }
    }

    async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        let permit = tokio::time::timeout(self.wait, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| Error::Busy)?
            .map_err(|_| Error::Busy)?;
        let out = tokio::task::spawn_blocking(move || {
            let out = f();
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
        self.run(move || {
            let salt = SaltString::generate(&mut rand::rngs::OsRng);
            argon(params)
                .hash_password(password.as_bytes(), &salt)
                .map(|h| h.to_string())
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
            .run(move || {
                PasswordHash::new(&phc)
                    .map(|h| {
                        Argon2::default()
                            .verify_password(password.as_bytes(), &h)
                            .is_ok()
                    })
                    .unwrap_or(false)
            })
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
