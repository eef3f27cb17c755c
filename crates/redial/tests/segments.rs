//! The segmented send queue against a real socket: small and multi-MiB
//! sends from several tasks at once (through `Connection::write` and a
//! `Sender`), where every large send and every sender batch is a segment
//! of its own, arrive whole and in order per producer; and a reset in the
//! middle of such a mix hands back whole messages and keeps the ledger.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use redial::{Manager, Resume, Unsent};
use support::{fast_options, wait_until, TestServer};
use tokio::io::AsyncReadExt;

/// Bytes before each message's payload: producer, sequence number, length.
const HEADER: usize = 9;

/// Message `seq` of producer `p`: a header, then `len` bytes that depend
/// on all three, so a byte out of place is caught.
fn message(p: u8, seq: u32, len: usize) -> Vec<u8> {
    let mut m = Vec::with_capacity(HEADER + len);
    m.push(p);
    m.extend_from_slice(&seq.to_le_bytes());
    m.extend_from_slice(&(len as u32).to_le_bytes());
    m.extend((0..len).map(|k| fill(p, seq, k)));
    m
}

fn fill(p: u8, seq: u32, k: usize) -> u8 {
    (k as u32)
        .wrapping_mul(7)
        .wrapping_add(seq)
        .wrapping_add(u32::from(p) * 31) as u8
}

/// Payload length of message `seq`: mostly small, every fifth one 1 to 3
/// MiB (a segment of its own, as it is past the tail's bound).
fn size(p: u8, seq: u32) -> usize {
    if seq % 5 == 2 {
        (1 << 20) * (1 + (seq as usize + usize::from(p)) % 3) + seq as usize
    } else {
        1 + (seq as usize * 37 + usize::from(p) * 11) % 300
    }
}

/// Checks one whole message in place; returns its producer, sequence
/// number and total length.
fn parse(buf: &[u8]) -> (u8, u32, usize) {
    assert!(buf.len() >= HEADER, "a cut header");
    let p = buf[0];
    let seq = u32::from_le_bytes(buf[1..5].try_into().unwrap());
    let len = u32::from_le_bytes(buf[5..9].try_into().unwrap()) as usize;
    assert_eq!(len, size(p, seq), "producer {p} message {seq}: length");
    let body = &buf[HEADER..HEADER + len];
    let bad = body
        .iter()
        .enumerate()
        .position(|(k, &b)| b != fill(p, seq, k));
    assert_eq!(bad, None, "producer {p} message {seq}: a byte out of place");
    (p, seq, HEADER + len)
}

const PRODUCERS: u8 = 3;
const MESSAGES: u32 = 25;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_and_multi_mib_sends_from_several_tasks_arrive_whole_and_in_order() {
    let mut server = TestServer::start().await;
    let cm = Manager::new();
    let opts = fast_options(10, 100).send_queue_limit(8 << 20);
    let conn = cm
        .connect_with(server.addr, redial::handler().on_data(|_, _| {}), opts)
        .unwrap();
    let mut peer = server.next(5).await.stream;
    conn.wait_connected().await.unwrap();
    let total: usize = (0..PRODUCERS)
        .flat_map(|p| (0..MESSAGES).map(move |s| HEADER + size(p, s)))
        .sum();
    let reader = tokio::spawn(async move {
        let mut got = vec![0u8; total];
        peer.read_exact(&mut got).await.unwrap();
        got
    });
    let mut tasks = Vec::new();
    for p in 0..PRODUCERS {
        let conn = conn.clone();
        tasks.push(tokio::spawn(async move {
            // Producer 0 through a `Sender`: its batches are moved in.
            let mut tx = (p == 0).then(|| conn.sender());
            for seq in 0..MESSAGES {
                let m = message(p, seq, size(p, seq));
                match tx.as_mut() {
                    Some(tx) => tx.write(&m).await.unwrap(),
                    None => conn.write(&m).await.unwrap(),
                }
                if seq % 4 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            if let Some(mut tx) = tx {
                tx.flush().await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let got = tokio::time::timeout(Duration::from_secs(60), reader)
        .await
        .expect("the peer got every byte")
        .unwrap();
    let mut next = [0u32; PRODUCERS as usize];
    let mut at = 0;
    while at < got.len() {
        let (p, seq, len) = parse(&got[at..]);
        assert_eq!(seq, next[usize::from(p)], "producer {p}: out of order");
        next[usize::from(p)] += 1;
        at += len;
    }
    assert_eq!(next, [MESSAGES; PRODUCERS as usize]);
    let s = conn.stats();
    assert_eq!(s.bytes_out, total as u64, "{s:?}");
    assert_eq!((s.queued, s.discarded_bytes), (0, 0));
    conn.disconnect().await;
}

/// Producers queue small and multi-MiB messages to a peer that reads a
/// little and resets the connection: the bytes handed back are whole
/// messages (and at most one cut one), and every accepted byte is written,
/// handed back or discarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_amid_segments_hands_back_whole_messages_and_keeps_the_ledger() {
    let mut server = TestServer::start().await;
    let cm = Manager::new();
    let back: Arc<Mutex<Option<Unsent>>> = Arc::default();
    let b2 = back.clone();
    let h = redial::handler().on_data(|_, _| {}).on_reset(move |r| {
        *b2.lock().unwrap() = Some(r.take_unsent());
        Resume::Stop
    });
    let opts = fast_options(10, 100)
        .send_queue_limit(64 << 20)
        .configure_socket(|s| s.set_send_buffer_size(16_384));
    let conn = cm.connect_with(server.addr, h, opts).unwrap();
    let mut peer = server.next(5).await.stream;
    conn.wait_connected().await.unwrap();
    let accepted = Arc::new(Mutex::new(0u64));
    let mut tasks = Vec::new();
    for p in 0..PRODUCERS {
        let (conn, accepted) = (conn.clone(), accepted.clone());
        tasks.push(tokio::spawn(async move {
            for seq in 0..10 {
                let m = message(p, seq, size(p, seq));
                conn.send(&m).unwrap();
                *accepted.lock().unwrap() += m.len() as u64;
                tokio::task::yield_now().await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut buf = vec![0u8; 200_000];
    peer.read_exact(&mut buf).await.unwrap();
    wait_until(
        "written past what was read",
        Duration::from_secs(10),
        || conn.stats().bytes_out > 200_000,
    )
    .await;
    socket2::SockRef::from(&peer)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(peer);
    conn.closed().await;

    let unsent = back.lock().unwrap().take().expect("on_reset ran");
    for chunk in unsent.chunks() {
        let (_, _, len) = parse(chunk);
        assert_eq!(len, chunk.len(), "one whole message per chunk");
    }
    if let Some(cut) = unsent.partial() {
        let (_, _, len) = parse(&cut.data);
        assert_eq!(len, cut.data.len(), "the cut message, whole");
        assert!(cut.written > 0 && cut.written < len);
    }
    let s = conn.stats();
    let accepted = *accepted.lock().unwrap();
    let handed_back = unsent.len() + unsent.partial().map_or(0, |p| p.data.len() - p.written);
    assert_eq!(s.queued, 0);
    assert_eq!(
        accepted,
        s.bytes_out + handed_back as u64 + s.discarded_bytes,
        "accepted = written + handed back + discarded: {s:?}"
    );
    assert!(
        unsent.len() > 1 << 20,
        "the reset caught large messages queued"
    );
}
