//! Sign-up, confirmation, validation and rights, on both backends.

use dge_core::Secret;
use dge_registry::{AccountStatus, LoginError, SignUpForm};
use sqlx::Row;

use dge_workflow::Actor;
use dge_workflow::rights::GrantOutcome;

use crate::backends::{ENGINES, Engine, services};

pub(crate) fn admin() -> Actor {
    Actor::Admin {
        label: "token:test".into(),
        account_id: None,
    }
}

pub(crate) fn form(login: &str, email: &str) -> SignUpForm {
    SignUpForm {
        given_name: "Camille".into(),
        family_name: "Martin".into(),
        email: email.into(),
        phone: "06 12 34 56 78".into(),
        organisation_id: "ville-de-nancy".into(),
        login: login.into(),
        password: Secret::new("Correct-Horse-9".into()),
        password_confirmation: Secret::new("Correct-Horse-9".into()),
        ..SignUpForm::default()
    }
}

pub(crate) async fn outbox_kinds(db: &dge_store::Db, email: &str) -> Vec<String> {
    sqlx::query("SELECT kind FROM outbox WHERE recipient = $1 ORDER BY created_at, id")
        .bind(email)
        .fetch_all(db.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<String, _>("kind"))
        .collect()
}

/// The confirmation token is only in the email, so the test takes it from the body.
pub(crate) async fn confirmation_token(db: &dge_store::Db, email: &str) -> String {
    let body: String =
        sqlx::query("SELECT body_text FROM outbox WHERE recipient = $1 AND kind = 'confirm_email'")
            .bind(email)
            .fetch_one(db.pool())
            .await
            .unwrap()
            .get("body_text");
    let start = body.find("token=").expect("link in the email") + "token=".len();
    body[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

async fn sign_up_confirmed(engine: Engine) -> crate::backends::Services {
    let s = services(engine).await;
    s.registry
        .sign_up(&form("cmartin", "Camille.Martin@Nancy.fr"))
        .await
        .expect("sign-up");
    let token = confirmation_token(&s.db, "Camille.Martin@nancy.fr").await;
    let account = s.registry.confirm_email(&token).await.expect("confirm");
    assert_eq!(account.status, AccountStatus::Pending);
    s
}

#[tokio::test]
async fn the_whole_local_journey_holds_on_both_backends() {
    for engine in ENGINES {
        let s = sign_up_confirmed(engine).await;
        let password = Secret::new("Correct-Horse-9".to_owned());
        let pending = s
            .registry
            .check_password("cmartin", &password)
            .await
            .unwrap();
        assert_eq!(
            pending.unwrap_err(),
            LoginError::NotActive(AccountStatus::Pending),
            "{engine:?}"
        );

        s.workflow
            .approve(&admin(), "CMARTIN", &[])
            .await
            .expect("approve");
        let account = s
            .registry
            .check_password("camille.martin@nancy.fr", &password)
            .await
            .unwrap()
            .expect("login");
        assert_eq!(account.login.as_deref(), Some("cmartin"));
        assert_eq!(
            outbox_kinds(&s.db, "Camille.Martin@nancy.fr").await,
            ["confirm_email", "account_pending", "account_activated"],
            "{engine:?}"
        );

        assert!(
            !dge_authz::rights::has_right(&s.db, &account.id, "datahub:publish", 1_800_000_001)
                .await
                .unwrap()
        );
        assert_eq!(
            s.workflow
                .grant(&admin(), "cmartin", "datahub:publish", "", None)
                .await
                .unwrap(),
            GrantOutcome::Granted
        );
        assert_eq!(
            s.workflow
                .grant(&admin(), "cmartin", "datahub:publish", "", None)
                .await
                .unwrap(),
            GrantOutcome::AlreadyHeld
        );
        assert!(
            dge_authz::rights::has_right(&s.db, &account.id, "datahub:publish", 1_800_000_001)
                .await
                .unwrap()
        );
        let audit: i64 = sqlx::query("SELECT COUNT(*) AS n FROM audit_events WHERE subject = $1")
            .bind(&account.id)
            .fetch_one(s.db.pool())
            .await
            .unwrap()
            .get("n");
        assert_eq!(audit, 2, "approval and grant are audited on {engine:?}");
    }
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_login_get_the_same_answer() {
    for engine in ENGINES {
        let s = sign_up_confirmed(engine).await;
        s.workflow.approve(&admin(), "cmartin", &[]).await.unwrap();
        let wrong = s
            .registry
            .check_password("cmartin", &Secret::new("Wrong-Horse-99".into()))
            .await
            .unwrap();
        let unknown = s
            .registry
            .check_password("nobody", &Secret::new("Correct-Horse-9".into()))
            .await
            .unwrap();
        assert_eq!(wrong.unwrap_err(), LoginError::BadCredentials);
        assert_eq!(unknown.unwrap_err(), LoginError::BadCredentials);
    }
}

#[tokio::test]
async fn a_second_sign_up_with_the_same_address_creates_nothing_and_tells_the_owner() {
    for engine in ENGINES {
        let s = sign_up_confirmed(engine).await;
        s.registry
            .sign_up(&form("other", "camille.martin@NANCY.fr"))
            .await
            .expect("same answer as a fresh sign-up");
        let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM accounts")
            .fetch_one(s.db.pool())
            .await
            .unwrap()
            .get("n");
        assert_eq!(n, 1, "{engine:?}");
        assert_eq!(
            outbox_kinds(&s.db, "Camille.Martin@nancy.fr").await,
            ["confirm_email", "account_pending", "signup_existing"],
            "{engine:?}"
        );
    }
}

#[tokio::test]
async fn a_taken_login_is_refused_and_writes_nothing() {
    for engine in ENGINES {
        let s = sign_up_confirmed(engine).await;
        let err = s
            .registry
            .sign_up(&form("CMartin", "autre@nancy.fr"))
            .await
            .unwrap_err();
        let dge_registry::Error::Invalid(v) = err else {
            panic!("expected a violation on {engine:?}")
        };
        assert_eq!(
            v.iter().map(|x| (x.field, x.code)).collect::<Vec<_>>(),
            [("login", "taken")]
        );
        assert!(outbox_kinds(&s.db, "autre@nancy.fr").await.is_empty());
    }
}

#[tokio::test]
async fn an_expired_or_reused_confirmation_link_changes_nothing() {
    for engine in ENGINES {
        let s = services(engine).await;
        s.registry
            .sign_up(&form("cmartin", "c.martin@nancy.fr"))
            .await
            .unwrap();
        let token = confirmation_token(&s.db, "c.martin@nancy.fr").await;
        s.clock.advance(3601);
        assert!(matches!(
            s.registry.confirm_email(&token).await,
            Err(dge_registry::Error::BadToken)
        ));
        let status: String = sqlx::query("SELECT status FROM accounts")
            .fetch_one(s.db.pool())
            .await
            .unwrap()
            .get("status");
        assert_eq!(status, "unconfirmed", "{engine:?}");

        let s = services(engine).await;
        s.registry
            .sign_up(&form("cmartin", "c.martin@nancy.fr"))
            .await
            .unwrap();
        let token = confirmation_token(&s.db, "c.martin@nancy.fr").await;
        s.registry.confirm_email(&token).await.unwrap();
        assert!(matches!(
            s.registry.confirm_email(&token).await,
            Err(dge_registry::Error::BadToken)
        ));
    }
}

#[tokio::test]
async fn concurrent_approve_and_reject_end_in_exactly_one_outcome() {
    for engine in ENGINES {
        let s = sign_up_confirmed(engine).await;
        let (first, second) = (admin(), admin());
        let (a, r) = tokio::join!(
            s.workflow.approve(&first, "cmartin", &[]),
            s.workflow.reject(&second, "cmartin", "Organisme inconnu"),
        );
        assert!(
            a.is_ok() ^ r.is_ok(),
            "exactly one wins on {engine:?}: {a:?} / {r:?}"
        );
        let decided: i64 = sqlx::query("SELECT COUNT(*) AS n FROM audit_events WHERE action IN ('account.approved', 'account.rejected')")
            .fetch_one(s.db.pool())
            .await
            .unwrap()
            .get("n");
        assert_eq!(decided, 1, "{engine:?}");
    }
}
