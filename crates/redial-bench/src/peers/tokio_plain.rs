//! Plain tokio `TcpStream` clients: the floor every library is compared
//! with. They have no reconnection of their own; recovery uses a minimal
//! hand-rolled loop (reconnect at once after a loss, every 10 ms after a
//! failed attempt), and the scale client never reconnects.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;

use super::{print_latencies, ready_then_go, runtime, stamp, wait_stdin_eof, Counters, Peer};
use crate::kv::Kv;
use crate::procfs;

pub fn run(peer: Peer, scenario: &str, kv: &Kv) -> Result<()> {
    let rt = runtime()?;
    match scenario {
        "throughput" => rt.block_on(throughput(
            kv.str("addr")?.parse()?,
            kv.num("n")?,
            peer.buf_capacity(),
        ))?,
        "pingpong" => rt.block_on(async {
            let mut s = TcpStream::connect(kv.str("addr")?).await?;
            s.set_nodelay(true)?;
            let mut lat = pingpong(&mut s, kv.num("n")?).await?;
            print_latencies(&mut lat);
            anyhow::Ok(())
        })?,
        "recovery" => rt.block_on(recovery(kv.str("addr")?.parse()?, kv.num("reps")?))?,
        "scale" => rt.block_on(scale(super::addrs(kv)?, kv.num("n")?))?,
        other => bail!("tokio: no scenario {other}"),
    }
    stamp("end");
    Ok(())
}

/// Prints the client's RSS before the burst, the end stamp, and its RSS
/// after one idle second (were buffers grown by the burst released?).
pub fn idle_report(before: u64) {
    stamp("finished");
    std::thread::sleep(Duration::from_secs(1));
    let me = std::process::id();
    println!("idle {before} {}", procfs::rss_bytes(me));
    wait_stdin_eof();
}

async fn throughput(addr: SocketAddr, n: u64, buffered: Option<usize>) -> Result<()> {
    let s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let (mut r, w) = s.into_split();
    let msg = [0x5au8; 64];
    let before = procfs::rss_bytes(std::process::id());
    stamp("start");
    if let Some(cap) = buffered {
        let mut w = BufWriter::with_capacity(cap, w);
        for _ in 0..n {
            w.write_all(&msg).await?;
        }
        w.flush().await?;
        ack(&mut r).await?;
        drop(w);
    } else {
        let mut w = w;
        for _ in 0..n {
            w.write_all(&msg).await?;
        }
        ack(&mut r).await?;
        drop(w);
    }
    idle_report(before);
    Ok(())
}

async fn ack<R: AsyncReadExt + Unpin>(r: &mut R) -> Result<()> {
    let mut b = [0u8; 1];
    r.read_exact(&mut b).await?;
    Ok(())
}

/// One 64-byte message out, wait for its 64-byte echo, `n` times; the
/// round-trip times in ns.
pub async fn pingpong<S>(s: &mut S, n: u64) -> Result<Vec<u64>>
where
    S: AsyncReadExt + AsyncWriteExt + Unpin,
{
    let msg = [0x5au8; 64];
    let mut buf = [0u8; 64];
    let mut lat = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let t = Instant::now();
        s.write_all(&msg).await?;
        s.read_exact(&mut buf).await?;
        lat.push(t.elapsed().as_nanos() as u64);
    }
    Ok(lat)
}

async fn connect_retrying(addr: SocketAddr, stamps: bool) -> TcpStream {
    loop {
        match TcpStream::connect(addr).await {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return s;
            }
            Err(_) => {
                if stamps {
                    stamp("fail");
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn recovery(addr: SocketAddr, reps: u64) -> Result<()> {
    let mut b = [0u8; 256];
    for _ in 0..reps {
        let mut s = connect_retrying(addr, false).await;
        stamp("up");
        s.read_exact(&mut b[..1]).await?;
        // Wait for the loss: a read returns 0 (FIN) or an error (RST).
        loop {
            match s.read(&mut b).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        stamp("reset");
        drop(s);
        let mut s = connect_retrying(addr, true).await;
        stamp("connected");
        s.read_exact(&mut b[..1]).await?;
        stamp("data");
        drop(s);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

async fn scale(addrs: Vec<SocketAddr>, n: u64) -> Result<()> {
    let c = ready_then_go(n).await;
    for i in 0..n as usize {
        let addr = addrs[i % addrs.len()];
        let c: Arc<Counters> = c.clone();
        tokio::spawn(async move {
            let mut s = loop {
                match TcpStream::connect(addr).await {
                    Ok(s) => break s,
                    Err(_) => {
                        c.failed();
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            };
            let _ = s.set_nodelay(true);
            c.connected();
            hold_until_closed(&mut s).await;
            c.lost();
        });
    }
    std::future::pending::<()>().await;
    Ok(())
}

/// Reads (and drops) whatever arrives until the peer closes or the read
/// fails: a held connection that notices its loss.
pub async fn hold_until_closed(s: &mut (impl tokio::io::AsyncRead + Unpin)) {
    let mut b = [0u8; 64];
    while let Ok(k) = s.read(&mut b).await {
        if k == 0 {
            break;
        }
    }
}
