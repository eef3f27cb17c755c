//! How a connection ends. [`Driver::end`] is the one way out of a
//! connected period — lost, disconnected (gracefully or past its grace
//! period), aborted, a panicking callback, a command that beat the
//! connect — and [`Driver::finish`] the managed connection's last step,
//! after the life cycle closed or when the runtime shuts down. Every byte
//! not written is handed back here, counted in the ledger.
//!
//! The steps that end a socket are here too, and nowhere else: the flush
//! within the close grace ([`Driver::flush_until`]), FIN and the linger for
//! the peer's ([`Driver::fin_and_linger`]), an RST ([`reset_on_close`]),
//! and [`Driver::teardown`]; `recycle.rs` ends a replaced connection with
//! them.

use std::io;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;
use tracing::debug;

use super::batch::{copy_back, settle, take_back};
use super::connected::Outcome;
use super::{guarded, Driver};
use crate::core::lifecycle::Phase;
use crate::core::timers::Timers;
use crate::events::EventKind;
use crate::handle::socket::Socket;
use crate::handler::{Handler, Resume};
use crate::reset::{Close, CloseReason, Evidence, Handed, Reset, ResetReason, Unsent};
use crate::shared::Command;

/// How a flush before FIN ended.
pub(super) enum Flushed {
    /// Everything reached the kernel.
    All,
    /// The connection failed.
    Failed(io::Error),
    /// The close grace ran out first.
    GraceExpired,
}

/// Makes the socket's close an RST rather than a FIN: for an abort, a
/// panicking callback, a close grace that ran out.
pub(super) fn reset_on_close(sock: &Socket) {
    let _ = sock.sock_ref().set_linger(Some(Duration::ZERO));
}

/// What a live connection left behind: the bytes it never wrote, and what
/// is known of the ones it did.
pub(super) struct Ended {
    pub(super) unsent: Unsent,
    pub(super) evidence: Evidence,
}

impl<H: Handler> Driver<H> {
    /// The one way out of a connected period: every way a live connection
    /// ends comes in here, and each passes through [`Driver::teardown`],
    /// which hands back what was never written (batch, queue, ledger),
    /// reads the kernel's counts while the descriptor is open, and marks
    /// the socket dead for senders. The ways in:
    ///
    /// - **lost** ([`Outcome::Lost`]: the peer closed, an I/O error, the
    ///   idle timeout): `on_reset` gets the unsent bytes and says whether
    ///   to reconnect;
    /// - **disconnect** ([`Command::Disconnect`]): flush within the grace
    ///   period, FIN, linger briefly for the peer's FIN;
    /// - **grace expiry**: a disconnect whose flush outlasts the grace
    ///   period ends with an RST, and the close reason counts the written
    ///   bytes that destroyed;
    /// - **abort** ([`Command::Abort`]) and a **panicking callback**
    ///   ([`Outcome::Panicked`]): an RST at once;
    /// - a disconnect or abort that arrived while the attempt was in
    ///   flight ([`Outcome::Unstarted`]): closed before `on_connect`;
    /// - **shutdown**: the runtime drops the task wherever it waits, so
    ///   nothing can be awaited; the driver's `Drop` calls
    ///   [`Driver::finish`], which hands the batch and the queue back.
    ///
    /// - **replaced** ([`Outcome::Recycle`], `max_lifetime`): the old
    ///   connection flushes, sends FIN and is read until the peer's FIN
    ///   (`recycle.rs`); the new socket is returned for the next connected
    ///   period. One that cannot flush in time is lost instead.
    ///
    /// Whatever does not reconnect leaves the life cycle closed, with the
    /// bytes kept for `Close::unsent`; the run loop then calls
    /// [`Driver::finish`], the managed connection's last step (`on_close`
    /// once, the manager told).
    pub(super) async fn end(&mut self, sock: Socket, how: Outcome, since: u64) -> Option<Socket> {
        match how {
            Outcome::Lost(reason, err) => self.lost(sock, reason, err, since),
            Outcome::Unstarted(cmd) => self.ended_before_start(&sock, cmd, since),
            Outcome::Command(Command::Disconnect) => {
                // Boxed for the same reason as the dial: rare and large.
                let reason = Box::pin(self.close_gracefully(&sock, since)).await;
                self.lifecycle.close(reason);
            }
            Outcome::Command(Command::Abort) => {
                self.hard_close(&sock, since);
                self.lifecycle.close(CloseReason::Aborted);
            }
            Outcome::Panicked(panicked) => {
                self.hard_close(&sock, since);
                self.lifecycle.close(panicked.into());
            }
            // Boxed: rare and large, like the close.
            Outcome::Recycle(io) => return Box::pin(self.recycle(sock, *io, since)).await,
        }
        None
    }

    /// An attempt that was in flight when `disconnect` or `abort` was
    /// called may still complete: the new connection is then closed at
    /// once (FIN, or RST for an abort), before `Disconnecting` resolves,
    /// and the application is never told it was up (no `on_connect`, no
    /// `Resume::With` entry).
    fn ended_before_start(&mut self, sock: &Socket, cmd: Command, since: u64) {
        debug!("connected after a disconnect was requested: closing at once");
        let reason = match cmd {
            Command::Disconnect => CloseReason::Disconnected,
            Command::Abort => {
                reset_on_close(sock);
                CloseReason::Aborted
            }
        };
        let ended = self.teardown(sock, true, since);
        // A `Connection::socket()` taken meanwhile must not keep it open.
        sock.close_shared();
        self.leftover = Some(Box::new(ended));
        self.lifecycle.close(reason);
    }

    /// The live connection was lost: tells `on_reset`, then decides what
    /// comes next from its answer.
    pub(super) fn lost(
        &mut self,
        sock: Socket,
        reason: ResetReason,
        err: Option<io::Error>,
        since: u64,
    ) {
        let now = crate::clock::now();
        let ended = self.teardown(&sock, false, since);
        // Down from this moment: pools must not pick it while on_reset
        // runs. Waiters are woken after the callback: the application
        // hears of the loss first, and the path to it stays short.
        self.lifecycle.lost();
        // The endpoint is in doubt: the next attempt to it decides for
        // every connection that lost it too (see `probe.rs`).
        if let Some(h) = &self.health {
            h.lost();
        }
        let changed = self.shared.mark_state(self.lifecycle.state());
        sock.close_shared();
        self.shared.counters.resets.fetch_add(1, Ordering::Relaxed);
        let uptime = now.saturating_duration_since(self.connected_since());
        let unsent_bytes =
            ended.unsent.len() + ended.unsent.partial.as_ref().map_or(0, |p| p.data.len());
        let reset = Reset {
            reason,
            uptime,
            unsent: Handed::new(ended.unsent),
            generation: self.generation,
            evidence: ended.evidence,
        };
        let resume = guarded("on_reset", || self.handler.on_reset(&reset));
        settle(&self.shared, reset.unsent.discarded(), "on_reset");
        // Closed after the callback: the descriptor's close does the TCP
        // work (FIN, state changes) that the application need not wait for
        // to hear of the loss; writes were refused already.
        drop(sock);
        if changed {
            self.shared.state_changed();
        }
        self.shared.record_uptime(uptime);
        if let Some(e) = err {
            self.shared.info().set_last_error(&e);
        }
        debug!(reason = %reset.reason, ?uptime, unsent_bytes, "connection lost");
        // After the callback, so that the application hears of the loss
        // first; still before the next attempt's events.
        self.emit(EventKind::Reset {
            reason: reset.reason,
            uptime,
            unsent_bytes,
        });
        match resume {
            Ok(Resume::Reconnect) => {
                self.lifecycle.reset(now, true);
            }
            Ok(Resume::With(entry)) => {
                self.entry = Some(Box::new(entry));
                self.lifecycle.reset(now, true);
            }
            Ok(Resume::Stop) => {
                self.lifecycle.reset(now, false);
            }
            Err(panicked) => self.lifecycle.close(panicked.into()),
        }
        let at_once = matches!(self.lifecycle.phase(), Phase::Connecting { .. });
        self.shared.record_retry(at_once);
        // Shown as backing off since the loss: the next attempt (or the
        // backoff, or the close) publishes what follows.
    }

    /// Ends the live connection with an RST (abort, a panicking callback,
    /// a disconnect whose grace period ran out), keeping what it never
    /// wrote for `Close::unsent`. Returns what the kernel still held.
    pub(super) fn hard_close(&mut self, sock: &Socket, since: u64) -> Evidence {
        let ended = self.teardown(sock, true, since);
        reset_on_close(sock);
        let _ = sock.sock_ref().shutdown(std::net::Shutdown::Both);
        let evidence = ended.evidence;
        self.leftover = Some(Box::new(ended));
        evidence
    }

    /// Every way a live connection ends passes through here: it takes what
    /// was never written back from the batch and the queue (handing it back
    /// in the ledger), reads the kernel's counts while the descriptor is
    /// still open, and marks the socket dead for senders. `closing`: the
    /// managed connection ends for good, so every send is refused from now
    /// on and the outage buffer is handed back too. `since` is the ledger's
    /// written count when this connection came up.
    pub(super) fn teardown(&mut self, sock: &Socket, closing: bool, since: u64) -> Ended {
        let kernel = crate::driver::kernel::of(sock.io());
        let mut q = self.shared.queue();
        let batch = take_back(&mut self.batch, &mut q);
        q.socket_open = false;
        q.accepting = false;
        if closing {
            q.closed = true;
        }
        let queued = q.take_queued(closing);
        let written = q.ledger.written.saturating_sub(since);
        self.shared.wake_writers(q);
        // Copied after the lock: senders refused meanwhile do not spin on it.
        let mut unsent = Unsent::default();
        copy_back(batch, queued, &mut unsent);
        let mut info = self.shared.info();
        info.connected_since = None;
        info.socket = None;
        super::recycle::cancel(&mut info);
        Ended {
            unsent,
            evidence: Evidence { written, kernel },
        }
    }

    /// Flushes what is queued within the grace period, sends FIN, and waits
    /// briefly for the peer's FIN. When the grace period runs out first, the
    /// connection is reset, and the reason says how many written bytes that
    /// destroyed. What was never written is kept for `Close::unsent`.
    pub(super) async fn close_gracefully(&mut self, sock: &Socket, since: u64) -> CloseReason {
        {
            // No new sends from here on; what is queued still goes out.
            let mut q = self.shared.queue();
            q.accepting = false;
            q.closed = true;
        }
        let grace = Timers::grace_deadline(crate::clock::now(), self.lifecycle.options());
        match self.flush_until(sock, Instant::from_std(grace)).await {
            Flushed::All => {}
            Flushed::Failed(_) => {
                // Lost while flushing: nothing more can go out.
                self.hard_close(sock, since);
                return CloseReason::Disconnected;
            }
            Flushed::GraceExpired => {
                // Do not leave the peer waiting on a stream that will
                // never complete; say what the reset destroys.
                let evidence = self.hard_close(sock, since);
                return CloseReason::GraceExpired {
                    destroyed: evidence.unacked(),
                };
            }
        }
        self.fin_and_linger(sock, grace).await;
        let ended = self.teardown(sock, true, since);
        self.leftover = Some(Box::new(ended));
        CloseReason::Disconnected
    }

    /// Writes what `sock` holds (the batch, and the queue) until all of it
    /// reached the kernel, the connection fails, or `deadline` passes.
    pub(super) async fn flush_until(&mut self, sock: &Socket, deadline: Instant) -> Flushed {
        let this = &mut *self;
        let flushing = async move {
            loop {
                match Self::flush_now(&this.shared, sock, &mut this.batch) {
                    Ok(true) => return Flushed::All,
                    Ok(false) => {
                        if let Err(e) = sock.io().writable().await {
                            return Flushed::Failed(e);
                        }
                    }
                    Err(e) => return Flushed::Failed(e),
                }
            }
        };
        tokio::time::timeout_at(deadline, flushing)
            .await
            .unwrap_or(Flushed::GraceExpired)
    }

    /// Sends FIN (after TLS's close_notify), then reads (and hands to
    /// `on_data`) what the peer still sends until its FIN, at most
    /// [`CLOSE_LINGER`](crate::core::timers::CLOSE_LINGER) and never past
    /// `grace`.
    pub(super) async fn fin_and_linger(&mut self, sock: &Socket, grace: std::time::Instant) {
        sock.io().close_notify();
        let _ = sock.sock_ref().shutdown(std::net::Shutdown::Write);
        let linger = Timers::linger_until(crate::clock::now(), grace);
        self.drain_until(sock, Instant::from_std(linger)).await;
    }

    /// After our FIN, reads (and hands to `on_data`) what still arrives
    /// until the peer's FIN or `until`.
    async fn drain_until(&mut self, sock: &Socket, until: Instant) {
        let this = &mut *self;
        let _ = tokio::time::timeout_at(until, async move {
            loop {
                if sock.io().readable().await.is_err() {
                    return;
                }
                // The connected period's deadlines are over: only the
                // linger's, outside, still holds.
                let mut timers = Timers::new(crate::clock::now());
                if this.read_ready(sock, &mut timers).is_some() {
                    return;
                }
            }
        })
        .await;
    }

    /// Ends the managed connection: hands back what is left, calls
    /// `on_close` once, tells the manager.
    pub(super) fn finish(&mut self, reason: CloseReason) {
        if self.finished {
            return;
        }
        self.finished = true;
        // Already closed when the run loop ends it; not when the runtime
        // dropped the task.
        self.lifecycle.close(reason.clone());
        let (mut unsent, evidence) = match self.leftover.take() {
            Some(ended) => (ended.unsent, Some(ended.evidence)),
            None => (Unsent::default(), None),
        };
        // Before the queue closes: a send refused from then on reads why.
        self.shared.info().seldom_mut().close_reason = Some(Box::new(reason.clone()));
        let (batch, queued) = {
            let mut q = self.shared.queue();
            // A batch is left only when the runtime dropped the task
            // mid-write: its bytes are handed back like the rest.
            let batch = take_back(&mut self.batch, &mut q);
            let queued = q.close();
            self.shared.wake_writers(q);
            (batch, queued)
        };
        copy_back(batch, queued, &mut unsent);
        {
            let mut info = self.shared.info();
            info.socket = None;
            info.connected_since = None;
            super::recycle::cancel(&mut info);
        }
        debug!(%reason, "closed");
        let unsent_bytes = unsent.len() + unsent.partial.as_ref().map_or(0, |p| p.data.len());
        let close = Close {
            reason: reason.clone(),
            unsent: Handed::new(unsent),
            evidence,
        };
        // A panic here has nothing left to close; it is contained all the same.
        let _ = guarded("on_close", || self.handler.on_close(&close));
        settle(&self.shared, close.unsent.discarded(), "on_close");
        if let Some(h) = self.health.take() {
            h.leave(self.shared.id);
        }
        self.link.deregister(&self.shared);
        self.emit(EventKind::Closed {
            reason,
            unsent_bytes,
        });
        // Last, after `on_close`: `Closed` is what an awaited disconnect
        // waits for, and it promises that no callback follows its return.
        self.publish();
    }
}
