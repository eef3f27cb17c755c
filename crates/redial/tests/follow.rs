//! A pool that follows a name, driven by an injected resolver (no DNS, no
//! root): members for new addresses, drained members for addresses that
//! left (their queued bytes delivered or handed back), a failed or empty
//! lookup that keeps the last good set, recovery, and a member's failure
//! that brings the next lookup forward. Real loopback servers throughout.
//! `follow_dns.rs` runs the same against a real DNS server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redial::{CloseReason, Event, EventKind, Follow, Manager, Pool, PoolError, Resolver, State};
use support::wait_until;
use support::TestServer;

const LONG: Duration = Duration::from_secs(20);

/// What the injected resolver answers: addresses, or an error.
#[derive(Clone)]
struct Dns(Arc<Mutex<Result<Vec<SocketAddr>, String>>>);

impl Dns {
    fn new() -> Dns {
        Dns(Arc::new(Mutex::new(Ok(Vec::new()))))
    }
    fn set(&self, addrs: &[SocketAddr]) {
        *self.0.lock().unwrap() = Ok(addrs.to_vec());
    }
    fn fail(&self, why: &str) {
        *self.0.lock().unwrap() = Err(why.into());
    }
    fn resolver(&self) -> Resolver {
        let state = self.0.clone();
        Resolver::from_fn(move |_host, _port| {
            let answer = state.lock().unwrap().clone();
            async move { answer.map_err(std::io::Error::other) }
        })
    }
}

/// Every member's endpoint, sorted.
fn addrs(pool: &Pool) -> Vec<String> {
    let mut v: Vec<String> = pool
        .connections()
        .iter()
        .map(|c| c.endpoint().to_string())
        .collect();
    v.sort();
    v
}

fn names(servers: &[&TestServer]) -> Vec<String> {
    let mut v: Vec<String> = servers.iter().map(|s| s.addr.to_string()).collect();
    v.sort();
    v
}

/// Collects the manager's events in the background.
fn record(cm: &Manager) -> Arc<Mutex<Vec<Event>>> {
    let log: Arc<Mutex<Vec<Event>>> = Arc::default();
    let mut events = cm.events();
    let l = log.clone();
    tokio::spawn(async move {
        while let Some(e) = events.recv().await {
            l.lock().unwrap().push(e);
        }
    });
    log
}

fn count(log: &Mutex<Vec<Event>>, f: impl Fn(&EventKind) -> bool) -> usize {
    log.lock().unwrap().iter().filter(|e| f(&e.kind)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_additions_removals_failures_and_recovery() {
    let a = TestServer::sink_on("127.0.0.1").await;
    let b = TestServer::sink_on("127.0.0.1").await;
    let c = TestServer::sink_on("127.0.0.1").await;
    let d = TestServer::sink_on("127.0.0.1").await;
    let dns = Dns::new();
    dns.set(&[a.addr, b.addr]);
    let cm = Manager::new();
    let log = record(&cm);
    let unsent = Arc::new(AtomicU64::new(0));
    let closed: Arc<Mutex<Vec<(SocketAddr, CloseReason)>>> = Arc::default();
    let (u, cl) = (unsent.clone(), closed.clone());
    let follow = Follow::new("cache.test:11211")
        .every(Duration::from_millis(100))
        .resolver(dns.resolver());
    let pool = cm
        .create_pool_following("fleet", follow, move |addr| {
            let (u, cl) = (u.clone(), cl.clone());
            redial::handler().on_close(move |close| {
                u.fetch_add(close.unsent().len() as u64, Ordering::SeqCst);
                cl.lock().unwrap().push((addr, close.reason().clone()));
            })
        })
        .unwrap();

    // Two addresses: two members, both live.
    tokio::time::timeout(LONG, pool.wait_live(2)).await.unwrap();
    assert_eq!(addrs(&pool), names(&[&a, &b]));

    // A third address: a third member.
    dns.set(&[a.addr, b.addr, c.addr]);
    tokio::time::timeout(LONG, pool.wait_live(3)).await.unwrap();
    assert_eq!(addrs(&pool), names(&[&a, &b, &c]));

    // `a` leaves the name while its member has bytes queued: they reach
    // `a` or are handed back, and the member closes as disconnected.
    let member_a = pool
        .connections()
        .into_iter()
        .find(|m| m.endpoint().to_string() == a.addr.to_string())
        .unwrap();
    let sent: u64 = 4 << 20;
    for _ in 0..64 {
        member_a.send(vec![7u8; (sent / 64) as usize]).unwrap();
    }
    dns.set(&[b.addr, c.addr]);
    wait_until("a's member closed", LONG, || {
        member_a.state() == State::Closed
    })
    .await;
    wait_until("a's close reported", LONG, || {
        !closed.lock().unwrap().is_empty()
    })
    .await;
    assert_eq!(
        *closed.lock().unwrap(),
        [(a.addr, CloseReason::Disconnected)]
    );
    wait_until("a received what was not handed back", LONG, || {
        a.received() + unsent.load(Ordering::SeqCst) == sent
    })
    .await;
    assert_eq!(addrs(&pool), names(&[&b, &c]));
    for _ in 0..100 {
        assert_ne!(
            pool.pick().unwrap().id(),
            member_a.id(),
            "a drained member was picked"
        );
    }

    // The lookup fails, then answers nothing: the members stay.
    let failed_before = count(&log, |k| matches!(k, EventKind::ResolveFailed { .. }));
    dns.fail("SERVFAIL");
    wait_until("failed lookups reported", LONG, || {
        count(&log, |k| matches!(k, EventKind::ResolveFailed { .. })) >= failed_before + 2
    })
    .await;
    dns.set(&[]);
    wait_until("empty answers reported", LONG, || {
        count(&log, |k| {
            matches!(k, EventKind::ResolveFailed { kept: 2, .. })
        }) >= failed_before + 4
    })
    .await;
    assert_eq!(addrs(&pool), names(&[&b, &c]));
    assert_eq!(pool.live(), 2);

    // Recovery, with a new address.
    dns.set(&[b.addr, c.addr, d.addr]);
    tokio::time::timeout(LONG, pool.wait_live(3)).await.unwrap();
    assert_eq!(addrs(&pool), names(&[&b, &c, &d]));
    // Each member was announced (the event may trail its connection).
    wait_until("four members announced", LONG, || {
        count(&log, |k| matches!(k, EventKind::MemberAdded { .. })) == 4
    })
    .await;
    assert_eq!(
        count(&log, |k| matches!(k, EventKind::MemberDraining { .. })),
        1
    );
    pool.disconnect().await;
    assert!(pool.connections().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_failure_brings_the_next_lookup_forward() {
    let mut a = TestServer::sink_on("127.0.0.1").await;
    let b = TestServer::sink_on("127.0.0.1").await;
    let dns = Dns::new();
    dns.set(&[a.addr, b.addr]);
    let cm = Manager::new();
    // The schedule alone would not look again within the test.
    let follow = Follow::new("cache.test:11211")
        .per_address(2)
        .every(Duration::from_secs(3600))
        .min_gap(Duration::from_millis(50))
        .resolver(dns.resolver());
    let pool = cm
        .create_pool_following("fleet", follow, |_| redial::handler())
        .unwrap();
    tokio::time::timeout(LONG, pool.wait_live(4)).await.unwrap();
    // `a` moves away: its server goes, the name no longer lists it.
    dns.set(&[b.addr]);
    a.down().await;
    wait_until("a's members drained", LONG, || {
        addrs(&pool) == [b.addr.to_string(), b.addr.to_string()]
    })
    .await;
    pool.disconnect().await;
}

#[tokio::test]
async fn a_target_without_a_port_is_refused() {
    let cm = Manager::new();
    let err = cm
        .create_pool_following("p", Follow::new("cache.svc"), |_| redial::handler())
        .unwrap_err();
    assert!(matches!(err, PoolError::CannotFollow { .. }), "{err}");
    assert!(cm.get_pool("p").is_none(), "the pool was left registered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_all_stops_following() {
    let a = TestServer::sink_on("127.0.0.1").await;
    let lookups = Arc::new(AtomicU64::new(0));
    let l = lookups.clone();
    let addr = a.addr;
    let resolver = Resolver::from_fn(move |_, _| {
        l.fetch_add(1, Ordering::SeqCst);
        async move { Ok(vec![addr]) }
    });
    let cm = Manager::new();
    let follow = Follow::new("cache.test:11211")
        .every(Duration::from_millis(20))
        .resolver(resolver);
    let pool = cm
        .create_pool_following("fleet", follow, |_| redial::handler())
        .unwrap();
    tokio::time::timeout(LONG, pool.wait_live(1)).await.unwrap();
    wait_until("a few lookups", LONG, || {
        lookups.load(Ordering::SeqCst) >= 3
    })
    .await;
    cm.disconnect_all().await;
    // At most the lookup in flight at the call finishes; then none (at
    // 20 ms a running follower would make about ten more here). Neither
    // has an event to wait for: a settling pause, then a quiet window.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let after = lookups.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(lookups.load(Ordering::SeqCst), after, "still following");
    assert!(pool.connections().is_empty());
    assert!(cm.connections().is_empty());
}
