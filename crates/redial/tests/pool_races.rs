//! Pools used from many places at once: formatting a pool, a pool handle
//! that outlives its pool, members added while the pool closes, and
//! `send_wait` on a runtime with a single thread. Each test guards against
//! a hang with a watchdog (a thread or a timeout that can fire), so a
//! regression fails instead of stalling the suite.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::mpsc;
use std::time::Duration;

use redial::Manager;

/// Runs `f` on a thread of its own; fails when it has not returned within
/// `within` (the thread is left behind: it is stuck, and the test process
/// ends with the failure).
fn within<T: Send + 'static>(
    within: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(within)
        .unwrap_or_else(|_| panic!("{what} did not return within {within:?}"))
}

// Regression test (issue 20, bug 1): `Pool`'s `Debug` held the members
// lock while `live()` took it again, so `{:?}`, `dbg!` and tracing's
// `?pool` hung for good, even on an empty pool.
#[test]
fn debug_of_a_pool_returns_and_shows_its_counts() {
    let text = within(Duration::from_secs(10), "format!(\"{pool:?}\")", || {
        let cm = Manager::builder().own_runtime(true).build();
        let pool = cm.create_pool("p").unwrap();
        // A member that cannot connect (nothing listens on a closed port).
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        pool.add_connection(addr, redial::handler()).unwrap();
        let text = format!("{pool:?}");
        let manager = format!("{cm:?}");
        let conns = format!("{:?}", pool.connections());
        (text, manager, conns)
    });
    assert!(
        text.0.contains("name: \"p\"")
            && text.0.contains("members: 1")
            && text.0.contains("live: 0"),
        "{}",
        text.0
    );
    assert!(text.1.contains("pools: 1"), "{}", text.1);
    assert!(text.2.contains("Connection"), "{}", text.2);
}

/// An address nothing listens on: members to it keep retrying, which is
/// all these tests need of them (and costs no server).
fn dead_addr() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    addr
}

// Regression test (issue 21, bug 2): the registry removed pools by name, so
// disconnecting an old handle deleted the newer pool of the same name: it
// was no longer found, the name could be taken a third time, and
// `disconnect_all` left it open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_pool_handle_leaves_the_newer_pool_of_its_name_alone() {
    let server = support::TestServer::echo().await;
    let cm = Manager::new();
    let a = cm.create_pool("p").unwrap();
    a.disconnect().await;
    assert!(
        cm.get_pool("p").is_none(),
        "a disconnected pool is unregistered"
    );

    let b = cm.create_pool("p").unwrap();
    let member = b.add_connection(server.addr, redial::handler()).unwrap();
    tokio::time::timeout(LONG, b.wait_live(1)).await.unwrap();

    // The old handle, disconnected again: inert.
    a.disconnect().await;
    assert!(a.is_closed());
    let found = cm
        .get_pool("p")
        .expect("the newer pool is still registered");
    assert_eq!(
        found.connections().len(),
        1,
        "found the newer pool: {found:?}"
    );
    assert!(!b.is_closed());
    assert_eq!(member.state(), redial::State::Connected);
    assert!(
        matches!(
            cm.create_pool("p"),
            Err(redial::PoolError::NameTaken { .. })
        ),
        "two open pools must not share a name"
    );
    assert!(matches!(
        a.add_connection(server.addr, redial::handler()),
        Err(redial::ConnectError::PoolClosed { .. })
    ));

    tokio::time::timeout(LONG, cm.disconnect_all())
        .await
        .unwrap();
    assert!(b.is_closed(), "disconnect_all closes the newer pool");
    assert_eq!(member.state(), redial::State::Closed);
}

const LONG: Duration = Duration::from_secs(10);

// Regression test (issue 21, bug 3): `add_connection` checked the closed
// flag, then pushed the member after `Pool::disconnect` had taken the
// member list: about one add in three trials returned `Ok` with a member
// that was never disconnected. Now every member whose add succeeded
// closes with the pool, and every later add is refused as "pool closed".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_added_while_the_pool_disconnects_is_closed_with_it_or_refused() {
    const TRIALS: usize = 40;
    let addr = dead_addr();
    let cm = Manager::new();
    let mut added_total = 0;
    for trial in 0..TRIALS {
        let pool = cm.create_pool(&format!("p{trial}")).unwrap();
        let adder = {
            let pool = pool.clone();
            std::thread::spawn(move || {
                let mut added = Vec::new();
                // Bounded, so a pool that never refuses cannot loop forever.
                for _ in 0..10_000 {
                    match pool.add_connection(addr, redial::handler()) {
                        Ok(c) => added.push(c),
                        Err(e) => return (added, Some(e)),
                    }
                    std::thread::yield_now();
                }
                (added, None)
            })
        };
        // Disconnect while the adder is busy: after a few adds, at a
        // different moment each trial.
        let want = 1 + trial % 5;
        support::wait_until("some adds", LONG, || pool.connections().len() >= want).await;
        tokio::time::timeout(LONG, pool.disconnect())
            .await
            .expect("the pool's disconnect finished");
        let (added, err) = tokio::task::spawn_blocking(move || adder.join().unwrap())
            .await
            .unwrap();
        let err = err.expect("the adder was refused once the pool closed");
        assert!(
            matches!(&err, redial::ConnectError::PoolClosed { pool } if *pool == format!("p{trial}")),
            "{err:?}"
        );
        assert!(err.to_string().contains("disconnected"), "{err}");
        added_total += added.len();
        for c in &added {
            let closed = tokio::time::timeout(LONG, c.closed()).await;
            assert!(
                closed.is_ok(),
                "trial {trial}: member #{} was added (Ok) but never closed: {:?}",
                c.id(),
                c.state()
            );
        }
        assert!(
            pool.connections().is_empty(),
            "trial {trial}: {:?}",
            pool.connections()
        );
    }
    println!("{TRIALS} trials, {added_total} members added, every one closed with its pool");
    assert!(cm.connections().is_empty(), "{:?}", cm.connections());
}

// A closing pool takes no member: after `Pool::disconnect` and after
// `Manager::disconnect_all`, adds fail with an error naming the pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_to_a_closed_pool_fails_with_pool_closed() {
    let cm = Manager::new();
    let a = cm.create_pool("a").unwrap();
    let b = cm.create_pool("b").unwrap();
    let _ = a.disconnect();
    let e = a
        .add_connection(dead_addr(), redial::handler())
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "pool \"a\" is disconnected and takes no new connections"
    );
    let _ = cm.disconnect_all();
    let e = b
        .add_connection_with(dead_addr(), redial::handler(), redial::Options::new())
        .unwrap_err();
    assert!(
        matches!(e, redial::ConnectError::PoolClosed { ref pool } if pool == "b"),
        "{e:?}"
    );
    assert!(cm.connections().is_empty());
}

// Regression test (issue 21, bug 1): `Pool::send_wait` picked a member
// still in state Connected whose `disconnect()` was flushing; its write
// failed at once and the loop tried again without ever yielding. On a
// `current_thread` runtime nothing else could run, so neither its own
// timeout nor any outer one fired: it never returned. Now a disconnecting
// member is not live, and every pass of the loop that finds no member
// awaits a change or the deadline.
#[test]
fn send_wait_on_a_current_thread_runtime_returns_by_its_timeout_while_its_member_disconnects() {
    let (seen, waited, result) = within(
        Duration::from_secs(60),
        "send_wait on a current_thread runtime",
        || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let server = support::TestServer::sink().await;
                let proxy = redial_chaos::Proxy::builder()
                    .seed(40)
                    .start("127.0.0.1:0", server.addr)
                    .await
                    .unwrap();
                let cm = Manager::new();
                let pool = cm.create_pool("p").unwrap();
                let conn = pool
                    .add_connection(proxy.local_addr(), redial::handler())
                    .unwrap();
                tokio::time::timeout(LONG, pool.wait_live(1)).await.unwrap();
                // Nothing moves: the disconnect below cannot flush 3 MiB
                // and stays in progress (close grace 5 s) past the wait.
                proxy.blackhole();
                conn.send(vec![7u8; 3 << 20]).unwrap();
                let _ = conn.disconnect();
                let seen = (
                    conn.state(),
                    pool.live(),
                    pool.is_ready(),
                    pool.pick().is_some(),
                );
                let start = tokio::time::Instant::now();
                let result = pool.send_wait("x", Duration::from_secs(1)).await;
                let waited = start.elapsed();
                conn.abort().await;
                (seen, waited, result)
            })
        },
    );
    assert_eq!(
        seen,
        (redial::State::Connected, 0, false, false),
        "a disconnecting member is still connected but not live"
    );
    match result {
        Err(redial::SendError::TimedOut { data, waited }) => {
            assert_eq!(data, b"x");
            assert_eq!(waited, Duration::from_secs(1));
        }
        other => panic!("expected TimedOut with the bytes, got {other:?}"),
    }
    assert!(
        waited >= Duration::from_millis(990),
        "returned early: {waited:?}"
    );
}

// A member stops being live the moment its disconnect is called (it takes
// no more sends), not when it has closed: a waiter on the pool's readiness
// hears of it at once, even while the member still flushes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_ready_change_hears_of_a_member_that_starts_disconnecting() {
    let server = support::TestServer::sink().await;
    let proxy = redial_chaos::Proxy::builder()
        .seed(41)
        .start("127.0.0.1:0", server.addr)
        .await
        .unwrap();
    let cm = Manager::new();
    let pool = cm.create_pool("p").unwrap();
    // The member flushes for up to 3 s once disconnected.
    let opts = redial::Options::new().close_grace(Duration::from_secs(3));
    let conn = pool
        .add_connection_with(proxy.local_addr(), redial::handler(), opts)
        .unwrap();
    tokio::time::timeout(LONG, pool.wait_live(1)).await.unwrap();
    let waiter = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.wait_ready_change(true).await })
    };
    tokio::task::yield_now().await;
    // The flush cannot finish: the member stays connected for its grace.
    proxy.blackhole();
    conn.send(vec![1u8; 32 << 20]).unwrap();
    let _ = conn.disconnect();
    let ready = tokio::time::timeout(Duration::from_secs(2), waiter)
        .await
        .expect("the waiter heard of the disconnect before the member closed")
        .unwrap();
    assert!(!ready);
    assert_eq!(conn.state(), redial::State::Connected, "still flushing");
    tokio::time::timeout(LONG, conn.closed()).await.unwrap();
}
