//! Brute-force throttling of password logins (issue 9), each case on the in-process
//! store and on Redis: two registries over one Redis act as two replicas.

use std::time::{Duration, Instant};

use dge_core::Secret;
use dge_registry::{LoginError, Registry, ThrottleSettings};
use dge_store::ephemeral::Ephemeral;
use sqlx::Row;

use crate::backends::{Engine, PASSWORD, Services, form, outbox_kinds, services, token_in};

fn secret(s: &str) -> Secret<String> {
    Secret::new(s.to_owned())
}

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// Small numbers so that the cases run fast: 1 free failure, 3 to lock, 1 s locks.
fn settings() -> ThrottleSettings {
    ThrottleSettings {
        free_failures: 1,
        delay_base_ms: 100,
        delay_max_ms: 400,
        lock_after: 3,
        address_lock_after: 100,
        window_secs: 60,
        lock_secs: 1,
        ..ThrottleSettings::default()
    }
}

#[derive(Clone, Copy, Debug)]
enum Backend {
    Local,
    Redis,
}

/// Two stores that are one shared state (Redis), or one in-process store twice.
async fn stores(backend: Backend) -> (Ephemeral, Ephemeral) {
    match backend {
        Backend::Local => {
            let one = Ephemeral::local("t:");
            (one.clone(), one)
        }
        Backend::Redis => {
            let prefix = format!("dge-test-throttle-{}:", uuid::Uuid::new_v4().simple());
            let a = Ephemeral::redis(&redis_url(), &prefix)
                .await
                .expect("Redis must answer on REDIS_URL (default 127.0.0.1:6379)");
            let b = Ephemeral::redis(&redis_url(), &prefix).await.unwrap();
            (a, b)
        }
    }
}

/// An active account `cmartin`, and two replicas of the registry.
async fn setup(backend: Backend) -> (Services, Registry, Registry) {
    let s = services(Engine::Sqlite).await;
    let email = "camille.martin@nancy.fr";
    s.registry.sign_up(&form("cmartin", email)).await.unwrap();
    let token = token_in(&s.db, email, "confirm_email").await;
    let account = s.registry.confirm_email(&token).await.unwrap();
    sqlx::query("UPDATE accounts SET status = 'active' WHERE id = $1")
        .bind(&account.id)
        .execute(s.db.pool())
        .await
        .unwrap();
    let (a, b) = stores(backend).await;
    let one = s.registry.clone().with_throttle(a, settings());
    let two = s.registry.clone().with_throttle(b, settings());
    (s, one, two)
}

async fn actions(s: &Services) -> Vec<String> {
    sqlx::query(
        "SELECT action FROM audit_events WHERE action LIKE 'login.%' ORDER BY created_at, id",
    )
    .fetch_all(s.db.pool())
    .await
    .unwrap()
    .iter()
    .map(|r| r.get::<String, _>("action"))
    .collect()
}

fn outcome(r: &Result<dge_registry::Account, LoginError>) -> Result<&str, &LoginError> {
    r.as_ref().map(|a| a.login.as_deref().unwrap_or_default())
}

async fn locks_then_the_lock_expires(backend: Backend) {
    let (s, one, two) = setup(backend).await;
    let wrong = secret("Pas-le-bon-mot-de-passe-1");
    // Failures alternate between the replicas, and between login and email: one count.
    let r = one.login("cmartin", &wrong, "203.0.113.9").await.unwrap();
    assert_eq!(outcome(&r), Err(&LoginError::BadCredentials));
    let r = two
        .login("Camille.Martin@nancy.fr", &wrong, "203.0.113.9")
        .await
        .unwrap();
    assert_eq!(outcome(&r), Err(&LoginError::BadCredentials));
    let r = one.login("cmartin", &wrong, "203.0.113.9").await.unwrap();
    assert_eq!(
        outcome(&r),
        Err(&LoginError::Locked),
        "{backend:?}: third failure locks"
    );
    // The right password does not open a locked account, on either replica.
    let r = two
        .login("cmartin", &secret(PASSWORD), "203.0.113.9")
        .await
        .unwrap();
    assert_eq!(outcome(&r), Err(&LoginError::Locked));
    // The owner is told once.
    assert_eq!(
        outbox_kinds(&s.db, "camille.martin@nancy.fr").await,
        ["confirm_email", "account_pending", "account_locked"]
    );
    // An unknown identifier gets exactly the same answers.
    for expected in [
        LoginError::BadCredentials,
        LoginError::BadCredentials,
        LoginError::Locked,
        LoginError::Locked,
    ] {
        let r = one.login("personne", &wrong, "198.51.100.4").await.unwrap();
        assert_eq!(
            outcome(&r),
            Err(&expected),
            "{backend:?}: unknown identifier"
        );
    }
    // Never for ever: once the lock expires the right password works again.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let r = two
        .login("cmartin", &secret(PASSWORD), "203.0.113.9")
        .await
        .unwrap();
    assert_eq!(outcome(&r), Ok("cmartin"), "{backend:?}: the lock expired");
    let got = actions(&s).await;
    for action in [
        "login.failed",
        "login.locked",
        "login.refused_locked",
        "login.succeeded",
    ] {
        assert!(
            got.iter().any(|a| a == action),
            "{backend:?}: {action} in {got:?}"
        );
    }
}

async fn a_known_address_and_an_administrator_get_past_the_lock(backend: Backend) {
    let (s, one, two) = setup(backend).await;
    let wrong = secret("Pas-le-bon-mot-de-passe-1");
    // The owner logs in from home; then someone elsewhere locks the account.
    let r = one
        .login("cmartin", &secret(PASSWORD), "192.0.2.10")
        .await
        .unwrap();
    assert_eq!(outcome(&r), Ok("cmartin"));
    for _ in 0..3 {
        let _ = two.login("cmartin", &wrong, "203.0.113.66").await.unwrap();
    }
    let r = two
        .login("cmartin", &secret(PASSWORD), "203.0.113.66")
        .await
        .unwrap();
    assert_eq!(
        outcome(&r),
        Err(&LoginError::Locked),
        "{backend:?}: attacker locked out"
    );
    // The owner's address, where the account logged in before, still gets in.
    let r = two
        .login("cmartin", &secret(PASSWORD), "192.0.2.10")
        .await
        .unwrap();
    assert_eq!(
        outcome(&r),
        Ok("cmartin"),
        "{backend:?}: owner not locked out"
    );
    // And the owner's right password lifted the lock: from a new address too.
    let r = one
        .login("cmartin", &secret(PASSWORD), "198.51.100.77")
        .await
        .unwrap();
    assert_eq!(outcome(&r), Ok("cmartin"), "{backend:?}: lock lifted");
    // Lock again, then an administrator lifts it on the other replica.
    for _ in 0..3 {
        let _ = one.login("cmartin", &wrong, "203.0.113.66").await.unwrap();
    }
    let r = one
        .login("cmartin", &secret(PASSWORD), "198.51.100.1")
        .await
        .unwrap();
    assert_eq!(outcome(&r), Err(&LoginError::Locked));
    let unlocked = two.unlock("cmartin", "admin").await.unwrap();
    assert_eq!(unlocked.and_then(|a| a.login).as_deref(), Some("cmartin"));
    let r = one
        .login("cmartin", &secret(PASSWORD), "198.51.100.1")
        .await
        .unwrap();
    assert_eq!(outcome(&r), Ok("cmartin"), "{backend:?}: unlocked");
    assert!(two.unlock("personne", "admin").await.unwrap().is_none());
    let unlocks: i64 = sqlx::query("SELECT COUNT(*) AS n FROM audit_events WHERE action = 'account.unlocked' AND actor = 'admin'")
        .fetch_one(s.db.pool())
        .await
        .unwrap()
        .get("n");
    assert_eq!(unlocks, 1);
}

async fn delays_grow_after_the_free_failures(backend: Backend) {
    let (s, _, _) = setup(backend).await;
    let (a, b) = stores(backend).await;
    let slow = ThrottleSettings {
        lock_after: 10,
        ..settings()
    };
    let one = s.registry.clone().with_throttle(a, slow.clone());
    let two = s.registry.clone().with_throttle(b, slow);
    let wrong = secret("Pas-le-bon-mot-de-passe-1");
    // One unknown identifier tried from three addresses on two replicas: the
    // identifier's count drives the delay, 0 then 100 ms then 200 ms on top of the hash.
    let started = Instant::now();
    let _ = one.login("x1", &wrong, "192.0.2.50").await.unwrap();
    let free = started.elapsed();
    let started = Instant::now();
    let _ = two.login("x1", &wrong, "192.0.2.51").await.unwrap();
    let second = started.elapsed();
    let started = Instant::now();
    let _ = one.login("x1", &wrong, "192.0.2.52").await.unwrap();
    let third = started.elapsed();
    assert!(
        second >= Duration::from_millis(100),
        "{backend:?}: {second:?}"
    );
    assert!(
        third >= Duration::from_millis(200),
        "{backend:?}: {third:?}"
    );
    assert!(third > free, "{backend:?}: {free:?} then {third:?}");
}

async fn spraying_from_one_address_locks_the_address(backend: Backend) {
    let (s, _, _) = setup(backend).await;
    let (a, b) = stores(backend).await;
    let spray = ThrottleSettings {
        lock_after: 10,
        address_lock_after: 3,
        ..settings()
    };
    let one = s.registry.clone().with_throttle(a, spray.clone());
    let two = s.registry.clone().with_throttle(b, spray);
    let wrong = secret("Pas-le-bon-mot-de-passe-1");
    for name in ["anne", "bruno"] {
        let r = one.login(name, &wrong, "203.0.113.200").await.unwrap();
        assert_eq!(outcome(&r), Err(&LoginError::BadCredentials));
    }
    // A successful login of the attacker's own does not clear the address's count.
    let r = two
        .login("cmartin", &secret(PASSWORD), "203.0.113.200")
        .await
        .unwrap();
    assert_eq!(outcome(&r), Ok("cmartin"));
    let _ = two.login("chloe", &wrong, "203.0.113.200").await.unwrap();
    // The address is locked for every account never logged into from it…
    let r = one
        .login("anne", &secret(PASSWORD), "203.0.113.200")
        .await
        .unwrap();
    assert_eq!(
        outcome(&r),
        Err(&LoginError::Locked),
        "{backend:?}: address locked"
    );
    // …but not for one that logged in from it before (people behind one NAT).
    let r = one
        .login("cmartin", &secret(PASSWORD), "203.0.113.200")
        .await
        .unwrap();
    assert_eq!(
        outcome(&r),
        Ok("cmartin"),
        "{backend:?}: a known account gets through the address lock"
    );
    let r = one
        .login("cmartin", &secret(PASSWORD), "192.0.2.77")
        .await
        .unwrap();
    assert_eq!(
        outcome(&r),
        Ok("cmartin"),
        "{backend:?}: other addresses unaffected"
    );
}

/// A registry with `throttle` on `backend` whose account `cmartin` has logged in from
/// `address`, which it therefore knows.
async fn known_at(
    backend: Backend,
    throttle: ThrottleSettings,
    address: &str,
) -> (Services, Registry) {
    let (s, _, _) = setup(backend).await;
    let (a, _) = stores(backend).await;
    let one = s.registry.clone().with_throttle(a, throttle);
    let r = one
        .login("cmartin", &secret(PASSWORD), address)
        .await
        .unwrap();
    assert_eq!(outcome(&r), Ok("cmartin"), "{backend:?}");
    (s, one)
}

async fn both_locks_stop_even_a_known_address(backend: Backend) {
    let both = ThrottleSettings {
        lock_after: 3,
        address_lock_after: 3,
        lock_secs: 60,
        ..settings()
    };
    let (_s, one) = known_at(backend, both, "203.0.113.201").await;
    let wrong = secret("Pas-le-bon-mot-de-passe-1");
    // Three failures on cmartin from its known address: account and address locked.
    for _ in 0..3 {
        let _ = one.login("cmartin", &wrong, "203.0.113.201").await.unwrap();
    }
    let r = one
        .login("cmartin", &secret(PASSWORD), "203.0.113.201")
        .await
        .unwrap();
    assert_eq!(
        outcome(&r),
        Err(&LoginError::Locked),
        "{backend:?}: both locks refuse a known address"
    );
}

/// From an address the account knows, wrong passwords are told as such while the
/// account is locked elsewhere (the lock spares that address, so the lock message would
/// be false there), and the owner is emailed once, not at each round of failures.
async fn a_known_address_is_told_of_wrong_passwords_and_the_lock_is_emailed_once(backend: Backend) {
    let long_lock = ThrottleSettings {
        delay_base_ms: 1,
        delay_max_ms: 2,
        lock_secs: 60,
        ..settings()
    };
    let (s, one) = known_at(backend, long_lock, "192.0.2.10").await;
    let wrong = secret("Pas-le-bon-mot-de-passe-1");
    for round in 0..8 {
        let r = one.login("cmartin", &wrong, "192.0.2.10").await.unwrap();
        assert_eq!(
            outcome(&r),
            Err(&LoginError::BadCredentials),
            "{backend:?}: failure {round} from the known address"
        );
    }
    // Elsewhere the account is locked, even with the right password.
    let r = one
        .login("cmartin", &secret(PASSWORD), "203.0.113.9")
        .await
        .unwrap();
    assert_eq!(outcome(&r), Err(&LoginError::Locked), "{backend:?}");
    assert_eq!(
        outbox_kinds(&s.db, "camille.martin@nancy.fr").await,
        ["confirm_email", "account_pending", "account_locked"],
        "{backend:?}: one lock email"
    );
}

/// Past the lock, failures from a known address keep the longest delay: the count
/// does not start again at the lock, which gave a guesser there free tries and short
/// delays at every round of `lock_after` failures.
async fn a_known_address_keeps_the_longest_delay_past_the_lock(backend: Backend) {
    let throttle = ThrottleSettings {
        lock_secs: 60,
        ..settings()
    };
    let (_s, one) = known_at(backend, throttle.clone(), "192.0.2.10").await;
    let wrong = secret("Pas-le-bon-mot-de-passe-1");
    let longest = Duration::from_millis(throttle.delay_max_ms);
    // The lock earned elsewhere, then at the known address itself.
    for (lock_from, case) in [("203.0.113.9", "elsewhere"), ("192.0.2.10", "there")] {
        for _ in 0..throttle.lock_after {
            let _ = one.login("cmartin", &wrong, lock_from).await.unwrap();
        }
        for round in 0..2 {
            let started = Instant::now();
            let r = one.login("cmartin", &wrong, "192.0.2.10").await.unwrap();
            let took = started.elapsed();
            assert_eq!(outcome(&r), Err(&LoginError::BadCredentials), "{backend:?}");
            assert!(
                took >= longest,
                "{backend:?}, locked {case}: failure {round} at the known address \
                 answered after {took:?}"
            );
        }
        // The owner there still gets in, and that forgives the failures and the lock.
        let r = one
            .login("cmartin", &secret(PASSWORD), "192.0.2.10")
            .await
            .unwrap();
        assert_eq!(outcome(&r), Ok("cmartin"), "{backend:?}, {case}");
        let r = one
            .login("cmartin", &secret(PASSWORD), "203.0.113.9")
            .await
            .unwrap();
        assert_eq!(
            outcome(&r),
            Ok("cmartin"),
            "{backend:?}, {case}: lock lifted"
        );
    }
}

#[tokio::test]
async fn local_a_known_address_keeps_the_longest_delay_past_the_lock() {
    a_known_address_keeps_the_longest_delay_past_the_lock(Backend::Local).await;
}

#[tokio::test]
async fn redis_a_known_address_keeps_the_longest_delay_past_the_lock() {
    a_known_address_keeps_the_longest_delay_past_the_lock(Backend::Redis).await;
}

#[tokio::test]
async fn local_a_known_address_is_told_of_wrong_passwords_and_the_lock_is_emailed_once() {
    a_known_address_is_told_of_wrong_passwords_and_the_lock_is_emailed_once(Backend::Local).await;
}

#[tokio::test]
async fn redis_a_known_address_is_told_of_wrong_passwords_and_the_lock_is_emailed_once() {
    a_known_address_is_told_of_wrong_passwords_and_the_lock_is_emailed_once(Backend::Redis).await;
}

/// A completed password reset proves control of the address: it lifts the account's
/// lock and forgets its failures, so that the new password works at once from the
/// address where the lock was earned. The address's own lock (spraying) stays.
async fn a_password_reset_lifts_the_account_lock(engine: Engine, backend: Backend) {
    let s = services(engine).await;
    let email = "camille.martin@nancy.fr";
    s.registry.sign_up(&form("cmartin", email)).await.unwrap();
    let token = token_in(&s.db, email, "confirm_email").await;
    s.registry.confirm_email(&token).await.unwrap();
    sqlx::query("UPDATE accounts SET status = 'active' WHERE login = 'cmartin'")
        .execute(s.db.pool())
        .await
        .unwrap();
    let (a, b) = stores(backend).await;
    let held = ThrottleSettings {
        address_lock_after: 5,
        lock_secs: 600,
        ..settings()
    };
    let one = s.registry.clone().with_throttle(a, held.clone());
    let two = s.registry.clone().with_throttle(b, held);
    let wrong = secret("Pas-le-bon-mot-de-passe-1");
    // Never logged in from there: three failures lock the account.
    for _ in 0..3 {
        let _ = one.login("cmartin", &wrong, "203.0.113.9").await.unwrap();
    }
    let r = one
        .login("cmartin", &secret(PASSWORD), "203.0.113.9")
        .await
        .unwrap();
    assert_eq!(outcome(&r), Err(&LoginError::Locked), "{backend:?}: locked");
    two.send_password_reset(email).await.unwrap();
    let link = token_in(&s.db, email, "password_reset").await;
    let new = secret("Quetsche-du-Sundgau-cd34-9?");
    two.reset_password(&link, &new, &new).await.unwrap();
    let r = one.login("cmartin", &new, "203.0.113.9").await.unwrap();
    assert_eq!(
        outcome(&r),
        Ok("cmartin"),
        "{engine:?}/{backend:?}: the reset lifted the lock"
    );
    // The failure count went with it: two more failures do not lock again.
    for _ in 0..2 {
        let r = one.login("cmartin", &wrong, "203.0.113.9").await.unwrap();
        assert_eq!(outcome(&r), Err(&LoginError::BadCredentials), "{backend:?}");
    }
    // The address's own count is not forgiven by a reset: its fifth failure, just
    // above, locked it for the accounts never used from there.
    let r = one
        .login("anne", &secret(PASSWORD), "203.0.113.9")
        .await
        .unwrap();
    assert_eq!(
        outcome(&r),
        Err(&LoginError::Locked),
        "{backend:?}: the address lock stays"
    );
}

#[tokio::test]
async fn a_password_reset_lifts_the_account_lock_on_both_backends() {
    a_password_reset_lifts_the_account_lock(Engine::Sqlite, Backend::Local).await;
    a_password_reset_lifts_the_account_lock(Engine::Postgres, Backend::Redis).await;
}

/// A right password writes to the store only when it has something to do: failures to
/// forgive, or a known-address mark missing, of the old kind ("1") or past half its life.
async fn a_right_password_writes_to_the_store_only_when_needed(backend: Backend) {
    let (s, _, _) = setup(backend).await;
    let (store, _) = stores(backend).await;
    let one = s.registry.clone().with_throttle(store.clone(), settings());
    let id: String = sqlx::query("SELECT id FROM accounts WHERE login = 'cmartin'")
        .fetch_one(s.db.pool())
        .await
        .unwrap()
        .get("id");
    let subject = dge_core::token::hash_token(&id);
    let address = "192.0.2.44";
    let known = format!(
        "login:known:{subject}:{}",
        dge_core::token::hash_token(address)
    );
    let failures = format!("login:fail:acct:{subject}");
    let known_secs = i64::try_from(settings().known_address_secs).unwrap();
    let now = || dge_core::clock::Clock::now(&s.clock);
    let mark = || async { store.get(&known).await.unwrap() };
    let log_in = || async {
        let r = one
            .login("cmartin", &secret(PASSWORD), address)
            .await
            .unwrap();
        assert_eq!(outcome(&r), Ok("cmartin"), "{backend:?}");
    };
    let renewed = || Some((now() + known_secs).to_string());

    log_in().await;
    let first = mark().await;
    assert_eq!(first, renewed(), "{backend:?}");
    // Within the first half of its life, the mark is left as it is.
    s.clock.advance(known_secs / 2 - 10);
    log_in().await;
    assert_eq!(mark().await, first, "{backend:?}");
    // Past it, written again.
    s.clock.advance(20);
    log_in().await;
    assert_eq!(mark().await, renewed(), "{backend:?}");
    // A mark of the old kind is written again.
    store
        .put(&known, "1", Duration::from_secs(3600))
        .await
        .unwrap();
    log_in().await;
    assert_eq!(mark().await, renewed(), "{backend:?}");
    // A failure is forgiven by the next right password.
    let r = one
        .login("cmartin", &secret("Pas-le-bon-mot-de-passe-1"), address)
        .await
        .unwrap();
    assert_eq!(outcome(&r), Err(&LoginError::BadCredentials));
    assert_eq!(store.get(&failures).await.unwrap().as_deref(), Some("1"));
    log_in().await;
    assert_eq!(store.get(&failures).await.unwrap(), None, "{backend:?}");
}

#[tokio::test]
async fn local_a_right_password_writes_to_the_store_only_when_needed() {
    a_right_password_writes_to_the_store_only_when_needed(Backend::Local).await;
}

#[tokio::test]
async fn redis_a_right_password_writes_to_the_store_only_when_needed() {
    a_right_password_writes_to_the_store_only_when_needed(Backend::Redis).await;
}

#[tokio::test]
async fn local_both_locks_stop_even_a_known_address() {
    both_locks_stop_even_a_known_address(Backend::Local).await;
}

#[tokio::test]
async fn redis_both_locks_stop_even_a_known_address() {
    both_locks_stop_even_a_known_address(Backend::Redis).await;
}

#[tokio::test]
async fn local_spraying_from_one_address_locks_the_address() {
    spraying_from_one_address_locks_the_address(Backend::Local).await;
}

#[tokio::test]
async fn redis_spraying_from_one_address_locks_the_address() {
    spraying_from_one_address_locks_the_address(Backend::Redis).await;
}

#[test]
fn the_delay_doubles_up_to_its_cap() {
    let t = dge_registry::Throttle::new(Ephemeral::local("t:"), settings());
    let ms: Vec<u128> = (0..7).map(|n| t.delay(n).as_millis()).collect();
    assert_eq!(ms, [0, 0, 100, 200, 400, 400, 400]);
    assert_eq!(t.delay(u64::MAX).as_millis(), 400);
}

#[tokio::test]
async fn local_locks_then_the_lock_expires() {
    locks_then_the_lock_expires(Backend::Local).await;
}

#[tokio::test]
async fn redis_locks_then_the_lock_expires() {
    locks_then_the_lock_expires(Backend::Redis).await;
}

#[tokio::test]
async fn local_a_known_address_and_an_administrator_get_past_the_lock() {
    a_known_address_and_an_administrator_get_past_the_lock(Backend::Local).await;
}

#[tokio::test]
async fn redis_a_known_address_and_an_administrator_get_past_the_lock() {
    a_known_address_and_an_administrator_get_past_the_lock(Backend::Redis).await;
}

#[tokio::test]
async fn local_delays_grow_after_the_free_failures() {
    delays_grow_after_the_free_failures(Backend::Local).await;
}

#[tokio::test]
async fn redis_delays_grow_after_the_free_failures() {
    delays_grow_after_the_free_failures(Backend::Redis).await;
}

/// Wrong current passwords on "change my password" count with the login failures of
/// the account: they lock it like a login would, and the owner is emailed.
async fn wrong_current_passwords_lock_like_logins(backend: Backend) {
    let (s, one, two) = setup(backend).await;
    let id = dge_registry::store::find_account(&s.db, "cmartin")
        .await
        .unwrap()
        .unwrap()
        .id;
    let new = secret("Quetsche-du-Sundgau-cd34-9?");
    let codes = |r: dge_registry::Result<()>| match r {
        Err(dge_registry::Error::Invalid(v)) => v.iter().map(|x| x.code).collect::<Vec<_>>(),
        other => panic!("{backend:?}: expected a refusal, got {other:?}"),
    };
    // Two wrong guesses on one replica, the third on the other: one count.
    for r in [&one, &one] {
        let got = r.change_password(&id, &secret("guess-1"), &new, &new).await;
        assert_eq!(codes(got), ["wrong"], "{backend:?}");
    }
    let third = two
        .change_password(&id, &secret("guess-2"), &new, &new)
        .await;
    assert_eq!(
        codes(third),
        ["locked"],
        "{backend:?}: locked at lock_after"
    );
    // Even the right one is refused during the lock, and the login is locked too.
    let right = one
        .change_password(&id, &secret(PASSWORD), &new, &new)
        .await;
    assert_eq!(codes(right), ["locked"], "{backend:?}");
    assert_eq!(
        one.login("cmartin", &secret(PASSWORD), "203.0.113.9")
            .await
            .unwrap()
            .err(),
        Some(LoginError::Locked)
    );
    assert!(
        outbox_kinds(&s.db, "camille.martin@nancy.fr")
            .await
            .contains(&"account_locked".to_owned()),
        "{backend:?}: the owner is told"
    );
    // The lock expires by itself (1 s here); then the right password works.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    one.change_password(&id, &secret(PASSWORD), &new, &new)
        .await
        .unwrap();
}

#[tokio::test]
async fn local_wrong_current_passwords_lock_like_logins() {
    wrong_current_passwords_lock_like_logins(Backend::Local).await;
}

#[tokio::test]
async fn redis_wrong_current_passwords_lock_like_logins() {
    wrong_current_passwords_lock_like_logins(Backend::Redis).await;
}
