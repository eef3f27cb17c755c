//! Scenario 1b, many producers, one connection: a client on a 2-worker
//! runtime runs 8 producer tasks that send 64-byte messages (and an
//! occasional 1 MiB one) to one connection, to the sink. Rate = messages /
//! (sink's `done` - client's `start`); each client times every single send
//! call and prints the percentiles. Neither process is pinned: the client's
//! two workers need both cores.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::runs::{at_least, by_peer, column, interleave, median_for, rate_cells, vs_best};
use super::{server, timed_burst, Ctx, Section};
use crate::peers::producers::total_bytes;
use crate::peers::Peer;
use crate::procfs;
use crate::report::{dec, int, max, median, spread, Table};

const PEERS: [Peer; 4] = [
    Peer::TokioMpsc,
    Peer::TokioMutex,
    Peer::Redial,
    Peer::RedialSender,
];
/// The rows the ratios and targets are taken for.
const REDIAL: [Peer; 2] = [Peer::Redial, Peer::RedialSender];
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
    let secs = timed_burst(&mut srv, &mut c, bytes, Duration::from_secs(20))?;
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
    Ok(Sample {
        rate: (TASKS * m) as f64 / secs,
        mb_s: bytes as f64 / secs / 1e6,
        lat,
        cpu_ms,
    })
}

pub fn run(ctx: &mut Ctx) -> Result<Section> {
    let runs = at_least(ctx, MIN_RUNS);
    let (m, every) = counts(ctx.quick);
    let (_, big) = total_bytes(TASKS, m, every);
    let peers: Vec<Peer> = PEERS.into_iter().filter(|p| ctx.usable(*p)).collect();
    let all = interleave(ctx, "producers", runs, &peers, |_| String::new(), one);
    let samples = by_peer(&all);
    let vs_mpsc = vs_best(&all, |s| s.rate, &[Peer::TokioMpsc], &REDIAL);
    let mut body = format!(
        "### 1b. Many producers, one connection: {TASKS} tasks x {} messages on a 2-worker runtime ({runs} runs per peer)\n\n{}\n",
        int(m as f64),
        table(&peers, &samples, &vs_mpsc).render()
    );
    body.push_str(&format!("Every message is 64 B except one in {} per producer, which is 1 MiB ({big} in all, staggered across the producers). msg/s counts every message, MB/s every byte. The client is a tokio runtime with 2 worker threads; neither it nor the sink is pinned (the workers need both cores, so the sink competes with them). Every send call is timed with two `Instant::now()` reads (the same cost for every peer) into a log-linear histogram (3 % buckets); percentiles are the median over the runs, max the largest of all runs. mpsc pattern: each producer sends an owned `Vec<u8>` (a copy of the message, made inside the timed call) into a bounded channel (1,024), and one writer task takes up to 64 at a time with `recv_many`, writes them into a 64 KiB `BufWriter` and flushes when the channel is empty. Mutex: `Arc<tokio::sync::Mutex<BufWriter 64 KiB>>`, lock, `write_all`, unlock per message. redial `Connection::write`: every producer holds a clone of the connection and awaits `write` per message. redial `Sender`: every producer has its own `conn.sender()`, awaits `write` per message and `flush` at the end (not timed).\n\n", int(every as f64)));
    let targets = targets(&samples, &vs_mpsc);
    Ok(Section { body, targets })
}

fn table(
    peers: &[Peer],
    samples: &BTreeMap<&str, Vec<Sample>>,
    vs_mpsc: &BTreeMap<&str, Vec<f64>>,
) -> Table {
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
    for &p in peers {
        let Some(v) = samples.get(p.id()) else {
            t.row(vec![p.label().into(), "failed".into()]);
            continue;
        };
        let lat = |i: usize| dec(median(&column(v, |s| s.lat[i])), 1);
        let mut row = vec![label(p).to_string()];
        row.extend(rate_cells(&column(v, |s| s.rate)));
        row.extend([
            int(median(&column(v, |s| s.mb_s))),
            lat(0),
            lat(1),
            lat(2),
            dec(max(&column(v, |s| s.lat[3])), 0),
            int(median(&column(v, |s| s.cpu_ms))),
            vs_mpsc.get(p.id()).map_or("-".into(), |v| spread(v, 2)),
        ]);
        t.row(row);
    }
    t
}

fn targets(
    samples: &BTreeMap<&str, Vec<Sample>>,
    vs_mpsc: &BTreeMap<&str, Vec<f64>>,
) -> Vec<(String, String, bool)> {
    let mut targets = Vec::new();
    for p in REDIAL {
        let r = median_for(vs_mpsc, p);
        targets.push((
            format!(
                "many producers: msg/s >= 2x the mpsc pattern (same run), {}",
                label(p)
            ),
            format!("{}x", dec(r, 2)),
            r >= 2.0,
        ));
        let p999 = samples
            .get(p.id())
            .map_or(f64::NAN, |v| median(&column(v, |s| s.lat[2])));
        targets.push((
            format!(
                "many producers: p99.9 of one send call <= 100 µs, {}",
                label(p)
            ),
            format!("{} µs", dec(p999, 1)),
            p999 <= 100.0,
        ));
    }
    targets
}

fn label(p: Peer) -> &'static str {
    match p {
        Peer::Redial => "**redial `Connection::write`**",
        Peer::RedialSender => "**redial, one `Sender` per task**",
        other => other.label(),
    }
}
