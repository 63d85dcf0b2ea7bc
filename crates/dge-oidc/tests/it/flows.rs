//! Codes, refresh families, consent, logout and private_key_jwt on both backends.

use dge_oidc::clients::ClientSettings;
use dge_oidc::logout::{LogoutOutcome, LogoutParams};
use dge_oidc::token::{TokenForm, TokenResponse};
use dge_oidc::{AuthorizeOutcome, AuthorizeParams};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::pkcs8::EncodePrivateKey;

use crate::backends::{
    ACCOUNT, ENGINES, Engine, ISSUER, NOW, REDIRECT, SECRET, World, approved_device_code,
    challenge, client, device_tool, seed_account, world,
};

pub(crate) const VERIFIER: &str = "a-verifier-of-more-than-forty-three-characters-0123456789";

pub(crate) fn params(client_id: &str) -> AuthorizeParams {
    AuthorizeParams {
        response_type: Some("code".into()),
        client_id: Some(client_id.into()),
        redirect_uri: Some(REDIRECT.into()),
        scope: Some("openid email".into()),
        state: Some("st".into()),
        nonce: Some("n".into()),
        code_challenge: Some(challenge(VERIFIER)),
        code_challenge_method: Some("S256".into()),
        ..AuthorizeParams::default()
    }
}

pub(crate) fn query_param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

pub(crate) async fn code(w: &World, client_id: &str, cookie: &str) -> String {
    match w
        .provider
        .authorize(params(client_id), Some(cookie))
        .await
        .unwrap()
    {
        AuthorizeOutcome::Redirect(url) => query_param(&url, "code").expect("a code"),
        other => panic!("expected a code, got {other:?}"),
    }
}

pub(crate) fn code_form(code: &str) -> TokenForm {
    TokenForm {
        grant_type: Some("authorization_code".into()),
        code: Some(code.into()),
        redirect_uri: Some(REDIRECT.into()),
        code_verifier: Some(VERIFIER.into()),
        ..TokenForm::default()
    }
}

pub(crate) fn refresh_form(token: &str) -> TokenForm {
    TokenForm {
        grant_type: Some("refresh_token".into()),
        refresh_token: Some(token.into()),
        ..TokenForm::default()
    }
}

pub(crate) async fn grant(
    w: &World,
    client_id: &str,
    form: &TokenForm,
) -> Result<TokenResponse, &'static str> {
    let basic = Some((client_id.to_owned(), SECRET.to_owned()));
    w.provider
        .exchange(form, basic, "127.0.0.1")
        .await
        .unwrap()
        .map_err(|e| e.error)
}

pub(crate) async fn active(w: &World, token: &str) -> bool {
    w.provider.inspect(token).await.unwrap().is_some()
}

async fn code_replay_revokes_what_the_code_gave(engine: Engine) {
    let w = world(engine).await;
    client(&w, "datahub", true, ClientSettings::default()).await;
    let cookie = w.provider.open_session(ACCOUNT, NOW).await.unwrap();
    let code = code(&w, "datahub", &cookie).await;
    let tokens = grant(&w, "datahub", &code_form(&code)).await.unwrap();
    assert!(active(&w, &tokens.access_token).await);
    assert_eq!(
        grant(&w, "datahub", &code_form(&code)).await.err(),
        Some("invalid_grant")
    );
    assert!(!active(&w, &tokens.access_token).await);
    assert!(!active(&w, tokens.refresh_token.as_deref().unwrap()).await);
}

/// A code, or an approved device code, issued before everything of the account ended
/// (a reset, a suspension then a reactivation…) gives nothing after: the person logs
/// in again.
async fn codes_issued_before_everything_ended_give_nothing(engine: Engine) {
    let w = world(engine).await;
    client(&w, "datahub", true, ClientSettings::default()).await;
    let tool = device_tool(&w).await;
    let cookie = w.provider.open_session(ACCOUNT, NOW).await.unwrap();
    let before = code(&w, "datahub", &cookie).await;
    let device_code = approved_device_code(&w, &tool, "openid", &cookie).await;
    let mut conn = w.db.pool().acquire().await.unwrap();
    dge_store::sessions::end_all_in(&mut conn, ACCOUNT)
        .await
        .unwrap();
    drop(conn);
    assert_eq!(
        grant(&w, "datahub", &code_form(&before)).await.err(),
        Some("invalid_grant"),
        "{engine:?}"
    );
    let poll = TokenForm {
        grant_type: Some(dge_oidc::device::DEVICE_GRANT.into()),
        device_code: Some(device_code.clone()),
        ..TokenForm::default()
    };
    assert_eq!(
        grant(&w, "tool", &poll).await.err(),
        Some("invalid_grant"),
        "{engine:?}"
    );
    // Codes issued after it work (a new session: the old one ended).
    let cookie = w.provider.open_session(ACCOUNT, NOW).await.unwrap();
    let after = code(&w, "datahub", &cookie).await;
    assert!(
        grant(&w, "datahub", &code_form(&after)).await.is_ok(),
        "{engine:?}"
    );
}

/// The login form passes on the `sessions_epoch` it read after the password check:
/// when everything of the account ended after that reading, the code it gets is
/// refused, and a login with the current epoch works.
async fn a_code_completed_with_an_epoch_read_before_an_ending_gives_nothing(engine: Engine) {
    let w = world(engine).await;
    client(&w, "datahub", true, ClientSettings::default()).await;
    let login = async || match w.provider.authorize(params("datahub"), None).await.unwrap() {
        AuthorizeOutcome::Login { req, .. } => req,
        other => panic!("expected the login page, got {other:?}"),
    };
    let complete = async |req: &str, epoch: Option<i64>| {
        let cookie = w.provider.open_session(ACCOUNT, NOW).await.unwrap();
        let url = w
            .provider
            .complete(req, ACCOUNT, NOW, Some(&cookie), epoch)
            .await
            .unwrap()
            .expect("the request is still pending");
        query_param(&url, "code").expect("a code")
    };
    let read = dge_store::sessions::account_epoch(&w.db, ACCOUNT)
        .await
        .unwrap();
    let req = login().await;
    let mut conn = w.db.pool().acquire().await.unwrap();
    dge_store::sessions::end_all_in(&mut conn, ACCOUNT)
        .await
        .unwrap();
    drop(conn);
    let code = complete(&req, read).await;
    assert_eq!(
        grant(&w, "datahub", &code_form(&code)).await.err(),
        Some("invalid_grant"),
        "{engine:?}"
    );
    let now = dge_store::sessions::account_epoch(&w.db, ACCOUNT)
        .await
        .unwrap();
    assert!(now > read, "{engine:?}");
    let code = complete(&login().await, now).await;
    assert!(
        grant(&w, "datahub", &code_form(&code)).await.is_ok(),
        "{engine:?}"
    );
}

async fn a_code_is_taken_once_checked_first_and_expires(engine: Engine) {
    let w = world(engine).await;
    client(&w, "datahub", true, ClientSettings::default()).await;
    let cookie = w.provider.open_session(ACCOUNT, NOW).await.unwrap();

    // A wrong verifier is refused without burning the code.
    let code = code(&w, "datahub", &cookie).await;
    let wrong = TokenForm {
        code_verifier: Some("x".repeat(50)),
        ..code_form(&code)
    };
    assert_eq!(
        grant(&w, "datahub", &wrong).await.err(),
        Some("invalid_grant")
    );
    assert!(grant(&w, "datahub", &code_form(&code)).await.is_ok());

    // Concurrent exchanges of one code (replicas sharing the store): at most one
    // gets tokens, and the others, replays, revoke them (checked by
    // `concurrent_replays_leave_nothing_usable`).
    let code = self::code(&w, "datahub", &cookie).await;
    let attempts = (0..8).map(|_| {
        let provider = w.provider.clone();
        let code = code.clone();
        tokio::spawn(async move {
            let basic = Some(("datahub".to_owned(), SECRET.to_owned()));
            let form = code_form(&code);
            provider
                .exchange(&form, basic, "127.0.0.1")
                .await
                .unwrap()
                .is_ok()
        })
    });
    let mut won = 0;
    for attempt in attempts.collect::<Vec<_>>() {
        won += usize::from(attempt.await.unwrap());
    }
    assert!(won <= 1, "{engine:?}: {won}");

    // A code unused past its lifetime is refused.
    let code = self::code(&w, "datahub", &cookie).await;
    w.clock.advance(61);
    assert_eq!(
        grant(&w, "datahub", &code_form(&code)).await.err(),
        Some("invalid_grant")
    );
}

async fn refresh_reuse_revokes_the_family(engine: Engine) {
    let w = world(engine).await;
    client(&w, "datahub", true, ClientSettings::default()).await;
    let cookie = w.provider.open_session(ACCOUNT, NOW).await.unwrap();
    let first = grant(
        &w,
        "datahub",
        &code_form(&code(&w, "datahub", &cookie).await),
    )
    .await
    .unwrap();
    let old = first.refresh_token.unwrap();
    w.clock.advance(10);
    let second = grant(&w, "datahub", &refresh_form(&old)).await.unwrap();
    let new = second.refresh_token.unwrap();
    assert_ne!(old, new);
    assert!(active(&w, &new).await && active(&w, &second.access_token).await);
    assert_eq!(
        grant(&w, "datahub", &refresh_form(&old)).await.err(),
        Some("invalid_grant")
    );
    assert!(!active(&w, &new).await);
    assert!(!active(&w, &second.access_token).await);
}

/// A code of third-party client `client_id`, asked for consent first, which the
/// person gives.
pub(crate) async fn consented_code(w: &World, client_id: &str, cookie: &str) -> String {
    let AuthorizeOutcome::Consent { req } = w
        .provider
        .authorize(params(client_id), Some(cookie))
        .await
        .unwrap()
    else {
        panic!("consent expected");
    };
    let url = w
        .provider
        .answer_consent(&req, cookie, true)
        .await
        .unwrap()
        .unwrap();
    query_param(&url, "code").unwrap_or_else(|| panic!("a code in {url}"))
}

async fn consent_is_asked_once_for_a_third_party(engine: Engine) {
    let w = world(engine).await;
    client(&w, "tiers", false, ClientSettings::default()).await;
    let cookie = w.provider.open_session(ACCOUNT, NOW).await.unwrap();
    consented_code(&w, "tiers", &cookie).await;
    // Remembered; asking again (another consent of the same client) replaces it.
    code(&w, "tiers", &cookie).await;
    let again = AuthorizeParams {
        prompt: Some("consent".into()),
        ..params("tiers")
    };
    let AuthorizeOutcome::Consent { req } =
        w.provider.authorize(again, Some(&cookie)).await.unwrap()
    else {
        panic!("prompt=consent asks again");
    };
    let url = w
        .provider
        .answer_consent(&req, &cookie, true)
        .await
        .unwrap()
        .unwrap();
    assert!(query_param(&url, "code").is_some(), "{url}");
}

async fn logout_closes_the_session_and_forgets_its_modules(engine: Engine) {
    let w = world(engine).await;
    let settings = ClientSettings {
        // Nothing listens there; no dispatcher runs here: the notification stays queued.
        backchannel_logout_uri: Some("http://127.0.0.1:9/backchannel".into()),
        ..ClientSettings::default()
    };
    client(&w, "datahub", true, settings).await;
    let cookie = w.provider.open_session(ACCOUNT, NOW).await.unwrap();
    let first = code(&w, "datahub", &cookie).await;
    let tokens = grant(&w, "datahub", &code_form(&first)).await.unwrap();
    let second = code(&w, "datahub", &cookie).await;
    // On PostgreSQL the world shares Redis, and the session lives there.
    let session_hash = dge_core::token::hash_token(&cookie);
    let modules = w.provider.sessions().clients(&session_hash).await.unwrap();
    assert_eq!(modules, ["datahub"]);
    let refused = LogoutParams {
        client_id: Some("datahub".into()),
        post_logout_redirect_uri: Some("http://localhost:8081/autre".into()),
        ..LogoutParams::default()
    };
    let outcome = w
        .provider
        .logout(refused, Some(&cookie), true)
        .await
        .unwrap();
    assert!(matches!(outcome, LogoutOutcome::Refused(_)));
    assert!(w.provider.session(&cookie).await.unwrap().is_some());
    let ok = LogoutParams {
        client_id: Some("datahub".into()),
        post_logout_redirect_uri: Some("http://localhost:8081/".into()),
        state: Some("s".into()),
        ..LogoutParams::default()
    };
    // Without an id_token_hint the person is asked first; nothing is closed yet.
    let asked = w
        .provider
        .logout(ok.clone(), Some(&cookie), false)
        .await
        .unwrap();
    assert_eq!(asked, LogoutOutcome::Confirm);
    assert!(w.provider.session(&cookie).await.unwrap().is_some());
    let outcome = w.provider.logout(ok, Some(&cookie), true).await.unwrap();
    assert_eq!(
        outcome,
        LogoutOutcome::Redirect("http://localhost:8081/?state=s".into())
    );
    assert!(w.provider.session(&cookie).await.unwrap().is_none());
    let queued: Vec<(String, String)> =
        sqlx::query_as("SELECT client_id, status FROM backchannel_logouts")
            .fetch_all(w.db.pool())
            .await
            .unwrap();
    assert_eq!(queued, [("datahub".to_owned(), "queued".to_owned())]);
    assert!(!active(&w, tokens.refresh_token.as_deref().unwrap()).await);
    assert!(!active(&w, &tokens.access_token).await);
    // A code issued in the session before the logout gives nothing after it.
    assert_eq!(
        grant(&w, "datahub", &code_form(&second)).await.err(),
        Some("invalid_grant"),
        "{engine:?}"
    );
    assert!(
        w.provider
            .sessions()
            .clients(&session_hash)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        w.provider.sessions().is_shared(),
        matches!(engine, Engine::Postgres)
    );
}

/// The modules queued for a back-channel logout, with the account each is for.
async fn queued_logouts(w: &World) -> Vec<(String, String)> {
    sqlx::query_as("SELECT client_id, account_id FROM backchannel_logouts ORDER BY created_at, id")
        .fetch_all(w.db.pool())
        .await
        .unwrap()
}

/// A login in a browser that still presents an earlier session's cookie
/// (`prompt=login`, `max_age` exceeded): for the same account the earlier session's
/// tokens, codes and modules move to the new one, so the logout ends them all; for
/// another account the earlier session is ended as by a logout.
async fn a_new_login_in_the_same_browser_leaves_no_earlier_session_open(engine: Engine) {
    let w = world(engine).await;
    let settings = ClientSettings {
        // Nothing listens there; no dispatcher runs here: the notification stays queued.
        backchannel_logout_uri: Some("http://127.0.0.1:9/backchannel".into()),
        ..ClientSettings::default()
    };
    client(&w, "datahub", true, settings).await;
    seed_account(&w.db, OTHER, "jdupont").await;
    let refresh_of = |t: &TokenResponse| refresh_form(t.refresh_token.as_deref().unwrap());

    let old = w.provider.open_session(ACCOUNT, NOW).await.unwrap();
    let tokens = grant(&w, "datahub", &code_form(&code(&w, "datahub", &old).await))
        .await
        .unwrap();
    let pending = code(&w, "datahub", &old).await;
    let new = w
        .provider
        .open_session_replacing(ACCOUNT, NOW, None, Some(&old))
        .await
        .unwrap();
    assert!(
        w.provider.session(&old).await.unwrap().is_none(),
        "{engine:?}: the earlier cookie opens nothing any more"
    );
    let silent = AuthorizeParams {
        prompt: Some("none".into()),
        ..params("datahub")
    };
    let outcome = w.provider.authorize(silent, Some(&old)).await.unwrap();
    assert_eq!(redirected_error(outcome), "login_required", "{engine:?}");
    // Its refresh tokens now belong to the new session, and still work; a code it
    // issued and nobody exchanged yet is refused (the module asks again).
    let tokens = grant(&w, "datahub", &refresh_of(&tokens)).await.unwrap();
    assert_eq!(
        grant(&w, "datahub", &code_form(&pending)).await.err(),
        Some("invalid_grant"),
        "{engine:?}"
    );
    let from_new = grant(&w, "datahub", &code_form(&code(&w, "datahub", &new).await))
        .await
        .unwrap();
    let new_hash = dge_core::token::hash_token(&new);
    let modules = w.provider.sessions().clients(&new_hash).await.unwrap();
    assert_eq!(modules, ["datahub"], "{engine:?}");
    // One logout ends everything this browser held, and tells the module once.
    w.provider
        .logout(LogoutParams::default(), Some(&new), true)
        .await
        .unwrap();
    for refresh in [&tokens, &from_new] {
        assert_eq!(
            grant(&w, "datahub", &refresh_of(refresh)).await.err(),
            Some("invalid_grant"),
            "{engine:?}: logged out"
        );
    }
    assert_eq!(
        queued_logouts(&w).await,
        [("datahub".to_owned(), ACCOUNT.to_owned())]
    );

    // Someone else logs in in that browser: the earlier session ends as by a logout.
    let mine = w.provider.open_session(ACCOUNT, NOW).await.unwrap();
    let mine_tokens = grant(&w, "datahub", &code_form(&code(&w, "datahub", &mine).await))
        .await
        .unwrap();
    let theirs = w
        .provider
        .open_session_replacing(OTHER, NOW, None, Some(&mine))
        .await
        .unwrap();
    assert!(
        w.provider.session(&mine).await.unwrap().is_none(),
        "{engine:?}"
    );
    assert_eq!(
        w.provider
            .session(&theirs)
            .await
            .unwrap()
            .map(|s| s.0)
            .as_deref(),
        Some(OTHER)
    );
    assert_eq!(
        grant(&w, "datahub", &refresh_of(&mine_tokens)).await.err(),
        Some("invalid_grant"),
        "{engine:?}: the earlier account's tokens are revoked"
    );
    assert!(!active(&w, &mine_tokens.access_token).await, "{engine:?}");
    assert_eq!(
        queued_logouts(&w).await,
        [
            ("datahub".to_owned(), ACCOUNT.to_owned()),
            ("datahub".to_owned(), ACCOUNT.to_owned())
        ],
        "{engine:?}"
    );
}

#[tokio::test]
async fn a_new_login_in_the_same_browser_leaves_no_earlier_session_open_on_both_backends() {
    for engine in ENGINES {
        a_new_login_in_the_same_browser_leaves_no_earlier_session_open(engine).await;
    }
}

/// A second person, for the sessions an `id_token_hint` does not name.
const OTHER: &str = "acc-2";

/// An ID token of `ACCOUNT` issued to `client_id`.
pub(crate) async fn id_token(w: &World, client_id: &str) -> String {
    let cookie = w
        .provider
        .open_session(ACCOUNT, w.provider.now())
        .await
        .unwrap();
    let code = code(w, client_id, &cookie).await;
    let tokens = grant(w, client_id, &code_form(&code)).await.unwrap();
    tokens.id_token.expect("an ID token")
}

/// The `error` of an error redirect, checked to carry `state` and `iss`.
fn redirected_error(outcome: AuthorizeOutcome) -> String {
    let AuthorizeOutcome::Redirect(url) = outcome else {
        panic!("expected a redirect, got {outcome:?}");
    };
    assert_eq!(query_param(&url, "state").as_deref(), Some("st"), "{url}");
    assert_eq!(query_param(&url, "iss").as_deref(), Some(ISSUER), "{url}");
    assert!(query_param(&url, "code").is_none(), "{url}");
    query_param(&url, "error").expect("an error")
}

/// OIDC Core §3.1.2.1: an `id_token_hint` names the person the client expects. A
/// session of someone else is not used: `login_required` with prompt=none, the login
/// page otherwise. A hint we did not issue to this client is `invalid_request`.
async fn an_id_token_hint_names_the_person_to_log_in(engine: Engine) {
    let w = world(engine).await;
    client(&w, "datahub", true, ClientSettings::default()).await;
    client(&w, "tiers", true, ClientSettings::default()).await;
    seed_account(&w.db, OTHER, "jdupont").await;
    let hint = id_token(&w, "datahub").await;
    // Past the ID token's expiry: still a hint (the specification allows it).
    w.clock.advance(2 * 3600);
    let hinted = |prompt: Option<&str>, hint: &str| AuthorizeParams {
        id_token_hint: Some(hint.to_owned()),
        prompt: prompt.map(str::to_owned),
        ..params("datahub")
    };

    let mine = w
        .provider
        .open_session(ACCOUNT, w.provider.now())
        .await
        .unwrap();
    for prompt in [None, Some("none")] {
        let outcome = w
            .provider
            .authorize(hinted(prompt, &hint), Some(&mine))
            .await
            .unwrap();
        let AuthorizeOutcome::Redirect(url) = outcome else {
            panic!("{engine:?}: the hinted person's session gives a code, got {outcome:?}");
        };
        assert!(query_param(&url, "code").is_some(), "{url}");
    }

    let someone_else = w
        .provider
        .open_session(OTHER, w.provider.now())
        .await
        .unwrap();
    for cookie in [Some(someone_else.as_str()), None] {
        let outcome = w
            .provider
            .authorize(hinted(Some("none"), &hint), cookie)
            .await
            .unwrap();
        assert_eq!(redirected_error(outcome), "login_required", "{engine:?}");
        let outcome = w
            .provider
            .authorize(hinted(None, &hint), cookie)
            .await
            .unwrap();
        assert!(
            matches!(outcome, AuthorizeOutcome::Login { .. }),
            "{engine:?}: {outcome:?}"
        );
    }
    // Without a hint, that session is used as before.
    let outcome = w
        .provider
        .authorize(params("datahub"), Some(&someone_else))
        .await
        .unwrap();
    assert!(matches!(outcome, AuthorizeOutcome::Redirect(ref url) if url.contains("code=")));

    // Tampered, not a JWT, or issued to another client: refused, even with a session
    // of the person it names.
    // One character in the middle of the signature changed.
    let at = hint.len() - 20;
    let swapped = if &hint[at..=at] == "A" { "B" } else { "A" };
    let tampered = format!("{}{swapped}{}", &hint[..at], &hint[at + 1..]);
    let theirs = id_token(&w, "tiers").await;
    for bad in [tampered.as_str(), "not-a-token", theirs.as_str()] {
        let outcome = w
            .provider
            .authorize(hinted(None, bad), Some(&mine))
            .await
            .unwrap();
        assert_eq!(redirected_error(outcome), "invalid_request", "{engine:?}");
    }
}

/// A `client_credentials` request of client `svc` with a `private_key_jwt` assertion
/// signed by `secret`.
fn assertion_form(secret: &p256::SecretKey, jti: &str) -> TokenForm {
    let der = secret.to_pkcs8_der().unwrap();
    let claims = serde_json::json!({
        "iss": "svc", "sub": "svc", "aud": format!("{ISSUER}/token"),
        "exp": NOW + 60, "jti": jti,
    });
    let assertion = jsonwebtoken::encode(
        &Header::new(Algorithm::ES256),
        &claims,
        &EncodingKey::from_ec_der(der.as_bytes()),
    )
    .unwrap();
    TokenForm {
        grant_type: Some("client_credentials".into()),
        client_assertion_type: Some(dge_oidc::token::client_auth::JWT_BEARER.into()),
        client_assertion: Some(assertion),
        ..TokenForm::default()
    }
}

async fn private_key_jwt_assertions_are_single_use(engine: Engine) {
    let w = world(engine).await;
    let secret = p256::SecretKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
    let jwks = format!(r#"{{"keys":[{}]}}"#, secret.public_key().to_jwk_string());
    let settings = ClientSettings {
        service_scopes: vec!["authz:check".into()],
        jwks: Some(jwks),
        ..ClientSettings::default()
    };
    client(&w, "svc", true, settings).await;
    let form = assertion_form(&secret, "once");
    let first = w.provider.exchange(&form, None, "127.0.0.1").await.unwrap();
    assert_eq!(first.unwrap().scope, "authz:check");
    let replay = w.provider.exchange(&form, None, "127.0.0.1").await.unwrap();
    assert_eq!(replay.err().map(|e| e.error), Some("invalid_client"));
}

/// A JWKS stored before registration checked it, with a coordinate missing its
/// leading zero byte (as authlib writes one key in ~128), is normalised as read: the
/// client authenticates.
async fn a_short_jwks_stored_before_the_checks_still_authenticates(engine: Engine) {
    use base64::Engine as _;
    use p256::elliptic_curve::sec1::ToEncodedPoint as _;
    let w = world(engine).await;
    let secret = std::iter::repeat_with(|| {
        p256::SecretKey::random(&mut p256::elliptic_curve::rand_core::OsRng)
    })
    .take(20_000)
    .find(|k| k.public_key().to_encoded_point(false).x().unwrap()[0] == 0)
    .expect("a key with a short x within 20 000 draws");
    let point = secret.public_key().to_encoded_point(false);
    let b64 = |c: &[u8]| {
        let start = c.iter().position(|b| *b != 0).unwrap_or(c.len());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&c[start..])
    };
    let jwks = serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256",
        "x": b64(point.x().unwrap()), "y": b64(point.y().unwrap())}]});
    let settings = ClientSettings {
        service_scopes: vec!["authz:check".into()],
        ..ClientSettings::default()
    };
    client(&w, "svc", true, settings).await;
    sqlx::query("UPDATE oidc_clients SET jwks = $1 WHERE id = 'svc'")
        .bind(jwks.to_string())
        .execute(w.db.pool())
        .await
        .unwrap();
    w.db.access_changed().await;
    let form = assertion_form(&secret, "short");
    let issued = w.provider.exchange(&form, None, "127.0.0.1").await.unwrap();
    assert_eq!(
        issued.map(|t| t.scope).ok(),
        Some("authz:check".into()),
        "{engine:?}"
    );
}

/// Introspection reads the account with the token: a person's tokens are inactive
/// while the account is not active, active again with it, inactive once it is
/// deleted; a service's token, which has no account, stays active throughout.
async fn introspection_follows_the_account(engine: Engine) {
    let w = world(engine).await;
    client(&w, "datahub", true, ClientSettings::default()).await;
    let service = ClientSettings {
        service_scopes: vec!["authz:check".into()],
        ..ClientSettings::default()
    };
    client(&w, "svc", true, service).await;
    let service_form = TokenForm {
        grant_type: Some("client_credentials".into()),
        ..TokenForm::default()
    };
    let service_token = grant(&w, "svc", &service_form).await.unwrap().access_token;
    let cookie = w.provider.open_session(ACCOUNT, NOW).await.unwrap();
    let code = code(&w, "datahub", &cookie).await;
    let tokens = grant(&w, "datahub", &code_form(&code)).await.unwrap();
    let refresh = tokens.refresh_token.as_deref().unwrap();
    assert!(active(&w, &tokens.access_token).await, "{engine:?}");
    for status in ["suspended", "active", "rejected", "active"] {
        sqlx::query("UPDATE accounts SET status = $1 WHERE id = $2")
            .bind(status)
            .bind(ACCOUNT)
            .execute(w.db.pool())
            .await
            .unwrap();
        let expected = status == "active";
        let access = active(&w, &tokens.access_token).await;
        assert_eq!(access, expected, "{engine:?}: access token, {status}");
        assert_eq!(
            active(&w, refresh).await,
            expected,
            "{engine:?}: refresh, {status}"
        );
        assert!(
            active(&w, &service_token).await,
            "{engine:?}: service, {status}"
        );
    }
    // The access token's row outlives the account (no foreign key): its account is
    // then missing, and the token inactive.
    sqlx::query("DELETE FROM accounts WHERE id = $1")
        .bind(ACCOUNT)
        .execute(w.db.pool())
        .await
        .unwrap();
    assert!(
        !active(&w, &tokens.access_token).await,
        "{engine:?}: deleted"
    );
    assert!(!active(&w, refresh).await, "{engine:?}: deleted");
    assert!(
        active(&w, &service_token).await,
        "{engine:?}: service, deleted"
    );
}

/// A claimed client id with control characters (a NUL, which PostgreSQL refuses in
/// text) gets its plain OAuth refusal, and its audit row is written without them.
async fn a_claimed_client_id_with_a_nul_is_refused_and_audited(engine: Engine) {
    let w = world(engine).await;
    let form = TokenForm {
        grant_type: Some("client_credentials".into()),
        client_secret: Some("x".into()),
        ..TokenForm::default()
    };
    let basic = Some(("ev\0il\n".to_owned(), "x".to_owned()));
    let answer = w
        .provider
        .exchange(&form, basic, "127.0.0.1")
        .await
        .unwrap();
    assert_eq!(answer.err().map(|e| e.error), Some("invalid_request"));
    let actors: Vec<String> = sqlx::query_scalar(
        "SELECT actor FROM audit_events WHERE action = 'token.refused' ORDER BY created_at",
    )
    .fetch_all(w.db.pool())
    .await
    .unwrap();
    assert_eq!(actors, vec!["evil".to_owned()]);
}

#[tokio::test]
async fn a_claimed_client_id_with_a_nul_is_refused_and_audited_on_both_backends() {
    for engine in ENGINES {
        a_claimed_client_id_with_a_nul_is_refused_and_audited(engine).await;
    }
}

#[tokio::test]
async fn an_id_token_hint_names_the_person_to_log_in_on_both_backends() {
    for engine in ENGINES {
        an_id_token_hint_names_the_person_to_log_in(engine).await;
    }
}

#[tokio::test]
async fn code_replay_revokes_what_the_code_gave_on_both_backends() {
    for engine in ENGINES {
        code_replay_revokes_what_the_code_gave(engine).await;
    }
}

#[tokio::test]
async fn codes_issued_before_everything_ended_give_nothing_on_both_backends() {
    for engine in ENGINES {
        codes_issued_before_everything_ended_give_nothing(engine).await;
    }
}

#[tokio::test]
async fn a_code_completed_with_an_epoch_read_before_an_ending_gives_nothing_on_both_backends() {
    for engine in ENGINES {
        a_code_completed_with_an_epoch_read_before_an_ending_gives_nothing(engine).await;
    }
}

#[tokio::test]
async fn a_code_is_taken_once_checked_first_and_expires_on_both_backends() {
    for engine in ENGINES {
        a_code_is_taken_once_checked_first_and_expires(engine).await;
    }
}

/// Without `offline_access` a refresh token ends with its session (OIDC Core §11);
/// with it, the token outlives the session's hours, but not a logout.
async fn refresh_tokens_end_with_their_session_unless_offline(engine: Engine) {
    let w = world(engine).await;
    client(&w, "datahub", true, ClientSettings::default()).await;
    let cookie = w.provider.open_session(ACCOUNT, NOW).await.unwrap();
    let refresh_of = |t: &TokenResponse| refresh_form(t.refresh_token.as_deref().unwrap());
    let online = grant(
        &w,
        "datahub",
        &code_form(&code(&w, "datahub", &cookie).await),
    )
    .await
    .unwrap();
    let asked = AuthorizeParams {
        scope: Some("openid offline_access".into()),
        ..params("datahub")
    };
    let offline_code = match w.provider.authorize(asked, Some(&cookie)).await.unwrap() {
        AuthorizeOutcome::Redirect(url) => query_param(&url, "code").expect("a code"),
        other => panic!("expected a code, got {other:?}"),
    };
    let offline = grant(&w, "datahub", &code_form(&offline_code))
        .await
        .unwrap();
    // Within the session, both renew.
    let online = grant(&w, "datahub", &refresh_of(&online)).await.unwrap();
    let offline = grant(&w, "datahub", &refresh_of(&offline)).await.unwrap();

    let active = |t: &TokenResponse| {
        let token = t.refresh_token.clone().unwrap();
        let provider = w.provider.clone();
        async move { provider.inspect(&token).await.unwrap().is_some() }
    };
    assert!(
        active(&online).await,
        "{engine:?}: introspected in its session"
    );

    w.clock.advance(w.provider.settings().session_ttl_secs + 1);
    assert_eq!(
        grant(&w, "datahub", &refresh_of(&online)).await.err(),
        Some("invalid_grant"),
        "{engine:?}: the session has ended"
    );
    // Introspection says what the refresh grant does.
    assert!(
        !active(&online).await,
        "{engine:?}: inactive with its session"
    );
    assert!(active(&offline).await, "{engine:?}: offline stays active");
    let offline = grant(&w, "datahub", &refresh_of(&offline))
        .await
        .unwrap_or_else(|e| panic!("{engine:?}: offline_access outlives the session: {e}"));
    let offline = grant(&w, "datahub", &refresh_of(&offline)).await.unwrap();

    // A logout ends even the offline token.
    let closed = w
        .provider
        .logout(LogoutParams::default(), Some(&cookie), true)
        .await
        .unwrap();
    assert!(
        !matches!(closed, LogoutOutcome::Refused { .. }),
        "{closed:?}"
    );
    assert_eq!(
        grant(&w, "datahub", &refresh_of(&offline)).await.err(),
        Some("invalid_grant"),
        "{engine:?}: logged out"
    );
}

/// The tokens of a device login belong to the session the person approved it in:
/// its logout ends them, and without `offline_access` so does its end.
async fn device_tokens_belong_to_the_approving_session(engine: Engine) {
    let w = world(engine).await;
    let tool = device_tool(&w).await;
    let device_tokens = async |scope: &str, cookie: &str| {
        let poll = TokenForm {
            grant_type: Some(dge_oidc::device::DEVICE_GRANT.into()),
            device_code: Some(approved_device_code(&w, &tool, scope, cookie).await),
            ..TokenForm::default()
        };
        grant(&w, "tool", &poll).await.unwrap()
    };
    let refresh_of = |t: &TokenResponse| refresh_form(t.refresh_token.as_deref().unwrap());

    let cookie = w.provider.open_session(ACCOUNT, NOW).await.unwrap();
    let online = device_tokens("openid", &cookie).await;
    let offline = device_tokens("openid offline_access", &cookie).await;
    let online = grant(&w, "tool", &refresh_of(&online)).await.unwrap();
    w.clock.advance(w.provider.settings().session_ttl_secs + 1);
    assert_eq!(
        grant(&w, "tool", &refresh_of(&online)).await.err(),
        Some("invalid_grant"),
        "{engine:?}: the approving session has ended"
    );
    let offline = grant(&w, "tool", &refresh_of(&offline)).await.unwrap();
    w.provider
        .logout(LogoutParams::default(), Some(&cookie), true)
        .await
        .unwrap();
    assert_eq!(
        grant(&w, "tool", &refresh_of(&offline)).await.err(),
        Some("invalid_grant"),
        "{engine:?}: logged out"
    );
    assert!(!active(&w, &offline.access_token).await, "{engine:?}");

    // Approved in a session closed before the tool polled: nothing is issued.
    let cookie = w
        .provider
        .open_session(ACCOUNT, w.provider.now())
        .await
        .unwrap();
    let device_code = approved_device_code(&w, &tool, "openid", &cookie).await;
    w.provider
        .logout(LogoutParams::default(), Some(&cookie), true)
        .await
        .unwrap();
    let poll = TokenForm {
        grant_type: Some(dge_oidc::device::DEVICE_GRANT.into()),
        device_code: Some(device_code),
        ..TokenForm::default()
    };
    assert_eq!(
        grant(&w, "tool", &poll).await.err(),
        Some("invalid_grant"),
        "{engine:?}"
    );
}

#[tokio::test]
async fn device_tokens_belong_to_the_approving_session_on_both_backends() {
    for engine in ENGINES {
        device_tokens_belong_to_the_approving_session(engine).await;
    }
}

#[tokio::test]
async fn refresh_tokens_end_with_their_session_unless_offline_on_both_backends() {
    for engine in ENGINES {
        refresh_tokens_end_with_their_session_unless_offline(engine).await;
    }
}

#[tokio::test]
async fn refresh_reuse_revokes_the_family_on_both_backends() {
    for engine in ENGINES {
        refresh_reuse_revokes_the_family(engine).await;
    }
}

#[tokio::test]
async fn consent_is_asked_once_for_a_third_party_on_both_backends() {
    for engine in ENGINES {
        consent_is_asked_once_for_a_third_party(engine).await;
    }
}

#[tokio::test]
async fn logout_closes_the_session_and_forgets_its_modules_on_both_backends() {
    for engine in ENGINES {
        logout_closes_the_session_and_forgets_its_modules(engine).await;
    }
}

#[tokio::test]
async fn a_short_jwks_stored_before_the_checks_still_authenticates_on_both_backends() {
    for engine in ENGINES {
        a_short_jwks_stored_before_the_checks_still_authenticates(engine).await;
    }
}

#[tokio::test]
async fn private_key_jwt_assertions_are_single_use_on_both_backends() {
    for engine in ENGINES {
        private_key_jwt_assertions_are_single_use(engine).await;
    }
}

#[tokio::test]
async fn introspection_follows_the_account_on_both_backends() {
    for engine in ENGINES {
        introspection_follows_the_account(engine).await;
    }
}

/// A client and its settings are written together: a refusal of either leaves no
/// client, and every broken rule is answered at once.
async fn a_client_is_registered_with_its_settings_or_not_at_all(engine: Engine) {
    use dge_oidc::clients::{self, AddError, NewClient};
    let w = world(engine).await;
    let new = |id: &str| NewClient {
        id: id.into(),
        name: String::new(),
        redirect_uris: vec!["https://module.exemple.fr/*".into()],
        post_logout_redirect_uris: vec![],
        confidential: true,
        first_party: false,
        secret: None,
    };
    let bad_settings = ClientSettings {
        id_token_alg: "ES256".into(),
        service_scopes: vec!["tout".into()],
        ..ClientSettings::default()
    };
    let Err(AddError::Invalid(v)) =
        clients::add_with_settings(&w.db, new("Module"), &bad_settings, "admin", NOW).await
    else {
        panic!("refused");
    };
    let fields: Vec<_> = v.iter().map(|v| v.field).collect();
    assert_eq!(fields, ["id", "redirect_uris", "service_scopes"], "{v:?}");
    assert_eq!(
        v.message_for("service_scopes"),
        Some("portée de service inconnue : tout")
    );
    assert!(clients::find(&w.db, "module").await.unwrap().is_none());

    let mut good = new("module");
    good.redirect_uris = vec!["https://module.exemple.fr/callback".into()];
    let settings = ClientSettings {
        id_token_alg: "RS256".into(),
        userinfo_signed: true,
        backchannel_logout_uri: Some("https://module.exemple.fr/logout".into()),
        ..ClientSettings::default()
    };
    let secret = clients::add_with_settings(&w.db, good, &settings, "admin", NOW)
        .await
        .unwrap();
    assert!(secret.is_some());
    let stored = clients::find(&w.db, "module").await.unwrap().unwrap();
    assert_eq!(stored.settings, settings);
    // Registered, by whom: an audit row in the same transaction (only for the
    // registration that happened).
    let audited: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT actor, subject, detail FROM audit_events WHERE action = 'client.registered'",
    )
    .fetch_all(w.db.pool())
    .await
    .unwrap();
    assert_eq!(
        audited,
        [(
            "admin".to_owned(),
            "module".to_owned(),
            "confidential=true first_party=false redirect_uris=1".to_owned()
        )],
        "{engine:?}"
    );
}

#[tokio::test]
async fn a_client_is_registered_with_its_settings_or_not_at_all_on_both_backends() {
    for engine in ENGINES {
        a_client_is_registered_with_its_settings_or_not_at_all(engine).await;
    }
}

/// A code, or a refresh token, presented twice at the same moment: whichever
/// exchange wins, nothing it gave stays usable, even when the replay is refused
/// before the winner's tokens are recorded (they are recorded only at its commit).
async fn concurrent_replays_leave_nothing_usable(engine: Engine) {
    let w = world(engine).await;
    client(&w, "datahub", true, ClientSettings::default()).await;
    let cookie = w.provider.open_session(ACCOUNT, NOW).await.unwrap();
    for round in 0..20 {
        let c = code(&w, "datahub", &cookie).await;
        let form = code_form(&c);
        let (a, b) = tokio::join!(grant(&w, "datahub", &form), grant(&w, "datahub", &form));
        for tokens in [a, b].into_iter().flatten() {
            assert!(
                !active(&w, &tokens.access_token).await,
                "{engine:?} round {round}: a replayed code's access token still works"
            );
            assert!(!active(&w, tokens.refresh_token.as_deref().unwrap()).await);
        }
    }
    for round in 0..20 {
        let c = code(&w, "datahub", &cookie).await;
        let first = grant(&w, "datahub", &code_form(&c)).await.unwrap();
        let form = refresh_form(first.refresh_token.as_deref().unwrap());
        let (a, b) = tokio::join!(grant(&w, "datahub", &form), grant(&w, "datahub", &form));
        for tokens in [a, b].into_iter().flatten() {
            assert!(
                !active(&w, &tokens.access_token).await,
                "{engine:?} round {round}: a reused refresh token's access token still works"
            );
            assert!(!active(&w, tokens.refresh_token.as_deref().unwrap()).await);
        }
        assert!(
            !active(&w, &first.access_token).await,
            "the family is revoked"
        );
    }
}

#[tokio::test]
async fn concurrent_replays_leave_nothing_usable_on_both_backends() {
    for engine in ENGINES {
        concurrent_replays_leave_nothing_usable(engine).await;
    }
}
