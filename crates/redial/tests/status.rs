//! `Manager::status` and `Pool::status` follow real connections: a server
//! that goes away shows as an endpoint down with its next attempt, its
//! connections backing off and its pool with no live member; when the
//! server comes back, everything is up again.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use redial::{Backoff, Jitter, Manager, Options};
use support::wait_until;
use support::TestServer;

const SOON: Duration = Duration::from_secs(20);

/// Retries every 200 ms, so the server's return is seen quickly, and the
/// next attempt is known after each failure.
fn quick() -> Options {
    Options::new().backoff(
        Backoff::new(Duration::from_millis(200), 1.0, Duration::from_millis(200))
            .unwrap()
            .with_jitter(Jitter::None),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_follows_a_server_that_goes_away_and_comes_back() {
    let mut server = TestServer::sink_on("127.0.0.1").await;
    let other = TestServer::sink_on("127.0.0.1").await;
    let cm = Manager::new();
    let pool = cm.create_pool("cache").unwrap();
    pool.add_connection_with(server.addr, redial::handler(), quick())
        .unwrap();
    pool.add_connection_with(other.addr, redial::handler(), quick())
        .unwrap();
    cm.connect_with(server.addr, redial::handler(), quick())
        .unwrap();

    wait_until("all three up", SOON, || {
        cm.status().connections.connected == 3
    })
    .await;
    let s = cm.status();
    assert_eq!(s.connections.total(), 3);
    assert!(s.endpoints_down.is_empty(), "{s:?}");
    assert_eq!(s.pools.len(), 1);
    assert_eq!((s.pools[0].live, s.pools[0].total), (2, 2), "{s:?}");
    assert_eq!(pool.status(), s.pools[0]);

    server.down().await;
    // Both of its connections must have noticed the loss, and the other
    // server's member must still be up: wait for all of it, since under
    // load the two losses are seen one after the other.
    wait_until("the server's endpoint down", SOON, || {
        let s = cm.status();
        s.endpoints_down.len() == 1
            && s.endpoints_down[0].next_attempt.is_some()
            && s.endpoints_down[0].connections == 2
            && s.connections.connected == 1
    })
    .await;
    let s = cm.status();
    let down = &s.endpoints_down[0];
    assert_eq!(down.endpoint.to_string(), server.addr.to_string());
    assert_eq!(down.connections, 2);
    let next = down.next_attempt.unwrap();
    assert!(
        next <= Instant::now() + Duration::from_millis(200),
        "next attempt within the backoff: {next:?}"
    );
    assert_eq!(
        s.connections.connected, 1,
        "the other server's member: {s:?}"
    );
    let p = pool.status();
    assert_eq!((p.live, p.total, p.members.connected), (1, 2, 1), "{p:?}");

    server.up().await;
    wait_until("all three up again", SOON, || {
        let s = cm.status();
        s.connections.connected == 3 && s.endpoints_down.is_empty()
    })
    .await;
    assert_eq!(pool.status().live, 2);

    cm.disconnect_all().await;
    let s = cm.status();
    assert_eq!(s.connections.total(), 0, "{s:?}");
    assert!(s.pools.is_empty());
}

/// A thousand connections: a snapshot stays cheap (no await, no lock held
/// across the connections' work). Bounded generously: it is a guard
/// against a snapshot that waits on each connection, not a speed test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_of_many_connections_does_not_wait_on_them() {
    let server = TestServer::sink_on("127.0.0.1").await;
    let cm = Manager::new();
    for _ in 0..1000 {
        cm.connect_with(server.addr, redial::handler(), quick())
            .unwrap();
    }
    wait_until("all up", Duration::from_secs(60), || {
        cm.status().connections.connected == 1000
    })
    .await;
    let t0 = Instant::now();
    for _ in 0..10 {
        assert_eq!(cm.status().connections.total(), 1000);
    }
    eprintln!("10 snapshots of 1000 connections: {:?}", t0.elapsed());
    cm.disconnect_all().await;
}
