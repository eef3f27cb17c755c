//! A pool that follows a name served by a real DNS server, through the
//! system resolver (`getaddrinfo`), as a user's program resolves it.
//!
//! The test runs inside a network namespace of its own
//! (`support/dns.rs`), where it starts dnsmasq on 127.0.0.53, serving
//! `cache.fleet.test` from a hosts file it re-reads on SIGHUP, and servers
//! on 127.0.0.2-4, and checks the pool after each step: an address added,
//! one removed (its member drained, its queued bytes delivered or handed
//! back), the DNS server stopped (the last good set kept) and started
//! again. It prints how long a DNS change took to show in the pool.
//!
//! Needs root, `ip` and `dnsmasq`; without them it says why and passes,
//! unless `REDIAL_REQUIRE_SERVERS=1` (set by `.ci/run`), which makes it
//! fail instead.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redial::{CloseReason, Connection, EventKind, Follow, Manager, Pool, State};
use support::dns::{Dnsmasq, Setup};
use support::wait_until;
use support::TestServer;

/// The name, where its DNS server listens, and how the test finds itself
/// inside the namespace.
const DNS: Setup = Setup {
    test: "follows_a_name_served_by_dnsmasq_through_the_system_resolver",
    child_dir: "REDIAL_FOLLOW_DNS_DIR",
    namespace: "redial-follow",
    dns_ip: "127.0.0.53",
    name: NAME,
};
const NAME: &str = "cache.fleet.test";
const PORT: u16 = 11211;
/// How often the pool resolves the name: what a DNS change waits for.
const EVERY: Duration = Duration::from_secs(1);
const LONG: Duration = Duration::from_secs(30);

#[test]
fn follows_a_name_served_by_dnsmasq_through_the_system_resolver() {
    DNS.run(inside);
}

fn addr(ip: &str) -> SocketAddr {
    format!("{ip}:{PORT}").parse().unwrap()
}

/// The members' addresses, sorted.
fn members(pool: &Pool) -> Vec<String> {
    let mut v: Vec<String> = pool
        .connections()
        .iter()
        .map(|c| c.endpoint().to_string())
        .collect();
    v.sort();
    v
}

fn expect(ips: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ips.iter().map(|i| addr(i).to_string()).collect();
    v.sort();
    v
}

fn member(pool: &Pool, ip: &str) -> Option<Connection> {
    let a = addr(ip).to_string();
    pool.connections()
        .into_iter()
        .find(|c| c.endpoint().to_string() == a)
}

/// The test proper, inside the namespace.
fn inside(dir: &Path) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let ips = ["127.0.0.2", "127.0.0.3", "127.0.0.4"];
        let mut servers = Vec::new();
        for ip in ips {
            servers.push(TestServer::sink_at(addr(ip)).await);
        }
        let dns = Dnsmasq::start(dir, &DNS, &ips[..2]);
        dns.wait_answering(LONG);

        let cm = Manager::new();
        let failed = Arc::new(AtomicU64::new(0));
        let f = failed.clone();
        let mut events = cm.events();
        tokio::spawn(async move {
            while let Some(e) = events.recv().await {
                if matches!(e.kind, EventKind::ResolveFailed { .. }) {
                    f.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        let unsent = Arc::new(AtomicU64::new(0));
        let closed: Arc<Mutex<Vec<(SocketAddr, CloseReason)>>> = Arc::default();
        let (u, cl) = (unsent.clone(), closed.clone());
        // The system resolver: the default.
        let follow = Follow::new(format!("{NAME}:{PORT}")).every(EVERY);
        let pool = cm
            .create_pool_following("fleet", follow, move |a| {
                let (u, cl) = (u.clone(), cl.clone());
                redial::handler().on_close(move |close| {
                    u.fetch_add(close.unsent().len() as u64, Ordering::SeqCst);
                    cl.lock().unwrap().push((a, close.reason().clone()));
                })
            })
            .unwrap();
        tokio::time::timeout(LONG, pool.wait_live(2)).await.unwrap();
        assert_eq!(members(&pool), expect(&ips[..2]));

        // An address added to the name: a member for it, connected.
        let changed = dns.set(&ips);
        wait_until("the new member connected", LONG, || {
            member(&pool, ips[2]).is_some_and(|c| c.state() == State::Connected)
        })
        .await;
        let to_connected = changed.elapsed();
        assert_eq!(members(&pool), expect(&ips));

        // An address removed while its member has bytes queued: drained.
        let leaving = member(&pool, ips[0]).unwrap();
        let sent: u64 = 4 << 20;
        for _ in 0..64 {
            leaving.send(vec![1u8; (sent / 64) as usize]).unwrap();
        }
        let changed = dns.set(&ips[1..]);
        wait_until("the removed member drained", LONG, || {
            leaving.state() == State::Closed
        })
        .await;
        let to_drained = changed.elapsed();
        wait_until("its close reported", LONG, || {
            !closed.lock().unwrap().is_empty()
        })
        .await;
        assert_eq!(
            *closed.lock().unwrap(),
            [(addr(ips[0]), CloseReason::Disconnected)]
        );
        wait_until("every queued byte delivered or handed back", LONG, || {
            servers[0].received() + unsent.load(Ordering::SeqCst) == sent
        })
        .await;
        assert_eq!(members(&pool), expect(&ips[1..]));

        // The DNS server stops: lookups fail, the members stay.
        dns.stop();
        let before = failed.load(Ordering::SeqCst);
        wait_until("failed lookups reported", LONG, || {
            failed.load(Ordering::SeqCst) >= before + 2
        })
        .await;
        assert_eq!(members(&pool), expect(&ips[1..]));
        assert_eq!(pool.live(), 2);

        // It starts again, serving the first address once more.
        let dns = Dnsmasq::start(dir, &DNS, &ips);
        let restarted = Instant::now();
        wait_until("the returning address's member connected", LONG, || {
            member(&pool, ips[0]).is_some_and(|c| c.state() == State::Connected)
        })
        .await;
        let recovered = restarted.elapsed();
        assert_eq!(members(&pool), expect(&ips));
        eprintln!(
            "DNS change to new member connected: {to_connected:?}; to removed member drained \
             ({} MiB queued): {to_drained:?}; DNS server back to member connected: {recovered:?} \
             (re-resolving every {EVERY:?})",
            sent >> 20
        );
        pool.disconnect().await;
        drop(dns);
    });
}
