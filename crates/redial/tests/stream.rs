//! `Stream`: a managed connection as `AsyncRead + AsyncWrite`, with codecs
//! and `tokio::io::copy`; a reset is one `ConnectionReset` error, then I/O
//! continues on the next connection; shutdown is final.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::ErrorKind;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use redial::{Manager, Stream};
use support::{fast_options, read_to_end, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, LinesCodec};

/// Echoes one accepted connection until it ends.
fn echo(mut s: TcpStream) -> tokio::task::JoinHandle<TcpStream> {
    tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return s,
                Ok(n) => {
                    if s.write_all(&buf[..n]).await.is_err() {
                        return s;
                    }
                }
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_is_one_connection_reset_error_then_io_continues() {
    let mut server = TestServer::start().await;
    let cm = Manager::new();
    let mut stream = cm.stream(server.addr, fast_options(10, 100)).unwrap();
    let first = server.next(5).await;
    stream.write_all(b"one").await.unwrap();
    stream.flush().await.unwrap();
    let mut peer = first.stream;
    let mut got = [0u8; 3];
    peer.read_exact(&mut got).await.unwrap();
    assert_eq!(stream.generation(), 1);
    drop(peer); // FIN

    let mut buf = [0u8; 16];
    let err = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset);
    // Only one error: the write waits for the next connection and goes there.
    stream.write_all(b"two").await.unwrap();
    stream.flush().await.unwrap();
    let second = server.next(5).await;
    let mut peer = second.stream;
    peer.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"two");
    assert_eq!(stream.generation(), 2);
    peer.write_all(b"back").await.unwrap();
    let mut back = [0u8; 4];
    stream.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"back");
    stream.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lines_codec_sees_the_reset_and_goes_on() {
    let mut server = TestServer::start().await;
    let cm = Manager::new();
    let stream = cm.stream(server.addr, fast_options(10, 100)).unwrap();
    let mut framed = Framed::new(stream, LinesCodec::new());
    let first = echo(server.next(5).await.stream);
    framed.send("hello").await.unwrap();
    assert_eq!(framed.next().await.unwrap().unwrap(), "hello");
    // The server goes away mid-conversation.
    first.abort();
    let err = tokio::time::timeout(Duration::from_secs(5), framed.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert!(format!("{err}").contains("connection lost"), "{err}");
    // A Framed ends after an error; a new one over the same stream starts
    // clean, its half frame dropped.
    let mut framed = Framed::new(framed.into_inner(), LinesCodec::new());
    let _second = echo(server.next(5).await.stream);
    framed.send("again").await.unwrap();
    assert_eq!(framed.next().await.unwrap().unwrap(), "again");
    assert_eq!(framed.get_ref().generation(), 2);
    framed.get_mut().shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_io_copy_writes_through_the_stream_and_shutdown_is_final() {
    let mut server = TestServer::start().await;
    let cm = Manager::new();
    let mut stream = cm.stream(server.addr, fast_options(10, 100)).unwrap();
    let peer = server.next(5).await;
    let data: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut src = &data[..];
    tokio::io::copy(&mut src, &mut stream).await.unwrap();
    stream.shutdown().await.unwrap();
    let got = read_to_end(peer.stream, 10).await;
    assert!(got == data, "{} of {} bytes", got.len(), data.len());
    // No reconnect: a quiet window, 30 times the 10 ms retry delay.
    assert!(
        server.try_next(Duration::from_millis(300)).await.is_none(),
        "reconnected after shutdown"
    );
    assert_eq!(
        stream.write(b"x").await.unwrap_err().kind(),
        ErrorKind::BrokenPipe
    );
    let mut buf = [0u8; 1];
    assert_eq!(
        stream.read(&mut buf).await.unwrap(),
        0,
        "end of stream after shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transparent_stream_hides_resets() {
    let mut server = TestServer::start().await;
    let cm = Manager::new();
    let mut stream = cm
        .stream_transparent(server.addr, fast_options(10, 100))
        .unwrap();
    let first = server.next(5).await;
    stream.write_all(b"a").await.unwrap();
    stream.flush().await.unwrap();
    drop(first.stream);
    let second = server.next(5).await;
    stream.write_all(b"b").await.unwrap();
    stream.flush().await.unwrap();
    let mut peer = second.stream;
    let mut got = [0u8; 1];
    peer.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"b");
    peer.write_all(b"z").await.unwrap();
    stream.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"z");
    stream.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_does_not_read_stops_the_socket_reads() {
    let mut server = TestServer::start().await;
    let cm = Manager::new();
    let mut stream = cm.stream(server.addr, fast_options(10, 100)).unwrap();
    let mut peer = server.next(5).await.stream;
    let flood = tokio::spawn(async move {
        let chunk = vec![1u8; 64 * 1024];
        let mut sent = 0usize;
        while sent < 64 << 20 {
            if peer.write_all(&chunk).await.is_err() {
                break;
            }
            sent += chunk.len();
        }
        sent
    });
    let conn = stream.connection().clone();
    support::wait_until("a full read buffer", Duration::from_secs(30), || {
        conn.stats().bytes_in as usize >= Stream::READ_LIMIT
    })
    .await;
    // Then no more is read: nothing to wait for but time, so a quiet
    // window, thousands of times what loopback needs to move 64 KiB.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let read_in = conn.stats().bytes_in as usize;
    assert!(
        read_in <= Stream::READ_LIMIT + 64 * 1024,
        "read {read_in} bytes with nobody reading"
    );
    assert!(!flood.is_finished(), "the peer was not slowed down");
    // Reading resumes as the reader drains.
    let mut sink = vec![0u8; 1 << 20];
    let mut total = 0;
    while total < 4 << 20 {
        total += stream.read(&mut sink).await.unwrap();
    }
    stream.connection().abort();
    flood.abort();
}
