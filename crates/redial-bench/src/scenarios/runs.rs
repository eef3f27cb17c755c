//! Running every peer of a scenario over the runs, interleaved, and the
//! ratios taken pair by pair inside each run: the loop the burst
//! scenarios (1, 1b, 1c) and request/response share.

use std::collections::BTreeMap;

use anyhow::Result;

use super::Ctx;
use crate::peers::Peer;

/// One run: each peer's sample, for the peers whose run succeeded.
pub type Run<S> = BTreeMap<&'static str, S>;

/// Runs `one` for every peer, `runs` times: run r of every peer before
/// run r+1, so a slow spell of the shared machine falls on every peer
/// alike. A failed run is recorded as a failed count check and left out.
/// `detail` adds to the progress line.
pub fn interleave<S>(
    ctx: &mut Ctx,
    scenario: &str,
    runs: usize,
    peers: &[Peer],
    detail: impl Fn(Peer) -> String,
    mut one: impl FnMut(&Ctx, Peer) -> Result<S>,
) -> Vec<Run<S>> {
    let mut out = Vec::new();
    for run in 0..runs {
        let mut this_run = Run::new();
        for &p in peers {
            eprintln!("{scenario}: run {} {}{}", run + 1, p.id(), detail(p));
            match one(ctx, p) {
                Ok(s) => {
                    this_run.insert(p.id(), s);
                }
                Err(e) => ctx.fail(format!("{scenario} {} run {}: {e:#}", p.id(), run + 1)),
            }
        }
        out.push(this_run);
    }
    out
}

/// The samples of every peer, in run order.
pub fn by_peer<S: Clone>(runs: &[Run<S>]) -> BTreeMap<&'static str, Vec<S>> {
    let mut out: BTreeMap<&str, Vec<S>> = BTreeMap::new();
    for run in runs {
        for (&p, s) in run {
            out.entry(p).or_default().push(s.clone());
        }
    }
    out
}

/// Per peer of `of`, its rate over the best rate among `base` in the same
/// run, for every run that has both: pairs taken inside a run cancel
/// what the machine's load did to that run.
pub fn vs_best<S>(
    runs: &[Run<S>],
    rate: impl Fn(&S) -> f64,
    base: &[Peer],
    of: &[Peer],
) -> BTreeMap<&'static str, Vec<f64>> {
    let mut out: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for run in runs {
        let best = base
            .iter()
            .filter_map(|p| run.get(p.id()).map(&rate))
            .fold(f64::NAN, f64::max);
        for p in of {
            if let Some(s) = run.get(p.id()) {
                if best.is_finite() {
                    out.entry(p.id()).or_default().push(rate(s) / best);
                }
            }
        }
    }
    out
}

/// The median of `vs` for `p` (NaN when it has none).
pub fn median_for(vs: &BTreeMap<&str, Vec<f64>>, p: Peer) -> f64 {
    vs.get(p.id())
        .map_or(f64::NAN, |v| crate::report::median(v))
}

/// Every sample's value of one field.
pub fn column<S>(v: &[S], f: impl Fn(&S) -> f64) -> Vec<f64> {
    v.iter().map(f).collect()
}

/// The three rate cells the burst tables share: the median, the spread
/// in millions and the spread's note.
pub fn rate_cells(rates: &[f64]) -> [String; 3] {
    use crate::report::{int, median, spread, spread_note};
    let r_m: Vec<f64> = rates.iter().map(|r| r / 1e6).collect();
    [int(median(rates)), spread(&r_m, 1), spread_note(rates)]
}

/// Run count of a burst scenario: at least `min` in the full mode, as
/// given in the quick one.
pub fn at_least(ctx: &Ctx, min: usize) -> usize {
    if ctx.quick {
        ctx.runs
    } else {
        ctx.runs.max(min)
    }
}
