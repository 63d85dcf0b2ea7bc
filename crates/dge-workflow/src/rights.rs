//! Modules, rights, role bundles, grants, the audit log, and the stream of changes.

use dge_authz::grpc::is_right_name;
use dge_registry::{Account, AccountStatus, store};
use sqlx::{AnyConnection, Row};
use tokio::sync::broadcast;

use crate::{Actor, Error, Result, Workflow};

/// A grant or revocation, as streamed to modules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The account.
    pub account_id: String,
    /// The right.
    pub right: String,
    /// Granted (true) or revoked (false).
    pub granted: bool,
    /// When, Unix seconds.
    pub at: i64,
}

/// The topic of rights changes in the shared store's notices.
const RIGHTS_TOPIC: &str = "rights";

impl Change {
    fn to_payload(&self) -> String {
        serde_json::json!({
            "account_id": self.account_id,
            "right": self.right,
            "granted": self.granted,
            "at": self.at,
        })
        .to_string()
    }

    fn from_payload(payload: &str) -> Option<Self> {
        let v: serde_json::Value = serde_json::from_str(payload).ok()?;
        Some(Self {
            account_id: v.get("account_id")?.as_str()?.to_owned(),
            right: v.get("right")?.as_str()?.to_owned(),
            granted: v.get("granted")?.as_bool()?,
            at: v.get("at")?.as_i64()?,
        })
    }
}

/// A grant held by an account.
#[derive(Debug, Clone)]
pub struct GrantInfo {
    /// The right.
    pub right: String,
    /// Who granted it.
    pub granted_by: String,
    /// Why.
    pub reason: String,
    /// When.
    pub granted_at: i64,
    /// Until when, if it expires.
    pub expires_at: Option<i64>,
}

/// What defining a role did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleChange {
    /// The role did not exist before.
    pub created: bool,
    /// Rights the role has now and did not have, sorted.
    pub added: Vec<String>,
    /// Rights the role had and no longer has, sorted.
    pub removed: Vec<String>,
}

/// An audit event.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    /// Event id.
    pub id: String,
    /// Who acted.
    pub actor: String,
    /// What was done (`account.approved`, `right.granted` …).
    pub action: String,
    /// On what (an account or organisation id).
    pub subject: String,
    /// Details.
    pub detail: String,
    /// When.
    pub created_at: i64,
}

/// Filters of the audit log.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only this subject.
    pub subject: String,
    /// Only this actor.
    pub actor: String,
    /// From (inclusive), 0 for none.
    pub since: i64,
    /// Until (inclusive), 0 for none.
    pub until: i64,
    /// At most this many.
    pub limit: i64,
}

/// What a grant did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantOutcome {
    /// The account now holds the right (it did not, or its grant had ended).
    Granted,
    /// The account held the right; its end date is now the one asked.
    EndChanged,
    /// The account held the right, with that end date already.
    AlreadyHeld,
}

/// Whether a grant only adds the right, or also sets the end date of one already
/// held (an administrator's explicit grant: "this right, until then").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WhenHeld {
    Keep,
    SetEnd,
}

/// A grant to write: who gets which right, from whom, why, until when.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NewGrant<'a> {
    pub(crate) account_id: &'a str,
    pub(crate) right: &'a str,
    pub(crate) by: &'a str,
    pub(crate) reason: &'a str,
    pub(crate) expires_at: Option<i64>,
}

/// The rights of `rights` nobody declared, in order.
pub(crate) async fn undeclared(conn: &mut AnyConnection, rights: &[&str]) -> Result<Vec<String>> {
    let mut unknown = Vec::new();
    for &right in rights {
        let declared = sqlx::query("SELECT 1 AS found FROM rights WHERE name = $1")
            .bind(right)
            .fetch_optional(&mut *conn)
            .await?;
        if declared.is_none() {
            unknown.push(right.to_owned());
        }
    }
    Ok(unknown)
}

/// [`Error::RightNotFound`], naming `field`, unless `right` is declared.
async fn require_declared(
    conn: &mut AnyConnection,
    field: &'static str,
    right: &str,
) -> Result<()> {
    let unknown = undeclared(conn, &[right]).await?;
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(Error::RightNotFound(field, unknown))
    }
}

/// Grants inside a transaction. The right must be declared. A grant whose end date
/// has passed is replaced, as if it had been revoked: it no longer counts, and
/// the person must be able to get the right again.
pub(crate) async fn insert_grant(
    conn: &mut AnyConnection,
    grant: &NewGrant<'_>,
    now: i64,
    when_held: WhenHeld,
) -> Result<GrantOutcome> {
    let NewGrant {
        account_id,
        right,
        by,
        reason,
        expires_at,
    } = *grant;
    require_declared(conn, "right", right).await?;
    // A new grant, or one replacing a grant whose end has passed; a held one is
    // left for the end-date rule below.
    let inserted = sqlx::query(
        "INSERT INTO grants (account_id, right_name, granted_by, reason, expires_at, \
         created_at) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (account_id, right_name) DO UPDATE SET granted_by = excluded.granted_by, \
         reason = excluded.reason, expires_at = excluded.expires_at, \
         created_at = excluded.created_at \
         WHERE grants.expires_at IS NOT NULL AND grants.expires_at <= excluded.created_at",
    )
    .bind(account_id)
    .bind(right)
    .bind(by)
    .bind(reason)
    .bind(expires_at)
    .bind(now)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1;
    if inserted {
        dge_store::audit(conn, by, "right.granted", account_id, right, now).await?;
        return Ok(GrantOutcome::Granted);
    }
    if when_held == WhenHeld::Keep {
        return Ok(GrantOutcome::AlreadyHeld);
    }
    let held: Option<i64> = sqlx::query_scalar(
        "SELECT expires_at FROM grants WHERE account_id = $1 AND right_name = $2",
    )
    .bind(account_id)
    .bind(right)
    .fetch_one(&mut *conn)
    .await?;
    if held == expires_at {
        return Ok(GrantOutcome::AlreadyHeld);
    }
    sqlx::query(
        "UPDATE grants SET granted_by = $3, \
         reason = CASE WHEN $4 = '' THEN reason ELSE $4 END, expires_at = $5 \
         WHERE account_id = $1 AND right_name = $2",
    )
    .bind(account_id)
    .bind(right)
    .bind(by)
    .bind(reason)
    .bind(expires_at)
    .execute(&mut *conn)
    .await?;
    let end = |at: Option<i64>| at.map_or_else(|| "none".to_owned(), |t| t.to_string());
    let detail = format!("{right} until={} was={}", end(expires_at), end(held));
    dge_store::audit(conn, by, "right.end_changed", account_id, &detail, now).await?;
    Ok(GrantOutcome::EndChanged)
}

/// The latest end date a grant may have: five years ahead, as for a suspension.
pub const GRANT_END_MAX_SECS: i64 = 5 * 366 * 24 * 3600;

/// The longest reason kept with a grant, in characters.
pub const REASON_MAX_CHARS: usize = 1000;

/// A grant's reason: at most [`REASON_MAX_CHARS`], no control character but line breaks.
pub(crate) fn check_reason(reason: &str) -> Result<()> {
    if reason.chars().count() > REASON_MAX_CHARS {
        return Err(Error::field(
            "reason",
            "too_long",
            "le motif ne peut pas dépasser 1000 caractères",
        ));
    }
    // Controls, and the invisible format characters that reorder or hide text in
    // the audit log (U+202E, U+200B…), as in every person's text.
    if dge_registry::domain::signup::has_hidden_characters_in_lines(reason) {
        return Err(Error::field(
            "reason",
            "control_characters",
            "le motif contient des caractères non autorisés",
        ));
    }
    Ok(())
}

/// Rights go to accounts whose address is confirmed: active ones, and pending ones so
/// that an administrator can grant while approving (issue 4). An unconfirmed sign-up
/// may belong to someone who does not own the address; a rejected one is closed. A
/// suspended account keeps its rights, and may be given more, for its reactivation:
/// `Check` refuses them all while it is suspended, and `WatchRights` streams them at
/// the reactivation, not at the grant.
fn check_grantable(account: &Account) -> Result<()> {
    match account.status {
        AccountStatus::Active | AccountStatus::Pending | AccountStatus::Suspended => Ok(()),
        AccountStatus::Unconfirmed => Err(Error::field(
            "account",
            "unconfirmed",
            "ce compte n'a pas encore confirmé son adresse : aucun droit ne peut lui être accordé",
        )),
        AccountStatus::Rejected => Err(Error::field(
            "account",
            "rejected",
            "ce compte a été refusé : aucun droit ne peut lui être accordé",
        )),
    }
}

fn check_label(field: &'static str, label: &str) -> Result<()> {
    if label.trim().is_empty() || label.chars().count() > 200 {
        return Err(Error::field(
            field,
            "invalid",
            "libellé obligatoire, 200 caractères au plus",
        ));
    }
    // Labels are shown in dgectl's tables and the audit log: no control character,
    // nor the invisible ones that reorder or hide text (U+202E, U+200B…).
    if dge_registry::domain::signup::has_hidden_characters(label) {
        return Err(Error::field(
            field,
            "control_characters",
            "le libellé contient des caractères non autorisés (invisibles ou de contrôle)",
        ));
    }
    if dge_registry::domain::signup::has_stacked_marks(label) {
        return Err(Error::field(
            field,
            "combining_marks",
            "le libellé superpose trop d'accents ou de signes sur une même lettre (3 au plus)",
        ));
    }
    Ok(())
}

/// The label to store and whether one was given: the given one, checked, else the
/// name, for a new entry; an upsert keeps a stored label when none is given
/// (`label_given` is 0), so that declaring again without one changes nothing.
fn label_or_name<'a>(label: &'a str, name: &'a str) -> Result<(&'a str, i64)> {
    let label = label.trim();
    if label.is_empty() {
        return Ok((name, 0));
    }
    check_label("label", label)?;
    Ok((label, 1))
}

impl Workflow {
    /// Tells every replica's watchers of a grant or revocation: through the shared
    /// store when there is one (Redis pub/sub between replicas), else in-process.
    pub(crate) async fn publish(&self, account_id: &str, right: &str, granted: bool, at: i64) {
        let change = Change {
            account_id: account_id.to_owned(),
            right: right.to_owned(),
            granted,
            at,
        };
        if let Some(notices) = &self.notices {
            match notices.notify(RIGHTS_TOPIC, &change.to_payload()).await {
                Ok(()) => return,
                // The grant is stored; this replica's watchers at least hear of it.
                Err(e) => {
                    tracing::warn!(error = %dge_core::ErrorChain(&e), "rights change not shared")
                }
            }
        }
        // No receiver is not an error: nobody is watching.
        let _ = self.changes.send(change);
    }

    /// Relays the rights changes every replica publishes to this replica's watchers,
    /// until `stop`. Needed only with [`Workflow::with_notices`].
    pub async fn relay_changes(self, stop: impl std::future::Future<Output = ()>) {
        let Some(store) = &self.notices else { return };
        let mut notices = store.subscribe();
        tokio::pin!(stop);
        loop {
            let notice = tokio::select! {
                () = &mut stop => break,
                n = notices.recv() => n,
            };
            match notice {
                Ok(n) if n.topic == RIGHTS_TOPIC => {
                    if let Some(change) = Change::from_payload(&n.payload) {
                        let _ = self.changes.send(change);
                    }
                }
                // Back from a Redis outage: changes made meanwhile on other replicas
                // never reached this one's watchers.
                Ok(n) if n.topic == "resync" => {
                    tracing::warn!("rights watchers told to reload: notices may have been lost");
                    let _ = self.missed.send(());
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "rights notices missed; watchers told to reload");
                    let _ = self.missed.send(());
                }
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
    }

    /// Every grant and revocation from now on.
    #[must_use]
    pub fn watch(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    /// Fires when changes may not have reached this replica's watchers: notices lost
    /// during a Redis outage, or more than this replica could keep up with. A watcher
    /// must then reload what it holds, and watch again.
    #[must_use]
    pub fn watch_missed(&self) -> broadcast::Receiver<()> {
        self.missed.subscribe()
    }

    /// Grants `right`, optionally until `expires_at`; a right already held gets
    /// that end date (none: no end).
    ///
    /// # Errors
    /// [`Error::AccountNotFound`], [`Error::RightNotFound`], [`Error::Invalid`] for an
    /// end date in the past or more than five years ahead; storage errors.
    pub async fn grant(
        &self,
        actor: &Actor,
        key: &str,
        right: &str,
        reason: &str,
        expires_at: Option<i64>,
    ) -> Result<GrantOutcome> {
        let account = self.managed_account(actor, key).await?;
        check_grantable(&account)?;
        check_reason(reason)?;
        let now = self.registry.now();
        if expires_at.is_some_and(|e| e <= now) {
            return Err(Error::field(
                "expires_at",
                "in_the_past",
                "la date de fin doit être dans le futur",
            ));
        }
        if expires_at.is_some_and(|e| e > now.saturating_add(GRANT_END_MAX_SECS)) {
            return Err(Error::field(
                "expires_at",
                "too_far",
                "la date de fin ne peut pas dépasser cinq ans",
            ));
        }
        let mut tx = self.db().begin().await?;
        let grant = NewGrant {
            account_id: &account.id,
            right,
            by: actor.label(),
            reason: reason.trim(),
            expires_at,
        };
        let outcome = insert_grant(&mut tx, &grant, now, WhenHeld::SetEnd).await?;
        tx.commit().await?;
        self.db().access_changed().await;
        if outcome == GrantOutcome::Granted {
            // A suspended account's grants are streamed at its reactivation.
            if account.status != AccountStatus::Suspended {
                self.publish(&account.id, right, true, now).await;
            }
            tracing::info!(account_id = %account.id, right, "right granted");
        } else if outcome == GrantOutcome::EndChanged {
            tracing::info!(account_id = %account.id, right, "end of a right changed");
        }
        Ok(outcome)
    }

    /// Revokes `right`. Returns false when it was not held.
    ///
    /// # Errors
    /// [`Error::AccountNotFound`], [`Error::RightNotFound`] for a right nobody
    /// declared; storage errors.
    pub async fn revoke(&self, actor: &Actor, key: &str, right: &str) -> Result<bool> {
        let account = self.managed_account(actor, key).await?;
        let now = self.registry.now();
        let mut tx = self.db().begin().await?;
        // A mistyped right is not "a right the account did not hold".
        require_declared(&mut tx, "right", right).await?;
        let gone = sqlx::query("DELETE FROM grants WHERE account_id = $1 AND right_name = $2")
            .bind(&account.id)
            .bind(right)
            .execute(&mut *tx)
            .await?;
        if gone.rows_affected() == 0 {
            return Ok(false);
        }
        dge_store::audit(
            &mut tx,
            actor.label(),
            "right.revoked",
            &account.id,
            right,
            now,
        )
        .await?;
        tx.commit().await?;
        self.db().access_changed().await;
        self.publish(&account.id, right, false, now).await;
        tracing::info!(account_id = %account.id, right, "right revoked");
        Ok(true)
    }

    /// Grants every right of a role bundle, all or nothing. Returns the rights newly granted.
    ///
    /// # Errors
    /// [`Error::RoleNotFound`] for an unknown role, then as [`Self::grant`].
    pub async fn grant_role(
        &self,
        actor: &Actor,
        key: &str,
        role: &str,
        reason: &str,
    ) -> Result<Vec<String>> {
        let account = self.managed_account(actor, key).await?;
        check_grantable(&account)?;
        check_reason(reason)?;
        let now = self.registry.now();
        let mut tx = self.db().begin().await?;
        let rows =
            sqlx::query("SELECT right_name FROM role_rights WHERE role = $1 ORDER BY right_name")
                .bind(role)
                .fetch_all(&mut *tx)
                .await?;
        if rows.is_empty() {
            return Err(Error::RoleNotFound);
        }
        let mut granted = Vec::new();
        for row in &rows {
            let right: String = row.try_get("right_name")?;
            let why = format!("role {role}: {}", reason.trim());
            let grant = NewGrant {
                account_id: &account.id,
                right: &right,
                by: actor.label(),
                reason: &why,
                expires_at: None,
            };
            let outcome = insert_grant(&mut tx, &grant, now, WhenHeld::Keep).await?;
            if outcome == GrantOutcome::Granted {
                granted.push(right);
            }
        }
        tx.commit().await?;
        self.db().access_changed().await;
        if account.status != AccountStatus::Suspended {
            for right in &granted {
                self.publish(&account.id, right, true, now).await;
            }
        }
        Ok(granted)
    }

    /// Declares a module (idempotent; the label is updated).
    ///
    /// # Errors
    /// [`Error::NotAllowed`] for a delegated administrator, [`Error::Invalid`].
    pub async fn declare_module(&self, actor: &Actor, name: &str, label: &str) -> Result<()> {
        actor.require_admin()?;
        let name_ok = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !name_ok {
            return Err(Error::field(
                "name",
                "invalid",
                "lettres minuscules, chiffres ou tirets, 64 au plus",
            ));
        }
        let (label, label_given) = label_or_name(label, name)?;
        let now = self.registry.now();
        let mut tx = self.db().begin().await?;
        sqlx::query(
            "INSERT INTO modules (name, label, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET label = CASE WHEN $4 = 1 THEN $2 ELSE modules.label END",
        )
        .bind(name)
        .bind(label)
        .bind(now)
        .bind(label_given)
        .execute(&mut *tx)
        .await?;
        // The label given, if any (without one, the stored label was kept).
        let detail = if label_given == 1 { label } else { "" };
        dge_store::audit(&mut tx, actor.label(), "module.declared", name, detail, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Declares a right `module:name` of an existing module (idempotent).
    ///
    /// # Errors
    /// [`Error::NotAllowed`], [`Error::Invalid`] (also when the module is unknown).
    pub async fn declare_right(&self, actor: &Actor, name: &str, label: &str) -> Result<()> {
        actor.require_admin()?;
        if !is_right_name(name) {
            return Err(Error::field(
                "name",
                "invalid",
                "un droit s'écrit module:droit",
            ));
        }
        let (label, label_given) = label_or_name(label, name)?;
        let module = name.split(':').next().unwrap_or_default();
        let now = self.registry.now();
        let mut tx = self.db().begin().await?;
        let known = sqlx::query("SELECT 1 AS found FROM modules WHERE name = $1")
            .bind(module)
            .fetch_optional(&mut *tx)
            .await?;
        if known.is_none() {
            return Err(Error::field(
                "name",
                "unknown_module",
                "ce module n'est pas déclaré",
            ));
        }
        sqlx::query(
            "INSERT INTO rights (name, module, label, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) DO UPDATE SET label = CASE WHEN $5 = 1 THEN $3 ELSE rights.label END",
        )
        .bind(name)
        .bind(module)
        .bind(label)
        .bind(now)
        .bind(label_given)
        .execute(&mut *tx)
        .await?;
        // The label given, if any (without one, the stored label was kept).
        let detail = if label_given == 1 { label } else { "" };
        dge_store::audit(&mut tx, actor.label(), "right.declared", name, detail, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Defines (or redefines) a role bundle, and says what a redefinition changed.
    ///
    /// # Errors
    /// [`Error::NotAllowed`], [`Error::Invalid`], [`Error::RightNotFound`].
    pub async fn define_role(
        &self,
        actor: &Actor,
        name: &str,
        label: &str,
        rights: &[String],
    ) -> Result<RoleChange> {
        actor.require_admin()?;
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        {
            return Err(Error::field(
                "name",
                "invalid",
                "lettres minuscules, chiffres, - ou _, 64 au plus",
            ));
        }
        let (label, label_given) = label_or_name(label, name)?;
        if rights.is_empty() {
            return Err(Error::field("rights", "required", "au moins un droit"));
        }
        let rights = crate::distinct_trimmed(rights);
        if rights.iter().any(|r| r.is_empty()) {
            return Err(Error::field(
                "rights",
                "empty",
                "un droit du rôle est vide : nommez-le module:droit",
            ));
        }
        let now = self.registry.now();
        let mut tx = self.db().begin().await?;
        // Every unknown right named at once, before anything is written.
        let unknown = undeclared(&mut tx, &rights).await?;
        if !unknown.is_empty() {
            return Err(Error::RightNotFound("rights", unknown));
        }
        let existed = sqlx::query("SELECT 1 AS found FROM roles WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        let before: Vec<String> =
            sqlx::query_scalar("SELECT right_name FROM role_rights WHERE role = $1")
                .bind(name)
                .fetch_all(&mut *tx)
                .await?;
        sqlx::query(
            "INSERT INTO roles (name, label, created_at, updated_at) VALUES ($1, $2, $3, $3) \
             ON CONFLICT (name) DO UPDATE \
             SET label = CASE WHEN $4 = 1 THEN $2 ELSE roles.label END, updated_at = $3",
        )
        .bind(name)
        .bind(label)
        .bind(now)
        .bind(label_given)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM role_rights WHERE role = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        for &right in &rights {
            sqlx::query("INSERT INTO role_rights (role, right_name) VALUES ($1, $2) ON CONFLICT (role, right_name) DO NOTHING")
                .bind(name)
                .bind(right)
                .execute(&mut *tx)
                .await?;
        }
        dge_store::audit(
            &mut tx,
            actor.label(),
            "role.defined",
            name,
            &rights.join(" "),
            now,
        )
        .await?;
        tx.commit().await?;
        // A new role has rights, not changes.
        let mut added: Vec<String> = rights
            .iter()
            .filter(|r| existed && !before.iter().any(|b| b == *r))
            .map(|r| (*r).to_owned())
            .collect();
        let mut removed: Vec<String> = before
            .into_iter()
            .filter(|b| !rights.contains(&b.as_str()))
            .collect();
        added.sort();
        removed.sort();
        Ok(RoleChange {
            created: !existed,
            added,
            removed,
        })
    }

    /// The grants an account holds, expired ones included, by right.
    ///
    /// # Errors
    /// [`Error::AccountNotFound`], storage errors.
    pub async fn grants(&self, actor: &Actor, key: &str) -> Result<Vec<GrantInfo>> {
        let account = self.managed_account(actor, key).await?;
        let rows = sqlx::query(
            "SELECT right_name, granted_by, reason, created_at, expires_at FROM grants WHERE account_id = $1 ORDER BY right_name",
        )
        .bind(&account.id)
        .fetch_all(self.db().pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(GrantInfo {
                    right: r.try_get("right_name")?,
                    granted_by: r.try_get("granted_by")?,
                    reason: r.try_get("reason")?,
                    granted_at: r.try_get("created_at")?,
                    expires_at: r.try_get("expires_at")?,
                })
            })
            .collect::<sqlx::Result<_>>()
            .map_err(Error::Store)
    }

    /// The audit log, newest first.
    ///
    /// # Errors
    /// [`Error::NotAllowed`] for a delegated administrator; storage errors.
    pub async fn audit_events(&self, actor: &Actor, f: &AuditFilter) -> Result<Vec<AuditEvent>> {
        actor.require_admin()?;
        if f.since > 0 && f.until > 0 && f.since > f.until {
            return Err(Error::field(
                "until",
                "before_since",
                "la fin de la période précède son début",
            ));
        }
        let limit = if f.limit <= 0 { 100 } else { f.limit.min(1000) };
        // A login or an address names its account, as everywhere else: events name
        // accounts by id, as subject and as actor (`account:ID` for what a person
        // did through the API, the bare id for a login).
        let account_id = |key: &str| {
            let key = key.to_owned();
            async move {
                if key.is_empty() {
                    return Ok::<_, Error>(key);
                }
                Ok(store::find_account(self.db(), &key)
                    .await?
                    .map_or(key, |a| a.id))
            }
        };
        let subject = account_id(&f.subject).await?;
        let by = account_id(&f.actor).await?;
        let rows = sqlx::query(
            "SELECT id, actor, action, subject, detail, created_at FROM audit_events \
             WHERE ($1 = '' OR subject IN ($1, $2)) \
             AND ($3 = '' OR actor IN ($3, $4, $5)) \
             AND ($6 = 0 OR created_at >= $6) AND ($7 = 0 OR created_at <= $7) \
             ORDER BY created_at DESC, id DESC LIMIT $8",
        )
        .bind(&f.subject)
        .bind(&subject)
        .bind(&f.actor)
        .bind(&by)
        .bind(format!("account:{by}"))
        .bind(f.since)
        .bind(f.until)
        .bind(limit)
        .fetch_all(self.db().pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditEvent {
                    id: r.try_get("id")?,
                    actor: r.try_get("actor")?,
                    action: r.try_get("action")?,
                    subject: r.try_get("subject")?,
                    detail: r.try_get("detail")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect::<sqlx::Result<_>>()
            .map_err(Error::Store)
    }

    /// Modules and their rights.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn modules(&self) -> Result<Vec<dge_proto::v1::Module>> {
        let rows = sqlx::query(
            "SELECT m.name AS module, m.label AS module_label, r.name AS right_name, r.label AS right_label \
             FROM modules m LEFT JOIN rights r ON r.module = m.name ORDER BY m.name, r.name",
        )
        .fetch_all(self.db().pool())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_refuse_controls_and_invisible_format_characters_but_keep_lines() {
        assert!(check_reason("Départ de l'agent\nvoir le ticket 42").is_ok());
        for hidden in [
            "a\u{202E}b",
            "a\u{200B}b",
            "a\u{2028}b",
            "a\u{1B}b",
            "a\u{0}b",
        ] {
            assert!(check_reason(hidden).is_err(), "{hidden:?}");
        }
    }
}
