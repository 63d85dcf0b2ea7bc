//! The outbox and its dispatchers, on SQLite and PostgreSQL.

use std::collections::HashMap;
use std::path::Path;

use dge_core::clock::ManualClock;
use dge_mailer::{DispatchSettings, Outbox, Transport};
use dge_store::Db;

use crate::support::{
    ENGINES, Engine, NOW, count_with_status, dispatcher, enqueue, free_port, fresh_url,
    mail_settings, row, scratch,
};

/// How many times each `Message-ID` occurs in the `.eml` files of `dir`.
fn message_ids_in(dir: &Path) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for entry in std::fs::read_dir(dir).expect("outbox dir") {
        let raw = std::fs::read_to_string(entry.expect("entry").path()).expect("eml");
        let id = raw
            .lines()
            .find_map(|l| l.strip_prefix("Message-ID: "))
            .expect("every message has a Message-ID")
            .to_owned();
        *seen.entry(id).or_insert(0) += 1;
    }
    seen
}

async fn racing_dispatchers_case(engine: Engine) {
    const MESSAGES: usize = 40;
    const REPLICAS: usize = 4;
    let (url, _database) = fresh_url(engine).await;
    let db = Db::connect(&url, 2).await.unwrap();
    let outbox = Outbox::new(mail_settings());
    let mut ids = Vec::new();
    for n in 0..MESSAGES {
        let to = format!("personne{n}@nancy.fr");
        ids.push(enqueue(&db, &outbox, "account_pending", &to, "Zoé").await);
    }
    let dir = scratch().join("outbox");
    let clock = ManualClock::new(NOW);
    let mut tasks = Vec::new();
    for _ in 0..REPLICAS {
        let d = dispatcher(
            &url,
            Transport::file(dir.clone()).unwrap(),
            &clock,
            DispatchSettings::default(),
        )
        .await;
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            let mut handled = 0;
            while count_with_status(&db, "queued").await > 0 {
                handled += d.run_once().await.expect("dispatch pass");
            }
            handled
        }));
    }
    let mut per_replica = Vec::new();
    for task in tasks {
        per_replica.push(task.await.unwrap());
    }
    eprintln!("{engine:?}: messages sent per replica {per_replica:?}");
    assert_eq!(
        per_replica.iter().sum::<usize>(),
        MESSAGES,
        "{per_replica:?}"
    );
    let seen = message_ids_in(&dir);
    assert_eq!(seen.len(), MESSAGES, "every message written");
    // Live links inside: only our user may read the folder and the files.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        for entry in std::fs::read_dir(&dir).unwrap() {
            assert_eq!(mode(&entry.unwrap().path()), 0o600);
        }
    }
    for id in &ids {
        assert_eq!(
            seen.get(&format!("<{id}@datagrandest.fr>")),
            Some(&1),
            "message {id} written exactly once ({engine:?}, {per_replica:?})"
        );
        assert_eq!(row(&db, id).await.status, "sent");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_dispatchers_send_each_email_exactly_once() {
    for engine in ENGINES {
        racing_dispatchers_case(engine).await;
    }
}

async fn back_off_case(engine: Engine) {
    let (url, _database) = fresh_url(engine).await;
    let db = Db::connect(&url, 2).await.unwrap();
    let outbox = Outbox::new(mail_settings());
    let id = enqueue(&db, &outbox, "confirm_email", "zoe@nancy.fr", "Zoé").await;
    let clock = ManualClock::new(NOW);
    // Nothing listens on this port: every attempt fails to connect.
    let smtp = format!("smtp://127.0.0.1:{}", free_port());
    let settings = DispatchSettings {
        max_attempts: 3,
        retry_base_secs: 10,
        retry_max_secs: 15,
        ..DispatchSettings::default()
    };
    let d = dispatcher(
        &url,
        Transport::smtp(&smtp, &dge_mailer::SmtpOptions::default()).unwrap(),
        &clock,
        settings,
    )
    .await;

    assert_eq!(d.run_once().await.unwrap(), 1);
    let first = row(&db, &id).await;
    assert_eq!(
        (first.status.as_str(), first.attempts, first.next_attempt_at),
        ("queued", 1, NOW + 10),
        "first failure waits retry_base_secs"
    );
    assert!(!first.last_error.is_empty(), "the reason is kept");

    clock.advance(9);
    assert_eq!(
        d.run_once().await.unwrap(),
        0,
        "not before the wait is over"
    );
    clock.advance(1);
    assert_eq!(d.run_once().await.unwrap(), 1);
    let second = row(&db, &id).await;
    assert_eq!(
        (second.attempts, second.next_attempt_at),
        (2, NOW + 10 + 15),
        "the wait doubles, capped at retry_max_secs"
    );

    clock.advance(15);
    assert_eq!(d.run_once().await.unwrap(), 1);
    let last = row(&db, &id).await;
    assert_eq!((last.status.as_str(), last.attempts), ("failed", 3));
    assert!(!last.last_error.is_empty(), "{last:?}");
    clock.advance(100_000);
    assert_eq!(
        d.run_once().await.unwrap(),
        0,
        "a failed message waits for an administrator"
    );
}

#[tokio::test]
async fn transient_failures_back_off_then_fail_with_the_reason() {
    for engine in ENGINES {
        back_off_case(engine).await;
    }
}

async fn expired_lease_case(engine: Engine) {
    let (url, _database) = fresh_url(engine).await;
    let db = Db::connect(&url, 2).await.unwrap();
    let outbox = Outbox::new(mail_settings());
    let id = enqueue(&db, &outbox, "account_activated", "zoe@nancy.fr", "Zoé").await;
    // A replica claimed it, then died before recording anything.
    sqlx::query("UPDATE outbox SET lease_id = 'dead-replica', next_attempt_at = $1 WHERE id = $2")
        .bind(NOW + 300)
        .bind(&id)
        .execute(db.pool())
        .await
        .unwrap();
    let dir = scratch().join("outbox");
    let clock = ManualClock::new(NOW);
    let d = dispatcher(
        &url,
        Transport::file(dir.clone()).unwrap(),
        &clock,
        DispatchSettings::default(),
    )
    .await;
    assert_eq!(d.run_once().await.unwrap(), 0, "the lease is still held");
    clock.advance(300);
    assert_eq!(
        d.run_once().await.unwrap(),
        1,
        "taken over once the lease ran out"
    );
    assert_eq!(row(&db, &id).await.status, "sent");
    let seen = message_ids_in(&dir);
    assert_eq!(seen.get(&format!("<{id}@datagrandest.fr>")), Some(&1));
}

#[tokio::test]
async fn a_message_whose_lease_expired_is_taken_over_with_the_same_message_id() {
    for engine in ENGINES {
        expired_lease_case(engine).await;
    }
}

async fn retention_case(engine: Engine) {
    let (url, _database) = fresh_url(engine).await;
    let db = Db::connect(&url, 2).await.unwrap();
    let outbox = Outbox::new(mail_settings());
    let deleted = enqueue(&db, &outbox, "account_deleted", "zoe@nancy.fr", "Zoé").await;
    let dir = scratch().join("outbox");
    let clock = ManualClock::new(NOW);
    let settings = DispatchSettings {
        sent_retention_secs: 3600,
        failed_retention_secs: 7200,
        ..DispatchSettings::default()
    };
    let d = dispatcher(&url, Transport::file(dir).unwrap(), &clock, settings).await;
    assert_eq!(d.run_once().await.unwrap(), 1);
    assert_eq!(row(&db, &deleted).await.status, "sent");
    // A failed message and one still queued (due later) sit beside it.
    let failed = enqueue(&db, &outbox, "account_locked", "paul@nancy.fr", "Paul").await;
    sqlx::query("UPDATE outbox SET status = 'failed', updated_at = $1 WHERE id = $2")
        .bind(NOW)
        .bind(&failed)
        .execute(db.pool())
        .await
        .unwrap();
    let queued = enqueue(&db, &outbox, "account_pending", "lea@nancy.fr", "Léa").await;
    sqlx::query("UPDATE outbox SET next_attempt_at = $1, created_at = $2 WHERE id = $3")
        .bind(NOW + 100_000)
        .bind(NOW - 100_000)
        .bind(&queued)
        .execute(db.pool())
        .await
        .unwrap();

    clock.advance(3599);
    assert_eq!(d.purge_old().await.unwrap(), 0, "{engine:?}: kept an hour");
    clock.advance(2);
    assert_eq!(d.purge_old().await.unwrap(), 1, "{engine:?}");
    let left: Vec<String> = sqlx::query("SELECT recipient FROM outbox ORDER BY recipient")
        .fetch_all(db.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| sqlx::Row::get(r, "recipient"))
        .collect();
    assert_eq!(
        left,
        ["lea@nancy.fr", "paul@nancy.fr"],
        "the sent notice and its address are gone; the others stay"
    );
    clock.advance(3600);
    assert_eq!(
        d.purge_old().await.unwrap(),
        1,
        "the failed one after its delay"
    );
    assert_eq!(
        row(&db, &queued).await.status,
        "queued",
        "queued mail is never deleted"
    );
}

#[tokio::test]
async fn sent_mail_is_deleted_after_its_retention_and_queued_mail_never() {
    for engine in ENGINES {
        retention_case(engine).await;
    }
}

#[tokio::test]
async fn a_retention_shorter_than_the_reset_window_is_refused() {
    let (url, _database) = fresh_url(Engine::Sqlite).await;
    let db = Db::connect(&url, 1).await.unwrap();
    let settings = DispatchSettings {
        sent_retention_secs: 60,
        ..DispatchSettings::default()
    };
    let refused = dge_mailer::Dispatcher::new(
        db,
        Transport::file(scratch().join("outbox")).unwrap(),
        std::sync::Arc::new(ManualClock::new(NOW)),
        settings,
        std::sync::Arc::new(tokio::sync::Notify::new()),
    );
    assert!(refused.is_err());
}
