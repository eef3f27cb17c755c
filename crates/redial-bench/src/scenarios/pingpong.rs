//! Scenario 2, request/response: N ping-pongs of 64 bytes against an echo
//! server, one at a time; each client measures its round trips itself and
//! prints p50 / p99 / p99.9 / max.

use std::time::Duration;

use anyhow::{Context, Result};

use super::runs::{by_peer, interleave};
use super::{ms, server, Ctx, Section};
use crate::peers::Peer;
use crate::report::{dec, int, median, Table};

const PEERS: [Peer; 5] = [
    Peer::Redial,
    Peer::Tokio,
    Peer::Stubborn,
    Peer::Connman,
    Peer::NodeNet,
];

fn one(ctx: &Ctx, peer: Peer, n: u64) -> Result<[f64; 4]> {
    let (mut srv, port, _) = server("echo", &[])?;
    let mut c = ctx.client(
        peer,
        "pingpong",
        &[format!("addr=127.0.0.1:{port}"), format!("n={n}")],
    )?;
    let f = c.wait_for("lat", Duration::from_secs(300))?;
    let v: Vec<f64> = f.iter().filter_map(|x| x.parse().ok()).collect();
    c.finish(Duration::from_secs(3));
    srv.finish(Duration::from_secs(3));
    let a: [f64; 4] = v.try_into().ok().context("lat line")?;
    Ok(a)
}

pub fn run(ctx: &mut Ctx) -> Result<Section> {
    let n: u64 = if ctx.quick { 2_000 } else { 100_000 };
    let peers: Vec<Peer> = PEERS.into_iter().filter(|p| ctx.usable(*p)).collect();
    let runs = ctx.runs;
    let all = interleave(
        ctx,
        "pingpong",
        runs,
        &peers,
        |_| String::new(),
        |ctx, p| one(ctx, p, n),
    );
    let samples = by_peer(&all);
    let mut t = Table::new(&[
        "peer",
        ">p50 µs",
        ">p99 µs",
        ">p99.9 µs",
        ">max µs",
        ">round trips/s at p50",
    ]);
    for p in &peers {
        let Some(v) = samples.get(p.id()) else {
            t.row(vec![p.label().into(), "failed".into()]);
            continue;
        };
        let col = |i: usize| median(&v.iter().map(|s| s[i]).collect::<Vec<_>>());
        t.row(vec![
            p.label().into(),
            dec(col(0) / 1e3, 1),
            dec(col(1) / 1e3, 1),
            dec(col(2) / 1e3, 1),
            dec(col(3) / 1e3, 0),
            int(1e3 / ms(col(0))),
        ]);
    }
    let body = format!(
        "### 2. Request/response: {} ping-pongs of 64 B, one in flight (median of {} runs' percentiles)\n\n{}\nEcho server: thread per connection, TCP_NODELAY. Rust clients: `write_all` then `read_exact` in a loop on a `current_thread` runtime; redial sends the next ping from `on_data` (the way a redial app reacts to a reply); node sends it from the `data` callback.\n\n",
        int(n as f64),
        ctx.runs,
        t.render()
    );
    Ok(Section {
        body,
        targets: Vec::new(),
    })
}
