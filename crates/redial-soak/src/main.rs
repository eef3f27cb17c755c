//! A bounded soak run of redial through the fault proxy.
//!
//! 1,000 managed connections (default) in 4 pools, each pool behind its own
//! fault proxy in front of its own echo server, all on loopback. Steady
//! traffic of numbered frames goes through the pools while a seeded
//! schedule breaks one proxy every 1-2 s (reset, close, refuse, blackhole,
//! latency, cut), holds the fault, heals it, and waits until every
//! connection of that pool is back. At the end it stops, drains, calls
//! `disconnect_all` and checks, printing each figure:
//!
//! - every connection recovered after each heal;
//! - nothing lost silently: every accepted frame echoed, handed back or
//!   lost in flight exactly once (see `acct`), and the echo servers never
//!   saw more than redial says it wrote, nor a corrupt frame;
//! - open file descriptors (/proc/self/fd) back to the count before the
//!   first connect;
//! - live tokio tasks back to the count before the first connect;
//! - RSS at the end within 10 % of RSS after warm-up (the first half of
//!   the run, at most 60 s).
//!
//! Exits 1 when a check fails, 2 on a bad flag (a run lasts at most 7
//! days). Usage:
//!
//! ```text
//! redial-soak [--minutes N | --seconds N] [--connections N] [--pools N]
//!             [--rate FRAMES_PER_S] [--seed N]
//! ```

#![forbid(unsafe_code)]

// The per-connection equation the demo checks, compiled here from the same
// file (the soak does not depend on the CLI crate).
#[path = "../../redial-cli/src/demo/account.rs"]
mod account;
mod acct;
mod echo;
mod frame;
mod procfs;

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redial::{Backoff, Connection, Manager, Options, Pool};
use redial_chaos::{Direction, Proxy, SplitMix64};

use crate::echo::{EchoServer, Tally};
use crate::procfs::{cpu_time, mib, open_fds, rss};

/// How long a pool gets to have every member connected again after a heal.
/// The backoff cap is 1 s, so anything near this is a failure, not noise.
const RECOVERY_LIMIT: Duration = Duration::from_secs(60);
/// The longest run `--minutes` / `--seconds` take: 7 days.
const MAX_RUN: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long counts (descriptors, tasks, echoes) get to settle.
const SETTLE_LIMIT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
struct Args {
    duration: Duration,
    connections: usize,
    pools: usize,
    rate: u64,
    seed: u64,
}

fn parse_args() -> Result<Args, String> {
    parse_args_from(std::env::args().skip(1))
}

fn parse_args_from(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut args = Args {
        duration: Duration::from_secs(60),
        connections: 1000,
        pools: 4,
        rate: 4000,
        seed: 0x50A4,
    };
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            return Err(String::new());
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let n: u64 = value
            .parse()
            .map_err(|_| format!("{flag}: {value:?} is not a whole number"))?;
        match flag.as_str() {
            "--minutes" | "--seconds" => {
                let secs = if flag == "--minutes" {
                    n.saturating_mul(60)
                } else {
                    n
                };
                if secs > MAX_RUN.as_secs() {
                    return Err(format!(
                        "{flag} {value}: longer than the longest run, 7 days"
                    ));
                }
                args.duration = Duration::from_secs(secs);
            }
            "--connections" => args.connections = n as usize,
            "--pools" => args.pools = n as usize,
            "--rate" => args.rate = n,
            "--seed" => args.seed = n,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if args.pools == 0 || args.connections < args.pools {
        return Err("need at least one pool and one connection per pool".into());
    }
    if args.duration.is_zero() {
        return Err("the run needs a duration above zero".into());
    }
    Ok(args)
}

/// The checks, each printed as it is decided.
#[derive(Default)]
struct Verdict {
    failed: Vec<String>,
}

impl Verdict {
    fn check(&mut self, ok: bool, what: String) {
        println!("[{}] {what}", if ok { " ok " } else { "FAIL" });
        if !ok {
            self.failed.push(what);
        }
    }

    /// Checks that `count` settles back to at most `start`.
    async fn back_to_start(&mut self, what: &str, start: usize, count: impl Fn() -> usize) {
        let mut end = 0;
        let back = settle(SETTLE_LIMIT, || {
            end = count();
            end <= start
        })
        .await;
        self.check(back, format!("{what}: {start} -> {end}"));
    }
}

/// Polls `f` every 50 ms until it returns true or `limit` passes.
async fn settle(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if f() {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
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

/// One fault of the schedule, applied to `proxy`.
fn inject(proxy: &Proxy, rng: &mut SplitMix64) -> String {
    match rng.below(6) {
        0 => {
            proxy.reset_all();
            "reset".into()
        }
        1 => {
            proxy.close_all();
            "close".into()
        }
        2 => {
            // Refusing alone touches no live connection: reset them too so
            // every reconnect meets the closed port until the heal.
            proxy.refuse();
            proxy.reset_all();
            "refuse+reset".into()
        }
        3 => {
            proxy.blackhole();
            "blackhole".into()
        }
        4 => {
            let delay = Duration::from_millis(rng.between(10, 100));
            let jitter = Duration::from_millis(rng.between(0, 20));
            proxy.latency(Direction::Both, delay, jitter);
            format!("latency {delay:?}±{jitter:?}")
        }
        _ => {
            let bytes = rng.between(0, 4096);
            proxy.cut_after(bytes);
            format!("cut after {bytes} B")
        }
    }
}

struct Totals {
    frames: account::Counts,
    resets: u64,
    connects: u64,
    outstanding: usize,
}

fn totals(accts: &[acct::Shared]) -> Totals {
    let mut t = Totals {
        frames: account::Counts::default(),
        resets: 0,
        connects: 0,
        outstanding: 0,
    };
    for a in accts {
        let a = acct::lock(a);
        t.frames.add(&a.counts());
        t.resets += a.resets;
        t.connects += a.connects;
        t.outstanding += a.outstanding();
    }
    t
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

async fn run(args: Args) -> Verdict {
    let mut v = Verdict::default();
    let per_pool = args.connections / args.pools;
    let total_conns = per_pool * args.pools;
    println!(
        "soak: {total_conns} connections in {} pools, {:?}, {} frames/s, seed {:#x}",
        args.pools, args.duration, args.rate, args.seed
    );

    // Servers and proxies first: the baseline counts include them.
    let tally = Arc::new(Tally::new(args.connections));
    let mut servers = Vec::new();
    let mut proxies = Vec::new();
    for p in 0..args.pools {
        let server = match EchoServer::start(tally.clone()).await {
            Ok(s) => s,
            Err(e) => {
                v.check(false, format!("echo server {p} starts: {e}"));
                return v;
            }
        };
        let proxy = match Proxy::builder()
            .seed(args.seed.wrapping_add(p as u64))
            .connect_timeout(Duration::from_secs(3))
            .start("127.0.0.1:0", server.addr)
            .await
        {
            Ok(p) => p,
            Err(e) => {
                v.check(false, format!("proxy {p} starts: {e}"));
                return v;
            }
        };
        servers.push(server);
        proxies.push(proxy);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let fds_start = open_fds();
    let tasks_start = alive_tasks();
    println!(
        "baseline: {fds_start} open fds, {tasks_start} live tasks, RSS {}",
        mib(rss())
    );

    let cm = Manager::new();
    let mut pools = Vec::new();
    let mut conns: Vec<Connection> = Vec::with_capacity(total_conns);
    let mut accts: Vec<acct::Shared> = Vec::with_capacity(total_conns);
    for (p, proxy) in proxies.iter().enumerate() {
        let pool = match cm.create_pool(&format!("soak-{p}")) {
            Ok(pool) => pool,
            Err(e) => {
                v.check(false, format!("pool {p}: {e}"));
                return v;
            }
        };
        for _ in 0..per_pool {
            let i = accts.len();
            let a = acct::new(i as u32);
            match pool.add_connection_with(
                proxy.local_addr(),
                acct::handler(a.clone()),
                options(args.seed ^ i as u64),
            ) {
                Ok(c) => {
                    conns.push(c);
                    accts.push(a);
                }
                Err(e) => {
                    v.check(false, format!("connection {i}: {e}"));
                    return v;
                }
            }
        }
        pools.push(pool);
    }
    let t0 = Instant::now();
    let all_up = settle(RECOVERY_LIMIT, || {
        pools.iter().all(|p| p.live() == per_pool)
    })
    .await;
    v.check(
        all_up,
        format!("all {total_conns} connections up in {:?}", t0.elapsed()),
    );
    if !all_up {
        return v;
    }

    let index: Arc<HashMap<u64, usize>> =
        Arc::new(conns.iter().enumerate().map(|(i, c)| (c.id(), i)).collect());
    let accts = Arc::new(accts);
    let stop = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = pools
        .iter()
        .map(|pool| {
            tokio::spawn(traffic(
                pool.clone(),
                index.clone(),
                accts.clone(),
                args.rate / args.pools as u64,
                stop.clone(),
            ))
        })
        .collect();

    // The fault schedule. Warm-up: the first half of the run, at most 60 s;
    // RSS climbs for the first ~30 s (every connection's buffers in redial,
    // the proxies and the servers get allocated and recycled a few times)
    // and is flat after that, so that is the level the end is compared to.
    let warmup = (args.duration / 2).min(Duration::from_secs(60));
    let mut rss_warm: Option<u64> = None;
    let mut rng = SplitMix64::new(args.seed);
    let started = Instant::now();
    let cpu_start = cpu_time();
    let mut faults = 0u64;
    let mut recoveries: Vec<Duration> = Vec::new();
    let mut unrecovered = 0u64;
    let mut by_kind: HashMap<String, u64> = HashMap::new();
    let mut last_report = Instant::now();
    while started.elapsed() < args.duration {
        tokio::time::sleep(Duration::from_millis(rng.between(1000, 2000))).await;
        if rss_warm.is_none() && started.elapsed() >= warmup {
            rss_warm = Some(rss());
        }
        let p = rng.below(args.pools as u64) as usize;
        let what = inject(&proxies[p], &mut rng);
        *by_kind
            .entry(what.split_whitespace().next().unwrap_or("").to_string())
            .or_default() += 1;
        faults += 1;
        tokio::time::sleep(Duration::from_millis(rng.between(200, 1200))).await;
        if let Err(e) = proxies[p].heal() {
            v.check(false, format!("heal proxy {p}: {e}"));
            break;
        }
        let healed = Instant::now();
        if settle(RECOVERY_LIMIT, || pools[p].live() == per_pool).await {
            recoveries.push(healed.elapsed());
        } else {
            unrecovered += 1;
            println!(
                "  pool {p}: only {}/{per_pool} back {RECOVERY_LIMIT:?} after healing {what}",
                pools[p].live()
            );
        }
        if last_report.elapsed() >= Duration::from_secs(10) {
            last_report = Instant::now();
            let t = totals(&accts);
            println!(
                "  {:>5}s: {faults} faults (last: {what} on proxy {p}), {} resets, {} frames accepted, \
                 {} echoed, {} fds, {} tasks, RSS {}",
                started.elapsed().as_secs(),
                t.resets,
                t.frames.accepted,
                t.frames.echoed,
                open_fds(),
                alive_tasks(),
                mib(rss())
            );
        }
    }
    let run_time = started.elapsed();
    let cpu = cpu_time().saturating_sub(cpu_start);

    // Stop: heal everything, all members back, traffic off, drain.
    for proxy in &proxies {
        let _ = proxy.heal();
    }
    let back = settle(RECOVERY_LIMIT, || {
        pools.iter().all(|p| p.live() == per_pool)
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        let _ = s.await;
    }
    let drained = settle(SETTLE_LIMIT, || totals(&accts).outstanding == 0).await;
    let rss_end = rss();
    let rss_warm = rss_warm.unwrap_or(rss_end);

    let mut kinds: Vec<_> = by_kind.into_iter().collect();
    kinds.sort();
    println!(
        "ran {run_time:?}: {faults} faults ({}), CPU {cpu:?} ({:.0}% of a core)",
        kinds
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", "),
        100.0 * cpu.as_secs_f64() / run_time.as_secs_f64()
    );
    recoveries.sort();
    if let (Some(max), false) = (recoveries.last(), recoveries.is_empty()) {
        println!(
            "recovery after heal: median {:?}, max {max:?} over {} heals",
            recoveries[recoveries.len() / 2],
            recoveries.len()
        );
    }
    v.check(
        unrecovered == 0 && back,
        format!(
            "every connection recovered after each heal ({} of {faults} heals, all {total_conns} up at the end: {back})",
            faults - unrecovered
        ),
    );
    v.check(
        drained,
        format!(
            "traffic drained: {} frames still in flight",
            totals(&accts).outstanding
        ),
    );

    // Disconnect everything and let every socket close.
    let t_dc = Instant::now();
    let disconnected = tokio::time::timeout(SETTLE_LIMIT, cm.disconnect_all())
        .await
        .is_ok();
    v.check(
        disconnected,
        format!("disconnect_all finished in {:?}", t_dc.elapsed()),
    );
    let quiet = settle(SETTLE_LIMIT, || {
        proxies.iter().all(|p| p.stats().live == 0) && tally.live.load(Ordering::Relaxed) == 0
    })
    .await;
    v.check(quiet, "proxies and echo servers hold no connection".into());

    // Accounting: the per-connection equation (the one `redial demo`
    // checks), then the echo servers' own evidence against it.
    let mut unbalanced = 0usize;
    let mut off_server = 0usize;
    let mut kernel_checked = 0usize;
    let mut unacked_received = 0usize;
    let mut received_unacked = 0u64;
    let mut notes = Vec::new();
    let mut bytes_out = 0u64;
    let mut all_closed = true;
    for (i, c) in conns.iter().enumerate() {
        let stats = c.stats();
        bytes_out += stats.bytes_out;
        let mut a = acct::lock(&accts[i]);
        all_closed &= a.closed;
        if !a.finish(stats.bytes_out) {
            unbalanced += 1;
            if notes.len() < 10 {
                let f = a.counts();
                notes.push(format!("connection {i}: {f:?}"));
                notes.extend(a.notes().iter().map(|n| format!("connection {i}: {n}")));
            }
        }
        // Every frame the server received was acknowledged by the kernel.
        let received = tally
            .per_conn_bytes
            .get(i)
            .map_or(0, |n| n.load(Ordering::Relaxed));
        // An RST drops the acknowledgement a receiver was still delaying:
        // up to two segments per reset may be received and never acked.
        if let Some(acked) = a.acked() {
            kernel_checked += 1;
            let unacked = received.saturating_sub(acked);
            received_unacked += unacked;
            if unacked > a.resets * account::DELAYED_ACK {
                unacked_received += 1;
                if notes.len() < 10 {
                    notes.push(format!(
                        "connection {i}: the server received {received} bytes, the kernel acknowledged {acked}"
                    ));
                }
            }
        }
        // The server received at least what came back, and no more than
        // was written whole.
        let f = a.counts();
        let seen = tally
            .per_conn
            .get(i)
            .map_or(0, |n| n.load(Ordering::Relaxed));
        if seen < f.echoed || seen > f.echoed + f.lost_in_flight + f.unanswered {
            off_server += 1;
            if notes.len() < 10 {
                notes.push(format!(
                    "connection {i}: the server received {seen} data frames, echoed {} + lost in flight {} + unanswered {}",
                    f.echoed, f.lost_in_flight, f.unanswered
                ));
            }
        }
    }
    let t = totals(&accts);
    let f = &t.frames;
    println!(
        "frames: {} accepted = {} echoed + {} handed back + {} lost in flight + {} unanswered + {} unaccounted; \
         {} refused by send (handed back at once); {} anomalies",
        f.accepted,
        f.echoed,
        f.handed_back,
        f.lost_in_flight,
        f.unanswered,
        f.unaccounted,
        f.refused,
        f.anomalies
    );
    println!(
        "connections: {} connects, {} resets; bytes written by redial {}, seen by the echo servers {} \
         ({} lost before the server), {} data frames ({} out of sequence) and {} hellos seen",
        t.connects,
        t.resets,
        bytes_out,
        tally.bytes.load(Ordering::Relaxed),
        bytes_out.saturating_sub(tally.bytes.load(Ordering::Relaxed)),
        tally.data_frames.load(Ordering::Relaxed),
        tally.out_of_sequence.load(Ordering::Relaxed),
        tally.hellos.load(Ordering::Relaxed),
    );
    if f.kernel_checked > 0 {
        println!(
            "kernel (TCP_INFO) on {} connections: every echoed frame acknowledged; written and not echoed: \
             {} B never acknowledged (died in the client's kernel), {} B acknowledged (died in the proxy, \
             the server or on the way back)",
            f.kernel_checked, f.unacked_bytes, f.acked_not_echoed_bytes
        );
    }
    for n in &notes {
        println!("  {n}");
    }
    v.check(all_closed, "on_close ran for every connection".into());
    v.check(
        unbalanced == 0 && f.accepted > 0,
        format!(
            "nothing lost silently: {unbalanced} of {total_conns} connections unbalanced \
             (accepted = echoed + handed back + lost in flight, echoes in order, losses a suffix)"
        ),
    );
    v.check(
        off_server == 0,
        format!(
            "per connection, the echo servers received no less than was echoed and no more than was written: \
             {off_server} of {total_conns} off"
        ),
    );
    if kernel_checked > 0 {
        v.check(
            unacked_received == 0,
            format!(
                "every frame the echo servers received was acknowledged by the client's kernel \
                 (but for a delayed acknowledgement an RST dropped: {received_unacked} B in all): \
                 {unacked_received} of {kernel_checked} connections off"
            ),
        );
    } else {
        println!("(no kernel acknowledged counts: that check is skipped)");
    }
    v.check(
        tally.bytes.load(Ordering::Relaxed) <= bytes_out
            && tally.corrupt.load(Ordering::Relaxed) == 0
            && tally.out_of_sequence.load(Ordering::Relaxed) == 0,
        format!(
            "echo servers saw no more than was written, no corrupt frame ({}) and no gap on any TCP connection ({})",
            tally.corrupt.load(Ordering::Relaxed),
            tally.out_of_sequence.load(Ordering::Relaxed)
        ),
    );

    // Descriptors and tasks, with every redial handle dropped.
    drop(pools);
    drop(conns);
    drop(index);
    drop(cm);
    v.back_to_start(
        "open fds back to the start after disconnect_all",
        fds_start,
        open_fds,
    )
    .await;
    v.back_to_start(
        "live tokio tasks back to the start",
        tasks_start,
        alive_tasks,
    )
    .await;
    let growth = rss_end as f64 / rss_warm.max(1) as f64 - 1.0;
    v.check(
        growth <= 0.10,
        format!(
            "RSS after the run within 10% of after warm-up: {} -> {} ({:+.1}%)",
            mib(rss_warm),
            mib(rss_end),
            growth * 100.0
        ),
    );

    for p in &proxies {
        p.shutdown().await;
    }
    for s in &servers {
        s.stop();
    }
    v
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("redial-soak: {e}");
            }
            eprintln!(
                "usage: redial-soak [--minutes N | --seconds N] [--connections N] [--pools N] \
                 [--rate FRAMES_PER_S] [--seed N]"
            );
            return ExitCode::from(2);
        }
    };
    // 1,000 connections hold ~4,000 descriptors (client, proxy both ways,
    // server): raise the soft limit to the hard one.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => println!("open file limit: {n}"),
        Err(e) => eprintln!("redial-soak: cannot raise the open file limit: {e}"),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("redial-soak: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let verdict = runtime.block_on(run(args));
    if verdict.failed.is_empty() {
        println!("soak passed");
        ExitCode::SUCCESS
    } else {
        println!("soak FAILED: {} check(s)", verdict.failed.len());
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, String> {
        parse_args_from(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn run_lengths_past_the_maximum_are_refused_not_overflowed() {
        for args in [
            &["--minutes", "400000000000000000"][..],
            &["--minutes", "10081"],
            &["--seconds", "604801"],
        ] {
            let e = parse(args).err().unwrap_or_default();
            assert!(e.contains(args[0]) && e.contains("7 days"), "{args:?}: {e}");
        }
        let a = parse(&["--minutes", "10080"]).map(|a| a.duration);
        assert_eq!(a, Ok(MAX_RUN));
    }
}
