//! Scenario 1c, many connections on every core: a client on a 2-worker
//! runtime opens 1,000 connections to one sink (`multisink`, one event
//! loop thread) and runs one producer task per connection, each sending
//! `m` messages of 64 bytes. Rate = all messages / (sink's `done` - the
//! client's `start`, stamped once every connection is up).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;

use super::runs::{at_least, by_peer, column, interleave, median_for, rate_cells, vs_best};
use super::{server, timed_burst, Ctx, Section};
use crate::peers::Peer;
use crate::procfs;
use crate::report::{dec, int, median, spread, Table};

const PEERS: [Peer; 4] = [
    Peer::TokioBuf8,
    Peer::TokioBuf64,
    Peer::Redial,
    Peer::RedialSender,
];
/// The rows the ratios are taken for.
const REDIAL: [Peer; 2] = [Peer::Redial, Peer::RedialSender];
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
    let secs = timed_burst(&mut srv, &mut c, bytes, Duration::from_secs(60))?;
    c.wait_for("sent", Duration::from_secs(60))?;
    let cpu_ms = procfs::cpu_ns(c.pid) as f64 / 1e6;
    c.finish(Duration::from_secs(3));
    srv.finish(Duration::from_secs(3));
    Ok(Sample {
        rate: (conns * m) as f64 / secs,
        secs,
        cpu_ms,
    })
}

pub fn run(ctx: &mut Ctx) -> Result<Section> {
    let runs = at_least(ctx, MIN_RUNS);
    let (conns, m) = counts(ctx.quick);
    let peers: Vec<Peer> = PEERS.into_iter().filter(|p| ctx.usable(*p)).collect();
    let all = interleave(ctx, "fanout", runs, &peers, |_| String::new(), one);
    let vs = vs_best(
        &all,
        |s| s.rate,
        &[Peer::TokioBuf8, Peer::TokioBuf64],
        &REDIAL,
    );
    let mut body = format!(
        "### 1c. Many connections, every core: {} connections x {} messages of 64 B, one producer each, 2-worker runtime ({runs} runs per peer)\n\n{}\n",
        int(conns as f64),
        int(m as f64),
        table(&peers, &by_peer(&all), &vs).render()
    );
    body.push_str("The client is a tokio runtime with 2 worker threads; it opens every connection, waits until all are up, stamps `start` and spawns one producer task per connection. tokio: each producer owns its `TcpStream` behind a `BufWriter` (8 KiB, tokio's default, or 64 KiB), `write_all` per message, `flush` at the end. redial: `Manager::new()` with its defaults; each producer awaits `Connection::write` per message, or owns a `Sender` (`write` per message, `flush` at the end). The sink is one event loop thread (a tokio `current_thread` runtime) reading every connection; neither process is pinned, so the sink competes with the client's two workers for the 2 cores. \"best\" is the faster of the two BufWriter rows in the same run.\n\n");
    let targets = REDIAL
        .iter()
        .map(|&p| {
            let r = median_for(&vs, p);
            (
                format!(
                    "many connections: msg/s >= 1.0x tokio with one BufWriter per connection (best of 8/64 KiB, same run), {}",
                    label(p)
                ),
                format!("{}x", dec(r, 2)),
                r >= 1.0,
            )
        })
        .collect();
    Ok(Section { body, targets })
}

fn table(
    peers: &[Peer],
    samples: &BTreeMap<&str, Vec<Sample>>,
    vs: &BTreeMap<&str, Vec<f64>>,
) -> Table {
    let mut t = Table::new(&[
        "peer",
        ">msg/s, all connections (median)",
        ">min / median / max, M msg/s",
        "spread",
        ">run length s (median)",
        ">client CPU ms",
        ">vs best tokio + BufWriter, same run (min / median / max)",
    ]);
    for &p in peers {
        let Some(v) = samples.get(p.id()) else {
            t.row(vec![label(p).into(), "failed".into()]);
            continue;
        };
        let mut row = vec![label(p).to_string()];
        row.extend(rate_cells(&column(v, |s| s.rate)));
        row.extend([
            dec(median(&column(v, |s| s.secs)), 2),
            int(median(&column(v, |s| s.cpu_ms))),
            vs.get(p.id()).map_or("-".into(), |v| spread(v, 2)),
        ]);
        t.row(row);
    }
    t
}

fn label(p: Peer) -> &'static str {
    match p {
        Peer::Redial => "**redial `Connection::write`**",
        Peer::RedialSender => "**redial, one `Sender` per connection**",
        other => other.label(),
    }
}
