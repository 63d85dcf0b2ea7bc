//! Brute-force throttling of password logins.
//!
//! Failures are counted per account and per client address in the shared
//! [`Ephemeral`] store (Redis when replicas run, so that every replica sees the same
//! counts). After a few free failures on an account each further one is answered
//! after a growing delay; `address_lock_after` failures from one address, on any
//! accounts, lock that address (password spraying); at `lock_after` failures the account is locked for `lock_secs`, and its
//! owner is emailed. A lock always expires by itself; an administrator can lift it
//! sooner ([`Registry::unlock`]).
//!
//! An address from which the account logged in successfully within
//! `known_address_secs` is "known" to it (the mark is written again only once less than
//! half of that time is left: an address stays known at least half of it after the
//! last login there), and each lock alone spares it:
//!
//! - the account lock does not stop the account's known addresses, so that an attacker
//!   elsewhere cannot keep the owner out;
//! - the address lock does not stop the accounts that know the address, so that the
//!   people behind one NAT (a town hall, a school) are not all locked out by one
//!   sprayer, or by a few dozen typos among them: the sprayer still gets nothing but
//!   the lock for every account never used from there, which is what spraying tries;
//! - both locks together stop even a known address: someone there is guessing this
//!   very account's password.
//!
//! Known accounts keep their own failure count and delays from a locked address.
//!
//! Wrong two-step codes have a counter and a lock of their own ([`CODES`]), with the
//! same delays, lock and email: the password lock never stops the code step, so the
//! owner at a known address still logs in while someone elsewhere guesses passwords,
//! and only a right code forgives wrong codes, however many passwords were right.
//!
//! An identifier that names no account is counted and locked the same way, so that
//! the answers never tell whether an account exists. Keys hold SHA-256 digests, never
//! an identifier or an address in clear.

use std::time::Duration;

use dge_core::token::hash_token;
use dge_core::{MaskedEmail, Secret};
use dge_store::ephemeral::{Ephemeral, mark_is_fresh, mark_until};
use serde_json::json;

use crate::service::{LoginError, LoginState};
use crate::{Account, AccountStatus, Registry, Result, store};

/// Settings of the login throttle, with defaults fit for production.
#[derive(Debug, Clone)]
pub struct ThrottleSettings {
    /// Failures answered at once, before delays start (3).
    pub free_failures: u64,
    /// The first delay; each further failure doubles it (500 ms).
    pub delay_base_ms: u64,
    /// The longest delay (4 s).
    pub delay_max_ms: u64,
    /// Failures on one account, within `window_secs`, that lock it (10).
    pub lock_after: u64,
    /// Failures from one address, within `window_secs`, that lock the address (50).
    pub address_lock_after: u64,
    /// How long failures are remembered (15 min).
    pub window_secs: u64,
    /// How long a lock lasts (15 min).
    pub lock_secs: u64,
    /// How long an address that logged in successfully stays known (30 days).
    pub known_address_secs: u64,
}

impl Default for ThrottleSettings {
    fn default() -> Self {
        Self {
            free_failures: 3,
            delay_base_ms: 500,
            delay_max_ms: 4000,
            lock_after: 10,
            address_lock_after: 50,
            window_secs: 900,
            lock_secs: 900,
            known_address_secs: 30 * 24 * 3600,
        }
    }
}

/// The throttle: shared counters and their settings.
#[derive(Debug, Clone)]
pub struct Throttle {
    pub(crate) store: Ephemeral,
    pub(crate) settings: ThrottleSettings,
}

impl Throttle {
    /// A throttle keeping its counters in `store`.
    #[must_use]
    pub fn new(store: Ephemeral, settings: ThrottleSettings) -> Self {
        Self { store, settings }
    }

    /// The delay before answering the `failures`-th failure.
    #[must_use]
    pub fn delay(&self, failures: u64) -> Duration {
        let s = &self.settings;
        let Some(extra) = failures.checked_sub(s.free_failures).filter(|e| *e > 0) else {
            return Duration::ZERO;
        };
        let factor = 1_u64.checked_shl(u32::try_from(extra - 1).unwrap_or(63).min(20));
        let ms = factor
            .map_or(u64::MAX, |f| s.delay_base_ms.saturating_mul(f))
            .min(s.delay_max_ms);
        Duration::from_millis(ms)
    }
}

/// The account's password failures (login, current-password checks).
pub(crate) const PASSWORDS: &str = "acct";

/// The account's wrong two-step codes: a counter and a lock of their own. Password
/// guesses from elsewhere then never lock the owner out of the code step (their known
/// address spares them at the password step), and a right password, which only
/// opens the code step, never forgives wrong codes: only a right code does.
pub(crate) const CODES: &str = "code";

fn fail_key(kind: &str, subject: &str) -> String {
    format!("login:fail:{kind}:{subject}")
}

fn lock_key(kind: &str, subject: &str) -> String {
    format!("login:lock:{kind}:{subject}")
}

fn known_key(account: &str, address: &str) -> String {
    format!("login:known:{account}:{address}")
}

/// The counter subject of an identifier: the account id when it names an account
/// (so that login and email share one count), else a digest of the identifier.
fn account_subject(found: Option<&str>, identifier: &str) -> String {
    found.map_or_else(
        || {
            format!(
                "unknown-{}",
                hash_token(&crate::domain::signup::lookup_key(identifier))
            )
        },
        hash_token,
    )
}

impl Registry {
    /// The same registry with a login throttle keeping its counters in `store`.
    #[must_use]
    pub fn with_throttle(mut self, store: Ephemeral, settings: ThrottleSettings) -> Self {
        self.throttle = std::sync::Arc::new(Throttle::new(store, settings));
        self
    }

    /// The login throttle in force.
    #[must_use]
    pub fn throttle(&self) -> &Throttle {
        &self.throttle
    }

    /// A password login from `address` (the client's IP address), throttled: see the
    /// module documentation. Every outcome is written to the audit log.
    ///
    /// # Errors
    /// [`crate::Error::Busy`] when hashing is saturated; storage or Redis errors.
    pub async fn login(
        &self,
        identifier: &str,
        password: &Secret<String>,
        address: &str,
    ) -> Result<Result<Account, LoginError>> {
        Ok(self
            .login_with_state(identifier, password, address)
            .await?
            .map(|state| state.account))
    }

    /// [`Self::login`], answering with what the rest of the login needs, read with
    /// the account ([`LoginState`]): the pages open the session and issue the code
    /// without reading the account again.
    ///
    /// # Errors
    /// As [`Self::login`].
    pub async fn login_with_state(
        &self,
        identifier: &str,
        password: &Secret<String>,
        address: &str,
    ) -> Result<Result<LoginState, LoginError>> {
        let t = &*self.throttle;
        let credentials = store::credentials(&self.db, identifier).await?;
        let found = credentials.as_ref().map(|c| c.id.clone());
        let subject = account_subject(found.as_deref(), identifier);
        let addr = hash_token(address);
        let detail = format!("address={address}");
        let actor = found.clone().unwrap_or_default();

        // One round trip for the markers and the account's failures (Redis in
        // production): a right password then writes nothing more to the store unless
        // there are failures to forgive or the known mark is half-way to its expiry.
        let markers = t
            .store
            .get_many(&[
                &known_key(&subject, &addr),
                &lock_key(PASSWORDS, &subject),
                &lock_key("addr", &addr),
                &fail_key(PASSWORDS, &subject),
            ])
            .await?;
        let set = |i: usize| markers.get(i).is_some_and(Option::is_some);
        let (known, account_locked, address_locked, failed) = (set(0), set(1), set(2), set(3));
        let known_fresh = mark_is_fresh(
            markers.first().and_then(Option::as_deref),
            self.clock.now(),
            t.settings.known_address_secs,
        );
        // See the module documentation: each lock alone spares a known address.
        let refused = match (address_locked, account_locked) {
            (false, false) => false,
            (true, true) => true,
            _ => !known,
        };
        if refused {
            self.audit_login(&actor, "login.refused_locked", &detail)
                .await?;
            return Ok(Err(LoginError::Locked));
        }

        let outcome = self.check_found_password(credentials, password).await?;
        match &outcome {
            Ok(LoginState { account, .. }) => {
                // The account's failures are forgiven; the address's are not, or an
                // attacker with an account of their own could clear them between guesses
                // at others'.
                // A failure counted between the read above and here stays counted.
                if failed || account_locked {
                    t.store
                        .forget_many(&[
                            &fail_key(PASSWORDS, &subject),
                            &lock_key(PASSWORDS, &subject),
                        ])
                        .await?;
                }
                if !known_fresh {
                    t.store
                        .put(
                            &known_key(&subject, &addr),
                            &mark_until(self.clock.now(), t.settings.known_address_secs),
                            Duration::from_secs(t.settings.known_address_secs),
                        )
                        .await?;
                }
                self.audit_login(&account.id, "login.succeeded", &detail)
                    .await?;
            }
            Err(LoginError::NotActive(status)) => {
                let detail = format!("{detail} status={}", status.as_str());
                self.audit_login(&actor, "login.refused_inactive", &detail)
                    .await?;
            }
            Err(LoginError::BadCredentials | LoginError::Locked) => {
                let window = Duration::from_secs(t.settings.window_secs);
                let failures = t.store.hit(&fail_key(PASSWORDS, &subject), window).await?;
                let from_address = t.store.hit(&fail_key("addr", &addr), window).await?;
                self.audit_login(&actor, "login.failed", &detail).await?;
                let lock = Duration::from_secs(t.settings.lock_secs);
                let address_now_locked =
                    address_locked || from_address >= t.settings.address_lock_after;
                if from_address >= t.settings.address_lock_after {
                    t.store.put(&lock_key("addr", &addr), "1", lock).await?;
                    t.store.forget(&fail_key("addr", &addr)).await?;
                    tracing::warn!("client address locked after repeated login failures");
                }
                if failures >= t.settings.lock_after {
                    // Failures from a known address go on while the account is locked
                    // (the lock spares it), and each one sets the lock again: it ends
                    // `lock_secs` after the last of them.
                    t.store
                        .put(&lock_key(PASSWORDS, &subject), "1", lock)
                        .await?;
                    // The owner is told of the lock once, not at each failure after it.
                    if !account_locked {
                        self.audit_login(&actor, "login.locked", &detail).await?;
                        if let Some(id) = &found {
                            self.email_lock(PASSWORDS, id).await?;
                        }
                    }
                    // The count starts again once the lock is over.
                    t.store.forget(&fail_key(PASSWORDS, &subject)).await?;
                    // The lock message only where the lock applies: a known address is
                    // told of a wrong password, as the next try there is not refused.
                    if !known || address_now_locked {
                        return Ok(Err(LoginError::Locked));
                    }
                }
                // Delays follow the account's count: the address's only locks, at a
                // higher count, so that people behind one shared address are not all
                // slowed by one another's typos. While the account is locked, the
                // failures a known address may still make there get the longest
                // delay, wherever the lock was earned: the count started again at the
                // lock would give a guesser there free tries and short delays.
                let delay = if account_locked {
                    Duration::from_millis(t.settings.delay_max_ms)
                } else {
                    t.delay(failures)
                };
                tokio::time::sleep(delay).await;
            }
        }
        Ok(outcome)
    }

    /// Whether password checks of this account are locked (too many failures).
    pub(crate) async fn account_locked(&self, account_id: &str) -> Result<bool> {
        self.locked_as(PASSWORDS, account_id).await
    }

    /// Whether the `kind` counter of this account ([`PASSWORDS`], [`CODES`]) is locked.
    pub(crate) async fn locked_as(&self, kind: &str, account_id: &str) -> Result<bool> {
        let subject = account_subject(Some(account_id), account_id);
        Ok(self
            .throttle
            .store
            .get(&lock_key(kind, &subject))
            .await?
            .is_some())
    }

    /// Forgets the account's `kind` failures after a right password or code. Best
    /// effort: callers have often committed by then (a code used up, an enrolment),
    /// and failures left counted only expire with their window.
    pub(crate) async fn forgive_failures(&self, kind: &str, account_id: &str) {
        let subject = account_subject(Some(account_id), account_id);
        if let Err(e) = self.throttle.store.forget(&fail_key(kind, &subject)).await {
            tracing::warn!(error = %dge_core::ErrorChain(&e), kind, "failures not forgiven");
        }
    }

    /// Lifts the account's password lock and forgets its password failures after a
    /// completed password reset, which proves control of the address the lock email
    /// went to: the new password then works at once, from anywhere. The address
    /// counts and locks (spraying) stay, and so does the two-step code lock, which a
    /// reset does not answer. Best effort, as the reset has committed: a lock left in
    /// place only expires by itself.
    pub(crate) async fn lift_password_lock(&self, account_id: &str) {
        let subject = account_subject(Some(account_id), account_id);
        let keys = [fail_key(PASSWORDS, &subject), lock_key(PASSWORDS, &subject)];
        if let Err(e) = self.throttle.store.forget_many(&[&keys[0], &keys[1]]).await {
            tracing::warn!(error = %dge_core::ErrorChain(&e), "password lock not lifted after a reset");
        }
    }

    /// Counts a wrong current password on the account's login counter (the one
    /// [`Self::login`] uses): waits the same growing delay, and locks the account at
    /// `lock_after`, emailing its owner. Returns whether it is now locked.
    pub(crate) async fn count_failure(&self, account_id: &str) -> Result<bool> {
        self.count_failure_as(PASSWORDS, account_id, "password_check.failed")
            .await
    }

    /// [`Self::count_failure`] on the `kind` counter, audited as `action`: the same
    /// delays, lock and email for wrong two-step codes ([`CODES`]).
    pub(crate) async fn count_failure_as(
        &self,
        kind: &str,
        account_id: &str,
        action: &str,
    ) -> Result<bool> {
        let t = &*self.throttle;
        let subject = account_subject(Some(account_id), account_id);
        let window = Duration::from_secs(t.settings.window_secs);
        let failures = t.store.hit(&fail_key(kind, &subject), window).await?;
        self.audit_login(account_id, action, "").await?;
        if failures >= t.settings.lock_after {
            let lock = Duration::from_secs(t.settings.lock_secs);
            t.store.put(&lock_key(kind, &subject), "1", lock).await?;
            t.store.forget(&fail_key(kind, &subject)).await?;
            self.audit_login(account_id, "login.locked", "").await?;
            self.email_lock(kind, account_id).await?;
            return Ok(true);
        }
        tokio::time::sleep(t.delay(failures)).await;
        Ok(false)
    }

    /// Lifts the login lock of the account named by `key` (login, email or id) and
    /// forgets its failures. Returns the account, or `None` when `key` names none.
    ///
    /// # Errors
    /// Storage or Redis errors.
    pub async fn unlock(&self, key: &str, actor: &str) -> Result<Option<Account>> {
        let Some(account) = store::find_account(&self.db, key).await? else {
            return Ok(None);
        };
        let subject = account_subject(Some(&account.id), key);
        for kind in [PASSWORDS, CODES] {
            self.throttle
                .store
                .forget(&lock_key(kind, &subject))
                .await?;
            self.throttle
                .store
                .forget(&fail_key(kind, &subject))
                .await?;
        }
        let mut conn = self.db.pool().acquire().await?;
        dge_store::audit(
            &mut conn,
            actor,
            "account.unlocked",
            &account.id,
            "",
            self.clock.now(),
        )
        .await?;
        tracing::info!(account_id = %account.id, "login lock lifted by an administrator");
        Ok(Some(account))
    }

    /// Writes one audit event (an authentication outcome from another path, such as
    /// a login through an upstream provider).
    ///
    /// # Errors
    /// Storage errors.
    pub async fn record(
        &self,
        actor: &str,
        action: &str,
        subject: &str,
        detail: &str,
    ) -> Result<()> {
        let mut conn = self.db.pool().acquire().await?;
        dge_store::audit(&mut conn, actor, action, subject, detail, self.clock.now()).await?;
        Ok(())
    }

    /// Records a login refused because the account is not active on a path past the
    /// password form (the two-step code, the end of an upstream login), as the form
    /// does: `login.refused_inactive`, with the first step (`via`: `password` or the
    /// upstream's name) and the status in the detail.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn audit_refused_inactive(
        &self,
        account_id: &str,
        via: &str,
        status: AccountStatus,
    ) -> Result<()> {
        let detail = format!("via={via} status={}", status.as_str());
        self.audit_login(account_id, "login.refused_inactive", &detail)
            .await
    }

    async fn audit_login(&self, actor: &str, action: &str, detail: &str) -> Result<()> {
        dge_store::audit_grouped(&self.db, actor, action, actor, detail, self.clock.now()).await?;
        Ok(())
    }

    /// Tells the owner of a lock: of wrong passwords, or (`kind` [`CODES`]) of wrong
    /// two-step codes after the right password, which means someone else may hold it.
    async fn email_lock(&self, kind: &str, account_id: &str) -> Result<()> {
        let Some(account) = store::find_account(&self.db, account_id).await? else {
            return Ok(());
        };
        let mail = if kind == CODES {
            "account_code_locked"
        } else {
            "account_locked"
        };
        let mut tx = self.db.begin().await?;
        self.outbox
            .enqueue(
                &mut tx,
                mail,
                &account.email,
                &account.given_name,
                json!({
                    "lock_minutes": self.throttle.settings.lock_secs.div_ceil(60),
                    "reset_url": format!("{}/password/forgot", self.settings.public_url),
                }),
                self.clock.now(),
            )
            .await?;
        tx.commit().await?;
        self.outbox.wake();
        tracing::warn!(
            account_id = %account.id,
            email = %MaskedEmail(&account.email),
            kind,
            "account locked after repeated login failures; owner emailed"
        );
        Ok(())
    }
}
