//! What the soak runs on: an echo server per pool with a fault proxy in
//! front of it, the pools of managed connections through the proxies, and
//! the steady traffic of numbered frames through the pools.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redial::{Backoff, Connection, Manager, Options, Pool};
use redial_chaos::Proxy;
use tokio::task::JoinHandle;

use crate::acct;
use crate::args::Args;
use crate::echo::{EchoServer, Tally};

/// The echo servers, their shared tally, and a fault proxy in front of
/// each.
pub struct Backends {
    pub tally: Arc<Tally>,
    pub servers: Vec<EchoServer>,
    pub proxies: Vec<Proxy>,
}

impl Backends {
    /// One echo server and one proxy per pool; the error names which one
    /// did not start.
    pub async fn start(args: &Args) -> Result<Backends, String> {
        let tally = Arc::new(Tally::new(args.connections));
        let mut servers = Vec::new();
        let mut proxies = Vec::new();
        for p in 0..args.pools {
            let server = EchoServer::start(tally.clone())
                .await
                .map_err(|e| format!("echo server {p} starts: {e}"))?;
            let proxy = Proxy::builder()
                .seed(args.seed.wrapping_add(p as u64))
                .connect_timeout(Duration::from_secs(3))
                .start("127.0.0.1:0", server.addr)
                .await
                .map_err(|e| format!("proxy {p} starts: {e}"))?;
            servers.push(server);
            proxies.push(proxy);
        }
        Ok(Backends {
            tally,
            servers,
            proxies,
        })
    }

    pub async fn shutdown(&self) {
        for p in &self.proxies {
            p.shutdown().await;
        }
        for s in &self.servers {
            s.stop();
        }
    }
}

/// The managed side: the manager, a pool per proxy, every connection and
/// its account (same index).
pub struct Fleet {
    pub cm: Manager,
    pub pools: Vec<Pool>,
    pub conns: Vec<Connection>,
    pub accts: Arc<Vec<acct::Shared>>,
    pub per_pool: usize,
}

impl Fleet {
    /// Creates the pools and adds every connection; the error names what
    /// could not be created.
    pub fn connect(args: &Args, proxies: &[Proxy]) -> Result<Fleet, String> {
        let per_pool = args.per_pool();
        let cm = Manager::new();
        let mut pools = Vec::new();
        let mut conns: Vec<Connection> = Vec::with_capacity(per_pool * args.pools);
        let mut accts: Vec<acct::Shared> = Vec::with_capacity(per_pool * args.pools);
        for (p, proxy) in proxies.iter().enumerate() {
            let pool = cm
                .create_pool(&format!("soak-{p}"))
                .map_err(|e| format!("pool {p}: {e}"))?;
            for _ in 0..per_pool {
                let i = accts.len();
                let a = acct::new(i as u32);
                let c = pool
                    .add_connection_with(
                        proxy.local_addr(),
                        acct::handler(a.clone()),
                        options(args.seed ^ i as u64),
                    )
                    .map_err(|e| format!("connection {i}: {e}"))?;
                conns.push(c);
                accts.push(a);
            }
            pools.push(pool);
        }
        Ok(Fleet {
            cm,
            pools,
            conns,
            accts: Arc::new(accts),
            per_pool,
        })
    }

    /// Whether every member of every pool is connected.
    pub fn all_up(&self) -> bool {
        self.pools.iter().all(|p| p.live() == self.per_pool)
    }
}

fn options(seed: u64) -> Options {
    // Fast schedule (20 ms × 2 up to 1 s, ±20 %) so recoveries take
    // seconds; a connection up for 2 s counts as stable.
    Options::new()
        .backoff(
            Backoff::new(Duration::from_millis(20), 2.0, Duration::from_secs(1))
                .unwrap_or_default(),
        )
        .stable_after(Duration::from_secs(2))
        .connect_timeout(Duration::from_secs(3))
        .close_grace(Duration::from_secs(2))
        .seed(seed)
}

/// The senders of the steady traffic, one task per pool.
pub struct Traffic {
    stop: Arc<AtomicBool>,
    senders: Vec<JoinHandle<()>>,
}

impl Traffic {
    /// Starts `rate` frames a second through every pool.
    pub fn start(fleet: &Fleet, rate: u64) -> Traffic {
        let index: Arc<HashMap<u64, usize>> = Arc::new(
            fleet
                .conns
                .iter()
                .enumerate()
                .map(|(i, c)| (c.id(), i))
                .collect(),
        );
        let stop = Arc::new(AtomicBool::new(false));
        let senders = fleet
            .pools
            .iter()
            .map(|pool| {
                tokio::spawn(traffic(
                    pool.clone(),
                    index.clone(),
                    fleet.accts.clone(),
                    rate,
                    stop.clone(),
                ))
            })
            .collect();
        Traffic { stop, senders }
    }

    /// Stops every sender and waits until each has.
    pub async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for s in self.senders {
            let _ = s.await;
        }
    }
}

/// Sends `rate` frames a second (in 10 ms ticks) through `pool`'s live
/// members, round robin, until `stop`.
async fn traffic(
    pool: Pool,
    index: Arc<HashMap<u64, usize>>,
    accts: Arc<Vec<acct::Shared>>,
    rate: u64,
    stop: Arc<AtomicBool>,
) {
    let per_tick = rate.div_ceil(100).max(1);
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        for _ in 0..per_tick {
            let Some(conn) = pool.pick() else { break };
            if let Some(&i) = index.get(&conn.id()) {
                acct::send_next(&accts[i], &conn);
            }
        }
    }
}
