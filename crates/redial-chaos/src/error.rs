//! The one error type of the crate: every fallible call names the input it
//! could not use, so a failing test says which address or argument was wrong.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

/// Why a proxy call failed.
///
/// Messages are lowercase and name the offending input, e.g.
/// `could not listen on 127.0.0.1:4000: Address already in use (os error 98)`.
///
/// ```
/// use redial_chaos::Error;
///
/// let err = Error::Address {
///     role: "upstream",
///     input: "nowhere".into(),
///     reason: "invalid socket address syntax".into(),
/// };
/// assert_eq!(
///     err.to_string(),
///     "invalid upstream address `nowhere`: invalid socket address syntax"
/// );
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A listen or upstream address could not be parsed or resolved.
    #[error("invalid {role} address `{input}`: {reason}")]
    Address {
        /// Which address it was: `"listen"` or `"upstream"`.
        role: &'static str,
        /// The address as the caller gave it.
        input: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The listening socket could not be opened (most often: port in use).
    #[error("could not listen on {addr}: {source}")]
    Bind {
        /// The address the proxy tried to listen on.
        addr: SocketAddr,
        /// The operating system's reason.
        #[source]
        source: io::Error,
    },
    /// [`Proxy::wait_accepted`](crate::Proxy::wait_accepted) ran out of time.
    #[error(
        "timed out after {waited:?} waiting for {wanted} accepted connections ({seen} so far)"
    )]
    Timeout {
        /// How many accepted connections the caller waited for.
        wanted: u64,
        /// How many had been accepted when time ran out.
        seen: u64,
        /// How long the caller waited.
        waited: Duration,
    },
    /// The call needs a Tokio runtime and none was running.
    #[error("no tokio runtime is running; start the proxy from inside one")]
    NoRuntime,
    /// The proxy was shut down, so it can no longer listen or count.
    #[error("the proxy on {addr} has shut down")]
    ShutDown {
        /// The address the proxy listened on.
        addr: SocketAddr,
    },
}
