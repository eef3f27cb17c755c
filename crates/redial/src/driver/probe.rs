//! One probe per endpoint during an outage.
//!
//! When connect attempts to an endpoint fail, one of its connections (the
//! prober) keeps trying on its backoff schedule and the others wait without
//! attempts of their own; the first success releases them all (through the
//! manager's cap on attempts in flight). Ten thousand connections to a dead
//! server then cost one connection's attempts, not ten thousand schedules'
//! worth of SYNs, timers and callbacks.
//!
//! The same holds from the moment connections are lost: a connection that
//! backs off while another connection to the endpoint is due to attempt no
//! later than it (the scout) waits for that attempt's verdict instead of
//! keeping a timer of its own. When a server dies with ten thousand
//! connections, one scout finds it down and the rest are parked at once,
//! without a timer firing for each of them; when the scout gets through,
//! the others go back to their own schedules.
//!
//! Only connections that never give up take part: one with `max_attempts`
//! or `give_up_after` counts its own attempts, so it always makes them.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::Notify;

use crate::endpoint::Endpoint;

#[derive(Default)]
struct Health {
    /// The last attempt to this endpoint failed and none succeeded since.
    down: bool,
    /// The connection that probes while it is down (0: none).
    prober: u64,
    /// The backing-off connection due to attempt first (0: none), and when.
    scout: u64,
    scout_at: Option<Instant>,
    /// Connections wait for the scout's verdict: its success must wake them.
    awaiting_scout: bool,
}

/// What the connections to one endpoint know about it.
#[derive(Default)]
pub(crate) struct EndpointHealth {
    health: Mutex<Health>,
    /// Wakes the waiting connections: the endpoint is up, or the prober left.
    pub(crate) changed: Notify,
}

impl EndpointHealth {
    fn lock(&self) -> MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether connection `id` may attempt now; while the endpoint is down
    /// only the prober may, and the first to ask becomes it.
    pub(crate) fn may_attempt(&self, id: u64) -> bool {
        let mut h = self.lock();
        if !h.down || h.prober == id {
            return true;
        }
        if h.prober == 0 {
            h.prober = id;
            return true;
        }
        false
    }

    /// Connection `id` backs off until `until`. True when it should wait
    /// for [`changed`](Self::changed) rather than keep a timer: the
    /// endpoint is down and another connection probes it, or another
    /// connection will attempt no later than `until` and its verdict
    /// decides for both. A failed verdict leaves the waiters parked as
    /// probe waiters; a success, or the scout leaving, wakes them.
    pub(crate) fn wait_for_scout(&self, id: u64, until: Instant) -> bool {
        let mut h = self.lock();
        let wait = if h.down {
            h.prober != 0 && h.prober != id
        } else if h.scout != 0 && h.scout != id && h.scout_at.is_some_and(|at| at <= until) {
            true
        } else {
            h.scout = id;
            h.scout_at = Some(until);
            false
        };
        h.awaiting_scout |= wait;
        wait
    }

    /// An attempt by `id` failed.
    pub(crate) fn failed(&self, id: u64) {
        let mut h = self.lock();
        h.down = true;
        if h.prober == 0 {
            h.prober = id;
        }
        if h.scout == id {
            h.scout = 0;
        }
    }

    /// An attempt succeeded: everyone may try again.
    pub(crate) fn succeeded(&self) {
        let wake = {
            let mut h = self.lock();
            let wake = h.down || h.awaiting_scout;
            h.down = false;
            h.prober = 0;
            h.scout = 0;
            h.awaiting_scout = false;
            wake
        };
        if wake {
            self.changed.notify_waiters();
        }
    }

    /// Connection `id` closed for good: if it was the prober, another
    /// waiting connection takes over; if it was the scout, those waiting
    /// for it go back to their own schedules.
    pub(crate) fn leave(&self, id: u64) {
        let wake = {
            let mut h = self.lock();
            let mut wake = false;
            if h.prober == id {
                h.prober = 0;
                wake = true;
            }
            if h.scout == id {
                h.scout = 0;
                wake |= h.awaiting_scout;
            }
            if wake {
                h.awaiting_scout = false;
            }
            wake
        };
        if wake {
            self.changed.notify_waiters();
        }
    }
}

/// The manager's table of endpoints with connections that share a probe.
#[derive(Default)]
pub(crate) struct Probes {
    table: Mutex<HashMap<Endpoint, Arc<EndpointHealth>>>,
}

impl Probes {
    /// Joins the endpoint's probe. Also returns the table's copy of the
    /// endpoint, which the connection keeps instead of its own, so the
    /// connections to one endpoint share one.
    pub(crate) fn join(&self, endpoint: Endpoint) -> (Arc<EndpointHealth>, Endpoint) {
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        match t.entry(endpoint) {
            Entry::Occupied(e) => (e.get().clone(), e.key().clone()),
            Entry::Vacant(e) => {
                let key = e.key().clone();
                (e.insert(Arc::default()).clone(), key)
            }
        }
    }

    /// Forgets an endpoint no connection uses any more.
    pub(crate) fn release(&self, endpoint: &Endpoint) {
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if t.get(endpoint).is_some_and(|h| Arc::strong_count(h) == 1) {
            t.remove(endpoint);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_prober_while_down_and_everyone_after_success() {
        let h = EndpointHealth::default();
        assert!(h.may_attempt(1) && h.may_attempt(2), "up: everyone tries");
        h.failed(1);
        h.failed(2);
        assert!(h.may_attempt(1), "the first to fail probes");
        assert!(!h.may_attempt(2) && !h.may_attempt(3));
        h.leave(1);
        assert!(
            h.may_attempt(3),
            "another takes over when the prober leaves"
        );
        assert!(!h.may_attempt(2));
        h.succeeded();
        assert!(h.may_attempt(2) && h.may_attempt(3));
    }

    #[test]
    fn the_earliest_to_back_off_scouts_for_the_others() {
        let h = EndpointHealth::default();
        let t = Instant::now();
        let ms = std::time::Duration::from_millis;
        assert!(
            !h.wait_for_scout(1, t + ms(200)),
            "the first keeps its timer"
        );
        assert!(h.wait_for_scout(2, t + ms(300)), "a later one waits");
        assert!(
            !h.wait_for_scout(3, t + ms(100)),
            "an earlier one keeps its timer and scouts"
        );
        assert!(h.wait_for_scout(4, t + ms(150)));
        h.failed(3);
        assert!(
            h.wait_for_scout(5, t + ms(50)),
            "down: everyone but the prober waits"
        );
        assert!(
            !h.wait_for_scout(3, t + ms(400)),
            "the prober keeps its timer"
        );
        h.succeeded();
        assert!(!h.wait_for_scout(6, t + ms(500)), "up again: a new scout");
        h.leave(6);
        assert!(
            !h.wait_for_scout(7, t + ms(600)),
            "the scout left: the next one scouts"
        );
    }
}
