//! State shared between a connection's driver task and the application's
//! handles ([`Connection`](crate::Connection), [`Socket`](crate::Socket)):
//! the lock around the send queue (`queue.rs`), the command flag, the
//! start gate, the public state, the notifiers and the counters.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use spin::mutex::{SpinMutex, SpinMutexGuard};
use spin::relax::Yield;
use tokio::sync::Notify;

use crate::endpoint::Endpoint;
use crate::error::SendError;
use crate::options::Options;
use crate::queue::{Chunks, Pushed, Queue, Refused, HAND_OVER_EVERY};
use crate::reset::CloseReason;

/// Where a managed connection is, as the application sees it.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let cm = redial::Manager::new();
/// let conn = cm.connect("127.0.0.1:9", redial::handler()).unwrap();
/// assert_ne!(conn.state(), redial::State::Closed);
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum State {
    /// A connect attempt is under way.
    Connecting,
    /// Up, and `on_connect` has run.
    Connected,
    /// Waiting for the next attempt.
    BackingOff,
    /// Ended for good.
    Closed,
}

impl State {
    fn from_u8(v: u8) -> State {
        match v {
            0 => State::Connecting,
            1 => State::Connected,
            2 => State::BackingOff,
            _ => State::Closed,
        }
    }
    fn to_u8(self) -> u8 {
        match self {
            State::Connecting => 0,
            State::Connected => 1,
            State::BackingOff => 2,
            State::Closed => 3,
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            State::Connecting => "connecting",
            State::Connected => "connected",
            State::BackingOff => "backing off",
            State::Closed => "closed",
        })
    }
}

/// A pool member whose connections were lost this many times in a row
/// before [`Options::stable_after`](crate::Options::stable_after), each
/// next one made without a connect attempt failing in between, flaps: a
/// server that accepts and closes every connection. Pools skip it until
/// its current connection has stayed up `stable_after`.
///
/// Restarts are not flapping. While a server is down its port refuses
/// (or attempts time out): such a failed attempt, or waiting for another
/// connection's probe of the endpoint, ends the run of losses. And the
/// loss of a connection made by the immediate retry that follows a loss
/// is not counted: that retry often lands on the dying server, which
/// accepts it and is gone a moment later, so one kill would otherwise
/// count twice. An ordinary restart or two must not take a member out of
/// rotation. Nor does flapping ever take a whole pool out: when every
/// connected member flaps, the pool uses those that lost the fewest.
pub(crate) const FLAPPING_AFTER: u32 = 3;

/// What counts a member's losses toward [`FLAPPING_AFTER`]; kept packed in
/// one atomic word of every connection (`Shared::flaps`).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FlapCount {
    /// Counted losses in a row.
    losses: u32,
    /// The live connection was made by the immediate retry after a loss.
    from_retry: bool,
}

/// The bit of the packed [`FlapCount`] that holds `from_retry`; the bits
/// below it count losses.
const FROM_RETRY: u32 = 1 << 31;

impl FlapCount {
    fn pack(self) -> u32 {
        self.losses.min(FROM_RETRY - 1) | if self.from_retry { FROM_RETRY } else { 0 }
    }

    fn unpack(v: u32) -> Self {
        FlapCount {
            losses: v & !FROM_RETRY,
            from_retry: v & FROM_RETRY != 0,
        }
    }

    /// A connection that was up for `uptime` was lost; returns the count.
    fn lost(&mut self, uptime: Duration, stable_after: Duration) -> u32 {
        let short = uptime < stable_after;
        let from_retry = std::mem::take(&mut self.from_retry);
        if !short {
            self.losses = 0;
        } else if !from_retry {
            self.losses = self.losses.saturating_add(1).min(FROM_RETRY - 1);
        }
        self.losses
    }

    /// After a loss: the next attempt starts at once (`true`), or waits
    /// for the backoff schedule.
    fn retrying(&mut self, at_once: bool) {
        self.from_retry = at_once;
    }

    /// A connect attempt failed; `down` when the server could not be
    /// reached at all (refused, timed out), not reached and dropped.
    fn failed(&mut self, down: bool) -> u32 {
        self.from_retry = false;
        if down {
            self.losses = 0;
        }
        self.losses
    }
}

/// Whether a failed connect attempt reached the server, which dropped it
/// (reset during the connect or the handshake), rather than finding it
/// down (refused, timed out, unreachable).
pub(crate) fn reached_and_dropped(err: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionReset, UnexpectedEof};
    matches!(
        err.kind(),
        ConnectionReset | ConnectionAborted | UnexpectedEof
    )
}

/// Whether a pool may use a member now, by that member alone (the pool
/// decides among flapping members, see [`FLAPPING_AFTER`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Usability {
    /// Down, connecting, or disconnecting: it refuses sends.
    No,
    /// Up and takes sends.
    Yes,
    /// Up, but flapping: `losses` short-lived connections in a row; it is
    /// [`Usability::Yes`] by time alone once `stable_in` has passed.
    Flapping { losses: u32, stable_in: Duration },
}

/// What the application asked the driver to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Command {
    Disconnect,
    Abort,
}

thread_local! {
    /// Start gates this thread holds: it runs a start callback.
    static STARTS_HERE: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// A start in progress (see [`Shared::begin_start`]); dropped when the
/// start callback has returned.
pub(crate) struct Starting<'a> {
    _gate: MutexGuard<'a, ()>,
}

impl Drop for Starting<'_> {
    fn drop(&mut self) {
        STARTS_HERE.set(STARTS_HERE.get().saturating_sub(1));
    }
}

const CMD_NONE: u8 = 0;
const CMD_DISCONNECT: u8 = 1;
const CMD_ABORT: u8 = 2;

/// The pool a connection belongs to, without a strong reference back to
/// the pool (the pool holds its members).
pub(crate) struct PoolTag {
    pub(crate) name: Arc<str>,
    pub(crate) changed: Arc<Notify>,
}

/// The locked send queue.
pub(crate) type QueueGuard<'a> = SpinMutexGuard<'a, Queue>;

pub(crate) struct Shared {
    pub(crate) id: u64,
    pub(crate) endpoint: Endpoint,
    pub(crate) pool: Option<Arc<PoolTag>>,
    /// A spin lock: every `send` takes it, and unlocking it is a plain
    /// store where a `Mutex` needs a second atomic read-modify-write, which
    /// is most of a send's cost. Every critical section is a few field
    /// updates or one copy; a waiter yields its thread instead of putting
    /// it (and every task of that runtime worker) to sleep. Measured
    /// against `std::sync::Mutex` and `parking_lot::Mutex` with 8
    /// producers on one connection, it kept 1.4-1.6x their rate (see
    /// BENCHMARKS.md, "The send queue's lock").
    queue: SpinMutex<Queue, Yield>,
    /// Wakes the driver: bytes queued on an empty queue, or a command.
    pub(crate) wake: Notify,
    /// Wakes whoever waits for a state change, and writers waiting for room
    /// in the queue (one notifier for both keeps every connection smaller;
    /// a woken waiter checks again what it waits for).
    pub(crate) changed: Notify,
    state: AtomicU8,
    command: AtomicU8,
    /// Held by the driver from its last look at `command` until
    /// `on_connect` (or a `Resume::With` entry) returns; a request waits
    /// for it, so a start either sees the request or has finished by the
    /// time the request returns (see [`Shared::begin_start`]).
    start_gate: Mutex<()>,
    /// A packed [`FlapCount`]: connections lost in a row before
    /// `stable_after`; from [`FLAPPING_AFTER`] on, pools skip this member
    /// until its current connection has stayed up that long.
    flaps: AtomicU32,
    /// The application's reader is full: the driver stops reading (and the
    /// peer is slowed by TCP flow control) until it is cleared.
    read_paused: AtomicBool,
    /// `reconnect_now` was called: a backoff in progress ends at once.
    kicked: AtomicBool,
    /// The connection's options (shared, not copied).
    pub(crate) opts: Arc<Options>,
    pub(crate) counters: Counters,
    pub(crate) info: Mutex<Info>,
    #[cfg(feature = "metrics")]
    pub(crate) metrics: crate::metrics::ConnMetrics,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) connects: AtomicU64,
    pub(crate) resets: AtomicU64,
    pub(crate) failed_attempts: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
}

/// Slow-changing facts, read by `stats()` and `socket()`.
///
/// Every connection carries this, so what most connections never have
/// (an error, a close, an outage, a `max_lifetime` replacement, a dropped
/// `Sender`) is one box, made when the first of it is set: a connection
/// that stays up pays 8 bytes for all of it (see the test
/// `the_per_connection_state_stays_small`).
#[derive(Default)]
pub(crate) struct Info {
    pub(crate) connected_since: Option<Instant>,
    pub(crate) socket: Option<crate::handle::socket::Socket>,
    seldom: Option<Box<Seldom>>,
}

/// The part of [`Info`] most connections never set.
#[derive(Default)]
pub(crate) struct Seldom {
    pub(crate) last_error: Option<Box<str>>,
    // Boxed, as the replacement's result: the box is made for every
    // connection that ever failed an attempt, so it is kept small (72 B).
    pub(crate) close_reason: Option<Box<CloseReason>>,
    /// When the next attempt after a failed one starts (`Manager::status`).
    pub(crate) next_attempt: Option<Instant>,
    /// The connect attempt replacing a connection past its `max_lifetime`
    /// (aborted when the connection ends first), and its result once made.
    /// Kept here, not in the driver's task: every connection's task would
    /// carry room for it.
    pub(crate) replacement: Option<tokio::task::AbortHandle>,
    pub(crate) replaced: Option<Box<std::io::Result<crate::driver::transport::Transport>>>,
    /// Connections replaced after `max_lifetime` (`Stats::recycles`).
    pub(crate) recycles: u64,
    /// Bytes of dropped `Sender`s the connection refused (`Stats::sender_dropped`).
    pub(crate) sender_dropped: u64,
}

impl Info {
    /// The rarely set facts, if any was ever set.
    pub(crate) fn seldom(&self) -> Option<&Seldom> {
        self.seldom.as_deref()
    }

    /// The rarely set facts, for setting one (made on first use).
    pub(crate) fn seldom_mut(&mut self) -> &mut Seldom {
        self.seldom.get_or_insert_with(Box::default)
    }

    /// The rarely set facts, for changing one already set.
    pub(crate) fn seldom_mut_if_set(&mut self) -> Option<&mut Seldom> {
        self.seldom.as_deref_mut()
    }

    pub(crate) fn last_error(&self) -> Option<&str> {
        self.seldom()?.last_error.as_deref()
    }

    pub(crate) fn set_last_error(&mut self, e: &dyn std::fmt::Display) {
        self.seldom_mut().last_error = Some(e.to_string().into());
    }

    pub(crate) fn close_reason(&self) -> Option<&CloseReason> {
        self.seldom()?.close_reason.as_deref()
    }

    pub(crate) fn next_attempt(&self) -> Option<Instant> {
        self.seldom()?.next_attempt
    }

    /// Sets when the next attempt starts; clearing it makes no box.
    pub(crate) fn set_next_attempt(&mut self, at: Option<Instant>) {
        match (&mut self.seldom, at) {
            (Some(s), at) => s.next_attempt = at,
            (None, None) => {}
            (None, at) => self.seldom_mut().next_attempt = at,
        }
    }
}

impl Shared {
    pub(crate) fn new(
        id: u64,
        endpoint: Endpoint,
        pool: Option<Arc<PoolTag>>,
        opts: Arc<Options>,
    ) -> Self {
        Shared {
            id,
            #[cfg(feature = "metrics")]
            metrics: crate::metrics::ConnMetrics::new(&endpoint, pool.as_ref().map(|p| &*p.name)),
            endpoint,
            pool,
            queue: SpinMutex::new(Queue::new(opts.send_queue_limit)),
            wake: Notify::new(),
            changed: Notify::new(),
            state: AtomicU8::new(State::Connecting.to_u8()),
            command: AtomicU8::new(CMD_NONE),
            start_gate: Mutex::new(()),
            flaps: AtomicU32::new(0),
            read_paused: AtomicBool::new(false),
            kicked: AtomicBool::new(false),
            opts,
            counters: Counters::default(),
            info: Mutex::new(Info::default()),
        }
    }

    /// Locks the queue (inlined: every send call takes it).
    #[inline(always)]
    pub(crate) fn queue(&self) -> QueueGuard<'_> {
        self.queue.lock()
    }

    pub(crate) fn info(&self) -> MutexGuard<'_, Info> {
        self.info.lock().unwrap_or_else(|p| p.into_inner())
    }

    #[inline]
    pub(crate) fn state(&self) -> State {
        State::from_u8(self.state.load(Ordering::Acquire))
    }

    /// Sets the state; waiters are woken only when it changed, as the loss
    /// path passes through `BackingOff` more than once.
    pub(crate) fn set_state(&self, s: State) {
        if self.mark_state(s) {
            self.state_changed();
        }
    }

    /// Sets the state without waking anyone; true when it changed (the
    /// caller then owes a [`Shared::state_changed`]).
    pub(crate) fn mark_state(&self, s: State) -> bool {
        let v = s.to_u8();
        let changed = self.state.swap(v, Ordering::AcqRel) != v;
        #[cfg(feature = "metrics")]
        if changed {
            self.metrics.set_state(s);
        }
        changed
    }

    /// Wakes whoever waits for a state change.
    pub(crate) fn state_changed(&self) {
        self.changed.notify_waiters();
        if let Some(p) = &self.pool {
            p.changed.notify_waiters();
        }
    }

    /// Whether a pool may use this member now: up, taking sends (not
    /// disconnecting), and not flapping. The one test behind every pool
    /// call (`live`, `is_ready`, `wait_live`, `pick*`, `send*`).
    pub(crate) fn usability(&self) -> Usability {
        if self.state() != State::Connected || self.command().is_some() {
            return Usability::No;
        }
        {
            let q = self.queue();
            if q.closed || !(q.accepting || q.holding) {
                return Usability::No;
            }
        }
        let losses = FlapCount::unpack(self.flaps.load(Ordering::Acquire)).losses;
        if losses < FLAPPING_AFTER {
            return Usability::Yes;
        }
        let Some(since) = self.info().connected_since else {
            return Usability::No;
        };
        let up = crate::clock::now().saturating_duration_since(since);
        match self.opts.stable_after.checked_sub(up) {
            Some(left) if !left.is_zero() => Usability::Flapping {
                losses,
                stable_in: left,
            },
            _ => Usability::Yes,
        }
    }

    /// Updates the flap count (only the driver does, so the update never
    /// races another; the atomic is for the pools that read it).
    fn update_flaps(&self, f: impl FnOnce(&mut FlapCount)) {
        let mut c = FlapCount::unpack(self.flaps.load(Ordering::Acquire));
        f(&mut c);
        self.flaps.store(c.pack(), Ordering::Release);
    }

    /// Counts a lost connection that was up for `uptime`.
    pub(crate) fn record_uptime(&self, uptime: Duration) {
        let stable_after = self.opts.stable_after;
        self.update_flaps(|f| {
            f.lost(uptime, stable_after);
        });
    }

    /// Says whether the attempt after a loss starts at once: the loss of a
    /// connection it makes soon is the dying server's, not counted.
    pub(crate) fn record_retry(&self, at_once: bool) {
        self.update_flaps(|f| f.retrying(at_once));
    }

    /// Counts a failed connect attempt: a server that could not be reached
    /// is down or restarting, not accepting and dropping, so the run of
    /// losses that marks a flapping member ends there.
    pub(crate) fn record_failed_attempt(&self, err: &std::io::Error) {
        #[cfg(feature = "metrics")]
        self.metrics.connect_failed(err);
        let dropped = reached_and_dropped(err);
        self.update_flaps(|f| {
            f.failed(!dropped);
        });
    }

    /// The connection waits for another one's probe of its endpoint,
    /// which found it down: as a failed attempt of its own.
    pub(crate) fn record_unreachable(&self) {
        self.update_flaps(|f| {
            f.failed(true);
        });
    }

    /// Releases the queue lock and wakes the writers waiting for room, if any.
    pub(crate) fn wake_writers(&self, mut q: QueueGuard<'_>) {
        if q.room_waiters {
            q.room_waiters = false;
            drop(q);
            self.changed.notify_waiters();
        }
    }

    pub(crate) fn reads_paused(&self) -> bool {
        self.read_paused.load(Ordering::Acquire)
    }

    /// Pauses or resumes reading; resuming wakes the driver.
    pub(crate) fn pause_reads(&self, paused: bool) {
        let was = self.read_paused.swap(paused, Ordering::AcqRel);
        if was && !paused {
            self.wake.notify_one();
        }
    }

    pub(crate) fn command(&self) -> Option<Command> {
        match self.command.load(Ordering::Acquire) {
            CMD_DISCONNECT => Some(Command::Disconnect),
            CMD_ABORT => Some(Command::Abort),
            _ => None,
        }
    }

    /// Asks the driver to end a backoff in progress and attempt at once.
    pub(crate) fn kick(&self) {
        self.kicked.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    /// Whether [`Shared::kick`] was called and not yet taken.
    pub(crate) fn kicked(&self) -> bool {
        self.kicked.load(Ordering::Acquire)
    }

    /// Whether [`Shared::kick`] was called since the last look (and clears it).
    pub(crate) fn take_kick(&self) -> bool {
        self.kicked.swap(false, Ordering::AcqRel)
    }

    /// Asks the driver to disconnect (abort wins over a graceful disconnect).
    pub(crate) fn request(&self, cmd: Command) {
        let v = match cmd {
            Command::Disconnect => CMD_DISCONNECT,
            Command::Abort => CMD_ABORT,
        };
        self.command.fetch_max(v, Ordering::AcqRel);
        // Refuse sends from the call on (what is queued still goes out);
        // a refusal reads the command set above to say "disconnected".
        let mut q = self.queue();
        q.closed = true;
        self.wake_writers(q);
        self.wake.notify_one();
        // A pool no longer counts this member live from now on: its
        // waiters (`wait_ready_change`, `send_wait`) look again.
        if let Some(p) = &self.pool {
            p.changed.notify_waiters();
        }
        // A start that passed its last look for a command before the store
        // above is running on another thread: wait for its callback to
        // return, so nothing but `on_close` follows this call. Not from
        // inside a start callback: it holds a gate itself, and two of them
        // stopping each other would wait for ever.
        if STARTS_HERE.get() == 0 {
            drop(self.start_gate.lock().unwrap_or_else(|p| p.into_inner()));
        }
    }

    /// Enters a start (`on_connect` or a `Resume::With` entry): the pending
    /// command, if there is one, instead. The check and the callback are
    /// one step for [`Shared::request`]: it posts its command before it
    /// waits for the gate, and the driver looks for a command only once it
    /// holds the gate.
    pub(crate) fn begin_start(&self) -> Result<Starting<'_>, Command> {
        let gate = self.start_gate.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(cmd) = self.command() {
            return Err(cmd);
        }
        STARTS_HERE.set(STARTS_HERE.get() + 1);
        Ok(Starting { _gate: gate })
    }

    /// Pushes bytes, waking the driver when the queue was empty. A send
    /// of more than [`Queue::APPEND_MAX`] bytes is copied before the lock
    /// is taken (see [`Shared::push_large`]).
    #[inline(always)]
    pub(crate) fn push(&self, socket_gen: Option<u64>, data: &[u8]) -> Result<Pushed, Refused> {
        if data.len() > Queue::APPEND_MAX {
            return self.push_large(socket_gen, data);
        }
        let pushed = self.queue().push(socket_gen, data, &self.opts.outage)?;
        if pushed.was_empty {
            self.wake.notify_one();
        }
        Ok(pushed)
    }

    /// A send too large to copy under the lock: the queue is asked first
    /// (so a refused send costs no copy), the bytes are copied into a
    /// buffer of their own outside the lock, and that buffer is moved in
    /// as a segment. Whatever the queue hands back is freed after the lock.
    #[cold]
    #[inline(never)]
    fn push_large(&self, socket_gen: Option<u64>, data: &[u8]) -> Result<Pushed, Refused> {
        let policy = &self.opts.outage;
        self.queue().would_take(socket_gen, data.len(), policy)?;
        let mut seg = Chunks::whole(data.to_vec());
        let pushed = self
            .queue()
            .push_chunks(socket_gen, &mut seg, policy, false)?;
        if pushed.was_empty {
            self.wake.notify_one();
        }
        Ok(pushed)
    }

    /// Pushes bytes, waiting while the queue is full. The handles'
    /// `write`s call [`Shared::push`] themselves first and come here only
    /// when it refused for a full queue, so that the per-message path of a
    /// producer writing in a loop holds no second future.
    pub(crate) async fn push_wait(
        &self,
        socket_gen: Option<u64>,
        data: &[u8],
    ) -> Result<(), SendError> {
        match self.push(socket_gen, data) {
            Ok(p) => {
                if p.hand_over {
                    self.hand_over_turn().await;
                }
                return Ok(());
            }
            Err(Refused::Full { .. }) => {}
            Err(other) => return Err(self.send_error(other, data.to_vec())),
        }
        let policy = &self.opts.outage;
        let pushed = if data.len() > Queue::APPEND_MAX {
            // Copied once, outside the lock, however long the wait.
            let mut seg = Chunks::whole(data.to_vec());
            self.push_when_room(|q| q.push_chunks(socket_gen, &mut seg, policy, false))
                .await
                .map_err(|r| self.send_error(r, std::mem::take(&mut seg.buf)))
        } else {
            self.push_when_room(|q| q.push(socket_gen, data, policy))
                .await
                .map_err(|r| self.send_error(r, data.to_vec()))
        };
        pushed.map(drop)
    }

    /// Hands over a sender's chunks (emptying `held`), waking the driver
    /// when the queue was empty. Refused chunks stay in `held`.
    pub(crate) fn push_chunks(&self, held: &mut Chunks, force: bool) -> Result<Pushed, Refused> {
        let pushed = self
            .queue()
            .push_chunks(None, held, &self.opts.outage, force)?;
        held.clear();
        if pushed.was_empty {
            self.wake.notify_one();
        }
        Ok(pushed)
    }

    /// Hands over a sender's chunks, waiting while the queue is full.
    pub(crate) async fn push_chunks_wait(&self, held: &mut Chunks) -> Result<Pushed, Refused> {
        let pushed = match self.push_chunks(held, false) {
            Err(Refused::Full { .. }) => {
                self.push_when_room(|q| q.push_chunks(None, held, &self.opts.outage, false))
                    .await
            }
            done => return done,
        };
        if pushed.is_ok() {
            held.clear();
        }
        pushed
    }

    /// Retries `push` each time room may have been made, until it is not
    /// refused for a full queue. Wakes the driver when the queue was empty.
    /// Counts no refusal (`Pool::send_wait` passes one on to the next member).
    pub(crate) async fn push_when_room(
        &self,
        mut push: impl FnMut(&mut Queue) -> Result<Pushed, Refused>,
    ) -> Result<Pushed, Refused> {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            {
                let mut q = self.queue();
                match push(&mut q) {
                    Ok(p) => {
                        drop(q);
                        if p.was_empty {
                            self.wake.notify_one();
                        }
                        return Ok(p);
                    }
                    Err(Refused::Full { .. }) => {
                        q.room_waiters = true;
                        notified.as_mut().enable();
                    }
                    Err(other) => return Err(other),
                }
            }
            notified.await;
        }
    }

    /// The error for a refused send, carrying `data`. A closed queue is
    /// told apart here, where the close reason and the command are known:
    /// a disconnect the application asked for, an end for another reason,
    /// or a socket of an earlier connection.
    pub(crate) fn send_error(&self, refused: Refused, data: Vec<u8>) -> SendError {
        #[cfg(feature = "metrics")]
        self.metrics.refused(&refused);
        if !matches!(refused, Refused::Closed) {
            return refused.with_data(data);
        }
        let reason = self.info().close_reason().cloned();
        match reason {
            Some(CloseReason::Disconnected | CloseReason::Aborted) => {
                SendError::Disconnected { data }
            }
            Some(reason) => SendError::ConnectionClosed { data, reason },
            None if self.command().is_some() => SendError::Disconnected { data },
            None => SendError::Closed { data },
        }
    }

    /// A writer's turn after its push crossed a hand-over point
    /// ([`Pushed::hand_over`]): it waits while [`HAND_OVER_EVERY`] or more
    /// of the bytes queued so far are still untaken by the driver, and is
    /// woken when the driver takes them (or the connection goes down or
    /// closes). A producer faster than its socket thus keeps the queue as
    /// short as a `BufWriter` keeps its buffer, instead of filling it to
    /// its limit; and on a busy runtime the woken producer runs right
    /// after the driver's write (the driver wakes it from the same
    /// thread), while its buffers are still in the cache, instead of
    /// queueing behind every other task as a yield would (BENCHMARKS.md,
    /// "Writers wait for the hand-over").
    pub(crate) async fn hand_over_turn(&self) {
        let mark = {
            let q = self.queue();
            let untaken = untaken(&q);
            if !q.accepting || q.closed || untaken < HAND_OVER_EVERY as u64 {
                return;
            }
            taken(&q) + untaken - HAND_OVER_EVERY as u64 + 1
        };
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            {
                let mut q = self.queue();
                if !q.accepting || q.closed || taken(&q) >= mark {
                    return;
                }
                q.room_waiters = true;
                notified.as_mut().enable();
            }
            notified.await;
        }
    }

    /// Waits until the state is `want` or closed; returns the state seen.
    pub(crate) async fn wait_state(&self, want: State) -> State {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let s = self.state();
            if s == want || s == State::Closed {
                return s;
            }
            notified.await;
        }
    }
}

/// Bytes queued (and in the outage buffer) that the driver has not taken.
fn untaken(q: &Queue) -> u64 {
    q.held().saturating_sub(q.inflight as u64)
}

/// Bytes that have left the queue since the connection was made: taken by
/// the driver, or handed back. It only grows (a push adds to `accepted`
/// what it adds to the queue), so a writer can wait for it to pass a mark.
fn taken(q: &Queue) -> u64 {
    q.ledger.accepted.saturating_sub(untaken(q))
}

/// Names the connection by id and endpoint: what tells two apart in a log.
impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("id", &self.id)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STABLE: Duration = Duration::from_secs(5);
    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_server_that_accepts_and_drops_makes_a_member_flap() {
        let mut f = FlapCount::default();
        // The first loss, its immediate retry (not counted), then the
        // schedule's retries: each one connects and is dropped.
        let counts: Vec<u32> = [true, false, false, false]
            .iter()
            .map(|&at_once| {
                let n = f.lost(MS, STABLE);
                f.retrying(at_once);
                n
            })
            .collect();
        assert_eq!(counts, [1, 1, 2, FLAPPING_AFTER]);
        // Reset during the connect: still reached and dropped.
        assert_eq!(f.failed(false), FLAPPING_AFTER);
        // A connection that stayed up ends it.
        assert_eq!(f.lost(STABLE, STABLE), 0);
    }

    #[test]
    fn a_flap_count_packs_into_one_word() {
        for (losses, from_retry) in [(0, false), (3, true), (u32::MAX, true), (7, false)] {
            let f = FlapCount { losses, from_retry };
            let back = FlapCount::unpack(f.pack());
            assert_eq!(back.losses, losses.min(FROM_RETRY - 1));
            assert_eq!(back.from_retry, from_retry);
        }
    }

    #[test]
    fn restarts_whose_retry_lands_on_the_dying_server_do_not_flap() {
        let mut f = FlapCount::default();
        for restart in 0..2 {
            // The kill: the connection goes (up 2 s), the immediate retry
            // lands on the dying server and is reset 0.3 ms later.
            f.lost(Duration::from_secs(2), STABLE);
            f.retrying(true);
            let n = f.lost(Duration::from_micros(300), STABLE);
            f.retrying(false);
            assert!(n < FLAPPING_AFTER, "restart {restart}: {n}");
            // No attempt failed: this connection backed off past the
            // outage (or waited for a probe, which counts as failed).
        }
        assert_eq!(f.losses, 2);
        // With a refused attempt during the outage the run ends.
        assert_eq!(f.failed(true), 0);
        for _ in 0..5 {
            f.lost(Duration::from_secs(1), STABLE);
            f.retrying(true);
            f.lost(MS, STABLE);
            f.retrying(false);
            assert_eq!(f.failed(true), 0);
        }
    }

    /// Every connection carries one `Shared` (one allocation with the
    /// `Arc`'s 16 bytes; glibc then rounds to 16 with 8 of its own), so
    /// these bounds are today's sizes exactly (rustc 1.95, 64-bit), not a
    /// margin: a field that grows them is a decision, made with the
    /// benchmark's bytes per idle connection in hand.
    ///
    /// - `Queue` 168: the segments (a tail, the sealed ones, the spares;
    ///   the tail's open run of chunks of one size, 8, see `chunks.rs`),
    ///   the ledger (32), the outage buffer's box.
    /// - `Info` 32: when connected, the live socket, and one box for what
    ///   most connections never have (`Seldom`).
    /// - `Counters` 32: the four counters every connection moves.
    /// - `Shared` 360 (an allocation of 376 B: glibc's chunk is 384 B, as
    ///   it was at 352); with the `metrics` feature 456, its
    ///   per-connection handles (`ConnMetrics`) included.
    #[test]
    fn the_per_connection_state_stays_small() {
        use std::mem::size_of;
        assert!(size_of::<Queue>() <= 168, "Queue: {}", size_of::<Queue>());
        assert!(size_of::<Info>() <= 32, "Info: {}", size_of::<Info>());
        assert!(
            size_of::<Counters>() <= 32,
            "Counters: {}",
            size_of::<Counters>()
        );
        // Made for a connection that ever failed an attempt, closed,
        // recycled or lost a sender's bytes.
        assert!(size_of::<Seldom>() <= 72, "Seldom: {}", size_of::<Seldom>());
        let bound = if cfg!(feature = "metrics") { 456 } else { 360 };
        assert!(
            size_of::<Shared>() <= bound,
            "Shared: {} (bound {bound})",
            size_of::<Shared>()
        );
        // The manager's registry and the handles hold it behind one
        // pointer; a `Connection` adds the manager's runtime.
        assert!(size_of::<crate::Connection>() <= 16);
    }
}
