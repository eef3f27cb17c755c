//! A pool of 20 connections while faults hit some of its members: half the
//! members go through proxy A, half through proxy B, both to one echo
//! server, and only B is broken. `Pool::pick`, `Pool::pick_least_queued`
//! and `Pool::send` must use live members only, and every member must be
//! live again once B heals.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use redial::{Connection, Manager, Pool, Resume, SendError, State};
use redial_chaos::Proxy;
use support::{fast_options, wait_until, TestServer};

const LONG: Duration = Duration::from_secs(10);
const HALF: usize = 10;
const STABLE: Duration = Duration::from_millis(200);

struct PoolRig {
    _server: TestServer,
    a: Proxy,
    b: Proxy,
    cm: Manager,
    pool: Pool,
    members: Vec<Connection>,
    /// Bytes echoed back to each member, by member index.
    echoed: Vec<Arc<AtomicUsize>>,
}

impl PoolRig {
    fn ids_via_a(&self) -> HashSet<u64> {
        self.members[..HALF].iter().map(Connection::id).collect()
    }

    fn echoed(&self, i: usize) -> usize {
        self.echoed[i].load(Ordering::SeqCst)
    }

    fn echoed_total(&self, range: std::ops::Range<usize>) -> usize {
        range.map(|i| self.echoed(i)).sum()
    }
}

async fn pool_rig(seed: u64) -> PoolRig {
    let server = TestServer::echo().await;
    let a = Proxy::builder()
        .seed(seed)
        .start("127.0.0.1:0", server.addr)
        .await
        .unwrap();
    let b = Proxy::builder()
        .seed(seed + 1)
        .start("127.0.0.1:0", server.addr)
        .await
        .unwrap();
    let cm = Manager::new();
    let pool = cm.create_pool("faulty").unwrap();
    let mut members = Vec::new();
    let mut echoed = Vec::new();
    for i in 0..2 * HALF {
        let count = Arc::new(AtomicUsize::new(0));
        let c = count.clone();
        let h = redial::handler().on_data(move |_, d| {
            c.fetch_add(d.len(), Ordering::SeqCst);
        });
        let via = if i < HALF {
            a.local_addr()
        } else {
            b.local_addr()
        };
        // stable_after 200 ms: pools skip a member that flapped (was lost
        // sooner than stable_after) until its new connection has lasted
        // that long; the default 5 s would idle the test.
        let opts = fast_options(20, 500).stable_after(STABLE);
        members.push(pool.add_connection_with(via, h, opts).unwrap());
        echoed.push(count);
    }
    tokio::time::timeout(LONG, pool.wait_live(2 * HALF))
        .await
        .expect("all 20 live");
    // One round trip per member: the proxy only resets connections whose
    // link task has started (it takes the fault epoch when it first runs),
    // and data through it proves that it has.
    for m in &members {
        m.send(b"hi").unwrap();
    }
    let counts = echoed.clone();
    wait_until("a round trip on every member", LONG, || {
        counts.iter().all(|c| c.load(Ordering::SeqCst) >= 2)
    })
    .await;
    PoolRig {
        _server: server,
        a,
        b,
        cm,
        pool,
        members,
        echoed,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_uses_only_live_members_while_a_proxy_is_down_then_all_recover_after_heal() {
    let r = pool_rig(10).await;
    let via_a = r.ids_via_a();

    // Break B: drop its connections and refuse new ones.
    r.b.refuse();
    r.b.reset_all();
    wait_until("only A's members live", LONG, || r.pool.live() == HALF).await;
    for m in &r.members[HALF..] {
        assert_ne!(m.state(), State::Connected);
    }

    for _ in 0..200 {
        let c = r.pool.pick().expect("A's members are live");
        assert!(
            via_a.contains(&c.id()),
            "picked member {} behind the broken proxy",
            c.id()
        );
        assert_eq!(c.state(), State::Connected);
        let c = r.pool.pick_least_queued().expect("A's members are live");
        assert!(via_a.contains(&c.id()));
    }
    let msg = b"pool-msg;";
    for i in 0..100 {
        r.pool
            .send(msg)
            .unwrap_or_else(|e| panic!("send {i} refused with live members: {e}"));
    }
    // Each member already had its 2-byte round trip ("hi").
    let hi = 2 * HALF;
    wait_until("100 echoes through A", LONG, || {
        r.echoed_total(0..HALF) >= hi + 100 * msg.len()
    })
    .await;
    assert_eq!(r.echoed_total(0..HALF), hi + 100 * msg.len());
    assert_eq!(
        r.echoed_total(HALF..2 * HALF),
        hi,
        "nothing went to B's members"
    );
    assert_eq!(
        r.b.stats().accepted,
        HALF as u64,
        "B refused every reconnect"
    );

    r.b.heal().unwrap();
    tokio::time::timeout(LONG, r.pool.wait_live(2 * HALF))
        .await
        .expect("all 20 live after heal");
    for m in &r.members {
        assert_eq!(m.state(), State::Connected);
    }
    // B's members were lost young, so they count as flapping: pick() skips
    // them until their new connections have lasted `stable_after`.
    tokio::time::sleep(2 * STABLE).await;
    // All live and stable: round robin visits every member, twice in 40
    // sends.
    let before: Vec<usize> = (0..2 * HALF).map(|i| r.echoed(i)).collect();
    for _ in 0..40 {
        r.pool.send(msg).unwrap();
    }
    wait_until("40 more echoes", LONG, || {
        r.echoed_total(0..2 * HALF) >= before.iter().sum::<usize>() + 40 * msg.len()
    })
    .await;
    for (i, b) in before.iter().enumerate() {
        assert_eq!(r.echoed(i) - b, 2 * msg.len(), "member {i} not used twice");
    }
    r.pool.disconnect().await;
    r.cm.disconnect_all().await;
    assert_eq!(
        r.a.stats().accepted,
        HALF as u64,
        "A's members never reconnected"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_keeps_sending_through_live_members_while_resets_hit_a_subset() {
    let r = pool_rig(20).await;
    let via_a = r.ids_via_a();
    let stop = Arc::new(AtomicBool::new(false));

    // Resets and clean closes hit B's members every 100 ms for 2 s; A's
    // members are never touched.
    let faults = {
        let (stop, b) = (&stop, &r.b);
        async move {
            for i in 0..20 {
                if i % 2 == 0 {
                    b.reset_all();
                } else {
                    b.close_all();
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            stop.store(true, Ordering::SeqCst);
        }
    };
    let sender = async {
        let (mut ok, mut refused, mut min_live) = (0usize, 0usize, usize::MAX);
        while !stop.load(Ordering::SeqCst) {
            min_live = min_live.min(r.pool.live());
            if let Some(c) = r.pool.pick() {
                assert!(c.state() == State::Connected || !via_a.contains(&c.id()));
            }
            match r.pool.send(b"x") {
                Ok(()) => ok += 1,
                // Every live member can be lost before the send lands.
                Err(SendError::NoLiveMember { data, .. }) => {
                    assert_eq!(data, b"x");
                    refused += 1;
                }
                Err(e) => panic!("unexpected send error: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        (ok, refused, min_live)
    };
    let ((), (ok, refused, min_live)) = tokio::join!(faults, sender);
    println!("pool sends during faults: {ok} accepted, {refused} refused, min live {min_live}");
    assert!(min_live >= HALF, "A's members stayed live: min {min_live}");
    assert!(ok > 10 * refused, "{ok} accepted vs {refused} refused");
    for m in &r.members[..HALF] {
        assert_eq!(m.stats().resets, 0, "A's members untouched");
    }
    let b_resets: u64 = r.members[HALF..].iter().map(|m| m.stats().resets).sum();
    assert!(
        b_resets >= HALF as u64 * 5,
        "only {b_resets} resets on B's members"
    );

    r.b.heal().unwrap();
    tokio::time::timeout(LONG, r.pool.wait_live(2 * HALF))
        .await
        .expect("all 20 live after heal");
    r.pool.disconnect().await;
    r.cm.disconnect_all().await;
}

// Regression test (found here as a core bug, fixed in f0feeef): in
// crates/redial/src/driver/teardown.rs, `Driver::end` (the `Outcome::Lost`
// branch), the driver used to call `on_reset` before moving the public
// state away from Connected. While `on_reset` ran, `Connection::state()`
// still said Connected although the socket was gone (`socket()` None,
// sends refused), so `Pool::pick`/`Pool::send` kept choosing the dead
// member and failed with `NotConnected` although another member was live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_send_skips_a_member_whose_on_reset_is_still_running() {
    let server = TestServer::echo().await;
    let proxy = Proxy::builder()
        .seed(30)
        .start("127.0.0.1:0", server.addr)
        .await
        .unwrap();
    let cm = Manager::new();
    let pool = cm.create_pool("slow-reset").unwrap();
    let in_reset = Arc::new(AtomicBool::new(false));
    let flag = in_reset.clone();
    // An application doing some work in on_reset: it stays inside until the
    // test has looked (bounded, so a failing test cannot hang).
    let (release, released) = std::sync::mpsc::channel::<()>();
    let released = std::sync::Mutex::new(released);
    let echoed = Arc::new(AtomicUsize::new(0));
    let e = echoed.clone();
    let slow = redial::handler()
        .on_data(move |_, d| {
            e.fetch_add(d.len(), Ordering::SeqCst);
        })
        .on_reset(move |_| {
            flag.store(true, Ordering::SeqCst);
            let _ = released
                .lock()
                .unwrap()
                .recv_timeout(Duration::from_secs(10));
            flag.store(false, Ordering::SeqCst);
            Resume::Reconnect
        });
    let dying = pool
        .add_connection_with(proxy.local_addr(), slow, fast_options(20, 500))
        .unwrap();
    let healthy = pool
        .add_connection_with(server.addr, redial::handler(), fast_options(20, 500))
        .unwrap();
    tokio::time::timeout(LONG, pool.wait_live(2)).await.unwrap();
    // A round trip, so the proxy's link is running and reset_all hits it.
    dying.send(b"hi").unwrap();
    wait_until("echo", LONG, || echoed.load(Ordering::SeqCst) >= 2).await;

    assert_eq!(
        dying.stats().resets,
        0,
        "lost before the fault: {:?}",
        dying.stats()
    );
    proxy.refuse();
    proxy.reset_all();
    // Polled with a blocking sleep, not a tokio timer: the worker blocked in
    // on_reset may be the one that drove the runtime's timers, and tokio
    // does not hand that job to the other worker until it comes back.
    let t0 = std::time::Instant::now();
    while !in_reset.load(Ordering::SeqCst) {
        assert!(
            t0.elapsed() < LONG,
            "on_reset never ran: {:?} {:?}",
            dying.state(),
            dying.stats()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let state = dying.state();
    let live = pool.live();
    let failed = (0..20).filter(|_| pool.send(b"x").is_err()).count();
    let _ = release.send(());
    assert!(healthy.state() == State::Connected);
    assert_eq!(
        (state, live, failed),
        (State::BackingOff, 1, 0),
        "the lost member still counts as live while on_reset runs"
    );
    cm.disconnect_all().await;
}

// Regression test (same bug as above, fixed in f0feeef), seen on a single
// connection: inside `on_reset`, and right after the `Reset` event,
// `Connection::state()` was still `Connected` while `Connection::socket()`
// was already `None`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_is_not_connected_inside_on_reset() {
    let server = TestServer::echo().await;
    let proxy = Proxy::builder()
        .seed(31)
        .start("127.0.0.1:0", server.addr)
        .await
        .unwrap();
    let cm = Manager::new();
    let me: Arc<OnceLock<Connection>> = Arc::default();
    let seen: Arc<std::sync::Mutex<Vec<(State, bool)>>> = Arc::default();
    let (m, s) = (me.clone(), seen.clone());
    let echoed = Arc::new(AtomicUsize::new(0));
    let e = echoed.clone();
    let h = redial::handler()
        .on_data(move |_, d| {
            e.fetch_add(d.len(), Ordering::SeqCst);
        })
        .on_reset(move |_| {
            let c = m.get().expect("set before any reset");
            s.lock().unwrap().push((c.state(), c.socket().is_some()));
            Resume::Reconnect
        });
    let conn = cm
        .connect_with(proxy.local_addr(), h, fast_options(20, 500))
        .unwrap();
    me.set(conn.clone()).unwrap();
    tokio::time::timeout(LONG, conn.wait_connected())
        .await
        .unwrap()
        .unwrap();
    conn.send(b"hi").unwrap();
    wait_until("echo", LONG, || echoed.load(Ordering::SeqCst) >= 2).await;
    let start = Instant::now();
    proxy.reset_all();
    wait_until("on_reset ran", LONG, || !seen.lock().unwrap().is_empty()).await;
    let (state, has_socket) = seen.lock().unwrap()[0];
    println!(
        "inside on_reset after {:?}: state {state}, socket {has_socket}",
        start.elapsed()
    );
    assert!(!has_socket, "the socket is gone");
    assert_ne!(
        state,
        State::Connected,
        "state still Connected with no socket"
    );
    cm.disconnect_all().await;
}
