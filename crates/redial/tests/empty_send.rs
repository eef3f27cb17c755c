//! A zero-byte send is no message: on every send path it returns `Ok`
//! whatever the connection's state, and leaves nothing behind (no empty
//! chunk handed back later, no refusal).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use redial::{Manager, Options, Outage};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

/// A loopback port nothing listens on.
async fn closed_port() -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_byte_sends_are_ok_on_a_closed_connection_on_every_path() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cm = Manager::new();
    let conn = cm
        .connect(l.local_addr().unwrap(), redial::handler())
        .unwrap();
    let (_peer, _) = l.accept().await.unwrap();
    conn.wait_connected().await.unwrap();
    let sock = conn.socket().unwrap();
    let mut tx = conn.sender();
    conn.disconnect().await;
    assert!(
        conn.send(b"x").is_err(),
        "a closed connection refuses bytes"
    );

    assert!(conn.send(b"").is_ok());
    assert!(conn.write(b"").await.is_ok());
    assert!(sock.send(b"").is_ok());
    assert!(sock.write(b"").await.is_ok());
    assert!(tx.send(b"").is_ok());
    assert!(tx.write(b"").await.is_ok());
    assert_eq!(tx.held(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_byte_sends_to_a_pool_without_members_are_ok() {
    let cm = Manager::new();
    let pool = cm.create_pool("empty-send").unwrap();
    assert!(pool.send(b"x").is_err(), "no member takes bytes");
    assert!(pool.send(b"").is_ok());
    assert!(pool.send_wait(b"", Duration::from_millis(1)).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_byte_write_to_a_closed_stream_returns_zero() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cm = Manager::new();
    let mut stream = cm.stream(l.local_addr().unwrap(), Options::new()).unwrap();
    let (_peer, _) = l.accept().await.unwrap();
    stream.connection().wait_connected().await.unwrap();
    stream.shutdown().await.unwrap();
    assert!(
        stream.write(b"x").await.is_err(),
        "a closed stream refuses bytes"
    );
    assert_eq!(stream.write(b"").await.unwrap(), 0);
}

/// Bytes held while down come back whole at the close: the empty sends
/// among them left no empty chunk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_byte_sends_leave_no_empty_chunk_to_hand_back() {
    let (tx_close, mut closed) = tokio::sync::mpsc::unbounded_channel();
    let handler = redial::handler().on_close(move |c| {
        let chunks: Vec<Vec<u8>> = c.unsent().chunks().map(<[u8]>::to_vec).collect();
        let _ = tx_close.send(chunks);
    });
    let opts = Options::new().outage(Outage::Buffer { max_bytes: 1024 });
    let cm = Manager::new();
    let conn = cm.connect_with(closed_port().await, handler, opts).unwrap();
    conn.send(b"a").unwrap();
    conn.send(b"").unwrap();
    conn.write(b"").await.unwrap();
    conn.send(b"b").unwrap();
    let mut tx = conn.sender();
    tx.send(b"").unwrap();
    tx.send(b"c").unwrap();
    tx.send(b"").unwrap();
    tx.flush().await.unwrap();
    let _fire_and_forget = conn.disconnect();
    let chunks = tokio::time::timeout(Duration::from_secs(20), closed.recv())
        .await
        .expect("on_close within 20 s")
        .unwrap();
    assert_eq!(chunks, [b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
}
