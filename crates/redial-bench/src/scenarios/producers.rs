//! Scenario 1b, many producers, one connection: a client on a 2-worker
//! runtime runs 8 producer tasks that send 64-byte messages (and an
//! occasional 1 MiB one) to one connection, to the sink. Rate = messages /
//! (sink's `done` - client's `start`); each client times every single send
//! call and prints the percentiles. Neither process is pinned: the client's
//! two workers need both cores.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::{server, Ctx, Section};
use crate::peers::producers::total_bytes;
use crate::peers::Peer;
use crate::procfs;
use crate::report::{dec, int, max, median, spread, spread_note, Table};

const PEERS: [Peer; 4] = [
    Peer::TokioMpsc,
    Peer::TokioMutex,
    Peer::Redial,
    Peer::RedialSender,
];
const TASKS: u64 = 8;
const MIN_RUNS: usize = 5;

/// (messages per producer, a big one every this many).
fn counts(quick: bool) -> (u64, u64) {
    if quick {
        (25_000, 10_000)
    } else {
        (2_500_000, 250_000)
    }
}

#[derive(Clone, Copy)]
struct Sample {
    rate: f64,
    mb_s: f64,
    /// p50, p99, p99.9, max of one send call, µs.
    lat: [f64; 4],
    cpu_ms: f64,
}

fn one(ctx: &Ctx, peer: Peer) -> Result<Sample> {
    let (m, every) = counts(ctx.quick);
    let (bytes, _) = total_bytes(TASKS, m, every);
    let (mut srv, port, _) = server("sink", &[format!("bytes={bytes}")])?;
    let mut c = ctx.client(
        peer,
        "producers",
        &[
            format!("addr=127.0.0.1:{port}"),
            format!("tasks={TASKS}"),
            format!("m={m}"),
            format!("every={every}"),
        ],
    )?;
    let start = c.wait_num("start", Duration::from_secs(20))?;
    let done = srv.wait_for("done", Duration::from_secs(300))?;
    let t_done: u64 = done.first().and_then(|v| v.parse().ok()).unwrap_or(0);
    let got: u64 = done.get(1).and_then(|v| v.parse().ok()).unwrap_or(0);
    if got != bytes {
        bail!("sink got {got} bytes, expected {bytes}");
    }
    let lat = c.wait_for("lat", Duration::from_secs(60))?;
    let v: Vec<f64> = lat.iter().filter_map(|x| x.parse().ok()).collect();
    let calls = v.get(4).copied().unwrap_or(0.0);
    if calls != (TASKS * m) as f64 {
        bail!("{calls} send calls timed, expected {}", TASKS * m);
    }
    let lat: [f64; 4] = v[..4]
        .iter()
        .map(|ns| ns / 1e3)
        .collect::<Vec<_>>()
        .try_into()
        .ok()
        .context("lat line")?;
    c.wait_for("end", Duration::from_secs(10))?;
    let cpu_ms = procfs::cpu_ns(c.pid) as f64 / 1e6;
    c.finish(Duration::from_secs(3));
    srv.finish(Duration::from_secs(3));
    let secs = t_done.saturating_sub(start) as f64 / 1e9;
    Ok(Sample {
        rate: (TASKS * m) as f64 / secs,
        mb_s: bytes as f64 / secs / 1e6,
        lat,
        cpu_ms,
    })
}

pub fn run(ctx: &mut Ctx) -> Result<Section> {
    let runs = if ctx.quick {
        ctx.runs
    } else {
        ctx.runs.max(MIN_RUNS)
    };
    let (m, every) = counts(ctx.quick);
    let (_, big) = total_bytes(TASKS, m, every);
    let peers: Vec<Peer> = PEERS.into_iter().filter(|p| ctx.usable(*p)).collect();
    let mut samples: BTreeMap<&str, Vec<Sample>> = BTreeMap::new();
    let mut vs_mpsc: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for run in 0..runs {
        let mut this_run: BTreeMap<&'static str, f64> = BTreeMap::new();
        for &p in &peers {
            eprintln!("producers: run {} {}", run + 1, p.id());
            match one(ctx, p) {
                Ok(s) => {
                    this_run.insert(p.id(), s.rate);
                    samples.entry(p.id()).or_default().push(s);
                }
                Err(e) => ctx.fail(format!("producers {} run {}: {e:#}", p.id(), run + 1)),
            }
        }
        if let Some(base) = this_run.get(Peer::TokioMpsc.id()) {
            for p in [Peer::Redial, Peer::RedialSender] {
                if let Some(r) = this_run.get(p.id()) {
                    vs_mpsc.entry(p.id()).or_default().push(r / base);
                }
            }
        }
    }
    let mut t = Table::new(&[
        "peer",
        ">msg/s (median)",
        ">min / median / max, M msg/s",
        "spread",
        ">MB/s",
        ">one send call, µs: p50",
        ">p99",
        ">p99.9",
        ">max (of all runs)",
        ">client CPU ms",
        ">vs mpsc pattern, same run (min / median / max)",
    ]);
    for &p in &peers {
        let Some(v) = samples.get(p.id()) else {
            t.row(vec![p.label().into(), "failed".into()]);
            continue;
        };
        let col = |f: &dyn Fn(&Sample) -> f64| v.iter().map(f).collect::<Vec<f64>>();
        let rates = col(&|s| s.rate);
        let r_m: Vec<f64> = rates.iter().map(|r| r / 1e6).collect();
        let lat = |i: usize| dec(median(&col(&|s| s.lat[i])), 1);
        t.row(vec![
            label(p).into(),
            int(median(&rates)),
            spread(&r_m, 1),
            spread_note(&rates),
            int(median(&col(&|s| s.mb_s))),
            lat(0),
            lat(1),
            lat(2),
            dec(max(&col(&|s| s.lat[3])), 0),
            int(median(&col(&|s| s.cpu_ms))),
            vs_mpsc.get(p.id()).map_or("-".into(), |v| spread(v, 2)),
        ]);
    }
    let mut body = format!(
        "### 1b. Many producers, one connection: {TASKS} tasks x {} messages on a 2-worker runtime ({runs} runs per peer)\n\n{}\n",
        int(m as f64),
        t.render()
    );
    body.push_str(&format!("Every message is 64 B except one in {} per producer, which is 1 MiB ({big} in all, staggered across the producers). msg/s counts every message, MB/s every byte. The client is a tokio runtime with 2 worker threads; neither it nor the sink is pinned (the workers need both cores, so the sink competes with them). Every send call is timed with two `Instant::now()` reads (the same cost for every peer) into a log-linear histogram (3 % buckets); percentiles are the median over the runs, max the largest of all runs. mpsc pattern: each producer sends an owned `Vec<u8>` (a copy of the message, made inside the timed call) into a bounded channel (1,024), and one writer task takes up to 64 at a time with `recv_many`, writes them into a 64 KiB `BufWriter` and flushes when the channel is empty. Mutex: `Arc<tokio::sync::Mutex<BufWriter 64 KiB>>`, lock, `write_all`, unlock per message. redial `Connection::write`: every producer holds a clone of the connection and awaits `write` per message. redial `Sender`: every producer has its own `conn.sender()`, awaits `write` per message and `flush` at the end (not timed).\n\n", int(every as f64)));
    let mut targets = Vec::new();
    for p in [Peer::Redial, Peer::RedialSender] {
        let r = vs_mpsc.get(p.id()).map_or(f64::NAN, |v| median(v));
        targets.push((
            format!(
                "many producers: msg/s >= 2x the mpsc pattern (same run), {}",
                label(p)
            ),
            format!("{}x", dec(r, 2)),
            r >= 2.0,
        ));
        let p999 = samples.get(p.id()).map_or(f64::NAN, |v| {
            median(&v.iter().map(|s| s.lat[2]).collect::<Vec<_>>())
        });
        targets.push((
            format!(
                "many producers: p99.9 of one send call <= 100 µs, {}",
                label(p)
            ),
            format!("{} µs", dec(p999, 1)),
            p999 <= 100.0,
        ));
    }
    Ok(Section { body, targets })
}

fn label(p: Peer) -> &'static str {
    match p {
        Peer::Redial => "**redial `Connection::write`**",
        Peer::RedialSender => "**redial, one `Sender` per task**",
        other => other.label(),
    }
}
