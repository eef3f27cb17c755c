//! Replacing a connection past its
//! [`max_lifetime`](crate::Options::max_lifetime), make-before-break.
//!
//! When the core's [`Timers`] find the lifetime spent, the connected period
//! [`start`]s the replacement: a connect attempt on a task of its own
//! (under the manager's cap on attempts in flight), while the old
//! connection goes on moving bytes. When the new transport is ready,
//! [`Driver::recycle`]:
//!
//! 1. stops the old connection taking sends: what is queued is its last,
//!    and sends from now on are held for the new socket (the queue's
//!    `holding`), whatever the outage policy, so none is refused;
//! 2. flushes what is queued on the old one within the close grace, sends
//!    FIN, and hands what the peer still sends (the answers to what went
//!    out) to `on_data` until the peer's FIN or the close linger;
//! 3. closes it, emits `Recycled`, and hands the new transport to the
//!    connected period, which runs `on_connect` and releases the held
//!    sends behind what `on_connect` sent.
//!
//! A disconnect or abort that comes while the old connection flushes ends
//! it as asked (a disconnect flushes the held sends on it too); one that
//! comes later, once it sent FIN, finds the new socket not started: it is
//! closed without `on_connect`, and the held sends go back in `on_close`.
//!
//! Nothing is lost in a clean replacement, so `on_reset` is not called. If
//! the old connection fails while it flushes, or the grace runs out, that
//! is a loss like any other: `on_reset` gets what it did not write, and the
//! new transport is dropped unused (the reconnect makes another).

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::time::Instant;
use tracing::{debug, warn};

use super::batch::settle;
use super::connected::Outcome;
use super::teardown::{reset_on_close, Flushed};
use super::{Driver, Link};
use crate::core::timers::Timers;
use crate::driver::dial::dial;
use crate::driver::transport::Transport;
use crate::events::EventKind;
use crate::handle::socket::Socket;
use crate::handler::Handler;
use crate::options::Options;
use crate::reset::{CloseReason, ResetReason};
use crate::shared::{Command, Info, Shared};

/// Starts the replacement's connect attempt on a task of its own, so the
/// old connection keeps working meanwhile: it dials `shared`'s endpoint
/// starting at address `rotate`, once the manager's cap on attempts in
/// flight lets it, then leaves the result in `shared`'s info and wakes the
/// driver. [`cancel`] aborts it.
///
/// The task's abort handle is stored under the same lock of `shared`'s
/// info as the spawn: the task reads a stored handle as "still wanted",
/// and on a multi-threaded runtime it may run (and a dial refused at once
/// may end) before `tokio::spawn` has even returned here. Stored after
/// the spawn, the handle could come too late: the task would drop the new
/// transport as cancelled, and the handle of a finished task would then
/// mark a replacement under way for ever, so the connection would never
/// be replaced again.
pub(crate) fn start(link: &Link, shared: &Arc<Shared>, opts: &Arc<Options>, rotate: usize) {
    let attempts = link.attempts.clone();
    let opts = opts.clone();
    let to = shared.clone();
    let mut info = shared.info();
    let task = tokio::spawn(async move {
        let made = {
            let _attempt = attempts.enter().await;
            dial(&to.endpoint, &opts, rotate).await
        };
        let mut info = to.info();
        // Cancelled meanwhile: the transport just closes.
        let replacing = info.seldom_mut_if_set();
        if let Some(r) = replacing.filter(|r| r.replacement.is_some()) {
            r.replacement = None;
            r.replaced = Some(Box::new(made));
            drop(info);
            to.wake.notify_one();
        }
    });
    info.seldom_mut().replacement = Some(task.abort_handle());
}

/// The replacement's result, once made.
pub(crate) fn take(shared: &Shared) -> Option<io::Result<Transport>> {
    shared
        .info()
        .seldom_mut_if_set()?
        .replaced
        .take()
        .map(|b| *b)
}

/// Aborts a replacement under way and drops one made and not yet taken
/// (the connection it was for ended first), with `info` locked.
pub(crate) fn cancel(info: &mut Info) {
    let Some(s) = info.seldom_mut_if_set() else {
        return;
    };
    if let Some(task) = s.replacement.take() {
        task.abort();
    }
    s.replaced = None;
}

impl<H: Handler> Driver<H> {
    /// While a replacement is being made: the outcome that ends this
    /// connected period once it is ready. One that failed leaves this
    /// connection as it is; the core says when to try again.
    pub(super) fn replacement_made(&mut self, timers: &mut Timers) -> Option<Outcome> {
        match take(&self.shared)? {
            Ok(io) => Some(Outcome::Recycle(Box::new(io))),
            Err(e) => {
                warn!(error = %e, "max_lifetime: the replacement could not be made; keeping this connection");
                let c = &self.shared.counters;
                c.failed_attempts.fetch_add(1, Ordering::Relaxed);
                self.shared.info().set_last_error(&e);
                timers.recycle_failed(crate::clock::now(), self.lifecycle.options());
                None
            }
        }
    }

    /// Replaces `old` with the connection `io` made for it. `Some`: the
    /// new socket, for the connected period. `None`: the old one was lost
    /// meanwhile (handled as a loss) and the life cycle says what follows.
    pub(super) async fn recycle(
        &mut self,
        old: Socket,
        io: Transport,
        since: u64,
    ) -> Option<Socket> {
        {
            // The old connection's last bytes are what is queued now.
            let mut q = self.shared.queue();
            q.accepting = false;
            q.holding = true;
        }
        let grace = Timers::grace_deadline(crate::clock::now(), self.lifecycle.options());
        // What it holds: its batch and the queue as it was when it
        // stopped taking sends.
        let flushed = self.flush_until(&old, Instant::from_std(grace)).await;
        let (reason, err) = match flushed {
            Flushed::All => (None, None),
            Flushed::Failed(e) => (Some(ResetReason::from_io(&e)), Some(e)),
            Flushed::GraceExpired => {
                reset_on_close(&old);
                let reason = ResetReason::Io {
                    kind: io::ErrorKind::TimedOut,
                    message: "the connection being replaced (max_lifetime) did not flush \
                              within the close grace"
                        .into(),
                };
                (Some(reason), None)
            }
        };
        if let Some(reason) = reason {
            // Sends go by the outage policy again; those held so far stay
            // for the next connection (or `on_close`).
            self.shared.queue().holding = false;
            drop(io);
            self.lost(old, reason, err, since);
            return None;
        }
        if let Some(cmd) = self.shared.command() {
            // Asked to end meanwhile: the old connection ends as asked, and
            // a disconnect flushes the sends held for the new one on it.
            drop(io);
            self.end_while_replacing(&old, cmd, since).await;
            return None;
        }
        // No more bytes on the old socket, from this task or a `Socket`
        // handle: FIN, then what the peer still sends until its FIN.
        self.shared.queue().socket_open = false;
        self.fin_and_linger(&old, grace).await;
        self.retire(old, since);
        let now = crate::clock::now();
        self.lifecycle.recycled(now);
        self.generation += 1;
        Some(Socket::new(self.shared.clone(), self.generation, io))
    }

    /// A disconnect or abort came while the old connection flushed: the
    /// held sends go back to its queue (the disconnect flushes them, an
    /// abort hands them back), and it ends as asked.
    async fn end_while_replacing(&mut self, old: &Socket, cmd: Command, since: u64) {
        {
            let mut q = self.shared.queue();
            q.holding = false;
            q.release_outage();
        }
        let reason = match cmd {
            Command::Disconnect => Box::pin(self.close_gracefully(old, since)).await,
            Command::Abort => {
                self.hard_close(old, since);
                CloseReason::Aborted
            }
        };
        self.lifecycle.close(reason);
    }

    /// Closes the replaced socket and says so. What it still held (only
    /// bytes a `Socket` handle queued while it flushed) cannot follow on
    /// the new one without breaking the stream's order: counted and logged
    /// as discarded.
    fn retire(&mut self, old: Socket, since: u64) {
        let ended = self.teardown(&old, false, since);
        if !ended.unsent.is_empty() {
            settle(
                &self.shared,
                Some(&ended.unsent),
                "max_lifetime replacement",
            );
        }
        old.close_shared();
        drop(old);
        let now = crate::clock::now();
        let uptime = now.saturating_duration_since(self.connected_since());
        self.shared.info().seldom_mut().recycles += 1;
        debug!(
            generation = self.generation,
            ?uptime,
            "replaced after max_lifetime"
        );
        self.emit(EventKind::Recycled {
            generation: self.generation,
            uptime,
        });
    }
}
