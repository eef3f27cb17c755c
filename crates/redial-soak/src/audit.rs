//! The accounting at the end of the run: the per-connection equation (the
//! one `redial demo` checks), then the echo servers' and the kernel's own
//! evidence against it, printed and checked.

use std::sync::atomic::Ordering;

use redial::Connection;

use crate::account;
use crate::acct::{self, Totals};
use crate::echo::Tally;
use crate::verdict::Verdict;

/// How many connections' details are printed at most (the first ones
/// found off).
const MAX_NOTES: usize = 10;

/// What the accounting found over every connection.
pub struct Audit {
    /// Connections whose equation does not balance.
    unbalanced: usize,
    /// Connections where the echo servers saw fewer frames than came back
    /// or more than were written.
    off_server: usize,
    /// Connections the kernel gave acknowledged counts for.
    kernel_checked: usize,
    /// Of those, the ones where the server received bytes the kernel
    /// never acknowledged, beyond what an RST explains.
    unacked_received: usize,
    received_unacked: u64,
    notes: Vec<String>,
    /// Bytes redial says it wrote, over every connection.
    bytes_out: u64,
    all_closed: bool,
}

impl Audit {
    /// Settles and checks every connection (after `disconnect_all`).
    pub fn of(conns: &[Connection], accts: &[acct::Shared], tally: &Tally) -> Audit {
        let mut a = Audit {
            unbalanced: 0,
            off_server: 0,
            kernel_checked: 0,
            unacked_received: 0,
            received_unacked: 0,
            notes: Vec::new(),
            bytes_out: 0,
            all_closed: true,
        };
        for (i, c) in conns.iter().enumerate() {
            a.connection(i, c, &accts[i], tally);
        }
        a
    }

    fn connection(&mut self, i: usize, c: &Connection, acct: &acct::Shared, tally: &Tally) {
        let stats = c.stats();
        self.bytes_out += stats.bytes_out;
        let mut a = acct::lock(acct);
        self.all_closed &= a.closed;
        if !a.finish(stats.bytes_out) {
            self.unbalanced += 1;
            if self.notes.len() < MAX_NOTES {
                let f = a.counts();
                self.notes.push(format!("connection {i}: {f:?}"));
                self.notes
                    .extend(a.notes().iter().map(|n| format!("connection {i}: {n}")));
            }
        }
        // Every frame the server received was acknowledged by the kernel.
        let received = tally
            .per_conn_bytes
            .get(i)
            .map_or(0, |n| n.load(Ordering::Relaxed));
        // An RST drops the acknowledgement a receiver was still delaying:
        // up to two segments per reset may be received and never acked.
        if let Some(acked) = a.acked() {
            self.kernel_checked += 1;
            let unacked = received.saturating_sub(acked);
            self.received_unacked += unacked;
            if unacked > a.resets * account::DELAYED_ACK {
                self.unacked_received += 1;
                self.note(format!(
                    "connection {i}: the server received {received} bytes, the kernel acknowledged {acked}"
                ));
            }
        }
        // The server received at least what came back, and no more than
        // was written whole.
        let f = a.counts();
        let seen = tally
            .per_conn
            .get(i)
            .map_or(0, |n| n.load(Ordering::Relaxed));
        if seen < f.echoed || seen > f.echoed + f.lost_in_flight + f.unanswered {
            self.off_server += 1;
            self.note(format!(
                "connection {i}: the server received {seen} data frames, echoed {} + lost in flight {} + unanswered {}",
                f.echoed, f.lost_in_flight, f.unanswered
            ));
        }
    }

    fn note(&mut self, note: String) {
        if self.notes.len() < MAX_NOTES {
            self.notes.push(note);
        }
    }

    /// Prints the run's sums and the notes, then decides the checks.
    pub fn report(&self, t: &Totals, tally: &Tally, total_conns: usize, v: &mut Verdict) {
        self.print(t, tally);
        let f = &t.frames;
        v.check(self.all_closed, "on_close ran for every connection".into());
        let unbalanced = self.unbalanced;
        v.check(
            unbalanced == 0 && f.accepted > 0,
            format!(
                "nothing lost silently: {unbalanced} of {total_conns} connections unbalanced \
                 (accepted = echoed + handed back + lost in flight, echoes in order, losses a suffix)"
            ),
        );
        let off_server = self.off_server;
        v.check(
            off_server == 0,
            format!(
                "per connection, the echo servers received no less than was echoed and no more than was written: \
                 {off_server} of {total_conns} off"
            ),
        );
        self.check_kernel(v);
        v.check(
            tally.bytes.load(Ordering::Relaxed) <= self.bytes_out
                && tally.corrupt.load(Ordering::Relaxed) == 0
                && tally.out_of_sequence.load(Ordering::Relaxed) == 0,
            format!(
                "echo servers saw no more than was written, no corrupt frame ({}) and no gap on any TCP connection ({})",
                tally.corrupt.load(Ordering::Relaxed),
                tally.out_of_sequence.load(Ordering::Relaxed)
            ),
        );
    }

    /// The kernel's acknowledged counts against what the servers received,
    /// where the kernel gave them.
    fn check_kernel(&self, v: &mut Verdict) {
        let (kernel_checked, unacked_received, received_unacked) = (
            self.kernel_checked,
            self.unacked_received,
            self.received_unacked,
        );
        if kernel_checked > 0 {
            v.check(
                unacked_received == 0,
                format!(
                    "every frame the echo servers received was acknowledged by the client's kernel \
                     (but for a delayed acknowledgement an RST dropped: {received_unacked} B in all): \
                     {unacked_received} of {kernel_checked} connections off"
                ),
            );
        } else {
            println!("(no kernel acknowledged counts: that check is skipped)");
        }
    }

    fn print(&self, t: &Totals, tally: &Tally) {
        let f = &t.frames;
        println!(
            "frames: {} accepted = {} echoed + {} handed back + {} lost in flight + {} unanswered + {} unaccounted; \
             {} refused by send (handed back at once); {} anomalies",
            f.accepted,
            f.echoed,
            f.handed_back,
            f.lost_in_flight,
            f.unanswered,
            f.unaccounted,
            f.refused,
            f.anomalies
        );
        let bytes_out = self.bytes_out;
        println!(
            "connections: {} connects, {} resets; bytes written by redial {}, seen by the echo servers {} \
             ({} lost before the server), {} data frames ({} out of sequence) and {} hellos seen",
            t.connects,
            t.resets,
            bytes_out,
            tally.bytes.load(Ordering::Relaxed),
            bytes_out.saturating_sub(tally.bytes.load(Ordering::Relaxed)),
            tally.data_frames.load(Ordering::Relaxed),
            tally.out_of_sequence.load(Ordering::Relaxed),
            tally.hellos.load(Ordering::Relaxed),
        );
        if f.kernel_checked > 0 {
            println!(
                "kernel (TCP_INFO) on {} connections: every echoed frame acknowledged; written and not echoed: \
                 {} B never acknowledged (died in the client's kernel), {} B acknowledged (died in the proxy, \
                 the server or on the way back)",
                f.kernel_checked, f.unacked_bytes, f.acked_not_echoed_bytes
            );
        }
        for n in &self.notes {
            println!("  {n}");
        }
    }
}
