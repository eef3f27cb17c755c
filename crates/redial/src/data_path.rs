//! The send path without sockets or a runtime, for a fuzz target (and the
//! unit test below): every operation runs the library's own code — the
//! queue's pushes, a real [`Sender`], the driver's batch, its partial
//! writes and its hand-backs — and [`DataPath::check`] asserts the byte
//! ledger (see `ledger.rs`) after each one.

use std::sync::Arc;

use crate::core::ledger::Ledger;
use crate::driver::batch::{copy_back, refill_slot, settle, take_back, Batch};
use crate::error::SendError;
use crate::handle::sender::Sender;
use crate::options::{Options, Outage};
use crate::reset::{Handed, Unsent};
use crate::shared::{Shared, State};

/// One connection's send path, driven by hand.
///
/// ```text
/// let mut p = redial::fuzzing::DataPath::new(1 << 20, Some(4096));
/// p.connect();
/// let _ = p.send(b"hello");
/// p.take_batch();
/// p.write(3);
/// p.reset(false);
/// p.check();
/// ```
pub struct DataPath {
    shared: Arc<Shared>,
    batch: Option<Box<Batch>>,
    sender: Option<Sender>,
    generation: u64,
    /// Bytes the application got back and kept (`Reset`/`Close` unsent).
    kept: u64,
}

impl DataPath {
    /// A connection, not yet up, with a send queue of `limit` bytes and,
    /// with `outage`, an outage buffer of that many bytes.
    pub fn new(limit: usize, outage: Option<usize>) -> Self {
        let mut opts = Options::new().send_queue_limit(limit.max(1));
        if let Some(max_bytes) = outage {
            opts = opts.outage(Outage::Buffer { max_bytes });
        }
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 1));
        let endpoint = crate::endpoint::Endpoint::from_kind(crate::endpoint::Kind::Addr(addr));
        DataPath {
            shared: Arc::new(Shared::new(1, endpoint, None, Arc::new(opts))),
            batch: None,
            sender: None,
            generation: 0,
            kept: 0,
        }
    }

    /// A connection comes up: what the outage buffer held goes first.
    pub fn connect(&mut self) {
        let mut q = self.shared.queue();
        if q.closed {
            return;
        }
        self.generation += 1;
        q.generation = self.generation;
        q.socket_open = true;
        q.release_outage();
        q.accepting = true;
    }

    /// `Connection::send`.
    pub fn send(&mut self, data: &[u8]) -> Result<(), SendError> {
        if data.is_empty() {
            return Ok(());
        }
        self.shared
            .push(None, data)
            .map(drop)
            .map_err(|r| self.shared.send_error(r, data.to_vec()))
    }

    /// `Socket::send` on the live connection's socket.
    pub fn socket_send(&mut self, data: &[u8]) -> Result<(), SendError> {
        if data.is_empty() {
            return Ok(());
        }
        self.shared
            .push(Some(self.generation), data)
            .map(drop)
            .map_err(|r| self.shared.send_error(r, data.to_vec()))
    }

    /// `Sender::send` on this path's sender (made on first use).
    pub fn sender_send(&mut self, data: &[u8]) -> Result<(), SendError> {
        let shared = &self.shared;
        self.sender
            .get_or_insert_with(|| Sender::new(shared.clone()))
            .send(data)
    }

    /// `Sender::try_flush`.
    pub fn sender_flush(&mut self) -> Result<(), SendError> {
        self.sender.as_mut().map_or(Ok(()), Sender::try_flush)
    }

    /// Drops the sender: what it held is handed over or discarded.
    pub fn sender_drop(&mut self) {
        self.sender = None;
    }

    /// The driver takes what is queued (when its batch is written).
    pub fn take_batch(&mut self) {
        let spent = self.batch.as_ref().is_none_or(|b| b.done());
        if spent && self.shared.queue().socket_open {
            refill_slot(&mut self.batch, &self.shared);
        }
    }

    /// The kernel takes up to `n` bytes of the batch; returns how many.
    pub fn write(&mut self, n: usize) -> usize {
        let Some(b) = self.batch.as_deref_mut() else {
            return 0;
        };
        let n = n.min(b.unwritten() as usize);
        if n > 0 {
            b.advance(&self.shared, n);
        }
        n
    }

    /// The live connection is lost; the handler takes the unsent bytes
    /// (`take`) or leaves them to the default, which discards them.
    pub fn reset(&mut self, take: bool) -> Unsent {
        let (batch, queued) = {
            let mut q = self.shared.queue();
            let batch = take_back(&mut self.batch, &mut q);
            q.socket_open = false;
            q.accepting = false;
            (batch, q.take_queued(false))
        };
        let mut unsent = Unsent::default();
        copy_back(batch, queued, &mut unsent);
        self.hand(unsent, take)
    }

    /// The connection ends for good (`disconnect` whose grace ran out,
    /// `abort`, giving up): everything left is handed back once.
    pub fn close(&mut self, take: bool) -> Unsent {
        let (batch, queued) = {
            let mut q = self.shared.queue();
            (take_back(&mut self.batch, &mut q), q.close())
        };
        let mut unsent = Unsent::default();
        copy_back(batch, queued, &mut unsent);
        self.shared.set_state(State::Closed);
        self.hand(unsent, take)
    }

    fn hand(&mut self, unsent: Unsent, take: bool) -> Unsent {
        let handed = Handed::new(unsent);
        let taken = if take {
            handed.take()
        } else {
            handed.drop_unsent();
            Unsent::default()
        };
        self.kept += taken.unwritten();
        settle(&self.shared, handed.discarded(), "fuzzing");
        taken
    }

    /// The ledger's totals.
    pub fn ledger(&self) -> Ledger {
        self.shared.queue().ledger
    }

    /// Asserts that every accepted byte is written, handed back, still
    /// queued or discarded, and that what the application kept is what the
    /// ledger says was handed back.
    pub fn check(&self) {
        let q = self.shared.queue();
        assert!(
            q.ledger.balances(q.held()),
            "ledger out of balance: {:?}, {} held",
            q.ledger,
            q.held()
        );
        assert_eq!(q.ledger.returned, self.kept, "handed back vs kept");
        if let Some(b) = self.batch.as_deref() {
            assert_eq!(b.unwritten(), q.inflight as u64, "batch vs in flight");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fixed walk through every operation, checking after each step.
    #[test]
    fn every_step_keeps_the_ledger() {
        let mut p = DataPath::new(64, Some(32));
        let steps: [fn(&mut DataPath); 21] = [
            |p| drop(p.send(b"while down")),
            |p| drop(p.sender_send(b"held")),
            DataPath::connect,
            |p| drop(p.send(&[7; 40])),
            |p| drop(p.socket_send(b"sock")),
            DataPath::take_batch,
            |p| assert_eq!(p.write(15), 15),
            |p| drop(p.send(&[8; 60])),
            |p| drop(p.reset(false)),
            |p| drop(p.sender_flush()),
            DataPath::connect,
            |p| drop(p.send(b"again")),
            DataPath::take_batch,
            |p| assert_eq!(p.write(2), 2),
            |p| drop(p.reset(true)),
            |p| drop(p.sender_send(b"dropped")),
            DataPath::sender_drop,
            |p| drop(p.send(b"buffered")),
            |p| drop(p.close(true)),
            |p| drop(p.sender_send(b"late")),
            DataPath::sender_drop,
        ];
        for step in steps {
            step(&mut p);
            p.check();
        }
        let l = p.ledger();
        assert!(l.written > 0 && l.returned > 0 && l.discarded > 0, "{l:?}");
    }
}
