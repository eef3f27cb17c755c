//! Regression: delays far beyond any clock (`Duration::MAX`, or the
//! 200000000000000d a user once typed) used to overflow `Instant + Duration`
//! and panic the connection's task on the first byte. They now saturate at
//! `MAX_DELAY`: the data waits, and the connection lives on.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{pair, proxy_to_listener, read_exact, SOON};
use redial_chaos::{Direction, Proxy};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const HUGE: Duration = Duration::from_secs(200_000_000_000_000 * 86_400);

/// Waits until the proxy holds `n` bytes; panics with what it saw.
async fn wait_held(proxy: &Proxy, n: u64) {
    let waited = tokio::time::timeout(SOON, async {
        while proxy.stats().held != n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "the proxy should hold {n} bytes: {:?}",
        proxy.stats()
    );
}

/// The connection still forwards downstream: the task did not die.
async fn still_forwards_down(client: &mut TcpStream, conn: &mut TcpStream, proxy: &Proxy) {
    conn.write_all(b"z").await.unwrap();
    assert_eq!(read_exact(client, 1).await, b"z");
    assert_eq!(proxy.stats().live, 1, "{:?}", proxy.stats());
}

#[tokio::test]
async fn latency_and_jitter_of_any_size_hold_data_without_panicking() {
    for (delay, jitter) in [
        (Duration::MAX, Duration::MAX),
        (HUGE, Duration::ZERO),
        (Duration::from_millis(1), Duration::MAX),
    ] {
        let (proxy, server) = proxy_to_listener().await;
        let (mut client, mut conn) = pair(&proxy, &server).await;
        proxy.latency(Direction::Upstream, delay, jitter);
        client.write_all(b"a").await.unwrap();
        // The byte was read and is waiting out the delay.
        wait_held(&proxy, 1).await;
        still_forwards_down(&mut client, &mut conn, &proxy).await;
        // More data queues behind it, in order, without a panic either.
        client.write_all(b"bc").await.unwrap();
        wait_held(&proxy, 3).await;
        still_forwards_down(&mut client, &mut conn, &proxy).await;
        drop(client);
        proxy.shutdown().await;
        assert_eq!(
            proxy.stats().held,
            0,
            "held bytes leave with the connection"
        );
    }
}

#[tokio::test]
async fn slice_delay_of_any_size_holds_the_rest_without_panicking() {
    let (proxy, server) = proxy_to_listener().await;
    let (mut client, mut conn) = pair(&proxy, &server).await;
    proxy.slice(Direction::Upstream, 1, Duration::MAX);
    client.write_all(b"ab").await.unwrap();
    // The first slice goes out; the second waits a (capped) eternity.
    assert_eq!(read_exact(&mut conn, 1).await, b"a");
    wait_held(&proxy, 1).await;
    still_forwards_down(&mut client, &mut conn, &proxy).await;
}

#[tokio::test]
async fn slow_close_and_connect_timeout_of_any_size_are_accepted() {
    let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = Proxy::builder()
        .connect_timeout(Duration::MAX)
        .start("127.0.0.1:0", server.local_addr().unwrap())
        .await
        .unwrap();
    let (mut client, mut conn) = pair(&proxy, &server).await;
    proxy.slow_close(Duration::MAX);
    client.write_all(b"a").await.unwrap();
    assert_eq!(read_exact(&mut conn, 1).await, b"a");
    // The server's FIN is held; the other direction keeps flowing.
    conn.shutdown().await.unwrap();
    client.write_all(b"b").await.unwrap();
    assert_eq!(read_exact(&mut conn, 1).await, b"b");
    assert_eq!(proxy.stats().live, 1);
}
