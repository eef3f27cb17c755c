//! Nothing is lost silently: 100,000 sequence-numbered frames go through the
//! chaos proxy while it resets the connection at least 50 times (at seeded
//! random points of the stream), and afterwards every frame is accounted
//! for exactly once, in one of three categories:
//!
//! - received intact by the server;
//! - handed back to the application: refused by `send` (`SendError`), or
//!   returned by a `Reset` (`unsent().chunks()`, `unsent().partial()`) or by
//!   the final `Close`;
//! - lost in flight: handed to the kernel on a connection that was then
//!   reset, and not received. redial no longer holds those bytes, but
//!   `Reset::written()` says how far the lost connection got, so together
//!   with the server's count (an application-level ack) the application can
//!   name them: they must be exactly a suffix of that connection's written
//!   frames.
//!
//! The kernel's counts (`Reset::acked`/`unacked`, `Close::acked`/`unacked`)
//! back this with evidence redial does not produce: per connection, the
//! kernel's acknowledged plus unacknowledged bytes equal what redial says
//! it wrote; every byte the server received was acknowledged (the proxy's
//! kernel took it), save on a connection the proxy reset, where up to two
//! segments may have been received under a delayed acknowledgement that
//! the RST dropped; the unacknowledged bytes fit in the client's send
//! buffer; and the acknowledged bytes the server never got fit in the
//! buffers of the path behind the client (the proxy's, and the kernel's
//! limits read from `/proc`). A frame lost in flight is thus either still
//! unacknowledged in the client's kernel or acknowledged and dropped in
//! the proxy's buffers when it reset the connection.
//!
//! Each frame is sent with its own `Connection::send`, so chunks map 1:1 to
//! frames. Each TCP connection starts with a hello frame naming its
//! generation (sent from `on_connect`), so the server's per-connection
//! bytes can be matched with the client's per-generation `Reset`s. The
//! server parses each connection separately, checks every frame (sequence
//! number, length, payload, checksum), and sets aside a trailing incomplete
//! frame.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redial::{Backoff, Connection, FnHandler, Manager, Options, Partial, Resume, SendError, State};
use redial_chaos::{Direction, Proxy, SplitMix64};
use support::{wait_until, TestServer};
use tokio::task::JoinHandle;

const FRAMES: u32 = 100_000;
const SEED: u64 = 0x5EED_2024;
const MIN_RESETS: usize = 50;
const LONG: Duration = Duration::from_secs(15);

/// The proxy's read buffer per direction: bytes it may hold between its
/// two sockets.
const PROXY_BUFFER: usize = 32 * 1024;

const DATA: u8 = 0xF1;
const HELLO: u8 = 0xE1;
const HEADER: usize = 1 + 4 + 2;
const TRAILER: usize = 4;

fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811C_9DC5u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// Mostly small frames, every 8th one larger (up to 2 KiB), so that a
/// connection's data can outgrow the kernel buffers between two resets.
fn payload_len(seq: u32) -> usize {
    let r = SplitMix64::new(u64::from(seq)).next_u64();
    if seq % 8 == 7 {
        500 + (r % 1500) as usize
    } else {
        8 + (r % 120) as usize
    }
}

fn payload_byte(seq: u32, j: usize) -> u8 {
    (seq.wrapping_mul(7) as usize).wrapping_add(j * 13) as u8
}

/// kind, seq (BE), payload length (BE), payload, FNV-1a of all before.
fn encode(kind: u8, seq: u32, payload_len: usize) -> Vec<u8> {
    let mut f = Vec::with_capacity(HEADER + payload_len + TRAILER);
    f.push(kind);
    f.extend_from_slice(&seq.to_be_bytes());
    f.extend_from_slice(&(payload_len as u16).to_be_bytes());
    f.extend((0..payload_len).map(|j| payload_byte(seq, j)));
    let sum = fnv1a(&f);
    f.extend_from_slice(&sum.to_be_bytes());
    f
}

fn frame(seq: u32) -> Vec<u8> {
    encode(DATA, seq, payload_len(seq))
}

fn hello(generation: u64) -> Vec<u8> {
    encode(HELLO, generation as u32, 0)
}

fn is_hello(chunk: &[u8]) -> bool {
    chunk.first() == Some(&HELLO)
}

/// The sequence number of a whole data frame handed back by redial, after
/// checking that it is byte for byte the frame that was sent.
fn seq_of(chunk: &[u8]) -> u32 {
    assert_eq!(chunk[0], DATA, "not a data frame");
    let seq = u32::from_be_bytes(chunk[1..5].try_into().unwrap());
    assert_eq!(chunk, &frame(seq)[..], "handed-back frame {seq} altered");
    seq
}

/// What the server got on one TCP connection, parsed.
#[derive(Debug, Default)]
struct ServerConn {
    /// Bytes received, whole frames or not.
    bytes: u64,
    generation: Option<u64>,
    frames: Vec<u32>,
    /// A trailing incomplete frame (the connection ended inside it).
    trailing: Vec<u8>,
    corrupt: Vec<String>,
}

fn parse(data: &[u8]) -> ServerConn {
    let mut out = ServerConn {
        bytes: data.len() as u64,
        ..ServerConn::default()
    };
    let mut pos = 0;
    while pos < data.len() {
        let rest = &data[pos..];
        if rest.len() < HEADER {
            out.trailing = rest.to_vec();
            break;
        }
        let kind = rest[0];
        let seq = u32::from_be_bytes(rest[1..5].try_into().unwrap());
        let len = u16::from_be_bytes(rest[5..7].try_into().unwrap()) as usize;
        let total = HEADER + len + TRAILER;
        if rest.len() < total {
            out.trailing = rest.to_vec();
            break;
        }
        let whole = &rest[..total];
        let sum = u32::from_be_bytes(whole[total - 4..].try_into().unwrap());
        if fnv1a(&whole[..total - 4]) != sum {
            out.corrupt
                .push(format!("bad checksum at offset {pos} (seq {seq})"));
            break;
        }
        match kind {
            HELLO if pos == 0 && len == 0 => out.generation = Some(u64::from(seq)),
            DATA if whole == &frame(seq)[..] => out.frames.push(seq),
            _ => {
                out.corrupt.push(format!(
                    "unexpected frame kind {kind:#x} seq {seq} at {pos}"
                ));
                break;
            }
        }
        pos += total;
    }
    out
}

#[derive(Debug, Clone)]
struct ResetRec {
    generation: u64,
    written: u64,
    acked: Option<u64>,
    unacked: Option<u64>,
    partial: Option<Partial>,
    chunks: Vec<Vec<u8>>,
}

#[derive(Debug, Clone, Default)]
struct CloseRec {
    written: Option<u64>,
    acked: Option<u64>,
    unacked: Option<u64>,
    partial: Option<Partial>,
    chunks: Vec<Vec<u8>>,
}

/// The kernel's side of the tally, summed over connections.
#[derive(Debug, Default)]
struct KernelTally {
    max_unacked: u64,
    received_unacked: u64,
    acked_not_received: u64,
    unacked: u64,
    lost_acked: u64,
    lost_unacked: u64,
}

/// A loopback (GSO) segment is at most 64 KiB. The kernel takes a write
/// while its queue is under the send buffer's size, and the segment being
/// built may take it past by up to one more: unacknowledged bytes stay
/// under the buffer plus two segments.
const MAX_SEGMENT: u64 = 64 * 1024;

/// A receiver acknowledges at least every second full segment (Linux:
/// once more than one `rcv_mss` is unacknowledged, and a segment is at
/// most 64 KiB on loopback): what an RST can leave received and never
/// acknowledged to the sender.
const DELAYED_ACK: u64 = 2 * MAX_SEGMENT;

/// The largest buffer the kernel allows for `name` (`tcp_rmem`,
/// `tcp_wmem`): the third field of `/proc/sys/net/ipv4/<name>`.
fn kernel_limit(name: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/sys/net/ipv4/{name}")).unwrap();
    text.split_whitespace().nth(2).unwrap().parse().unwrap()
}

/// Where each frame ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Received,
    HandedBack,
    LostInFlight,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_frame_is_received_handed_back_or_lost_in_flight_exactly_once() {
    let server = TestServer::sink().await;
    let proxy = Arc::new(
        Proxy::builder()
            .seed(SEED)
            .buffer_size(PROXY_BUFFER)
            .start("127.0.0.1:0", server.addr)
            .await
            .unwrap(),
    );
    let rec = Arc::new(Records::default());
    let cm = Manager::new();
    let conn = cm
        .connect_with(proxy.local_addr(), recording_handler(&rec), options())
        .unwrap();
    tokio::time::timeout(LONG, conn.wait_connected())
        .await
        .unwrap()
        .unwrap();

    let progress = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let producer = spawn_producer(conn.clone(), progress.clone(), done.clone());
    let injector = spawn_injector(proxy.clone(), conn.clone(), rec.clone(), progress, done);
    let (accepted, refused) = tokio::time::timeout(Duration::from_secs(60), producer)
        .await
        .expect("producer finished in time")
        .unwrap();
    let injected = injector.await.unwrap();
    drain(&conn, &server, &proxy).await;

    // ---- Reconciliation ----
    let (resets, close, generations) = how_each_ended(&rec);
    let (server_by_gen, anonymous) = server_connections(&server);
    let mut t = Tally::new(rec.send_buffer.load(Ordering::SeqCst));
    for seqs in refused.values() {
        for &s in seqs {
            t.settle(s, Fate::HandedBack);
        }
    }
    for g in 1..=generations {
        let empty = ServerConn::default();
        let got = server_by_gen.get(&g).unwrap_or(&empty);
        match resets.get(g as usize - 1) {
            Some(r) => t.generation(g, &accepted, &Ended::Reset(r), got),
            None => t.generation(g, &accepted, &Ended::Closed(&close), got),
        }
    }
    assert_eq!(
        t.cursor,
        accepted.len(),
        "accepted frames not covered by any generation"
    );
    for a in &anonymous {
        // A connection reset before its hello arrived whole.
        assert!(a.trailing.is_empty() || a.trailing[0] == HELLO);
    }
    let (received, handed_back, lost) =
        t.summary(injected, resets.len(), generations, &refused, &close);
    let stats = conn.stats();
    println!(
        "  discarded {} bytes; corrupt 0 and duplicated 0 frames (both checked above)",
        stats.discarded_bytes
    );
    assert_eq!(stats.discarded_bytes, 0, "the handler took every hand-back");
    assert_eq!(t.kernel.lost_acked + t.kernel.lost_unacked, lost as u64);
    assert_eq!(
        t.fate.len(),
        FRAMES as usize,
        "frames missing from every category"
    );
    assert_eq!(received + handed_back + lost, FRAMES as usize);
    assert!(t.fate.keys().copied().eq(0..FRAMES));
    cm.disconnect_all().await;
}

/// The resets (in generation order) and the one close, checked against
/// the connects: every connection but the last was reset, at least
/// [`MIN_RESETS`] times. Returns them with the number of connections.
fn how_each_ended(rec: &Records) -> (Vec<ResetRec>, CloseRec, u64) {
    let resets = rec.resets.lock().unwrap().clone();
    let closes = rec.closes.lock().unwrap().clone();
    assert_eq!(closes.len(), 1, "on_close exactly once");
    let generations = rec.connects.load(Ordering::SeqCst);
    assert_eq!(
        resets.len() as u64 + 1,
        generations,
        "each connection but the last was reset"
    );
    assert!(resets.len() >= MIN_RESETS, "only {} resets", resets.len());
    for (i, r) in resets.iter().enumerate() {
        assert_eq!(r.generation, i as u64 + 1, "resets in generation order");
    }
    (resets, closes[0].clone(), generations)
}

/// What the handler records, for the reconciliation.
#[derive(Default)]
struct Records {
    resets: Mutex<Vec<ResetRec>>,
    closes: Mutex<Vec<CloseRec>>,
    connects: AtomicU64,
    /// The largest send buffer the kernel gave a connection.
    send_buffer: AtomicU64,
}

fn recording_handler(rec: &Arc<Records>) -> FnHandler {
    let (on_connect, on_reset, on_close) = (rec.clone(), rec.clone(), rec.clone());
    redial::handler()
        .on_connect(move |sock| {
            on_connect.connects.fetch_add(1, Ordering::SeqCst);
            // The kernel's real send buffer (it doubles what was asked).
            let size = sock.sock_ref().send_buffer_size().unwrap() as u64;
            on_connect.send_buffer.fetch_max(size, Ordering::SeqCst);
            // First bytes of every connection: which generation it is.
            sock.send(hello(sock.generation())).unwrap();
        })
        .on_data(|_, _| {})
        .on_reset(move |reset| {
            on_reset.resets.lock().unwrap().push(ResetRec {
                generation: reset.generation(),
                written: reset.written(),
                acked: reset.acked(),
                unacked: reset.unacked(),
                partial: reset.unsent().partial().cloned(),
                chunks: reset.unsent().chunks().map(<[u8]>::to_vec).collect(),
            });
            Resume::Reconnect
        })
        .on_close(move |close| {
            on_close.closes.lock().unwrap().push(CloseRec {
                written: close.written(),
                acked: close.acked(),
                unacked: close.unacked(),
                partial: close.unsent().partial().cloned(),
                chunks: close.unsent().chunks().map(<[u8]>::to_vec).collect(),
            });
        })
}

fn options() -> Options {
    // stable_after 1 ms: every reconnect is immediate, so 50+ resets fit in
    // a few seconds instead of climbing the backoff schedule.
    Options::new()
        .backoff(Backoff::new(Duration::from_millis(20), 2.0, Duration::from_millis(500)).unwrap())
        .stable_after(Duration::from_millis(1))
        // A small send buffer makes the kernel take frames in pieces now
        // and then, so resets also cut chunks (Reset::unsent().partial()).
        .configure_socket(|s| s.set_send_buffer_size(4096))
}

/// The frames `send` accepted, in order, and the refused ones by why.
type Sent = (Vec<u32>, BTreeMap<&'static str, Vec<u32>>);

/// Producer: one send per frame, in bursts of 1..=150 frames (seeded)
/// with a 1 ms pause between, so the stream spans many resets and the
/// resets land at varied points of a burst. Refused frames are handed
/// back.
fn spawn_producer(
    conn: Connection,
    progress: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
) -> JoinHandle<Sent> {
    tokio::spawn(async move {
        let mut accepted = Vec::with_capacity(FRAMES as usize);
        let mut refused: BTreeMap<&'static str, Vec<u32>> = BTreeMap::new();
        let mut rng = SplitMix64::new(SEED ^ 0xB0B);
        let mut burst = rng.between(1, 150);
        for seq in 0..FRAMES {
            let f = frame(seq);
            match conn.send(&f) {
                Ok(()) => accepted.push(seq),
                Err(e) => {
                    assert_eq!(e.data(), &f[..], "a refused send hands back its bytes");
                    let kind = match e {
                        SendError::NotConnected { .. } => "not connected",
                        SendError::Full { .. } => "queue full",
                        SendError::OutageBufferFull { .. } => "outage buffer full",
                        SendError::Closed { .. } => "closed",
                        _ => "other",
                    };
                    refused.entry(kind).or_default().push(seq);
                    // Down: give the reconnect a moment instead of
                    // burning through frames.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            progress.store(u64::from(seq) + 1, Ordering::Relaxed);
            burst -= 1;
            if burst == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
                burst = rng.between(1, 150);
            }
        }
        done.store(true, Ordering::SeqCst);
        (accepted, refused)
    })
}

/// Injector: a reset after every 600..=1800 frames (seeded), each one
/// confirmed by the client's on_reset; 100,000 / 1,800 > 55. Returns how
/// many it injected.
fn spawn_injector(
    proxy: Arc<Proxy>,
    conn: Connection,
    rec: Arc<Records>,
    progress: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
) -> JoinHandle<usize> {
    tokio::spawn(async move {
        let mut rng = SplitMix64::new(SEED);
        let mut injected = 0usize;
        let mut next = rng.between(600, 1800);
        while !done.load(Ordering::SeqCst) {
            if progress.load(Ordering::Relaxed) < next {
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
            reset_confirmed(&proxy, &conn, &rec).await;
            injected += 1;
            next = progress.load(Ordering::Relaxed) + rng.between(600, 1800);
            shape_next(&proxy, &mut rng);
        }
        proxy.heal().unwrap();
        injected
    })
}

/// Resets the connection through the proxy until the client's on_reset
/// confirms it.
async fn reset_confirmed(proxy: &Proxy, conn: &Connection, rec: &Records) {
    // Only a connection the proxy holds can be reset.
    while !(conn.state() == State::Connected && proxy.stats().live >= 1) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let before = rec.resets.lock().unwrap().len();
    for _ in 0..50 {
        proxy.reset_all();
        for _ in 0..200 {
            if rec.resets.lock().unwrap().len() > before {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// Shapes the next connection so that resets also land inside frames:
/// slicing splits frames across the proxy's writes (the server sees
/// truncated frames), a bandwidth limit or a blackhole fills the kernel
/// buffers (redial cuts chunks).
fn shape_next(proxy: &Proxy, rng: &mut SplitMix64) {
    proxy.heal().unwrap();
    match rng.below(4) {
        0 => {}
        // Nothing moves: redial's batch stops in mid-frame once the kernel
        // buffers are full.
        3 => proxy.blackhole(),
        1 => proxy.slice(
            Direction::Upstream,
            rng.between(20, 200) as usize,
            Duration::ZERO,
        ),
        _ => proxy.bandwidth(Direction::Upstream, 2 << 20),
    }
}

/// Drain: lets the last connection come up and hand everything to the
/// kernel, then disconnects (flush, FIN) and waits for the server to see
/// every connection end.
async fn drain(conn: &Connection, server: &TestServer, proxy: &Proxy) {
    tokio::time::timeout(LONG, conn.wait_connected())
        .await
        .unwrap()
        .unwrap();
    wait_until("queue drained", LONG, || conn.stats().queued == 0).await;
    tokio::time::timeout(LONG, conn.disconnect())
        .await
        .expect("disconnect in time");
    wait_until("server saw every connection end", LONG, || {
        server.open() == 0
    })
    .await;
    proxy.shutdown().await;
}

/// The server's connections, parsed and checked: by the generation their
/// hello names, and those that ended before a whole hello.
fn server_connections(server: &TestServer) -> (BTreeMap<u64, ServerConn>, Vec<ServerConn>) {
    let mut server_by_gen: BTreeMap<u64, ServerConn> = BTreeMap::new();
    let mut anonymous = Vec::new();
    for log in server.conns() {
        let parsed = parse(&log.data);
        assert!(
            parsed.corrupt.is_empty(),
            "corruption at the server: {:?}",
            parsed.corrupt
        );
        match parsed.generation {
            Some(g) => assert!(
                server_by_gen.insert(g, parsed).is_none(),
                "generation {g} seen on two server connections"
            ),
            None => {
                assert!(parsed.frames.is_empty());
                anonymous.push(parsed);
            }
        }
    }
    (server_by_gen, anonymous)
}

/// How one connection (generation) ended, from the client's side: reset,
/// or closed by the disconnect; each says what it wrote and handed back.
enum Ended<'a> {
    Reset(&'a ResetRec),
    Closed(&'a CloseRec),
}

impl Ended<'_> {
    /// (written, acked, unacked) as redial and the kernel tell them.
    fn evidence(&self) -> (u64, u64, u64) {
        let (written, acked, unacked) = match self {
            Ended::Reset(r) => (r.written, r.acked, r.unacked),
            Ended::Closed(c) => (c.written.unwrap(), c.acked, c.unacked),
        };
        (
            written,
            acked.expect("Linux reports the acknowledged bytes"),
            unacked.expect("Linux reports the unacknowledged bytes"),
        )
    }
}

/// The reconciliation's running state: every frame's fate, how far the
/// generations have covered the accepted frames, and the counts printed
/// at the end.
struct Tally {
    fate: BTreeMap<u32, Fate>,
    /// The next accepted frame no generation has accounted for.
    cursor: usize,
    from_chunks: usize,
    from_partials: usize,
    truncated_at_server: usize,
    lost_per_gen: Vec<usize>,
    kernel: KernelTally,
    send_buffer: u64,
    /// Bytes the path behind the client can hold once acknowledged: the
    /// proxy's receive buffer, its own buffer, its send buffer towards the
    /// server, and the server's receive buffer (kernel limits read here).
    path_buffers: u64,
}

fn size(seq: u32) -> u64 {
    (HEADER + payload_len(seq) + TRAILER) as u64
}

fn hello_len() -> u64 {
    hello(1).len() as u64
}

impl Tally {
    fn new(send_buffer: u64) -> Tally {
        Tally {
            fate: BTreeMap::new(),
            cursor: 0,
            from_chunks: 0,
            from_partials: 0,
            truncated_at_server: 0,
            lost_per_gen: Vec::new(),
            kernel: KernelTally::default(),
            send_buffer,
            path_buffers: 2 * kernel_limit("tcp_rmem")
                + kernel_limit("tcp_wmem")
                + PROXY_BUFFER as u64,
        }
    }

    fn settle(&mut self, seq: u32, f: Fate) {
        if let Some(prev) = self.fate.insert(seq, f) {
            panic!("frame {seq} accounted twice: {prev:?} and {f:?}");
        }
    }

    /// Accounts for generation `g`: what it wrote, what it handed back,
    /// what the server `got` of it, and the kernel's evidence.
    fn generation(&mut self, g: u64, accepted: &[u32], ended: &Ended<'_>, got: &ServerConn) {
        let (written_frames, partial, chunks) = match ended {
            Ended::Reset(r) => self.written_before_reset(g, accepted, r),
            Ended::Closed(c) => self.written_before_close(accepted, c),
        };
        let partial_seq = self.handed_back(g, accepted, partial.as_ref(), &chunks);
        let was_reset = matches!(ended, Ended::Reset(_));
        self.received_or_lost(g, &written_frames, got, was_reset);
        self.kernel_evidence(g, &written_frames, got, ended);
        // A trailing incomplete frame is a prefix of the next frame: a lost
        // one, or the partial chunk.
        if !got.trailing.is_empty() {
            self.truncated_at_server += 1;
            let next = written_frames
                .get(got.frames.len())
                .copied()
                .or(partial_seq);
            let expected = next.map_or_else(|| hello(g), frame);
            assert!(
                got.trailing.len() < expected.len() && expected.starts_with(&got.trailing),
                "generation {g}: trailing bytes are not a prefix of the next frame"
            );
        }
    }

    /// The frames generation `g` wrote to the kernel, from the reset's
    /// `written`, and what the reset handed back (hellos left out).
    fn written_before_reset(
        &mut self,
        g: u64,
        accepted: &[u32],
        r: &ResetRec,
    ) -> (Vec<u32>, Option<Partial>, Vec<Vec<u8>>) {
        let hello_cut = r.partial.as_ref().is_some_and(|p| is_hello(&p.data));
        let hello_unsent = r.chunks.first().is_some_and(|c| is_hello(c));
        let mut rem = if hello_cut || hello_unsent {
            assert_eq!(
                r.written,
                r.partial.as_ref().map_or(0, |p| p.written as u64)
            );
            0
        } else {
            let cut = r.partial.as_ref().map_or(0, |p| p.written as u64);
            r.written
                .checked_sub(hello_len() + cut)
                .unwrap_or_else(|| panic!("generation {g}: written {} too small", r.written))
        };
        let mut w = Vec::new();
        while rem > 0 {
            let seq = *accepted
                .get(self.cursor)
                .unwrap_or_else(|| panic!("generation {g}: written runs past the accepted frames"));
            rem = rem.checked_sub(size(seq)).unwrap_or_else(|| {
                panic!("generation {g}: written {} ends inside frame {seq} but no partial chunk says so", r.written)
            });
            w.push(seq);
            self.cursor += 1;
        }
        let partial = r.partial.clone().filter(|p| !is_hello(&p.data));
        let chunks = r.chunks.iter().filter(|c| !is_hello(c)).cloned().collect();
        (w, partial, chunks)
    }

    /// The last generation ended with disconnect, not a reset: everything
    /// accepted and not handed back by Close was written, and (no reset)
    /// must all have arrived.
    fn written_before_close(
        &mut self,
        accepted: &[u32],
        close: &CloseRec,
    ) -> (Vec<u32>, Option<Partial>, Vec<Vec<u8>>) {
        assert!(
            close.partial.is_none(),
            "disconnect cut a chunk: {:?}",
            close.partial.as_ref().map(|p| p.written)
        );
        let end = accepted.len() - close.chunks.len();
        let w = accepted[self.cursor..end].to_vec();
        self.cursor = end;
        (w, None, close.chunks.clone())
    }

    /// Settles the partial chunk and the whole chunks handed back, which
    /// follow the written frames in order; the partial's frame, if any.
    fn handed_back(
        &mut self,
        g: u64,
        accepted: &[u32],
        partial: Option<&Partial>,
        chunks: &[Vec<u8>],
    ) -> Option<u32> {
        let partial_seq = partial.map(|p| {
            let seq = seq_of(&p.data);
            assert!(p.written > 0 && p.written < p.data.len());
            assert_eq!(
                accepted.get(self.cursor),
                Some(&seq),
                "generation {g}: partial out of order"
            );
            self.cursor += 1;
            seq
        });
        if let Some(seq) = partial_seq {
            self.settle(seq, Fate::HandedBack);
            self.from_partials += 1;
        }
        for chunk in chunks {
            let seq = seq_of(chunk);
            assert_eq!(
                accepted.get(self.cursor),
                Some(&seq),
                "generation {g}: unsent chunk out of order"
            );
            self.cursor += 1;
            self.settle(seq, Fate::HandedBack);
            self.from_chunks += 1;
        }
        partial_seq
    }

    /// What the server got on this generation's connection: a prefix of
    /// what was written; the rest is lost in flight (a suffix).
    fn received_or_lost(&mut self, g: u64, written_frames: &[u32], got: &ServerConn, reset: bool) {
        assert!(
            got.frames.len() <= written_frames.len()
                && got.frames[..] == written_frames[..got.frames.len()],
            "generation {g}: server frames are not a prefix of the written ones"
        );
        if !reset {
            assert_eq!(
                got.frames, written_frames,
                "the last connection was not reset: nothing may be lost"
            );
        }
        for &s in &got.frames {
            self.settle(s, Fate::Received);
        }
        let lost = &written_frames[got.frames.len()..];
        for &s in lost {
            self.settle(s, Fate::LostInFlight);
        }
        self.lost_per_gen.push(lost.len());
    }

    /// The kernel's evidence for this connection.
    fn kernel_evidence(
        &mut self,
        g: u64,
        written_frames: &[u32],
        got: &ServerConn,
        ended: &Ended<'_>,
    ) {
        let (written, acked, unacked) = ended.evidence();
        assert_eq!(acked + unacked, written, "generation {g}: kernel vs redial");
        // Every byte the server received was acknowledged, except, on a
        // connection the proxy reset, an acknowledgement the proxy's kernel
        // was still delaying: an RST carries none the client processes.
        let unacked_received = got.bytes.saturating_sub(acked);
        let allowed = if matches!(ended, Ended::Reset(_)) {
            DELAYED_ACK
        } else {
            0
        };
        assert!(
            unacked_received <= allowed,
            "generation {g}: the server received {} bytes, the kernel saw {acked} acknowledged",
            got.bytes
        );
        self.kernel.received_unacked += unacked_received;
        let send_buffer = self.send_buffer;
        assert!(
            unacked <= send_buffer + 2 * MAX_SEGMENT,
            "generation {g}: {unacked} unacknowledged bytes, send buffer {send_buffer}"
        );
        self.kernel.max_unacked = self.kernel.max_unacked.max(unacked);
        let path_buffers = self.path_buffers;
        assert!(
            acked.saturating_sub(got.bytes) <= path_buffers,
            "generation {g}: {} bytes acknowledged and never received, the path holds {path_buffers}",
            acked - got.bytes
        );
        self.kernel.acked_not_received += acked.saturating_sub(got.bytes);
        self.kernel.unacked += unacked;
        // Each lost frame lies in one of the two windows.
        let mut end = if written_frames.is_empty() {
            0
        } else {
            hello_len()
        };
        for (i, &seq) in written_frames.iter().enumerate() {
            end += size(seq);
            if i < got.frames.len() {
                continue;
            }
            assert!(
                end > got.bytes,
                "generation {g}: frame {seq} lost but inside what the server received"
            );
            if end <= acked {
                self.kernel.lost_acked += 1;
            } else {
                self.kernel.lost_unacked += 1;
            }
        }
    }

    /// Prints where the frames went; returns how many were received,
    /// handed back and lost in flight.
    fn summary(
        &self,
        injected: usize,
        resets: usize,
        generations: u64,
        refused: &BTreeMap<&'static str, Vec<u32>>,
        close: &CloseRec,
    ) -> (usize, usize, usize) {
        let count = |f: Fate| self.fate.values().filter(|&&x| x == f).count();
        let (received, handed_back, lost) = (
            count(Fate::Received),
            count(Fate::HandedBack),
            count(Fate::LostInFlight),
        );
        let (from_chunks, from_partials) = (self.from_chunks, self.from_partials);
        let (send_buffer, path_buffers) = (self.send_buffer, self.path_buffers);
        println!("accounting over {FRAMES} frames, seed {SEED:#x}:");
        println!("  resets injected {injected}, resets seen {resets}, connections {generations}");
        println!("  received intact by the server: {received}");
        println!(
            "  handed back: {handed_back} (send refused {:?}; reset unsent chunks {from_chunks}; reset partial chunks {from_partials}; close unsent {})",
            refused.iter().map(|(k, v)| (*k, v.len())).collect::<Vec<_>>(),
            close.chunks.len()
        );
        println!(
            "  lost in flight (written to the kernel, connection reset): {lost} over {} connections (max {} in one)",
            self.lost_per_gen.iter().filter(|&&n| n > 0).count(),
            self.lost_per_gen.iter().max().unwrap_or(&0)
        );
        println!(
            "  truncated frames discarded at the server: {}",
            self.truncated_at_server
        );
        println!(
            "  kernel: lost frames acknowledged (dropped in the proxy) {}, unacknowledged (died in the client's kernel) {}",
            self.kernel.lost_acked, self.kernel.lost_unacked
        );
        println!(
            "  kernel: bytes acknowledged and not received {}, unacknowledged {} (at most {} on one connection; send buffer {send_buffer}, path buffers {path_buffers})",
            self.kernel.acked_not_received, self.kernel.unacked, self.kernel.max_unacked
        );
        println!(
            "  kernel: bytes received by the server whose acknowledgement the proxy's reset dropped: {}",
            self.kernel.received_unacked
        );
        (received, handed_back, lost)
    }
}
