//! What a newcomer meets in the first hour: errors that name their real
//! cause and print short, sends refused from the moment `disconnect` is
//! called, waiting for a connection from synchronous code, a connection
//! that outlives the `Manager` value it came from, and a handler that knows
//! which connection it serves.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use redial::{CloseReason, Manager, Options, SendError, WaitError};
use support::{fast_options, read_to_end, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_after_disconnect_is_refused_at_once_as_disconnected() {
    let mut server = TestServer::start().await;
    let cm = Manager::new();
    let conn = cm
        .connect_with(server.addr, redial::handler(), fast_options(10, 100))
        .unwrap();
    let peer = server.next(5).await;
    let sock = conn.wait_connected().await.unwrap();
    conn.send("before;").unwrap();
    let closing = conn.disconnect();
    // Not yet closed: the disconnect is still flushing, yet nothing new
    // is taken from the call on.
    let err = conn.send("after").unwrap_err();
    assert_eq!(
        err,
        SendError::Disconnected {
            data: b"after".to_vec()
        }
    );
    assert!(
        err.to_string().contains("disconnect"),
        "the message names the disconnect: {err}"
    );
    assert!(matches!(
        sock.send("after"),
        Err(SendError::Disconnected { .. })
    ));
    closing.await;
    assert!(matches!(
        conn.send("later"),
        Err(SendError::Disconnected { .. })
    ));
    // What was sent before the call went out, then the FIN.
    assert_eq!(read_to_end(peer.stream, 5).await, b"before;");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_waiting_for_room_is_refused_when_disconnect_is_called() {
    let mut server = TestServer::start().await;
    let cm = Manager::new();
    let opts = fast_options(10, 100).send_queue_limit(1024);
    let conn = cm
        .connect_with(server.addr, redial::handler(), opts)
        .unwrap();
    // The peer never reads: the queue fills and the writer waits.
    let _peer = server.next(5).await;
    conn.wait_connected().await.unwrap();
    let writer = {
        let conn = conn.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = conn.write(vec![7u8; 64 * 1024]).await {
                    return e;
                }
            }
        })
    };
    harness_wait(|| conn.stats().queued > 0).await;
    conn.disconnect();
    let err = tokio::time::timeout(Duration::from_secs(10), writer)
        .await
        .expect("the waiting writer is released")
        .unwrap();
    assert!(matches!(err, SendError::Disconnected { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_gave_up_says_why_a_send_is_refused() {
    // A port nothing listens on: a listener bound and dropped.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let cm = Manager::new();
    let conn = cm
        .connect_with(addr, redial::handler(), fast_options(1, 2).max_attempts(1))
        .unwrap();
    let reason = conn.closed().await;
    assert!(matches!(reason, CloseReason::GaveUp { .. }), "{reason}");
    let err = conn.send("x").unwrap_err();
    match &err {
        SendError::ConnectionClosed { data, reason } => {
            assert_eq!(data, b"x");
            assert!(matches!(reason, CloseReason::GaveUp { .. }));
        }
        other => panic!("expected ConnectionClosed, got {other:?}"),
    }
    assert!(err.to_string().contains("gave up"), "{err}");
    assert!(!err.to_string().contains("socket"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_of_a_lost_connection_says_so_not_disconnected() {
    let mut server = TestServer::start().await;
    let cm = Manager::new();
    let conn = cm
        .connect_with(server.addr, redial::handler(), fast_options(10, 100))
        .unwrap();
    let first = server.next(5).await;
    let old = conn.wait_connected().await.unwrap();
    drop(first.stream);
    let _second = server.next(5).await;
    harness_wait(|| conn.stats().connects == 2).await;
    let err = old.send("stale").unwrap_err();
    assert!(matches!(err, SendError::Closed { .. }), "{err:?}");
    assert!(err.to_string().contains("was lost"), "{err}");
    conn.disconnect().await;
}

#[tokio::test(flavor = "current_thread")]
async fn send_error_debug_shows_the_length_and_a_short_prefix_not_the_payload() {
    let cm = Manager::new();
    // Nothing listens on port 9 (discard) here: the connection is down.
    let conn = cm
        .connect_with("127.0.0.1:9", redial::handler(), Options::new())
        .unwrap();
    let payload = vec![b'a'; 4 << 20];
    let err = conn.send(&payload).unwrap_err();
    assert_eq!(err.data().len(), 4 << 20, "the bytes are all handed back");
    let debug = format!("{err:?}");
    assert_eq!(
        debug,
        r#"NotConnected { data: 4194304 bytes b"aaaaaaaaaaaaaaaa"... }"#
    );
    let one = SendError::Closed {
        data: vec![0, b'\n'],
    };
    assert_eq!(format!("{one:?}"), r#"Closed { data: 2 bytes b"\x00\n" }"#);
    conn.abort();
}

/// A loopback port nothing listens on: a listener bound and dropped.
fn closed_port() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

#[test]
fn sync_code_waits_for_a_connection_with_a_timeout() {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let cm = Manager::new(); // no runtime here: the manager owns one
    let conn = cm
        .connect(listener.local_addr().unwrap(), redial::handler())
        .unwrap();
    let sock = conn
        .wait_connected_blocking(Duration::from_secs(10))
        .unwrap();
    sock.send("ping").unwrap();
    let (mut peer, _) = listener.accept().unwrap();
    let mut got = [0u8; 4];
    peer.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"ping");
    cm.disconnect_all().wait_blocking().unwrap();
}

#[test]
fn a_blocking_wait_times_out_while_the_connection_goes_on_trying() {
    let cm = Manager::new();
    let conn = cm
        .connect_with(closed_port(), redial::handler(), fast_options(5, 20))
        .unwrap();
    let err = conn
        .wait_connected_blocking(Duration::from_millis(100))
        .unwrap_err();
    assert_eq!(
        err,
        WaitError::TimedOut {
            waited: Duration::from_millis(100)
        }
    );
    assert_ne!(conn.state(), redial::State::Closed, "still trying");
    // A huge timeout is no panic: the closed connection ends the wait.
    conn.abort();
    let err = conn.wait_connected_blocking(Duration::MAX).unwrap_err();
    assert_eq!(
        err,
        WaitError::Closed {
            reason: CloseReason::Aborted
        }
    );
}

#[test]
fn a_blocking_wait_on_a_connection_that_gives_up_says_why() {
    let cm = Manager::new();
    let conn = cm
        .connect_with(
            closed_port(),
            redial::handler(),
            fast_options(1, 2).max_attempts(2),
        )
        .unwrap();
    match conn.wait_connected_blocking(Duration::from_secs(30)) {
        Err(WaitError::Closed {
            reason: CloseReason::GaveUp { attempts: 2, .. },
        }) => {}
        other => panic!("expected a give-up, got {other:?}"),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_blocking_wait_inside_a_runtime_is_an_error_not_a_hang() {
    let cm = Manager::new();
    let conn = cm.connect(closed_port(), redial::handler()).unwrap();
    let err = conn
        .wait_connected_blocking(Duration::from_secs(3600))
        .unwrap_err();
    assert_eq!(err, WaitError::InsideRuntime);
    assert!(err.to_string().contains("wait_connected()"), "{err}");
    conn.abort().await;
}

/// A connection made by a function that owned its manager.
fn connect_with_own_manager(
    addr: std::net::SocketAddr,
    handler: redial::FnHandler,
) -> redial::Connection {
    let cm = Manager::new(); // outside tokio: owns a runtime
    cm.connect(addr, handler).unwrap()
}

#[test]
fn a_connection_keeps_working_after_its_manager_is_dropped() {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let conn = connect_with_own_manager(listener.local_addr().unwrap(), redial::handler());
    let sock = conn
        .wait_connected_blocking(Duration::from_secs(10))
        .expect("connects although its manager was dropped");
    conn.send("alive").unwrap();
    let (mut peer, _) = listener.accept().unwrap();
    let mut got = [0u8; 5];
    peer.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"alive");
    assert_eq!(conn.stats().connects, 1);
    drop(sock);
    conn.disconnect().wait_blocking().unwrap();
    assert_eq!(peer.read(&mut got).unwrap(), 0, "FIN after the disconnect");
}

#[test]
fn dropping_the_manager_and_every_handle_closes_and_says_the_runtime_shut_down() {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let h = redial::handler().on_close(move |c| {
        let _ = tx.send(c.reason().clone());
    });
    let conn = connect_with_own_manager(listener.local_addr().unwrap(), h);
    conn.wait_connected_blocking(Duration::from_secs(10))
        .unwrap();
    let (mut peer, _) = listener.accept().unwrap();
    drop(conn);
    let reason = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("on_close runs when the last handle goes");
    assert_eq!(reason, CloseReason::Shutdown);
    assert!(
        reason.to_string().contains("were dropped"),
        "the reason says why: {reason}"
    );
    peer.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(peer.read(&mut [0u8; 1]).unwrap(), 0, "the socket is closed");
}

#[test]
fn the_last_handle_dropped_on_the_managers_own_runtime_shuts_it_down_cleanly() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let h = redial::handler().on_close(move |c| {
        let _ = tx.send(c.reason().clone());
    });
    let cm = Manager::new();
    let conn = cm.connect(listener.local_addr().unwrap(), h).unwrap();
    conn.wait_connected_blocking(Duration::from_secs(10))
        .unwrap();
    let rt = cm.runtime().clone();
    drop(cm);
    // The last holder lets go on one of the runtime's own threads.
    rt.spawn(async move { drop(conn) });
    let reason = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("on_close runs");
    assert_eq!(reason, CloseReason::Shutdown);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_knows_which_connection_it_serves_across_reconnects() {
    let mut server = TestServer::start().await;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let cm = Manager::new();
    let make = |seen: std::sync::Arc<std::sync::Mutex<Vec<(u64, u64)>>>| {
        redial::handler().on_connect(move |sock| {
            seen.lock()
                .unwrap()
                .push((sock.connection_id(), sock.generation()));
        })
    };
    let a = cm
        .connect_with(server.addr, make(seen.clone()), fast_options(10, 100))
        .unwrap();
    let b = cm
        .connect_with(server.addr, make(seen.clone()), fast_options(10, 100))
        .unwrap();
    let first = server.next(5).await;
    let _other = server.next(5).await;
    a.wait_connected().await.unwrap();
    b.wait_connected().await.unwrap();
    assert_ne!(a.id(), b.id());
    // Lose one of them: its next connection reports the same id.
    drop(first.stream);
    let _again = server.next(5).await;
    harness_wait(|| seen.lock().unwrap().len() == 3).await;
    let mut seen = seen.lock().unwrap().clone();
    seen.sort();
    let lost = seen.iter().find(|(_, g)| *g == 2).unwrap().0;
    let mut want = vec![(a.id(), 1), (b.id(), 1), (lost, 2)];
    want.sort();
    assert_eq!(seen, want);
    assert!(lost == a.id() || lost == b.id());
    cm.disconnect_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutting_down_the_socket_drops_only_this_connection_and_reconnects() {
    let mut server = TestServer::start().await;
    let (tx, mut resets) = tokio::sync::mpsc::unbounded_channel();
    let h = redial::handler().on_reset(move |r| {
        let _ = tx.send(r.reason().clone());
        redial::Resume::Reconnect
    });
    let cm = Manager::new();
    let conn = cm
        .connect_with(server.addr, h, fast_options(10, 100))
        .unwrap();
    let _first = server.next(5).await;
    let sock = conn.wait_connected().await.unwrap();
    // What `Socket::disconnect`'s docs point to for "drop this one and
    // reconnect": the managed connection stays open.
    sock.sock_ref().shutdown(std::net::Shutdown::Both).unwrap();
    let reason = tokio::time::timeout(Duration::from_secs(10), resets.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reason, redial::ResetReason::PeerClosed);
    let _second = server.next(5).await;
    harness_wait(|| conn.stats().connects == 2).await;
    assert_eq!(conn.state(), redial::State::Connected);
    assert!(matches!(sock.send("x"), Err(SendError::Closed { .. })));
    conn.disconnect().await;
}

/// Waits (polling, generous bound) until `cond` holds.
async fn harness_wait(mut cond: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "condition not met"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
