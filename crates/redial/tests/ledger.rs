//! The byte ledger seen from the application: every byte a send accepted
//! is written, handed back, still queued, or counted as discarded — and
//! what the kernel says about the written ones agrees with redial.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use redial::{Connection, Manager, Outage, Resume};
use support::{fast_options, TestServer};
use tokio::io::AsyncReadExt;

const CHUNK: usize = 65_536;
const CHUNKS: usize = 32;

/// Waits until `done` holds for the connection's stats.
async fn until(conn: &Connection, done: impl Fn(&redial::Stats) -> bool) -> redial::Stats {
    for _ in 0..2_000 {
        let s = conn.stats();
        if done(&s) {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("never reached: {:?}", conn.stats());
}

/// Connects with a small send buffer, queues `CHUNKS` × `CHUNK` bytes to a
/// peer that reads `read` bytes and then resets the connection (`rst`) or
/// closes its side.
async fn queue_then_reset(
    server: &mut TestServer,
    cm: &Manager,
    h: redial::FnHandler,
    read: usize,
    rst: bool,
) -> Connection {
    let opts = fast_options(10, 100)
        .configure_socket(|s| s.set_send_buffer_size(16_384))
        .send_queue_limit(8 << 20);
    let conn = cm.connect_with(server.addr, h, opts).unwrap();
    let mut peer = server.next(5).await.stream;
    conn.wait_connected().await.unwrap();
    for _ in 0..CHUNKS {
        conn.send(vec![9u8; CHUNK]).unwrap();
    }
    let mut buf = vec![0u8; read];
    peer.read_exact(&mut buf).await.unwrap();
    // Written past what was read, with more still queued: then the end.
    until(&conn, |s| s.bytes_out as usize > read && s.queued > 0).await;
    if rst {
        socket2::SockRef::from(&peer)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
    } else {
        // A FIN carries the acknowledgement of everything received; an
        // RST's is never processed, so a delayed ACK would be lost with it.
        tokio::io::AsyncWriteExt::shutdown(&mut peer).await.unwrap();
    }
    drop(peer);
    conn
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_on_reset_counts_what_it_discards() {
    let mut server = TestServer::start().await;
    let cm = Manager::new();
    let conn = queue_then_reset(
        &mut server,
        &cm,
        redial::handler().on_data(|_, _| {}),
        1,
        true,
    )
    .await;
    let s = until(&conn, |s| s.discarded_bytes > 0).await;
    assert_eq!(s.queued, 0, "the queue went with the reset");
    assert_eq!(
        s.bytes_out + s.discarded_bytes,
        (CHUNKS * CHUNK) as u64,
        "written + discarded = accepted: {s:?}"
    );
    conn.disconnect().await;
}

/// `on_reset` gets `&Reset` and can still take the unsent bytes; what it
/// takes is handed back, not discarded. The kernel's counts agree with
/// what was written and with what the peer read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_reset_takes_the_unsent_bytes_and_the_kernel_counts_agree() {
    const READ: usize = 100_000;
    let mut server = TestServer::start().await;
    let cm = Manager::new();
    let seen = Arc::new(Mutex::new(None));
    let s2 = seen.clone();
    let h = redial::handler().on_data(|_, _| {}).on_reset(move |r| {
        let u = r.take_unsent();
        let back = u.len() + u.partial().map_or(0, |p| p.data.len() - p.written);
        assert_eq!(r.unsent(), &u, "still in view");
        *s2.lock().unwrap() = Some((back as u64, r.written(), r.acked(), r.unacked()));
        Resume::Stop
    });
    let conn = queue_then_reset(&mut server, &cm, h, READ, false).await;
    conn.closed().await;
    let (back, written, acked, unacked) = seen.lock().unwrap().unwrap();
    let s = conn.stats();
    println!("written {written}, acked {acked:?}, unacked {unacked:?}, handed back {back}");
    assert_eq!(s.discarded_bytes, 0);
    assert_eq!(written, s.bytes_out);
    assert_eq!(written + back, (CHUNKS * CHUNK) as u64);
    let (acked, unacked) = (acked.unwrap(), unacked.unwrap());
    assert!(acked >= READ as u64, "the peer read {READ}: acked {acked}");
    assert_eq!(acked + unacked, written, "kernel vs redial");
}

/// A connection that ends for good while holding bytes buffered during an
/// outage: the default `on_close` discards (and counts) them, a handler
/// can take them from `&Close`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_unsent_is_taken_or_counted_as_discarded() {
    let mut server = TestServer::start().await;
    server.stop_listening().await;
    let cm = Manager::new();
    let opts = || fast_options(50, 100).outage(Outage::Buffer { max_bytes: 1 << 20 });
    let plain = cm
        .connect_with(server.addr, redial::handler().on_data(|_, _| {}), opts())
        .unwrap();
    let taken = Arc::new(Mutex::new(0usize));
    let t = taken.clone();
    let h = redial::handler()
        .on_data(|_, _| {})
        .on_close(move |c| *t.lock().unwrap() = c.take_unsent().len());
    let keeping = cm.connect_with(server.addr, h, opts()).unwrap();
    for c in [&plain, &keeping] {
        c.send(vec![1u8; 1000]).unwrap();
        c.send(vec![2u8; 500]).unwrap();
        c.disconnect().await;
    }
    assert_eq!(plain.stats().discarded_bytes, 1500);
    assert_eq!(keeping.stats().discarded_bytes, 0);
    assert_eq!(*taken.lock().unwrap(), 1500);
}

/// Sends buffered while the connection is down are queued by the stats
/// too, and once the server is back they move to `bytes_out`, which the
/// server's own count confirms: at every moment written + queued is what
/// the sends accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_buffered_while_down_count_as_queued() {
    let mut server = TestServer::sink().await;
    server.stop_listening().await;
    let cm = Manager::new();
    let opts = fast_options(20, 50).outage(Outage::Buffer { max_bytes: 1 << 20 });
    let conn = cm
        .connect_with(server.addr, redial::handler().on_data(|_, _| {}), opts)
        .unwrap();
    conn.send(vec![1u8; 1000]).unwrap();
    conn.send(vec![2u8; 500]).unwrap();
    let s = conn.stats();
    assert_eq!((s.bytes_out, s.queued), (0, 1500), "{s:?}");
    server.relisten().await;
    let s = until(&conn, |s| s.bytes_out == 1500).await;
    assert_eq!(s.queued, 0, "{s:?}");
    support::wait_until("1500 bytes at the server", Duration::from_secs(30), || {
        server.received() == 1500
    })
    .await;
    conn.disconnect().await;
}

/// A dropped `Sender` whose bytes the connection refuses: as loud as the
/// default `on_reset` (the same counter).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_sender_whose_bytes_are_refused_counts_them_as_discarded() {
    let mut server = TestServer::start().await;
    server.stop_listening().await;
    let cm = Manager::new();
    let conn = cm
        .connect_with(
            server.addr,
            redial::handler().on_data(|_, _| {}),
            fast_options(50, 100),
        )
        .unwrap();
    let mut tx = conn.sender();
    tx.send("12345").unwrap();
    drop(tx);
    let s = conn.stats();
    assert_eq!((s.sender_dropped, s.discarded_bytes), (5, 5));
    conn.disconnect().await;
}
