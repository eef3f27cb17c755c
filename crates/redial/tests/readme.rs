//! README.md's Rust examples, compiled and run as written against loopback
//! servers this test starts.
//!
//! Each ```` ```rust ```` block of the README is a file in `tests/readme/`,
//! compiled into this binary; a check fails when a block and its file
//! differ, so the README cannot drift from what runs. Each example then
//! runs as its own process (this binary again, asked to run one example),
//! as a user's program would: a fresh process, a synchronous or tokio
//! `main`, the address of a server in an environment variable.
//!
//! A plain `main` (`harness = false`): the examples are programs, not
//! test functions. Run it alone with `cargo test -p redial --test readme`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod quick_start {
    include!("readme/quick_start.rs");
    pub(super) fn run() -> Result<(), Box<dyn std::error::Error>> {
        main()
    }
}
mod sender {
    include!("readme/sender.rs");
    pub(super) fn run() -> Result<(), Box<dyn std::error::Error>> {
        main()
    }
}
mod closure {
    include!("readme/closure.rs");
    pub(super) fn run() -> Result<(), Box<dyn std::error::Error>> {
        main()
    }
}

mod fleet {
    include!("readme/fleet.rs");
    pub(super) fn run() -> Result<(), Box<dyn std::error::Error>> {
        main()
    }
}
mod reconnect_now {
    include!("readme/reconnect_now.rs");
    pub(super) fn run() -> Result<(), Box<dyn std::error::Error>> {
        main()
    }
}
mod give_up {
    include!("readme/give_up.rs");
    pub(super) fn run() -> Result<(), Box<dyn std::error::Error>> {
        main()
    }
}
mod lifetime {
    include!("readme/lifetime.rs");
    pub(super) fn run() -> Result<(), Box<dyn std::error::Error>> {
        main()
    }
}

/// Every example: its file name, its text, and its `main`.
type Main = fn() -> Result<(), Box<dyn std::error::Error>>;
const EXAMPLES: &[(&str, &str, Main)] = &[
    (
        "quick_start",
        include_str!("readme/quick_start.rs"),
        quick_start::run,
    ),
    ("sender", include_str!("readme/sender.rs"), sender::run),
    ("closure", include_str!("readme/closure.rs"), closure::run),
    ("fleet", include_str!("readme/fleet.rs"), fleet::run),
    (
        "reconnect_now",
        include_str!("readme/reconnect_now.rs"),
        reconnect_now::run,
    ),
    ("give_up", include_str!("readme/give_up.rs"), give_up::run),
    (
        "lifetime",
        include_str!("readme/lifetime.rs"),
        lifetime::run,
    ),
];

/// Set in the child process: the example to run.
const RUN: &str = "REDIAL_README_EXAMPLE";

fn main() {
    if let Ok(name) = std::env::var(RUN) {
        let (_, _, run) = EXAMPLES
            .iter()
            .find(|(n, _, _)| *n == name)
            .unwrap_or_else(|| panic!("no README example named {name}"));
        if let Err(e) = run() {
            eprintln!("Error: {e:?}");
            std::process::exit(1);
        }
        return;
    }
    let checks: &[(&str, fn())] = &[
        (
            "every_rust_block_of_the_readme_is_a_tested_example",
            every_rust_block_of_the_readme_is_a_tested_example,
        ),
        (
            "quick_start_runs_against_a_memcached_speaking_server",
            quick_start_runs_against_a_memcached_speaking_server,
        ),
        (
            "sender_example_delivers_every_number_in_order",
            sender_example_delivers_every_number_in_order,
        ),
        (
            "closure_example_gets_its_reply",
            closure_example_gets_its_reply,
        ),
        (
            "fleet_example_follows_localhost_and_sends_a_key_to_its_member",
            fleet_example_follows_localhost_and_sends_a_key_to_its_member,
        ),
        (
            "reconnect_now_example_connects_without_waiting_out_its_backoff",
            reconnect_now_example_connects_without_waiting_out_its_backoff,
        ),
        (
            "give_up_example_closes_on_a_refused_connect",
            give_up_example_closes_on_a_refused_connect,
        ),
        (
            "lifetime_example_moves_members_to_a_late_server",
            lifetime_example_moves_members_to_a_late_server,
        ),
    ];
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    for (name, check) in checks {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        check();
        println!("test {name} ... ok");
    }
}

/// The ```` ```rust ```` blocks of README.md, in order.
fn readme_rust_blocks() -> Vec<String> {
    let readme = include_str!("../../../README.md");
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in readme.lines() {
        match &mut current {
            None if line.trim_end() == "```rust" => current = Some(String::new()),
            None => {}
            Some(_) if line.trim_end() == "```" => blocks.extend(current.take()),
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
        }
    }
    assert!(
        current.is_none(),
        "README.md: a ```rust block is not closed"
    );
    blocks
}

fn every_rust_block_of_the_readme_is_a_tested_example() {
    let blocks = readme_rust_blocks();
    for block in &blocks {
        assert!(
            EXAMPLES.iter().any(|(_, text, _)| text == block),
            "README.md has a ```rust block that is not one of tests/readme/*.rs \
             (copy it there and run it here, or fix the drift):\n{block}"
        );
    }
    for (name, text, _) in EXAMPLES {
        assert!(
            blocks.iter().any(|b| b == text),
            "tests/readme/{name}.rs is no longer a block of README.md"
        );
    }
}

/// Runs one example in a process of its own with `env`; its stdout.
fn run_example(name: &str, env: &[(&str, String)]) -> String {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.env(RUN, name)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    // Generous: two busy cores, a debug build.
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("README example {name} did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    assert!(
        status.success(),
        "README example {name} failed ({status}):\nstdout:\n{out}\nstderr:\n{err}"
    );
    out
}

/// What a server read on each connection, once the peer closed it, and how
/// many connections it accepted.
#[derive(Clone, Default)]
struct Received {
    ended: Arc<Mutex<Vec<Vec<u8>>>>,
    accepted: Arc<std::sync::atomic::AtomicUsize>,
}

/// A loopback server that runs `serve` on every connection (on a thread of
/// its own) and records what each connection sent.
fn server(serve: fn(&mut TcpStream, &[u8])) -> (SocketAddr, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Received::default();
    let log = received.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            log.accepted
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let log = log.clone();
            std::thread::spawn(move || {
                let mut reply = stream.try_clone().unwrap();
                let mut reader = BufReader::new(stream);
                let mut all = Vec::new();
                let mut line = Vec::new();
                loop {
                    line.clear();
                    match reader.read_until(b'\n', &mut line) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            all.extend_from_slice(&line);
                            serve(&mut reply, &line);
                        }
                    }
                }
                log.ended.lock().unwrap().push(all);
            });
        }
    });
    (addr, received)
}

/// Waits until at least `n` connections were accepted and every accepted
/// connection has ended (the example's process has exited by then, so the
/// kernel has closed whatever it left open).
fn ended(received: &Received, n: usize) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = received.ended.lock().unwrap().clone();
        let accepted = received.accepted.load(std::sync::atomic::Ordering::SeqCst);
        if accepted >= n && got.len() >= accepted {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {accepted} accepted connections ended (at least {n} expected)",
            got.len()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn memcached_like(out: &mut TcpStream, line: &[u8]) {
    let answer: &[u8] = match line {
        b"version\r\n" => b"VERSION 1.6.0\r\n",
        b"stats\r\n" => b"STAT pid 1\r\nEND\r\n",
        _ => b"ERROR\r\n",
    };
    let _ = out.write_all(answer);
}

fn quick_start_runs_against_a_memcached_speaking_server() {
    let (addr, received) = server(memcached_like);
    run_example("quick_start", &[("MEMCACHED", addr.to_string())]);
    // The connection said `version`, and its `stats` went out before its
    // FIN. The pool member may or may not have connected before
    // `disconnect_all` (the example does not wait for it); if it did, it
    // said `version` and nothing else (or nothing, if it was closed as its
    // attempt completed).
    let got = ended(&received, 1);
    let full = b"version\r\nstats\r\n".to_vec();
    assert_eq!(
        got.iter().filter(|g| **g == full).count(),
        1,
        "the connection's bytes: {got:?}"
    );
    assert!(
        got.len() <= 2
            && got
                .iter()
                .all(|g| *g == full || g == b"version\r\n" || g.is_empty()),
        "what the server read: {got:?}"
    );
}

fn sink(_: &mut TcpStream, _: &[u8]) {}

fn sender_example_delivers_every_number_in_order() {
    let (addr, received) = server(sink);
    run_example("sender", &[("SINK", addr.to_string())]);
    let got = ended(&received, 1).remove(0);
    assert_eq!(got.len(), 4_000_000);
    for (i, n) in got.chunks(4).enumerate() {
        assert_eq!(n, (i as u32).to_be_bytes(), "number {i}");
    }
}

fn redis_like(out: &mut TcpStream, line: &[u8]) {
    if line == b"PING\r\n" {
        let _ = out.write_all(b"+PONG\r\n");
    }
}

fn closure_example_gets_its_reply() {
    let (addr, received) = server(redis_like);
    let out = run_example("closure", &[("REDIS", addr.to_string())]);
    assert_eq!(out, "+PONG\r\n");
    assert_eq!(ended(&received, 1), [b"PING\r\n".to_vec()]);
}

fn fleet_example_follows_localhost_and_sends_a_key_to_its_member() {
    let (addr, received) = server(memcached_like);
    // `localhost` may resolve to ::1 too; nothing listens there, so that
    // member is never live and the key goes to 127.0.0.1.
    let out = run_example("fleet", &[("CACHE", format!("localhost:{}", addr.port()))]);
    assert_eq!(out, format!("user:42 -> {addr}\n"));
    let got = ended(&received, 1);
    assert_eq!(got, [b"version\r\nget user:42\r\n".to_vec()]);
}

fn reconnect_now_example_connects_without_waiting_out_its_backoff() {
    let out = run_example("reconnect_now", &[]);
    assert_eq!(out, "connected without waiting out the backoff\n");
}

fn give_up_example_closes_on_a_refused_connect() {
    let out = run_example("give_up", &[]);
    assert!(
        out.starts_with("connection closed for good: gave up on attempt 1: "),
        "{out}"
    );
}

fn lifetime_example_moves_members_to_a_late_server() {
    let out = run_example("lifetime", &[]);
    let n: usize = out
        .strip_suffix(" of 9 members on the late server\n")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    // Three once every member was replaced; at least one even on a machine
    // so busy that some were not yet.
    assert!((1..=4).contains(&n), "{out}");
}
