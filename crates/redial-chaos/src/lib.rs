//! A fault-injection TCP proxy for testing reconnect logic.
//!
//! Put a [`Proxy`] between a client under test and its server, then break
//! the path on purpose: reset or close every connection, refuse new ones,
//! partition (blackhole), add latency and jitter, limit bandwidth, slice
//! writes into tiny chunks, cut a connection after N bytes, or hold closes.
//! Faults switch on and off at any time, combine, and hit live connections
//! as well as new ones. Randomness (jitter, [`Proxy::random_fault`]) comes
//! from a seed, so a failing run can be replayed.
//!
//! The proxy is meant for loopback use inside tests: it never panics on
//! what a peer does, counts what it forwards ([`Proxy::stats`]), and with no
//! fault active it is a plain copy loop adding only microseconds. Delays
//! saturate at [`MAX_DELAY`] (a year), so none can overflow its clock.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use redial_chaos::Proxy;
//! use std::time::Duration;
//! use tokio::io::AsyncReadExt;
//!
//! let server = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let proxy = Proxy::builder().seed(42).start("127.0.0.1:0", server.local_addr()?).await?;
//!
//! let mut client = tokio::net::TcpStream::connect(proxy.local_addr()).await?;
//! let (_conn, _) = server.accept().await?;
//! proxy.reset_all();
//! let err = client.read(&mut [0; 8]).await.unwrap_err();
//! assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
//! assert_eq!(proxy.stats().accepted, 1);
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//!
//! - `proxy` — the [`Proxy`] handle and [`ProxyBuilder`], the accept loop.
//! - `link` — one proxied connection: upstream connect, how it ends.
//! - `pump` — one direction of one connection: the copy loop and shaping.
//! - `listener` — the listening socket that `refuse`/`accept` close and reopen.
//! - `fault` — [`Fault`], [`Direction`] and the shared fault state.
//! - `stats` — [`Stats`] and the counters behind it.
//! - `rng` — [`SplitMix64`], the seeded generator.
//! - `addr` — [`ProxyAddr`], turning `"127.0.0.1:0"` and friends into addresses.
//! - `error` — [`Error`].

#![forbid(unsafe_code)]
// A function a reader cannot hold in view is split (threshold in
// clippy.toml; redial's tests/layers.rs counts every line).
#![warn(clippy::too_many_lines)]

mod addr;
mod error;
mod fault;
mod link;
mod listener;
mod proxy;
mod pump;
mod rng;
mod stats;

pub use addr::ProxyAddr;
pub use error::Error;
pub use fault::{Direction, Fault, MAX_DELAY};
pub use proxy::{Proxy, ProxyBuilder};
pub use rng::SplitMix64;
pub use stats::Stats;
