//! The account life cycle after sign-up: confirmation emails sent again, unconfirmed
//! sign-ups purged, and what a signed-in person does with their own account (profile,
//! password, email address, personal-data export, deletion).
//!
//! SECURITY: the requests that take an email address from anyone (resend) answer the
//! same whatever the address, and do their lookup in a background task, like the
//! password reset.

use dge_core::token::{hash_token, random_token};
use dge_core::{MaskedEmail, Secret, Violations};
use serde_json::{Value, json};
use sqlx::{AnyConnection, Row};

use crate::domain::signup::{normalise_email, person_fields};
use crate::domain::{Account, AccountStatus};
use crate::reset::revoke_everything;
use crate::{Error, Registry, Result, store};

/// The message every resend request gets, whatever happened to the address.
pub const RESEND_ANSWER: &str = "Si une inscription en attente de confirmation correspond à cette \
    adresse, un nouveau courriel de confirmation vient de lui être envoyé.";

/// The message every email-change request gets.
pub const EMAIL_CHANGE_ANSWER: &str = "Un courriel de confirmation a été envoyé à la nouvelle \
    adresse. Elle remplacera l'ancienne quand vous aurez confirmé le changement ; votre adresse \
    actuelle a été prévenue.";

/// What a resend request led to; never shown to the requester.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResendOutcome {
    /// A new confirmation link was emailed.
    Sent,
    /// No unconfirmed sign-up has this address.
    Nothing,
    /// Too soon after the last email, or too many today.
    RateLimited,
}

/// The editable part of a profile.
#[derive(Debug, Clone, Default)]
pub struct ProfileForm {
    /// Prénom.
    pub given_name: String,
    /// Nom.
    pub family_name: String,
    /// Téléphone.
    pub phone: String,
    /// Fonction.
    pub function: String,
}

/// A validated profile.
struct ValidProfile {
    given_name: String,
    family_name: String,
    phone: String,
    function: String,
}

impl ProfileForm {
    /// Checks the same rules as the sign-up form for these fields (one shared helper).
    fn validate(&self) -> std::result::Result<ValidProfile, Violations> {
        let mut v = Violations::new();
        let p = person_fields(
            &mut v,
            &self.given_name,
            &self.family_name,
            &self.phone,
            &self.function,
        );
        v.into_result()?;
        Ok(ValidProfile {
            given_name: p.given_name,
            family_name: p.family_name,
            phone: p.phone,
            function: p.function,
        })
    }
}

fn invalid(field: &'static str, code: &'static str, message: &'static str) -> Error {
    let mut v = Violations::new();
    v.add(field, code, message);
    Error::Invalid(v)
}

fn invalid_email(field: &'static str) -> Error {
    invalid(
        field,
        "invalid",
        "L'adresse électronique n'est pas valide (exemple : prenom.nom@exemple.fr).",
    )
}

fn locked() -> Error {
    invalid(
        "current_password",
        "locked",
        "Trop de tentatives avec un mauvais mot de passe : réessayez dans quelques minutes.",
    )
}

pub(crate) fn wrong_password() -> Error {
    invalid(
        "current_password",
        "wrong",
        "Le mot de passe actuel n'est pas le bon.",
    )
}

impl Registry {
    /// Sends the confirmation email of an unconfirmed sign-up again, in the
    /// background; the answer is the same whatever the address.
    ///
    /// # Errors
    /// [`Error::Invalid`] when the address is not an address.
    pub fn request_confirmation_again(&self, email: &str) -> Result<()> {
        let (_, key) = normalise_email(email).ok_or_else(|| invalid_email("email"))?;
        let this = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(crate::reset::ANSWER_FIRST).await;
            if let Err(err) = this.send_confirmation_again(&key).await {
                tracing::error!(error = %dge_core::ErrorChain(&err), "confirmation resend failed");
            }
        });
        Ok(())
    }

    /// The work behind [`Self::request_confirmation_again`], awaited (tests use it).
    /// At most one email per `resend_interval_secs` and `resend_max_per_day` a day,
    /// counting the first one. Earlier links stay valid until they expire.
    ///
    /// # Errors
    /// Storage and mail errors.
    pub async fn send_confirmation_again(&self, email_key: &str) -> Result<ResendOutcome> {
        let now = self.clock.now();
        let mut tx = self.db.begin().await?;
        let row = sqlx::query(
            "SELECT id, email, login FROM accounts WHERE email_key = $1 AND status = 'unconfirmed'",
        )
        .bind(email_key)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(ResendOutcome::Nothing);
        };
        let id: String = row.try_get("id")?;
        let email: String = row.try_get("email")?;
        let login: String = row.try_get("login")?;
        let sent = sqlx::query(
            "SELECT COUNT(*) AS n, MAX(created_at) AS last FROM email_tokens \
             WHERE account_id = $1 AND purpose = 'confirm' AND created_at > $2",
        )
        .bind(&id)
        .bind(now - 24 * 3600)
        .fetch_one(&mut *tx)
        .await?;
        let count: i64 = sent.try_get("n")?;
        let last: Option<i64> = sent.try_get("last")?;
        let too_soon = last.is_some_and(|t| now - t < self.lifetimes.resend_interval_secs);
        if too_soon || count >= self.lifetimes.resend_max_per_day {
            tracing::warn!(account_id = %id, "confirmation resend over the rate limit");
            return Ok(ResendOutcome::RateLimited);
        }
        let token = random_token();
        sqlx::query(
            "INSERT INTO email_tokens (token_hash, account_id, purpose, email_key, expires_at, created_at) \
             VALUES ($1, $2, 'confirm', $3, $4, $5)",
        )
        .bind(hash_token(&token))
        .bind(&id)
        .bind(email_key)
        .bind(now + self.settings.confirmation_ttl_secs)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let link = format!("{}/confirm?token={token}", self.settings.public_url);
        let valid_for = dge_core::time::duration_fr(self.settings.confirmation_ttl_secs);
        self.outbox
            .enqueue(
                &mut tx,
                "confirm_email",
                &email,
                // No name for an unconfirmed address (see `Registry::sign_up`).
                "",
                json!({ "link": link, "valid_for": valid_for, "login": login }),
                now,
            )
            .await?;
        tx.commit().await?;
        self.outbox.wake();
        tracing::info!(account_id = %id, "confirmation email sent again");
        Ok(ResendOutcome::Sent)
    }

    /// Deletes the sign-ups left unconfirmed longer than `unconfirmed_ttl_secs`, which
    /// frees their login and address, and the organisations they proposed that no
    /// other account uses. Returns how many sign-ups were deleted.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn purge_unconfirmed(&self) -> Result<u64> {
        let now = self.clock.now();
        let before = now - self.lifetimes.unconfirmed_ttl_secs;
        let mut tx = self.db.begin().await?;
        let orgs: Vec<String> = sqlx::query(
            "SELECT DISTINCT a.organisation_id FROM accounts a JOIN organisations o ON o.id = a.organisation_id \
             WHERE a.status = 'unconfirmed' AND a.created_at < $1 AND o.status = 'proposed'",
        )
        .bind(before)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| r.try_get("organisation_id"))
        .collect::<sqlx::Result<_>>()?;
        let deleted =
            sqlx::query("DELETE FROM accounts WHERE status = 'unconfirmed' AND created_at < $1")
                .bind(before)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        // Logins held by sign-ups whose address was in use go at the same age.
        sqlx::query("DELETE FROM login_reservations WHERE created_at < $1")
            .bind(before)
            .execute(&mut *tx)
            .await?;
        for org in orgs {
            sqlx::query(
                "DELETE FROM organisations WHERE id = $1 AND status = 'proposed' \
                 AND NOT EXISTS (SELECT 1 FROM accounts WHERE organisation_id = $1)",
            )
            .bind(&org)
            .execute(&mut *tx)
            .await?;
        }
        if deleted > 0 {
            dge_store::audit(
                &mut tx,
                "system",
                "accounts.unconfirmed_purged",
                "accounts",
                &deleted.to_string(),
                now,
            )
            .await?;
        }
        tx.commit().await?;
        if deleted > 0 {
            tracing::info!(count = deleted, "unconfirmed sign-ups purged");
        }
        Ok(deleted)
    }

    /// The account of a signed-in person.
    ///
    /// # Errors
    /// [`Error::BadToken`] when the account no longer exists; storage errors.
    pub async fn own_account(&self, account_id: &str) -> Result<Account> {
        store::find_account(&self.db, account_id)
            .await?
            .filter(|a| a.id == account_id)
            .ok_or(Error::BadToken)
    }

    /// Whether the account has a password (local accounts; federated-only ones do not).
    ///
    /// # Errors
    /// Storage errors.
    pub async fn has_password(&self, account_id: &str) -> Result<bool> {
        let mut conn = self.db.pool().acquire().await?;
        Ok(store::credentials_in(&mut conn, account_id)
            .await?
            .is_some())
    }

    /// Changes the names, phone and function of an account, with the sign-up rules.
    ///
    /// # Errors
    /// [`Error::Invalid`] with every broken rule; storage errors.
    pub async fn update_profile(&self, account_id: &str, form: &ProfileForm) -> Result<Account> {
        let p = form.validate().map_err(Error::Invalid)?;
        let now = self.clock.now();
        let mut tx = self.db.begin().await?;
        sqlx::query(
            "UPDATE accounts SET given_name = $1, family_name = $2, phone = $3, function = $4, \
             updated_at = $5 WHERE id = $6",
        )
        .bind(&p.given_name)
        .bind(&p.family_name)
        .bind(&p.phone)
        .bind(&p.function)
        .bind(now)
        .bind(account_id)
        .execute(&mut *tx)
        .await?;
        dge_store::audit(
            &mut tx,
            account_id,
            "account.profile_updated",
            account_id,
            "",
            now,
        )
        .await?;
        tx.commit().await?;
        self.own_account(account_id).await
    }

    /// Checks the current password of a local account; `false` for an account
    /// without a password. Takes the same time either way. Throttled on the account's
    /// login counter (see [`crate::throttle`]): a stolen session must not become a
    /// password-guessing oracle.
    ///
    /// # Errors
    /// [`Error::Invalid`] on `current_password` while the account is locked.
    pub(crate) async fn current_password_ok(
        &self,
        account_id: &str,
        password: &Secret<String>,
    ) -> Result<bool> {
        if self.account_locked(account_id).await? {
            return Err(locked());
        }
        // A form sent with the field left empty (or blank: no password is spaces
        // alone) is a slip, not a guess: said so, and not counted towards the lock.
        if password.expose().trim().is_empty() {
            return Err(invalid(
                "current_password",
                "required",
                "Saisissez votre mot de passe actuel.",
            ));
        }
        let ok = self
            .current_password_unthrottled(account_id, password)
            .await?;
        if ok {
            self.forgive_failures(crate::throttle::PASSWORDS, account_id)
                .await;
        } else if self.count_failure(account_id).await? {
            return Err(locked());
        }
        Ok(ok)
    }

    async fn current_password_unthrottled(
        &self,
        account_id: &str,
        password: &Secret<String>,
    ) -> Result<bool> {
        let mut conn = self.db.pool().acquire().await?;
        let phc = store::credentials_in(&mut conn, account_id).await?;
        drop(conn);
        let password = crate::domain::password::normalise_password(password.expose());
        self.hasher.verify(password, phc).await
    }

    /// Changes the password of a signed-in person; the current one is required. Every
    /// session and token is revoked, including the current session, and the person
    /// is emailed.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a wrong current password or a broken rule.
    pub async fn change_password(
        &self,
        account_id: &str,
        current: &Secret<String>,
        password: &Secret<String>,
        confirmation: &Secret<String>,
    ) -> Result<()> {
        let account = self.own_account(account_id).await?;
        if !self.current_password_ok(account_id, current).await? {
            return Err(wrong_password());
        }
        // The current one was just verified: comparing the typed texts (as hashed,
        // NFKC) tells whether the "new" one is the same, without a hash.
        let normalise = crate::domain::password::normalise_password;
        if dge_core::token::constant_time_eq(
            normalise(password.expose()).as_bytes(),
            normalise(current.expose()).as_bytes(),
        ) {
            return Err(invalid(
                "password",
                "unchanged",
                "Le nouveau mot de passe doit être différent de l'actuel.",
            ));
        }
        let phc = self
            .new_password_hash(&account, password, confirmation)
            .await?;
        let now = self.clock.now();
        let ending = self.sessions_to_end(&account.id).await;
        let mut tx = self.db.begin().await?;
        self.replace_password(&mut tx, &account, &phc, "account.password_changed", now)
            .await?;
        tx.commit().await?;
        self.everything_revoked(&account.id, ending).await;
        tracing::info!(account_id = %account.id, "password changed; sessions and tokens revoked");
        Ok(())
    }

    /// Starts a change of email address: the new address gets a confirmation link,
    /// the current one is told. Nothing changes until the link is confirmed. When the
    /// new address already belongs to an account, the answer is the same and no link
    /// is sent (no account enumeration).
    ///
    /// # Errors
    /// [`Error::Invalid`] for a wrong password, a bad or unchanged address.
    pub async fn request_email_change(
        &self,
        account_id: &str,
        new_email: &str,
        current: &Secret<String>,
    ) -> Result<()> {
        let account = self.own_account(account_id).await?;
        let (address, key) =
            normalise_email(new_email).ok_or_else(|| invalid_email("new_email"))?;
        if !crate::domain::signup::is_deliverable_everywhere(&address) {
            return Err(invalid(
                "new_email",
                "non_ascii",
                crate::domain::signup::NON_ASCII_LOCAL_PART,
            ));
        }
        if key == account.email.to_lowercase() {
            return Err(invalid(
                "new_email",
                "unchanged",
                "C'est déjà l'adresse de votre compte.",
            ));
        }
        let has_password = self.has_password(account_id).await?;
        // An account without a password (federated only) proved itself at login.
        if has_password && !self.current_password_ok(account_id, current).await? {
            return Err(wrong_password());
        }
        let now = self.clock.now();
        let mut tx = self.db.begin().await?;
        sqlx::query(
            "UPDATE email_changes SET used_at = $1, updated_at = $1 WHERE account_id = $2 AND used_at IS NULL",
        )
        .bind(now)
        .bind(account_id)
        .execute(&mut *tx)
        .await?;
        let taken = store::find_account_in(&mut tx, &key).await?.is_some();
        if taken {
            tracing::info!(account_id = %account.id, "email change asked for an address in use; no link sent");
        } else {
            let token = random_token();
            sqlx::query(
                "INSERT INTO email_changes (token_hash, account_id, new_email, new_email_key, expires_at, \
                 created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6)",
            )
            .bind(hash_token(&token))
            .bind(account_id)
            .bind(&address)
            .bind(&key)
            .bind(now + self.lifetimes.email_change_ttl_secs)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let valid_for = dge_core::time::duration_fr(self.lifetimes.email_change_ttl_secs);
            self.outbox
                .enqueue(
                    &mut tx,
                    "email_change_confirm",
                    &address,
                    // No name for an address not confirmed yet (see `Registry::sign_up`).
                    "",
                    json!({
                        "link": format!("{}/account/email/confirm?token={token}", self.settings.public_url),
                        "valid_for": valid_for,
                    }),
                    now,
                )
                .await?;
        }
        self.outbox
            .enqueue(
                &mut tx,
                "email_change_requested",
                &account.email,
                &account.given_name,
                json!({ "new_email_masked": MaskedEmail(&address).to_string() }),
                now,
            )
            .await?;
        tx.commit().await?;
        self.outbox.wake();
        Ok(())
    }

    /// What an email-change link would do if pressed now, without using it: the page
    /// behind the link says at once when it cannot work, as the sign-up's does.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn email_change_link(&self, token: &str) -> Result<EmailChangeLink> {
        let row = sqlx::query(
            "SELECT c.new_email_key, a.status FROM email_changes c \
             JOIN accounts a ON a.id = c.account_id \
             WHERE c.token_hash = $1 AND c.used_at IS NULL AND c.expires_at > $2",
        )
        .bind(hash_token(token.trim()))
        .bind(self.clock.now())
        .fetch_optional(self.db.pool())
        .await?;
        let Some(row) = row else {
            return Ok(EmailChangeLink::Invalid);
        };
        let status: String = row.try_get("status")?;
        if status != AccountStatus::Active.as_str() {
            return Ok(EmailChangeLink::Invalid);
        }
        // Whoever holds the link holds the new mailbox: telling them that the address
        // now has an account of its own tells them nothing they could not learn there.
        let taken = sqlx::query("SELECT 1 AS found FROM accounts WHERE email_key = $1")
            .bind(row.try_get::<String, _>("new_email_key")?)
            .fetch_optional(self.db.pool())
            .await?
            .is_some();
        Ok(if taken {
            EmailChangeLink::Taken
        } else {
            EmailChangeLink::Usable
        })
    }

    /// Confirms a change of email address with the emailed token: the new address
    /// replaces the old one, which is told. Returns the account.
    ///
    /// # Errors
    /// [`Error::BadToken`] when unknown, used, expired, the address was taken since,
    /// or the account is not active (suspended).
    pub async fn confirm_email_change(&self, token: &str) -> Result<Account> {
        let now = self.clock.now();
        let mut tx = self.db.begin().await?;
        let row = sqlx::query(
            "SELECT account_id, new_email, new_email_key FROM email_changes \
             WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2",
        )
        .bind(hash_token(token.trim()))
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(Error::BadToken)?;
        let account_id: String = row.try_get("account_id")?;
        let new_email: String = row.try_get("new_email")?;
        let new_key: String = row.try_get("new_email_key")?;
        // A suspension cancels pending changes; refusing any account that is not
        // active also covers a link confirmed while the suspension commits; the
        // answer is that of a bad link.
        let old = store::find_account_in(&mut tx, &account_id)
            .await?
            .filter(|a| a.status == AccountStatus::Active)
            .ok_or(Error::BadToken)?;
        sqlx::query("UPDATE email_changes SET used_at = $1, updated_at = $1 WHERE token_hash = $2")
            .bind(now)
            .bind(hash_token(token.trim()))
            .execute(&mut *tx)
            .await?;
        let updated = sqlx::query(
            "UPDATE accounts SET email = $1, email_key = $2, email_verified = 1, updated_at = $3 WHERE id = $4",
        )
        .bind(&new_email)
        .bind(&new_key)
        .bind(now)
        .bind(&account_id)
        .execute(&mut *tx)
        .await;
        match updated {
            Err(e)
                if dge_store::is_unique_violation(
                    &e,
                    "accounts_email_key_key",
                    "accounts.email_key",
                ) =>
            {
                return Err(Error::BadToken);
            }
            other => {
                other?;
            }
        }
        // Reset links were sent to the old address: they must not outlive it.
        sqlx::query(
            "UPDATE email_tokens SET used_at = $1 WHERE account_id = $2 AND used_at IS NULL",
        )
        .bind(now)
        .bind(&account_id)
        .execute(&mut *tx)
        .await?;
        let masked = MaskedEmail(&new_email).to_string();
        self.outbox
            .enqueue(
                &mut tx,
                "email_changed",
                &old.email,
                &old.given_name,
                json!({ "new_email_masked": masked }),
                now,
            )
            .await?;
        dge_store::audit(
            &mut tx,
            &account_id,
            "account.email_changed",
            &account_id,
            "",
            now,
        )
        .await?;
        tx.commit().await?;
        self.outbox.wake();
        tracing::info!(account_id = %account_id, "email address changed");
        self.own_account(&account_id).await
    }

    /// Everything held about the person, as JSON: the account, its organisation,
    /// rights, federated links, sessions, consents, pending email changes, emails sent
    /// and the audit events about them. Secrets (hashes, tokens) are left out.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn export_personal_data(&self, account_id: &str) -> Result<Value> {
        let a = self.own_account(account_id).await?;
        let mut conn = self.db.pool().acquire().await?;
        let grants = rows_json(
            &mut conn,
            "SELECT right_name, granted_by, reason, expires_at, created_at FROM grants \
             WHERE account_id = $1 ORDER BY right_name",
            account_id,
            &["right_name", "granted_by", "reason"],
            &["expires_at", "created_at"],
        )
        .await?;
        let links = rows_json(
            &mut conn,
            "SELECT provider, email, created_at FROM federated_links WHERE account_id = $1 ORDER BY provider",
            account_id,
            &["provider", "email"],
            &["created_at"],
        )
        .await?;
        let sessions: Vec<Value> = self
            .sessions
            .of_account(account_id, self.clock.now())
            .await?
            .into_iter()
            .map(|t| {
                json!({
                    "auth_time": t.auth_time,
                    "expires_at": t.expires_at,
                    "created_at": t.created_at,
                })
            })
            .collect();
        let consents = rows_json(
            &mut conn,
            "SELECT client_id, scope, created_at FROM consents WHERE account_id = $1 ORDER BY client_id",
            account_id,
            &["client_id", "scope"],
            &["created_at"],
        )
        .await?;
        let email_changes = rows_json(
            &mut conn,
            "SELECT new_email, expires_at, used_at, created_at FROM email_changes \
             WHERE account_id = $1 ORDER BY created_at",
            account_id,
            &["new_email"],
            &["expires_at", "used_at", "created_at"],
        )
        .await?;
        let emails = rows_json(
            &mut conn,
            "SELECT kind, subject, status, created_at FROM outbox WHERE recipient = $1 ORDER BY created_at",
            &a.email,
            &["kind", "subject", "status"],
            &["created_at"],
        )
        .await?;
        let audit = rows_json(
            &mut conn,
            "SELECT actor, action, detail, created_at FROM audit_events WHERE subject = $1 ORDER BY created_at",
            account_id,
            &["actor", "action", "detail"],
            &["created_at"],
        )
        .await?;
        Ok(json!({
            "account": {
                "id": a.id,
                "kind": a.kind,
                "login": a.login,
                "email": a.email,
                "email_verified": a.email_verified,
                "given_name": a.given_name,
                "family_name": a.family_name,
                "phone": a.phone,
                "organisation": { "id": a.organisation_id, "name": a.organisation_name },
                "function": a.function,
                "description": a.description,
                "status": a.status.as_str(),
                "rejection_reason": a.rejection_reason,
                "created_at": a.created_at,
            },
            "rights": grants,
            "federated_links": links,
            "sessions": sessions,
            "consents": consents,
            "email_changes": email_changes,
            "emails_sent": emails,
            "audit_events": audit,
        }))
    }

    /// Deletes the person's account: rights, federated links, sessions, tokens and
    /// pending requests go with it; the emails sent to it are forgotten; the audit
    /// events about it are kept under its opaque id with their free-text detail
    /// cleared, and one more records the deletion. The person is emailed.
    ///
    /// # Errors
    /// [`Error::Invalid`] without the confirmation or with a wrong password.
    pub async fn delete_account(
        &self,
        account_id: &str,
        current: &Secret<String>,
        confirmed: bool,
    ) -> Result<()> {
        let account = self.own_account(account_id).await?;
        if !confirmed {
            return Err(invalid(
                "confirm",
                "required",
                "Cochez la case pour confirmer la suppression définitive de votre compte.",
            ));
        }
        let has_password = self.has_password(account_id).await?;
        if has_password && !self.current_password_ok(account_id, current).await? {
            return Err(wrong_password());
        }
        let now = self.clock.now();
        let ending = self.sessions_to_end(account_id).await;
        let mut tx = self.db.begin().await?;
        revoke_everything(&mut tx, account_id, now).await?;
        sqlx::query("DELETE FROM outbox WHERE recipient = $1")
            .bind(&account.email)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE audit_events SET detail = '' WHERE subject = $1")
            .bind(account_id)
            .execute(&mut *tx)
            .await?;
        // Everything that points at the account goes with it (ON DELETE CASCADE):
        // grants, federated links, sessions, refresh tokens, consents, tokens.
        sqlx::query("DELETE FROM accounts WHERE id = $1")
            .bind(account_id)
            .execute(&mut *tx)
            .await?;
        dge_store::audit(&mut tx, account_id, "account.deleted", account_id, "", now).await?;
        // The notice is the one row left that names the person; the mailer's retention
        // policy deletes it once sent (`[mail] sent_retention_secs`, 24 h by default).
        self.outbox
            .enqueue(
                &mut tx,
                "account_deleted",
                &account.email,
                &account.given_name,
                json!({}),
                now,
            )
            .await?;
        tx.commit().await?;
        self.everything_revoked(account_id, ending).await;
        tracing::info!(account_id = %account_id, "account deleted at its owner's request");
        Ok(())
    }
}

/// Rows of `sql` (one `$1` parameter) as JSON objects of text and integer columns.
async fn rows_json(
    conn: &mut AnyConnection,
    sql: &str,
    param: &str,
    text: &[&str],
    ints: &[&str],
) -> sqlx::Result<Value> {
    let rows = sqlx::query(sql).bind(param).fetch_all(conn).await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let mut obj = serde_json::Map::new();
        for c in text {
            obj.insert(
                (*c).to_owned(),
                json!(row.try_get::<Option<String>, _>(*c)?),
            );
        }
        for c in ints {
            obj.insert((*c).to_owned(), json!(row.try_get::<Option<i64>, _>(*c)?));
        }
        out.push(Value::Object(obj));
    }
    Ok(Value::Array(out))
}

/// What an email-change link can do (see [`Registry::email_change_link`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmailChangeLink {
    /// It changes the address when pressed.
    Usable,
    /// The new address became another account's since the link was sent.
    Taken,
    /// Unknown, used, replaced, expired, or the account is not active.
    Invalid,
}
