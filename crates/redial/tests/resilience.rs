//! Resilience beyond reconnect: lists of addresses that fail over, restart
//! intensity, and pools that pick well (flapping members, waiting sends,
//! readiness).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use redial::{CloseReason, Endpoint, Manager, SendError, State};
use support::{fast_options, read_to_end, wait_until, Recorder, TestServer};

// The idle timeout and the heartbeat are tested exactly on a paused clock
// in `paused.rs`.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_list_skips_a_dead_address() {
    let mut dead = TestServer::start().await;
    dead.stop_listening().await;
    let mut live = TestServer::start().await;
    let cm = Manager::new();
    let calls = Recorder::new();
    let ep = Endpoint::any([dead.addr, live.addr]).unwrap();
    let conn = cm
        .connect_with(ep, calls.handler(), fast_options(10, 100))
        .unwrap();
    let _held = live.next(5).await;
    conn.wait_connected().await.unwrap();
    assert_eq!(
        calls.count("failed"),
        0,
        "the list as a whole connected: {:?}",
        calls.labels()
    );
    conn.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_list_races_past_a_blackholed_address() {
    // A listener with a full accept queue drops SYNs: the address never answers.
    let (hole, _listener, _fillers) = support::unanswering().await;
    let mut live = TestServer::start().await;
    let cm = Manager::new();
    let ep = Endpoint::any([hole, live.addr]).unwrap();
    let start = Instant::now();
    let conn = cm
        .connect_with(
            ep,
            redial::handler(),
            fast_options(10, 100).connect_timeout(Duration::from_secs(30)),
        )
        .unwrap();
    let _held = live.next(5).await;
    conn.wait_connected().await.unwrap();
    // Not the 30 s connect timeout: the second address starts 250 ms later.
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    conn.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_list_fails_over_on_reset() {
    let mut a = TestServer::start().await;
    let mut b = TestServer::start().await;
    let cm = Manager::new();
    let conn = cm
        .connect_with(
            Endpoint::any([a.addr, b.addr]).unwrap(),
            redial::handler(),
            fast_options(10, 100),
        )
        .unwrap();
    let first = a.next(5).await;
    conn.wait_connected().await.unwrap();
    a.stop_listening().await;
    drop(first.stream);
    let _held = b.next(5).await;
    conn.wait_connected().await.unwrap();
    conn.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_intensity_trips_after_too_many_resets() {
    let mut server = TestServer::start().await;
    let addr = server.addr;
    tokio::spawn(async move {
        loop {
            drop(server.next(30).await.stream);
        }
    });
    let cm = Manager::new();
    let calls = Recorder::new();
    let opts = fast_options(5, 20).restart_intensity(3, Duration::from_secs(30));
    let conn = cm.connect_with(addr, calls.handler(), opts).unwrap();
    let reason = tokio::time::timeout(Duration::from_secs(10), conn.closed())
        .await
        .unwrap();
    assert!(
        matches!(reason, CloseReason::RestartIntensity { resets: 4, .. }),
        "{reason:?}"
    );
    assert_eq!(calls.count("reset"), 4);
    assert_eq!(calls.count("close"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_member_is_not_picked_until_it_stayed_up() {
    let mut steady = TestServer::start().await;
    let mut flappy = TestServer::start().await;
    let cm = Manager::new();
    let pool = cm.create_pool("flap").unwrap();
    let stable = Duration::from_millis(800);
    let a = pool
        .add_connection_with(
            steady.addr,
            redial::handler(),
            fast_options(10, 50).stable_after(stable),
        )
        .unwrap();
    let b = pool
        .add_connection_with(
            flappy.addr,
            redial::handler(),
            fast_options(10, 50).stable_after(stable),
        )
        .unwrap();
    let _held = steady.next(5).await;
    // B flaps (accepts and closes at once), then stays up. The loss after
    // the immediate retry is not counted (it may be a dying server's), so
    // it takes one drop more than Pool::FLAPPING_AFTER.
    for _ in 0..=redial::Pool::FLAPPING_AFTER {
        drop(flappy.next(5).await.stream);
    }
    let _b_up = flappy.next(5).await;
    b.wait_connected().await.unwrap();
    a.wait_connected().await.unwrap();
    let up_at = Instant::now();
    while up_at.elapsed() < stable / 2 {
        let picked = pool.pick().unwrap();
        assert_eq!(picked.id(), a.id(), "picked the flapping member");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(stable).await;
    let ids: std::collections::HashSet<u64> = (0..10).map(|_| pool.pick().unwrap().id()).collect();
    assert!(ids.contains(&b.id()), "B stayed up and is still skipped");
    pool.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_send_wait_waits_for_a_member_or_times_out_with_the_bytes() {
    let mut server = TestServer::start().await;
    server.stop_listening().await;
    let cm = Manager::new();
    let pool = cm.create_pool("wait").unwrap();
    pool.add_connection_with(server.addr, redial::handler(), fast_options(10, 50))
        .unwrap();
    assert!(!pool.is_ready());
    let err = pool
        .send_wait("early", Duration::from_millis(200))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        SendError::TimedOut {
            data: b"early".to_vec(),
            waited: Duration::from_millis(200)
        }
    );

    // Waiting (pending: no member) before the server is back.
    let mut waiter = Box::pin(pool.send_wait("late", Duration::from_secs(10)));
    assert!(support::poll_once(&mut waiter).await.is_pending());
    server.relisten().await;
    let peer = server.next(5).await;
    waiter.await.unwrap();
    assert!(pool.is_ready());
    let flip = tokio::spawn({
        let p = pool.clone();
        async move { p.wait_ready_change(true).await }
    });
    pool.disconnect();
    assert_eq!(read_to_end(peer.stream, 5).await, b"late");
    assert!(!tokio::time::timeout(Duration::from_secs(5), flip)
        .await
        .unwrap()
        .unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_to_a_down_endpoint_share_one_probe() {
    let mut server = TestServer::start().await;
    server.stop_listening().await;
    let cm = Manager::new();
    let conns: Vec<_> = (0..50)
        .map(|_| {
            cm.connect_with(server.addr, redial::handler(), fast_options(10, 100))
                .unwrap()
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let failed: u64 = conns.iter().map(|c| c.stats().failed_attempts).sum();
    // Alone, each would have failed ~12 times in that second (600 in all);
    // sharing, the first wave fails once each and then one probes.
    println!("50 connections, 1 s of outage: {failed} failed attempts");
    assert!(failed <= 50 + 20, "{failed} failed attempts");
    server.relisten().await;
    for c in &conns {
        tokio::time::timeout(Duration::from_secs(5), c.wait_connected())
            .await
            .expect("released when the probe connected")
            .unwrap();
    }
    cm.disconnect_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_counts_its_attempts_makes_its_own() {
    let mut server = TestServer::start().await;
    server.stop_listening().await;
    let cm = Manager::new();
    let conns: Vec<_> = (0..5)
        .map(|_| {
            cm.connect_with(
                server.addr,
                redial::handler(),
                fast_options(10, 20).max_attempts(4),
            )
            .unwrap()
        })
        .collect();
    for c in &conns {
        let reason = tokio::time::timeout(Duration::from_secs(5), c.closed())
            .await
            .unwrap();
        assert!(
            matches!(reason, CloseReason::GaveUp { attempts: 4, .. }),
            "{reason:?}"
        );
        assert_eq!(c.stats().failed_attempts, 4);
    }
}

/// The connect timeout bounds an attempt that is never answered, on a
/// `current_thread` runtime too: the attempt arms its timer only once the
/// connect is still pending after a turn of the runtime's I/O driver, and
/// the deadline still counts from the start of the connect.
#[tokio::test(flavor = "current_thread")]
async fn an_unanswered_connect_fails_at_its_connect_timeout() {
    let (hole, _listener, _fillers) = support::unanswering().await;
    let cm = Manager::new();
    let mut events = cm.events();
    let limit = Duration::from_millis(300);
    let conn = cm
        .connect_with(
            hole,
            redial::handler(),
            fast_options(10, 100).connect_timeout(limit).max_attempts(1),
        )
        .unwrap();
    let (mut started, mut failed) = (None, None);
    let wait = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(e) = events.recv().await {
            match e.kind {
                redial::EventKind::Connecting { .. } => started = Some(e.at),
                redial::EventKind::ConnectFailed { error, .. } => {
                    failed = Some((e.at, error));
                    break;
                }
                _ => {}
            }
        }
    });
    wait.await.expect("the attempt never failed");
    let (started, (at, error)) = (started.unwrap(), failed.unwrap());
    assert!(error.contains("timed out"), "{error}");
    let took = at.duration_since(started);
    assert!(took >= limit, "failed after {took:?}, before the timeout");
    assert!(took < Duration::from_secs(5), "failed after {took:?}");
    conn.disconnect().await;
}

#[tokio::test]
async fn a_connection_waiting_for_a_place_closes_at_once_and_leaves_the_place_to_the_next() {
    let (hole, _listener, _fillers) = support::unanswering().await;
    let open = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cm = Manager::builder().max_connecting(1).build();
    let opts = fast_options(10, 100).connect_timeout(Duration::from_secs(30));
    // The one place is held by an attempt that hangs.
    let holder = cm
        .connect_with(hole, redial::handler(), opts.clone())
        .unwrap();
    wait_until(
        "the hanging attempt holds the place",
        Duration::from_secs(10),
        || cm.attempts_in_flight() == 1,
    )
    .await;
    let queued = cm
        .connect_with(open.local_addr().unwrap(), redial::handler(), opts.clone())
        .unwrap();
    let next = cm
        .connect_with(open.local_addr().unwrap(), redial::handler(), opts)
        .unwrap();
    // A command reaches a connection that waits for a place.
    tokio::time::timeout(Duration::from_secs(5), queued.disconnect())
        .await
        .expect("a queued connection closes without waiting for a place");
    assert_eq!(queued.state(), State::Closed);
    assert_eq!(
        cm.attempts_in_flight(),
        1,
        "the hanging attempt still holds it"
    );
    // The place the hanging attempt frees goes to the next one queued.
    holder.disconnect().await;
    tokio::time::timeout(Duration::from_secs(5), next.wait_connected())
        .await
        .expect("the next connection got the place")
        .unwrap();
    next.disconnect().await;
}
