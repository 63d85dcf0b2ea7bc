//! Resend, purge, reset, profile, email change, export and deletion, with the clock
//! under the test's control.

use dge_core::Secret;
use dge_registry::Error;
use dge_registry::account::{EmailChangeLink, ProfileForm, ResendOutcome};
use dge_registry::reset::ResetOutcome;
use dge_store::sessions::EndingSession;
use sqlx::Row;

use crate::backends::{
    ENGINES, NOW, PASSWORD, Services, form, last_mail, logged_in, logged_in_to_module,
    outbox_kinds, services, token_in,
};

const NEW_PASSWORD: &str = "Quetsche-du-Sundgau-cd34-9?";

fn secret(s: &str) -> Secret<String> {
    Secret::new(s.to_owned())
}

/// A sign-up, confirmed and activated; returns the account id.
async fn active(s: &Services, login: &str, email: &str) -> String {
    s.registry.sign_up(&form(login, email)).await.unwrap();
    let token = token_in(&s.db, email, "confirm_email").await;
    let account = s.registry.confirm_email(&token).await.unwrap();
    sqlx::query("UPDATE accounts SET status = 'active' WHERE id = $1")
        .bind(&account.id)
        .execute(s.db.pool())
        .await
        .unwrap();
    account.id
}

async fn count(s: &Services, sql: &str, param: &str) -> i64 {
    sqlx::query(sql)
        .bind(param)
        .fetch_one(s.db.pool())
        .await
        .unwrap()
        .get("n")
}

async fn live_logins(s: &Services, account_id: &str) -> (i64, i64) {
    let sessions = s
        .sessions
        .of_account(account_id, s.registry.now())
        .await
        .unwrap();
    (
        i64::try_from(sessions.len()).unwrap(),
        count(
            s,
            "SELECT COUNT(*) AS n FROM issued_tokens WHERE account_id = $1 AND revoked_at IS NULL",
            account_id,
        )
        .await,
    )
}

#[tokio::test]
async fn resend_is_rate_limited_and_its_link_confirms() {
    for engine in ENGINES {
        let s = services(engine).await;
        let email = "camille@nancy.fr";
        s.registry.sign_up(&form("cmartin", email)).await.unwrap();
        let again = |k: &'static str| s.registry.send_confirmation_again(k);
        assert_eq!(
            again(email).await.unwrap(),
            ResendOutcome::RateLimited,
            "{engine:?}: too soon"
        );
        assert_eq!(
            again("nobody@nancy.fr").await.unwrap(),
            ResendOutcome::Nothing
        );
        for _ in 0..4 {
            s.clock.advance(61);
            assert_eq!(
                again(email).await.unwrap(),
                ResendOutcome::Sent,
                "{engine:?}"
            );
        }
        s.clock.advance(61);
        assert_eq!(
            again(email).await.unwrap(),
            ResendOutcome::RateLimited,
            "{engine:?}: five a day at most"
        );
        assert_eq!(outbox_kinds(&s.db, email).await, vec!["confirm_email"; 5]);
        let token = token_in(&s.db, email, "confirm_email").await;
        s.registry.confirm_email(&token).await.unwrap();
        assert_eq!(
            again(email).await.unwrap(),
            ResendOutcome::Nothing,
            "confirmed already"
        );
        assert!(
            s.registry
                .request_confirmation_again("not an address")
                .is_err()
        );
    }
}

#[tokio::test]
async fn unconfirmed_sign_ups_expire_and_free_their_login_and_address() {
    for engine in ENGINES {
        let s = services(engine).await;
        let mut f = form("cmartin", "camille@nancy.fr");
        f.organisation_id = String::new();
        f.proposed_organisation = "Syndicat des eaux de Toul".into();
        s.registry.sign_up(&f).await.unwrap();
        let _kept = active(&s, "jdupont", "jeanne@nancy.fr").await;
        s.clock
            .advance(s.registry.lifetimes().unconfirmed_ttl_secs - 10);
        assert_eq!(
            s.registry.purge_unconfirmed().await.unwrap(),
            0,
            "{engine:?}: not yet"
        );
        s.clock.advance(20);
        assert_eq!(
            s.registry.purge_unconfirmed().await.unwrap(),
            1,
            "{engine:?}"
        );
        assert!(
            dge_registry::store::find_account(&s.db, "cmartin")
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            dge_registry::store::find_account(&s.db, "jdupont")
                .await
                .unwrap()
                .is_some(),
            "a confirmed account is never purged"
        );
        let proposed = count(
            &s,
            "SELECT COUNT(*) AS n FROM organisations WHERE name = $1",
            "Syndicat des eaux de Toul",
        )
        .await;
        assert_eq!(proposed, 0, "the proposed organisation goes with it");
        // The login and the address are free: a new sign-up gets a confirmation email.
        s.registry
            .sign_up(&form("cmartin", "Camille@nancy.fr"))
            .await
            .unwrap();
        let kinds = outbox_kinds(&s.db, "Camille@nancy.fr").await;
        assert_eq!(kinds, ["confirm_email"], "{engine:?}");
    }
}

#[tokio::test]
async fn a_reset_link_lasts_an_hour_and_only_the_newest_works() {
    for engine in ENGINES {
        let s = services(engine).await;
        let email = "camille@nancy.fr";
        let id = active(&s, "cmartin", email).await;
        assert_eq!(
            s.registry
                .send_password_reset("nobody@nancy.fr")
                .await
                .unwrap(),
            ResetOutcome::Nothing
        );
        let send = || s.registry.send_password_reset(email);
        assert_eq!(send().await.unwrap(), ResetOutcome::LinkSent, "{engine:?}");
        let first = token_in(&s.db, email, "password_reset").await;
        s.clock.advance(1);
        assert_eq!(send().await.unwrap(), ResetOutcome::LinkSent);
        let second = token_in(&s.db, email, "password_reset").await;
        assert!(matches!(
            s.registry.reset_token_account(&first).await,
            Err(Error::BadToken)
        ));
        s.registry.reset_token_account(&second).await.unwrap();
        s.clock.advance(3600);
        assert!(
            matches!(
                s.registry.reset_token_account(&second).await,
                Err(Error::BadToken)
            ),
            "{engine:?}: expired after an hour"
        );
        // A password change invalidates a live link too.
        s.clock.advance(1);
        send().await.unwrap();
        let third = token_in(&s.db, email, "password_reset").await;
        s.registry
            .change_password(
                &id,
                &secret(PASSWORD),
                &secret(NEW_PASSWORD),
                &secret(NEW_PASSWORD),
            )
            .await
            .unwrap();
        assert!(matches!(
            s.registry.reset_token_account(&third).await,
            Err(Error::BadToken)
        ));
        // Over the hourly limit, nothing more is sent.
        for _ in 0..5 {
            s.clock.advance(1);
            send().await.unwrap();
        }
        assert_eq!(send().await.unwrap(), ResetOutcome::RateLimited);
    }
}

#[tokio::test]
async fn a_reset_revokes_every_login_and_tells_the_person() {
    for engine in ENGINES {
        let s = services(engine).await;
        let email = "camille@nancy.fr";
        let id = active(&s, "cmartin", email).await;
        logged_in(&s, &id).await;
        logged_in(&s, &id).await;
        assert_eq!(live_logins(&s, &id).await, (2, 2));
        s.registry.send_password_reset(email).await.unwrap();
        let token = token_in(&s.db, email, "password_reset").await;
        let weak = s
            .registry
            .reset_password(&token, &secret("azerty"), &secret("azerty"))
            .await;
        assert!(matches!(weak, Err(Error::Invalid(_))), "{engine:?}");
        s.registry
            .reset_password(&token, &secret(NEW_PASSWORD), &secret(NEW_PASSWORD))
            .await
            .unwrap();
        assert_eq!(live_logins(&s, &id).await, (0, 0), "{engine:?}");
        assert!(
            outbox_kinds(&s.db, email)
                .await
                .contains(&"password_changed".to_owned())
        );
        let used = s
            .registry
            .reset_password(&token, &secret(NEW_PASSWORD), &secret(NEW_PASSWORD))
            .await;
        assert!(matches!(used, Err(Error::BadToken)), "single use");
        let ok = s
            .registry
            .check_password("cmartin", &secret(NEW_PASSWORD))
            .await
            .unwrap();
        assert!(ok.is_ok());
    }
}

#[tokio::test]
async fn a_federated_only_account_is_told_which_provider_to_use() {
    for engine in ENGINES {
        let s = services(engine).await;
        let email = "agent@grandest.fr";
        sqlx::query(
            "INSERT INTO accounts (id, kind, email, email_key, given_name, family_name, status, created_at, updated_at) \
             VALUES ('fed-1', 'federated', $1, $1, 'Alex', 'Agent', 'active', $2, $2)",
        )
        .bind(email)
        .bind(NOW)
        .execute(s.db.pool())
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO federated_links (provider, subject, account_id, email, created_at, updated_at) \
             VALUES ('proconnect', 'sub-1', 'fed-1', $1, $2, $2)",
        )
        .bind(email)
        .bind(NOW)
        .execute(s.db.pool())
        .await
        .unwrap();
        let outcome = s.registry.send_password_reset(email).await.unwrap();
        assert_eq!(outcome, ResetOutcome::ProviderNotice, "{engine:?}");
        let body = last_mail(&s.db, email, "password_reset_federated").await;
        assert!(body.contains("ProConnect"), "{body}");
        assert!(
            !body.contains("token="),
            "no reset link for a federated account"
        );
    }
}

#[tokio::test]
async fn profile_and_password_changes_follow_the_sign_up_rules() {
    for engine in ENGINES {
        let s = services(engine).await;
        let id = active(&s, "cmartin", "camille@nancy.fr").await;
        let bad = ProfileForm {
            given_name: "Camille\r\nBcc: x@y.fr".into(),
            family_name: String::new(),
            phone: "12".into(),
            function: "x".repeat(151),
        };
        let Err(Error::Invalid(v)) = s.registry.update_profile(&id, &bad).await else {
            panic!("{engine:?}: a broken profile was saved");
        };
        let mut fields: Vec<_> = v.iter().map(|x| x.field).collect();
        fields.sort_unstable();
        assert_eq!(fields, ["family_name", "function", "given_name", "phone"]);
        let good = ProfileForm {
            given_name: " Camille ".into(),
            family_name: "Martin-Cle\u{301}ment".into(),
            phone: "+33 6 98 76 54 32".into(),
            function: "Géomaticienne".into(),
        };
        let a = s.registry.update_profile(&id, &good).await.unwrap();
        assert_eq!(
            (
                a.given_name.as_str(),
                a.family_name.as_str(),
                a.phone.as_str()
            ),
            ("Camille", "Martin-Cl\u{e9}ment", "+33698765432")
        );
        logged_in(&s, &id).await;
        let wrong = s
            .registry
            .change_password(
                &id,
                &secret("Wrong-Password-1!"),
                &secret(NEW_PASSWORD),
                &secret(NEW_PASSWORD),
            )
            .await;
        let Err(Error::Invalid(v)) = wrong else {
            panic!("changed with a wrong current password");
        };
        assert_eq!(v.iter().next().unwrap().field, "current_password");
        let weak = s
            .registry
            .change_password(
                &id,
                &secret(PASSWORD),
                &secret("xxcmartinxx-1A"),
                &secret("xxcmartinxx-1A"),
            )
            .await;
        assert!(matches!(weak, Err(Error::Invalid(_))), "contains the login");
        s.registry
            .change_password(
                &id,
                &secret(PASSWORD),
                &secret(NEW_PASSWORD),
                &secret(NEW_PASSWORD),
            )
            .await
            .unwrap();
        assert_eq!(live_logins(&s, &id).await, (0, 0), "{engine:?}");
    }
}

#[tokio::test]
async fn an_email_change_waits_for_the_new_address_and_tells_the_old_one() {
    for engine in ENGINES {
        let s = services(engine).await;
        let old = "camille@nancy.fr";
        let new = "c.martin@Example.ORG";
        let id = active(&s, "cmartin", old).await;
        let _other = active(&s, "jdupont", "jeanne@nancy.fr").await;
        let wrong = s
            .registry
            .request_email_change(&id, new, &secret("nope"))
            .await;
        assert!(matches!(wrong, Err(Error::Invalid(_))), "{engine:?}");
        // An address no mail server without SMTPUTF8 could write to.
        let accented = s
            .registry
            .request_email_change(&id, "élise@exemple.fr", &secret(PASSWORD))
            .await;
        match accented {
            Err(Error::Invalid(v)) => assert_eq!(
                v.iter().map(|x| (x.field, x.code)).collect::<Vec<_>>(),
                [("new_email", "non_ascii")]
            ),
            other => panic!("{engine:?}: {other:?}"),
        }
        // An address in use: the same answer, and no link goes to it.
        s.registry
            .request_email_change(&id, "JEANNE@nancy.fr", &secret(PASSWORD))
            .await
            .unwrap();
        assert!(
            !outbox_kinds(&s.db, "JEANNE@nancy.fr")
                .await
                .contains(&"email_change_confirm".to_owned())
        );
        s.registry
            .request_email_change(&id, new, &secret(PASSWORD))
            .await
            .unwrap();
        let stored_new = "c.martin@example.org";
        assert_eq!(
            s.registry.own_account(&id).await.unwrap().email,
            old,
            "not before confirmation"
        );
        assert!(
            outbox_kinds(&s.db, old)
                .await
                .contains(&"email_change_requested".to_owned())
        );
        // No greeting by name to an address not confirmed yet.
        let body = last_mail(&s.db, stored_new, "email_change_confirm").await;
        assert!(
            body.starts_with("Bonjour,") && !body.contains("Camille"),
            "{body}"
        );
        let token = token_in(&s.db, stored_new, "email_change_confirm").await;
        assert_eq!(
            s.registry.email_change_link(&token).await.unwrap(),
            EmailChangeLink::Usable
        );
        let a = s.registry.confirm_email_change(&token).await.unwrap();
        assert_eq!(a.email, stored_new, "{engine:?}");
        assert!(
            outbox_kinds(&s.db, old)
                .await
                .contains(&"email_changed".to_owned())
        );
        assert!(matches!(
            s.registry.confirm_email_change(&token).await,
            Err(Error::BadToken)
        ));
        assert_eq!(
            s.registry.email_change_link(&token).await.unwrap(),
            EmailChangeLink::Invalid,
            "{engine:?}: used"
        );
        let by_new = s
            .registry
            .check_password("C.Martin@example.org", &secret(PASSWORD))
            .await
            .unwrap();
        assert!(by_new.is_ok(), "logs in with the new address");
        // An expired link does nothing.
        s.registry
            .request_email_change(&id, "autre@example.org", &secret(PASSWORD))
            .await
            .unwrap();
        let late = token_in(&s.db, "autre@example.org", "email_change_confirm").await;
        // Someone signs up with that address meanwhile: the link says so.
        let other = active(&s, "autre", "autre@example.org").await;
        assert_eq!(
            s.registry.email_change_link(&late).await.unwrap(),
            EmailChangeLink::Taken,
            "{engine:?}"
        );
        assert!(matches!(
            s.registry.confirm_email_change(&late).await,
            Err(Error::BadToken)
        ));
        s.registry
            .delete_account(&other, &secret(PASSWORD), true)
            .await
            .unwrap();
        assert_eq!(
            s.registry.email_change_link(&late).await.unwrap(),
            EmailChangeLink::Usable
        );
        s.clock.advance(48 * 3600 + 1);
        assert!(matches!(
            s.registry.confirm_email_change(&late).await,
            Err(Error::BadToken)
        ));
    }
}

#[tokio::test]
async fn export_then_deletion_keeps_only_an_anonymous_audit_trail() {
    for engine in ENGINES {
        let s = services(engine).await;
        let email = "camille@nancy.fr";
        let id = active(&s, "cmartin", email).await;
        sqlx::query(
            "INSERT INTO grants (account_id, right_name, granted_by, reason, created_at) \
             VALUES ($1, 'datahub:publish', 'token:test', 'Publie pour Camille Martin', $2)",
        )
        .bind(&id)
        .bind(NOW)
        .execute(s.db.pool())
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO federated_links (provider, subject, account_id, email, created_at, updated_at) \
             VALUES ('region', 'sub-9', $1, $2, $3, $3)",
        )
        .bind(&id)
        .bind(email)
        .bind(NOW)
        .execute(s.db.pool())
        .await
        .unwrap();
        dge_store::audit(
            &mut s.db.pool().acquire().await.unwrap(),
            "token:test",
            "right.granted",
            &id,
            "datahub:publish pour Camille Martin",
            NOW,
        )
        .await
        .unwrap();
        logged_in(&s, &id).await;
        let data = s.registry.export_personal_data(&id).await.unwrap();
        assert_eq!(data["account"]["email"], email, "{engine:?}");
        assert_eq!(data["account"]["phone"], "+33612345678");
        assert_eq!(data["rights"][0]["right_name"], "datahub:publish");
        assert_eq!(data["federated_links"][0]["provider"], "region");
        assert_eq!(data["sessions"].as_array().unwrap().len(), 1);
        assert!(!data["emails_sent"].as_array().unwrap().is_empty());
        assert!(
            !data.to_string().contains("argon2"),
            "no password hash in the export"
        );

        let unconfirmed = s
            .registry
            .delete_account(&id, &secret(PASSWORD), false)
            .await;
        assert!(matches!(unconfirmed, Err(Error::Invalid(_))));
        let wrong = s
            .registry
            .delete_account(&id, &secret("Nope-Nope-12!"), true)
            .await;
        assert!(matches!(wrong, Err(Error::Invalid(_))));
        s.registry
            .delete_account(&id, &secret(PASSWORD), true)
            .await
            .unwrap();
        for (table, column) in [
            ("accounts", "id"),
            ("grants", "account_id"),
            ("federated_links", "account_id"),
            ("sessions", "account_id"),
            ("email_tokens", "account_id"),
        ] {
            let sql = format!("SELECT COUNT(*) AS n FROM {table} WHERE {column} = $1");
            assert_eq!(
                count(&s, &sql, &id).await,
                0,
                "{engine:?}: {table} keeps the account"
            );
        }
        assert_eq!(outbox_kinds(&s.db, email).await, ["account_deleted"]);
        let audit = sqlx::query("SELECT action, detail FROM audit_events WHERE subject = $1")
            .bind(&id)
            .fetch_all(s.db.pool())
            .await
            .unwrap();
        let actions: Vec<String> = audit.iter().map(|r| r.get("action")).collect();
        assert!(
            actions.contains(&"right.granted".to_owned()),
            "audit kept: {actions:?}"
        );
        assert!(actions.contains(&"account.deleted".to_owned()));
        for r in &audit {
            assert_eq!(
                r.get::<String, _>("detail"),
                "",
                "no personal data left in the audit"
            );
        }
        // The login and the address can be used again.
        s.registry.sign_up(&form("cmartin", email)).await.unwrap();
        assert_eq!(
            outbox_kinds(&s.db, email).await,
            ["account_deleted", "confirm_email"]
        );
    }
}

#[tokio::test]
async fn a_fullwidth_or_spaced_identifier_logs_in_like_the_plain_one() {
    for engine in ENGINES {
        let s = services(engine).await;
        let id = active(&s, "jdupont", "jean@example.fr").await;
        for identifier in [
            "ｊｅａｎ@example.fr",
            "ＪＥＡＮ@ＥＸＡＭＰＬＥ.ＦＲ",
            " jean@example.fr ",
            "ｊｄｕｐｏｎｔ",
        ] {
            let account = s
                .registry
                .login(identifier, &secret(PASSWORD), "203.0.113.9")
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("{engine:?} {identifier}: {e:?}"));
            assert_eq!(account.id, id);
        }
    }
}

#[tokio::test]
async fn a_reset_asked_for_an_unconfirmed_sign_up_sends_a_new_confirmation_link() {
    for engine in ENGINES {
        let s = services(engine).await;
        let email = "camille@nancy.fr";
        s.registry.sign_up(&form("cmartin", email)).await.unwrap();
        s.clock.advance(61);
        assert_eq!(
            s.registry.send_password_reset(email).await.unwrap(),
            ResetOutcome::ConfirmationSent,
            "{engine:?}"
        );
        // No reset link that would change a password the login still refuses.
        assert_eq!(
            outbox_kinds(&s.db, email).await,
            vec!["confirm_email", "confirm_email"]
        );
        let token = token_in(&s.db, email, "confirm_email").await;
        s.registry.confirm_email(&token).await.unwrap();
        // Once confirmed, a reset is a reset again.
        assert_eq!(
            s.registry.send_password_reset(email).await.unwrap(),
            ResetOutcome::LinkSent
        );
    }
}

#[tokio::test]
async fn changing_to_the_same_password_is_refused_and_changes_nothing() {
    for engine in ENGINES {
        let s = services(engine).await;
        let id = active(&s, "cmartin", "camille@nancy.fr").await;
        logged_in(&s, &id).await;
        // The same password, also typed in fullwidth (the same once NFKC-folded).
        let fullwidth: String = PASSWORD
            .chars()
            .map(|c| {
                if ('!'..='~').contains(&c) {
                    char::from_u32(c as u32 + 0xFEE0).unwrap()
                } else {
                    c
                }
            })
            .collect();
        for same in [PASSWORD.to_owned(), fullwidth] {
            let Err(Error::Invalid(v)) = s
                .registry
                .change_password(&id, &secret(PASSWORD), &secret(&same), &secret(&same))
                .await
            else {
                panic!("{engine:?}: the same password was accepted");
            };
            let found: Vec<_> = v.iter().map(|x| (x.field, x.code)).collect();
            assert_eq!(found, [("password", "unchanged")], "{engine:?}");
            assert_eq!(
                v.iter().next().unwrap().message,
                "Le nouveau mot de passe doit être différent de l'actuel."
            );
        }
        assert_eq!(live_logins(&s, &id).await, (1, 1), "nothing was revoked");
        assert!(
            !outbox_kinds(&s.db, "camille@nancy.fr")
                .await
                .contains(&"password_changed".to_owned())
        );
    }
}

/// An empty current password, however often sent, is asked for, not counted: no
/// lock, no lock email, and the right password still works.
#[tokio::test]
async fn an_empty_current_password_is_asked_for_and_never_locks() {
    for engine in ENGINES {
        let s = services(engine).await;
        let id = active(&s, "cmartin", "camille@nancy.fr").await;
        const NEW: &str = "Quiche-de-Nancy-4711-!";
        for i in 0..12 {
            let blank = if i % 2 == 0 { "" } else { " \t " };
            let Err(Error::Invalid(v)) = s
                .registry
                .change_password(&id, &secret(blank), &secret(NEW), &secret(NEW))
                .await
            else {
                panic!("{engine:?}: an empty current password was accepted");
            };
            let found: Vec<_> = v.iter().map(|x| (x.field, x.code)).collect();
            assert_eq!(found, [("current_password", "required")], "{engine:?}");
        }
        assert!(
            !outbox_kinds(&s.db, "camille@nancy.fr")
                .await
                .contains(&"account_locked".to_owned()),
            "{engine:?}"
        );
        s.registry
            .change_password(&id, &secret(PASSWORD), &secret(NEW), &secret(NEW))
            .await
            .unwrap();
    }
}

/// Each account change that ends every session tells the provider, after its
/// commit, which sessions ended and through which modules (back-channel logout); a
/// session no module used is not listed, and a refused change tells nothing.
#[tokio::test]
async fn account_changes_tell_which_sessions_they_ended() {
    const LAST_PASSWORD: &str = "Mirabelle-de-Toul-ef56-3!";
    for engine in ENGINES {
        let s = services(engine).await;
        let email = "camille@nancy.fr";
        let id = active(&s, "cmartin", email).await;
        let told = |hash: String| {
            vec![(
                id.clone(),
                vec![EndingSession {
                    hash,
                    clients: vec!["portal".into()],
                }],
            )]
        };
        let used = logged_in_to_module(&s, &id).await;
        logged_in(&s, &id).await;
        let new = secret(NEW_PASSWORD);
        let refused = s
            .registry
            .change_password(&id, &secret("Nope-Nope-12!"), &new, &new)
            .await;
        assert!(refused.is_err(), "{engine:?}");
        assert!(
            s.ended.take().is_empty(),
            "{engine:?}: a refused change told"
        );
        s.registry
            .change_password(&id, &secret(PASSWORD), &new, &new)
            .await
            .unwrap();
        assert_eq!(s.ended.take(), told(used), "{engine:?}: password change");

        let used = logged_in_to_module(&s, &id).await;
        s.clock.advance(1);
        s.registry.send_password_reset(email).await.unwrap();
        let token = token_in(&s.db, email, "password_reset").await;
        let last = secret(LAST_PASSWORD);
        s.registry
            .reset_password(&token, &last, &last)
            .await
            .unwrap();
        assert_eq!(s.ended.take(), told(used), "{engine:?}: password reset");

        let used = logged_in_to_module(&s, &id).await;
        s.registry.delete_account(&id, &last, true).await.unwrap();
        assert_eq!(s.ended.take(), told(used), "{engine:?}: deletion");
    }
}
