//! Counters the proxy keeps while it runs, and the [`Stats`] snapshot a test
//! reads from them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::watch;

/// A snapshot of the proxy's counters, from [`Proxy::stats`](crate::Proxy::stats).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), redial_chaos::Error> {
/// let proxy = redial_chaos::Proxy::start("127.0.0.1:0", "127.0.0.1:9").await?;
/// let stats = proxy.stats();
/// assert_eq!(stats.accepted, 0);
/// assert_eq!(stats.bytes_upstream + stats.bytes_downstream, 0);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Connections accepted since start.
    pub accepted: u64,
    /// Connections accepted and not yet finished.
    pub live: u64,
    /// Bytes forwarded client → server.
    pub bytes_upstream: u64,
    /// Bytes forwarded server → client.
    pub bytes_downstream: u64,
    /// Accepted connections whose upstream connect failed (the client was reset).
    pub upstream_failures: u64,
    /// Bytes the proxy has read from one peer and not yet written to the
    /// other, both directions together: data waiting out a latency, a
    /// slice delay, a bandwidth limit or a blackhole. What a connection
    /// still holds when it ends is dropped with it and leaves this count.
    pub held: u64,
}

/// The live counters behind [`Stats`]. `accepted` is a `watch` so that
/// `wait_accepted` can sleep until it moves instead of polling.
#[derive(Debug)]
pub(crate) struct Counters {
    pub(crate) accepted: watch::Sender<u64>,
    pub(crate) live: AtomicU64,
    pub(crate) bytes_upstream: AtomicU64,
    pub(crate) bytes_downstream: AtomicU64,
    pub(crate) upstream_failures: AtomicU64,
    pub(crate) held: AtomicU64,
}

impl Counters {
    pub(crate) fn new() -> Self {
        Self {
            accepted: watch::Sender::new(0),
            live: AtomicU64::new(0),
            bytes_upstream: AtomicU64::new(0),
            bytes_downstream: AtomicU64::new(0),
            upstream_failures: AtomicU64::new(0),
            held: AtomicU64::new(0),
        }
    }

    pub(crate) fn snapshot(&self) -> Stats {
        Stats {
            accepted: *self.accepted.borrow(),
            live: self.live.load(Ordering::Relaxed),
            bytes_upstream: self.bytes_upstream.load(Ordering::Relaxed),
            bytes_downstream: self.bytes_downstream.load(Ordering::Relaxed),
            upstream_failures: self.upstream_failures.load(Ordering::Relaxed),
            held: self.held.load(Ordering::Relaxed),
        }
    }

    /// Counts a new connection; it stays live until the guard drops, which
    /// also covers tasks aborted at shutdown.
    pub(crate) fn accept(self: &Arc<Self>) -> LiveGuard {
        self.live.fetch_add(1, Ordering::Relaxed);
        self.accepted.send_modify(|n| *n += 1);
        LiveGuard(Arc::clone(self))
    }
}

/// Decrements `live` on drop.
#[derive(Debug)]
pub(crate) struct LiveGuard(Arc<Counters>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::Relaxed);
    }
}
