//! Federated accounts on both backends: each case runs on SQLite and on a fresh
//! PostgreSQL database (`DATABASE_URL`, default the loopback `test` server). A
//! missing PostgreSQL fails the cases; it never skips them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use dge_core::clock::ManualClock;
use dge_mailer::{MailSettings, Outbox};
use dge_store::Db;
use dge_testsupport::ScratchDb;
use sqlx::Row;

use super::Proof;
use crate::domain::profile::Profile;
use crate::{Broker, BrokerError, Outcome, default_providers};

const NOW: i64 = 1_800_000_000;

#[derive(Debug, Clone, Copy)]
enum Engine {
    Sqlite,
    Postgres,
}

const ENGINES: [Engine; 2] = [Engine::Sqlite, Engine::Postgres];

async fn fresh(engine: Engine) -> (Db, ScratchDb) {
    let scratch = match engine {
        Engine::Sqlite => ScratchDb::sqlite("broker"),
        Engine::Postgres => ScratchDb::postgres("broker").await,
    };
    let db = Db::connect(scratch.url(), 4).await.expect("connect");
    db.migrate().await.expect("migrate");
    for sql in [
        "INSERT INTO organisations (id, name, name_key, siret, trusted, status, email_domains, created_at, updated_at) \
         VALUES ('region-grand-est', 'Région Grand Est', 'région grand est', '20005226700016', 1, 'active', 'grandest.fr', 0, 0)",
        "INSERT INTO modules (name, label, created_at) VALUES ('communautes', 'Communautés', 0)",
        "INSERT INTO rights (name, module, label, created_at) VALUES ('communautes:member', 'communautes', 'Membre', 0)",
        "INSERT INTO accounts (id, kind, login, login_key, email, email_key, given_name, family_name, password_hash, \
         status, created_at, updated_at) VALUES ('local-1', 'local', 'claire', 'claire', 'claire@nancy.fr', \
         'claire@nancy.fr', 'Claire', 'Martin', '$argon2id$fake', 'active', 0, 0)",
    ] {
        sqlx::query(sql).execute(db.pool()).await.expect("seed");
    }
    (db, scratch)
}

/// The broker on a fresh database, its clock, and the guard that removes the database.
async fn broker(engine: Engine) -> (Broker, ManualClock, ScratchDb) {
    let clock = ManualClock::new(NOW);
    let outbox = Outbox::new(MailSettings {
        portal_name: "DataGrandEst".into(),
        home_url: "https://www.datagrandest.fr".into(),
        support_email: "contact@datagrandest.fr".into(),
        from: "DataGrandEst <no-reply@datagrandest.fr>".into(),
    });
    let (db, scratch) = fresh(engine).await;
    let broker = Broker::new(
        db,
        Arc::new(clock.clone()),
        default_providers(),
        "http://127.0.0.1:8080".into(),
        outbox,
    );
    (broker, clock, scratch)
}

fn agent(sub: &str, email: &str, siret: Option<&str>) -> Profile {
    Profile {
        subject: sub.into(),
        email: email.into(),
        given_name: "Jeanne".into(),
        family_name: "Dupont".into(),
        siret: siret.map(str::to_owned),
        organisation_label: Some("DREAL Grand Est".into()),
        ..Profile::default()
    }
}

async fn settle(b: &Broker, profile: &Profile) -> Outcome {
    let p = &b.providers()[0];
    b.settle(p, profile, "header.payload.signature", None)
        .await
        .unwrap()
}

/// The token of the link offer `profile` gets (its address is an account's).
async fn offer_token(b: &Broker, profile: &Profile) -> String {
    match settle(b, profile).await {
        Outcome::LinkOffered(offer) => offer.token.expose().clone(),
        Outcome::LoggedIn(_) => panic!("expected a link offer, got a login"),
    }
}

async fn logged_in(b: &Broker, profile: &Profile) -> String {
    match settle(b, profile).await {
        Outcome::LoggedIn(login) => login.account_id,
        Outcome::LinkOffered(_) => panic!("expected a login, got a link offer"),
    }
}

async fn one_string(b: &Broker, sql: &str, bind: &str) -> Vec<String> {
    sqlx::query(sql)
        .bind(bind)
        .fetch_all(b.db.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get::<String, _>(0).unwrap())
        .collect()
}

#[tokio::test]
async fn a_new_identity_gets_an_active_account_with_no_rights() {
    for engine in ENGINES {
        let (b, _, _database) = broker(engine).await;
        let id = logged_in(&b, &agent("s1", "jeanne@dreal.fr", Some("13002526500013"))).await;
        let status = one_string(&b, "SELECT status FROM accounts WHERE id = $1", &id).await;
        assert_eq!(status, ["active"], "{engine:?}");
        let grants = one_string(
            &b,
            "SELECT right_name FROM grants WHERE account_id = $1",
            &id,
        )
        .await;
        assert!(grants.is_empty(), "{engine:?}");
        let org = one_string(
            &b,
            "SELECT o.status FROM organisations o JOIN accounts a ON a.organisation_id = o.id WHERE a.id = $1",
            &id,
        )
        .await;
        assert_eq!(org, ["proposed"], "{engine:?}");
    }
}

#[tokio::test]
async fn a_trusted_siret_takes_the_trusted_path() {
    for engine in ENGINES {
        let (b, _, _database) = broker(engine).await;
        let id = logged_in(
            &b,
            &agent("s1", "jeanne@grandest.fr", Some("20005226700016")),
        )
        .await;
        let grants = one_string(
            &b,
            "SELECT right_name FROM grants WHERE account_id = $1",
            &id,
        )
        .await;
        assert_eq!(grants, ["communautes:member"], "{engine:?}");
    }
}

#[tokio::test]
async fn the_same_sub_refreshes_the_profile_even_with_a_new_email() {
    for engine in ENGINES {
        let (b, clock, _database) = broker(engine).await;
        let id = logged_in(&b, &agent("s1", "jeanne@dreal.fr", None)).await;
        clock.advance(60);
        let mut changed = agent("s1", "jeanne.dupont@dreal.fr", None);
        changed.family_name = "Dupont-Weber".into();
        assert_eq!(logged_in(&b, &changed).await, id, "{engine:?}");
        let row = one_string(
            &b,
            "SELECT email || ' ' || family_name FROM accounts WHERE id = $1",
            &id,
        )
        .await;
        assert_eq!(row, ["jeanne.dupont@dreal.fr Dupont-Weber"], "{engine:?}");
        let audit = one_string(
            &b,
            "SELECT detail FROM audit_events WHERE subject = $1 AND action = 'account.profile_refreshed'",
            &id,
        )
        .await;
        assert_eq!(audit, ["changed=family_name,email"], "{engine:?}");
    }
}

#[tokio::test]
async fn an_email_taken_by_another_account_is_not_moved_onto_it() {
    for engine in ENGINES {
        let (b, _, _database) = broker(engine).await;
        let id = logged_in(&b, &agent("s1", "jeanne@dreal.fr", None)).await;
        // Upstream now says the address of Claire's local account.
        assert_eq!(
            logged_in(&b, &agent("s1", "claire@nancy.fr", None)).await,
            id
        );
        let email = one_string(&b, "SELECT email FROM accounts WHERE id = $1", &id).await;
        assert_eq!(email, ["jeanne@dreal.fr"], "{engine:?}");
    }
}

#[tokio::test]
async fn a_matching_email_offers_a_link_and_creates_nothing() {
    for engine in ENGINES {
        let (b, _, _database) = broker(engine).await;
        let Outcome::LinkOffered(offer) = settle(&b, &agent("s9", "Claire@Nancy.fr", None)).await
        else {
            panic!("expected a link offer on {engine:?}");
        };
        assert!(offer.has_password, "{engine:?}");
        let count = one_string(
            &b,
            "SELECT CAST(COUNT(*) AS TEXT) FROM accounts WHERE id <> $1",
            "local-1",
        )
        .await;
        assert_eq!(count, ["0"], "{engine:?}");
        let token = offer.token.expose().clone();
        // A code was emailed; a wrong one is refused and counted.
        b.send_link_code(&token).await.unwrap();
        let mail = one_string(
            &b,
            "SELECT body_text FROM outbox WHERE recipient = $1 AND kind = 'link_code'",
            "claire@nancy.fr",
        )
        .await;
        let code = mail[0]
            .split(|c: char| !c.is_ascii_digit())
            .find(|w| w.len() == 6)
            .expect("a six-digit code in the email")
            .to_owned();
        let wrong = if code == "000000" { "111111" } else { "000000" };
        assert!(matches!(
            b.check_link_code(&token, wrong).await,
            Err(BrokerError::WrongCode)
        ));
        b.check_link_code(&token, &code).await.unwrap();
        let login = b
            .accept_offer(&token, "local-1", Proof::EmailedCode)
            .await
            .unwrap();
        assert_eq!(login.account_id, "local-1");
        // Used up: the offer cannot be accepted twice.
        assert!(matches!(
            b.accept_offer(&token, "local-1", Proof::EmailedCode).await,
            Err(BrokerError::BadOffer)
        ));
        assert_eq!(
            logged_in(&b, &agent("s9", "claire@nancy.fr", None)).await,
            "local-1"
        );
    }
}

#[tokio::test]
async fn an_offer_dies_after_five_wrong_proofs() {
    for engine in ENGINES {
        let (b, _, _database) = broker(engine).await;
        let token = offer_token(&b, &agent("s9", "claire@nancy.fr", None)).await;
        for _ in 0..5 {
            b.offer_failed(&token).await.unwrap();
        }
        assert!(matches!(
            b.pending_offer(&token).await,
            Err(BrokerError::BadOffer)
        ));
        assert!(matches!(
            b.accept_offer(&token, "local-1", Proof::Password).await,
            Err(BrokerError::BadOffer)
        ));
    }
}

#[tokio::test]
async fn a_suspended_account_is_refused_through_its_upstream_and_cannot_be_linked() {
    for engine in ENGINES {
        let (b, _, _database) = broker(engine).await;
        let jeanne = agent("s1", "jeanne@dreal.fr", None);
        let id = logged_in(&b, &jeanne).await;
        // An offer to link a new identity to Claire's account, made before she is
        // suspended.
        let token = offer_token(&b, &agent("s9", "claire@nancy.fr", None)).await;
        for account in [id.as_str(), "local-1"] {
            sqlx::query("UPDATE accounts SET status = 'suspended' WHERE id = $1")
                .bind(account)
                .execute(b.db.pool())
                .await
                .unwrap();
        }

        let p = &b.providers()[0];
        let renamed = Profile {
            family_name: "Dupont-Weber".into(),
            ..jeanne.clone()
        };
        let refused = b
            .settle(p, &renamed, "header.payload.signature", None)
            .await;
        assert!(
            matches!(refused, Err(BrokerError::Suspended)),
            "{engine:?}: {refused:?}"
        );
        let name = one_string(&b, "SELECT family_name FROM accounts WHERE id = $1", &id).await;
        assert_eq!(name, ["Dupont"], "{engine:?}: nothing refreshed");

        b.send_link_code(&token).await.unwrap();
        let refused = b.accept_offer(&token, "local-1", Proof::EmailedCode).await;
        assert!(
            matches!(refused, Err(BrokerError::Suspended)),
            "{engine:?}: {refused:?}"
        );
        let links = one_string(
            &b,
            "SELECT subject FROM federated_links WHERE account_id = $1",
            "local-1",
        )
        .await;
        assert!(links.is_empty(), "{engine:?}: not linked");
        // Both refusals are in the audit log, as a refused password login is.
        for account in [id.as_str(), "local-1"] {
            let details = one_string(
                &b,
                "SELECT detail FROM audit_events WHERE subject = $1 AND action = 'login.refused_inactive'",
                account,
            )
            .await;
            assert_eq!(details.len(), 1, "{engine:?}: {account}: {details:?}");
            assert!(
                details[0].starts_with("upstream=") && details[0].ends_with("status=suspended"),
                "{engine:?}: {details:?}"
            );
        }

        // Reactivated, the same identity logs in again.
        sqlx::query("UPDATE accounts SET status = 'active' WHERE id = $1")
            .bind(&id)
            .execute(b.db.pool())
            .await
            .unwrap();
        assert_eq!(logged_in(&b, &jeanne).await, id, "{engine:?}");
    }
}

/// An address of an account that is not active (unconfirmed, pending, rejected) is
/// neither linked nor logged into, whatever the proof: the person is told which.
#[tokio::test]
async fn an_account_not_active_is_neither_offered_nor_linked() {
    for engine in ENGINES {
        let (b, _, _database) = broker(engine).await;
        // An offer made while active, then the account goes back to pending.
        let token = offer_token(&b, &agent("s9", "claire@nancy.fr", None)).await;
        b.send_link_code(&token).await.unwrap();
        for status in ["unconfirmed", "pending", "rejected"] {
            sqlx::query("UPDATE accounts SET status = $1 WHERE id = 'local-1'")
                .bind(status)
                .execute(b.db.pool())
                .await
                .unwrap();
            match settle_err(&b, &agent("s10", "claire@nancy.fr", None)).await {
                BrokerError::NotActive(s) => assert_eq!(s.as_str(), status, "{engine:?}"),
                other => panic!("{engine:?} {status}: {other:?}"),
            }
            match b.accept_offer(&token, "local-1", Proof::EmailedCode).await {
                Err(BrokerError::NotActive(s)) => assert_eq!(s.as_str(), status, "{engine:?}"),
                other => panic!("{engine:?} {status}: {other:?}"),
            }
        }
        let links = one_string(
            &b,
            "SELECT CAST(COUNT(*) AS TEXT) FROM federated_links WHERE account_id = $1",
            "local-1",
        )
        .await;
        assert_eq!(links, ["0"], "{engine:?}: nothing linked");
        let told = one_string(
            &b,
            "SELECT CAST(COUNT(*) AS TEXT) FROM outbox WHERE kind = 'federated_link_added' AND recipient = $1",
            "claire@nancy.fr",
        )
        .await;
        assert_eq!(told, ["0"], "{engine:?}");
    }
}

async fn settle_err(b: &Broker, profile: &Profile) -> BrokerError {
    let p = &b.providers()[0];
    match b.settle(p, profile, "header.payload.signature", None).await {
        Err(e) => e,
        Ok(_) => panic!("expected a refusal"),
    }
}

/// Two browsers holding offers for the same identity: the second one to be accepted
/// logs in to the account the first linked, instead of failing on the duplicate.
#[tokio::test]
async fn a_second_offer_for_a_linked_identity_logs_in() {
    for engine in ENGINES {
        let (b, _, _database) = broker(engine).await;
        let mut tokens = Vec::new();
        for _ in 0..2 {
            tokens.push(offer_token(&b, &agent("s9", "claire@nancy.fr", None)).await);
        }
        for token in &tokens {
            let login = b
                .accept_offer(token, "local-1", Proof::Password)
                .await
                .unwrap();
            assert_eq!(login.account_id, "local-1", "{engine:?}");
        }
        let links = one_string(
            &b,
            "SELECT CAST(COUNT(*) AS TEXT) FROM federated_links WHERE account_id = $1",
            "local-1",
        )
        .await;
        assert_eq!(links, ["1"], "{engine:?}");
    }
}

/// An offer emails at most five codes: each one sent counts as an attempt.
#[tokio::test]
async fn an_offer_sends_a_bounded_number_of_codes() {
    for engine in ENGINES {
        let (b, _, _database) = broker(engine).await;
        let token = offer_token(&b, &agent("s9", "claire@nancy.fr", None)).await;
        for _ in 0..5 {
            b.send_link_code(&token).await.unwrap();
        }
        assert!(matches!(
            b.send_link_code(&token).await,
            Err(BrokerError::BadOffer)
        ));
        let sent = one_string(
            &b,
            "SELECT CAST(COUNT(*) AS TEXT) FROM outbox WHERE kind = 'link_code' AND recipient = $1",
            "claire@nancy.fr",
        )
        .await;
        assert_eq!(sent, ["5"], "{engine:?}");
    }
}

/// The address an upstream asserts is looked up as a sign-up stores it: fullwidth
/// letters or an accented domain find the account of the plain address.
#[tokio::test]
async fn an_upstream_address_in_another_spelling_finds_its_account() {
    for engine in ENGINES {
        let (b, _, _database) = broker(engine).await;
        let email = crate::domain::profile::account_email("ｃｌａｉｒｅ@ｎａｎｃｙ.ｆｒ").unwrap();
        assert_eq!(email, "claire@nancy.fr");
        assert!(
            matches!(
                settle(&b, &agent("s9", &email, None)).await,
                Outcome::LinkOffered(_)
            ),
            "{engine:?}"
        );
    }
}
