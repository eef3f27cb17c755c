//! [`Stream`]: a managed connection as `AsyncRead + AsyncWrite`, for codecs
//! (`tokio_util::codec::Framed`), `tokio::io::copy` and client libraries
//! that take a stream.
//!
//! It runs on the same driver as the callback API (its handler is internal),
//! so it gets the same reconnects, backoff, bounds and accounting. A reset
//! surfaces as exactly one `ConnectionReset` error on the next read or
//! write: a codec drops its half frame, the caller resends what it knows
//! was not acknowledged ([`Stream::take_unsent`] has what never left), and
//! I/O continues on the next connection. A `tokio_util` `Framed` ends after
//! an error: build a new one over `framed.into_inner()` to go on with a
//! clean codec.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::connection::Connection;
use crate::endpoint::ToEndpoint;
use crate::error::ConnectError;
use crate::handler::{Handler, Resume};
use crate::manager::Manager;
use crate::options::Options;
use crate::reset::{Close, Reset, Unsent};
use crate::shared::{Queue, Refused, Shared};
use crate::socket::Socket;

/// Bytes a [`Stream`] holds for its reader before it stops reading from
/// the socket (TCP flow control then slows the peer).
pub const STREAM_READ_LIMIT: usize = 256 * 1024;

enum Piece {
    Data(Vec<u8>, usize),
    /// The connection with this reset number was lost here.
    Reset(u64, String),
}

#[derive(Default)]
struct Inbox {
    pieces: VecDeque<Piece>,
    buffered: usize,
    resets: u64,
    reported: u64,
    last_reason: String,
    generation: u64,
    closed: bool,
    unsent: Unsent,
    resend: Option<Unsent>,
    reader: Option<Waker>,
    writer: Option<Waker>,
}

struct StreamShared {
    inbox: Mutex<Inbox>,
    transparent: bool,
}

impl StreamShared {
    fn inbox(&self) -> MutexGuard<'_, Inbox> {
        self.inbox.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn wake(w: &mut Option<Waker>) {
    if let Some(w) = w.take() {
        w.wake();
    }
}

/// The stream's side of the driver.
struct StreamHandler {
    shared: Arc<StreamShared>,
}

impl Handler for StreamHandler {
    fn on_connect(&mut self, sock: &Socket) {
        let mut inbox = self.shared.inbox();
        inbox.generation = sock.generation();
        // Transparent mode re-queues what never left, before new writes.
        if let Some(unsent) = inbox.resend.take() {
            if let Some(p) = unsent.partial() {
                let _ = sock.send(&p.data);
            }
            for chunk in unsent.chunks() {
                let _ = sock.send(chunk);
            }
        }
        wake(&mut inbox.writer);
    }

    fn on_data(&mut self, sock: &Socket, data: &[u8]) {
        let mut inbox = self.shared.inbox();
        inbox.buffered += data.len();
        inbox.pieces.push_back(Piece::Data(data.to_vec(), 0));
        if inbox.buffered >= STREAM_READ_LIMIT {
            sock.inner.shared.pause_reads(true);
        }
        wake(&mut inbox.reader);
    }

    fn on_reset(&mut self, reset: &Reset) -> Resume {
        let mut inbox = self.shared.inbox();
        if self.shared.transparent {
            inbox.resend = Some(reset.unsent().clone());
        } else {
            inbox.resets += 1;
            let id = inbox.resets;
            let reason = reset.reason().to_string();
            inbox.pieces.push_back(Piece::Reset(id, reason.clone()));
            inbox.last_reason = reason;
            inbox.unsent = reset.unsent().clone();
        }
        wake(&mut inbox.reader);
        wake(&mut inbox.writer);
        Resume::Reconnect
    }

    fn on_close(&mut self, close: &Close) {
        let mut inbox = self.shared.inbox();
        inbox.closed = true;
        if !close.unsent().is_empty() {
            inbox.unsent = close.unsent().clone();
        }
        wake(&mut inbox.reader);
        wake(&mut inbox.writer);
    }
}

type Wait = Pin<Box<dyn Future<Output = ()> + Send + Sync>>;

/// Waits until `done` holds for the send queue, waking on every batch the
/// driver takes or finishes and on every state change. The wake-ups are
/// armed before the check, so none is missed. `once` returns after the
/// first wake-up (the caller checks again itself).
async fn wait_queue(shared: Arc<Shared>, done: fn(&Queue) -> bool, once: bool) {
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

/// The queue takes bytes now.
async fn wait_room(shared: Arc<Shared>) {
    wait_queue(shared, Queue::has_room, true).await
}

/// Everything queued was handed to the kernel, or the connection is down.
async fn wait_drained(shared: Arc<Shared>) {
    wait_queue(shared, |q| !q.accepting || q.is_drained(), false).await
}

/// A managed connection as `AsyncRead + AsyncWrite`.
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
    /// The last write crossed a hand-over mark of the send queue: the next
    /// one yields once, so the connection task can start writing (as
    /// `Connection::write` does).
    yield_next: bool,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("connection", &self.conn)
            .field("transparent", &self.shared.transparent)
            .finish()
    }
}

impl Manager {
    /// A [`Stream`] over a new managed connection. A reset shows as one
    /// `ConnectionReset` error on the next read or write.
    ///
    /// ```no_run
    /// # fn f(cm: redial::Manager) -> Result<(), redial::ConnectError> {
    /// let stream = cm.stream("127.0.0.1:6379", redial::Options::new())?;
    /// # let _ = stream; Ok(()) }
    /// ```
    pub fn stream(&self, endpoint: impl ToEndpoint, opts: Options) -> Result<Stream, ConnectError> {
        self.make_stream(endpoint, opts, false)
    }

    /// A [`Stream`] that hides resets: reads and writes wait across outages
    /// and never fail with `ConnectionReset`.
    ///
    /// What it can lose or duplicate, so choose it only for streams that
    /// tolerate both (logs, metrics): bytes that were in kernel buffers when
    /// a connection died are lost; chunks never handed to the kernel are
    /// sent again on the next connection, the cut one whole, so its first
    /// bytes may arrive twice; the peer sees the stream restart mid-message.
    /// (A stream wrapper that reconnects without saying so, as
    /// `stubborn-io` does, has the same losses without this list.)
    ///
    /// ```no_run
    /// # fn f(cm: redial::Manager) -> Result<(), redial::ConnectError> {
    /// let logs = cm.stream_transparent("127.0.0.1:5140", redial::Options::new())?;
    /// # let _ = logs; Ok(()) }
    /// ```
    pub fn stream_transparent(
        &self,
        endpoint: impl ToEndpoint,
        opts: Options,
    ) -> Result<Stream, ConnectError> {
        self.make_stream(endpoint, opts, true)
    }

    fn make_stream(
        &self,
        endpoint: impl ToEndpoint,
        opts: Options,
        transparent: bool,
    ) -> Result<Stream, ConnectError> {
        let shared = Arc::new(StreamShared {
            inbox: Mutex::new(Inbox::default()),
            transparent,
        });
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
            yield_next: false,
        })
    }
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

    /// The bytes written to the stream that never reached the kernel before
    /// the last reset (or the close), handed back for a resend.
    ///
    /// ```no_run
    /// # fn f(s: &redial::Stream) {
    /// let lost = s.take_unsent();
    /// println!("{} bytes to resend", lost.len());
    /// # }
    /// ```
    pub fn take_unsent(&self) -> Unsent {
        std::mem::take(&mut self.shared.inbox().unsent)
    }

    /// A reset not yet reported: report it now.
    fn take_reset(&self, inbox: &mut Inbox) -> Option<io::Error> {
        if inbox.resets > inbox.reported {
            inbox.reported = inbox.resets;
            return Some(io::Error::new(
                io::ErrorKind::ConnectionReset,
                format!(
                    "connection lost ({}); the next call uses a new connection",
                    inbox.last_reason
                ),
            ));
        }
        None
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
                    inbox.buffered -= n;
                    if inbox.buffered < STREAM_READ_LIMIT / 2 {
                        this.conn.shared.pause_reads(false);
                    }
                    return Poll::Ready(Ok(()));
                }
                Some(Piece::Reset(id, reason)) => {
                    let (id, reason) = (*id, reason.clone());
                    inbox.pieces.pop_front();
                    if id > inbox.reported {
                        inbox.reported = id;
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::ConnectionReset,
                            format!(
                                "connection lost ({reason}); the next call uses a new connection"
                            ),
                        )));
                    }
                    // Already reported to a writer: skip the marker.
                }
                None => {
                    if inbox.closed {
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
        if std::mem::take(&mut this.yield_next) {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        loop {
            {
                let mut inbox = this.shared.inbox();
                if let Some(e) = this.take_reset(&mut inbox) {
                    return Poll::Ready(Err(e));
                }
                if inbox.closed {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::BrokenPipe,
                        "stream closed",
                    )));
                }
                inbox.writer = Some(cx.waker().clone());
            }
            match this.conn.shared.push(None, buf) {
                Ok(p) => {
                    this.yield_next = p.hand_over;
                    return Poll::Ready(Ok(buf.len()));
                }
                Err(Refused::Closed) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::BrokenPipe,
                        "stream closed",
                    )))
                }
                // Full, or down: wait for room or the next connection.
                Err(_) => {
                    let shared = this.conn.shared.clone();
                    if Self::poll_wait(&mut this.write_wait, || Box::pin(wait_room(shared)), cx)
                        .is_pending()
                    {
                        return Poll::Pending;
                    }
                }
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let shared = this.conn.shared.clone();
        if Self::poll_wait(&mut this.flush_wait, || Box::pin(wait_drained(shared)), cx).is_pending()
        {
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
