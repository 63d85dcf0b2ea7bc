//! Accounts suspended and reactivated by an administrator, through the gRPC
//! service: who may, bad input and wrong states, the end of every session and token
//! (sessions in Redis on PostgreSQL, as in production), `Check` refusing at once,
//! logins refused without telling a wrong password apart, and rights given back.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use dge_authz::caller::{ADMIN_SCOPE, create_api_token};
use dge_authz::grants::{IssuedAccess, NewRefresh, find_refresh, issue_refresh, record_access};
use dge_authz::grpc::AuthorizationService;
use dge_authz::keys::KeyEncryptionKey;
use dge_authz::tokens::{ACCESS_TOKEN_TYPE, AccessClaims};
use dge_authz::{Authenticator, Keys};
use dge_core::Secret;
use dge_proto::v1 as pb;
use dge_proto::v1::authorization_server::Authorization;
use dge_proto::v1::validation_workflow_server::ValidationWorkflow;
use dge_registry::store::find_account;
use dge_registry::{AccountStatus, LoginError, Registry};
use dge_store::ephemeral::Ephemeral;
use dge_store::sessions::Sessions;
use dge_workflow::grpc::ValidationWorkflowService;
use dge_workflow::rights::AuditFilter;
use dge_workflow::{Workflow, suspension};
use sqlx::Row;
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;

use crate::backends::{ENGINES, Engine, NOW, Services, services};
use crate::journey::{admin, confirmation_token, form, outbox_kinds};

const ISSUER: &str = "http://127.0.0.1:8080";
const PASSWORD: &str = "Correct-Horse-9";

/// The services with sessions where production keeps them, `Check`, and the gRPC
/// face of the workflow.
pub(crate) struct World {
    pub(crate) s: Services,
    pub(crate) registry: Registry,
    pub(crate) workflow: Workflow,
    sessions: Sessions,
    keys: Arc<Keys>,
    pub(crate) grpc: ValidationWorkflowService,
    authz: AuthorizationService,
    /// An admin API token, for `Check` (it sees every token) and the workflow.
    pub(crate) admin_token: String,
    /// The notices the workflow shares its rights changes through with
    /// [`world_with`] (Redis on PostgreSQL, in-process on SQLite).
    notices: Ephemeral,
}

pub(crate) async fn world(engine: Engine) -> World {
    world_with(engine, false).await
}

/// [`world`]; with `relayed`, rights changes reach the watchers through the shared
/// notices and the relay, as in production, rather than directly.
async fn world_with(engine: Engine, relayed: bool) -> World {
    let s = services(engine).await;
    let (sessions, notices) = match engine {
        Engine::Sqlite => (
            Sessions::database(s.db.clone()),
            Ephemeral::local("dge-test:"),
        ),
        Engine::Postgres => {
            let url =
                std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
            let prefix = format!("dge-test:{}:", uuid::Uuid::new_v4().simple());
            let shared = Ephemeral::redis(&url, &prefix)
                .await
                .expect("Redis must answer on REDIS_URL (default 127.0.0.1:6379)");
            (Sessions::new(s.db.clone(), &shared), shared)
        }
    };
    let registry = s.registry.clone().with_sessions(sessions.clone());
    let mut workflow = Workflow::new(registry.clone(), ISSUER.into());
    if relayed {
        workflow = workflow.with_notices(notices.clone());
        tokio::spawn(workflow.clone().relay_changes(std::future::pending::<()>()));
    }
    let kek = KeyEncryptionKey::from_base64(&STANDARD.encode([7u8; 32])).unwrap();
    let keys = Arc::new(
        Keys::load_or_create(s.db.clone(), Arc::new(s.clock.clone()), kek)
            .await
            .unwrap(),
    );
    let auth = Authenticator::new(
        s.db.clone(),
        keys.clone(),
        Arc::new(s.clock.clone()),
        ISSUER.into(),
    );
    let grpc = ValidationWorkflowService::new(workflow.clone(), auth.clone())
        .with_recheck(std::time::Duration::from_millis(200));
    let authz = AuthorizationService::new(
        s.db.clone(),
        auth,
        dge_store::sessions::Sessions::database(s.db.clone()),
    );
    let admin_token = create_api_token(&s.db, "ops", ADMIN_SCOPE, NOW)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO oidc_clients (id, name, redirect_uris, confidential, created_at, updated_at) \
         VALUES ('datahub', 'DataHub', '[]', 1, 0, 0)",
    )
    .execute(s.db.pool())
    .await
    .unwrap();
    World {
        s,
        registry,
        workflow,
        sessions,
        keys,
        grpc,
        authz,
        admin_token,
        notices,
    }
}

/// A local account at Nancy, confirmed and approved; returns its id.
pub(crate) async fn active(w: &World, login: &str) -> String {
    let email = format!("{login}@nancy.fr");
    w.registry.sign_up(&form(login, &email)).await.unwrap();
    let token = confirmation_token(&w.s.db, &email).await;
    w.registry.confirm_email(&token).await.unwrap();
    w.workflow.approve(&admin(), login, &[]).await.unwrap().id
}

/// A session, an access token (returned) and a refresh token (returned), as a login
/// through the `datahub` module would leave them.
async fn logged_in(w: &World, account_id: &str) -> (String, String) {
    let now = w.registry.now();
    w.sessions
        .open(
            &uuid::Uuid::new_v4().to_string(),
            account_id,
            now,
            now + 3600,
            now,
            None,
        )
        .await
        .unwrap();
    let claims = AccessClaims {
        iss: ISSUER.into(),
        sub: account_id.into(),
        aud: ISSUER.into(),
        client_id: "datahub".into(),
        scope: "openid".into(),
        iat: now,
        exp: now + 3600,
        jti: uuid::Uuid::new_v4().to_string(),
    };
    let access = w.keys.sign(ACCESS_TOKEN_TYPE, &claims).unwrap();
    record_access(
        &w.s.db,
        &IssuedAccess {
            jti: &claims.jti,
            code_hash: None,
            family_id: None,
            client_id: "datahub",
            account_id: Some(account_id),
            expires_at: claims.exp,
        },
        now,
    )
    .await
    .unwrap();
    let refresh = issue_refresh(
        &w.s.db,
        &NewRefresh {
            family_id: &uuid::Uuid::new_v4().to_string(),
            code_hash: None,
            client_id: "datahub",
            account_id,
            session_hash: None,
            scope: "openid offline_access",
            auth_time: now,
            expires_at: now + 86_400,
        },
        now,
    )
    .await
    .unwrap();
    (access, refresh)
}

/// A request carrying `token` as its bearer.
pub(crate) fn bearer<T>(token: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii"),
    );
    request
}

/// An access token of `account_id` for dgectl, as `dgectl login` leaves it.
async fn person_token(w: &World, account_id: &str) -> String {
    person_token_of(w, account_id, "dgectl").await
}

/// [`person_token`] issued to `client_id`.
async fn person_token_of(w: &World, account_id: &str, client_id: &str) -> String {
    let now = w.registry.now();
    let claims = AccessClaims {
        iss: ISSUER.into(),
        sub: account_id.into(),
        aud: ISSUER.into(),
        client_id: client_id.into(),
        scope: "openid".into(),
        iat: now,
        exp: now + 3600,
        jti: uuid::Uuid::new_v4().to_string(),
    };
    let token = w.keys.sign(ACCESS_TOKEN_TYPE, &claims).unwrap();
    record_access(
        &w.s.db,
        &IssuedAccess {
            jti: &claims.jti,
            code_hash: None,
            family_id: None,
            client_id,
            account_id: Some(account_id),
            expires_at: claims.exp,
        },
        now,
    )
    .await
    .unwrap();
    token
}

/// Makes `account_id` a global administrator, with two-step verification on or not.
async fn make_admin(w: &World, account_id: &str, mfa: bool) {
    sqlx::query("UPDATE accounts SET is_admin = 1 WHERE id = $1")
        .bind(account_id)
        .execute(w.s.db.pool())
        .await
        .unwrap();
    if mfa {
        sqlx::query(
            "INSERT INTO account_mfa (account_id, secret_sealed, confirmed_at, created_at) \
             VALUES ($1, 'sealed', $2, $2)",
        )
        .bind(account_id)
        .bind(NOW)
        .execute(w.s.db.pool())
        .await
        .unwrap();
    }
}

async fn check(w: &World, access: &str, right: &str) -> pb::CheckResponse {
    w.authz
        .check(bearer(
            &w.admin_token,
            pb::CheckRequest {
                access_token: access.into(),
                right: right.into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
}

async fn suspend(
    w: &World,
    token: &str,
    account: &str,
    reason: &str,
) -> Result<pb::Account, Status> {
    suspend_until(w, token, account, reason, 0).await
}

/// [`suspend`], ending on its own at `until` (0: never).
async fn suspend_until(
    w: &World,
    token: &str,
    account: &str,
    reason: &str,
    until: i64,
) -> Result<pb::Account, Status> {
    w.grpc
        .suspend_account(bearer(
            token,
            pb::SuspendAccountRequest {
                account: account.into(),
                reason: reason.into(),
                until,
            },
        ))
        .await
        .map(|r| r.into_inner().account.expect("account"))
}

async fn reactivate(w: &World, token: &str, account: &str) -> Result<pb::Account, Status> {
    w.grpc
        .reactivate_account(bearer(
            token,
            pb::ReactivateAccountRequest {
                account: account.into(),
                reason: String::new(),
            },
        ))
        .await
        .map(|r| r.into_inner().account.expect("account"))
}

/// The (field, description) pairs of an INVALID_ARGUMENT's details.
pub(crate) fn violations(status: &Status) -> Vec<(String, String)> {
    violations_of(status, Code::InvalidArgument)
}

/// The (field, description) pairs of a status of `code` with field details.
pub(crate) fn violations_of(status: &Status, code: Code) -> Vec<(String, String)> {
    assert_eq!(status.code(), code, "{status:?}");
    status
        .get_details_bad_request()
        .expect("field violations in the details")
        .field_violations
        .into_iter()
        .map(|v| (v.field, v.description))
        .collect()
}

async fn live(w: &World, account_id: &str) -> (usize, i64, i64) {
    let sessions = w
        .sessions
        .of_account(account_id, w.registry.now())
        .await
        .unwrap()
        .len();
    let count = |table: &'static str| {
        let db = w.s.db.clone();
        let id = account_id.to_owned();
        async move {
            sqlx::query(&format!(
                "SELECT COUNT(*) AS n FROM {table} WHERE account_id = $1 AND revoked_at IS NULL"
            ))
            .bind(id)
            .fetch_one(db.pool())
            .await
            .unwrap()
            .get::<i64, _>("n")
        }
    };
    (
        sessions,
        count("issued_tokens").await,
        count("refresh_tokens").await,
    )
}

async fn password_login(w: &World, login: &str, password: &str) -> Result<String, LoginError> {
    w.registry
        .login(login, &Secret::new(password.to_owned()), "192.0.2.7")
        .await
        .unwrap()
        .map(|a| a.id)
}

#[tokio::test]
async fn a_suspension_ends_every_login_and_check_refuses_at_once_then_reactivation_gives_the_rights_back()
 {
    for engine in ENGINES {
        let w = world(engine).await;
        let id = active(&w, "cmartin").await;
        w.workflow
            .grant(&admin(), "cmartin", "datahub:publish", "", None)
            .await
            .unwrap();
        let (access, refresh) = logged_in(&w, &id).await;
        assert_eq!(live(&w, &id).await, (1, 1, 1), "{engine:?}");
        // A first answer is cached: the suspension must not be hidden by it.
        assert!(
            check(&w, &access, "datahub:publish").await.allowed,
            "{engine:?}"
        );

        let account = suspend(&w, &w.admin_token, "cmartin", "usage abusif signalé")
            .await
            .unwrap();
        assert_eq!(
            account.status,
            pb::AccountStatus::Suspended as i32,
            "{engine:?}"
        );
        assert_eq!(
            live(&w, &id).await,
            (0, 0, 0),
            "{engine:?}: everything ended"
        );
        let denied = check(&w, &access, "datahub:publish").await;
        assert!(!denied.allowed, "{engine:?}");
        assert_eq!(
            denied.reason, "invalid_token",
            "{engine:?}: the token is revoked"
        );
        let stored = find_refresh(&w.s.db, &refresh)
            .await
            .unwrap()
            .expect("kept");
        assert!(!stored.usable(w.registry.now()), "{engine:?}");
        // A token issued after the suspension (say, in flight) is refused too.
        let (late, _) = logged_in(&w, &id).await;
        assert_eq!(
            check(&w, &late, "datahub:publish").await.reason,
            "inactive_account",
            "{engine:?}"
        );

        // The rights are kept, and given back by the reactivation.
        let held: i64 = sqlx::query("SELECT COUNT(*) AS n FROM grants WHERE account_id = $1")
            .bind(&id)
            .fetch_one(w.s.db.pool())
            .await
            .unwrap()
            .get("n");
        assert_eq!(held, 1, "{engine:?}");
        let account = reactivate(&w, &w.admin_token, "cmartin").await.unwrap();
        assert_eq!(
            account.status,
            pb::AccountStatus::Active as i32,
            "{engine:?}"
        );
        let (fresh, _) = logged_in(&w, &id).await;
        assert!(
            check(&w, &fresh, "datahub:publish").await.allowed,
            "{engine:?}"
        );
        assert!(
            password_login(&w, "cmartin", PASSWORD).await.is_ok(),
            "{engine:?}"
        );

        // The person was told both times; the reason stays with the administrators.
        assert_eq!(
            outbox_kinds(&w.s.db, "cmartin@nancy.fr").await,
            [
                "confirm_email",
                "account_pending",
                "account_activated",
                "account_suspended",
                "account_reactivated"
            ],
            "{engine:?}"
        );
        let body: String = sqlx::query(
            "SELECT body_text FROM outbox WHERE recipient = $1 AND kind = 'account_suspended'",
        )
        .bind("cmartin@nancy.fr")
        .fetch_one(w.s.db.pool())
        .await
        .unwrap()
        .get("body_text");
        assert!(body.contains("suspendu"), "{body}");
        assert!(
            !body.contains("usage abusif"),
            "{engine:?}: the reason is not emailed"
        );

        let filter = AuditFilter {
            subject: id.clone(),
            limit: 100,
            ..AuditFilter::default()
        };
        let events: Vec<(String, String, String)> = w
            .workflow
            .audit_events(&admin(), &filter)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| {
                e.action.starts_with("account.suspended") || e.action == suspension::REACTIVATED
            })
            .map(|e| (e.actor, e.action, e.detail))
            .collect();
        assert!(
            events.contains(&(
                "token:ops".into(),
                suspension::SUSPENDED.into(),
                "usage abusif signalé".into()
            )),
            "{engine:?}: {events:?}"
        );
        assert!(
            events.iter().any(|e| e.1 == suspension::REACTIVATED),
            "{engine:?}: {events:?}"
        );
    }
}

#[tokio::test]
async fn a_suspended_account_is_refused_at_login_only_with_the_right_password() {
    for engine in ENGINES {
        let w = world(engine).await;
        active(&w, "cmartin").await;
        active(&w, "lbernard").await;
        suspend(&w, &w.admin_token, "cmartin", "départ de la structure")
            .await
            .unwrap();

        assert_eq!(
            password_login(&w, "cmartin", PASSWORD).await,
            Err(LoginError::NotActive(AccountStatus::Suspended)),
            "{engine:?}"
        );
        assert_eq!(
            password_login(&w, "cmartin@nancy.fr", PASSWORD).await,
            Err(LoginError::NotActive(AccountStatus::Suspended)),
            "{engine:?}: by email too"
        );
        // A wrong password tells nothing: the same answer as for an active account
        // and for nobody.
        for login in ["cmartin", "lbernard", "personne"] {
            assert_eq!(
                password_login(&w, login, "Pas-le-bon-mot-2!").await,
                Err(LoginError::BadCredentials),
                "{engine:?}: {login}"
            );
        }
        // A password reset may be asked for, and done, but does not reactivate.
        let outcome = w
            .registry
            .send_password_reset("cmartin@nancy.fr")
            .await
            .unwrap();
        assert_eq!(
            outcome,
            dge_registry::reset::ResetOutcome::LinkSent,
            "{engine:?}"
        );
        let body: String = sqlx::query(
            "SELECT body_text FROM outbox WHERE recipient = $1 AND kind = 'password_reset'",
        )
        .bind("cmartin@nancy.fr")
        .fetch_one(w.s.db.pool())
        .await
        .unwrap()
        .get("body_text");
        let start = body.find("token=").unwrap() + "token=".len();
        let token: String = body[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect();
        let new = Secret::new("Quetsche-de-Metz-44-?".to_owned());
        w.registry.reset_password(&token, &new, &new).await.unwrap();
        let account = find_account(&w.s.db, "cmartin").await.unwrap().unwrap();
        assert_eq!(account.status, AccountStatus::Suspended, "{engine:?}");
        assert_eq!(
            password_login(&w, "cmartin", "Quetsche-de-Metz-44-?").await,
            Err(LoginError::NotActive(AccountStatus::Suspended)),
            "{engine:?}"
        );
    }
}

#[tokio::test]
async fn only_a_global_administrator_with_two_step_verification_suspends_and_never_themselves() {
    for engine in ENGINES {
        let w = world(engine).await;
        let target = active(&w, "cmartin").await;
        let nobody = active(&w, "lbernard").await;
        let boss = active(&w, "adupont").await;
        let unsure = active(&w, "pgirard").await;
        make_admin(&w, &boss, true).await;
        make_admin(&w, &unsure, false).await;

        // A person who administers nothing.
        let token = person_token(&w, &nobody).await;
        let err = suspend(&w, &token, "cmartin", "motif").await.unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{engine:?}: {err:?}");
        let err = reactivate(&w, &token, "cmartin").await.unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{engine:?}: {err:?}");
        // A delegated organisation administrator is not enough either.
        sqlx::query(
            "INSERT INTO organisation_admins (account_id, organisation_id, created_at) VALUES ($1, 'ville-de-nancy', 0)",
        )
        .bind(&nobody)
        .execute(w.s.db.pool())
        .await
        .unwrap();
        let err = suspend(&w, &token, "cmartin", "motif").await.unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{engine:?}: {err:?}");
        // An administrator without two-step verification has no power yet.
        let token = person_token(&w, &unsure).await;
        let err = suspend(&w, &token, "cmartin", "motif").await.unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{engine:?}: {err:?}");
        let field = err
            .get_details_bad_request()
            .and_then(|b| b.field_violations.first().map(|v| v.field.clone()));
        assert_eq!(field.as_deref(), Some("mfa"), "{engine:?}: {err:?}");
        let account = find_account(&w.s.db, &target).await.unwrap().unwrap();
        assert_eq!(
            account.status,
            AccountStatus::Active,
            "{engine:?}: nothing changed"
        );

        // The administrator's token held by a module (or any client but the
        // administration one) administers nothing.
        let through_module = person_token_of(&w, &boss, "datahub").await;
        let err = suspend(&w, &through_module, "cmartin", "motif")
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{engine:?}: {err:?}");

        // The administrator never suspends their own account.
        let token = person_token(&w, &boss).await;
        let err = suspend(&w, &token, "adupont", "essai").await.unwrap_err();
        let fields = violations(&err);
        assert_eq!(fields[0].0, "account", "{engine:?}: {fields:?}");
        assert!(
            fields[0].1.contains("propre compte"),
            "{engine:?}: {fields:?}"
        );
        // But suspends someone else, and reactivates them.
        suspend(&w, &token, "cmartin", "motif").await.unwrap();
        let account = reactivate(&w, &token, "cmartin").await.unwrap();
        assert_eq!(
            account.status,
            pb::AccountStatus::Active as i32,
            "{engine:?}"
        );
        // The tokens of a suspended administrator stop working at once.
        let token_of_unsure = person_token(&w, &unsure).await;
        suspend(&w, &w.admin_token, "pgirard", "compte compromis")
            .await
            .unwrap();
        let err = suspend(&w, &token_of_unsure, "cmartin", "motif")
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "{engine:?}: {err:?}");
    }
}

#[tokio::test]
async fn bad_input_unknown_accounts_and_wrong_states_get_their_own_codes() {
    for engine in ENGINES {
        let w = world(engine).await;
        active(&w, "cmartin").await;
        let t = &w.admin_token;

        let err = suspend(&w, t, "", "").await.unwrap_err();
        let mut fields: Vec<String> = violations(&err).into_iter().map(|f| f.0).collect();
        fields.sort();
        assert_eq!(fields, ["account", "reason"], "{engine:?}");
        let err = suspend(&w, t, "cmartin", "   ").await.unwrap_err();
        assert_eq!(violations(&err)[0].0, "reason", "{engine:?}");
        let err = suspend(&w, t, "cmartin", &"x".repeat(1001))
            .await
            .unwrap_err();
        assert_eq!(violations(&err)[0].0, "reason", "{engine:?}");
        let err = suspend(&w, t, "cmartin", "motif\u{7}").await.unwrap_err();
        assert_eq!(violations(&err)[0].0, "reason", "{engine:?}");
        let err = reactivate(&w, t, " ").await.unwrap_err();
        assert_eq!(violations(&err)[0].0, "account", "{engine:?}");

        let err = suspend(&w, t, "personne", "motif").await.unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "{engine:?}: {err:?}");
        let err = reactivate(&w, t, "personne").await.unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "{engine:?}: {err:?}");

        let err = reactivate(&w, t, "cmartin").await.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{engine:?}: {err:?}");
        assert!(err.message().contains("not suspended"), "{err:?}");
        suspend(&w, t, "cmartin", "motif").await.unwrap();
        let err = suspend(&w, t, "cmartin", "encore").await.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{engine:?}: {err:?}");
        assert!(
            err.message().contains("account is suspended, not active"),
            "{err:?}"
        );

        // A pending sign-up is neither suspended nor reactivated.
        w.registry
            .sign_up(&form("lbernard", "lbernard@nancy.fr"))
            .await
            .unwrap();
        let token = confirmation_token(&w.s.db, "lbernard@nancy.fr").await;
        w.registry.confirm_email(&token).await.unwrap();
        let err = suspend(&w, t, "lbernard", "motif").await.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{engine:?}: {err:?}");
        assert!(err.message().contains("pending"), "{err:?}");
        let err = reactivate(&w, t, "lbernard").await.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{engine:?}: {err:?}");

        // The last active administrator account stays, even for an admin API token.
        let boss = active(&w, "adupont").await;
        make_admin(&w, &boss, true).await;
        let err = suspend(&w, t, "adupont", "motif").await.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{engine:?}: {err:?}");
        assert!(
            err.message().contains("last active administrator"),
            "{err:?}"
        );
        let account = find_account(&w.s.db, &boss).await.unwrap().unwrap();
        assert_eq!(account.status, AccountStatus::Active, "{engine:?}");
    }
}

#[tokio::test]
async fn a_reactivation_ends_what_was_created_while_suspended_so_the_person_logs_in_again() {
    for engine in ENGINES {
        let w = world(engine).await;
        let id = active(&w, "cmartin").await;
        suspend(&w, &w.admin_token, "cmartin", "compte compromis")
            .await
            .unwrap();
        // A refresh or a login racing the suspension leaves a session and tokens
        // created after it.
        let (_, refresh) = logged_in(&w, &id).await;
        assert_eq!(live(&w, &id).await, (1, 1, 1), "{engine:?}");

        reactivate(&w, &w.admin_token, "cmartin").await.unwrap();
        assert_eq!(
            live(&w, &id).await,
            (0, 0, 0),
            "{engine:?}: nothing from the suspension comes back"
        );
        let stored = find_refresh(&w.s.db, &refresh)
            .await
            .unwrap()
            .expect("kept");
        assert!(!stored.usable(w.registry.now()), "{engine:?}");
        assert!(
            password_login(&w, "cmartin", PASSWORD).await.is_ok(),
            "{engine:?}: a new login works"
        );
    }
}

/// The token of the `email_change_confirm` email sent to `email`.
async fn email_change_token(w: &World, email: &str) -> String {
    let body: String = sqlx::query(
        "SELECT body_text FROM outbox WHERE recipient = $1 AND kind = 'email_change_confirm'",
    )
    .bind(email)
    .fetch_one(w.s.db.pool())
    .await
    .unwrap()
    .get("body_text");
    let start = body.find("token=").expect("link in the email") + "token=".len();
    body[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

#[tokio::test]
async fn a_suspended_account_cannot_confirm_a_change_of_address() {
    for engine in ENGINES {
        let w = world(engine).await;
        let id = active(&w, "cmartin").await;
        let secret = || Secret::new(PASSWORD.to_owned());

        // The suspension cancels a pending change: even after the reactivation the
        // link does nothing.
        w.registry
            .request_email_change(&id, "c.martin@example.org", &secret())
            .await
            .unwrap();
        let token = email_change_token(&w, "c.martin@example.org").await;
        suspend(&w, &w.admin_token, "cmartin", "compte compromis")
            .await
            .unwrap();
        assert!(
            matches!(
                w.registry.confirm_email_change(&token).await,
                Err(dge_registry::Error::BadToken)
            ),
            "{engine:?}"
        );
        reactivate(&w, &w.admin_token, "cmartin").await.unwrap();
        assert!(
            matches!(
                w.registry.confirm_email_change(&token).await,
                Err(dge_registry::Error::BadToken)
            ),
            "{engine:?}: cancelled, not only refused"
        );

        // A link confirmed while the account is suspended is refused even if the
        // change is still pending (it raced the suspension).
        w.registry
            .request_email_change(&id, "martin.c@example.org", &secret())
            .await
            .unwrap();
        let token = email_change_token(&w, "martin.c@example.org").await;
        sqlx::query("UPDATE accounts SET status = 'suspended' WHERE id = $1")
            .bind(&id)
            .execute(w.s.db.pool())
            .await
            .unwrap();
        assert!(
            matches!(
                w.registry.confirm_email_change(&token).await,
                Err(dge_registry::Error::BadToken)
            ),
            "{engine:?}"
        );
        let account = find_account(&w.s.db, &id).await.unwrap().unwrap();
        assert_eq!(account.email, "cmartin@nancy.fr", "{engine:?}: unchanged");
    }
}

async fn list_rights(w: &World, subject: &str) -> Vec<String> {
    w.authz
        .list_rights(bearer(
            &w.admin_token,
            pb::ListRightsRequest {
                subject: subject.into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .rights
}

#[tokio::test]
async fn list_rights_is_empty_while_suspended_and_the_rights_come_back() {
    for engine in ENGINES {
        let w = world(engine).await;
        active(&w, "cmartin").await;
        w.workflow
            .grant(&admin(), "cmartin", "datahub:publish", "", None)
            .await
            .unwrap();
        assert_eq!(
            list_rights(&w, "cmartin").await,
            ["datahub:publish"],
            "{engine:?}"
        );
        suspend(&w, &w.admin_token, "cmartin", "départ")
            .await
            .unwrap();
        assert!(list_rights(&w, "cmartin").await.is_empty(), "{engine:?}");
        reactivate(&w, &w.admin_token, "cmartin").await.unwrap();
        assert_eq!(
            list_rights(&w, "cmartin").await,
            ["datahub:publish"],
            "{engine:?}"
        );
    }
}

/// The changes streamed so far, as (right, granted).
fn streamed(
    rx: &mut tokio::sync::broadcast::Receiver<dge_workflow::rights::Change>,
) -> Vec<(String, bool)> {
    let mut seen = Vec::new();
    while let Ok(c) = rx.try_recv() {
        seen.push((c.right, c.granted));
    }
    seen
}

#[tokio::test]
async fn watch_rights_hears_a_suspension_as_revocations_and_a_reactivation_as_grants() {
    for engine in ENGINES {
        let w = world(engine).await;
        active(&w, "cmartin").await;
        w.workflow
            .grant(&admin(), "cmartin", "datahub:publish", "", None)
            .await
            .unwrap();
        let mut rx = w.workflow.watch();

        suspend(&w, &w.admin_token, "cmartin", "départ")
            .await
            .unwrap();
        assert_eq!(
            streamed(&mut rx),
            [("datahub:publish".to_owned(), false)],
            "{engine:?}"
        );
        // A grant to the suspended account is not usable yet: not streamed.
        w.workflow
            .grant(&admin(), "cmartin", "datahub:dashboards", "", None)
            .await
            .unwrap();
        assert!(streamed(&mut rx).is_empty(), "{engine:?}");

        reactivate(&w, &w.admin_token, "cmartin").await.unwrap();
        assert_eq!(
            streamed(&mut rx),
            [
                ("datahub:dashboards".to_owned(), true),
                ("datahub:publish".to_owned(), true)
            ],
            "{engine:?}"
        );
    }
}

/// After a Redis outage, changes made meanwhile on other replicas never reached this
/// one (the notices are not kept): its `WatchRights` streams end with `DATA_LOSS`, so
/// that watchers reload and watch again, instead of waiting on a stream that missed
/// changes. The relay hears of the outage as a `resync` notice, sent here as the
/// reconnection sends it.
#[tokio::test]
async fn watch_rights_streams_end_with_data_loss_when_notices_were_lost() {
    use tokio_stream::StreamExt;
    for engine in ENGINES {
        let w = world_with(engine, true).await;
        active(&w, "cmartin").await;
        let mut stream = w
            .grpc
            .watch_rights(bearer(
                &w.admin_token,
                pb::WatchRightsRequest {
                    account_id: String::new(),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        // A change comes through the shared notices: the relay is listening.
        w.workflow
            .grant(&admin(), "cmartin", "datahub:publish", "", None)
            .await
            .unwrap();
        let wait = std::time::Duration::from_secs(5);
        let change = tokio::time::timeout(wait, stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(change.right, "datahub:publish", "{engine:?}");

        w.notices.notify("resync", "").await.unwrap();
        let lost = tokio::time::timeout(wait, stream.next())
            .await
            .unwrap()
            .unwrap();
        let status = lost.expect_err("a stream that missed changes went on");
        assert_eq!(status.code(), Code::DataLoss, "{engine:?}");
        assert!(status.message().contains("reload"), "{status:?}");
    }
}

/// A suspension with an end date: refused in the past or more than five years ahead,
/// shown on the account, and ended by the periodic job once due (not before), as a
/// reactivation by hand would: status, rights, audit. A suspension reactivated by
/// hand, then made again without a date, is not ended by the old date.
#[tokio::test]
async fn a_suspension_with_an_end_date_ends_on_its_own_at_that_date() {
    for engine in ENGINES {
        let w = world(engine).await;
        let id = active(&w, "cmartin").await;
        w.workflow
            .grant(&admin(), "cmartin", "datahub:publish", "", None)
            .await
            .unwrap();
        let now = w.registry.now();
        for (until, code) in [(now, "in_the_past"), (now + 6 * 365 * 86_400, "too_far")] {
            let refused = suspend_until(&w, &w.admin_token, "cmartin", "départ", until)
                .await
                .unwrap_err();
            assert_eq!(refused.code(), Code::InvalidArgument, "{engine:?}: {code}");
            let fields = violations(&refused);
            assert_eq!(fields.len(), 1, "{engine:?}: {fields:?}");
            assert_eq!(fields[0].0, "until", "{engine:?}: {code}");
            let text = if code == "too_far" {
                "cinq ans"
            } else {
                "futur"
            };
            assert!(fields[0].1.contains(text), "{engine:?}: {fields:?}");
        }
        let until = now + 3600;
        let account = suspend_until(&w, &w.admin_token, "cmartin", "congé", until)
            .await
            .unwrap();
        assert_eq!(account.suspended_until, until, "{engine:?}");
        assert!(list_rights(&w, "cmartin").await.is_empty());

        w.s.clock.advance(3599);
        assert_eq!(due(&w).await, 0, "{engine:?}: early");
        w.s.clock.advance(1);
        assert_eq!(due(&w).await, 1, "{engine:?}");
        let back = find_account(&w.s.db, &id).await.unwrap().unwrap();
        assert_eq!(back.status, AccountStatus::Active, "{engine:?}");
        assert_eq!(back.suspended_until, None);
        assert_eq!(list_rights(&w, "cmartin").await, ["datahub:publish"]);
        assert_eq!(due(&w).await, 0, "done once");
        let filter = AuditFilter {
            subject: id.clone(),
            limit: 10,
            ..AuditFilter::default()
        };
        let events = w.workflow.audit_events(&admin(), &filter).await.unwrap();
        assert!(
            events.iter().any(|e| e.action == suspension::REACTIVATED
                && e.actor == suspension::SUSPENSION_END_ACTOR),
            "{engine:?}: {events:?}"
        );
        assert!(
            events
                .iter()
                .any(|e| e.action == suspension::SUSPENDED
                    && e.detail.starts_with("congé (jusqu'au ")),
            "{engine:?}: {events:?}"
        );

        // Reactivated by hand before its date, then suspended with none: the old
        // date is gone with the first suspension.
        let now = w.registry.now();
        suspend_until(&w, &w.admin_token, "cmartin", "congé", now + 60)
            .await
            .unwrap();
        reactivate(&w, &w.admin_token, "cmartin").await.unwrap();
        let cleared = find_account(&w.s.db, &id).await.unwrap().unwrap();
        assert_eq!(cleared.suspended_until, None, "{engine:?}");
        let again = suspend(&w, &w.admin_token, "cmartin", "départ")
            .await
            .unwrap();
        assert_eq!(again.suspended_until, 0, "{engine:?}");
        w.s.clock.advance(120);
        assert_eq!(due(&w).await, 0, "{engine:?}");
        let still = find_account(&w.s.db, &id).await.unwrap().unwrap();
        assert_eq!(still.status, AccountStatus::Suspended, "{engine:?}");
        // Listed as due by the job just before that new suspension, the account is
        // still not reactivated: the date is checked again under the row's lock.
        let late = w.workflow.end_suspension_if_due(&id).await;
        assert!(
            matches!(late, Err(dge_workflow::Error::WrongState(_))),
            "{engine:?}: {late:?}"
        );
        let still = find_account(&w.s.db, &id).await.unwrap().unwrap();
        assert_eq!(still.status, AccountStatus::Suspended, "{engine:?}");
    }
}

/// The suspensions the periodic job ends now.
async fn due(w: &World) -> usize {
    w.workflow.end_due_suspensions().await.unwrap()
}

/// A `WatchRights` stream outlives neither its token: revoked while the stream is
/// open, it ends the stream with UNAUTHENTICATED (checked again every 200 ms here,
/// 30 s in production).
#[tokio::test]
async fn a_watch_rights_stream_ends_when_its_token_is_revoked() {
    use tokio_stream::StreamExt;
    for engine in ENGINES {
        let w = world(engine).await;
        let token = create_api_token(&w.s.db, "watcher", ADMIN_SCOPE, NOW)
            .await
            .unwrap();
        let mut stream = w
            .grpc
            .watch_rights(bearer(
                &token,
                pb::WatchRightsRequest {
                    account_id: String::new(),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        let wait = std::time::Duration::from_secs(1);
        assert!(
            tokio::time::timeout(wait, stream.next()).await.is_err(),
            "{engine:?}: the stream ended while its token was valid"
        );
        assert!(
            dge_authz::caller::revoke_api_token(&w.s.db, "watcher", "test", NOW)
                .await
                .unwrap()
        );
        let ended = tokio::time::timeout(wait * 5, stream.next())
            .await
            .expect("the stream went on after its token was revoked")
            .unwrap();
        let status = ended.expect_err("a change instead of the end");
        assert_eq!(status.code(), Code::Unauthenticated, "{engine:?}");
    }
}
