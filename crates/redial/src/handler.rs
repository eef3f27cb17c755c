//! What the application does on connect, on data, on reset and on close:
//! the [`Handler`] trait, [`Resume`], and a closure builder ([`handler`]).
//!
//! Calls for one connection are never concurrent: the connection's driver
//! task owns its handler and calls it from one place.

use std::fmt;
use std::io;

use crate::handle::socket::Socket;
use crate::reset::{Close, Reset};

/// The entry point [`Resume::With`] runs instead of `on_connect` on the
/// next connect.
pub type Entry = Box<dyn FnOnce(&Socket) + Send>;

/// What to do after a live connection was lost: the value `on_reset`
/// returns.
///
/// ```
/// use redial::{Resume, Socket};
///
/// let resume = Resume::with(|sock: &Socket| {
///     let _ = sock.send("version\r\n"); // re-check the server before new work
/// });
/// assert!(matches!(resume, Resume::With(_)));
/// ```
#[non_exhaustive]
pub enum Resume {
    /// Reconnect (on the backoff schedule) and call `on_connect` again.
    Reconnect,
    /// Reconnect and call this entry instead of `on_connect`, once; later
    /// reconnects call `on_connect` again unless `on_reset` says otherwise.
    /// connman's "hand back a new starting point".
    With(Entry),
    /// Do not reconnect: close for good (`on_close` follows).
    Stop,
}

impl Resume {
    /// [`Resume::With`] from a closure.
    ///
    /// ```
    /// let r = redial::Resume::with(|_sock| {});
    /// # let _ = r;
    /// ```
    pub fn with(entry: impl FnOnce(&Socket) + Send + 'static) -> Self {
        Resume::With(Box::new(entry))
    }
}

/// What to do after a failed connect attempt: the value
/// [`Handler::on_connect_failed`] returns. The default,
/// [`Retry::OnSchedule`], is what redial always did.
///
/// Retrying cannot fix some errors: a certificate the server's name does
/// not match or that no trusted CA signed (feature `tls`: an
/// [`ErrorKind::InvalidData`](std::io::ErrorKind::InvalidData) error whose
/// text starts `TLS handshake:`), a host name that does not exist, a port
/// that is not allowed. Return [`Retry::GiveUp`] for them and the
/// connection closes with [`CloseReason::Terminal`](crate::CloseReason::Terminal),
/// carrying the error, instead of retrying for ever. (An authentication
/// refused after connecting is the protocol's: say [`Resume::Stop`] from
/// `on_reset`, or disconnect from the entry that sent the credentials.)
///
/// ```
/// use std::io::{Error, ErrorKind};
/// use std::time::Duration;
/// use redial::{Handler, Retry, Socket};
///
/// struct Client;
/// impl Handler for Client {
///     fn on_data(&mut self, _: &Socket, _: &[u8]) {}
///     fn on_connect_failed(&mut self, err: &Error, attempt: u32) -> Retry {
///         match err.kind() {
///             ErrorKind::PermissionDenied | ErrorKind::InvalidData => Retry::GiveUp,
///             ErrorKind::ConnectionRefused if attempt > 10 => Retry::After(Duration::from_secs(60)),
///             _ => Retry::OnSchedule,
///         }
///     }
/// }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Retry {
    /// Retry on the backoff schedule (and its give-up limits).
    #[default]
    OnSchedule,
    /// Retry after this delay instead of the schedule's next one (the
    /// schedule still advances, and its give-up limits still apply).
    After(std::time::Duration),
    /// Do not retry: close for good with
    /// [`CloseReason::Terminal`](crate::CloseReason::Terminal) (`on_close`
    /// follows).
    GiveUp,
}

/// A closure that returns nothing, as `on_connect_failed` closures did
/// before [`Retry`]: retry on schedule.
impl From<()> for Retry {
    fn from((): ()) -> Self {
        Retry::OnSchedule
    }
}

impl fmt::Debug for Resume {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resume::Reconnect => f.write_str("Reconnect"),
            Resume::With(_) => f.write_str("With(..)"),
            Resume::Stop => f.write_str("Stop"),
        }
    }
}

/// The application's side of a managed connection.
///
/// Callbacks run on the runtime's worker threads and must not block: a
/// blocked worker stalls the I/O and timers of other connections (and of
/// the application) until it returns. Hand slow work to a task or a
/// channel.
///
/// Only `on_data` must be written; the others default to doing nothing
/// (and `on_reset` to [`Resume::Reconnect`]). A panic in any method closes
/// this connection with
/// [`CloseReason::HandlerPanicked`](crate::CloseReason::HandlerPanicked) and
/// touches no other.
///
/// ```
/// use redial::{Handler, Reset, Resume, Socket};
///
/// struct Memcache;
/// impl Handler for Memcache {
///     fn on_connect(&mut self, sock: &Socket) {
///         let _ = sock.send("version\r\n");
///     }
///     fn on_data(&mut self, _sock: &Socket, data: &[u8]) {
///         print!("{}", String::from_utf8_lossy(data));
///     }
///     fn on_reset(&mut self, _reset: &Reset) -> Resume {
///         Resume::Reconnect
///     }
/// }
/// ```
pub trait Handler: Send + 'static {
    /// A connection is up. Bytes sent here go out before anything buffered
    /// during the outage.
    fn on_connect(&mut self, sock: &Socket) {
        let _ = sock;
    }

    /// Bytes arrived. `data` is only valid during the call (it lives in a
    /// buffer shared by every connection of the worker thread); copy what
    /// you keep. Reading pauses while this runs.
    fn on_data(&mut self, sock: &Socket, data: &[u8]);

    /// A live connection was lost (never called for a failed attempt, nor
    /// for a local `disconnect`). Return what to do next.
    ///
    /// **The default discards [`Reset::unsent`]**: the bytes that were
    /// queued and never written are counted in
    /// [`Stats::discarded_bytes`](crate::Stats::discarded_bytes) and logged
    /// with `warn!`, and the connection reconnects. Override it to keep
    /// them ([`Reset::take_unsent`] takes them from `&Reset`); bytes an
    /// override leaves in the `Reset` count as handed back, not discarded.
    fn on_reset(&mut self, reset: &Reset) -> Resume {
        reset.discard_unsent();
        Resume::Reconnect
    }

    /// Connect attempt number `attempt` (1-based, counted within the current
    /// failure streak) failed. Return what to do next: by default
    /// ([`Retry::OnSchedule`]) the next attempt follows on the backoff
    /// schedule; [`Retry::GiveUp`] ends the connection on an error that
    /// retrying cannot fix.
    fn on_connect_failed(&mut self, err: &io::Error, attempt: u32) -> Retry {
        let _ = (err, attempt);
        Retry::OnSchedule
    }

    /// No byte was read for the heartbeat interval
    /// ([`Options::heartbeat`](crate::Options::heartbeat)): a good moment to
    /// send the protocol's own ping.
    fn on_idle(&mut self, sock: &Socket) {
        let _ = sock;
    }

    /// The managed connection ended for good. Called exactly once, last:
    /// an awaited disconnect ([`Disconnecting`](crate::Disconnecting))
    /// returns only after it has returned.
    ///
    /// **The default discards [`Close::unsent`]**, counting it in
    /// [`Stats::discarded_bytes`](crate::Stats::discarded_bytes) with a
    /// `warn!`; override it to keep them ([`Close::take_unsent`] takes
    /// them from `&Close`).
    fn on_close(&mut self, close: &Close) {
        close.discard_unsent();
    }
}

type OnSocket = Box<dyn FnMut(&Socket) + Send>;
type OnData = Box<dyn FnMut(&Socket, &[u8]) + Send>;
type OnReset = Box<dyn FnMut(&Reset) -> Resume + Send>;
type OnFailed = Box<dyn FnMut(&io::Error, u32) -> Retry + Send>;
type OnClose = Box<dyn FnMut(&Close) + Send>;

/// A [`Handler`] made of closures; start with [`handler`].
///
/// ```
/// use redial::Resume;
///
/// let h = redial::handler()
///     .on_connect(|sock| { let _ = sock.send("ping\r\n"); })
///     .on_data(|_sock, data| println!("{} bytes", data.len()))
///     .on_reset(|reset| { eprintln!("{}", reset.reason()); Resume::Reconnect });
/// # let _ = h;
/// ```
#[derive(Default)]
pub struct FnHandler {
    connect: Option<OnSocket>,
    data: Option<OnData>,
    reset: Option<OnReset>,
    failed: Option<OnFailed>,
    idle: Option<OnSocket>,
    close: Option<OnClose>,
}

/// Starts a closure-built [`Handler`]; every callback not set does nothing.
///
/// ```
/// let h = redial::handler().on_data(|_sock, data| println!("{data:?}"));
/// # let _ = h;
/// ```
pub fn handler() -> FnHandler {
    FnHandler::default()
}

impl FnHandler {
    /// Sets `on_connect`.
    ///
    /// ```
    /// let h = redial::handler().on_connect(|sock| { let _ = sock.send("hello"); });
    /// # let _ = h;
    /// ```
    #[must_use]
    pub fn on_connect(mut self, f: impl FnMut(&Socket) + Send + 'static) -> Self {
        self.connect = Some(Box::new(f));
        self
    }
    /// Sets `on_data`.
    ///
    /// ```
    /// let h = redial::handler().on_data(|_sock, data| println!("{} bytes", data.len()));
    /// # let _ = h;
    /// ```
    #[must_use]
    pub fn on_data(mut self, f: impl FnMut(&Socket, &[u8]) + Send + 'static) -> Self {
        self.data = Some(Box::new(f));
        self
    }
    /// Sets `on_reset`.
    ///
    /// ```
    /// let h = redial::handler().on_reset(|_reset| redial::Resume::Stop);
    /// # let _ = h;
    /// ```
    #[must_use]
    pub fn on_reset(mut self, f: impl FnMut(&Reset) -> Resume + Send + 'static) -> Self {
        self.reset = Some(Box::new(f));
        self
    }
    /// Sets `on_connect_failed`.
    ///
    /// ```
    /// let h = redial::handler().on_connect_failed(|err, attempt| eprintln!("attempt {attempt}: {err}"));
    /// # let _ = h;
    /// ```
    #[must_use]
    pub fn on_connect_failed<R: Into<Retry>>(
        mut self,
        mut f: impl FnMut(&io::Error, u32) -> R + Send + 'static,
    ) -> Self {
        self.failed = Some(Box::new(move |e, n| f(e, n).into()));
        self
    }
    /// Sets `on_idle`.
    ///
    /// ```
    /// let h = redial::handler().on_idle(|sock| { let _ = sock.send("PING\r\n"); });
    /// # let _ = h;
    /// ```
    #[must_use]
    pub fn on_idle(mut self, f: impl FnMut(&Socket) + Send + 'static) -> Self {
        self.idle = Some(Box::new(f));
        self
    }
    /// Sets `on_close`.
    ///
    /// ```
    /// let h = redial::handler().on_close(|close| eprintln!("closed: {}", close.reason()));
    /// # let _ = h;
    /// ```
    #[must_use]
    pub fn on_close(mut self, f: impl FnMut(&Close) + Send + 'static) -> Self {
        self.close = Some(Box::new(f));
        self
    }
}

impl fmt::Debug for FnHandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnHandler").finish_non_exhaustive()
    }
}

impl Handler for FnHandler {
    fn on_connect(&mut self, sock: &Socket) {
        if let Some(f) = &mut self.connect {
            f(sock)
        }
    }
    fn on_data(&mut self, sock: &Socket, data: &[u8]) {
        if let Some(f) = &mut self.data {
            f(sock, data)
        }
    }
    fn on_reset(&mut self, reset: &Reset) -> Resume {
        match &mut self.reset {
            Some(f) => f(reset),
            None => {
                reset.discard_unsent();
                Resume::Reconnect
            }
        }
    }
    fn on_connect_failed(&mut self, err: &io::Error, attempt: u32) -> Retry {
        match &mut self.failed {
            Some(f) => f(err, attempt),
            None => Retry::OnSchedule,
        }
    }
    fn on_idle(&mut self, sock: &Socket) {
        if let Some(f) = &mut self.idle {
            f(sock)
        }
    }
    fn on_close(&mut self, close: &Close) {
        match &mut self.close {
            Some(f) => f(close),
            None => close.discard_unsent(),
        }
    }
}
