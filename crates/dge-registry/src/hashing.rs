//! Password hashing with argon2id.
//!
//! Hashing is CPU-bound and deliberately slow, so it runs on threads of its own,
//! never on an async worker: `concurrency` of them, each taking the next waiting
//! hash as soon as it is done with one. A caller waits at most `wait` for a thread
//! to take its hash, then is refused, instead of queueing without limit (each hash
//! holds 19 MiB). A caller that could not be taken within half the wait, judging by
//! the queue ahead of it and the time a hash takes, is refused at once; the other
//! half is the margin for that estimate, which lags when the load changes, so that
//! an admitted caller is seldom refused after waiting.
//!
//! The threads are the pool's own rather than tokio's blocking pool: a thread that
//! finishes a hash starts the next one at once, where handing a permit back to an
//! async task that then spawns a blocking job cost two thread wake-ups per hash and
//! left the core idle in between (docs/performance.md, run 25). Each thread keeps
//! its 19 MiB and reuses them for its next hash instead of allocating them every
//! time: the allocator would otherwise keep such blocks in every thread's arena, and
//! the process grew by hundreds of MiB under logins.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use argon2::password_hash::{Output, ParamsString, PasswordHash, PasswordHasher, Salt, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::oneshot;

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
    concurrency: usize,
    wait: Duration,
    /// The hashing threads' queue; they stop when the last clone is dropped.
    pool: Arc<PoolHandle>,
    /// A hash of a random password, verified when the account does not exist so
    /// that "unknown login" costs the same time as "wrong password".
    dummy: Arc<String>,
}

/// What the hashing threads share with the callers.
#[derive(Default)]
struct Pool {
    queue: Mutex<Queue>,
    /// Signalled when a job is queued or the pool closes.
    filled: Condvar,
    /// Callers whose job no thread has taken yet.
    waiting: AtomicUsize,
    /// A moving average of how long one hash takes, in microseconds (0: unknown yet).
    hash_micros: AtomicU64,
    /// argon2 memory areas allocated, one at most per thread.
    buffers: AtomicUsize,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("waiting", &self.waiting)
            .field("hash_micros", &self.hash_micros)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    closed: bool,
}

/// What a hashing thread runs, in its own argon2 memory.
type Work = Box<dyn FnOnce(&mut Vec<Block>) + Send>;

/// A hash waiting for a thread.
struct Job {
    state: Arc<AtomicU8>,
    work: Work,
}

/// A job's states: only one of the thread and the caller moves it out of `QUEUED`.
const QUEUED: u8 = 0;
const TAKEN: u8 = 1;
const ABANDONED: u8 = 2;

/// Closes the pool when the last [`Hasher`] clone goes.
#[derive(Debug)]
struct PoolHandle(Arc<Pool>);

impl Drop for PoolHandle {
    fn drop(&mut self) {
        let mut queue = self.0.queue.lock().unwrap_or_else(PoisonError::into_inner);
        queue.closed = true;
        queue.jobs.clear();
        drop(queue);
        self.0.filled.notify_all();
    }
}

impl Pool {
    /// One hashing thread: takes jobs until the pool closes.
    fn serve(&self) {
        let mut blocks = Vec::new();
        loop {
            let job = {
                let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
                loop {
                    if let Some(job) = queue.jobs.pop_front() {
                        break job;
                    }
                    if queue.closed {
                        return;
                    }
                    queue = self
                        .filled
                        .wait(queue)
                        .unwrap_or_else(PoisonError::into_inner);
                }
            };
            if job
                .state
                .compare_exchange(QUEUED, TAKEN, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                // Its caller gave up (timed out or went away).
                continue;
            }
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            let allocated = blocks.capacity() > 0;
            let started = Instant::now();
            // A panic drops the job's sender, so its caller gets `Error::Hash`, and
            // this thread goes on with the next job.
            let _ = std::panic::catch_unwind(AssertUnwindSafe(|| (job.work)(&mut blocks)));
            if !allocated && blocks.capacity() > 0 {
                self.buffers.fetch_add(1, Ordering::Relaxed);
            }
            let took = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            let old = self.hash_micros.load(Ordering::Relaxed);
            let average = if old == 0 {
                took
            } else {
                old - old / 8 + took / 8
            };
            self.hash_micros.store(average, Ordering::Relaxed);
        }
    }
}

/// A caller's place in the queue: withdrawn when dropped before a thread took it.
struct Ticket<'a> {
    state: Arc<AtomicU8>,
    waiting: &'a AtomicUsize,
}

impl Ticket<'_> {
    /// Withdraws the job; `false` when a thread already took it.
    fn withdraw(&self) -> bool {
        let withdrawn = self
            .state
            .compare_exchange(QUEUED, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if withdrawn {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
        }
        withdrawn
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        self.withdraw();
    }
}

impl Hasher {
    /// A hasher running at most `concurrency` hashes at once; a caller waits at
    /// most `wait` for a slot before [`Error::Busy`].
    ///
    /// # Panics
    /// When `params` are outside argon2's bounds (a configuration bug caught at start),
    /// or when the system refuses a thread.
    #[must_use]
    pub fn new(params: HashParams, concurrency: usize, wait: Duration) -> Self {
        let argon = argon(params);
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let dummy = argon
            .hash_password(dge_core::token::random_token().as_bytes(), &salt)
            .map(|h| h.to_string())
            .unwrap_or_else(|e| panic!("argon2 parameters rejected: {e}"));
        let concurrency = concurrency.max(1);
        // Made first: if a thread cannot be started, its drop in the panic stops
        // those already running.
        let handle = PoolHandle(Arc::new(Pool::default()));
        for n in 0..concurrency {
            let pool = handle.0.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{n}"))
                .spawn(move || pool.serve())
                .unwrap_or_else(|e| panic!("no hashing thread: {e}"));
        }
        Self {
            params,
            concurrency,
            wait,
            pool: Arc::new(handle),
            dummy: Arc::new(dummy),
        }
    }

    /// Whether a newcomer behind `ahead` waiting callers would not be taken
    /// within half the wait (see the module documentation).
    fn hopeless(&self, ahead: usize) -> bool {
        let per_hash = self.pool.0.hash_micros.load(Ordering::Relaxed);
        let wait = u64::try_from(self.wait.as_micros() / 2).unwrap_or(u64::MAX);
        let rounds = (ahead / self.concurrency) as u64 + 1;
        per_hash > 0 && rounds.saturating_mul(per_hash) > wait
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Vec<Block>) -> T + Send + 'static,
    ) -> Result<T> {
        let pool = &self.pool.0;
        let ahead = pool.waiting.fetch_add(1, Ordering::Relaxed);
        let ticket = Ticket {
            state: Arc::new(AtomicU8::new(QUEUED)),
            waiting: &pool.waiting,
        };
        if self.hopeless(ahead) {
            return Err(Error::Busy);
        }
        let (tx, mut rx) = oneshot::channel();
        let job = Job {
            state: ticket.state.clone(),
            work: Box::new(move |blocks| {
                // The caller may have gone: nobody to tell.
                let _ = tx.send(f(blocks));
            }),
        };
        pool.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .jobs
            .push_back(job);
        pool.filled.notify_one();
        match tokio::time::timeout(self.wait, &mut rx).await {
            Ok(out) => out.map_err(|_| Error::Hash),
            Err(_) if ticket.withdraw() => Err(Error::Busy),
            // Taken just as the wait ran out: its result is on the way.
            Err(_) => rx.await.map_err(|_| Error::Hash),
        }
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
/// as `PasswordVerifier::verify_password` decides but in reused memory `blocks`
/// (grown when too small). `Output` compares in constant time. Public for the
/// benchmark's ceiling, which hashes as the server does.
pub fn matches(password: &[u8], phc: &str, blocks: &mut Vec<Block>) -> bool {
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
        // Eight hashes on two threads: one or two memory areas, each reused.
        let buffers = hasher.pool.0.buffers.load(Ordering::Relaxed);
        assert!((1..=2).contains(&buffers), "{buffers} buffers allocated");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_caller_that_cannot_be_served_in_time_is_refused_at_once() {
        // A hash is known to take 40 ms and the wait is 100 ms: behind one caller
        // already waiting (simulated), a newcomer would be served in 80 ms, beyond
        // half the wait: Busy at once, and nothing of it stays queued.
        let hasher = Hasher::new(HashParams::default(), 1, Duration::from_millis(100));
        let pool = &hasher.pool.0;
        pool.hash_micros.store(40_000, Ordering::Relaxed);
        pool.waiting.fetch_add(1, Ordering::Relaxed);
        let started = std::time::Instant::now();
        assert!(matches!(
            hasher.verify("Wrong-Horse-9".into(), None).await,
            Err(Error::Busy)
        ));
        assert!(started.elapsed() < Duration::from_millis(50));
        assert!(pool.queue.lock().unwrap().jobs.is_empty());
        assert_eq!(pool.waiting.load(Ordering::Relaxed), 1);
        // Alone, the same caller is admitted and served.
        pool.waiting.fetch_sub(1, Ordering::Relaxed);
        let served = hasher.verify("Wrong-Horse-9".into(), None).await;
        assert!(matches!(served, Ok(false)), "{served:?}");
        assert_eq!(pool.waiting.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn only_callers_served_within_half_the_wait_are_admitted() {
        // 40 ms a hash, one slot, 100 ms of wait: alone, a caller is served in 40 ms;
        // behind one, in 80 ms, within the wait but not within its half, which keeps
        // the other half for a wrong estimate: refused at once.
        let hasher = Hasher::new(HashParams::default(), 1, Duration::from_millis(100));
        hasher.pool.0.hash_micros.store(40_000, Ordering::Relaxed);
        assert!(!hasher.hopeless(0));
        assert!(hasher.hopeless(1));
        // Unknown hash time (no hash yet): nobody is refused by the estimate.
        hasher.pool.0.hash_micros.store(0, Ordering::Relaxed);
        assert!(!hasher.hopeless(1000));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flood_of_logins_is_refused_fast_beyond_the_hashing_threads() {
        // One thread, 20 ms of patience: of 8 simultaneous checks, most are refused
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_job_whose_caller_gave_up_is_never_run() {
        use std::sync::atomic::AtomicBool;

        // The only thread is held by a first job until released; a second caller,
        // with 50 ms of patience, is refused, and its job is skipped when the thread
        // gets to it; a third is served after.
        let hasher = Hasher::new(HashParams::default(), 1, Duration::from_millis(50));
        let patient = Hasher {
            wait: Duration::from_secs(30),
            ..hasher.clone()
        };
        let (started, on_thread) = oneshot::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let busy = {
            let h = patient.clone();
            tokio::spawn(async move {
                h.run(move |_| {
                    let _ = started.send(());
                    let _ = released.recv();
                })
                .await
            })
        };
        on_thread.await.unwrap();
        let ran = Arc::new(AtomicBool::new(false));
        let flag = ran.clone();
        let refused = hasher
            .run(move |_| flag.store(true, Ordering::SeqCst))
            .await;
        assert!(matches!(refused, Err(Error::Busy)), "{refused:?}");
        assert_eq!(hasher.pool.0.waiting.load(Ordering::Relaxed), 0);
        release.send(()).unwrap();
        assert!(busy.await.unwrap().is_ok());
        assert_eq!(patient.run(|_| 7).await.unwrap(), 7);
        assert!(!ran.load(Ordering::SeqCst), "a withdrawn job ran");
    }

    #[tokio::test]
    async fn a_panicking_job_fails_its_caller_and_spares_the_thread() {
        let hasher = Hasher::new(HashParams::default(), 1, Duration::from_secs(5));
        let failed = hasher.run(|_| -> u8 { panic!("boom") }).await;
        assert!(matches!(failed, Err(Error::Hash)), "{failed:?}");
        // The only thread still serves.
        assert_eq!(hasher.run(|_| 3).await.unwrap(), 3);
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // a plain test thread, no runtime to block
    fn the_threads_stop_with_the_last_hasher() {
        let hasher = Hasher::new(HashParams::default(), 2, Duration::from_secs(5));
        let pool = Arc::downgrade(&hasher.pool.0);
        let copy = hasher.clone();
        drop(hasher);
        assert!(pool.upgrade().is_some(), "a clone still uses it");
        drop(copy);
        // Each thread holds the pool until it has seen the close.
        let deadline = Instant::now() + Duration::from_secs(5);
        while pool.upgrade().is_some() {
            assert!(Instant::now() < deadline, "hashing threads still running");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
