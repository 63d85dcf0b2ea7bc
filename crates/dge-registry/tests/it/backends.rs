//! A fresh database per test, on either backend, and the registry over it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use dge_core::Secret;
use dge_core::clock::ManualClock;
use dge_mailer::{MailSettings, Outbox};
use dge_registry::hashing::HashParams;
use dge_registry::{Hasher, Registry, RegistrySettings, SignUpForm};
use dge_store::Db;
use dge_store::ephemeral::Ephemeral;
use dge_store::sessions::{EndingSession, Sessions, SessionsEnded};
use dge_testsupport::ScratchDb;
use sqlx::Row;

pub(crate) const NOW: i64 = 1_800_000_000;

/// Which engine a case runs on.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Engine {
    Sqlite,
    Postgres,
}

pub(crate) const ENGINES: [Engine; 2] = [Engine::Sqlite, Engine::Postgres];

async fn fresh(engine: Engine) -> (Db, ScratchDb) {
    let scratch = match engine {
        Engine::Sqlite => ScratchDb::sqlite("registry"),
        Engine::Postgres => ScratchDb::postgres("registry").await,
    };
    let url = scratch.url();
    let db = Db::connect(url, 4).await.expect("connect");
    db.migrate().await.expect("migrate");
    for sql in [
        "INSERT INTO organisations (id, name, name_key, trusted, status, email_domains, created_at, updated_at) \
         VALUES ('ville-de-nancy', 'Ville de Nancy', 'ville de nancy', 0, 'active', 'nancy.fr', 0, 0)",
        "INSERT INTO modules (name, label, created_at) VALUES ('datahub', 'DataHub', 0)",
        "INSERT INTO rights (name, module, label, created_at) VALUES ('datahub:publish', 'datahub', 'Publier', 0)",
    ] {
        sqlx::query(sql).execute(db.pool()).await.expect("seed");
    }
    (db, scratch)
}

/// Records what the registry tells the provider (back-channel logout).
#[derive(Default)]
pub(crate) struct EndedLog(Mutex<Vec<(String, Vec<EndingSession>)>>);

impl EndedLog {
    /// Everything told so far, and forgets it.
    pub(crate) fn take(&self) -> Vec<(String, Vec<EndingSession>)> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

impl SessionsEnded for EndedLog {
    fn sessions_ended(&self, account_id: &str, sessions: Vec<EndingSession>) {
        self.0
            .lock()
            .unwrap()
            .push((account_id.to_owned(), sessions));
    }
}

/// The registry under test, on a fresh database, with a clock the test moves.
pub(crate) struct Services {
    pub(crate) db: Db,
    pub(crate) clock: ManualClock,
    pub(crate) registry: Registry,
    /// The registry's sessions: in Redis on PostgreSQL, as in production.
    pub(crate) sessions: Sessions,
    /// What the registry told of the sessions account changes ended.
    pub(crate) ended: Arc<EndedLog>,
    /// Removes the database when the case is done; last, after the pools above.
    _scratch: ScratchDb,
}

pub(crate) async fn services(engine: Engine) -> Services {
    let (db, scratch) = fresh(engine).await;
    let clock = ManualClock::new(NOW);
    let outbox = Outbox::new(MailSettings {
        portal_name: "DataGrandEst".into(),
        home_url: "https://www.datagrandest.fr".into(),
        support_email: "contact@datagrandest.fr".into(),
        from: "DataGrandEst <no-reply@datagrandest.fr>".into(),
    });
    let registry = Registry::new(
        db.clone(),
        Hasher::new(HashParams::default(), 2, Duration::from_secs(10)),
        outbox,
        Arc::new(clock.clone()),
        RegistrySettings {
            public_url: "http://127.0.0.1:8080".into(),
            confirmation_ttl_secs: 48 * 3600,
        },
    );
    let sessions = match engine {
        Engine::Sqlite => Sessions::database(db.clone()),
        Engine::Postgres => {
            let url =
                std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
            let prefix = format!("dge-test:{}:", uuid::Uuid::new_v4().simple());
            let shared = Ephemeral::redis(&url, &prefix)
                .await
                .expect("Redis must answer on REDIS_URL (default 127.0.0.1:6379)");
            Sessions::new(db.clone(), &shared)
        }
    };
    let ended = Arc::new(EndedLog::default());
    let registry = registry
        .with_sessions(sessions.clone())
        .with_sessions_ended(ended.clone());
    Services {
        db,
        clock,
        registry,
        sessions,
        ended,
        _scratch: scratch,
    }
}

pub(crate) const PASSWORD: &str = "Mirabelle-de-Lorraine-ab12-7!";

pub(crate) fn form(login: &str, email: &str) -> SignUpForm {
    SignUpForm {
        given_name: "Camille".into(),
        family_name: "Martin".into(),
        email: email.into(),
        phone: "06 12 34 56 78".into(),
        organisation_id: "ville-de-nancy".into(),
        login: login.into(),
        password: Secret::new(PASSWORD.into()),
        password_confirmation: Secret::new(PASSWORD.into()),
        ..SignUpForm::default()
    }
}

/// Kinds of the emails queued for `email`, oldest first.
pub(crate) async fn outbox_kinds(db: &Db, email: &str) -> Vec<String> {
    sqlx::query("SELECT kind FROM outbox WHERE recipient = $1 ORDER BY created_at, id")
        .bind(email)
        .fetch_all(db.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<String, _>("kind"))
        .collect()
}

/// The newest email of `kind` to `email`: (body, whole text).
pub(crate) async fn last_mail(db: &Db, email: &str, kind: &str) -> String {
    sqlx::query(
        "SELECT body_text FROM outbox WHERE recipient = $1 AND kind = $2 ORDER BY created_at DESC LIMIT 1",
    )
    .bind(email)
    .bind(kind)
    .fetch_one(db.pool())
    .await
    .unwrap()
    .get("body_text")
}

/// The token in the newest email of `kind` to `email` (it is only in the email).
pub(crate) async fn token_in(db: &Db, email: &str, kind: &str) -> String {
    let body = last_mail(db, email, kind).await;
    let start = body.find("token=").expect("link in the email") + "token=".len();
    body[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

/// A session and an access token, as a login would leave them; the session's hash.
pub(crate) async fn logged_in(s: &Services, account_id: &str) -> String {
    let now = s.registry.now();
    let hash = uuid::Uuid::new_v4().to_string();
    s.sessions
        .open(&hash, account_id, now, now + 3600, now, None)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO issued_tokens (jti, client_id, account_id, expires_at, created_at) VALUES ($1, 'datahub', $2, $3, $4)",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(account_id)
    .bind(s.registry.now() + 3600)
    .bind(s.registry.now())
    .execute(s.db.pool())
    .await
    .unwrap();
    hash
}

/// A session used by the module `portal`, as a login through it would leave it; its
/// hash.
pub(crate) async fn logged_in_to_module(s: &Services, account_id: &str) -> String {
    sqlx::query(
        "INSERT INTO oidc_clients (id, name, redirect_uris, confidential, created_at, updated_at) \
         VALUES ('portal', 'Portail', '', 1, 0, 0) ON CONFLICT (id) DO NOTHING",
    )
    .execute(s.db.pool())
    .await
    .unwrap();
    let hash = logged_in(s, account_id).await;
    s.sessions
        .remember_client(&hash, "portal", s.registry.now())
        .await
        .unwrap();
    hash
}
