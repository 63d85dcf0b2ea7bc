//! Account queries, shared with the workflow, the broker and the OIDC provider.

use dge_store::Db;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::domain::signup::lookup_key;
use crate::domain::{Account, AccountStatus};
use crate::mfa::{MFA_COLUMNS, MfaState, mfa_from_row};

const ACCOUNT_COLUMNS: &str = "a.id, a.kind, a.login, a.email, a.given_name, a.family_name, \
    a.phone, a.organisation_id, o.name AS organisation_name, a.function, a.description, \
    a.status, a.email_verified, a.rejection_reason, a.is_admin, a.created_at, a.suspended_until";

fn account_from_row(row: &AnyRow) -> sqlx::Result<Account> {
    let status: String = row.try_get("status")?;
    Ok(Account {
        id: row.try_get("id")?,
        kind: row.try_get("kind")?,
        login: row.try_get("login")?,
        email: row.try_get("email")?,
        given_name: row.try_get("given_name")?,
        family_name: row.try_get("family_name")?,
        phone: row.try_get("phone")?,
        organisation_id: row.try_get("organisation_id")?,
        organisation_name: row.try_get("organisation_name")?,
        function: row.try_get("function")?,
        description: row.try_get("description")?,
        status: AccountStatus::parse(&status).ok_or_else(|| {
            sqlx::Error::Decode(format!("unknown account status {status}").into())
        })?,
        email_verified: row.try_get::<i64, _>("email_verified")? == 1,
        rejection_reason: row.try_get("rejection_reason")?,
        is_admin: row.try_get::<i64, _>("is_admin")? == 1,
        created_at: row.try_get("created_at")?,
        suspended_until: row.try_get("suspended_until")?,
    })
}

/// The account named by id, login or email (case-insensitive).
///
/// # Errors
/// Fails when the database fails.
pub async fn find_account(db: &Db, key: &str) -> sqlx::Result<Option<Account>> {
    let key = key.trim();
    let sql = format!(
        "SELECT {ACCOUNT_COLUMNS} FROM accounts a LEFT JOIN organisations o ON o.id = a.organisation_id \
         WHERE a.id = $1 OR a.login_key = $2 OR a.email_key = $2"
    );
    let row = sqlx::query(&sql)
        .bind(key)
        .bind(lookup_key(key))
        .fetch_optional(db.pool())
        .await?;
    row.as_ref().map(account_from_row).transpose()
}

/// The account `id` with its `sessions_epoch` ([`dge_store::sessions::account_epoch`])
/// in one read, for a code exchange, which checks both.
///
/// # Errors
/// Fails when the database fails.
pub async fn account_with_epoch(db: &Db, id: &str) -> sqlx::Result<Option<(Account, i64)>> {
    let row = account_row_with(db, id, "a.sessions_epoch").await?;
    row.map(|r| Ok((account_from_row(&r)?, r.try_get("sessions_epoch")?)))
        .transpose()
}

/// The row of the account `id`: its [`ACCOUNT_COLUMNS`], then `extra` (columns of
/// `accounts a`).
async fn account_row_with(db: &Db, id: &str, extra: &str) -> sqlx::Result<Option<AnyRow>> {
    let sql = format!(
        "SELECT {ACCOUNT_COLUMNS}, {extra} FROM accounts a \
         LEFT JOIN organisations o ON o.id = a.organisation_id WHERE a.id = $1"
    );
    sqlx::query(&sql).bind(id).fetch_optional(db.pool()).await
}

/// What a login reads of the account once its password is checked, in one query:
/// the account and its two-step state.
///
/// # Errors
/// Fails when the database fails.
pub async fn account_and_mfa(db: &Db, id: &str) -> sqlx::Result<Option<(Account, MfaState)>> {
    let row = account_row_with(db, id, MFA_COLUMNS).await?;
    row.map(|r| Ok((account_from_row(&r)?, mfa_from_row(&r)?)))
        .transpose()
}

/// Like [`find_account`], inside a transaction.
///
/// # Errors
/// Fails when the database fails.
pub async fn find_account_in(conn: &mut AnyConnection, key: &str) -> sqlx::Result<Option<Account>> {
    let key = key.trim();
    let sql = format!(
        "SELECT {ACCOUNT_COLUMNS} FROM accounts a LEFT JOIN organisations o ON o.id = a.organisation_id \
         WHERE a.id = $1 OR a.login_key = $2 OR a.email_key = $2"
    );
    let row = sqlx::query(&sql)
        .bind(key)
        .bind(lookup_key(key))
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(account_from_row).transpose()
}

/// Accounts, newest first, optionally of one status.
///
/// # Errors
/// Fails when the database fails.
pub async fn list_accounts(
    db: &Db,
    status: Option<AccountStatus>,
    limit: i64,
) -> sqlx::Result<Vec<Account>> {
    let sql = format!(
        "SELECT {ACCOUNT_COLUMNS} FROM accounts a LEFT JOIN organisations o ON o.id = a.organisation_id \
         WHERE ($1 = '' OR a.status = $1) ORDER BY a.created_at DESC, a.id DESC LIMIT $2"
    );
    let rows = sqlx::query(&sql)
        .bind(status.map_or("", AccountStatus::as_str))
        .bind(limit)
        .fetch_all(db.pool())
        .await?;
    rows.iter().map(account_from_row).collect()
}

/// The global administrators (`accounts.is_admin`), oldest account first.
///
/// # Errors
/// Fails when the database fails.
pub async fn list_admins(db: &Db) -> sqlx::Result<Vec<Account>> {
    let sql = format!(
        "SELECT {ACCOUNT_COLUMNS} FROM accounts a LEFT JOIN organisations o ON o.id = a.organisation_id \
         WHERE a.is_admin = 1 ORDER BY a.created_at, a.id"
    );
    let rows = sqlx::query(&sql).fetch_all(db.pool()).await?;
    rows.iter().map(account_from_row).collect()
}

/// What a login reads of the local account named by login or email before its
/// password hash is checked.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The account.
    pub id: String,
    /// Its password hash (none for an account that logs in through an upstream only).
    pub password_hash: Option<String>,
    /// Its `sessions_epoch` at this reading, before the hash: whatever ends everything
    /// of the account after it (a reset committed while the hash runs) makes the
    /// session and code of this login born ended.
    pub sessions_epoch: i64,
}

/// The credentials of the local account named by login or email.
///
/// # Errors
/// Fails when the database fails.
pub async fn credentials(db: &Db, identifier: &str) -> sqlx::Result<Option<Credentials>> {
    let key = lookup_key(identifier);
    let row = sqlx::query(
        "SELECT id, password_hash, sessions_epoch FROM accounts \
         WHERE kind = 'local' AND (login_key = $1 OR email_key = $1)",
    )
    .bind(key)
    .fetch_optional(db.pool())
    .await?;
    row.map(|r| {
        Ok(Credentials {
            id: r.try_get("id")?,
            password_hash: r.try_get("password_hash")?,
            sessions_epoch: r.try_get("sessions_epoch")?,
        })
    })
    .transpose()
}

/// Replaces the password hash `old` of an account by `new` (a hash of the same
/// password with today's parameters), unless it changed meanwhile: a reset or a
/// change committed while the new hash was computed keeps its own.
///
/// # Errors
/// Fails when the database fails.
pub async fn upgrade_password_hash(
    db: &Db,
    account_id: &str,
    old: &str,
    new: &str,
    now: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE accounts SET password_hash = $1, updated_at = $2 WHERE id = $3 AND password_hash = $4",
    )
    .bind(new)
    .bind(now)
    .bind(account_id)
    .bind(old)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Whether the account belongs to an active, trusted organisation and its email
/// address is in one of that organisation's domains (or a subdomain of one).
///
/// # Errors
/// Fails when the database fails.
pub async fn trusted_member(conn: &mut AnyConnection, account_id: &str) -> sqlx::Result<bool> {
    let row = sqlx::query(
        "SELECT a.email_key, o.email_domains FROM accounts a JOIN organisations o ON o.id = a.organisation_id \
         WHERE a.id = $1 AND o.status = 'active' AND o.trusted = 1",
    )
    .bind(account_id)
    .fetch_optional(conn)
    .await?;
    let Some(row) = row else { return Ok(false) };
    let email: String = row.try_get("email_key")?;
    let domains: String = row.try_get("email_domains")?;
    Ok(crate::domain::email_in_domains(&email, &domains))
}

/// The rights `account_id` holds at `now`, as an email names them (`DataHub : Publier`),
/// by module then right.
///
/// # Errors
/// Fails when the database fails.
pub async fn held_right_labels(
    conn: &mut AnyConnection,
    account_id: &str,
    now: i64,
) -> sqlx::Result<Vec<String>> {
    let rows = sqlx::query(
        "SELECT m.label AS module, r.label AS label FROM grants g \
         JOIN rights r ON r.name = g.right_name JOIN modules m ON m.name = r.module \
         WHERE g.account_id = $1 AND (g.expires_at IS NULL OR g.expires_at > $2) \
         ORDER BY m.label, r.label",
    )
    .bind(account_id)
    .bind(now)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            let module: String = r.try_get("module")?;
            let label: String = r.try_get("label")?;
            Ok(format!("{module} : {label}"))
        })
        .collect()
}

/// Grants `right` inside a transaction, if the right is declared and not yet held.
///
/// # Errors
/// Fails when the database fails.
pub async fn grant_in(
    conn: &mut AnyConnection,
    account_id: &str,
    right: &str,
    by: &str,
    now: i64,
) -> sqlx::Result<()> {
    let declared = sqlx::query("SELECT 1 AS found FROM rights WHERE name = $1")
        .bind(right)
        .fetch_optional(&mut *conn)
        .await?;
    if declared.is_none() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO grants (account_id, right_name, granted_by, reason, created_at) VALUES ($1, $2, $3, '', $4) \
         ON CONFLICT (account_id, right_name) DO NOTHING",
    )
    .bind(account_id)
    .bind(right)
    .bind(by)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// The password hash of a local account, by id; `None` for an account without one.
///
/// # Errors
/// Fails when the database fails.
pub async fn credentials_in(
    conn: &mut AnyConnection,
    account_id: &str,
) -> sqlx::Result<Option<String>> {
    let row = sqlx::query("SELECT password_hash FROM accounts WHERE id = $1 AND kind = 'local'")
        .bind(account_id)
        .fetch_optional(conn)
        .await?;
    Ok(row
        .map(|r| r.try_get::<Option<String>, _>("password_hash"))
        .transpose()?
        .flatten())
}
