//! Scenario 1c, many connections on every core: a client on a 2-worker
//! runtime opens 1,000 connections to one sink (`multisink`, one event
//! loop thread) and runs one producer task per connection, each sending
//! `m` messages of 64 bytes. Rate = all messages / (sink's `done` - the
//! client's `start`, stamped once every connection is up).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Result};

use super::{server, Ctx, Section};
use crate::peers::Peer;
use crate::procfs;
use crate::report::{dec, int, median, spread, spread_note, Table};

const PEERS: [Peer; 4] = [
    Peer::TokioBuf8,
    Peer::TokioBuf64,
    Peer::Redial,
    Peer::RedialSender,
];
const MIN_RUNS: usize = 5;

/// (connections, messages per connection).
fn counts(quick: bool) -> (u64, u64) {
    if quick {
        (200, 500)
    } else {
        (1_000, 20_000)
    }
}

#[derive(Clone, Copy)]
struct Sample {
    rate: f64,
    secs: f64,
    cpu_ms: f64,
}

fn one(ctx: &Ctx, peer: Peer) -> Result<Sample> {
    let (conns, m) = counts(ctx.quick);
    let bytes = conns * m * 64;
    let (mut srv, port, _) = server("multisink", &[format!("bytes={bytes}")])?;
    let mut c = ctx.client(
        peer,
        "fanout",
        &[
            format!("addr=127.0.0.1:{port}"),
            format!("conns={conns}"),
            format!("m={m}"),
        ],
    )?;
    let start = c.wait_num("start", Duration::from_secs(60))?;
    let done = srv.wait_for("done", Duration::from_secs(300))?;
    let t_done: u64 = done.first().and_then(|v| v.parse().ok()).unwrap_or(0);
    let got: u64 = done.get(1).and_then(|v| v.parse().ok()).unwrap_or(0);
    if got != bytes {
        bail!("sink got {got} bytes, expected {bytes}");
    }
    c.wait_for("sent", Duration::from_secs(60))?;
    let cpu_ms = procfs::cpu_ns(c.pid) as f64 / 1e6;
    c.finish(Duration::from_secs(3));
    srv.finish(Duration::from_secs(3));
    let secs = t_done.saturating_sub(start) as f64 / 1e9;
    Ok(Sample {
        rate: (conns * m) as f64 / secs,
        secs,
        cpu_ms,
    })
}

pub fn run(ctx: &mut Ctx) -> Result<Section> {
    let runs = if ctx.quick {
        ctx.runs
    } else {
        ctx.runs.max(MIN_RUNS)
    };
    let (conns, m) = counts(ctx.quick);
    let peers: Vec<Peer> = PEERS.into_iter().filter(|p| ctx.usable(*p)).collect();
    let mut samples: BTreeMap<&str, Vec<Sample>> = BTreeMap::new();
    let mut vs_best: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for run in 0..runs {
        let mut this_run: BTreeMap<&'static str, f64> = BTreeMap::new();
        for &p in &peers {
            eprintln!("fanout: run {} {}", run + 1, p.id());
            match one(ctx, p) {
                Ok(s) => {
                    this_run.insert(p.id(), s.rate);
                    samples.entry(p.id()).or_default().push(s);
                }
                Err(e) => ctx.fail(format!("fanout {} run {}: {e:#}", p.id(), run + 1)),
            }
        }
        let best = [Peer::TokioBuf8, Peer::TokioBuf64]
            .iter()
            .filter_map(|p| this_run.get(p.id()).copied())
            .fold(f64::NAN, f64::max);
        for p in [Peer::Redial, Peer::RedialSender] {
            if let Some(r) = this_run.get(p.id()) {
                if best.is_finite() {
                    vs_best.entry(p.id()).or_default().push(r / best);
                }
            }
        }
    }
    let mut t = Table::new(&[
        "peer",
        ">msg/s, all connections (median)",
        ">min / median / max, M msg/s",
        "spread",
        ">run length s (median)",
        ">client CPU ms",
        ">vs best tokio + BufWriter, same run (min / median / max)",
    ]);
    for &p in &peers {
        let Some(v) = samples.get(p.id()) else {
            t.row(vec![label(p).into(), "failed".into()]);
            continue;
        };
        let col = |f: fn(&Sample) -> f64| v.iter().map(f).collect::<Vec<f64>>();
        let rates = col(|s| s.rate);
        let r_m: Vec<f64> = rates.iter().map(|r| r / 1e6).collect();
        t.row(vec![
            label(p).into(),
            int(median(&rates)),
            spread(&r_m, 1),
            spread_note(&rates),
            dec(median(&col(|s| s.secs)), 2),
            int(median(&col(|s| s.cpu_ms))),
            vs_best.get(p.id()).map_or("-".into(), |v| spread(v, 2)),
        ]);
    }
    let mut body = format!(
        "### 1c. Many connections, every core: {} connections x {} messages of 64 B, one producer each, 2-worker runtime ({runs} runs per peer)\n\n{}\n",
        int(conns as f64),
        int(m as f64),
        t.render()
    );
    body.push_str("The client is a tokio runtime with 2 worker threads; it opens every connection, waits until all are up, stamps `start` and spawns one producer task per connection. tokio: each producer owns its `TcpStream` behind a `BufWriter` (8 KiB, tokio's default, or 64 KiB), `write_all` per message, `flush` at the end. redial: `Manager::new()` with its defaults; each producer awaits `Connection::write` per message, or owns a `Sender` (`write` per message, `flush` at the end). The sink is one event loop thread (a tokio `current_thread` runtime) reading every connection; neither process is pinned, so the sink competes with the client's two workers for the 2 cores. \"best\" is the faster of the two BufWriter rows in the same run.\n\n");
    let mut targets = Vec::new();
    for p in [Peer::Redial, Peer::RedialSender] {
        let r = vs_best.get(p.id()).map_or(f64::NAN, |v| median(v));
        targets.push((
            format!(
                "many connections: msg/s >= 1.0x tokio with one BufWriter per connection (best of 8/64 KiB, same run), {}",
                label(p)
            ),
            format!("{}x", dec(r, 2)),
            r >= 1.0,
        ));
    }
    Ok(Section { body, targets })
}

fn label(p: Peer) -> &'static str {
    match p {
        Peer::Redial => "**redial `Connection::write`**",
        Peer::RedialSender => "**redial, one `Sender` per connection**",
        other => other.label(),
    }
}
