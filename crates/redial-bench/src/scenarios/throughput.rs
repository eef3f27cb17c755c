//! Scenario 1, throughput: one connection, N messages of 64 bytes, one
//! send call per message, to a sink that counts bytes. Rate = N / (sink's
//! `done` - client's `start`); client CPU from /proc (all threads).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Result};

use super::{server_on_cpu, Ctx, Section};
use crate::peers::Peer;
use crate::procfs;
use crate::report::{dec, int, median, Table};

const PEERS: [Peer; 7] = [
    Peer::Redial,
    Peer::RedialSender,
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
    // Sink and client on CPUs of their own (when there are two).
    let (mut srv, port, _) = server_on_cpu("sink", &[format!("bytes={bytes}")], 0)?;
    let addr = format!("127.0.0.1:{port}");
    let mut c = ctx.client_on_cpu(
        peer,
        "throughput",
        &[format!("addr={addr}"), format!("n={n}")],
        1,
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
    let mut ratio_sender = Vec::new();
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
        let rs = this_run.get("redial-sender");
        if let Some(b) = this_run.get("tokio-buf") {
            if let Some(r) = r {
                ratio_buf.push(r / b);
            }
            if let Some(rs) = rs {
                ratio_sender.push(rs / b);
            }
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
    let rs = median(&ratio_sender);
    let rc = median(&ratio_connman);
    let runs = |v: &[f64], places| {
        v.iter()
            .map(|r| dec(*r, places))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut body = format!(
        "### 1. Throughput: {} x 64 B, one send call per message (median of {} runs)\n\n{}\n",
        int(n as f64),
        ctx.runs,
        t.render()
    );
    body.push_str(&format!(
        "Ratios computed pair by pair within each run, then the median: redial `Sender` / tokio+BufWriter = **{}x** (runs: {}); redial `Connection::write` / tokio+BufWriter = **{}x** (runs: {}); redial `Connection::write` / connman = **{}x** (runs: {}).\n\n",
        dec(rs, 2),
        runs(&ratio_sender, 2),
        dec(rb, 2),
        runs(&ratio_buf, 2),
        dec(rc, 1),
        runs(&ratio_connman, 1),
    ));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pinning = if cores >= 2 && crate::proc::has_taskset() {
        "Every run pins the sink to CPU 0 and the client process (all its threads) to CPU 1 with `taskset`, so the two never share a core or migrate mid-run."
    } else {
        "Sink and client are not pinned to CPUs (one core, or no `taskset`)."
    };
    body.push_str(&format!("Producers: every Rust client is one `current_thread` tokio runtime; the producer loop is the main task on it, and redial's connection task runs on the same thread. redial (defaults): `Connection::write(..).await` per message, through the shared handle any task or thread may hold. redial, one `Sender`: `Sender::write(..).await` per message and one `flush().await` at the end; the sender is the producer's own buffer in front of the connection, as a `BufWriter` is in front of a socket, and hands over 64 KiB at a time. tokio + BufWriter: `write_all` per message and one `flush` at the end. Node: the producer is a synchronous loop of `socket.write` in the connect callback, on node's event loop. TCP_NODELAY is on for every peer. {pinning} \"RSS kept\" = VmRSS one idle second after the burst minus VmRSS just before it.\n\n"));
    let targets = vec![
        (
            "throughput >= 1.0x tokio + BufWriter (same run), redial `Sender`".into(),
            format!("{}x", dec(rs, 2)),
            rs >= 1.0,
        ),
        (
            "throughput >= 1.0x tokio + BufWriter (same run), redial `Connection::write`".into(),
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
