//! Who may act on which account.
//!
//! Administrators act on everything. A delegated organisation administrator, with
//! two-step verification, validates and manages rights for the other members of
//! their own organisations only (not themselves, not global administrators), and
//! cannot touch the directory, modules or roles.

use dge_authz::Caller;
use dge_registry::Account;
use dge_store::Db;
use sqlx::Row;

use crate::{Error, Result};

/// A caller allowed to use the workflow.
#[derive(Debug, Clone)]
pub enum Actor {
    /// A DGE Identity administrator.
    Admin {
        /// For the audit log.
        label: String,
        /// The administrator's account, when the caller is a person rather than an
        /// API token (so that nobody revokes their own administration).
        account_id: Option<String>,
    },
    /// Administrator of the members of these organisations.
    OrganisationAdmin {
        /// For the audit log.
        label: String,
        /// Organisation ids.
        organisations: Vec<String>,
        /// Their own account, which they may not manage.
        account_id: String,
    },
}

impl Actor {
    /// Resolves a gRPC caller.
    ///
    /// # Errors
    /// [`Error::NotAllowed`] for a caller who administers nothing.
    pub async fn of(db: &Db, caller: &Caller) -> Result<Self> {
        if caller.is_admin() {
            let account_id = match caller {
                Caller::Account { id, .. } => Some(id.clone()),
                Caller::ApiToken { .. } | Caller::Service { .. } => None,
            };
            return Ok(Self::Admin {
                label: caller.actor(),
                account_id,
            });
        }
        let Caller::Account { id, client_id, .. } = caller else {
            return Err(Error::NotAllowed);
        };
        if caller.mfa_missing() {
            return Err(Error::MfaRequired);
        }
        // Delegated powers too come only through an administration client's token.
        if !dge_authz::caller::is_admin_client(db, client_id).await? {
            return Err(Error::NotAllowed);
        }
        let rows =
            sqlx::query("SELECT organisation_id FROM organisation_admins WHERE account_id = $1")
                .bind(id)
                .fetch_all(db.pool())
                .await?;
        let organisations = rows
            .iter()
            .map(|r| r.try_get("organisation_id"))
            .collect::<sqlx::Result<Vec<String>>>()?;
        if organisations.is_empty() {
            return Err(Error::NotAllowed);
        }
        // They validate accounts and grant rights: two-step verification, as for a
        // global administrator (before 2026-12-06 a password alone was enough).
        let enrolled = sqlx::query(
            "SELECT 1 AS ok FROM account_mfa WHERE account_id = $1 AND confirmed_at IS NOT NULL",
        )
        .bind(id)
        .fetch_optional(db.pool())
        .await?;
        if enrolled.is_none() {
            return Err(Error::MfaRequired);
        }
        Ok(Self::OrganisationAdmin {
            label: caller.actor(),
            organisations,
            account_id: id.clone(),
        })
    }

    /// The label recorded in the audit log.
    #[must_use]
    pub fn label(&self) -> &str {
        match self {
            Self::Admin { label, .. } | Self::OrganisationAdmin { label, .. } => label,
        }
    }

    /// Why this actor may not decide on or grant rights to `account`, if so (`None`:
    /// it may): an
    /// account outside a delegated administrator's organisations is not found (they
    /// learn nothing of it); their own account, or a global administrator's in their
    /// organisation, is not allowed (a delegated administrator granting themselves
    /// any right, or taking a global administrator's away, was a tester's finding).
    #[must_use]
    pub fn may_not_manage(&self, account: &Account) -> Option<Error> {
        match self {
            Self::Admin { .. } => None,
            Self::OrganisationAdmin {
                organisations,
                account_id,
                ..
            } => {
                let member = account
                    .organisation_id
                    .as_ref()
                    .is_some_and(|o| organisations.contains(o));
                if !member {
                    Some(Error::AccountNotFound)
                } else if account.id == *account_id || account.is_admin {
                    Some(Error::NotAllowed)
                } else {
                    None
                }
            }
        }
    }

    /// Fails unless this actor is a full administrator.
    ///
    /// # Errors
    /// [`Error::NotAllowed`].
    pub fn require_admin(&self) -> Result<()> {
        match self {
            Self::Admin { .. } => Ok(()),
            Self::OrganisationAdmin { .. } => Err(Error::NotAllowed),
        }
    }

    /// The organisations this actor is restricted to, if any.
    #[must_use]
    pub fn organisations(&self) -> Option<&[String]> {
        match self {
            Self::Admin { .. } => None,
            Self::OrganisationAdmin { organisations, .. } => Some(organisations),
        }
    }
}
