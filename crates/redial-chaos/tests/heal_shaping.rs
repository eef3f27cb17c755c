//! Regression: `heal()` lifts latency from a live connection (a fault change
//! seen while the pump was waiting used to be marked read and dropped).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use redial_chaos::{Direction, Proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[tokio::test]
async fn heal_lifts_latency_from_a_live_connection() {
    let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = Proxy::start("127.0.0.1:0", server.local_addr().unwrap())
        .await
        .unwrap();
    let mut client = TcpStream::connect(proxy.local_addr()).await.unwrap();
    let (mut conn, _) = server.accept().await.unwrap();
    // Long enough that a byte it still delayed could not pass for an
    // undelayed one on a busy machine.
    let latency = Duration::from_secs(1);
    proxy.latency(Direction::Upstream, latency, Duration::ZERO);
    client.write_all(b"a").await.unwrap();
    // The pump holds "a" and waits out its delay when the heal comes.
    let held = Instant::now();
    while proxy.stats().held != 1 {
        assert!(
            held.elapsed() < Duration::from_secs(30),
            "{:?}",
            proxy.stats()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    proxy.heal().unwrap();
    let mut b = [0u8; 1];
    tokio::time::timeout(Duration::from_secs(30), conn.read_exact(&mut b))
        .await
        .unwrap()
        .unwrap();
    let t = Instant::now();
    client.write_all(b"b").await.unwrap();
    conn.read_exact(&mut b).await.unwrap();
    assert!(
        t.elapsed() < latency / 2,
        "latency still applied: {:?}",
        t.elapsed()
    );
}
