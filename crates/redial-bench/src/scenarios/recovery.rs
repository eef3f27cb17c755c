//! Scenario 3, reset recovery. The server accepts, sends one byte, holds
//! the connection, stamps `close` and then closes with FIN, or with RST
//! (SO_LINGER 0), or stops listening for the outage and listens again
//! (stamping `listen`). The client stamps its callbacks; every repetition
//! uses a fresh managed connection. b1 = close -> reset callback, b2 =
//! close -> connected, b3 = re-listen -> connected.
//!
//! For redial the client also prints its events (attempt starts and each
//! failure's `retry_in`), which shows whether every attempt was one the
//! schedule called for and how long the connect after the first attempt
//! past the re-listen took.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;

use super::{ms, server, Ctx, Section};
use crate::peers::Peer;
use crate::report::{dec, max, median, Table};

const PEERS: [Peer; 7] = [
    Peer::Redial,
    Peer::RedialStable,
    Peer::Tokio,
    Peer::Stubborn,
    Peer::Stubborn10,
    Peer::Connman,
    Peer::NodeNet,
];

#[derive(Default, Clone)]
struct Rep {
    b1: f64,
    b2: f64,
    b3: f64,
    attempts: f64,
    /// redial: first attempt after the re-listen (or the last attempt for
    /// FIN/RST) -> connected.
    sched: f64,
    /// redial: latest an attempt came after the time its failure's
    /// `retry_in` named, ms.
    late: f64,
    /// redial: attempts no failure's `retry_in` (nor the reset) called for.
    unscheduled: f64,
}

fn first_at_or_after(v: &[u64], t: u64) -> Option<u64> {
    v.iter().copied().filter(|&x| x >= t).min()
}

/// What one client and its server stamped over the repetitions.
struct Stamps {
    closes: Vec<u64>,
    listens: Vec<u64>,
    resets: Vec<u64>,
    conns: Vec<u64>,
    fails: Vec<u64>,
    datas: Vec<u64>,
    /// redial's events: attempt starts, and each failure's (stamp,
    /// `retry_in` ns).
    attempts: Vec<u64>,
    retries: Vec<(u64, u64)>,
}

fn one(ctx: &mut Ctx, peer: Peer, mode: &str, reps: u64, outage_ms: u64) -> Result<Vec<Rep>> {
    let st = stamps(ctx, peer, mode, reps, outage_ms)?;
    if st.datas.len() as u64 != reps || st.closes.len() as u64 != reps {
        ctx.fail(format!(
            "recovery {} {mode}: {} of {reps} repetitions got data after the reconnect ({} closes)",
            peer.id(),
            st.datas.len(),
            st.closes.len()
        ));
    }
    let redial = matches!(peer, Peer::Redial | Peer::RedialStable);
    Ok((0..st.closes.len())
        .filter_map(|k| repetition(&st, k, redial))
        .collect())
}

/// Runs `reps` repetitions of `mode` against a fresh server and collects
/// the stamps.
fn stamps(ctx: &Ctx, peer: Peer, mode: &str, reps: u64, outage_ms: u64) -> Result<Stamps> {
    let hold = if peer == Peer::RedialStable {
        5200
    } else {
        200
    };
    let (mut srv, port, _) = server(
        "recovery",
        &[
            "addr=127.0.0.1:0".into(),
            format!("mode={mode}"),
            format!("hold_ms={hold}"),
            format!("outage_ms={outage_ms}"),
        ],
    )?;
    let mut c = ctx.client(
        peer,
        "recovery",
        &[format!("addr=127.0.0.1:{port}"), format!("reps={reps}")],
    )?;
    let limit = Duration::from_millis(reps * (hold + outage_ms + 6000) + 10_000);
    c.wait_for("end", limit)?;
    c.finish(Duration::from_secs(3));
    srv.finish(Duration::from_secs(3));
    Ok(Stamps {
        closes: srv.stamps("close"),
        listens: srv.stamps("listen"),
        resets: c.stamps("reset"),
        conns: c.stamps("connected"),
        fails: c.stamps("fail"),
        datas: c.stamps("data"),
        attempts: c.stamps("attempt"),
        retries: c
            .lines("retry")
            .iter()
            .filter_map(|f| Some((f.first()?.parse().ok()?, f.get(1)?.parse().ok()?)))
            .collect(),
    })
}

/// The figures of repetition `k`: from its close to the first connect
/// after it; none if it never connected again.
fn repetition(st: &Stamps, k: usize, redial: bool) -> Option<Rep> {
    let close = st.closes[k];
    let conn = first_at_or_after(&st.conns, close)?;
    let reset = first_at_or_after(&st.resets, close).unwrap_or(u64::MAX);
    let in_window = |t: u64| t >= close && t <= conn;
    let mut r = Rep {
        b1: ms(reset.saturating_sub(close) as f64),
        b2: ms((conn - close) as f64),
        b3: f64::NAN,
        attempts: (st.fails.iter().filter(|&&t| in_window(t)).count() + 1) as f64,
        sched: f64::NAN,
        late: f64::NAN,
        unscheduled: f64::NAN,
    };
    let listen = st.listens.get(k).copied();
    if let Some(listen) = listen {
        r.b3 = ms(conn.saturating_sub(listen) as f64);
    }
    if redial {
        let win: Vec<u64> = st
            .attempts
            .iter()
            .copied()
            .filter(|&t| in_window(t))
            .collect();
        r.sched = match listen {
            Some(from) => first_at_or_after(&win, from).map(|a| ms((conn - a) as f64)),
            None => win.last().map(|a| ms((conn - a) as f64)),
        }
        .unwrap_or(f64::NAN);
        let rs: Vec<&(u64, u64)> = st.retries.iter().filter(|(t, _)| in_window(*t)).collect();
        r.late = rs
            .iter()
            .filter_map(|(t, d)| {
                let a = first_at_or_after(&win, *t)?;
                Some(ms(a as f64 - (*t + *d) as f64))
            })
            .fold(0.0, f64::max);
        r.unscheduled = win.len() as f64 - rs.len() as f64 - 1.0;
    }
    Some(r)
}

/// Repetitions per run of `mode` for `p`: fewer where one lasts long
/// (the stable row holds 5.2 s; stubborn-io's defaults back off for
/// seconds; an outage lasts the outage).
fn reps(p: Peer, mode: &str, quick: bool) -> u64 {
    match (p, mode, quick) {
        (Peer::RedialStable, "relisten", _) => 0,
        (_, _, true) => {
            if matches!(p, Peer::Stubborn | Peer::RedialStable) || mode == "relisten" {
                1
            } else {
                2
            }
        }
        (Peer::RedialStable, _, false) => 3,
        (Peer::Stubborn, _, false) => 4,
        (_, "relisten", false) => 4,
        _ => 10,
    }
}

/// Every repetition of every peer and mode, over the runs.
type All = BTreeMap<(&'static str, &'static str), Vec<Rep>>;

fn measure(ctx: &mut Ctx, peers: &[Peer], outage_ms: u64) -> All {
    let mut all = All::new();
    for run in 0..ctx.runs {
        for &p in peers {
            for mode in MODES {
                let n = reps(p, mode, ctx.quick);
                if n == 0 {
                    continue;
                }
                eprintln!("recovery: run {} {} {mode} x{n}", run + 1, p.id());
                match one(ctx, p, mode, n, outage_ms) {
                    Ok(v) => all.entry((p.id(), mode)).or_default().extend(v),
                    Err(e) => {
                        ctx.fail(format!("recovery {} {mode} run {}: {e:#}", p.id(), run + 1))
                    }
                }
            }
        }
    }
    all
}

const MODES: [&str; 3] = ["fin", "rst", "relisten"];

/// One field of every repetition of `p` in mode `m`.
fn get(all: &All, p: Peer, m: &str, f: fn(&Rep) -> f64) -> Vec<f64> {
    all.get(&(p.id(), m))
        .map(|v| v.iter().map(f).collect())
        .unwrap_or_default()
}

pub fn run(ctx: &mut Ctx) -> Result<Section> {
    let outage_ms = if ctx.quick { 500 } else { 2000 };
    let peers: Vec<Peer> = PEERS.into_iter().filter(|p| ctx.usable_slow(*p)).collect();
    let all = measure(ctx, &peers, outage_ms);
    let mut body = format!(
        "### 3. Reset recovery, ms (median / max over all repetitions of {} runs)\n\n{}\n",
        ctx.runs,
        table(&all, &peers, outage_ms).render()
    );
    body.push_str("The server holds each connection 200 ms before closing it (5.2 s for the \"up > stable_after\" row, so redial's rule \"retry at once after a connection that was up 5 s\" applies). Each repetition is a fresh managed connection in the same client process (for redial this means every loss here is a first loss, retried at once; a connection lost again within 5 s would wait 100 ms, then 200 ms, ...). Plain tokio and node net have no reconnection: their rows are a hand-rolled loop (reconnect at once, retry every 10 ms), a floor rather than a library. Attempts per b3 outage = failure callbacks + 1 (connman: its `onReset` calls on a never-connected socket). redial columns come from its events: \"attempt -> connected\" is from the start of the attempt that succeeded (b3: the first attempt after the re-listen); \"unscheduled attempts\" counts attempts that neither the reset nor a failure's `retry_in` called for; \"latest attempt vs schedule\" is how late the latest attempt started after the time `retry_in` named.\n\n");
    Ok(Section {
        body,
        targets: targets(&all),
    })
}

fn table(all: &All, peers: &[Peer], outage_ms: u64) -> Table {
    let mut t = Table::new(&[
        "peer",
        "reconnect schedule",
        ">b1 FIN: close -> reset cb",
        ">b2 FIN: close -> connected",
        ">b1 RST: close -> reset cb",
        ">b2 RST: close -> connected",
        &format!(
            ">b3: re-listen after {} s -> connected",
            outage_ms as f64 / 1000.0
        ),
        ">attempts per b3 outage",
        ">redial: attempt -> connected, medians (FIN / RST / b3)",
        ">redial: unscheduled attempts, latest attempt vs schedule",
        ">samples (fin/rst/b3)",
    ]);
    let mm = |v: Vec<f64>| {
        if v.is_empty() {
            "n/a".to_string()
        } else {
            format!("{} / {}", dec(median(&v), 2), dec(max(&v), 2))
        }
    };
    for &p in peers {
        let n = |m| all.get(&(p.id(), m)).map_or(0, Vec::len);
        let (sched, sched_ok) = schedule_cells(all, p);
        t.row(vec![
            p.label().into(),
            p.schedule().into(),
            mm(get(all, p, "fin", |r| r.b1)),
            mm(get(all, p, "fin", |r| r.b2)),
            mm(get(all, p, "rst", |r| r.b1)),
            mm(get(all, p, "rst", |r| r.b2)),
            mm(get(all, p, "relisten", |r| r.b3)),
            dec(median(&get(all, p, "relisten", |r| r.attempts)), 0),
            sched,
            sched_ok,
            format!("{}/{}/{}", n("fin"), n("rst"), n("relisten")),
        ]);
    }
    t
}

/// redial's two schedule columns ("-" for the others): attempt ->
/// connected per mode, and how far the attempts kept to the schedule.
fn schedule_cells(all: &All, p: Peer) -> (String, String) {
    if !matches!(p, Peer::Redial | Peer::RedialStable) {
        return ("-".into(), "-".into());
    }
    let sched = format!(
        "{} / {} / {}",
        dec(median(&get(all, p, "fin", |r| r.sched)), 2),
        dec(median(&get(all, p, "rst", |r| r.sched)), 2),
        dec(median(&get(all, p, "relisten", |r| r.sched)), 2)
    );
    let un: Vec<f64> = MODES
        .iter()
        .flat_map(|m| get(all, p, m, |r| r.unscheduled))
        .collect();
    let late: Vec<f64> = MODES
        .iter()
        .flat_map(|m| get(all, p, m, |r| r.late))
        .collect();
    let sched_ok = format!("{} , {} ms", dec(max(&un).max(0.0), 0), dec(max(&late), 2));
    (sched, sched_ok)
}

fn targets(all: &All) -> Vec<(String, String, bool)> {
    let r = Peer::Redial;
    let s = Peer::RedialStable;
    let get = |p, m, f| get(all, p, m, f);
    let b1: Vec<f64> = [get(r, "fin", |x| x.b1), get(r, "rst", |x| x.b1)].concat();
    let b1_worst = median(&get(r, "fin", |x| x.b1)).max(median(&get(r, "rst", |x| x.b1)));
    let b2s = median(&get(s, "fin", |x| x.b2)).max(median(&get(s, "rst", |x| x.b2)));
    let b2d = median(&get(r, "fin", |x| x.b2)).max(median(&get(r, "rst", |x| x.b2)));
    let b3 = get(r, "relisten", |x| x.sched);
    let un = max(&get(r, "relisten", |x| x.unscheduled));
    vec![
        (
            "reset callback <= 0.2 ms (median) after FIN and after RST".into(),
            format!("{} ms (worse of the two medians; n={})", dec(b1_worst, 3), b1.len()),
            b1_worst <= 0.2,
        ),
        (
            "connected again <= 1 ms after a close, listener up (connection up > stable_after)".into(),
            format!("{} ms", dec(b2s, 3)),
            b2s <= 1.0,
        ),
        (
            "connected again <= 1 ms after a close, listener up (connection up 200 ms, a first loss)".into(),
            format!("{} ms", dec(b2d, 1)),
            b2d <= 1.0,
        ),
        (
            "after the outage: connected <= 5 ms after the first scheduled attempt past the re-listen, no unscheduled attempt".into(),
            format!(
                "max {} ms, unscheduled attempts: {}",
                dec(max(&b3), 2),
                dec(un.max(0.0), 0)
            ),
            max(&b3) <= 5.0 && un <= 0.0,
        ),
    ]
}
