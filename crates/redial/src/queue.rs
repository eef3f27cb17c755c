//! The send queue of one connection: one contiguous buffer plus the end
//! offset of every `send` call, the outage buffer, and the ledger that
//! says where every accepted byte went. Senders append under a short lock
//! (held by [`Shared`](crate::shared::Shared)); the driver swaps the whole
//! buffer out and writes it in one go, which is what makes one `send` per
//! message as cheap as a hand-tuned `BufWriter`. The offsets cost 8 bytes
//! a message and let a reset hand back whole chunks.
//!
//! Plain data: no lock, no task, no socket here; [`Shared`](crate::shared::Shared)
//! owns the lock around it.

use crate::core::ledger::{append_chunks, Ledger};
use crate::error::SendError;
use crate::options::Outage;
use crate::reset::Unsent;

pub(crate) struct Queue {
    pub(crate) buf: Vec<u8>,
    pub(crate) ends: Vec<usize>,
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
    pub(crate) outage: Option<Box<Chunks>>,
    pub(crate) room_waiters: bool,
    limit: usize,
    /// Where every accepted byte went; updated with the bytes it counts,
    /// under this lock (see `ledger.rs`).
    pub(crate) ledger: Ledger,
}

/// Bytes and the end offset of every chunk in them: what an
/// [`Outage::Buffer`] connection holds for its next connection, and what a
/// [`Sender`](crate::Sender) holds before it hands over.
#[derive(Default, Debug)]
pub(crate) struct Chunks {
    pub(crate) buf: Vec<u8>,
    pub(crate) ends: Vec<usize>,
}

impl Chunks {
    #[inline]
    pub(crate) fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
        self.ends.push(self.buf.len());
    }

    /// Appends `other`'s chunks, which stay whole.
    fn append(&mut self, other: &Chunks) {
        append_chunks(&mut self.buf, &mut self.ends, &other.buf, &other.ends);
    }

    /// Empties it, keeping the capacity.
    pub(crate) fn clear(&mut self) {
        self.buf.clear();
        self.ends.clear();
    }
}

/// Every this many bytes queued and not yet taken by the driver, an
/// awaiting writer ([`Connection::write`](crate::Connection::write),
/// [`Socket::write`](crate::Socket::write)) yields once. A producer that
/// never has to wait for room would otherwise fill the whole queue before
/// the driver, on the same thread, writes its first byte: the peer would
/// sit idle meanwhile, and the queue would grow to its limit. 64 KiB (not
/// more): with 1,000 connections on a 2-worker runtime, each producer filled
/// this much before any connection task ran, and at 256 KiB the queues took
/// 4x the memory and half the rate (BENCHMARKS.md, scenario 1c).
const HAND_OVER_EVERY: usize = 64 * 1024;

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

impl Queue {
    /// An empty queue that takes up to `limit` bytes, for a connection not
    /// yet up.
    pub(crate) fn new(limit: usize) -> Self {
        Queue {
            buf: Vec::new(),
            ends: Vec::new(),
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
        self.buf.is_empty() && self.inflight == 0
    }

    pub(crate) fn queued(&self) -> usize {
        self.buf.len() + self.inflight
    }

    /// Every accepted byte not yet written or handed back: the queue, the
    /// driver's unwritten batch and the outage buffer.
    pub(crate) fn held(&self) -> u64 {
        let outage = self.outage.as_ref().map_or(0, |o| o.buf.len());
        (self.queued() + outage) as u64
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
    #[inline]
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

    /// What appending to the queue did, given its length before.
    #[inline]
    fn pushed_since(&self, before: usize) -> Pushed {
        Pushed {
            was_empty: before == 0,
            hand_over: before / HAND_OVER_EVERY != self.buf.len() / HAND_OVER_EVERY,
        }
    }

    /// Appends chunks behind what is queued; they stay whole.
    fn append_chunks(&mut self, chunks: &Chunks) {
        append_chunks(&mut self.buf, &mut self.ends, &chunks.buf, &chunks.ends);
    }

    /// The outage buffer, when `len` more bytes fit in `max_bytes` (or
    /// `force` takes them regardless).
    fn outage_room(
        &mut self,
        len: usize,
        max_bytes: usize,
        force: bool,
    ) -> Result<&mut Chunks, Refused> {
        let outage = self.outage.get_or_insert_with(Box::default);
        let buffered = outage.buf.len();
        if !force && buffered + len > max_bytes {
            return Err(Refused::OutageFull {
                buffered,
                limit: max_bytes,
            });
        }
        Ok(outage)
    }

    /// Appends to the live socket's queue.
    #[inline(always)]
    fn push_live(&mut self, data: &[u8]) -> Result<Pushed, Refused> {
        self.room_for(data.len())?;
        let before = self.buf.len();
        self.buf.extend_from_slice(data);
        self.ends.push(self.buf.len());
        self.ledger.accept(data.len());
        self.check();
        Ok(self.pushed_since(before))
    }

    #[inline]
    fn push_socket(&mut self, generation: u64, data: &[u8]) -> Result<Pushed, Refused> {
        if self.closed || !self.socket_open || self.generation != generation {
            return Err(Refused::Closed);
        }
        self.push_live(data)
    }

    /// Appends to the connection's queue: the live socket's while
    /// `on_connect` has run, else the outage policy decides. The live case
    /// is inlined into every send call; the others are not.
    #[inline(always)]
    pub(crate) fn push_connection(
        &mut self,
        data: &[u8],
        policy: Outage,
    ) -> Result<Pushed, Refused> {
        if self.accepting && !self.closed {
            return self.push_live(data);
        }
        self.push_down(data, policy)
    }

    /// [`Queue::push_connection`] while the connection is down or closed.
    #[cold]
    #[inline(never)]
    fn push_down(&mut self, data: &[u8], policy: Outage) -> Result<Pushed, Refused> {
        if self.closed {
            return Err(Refused::Closed);
        }
        match self.policy_while_down(policy) {
            Outage::Reject => Err(Refused::NotConnected),
            Outage::Buffer { max_bytes } => {
                self.outage_room(data.len(), max_bytes, false)?.push(data);
                self.ledger.accept(data.len());
                self.check();
                Ok(Pushed::default())
            }
        }
    }

    /// Appends to a live socket's queue (`socket_gen`) or the connection's.
    #[inline(always)]
    pub(super) fn push(
        &mut self,
        socket_gen: Option<u64>,
        data: &[u8],
        policy: Outage,
    ) -> Result<Pushed, Refused> {
        match socket_gen {
            Some(g) => self.push_socket(g, data),
            None => self.push_connection(data, policy),
        }
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
            self.append_chunks(&held);
        }
    }

    /// Hands over a [`Sender`](crate::Sender)'s chunks, all or none, to
    /// the live socket's queue or, while down, to the outage policy.
    /// `force` takes them past the queue's (or outage buffer's) limit: a
    /// dropped sender has nowhere else to put them.
    pub(crate) fn push_chunks(
        &mut self,
        held: &mut Chunks,
        policy: Outage,
        force: bool,
    ) -> Result<Pushed, Refused> {
        if self.closed {
            return Err(Refused::Closed);
        }
        let len = held.buf.len();
        if self.accepting {
            if !force {
                self.room_for(len)?;
            }
            let before = self.buf.len();
            if before == 0 && self.ends.is_empty() {
                // Nothing queued: take the sender's buffers whole and give
                // it the queue's empty ones, instead of copying its batch
                // under the lock.
                std::mem::swap(&mut self.buf, &mut held.buf);
                std::mem::swap(&mut self.ends, &mut held.ends);
            } else {
                self.append_chunks(held);
            }
            self.ledger.accept(len);
            self.check();
            return Ok(self.pushed_since(before));
        }
        match self.policy_while_down(policy) {
            Outage::Reject => Err(Refused::NotConnected),
            Outage::Buffer { max_bytes } => {
                self.outage_room(len, max_bytes, force)?.append(held);
                self.ledger.accept(len);
                self.check();
                Ok(Pushed::default())
            }
        }
    }

    /// Ends the queue for good: every later send is refused, and every
    /// queued byte, the outage buffer's too, goes into `unsent`.
    pub(crate) fn close_into(&mut self, unsent: &mut Unsent) {
        self.closed = true;
        self.socket_open = false;
        self.accepting = false;
        self.drain_into(unsent, true);
    }

    /// Takes every queued byte (not the driver's batch) into `unsent`,
    /// handing them back in the ledger.
    pub(crate) fn drain_into(&mut self, unsent: &mut Unsent, with_outage: bool) {
        unsent.append(&self.buf, &self.ends);
        self.ledger.hand_back(self.buf.len() as u64);
        self.buf = Vec::new();
        self.ends = Vec::new();
        if with_outage {
            if let Some(held) = self.outage.take() {
                unsent.append(&held.buf, &held.ends);
                self.ledger.hand_back(held.buf.len() as u64);
            }
        }
        self.check();
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

    #[test]
    fn sends_are_held_for_the_replacement_whatever_the_policy() {
        let mut q = queue(10);
        q.accepting = false;
        assert!(matches!(
            q.push_connection(b"abc", Outage::Reject),
            Err(Refused::NotConnected)
        ));
        // A connection past its lifetime is being replaced.
        q.holding = true;
        assert!(q.push_connection(b"abcdef", Outage::Reject).is_ok());
        assert!(q.buf.is_empty(), "held, not queued for the old socket");
        // Up to the queue's limit.
        assert!(q.push_connection(b"ghijk", Outage::Reject).is_err());
        let mut c = chunks(&["gh"]);
        assert!(q.push_chunks(&mut c, Outage::Reject, false).is_ok());
        assert_eq!(q.held(), 8);
        // The new socket's `on_connect` ran: the held bytes follow.
        q.accepting = true;
        q.holding = false;
        q.release_outage();
        assert_eq!(q.buf, b"abcdefgh");
        assert_eq!(q.ledger.accepted, 8);
    }

    #[test]
    fn handed_over_chunks_stay_whole_behind_what_is_queued() {
        let mut q = queue(100);
        q.push_connection(b"abc", Outage::Reject).unwrap();
        let p = q
            .push_chunks(&mut chunks(&["de", "fgh"]), Outage::Reject, false)
            .unwrap();
        assert!(!p.was_empty);
        assert_eq!(q.buf, b"abcdefgh");
        assert_eq!(q.ends, [3, 5, 8]);
        let mut unsent = Unsent::default();
        q.drain_into(&mut unsent, false);
        let got: Vec<&[u8]> = unsent.chunks().collect();
        assert_eq!(got, [&b"abc"[..], b"de", b"fgh"]);
    }

    #[test]
    fn a_hand_over_into_an_empty_queue_moves_the_batch_without_copying_it() {
        let mut q = queue(100);
        let mut held = chunks(&["ab", "cde"]);
        let batch = held.buf.as_ptr();
        let p = q.push_chunks(&mut held, Outage::Reject, false).unwrap();
        assert!(p.was_empty);
        assert_eq!(
            q.buf.as_ptr(),
            batch,
            "the sender's buffer itself is queued"
        );
        assert_eq!((&q.buf[..], &q.ends[..]), (&b"abcde"[..], &[2, 5][..]));
        assert!(held.buf.is_empty() && held.ends.is_empty());
        // Behind queued bytes it is appended, whole.
        let mut more = chunks(&["f"]);
        q.push_chunks(&mut more, Outage::Reject, false).unwrap();
        assert_eq!((&q.buf[..], &q.ends[..]), (&b"abcdef"[..], &[2, 5, 6][..]));
        // An empty chunk queued alone is kept.
        let mut q = queue(100);
        q.push_connection(b"", Outage::Reject).unwrap();
        q.push_chunks(&mut chunks(&["x"]), Outage::Reject, false)
            .unwrap();
        assert_eq!(q.ends, [0, 1]);
    }

    #[test]
    fn a_hand_over_past_the_limit_is_refused_whole_unless_forced() {
        let mut q = queue(10);
        q.push_connection(b"12345678", Outage::Reject).unwrap();
        let mut held = chunks(&["ab", "cd"]);
        assert!(matches!(
            q.push_chunks(&mut held, Outage::Reject, false),
            Err(Refused::Full {
                queued: 8,
                limit: 10
            })
        ));
        assert_eq!(q.buf, b"12345678", "nothing of a refused hand-over");
        q.push_chunks(&mut held, Outage::Reject, true).unwrap();
        assert_eq!(q.buf, b"12345678abcd");
    }

    #[test]
    fn while_down_a_hand_over_follows_the_outage_policy() {
        let mut q = queue(10);
        q.accepting = false;
        let mut held = chunks(&["ab", "cd"]);
        assert!(matches!(
            q.push_chunks(&mut held, Outage::Reject, true),
            Err(Refused::NotConnected)
        ));
        let policy = Outage::Buffer { max_bytes: 6 };
        q.push_chunks(&mut held, policy, false).unwrap();
        assert!(matches!(
            q.push_chunks(&mut held, policy, false),
            Err(Refused::OutageFull {
                buffered: 4,
                limit: 6
            })
        ));
        q.release_outage();
        assert_eq!(q.buf, b"abcd");
        assert_eq!(q.ends, [2, 4]);
        q.closed = true;
        assert!(matches!(
            q.push_chunks(&mut held, policy, true),
            Err(Refused::Closed)
        ));
    }
}
