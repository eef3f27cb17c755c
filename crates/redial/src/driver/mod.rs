//! The I/O side: one tokio task per connection carries out what the core
//! decides.
//!
//! `task` runs a connection's life (attempts, reads, writes, losses, the
//! close); `dial` makes one connect attempt (every resolved address, Happy
//! Eyeballs); `tls` adds the handshake; `gate` caps attempts in flight
//! per manager; `probe` lets one connection per endpoint probe during an
//! outage; `scratch` is the per-thread read buffer.

pub(crate) mod dial;
pub(crate) mod gate;
pub(crate) mod kernel;
pub(crate) mod probe;
pub(crate) mod scratch;
pub(crate) mod task;
#[cfg(feature = "tls")]
pub mod tls;
pub(crate) mod transport;

pub(crate) use task::Driver;
