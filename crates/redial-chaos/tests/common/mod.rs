//! Helpers shared by the integration tests: servers on loopback, connected
//! client/server pairs through a proxy, and reads with a deadline.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use redial_chaos::Proxy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Upper bound for anything that should happen "soon"; generous on purpose.
pub const SOON: Duration = Duration::from_secs(5);

/// A server that echoes every byte back, on every connection.
pub async fn echo_server() -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = conn.set_nodelay(true);
                let (mut r, mut w) = conn.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    (addr, task)
}

/// A listener plus a proxy in front of it.
pub async fn proxy_to_listener() -> (Proxy, TcpListener) {
    let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = Proxy::builder()
        .seed(1)
        .start("127.0.0.1:0", server.local_addr().unwrap())
        .await
        .unwrap();
    (proxy, server)
}

/// A client connected through the proxy, and the server's end of it.
pub async fn pair(proxy: &Proxy, server: &TcpListener) -> (TcpStream, TcpStream) {
    let client = TcpStream::connect(proxy.local_addr()).await.unwrap();
    client.set_nodelay(true).unwrap();
    let (conn, _) = tokio::time::timeout(SOON, server.accept())
        .await
        .expect("upstream connection within 5 s")
        .unwrap();
    conn.set_nodelay(true).unwrap();
    (client, conn)
}

/// Reads once, giving up after `within`: `None` means nothing happened.
pub async fn read_within(stream: &mut TcpStream, within: Duration) -> Option<io::Result<Vec<u8>>> {
    let mut buf = vec![0; 64 * 1024];
    match tokio::time::timeout(within, stream.read(&mut buf)).await {
        Ok(Ok(n)) => Some(Ok(buf[..n].to_vec())),
        Ok(Err(e)) => Some(Err(e)),
        Err(_) => None,
    }
}

/// Reads exactly `n` bytes or panics after [`SOON`].
pub async fn read_exact(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    tokio::time::timeout(SOON, stream.read_exact(&mut buf))
        .await
        .expect("data within 5 s")
        .expect("read_exact");
    buf
}

/// Reads until EOF or error; returns what arrived and how it ended.
pub async fn read_to_end(stream: &mut TcpStream) -> (Vec<u8>, io::Result<()>) {
    let mut all = Vec::new();
    let mut buf = vec![0; 64 * 1024];
    loop {
        match tokio::time::timeout(SOON, stream.read(&mut buf)).await {
            Ok(Ok(0)) => return (all, Ok(())),
            Ok(Ok(n)) => all.extend_from_slice(&buf[..n]),
            Ok(Err(e)) => return (all, Err(e)),
            Err(_) => panic!("no EOF or error within 5 s ({} bytes read)", all.len()),
        }
    }
}

/// One echo round trip of `msg`; returns how long it took.
pub async fn round_trip(stream: &mut TcpStream, msg: &[u8]) -> Duration {
    let start = std::time::Instant::now();
    stream.write_all(msg).await.unwrap();
    let back = read_exact(stream, msg.len()).await;
    assert_eq!(back, msg);
    start.elapsed()
}

/// Bytes 0, 1, 2, … wrapping, so reordering or loss shows up.
pub fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}
