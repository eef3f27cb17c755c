//! The scenarios and what they share: the run context (mode, counts,
//! which peers can run), starting servers and clients, timing a burst
//! into a sink, and the record of count checks that decide the exit code.
//! The run loop and the per-run ratios are in `runs.rs`.

pub mod fanout;
pub mod pingpong;
pub mod producers;
pub mod recovery;
mod runs;
pub mod scale;
pub mod throughput;

use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::peers::{node, Peer};
use crate::proc::{on_cpu, self_cmd, Proc};

/// One scenario's part of the report.
pub struct Section {
    pub body: String,
    /// Target lines: (target, figure, met).
    pub targets: Vec<(String, String, bool)>,
}

/// What every scenario needs to know and record.
pub struct Ctx {
    pub quick: bool,
    pub runs: usize,
    /// Node's version, or why the node rows are skipped.
    pub node: Result<String, String>,
    /// `--peers`: only these peers run (ids), when given.
    pub peers: Option<Vec<String>>,
    /// Count checks that failed (bytes missing, connections not back, ...).
    pub failures: Vec<String>,
    /// Peers left out, and why (printed once per scenario).
    pub notes: Vec<String>,
}

impl Ctx {
    /// Whether `peer` can run here; a skipped node peer says why once.
    pub fn usable(&mut self, peer: Peer) -> bool {
        if let Some(only) = &self.peers {
            if !only.iter().any(|p| p == peer.id()) {
                return false;
            }
        }
        if !peer.is_node() {
            return true;
        }
        self.node_usable()
    }

    /// Like `usable`, and in --quick mode also leaves out the rows whose
    /// client code another row already runs (stubborn-io defaults: same
    /// code as the 10 ms row; redial's stable row: same client as redial),
    /// so the quick check stays under a minute.
    pub fn usable_slow(&mut self, peer: Peer) -> bool {
        if self.quick && matches!(peer, Peer::Stubborn | Peer::RedialStable) {
            let line = "--quick: stubborn-io (defaults) and redial's stable row skipped in recovery and scale (same client code as other rows)".to_string();
            if !self.notes.contains(&line) {
                self.notes.push(line);
            }
            return false;
        }
        self.usable(peer)
    }

    fn node_usable(&mut self) -> bool {
        match &self.node {
            Ok(_) => true,
            Err(why) => {
                let line = format!("skipped: node peers ({why})");
                if !self.notes.contains(&line) {
                    eprintln!("{line}");
                    self.notes.push(line);
                }
                false
            }
        }
    }

    /// Records a failed count check (it makes the exit code non-zero).
    pub fn fail(&mut self, what: String) {
        eprintln!("CHECK FAILED: {what}");
        self.failures.push(what);
    }

    /// Starts a client of `peer` for `scenario`.
    pub fn client(&self, peer: Peer, scenario: &str, args: &[String]) -> Result<Proc> {
        let name = format!("{} {scenario} client", peer.id());
        Proc::spawn(&name, client_cmd(peer, scenario, args)?)
    }

    /// [`Ctx::client`], on CPU `cpu` alone (see [`on_cpu`]).
    pub fn client_on_cpu(
        &self,
        peer: Peer,
        scenario: &str,
        args: &[String],
        cpu: usize,
    ) -> Result<Proc> {
        let name = format!("{} {scenario} client", peer.id());
        Proc::spawn(&name, on_cpu(client_cmd(peer, scenario, args)?, cpu))
    }
}

/// Starts a server of `kind` and waits until it listens; returns it with
/// its port and listen stamp.
pub fn server(kind: &str, args: &[String]) -> Result<(Proc, u16, u64)> {
    server_with(kind, args, |c| c)
}

/// [`server`], on CPU `cpu` alone (see [`on_cpu`]).
pub fn server_on_cpu(kind: &str, args: &[String], cpu: usize) -> Result<(Proc, u16, u64)> {
    server_with(kind, args, |c| on_cpu(c, cpu))
}

fn client_cmd(peer: Peer, scenario: &str, args: &[String]) -> Result<Command> {
    if peer.is_node() {
        return Ok(node::command(peer, scenario, args));
    }
    let mut a = vec!["client".to_string(), peer.id().into(), scenario.into()];
    a.extend_from_slice(args);
    self_cmd(&a)
}

fn server_with(
    kind: &str,
    args: &[String],
    wrap: impl FnOnce(Command) -> Command,
) -> Result<(Proc, u16, u64)> {
    let mut a = vec!["server".to_string(), kind.into()];
    a.extend_from_slice(args);
    let mut p = Proc::spawn(&format!("{kind} server"), wrap(self_cmd(&a)?))?;
    let f = p.wait_for("listening", Duration::from_secs(10))?;
    let port = f.first().and_then(|v| v.parse().ok()).context("port")?;
    let t = f.get(1).and_then(|v| v.parse().ok()).context("stamp")?;
    Ok((p, port, t))
}

/// The timing of a burst into a counting sink (scenarios 1, 1b, 1c): waits
/// for the client's `start` (within `start_limit`) and the sink's `done`,
/// checks that the sink got all `bytes`, and returns the seconds between
/// the two stamps.
pub fn timed_burst(srv: &mut Proc, c: &mut Proc, bytes: u64, start_limit: Duration) -> Result<f64> {
    let start = c.wait_num("start", start_limit)?;
    let done = srv.wait_for("done", Duration::from_secs(300))?;
    let t_done: u64 = done.first().and_then(|v| v.parse().ok()).unwrap_or(0);
    let got: u64 = done.get(1).and_then(|v| v.parse().ok()).unwrap_or(0);
    if got != bytes {
        bail!("sink got {got} bytes, expected {bytes}");
    }
    Ok(t_done.saturating_sub(start) as f64 / 1e9)
}

/// Nanoseconds to milliseconds.
pub fn ms(ns: f64) -> f64 {
    ns / 1e6
}
