//! What an authorization request may ask (`prompt`, `max_age`, `scope`,
//! `response_type`), and whose session an `id_token_hint` lets a module end.

use dge_oidc::clients::ClientSettings;
use dge_oidc::logout::{LogoutOutcome, LogoutParams};
use dge_oidc::{AuthorizeOutcome, AuthorizeParams};

use crate::backends::{ACCOUNT, ENGINES, client, world};
use crate::flows::{code_form, consented_code, grant, id_token, params, query_param};

fn asking(client_id: &str, prompt: Option<&str>, max_age: Option<&str>) -> AuthorizeParams {
    AuthorizeParams {
        prompt: prompt.map(str::to_owned),
        max_age: max_age.map(str::to_owned),
        ..params(client_id)
    }
}

fn error_of(outcome: &AuthorizeOutcome) -> Option<String> {
    match outcome {
        AuthorizeOutcome::Redirect(url) => query_param(url, "error"),
        _ => None,
    }
}

/// OIDC Core §3.1.2.1: `prompt` is a list; `none` stands alone; `select_account` is a
/// new login; `max_age=0` is `prompt=login`, even in the second of the last login.
#[tokio::test]
async fn prompt_is_a_list_and_max_age_zero_always_asks() {
    for engine in ENGINES {
        let w = world(engine).await;
        client(&w, "tiers", false, ClientSettings::default()).await;
        let cookie = w
            .provider
            .open_session(ACCOUNT, w.provider.now())
            .await
            .unwrap();
        consented_code(&w, "tiers", &cookie).await;

        for prompt in ["login consent", "consent login", "select_account", "login"] {
            let outcome = w
                .provider
                .authorize(asking("tiers", Some(prompt), None), Some(&cookie))
                .await
                .unwrap();
            let AuthorizeOutcome::Login { req, .. } = outcome else {
                panic!("{engine:?}: prompt={prompt:?} logs in again, got {outcome:?}");
            };
            // After the login, `consent` in the list asks again although the person
            // consented before; without it, the remembered consent stands.
            let next = w
                .provider
                .complete(&req, ACCOUNT, w.provider.now(), Some(&cookie), None)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                next.starts_with("/consent?req="),
                prompt.contains("consent"),
                "{engine:?}: prompt={prompt:?} went to {next}"
            );
        }
        for prompt in ["none login", "consent none", "login bogus", "bogus"] {
            let outcome = w
                .provider
                .authorize(asking("tiers", Some(prompt), None), Some(&cookie))
                .await
                .unwrap();
            assert_eq!(
                error_of(&outcome).as_deref(),
                Some("invalid_request"),
                "{engine:?}: prompt={prompt:?}"
            );
        }

        // The session was opened this very second.
        let outcome = w
            .provider
            .authorize(asking("tiers", None, Some("0")), Some(&cookie))
            .await
            .unwrap();
        assert!(
            matches!(outcome, AuthorizeOutcome::Login { .. }),
            "{engine:?}: max_age=0 logs in again, got {outcome:?}"
        );
        let outcome = w
            .provider
            .authorize(asking("tiers", Some("none"), Some("0")), Some(&cookie))
            .await
            .unwrap();
        assert_eq!(error_of(&outcome).as_deref(), Some("login_required"));
        let outcome = w
            .provider
            .authorize(asking("tiers", None, Some("60")), Some(&cookie))
            .await
            .unwrap();
        assert!(
            matches!(&outcome, AuthorizeOutcome::Redirect(url) if url.contains("code=")),
            "{engine:?}: a login of this second is younger than a minute: {outcome:?}"
        );
    }
}

/// A person's token carries only the scopes this provider knows, each once: the
/// service scopes (`authz:*`, `admin`) never reach it, whatever a module asks.
#[tokio::test]
async fn unknown_and_service_scopes_are_dropped_from_a_persons_tokens() {
    for engine in ENGINES {
        let w = world(engine).await;
        client(&w, "datahub", true, ClientSettings::default()).await;
        let cookie = w
            .provider
            .open_session(ACCOUNT, w.provider.now())
            .await
            .unwrap();
        let greedy = AuthorizeParams {
            scope: Some("openid admin authz:check openid  email authz:rights x".into()),
            ..params("datahub")
        };
        let AuthorizeOutcome::Redirect(url) =
            w.provider.authorize(greedy, Some(&cookie)).await.unwrap()
        else {
            panic!("{engine:?}: a code expected");
        };
        let code = query_param(&url, "code").unwrap();
        let tokens = grant(&w, "datahub", &code_form(&code)).await.unwrap();
        assert_eq!(tokens.scope, "openid email", "{engine:?}");
        let claims = w.provider.inspect(&tokens.access_token).await.unwrap();
        assert!(claims.is_some(), "{engine:?}");
        let payload = tokens.access_token.split('.').nth(1).unwrap();
        use base64::Engine as _;
        let claims: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(claims["scope"], "openid email", "{engine:?}");

        // Nothing left but unknown scopes: `openid` is missing, as before.
        let bare = AuthorizeParams {
            scope: Some("admin authz:check".into()),
            ..params("datahub")
        };
        let outcome = w.provider.authorize(bare, Some(&cookie)).await.unwrap();
        assert_eq!(error_of(&outcome).as_deref(), Some("invalid_scope"));
        // RFC 6749 §4.1.2.1: a missing parameter is `invalid_request`.
        for response_type in [None, Some("")] {
            let missing = AuthorizeParams {
                response_type: response_type.map(str::to_owned),
                ..params("datahub")
            };
            let outcome = w.provider.authorize(missing, Some(&cookie)).await.unwrap();
            assert_eq!(error_of(&outcome).as_deref(), Some("invalid_request"));
        }
        let token = AuthorizeParams {
            response_type: Some("token".into()),
            ..params("datahub")
        };
        let outcome = w.provider.authorize(token, Some(&cookie)).await.unwrap();
        assert_eq!(
            error_of(&outcome).as_deref(),
            Some("unsupported_response_type")
        );
    }
}

/// RP-Initiated Logout §2: an ID token of an earlier session of the same person does
/// not end the current one without asking; one of the current session does.
#[tokio::test]
async fn an_id_token_of_an_earlier_session_does_not_end_the_current_one_unasked() {
    for engine in ENGINES {
        let w = world(engine).await;
        client(&w, "datahub", true, ClientSettings::default()).await;
        let old_hint = id_token(&w, "datahub").await;
        let cookie = w
            .provider
            .open_session(ACCOUNT, w.provider.now())
            .await
            .unwrap();
        let logout = |hint: &str| LogoutParams {
            id_token_hint: Some(hint.to_owned()),
            post_logout_redirect_uri: Some("http://localhost:8081/".into()),
            state: Some("s".into()),
            ..LogoutParams::default()
        };
        let outcome = w
            .provider
            .logout(logout(&old_hint), Some(&cookie), false)
            .await
            .unwrap();
        assert_eq!(outcome, LogoutOutcome::Confirm, "{engine:?}");
        assert!(w.provider.session(&cookie).await.unwrap().is_some());

        let code = crate::flows::code(&w, "datahub", &cookie).await;
        let current = grant(&w, "datahub", &code_form(&code))
            .await
            .unwrap()
            .id_token
            .unwrap();
        let outcome = w
            .provider
            .logout(logout(&current), Some(&cookie), false)
            .await
            .unwrap();
        assert_eq!(
            outcome,
            LogoutOutcome::Redirect("http://localhost:8081/?state=s".into()),
            "{engine:?}"
        );
        assert!(w.provider.session(&cookie).await.unwrap().is_none());
    }
}
