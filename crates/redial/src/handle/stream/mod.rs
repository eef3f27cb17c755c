//! [`Stream`]: a managed connection as `AsyncRead + AsyncWrite`, for codecs
//! (`tokio_util::codec::Framed`), `tokio::io::copy` and client libraries
//! that take a stream.
//!
//! It runs on the same driver as the callback API (its handler is internal,
//! in `inbox`), so it gets the same reconnects, backoff, bounds and
//! accounting. Each lost connection surfaces as one `ConnectionReset` error
//! on the next read, write or flush; the rules it keeps (nothing lost,
//! nothing mixed across connections) are on [`Stream`] itself.

mod error;
mod inbox;

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{sleep_until, Instant, Sleep};

use crate::endpoint::ToEndpoint;
use crate::error::ConnectError;
use crate::handle::connection::Connection;
use crate::handle::manager::Manager;
use crate::options::Options;
use crate::queue::{Pushed, Queue, Refused};
use crate::reset::{CloseReason, Unsent};
use crate::shared::Shared;

pub use error::{StreamError, StreamReset};

use inbox::{Inbox, Piece, StreamHandler, StreamShared, STREAM_READ_LIMIT};

type Wait = Pin<Box<dyn Future<Output = ()> + Send + Sync>>;

/// Waits until `done` holds for the send queue, waking on every batch the
/// driver takes or finishes and on every state change. The wake-ups are
/// armed before the check, so none is missed. `once` returns after the
/// first wake-up (the caller checks again itself).
async fn wait_queue(shared: Arc<Shared>, done: impl Fn(&Queue) -> bool, once: bool) {
    loop {
        // One notifier tells of room in the queue and of state changes.
        let changed = shared.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        {
            let mut q = shared.queue();
            if q.closed || done(&q) {
                return;
            }
            q.room_waiters = true;
        }
        changed.await;
        if once {
            return;
        }
    }
}

/// The queue takes `len` more bytes now (or the connection changed state).
async fn wait_room(shared: Arc<Shared>, len: usize) {
    wait_queue(shared, move |q| q.has_room_for(len), true).await
}

/// Everything queued was handed to the kernel; or the connection is down
/// and holds nothing for the next one (a loss hands back what was queued,
/// but an outage buffer keeps its bytes for the next connection).
async fn wait_drained(shared: Arc<Shared>) {
    let done = |q: &Queue| {
        if q.accepting {
            q.is_drained()
        } else {
            q.outage_len() == 0
        }
    };
    wait_queue(shared, done, false).await
}

/// A managed connection as `AsyncRead + AsyncWrite`.
///
/// # Lost connections
///
/// Every lost connection is one `ConnectionReset` error, in order, on the
/// first read, write or flush after it; two losses are two errors, never
/// one. Inside the `io::Error` is a [`StreamError::Reset`]: which
/// connection, why, and what became of its bytes ([`StreamReset`]; reach it
/// with [`StreamError::of`]). The error cuts the stream in both directions:
///
/// - **Reads**: bytes before the error came from the lost connection, bytes
///   after it from the next. When a write or flush gets the error first,
///   the bytes read from the lost connection and not yet taken by the
///   reader are dropped (the error says how many): they are never handed
///   out glued to the next connection's. A codec must drop its own half
///   frame too: a `tokio_util` `Framed` ends after an error, so build a new
///   one over `framed.into_inner()`.
/// - **Writes**: bytes a write accepted either reached the kernel of the
///   lost connection (what the peer got of them, only the peer can say),
///   or are handed back by [`Stream::take_unsent`], which keeps them, loss
///   after loss, until taken; or they are still queued. Nothing accepted is
///   dropped. Writes after the error go to the next connection. A
///   zero-byte write returns `Ok(0)` at once, whatever the state: it
///   queues nothing and reports no loss.
///
/// Split halves (`tokio::io::split`) share one stream and so one error per
/// loss: the half that did not get it is not told. Give a split reader's
/// codec its own way to learn of it (for example, from the writer).
///
/// # Outages
///
/// While the connection is down (connecting, or backing off between
/// attempts), a write waits for the next connection for at most the outage
/// wait ([`Stream::DEFAULT_OUTAGE_WAIT`]; [`Stream::set_outage_wait`]
/// changes it), then fails with `NotConnected` and [`StreamError::Down`],
/// its bytes not taken, so a program notices an outage instead of hanging
/// in it; the connection keeps trying, and a later write may succeed. With
/// [`Outage::Buffer`](crate::Outage::Buffer) in the options, writes while
/// down go into the outage buffer at once, and only a write that finds it
/// full waits; a flush waits for them to reach the next connection's
/// kernel, for at most the outage wait too. Reads wait for bytes as long
/// as the connection keeps trying; a loss or the end of the stream ends
/// their wait.
///
/// ```no_run
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
///
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// let cm = redial::Manager::new();
/// let mut stream = cm.stream("127.0.0.1:6379", redial::Options::new())?;
/// loop {
///     match stream.write_all(b"PING\r\n").await {
///         Ok(()) => {}
///         // One error per lost connection; the next call uses the new one.
///         Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => continue,
///         // Down for longer than the outage wait: wait on, or give up.
///         Err(e) if e.kind() == std::io::ErrorKind::NotConnected => {
///             stream.connection().wait_connected().await?;
///             continue;
///         }
///         Err(e) => return Err(e.into()),
///     }
///     let mut buf = [0u8; 7];
///     match stream.read_exact(&mut buf).await {
///         Ok(_) => break,
///         Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => continue,
///         Err(e) => return Err(e.into()),
///     }
/// }
/// stream.shutdown().await?; // final: never reconnects
/// # Ok(()) }
/// ```
pub struct Stream {
    conn: Connection,
    shared: Arc<StreamShared>,
    write_wait: Option<Wait>,
    flush_wait: Option<Wait>,
    close_wait: Option<Wait>,
    /// How long a write waits for a connection while it is down.
    outage_wait: Option<Duration>,
    /// When a write that found the connection down gives up, and how many
    /// connects there had been then (a connect since starts a new wait).
    down_deadline: Option<(u64, Pin<Box<Sleep>>)>,
    /// The last write crossed a hand-over mark of the send queue: the next
    /// one waits until the connection has taken what was queued then (its
    /// turn, as an awaited `Connection::write` waits), so a writer faster
    /// than its socket keeps the queue about one hand-over long.
    hand_over: Option<Wait>,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("connection", &self.conn)
            .field("transparent", &self.shared.transparent)
            .field("outage_wait", &self.outage_wait)
            .finish()
    }
}

impl Manager {
    /// Opens a stream over a new managed connection: [`Manager::stream`]
    /// and [`Manager::stream_transparent`].
    pub(crate) fn make_stream(
        &self,
        endpoint: impl ToEndpoint,
        opts: Options,
        transparent: bool,
    ) -> Result<Stream, ConnectError> {
        let shared = Arc::new(StreamShared::new(transparent));
        let conn = self.connect_with(
            endpoint,
            StreamHandler {
                shared: shared.clone(),
            },
            opts,
        )?;
        Ok(Stream {
            conn,
            shared,
            write_wait: None,
            flush_wait: None,
            close_wait: None,
            outage_wait: Some(Stream::DEFAULT_OUTAGE_WAIT),
            down_deadline: None,
            hand_over: None,
        })
    }
}

impl Stream {
    /// How long a [`Stream`] write waits for a connection while it is down,
    /// before it fails with [`StreamError::Down`] (see
    /// [`Stream::set_outage_wait`]): long enough for a server restart and for a
    /// connect attempt to a silent host to time out
    /// ([`Options::DEFAULT_CONNECT_TIMEOUT`](crate::Options::DEFAULT_CONNECT_TIMEOUT)), short
    /// enough that a program notices an outage instead of hanging in it.
    ///
    /// Value: 10 s.
    ///
    /// ```
    /// use std::time::Duration;
    /// assert_eq!(redial::Stream::DEFAULT_OUTAGE_WAIT, Duration::from_secs(10));
    /// ```
    pub const DEFAULT_OUTAGE_WAIT: Duration = Duration::from_secs(10);

    /// Bytes a [`Stream`] holds for its reader before it stops
    /// reading from the socket (TCP flow control then slows the peer).
    ///
    /// Value: 256 KiB.
    ///
    /// ```
    /// assert_eq!(redial::Stream::READ_LIMIT, 256 * 1024);
    /// ```
    pub const READ_LIMIT: usize = crate::handle::stream::inbox::STREAM_READ_LIMIT;
}

impl Stream {
    /// The managed connection under the stream (state, stats, socket).
    ///
    /// ```no_run
    /// # fn f(s: &redial::Stream) {
    /// println!("{:?}", s.connection().stats());
    /// # }
    /// ```
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Which connection the stream is on (1 for the first); it grows by one
    /// with every reconnect.
    ///
    /// ```no_run
    /// # fn f(s: &redial::Stream) {
    /// println!("connection #{}", s.generation());
    /// # }
    /// ```
    pub fn generation(&self) -> u64 {
        self.shared.inbox().generation
    }

    /// How long a write waits for a connection while the connection is
    /// down (connecting or backing off) before it fails with
    /// `io::ErrorKind::NotConnected` and [`StreamError::Down`], its bytes
    /// not taken; [`Stream::DEFAULT_OUTAGE_WAIT`] unless set. `None` waits
    /// as long as the connection keeps trying. The wait starts when a write
    /// finds the connection down, and ends with any write that is taken.
    ///
    /// With [`Outage::Buffer`](crate::Outage::Buffer) in the options,
    /// writes while down are taken into the outage buffer without waiting
    /// (and sent on the next connection, first); only a write that finds the
    /// buffer full waits. A write waiting for room in the queue of a live
    /// connection (a slow peer) is not limited: it waits like a socket
    /// write does.
    ///
    /// ```no_run
    /// # fn f(mut s: redial::Stream) {
    /// s.set_outage_wait(Some(std::time::Duration::from_secs(2)));
    /// # }
    /// ```
    pub fn set_outage_wait(&mut self, wait: Option<Duration>) {
        self.outage_wait = wait;
        self.down_deadline = None;
    }

    /// Takes the bytes written to the stream that never reached the
    /// kernel: what every lost connection since the last call left unsent,
    /// and what the close left, one [`Unsent`] per connection, oldest
    /// first. Nothing is overwritten: bytes wait here until taken, however
    /// many connections are lost meanwhile (so a program that never resends
    /// should still take them, to free their memory). A chunk (one `write` call) that
    /// was cut by a loss is the entry's [`Unsent::partial`]: its first
    /// `written` bytes reached the kernel, the rest did not.
    ///
    /// ```no_run
    /// # fn f(s: &redial::Stream) {
    /// for unsent in s.take_unsent() {
    ///     println!("{} bytes to resend", unsent.len());
    /// }
    /// # }
    /// ```
    pub fn take_unsent(&self) -> Vec<Unsent> {
        std::mem::take(&mut self.shared.inbox().handed_back)
    }

    /// The oldest loss not yet reported, reported now to a writer (its
    /// connection's unread bytes are dropped and counted).
    fn take_reset(&self, inbox: &mut Inbox) -> Option<io::Error> {
        let lost = inbox.report_to_writer()?;
        if inbox.buffered < STREAM_READ_LIMIT / 2 {
            self.conn.shared.pause_reads(false);
        }
        Some(reset_error(lost))
    }

    /// Queues a transparent stream's re-send, then `buf` (if any), waiting
    /// for room or for the next connection. Reports a loss not yet
    /// reported first; refuses once the stream is closed.
    fn poll_push(
        &mut self,
        cx: &mut Context<'_>,
        buf: Option<&[u8]>,
    ) -> Poll<io::Result<Option<Pushed>>> {
        loop {
            let (refused, len) = {
                let mut inbox = self.shared.inbox();
                if let Some(e) = self.take_reset(&mut inbox) {
                    return Poll::Ready(Err(e));
                }
                if let Some(reason) = &inbox.closed {
                    return Poll::Ready(Err(closed_error(Some(reason.clone()))));
                }
                inbox.writer = Some(cx.waker().clone());
                let generation = inbox.generation;
                let shared = &self.conn.shared;
                match inbox
                    .backlog
                    .push_with(|c| shared.push(Some(generation), c))
                {
                    Err(refused) => refused,
                    Ok(()) => match buf {
                        None => return Poll::Ready(Ok(None)),
                        Some(buf) => match shared.push(None, buf) {
                            Ok(p) => {
                                self.down_deadline = None;
                                return Poll::Ready(Ok(Some(p)));
                            }
                            Err(r) => (r, buf.len()),
                        },
                    },
                }
            };
            // A re-send is refused `Closed` between two connections too:
            // only a closed queue is the end.
            if matches!(refused, Refused::Closed) && self.conn.shared.queue().closed {
                let reason = self.conn.shared.info().close_reason().cloned();
                return Poll::Ready(Err(closed_error(reason)));
            }
            // Full (a slow peer): wait for room, as a socket write does.
            // Down: wait for the next connection, at most the outage wait.
            if matches!(refused, Refused::Full { .. }) {
                self.down_deadline = None;
            } else {
                self.arm_down_deadline();
            }
            let shared = self.conn.shared.clone();
            let make = || -> Wait { Box::pin(wait_room(shared, len)) };
            if Self::poll_wait(&mut self.write_wait, make, cx).is_ready() {
                continue;
            }
            if self.poll_down_deadline(cx) {
                self.write_wait = None;
                return Poll::Ready(Err(self.down_error(refused)));
            }
            return Poll::Pending;
        }
    }

    /// Starts the outage wait, unless one runs already for this outage.
    fn arm_down_deadline(&mut self) {
        let connects = self.conn.shared.counters.connects.load(Ordering::Relaxed);
        if self.down_deadline.as_ref().is_none_or(|d| d.0 != connects) {
            let at = self.outage_wait.and_then(|d| Instant::now().checked_add(d));
            self.down_deadline = at.map(|at| (connects, Box::pin(sleep_until(at))));
        }
    }

    /// True (once) when the outage wait has run out.
    fn poll_down_deadline(&mut self, cx: &mut Context<'_>) -> bool {
        let Some((_, deadline)) = self.down_deadline.as_mut() else {
            return false;
        };
        if deadline.as_mut().poll(cx).is_ready() {
            self.down_deadline = None;
            return true;
        }
        false
    }

    /// The error of a write that waited the outage wait for a connection.
    fn down_error(&self, refused: Refused) -> io::Error {
        let stats = self.conn.stats();
        StreamError::Down {
            waited: self.outage_wait.unwrap_or_default(),
            state: self.conn.state(),
            outage_buffer_full: matches!(refused, Refused::OutageFull { .. }),
            last_error: stats.last_error,
        }
        .into()
    }

    /// Polls the writer's turn after a hand-over, if it waits for one.
    fn poll_turn(slot: &mut Option<Wait>, cx: &mut Context<'_>) -> Poll<()> {
        let Some(turn) = slot.as_mut() else {
            return Poll::Ready(());
        };
        if turn.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        *slot = None;
        Poll::Ready(())
    }

    fn poll_wait(
        slot: &mut Option<Wait>,
        make: impl FnOnce() -> Wait,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        let fut = slot.get_or_insert_with(make);
        match fut.as_mut().poll(cx) {
            Poll::Ready(()) => {
                *slot = None;
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The error of a write to a closed stream.
fn closed_error(reason: Option<CloseReason>) -> io::Error {
    StreamError::Closed { reason }.into()
}

/// The error a loss is reported with.
fn reset_error(lost: StreamReset) -> io::Error {
    StreamError::Reset(lost).into()
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let mut inbox = this.shared.inbox();
        loop {
            match inbox.pieces.front_mut() {
                Some(Piece::Data(data, pos)) => {
                    let n = (data.len() - *pos).min(buf.remaining());
                    buf.put_slice(&data[*pos..*pos + n]);
                    *pos += n;
                    if *pos == data.len() {
                        inbox.pieces.pop_front();
                    }
                    inbox.buffered = inbox.buffered.saturating_sub(n);
                    if inbox.buffered < STREAM_READ_LIMIT / 2 {
                        this.conn.shared.pause_reads(false);
                    }
                    return Poll::Ready(Ok(()));
                }
                Some(Piece::Lost(generation)) => {
                    let generation = *generation;
                    inbox.pieces.pop_front();
                    if let Some(lost) = inbox.report_to_reader(generation) {
                        return Poll::Ready(Err(reset_error(lost)));
                    }
                }
                None => {
                    if inbox.closed.is_some() {
                        return Poll::Ready(Ok(())); // end of stream
                    }
                    inbox.reader = Some(cx.waker().clone());
                    return Poll::Pending;
                }
            }
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // No message: nothing to queue, no loss or close to report (as a
        // socket's zero-byte write, whose result says nothing either).
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if Self::poll_turn(&mut this.hand_over, cx).is_pending() {
            return Poll::Pending;
        }
        match this.poll_push(cx, Some(buf)) {
            Poll::Ready(Ok(pushed)) => {
                if pushed.is_some_and(|p| p.hand_over) {
                    // The turn is taken now, as `Connection::write` takes
                    // it right after its push: its mark is what is queued
                    // now. Polled at once, so its waker is registered; the
                    // next write waits for it.
                    let shared = this.conn.shared.clone();
                    let turn: Wait = Box::pin(async move { shared.hand_over_turn().await });
                    this.hand_over = Some(turn);
                    let _ = Self::poll_turn(&mut this.hand_over, cx);
                }
                Poll::Ready(Ok(buf.len()))
            }
            Poll::Ready(Err(e)) => {
                #[cfg(feature = "metrics")]
                this.conn.shared.metrics.stream_refused(&e);
                Poll::Ready(Err(e))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // A transparent stream's re-send goes first.
        match this.poll_push(cx, None) {
            Poll::Ready(Ok(_)) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
        let shared = this.conn.shared.clone();
        if Self::poll_wait(&mut this.flush_wait, || Box::pin(wait_drained(shared)), cx).is_pending()
        {
            // Down with bytes kept for the next connection: they wait for
            // it at most the outage wait, as a write does.
            if this.conn.shared.queue().accepting {
                return Poll::Pending;
            }
            this.arm_down_deadline();
            if this.poll_down_deadline(cx) {
                this.flush_wait = None;
                return Poll::Ready(Err(this.down_error(Refused::NotConnected)));
            }
            return Poll::Pending;
        }
        let mut inbox = this.shared.inbox();
        match this.take_reset(&mut inbox) {
            Some(e) => Poll::Ready(Err(e)),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // A transparent stream's re-send is queued before the disconnect
        // flushes the queue (a closed stream hands back what is left).
        if this.shared.transparent && this.close_wait.is_none() {
            match this.poll_push(cx, None) {
                Poll::Ready(Ok(_)) | Poll::Ready(Err(_)) => {}
                Poll::Pending => return Poll::Pending,
            }
        }
        let shared = this.conn.shared.clone();
        let make = || -> Wait {
            shared.request(crate::shared::Command::Disconnect);
            Box::pin(async move {
                shared.wait_state(crate::shared::State::Closed).await;
            })
        };
        match Self::poll_wait(&mut this.close_wait, make, cx) {
            Poll::Ready(()) => Poll::Ready(Ok(())),
            Poll::Pending => Poll::Pending,
        }
    }
}
