//! Password reset ("Mot de passe oublié ?") and what every password change does.
//!
//! SECURITY: the request answers the same, in the same time, whether or not the
//! address is known: the address is only checked for syntax before answering, and
//! the lookup, the token and the email happen afterwards in a background task. That
//! task does a write transaction in every case (it sweeps old reset tokens), so a
//! known address does not even leave a different load behind.

use dge_core::token::{hash_token, random_token};
use dge_core::{MaskedEmail, Secret, Violations};
use serde_json::json;
use sqlx::{AnyConnection, Row};

use crate::domain::Account;
use crate::domain::password::{PasswordContext, check_new_password};
use crate::domain::signup::normalise_email;
use crate::{Error, Registry, Result, store};

/// The message every reset request gets, whatever happened to the address.
pub const RESET_ANSWER: &str = "Si un compte correspond à cette adresse, un courriel vient de lui \
    être envoyé avec la marche à suivre. Le lien qu'il contient est valable une heure.";

/// How long the background work of an anonymous request (reset, resend) waits, so that
/// the answer is written before the lookup starts.
///
/// SECURITY: on a busy machine (two shared cores in the measurement of
/// docs/local-accounts.md) the lookup, token and email of a known address competed for
/// the CPU with the answer still being written, and known addresses answered about a
/// millisecond slower; waiting takes that work off the answer's path.
pub(crate) const ANSWER_FIRST: std::time::Duration = std::time::Duration::from_millis(100);

/// What a reset request led to; never shown to the requester.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetOutcome {
    /// A link was emailed.
    LinkSent,
    /// The account has no password: the email names its provider.
    ProviderNotice,
    /// Nobody has this address, or the account was refused.
    Nothing,
    /// Too many requests for this account in the last hour.
    RateLimited,
    /// The address is not confirmed yet: a new confirmation link was emailed instead.
    ConfirmationSent,
}

fn invalid_email() -> Error {
    let mut v = Violations::new();
    v.add(
        "email",
        "invalid",
        "L'adresse électronique n'est pas valide (exemple : prenom.nom@exemple.fr).",
    );
    Error::Invalid(v)
}

/// The display name of the upstream provider an account is linked to, if any.
pub(crate) async fn provider_label(
    conn: &mut AnyConnection,
    account_id: &str,
) -> sqlx::Result<Option<String>> {
    let provider: Option<String> =
        sqlx::query("SELECT provider FROM federated_links WHERE account_id = $1 LIMIT 1")
            .bind(account_id)
            .fetch_optional(&mut *conn)
            .await?
            .map(|r| r.try_get("provider"))
            .transpose()?;
    Ok(provider.map(|p| {
        if p == "proconnect" {
            "ProConnect".to_owned()
        } else {
            "La Région Grand Est".to_owned()
        }
    }))
}

/// Ends every way the account is logged in: sessions, access and refresh tokens, in
/// the caller's transaction. Call [`Registry::everything_revoked`] after the commit.
///
/// # Errors
/// The database failed.
pub async fn revoke_everything(
    conn: &mut AnyConnection,
    account_id: &str,
    now: i64,
) -> sqlx::Result<()> {
    dge_store::sessions::end_all_in(conn, account_id).await?;
    for table in ["issued_tokens", "refresh_tokens"] {
        sqlx::query(&format!(
            "UPDATE {table} SET revoked_at = $1 WHERE account_id = $2 AND revoked_at IS NULL"
        ))
        .bind(now)
        .bind(account_id)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// The sessions [`revoke_everything`] is about to end, read before its transaction
/// by [`Registry::sessions_to_end`], for their modules' back-channel logout.
#[derive(Debug, Default)]
#[must_use = "hand it to everything_revoked after the commit"]
pub struct SessionsToEnd(Vec<dge_store::sessions::EndingSession>);

impl Registry {
    /// The live sessions of `account_id` and their modules, before a change that
    /// ends them. Best effort: when the store cannot say, the change still ends
    /// them, only without back-channel logout. A session opened, or a module logging
    /// in through a session, between this read and the commit is ended too, but not
    /// told: the back-channel queue gets only what this read saw (closing that gap
    /// would need the sessions read, or the queue written, inside the change's
    /// transaction, which Redis sessions do not allow).
    pub async fn sessions_to_end(&self, account_id: &str) -> SessionsToEnd {
        if self.sessions_ended.is_none() {
            return SessionsToEnd::default();
        }
        match self.sessions.ending(account_id, self.clock.now()).await {
            Ok(sessions) => SessionsToEnd(sessions),
            Err(e) => {
                tracing::warn!(error = %dge_core::ErrorChain(&e), %account_id,
                    "sessions to end not read: their modules get no back-channel logout");
                SessionsToEnd::default()
            }
        }
    }

    /// After the commit of [`revoke_everything`]: every replica's `Check` caches forget
    /// the account, the modules of its ended sessions are told (back-channel logout),
    /// its Redis sessions are freed, and the emails queued with it leave.
    pub async fn everything_revoked(&self, account_id: &str, ended: SessionsToEnd) {
        self.db.access_changed().await;
        if let Some(hook) = &self.sessions_ended
            && !ended.0.is_empty()
        {
            hook.sessions_ended(account_id, ended.0);
        }
        self.sessions.forget_account(account_id).await;
        self.outbox.wake();
    }
}

impl Registry {
    /// Checks the address, then looks it up and emails it in the background; the
    /// answer is the same whatever the address (see the module's note).
    ///
    /// # Errors
    /// [`Error::Invalid`] when the address is not an address.
    pub fn request_password_reset(&self, email: &str) -> Result<()> {
        let (_, key) = normalise_email(email).ok_or_else(invalid_email)?;
        let this = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(ANSWER_FIRST).await;
            if let Err(err) = this.send_password_reset(&key).await {
                tracing::error!(error = %dge_core::ErrorChain(&err), "password reset request failed");
            }
        });
        Ok(())
    }

    /// The work behind [`Self::request_password_reset`], awaited (tests use it).
    ///
    /// # Errors
    /// Storage and mail errors.
    pub async fn send_password_reset(&self, email_key: &str) -> Result<ResetOutcome> {
        let now = self.clock.now();
        let mut tx = self.db.begin().await?;
        sqlx::query("DELETE FROM email_tokens WHERE purpose = 'reset' AND expires_at < $1")
            .bind(now - 24 * 3600)
            .execute(&mut *tx)
            .await?;
        let outcome = match store::find_account_in(&mut tx, email_key).await? {
            // A reset would not make the account usable: login still needs the
            // address confirmed. The same page answer, but a new confirmation link
            // (the resend's limits apply).
            Some(account)
                if account.email.to_lowercase() == email_key
                    && account.status == crate::AccountStatus::Unconfirmed =>
            {
                tx.commit().await?;
                return Ok(match self.send_confirmation_again(email_key).await? {
                    crate::account::ResendOutcome::Sent => ResetOutcome::ConfirmationSent,
                    crate::account::ResendOutcome::RateLimited => ResetOutcome::RateLimited,
                    crate::account::ResendOutcome::Nothing => ResetOutcome::Nothing,
                });
            }
            Some(account) if account.email.to_lowercase() == email_key => {
                self.reset_mail(&mut tx, &account, now).await?
            }
            _ => ResetOutcome::Nothing,
        };
        tx.commit().await?;
        if matches!(
            outcome,
            ResetOutcome::LinkSent | ResetOutcome::ProviderNotice
        ) {
            self.outbox.wake();
        }
        Ok(outcome)
    }

    async fn reset_mail(
        &self,
        conn: &mut AnyConnection,
        account: &Account,
        now: i64,
    ) -> Result<ResetOutcome> {
        if account.status == crate::AccountStatus::Rejected {
            return Ok(ResetOutcome::Nothing);
        }
        let recent: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM outbox WHERE recipient = $1 \
             AND kind IN ('password_reset', 'password_reset_federated') AND created_at > $2",
        )
        .bind(&account.email)
        .bind(now - 3600)
        .fetch_one(&mut *conn)
        .await?
        .try_get("n")?;
        if recent >= self.lifetimes.reset_max_per_hour {
            tracing::warn!(account_id = %account.id, "password reset requests over the hourly limit");
            return Ok(ResetOutcome::RateLimited);
        }
        let has_password = store::credentials_in(conn, &account.id).await?.is_some();
        if !has_password {
            let label = provider_label(conn, &account.id).await?;
            self.outbox
                .enqueue(
                    conn,
                    "password_reset_federated",
                    &account.email,
                    &account.given_name,
                    json!({
                        "provider_label": label,
                        "login_url": format!("{}/login", self.settings.public_url),
                    }),
                    now,
                )
                .await?;
            tracing::info!(account_id = %account.id, "password reset asked for a federated account");
            return Ok(ResetOutcome::ProviderNotice);
        }
        self.insert_reset_token(conn, account, now).await?;
        Ok(ResetOutcome::LinkSent)
    }

    async fn insert_reset_token(
        &self,
        conn: &mut AnyConnection,
        account: &Account,
        now: i64,
    ) -> Result<()> {
        // A newer reset invalidates the older links.
        sqlx::query(
            "UPDATE email_tokens SET used_at = $1 \
             WHERE account_id = $2 AND purpose = 'reset' AND used_at IS NULL",
        )
        .bind(now)
        .bind(&account.id)
        .execute(&mut *conn)
        .await?;
        let token = random_token();
        sqlx::query(
            "INSERT INTO email_tokens (token_hash, account_id, purpose, email_key, expires_at, created_at) \
             VALUES ($1, $2, 'reset', $3, $4, $5)",
        )
        .bind(hash_token(&token))
        .bind(&account.id)
        .bind(account.email.to_lowercase())
        .bind(now + self.lifetimes.reset_ttl_secs)
        .bind(now)
        .execute(&mut *conn)
        .await?;
        let minutes = (self.lifetimes.reset_ttl_secs / 60).max(1);
        self.outbox
            .enqueue(
                conn,
                "password_reset",
                &account.email,
                &account.given_name,
                json!({
                    "link": format!("{}/password/reset?token={token}", self.settings.public_url),
                    "valid_minutes": minutes,
                }),
                now,
            )
            .await?;
        tracing::info!(account_id = %account.id, email = %MaskedEmail(&account.email), "password reset link sent");
        Ok(())
    }

    /// The account a reset link is for, while the link is valid; used to show the
    /// form (a GET never uses the link up).
    ///
    /// # Errors
    /// [`Error::BadToken`] when unknown, used, expired or the address changed since.
    pub async fn reset_token_account(&self, token: &str) -> Result<Account> {
        let row = sqlx::query(
            "SELECT t.account_id FROM email_tokens t JOIN accounts a ON a.id = t.account_id \
             WHERE t.token_hash = $1 AND t.purpose = 'reset' AND t.used_at IS NULL \
             AND t.expires_at > $2 AND a.email_key = t.email_key AND a.kind = 'local' \
             AND a.status <> 'unconfirmed'",
        )
        .bind(hash_token(token.trim()))
        .bind(self.clock.now())
        .fetch_optional(self.db.pool())
        .await?
        .ok_or(Error::BadToken)?;
        let id: String = row.try_get("account_id")?;
        store::find_account(&self.db, &id)
            .await?
            .ok_or(Error::BadToken)
    }

    /// Sets a new password with a reset link. The link is used up; every session
    /// and token of the account is revoked and the person is told by email.
    ///
    /// # Errors
    /// [`Error::BadToken`] for a bad link; [`Error::Invalid`] when the new password
    /// breaks a rule (the link stays usable then).
    pub async fn reset_password(
        &self,
        token: &str,
        password: &Secret<String>,
        confirmation: &Secret<String>,
    ) -> Result<Account> {
        let account = self.reset_token_account(token).await?;
        let phc = self
            .new_password_hash(&account, password, confirmation)
            .await?;
        let now = self.clock.now();
        let ending = self.sessions_to_end(&account.id).await;
        let mut tx = self.db.begin().await?;
        let used = sqlx::query(
            "UPDATE email_tokens SET used_at = $1 \
             WHERE token_hash = $2 AND purpose = 'reset' AND used_at IS NULL AND expires_at > $1",
        )
        .bind(now)
        .bind(hash_token(token.trim()))
        .execute(&mut *tx)
        .await?;
        if used.rows_affected() != 1 {
            return Err(Error::BadToken);
        }
        self.replace_password(&mut tx, &account, &phc, "account.password_reset", now)
            .await?;
        tx.commit().await?;
        self.everything_revoked(&account.id, ending).await;
        self.lift_password_lock(&account.id).await;
        tracing::info!(account_id = %account.id, "password reset; sessions and tokens revoked");
        Ok(account)
    }

    /// Checks a new password against the rules for `account` and hashes it.
    pub(crate) async fn new_password_hash(
        &self,
        account: &Account,
        password: &Secret<String>,
        confirmation: &Secret<String>,
    ) -> Result<String> {
        let mut v = Violations::new();
        let password = check_new_password(
            &mut v,
            ("password", "password_confirmation"),
            password,
            confirmation,
            &password_context(account),
        );
        v.into_result().map_err(Error::Invalid)?;
        self.hasher.hash(password.expose().clone()).await
    }

    /// What every password change does, in the caller's transaction: the new hash,
    /// older reset links invalidated, everything revoked, an email and an audit row.
    pub(crate) async fn replace_password(
        &self,
        conn: &mut AnyConnection,
        account: &Account,
        phc: &str,
        action: &str,
        now: i64,
    ) -> Result<()> {
        sqlx::query("UPDATE accounts SET password_hash = $1, updated_at = $2 WHERE id = $3")
            .bind(phc)
            .bind(now)
            .bind(&account.id)
            .execute(&mut *conn)
            .await?;
        sqlx::query(
            "UPDATE email_tokens SET used_at = $1 \
             WHERE account_id = $2 AND purpose = 'reset' AND used_at IS NULL",
        )
        .bind(now)
        .bind(&account.id)
        .execute(&mut *conn)
        .await?;
        revoke_everything(conn, &account.id, now).await?;
        self.outbox
            .enqueue(
                conn,
                "password_changed",
                &account.email,
                &account.given_name,
                json!({ "reset_url": format!("{}/password/forgot", self.settings.public_url) }),
                now,
            )
            .await?;
        dge_store::audit(conn, &account.id, action, &account.id, "", now).await?;
        Ok(())
    }
}

/// What a new password of `account` must not contain.
#[must_use]
pub fn password_context(account: &Account) -> PasswordContext {
    PasswordContext {
        login: account.login.clone().unwrap_or_default(),
        given_name: account.given_name.clone(),
        family_name: account.family_name.clone(),
        email: account.email.clone(),
    }
}
