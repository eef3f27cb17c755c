//! Pools used from many places at once: formatting a pool, a pool handle
//! that outlives its pool, members added while the pool closes, and
//! `send_wait` on a runtime with a single thread. Each test guards against
//! a hang with a watchdog (a thread or a timeout that can fire), so a
//! regression fails instead of stalling the suite.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

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
