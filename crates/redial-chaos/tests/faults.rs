//! One behavioural test per fault, on real loopback sockets and real time.
//! Timing checks only assert lower bounds (a delay happened), never tight
//! upper bounds, so a busy machine cannot make them flake.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::ErrorKind;
use std::time::{Duration, Instant};

use common::*;
use redial_chaos::{Direction, Proxy};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[tokio::test]
async fn reset_all_sends_rst_to_both_sides() {
    let (proxy, server) = proxy_to_listener().await;
    let (mut client, mut conn) = pair(&proxy, &server).await;
    client.write_all(b"hi").await.unwrap();
    assert_eq!(read_exact(&mut conn, 2).await, b"hi");

    proxy.reset_all();

    let client_err = read_within(&mut client, SOON)
        .await
        .expect("client sees the reset");
    assert_eq!(client_err.unwrap_err().kind(), ErrorKind::ConnectionReset);
    let server_err = read_within(&mut conn, SOON)
        .await
        .expect("server sees the reset");
    assert_eq!(server_err.unwrap_err().kind(), ErrorKind::ConnectionReset);

    // A one-off event: the next connection works.
    let (mut client, mut conn) = pair(&proxy, &server).await;
    client.write_all(b"again").await.unwrap();
    assert_eq!(read_exact(&mut conn, 5).await, b"again");
}

#[tokio::test]
async fn close_all_sends_fin_to_both_sides() {
    let (proxy, server) = proxy_to_listener().await;
    let (mut client, mut conn) = pair(&proxy, &server).await;
    client.write_all(b"hi").await.unwrap();
    assert_eq!(read_exact(&mut conn, 2).await, b"hi");

    proxy.close_all();

    let (data, end) = read_to_end(&mut client).await;
    assert!(data.is_empty());
    end.expect("client sees a clean EOF");
    let (data, end) = read_to_end(&mut conn).await;
    assert!(data.is_empty());
    end.expect("server sees a clean EOF");
}

#[tokio::test]
async fn refuse_makes_connects_fail_then_accept_listens_on_same_port() {
    let (echo, _task) = echo_server().await;
    let proxy = Proxy::start("127.0.0.1:0", echo).await.unwrap();
    let addr = proxy.local_addr();
    let mut live = TcpStream::connect(addr).await.unwrap();
    round_trip(&mut live, b"before").await;

    proxy.refuse();
    assert!(!proxy.is_listening());
    let err = TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
    // Live connections are not affected.
    round_trip(&mut live, b"during").await;

    proxy.accept().unwrap();
    assert_eq!(proxy.local_addr(), addr);
    let mut fresh = TcpStream::connect(addr).await.unwrap();
    round_trip(&mut fresh, b"after").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuse_and_accept_work_from_a_plain_thread() {
    let (echo, _task) = echo_server().await;
    let proxy = std::sync::Arc::new(Proxy::start("127.0.0.1:0", echo).await.unwrap());
    let addr = proxy.local_addr();
    let p = std::sync::Arc::clone(&proxy);
    std::thread::spawn(move || {
        p.refuse();
        let refused = std::net::TcpStream::connect(addr).unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);
        p.accept().unwrap();
    })
    .join()
    .unwrap();
    let mut client = TcpStream::connect(addr).await.unwrap();
    round_trip(&mut client, b"ok").await;
}

#[tokio::test]
async fn blackhole_forwards_nothing_and_sends_no_fin() {
    let (proxy, server) = proxy_to_listener().await;
    let (mut client, mut conn) = pair(&proxy, &server).await;
    client.write_all(b"warm").await.unwrap();
    assert_eq!(read_exact(&mut conn, 4).await, b"warm");

    proxy.blackhole();
    client.write_all(b"up").await.unwrap();
    conn.write_all(b"down").await.unwrap();
    let quiet = Duration::from_millis(300);
    assert!(
        read_within(&mut conn, quiet).await.is_none(),
        "server got data or a close"
    );
    assert!(
        read_within(&mut client, quiet).await.is_none(),
        "client got data or a close"
    );

    // New connections are accepted but do not reach upstream.
    let mut late = TcpStream::connect(proxy.local_addr()).await.unwrap();
    assert!(tokio::time::timeout(quiet, server.accept()).await.is_err());

    proxy.heal().unwrap();
    // Held data arrives intact after the heal.
    assert_eq!(read_exact(&mut conn, 2).await, b"up");
    assert_eq!(read_exact(&mut client, 4).await, b"down");
    let (mut late_conn, _) = tokio::time::timeout(SOON, server.accept())
        .await
        .unwrap()
        .unwrap();
    late.write_all(b"late").await.unwrap();
    assert_eq!(read_exact(&mut late_conn, 4).await, b"late");
}

#[tokio::test]
async fn latency_delays_each_direction() {
    let (echo, _task) = echo_server().await;
    let proxy = Proxy::builder()
        .seed(3)
        .start("127.0.0.1:0", echo)
        .await
        .unwrap();
    let mut client = TcpStream::connect(proxy.local_addr()).await.unwrap();
    client.set_nodelay(true).unwrap();
    round_trip(&mut client, b"warm").await;

    let delay = Duration::from_millis(150);
    proxy.latency(Direction::Upstream, delay, Duration::ZERO);
    assert!(round_trip(&mut client, b"up").await >= delay);

    proxy.latency(Direction::Upstream, Duration::ZERO, Duration::ZERO);
    proxy.latency(Direction::Downstream, delay, Duration::from_millis(20));
    assert!(round_trip(&mut client, b"down").await >= delay);

    proxy.latency(Direction::Both, delay, Duration::ZERO);
    assert!(round_trip(&mut client, b"both").await >= delay * 2);
}

#[tokio::test]
async fn latency_with_jitter_keeps_order() {
    let (echo, _task) = echo_server().await;
    let proxy = Proxy::builder()
        .seed(9)
        .start("127.0.0.1:0", echo)
        .await
        .unwrap();
    proxy.latency(
        Direction::Both,
        Duration::from_millis(5),
        Duration::from_millis(20),
    );
    let mut client = TcpStream::connect(proxy.local_addr()).await.unwrap();
    let data = pattern(200_000);
    let (mut r, mut w) = client.split();
    let send = async {
        for chunk in data.chunks(1000) {
            w.write_all(chunk).await.unwrap();
        }
    };
    let mut back = vec![0; data.len()];
    let recv = tokio::io::AsyncReadExt::read_exact(&mut r, &mut back);
    let (_, got) = tokio::time::timeout(SOON, async { tokio::join!(send, recv) })
        .await
        .unwrap();
    got.unwrap();
    assert!(back == data, "data reordered or corrupted");
}

#[tokio::test]
async fn bandwidth_limits_throughput() {
    let (proxy, server) = proxy_to_listener().await;
    proxy.bandwidth(Direction::Upstream, 100_000);
    let (mut client, mut conn) = pair(&proxy, &server).await;
    let data = pattern(50_000);
    let start = Instant::now();
    client.write_all(&data).await.unwrap();
    let got = read_exact(&mut conn, data.len()).await;
    // 50 KB at 100 KB/s is half a second; allow for pacing granularity.
    assert!(
        start.elapsed() >= Duration::from_millis(400),
        "{:?}",
        start.elapsed()
    );
    assert!(got == data);

    // The other direction is not limited.
    conn.write_all(&data).await.unwrap();
    assert!(read_exact(&mut client, data.len()).await == data);
}

#[tokio::test]
async fn slice_delivers_data_intact() {
    let (proxy, server) = proxy_to_listener().await;
    proxy.slice(Direction::Both, 3, Duration::from_millis(1));
    let (mut client, mut conn) = pair(&proxy, &server).await;
    let data = pattern(600);
    client.write_all(&data).await.unwrap();

    let mut got = Vec::new();
    let mut reads = 0;
    while got.len() < data.len() {
        let chunk = read_within(&mut conn, SOON).await.expect("data").unwrap();
        assert!(!chunk.is_empty(), "early EOF");
        got.extend_from_slice(&chunk);
        reads += 1;
    }
    assert!(got == data);
    assert!(reads >= 10, "only {reads} reads: data was not sliced");

    conn.write_all(&data).await.unwrap();
    assert!(read_exact(&mut client, data.len()).await == data);
}

#[tokio::test]
async fn cut_after_resets_after_n_bytes() {
    let (proxy, server) = proxy_to_listener().await;
    proxy.cut_after(1000);
    let (mut client, mut conn) = pair(&proxy, &server).await;
    // Ignore the write result: the reset may land while writing.
    let _ = client.write_all(&pattern(5000)).await;

    let (got, end) = read_to_end(&mut conn).await;
    assert_eq!(got.len(), 1000, "server should get exactly the budget");
    assert_eq!(got, pattern(1000));
    assert_eq!(end.unwrap_err().kind(), ErrorKind::ConnectionReset);
    let (_, end) = read_to_end(&mut client).await;
    assert_eq!(end.unwrap_err().kind(), ErrorKind::ConnectionReset);
    assert_eq!(proxy.stats().bytes_upstream, 1000);
}

#[tokio::test]
async fn cut_after_counts_both_directions_and_hits_live_connections() {
    let (proxy, server) = proxy_to_listener().await;
    let (mut client, mut conn) = pair(&proxy, &server).await;
    client.write_all(&[1; 300]).await.unwrap();
    read_exact(&mut conn, 300).await;
    conn.write_all(&[2; 300]).await.unwrap();
    read_exact(&mut client, 300).await;

    // Already past the budget: reset at once.
    proxy.cut_after(500);
    let (_, end) = read_to_end(&mut client).await;
    assert_eq!(end.unwrap_err().kind(), ErrorKind::ConnectionReset);
}

#[tokio::test]
async fn slow_close_holds_the_fin() {
    let (proxy, server) = proxy_to_listener().await;
    let hold = Duration::from_millis(300);
    proxy.slow_close(hold);
    let (mut client, conn) = pair(&proxy, &server).await;
    let start = Instant::now();
    drop(conn);
    let (data, end) = read_to_end(&mut client).await;
    assert!(data.is_empty());
    end.unwrap();
    assert!(
        start.elapsed() >= hold,
        "FIN passed on after {:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn peer_reset_is_passed_on_as_reset() {
    let (proxy, server) = proxy_to_listener().await;
    let (mut client, conn) = pair(&proxy, &server).await;
    socket2::SockRef::from(&conn)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(conn);
    let (_, end) = read_to_end(&mut client).await;
    assert_eq!(end.unwrap_err().kind(), ErrorKind::ConnectionReset);
}

#[tokio::test]
async fn half_close_lets_the_other_direction_finish() {
    let (proxy, server) = proxy_to_listener().await;
    let (mut client, mut conn) = pair(&proxy, &server).await;
    client.write_all(b"request").await.unwrap();
    client.shutdown().await.unwrap();
    let (req, end) = read_to_end(&mut conn).await;
    assert_eq!(req, b"request");
    end.unwrap();
    conn.write_all(b"response").await.unwrap();
    drop(conn);
    let (resp, end) = read_to_end(&mut client).await;
    assert_eq!(resp, b"response");
    end.unwrap();
}

#[tokio::test]
async fn heal_clears_every_fault() {
    let (echo, _task) = echo_server().await;
    let proxy = Proxy::start("127.0.0.1:0", echo).await.unwrap();
    let mut old = TcpStream::connect(proxy.local_addr()).await.unwrap();
    round_trip(&mut old, b"warm").await;

    proxy.refuse();
    proxy.blackhole();
    proxy.latency(Direction::Both, Duration::from_secs(10), Duration::ZERO);
    proxy.bandwidth(Direction::Both, 10);
    proxy.slice(Direction::Both, 1, Duration::from_secs(1));
    proxy.cut_after(10_000);
    proxy.slow_close(Duration::from_secs(10));

    proxy.heal().unwrap();
    assert!(proxy.is_listening());
    // Every fault above would make these take seconds or fail.
    let data = pattern(20_000);
    let start = Instant::now();
    round_trip(&mut old, &data).await;
    let mut fresh = TcpStream::connect(proxy.local_addr()).await.unwrap();
    round_trip(&mut fresh, &data).await;
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn random_fault_is_reproducible_from_seed() {
    let (echo, _task) = echo_server().await;
    let a = Proxy::builder()
        .seed(1234)
        .start("127.0.0.1:0", echo)
        .await
        .unwrap();
    let b = Proxy::builder()
        .seed(1234)
        .start("127.0.0.1:0", echo)
        .await
        .unwrap();
    for _ in 0..20 {
        assert_eq!(a.random_fault().unwrap(), b.random_fault().unwrap());
        a.heal().unwrap();
        b.heal().unwrap();
    }
}
