//! `redial connect` against a server the test stops and starts again.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use support::Redial;

const T: Duration = Duration::from_secs(10);

/// Reads from `conn` until `want` bytes arrived (or EOF / timeout).
fn read_until(conn: &mut TcpStream, want: &[u8]) -> Vec<u8> {
    conn.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let deadline = Instant::now() + T;
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.ends_with(want) && Instant::now() < deadline {
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    got
}

fn read_to_eof(conn: &mut TcpStream) -> Vec<u8> {
    conn.set_read_timeout(Some(T)).unwrap();
    let mut got = Vec::new();
    let _ = conn.read_to_end(&mut got);
    got
}

#[test]
fn buffered_input_survives_a_server_restart() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let mut redial = Redial::spawn(&[
        "connect",
        &addr,
        "--buffer",
        "64KiB",
        "--backoff",
        "20ms..100ms",
    ]);
    let (mut conn, _) = listener.accept().unwrap();
    redial.stderr.wait_contains("connected to", T);

    // Data flows both ways.
    let stdin = redial.stdin.as_mut().unwrap();
    stdin.write_all(b"one\n").unwrap();
    stdin.flush().unwrap();
    assert_eq!(read_until(&mut conn, b"one\n"), b"one\n");
    conn.write_all(b"from server 1\n").unwrap();
    redial.stdout.wait_contains("from server 1", T);

    // The server goes away; what is typed meanwhile is kept.
    // The listener goes first: a lost connection is retried at once, and
    // must find nobody listening.
    drop(listener);
    drop(conn);
    redial.stderr.wait_contains("connection lost", T);
    redial.stderr.wait_contains("failed", T);
    let stdin = redial.stdin.as_mut().unwrap();
    stdin.write_all(b"two\n").unwrap();
    stdin.flush().unwrap();
    std::thread::sleep(Duration::from_millis(150));
    stdin.write_all(b"three\n").unwrap();
    stdin.flush().unwrap();
    std::thread::sleep(Duration::from_millis(150));

    // The server comes back on the same port.
    let listener = TcpListener::bind(&addr).unwrap();
    let (mut conn, _) = listener.accept().unwrap();
    conn.write_all(b"from server 2\n").unwrap();
    redial.stdout.wait_contains("from server 2", T);
    redial.stderr.wait_contains("after", T);

    // EOF on stdin: flush, FIN, exit 0.
    drop(redial.stdin.take());
    let rest = read_to_eof(&mut conn);
    assert_eq!(String::from_utf8_lossy(&rest), "two\nthree\n");
    let status = redial.wait(T);
    assert!(status.success(), "{status:?}: {:?}", redial.stderr.rest(T));
    let out = redial.stdout.rest(T);
    assert_eq!(out, ["from server 1", "from server 2"]);
}

#[test]
fn without_buffer_input_during_an_outage_is_reported() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let mut redial = Redial::spawn(&["connect", &addr, "--backoff", "50ms..200ms"]);
    let (conn, _) = listener.accept().unwrap();
    redial.stderr.wait_contains("connected to", T);
    // The listener goes first: a lost connection is retried at once, and
    // must find nobody listening.
    drop(listener);
    drop(conn);
    redial.stderr.wait_contains("connection lost", T);
    let stdin = redial.stdin.as_mut().unwrap();
    stdin.write_all(b"lost words\n").unwrap();
    stdin.flush().unwrap();
    let line = redial.stderr.wait_contains("not connected", T);
    assert!(line.contains("11 B of input dropped"), "{line}");
    redial.signal("-TERM");
    let status = redial.wait(T);
    assert!(status.success(), "{status:?}");
}

#[test]
fn gives_up_after_max_attempts_with_the_reason() {
    // A port nobody listens on: bind, note, close.
    let addr = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let out = assert_cmd::Command::new(support::BIN)
        .args([
            "connect",
            &addr,
            "--max-attempts",
            "2",
            "--backoff",
            "10ms..20ms",
        ])
        .env("NO_COLOR", "1")
        .write_stdin("never sent\n")
        .timeout(T)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("attempt 2 of 2"), "{err}");
    assert!(
        err.contains("redial: error: connection to")
            && err.contains("gave up after 2 failed attempts"),
        "{err}"
    );
}

/// The number just before `marker` in `line`.
fn number_before(line: &str, marker: &str) -> u64 {
    let head = line.split(marker).next().unwrap();
    head.split_whitespace().last().unwrap().parse().unwrap()
}

#[test]
fn a_resend_that_never_happens_is_counted_as_never_sent() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    // A server with a tiny window that never reads: the kernel buffers fill
    // and the rest of the input waits in redial's queue.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.bind(
        &"127.0.0.1:0"
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .into(),
    )
    .unwrap();
    sock.listen(8).unwrap();
    let listener: TcpListener = sock.into();
    let addr = listener.local_addr().unwrap().to_string();
    let mut redial = Redial::spawn(&[
        "connect",
        &addr,
        "--buffer",
        "64KiB",
        "--max-attempts",
        "1",
        "--backoff",
        "10ms..10ms",
    ]);
    let (conn, _) = listener.accept().unwrap();
    redial.stderr.wait_contains("connected to", T);

    let fed = Arc::new(AtomicU64::new(0));
    let mut stdin = redial.stdin.take().unwrap();
    let counter = fed.clone();
    std::thread::spawn(move || {
        let chunk = vec![b'x'; 64 * 1024];
        while stdin.write_all(&chunk).is_ok() {
            counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        }
    });
    // Feed until the input stalls: the kernel's buffers are full and
    // `write().await` waits at its hand-over point, so redial's queue
    // holds the bytes the driver could not hand to the kernel (at least
    // one hand-over's worth, `HAND_OVER_EVERY`). A stall is the fed count
    // standing still for a whole second after at least 1 MiB went in.
    let deadline = Instant::now() + 3 * T;
    let mut last = (0, Instant::now());
    loop {
        let now = fed.load(Ordering::Relaxed);
        if now != last.0 {
            last = (now, Instant::now());
        } else if now >= 1 << 20 && last.1.elapsed() >= Duration::from_secs(1) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "stdin took {fed:?} bytes and never stalled; stderr:\n{}",
            redial.stderr.rest(Duration::from_millis(100)).join("\n")
        );
        std::thread::sleep(Duration::from_millis(10));
    }

    // Nobody listens any more, and the connection is reset: the unsent
    // bytes are kept for a reconnect that fails, and the command gives up.
    drop(listener);
    socket2::SockRef::from(&conn)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(conn);
    let lost = redial.stderr.wait_contains("connection lost", T);
    let kept = number_before(&lost, "unsent bytes will go out");
    let written = number_before(&lost, "bytes written on it");
    assert!(kept >= 64 << 10, "{lost}");
    assert!(written > 0, "{lost}");
    // The kernel's word (Linux): the peer never read, so what its window
    // did not take was still unacknowledged when the RST came.
    let unacked = lost.contains("acknowledged by the peer").then(|| {
        let acked = number_before(&lost, "acknowledged by the peer");
        let in_flight = number_before(&lost, "lost in flight");
        assert!(acked <= written && in_flight == written - acked, "{lost}");
        assert!(in_flight > 0, "{lost}");
        in_flight
    });
    let closed = redial.stderr.wait_contains("closed:", T);
    let never_sent = number_before(&closed, "bytes were never sent");
    // Before, only the outage buffer counted: the kept bytes vanished.
    assert!(never_sent >= kept, "{closed} (kept {kept})");

    let status = redial.wait(T);
    assert_eq!(status.code(), Some(1));
    let summary = redial.stderr.wait_contains("input:", T);
    let read = number_before(&summary, "bytes read =");
    let out = number_before(&summary, "written to the kernel");
    let dropped = number_before(&summary, "dropped while down");
    let never = number_before(&summary, "never sent;");
    let on_lost = number_before(&summary, "of the written were on 1 lost connection");
    assert_eq!(read, out + dropped + never, "{summary}");
    assert!(never >= never_sent && dropped == 0, "{summary}");
    assert_eq!((out, on_lost), (written, written), "{summary}");
    assert!(read <= fed.load(Ordering::Relaxed), "{summary}");
    assert!(!summary.contains("unaccounted"), "{summary}");
    if let Some(unacked) = unacked {
        let never_acked = number_before(&summary, "of them never acknowledged");
        assert_eq!(never_acked, unacked, "{summary}");
    }
}
