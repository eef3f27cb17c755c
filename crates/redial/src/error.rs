//! Errors, one enum per concern: building options, starting a connection,
//! naming a pool, queueing bytes, and waiting for a connection from
//! synchronous code.

use std::fmt;
use std::time::Duration;

use crate::endpoint::EndpointError;
use crate::reset::CloseReason;

/// An option was given a value it cannot take.
///
/// ```
/// use redial::Options;
/// use std::time::Duration;
///
/// let cm = redial::Manager::new();
/// let err = cm
///     .connect_with("127.0.0.1:9", redial::handler(), Options::new().connect_timeout(Duration::ZERO))
///     .unwrap_err();
/// assert!(err.to_string().contains("connect_timeout"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid option {option}: {problem}")]
pub struct OptionsError {
    option: &'static str,
    problem: String,
}

impl OptionsError {
    pub(crate) fn invalid(option: &'static str, problem: impl Into<String>) -> Self {
        OptionsError {
            option,
            problem: problem.into(),
        }
    }

    /// The name of the option at fault.
    ///
    /// ```
    /// let e = redial::Backoff::new(std::time::Duration::ZERO, 0.0, std::time::Duration::ZERO).unwrap_err();
    /// assert_eq!(e.option(), "backoff multiplier");
    /// ```
    pub fn option(&self) -> &'static str {
        self.option
    }
}

/// Why a connection could not be started. Failed connect *attempts* are
/// not errors here: they are retried and reported through
/// [`Handler::on_connect_failed`](crate::Handler::on_connect_failed).
///
/// ```
/// let cm = redial::Manager::new();
/// let err = cm.connect("no-port-here", redial::handler()).unwrap_err();
/// assert!(matches!(err, redial::ConnectError::Endpoint(_)));
/// assert!(err.to_string().contains("no-port-here"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The endpoint could not be parsed.
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    /// An option is out of range.
    #[error(transparent)]
    Options(#[from] OptionsError),
    /// The pool was disconnected and takes no new members.
    #[error("pool {pool:?} is disconnected and takes no new connections")]
    PoolClosed {
        /// The pool's name.
        pool: String,
    },
    /// The manager's runtime has shut down.
    #[error("the connection manager has shut down")]
    ManagerClosed,
}

/// Why a pool could not be created.
///
/// ```
/// let cm = redial::Manager::new();
/// cm.create_pool("cache")?;
/// let err = cm.create_pool("cache").unwrap_err();
/// assert_eq!(err.to_string(), "a pool named \"cache\" already exists");
/// # Ok::<(), redial::PoolError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// Another pool has this name.
    #[error("a pool named {name:?} already exists")]
    NameTaken {
        /// The name asked for.
        name: String,
    },
    /// The empty string names no pool.
    #[error("a pool name cannot be empty")]
    EmptyName,
    /// [`Manager::create_pool_following`](crate::Manager::create_pool_following)
    /// was given what it cannot follow (not `host:port`, or bad options).
    #[error("cannot follow {target:?}: {reason}")]
    CannotFollow {
        /// The target as given.
        target: String,
        /// Why.
        reason: String,
    },
}

/// Bytes that were not queued, handed back whole with the reason.
///
/// Nothing is dropped silently: whatever `send` refuses comes back here, and
/// [`SendError::into_data`] returns it for a retry or a report. Each variant
/// names one cause, so a message never blames the wrong one; its `Debug`
/// shows how many bytes were refused and their first few, never the whole
/// payload.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let cm = redial::Manager::new();
/// // Nothing listens on port 9 (discard) here: the connection is down.
/// let conn = cm.connect("127.0.0.1:9", redial::handler()).unwrap();
/// let err = conn.send(b"hello").unwrap_err();
/// assert_eq!(err.data(), b"hello");
/// assert!(matches!(err, redial::SendError::NotConnected { .. }));
///
/// conn.disconnect();
/// let err = conn.send(b"late").unwrap_err();
/// assert!(matches!(err, redial::SendError::Disconnected { .. }));
/// assert_eq!(format!("{err:?}"), r#"Disconnected { data: 4 bytes b"late" }"#);
/// # }
/// ```
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The send queue holds `limit` bytes already; wait (`write().await`)
    /// or slow down.
    #[error("send queue full: {queued} bytes queued, limit {limit}")]
    Full {
        /// The bytes not queued.
        data: Vec<u8>,
        /// Bytes queued when the send was refused.
        queued: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The connection is down (connecting or backing off) and the outage
    /// policy is [`Outage::Reject`](crate::Outage::Reject), the default.
    /// Wait for it (`wait_connected`, or `wait_connected_blocking` in
    /// synchronous code) or buffer with
    /// [`Outage::Buffer`](crate::Outage::Buffer).
    #[error(
        "not connected: the connection is down (connecting or backing off) and sends are rejected during an outage"
    )]
    NotConnected {
        /// The bytes not queued.
        data: Vec<u8>,
    },
    /// The outage buffer is full.
    #[error("outage buffer full: {buffered} bytes buffered, limit {limit}")]
    OutageBufferFull {
        /// The bytes not queued.
        data: Vec<u8>,
        /// Bytes buffered when the send was refused.
        buffered: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The [`Socket`](crate::Socket) belongs to an earlier connection that
    /// was lost; the managed connection has reconnected or is reconnecting.
    /// Send on the [`Connection`](crate::Connection), or on the new
    /// connection's `Socket`.
    #[error(
        "socket closed: the connection this socket belonged to was lost (send on the Connection or on the new connection's socket)"
    )]
    Closed {
        /// The bytes not queued.
        data: Vec<u8>,
    },
    /// The application called `disconnect` or `abort` on this connection
    /// (or on its pool or manager): from that call on it takes no more
    /// sends, while what was queued before still goes out.
    #[error("disconnected: disconnect or abort was called on this connection, which takes no more sends")]
    Disconnected {
        /// The bytes not queued.
        data: Vec<u8>,
    },
    /// The managed connection ended for good for another reason than a
    /// disconnect: it gave up, `on_reset` returned `Stop`, a callback
    /// panicked, or its runtime shut down.
    #[error("connection closed for good: {reason}")]
    ConnectionClosed {
        /// The bytes not queued.
        data: Vec<u8>,
        /// Why it ended.
        reason: CloseReason,
    },
    /// The pool has no connections.
    #[error("pool {pool:?} has no connections")]
    PoolEmpty {
        /// The bytes not queued.
        data: Vec<u8>,
        /// The pool's name.
        pool: String,
    },
    /// None of the pool's connections can take bytes now.
    #[error("pool {pool:?}: none of its {members} connections is up")]
    NoLiveMember {
        /// The bytes not queued.
        data: Vec<u8>,
        /// The pool's name.
        pool: String,
        /// How many connections the pool has.
        members: usize,
    },
    /// A send that waits (such as `Pool::send_wait`) found no connection to
    /// take the bytes within its timeout.
    #[error("timed out after {waited:?}: no connection took the bytes")]
    TimedOut {
        /// The bytes not queued.
        data: Vec<u8>,
        /// How long it waited.
        waited: Duration,
    },
}

impl SendError {
    /// The bytes that were not queued.
    ///
    /// ```
    /// let e = redial::SendError::Closed { data: b"x".to_vec() };
    /// assert_eq!(e.data(), b"x");
    /// ```
    pub fn data(&self) -> &[u8] {
        match self {
            SendError::Full { data, .. }
            | SendError::NotConnected { data }
            | SendError::OutageBufferFull { data, .. }
            | SendError::Closed { data }
            | SendError::Disconnected { data }
            | SendError::ConnectionClosed { data, .. }
            | SendError::PoolEmpty { data, .. }
            | SendError::NoLiveMember { data, .. }
            | SendError::TimedOut { data, .. } => data,
        }
    }

    /// Takes the bytes that were not queued.
    ///
    /// ```
    /// let e = redial::SendError::NotConnected { data: b"x".to_vec() };
    /// assert_eq!(e.into_data(), b"x".to_vec());
    /// ```
    pub fn into_data(self) -> Vec<u8> {
        match self {
            SendError::Full { data, .. }
            | SendError::NotConnected { data }
            | SendError::OutageBufferFull { data, .. }
            | SendError::Closed { data }
            | SendError::Disconnected { data }
            | SendError::ConnectionClosed { data, .. }
            | SendError::PoolEmpty { data, .. }
            | SendError::NoLiveMember { data, .. }
            | SendError::TimedOut { data, .. } => data,
        }
    }
}

/// How many bytes of a refused payload `Debug` shows.
const DEBUG_PREFIX: usize = 16;

/// A payload as its length and first [`DEBUG_PREFIX`] bytes (escaped), so
/// `{:?}` of a refused 4 MiB send, or `?` in `main`, prints one short line.
struct Payload<'a>(&'a [u8]);

impl fmt::Debug for Payload<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = &self.0[..self.0.len().min(DEBUG_PREFIX)];
        let unit = if self.0.len() == 1 { "byte" } else { "bytes" };
        write!(f, "{} {unit} b\"{}\"", self.0.len(), shown.escape_ascii())?;
        if shown.len() < self.0.len() {
            f.write_str("...")?;
        }
        Ok(())
    }
}

impl fmt::Debug for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let data = Payload(self.data());
        match self {
            SendError::Full { queued, limit, .. } => f
                .debug_struct("Full")
                .field("data", &data)
                .field("queued", queued)
                .field("limit", limit)
                .finish(),
            SendError::NotConnected { .. } => {
                f.debug_struct("NotConnected").field("data", &data).finish()
            }
            SendError::OutageBufferFull {
                buffered, limit, ..
            } => f
                .debug_struct("OutageBufferFull")
                .field("data", &data)
                .field("buffered", buffered)
                .field("limit", limit)
                .finish(),
            SendError::Closed { .. } => f.debug_struct("Closed").field("data", &data).finish(),
            SendError::Disconnected { .. } => {
                f.debug_struct("Disconnected").field("data", &data).finish()
            }
            SendError::ConnectionClosed { reason, .. } => f
                .debug_struct("ConnectionClosed")
                .field("data", &data)
                .field("reason", reason)
                .finish(),
            SendError::PoolEmpty { pool, .. } => f
                .debug_struct("PoolEmpty")
                .field("data", &data)
                .field("pool", pool)
                .finish(),
            SendError::NoLiveMember { pool, members, .. } => f
                .debug_struct("NoLiveMember")
                .field("data", &data)
                .field("pool", pool)
                .field("members", members)
                .finish(),
            SendError::TimedOut { waited, .. } => f
                .debug_struct("TimedOut")
                .field("data", &data)
                .field("waited", waited)
                .finish(),
        }
    }
}

/// Why a blocking wait
/// ([`Connection::wait_connected_blocking`](crate::Connection::wait_connected_blocking),
/// [`Disconnecting::wait_blocking`](crate::Disconnecting::wait_blocking))
/// returned without what it waited for.
///
/// ```
/// use std::time::Duration;
///
/// let cm = redial::Manager::new(); // outside tokio: owns a runtime
/// // Nothing listens on port 9 (discard) here.
/// let conn = cm.connect("127.0.0.1:9", redial::handler())?;
/// let err = conn.wait_connected_blocking(Duration::from_millis(50)).unwrap_err();
/// assert!(matches!(err, redial::WaitError::TimedOut { .. }));
/// # Ok::<(), redial::ConnectError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WaitError {
    /// No connection came up within the timeout; the managed connection
    /// goes on trying.
    #[error("not connected after {waited:?}; still trying")]
    TimedOut {
        /// How long it waited.
        waited: Duration,
    },
    /// The managed connection ended for good before it connected.
    #[error("connection closed for good: {reason}")]
    Closed {
        /// Why it ended.
        reason: CloseReason,
    },
    /// Called on a thread that runs a tokio runtime, where blocking would
    /// stall the tasks (this connection's among them, on a single-threaded
    /// runtime). Await [`Connection::wait_connected`](crate::Connection::wait_connected)
    /// there instead.
    #[error(
        "wait_connected_blocking called inside a tokio runtime, where blocking stalls its tasks: await wait_connected() instead"
    )]
    InsideRuntime,
    /// [`Disconnecting::wait_blocking`](crate::Disconnecting::wait_blocking)
    /// was called in a current-thread tokio runtime, whose one thread the
    /// connections it waits for may need: blocking could only hang. Nothing
    /// was waited for (the disconnect still goes ahead); await the
    /// `Disconnecting` there instead.
    #[error(
        "wait_blocking called in a current-thread tokio runtime, whose thread the closing connections may need: await the disconnect instead"
    )]
    CurrentThreadRuntime,
}
