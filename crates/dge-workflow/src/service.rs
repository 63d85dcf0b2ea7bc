//! Approvals and rejections.

use dge_core::MaskedEmail;
use dge_registry::{Account, AccountStatus, Registry, store};
use serde_json::json;
use tokio::sync::broadcast;

use crate::rights::Change;
use crate::{Actor, Error, Result};

/// Longest rejection reason.
const REASON_MAX: usize = 2000;

/// The workflow over the registry's accounts. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Workflow {
    pub(crate) registry: Registry,
    pub(crate) public_url: String,
    pub(crate) changes: broadcast::Sender<Change>,
    /// Fires when this replica's watchers may have missed changes (see
    /// [`Workflow::watch_missed`]).
    pub(crate) missed: broadcast::Sender<()>,
    /// Shared notices, so that watchers on every replica hear of every change.
    pub(crate) notices: Option<dge_store::ephemeral::Ephemeral>,
}

/// A rejection's reason as the person's email will show it: trimmed, line breaks as
/// `\n` (a lone `\r` too), at most 2 000 characters, no control character but line
/// breaks and tabs, nothing that reorders or hides text (U+202E, U+200B…).
///
/// # Errors
/// [`Error::Invalid`] on `reason`: `required`, `too_long`, `control_characters`.
pub fn rejection_reason(reason: &str) -> Result<String> {
    let reason = reason.trim().replace("\r\n", "\n").replace('\r', "\n");
    if reason.is_empty() {
        return Err(Error::field(
            "reason",
            "required",
            "le motif du refus est obligatoire (2000 caractères au plus)",
        ));
    }
    if reason.chars().count() > REASON_MAX {
        return Err(Error::field(
            "reason",
            "too_long",
            "le motif du refus ne peut pas dépasser 2000 caractères",
        ));
    }
    if dge_registry::domain::signup::has_hidden_characters_in_lines(&reason) {
        return Err(Error::field(
            "reason",
            "control_characters",
            "le motif contient des caractères non autorisés (caractères de contrôle ou \
             invisibles) : seuls les retours à la ligne sont admis",
        ));
    }
    Ok(reason)
}

impl Workflow {
    /// A new workflow; `public_url` is used for links in emails.
    #[must_use]
    pub fn new(registry: Registry, public_url: String) -> Self {
        let (changes, _) = broadcast::channel(1024);
        let (missed, _) = broadcast::channel(16);
        Self {
            registry,
            public_url,
            changes,
            missed,
            notices: None,
        }
    }

    /// Shares rights changes through `notices` (Redis pub/sub between replicas), so a
    /// `WatchRights` stream on any replica sees a grant made on another. Run
    /// [`Workflow::relay_changes`] alongside.
    #[must_use]
    pub fn with_notices(mut self, notices: dge_store::ephemeral::Ephemeral) -> Self {
        self.notices = Some(notices);
        self
    }

    /// The registry underneath.
    #[must_use]
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub(crate) fn db(&self) -> &dge_store::Db {
        self.registry.db()
    }

    /// Loads an account the actor may manage.
    pub(crate) async fn managed_account(&self, actor: &Actor, key: &str) -> Result<Account> {
        let account = store::find_account(self.db(), key)
            .await?
            .ok_or(Error::AccountNotFound)?;
        // A delegated administrator learns nothing about accounts outside their
        // organisations, not even that they exist.
        match actor.may_not_manage(&account) {
            None => Ok(account),
            Some(refusal) => Err(refusal),
        }
    }

    /// Activates a pending account, grants `rights` in the same transaction, and
    /// emails the person. Only a pending account changes, so two administrators
    /// acting at once get exactly one outcome.
    ///
    /// # Errors
    /// [`Error::AccountNotFound`], [`Error::RightNotFound`], [`Error::WrongState`],
    /// storage errors.
    pub async fn approve(&self, actor: &Actor, key: &str, rights: &[String]) -> Result<Account> {
        // Each right once, spaces around it dropped, as a role's rights.
        let rights = crate::distinct_trimmed(rights);
        if rights.iter().any(|r| r.is_empty()) {
            return Err(Error::field(
                "grant_rights",
                "empty",
                "un droit à accorder est vide : nommez-le module:droit",
            ));
        }
        // Every unknown right named at once, before anything is written.
        let mut conn = self.db().pool().acquire().await?;
        let unknown = crate::rights::undeclared(&mut conn, &rights).await?;
        if !unknown.is_empty() {
            return Err(Error::RightNotFound("grant_rights", unknown));
        }
        self.decide(actor, key, AccountStatus::Active, "", &rights)
            .await
            .map_err(|err| match err {
                Error::RightNotFound(_, name) => Error::RightNotFound("grant_rights", name),
                other => other,
            })
    }

    /// Rejects a pending account with a reason, emailed to the person.
    ///
    /// # Errors
    /// [`Error::Invalid`] without a reason, then as [`Self::approve`].
    pub async fn reject(&self, actor: &Actor, key: &str, reason: &str) -> Result<Account> {
        let reason = rejection_reason(reason)?;
        self.decide(actor, key, AccountStatus::Rejected, &reason, &[])
            .await
    }

    async fn decide(
        &self,
        actor: &Actor,
        key: &str,
        to: AccountStatus,
        reason: &str,
        rights: &[&str],
    ) -> Result<Account> {
        let account = self.managed_account(actor, key).await?;
        let now = self.registry.now();
        let mut tx = self.db().begin().await?;
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
            // Read when the call began: pending then means another decision took it
            // in between.
            return Err(Error::WrongState(
                if account.status == AccountStatus::Pending {
                    "account was decided meanwhile by another call, not pending any more".into()
                } else {
                    format!("account is {}, not pending", account.status.as_str())
                },
            ));
        }
        let mut granted = Vec::new();
        for &right in rights {
            let grant = crate::rights::NewGrant {
                account_id: &account.id,
                right,
                by: actor.label(),
                reason: "granted on approval",
                expires_at: None,
            };
            let outcome =
                crate::rights::insert_grant(&mut tx, &grant, now, crate::rights::WhenHeld::Keep)
                    .await?;
            if outcome == crate::rights::GrantOutcome::Granted {
                granted.push(right);
            }
        }
        let held = if to == AccountStatus::Active {
            store::held_right_labels(&mut tx, &account.id, now).await?
        } else {
            Vec::new()
        };
        let (action, kind, extra) = match to {
            // The email names the rights granted with the approval, if any.
            AccountStatus::Active => (
                "account.approved",
                "account_activated",
                json!({ "login_url": format!("{}/login", self.public_url), "rights": held }),
            ),
            _ => (
                "account.rejected",
                "account_rejected",
                json!({ "reason": reason }),
            ),
        };
        dge_store::audit(&mut tx, actor.label(), action, &account.id, reason, now).await?;
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
        tx.commit().await?;
        self.db().access_changed().await;
        self.registry.outbox().wake();
        for right in granted {
            self.publish(&account.id, right, true, now).await;
        }
        tracing::info!(account_id = %account.id, email = %MaskedEmail(&account.email), action, "account decided");
        store::find_account(self.db(), &account.id)
            .await?
            .ok_or(Error::AccountNotFound)
    }

    /// Decides several accounts, each in its own transaction; returns one result
    /// per account, in order.
    pub async fn decide_many(
        &self,
        actor: &Actor,
        keys: &[String],
        approve: bool,
        reason: &str,
    ) -> Vec<(String, Result<Account>)> {
        let mut results = Vec::with_capacity(keys.len());
        let mut decided = std::collections::HashSet::new();
        // A key named twice is decided once, and answered once.
        for key in crate::distinct_trimmed(keys) {
            let outcome = if approve {
                self.approve(actor, key, &[]).await
            } else {
                self.reject(actor, key, reason).await
            };
            // The same account named another way (`DUP1` after `dup1`, its address):
            // decided already in this batch, not a failure to report.
            if matches!(outcome, Err(Error::WrongState(_)))
                && let Ok(Some(account)) = dge_registry::store::find_account(self.db(), key).await
                && decided.contains(&account.id)
            {
                continue;
            }
            if let Ok(account) = &outcome {
                decided.insert(account.id.clone());
            }
            results.push((key.to_owned(), outcome));
        }
        results
    }
}
