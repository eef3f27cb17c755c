//! [`Sender`]: a sending handle owned by one producer. It gathers sends in
//! a buffer of its own and hands them to the connection in batches, so a
//! producer that sends many small messages pays the shared queue's lock
//! once a batch instead of once a message (the lock is most of a shared
//! handle's per-message cost).

use std::fmt;
use std::sync::Arc;

use crate::error::SendError;
use crate::queue::{Chunks, Refused};
use crate::shared::{Shared, State};

/// A sending handle for one producer, made by
/// [`Connection::sender`](crate::Connection::sender): what
/// [`BufWriter`](std::io::BufWriter) is to a socket.
///
/// `send` and `write` append to the sender's own buffer; the buffer goes to
/// the connection (to its current socket, or to the outage policy while
/// it is down) when it holds [`Sender::BATCH`] bytes, and on
/// [`flush`](Sender::flush). Flush when a message must go out now, for
/// example before waiting for its reply.
///
/// Nothing is lost silently:
/// - bytes the connection refuses at a hand-over come back in the
///   [`SendError`], every byte the sender held, in order;
/// - a sender dropped while holding bytes hands them over, past the send
///   queue's or the outage buffer's limit if need be (by at most what it
///   held, under [`Sender::BATCH`] plus one message). If the connection refuses
///   them (it is closed, or down and rejecting sends), they are discarded:
///   counted in [`Stats::sender_dropped`](crate::Stats::sender_dropped)
///   and [`Stats::discarded_bytes`](crate::Stats::discarded_bytes) and
///   logged with `warn!`, as loudly as the default
///   [`Handler::on_reset`](crate::Handler::on_reset) discards unsent bytes.
///
/// Prefer [`flush`](Sender::flush) before dropping a sender (and a
/// handler that keeps [`Reset::unsent`](crate::Reset::unsent)): a counter
/// tells that bytes were lost, only a returned [`SendError`] or a kept
/// `Unsent` gives them back.
///
/// Bytes sent through other handles ([`Connection::send`](crate::Connection::send),
/// a [`Socket`](crate::Socket)) meanwhile go out before what the sender
/// still holds; flush first to keep an order between them.
///
/// ```no_run
/// # async fn f(conn: redial::Connection) -> Result<(), redial::SendError> {
/// let mut tx = conn.sender();
/// for i in 0..1_000_000u32 {
///     tx.write(i.to_be_bytes()).await?;
/// }
/// tx.flush().await?;
/// # Ok(()) }
/// ```
pub struct Sender {
    shared: Arc<Shared>,
    held: Chunks,
}

impl Sender {
    /// A [`Sender`] hands what it holds to the connection once it holds this
    /// many bytes (and on [`Sender::flush`]), so it never holds more than this
    /// plus one message.
    ///
    /// Value: 64 KiB.
    ///
    /// ```
    /// assert_eq!(redial::Sender::BATCH, 64 * 1024);
    /// ```
    pub const BATCH: usize = 64 * 1024;
}

impl Sender {
    pub(crate) fn new(shared: Arc<Shared>) -> Sender {
        Sender {
            shared,
            held: Chunks::default(),
        }
    }

    /// Appends bytes; hands the batch over, without waiting, once it is
    /// full (or at once, to be refused, when the connection has closed for
    /// good). A refused hand-over returns every byte the sender held. An
    /// empty `data` holds nothing and returns `Ok(())`.
    ///
    /// ```no_run
    /// # fn f(conn: &redial::Connection) -> Result<(), redial::SendError> {
    /// let mut tx = conn.sender();
    /// tx.send("set k 0 0 1\r\nv\r\n")?;
    /// tx.send("get k\r\n")?;
    /// tx.try_flush()?;
    /// # Ok(()) }
    /// ```
    pub fn send(&mut self, data: impl AsRef<[u8]>) -> Result<(), SendError> {
        if self.hold(data.as_ref()) {
            self.try_flush()
        } else {
            Ok(())
        }
    }

    /// Appends bytes; hands the batch over once it is full (or at once, to
    /// be refused, when the connection has closed for good), waiting while
    /// the connection's queue is full. A refused hand-over returns every
    /// byte the sender held. An empty `data` holds nothing and returns
    /// `Ok(())`.
    ///
    /// ```no_run
    /// # async fn f(conn: redial::Connection) -> Result<(), redial::SendError> {
    /// let mut tx = conn.sender();
    /// tx.write(b"PING\r\n").await?;
    /// tx.flush().await?;
    /// # Ok(()) }
    /// ```
    pub async fn write(&mut self, data: impl AsRef<[u8]>) -> Result<(), SendError> {
        if self.hold(data.as_ref()) {
            self.flush().await
        } else {
            Ok(())
        }
    }

    /// Hands over what the sender holds, waiting while the connection's
    /// queue is full and, when the queue then holds 64 KiB or more, until
    /// the connection has taken it (so a sender faster than its socket
    /// does not fill the queue to its limit).
    ///
    /// ```no_run
    /// # async fn f(conn: redial::Connection) -> Result<(), redial::SendError> {
    /// let mut tx = conn.sender();
    /// tx.send("version\r\n")?;
    /// tx.flush().await?;
    /// # Ok(()) }
    /// ```
    pub async fn flush(&mut self) -> Result<(), SendError> {
        if self.held.buf.is_empty() {
            return Ok(());
        }
        match self.shared.push_chunks_wait(&mut self.held).await {
            Ok(p) => {
                // As `Connection::write`: the sender waits for the
                // connection to take this batch before it gathers more.
                if p.hand_over {
                    self.shared.hand_over_turn().await;
                }
                Ok(())
            }
            Err(r) => Err(self.refused(r)),
        }
    }

    /// Hands over what the sender holds without waiting.
    ///
    /// ```no_run
    /// # fn f(conn: &redial::Connection) {
    /// let mut tx = conn.sender();
    /// let _ = tx.send("version\r\n");
    /// if let Err(e) = tx.try_flush() {
    ///     eprintln!("{e}: {} bytes handed back", e.data().len());
    /// }
    /// # }
    /// ```
    pub fn try_flush(&mut self) -> Result<(), SendError> {
        if self.held.buf.is_empty() {
            return Ok(());
        }
        match self.shared.push_chunks(&mut self.held, false) {
            Ok(_) => Ok(()),
            Err(r) => Err(self.refused(r)),
        }
    }

    /// Bytes held and not yet handed to the connection.
    ///
    /// ```no_run
    /// # fn f(conn: &redial::Connection) {
    /// let mut tx = conn.sender();
    /// let _ = tx.send("x");
    /// assert_eq!(tx.held(), 1);
    /// # }
    /// ```
    pub fn held(&self) -> usize {
        self.held.buf.len()
    }

    /// Holds `data`; true when the batch is due for a hand-over: it is
    /// full, or the connection has ended for good, so that a send says so
    /// at once instead of at the next full batch (one plain load; no lock).
    /// An empty `data` is no message: nothing is held or handed over.
    #[inline]
    fn hold(&mut self, data: &[u8]) -> bool {
        if data.is_empty() {
            return false;
        }
        self.held.push(data);
        self.held.buf.len() >= Sender::BATCH || self.shared.state() == State::Closed
    }

    /// Empties the sender into the error for a refused hand-over.
    fn refused(&mut self, r: Refused) -> SendError {
        let data = std::mem::take(&mut self.held.buf);
        self.held.clear();
        self.shared.send_error(r, data)
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        if self.held.buf.is_empty() {
            return;
        }
        let bytes = self.held.buf.len();
        if let Err(r) = self.shared.push_chunks(&mut self.held, true) {
            self.shared.info().seldom_mut().sender_dropped += bytes as u64;
            {
                let mut q = self.shared.queue();
                q.ledger.discard_refused(bytes);
                q.check();
            }
            #[cfg(feature = "metrics")]
            self.shared.metrics.discarded(bytes as u64);
            tracing::warn!(
                connection = self.shared.id,
                endpoint = %self.shared.endpoint,
                bytes,
                refused = ?r,
                "bytes discarded: a dropped Sender held bytes the connection refused (Stats::discarded_bytes)"
            );
        }
    }
}

impl fmt::Debug for Sender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("connection", &self.shared.id)
            .field("held", &self.held.buf.len())
            .finish()
    }
}
