//! Scenarios 4 and 5, scale and outage cost. Hold servers (one per client
//! process, each on its own loopback address 127.0.0.x) accept and keep
//! connections; each client process opens its share of managed
//! connections, each with callbacks that only count.
//!
//! Per run: time until all are connected; RSS per connection (VmRSS after
//! one idle second minus VmRSS before, over N); server restart (SIGKILL,
//! then listen again at once): time until all are back, and for redial the
//! most attempts in flight (from a socket hook that runs after the
//! manager's cap admitted the attempt, to the connect or failure
//! callback). With an outage: the servers are killed and stay down; client
//! CPU over the outage from /proc (schedstat and stat), connect attempts
//! from the kernel's ActiveOpens (private network namespace) and from the
//! failure callbacks; then the servers return and the time until all are
//! back is measured.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::{ms, server, Ctx, Section};
use crate::clock::now_ns;
use crate::peers::Peer;
use crate::proc::Proc;
use crate::procfs;
use crate::report::{dec, int, max, median, Table};

const PEERS_10K: [Peer; 6] = [
    Peer::Redial,
    Peer::Tokio,
    Peer::Stubborn,
    Peer::Stubborn10,
    Peer::Connman,
    Peer::NodeNet,
];
const PEERS_100K: [Peer; 4] = [Peer::Redial, Peer::Tokio, Peer::Stubborn10, Peer::Connman];

#[derive(Clone, Copy)]
struct Cfg {
    n: u64,
    procs: u64,
    outage: Option<Duration>,
    settle: Duration,
}

#[derive(Clone, Copy, Default)]
struct Sample {
    all_ms: f64,
    rss_per_conn: f64,
    restart_ms: f64,
    inflight: f64,
    out_cpu_ms: f64,
    out_stat_ms: f64,
    out_syns: f64,
    out_fails: f64,
    out_back_ms: f64,
}

fn reconnects(p: Peer) -> bool {
    !matches!(p, Peer::Tokio | Peer::NodeNet)
}

fn start_servers(addrs: &[String]) -> Result<(Vec<Proc>, Vec<String>, u64)> {
    let mut procs = Vec::new();
    let mut bound = Vec::new();
    let mut last = 0;
    for a in addrs {
        let (p, port, t) = server("hold", &[format!("addrs={a}")])?;
        let ip = a.rsplit_once(':').map(|(ip, _)| ip).context("addr")?;
        bound.push(format!("{ip}:{port}"));
        procs.push(p);
        last = last.max(t);
    }
    Ok((procs, bound, last))
}

fn stats(c: &mut Proc) -> Result<Vec<f64>> {
    c.send("stats")?;
    Ok(c.wait_for("stats", Duration::from_secs(10))?
        .iter()
        .filter_map(|v| v.parse().ok())
        .collect())
}

/// Waits until every client printed `all` with at least `resets` resets
/// behind it; the latest such stamp.
fn wait_all(clients: &mut [Proc], resets: u64, limit: Duration) -> Result<u64> {
    let mut latest = 0;
    for c in clients.iter_mut() {
        loop {
            let f = c.wait_for("all", limit)?;
            let t: u64 = f.first().and_then(|v| v.parse().ok()).unwrap_or(0);
            let r: u64 = f.get(1).and_then(|v| v.parse().ok()).unwrap_or(0);
            if r >= resets {
                latest = latest.max(t);
                break;
            }
        }
    }
    Ok(latest)
}

/// The hold servers and the client processes of one run, and how many
/// server restarts the clients have seen so far.
struct Fleet {
    servers: Vec<Proc>,
    clients: Vec<Proc>,
    addrs: Vec<String>,
    /// Connections per client process.
    per: u64,
    rounds: u64,
    limit: Duration,
}

impl Fleet {
    /// A hold server per client process, each on its own address, and the
    /// clients, ready to connect.
    fn start(ctx: &Ctx, peer: Peer, cfg: Cfg) -> Result<Fleet> {
        let per = cfg.n / cfg.procs;
        let wanted: Vec<String> = (0..cfg.procs)
            .map(|i| format!("127.0.0.{}:0", 10 + i))
            .collect();
        let (servers, addrs, _) = start_servers(&wanted)?;
        let mut clients = Vec::new();
        for a in &addrs {
            let mut c = ctx.client(peer, "scale", &[format!("addrs={a}"), format!("n={per}")])?;
            c.wait_for("ready", Duration::from_secs(20))?;
            clients.push(c);
        }
        Ok(Fleet {
            servers,
            clients,
            addrs,
            per,
            rounds: 0,
            limit: Duration::from_secs(if ctx.quick { 30 } else { 120 }),
        })
    }

    fn send(&mut self, line: &str) -> Result<()> {
        for c in self.clients.iter_mut() {
            c.send(line)?;
        }
        Ok(())
    }

    fn sum(&self, f: fn(u32) -> u64) -> u64 {
        self.clients.iter().map(|c| f(c.pid)).sum()
    }

    /// Field `i` of every client's `stats` line.
    fn stats(&mut self, i: usize) -> Result<Vec<Option<f64>>> {
        let mut out = Vec::new();
        for c in self.clients.iter_mut() {
            out.push(stats(c)?.get(i).copied());
        }
        Ok(out)
    }

    /// Connect failures the clients have counted so far.
    fn failures(&mut self) -> Result<f64> {
        Ok(self.stats(2)?.iter().map(|v| v.unwrap_or(0.0)).sum())
    }

    fn kill_servers(&mut self) {
        for p in self.servers.iter_mut() {
            p.kill();
        }
    }

    /// Starts the servers again on the same addresses and waits until
    /// every connection is back; ms from the last listen to the last
    /// connect.
    fn relisten(&mut self, limit: Duration, what: &str) -> Result<f64> {
        let (srv, _, listen) = start_servers(&self.addrs)?;
        self.servers = srv;
        self.rounds += 1;
        let back =
            wait_all(&mut self.clients, self.rounds * self.per, limit).context(what.to_string())?;
        Ok(ms(back.saturating_sub(listen) as f64))
    }

    fn finish(mut self) {
        for c in self.clients.iter_mut() {
            c.kill();
        }
        for p in self.servers.iter_mut() {
            p.finish(Duration::from_secs(2));
        }
    }
}
fn one(ctx: &Ctx, peer: Peer, cfg: Cfg) -> Result<Sample> {
    let mut f = Fleet::start(ctx, peer, cfg)?;
    let mut s = Sample {
        restart_ms: f64::NAN,
        inflight: f64::NAN,
        out_back_ms: f64::NAN,
        ..Sample::default()
    };
    connect_all(&mut f, cfg, &mut s)?;
    if reconnects(peer) {
        restart(&mut f, peer, &mut s)?;
    }
    if let Some(outage) = cfg.outage {
        outage_cost(&mut f, peer, outage, &mut s)?;
    }
    f.finish();
    if s.all_ms < 0.0 {
        bail!("clock went backwards");
    }
    Ok(s)
}

/// Every connection up: how long it took, and the memory each one holds
/// once idle.
fn connect_all(f: &mut Fleet, cfg: Cfg, s: &mut Sample) -> Result<()> {
    let before = f.sum(procfs::rss_bytes);
    let t_go = now_ns();
    f.send("go")?;
    let all = wait_all(&mut f.clients, 0, f.limit).context("not all connected")?;
    s.all_ms = ms((all - t_go) as f64);
    std::thread::sleep(cfg.settle);
    let after = f.sum(procfs::rss_bytes);
    s.rss_per_conn = (after as f64 - before as f64) / (f.per * cfg.procs) as f64;
    Ok(())
}

/// The servers killed and started again at once: time until every
/// connection is back, and for redial the most attempts in flight.
fn restart(f: &mut Fleet, peer: Peer, s: &mut Sample) -> Result<()> {
    f.send("reset-max")?;
    f.kill_servers();
    s.restart_ms = f.relisten(f.limit, "not all back after the restart")?;
    if peer == Peer::Redial {
        s.inflight = f
            .stats(4)?
            .iter()
            .map(|v| v.unwrap_or(f64::NAN))
            .fold(0.0f64, f64::max);
    }
    Ok(())
}

/// The servers killed and kept down for `outage`: the clients' CPU and
/// connect attempts over it; then, for the peers that reconnect, the time
/// until all are back once the servers return.
fn outage_cost(f: &mut Fleet, peer: Peer, outage: Duration, s: &mut Sample) -> Result<()> {
    let fails0 = f.failures()?;
    let cpu0 = f.sum(procfs::cpu_ns);
    let st0 = f.sum(procfs::cpu_stat_ms);
    let ao0 = procfs::active_opens();
    f.kill_servers();
    std::thread::sleep(outage);
    let cpu1 = f.sum(procfs::cpu_ns);
    let st1 = f.sum(procfs::cpu_stat_ms);
    let ao1 = procfs::active_opens();
    let fails1 = f.failures()?;
    s.out_cpu_ms = (cpu1 - cpu0) as f64 / 1e6;
    s.out_stat_ms = (st1 - st0) as f64;
    s.out_syns = (ao1 - ao0) as f64;
    s.out_fails = fails1 - fails0;
    if reconnects(peer) {
        let limit = f.limit.max(Duration::from_secs(240));
        s.out_back_ms = f.relisten(limit, "not all back after the outage")?;
    }
    Ok(())
}

fn measure(ctx: &mut Ctx, peers: &[Peer], cfg: Cfg) -> BTreeMap<&'static str, Vec<Sample>> {
    let mut out: BTreeMap<&str, Vec<Sample>> = BTreeMap::new();
    for run in 0..ctx.runs {
        for &p in peers {
            eprintln!(
                "scale: run {} {} n={} procs={}",
                run + 1,
                p.id(),
                cfg.n,
                cfg.procs
            );
            match one(ctx, p, cfg) {
                Ok(s) => out.entry(p.id()).or_default().push(s),
                Err(e) => ctx.fail(format!(
                    "scale {} n={} run {}: {e:#}",
                    p.id(),
                    cfg.n,
                    run + 1
                )),
            }
        }
    }
    out
}

/// Per-peer samples of one configuration.
type Results = BTreeMap<&'static str, Vec<Sample>>;

/// The median of one field over the samples.
fn col(v: &[Sample], f: fn(&Sample) -> f64) -> f64 {
    median(&v.iter().map(f).collect::<Vec<_>>())
}

/// Each run's value of one field, as whole numbers.
fn each(v: &[Sample], f: fn(&Sample) -> f64) -> String {
    v.iter().map(|s| int(f(s))).collect::<Vec<_>>().join(" / ")
}

pub fn run(ctx: &mut Ctx) -> Result<Section> {
    let q = ctx.quick;
    // REDIAL_BENCH_OUTAGE_S lengthens the outage for a run by hand (the
    // tables always use 10 s).
    let outage_s = std::env::var("REDIAL_BENCH_OUTAGE_S")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if q { 1 } else { 10 });
    let outage = Duration::from_secs(outage_s);
    let settle = Duration::from_millis(if q { 500 } else { 1000 });
    let small = Cfg {
        n: if q { 500 } else { 10_000 },
        procs: 1,
        outage: Some(outage),
        settle,
    };
    let big = Cfg {
        n: if q { 600 } else { 100_000 },
        procs: if q { 6 } else { 8 },
        outage: None,
        settle,
    };
    let p10: Vec<Peer> = PEERS_10K
        .into_iter()
        .filter(|p| ctx.usable_slow(*p))
        .collect();
    let p100: Vec<Peer> = PEERS_100K
        .into_iter()
        .filter(|p| ctx.usable_slow(*p))
        .collect();
    let r10 = measure(ctx, &p10, small);
    let r100 = measure(ctx, &p100, big);
    let t = scale_table(&[(small, &p10, &r10), (big, &p100, &r100)]);
    let mut body = format!(
        "### 4. Scale (median of {} runs)\n\n{}\n",
        ctx.runs,
        t.render()
    );
    body.push_str(&format!("Each client process is a `current_thread` runtime (node: its event loop) and talks to its own hold server on 127.0.0.(10+i). RSS per connection = (VmRSS {} s after the last connect - VmRSS before the first) / N, summed over the processes. Restart = every server SIGKILLed (the kernel closes its connections) and started again on the same address at once; the time runs from the new server's listen to the last connect callback. In flight (redial only): from its `configure_socket` hook (runs after the manager's cap admits the attempt) to the connect or failure callback, maximum over the processes.\n\n", settle.as_secs_f64()));
    body.push_str(&format!(
        "### 5. Outage cost: {} connections, server down {} s (median of {} runs)\n\n{}\nThe servers are SIGKILLed (FIN on every connection) and stay down; CPU and attempts are read at the kill and at the end of the outage, so the CPU includes handling the {} losses. Plain tokio and node net never reconnect: their CPU is the closes only.\n\n",
        int(small.n as f64),
        outage.as_secs(),
        ctx.runs,
        outage_table(&p10, &r10).render(),
        int(small.n as f64),
    ));
    let targets = targets(small, big, &r10, &r100);
    Ok(Section { body, targets })
}

/// Table 4: connect, memory and restart, for each configuration's peers.
fn scale_table(configs: &[(Cfg, &Vec<Peer>, &Results)]) -> Table {
    let mut t = Table::new(&[
        "peer",
        ">connections x processes",
        ">time to all connected ms",
        ">client RSS per connection, bytes",
        ">server restart -> all connected ms (each run)",
        ">most attempts in flight",
    ]);
    for &(cfg, peers, res) in configs {
        for &p in peers.iter() {
            let size = format!("{} x {}", int((cfg.n / cfg.procs) as f64), cfg.procs);
            let Some(v) = res.get(p.id()) else {
                t.row(vec![p.label().into(), size, "failed".into()]);
                continue;
            };
            t.row(vec![
                p.label().into(),
                size,
                dec(col(v, |s| s.all_ms), 1),
                int(col(v, |s| s.rss_per_conn)),
                if reconnects(p) {
                    let each = each(v, |s| s.restart_ms);
                    format!("{} ({each})", int(col(v, |s| s.restart_ms)))
                } else {
                    "n/a (no reconnection)".into()
                },
                if p == Peer::Redial {
                    format!("{} (cap 64 per process)", int(col(v, |s| s.inflight)))
                } else if reconnects(p) {
                    "no cap".into()
                } else {
                    "n/a".into()
                },
            ]);
        }
    }
    t
}

/// Table 5: what an outage costs each peer, and its recovery.
fn outage_table(peers: &[Peer], res: &Results) -> Table {
    let mut t5 = Table::new(&[
        "peer",
        ">client CPU ms in the outage (schedstat / stat)",
        ">connect attempts (kernel SYNs / failure callbacks)",
        ">server back -> all connected ms (each run)",
    ]);
    for &p in peers {
        let Some(v) = res.get(p.id()) else {
            t5.row(vec![p.label().into(), "failed".into()]);
            continue;
        };
        t5.row(vec![
            p.label().into(),
            format!(
                "{} / {}",
                dec(col(v, |s| s.out_cpu_ms), 1),
                int(col(v, |s| s.out_stat_ms))
            ),
            format!(
                "{} / {}",
                int(col(v, |s| s.out_syns)),
                int(col(v, |s| s.out_fails))
            ),
            if reconnects(p) {
                let each = each(v, |s| s.out_back_ms);
                format!("{} ({each})", int(col(v, |s| s.out_back_ms)))
            } else {
                "n/a".into()
            },
        ]);
    }
    t5
}

fn targets(small: Cfg, big: Cfg, r10: &Results, r100: &Results) -> Vec<(String, String, bool)> {
    let red10 = r10.get("redial").cloned().unwrap_or_default();
    let red100 = r100.get("redial").cloned().unwrap_or_default();
    let rss10 = col(&red10, |s| s.rss_per_conn);
    let rss100 = col(&red100, |s| s.rss_per_conn);
    let back = col(&red10, |s| s.restart_ms);
    let infl = max(&red10
        .iter()
        .chain(red100.iter())
        .map(|s| s.inflight)
        .collect::<Vec<_>>());
    let cpu = col(&red10, |s| s.out_cpu_ms);
    let outage = small.outage.unwrap_or_default();
    vec![
        (
            format!(
                "client RSS <= 2 KiB per idle connection at {}",
                int(small.n as f64)
            ),
            format!("{} B", int(rss10)),
            rss10 <= 2048.0,
        ),
        (
            format!(
                "client RSS <= 2 KiB per idle connection across {}",
                int(big.n as f64)
            ),
            format!("{} B", int(rss100)),
            rss100 <= 2048.0,
        ),
        (
            format!(
                "{} connections all back <= 1 s after the server's restart",
                int(small.n as f64)
            ),
            format!("{} ms", int(back)),
            back <= 1000.0,
        ),
        (
            "never more attempts in flight than the cap (64)".into(),
            int(infl),
            infl <= 64.0,
        ),
        (
            format!(
                "outage cost for {} connections over {} s < 100 ms client CPU",
                int(small.n as f64),
                outage.as_secs()
            ),
            format!("{} ms", dec(cpu, 1)),
            cpu < 100.0,
        ),
    ]
}
