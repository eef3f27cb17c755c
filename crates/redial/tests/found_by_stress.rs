//! Regression tests for defects the stress test and the data-path fuzz
//! target found, each cut down to its smallest reproduction.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use redial::{CloseReason, Manager, Options, Resume, Socket};
use tokio::io::AsyncWriteExt;

/// Runs `test` on a `current_thread` runtime of its own thread and fails
/// if it has not finished within `bound`: a future that spins inside one
/// poll stops its runtime, so no timeout inside it could fire.
fn within(bound: Duration, what: &str, test: impl FnOnce() + Send + 'static) {
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        test();
        let _ = done.send(());
    });
    match finished.recv_timeout(bound) {
        Ok(()) => {}
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: still running after {bound:?}"),
        // The test thread panicked: its own message has been printed.
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{what}: failed"),
    }
}

/// A `Stream` write larger than the room left in a non-empty send queue
/// must wait for the connection to take bytes. It spun inside
/// `poll_write` instead (the wait for room returned at once, as the queue
/// was below its limit, and the push was refused again), which stops a
/// `current_thread` runtime for good and keeps a worker of a
/// multi-threaded one at 100 %.
#[test]
fn a_stream_write_larger_than_the_room_left_waits_for_room() {
    within(
        Duration::from_secs(20),
        "a write past the room left",
        || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = listener.local_addr().unwrap();
                // The peer reads everything, so room comes back quickly.
                let server = tokio::spawn(async move {
                    let (mut s, _) = listener.accept().await.unwrap();
                    let mut sink = tokio::io::sink();
                    tokio::io::copy(&mut s, &mut sink).await.unwrap()
                });
                let cm = Manager::new();
                let mut stream = cm
                    .stream(addr, Options::new().send_queue_limit(64 * 1024))
                    .unwrap();
                stream.connection().wait_connected().await.unwrap();
                // Two writes with no await in between: the first leaves 4 KiB
                // of room, the second needs 8 KiB.
                stream.write_all(&[1u8; 60 * 1024]).await.unwrap();
                tokio::time::timeout(Duration::from_secs(10), stream.write_all(&[2u8; 8 * 1024]))
                    .await
                    .expect("the write finishes once the connection took bytes")
                    .unwrap();
                stream.shutdown().await.unwrap();
                let got = tokio::time::timeout(Duration::from_secs(10), server)
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(got, 68 * 1024);
            });
        },
    );
}

/// How a start callback (`on_connect`, or the entry of a `Resume::With`)
/// that the driver has already begun is cut short by the test.
#[derive(Clone, Copy, Debug)]
enum Stop {
    Disconnect,
    Abort,
}

/// A start callback the driver has begun when `disconnect()`/`abort()` is
/// called (from another thread) must have returned by the time the call
/// returns: from then on no callback but `on_close` may run. The driver
/// looked for a command, found none, and only then called the callback;
/// a request posted in between returned while `on_connect` was still to
/// come (the stress test saw it as "on_connect after its disconnect() had
/// returned", multi-threaded). A slow callback holds that window open.
/// The socket must also be closed once the returned future resolves.
fn start_callback_racing_a_stop(stop: Stop, via_resume_with: bool) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (entered_tx, entered) = mpsc::channel::<()>();
    let returned = Arc::new(AtomicBool::new(false));
    let slow_start = {
        let returned = returned.clone();
        move |_: &Socket| {
            let _ = entered_tx.send(());
            std::thread::sleep(Duration::from_millis(300));
            returned.store(true, Ordering::SeqCst);
        }
    };
    let h = if via_resume_with {
        // The first connection is dropped by the peer; `on_reset` resumes
        // with the slow entry, which runs on the second.
        let mut entry = Some(slow_start);
        redial::handler()
            .on_connect(|_| {})
            .on_reset(move |_| match entry.take() {
                Some(e) => Resume::with(e),
                None => Resume::Stop,
            })
    } else {
        redial::handler().on_connect(slow_start)
    };
    let (closed_tx, closed) = mpsc::channel();
    let h = h.on_close(move |c| {
        let _ = closed_tx.send(c.reason().clone());
    });
    // Outside tokio: the manager runs its own runtime's threads, and this
    // thread calls disconnect while a driver is inside the callback.
    let cm = Manager::new();
    let conn = cm.connect_with(addr, h, Options::new()).unwrap();
    if via_resume_with {
        let (first, _) = listener.accept().unwrap();
        drop(first);
    }
    let (mut peer, _) = listener.accept().unwrap();
    entered
        .recv_timeout(Duration::from_secs(20))
        .expect("the start callback runs");
    let closing = match stop {
        Stop::Disconnect => conn.disconnect(),
        Stop::Abort => conn.abort(),
    };
    assert!(
        returned.load(Ordering::SeqCst),
        "{stop:?} returned while the start callback (Resume::With entry: {via_resume_with}) still ran"
    );
    closing.wait_blocking().unwrap();
    let want = match stop {
        Stop::Disconnect => CloseReason::Disconnected,
        Stop::Abort => CloseReason::Aborted,
    };
    assert_eq!(
        closed.try_recv().ok(),
        Some(want),
        "on_close ran before the wait ended"
    );
    // Closed by the time the disconnect resolved: FIN (or RST) is here.
    peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 16];
    match peer.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("socket still open after {stop:?} resolved: {other:?}"),
    }
}

#[test]
fn disconnect_returns_after_an_on_connect_already_begun() {
    within(
        Duration::from_secs(60),
        "disconnect during on_connect",
        || {
            start_callback_racing_a_stop(Stop::Disconnect, false);
        },
    );
}

#[test]
fn abort_returns_after_an_on_connect_already_begun() {
    within(Duration::from_secs(60), "abort during on_connect", || {
        start_callback_racing_a_stop(Stop::Abort, false);
    });
}

#[test]
fn disconnect_returns_after_a_resume_with_entry_already_begun() {
    within(
        Duration::from_secs(60),
        "disconnect during a Resume::With entry",
        || start_callback_racing_a_stop(Stop::Disconnect, true),
    );
}

/// The wait of a disconnect for a start callback in progress is skipped
/// from inside a start callback: two connections whose `on_connect` run at
/// once on two workers, each disconnecting the other and then itself, do
/// not wait for each other for ever.
#[test]
fn start_callbacks_that_disconnect_each_other_do_not_deadlock() {
    use std::sync::atomic::AtomicUsize;
    use std::sync::Mutex;
    within(Duration::from_secs(60), "crossed disconnects", || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let inside = Arc::new(AtomicUsize::new(0));
            let slots: [Arc<Mutex<Option<redial::Connection>>>; 2] = Default::default();
            let cm = Manager::new();
            let mut conns = Vec::new();
            for i in 0..2 {
                let (inside, other) = (inside.clone(), slots[1 - i].clone());
                let h = redial::handler().on_connect(move |sock| {
                    // Both callbacks in progress at once, and both handles
                    // in place (the test's own count), or 30 s passed (a
                    // bound for a machine so loaded that the second
                    // connection's start is that late; normally milliseconds).
                    inside.fetch_add(1, Ordering::SeqCst);
                    let t = std::time::Instant::now();
                    while inside.load(Ordering::SeqCst) < 3 && t.elapsed() < Duration::from_secs(30)
                    {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    if let Some(c) = other.lock().unwrap().as_ref() {
                        let _ = c.disconnect();
                    }
                    let _ = sock.disconnect();
                });
                let c = cm.connect_with(addr, h, Options::new()).unwrap();
                *slots[i].lock().unwrap() = Some(c.clone());
                conns.push(c);
            }
            inside.fetch_add(1, Ordering::SeqCst);
            let accepted = tokio::task::spawn_blocking(move || {
                let a = listener.accept().unwrap();
                let b = listener.accept().unwrap();
                (a, b)
            });
            for c in &conns {
                assert_eq!(
                    tokio::time::timeout(Duration::from_secs(30), c.closed())
                        .await
                        .expect("closes"),
                    CloseReason::Disconnected
                );
            }
            assert_eq!(inside.load(Ordering::SeqCst), 3);
            drop(accepted.await.unwrap());
        });
    });
}
