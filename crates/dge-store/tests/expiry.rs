//! The purge of expired rows, on both engines: only rows past their expiry and the
//! grace go, in batches, on a migrated database. PostgreSQL comes from
//! `DATABASE_URL` (default: the loopback server); a missing one fails, never skips.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use dge_store::Db;
use dge_store::expiry::{BACKCHANNEL_RETENTION_SECS, GRACE_SECS, purge_expired};
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

async fn refresh(db: &Db, hash: &str, family: &str, expires_at: i64) {
    sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, family_id, client_id, account_id, scope, \
         auth_time, expires_at, created_at) VALUES ($1, $2, 'c', 'a', 'openid', 0, $3, 0)",
    )
    .bind(hash)
    .bind(family)
    .bind(expires_at)
    .execute(db.pool())
    .await
    .unwrap();
}

/// The clients of a session go with it, whether the purge or a logout removed it;
/// those of a live session stay.
async fn session_clients_go_with_their_session(db: Db) {
    for sql in [
        "INSERT INTO oidc_clients (id, name, redirect_uris, confidential, created_at, updated_at) \
         VALUES ('c', 'c', '[]', 1, 0, 0)",
        "INSERT INTO oidc_clients (id, name, redirect_uris, confidential, created_at, updated_at) \
         VALUES ('d', 'd', '[]', 1, 0, 0)",
        "INSERT INTO accounts (id, kind, email, email_key, given_name, family_name, status, created_at, updated_at) \
         VALUES ('a', 'local', 'a@x.fr', 'a@x.fr', 'A', 'B', 'active', 0, 0)",
    ] {
        sqlx::query(sql).execute(db.pool()).await.unwrap();
    }
    for (session, expires_at) in [("live", NOW + 3600), ("old", NOW - GRACE_SECS - 10)] {
        sqlx::query(
            "INSERT INTO sessions (id_hash, account_id, auth_time, expires_at, created_at) \
             VALUES ($1, 'a', 0, $2, 0)",
        )
        .bind(session)
        .bind(expires_at)
        .execute(db.pool())
        .await
        .unwrap();
    }
    // "closed" has no session row any more (as after an older version's logout).
    for (session, client) in [
        ("live", "c"),
        ("live", "d"),
        ("old", "c"),
        ("old", "d"),
        ("closed", "c"),
    ] {
        sqlx::query(
            "INSERT INTO session_clients (session_hash, client_id, created_at) VALUES ($1, $2, 0)",
        )
        .bind(session)
        .bind(client)
        .execute(db.pool())
        .await
        .unwrap();
    }
    // The old session, its two clients and the orphan.
    assert_eq!(purge_expired(&db, NOW).await.unwrap(), 4);
    let left: Vec<String> = sqlx::query_scalar(
        "SELECT session_hash || '/' || client_id FROM session_clients ORDER BY 1",
    )
    .fetch_all(db.pool())
    .await
    .unwrap();
    assert_eq!(left, vec!["live/c".to_owned(), "live/d".to_owned()]);
    assert_eq!(purge_expired(&db, NOW).await.unwrap(), 0);
}

#[tokio::test]
async fn sqlite_purges_the_clients_of_gone_sessions() {
    let scratch = ScratchDb::sqlite("expiry-session-clients");
    let db = Db::connect(scratch.url(), 1).await.unwrap();
    db.migrate().await.unwrap();
    session_clients_go_with_their_session(db).await;
}

#[tokio::test]
async fn postgres_purges_the_clients_of_gone_sessions() {
    let scratch = ScratchDb::postgres("expiry_session_clients").await;
    let db = Db::connect(scratch.url(), 1).await.unwrap();
    db.migrate().await.unwrap();
    session_clients_go_with_their_session(db).await;
}

/// An old rotated refresh token stays while a newer one of its family lives, so that
/// presenting it still revokes the family; a family wholly expired goes.
async fn refresh_tokens_go_with_their_whole_family(db: Db) {
    for sql in [
        "INSERT INTO oidc_clients (id, name, redirect_uris, confidential, created_at, updated_at) \
         VALUES ('c', 'c', '[]', 1, 0, 0)",
        "INSERT INTO accounts (id, kind, email, email_key, given_name, family_name, status, created_at, updated_at) \
         VALUES ('a', 'local', 'a@x.fr', 'a@x.fr', 'A', 'B', 'active', 0, 0)",
    ] {
        sqlx::query(sql).execute(db.pool()).await.unwrap();
    }
    let old = NOW - GRACE_SECS - 10;
    refresh(&db, "rotated", "living", old).await;
    refresh(&db, "current", "living", NOW + 3600).await;
    refresh(&db, "dead-1", "dead", old).await;
    refresh(&db, "dead-2", "dead", old - 5).await;
    assert_eq!(purge_expired(&db, NOW).await.unwrap(), 2);
    let left: Vec<String> =
        sqlx::query_scalar("SELECT token_hash FROM refresh_tokens ORDER BY token_hash")
            .fetch_all(db.pool())
            .await
            .unwrap();
    assert_eq!(left, vec!["current".to_owned(), "rotated".to_owned()]);
}

#[tokio::test]
async fn sqlite_keeps_refresh_families_alive() {
    let scratch = ScratchDb::sqlite("expiry-refresh");
    let db = Db::connect(scratch.url(), 1).await.unwrap();
    db.migrate().await.unwrap();
    refresh_tokens_go_with_their_whole_family(db).await;
}

#[tokio::test]
async fn postgres_keeps_refresh_families_alive() {
    let scratch = ScratchDb::postgres("expiry_refresh").await;
    let db = Db::connect(scratch.url(), 1).await.unwrap();
    db.migrate().await.unwrap();
    refresh_tokens_go_with_their_whole_family(db).await;
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

async fn backchannel_logout(db: &Db, id: &str, status: &str, updated_at: i64) {
    sqlx::query(
        "INSERT INTO backchannel_logouts (id, client_id, account_id, sid, status, \
         next_attempt_at, created_at, updated_at) VALUES ($1, 'c', 'a', 's', $2, 0, 0, $3)",
    )
    .bind(id)
    .bind(status)
    .bind(updated_at)
    .execute(db.pool())
    .await
    .unwrap();
}

/// Back-channel logouts sent or failed go a week after their last change; queued
/// ones stay, however old (a module may still be told).
async fn finished_backchannel_logouts_go_after_a_week(db: Db) {
    let old = NOW - BACKCHANNEL_RETENTION_SECS - 1;
    backchannel_logout(&db, "sent-old", "sent", old).await;
    backchannel_logout(&db, "failed-old", "failed", old).await;
    backchannel_logout(&db, "queued-old", "queued", old).await;
    backchannel_logout(&db, "sent-recent", "sent", NOW - 3600).await;
    assert_eq!(purge_expired(&db, NOW).await.unwrap(), 2);
    let left: Vec<String> = sqlx::query_scalar("SELECT id FROM backchannel_logouts ORDER BY id")
        .fetch_all(db.pool())
        .await
        .unwrap();
    assert_eq!(left, ["queued-old", "sent-recent"]);
}

#[tokio::test]
async fn sqlite_purges_finished_backchannel_logouts() {
    let scratch = ScratchDb::sqlite("expiry-backchannel");
    let db = Db::connect(scratch.url(), 1).await.unwrap();
    db.migrate().await.unwrap();
    finished_backchannel_logouts_go_after_a_week(db).await;
}

#[tokio::test]
async fn postgres_purges_finished_backchannel_logouts() {
    let scratch = ScratchDb::postgres("expiry_backchannel").await;
    let db = Db::connect(scratch.url(), 1).await.unwrap();
    db.migrate().await.unwrap();
    finished_backchannel_logouts_go_after_a_week(db).await;
}
