//! The demo's bookkeeping for one connection: numbered messages fed to an
//! [`Account`], which checks the per-connection equation (see
//! [`account`](crate::demo::account)), plus the resets and recoveries for the
//! table.
//!
//! Messages are fixed-size lines, `00000042\n`, so byte counts convert to
//! message counts exactly.
//!
//! ```
//! use redial_cli::demo::tally::{message, Tally};
//!
//! let mut t = Tally::default();
//! t.connected();
//! t.sent(0, Ok(()));
//! t.data(&message(0)[..4]);
//! t.data(&message(0)[4..]); // echoes arrive split or coalesced
//! t.finish(9);
//! let c = t.counts();
//! assert_eq!((c.sent(), c.frames.echoed, c.frames.lost_silently()), (1, 1, 0));
//! assert!(c.frames.is_clean());
//! ```

use redial::{Close, Reset, SendError, Unsent};

use crate::demo::account::{unacked_max, Account, Counts};

/// Bytes in one message: eight digits and a newline.
pub const MSG_LEN: usize = 9;

/// Message number `n` as sent.
pub fn message(n: u64) -> [u8; MSG_LEN] {
    let mut m = [b'0'; MSG_LEN];
    let digits = format!("{:08}", n % 100_000_000);
    m[..8].copy_from_slice(digits.as_bytes());
    m[8] = b'\n';
    m
}

/// The number in one message (without or with its newline).
pub fn parse_message(bytes: &[u8]) -> Option<u64> {
    let digits = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    if digits.len() != 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// One connection's account, fed by its handler and by the producer.
#[derive(Debug, Clone)]
pub struct Tally {
    account: Account,
    connects: u64,
    resets: u64,
    /// A connection is up, or was lost and not settled yet.
    live: bool,
    /// The current connection's unfinished line.
    line: Vec<u8>,
    /// What the close handed back, settled by [`Tally::finish`].
    close: Option<(Returned, Option<u64>)>,
}

/// What an `Unsent` held: the message cut mid-write (number, bytes
/// written) and the whole ones after it.
type Returned = (Option<(u64, usize)>, Vec<u64>);

impl Default for Tally {
    fn default() -> Self {
        Tally {
            account: Account::new(MSG_LEN).max_unacked(unacked_max()),
            connects: 0,
            resets: 0,
            live: false,
            line: Vec::new(),
            close: None,
        }
    }
}

/// One row of the demo's table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Row {
    /// Where every message went.
    pub frames: Counts,
    /// Live connections lost.
    pub resets: u64,
    /// Reconnects after a loss.
    pub recoveries: u64,
}

impl Row {
    /// `send` calls.
    pub fn sent(&self) -> u64 {
        self.frames.accepted + self.frames.refused
    }

    /// Refused by `send` plus returned in `Reset`/`Close::unsent`.
    pub fn handed_back(&self) -> u64 {
        self.frames.refused + self.frames.handed_back
    }

    /// Adds another row (for the total).
    pub fn add(&mut self, o: &Row) {
        self.frames.add(&o.frames);
        self.resets += o.resets;
        self.recoveries += o.recoveries;
    }
}

impl Tally {
    /// The outcome of sending message `n`. Call it under the same lock as
    /// the `send`, so that a loss reported meanwhile finds the message.
    pub fn sent(&mut self, n: u64, result: Result<(), SendError>) {
        match result {
            Ok(()) => self.account.accepted(n),
            Err(e) => {
                if e.data() != message(n) {
                    self.account
                        .anomaly(format!("send of message {n} handed back other bytes"));
                }
                self.account.refused();
            }
        }
    }

    /// A connection is up: its echo stream starts afresh.
    pub fn connected(&mut self) {
        self.connects += 1;
        self.live = true;
        self.line.clear();
        self.account.connected();
    }

    /// Echoed bytes, in any split.
    pub fn data(&mut self, mut data: &[u8]) {
        while let Some(i) = data.iter().position(|&b| b == b'\n') {
            self.line.extend_from_slice(&data[..=i]);
            data = &data[i + 1..];
            match parse_message(&self.line) {
                Some(n) => self.account.echoed(n),
                None => self.account.anomaly(format!(
                    "echoed line {:?} was never sent",
                    String::from_utf8_lossy(&self.line)
                )),
            }
            self.line.clear();
        }
        self.line.extend_from_slice(data);
    }

    /// The message cut mid-write and the whole ones after it.
    fn returned(&mut self, unsent: &Unsent) -> Returned {
        let mut number = |bytes: &[u8]| {
            let n = parse_message(bytes);
            if n.is_none() {
                self.account.anomaly(format!(
                    "handed back {:?}, not a message",
                    String::from_utf8_lossy(bytes)
                ));
            }
            n
        };
        let cut = unsent
            .partial()
            .and_then(|p| number(&p.data).map(|n| (n, p.written)));
        let whole = unsent.chunks().filter_map(&mut number).collect();
        (cut, whole)
    }

    /// A live connection was lost: its messages written and not echoed are
    /// lost in flight, the unsent ones come back; the kernel's acknowledged
    /// count (where it tells) is checked against the echoes.
    pub fn reset(&mut self, reset: &Reset) {
        self.resets += 1;
        self.live = false;
        self.line.clear();
        let (cut, whole) = self.returned(reset.unsent());
        self.account
            .lost(reset.written(), reset.acked(), 0, cut, whole);
    }

    /// The connection ended for good: noted, settled by [`Tally::finish`]
    /// once the connection's total `bytes_out` is known.
    pub fn closed(&mut self, close: &Close) {
        let returned = self.returned(close.unsent());
        self.close = Some((returned, close.acked()));
    }

    /// Settles the close with the connection's total `bytes_out` (from
    /// `Connection::stats`, read after the close).
    pub fn finish(&mut self, bytes_out: u64) {
        let ((cut, whole), acked) = self.close.take().unwrap_or_default();
        self.account
            .closed(bytes_out, acked, self.live, 0, cut, whole);
        self.live = false;
    }

    /// Messages accepted and not yet echoed, handed back or lost.
    pub fn waiting(&self) -> usize {
        self.account.waiting()
    }

    /// The first anomalies, described.
    pub fn notes(&self) -> &[String] {
        self.account.notes()
    }

    /// The row for the table.
    pub fn counts(&self) -> Row {
        Row {
            frames: self.account.counts(),
            resets: self.resets,
            recoveries: self.connects.saturating_sub(1),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn messages_round_trip() {
        assert_eq!(&message(42), b"00000042\n");
        assert_eq!(parse_message(&message(7)), Some(7));
        assert_eq!(parse_message(b"0000004\n"), None);
        assert_eq!(parse_message(b"0000004x\n"), None);
    }

    #[test]
    fn coalesced_echo_counts_each_message() {
        let mut t = Tally::default();
        t.connected();
        let mut all = Vec::new();
        for n in 0..5 {
            t.sent(n, Ok(()));
            all.extend_from_slice(&message(n));
        }
        t.data(&all[..13]);
        t.data(&all[13..]);
        t.finish(all.len() as u64);
        let c = t.counts();
        assert_eq!(c.frames.echoed, 5);
        assert!(c.frames.is_clean(), "{:?}", t.notes());
    }

    #[test]
    fn unechoed_on_the_last_connection_is_not_hidden() {
        let mut t = Tally::default();
        t.connected();
        t.sent(0, Ok(()));
        t.sent(1, Ok(()));
        t.data(&message(0));
        let mut written_both = t.clone();
        // Both written, one echoed: one unanswered, and the run is unclean.
        written_both.finish(2 * MSG_LEN as u64);
        let c = written_both.counts();
        assert_eq!((c.frames.unanswered, c.frames.lost_silently()), (1, 0));
        assert!(!c.frames.is_clean());
        // Had the second never been written, it would have vanished.
        t.finish(MSG_LEN as u64);
        let c = t.counts();
        assert_eq!((c.frames.unaccounted, c.frames.lost_silently()), (1, 1));
    }

    #[test]
    fn refused_sends_are_handed_back() {
        let mut t = Tally::default();
        t.sent(
            0,
            Err(SendError::NotConnected {
                data: message(0).to_vec(),
            }),
        );
        t.finish(0);
        let c = t.counts();
        assert_eq!((c.sent(), c.handed_back()), (1, 1));
        assert!(c.frames.is_clean(), "{:?}", t.notes());
    }

    #[test]
    fn a_skipped_echo_is_caught_even_when_totals_balance() {
        let mut t = Tally::default();
        t.connected();
        for n in 0..3 {
            t.sent(n, Ok(()));
        }
        // Message 1 never comes back but 2 does.
        t.data(&message(0));
        t.data(&message(2));
        t.finish(3 * MSG_LEN as u64);
        assert!(t.counts().frames.anomalies > 0);
    }
}
