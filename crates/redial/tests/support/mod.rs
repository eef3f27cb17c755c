//! What the integration tests share: [`TestServer`], the one loopback test
//! server (`server.rs`); [`Recorder`], the one typed recorder of handler
//! callbacks, and [`EventLog`] for `Manager::events()` (`record.rs`); real
//! memcached and redis-server processes (`servers.rs`); a name served by
//! dnsmasq in a network namespace (`dns.rs`); and the helpers
//! below. Waits poll for a condition with generous deadlines: the suite
//! must pass with both cores busy.

#![allow(dead_code, unused_imports, clippy::unwrap_used, clippy::expect_used)]

pub mod dns;
pub mod record;
pub mod server;
pub mod servers;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use redial::{Backoff, Connection, Jitter, Manager, Options, Outage, State};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

pub use record::{Cb, EventLog, Recorder};
pub use server::{Accepted, ConnLog, TestServer};

/// A short, jitter-free schedule so tests run in milliseconds.
pub fn fast_options(initial_ms: u64, max_ms: u64) -> Options {
    Options::new().backoff(
        Backoff::new(
            Duration::from_millis(initial_ms),
            2.0,
            Duration::from_millis(max_ms),
        )
        .unwrap()
        .with_jitter(Jitter::None),
    )
}

/// Polls `cond` every 5 ms until it holds; panics with `what` after
/// `timeout`. Returns how long it took.
pub async fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if cond() {
            return start.elapsed();
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Polls `fut` once. `Pending` means it reached a wait (for room in a
/// queue, for a member, for the connection) instead of finishing at once:
/// a test can then act while the operation is known to be waiting, with
/// no sleep guessing when it got there. Await `fut` afterwards as usual.
pub async fn poll_once<F: Future + Unpin>(fut: &mut F) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *fut).poll(cx))).await
}

/// A connection that greets every connection with `hello<generation>;`
/// and buffers up to `max_bytes` while down ([`Outage::Buffer`]), taken
/// into an outage: once connected, `server` stops listening and drops it.
/// Returns once the connection has seen the loss.
pub async fn in_buffered_outage(
    cm: &Manager,
    server: &mut TestServer,
    max_bytes: usize,
) -> Connection {
    let h = redial::handler()
        .on_connect(|s| {
            let _ = s.send(format!("hello{};", s.generation()));
        })
        .on_data(|_, _| {});
    let opts = fast_options(20, 50).outage(Outage::Buffer { max_bytes });
    let conn = cm.connect_with(server.addr, h, opts).unwrap();
    let first = server.next(5).await;
    conn.wait_connected().await.unwrap();
    server.stop_listening().await;
    drop(first.stream);
    wait_until("the loss seen", Duration::from_secs(30), || {
        conn.state() != State::Connected
    })
    .await;
    conn
}

/// Closes with RST (SO_LINGER 0).
pub fn rst(stream: TcpStream) {
    socket2::SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(stream);
}

/// Reads until EOF, returning everything.
pub async fn read_to_end(mut stream: TcpStream, secs: u64) -> Vec<u8> {
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(secs), stream.read_to_end(&mut out))
        .await
        .expect("peer did not finish in time")
        .expect("read failed");
    out
}

/// An address that never answers: a listener whose accept queue is full
/// drops SYNs, so a connect to it hangs. Keep the returned values alive.
pub async fn unanswering() -> (SocketAddr, socket2::Socket, Vec<TcpStream>) {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    sock.listen(0).unwrap();
    let addr = sock.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(Ok(s)) =
            tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(addr)).await
        {
            fillers.push(s);
        }
    }
    (addr, sock, fillers)
}
