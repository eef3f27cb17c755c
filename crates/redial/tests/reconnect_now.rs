//! Reconnect now: a connection in a long backoff (30 s) whose server came
//! back connects within a few seconds of `reconnect_now`, on a connection,
//! a pool, an endpoint or the whole manager, and the attempts stay under
//! the manager's cap on attempts in flight.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use redial::{Backoff, Connection, Jitter, Manager, Options, State};
use support::wait_until;
use support::TestServer;

/// Far longer than any wait below: a connection that connects within
/// [`SOON`] did not wait for its backoff.
const BACKOFF: Duration = Duration::from_secs(30);
/// Generous for two busy cores, and far below [`BACKOFF`].
const SOON: Duration = Duration::from_secs(10);

fn long_backoff() -> Options {
    Options::new().backoff(
        Backoff::new(BACKOFF, 2.0, 2 * BACKOFF)
            .unwrap()
            .with_jitter(Jitter::None),
    )
}

/// A server that is down, and its address.
async fn down_server() -> TestServer {
    let mut s = TestServer::sink_on("127.0.0.1").await;
    s.down().await;
    s
}

/// Waits until every connection has failed an attempt and is backing off.
async fn backing_off(conns: &[Connection]) {
    wait_until("every connection backing off", SOON, || {
        conns
            .iter()
            .all(|c| c.state() == State::BackingOff && c.stats().failed_attempts >= 1)
    })
    .await;
}

async fn connected(conns: &[Connection]) -> Duration {
    wait_until("every connection connected", SOON, || {
        conns.iter().all(|c| c.state() == State::Connected)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_now_ends_a_long_backoff_once_the_server_is_back() {
    let mut server = down_server().await;
    let cm = Manager::new();
    let conn = cm
        .connect_with(server.addr, redial::handler(), long_backoff())
        .unwrap();
    backing_off(std::slice::from_ref(&conn)).await;
    server.up().await;
    // Back, but the connection waits out its 30 s: a quiet window, as
    // nothing marks a reconnect that does not happen.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(conn.state(), State::BackingOff);
    conn.reconnect_now();
    let took = connected(std::slice::from_ref(&conn)).await;
    eprintln!("connected {took:?} after reconnect_now");
    assert_eq!(server.accepted(), 1);
    // Connected: a further call changes nothing (a quiet window: there is
    // no event for nothing happening).
    conn.reconnect_now();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(conn.state(), State::Connected);
    assert_eq!(conn.stats().connects, 1);
    cm.disconnect_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_now_on_a_failing_server_backs_off_again() {
    let server = down_server().await;
    let cm = Manager::new();
    let conn = cm
        .connect_with(server.addr, redial::handler(), long_backoff())
        .unwrap();
    backing_off(std::slice::from_ref(&conn)).await;
    conn.reconnect_now();
    wait_until("a second failed attempt", SOON, || {
        conn.stats().failed_attempts >= 2 && conn.state() == State::BackingOff
    })
    .await;
    cm.disconnect_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_reconnect_now_brings_back_every_member() {
    let mut servers = [down_server().await, down_server().await];
    let cm = Manager::new();
    let pool = cm.create_pool("p").unwrap();
    let members: Vec<_> = servers
        .iter()
        .map(|s| {
            pool.add_connection_with(s.addr, redial::handler(), long_backoff())
                .unwrap()
        })
        .collect();
    backing_off(&members).await;
    for s in &mut servers {
        s.up().await;
    }
    pool.reconnect_now();
    connected(&members).await;
    assert_eq!(pool.live(), 2);
    pool.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manager_reconnect_now_stays_under_the_cap_on_attempts_in_flight() {
    let mut a = down_server().await;
    let mut b = down_server().await;
    let cm = Manager::builder().max_connecting(1).build();
    let to_a: Vec<_> = (0..4)
        .map(|_| {
            cm.connect_with(a.addr, redial::handler(), long_backoff())
                .unwrap()
        })
        .collect();
    let to_b: Vec<_> = (0..4)
        .map(|_| {
            cm.connect_with(b.addr, redial::handler(), long_backoff())
                .unwrap()
        })
        .collect();
    // Connections that wait for another's probe of their endpoint report
    // no failed attempt: wait for the state only.
    wait_until("all backing off", SOON, || {
        to_a.iter()
            .chain(&to_b)
            .all(|c| c.state() == State::BackingOff)
    })
    .await;
    a.up().await;
    b.up().await;
    // One endpoint only: the other stays in its backoff.
    assert_eq!(cm.reconnect_now_to(a.addr), 4);
    connected(&to_a).await;
    // B's connections stay in their 30 s backoff: a quiet window.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(to_b.iter().all(|c| c.state() == State::BackingOff));
    cm.take_peak_attempts_in_flight();
    cm.reconnect_now();
    connected(&to_b).await;
    assert_eq!(cm.take_peak_attempts_in_flight(), 1, "above the cap");
    cm.disconnect_all().await;
}
