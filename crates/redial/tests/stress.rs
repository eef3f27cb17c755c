//! A seeded, bounded stress test: random concurrent operations against echo
//! servers behind `redial-chaos` proxies that inject random faults, on a
//! `current_thread` runtime and then on a 2-worker one.
//!
//! Several workers at once connect, send on every path (`Connection::send`
//! and `write`, `Socket::send` on live and stale sockets, `Sender` bursts
//! that are flushed or dropped holding bytes, `Pool::send`, `pick`,
//! `send_wait`), create pools, add to them (also while they are being
//! disconnected), disconnect them through current and stale handles, look
//! things up, wait, `disconnect`/`abort` connections in any phase, and
//! call `disconnect_all`. Handlers sometimes panic, disconnect themselves,
//! or answer `Resume::With`/`Stop`; one event subscriber keeps up and one
//! lags. Each round ends with an awaited `disconnect_all`.
//!
//! Checked continuously:
//! - callbacks of one connection never overlap and never follow `on_close`;
//!   `on_close` runs at most once; no `on_connect` (or `Resume::With` entry)
//!   once a `disconnect()`/`abort()` covering the connection has returned;
//! - what a connection reads back is whole frames of its own current
//!   connection (nothing of an old connection leaks into a new one);
//! - each server connection gets every producer's frames in order, whole;
//! - an awaited `disconnect` returns after `on_close`, within 10 s;
//! - `Pool::send_wait` returns by its timeout; every member whose
//!   `add_connection` returned `Ok` closes with its pool; an old pool
//!   handle's `disconnect` leaves a newer pool of the name registered, and
//!   a name is never held by two open pools; no event follows a
//!   connection's `Closed` event;
//! - a watchdog thread exits the process (printing the seed) when the
//!   runtime runs nothing for 5 s or an operation overruns its bound by 5 s.
//!
//! Checked at the end of each round:
//! - every connection ran `on_close` exactly once and is closed, the manager
//!   lists none, and the servers hold no connection 1 s later;
//! - the byte ledger: accepted bytes = written (`Stats::bytes_out`) + handed
//!   back (`SendError`, `Reset::take_unsent`, `Close::take_unsent`) +
//!   discarded (`Stats::discarded_bytes`: a dropped `Sender`'s refused
//!   bytes); no frame arrives twice, or arrives although
//!   it was handed back or refused; between two frames one producer sent
//!   on one connection nothing accepted is missing (loss only as a tail);
//! - tasks of the runtime and open descriptors come back to their start.
//!
//! Checks of defects whose fix has not landed yet are listed in
//! `stress_support::AWAITING_FIX` and skipped, with the operations that
//! provoke them, unless `REDIAL_STRESS_ALL=1`.
//!
//! Environment: `REDIAL_STRESS_SEED` (default: from the clock; the seed is
//! printed, and printed again on failure), `REDIAL_STRESS_SECS` (seconds of
//! operations per runtime flavour, default 12). Replay or run longer:
//! `REDIAL_STRESS_SEED=42 REDIAL_STRESS_SECS=60 cargo test -p redial --test stress -- --nocapture`.
//! Runs are seeded but not deterministic: the scheduler interleaves.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod stress_support;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redial::{EventKind, Manager};
use redial_chaos::{Proxy, SplitMix64};
use stress_support::ledger::{Ledger, Totals};
use stress_support::ops::{self, World};
use stress_support::server::EchoServer;
use stress_support::watchdog::Watchdog;
use stress_support::{open_fds, Violations};

const WORKERS: usize = 6;
const SERVERS: usize = 3;
/// Seconds of operations per round: each round ends with the checks of a
/// full shutdown.
const ROUND_SECS: u64 = 4;

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
    )
}

#[test]
fn random_operations_under_faults_keep_every_promise() {
    stress_support::quiet_deliberate_panics();
    let seed = env_u64("REDIAL_STRESS_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let secs = env_u64("REDIAL_STRESS_SECS").unwrap_or(12).max(1);
    println!("stress: seed {seed}, {secs} s per runtime flavour (replay: REDIAL_STRESS_SEED={seed} REDIAL_STRESS_SECS={secs})");
    let dog = Watchdog::start();
    let mut failures = Vec::new();
    for multi in [false, true] {
        let flavour = if multi {
            "multi_thread(2)"
        } else {
            "current_thread"
        };
        let label = format!("seed {seed}, {flavour}");
        let rt = if multi {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
        } else {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
        }
        .unwrap();
        // Counted with the runtime built: the first one also opens tokio's
        // process-wide signal pipe, which stays.
        let fds = open_fds();
        let fds_at_start = stress_support::fd_targets();
        let broken = rt.block_on(run_flavour(seed ^ u64::from(multi), secs, &dog, &label));
        dog.pause();
        rt.shutdown_timeout(Duration::from_secs(5));
        failures.extend(broken.into_iter().map(|b| format!("[{label}] {b}")));
        let started = Instant::now();
        while open_fds() > fds && started.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(10));
        }
        if open_fds() > fds {
            failures.push(format!(
                "[{label}] {} descriptors open at the end, {fds} at the start: {:?} then {:?}",
                open_fds(),
                fds_at_start,
                stress_support::fd_targets()
            ));
        }
    }
    dog.stop();
    assert!(
        failures.is_empty(),
        "stress: seed {seed} broke {} invariants (replay: REDIAL_STRESS_SEED={seed} REDIAL_STRESS_SECS={secs}):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Rounds of operations on the current runtime; what broke.
async fn run_flavour(seed: u64, secs: u64, dog: &Arc<Watchdog>, label: &str) -> Vec<String> {
    let d = dog.clone();
    let ticker = tokio::spawn(async move {
        loop {
            d.tick();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let metrics = tokio::runtime::Handle::current().metrics();
    let tasks = metrics.num_alive_tasks();
    let mut broken = Vec::new();
    let rounds = secs.div_ceil(ROUND_SECS);
    let mut rng = SplitMix64::new(seed);
    for r in 0..rounds {
        let length = Duration::from_secs(secs.min(ROUND_SECS * (r + 1)) - ROUND_SECS * r);
        dog.set_label(format!("{label}, round {r}"));
        let (v, t, done) = round(rng.next_u64(), length, dog).await;
        println!("stress: {label}, round {r}: {t:?}\nstress:   operations {done:?}");
        broken.extend(v.into_iter().map(|b| format!("round {r}: {b}")));
    }
    let started = Instant::now();
    while metrics.num_alive_tasks() > tasks && started.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if metrics.num_alive_tasks() > tasks {
        broken.push(format!(
            "{} tasks alive at the end, {tasks} at the start",
            metrics.num_alive_tasks()
        ));
    }
    ticker.abort();
    broken
}

/// One round: servers, proxies, a manager, workers for `length`, then the
/// shutdown and its checks.
async fn round(
    seed: u64,
    length: Duration,
    dog: &Arc<Watchdog>,
) -> (Vec<String>, Totals, HashMap<&'static str, u64>) {
    let mut rng = SplitMix64::new(seed);
    let v = Violations::default();
    let ledger = Arc::new(Ledger::default());
    let mut servers = Vec::new();
    let mut proxies = Vec::new();
    for i in 0..SERVERS {
        let s = EchoServer::start(i as u64, ledger.clone(), v.clone()).await;
        let p = Proxy::builder()
            .seed(rng.next_u64())
            .start("127.0.0.1:0", s.addr)
            .await
            .unwrap();
        proxies.push(Arc::new(p));
        servers.push(s);
    }
    // Every server behind its proxy, and the first one directly too.
    let mut endpoints: Vec<_> = proxies.iter().map(|p| p.local_addr()).collect();
    endpoints.push(servers[0].addr);
    let world = World::new(
        Manager::new(),
        endpoints,
        ledger.clone(),
        v.clone(),
        dog.clone(),
    );

    let subscribers = [
        subscriber(&world, false, rng.fork()),
        subscriber(&world, true, rng.fork()),
    ];
    let stop = Arc::new(AtomicBool::new(false));
    let chaos: Vec<_> = proxies
        .iter()
        .map(|p| {
            let (p, stop, mut rng) = (p.clone(), stop.clone(), rng.fork());
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(rng.between(50, 600))).await;
                    if rng.below(3) == 0 {
                        let _ = p.heal();
                    } else {
                        let _ = p.random_fault();
                    }
                }
            })
        })
        .collect();
    let deadline = tokio::time::Instant::now() + length;
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (w, mut rng) = (world.clone(), rng.fork());
            tokio::spawn(async move {
                while tokio::time::Instant::now() < deadline {
                    ops::step(&w, &mut rng).await;
                }
            })
        })
        .collect();
    for w in workers {
        if let Err(e) = w.await {
            v.add(format!("a worker failed: {e}"));
        }
    }
    stop.store(true, Ordering::SeqCst);
    for c in chaos {
        let _ = c.await;
    }
    for p in &proxies {
        let _ = p.heal();
    }

    ops::finish(&world).await;
    let closed_at = Instant::now();
    loop {
        let open: Vec<usize> = servers.iter().map(EchoServer::open).collect();
        if open.iter().all(|&n| n == 0) {
            break;
        }
        // A safety net, not a speed claim: the sockets are closed when
        // disconnect_all returns; the servers only have to be scheduled.
        if closed_at.elapsed() > Duration::from_secs(10) {
            v.add(format!(
                "10 s after the final disconnect_all the servers still hold connections: {open:?}"
            ));
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (bytes_out, discarded, queued) = ops::totals(&world);
    if queued != 0 {
        v.add(format!(
            "{queued} bytes still queued after every connection closed"
        ));
    }
    let totals = ledger.settle(&v, bytes_out, discarded);

    for s in subscribers {
        s.abort();
        let _ = s.await;
    }
    for p in &proxies {
        p.shutdown().await;
    }
    drop(proxies);
    for s in servers {
        s.shutdown().await;
    }
    let done = std::mem::take(&mut *world.done.lock().unwrap());
    drop(world);
    (v.take(), totals, done)
}

/// An event subscriber. One that keeps up checks that nothing follows a
/// connection's `Closed` event; a lagging one only must not hold anything up.
fn subscriber(
    world: &Arc<World>,
    lagging: bool,
    mut rng: SplitMix64,
) -> tokio::task::JoinHandle<()> {
    let mut events = world.cm.events();
    let v = world.v.clone();
    tokio::spawn(async move {
        let mut closed = HashSet::new();
        while let Some(e) = events.recv().await {
            if lagging {
                tokio::time::sleep(Duration::from_millis(rng.between(5, 50))).await;
                continue;
            }
            if events.missed() > 0 {
                continue;
            }
            if closed.contains(&e.connection) {
                v.add(format!(
                    "event {:?} for connection {} after its Closed event",
                    e.kind, e.connection
                ));
            }
            if matches!(e.kind, EventKind::Closed { .. }) {
                closed.insert(e.connection);
            }
        }
    })
}
