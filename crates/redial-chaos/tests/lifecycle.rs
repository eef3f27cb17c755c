//! Starting, counting, bad input and shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::ErrorKind;
use std::time::Duration;

use common::*;
use redial_chaos::{Error, Proxy};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[tokio::test]
async fn wait_accepted_counts_connections() {
    let (echo, _task) = echo_server().await;
    let proxy = Proxy::start("127.0.0.1:0", echo).await.unwrap();
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(TcpStream::connect(proxy.local_addr()).await.unwrap());
    }
    proxy.wait_accepted(3, SOON).await.unwrap();
    assert_eq!(proxy.stats().accepted, 3);

    let err = proxy
        .wait_accepted(4, Duration::from_millis(100))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Timeout {
                wanted: 4,
                seen: 3,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn stats_count_bytes_each_way_and_live_connections() {
    let (proxy, server) = proxy_to_listener().await;
    let (mut client, mut conn) = pair(&proxy, &server).await;
    client.write_all(&[0; 100]).await.unwrap();
    read_exact(&mut conn, 100).await;
    conn.write_all(&[0; 40]).await.unwrap();
    read_exact(&mut client, 40).await;
    let stats = proxy.stats();
    assert_eq!((stats.bytes_upstream, stats.bytes_downstream), (100, 40));
    assert_eq!(stats.live, 1);

    drop(client);
    drop(conn);
    let deadline = tokio::time::Instant::now() + SOON;
    while proxy.stats().live != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "connection never ended"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn start_on_port_in_use_names_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let err = Proxy::start(addr, "127.0.0.1:9").await.unwrap_err();
    assert!(matches!(err, Error::Bind { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&addr.to_string()), "{msg}");
    assert!(msg.starts_with("could not listen on"), "{msg}");
}

#[tokio::test]
async fn bad_addresses_are_named_in_the_error() {
    let err = Proxy::start("127.0.0.1:0", "no port here")
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("upstream") && msg.contains("`no port here`"),
        "{msg}"
    );
    let err = Proxy::start("999.1.1.1:80", "127.0.0.1:9")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("listen"), "{err}");
}

#[tokio::test]
async fn unreachable_upstream_closes_client_without_panic() {
    // A port that was free a moment ago: connects to it are refused.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let proxy = Proxy::start("127.0.0.1:0", dead).await.unwrap();
    for _ in 0..2 {
        let mut client = TcpStream::connect(proxy.local_addr()).await.unwrap();
        let (data, end) = read_to_end(&mut client).await;
        assert!(data.is_empty());
        if let Err(e) = end {
            assert_eq!(e.kind(), ErrorKind::ConnectionReset);
        }
    }
    assert_eq!(proxy.stats().upstream_failures, 2);
    assert!(proxy.is_listening());
}

#[tokio::test]
async fn shutdown_stops_everything() {
    let (proxy, server) = proxy_to_listener().await;
    let addr = proxy.local_addr();
    let (mut client, mut conn) = pair(&proxy, &server).await;
    client.write_all(b"x").await.unwrap();
    read_exact(&mut conn, 1).await;

    proxy.shutdown().await;

    assert_eq!(proxy.stats().live, 0);
    assert!(!proxy.is_listening());
    // The connection task is gone, so both ends see the sockets close.
    assert!(matches!(read_within(&mut client, SOON).await, Some(Ok(d)) if d.is_empty()));
    assert!(matches!(read_within(&mut conn, SOON).await, Some(Ok(d)) if d.is_empty()));
    let err = TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
    assert!(matches!(proxy.accept(), Err(Error::ShutDown { .. })));
    proxy.shutdown().await; // idempotent
}

#[tokio::test]
async fn dropping_the_proxy_stops_it() {
    let (proxy, server) = proxy_to_listener().await;
    let addr = proxy.local_addr();
    let (mut client, _conn) = pair(&proxy, &server).await;
    drop(proxy);
    assert!(matches!(read_within(&mut client, SOON).await, Some(Ok(d)) if d.is_empty()));
    let err = TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
}
