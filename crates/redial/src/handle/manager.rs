//! [`Manager`]: makes managed connections and pools, finds them again, and
//! closes them all.
//!
//! Inside a tokio runtime a manager uses that runtime; made outside one it
//! starts a small runtime of its own (one worker thread), so synchronous
//! programs can use redial too.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::runtime::{Handle, Runtime};
use tokio::sync::broadcast;

use crate::driver::gate::AttemptGate;
use crate::driver::{Driver, Link};
use crate::endpoint::{Endpoint, ToEndpoint};
use crate::error::{ConnectError, PoolError};
use crate::events::{Event, Events};
use crate::handle::connection::Connection;
use crate::handle::disconnect::Disconnecting;
use crate::handle::pool::follow::Follow;
use crate::handle::pool::Pool;
use crate::handle::stream::Stream;
use crate::handler::Handler;
use crate::options::Options;
use crate::shared::{Command, PoolTag, Shared};

/// The default options, shared by every connection made without options of
/// its own, so each of them does not carry its own copy.
pub(crate) fn default_options() -> Arc<Options> {
    static DEFAULT: std::sync::OnceLock<Arc<Options>> = std::sync::OnceLock::new();
    DEFAULT.get_or_init(|| Arc::new(Options::default())).clone()
}

#[derive(Default)]
pub(crate) struct Registry {
    /// Open connections by id: ids grow, so iteration is oldest first.
    /// Their shared state only, 8 bytes a connection where a `Connection`
    /// takes 16: the manager holds its runtime itself.
    conns: BTreeMap<u64, Arc<Shared>>,
    pools: HashMap<String, Pool>,
}

/// A runtime of the manager's own. The manager and every [`Connection`] it
/// made hold it, so a connection keeps running when the `Manager` value is
/// dropped; when the last holder lets go, it shuts down (without blocking,
/// so that may happen on any thread, one of its own included).
pub(crate) struct OwnedRuntime(Option<Runtime>);

impl std::fmt::Debug for OwnedRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OwnedRuntime")
    }
}

impl Drop for OwnedRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

pub(crate) struct ManagerInner {
    handle: Handle,
    /// `None` on the caller's runtime.
    runtime: Option<Arc<OwnedRuntime>>,
    registry: Mutex<Registry>,
    events: broadcast::Sender<Event>,
    attempts: Arc<AttemptGate>,
    probes: Option<crate::driver::probe::Probes>,
    next_id: AtomicU64,
    seed: u64,
    /// The options of the last connection made with options of its own:
    /// connections made with equal options share this one copy.
    last_options: Mutex<Option<Arc<Options>>>,
}

impl ManagerInner {
    pub(crate) fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A handle on the connection of `shared`, which keeps the manager's
    /// runtime (if it has one of its own) running.
    fn connection(&self, shared: &Arc<Shared>) -> Connection {
        Connection {
            shared: shared.clone(),
            runtime: self.runtime.clone(),
        }
    }

    /// Forgets a connection that closed for good, and its place in the
    /// endpoint's probe.
    pub(crate) fn forget(&self, shared: &Shared) {
        self.registry().conns.remove(&shared.id);
        if let Some(p) = &self.probes {
            p.release(&shared.endpoint);
        }
    }

    /// `opts` behind an `Arc`, shared with earlier connections whose
    /// options are the same: thousands of connections made with one
    /// `Options` value then cost one copy, not one each.
    pub(crate) fn share_options(&self, opts: Options) -> Arc<Options> {
        let mut last = self.last_options.lock().unwrap_or_else(|p| p.into_inner());
        match &*last {
            Some(a) if a.same_as(&opts) => a.clone(),
            _ => {
                let a = Arc::new(opts);
                *last = Some(a.clone());
                a
            }
        }
    }

    /// [`share_options`](Self::share_options) for options not yet
    /// validated: options equal to the last shared ones passed the check
    /// already, so thousands of connections made with one `Options` value
    /// are checked once.
    pub(crate) fn share_valid_options(
        &self,
        opts: Options,
    ) -> Result<Arc<Options>, crate::error::OptionsError> {
        {
            let last = self.last_options.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(a) = last.as_ref().filter(|a| a.same_as(&opts)) {
                return Ok(a.clone());
            }
        }
        opts.validate()?;
        Ok(self.share_options(opts))
    }

    /// The sender of the manager's events.
    pub(crate) fn events_sender(&self) -> broadcast::Sender<Event> {
        self.events.clone()
    }

    /// The runtime the manager's tasks run on.
    pub(crate) fn runtime_handle(&self) -> &Handle {
        &self.handle
    }

    /// Unregisters `pool`, and only it: a newer pool that took the same
    /// name stays.
    pub(crate) fn remove_pool(&self, pool: &Pool) {
        let mut r = self.registry();
        if r.pools.get(pool.name()).is_some_and(|p| p.same_as(pool)) {
            r.pools.remove(pool.name());
        }
    }

    pub(crate) fn spawn<H: Handler>(
        self: &Arc<Self>,
        endpoint: Endpoint,
        handler: H,
        opts: Arc<Options>,
        pool: Option<Arc<PoolTag>>,
    ) -> Connection {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        // Connections that never give up share one probe per endpoint.
        let (health, endpoint) = match &self.probes {
            Some(p) if opts.max_attempts.is_none() && opts.give_up_after.is_none() => {
                let (health, shared_endpoint) = p.join(endpoint);
                (Some(health), shared_endpoint)
            }
            _ => (None, endpoint),
        };
        let shared = Arc::new(Shared::new(id, endpoint, pool, opts.clone()));
        let conn = self.connection(&shared);
        self.registry().conns.insert(id, shared.clone());
        let seed = opts
            .seed
            .unwrap_or_else(|| self.seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let link = Link::new(
            self.events.clone(),
            self.attempts.clone(),
            Arc::downgrade(self),
        );
        let driver = Driver::new(handler, shared, opts, link, seed).with_health(health);
        self.handle.spawn(driver.run());
        conn
    }
}

/// Settings of a [`Manager`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let cm = redial::Manager::builder().max_connecting(16).build();
/// # let _ = cm;
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ManagerBuilder {
    max_connecting: usize,
    own_runtime: bool,
    probe_per_endpoint: bool,
}

impl ManagerBuilder {
    /// Default cap on connect attempts in flight across a manager: enough to
    /// bring back thousands of connections within a second on a LAN, few
    /// enough that a recovering server is not hit by a wall of SYNs.
    ///
    /// Value: 64.
    ///
    /// ```
    /// assert_eq!(redial::ManagerBuilder::DEFAULT_MAX_CONNECTING, 64);
    /// ```
    pub const DEFAULT_MAX_CONNECTING: usize = 64;
}

impl ManagerBuilder {
    /// At most this many connect attempts in flight across the manager
    /// (default [`ManagerBuilder::DEFAULT_MAX_CONNECTING`]); at least 1.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let cm = redial::Manager::builder().max_connecting(128).build();
    /// assert_eq!(cm.attempts_in_flight(), 0);
    /// # }
    /// ```
    #[must_use]
    pub fn max_connecting(mut self, n: usize) -> Self {
        self.max_connecting = n.max(1);
        self
    }

    /// While an endpoint is down, let one of its connections probe it and
    /// the others wait for that probe instead of making attempts of their
    /// own (default on). Only connections that never give up take part
    /// (no `max_attempts`, no `give_up_after`): the others count their own
    /// attempts. Waiting connections report no failed attempts and are
    /// released, under the cap of attempts in flight, when the probe
    /// connects. A probe shared by several connections looks more often
    /// than one connection's schedule: every `max(500 ms, T / 16)` of an
    /// outage of length T so far (minus up to 20 % jitter), never more
    /// often than the sharing connections' own schedules together.
    ///
    /// ```
    /// let cm = redial::Manager::builder().probe_per_endpoint(false).own_runtime(true).build();
    /// # let _ = cm;
    /// ```
    #[must_use]
    pub fn probe_per_endpoint(mut self, on: bool) -> Self {
        self.probe_per_endpoint = on;
        self
    }

    /// Always start a runtime of the manager's own, even inside tokio (the
    /// connections then outlive the caller's runtime).
    ///
    /// ```
    /// let cm = redial::Manager::builder().own_runtime(true).build();
    /// # let _ = cm;
    /// ```
    #[must_use]
    pub fn own_runtime(mut self, yes: bool) -> Self {
        self.own_runtime = yes;
        self
    }

    /// Builds the manager. Panics only if the operating system refuses to
    /// start the manager's own runtime thread; [`ManagerBuilder::try_build`]
    /// returns that error instead.
    ///
    /// ```
    /// let cm = redial::Manager::builder().build();
    /// # let _ = cm;
    /// ```
    pub fn build(self) -> Manager {
        self.try_build()
            .unwrap_or_else(|e| panic!("redial: cannot start the manager's runtime: {e}"))
    }

    /// Builds the manager, or says why its runtime could not start.
    ///
    /// ```
    /// let cm = redial::Manager::builder().try_build()?;
    /// # let _ = cm; Ok::<(), std::io::Error>(())
    /// ```
    pub fn try_build(self) -> io::Result<Manager> {
        let (handle, runtime) = match Handle::try_current() {
            Ok(h) if !self.own_runtime => (h, None),
            _ => {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name("redial")
                    .enable_all()
                    .build()?;
                (rt.handle().clone(), Some(rt))
            }
        };
        let (events, _) = broadcast::channel(Events::CAPACITY);
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x5EED);
        Ok(Manager {
            inner: Arc::new(ManagerInner {
                handle,
                runtime: runtime.map(|rt| Arc::new(OwnedRuntime(Some(rt)))),
                registry: Mutex::new(Registry::default()),
                events,
                attempts: Arc::new(AttemptGate::new(self.max_connecting)),
                probes: self
                    .probe_per_endpoint
                    .then(|| crate::driver::probe::Probes::new(seed)),
                next_id: AtomicU64::new(1),
                seed,
                last_options: Mutex::new(None),
            }),
        })
    }
}

/// Makes and keeps managed connections and pools.
///
/// Cheap to clone. Inside a tokio runtime a manager runs its connections
/// there; made outside one, it starts a small runtime of its own.
///
/// **A connection outlives the `Manager` value it came from.** Each
/// [`Connection`] (and so each [`Pool`] member) holds what it runs on: a
/// function may make a manager, connect and return the connection, and
/// the connection goes on working. Connections run until they are closed
/// (`disconnect`, `abort`, [`Resume::Stop`](crate::Resume::Stop), a give-up
/// policy). Only when the manager *and* every handle of its connections
/// are dropped does a manager's own runtime shut down; its connections
/// then close with [`CloseReason::Shutdown`](crate::CloseReason::Shutdown)
/// ("the runtime shut down"), `on_close` runs and whatever was still
/// queued is handed back there. On the caller's runtime, connections keep
/// running until they are closed or that runtime ends. To close
/// everything, call [`Manager::disconnect_all`] and wait for it (in a
/// synchronous `main`, `.wait_blocking()` before returning).
///
/// ```
/// use redial::{Handler, Manager, Socket};
///
/// struct Memcache;
/// impl Handler for Memcache {
///     fn on_connect(&mut self, sock: &Socket) { let _ = sock.send("version\r\n"); }
///     fn on_data(&mut self, _: &Socket, data: &[u8]) { print!("{}", String::from_utf8_lossy(data)); }
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let server = std::net::TcpListener::bind("127.0.0.1:0")?;
/// # let echo = server.local_addr()?.to_string();
/// # std::thread::spawn(move || for s in server.incoming().flatten() { std::thread::spawn(move || std::io::copy(&mut &s, &mut &s)); });
/// let addr = "127.0.0.1:11211";
/// # let addr = echo.as_str();
/// let cm = Manager::new();
/// let conn = cm.connect(addr, Memcache)?;
/// let pool = cm.create_pool("cache")?;
/// pool.add_connection(addr, Memcache)?;
/// assert!(cm.get_connection(addr).is_some());
/// conn.wait_connected_blocking(std::time::Duration::from_secs(10))?;
/// cm.disconnect_all().wait_blocking()?; // flush, FIN, and wait for it
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Manager {
    pub(crate) inner: Arc<ManagerInner>,
}

impl Default for Manager {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = self.inner.registry();
        f.debug_struct("Manager")
            .field("connections", &r.conns.len())
            .field("pools", &r.pools.len())
            .finish()
    }
}

/// Streams: a managed connection behind `AsyncRead` and `AsyncWrite`.
impl Manager {
    /// A [`Stream`] over a new managed connection. A reset shows as one
    /// `ConnectionReset` error on the next read or write.
    ///
    /// ```no_run
    /// # fn f(cm: redial::Manager) -> Result<(), redial::ConnectError> {
    /// let stream = cm.stream("127.0.0.1:6379", redial::Options::new())?;
    /// # let _ = stream; Ok(()) }
    /// ```
    pub fn stream(&self, endpoint: impl ToEndpoint, opts: Options) -> Result<Stream, ConnectError> {
        self.make_stream(endpoint, opts, false)
    }

    /// A [`Stream`] that hides resets: reads and writes wait across outages
    /// and never fail with `ConnectionReset` (a write still gives up after
    /// the outage wait, [`Stream::set_outage_wait`]; `None` makes it wait as
    /// long as the connection keeps trying).
    ///
    /// What it can lose or duplicate, so choose it only for streams that
    /// tolerate both (logs, metrics): bytes that were in kernel buffers when
    /// a connection died are lost; chunks never handed to the kernel are
    /// sent again on the next connection, the cut one whole, so its first
    /// bytes may arrive twice; the peer sees the stream restart mid-message,
    /// and the reader gets the lost connection's last unread bytes followed
    /// by the next connection's. (A stream wrapper that reconnects without
    /// saying so, as `stubborn-io` does, has the same losses without this
    /// list.)
    ///
    /// What it never does is drop what did not leave: the re-send goes into
    /// the next connection's queue before any new write, as much as the
    /// queue's limit takes at once, and the rest as room is made (a write
    /// or flush waits for it first). If the stream closes before all of it
    /// is re-sent, [`Stream::take_unsent`] hands it back, and a `warn!`
    /// says so.
    ///
    /// ```no_run
    /// # fn f(cm: redial::Manager) -> Result<(), redial::ConnectError> {
    /// let logs = cm.stream_transparent("127.0.0.1:5140", redial::Options::new())?;
    /// # let _ = logs; Ok(()) }
    /// ```
    pub fn stream_transparent(
        &self,
        endpoint: impl ToEndpoint,
        opts: Options,
    ) -> Result<Stream, ConnectError> {
        self.make_stream(endpoint, opts, true)
    }
}

impl Manager {
    /// A manager with the defaults: on the current tokio runtime if there
    /// is one, else on a small runtime of its own.
    ///
    /// Dropping the manager does not close its connections: each
    /// [`Connection`] keeps what it runs on, so one returned from a function
    /// that made its own manager goes on working. They close when the
    /// application closes them, or, with a runtime of the manager's own,
    /// once the manager and every handle of its connections are dropped
    /// ([`CloseReason::Shutdown`](crate::CloseReason::Shutdown)).
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// fn connect_to(addr: std::net::SocketAddr) -> redial::Connection {
    ///     let cm = redial::Manager::new(); // outside tokio: owns a runtime
    ///     cm.connect(addr, redial::handler()).unwrap()
    /// } // `cm` is dropped here; the connection lives on
    ///
    /// let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// let conn = connect_to(listener.local_addr()?);
    /// conn.wait_connected_blocking(Duration::from_secs(10))?;
    /// conn.send("still here")?;
    /// conn.disconnect().wait_blocking()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// A builder for a manager with other settings.
    ///
    /// ```
    /// let cm = redial::Manager::builder().max_connecting(8).own_runtime(true).build();
    /// # let _ = cm;
    /// ```
    pub fn builder() -> ManagerBuilder {
        ManagerBuilder {
            max_connecting: ManagerBuilder::DEFAULT_MAX_CONNECTING,
            own_runtime: false,
            probe_per_endpoint: true,
        }
    }

    /// Starts a managed connection with the default [`Options`].
    ///
    /// Errors only on bad input (endpoint, options): connect attempts that
    /// fail are retried and reported to `on_connect_failed`.
    ///
    /// ```no_run
    /// # fn f(cm: redial::Manager) -> Result<(), redial::ConnectError> {
    /// let conn = cm.connect("127.0.0.1:6379", redial::handler().on_data(|_, _| {}))?;
    /// # let _ = conn; Ok(()) }
    /// ```
    pub fn connect<H: Handler>(
        &self,
        endpoint: impl ToEndpoint,
        handler: H,
    ) -> Result<Connection, ConnectError> {
        let endpoint = endpoint.to_endpoint()?;
        Ok(self.inner.spawn(endpoint, handler, default_options(), None))
    }

    /// Starts a managed connection with the given [`Options`].
    ///
    /// ```no_run
    /// # fn f(cm: redial::Manager) -> Result<(), redial::ConnectError> {
    /// let opts = redial::Options::new().max_attempts(3);
    /// let conn = cm.connect_with(("cache.local", 11211), redial::handler(), opts)?;
    /// # let _ = conn; Ok(()) }
    /// ```
    pub fn connect_with<H: Handler>(
        &self,
        endpoint: impl ToEndpoint,
        handler: H,
        opts: Options,
    ) -> Result<Connection, ConnectError> {
        let endpoint = endpoint.to_endpoint()?;
        let opts = self.inner.share_valid_options(opts)?;
        Ok(self.inner.spawn(endpoint, handler, opts, None))
    }

    /// The oldest open connection to `endpoint` (as written: `localhost:80`
    /// and `127.0.0.1:80` differ), not counting pool members; `None` when
    /// there is none or the endpoint does not parse.
    ///
    /// ```no_run
    /// # fn f(cm: redial::Manager) {
    /// if let Some(conn) = cm.get_connection("127.0.0.1:11211") {
    ///     let _ = conn.send("stats\r\n");
    /// }
    /// # }
    /// ```
    pub fn get_connection(&self, endpoint: impl ToEndpoint) -> Option<Connection> {
        let endpoint = endpoint.to_endpoint().ok()?;
        self.inner
            .registry()
            .conns
            .values()
            .find(|s| s.pool.is_none() && s.endpoint == endpoint)
            .map(|s| self.inner.connection(s))
    }

    /// Every open connection to `endpoint`, pool members included, oldest first.
    ///
    /// ```no_run
    /// # fn f(cm: redial::Manager) {
    /// println!("{} connections", cm.connections_to("127.0.0.1:11211").len());
    /// # }
    /// ```
    pub fn connections_to(&self, endpoint: impl ToEndpoint) -> Vec<Connection> {
        let Ok(endpoint) = endpoint.to_endpoint() else {
            return Vec::new();
        };
        self.inner
            .registry()
            .conns
            .values()
            .filter(|s| s.endpoint == endpoint)
            .map(|s| self.inner.connection(s))
            .collect()
    }

    /// Every open connection, pool members included, oldest first.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// assert!(redial::Manager::new().connections().is_empty());
    /// # }
    /// ```
    pub fn connections(&self) -> Vec<Connection> {
        let r = self.inner.registry();
        r.conns.values().map(|s| self.inner.connection(s)).collect()
    }

    /// Creates an empty pool; an error when the name is taken.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), redial::PoolError> {
    /// let cm = redial::Manager::new();
    /// let pool = cm.create_pool("myPool")?;
    /// assert_eq!(pool.name(), "myPool");
    /// assert!(cm.create_pool("myPool").is_err());
    /// # Ok(()) }
    /// ```
    pub fn create_pool(&self, name: &str) -> Result<Pool, PoolError> {
        if name.is_empty() {
            return Err(PoolError::EmptyName);
        }
        let mut r = self.inner.registry();
        if r.pools.contains_key(name) {
            return Err(PoolError::NameTaken { name: name.into() });
        }
        let pool = Pool::new(name, Arc::downgrade(&self.inner));
        r.pools.insert(name.to_string(), pool.clone());
        Ok(pool)
    }

    /// Creates a pool that follows a name: one member per address
    /// `follow`'s `host:port` resolves to (or [`Follow::per_address`]),
    /// each with the handler `handlers` makes for its address. An error
    /// when the pool's name is taken or the target is not `host:port`.
    ///
    /// This is how a client follows a fleet behind a name (a Kubernetes
    /// headless service, Consul's DNS interface, a round-robin record)
    /// with no coordination service: the name is resolved again every
    /// [`Follow::every`] (default 30 s, as gRPC) and soon after a member's
    /// connection fails. A new address gets new members; a member whose
    /// address is gone is drained (it takes no new sends or picks, its
    /// queued bytes are flushed within the grace period and what could not
    /// go out is handed back to its handler's `on_close`), then closed. A
    /// lookup that fails or returns nothing keeps the last good members,
    /// logs a warning and emits [`EventKind::ResolveFailed`](crate::EventKind::ResolveFailed):
    /// DNS trouble never empties the pool. Members added and drained are
    /// events too ([`EventKind::MemberAdded`](crate::EventKind::MemberAdded),
    /// [`EventKind::MemberDraining`](crate::EventKind::MemberDraining)).
    /// The first members appear after the first lookup: wait with
    /// [`Pool::wait_live`]. The pool follows the name until
    /// [`Pool::disconnect`] or [`Manager::disconnect_all`].
    ///
    /// ```no_run
    /// # async fn f(cm: redial::Manager) -> Result<(), redial::PoolError> {
    /// use redial::Follow;
    ///
    /// let pool = cm.create_pool_following("cache", Follow::new("cache.svc:11211").per_address(2), |_addr| {
    ///     redial::handler().on_data(|_, _| {})
    /// })?;
    /// pool.wait_live(1).await;
    /// let _ = pool.pick_for("user:42").map(|c| c.send("get user:42\r\n"));
    /// # Ok(()) }
    /// ```
    pub fn create_pool_following<H, F>(
        &self,
        name: &str,
        follow: Follow,
        handlers: F,
    ) -> Result<Pool, PoolError>
    where
        H: Handler,
        F: FnMut(std::net::SocketAddr) -> H + Send + 'static,
    {
        follow
            .validate()
            .map_err(|reason| PoolError::CannotFollow {
                target: follow.target().to_string(),
                reason,
            })?;
        let pool = self.create_pool(name)?;
        crate::handle::pool::follow::start(&self.inner, pool.clone(), follow, handlers);
        Ok(pool)
    }

    /// The pool with this name.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), redial::PoolError> {
    /// let cm = redial::Manager::new();
    /// cm.create_pool("myPool")?;
    /// assert!(cm.get_pool("myPool").is_some());
    /// assert!(cm.get_pool("other").is_none());
    /// # Ok(()) }
    /// ```
    pub fn get_pool(&self, name: &str) -> Option<Pool> {
        self.inner.registry().pools.get(name).cloned()
    }

    /// Disconnects every connection this manager made and is still open,
    /// pools included (the pools are removed). Await to wait until all have
    /// closed (no callback of theirs runs after that, see
    /// [`Disconnecting`]); in synchronous code,
    /// [`Disconnecting::wait_blocking`]. As for
    /// [`Connection::disconnect`], sends are refused from the call on.
    ///
    /// ```no_run
    /// # async fn f(cm: redial::Manager) {
    /// cm.disconnect_all().await;
    /// assert!(cm.connections().is_empty());
    /// # }
    /// ```
    pub fn disconnect_all(&self) -> Disconnecting {
        let pools: Vec<_> = self
            .inner
            .registry()
            .pools
            .drain()
            .map(|(_, p)| p)
            .collect();
        // Pools close before the connections are listed: a member added
        // meanwhile is either refused or registered, so listed below.
        for p in &pools {
            p.close();
        }
        let conns: Vec<_> = self.inner.registry().conns.values().cloned().collect();
        for c in &conns {
            c.request(Command::Disconnect);
        }
        Disconnecting::new(conns).keeping(self.inner.runtime.clone())
    }

    /// Reconnects every connection of this manager that is backing off now
    /// ([`Connection::reconnect_now`]), pool members included: for the
    /// moment the network comes back. The attempts queue under the cap on
    /// attempts in flight ([`ManagerBuilder::max_connecting`]), so a
    /// thousand connections do not all dial at once.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let cm = redial::Manager::new();
    /// cm.reconnect_now(); // nothing to do: no connection
    /// # }
    /// ```
    pub fn reconnect_now(&self) {
        for c in self.connections() {
            c.reconnect_now();
        }
    }

    /// Reconnects now every connection to `endpoint` (as written, pool
    /// members included) that is backing off: for a server known to be
    /// back. Returns how many connections were asked.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let cm = redial::Manager::new();
    /// assert_eq!(cm.reconnect_now_to("127.0.0.1:11211"), 0);
    /// # }
    /// ```
    pub fn reconnect_now_to(&self, endpoint: impl ToEndpoint) -> usize {
        let conns = self.connections_to(endpoint);
        for c in &conns {
            c.reconnect_now();
        }
        conns.len()
    }

    /// Subscribes to every state change of every connection from now on.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let cm = redial::Manager::new();
    /// let mut events = cm.events();
    /// assert!(events.try_recv().is_none());
    /// # }
    /// ```
    pub fn events(&self) -> Events {
        Events::new(self.inner.events.subscribe())
    }

    /// Connect attempts in flight right now (never above the cap set by
    /// [`ManagerBuilder::max_connecting`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// assert_eq!(redial::Manager::new().attempts_in_flight(), 0);
    /// # }
    /// ```
    pub fn attempts_in_flight(&self) -> usize {
        self.inner.attempts.in_flight()
    }

    /// The most connect attempts that were in flight at once since the
    /// manager was made or since the last call of this method, which starts
    /// a new measurement.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// assert_eq!(redial::Manager::new().take_peak_attempts_in_flight(), 0);
    /// # }
    /// ```
    pub fn take_peak_attempts_in_flight(&self) -> usize {
        self.inner.attempts.reset_peak()
    }

    /// A snapshot: every open connection by state (pool members
    /// included), attempts in flight, the endpoints that are down with
    /// their next attempt, and each pool's live and total members. Reads
    /// the state each connection keeps, without waiting for any of them:
    /// cheap enough to call every second with thousands of connections.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let cm = redial::Manager::new();
    /// let s = cm.status();
    /// println!("{} up, {} down endpoints", s.connections.connected, s.endpoints_down.len());
    /// assert_eq!(s.connections.total(), 0);
    /// # }
    /// ```
    pub fn status(&self) -> crate::Status {
        let (connections, endpoints_down, pools) = {
            let r = self.inner.registry();
            let (counts, down) = crate::handle::status::tally(r.conns.values().map(|s| &**s));
            let pools: Vec<Pool> = r.pools.values().cloned().collect();
            (counts, down, pools)
        };
        // Each pool is read after the registry lock is released: a pool
        // adding a member takes its own lock, then the registry's.
        let mut pools: Vec<crate::PoolStatus> = pools.iter().map(Pool::status).collect();
        pools.sort_by(|a, b| a.name.cmp(&b.name));
        crate::Status {
            connections,
            attempts_in_flight: self.attempts_in_flight(),
            endpoints_down,
            pools,
        }
    }

    /// The runtime the manager's connections run on.
    ///
    /// ```
    /// let cm = redial::Manager::new();
    /// let answer = cm.runtime().block_on(async { 42 });
    /// assert_eq!(answer, 42);
    /// ```
    pub fn runtime(&self) -> &Handle {
        &self.inner.handle
    }
}
