//! A request cancelled while its transaction starts (a client that hangs up, a
//! deadline) must not leave the transaction open on a pooled connection: on SQLite
//! that connection would hold the write lock for good, and every later write would
//! fail with "database is locked". sqlx leaves one open when a custom `BEGIN` (ours:
//! `BEGIN IMMEDIATE`) is cancelled just after SQLite ran it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use dge_store::Db;
use dge_testsupport::ScratchDb;
use futures::FutureExt as _;

/// Polls `db.begin()` `polls` times (yielding in between), then drops it, done or not.
async fn begin_then_hang_up(db: &Db, polls: usize) {
    let mut begin = std::pin::pin!(db.begin());
    for _ in 0..polls {
        if let Some(tx) = (&mut begin).now_or_never() {
            drop(tx);
            return;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_micros(50)).await;
    }
}

/// A write in a transaction of its own, which must not wait on a forgotten lock.
async fn write(db: &Db, n: usize) {
    let written = tokio::time::timeout(Duration::from_secs(3), async {
        let mut tx = db.begin().await?;
        sqlx::query("INSERT INTO probe (n) VALUES ($1)")
            .bind(i64::try_from(n).unwrap())
            .execute(&mut *tx)
            .await?;
        tx.commit().await
    })
    .await;
    assert!(
        matches!(written, Ok(Ok(()))),
        "write {n} after a cancelled begin: {written:?}"
    );
}

async fn survives_cancelled_begins(db: Db) {
    sqlx::query("CREATE TABLE IF NOT EXISTS probe (n BIGINT)")
        .execute(db.pool())
        .await
        .unwrap();
    for n in 0..300 {
        begin_then_hang_up(&db, n % 12).await;
        write(&db, n).await;
    }
}

#[tokio::test]
async fn on_sqlite_a_cancelled_begin_leaves_no_lock_behind() {
    let scratch = ScratchDb::sqlite("cancelled-begin");
    let db = Db::connect(scratch.url(), 4).await.unwrap();
    survives_cancelled_begins(db).await;
}

#[tokio::test]
async fn on_postgres_a_cancelled_begin_leaves_no_transaction_behind() {
    let scratch = ScratchDb::postgres("cancelled_begin").await;
    let db = Db::connect(scratch.url(), 4).await.unwrap();
    survives_cancelled_begins(db).await;
}
