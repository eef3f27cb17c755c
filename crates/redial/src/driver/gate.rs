//! The manager-wide cap on connect attempts in flight, so that thousands of
//! connections coming back at once do not knock a recovering server over.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Counts and caps connect attempts in flight.
pub(crate) struct AttemptGate {
    permits: Arc<Semaphore>,
    in_flight: AtomicUsize,
    peak: AtomicUsize,
}

/// One attempt in flight; leaving drops it from the count.
pub(crate) struct Attempt<'a> {
    gate: &'a AttemptGate,
    _permit: Option<OwnedSemaphorePermit>,
}

impl AttemptGate {
    pub(crate) fn new(cap: usize) -> Self {
        AttemptGate {
            permits: Arc::new(Semaphore::new(cap.max(1))),
            in_flight: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        }
    }

    /// Waits for a free place, then counts the attempt in.
    pub(crate) async fn enter(&self) -> Attempt<'_> {
        // The semaphore is never closed; were it, the cap would just lift.
        let permit = self.permits.clone().acquire_owned().await.ok();
        let now = self.in_flight.fetch_add(1, Ordering::AcqRel) + 1;
        self.peak.fetch_max(now, Ordering::AcqRel);
        #[cfg(feature = "metrics")]
        crate::metrics::attempt_in_flight(true);
        Attempt {
            gate: self,
            _permit: permit,
        }
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    pub(crate) fn reset_peak(&self) -> usize {
        self.peak.swap(self.in_flight(), Ordering::AcqRel)
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        self.gate.in_flight.fetch_sub(1, Ordering::AcqRel);
        #[cfg(feature = "metrics")]
        crate::metrics::attempt_in_flight(false);
    }
}
