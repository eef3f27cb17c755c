//! Regression tests for defects the stress test and the data-path fuzz
//! target found, each cut down to its smallest reproduction.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::mpsc;
use std::time::Duration;

use redial::{Manager, Options};
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
