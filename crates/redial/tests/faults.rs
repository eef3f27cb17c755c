//! One fault at a time, through the `redial-chaos` proxy, on real loopback
//! sockets and real time: for each fault, how redial detects it, which
//! callbacks and events it produces, and that the connection recovers once
//! the proxy heals. Bounds are generous (seconds): the suite runs on a noisy
//! 2-core VM, so only lower bounds and loose upper bounds are asserted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redial::{Connection, EventKind, Manager, Options, ResetReason, SendError, State};
use redial_chaos::{Direction, Proxy};
use support::{fast_options, wait_until, Cb, EventLog, Recorder, TestServer};

const LONG: Duration = Duration::from_secs(10);

/// A manager, an event log and a recorded connection through `proxy`.
struct Rig {
    cm: Manager,
    events: EventLog,
    rec: Recorder,
    conn: Connection,
}

async fn rig(proxy: &Proxy, opts: Options, rec: Recorder, handler: redial::FnHandler) -> Rig {
    let cm = Manager::new();
    // Subscribe before connecting so that the first events are seen.
    let events = EventLog::start(&cm);
    let conn = cm
        .connect_with(proxy.local_addr(), handler, opts)
        .expect("connect");
    tokio::time::timeout(LONG, conn.wait_connected())
        .await
        .expect("connected in time")
        .expect("not closed");
    Rig {
        cm,
        events,
        rec,
        conn,
    }
}

async fn recorded(proxy: &Proxy, opts: Options) -> Rig {
    let rec = Recorder::new();
    let h = rec.handler();
    rig(proxy, opts, rec, h).await
}

/// Sends `marker` until it comes back through the echo server: proves that
/// data flows end to end on whatever connection is current.
async fn echo_round_trip(rig: &Rig, marker: &[u8]) {
    let deadline = Instant::now() + LONG;
    loop {
        let _ = rig.conn.send(marker);
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(500) {
            if rig.rec.saw(marker) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(
            Instant::now() < deadline,
            "{:?} never came back",
            String::from_utf8_lossy(marker)
        );
    }
}

fn first_reset(rec: &Recorder) -> Cb {
    rec.resets().into_iter().next().expect("a reset")
}

/// Keeps sending 512-byte chunks every millisecond until dropped: the
/// "mid-stream" part of the scenarios.
struct Streamer {
    stop: Arc<AtomicBool>,
}

impl Streamer {
    fn start(conn: Connection) -> Streamer {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        tokio::spawn(async move {
            while !s.load(Ordering::Relaxed) {
                // Refusals during the outage are expected and handed back.
                let _ = conn.send([0xAB; 512]);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        Streamer { stop }
    }
}

impl Drop for Streamer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_all_mid_stream_resets_then_reconnects() {
    let server = TestServer::echo().await;
    let proxy = Proxy::builder()
        .seed(1)
        .start("127.0.0.1:0", server.addr)
        .await
        .unwrap();
    let r = recorded(&proxy, fast_options(20, 500)).await;
    let streamer = Streamer::start(r.conn.clone());
    wait_until("64 KiB echoed", LONG, || r.rec.received_len() >= 64 * 1024).await;

    proxy.reset_all();
    // An RST is seen by the next read or write: ECONNRESET -> PeerReset.
    wait_until("the reset", LONG, || r.rec.reset_count() >= 1).await;
    let Cb::Reset {
        reason,
        generation,
        written,
        ..
    } = first_reset(&r.rec)
    else {
        unreachable!()
    };
    assert_eq!(reason, ResetReason::PeerReset);
    assert_eq!(generation, 1);
    assert!(written >= 64 * 1024, "written {written}");

    // reset_all is one-off: the next connection comes up and stays up.
    wait_until("generation 2", LONG, || {
        r.events.connected_generations().contains(&2)
    })
    .await;
    drop(streamer);
    echo_round_trip(&r, b"after-reset-marker").await;
    // No second reset: a quiet window (no event marks its absence), 15
    // times the 20 ms retry delay.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(r.rec.reset_count(), 1, "{:?}", r.events.kinds());
    assert_eq!(r.events.reset_reasons(), vec![ResetReason::PeerReset]);
    assert_eq!(r.events.connected_generations(), vec![1, 2]);
    let stats = r.conn.stats();
    assert_eq!((stats.connects, stats.resets), (2, 1));
    assert_eq!(r.conn.state(), State::Connected);
    r.cm.disconnect_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_all_mid_stream_resets_with_peer_closed_then_reconnects() {
    // The server streams to the client (and the client sends nothing), so
    // the proxy's client-side socket has no unread data and its close is a
    // clean FIN rather than an RST.
    let server = TestServer::stream().await;
    let proxy = Proxy::builder()
        .seed(2)
        .start("127.0.0.1:0", server.addr)
        .await
        .unwrap();
    let r = recorded(&proxy, fast_options(20, 500)).await;
    wait_until("32 KiB streamed", LONG, || {
        r.rec.received_len() >= 32 * 1024
    })
    .await;

    proxy.close_all();
    wait_until("the reset", LONG, || r.rec.reset_count() >= 1).await;
    let Cb::Reset {
        reason, generation, ..
    } = first_reset(&r.rec)
    else {
        unreachable!()
    };
    assert_eq!(reason, ResetReason::PeerClosed, "FIN means end of stream");
    assert_eq!(generation, 1);

    wait_until("generation 2 streams", LONG, || {
        r.rec.received_in(2).len() >= 8 * 1024
    })
    .await;
    // What each connection delivered is an intact prefix of the stream.
    for gen in [1, 2] {
        let data = r.rec.received_in(gen);
        assert!(!data.is_empty());
        for (i, b) in data.iter().enumerate() {
            assert_eq!(*b, (i % 251) as u8, "generation {gen} byte {i} corrupted");
        }
    }
    assert_eq!(r.events.reset_reasons(), vec![ResetReason::PeerClosed]);
    assert_eq!(r.conn.stats().resets, 1);
    r.cm.disconnect_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuse_fails_attempts_with_backoff_then_accept_reconnects() {
    let server = TestServer::echo().await;
    let proxy = Proxy::builder()
        .seed(3)
        .start("127.0.0.1:0", server.addr)
        .await
        .unwrap();
    let r = recorded(&proxy, fast_options(20, 500)).await;
    // A round trip first: the proxy only resets links whose task has
    // started, and data through it proves that.
    echo_round_trip(&r, b"before-refuse").await;

    // Refusing only stops new connections; drop the live one too.
    proxy.refuse();
    proxy.reset_all();
    wait_until("the reset", LONG, || r.rec.reset_count() >= 1).await;

    // For two seconds every attempt is refused; the connection is never
    // Connected and sends are handed back.
    // At least two seconds of it, and until the schedule has been walked
    // three steps and fifty sends refused: counted, not timed, so a slow
    // machine only makes the outage longer.
    let outage = Instant::now();
    let mut handed_back = 0;
    while outage.elapsed() < Duration::from_secs(2)
        || handed_back <= 50
        || r.rec.connect_failures().len() < 3
    {
        assert!(outage.elapsed() < LONG, "the outage never went far enough");
        assert_ne!(r.conn.state(), State::Connected);
        assert_ne!(r.conn.state(), State::Closed);
        match r.conn.send(b"during-outage") {
            Err(SendError::NotConnected { data }) => {
                assert_eq!(data, b"during-outage");
                handed_back += 1;
            }
            other => panic!("send during the outage: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(handed_back > 50);
    let failures = r.rec.connect_failures();
    assert!(failures.len() >= 3, "failed attempts: {failures:?}");
    for (i, (attempt, kind)) in failures.iter().enumerate() {
        assert_eq!(
            *attempt,
            i as u32 + 1,
            "attempts count up within the streak"
        );
        assert_eq!(*kind, std::io::ErrorKind::ConnectionRefused);
    }
    let retries: Vec<Duration> = r
        .events
        .kinds()
        .into_iter()
        .filter_map(|k| match k {
            EventKind::ConnectFailed { retry_in, .. } => Some(retry_in.expect("never gives up")),
            _ => None,
        })
        .collect();
    assert!(retries.len() >= 3);
    assert!(
        retries.iter().all(|d| *d <= Duration::from_millis(500)),
        "capped at the backoff max: {retries:?}"
    );
    assert!(
        retries.last() > retries.first(),
        "the backoff grows: {retries:?}"
    );
    assert_eq!(r.conn.stats().failed_attempts, failures.len() as u64);

    proxy.accept().unwrap();
    // At most one capped backoff (500 ms) plus a connect; 10 s is generous.
    wait_until("generation 2", LONG, || {
        r.events.connected_generations().contains(&2)
    })
    .await;
    echo_round_trip(&r, b"after-accept-marker").await;
    assert_eq!(r.rec.reset_count(), 1);
    r.cm.disconnect_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blackhole_with_idle_timeout_resets_with_idle_timeout_then_recovers_after_heal() {
    let server = TestServer::echo().await;
    let proxy = Proxy::builder()
        .seed(4)
        .start("127.0.0.1:0", server.addr)
        .await
        .unwrap();
    let idle = Duration::from_secs(1);
    // The heartbeat pings the echo server, so a healthy connection always
    // reads something well within the idle timeout.
    let opts = fast_options(20, 500)
        .idle_timeout(Some(idle))
        .heartbeat(Some(Duration::from_millis(200)));
    let rec = Recorder::new();
    let h = rec.handler().on_idle(|sock| {
        let _ = sock.send(b"ping;");
    });
    let r = rig(&proxy, opts, rec, h).await;

    // Not idling out is the behaviour: a window past the idle timeout.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        r.rec.reset_count(),
        0,
        "healthy connection must not idle out"
    );
    assert!(r.rec.saw(b"ping;"), "heartbeat pings come back");

    let partitioned = Instant::now();
    proxy.blackhole();
    wait_until("the idle reset", LONG, || r.rec.reset_count() >= 1).await;
    let Cb::Reset { reason, at, .. } = first_reset(&r.rec) else {
        unreachable!()
    };
    assert_eq!(reason, ResetReason::IdleTimeout);
    let detected = at - partitioned;
    // The last read was at most one heartbeat before the partition.
    assert!(detected >= idle / 2, "detected after {detected:?}");
    assert!(
        detected <= idle + Duration::from_secs(3),
        "detected after {detected:?}"
    );

    // Still partitioned: the proxy accepts the reconnects but passes nothing,
    // so each new connection idles out the same way.
    wait_until("a second idle reset", LONG, || r.rec.reset_count() >= 2).await;
    assert!(r
        .events
        .reset_reasons()
        .iter()
        .all(|reason| *reason == ResetReason::IdleTimeout));

    proxy.heal().unwrap();
    echo_round_trip(&r, b"after-heal-marker").await;
    // Heartbeats flow again: no idle reset for well over the idle timeout.
    let settled = r.rec.reset_count();
    // A window of two and a half idle timeouts with no reset in it.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(r.rec.reset_count(), settled, "{:?}", r.events.kinds());
    assert_eq!(r.conn.state(), State::Connected);
    r.cm.disconnect_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blackhole_without_idle_timeout_stays_connected_then_delivers_after_heal() {
    let server = TestServer::echo().await;
    let proxy = Proxy::builder()
        .seed(5)
        .start("127.0.0.1:0", server.addr)
        .await
        .unwrap();
    let r = recorded(&proxy, fast_options(20, 500)).await;

    // The documented defaults that bound detection without an idle timeout:
    // keepalive 20 s idle, probes 5 s apart, TCP_USER_TIMEOUT 40 s (which
    // takes the place of the probe count: tests/socket_options.rs).
    let sock = r.conn.socket().expect("connected");
    let sr = sock.sock_ref();
    assert!(sr.keepalive().unwrap());
    assert_eq!(sr.tcp_keepalive_time().unwrap(), Duration::from_secs(20));
    assert_eq!(sr.tcp_keepalive_interval().unwrap(), Duration::from_secs(5));
    assert_eq!(
        sr.tcp_user_timeout().unwrap(),
        Some(Duration::from_secs(40))
    );
    drop(sock);

    echo_round_trip(&r, b"before-partition").await;
    proxy.blackhole();
    r.conn.send(b"during-partition").unwrap();

    // On loopback the kernel ACKs for the proxy, so nothing looks wrong:
    // the connection stays Connected and no reset is reported.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        assert_eq!(r.conn.state(), State::Connected);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(r.rec.reset_count(), 0);
    assert!(
        !r.rec.saw(b"during-partition"),
        "nothing passes a blackhole"
    );

    // The held bytes are delivered after the heal, on the same connection.
    proxy.heal().unwrap();
    wait_until("the held bytes echoed", LONG, || {
        r.rec.saw(b"during-partition")
    })
    .await;
    echo_round_trip(&r, b"after-heal").await;
    assert_eq!(r.rec.reset_count(), 0);
    assert_eq!(r.conn.stats().connects, 1);
    assert_eq!(r.events.reset_reasons(), vec![]);
    r.cm.disconnect_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_after_mid_large_write_hands_back_partial_and_later_chunks() {
    let server = TestServer::sink().await;
    let proxy = Proxy::builder()
        .seed(6)
        .start("127.0.0.1:0", server.addr)
        .await
        .unwrap();
    // A small send buffer keeps most of the big chunk in redial's queue
    // when the proxy cuts, so the chunk is cut in the middle.
    let opts = fast_options(20, 500)
        .send_queue_limit(64 << 20)
        .configure_socket(|s| s.set_send_buffer_size(64 * 1024));
    let r = recorded(&proxy, opts).await;
    // Connected is the kernel's handshake: the proxy may not have taken the
    // connection from its backlog yet, and refusing would reset it there.
    proxy.wait_accepted(1, LONG).await.unwrap();

    const CUT: u64 = 256 * 1024;
    proxy.cut_after(CUT);
    // No reconnect until the heal: a send that comes after the cut is
    // refused, not carried by the next connection.
    proxy.refuse();
    let head = vec![1u8; 100];
    let big: Vec<u8> = (0..8 << 20).map(|i: u32| (i % 253) as u8).collect();
    let tails: Vec<Vec<u8>> = (0..3u8).map(|i| vec![10 + i; 1000]).collect();
    r.conn.send(&head).unwrap();
    r.conn.send(&big).unwrap();
    // On a busy machine the cut may come before the last sends: those are
    // refused, and handed back in the error instead of the reset.
    let mut refused = Vec::new();
    for t in &tails {
        if let Err(e) = r.conn.send(t) {
            assert!(matches!(e, redial::SendError::NotConnected { .. }), "{e}");
            refused.push(e.data().to_vec());
        }
    }

    wait_until("the cut", LONG, || r.rec.reset_count() >= 1).await;
    proxy.heal().unwrap();
    let Cb::Reset {
        reason,
        written,
        partial,
        chunks,
        ..
    } = first_reset(&r.rec)
    else {
        unreachable!()
    };
    assert_eq!(reason, ResetReason::PeerReset);
    let partial = partial.expect("the big chunk was cut");
    assert_eq!(
        partial.data, big,
        "the partial chunk is the whole chunk as sent"
    );
    assert!(partial.written > 0 && partial.written < big.len());
    let back: Vec<Vec<u8>> = chunks.iter().chain(&refused).cloned().collect();
    assert_eq!(back, tails, "later chunks come back whole, in order");
    assert_eq!(
        written,
        (head.len() + partial.written) as u64,
        "written counts every byte before the cut point"
    );
    assert!(
        written >= CUT,
        "the proxy forwarded {CUT} bytes it read from us"
    );

    // The server got exactly what the proxy let through: a prefix of the
    // stream, no more than was written.
    wait_until("server saw the reset", LONG, || {
        server.conns().first().is_some_and(|c| c.ended)
    })
    .await;
    let got = server.conns()[0].data.clone();
    let mut stream = head.clone();
    stream.extend_from_slice(&big);
    assert!(got.len() as u64 <= CUT);
    assert_eq!(got[..], stream[..got.len()], "server data corrupted");
    println!(
        "cut_after({CUT}): written {written}, partial written {}, server got {}, handed back {} + {} bytes",
        partial.written,
        got.len(),
        partial.data.len() - partial.written,
        chunks.iter().map(Vec::len).sum::<usize>()
    );
    // The event log hears of the reset through a channel, after the
    // callback the recorder saw: wait for the event itself.
    wait_until("the Reset event", LONG, || {
        r.events.count(|k| matches!(k, EventKind::Reset { .. })) >= 1
    })
    .await;
    let unsent_event = r.events.kinds().into_iter().find_map(|k| match k {
        EventKind::Reset { unsent_bytes, .. } => Some(unsent_bytes),
        _ => None,
    });
    let tails_back: usize = chunks.iter().map(Vec::len).sum();
    assert_eq!(unsent_event, Some(big.len() + tails_back));

    // Nothing is resent by itself; the next connection carries new data.
    wait_until("generation 2", LONG, || {
        r.events.connected_generations().contains(&2)
    })
    .await;
    r.conn.send(b"after-cut").unwrap();
    wait_until("server got the new data", LONG, || {
        server
            .conns()
            .get(1)
            .is_some_and(|c| c.data == b"after-cut")
    })
    .await;
    r.cm.disconnect_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slice_fragments_reads_but_data_arrives_intact_without_reset() {
    let server = TestServer::echo().await;
    let proxy = Proxy::builder()
        .seed(7)
        .start("127.0.0.1:0", server.addr)
        .await
        .unwrap();
    let r = recorded(&proxy, fast_options(20, 500)).await;
    proxy.slice(Direction::Both, 16, Duration::from_millis(1));

    let mut sent = Vec::new();
    for i in 0..64u32 {
        let msg: Vec<u8> = (0..128u32).map(|j| ((i * 131 + j) % 256) as u8).collect();
        r.conn.send(&msg).unwrap();
        sent.extend_from_slice(&msg);
    }
    wait_until("everything echoed", Duration::from_secs(20), || {
        r.rec.received_len() >= sent.len()
    })
    .await;
    assert_eq!(
        r.rec.received(),
        sent,
        "sliced data must arrive intact, in order"
    );
    let reads = r.rec.reads.load(Ordering::SeqCst);
    // 8 KiB in slices of at most 16 bytes: hundreds of reads, none larger.
    assert!(reads >= 128, "only {reads} reads");
    assert_eq!(r.rec.reset_count(), 0);
    assert_eq!(r.conn.stats().connects, 1);
    proxy.heal().unwrap();
    echo_round_trip(&r, b"after-heal").await;
    r.cm.disconnect_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_delays_round_trips_but_data_arrives_intact_without_reset() {
    let server = TestServer::echo().await;
    let proxy = Proxy::builder()
        .seed(8)
        .start("127.0.0.1:0", server.addr)
        .await
        .unwrap();
    // An idle timeout longer than the delay must not trip: latency is not
    // an outage.
    let opts = fast_options(20, 500).idle_timeout(Some(Duration::from_secs(5)));
    let r = recorded(&proxy, opts).await;
    let delay = Duration::from_millis(50);
    proxy.latency(Direction::Both, delay, Duration::from_millis(20));

    let start = Instant::now();
    r.conn.send(b"timed-ping").unwrap();
    wait_until("the ping", LONG, || r.rec.saw(b"timed-ping")).await;
    let rtt = start.elapsed();
    assert!(rtt >= 2 * delay, "round trip {rtt:?} below twice the delay");

    let before = r.rec.received_len();
    let mut sent = Vec::new();
    for i in 0..500u32 {
        let msg = format!("msg-{i:05};");
        r.conn.send(&msg).unwrap();
        sent.extend_from_slice(msg.as_bytes());
        if i % 50 == 0 {
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
    }
    wait_until("everything echoed", LONG, || {
        r.rec.received_len() >= before + sent.len()
    })
    .await;
    assert_eq!(r.rec.received()[before..], sent[..], "order and bytes kept");
    assert_eq!(r.rec.reset_count(), 0);
    proxy.heal().unwrap();
    echo_round_trip(&r, b"after-heal").await;
    assert_eq!(r.conn.stats().connects, 1);
    r.cm.disconnect_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuse_with_outage_buffer_holds_sends_then_delivers_them_in_order_after_accept() {
    let server = TestServer::sink().await;
    let proxy = Proxy::builder()
        .seed(9)
        .start("127.0.0.1:0", server.addr)
        .await
        .unwrap();
    let opts = fast_options(20, 500).outage(redial::Outage::Buffer { max_bytes: 1000 });
    let rec = Recorder::new();
    // The first bytes of every connection: which generation it is.
    let h = rec.handler().on_connect(|sock| {
        let _ = sock.send(format!("hello-{};", sock.generation()));
    });
    let r = rig(&proxy, opts, rec, h).await;
    wait_until("hello 1", LONG, || {
        server
            .conns()
            .first()
            .is_some_and(|c| c.data == b"hello-1;")
    })
    .await;

    proxy.refuse();
    proxy.reset_all();
    wait_until("the reset", LONG, || r.rec.reset_count() >= 1).await;
    // Buffered while down, up to the limit; the rest handed back.
    let mut buffered = Vec::new();
    let mut refused = 0;
    for i in 0..200 {
        let msg = format!("buffered-{i:03};");
        match r.conn.send(&msg) {
            Ok(()) => buffered.extend_from_slice(msg.as_bytes()),
            Err(SendError::OutageBufferFull { data, limit, .. }) => {
                assert_eq!(data, msg.as_bytes());
                assert_eq!(limit, 1000);
                refused += 1;
            }
            Err(e) => panic!("send during the outage: {e}"),
        }
    }
    assert_eq!(buffered.len(), 13 * (1000 / 13));
    assert_eq!(refused, 200 - 1000 / 13);
    // Nothing arrives while refused: a quiet window, 25 times the 20 ms
    // retry delay.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        server.conns().len(),
        1,
        "nothing gets through while refused"
    );

    proxy.accept().unwrap();
    // The next connection carries on_connect's bytes first, then the
    // buffered ones, in order, each exactly once.
    let mut expected = b"hello-2;".to_vec();
    expected.extend_from_slice(&buffered);
    wait_until("the buffered bytes", LONG, || {
        server
            .conns()
            .get(1)
            .is_some_and(|c| c.data.len() >= expected.len())
    })
    .await;
    // Each exactly once: no duplicate follows in a short quiet window.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(server.conns()[1].data, expected);
    r.cm.disconnect_all().await;
}
