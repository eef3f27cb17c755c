//! Clients of the many-connection scenario: a 2-worker runtime, `conns`
//! connections to one sink, one producer task per connection sending `m`
//! messages of 64 bytes. Every connection is up before `start`; the sink
//! stamps `done` when every byte of every connection arrived.
//!
//! Peers: tokio with one `BufWriter` per connection (8 or 64 KiB), redial
//! `Connection::write` per message, and one redial `Sender` per connection.

use std::net::SocketAddr;

use anyhow::{bail, Result};
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use super::{runtime_2_workers, stamp, wait_stdin_eof, Peer};
use crate::kv::Kv;

const MSG: [u8; 64] = [0x5a; 64];

pub fn run(peer: Peer, kv: &Kv) -> Result<()> {
    let addr: SocketAddr = kv.str("addr")?.parse()?;
    let conns = kv.num("conns")?;
    let m = kv.num("m")?;
    let rt = runtime_2_workers()?;
    rt.block_on(async move {
        match (peer, peer.buf_capacity()) {
            (Peer::TokioBuf8 | Peer::TokioBuf64, Some(cap)) => tokio_buf(addr, conns, m, cap).await,
            (Peer::Redial | Peer::RedialSender, _) => {
                redial(addr, conns, m, peer == Peer::RedialSender).await
            }
            _ => bail!("{}: not in the many-connection scenario", peer.id()),
        }
    })
}

/// Every producer is done: stamps `sent`, then keeps the connections (and
/// whatever redial still has queued) until the parent closes stdin.
async fn sent_then_hold() -> Result<()> {
    stamp("sent");
    tokio::task::spawn_blocking(wait_stdin_eof).await?;
    Ok(())
}

async fn join(mut set: JoinSet<Result<()>>) -> Result<()> {
    while let Some(r) = set.join_next().await {
        r??;
    }
    Ok(())
}

async fn tokio_buf(addr: SocketAddr, conns: u64, m: u64, cap: usize) -> Result<()> {
    let mut streams = Vec::with_capacity(conns as usize);
    for _ in 0..conns {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        streams.push(s);
    }
    stamp("start");
    let mut set = JoinSet::new();
    for s in streams {
        set.spawn(async move {
            let mut w = BufWriter::with_capacity(cap, s);
            for _ in 0..m {
                w.write_all(&MSG).await?;
            }
            w.flush().await?;
            Ok(())
        });
    }
    join(set).await?;
    sent_then_hold().await
}

async fn redial(addr: SocketAddr, conns: u64, m: u64, sender: bool) -> Result<()> {
    let cm = redial::Manager::new();
    let mut all = Vec::with_capacity(conns as usize);
    for _ in 0..conns {
        all.push(cm.connect(addr, redial::handler())?);
    }
    for c in &all {
        c.wait_connected().await?;
    }
    stamp("start");
    let mut set = JoinSet::new();
    for conn in &all {
        let conn = conn.clone();
        set.spawn(async move {
            if sender {
                let mut tx = conn.sender();
                for _ in 0..m {
                    tx.write(MSG).await?;
                }
                tx.flush().await?;
            } else {
                for _ in 0..m {
                    conn.write(MSG).await?;
                }
            }
            Ok(())
        });
    }
    join(set).await?;
    sent_then_hold().await?;
    drop(all);
    Ok(())
}
