//! Test servers and recorders shared by the core's integration tests:
//! a loopback server the test can make close (FIN or RST), stop listening
//! and listen again on the same port, and a recorder of handler calls.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redial::{Backoff, Connection, Jitter, Manager, Options, Outage, State};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;

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

/// A connection that greets every connection with `hello<generation>;`
/// and buffers up to `max_bytes` while down ([`Outage::Buffer`]), taken
/// into an outage: once connected, `server` stops listening and drops it.
/// Returns once the connection has seen the loss.
pub async fn in_buffered_outage(cm: &Manager, server: &mut Server, max_bytes: usize) -> Connection {
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
    while conn.state() == State::Connected {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    conn
}

/// What the server saw on one accepted connection.
pub struct Accepted {
    pub stream: TcpStream,
    pub at: Instant,
}

/// A loopback listener whose accepted connections are handed to the test.
pub struct Server {
    pub addr: SocketAddr,
    pub accepted: Arc<AtomicUsize>,
    rx: mpsc::UnboundedReceiver<Accepted>,
    task: Option<tokio::task::JoinHandle<()>>,
    tx: mpsc::UnboundedSender<Accepted>,
}

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let s = TcpSocket::new_v4()?;
    s.set_reuseaddr(true)?;
    s.bind(addr)?;
    s.listen(1024)
}

impl Server {
    pub async fn start() -> Server {
        let l = listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = l.local_addr().unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let accepted = Arc::new(AtomicUsize::new(0));
        let mut s = Server {
            addr,
            accepted,
            rx,
            task: None,
            tx,
        };
        s.run(l);
        s
    }

    fn run(&mut self, l: TcpListener) {
        let tx = self.tx.clone();
        let n = self.accepted.clone();
        self.task = Some(tokio::spawn(async move {
            while let Ok((stream, _)) = l.accept().await {
                n.fetch_add(1, Ordering::SeqCst);
                let _ = tx.send(Accepted {
                    stream,
                    at: Instant::now(),
                });
            }
        }));
    }

    /// Next accepted connection, within `secs`.
    pub async fn next(&mut self, secs: u64) -> Accepted {
        tokio::time::timeout(Duration::from_secs(secs), self.rx.recv())
            .await
            .expect("no connection accepted in time")
            .expect("server task ended")
    }

    /// A connection accepted within `d`, if any.
    pub async fn try_next(&mut self, d: Duration) -> Option<Accepted> {
        tokio::time::timeout(d, self.rx.recv()).await.ok().flatten()
    }

    /// Stops listening: connects are refused until `relisten`.
    pub async fn stop_listening(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }

    /// Listens again on the same port.
    pub async fn relisten(&mut self) {
        let mut tries = 0;
        let l = loop {
            match listen(self.addr) {
                Ok(l) => break l,
                Err(e) if tries < 50 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("relisten on {}: {e}", self.addr),
            }
        };
        self.run(l);
    }
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

/// A log of handler calls, in order.
#[derive(Clone, Default)]
pub struct Calls(pub Arc<Mutex<Vec<String>>>);

impl Calls {
    pub fn push(&self, s: impl Into<String>) {
        self.0.lock().unwrap().push(s.into());
    }
    pub fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
    pub fn count(&self, prefix: &str) -> usize {
        self.all().iter().filter(|c| c.starts_with(prefix)).count()
    }
    /// Waits until `count(prefix) >= n`.
    pub async fn wait(&self, prefix: &str, n: usize, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while self.count(prefix) < n {
            assert!(
                Instant::now() < deadline,
                "waited for {n} x {prefix:?}, calls: {:?}",
                self.all()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// A handler that records every call in `calls`.
pub fn recording(calls: &Calls) -> redial::FnHandler {
    let (a, b, c, d, e) = (
        calls.clone(),
        calls.clone(),
        calls.clone(),
        calls.clone(),
        calls.clone(),
    );
    redial::handler()
        .on_connect(move |s| a.push(format!("connect {}", s.generation())))
        .on_data(move |_, data| b.push(format!("data {}", String::from_utf8_lossy(data))))
        .on_reset(move |r| {
            c.push(format!("reset {:?}", r.reason()));
            redial::Resume::Reconnect
        })
        .on_connect_failed(move |err, attempt| d.push(format!("failed {attempt} {err}")))
        .on_close(move |cl| e.push(format!("close {:?}", cl.reason())))
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
