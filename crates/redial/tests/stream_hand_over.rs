//! A [`redial::Stream`] writer faster than its socket waits at each
//! hand-over, as an awaited `Connection::write` does: the queue stays about
//! one hand-over long instead of filling to its limit while the peer reads
//! nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::fast_options;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// What `Connection::write` keeps queued at most: what the connection is
/// writing and one hand-over (64 KiB) more, plus the message that crossed.
const BOUND: usize = 2 * (64 * 1024 + 64);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_writer_faster_than_its_socket_waits_at_each_hand_over() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cm = redial::Manager::new();
    let opts = fast_options(10, 100).configure_socket(|s| s.set_send_buffer_size(64 * 1024));
    let mut stream = cm.stream(l.local_addr().unwrap(), opts).unwrap();
    let (mut peer, _) = l.accept().await.unwrap();
    let conn = stream.connection().clone();
    conn.wait_connected().await.unwrap();
    let sent = Arc::new(AtomicU64::new(0));
    let n = sent.clone();
    const MESSAGES: u64 = 400_000; // 25.6 MB: more than the queue's limit and both socket buffers
    let producer = tokio::spawn(async move {
        for i in 0..MESSAGES {
            let mut msg = [0u8; 64];
            msg[..8].copy_from_slice(&i.to_be_bytes());
            stream.write_all(&msg).await.unwrap();
            n.store(i + 1, Ordering::Relaxed);
        }
        stream.flush().await.unwrap();
        stream
    });
    // The peer reads nothing: wait until the producer stops making
    // progress (generous: up to 20 s), checking the queue on the way.
    let mut last = u64::MAX;
    let mut most = 0;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        most = most.max(conn.stats().queued);
        let now = sent.load(Ordering::Relaxed);
        if now == last {
            break;
        }
        last = now;
    }
    assert!(last < MESSAGES, "the socket took everything: {last}");
    let queued = conn.stats().queued.max(most);
    assert!(
        queued <= BOUND,
        "{queued} bytes queued while the socket was full"
    );
    // The peer reads again: the writer is woken and finishes, in order.
    let mut got = vec![0u8; (MESSAGES * 64) as usize];
    tokio::time::timeout(Duration::from_secs(30), peer.read_exact(&mut got))
        .await
        .expect("read in time")
        .unwrap();
    let mut stream = tokio::time::timeout(Duration::from_secs(30), producer)
        .await
        .expect("the producer finished")
        .unwrap();
    for (i, msg) in got.chunks(64).enumerate() {
        assert_eq!(msg[..8], (i as u64).to_be_bytes(), "message {i}");
    }
    stream.shutdown().await.unwrap();
}

/// On one thread the connection's task runs only when the writer waits:
/// the writer's turn at each hand-over must let it write (and be woken by
/// it), neither hang nor queue everything before the first byte goes out.
#[tokio::test(flavor = "current_thread")]
async fn on_one_thread_a_stream_writer_lets_the_connection_write_at_each_hand_over() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cm = redial::Manager::new();
    let opts = redial::Options::new().send_queue_limit(64 << 20);
    let mut stream = cm.stream(l.local_addr().unwrap(), opts).unwrap();
    let (peer, _) = l.accept().await.unwrap();
    let conn = stream.connection().clone();
    conn.wait_connected().await.unwrap();
    let reader = tokio::spawn(async move {
        let mut peer = peer;
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0usize;
        loop {
            match peer.read(&mut buf).await {
                Ok(0) | Err(_) => return total,
                Ok(n) => total += n,
            }
        }
    });
    let mut most = 0;
    let total = 16 << 20;
    for _ in 0..total / 1024 {
        stream.write_all(&[7u8; 1024]).await.unwrap();
        most = most.max(conn.stats().queued);
    }
    stream.shutdown().await.unwrap();
    assert_eq!(reader.await.unwrap(), total);
    assert!(most <= BOUND, "{most} bytes queued at once");
}
