//! Sending: stale sockets refuse writes, a full queue hands the bytes back,
//! a reset hands back what was queued, and `Outage::Buffer` delivers what
//! was sent during an outage after `on_connect`'s own bytes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use redial::{Manager, Resume, SendError, Socket};
use support::{fast_options, in_buffered_outage, read_to_end, rst, TestServer};
use tokio::io::AsyncReadExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_from_an_earlier_connection_refuses_writes() {
    let mut server = TestServer::start().await;
    let sockets: Arc<Mutex<Vec<Socket>>> = Arc::default();
    let s2 = sockets.clone();
    let h = redial::handler()
        .on_connect(move |s| s2.lock().unwrap().push(s.clone()))
        .on_data(|_, _| {});
    let cm = Manager::new();
    let conn = cm
        .connect_with(server.addr, h, fast_options(10, 100))
        .unwrap();
    let first = server.next(5).await;
    conn.wait_connected().await.unwrap();
    drop(first.stream);
    let mut second = server.next(5).await;
    support::wait_until("the second on_connect", Duration::from_secs(30), || {
        sockets.lock().unwrap().len() >= 2
    })
    .await;
    let (old, new) = {
        let s = sockets.lock().unwrap();
        (s[0].clone(), s[1].clone())
    };
    assert!(!old.is_open());
    assert_eq!(
        old.send("stale").unwrap_err(),
        SendError::Closed {
            data: b"stale".to_vec()
        }
    );
    assert!(old.write("stale").await.is_err());
    new.send("fresh").unwrap();
    let mut buf = [0u8; 5];
    second.stream.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"fresh");
    conn.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_send_queue_hands_the_bytes_back() {
    let mut server = TestServer::start().await;
    let cm = Manager::new();
    let opts = fast_options(10, 100)
        .send_queue_limit(64 * 1024)
        .configure_socket(|s| s.set_send_buffer_size(4096));
    let conn = cm
        .connect_with(server.addr, redial::handler(), opts)
        .unwrap();
    let _peer_never_reads = server.next(5).await;
    conn.wait_connected().await.unwrap();
    let mut refused = None;
    for i in 0..10_000u32 {
        if let Err(e) = conn.send(i.to_be_bytes().repeat(256)) {
            refused = Some((i, e));
            break;
        }
    }
    let (i, e) = refused.expect("the queue never filled");
    match e {
        SendError::Full {
            data,
            limit,
            queued,
        } => {
            assert_eq!(data, i.to_be_bytes().repeat(256));
            assert_eq!(limit, 64 * 1024);
            assert!(queued + 1024 > limit);
        }
        other => panic!("{other:?}"),
    }
    conn.abort().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_waits_for_room_instead_of_failing() {
    let mut server = TestServer::start().await;
    let cm = Manager::new();
    let opts = fast_options(10, 100).send_queue_limit(16 * 1024);
    let conn = cm
        .connect_with(server.addr, redial::handler(), opts)
        .unwrap();
    let peer = server.next(5).await;
    conn.wait_connected().await.unwrap();
    let reader = tokio::spawn(read_to_end(peer.stream, 20));
    let total = 4 << 20;
    for _ in 0..total / 1000 {
        conn.write([9u8; 1000]).await.unwrap();
    }
    conn.disconnect().await;
    assert_eq!(reader.await.unwrap().len(), total / 1000 * 1000);
}

// `Connection::write` is cancel-safe: dropped after it handed its bytes
// over (while it waits for the connection to take them, as it does every
// 64 KiB queued), the bytes stay queued and go out whole. On one thread,
// so the connection cannot take them before the first poll returns.
#[tokio::test(flavor = "current_thread")]
async fn a_write_dropped_after_its_hand_over_still_sends_its_bytes() {
    use std::future::Future;
    let mut server = TestServer::start().await;
    let cm = Manager::new();
    let conn = cm
        .connect_with(server.addr, redial::handler(), fast_options(10, 100))
        .unwrap();
    let peer = server.next(5).await;
    conn.wait_connected().await.unwrap();
    let reader = tokio::spawn(read_to_end(peer.stream, 20));
    let data: Vec<u8> = (0..128 * 1024u32).map(|i| (i % 251) as u8).collect();
    let mut write = Box::pin(conn.write(&data));
    let first = std::future::poll_fn(|cx| std::task::Poll::Ready(write.as_mut().poll(cx))).await;
    assert!(
        first.is_pending(),
        "the write waits for the connection to take its bytes"
    );
    drop(write);
    conn.disconnect().await;
    let got = reader.await.unwrap();
    assert_eq!(got.len(), data.len());
    assert!(got == data, "bytes differ");
}

// A producer faster than its socket: every 64 KiB queued, `write` waits
// until the connection has taken what is queued, so the queue stays about
// two hand-overs long (what is queued and what the connection is writing),
// as short as a `BufWriter` keeps its buffer, instead of filling up to the
// queue's limit (4 MiB) while the peer reads nothing. The writer is woken
// when the peer reads again, and every byte arrives in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_faster_than_its_socket_waits_at_each_hand_over() {
    let mut server = TestServer::start().await;
    let cm = Manager::new();
    let opts = fast_options(10, 100).configure_socket(|s| s.set_send_buffer_size(64 * 1024));
    let conn = cm
        .connect_with(server.addr, redial::handler(), opts)
        .unwrap();
    let mut peer = server.next(5).await;
    conn.wait_connected().await.unwrap();
    let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (c, n) = (conn.clone(), sent.clone());
    const MESSAGES: u64 = 400_000; // 25.6 MB: more than the queue's limit and both socket buffers
    let producer = tokio::spawn(async move {
        for i in 0..MESSAGES {
            let mut msg = [0u8; 64];
            msg[..8].copy_from_slice(&i.to_be_bytes());
            c.write(msg).await.unwrap();
            n.store(i + 1, std::sync::atomic::Ordering::Relaxed);
        }
    });
    // The peer reads nothing: wait until the producer stops making
    // progress (generous: up to 20 s).
    let mut last = u64::MAX;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = sent.load(std::sync::atomic::Ordering::Relaxed);
        if now == last {
            break;
        }
        last = now;
    }
    assert!(last < MESSAGES, "the socket took everything: {last}");
    let queued = conn.stats().queued;
    assert!(
        queued <= 2 * (64 * 1024 + 64),
        "{queued} bytes queued while the socket was full"
    );
    // The peer reads again: the writer is woken and finishes.
    let got = read_exactly(&mut peer.stream, (MESSAGES * 64) as usize, 30).await;
    tokio::time::timeout(Duration::from_secs(30), producer)
        .await
        .expect("the producer finished")
        .unwrap();
    for (i, msg) in got.chunks(64).enumerate() {
        assert_eq!(msg[..8], (i as u64).to_be_bytes(), "message {i}");
    }
    conn.disconnect().await;
}

async fn read_exactly(stream: &mut tokio::net::TcpStream, n: usize, secs: u64) -> Vec<u8> {
    let mut out = vec![0u8; n];
    tokio::time::timeout(Duration::from_secs(secs), stream.read_exact(&mut out))
        .await
        .expect("read in time")
        .unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_hands_back_what_was_queued_and_never_written() {
    let mut server = TestServer::start().await;
    let cm = Manager::new();
    let resets = Arc::new(Mutex::new(Vec::new()));
    let r2 = resets.clone();
    let h = redial::handler().on_data(|_, _| {}).on_reset(move |r| {
        let u = r.unsent();
        r2.lock().unwrap().push((
            r.written(),
            u.len(),
            u.chunks().count(),
            u.partial().map(|p| (p.data.len(), p.written)),
        ));
        Resume::Stop
    });
    let opts = fast_options(10, 100)
        .send_queue_limit(64 << 20)
        .configure_socket(|s| s.set_send_buffer_size(4096));
    let conn = cm.connect_with(server.addr, h, opts).unwrap();
    let peer = server.next(5).await;
    conn.wait_connected().await.unwrap();
    let chunk = 10_000;
    let n = 2000;
    for _ in 0..n {
        conn.send(vec![5u8; chunk]).unwrap();
    }
    // Reset part way: some bytes written, most still queued.
    support::wait_until("some bytes written", Duration::from_secs(30), || {
        conn.stats().bytes_out > 0
    })
    .await;
    rst(peer.stream);
    conn.closed().await;
    let (written, unsent, chunks, partial) = resets.lock().unwrap()[0];
    assert!(unsent > 0, "nothing was handed back");
    assert_eq!(unsent, chunks * chunk, "whole chunks only");
    let partial_len = partial.map_or(0, |(len, _)| len);
    let partial_written = partial.map_or(0, |(_, w)| w as u64);
    assert!(partial.is_none_or(|(len, w)| len == chunk && w > 0 && w < chunk));
    // Every byte sent is either written or handed back, once.
    assert_eq!(
        written - partial_written + (unsent + partial_len) as u64,
        (n * chunk) as u64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_buffer_delivers_after_on_connect_in_order() {
    let mut server = TestServer::start().await;
    let cm = Manager::new();
    let conn = in_buffered_outage(&cm, &mut server, 1000).await;
    for i in 0..10 {
        conn.send(format!("m{i};")).unwrap();
    }
    let big = vec![b'x'; 2000];
    assert!(matches!(
        conn.send(&big),
        Err(SendError::OutageBufferFull { limit: 1000, .. })
    ));
    server.relisten().await;
    let second = server.next(5).await;
    conn.wait_connected().await.unwrap();
    conn.disconnect();
    let got = String::from_utf8(read_to_end(second.stream, 10).await).unwrap();
    assert_eq!(got, "hello2;m0;m1;m2;m3;m4;m5;m6;m7;m8;m9;");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_reject_hands_the_bytes_back() {
    let mut server = TestServer::start().await;
    server.stop_listening().await;
    let cm = Manager::new();
    let conn = cm
        .connect_with(server.addr, redial::handler(), fast_options(20, 50))
        .unwrap();
    assert_eq!(
        conn.send("x").unwrap_err(),
        SendError::NotConnected {
            data: b"x".to_vec()
        }
    );
    conn.disconnect().await;
}
