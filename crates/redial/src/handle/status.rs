//! Snapshots of a manager and its pools
//! ([`Manager::status`](crate::Manager::status),
//! [`Pool::status`](crate::Pool::status)): how many connections are in each state, how many
//! connect attempts are in flight, which endpoints are down and when they
//! are tried next. Built from the atomics each connection already keeps,
//! so a dashboard can take one every second.

use std::collections::HashMap;
use std::time::Instant;

use crate::endpoint::Endpoint;
use crate::events::EventKind;
use crate::shared::{Shared, State};

/// How many connections are in each [`State`].
///
/// ```
/// let c = redial::StateCounts::default();
/// assert_eq!(c.total(), 0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StateCounts {
    /// Connect attempts under way (or waiting for a place under the
    /// manager's cap on attempts in flight).
    pub connecting: usize,
    /// Up.
    pub connected: usize,
    /// Waiting for their next attempt.
    pub backing_off: usize,
    /// Ended, and not yet forgotten by the manager (a moment at most).
    pub closed: usize,
}

impl StateCounts {
    /// Every connection counted.
    ///
    /// ```
    /// assert_eq!(redial::StateCounts::default().total(), 0);
    /// ```
    pub fn total(&self) -> usize {
        self.connecting + self.connected + self.backing_off + self.closed
    }

    fn count(&mut self, s: State) {
        match s {
            State::Connecting => self.connecting += 1,
            State::Connected => self.connected += 1,
            State::BackingOff => self.backing_off += 1,
            State::Closed => self.closed += 1,
        }
    }
}

/// An endpoint none of whose connections is up, with at least one of them
/// waiting out a backoff.
///
/// ```no_run
/// # fn f(cm: redial::Manager) {
/// for down in cm.status().endpoints_down {
///     println!("{} down, next attempt {:?}", down.endpoint, down.next_attempt);
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EndpointDown {
    /// The endpoint, as written.
    pub endpoint: Endpoint,
    /// Its connections (pool members included).
    pub connections: usize,
    /// The soonest next attempt of any of them, when one has failed an
    /// attempt and is backing off; `None` after a loss whose reconnect
    /// starts at once, or while an attempt is under way.
    pub next_attempt: Option<Instant>,
}

/// A snapshot of one pool: its members by state, and how many of them
/// take sends now.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), redial::PoolError> {
/// let pool = redial::Manager::new().create_pool("cache")?;
/// let s = pool.status();
/// assert_eq!((s.name.as_str(), s.live, s.total), ("cache", 0, 0));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStatus {
    /// The pool's name.
    pub name: String,
    /// Members a pick or a send may use now
    /// ([`Pool::live`](crate::Pool::live)).
    pub live: usize,
    /// Every member.
    pub total: usize,
    /// Members by state.
    pub members: StateCounts,
}

/// A snapshot of a manager: its connections by state (pool members
/// included), attempts in flight, the endpoints that are down, and each
/// pool.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), redial::PoolError> {
/// let cm = redial::Manager::new();
/// cm.create_pool("cache")?;
/// let s = cm.status();
/// assert_eq!(s.connections.total(), 0);
/// assert_eq!(s.attempts_in_flight, 0);
/// assert!(s.endpoints_down.is_empty());
/// assert_eq!(s.pools[0].name, "cache");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Status {
    /// Every open connection by state.
    pub connections: StateCounts,
    /// Connect attempts in flight, under the manager's cap
    /// ([`ManagerBuilder::max_connecting`](crate::ManagerBuilder::max_connecting)).
    pub attempts_in_flight: usize,
    /// Endpoints with no connection up and one backing off, soonest next
    /// attempt first (those without one last).
    pub endpoints_down: Vec<EndpointDown>,
    /// Each pool, by name.
    pub pools: Vec<PoolStatus>,
}

/// Counts `conns` by state and finds the endpoints among them that are
/// down.
pub(crate) fn tally<'a>(
    conns: impl Iterator<Item = &'a Shared>,
) -> (StateCounts, Vec<EndpointDown>) {
    struct Ep {
        conns: usize,
        up: bool,
        backing_off: bool,
        next: Option<Instant>,
    }
    let mut counts = StateCounts::default();
    let mut eps: HashMap<&Endpoint, Ep> = HashMap::new();
    for s in conns {
        let state = s.state();
        counts.count(state);
        let e = eps.entry(&s.endpoint).or_insert(Ep {
            conns: 0,
            up: false,
            backing_off: false,
            next: None,
        });
        e.conns += 1;
        match state {
            State::Connected => e.up = true,
            State::BackingOff => {
                e.backing_off = true;
                if let Some(at) = s.info().next_attempt() {
                    e.next = Some(e.next.map_or(at, |n| n.min(at)));
                }
            }
            State::Connecting | State::Closed => {}
        }
    }
    let mut down: Vec<EndpointDown> = eps
        .into_iter()
        .filter(|(_, e)| !e.up && e.backing_off)
        .map(|(ep, e)| EndpointDown {
            endpoint: ep.clone(),
            connections: e.conns,
            next_attempt: e.next,
        })
        .collect();
    down.sort_by_key(|d| (d.next_attempt.is_none(), d.next_attempt));
    (counts, down)
}

impl Shared {
    /// Notes what an event says that a snapshot or the metrics need: the
    /// next attempt after a failed one. Called for every event, whether or
    /// not anyone subscribed.
    pub(crate) fn observe(&self, kind: &EventKind, at: Instant) {
        let next = match kind {
            EventKind::ConnectFailed {
                retry_in: Some(d), ..
            } => at.checked_add(*d),
            _ => None,
        };
        self.info().set_next_attempt(next);
        #[cfg(feature = "metrics")]
        {
            let held = self.queue().held();
            self.metrics.queued_now(held);
            self.metrics.event(kind, at, self.opts.stable_after);
        }
    }
}
