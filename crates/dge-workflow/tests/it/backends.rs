//! A fresh database per test, on either backend.

use std::sync::Arc;
use std::time::Duration;

use dge_core::clock::ManualClock;
use dge_mailer::{MailSettings, Outbox};
use dge_registry::hashing::HashParams;
use dge_registry::{Hasher, Registry, RegistrySettings};
use dge_store::Db;
use dge_testsupport::ScratchDb;
use dge_workflow::Workflow;

pub(crate) const NOW: i64 = 1_800_000_000;

/// Which engine a case runs on.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Engine {
    Sqlite,
    Postgres,
}

pub(crate) const ENGINES: [Engine; 2] = [Engine::Sqlite, Engine::Postgres];

/// A new, empty, migrated database.
pub(crate) async fn fresh(engine: Engine) -> (Db, ScratchDb) {
    let scratch = match engine {
        Engine::Sqlite => ScratchDb::sqlite("workflow"),
        Engine::Postgres => ScratchDb::postgres("workflow").await,
    };
    let url = scratch.url();
    let db = Db::connect(url, 4).await.expect("connect");
    db.migrate().await.expect("migrate");
    seed(&db).await;
    (db, scratch)
}

async fn seed(db: &Db) {
    for sql in [
        "INSERT INTO organisations (id, name, name_key, siret, trusted, status, email_domains, created_at, updated_at) \
         VALUES ('ville-de-nancy', 'Ville de Nancy', 'ville de nancy', '21540395700016', 0, 'active', 'nancy.fr', 0, 0)",
        "INSERT INTO organisations (id, name, name_key, siret, trusted, status, email_domains, created_at, updated_at) \
         VALUES ('region-grand-est', 'Région Grand Est', 'région grand est', '20005226700016', 1, 'active', 'grandest.fr', 0, 0)",
        "INSERT INTO modules (name, label, created_at) VALUES ('datahub', 'DataHub', 0)",
        "INSERT INTO modules (name, label, created_at) VALUES ('communautes', 'Communautés', 0)",
        "INSERT INTO rights (name, module, label, created_at) VALUES ('communautes:member', 'communautes', 'Membre', 0)",
        "INSERT INTO rights (name, module, label, created_at) VALUES ('datahub:dashboards', 'datahub', 'Tableaux', 0)",
        "INSERT INTO rights (name, module, label, created_at) VALUES ('datahub:publish', 'datahub', 'Publier', 0)",
        // The administration client: administrators' tokens carry power only from it.
        "INSERT INTO oidc_clients (id, name, redirect_uris, confidential, first_party, created_at, updated_at) \
         VALUES ('dgectl', 'dgectl', '[]', 0, 1, 0, 0)",
    ] {
        sqlx::query(sql).execute(db.pool()).await.expect("seed");
    }
}

/// The services under test, on `db`, with a clock the test moves.
pub(crate) struct Services {
    pub(crate) db: Db,
    pub(crate) clock: ManualClock,
    pub(crate) registry: Registry,
    pub(crate) workflow: Workflow,
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
            confirmation_ttl_secs: 3600,
        },
    );
    let workflow = Workflow::new(registry.clone(), "http://127.0.0.1:8080".into());
    Services {
        db,
        clock,
        registry,
        workflow,
        _scratch: scratch,
    }
}

/// Marks the account as enrolled in two-step verification (a delegated or global
/// administrator needs it); the secret is never used by these tests.
pub(crate) async fn enrol_mfa(db: &Db, account_id: &str) {
    sqlx::query(
        "INSERT INTO account_mfa (account_id, secret_sealed, confirmed_at, created_at) \
         VALUES ($1, 'unused', 0, 0) ON CONFLICT (account_id) DO NOTHING",
    )
    .bind(account_id)
    .execute(db.pool())
    .await
    .unwrap();
}
