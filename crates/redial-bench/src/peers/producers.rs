//! Clients of the many-producer scenario: a 2-worker runtime, `tasks`
//! producer tasks sending `m` messages each to one connection, 64 bytes
//! each except an occasional 1 MiB one. Every send call is timed (two
//! clock reads per call, the same for every peer) into a histogram.
//!
//! Peers: the usual tokio pattern (an `mpsc` channel to one writer task
//! holding a `BufWriter`), `Arc<tokio::sync::Mutex<BufWriter>>`, redial's
//! `Connection::write` from every task, and one redial `Sender` per task.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Mutex, Notify};
use tokio::task::JoinSet;

use super::{runtime_2_workers, stamp, wait_stdin_eof, Peer};
use crate::hist::Hist;
use crate::kv::Kv;

const MSG: [u8; 64] = [0x5a; 64];
/// The occasional big message.
pub const BIG: usize = 1024 * 1024;

/// Whether message `i` of producer `task` is a big one: every `every`-th,
/// staggered across producers so that they do not all send one at once.
pub fn is_big(task: u64, i: u64, tasks: u64, every: u64) -> bool {
    every > 0 && (i + task * every / tasks.max(1)) % every == every - 1
}

/// Bytes the producers send in all (what the sink waits for).
pub fn total_bytes(tasks: u64, m: u64, every: u64) -> (u64, u64) {
    let mut bytes = 0;
    let mut big = 0;
    for t in 0..tasks {
        let b = (0..m).filter(|&i| is_big(t, i, tasks, every)).count() as u64;
        big += b;
        bytes += b * BIG as u64 + (m - b) * MSG.len() as u64;
    }
    (bytes, big)
}

struct Plan {
    tasks: u64,
    m: u64,
    every: u64,
    big: Arc<Vec<u8>>,
}

impl Plan {
    fn msg(&self, task: u64, i: u64) -> &[u8] {
        if is_big(task, i, self.tasks, self.every) {
            &self.big
        } else {
            &MSG
        }
    }
}

pub fn run(peer: Peer, kv: &Kv) -> Result<()> {
    let addr: SocketAddr = kv.str("addr")?.parse()?;
    let plan = Arc::new(Plan {
        tasks: kv.num("tasks")?,
        m: kv.num("m")?,
        every: kv.num("every")?,
        big: Arc::new(vec![0x5b; BIG]),
    });
    let rt = runtime_2_workers()?;
    let hist = rt.block_on(async move {
        match peer {
            Peer::TokioMpsc => mpsc_writer(addr, plan).await,
            Peer::TokioMutex => mutex_writer(addr, plan).await,
            Peer::Redial | Peer::RedialSender => {
                redial(addr, plan, peer == Peer::RedialSender).await
            }
            other => bail!("{}: not in the many-producer scenario", other.id()),
        }
    })?;
    hist.print();
    stamp("end");
    wait_stdin_eof();
    Ok(())
}

/// Waits for every producer; their histograms merged.
async fn join(mut set: JoinSet<Result<Hist>>) -> Result<Hist> {
    let mut all = Hist::default();
    while let Some(h) = set.join_next().await {
        all.merge(&h??);
    }
    Ok(all)
}

async fn connect(addr: SocketAddr) -> Result<TcpStream> {
    let s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    Ok(s)
}

async fn mpsc_writer(addr: SocketAddr, plan: Arc<Plan>) -> Result<Hist> {
    let (mut r, w) = connect(addr).await?.into_split();
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(1024);
    let writer = tokio::spawn(async move {
        let mut w = BufWriter::with_capacity(64 * 1024, w);
        let mut got = Vec::with_capacity(64);
        while rx.recv_many(&mut got, 64).await > 0 {
            for m in got.drain(..) {
                w.write_all(&m).await?;
            }
            if rx.is_empty() {
                w.flush().await?;
            }
        }
        w.flush().await?;
        anyhow::Ok(())
    });
    stamp("start");
    let mut set = JoinSet::new();
    for t in 0..plan.tasks {
        let (tx, plan) = (tx.clone(), plan.clone());
        set.spawn(async move {
            let mut h = Hist::default();
            for i in 0..plan.m {
                let t0 = Instant::now();
                // The message is owned by the channel: the copy is part of
                // the send, as in any app that uses this pattern.
                tx.send(plan.msg(t, i).to_vec()).await?;
                h.record(t0.elapsed().as_nanos() as u64);
            }
            Ok(h)
        });
    }
    drop(tx);
    let h = join(set).await?;
    writer.await??;
    r.read_exact(&mut [0u8; 1]).await?;
    Ok(h)
}

async fn mutex_writer(addr: SocketAddr, plan: Arc<Plan>) -> Result<Hist> {
    let (mut r, w) = connect(addr).await?.into_split();
    let w = Arc::new(Mutex::new(BufWriter::with_capacity(64 * 1024, w)));
    stamp("start");
    let mut set = JoinSet::new();
    for t in 0..plan.tasks {
        let (w, plan) = (w.clone(), plan.clone());
        set.spawn(async move {
            let mut h = Hist::default();
            for i in 0..plan.m {
                let t0 = Instant::now();
                w.lock().await.write_all(plan.msg(t, i)).await?;
                h.record(t0.elapsed().as_nanos() as u64);
            }
            Ok(h)
        });
    }
    let h = join(set).await?;
    w.lock().await.flush().await?;
    r.read_exact(&mut [0u8; 1]).await?;
    Ok(h)
}

async fn redial(addr: SocketAddr, plan: Arc<Plan>, sender: bool) -> Result<Hist> {
    let cm = redial::Manager::new();
    let ack = Arc::new(Notify::new());
    let a = ack.clone();
    let conn = cm.connect(addr, redial::handler().on_data(move |_, _| a.notify_one()))?;
    conn.wait_connected().await?;
    stamp("start");
    let mut set = JoinSet::new();
    for t in 0..plan.tasks {
        let (conn, plan) = (conn.clone(), plan.clone());
        set.spawn(async move {
            let mut h = Hist::default();
            if sender {
                let mut tx = conn.sender();
                for i in 0..plan.m {
                    let t0 = Instant::now();
                    tx.write(plan.msg(t, i)).await?;
                    h.record(t0.elapsed().as_nanos() as u64);
                }
                tx.flush().await?;
            } else {
                for i in 0..plan.m {
                    let t0 = Instant::now();
                    conn.write(plan.msg(t, i)).await?;
                    h.record(t0.elapsed().as_nanos() as u64);
                }
            }
            Ok(h)
        });
    }
    let h = join(set).await?;
    ack.notified().await;
    Ok(h)
}
