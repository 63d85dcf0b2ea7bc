//! Scratch databases disappear with their guard, stay after a failed case, and the
//! sweep drops only our own names once they are a day old. Real PostgreSQL at
//! `DATABASE_URL` (127.0.0.1:5432 by default).

use dge_testsupport::{STALE_AFTER_SECS, ScratchDb, postgres_admin_url, sweep_stale_databases};
use sqlx::{Connection, Executor, PgConnection, Row};

async fn admin() -> PgConnection {
    PgConnection::connect(&postgres_admin_url())
        .await
        .expect("PostgreSQL must answer at DATABASE_URL (127.0.0.1:5432 by default)")
}

async fn exists(name: &str) -> bool {
    let mut admin = admin().await;
    sqlx::query("SELECT COUNT(*) AS n FROM pg_database WHERE datname = $1")
        .bind(name)
        .fetch_one(&mut admin)
        .await
        .expect("count")
        .get::<i64, _>("n")
        == 1
}

#[tokio::test]
async fn a_postgres_database_goes_with_its_guard_even_with_open_connections() {
    let scratch = ScratchDb::postgres("selftest").await;
    let name = scratch.name();
    assert!(name.starts_with("dge_t"), "{name}");
    assert!(exists(&name).await, "{name} was not created");
    // A connection still open when the case ends, as a test's pool would be.
    let mut open = PgConnection::connect(scratch.url()).await.expect("connect");
    open.execute("CREATE TABLE t (x INT)")
        .await
        .expect("use it");
    drop(scratch);
    assert!(!exists(&name).await, "{name} is still there");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guard_works_on_a_multi_thread_runtime_too() {
    let scratch = ScratchDb::postgres("selftest").await;
    let name = scratch.name();
    drop(scratch);
    assert!(!exists(&name).await, "{name} is still there");
}

#[tokio::test]
async fn a_failed_case_keeps_its_database_for_a_look() {
    let name = std::thread::spawn(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let scratch = runtime.block_on(ScratchDb::postgres("selftest"));
        let name = scratch.name();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _scratch = scratch;
            panic!("the case fails");
        }));
        assert!(outcome.is_err());
        name
    })
    .join()
    .expect("thread");
    assert!(
        exists(&name).await,
        "{name} was dropped although its case failed"
    );
    let mut admin = admin().await;
    admin
        .execute(format!("DROP DATABASE {name} WITH (FORCE)").as_str())
        .await
        .expect("clean up");
}

#[tokio::test]
async fn the_sweep_drops_only_our_databases_older_than_a_day() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let old = format!(
        "dge_t{}_selftest_{}",
        now - STALE_AFTER_SECS - 60,
        &tag[..16]
    );
    let young = format!("dge_t{}_selftest_{}", now - 3600, &tag[..16]);
    let foreign = format!("dge_e2e_selftest_{}", &tag[..16]);
    let mut admin = admin().await;
    for name in [&old, &young, &foreign] {
        admin
            .execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .expect("create");
    }
    // Another run may sweep at the same moment: `old` must be gone either way.
    let swept = sweep_stale_databases(&postgres_admin_url())
        .await
        .expect("sweep");
    assert!(
        !swept.contains(&young) && !swept.contains(&foreign),
        "{swept:?}"
    );
    assert!(!exists(&old).await, "{old} survived the sweep");
    assert!(exists(&young).await, "{young} is younger than a day");
    assert!(exists(&foreign).await, "{foreign} is not ours to drop");
    for name in [&young, &foreign] {
        admin
            .execute(format!("DROP DATABASE {name}").as_str())
            .await
            .expect("clean up");
    }
}

#[test]
fn a_sqlite_file_goes_with_its_guard() {
    let scratch = ScratchDb::sqlite("selftest");
    let path = scratch.name();
    for suffix in ["", "-wal", "-shm"] {
        std::fs::write(format!("{path}{suffix}"), b"x").expect("write");
    }
    assert!(scratch.url().starts_with("sqlite://"));
    drop(scratch);
    for suffix in ["", "-wal", "-shm"] {
        assert!(
            !std::path::Path::new(&format!("{path}{suffix}")).exists(),
            "{path}{suffix} is still there"
        );
    }
}
