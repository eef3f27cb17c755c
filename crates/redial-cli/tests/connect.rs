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
