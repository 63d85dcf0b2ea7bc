//! The SQLite rebuild of `accounts` that allows the `suspended` status: a database
//! made by the earlier migrations, with rows in `accounts` and in the tables that
//! refer to it, keeps every row, column, index and foreign key through it.
//! And a start cancelled during the migrations leaves no connection without foreign
//! keys in the pool.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use dge_store::Db;
use dge_testsupport::ScratchDb;
use sqlx::Row;
use sqlx::migrate::Migrator;

/// The version of the rebuild.
const REBUILD: &str = "20261208120000";

/// A copy of the SQLite migrations older than the rebuild, in a folder of its own.
fn migrations_before_rebuild(scratch: &ScratchDb) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations/sqlite");
    let target = PathBuf::from(format!("{}.migrations", scratch.name()));
    std::fs::create_dir_all(&target).unwrap();
    let mut copied = 0;
    for entry in std::fs::read_dir(&source).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.as_str() < REBUILD {
            std::fs::copy(&path, target.join(&name)).unwrap();
            copied += 1;
        }
    }
    assert!(copied >= 12, "the earlier migrations are there ({copied})");
    assert!(
        source
            .join(format!("{REBUILD}_account_suspension.sql"))
            .is_file(),
        "the rebuild is where this test expects it"
    );
    target
}

async fn exec(db: &Db, sql: &str) {
    sqlx::query(sql)
        .execute(db.pool())
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Every column of every account, as SQLite quotes them, in id order.
async fn accounts_dump(db: &Db) -> Vec<String> {
    let columns: Vec<String> =
        sqlx::query("SELECT name FROM pragma_table_info('accounts') ORDER BY cid")
            .fetch_all(db.pool())
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<String, _>("name"))
            .collect();
    let expr = columns
        .iter()
        .map(|c| format!("'{c}=' || quote({c})"))
        .collect::<Vec<_>>()
        .join(" || ',' || ");
    sqlx::query(&format!("SELECT {expr} AS r FROM accounts ORDER BY id"))
        .fetch_all(db.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<String, _>("r"))
        .collect()
}

async fn count(db: &Db, sql: &str) -> i64 {
    sqlx::query(sql)
        .fetch_one(db.pool())
        .await
        .unwrap()
        .get::<i64, _>(0)
}

/// Rows of the tables that refer to `accounts`.
const CHILDREN: [&str; 9] = [
    "email_tokens",
    "grants",
    "sessions",
    "federated_links",
    "refresh_tokens",
    "consents",
    "organisation_admins",
    "account_mfa",
    "account_recovery_codes",
];

#[tokio::test]
async fn the_accounts_rebuild_keeps_rows_columns_indexes_and_foreign_keys() {
    let scratch = ScratchDb::sqlite("migrations");
    let folder = migrations_before_rebuild(&scratch);
    let db = Db::connect(scratch.url(), 2).await.unwrap();
    Migrator::new(folder.as_path())
        .await
        .unwrap()
        .run(db.pool())
        .await
        .unwrap();
    std::fs::remove_dir_all(&folder).unwrap();

    for sql in [
        "INSERT INTO organisations (id, name, name_key, status, created_at, updated_at) \
         VALUES ('nancy', 'Ville de Nancy', 'ville de nancy', 'active', 1, 1)",
        "INSERT INTO modules (name, label, created_at) VALUES ('datahub', 'DataHub', 1)",
        "INSERT INTO rights (name, module, label, created_at) VALUES ('datahub:publish', 'datahub', 'Publier', 1)",
        "INSERT INTO oidc_clients (id, name, redirect_uris, confidential, created_at, updated_at) \
         VALUES ('datahub', 'DataHub', '[]', 1, 1, 1)",
        // Every column set, those added after the first schema included.
        "INSERT INTO accounts (id, kind, login, login_key, email, email_key, given_name, family_name, \
         phone, organisation_id, function, description, password_hash, status, email_verified, \
         rejection_reason, is_admin, created_at, updated_at, admin_notified_at, reminded_at, sessions_epoch) \
         VALUES ('a1', 'local', 'CMartin', 'cmartin', 'Camille@nancy.fr', 'camille@nancy.fr', 'Camille', \
         'Martin', '+33612345678', 'nancy', 'Cheffe de projet', 'Publier les données vélo', '$argon2id$x', \
         'active', 1, '', 1, 100, 200, 150, 160, 7)",
        "INSERT INTO accounts (id, kind, email, email_key, given_name, family_name, status, \
         rejection_reason, created_at, updated_at) \
         VALUES ('a2', 'federated', 'l@grandest.fr', 'l@grandest.fr', 'Léa', 'Bernard', 'rejected', \
         'hors périmètre', 300, 300)",
        "INSERT INTO accounts (id, kind, login, login_key, email, email_key, given_name, family_name, \
         status, created_at, updated_at) VALUES ('a3', 'local', 'pg', 'pg', 'p@nancy.fr', 'p@nancy.fr', \
         'P', 'G', 'unconfirmed', 400, 400)",
        "INSERT INTO email_tokens (token_hash, account_id, purpose, email_key, expires_at, created_at) \
         VALUES ('t1', 'a3', 'confirm', 'p@nancy.fr', 999, 400)",
        "INSERT INTO grants (account_id, right_name, granted_by, reason, created_at) \
         VALUES ('a1', 'datahub:publish', 'token:ops', 'demande', 210)",
        "INSERT INTO sessions (id_hash, account_id, auth_time, expires_at, created_at) VALUES ('s1', 'a1', 1, 9, 1)",
        "INSERT INTO federated_links (provider, subject, account_id, email, created_at, updated_at) \
         VALUES ('proconnect', 'sub-1', 'a2', 'l@grandest.fr', 1, 1)",
        "INSERT INTO refresh_tokens (token_hash, family_id, client_id, account_id, scope, auth_time, \
         expires_at, created_at) VALUES ('r1', 'f1', 'datahub', 'a1', 'openid', 1, 9, 1)",
        "INSERT INTO consents (account_id, client_id, scope, created_at) \
         VALUES ('a1', 'datahub', 'openid', 1)",
        "INSERT INTO organisation_admins (account_id, organisation_id, created_at) VALUES ('a1', 'nancy', 1)",
        "INSERT INTO account_mfa (account_id, secret_sealed, confirmed_at, created_at) VALUES ('a1', 'x', 1, 1)",
        "INSERT INTO account_recovery_codes (account_id, code_hash) VALUES ('a1', 'h1')",
    ] {
        exec(&db, sql).await;
    }
    let before = accounts_dump(&db).await;
    let mut children_before = Vec::new();
    for table in CHILDREN {
        children_before.push(count(&db, &format!("SELECT COUNT(*) FROM {table}")).await);
    }
    assert!(
        children_before.iter().all(|n| *n == 1),
        "{children_before:?}"
    );
    let referring = "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' \
                     AND sql LIKE '%REFERENCES accounts (id)%'";
    let referring_before = count(&db, referring).await;
    assert!(referring_before >= CHILDREN.len() as i64);

    // The rest of the migrations, as every start runs them.
    db.migrate().await.unwrap();

    // Every column of every row kept; columns added by later migrations come last,
    // empty.
    let after = accounts_dump(&db).await;
    assert_eq!(after.len(), before.len(), "every row");
    for (row_after, row_before) in after.iter().zip(&before) {
        let added = row_after.strip_prefix(row_before.as_str());
        assert!(
            added.is_some_and(|rest| rest.split(',').skip(1).all(|c| c.ends_with("=NULL"))),
            "every column of every row: {row_before} became {row_after}"
        );
    }
    for (table, n) in CHILDREN.iter().zip(&children_before) {
        let after = count(&db, &format!("SELECT COUNT(*) FROM {table}")).await;
        assert_eq!(after, *n, "{table} keeps its rows");
    }
    let columns = count(&db, "SELECT COUNT(*) FROM pragma_table_info('accounts')").await;
    // The 22 of the rebuild, and `suspended_until` added after it.
    assert_eq!(columns, 23);
    let indexes: Vec<String> = sqlx::query(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'accounts' \
         AND sql IS NOT NULL ORDER BY name",
    )
    .fetch_all(db.pool())
    .await
    .unwrap()
    .iter()
    .map(|r| r.get::<String, _>("name"))
    .collect();
    assert_eq!(
        indexes,
        [
            "accounts_email_key_key",
            "accounts_login_key_key",
            "accounts_organisation_idx",
            "accounts_status_created_idx",
            "accounts_suspended_until_idx"
        ]
    );
    let dangling = sqlx::query("PRAGMA foreign_key_check")
        .fetch_all(db.pool())
        .await
        .unwrap();
    assert!(dangling.is_empty(), "no reference left dangling");
    assert_eq!(
        count(&db, referring).await,
        referring_before,
        "the other tables still refer to accounts by name"
    );

    // The new status is allowed, others are still refused, and the constraints hold.
    exec(
        &db,
        "UPDATE accounts SET status = 'suspended' WHERE id = 'a1'",
    )
    .await;
    for sql in [
        "UPDATE accounts SET status = 'frozen' WHERE id = 'a1'",
        "UPDATE accounts SET kind = 'other' WHERE id = 'a1'",
        "UPDATE accounts SET email_key = 'l@grandest.fr' WHERE id = 'a1'",
        "UPDATE accounts SET login_key = 'pg' WHERE id = 'a1'",
        "UPDATE accounts SET organisation_id = 'nowhere' WHERE id = 'a1'",
        "INSERT INTO sessions (id_hash, account_id, auth_time, expires_at, created_at) VALUES ('s2', 'ghost', 1, 9, 1)",
    ] {
        assert!(
            sqlx::query(sql).execute(db.pool()).await.is_err(),
            "refused: {sql}"
        );
    }
    // Foreign keys are on again, and their cascades reach the rebuilt table.
    exec(&db, "DELETE FROM accounts WHERE id = 'a1'").await;
    for table in [
        "grants",
        "sessions",
        "refresh_tokens",
        "consents",
        "account_mfa",
    ] {
        assert_eq!(
            count(&db, &format!("SELECT COUNT(*) FROM {table}")).await,
            0,
            "{table} rows of a deleted account go with it"
        );
    }
    assert_eq!(count(&db, "SELECT COUNT(*) FROM federated_links").await, 1);

    // The next start has nothing to apply, and foreign keys stay on.
    db.migrate().await.unwrap();
    assert!(
        sqlx::query("INSERT INTO sessions (id_hash, account_id, auth_time, expires_at, created_at) VALUES ('s3', 'ghost', 1, 9, 1)")
            .execute(db.pool())
            .await
            .is_err()
    );
}

/// Whether a connection of the pool enforces foreign keys.
async fn foreign_keys_on(db: &Db) -> bool {
    count(db, "PRAGMA foreign_keys").await == 1
}

#[tokio::test]
async fn a_start_cancelled_during_the_migrations_never_leaves_foreign_keys_off_in_the_pool() {
    // The migrations run with foreign keys off on one connection; a start dropped
    // meanwhile (a timeout, a signal) must not give that connection back to the pool.
    // Cancelled at growing delays (even the first poll reaches the pragma), some of
    // them land while foreign keys are off.
    let mut cancelled = 0;
    for micros in (0..60).map(|i| i * 250) {
        let scratch = ScratchDb::sqlite("migrations-cancel");
        // One connection: the next query gets the migrations' one if it came back.
        let db = Db::connect(scratch.url(), 1).await.unwrap();
        let done =
            tokio::time::timeout(std::time::Duration::from_micros(micros), db.migrate()).await;
        if done.is_err() {
            cancelled += 1;
        }
        assert!(
            foreign_keys_on(&db).await,
            "cancelled after {micros} µs: a connection without foreign keys is in the pool"
        );
        // And the next start finishes the work.
        db.migrate().await.unwrap();
        assert!(foreign_keys_on(&db).await);
    }
    assert!(
        cancelled > 0,
        "no delay cancelled the migrations: the test proves nothing"
    );
}
