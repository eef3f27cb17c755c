//! `redial demo`: an echo server behind the fault proxy, a pool of
//! connections plus one single connection sending numbered messages, and a
//! schedule of faults — FIN, RST, refused connects, a blackhole the idle
//! timeout must notice, a slow link — with every reset and recovery shown
//! as it happens and a summary of where each message went.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context;
use redial::{
    Backoff, Close, Connection, Event, EventKind, Handler, Jitter, Manager, Options, Reset, Resume,
    Socket,
};
use redial_chaos::{Direction, Proxy};
use tokio::sync::watch;

use crate::echo::EchoServer;
use crate::output::{status, Elapsed, Paint};
use crate::table::{Align, Table};
use crate::tally::{message, Counts, Tally};
use crate::units::format_duration;

/// What `redial demo` runs.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// How long faults are injected (the drain and summary come after).
    pub duration: Duration,
    /// Connections in the pool (a single connection comes on top).
    pub connections: usize,
    /// Seed of the proxy's randomness and the connections' backoff jitter.
    pub seed: u64,
    /// Time between two messages on each connection.
    pub interval: Duration,
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig {
            duration: Duration::from_secs(15),
            connections: 3,
            seed: 42,
            interval: Duration::from_millis(20),
        }
    }
}

/// One fault the schedule switches.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// FIN every connection.
    CloseAll,
    /// RST every connection.
    ResetAll,
    /// Stop listening and RST every connection, so reconnects are refused.
    Refuse {
        /// How long until `Accept`.
        lasting: Duration,
    },
    /// Listen again.
    Accept,
    /// Nothing moves; only the idle timeout can tell.
    Blackhole {
        /// How long until the heal.
        lasting: Duration,
        /// The connections' idle timeout.
        idle: Duration,
    },
    /// Latency and a bandwidth cap both ways.
    Slow {
        /// Added one-way delay.
        latency: Duration,
        /// Bytes per second per direction and connection.
        bandwidth: u64,
        /// How long until the heal.
        lasting: Duration,
    },
    /// Everything back to normal.
    Heal,
}

/// An [`Action`] at a time since the start.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// When, from the start of the run.
    pub at: Duration,
    /// What.
    pub action: Action,
}

/// The idle timeout for a run of `total`: half the blackhole, at most 1 s,
/// at least 250 ms, so the blackhole is always noticed.
///
/// ```
/// use std::time::Duration;
/// let idle = redial_cli::demo::idle_timeout_for(Duration::from_secs(15));
/// assert_eq!(idle, Duration::from_secs(1));
/// ```
pub fn idle_timeout_for(total: Duration) -> Duration {
    let blackhole = total.mul_f64(2.0 / 15.0);
    (blackhole / 2).clamp(Duration::from_millis(250), Duration::from_secs(1))
}

/// The fault schedule for a run of `total`, scaled from the 15 s one: FIN at
/// 2 s, RST at 4 s, refused 6–8 s, blackhole 9.5–11.5 s, slow link 12–14 s.
///
/// ```
/// use std::time::Duration;
/// let steps = redial_cli::demo::schedule(Duration::from_secs(15));
/// assert_eq!(steps[0].at, Duration::from_secs(2));
/// assert!(steps.windows(2).all(|w| w[0].at <= w[1].at));
/// ```
pub fn schedule(total: Duration) -> Vec<Step> {
    let t = |s: f64| total.mul_f64(s / 15.0);
    let idle = idle_timeout_for(total);
    let step = |at: f64, action| Step { at: t(at), action };
    vec![
        step(2.0, Action::CloseAll),
        step(4.0, Action::ResetAll),
        step(6.0, Action::Refuse { lasting: t(2.0) }),
        step(8.0, Action::Accept),
        step(
            9.5,
            Action::Blackhole {
                lasting: t(2.0),
                idle,
            },
        ),
        step(11.5, Action::Heal),
        step(
            12.0,
            Action::Slow {
                latency: Duration::from_millis(100),
                // Above the ~450 B/s offered per connection: the link is
                // slow, not saturated, so no backlog outlives the phase.
                bandwidth: 1024,
                lasting: t(2.0),
            },
        ),
        step(14.0, Action::Heal),
    ]
}

impl Action {
    /// What the demo prints when it switches this fault.
    pub fn describe(&self) -> String {
        match self {
            Action::CloseAll => "FIN: the proxy closes every connection".into(),
            Action::ResetAll => "RST: the proxy resets every connection".into(),
            Action::Refuse { lasting } => format!(
                "refuse: RST every connection and refuse new ones for {}",
                format_duration(*lasting)
            ),
            Action::Accept => "accept: the proxy listens again".into(),
            Action::Blackhole { lasting, idle } => format!(
                "blackhole for {}: nothing moves, no FIN, no RST; the {} idle timeout must notice",
                format_duration(*lasting),
                format_duration(*idle)
            ),
            Action::Slow {
                latency,
                bandwidth,
                lasting,
            } => format!(
                "slow link for {}: +{} latency, {} B/s each way (slow is not broken: no reset expected)",
                format_duration(*lasting),
                format_duration(*latency),
                bandwidth
            ),
            Action::Heal => "heal: faults off".into(),
        }
    }

    fn apply(&self, proxy: &Proxy) -> anyhow::Result<()> {
        match self {
            Action::CloseAll => proxy.close_all(),
            Action::ResetAll => proxy.reset_all(),
            Action::Refuse { .. } => {
                proxy.refuse();
                proxy.reset_all();
            }
            Action::Accept => proxy.accept()?,
            Action::Blackhole { .. } => proxy.blackhole(),
            Action::Slow {
                latency, bandwidth, ..
            } => {
                proxy.latency(Direction::Both, *latency, Duration::from_millis(20));
                proxy.bandwidth(Direction::Both, *bandwidth);
            }
            Action::Heal => proxy.heal()?,
        }
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Feeds one connection's [`Tally`].
struct Counted {
    tally: Arc<Mutex<Tally>>,
}

impl Handler for Counted {
    fn on_connect(&mut self, _sock: &Socket) {
        lock(&self.tally).connected();
    }
    fn on_data(&mut self, _sock: &Socket, data: &[u8]) {
        lock(&self.tally).data(data);
    }
    fn on_reset(&mut self, reset: &Reset) -> Resume {
        lock(&self.tally).reset(reset);
        Resume::Reconnect
    }
    fn on_close(&mut self, close: &Close) {
        lock(&self.tally).closed(close);
    }
}

struct Member {
    label: String,
    conn: Connection,
    tally: Arc<Mutex<Tally>>,
}

/// The outcome of a run: one row per connection.
#[derive(Debug, Clone)]
pub struct Report {
    /// Label and counts of each connection.
    pub rows: Vec<(String, Counts)>,
    /// How long the run took, drain included.
    pub took: Duration,
}

impl Report {
    /// All rows added up.
    pub fn total(&self) -> Counts {
        let mut t = Counts::default();
        for (_, c) in &self.rows {
            t.add(c);
        }
        t
    }

    /// Nothing lost silently, nothing duplicated, nothing made up.
    pub fn is_clean(&self) -> bool {
        let t = self.total();
        t.lost_silently() == 0 && t.duplicates == 0 && t.strays == 0
    }

    /// The summary table and the lines under it.
    pub fn render(&self, paint: Paint) -> String {
        let mut table = Table::new(&[
            ("connection", Align::Left),
            ("resets", Align::Right),
            ("recovered", Align::Right),
            ("sent", Align::Right),
            ("echoed", Align::Right),
            ("handed back", Align::Right),
            ("lost in flight", Align::Right),
        ]);
        let row = |label: &str, c: &Counts| {
            vec![
                label.to_string(),
                c.resets.to_string(),
                c.recoveries.to_string(),
                c.sent.to_string(),
                c.echoed.to_string(),
                c.handed_back().to_string(),
                c.in_flight.to_string(),
            ]
        };
        for (label, c) in &self.rows {
            table.row(row(label, c));
        }
        table.rule();
        let total = self.total();
        table.row(row("total", &total));
        let mut out = table.render();
        out.push('\n');
        out.push_str(&format!(
            "handed back    = refused by send() while down ({}) + returned in Reset/Close::unsent ({})\n",
            total.refused, total.returned
        ));
        out.push_str(
            "lost in flight = written to the kernel on a connection that was then reset, never echoed (Reset::written)\n",
        );
        if total.unanswered > 0 {
            out.push_str(&format!(
                "unanswered     = written on a live connection, not echoed by the end: {}\n",
                total.unanswered
            ));
        }
        if total.duplicates > 0 || total.strays > 0 {
            out.push_str(&paint.red(&format!(
                "duplicated: {}, never sent: {}\n",
                total.duplicates, total.strays
            )));
        }
        let lost = total.lost_silently();
        let line = format!(
            "lost silently: {lost}   (= sent {} - echoed {} - handed back {} - lost in flight {}{})",
            total.sent,
            total.echoed,
            total.handed_back(),
            total.in_flight,
            if total.unanswered > 0 {
                format!(" - unanswered {}", total.unanswered)
            } else {
                String::new()
            }
        );
        out.push_str(&if lost == 0 {
            paint.green(&line)
        } else {
            paint.red(&line)
        });
        out.push('\n');
        out
    }
}

/// Prints resets and recoveries as the manager reports them.
async fn narrate(
    mut events: redial::Events,
    labels: Arc<Mutex<HashMap<u64, String>>>,
    clock: Elapsed,
    paint: Paint,
) {
    #[derive(Default)]
    struct Down {
        since: Option<Instant>,
        failures: u32,
    }
    let mut down: HashMap<u64, Down> = HashMap::new();
    while let Some(Event {
        connection,
        at,
        kind,
        ..
    }) = events.recv().await
    {
        let label = lock(&labels)
            .get(&connection)
            .cloned()
            .unwrap_or_else(|| format!("#{connection}"));
        let stamp = paint.dim(&Elapsed::format(clock.at(at)));
        let d = down.entry(connection).or_default();
        let line = match kind {
            EventKind::Connected { generation: 1, .. } => {
                format!("{stamp}  {label:<7} connected")
            }
            EventKind::Connected { .. } => {
                let after = d
                    .since
                    .map(|s| format_duration(at.saturating_duration_since(s)))
                    .unwrap_or_default();
                let failed = match d.failures {
                    0 => String::new(),
                    1 => " (1 refused attempt)".into(),
                    n => format!(" ({n} refused attempts)"),
                };
                *d = Down::default();
                format!(
                    "{stamp}  {label:<7} {}{failed}",
                    paint.green(&format!("back after {after}"))
                )
            }
            EventKind::Reset {
                reason,
                uptime,
                unsent_bytes,
            } => {
                d.since = Some(at);
                d.failures = 0;
                let back = if unsent_bytes > 0 {
                    format!(", {unsent_bytes} unsent bytes handed back")
                } else {
                    String::new()
                };
                format!(
                    "{stamp}  {label:<7} {} after {} up{back}",
                    paint.red(&format!("reset ({reason})")),
                    format_duration(uptime)
                )
            }
            EventKind::ConnectFailed {
                error, retry_in, ..
            } => {
                d.failures += 1;
                if d.failures > 1 {
                    continue;
                }
                let retry = retry_in
                    .map(|r| format!(", retrying in {}", format_duration(r)))
                    .unwrap_or_default();
                format!("{stamp}  {label:<7} connect failed: {error}{retry}")
            }
            EventKind::Closed { reason, .. } => {
                if reason == redial::CloseReason::Disconnected {
                    continue;
                }
                format!(
                    "{stamp}  {label:<7} {}",
                    paint.red(&format!("closed: {reason}"))
                )
            }
            _ => continue,
        };
        status(&line);
    }
}

/// Runs the demo and returns its report; progress goes to stderr.
///
/// # Errors
///
/// When the echo server or the proxy cannot start, or a connection cannot
/// be made (bad options).
pub async fn run(config: DemoConfig, paint: Paint) -> anyhow::Result<Report> {
    let clock = Elapsed::start();
    let echo = EchoServer::start()
        .await
        .context("could not start the echo server")?;
    let proxy = Proxy::builder()
        .seed(config.seed)
        .start("127.0.0.1:0", echo.addr())
        .await
        .context("could not start the fault proxy")?;
    let idle = idle_timeout_for(config.duration);
    status(&paint.bold(&format!(
        "redial demo: echo server {} behind the fault proxy {} (seed {})",
        echo.addr(),
        proxy.local_addr(),
        config.seed
    )));
    status(&format!(
        "pool \"demo\" of {} connections + 1 single connection, a numbered message on each every {}, idle timeout {}, {} of faults",
        config.connections,
        format_duration(config.interval),
        format_duration(idle),
        format_duration(config.duration),
    ));

    let cm = Manager::new();
    let labels = Arc::new(Mutex::new(HashMap::new()));
    // Subscribed now, narrated once every label is known: the events wait
    // in the channel meanwhile.
    let events = cm.events();

    let backoff = Backoff::new(Duration::from_millis(50), 2.0, Duration::from_secs(1))?
        .with_jitter(Jitter::Proportional(0.2));
    let opts = |i: usize| {
        Options::new()
            .backoff(backoff)
            .idle_timeout(Some(idle))
            .connect_timeout(Duration::from_secs(2))
            .close_grace(Duration::from_secs(1))
            .seed(config.seed ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15))
    };
    let pool = cm.create_pool("demo")?;
    let mut members = Vec::new();
    for i in 0..=config.connections {
        let tally = Arc::new(Mutex::new(Tally::default()));
        let handler = Counted {
            tally: tally.clone(),
        };
        let (label, conn) = if i < config.connections {
            let c = pool.add_connection_with(proxy.local_addr(), handler, opts(i))?;
            (format!("pool#{}", i + 1), c)
        } else {
            let c = cm.connect_with(proxy.local_addr(), handler, opts(i))?;
            ("single".to_string(), c)
        };
        lock(&labels).insert(conn.id(), label.clone());
        members.push(Member { label, conn, tally });
    }
    let narrator = tokio::spawn(narrate(events, labels.clone(), clock, paint));
    let single = members.last().map(|m| m.conn.clone());
    let all_up = async {
        pool.wait_live(config.connections).await;
        if let Some(single) = single {
            let _ = single.wait_connected().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), all_up)
        .await
        .context("the connections did not come up within 5s")?;

    // The producer: one numbered message per connection per tick.
    let (stop, mut stopped) = watch::channel(false);
    let producer = {
        let targets: Vec<_> = members
            .iter()
            .map(|m| (m.conn.clone(), m.tally.clone()))
            .collect();
        let interval = config.interval;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut n = 0u64;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stopped.changed() => return,
                }
                for (conn, tally) in &targets {
                    let result = conn.send(message(n));
                    lock(tally).sent(result);
                }
                n += 1;
            }
        })
    };

    let start = tokio::time::Instant::now();
    for step in schedule(config.duration) {
        tokio::time::sleep_until(start + step.at).await;
        status(&format!(
            "{}  {}",
            paint.dim(&clock.stamp()),
            paint.yellow(&format!("── {}", step.action.describe()))
        ));
        step.action.apply(&proxy)?;
    }
    tokio::time::sleep_until(start + config.duration).await;
    let _ = stop.send(true);
    let _ = producer.await;
    proxy.heal()?;
    status(&format!(
        "{}  {}",
        paint.dim(&clock.stamp()),
        paint.yellow("── stop sending, waiting for the last echoes")
    ));

    // Drain: until every message is echoed or accounted for, at most 3 s.
    let settled = |members: &[Member]| {
        members.iter().all(|m| {
            let c = lock(&m.tally).counts(m.conn.stats().bytes_out);
            c.lost_silently() == 0 && c.unanswered == 0
        })
    };
    let drain_until = tokio::time::Instant::now() + Duration::from_secs(3);
    while !settled(&members) && tokio::time::Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(3), cm.disconnect_all()).await;
    narrator.abort();

    let rows = members
        .iter()
        .map(|m| {
            (
                m.label.clone(),
                lock(&m.tally).counts(m.conn.stats().bytes_out),
            )
        })
        .collect();
    proxy.shutdown().await;
    drop(echo);
    Ok(Report {
        rows,
        took: clock.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_scales_with_the_run() {
        let short = schedule(Duration::from_secs(8));
        let long = schedule(Duration::from_secs(15));
        assert_eq!(short.len(), long.len());
        assert!(short.iter().all(|s| s.at < Duration::from_secs(8)));
        assert!(long.iter().all(|s| s.at < Duration::from_secs(15)));
        let Action::Blackhole { lasting, idle } = &short[4].action else {
            panic!("step 5 is the blackhole: {:?}", short[4]);
        };
        assert!(idle < lasting, "{idle:?} {lasting:?}");
    }

    #[test]
    fn idle_timeout_stays_in_range() {
        assert_eq!(
            idle_timeout_for(Duration::from_secs(2)),
            Duration::from_millis(250)
        );
        assert_eq!(
            idle_timeout_for(Duration::from_secs(600)),
            Duration::from_secs(1)
        );
    }
}
