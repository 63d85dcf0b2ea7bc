//! Clients after registration: updated, their secret rotated, removed, on both
//! backends; each change holds at once, through the provider's cache of clients.

use dge_oidc::AuthorizeOutcome;
use dge_oidc::clients::{self, ChangeError, ClientChanges, ClientSettings, NewClient};
use dge_oidc::token::{TokenForm, TokenResponse};

use crate::backends::{
    ACCOUNT, ENGINES, Engine, NOW, REDIRECT, SECRET, World, approved_device_code, client,
    device_tool, world,
};
use crate::flows::{active, code, code_form, consented_code, grant, params, refresh_form};

const ADMIN: &str = "account:admin";

async fn grant_with(
    w: &World,
    client_id: &str,
    secret: &str,
    form: &TokenForm,
) -> Result<TokenResponse, &'static str> {
    let basic = Some((client_id.to_owned(), secret.to_owned()));
    w.provider
        .exchange(form, basic, "127.0.0.1")
        .await
        .unwrap()
        .map_err(|e| e.error)
}

fn service_form() -> TokenForm {
    TokenForm {
        grant_type: Some("client_credentials".into()),
        ..TokenForm::default()
    }
}

/// The audit rows of `action` about `subject`: (actor, detail).
async fn audit(w: &World, action: &str, subject: &str) -> Vec<(String, String)> {
    sqlx::query_as(
        "SELECT actor, detail FROM audit_events WHERE action = $1 AND subject = $2 \
         ORDER BY created_at",
    )
    .bind(action)
    .bind(subject)
    .fetch_all(w.db.pool())
    .await
    .unwrap()
}

async fn count(w: &World, table: &str, client_id: &str) -> i64 {
    sqlx::query_scalar(&format!(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM {table} WHERE client_id = $1"
    ))
    .bind(client_id)
    .fetch_one(w.db.pool())
    .await
    .unwrap()
}

/// The fields given change, the others are kept, "empty" differs from "not given",
/// the cached client is dropped, and a refusal names every broken rule and changes
/// nothing.
async fn an_update_changes_the_fields_given_and_only_them(engine: Engine) {
    let w = world(engine).await;
    let settings = ClientSettings {
        backchannel_logout_uri: Some("https://datahub.example.fr/bc".into()),
        service_scopes: vec!["authz:check".into()],
        ..ClientSettings::default()
    };
    client(&w, "datahub", true, settings).await;
    let cookie = w.provider.open_session(ACCOUNT, NOW).await.unwrap();
    // Read once, so that the provider's cache holds the client; the code is kept.
    let issued_before = code(&w, "datahub", &cookie).await;
    // A login under way for the URI the update will take off.
    let AuthorizeOutcome::Login { req, .. } =
        w.provider.authorize(params("datahub"), None).await.unwrap()
    else {
        panic!("the login page");
    };

    // A web client does not become a device-only one: those are the administration
    // clients, whose tokens carry administrator power.
    let to_device = ClientChanges {
        redirect_uris: Some(Vec::new()),
        ..ClientChanges::default()
    };
    let Err(ChangeError::Invalid(v)) =
        clients::lifecycle::update(&w.db, "datahub", &to_device, ADMIN, NOW).await
    else {
        panic!("{engine:?}: a web client emptied of its redirect URIs");
    };
    let found: Vec<_> = v.iter().map(|v| (v.field, v.code)).collect();
    assert_eq!(found, [("redirect_uris", "kind_change")], "{engine:?}");

    let bad = ClientChanges {
        redirect_uris: Some(vec!["http://module.example.fr/cb".into()]),
        id_token_alg: Some("HS256".into()),
        backchannel_logout_uri: Some(Some("ftp://x".into())),
        jwks: Some(Some("{".into())),
        ..ClientChanges::default()
    };
    let Err(ChangeError::Invalid(v)) =
        clients::lifecycle::update(&w.db, "datahub", &bad, ADMIN, NOW).await
    else {
        panic!("refused");
    };
    let fields: Vec<_> = v.iter().map(|v| v.field).collect();
    assert_eq!(
        fields,
        [
            "redirect_uris",
            "id_token_alg",
            "backchannel_logout_uri",
            "jwks"
        ],
        "{engine:?}"
    );
    // The provider posts back-channel logouts itself: never to the cloud's metadata
    // service, a link-local, multicast or unspecified address; private ones serve
    // modules on the portal's own network.
    for forbidden in [
        "https://169.254.169.254/latest/meta-data",
        "https://[fe80::1]/bc",
        "https://[::ffff:a9fe:a9fe]/bc",
        "https://0.0.0.0/bc",
        "https://224.0.0.1/bc",
    ] {
        let changes = ClientChanges {
            backchannel_logout_uri: Some(Some(forbidden.into())),
            ..ClientChanges::default()
        };
        let Err(ChangeError::Invalid(v)) =
            clients::lifecycle::update(&w.db, "datahub", &changes, ADMIN, NOW).await
        else {
            panic!("{forbidden} refused");
        };
        assert_eq!(
            v.iter().map(|v| (v.field, v.code)).collect::<Vec<_>>(),
            [("backchannel_logout_uri", "forbidden_address")],
            "{engine:?}: {forbidden}"
        );
    }
    // An update that changes nothing is refused rather than audited.
    let Err(ChangeError::Invalid(v)) =
        clients::lifecycle::update(&w.db, "datahub", &ClientChanges::default(), ADMIN, NOW).await
    else {
        panic!("an empty update is refused");
    };
    assert_eq!(
        v.iter().map(|v| (v.field, v.code)).collect::<Vec<_>>(),
        [("client", "nothing_to_change")]
    );
    let unchanged = clients::find(&w.db, "datahub").await.unwrap().unwrap();
    assert_eq!(unchanged.redirect_uris, [REDIRECT]);
    assert!(audit(&w, "client.updated", "datahub").await.is_empty());

    let new_uri = "http://localhost:8081/new-callback";
    let changes = ClientChanges {
        name: Some("  DataHub v2 ".into()),
        redirect_uris: Some(vec![new_uri.into()]),
        first_party: Some(false),
        backchannel_logout_uri: Some(None),
        ..ClientChanges::default()
    };
    let updated = clients::lifecycle::update(&w.db, "datahub", &changes, ADMIN, NOW + 5)
        .await
        .unwrap();
    assert_eq!(updated.name, "DataHub v2");
    assert_eq!(updated.redirect_uris, [new_uri]);
    assert!(!updated.first_party);
    assert_eq!(updated.settings.backchannel_logout_uri, None);
    // Kept: not given.
    assert_eq!(
        updated.post_logout_redirect_uris,
        ["http://localhost:8081/"]
    );
    assert_eq!(updated.settings.service_scopes, ["authz:check"]);
    assert_eq!(updated.settings.id_token_alg, "ES256");
    assert!(updated.secret_matches(SECRET));
    assert_eq!(
        audit(&w, "client.updated", "datahub").await,
        [(
            ADMIN.to_owned(),
            "name,redirect_uris,first_party,backchannel_logout_uri".to_owned()
        )]
    );
    // The old URI gets nothing more: not the login under way, nor the code issued.
    assert_eq!(
        w.provider
            .complete(&req, ACCOUNT, NOW + 5, Some(&cookie), None)
            .await
            .unwrap(),
        None,
        "{engine:?}: a login finished after its redirect URI was taken off"
    );
    assert_eq!(
        grant(&w, "datahub", &code_form(&issued_before)).await.err(),
        Some("invalid_grant"),
        "{engine:?}: a code for a redirect URI taken off"
    );
    // The old URI is refused at once, the new one accepted.
    let outcome = w
        .provider
        .authorize(params("datahub"), Some(&cookie))
        .await
        .unwrap();
    assert!(
        matches!(outcome, AuthorizeOutcome::ErrorPage(_)),
        "{engine:?}: {outcome:?}"
    );
    let mut moved = params("datahub");
    moved.redirect_uri = Some(new_uri.into());
    let outcome = w.provider.authorize(moved, Some(&cookie)).await.unwrap();
    assert!(
        !matches!(outcome, AuthorizeOutcome::ErrorPage(_)),
        "{engine:?}: {outcome:?}"
    );
    // Empty lists are a value, not an absence.
    let cleared = ClientChanges {
        service_scopes: Some(vec![]),
        ..ClientChanges::default()
    };
    let updated = clients::lifecycle::update(&w.db, "datahub", &cleared, ADMIN, NOW + 6)
        .await
        .unwrap();
    assert!(updated.settings.service_scopes.is_empty());
    assert_eq!(updated.redirect_uris, [new_uri]);

    assert!(matches!(
        clients::lifecycle::update(&w.db, "absent", &changes, ADMIN, NOW).await,
        Err(ChangeError::NotFound)
    ));
}

/// After a rotation, the old secret is refused at once (the provider had the client
/// cached) and the new one works; a public client has no secret to rotate.
async fn a_rotated_secret_replaces_the_old_one_at_once(engine: Engine) {
    let w = world(engine).await;
    let settings = ClientSettings {
        service_scopes: vec!["authz:check".into()],
        ..ClientSettings::default()
    };
    client(&w, "svc", true, settings).await;
    let before = grant_with(&w, "svc", SECRET, &service_form())
        .await
        .unwrap();
    let secret = clients::lifecycle::rotate_secret(&w.db, "svc", ADMIN, NOW)
        .await
        .unwrap();
    assert_ne!(secret, SECRET);
    assert!(secret.len() >= 32, "{secret}");
    assert_eq!(
        grant_with(&w, "svc", SECRET, &service_form()).await.err(),
        Some("invalid_client"),
        "{engine:?}"
    );
    assert!(
        grant_with(&w, "svc", &secret, &service_form())
            .await
            .is_ok()
    );
    // Only the hash is kept.
    let stored: Option<String> =
        sqlx::query_scalar("SELECT secret_hash FROM oidc_clients WHERE id = 'svc'")
            .fetch_one(w.db.pool())
            .await
            .unwrap();
    assert_ne!(stored.as_deref(), Some(secret.as_str()));
    // Tokens issued before stay valid: the secret, not the tokens, leaked.
    assert!(active(&w, &before.access_token).await);
    assert_eq!(
        audit(&w, "client.secret_rotated", "svc").await,
        [(ADMIN.to_owned(), String::new())]
    );

    clients::add(
        &w.db,
        NewClient {
            id: "spa".into(),
            name: String::new(),
            redirect_uris: vec![REDIRECT.into()],
            post_logout_redirect_uris: vec![],
            confidential: false,
            first_party: true,
            secret: None,
        },
        NOW,
    )
    .await
    .unwrap();
    assert!(matches!(
        clients::lifecycle::rotate_secret(&w.db, "spa", ADMIN, NOW).await,
        Err(ChangeError::Public)
    ));
    assert!(matches!(
        clients::lifecycle::rotate_secret(&w.db, "absent", ADMIN, NOW).await,
        Err(ChangeError::NotFound)
    ));
    let spa = clients::find(&w.db, "spa").await.unwrap().unwrap();
    assert_eq!(spa.secret_hash, None);
}

/// A removal ends everything the client was given, in one transaction, and a client
/// registered later under the same id gets none of it back.
async fn a_removed_client_leaves_nothing_behind(engine: Engine) {
    let w = world(engine).await;
    client(&w, "tiers", false, ClientSettings::default()).await;
    client(&w, "other", true, ClientSettings::default()).await;
    let cookie = w.provider.open_session(ACCOUNT, NOW).await.unwrap();
    let first = consented_code(&w, "tiers", &cookie).await;
    let tokens = grant(&w, "tiers", &code_form(&first)).await.unwrap();
    let refresh = tokens.refresh_token.clone().unwrap();
    // Another client's tokens are left alone.
    let other_code = code(&w, "other", &cookie).await;
    let other = grant(&w, "other", &code_form(&other_code)).await.unwrap();
    assert!(active(&w, &tokens.access_token).await);
    assert_eq!(count(&w, "consents", "tiers").await, 1);
    // A code issued and not yet exchanged, and an approved device code.
    let pending = code(&w, "tiers", &cookie).await;
    let tool = device_tool(&w).await;
    let approved = approved_device_code(&w, &tool, "openid", &cookie).await;
    // A device code nobody has answered yet, and an ID token the module kept.
    let waiting = w
        .provider
        .device_authorize(&clients::find(&w.db, "tool").await.unwrap().unwrap(), None)
        .await
        .unwrap()
        .map_err(|e| e.error)
        .unwrap();
    let hint = tokens.id_token.clone().expect("an ID token");

    // A logout still waiting for the module (it was down).
    sqlx::query(
        "INSERT INTO backchannel_logouts (id, client_id, account_id, sid, status, attempts, \
         next_attempt_at, created_at, updated_at) \
         VALUES ('bcl-1', 'tiers', $1, 'sid-1', 'queued', 2, $2, $2, $2)",
    )
    .bind(ACCOUNT)
    .bind(NOW)
    .execute(w.db.pool())
    .await
    .unwrap();

    let removed = clients::lifecycle::remove(&w.db, "tiers", ADMIN, NOW)
        .await
        .unwrap();
    // It ends with the client: a module registered later under the same id must
    // not be told of sessions it never had.
    let (status, why): (String, String) =
        sqlx::query_as("SELECT status, last_error FROM backchannel_logouts WHERE id = 'bcl-1'")
            .fetch_one(w.db.pool())
            .await
            .unwrap();
    assert_eq!(
        (status.as_str(), why.as_str()),
        ("failed", "the client was removed"),
        "{engine:?}"
    );
    assert_eq!(removed.access_tokens, 1, "{engine:?}");
    assert_eq!(removed.refresh_tokens, 1, "{engine:?}");
    assert_eq!(removed.consents, 1, "{engine:?}");
    assert!(clients::find(&w.db, "tiers").await.unwrap().is_none());
    assert!(!active(&w, &tokens.access_token).await, "{engine:?}");
    assert!(!active(&w, &refresh).await, "{engine:?}");
    for table in [
        "consents",
        "refresh_tokens",
        "session_clients",
        "auth_requests",
    ] {
        assert_eq!(count(&w, table, "tiers").await, 0, "{engine:?}: {table}");
    }
    assert!(active(&w, &other.access_token).await);
    assert_eq!(
        audit(&w, "client.removed", "tiers").await,
        [(
            ADMIN.to_owned(),
            "access_tokens_revoked=1 refresh_tokens_deleted=1 consents_deleted=1".to_owned()
        )]
    );
    // The provider had the client cached: it is gone at once.
    assert_eq!(
        grant(&w, "tiers", &refresh_form(&refresh)).await.err(),
        Some("invalid_client")
    );

    clients::lifecycle::remove(&w.db, "tool", ADMIN, NOW)
        .await
        .unwrap();
    // Registered again under the same id, a minute later: nothing comes back.
    w.clock.advance(60);
    let again = NewClient {
        id: "tiers".into(),
        name: "tiers".into(),
        redirect_uris: vec![REDIRECT.into()],
        post_logout_redirect_uris: Vec::new(),
        confidential: true,
        first_party: false,
        secret: Some(SECRET.into()),
    };
    let settings = ClientSettings {
        id_token_alg: "ES256".into(),
        ..ClientSettings::default()
    };
    clients::add_with_settings(&w.db, again, &settings, ADMIN, NOW + 60)
        .await
        .unwrap();
    device_tool(&w).await;
    assert!(
        matches!(
            w.provider
                .device_lookup(&waiting.user_code, ACCOUNT)
                .await
                .unwrap(),
            dge_oidc::device::Lookup::Unknown
        ),
        "{engine:?}: the removed client's device code is nobody's to approve"
    );
    let logout = dge_oidc::logout::LogoutParams {
        id_token_hint: Some(hint.clone()),
        post_logout_redirect_uri: Some(REDIRECT.into()),
        ..dge_oidc::logout::LogoutParams::default()
    };
    let outcome = w.provider.logout(logout, None, false).await.unwrap();
    assert!(
        matches!(&outcome, dge_oidc::logout::LogoutOutcome::Refused(m) if m.contains("version retirée")),
        "{engine:?}: {outcome:?}"
    );
    // Without a return address too: the old hint does not stand for the person,
    // whose session stays open.
    let bare = dge_oidc::logout::LogoutParams {
        id_token_hint: Some(hint.clone()),
        ..dge_oidc::logout::LogoutParams::default()
    };
    let outcome = w.provider.logout(bare, Some(&cookie), false).await.unwrap();
    assert!(
        matches!(&outcome, dge_oidc::logout::LogoutOutcome::Refused(m) if m.contains("version retirée")),
        "{engine:?}: {outcome:?}"
    );
    let hinted = dge_oidc::AuthorizeParams {
        id_token_hint: Some(hint),
        ..params("tiers")
    };
    let outcome = w.provider.authorize(hinted, Some(&cookie)).await.unwrap();
    assert!(
        matches!(&outcome, AuthorizeOutcome::Redirect(url) if url.contains("error=invalid_request")),
        "{engine:?}: an ID token of the removed client is no hint: {outcome:?}"
    );
    assert!(!active(&w, &tokens.access_token).await, "{engine:?}");
    assert!(!active(&w, &refresh).await, "{engine:?}");
    assert_eq!(
        grant(&w, "tiers", &refresh_form(&refresh)).await.err(),
        Some("invalid_grant")
    );
    assert_eq!(
        grant(&w, "tiers", &code_form(&pending)).await.err(),
        Some("invalid_grant"),
        "{engine:?}: a code of the removed client"
    );
    let poll = TokenForm {
        grant_type: Some(dge_oidc::device::DEVICE_GRANT.into()),
        device_code: Some(approved.clone()),
        ..TokenForm::default()
    };
    assert_eq!(
        grant(&w, "tool", &poll).await.err(),
        Some("invalid_grant"),
        "{engine:?}: a device code of the removed client"
    );
    let outcome = w
        .provider
        .authorize(params("tiers"), Some(&cookie))
        .await
        .unwrap();
    assert!(
        matches!(outcome, AuthorizeOutcome::Consent { .. }),
        "consent asked again: {outcome:?}"
    );
    assert!(matches!(
        clients::lifecycle::remove(&w.db, "absent", ADMIN, NOW).await,
        Err(ChangeError::NotFound)
    ));
}

#[tokio::test]
async fn an_update_changes_the_fields_given_and_only_them_on_both_backends() {
    for engine in ENGINES {
        an_update_changes_the_fields_given_and_only_them(engine).await;
    }
}

#[tokio::test]
async fn a_rotated_secret_replaces_the_old_one_at_once_on_both_backends() {
    for engine in ENGINES {
        a_rotated_secret_replaces_the_old_one_at_once(engine).await;
    }
}

#[tokio::test]
async fn a_removed_client_leaves_nothing_behind_on_both_backends() {
    for engine in ENGINES {
        a_removed_client_leaves_nothing_behind(engine).await;
    }
}

/// A name that would garble the consent page and URIs that a client's URL library
/// would write differently are refused, at registration and at update, each rule on
/// its field and all at once; nothing is written.
async fn hidden_characters_and_unparsed_uris_are_refused(engine: Engine) {
    use dge_oidc::clients::AddError;
    let w = world(engine).await;
    let codes = |v: &dge_core::Violations| {
        v.iter()
            .map(|v| format!("{}: {}", v.field, v.code))
            .collect::<Vec<_>>()
    };
    let new = NewClient {
        id: "module".into(),
        name: "Module \u{202E}lanoitan".into(),
        redirect_uris: vec![
            "https://module.example.fr/call back".into(),
            "https://modulé.example.fr/cb".into(),
        ],
        post_logout_redirect_uris: vec![
            "https://module.example.fr/".into(),
            "https://module.example.fr/".into(),
        ],
        confidential: true,
        first_party: false,
        secret: None,
    };
    let settings = ClientSettings {
        id_token_alg: "ES256".into(),
        backchannel_logout_uri: Some("https://module.example.fr/lo\0gout".into()),
        ..ClientSettings::default()
    };
    let Err(AddError::Invalid(v)) =
        clients::add_with_settings(&w.db, new, &settings, ADMIN, NOW).await
    else {
        panic!("refused");
    };
    assert_eq!(
        codes(&v),
        [
            "name: control_characters",
            "redirect_uris: invalid",
            "redirect_uris: invalid",
            "post_logout_redirect_uris: duplicate",
            "backchannel_logout_uri: invalid",
        ],
        "{engine:?}"
    );
    let messages: Vec<_> = v.iter().map(|v| v.message.as_str()).collect();
    assert!(
        messages[1].ends_with("écrivez https://module.example.fr/call%20back"),
        "{messages:?}"
    );
    assert!(
        messages[2].ends_with("en punycode, xn--modul-fsa.example.fr"),
        "{messages:?}"
    );
    assert!(
        messages[4].starts_with("https://module.example.fr/lo\\u{0}gout: "),
        "{messages:?}"
    );
    assert!(clients::find(&w.db, "module").await.unwrap().is_none());

    client(&w, "datahub", true, ClientSettings::default()).await;
    let bad = ClientChanges {
        name: Some(format!("Data\u{200B}Hub{}", "!".repeat(200))),
        redirect_uris: Some(vec!["https://DataHub.example.fr/cb".into()]),
        post_logout_redirect_uris: Some(
            (0..51)
                .map(|i| format!("https://datahub.example.fr/{i}"))
                .collect(),
        ),
        ..ClientChanges::default()
    };
    let Err(ChangeError::Invalid(v)) =
        clients::lifecycle::update(&w.db, "datahub", &bad, ADMIN, NOW).await
    else {
        panic!("refused");
    };
    assert_eq!(
        codes(&v),
        [
            "name: too_long",
            "name: control_characters",
            "redirect_uris: invalid",
            "post_logout_redirect_uris: too_many",
        ],
        "{engine:?}"
    );
    let unchanged = clients::find(&w.db, "datahub").await.unwrap().unwrap();
    assert_eq!(unchanged.name, "datahub");
    assert_eq!(unchanged.redirect_uris, [REDIRECT]);
    assert_eq!(
        unchanged.post_logout_redirect_uris,
        ["http://localhost:8081/"]
    );
    assert!(audit(&w, "client.updated", "datahub").await.is_empty());
}

#[tokio::test]
async fn hidden_characters_and_unparsed_uris_are_refused_on_both_backends() {
    for engine in ENGINES {
        hidden_characters_and_unparsed_uris_are_refused(engine).await;
    }
}
