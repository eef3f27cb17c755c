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
mod args;
mod audit;
mod echo;
mod frame;
mod procfs;
mod rig;
mod schedule;
mod verdict;

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::args::{parse_args, Args, USAGE};
use crate::audit::Audit;
use crate::procfs::{mib, open_fds, rss};
use crate::rig::{Backends, Fleet, Traffic};
use crate::verdict::{settle, Verdict, SETTLE_LIMIT};

/// How long a pool gets to have every member connected again after a heal.
/// The backoff cap is 1 s, so anything near this is a failure, not noise.
const RECOVERY_LIMIT: Duration = Duration::from_secs(60);

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

async fn run(args: Args) -> Verdict {
    let mut v = Verdict::default();
    let total_conns = args.per_pool() * args.pools;
    println!(
        "soak: {total_conns} connections in {} pools, {:?}, {} frames/s, seed {:#x}",
        args.pools, args.duration, args.rate, args.seed
    );
    // Servers and proxies first: the baseline counts include them.
    let backends = match Backends::start(&args).await {
        Ok(b) => b,
        Err(e) => {
            v.check(false, e);
            return v;
        }
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let fds_start = open_fds();
    let tasks_start = alive_tasks();
    println!(
        "baseline: {fds_start} open fds, {tasks_start} live tasks, RSS {}",
        mib(rss())
    );
    let fleet = match Fleet::connect(&args, &backends.proxies) {
        Ok(f) => f,
        Err(e) => {
            v.check(false, e);
            return v;
        }
    };
    let t0 = Instant::now();
    let all_up = settle(RECOVERY_LIMIT, || fleet.all_up()).await;
    v.check(
        all_up,
        format!("all {total_conns} connections up in {:?}", t0.elapsed()),
    );
    if !all_up {
        return v;
    }
    let traffic = Traffic::start(&fleet, args.rate / args.pools as u64);
    let mut outcome = schedule::run(&args, &backends.proxies, &fleet, &mut v).await;

    let (back, drained) = stop(&backends, &fleet, traffic).await;
    let rss_end = rss();
    let rss_warm = outcome.rss_warm.unwrap_or(rss_end);
    outcome.report(&mut v, back, total_conns);
    v.check(
        drained,
        format!(
            "traffic drained: {} frames still in flight",
            acct::totals(&fleet.accts).outstanding
        ),
    );
    disconnect(&fleet, &backends, &mut v).await;
    let audit = Audit::of(&fleet.conns, &fleet.accts, &backends.tally);
    let totals = acct::totals(&fleet.accts);
    audit.report(&totals, &backends.tally, total_conns, &mut v);

    // Descriptors and tasks, with every redial handle dropped.
    drop(fleet);
    check_resources(&mut v, (fds_start, tasks_start), rss_warm, rss_end).await;
    backends.shutdown().await;
    v
}

/// Stop: heal everything, all members back, traffic off, drain. Whether
/// every member came back, and whether every frame in flight was
/// answered.
async fn stop(backends: &Backends, fleet: &Fleet, traffic: Traffic) -> (bool, bool) {
    for proxy in &backends.proxies {
        let _ = proxy.heal();
    }
    let back = settle(RECOVERY_LIMIT, || fleet.all_up()).await;
    traffic.stop().await;
    let drained = settle(SETTLE_LIMIT, || acct::totals(&fleet.accts).outstanding == 0).await;
    (back, drained)
}

/// Disconnects everything and lets every socket close.
async fn disconnect(fleet: &Fleet, backends: &Backends, v: &mut Verdict) {
    let t_dc = Instant::now();
    let disconnected = tokio::time::timeout(SETTLE_LIMIT, fleet.cm.disconnect_all())
        .await
        .is_ok();
    v.check(
        disconnected,
        format!("disconnect_all finished in {:?}", t_dc.elapsed()),
    );
    let quiet = settle(SETTLE_LIMIT, || {
        backends.proxies.iter().all(|p| p.stats().live == 0)
            && backends.tally.live.load(Ordering::Relaxed) == 0
    })
    .await;
    v.check(quiet, "proxies and echo servers hold no connection".into());
}

/// Descriptors and tasks back to their counts before the first connect
/// (`start`), and RSS at the end against RSS after the warm-up: a leak
/// shows as growth once every buffer has been allocated and recycled.
async fn check_resources(v: &mut Verdict, start: (usize, usize), rss_warm: u64, rss_end: u64) {
    let (fds_start, tasks_start) = start;
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
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("redial-soak: {e}");
            }
            eprintln!("{USAGE}");
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
