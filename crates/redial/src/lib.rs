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
//! # Choose your API
//!
//! | you want | use |
//! |---|---|
//! | to react to connect, data and loss, and keep the socket at hand | [callbacks](#callbacks): a [`Handler`] and [`Manager::connect`] |
//! | a byte stream for a codec (`Framed`) or a client library | a [`Stream`]: [`Manager::stream`] |
//! | several connections, and sends to whichever is up | a [`Pool`]: [`Manager::create_pool`] |
//! | no async code at all | any of them [from synchronous code](#synchronous-code) |
//!
//! Every managed connection has a [`Connection`] handle, valid across
//! reconnects; a [`Socket`] is one live connection of it. Sends are
//! queued without blocking and refused, bytes handed back, in a
//! [`SendError`] that names its cause. While a connection is down, sends
//! are refused by default ([`Outage::Reject`]); [`Outage::Buffer`] keeps
//! them for the next connection.
//!
//! ## Callbacks
//!
//! ```
//! use redial::{Handler, Reset, Resume, Socket};
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
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let server = std::net::TcpListener::bind("127.0.0.1:0")?;
//! # let echo = server.local_addr()?.to_string();
//! # std::thread::spawn(move || for s in server.incoming().flatten() { std::thread::spawn(move || std::io::copy(&mut &s, &mut &s)); });
//!     let addr = "127.0.0.1:11211";
//! #   let addr = echo.as_str();
//!     let cm = redial::Manager::new();        // on this tokio runtime
//!     let conn = cm.connect(addr, Memcache)?;
//!     conn.wait_connected().await?;           // a send while down is refused by default
//!     conn.send("stats\r\n")?;
//!     cm.disconnect_all().await;              // flush, FIN, wait until closed
//!     Ok(())
//! }
//! ```
//!
//! ## Stream
//!
//! A [`Stream`] is `AsyncRead + AsyncWrite` over a managed connection.
//! Each lost connection is one `ConnectionReset` error on the next read,
//! write or flush (a [`StreamError`] inside says which connection, why, and
//! what became of its bytes); the next call goes to the new connection.
//! Bytes of the lost connection are never mixed into the next one's, and
//! what never left is kept for [`Stream::take_unsent`]. While the
//! connection is down, a write waits for it at most
//! [`Stream::DEFAULT_OUTAGE_WAIT`], then fails `NotConnected`.
//!
//! ```
//! use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let server = std::net::TcpListener::bind("127.0.0.1:0")?;
//! # let echo = server.local_addr()?.to_string();
//! # std::thread::spawn(move || for s in server.incoming().flatten() { std::thread::spawn(move || std::io::copy(&mut &s, &mut &s)); });
//!     let addr = "127.0.0.1:6379";
//! #   let addr = echo.as_str();
//!     let cm = redial::Manager::new();
//!     let mut stream = BufReader::new(cm.stream(addr, redial::Options::new())?);
//!     stream.write_all(b"PING\r\n").await?;
//!     let mut reply = String::new();
//!     stream.read_line(&mut reply).await?;
//!     println!("{reply}");
//!     stream.shutdown().await?;               // final: flush, FIN, never reconnect
//!     Ok(())
//! }
//! ```
//!
//! ## Pool
//!
//! ```
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let server = std::net::TcpListener::bind("127.0.0.1:0")?;
//! # let echo = server.local_addr()?.to_string();
//! # std::thread::spawn(move || for s in server.incoming().flatten() { std::thread::spawn(move || std::io::copy(&mut &s, &mut &s)); });
//!     let members = ["10.0.0.1:11211", "10.0.0.2:11211"];
//! #   let members = [echo.as_str(), echo.as_str()];
//!     let cm = redial::Manager::new();
//!     let pool = cm.create_pool("cache")?;
//!     for addr in members {
//!         pool.add_connection(addr, redial::handler().on_data(|_, reply| print!("{}", String::from_utf8_lossy(reply))))?;
//!     }
//!     pool.wait_live(1).await;                // at least one member up
//!     pool.send("version\r\n")?;              // to a live member, in turn
//!     pool.disconnect().await;
//!     Ok(())
//! }
//! ```
//!
//! ## Synchronous code
//!
//! Made outside tokio, a [`Manager`] starts a small runtime of its own;
//! callbacks run there. [`Connection::wait_connected_blocking`] waits for
//! a connection with a timeout, [`Disconnecting::wait_blocking`] for a
//! disconnect to finish (do that before `main` returns, or what is still
//! queued goes with the process), and a channel brings data back.
//!
//! ```
//! use std::sync::mpsc;
//! use std::time::Duration;
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let server = std::net::TcpListener::bind("127.0.0.1:0")?;
//! # let echo = server.local_addr()?.to_string();
//! # std::thread::spawn(move || for s in server.incoming().flatten() { std::thread::spawn(move || std::io::copy(&mut &s, &mut &s)); });
//!     let addr = "127.0.0.1:11211";
//! #   let addr = echo.as_str();
//!     let (tx, replies) = mpsc::channel();
//!     let cm = redial::Manager::new();        // no runtime here: it owns one
//!     let conn = cm.connect(addr, redial::handler().on_data(move |_, data| {
//!         let _ = tx.send(data.to_vec());
//!     }))?;
//!     conn.wait_connected_blocking(Duration::from_secs(5))?;
//!     conn.send("version\r\n")?;
//!     let reply = replies.recv_timeout(Duration::from_secs(5))?;
//!     println!("{}", String::from_utf8_lossy(&reply));
//!     cm.disconnect_all().wait_blocking()?;
//!     Ok(())
//! }
//! ```
//!
//! The module-level functions ([`connect`], [`create_pool`], [`get_pool`],
//! [`get_connection`], [`disconnect_all`]) act on one process-wide manager,
//! [`global`], as connman's module did.
//!
//! # TLS
//!
//! With the `tls` feature (`redial = { version = "0.1", features =
//! ["tls"] }`), `Options::tls` wraps every connection in TLS (rustls;
//! webpki or system roots, client certificates), re-handshaking on every
//! reconnect. `TlsConfig` says how.
//!
//! ```
//! # #[cfg(feature = "tls")]
//! # fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use redial::{Options, TlsConfig};
//!
//! let opts = Options::new().tls(TlsConfig::webpki().server_name("example.com")?);
//! let cm = redial::Manager::new();
//! let conn = cm.connect_with("example.com:443", redial::handler(), opts)?;
//! # conn.abort();
//! # Ok(()) }
//! ```
//!
//! # What a connection reports
//!
//! [`Reset`] and [`Close`] say why a connection was lost or ended and hand
//! back [`Unsent`] bytes; [`Connection::stats`] counts connects, resets and
//! bytes; [`Manager::events`] streams every state change of every
//! connection. A local disconnect is final and never looks like a reset.
//! A [`Connection`] outlives the `Manager` value it came from (see
//! [`Manager`]).
//!
//! # Bounds
//!
//! Every queue is bounded: the send queue by
//! [`Options::send_queue_limit`] (4 MiB), the outage buffer by
//! [`Outage::Buffer`]'s `max_bytes`, events by [`Events::CAPACITY`], connect
//! attempts in flight by [`ManagerBuilder::max_connecting`] (64). Reads use
//! one 64 KiB buffer per worker thread, not one per connection.

// Unsafe code is refused everywhere but in one place, documented there:
// driver/kernel.rs reads the kernel's per-socket counters (getsockopt,
// ioctl) that no safe wrapper offers.
#![deny(unsafe_code)]
// A function a reader cannot hold in view is split (threshold in
// clippy.toml; tests/layers.rs counts every line, here and in the proxy
// and the CLI). Not in tests: a scenario reads top to bottom.
#![warn(clippy::too_many_lines)]

mod clock;
mod core;
#[cfg(any(test, fuzzing))]
mod data_path;
mod driver;
mod endpoint;
mod error;
mod events;
mod handle;
mod handler;
#[cfg(feature = "metrics")]
pub mod metrics;
mod options;
mod queue;
mod reset;
mod shared;

// # Layout
//
// Three layers, one folder each, and the vocabulary they share at the
// root; the core names neither of the other two:
//
// - `core/`: the pure decisions, with time passed in and no tokio, socket2
//   or clock (tests/layers.rs checks): the life cycle (`lifecycle`), the
//   backoff schedule (`backoff`), every deadline of a live connection
//   (`timers`), the byte ledger (`ledger`), property tests (`props`).
// - `driver/`: one tokio task per connection carries the core's decisions
//   out (`mod.rs` lists its files): connect attempts, the connected
//   period, and `teardown`, the one way a connection ends.
// - `handle/`: what the application holds: `manager`, `connection`,
//   `socket`, `sender`, `disconnect`, `status`, `global`, `pool/` (members,
//   picking, keyed pools, following a name) and `stream/` (`Stream`).
// - At the root: `shared` (what a driver and its handles share: the lock
//   around the send `queue`, the command, the state), `reset` (what a
//   loss or a close hands back), `options`, `endpoint`, `handler`,
//   `events`, `error`, `clock` (the one clock), `metrics` (feature), and
//   `data_path` and `fuzzing` (test and fuzzing builds only).
//
// The public names below come from the layer that holds each.
#[cfg(feature = "tls")]
pub use driver::tls;

pub use self::core::backoff::{Backoff, Delays, Jitter};
#[cfg(feature = "tls")]
pub use driver::tls::{TlsConfig, TlsError};
pub use endpoint::{Endpoint, EndpointError, ToEndpoint};
pub use error::{ConnectError, OptionsError, PoolError, SendError, WaitError};
pub use events::{Event, EventKind, Events};
pub use handle::connection::{ClosedError, Connection, Stats};
pub use handle::disconnect::Disconnecting;
pub use handle::global::{connect, create_pool, disconnect_all, get_connection, get_pool, global};
pub use handle::manager::{Manager, ManagerBuilder};
pub use handle::pool::follow::{Follow, Resolver};
pub use handle::pool::Pool;
pub use handle::sender::Sender;
pub use handle::socket::Socket;
pub use handle::status::{EndpointDown, PoolStatus, StateCounts, Status};
pub use handle::stream::{Stream, StreamError, StreamReset};
pub use handler::{handler, Entry, FnHandler, Handler, Resume, Retry};
pub use options::{Keepalive, Options, Outage};
pub use reset::{Close, CloseReason, Partial, Reset, ResetReason, Unsent};
pub use shared::State;

/// The life-cycle state machine, the send path with its byte ledger, and a
/// view of a connection's send queue, reachable only in fuzzing builds
/// (`cargo fuzz` sets `--cfg fuzzing`).
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing;
