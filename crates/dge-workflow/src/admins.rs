//! Global administrators: accounts whose tokens administer DGE Identity
//! (`accounts.is_admin`), as opposed to delegated organisation administrators.
//!
//! Rules:
//! - only a global administrator (an admin API token or an admin account) may list,
//!   grant or revoke;
//! - only an active account becomes administrator: an unconfirmed, pending or
//!   rejected one never does;
//! - nobody revokes their own administration: another administrator (or an admin
//!   API token) must, so that a slip of the keyboard cannot lock a person out;
//! - the last active administrator account cannot be revoked, even by an API
//!   token: admin API tokens still exist then, but they are meant for bootstrap and
//!   automation, and someone must still be able to `dgectl login` as administrator;
//! - granting twice or revoking a non-administrator changes nothing and says so.
//!
//! Each change and its audit event share one transaction. Tokens carry no admin
//! flag: `dge_authz` reads `accounts.is_admin` at every call, so a revocation
//! applies to tokens issued before it.

use dge_registry::{Account, AccountStatus, store};
use sqlx::Row;

use crate::rights::check_reason;
use crate::{Actor, Error, Result, Workflow};

/// Audit action of a grant.
pub const GRANTED: &str = "admin.granted";
/// Audit action of a revocation.
pub const REVOKED: &str = "admin.revoked";

fn unknown_account() -> Error {
    Error::field("account", "unknown_account", "aucun compte ne porte ce nom")
}

/// Only an active account (address confirmed, validated) may administer.
fn check_may_administer(account: &Account) -> Result<()> {
    let (code, message) = match account.status {
        AccountStatus::Active => return Ok(()),
        AccountStatus::Unconfirmed => (
            "unconfirmed",
            "ce compte n'a pas confirmé son adresse : il ne peut pas devenir administrateur",
        ),
        AccountStatus::Pending => (
            "pending",
            "ce compte attend sa validation : il ne peut pas devenir administrateur",
        ),
        AccountStatus::Rejected => (
            "rejected",
            "ce compte a été refusé : il ne peut pas devenir administrateur",
        ),
        AccountStatus::Suspended => (
            "suspended",
            "ce compte est suspendu : il ne peut pas devenir administrateur",
        ),
    };
    Err(Error::field("account", code, message))
}

impl Workflow {
    async fn admin_subject(&self, actor: &Actor, key: &str, reason: &str) -> Result<Account> {
        actor.require_admin()?;
        check_reason(reason)?;
        store::find_account(self.db(), key)
            .await?
            .ok_or_else(unknown_account)
    }

    /// The global administrator accounts, oldest first.
    ///
    /// # Errors
    /// [`Error::NotAllowed`] unless `actor` is a global administrator; storage errors.
    pub async fn list_admins(&self, actor: &Actor) -> Result<Vec<Account>> {
        actor.require_admin()?;
        Ok(store::list_admins(self.db()).await?)
    }

    /// Makes an active account a global administrator. Returns false (and changes
    /// nothing, audits nothing) when it already was one.
    ///
    /// # Errors
    /// [`Error::NotAllowed`] unless `actor` is a global administrator,
    /// [`Error::Invalid`] for an unknown or inactive account or a bad reason.
    pub async fn grant_admin(
        &self,
        actor: &Actor,
        key: &str,
        reason: &str,
    ) -> Result<(bool, Account)> {
        let account = self.admin_subject(actor, key, reason).await?;
        if account.is_admin {
            return Ok((false, account));
        }
        check_may_administer(&account)?;
        let now = self.registry.now();
        let mut tx = self.db().begin().await?;
        // The status is checked again by the update itself, so that an account
        // rejected meanwhile does not become administrator.
        let changed = sqlx::query(
            "UPDATE accounts SET is_admin = 1, updated_at = $2 \
             WHERE id = $1 AND is_admin = 0 AND status = 'active'",
        )
        .bind(&account.id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if changed.rows_affected() == 0 {
            let current = store::find_account_in(&mut tx, &account.id)
                .await?
                .ok_or_else(unknown_account)?;
            if current.is_admin {
                return Ok((false, current));
            }
            check_may_administer(&current)?;
            return Err(Error::WrongState("account changed meanwhile".into()));
        }
        dge_store::audit(
            &mut tx,
            actor.label(),
            GRANTED,
            &account.id,
            reason.trim(),
            now,
        )
        .await?;
        let account = store::find_account_in(&mut tx, &account.id)
            .await?
            .ok_or_else(unknown_account)?;
        tx.commit().await?;
        self.db().access_changed().await;
        tracing::info!(account_id = %account.id, "global administrator granted");
        Ok((true, account))
    }

    /// Takes global administration away from an account. Returns false (and changes
    /// nothing, audits nothing) when it was not an administrator.
    ///
    /// # Errors
    /// [`Error::NotAllowed`] unless `actor` is a global administrator,
    /// [`Error::Invalid`] for an unknown account, the caller's own account, the last
    /// active administrator account, or a bad reason.
    pub async fn revoke_admin(
        &self,
        actor: &Actor,
        key: &str,
        reason: &str,
    ) -> Result<(bool, Account)> {
        let account = self.admin_subject(actor, key, reason).await?;
        if matches!(actor, Actor::Admin { account_id: Some(me), .. } if *me == account.id) {
            return Err(Error::field(
                "account",
                "self",
                "vous ne pouvez pas retirer vos propres droits d'administrateur : demandez-le à un autre administrateur",
            ));
        }
        if !account.is_admin {
            return Ok((false, account));
        }
        let now = self.registry.now();
        let mut tx = self.db().begin().await?;
        let others = other_active_admins(&mut tx, &account.id).await?;
        if others == 0 && account.status == AccountStatus::Active {
            return Err(Error::field(
                "account",
                "last_admin",
                "c'est le dernier compte administrateur actif : nommez-en un autre avant de lui retirer ce rôle",
            ));
        }
        let changed = sqlx::query(
            "UPDATE accounts SET is_admin = 0, updated_at = $2 WHERE id = $1 AND is_admin = 1",
        )
        .bind(&account.id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let current = store::find_account_in(&mut tx, &account.id)
            .await?
            .ok_or_else(unknown_account)?;
        if changed.rows_affected() == 0 {
            return Ok((false, current));
        }
        dge_store::audit(
            &mut tx,
            actor.label(),
            REVOKED,
            &account.id,
            reason.trim(),
            now,
        )
        .await?;
        tx.commit().await?;
        self.db().access_changed().await;
        tracing::info!(account_id = %account.id, "global administrator revoked");
        Ok((true, current))
    }
}

/// Active administrator accounts other than `account_id`, counted after locking every
/// administrator row (a no-op update: row locks on PostgreSQL, the write lock on
/// SQLite), so that two revocations or suspensions at once cannot each see the other
/// administrator and leave none.
pub(crate) async fn other_active_admins(
    tx: &mut dge_store::AnyConnection,
    account_id: &str,
) -> Result<i64> {
    sqlx::query("UPDATE accounts SET is_admin = 1 WHERE is_admin = 1")
        .execute(&mut *tx)
        .await?;
    Ok(sqlx::query(
        "SELECT COUNT(*) AS n FROM accounts WHERE is_admin = 1 AND status = 'active' AND id <> $1",
    )
    .bind(account_id)
    .fetch_one(&mut *tx)
    .await?
    .try_get("n")?)
}
