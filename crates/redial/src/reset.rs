//! What the application is told when a connection is lost ([`Reset`]) or
//! ends for good ([`Close`]), including every byte that was accepted and
//! never handed to the kernel ([`Unsent`]).

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
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
///
/// Its `Debug` shows sizes, never the bytes (a chunk may be megabytes, or
/// hold a secret): `Partial { bytes: 10, written: 4 }`.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Partial {
    /// The whole chunk as it was sent.
    pub data: Vec<u8>,
    /// How many of its bytes the kernel accepted.
    pub written: usize,
}

/// Bytes that were accepted by `send` but never handed to the kernel, kept
/// as the chunks they were sent in.
///
/// Its `Debug` shows how many bytes and chunks, never the bytes themselves
/// (they may be megabytes, or hold a secret), so a logged [`Reset`] stays
/// one short line.
///
/// ```
/// let u = redial::Unsent::default();
/// assert!(u.is_empty());
/// assert_eq!(u.chunks().count(), 0);
/// assert_eq!(format!("{u:?}"), "Unsent { bytes: 0, chunks: 0, partial: None }");
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Unsent {
    pub(crate) partial: Option<Partial>,
    /// Shared, so that taking the bytes from a `&Reset` (or cloning them)
    /// does not copy them.
    pub(crate) data: Arc<Vec<u8>>,
    /// End offset of each chunk in `data`.
    pub(crate) ends: Arc<Vec<usize>>,
}

impl fmt::Debug for Partial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Partial")
            .field("bytes", &self.data.len())
            .field("written", &self.written)
            .finish()
    }
}

impl fmt::Debug for Unsent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Unsent")
            .field("bytes", &self.data.len())
            .field("chunks", &self.ends.len())
            .field("partial", &self.partial)
            .finish()
    }
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

    /// Appends the chunks `data` (ending at `ends`, offsets into `data`),
    /// shifting their offsets: the chunks stay whole.
    pub(crate) fn append(&mut self, data: &[u8], ends: &[usize]) {
        self.append_ends(data, ends.iter().copied());
    }

    /// [`Unsent::append`], the ends given one by one.
    pub(crate) fn append_ends(&mut self, data: &[u8], ends: impl IntoIterator<Item = usize>) {
        let buf = Arc::make_mut(&mut self.data);
        let base = buf.len();
        buf.extend_from_slice(data);
        Arc::make_mut(&mut self.ends).extend(ends.into_iter().map(|e| e + base));
    }

    /// Bytes never handed to the kernel: the whole chunks and the unwritten
    /// tail of the partial one (what the ledger counts as handed back).
    pub(crate) fn unwritten(&self) -> u64 {
        let tail = self
            .partial
            .as_ref()
            .map_or(0, |p| p.data.len().saturating_sub(p.written));
        (self.data.len() + tail) as u64
    }
}

/// The kernel's figures for one TCP socket, in bytes on the wire (under
/// TLS they count records, not the application's bytes). Plain numbers:
/// the driver's `kernel.rs` reads them from the socket, the types here
/// only carry them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct TcpCounts {
    /// Bytes the peer's TCP acknowledged (`tcpi_bytes_acked` less the SYN
    /// of a connection this side opened; an acknowledged FIN still adds
    /// one).
    pub(crate) acked: u64,
    /// Bytes written to the kernel and not yet acknowledged, sent or not
    /// (`SIOCOUTQ`).
    pub(crate) unacked: u64,
    /// Of those, bytes the kernel never sent (`tcpi_notsent_bytes`).
    pub(crate) not_sent: u64,
}

/// What is known of the bytes one connection wrote: redial's own count and
/// the kernel's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Evidence {
    /// Bytes handed to the kernel (to the TLS layer under TLS).
    pub(crate) written: u64,
    /// The kernel's counts, read before the descriptor was closed.
    pub(crate) kernel: Option<TcpCounts>,
}

impl Evidence {
    pub(crate) fn acked(&self) -> Option<u64> {
        self.kernel.map(|k| k.acked.min(self.written))
    }
    pub(crate) fn unacked(&self) -> Option<u64> {
        self.kernel.map(|k| k.unacked.min(self.written))
    }
}

/// The unsent bytes of a [`Reset`] or [`Close`]: a callback that gets only
/// `&Reset` can still take them (the bytes are shared, not copied), and
/// redial knows afterwards whether anyone did.
#[derive(Debug, Default)]
pub(crate) struct Handed {
    unsent: Unsent,
    /// Someone took them: nothing counts as discarded.
    taken: AtomicBool,
    /// The default handler did not want them: unless taken, they are
    /// counted as discarded after the callback.
    dropped: AtomicBool,
}

impl Handed {
    pub(crate) fn new(unsent: Unsent) -> Self {
        Handed {
            unsent,
            taken: AtomicBool::new(false),
            dropped: AtomicBool::new(false),
        }
    }
    pub(crate) fn take(&self) -> Unsent {
        self.taken.store(true, Ordering::Relaxed);
        self.unsent.clone()
    }
    pub(crate) fn drop_unsent(&self) {
        self.dropped.store(true, Ordering::Relaxed);
    }
    /// After the callback: what a handler that did not want the bytes left
    /// behind (nothing when someone took them).
    pub(crate) fn discarded(&self) -> Option<&Unsent> {
        let dropped = self.dropped.load(Ordering::Relaxed) && !self.taken.load(Ordering::Relaxed);
        Some(&self.unsent).filter(|u| dropped && !u.is_empty())
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
    pub(crate) unsent: Handed,
    pub(crate) generation: u64,
    pub(crate) evidence: Evidence,
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
        &self.unsent.unsent
    }
    /// Takes the unsent bytes (for a resend after reconnecting), from
    /// inside `on_reset` too: it needs only `&Reset`, and shares the bytes
    /// rather than copying them (only a cut chunk's are copied). Taken
    /// bytes are never counted as discarded; [`unsent`](Reset::unsent)
    /// still shows them.
    ///
    /// ```no_run
    /// # fn f(reset: &redial::Reset) {
    /// let unsent = reset.take_unsent();
    /// # let _ = unsent;
    /// # }
    /// ```
    pub fn take_unsent(&self) -> Unsent {
        self.unsent.take()
    }
    /// What the default `on_reset` does: drops the unsent bytes, which are
    /// then counted in [`Stats::discarded_bytes`](crate::Stats::discarded_bytes)
    /// and logged as a warning.
    pub(crate) fn discard_unsent(&self) {
        self.unsent.drop_unsent();
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
    /// Under TLS it counts the bytes the TLS layer accepted: they are
    /// encrypted into records that reach the kernel with its next writes,
    /// so up to one write's worth (the TLS layer's buffer, 64 KiB) may not
    /// have reached the kernel when the connection died, and
    /// [`acked`](Reset::acked) is `None` (the kernel counts records).
    ///
    /// ```no_run
    /// # fn f(reset: &redial::Reset) {
    /// println!("{} bytes reached the kernel", reset.written());
    /// # }
    /// ```
    pub fn written(&self) -> u64 {
        self.evidence.written
    }
    /// Of [`written`](Reset::written), the bytes the peer's TCP
    /// acknowledged, as the kernel counted them just before the descriptor
    /// was closed: they reached the peer's kernel (whether the peer
    /// application read them before it went away, only the peer can say).
    /// `written - acked` bytes were lost with the connection.
    ///
    /// `None` where the kernel does not tell: on platforms other than
    /// Linux, for Unix sockets, and under TLS (the kernel counts TLS
    /// records there, which cannot be compared with the bytes sent).
    ///
    /// ```no_run
    /// # fn f(reset: &redial::Reset) {
    /// if let Some(acked) = reset.acked() {
    ///     println!("{} bytes written, {acked} acknowledged", reset.written());
    /// }
    /// # }
    /// ```
    pub fn acked(&self) -> Option<u64> {
        self.evidence.acked()
    }
    /// Of [`written`](Reset::written), the bytes the kernel still held,
    /// unacknowledged, when the connection was lost (`SIOCOUTQ`): the
    /// kernel's own figure, so `acked + unacked == written` is a check that
    /// does not rest on redial's counters. `None` where
    /// [`acked`](Reset::acked) is.
    ///
    /// ```no_run
    /// # fn f(reset: &redial::Reset) {
    /// println!("{:?} bytes died in the kernel's send buffer", reset.unacked());
    /// # }
    /// ```
    pub fn unacked(&self) -> Option<u64> {
        self.evidence.unacked()
    }
}

/// Why a managed connection ended for good.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The application called `disconnect` (after flushing what it could).
    Disconnected,
    /// The application called `disconnect`, and the grace period
    /// ([`Options::close_grace`](crate::Options::close_grace)) ran out
    /// before everything was written and acknowledged: the connection was
    /// reset. What was never written is in [`Close::unsent`]; of what was
    /// written, `destroyed` bytes were still unacknowledged in the kernel
    /// and died with the reset (`None` where the kernel does not tell, see
    /// [`Reset::acked`]).
    GraceExpired {
        /// Written bytes the peer's TCP had not acknowledged when the
        /// reset was sent: lost, save the few the peer's kernel may have
        /// received and not yet acknowledged (a delayed acknowledgement).
        destroyed: Option<u64>,
    },
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
    /// [`Handler::on_connect_failed`](crate::Handler::on_connect_failed)
    /// returned [`Retry::GiveUp`](crate::Retry::GiveUp): the error of this
    /// attempt is one retrying cannot fix.
    Terminal {
        /// The attempt that failed (1-based, within the failure streak).
        attempt: u32,
        /// The error's kind.
        kind: std::io::ErrorKind,
        /// The error, as text.
        error: String,
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
            CloseReason::GraceExpired {
                destroyed: Some(n),
            } => write!(
                f,
                "disconnect's grace period ran out: reset, destroying {n} written bytes the peer had not acknowledged"
            ),
            CloseReason::GraceExpired { destroyed: None } => {
                f.write_str("disconnect's grace period ran out: reset, with written bytes possibly unacknowledged")
            }
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
            CloseReason::Terminal { attempt, error, .. } => {
                write!(f, "gave up on attempt {attempt}: {error} (on_connect_failed said retrying cannot fix it)")
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
    pub(crate) unsent: Handed,
    /// Of the connection that was live when it ended, if one was.
    pub(crate) evidence: Option<Evidence>,
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
        &self.unsent.unsent
    }
    /// Takes the unsent bytes, from inside `on_close` too: it needs only
    /// `&Close`, and shares the bytes rather than copying them. Taken bytes
    /// are never counted as discarded.
    ///
    /// ```no_run
    /// # fn f(close: &redial::Close) {
    /// let unsent = close.take_unsent();
    /// # let _ = unsent;
    /// # }
    /// ```
    pub fn take_unsent(&self) -> Unsent {
        self.unsent.take()
    }
    /// What the default `on_close` does: drops the unsent bytes, which are
    /// then counted in [`Stats::discarded_bytes`](crate::Stats::discarded_bytes)
    /// and logged as a warning.
    pub(crate) fn discard_unsent(&self) {
        self.unsent.drop_unsent();
    }
    /// Bytes the last live connection handed to the kernel (to the TLS
    /// layer under TLS), when the managed connection ended while connected
    /// (`disconnect`, `abort`, a panicking callback); `None` otherwise.
    ///
    /// ```no_run
    /// # fn f(close: &redial::Close) {
    /// println!("{:?} bytes written on the last connection", close.written());
    /// # }
    /// ```
    pub fn written(&self) -> Option<u64> {
        self.evidence.map(|e| e.written)
    }
    /// Of [`written`](Close::written), the bytes the peer's TCP
    /// acknowledged, as the kernel counted them just before the descriptor
    /// was closed. After a clean `disconnect` it is all of them; after
    /// [`CloseReason::GraceExpired`] or an abort, the rest died with the
    /// reset. `None` when it ended while not connected, and where
    /// [`Reset::acked`] is.
    ///
    /// ```no_run
    /// # fn f(close: &redial::Close) {
    /// println!("{:?} bytes acknowledged", close.acked());
    /// # }
    /// ```
    pub fn acked(&self) -> Option<u64> {
        self.evidence.and_then(|e| e.acked())
    }
    /// Of [`written`](Close::written), the bytes the kernel still held,
    /// unacknowledged, just before the descriptor was closed. `None` where
    /// [`acked`](Close::acked) is.
    ///
    /// ```no_run
    /// # fn f(close: &redial::Close) {
    /// println!("{:?} bytes unacknowledged", close.unacked());
    /// # }
    /// ```
    pub fn unacked(&self) -> Option<u64> {
        self.evidence.and_then(|e| e.unacked())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reset_with(bytes: &[u8]) -> Reset {
        let mut u = Unsent::default();
        u.append(bytes, &[bytes.len()]);
        Reset {
            reason: ResetReason::PeerReset,
            uptime: Duration::ZERO,
            unsent: Handed::new(u),
            generation: 1,
            evidence: Evidence::default(),
        }
    }

    #[test]
    fn debug_shows_sizes_never_the_bytes() {
        let secret = b"password=hunter2".repeat(65_536); // 1 MiB
        let mut u = Unsent::default();
        u.append(&secret, &[secret.len() / 2, secret.len()]);
        u.partial = Some(Partial {
            data: secret.clone(),
            written: 3,
        });
        let shown = format!("{u:?}");
        assert_eq!(
            shown,
            "Unsent { bytes: 1048576, chunks: 2, partial: Some(Partial { bytes: 1048576, written: 3 }) }"
        );
        let r = reset_with(&secret);
        let shown = format!("{r:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("bytes: 1048576, chunks: 1"), "{shown}");
        assert!(shown.len() < 1024, "{} bytes of Debug", shown.len());
    }

    #[test]
    fn taking_shares_the_bytes_and_leaves_them_in_view() {
        let r = reset_with(b"abc");
        let view = r.unsent();
        let taken = r.take_unsent();
        assert_eq!(taken.bytes(), b"abc");
        assert!(Arc::ptr_eq(&taken.data, &view.data), "not copied");
        r.discard_unsent();
        assert!(r.unsent.discarded().is_none(), "taken: nothing discarded");
    }

    #[test]
    fn only_what_nobody_took_is_discarded() {
        let r = reset_with(b"abcd");
        r.discard_unsent();
        assert_eq!(r.unsent.discarded().map(|u| u.unwritten()), Some(4));
        let r = reset_with(b"abcd");
        assert_eq!(r.take_unsent().len(), 4);
        r.discard_unsent();
        assert!(r.unsent.discarded().is_none());
        let kept = reset_with(b"abcd");
        assert!(
            kept.unsent.discarded().is_none(),
            "a handler that only looked keeps them"
        );
    }
}
