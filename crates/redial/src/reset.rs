//! What the application is told when a connection is lost ([`Reset`]) or
//! ends for good ([`Close`]), including every byte that was accepted and
//! never handed to the kernel ([`Unsent`]).

use std::fmt;
use std::io;
use std::time::Duration;

/// Why a live connection was lost.
///
/// A local `disconnect` is never a reset: it ends in [`Close`] with
/// [`CloseReason::Disconnected`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResetReason {
    /// The peer closed its side (FIN, read returned end of stream).
    PeerClosed,
    /// The peer reset the connection (RST).
    PeerReset,
    /// The kernel gave up on the peer: keepalive probes or TCP_USER_TIMEOUT.
    TimedOut,
    /// No byte was read for the configured idle timeout.
    IdleTimeout,
    /// Another I/O error.
    Io {
        /// The error's kind.
        kind: io::ErrorKind,
        /// The error's message.
        message: String,
    },
}

impl ResetReason {
    pub(crate) fn from_io(err: &io::Error) -> Self {
        use io::ErrorKind as K;
        match err.kind() {
            K::ConnectionReset | K::ConnectionAborted => ResetReason::PeerReset,
            K::BrokenPipe | K::UnexpectedEof => ResetReason::PeerClosed,
            K::TimedOut => ResetReason::TimedOut,
            kind => ResetReason::Io {
                kind,
                message: err.to_string(),
            },
        }
    }
}

impl fmt::Display for ResetReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResetReason::PeerClosed => f.write_str("peer closed the connection"),
            ResetReason::PeerReset => f.write_str("peer reset the connection"),
            ResetReason::TimedOut => f.write_str("peer timed out (keepalive or user timeout)"),
            ResetReason::IdleTimeout => f.write_str("idle timeout: nothing read"),
            ResetReason::Io { message, .. } => write!(f, "i/o error: {message}"),
        }
    }
}

/// A chunk (the bytes of one `send` call) that was partly written to the
/// kernel when the connection was lost. It is reported, never re-sent: the
/// peer may have received its first `written` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partial {
    /// The whole chunk as it was sent.
    pub data: Vec<u8>,
    /// How many of its bytes the kernel accepted.
    pub written: usize,
}

/// Bytes that were accepted by `send` but never handed to the kernel, kept
/// as the chunks they were sent in.
///
/// ```
/// let u = redial::Unsent::default();
/// assert!(u.is_empty());
/// assert_eq!(u.chunks().count(), 0);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unsent {
    pub(crate) partial: Option<Partial>,
    pub(crate) data: Vec<u8>,
    /// End offset of each chunk in `data`.
    pub(crate) ends: Vec<usize>,
}

impl Unsent {
    /// No bytes were left unsent (and no chunk was cut).
    ///
    /// ```
    /// assert!(redial::Unsent::default().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.partial.is_none() && self.data.is_empty()
    }

    /// Bytes in whole unsent chunks (the partial chunk not counted).
    ///
    /// ```
    /// assert_eq!(redial::Unsent::default().len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// The chunk that was cut by the loss, if any.
    ///
    /// ```
    /// assert!(redial::Unsent::default().partial().is_none());
    /// ```
    pub fn partial(&self) -> Option<&Partial> {
        self.partial.as_ref()
    }

    /// The whole unsent chunks, oldest first, one per `send` call.
    ///
    /// ```
    /// for chunk in redial::Unsent::default().chunks() {
    ///     println!("{} bytes were not sent", chunk.len());
    /// }
    /// ```
    pub fn chunks(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let c = &self.data[start..end];
            start = end;
            c
        })
    }

    /// The whole unsent chunks as one contiguous run of bytes, in order.
    ///
    /// ```
    /// assert!(redial::Unsent::default().bytes().is_empty());
    /// ```
    pub fn bytes(&self) -> &[u8] {
        &self.data
    }

    pub(crate) fn append(&mut self, data: &[u8], ends: &[usize]) {
        crate::shared::append_chunks(&mut self.data, &mut self.ends, data, ends);
    }
}

/// A live connection was lost. Given to
/// [`Handler::on_reset`](crate::Handler::on_reset).
///
/// ```
/// use redial::{Handler, Reset, Resume, Socket};
///
/// struct App;
/// impl Handler for App {
///     fn on_data(&mut self, _: &Socket, _: &[u8]) {}
///     fn on_reset(&mut self, reset: &Reset) -> Resume {
///         eprintln!("lost after {:?}: {} ({} bytes unsent)", reset.uptime(), reset.reason(), reset.unsent().len());
///         Resume::Reconnect
///     }
/// }
/// ```
#[derive(Debug)]
pub struct Reset {
    pub(crate) reason: ResetReason,
    pub(crate) uptime: Duration,
    pub(crate) unsent: Unsent,
    pub(crate) generation: u64,
    pub(crate) written: u64,
}

impl Reset {
    /// Why the connection was lost.
    ///
    /// ```no_run
    /// # fn f(reset: &redial::Reset) {
    /// if *reset.reason() == redial::ResetReason::IdleTimeout { /* the peer went silent */ }
    /// # }
    /// ```
    pub fn reason(&self) -> &ResetReason {
        &self.reason
    }
    /// How long the connection had been up.
    ///
    /// ```no_run
    /// # fn f(reset: &redial::Reset) {
    /// println!("it was up for {:?}", reset.uptime());
    /// # }
    /// ```
    pub fn uptime(&self) -> Duration {
        self.uptime
    }
    /// Bytes queued and never handed to the kernel, handed back.
    ///
    /// ```no_run
    /// # fn f(reset: &redial::Reset) {
    /// for chunk in reset.unsent().chunks() { println!("{} bytes never sent", chunk.len()); }
    /// # }
    /// ```
    pub fn unsent(&self) -> &Unsent {
        &self.unsent
    }
    /// Takes the unsent bytes (for a resend after reconnecting).
    ///
    /// ```no_run
    /// # fn f(mut reset: redial::Reset) {
    /// let unsent = reset.take_unsent();
    /// # let _ = unsent;
    /// # }
    /// ```
    pub fn take_unsent(&mut self) -> Unsent {
        std::mem::take(&mut self.unsent)
    }
    /// Which connection of this managed connection was lost (1 for the first).
    ///
    /// ```no_run
    /// # fn f(reset: &redial::Reset) {
    /// println!("connection #{} was lost", reset.generation());
    /// # }
    /// ```
    pub fn generation(&self) -> u64 {
        self.generation
    }
    /// Bytes of this connection that were handed to the kernel (the written
    /// part of a [`Partial`] chunk included). TCP delivers a prefix of them
    /// to the peer; whatever sat in kernel buffers when the connection died
    /// is lost with it, and only the peer (an application-level
    /// acknowledgement) can say how much arrived. Compare with what the peer
    /// confirmed to find the frames that need a resend.
    ///
    /// ```no_run
    /// # fn f(reset: &redial::Reset) {
    /// println!("{} bytes reached the kernel", reset.written());
    /// # }
    /// ```
    pub fn written(&self) -> u64 {
        self.written
    }
}

/// Why a managed connection ended for good.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The application called `disconnect` (after flushing what it could).
    Disconnected,
    /// The application called `abort`: closed at once with RST.
    Aborted,
    /// `on_reset` returned [`Resume::Stop`](crate::Resume::Stop).
    Stopped,
    /// The give-up policy tripped: too many failed attempts, or the time
    /// budget of the failure streak ran out.
    GaveUp {
        /// Failed attempts in the last streak.
        attempts: u32,
        /// Time since the streak began.
        elapsed: Duration,
    },
    /// More than the allowed number of connections were lost within the
    /// restart-intensity period.
    RestartIntensity {
        /// Resets counted in the period.
        resets: u32,
        /// The period.
        within: Duration,
    },
    /// A handler callback panicked; the connection was closed so the panic
    /// touches nothing else.
    HandlerPanicked {
        /// Which callback.
        callback: &'static str,
        /// The panic message, when it was a string.
        message: String,
    },
    /// The runtime the connection ran on shut down: the manager had a
    /// runtime of its own and it and every handle of its connections were
    /// dropped, or the application's runtime ended.
    Shutdown,
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::Disconnected => f.write_str("disconnected by the application"),
            CloseReason::Aborted => f.write_str("aborted by the application"),
            CloseReason::Stopped => f.write_str("on_reset returned Stop"),
            CloseReason::GaveUp { attempts, elapsed } => {
                write!(
                    f,
                    "gave up after {attempts} failed attempts in {elapsed:.2?}"
                )
            }
            CloseReason::RestartIntensity { resets, within } => {
                write!(
                    f,
                    "{resets} resets within {within:?}: restart intensity exceeded"
                )
            }
            CloseReason::HandlerPanicked { callback, message } => {
                write!(f, "handler panicked in {callback}: {message}")
            }
            CloseReason::Shutdown => f.write_str(
                "the runtime shut down (the manager and every handle of its connections were dropped, or the application's runtime ended)",
            ),
        }
    }
}

/// A managed connection ended for good. Given to
/// [`Handler::on_close`](crate::Handler::on_close), exactly once and last.
///
/// ```
/// use redial::{Close, Handler, Socket};
///
/// struct App;
/// impl Handler for App {
///     fn on_data(&mut self, _: &Socket, _: &[u8]) {}
///     fn on_close(&mut self, close: &Close) {
///         eprintln!("closed: {} ({} bytes unsent)", close.reason(), close.unsent().len());
///     }
/// }
/// ```
#[derive(Debug)]
pub struct Close {
    pub(crate) reason: CloseReason,
    pub(crate) unsent: Unsent,
}

impl Close {
    /// Why it ended.
    ///
    /// ```no_run
    /// # fn f(close: &redial::Close) {
    /// println!("closed: {}", close.reason());
    /// # }
    /// ```
    pub fn reason(&self) -> &CloseReason {
        &self.reason
    }
    /// Bytes accepted and never handed to the kernel (the disconnect's
    /// grace period ran out, the connection was aborted, or bytes were
    /// buffered during an outage that never ended).
    ///
    /// ```no_run
    /// # fn f(close: &redial::Close) {
    /// println!("{} bytes were never sent", close.unsent().len());
    /// # }
    /// ```
    pub fn unsent(&self) -> &Unsent {
        &self.unsent
    }
    /// Takes the unsent bytes.
    ///
    /// ```no_run
    /// # fn f(mut close: redial::Close) {
    /// let unsent = close.take_unsent();
    /// # let _ = unsent;
    /// # }
    /// ```
    pub fn take_unsent(&mut self) -> Unsent {
        std::mem::take(&mut self.unsent)
    }
}
