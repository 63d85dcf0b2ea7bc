//! The purge of expired rows, on both engines: only rows past their expiry and the
//! grace go, in batches, on a migrated database. PostgreSQL comes from
//! `DATABASE_URL` (default: the loopback server); a missing one fails, never skips.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use dge_store::Db;
use dge_store::expiry::{GRACE_SECS, purge_expired};
use dge_testsupport::ScratchDb;

const NOW: i64 = 1_900_000_000;

async fn issued(db: &Db, jti: &str, expires_at: i64) {
    sqlx::query(
        "INSERT INTO issued_tokens (jti, client_id, expires_at, created_at) VALUES ($1, 'c', $2, 0)",
    )
    .bind(jti)
    .bind(expires_at)
    .execute(db.pool())
    .await
    .unwrap();
}

async fn upstream_login(db: &Db, state: &str, expires_at: i64) {
    sqlx::query(
        "INSERT INTO upstream_logins (state_hash, provider, nonce, pkce_verifier, expires_at, created_at) \
         VALUES ($1, 'proconnect', 'n', 'v', $2, 0)",
    )
    .bind(state)
    .bind(expires_at)
    .execute(db.pool())
    .await
    .unwrap();
}

async fn count(db: &Db, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(db.pool())
        .await
        .unwrap()
}

async fn only_rows_past_expiry_and_grace_go(db: Db) {
    // More than one batch of old rows, rows within the grace, and live rows.
    let mut tx = db.pool().begin().await.unwrap();
    for i in 0..2500 {
        sqlx::query(
            "INSERT INTO issued_tokens (jti, client_id, expires_at, created_at) VALUES ($1, 'c', $2, 0)",
        )
        .bind(format!("old-{i}"))
        .bind(NOW - GRACE_SECS - 1 - i)
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    issued(&db, "in-grace", NOW - GRACE_SECS + 1).await;
    issued(&db, "live", NOW + 3600).await;
    upstream_login(&db, "abandoned", NOW - GRACE_SECS - 60).await;
    upstream_login(&db, "pending", NOW + 600).await;

    assert_eq!(purge_expired(&db, NOW).await.unwrap(), 2501);
    let left: Vec<String> = sqlx::query_scalar("SELECT jti FROM issued_tokens ORDER BY jti")
        .fetch_all(db.pool())
        .await
        .unwrap();
    assert_eq!(left, vec!["in-grace".to_owned(), "live".to_owned()]);
    assert_eq!(count(&db, "upstream_logins").await, 1);
    // Nothing more to do: a second run deletes nothing.
    assert_eq!(purge_expired(&db, NOW).await.unwrap(), 0);
    // A day later, the one in its grace goes too.
    assert_eq!(purge_expired(&db, NOW + 2).await.unwrap(), 1);
    assert_eq!(count(&db, "issued_tokens").await, 1);
}

#[tokio::test]
async fn sqlite_purges_expired_rows() {
    let scratch = ScratchDb::sqlite("expiry");
    let db = Db::connect(scratch.url(), 2).await.unwrap();
    db.migrate().await.unwrap();
    only_rows_past_expiry_and_grace_go(db).await;
}

#[tokio::test]
async fn postgres_purges_expired_rows() {
    let scratch = ScratchDb::postgres("expiry").await;
    let db = Db::connect(scratch.url(), 2).await.unwrap();
    db.migrate().await.unwrap();
    only_rows_past_expiry_and_grace_go(db).await;
}
