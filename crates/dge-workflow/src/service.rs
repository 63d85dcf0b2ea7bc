//! Approvals, rejections and grants.

use dge_core::{MaskedEmail, Violations};
use dge_registry::{Account, AccountStatus, Registry, store};
use serde_json::json;
use sqlx::Row;

use crate::{Error, Result};

/// The workflow over the registry's accounts.
#[derive(Debug, Clone)]
pub struct Workflow {
    registry: Registry,
    public_url: String,
}

impl Workflow {
    /// A new workflow; `public_url` is used for links in emails.
    #[must_use]
    pub fn new(registry: Registry, public_url: String) -> Self {
        Self {
            registry,
            public_url,
        }
    }

    /// The registry underneath.
    #[must_use]
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Activates a pending account and emails the person. The status change only
    /// applies to a pending account, so two admins acting at once get exactly one
    /// outcome.
    ///
    /// # Errors
    /// [`Error::AccountNotFound`], [`Error::WrongState`], storage errors.
    pub async fn approve(&self, actor: &str, key: &str) -> Result<Account> {
        self.decide(actor, key, AccountStatus::Active, "").await
    }

    /// Rejects a pending account with a reason, emailed to the person.
    ///
    /// # Errors
    /// [`Error::Invalid`] without a reason, [`Error::AccountNotFound`],
    /// [`Error::WrongState`], storage errors.
    pub async fn reject(&self, actor: &str, key: &str, reason: &str) -> Result<Account> {
        let reason = reason.trim();
        if reason.is_empty() || reason.chars().count() > 2000 {
            let mut v = Violations::new();
            v.add(
                "reason",
                "required",
                "le motif du refus est obligatoire (2000 caractères au plus)",
            );
            return Err(Error::Invalid(v));
        }
        self.decide(actor, key, AccountStatus::Rejected, reason)
            .await
    }

    async fn decide(
        &self,
        actor: &str,
        key: &str,
        to: AccountStatus,
        reason: &str,
    ) -> Result<Account> {
        let now = self.registry.now();
        let mut tx = self.registry.db().begin().await?;
        let account = store::find_account_in(&mut tx, key)
            .await?
            .ok_or(Error::AccountNotFound)?;
        let changed = sqlx::query(
            "UPDATE accounts SET status = $1, rejection_reason = $2, updated_at = $3 \
             WHERE id = $4 AND status = 'pending'",
        )
        .bind(to.as_str())
        .bind(reason)
        .bind(now)
        .bind(&account.id)
        .execute(&mut *tx)
        .await?;
        if changed.rows_affected() != 1 {
            return Err(Error::WrongState(account.status.as_str()));
        }
        let (action, kind, extra) = match to {
            AccountStatus::Active => (
                "account.approved",
                "account_activated",
                json!({ "login_url": format!("{}/login", self.public_url) }),
            ),
            _ => (
                "account.rejected",
                "account_rejected",
                json!({ "reason": reason }),
            ),
        };
        dge_store::audit(&mut tx, actor, action, &account.id, reason, now).await?;
        self.registry
            .outbox()
            .enqueue(
                &mut tx,
                kind,
                &account.email,
                &account.given_name,
                extra,
                now,
            )
            .await?;
        let account = store::find_account_in(&mut tx, &account.id)
            .await?
            .ok_or(Error::AccountNotFound)?;
        tx.commit().await?;
        self.registry.outbox().wake();
        tracing::info!(account_id = %account.id, email = %MaskedEmail(&account.email), action, "account decided");
        Ok(account)
    }

    /// Grants `right` to an account. Returns false when it was already held.
    ///
    /// # Errors
    /// [`Error::AccountNotFound`], [`Error::RightNotFound`], storage errors.
    pub async fn grant(&self, actor: &str, key: &str, right: &str, reason: &str) -> Result<bool> {
        let now = self.registry.now();
        let mut tx = self.registry.db().begin().await?;
        let account = store::find_account_in(&mut tx, key)
            .await?
            .ok_or(Error::AccountNotFound)?;
        let known = sqlx::query("SELECT 1 AS found FROM rights WHERE name = $1")
            .bind(right)
            .fetch_optional(&mut *tx)
            .await?;
        if known.is_none() {
            return Err(Error::RightNotFound);
        }
        let held =
            sqlx::query("SELECT 1 AS found FROM grants WHERE account_id = $1 AND right_name = $2")
                .bind(&account.id)
                .bind(right)
                .fetch_optional(&mut *tx)
                .await?;
        if held.is_some() {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO grants (account_id, right_name, granted_by, reason, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&account.id)
        .bind(right)
        .bind(actor)
        .bind(reason.trim())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        dge_store::audit(&mut tx, actor, "right.granted", &account.id, right, now).await?;
        tx.commit().await?;
        tracing::info!(account_id = %account.id, right, "right granted");
        Ok(true)
    }

    /// Revokes `right`. Returns false when it was not held.
    ///
    /// # Errors
    /// [`Error::AccountNotFound`], storage errors.
    pub async fn revoke(&self, actor: &str, key: &str, right: &str) -> Result<bool> {
        let now = self.registry.now();
        let mut tx = self.registry.db().begin().await?;
        let account = store::find_account_in(&mut tx, key)
            .await?
            .ok_or(Error::AccountNotFound)?;
        let gone = sqlx::query("DELETE FROM grants WHERE account_id = $1 AND right_name = $2")
            .bind(&account.id)
            .bind(right)
            .execute(&mut *tx)
            .await?;
        if gone.rows_affected() == 0 {
            return Ok(false);
        }
        dge_store::audit(&mut tx, actor, "right.revoked", &account.id, right, now).await?;
        tx.commit().await?;
        tracing::info!(account_id = %account.id, right, "right revoked");
        Ok(true)
    }

    /// The organisation directory: `(id, name, siret, trusted, status, domains)`.
    ///
    /// # Errors
    /// Fails when the database fails.
    pub async fn organisations(&self) -> Result<Vec<dge_proto::v1::Organisation>> {
        let rows = sqlx::query(
            "SELECT id, name, siret, trusted, status, email_domains FROM organisations ORDER BY status, name_key",
        )
        .fetch_all(self.registry.db().pool())
        .await?;
        rows.iter()
            .map(|r| {
                let domains: String = r.try_get("email_domains")?;
                Ok(dge_proto::v1::Organisation {
                    id: r.try_get("id")?,
                    name: r.try_get("name")?,
                    siret: r.try_get::<Option<String>, _>("siret")?.unwrap_or_default(),
                    trusted: r.try_get::<i64, _>("trusted")? == 1,
                    status: r.try_get("status")?,
                    email_domains: domains
                        .split(',')
                        .filter(|d| !d.is_empty())
                        .map(str::to_owned)
                        .collect(),
                })
            })
            .collect::<sqlx::Result<_>>()
            .map_err(Error::Store)
    }

    /// Modules and their rights.
    ///
    /// # Errors
    /// Fails when the database fails.
    pub async fn modules(&self) -> Result<Vec<dge_proto::v1::Module>> {
        let rows = sqlx::query(
            "SELECT m.name AS module, m.label AS module_label, r.name AS right_name, r.label AS right_label \
             FROM modules m LEFT JOIN rights r ON r.module = m.name ORDER BY m.name, r.name",
        )
        .fetch_all(self.registry.db().pool())
        .await?;
        let mut modules: Vec<dge_proto::v1::Module> = Vec::new();
        for r in &rows {
            let name: String = r.try_get("module")?;
            if modules.last().is_none_or(|m| m.name != name) {
                modules.push(dge_proto::v1::Module {
                    name: name.clone(),
                    label: r.try_get("module_label")?,
                    rights: vec![],
                });
            }
            let right: Option<String> = r.try_get("right_name")?;
            if let (Some(right), Some(m)) = (right, modules.last_mut()) {
                m.rights.push(dge_proto::v1::Right {
                    name: right,
                    label: r.try_get("right_label")?,
                });
            }
        }
        Ok(modules)
    }
}
