//! Terminal errors stop: `on_connect_failed` decides whether to retry on
//! schedule, after a delay of its choosing, or give up with the error as
//! the close reason. Against real loopback sockets (a closed port).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::ErrorKind;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redial::{Backoff, CloseReason, Jitter, Manager, Options, Retry, State};
use support::wait_until;
use support::TestServer;

const LONG: Duration = Duration::from_secs(10);

fn long_backoff() -> Options {
    Options::new().backoff(
        Backoff::new(Duration::from_secs(30), 2.0, Duration::from_secs(60))
            .unwrap()
            .with_jitter(Jitter::None),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn give_up_closes_with_the_error_as_the_reason() {
    let mut server = TestServer::sink_on("127.0.0.1").await;
    server.down().await;
    let cm = Manager::new();
    let closed: Arc<Mutex<Option<CloseReason>>> = Arc::default();
    let c = closed.clone();
    let h = redial::handler()
        .on_connect_failed(|err, _| match err.kind() {
            ErrorKind::ConnectionRefused => Retry::GiveUp,
            _ => Retry::OnSchedule,
        })
        .on_close(move |close| *c.lock().unwrap() = Some(close.reason().clone()));
    // A short schedule: were the connection to retry, it would at once.
    let conn = cm
        .connect_with(server.addr, h, support::fast_options(20, 500))
        .unwrap();
    wait_until("closed", LONG, || conn.state() == State::Closed).await;
    wait_until("on_close ran", LONG, || closed.lock().unwrap().is_some()).await;
    match closed.lock().unwrap().clone().unwrap() {
        CloseReason::Terminal {
            attempt: 1,
            kind: ErrorKind::ConnectionRefused,
            error,
        } => assert!(!error.is_empty()),
        other => panic!("closed for {other:?}"),
    }
    // It stays closed: the server coming back changes nothing.
    server.up().await;
    // A quiet window (nothing marks a retry that never comes): ten times
    // the 20 ms retry delay.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(conn.stats().failed_attempts, 1);
    assert_eq!(server.accepted(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_replaces_the_schedules_delay() {
    let mut server = TestServer::sink_on("127.0.0.1").await;
    server.down().await;
    let cm = Manager::new();
    let h = redial::handler().on_connect_failed(|_, _| Retry::After(Duration::from_millis(50)));
    let conn = cm.connect_with(server.addr, h, long_backoff()).unwrap();
    wait_until("two failed attempts", LONG, || {
        conn.stats().failed_attempts >= 2
    })
    .await;
    server.up().await;
    // Far sooner than the schedule's 30 s.
    wait_until("connected", LONG, || conn.state() == State::Connected).await;
    cm.disconnect_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closure_returning_nothing_retries_on_schedule() {
    let mut server = TestServer::sink_on("127.0.0.1").await;
    server.down().await;
    let cm = Manager::new();
    let h = redial::handler().on_connect_failed(|_, _| {});
    let conn = cm
        .connect_with(server.addr, h, support::fast_options(20, 500))
        .unwrap();
    wait_until("two failed attempts", LONG, || {
        conn.stats().failed_attempts >= 2
    })
    .await;
    server.up().await;
    wait_until("connected", LONG, || conn.state() == State::Connected).await;
    cm.disconnect_all().await;
}
