//! `redial chaos` forwards, and resets on command and on schedule.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use support::Redial;

const T: Duration = Duration::from_secs(10);

/// An echo server on a thread; returns its address.
fn echo_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { break };
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 || conn.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

fn start(extra: &[&str]) -> (Redial, String) {
    let upstream = echo_server();
    let mut args = vec!["chaos", "--listen", "127.0.0.1:0", "--upstream", &upstream];
    args.extend_from_slice(extra);
    let mut redial = Redial::spawn(&args);
    let line = redial.stderr.wait_contains("listening on", T);
    let addr = line
        .split("listening on ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap()
        .to_string();
    (redial, addr)
}

fn echo(conn: &mut TcpStream, msg: &[u8]) {
    conn.write_all(msg).unwrap();
    let mut got = vec![0u8; msg.len()];
    conn.read_exact(&mut got).unwrap();
    assert_eq!(got, msg);
}

fn command(redial: &mut Redial, line: &str) {
    let stdin = redial.stdin.as_mut().unwrap();
    writeln!(stdin, "{line}").unwrap();
    stdin.flush().unwrap();
}

#[test]
fn forwards_and_resets_on_command() {
    let (mut redial, addr) = start(&[]);
    let mut conn = TcpStream::connect(&addr).unwrap();
    conn.set_read_timeout(Some(T)).unwrap();
    echo(&mut conn, b"ping\n");
    // One line per accepted connection, naming the client.
    let me = conn.local_addr().unwrap();
    redial
        .stderr
        .wait_contains(&format!("connection 1 accepted from {me}"), T);

    command(&mut redial, "reset");
    redial.stderr.wait_contains("reset every connection", T);
    let err = conn.read(&mut [0u8; 16]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset);

    command(&mut redial, "stats");
    let stats = redial.stdout.wait_contains("accepted", T);
    assert!(
        stats.starts_with("accepted 1, live 0, upstream 5 B, downstream 5 B"),
        "{stats}"
    );

    command(&mut redial, "refuse");
    redial.stderr.wait_contains("refusing", T);
    assert!(TcpStream::connect(&addr).is_err());
    command(&mut redial, "accept");
    redial.stderr.wait_contains("accepting", T);
    let mut again = TcpStream::connect(&addr).unwrap();
    again.set_read_timeout(Some(T)).unwrap();
    echo(&mut again, b"pong\n");
    let me = again.local_addr().unwrap();
    redial
        .stderr
        .wait_contains(&format!("connection 2 accepted from {me}"), T);

    command(&mut redial, "latency soon");
    redial.stderr.wait_contains("`latency soon`", T);

    command(&mut redial, "quit");
    let status = redial.wait(T);
    assert!(status.success(), "{status:?}");
}

#[test]
fn resets_on_a_schedule() {
    let (mut redial, addr) = start(&["--reset-every", "300ms", "--latency", "5ms"]);
    redial.stderr.wait_contains("latency 5ms", T);
    let mut conn = TcpStream::connect(&addr).unwrap();
    conn.set_read_timeout(Some(T)).unwrap();
    echo(&mut conn, b"hello\n");
    let err = conn.read(&mut [0u8; 16]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset);
    redial.signal("-TERM");
    let status = redial.wait(T);
    assert!(status.success(), "{status:?}");
}

#[test]
fn commands_with_durations_past_the_maximum_are_refused() {
    let (mut redial, addr) = start(&[]);
    let mut conn = TcpStream::connect(&addr).unwrap();
    conn.set_read_timeout(Some(T)).unwrap();
    echo(&mut conn, b"ping\n");
    for line in [
        "latency 200000000000000d",
        "latency 1ms 200000000000000d",
        "slice 1 200000000000000d",
        "slow-close 200000000000000d",
    ] {
        command(&mut redial, line);
        redial.stderr.wait_contains(
            &format!("`{line}`: `200000000000000d`: longer than the maximum"),
            T,
        );
    }
    // Nothing was applied, and the proxy forwards as before.
    echo(&mut conn, b"still here\n");
    command(&mut redial, "latency 365d");
    redial.stderr.wait_contains("latency 8760h00m both ways", T);
    command(&mut redial, "quit");
    let status = redial.wait(T);
    assert!(status.success(), "{status:?}");
}
