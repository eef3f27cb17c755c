//! Unix domain sockets: `unix:/path` endpoints for connections and pools; the
//! socket file going away and coming back behaves like a server restart.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::PathBuf;
use std::time::Duration;

use redial::Manager;
use support::{fast_options, Recorder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;

fn socket_path(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("redial-{name}-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

/// Echoes every connection until the listener is dropped.
fn echo(l: UnixListener) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // A JoinSet, so aborting the server also closes its connections.
        let mut conns = tokio::task::JoinSet::new();
        while let Ok((mut s, _)) = l.accept().await {
            conns.spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unix_socket_that_disappears_and_comes_back_is_reconnected() {
    let path = socket_path("restart");
    let server = echo(UnixListener::bind(&path).unwrap());
    let calls = Recorder::new();
    let cm = Manager::new();
    let endpoint = format!("unix:{}", path.display());
    let conn = cm
        .connect_with(
            endpoint.as_str(),
            calls.handler().on_connect(|s| {
                assert!(s.unix().is_some() && s.tcp().is_none());
                s.send(format!("hello {}", s.generation())).unwrap();
            }),
            fast_options(20, 100),
        )
        .unwrap();
    calls.wait_saw(b"hello 1", 5).await;

    // The server goes away with its socket file.
    server.abort();
    let _ = server.await;
    std::fs::remove_file(&path).unwrap();
    calls.wait("failed", 2, 5).await;
    assert_eq!(calls.count("reset"), 1);

    // ... and comes back.
    let server = echo(UnixListener::bind(&path).unwrap());
    calls.wait_saw(b"hello 2", 5).await;
    assert_eq!(conn.stats().connects, 2);
    conn.disconnect().await;
    server.abort();
    let _ = std::fs::remove_file(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_of_unix_connections_sends_to_live_members() {
    let path = socket_path("pool");
    let server = echo(UnixListener::bind(&path).unwrap());
    let cm = Manager::new();
    let pool = cm.create_pool("unix").unwrap();
    let calls = Recorder::new();
    for _ in 0..3 {
        pool.add_connection(format!("unix:{}", path.display()), calls.handler())
            .unwrap();
    }
    tokio::time::timeout(Duration::from_secs(5), pool.wait_live(3))
        .await
        .unwrap();
    for i in 0..3 {
        pool.send(format!("m{i}")).unwrap();
    }
    for i in 0..3 {
        calls.wait_saw(format!("m{i}").as_bytes(), 5).await;
    }
    pool.disconnect().await;
    server.abort();
    let _ = std::fs::remove_file(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_over_a_unix_socket_survives_a_restart() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let path = socket_path("stream");
    let server = echo(UnixListener::bind(&path).unwrap());
    let cm = Manager::new();
    let mut stream = cm
        .stream(format!("unix:{}", path.display()), fast_options(20, 100))
        .unwrap();
    stream.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    stream.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");

    server.abort();
    let _ = server.await;
    std::fs::remove_file(&path).unwrap();
    let err = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
    let server = echo(UnixListener::bind(&path).unwrap());
    stream.write_all(b"pong").await.unwrap();
    stream.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"pong");
    assert_eq!(stream.generation(), 2);
    stream.shutdown().await.unwrap();
    server.abort();
    let _ = std::fs::remove_file(&path);
}
