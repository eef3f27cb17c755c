//! stubborn-io 0.3 clients: `StubbornTcpStream` with its defaults, or with
//! a 10 ms x2 backoff (close to connman's schedule, so the mechanism's own
//! cost shows instead of the 4 s default wait).
//!
//! stubborn-io notices a loss only inside a read or write, so every client
//! keeps a read pending. Its callbacks take no arguments; they stamp.
//! `exit_if_first_connect_fails(false)` everywhere except throughput and
//! ping-pong (by default a failed first connect ends the stream for good).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use stubborn_io::strategies::ExpBackoffStrategy;
use stubborn_io::{ReconnectOptions, StubbornTcpStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::tokio_plain::{hold_until_closed, idle_report, pingpong};
use super::{print_latencies, ready_then_go, runtime, stamp, Peer};
use crate::kv::Kv;
use crate::procfs;

fn options(peer: Peer) -> ReconnectOptions {
    let o = ReconnectOptions::new();
    if peer == Peer::Stubborn10 {
        o.with_retries_generator(|| {
            ExpBackoffStrategy::new(Duration::from_millis(10), 2.0, 0.05)
                .with_max(Duration::from_secs(128))
        })
    } else {
        o
    }
}

pub fn run(peer: Peer, scenario: &str, kv: &Kv) -> Result<()> {
    let rt = runtime()?;
    match scenario {
        "throughput" => rt.block_on(throughput(peer, kv.str("addr")?.parse()?, kv.num("n")?))?,
        "pingpong" => rt.block_on(async {
            let addr: SocketAddr = kv.str("addr")?.parse()?;
            let mut s = StubbornTcpStream::connect_with_options(addr, options(peer)).await?;
            s.set_nodelay(true)?;
            let mut lat = pingpong(&mut s, kv.num("n")?).await?;
            print_latencies(&mut lat);
            anyhow::Ok(())
        })?,
        "recovery" => rt.block_on(recovery(peer, kv.str("addr")?.parse()?, kv.num("reps")?))?,
        "scale" => rt.block_on(scale(peer, super::addrs(kv)?, kv.num("n")?))?,
        other => bail!("stubborn-io: no scenario {other}"),
    }
    stamp("end");
    Ok(())
}

async fn throughput(peer: Peer, addr: SocketAddr, n: u64) -> Result<()> {
    let s = StubbornTcpStream::connect_with_options(addr, options(peer)).await?;
    // Set through Deref on the current stream (stubborn-io would not
    // carry it over a reconnect; none happens here).
    s.set_nodelay(true)?;
    let msg = [0x5au8; 64];
    let before = procfs::rss_bytes(std::process::id());
    stamp("start");
    let mut s = s;
    for _ in 0..n {
        s.write_all(&msg).await?;
    }
    let mut b = [0u8; 1];
    s.read_exact(&mut b).await?;
    idle_report(before);
    Ok(())
}

async fn recovery(peer: Peer, addr: SocketAddr, reps: u64) -> Result<()> {
    let armed = Arc::new(AtomicBool::new(false));
    let mut b = [0u8; 1];
    for _ in 0..reps {
        armed.store(false, Ordering::SeqCst);
        let (a1, a2, a3) = (armed.clone(), armed.clone(), armed.clone());
        let opts = options(peer)
            .with_exit_if_first_connect_fails(false)
            .with_on_connect_callback(move || {
                if a1.load(Ordering::SeqCst) {
                    stamp("connected")
                }
            })
            .with_on_disconnect_callback(move || {
                if a2.load(Ordering::SeqCst) {
                    stamp("reset")
                }
            })
            .with_on_connect_fail_callback(move || {
                if a3.load(Ordering::SeqCst) {
                    stamp("fail")
                }
            });
        let mut s = StubbornTcpStream::connect_with_options(addr, opts).await?;
        stamp("up");
        s.read_exact(&mut b).await?;
        armed.store(true, Ordering::SeqCst);
        // This read sees the loss, waits out the reconnect, and returns the
        // new connection's hello byte.
        s.read_exact(&mut b).await?;
        stamp("data");
        armed.store(false, Ordering::SeqCst);
        drop(s);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

async fn scale(peer: Peer, addrs: Vec<SocketAddr>, n: u64) -> Result<()> {
    let c = ready_then_go(n).await;
    for i in 0..n as usize {
        let addr = addrs[i % addrs.len()];
        let (c1, c2, c3) = (c.clone(), c.clone(), c.clone());
        let opts = options(peer)
            .with_exit_if_first_connect_fails(false)
            .with_on_connect_callback(move || c1.connected())
            .with_on_disconnect_callback(move || c2.lost())
            .with_on_connect_fail_callback(move || c3.failed());
        tokio::spawn(async move {
            let Ok(mut s) = StubbornTcpStream::connect_with_options(addr, opts).await else {
                return;
            };
            let _ = s.set_nodelay(true);
            hold_until_closed(&mut s).await;
        });
    }
    std::future::pending::<()>().await;
    Ok(())
}
