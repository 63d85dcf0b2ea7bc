//! Global administrators granted and revoked through the workflow (issue 4): who
//! may, which accounts may become one, the last one and oneself, and the audit.

use dge_authz::Caller;
use dge_registry::store::find_account;
use dge_workflow::rights::AuditFilter;
use dge_workflow::{Actor, Error};

use crate::backends::{ENGINES, Services, services};
use crate::journey::{admin, confirmation_token, form};

/// Signs up `login` at Nancy; confirms, then approves or rejects as asked.
async fn account(s: &Services, login: &str, confirm: bool, decide: Option<bool>) -> String {
    let email = format!("{login}@nancy.fr");
    s.registry
        .sign_up(&form(login, &email))
        .await
        .expect("sign-up");
    if confirm {
        let token = confirmation_token(&s.db, &email).await;
        s.registry.confirm_email(&token).await.expect("confirm");
    }
    match decide {
        Some(true) => {
            s.workflow.approve(&admin(), login, &[]).await.unwrap();
        }
        Some(false) => {
            s.workflow
                .reject(&admin(), login, "hors périmètre")
                .await
                .unwrap();
        }
        None => {}
    }
    find_account(&s.db, login)
        .await
        .unwrap()
        .expect("account")
        .id
}

/// The field and code of a refusal.
fn violation(err: Error) -> (&'static str, &'static str) {
    let Error::Invalid(v) = err else {
        panic!("expected a field violation, got {err:?}");
    };
    let first = v.iter().next().expect("one violation");
    (first.field, first.code)
}

async fn person(s: &Services, id: &str, admin: bool) -> Actor {
    crate::backends::enrol_mfa(&s.db, id).await;
    let caller = Caller::Account {
        id: id.into(),
        client_id: "dgectl".into(),
        admin,
        mfa_missing: false,
    };
    Actor::of(&s.db, &caller).await.expect("an administrator")
}

async fn is_admin(s: &Services, login: &str) -> bool {
    find_account(&s.db, login)
        .await
        .unwrap()
        .expect("account")
        .is_admin
}

/// (actor, action, detail) of the admin events about `subject`, oldest first.
async fn admin_events(s: &Services, subject: &str) -> Vec<(String, String, String)> {
    let filter = AuditFilter {
        subject: subject.into(),
        limit: 100,
        ..AuditFilter::default()
    };
    let mut events: Vec<_> = s
        .workflow
        .audit_events(&admin(), &filter)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action.starts_with("admin."))
        .collect();
    events.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    events
        .into_iter()
        .map(|e| (e.actor, e.action, e.detail))
        .collect()
}

#[tokio::test]
async fn only_an_active_account_becomes_administrator_once_and_it_is_audited() {
    for engine in ENGINES {
        let s = services(engine).await;
        let alice = account(&s, "alice", true, Some(true)).await;
        account(&s, "pending", true, None).await;
        account(&s, "unconfirmed", false, None).await;
        account(&s, "refused", true, Some(false)).await;

        for (login, code) in [
            ("pending", "pending"),
            ("unconfirmed", "unconfirmed"),
            ("refused", "rejected"),
            ("nobody", "unknown_account"),
        ] {
            let err = s
                .workflow
                .grant_admin(&admin(), login, "")
                .await
                .unwrap_err();
            assert_eq!(violation(err), ("account", code), "{login} on {engine:?}");
            if login != "nobody" {
                assert!(!is_admin(&s, login).await, "{login} on {engine:?}");
            }
        }
        let err = s
            .workflow
            .grant_admin(&admin(), "alice", &"x".repeat(1001))
            .await
            .unwrap_err();
        assert_eq!(violation(err), ("reason", "too_long"));
        assert!(!is_admin(&s, "alice").await);
        assert!(admin_events(&s, &alice).await.is_empty());

        let (granted, account) = s
            .workflow
            .grant_admin(&admin(), "alice", " astreinte de la plateforme ")
            .await
            .unwrap();
        assert!(granted && account.is_admin);
        let (granted, account) = s
            .workflow
            .grant_admin(&admin(), "ALICE", "encore")
            .await
            .unwrap();
        assert!(
            !granted && account.is_admin,
            "a second grant changes nothing"
        );
        assert_eq!(
            admin_events(&s, &alice).await,
            [(
                "token:test".to_owned(),
                "admin.granted".to_owned(),
                "astreinte de la plateforme".to_owned()
            )]
        );
        let admins = s.workflow.list_admins(&admin()).await.unwrap();
        let logins: Vec<_> = admins.iter().filter_map(|a| a.login.clone()).collect();
        assert_eq!(logins, ["alice"]);
    }
}

#[tokio::test]
async fn nobody_but_a_global_administrator_manages_administrators() {
    for engine in ENGINES {
        let s = services(engine).await;
        let chef = account(&s, "chef", true, Some(true)).await;
        account(&s, "alice", true, Some(true)).await;
        s.workflow
            .add_organisation_admin(&admin(), "chef")
            .await
            .unwrap();
        // Without two-step verification, no power.
        let bare = Caller::Account {
            id: chef.clone(),
            client_id: "dgectl".into(),
            admin: false,
            mfa_missing: false,
        };
        assert!(matches!(
            Actor::of(&s.db, &bare).await,
            Err(Error::MfaRequired)
        ));
        let delegated = person(&s, &chef, false).await;
        assert!(matches!(delegated, Actor::OrganisationAdmin { .. }));
        assert!(matches!(
            s.workflow.grant_admin(&delegated, "alice", "").await,
            Err(Error::NotAllowed)
        ));
        assert!(matches!(
            s.workflow.grant_admin(&delegated, "chef", "").await,
            Err(Error::NotAllowed)
        ));
        assert!(matches!(
            s.workflow.list_admins(&delegated).await,
            Err(Error::NotAllowed)
        ));
        s.workflow.grant_admin(&admin(), "alice", "").await.unwrap();
        assert!(matches!(
            s.workflow.revoke_admin(&delegated, "alice", "").await,
            Err(Error::NotAllowed)
        ));
        // No rights to oneself, none given to or taken from a global administrator
        // of the organisation; a plain member's still are.
        account(&s, "bruno", true, Some(true)).await;
        for (who, what) in [("chef", "oneself"), ("alice", "a global administrator")] {
            assert!(
                matches!(
                    s.workflow
                        .grant(&delegated, who, "datahub:publish", "", None)
                        .await,
                    Err(Error::NotAllowed)
                ),
                "{engine:?}: a right granted to {what}"
            );
            assert!(
                matches!(
                    s.workflow.revoke(&delegated, who, "datahub:publish").await,
                    Err(Error::NotAllowed)
                ),
                "{engine:?}: a right revoked from {what}"
            );
        }
        s.workflow
            .grant(&delegated, "bruno", "datahub:publish", "", None)
            .await
            .unwrap();
        assert!(is_admin(&s, "alice").await);
        assert!(!is_admin(&s, "chef").await);
        let plain = Caller::Account {
            id: "someone".into(),
            client_id: "dgectl".into(),
            admin: false,
            mfa_missing: false,
        };
        assert!(matches!(
            Actor::of(&s.db, &plain).await,
            Err(Error::NotAllowed)
        ));
    }
}

#[tokio::test]
async fn revocation_spares_oneself_and_the_last_administrator_and_is_audited() {
    for engine in ENGINES {
        let s = services(engine).await;
        let alice = account(&s, "alice", true, Some(true)).await;
        let bruno = account(&s, "bruno", true, Some(true)).await;
        account(&s, "chloe", true, Some(true)).await;
        s.workflow.grant_admin(&admin(), "alice", "").await.unwrap();

        // The only administrator account stays, even for an admin API token.
        let err = s
            .workflow
            .revoke_admin(&admin(), "alice", "")
            .await
            .unwrap_err();
        assert_eq!(violation(err), ("account", "last_admin"));
        assert!(is_admin(&s, "alice").await);

        s.workflow.grant_admin(&admin(), "bruno", "").await.unwrap();
        let as_alice = person(&s, &alice, true).await;
        let err = s
            .workflow
            .revoke_admin(&as_alice, "alice", "")
            .await
            .unwrap_err();
        assert_eq!(violation(err), ("account", "self"));
        assert!(is_admin(&s, "alice").await);

        let (revoked, account) = s
            .workflow
            .revoke_admin(&as_alice, "bruno", "a quitté l'équipe")
            .await
            .unwrap();
        assert!(revoked && !account.is_admin);
        let (revoked, _) = s
            .workflow
            .revoke_admin(&as_alice, "bruno", "")
            .await
            .unwrap();
        assert!(!revoked, "revoking twice changes nothing");
        let (revoked, _) = s
            .workflow
            .revoke_admin(&as_alice, "chloe", "")
            .await
            .unwrap();
        assert!(!revoked, "chloe never was an administrator");
        let err = s
            .workflow
            .revoke_admin(&as_alice, "nobody", "")
            .await
            .unwrap_err();
        assert_eq!(violation(err), ("account", "unknown_account"));

        assert_eq!(
            admin_events(&s, &bruno).await,
            [
                (
                    "token:test".to_owned(),
                    "admin.granted".to_owned(),
                    String::new()
                ),
                (
                    format!("account:{alice}"),
                    "admin.revoked".to_owned(),
                    "a quitté l'équipe".to_owned()
                ),
            ]
        );
        let admins = s.workflow.list_admins(&admin()).await.unwrap();
        assert_eq!(admins.len(), 1);
        assert_eq!(admins[0].id, alice);
    }
}

#[tokio::test]
async fn two_revocations_at_once_leave_one_administrator() {
    for engine in ENGINES {
        let s = services(engine).await;
        for round in 0..3 {
            let (a, b) = (format!("alice{round}"), format!("bruno{round}"));
            account(&s, &a, true, Some(true)).await;
            account(&s, &b, true, Some(true)).await;
            s.workflow.grant_admin(&admin(), &a, "").await.unwrap();
            s.workflow.grant_admin(&admin(), &b, "").await.unwrap();
            let admin = admin();
            let (first, second) = tokio::join!(
                s.workflow.revoke_admin(&admin, &a, ""),
                s.workflow.revoke_admin(&admin, &b, "")
            );
            let outcomes = [first, second];
            let done = outcomes
                .iter()
                .filter(|o| matches!(o, Ok((true, _))))
                .count();
            assert_eq!(done, 1, "{outcomes:?} on {engine:?}");
            let refused = outcomes
                .into_iter()
                .find_map(Result::err)
                .expect("one refusal");
            assert_eq!(violation(refused), ("account", "last_admin"));
            let left = s.workflow.list_admins(&admin).await.unwrap();
            assert_eq!(left.len(), 1, "{engine:?}");
            // The next round starts without administrators.
            sqlx::query("UPDATE accounts SET is_admin = 0")
                .execute(s.db.pool())
                .await
                .unwrap();
        }
    }
}
