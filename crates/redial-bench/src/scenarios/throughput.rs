//! Scenario 1, throughput: one connection, N messages of 64 bytes, one
//! send call per message, to a sink that counts bytes. Rate = N / (sink's
//! `done` - client's `start`); client CPU from /proc (all threads).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Result};

use super::{server, Ctx, Section};
use crate::peers::Peer;
use crate::procfs;
use crate::report::{dec, int, median, Table};

const PEERS: [Peer; 6] = [
    Peer::Redial,
    Peer::TokioBuf,
    Peer::Tokio,
    Peer::Stubborn,
    Peer::Connman,
    Peer::NodeNet,
];

#[derive(Clone, Copy)]
struct Sample {
    rate: f64,
    cpu_ms: f64,
    hwm: f64,
    residue: f64,
}

fn one(ctx: &Ctx, peer: Peer, n: u64) -> Result<Sample> {
    let bytes = n * 64;
    let (mut srv, port, _) = server("sink", &[format!("bytes={bytes}")])?;
    let addr = format!("127.0.0.1:{port}");
    let mut c = ctx.client(
        peer,
        "throughput",
        &[format!("addr={addr}"), format!("n={n}")],
    )?;
    let start = c.wait_num("start", Duration::from_secs(20))?;
    let done = srv.wait_for("done", Duration::from_secs(120))?;
    let t_done: u64 = done.first().and_then(|v| v.parse().ok()).unwrap_or(0);
    let got: u64 = done.get(1).and_then(|v| v.parse().ok()).unwrap_or(0);
    if got != bytes {
        bail!("sink got {got} bytes, expected {bytes}");
    }
    let idle = c.wait_for("idle", Duration::from_secs(30))?;
    let cpu_ms = procfs::cpu_ns(c.pid) as f64 / 1e6;
    let hwm = procfs::hwm_bytes(c.pid) as f64;
    let before: f64 = idle
        .first()
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN);
    let after: f64 = idle.get(1).and_then(|v| v.parse().ok()).unwrap_or(f64::NAN);
    c.finish(Duration::from_secs(3));
    srv.finish(Duration::from_secs(3));
    Ok(Sample {
        rate: n as f64 / ((t_done.saturating_sub(start)) as f64 / 1e9),
        cpu_ms,
        hwm,
        residue: after - before,
    })
}

pub fn run(ctx: &mut Ctx) -> Result<Section> {
    let n: u64 = if ctx.quick { 100_000 } else { 1_000_000 };
    let peers: Vec<Peer> = PEERS.into_iter().filter(|p| ctx.usable(*p)).collect();
    let mut samples: BTreeMap<&str, Vec<Sample>> = BTreeMap::new();
    let mut ratio_buf = Vec::new();
    let mut ratio_connman = Vec::new();
    for run in 0..ctx.runs {
        let mut this_run: BTreeMap<&str, f64> = BTreeMap::new();
        // Interleaved: run r of every peer, then run r+1.
        for &p in &peers {
            eprintln!("throughput: run {} {}", run + 1, p.id());
            match one(ctx, p, n) {
                Ok(s) => {
                    this_run.insert(p.id(), s.rate);
                    samples.entry(p.id()).or_default().push(s);
                }
                Err(e) => ctx.fail(format!("throughput {} run {}: {e:#}", p.id(), run + 1)),
            }
        }
        let r = this_run.get("redial");
        if let (Some(r), Some(b)) = (r, this_run.get("tokio-buf")) {
            ratio_buf.push(r / b);
        }
        if let (Some(r), Some(c)) = (r, this_run.get("connman")) {
            ratio_connman.push(r / c);
        }
    }

    let mut t = Table::new(&[
        "peer",
        ">msg/s (median)",
        ">min - max of runs",
        ">MB/s",
        ">client CPU ms",
        ">client peak RSS MiB",
        ">RSS kept after 1 s idle, KiB",
    ]);
    for p in &peers {
        let Some(v) = samples.get(p.id()) else {
            t.row(vec![p.label().into(), "failed".into()]);
            continue;
        };
        let rates: Vec<f64> = v.iter().map(|s| s.rate).collect();
        let m = median(&rates);
        t.row(vec![
            p.label().into(),
            int(m),
            format!(
                "{} - {}",
                int(crate::report::min(&rates)),
                int(crate::report::max(&rates))
            ),
            dec(m * 64.0 / 1e6, 1),
            int(median(&v.iter().map(|s| s.cpu_ms).collect::<Vec<_>>())),
            dec(
                median(&v.iter().map(|s| s.hwm).collect::<Vec<_>>()) / 1048576.0,
                1,
            ),
            int(median(&v.iter().map(|s| s.residue).collect::<Vec<_>>()) / 1024.0),
        ]);
    }
    let rb = median(&ratio_buf);
    let rc = median(&ratio_connman);
    let mut body = format!(
        "### 1. Throughput: {} x 64 B, one send call per message (median of {} runs)\n\n{}\n",
        int(n as f64),
        ctx.runs,
        t.render()
    );
    body.push_str(&format!(
        "Ratios computed pair by pair within each run, then the median: redial / tokio+BufWriter = **{}x** (runs: {}), redial / connman = **{}x** (runs: {}).\n\n",
        dec(rb, 2),
        ratio_buf.iter().map(|r| dec(*r, 2)).collect::<Vec<_>>().join(", "),
        dec(rc, 1),
        ratio_connman.iter().map(|r| dec(*r, 1)).collect::<Vec<_>>().join(", "),
    ));
    body.push_str("Producers: every Rust client is one `current_thread` tokio runtime; the producer loop is the main task on it (redial: `Connection::write(..).await` per message, its connection task runs on the same thread). Node: the producer is a synchronous loop of `socket.write` in the connect callback, on node's event loop. TCP_NODELAY is on for every peer. \"RSS kept\" = VmRSS one idle second after the burst minus VmRSS just before it.\n\n");
    let targets = vec![
        (
            "throughput >= 1.0x tokio + BufWriter (same run)".into(),
            format!("{}x", dec(rb, 2)),
            rb >= 1.0,
        ),
        (
            "throughput >= 25x node connman (same run)".into(),
            format!("{}x", dec(rc, 1)),
            rc >= 25.0,
        ),
    ];
    Ok(Section { body, targets })
}
