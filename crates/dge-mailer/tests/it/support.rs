//! Databases, the SMTP sink and sample emails shared by the tests.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;

use dge_core::clock::ManualClock;
use dge_mailer::{DispatchSettings, Dispatcher, MailSettings, Outbox, Transport};
use dge_store::Db;
use dge_testsupport::ScratchDb;
use serde_json::{Value, json};
use sqlx::Row;

pub(crate) const NOW: i64 = 1_800_000_000;

/// Which engine a case runs on.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Engine {
    Sqlite,
    Postgres,
}

pub(crate) const ENGINES: [Engine; 2] = [Engine::Sqlite, Engine::Postgres];

/// The URL of a new, empty, migrated database, and the guard that removes it once
/// the case passed (a failed case keeps it for a look).
pub(crate) async fn fresh_url(engine: Engine) -> (String, ScratchDb) {
    let scratch = match engine {
        Engine::Sqlite => ScratchDb::sqlite("mailer"),
        Engine::Postgres => ScratchDb::postgres("mailer").await,
    };
    let db = Db::connect(scratch.url(), 2).await.expect("connect");
    db.migrate().await.expect("migrate");
    (scratch.url().to_owned(), scratch)
}

pub(crate) fn mail_settings() -> MailSettings {
    MailSettings {
        portal_name: "DataGrandEst".into(),
        home_url: "https://www.datagrandest.fr".into(),
        support_email: "contact@datagrandest.fr".into(),
        from: "DataGrandEst <no-reply@datagrandest.fr>".into(),
    }
}

/// Queues `kind` for `to` in a transaction of its own.
pub(crate) async fn enqueue(db: &Db, outbox: &Outbox, kind: &str, to: &str, name: &str) -> String {
    let mut tx = db.begin().await.expect("begin");
    let id = outbox
        .enqueue(&mut tx, kind, to, name, sample_context(kind), NOW)
        .await
        .expect("enqueue");
    tx.commit().await.expect("commit");
    id
}

/// A dispatcher on its own pool, as a separate replica would have.
pub(crate) async fn dispatcher(
    url: &str,
    transport: Transport,
    clock: &ManualClock,
    settings: DispatchSettings,
) -> Dispatcher {
    let db = Db::connect(url, 2).await.expect("connect");
    Dispatcher::new(
        db,
        transport,
        Arc::new(clock.clone()),
        settings,
        Arc::new(tokio::sync::Notify::new()),
    )
    .expect("dispatcher")
}

/// One outbox row, as the tests read it.
#[derive(Debug)]
pub(crate) struct OutboxRow {
    pub(crate) status: String,
    pub(crate) attempts: i64,
    pub(crate) next_attempt_at: i64,
    pub(crate) last_error: String,
}

pub(crate) async fn row(db: &Db, id: &str) -> OutboxRow {
    let r = sqlx::query(
        "SELECT status, attempts, next_attempt_at, last_error FROM outbox WHERE id = $1",
    )
    .bind(id)
    .fetch_one(db.pool())
    .await
    .expect("outbox row");
    OutboxRow {
        status: r.get("status"),
        attempts: r.get("attempts"),
        next_attempt_at: r.get("next_attempt_at"),
        last_error: r.get("last_error"),
    }
}

pub(crate) async fn count_with_status(db: &Db, status: &str) -> i64 {
    sqlx::query("SELECT COUNT(*) AS n FROM outbox WHERE status = $1")
        .bind(status)
        .fetch_one(db.pool())
        .await
        .expect("count")
        .get("n")
}

/// A context for each kind, like the one its caller builds.
pub(crate) fn sample_context(kind: &str) -> Value {
    let person = json!({
        "display_name": "Zoé L'Hôte-Gaëlle\r\nBcc: intrus@pirate.example",
        "login": "zlhote",
        "email": "zoe.lhote@nancy.fr",
        "organisation": "Ville de Nancy",
        "function": "Chargée d'études",
        "description": "Je souhaite publier les données <vélo> de la ville & des environs.",
        "created_at": "4 décembre 2026 à 10 h 00",
    });
    match kind {
        "confirm_email" | "email_change_confirm" => json!({
            "link": "https://idp.example.org/confirm?token=abc&x=1",
            "valid_for": "48 heures",
            "login": "cmartin",
        }),
        "account_activated" | "account_reactivated" => {
            json!({ "login_url": "https://idp.example.org/login" })
        }
        "account_rejected" => {
            json!({ "reason": "Organisme inconnu.\nÉcrivez-nous <svp>." })
        }
        "signup_existing" => json!({
            "login_url": "https://idp.example.org/login",
            "reset_url": "https://idp.example.org/password/forgot",
            "provider_label": null,
        }),
        "signup_unconfirmed" => json!({
            "resend_url": "https://idp.example.org/signup/resend",
            "purge_date": "11/12/2026 10:00 UTC",
        }),
        "admin_signup_notice" => json!({ "account": person, "accounts": [person], "count": 1 }),
        "admin_signup_digest" => json!({ "accounts": [person, person], "count": 2 }),
        "admin_pending_reminder" => {
            json!({ "accounts": [person], "count": 1, "older_than_days": 3 })
        }
        "password_reset" => json!({
            "link": "https://idp.example.org/password/reset?token=abc",
            "valid_minutes": 60,
        }),
        "password_reset_federated" => json!({
            "provider_label": "ProConnect",
            "login_url": "https://idp.example.org/login",
        }),
        "password_changed" | "mfa_enabled" | "mfa_disabled" => {
            json!({ "reset_url": "https://idp.example.org/password/forgot" })
        }
        "email_change_requested" | "email_changed" => {
            json!({ "new_email_masked": "z***@nancy.fr" })
        }
        "federated_link_added" => json!({
            "provider_label": "ProConnect",
            "linked_at": "4 décembre 2026 à 10 h 00",
            "reset_url": "https://idp.example.org/password/forgot",
        }),
        "mfa_recovery_code_used" => json!({
            "remaining": 9,
            "reset_url": "https://idp.example.org/password/forgot",
        }),
        "account_locked" | "account_code_locked" => json!({
            "lock_minutes": 15,
            "reset_url": "https://idp.example.org/password/forgot",
        }),
        "link_code" => json!({
            "provider_label": "ProConnect",
            "code": "482913",
            "valid_minutes": 15,
        }),
        _ => json!({}),
    }
}

/// The repository's `.venv` Python, where tests/run-all.sh installs aiosmtpd.
fn python() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = root.join(".venv/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run tests/run-all.sh (it creates .venv with tests/e2e/requirements.txt)",
        python.display()
    );
    python
}

fn sink_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/e2e/smtp_sink.py")
}

/// A loopback port nobody listens on right now.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A scratch folder of this test.
pub(crate) fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dge-mailer-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// A CA and a server certificate for 127.0.0.1, in `dir`.
pub(crate) fn make_certs(dir: &Path) {
    let status = Command::new(python())
        .arg(sink_script())
        .arg("certs")
        .arg(dir)
        .status()
        .expect("run smtp_sink.py certs (needs openssl)");
    assert!(status.success(), "smtp_sink.py certs failed");
}

/// aiosmtpd running `smtp_sink.py serve`; stopped when dropped.
pub(crate) struct Sink {
    pub(crate) port: u16,
    log: PathBuf,
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Sink {
    pub(crate) fn start(port: u16, extra: &[&str]) -> Self {
        let dir = scratch();
        let log = dir.join("received.jsonl");
        let errors = dir.join("stderr.txt");
        let mut child = Command::new(python())
            .arg(sink_script())
            .args(["serve", "--port", &port.to_string(), "--log"])
            .arg(&log)
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            // aiosmtpd reports every aborted TLS handshake there, which some tests cause.
            .stderr(std::fs::File::create(&errors).expect("sink stderr file"))
            .spawn()
            .expect("start smtp_sink.py");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the sink's first line");
        assert_eq!(
            line.trim(),
            format!("ready {port}"),
            "smtp sink did not start"
        );
        let stdin = child.stdin.take();
        Self {
            port,
            log,
            child,
            stdin,
        }
    }

    /// Every message received so far, parsed by Python's `email` package.
    pub(crate) fn messages(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).expect("sink record is JSON"))
            .collect()
    }

    pub(crate) fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        // Closing stdin asks the sink to stop; it exits once the server is down.
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        if self.stdin.is_some() {
            self.shutdown();
        }
    }
}
