//! The typed errors inside the `io::Error`s a [`Stream`](super::Stream)
//! returns: a lost connection ([`StreamReset`]), a write refused while the
//! connection is down, and a closed stream, with what happened to the
//! bytes in each case.

use std::io;
use std::time::Duration;

use crate::reset::{CloseReason, ResetReason};
use crate::shared::State;

/// Why a [`Stream`](crate::Stream) read, write or flush failed: the inner
/// error of every `io::Error` the stream returns. Reach it with
/// [`StreamError::of`] (or `get_ref()` / `into_inner()` and `downcast`).
///
/// ```no_run
/// use redial::StreamError;
/// use tokio::io::AsyncWriteExt;
///
/// # async fn f(mut stream: redial::Stream) -> std::io::Result<()> {
/// match stream.write_all(b"PING\r\n").await {
///     Ok(()) => {}
///     Err(e) => match StreamError::of(&e) {
///         Some(StreamError::Reset(lost)) => {
///             eprintln!(
///                 "connection #{} lost ({}): {} bytes to resend",
///                 lost.generation, lost.reason, lost.unsent_bytes
///             );
///             for unsent in stream.take_unsent() {
///                 let _ = unsent; // resend, or report
///             }
///         }
///         _ => return Err(e),
///     },
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// A connection was lost (`io::ErrorKind::ConnectionReset`); the next
    /// call uses the next connection.
    #[error(transparent)]
    Reset(StreamReset),
    /// A write found the connection down and waited the outage wait
    /// ([`Stream::set_outage_wait`](crate::Stream::set_outage_wait)) for
    /// the next one in vain (`io::ErrorKind::NotConnected`). Its bytes were
    /// not taken; the connection keeps trying.
    #[error(
        "not connected: the connection has been down ({state}) for the {waited:?} a write waits{}{}",
        if *.outage_buffer_full { "; the outage buffer is full" } else { "" },
        .last_error.as_ref().map(|e| format!("; last error: {e}")).unwrap_or_default()
    )]
    Down {
        /// How long the write waited.
        waited: Duration,
        /// The connection's state when the write gave up.
        state: State,
        /// The write was refused by a full outage buffer
        /// ([`Outage::Buffer`](crate::Outage::Buffer)), not by the
        /// default policy.
        outage_buffer_full: bool,
        /// The last connect or I/O error, as text.
        last_error: Option<String>,
    },
    /// The stream is closed for good (`io::ErrorKind::BrokenPipe`): shut
    /// down, aborted, or its connection gave up.
    #[error("stream closed: {}", closed_reason(.reason))]
    Closed {
        /// Why it closed (`None` while the close is still under way).
        reason: Option<CloseReason>,
    },
}

fn closed_reason(reason: &Option<CloseReason>) -> String {
    match reason {
        Some(r) => r.to_string(),
        None => "closing".to_string(),
    }
}

impl StreamError {
    /// The stream's error inside an `io::Error` from a [`Stream`](crate::Stream),
    /// if it is one.
    ///
    /// ```
    /// let e = std::io::Error::other("not from a stream");
    /// assert!(redial::StreamError::of(&e).is_none());
    /// ```
    pub fn of(err: &io::Error) -> Option<&StreamError> {
        err.get_ref()?.downcast_ref::<StreamError>()
    }

    /// The `io::ErrorKind` the stream returns this error with.
    ///
    /// ```
    /// let e = redial::StreamError::Closed { reason: None };
    /// assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe);
    /// ```
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            StreamError::Reset(_) => io::ErrorKind::ConnectionReset,
            StreamError::Down { .. } => io::ErrorKind::NotConnected,
            StreamError::Closed { .. } => io::ErrorKind::BrokenPipe,
        }
    }
}

impl From<StreamError> for io::Error {
    fn from(e: StreamError) -> io::Error {
        io::Error::new(e.kind(), e)
    }
}

/// One lost connection of a [`Stream`](crate::Stream), as its
/// `ConnectionReset` error reports it: every loss is one error, in order.
///
/// Of the bytes written to the stream for this connection, `written`
/// reached its kernel (`acked` of them reached the peer's, where the kernel
/// tells; whether the peer application read them, only the peer can say)
/// and `unsent_bytes` never did: [`Stream::take_unsent`](crate::Stream::take_unsent)
/// hands those back. `unread_dropped` counts the bytes read from it that the
/// reader never took: a write or flush heard of the loss first, and they
/// were dropped rather than handed out before the next connection's.
///
/// ```
/// # fn f(err: &std::io::Error) {
/// if let Some(redial::StreamError::Reset(lost)) = redial::StreamError::of(err) {
///     println!("#{} lost after {:?}: {}", lost.generation, lost.uptime, lost.reason);
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
#[error(
    "connection lost ({reason}): #{generation} after {uptime:.2?}, {written} bytes written to \
     the kernel{}, {unsent_bytes} never sent (take_unsent has them), {unread_dropped} unread \
     bytes dropped; the next call uses a new connection",
    acked.map(|a| format!(" ({a} acknowledged by the peer)")).unwrap_or_default()
)]
pub struct StreamReset {
    /// Why the connection was lost.
    pub reason: ResetReason,
    /// Which connection it was (1 for the first).
    pub generation: u64,
    /// How long it had been up.
    pub uptime: Duration,
    /// Bytes of this connection handed to its kernel.
    pub written: u64,
    /// Of `written`, the bytes the peer's TCP acknowledged, as the kernel
    /// counted them when the connection was lost; `None` where the kernel
    /// does not tell ([`Reset::acked`](crate::Reset::acked) says where).
    pub acked: Option<u64>,
    /// Of `written`, the bytes the kernel still held unacknowledged
    /// ([`Reset::unacked`](crate::Reset::unacked)).
    pub unacked: Option<u64>,
    /// Bytes written to the stream for this connection that never reached
    /// the kernel (the unwritten tail of a cut chunk included), handed back
    /// by `take_unsent`.
    pub unsent_bytes: usize,
    /// Bytes read from this connection and dropped unread.
    pub unread_dropped: usize,
}
