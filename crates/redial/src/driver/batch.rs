//! The batch of queued bytes the driver is writing, and the hand-backs
//! around it: every segment of the send queue is swapped into a [`Batch`]
//! in one go and written from there (vectored, see
//! [`Batch::unwritten_slices`]), and whatever a lost or closed connection
//! did not write goes back to the application through [`take_back`],
//! [`copy_back`] (after the lock: the copy has no bound) and [`settle`]. Pure bookkeeping on the shared queue: no socket here, so the
//! fuzz target (`data_path.rs`) drives the same code.

use std::collections::VecDeque;
use std::io::IoSlice;

use crate::core::timers::Trim;
use crate::queue::{Chunks, Queue, Queued};
use crate::reset::{Partial, Unsent};
use crate::shared::Shared;
use tracing::warn;

/// Send buffers that grew past this are released once the connection has
/// been idle for a while (see [`Trim::drained`]), so a burst does not
/// pin memory on a connection that goes quiet again.
const KEEP_BATCH_CAPACITY: usize = 64 * 1024;

/// Segments handed to one vectored write, at most (Linux takes up to
/// 1,024): 64 segments hold at least the default 4 MiB queue limit.
pub(crate) const MAX_IOVECS: usize = 64;

/// The batch of queued bytes the driver is writing.
#[derive(Default)]
pub(crate) struct Batch {
    /// The segments taken, oldest first.
    segs: VecDeque<Chunks>,
    /// Where the next write starts: segment `seg`, offset `pos` in it.
    seg: usize,
    pos: usize,
    /// Bytes taken, and written of them.
    len: usize,
    written: usize,
    /// Bytes of the last batch taken, kept after it was written and
    /// freed: the queue's new tail was made with room for as much.
    last_take: usize,
    /// Batches taken so far (tells a burst from an idle spell).
    pub(super) taken: u64,
    /// When to release a burst's buffers (armed when it drained).
    pub(super) release: Option<Trim>,
}

impl Batch {
    pub(crate) fn done(&self) -> bool {
        self.written >= self.len
    }

    /// Bytes taken from the queue and not yet written.
    pub(crate) fn unwritten(&self) -> u64 {
        (self.len - self.written) as u64
    }

    /// The unwritten bytes when they are all in one segment (the common
    /// case: one plain write).
    #[inline]
    pub(crate) fn single(&self) -> Option<&[u8]> {
        if self.seg + 1 != self.segs.len() {
            return None;
        }
        self.segs.back().and_then(|s| s.buf.get(self.pos..))
    }

    /// Fills `out` with the unwritten bytes, segment by segment (empty
    /// ones skipped), and returns how many slices it filled.
    pub(crate) fn unwritten_slices<'a>(&'a self, out: &mut [IoSlice<'a>]) -> usize {
        let rest = self.segs.iter().skip(self.seg).enumerate();
        let bufs = rest.map(|(i, s)| {
            if i == 0 {
                &s.buf[self.pos..]
            } else {
                &s.buf[..]
            }
        });
        let mut n = 0;
        for (slot, b) in out.iter_mut().zip(bufs.filter(|b| !b.is_empty())) {
            *slot = IoSlice::new(b);
            n += 1;
        }
        n
    }

    /// The kernel took `n` more bytes. What it took is room again: a
    /// waiting producer refills the queue while this batch's tail drains,
    /// instead of taking turns with it.
    pub(crate) fn advance(&mut self, shared: &Shared, n: usize) {
        let n = n.min(self.len - self.written);
        self.written += n;
        self.skip(n);
        let mut q = shared.queue();
        q.wrote(n, self.unwritten() as usize);
        #[cfg(feature = "metrics")]
        shared.metrics.wrote(n, q.held());
        shared.wake_writers(q);
    }

    /// Moves the write position `n` bytes on, across segment boundaries.
    #[inline]
    fn skip(&mut self, mut n: usize) {
        while let Some(s) = self.segs.get(self.seg) {
            let rest = s.buf.len() - self.pos;
            if n < rest {
                self.pos += n;
                return;
            }
            n -= rest;
            self.seg += 1;
            self.pos = 0;
        }
    }

    /// Empties the batch, freeing its written segments rather than keeping
    /// them for this connection's queue: the queue's next tail then gets
    /// from the allocator the memory freed last on this thread, still in
    /// the cache. A buffer kept per connection has gone cold by the time a
    /// runtime with 1,000 busy connections comes back to it, and every
    /// 64-byte send into it then waits for memory (BENCHMARKS.md, "Many
    /// connections: buffers go back to the allocator").
    fn recycle(&mut self) {
        self.segs.clear();
        (self.seg, self.pos, self.len, self.written) = (0, 0, 0, 0);
    }

    /// Swaps in everything queued. Returns false when the queue was empty.
    /// Capacity is kept on both sides of the swap (the queue's next tail is
    /// a segment this batch wrote), so a stream of sends does not regrow
    /// its buffers batch after batch; [`Batch::trim`] releases it once the
    /// connection has gone idle.
    fn refill(&mut self, shared: &Shared) -> bool {
        self.recycle();
        let mut q = shared.queue();
        if q.segs.len() == 0 {
            q.inflight = 0;
            return false;
        }
        self.len = q.segs.take_into(&mut self.segs);
        self.last_take = self.len;
        q.inflight = self.len;
        shared.wake_writers(q);
        self.taken = self.taken.wrapping_add(1);
        true
    }

    /// Whether a burst left more capacity behind than an idle connection
    /// should keep: in this batch, or in the tail the queue was given at
    /// the last take (made with room for that batch).
    pub(super) fn oversized(&self) -> bool {
        let held = self.segs.iter().map(|s| s.buf.capacity());
        held.sum::<usize>().max(self.last_take) > KEEP_BATCH_CAPACITY
    }

    /// Releases what a burst grew, on both sides of the swap, if nothing
    /// is queued. True when it did (the batch itself can go too).
    pub(super) fn trim(&mut self, shared: &Shared) -> bool {
        if !self.done() {
            return false;
        }
        // Dropped (freed) after the lock.
        let released = shared.queue().segs.release();
        released.is_some()
    }

    /// Everything not yet written: the cut chunk and the untouched ones.
    fn take_unsent(&mut self, into: &mut Unsent) {
        if !self.done() {
            let mut rest = self.segs.iter().skip(self.seg);
            if let Some(cut) = rest.next() {
                unsent_of(cut, self.pos, into);
            }
            for s in rest {
                into.append_ends(&s.buf, s.ends());
            }
        }
        *self = Batch::default();
    }
}

/// The chunks of `seg` not written up to `pos`, into `into`: the one `pos`
/// cuts as the partial chunk, the rest whole.
fn unsent_of(seg: &Chunks, pos: usize, into: &mut Unsent) {
    let mut ends = seg.ends();
    let mut start = 0;
    // The end of the first chunk left whole, once passed.
    let mut first_whole = None;
    for end in ends.by_ref() {
        if end <= pos {
            start = end;
            continue;
        }
        if start < pos {
            into.partial = Some(Partial {
                data: seg.buf[start..end].to_vec(),
                written: pos - start,
            });
            start = end;
        } else {
            first_whole = Some(end);
        }
        break;
    }
    let rest = first_whole.into_iter().chain(ends).map(|e| e - start);
    into.append_ends(&seg.buf[start..], rest);
}

/// Takes the batch out of `slot`, handing what it did not write back in
/// the ledger (the locked queue `q`); [`copy_back`] copies it into an
/// [`Unsent`] after the lock.
pub(crate) fn take_back(slot: &mut Option<Box<Batch>>, q: &mut Queue) -> Option<Box<Batch>> {
    let batch = slot.take();
    if let Some(b) = &batch {
        q.ledger.hand_back(b.unwritten());
    }
    q.inflight = 0;
    batch
}

/// Copies what a lost or closed connection never wrote into `unsent`: the
/// batch's unwritten chunks (the cut one as the partial chunk), then the
/// queue's. Called after the lock, as the copy has no bound.
pub(crate) fn copy_back(batch: Option<Box<Batch>>, queued: Queued, unsent: &mut Unsent) {
    if let Some(mut b) = batch {
        b.take_unsent(unsent);
    }
    queued.into_unsent(unsent);
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
        None if shared.queue().segs.len() == 0 => false,
        None => slot.insert(Box::default()).refill(shared),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::options::Options;
    use crate::queue::Chunks;

    /// A connection's shared state with its socket up, as the driver
    /// leaves it after `on_connect`.
    fn shared(limit: usize) -> Shared {
        let opts = Options::new().send_queue_limit(limit);
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 1));
        let endpoint = crate::endpoint::Endpoint::from_kind(crate::endpoint::Kind::Addr(addr));
        let s = Shared::new(1, endpoint, None, Arc::new(opts));
        {
            let mut q = s.queue();
            q.generation = 1;
            q.socket_open = true;
            q.accepting = true;
        }
        s
    }

    fn slices(b: &Batch) -> Vec<Vec<u8>> {
        let mut iov = [IoSlice::new(&[]); MAX_IOVECS];
        let n = b.unwritten_slices(&mut iov);
        iov[..n].iter().map(|s| s.to_vec()).collect()
    }

    #[test]
    fn a_cut_inside_a_run_of_equal_chunks_hands_back_each_chunk_whole() {
        // 10 chunks of 64 bytes (one run), two empty ones, 3 of 5 bytes.
        let mut seg = Chunks::default();
        for i in 0..10u8 {
            seg.push(&[i; 64]);
        }
        seg.push(b"");
        seg.push(b"");
        for _ in 0..3 {
            seg.push(b"fffff");
        }
        let hand_back = |pos: usize| {
            let mut u = Unsent::default();
            unsent_of(&seg, pos, &mut u);
            let partial = u.partial().map(|p| (p.data.clone(), p.written));
            let lens: Vec<usize> = u.chunks().map(<[u8]>::len).collect();
            (partial, lens, u.bytes().to_vec())
        };
        // Cut 100 bytes in: chunk 1 (bytes 64..128) is the partial one.
        let (partial, lens, bytes) = hand_back(100);
        assert_eq!(partial, Some((vec![1; 64], 36)));
        assert_eq!(lens, [vec![64; 8], vec![0, 0, 5, 5, 5]].concat());
        assert_eq!(bytes[..64], [2; 64]);
        // Cut on a boundary: no partial chunk; empty chunks ending there
        // count as sent, as they always have.
        let (partial, lens, _) = hand_back(640);
        assert_eq!(partial, None);
        assert_eq!(lens, [5, 5, 5]);
        let (partial, lens, _) = hand_back(639);
        assert_eq!(partial, Some((vec![9; 64], 63)));
        assert_eq!(lens, [0, 0, 5, 5, 5]);
        let (partial, lens, bytes) = hand_back(642);
        assert_eq!(partial, Some((b"fffff".to_vec(), 2)));
        assert_eq!((lens, bytes), (vec![5, 5], b"ffffffffff".to_vec()));
        let (partial, lens, _) = hand_back(0);
        assert_eq!((partial, lens.len()), (None, 15));
    }

    #[test]
    fn a_reset_hands_back_whole_chunks_across_segments_after_a_partial_write() {
        let s = shared(1 << 20);
        let big = vec![b'B'; Queue::APPEND_MAX + 10];
        s.push(None, b"abc").unwrap();
        s.push(None, &big).unwrap();
        s.push(None, b"def").unwrap();
        let mut held = Chunks::default();
        held.push(&[b'x'; 3000]);
        held.push(&[b'y'; 2000]);
        s.push_chunks(&mut held, false).unwrap();
        let mut slot = None;
        assert!(refill_slot(&mut slot, &s));
        let Some(b) = slot.as_deref_mut() else {
            unreachable!("refilled")
        };
        let lens: Vec<usize> = slices(b).iter().map(Vec::len).collect();
        assert_eq!(lens, [3, big.len(), 3, 5000], "one segment per large piece");
        assert!(b.single().is_none());
        // The kernel takes the first segment and 100 bytes of the second.
        b.advance(&s, 3 + 100);
        let rest = slices(b);
        assert_eq!(rest[0].len(), big.len() - 100);
        assert_eq!(s.queue().inflight as u64, b.unwritten());
        // Sends queued meanwhile stay in the queue, behind.
        s.push(None, b"later").unwrap();

        let mut unsent = Unsent::default();
        let ledger = {
            let mut q = s.queue();
            let batch = take_back(&mut slot, &mut q);
            let queued = q.take_queued(false);
            q.check();
            drop(q);
            copy_back(batch, queued, &mut unsent);
            s.queue().ledger
        };
        assert_eq!(ledger.written, 103);
        assert_eq!(ledger.returned, unsent.unwritten());
        assert_eq!(ledger.accepted, ledger.written + ledger.returned);
        let partial = unsent.partial().map(|p| (p.data.len(), p.written));
        assert_eq!(partial, Some((big.len(), 100)), "the cut chunk, whole");
        let whole: Vec<&[u8]> = unsent.chunks().collect();
        assert_eq!(whole, [&b"def"[..], &[b'x'; 3000], &[b'y'; 2000], b"later"]);
    }

    #[test]
    fn a_big_send_reaches_the_driver_in_the_buffer_it_was_copied_into() {
        let s = shared(16 << 20);
        s.push(None, b"head").unwrap();
        let big: Vec<u8> = (0..4 << 20).map(|i| i as u8).collect();
        s.push(None, &big).unwrap();
        let queued = {
            let q = s.queue();
            assert_eq!(q.segs.count(), 2);
            q.segs.len()
        };
        assert_eq!(queued, 4 + big.len());
        let mut slot = None;
        refill_slot(&mut slot, &s);
        let Some(b) = slot.as_deref_mut() else {
            unreachable!("refilled")
        };
        let got = slices(b);
        assert_eq!((&got[0][..], &got[1][..]), (&b"head"[..], &big[..]));
        // Written in pieces that do not line up with the segments.
        for n in [3, 1 << 20, 7, usize::MAX] {
            b.advance(&s, n);
        }
        assert!(b.done());
        let q = s.queue();
        assert_eq!(q.ledger.written, queued as u64);
        assert_eq!((q.inflight, q.held()), (0, 0));
    }

    #[test]
    fn a_steady_stream_fills_each_new_tail_without_regrowing_it() {
        let s = shared(1 << 20);
        let mut slot = None;
        for round in 0..4 {
            if round > 0 {
                // The tail made at the last take has room for a batch
                // as large as that one.
                let cap = s.queue().segs.capacity();
                assert!(cap >= 6400, "round {round}: {cap}");
            }
            for _ in 0..100 {
                s.push(None, &[1; 64]).unwrap();
            }
            let cap = s.queue().segs.capacity();
            assert!(refill_slot(&mut slot, &s));
            if round > 0 {
                assert_eq!(cap, 6400, "round {round}: the tail regrew");
            }
            let Some(b) = slot.as_deref_mut() else {
                unreachable!("refilled")
            };
            assert_eq!(b.single().map(<[u8]>::len), Some(6400));
            b.advance(&s, 6400);
            assert!(b.done());
        }
        assert!(!refill_slot(&mut slot, &s));
        // The written batch is freed, not kept: nothing is held for the
        // connection but the new tail.
        let Some(b) = slot.as_deref() else {
            unreachable!("refilled")
        };
        assert_eq!(b.segs.len(), 0);
    }

    /// Bursts that fill the queue to its limit, each written out before
    /// the next: the written segments are freed, so the capacity in
    /// circulation stays near two queues' worth instead of growing burst
    /// after burst.
    #[test]
    fn bursts_reuse_their_segments_instead_of_piling_up_new_ones() {
        const LIMIT: usize = 4 << 20;
        let s = shared(LIMIT);
        let mut slot = None;
        let mut peak = 0;
        for round in 0..20 {
            // Alternately to the limit and part of the way.
            let mut n = 0;
            while s.push(None, &[1; 64]).is_ok() && (round % 2 == 1 || n < 50_000) {
                n += 1;
            }
            assert!(refill_slot(&mut slot, &s));
            let Some(b) = slot.as_deref_mut() else {
                unreachable!("refilled")
            };
            let batch: usize = b.segs.iter().map(|c| c.buf.capacity()).sum();
            peak = peak.max(batch + s.queue().segs.capacity());
            b.advance(&s, usize::MAX);
        }
        assert!(peak <= 3 * LIMIT, "{} KiB in circulation", peak >> 10);
    }
}
