//! Sign-up, email confirmation and the password check at login.

use std::sync::Arc;

use dge_core::token::{hash_token, random_token};
use dge_core::{Clock, MaskedEmail, Secret, Violations};
use dge_mailer::Outbox;
use dge_store::Db;
use serde_json::json;
use sqlx::{AnyConnection, Row};

use crate::domain::signup::ValidSignUp;
use crate::domain::{Account, AccountStatus, SignUpForm};
use crate::{Error, Hasher, Result, store};

/// The right the trusted path grants at once: access to the community space.
pub const TRUSTED_PATH_RIGHT: &str = "communautes:member";

/// Settings of the registry.
#[derive(Debug, Clone)]
pub struct RegistrySettings {
    /// The provider's public URL, for links in emails.
    pub public_url: String,
    /// How long a confirmation link is valid.
    pub confirmation_ttl_secs: i64,
}

/// Why a login was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum LoginError {
    /// Unknown identifier or wrong password: the two are never told apart.
    BadCredentials,
    /// The password is right but the account cannot log in yet (or any more).
    NotActive(AccountStatus),
    /// Too many failures: password logins for this identifier, or from this address,
    /// are suspended for a while. Told the same whether the account exists or not.
    Locked,
}

/// An account whose password was just found right, with what the rest of its login
/// needs: whether a second step follows (read with the account after the hash, so
/// that a change made while it ran is seen), and the `sessions_epoch` that its
/// session and authorization code record (read with the credentials, before the
/// hash, so that a reset committed while it ran ends them).
#[derive(Debug, Clone)]
pub struct LoginState {
    /// The account.
    pub account: Account,
    /// Its two-step verification.
    pub mfa: crate::mfa::MfaState,
    /// Its `sessions_epoch` ([`dge_store::sessions::account_epoch`]) before the hash.
    pub sessions_epoch: i64,
}

/// Lifetimes and limits of the account life cycle, with sensible defaults; set with
/// [`Registry::with_lifetimes`].
#[derive(Debug, Clone)]
pub struct AccountLifetimes {
    /// How long a password-reset link is valid (1 h).
    pub reset_ttl_secs: i64,
    /// At most this many reset emails per account per hour; more are dropped silently.
    pub reset_max_per_hour: i64,
    /// How long an unconfirmed sign-up is kept before it is purged (7 days).
    pub unconfirmed_ttl_secs: i64,
    /// Least time between two confirmation emails for one sign-up (60 s).
    pub resend_interval_secs: i64,
    /// At most this many confirmation emails per sign-up per day.
    pub resend_max_per_day: i64,
    /// How long an email-change link is valid (48 h).
    pub email_change_ttl_secs: i64,
    /// At most this many "someone tried to sign up with your address" notices per
    /// address per `signup_notice_window_secs` (1).
    pub signup_notice_max: i64,
    /// The window of `signup_notice_max` (1 h).
    pub signup_notice_window_secs: i64,
    /// At most this many sign-ups filed from one client address (an IPv6 address
    /// counts by its /64) per `signups_per_address_window_secs` (10): each sends an
    /// email to a typed address.
    pub signups_per_address_max: i64,
    /// The window of `signups_per_address_max` (1 h).
    pub signups_per_address_window_secs: i64,
}

impl Default for AccountLifetimes {
    fn default() -> Self {
        Self {
            reset_ttl_secs: 3600,
            reset_max_per_hour: 5,
            unconfirmed_ttl_secs: 7 * 24 * 3600,
            resend_interval_secs: 60,
            resend_max_per_day: 5,
            email_change_ttl_secs: 48 * 3600,
            signup_notice_max: 1,
            signup_notice_window_secs: 3600,
            signups_per_address_max: 10,
            signups_per_address_window_secs: 3600,
        }
    }
}

/// The local-account registry.
#[derive(Clone)]
pub struct Registry {
    pub(crate) db: Db,
    pub(crate) hasher: Hasher,
    pub(crate) outbox: Outbox,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) settings: Arc<RegistrySettings>,
    pub(crate) lifetimes: Arc<AccountLifetimes>,
    pub(crate) throttle: Arc<crate::throttle::Throttle>,
    /// The single sign-on sessions, to list them and forget ended ones.
    pub(crate) sessions: dge_store::sessions::Sessions,
    /// Seals two-step secrets at rest (see [`crate::mfa`]).
    pub(crate) mfa_key: Option<Arc<dge_authz::keys::KeyEncryptionKey>>,
    /// Told of the sessions an account change ended (back-channel logout).
    pub(crate) sessions_ended: Option<Arc<dyn dge_store::sessions::SessionsEnded>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// A registry over `db`.
    #[must_use]
    pub fn new(
        db: Db,
        hasher: Hasher,
        outbox: Outbox,
        clock: Arc<dyn Clock>,
        settings: RegistrySettings,
    ) -> Self {
        Self {
            sessions: dge_store::sessions::Sessions::database(db.clone()),
            db,
            hasher,
            outbox,
            clock,
            settings: Arc::new(settings),
            lifetimes: Arc::new(AccountLifetimes::default()),
            throttle: Arc::new(crate::throttle::Throttle::new(
                dge_store::ephemeral::Ephemeral::local("dge:"),
                crate::throttle::ThrottleSettings::default(),
            )),
            mfa_key: None,
            sessions_ended: None,
        }
    }

    /// The same registry with the provider's session store (Redis when shared), so
    /// that an account's data export lists its sessions and ended ones are deleted.
    #[must_use]
    pub fn with_sessions(mut self, sessions: dge_store::sessions::Sessions) -> Self {
        self.sessions = sessions;
        self
    }

    /// The same registry telling `hook` (the OpenID Connect provider) of the sessions
    /// that account changes end, so that their modules get a back-channel logout.
    #[must_use]
    pub fn with_sessions_ended(
        mut self,
        hook: Arc<dyn dge_store::sessions::SessionsEnded>,
    ) -> Self {
        self.sessions_ended = Some(hook);
        self
    }

    /// The same registry with other lifetimes and limits.
    #[must_use]
    pub fn with_lifetimes(mut self, lifetimes: AccountLifetimes) -> Self {
        self.lifetimes = Arc::new(lifetimes);
        self
    }

    /// The lifetimes and limits in force.
    #[must_use]
    pub fn lifetimes(&self) -> &AccountLifetimes {
        &self.lifetimes
    }

    /// The provider's public URL.
    #[must_use]
    pub fn public_url(&self) -> &str {
        &self.settings.public_url
    }

    /// The database.
    #[must_use]
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The outbox, for services that email people.
    #[must_use]
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// The current time.
    #[must_use]
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// Files a sign-up: the account, its proposed organisation and its confirmation
    /// email in one transaction. When the address already belongs to someone, the
    /// answer is the same and the owner is emailed instead (no account enumeration).
    ///
    /// # Errors
    /// [`Error::Invalid`] with every broken rule; storage errors.
    pub async fn sign_up(&self, form: &SignUpForm) -> Result<()> {
        self.file_sign_up(form, None).await
    }

    /// [`Self::sign_up`] from the sign-up page, sent from the client address
    /// `address`: at most `signups_per_address_max` forms that pass the checks are
    /// filed from one address per window (counted in the shared store, so across
    /// replicas); a form with errors counts nothing, so a person correcting it is not
    /// held back.
    ///
    /// # Errors
    /// [`Error::TooManySignUps`] over the limit, with nothing filed; as
    /// [`Self::sign_up`] otherwise.
    pub async fn sign_up_from(&self, form: &SignUpForm, address: &str) -> Result<()> {
        self.file_sign_up(form, Some(address)).await
    }

    async fn file_sign_up(&self, form: &SignUpForm, address: Option<&str>) -> Result<()> {
        let valid = form.validate().map_err(Error::Invalid)?;
        // The cheap checks first, so that a form with errors costs no argon2 run; then
        // the hash outside the transaction, which on SQLite holds the write lock: a
        // hash (and its wait for a slot) inside it stalled every other writer, and
        // concurrent sign-ups ended in "database is locked". The checks run again in
        // the transaction, for sign-ups racing for the same login.
        self.sign_up_conflicts(&mut *self.db.pool().acquire().await?, &valid)
            .await?;
        if let Some(address) = address {
            self.count_sign_up_from(address).await?;
        }
        let phc = self.hasher.hash(valid.password.expose().clone()).await?;
        let mut tx = self.db.begin().await?;
        // A fresh sign-up writes `accounts`, one with an address in use
        // `login_reservations`, and no constraint spans both: two of them racing for one
        // login take turns on it. SQLite's write lock, taken at `BEGIN`, already does.
        if self.db.backend() == dge_store::Backend::Postgres {
            sqlx::query("SELECT 1 AS locked FROM (SELECT pg_advisory_xact_lock(hashtextextended($1, 0))) AS l")
                .bind(&valid.login_key)
                .fetch_one(&mut *tx)
                .await?;
        }
        self.sign_up_conflicts(&mut tx, &valid).await?;
        let now = self.clock.now();
        if let Some(owner) = store::find_account_in(&mut tx, &valid.email_key).await? {
            // SECURITY: the login is held as a fresh sign-up would hold it (until the
            // purge of unconfirmed sign-ups), so that reusing it answers "taken" in both
            // cases.
            reserve_login(&mut tx, &valid.login_key, now).await?;
            self.tell_owner(&mut tx, &owner, now).await?;
        } else {
            self.insert_sign_up(&mut tx, &valid, &phc, now).await?;
        }
        tx.commit().await?;
        self.outbox.wake();
        Ok(())
    }

    /// Counts a sign-up from `address`; [`Error::TooManySignUps`] past the limit.
    async fn count_sign_up_from(&self, address: &str) -> Result<()> {
        let window_secs = self
            .lifetimes
            .signups_per_address_window_secs
            .unsigned_abs()
            .max(1);
        let key = format!(
            "signup:address:{}",
            hash_token(&dge_core::net::address_bucket(address))
        );
        let window = std::time::Duration::from_secs(window_secs);
        let filed = self.throttle.store.hit(&key, window).await?;
        if filed > self.lifetimes.signups_per_address_max.unsigned_abs() {
            tracing::warn!("sign-ups from one address over the rate limit");
            let left = self.throttle.store.ttl(&key).await?;
            return Err(Error::TooManySignUps(
                left.map_or(window_secs, |d| d.as_secs().max(1)),
            ));
        }
        Ok(())
    }

    /// An unknown organisation or a taken login, as field violations.
    async fn sign_up_conflicts(
        &self,
        conn: &mut sqlx::AnyConnection,
        valid: &ValidSignUp,
    ) -> Result<()> {
        let mut v = Violations::new();
        if let Some(org) = &valid.organisation_id {
            let exists = sqlx::query(
                "SELECT 1 AS found FROM organisations WHERE id = $1 AND status = 'active'",
            )
            .bind(org)
            .fetch_optional(&mut *conn)
            .await?;
            if exists.is_none() {
                v.add(
                    "organisation_id",
                    "unknown",
                    "Cet organisme n'existe pas dans la liste.",
                );
            }
        }
        // A proposed organisation that is in the list already (in another case): the
        // person is sent to the list rather than filed under a copy of it.
        // Read alike, not only in another case: `ATM0 Grand Est` with a zero is the
        // listed `ATMO Grand Est`. Only sign-ups proposing an organisation read the list.
        if let Some(name) = &valid.proposed_organisation {
            let names: Vec<String> =
                sqlx::query_scalar("SELECT name FROM organisations WHERE status = 'active'")
                    .fetch_all(&mut *conn)
                    .await?;
            use crate::domain::signup::{organisation_keys_alike, organisation_name_keys};
            let proposed = organisation_name_keys(name);
            let listed = names
                .into_iter()
                .find(|listed| organisation_keys_alike(&proposed, &organisation_name_keys(listed)));
            if let Some(listed) = listed {
                v.add(
                    "proposed_organisation",
                    "listed",
                    format!(
                        "« {listed} » figure déjà dans la liste des organismes : \
                         choisissez-le dans la liste."
                    ),
                );
            }
        }
        // A login is taken by an account or by a reservation (a sign-up whose address
        // was in use): both answer the same, so the answer tells nothing of addresses.
        let login_taken = sqlx::query(
            "SELECT 1 AS found FROM accounts WHERE login_key = $1 \
             UNION ALL SELECT 1 AS found FROM login_reservations WHERE login_key = $1",
        )
        .bind(&valid.login_key)
        .fetch_optional(&mut *conn)
        .await?;
        if login_taken.is_some() {
            v.add("login", "taken", LOGIN_TAKEN);
        }
        v.into_result().map_err(Error::Invalid)?;
        Ok(())
    }

    async fn insert_sign_up(
        &self,
        conn: &mut AnyConnection,
        valid: &ValidSignUp,
        phc: &str,
        now: i64,
    ) -> Result<()> {
        let organisation_id = match (&valid.organisation_id, &valid.proposed_organisation) {
            (Some(id), _) => id.clone(),
            (None, Some(name)) => propose_organisation(conn, name, now).await?,
            (None, None) => return Err(Error::Invalid(Violations::new())),
        };
        let id = dge_core::new_id();
        sqlx::query(
            "INSERT INTO accounts (id, kind, login, login_key, email, email_key, given_name, family_name, \
             phone, organisation_id, function, description, password_hash, status, created_at, updated_at) \
             VALUES ($1, 'local', $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'unconfirmed', $13, $13)",
        )
        .bind(&id)
        .bind(&valid.login)
        .bind(&valid.login_key)
        .bind(&valid.email)
        .bind(&valid.email_key)
        .bind(&valid.given_name)
        .bind(&valid.family_name)
        .bind(&valid.phone)
        .bind(&organisation_id)
        .bind(&valid.function)
        .bind(&valid.description)
        .bind(phc)
        .bind(now)
        .execute(&mut *conn)
        .await
        .map_err(|e| login_taken_or(e, "accounts_login_key_key", "accounts.login_key"))?;
        let token = random_token();
        sqlx::query(
            "INSERT INTO email_tokens (token_hash, account_id, purpose, email_key, expires_at, created_at) \
             VALUES ($1, $2, 'confirm', $3, $4, $5)",
        )
        .bind(hash_token(&token))
        .bind(&id)
        .bind(&valid.email_key)
        .bind(now + self.settings.confirmation_ttl_secs)
        .bind(now)
        .execute(&mut *conn)
        .await?;
        let link = format!("{}/confirm?token={token}", self.settings.public_url);
        let valid_for = dge_core::time::duration_fr(self.settings.confirmation_ttl_secs);
        self.outbox
            .enqueue(
                conn,
                "confirm_email",
                &valid.email,
                // SECURITY: no greeting by name in a message to an address nobody has
                // confirmed: the name was typed by whoever filled the form, maybe a
                // stranger writing to someone else's mailbox through ours.
                "",
                json!({ "link": link, "valid_for": valid_for, "login": valid.login }),
                now,
            )
            .await?;
        tracing::info!(account_id = %id, email = %MaskedEmail(&valid.email), "sign-up filed");
        Ok(())
    }

    /// Emails the owner of an address that someone tried to sign up with, at most
    /// `signup_notice_max` times per `signup_notice_window_secs` per address (counted
    /// in the shared store, so across replicas): a flood of sign-ups with someone's
    /// address must not flood their mailbox. The sign-up answer is the same either way.
    async fn tell_owner(&self, conn: &mut AnyConnection, owner: &Account, now: i64) -> Result<()> {
        let window = std::time::Duration::from_secs(
            self.lifetimes
                .signup_notice_window_secs
                .unsigned_abs()
                .max(1),
        );
        let key = format!("signup:notice:{}", hash_token(&owner.email.to_lowercase()));
        let sent = self.throttle.store.hit(&key, window).await?;
        if sent > self.lifetimes.signup_notice_max.unsigned_abs() {
            tracing::warn!(account_id = %owner.id, "sign-up notice to an address in use over the rate limit");
            return Ok(());
        }
        let base = &self.settings.public_url;
        if owner.status == AccountStatus::Unconfirmed {
            // The stored name and login were typed by whoever signed up, maybe not
            // the owner of the address: no greeting by that name, and the truth
            // about an unconfirmed sign-up rather than « an account exists ».
            let purge_at = owner.created_at + self.lifetimes.unconfirmed_ttl_secs;
            self.outbox
                .enqueue(
                    conn,
                    "signup_unconfirmed",
                    &owner.email,
                    "",
                    json!({
                        "resend_url": format!("{base}/signup/resend"),
                        "purge_date": dge_core::time::format_fr(purge_at),
                    }),
                    now,
                )
                .await?;
            tracing::info!(account_id = %owner.id, "sign-up attempted with an unconfirmed address; owner told");
            return Ok(());
        }
        let provider: Option<String> =
            sqlx::query("SELECT provider FROM federated_links WHERE account_id = $1 LIMIT 1")
                .bind(&owner.id)
                .fetch_optional(&mut *conn)
                .await?
                .map(|r| r.try_get("provider"))
                .transpose()?;
        let provider_label = provider.map(|p| {
            if p == "proconnect" {
                "ProConnect".to_owned()
            } else {
                "La Région Grand Est".to_owned()
            }
        });
        self.outbox
            .enqueue(
                conn,
                "signup_existing",
                &owner.email,
                &owner.given_name,
                json!({
                    "login_url": format!("{base}/login"),
                    "reset_url": format!("{base}/password/forgot"),
                    "provider_label": provider_label,
                }),
                now,
            )
            .await?;
        tracing::info!(account_id = %owner.id, "sign-up attempted with an address in use; owner told");
        Ok(())
    }

    /// Confirms an email address with the token of a confirmation link. The token is
    /// single use and bound to the address it was sent to. Returns the account.
    ///
    /// # Errors
    /// [`Error::BadToken`] when unknown, used, expired or the address changed since.
    pub async fn confirm_email(&self, token: &str) -> Result<Account> {
        let now = self.clock.now();
        let mut tx = self.db.begin().await?;
        let row = sqlx::query(
            "SELECT t.account_id FROM email_tokens t JOIN accounts a ON a.id = t.account_id \
             WHERE t.token_hash = $1 AND t.purpose = 'confirm' AND t.used_at IS NULL \
             AND t.expires_at > $2 AND a.email_key = t.email_key AND a.status = 'unconfirmed'",
        )
        .bind(hash_token(token.trim()))
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(Error::BadToken)?;
        let account_id: String = row.try_get("account_id")?;
        let used = sqlx::query(
            "UPDATE email_tokens SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL",
        )
        .bind(now)
        .bind(hash_token(token.trim()))
        .execute(&mut *tx)
        .await?;
        if used.rows_affected() != 1 {
            return Err(Error::BadToken);
        }
        // Trusted path: a member of a trusted organisation whose address is in one of
        // its domains is activated at once, with the community space; data-module
        // rights still wait for an administrator.
        let trusted = store::trusted_member(&mut tx, &account_id).await?;
        let status = if trusted { "active" } else { "pending" };
        sqlx::query(
            "UPDATE accounts SET status = $1, email_verified = 1, updated_at = $2 \
             WHERE id = $3 AND status = 'unconfirmed'",
        )
        .bind(status)
        .bind(now)
        .bind(&account_id)
        .execute(&mut *tx)
        .await?;
        if trusted {
            store::grant_in(
                &mut tx,
                &account_id,
                TRUSTED_PATH_RIGHT,
                "trusted-path",
                now,
            )
            .await?;
            dge_store::audit(
                &mut tx,
                "trusted-path",
                "account.approved",
                &account_id,
                "trusted organisation",
                now,
            )
            .await?;
        }
        let account = store::find_account_in(&mut tx, &account_id)
            .await?
            .ok_or(Error::BadToken)?;
        let (kind, extra) = if trusted {
            let rights = store::held_right_labels(&mut tx, &account_id, now).await?;
            (
                "account_activated",
                json!({
                    "login_url": format!("{}/login", self.settings.public_url),
                    "rights": rights,
                }),
            )
        } else {
            ("account_pending", json!({}))
        };
        self.outbox
            .enqueue(
                &mut tx,
                kind,
                &account.email,
                &account.given_name,
                extra,
                now,
            )
            .await?;
        tx.commit().await?;
        self.db.access_changed().await;
        self.outbox.wake();
        tracing::info!(account_id = %account.id, "email confirmed; account pending validation");
        Ok(account)
    }

    /// What a confirmation link's token is worth, without using it: the page that
    /// opens the link says at once when it cannot confirm. "Already confirmed" is told
    /// only for a token that was sent to the address, which is now confirmed: its
    /// holder read that mailbox.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn confirmation_link(&self, token: &str) -> Result<ConfirmLink> {
        let row = sqlx::query(
            "SELECT t.used_at, t.expires_at, a.status FROM email_tokens t \
             JOIN accounts a ON a.id = t.account_id \
             WHERE t.token_hash = $1 AND t.purpose = 'confirm' AND a.email_key = t.email_key",
        )
        .bind(hash_token(token.trim()))
        .fetch_optional(self.db.pool())
        .await?;
        let Some(row) = row else {
            return Ok(ConfirmLink::Invalid);
        };
        let used_at: Option<i64> = row.try_get("used_at")?;
        let expires_at: i64 = row.try_get("expires_at")?;
        let unconfirmed = row.try_get::<String, _>("status")? == "unconfirmed";
        Ok(match (used_at, unconfirmed) {
            (None, true) if expires_at > self.clock.now() => ConfirmLink::Usable,
            (Some(_), false) => ConfirmLink::AlreadyConfirmed,
            _ => ConfirmLink::Invalid,
        })
    }

    /// Checks a login (or email) and password. The answer for an unknown login and
    /// for a wrong password is the same, and takes the same time.
    ///
    /// # Errors
    /// [`Error::Busy`] when hashing is saturated; storage errors.
    pub async fn check_password(
        &self,
        identifier: &str,
        password: &Secret<String>,
    ) -> Result<Result<Account, LoginError>> {
        let found = store::credentials(&self.db, identifier).await?;
        Ok(self
            .check_found_password(found, password)
            .await?
            .map(|state| state.account))
    }

    /// [`Self::check_password`] for a caller that already read the account's
    /// credentials (`store::credentials`): one query less on the login path.
    pub(crate) async fn check_found_password(
        &self,
        found: Option<store::Credentials>,
        password: &Secret<String>,
    ) -> Result<Result<LoginState, LoginError>> {
        let (id, phc, epoch) = match found {
            Some(c) => (Some(c.id), c.password_hash, c.sessions_epoch),
            None => (None, None, 0),
        };
        let password: String =
            unicode_normalization::UnicodeNormalization::nfkc(password.expose().as_str()).collect();
        let ok = self.hasher.verify(password.clone(), phc.clone()).await?;
        let (true, Some(id)) = (ok, id) else {
            return Ok(Err(LoginError::BadCredentials));
        };
        if let Some(old) = phc.as_deref().filter(|p| self.hasher.needs_rehash(p)) {
            let new = self.hasher.hash(password).await?;
            store::upgrade_password_hash(&self.db, &id, old, &new, self.clock.now()).await?;
            tracing::info!(account_id = %id, "password hash upgraded to current parameters");
        }
        let (account, mfa) = store::account_and_mfa(&self.db, &id)
            .await?
            .ok_or(Error::BadToken)?;
        if account.status != AccountStatus::Active {
            return Ok(Err(LoginError::NotActive(account.status)));
        }
        Ok(Ok(LoginState {
            account,
            mfa,
            sessions_epoch: epoch,
        }))
    }

    /// Active organisations, for the sign-up list, sorted by name.
    ///
    /// # Errors
    /// Fails when the database fails.
    pub async fn organisations(&self) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query(
            "SELECT id, name FROM organisations WHERE status = 'active' ORDER BY name_key",
        )
        .fetch_all(self.db.pool())
        .await?;
        Ok(rows
            .iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("name")?)))
            .collect::<sqlx::Result<_>>()?)
    }
}

/// What a confirmation link can do (see [`Registry::confirmation_link`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfirmLink {
    /// It confirms its address when used.
    Usable,
    /// It was used, or replaced by a newer link, and the address is confirmed.
    AlreadyConfirmed,
    /// Unknown, expired, replaced while the address waits, or for another address.
    Invalid,
}

/// The message for a login already held by an account or a reservation.
// A repeat of one's own sign-up (the back button, a double click) gets this answer
// too: telling it apart would confirm a guessed address for a known login. The second
// sentence guides the person who just filed it.
const LOGIN_TAKEN: &str = "Ce login est déjà utilisé ; choisissez-en un autre. Si vous venez \
     d'envoyer ce formulaire, votre demande est bien enregistrée : consultez votre messagerie.";

/// Holds a login for a sign-up that filed no account (its address was in use). Sign-ups
/// take turns on a login (see [`Registry::sign_up`]), so a reservation never shares its
/// login with an account made meanwhile.
async fn reserve_login(conn: &mut AnyConnection, login_key: &str, now: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO login_reservations (login_key, created_at, updated_at) VALUES ($1, $2, $2)",
    )
    .bind(login_key)
    .bind(now)
    .execute(conn)
    .await
    .map_err(|e| login_taken_or(e, "login_reservations_pkey", "login_reservations.login_key"))?;
    Ok(())
}

/// A unique violation on the login (`constraint`, or `columns` on SQLite) becomes the
/// « déjà utilisé » field violation; any other error stays a storage error.
fn login_taken_or(e: sqlx::Error, constraint: &str, columns: &str) -> Error {
    if dge_store::is_unique_violation(&e, constraint, columns) {
        let mut v = Violations::new();
        v.add("login", "taken", LOGIN_TAKEN);
        Error::Invalid(v)
    } else {
        Error::Store(e)
    }
}

/// The proposed organisation a sign-up is filed under: one already proposed whose name
/// reads alike (`organisation_keys_alike`), so that the team accepts or merges it once
/// for all its people, or a new proposal.
// Two sign-ups proposing the same new name at the same instant can still make two
// proposals (no lock on the names); `dgectl orgs merge` joins them.
async fn propose_organisation(conn: &mut AnyConnection, name: &str, now: i64) -> Result<String> {
    use crate::domain::signup::{organisation_keys_alike, organisation_name_keys};
    let proposals = sqlx::query(
        "SELECT id, name FROM organisations WHERE status = 'proposed' ORDER BY created_at, id",
    )
    .fetch_all(&mut *conn)
    .await?;
    let keys = organisation_name_keys(name);
    for row in &proposals {
        let proposed: String = row.try_get("name")?;
        if organisation_keys_alike(&keys, &organisation_name_keys(&proposed)) {
            return Ok(row.try_get("id")?);
        }
    }
    let id = dge_core::new_id();
    sqlx::query(
        "INSERT INTO organisations (id, name, name_key, status, created_at, updated_at) \
         VALUES ($1, $2, $3, 'proposed', $4, $4)",
    )
    .bind(&id)
    .bind(name)
    .bind(name.to_lowercase())
    .bind(now)
    .execute(conn)
    .await?;
    Ok(id)
}
