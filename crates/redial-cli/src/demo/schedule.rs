//! The demo's fault schedule: what to break when, scaled to the length of
//! the run, and how each fault is switched on the proxy.

use std::time::Duration;

use redial_chaos::{Direction, Proxy};

use crate::units::format_duration;

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

    pub(crate) fn apply(&self, proxy: &Proxy) -> anyhow::Result<()> {
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
