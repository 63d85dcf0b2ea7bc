//! The shared short-lived store, on Redis (two handles stand for two replicas) and
//! in-process. Redis comes from `REDIS_URL` (default: the loopback server); a
//! missing Redis fails these tests, it never skips them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use dge_store::ephemeral::{Ephemeral, Notice};

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A prefix of the test's own, so runs and cases never see each other's keys.
fn prefix() -> String {
    format!("dge-test:{}:", dge_core::new_id())
}

/// Two replicas sharing one Redis.
async fn redis_pair() -> (Ephemeral, Ephemeral) {
    let prefix = prefix();
    let a = Ephemeral::redis(&redis_url(), &prefix)
        .await
        .expect("Redis must answer on REDIS_URL (default 127.0.0.1:6379)");
    let b = Ephemeral::redis(&redis_url(), &prefix).await.unwrap();
    (a, b)
}

fn local_pair() -> (Ephemeral, Ephemeral) {
    let a = Ephemeral::local(&prefix());
    (a.clone(), a)
}

async fn counts_hits_in_a_window(a: Ephemeral, b: Ephemeral) {
    let window = Duration::from_millis(400);
    assert_eq!(a.hit("login:alice", window).await.unwrap(), 1);
    assert_eq!(b.hit("login:alice", window).await.unwrap(), 2);
    assert_eq!(a.hit("login:alice", window).await.unwrap(), 3);
    assert_eq!(a.hit("login:bob", window).await.unwrap(), 1);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        b.hit("login:alice", window).await.unwrap(),
        1,
        "a new window starts"
    );
    b.forget("login:alice").await.unwrap();
    assert_eq!(a.hit("login:alice", window).await.unwrap(), 1, "forgotten");
}

async fn takes_a_value_exactly_once(a: Ephemeral, b: Ephemeral) {
    a.put("code:1", "payload", Duration::from_secs(30))
        .await
        .unwrap();
    let takers = (0..16).map(|i| {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        tokio::spawn(async move { store.take("code:1").await.unwrap() })
    });
    let mut won = Vec::new();
    for taker in takers {
        if let Some(value) = taker.await.unwrap() {
            won.push(value);
        }
    }
    assert_eq!(won, vec!["payload".to_owned()]);
    assert_eq!(b.take("code:1").await.unwrap(), None);
}

async fn expired_values_are_gone(a: Ephemeral, b: Ephemeral) {
    a.put("code:2", "x", Duration::from_millis(100))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(b.take("code:2").await.unwrap(), None);
}

async fn reads_several_values_at_once(a: Ephemeral, b: Ephemeral) {
    a.put("many:1", "one", Duration::from_secs(60))
        .await
        .unwrap();
    a.put("many:3", "three", Duration::from_millis(50))
        .await
        .unwrap();
    a.hit("many:4", Duration::from_secs(60)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let got = b
        .get_many(&["many:1", "many:2", "many:3", "many:4"])
        .await
        .unwrap();
    // In order; a missing or expired key is None; a counter reads as its count.
    assert_eq!(got, vec![Some("one".into()), None, None, Some("1".into())]);
    assert_eq!(b.get_many(&["many:2"]).await.unwrap(), vec![None]);
}

async fn forgets_several_values_at_once(a: Ephemeral, b: Ephemeral) {
    a.put("gone:1", "one", Duration::from_secs(60))
        .await
        .unwrap();
    a.hit("gone:2", Duration::from_secs(60)).await.unwrap();
    a.put("gone:3", "kept", Duration::from_secs(60))
        .await
        .unwrap();
    // A key that is not there is no error; nothing to forget is no error either.
    b.forget_many(&["gone:1", "gone:2", "gone:missing"])
        .await
        .unwrap();
    b.forget_many(&[]).await.unwrap();
    assert_eq!(
        a.get_many(&["gone:1", "gone:2", "gone:3"]).await.unwrap(),
        vec![None, None, Some("kept".into())]
    );
    assert_eq!(a.hit("gone:2", Duration::from_secs(60)).await.unwrap(), 1);
}

async fn notices_reach_every_replica(a: Ephemeral, b: Ephemeral) {
    let mut on_a = a.subscribe();
    let mut on_b = b.subscribe();
    a.notify("keys", "").await.unwrap();
    b.notify("rights", "account-7").await.unwrap();
    for receiver in [&mut on_a, &mut on_b] {
        let mut seen = Vec::new();
        while seen.len() < 2 {
            let notice = tokio::time::timeout(Duration::from_secs(2), receiver.recv())
                .await
                .expect("a notice within 2 s")
                .unwrap();
            seen.push(notice);
        }
        seen.sort_by(|x, y| x.topic.cmp(&y.topic));
        assert_eq!(
            seen,
            vec![
                Notice {
                    topic: "keys".into(),
                    payload: String::new()
                },
                Notice {
                    topic: "rights".into(),
                    payload: "account-7".into()
                },
            ]
        );
    }
}

#[tokio::test]
async fn redis_counts_hits_in_a_window() {
    let (a, b) = redis_pair().await;
    assert!(a.is_shared());
    counts_hits_in_a_window(a, b).await;
}

#[tokio::test]
async fn local_counts_hits_in_a_window() {
    let (a, b) = local_pair();
    assert!(!a.is_shared());
    counts_hits_in_a_window(a, b).await;
}

#[tokio::test]
async fn redis_takes_a_value_exactly_once() {
    let (a, b) = redis_pair().await;
    takes_a_value_exactly_once(a, b).await;
}

#[tokio::test]
async fn local_takes_a_value_exactly_once() {
    let (a, b) = local_pair();
    takes_a_value_exactly_once(a, b).await;
}

#[tokio::test]
async fn redis_expired_values_are_gone() {
    let (a, b) = redis_pair().await;
    expired_values_are_gone(a, b).await;
}

#[tokio::test]
async fn local_expired_values_are_gone() {
    let (a, b) = local_pair();
    expired_values_are_gone(a, b).await;
}

#[tokio::test]
async fn redis_reads_several_values_at_once() {
    let (a, b) = redis_pair().await;
    reads_several_values_at_once(a, b).await;
}

#[tokio::test]
async fn local_reads_several_values_at_once() {
    let (a, b) = local_pair();
    reads_several_values_at_once(a, b).await;
}
#[tokio::test]
async fn redis_forgets_several_values_at_once() {
    let (a, b) = redis_pair().await;
    forgets_several_values_at_once(a, b).await;
}
#[tokio::test]
async fn local_forgets_several_values_at_once() {
    let (a, b) = local_pair();
    forgets_several_values_at_once(a, b).await;
}

#[tokio::test]
async fn redis_notices_reach_every_replica() {
    let (a, b) = redis_pair().await;
    notices_reach_every_replica(a, b).await;
}

#[tokio::test]
async fn local_notices_reach_every_replica() {
    let (a, b) = local_pair();
    notices_reach_every_replica(a, b).await;
}

#[tokio::test]
async fn prefixes_keep_deployments_apart() {
    let one = Ephemeral::redis(&redis_url(), &prefix()).await.unwrap();
    let other = Ephemeral::redis(&redis_url(), &prefix()).await.unwrap();
    one.put("k", "v", Duration::from_secs(5)).await.unwrap();
    assert_eq!(other.take("k").await.unwrap(), None);
    assert_eq!(one.take("k").await.unwrap(), Some("v".into()));
}

/// A TCP relay to Redis that can be cut: while cut, it ends every connection that
/// goes through it and closes new ones at once, as a network fault would.
struct Gate {
    addr: std::net::SocketAddr,
    open: std::sync::Arc<std::sync::atomic::AtomicBool>,
    cut: tokio::sync::watch::Sender<u64>,
}

impl Gate {
    async fn start(target: String) -> Self {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let open = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (cut, _) = tokio::sync::watch::channel(0_u64);
        let (gate_open, cuts) = (open.clone(), cut.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !gate_open.load(Ordering::Acquire) {
                    continue; // dropped: closed at once
                }
                let target = target.clone();
                let mut cut = cuts.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Self { addr, open, cut }
    }

    fn cut(&self) {
        self.open.store(false, std::sync::atomic::Ordering::Release);
        self.cut.send_modify(|n| *n += 1);
    }

    fn reopen(&self) {
        self.open.store(true, std::sync::atomic::Ordering::Release);
    }
}

/// `host:port` of `REDIS_URL`.
fn redis_addr() -> String {
    let url = redis_url();
    let rest = url.strip_prefix("redis://").unwrap_or(&url);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest).to_owned()
}

/// A replica whose notice Redis did not take owes the others a `resync`: without
/// it, their `WatchRights` streams would never learn what the notice said.
#[tokio::test]
async fn a_notice_redis_refused_is_followed_by_a_resync_of_every_replica() {
    let prefix = prefix();
    let gate = Gate::start(redis_addr()).await;
    let a = Ephemeral::redis(&format!("redis://{}", gate.addr), &prefix)
        .await
        .expect("Redis must answer on REDIS_URL (default 127.0.0.1:6379)");
    let b = Ephemeral::redis(&redis_url(), &prefix).await.unwrap();
    let mut heard = b.subscribe();
    a.notify("rights", "before").await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), heard.recv())
        .await
        .expect("the first notice")
        .unwrap();
    assert_eq!(first.payload, "before");

    gate.cut();
    let refused = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if a.notify("rights", "lost").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(refused.is_ok(), "a notice went through a cut connection");
    // Nothing told `b` yet.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        heard.try_recv().is_err(),
        "b heard something while a was cut off"
    );

    gate.reopen();
    let resync = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let notice = heard.recv().await.unwrap();
            assert_ne!(notice.payload, "lost", "the lost notice itself came back");
            if notice.topic == "resync" {
                return notice;
            }
        }
    })
    .await
    .expect("b told to resync once Redis took notices from a again");
    assert_eq!(resync.payload, "");
}
