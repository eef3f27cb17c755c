//! The [`Proxy`] handle: starting, switching faults, counting, shutting down;
//! and the accept loop that hands each connection to its own task.

use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::fault::{capped, FaultState};
use crate::link::{Link, LinkConfig};
use crate::listener::ListenSlot;
use crate::stats::Counters;
use crate::{Direction, Error, Fault, ProxyAddr, SplitMix64, Stats};

/// Options for a [`Proxy`]; from [`Proxy::builder`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), redial_chaos::Error> {
/// use std::time::Duration;
///
/// let proxy = redial_chaos::Proxy::builder()
///     .seed(42)
///     .connect_timeout(Duration::from_secs(2))
///     .start("127.0.0.1:0", "127.0.0.1:9")
///     .await?;
/// assert_eq!(proxy.seed(), 42);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct ProxyBuilder {
    seed: u64,
    connect_timeout: Duration,
    buffer_size: usize,
    on_accept: Option<OnAccept>,
}

/// Called with each accepted client's address.
type OnAccept = Arc<dyn Fn(SocketAddr) + Send + Sync>;

impl std::fmt::Debug for ProxyBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyBuilder")
            .field("seed", &self.seed)
            .field("connect_timeout", &self.connect_timeout)
            .field("buffer_size", &self.buffer_size)
            .field("on_accept", &self.on_accept.is_some())
            .finish()
    }
}

impl Default for ProxyBuilder {
    fn default() -> Self {
        Self {
            seed: 0,
            connect_timeout: Duration::from_secs(10),
            buffer_size: 32 * 1024,
            on_accept: None,
        }
    }
}

impl ProxyBuilder {
    /// Seed for jitter and [`Proxy::random_fault`] (default 0). Log it in a
    /// failing test; the same seed replays the same random choices.
    ///
    /// ```
    /// let builder = redial_chaos::Proxy::builder().seed(7);
    /// # let _ = builder;
    /// ```
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// How long to wait for the upstream connect of each accepted
    /// connection before resetting the client (default 10 s; saturates at
    /// [`MAX_DELAY`](crate::MAX_DELAY)).
    ///
    /// ```
    /// let builder = redial_chaos::Proxy::builder()
    ///     .connect_timeout(std::time::Duration::from_millis(500));
    /// # let _ = builder;
    /// ```
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = capped(timeout);
        self
    }

    /// Read buffer per direction per connection (default 32 KiB, at least 1).
    ///
    /// ```
    /// let builder = redial_chaos::Proxy::builder().buffer_size(64 * 1024);
    /// # let _ = builder;
    /// ```
    #[must_use]
    pub fn buffer_size(mut self, bytes: usize) -> Self {
        self.buffer_size = bytes.max(1);
        self
    }

    /// Calls `f` with the client's address each time the proxy accepts a
    /// connection (before it dials upstream), from the proxy's accept task:
    /// keep it short. The `redial chaos` tool prints a line with it.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::sync::{Arc, Mutex};
    ///
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let log = seen.clone();
    /// let proxy = redial_chaos::Proxy::builder()
    ///     .on_accept(move |peer| log.lock().unwrap().push(peer))
    ///     .start("127.0.0.1:0", "127.0.0.1:9")
    ///     .await?;
    /// let client = tokio::net::TcpStream::connect(proxy.local_addr()).await?;
    /// proxy.wait_accepted(1, std::time::Duration::from_secs(5)).await?;
    /// assert_eq!(seen.lock().unwrap()[0], client.local_addr()?);
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn on_accept(mut self, f: impl Fn(SocketAddr) + Send + Sync + 'static) -> Self {
        self.on_accept = Some(Arc::new(f));
        self
    }

    /// Starts listening on `listen` and forwarding to `upstream`.
    ///
    /// Must run inside a Tokio runtime with IO and time enabled. Use a
    /// loopback `listen` address (`127.0.0.1:0` picks a free port, see
    /// [`Proxy::local_addr`]); other addresses work but expose the proxy to
    /// the network. `upstream` is resolved once, here; it need not be up
    /// yet, since each accepted connection dials it afresh.
    ///
    /// # Errors
    ///
    /// [`Error::Address`] for an unparsable or unresolvable address,
    /// [`Error::Bind`] (naming the address) if the port is taken,
    /// [`Error::NoRuntime`] outside a Tokio runtime.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), redial_chaos::Error> {
    /// let proxy = redial_chaos::Proxy::builder()
    ///     .start("127.0.0.1:0", "127.0.0.1:9")
    ///     .await?;
    /// assert_ne!(proxy.local_addr().port(), 0);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn start(
        self,
        listen: impl ProxyAddr,
        upstream: impl ProxyAddr,
    ) -> Result<Proxy, Error> {
        let listen = listen.to_addr("listen")?;
        let upstream = upstream.to_addr("upstream")?;
        let runtime = Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let slot = Arc::new(ListenSlot::open(listen, runtime.clone())?);

        let mut root = SplitMix64::new(self.seed);
        let fault_rng = root.fork();
        let (faults, faults_rx) = watch::channel(FaultState::default());
        let counters = Arc::new(Counters::new());
        let config = Arc::new(LinkConfig {
            upstream,
            connect_timeout: self.connect_timeout,
            buffer_size: self.buffer_size,
        });
        let acceptor = runtime.spawn(accept_loop(
            Arc::clone(&slot),
            config,
            faults_rx,
            Arc::clone(&counters),
            root,
            self.on_accept,
        ));
        tracing::debug!(listen = %slot.addr(), %upstream, seed = self.seed, "chaos proxy started");
        Ok(Proxy {
            slot,
            upstream,
            seed: self.seed,
            faults,
            counters,
            rng: Mutex::new(fault_rng),
            acceptor: Mutex::new(Some(acceptor)),
        })
    }
}

/// A fault-injection TCP proxy between a client under test and its server.
///
/// Every fault method takes `&self`, works from sync or async code, returns
/// at once, and affects live connections as well as new ones; faults
/// combine until [`heal`](Proxy::heal) clears them. Dropping the proxy stops
/// it in the background; [`shutdown`](Proxy::shutdown) stops it and waits.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use redial_chaos::{Direction, Proxy};
/// use std::time::Duration;
///
/// let server = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let proxy = Proxy::start("127.0.0.1:0", server.local_addr()?).await?;
/// proxy.latency(Direction::Both, Duration::from_millis(5), Duration::ZERO);
/// let _client = tokio::net::TcpStream::connect(proxy.local_addr()).await?;
/// proxy.wait_accepted(1, Duration::from_secs(5)).await?;
/// proxy.heal()?;
/// proxy.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Proxy {
    slot: Arc<ListenSlot>,
    upstream: SocketAddr,
    seed: u64,
    faults: watch::Sender<FaultState>,
    counters: Arc<Counters>,
    rng: Mutex<SplitMix64>,
    acceptor: Mutex<Option<JoinHandle<()>>>,
}

impl Proxy {
    /// Options (seed, timeouts) before starting; see [`ProxyBuilder`].
    ///
    /// ```
    /// let builder = redial_chaos::Proxy::builder().seed(1);
    /// # let _ = builder;
    /// ```
    pub fn builder() -> ProxyBuilder {
        ProxyBuilder::default()
    }

    /// Starts a proxy with default options; see [`ProxyBuilder::start`].
    ///
    /// # Errors
    ///
    /// As [`ProxyBuilder::start`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), redial_chaos::Error> {
    /// let proxy = redial_chaos::Proxy::start("127.0.0.1:0", "127.0.0.1:9").await?;
    /// # drop(proxy);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn start(listen: impl ProxyAddr, upstream: impl ProxyAddr) -> Result<Proxy, Error> {
        ProxyBuilder::default().start(listen, upstream).await
    }

    /// The address clients should connect to (the real port if 0 was asked).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), redial_chaos::Error> {
    /// let proxy = redial_chaos::Proxy::start("127.0.0.1:0", "127.0.0.1:9").await?;
    /// assert!(proxy.local_addr().ip().is_loopback());
    /// # Ok(())
    /// # }
    /// ```
    pub fn local_addr(&self) -> SocketAddr {
        self.slot.addr()
    }

    /// The server the proxy forwards to.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), redial_chaos::Error> {
    /// let proxy = redial_chaos::Proxy::start("127.0.0.1:0", "127.0.0.1:9").await?;
    /// assert_eq!(proxy.upstream_addr().port(), 9);
    /// # Ok(())
    /// # }
    /// ```
    pub fn upstream_addr(&self) -> SocketAddr {
        self.upstream
    }

    /// The seed behind jitter and [`random_fault`](Proxy::random_fault).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), redial_chaos::Error> {
    /// let proxy = redial_chaos::Proxy::builder().seed(9).start("127.0.0.1:0", "127.0.0.1:9").await?;
    /// assert_eq!(proxy.seed(), 9);
    /// # Ok(())
    /// # }
    /// ```
    pub fn seed(&self) -> u64 {
        self.seed
    }

    fn update(&self, f: impl FnOnce(&mut FaultState)) {
        // send_modify publishes even with no connection listening, so the
        // state is right for connections accepted later.
        self.faults.send_modify(f);
    }

    /// Resets every live connection: RST to the client and to the server.
    ///
    /// A one-off event: connections accepted afterwards are not touched (use
    /// [`cut_after(0)`](Proxy::cut_after) to reset every new one too).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), redial_chaos::Error> {
    /// # let proxy = redial_chaos::Proxy::start("127.0.0.1:0", "127.0.0.1:9").await?;
    /// proxy.reset_all();
    /// # Ok(())
    /// # }
    /// ```
    pub fn reset_all(&self) {
        self.update(|s| s.reset_epoch += 1);
    }

    /// Closes every live connection cleanly: FIN to both sides, then close.
    ///
    /// A one-off event like [`reset_all`](Proxy::reset_all). A peer whose
    /// unread data is still in the proxy's buffers may see an RST after the
    /// FIN; that is how TCP closes a socket with unread data.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), redial_chaos::Error> {
    /// # let proxy = redial_chaos::Proxy::start("127.0.0.1:0", "127.0.0.1:9").await?;
    /// proxy.close_all();
    /// # Ok(())
    /// # }
    /// ```
    pub fn close_all(&self) {
        self.update(|s| s.close_epoch += 1);
    }

    /// Stops listening: the listening socket is closed before this returns,
    /// so new connects fail with `ECONNREFUSED`. Live connections go on.
    /// Synchronous; [`accept`](Proxy::accept) listens again.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), redial_chaos::Error> {
    /// # let proxy = redial_chaos::Proxy::start("127.0.0.1:0", "127.0.0.1:9").await?;
    /// proxy.refuse();
    /// assert!(std::net::TcpStream::connect(proxy.local_addr()).is_err());
    /// proxy.accept()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn refuse(&self) {
        self.slot.close();
    }

    /// Listens again on the same address and port after
    /// [`refuse`](Proxy::refuse); a no-op when already listening.
    /// Synchronous (the socket is bound before it returns) and usable
    /// outside the runtime's threads.
    ///
    /// # Errors
    ///
    /// [`Error::Bind`] if something else took the port meanwhile,
    /// [`Error::ShutDown`] after [`shutdown`](Proxy::shutdown).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), redial_chaos::Error> {
    /// # let proxy = redial_chaos::Proxy::start("127.0.0.1:0", "127.0.0.1:9").await?;
    /// proxy.refuse();
    /// proxy.accept()?;
    /// assert!(proxy.is_listening());
    /// # Ok(())
    /// # }
    /// ```
    pub fn accept(&self) -> Result<(), Error> {
        self.slot.reopen()
    }

    /// Whether the proxy is listening (not refusing, not shut down).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), redial_chaos::Error> {
    /// # let proxy = redial_chaos::Proxy::start("127.0.0.1:0", "127.0.0.1:9").await?;
    /// assert!(proxy.is_listening());
    /// # Ok(())
    /// # }
    /// ```
    pub fn is_listening(&self) -> bool {
        self.slot.is_listening()
    }

    /// A network partition: connections stay open but nothing moves either
    /// way, and no FIN or RST is passed on.
    ///
    /// Data is held, not dropped: the proxy stops reading, so bytes wait in
    /// kernel buffers (and then the sender's) and arrive intact after
    /// [`heal`](Proxy::heal). New connections are accepted but not connected
    /// upstream until the heal. Closes and resets from a peer are likewise
    /// noticed only after the heal.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), redial_chaos::Error> {
    /// # let proxy = redial_chaos::Proxy::start("127.0.0.1:0", "127.0.0.1:9").await?;
    /// proxy.blackhole();
    /// proxy.heal()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn blackhole(&self) {
        self.update(|s| s.blackhole = true);
    }

    /// Delays data going `direction` by `delay` plus a random `0..=jitter`
    /// drawn from the seeded generator. Order is kept (a jittered chunk
    /// never overtakes an earlier one) and throughput is not capped: the
    /// proxy keeps reading while data waits. Zero and zero turns it off.
    /// Each of `delay` and `jitter` saturates at [`MAX_DELAY`](crate::MAX_DELAY).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), redial_chaos::Error> {
    /// # let proxy = redial_chaos::Proxy::start("127.0.0.1:0", "127.0.0.1:9").await?;
    /// use redial_chaos::Direction;
    /// use std::time::Duration;
    /// proxy.latency(Direction::Downstream, Duration::from_millis(50), Duration::from_millis(10));
    /// # Ok(())
    /// # }
    /// ```
    pub fn latency(&self, direction: Direction, delay: Duration, jitter: Duration) {
        self.update(|s| {
            s.shaping_mut(direction, |sh| {
                sh.latency = capped(delay);
                sh.jitter = capped(jitter);
            });
        });
    }

    /// Limits data going `direction` to about `bytes_per_s`, paced in
    /// twentieths of a second. 0 removes the limit.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), redial_chaos::Error> {
    /// # let proxy = redial_chaos::Proxy::start("127.0.0.1:0", "127.0.0.1:9").await?;
    /// proxy.bandwidth(redial_chaos::Direction::Both, 64 * 1024);
    /// # Ok(())
    /// # }
    /// ```
    pub fn bandwidth(&self, direction: Direction, bytes_per_s: u64) {
        self.update(|s| s.shaping_mut(direction, |sh| sh.bandwidth = bytes_per_s));
    }

    /// Writes data going `direction` in chunks of at most `max_chunk` bytes,
    /// waiting `delay` between chunks, to flush out code that assumes one
    /// read returns one whole message. `max_chunk` 0 turns it off; `delay`
    /// saturates at [`MAX_DELAY`](crate::MAX_DELAY).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), redial_chaos::Error> {
    /// # let proxy = redial_chaos::Proxy::start("127.0.0.1:0", "127.0.0.1:9").await?;
    /// proxy.slice(redial_chaos::Direction::Both, 1, std::time::Duration::from_millis(1));
    /// # Ok(())
    /// # }
    /// ```
    pub fn slice(&self, direction: Direction, max_chunk: usize, delay: Duration) {
        self.update(|s| {
            s.shaping_mut(direction, |sh| {
                sh.slice = max_chunk;
                sh.slice_delay = capped(delay);
            });
        });
    }

    /// Resets a connection (RST to both sides) once it has forwarded
    /// `bytes` bytes, counting both directions together since the
    /// connection was accepted. Exactly `bytes` bytes get through; a live
    /// connection already past the budget is reset at once, and with 0
    /// every new connection is reset as soon as it reaches upstream.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), redial_chaos::Error> {
    /// # let proxy = redial_chaos::Proxy::start("127.0.0.1:0", "127.0.0.1:9").await?;
    /// proxy.cut_after(1024);
    /// # Ok(())
    /// # }
    /// ```
    pub fn cut_after(&self, bytes: u64) {
        self.update(|s| s.cut_after = Some(bytes));
    }

    /// When a peer closes (FIN) or fails (RST), waits `delay` before passing
    /// that on to the other peer. Data still flows meanwhile in the other
    /// direction. Zero turns it off; `delay` saturates at
    /// [`MAX_DELAY`](crate::MAX_DELAY).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), redial_chaos::Error> {
    /// # let proxy = redial_chaos::Proxy::start("127.0.0.1:0", "127.0.0.1:9").await?;
    /// proxy.slow_close(std::time::Duration::from_millis(200));
    /// # Ok(())
    /// # }
    /// ```
    pub fn slow_close(&self, delay: Duration) {
        self.update(|s| s.slow_close = capped(delay));
    }

    /// Clears every fault: listens again if refusing, ends blackholes,
    /// latency, bandwidth limits, slicing, byte budgets and slow closes.
    /// Held data then flows; connections already reset stay reset.
    ///
    /// # Errors
    ///
    /// As [`accept`](Proxy::accept) when listening again fails; the other
    /// faults are cleared regardless.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), redial_chaos::Error> {
    /// # let proxy = redial_chaos::Proxy::start("127.0.0.1:0", "127.0.0.1:9").await?;
    /// proxy.blackhole();
    /// proxy.refuse();
    /// proxy.heal()?;
    /// assert!(proxy.is_listening());
    /// # Ok(())
    /// # }
    /// ```
    pub fn heal(&self) -> Result<(), Error> {
        self.update(|s| *s = s.healed());
        self.accept()
    }

    /// Applies one [`Fault`] value, as the method of the same name would.
    ///
    /// # Errors
    ///
    /// None today; the `Result` leaves room for faults that can fail.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), redial_chaos::Error> {
    /// # let proxy = redial_chaos::Proxy::start("127.0.0.1:0", "127.0.0.1:9").await?;
    /// proxy.apply(redial_chaos::Fault::CutAfter { bytes: 10 })?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn apply(&self, fault: Fault) -> Result<(), Error> {
        match fault {
            Fault::ResetAll => self.reset_all(),
            Fault::CloseAll => self.close_all(),
            Fault::Refuse => self.refuse(),
            Fault::Blackhole => self.blackhole(),
            Fault::Latency {
                direction,
                delay,
                jitter,
            } => self.latency(direction, delay, jitter),
            Fault::Bandwidth {
                direction,
                bytes_per_s,
            } => self.bandwidth(direction, bytes_per_s),
            Fault::Slice {
                direction,
                max_chunk,
                delay,
            } => self.slice(direction, max_chunk, delay),
            Fault::CutAfter { bytes } => self.cut_after(bytes),
            Fault::SlowClose { delay } => self.slow_close(delay),
        }
        Ok(())
    }

    /// Picks a fault with [`Fault::random`] from the proxy's seeded
    /// generator, applies it on top of the current ones, and returns it so
    /// the test can log it. Call [`heal`](Proxy::heal) in between for one
    /// fault at a time. The sequence depends only on the seed.
    ///
    /// # Errors
    ///
    /// As [`apply`](Proxy::apply).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), redial_chaos::Error> {
    /// let proxy = redial_chaos::Proxy::builder().seed(42).start("127.0.0.1:0", "127.0.0.1:9").await?;
    /// let fault = proxy.random_fault()?;
    /// println!("seed {} injected {fault:?}", proxy.seed());
    /// proxy.heal()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn random_fault(&self) -> Result<Fault, Error> {
        let fault = {
            let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
            Fault::random(&mut rng)
        };
        self.apply(fault)?;
        Ok(fault)
    }

    /// Current counters.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), redial_chaos::Error> {
    /// # let proxy = redial_chaos::Proxy::start("127.0.0.1:0", "127.0.0.1:9").await?;
    /// assert_eq!(proxy.stats().live, 0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn stats(&self) -> Stats {
        self.counters.snapshot()
    }

    /// Waits until `n` connections have been accepted in total since start.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] (with the count so far) if that takes longer than
    /// `timeout`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), redial_chaos::Error> {
    /// use std::time::Duration;
    /// let proxy = redial_chaos::Proxy::start("127.0.0.1:0", "127.0.0.1:9").await?;
    /// let err = proxy.wait_accepted(1, Duration::from_millis(10)).await.unwrap_err();
    /// assert!(matches!(err, redial_chaos::Error::Timeout { seen: 0, .. }));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn wait_accepted(&self, n: u64, timeout: Duration) -> Result<(), Error> {
        let mut accepted = self.counters.accepted.subscribe();
        let reached = tokio::time::timeout(timeout, accepted.wait_for(|&count| count >= n))
            .await
            .is_ok();
        if reached {
            return Ok(());
        }
        let seen = *accepted.borrow();
        Err(Error::Timeout {
            wanted: n,
            seen,
            waited: timeout,
        })
    }

    /// Stops listening, ends every connection task (their sockets close),
    /// and waits until all of that is done. Idempotent. Afterwards fault
    /// calls do nothing and [`accept`](Proxy::accept) fails.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), redial_chaos::Error> {
    /// let proxy = redial_chaos::Proxy::start("127.0.0.1:0", "127.0.0.1:9").await?;
    /// proxy.shutdown().await;
    /// assert!(!proxy.is_listening());
    /// assert_eq!(proxy.stats().live, 0);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn shutdown(&self) {
        self.slot.shut_down();
        let acceptor = self
            .acceptor
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(acceptor) = acceptor {
            // A join error means the task panicked or was cancelled with its
            // runtime; either way it has stopped, which is all we wait for.
            let _ = acceptor.await;
        }
    }
}

impl Drop for Proxy {
    /// Stops the proxy without waiting: the accept loop notices, aborts
    /// every connection task and exits on its own.
    fn drop(&mut self) {
        self.slot.shut_down();
    }
}

/// Accepts connections until the slot is shut down, one task per
/// connection; then aborts those tasks and waits for them.
async fn accept_loop(
    slot: Arc<ListenSlot>,
    config: Arc<LinkConfig>,
    faults: watch::Receiver<FaultState>,
    counters: Arc<Counters>,
    mut rng: SplitMix64,
    on_accept: Option<OnAccept>,
) {
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                if let Err(e) = done {
                    if e.is_panic() {
                        tracing::error!(error = %e, "connection task panicked");
                    }
                }
            }
            accepted = poll_fn(|cx| slot.poll_accept(cx)) => match accepted {
                None => break,
                Some(Ok((client, peer))) => {
                    // Before counting it: whoever sees the count move
                    // (wait_accepted) sees the callback done.
                    if let Some(f) = &on_accept {
                        f(peer);
                    }
                    let live = counters.accept();
                    let link = Link {
                        client,
                        peer,
                        config: Arc::clone(&config),
                        faults: faults.clone(),
                        live,
                        counters: Arc::clone(&counters),
                        rng: rng.fork(),
                        born: *faults.borrow(),
                    };
                    tasks.spawn(link.run());
                }
                Some(Err(e)) => {
                    // Usually transient (a client gave up, or out of file
                    // descriptors); pausing keeps the loop from spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
        }
    }
    tasks.shutdown().await;
    tracing::debug!(listen = %slot.addr(), "chaos proxy stopped");
}
