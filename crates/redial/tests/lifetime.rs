//! `Options::max_lifetime`: connections are replaced make-before-break, on
//! real loopback sockets.
//!
//! - A pool whose members all dial a list of three addresses, one of them
//!   started late: once its members have been replaced, the late server
//!   holds its third of them, with no loss reported anywhere.
//! - A connection that sends without pause across several replacements:
//!   the peer receives every accepted byte, in order, one connection after
//!   the other; nothing is refused, and what a disconnect at the end hands
//!   back is the stream's tail.
//! - The handler's view: `on_connect` per socket, the old socket's last
//!   reads (after our FIN) in `on_data`, no `on_reset`, the state never
//!   other than connected, `Recycled` then `Connected` in the events.
//! - A replacement that cannot be made (refused) leaves the old connection
//!   working; one that cannot flush in time is a loss whose `on_reset`
//!   gets the rest; a disconnect while the old one flushes flushes the
//!   held sends on it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redial::{Connection, Endpoint, EventKind, Manager, Options, SendError, State};
use support::{wait_until, Cb, EventLog, Recorder, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const LONG: Duration = Duration::from_secs(30);

/// A short reconnect schedule.
fn fast_options() -> Options {
    support::fast_options(20, 500)
}

fn addr(ip: &str, port: u16) -> SocketAddr {
    format!("{ip}:{port}").parse().unwrap()
}

/// Members whose live socket reaches `to`.
fn on(members: &[Connection], to: SocketAddr) -> usize {
    members
        .iter()
        .filter(|c| c.socket().and_then(|s| s.peer_addr()) == Some(to))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_server_gets_its_share_of_a_pool_within_two_lifetimes() {
    const N: usize = 30;
    const LIFE: Duration = Duration::from_secs(2);
    let a = TestServer::sink_on("127.0.0.2").await;
    let port = a.addr.port();
    let b = TestServer::sink_at(addr("127.0.0.3", port)).await;
    let late = addr("127.0.0.4", port);
    // The form a fleet behind one name takes: every member dials the same
    // list of addresses (a name resolving to three would do the same).
    let ep = Endpoint::any([a.addr, b.addr, late]).unwrap();

    let cm = Manager::new();
    let events = EventLog::start(&cm);
    let resets = Arc::new(AtomicU64::new(0));
    let pool = cm.create_pool("fleet").unwrap();
    let opts = fast_options().max_lifetime(LIFE);
    let members: Vec<Connection> = (0..N)
        .map(|_| {
            let r = resets.clone();
            let h = redial::handler().on_reset(move |_| {
                r.fetch_add(1, Ordering::SeqCst);
                redial::Resume::Reconnect
            });
            pool.add_connection_with(ep.clone(), h, opts.clone())
                .unwrap()
        })
        .collect();
    tokio::time::timeout(LONG, pool.wait_live(N)).await.unwrap();
    let up = Instant::now();
    let (on_a, on_b) = (on(&members, a.addr), on(&members, b.addr));
    assert_eq!(on(&members, late), 0);
    assert_eq!(on_a + on_b, N);
    // Spread from the start: each member begins at its own address.
    assert!(on_a > 0 && on_b > 0, "{on_a} on a, {on_b} on b");

    let c = TestServer::sink_at(late).await;
    let share = wait_until("the late server holds a third", 2 * LIFE + LONG, || {
        on(&members, late) >= N / 3 - 1
    })
    .await;
    // Between the first round of replacements (0.9 to 1.1 lifetimes after
    // the members came up) and the second (from 1.8): each member has
    // moved on by one address, so the three servers hold a third each.
    tokio::time::sleep_until((up + LIFE * 145 / 100).into()).await;
    let spread = [
        on(&members, a.addr),
        on(&members, b.addr),
        on(&members, late),
    ];
    assert!(
        spread.iter().all(|&n| n >= N / 3 - 2),
        "between two rounds of replacements: {spread:?}"
    );
    assert!(
        share <= 2 * LIFE,
        "the late server took {share:?}, more than two lifetimes ({LIFE:?} each)"
    );
    let recycled = events.count(|k| matches!(k, EventKind::Recycled { .. }));
    assert!(recycled >= N, "{recycled} recycled events");
    assert_eq!(
        resets.load(Ordering::SeqCst),
        0,
        "a replacement lost something"
    );
    assert_eq!(events.count(|k| matches!(k, EventKind::Reset { .. })), 0);
    let stats: u64 = members.iter().map(|m| m.stats().recycles).sum();
    assert_eq!(stats, recycled as u64);
    assert!(members.iter().all(|m| m.stats().resets == 0));
    eprintln!(
        "late server started: a third of {N} members on it after {share:?} \
         (lifetime {LIFE:?} ± 10 %); between the first and second rounds {spread:?}; \
         {recycled} replacements, \
         accepted a/b/c {}/{}/{}",
        a.accepted(),
        b.accepted(),
        c.accepted(),
    );
    pool.disconnect().await;
}

/// A peer that keeps what each connection sent, in the order accepted.
async fn recording_peer() -> (SocketAddr, Arc<Mutex<Vec<Vec<u8>>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = listener.local_addr().unwrap();
    let conns: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let c = conns.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let i = {
                let mut all = c.lock().unwrap();
                all.push(Vec::new());
                all.len() - 1
            };
            let c = c.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n @ 1..) = s.read(&mut buf).await {
                    c.lock().unwrap()[i].extend_from_slice(&buf[..n]);
                }
            });
        }
    });
    (at, conns)
}

/// Byte `n` of the stream: a pattern with no period a chunk could hide in.
fn pattern(n: u64) -> u8 {
    (n % 251) as u8
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_byte_sent_across_replacements_arrives_in_order() {
    const LIFE: Duration = Duration::from_millis(400);
    const CHUNK: u64 = 1000;
    let (at, conns) = recording_peer().await;
    let cm = Manager::new();
    let events = EventLog::start(&cm);
    // What comes back, taken (so none counts as discarded), in order.
    let handed_back: Arc<Mutex<Vec<u8>>> = Arc::default();
    let (h1, h2) = (handed_back.clone(), handed_back.clone());
    let handler = redial::handler()
        .on_reset(move |r| {
            h1.lock()
                .unwrap()
                .extend_from_slice(r.take_unsent().bytes());
            redial::Resume::Reconnect
        })
        .on_close(move |c| {
            h2.lock()
                .unwrap()
                .extend_from_slice(c.take_unsent().bytes());
        });
    let conn = cm
        .connect_with(at, handler, fast_options().max_lifetime(LIFE))
        .unwrap();
    conn.wait_connected().await.unwrap();

    // Send without pause until three replacements are behind us.
    let mut accepted: u64 = 0;
    let mut full = 0u64;
    let started = Instant::now();
    while conn.stats().recycles < 3 {
        assert!(started.elapsed() < LONG, "no third replacement");
        let chunk: Vec<u8> = (accepted..accepted + CHUNK).map(pattern).collect();
        match conn.send(chunk) {
            Ok(()) => accepted += CHUNK,
            Err(SendError::Full { .. } | SendError::OutageBufferFull { .. }) => {
                full += 1;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Err(e) => panic!("a send was refused during a replacement: {e}"),
        }
        if accepted % (64 * CHUNK) == 0 {
            tokio::task::yield_now().await;
        }
    }
    // At once, as an application would: this may land in a replacement's
    // last step, whose held sends then come back in `on_close`.
    conn.disconnect().await;
    let back = handed_back.lock().unwrap().len() as u64;
    let received = || {
        conns
            .lock()
            .unwrap()
            .iter()
            .map(|c| c.len() as u64)
            .sum::<u64>()
    };
    wait_until("every accepted byte received or handed back", LONG, || {
        received() + back == accepted
    })
    .await;
    // One connection after the other: the old one flushed everything
    // before the new one took any, so the stream reads straight through
    // (up to what was handed back, the stream's tail).
    let all: Vec<u8> = conns.lock().unwrap().concat();
    let want: Vec<u8> = (0..received()).map(pattern).collect();
    assert!(
        all == want,
        "the stream across replacements is out of order"
    );
    let tail: Vec<u8> = (received()..accepted).map(pattern).collect();
    assert!(
        *handed_back.lock().unwrap() == tail,
        "handed back: not the stream's tail"
    );
    let stats = conn.stats();
    assert!(stats.recycles >= 3);
    assert_eq!(stats.resets, 0);
    assert_eq!(stats.discarded_bytes, 0);
    assert_eq!(events.count(|k| matches!(k, EventKind::Reset { .. })), 0);
    let used = conns
        .lock()
        .unwrap()
        .iter()
        .filter(|c| !c.is_empty())
        .count();
    eprintln!(
        "{accepted} bytes accepted across {} replacements ({} connections carried bytes), \
         {} received, {back} handed back, 0 discarded; the queue was full {full} times",
        stats.recycles,
        used,
        received()
    );
}

/// A peer that greets each connection (`hello N`), and answers our FIN
/// with `bye N` before its own.
async fn greeting_peer() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

fn serve_greetings(listener: TcpListener) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut n = 0;
        while let Ok((mut s, _)) = listener.accept().await {
            n += 1;
            tokio::spawn(async move {
                let _ = s.write_all(format!("hello {n}\n").as_bytes()).await;
                let mut buf = [0u8; 1024];
                while let Ok(1..) = s.read(&mut buf).await {}
                let _ = s.write_all(format!("bye {n}\n").as_bytes()).await;
            });
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handler_sees_on_connect_and_the_old_sockets_last_reads_and_no_reset() {
    const LIFE: Duration = Duration::from_millis(300);
    let listener = greeting_peer().await;
    let at = listener.local_addr().unwrap();
    let _server = serve_greetings(listener);
    let cm = Manager::new();
    let events = EventLog::start(&cm);
    let rec = Recorder::new();
    let conn = cm
        .connect_with(at, rec.handler(), fast_options().max_lifetime(LIFE))
        .unwrap();
    conn.wait_connected().await.unwrap();
    // The state as seen from outside, every millisecond, through two
    // replacements.
    let watched = conn.clone();
    let watcher = tokio::spawn(async move {
        let mut seen = Vec::new();
        while watched.stats().recycles < 2 {
            let s = watched.state();
            if s != State::Connected {
                seen.push(s);
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        seen
    });
    wait_until("two replacements", LONG, || conn.stats().recycles >= 2).await;
    let not_connected = watcher.await.unwrap();
    assert!(not_connected.is_empty(), "seen as {not_connected:?}");
    // The first socket's last words came after our FIN, to `on_data`.
    wait_until("the old socket's answer to our FIN", LONG, || {
        rec.received_in(1) == b"hello 1\nbye 1\n"
    })
    .await;
    assert_eq!(rec.received_in(2).get(..8), Some(&b"hello 2\n"[..]));
    assert_eq!(rec.reset_count(), 0);
    // The count of replacements moves before the third connection's
    // `on_connect` and event are through, and the event log is filled by
    // a task of its own: wait for both to reach them.
    wait_until(
        "the third connection in the callbacks and the events",
        LONG,
        || rec.connects() >= 3 && events.connected_generations().contains(&3),
    )
    .await;
    let connects: Vec<u64> = rec
        .callbacks()
        .iter()
        .filter_map(|c| match c {
            Cb::Connect { generation } => Some(*generation),
            _ => None,
        })
        .collect();
    assert_eq!(connects[..3], [1, 2, 3]);
    // Recycled for the old socket, then Connected for the new one.
    let seq: Vec<String> = events
        .kinds()
        .into_iter()
        .filter_map(|k| match k {
            EventKind::Connected { generation, .. } => Some(format!("connected {generation}")),
            EventKind::Recycled { generation, uptime } => {
                assert!(uptime >= LIFE * 9 / 10, "recycled after {uptime:?}");
                Some(format!("recycled {generation}"))
            }
            EventKind::Reset { .. } => Some("reset".into()),
            _ => None,
        })
        .collect();
    assert_eq!(
        seq[..5],
        [
            "connected 1",
            "recycled 1",
            "connected 2",
            "recycled 2",
            "connected 3"
        ]
    );
    let s = conn.stats();
    assert_eq!((s.resets, s.failed_attempts), (0, 0));
    assert!(s.connects >= 3);
    conn.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replacement_that_cannot_be_made_leaves_the_old_connection_working() {
    const LIFE: Duration = Duration::from_millis(200);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = listener.local_addr().unwrap();
    let cm = Manager::new();
    let rec = Recorder::new();
    let conn = cm
        .connect_with(at, rec.handler(), fast_options().max_lifetime(LIFE))
        .unwrap();
    let (mut first, _) = listener.accept().await.unwrap();
    conn.wait_connected().await.unwrap();
    // Nobody listens any more: the replacement is refused.
    drop(listener);
    wait_until("a refused replacement", LONG, || {
        conn.stats().failed_attempts >= 1
    })
    .await;
    let s = conn.stats();
    assert_eq!((s.recycles, s.resets), (0, 0));
    assert_eq!(conn.state(), State::Connected);
    // The old connection still carries sends.
    conn.send("still here").unwrap();
    let mut buf = [0u8; 10];
    first.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"still here");
    // The listener is back: the replacement is tried again (at least a
    // second later) and made.
    let listener = TcpListener::bind(at).await.unwrap();
    let (_second, _) = tokio::time::timeout(LONG, listener.accept())
        .await
        .unwrap()
        .unwrap();
    wait_until("the replacement made", LONG, || conn.stats().recycles == 1).await;
    assert_eq!(rec.reset_count(), 0);
    // The old one was closed: its peer reads the end.
    let n = tokio::time::timeout(LONG, first.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 0);
    conn.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_connection_that_cannot_flush_is_a_loss_that_hands_back_the_rest() {
    const MIB: usize = 1 << 20;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = listener.local_addr().unwrap();
    // Accepts and never reads: the old connection cannot flush.
    let held = tokio::spawn(async move {
        let mut keep = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            keep.push(s);
        }
    });
    let cm = Manager::new();
    let rec = Recorder::new();
    // The sends are meant to be queued before the lifetime runs out; one
    // that comes after the replacement began (a busy machine can stall
    // this task that long) is held for the next socket instead of going
    // to `on_reset`, and is counted in `queued` or, once written there,
    // in `bytes_out`. The chunks are made up front to keep that rare.
    let opts = fast_options()
        .max_lifetime(Duration::from_secs(1))
        .close_grace(Duration::from_millis(200))
        .send_queue_limit(64 * MIB);
    let chunks: Vec<Vec<u8>> = (0..32).map(|_| vec![7u8; MIB]).collect();
    let accepted = chunks.iter().map(Vec::len).sum::<usize>();
    let conn = cm.connect_with(at, rec.handler(), opts).unwrap();
    conn.wait_connected().await.unwrap();
    for chunk in chunks {
        conn.send(chunk).unwrap();
    }
    wait_until("the loss", LONG, || rec.reset_count() == 1).await;
    let Cb::Reset {
        reason,
        chunks,
        partial,
        ..
    } = &rec.resets()[0]
    else {
        unreachable!()
    };
    assert!(
        matches!(reason, redial::ResetReason::Io { kind: std::io::ErrorKind::TimedOut, message }
            if message.contains("max_lifetime")),
        "{reason:?}"
    );
    let back: usize = chunks.iter().map(Vec::len).sum::<usize>()
        + partial.as_ref().map_or(0, |p| p.data.len() - p.written);
    // One snapshot: `bytes_out` and `queued` are read under one lock.
    let s = conn.stats();
    assert_eq!(s.recycles, 0);
    assert_eq!(s.discarded_bytes, 0);
    assert_eq!(s.bytes_out as usize + back + s.queued, accepted, "{s:?}");
    assert!(
        back > 0,
        "the peer read nothing, yet everything was written"
    );
    eprintln!(
        "{accepted} bytes accepted, {} written before the grace ran out, {back} handed back to on_reset",
        s.bytes_out
    );
    conn.disconnect().await;
    held.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disconnect_while_the_old_connection_flushes_flushes_the_held_sends_on_it() {
    const MIB: usize = 1 << 20;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = listener.local_addr().unwrap();
    // A slow reader: 64 KiB every 5 ms, so the old connection is still
    // flushing when its replacement is made.
    let conns: Arc<Mutex<Vec<Arc<AtomicU64>>>> = Arc::default();
    let c = conns.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let n = Arc::new(AtomicU64::new(0));
            c.lock().unwrap().push(n.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(k @ 1..) = s.read(&mut buf).await {
                    n.fetch_add(k as u64, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            });
        }
    });
    let cm = Manager::new();
    let rec = Recorder::new();
    let opts = fast_options()
        .max_lifetime(Duration::from_millis(300))
        // Past the wait below: the slow reader takes seconds, and on a
        // loaded machine far longer; the grace must not cut it short.
        .close_grace(5 * LONG)
        .send_queue_limit(64 * MIB);
    let conn = cm.connect_with(at, rec.handler(), opts).unwrap();
    conn.wait_connected().await.unwrap();
    for _ in 0..32 {
        conn.send(vec![1u8; MIB]).unwrap();
    }
    wait_until("the replacement made", LONG, || {
        conns.lock().unwrap().len() == 2
    })
    .await;
    // Held for the new connection while the old one flushes.
    conn.send(vec![2u8; 1000]).unwrap();
    conn.disconnect().await;
    let got = || -> Vec<u64> {
        let c = conns.lock().unwrap();
        c.iter().map(|n| n.load(Ordering::SeqCst)).collect()
    };
    let want = [32 * MIB as u64 + 1000, 0];
    // The reader pauses 5 ms per 64 KiB on purpose; on a loaded machine
    // each pause stretches, so the bound is a safety net well past it.
    wait_until("every byte read on the old connection", 4 * LONG, || {
        got() == want
    })
    .await;
    let closes: Vec<Cb> = rec
        .callbacks()
        .into_iter()
        .filter(|c| matches!(c, Cb::Close { .. }))
        .collect();
    assert!(
        matches!(&closes[..], [Cb::Close { reason: redial::CloseReason::Disconnected, chunks, partial: None }] if chunks.is_empty()),
        "{closes:?}"
    );
    assert_eq!(rec.reset_count(), 0);
    assert_eq!(conn.stats().recycles, 0);
}
