//! The send queue of one connection: a short list of segments, each its
//! bytes plus where every `send` call's chunk in it ends, then the outage
//! buffer and the ledger that says where every accepted byte went.
//!
//! Senders add under a short lock (held by [`Shared`](crate::shared::Shared)),
//! and no copy of unbounded size happens under it:
//!
//! - a send of up to [`Queue::APPEND_MAX`] bytes is appended to the tail
//!   segment (one copy of at most that many bytes; a tail that has to grow
//!   past it is sealed instead, see [`Segments`]), which is what makes one
//!   `send` per message as cheap as a hand-tuned `BufWriter`;
//! - a larger send is copied into a buffer of its own before the lock is
//!   taken, and queued under it as a segment of its own (a move);
//! - a [`Sender`](crate::Sender)'s batch is moved in as a segment, and the
//!   outage buffer is moved behind what is queued when the connection
//!   comes up, segment by segment;
//! - a reset or close moves the segments out and copies them into the
//!   `Unsent` it hands back after the lock ([`Queue::take_queued`]).
//!
//! The driver takes every segment in one swap and writes them with
//! vectored writes (`driver/batch.rs`), and frees the segments it wrote:
//! the next tail, made with the room the last one needed, gets from the
//! allocator the memory freed last on that thread, still in the cache.
//! The chunk ends, which let a reset hand back whole chunks, cost
//! nothing a message while sends keep one size, and 16 bytes for each
//! change of size ([`Chunks`]).
//!
//! Plain data: no lock, no task, no socket here; [`Shared`](crate::shared::Shared)
//! owns the lock around it.

use std::collections::VecDeque;

pub(crate) use crate::core::chunks::Chunks;
use crate::core::ledger::Ledger;
use crate::error::SendError;
use crate::options::Outage;
use crate::reset::Unsent;

pub(crate) struct Queue {
    /// What is queued and not yet taken by the driver.
    pub(crate) segs: Segments,
    /// Bytes the driver took and has not yet written.
    pub(crate) inflight: usize,
    /// Generation of the live socket; `Socket`s of other generations are stale.
    pub(crate) generation: u64,
    /// The live socket takes `Socket::send`s.
    pub(crate) socket_open: bool,
    /// `on_connect` has run: `Connection::send` goes to the live socket.
    pub(crate) accepting: bool,
    /// Ended for good (or disconnecting): every send is refused.
    pub(crate) closed: bool,
    /// A connection past its `max_lifetime` is being replaced: while
    /// `accepting` is off, `Connection::send` is held in the outage buffer
    /// for the new socket (up to the queue's limit), whatever the policy.
    pub(crate) holding: bool,
    /// Bytes buffered while down ([`Outage::Buffer`]); boxed, as most
    /// connections never buffer.
    pub(crate) outage: Option<Box<Segments>>,
    pub(crate) room_waiters: bool,
    limit: usize,
    /// Where every accepted byte went; updated with the bytes it counts,
    /// under this lock (see `ledger.rs`).
    pub(crate) ledger: Ledger,
}

/// Queued chunks in segments: the sealed ones, oldest first, then the tail
/// that small sends append to. A chunk never spans two segments.
///
/// The tail grows (a reallocation copies what it holds) only while it
/// holds at most [`Queue::APPEND_MAX`] bytes and [`Segments::ENDS_MAX`]
/// runs of chunks (see [`Chunks`]); past that, a send that does not fit in its capacity seals it
/// and starts a new tail. So
/// neither the copy of a send nor a regrowth under the lock ever moves
/// more than about `APPEND_MAX` bytes, whatever is queued.
#[derive(Default)]
pub(crate) struct Segments {
    sealed: VecDeque<Chunks>,
    /// Bytes in `sealed`.
    sealed_len: usize,
    tail: Chunks,
}

impl Segments {
    /// The tail's runs of chunks regrow (a copy of 16 bytes each) only up
    /// to this many, as its bytes do up to [`Queue::APPEND_MAX`].
    pub(crate) const ENDS_MAX: usize = Queue::APPEND_MAX / 16;

    /// Bytes queued.
    #[inline(always)]
    pub(crate) fn len(&self) -> usize {
        self.sealed_len + self.tail.buf.len()
    }

    /// No chunk queued, not even an empty one.
    pub(crate) fn is_bare(&self) -> bool {
        self.sealed.is_empty() && self.tail.is_bare()
    }

    /// Segments queued, the tail counted when it holds a chunk.
    #[cfg(test)]
    pub(crate) fn count(&self) -> usize {
        self.sealed.len() + usize::from(!self.tail.is_bare())
    }

    /// Bytes of buffer held.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        let sealed: usize = self.sealed.iter().map(|s| s.buf.capacity()).sum();
        sealed + self.tail.buf.capacity()
    }

    /// Appends one chunk to the tail (`data` of at most
    /// [`Queue::APPEND_MAX`] bytes: a bounded copy).
    #[inline(always)]
    fn append(&mut self, data: &[u8]) {
        let t = &mut self.tail;
        // Room for its bytes and, if its size is not the one before, for
        // one more run: a copy the compiler knows fits, and for one more
        // chunk of the size before it (the common case) nothing else to
        // record.
        if t.buf.capacity() - t.buf.len() >= data.len() && t.run_fits(data.len()) {
            t.push(data);
        } else {
            self.append_cold(data);
        }
    }

    /// [`Segments::append`] when the tail has to grow or be sealed.
    #[inline(never)]
    fn append_cold(&mut self, data: &[u8]) {
        // Closing the open run, and an empty chunk's own: two runs at most.
        self.make_room(data.len(), 2);
        self.tail.push(data);
    }

    /// Appends chunks to the tail, copying them (`held` of at most
    /// [`Queue::APPEND_MAX`] bytes).
    fn append_chunks(&mut self, held: &Chunks) {
        self.make_room(held.buf.len(), held.runs() + 1);
        self.tail.append(held);
    }

    /// Makes the tail take `len` more bytes in `n` more runs: it grows
    /// while small, or is sealed and replaced (see [`Segments`]).
    fn make_room(&mut self, len: usize, n: usize) {
        let t = &self.tail;
        let bytes_fit = t.buf.capacity() - t.buf.len() >= len || t.buf.len() <= Queue::APPEND_MAX;
        let ends_fit = t.runs_fit(n) || t.runs() <= Self::ENDS_MAX;
        if bytes_fit && ends_fit {
            return;
        }
        // The next tail holds as much as is queued here already (so a
        // burst takes a few segments, not one per `APPEND_MAX`, and its
        // large buffers go back to the system when released), with room
        // for as many runs as this tail's mean run calls for.
        let bytes = Queue::APPEND_MAX.max(len).max(self.len());
        let fresh = Chunks::with_capacity(bytes, (bytes / t.mean_run()).max(n));
        let full = std::mem::replace(&mut self.tail, fresh);
        self.seal(full);
    }

    fn seal(&mut self, seg: Chunks) {
        self.sealed_len += seg.buf.len();
        self.sealed.push_back(seg);
    }

    /// Queues `seg`'s chunks behind everything, as they are (a move): it
    /// becomes the tail, the old tail is sealed. Leaves in `seg` what can
    /// be reused: the old tail when it held no chunk, else nothing.
    fn push_segment(&mut self, seg: &mut Chunks) {
        if seg.is_bare() {
            return;
        }
        std::mem::swap(&mut self.tail, seg);
        if !seg.is_bare() {
            let old = std::mem::take(seg);
            self.seal(old);
        }
    }

    /// Moves `other`'s chunks behind these, segment by segment (no copy).
    fn append_segments(&mut self, mut other: Segments) {
        for mut s in other.sealed.drain(..) {
            self.push_segment(&mut s);
        }
        self.push_segment(&mut other.tail);
    }

    /// Moves every queued segment, oldest first, into `into` (empty) and
    /// returns their bytes. The new tail is allocated with the room the
    /// taken one needed (at most what a tail can hold: `APPEND_MAX` and
    /// one more send), so a steady stream of sends fills it without
    /// regrowing it: one allocation a batch, of memory still in the cache
    /// (see the module's doc).
    pub(crate) fn take_into(&mut self, into: &mut VecDeque<Chunks>) -> usize {
        let len = self.len();
        std::mem::swap(&mut self.sealed, into);
        self.sealed_len = 0;
        let t = &self.tail;
        let fresh = Chunks::with_capacity(
            t.buf.len().min(2 * Queue::APPEND_MAX),
            t.runs().saturating_sub(1).min(2 * Self::ENDS_MAX),
        );
        into.push_back(std::mem::replace(&mut self.tail, fresh));
        len
    }

    /// Gives up every buffer, when nothing is queued; the caller drops
    /// what it returns after the lock.
    pub(crate) fn release(&mut self) -> Option<Segments> {
        self.is_bare().then(|| std::mem::take(self))
    }

    /// Copies every chunk into `unsent` and empties the segments.
    fn drain_into(&mut self, unsent: &mut Unsent) {
        for s in self.sealed.drain(..) {
            unsent.append_ends(&s.buf, s.ends());
        }
        unsent.append_ends(&self.tail.buf, self.tail.ends());
        self.tail = Chunks::default();
        self.sealed_len = 0;
    }
}

/// Every this many bytes queued and not yet taken by the driver, an
/// awaiting writer ([`Connection::write`](crate::Connection::write),
/// [`Socket::write`](crate::Socket::write), a [`Sender`](crate::Sender)'s
/// hand-over) waits until the driver has taken them
/// ([`Shared::hand_over_turn`](crate::shared::Shared::hand_over_turn)). A
/// producer that never has to wait for room would otherwise fill the whole
/// queue before the driver, on the same thread, writes its first byte, and
/// one faster than its socket would keep the queue at its limit (4 MiB, out
/// of the cache) where a `BufWriter` keeps 64 KiB. 64 KiB (not more): with
/// 1,000 connections on a 2-worker runtime, each producer fills this much
/// before its connection task runs, and at 256 KiB the queues took 4x the
/// memory and half the rate (BENCHMARKS.md, scenario 1c).
pub(crate) const HAND_OVER_EVERY: usize = 64 * 1024;

/// What a push did.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Pushed {
    /// The queue was empty: the driver needs a wake-up.
    pub(crate) was_empty: bool,
    /// The untaken bytes crossed a multiple of [`HAND_OVER_EVERY`].
    pub(crate) hand_over: bool,
}

/// Why a push was refused, before the bytes are copied into a [`SendError`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum Refused {
    Full { queued: usize, limit: usize },
    NotConnected,
    OutageFull { buffered: usize, limit: usize },
    Closed,
}

impl Refused {
    /// The error, carrying `data` (bytes already owned: no copy). A
    /// refusal for a closed queue needs the connection to say why:
    /// [`Shared::send_error`](crate::shared::Shared::send_error) tells its
    /// causes apart.
    pub(crate) fn with_data(self, data: Vec<u8>) -> SendError {
        match self {
            Refused::Full { queued, limit } => SendError::Full {
                data,
                queued,
                limit,
            },
            Refused::NotConnected => SendError::NotConnected { data },
            Refused::OutageFull { buffered, limit } => SendError::OutageBufferFull {
                data,
                buffered,
                limit,
            },
            Refused::Closed => SendError::Closed { data },
        }
    }
}

/// Where an admitted push goes.
enum Dest {
    Live,
    Outage,
}

impl Queue {
    /// A send of up to this many bytes is copied into the tail segment
    /// under the lock; a larger one is copied into a buffer of its own
    /// before the lock and queued as a segment of its own. 64 KiB: a copy
    /// that takes a few microseconds at most (what a producer waiting for
    /// the lock spins through), and a multiple of the small messages that
    /// make up the hot path, which all take the one-copy path. Fuzzing
    /// builds use 1 KiB, so that the fuzzers' inputs cross it.
    #[cfg(not(fuzzing))]
    pub(crate) const APPEND_MAX: usize = 64 * 1024;
    #[cfg(fuzzing)]
    pub(crate) const APPEND_MAX: usize = 1024;

    /// A [`Sender`](crate::Sender)'s hand-over of at most this many bytes
    /// into a non-empty queue is copied (it keeps its buffer); a larger
    /// one is moved in as a segment. A small flush, such as one request
    /// before waiting for its reply, costs less copied than as a segment
    /// of its own.
    pub(crate) const COPY_HAND_OVER_MAX: usize = 4 * 1024;

    /// An empty queue that takes up to `limit` bytes, for a connection not
    /// yet up.
    pub(crate) fn new(limit: usize) -> Self {
        Queue {
            segs: Segments::default(),
            inflight: 0,
            generation: 0,
            socket_open: false,
            accepting: false,
            closed: false,
            holding: false,
            outage: None,
            room_waiters: false,
            limit,
            ledger: Ledger::default(),
        }
    }

    /// The live socket takes `len` more bytes now (a write that fits in
    /// what is left of the limit, or any write into an empty queue).
    pub(crate) fn has_room_for(&self, len: usize) -> bool {
        self.accepting && self.room_for(len).is_ok()
    }

    /// Nothing waits to be handed to the kernel.
    pub(crate) fn is_drained(&self) -> bool {
        self.segs.len() == 0 && self.inflight == 0
    }

    #[inline(always)]
    pub(crate) fn queued(&self) -> usize {
        self.segs.len() + self.inflight
    }

    /// Bytes in the outage buffer.
    pub(crate) fn outage_len(&self) -> usize {
        self.outage.as_ref().map_or(0, |o| o.len())
    }

    /// Every accepted byte not yet written or handed back: the queue, the
    /// driver's unwritten batch and the outage buffer.
    pub(crate) fn held(&self) -> u64 {
        (self.queued() + self.outage_len()) as u64
    }

    /// Asserts, in debug builds, that the ledger balances (see `ledger.rs`).
    #[inline]
    pub(crate) fn check(&self) {
        debug_assert!(
            self.ledger.balances(self.held()),
            "byte ledger out of balance: {:?} with {} bytes held",
            self.ledger,
            self.held()
        );
    }

    /// `n` bytes of the driver's batch reached the kernel; `left` are not
    /// written yet.
    #[inline]
    pub(crate) fn wrote(&mut self, n: usize, left: usize) {
        self.ledger.write(n);
        self.inflight = left;
        self.check();
    }

    /// Refuses `len` more bytes that would take a non-empty queue past its
    /// limit. A single chunk larger than the limit is taken only into an
    /// empty queue, so it can never wait forever.
    #[inline(always)]
    fn room_for(&self, len: usize) -> Result<(), Refused> {
        let queued = self.queued();
        if queued > 0 && queued + len > self.limit {
            return Err(Refused::Full {
                queued,
                limit: self.limit,
            });
        }
        Ok(())
    }

    /// Whether `len` bytes for the live socket `socket_gen` (or, with
    /// `None`, for the connection) are taken now, and where to. `force`
    /// takes them past the queue's (or outage buffer's) limit. Nothing
    /// changes: [`Shared`](crate::shared::Shared) asks before it copies a
    /// large send.
    #[inline(always)]
    fn admit(
        &self,
        socket_gen: Option<u64>,
        len: usize,
        policy: &Outage,
        force: bool,
    ) -> Result<Dest, Refused> {
        let live = match socket_gen {
            Some(g) => {
                if self.closed || !self.socket_open || self.generation != g {
                    return Err(Refused::Closed);
                }
                true
            }
            // Both bytes read, not a second branch.
            None => self.accepting & !self.closed,
        };
        if !live {
            return self.admit_down(len, policy, force);
        }
        if !force {
            self.room_for(len)?;
        }
        Ok(Dest::Live)
    }

    /// [`Queue::admit`] for the connection while it is down or closed.
    #[cold]
    #[inline(never)]
    fn admit_down(&self, len: usize, policy: &Outage, force: bool) -> Result<Dest, Refused> {
        if self.closed {
            return Err(Refused::Closed);
        }
        match self.policy_while_down(*policy) {
            Outage::Reject => Err(Refused::NotConnected),
            Outage::Buffer { max_bytes } => {
                let buffered = self.outage_len();
                if !force && buffered + len > max_bytes {
                    return Err(Refused::OutageFull {
                        buffered,
                        limit: max_bytes,
                    });
                }
                Ok(Dest::Outage)
            }
        }
    }

    /// Says whether a push of `len` bytes would be taken now, without
    /// taking anything.
    pub(crate) fn would_take(
        &self,
        socket_gen: Option<u64>,
        len: usize,
        policy: &Outage,
    ) -> Result<(), Refused> {
        self.admit(socket_gen, len, policy, false).map(drop)
    }

    /// What a push of `len` bytes did, given the untaken bytes before.
    #[inline(always)]
    fn pushed(&self, before: usize, len: usize) -> Pushed {
        Pushed {
            was_empty: before == 0,
            hand_over: before / HAND_OVER_EVERY != (before + len) / HAND_OVER_EVERY,
        }
    }

    /// The outage buffer (made on first use).
    fn outage_mut(&mut self) -> &mut Segments {
        self.outage.get_or_insert_with(Box::default)
    }

    /// Appends `data` (at most [`Queue::APPEND_MAX`] bytes: the caller
    /// takes larger ones to [`Queue::push_chunks`]) to a live socket's
    /// queue (`socket_gen`) or the connection's: the live socket's while
    /// `on_connect` has run, else the outage policy decides. The live case
    /// is inlined into every send call; the others are not.
    #[inline(always)]
    pub(crate) fn push(
        &mut self,
        socket_gen: Option<u64>,
        data: &[u8],
        policy: &Outage,
    ) -> Result<Pushed, Refused> {
        match self.admit(socket_gen, data.len(), policy, false)? {
            Dest::Live => {
                let before = self.segs.len();
                self.segs.append(data);
                self.ledger.accept(data.len());
                self.check();
                Ok(self.pushed(before, data.len()))
            }
            Dest::Outage => {
                self.push_outage(data);
                Ok(Pushed::default())
            }
        }
    }

    #[cold]
    #[inline(never)]
    fn push_outage(&mut self, data: &[u8]) {
        self.outage_mut().append(data);
        self.ledger.accept(data.len());
        self.check();
    }

    /// The policy for sends while not accepting: `policy`, or holding
    /// them for the new socket while a connection is replaced.
    #[inline]
    fn policy_while_down(&self, policy: Outage) -> Outage {
        if self.holding {
            Outage::Buffer {
                max_bytes: self.limit,
            }
        } else {
            policy
        }
    }

    /// Moves bytes buffered during the outage behind what is queued.
    pub(crate) fn release_outage(&mut self) {
        if let Some(held) = self.outage.take() {
            self.segs.append_segments(*held);
        }
    }

    /// Hands over `held`'s chunks, all or none, to a live socket's queue
    /// (`socket_gen`) or the connection's (`None`: while down, the outage
    /// policy decides): a [`Sender`](crate::Sender)'s batch, or a large
    /// send already copied out of the caller's bytes. `force` takes them
    /// past the queue's (or outage buffer's) limit: a dropped sender has
    /// nowhere else to put them.
    ///
    /// Into an empty queue, or when larger than
    /// [`Queue::COPY_HAND_OVER_MAX`], the chunks are moved in as a segment
    /// (no copy under the lock), and `held` gets an empty buffer to reuse;
    /// smaller ones are copied behind what is queued. Refused chunks stay
    /// in `held`.
    pub(crate) fn push_chunks(
        &mut self,
        socket_gen: Option<u64>,
        held: &mut Chunks,
        policy: &Outage,
        force: bool,
    ) -> Result<Pushed, Refused> {
        let len = held.buf.len();
        let dest = self.admit(socket_gen, len, policy, force)?;
        let before = self.segs.len();
        let segs = match dest {
            Dest::Live => &mut self.segs,
            Dest::Outage => self.outage_mut(),
        };
        if len <= Self::COPY_HAND_OVER_MAX && !segs.is_bare() {
            segs.append_chunks(held);
            held.clear();
        } else {
            segs.push_segment(held);
        }
        self.ledger.accept(len);
        self.check();
        Ok(match dest {
            Dest::Live => self.pushed(before, len),
            Dest::Outage => Pushed::default(),
        })
    }

    /// Ends the queue for good: every later send is refused, and every
    /// queued byte, the outage buffer's too, is taken out (see
    /// [`Queue::take_queued`]).
    pub(crate) fn close(&mut self) -> Queued {
        self.closed = true;
        self.socket_open = false;
        self.accepting = false;
        self.take_queued(true)
    }

    /// Takes every queued byte (not the driver's batch) out of the queue,
    /// with the outage buffer's when `with_outage`, handing them back in
    /// the ledger. Segments are moved, not copied: the caller copies them
    /// into an [`Unsent`] after the lock ([`Queued::into_unsent`]).
    pub(crate) fn take_queued(&mut self, with_outage: bool) -> Queued {
        self.ledger.hand_back(self.segs.len() as u64);
        let segs = std::mem::take(&mut self.segs);
        let outage = if with_outage {
            self.outage.take()
        } else {
            None
        };
        if let Some(held) = &outage {
            self.ledger.hand_back(held.len() as u64);
        }
        self.check();
        Queued { segs, outage }
    }
}

/// Queued bytes taken out of a queue for good ([`Queue::take_queued`]),
/// already handed back in its ledger.
pub(crate) struct Queued {
    segs: Segments,
    outage: Option<Box<Segments>>,
}

impl Queued {
    /// Copies the chunks, queued ones first, into `unsent` (outside the
    /// lock: this is a copy of unbounded size).
    pub(crate) fn into_unsent(mut self, unsent: &mut Unsent) {
        self.segs.drain_into(unsent);
        if let Some(mut held) = self.outage {
            held.drain_into(unsent);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(limit: usize) -> Queue {
        Queue {
            generation: 1,
            socket_open: true,
            accepting: true,
            ..Queue::new(limit)
        }
    }

    fn chunks(parts: &[&str]) -> Chunks {
        let mut c = Chunks::default();
        for p in parts {
            c.push(p.as_bytes());
        }
        c
    }

    /// Every queued byte, in order, and the chunk lengths.
    fn contents(segs: &Segments) -> (Vec<u8>, Vec<usize>) {
        let mut unsent = Unsent::default();
        let mut copy = Segments::default();
        for s in segs.sealed.iter().chain(std::iter::once(&segs.tail)) {
            copy.push_segment(&mut s.clone());
        }
        copy.drain_into(&mut unsent);
        let lens = unsent.chunks().map(<[u8]>::len).collect();
        (unsent.bytes().to_vec(), lens)
    }

    /// What the driver takes: the segments, oldest first.
    fn take(q: &mut Queue) -> VecDeque<Chunks> {
        let mut into = VecDeque::new();
        let len = q.segs.take_into(&mut into);
        assert_eq!(len, into.iter().map(|s| s.buf.len()).sum::<usize>());
        q.inflight = len;
        into
    }

    #[test]
    fn sends_are_held_for_the_replacement_whatever_the_policy() {
        let mut q = queue(10);
        q.accepting = false;
        assert!(matches!(
            q.push(None, b"abc", &Outage::Reject),
            Err(Refused::NotConnected)
        ));
        // A connection past its lifetime is being replaced.
        q.holding = true;
        assert!(q.push(None, b"abcdef", &Outage::Reject).is_ok());
        assert_eq!(q.segs.len(), 0, "held, not queued for the old socket");
        // Up to the queue's limit.
        assert!(q.push(None, b"ghijk", &Outage::Reject).is_err());
        let mut c = chunks(&["gh"]);
        assert!(q.push_chunks(None, &mut c, &Outage::Reject, false).is_ok());
        assert_eq!(q.held(), 8);
        // The new socket's `on_connect` ran: the held bytes follow.
        q.accepting = true;
        q.holding = false;
        q.release_outage();
        assert_eq!(contents(&q.segs), (b"abcdefgh".to_vec(), vec![6, 2]));
        assert_eq!(q.ledger.accepted, 8);
    }

    #[test]
    fn small_sends_share_the_tail_segment() {
        let mut q = queue(1 << 20);
        for _ in 0..100 {
            q.push(None, &[1; 64], &Outage::Reject).unwrap();
        }
        assert_eq!(q.segs.count(), 1);
        assert_eq!(q.segs.tail.ends().count(), 100);
        assert_eq!(q.segs.tail.runs(), 1, "one size: one run, no end per chunk");
        let got = take(&mut q);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].buf.len(), 6400);
    }

    #[test]
    fn handed_over_chunks_stay_whole_behind_what_is_queued() {
        let mut q = queue(100);
        q.push(None, b"abc", &Outage::Reject).unwrap();
        let p = q
            .push_chunks(None, &mut chunks(&["de", "fgh"]), &Outage::Reject, false)
            .unwrap();
        assert!(!p.was_empty);
        // Small: copied into the tail.
        assert_eq!(q.segs.count(), 1);
        assert_eq!(contents(&q.segs), (b"abcdefgh".to_vec(), vec![3, 2, 3]));
        let mut unsent = Unsent::default();
        q.take_queued(false).into_unsent(&mut unsent);
        let got: Vec<&[u8]> = unsent.chunks().collect();
        assert_eq!(got, [&b"abc"[..], b"de", b"fgh"]);
        assert_eq!(q.ledger.returned, 8);
    }

    #[test]
    fn a_hand_over_into_an_empty_queue_moves_the_batch_without_copying_it() {
        let mut q = queue(100);
        let mut held = chunks(&["ab", "cde"]);
        let batch = held.buf.as_ptr();
        let p = q
            .push_chunks(None, &mut held, &Outage::Reject, false)
            .unwrap();
        assert!(p.was_empty);
        assert_eq!(
            q.segs.tail.buf.as_ptr(),
            batch,
            "the sender's buffer itself is queued"
        );
        assert_eq!(contents(&q.segs), (b"abcde".to_vec(), vec![2, 3]));
        assert!(held.buf.is_empty() && held.is_bare());
        // Behind queued bytes a small one is appended, whole.
        let mut more = chunks(&["f"]);
        q.push_chunks(None, &mut more, &Outage::Reject, false)
            .unwrap();
        assert_eq!(contents(&q.segs), (b"abcdef".to_vec(), vec![2, 3, 1]));
        // An empty chunk queued alone is kept.
        let mut q = queue(100);
        q.push(None, b"", &Outage::Reject).unwrap();
        q.push_chunks(None, &mut chunks(&["x"]), &Outage::Reject, false)
            .unwrap();
        assert_eq!(contents(&q.segs), (b"x".to_vec(), vec![0, 1]));
    }

    #[test]
    fn a_senders_batch_handed_over_into_a_non_empty_queue_is_moved_not_copied() {
        let mut q = queue(1 << 20);
        q.push(None, b"first", &Outage::Reject).unwrap();
        let mut held = Chunks::default();
        for _ in 0..1000 {
            held.push(&[7; 64]);
        }
        let batch = held.buf.as_ptr();
        let p = q
            .push_chunks(None, &mut held, &Outage::Reject, false)
            .unwrap();
        assert!(!p.was_empty);
        assert_eq!(q.segs.count(), 2, "a segment of its own");
        assert_eq!(q.segs.len(), 5 + 64_000);
        assert!(held.buf.is_empty() && held.is_bare());
        // Sends after it follow it, in its buffer's spare room.
        q.push(None, b"last", &Outage::Reject).unwrap();
        let got = take(&mut q);
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[1].buf.as_ptr(),
            batch,
            "the driver takes the sender's buffer"
        );
        assert_eq!(got[1].ends().count(), 1001);
        assert_eq!(&got[1].buf[64_000..], b"last");
        assert_eq!(q.ledger.accepted, 5 + 64_000 + 4);
    }

    #[test]
    fn a_big_send_into_a_non_empty_queue_is_a_segment_of_its_own() {
        let mut q = queue(16 << 20);
        q.push(None, b"small", &Outage::Reject).unwrap();
        // What `Shared::push` does with a send past `APPEND_MAX`: the
        // copy is made before the lock, the queue only moves it in.
        let big = vec![9u8; 4 << 20];
        let ptr = big.as_ptr();
        let mut seg = Chunks::whole(big);
        q.would_take(None, seg.buf.len(), &Outage::Reject).unwrap();
        q.push_chunks(None, &mut seg, &Outage::Reject, false)
            .unwrap();
        assert_eq!(q.segs.count(), 2);
        q.push(None, b"after", &Outage::Reject).unwrap();
        assert_eq!(q.segs.count(), 3, "a full tail is sealed, not regrown");
        assert_eq!(q.queued(), 5 + (4 << 20) + 5);
        let got = take(&mut q);
        assert_eq!(got.len(), 3);
        assert_eq!(got[1].buf.as_ptr(), ptr, "the very buffer moved in");
        assert_eq!(
            (&got[0].buf[..], &got[2].buf[..]),
            (&b"small"[..], &b"after"[..])
        );
    }

    #[test]
    fn a_tail_is_sealed_rather_than_regrown_past_the_bound() {
        // Pushes `msg` `n` times; asserts that every regrowth of the tail
        // (not a seal) copied at most the bound; returns how many there were.
        fn fill(q: &mut Queue, msgs: &[&[u8]], n: usize) -> usize {
            let mut grew = 0;
            for msg in msgs.iter().cycle().take(n) {
                let t = &q.segs.tail;
                let (count, cap, runs_cap) = (q.segs.count(), t.buf.capacity(), t.runs_capacity());
                let (held, runs) = (t.buf.len(), t.runs());
                q.push(None, msg, &Outage::Reject).unwrap();
                let t = &q.segs.tail;
                if q.segs.count() != count {
                    continue; // sealed (or the first chunk)
                }
                if t.buf.capacity() != cap {
                    assert!(held <= Queue::APPEND_MAX, "regrew a tail of {held} bytes");
                    grew += 1;
                }
                if t.runs_capacity() != runs_cap {
                    assert!(runs <= Segments::ENDS_MAX, "regrew {runs} runs");
                    grew += 1;
                }
            }
            grew
        }
        let mut q = queue(64 << 20);
        let n = 8 * Queue::APPEND_MAX / 1000;
        assert!(fill(&mut q, &[&[3; 1000]], n) > 0);
        assert!(q.segs.count() >= 3, "{} segments", q.segs.count());
        assert_eq!(q.segs.len(), n * 1000);
        // Tiny chunks of changing size, each a run of its own: the runs
        // are bounded the same way, and every boundary is kept.
        let mut q = queue(64 << 20);
        let n = 4 * Segments::ENDS_MAX;
        assert!(fill(&mut q, &[b"x", b"yy"], n) > 0);
        assert!(q.segs.count() >= 2, "{} segments", q.segs.count());
        let lens: Vec<usize> = [1, 2].into_iter().cycle().take(n).collect();
        assert_eq!(contents(&q.segs).1, lens);
    }

    #[test]
    fn the_limit_counts_bytes_across_segments_exactly() {
        let limit = 3 * Queue::APPEND_MAX;
        let mut q = queue(limit);
        q.push(None, &[1; 100], &Outage::Reject).unwrap();
        let mut big = Chunks::whole(vec![2; 2 * Queue::APPEND_MAX]);
        q.push_chunks(None, &mut big, &Outage::Reject, false)
            .unwrap();
        // Taken by the driver: still counts, as in flight.
        let _batch = take(&mut q);
        let mut sender = Chunks::whole(vec![3; Queue::APPEND_MAX - 200]);
        q.push_chunks(None, &mut sender, &Outage::Reject, false)
            .unwrap();
        assert_eq!(q.queued(), limit - 100);
        // Exactly up to the limit, not a byte more.
        assert!(matches!(
            q.push(None, &[4; 101], &Outage::Reject),
            Err(Refused::Full { queued, limit: l }) if queued == limit - 100 && l == limit
        ));
        let mut over = Chunks::whole(vec![5; 101]);
        assert!(q
            .push_chunks(None, &mut over, &Outage::Reject, false)
            .is_err());
        assert_eq!(
            over.buf.len(),
            101,
            "refused chunks stay whole in the caller's hands"
        );
        assert!(q.would_take(None, 101, &Outage::Reject).is_err());
        q.push(None, &[4; 100], &Outage::Reject).unwrap();
        assert_eq!(q.queued(), limit);
        assert_eq!(q.ledger.accepted as usize, limit);
        assert!(
            q.push(None, b"", &Outage::Reject).is_ok(),
            "nothing more is no more"
        );
    }

    #[test]
    fn a_hand_over_past_the_limit_is_refused_whole_unless_forced() {
        let mut q = queue(10);
        q.push(None, b"12345678", &Outage::Reject).unwrap();
        let mut held = chunks(&["ab", "cd"]);
        assert!(matches!(
            q.push_chunks(None, &mut held, &Outage::Reject, false),
            Err(Refused::Full {
                queued: 8,
                limit: 10
            })
        ));
        assert_eq!(
            contents(&q.segs).0,
            b"12345678",
            "nothing of a refused hand-over"
        );
        q.push_chunks(None, &mut held, &Outage::Reject, true)
            .unwrap();
        assert_eq!(contents(&q.segs).0, b"12345678abcd");
    }

    #[test]
    fn a_stale_socket_is_refused_on_every_path() {
        let mut q = queue(100);
        assert!(matches!(
            q.push(Some(2), b"x", &Outage::Reject),
            Err(Refused::Closed)
        ));
        let mut big = Chunks::whole(vec![1; 10]);
        assert!(matches!(
            q.push_chunks(Some(2), &mut big, &Outage::Reject, false),
            Err(Refused::Closed)
        ));
        q.push_chunks(Some(1), &mut big, &Outage::Reject, false)
            .unwrap();
        assert_eq!(q.segs.len(), 10);
    }

    #[test]
    fn while_down_a_hand_over_follows_the_outage_policy() {
        let mut q = queue(10);
        q.accepting = false;
        let mut held = chunks(&["ab", "cd"]);
        assert!(matches!(
            q.push_chunks(None, &mut held, &Outage::Reject, true),
            Err(Refused::NotConnected)
        ));
        let policy = Outage::Buffer { max_bytes: 6 };
        q.push_chunks(None, &mut held, &policy, false).unwrap();
        let mut held = chunks(&["ab", "cd"]);
        assert!(matches!(
            q.push_chunks(None, &mut held, &policy, false),
            Err(Refused::OutageFull {
                buffered: 4,
                limit: 6
            })
        ));
        q.release_outage();
        assert_eq!(contents(&q.segs), (b"abcd".to_vec(), vec![2, 2]));
        q.closed = true;
        assert!(matches!(
            q.push_chunks(None, &mut held, &policy, true),
            Err(Refused::Closed)
        ));
    }

    #[test]
    fn the_outage_buffer_moves_behind_the_queue_segment_by_segment() {
        let mut q = queue(1 << 20);
        q.accepting = false;
        let policy = Outage::Buffer { max_bytes: 1 << 20 };
        q.push(None, b"down", &policy).unwrap();
        let mut big = Chunks::whole(vec![6; 2 * Queue::APPEND_MAX]);
        let ptr = big.buf.as_ptr();
        q.push_chunks(None, &mut big, &policy, false).unwrap();
        q.push(None, b"tail", &policy).unwrap();
        assert_eq!(q.held(), 8 + 2 * Queue::APPEND_MAX as u64);
        q.accepting = true;
        q.segs.append(b"up");
        q.ledger.accept(2);
        q.release_outage();
        let got = take(&mut q);
        let lens: Vec<usize> = got.iter().map(|s| s.buf.len()).collect();
        assert_eq!(lens, [2, 4, 2 * Queue::APPEND_MAX, 4]);
        assert_eq!(
            (&got[0].buf[..], &got[1].buf[..]),
            (&b"up"[..], &b"down"[..])
        );
        assert_eq!(got[2].buf.as_ptr(), ptr, "moved, not copied");
        q.check();
    }
}
