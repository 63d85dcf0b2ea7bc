//! Two-step verification of local accounts: TOTP (RFC 6238, SHA-1, 6 digits, 30 s
//! steps, as every authenticator application reads them) and single-use recovery
//! codes.
//!
//! - The secret must stay readable to check codes: it is sealed at rest with the
//!   key-encryption key of the signing keys (AES-256-GCM, bound to the account id),
//!   and never logged.
//! - A code is accepted one step early or late (clock skew), and never twice: the
//!   step of the last accepted code is stored, and a code must be of a later step;
//!   the update that records it is conditional, so two requests racing with the
//!   same code cannot both pass.
//! - Failures count on the account's login throttle (the one of password failures):
//!   the same growing delays, the same lock and the same email at `lock_after`.
//! - Recovery codes are random (60 bits), shown once and stored as SHA-256 digests.
//! - Enrolment closes every session and revokes every token of the account: from
//!   then on each session of the account was opened with a code, which is what gives
//!   an administrator's tokens their power (see `dge_authz::caller`).
//! - Global administrators must keep two-step verification: they cannot turn it off.

use dge_authz::keys::KeyEncryptionKey;
use dge_core::token::hash_token;
use dge_core::{MaskedEmail, Secret, Violations};
use rand::Rng;
use serde_json::json;
use sqlx::Row;
use subtle::ConstantTimeEq;
use totp_rs::{Algorithm, TOTP};

use crate::reset::revoke_everything;
use crate::throttle::CODES;
use crate::{Error, Registry, Result, store};

/// Audit action: two-step verification turned on.
pub const ENROLLED: &str = "mfa.enrolled";
/// Audit action: two-step verification turned off.
pub const DISABLED: &str = "mfa.disabled";
/// Audit action: a wrong code.
pub const FAILED: &str = "mfa.failed";
/// Audit action: a recovery code was used.
pub const RECOVERY_CODE_USED: &str = "mfa.recovery_code_used";

/// Digits of a code.
const DIGITS: usize = 6;
/// Seconds of a time step.
const STEP_SECS: u64 = 30;
/// Steps accepted before and after the current one.
const SKEW_STEPS: i64 = 1;
/// Bytes of a secret (160 bits, RFC 4226 §4).
const SECRET_BYTES: usize = 20;
/// Recovery codes given at enrolment.
pub const RECOVERY_CODES: usize = 10;
/// Alphabet of recovery codes: no 0/o, 1/l/i to misread.
const RECOVERY_ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
/// Characters of a recovery code (31^12, about 2^59).
const RECOVERY_CHARS: usize = 12;

/// How long a login whose password (or upstream login) passed waits for its code.
const PENDING_SECS: u64 = 600;

/// A login waiting for its second step: who, the authorization request to complete
/// after it (empty for a login without one), and for a login through an upstream
/// provider, that provider and its ID token (for the logout). Not `Debug`: it may
/// carry the upstream's token.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct PendingLogin {
    /// The account whose first step passed.
    pub account_id: String,
    /// The pending authorization request (`req`), or empty.
    pub req: String,
    /// The upstream provider of a federated login.
    #[serde(default)]
    pub upstream: Option<String>,
    /// The upstream's raw ID token of a federated login.
    #[serde(default)]
    pub upstream_id_token: Option<String>,
    /// The account's `sessions_epoch` at the first step, set by
    /// [`Registry::begin_second_step`]: the login is dropped once it changed.
    #[serde(default)]
    pub epoch: Option<i64>,
}

fn pending_key(token: &str) -> String {
    format!("mfa:pending:{}", hash_token(token))
}

/// What the enrolment page shows: the secret in base32 and as an `otpauth://` URI,
/// which the page draws as a QR code. Not `Debug`: it carries the secret.
pub struct Enrolment {
    /// The secret, base32 without padding, in groups of 4 for reading.
    pub secret_base32: Secret<String>,
    /// `otpauth://totp/…`, for the QR code.
    pub uri: Secret<String>,
}

/// Why a code was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum CodeError {
    /// Wrong, expired or already used code.
    Wrong,
    /// Too many failures: the account is locked for a while.
    Locked,
}

/// Whether an account has two-step verification, and whether it must.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MfaState {
    /// Two-step verification is on (enrolment confirmed).
    pub enabled: bool,
    /// The account is a global administrator: it must be on.
    pub required: bool,
    /// Unused recovery codes left.
    pub recovery_codes_left: i64,
}

/// The columns of [`MfaState`] beside `a.is_admin`, for a query on `accounts a`.
pub(crate) const MFA_COLUMNS: &str = "\
    (SELECT COUNT(*) FROM account_mfa m \
      WHERE m.account_id = a.id AND m.confirmed_at IS NOT NULL) AS mfa_enabled, \
    (SELECT COUNT(*) FROM account_recovery_codes r \
      WHERE r.account_id = a.id AND r.used_at IS NULL) AS mfa_codes_left";

/// [`MfaState`] from a row with `is_admin` and [`MFA_COLUMNS`].
pub(crate) fn mfa_from_row(row: &sqlx::any::AnyRow) -> sqlx::Result<MfaState> {
    Ok(MfaState {
        enabled: row.try_get::<i64, _>("mfa_enabled")? > 0,
        required: row.try_get::<i64, _>("is_admin")? == 1,
        recovery_codes_left: row.try_get("mfa_codes_left")?,
    })
}

fn totp(secret: Vec<u8>) -> TOTP {
    // 20 random bytes always meet the checks of `TOTP::new`; `new_unchecked` spares
    // an error path that cannot happen.
    TOTP::new_unchecked(Algorithm::SHA1, DIGITS, 0, STEP_SECS, secret)
}

fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// Percent-encoding of a URI component (RFC 3986 unreserved characters kept).
fn component(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The code of `secret` at time step `step` (the login check, and tests).
#[must_use]
pub fn code_at(secret: &[u8], step: i64) -> String {
    totp(secret.to_vec()).generate(u64::try_from(step).unwrap_or(0) * STEP_SECS)
}

/// Decodes a base32 secret (as shown on the enrolment page), spaces ignored.
#[must_use]
pub fn decode_base32(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for c in text.chars().filter(|c| !c.is_whitespace() && *c != '=') {
        let v = match c.to_ascii_uppercase() {
            c @ 'A'..='Z' => c as u32 - 'A' as u32,
            c @ '2'..='7' => c as u32 - '2' as u32 + 26,
            _ => return None,
        };
        buffer = (buffer << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((buffer >> bits) & 0xff).ok()?);
        }
    }
    Some(out)
}

fn random_recovery_code() -> String {
    let mut rng = rand::rngs::OsRng;
    let raw: String = (0..RECOVERY_CHARS)
        .map(|_| char::from(RECOVERY_ALPHABET[rng.gen_range(0..RECOVERY_ALPHABET.len())]))
        .collect();
    format!("{}-{}-{}", &raw[..4], &raw[4..8], &raw[8..])
}

/// A recovery code as stored: lower case, separators and spaces removed.
fn normalise_recovery_code(code: &str) -> String {
    code.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

fn aad(account_id: &str) -> String {
    format!("totp:{account_id}")
}

fn invalid(field: &'static str, code: &'static str, message: &str) -> Error {
    let mut v = Violations::new();
    v.add(field, code, message.to_owned());
    Error::Invalid(v)
}

fn wrong_code() -> Error {
    invalid(
        "code",
        "wrong_code",
        "Code incorrect ou expiré : saisissez le code à 6 chiffres affiché en ce moment par \
         votre application d'authentification.",
    )
}

fn locked() -> Error {
    invalid(
        "code",
        "locked",
        "Trop de codes erronés. Par sécurité, la vérification est suspendue pendant quelques \
         minutes : réessayez plus tard.",
    )
}

impl Registry {
    /// The same registry, sealing two-step secrets with `key`.
    #[must_use]
    pub fn with_mfa_key(mut self, key: KeyEncryptionKey) -> Self {
        self.mfa_key = Some(std::sync::Arc::new(key));
        self
    }

    fn mfa_key(&self) -> Result<&KeyEncryptionKey> {
        // A registry built without the key (some tests) cannot store secrets.
        self.mfa_key.as_deref().ok_or(Error::Sealing)
    }

    /// Whether the account has two-step verification, and whether it must.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn mfa_state(&self, account_id: &str) -> Result<MfaState> {
        // One round trip: every login through an upstream reads it (a password login
        // reads it with the account, `store::account_and_mfa`).
        let row = sqlx::query(&format!(
            "SELECT a.is_admin, {MFA_COLUMNS} FROM accounts a WHERE a.id = $1"
        ))
        .bind(account_id)
        .fetch_optional(self.db.pool())
        .await?;
        let Some(row) = row else {
            return Ok(MfaState {
                enabled: false,
                required: false,
                recovery_codes_left: 0,
            });
        };
        Ok(mfa_from_row(&row)?)
    }

    /// Queues the email telling the owner two-step verification went on or off
    /// (`kind`), with the way to react if it was not them.
    async fn tell_mfa_change(
        &self,
        tx: &mut dge_store::AnyConnection,
        kind: &str,
        account: &crate::domain::Account,
        now: i64,
    ) -> Result<()> {
        let reset_url = format!("{}/password/forgot", self.settings.public_url);
        self.outbox
            .enqueue(
                tx,
                kind,
                &account.email,
                &account.given_name,
                json!({ "reset_url": reset_url }),
                now,
            )
            .await?;
        Ok(())
    }

    /// Tells the owner that a recovery code stood in for the authenticator, and how
    /// many are left: a lost phone, or someone holding the password and a code.
    async fn tell_recovery_code_used(
        &self,
        tx: &mut dge_store::AnyConnection,
        account_id: &str,
        now: i64,
    ) -> Result<()> {
        let Some(account) = store::find_account_in(&mut *tx, account_id).await? else {
            return Ok(());
        };
        let remaining: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM account_recovery_codes WHERE account_id = $1 AND used_at IS NULL",
        )
        .bind(account_id)
        .fetch_one(&mut *tx)
        .await?;
        let reset_url = format!("{}/password/forgot", self.settings.public_url);
        self.outbox
            .enqueue(
                tx,
                "mfa_recovery_code_used",
                &account.email,
                &account.given_name,
                json!({ "remaining": remaining, "reset_url": reset_url }),
                now,
            )
            .await?;
        Ok(())
    }

    /// Starts (or restarts) an enrolment: a new secret, kept until confirmed by a
    /// code. `issuer` names the portal in the authenticator application.
    ///
    /// # Errors
    /// [`Error::Invalid`] when two-step verification is already on.
    pub async fn start_mfa_enrolment(&self, account_id: &str, issuer: &str) -> Result<Enrolment> {
        let account = self.own_account(account_id).await?;
        if self.mfa_state(account_id).await?.enabled {
            return Err(invalid(
                "mfa",
                "already_enabled",
                "La vérification en deux étapes est déjà activée sur votre compte.",
            ));
        }
        let mut secret = vec![0u8; SECRET_BYTES];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut secret);
        let sealed = self
            .mfa_key()?
            .seal(&aad(account_id), &secret)
            .map_err(|_| Error::Sealing)?;
        let now = self.clock.now();
        let mut tx = self.db.begin().await?;
        sqlx::query("DELETE FROM account_mfa WHERE account_id = $1 AND confirmed_at IS NULL")
            .bind(account_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO account_mfa (account_id, secret_sealed, last_step, created_at) \
             VALUES ($1, $2, 0, $3)",
        )
        .bind(account_id)
        .bind(&sealed)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        let label = account.login.clone().unwrap_or_else(|| account.id.clone());
        Ok(enrolment(&secret, issuer, &label))
    }

    /// The enrolment waiting for its first code, to show it again after a wrong code.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn pending_mfa_enrolment(
        &self,
        account_id: &str,
        issuer: &str,
    ) -> Result<Option<Enrolment>> {
        let Some((secret, confirmed, _)) = self.mfa_secret(account_id).await? else {
            return Ok(None);
        };
        if confirmed {
            return Ok(None);
        }
        let account = self.own_account(account_id).await?;
        let label = account.login.clone().unwrap_or_else(|| account.id.clone());
        Ok(Some(enrolment(secret.expose(), issuer, &label)))
    }

    /// The secret, whether it is confirmed, and the last step accepted.
    async fn mfa_secret(&self, account_id: &str) -> Result<Option<(Secret<Vec<u8>>, bool, i64)>> {
        let Some(row) = sqlx::query(
            "SELECT secret_sealed, confirmed_at, last_step FROM account_mfa WHERE account_id = $1",
        )
        .bind(account_id)
        .fetch_optional(self.db.pool())
        .await?
        else {
            return Ok(None);
        };
        let sealed: String = row.try_get("secret_sealed")?;
        let confirmed: Option<i64> = row.try_get("confirmed_at")?;
        let last_step: i64 = row.try_get("last_step")?;
        let secret = self
            .mfa_key()?
            .open(&aad(account_id), &sealed)
            .map_err(|_| Error::Sealing)?;
        Ok(Some((Secret::new(secret), confirmed.is_some(), last_step)))
    }

    /// The step matching `code` within the skew, later than `last_step`.
    fn matching_step(&self, secret: &[u8], code: &str, last_step: i64) -> Option<i64> {
        let code = code.trim().replace(' ', "");
        if code.len() != DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let now = self.clock.now() / i64::try_from(STEP_SECS).unwrap_or(30);
        let mut found = None;
        // Every step of the window is computed and compared in constant time, so
        // that the time taken tells nothing of which one matched.
        for step in (now - SKEW_STEPS)..=(now + SKEW_STEPS) {
            let expected = code_at(secret, step);
            if bool::from(expected.as_bytes().ct_eq(code.as_bytes())) && step > last_step {
                found = Some(step);
            }
        }
        found
    }

    /// Records `step` as used; false when a request with the same code (or a later
    /// one) came first.
    async fn use_step(
        &self,
        conn: &mut sqlx::AnyConnection,
        account_id: &str,
        step: i64,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE account_mfa SET last_step = $2 WHERE account_id = $1 AND last_step < $2",
        )
        .bind(account_id)
        .bind(step)
        .execute(&mut *conn)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Confirms the enrolment with a first code: two-step verification is on, the
    /// account's sessions and tokens end, its owner is emailed. Returns the recovery
    /// codes, to show once.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a wrong code (counted on the login throttle), or when
    /// no enrolment waits.
    pub async fn confirm_mfa_enrolment(
        &self,
        account_id: &str,
        code: &str,
    ) -> Result<Vec<Secret<String>>> {
        if self.locked_as(CODES, account_id).await? {
            return Err(locked());
        }
        let Some((secret, false, last_step)) = self.mfa_secret(account_id).await? else {
            return Err(invalid(
                "code",
                "no_enrolment",
                "Aucune activation n'est en cours : recommencez depuis votre profil.",
            ));
        };
        let Some(step) = self.matching_step(secret.expose(), code, last_step) else {
            return Err(if self.count_failure_as(CODES, account_id, FAILED).await? {
                locked()
            } else {
                wrong_code()
            });
        };
        let account = self.own_account(account_id).await?;
        let now = self.clock.now();
        let codes: Vec<String> = (0..RECOVERY_CODES)
            .map(|_| random_recovery_code())
            .collect();
        let ending = self.sessions_to_end(account_id).await;
        let mut tx = self.db.begin().await?;
        if !self.use_step(&mut tx, account_id, step).await? {
            return Err(wrong_code());
        }
        let confirmed = sqlx::query(
            "UPDATE account_mfa SET confirmed_at = $2 WHERE account_id = $1 AND confirmed_at IS NULL",
        )
        .bind(account_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if confirmed.rows_affected() != 1 {
            return Err(wrong_code());
        }
        sqlx::query("DELETE FROM account_recovery_codes WHERE account_id = $1")
            .bind(account_id)
            .execute(&mut *tx)
            .await?;
        for code in &codes {
            sqlx::query(
                "INSERT INTO account_recovery_codes (account_id, code_hash) VALUES ($1, $2)",
            )
            .bind(account_id)
            .bind(hash_token(&normalise_recovery_code(code)))
            .execute(&mut *tx)
            .await?;
        }
        revoke_everything(&mut tx, account_id, now).await?;
        dge_store::audit(&mut tx, account_id, ENROLLED, account_id, "", now).await?;
        self.tell_mfa_change(&mut tx, "mfa_enabled", &account, now)
            .await?;
        tx.commit().await?;
        // Admin power depends on the enrolment: every replica's Check cache forgets it.
        self.everything_revoked(account_id, ending).await;
        self.forgive_failures(CODES, account_id).await;
        tracing::info!(
            account_id = %account_id,
            email = %MaskedEmail(&account.email),
            "two-step verification enabled"
        );
        Ok(codes.into_iter().map(Secret::new).collect())
    }

    /// Checks the code typed at login: a 6-digit code of the authenticator, or a
    /// recovery code (then used up). Throttled like passwords.
    ///
    /// # Errors
    /// Storage or Redis errors; a sealing failure.
    pub async fn verify_mfa(&self, account_id: &str, code: &str) -> Result<Result<(), CodeError>> {
        if self.locked_as(CODES, account_id).await? {
            return Ok(Err(CodeError::Locked));
        }
        let Some((secret, true, last_step)) = self.mfa_secret(account_id).await? else {
            return Ok(Err(CodeError::Wrong));
        };
        let now = self.clock.now();
        let accepted = if let Some(step) = self.matching_step(secret.expose(), code, last_step) {
            let mut conn = self.db.pool().acquire().await?;
            self.use_step(&mut conn, account_id, step).await?
        } else {
            let normalised = normalise_recovery_code(code);
            if normalised.len() == RECOVERY_CHARS {
                let mut tx = self.db.begin().await?;
                let used = sqlx::query(
                    "UPDATE account_recovery_codes SET used_at = $3 \
                     WHERE account_id = $1 AND code_hash = $2 AND used_at IS NULL",
                )
                .bind(account_id)
                .bind(hash_token(&normalised))
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
                if used {
                    dge_store::audit(&mut tx, account_id, RECOVERY_CODE_USED, account_id, "", now)
                        .await?;
                    self.tell_recovery_code_used(&mut tx, account_id, now)
                        .await?;
                }
                tx.commit().await?;
                used
            } else {
                false
            }
        };
        if !accepted {
            return Ok(Err(
                if self.count_failure_as(CODES, account_id, FAILED).await? {
                    CodeError::Locked
                } else {
                    CodeError::Wrong
                },
            ));
        }
        self.forgive_failures(CODES, account_id).await;
        Ok(Ok(()))
    }

    /// Turns two-step verification off, with the current password and a code (or a
    /// recovery code). Administrators cannot.
    ///
    /// # Errors
    /// [`Error::Invalid`]: an administrator, a wrong password or code, or nothing to
    /// turn off.
    pub async fn disable_mfa(
        &self,
        account_id: &str,
        current: &Secret<String>,
        code: &str,
    ) -> Result<()> {
        let account = self.own_account(account_id).await?;
        let state = self.mfa_state(account_id).await?;
        if state.required {
            return Err(invalid(
                "mfa",
                "required_for_admins",
                "Les administrateurs doivent garder la vérification en deux étapes : elle ne peut \
                 pas être désactivée sur votre compte.",
            ));
        }
        if !state.enabled {
            return Err(invalid(
                "mfa",
                "not_enabled",
                "La vérification en deux étapes n'est pas activée sur votre compte.",
            ));
        }
        // An account that logs in only through an upstream provider has no password
        // to give: its code alone proves it.
        if self.has_password(account_id).await?
            && !self.current_password_ok(account_id, current).await?
        {
            return Err(crate::account::wrong_password());
        }
        match self.verify_mfa(account_id, code).await? {
            Ok(()) => {}
            Err(CodeError::Wrong) => return Err(wrong_code()),
            Err(CodeError::Locked) => return Err(locked()),
        }
        let now = self.clock.now();
        let mut tx = self.db.begin().await?;
        sqlx::query("DELETE FROM account_mfa WHERE account_id = $1")
            .bind(account_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM account_recovery_codes WHERE account_id = $1")
            .bind(account_id)
            .execute(&mut *tx)
            .await?;
        dge_store::audit(&mut tx, account_id, DISABLED, account_id, "", now).await?;
        self.tell_mfa_change(&mut tx, "mfa_disabled", &account, now)
            .await?;
        tx.commit().await?;
        self.db.access_changed().await;
        self.outbox.wake();
        tracing::info!(account_id = %account_id, "two-step verification disabled");
        Ok(())
    }

    /// Remembers a login whose first step passed, until its code (or the enrolment of
    /// an administrator) completes it; returns the random token for the browser's
    /// cookie. No session exists meanwhile. Kept in the shared store (Redis when
    /// replicas run), by the token's digest.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn begin_second_step(&self, pending: &PendingLogin) -> Result<String> {
        let token = dge_core::token::random_token();
        let mut pending = pending.clone();
        pending.epoch = dge_store::sessions::account_epoch(&self.db, &pending.account_id).await?;
        let value = serde_json::to_string(&pending).unwrap_or_default();
        self.throttle
            .store
            .put(
                &pending_key(&token),
                &value,
                std::time::Duration::from_secs(PENDING_SECS),
            )
            .await?;
        Ok(token)
    }

    /// The login waiting for its second step under `token`, if still there.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn pending_second_step(&self, token: &str) -> Result<Option<PendingLogin>> {
        if token.is_empty() || token.len() > 128 {
            return Ok(None);
        }
        let value = self.throttle.store.get(&pending_key(token)).await?;
        self.still_current(value.and_then(|v| serde_json::from_str(&v).ok()))
            .await
    }

    /// Forgets the login waiting under `token`; returns it if it was still there, so
    /// that only one request completes it.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn end_second_step(&self, token: &str) -> Result<Option<PendingLogin>> {
        let value = self.throttle.store.take(&pending_key(token)).await?;
        self.still_current(value.and_then(|v| serde_json::from_str(&v).ok()))
            .await
    }

    /// A waiting login whose account did not end everything since its first step
    /// (a reset, a suspension and reactivation…): the others are dropped. While the
    /// account is not active the login is kept, so that its end says why (the pages
    /// refuse it with the account's status, see `open_and_finish`).
    async fn still_current(&self, pending: Option<PendingLogin>) -> Result<Option<PendingLogin>> {
        let Some(pending) = pending else {
            return Ok(None);
        };
        let row = sqlx::query("SELECT sessions_epoch, status FROM accounts WHERE id = $1")
            .bind(&pending.account_id)
            .fetch_optional(self.db.pool())
            .await?;
        let Some(row) = row else { return Ok(None) };
        let status: String = row.try_get("status")?;
        let epoch: i64 = row.try_get("sessions_epoch")?;
        let current = status != "active" || pending.epoch == Some(epoch);
        Ok(current.then_some(pending))
    }
}

fn enrolment(secret: &[u8], issuer: &str, label: &str) -> Enrolment {
    let encoded = base32(secret);
    let uri = format!(
        "otpauth://totp/{}:{}?secret={encoded}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}",
        component(issuer),
        component(label),
        component(issuer),
    );
    let grouped = encoded
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    Enrolment {
        secret_base32: Secret::new(grouped),
        uri: Secret::new(uri),
    }
}

/// Whether an account (by id) must pass a code at login: two-step verification on.
///
/// # Errors
/// Storage errors.
pub async fn enabled(db: &dge_store::Db, account_id: &str) -> sqlx::Result<bool> {
    let found: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM account_mfa WHERE account_id = $1 AND confirmed_at IS NOT NULL",
    )
    .bind(account_id)
    .fetch_optional(db.pool())
    .await?;
    Ok(found.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_rfc_6238() {
        // RFC 6238 appendix B, SHA-1 secret "12345678901234567890": at T = 59 s the
        // 8-digit code is 94287082, so the 6-digit one is 287082.
        assert_eq!(code_at(b"12345678901234567890", 59 / 30), "287082");
        // At T = 1111111109 s: 07081804 → 081804.
        assert_eq!(
            code_at(b"12345678901234567890", 1_111_111_109 / 30),
            "081804"
        );
    }

    #[test]
    fn base32_round_trips() {
        let secret = b"12345678901234567890";
        let text = base32(secret);
        assert_eq!(text, "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        assert_eq!(decode_base32(&text).unwrap(), secret);
        assert_eq!(
            decode_base32("gezd gnbv gy3t qojq gezd gnbv gy3t qojq").unwrap(),
            secret
        );
        assert!(decode_base32("1!").is_none());
    }

    #[test]
    fn recovery_codes_are_random_and_normalised() {
        let a = random_recovery_code();
        let b = random_recovery_code();
        assert_ne!(a, b);
        assert_eq!(a.len(), RECOVERY_CHARS + 2);
        assert_eq!(
            normalise_recovery_code(&a.to_uppercase()).len(),
            RECOVERY_CHARS
        );
        assert_eq!(normalise_recovery_code(" abcd-EFGH-jk23 "), "abcdefghjk23");
    }

    #[test]
    fn the_uri_names_the_portal_and_the_login() {
        let e = enrolment(b"12345678901234567890", "Data Grand Est", "jdupont");
        assert_eq!(
            e.uri.expose(),
            "otpauth://totp/Data%20Grand%20Est:jdupont?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\
             &issuer=Data%20Grand%20Est&algorithm=SHA1&digits=6&period=30"
        );
        assert_eq!(
            e.secret_base32.expose(),
            "GEZD GNBV GY3T QOJQ GEZD GNBV GY3T QOJQ"
        );
    }
}
