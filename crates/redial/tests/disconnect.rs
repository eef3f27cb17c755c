//! A local disconnect is final: in every phase (connected, connecting,
//! backing off), for one connection, a pool and the whole manager. Queued
//! bytes reach the peer before the FIN.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use redial::{CloseReason, EventKind, Manager, Options, State, WaitError};
use support::{fast_options, read_to_end, Recorder, TestServer};

fn payload(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_while_connected_flushes_queued_bytes_then_fin_and_never_reconnects() {
    let mut server = TestServer::start().await;
    let calls = Recorder::new();
    let cm = Manager::new();
    let conn = cm
        .connect_with(server.addr, calls.handler(), fast_options(10, 100))
        .unwrap();
    let a = server.next(5).await;
    conn.wait_connected().await.unwrap();
    let data = payload(3 << 20, 7);
    for chunk in data.chunks(1000) {
        conn.send(chunk).unwrap();
    }
    conn.disconnect();
    conn.disconnect(); // twice is fine
    let got = read_to_end(a.stream, 20).await;
    assert_eq!(got.len(), data.len());
    assert!(got == data, "bytes differ");
    conn.disconnect().await;
    assert_eq!(conn.state(), State::Closed);
    assert_eq!(calls.count("close Disconnected"), 1);
    assert_eq!(calls.count("reset"), 0, "a local disconnect is not a reset");
    // No reconnect: a quiet window, 30 times the 10 ms retry delay.
    assert!(server.try_next(Duration::from_millis(300)).await.is_none());
    assert!(matches!(
        conn.send("late"),
        Err(redial::SendError::Disconnected { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_while_connecting_never_reconnects() {
    // A listener whose accept queue is full drops SYNs, so connect hangs.
    let (addr, _listener, _fillers) = support::unanswering().await;
    let calls = Recorder::new();
    let cm = Manager::new();
    let mut events = cm.events();
    let conn = cm
        .connect_with(addr, calls.handler(), fast_options(10, 100))
        .unwrap();
    // The attempt is under way (its SYN unanswered) when the disconnect comes.
    let started = tokio::time::timeout(Duration::from_secs(30), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(started.kind, EventKind::Connecting { .. }),
        "{started:?}"
    );
    assert_eq!(
        conn.state(),
        State::Connecting,
        "connect should hang: {:?}",
        calls.labels()
    );
    tokio::time::timeout(Duration::from_secs(5), conn.disconnect())
        .await
        .unwrap();
    assert_eq!(calls.labels(), ["close Disconnected"]);
    // No attempt after the close. Nothing marks "would have retried by
    // now", so a quiet window: 300 ms is 30 times the 10 ms retry delay.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut after_close = false;
    while let Some(e) = events.try_recv() {
        if after_close {
            panic!("event after close: {e:?}");
        }
        after_close = matches!(e.kind, EventKind::Closed { .. });
    }
    assert!(after_close);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_while_backing_off_never_reconnects() {
    let mut server = TestServer::start().await;
    server.stop_listening().await;
    let calls = Recorder::new();
    let cm = Manager::new();
    let conn = cm
        .connect_with(server.addr, calls.handler(), fast_options(100, 200))
        .unwrap();
    calls.wait("failed 1", 1, 5).await;
    assert_eq!(conn.state(), State::BackingOff);
    conn.disconnect().await;
    server.relisten().await;
    // At least 2x the backoff cap used here.
    assert!(server.try_next(Duration::from_millis(600)).await.is_none());
    assert_eq!(calls.count("close Disconnected"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_disconnect_flushes_every_member_and_none_reconnects() {
    let mut server = TestServer::start().await;
    let cm = Manager::new();
    let pool = cm.create_pool("p").unwrap();
    let calls = Recorder::new();
    for _ in 0..3 {
        pool.add_connection_with(server.addr, calls.handler(), fast_options(10, 100))
            .unwrap();
    }
    let mut streams = Vec::new();
    for _ in 0..3 {
        streams.push(server.next(5).await.stream);
    }
    pool.wait_live(3).await;
    let members = pool.connections();
    for (i, c) in members.iter().enumerate() {
        c.send(payload(100_000, i as u8)).unwrap();
    }
    pool.disconnect().await;
    let mut total = 0;
    for s in streams {
        total += read_to_end(s, 10).await.len();
    }
    assert_eq!(total, 300_000);
    assert!(server.try_next(Duration::from_millis(300)).await.is_none());
    assert_eq!(calls.count("close Disconnected"), 3);
    assert!(cm.get_pool("p").is_none(), "a disconnected pool is removed");
    assert!(cm.create_pool("p").is_ok(), "the name can be used again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_all_reaches_every_connection_including_two_to_one_endpoint() {
    let mut server = TestServer::start().await;
    let mut down = TestServer::start().await;
    down.stop_listening().await;
    let cm = Manager::new();
    let calls = Recorder::new();
    let a = cm
        .connect_with(server.addr, calls.handler(), fast_options(10, 100))
        .unwrap();
    let b = cm
        .connect_with(server.addr, calls.handler(), fast_options(10, 100))
        .unwrap();
    let pool = cm.create_pool("p").unwrap();
    pool.add_connection_with(server.addr, calls.handler(), fast_options(10, 100))
        .unwrap();
    cm.connect_with(down.addr, calls.handler(), fast_options(10, 100))
        .unwrap();
    // Held open: a dropped stream would make its connection reconnect,
    // and an attempt in flight when disconnect_all runs may still reach
    // the server's accept queue.
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(server.next(5).await);
    }
    // Both connections to one endpoint are kept; get_connection returns the oldest.
    assert_eq!(cm.connections_to(server.addr).len(), 3);
    assert_eq!(cm.get_connection(server.addr).unwrap().id(), a.id());
    assert!(b.id() > a.id());
    let d = cm.disconnect_all();
    assert_eq!(d.len(), 4);
    tokio::time::timeout(Duration::from_secs(10), d)
        .await
        .unwrap();
    assert!(cm.connections().is_empty());
    assert_eq!(calls.count("close Disconnected"), 4);
    down.relisten().await;
    assert!(server.try_next(Duration::from_millis(400)).await.is_none());
    assert!(down.try_next(Duration::from_millis(100)).await.is_none());
    assert_eq!(a.closed().await, CloseReason::Disconnected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_closes_with_rst_and_hands_back_the_queue() {
    let mut server = TestServer::start().await;
    let cm = Manager::new();
    let unsent = std::sync::Arc::new(std::sync::Mutex::new(None));
    let u = unsent.clone();
    let h = redial::handler().on_data(|_, _| {}).on_close(move |c| {
        *u.lock().unwrap() =
            Some(c.unsent().len() + c.unsent().partial().map_or(0, |p| p.data.len()))
    });
    // A tiny send buffer and a peer that never reads keep bytes queued.
    let opts = fast_options(10, 100)
        .configure_socket(|s| s.set_send_buffer_size(4096))
        .send_queue_limit(8 << 20);
    let conn = cm.connect_with(server.addr, h, opts).unwrap();
    let _a = server.next(5).await;
    conn.wait_connected().await.unwrap();
    for _ in 0..64 {
        conn.send(vec![1u8; 65536]).unwrap();
    }
    // Aborted part way: some bytes written, the rest still queued.
    support::wait_until("some bytes written", Duration::from_secs(30), || {
        conn.stats().bytes_out > 0
    })
    .await;
    let written = conn.stats().bytes_out as usize;
    conn.abort().await;
    let back = unsent.lock().unwrap().unwrap();
    assert!(back > 0, "nothing handed back");
    assert!(
        written + back >= 64 * 65536,
        "written {written} + back {back}"
    );
}

/// What `on_close` was told, kept for the test.
#[derive(Debug, Clone)]
struct Told {
    reason: CloseReason,
    unsent: u64,
    written: Option<u64>,
    acked: Option<u64>,
    unacked: Option<u64>,
}

fn telling(told: &std::sync::Arc<std::sync::Mutex<Option<Told>>>) -> redial::FnHandler {
    let t = told.clone();
    redial::handler().on_data(|_, _| {}).on_close(move |c| {
        let u = c.take_unsent();
        let unsent = u.len() as u64 + u.partial().map_or(0, |p| (p.data.len() - p.written) as u64);
        *t.lock().unwrap() = Some(Told {
            reason: c.reason().clone(),
            unsent,
            written: c.written(),
            acked: c.acked(),
            unacked: c.unacked(),
        });
    })
}

/// The reproduction of the loss issue: 64 × 64 KiB queued, a 200 ms grace
/// period, a peer that starts reading after 800 ms. The grace runs out and
/// the connection is reset: that is not a clean close, and the reason says
/// how many written bytes the reset destroyed, which the peer indeed never
/// receives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_grace_period_is_not_a_clean_close_and_says_what_the_reset_destroyed() {
    let mut server = TestServer::start().await;
    let told = std::sync::Arc::new(std::sync::Mutex::new(None));
    // A fixed send buffer: with autotuning, loopback kernel buffers may
    // take all 4 MiB within the grace period, and nothing would expire.
    let opts = fast_options(10, 100)
        .close_grace(Duration::from_millis(200))
        .configure_socket(|s| s.set_send_buffer_size(64 * 1024));
    let cm = Manager::new();
    let conn = cm.connect_with(server.addr, telling(&told), opts).unwrap();
    let peer = server.next(5).await.stream;
    conn.wait_connected().await.unwrap();
    let total = 64 * 65536u64;
    for _ in 0..64 {
        conn.send(vec![3u8; 65536]).unwrap();
    }
    // The peer reads nothing until the close is over: the grace runs out.
    conn.disconnect().await;
    let received = {
        let mut peer = peer;
        let mut buf = vec![0u8; 65536];
        let mut got = 0u64;
        // Read until the reset (or the end): what arrived before it.
        while let Ok(n @ 1..) = tokio::io::AsyncReadExt::read(&mut peer, &mut buf).await {
            got += n as u64;
        }
        got
    };
    let t = told.lock().unwrap().clone().expect("on_close ran");
    let stats = conn.stats();
    println!(
        "{t:?}; peer received {received}; bytes_out {}",
        stats.bytes_out
    );
    let CloseReason::GraceExpired {
        destroyed: Some(destroyed),
    } = t.reason
    else {
        panic!("not reported as an expired grace period: {:?}", t.reason);
    };
    assert!(destroyed > 0, "{t:?}");
    let written = t.written.unwrap();
    assert_eq!(written, stats.bytes_out, "one connection: all it wrote");
    assert_eq!(
        t.acked.unwrap() + t.unacked.unwrap(),
        written,
        "kernel vs redial"
    );
    assert_eq!(t.unacked, Some(destroyed));
    // The peer got what its TCP acknowledged; of what the reset destroyed,
    // at most what its kernel held under a delayed acknowledgement.
    assert!(
        received >= written - destroyed && received <= written,
        "{t:?}"
    );
    // Nothing vanished: written or handed back, and nothing discarded.
    assert_eq!(written + t.unsent, total, "{t:?}");
    assert_eq!(stats.discarded_bytes, 0);
}

/// Durations far beyond any use ("never") are accepted and saturate: no
/// deadline arithmetic overflows, and a disconnect closes cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duration_max_everywhere_still_connects_and_closes_cleanly() {
    let mut server = TestServer::start().await;
    let calls = Recorder::new();
    let max = Duration::MAX;
    let opts = Options::new()
        .backoff(redial::Backoff::new(Duration::from_millis(10), 2.0, max).unwrap())
        .connect_timeout(max)
        .stable_after(max)
        .give_up_after(max)
        .restart_intensity(1_000, max)
        .idle_timeout(Some(max))
        .heartbeat(Some(max))
        .close_grace(max);
    let cm = Manager::new();
    let conn = cm.connect_with(server.addr, calls.handler(), opts).unwrap();
    let a = server.next(5).await;
    conn.wait_connected().await.unwrap();
    conn.send(payload(100_000, 3)).unwrap();
    tokio::time::timeout(Duration::from_secs(10), conn.disconnect())
        .await
        .unwrap();
    assert_eq!(conn.closed().await, CloseReason::Disconnected);
    assert_eq!(read_to_end(a.stream, 10).await, payload(100_000, 3));
    assert_eq!(calls.count("close Disconnected"), 1, "{:?}", calls.labels());
    // A pool's wait takes "forever" too.
    let pool = cm.create_pool("max").unwrap();
    pool.add_connection_with(
        server.addr,
        calls.handler(),
        Options::new().stable_after(max),
    )
    .unwrap();
    let b = server.next(5).await;
    pool.wait_live(1).await;
    pool.send_wait("x", max).await.unwrap();
    pool.disconnect().await;
    assert_eq!(read_to_end(b.stream, 10).await, b"x");
    // The kernel's own limits are refused up front, naming the option.
    let too_long = Options::new().user_timeout(Some(max));
    match cm.connect_with(server.addr, calls.handler(), too_long) {
        Err(redial::ConnectError::Options(e)) => assert_eq!(e.option(), "user_timeout"),
        other => panic!("accepted: {other:?}"),
    }
    let mut keepalive = redial::Keepalive::default();
    keepalive.idle = max;
    match cm.connect_with(
        server.addr,
        calls.handler(),
        Options::new().keepalive(Some(keepalive)),
    ) {
        Err(redial::ConnectError::Options(e)) => assert_eq!(e.option(), "keepalive"),
        other => panic!("accepted: {other:?}"),
    }
}

/// An attempt in flight when `disconnect` is called may complete in the
/// kernel: the connection is then closed at once, `on_connect` never runs
/// after the request, and the server sees the socket closed by the time
/// `disconnect` resolves. Repeated, as the request races the attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_that_completes_after_disconnect_is_closed_without_on_connect() {
    use std::io::Read;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let late = Arc::new(AtomicUsize::new(0));
    let cm = Manager::new();
    for round in 0..100 {
        let requested = Arc::new(AtomicBool::new(false));
        let (r, l) = (requested.clone(), late.clone());
        let h = redial::handler()
            .on_connect(move |_| {
                if r.load(Ordering::SeqCst) {
                    l.fetch_add(1, Ordering::SeqCst);
                }
            })
            .on_data(|_, _| {});
        // A short grace: the peer here never closes its side, so a close
        // that got as far as its FIN lingers until the grace ends.
        let opts = fast_options(10, 100).close_grace(Duration::from_millis(50));
        let conn = cm.connect_with(addr, h, opts).unwrap();
        // Accepted by the kernel: the attempt has completed there, and
        // redial may or may not have seen it yet. Disconnect right away.
        let (mut peer, _) = tokio::task::block_in_place(|| listener.accept()).unwrap();
        let closing = conn.disconnect();
        // From here on no `on_connect` may start: one under way when the
        // request was made has returned before `disconnect` did. (Marked
        // after the call, not before: between the two an `on_connect` may
        // rightly run, and did on a busy machine.)
        requested.store(true, Ordering::SeqCst);
        tokio::time::timeout(Duration::from_secs(10), closing)
            .await
            .unwrap();
        assert_eq!(conn.closed().await, CloseReason::Disconnected);
        // Closed before disconnect resolved: the FIN is already here.
        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 16];
        match peer.read(&mut buf) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("round {round}: socket still open: {other:?}"),
        }
    }
    assert_eq!(
        late.load(Ordering::SeqCst),
        0,
        "on_connect ran after disconnect was requested"
    );
}

/// A loopback port nothing listens on: a connection to it backs off.
fn closed_port() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

// `wait_blocking` on the only worker of a runtime that also runs the
// connection: blocking the worker outright would stall the connection's
// task, and the wait, for ever. The wait hands the worker's other tasks
// over to another thread first, and returns once the connection closed.
#[test]
fn wait_blocking_on_a_runtime_worker_does_not_stall_the_connection() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    rt.spawn(async move {
        let cm = Manager::new(); // on this runtime
        let conn = cm.connect(closed_port(), redial::handler()).unwrap();
        conn.disconnect().wait_blocking().unwrap();
        let _ = tx.send(conn.state());
    });
    let state = rx.recv_timeout(Duration::from_secs(60));
    // A stalled worker cannot be joined: leave it rather than hang.
    rt.shutdown_background();
    assert_eq!(
        state.expect("wait_blocking returned on a runtime worker"),
        State::Closed
    );
}

// From `spawn_blocking`, on a current-thread runtime: tokio does not tell
// that thread from the runtime's own, so `wait_blocking` refuses; the
// runtime's handle blocks there instead, and the runtime's thread is free
// to run the connection.
#[tokio::test(flavor = "current_thread")]
async fn from_spawn_blocking_on_a_current_thread_runtime_the_handle_waits_for_the_close() {
    let cm = Manager::new();
    let conn = cm.connect(closed_port(), redial::handler()).unwrap();
    let disconnecting = conn.disconnect();
    let refused = conn.disconnect();
    tokio::time::timeout(
        Duration::from_secs(60),
        tokio::task::spawn_blocking(move || {
            assert_eq!(
                refused.wait_blocking(),
                Err(WaitError::CurrentThreadRuntime)
            );
            let handle = tokio::runtime::Handle::current();
            handle.block_on(std::future::IntoFuture::into_future(disconnecting));
        }),
    )
    .await
    .expect("the handle's block_on returned")
    .unwrap();
    assert_eq!(conn.state(), State::Closed);
}

// On the thread of a current-thread runtime, where the connection itself
// runs, blocking could only hang: it returns an error at once instead,
// and the disconnect still goes ahead (awaited here).
#[tokio::test(flavor = "current_thread")]
async fn wait_blocking_on_a_current_thread_runtime_is_an_error_rather_than_a_hang() {
    let cm = Manager::new();
    let conn = cm.connect(closed_port(), redial::handler()).unwrap();
    let err = conn.disconnect().wait_blocking().unwrap_err();
    assert_eq!(err, WaitError::CurrentThreadRuntime);
    assert!(err.to_string().contains("await the disconnect"), "{err}");
    conn.disconnect().await;
    assert_eq!(conn.state(), State::Closed);
}

// A manager that owns its runtime runs its connections there: blocking a
// current-thread runtime's thread for them stalls none of them.
#[test]
fn wait_blocking_for_a_managers_own_runtime_works_inside_a_current_thread_runtime() {
    let cm = Manager::new(); // outside tokio: owns its runtime
    let conn = cm.connect(closed_port(), redial::handler()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async { conn.disconnect().wait_blocking() })
        .unwrap();
    assert_eq!(conn.state(), State::Closed);
}
