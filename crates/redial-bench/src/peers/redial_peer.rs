//! redial clients, always with the library's defaults (`Manager::new()`,
//! `Options::default()`): the scale client only adds a socket hook that
//! counts attempts in flight.
//!
//! Producers run as tasks on the same `current_thread` runtime as
//! redial's connection tasks: `Connection::write(..).await` per message,
//! or `Sender::write(..).await` per message and one `flush` at the end
//! (peer `redial-sender`). Both wait, every 64 KiB queued, until the
//! connection has taken what is queued, and while the 4 MiB queue is full.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use redial::{EventKind, Handler, Manager, Options, Reset, Resume, Socket};
use tokio::sync::{oneshot, Notify};

use super::tokio_plain::idle_report;
use super::{print_latencies, ready_then_go, runtime, stamp, Counters, Peer};
use crate::clock::instant_ns;
use crate::kv::Kv;
use crate::procfs;

const MSG: [u8; 64] = [0x5a; 64];

pub fn run(peer: Peer, scenario: &str, kv: &Kv) -> Result<()> {
    let rt = runtime()?;
    let sender = peer == Peer::RedialSender;
    match scenario {
        "throughput" => rt.block_on(throughput(kv.str("addr")?.parse()?, kv.num("n")?, sender))?,
        "pingpong" => rt.block_on(pingpong(kv.str("addr")?.parse()?, kv.num("n")?))?,
        "recovery" => rt.block_on(recovery(kv.str("addr")?.parse()?, kv.num("reps")?))?,
        "scale" => rt.block_on(scale(super::addrs(kv)?, kv.num("n")?))?,
        other => bail!("redial: no scenario {other}"),
    }
    stamp("end");
    Ok(())
}

async fn throughput(addr: SocketAddr, n: u64, sender: bool) -> Result<()> {
    let cm = Manager::new();
    let ack = Arc::new(Notify::new());
    let a = ack.clone();
    let conn = cm.connect(addr, redial::handler().on_data(move |_, _| a.notify_one()))?;
    conn.wait_connected().await?;
    let before = procfs::rss_bytes(std::process::id());
    stamp("start");
    let failed = |i: u64, e: redial::SendError| {
        anyhow::anyhow!(
            "write {i} of {n}: {e}; state {:?}; {:?}",
            conn.state(),
            conn.stats()
        )
    };
    if sender {
        let mut tx = conn.sender();
        for i in 0..n {
            tx.write(&MSG).await.map_err(|e| failed(i, e))?;
        }
        tx.flush().await.map_err(|e| failed(n, e))?;
    } else {
        for i in 0..n {
            conn.write(&MSG).await.map_err(|e| failed(i, e))?;
        }
    }
    ack.notified().await;
    // The idle second runs off the runtime thread, so redial's task keeps
    // running (and may release its buffers) meanwhile.
    tokio::task::spawn_blocking(move || idle_report(before)).await?;
    Ok(())
}

/// Sends the next ping from the data callback, the way a redial app would.
struct Ping {
    n: u64,
    sent: u64,
    got: usize,
    t0: Instant,
    lat: Vec<u64>,
    done: Option<oneshot::Sender<Vec<u64>>>,
}

impl Handler for Ping {
    fn on_connect(&mut self, sock: &Socket) {
        self.t0 = Instant::now();
        self.sent = 1;
        let _ = sock.send(MSG);
    }

    fn on_data(&mut self, sock: &Socket, data: &[u8]) {
        self.got += data.len();
        while self.got >= MSG.len() {
            self.got -= MSG.len();
            self.lat.push(self.t0.elapsed().as_nanos() as u64);
            if self.sent < self.n {
                self.sent += 1;
                self.t0 = Instant::now();
                let _ = sock.send(MSG);
            } else if let Some(tx) = self.done.take() {
                let _ = tx.send(std::mem::take(&mut self.lat));
            }
        }
    }
}

async fn pingpong(addr: SocketAddr, n: u64) -> Result<()> {
    let cm = Manager::new();
    let (tx, rx) = oneshot::channel();
    let h = Ping {
        n,
        sent: 0,
        got: 0,
        t0: Instant::now(),
        lat: Vec::with_capacity(n as usize),
        done: Some(tx),
    };
    let conn = cm.connect(addr, h)?;
    let mut lat = rx.await?;
    print_latencies(&mut lat);
    conn.disconnect().await;
    Ok(())
}

/// Stamps every callback of one managed connection.
struct Stamper {
    data_seen: Option<oneshot::Sender<()>>,
}

impl Handler for Stamper {
    fn on_connect(&mut self, sock: &Socket) {
        stamp(if sock.generation() > 1 {
            "connected"
        } else {
            "up"
        });
    }
    fn on_data(&mut self, sock: &Socket, _: &[u8]) {
        if sock.generation() > 1 {
            stamp("data");
            if let Some(tx) = self.data_seen.take() {
                let _ = tx.send(());
            }
        }
    }
    fn on_reset(&mut self, _: &Reset) -> Resume {
        stamp("reset");
        Resume::Reconnect
    }
    fn on_connect_failed(&mut self, _: &std::io::Error, _: u32) -> redial::Retry {
        stamp("fail");
        redial::Retry::OnSchedule
    }
}

/// One fresh managed connection per repetition, so every repetition
/// starts from the beginning of the schedule (a connection lost within
/// `stable_after` twice in a row waits for its schedule, by design).
async fn recovery(addr: SocketAddr, reps: u64) -> Result<()> {
    let cm = Manager::new();
    let mut events = cm.events();
    tokio::spawn(async move {
        while let Some(e) = events.recv().await {
            match e.kind {
                EventKind::Connecting { .. } => println!("attempt {}", instant_ns(e.at)),
                EventKind::ConnectFailed {
                    retry_in: Some(d), ..
                } => println!("retry {} {}", instant_ns(e.at), d.as_nanos()),
                _ => {}
            }
        }
    });
    for _ in 0..reps {
        let (tx, rx) = oneshot::channel();
        let conn = cm.connect(
            addr,
            Stamper {
                data_seen: Some(tx),
            },
        )?;
        rx.await?;
        conn.disconnect().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Counts; nothing else (an idle managed connection).
struct Count(Arc<Counters>);

impl Handler for Count {
    fn on_connect(&mut self, _: &Socket) {
        self.0.attempt_ended();
        self.0.connected();
    }
    fn on_data(&mut self, _: &Socket, _: &[u8]) {}
    fn on_reset(&mut self, _: &Reset) -> Resume {
        self.0.lost();
        Resume::Reconnect
    }
    fn on_connect_failed(&mut self, _: &std::io::Error, _: u32) -> redial::Retry {
        self.0.attempt_ended();
        self.0.failed();
        redial::Retry::OnSchedule
    }
}

async fn scale(addrs: Vec<SocketAddr>, n: u64) -> Result<()> {
    let c = ready_then_go(n).await;
    // REDIAL_BENCH_MAX_CONNECTING overrides the manager's cap, for
    // comparing caps by hand (the tables always use the default).
    let cm = match std::env::var("REDIAL_BENCH_MAX_CONNECTING") {
        Ok(v) => Manager::builder().max_connecting(v.parse()?).build(),
        Err(_) => Manager::new(),
    };
    if std::env::var_os("REDIAL_BENCH_TRACE_FAILS").is_some() {
        let mut events = cm.events();
        tokio::spawn(async move {
            while let Some(e) = events.recv().await {
                if let EventKind::ConnectFailed { retry_in, .. } = e.kind {
                    eprintln!(
                        "fail-ev {} {} {:?}",
                        e.connection,
                        instant_ns(e.at),
                        retry_in
                    );
                }
            }
        });
    }
    let hook_c = c.clone();
    // The hook runs right before connect(), after the manager's cap let the
    // attempt through: start of an attempt in flight.
    let opts = Options::new().configure_socket(move |_| {
        hook_c.attempt_started();
        Ok(())
    });
    // REDIAL_BENCH_NO_DEAD_PEER_OPTIONS=1 turns off the keepalive and
    // TCP_USER_TIMEOUT defaults (five socket options a connect), to show
    // their share of a first connect by hand (the tables use the defaults).
    let opts = if std::env::var_os("REDIAL_BENCH_NO_DEAD_PEER_OPTIONS").is_some() {
        opts.keepalive(None).user_timeout(None)
    } else {
        opts
    };
    let mut conns = Vec::with_capacity(n as usize);
    for i in 0..n as usize {
        let addr = addrs[i % addrs.len()];
        conns.push(cm.connect_with(addr, Count(c.clone()), opts.clone())?);
    }
    std::future::pending::<()>().await;
    drop(conns);
    Ok(())
}
