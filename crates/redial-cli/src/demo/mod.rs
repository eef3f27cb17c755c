//! `redial demo`: an echo server behind the fault proxy, a pool of
//! connections plus one single connection sending numbered messages, and a
//! schedule of faults — FIN, RST, refused connects, a blackhole the idle
//! timeout must notice, a slow link — with every reset and recovery shown
//! as it happens and a summary of where each message went.

pub mod account;
pub mod echo;
pub mod narrate;
pub mod report;
pub mod schedule;
pub mod tally;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context;
use redial::{
    Backoff, Close, Connection, Handler, Jitter, Manager, Options, Pool, Reset, Resume, Socket,
};
use redial_chaos::Proxy;
use tokio::sync::watch;

use crate::demo::echo::EchoServer;
use crate::demo::tally::{message, Tally};
use crate::output::{status, Elapsed, Paint};
use crate::units::format_duration;

pub use crate::demo::report::Report;
pub use crate::demo::schedule::{idle_timeout_for, schedule, Action, Step};

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
    announce(&config, &paint, &echo, &proxy, idle);

    let cm = Manager::new();
    // Subscribed now, narrated once every label is known: the events wait
    // in the channel meanwhile.
    let events = cm.events();
    let (pool, members, labels) = connect_members(&cm, &config, &proxy, idle)?;
    let narrator = tokio::spawn(crate::demo::narrate::narrate(events, labels, clock, paint));
    wait_all_up(&pool, &config, &members).await?;

    let (stop, stopped) = watch::channel(false);
    let producer = spawn_producer(&members, config.interval, stopped);
    inject_faults(&config, &paint, &clock, &proxy).await?;
    let _ = stop.send(true);
    let _ = producer.await;
    proxy.heal()?;
    status(&format!(
        "{}  {}",
        paint.dim(&clock.stamp()),
        paint.yellow("── stop sending, waiting for the last echoes")
    ));

    drain(&members).await;
    let _ = tokio::time::timeout(Duration::from_secs(3), cm.disconnect_all()).await;
    narrator.abort();

    let rows = members
        .iter()
        .map(|m| {
            // Read after the close: every byte the connection wrote.
            let mut t = lock(&m.tally);
            t.finish(m.conn.stats().bytes_out);
            (m.label.clone(), t.counts(), t.notes().to_vec())
        })
        .collect();
    proxy.shutdown().await;
    drop(echo);
    Ok(Report {
        rows,
        took: clock.elapsed(),
    })
}

/// Says what runs where, and with which settings.
fn announce(config: &DemoConfig, paint: &Paint, echo: &EchoServer, proxy: &Proxy, idle: Duration) {
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
}

/// The connection labels by id, for the narrator.
type Labels = Arc<Mutex<HashMap<u64, String>>>;

/// The pool "demo" of `config.connections` members and one single
/// connection after them, all through the proxy, each with a label.
fn connect_members(
    cm: &Manager,
    config: &DemoConfig,
    proxy: &Proxy,
    idle: Duration,
) -> anyhow::Result<(Pool, Vec<Member>, Labels)> {
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
    let labels: Labels = Arc::default();
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
    Ok((pool, members, labels))
}

/// Waits until the pool's members and the single connection are up, at
/// most 5 s.
async fn wait_all_up(pool: &Pool, config: &DemoConfig, members: &[Member]) -> anyhow::Result<()> {
    let single = members.last().map(|m| m.conn.clone());
    let all_up = async {
        pool.wait_live(config.connections).await;
        if let Some(single) = single {
            let _ = single.wait_connected().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), all_up)
        .await
        .context("the connections did not come up within 5s")
}

/// The producer: one numbered message per connection per tick, until
/// `stopped` changes.
fn spawn_producer(
    members: &[Member],
    interval: Duration,
    mut stopped: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let targets: Vec<_> = members
        .iter()
        .map(|m| (m.conn.clone(), m.tally.clone()))
        .collect();
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
                // Under the tally's lock: a reset reported meanwhile
                // finds the message where it is.
                let mut t = lock(tally);
                t.sent(n, conn.send(message(n)));
            }
            n += 1;
        }
    })
}

/// Applies the fault schedule for `config.duration`, announcing each step.
async fn inject_faults(
    config: &DemoConfig,
    paint: &Paint,
    clock: &Elapsed,
    proxy: &Proxy,
) -> anyhow::Result<()> {
    let start = tokio::time::Instant::now();
    for step in schedule(config.duration) {
        tokio::time::sleep_until(start + step.at).await;
        status(&format!(
            "{}  {}",
            paint.dim(&clock.stamp()),
            paint.yellow(&format!("── {}", step.action.describe()))
        ));
        step.action.apply(proxy)?;
    }
    tokio::time::sleep_until(start + config.duration).await;
    Ok(())
}

/// Waits until every message is echoed or accounted for, at most 3 s.
async fn drain(members: &[Member]) {
    let settled = || members.iter().all(|m| lock(&m.tally).waiting() == 0);
    let drain_until = tokio::time::Instant::now() + Duration::from_secs(3);
    while !settled() && tokio::time::Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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
