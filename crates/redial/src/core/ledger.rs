//! The byte ledger of one managed connection: where every byte a send path
//! accepted went. This is the one place the promise "nothing lost
//! silently" is kept in numbers.
//!
//! # The rule
//!
//! Every byte accepted by a send path (`Connection::send`/`write`,
//! `Socket::send`/`write`, a `Sender`'s hand-over, `Pool::send*`, a
//! `Stream` write) ends in exactly one of:
//!
//! - **written**: handed to the kernel of some connection (under TLS: to
//!   the TLS layer, see [`Stats::bytes_out`](crate::Stats::bytes_out));
//! - **returned**: handed back to the application in a `Reset::unsent` or
//!   `Close::unsent` (bytes a push refused never enter the ledger: the
//!   `SendError` carries them);
//! - **queued**: still in the send queue, the driver's batch, or the outage
//!   buffer;
//! - **discarded**: handed back to no one, because the application chose
//!   not to take them (the default `on_reset`/`on_close`, a dropped
//!   `Sender` whose bytes the connection refused) — counted in
//!   [`Stats::discarded_bytes`](crate::Stats::discarded_bytes) and logged
//!   with `warn!`.
//!
//! so that `accepted = written + returned + queued + discarded` at every
//! hand-over. The ledger lives inside the locked send queue: each hand-over
//! (a push, the driver taking a batch, a write, a hand-back) updates it in
//! the same critical section as the bytes it moves, and debug builds
//! assert the balance there.

/// Totals in bytes since the connection was made; only ever grow, except
/// `returned`, which gives to `discarded` what a default handler dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ledger {
    /// Bytes a send path accepted.
    pub accepted: u64,
    /// Bytes handed to the kernel (or the TLS layer).
    pub written: u64,
    /// Bytes handed back in a `Reset` or `Close`.
    pub returned: u64,
    /// Bytes no one took, counted and logged.
    pub discarded: u64,
}

impl Ledger {
    /// `len` bytes joined the queue (or the outage buffer).
    #[inline]
    pub(crate) fn accept(&mut self, len: usize) {
        self.accepted = self.accepted.wrapping_add(len as u64);
    }

    /// `n` queued bytes reached the kernel.
    #[inline]
    pub(crate) fn write(&mut self, n: usize) {
        self.written = self.written.saturating_add(n as u64);
    }

    /// `n` queued bytes left the queue for a `Reset` or `Close`.
    pub(crate) fn hand_back(&mut self, n: u64) {
        self.returned = self.returned.saturating_add(n);
    }

    /// `n` bytes handed back were dropped by a handler that did not take
    /// them.
    pub(crate) fn discard_returned(&mut self, n: u64) {
        let n = n.min(self.returned);
        self.returned -= n;
        self.discarded = self.discarded.saturating_add(n);
    }

    /// `n` bytes accepted by a `Sender` that the connection refused when
    /// the sender was dropped: they enter the ledger and leave it at once.
    pub(crate) fn discard_refused(&mut self, n: usize) {
        self.accept(n);
        self.discarded = self.discarded.saturating_add(n as u64);
    }

    /// Whether every accepted byte is accounted for, given what is still
    /// queued (the send queue, the driver's unwritten batch, the outage
    /// buffer).
    pub fn balances(&self, queued: u64) -> bool {
        let out =
            self.written as u128 + self.returned as u128 + self.discarded as u128 + queued as u128;
        self.accepted as u128 == out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_hand_over_keeps_the_balance() {
        let mut l = Ledger::default();
        l.accept(10);
        assert!(l.balances(10));
        l.write(4);
        assert!(l.balances(6));
        l.hand_back(6);
        assert!(l.balances(0));
        l.discard_returned(2);
        assert_eq!((l.returned, l.discarded), (4, 2));
        assert!(l.balances(0));
        l.discard_refused(5);
        assert!(l.balances(0));
        assert!(!l.balances(1), "a byte too many in the queue is caught");
    }
}
