//! The demo's bookkeeping: where every numbered message of one connection
//! ended up — echoed, handed back, or lost in flight with a reset (as
//! `Reset::written` reports) — so that "lost silently" is a computed
//! number that would show a message vanishing unaccounted for.
//!
//! Messages are fixed-size lines, `00000042\n`, so byte counts convert to
//! message counts exactly.
//!
//! ```
//! use redial_cli::tally::{message, Tally};
//!
//! let mut t = Tally::default();
//! t.connected();
//! t.sent(Ok(()));
//! t.data(&message(0)[..4]);
//! t.data(&message(0)[4..]); // echoes arrive split or coalesced
//! let c = t.counts(0);
//! assert_eq!((c.sent, c.echoed, c.lost_silently()), (1, 1, 0));
//! ```

use std::collections::HashSet;

use redial::{Close, Reset, SendError};

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
#[derive(Debug, Default)]
pub struct Tally {
    sent: u64,
    refused: u64,
    echoed: HashSet<u64>,
    returned: HashSet<u64>,
    in_flight: u64,
    duplicates: u64,
    strays: u64,
    connects: u64,
    resets: u64,
    /// Bytes handed to the kernel by the connections that were reset.
    written_by_resets: u64,
    /// Bytes echoed on the current connection, partial line included.
    echo_bytes: u64,
    /// The current connection's unfinished line.
    line: Vec<u8>,
}

/// A [`Tally`] summed up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// `send` calls.
    pub sent: u64,
    /// Distinct messages that came back.
    pub echoed: u64,
    /// Refused by `send` while the connection was down.
    pub refused: u64,
    /// Returned in `Reset::unsent` / `Close::unsent` (whole or cut chunks).
    pub returned: u64,
    /// Written to the kernel on a connection that was then reset, never
    /// echoed: the count follows from `Reset::written`.
    pub in_flight: u64,
    /// Written on the last connection and not echoed by the end.
    pub unanswered: u64,
    /// Messages echoed twice or both echoed and handed back.
    pub duplicates: u64,
    /// Echoed lines that were never sent.
    pub strays: u64,
    /// Live connections lost.
    pub resets: u64,
    /// Reconnects after a loss.
    pub recoveries: u64,
}

impl Counts {
    /// Refused plus returned: everything the application got back.
    pub fn handed_back(&self) -> u64 {
        self.refused + self.returned
    }

    /// Messages not echoed, not handed back and not reported lost in flight:
    /// sent − echoed − handed back − lost in flight − unanswered. Zero
    /// unless something vanished without a word.
    pub fn lost_silently(&self) -> i64 {
        self.sent as i64
            - self.echoed as i64
            - self.handed_back() as i64
            - self.in_flight as i64
            - self.unanswered as i64
    }

    /// Adds another connection's counts.
    pub fn add(&mut self, o: &Counts) {
        self.sent += o.sent;
        self.echoed += o.echoed;
        self.refused += o.refused;
        self.returned += o.returned;
        self.in_flight += o.in_flight;
        self.unanswered += o.unanswered;
        self.duplicates += o.duplicates;
        self.strays += o.strays;
        self.resets += o.resets;
        self.recoveries += o.recoveries;
    }
}

impl Tally {
    /// The outcome of one `send` call.
    pub fn sent(&mut self, result: Result<(), SendError>) {
        self.sent += 1;
        if result.is_err() {
            self.refused += 1;
        }
    }

    /// A connection is up: its echo stream starts afresh.
    pub fn connected(&mut self) {
        self.connects += 1;
        self.echo_bytes = 0;
        self.line.clear();
    }

    /// Echoed bytes, in any split.
    pub fn data(&mut self, mut data: &[u8]) {
        self.echo_bytes += data.len() as u64;
        while let Some(i) = data.iter().position(|&b| b == b'\n') {
            self.line.extend_from_slice(&data[..=i]);
            data = &data[i + 1..];
            match parse_message(&self.line) {
                Some(n) => {
                    if !self.echoed.insert(n) {
                        self.duplicates += 1;
                    }
                }
                None => self.strays += 1,
            }
            self.line.clear();
        }
        self.line.extend_from_slice(data);
    }

    fn hand_back<'a>(&mut self, chunks: impl Iterator<Item = &'a [u8]>) {
        for chunk in chunks {
            match parse_message(chunk) {
                Some(n) => {
                    if !self.returned.insert(n) {
                        self.duplicates += 1;
                    }
                }
                None => self.strays += 1,
            }
        }
    }

    /// A live connection was lost: take back its unsent messages and count
    /// those written to the kernel but never echoed.
    pub fn reset(&mut self, reset: &Reset) {
        self.resets += 1;
        let unsent = reset.unsent();
        self.hand_back(unsent.chunks());
        let cut = unsent.partial();
        self.hand_back(cut.map(|p| p.data.as_slice()).into_iter());
        let written = reset.written();
        self.written_by_resets += written;
        let whole = written - cut.map_or(0, |p| p.written as u64);
        self.in_flight += self.unechoed(whole);
        self.echo_bytes = 0;
        self.line.clear();
    }

    /// Messages among `whole_written` bytes of the current connection that
    /// did not come back: the echo is a prefix of what was written.
    fn unechoed(&self, whole_written: u64) -> u64 {
        let written = whole_written / MSG_LEN as u64;
        written.saturating_sub(self.echo_bytes / MSG_LEN as u64)
    }

    /// The connection ended for good: take back what it never sent.
    pub fn closed(&mut self, close: &Close) {
        let unsent = close.unsent();
        self.hand_back(unsent.chunks());
        self.hand_back(unsent.partial().map(|p| p.data.as_slice()).into_iter());
    }

    /// The counts, given the connection's total `bytes_out` (from
    /// `Connection::stats`) to find what the last connection wrote.
    pub fn counts(&self, bytes_out: u64) -> Counts {
        let last = bytes_out.saturating_sub(self.written_by_resets);
        let both = self.echoed.intersection(&self.returned).count() as u64;
        Counts {
            sent: self.sent,
            echoed: self.echoed.len() as u64,
            refused: self.refused,
            returned: self.returned.len() as u64,
            in_flight: self.in_flight,
            unanswered: self.unechoed(last),
            duplicates: self.duplicates + both,
            strays: self.strays,
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
            t.sent(Ok(()));
            all.extend_from_slice(&message(n));
        }
        t.data(&all[..13]);
        t.data(&all[13..]);
        let c = t.counts(all.len() as u64);
        assert_eq!(c.echoed, 5);
        assert_eq!(c.lost_silently(), 0);
    }

    #[test]
    fn unechoed_on_the_last_connection_is_not_hidden() {
        let mut t = Tally::default();
        t.connected();
        t.sent(Ok(()));
        t.sent(Ok(()));
        t.data(&message(0));
        // Both written, one echoed: one unanswered.
        let c = t.counts(2 * MSG_LEN as u64);
        assert_eq!(c.unanswered, 1);
        assert_eq!(c.lost_silently(), 0);
        // Had the second never been written, it would be lost silently.
        let c = t.counts(MSG_LEN as u64);
        assert_eq!(c.lost_silently(), 1);
    }

    #[test]
    fn refused_sends_are_handed_back() {
        let mut t = Tally::default();
        t.sent(Err(SendError::NotConnected {
            data: message(0).to_vec(),
        }));
        let c = t.counts(0);
        assert_eq!((c.sent, c.handed_back(), c.lost_silently()), (1, 1, 0));
    }
}
