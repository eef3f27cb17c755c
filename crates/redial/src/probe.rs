//! One probe per endpoint during an outage.
//!
//! When connect attempts to an endpoint fail, one of its connections (the
//! prober) keeps trying on its backoff schedule and the others wait without
//! attempts of their own; the first success releases them all (through the
//! manager's cap on attempts in flight). Ten thousand connections to a dead
//! server then cost one connection's attempts, not ten thousand schedules'
//! worth of SYNs, timers and callbacks.
//!
//! Only connections that never give up take part: one with `max_attempts`
//! or `give_up_after` counts its own attempts, so it always makes them.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::endpoint::Endpoint;

#[derive(Default)]
struct Health {
    /// The last attempt to this endpoint failed and none succeeded since.
    down: bool,
    /// The connection that probes while it is down (0: none).
    prober: u64,
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

    /// An attempt by `id` failed.
    pub(crate) fn failed(&self, id: u64) {
        let mut h = self.lock();
        h.down = true;
        if h.prober == 0 {
            h.prober = id;
        }
    }

    /// An attempt succeeded: everyone may try again.
    pub(crate) fn succeeded(&self) {
        let was_down = {
            let mut h = self.lock();
            let was = h.down;
            h.down = false;
            h.prober = 0;
            was
        };
        if was_down {
            self.changed.notify_waiters();
        }
    }

    /// Connection `id` closed for good: if it was the prober, another
    /// waiting connection takes over.
    pub(crate) fn leave(&self, id: u64) {
        let was_prober = {
            let mut h = self.lock();
            let was = h.prober == id;
            if was {
                h.prober = 0;
            }
            was
        };
        if was_prober {
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
}
