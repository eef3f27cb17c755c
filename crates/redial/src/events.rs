//! [`Manager::events`](crate::Manager::events): every state change of every
//! connection, for dashboards, logs and tests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::broadcast;

use crate::endpoint::Endpoint;
use crate::reset::{CloseReason, ResetReason};

/// One state change of one connection.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Event {
    /// The connection's id ([`Connection::id`](crate::Connection::id)).
    pub connection: u64,
    /// Where it connects.
    pub endpoint: Endpoint,
    /// Its pool, if any.
    pub pool: Option<Arc<str>>,
    /// When it happened.
    pub at: Instant,
    /// What happened.
    pub kind: EventKind,
}

/// What happened to a connection.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum EventKind {
    /// A connect attempt started.
    Connecting {
        /// Attempt number within the failure streak.
        attempt: u32,
    },
    /// Connected and `on_connect` has run.
    Connected {
        /// Which connection this is (1 for the first).
        generation: u64,
        /// The address reached (`None` for Unix sockets).
        peer: Option<SocketAddr>,
    },
    /// A connect attempt failed.
    ConnectFailed {
        /// Attempt number within the failure streak.
        attempt: u32,
        /// The error, as text.
        error: String,
        /// Delay before the next attempt; `None` when the give-up policy tripped.
        retry_in: Option<Duration>,
        /// The backoff level `retry_in` was drawn at: 0 for the initial
        /// delay, one more per step up the schedule. It starts over after
        /// a connection that stayed up
        /// [`Options::stable_after`](crate::Options::stable_after) or that
        /// was made after failed attempts (an outage ended).
        level: u32,
    },
    /// A live connection was lost.
    Reset {
        /// Why.
        reason: ResetReason,
        /// How long it had been up.
        uptime: Duration,
        /// Bytes handed back in `Reset::unsent` (the partial chunk included).
        unsent_bytes: usize,
    },
    /// Ended for good.
    Closed {
        /// Why.
        reason: CloseReason,
        /// Bytes handed back in `Close::unsent`.
        unsent_bytes: usize,
    },
    /// A connection past its [`Options::max_lifetime`](crate::Options::max_lifetime)
    /// was replaced: the new socket was made first, then this one (of
    /// `generation`) flushed what was queued on it and closed. Nothing was
    /// lost; `Connected` for the new socket follows.
    Recycled {
        /// Which connection of this handle was replaced.
        generation: u64,
        /// How long it had been up.
        uptime: Duration,
    },
    /// A pool that follows a name made this member for an address the
    /// name now resolves to.
    MemberAdded {
        /// The address.
        address: SocketAddr,
    },
    /// A pool that follows a name is draining this member: its address is
    /// gone from the name. It takes no new sends; what is queued is
    /// flushed, then it closes.
    MemberDraining {
        /// The address.
        address: SocketAddr,
    },
    /// A pool that follows a name could not resolve it and keeps its
    /// members (`connection` is 0: no one connection is meant).
    ResolveFailed {
        /// Why.
        error: String,
        /// Addresses kept from the last lookup that succeeded.
        kept: usize,
    },
}

/// A subscription to a manager's events.
///
/// ```no_run
/// # async fn f(cm: redial::Manager) {
/// let mut events = cm.events();
/// while let Some(e) = events.recv().await {
///     println!("#{} {}: {:?}", e.connection, e.endpoint, e.kind);
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct Events {
    rx: broadcast::Receiver<Event>,
    missed: u64,
}

impl Events {
    /// How many events a slow subscriber may fall behind before it starts
    /// missing the oldest ones (it is told how many with [`Events::missed`]).
    ///
    /// Value: 4096 events.
    ///
    /// ```
    /// assert_eq!(redial::Events::CAPACITY, 4096);
    /// ```
    pub const CAPACITY: usize = 4096;
}

impl Events {
    pub(crate) fn new(rx: broadcast::Receiver<Event>) -> Self {
        Events { rx, missed: 0 }
    }

    /// The next event; `None` once the manager is gone.
    ///
    /// ```no_run
    /// # async fn f(cm: redial::Manager) {
    /// let mut events = cm.events();
    /// if let Some(e) = events.recv().await {
    ///     println!("{:?}", e.kind);
    /// }
    /// # }
    /// ```
    pub async fn recv(&mut self) -> Option<Event> {
        loop {
            match self.rx.recv().await {
                Ok(e) => return Some(e),
                Err(broadcast::error::RecvError::Lagged(n)) => self.missed += n,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// The next event if one is waiting.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let cm = redial::Manager::new();
    /// let mut events = cm.events();
    /// assert!(events.try_recv().is_none()); // nothing has happened yet
    /// # }
    /// ```
    pub fn try_recv(&mut self) -> Option<Event> {
        loop {
            match self.rx.try_recv() {
                Ok(e) => return Some(e),
                Err(broadcast::error::TryRecvError::Lagged(n)) => self.missed += n,
                Err(_) => return None,
            }
        }
    }

    /// Events this subscriber missed because it fell more than
    /// [`Events::CAPACITY`] behind.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let cm = redial::Manager::new();
    /// let mut events = cm.events();
    /// assert_eq!(events.missed(), 0);
    /// # }
    /// ```
    pub fn missed(&self) -> u64 {
        self.missed
    }
}
