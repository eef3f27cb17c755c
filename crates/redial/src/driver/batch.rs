//! The batch of queued bytes the driver is writing, and the hand-backs
//! around it: the whole send queue is swapped into a [`Batch`] in one go and
//! written from there, and whatever a lost or closed connection did not
//! write goes back to the application through [`take_back`] and
//! [`settle`]. Pure bookkeeping on the shared queue: no socket here, so the
//! fuzz target (`data_path.rs`) drives the same code.

use crate::core::timers::Trim;
use crate::queue::Queue;
use crate::reset::{Partial, Unsent};
use crate::shared::Shared;
use tracing::warn;

/// Send buffers that grew past this are released once the connection has
/// been idle for a while (see [`Trim::drained`]), so a burst does not
/// pin memory on a connection that goes quiet again.
const KEEP_BATCH_CAPACITY: usize = 64 * 1024;

/// The batch of queued bytes the driver is writing.
#[derive(Default)]
pub(crate) struct Batch {
    pub(super) data: Vec<u8>,
    ends: Vec<usize>,
    pub(super) pos: usize,
    /// Batches taken so far (tells a burst from an idle spell).
    pub(super) taken: u64,
    /// When to release a burst's buffers (armed when it drained).
    pub(super) release: Option<Trim>,
}

impl Batch {
    pub(crate) fn done(&self) -> bool {
        self.pos >= self.data.len()
    }

    /// Bytes taken from the queue and not yet written.
    pub(crate) fn unwritten(&self) -> u64 {
        self.data.len().saturating_sub(self.pos) as u64
    }

    /// The kernel took `n` more bytes. What it took is room again: a
    /// waiting producer refills the queue while this batch's tail drains,
    /// instead of taking turns with it.
    pub(crate) fn advance(&mut self, shared: &Shared, n: usize) {
        self.pos = (self.pos + n).min(self.data.len());
        let mut q = shared.queue();
        q.wrote(n, self.unwritten() as usize);
        #[cfg(feature = "metrics")]
        shared.metrics.wrote(n, q.held());
        shared.wake_writers(q);
    }

    /// Swaps in everything queued. Returns false when the queue was empty.
    /// Capacity is kept on both sides of the swap, so a stream of sends
    /// does not regrow its buffers batch after batch; [`Batch::trim`]
    /// releases it once the connection has gone idle.
    fn refill(&mut self, shared: &Shared) -> bool {
        self.data.clear();
        self.ends.clear();
        self.pos = 0;
        let mut q = shared.queue();
        if q.buf.is_empty() {
            q.inflight = 0;
            return false;
        }
        std::mem::swap(&mut q.buf, &mut self.data);
        std::mem::swap(&mut q.ends, &mut self.ends);
        q.inflight = self.data.len();
        shared.wake_writers(q);
        self.taken = self.taken.wrapping_add(1);
        true
    }

    /// Whether a burst left more capacity behind than an idle connection
    /// should keep.
    pub(super) fn oversized(&self) -> bool {
        self.data.capacity() > KEEP_BATCH_CAPACITY
    }

    /// Releases what a burst grew, on both sides of the swap, if nothing
    /// is queued. True when it did (the batch itself can go too).
    pub(super) fn trim(&mut self, shared: &Shared) -> bool {
        if !self.done() {
            return false;
        }
        let mut q = shared.queue();
        if !q.buf.is_empty() {
            return false;
        }
        q.buf = Vec::new();
        q.ends = Vec::new();
        true
    }

    /// Everything not yet written: the cut chunk and the untouched ones.
    fn take_unsent(&mut self, into: &mut Unsent) {
        if self.done() {
            self.data.clear();
            self.ends.clear();
            self.pos = 0;
            return;
        }
        let mut start = 0;
        let mut first_whole = 0;
        for (i, &end) in self.ends.iter().enumerate() {
            if end <= self.pos {
                start = end;
                first_whole = i + 1;
                continue;
            }
            if start < self.pos {
                into.partial = Some(Partial {
                    data: self.data[start..end].to_vec(),
                    written: self.pos - start,
                });
                start = end;
                first_whole = i + 1;
            }
            break;
        }
        let rest: Vec<usize> = self.ends[first_whole..].iter().map(|e| e - start).collect();
        into.append(&self.data[start..], &rest);
        *self = Batch::default();
    }
}

/// Takes what the batch in `slot` did not write back into `unsent`, handing
/// it back in the ledger (the locked queue `q`).
pub(crate) fn take_back(slot: &mut Option<Box<Batch>>, q: &mut Queue, unsent: &mut Unsent) {
    if let Some(mut b) = slot.take() {
        q.ledger.hand_back(b.unwritten());
        b.take_unsent(unsent);
    }
    q.inflight = 0;
}

/// Counts and logs what a handler that did not take the unsent bytes (the
/// default `on_reset` or `on_close`) dropped.
pub(crate) fn settle(shared: &Shared, dropped: Option<&Unsent>, callback: &'static str) {
    let Some(dropped) = dropped else {
        return;
    };
    let bytes = dropped.unwritten();
    {
        let mut q = shared.queue();
        q.ledger.discard_returned(bytes);
        #[cfg(feature = "metrics")]
        shared.metrics.discarded(bytes);
        q.check();
    }
    warn!(
        connection = shared.id,
        endpoint = %shared.endpoint,
        bytes,
        callback,
        "unsent bytes discarded: the handler did not take them (Stats::discarded_bytes)"
    );
}

/// Takes everything queued into the batch slot, allocating the batch only
/// when there is something to take: an idle connection carries no batch.
/// Returns false when the queue was empty.
pub(crate) fn refill_slot(slot: &mut Option<Box<Batch>>, shared: &Shared) -> bool {
    match slot {
        Some(b) => b.refill(shared),
        // Only this task drains the queue: bytes seen now are still there.
        None if shared.queue().buf.is_empty() => false,
        None => slot.insert(Box::default()).refill(shared),
    }
}
