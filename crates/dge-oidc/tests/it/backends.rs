//! A fresh database and provider per test, on either backend.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use dge_authz::Keys;
use dge_authz::keys::KeyEncryptionKey;
use dge_core::clock::ManualClock;
use dge_oidc::clients::{self, ClientSettings, NewClient};
use dge_oidc::{Provider, ProviderSettings};
use dge_store::Db;
use dge_store::ephemeral::Ephemeral;
use dge_testsupport::ScratchDb;
use sha2::Digest;

pub(crate) const NOW: i64 = 1_800_000_000;
pub(crate) const ISSUER: &str = "http://127.0.0.1:8080";
pub(crate) const REDIRECT: &str = "http://localhost:8081/callback";
pub(crate) const SECRET: &str = "module-secret";
pub(crate) const ACCOUNT: &str = "acc-1";

/// Which engine a case runs on.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Engine {
    Sqlite,
    Postgres,
}

pub(crate) const ENGINES: [Engine; 2] = [Engine::Sqlite, Engine::Postgres];

async fn fresh(engine: Engine) -> (Db, ScratchDb) {
    let scratch = match engine {
        Engine::Sqlite => ScratchDb::sqlite("oidc_it"),
        Engine::Postgres => ScratchDb::postgres("oidc_it").await,
    };
    let url = scratch.url();
    let db = Db::connect(url, 4).await.expect("connect");
    db.migrate().await.expect("migrate");
    seed_account(&db, ACCOUNT, "cmartin").await;
    (db, scratch)
}

/// An active local account `id` with login `login`.
pub(crate) async fn seed_account(db: &Db, id: &str, login: &str) {
    let email = format!("{login}@example.org");
    sqlx::query(
        "INSERT INTO accounts (id, kind, login, login_key, email, email_key, given_name, \
         family_name, status, email_verified, created_at, updated_at) VALUES \
         ($1, 'local', $2, $2, $3, $3, 'Claire', 'Martin', 'active', 1, 0, 0)",
    )
    .bind(id)
    .bind(login)
    .bind(&email)
    .execute(db.pool())
    .await
    .expect("seed account");
}

/// The provider under test, its database and its clock.
pub(crate) struct World {
    pub(crate) db: Db,
    pub(crate) clock: ManualClock,
    pub(crate) provider: Provider,
    /// Removes the database when the case is done; last, after the pools above.
    _scratch: ScratchDb,
}

pub(crate) async fn world(engine: Engine) -> World {
    let (db, scratch) = fresh(engine).await;
    let clock = ManualClock::new(NOW);
    let kek = KeyEncryptionKey::from_base64(&STANDARD.encode([7u8; 32])).unwrap();
    let keys = Keys::load_or_create(db.clone(), Arc::new(clock.clone()), kek)
        .await
        .unwrap();
    // Production pairs PostgreSQL with Redis; the embedded default keeps codes in
    // the process.
    let ephemeral = match engine {
        Engine::Sqlite => Ephemeral::local("dge:"),
        Engine::Postgres => {
            let url =
                std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
            let prefix = format!("dge-oidc-it:{}:", uuid::Uuid::new_v4().simple());
            Ephemeral::redis(&url, &prefix)
                .await
                .expect("Redis must answer at REDIS_URL (127.0.0.1:6379 by default)")
        }
    };
    let provider = Provider::new(
        db.clone(),
        Arc::new(keys),
        Arc::new(clock.clone()),
        ProviderSettings::new(ISSUER.into()),
    )
    .with_ephemeral(ephemeral);
    World {
        db,
        clock,
        provider,
        _scratch: scratch,
    }
}

/// Registers a confidential client `id` with `settings`.
pub(crate) async fn client(w: &World, id: &str, first_party: bool, settings: ClientSettings) {
    let new = NewClient {
        id: id.into(),
        name: id.into(),
        redirect_uris: vec![REDIRECT.into()],
        post_logout_redirect_uris: vec!["http://localhost:8081/".into()],
        confidential: true,
        first_party,
        secret: Some(SECRET.into()),
    };
    let settings = ClientSettings {
        id_token_alg: "ES256".into(),
        ..settings
    };
    clients::add_with_settings(&w.db, new, &settings, "admin", NOW)
        .await
        .unwrap();
}

/// A first-party client `tool` without redirect URIs, as `dgectl` is: it logs in
/// with the device flow only.
pub(crate) async fn device_tool(w: &World) -> clients::Client {
    client(w, "tool", true, ClientSettings::default()).await;
    sqlx::query("UPDATE oidc_clients SET redirect_uris = '[]' WHERE id = 'tool'")
        .execute(w.db.pool())
        .await
        .unwrap();
    clients::find(&w.db, "tool").await.unwrap().unwrap()
}

/// A device code of `tool` for `scope`, approved by the account in the session
/// `cookie`: the device code the tool then polls with.
pub(crate) async fn approved_device_code(
    w: &World,
    tool: &clients::Client,
    scope: &str,
    cookie: &str,
) -> String {
    let device = w
        .provider
        .device_authorize(tool, Some(scope))
        .await
        .unwrap()
        .map_err(|e| e.error)
        .unwrap();
    w.provider
        .device_decide(&device.user_code, cookie, ACCOUNT, w.provider.now(), true)
        .await
        .unwrap()
        .expect("the device request");
    device.device_code
}

/// The S256 challenge of `verifier`.
pub(crate) fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()))
}
