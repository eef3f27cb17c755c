//! The per-connection equation that `redial demo`, its test and the soak
//! (`redial-soak`, which compiles this same file) all check:
//!
//! ```text
//! accepted = echoed + handed back + lost in flight + unanswered
//! ```
//!
//! for every connection on its own, frame by frame. Every numbered frame
//! that `send` accepted waits in a FIFO, exactly as in redial's queue, and
//! leaves it once, in order:
//!
//! - **echoed**: it came back, and it must be the oldest waiting frame: a
//!   gap or a reordering in the echo is an anomaly;
//! - **lost in flight**: when a connection is lost, the frames it wrote
//!   whole to the kernel (from `Reset::written`) that did not come back;
//!   they are the oldest waiting, right after the last echo: loss is only
//!   ever a suffix of what a connection wrote;
//! - **handed back**: returned in `Reset::unsent` / `Close::unsent`, next
//!   in line and in order;
//! - **unanswered**: written whole on the last connection and not echoed by
//!   the end (the run then did not drain).
//!
//! Where the kernel tells how much of what a connection wrote the peer's
//! TCP acknowledged (`Reset::acked`), that evidence, which does not come
//! from redial's counters, is checked too: every frame that came back was
//! acknowledged (`echoed ≤ acked ≤ written`), so what is lost in flight
//! includes all the unacknowledged bytes, and those fit in the kernel's
//! send buffer (at most `max_unacked`, see [`unacked_max`]).
//!
//! A frame still waiting at the end was neither echoed, nor handed back,
//! nor written: it vanished, and counts as **unaccounted**. A run is clean
//! when every connection has no anomaly, nothing unaccounted and nothing
//! unanswered.
//!
//! ```
//! use redial_cli::demo::account::Account;
//!
//! let mut a = Account::new(9);
//! for n in 0..4 {
//!     a.accepted(n);
//! }
//! a.connected();
//! a.echoed(0);
//! // The connection is lost after writing frames 0..=2 whole and 4 bytes
//! // of frame 3, which comes back whole in `Reset::unsent`.
//! a.lost(3 * 9 + 4, Some(3 * 9), 0, Some((3, 4)), []);
//! let c = a.counts();
//! assert_eq!((c.echoed, c.lost_in_flight, c.handed_back), (1, 2, 1));
//! assert_eq!((c.kernel_checked, c.unacked_bytes, c.acked_not_echoed_bytes), (1, 4, 18));
//! assert!(c.is_clean(), "{:?}", a.notes());
//! ```

use std::collections::VecDeque;

/// How many anomalies are described in full (the count goes on).
const KEEP_NOTES: usize = 5;

/// The largest segment on loopback: 64 KiB.
pub const MAX_SEGMENT: u64 = 64 * 1024;

/// What an RST can leave received by the peer and never acknowledged to
/// the sender: a receiver acknowledges at least every second full segment,
/// and the RST carries no acknowledgement the sender processes.
pub const DELAYED_ACK: u64 = 2 * MAX_SEGMENT;

/// The most a connection's kernel can hold unacknowledged: the largest
/// send buffer the kernel gives a TCP socket, read from the system (Linux:
/// the third field of `/proc/sys/net/ipv4/tcp_wmem`), plus two segments
/// (the kernel queues while under the buffer's size, and the segment being
/// built may take it past by one more). `u64::MAX` (no check) where the
/// system does not say.
pub fn unacked_max() -> u64 {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|s| s.split_whitespace().nth(2)?.parse::<u64>().ok())
        .map_or(u64::MAX, |b| b.saturating_add(2 * MAX_SEGMENT))
}

/// One connection's frames, each in exactly one place.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Frames `send` accepted.
    pub accepted: u64,
    /// Frames `send` refused (handed back at once, never queued).
    pub refused: u64,
    /// Frames that came back.
    pub echoed: u64,
    /// Frames returned in `Reset::unsent` / `Close::unsent` (whole or cut).
    pub handed_back: u64,
    /// Frames written whole on a connection that was then lost, and never
    /// echoed.
    pub lost_in_flight: u64,
    /// Frames written whole on the last connection, not echoed by the end.
    pub unanswered: u64,
    /// Frames accepted and found nowhere: lost silently.
    pub unaccounted: u64,
    /// Gaps, reorderings, duplicates, strays, impossible byte counts, and
    /// kernel counts that contradict what came back.
    pub anomalies: u64,
    /// Connections whose writes the kernel's acknowledged count checked.
    pub kernel_checked: u64,
    /// Of the bytes written on those, never acknowledged by the peer: lost
    /// in the sender's kernel.
    pub unacked_bytes: u64,
    /// Acknowledged but never echoed: lost between the peer's kernel and
    /// the echo's return (proxy, server, and back).
    pub acked_not_echoed_bytes: u64,
}

impl Counts {
    /// `accepted − echoed − handed back − lost in flight − unanswered`:
    /// the frames that vanished without a word. Zero when clean.
    pub fn lost_silently(&self) -> i64 {
        self.accepted as i64
            - self.echoed as i64
            - self.handed_back as i64
            - self.lost_in_flight as i64
            - self.unanswered as i64
    }

    /// The equation holds, nothing is unanswered, nothing is odd.
    pub fn is_clean(&self) -> bool {
        self.lost_silently() == 0
            && self.unaccounted == 0
            && self.unanswered == 0
            && self.anomalies == 0
    }

    /// Adds another connection's counts (for a total row; cleanliness is
    /// decided per connection, where errors cannot cancel out).
    pub fn add(&mut self, o: &Counts) {
        self.accepted += o.accepted;
        self.refused += o.refused;
        self.echoed += o.echoed;
        self.handed_back += o.handed_back;
        self.lost_in_flight += o.lost_in_flight;
        self.unanswered += o.unanswered;
        self.unaccounted += o.unaccounted;
        self.anomalies += o.anomalies;
        self.kernel_checked += o.kernel_checked;
        self.unacked_bytes += o.unacked_bytes;
        self.acked_not_echoed_bytes += o.acked_not_echoed_bytes;
    }
}

/// The running account of one connection, fed by its handler (echoes,
/// losses, the close) and by whoever sends (accepted and refused frames).
/// A sender must record a frame under the same lock as its `send` call,
/// so a loss reported meanwhile finds it waiting.
#[derive(Debug, Clone)]
pub struct Account {
    frame_len: u64,
    max_unacked: u64,
    waiting: VecDeque<u64>,
    counts: Counts,
    /// Frames echoed by the current connection.
    gen_echoed: u64,
    /// Bytes written by the connections lost so far.
    written_by_losses: u64,
    notes: Vec<String>,
    closed: bool,
}

impl Account {
    /// An empty account for frames of `frame_len` bytes.
    pub fn new(frame_len: usize) -> Self {
        Account {
            frame_len: frame_len.max(1) as u64,
            max_unacked: u64::MAX,
            waiting: VecDeque::new(),
            counts: Counts::default(),
            gen_echoed: 0,
            written_by_losses: 0,
            notes: Vec::new(),
            closed: false,
        }
    }

    /// The most a connection's kernel can hold unacknowledged (see
    /// [`unacked_max`]). More unacknowledged bytes at a loss is an anomaly.
    #[must_use]
    pub fn max_unacked(mut self, bytes: u64) -> Self {
        self.max_unacked = bytes;
        self
    }

    /// Records an anomaly.
    pub fn anomaly(&mut self, what: String) {
        self.counts.anomalies += 1;
        if self.notes.len() < KEEP_NOTES {
            self.notes.push(what);
        }
    }

    /// The first anomalies, described.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// `send` accepted frame `n`.
    pub fn accepted(&mut self, n: u64) {
        self.counts.accepted += 1;
        self.waiting.push_back(n);
    }

    /// `send` refused a frame.
    pub fn refused(&mut self) {
        self.counts.refused += 1;
    }

    /// A connection is up: its echoes start afresh.
    pub fn connected(&mut self) {
        self.gen_echoed = 0;
    }

    /// Frame `n` came back: it must be the oldest waiting.
    pub fn echoed(&mut self, n: u64) {
        match self.waiting.front() {
            Some(&front) if front == n => {
                self.waiting.pop_front();
                self.counts.echoed += 1;
                self.gen_echoed += 1;
            }
            Some(&front) => self.anomaly(format!(
                "echo of frame {n} while frame {front} is the oldest waiting (a gap, a reordering or a duplicate)"
            )),
            None => self.anomaly(format!("echo of frame {n}, but no frame is waiting")),
        }
    }

    /// Frames handed back, in order: each must be next in line.
    fn handed_back(&mut self, frames: impl IntoIterator<Item = u64>) {
        for n in frames {
            match self.waiting.front() {
                Some(&front) if front == n => {
                    self.waiting.pop_front();
                    self.counts.handed_back += 1;
                }
                other => self.anomaly(format!(
                    "frame {n} handed back while {other:?} is next in line"
                )),
            }
        }
    }

    /// Checks the kernel's acknowledged count against what came back: the
    /// echoed frames (and the `other` bytes before them) were acknowledged.
    fn check_acked(&mut self, written: u64, acked: u64, other: u64) {
        let echoed = if self.gen_echoed > 0 {
            other + self.gen_echoed * self.frame_len
        } else {
            0
        };
        if acked > written || echoed > acked {
            self.anomaly(format!(
                "the kernel acknowledged {acked} bytes of {written} written, but {echoed} came back"
            ));
            return;
        }
        if written - acked > self.max_unacked {
            self.anomaly(format!(
                "{} bytes unacknowledged, more than a send buffer holds ({})",
                written - acked,
                self.max_unacked
            ));
        }
        self.counts.kernel_checked += 1;
        self.counts.unacked_bytes += written - acked;
        self.counts.acked_not_echoed_bytes += acked - echoed;
    }

    /// Settles the current connection: of `written` bytes, `other` were not
    /// data frames (a greeting) and `cut`'s prefix (frame, bytes written)
    /// belongs to a frame handed back. Returns the frames written whole
    /// and not echoed.
    fn settle(
        &mut self,
        written: u64,
        acked: Option<u64>,
        other: u64,
        cut: Option<(u64, usize)>,
    ) -> u64 {
        if let Some(acked) = acked {
            self.check_acked(written, acked, other);
        }
        let cut_written = cut.map_or(0, |(_, w)| w as u64);
        let Some(data) = written.checked_sub(other + cut_written) else {
            self.anomaly(format!(
                "{written} bytes written, less than {other} + {cut_written} that are not whole frames"
            ));
            return 0;
        };
        if data % self.frame_len != 0 {
            self.anomaly(format!(
                "{data} bytes of whole frames written: not a whole number of frames"
            ));
        }
        let whole = data / self.frame_len;
        let Some(missing) = whole.checked_sub(self.gen_echoed) else {
            self.anomaly(format!(
                "{} frames echoed but only {whole} written",
                self.gen_echoed
            ));
            return 0;
        };
        if missing > self.waiting.len() as u64 {
            self.anomaly(format!(
                "{whole} frames written whole, more than the {} echoed and {} waiting",
                self.gen_echoed,
                self.waiting.len()
            ));
        }
        let missing = missing.min(self.waiting.len() as u64);
        self.waiting.drain(..missing as usize);
        self.gen_echoed = 0;
        missing
    }

    /// The connection was lost after writing `written` bytes
    /// (`Reset::written`), `acked` of them acknowledged by the peer
    /// (`Reset::acked`, where the kernel tells) and `other` of them not data
    /// frames; `cut` is the frame cut mid-write and the bytes of it
    /// written, `unsent` the whole frames handed back after it.
    pub fn lost(
        &mut self,
        written: u64,
        acked: Option<u64>,
        other: u64,
        cut: Option<(u64, usize)>,
        unsent: impl IntoIterator<Item = u64>,
    ) {
        self.written_by_losses += written;
        self.counts.lost_in_flight += self.settle(written, acked, other, cut);
        self.handed_back(cut.map(|(n, _)| n).into_iter().chain(unsent));
    }

    /// The connection closed for good, with `bytes_out` written over its
    /// whole life (`Stats::bytes_out`), handing back `cut` and `unsent` as
    /// in [`lost`](Account::lost). `live` says whether a connection was up
    /// (its writes are settled here); `acked` (of the last connection's
    /// writes) and `other` as in `lost`.
    pub fn closed(
        &mut self,
        bytes_out: u64,
        acked: Option<u64>,
        live: bool,
        other: u64,
        cut: Option<(u64, usize)>,
        unsent: impl IntoIterator<Item = u64>,
    ) {
        if self.closed {
            self.anomaly("closed twice".into());
        }
        self.closed = true;
        if live {
            let Some(last) = bytes_out.checked_sub(self.written_by_losses) else {
                self.anomaly(format!(
                    "bytes out {bytes_out} below the {} written by lost connections",
                    self.written_by_losses
                ));
                return;
            };
            self.counts.unanswered += self.settle(last, acked, other, cut);
        }
        self.handed_back(cut.map(|(n, _)| n).into_iter().chain(unsent));
    }

    /// The counts so far; frames still waiting count as unaccounted once
    /// the connection is closed.
    pub fn counts(&self) -> Counts {
        let mut c = self.counts;
        if self.closed {
            c.unaccounted = self.waiting.len() as u64;
        }
        c
    }

    /// Frames accepted and not yet settled: in flight on the live
    /// connection, or queued.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(n: u64) -> Account {
        let mut a = Account::new(10);
        for i in 0..n {
            a.accepted(i);
        }
        a.connected();
        a
    }

    #[test]
    fn a_gap_in_the_echo_is_an_anomaly() {
        let mut a = with(3);
        a.echoed(0);
        a.echoed(2);
        a.closed(30, None, true, 0, None, []);
        let c = a.counts();
        assert_eq!(c.anomalies, 1, "{:?}", a.notes());
        assert!(!c.is_clean());
    }

    #[test]
    fn loss_is_a_suffix_of_what_was_written() {
        let mut a = with(5);
        a.echoed(0);
        a.echoed(1);
        // Four frames written whole: 2 and 3 lost; 4 handed back.
        a.lost(40, Some(35), 0, None, [4]);
        a.connected();
        a.closed(40, None, false, 0, None, []);
        let c = a.counts();
        assert_eq!((c.lost_in_flight, c.handed_back), (2, 1));
        assert!(c.is_clean(), "{:?}", a.notes());
    }

    #[test]
    fn a_frame_that_vanished_is_unaccounted() {
        let mut a = with(3);
        a.echoed(0);
        // One frame written, nothing handed back: frames 1 and 2 vanished.
        a.closed(10, None, true, 0, None, []);
        let c = a.counts();
        assert_eq!((c.unaccounted, c.lost_silently()), (2, 2));
        assert!(!c.is_clean());
    }

    #[test]
    fn unanswered_frames_make_a_run_unclean() {
        let mut a = with(2);
        a.echoed(0);
        a.closed(20, Some(20), true, 0, None, []);
        let c = a.counts();
        assert_eq!((c.unanswered, c.lost_silently()), (1, 0));
        assert!(!c.is_clean());
    }

    #[test]
    fn an_echo_the_kernel_never_acknowledged_is_an_anomaly() {
        let mut a = with(3);
        a.echoed(0);
        a.echoed(1);
        // Two frames came back, but the kernel says only one was acked.
        a.lost(30, Some(10), 0, None, []);
        assert_eq!(a.counts().anomalies, 1, "{:?}", a.notes());
        let mut a = with(3).max_unacked(15);
        // Nothing acknowledged: 30 bytes cannot sit in a 15-byte buffer.
        a.lost(30, Some(0), 0, None, []);
        assert_eq!(a.counts().anomalies, 1, "{:?}", a.notes());
    }

    #[test]
    fn handed_back_out_of_order_is_an_anomaly() {
        let mut a = with(3);
        a.lost(0, None, 0, None, [1, 0, 2]);
        assert!(a.counts().anomalies > 0);
    }
}
