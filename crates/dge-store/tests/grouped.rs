//! Group commit on both engines, and access changes reaching another replica.
//! PostgreSQL comes from `DATABASE_URL` (default: the loopback server) and Redis from
//! `REDIS_URL`; a missing one fails these tests, it never skips them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use dge_store::Db;
use dge_store::ephemeral::Ephemeral;
use dge_store::grouped::{Arg, Statement};
use dge_testsupport::ScratchDb;

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A fresh database of the test's own with one table `t (id primary key, n)`; the
/// database goes when the returned [`ScratchDb`] does.
async fn fresh(postgres: bool) -> (Db, ScratchDb) {
    fresh_with(postgres, 4).await
}

/// [`fresh`], with a pool of `connections`.
async fn fresh_with(postgres: bool, connections: u32) -> (Db, ScratchDb) {
    let scratch = if postgres {
        ScratchDb::postgres("grouped").await
    } else {
        ScratchDb::sqlite("grouped")
    };
    let db = Db::connect(scratch.url(), connections).await.unwrap();
    sqlx::query("CREATE TABLE t (id TEXT PRIMARY KEY, n BIGINT)")
        .execute(db.pool())
        .await
        .unwrap();
    (db, scratch)
}

fn insert(id: &str, n: Option<i64>) -> Statement {
    Statement {
        sql: "INSERT INTO t (id, n) VALUES ($1, $2)",
        args: vec![Arg::Text(Some(id.to_owned())), Arg::Int(n)],
    }
}

async fn concurrent_inserts_are_all_committed_before_their_callers_return(db: Db) {
    let tasks: Vec<_> = (0..300)
        .map(|i| {
            let db = db.clone();
            tokio::spawn(async move {
                db.execute_grouped(insert(&format!("row-{i}"), Some(i)))
                    .await
                    .unwrap();
                // Committed: visible to any other connection at once.
                let n: i64 = sqlx::query_scalar("SELECT n FROM t WHERE id = $1")
                    .bind(format!("row-{i}"))
                    .fetch_one(db.pool())
                    .await
                    .unwrap();
                assert_eq!(n, i);
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(count, 300);
}

async fn a_failing_insert_fails_only_its_own_caller(db: Db) {
    db.execute_grouped(insert("taken", None)).await.unwrap();
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let db = db.clone();
            // Every tenth one collides with the row already there.
            let id = if i % 10 == 0 {
                "taken".to_owned()
            } else {
                format!("free-{i}")
            };
            tokio::spawn(async move { (i, db.execute_grouped(insert(&id, Some(i))).await) })
        })
        .collect();
    for task in tasks {
        let (i, outcome) = task.await.unwrap();
        assert_eq!(outcome.is_err(), i % 10 == 0, "insert {i}: {outcome:?}");
    }
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(count, 1 + 45);
}

/// Audit rows of concurrent requests, interleaved with other grouped rows (a token's
/// row, then its `/token` audit row): every one committed when its caller returns.
async fn audit_rows_share_the_commits_of_other_rows(db: Db) {
    db.migrate().await.unwrap();
    sqlx::query("CREATE TABLE t (id TEXT PRIMARY KEY, n BIGINT)")
        .execute(db.pool())
        .await
        .unwrap();
    let tasks: Vec<_> = (0..200_i64)
        .map(|i| {
            let db = db.clone();
            tokio::spawn(async move {
                db.execute_grouped(insert(&format!("row-{i}"), Some(i)))
                    .await
                    .unwrap();
                let detail = format!("grant=client_credentials n={i}");
                dge_store::audit_grouped(&db, "svc", "token.issued", "svc", &detail, 1_000 + i)
                    .await
                    .unwrap();
                let at: i64 = sqlx::query_scalar(
                    "SELECT created_at FROM audit_events WHERE action = 'token.issued' AND detail = $1",
                )
                .bind(&detail)
                .fetch_one(db.pool())
                .await
                .unwrap();
                assert_eq!(at, 1_000 + i);
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let audited: i64 = sqlx::query_scalar(
        "SELECT COUNT(DISTINCT id) FROM audit_events WHERE action = 'token.issued' AND actor = 'svc'",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(audited, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_groups_audit_rows_with_other_rows() {
    let scratch = ScratchDb::sqlite("grouped-audit");
    let db = Db::connect(scratch.url(), 4).await.unwrap();
    audit_rows_share_the_commits_of_other_rows(db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_groups_audit_rows_with_other_rows() {
    let scratch = ScratchDb::postgres("grouped_audit").await;
    let db = Db::connect(scratch.url(), 4).await.unwrap();
    audit_rows_share_the_commits_of_other_rows(db).await;
}

/// A caller's several statements are committed together or not at all, whatever
/// the others of the group do: a token's row never stays without its audit row.
async fn a_callers_statements_are_committed_whole_or_not_at_all(db: Db) {
    db.execute_grouped(insert("taken", None)).await.unwrap();
    let tasks: Vec<_> = (0..40_i64)
        .map(|i| {
            let db = db.clone();
            // Every fourth caller's second row collides with the row already there.
            let second = if i % 4 == 0 {
                "taken".to_owned()
            } else {
                format!("second-{i}")
            };
            let rows = vec![
                insert(&format!("first-{i}"), Some(i)),
                insert(&second, Some(i)),
            ];
            tokio::spawn(async move { (i, db.execute_grouped_all(rows).await) })
        })
        .collect();
    for task in tasks {
        let (i, outcome) = task.await.unwrap();
        assert_eq!(outcome.is_err(), i % 4 == 0, "caller {i}: {outcome:?}");
        let first: Option<i64> = sqlx::query_scalar("SELECT n FROM t WHERE id = $1")
            .bind(format!("first-{i}"))
            .fetch_optional(db.pool())
            .await
            .unwrap()
            .flatten();
        assert_eq!(first.is_some(), i % 4 != 0, "caller {i}: first row");
    }
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(count, 1 + 30 * 2);
    // Nothing to commit is no error.
    db.execute_grouped_all(Vec::new()).await.unwrap();
}

/// A NUL in a value (which PostgreSQL refuses in text) fails its own caller at once
/// and never the group it would have joined.
async fn a_nul_fails_alone(db: Db) {
    let tasks: Vec<_> = (0..60_i64)
        .map(|i| {
            let db = db.clone();
            let id = if i % 6 == 0 {
                format!("bad-\0-{i}")
            } else {
                format!("good-{i}")
            };
            tokio::spawn(async move { (i, db.execute_grouped(insert(&id, Some(i))).await) })
        })
        .collect();
    for task in tasks {
        let (i, outcome) = task.await.unwrap();
        assert_eq!(outcome.is_err(), i % 6 == 0, "caller {i}: {outcome:?}");
    }
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(count, 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_refuses_a_nul_alone() {
    let (db, _scratch) = fresh(false).await;
    a_nul_fails_alone(db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_refuses_a_nul_alone() {
    let (db, _scratch) = fresh(true).await;
    a_nul_fails_alone(db).await;
}

/// Callers whose rows go to two tables: on SQLite their group is sent as one text
/// (`BEGIN IMMEDIATE; …; COMMIT`). A failing row inside it fails only its caller, and
/// what the text began is rolled back: no row of the group stays, and no transaction
/// is left open on the connection, which goes back to the pool.
async fn a_group_over_two_tables_fails_and_rolls_back_cleanly(db: Db) {
    sqlx::query("CREATE TABLE u (id TEXT PRIMARY KEY)")
        .execute(db.pool())
        .await
        .unwrap();
    sqlx::query("INSERT INTO u (id) VALUES ('taken')")
        .execute(db.pool())
        .await
        .unwrap();
    let in_u = |id: &str| Statement {
        sql: "INSERT INTO u (id) VALUES ($1)",
        args: vec![Arg::Text(Some(id.to_owned()))],
    };
    for round in 0..3 {
        let tasks: Vec<_> = (0..40_i64)
            .map(|i| {
                let db = db.clone();
                let second = if i % 4 == 0 {
                    "taken".to_owned()
                } else {
                    format!("u-{round}-{i}")
                };
                let rows = vec![insert(&format!("t-{round}-{i}"), Some(i)), in_u(&second)];
                tokio::spawn(async move { (i, db.execute_grouped_all(rows).await) })
            })
            .collect();
        for task in tasks {
            let (i, outcome) = task.await.unwrap();
            assert_eq!(outcome.is_err(), i % 4 == 0, "caller {i}: {outcome:?}");
        }
    }
    // Every connection of the pool writes at once: none is stuck in an open
    // transaction holding SQLite's write lock (the busy timeout would fail these).
    let writes: Vec<_> = (0..8)
        .map(|i| {
            let db = db.clone();
            tokio::spawn(async move {
                sqlx::query("INSERT INTO u (id) VALUES ($1)")
                    .bind(format!("after-{i}"))
                    .execute(db.pool())
                    .await
            })
        })
        .collect();
    for write in writes {
        write.await.unwrap().unwrap();
    }
    let t: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t")
        .fetch_one(db.pool())
        .await
        .unwrap();
    let u: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM u")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!((t, u), (3 * 30, 1 + 3 * 30 + 8));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_rolls_back_a_failed_group_over_two_tables() {
    let (db, _scratch) = fresh_with(false, 2).await;
    a_group_over_two_tables_fails_and_rolls_back_cleanly(db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_rolls_back_a_failed_group_over_two_tables() {
    let (db, _scratch) = fresh_with(true, 2).await;
    a_group_over_two_tables_fails_and_rolls_back_cleanly(db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_commits_a_callers_statements_whole() {
    let (db, _scratch) = fresh(false).await;
    a_callers_statements_are_committed_whole_or_not_at_all(db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_commits_a_callers_statements_whole() {
    let (db, _scratch) = fresh(true).await;
    a_callers_statements_are_committed_whole_or_not_at_all(db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_groups_concurrent_inserts() {
    let (db, _scratch) = fresh(false).await;
    concurrent_inserts_are_all_committed_before_their_callers_return(db).await;
    let (db, _scratch) = fresh(false).await;
    a_failing_insert_fails_only_its_own_caller(db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_groups_concurrent_inserts() {
    let (db, _scratch) = fresh(true).await;
    concurrent_inserts_are_all_committed_before_their_callers_return(db).await;
    let (db, _scratch) = fresh(true).await;
    a_failing_insert_fails_only_its_own_caller(db).await;
}

/// The writer keeps a connection only while statements keep coming: with a pool of
/// one, callers that read after their insert still get it, and so does anyone once
/// the writer is quiet, after a failed group too.
async fn a_quiet_writer_gives_its_connection_back(postgres: bool) {
    let (db, _scratch) = fresh_with(postgres, 1).await;
    concurrent_inserts_are_all_committed_before_their_callers_return(db.clone()).await;
    // Far below the pool's 10 s acquire timeout: the connection is free.
    let quick = Duration::from_secs(2);
    let conn = tokio::time::timeout(quick, db.pool().acquire()).await;
    drop(conn.expect("the quiet writer still holds the pool's connection"));
    assert!(db.execute_grouped(insert("row-1", None)).await.is_err());
    let conn = tokio::time::timeout(quick, db.pool().acquire()).await;
    drop(conn.expect("the writer kept the connection of its failed group"));
    db.execute_grouped(insert("after", Some(1))).await.unwrap();
}

/// PostgreSQL restarting under load (every backend of the database terminated while
/// `callers` insert one row after the other): the writer drops the dead connection it
/// kept, and the statements of the group it lost are tried again on a tested
/// connection, so no caller sees the restart.
async fn the_writer_survives_a_restart_under_load(callers: i64) {
    use sqlx::Connection as _;
    let (db, scratch) = fresh_with(true, 2).await;
    // Inserting for 1.5 s; the restart at 0.5 s.
    let until = Instant::now() + Duration::from_millis(1500);
    let tasks: Vec<_> = (0..callers)
        .map(|caller| {
            let db = db.clone();
            tokio::spawn(async move {
                let (mut done, mut failed) = (0, Vec::new());
                while Instant::now() < until {
                    let id = format!("r-{caller}-{done}");
                    if let Err(e) = db.execute_grouped(insert(&id, Some(caller))).await {
                        failed.push(e.to_string());
                    }
                    done += 1;
                }
                (done, failed)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut admin = sqlx::PgConnection::connect(&dge_testsupport::postgres_admin_url())
        .await
        .unwrap();
    let ended: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(scratch.name())
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert!(!ended.is_empty(), "no backend of the pool was running");
    let (mut done, mut failed) = (0, Vec::new());
    for task in tasks {
        let (d, f) = task.await.unwrap();
        done += d;
        failed.extend(f);
    }
    assert!(
        done > callers * 10,
        "only {done} inserts: the restart fell outside the load"
    );
    // A statement committed just before its connection died, unseen, collides with
    // itself when retried: the writer counts that as done. Any failure is the writer
    // failing callers.
    assert!(
        failed.is_empty(),
        "{} inserts failed: {:?}",
        failed.len(),
        failed.first()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_writer_survives_a_restart_under_load() {
    the_writer_survives_a_restart_under_load(64).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_writer_gives_its_connection_back() {
    a_quiet_writer_gives_its_connection_back(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_writer_gives_its_connection_back() {
    a_quiet_writer_gives_its_connection_back(true).await;
}

/// Two replicas: their own pools, one shared Redis.
#[tokio::test]
async fn an_access_change_on_one_replica_reaches_the_other_within_a_second() {
    let prefix = format!("dge-test:{}:", dge_core::new_id());
    let (a, _scratch_a) = fresh(false).await;
    let (b, _scratch_b) = fresh(false).await;
    a.share_access_changes(Ephemeral::redis(&redis_url(), &prefix).await.unwrap());
    b.share_access_changes(Ephemeral::redis(&redis_url(), &prefix).await.unwrap());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let relay = tokio::spawn(b.clone().relay_access_changes(async {
        let _ = stop_rx.await;
    }));
    // Let the relay subscribe.
    tokio::time::sleep(Duration::from_millis(100)).await;

    let before_a = a.access_generation();
    let before_b = b.access_generation();
    let sent = Instant::now();
    a.access_changed().await;
    // Here at once.
    assert!(a.access_generation() > before_a);
    // There within a second.
    while b.access_generation() == before_b {
        assert!(sent.elapsed() < Duration::from_secs(1), "not seen on B");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = stop_tx.send(());
    relay.await.unwrap();
}

#[tokio::test]
async fn without_redis_an_access_change_stays_in_the_process() {
    let (db, _scratch) = fresh(false).await;
    let other = db.clone();
    let before = other.access_generation();
    db.access_changed().await;
    assert!(
        other.access_generation() > before,
        "clones share the generation"
    );
}
