//! Hostile peers and hostile input: redial stays bounded in memory and CPU
//! whatever a loopback peer does, and never panics on what it is given.
//!
//! - a peer that sends 1 GiB as fast as it can: memory stays bounded
//!   (VmRSS of this process grows by less than 64 MiB);
//! - a slow `on_data`: reading pauses while the handler is busy, so the
//!   sender ends up blocked on a full socket instead of redial buffering;
//! - a peer that accepts and never reads: the send queue limit holds and
//!   `send` refuses with the bytes;
//! - a peer that accepts and closes at once, 1,000 times a second if asked:
//!   backoff holds each connection to its schedule and the process stays
//!   nearly idle (CPU time from /proc/self/stat over 3 s);
//! - (feature `tls`) a peer that resets during the TLS handshake: a failed
//!   attempt on the schedule, never a connection;
//! - inputs found by fuzzing (fuzz/ at the repository root) that broke an
//!   invariant, kept as regression tests.
//!
//! Memory and CPU are process-wide, so these tests run one at a time (a
//! lock) and the servers are plain threads with blocking sockets; redial
//! runs on the runtime its `Manager` owns. Every loop is bounded in time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{ErrorKind, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use redial::{
    Backoff, Connection, Endpoint, Jitter, Manager, Options, SendError, State, ToEndpoint,
};

const MIB: u64 = 1024 * 1024;
/// Generous: these run on a shared 2-core machine, in debug builds.
const LONG: Duration = Duration::from_secs(60);

/// One test at a time: RSS and CPU time are measured for the whole process.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// Resident set size of this process, from /proc/self/status.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/self/status");
    kb * 1024
}

/// CPU time (user + system) of this process so far, from /proc/self/stat.
/// Linux reports it in USER_HZ ticks, which are 1/100 s on every platform
/// it supports.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // The command name (field 2) may contain spaces; fields after it are
    // plain numbers. utime and stime are fields 14 and 15.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

/// Samples RSS every 10 ms on a thread until stopped; returns the peak.
struct RssPeak {
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<u64>,
}

impl RssPeak {
    fn start() -> RssPeak {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = thread::spawn(move || {
            let mut peak = rss();
            while !s.load(Ordering::Relaxed) {
                peak = peak.max(rss());
                thread::sleep(Duration::from_millis(10));
            }
            peak.max(rss())
        });
        RssPeak { stop, thread }
    }

    fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?}: {what}"
        );
        thread::sleep(Duration::from_millis(5));
    }
}

fn wait_connected(conn: &Connection) {
    wait_for("connected", LONG, || conn.state() == State::Connected);
}

fn listener() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    (l, addr)
}

/// A peer that sends `total` bytes as fast as the socket takes them, then
/// closes. Returns its address and the bytes it managed to write.
fn flooding_peer(total: u64) -> (SocketAddr, Arc<AtomicU64>) {
    let (l, addr) = listener();
    let written = Arc::new(AtomicU64::new(0));
    let w = written.clone();
    thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let chunk = vec![0xA5u8; 256 * 1024];
        let mut left = total;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            if s.write_all(&chunk[..n]).is_err() {
                return;
            }
            left -= n as u64;
            w.fetch_add(n as u64, Ordering::Relaxed);
        }
    });
    (addr, written)
}

#[test]
fn a_peer_flooding_a_gibibyte_leaves_memory_bounded() {
    let _serial = serial();
    const TOTAL: u64 = 1024 * MIB;
    let (addr, _) = flooding_peer(TOTAL);
    let received = Arc::new(AtomicU64::new(0));
    let r = received.clone();
    let cm = Manager::new();
    let before = rss();
    let peak = RssPeak::start();
    let handler = redial::handler().on_data(move |_, data| {
        r.fetch_add(data.len() as u64, Ordering::Relaxed);
    });
    let conn = cm.connect(addr, handler).unwrap();
    wait_for("1 GiB received", Duration::from_secs(300), || {
        received.load(Ordering::Relaxed) >= TOTAL
    });
    let peak = peak.stop();
    let growth = peak.saturating_sub(before);
    println!(
        "1 GiB flood: RSS {} MiB before, peak {} MiB (+{} KiB)",
        before / MIB,
        peak / MIB,
        growth / 1024
    );
    assert_eq!(received.load(Ordering::Relaxed), TOTAL);
    assert!(
        growth < 64 * MIB,
        "RSS grew by {} MiB while reading 1 GiB",
        growth / MIB
    );
    conn.disconnect().wait_blocking().unwrap();
}

#[test]
fn a_slow_handler_pauses_reading_so_the_sender_blocks() {
    let _serial = serial();
    // The peer writes 64 KiB at a time with blocking writes; a write that
    // takes 100 ms or more waited on a full socket: the sender is blocked.
    // (The write timeout only keeps the peer from hanging at the end.)
    let (l, addr) = listener();
    let written = Arc::new(AtomicU64::new(0));
    let blocked = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let peer = {
        let (written, blocked, stop) = (written.clone(), blocked.clone(), stop.clone());
        thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            s.set_write_timeout(Some(Duration::from_secs(1))).unwrap();
            let chunk = vec![0x5Au8; 64 * 1024];
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let result = s.write(&chunk);
                if t.elapsed() >= Duration::from_millis(100) {
                    blocked.fetch_add(1, Ordering::Relaxed);
                }
                match result {
                    Ok(n) => {
                        written.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(_) => return,
                }
            }
        })
    };

    // 20 ms per call, at most one 64 KiB read per call: at most ~3 MiB/s
    // consumed, far below what the peer can send.
    let consumed = Arc::new(AtomicU64::new(0));
    let c = consumed.clone();
    let handler = redial::handler().on_data(move |_, data| {
        c.fetch_add(data.len() as u64, Ordering::Relaxed);
        thread::sleep(Duration::from_millis(20));
    });
    let cm = Manager::new();
    let before = rss();
    let conn = cm.connect(addr, handler).unwrap();
    wait_connected(&conn);
    wait_for("the sender blocks on a full socket", LONG, || {
        blocked.load(Ordering::Relaxed) >= 3
    });
    // Still blocked a while later: the backlog stays in kernel buffers.
    thread::sleep(Duration::from_secs(1));
    let (w, c) = (
        written.load(Ordering::Relaxed),
        consumed.load(Ordering::Relaxed),
    );
    let in_flight = w - c;
    let growth = rss().saturating_sub(before);
    println!(
        "slow handler: peer wrote {} KiB, handler got {} KiB, {} KiB in kernel buffers, \
         {} blocked writes, RSS +{} KiB",
        w / 1024,
        c / 1024,
        in_flight / 1024,
        blocked.load(Ordering::Relaxed),
        growth / 1024
    );
    // Loopback socket buffers autotune to a few MiB each way; anything
    // beyond that would be redial reading ahead of its handler.
    assert!(
        in_flight < 32 * MIB,
        "{} MiB written but not handed to the handler",
        in_flight / MIB
    );
    assert!(growth < 64 * MIB, "RSS grew by {} MiB", growth / MIB);
    stop.store(true, Ordering::Relaxed);
    conn.abort().wait_blocking().unwrap();
    peer.join().unwrap();
}

#[test]
fn a_peer_that_never_reads_makes_send_refuse_with_the_bytes() {
    let _serial = serial();
    const LIMIT: usize = 256 * 1024;
    let (l, addr) = listener();
    // Accepts and holds the socket without ever reading it.
    let peer = thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        thread::sleep(Duration::from_secs(8));
        drop(s);
    });
    let cm = Manager::new();
    let opts = Options::new().send_queue_limit(LIMIT);
    let conn = cm
        .connect_with(addr, redial::handler().on_data(|_, _| {}), opts)
        .unwrap();
    wait_connected(&conn);
    let before = rss();

    // Send 16 KiB chunks until every send has been refused for 500 ms in a
    // row: by then the peer's receive buffer, our send buffer and the send
    // queue are all full.
    let mut accepted = 0u64;
    let mut refused = 0u64;
    let mut last_accept = Instant::now();
    let mut seq = 0u32;
    while last_accept.elapsed() < Duration::from_millis(500) {
        assert!(seq < 1_000_000, "sends never stop being accepted");
        let chunk: Vec<u8> = std::iter::repeat_n(seq as u8, 16 * 1024).collect();
        seq += 1;
        match conn.send(&chunk) {
            Ok(()) => {
                accepted += chunk.len() as u64;
                last_accept = Instant::now();
            }
            Err(e) => {
                refused += 1;
                assert_eq!(e.data(), &chunk[..], "a refused send hands back its bytes");
                match e {
                    SendError::Full { queued, limit, .. } => {
                        assert_eq!(limit, LIMIT);
                        assert!(queued <= LIMIT, "{queued} queued above the limit");
                    }
                    other => panic!("expected Full, got {other:?}"),
                }
                thread::sleep(Duration::from_millis(1));
            }
        }
        assert!(conn.stats().queued <= LIMIT);
    }
    let stats = conn.stats();
    let growth = rss().saturating_sub(before);
    println!(
        "never-reading peer: {} KiB accepted, {} KiB handed to the kernel, {} KiB queued, \
         {refused} sends refused, RSS +{} KiB",
        accepted / 1024,
        stats.bytes_out / 1024,
        stats.queued / 1024,
        growth / 1024
    );
    assert!(refused > 0);
    assert!(stats.queued <= LIMIT);
    // What was accepted is in the queue or the kernel: at most the limit
    // plus socket buffers.
    assert!(
        accepted <= LIMIT as u64 + 32 * MIB,
        "{} MiB accepted",
        accepted / MIB
    );
    assert!(growth < 64 * MIB, "RSS grew by {} MiB", growth / MIB);
    conn.abort().wait_blocking().unwrap();
    peer.join().unwrap();
}

/// A peer that accepts each connection and closes it at once, at most
/// `per_second` times a second. Returns its address, its accept count and
/// a switch that stops it.
fn slamming_peer(per_second: u64) -> (SocketAddr, Arc<AtomicU64>, Arc<AtomicBool>) {
    let (l, addr) = listener();
    l.set_nonblocking(true).unwrap();
    let accepted = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (a, s) = (accepted.clone(), stop.clone());
    thread::spawn(move || {
        let pause = Duration::from_micros(1_000_000 / per_second);
        while !s.load(Ordering::Relaxed) {
            match l.accept() {
                Ok((conn, _)) => {
                    a.fetch_add(1, Ordering::Relaxed);
                    drop(conn);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => {}
            }
            thread::sleep(pause);
        }
    });
    (addr, accepted, stop)
}

/// How many attempts a schedule allows within `window`: the first at once,
/// then one after each delay.
fn attempts_within(backoff: Backoff, window: Duration) -> u64 {
    let mut t = Duration::ZERO;
    let mut n = 1;
    for d in backoff.delays(0) {
        t += d;
        if t > window {
            break;
        }
        n += 1;
    }
    n
}

#[test]
fn a_peer_that_accepts_and_closes_at_once_is_retried_on_the_backoff_schedule() {
    let _serial = serial();
    const CONNS: usize = 20;
    let window = Duration::from_secs(3);
    let (addr, accepted, stop) = slamming_peer(1000);
    // Every connection is lost long before `stable_after` (5 s): the first
    // loss is retried at once, every later one continues the schedule:
    // 0, 50, 100, 200, 400, 800, 1000 ms...
    let backoff = Backoff::new(Duration::from_millis(50), 2.0, Duration::from_secs(1))
        .unwrap()
        .with_jitter(Jitter::None);
    let cm = Manager::new();
    let cpu_before = cpu_time();
    let started = Instant::now();
    let conns: Vec<Connection> = (0..CONNS)
        .map(|_| {
            cm.connect_with(
                addr,
                redial::handler().on_data(|_, _| {}),
                Options::new().backoff(backoff),
            )
            .unwrap()
        })
        .collect();
    thread::sleep(window);
    let elapsed = started.elapsed();
    let cpu = cpu_time() - cpu_before;
    let total = accepted.load(Ordering::Relaxed);
    // Counted as the window plus however much longer the run took, so a
    // slow machine only loosens the bound.
    // +1: the connect before the schedule, +1: the immediate first retry.
    let per_conn_bound = attempts_within(backoff, elapsed) + 2;
    let busiest = conns.iter().map(|c| c.stats().connects).max().unwrap();
    let share = cpu.as_secs_f64() / elapsed.as_secs_f64();
    println!(
        "accept-and-close peer: {total} accepts from {CONNS} connections in {elapsed:?} \
         (busiest {busiest}, schedule allows {per_conn_bound}), CPU {cpu:?} = {:.1}% of a core",
        share * 100.0
    );
    assert!(
        busiest <= per_conn_bound,
        "a connection connected {busiest} times; the schedule allows {per_conn_bound}"
    );
    assert!(total <= per_conn_bound * CONNS as u64);
    assert!(
        total >= CONNS as u64 * 2,
        "the peer saw only {total} connects: the test did not exercise reconnects"
    );
    assert!(
        share < 0.30,
        "CPU {:.0}% of a core: busy loop?",
        share * 100.0
    );
    stop.store(true, Ordering::Relaxed);
    cm.disconnect_all().wait_blocking().unwrap();
}

/// A peer that reads the ClientHello and answers with RST.
#[cfg(feature = "tls")]
#[test]
fn a_peer_resetting_the_tls_handshake_is_a_failed_attempt_on_the_schedule() {
    use std::io::Read;
    use std::sync::atomic::AtomicU32;
    let _serial = serial();
    let (l, addr) = listener();
    l.set_nonblocking(true).unwrap();
    let accepted = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let peer = {
        let (accepted, stop) = (accepted.clone(), stop.clone());
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let Ok((mut s, _)) = l.accept() else {
                    thread::sleep(Duration::from_millis(1));
                    continue;
                };
                accepted.fetch_add(1, Ordering::Relaxed);
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut hello = [0u8; 512];
                let _ = s.read(&mut hello);
                // Linger 0: close sends RST instead of FIN.
                socket2::SockRef::from(&s)
                    .set_linger(Some(Duration::ZERO))
                    .unwrap();
                drop(s);
            }
        })
    };
    let connects = Arc::new(AtomicU32::new(0));
    let failures = Arc::new(AtomicU32::new(0));
    let (c, f) = (connects.clone(), failures.clone());
    let handler = redial::handler()
        .on_connect(move |_| {
            c.fetch_add(1, Ordering::Relaxed);
        })
        .on_data(|_, _| {})
        .on_connect_failed(move |_, _| {
            f.fetch_add(1, Ordering::Relaxed);
        });
    let backoff = Backoff::new(Duration::from_millis(50), 2.0, Duration::from_secs(1))
        .unwrap()
        .with_jitter(Jitter::None);
    let opts = Options::new()
        .backoff(backoff)
        .tls(redial::TlsConfig::webpki());
    let cm = Manager::new();
    let started = Instant::now();
    let conn = cm.connect_with(addr, handler, opts).unwrap();
    wait_for("three failed handshakes", LONG, || {
        failures.load(Ordering::Relaxed) >= 3
    });
    thread::sleep(Duration::from_secs(1));
    let elapsed = started.elapsed();
    let bound = attempts_within(backoff, elapsed) + 1;
    let stats = conn.stats();
    println!(
        "TLS handshake RST: {} attempts in {elapsed:?} (schedule allows {bound}), last error {:?}",
        accepted.load(Ordering::Relaxed),
        stats.last_error
    );
    assert_eq!(connects.load(Ordering::Relaxed), 0, "never up without TLS");
    assert_eq!(stats.connects, 0);
    assert!(matches!(
        conn.state(),
        State::Connecting | State::BackingOff
    ));
    assert!(accepted.load(Ordering::Relaxed) <= bound);
    stop.store(true, Ordering::Relaxed);
    conn.disconnect().wait_blocking().unwrap();
    assert_eq!(conn.state(), State::Closed);
    peer.join().unwrap();
}

// Inputs found by fuzzing (fuzz/fuzz_targets/endpoint.rs).

// Regression (fixed): `<(&str, u16) as ToEndpoint>::to_endpoint` (endpoint.rs)
// accepts the host "unix" and builds a host endpoint that prints as
// "unix:80", and that text parses as the Unix socket path "80": the
// written form of an endpoint no longer names it (a log line or config
// written from it connects somewhere else).
#[test]
fn an_endpoint_built_from_host_and_port_prints_as_text_naming_it() {
    let e = ("unix", 80).to_endpoint().unwrap();
    let again: Endpoint = e.to_string().parse().unwrap();
    assert_eq!(again, e, "{e} parses back as {again}");
}

// Regression (fixed): `<(&str, u16) as ToEndpoint>::to_endpoint` (endpoint.rs)
// checks for an empty host before stripping IPv6 brackets, so ("[]", 2)
// builds an endpoint with an empty host that prints as ":2", which does
// not parse ("has no host").
#[test]
fn an_empty_bracketed_host_is_refused() {
    assert!(("[]", 2).to_endpoint().is_err());
}
