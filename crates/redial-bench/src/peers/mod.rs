//! The clients under test ("peers"), one child process per run, and what
//! they have in common: the list of peers with their configurations, the
//! stamp lines they print, and the control of the scale clients.
//!
//! Every Rust client of the one-connection scenarios runs on a tokio
//! `current_thread` runtime (one event loop thread, like node), so client
//! and server each get one core; the many-producer and many-connection
//! clients (`producers.rs`, `fanout.rs`) run on a 2-worker runtime.

pub mod fanout;
pub mod node;
pub mod producers;
pub mod redial_peer;
pub mod stubborn;
pub mod tokio_plain;

use std::io::BufRead;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{bail, Result};
use tokio::sync::Notify;

use crate::clock::now_ns;
use crate::kv::Kv;

/// A client under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// Plain tokio `TcpStream`, one `write_all` per message.
    Tokio,
    /// tokio `TcpStream` behind a `BufWriter` of 8 KiB (tokio's default).
    TokioBuf8,
    /// The same behind a 64 KiB `BufWriter`.
    TokioBuf64,
    /// The same behind a 256 KiB `BufWriter`.
    TokioBuf256,
    /// Many producers: an `mpsc` channel to one writer task that holds a
    /// 64 KiB `BufWriter` (the usual tokio pattern).
    TokioMpsc,
    /// Many producers: `Arc<tokio::sync::Mutex<BufWriter>>` (64 KiB).
    TokioMutex,
    /// stubborn-io 0.3 with `ReconnectOptions::new()`.
    Stubborn,
    /// stubborn-io with a 10 ms x2 backoff.
    Stubborn10,
    /// node, connman 1.0.0.
    Connman,
    /// node, plain `net.Socket`.
    NodeNet,
    /// node, plain `net.Socket`, messages copied into 64 KiB buffers, one
    /// `write` per buffer, waiting for `drain` when it asks to: how a
    /// careful node programmer batches.
    NodeBatched,
    /// redial with its defaults.
    Redial,
    /// redial with its defaults, sending through one `Sender` (throughput
    /// only).
    RedialSender,
    /// redial with its defaults, connection held past `stable_after`
    /// before the close (recovery only).
    RedialStable,
}

impl Peer {
    pub const ALL: [Peer; 14] = [
        Peer::Redial,
        Peer::RedialSender,
        Peer::RedialStable,
        Peer::Tokio,
        Peer::TokioBuf8,
        Peer::TokioBuf64,
        Peer::TokioBuf256,
        Peer::TokioMpsc,
        Peer::TokioMutex,
        Peer::Stubborn,
        Peer::Stubborn10,
        Peer::Connman,
        Peer::NodeNet,
        Peer::NodeBatched,
    ];

    pub fn id(self) -> &'static str {
        match self {
            Peer::Tokio => "tokio",
            Peer::TokioBuf8 => "tokio-buf-8k",
            Peer::TokioBuf64 => "tokio-buf-64k",
            Peer::TokioBuf256 => "tokio-buf-256k",
            Peer::TokioMpsc => "tokio-mpsc",
            Peer::TokioMutex => "tokio-mutex",
            Peer::Stubborn => "stubborn",
            Peer::Stubborn10 => "stubborn-10ms",
            Peer::Connman => "connman",
            Peer::NodeNet => "node-net",
            Peer::NodeBatched => "node-batched",
            Peer::Redial => "redial",
            Peer::RedialSender => "redial-sender",
            Peer::RedialStable => "redial-stable",
        }
    }

    pub fn from_id(s: &str) -> Result<Peer> {
        match Peer::ALL.iter().find(|p| p.id() == s) {
            Some(p) => Ok(*p),
            None => bail!("unknown peer {s}"),
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Peer::Tokio => "tokio TcpStream (plain)",
            Peer::TokioBuf8 => "tokio + BufWriter 8 KiB",
            Peer::TokioBuf64 => "tokio + BufWriter 64 KiB",
            Peer::TokioBuf256 => "tokio + BufWriter 256 KiB",
            Peer::TokioMpsc => "tokio mpsc -> writer task + BufWriter 64 KiB",
            Peer::TokioMutex => "tokio `Arc<Mutex<BufWriter 64 KiB>>`",
            Peer::Stubborn => "stubborn-io 0.3 (defaults)",
            Peer::Stubborn10 => "stubborn-io 0.3 (10 ms x2)",
            Peer::Connman => "node connman 1.0.0",
            Peer::NodeNet => "node net (plain)",
            Peer::NodeBatched => "node net, 64 KiB batches + `drain`",
            Peer::Redial => "**redial (defaults)**",
            Peer::RedialSender => "**redial (defaults), one `Sender`**",
            Peer::RedialStable => "**redial (defaults), conn. up > stable_after**",
        }
    }

    /// The reconnect schedule, shown beside the recovery figures.
    pub fn schedule(self) -> &'static str {
        match self {
            Peer::Tokio
            | Peer::TokioBuf8
            | Peer::TokioBuf64
            | Peer::TokioBuf256
            | Peer::TokioMpsc
            | Peer::TokioMutex
            | Peer::NodeNet
            | Peer::NodeBatched => {
                "none (hand-rolled: at once after a loss, every 10 ms after a failure)"
            }
            Peer::Stubborn => "4 s x2, ±5 %, cap 30 min",
            Peer::Stubborn10 => "10 ms x2, ±5 %, cap 128 s",
            Peer::Connman => "100 ms x2 after a loss (20 ms if never connected), no jitter, cap ~205 s",
            Peer::Redial => {
                "100 ms x2, ±20 %, cap 30 s; a loss is retried at once, the second of two losses in a row within stable_after (5 s) waits for the schedule"
            }
            Peer::RedialStable => "same; a loss after >= 5 s up is retried at once",
            Peer::RedialSender => "same as redial",
        }
    }

    pub fn is_node(self) -> bool {
        matches!(self, Peer::Connman | Peer::NodeNet | Peer::NodeBatched)
    }

    /// The `BufWriter` capacity of a tokio + BufWriter peer.
    pub fn buf_capacity(self) -> Option<usize> {
        match self {
            Peer::TokioBuf8 => Some(8 * 1024),
            Peer::TokioBuf64 | Peer::TokioMpsc | Peer::TokioMutex => Some(64 * 1024),
            Peer::TokioBuf256 => Some(256 * 1024),
            _ => None,
        }
    }
}

/// Prints one stamp line: `word <now ns>`.
pub fn stamp(word: &str) {
    println!("{word} {}", now_ns());
}

/// A single-threaded runtime, as every one-connection client uses.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// The many-producer and many-connection clients' runtime: 2 workers.
pub fn runtime_2_workers() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// Prints the latency percentiles of one ping-pong run (ns).
pub fn print_latencies(lat: &mut [u64]) {
    lat.sort_unstable();
    let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    println!(
        "lat {} {} {} {}",
        p(0.5),
        p(0.99),
        p(0.999),
        lat[lat.len() - 1]
    );
}

/// Blocks until stdin closes: the parent's cue to exit.
pub fn wait_stdin_eof() {
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        if line.is_err() {
            break;
        }
    }
}

/// Counters of a scale client, updated from the peer's callbacks.
pub struct Counters {
    pub n: i64,
    pub connects: AtomicU64,
    pub resets: AtomicU64,
    pub fails: AtomicU64,
    pub live: AtomicI64,
    pub inflight: AtomicI64,
    pub inflight_max: AtomicI64,
}

impl Counters {
    pub fn new(n: u64) -> Arc<Counters> {
        Arc::new(Counters {
            n: n as i64,
            connects: AtomicU64::new(0),
            resets: AtomicU64::new(0),
            fails: AtomicU64::new(0),
            live: AtomicI64::new(0),
            inflight: AtomicI64::new(0),
            inflight_max: AtomicI64::new(0),
        })
    }

    /// A connect callback ran: prints `all <t> <resets>` when it was the
    /// one that made every connection live.
    pub fn connected(&self) {
        self.connects.fetch_add(1, Ordering::Relaxed);
        if self.live.fetch_add(1, Ordering::AcqRel) + 1 == self.n {
            println!("all {} {}", now_ns(), self.resets.load(Ordering::Relaxed));
        }
    }

    pub fn lost(&self) {
        self.resets.fetch_add(1, Ordering::Relaxed);
        self.live.fetch_sub(1, Ordering::AcqRel);
    }

    pub fn failed(&self) {
        self.fails.fetch_add(1, Ordering::Relaxed);
    }

    /// A connect attempt entered the kernel.
    pub fn attempt_started(&self) {
        let now = self.inflight.fetch_add(1, Ordering::AcqRel) + 1;
        self.inflight_max.fetch_max(now, Ordering::AcqRel);
    }

    pub fn attempt_ended(&self) {
        self.inflight.fetch_sub(1, Ordering::AcqRel);
    }

    fn print(&self) {
        println!(
            "stats {} {} {} {} {}",
            self.connects.load(Ordering::Relaxed),
            self.resets.load(Ordering::Relaxed),
            self.fails.load(Ordering::Relaxed),
            self.live.load(Ordering::Relaxed),
            self.inflight_max.load(Ordering::Relaxed),
        );
    }
}

/// The start of every scale client: its counters for `n` connections,
/// the control thread on stdin, `ready` printed, and back once the harness
/// says `go` (so that every client process starts connecting together).
pub async fn ready_then_go(n: u64) -> Arc<Counters> {
    let c = Counters::new(n);
    let go = control(c.clone());
    println!("ready");
    go.notified().await;
    c
}

/// Reads the scale commands from stdin on a thread of its own: `go`
/// (start connecting), `stats`, `reset-max` (in-flight maximum back to 0);
/// exits the process when stdin closes.
fn control(c: Arc<Counters>) -> Arc<Notify> {
    let go = Arc::new(Notify::new());
    let go2 = go.clone();
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            let Ok(line) = line else { break };
            match line.trim() {
                "go" => go2.notify_one(),
                "stats" => c.print(),
                "reset-max" => c.inflight_max.store(0, Ordering::Relaxed),
                _ => {}
            }
        }
        std::process::exit(0);
    });
    go
}

/// The scale client's addresses: connection `i` goes to `addrs[i % len]`.
pub fn addrs(kv: &Kv) -> Result<Vec<std::net::SocketAddr>> {
    kv.list("addrs")?.iter().map(|a| Ok(a.parse()?)).collect()
}

/// Runs the client role: `client <peer> <scenario> k=v...`.
pub fn run(peer: &str, scenario: &str, kv: &Kv) -> Result<()> {
    let peer = Peer::from_id(peer)?;
    match (peer, scenario) {
        (_, "producers") => return producers::run(peer, kv),
        (_, "fanout") => return fanout::run(peer, kv),
        _ => {}
    }
    match peer {
        Peer::TokioMpsc | Peer::TokioMutex => bail!("{}: many-producer scenario only", peer.id()),
        Peer::Tokio | Peer::TokioBuf8 | Peer::TokioBuf64 | Peer::TokioBuf256 => {
            tokio_plain::run(peer, scenario, kv)
        }
        Peer::Stubborn | Peer::Stubborn10 => stubborn::run(peer, scenario, kv),
        Peer::Redial | Peer::RedialStable | Peer::RedialSender => {
            redial_peer::run(peer, scenario, kv)
        }
        Peer::Connman | Peer::NodeNet | Peer::NodeBatched => bail!("node peers run under node"),
    }
}
