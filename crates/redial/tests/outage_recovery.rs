//! A server restarted after an outage is found again on the default
//! backoff's schedule, and a second outage soon after starts that schedule
//! over instead of going on from where the first one ended; every
//! `ConnectFailed` event tells the backoff level its delay was drawn at.
//! Many connections to one endpoint share a probe, which looks more often
//! than the doubling schedule and notices the return within
//! `max(500 ms, T / 16)` of an outage of length T.
//! Real sockets through the chaos proxy; the checks are on the delays the
//! connections chose (from their events), not on how fast the machine is.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redial::{Backoff, Event, EventKind, Events, Manager, State};
use redial_chaos::Proxy;
use support::{wait_until, TestServer};

const LONG: Duration = Duration::from_secs(20);
/// The default jitter is ±20 %.
const JITTER: f64 = 1.2;

/// Every `ConnectFailed` until the next `Connected`: (when, retry_in, level).
async fn failures_until_connected(events: &mut Events) -> Vec<(Instant, Duration, u32)> {
    let mut out = Vec::new();
    loop {
        let e = tokio::time::timeout(LONG, events.recv())
            .await
            .expect("an event")
            .expect("the manager is alive");
        match e.kind {
            EventKind::ConnectFailed {
                retry_in, level, ..
            } => out.push((e.at, retry_in.expect("never gives up"), level)),
            EventKind::Connected { .. } => return out,
            _ => {}
        }
    }
}

/// Plays a restart: connections reset, the port refuses for `down`, then
/// the server is back. Returns when it is back.
async fn restart(proxy: &Proxy, down: Duration) -> Instant {
    proxy.refuse();
    proxy.reset_all();
    tokio::time::sleep(down).await;
    proxy.accept().unwrap();
    Instant::now()
}

// Issue 20: a second outage within `stable_after` went on from the level
// the first one had reached (first retry 2.7 s after the loss, then
// `retry_in: 6.25s`), so a restarted member was slow to be used again. A
// connection made after failed attempts now starts the schedule over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_outage_soon_after_the_first_starts_the_schedule_over() {
    let server = TestServer::echo().await;
    let proxy = Proxy::builder()
        .seed(60)
        .start("127.0.0.1:0", server.addr)
        .await
        .unwrap();
    let cm = Manager::new();
    let mut events = cm.events();
    // The default options: the backoff the Backoff::DEFAULT_INITIAL doc speaks of.
    let conn = cm.connect(proxy.local_addr(), redial::handler()).unwrap();
    conn.wait_connected().await.unwrap();
    conn.send("hi").unwrap();
    wait_until("round trip", LONG, || server.total_received() >= 2).await;
    let _ = failures_until_connected(&mut events).await; // the first connect

    // Two outages of 2 s, the second right after the first (well within
    // the default stable_after of 5 s).
    for outage in 0..2 {
        let lost = Instant::now();
        let back = restart(&proxy, Duration::from_secs(2)).await;
        let outage_len = back - lost;
        let failed = failures_until_connected(&mut events).await;
        assert!(failed.len() >= 3, "outage {outage}: {failed:?}");
        let levels: Vec<u32> = failed.iter().map(|f| f.2).collect();
        // The schedule from its start: levels 0, 1, 2, ... and each delay
        // within the default jitter of its level.
        let want: Vec<u32> = (0..failed.len() as u32).collect();
        assert_eq!(levels, want, "outage {outage}: {failed:?}");
        for &(_, retry_in, level) in &failed {
            let base =
                Backoff::DEFAULT_INITIAL.mul_f64(Backoff::DEFAULT_MULTIPLIER.powi(level as i32));
            assert!(
                retry_in <= base.mul_f64(JITTER) && retry_in >= base.mul_f64(2.0 - JITTER),
                "outage {outage}: retry_in {retry_in:?} at level {level}"
            );
        }
        let last = failed
            .iter()
            .rev()
            .find(|f| f.0 <= back)
            .expect("a failure before the server came back");
        let found_after = (last.0 + last.1).saturating_duration_since(back);
        println!(
            "outage {outage} ({outage_len:?}): {} failed attempts, levels {levels:?}, next attempt {found_after:?} after the restart",
            failed.len()
        );
        // Doubling delays: found within about the outage's length again.
        assert!(
            found_after <= outage_len.mul_f64(2.0) + Backoff::DEFAULT_INITIAL,
            "outage {outage}: next attempt planned {found_after:?} after the restart"
        );
        assert_eq!(conn.state(), State::Connected);
    }
    cm.disconnect_all().await;
}

/// The probe never waits longer than this for the outage's sake.
const PROBE_FLOOR: Duration = Duration::from_millis(500);

/// Collects every event of `cm` from now on.
fn collect(mut events: Events) -> Arc<Mutex<Vec<Event>>> {
    let out = Arc::new(Mutex::new(Vec::new()));
    let o = out.clone();
    tokio::spawn(async move {
        while let Some(e) = events.recv().await {
            o.lock().unwrap().push(e);
        }
    });
    out
}

// With the connections' own doubling schedule, the probe's attempt after
// an 8 s outage came up to ~6 s after the server was back (and thousands
// of waiting connections with it). A probe shared by many connections
// now looks every max(500 ms, T / 16): a few more attempts, all from one
// connection, and the return is noticed within 500 ms here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_shared_by_many_connections_notices_the_return_within_a_sixteenth_of_the_outage() {
    const N: usize = 32;
    const OUTAGE: Duration = Duration::from_secs(8);
    let server = TestServer::echo().await;
    let proxy = Proxy::builder()
        .seed(61)
        .start("127.0.0.1:0", server.addr)
        .await
        .unwrap();
    let cm = Manager::new();
    let conns: Vec<_> = (0..N)
        .map(|_| cm.connect(proxy.local_addr(), redial::handler()).unwrap())
        .collect();
    for c in &conns {
        c.wait_connected().await.unwrap();
    }
    let events = collect(cm.events());

    let lost = Instant::now();
    let back = restart(&proxy, OUTAGE).await;
    let took = wait_until("every connection back", LONG, || {
        conns.iter().all(|c| c.state() == State::Connected)
    })
    .await;

    let events = events.lock().unwrap().clone();
    let mut failed: HashMap<u64, Vec<(Instant, Duration)>> = HashMap::new();
    for e in &events {
        if let EventKind::ConnectFailed { retry_in, .. } = &e.kind {
            let retry_in = retry_in.expect("never gives up");
            failed
                .entry(e.connection)
                .or_default()
                .push((e.at, retry_in));
        }
    }
    // One connection tried the endpoint after the loss and probed it; the
    // others waited for its verdicts without attempts of their own.
    assert_eq!(failed.len(), 1, "connections with failed attempts");
    let probes = failed.values().next().expect("failed attempts");
    // Each probe's delay within max(500 ms, the outage so far / 16): the
    // outage so far is at most the time since the loss.
    for &(at, retry_in) in probes {
        let bound = PROBE_FLOOR.max(at.saturating_duration_since(lost) / 16);
        assert!(
            retry_in <= bound,
            "probe at +{:?}: retry_in {retry_in:?} > {bound:?}",
            at - lost
        );
    }
    let last = probes
        .iter()
        .filter(|p| p.0 <= back)
        .max_by_key(|p| p.0)
        .expect("a probe before the return");
    let noticed_after = (last.0 + last.1).saturating_duration_since(back);
    println!(
        "{} probes in {OUTAGE:?}, the next one planned {noticed_after:?} after the return; all {N} back in {took:?}",
        probes.len()
    );
    assert!(noticed_after <= PROBE_FLOOR.max(OUTAGE / 16));
    // More often than doubling (~6 attempts in 8 s), far fewer than the
    // connections' schedules together.
    assert!(
        probes.len() >= 10 && probes.len() <= 30,
        "{} probes",
        probes.len()
    );
    cm.disconnect_all().await;
}
