//! A statement that does not end (a lock held by a stuck session, a query gone
//! wrong) must not hold a pooled connection, and the request waiting on it, for
//! good: PostgreSQL ends it after the pool's statement timeout, and a session left
//! idle inside a transaction after twice that. Both read as a passing outage
//! (`is_unreachable`), as does SQLite's write lock held past `busy_timeout`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use dge_store::{Db, is_unreachable};
use dge_testsupport::ScratchDb;
use sqlx::Connection as _;

const LIMIT: Duration = Duration::from_millis(300);

/// `held`, with the one row the tests lock.
async fn table_with_one_row(db: &Db) {
    for statement in [
        "CREATE TABLE held (n BIGINT PRIMARY KEY)",
        "INSERT INTO held (n) VALUES (1)",
    ] {
        sqlx::query(statement).execute(db.pool()).await.unwrap();
    }
}

#[tokio::test]
async fn on_postgres_a_statement_past_the_limit_is_ended_and_the_pool_goes_on() {
    let scratch = ScratchDb::postgres("statement_limit").await;
    let db = Db::connect_bounded(scratch.url(), 2, LIMIT).await.unwrap();
    // Migrations are not bounded, and run on such a pool.
    db.migrate().await.unwrap();

    let started = Instant::now();
    let err = sqlx::query("SELECT pg_sleep(5)")
        .execute(db.pool())
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "ended after {took:?}");
    assert!(is_unreachable(&err), "a passing outage: {err:?}");

    // A row lock held by another session: the update waits, then gives up.
    table_with_one_row(&db).await;
    let mut other = sqlx::AnyConnection::connect(scratch.url()).await.unwrap();
    let mut holder = other.begin().await.unwrap();
    sqlx::query("UPDATE held SET n = 1 WHERE n = 1")
        .execute(&mut *holder)
        .await
        .unwrap();
    let started = Instant::now();
    let err = sqlx::query("UPDATE held SET n = 2 WHERE n = 1")
        .execute(db.pool())
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2), "{err:?}");
    assert!(is_unreachable(&err), "{err:?}");
    holder.rollback().await.unwrap();

    // Both connections of the pool still serve.
    for _ in 0..4 {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM held")
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert_eq!(n, 1);
    }
}

#[tokio::test]
async fn on_postgres_a_transaction_left_idle_is_ended_and_its_locks_freed() {
    let scratch = ScratchDb::postgres("idle_in_transaction").await;
    let db = Db::connect_bounded(scratch.url(), 2, LIMIT).await.unwrap();
    table_with_one_row(&db).await;
    let mut stuck = db.begin().await.unwrap();
    sqlx::query("UPDATE held SET n = 1 WHERE n = 1")
        .execute(&mut *stuck)
        .await
        .unwrap();
    // A replica stuck between two statements, longer than twice the limit.
    tokio::time::sleep(LIMIT * 4).await;

    // Its lock is gone: another writer is not kept waiting.
    sqlx::query("UPDATE held SET n = 2 WHERE n = 1")
        .execute(db.pool())
        .await
        .expect("the idle transaction no longer holds the row");
    // The stuck transaction itself is over and cannot commit.
    assert!(sqlx::query("SELECT 1").execute(&mut *stuck).await.is_err());
    drop(stuck);
    let n: i64 = sqlx::query_scalar("SELECT n FROM held")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(n, 2);
}

#[tokio::test]
async fn serving_connections_get_the_default_limit() {
    let scratch = ScratchDb::postgres("default_limit").await;
    let db = Db::connect(scratch.url(), 1).await.unwrap();
    let statement: String = sqlx::query_scalar("SELECT current_setting('statement_timeout')")
        .fetch_one(db.pool())
        .await
        .unwrap();
    let idle: String =
        sqlx::query_scalar("SELECT current_setting('idle_in_transaction_session_timeout')")
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert_eq!((statement.as_str(), idle.as_str()), ("30s", "1min"));
}

#[tokio::test]
async fn on_sqlite_a_write_lock_held_past_the_busy_timeout_is_a_passing_outage() {
    let scratch = ScratchDb::sqlite("busy");
    let db = Db::connect(scratch.url(), 2).await.unwrap();
    let _holder = db.begin().await.unwrap();
    let err = db.begin().await.unwrap_err();
    assert!(is_unreachable(&err), "{err:?}");
}

#[tokio::test]
async fn on_sqlite_readiness_needs_the_write_lock() {
    let scratch = ScratchDb::sqlite("ready");
    let db = Db::connect(scratch.url(), 2).await.unwrap();
    assert!(db.ready(Duration::from_secs(2)).await);
    // Reads still answer while another connection holds the write lock for good,
    // but nothing could be written: not ready.
    let other = Db::connect(scratch.url(), 1).await.unwrap();
    let holder = other.begin().await.unwrap();
    sqlx::query("SELECT 1").execute(db.pool()).await.unwrap();
    let started = Instant::now();
    assert!(!db.ready(Duration::from_millis(500)).await);
    assert!(started.elapsed() < Duration::from_secs(2));
    drop(holder);
    assert!(db.ready(Duration::from_secs(2)).await);
}

#[tokio::test]
async fn on_postgres_readiness_refuses_a_read_only_database() {
    let scratch = ScratchDb::postgres("ready").await;
    let db = Db::connect(scratch.url(), 1).await.unwrap();
    assert!(db.ready(Duration::from_secs(2)).await);
    sqlx::query(&format!(
        "ALTER DATABASE {} SET default_transaction_read_only = on",
        scratch.name()
    ))
    .execute(db.pool())
    .await
    .unwrap();
    // New sessions are read-only, as on a standby.
    let read_only = Db::connect(scratch.url(), 1).await.unwrap();
    sqlx::query("SELECT 1")
        .execute(read_only.pool())
        .await
        .unwrap();
    assert!(!read_only.ready(Duration::from_secs(2)).await);
    // A write refused there reads as a passing outage (503 on the pages), not as an
    // internal error.
    let refused = sqlx::query("CREATE TABLE nope (n BIGINT)")
        .execute(read_only.pool())
        .await
        .unwrap_err();
    assert!(is_unreachable(&refused), "{refused:?}");
    read_only.pool().close().await;
    db.pool().close().await;
}
