//! Reconnecting after the server closes (FIN), resets (RST) or is down;
//! what `on_reset` returns decides what happens next.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redial::{Manager, ResetReason, Resume, State};
use support::{fast_options, rst, Recorder, TestServer};
use tokio::io::AsyncWriteExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_fin_resets_once_then_connects_again() {
    let mut server = TestServer::start().await;
    let calls = Recorder::new();
    let cm = Manager::new();
    let conn = cm
        .connect_with(server.addr, calls.handler(), fast_options(10, 100))
        .unwrap();
    let first = server.next(5).await;
    calls.wait("connect 1", 1, 5).await;
    drop(first.stream); // FIN
    let _second = server.next(5).await;
    calls.wait("connect 2", 1, 5).await;
    assert_eq!(calls.count("reset PeerClosed"), 1, "{:?}", calls.labels());
    assert_eq!(calls.count("failed"), 0);
    assert_eq!(conn.stats().resets, 1);
    conn.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_rst_resets_once_then_connects_again() {
    let mut server = TestServer::start().await;
    let calls = Recorder::new();
    let cm = Manager::new();
    let conn = cm
        .connect_with(server.addr, calls.handler(), fast_options(10, 100))
        .unwrap();
    let first = server.next(5).await;
    calls.wait("connect 1", 1, 5).await;
    rst(first.stream);
    let _second = server.next(5).await;
    calls.wait("connect 2", 1, 5).await;
    assert_eq!(calls.count("reset PeerReset"), 1, "{:?}", calls.labels());
    conn.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_from_the_server_reaches_on_data() {
    let mut server = TestServer::start().await;
    let calls = Recorder::new();
    let cm = Manager::new();
    let conn = cm.connect(server.addr, calls.handler()).unwrap();
    let mut a = server.next(5).await;
    a.stream.write_all(b"hello").await.unwrap();
    calls.wait_saw(b"hello", 5).await;
    conn.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_with_runs_the_entry_instead_of_on_connect() {
    let mut server = TestServer::start().await;
    let calls = Recorder::new();
    let (a, b, c) = (calls.clone(), calls.clone(), calls.clone());
    let h = redial::handler()
        .on_connect(move |s| a.note(format!("connect {}", s.generation())))
        .on_data(|_, _| {})
        .on_reset(move |_| {
            let c = c.clone();
            Resume::with(move |s| c.note(format!("entry {}", s.generation())))
        })
        .on_close(move |_| b.note("close"));
    let cm = Manager::new();
    let conn = cm
        .connect_with(server.addr, h, fast_options(10, 100))
        .unwrap();
    drop(server.next(5).await);
    let _second = server.next(5).await;
    calls.wait("entry 2", 1, 5).await;
    assert_eq!(
        calls.labels()[..2],
        ["connect 1".to_string(), "entry 2".to_string()]
    );
    conn.disconnect().await;
    assert_eq!(calls.count("close"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_stop_closes_for_good_and_on_close_runs_once() {
    let mut server = TestServer::start().await;
    let calls = Recorder::new();
    let (b, c) = (calls.clone(), calls.clone());
    let h = redial::handler()
        .on_data(|_, _| {})
        .on_reset(move |_| {
            c.note("reset");
            Resume::Stop
        })
        .on_close(move |cl| b.note(format!("close {:?}", cl.reason())));
    let cm = Manager::new();
    let conn = cm
        .connect_with(server.addr, h, fast_options(10, 100))
        .unwrap();
    drop(server.next(5).await);
    let reason = tokio::time::timeout(Duration::from_secs(5), conn.closed())
        .await
        .unwrap();
    assert_eq!(reason, redial::CloseReason::Stopped);
    // A quiet window, 40 times the 10 ms retry delay.
    assert!(
        server.try_next(Duration::from_millis(400)).await.is_none(),
        "reconnected after Stop"
    );
    assert_eq!(calls.labels(), ["reset", "close Stopped"]);
    assert!(cm.connections().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_down_reports_each_failed_attempt_with_growing_delays_then_connects() {
    let mut server = TestServer::start().await;
    server.stop_listening().await;
    let calls = Recorder::new();
    let times = Arc::new(Mutex::new(Vec::new()));
    let t = times.clone();
    let c2 = calls.clone();
    let h = calls.handler().on_connect_failed(move |_, attempt| {
        t.lock().unwrap().push(Instant::now());
        c2.note(format!("failed {attempt}"));
    });
    let cm = Manager::new();
    let conn = cm
        .connect_with(server.addr, h, fast_options(20, 2000))
        .unwrap();
    calls.wait("failed", 5, 10).await;
    server.relisten().await;
    let _held = server.next(10).await;
    calls.wait("connect 1", 1, 10).await;
    let t = times.lock().unwrap().clone();
    let gaps: Vec<Duration> = t.windows(2).map(|w| w[1] - w[0]).collect();
    // 20, 40, 80, 160 ms: each gap at least the schedule's delay, and growing.
    for (i, g) in gaps.iter().take(4).enumerate() {
        let want = Duration::from_millis(20 << i);
        assert!(*g >= want, "gap {i} was {g:?}, schedule says {want:?}");
    }
    assert!(gaps[3] > gaps[0]);
    assert_eq!(calls.count("reset"), 0, "a failed attempt is not a reset");
    assert_eq!(conn.state(), State::Connected);
    conn.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_server_is_retried_on_the_schedule_not_at_once() {
    let mut server = TestServer::start().await;
    let calls = Recorder::new();
    let cm = Manager::new();
    let conn = cm
        .connect_with(server.addr, calls.handler(), fast_options(50, 1000))
        .unwrap();
    let mut at = Vec::new();
    for _ in 0..5 {
        let a = server.next(10).await;
        at.push(a.at);
        drop(a.stream); // accept and close at once
    }
    // The first loss is retried at once; from the second short-lived
    // connection in a row on, the schedule: 50, 100, 200 ms.
    let gaps: Vec<Duration> = at.windows(2).map(|w| w[1] - w[0]).collect();
    for (i, g) in gaps.iter().skip(1).enumerate() {
        assert!(*g >= Duration::from_millis(50 << i), "gap {}: {g:?}", i + 1);
    }
    conn.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stable_connection_is_retried_at_once() {
    let mut server = TestServer::start().await;
    let calls = Recorder::new();
    let cm = Manager::new();
    let opts = fast_options(2000, 4000).stable_after(Duration::from_millis(100));
    let conn = cm.connect_with(server.addr, calls.handler(), opts).unwrap();
    let a = server.next(5).await;
    // Up for twice `stable_after`, counted from when the connection saw
    // itself connected: that is the behaviour under test.
    conn.wait_connected().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let closed = Instant::now();
    drop(a.stream);
    let b = server.next(5).await;
    // Not on the 2 s schedule: immediate.
    assert!(
        b.at - closed < Duration::from_millis(1500),
        "{:?}",
        b.at - closed
    );
    conn.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_short_loss_is_retried_at_once_two_in_a_row_wait_for_the_schedule() {
    let mut server = TestServer::start().await;
    let calls = Recorder::new();
    let cm = Manager::new();
    // stable_after stays at its 5 s default: both connections are short-lived.
    let conn = cm
        .connect_with(server.addr, calls.handler(), fast_options(2000, 4000))
        .unwrap();
    let a = server.next(5).await;
    let closed = Instant::now();
    drop(a.stream);
    let b = server.next(5).await;
    assert!(
        b.at - closed < Duration::from_millis(1500),
        "first short loss waited {:?}",
        b.at - closed
    );
    let closed = Instant::now();
    drop(b.stream);
    let c = server.next(10).await;
    // The schedule's first delay is 2 s (no jitter).
    assert!(
        c.at - closed >= Duration::from_millis(1900),
        "second short loss in a row retried after only {:?}",
        c.at - closed
    );
    conn.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unresolvable_name_is_a_failed_attempt_with_the_resolver_error() {
    let calls = Recorder::new();
    let cm = Manager::new();
    let conn = cm
        .connect_with(
            "no-such-host.invalid:80",
            calls.handler(),
            fast_options(10, 50),
        )
        .unwrap();
    calls.wait("failed 1", 1, 15).await;
    let first = calls
        .labels()
        .into_iter()
        .find(|c| c.starts_with("failed"))
        .unwrap();
    assert!(first.contains("no-such-host.invalid"), "{first}");
    conn.disconnect().await;
    assert_eq!(calls.count("reset"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_attempts_gives_up_with_a_reason() {
    let mut server = TestServer::start().await;
    server.stop_listening().await;
    let calls = Recorder::new();
    let cm = Manager::new();
    let conn = cm
        .connect_with(
            server.addr,
            calls.handler(),
            fast_options(5, 20).max_attempts(3),
        )
        .unwrap();
    let reason = tokio::time::timeout(Duration::from_secs(5), conn.closed())
        .await
        .unwrap();
    assert!(
        matches!(reason, redial::CloseReason::GaveUp { attempts: 3, .. }),
        "{reason:?}"
    );
    assert_eq!(calls.count("failed"), 3);
    assert_eq!(calls.count("close"), 1);
    let _ = ResetReason::PeerClosed;
}
