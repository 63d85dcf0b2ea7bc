//! Two-step verification (issue 9) on SQLite and PostgreSQL: enrolment, codes with
//! skew and without replay, recovery codes, throttling, disabling, and the sealed
//! secret.

use dge_authz::keys::KeyEncryptionKey;
use dge_core::Secret;
use dge_registry::mfa::{self, CodeError, PendingLogin};
use dge_registry::{Registry, ThrottleSettings};
use dge_store::ephemeral::Ephemeral;
use sqlx::Row;

use crate::backends::{
    ENGINES, Engine, NOW, PASSWORD, Services, form, logged_in_to_module, outbox_kinds, services,
    token_in,
};
use dge_store::sessions::EndingSession;

const EMAIL: &str = "camille.martin@nancy.fr";

fn kek() -> KeyEncryptionKey {
    KeyEncryptionKey::from_base64("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap()
}

/// An active account `cmartin`; the registry with the sealing key and a throttle that
/// locks at the third failure.
async fn setup(engine: Engine) -> (Services, Registry, String) {
    let s = services(engine).await;
    s.registry.sign_up(&form("cmartin", EMAIL)).await.unwrap();
    let token = token_in(&s.db, EMAIL, "confirm_email").await;
    let account = s.registry.confirm_email(&token).await.unwrap();
    sqlx::query("UPDATE accounts SET status = 'active' WHERE id = $1")
        .bind(&account.id)
        .execute(s.db.pool())
        .await
        .unwrap();
    let registry = s
        .registry
        .clone()
        .with_throttle(
            Ephemeral::local("t:"),
            ThrottleSettings {
                free_failures: 1,
                delay_base_ms: 10,
                delay_max_ms: 20,
                lock_after: 3,
                lock_secs: 60,
                ..ThrottleSettings::default()
            },
        )
        .with_mfa_key(kek());
    (s, registry, account.id)
}

fn secret_of(enrolment: &mfa::Enrolment) -> Vec<u8> {
    mfa::decode_base32(enrolment.secret_base32.expose()).unwrap()
}

fn step(s: &Services) -> i64 {
    use dge_core::Clock;
    s.clock.now() / 30
}

/// A code wrong at every step the check accepts now (one either side): "000000" is
/// right for a random secret about three times in a million.
fn wrong_code(secret: &[u8], s: &Services) -> String {
    let now = step(s);
    let right: Vec<String> = (now - 1..=now + 1)
        .map(|t| mfa::code_at(secret, t))
        .collect();
    ["000000", "111111", "222222", "333333"]
        .into_iter()
        .find(|c| !right.iter().any(|r| r == c))
        .unwrap_or("444444")
        .to_owned()
}

async fn audit(s: &Services, id: &str) -> Vec<String> {
    sqlx::query("SELECT action FROM audit_events WHERE subject = $1 AND action LIKE 'mfa.%' ORDER BY created_at, id")
        .bind(id)
        .fetch_all(s.db.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<String, _>("action"))
        .collect()
}

async fn enrolled(engine: Engine) -> (Services, Registry, String, Vec<u8>, Vec<Secret<String>>) {
    let (s, r, id) = setup(engine).await;
    let e = r.start_mfa_enrolment(&id, "DataGrandEst").await.unwrap();
    let secret = secret_of(&e);
    let codes = r
        .confirm_mfa_enrolment(&id, &mfa::code_at(&secret, step(&s)))
        .await
        .unwrap();
    (s, r, id, secret, codes)
}

/// A password login answers with what the rest of the login needs, read with the
/// account after the password check: the same two-step state and epoch as the
/// separate reads it spares.
#[tokio::test]
async fn a_password_login_answers_with_the_two_step_state_and_epoch_of_the_account() {
    for engine in ENGINES {
        let (s, r, id) = setup(engine).await;
        let password = Secret::new(PASSWORD.to_owned());
        let login = async |r: &Registry| {
            r.login_with_state("cmartin", &password, "192.0.2.7")
                .await
                .unwrap()
                .unwrap()
        };
        let state = login(&r).await;
        assert_eq!(state.account.id, id, "{engine:?}");
        assert!(!state.mfa.enabled && !state.mfa.required, "{engine:?}");
        assert_eq!(state.mfa, r.mfa_state(&id).await.unwrap(), "{engine:?}");
        let epoch = dge_store::sessions::account_epoch(&s.db, &id)
            .await
            .unwrap();
        assert_eq!(Some(state.sessions_epoch), epoch, "{engine:?}");

        // Enrolment ends every session: the epoch grows, and the login sees it.
        let e = r.start_mfa_enrolment(&id, "DataGrandEst").await.unwrap();
        let codes = r
            .confirm_mfa_enrolment(&id, &mfa::code_at(&secret_of(&e), step(&s)))
            .await
            .unwrap();
        sqlx::query("UPDATE accounts SET is_admin = 1 WHERE id = $1")
            .bind(&id)
            .execute(s.db.pool())
            .await
            .unwrap();
        let state = login(&r).await;
        assert!(state.mfa.enabled && state.mfa.required, "{engine:?}");
        assert_eq!(
            state.mfa.recovery_codes_left,
            codes.len() as i64,
            "{engine:?}"
        );
        assert_eq!(state.mfa, r.mfa_state(&id).await.unwrap(), "{engine:?}");
        assert!(Some(state.sessions_epoch) > epoch, "{engine:?}");
        assert_eq!(
            Some(state.sessions_epoch),
            dge_store::sessions::account_epoch(&s.db, &id)
                .await
                .unwrap(),
            "{engine:?}"
        );
    }
}

#[tokio::test]
async fn enrolment_needs_a_right_code_then_seals_the_secret_and_ends_sessions() {
    for engine in ENGINES {
        let (s, r, id) = setup(engine).await;
        assert!(!r.mfa_state(&id).await.unwrap().enabled);
        let e = r.start_mfa_enrolment(&id, "DataGrandEst").await.unwrap();
        let secret = secret_of(&e);
        assert!(
            e.uri
                .expose()
                .starts_with("otpauth://totp/DataGrandEst:cmartin?secret=")
        );
        // Stored sealed: neither the raw bytes nor the base32 form are in the row.
        let stored: String =
            sqlx::query_scalar("SELECT secret_sealed FROM account_mfa WHERE account_id = $1")
                .bind(&id)
                .fetch_one(s.db.pool())
                .await
                .unwrap();
        assert!(stored.starts_with("a256gcm:"), "{engine:?}");
        assert!(!stored.contains(&e.secret_base32.expose().replace(' ', "")));
        // A wrong code leaves it off.
        let wrong = r.confirm_mfa_enrolment(&id, &wrong_code(&secret, &s)).await;
        assert!(
            matches!(wrong, Err(dge_registry::Error::Invalid(_))),
            "{engine:?}"
        );
        assert!(!r.mfa_state(&id).await.unwrap().enabled);
        // Another registry key cannot open it.
        let other = s.registry.clone().with_mfa_key(
            KeyEncryptionKey::from_base64("AQECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap(),
        );
        assert!(matches!(
            other
                .confirm_mfa_enrolment(&id, &mfa::code_at(&secret, step(&s)))
                .await,
            Err(dge_registry::Error::Sealing)
        ));
        // A session, to see it end.
        sqlx::query("INSERT INTO sessions (id_hash, account_id, auth_time, expires_at, created_at) VALUES ('h', $1, $2, $3, $2)")
            .bind(&id)
            .bind(NOW)
            .bind(NOW + 3600)
            .execute(s.db.pool())
            .await
            .unwrap();
        let used = logged_in_to_module(&s, &id).await;
        let codes = r
            .confirm_mfa_enrolment(&id, &mfa::code_at(&secret, step(&s)))
            .await
            .unwrap();
        assert_eq!(codes.len(), mfa::RECOVERY_CODES);
        // The module of the session that ends is told (back-channel logout).
        let told = vec![EndingSession {
            hash: used,
            clients: vec!["portal".into()],
        }];
        assert_eq!(s.ended.take(), [(id.clone(), told)], "{engine:?}");
        let state = r.mfa_state(&id).await.unwrap();
        assert!(state.enabled && !state.required);
        assert_eq!(state.recovery_codes_left, 10);
        let sessions: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM sessions WHERE account_id = $1")
                .bind(&id)
                .fetch_one(s.db.pool())
                .await
                .unwrap();
        assert_eq!(sessions, 0, "{engine:?}: enrolment ends the sessions");
        // Recovery codes are stored as digests only.
        let hashes: Vec<String> = sqlx::query_scalar(
            "SELECT code_hash FROM account_recovery_codes WHERE account_id = $1",
        )
        .bind(&id)
        .fetch_all(s.db.pool())
        .await
        .unwrap();
        assert_eq!(hashes.len(), 10);
        assert!(
            hashes
                .iter()
                .all(|h| !codes.iter().any(|c| h.contains(c.expose().as_str())))
        );
        assert!(
            outbox_kinds(&s.db, EMAIL)
                .await
                .contains(&"mfa_enabled".to_owned())
        );
        assert_eq!(audit(&s, &id).await, ["mfa.failed", "mfa.enrolled"]);
        // A second enrolment is refused while it is on.
        assert!(r.start_mfa_enrolment(&id, "DataGrandEst").await.is_err());
    }
}

#[tokio::test]
async fn codes_are_accepted_with_one_step_of_skew_and_never_twice() {
    for engine in ENGINES {
        let (s, r, id, secret, _) = enrolled(engine).await;
        // The enrolment code's step is used: the same code again is refused.
        assert_eq!(
            r.verify_mfa(&id, &mfa::code_at(&secret, step(&s)))
                .await
                .unwrap(),
            Err(CodeError::Wrong),
            "{engine:?}: replay"
        );
        s.clock.advance(30);
        // One step late is accepted.
        assert_eq!(
            r.verify_mfa(&id, &mfa::code_at(&secret, step(&s) - 1))
                .await
                .unwrap(),
            Err(CodeError::Wrong),
            "{engine:?}: the previous step was already used by the enrolment"
        );
        s.clock.advance(30);
        assert_eq!(
            r.verify_mfa(&id, &mfa::code_at(&secret, step(&s) - 1))
                .await
                .unwrap(),
            Ok(())
        );
        // One step early is accepted; then the current one is older than it: refused.
        assert_eq!(
            r.verify_mfa(&id, &mfa::code_at(&secret, step(&s) + 1))
                .await
                .unwrap(),
            Ok(())
        );
        assert_eq!(
            r.verify_mfa(&id, &mfa::code_at(&secret, step(&s)))
                .await
                .unwrap(),
            Err(CodeError::Wrong)
        );
        // Two steps away is too far (failures 2 and 3 since the last success, the
        // refused replay above being the first): the third locks the account...
        s.clock.advance(300);
        assert_eq!(
            r.verify_mfa(&id, &mfa::code_at(&secret, step(&s) + 2))
                .await
                .unwrap(),
            Err(CodeError::Wrong)
        );
        assert_eq!(
            r.verify_mfa(&id, &mfa::code_at(&secret, step(&s) - 2))
                .await
                .unwrap(),
            Err(CodeError::Locked)
        );
        // ... and then even a right code is refused.
        assert_eq!(
            r.verify_mfa(&id, &mfa::code_at(&secret, step(&s)))
                .await
                .unwrap(),
            Err(CodeError::Locked)
        );
        // The email says codes, not passwords: the password was right.
        let kinds = outbox_kinds(&s.db, EMAIL).await;
        assert!(
            kinds.contains(&"account_code_locked".to_owned())
                && !kinds.contains(&"account_locked".to_owned()),
            "{engine:?}: {kinds:?}"
        );
        let failed = audit(&s, &id)
            .await
            .iter()
            .filter(|a| *a == "mfa.failed")
            .count();
        assert!(failed >= 3, "{engine:?}: {failed}");
    }
}

#[tokio::test]
async fn a_right_password_does_not_forgive_wrong_codes() {
    // Each new login's password step must not reset the count of wrong codes, or
    // whoever knows the password could guess codes without end.
    for engine in ENGINES {
        let (s, r, id, secret, _) = enrolled(engine).await;
        let password = Secret::new(PASSWORD.to_owned());
        s.clock.advance(300);
        let mut outcomes = Vec::new();
        for _ in 0..3 {
            assert!(
                r.login("cmartin", &password, "192.0.2.7")
                    .await
                    .unwrap()
                    .is_ok()
            );
            outcomes.push(r.verify_mfa(&id, &wrong_code(&secret, &s)).await.unwrap());
        }
        assert_eq!(
            outcomes,
            [
                Err(CodeError::Wrong),
                Err(CodeError::Wrong),
                Err(CodeError::Locked)
            ],
            "{engine:?}: the third wrong code, across three password steps, locks"
        );
        // The email says codes, not passwords: the password was right.
        let kinds = outbox_kinds(&s.db, EMAIL).await;
        assert!(
            kinds.contains(&"account_code_locked".to_owned())
                && !kinds.contains(&"account_locked".to_owned()),
            "{engine:?}: {kinds:?}"
        );
        // Locked: even a right password then the right code do not pass.
        assert!(
            r.login("cmartin", &password, "198.51.100.4")
                .await
                .unwrap()
                .is_ok()
        );
        assert_eq!(
            r.verify_mfa(&id, &mfa::code_at(&secret, step(&s)))
                .await
                .unwrap(),
            Err(CodeError::Locked),
            "{engine:?}"
        );
        // Once an administrator lifts the lock, the right code works again.
        assert!(r.unlock("cmartin", "admin").await.unwrap().is_some());
        assert_eq!(
            r.verify_mfa(&id, &mfa::code_at(&secret, step(&s)))
                .await
                .unwrap(),
            Ok(())
        );
        assert_eq!(
            r.verify_mfa(&id, &wrong_code(&secret, &s)).await.unwrap(),
            Err(CodeError::Wrong)
        );
    }
}

#[tokio::test]
async fn password_guesses_elsewhere_do_not_keep_the_owner_from_the_code_step() {
    // Someone guessing the password from another address locks the password step
    // there; the owner, at an address the account knows, still passes both steps.
    for engine in ENGINES {
        let (s, r, id, secret, _) = enrolled(engine).await;
        let password = Secret::new(PASSWORD.to_owned());
        s.clock.advance(300);
        assert!(
            r.login("cmartin", &password, "192.0.2.7")
                .await
                .unwrap()
                .is_ok()
        );
        assert_eq!(
            r.verify_mfa(&id, &mfa::code_at(&secret, step(&s)))
                .await
                .unwrap(),
            Ok(())
        );
        let wrong = Secret::new("Not-the-password-42!".to_owned());
        let mut last = Ok(());
        for _ in 0..3 {
            last = r
                .login("cmartin", &wrong, "203.0.113.9")
                .await
                .unwrap()
                .map(|_| ());
        }
        assert!(
            matches!(last, Err(dge_registry::LoginError::Locked)),
            "{engine:?}: the guesser is locked out"
        );
        assert!(
            r.login("cmartin", &password, "203.0.113.9")
                .await
                .unwrap()
                .is_err()
        );
        s.clock.advance(30);
        assert!(
            r.login("cmartin", &password, "192.0.2.7")
                .await
                .unwrap()
                .is_ok()
        );
        assert_eq!(
            r.verify_mfa(&id, &mfa::code_at(&secret, step(&s)))
                .await
                .unwrap(),
            Ok(()),
            "{engine:?}: the owner logs in"
        );
    }
}

#[tokio::test]
async fn a_recovery_code_works_once() {
    for engine in ENGINES {
        let (s, r, id, _, codes) = enrolled(engine).await;
        let code = codes[3].expose().to_uppercase().replace('-', " ");
        assert_eq!(r.verify_mfa(&id, &code).await.unwrap(), Ok(()));
        assert_eq!(r.mfa_state(&id).await.unwrap().recovery_codes_left, 9);
        assert_eq!(
            r.verify_mfa(&id, &code).await.unwrap(),
            Err(CodeError::Wrong),
            "{engine:?}"
        );
        assert!(
            audit(&s, &id)
                .await
                .contains(&"mfa.recovery_code_used".to_owned())
        );
        // The owner is told once, with how many codes are left.
        let told: Vec<String> = sqlx::query_scalar(
            "SELECT body_text FROM outbox WHERE recipient = $1 AND kind = 'mfa_recovery_code_used'",
        )
        .bind(EMAIL)
        .fetch_all(s.db.pool())
        .await
        .unwrap();
        assert_eq!(told.len(), 1, "{engine:?}");
        assert!(
            told[0].contains("Il vous reste 9 codes de secours."),
            "{}",
            told[0]
        );
    }
}

#[tokio::test]
async fn disabling_needs_the_password_and_a_code_and_administrators_cannot() {
    for engine in ENGINES {
        let (s, r, id, secret, codes) = enrolled(engine).await;
        s.clock.advance(60);
        let pw = Secret::new(PASSWORD.to_owned());
        let wrong_pw = Secret::new("Pas-le-bon-mot-de-passe-1".to_owned());
        assert!(
            r.disable_mfa(&id, &wrong_pw, &mfa::code_at(&secret, step(&s)))
                .await
                .is_err()
        );
        assert!(
            r.disable_mfa(&id, &pw, &wrong_code(&secret, &s))
                .await
                .is_err()
        );
        assert!(r.mfa_state(&id).await.unwrap().enabled, "{engine:?}");
        // An administrator must keep it.
        sqlx::query("UPDATE accounts SET is_admin = 1 WHERE id = $1")
            .bind(&id)
            .execute(s.db.pool())
            .await
            .unwrap();
        let refused = r.disable_mfa(&id, &pw, codes[0].expose()).await;
        let Err(dge_registry::Error::Invalid(v)) = refused else {
            panic!("{refused:?}")
        };
        assert_eq!(v.iter().next().unwrap().code, "required_for_admins");
        sqlx::query("UPDATE accounts SET is_admin = 0 WHERE id = $1")
            .bind(&id)
            .execute(s.db.pool())
            .await
            .unwrap();
        // Forget the failures above, then the right pair turns it off.
        let fresh = s.registry.clone().with_mfa_key(kek());
        fresh
            .disable_mfa(&id, &pw, &mfa::code_at(&secret, step(&s)))
            .await
            .unwrap();
        let state = fresh.mfa_state(&id).await.unwrap();
        assert!(!state.enabled && state.recovery_codes_left == 0);
        assert!(
            outbox_kinds(&s.db, EMAIL)
                .await
                .contains(&"mfa_disabled".to_owned())
        );
        assert_eq!(audit(&s, &id).await.last().unwrap(), "mfa.disabled");
    }
}

#[tokio::test]
async fn a_waiting_login_is_completed_once() {
    // The services hold the database, which the waiting login now reads.
    let (_services, r, id) = setup(Engine::Sqlite).await;
    let token = r
        .begin_second_step(&PendingLogin {
            account_id: id.clone(),
            req: "abc".into(),
            upstream: None,
            upstream_id_token: None,
            epoch: None,
        })
        .await
        .unwrap();
    assert_eq!(
        r.pending_second_step(&token)
            .await
            .unwrap()
            .unwrap()
            .account_id,
        id
    );
    assert!(r.pending_second_step("forged").await.unwrap().is_none());
    assert_eq!(r.end_second_step(&token).await.unwrap().unwrap().req, "abc");
    assert!(r.end_second_step(&token).await.unwrap().is_none());
}

/// A login waiting for its code is dropped when everything of the account ends
/// meanwhile (a reset, a suspension then a reactivation…): the code step cannot open
/// a session on the strength of a password typed before.
#[tokio::test]
async fn a_waiting_login_dies_with_everything_else_of_the_account() {
    for engine in ENGINES {
        let (s, r, id) = setup(engine).await;
        let pending = PendingLogin {
            account_id: id.clone(),
            req: String::new(),
            upstream: None,
            upstream_id_token: None,
            epoch: None,
        };
        let kept = r.begin_second_step(&pending).await.unwrap();
        let dropped = r.begin_second_step(&pending).await.unwrap();
        assert!(r.pending_second_step(&kept).await.unwrap().is_some());
        let mut conn = s.db.pool().acquire().await.unwrap();
        dge_store::sessions::end_all_in(&mut conn, &id)
            .await
            .unwrap();
        drop(conn);
        assert!(
            r.pending_second_step(&kept).await.unwrap().is_none(),
            "{engine:?}"
        );
        assert!(
            r.end_second_step(&dropped).await.unwrap().is_none(),
            "{engine:?}"
        );
        // A login begun after it is fine.
        let fresh = r.begin_second_step(&pending).await.unwrap();
        assert!(
            r.end_second_step(&fresh).await.unwrap().is_some(),
            "{engine:?}"
        );
        // While the account is suspended the waiting login is kept, for the page to say
        // why it is refused; reactivated (everything ended again), it is gone.
        let waiting = r.begin_second_step(&pending).await.unwrap();
        for (status, kept) in [("suspended", true), ("active", false)] {
            sqlx::query(
                "UPDATE accounts SET status = $1, sessions_epoch = sessions_epoch + 1 WHERE id = $2",
            )
            .bind(status)
            .bind(&id)
            .execute(s.db.pool())
            .await
            .unwrap();
            let found = r.pending_second_step(&waiting).await.unwrap().is_some();
            assert_eq!(found, kept, "{engine:?} {status}");
        }
    }
}
