//! Suspension and reactivation of accounts by a global administrator.
//!
//! Rules:
//! - only a global administrator (an admin API token, or an admin account with
//!   two-step verification) may suspend or reactivate; delegated organisation
//!   administrators may not;
//! - only an active account is suspended, and only a suspended one is reactivated;
//!   anything else is a wrong state, so two administrators acting at once get
//!   exactly one outcome;
//! - a suspension needs a reason, kept in the audit log for the administrators; the
//!   person's email does not carry it and tells them to write to the team;
//! - nobody suspends their own account, and the last active administrator account
//!   is never suspended (as with `RevokeAdmin`), so that someone can still log in
//!   as administrator;
//! - the status change, the end of every session and token of the account, the
//!   cancellation of a pending change of address, the audit event and the email
//!   share one transaction; after the commit the `Check` caches of every replica
//!   forget the account and its Redis sessions are freed
//!   ([`dge_registry::Registry::everything_revoked`]);
//! - a reactivation ends every session and token again, in its transaction: one
//!   created while the account was suspended (a refresh or a login racing the
//!   suspension) does not come back, and the person logs in again;
//! - rights are kept: `Check` and `ListRights` refuse them while the account is not
//!   active, and a reactivation gives them back without a new validation.
//!   `WatchRights` streams `granted = false` for each right held after a suspension,
//!   and `granted = true` after a reactivation; a grant made to a suspended account
//!   is streamed only at the reactivation.

use dge_registry::AccountStatus::Suspended;
use dge_registry::reset::revoke_everything;
use dge_registry::{Account, AccountStatus, store};
use serde_json::json;
use sqlx::Row;

use crate::rights::check_reason;
use crate::{Actor, Error, Result, Workflow};

/// Audit action of a suspension.
pub const SUSPENDED: &str = "account.suspended";
/// Audit action of a reactivation.
pub const REACTIVATED: &str = "account.reactivated";

/// A suspension ends on its own at most this far ahead: five years, leap days
/// included whatever the dates.
pub const MAX_SUSPENSION_SECS: i64 = 5 * 366 * 24 * 3600;

/// The actor of the reactivations [`Workflow::end_due_suspensions`] makes, in the
/// audit log.
pub const SUSPENSION_END_ACTOR: &str = "system:suspension-end";

impl Workflow {
    /// The account `key` (id, login or email).
    async fn suspension_subject(&self, key: &str) -> Result<Account> {
        store::find_account(self.db(), key)
            .await?
            .ok_or(Error::AccountNotFound)
    }

    /// Suspends an active account: it can no longer log in, every session and token
    /// of it ends at once, and its rights are kept for a reactivation. The person is
    /// emailed (without the reason).
    ///
    /// # Errors
    /// [`Error::NotAllowed`] unless `actor` is a global administrator;
    /// [`Error::Invalid`] without a reason, with a bad one, or for the caller's own
    /// account; [`Error::AccountNotFound`]; [`Error::WrongState`] for an account
    /// that is not active, or the last active administrator account; storage errors.
    pub async fn suspend(&self, actor: &Actor, key: &str, reason: &str) -> Result<Account> {
        self.suspend_until(actor, key, reason, None).await
    }

    /// [`Self::suspend`]; with `until` (Unix seconds, in the future, at most
    /// [`MAX_SUSPENSION_SECS`] ahead), the account is reactivated on its own then, by
    /// [`Self::end_due_suspensions`], and the person's email says when.
    ///
    /// # Errors
    /// As [`Self::suspend`]; [`Error::Invalid`] for an end in the past or too far.
    pub async fn suspend_until(
        &self,
        actor: &Actor,
        key: &str,
        reason: &str,
        until: Option<i64>,
    ) -> Result<Account> {
        actor.require_admin()?;
        let now = self.registry.now();
        if let Some(until) = until {
            if until <= now {
                return Err(Error::field(
                    "until",
                    "in_the_past",
                    "la date de fin de la suspension doit être dans le futur",
                ));
            }
            if until - now > MAX_SUSPENSION_SECS {
                return Err(Error::field(
                    "until",
                    "too_far",
                    "la date de fin de la suspension doit être dans les cinq ans",
                ));
            }
        }
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(Error::field(
                "reason",
                "required",
                "le motif de la suspension est obligatoire",
            ));
        }
        check_reason(reason)?;
        let account = self.suspension_subject(key).await?;
        if matches!(actor, Actor::Admin { account_id: Some(me), .. } if *me == account.id) {
            return Err(Error::field(
                "account",
                "self",
                "vous ne pouvez pas suspendre votre propre compte : demandez-le à un autre administrateur",
            ));
        }
        if account.status != AccountStatus::Active {
            return Err(not_active(account.status));
        }
        let ending = self.registry.sessions_to_end(&account.id).await;
        let mut tx = self.db().begin().await?;
        if account.is_admin {
            let others = crate::admins::other_active_admins(&mut tx, &account.id).await?;
            if others == 0 {
                return Err(Error::WrongState(
                    "this is the last active administrator account: name another administrator \
                     before suspending it"
                        .into(),
                ));
            }
        }
        let moved = switch_status(&mut tx, &account.id, AccountStatus::Active, Suspended, now);
        if let Err(current) = moved.await? {
            return Err(not_active(current));
        }
        set_suspended_until(&mut tx, &account.id, until).await?;
        revoke_everything(&mut tx, &account.id, now).await?;
        // A pending change of address must not be confirmed while suspended.
        sqlx::query(
            "UPDATE email_changes SET used_at = $1, updated_at = $1 \
             WHERE account_id = $2 AND used_at IS NULL",
        )
        .bind(now)
        .bind(&account.id)
        .execute(&mut *tx)
        .await?;
        let rights = held_rights(&mut tx, &account.id, now).await?;
        let (detail, context) = match until {
            Some(until) => {
                // « 15/01/2027 à 08:00 UTC »
                let until = dge_core::time::format_fr(until).replacen(' ', " à ", 1);
                (
                    format!("{reason} (jusqu'au {until})"),
                    json!({ "until": until }),
                )
            }
            None => (reason.to_owned(), json!({})),
        };
        dge_store::audit(&mut tx, actor.label(), SUSPENDED, &account.id, &detail, now).await?;
        self.registry
            .outbox()
            .enqueue(
                &mut tx,
                "account_suspended",
                &account.email,
                &account.given_name,
                context,
                now,
            )
            .await?;
        tx.commit().await?;
        // Every replica's `Check` caches forget the account, its Redis sessions go,
        // and the email leaves.
        self.registry.everything_revoked(&account.id, ending).await;
        // `WatchRights` caches drop the rights `Check` now refuses.
        for right in &rights {
            self.publish(&account.id, right, false, now).await;
        }
        tracing::info!(account_id = %account.id, "account suspended; sessions and tokens ended");
        store::find_account(self.db(), &account.id)
            .await?
            .ok_or(Error::AccountNotFound)
    }

    /// Returns a suspended account to active, with the rights it held. The person
    /// is emailed. `reason` is optional and goes to the audit log.
    ///
    /// # Errors
    /// [`Error::NotAllowed`] unless `actor` is a global administrator;
    /// [`Error::Invalid`] for a bad reason; [`Error::AccountNotFound`];
    /// [`Error::WrongState`] for an account that is not suspended; storage errors.
    pub async fn reactivate(&self, actor: &Actor, key: &str, reason: &str) -> Result<Account> {
        self.reactivate_when(actor, key, reason, false).await
    }

    /// [`Self::reactivate`]; with `only_if_due`, only a suspension whose end date has
    /// come is ended: one made again meanwhile (by hand, without a date or with a
    /// later one) is left alone, as [`Error::WrongState`].
    async fn reactivate_when(
        &self,
        actor: &Actor,
        key: &str,
        reason: &str,
        only_if_due: bool,
    ) -> Result<Account> {
        actor.require_admin()?;
        let reason = reason.trim();
        check_reason(reason)?;
        let account = self.suspension_subject(key).await?;
        if account.status != AccountStatus::Suspended {
            return Err(not_suspended(account.status));
        }
        let now = self.registry.now();
        let ending = self.registry.sessions_to_end(&account.id).await;
        let mut tx = self.db().begin().await?;
        if only_if_due && !still_due(&mut tx, &account.id, now).await? {
            return Err(Error::WrongState(
                "the suspension no longer ends now: it was changed meanwhile".into(),
            ));
        }
        let moved = switch_status(&mut tx, &account.id, Suspended, AccountStatus::Active, now);
        if let Err(current) = moved.await? {
            return Err(not_suspended(current));
        }
        set_suspended_until(&mut tx, &account.id, None).await?;
        // A session or token created while suspended (a refresh or a login that
        // raced the suspension) must not come back: the person logs in again.
        revoke_everything(&mut tx, &account.id, now).await?;
        let rights = held_rights(&mut tx, &account.id, now).await?;
        dge_store::audit(
            &mut tx,
            actor.label(),
            REACTIVATED,
            &account.id,
            reason,
            now,
        )
        .await?;
        self.registry
            .outbox()
            .enqueue(
                &mut tx,
                "account_reactivated",
                &account.email,
                &account.given_name,
                json!({ "login_url": format!("{}/login", self.public_url) }),
                now,
            )
            .await?;
        tx.commit().await?;
        self.registry.everything_revoked(&account.id, ending).await;
        for right in &rights {
            self.publish(&account.id, right, true, now).await;
        }
        tracing::info!(account_id = %account.id, "account reactivated; the person logs in again");
        store::find_account(self.db(), &account.id)
            .await?
            .ok_or(Error::AccountNotFound)
    }
}

impl Workflow {
    /// Reactivates, as [`Self::reactivate`] does, every suspended account whose
    /// suspension has reached its end date; returns how many. Several replicas may run
    /// it at once: the status change is conditional, so each account is reactivated
    /// once, and the others skip it. One that fails is logged and retried at the next
    /// run.
    ///
    /// # Errors
    /// Storage errors while listing the accounts.
    pub async fn end_due_suspensions(&self) -> Result<usize> {
        let rows = sqlx::query(
            "SELECT id FROM accounts WHERE status = 'suspended' \
             AND suspended_until IS NOT NULL AND suspended_until <= $1 ORDER BY suspended_until",
        )
        .bind(self.registry.now())
        .fetch_all(self.db().pool())
        .await?;
        let mut ended = 0;
        for row in rows {
            let id: String = row.try_get("id")?;
            match self.end_suspension_if_due(&id).await {
                Ok(_) => ended += 1,
                // Reactivated meanwhile by an administrator or another replica.
                Err(Error::WrongState(_)) => {}
                Err(e) => {
                    tracing::error!(account_id = %id, error = %dge_core::ErrorChain(&e), "suspension not ended at its date");
                }
            }
        }
        Ok(ended)
    }

    /// Ends the suspension of `key` if its end date has come, as
    /// [`Self::end_due_suspensions`] does for each account it lists: checked again
    /// under the row's lock, so a suspension made again after the listing (without a
    /// date, or with a later one) is left alone.
    ///
    /// # Errors
    /// [`Error::WrongState`] when the account is not suspended or its suspension is
    /// not due; [`Error::AccountNotFound`]; storage errors.
    pub async fn end_suspension_if_due(&self, key: &str) -> Result<Account> {
        let system = Actor::Admin {
            label: SUSPENSION_END_ACTOR.to_owned(),
            account_id: None,
        };
        self.reactivate_when(&system, key, "fin de la suspension à la date prévue", true)
            .await
    }
}

/// Whether the suspension of `account_id` is due to end at `now`, read with the row
/// locked until the transaction ends (PostgreSQL), or under SQLite's write lock
/// (taken by `BEGIN IMMEDIATE`): a suspension made again meanwhile is not ended.
async fn still_due(conn: &mut sqlx::AnyConnection, account_id: &str, now: i64) -> Result<bool> {
    let lock = if conn.backend_name() == "PostgreSQL" {
        " FOR UPDATE"
    } else {
        ""
    };
    let sql = format!(
        "SELECT 1 AS due FROM accounts WHERE id = $1 AND status = 'suspended' \
         AND suspended_until IS NOT NULL AND suspended_until <= $2{lock}"
    );
    let row = sqlx::query(&sql)
        .bind(account_id)
        .bind(now)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.is_some())
}

/// Sets or clears the date a suspension ends on its own.
async fn set_suspended_until(
    conn: &mut sqlx::AnyConnection,
    account_id: &str,
    until: Option<i64>,
) -> Result<()> {
    sqlx::query("UPDATE accounts SET suspended_until = $1 WHERE id = $2")
        .bind(until)
        .bind(account_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The rights `account_id` holds at `now`, as `Check` sees them.
async fn held_rights(
    conn: &mut sqlx::AnyConnection,
    account_id: &str,
    now: i64,
) -> Result<Vec<String>> {
    let rows = sqlx::query(
        "SELECT right_name FROM grants WHERE account_id = $1 \
         AND (expires_at IS NULL OR expires_at > $2) ORDER BY right_name",
    )
    .bind(account_id)
    .bind(now)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .iter()
        .map(|r| r.try_get("right_name"))
        .collect::<sqlx::Result<_>>()?)
}

/// Moves the account from `from` to `to` within `tx`; `Err` with its status when it
/// was no longer `from` (another administrator changed it meanwhile).
async fn switch_status(
    tx: &mut dge_store::AnyConnection,
    account_id: &str,
    from: AccountStatus,
    to: AccountStatus,
    now: i64,
) -> Result<std::result::Result<(), AccountStatus>> {
    let changed = sqlx::query(
        "UPDATE accounts SET status = $1, updated_at = $2 WHERE id = $3 AND status = $4",
    )
    .bind(to.as_str())
    .bind(now)
    .bind(account_id)
    .bind(from.as_str())
    .execute(&mut *tx)
    .await?;
    if changed.rows_affected() == 1 {
        return Ok(Ok(()));
    }
    let current = store::find_account_in(tx, account_id)
        .await?
        .ok_or(Error::AccountNotFound)?;
    Ok(Err(current.status))
}

fn not_active(status: AccountStatus) -> Error {
    Error::WrongState(format!(
        "account is {}, not active: only an active account can be suspended",
        status.as_str()
    ))
}

fn not_suspended(status: AccountStatus) -> Error {
    Error::WrongState(format!(
        "account is {}, not suspended: only a suspended account can be reactivated",
        status.as_str()
    ))
}
