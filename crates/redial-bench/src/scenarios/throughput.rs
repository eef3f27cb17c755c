//! Scenario 1, throughput: one producer, one connection, N messages of 64
//! bytes, one send call per message, to a sink that counts bytes. Rate =
//! N / (sink's `done` - client's `start`); client CPU from /proc (all
//! threads). Runs last at least half a second each in the full mode (N is
//! 60 M for the batching peers, 1 M for those that make one system call per
//! message), at least 5 runs, interleaved across peers; ratios are taken
//! pair by pair inside each run, against the best `BufWriter` of that run.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;

use super::runs::{at_least, by_peer, column, interleave, rate_cells};
use super::{server_on_cpu, timed_burst, Ctx, Section};
use crate::peers::Peer;
use crate::procfs;
use crate::report::{dec, int, median, spread, Table};

const PEERS: [Peer; 10] = [
    Peer::Redial,
    Peer::RedialSender,
    Peer::TokioBuf8,
    Peer::TokioBuf64,
    Peer::TokioBuf256,
    Peer::Tokio,
    Peer::Stubborn,
    Peer::Connman,
    Peer::NodeNet,
    Peer::NodeBatched,
];

const BUFWRITERS: [Peer; 3] = [Peer::TokioBuf8, Peer::TokioBuf64, Peer::TokioBuf256];

/// Runs in the full mode, at least.
const MIN_RUNS: usize = 5;
/// A run shorter than this (full mode) is flagged: too short to settle.
const MIN_RUN_S: f64 = 0.5;

#[derive(Clone, Copy)]
struct Sample {
    rate: f64,
    secs: f64,
    cpu_ms: f64,
    hwm: f64,
    residue: f64,
}

/// Messages per run: peers that make one system call (or one node write)
/// per message run at about 0.5 M msg/s, so 1 M of them last 2 s; the
/// batching ones reach 75 M msg/s on a quiet machine, so they need 60 M to
/// last more than half a second (20 M lasted 0.26 s).
fn count(quick: bool, peer: Peer) -> u64 {
    match (quick, peer) {
        (true, _) => 100_000,
        (false, Peer::Tokio | Peer::Stubborn | Peer::Connman | Peer::NodeNet) => 1_000_000,
        (false, _) => 60_000_000,
    }
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
    let secs = timed_burst(&mut srv, &mut c, bytes, Duration::from_secs(20))?;
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
        rate: n as f64 / secs,
        secs,
        cpu_ms,
        hwm,
        residue: after - before,
    })
}

/// Ratios of one run, taken pair by pair.
#[derive(Default)]
struct Ratios {
    sender_best: Vec<f64>,
    write_best: Vec<f64>,
    write_connman: Vec<f64>,
    write_batched: Vec<f64>,
    sender_batched: Vec<f64>,
    /// Which `BufWriter` was the best in each run.
    best: Vec<&'static str>,
}

impl Ratios {
    fn add(&mut self, run: &BTreeMap<&'static str, f64>) {
        let get = |p: Peer| run.get(p.id()).copied();
        let best = BUFWRITERS
            .iter()
            .filter_map(|p| Some((*p, get(*p)?)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        let w = get(Peer::Redial);
        let s = get(Peer::RedialSender);
        if let Some((p, b)) = best {
            self.best.push(p.label());
            w.inspect(|w| self.write_best.push(w / b));
            s.inspect(|s| self.sender_best.push(s / b));
        }
        if let (Some(w), Some(c)) = (w, get(Peer::Connman)) {
            self.write_connman.push(w / c);
        }
        if let Some(nb) = get(Peer::NodeBatched) {
            w.inspect(|w| self.write_batched.push(w / nb));
            s.inspect(|s| self.sender_batched.push(s / nb));
        }
    }

    /// The ratios' paragraph, with which `BufWriter` was the best how often.
    fn render(&self) -> String {
        let d2 = |v: &[f64]| dec(median(v), 2);
        let best_counts = {
            let mut m: BTreeMap<&str, usize> = BTreeMap::new();
            for b in &self.best {
                *m.entry(b).or_default() += 1;
            }
            m.iter()
                .map(|(k, v)| format!("{k} in {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "Ratios, pair by pair within each run (min / median / max over the runs); \"best BufWriter\" is the fastest of the three `BufWriter` rows in that same run ({best_counts}):\n\n\
             - redial `Sender` / best BufWriter: **{}x** ({})\n\
             - redial `Connection::write` / best BufWriter: **{}x** ({})\n\
             - redial `Connection::write` / node connman: {}x ({})\n\
             - redial `Connection::write` / node batched: {}x ({}); redial `Sender` / node batched: {}x ({})\n\n",
            d2(&self.sender_best),
            spread(&self.sender_best, 2),
            d2(&self.write_best),
            spread(&self.write_best, 2),
            dec(median(&self.write_connman), 1),
            spread(&self.write_connman, 1),
            d2(&self.write_batched),
            spread(&self.write_batched, 2),
            d2(&self.sender_batched),
            spread(&self.sender_batched, 2),
        )
    }

    fn targets(&self) -> Vec<(String, String, bool)> {
        let rs = median(&self.sender_best);
        let rw = median(&self.write_best);
        let rc = median(&self.write_connman);
        vec![
            (
                "throughput >= 1.0x the best tokio + BufWriter (8/64/256 KiB, same run), redial `Sender`".into(),
                format!("{}x", dec(rs, 2)),
                rs >= 1.0,
            ),
            (
                "throughput >= 0.8x the best tokio + BufWriter (8/64/256 KiB, same run), redial `Connection::write`".into(),
                format!("{}x", dec(rw, 2)),
                rw >= 0.8,
            ),
            (
                "throughput >= 25x node connman (same run)".into(),
                format!("{}x", dec(rc, 1)),
                rc >= 25.0,
            ),
        ]
    }
}

pub fn run(ctx: &mut Ctx) -> Result<Section> {
    let runs = at_least(ctx, MIN_RUNS);
    let peers: Vec<Peer> = PEERS.into_iter().filter(|p| ctx.usable(*p)).collect();
    let q = ctx.quick;
    let all = interleave(
        ctx,
        "throughput",
        runs,
        &peers,
        |p| format!(" n={}", count(q, p)),
        |ctx, p| one(ctx, p, count(ctx.quick, p)),
    );
    let mut ratios = Ratios::default();
    for run in &all {
        ratios.add(&run.iter().map(|(&p, s)| (p, s.rate)).collect());
    }
    let mut body = format!(
        "### 1. Throughput: one producer, one connection, 64 B messages, one send call per message ({runs} runs per peer)\n\n{}\n",
        table(ctx, &peers, &by_peer(&all)).render()
    );
    body.push_str(&ratios.render());
    body.push_str(&method());
    Ok(Section {
        body,
        targets: ratios.targets(),
    })
}

/// How each peer sends and how the figures are read.
fn method() -> String {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pinning = if cores >= 2 && crate::proc::has_taskset() {
        "Every run pins the sink to CPU 0 and the client process (all its threads) to CPU 1 with `taskset`, so the two never share a core or migrate mid-run."
    } else {
        "Sink and client are not pinned to CPUs (one core, or no `taskset`)."
    };
    format!("Producers: every Rust client is one `current_thread` tokio runtime; the producer loop is the main task on it, and redial's connection task runs on the same thread. redial (defaults): `Connection::write(..).await` per message, through the shared handle any task or thread may hold. redial, one `Sender`: `Sender::write(..).await` per message and one `flush().await` at the end; the sender is the producer's own buffer in front of the connection, as a `BufWriter` is in front of a socket, and hands over 64 KiB at a time. tokio + BufWriter: `write_all` per message and one `flush` at the end, at three capacities. Node: connman and node net write each message with `socket.write` in a synchronous loop in the connect callback (no regard for `drain`: node queues everything in user space); node batched copies the messages into 64 KiB `Buffer`s, writes each full one and waits for `drain` whenever `write` returns false. TCP_NODELAY is on for every peer. {pinning} \"RSS kept\" = VmRSS one idle second after the burst minus VmRSS just before it. Spread: \"bimodal\" when the runs fall into two groups (two runs or more each) more than 15 % of the median apart, \"wide\" when the slowest and fastest run differ by more than 30 %.\n\n")
}

fn table(ctx: &Ctx, peers: &[Peer], samples: &BTreeMap<&str, Vec<Sample>>) -> Table {
    let mut t = Table::new(&[
        "peer",
        ">messages per run",
        ">msg/s (median)",
        ">min / median / max, M msg/s",
        "spread",
        ">run length s (median)",
        ">MB/s",
        ">client CPU ms",
        ">client peak RSS MiB",
        ">RSS kept after 1 s idle, KiB",
    ]);
    for p in peers {
        let Some(v) = samples.get(p.id()) else {
            t.row(vec![p.label().into(), "failed".into()]);
            continue;
        };
        let rates = column(v, |s| s.rate);
        let m = median(&rates);
        let secs = median(&column(v, |s| s.secs));
        let [rate, range, mut note] = rate_cells(&rates);
        if !ctx.quick && secs < MIN_RUN_S {
            note = format!("{note} runs < {MIN_RUN_S} s").trim().to_string();
        }
        t.row(vec![
            p.label().into(),
            int(count(ctx.quick, *p) as f64),
            rate,
            range,
            note,
            dec(secs, 2),
            dec(m * 64.0 / 1e6, 1),
            int(median(&column(v, |s| s.cpu_ms))),
            dec(median(&column(v, |s| s.hwm)) / 1048576.0, 1),
            int(median(&column(v, |s| s.residue)) / 1024.0),
        ]);
    }
    t
}
