//! `Stream` loses nothing and mixes no connections: the bytes of every
//! reset are handed back (none overwritten by the next), every reset is
//! its own error, and unread bytes of a lost connection never reach the
//! reader as part of the next one's.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::ErrorKind;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use redial::{CloseReason, Manager, ResetReason, State, Stream, StreamError, StreamReset};
use support::{fast_options, rst, TestServer};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_util::codec::{Framed, LinesCodec};

/// Waits (polling every few ms) until `cond` holds, for at most 10 s.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The lost connection an error from a `Stream` reports.
fn lost(e: &std::io::Error) -> &StreamReset {
    match StreamError::of(e) {
        Some(StreamError::Reset(lost)) => lost,
        other => panic!("not a reset: {e} ({other:?})"),
    }
}

/// Bytes handed back by `take_unsent` that never reached the kernel: whole
/// chunks, and the unwritten tail of a cut one.
fn handed_back(stream: &Stream) -> u64 {
    stream
        .take_unsent()
        .iter()
        .map(|u| u.len() + u.partial().map_or(0, |p| p.data.len() - p.written))
        .sum::<usize>() as u64
}

/// Issue 14, bug 1: 1,000-byte writes to a server that never reads and
/// resets every 300 ms, no `take_unsent` until the end. Every accepted byte
/// is written to the kernel, handed back, or still queued (here: handed
/// back by the final abort), and each reset is its own error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_of_every_reset_are_handed_back_none_overwritten() {
    const RESETS: u64 = 3;
    let mut server = TestServer::start().await;
    let opts = fast_options(10, 50)
        .send_queue_limit(1 << 20)
        .configure_socket(|s| s.set_send_buffer_size(4096));
    let cm = Manager::new();
    let mut stream = cm.stream(server.addr, opts).unwrap();
    let conn = stream.connection().clone();
    let resetter = tokio::spawn(async move {
        for generation in 1..=RESETS {
            let a = server.next(10).await;
            // A reset before the client counts the connection as up would
            // be a failed attempt, not a loss.
            until("the connection is up", || {
                conn.stats().connects == generation
            })
            .await;
            // Reset with bytes queued behind the full socket (the peer
            // never reads), so the loss has some to hand back.
            until("bytes queued", || conn.stats().queued > 0).await;
            rst(a.stream);
        }
        // The last connection stays up, unread.
        let last = server.next(10).await;
        (server, last)
    });
    let chunk = [7u8; 1000];
    let mut accepted = 0u64;
    let mut losses: Vec<StreamReset> = Vec::new();
    while losses.len() < RESETS as usize {
        match tokio::time::timeout(Duration::from_secs(10), stream.write(&chunk))
            .await
            .expect("a write hung")
        {
            Ok(n) => accepted += n as u64,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => losses.push(lost(&e).clone()),
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    let errors = losses.len() as u64;
    let generations: Vec<u64> = losses.iter().map(|l| l.generation).collect();
    assert_eq!(generations, [1, 2, 3], "each loss once, in order");
    let (_server, _last) = resetter.await.unwrap();
    stream.connection().abort().await;
    assert_eq!(stream.connection().state(), State::Closed);
    let stats = stream.connection().stats();
    let back = handed_back(&stream);
    println!(
        "accepted {accepted}, written to the kernel {}, handed back {back}, queued {}, \
         {} resets, {errors} errors",
        stats.bytes_out, stats.queued, stats.resets
    );
    assert_eq!(stats.resets, RESETS, "one error per reset");
    assert_eq!(stats.queued, 0);
    assert!(
        back > 0,
        "nothing handed back: the test did not fill the queue"
    );
    // What the errors said adds up with what the connection counted.
    let lost_written: u64 = losses.iter().map(|l| l.written).sum();
    let lost_unsent: u64 = losses.iter().map(|l| l.unsent_bytes as u64).sum();
    assert!(lost_written <= stats.bytes_out);
    for l in &losses {
        assert!(l.acked.is_some_and(|a| a <= l.written), "{l:?}");
    }
    assert!(lost_unsent <= back);
    assert_eq!(
        accepted,
        stats.bytes_out + back,
        "accepted = written to the kernel + handed back"
    );
}

/// Two connections lost while the application did nothing are two errors,
/// each on its own call; the call after them goes to the live connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_resets_while_idle_are_two_errors() {
    let mut server = TestServer::start().await;
    let cm = Manager::new();
    let mut stream = cm.stream(server.addr, fast_options(10, 50)).unwrap();
    let conn = stream.connection().clone();
    for generation in 1..=2 {
        let accepted = server.next(5).await;
        // Reset only once the client counts the connection as up, so the
        // reset is a loss and not a failed attempt.
        until("the connection is up", || {
            conn.stats().connects == generation && conn.state() == State::Connected
        })
        .await;
        rst(accepted.stream);
    }
    let third = server.next(5).await;
    until("the third connection is up", || {
        conn.stats().resets == 2 && conn.state() == State::Connected
    })
    .await;
    for generation in 1..=2 {
        let e = stream.write(b"x").await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}");
        assert_eq!(lost(&e).generation, generation);
    }
    stream.write_all(b"x\n").await.unwrap();
    stream.flush().await.unwrap();
    let mut line = String::new();
    BufReader::new(third.stream)
        .read_line(&mut line)
        .await
        .unwrap();
    assert_eq!(line, "x\n");
}

/// Issue 14, bug 5: the first connection answers `A` and leaves half a
/// line behind as it closes; the writer hears of the loss first. The next
/// connection's first line must be its own, whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_bytes_of_a_lost_connection_never_reach_the_next_one() {
    let mut server = TestServer::start().await;
    let cm = Manager::new();
    let stream = cm.stream(server.addr, fast_options(10, 50)).unwrap();
    let mut framed = Framed::new(stream, LinesCodec::new());
    let first = server.next(5).await;
    framed.send("A").await.unwrap();
    let mut first = BufReader::new(first.stream);
    let mut line = String::new();
    first.read_line(&mut line).await.unwrap();
    assert_eq!(line, "A\n");
    first
        .get_mut()
        .write_all(b"reply:A\nHALF-LINE-FROM-OLD-CONNECTION")
        .await
        .unwrap();
    drop(first); // FIN after the bytes
    let conn = framed.get_ref().connection().clone();
    until("the loss is seen", || conn.stats().resets == 1).await;
    let e = framed.send("B").await.unwrap_err();
    let tokio_util::codec::LinesCodecError::Io(e) = e else {
        panic!("not an i/o error: {e}");
    };
    // The codec's error carries the stream's: the half line was dropped,
    // and counted.
    let reported = lost(&e);
    assert_eq!(reported.generation, 1);
    assert_eq!(reported.reason, ResetReason::PeerClosed);
    // "A\n" was written, and the peer acknowledged it (its reply carried
    // the acknowledgement).
    assert_eq!(reported.written, 2);
    assert_eq!(reported.acked, Some(2), "{reported:?}");
    assert_eq!(
        reported.unread_dropped,
        b"reply:A\nHALF-LINE-FROM-OLD-CONNECTION".len()
    );

    let mut framed = Framed::new(framed.into_inner(), LinesCodec::new());
    let second = server.next(5).await;
    let answer = tokio::spawn(async move {
        let (r, mut w) = second.stream.into_split();
        let mut lines = BufReader::new(r).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            w.write_all(format!("reply:{l}\n").as_bytes())
                .await
                .unwrap();
        }
    });
    framed.send("C").await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), framed.next())
        .await
        .expect("no reply")
        .unwrap()
        .unwrap();
    assert_eq!(got, "reply:C");
    framed.get_mut().shutdown().await.unwrap();
    answer.abort();
}

const CHUNK: usize = 997;

/// Chunk `i` of a numbered stream: its index, then a pattern.
fn numbered(i: u32) -> Vec<u8> {
    let mut c = vec![0u8; CHUNK];
    c[..4].copy_from_slice(&i.to_be_bytes());
    for (j, b) in c[4..].iter_mut().enumerate() {
        *b = (i as u8).wrapping_add(j as u8);
    }
    c
}

/// A listener whose connections have a small receive buffer, so a client's
/// kernel fills after a few KiB.
fn small_listener() -> tokio::net::TcpListener {
    let s = tokio::net::TcpSocket::new_v4().unwrap();
    s.set_recv_buffer_size(4096).unwrap();
    s.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    s.listen(8).unwrap()
}

/// Issue 14: a transparent stream re-queues what a loss left unsent; with
/// the cut chunk re-sent whole, that can be more than the queue takes, and
/// the excess was dropped. The queue limit is one byte short of a whole
/// number of chunks, so any cut chunk makes the re-send one chunk too big.
/// The next connection must get every chunk from the first one that did
/// not reach the lost connection's kernel whole, with no gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transparent_resend_larger_than_the_queue_drops_nothing() {
    const CHUNKS: u32 = 200;
    let limit = 64 * CHUNK + CHUNK - 1;
    // Small buffers on both sides, so the kernel fills in the middle of a
    // batch and a chunk is cut.
    let listener = small_listener();
    let addr = listener.local_addr().unwrap();
    let opts = fast_options(10, 50)
        .send_queue_limit(limit)
        .configure_socket(|s| s.set_send_buffer_size(4096));
    let cm = Manager::new();
    let mut stream = cm.stream_transparent(addr, opts).unwrap();
    let conn = stream.connection().clone();
    let (first, _) = listener.accept().await.unwrap();
    let writer = tokio::spawn(async move {
        for i in 0..CHUNKS {
            stream.write_all(&numbered(i)).await.unwrap();
        }
        stream.flush().await.unwrap();
        stream.shutdown().await.unwrap();
        stream
    });
    until("the kernel and then the queue are full", || {
        let s = conn.stats();
        s.bytes_out > 0 && s.queued + CHUNK > limit
    })
    .await;
    rst(first);
    let (second, _) = tokio::time::timeout(Duration::from_secs(10), listener.accept())
        .await
        .expect("no second connection")
        .unwrap();
    let mut got = Vec::new();
    let mut reader = second;
    tokio::time::timeout(
        Duration::from_secs(20),
        tokio::io::AsyncReadExt::read_to_end(&mut reader, &mut got),
    )
    .await
    .expect("the second connection never ended")
    .unwrap();
    let stream = writer.await.unwrap();
    let written = stream.connection().stats().bytes_out;
    let lost_conn = written - got.len() as u64;
    assert_eq!(
        got.len() % CHUNK,
        0,
        "the next connection starts and ends on a chunk"
    );
    let indices: Vec<u32> = got
        .chunks(CHUNK)
        .map(|c| {
            let i = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
            assert_eq!(c, numbered(i), "chunk {i} corrupt");
            i
        })
        .collect();
    let first_again = indices[0];
    println!(
        "{} bytes reached the lost connection's kernel (a cut chunk: {}), the next connection \
         got chunks {first_again}..={}",
        lost_conn,
        lost_conn % CHUNK as u64 != 0,
        indices[indices.len() - 1]
    );
    let expected: Vec<u32> = (first_again..CHUNKS).collect();
    assert!(indices == expected, "a gap in the re-send: {indices:?}");
    let start = u64::from(first_again) * CHUNK as u64;
    assert!(
        start <= lost_conn && lost_conn < start + CHUNK as u64,
        "the re-send starts at chunk {first_again}, but {lost_conn} bytes reached the lost \
         connection"
    );
    assert!(stream.take_unsent().is_empty());
}

/// A transparent stream whose connection gives up before it could re-send
/// what a loss left unsent hands it back: accepted = written to the kernel
/// + handed back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transparent_stream_that_gives_up_hands_back_its_resend() {
    let limit = 16 * CHUNK;
    let listener = small_listener();
    let addr = listener.local_addr().unwrap();
    let opts = fast_options(10, 50)
        .max_attempts(2)
        .send_queue_limit(limit)
        .configure_socket(|s| s.set_send_buffer_size(4096));
    let cm = Manager::new();
    let mut stream = cm.stream_transparent(addr, opts).unwrap();
    let conn = stream.connection().clone();
    let (first, _) = listener.accept().await.unwrap();
    let writer = tokio::spawn(async move {
        let mut accepted = 0u64;
        for i in 0.. {
            match stream.write(&numbered(i)).await {
                Ok(n) => accepted += n as u64,
                Err(e) => {
                    assert_eq!(e.kind(), ErrorKind::BrokenPipe, "{e}");
                    break;
                }
            }
        }
        (accepted, stream)
    });
    until("the kernel and then the queue are full", || {
        let s = conn.stats();
        s.bytes_out > 0 && s.queued + CHUNK > limit
    })
    .await;
    drop(listener);
    rst(first);
    let (accepted, stream) = tokio::time::timeout(Duration::from_secs(20), writer)
        .await
        .expect("the writer never heard of the close")
        .unwrap();
    assert_eq!(conn.state(), State::Closed);
    let written = conn.stats().bytes_out;
    let back = handed_back(&stream);
    println!("accepted {accepted}, written to the kernel {written}, handed back {back}");
    assert!(back > 0);
    assert_eq!(accepted, written + back);
}

/// A write after `shutdown` is refused `BrokenPipe`, with the typed error
/// saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_after_shutdown_says_the_stream_is_closed_and_why() {
    let mut server = TestServer::start().await;
    let cm = Manager::new();
    let mut stream = cm.stream(server.addr, fast_options(10, 50)).unwrap();
    let _peer = server.next(5).await;
    stream.shutdown().await.unwrap();
    let e = stream.write(b"x").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BrokenPipe);
    assert_eq!(
        StreamError::of(&e),
        Some(&StreamError::Closed {
            reason: Some(CloseReason::Disconnected)
        })
    );
    assert_eq!(
        e.to_string(),
        "stream closed: disconnected by the application"
    );
}
