//! `Stream` writes during an outage: they wait for the next connection at
//! most the outage wait, then fail `NotConnected` with a typed error and
//! their bytes not taken; with `Outage::Buffer` they are buffered at once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::ErrorKind;
use std::time::{Duration, Instant};

use redial::{Manager, Outage, State, Stream, StreamError};
use support::{fast_options, poll_once, wait_until, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A generous bound on each wait for a condition: the suite runs on busy
/// machines.
const LONG: Duration = Duration::from_secs(30);

/// Issue 20: a write while nothing listens used to wait forever. It now
/// fails after the outage wait, says why, and takes nothing; once the
/// server is back, the next write goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_while_down_fails_after_the_outage_wait_then_works_once_up() {
    let mut server = TestServer::start().await;
    server.stop_listening().await;
    let cm = Manager::new();
    let mut stream = cm.stream(server.addr, fast_options(10, 50)).unwrap();
    let wait = Duration::from_millis(300);
    stream.set_outage_wait(Some(wait));
    let started = Instant::now();
    let e = tokio::time::timeout(Duration::from_secs(20), stream.write(b"ping"))
        .await
        .expect("the write waited past its outage wait")
        .unwrap_err();
    assert!(
        started.elapsed() >= wait,
        "gave up after {:?}",
        started.elapsed()
    );
    assert_eq!(e.kind(), ErrorKind::NotConnected, "{e}");
    match StreamError::of(&e) {
        Some(StreamError::Down {
            waited,
            state,
            outage_buffer_full,
            last_error,
        }) => {
            assert_eq!(*waited, wait);
            assert_ne!(*state, State::Connected);
            assert!(!outage_buffer_full);
            assert!(last_error.is_some(), "the refused connects are named");
        }
        other => panic!("not Down: {other:?}"),
    }
    assert!(e.to_string().contains("not connected"), "{e}");
    assert_eq!(stream.connection().stats().queued, 0, "nothing was taken");

    server.relisten().await;
    stream.write_all(b"pong").await.unwrap();
    stream.flush().await.unwrap();
    let mut peer = server.next(10).await.stream;
    let mut got = [0u8; 4];
    peer.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"pong", "only what was taken is sent");
    stream.shutdown().await.unwrap();
}

/// The first connection is waited for: a write right after `stream()`
/// succeeds once the server answers within the outage wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_right_after_creating_the_stream_waits_for_the_first_connection() {
    let mut server = TestServer::start().await;
    server.stop_listening().await;
    let cm = Manager::new();
    let mut stream = cm.stream(server.addr, fast_options(10, 50)).unwrap();
    let conn = stream.connection().clone();
    let write = tokio::spawn(async move { stream.write_all(b"first").await.map(|()| stream) });
    // Down for a few attempts, well within the default outage wait.
    wait_until("two failed attempts", LONG, || {
        conn.stats().failed_attempts >= 2
    })
    .await;
    assert!(!write.is_finished(), "the write did not wait");
    assert!(Stream::DEFAULT_OUTAGE_WAIT >= Duration::from_secs(5));
    server.relisten().await;
    let mut peer = server.next(10).await.stream;
    let mut stream = write.await.unwrap().unwrap();
    stream.flush().await.unwrap();
    let mut got = [0u8; 5];
    peer.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"first");
    stream.shutdown().await.unwrap();
}

/// With `Outage::Buffer`, writes while down are taken at once; a write
/// that finds the buffer full waits the outage wait and fails with it
/// untaken; the buffered bytes go out first on the next connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_outage_buffer_writes_while_down_are_buffered_until_it_is_full() {
    let mut server = TestServer::start().await;
    server.stop_listening().await;
    let cm = Manager::new();
    let opts = fast_options(10, 50).outage(Outage::Buffer { max_bytes: 8 });
    let mut stream = cm.stream(server.addr, opts).unwrap();
    stream.set_outage_wait(Some(Duration::from_millis(200)));
    let n = tokio::time::timeout(Duration::from_secs(5), stream.write(b"hello"))
        .await
        .expect("a buffered write waited")
        .unwrap();
    assert_eq!(n, 5);
    let e = tokio::time::timeout(Duration::from_secs(20), stream.write(b"toolong"))
        .await
        .expect("the write waited past its outage wait")
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotConnected, "{e}");
    assert!(
        matches!(
            StreamError::of(&e),
            Some(StreamError::Down {
                outage_buffer_full: true,
                ..
            })
        ),
        "{e}"
    );
    assert!(e.to_string().contains("outage buffer is full"), "{e}");
    // A flush waits for the buffered bytes to reach a kernel: not while
    // down, beyond the outage wait.
    let e = tokio::time::timeout(Duration::from_secs(20), stream.flush())
        .await
        .expect("the flush waited past the outage wait")
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotConnected, "{e}");

    server.relisten().await;
    stream.write_all(b"!").await.unwrap();
    stream.flush().await.unwrap();
    let mut peer = server.next(10).await.stream;
    let mut got = [0u8; 6];
    peer.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"hello!");
    stream.shutdown().await.unwrap();
}

/// `None` waits as long as the connection keeps trying: a write across a
/// down spell longer than the wait set before goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_outage_wait_a_write_waits_for_the_connection() {
    let mut server = TestServer::start().await;
    server.stop_listening().await;
    let cm = Manager::new();
    let mut stream = cm.stream(server.addr, fast_options(10, 50)).unwrap();
    stream.set_outage_wait(Some(Duration::from_millis(50)));
    stream.set_outage_wait(None);
    let write = tokio::spawn(async move { stream.write_all(b"late").await.map(|()| stream) });
    // Not finishing is the behaviour: nothing to wait for but time. 500 ms
    // is ten times the 50 ms wait set before; a slow machine only
    // lengthens the window.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!write.is_finished(), "the write did not wait");
    server.relisten().await;
    let mut peer = server.next(10).await.stream;
    let mut stream = write.await.unwrap().unwrap();
    stream.flush().await.unwrap();
    let mut got = [0u8; 4];
    peer.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"late");
    stream.shutdown().await.unwrap();
}

/// The wait is per outage: a write given up by the caller in one outage
/// does not shorten the wait of a write in the next one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_outage_gets_its_own_wait() {
    let mut server = TestServer::start().await;
    server.stop_listening().await;
    let cm = Manager::new();
    let mut stream = cm.stream(server.addr, fast_options(10, 50)).unwrap();
    let wait = Duration::from_millis(300);
    stream.set_outage_wait(Some(wait));
    // The caller gives up on a write during the first outage: it was
    // waiting (pending), and is dropped.
    let first_outage = tokio::time::Instant::now();
    {
        let mut write = Box::pin(stream.write(b"a"));
        assert!(
            poll_once(&mut write).await.is_pending(),
            "the write did not wait"
        );
    }
    server.relisten().await;
    let first = server.next(10).await;
    let conn = stream.connection().clone();
    wait_until("connected", LONG, || conn.state() == State::Connected).await;
    // A second outage, seen by the connection, once the first write's
    // wait would have run out.
    server.stop_listening().await;
    drop(first.stream);
    wait_until("the loss seen", LONG, || conn.state() != State::Connected).await;
    tokio::time::sleep_until(first_outage + wait + Duration::from_millis(100)).await;
    let e = stream.write(b"b").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}");
    let started = Instant::now();
    let e = tokio::time::timeout(Duration::from_secs(20), stream.write(b"c"))
        .await
        .expect("the write waited past its outage wait")
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotConnected, "{e}");
    assert!(
        started.elapsed() >= wait,
        "gave up after {:?}",
        started.elapsed()
    );
}
