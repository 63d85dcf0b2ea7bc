//! A Redis that goes silent without closing its connections (a network fault, a
//! paused host): calls fail within their deadline instead of hanging, and everything
//! works again once it answers. The silence is a proxy on loopback in front of the
//! real Redis of `REDIS_URL` that stops passing bytes on while "frozen".

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use dge_store::ephemeral::{Ephemeral, Notice};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// `host:port` of the Redis of `REDIS_URL` (default: the loopback server).
fn redis_addr() -> String {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let rest = url.strip_prefix("redis://").expect("a redis:// URL");
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    rest.split('/').next().unwrap().to_owned()
}

/// A proxy to Redis that holds every byte, both ways, while `frozen` is set.
struct Proxy {
    url: String,
    frozen: Arc<AtomicBool>,
}

impl Proxy {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("redis://{}", listener.local_addr().unwrap());
        let frozen = Arc::new(AtomicBool::new(false));
        let upstream = redis_addr();
        let flag = frozen.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = TcpStream::connect(&upstream)
                    .await
                    .expect("Redis must answer on REDIS_URL (default 127.0.0.1:6379)");
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(pass_on(client_read, server_write, flag.clone()));
                tokio::spawn(pass_on(server_read, client_write, flag.clone()));
            }
        });
        Self { url, frozen }
    }

    fn freeze(&self, frozen: bool) {
        self.frozen.store(frozen, Ordering::SeqCst);
    }
}

async fn pass_on(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<AtomicBool>,
) {
    let mut buf = vec![0_u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while frozen.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

fn prefix() -> String {
    format!("dge-test:{}:", dge_core::new_id())
}

const DEADLINE: Duration = Duration::from_millis(300);

/// Retries `hit` until it works again (a rebuilt connection), for at most 10 s.
async fn hit_once_it_answers(store: &Ephemeral, key: &str) -> u64 {
    for _ in 0..100 {
        if let Ok(n) = store.hit(key, Duration::from_secs(60)).await {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("Redis never answered again through the thawed proxy");
}

/// A store reaching Redis through a fresh proxy, and one on the same keys reaching
/// it directly (another replica, on the good side of the fault).
async fn through_proxy_and_direct() -> (Proxy, Ephemeral, Ephemeral) {
    let proxy = Proxy::start().await;
    let prefix = prefix();
    let store = Ephemeral::redis_with_deadline(&proxy.url, &prefix, DEADLINE)
        .await
        .unwrap();
    let direct = Ephemeral::redis(&format!("redis://{}", redis_addr()), &prefix)
        .await
        .unwrap();
    (proxy, store, direct)
}

#[tokio::test]
async fn calls_to_a_silent_redis_fail_within_their_deadline_then_work_again() {
    let (proxy, store, direct) = through_proxy_and_direct().await;
    assert_eq!(store.hit("k", Duration::from_secs(60)).await.unwrap(), 1);

    proxy.freeze(true);
    // Each kind of call (a command, an atomic pipeline) gives up on its own; ten
    // times the deadline is only the test's guard against a call that hangs.
    let guard = DEADLINE * 10;
    let hit = tokio::time::timeout(guard, store.hit("k", Duration::from_secs(60))).await;
    assert!(matches!(hit, Ok(Err(_))), "a counter call answered {hit:?}");
    let put = tokio::time::timeout(guard, store.put("v", "x", Duration::from_secs(60))).await;
    assert!(matches!(put, Ok(Err(_))), "a write answered {put:?}");
    let take = tokio::time::timeout(guard, store.take("v")).await;
    assert!(matches!(take, Ok(Err(_))), "a take answered {take:?}");
    // The silence did not lose what was there: Redis itself kept the count.
    assert_eq!(direct.hit("k", Duration::from_secs(60)).await.unwrap(), 2);

    proxy.freeze(false);
    // (The calls held by the proxy may still reach Redis now, as a silent network
    // may deliver them late: a fresh key tells that calls work again.)
    assert_eq!(hit_once_it_answers(&store, "after").await, 1);
}

#[tokio::test]
async fn sessions_in_a_silent_redis_fail_within_their_deadline() {
    let proxy = Proxy::start().await;
    let store = Ephemeral::redis_with_deadline(&proxy.url, &prefix(), DEADLINE)
        .await
        .unwrap();
    let scratch = dge_testsupport::ScratchDb::sqlite("redis-silence");
    let db = dge_store::Db::connect(scratch.url(), 2).await.unwrap();
    db.migrate().await.unwrap();
    let sessions = dge_store::sessions::Sessions::new(db, &store);
    assert!(sessions.is_shared());
    proxy.freeze(true);
    let got = tokio::time::timeout(DEADLINE * 10, sessions.get("no-such-session", 0)).await;
    assert!(matches!(got, Ok(Err(_))), "a session read answered {got:?}");
    proxy.freeze(false);
}

#[tokio::test]
async fn notices_resume_with_a_resync_after_a_silence() {
    let (proxy, store, direct) = through_proxy_and_direct().await;
    let mut heard = store.subscribe();

    proxy.freeze(true);
    // The relay pings every five deadlines (1.5 s here) and gives up on a ping after
    // 5 s: within 6.5 s it has found the silence and tries a fresh connection (which
    // the proxy also holds). A notice sent meanwhile cannot reach it.
    tokio::time::sleep(Duration::from_secs(8)).await;
    direct.notify("rights", "account-1").await.unwrap();
    proxy.freeze(false);

    // Once Redis answers, the relay subscribes again and tells this replica to
    // reload everything, which covers the notice it missed; then notices flow.
    let resync = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let notice = heard.recv().await.unwrap();
            if notice.topic == "resync" {
                return notice;
            }
        }
    })
    .await
    .expect("a resync within 10 s of Redis answering again");
    assert_eq!(resync.payload, "");
    direct.notify("keys", "").await.unwrap();
    let next = tokio::time::timeout(Duration::from_secs(5), heard.recv())
        .await
        .expect("notices flow again")
        .unwrap();
    assert_eq!(
        next,
        Notice {
            topic: "keys".into(),
            payload: String::new()
        }
    );
}
