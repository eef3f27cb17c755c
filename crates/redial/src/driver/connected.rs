//! The connected period: the live connection's bytes moved both ways.
//! Reads go into the worker thread's scratch buffer and straight to
//! `on_data`; writes take every segment of the send queue in one swap (see
//! `batch.rs`) and hand them to the kernel in as few `write` calls as it
//! will take: a plain `write` for one segment, a vectored one for more. The period sleeps on one deadline, the earliest of the core's
//! [`Timers`], and ends in `teardown.rs`.

use std::io;
use std::sync::atomic::Ordering;

use tokio::time::{sleep_until, Instant, Sleep};
use tracing::debug;

use super::batch::{refill_slot, Batch, MAX_IOVECS};
use super::{guarded, recycle, scratch, Driver, Panicked};
use crate::core::lifecycle::Phase;
use crate::core::timers::{Timers, Trim};
use crate::events::EventKind;
use crate::handle::socket::Socket;
use crate::handler::Handler;
use crate::reset::ResetReason;
use crate::shared::{Command, Shared};

/// Reads per readiness wake-up before the driver turns to its writes, so a
/// peer that floods us cannot starve our own sending.
const MAX_READS_PER_WAKE: usize = 16;

/// How a connected period ended (see [`Driver::end`]).
pub(super) enum Outcome {
    /// The I/O error, if any, is formatted only after `on_reset`.
    Lost(ResetReason, Option<io::Error>),
    Command(Command),
    Panicked(Panicked),
    /// A command came while the attempt was in flight: the connection
    /// ended before it started.
    Unstarted(Command),
    /// The replacement of a connection past its `max_lifetime` is ready
    /// (boxed: rare, and every outcome would carry its size).
    Recycle(Box<crate::driver::transport::Transport>),
}

impl<H: Handler> Driver<H> {
    /// When the live connection came up (the life cycle keeps it, so the
    /// connected period's task does not).
    pub(super) fn connected_since(&self) -> std::time::Instant {
        match self.lifecycle.phase() {
            Phase::Connected { since } => *since,
            _ => crate::clock::now(),
        }
    }

    /// The connected period of `sock`, and of each socket that replaces
    /// it once it outlived its `max_lifetime`.
    pub(super) async fn connected(&mut self, mut sock: Socket) {
        loop {
            let written_at_connect = {
                let mut q = self.shared.queue();
                q.generation = self.generation;
                q.socket_open = true;
                q.accepting = false;
                q.ledger.written
            };
            {
                let mut info = self.shared.info();
                info.connected_since = Some(self.connected_since());
                info.socket = Some(sock.clone());
            }
            self.shared
                .counters
                .connects
                .fetch_add(1, Ordering::Relaxed);
            // In a block of its own, so the outcome is gone before the
            // end's await (the task would carry it otherwise).
            let outcome = {
                let early = match self.start(&sock) {
                    Ok(early) => early,
                    // The attempt was in flight when `disconnect` or
                    // `abort` was called: the connection never starts.
                    Err(cmd) => Some(Outcome::Unstarted(cmd)),
                };
                match early {
                    Some(end) => end,
                    None => {
                        // Dropped before the await, so the task does not carry it.
                        drop(early);
                        self.pump(&sock).await
                    }
                }
            };
            match self.end(sock, outcome, written_at_connect).await {
                Some(next) => sock = next,
                None => return,
            }
        }
    }

    /// Runs `on_connect` (or the entry of `Resume::With`) and opens the
    /// connection to senders. `Ok(Some)` when a panicking callback ends
    /// the connected period before it begins; `Err` when disconnect or
    /// abort was requested first: then no callback ran.
    fn start(&mut self, sock: &Socket) -> Result<Option<Outcome>, Command> {
        // The last look for a command, under the gate that makes a request
        // wait until the callback has returned.
        let starting = self.shared.begin_start()?;
        let entry = self.entry.take();
        let handler = &mut self.handler;
        let started = guarded("on_connect", || match entry {
            Some(e) => (*e)(sock),
            None => handler.on_connect(sock),
        });
        drop(starting);
        if let Err(panicked) = started {
            return Ok(Some(Outcome::Panicked(panicked)));
        }
        {
            let mut q = self.shared.queue();
            q.release_outage();
            q.accepting = true;
            q.holding = false;
        }
        self.lifecycle.opened();
        self.publish();
        // Asking the kernel for the peer is a system call per connect:
        // only when someone listens for the event.
        let peer = if self.link.events.receiver_count() > 0 {
            sock.peer_addr()
        } else {
            None
        };
        self.emit(EventKind::Connected {
            generation: self.generation,
            peer,
        });
        debug!(generation = self.generation, "connected");
        Ok(None)
    }

    /// Writes as much as the kernel takes now. `Ok(true)` when everything
    /// queued has been written.
    pub(super) fn flush_now(
        shared: &Shared,
        sock: &Socket,
        slot: &mut Option<Box<Batch>>,
    ) -> Result<bool, io::Error> {
        loop {
            let spent = slot.as_ref().is_none_or(|b| b.done());
            if spent && !refill_slot(slot, shared) {
                return sock.io().flush_pending();
            }
            let Some(batch) = slot.as_deref_mut() else {
                return sock.io().flush_pending();
            };
            let wrote = match batch.single() {
                Some(rest) => sock.io().try_write(rest),
                None => {
                    let mut iov = [io::IoSlice::new(&[]); MAX_IOVECS];
                    let n = batch.unwritten_slices(&mut iov);
                    sock.io().try_write_vectored(&iov[..n])
                }
            };
            match wrote {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => batch.advance(shared, n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads what is ready and hands it to `on_data`, telling `timers`
    /// when data came. `Some` when the connection ended.
    pub(super) fn read_ready(&mut self, sock: &Socket, timers: &mut Timers) -> Option<Outcome> {
        enum Step {
            Data,
            Eof,
            Failed(io::Error),
            Panicked(Panicked),
        }
        for _ in 0..MAX_READS_PER_WAKE {
            let handler = &mut self.handler;
            let shared = &self.shared;
            let step = scratch::with(|buf| match sock.io().try_read(buf) {
                Ok(0) => Step::Eof,
                Ok(n) => {
                    shared
                        .counters
                        .bytes_in
                        .fetch_add(n as u64, Ordering::Relaxed);
                    #[cfg(feature = "metrics")]
                    shared.metrics.read(n);
                    let data = &buf[..n];
                    match guarded("on_data", || handler.on_data(sock, data)) {
                        Ok(()) => Step::Data,
                        Err(panicked) => Step::Panicked(panicked),
                    }
                }
                Err(e) => Step::Failed(e),
            });
            match step {
                Step::Data => timers.read(crate::clock::now()),
                Step::Failed(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Step::Failed(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Step::Failed(e) => return Some(Outcome::Lost(ResetReason::from_io(&e), Some(e))),
                Step::Eof => return Some(Outcome::Lost(ResetReason::PeerClosed, None)),
                Step::Panicked(panicked) => return Some(Outcome::Panicked(panicked)),
            }
            if self.shared.command().is_some() || self.shared.reads_paused() {
                return None;
            }
        }
        None
    }

    /// The connected period: moves bytes both ways until the connection is
    /// lost, the application closes it, or a callback panics. It sleeps on
    /// one deadline, the earliest of the core's [`Timers`].
    pub(super) async fn pump(&mut self, sock: &Socket) -> Outcome {
        let draw = self.lifecycle.lifetime_draw();
        let mut timers = Timers::with_lifetime(crate::clock::now(), self.lifecycle.options(), draw);
        // Boxed and allocated only while a deadline is set: an idle
        // connection without timers carries no timer.
        let mut timer: Option<std::pin::Pin<Box<Sleep>>> = None;
        loop {
            if let Some(cmd) = self.shared.command() {
                return Outcome::Command(cmd);
            }
            if timers.replacing() {
                if let Some(end) = self.replacement_made(&mut timers) {
                    return end;
                }
            }
            let flushed = match Self::flush_now(&self.shared, sock, &mut self.batch) {
                Ok(f) => f,
                Err(e) => return Outcome::Lost(ResetReason::from_io(&e), Some(e)),
            };
            let drained = self
                .batch
                .as_deref_mut()
                .filter(|b| flushed && b.release.is_none() && b.oversized());
            if let Some(b) = drained {
                b.release = Some(Trim::drained(crate::clock::now(), b.taken));
            }
            // Options are read where needed, not copied: every byte held
            // across an await is carried by every idle connection.
            arm_earlier(&mut timer, self.next_deadline(&timers));
            let reading = !self.shared.reads_paused();
            let writing = !flushed;
            tokio::select! {
                biased;
                // Polled rather than awaited as a future: the wakers wait
                // in the socket's registration, not in this (every idle
                // connection's) task.
                r = std::future::poll_fn(|cx| sock.io().poll_ready(cx, reading, writing)), if reading || writing => {
                    match r {
                        Err(e) => return Outcome::Lost(ResetReason::from_io(&e), Some(e)),
                        Ok(true) => {
                            if let Some(end) = self.read_ready(sock, &mut timers) {
                                return end;
                            }
                        }
                        Ok(false) => {} // writable: the loop flushes
                    }
                }
                _ = self.shared.wake.notified() => {}
                _ = wait_timer(&mut timer) => {
                    if let Some(end) = self.on_timer(sock, &mut timers) {
                        return end;
                    }
                    rearm(&mut timer, self.next_deadline(&timers));
                }
            }
        }
    }

    /// Carries out what the core's timers found due. `Some` when that ends
    /// the connected period.
    fn on_timer(&mut self, sock: &Socket, timers: &mut Timers) -> Option<Outcome> {
        let now = crate::clock::now();
        if self.shared.reads_paused() {
            // Not reading is the application's choice, not the peer's
            // silence.
            timers.read(now);
        }
        let due = timers.fire(now, self.lifecycle.options());
        if due.idle {
            return Some(Outcome::Lost(ResetReason::IdleTimeout, None));
        }
        if due.heartbeat {
            if let Err(panicked) = guarded("on_idle", || self.handler.on_idle(sock)) {
                return Some(Outcome::Panicked(panicked));
            }
        }
        if due.recycle {
            debug!("max_lifetime spent: making the replacement");
            let opts = self.lifecycle.options();
            recycle::start(&self.link, &self.shared, opts, self.rotate as usize);
            self.rotate = self.rotate.wrapping_add(1);
        }
        if let Some(b) = self.batch.as_deref_mut() {
            // A batch taken since the drain means it is still busy: checked
            // again when it next drains.
            let due = Trim::fire(&mut b.release, now);
            if due.is_some_and(|taken| b.taken == taken && b.trim(&self.shared)) {
                self.batch = None;
            }
        }
        None
    }

    /// The earliest deadline of the connected period, from the core.
    fn next_deadline(&self, timers: &Timers) -> Option<std::time::Instant> {
        let trim = self.batch.as_deref().and_then(|b| b.release.as_ref());
        timers.poll_timeout(self.lifecycle.options(), trim)
    }
}

/// Moves the timer to `at` if that is earlier (or arms it). A read pushes
/// the idle and heartbeat deadlines out; the timer is not touched for
/// that, on the hot path: it fires at the old deadline, finds nothing due,
/// and [`rearm`] sets it to the new one.
fn arm_earlier(timer: &mut Option<std::pin::Pin<Box<Sleep>>>, at: Option<std::time::Instant>) {
    let Some(at) = at.map(Instant::from_std) else {
        return;
    };
    match timer.as_mut() {
        Some(t) if t.deadline() <= at => {}
        Some(t) => t.as_mut().reset(at),
        None => *timer = Some(Box::pin(sleep_until(at))),
    }
}

/// Sets the timer to the core's next deadline after it fired (or drops
/// it when there is none).
fn rearm(timer: &mut Option<std::pin::Pin<Box<Sleep>>>, at: Option<std::time::Instant>) {
    match (timer.as_mut(), at) {
        (Some(t), Some(at)) => t.as_mut().reset(Instant::from_std(at)),
        (None, Some(at)) => *timer = Some(Box::pin(sleep_until(Instant::from_std(at)))),
        (_, None) => *timer = None,
    }
}

async fn wait_timer(timer: &mut Option<std::pin::Pin<Box<Sleep>>>) {
    match timer {
        Some(t) => t.as_mut().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::AsyncReadExt;
    use tokio::time::Instant;

    use crate::core::timers::TRIM_AFTER;
    use crate::options::Options;

    /// Capacity the send queue holds now.
    fn queue_capacity(conn: &crate::Connection) -> usize {
        conn.shared.queue().segs.capacity()
    }

    /// A burst's buffers stay while the connection may send again soon
    /// and are released [`TRIM_AFTER`] after the queue drained. On the
    /// paused clock over loopback: the clock moves only when every task
    /// waits, so the deadline is hit exactly, in no real time.
    ///
    /// The driver frees what it wrote and leaves the queue a new tail with
    /// the room the last one needed: that tail is what the test can see.
    #[tokio::test(start_paused = true)]
    async fn a_bursts_buffers_are_released_after_the_trim_delay_and_not_before() {
        const BURST: usize = 300 * 1024;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let cm = crate::Manager::new();
        // A small send buffer: the peer reads nothing until both bursts are
        // queued, so the first cannot drain early and arm the release on
        // its own (a batch taken after the release was armed puts it off
        // until the next drain).
        let opts = Options::new()
            .connect_timeout(Duration::from_secs(3600))
            .configure_socket(|s| s.set_send_buffer_size(16 * 1024));
        let conn = cm
            .connect_with(listener.local_addr().unwrap(), crate::handler(), opts)
            .unwrap();
        let (mut peer, _) = listener.accept().await.unwrap();
        conn.wait_connected().await.unwrap();

        conn.send(vec![1u8; BURST]).unwrap();
        // The second burst is queued once the driver took the first.
        while conn.shared.queue().segs.len() != 0 {
            tokio::task::yield_now().await;
        }
        conn.send(vec![2u8; BURST]).unwrap();
        // The drain that arms the release comes after the last send and
        // before the peer has read the last byte.
        let sent = Instant::now();
        let mut got = vec![0u8; 2 * BURST];
        peer.read_exact(&mut got).await.unwrap();
        let read = Instant::now();
        assert!(got[..BURST].iter().all(|&b| b == 1) && got[BURST..].iter().all(|&b| b == 2));
        assert!(
            queue_capacity(&conn) > 0,
            "a drained burst's next tail is kept for a while"
        );

        // Just before the earliest the release can be due: still held.
        tokio::time::sleep_until(sent + TRIM_AFTER - Duration::from_millis(1)).await;
        for _ in 0..8 {
            tokio::task::yield_now().await;
        }
        assert!(queue_capacity(&conn) > 0, "released before the deadline");

        // Released by the latest it can be due, waiting for the driver to
        // get there rather than for a time.
        let latest = read + TRIM_AFTER + Duration::from_millis(1);
        while queue_capacity(&conn) > 0 {
            assert!(Instant::now() <= latest, "not released by the deadline");
            tokio::time::sleep(Duration::from_micros(100)).await;
        }
        assert_eq!(conn.stats().bytes_out, 2 * BURST as u64);
        cm.disconnect_all().await;
    }
}
