//! A server restarted after an outage is found again on the default
//! backoff's schedule, and a second outage soon after starts that schedule
//! over instead of going on from where the first one ended; every
//! `ConnectFailed` event tells the backoff level its delay was drawn at.
//! Real sockets through the chaos proxy; the checks are on the delays the
//! connection chose (from its events), not on how fast the machine is.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{wait_until, TestServer};
use redial::{Backoff, EventKind, Events, Manager, State};
use redial_chaos::Proxy;

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
