//! Zero-byte sends seen from inside: they leave the queue bare (so an idle
//! connection can still give its buffers back) and never wake the driver
//! for nothing. What a user sees of them is in `tests/empty_send.rs`.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Waker};

use crate::handle::connection::Connection;
use crate::options::Options;
use crate::shared::Shared;

/// A connection's shared state with its socket up, as the driver leaves
/// it after `on_connect`.
fn live() -> Connection {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 1));
    let endpoint = crate::endpoint::Endpoint::from_kind(crate::endpoint::Kind::Addr(addr));
    let shared = Arc::new(Shared::new(1, endpoint, None, Arc::new(Options::new())));
    {
        let mut q = shared.queue();
        q.generation = 1;
        q.socket_open = true;
        q.accepting = true;
    }
    Connection {
        shared,
        runtime: None,
    }
}

/// Whether the driver's wake-up was signalled (and takes it).
fn driver_woken(shared: &Shared) -> bool {
    let notified = pin!(shared.wake.notified());
    notified
        .poll(&mut Context::from_waker(Waker::noop()))
        .is_ready()
}

#[test]
fn zero_byte_sends_leave_the_queue_bare_and_the_driver_asleep() {
    let conn = live();
    conn.send(b"").unwrap();
    let mut tx = conn.sender();
    for _ in 0..1000 {
        tx.send(b"").unwrap();
    }
    tx.try_flush().unwrap();
    drop(tx);
    assert!(!driver_woken(&conn.shared), "woken for nothing");
    let q = conn.shared.queue();
    assert!(q.segs.is_bare(), "an empty chunk stays queued");
    assert_eq!(q.ledger.accepted, 0);
}

#[test]
fn empty_sends_between_messages_add_no_chunk() {
    let conn = live();
    let mut tx = conn.sender();
    tx.send(b"").unwrap();
    tx.send(b"ab").unwrap();
    tx.send(b"").unwrap();
    tx.try_flush().unwrap();
    conn.send(b"").unwrap();
    conn.send(b"c").unwrap();
    assert!(driver_woken(&conn.shared));
    let q = conn.shared.queue();
    assert_eq!(q.segs.len(), 3);
    assert_eq!(q.segs.count(), 1, "one segment");
    drop(q);
    let unsent = {
        let mut u = crate::reset::Unsent::default();
        let queued = conn.shared.queue().take_queued(true);
        queued.into_unsent(&mut u);
        u
    };
    let chunks: Vec<&[u8]> = unsent.chunks().collect();
    assert_eq!(chunks, [&b"ab"[..], &b"c"[..]]);
}
