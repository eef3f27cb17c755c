//! The one loopback test server. It can hand each accepted connection to
//! the test ([`TestServer::start`]), or serve it itself — echo, sink, or a
//! source of a known byte pattern — logging each connection separately
//! ([`TestServer::echo`], [`TestServer::sink`], [`TestServer::stream`]).
//! Any of them can stop listening and listen again on the same port, with
//! its connections kept ([`TestServer::stop_listening`]) or dropped
//! ([`TestServer::down`]).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// What the server saw on one TCP connection it served itself.
#[derive(Debug, Default, Clone)]
pub struct ConnLog {
    /// Every byte read, in order.
    pub data: Vec<u8>,
    /// The connection ended (EOF or error).
    pub ended: bool,
    /// The read error that ended it, if any.
    pub error: Option<std::io::ErrorKind>,
}

/// One connection handed to the test ([`TestServer::start`]).
pub struct Accepted {
    pub stream: TcpStream,
    pub at: Instant,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Accepted connections go to the test ([`TestServer::next`]).
    Hand,
    Echo,
    Sink,
    Stream,
}

/// What the listener task and the connections it serves share with the
/// test.
#[derive(Default)]
struct Seen {
    conns: Mutex<Vec<ConnLog>>,
    accepted: AtomicU64,
    received: AtomicU64,
    /// The tasks serving connections, aborted by [`TestServer::down`].
    served: Mutex<Vec<JoinHandle<()>>>,
}

/// A loopback listener; see the module doc. Dropping it stops listening
/// and drops the connections it serves.
pub struct TestServer {
    pub addr: SocketAddr,
    mode: Mode,
    seen: Arc<Seen>,
    task: Option<JoinHandle<()>>,
    tx: mpsc::UnboundedSender<Accepted>,
    rx: mpsc::UnboundedReceiver<Accepted>,
}

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let s = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    s.set_reuseaddr(true)?;
    s.bind(addr)?;
    s.listen(1024)
}

impl TestServer {
    /// Hands every accepted connection to the test ([`TestServer::next`]).
    pub async fn start() -> TestServer {
        Self::bind_with(Mode::Hand, "127.0.0.1:0".parse().unwrap())
    }

    /// Writes back everything it reads.
    pub async fn echo() -> TestServer {
        Self::bind_with(Mode::Echo, "127.0.0.1:0".parse().unwrap())
    }

    /// Reads and keeps everything, writes nothing.
    pub async fn sink() -> TestServer {
        Self::bind_with(Mode::Sink, "127.0.0.1:0".parse().unwrap())
    }

    /// A sink on a free port of `ip` (several servers on one name).
    pub async fn sink_on(ip: &str) -> TestServer {
        Self::sink_at(format!("{ip}:0").parse().expect("an IP address")).await
    }

    /// A sink on `addr`.
    pub async fn sink_at(addr: SocketAddr) -> TestServer {
        Self::bind_with(Mode::Sink, addr)
    }

    /// Writes a known byte pattern (`i % 251` for the i-th byte of the
    /// connection) in 1 KiB pieces every 2 ms, and reads what comes.
    pub async fn stream() -> TestServer {
        Self::bind_with(Mode::Stream, "127.0.0.1:0".parse().unwrap())
    }

    fn bind_with(mode: Mode, addr: SocketAddr) -> TestServer {
        let l = listen(addr).expect("bind");
        let (tx, rx) = mpsc::unbounded_channel();
        let mut s = TestServer {
            addr: l.local_addr().expect("local addr"),
            mode,
            seen: Arc::default(),
            task: None,
            tx,
            rx,
        };
        s.run(l);
        s
    }

    fn run(&mut self, l: TcpListener) {
        let (mode, seen, tx) = (self.mode, self.seen.clone(), self.tx.clone());
        self.task = Some(tokio::spawn(async move {
            while let Ok((stream, _)) = l.accept().await {
                seen.accepted.fetch_add(1, Ordering::SeqCst);
                if mode == Mode::Hand {
                    let at = Instant::now();
                    let _ = tx.send(Accepted { stream, at });
                    continue;
                }
                let idx = {
                    let mut g = seen.conns.lock().unwrap();
                    g.push(ConnLog::default());
                    g.len() - 1
                };
                let task = tokio::spawn(serve(stream, mode, seen.clone(), idx));
                seen.served.lock().unwrap().push(task);
            }
        }));
    }

    /// The next connection handed over, within `secs`.
    pub async fn next(&mut self, secs: u64) -> Accepted {
        tokio::time::timeout(Duration::from_secs(secs), self.rx.recv())
            .await
            .expect("no connection accepted in time")
            .expect("server task ended")
    }

    /// A connection handed over within `d`, if any.
    pub async fn try_next(&mut self, d: Duration) -> Option<Accepted> {
        tokio::time::timeout(d, self.rx.recv()).await.ok().flatten()
    }

    /// Stops listening: connects are refused until [`relisten`]; the
    /// connections already accepted stay.
    ///
    /// [`relisten`]: TestServer::relisten
    pub async fn stop_listening(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }

    /// Stops listening and drops every connection it serves, as a server
    /// that went down: clients see their connections end and their
    /// reconnects refused until [`up`](TestServer::up).
    ///
    /// Returns once the listener is closed: an aborted task drops it only
    /// at its next poll, and until then the kernel still completes
    /// handshakes into its backlog, so a client reconnecting at once
    /// would see a connect succeed and then a reset instead of a refusal.
    pub async fn down(&mut self) {
        self.stop_listening().await;
        self.drop_connections();
    }

    /// Aborts every served connection (each is closed at its task's next
    /// poll); the listener, if any, is left alone.
    fn drop_connections(&mut self) {
        for c in self.seen.served.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    /// Listens again on the same address (retrying while the old listener
    /// is not gone yet: an aborted task drops it at its next poll).
    pub async fn relisten(&mut self) {
        let t0 = Instant::now();
        let l = loop {
            match listen(self.addr) {
                Ok(l) => break l,
                Err(_) if t0.elapsed() < Duration::from_secs(10) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(e) => panic!("cannot listen again on {}: {e}", self.addr),
            }
        };
        self.run(l);
    }

    /// Back up after [`down`](TestServer::down).
    pub async fn up(&mut self) {
        self.relisten().await;
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.seen.accepted.load(Ordering::SeqCst)
    }

    /// Bytes read over all connections it served.
    pub fn received(&self) -> u64 {
        self.seen.received.load(Ordering::SeqCst)
    }

    /// Bytes read over all connections it served, as a `usize`.
    pub fn total_received(&self) -> usize {
        self.received() as usize
    }

    /// Served connections not yet ended.
    pub fn open(&self) -> usize {
        let conns = self.seen.conns.lock().unwrap();
        conns.iter().filter(|c| !c.ended).count()
    }

    /// A snapshot of every served connection's log, in accept order.
    pub fn conns(&self) -> Vec<ConnLog> {
        self.seen.conns.lock().unwrap().clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        self.drop_connections();
    }
}

async fn serve(mut stream: TcpStream, mode: Mode, seen: Arc<Seen>, idx: usize) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut out_pos: u64 = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(2));
    let end = |err: Option<std::io::ErrorKind>| {
        let mut g = seen.conns.lock().unwrap();
        g[idx].ended = true;
        g[idx].error = err;
    };
    loop {
        tokio::select! {
            r = stream.read(&mut buf) => match r {
                Ok(0) => {
                    end(None);
                    return;
                }
                Ok(n) => {
                    seen.conns.lock().unwrap()[idx].data.extend_from_slice(&buf[..n]);
                    seen.received.fetch_add(n as u64, Ordering::SeqCst);
                    if mode == Mode::Echo && stream.write_all(&buf[..n]).await.is_err() {
                        // The read side will report how it ended.
                    }
                }
                Err(e) => {
                    end(Some(e.kind()));
                    return;
                }
            },
            _ = tick.tick(), if mode == Mode::Stream => {
                let piece: Vec<u8> = (out_pos..out_pos + 1024).map(|i| (i % 251) as u8).collect();
                if stream.write_all(&piece).await.is_ok() {
                    out_pos += 1024;
                }
            }
        }
    }
}
