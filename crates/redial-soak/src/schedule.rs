//! The seeded fault schedule: every 1-2 s it breaks one proxy (reset,
//! close, refuse, blackhole, latency, cut), holds the fault, heals it and
//! waits until every connection of that pool is back, recording how long
//! each recovery took.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use redial_chaos::{Direction, Proxy, SplitMix64};

use crate::acct;
use crate::args::Args;
use crate::procfs::{cpu_time, mib, open_fds, rss};
use crate::rig::Fleet;
use crate::verdict::{settle, Verdict};
use crate::{alive_tasks, RECOVERY_LIMIT};

/// What the schedule did and saw.
#[derive(Default)]
pub struct Outcome {
    pub faults: u64,
    /// Heal -> all of the pool's members connected, per recovered heal.
    pub recoveries: Vec<Duration>,
    /// Heals after which the pool was not whole within the limit.
    pub unrecovered: u64,
    /// Faults by their first word.
    pub by_kind: HashMap<String, u64>,
    /// RSS at the end of the warm-up.
    pub rss_warm: Option<u64>,
    pub run_time: Duration,
    /// The process's CPU over the run.
    pub cpu: Duration,
}

/// Runs the schedule for `args.duration`. A proxy that cannot heal is a
/// failed check and ends the schedule.
pub async fn run(args: &Args, proxies: &[Proxy], fleet: &Fleet, v: &mut Verdict) -> Outcome {
    // Warm-up: the first half of the run, at most 60 s; RSS climbs for
    // the first ~30 s (every connection's buffers in redial, the proxies
    // and the servers get allocated and recycled a few times) and is flat
    // after that, so that is the level the end is compared to.
    let warmup = (args.duration / 2).min(Duration::from_secs(60));
    let mut o = Outcome::default();
    let mut rng = SplitMix64::new(args.seed);
    let started = Instant::now();
    let cpu_start = cpu_time();
    let mut last_report = Instant::now();
    while started.elapsed() < args.duration {
        tokio::time::sleep(Duration::from_millis(rng.between(1000, 2000))).await;
        if o.rss_warm.is_none() && started.elapsed() >= warmup {
            o.rss_warm = Some(rss());
        }
        let p = rng.below(args.pools as u64) as usize;
        let what = inject(&proxies[p], &mut rng);
        *o.by_kind
            .entry(what.split_whitespace().next().unwrap_or("").to_string())
            .or_default() += 1;
        o.faults += 1;
        tokio::time::sleep(Duration::from_millis(rng.between(200, 1200))).await;
        if let Err(e) = proxies[p].heal() {
            v.check(false, format!("heal proxy {p}: {e}"));
            break;
        }
        o.await_recovery(fleet, p, &what).await;
        if last_report.elapsed() >= Duration::from_secs(10) {
            last_report = Instant::now();
            progress(started, &o, &what, p, fleet);
        }
    }
    o.run_time = started.elapsed();
    o.cpu = cpu_time().saturating_sub(cpu_start);
    o
}

impl Outcome {
    /// Waits until pool `p` is whole again after its heal, and records how
    /// long that took or that it did not happen.
    async fn await_recovery(&mut self, fleet: &Fleet, p: usize, what: &str) {
        let healed = Instant::now();
        let per_pool = fleet.per_pool;
        if settle(RECOVERY_LIMIT, || fleet.pools[p].live() == per_pool).await {
            self.recoveries.push(healed.elapsed());
        } else {
            self.unrecovered += 1;
            println!(
                "  pool {p}: only {}/{per_pool} back {RECOVERY_LIMIT:?} after healing {what}",
                fleet.pools[p].live()
            );
        }
    }

    /// Prints the run's faults and CPU and the recovery times, and checks
    /// that every heal was recovered from (`back`: and all were up at the
    /// end).
    pub fn report(&mut self, v: &mut Verdict, back: bool, total_conns: usize) {
        let mut kinds: Vec<_> = self.by_kind.iter().collect();
        kinds.sort();
        let (run_time, cpu, faults) = (self.run_time, self.cpu, self.faults);
        println!(
            "ran {run_time:?}: {faults} faults ({}), CPU {cpu:?} ({:.0}% of a core)",
            kinds
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect::<Vec<_>>()
                .join(", "),
            100.0 * cpu.as_secs_f64() / run_time.as_secs_f64()
        );
        let recoveries = &mut self.recoveries;
        recoveries.sort();
        if let (Some(max), false) = (recoveries.last(), recoveries.is_empty()) {
            println!(
                "recovery after heal: median {:?}, max {max:?} over {} heals",
                recoveries[recoveries.len() / 2],
                recoveries.len()
            );
        }
        v.check(
            self.unrecovered == 0 && back,
            format!(
                "every connection recovered after each heal ({} of {faults} heals, all {total_conns} up at the end: {back})",
                faults - self.unrecovered
            ),
        );
    }
}

/// The line printed every 10 s or so.
fn progress(started: Instant, o: &Outcome, what: &str, p: usize, fleet: &Fleet) {
    let t = acct::totals(&fleet.accts);
    println!(
        "  {:>5}s: {} faults (last: {what} on proxy {p}), {} resets, {} frames accepted, \
         {} echoed, {} fds, {} tasks, RSS {}",
        started.elapsed().as_secs(),
        o.faults,
        t.resets,
        t.frames.accepted,
        t.frames.echoed,
        open_fds(),
        alive_tasks(),
        mib(rss())
    );
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
