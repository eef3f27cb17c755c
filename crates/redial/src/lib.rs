//! redial keeps network connections alive.
//!
//! Say once where to connect and what to do on connect, on data and on
//! reset; redial re-establishes the connection whenever connectivity is
//! interrupted, with backoff, and never reconnects a connection that the
//! application closed itself. Single connections and named pools of them,
//! direct access to the live socket, and nothing dropped silently: bytes
//! that were accepted and never handed to the kernel come back to the
//! application.
//!
//! ```no_run
//! use redial::{Handler, Manager, Reset, Resume, Socket};
//!
//! struct Memcache;
//! impl Handler for Memcache {
//!     fn on_connect(&mut self, sock: &Socket) { let _ = sock.send("version\r\n"); }
//!     fn on_data(&mut self, _sock: &Socket, data: &[u8]) { print!("{}", String::from_utf8_lossy(data)); }
//!     fn on_reset(&mut self, reset: &Reset) -> Resume {
//!         eprintln!("lost: {}", reset.reason());
//!         Resume::Reconnect
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let cm = Manager::new();
//! let conn = cm.connect("127.0.0.1:11211", Memcache)?;
//! let pool = cm.create_pool("myPool")?;
//! pool.add_connection("127.0.0.1:11212", Memcache)?;
//! // ... later
//! cm.disconnect_all();
//! # let _ = conn; Ok(()) }
//! ```
//!
//! # Layout
//!
//! - `core/`: the life cycle (connecting, connected, backing off, closed)
//!   is a plain state machine with time passed in, with the backoff
//!   schedule as a value ([`Backoff`]); no tokio, no sockets.
//! - `driver/`: one tokio task per connection does the I/O the machine asks
//!   for and calls the [`Handler`]; `dial` makes one connect attempt.
//! - `handle/`: the application holds [`Connection`] (valid across
//!   reconnects), [`Socket`] (one live connection), [`Sender`], [`Stream`],
//!   [`Pool`] and [`Manager`]; they share the send queue and counters with
//!   the driver (`shared`).
//! - [`Reset`] and [`Close`] tell why a connection was lost or ended and
//!   hand back [`Unsent`] bytes; [`Manager::events`] reports every change.
//!
//! # Bounds
//!
//! Every queue is bounded: the send queue by
//! [`Options::send_queue_limit`] (4 MiB), the outage buffer by
//! [`Outage::Buffer`]'s `max_bytes`, events by [`EVENTS_CAPACITY`], connect
//! attempts in flight by [`ManagerBuilder::max_connecting`] (64). Reads use
//! one 64 KiB buffer per worker thread, not one per connection.

mod core;
mod driver;
mod endpoint;
mod error;
mod events;
mod handle;
mod handler;
mod options;
mod reset;
mod shared;

// Short paths for the crate's own use: `crate::lifecycle` rather than
// `crate::core::lifecycle`. The folders above are the layers; these names
// are the rooms inside them.
use self::core::{backoff, lifecycle};
#[cfg(feature = "tls")]
pub use driver::tls;
use driver::{dial, gate, probe, scratch};
use handle::{connection, disconnect, global, manager, pool, sender, socket, stream};

pub use backoff::{
    Backoff, Delays, Jitter, DEFAULT_INITIAL, DEFAULT_JITTER, DEFAULT_MAX, DEFAULT_MULTIPLIER,
};
pub use connection::{ClosedError, Connection, Stats};
pub use dial::HAPPY_EYEBALLS_DELAY;
pub use disconnect::Disconnecting;
pub use endpoint::{Endpoint, EndpointError, ToEndpoint};
pub use error::{ConnectError, OptionsError, PoolError, SendError, WaitError};
pub use events::{Event, EventKind, Events, EVENTS_CAPACITY};
pub use global::{connect, create_pool, disconnect_all, get_connection, get_pool, global};
pub use handler::{handler, Entry, FnHandler, Handler, Resume};
pub use manager::{Manager, ManagerBuilder, DEFAULT_MAX_CONNECTING};
pub use options::{
    Keepalive, Options, Outage, DEFAULT_CLOSE_GRACE, DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_KEEPALIVE_IDLE, DEFAULT_KEEPALIVE_INTERVAL, DEFAULT_KEEPALIVE_RETRIES,
    DEFAULT_SEND_QUEUE_LIMIT, DEFAULT_STABLE_AFTER, DEFAULT_USER_TIMEOUT,
};
pub use pool::Pool;
pub use reset::{Close, CloseReason, Partial, Reset, ResetReason, Unsent};
pub use sender::{Sender, SENDER_BATCH};
pub use shared::{State, FLAPPING_AFTER};
pub use socket::Socket;
pub use stream::{Stream, StreamError, StreamReset, STREAM_READ_LIMIT};
#[cfg(feature = "tls")]
pub use tls::{TlsConfig, TlsError};

/// The life-cycle state machine, reachable only in fuzzing builds
/// (`cargo fuzz` sets `--cfg fuzzing`).
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::lifecycle::{Lifecycle, Phase};
}
