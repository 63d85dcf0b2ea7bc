//! Rights held by accounts.

use dge_store::Db;
use sqlx::Row;

/// The rights an account holds now, sorted; none while the account is not active
/// (`Check` then refuses them all with `inactive_account`).
///
/// # Errors
/// Fails when the database fails.
pub async fn rights_of(db: &Db, account_id: &str, now: i64) -> sqlx::Result<Vec<String>> {
    let rows = sqlx::query(
        "SELECT g.right_name FROM grants g JOIN accounts a ON a.id = g.account_id \
         WHERE g.account_id = $1 AND a.status = 'active' \
         AND (g.expires_at IS NULL OR g.expires_at > $2) ORDER BY g.right_name",
    )
    .bind(account_id)
    .bind(now)
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(|r| r.try_get("right_name")).collect()
}

/// Whether an account holds `right` now.
///
/// # Errors
/// Fails when the database fails.
pub async fn has_right(db: &Db, account_id: &str, right: &str, now: i64) -> sqlx::Result<bool> {
    let row = sqlx::query(
        "SELECT 1 AS held FROM grants WHERE account_id = $1 AND right_name = $2 \
         AND (expires_at IS NULL OR expires_at > $3)",
    )
    .bind(account_id)
    .bind(right)
    .bind(now)
    .fetch_optional(db.pool())
    .await?;
    Ok(row.is_some())
}

/// The id of an account named by id or login (case-insensitive).
///
/// # Errors
/// Fails when the database fails.
pub async fn resolve_account(db: &Db, key: &str) -> sqlx::Result<Option<String>> {
    let key = key.trim();
    let row =
        sqlx::query("SELECT id FROM accounts WHERE id = $1 OR login_key = $2 OR email_key = $2")
            .bind(key)
            .bind(key.to_lowercase())
            .fetch_optional(db.pool())
            .await?;
    row.map(|r| r.try_get("id")).transpose()
}
