//! Errors, one enum per concern: building options, starting a connection,
//! naming a pool, and queueing bytes.

use crate::endpoint::EndpointError;

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
}

/// Bytes that were not queued, handed back whole with the reason.
///
/// Nothing is dropped silently: whatever `send` refuses comes back here, and
/// [`SendError::into_data`] returns it for a retry or a report.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let cm = redial::Manager::new();
/// // Nothing listens on port 9 (discard) here: the connection is down.
/// let conn = cm.connect("127.0.0.1:9", redial::handler()).unwrap();
/// let err = conn.send(b"hello").unwrap_err();
/// assert_eq!(err.data(), b"hello");
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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
    /// The connection is down and the outage policy is `Reject`.
    #[error("not connected: the connection is down and sends are rejected during an outage")]
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
    /// The socket belongs to a connection that has ended (an earlier
    /// generation, or the managed connection is closed for good).
    #[error("socket closed: it belongs to a connection that has ended")]
    Closed {
        /// The bytes not queued.
        data: Vec<u8>,
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
            | SendError::Closed { data } => data,
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
            | SendError::Closed { data } => data,
        }
    }
}
