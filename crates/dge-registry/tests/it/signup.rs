//! Sign-ups with an address already in use: they must answer, and hold their login,
//! exactly like fresh ones, and must not flood the owner's mailbox. And gRPC sign-ups
//! the page's form cannot send.

use std::sync::Arc;

use dge_authz::caller::create_api_token;
use dge_authz::keys::KeyEncryptionKey;
use dge_authz::{Authenticator, Keys};
use dge_proto::v1 as pb;
use dge_proto::v1::account_registry_server::AccountRegistry;
use dge_registry::grpc::AccountRegistryService;
use dge_registry::{AccountLifetimes, Error};
use sqlx::Row;
use tonic::{Code, Request};
use tonic_types::StatusExt;

use crate::backends::{
    ENGINES, NOW, PASSWORD, Services, form, last_mail, outbox_kinds, services, token_in,
};

/// What a sign-up answered: `None` when accepted, else its (field, code) pairs.
async fn answer(
    s: &Services,
    login: &str,
    email: &str,
) -> Option<Vec<(&'static str, &'static str)>> {
    match s.registry.sign_up(&form(login, email)).await {
        Ok(()) => None,
        Err(Error::Invalid(v)) => Some(v.iter().map(|x| (x.field, x.code)).collect()),
        Err(e) => panic!("unexpected error: {e}"),
    }
}

async fn owner(s: &Services) {
    s.registry
        .sign_up(&form("jdupont", "jeanne@nancy.fr"))
        .await
        .unwrap();
    let token = token_in(&s.db, "jeanne@nancy.fr", "confirm_email").await;
    s.registry.confirm_email(&token).await.unwrap();
}

const TAKEN: Option<&[(&str, &str)]> = Some(&[("login", "taken")]);

#[tokio::test]
async fn a_reused_login_answers_the_same_whether_or_not_the_address_had_an_account() {
    for engine in ENGINES {
        let s = services(engine).await;
        owner(&s).await;
        // Order 1: the first sign-up uses the owner's address, then the login is reused.
        assert_eq!(
            answer(&s, "newlogin", "Jeanne@nancy.fr").await,
            None,
            "{engine:?}"
        );
        assert_eq!(answer(&s, "freshlogin", "fresh@nancy.fr").await, None);
        let after_used = answer(&s, "newlogin", "other@nancy.fr").await;
        let after_fresh = answer(&s, "freshlogin", "other@nancy.fr").await;
        assert_eq!(after_used.as_deref(), TAKEN, "{engine:?}");
        assert_eq!(after_used, after_fresh, "{engine:?}: indistinguishable");
        // Order 2: a fresh sign-up first, then its login reused with the owner's address
        // or with another fresh one.
        assert_eq!(answer(&s, "second", "second@nancy.fr").await, None);
        let used_second = answer(&s, "second", "jeanne@nancy.fr").await;
        let fresh_second = answer(&s, "second", "third@nancy.fr").await;
        assert_eq!(used_second.as_deref(), TAKEN, "{engine:?}");
        assert_eq!(used_second, fresh_second);
        // The reservation goes with the unconfirmed sign-ups, at the same age.
        s.clock
            .advance(s.registry.lifetimes().unconfirmed_ttl_secs + 1);
        assert_eq!(
            s.registry.purge_unconfirmed().await.unwrap(),
            2,
            "{engine:?}"
        );
        assert_eq!(
            answer(&s, "newlogin", "later@nancy.fr").await,
            None,
            "{engine:?}"
        );
        assert_eq!(answer(&s, "freshlogin", "later2@nancy.fr").await, None);
    }
}

/// Fresh sign-ups and sign-ups with the owner's address racing for the same logins:
/// each login ends up held once, by an account or by a reservation, never by both.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sign_ups_racing_for_a_login_hold_it_once() {
    for engine in ENGINES {
        let s = services(engine).await;
        owner(&s).await;
        let rounds = 12;
        let mut racers = Vec::new();
        for round in 0..rounds {
            let login = format!("racer{round}");
            for email in [format!("fresh{round}@nancy.fr"), "jeanne@nancy.fr".into()] {
                let registry = s.registry.clone();
                let login = login.clone();
                racers.push(tokio::spawn(async move {
                    registry.sign_up(&form(&login, &email)).await
                }));
            }
        }
        for racer in racers {
            match racer.await.unwrap() {
                Ok(()) | Err(Error::Invalid(_)) => {}
                Err(e) => panic!("{engine:?}: unexpected error: {e}"),
            }
        }
        let doubly_held: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM accounts a JOIN login_reservations r ON r.login_key = a.login_key",
        )
        .fetch_one(s.db.pool())
        .await
        .unwrap();
        assert_eq!(doubly_held, 0, "{engine:?}");
        let held: i64 = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM accounts WHERE login_key LIKE 'racer%') \
             + (SELECT COUNT(*) FROM login_reservations WHERE login_key LIKE 'racer%')",
        )
        .fetch_one(s.db.pool())
        .await
        .unwrap();
        assert_eq!(held, rounds, "{engine:?}: each login held once");
    }
}

#[tokio::test]
async fn sign_up_notices_to_an_address_in_use_are_rate_limited() {
    for engine in ENGINES {
        let s = services(engine).await;
        owner(&s).await;
        for n in 0..12 {
            assert_eq!(
                answer(&s, &format!("squat{n}"), "jeanne@nancy.fr").await,
                None,
                "{engine:?}: the answer never changes"
            );
        }
        let notices = outbox_kinds(&s.db, "jeanne@nancy.fr")
            .await
            .into_iter()
            .filter(|k| k == "signup_existing")
            .count();
        assert_eq!(notices, 1, "{engine:?}: 12 attempts, one email an hour");
        // Another address's owner still gets theirs.
        s.registry
            .sign_up(&form("pmartin", "paul@nancy.fr"))
            .await
            .unwrap();
        let token = token_in(&s.db, "paul@nancy.fr", "confirm_email").await;
        s.registry.confirm_email(&token).await.unwrap();
        assert_eq!(answer(&s, "squatpaul", "paul@nancy.fr").await, None);
        assert!(
            outbox_kinds(&s.db, "paul@nancy.fr")
                .await
                .contains(&"signup_existing".to_owned()),
            "{engine:?}"
        );
    }
}

/// Proposing an organisation of the list, in another case or in lookalike letters,
/// sends the person to the list; nothing is filed.
#[tokio::test]
async fn a_proposed_organisation_already_listed_is_pointed_at() {
    for engine in ENGINES {
        let s = services(engine).await;
        let mut f = form("alice", "alice@nancy.fr");
        f.organisation_id = String::new();
        for alike in [
            "  VILLE DE NANCY ",
            // A capital i for the l, hyphens for spaces, a full stop, a zero for an O.
            "VilIe de Nancy",
            "Ville-de-Nancy",
            "Ville de Nancy.",
            "Ville de Nanc\u{443}",
        ] {
            f.proposed_organisation = alike.into();
            match s.registry.sign_up(&f).await {
                Err(Error::Invalid(v)) => {
                    let got: Vec<_> = v.iter().map(|x| (x.field, x.code)).collect();
                    let expected = if alike.contains('\u{443}') {
                        "mixed_scripts"
                    } else {
                        "listed"
                    };
                    assert_eq!(
                        got,
                        [("proposed_organisation", expected)],
                        "{engine:?}: {alike:?}"
                    );
                    if expected == "listed" {
                        assert!(v.iter().any(|x| x.message.contains("« Ville de Nancy »")));
                    }
                }
                other => panic!("{engine:?}: {alike:?}: {other:?}"),
            }
        }
        assert!(outbox_kinds(&s.db, "alice@nancy.fr").await.is_empty());
        f.proposed_organisation = "Syndicat des eaux de Nancy".into();
        s.registry.sign_up(&f).await.unwrap();
    }
}

/// People proposing the same new organisation, spelt alike, are filed under one
/// proposal, which the team accepts or merges once; another name is another proposal.
#[tokio::test]
async fn proposals_of_the_same_new_organisation_are_one() {
    for engine in ENGINES {
        let s = services(engine).await;
        let mut organisation_of = Vec::new();
        for (login, proposed) in [
            ("alice", "Syndicat des eaux de Toul"),
            ("bruno", "  SYNDICAT des Eaux-de-Toul "),
            ("chloe", "Syndicat des eaux de TouI"),
            ("denis", "Syndicat des eaux de Metz"),
        ] {
            let mut f = form(login, &format!("{login}@toul.fr"));
            f.organisation_id = String::new();
            f.proposed_organisation = proposed.into();
            s.registry.sign_up(&f).await.unwrap();
            let org: String =
                sqlx::query_scalar("SELECT organisation_id FROM accounts WHERE login = $1")
                    .bind(login)
                    .fetch_one(s.db.pool())
                    .await
                    .unwrap();
            organisation_of.push(org);
        }
        assert_eq!(organisation_of[1], organisation_of[0], "{engine:?}");
        assert_eq!(organisation_of[2], organisation_of[0], "{engine:?}");
        assert_ne!(organisation_of[3], organisation_of[0], "{engine:?}");
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM organisations WHERE status = 'proposed' ORDER BY name",
        )
        .fetch_all(s.db.pool())
        .await
        .unwrap();
        assert_eq!(
            names,
            ["Syndicat des eaux de Metz", "Syndicat des eaux de Toul"],
            "{engine:?}: the first spelling is kept"
        );
    }
}

/// The name typed in the form is not in the email to the address nobody has confirmed
/// yet, first sent or sent again: a stranger could write anything there.
#[tokio::test]
async fn the_confirmation_email_greets_nobody_by_name() {
    for engine in ENGINES {
        let s = services(engine).await;
        let mut f = form("alice", "alice@nancy.fr");
        f.given_name = "Mauricette".into();
        s.registry.sign_up(&f).await.unwrap();
        s.clock.advance(3600);
        s.registry
            .send_confirmation_again("alice@nancy.fr")
            .await
            .unwrap();
        let bodies: Vec<String> = sqlx::query(
            "SELECT body_text FROM outbox WHERE recipient = 'alice@nancy.fr' AND kind = 'confirm_email'",
        )
        .fetch_all(s.db.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| r.get("body_text"))
        .collect();
        assert_eq!(bodies.len(), 2, "{engine:?}: sent, then sent again");
        for body in bodies {
            assert!(body.starts_with("Bonjour,"), "{engine:?}: {body}");
            assert!(!body.contains("Mauricette"), "{engine:?}: {body}");
            assert!(body.contains("« alice »"), "{engine:?}: the login is told");
        }
    }
}

#[tokio::test]
async fn sign_ups_from_one_address_are_limited_and_the_refused_one_files_nothing() {
    for engine in ENGINES {
        let s = services(engine).await;
        owner(&s).await;
        let registry = s.registry.clone().with_lifetimes(AccountLifetimes {
            signups_per_address_max: 3,
            ..AccountLifetimes::default()
        });
        let from = |login: &str, email: &str, address: &str| {
            let (registry, form) = (registry.clone(), form(login, email));
            let address = address.to_owned();
            async move { registry.sign_up_from(&form, &address).await }
        };
        // A form with errors counts nothing: the person corrects it.
        for n in 0..5 {
            let broken = from(&format!("typo{n}"), "not-an-address", "203.0.113.7").await;
            assert!(
                matches!(broken, Err(Error::Invalid(_))),
                "{engine:?}: {broken:?}"
            );
        }
        // Three filed, one of them with an address in use (counted the same).
        for (login, email) in [
            ("alice", "alice@nancy.fr"),
            ("squat", "jeanne@nancy.fr"),
            ("bruno", "bruno@nancy.fr"),
        ] {
            from(login, email, "203.0.113.7")
                .await
                .unwrap_or_else(|e| panic!("{engine:?}: {login} refused: {e}"));
        }
        let before = outbox_kinds(&s.db, "jeanne@nancy.fr").await;
        for (login, email) in [("carla", "carla@nancy.fr"), ("squat2", "jeanne@nancy.fr")] {
            match from(login, email, "203.0.113.7").await {
                Err(Error::TooManySignUps(secs)) => {
                    assert!((1..=3600).contains(&secs), "{engine:?}: {secs}");
                }
                other => panic!("{engine:?}: the fourth from one address gave {other:?}"),
            }
        }
        // Nothing filed and nothing sent for the refused ones, whatever the address.
        assert!(
            outbox_kinds(&s.db, "carla@nancy.fr").await.is_empty(),
            "{engine:?}"
        );
        assert_eq!(
            outbox_kinds(&s.db, "jeanne@nancy.fr").await,
            before,
            "{engine:?}"
        );
        let carla = sqlx::query("SELECT 1 AS x FROM accounts WHERE login_key = 'carla'")
            .fetch_optional(s.db.pool())
            .await
            .unwrap();
        assert!(
            carla.is_none(),
            "{engine:?}: no account for a refused sign-up"
        );
        // An IPv6 network counts as one address; another address is not held back;
        // the gRPC sign-up (an authenticated caller) is not counted here.
        for (n, address) in ["2001:db8:5:6::1", "2001:db8:5:6::2", "2001:db8:5:6:ffff::9"]
            .into_iter()
            .enumerate()
        {
            from(&format!("six{n}"), &format!("six{n}@nancy.fr"), address)
                .await
                .unwrap();
        }
        assert!(matches!(
            from("six9", "six9@nancy.fr", "2001:db8:5:6:1::1").await,
            Err(Error::TooManySignUps(_))
        ));
        from("carla", "carla@nancy.fr", "198.51.100.2")
            .await
            .unwrap();
        registry
            .sign_up(&form("dora", "dora@nancy.fr"))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_sign_up_over_an_unconfirmed_one_names_nobody_and_gives_the_purge_date() {
    for engine in ENGINES {
        let s = services(engine).await;
        let mut eve = form("eve", "jeanne@nancy.fr");
        eve.given_name = "Eve".into();
        s.registry.sign_up(&eve).await.unwrap();
        let created = s.registry.now();
        assert_eq!(answer(&s, "jdupont", "jeanne@nancy.fr").await, None);
        assert_eq!(
            outbox_kinds(&s.db, "jeanne@nancy.fr").await,
            ["confirm_email", "signup_unconfirmed"],
            "{engine:?}"
        );
        let body = last_mail(&s.db, "jeanne@nancy.fr", "signup_unconfirmed").await;
        assert!(body.starts_with("Bonjour,"), "{body}");
        assert!(!body.contains("Eve") && !body.contains("« eve »"), "{body}");
        assert!(body.contains("/signup/resend"), "{body}");
        let purge = dge_core::time::format_fr(created + 7 * 24 * 3600);
        assert!(body.contains(&purge), "{purge} in {body}");
    }
}

/// The sign-up form sent twice (back button, double click): one account, one email,
/// and the second answer is « login taken », as for anyone else trying that login
/// with any address: telling a repeat apart would confirm a guessed address.
#[tokio::test]
async fn a_repeated_sign_up_files_nothing_more_and_tells_nothing() {
    for engine in ENGINES {
        let s = services(engine).await;
        owner(&s).await;
        assert_eq!(answer(&s, "camille", "camille@nancy.fr").await, None);
        for (login, email) in [
            ("Camille", "CAMILLE@nancy.fr"),
            ("camille", "other@nancy.fr"),
        ] {
            assert_eq!(
                answer(&s, login, email).await.as_deref(),
                TAKEN,
                "{engine:?}: {login} {email}"
            );
        }
        assert_eq!(
            outbox_kinds(&s.db, "camille@nancy.fr").await,
            ["confirm_email"],
            "{engine:?}: no second email"
        );
        assert_eq!(count(&s, "accounts").await, 2, "{engine:?}");
        // The same with the owner's address (the login held by a reservation).
        assert_eq!(answer(&s, "squat", "jeanne@nancy.fr").await, None);
        for email in ["jeanne@nancy.fr", "other@nancy.fr"] {
            assert_eq!(
                answer(&s, "squat", email).await.as_deref(),
                TAKEN,
                "{engine:?}"
            );
        }
        assert_eq!(count(&s, "login_reservations").await, 1, "{engine:?}");
    }
}

async fn count(s: &Services, table: &str) -> i64 {
    sqlx::query(&format!("SELECT COUNT(*) AS n FROM {table}"))
        .fetch_one(s.db.pool())
        .await
        .unwrap()
        .get::<i64, _>("n")
}

/// The gRPC service over the registry, and an API token to call it with.
async fn grpc(s: &Services) -> (AccountRegistryService, String) {
    // 32 bytes of 7, base64: a fixed key-encryption key for the test's keys.
    let kek =
        KeyEncryptionKey::from_base64("BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=").unwrap();
    let clock = Arc::new(s.clock.clone());
    let keys = Keys::load_or_create(s.db.clone(), clock.clone(), kek)
        .await
        .unwrap();
    let auth = Authenticator::new(
        s.db.clone(),
        Arc::new(keys),
        clock,
        "http://127.0.0.1:8080".into(),
    );
    let token = create_api_token(&s.db, "portal", "", NOW).await.unwrap();
    (AccountRegistryService::new(s.registry.clone(), auth), token)
}

#[tokio::test]
async fn grpc_sign_up_with_an_organisation_and_a_proposal_is_refused_and_creates_nothing() {
    for engine in ENGINES {
        let s = services(engine).await;
        let (service, token) = grpc(&s).await;
        let mut request = Request::new(pb::SignUpRequest {
            given_name: "Camille".into(),
            family_name: "Martin".into(),
            email: "camille@nancy.fr".into(),
            phone: "06 12 34 56 78".into(),
            organisation_id: "ville-de-nancy".into(),
            proposed_organisation: "Syndicat des eaux de Nancy".into(),
            login: "cmartin".into(),
            password: PASSWORD.into(),
            password_confirmation: PASSWORD.into(),
            ..pb::SignUpRequest::default()
        });
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        let status = service.sign_up(request).await.unwrap_err();
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "{engine:?}: {status:?}"
        );
        let details = status.get_error_details();
        let violations = &details.bad_request().unwrap().field_violations;
        assert_eq!(violations.len(), 1, "{engine:?}: {violations:?}");
        assert_eq!(violations[0].field, "proposed_organisation");
        assert!(
            violations[0].description.starts_with("exclusive: ")
                && violations[0].description.ends_with("pas les deux."),
            "{violations:?}"
        );
        assert_eq!(count(&s, "accounts").await, 0, "{engine:?}");
        assert_eq!(
            count(&s, "organisations").await,
            1,
            "{engine:?}: the seeded one"
        );
        assert!(outbox_kinds(&s.db, "camille@nancy.fr").await.is_empty());
    }
}
