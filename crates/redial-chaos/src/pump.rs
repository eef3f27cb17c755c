//! One direction of one connection: read from one socket, apply that
//! direction's faults, write to the other socket.
//!
//! With no fault active this is a plain read/write loop over one buffer; the
//! only extra cost is an atomic load per read to notice new faults. Faults
//! that delay data (latency, jitter) switch to a queue of timed chunks so the
//! reader keeps going and the delay does not turn into a bandwidth cap.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::sync::watch;
use tokio::time::{sleep_until, Instant};

use crate::fault::{capped, FaultState, Shaping, MAX_DELAY};
use crate::stats::Counters;
use crate::SplitMix64;

/// How much delayed data one direction may hold before it stops reading and
/// lets TCP backpressure reach the sender.
const QUEUE_CAP: usize = 1 << 20;

/// Bandwidth is paced in pieces of about this fraction of a second's worth,
/// so a slow link trickles instead of bursting once a second.
const PACING_SLICES_PER_S: u64 = 20;

/// Which way a pump moves bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Way {
    /// Client → server.
    Up,
    /// Server → client.
    Down,
}

/// How a pump stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PumpEnd {
    /// Its reader hit EOF and the FIN was passed on; the other direction may
    /// go on (half-close).
    Finished,
    /// A peer failed (RST or error) or the byte budget ran out: the whole
    /// connection should be reset.
    Reset,
    /// The proxy is going away.
    Stopped,
}

/// The per-connection things both pumps share.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shared<'a> {
    /// Bytes forwarded on this connection in both directions, for `cut_after`.
    pub(crate) conn_bytes: &'a AtomicU64,
    pub(crate) counters: &'a Counters,
}

/// One direction's forwarding state.
pub(crate) struct Pump<'a> {
    way: Way,
    reader: ReadHalf<'a>,
    writer: WriteHalf<'a>,
    buf: Vec<u8>,
    faults: watch::Receiver<FaultState>,
    state: FaultState,
    /// No fault touches this direction's data: take the fast path.
    plain: bool,
    queue: VecDeque<(Instant, Vec<u8>)>,
    queued: usize,
    /// Deadlines never go backwards, or jitter would reorder the stream.
    last_deadline: Option<Instant>,
    /// Earliest time the next write may go out (bandwidth and slicing).
    next_write: Option<Instant>,
    rng: SplitMix64,
    shared: Shared<'a>,
    /// Bytes read and not yet written on, as counted in `Stats::held`.
    held: u64,
}

impl Drop for Pump<'_> {
    /// Whatever the pump still holds goes away with it.
    fn drop(&mut self) {
        self.shared
            .counters
            .held
            .fetch_sub(self.held, Ordering::Relaxed);
    }
}

impl<'a> Pump<'a> {
    pub(crate) fn new(
        way: Way,
        reader: ReadHalf<'a>,
        writer: WriteHalf<'a>,
        buffer_size: usize,
        faults: watch::Receiver<FaultState>,
        rng: SplitMix64,
        shared: Shared<'a>,
    ) -> Self {
        let state = *faults.borrow();
        let mut pump = Self {
            way,
            reader,
            writer,
            buf: vec![0; buffer_size.max(1)],
            faults,
            state,
            plain: false,
            queue: VecDeque::new(),
            queued: 0,
            last_deadline: None,
            next_write: None,
            rng,
            shared,
            held: 0,
        };
        pump.set_state(state);
        pump
    }

    fn shaping(&self) -> Shaping {
        match self.way {
            Way::Up => self.state.up,
            Way::Down => self.state.down,
        }
    }

    fn set_state(&mut self, state: FaultState) {
        self.state = state;
        self.plain = !state.blackhole && state.cut_after.is_none() && self.shaping().is_clear();
    }

    /// Picks up a new fault state if one was published. `false` once the
    /// proxy is gone.
    fn refresh(&mut self) -> bool {
        match self.faults.has_changed() {
            Ok(false) => true,
            Ok(true) => {
                let state = *self.faults.borrow_and_update();
                self.set_state(state);
                true
            }
            Err(_) => false,
        }
    }

    /// Waits for the next fault change. `false` once the proxy is gone.
    async fn changed(&mut self) -> bool {
        if self.faults.changed().await.is_err() {
            return false;
        }
        let state = *self.faults.borrow_and_update();
        self.set_state(state);
        true
    }

    /// Runs until EOF has been passed on, the connection must be reset, or
    /// the proxy stops.
    pub(crate) async fn run(mut self) -> PumpEnd {
        match self.pump().await {
            Ok(()) => PumpEnd::Finished,
            Err(end) => end,
        }
    }

    async fn pump(&mut self) -> Result<(), PumpEnd> {
        let mut eof = false;
        loop {
            if !self.refresh() {
                return Err(PumpEnd::Stopped);
            }
            if self.state.blackhole {
                // A partition: stop reading, so whatever the peer sends waits
                // in kernel buffers and arrives intact after the heal.
                if !self.changed().await {
                    return Err(PumpEnd::Stopped);
                }
                continue;
            }
            if let Some(&(deadline, _)) = self.queue.front() {
                if deadline <= Instant::now() {
                    if let Some((_, data)) = self.queue.pop_front() {
                        self.queued -= data.len();
                        self.deliver(&data).await?;
                    }
                    continue;
                }
            }
            if eof && self.queue.is_empty() {
                self.hold_close().await;
                // The FIN goes on to the other peer; errors mean it is gone
                // already, which the other direction will notice.
                let _ = self.writer.shutdown().await;
                return Ok(());
            }
            if self.plain && self.queue.is_empty() {
                match self.reader.read(&mut self.buf).await {
                    Ok(0) => eof = true,
                    Ok(n) => self.forward(n).await?,
                    Err(_) => return Err(self.peer_failed().await),
                }
                continue;
            }
            self.wait_for_work(&mut eof).await?;
        }
    }

    /// The slow path's wait: whichever comes first of a fault change, the
    /// head of the delay queue falling due, or new data.
    async fn wait_for_work(&mut self, eof: &mut bool) -> Result<(), PumpEnd> {
        enum Event {
            Changed(bool),
            Due,
            Read(std::io::Result<usize>),
        }
        let head = self.queue.front().map(|&(deadline, _)| deadline);
        let can_read = !*eof && self.queued < QUEUE_CAP;
        let event = tokio::select! {
            biased;
            changed = self.faults.changed() => Event::Changed(changed.is_ok()),
            () = sleep_until(head.unwrap_or_else(Instant::now)), if head.is_some() => Event::Due,
            read = self.reader.read(&mut self.buf), if can_read => Event::Read(read),
        };
        match event {
            Event::Changed(false) => return Err(PumpEnd::Stopped),
            // `changed()` marked the new state as seen: apply it here, or
            // the next refresh() would not notice it.
            Event::Changed(true) => {
                let state = *self.faults.borrow_and_update();
                self.set_state(state);
            }
            Event::Due => {}
            Event::Read(Ok(0)) => *eof = true,
            Event::Read(Ok(n)) => self.forward(n).await?,
            Event::Read(Err(_)) => return Err(self.peer_failed().await),
        }
        Ok(())
    }

    /// Sends on the `n` bytes just read into the buffer, now or via the
    /// delay queue.
    async fn forward(&mut self, n: usize) -> Result<(), PumpEnd> {
        self.hold(n);
        if !self.refresh() {
            return Err(PumpEnd::Stopped);
        }
        if self.plain && self.queue.is_empty() {
            if self.writer.write_all(&self.buf[..n]).await.is_err() {
                return Err(self.peer_failed().await);
            }
            self.count(n);
            return Ok(());
        }
        let shaping = self.shaping();
        if shaping.delays() || !self.queue.is_empty() || self.state.blackhole {
            let now = Instant::now();
            let delay = shaping
                .latency
                .saturating_add(self.rng.duration_up_to(shaping.jitter));
            let deadline = later(now, delay).max(self.last_deadline.unwrap_or(now));
            self.last_deadline = Some(deadline);
            self.queue.push_back((deadline, self.buf[..n].to_vec()));
            self.queued += n;
            return Ok(());
        }
        let buf = std::mem::take(&mut self.buf);
        let result = self.deliver(&buf[..n]).await;
        self.buf = buf;
        result
    }

    /// Writes `data` honouring slicing, bandwidth, the byte budget and
    /// blackholes that start halfway through.
    async fn deliver(&mut self, mut data: &[u8]) -> Result<(), PumpEnd> {
        while !data.is_empty() {
            if !self.refresh() {
                return Err(PumpEnd::Stopped);
            }
            while self.state.blackhole {
                if !self.changed().await {
                    return Err(PumpEnd::Stopped);
                }
            }
            let shaping = self.shaping();
            let mut piece = data.len();
            if shaping.slice > 0 {
                piece = piece.min(shaping.slice);
            }
            if shaping.bandwidth > 0 {
                let per_slot = (shaping.bandwidth / PACING_SLICES_PER_S).max(1);
                piece = piece.min(usize::try_from(per_slot).unwrap_or(usize::MAX));
            }
            if let Some(limit) = self.state.cut_after {
                let used = self.shared.conn_bytes.load(Ordering::Relaxed);
                let left = limit.saturating_sub(used);
                if left == 0 {
                    return Err(PumpEnd::Reset);
                }
                piece = piece.min(usize::try_from(left).unwrap_or(usize::MAX));
            }
            if let Some(at) = self.next_write {
                if at > Instant::now() {
                    sleep_until(at).await;
                }
            }
            if self.writer.write_all(&data[..piece]).await.is_err() {
                return Err(self.peer_failed().await);
            }
            self.count(piece);
            data = &data[piece..];
            self.next_write = next_write_after(&shaping, piece);
            if let Some(limit) = self.state.cut_after {
                if self.shared.conn_bytes.load(Ordering::Relaxed) >= limit {
                    return Err(PumpEnd::Reset);
                }
            }
        }
        Ok(())
    }

    fn hold(&mut self, n: usize) {
        self.held += n as u64;
        self.shared
            .counters
            .held
            .fetch_add(n as u64, Ordering::Relaxed);
    }

    /// `n` held bytes were written on.
    fn count(&mut self, n: usize) {
        let n = n as u64;
        self.held = self.held.saturating_sub(n);
        self.shared.counters.held.fetch_sub(n, Ordering::Relaxed);
        self.shared.conn_bytes.fetch_add(n, Ordering::Relaxed);
        let total = match self.way {
            Way::Up => &self.shared.counters.bytes_upstream,
            Way::Down => &self.shared.counters.bytes_downstream,
        };
        total.fetch_add(n, Ordering::Relaxed);
    }

    /// A peer reset or errored: hold that news for `slow_close`, then ask
    /// for the whole connection to be reset.
    async fn peer_failed(&mut self) -> PumpEnd {
        self.hold_close().await;
        PumpEnd::Reset
    }

    async fn hold_close(&mut self) {
        self.refresh();
        let delay = self.state.slow_close;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }
}

/// `now + d`, with `d` capped at [`MAX_DELAY`]: whatever delay a user set,
/// this cannot overflow (a year from now is far inside the clock's range;
/// should it ever not be, the delay is dropped rather than panicking).
fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(capped(d)).unwrap_or(now)
}

/// When the next piece may be written after `piece` bytes went out: the
/// later of the slice gap and the bandwidth budget.
fn next_write_after(shaping: &Shaping, piece: usize) -> Option<Instant> {
    let now = Instant::now();
    let mut at = None;
    if shaping.slice > 0 && !shaping.slice_delay.is_zero() {
        at = Some(later(now, shaping.slice_delay));
    }
    if shaping.bandwidth > 0 {
        let cost = Duration::try_from_secs_f64(piece as f64 / shaping.bandwidth as f64)
            .unwrap_or(MAX_DELAY);
        let by_rate = later(now, cost);
        at = Some(at.map_or(by_rate, |a: Instant| a.max(by_rate)));
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_delays_do_not_overflow_the_clock() {
        let now = Instant::now();
        assert_eq!(later(now, Duration::MAX), now + MAX_DELAY);
        let shaping = Shaping {
            slice: 1,
            slice_delay: Duration::MAX,
            bandwidth: 1,
            ..Shaping::default()
        };
        let at = next_write_after(&shaping, usize::MAX).unwrap();
        assert!(at > now && at <= Instant::now() + MAX_DELAY);
    }
}
