//! Sign-ups with an address already in use: they must answer, and hold their login,
//! exactly like fresh ones, and must not flood the owner's mailbox.

use dge_registry::Error;

use crate::backends::{ENGINES, Services, form, last_mail, outbox_kinds, services, token_in};

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
