//! `redial connect`'s account of its input: every byte read from stdin ends
//! written to the kernel of some connection, dropped while the connection
//! was down without `--buffer` (and reported at once), or never sent (handed back by redial
//! when the connection gave up, kept for a re-send that never happened, or
//! refused when nothing could take it any more). Bytes written on a
//! connection that was then lost are counted apart: the peer may not have
//! received the last of them (lost in flight).
//!
//! ```
//! use redial_cli::connect::ledger::Ledger;
//!
//! let mut l = Ledger::default();
//! l.read(100);
//! l.dropped_while_down(10);
//! l.keep_for_resend(b"abc");
//! assert_eq!(l.close(5), 8); // 5 handed back at close + 3 never re-sent
//! // 82 bytes reached the kernel: the books balance.
//! assert_eq!(l.unbalanced(82), 0);
//! ```

use crate::units::format_size;

/// Where `connect`'s input went. Shared by the handler and the stdin loop.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Ledger {
    read: u64,
    dropped: u64,
    never_sent: u64,
    resend: Vec<u8>,
    lost_connections: u64,
    written_on_lost: u64,
    /// Of `written_on_lost`, never acknowledged by the peer's TCP, over the
    /// lost connections whose kernel told (`Reset::acked`).
    unacked_on_lost: u64,
    /// Lost connections whose kernel did not tell.
    lost_without_kernel: u64,
}

impl Ledger {
    /// `n` bytes came from stdin.
    pub fn read(&mut self, n: usize) {
        self.read += n as u64;
    }

    /// `n` bytes were dropped because the connection was down, or lost
    /// unsent with it, without `--buffer`; the tool says so when it happens.
    pub fn dropped_while_down(&mut self, n: usize) {
        self.dropped += n as u64;
    }

    /// `n` bytes of input will never be sent: handed back, refused for
    /// good, or a re-send that failed.
    pub fn never_sent(&mut self, n: usize) {
        self.never_sent += n as u64;
    }

    /// A connection was lost after writing `written` bytes to its kernel,
    /// `acked` of which the peer's TCP acknowledged (where the kernel
    /// tells): the rest were lost in flight.
    pub fn lost(&mut self, written: u64, acked: Option<u64>) {
        self.lost_connections += 1;
        self.written_on_lost += written;
        match acked {
            Some(a) => self.unacked_on_lost += written.saturating_sub(a),
            None => self.lost_without_kernel += 1,
        }
    }

    /// Keeps what a lost connection never sent, for the next connection.
    pub fn keep_for_resend(&mut self, bytes: &[u8]) {
        self.resend.extend_from_slice(bytes);
    }

    /// Hands the kept bytes to a new connection.
    pub fn take_resend(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.resend)
    }

    /// The connection closed for good, handing back `unsent` bytes: those
    /// and any re-send still kept are never sent. Returns how many bytes
    /// that is.
    pub fn close(&mut self, unsent: usize) -> u64 {
        let kept = self.take_resend().len();
        let n = (unsent + kept) as u64;
        self.never_sent += n;
        n
    }

    /// Bytes that will never be sent.
    pub fn never_sent_total(&self) -> u64 {
        self.never_sent
    }

    /// Bytes written on connections that were then lost.
    pub fn written_on_lost(&self) -> u64 {
        self.written_on_lost
    }

    /// Read − written − dropped − never sent − still kept, given the bytes
    /// written to the kernel over all connections (`Stats::bytes_out`): zero
    /// when every byte of input is accounted for.
    pub fn unbalanced(&self, bytes_out: u64) -> i64 {
        self.read as i64
            - bytes_out as i64
            - self.dropped as i64
            - self.never_sent as i64
            - self.resend.len() as i64
    }

    /// The account in one line, for stderr.
    ///
    /// ```
    /// let mut l = redial_cli::connect::ledger::Ledger::default();
    /// l.read(10);
    /// assert_eq!(
    ///     l.summary(10),
    ///     "input: 10 bytes read = 10 written to the kernel + 0 dropped while down + 0 never sent"
    /// );
    /// ```
    pub fn summary(&self, bytes_out: u64) -> String {
        let mut line = format!(
            "input: {} bytes read = {} written to the kernel + {} dropped while down + {} never sent",
            self.read, bytes_out, self.dropped, self.never_sent
        );
        if self.lost_connections > 0 {
            let s = if self.lost_connections == 1 { "" } else { "s" };
            if self.lost_without_kernel == 0 {
                line.push_str(&format!(
                    "; {} of the written were on {} lost connection{s}, {} of them never acknowledged by the peer (lost in flight)",
                    self.written_on_lost, self.lost_connections, self.unacked_on_lost,
                ));
            } else {
                line.push_str(&format!(
                    "; {} of the written were on {} lost connection{s} and may not have arrived (lost in flight)",
                    self.written_on_lost, self.lost_connections,
                ));
            }
        }
        let off = self.unbalanced(bytes_out);
        if off != 0 {
            line.push_str(&format!(
                "; {} unaccounted for",
                format_size(off.unsigned_abs())
            ));
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resend_that_never_happened_is_never_sent() {
        let mut l = Ledger::default();
        l.read(1000);
        l.lost(600, None);
        l.keep_for_resend(&[0; 400]);
        // Gave up before reconnecting: the kept bytes count.
        assert_eq!(l.close(0), 400);
        assert_eq!(l.unbalanced(600), 0);
        assert!(l
            .summary(600)
            .contains("600 of the written were on 1 lost connection"));
    }

    #[test]
    fn the_kernel_says_how_much_was_lost_in_flight() {
        let mut l = Ledger::default();
        l.read(100);
        l.lost(60, Some(50));
        l.lost(40, Some(40));
        let line = l.summary(100);
        assert!(
            line.ends_with("100 of the written were on 2 lost connections, 10 of them never acknowledged by the peer (lost in flight)"),
            "{line}"
        );
    }

    #[test]
    fn a_missing_byte_shows() {
        let mut l = Ledger::default();
        l.read(10);
        assert_eq!(l.unbalanced(9), 1);
        assert!(l.summary(9).ends_with("1 B unaccounted for"));
    }
}
