//! Back-channel logouts through their queue, on both backends: a module that refuses
//! is told again later, exactly once in the end; replicas do not both post a
//! notification; a client that lost its URI, or was deleted, is not posted to.
//! The modules are small HTTP servers on 127.0.0.1; time moves on the manual clock.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Form, State};
use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dge_oidc::backchannel::{Dispatcher, Settings};
use dge_oidc::clients::ClientSettings;
use dge_oidc::logout::{LogoutOutcome, LogoutParams};
use dge_store::sessions::{EndingSession, SessionsEnded};
use serde_json::Value;

use crate::backends::{ACCOUNT, ENGINES, Engine, ISSUER, NOW, World, client, world};

/// A module's back-channel endpoint: refuses (503) its first `refuse_first` posts,
/// accepts the others, and keeps every logout token with the status it answered.
#[derive(Clone)]
struct Module {
    uri: String,
    posts: Arc<Mutex<Vec<(u16, String)>>>,
}

impl Module {
    async fn start(refuse_first: usize) -> Self {
        let posts = Arc::new(Mutex::new(Vec::new()));
        let state = (posts.clone(), refuse_first);
        let app = axum::Router::new()
            .route("/backchannel", axum::routing::post(receive))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let uri = format!("http://{}/backchannel", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { uri, posts }
    }

    fn posts(&self) -> Vec<(u16, String)> {
        self.posts.lock().unwrap().clone()
    }

    fn accepted(&self) -> Vec<String> {
        self.posts()
            .into_iter()
            .filter(|(status, _)| *status == 200)
            .map(|(_, token)| token)
            .collect()
    }

    /// Waits (real time) until the module accepted `n` tokens.
    async fn wait_for_accepted(&self, n: usize) {
        for _ in 0..100 {
            if self.accepted().len() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{n} logout(s) expected, got {:?}", self.posts());
    }
}

type ModuleState = (Arc<Mutex<Vec<(u16, String)>>>, usize);

async fn receive(
    State((posts, refuse_first)): State<ModuleState>,
    Form(form): Form<std::collections::HashMap<String, String>>,
) -> StatusCode {
    let token = form.get("logout_token").cloned().unwrap_or_default();
    let mut posts = posts.lock().unwrap();
    let status = if posts.len() < refuse_first {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    posts.push((status.as_u16(), token));
    status
}

/// The header and the claims of a JWT (its signature is the e2e tests' business).
fn decode(token: &str) -> (Value, Value) {
    let mut parts = token.split('.');
    let mut part = || {
        let bytes = URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap();
        serde_json::from_slice::<Value>(&bytes).unwrap()
    };
    (part(), part())
}

/// Registers `id` with `uri` as its back-channel logout URI.
async fn module_client(w: &World, id: &str, uri: Option<&str>) {
    let settings = ClientSettings {
        backchannel_logout_uri: uri.map(str::to_owned),
        ..ClientSettings::default()
    };
    client(w, id, true, settings).await;
}

/// Opens a session, logs `client_ids` into it, and logs it out; returns its hash.
async fn logged_out(w: &World, client_ids: &[&str]) -> String {
    let cookie = w.provider.open_session(ACCOUNT, NOW).await.unwrap();
    let hash = dge_core::token::hash_token(&cookie);
    for id in client_ids {
        w.provider
            .sessions()
            .remember_client(&hash, id, NOW)
            .await
            .unwrap();
    }
    let outcome = w
        .provider
        .logout(LogoutParams::default(), Some(&cookie), true)
        .await
        .unwrap();
    assert_eq!(outcome, LogoutOutcome::LoggedOut);
    hash
}

/// Each notification: client, status, attempts and last error, by client then id.
async fn rows(w: &World) -> Vec<(String, String, i64, String)> {
    sqlx::query_as(
        "SELECT client_id, status, attempts, last_error FROM backchannel_logouts \
         ORDER BY client_id, id",
    )
    .fetch_all(w.db.pool())
    .await
    .unwrap()
}

fn dispatcher(w: &World) -> Dispatcher {
    Dispatcher::new(w.provider.clone(), Settings::default()).unwrap()
}

async fn a_refused_logout_is_retried_until_the_module_takes_it(engine: Engine) {
    let w = world(engine).await;
    let module = Module::start(2).await;
    module_client(&w, "datahub", Some(&module.uri)).await;
    // Without a URI: nothing is queued for it.
    module_client(&w, "carto", None).await;
    let hash = logged_out(&w, &["carto", "datahub"]).await;
    let d = dispatcher(&w);

    assert_eq!(d.run_once().await.unwrap(), 1);
    assert_eq!(module.posts().len(), 1);
    let queued = rows(&w).await;
    assert_eq!(queued.len(), 1, "{queued:?}");
    assert_eq!(
        (queued[0].1.as_str(), queued[0].2, queued[0].3.as_str()),
        ("queued", 1, "answered 503 Service Unavailable")
    );
    // Not due before its wait (30 s after the first failure, then 60 s).
    assert_eq!(d.run_once().await.unwrap(), 0);
    w.clock.advance(30);
    assert_eq!(d.run_once().await.unwrap(), 1);
    w.clock.advance(59);
    assert_eq!(d.run_once().await.unwrap(), 0);
    assert_eq!(module.posts().len(), 2);
    w.clock.advance(1);
    assert_eq!(d.run_once().await.unwrap(), 1);
    w.clock.advance(3600);
    assert_eq!(d.run_once().await.unwrap(), 0, "nothing left to post");

    let posts = module.posts();
    let statuses: Vec<u16> = posts.iter().map(|(s, _)| *s).collect();
    assert_eq!(statuses, [503, 503, 200], "delivered exactly once");
    let done = rows(&w).await;
    assert_eq!(done.len(), 1);
    assert_eq!((done[0].1.as_str(), done[0].2), ("sent", 3));
    // A fresh token each attempt, all about the same session.
    let mut jtis = Vec::new();
    for (n, (_, token)) in posts.iter().enumerate() {
        let (header, claims) = decode(token);
        assert_eq!(header["typ"], "logout+jwt");
        assert_eq!(claims["iss"], ISSUER);
        assert_eq!(claims["sub"], ACCOUNT);
        assert_eq!(claims["aud"], "datahub");
        assert_eq!(claims["sid"], dge_oidc::session::session_id(&hash).as_str());
        assert!(claims["events"]["http://schemas.openid.net/event/backchannel-logout"].is_object());
        assert!(claims.get("nonce").is_none());
        let signed_at = NOW + [0, 30, 90][n];
        assert_eq!(claims["iat"], signed_at, "signed at the attempt");
        assert_eq!(claims["exp"], signed_at + 120);
        jtis.push(claims["jti"].as_str().unwrap().to_owned());
    }
    jtis.sort();
    jtis.dedup();
    assert_eq!(jtis.len(), 3, "a new jti each attempt");
}

async fn a_module_down_for_good_ends_failed_with_the_reason(engine: Engine) {
    let w = world(engine).await;
    let module = Module::start(usize::MAX).await;
    module_client(&w, "datahub", Some(&module.uri)).await;
    logged_out(&w, &["datahub"]).await;
    let settings = Settings {
        max_attempts: 3,
        retry_base_secs: 1,
        ..Settings::default()
    };
    let d = Dispatcher::new(w.provider.clone(), settings).unwrap();
    for _ in 0..5 {
        d.run_once().await.unwrap();
        w.clock.advance(10);
    }
    assert_eq!(module.posts().len(), 3, "three attempts, no more");
    assert_eq!(
        rows(&w).await,
        [(
            "datahub".to_owned(),
            "failed".to_owned(),
            3,
            "answered 503 Service Unavailable".to_owned()
        )]
    );
}

async fn a_client_that_lost_its_uri_or_was_deleted_is_not_posted_to(engine: Engine) {
    let w = world(engine).await;
    let module = Module::start(0).await;
    module_client(&w, "datahub", Some(&module.uri)).await;
    module_client(&w, "gone", Some(&module.uri)).await;
    logged_out(&w, &["datahub", "gone"]).await;
    // Before the dispatcher runs: an administrator removes one's URI, deletes the
    // other.
    let settings = ClientSettings {
        id_token_alg: "ES256".into(),
        ..ClientSettings::default()
    };
    dge_oidc::clients::set_settings(&w.db, "datahub", &settings, NOW)
        .await
        .unwrap();
    sqlx::query("DELETE FROM oidc_clients WHERE id = 'gone'")
        .execute(w.db.pool())
        .await
        .unwrap();
    let d = dispatcher(&w);
    assert_eq!(d.run_once().await.unwrap(), 2);
    w.clock.advance(3600);
    assert_eq!(d.run_once().await.unwrap(), 0, "not retried");
    assert!(module.posts().is_empty(), "{:?}", module.posts());
    assert_eq!(
        rows(&w).await,
        [
            (
                "datahub".to_owned(),
                "failed".to_owned(),
                1,
                "the client no longer has a back-channel logout URI".to_owned()
            ),
            (
                "gone".to_owned(),
                "failed".to_owned(),
                1,
                "the client was deleted".to_owned()
            ),
        ]
    );
}

async fn racing_dispatchers_deliver_each_logout_once(engine: Engine) {
    const SESSIONS: usize = 12;
    const REPLICAS: usize = 3;
    let w = world(engine).await;
    let module = Module::start(0).await;
    module_client(&w, "datahub", Some(&module.uri)).await;
    let mut sids = Vec::new();
    for _ in 0..SESSIONS {
        let hash = logged_out(&w, &["datahub"]).await;
        sids.push(dge_oidc::session::session_id(&hash));
    }
    let settings = Settings {
        batch: 4,
        ..Settings::default()
    };
    let mut tasks = Vec::new();
    for _ in 0..REPLICAS {
        let d = Dispatcher::new(w.provider.clone(), settings.clone()).unwrap();
        let db = w.db.clone();
        tasks.push(tokio::spawn(async move {
            let mut handled = 0;
            loop {
                let queued: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM backchannel_logouts WHERE status = 'queued'",
                )
                .fetch_one(db.pool())
                .await
                .unwrap();
                if queued == 0 {
                    return handled;
                }
                handled += d.run_once().await.unwrap();
            }
        }));
    }
    let mut per_replica = Vec::new();
    for task in tasks {
        per_replica.push(task.await.unwrap());
    }
    assert_eq!(
        per_replica.iter().sum::<usize>(),
        SESSIONS,
        "{per_replica:?}"
    );
    let mut told: Vec<String> = module
        .accepted()
        .iter()
        .map(|t| decode(t).1["sid"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(told.len(), SESSIONS, "one post per session");
    told.sort();
    sids.sort();
    assert_eq!(told, sids, "each session told once");
    assert!(rows(&w).await.iter().all(|r| r.1 == "sent" && r.2 == 1));
}

/// The running dispatcher posts at once, without the clock moving: after a logout,
/// and after an account change ended sessions.
async fn the_first_attempt_is_immediate(engine: Engine) {
    let w = world(engine).await;
    let module = Module::start(0).await;
    module_client(&w, "datahub", Some(&module.uri)).await;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(dispatcher(&w).run(async move {
        let _ = stop_rx.await;
    }));
    logged_out(&w, &["datahub"]).await;
    module.wait_for_accepted(1).await;
    let ended = EndingSession {
        hash: "an-ended-session".into(),
        clients: vec!["datahub".into()],
    };
    w.provider.sessions_ended(ACCOUNT, vec![ended]);
    module.wait_for_accepted(2).await;
    let (_, claims) = decode(&module.accepted()[1]);
    assert_eq!(
        claims["sid"],
        dge_oidc::session::session_id("an-ended-session").as_str()
    );
    stop_tx.send(()).unwrap();
    running.await.unwrap();
    assert_eq!(module.posts().len(), 2);
}

#[tokio::test]
async fn a_refused_logout_is_retried_until_the_module_takes_it_on_both_backends() {
    for engine in ENGINES {
        a_refused_logout_is_retried_until_the_module_takes_it(engine).await;
    }
}

#[tokio::test]
async fn a_module_down_for_good_ends_failed_with_the_reason_on_both_backends() {
    for engine in ENGINES {
        a_module_down_for_good_ends_failed_with_the_reason(engine).await;
    }
}

#[tokio::test]
async fn a_client_that_lost_its_uri_or_was_deleted_is_not_posted_to_on_both_backends() {
    for engine in ENGINES {
        a_client_that_lost_its_uri_or_was_deleted_is_not_posted_to(engine).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_dispatchers_deliver_each_logout_once_on_both_backends() {
    for engine in ENGINES {
        racing_dispatchers_deliver_each_logout_once(engine).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_attempt_is_immediate_on_both_backends() {
    for engine in ENGINES {
        the_first_attempt_is_immediate(engine).await;
    }
}
