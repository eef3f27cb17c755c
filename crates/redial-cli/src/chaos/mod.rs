//! `redial chaos`: the fault proxy as a tool. Faults come from flags (some
//! on a schedule) and from commands typed on stdin, one a line.
//!
//! ```
//! use redial_cli::chaos::ChaosCommand;
//! use std::time::Duration;
//!
//! assert_eq!("reset".parse::<ChaosCommand>().unwrap(), ChaosCommand::Reset);
//! assert_eq!(
//!     "latency 50ms".parse::<ChaosCommand>().unwrap(),
//!     ChaosCommand::Latency(Duration::from_millis(50), Duration::ZERO)
//! );
//! assert!("latency soon".parse::<ChaosCommand>().unwrap_err().contains("soon"));
//! ```

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use redial_chaos::{Direction, Proxy, Stats};
use tokio::io::AsyncBufReadExt;

mod command;

pub use command::{ChaosCommand, COMMANDS_HELP};

use crate::output::{stamped, Paint};
use crate::units::{format_duration, format_size};

/// `up`, `down` or `both` (also `upstream`, `downstream`).
///
/// ```
/// use redial_chaos::Direction;
/// assert_eq!(redial_cli::chaos::parse_direction("down"), Some(Direction::Downstream));
/// ```
pub fn parse_direction(s: &str) -> Option<Direction> {
    match s.to_ascii_lowercase().as_str() {
        "up" | "upstream" => Some(Direction::Upstream),
        "down" | "downstream" => Some(Direction::Downstream),
        "both" => Some(Direction::Both),
        _ => None,
    }
}

/// Faults given as flags.
#[derive(Debug, Clone)]
pub struct ChaosSchedule {
    /// RST every connection this often.
    pub reset_every: Option<Duration>,
    /// FIN every connection this often.
    pub close_every: Option<Duration>,
    /// A random fault this often (after healing the last one).
    pub random_every: Option<Duration>,
    /// Constant latency.
    pub latency: Option<Duration>,
    /// Random extra latency.
    pub jitter: Option<Duration>,
    /// Constant bandwidth cap, bytes per second.
    pub bandwidth: Option<u64>,
    /// Direction of latency, jitter and bandwidth.
    pub direction: Direction,
    /// RST each connection after this many bytes.
    pub cut_after: Option<u64>,
    /// Hold closes this long.
    pub slow_close: Option<Duration>,
    /// Blackhole from this long after the start...
    pub blackhole_after: Option<Duration>,
    /// ...for this long (forever when `None`).
    pub blackhole_for: Option<Duration>,
    /// Refuse connects from this long after the start...
    pub refuse_after: Option<Duration>,
    /// ...for this long (forever when `None`).
    pub refuse_for: Option<Duration>,
}

impl Default for ChaosSchedule {
    fn default() -> Self {
        ChaosSchedule {
            reset_every: None,
            close_every: None,
            random_every: None,
            latency: None,
            jitter: None,
            bandwidth: None,
            direction: Direction::Both,
            cut_after: None,
            slow_close: None,
            blackhole_after: None,
            blackhole_for: None,
            refuse_after: None,
            refuse_for: None,
        }
    }
}

impl ChaosSchedule {
    /// Switches on the constant faults (latency, bandwidth, cut, slow
    /// close); returns a description of each.
    pub fn apply_constant(&self, proxy: &Proxy) -> Vec<String> {
        let mut said = Vec::new();
        if self.latency.is_some() || self.jitter.is_some() {
            let (d, j) = (
                self.latency.unwrap_or_default(),
                self.jitter.unwrap_or_default(),
            );
            proxy.latency(self.direction, d, j);
            said.push(format!("{} {}", latency_text(d, j), way(self.direction)));
        }
        if let Some(b) = self.bandwidth {
            proxy.bandwidth(self.direction, b);
            said.push(format!(
                "bandwidth {}/s {}",
                format_size(b),
                way(self.direction)
            ));
        }
        if let Some(b) = self.cut_after {
            proxy.cut_after(b);
            said.push(format!("cut each connection after {}", format_size(b)));
        }
        if let Some(d) = self.slow_close {
            proxy.slow_close(d);
            said.push(format!("hold closes for {}", format_duration(d)));
        }
        said
    }
}

fn latency_text(delay: Duration, jitter: Duration) -> String {
    if jitter.is_zero() {
        format!("latency {}", format_duration(delay))
    } else {
        format!(
            "latency {} + up to {} jitter",
            format_duration(delay),
            format_duration(jitter)
        )
    }
}

fn way(d: Direction) -> &'static str {
    match d {
        Direction::Upstream => "upstream",
        Direction::Downstream => "downstream",
        _ => "both ways",
    }
}

/// What the proxy listens on and forwards to, with its faults.
#[derive(Debug, Clone)]
pub struct ChaosConfig {
    /// Listen address (port 0 for any).
    pub listen: SocketAddr,
    /// Server to forward to.
    pub upstream: SocketAddr,
    /// Seed of jitter and random faults.
    pub seed: u64,
    /// Faults from flags.
    pub schedule: ChaosSchedule,
}

/// The proxy's counters as one line.
///
/// ```
/// let line = redial_cli::chaos::stats_line(&redial_chaos::Stats::default());
/// assert!(line.starts_with("accepted 0, live 0"));
/// ```
pub fn stats_line(s: &Stats) -> String {
    format!(
        "accepted {}, live {}, upstream {} B, downstream {} B, upstream connect failures {}",
        s.accepted, s.live, s.bytes_upstream, s.bytes_downstream, s.upstream_failures
    )
}

/// Runs one command. `Ok(false)` for `quit`.
///
/// # Errors
///
/// When the proxy cannot listen again (`accept`, `heal`).
pub fn execute(proxy: &Proxy, cmd: &ChaosCommand, paint: Paint) -> anyhow::Result<bool> {
    let say = |msg: String| stamped(paint, &paint.yellow(&msg));
    match cmd {
        ChaosCommand::Reset => {
            proxy.reset_all();
            say(format!(
                "reset every connection ({} live)",
                proxy.stats().live
            ));
        }
        ChaosCommand::Close => {
            proxy.close_all();
            say(format!(
                "closed every connection ({} live)",
                proxy.stats().live
            ));
        }
        ChaosCommand::Refuse => {
            proxy.refuse();
            say("refusing new connections".into());
        }
        ChaosCommand::Accept => {
            proxy.accept()?;
            say(format!("accepting connections on {}", proxy.local_addr()));
        }
        ChaosCommand::Blackhole => {
            proxy.blackhole();
            say("blackhole: nothing moves until `heal`".into());
        }
        ChaosCommand::Heal => {
            proxy.heal()?;
            stamped(paint, &paint.green("healed: every fault off"));
        }
        ChaosCommand::Latency(d, j) => {
            proxy.latency(Direction::Both, *d, *j);
            say(format!("{} both ways", latency_text(*d, *j)));
        }
        ChaosCommand::Bandwidth(b) => {
            proxy.bandwidth(Direction::Both, *b);
            say(if *b == 0 {
                "bandwidth unlimited".into()
            } else {
                format!("bandwidth {}/s both ways", format_size(*b))
            });
        }
        ChaosCommand::Slice(n, d) => {
            let n = usize::try_from(*n).unwrap_or(usize::MAX);
            proxy.slice(Direction::Both, n, *d);
            say(format!(
                "writes sliced to {n} bytes, {} apart",
                format_duration(*d)
            ));
        }
        ChaosCommand::CutAfter(b) => {
            proxy.cut_after(*b);
            say(format!("cut each connection after {}", format_size(*b)));
        }
        ChaosCommand::SlowClose(d) => {
            proxy.slow_close(*d);
            say(format!("hold closes for {}", format_duration(*d)));
        }
        ChaosCommand::Random => {
            let f = proxy.random_fault()?;
            say(format!("random fault: {f:?}"));
        }
        ChaosCommand::Stats => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{}", stats_line(&proxy.stats()));
            let _ = out.flush();
        }
        ChaosCommand::Help => stamped(paint, COMMANDS_HELP),
        ChaosCommand::Quit => return Ok(false),
    }
    Ok(true)
}

/// Ticks every `period`, the first one `period` from now. The period
/// saturates at [`MAX_DELAY`](redial_chaos::MAX_DELAY), so the interval's
/// clock arithmetic cannot overflow whatever the schedule says.
fn ticks(period: Duration) -> tokio::time::Interval {
    let period = period.min(redial_chaos::MAX_DELAY);
    let now = tokio::time::Instant::now();
    tokio::time::interval_at(now.checked_add(period).unwrap_or(now), period)
}

/// Spawns the scheduled faults; they end with the returned tasks.
fn spawn_schedule(
    proxy: &Arc<Proxy>,
    s: &ChaosSchedule,
    paint: Paint,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    let mut every = |period: Option<Duration>, cmd: ChaosCommand| {
        if let Some(p) = period.filter(|p| !p.is_zero()) {
            let proxy = proxy.clone();
            tasks.push(tokio::spawn(async move {
                let mut tick = ticks(p);
                loop {
                    tick.tick().await;
                    let _ = execute(&proxy, &cmd, paint);
                }
            }));
        }
    };
    every(s.reset_every, ChaosCommand::Reset);
    every(s.close_every, ChaosCommand::Close);
    if let Some(p) = s.random_every.filter(|p| !p.is_zero()) {
        let (proxy, s2) = (proxy.clone(), s.clone());
        tasks.push(tokio::spawn(async move {
            let mut tick = ticks(p);
            loop {
                tick.tick().await;
                let _ = proxy.heal();
                s2.apply_constant(&proxy);
                let _ = execute(&proxy, &ChaosCommand::Random, paint);
            }
        }));
    }
    let mut window = |after: Option<Duration>, lasting: Option<Duration>, on: ChaosCommand| {
        let Some(after) = after else { return };
        let (proxy, s2) = (proxy.clone(), s.clone());
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let _ = execute(&proxy, &on, paint);
            if let Some(d) = lasting {
                tokio::time::sleep(d).await;
                if on == ChaosCommand::Refuse {
                    let _ = execute(&proxy, &ChaosCommand::Accept, paint);
                } else {
                    let _ = execute(&proxy, &ChaosCommand::Heal, paint);
                    for line in s2.apply_constant(&proxy) {
                        stamped(paint, &paint.yellow(&format!("again: {line}")));
                    }
                }
            }
        }));
    };
    window(s.blackhole_after, s.blackhole_for, ChaosCommand::Blackhole);
    window(s.refuse_after, s.refuse_for, ChaosCommand::Refuse);
    tasks
}

/// Runs the proxy until `quit`, Ctrl-C or SIGTERM, printing a line for
/// each accepted connection.
///
/// # Errors
///
/// When the proxy cannot listen (the error names the address).
pub async fn run(config: ChaosConfig, paint: Paint) -> anyhow::Result<()> {
    let accepted = AtomicU64::new(0);
    let proxy = Arc::new(
        Proxy::builder()
            .seed(config.seed)
            .on_accept(move |peer| {
                let n = accepted.fetch_add(1, Ordering::Relaxed) + 1;
                stamped(paint, &format!("connection {n} accepted from {peer}"));
            })
            .start(config.listen, config.upstream)
            .await
            .context("cannot start the proxy")?,
    );
    stamped(
        paint,
        &format!(
            "listening on {}, forwarding to {} (seed {}); type `help` for commands",
            proxy.local_addr(),
            config.upstream,
            config.seed
        ),
    );
    for line in config.schedule.apply_constant(&proxy) {
        stamped(paint, &paint.yellow(&line));
    }
    let tasks = spawn_schedule(&proxy, &config.schedule, paint);

    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = true;
    let stop = crate::stop::requested();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            line = lines.next_line(), if stdin_open => match line {
                Ok(Some(line)) => {
                    if line.trim().is_empty() {
                        continue;
                    }
                    match line.parse::<ChaosCommand>() {
                        Ok(cmd) => match execute(&proxy, &cmd, paint) {
                            Ok(true) => {}
                            Ok(false) => break,
                            Err(e) => stamped(paint, &paint.red(&format!("{e:#}"))),
                        },
                        Err(e) => stamped(paint, &paint.red(&e)),
                    }
                }
                // No more commands: keep proxying until a signal.
                Ok(None) | Err(_) => stdin_open = false,
            },
        }
    }
    for t in &tasks {
        t.abort();
    }
    stamped(paint, &format!("stopping; {}", stats_line(&proxy.stats())));
    proxy.shutdown().await;
    Ok(())
}
