//! Which members a pool uses, against real loopback servers and the
//! chaos proxy: a member that flaps is skipped by every pool call alike
//! and comes back by time alone; restarts are not flapping; a pool never
//! skips all its connected members; picks and sends are spread over the
//! live members only, and pass over full queues.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::time::Duration;

use redial::{Connection, Manager, Pool, SendError, State};
use redial_chaos::Proxy;
use support::{fast_options, wait_until, TestServer};

const LONG: Duration = Duration::from_secs(10);

/// How often each member was picked in `n` picks, by member id.
fn picks(pool: &Pool, n: usize, pick: impl Fn(&Pool) -> Option<Connection>) -> HashMap<u64, usize> {
    let mut seen = HashMap::new();
    for _ in 0..n {
        let c = pick(pool).expect("a live member");
        *seen.entry(c.id()).or_insert(0) += 1;
    }
    seen
}

/// Losses that make a member flap when the server accepts and drops every
/// connection: the loss right after the immediate retry is not counted
/// (see `Pool::FLAPPING_AFTER`), so one more than the count.
const FLAP_LOSSES: u64 = redial::Pool::FLAPPING_AFTER as u64 + 1;

/// A bound for waits that depend on how busy the machine is: the waits
/// end on their condition; this only stops a test that would hang.
const GENEROUS: Duration = Duration::from_secs(60);

/// Plays a server that accepts and drops every connection (the proxy
/// resets each one as soon as it reaches the server) until `member` has
/// lost [`FLAP_LOSSES`] connections, then behaves. Returns once the member
/// is connected on a connection that carried one byte to the server and
/// back: one the healed proxy let through, which stays. The server has
/// then received that byte.
///
/// On a busy machine a connect often loses the race with the proxy's
/// reset (a failed attempt, not a loss) and the schedule backs off, so the
/// losses take a while; and the proxy may reset a connection it took before
/// the heal some time after redial saw it up. Hence conditions to wait
/// for, under a generous bound, rather than times.
async fn flap_then_behave(proxy: &Proxy, member: &Connection) {
    proxy.cut_after(0);
    wait_until(
        "the member lost enough connections to flap",
        GENEROUS,
        || member.stats().resets >= FLAP_LOSSES,
    )
    .await;
    proxy.heal().unwrap();
    let mut probed_on = 0; // the connection (by count) the probe went on
    wait_until("a connection through the healed proxy", GENEROUS, || {
        if proxy.stats().bytes_downstream >= 1 {
            return member.state() == State::Connected;
        }
        let connects = member.stats().connects;
        if member.state() == State::Connected && connects != probed_on && member.send("?").is_ok() {
            probed_on = connects;
        }
        false
    })
    .await;
}

// Regression test (issue 20, bug 2): a member that flapped contradicted
// itself: `live()` counted it and `wait_live` returned, while `pick()`
// skipped it; and when it became usable by time alone (its connection up
// `stable_after`), nothing woke a waiter. Now every call counts the same
// members, and `wait_live` wakes on that time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_member_is_skipped_by_every_pool_call_and_returns_by_time_alone() {
    const STABLE: Duration = Duration::from_millis(1500);
    let server = TestServer::echo().await;
    let proxy = Proxy::builder()
        .seed(50)
        .start("127.0.0.1:0", server.addr)
        .await
        .unwrap();
    let cm = Manager::new();
    let pool = cm.create_pool("flappy").unwrap();
    let opts = fast_options(20, 500).stable_after(STABLE);
    let steady = pool
        .add_connection_with(server.addr, redial::handler(), opts.clone())
        .unwrap();
    tokio::time::timeout(LONG, pool.wait_live(1)).await.unwrap();
    let flappy = pool
        .add_connection_with(proxy.local_addr(), redial::handler(), opts)
        .unwrap();
    flap_then_behave(&proxy, &flappy).await;

    // Connected, but it flaps: no call counts it.
    let seen = picks(&pool, 50, Pool::pick);
    let live = pool.live();
    let uptime = flappy.stats().uptime.unwrap_or_default();
    if uptime < STABLE {
        assert_eq!(live, 1, "live() counts a flapping member");
        assert_eq!(seen.keys().copied().collect::<Vec<_>>(), [steady.id()]);
        assert!(pool.is_ready());
    }
    // It becomes live by time alone: the waiter must wake for it.
    tokio::time::timeout(GENEROUS, pool.wait_live(2))
        .await
        .expect("wait_live(2) woke when the member had been up stable_after");
    let uptime = flappy.stats().uptime.expect("still up");
    assert!(
        uptime >= STABLE,
        "wait_live(2) returned while it still flapped: {uptime:?}"
    );
    let seen = picks(&pool, 50, Pool::pick);
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(pool.live(), 2);
    cm.disconnect_all().await;
}

// Regression test (issue 20, bug 4, second half): a pool whose connected
// members all flapped refused every one of them (`pick()` None, `send`
// "not connected") while `live()` said they were up. A pool never skips
// all its connected members on the flap rule alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_whose_only_connected_member_flaps_still_uses_it() {
    let server = TestServer::echo().await;
    let proxy = Proxy::builder()
        .seed(51)
        .start("127.0.0.1:0", server.addr)
        .await
        .unwrap();
    let cm = Manager::new();
    let pool = cm.create_pool("alone").unwrap();
    // stable_after far away: the member flaps for the whole test.
    let opts = fast_options(20, 500).stable_after(Duration::from_secs(600));
    let only = pool
        .add_connection_with(proxy.local_addr(), redial::handler(), opts)
        .unwrap();
    flap_then_behave(&proxy, &only).await;
    let probe = server.total_received();
    assert_eq!(pool.live(), 1);
    assert!(pool.is_ready());
    assert_eq!(pool.pick().map(|c| c.id()), Some(only.id()));
    pool.send("x").expect("send to the only connected member");
    tokio::time::timeout(LONG, pool.send_wait("y", LONG))
        .await
        .unwrap()
        .unwrap();
    wait_until("both echoed", LONG, || server.total_received() >= probe + 2).await;
    cm.disconnect_all().await;
}

// Regression test (issue 20, bug 4): a kill counted as two losses (the
// immediate retry lands on the dying server, which accepts and resets it),
// so the second kill within `stable_after` made a member "flapping" and the
// pool skipped it for `stable_after` although the server was back. Each
// kill here is played by the chaos proxy: every connection is reset, new
// ones are still accepted and reset for a moment (the dying server), then
// the port refuses for 300 ms, then the server is back. After two kills
// the restarted members are live at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_restarts_within_stable_after_do_not_make_members_flap() {
    let server = TestServer::echo().await;
    let proxy = Proxy::builder()
        .seed(52)
        .start("127.0.0.1:0", server.addr)
        .await
        .unwrap();
    let cm = Manager::new();
    let pool = cm.create_pool("restarts").unwrap();
    // Long stable_after: a member marked flapping would stay skipped for
    // the rest of the test, however slow the machine.
    let opts = fast_options(20, 500).stable_after(Duration::from_secs(600));
    let steady = pool
        .add_connection_with(server.addr, redial::handler(), opts.clone())
        .unwrap();
    let restarted: Vec<Connection> = (0..3)
        .map(|_| {
            pool.add_connection_with(proxy.local_addr(), redial::handler(), opts.clone())
                .unwrap()
        })
        .collect();
    tokio::time::timeout(LONG, pool.wait_live(4)).await.unwrap();
    // A round trip on each, so the proxy's links are running.
    for c in &restarted {
        c.send("hi").unwrap();
    }
    wait_until("round trips", LONG, || server.total_received() >= 6).await;

    let mut dying_accepts = 0;
    for kill in 0..2 {
        let before = proxy.stats().accepted;
        let connects: u64 = restarted.iter().map(|c| c.stats().connects).sum();
        // The kill: connections reset, and for a moment new ones are
        // accepted and reset (the retries that land on the dying server).
        proxy.cut_after(0);
        proxy.reset_all();
        wait_until("every member lost", LONG, || {
            restarted.iter().all(|c| c.state() != State::Connected)
        })
        .await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        proxy.refuse();
        dying_accepts += proxy.stats().accepted - before;
        tokio::time::sleep(Duration::from_millis(300)).await;
        proxy.heal().unwrap();
        wait_until("every member back", LONG, || {
            restarted.iter().all(|c| c.state() == State::Connected)
        })
        .await;
        let now: u64 = restarted.iter().map(|c| c.stats().connects).sum();
        assert!(now > connects, "kill {kill}: no reconnect");
        // Back after the restart: every member is live at once, not
        // after stable_after (600 s).
        let live = pool.live();
        let seen = picks(&pool, 40, Pool::pick);
        assert_eq!(
            (live, seen.len()),
            (4, 4),
            "kill {kill}: restarted members skipped as flapping: resets {:?}, picks {seen:?}",
            restarted
                .iter()
                .map(|c| c.stats().resets)
                .collect::<Vec<_>>()
        );
    }
    let resets: Vec<u64> = restarted.iter().map(|c| c.stats().resets).collect();
    println!("two kills: {dying_accepts} retries landed on the dying server; resets per member {resets:?}");
    assert!(steady.stats().resets == 0);
    cm.disconnect_all().await;
}

// Issue 20: with a member down, `pick()` gave the dead member's turn to
// the next one (A 27, B 0, C 54 per 500 ms). It rotates over live members
// only now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pick_spreads_evenly_over_the_live_members_while_one_is_down() {
    let server = TestServer::echo().await;
    let proxy = Proxy::builder()
        .seed(53)
        .start("127.0.0.1:0", server.addr)
        .await
        .unwrap();
    let cm = Manager::new();
    let pool = cm.create_pool("fair").unwrap();
    let a = pool
        .add_connection_with(server.addr, redial::handler(), fast_options(20, 500))
        .unwrap();
    let b = pool
        .add_connection_with(proxy.local_addr(), redial::handler(), fast_options(20, 500))
        .unwrap();
    let c = pool
        .add_connection_with(server.addr, redial::handler(), fast_options(20, 500))
        .unwrap();
    tokio::time::timeout(LONG, pool.wait_live(3)).await.unwrap();
    b.send("hi").unwrap();
    wait_until("round trip through the proxy", LONG, || {
        server.total_received() >= 2
    })
    .await;
    proxy.refuse();
    proxy.reset_all();
    wait_until("B down", LONG, || pool.live() == 2).await;

    const N: usize = 3000;
    let seen = picks(&pool, N, Pool::pick);
    let (na, nb, nc) = (seen.get(&a.id()), seen.get(&b.id()), seen.get(&c.id()));
    println!("{N} picks with B down: A {na:?}, B {nb:?}, C {nc:?}");
    assert_eq!(nb, None, "picked the member that is down");
    for n in [na, nc] {
        let n = *n.expect("both live members picked");
        // Each should have half; a generous band (turn order shifts only
        // when a member comes or goes).
        assert!((N * 2 / 5..=N * 3 / 5).contains(&n), "uneven: {seen:?}");
    }
    let sent = picks(&pool, 300, |p| {
        p.send("s").unwrap();
        p.pick()
    });
    assert!(!sent.contains_key(&b.id()));
    cm.disconnect_all().await;
}

/// A loopback server that accepts and never reads: what is sent to it
/// fills the kernel's buffers, then the member's queue.
async fn stuck_server() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    (addr, task)
}

/// Sends to `c` until its queue refuses even one byte more.
fn fill_once(c: &Connection) -> usize {
    let mut queued = 0;
    for size in [256 * 1024, 4096, 64, 1] {
        let chunk = vec![0u8; size];
        for i in 0.. {
            assert!(i < 100_000, "the queue never filled");
            match c.send(&chunk) {
                Ok(()) => {}
                Err(SendError::Full { queued: q, .. }) => {
                    queued = q;
                    break;
                }
                Err(e) => panic!("filling: {e}"),
            }
            if size > 4096 {
                // Let the kernel's buffers fill first.
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
    queued
}

/// Fills `c`'s queue (its server never reads) until the kernel takes no
/// more of it either: the kernel's buffers grow for a while after they
/// first look full, so the queue is full only once nothing more goes out.
fn fill(c: &Connection) -> usize {
    for _ in 0..100 {
        let queued = fill_once(c);
        let out = c.stats().bytes_out;
        std::thread::sleep(Duration::from_millis(200));
        if c.stats().bytes_out == out {
            return queued;
        }
    }
    panic!("the kernel kept taking bytes from a server that never reads");
}

// Issue 20: `pick_least_queued` drew two samples that could be the same
// member, so it chose a member with 4 MiB queued 17 % of the time; and
// `Pool::send` gave up on a full member while others sat idle (991 of
// 1,000 sends refused). Now the two samples are distinct members, and a
// full member passes the bytes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_members_are_passed_over_by_pick_least_queued_and_send() {
    let server = TestServer::echo().await;
    let (stuck, _task) = stuck_server().await;
    let cm = Manager::new();
    let pool = cm.create_pool("loaded").unwrap();
    let opts = fast_options(20, 500).send_queue_limit(1 << 20);
    let full = pool
        .add_connection_with(stuck, redial::handler(), opts.clone())
        .unwrap();
    let idle: Vec<Connection> = (0..2)
        .map(|_| {
            pool.add_connection_with(server.addr, redial::handler(), opts.clone())
                .unwrap()
        })
        .collect();
    tokio::time::timeout(LONG, pool.wait_live(3)).await.unwrap();
    let queued = tokio::task::block_in_place(|| fill(&full));
    assert!(queued > 0);

    let seen = picks(&pool, 1000, Pool::pick_least_queued);
    println!("pick_least_queued, one member full ({queued} B queued): {seen:?}");
    assert_eq!(
        seen.get(&full.id()),
        None,
        "chose the full member: {seen:?}"
    );

    // What the full member takes meanwhile (its kernel buffers may still
    // drain a little): none of it reaches the echo server.
    let held = |c: &Connection| c.stats().bytes_out + c.stats().queued as u64;
    let full_before = held(&full);
    let mut refused = 0;
    for _ in 0..1000 {
        if pool.send("0123456789").is_err() {
            refused += 1;
        }
    }
    assert_eq!(refused, 0, "sends refused while two members had room");
    let took = (held(&full) - full_before) as usize;
    let got = 1000 * 10 - took;
    println!("1000 pool sends with one member full: {refused} refused, {took} B taken by the full member");
    wait_until("every byte echoed by the idle members", LONG, || {
        server.total_received() >= got
    })
    .await;
    assert_eq!(server.total_received(), got);
    let _ = idle;

    // Only the full member left: the bytes come back, as Full.
    let lone = cm.create_pool("lone").unwrap();
    let member = lone
        .add_connection_with(stuck, redial::handler(), opts)
        .unwrap();
    tokio::time::timeout(LONG, lone.wait_live(1)).await.unwrap();
    tokio::task::block_in_place(|| fill(&member));
    // Half the queue's limit: no room for it in a full queue.
    let big = vec![b'b'; 512 * 1024];
    match lone.send(&big) {
        Err(SendError::Full { data, .. }) => assert!(data == big),
        other => panic!("expected Full with the bytes, got {other:?}"),
    }
    let r = lone.send_wait(&big, Duration::from_millis(300)).await;
    assert!(r.is_err(), "a full member took bytes: {r:?}");
    for c in [&full, &member] {
        c.abort();
    }
    cm.disconnect_all().await;
}
