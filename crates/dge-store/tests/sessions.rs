//! The session store, on both implementations: in the database (the embedded
//! default) and in Redis (two handles stand for two replicas). The accounts live in
//! a real SQLite database either way. Redis comes from `REDIS_URL` (default: the
//! loopback server); a missing Redis fails these tests, it never skips them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use dge_store::Db;
use dge_store::ephemeral::Ephemeral;
use dge_store::sessions::{EndingSession, SessionTimes, Sessions, end_all_in};
use dge_testsupport::ScratchDb;

const NOW: i64 = 1_800_000_000;
const TTL: i64 = 8 * 3600;

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A migrated SQLite database of the test's own, removed when the [`ScratchDb`] goes.
async fn database() -> (Db, ScratchDb) {
    let scratch = ScratchDb::sqlite("sessions");
    let db = Db::connect(scratch.url(), 4).await.unwrap();
    db.migrate().await.unwrap();
    (db, scratch)
}

async fn account(db: &Db, id: &str) {
    sqlx::query(
        "INSERT INTO accounts (id, kind, email, email_key, given_name, family_name, status, created_at, updated_at) \
         VALUES ($1, 'local', $2, $2, 'Camille', 'Martin', 'active', $3, $3)",
    )
    .bind(id)
    .bind(format!("{id}@example.test"))
    .bind(NOW)
    .execute(db.pool())
    .await
    .unwrap();
}

/// Two replicas' handles on one store, and the database of the accounts.
struct Pair {
    db: Db,
    a: Sessions,
    b: Sessions,
    _scratch: ScratchDb,
}

async fn database_pair() -> Pair {
    let (db, scratch) = database().await;
    pair_on(db, scratch)
}

/// Sessions in PostgreSQL (a single replica without Redis).
async fn postgres_pair() -> Pair {
    let scratch = ScratchDb::postgres("sessions").await;
    let db = Db::connect(scratch.url(), 4).await.unwrap();
    db.migrate().await.unwrap();
    pair_on(db, scratch)
}

fn pair_on(db: Db, scratch: ScratchDb) -> Pair {
    let a = Sessions::database(db.clone());
    assert!(!a.is_shared());
    Pair {
        b: a.clone(),
        a,
        db,
        _scratch: scratch,
    }
}

async fn redis_pair() -> Pair {
    let (db, scratch) = database().await;
    let prefix = format!("dge-test:{}:", dge_core::new_id());
    let one = Ephemeral::redis(&redis_url(), &prefix)
        .await
        .expect("Redis must answer on REDIS_URL (default 127.0.0.1:6379)");
    let two = Ephemeral::redis(&redis_url(), &prefix).await.unwrap();
    let a = Sessions::new(db.clone(), &one);
    assert!(a.is_shared());
    Pair {
        b: Sessions::new(db.clone(), &two),
        a,
        db,
        _scratch: scratch,
    }
}

async fn opens_reads_and_closes(p: Pair) {
    account(&p.db, "acc-1").await;
    p.a.open("h1", "acc-1", NOW - 5, NOW + TTL, NOW, None)
        .await
        .unwrap();
    assert_eq!(
        p.b.get("h1", NOW + 10).await.unwrap(),
        Some(("acc-1".to_owned(), NOW - 5))
    );
    assert_eq!(p.b.get("h2", NOW).await.unwrap(), None, "unknown session");
    assert_eq!(p.b.account("h1").await.unwrap().as_deref(), Some("acc-1"));
    p.b.close("h1").await.unwrap();
    assert_eq!(p.a.get("h1", NOW).await.unwrap(), None);
    assert_eq!(p.a.account("h1").await.unwrap(), None);
    // Closing what is gone is not an error.
    p.a.close("h1").await.unwrap();
}

async fn ends_at_its_expiry(p: Pair) {
    account(&p.db, "acc-1").await;
    p.a.open("h1", "acc-1", NOW, NOW + TTL, NOW, None)
        .await
        .unwrap();
    assert!(p.b.get("h1", NOW + TTL - 1).await.unwrap().is_some());
    assert_eq!(p.b.get("h1", NOW + TTL).await.unwrap(), None);
}

async fn refused_while_the_account_is_not_active(p: Pair) {
    account(&p.db, "acc-1").await;
    p.a.open("h1", "acc-1", NOW, NOW + TTL, NOW, None)
        .await
        .unwrap();
    let status = |s: &'static str| {
        sqlx::query("UPDATE accounts SET status = $1 WHERE id = 'acc-1'")
            .bind(s)
            .execute(p.db.pool())
    };
    status("pending").await.unwrap();
    assert_eq!(p.b.get("h1", NOW).await.unwrap(), None);
    status("active").await.unwrap();
    assert!(p.b.get("h1", NOW).await.unwrap().is_some());
    sqlx::query("DELETE FROM accounts WHERE id = 'acc-1'")
        .execute(p.db.pool())
        .await
        .unwrap();
    assert_eq!(p.b.get("h1", NOW).await.unwrap(), None, "deleted account");
}

async fn an_account_change_ends_its_sessions_at_commit(p: Pair) {
    account(&p.db, "acc-1").await;
    account(&p.db, "acc-2").await;
    p.a.open("h1", "acc-1", NOW, NOW + TTL, NOW, None)
        .await
        .unwrap();
    p.b.open("h2", "acc-1", NOW, NOW + TTL, NOW + 1, None)
        .await
        .unwrap();
    p.a.open("h3", "acc-2", NOW, NOW + TTL, NOW, None)
        .await
        .unwrap();
    let mut tx = p.db.begin().await.unwrap();
    end_all_in(&mut tx, "acc-1").await.unwrap();
    // Not yet committed: the sessions still hold.
    assert!(p.a.get("h1", NOW).await.unwrap().is_some());
    tx.rollback().await.unwrap();
    assert!(p.a.get("h2", NOW).await.unwrap().is_some(), "rolled back");

    let mut tx = p.db.begin().await.unwrap();
    end_all_in(&mut tx, "acc-1").await.unwrap();
    tx.commit().await.unwrap();
    for (store, hash) in [(&p.a, "h1"), (&p.b, "h1"), (&p.a, "h2"), (&p.b, "h2")] {
        assert_eq!(store.get(hash, NOW).await.unwrap(), None, "{hash} ended");
    }
    assert!(p.b.get("h3", NOW).await.unwrap().is_some(), "other account");
    assert!(p.a.of_account("acc-1", NOW).await.unwrap().is_empty());
    p.b.forget_account("acc-1").await;
    assert_eq!(p.a.account("h1").await.unwrap(), None, "forgotten");
    // A session opened after the change is valid.
    p.a.open("h4", "acc-1", NOW + 5, NOW + TTL, NOW + 5, None)
        .await
        .unwrap();
    assert!(p.b.get("h4", NOW + 5).await.unwrap().is_some());
}

/// The account `acc-1`, its epoch as a login reads it, then an ending of everything of
/// the account in a transaction not yet committed.
async fn ending_after_a_reading(
    p: &Pair,
) -> (Option<i64>, dge_store::Transaction<'static, dge_store::Any>) {
    account(&p.db, "acc-1").await;
    let read = dge_store::sessions::account_epoch(&p.db, "acc-1")
        .await
        .unwrap();
    let mut tx = p.db.begin().await.unwrap();
    end_all_in(&mut tx, "acc-1").await.unwrap();
    (read, tx)
}

/// A session opened with the epoch a login read before everything of the account
/// ended is born ended; with the current epoch it holds.
async fn a_session_opened_at_an_epoch_read_before_an_ending_is_born_ended(p: Pair) {
    let (read, tx) = ending_after_a_reading(&p).await;
    tx.commit().await.unwrap();
    p.a.open("h1", "acc-1", NOW, NOW + TTL, NOW, read)
        .await
        .unwrap();
    assert_eq!(p.b.get("h1", NOW).await.unwrap(), None, "born ended");
    let now = dge_store::sessions::account_epoch(&p.db, "acc-1")
        .await
        .unwrap();
    assert!(now > read);
    p.a.open("h2", "acc-1", NOW, NOW + TTL, NOW, now)
        .await
        .unwrap();
    assert_eq!(
        p.b.get("h2", NOW).await.unwrap(),
        Some(("acc-1".to_owned(), NOW))
    );
}

/// PostgreSQL: a session opened while an ending of its account is in progress (the
/// epoch bumped, not yet committed) waits for it and is born ended.
#[tokio::test]
async fn on_postgres_a_session_opened_during_an_ending_waits_for_it_and_is_born_ended() {
    let p = postgres_pair().await;
    let (read, tx) = ending_after_a_reading(&p).await;
    let opening = {
        let a = p.a.clone();
        tokio::spawn(async move { a.open("h1", "acc-1", NOW, NOW + TTL, NOW, read).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!opening.is_finished(), "the insert waits for the ending");
    tx.commit().await.unwrap();
    opening.await.unwrap().unwrap();
    assert_eq!(p.b.get("h1", NOW).await.unwrap(), None, "born ended");
    assert_eq!(p.a.account("h1").await.unwrap(), None, "no row written");
}

/// The clients `portal` and `datahub`.
async fn clients(db: &Db) {
    for client in ["portal", "datahub"] {
        sqlx::query(
            "INSERT INTO oidc_clients (id, name, redirect_uris, confidential, created_at, updated_at) \
             VALUES ($1, $1, '', 1, $2, $2)",
        )
        .bind(client)
        .bind(NOW)
        .execute(db.pool())
        .await
        .unwrap();
    }
}

async fn remembers_the_clients_of_a_session(p: Pair) {
    account(&p.db, "acc-1").await;
    clients(&p.db).await;
    p.a.open("h1", "acc-1", NOW, NOW + TTL, NOW, None)
        .await
        .unwrap();
    for client in ["portal", "datahub", "portal"] {
        p.b.remember_client("h1", client, NOW).await.unwrap();
    }
    assert_eq!(p.a.clients("h1").await.unwrap(), ["datahub", "portal"]);
    assert!(p.a.clients("h2").await.unwrap().is_empty());
    p.a.close("h1").await.unwrap();
    assert!(p.b.clients("h1").await.unwrap().is_empty());
}

async fn lists_an_accounts_live_sessions(p: Pair) {
    account(&p.db, "acc-1").await;
    account(&p.db, "acc-2").await;
    p.a.open("h2", "acc-1", NOW - 100, NOW + 20, NOW + 10, None)
        .await
        .unwrap();
    p.b.open("h1", "acc-1", NOW - 100, NOW + TTL, NOW, None)
        .await
        .unwrap();
    p.b.open("h3", "acc-2", NOW, NOW + TTL, NOW, None)
        .await
        .unwrap();
    assert_eq!(
        p.a.of_account("acc-1", NOW + 15).await.unwrap(),
        [
            SessionTimes {
                auth_time: NOW - 100,
                expires_at: NOW + TTL,
                created_at: NOW
            },
            SessionTimes {
                auth_time: NOW - 100,
                expires_at: NOW + 20,
                created_at: NOW + 10
            },
        ]
    );
    assert_eq!(p.a.of_account("acc-1", NOW + 20).await.unwrap().len(), 1);
}

/// What back-channel logout needs before an account change ends the sessions: the
/// account's live sessions that used a module, with their modules; expired ones,
/// ones without a module and other accounts' are left out.
async fn lists_the_sessions_an_account_change_ends(p: Pair) {
    account(&p.db, "acc-1").await;
    account(&p.db, "acc-2").await;
    clients(&p.db).await;
    p.a.open("h1", "acc-1", NOW, NOW + TTL, NOW, None)
        .await
        .unwrap();
    p.b.open("h2", "acc-1", NOW, NOW + TTL, NOW, None)
        .await
        .unwrap();
    p.a.open("h3", "acc-1", NOW, NOW + TTL, NOW, None)
        .await
        .unwrap();
    p.a.open("h4", "acc-1", NOW, NOW + 10, NOW, None)
        .await
        .unwrap();
    p.b.open("h5", "acc-2", NOW, NOW + TTL, NOW, None)
        .await
        .unwrap();
    for (hash, client) in [
        ("h1", "portal"),
        ("h1", "datahub"),
        ("h2", "datahub"),
        ("h4", "portal"),
        ("h5", "portal"),
    ] {
        p.a.remember_client(hash, client, NOW).await.unwrap();
    }
    let expected = [
        EndingSession {
            hash: "h1".into(),
            clients: vec!["datahub".into(), "portal".into()],
        },
        EndingSession {
            hash: "h2".into(),
            clients: vec!["datahub".into()],
        },
    ];
    assert_eq!(p.b.ending("acc-1", NOW + 20).await.unwrap(), expected);
    assert!(p.a.ending("acc-3", NOW).await.unwrap().is_empty());
    // Once they are ended, there is nothing left to end.
    let mut tx = p.db.begin().await.unwrap();
    end_all_in(&mut tx, "acc-1").await.unwrap();
    tx.commit().await.unwrap();
    assert!(p.a.ending("acc-1", NOW + 20).await.unwrap().is_empty());
    assert_eq!(p.a.ending("acc-2", NOW).await.unwrap().len(), 1);
}

macro_rules! on_both {
    ($($case:ident),* $(,)?) => {
        mod on_database {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(super::database_pair().await).await;
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(super::postgres_pair().await).await;
                }
            )*
        }
        mod on_redis {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(super::redis_pair().await).await;
                }
            )*
        }
    };
}

on_both!(
    opens_reads_and_closes,
    ends_at_its_expiry,
    refused_while_the_account_is_not_active,
    an_account_change_ends_its_sessions_at_commit,
    a_session_opened_at_an_epoch_read_before_an_ending_is_born_ended,
    remembers_the_clients_of_a_session,
    lists_an_accounts_live_sessions,
    lists_the_sessions_an_account_change_ends,
);

/// In Redis a session is kept under the digest it is given, for as long as it lasts,
/// under the deployment's prefix.
#[tokio::test]
async fn redis_keys_are_prefixed_digests_with_the_sessions_ttl() {
    let (db, _scratch) = database().await;
    account(&db, "acc-1").await;
    let prefix = format!("dge-test:{}:", dge_core::new_id());
    let shared = Ephemeral::redis(&redis_url(), &prefix).await.unwrap();
    let sessions = Sessions::new(db, &shared);
    let hash = "0f".repeat(32);
    sessions
        .open(&hash, "acc-1", NOW, NOW + TTL, NOW, None)
        .await
        .unwrap();
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut keys = keys;
    keys.sort();
    assert_eq!(
        keys,
        [
            format!("{prefix}account-sessions:acc-1"),
            format!("{prefix}session:{hash}"),
        ]
    );
    let ttl: i64 = redis::cmd("TTL")
        .arg(format!("{prefix}session:{hash}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!((TTL - 5..=TTL).contains(&ttl), "ttl {ttl}");
}
