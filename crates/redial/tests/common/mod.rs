//! Helpers shared by the fault-scenario tests (`faults`, `faults_accounting`,
//! `faults_pool`): real loopback servers (echo, counting sink, streaming
//! source) that log every TCP connection separately, a recorder for handler
//! callbacks, a collector for `Manager::events()`, and polling waits with
//! generous deadlines (the machine running these is a noisy 2-core VM).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redial::{
    Backoff, Event, EventKind, FnHandler, Manager, Options, Partial, ResetReason, Resume,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Short backoff so that recoveries take milliseconds, not seconds.
pub fn fast_options() -> Options {
    Options::new().backoff(
        Backoff::new(Duration::from_millis(20), 2.0, Duration::from_millis(500))
            .expect("valid backoff"),
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

/// What a test server saw on one TCP connection.
#[derive(Debug, Default, Clone)]
pub struct ConnLog {
    /// Every byte read, in order.
    pub data: Vec<u8>,
    /// The connection ended (EOF or error).
    pub ended: bool,
    /// The read error that ended it, if any.
    pub error: Option<std::io::ErrorKind>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Echo,
    Sink,
    Stream,
}

/// A loopback server that logs each accepted connection separately, in
/// accept order. Aborted when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    conns: Arc<Mutex<Vec<ConnLog>>>,
    accepted: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    /// Writes back everything it reads.
    pub async fn echo() -> TestServer {
        Self::start(Mode::Echo).await
    }

    /// Reads and keeps everything, writes nothing.
    pub async fn sink() -> TestServer {
        Self::start(Mode::Sink).await
    }

    /// Writes a known byte pattern (`i % 251` for the i-th byte of the
    /// connection) in 1 KiB pieces every 2 ms, and reads what comes.
    pub async fn stream() -> TestServer {
        Self::start(Mode::Stream).await
    }

    async fn start(mode: Mode) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let conns: Arc<Mutex<Vec<ConnLog>>> = Arc::default();
        let accepted = Arc::new(AtomicU64::new(0));
        let (c, a) = (conns.clone(), accepted.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let idx = {
                    let mut g = c.lock().unwrap();
                    g.push(ConnLog::default());
                    g.len() - 1
                };
                a.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(stream, mode, c.clone(), idx));
            }
        });
        TestServer {
            addr,
            conns,
            accepted,
            task,
        }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Connections not yet ended.
    pub fn open(&self) -> usize {
        self.conns
            .lock()
            .unwrap()
            .iter()
            .filter(|c| !c.ended)
            .count()
    }

    /// A snapshot of every connection's log.
    pub fn conns(&self) -> Vec<ConnLog> {
        self.conns.lock().unwrap().clone()
    }

    /// Bytes read over all connections.
    pub fn total_received(&self) -> usize {
        self.conns
            .lock()
            .unwrap()
            .iter()
            .map(|c| c.data.len())
            .sum()
    }
}

async fn serve(mut stream: TcpStream, mode: Mode, conns: Arc<Mutex<Vec<ConnLog>>>, idx: usize) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut out_pos: u64 = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(2));
    let end = |err: Option<std::io::ErrorKind>| {
        let mut g = conns.lock().unwrap();
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
                    conns.lock().unwrap()[idx].data.extend_from_slice(&buf[..n]);
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

/// One handler callback, as recorded by [`Recorder`].
#[derive(Debug, Clone)]
pub enum Cb {
    Connect {
        generation: u64,
    },
    Reset {
        reason: ResetReason,
        generation: u64,
        uptime: Duration,
        written: u64,
        partial: Option<Partial>,
        chunks: Vec<Vec<u8>>,
        at: Instant,
    },
    ConnectFailed {
        attempt: u32,
        kind: std::io::ErrorKind,
    },
    Close {
        reason: redial::CloseReason,
        chunks: Vec<Vec<u8>>,
        partial: Option<Partial>,
    },
}

/// Records every callback of a closure handler, and every byte `on_data`
/// got (concatenated, across connections).
#[derive(Clone, Default)]
pub struct Recorder {
    pub log: Arc<Mutex<Vec<Cb>>>,
    pub data: Arc<Mutex<Vec<u8>>>,
    /// What `on_data` got, per connection generation.
    pub per_gen: Arc<Mutex<BTreeMap<u64, Vec<u8>>>>,
    pub reads: Arc<AtomicU64>,
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder::default()
    }

    /// A handler that records everything and always reconnects.
    pub fn handler(&self) -> FnHandler {
        let (l1, l2, l3, l4) = (
            self.log.clone(),
            self.log.clone(),
            self.log.clone(),
            self.log.clone(),
        );
        let data = self.data.clone();
        let reads = self.reads.clone();
        let per_gen = self.per_gen.clone();
        redial::handler()
            .on_connect(move |sock| {
                l1.lock().unwrap().push(Cb::Connect {
                    generation: sock.generation(),
                })
            })
            .on_data(move |sock, d| {
                reads.fetch_add(1, Ordering::SeqCst);
                per_gen
                    .lock()
                    .unwrap()
                    .entry(sock.generation())
                    .or_default()
                    .extend_from_slice(d);
                data.lock().unwrap().extend_from_slice(d);
            })
            .on_reset(move |r| {
                l2.lock().unwrap().push(Cb::Reset {
                    reason: r.reason().clone(),
                    generation: r.generation(),
                    uptime: r.uptime(),
                    written: r.written(),
                    partial: r.unsent().partial().cloned(),
                    chunks: r.unsent().chunks().map(<[u8]>::to_vec).collect(),
                    at: Instant::now(),
                });
                Resume::Reconnect
            })
            .on_connect_failed(move |e, attempt| {
                l3.lock().unwrap().push(Cb::ConnectFailed {
                    attempt,
                    kind: e.kind(),
                })
            })
            .on_close(move |c| {
                l4.lock().unwrap().push(Cb::Close {
                    reason: c.reason().clone(),
                    chunks: c.unsent().chunks().map(<[u8]>::to_vec).collect(),
                    partial: c.unsent().partial().cloned(),
                })
            })
    }

    pub fn callbacks(&self) -> Vec<Cb> {
        self.log.lock().unwrap().clone()
    }

    pub fn resets(&self) -> Vec<Cb> {
        self.callbacks()
            .into_iter()
            .filter(|c| matches!(c, Cb::Reset { .. }))
            .collect()
    }

    pub fn reset_count(&self) -> usize {
        self.resets().len()
    }

    pub fn connects(&self) -> usize {
        self.callbacks()
            .iter()
            .filter(|c| matches!(c, Cb::Connect { .. }))
            .count()
    }

    pub fn connect_failures(&self) -> Vec<(u32, std::io::ErrorKind)> {
        self.callbacks()
            .iter()
            .filter_map(|c| match c {
                Cb::ConnectFailed { attempt, kind } => Some((*attempt, *kind)),
                _ => None,
            })
            .collect()
    }

    pub fn received(&self) -> Vec<u8> {
        self.data.lock().unwrap().clone()
    }

    pub fn received_in(&self, generation: u64) -> Vec<u8> {
        self.per_gen
            .lock()
            .unwrap()
            .get(&generation)
            .cloned()
            .unwrap_or_default()
    }

    pub fn received_len(&self) -> usize {
        self.data.lock().unwrap().len()
    }

    /// Whether `needle` occurs in what `on_data` got.
    pub fn saw(&self, needle: &[u8]) -> bool {
        self.data
            .lock()
            .unwrap()
            .windows(needle.len())
            .any(|w| w == needle)
    }
}

/// Collects `Manager::events()` in the background. Subscribe before
/// connecting, or the first events are missed.
#[derive(Clone)]
pub struct EventLog {
    events: Arc<Mutex<Vec<Event>>>,
}

impl EventLog {
    pub fn start(cm: &Manager) -> EventLog {
        let events: Arc<Mutex<Vec<Event>>> = Arc::default();
        let mut rx = cm.events();
        let e = events.clone();
        tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                e.lock().unwrap().push(ev);
            }
        });
        EventLog { events }
    }

    pub fn all(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }

    pub fn kinds(&self) -> Vec<EventKind> {
        self.all().into_iter().map(|e| e.kind).collect()
    }

    /// The `Reset` events' reasons, in order.
    pub fn reset_reasons(&self) -> Vec<ResetReason> {
        self.kinds()
            .into_iter()
            .filter_map(|k| match k {
                EventKind::Reset { reason, .. } => Some(reason),
                _ => None,
            })
            .collect()
    }

    /// The generations of the `Connected` events, in order.
    pub fn connected_generations(&self) -> Vec<u64> {
        self.kinds()
            .into_iter()
            .filter_map(|k| match k {
                EventKind::Connected { generation, .. } => Some(generation),
                _ => None,
            })
            .collect()
    }

    pub fn count(&self, pred: impl Fn(&EventKind) -> bool) -> usize {
        self.kinds().iter().filter(|k| pred(k)).count()
    }
}
