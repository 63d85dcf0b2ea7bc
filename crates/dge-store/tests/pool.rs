//! The pool's handling of connections that died while in the pool: a connection
//! taken again at once is not tested (no round trip per query), so a dead one fails
//! its one query and is dropped; one that sat idle is tested first, so a server
//! restarted during a quiet spell costs no request. PostgreSQL comes from
//! `DATABASE_URL` (default: the loopback server); a missing one fails, never skips.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use dge_store::Db;
use dge_testsupport::{ScratchDb, postgres_admin_url};
use sqlx::Connection as _;

/// Ends the server side of the pool's one connection, as a restart would.
async fn terminate(db: &Db) {
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(db.pool())
        .await
        .unwrap();
    let mut admin = sqlx::PgConnection::connect(&postgres_admin_url())
        .await
        .unwrap();
    let ended: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert!(ended, "backend {pid} was not terminated");
    // pg_terminate_backend only signals: let the backend go.
    tokio::time::sleep(Duration::from_millis(300)).await;
}

async fn one(db: &Db) -> sqlx::Result<i32> {
    sqlx::query_scalar("SELECT 1").fetch_one(db.pool()).await
}

#[tokio::test]
async fn a_connection_dead_in_the_pool_fails_one_query_then_is_replaced() {
    let scratch = ScratchDb::postgres("pool_dead").await;
    let db = Db::connect(scratch.url(), 1).await.unwrap();
    terminate(&db).await;
    // Taken again at once, without a test: its query fails…
    assert!(one(&db).await.is_err(), "a dead connection answered");
    // …and it is not handed out again.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(one(&db).await.unwrap(), 1);
}

#[tokio::test]
async fn a_connection_that_died_while_idle_is_replaced_before_use() {
    let scratch = ScratchDb::postgres("pool_idle").await;
    let db = Db::connect(scratch.url(), 1).await.unwrap();
    terminate(&db).await;
    // Past the idle time after which the pool tests a connection (10 s).
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_eq!(
        one(&db).await.unwrap(),
        1,
        "the idle, dead connection was used"
    );
}
