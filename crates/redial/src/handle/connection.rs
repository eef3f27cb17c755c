//! [`Connection`]: the application's handle on a managed connection, valid
//! across every reconnect until the connection is closed for good.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::endpoint::Endpoint;
use crate::error::{SendError, WaitError};
use crate::handle::disconnect::{block_on_until, Disconnecting};
use crate::handle::manager::OwnedRuntime;
use crate::handle::sender::Sender;
use crate::handle::socket::Socket;
use crate::queue::Refused;
use crate::reset::CloseReason;
use crate::shared::{Command, Shared, State};

/// Counters of one managed connection.
///
/// ```no_run
/// # fn f(conn: &redial::Connection) {
/// let s = conn.stats();
/// println!("{} connects, {} resets, {} bytes out", s.connects, s.resets, s.bytes_out);
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Successful connects.
    pub connects: u64,
    /// Live connections lost.
    pub resets: u64,
    /// Connections replaced, make-before-break, after their
    /// [`Options::max_lifetime`](crate::Options::max_lifetime) (each also
    /// counts in `connects`; none in `resets`).
    pub recycles: u64,
    /// Connect attempts that failed.
    pub failed_attempts: u64,
    /// Bytes read.
    pub bytes_in: u64,
    /// Bytes handed to the kernel, on every connection so far. Under TLS:
    /// bytes the TLS layer accepted, before encryption (up to one write's
    /// worth may still sit in it, unsent, when a connection dies).
    pub bytes_out: u64,
    /// Bytes accepted and not yet handed to the kernel: the send queue,
    /// the connection's unwritten batch, and the sends held while it is
    /// down (the [`Outage::Buffer`](crate::Outage::Buffer)
    /// buffer) or being replaced (those wait for the next socket). With
    /// `bytes_out`, the bytes handed back to `on_reset`/`on_close` and
    /// `discarded_bytes`, it accounts for every byte a send accepted.
    pub queued: usize,
    /// How long the current connection has been up (`None` when down).
    pub uptime: Option<Duration>,
    /// The last connect or I/O error, as text.
    pub last_error: Option<String>,
    /// Bytes that [`Sender`]s held when they were dropped and that the
    /// connection refused (it was closed, or down and rejecting sends).
    /// Also counted in `discarded_bytes`.
    pub sender_dropped: u64,
    /// Bytes accepted and then thrown away because the application did not
    /// take them: unsent bytes the default
    /// [`Handler::on_reset`](crate::Handler::on_reset) or `on_close` did
    /// not keep, and `sender_dropped`. Each discard is also logged with
    /// `warn!`. Zero when the handler keeps what it is handed back.
    pub discarded_bytes: u64,
}

/// The managed connection ended for good; says why.
///
/// ```
/// fn why(e: &redial::ClosedError) -> String {
///     // The message is "connection closed: " and the reason's own.
///     format!("{e} ({:?})", e.reason)
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
#[error("connection closed: {reason}")]
pub struct ClosedError {
    /// Why it closed.
    pub reason: CloseReason,
}

/// A managed connection: cheap to clone, valid across reconnects.
///
/// ```
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let server = std::net::TcpListener::bind("127.0.0.1:0")?;
/// # let echo = server.local_addr()?.to_string();
/// # std::thread::spawn(move || for s in server.incoming().flatten() { std::thread::spawn(move || std::io::copy(&mut &s, &mut &s)); });
/// let addr = "127.0.0.1:11211";
/// # let addr = echo.as_str();
/// let cm = redial::Manager::new();
/// let conn = cm.connect(addr, redial::handler().on_data(|_, d| print!("{}", String::from_utf8_lossy(d))))?;
/// conn.wait_connected().await?;
/// conn.send("version\r\n")?;
/// conn.disconnect().await;
/// assert_eq!(conn.state(), redial::State::Closed);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Connection {
    pub(crate) shared: Arc<Shared>,
    /// The manager's own runtime, if it has one: held (never read) so the
    /// connection keeps running after the `Manager` value is dropped.
    #[allow(dead_code)]
    pub(crate) runtime: Option<Arc<OwnedRuntime>>,
}

impl Connection {
    /// Queues bytes on the current connection without blocking. While the
    /// connection is down the [`Outage`](crate::Outage) policy decides:
    /// refuse (default) or buffer for the next connection.
    ///
    /// Not tied to one connection: a send that races a reconnect can go out
    /// on the new connection. For request/response protocols that match
    /// replies to requests per connection, send on the connection's
    /// [`Socket`] instead (see
    /// [`Socket`#socketsend-or-connectionsend](Socket#socketsend-or-connectionsend)).
    ///
    /// ```no_run
    /// # fn f(conn: &redial::Connection) {
    /// match conn.send("get k\r\n") {
    ///     Ok(()) => {}
    ///     Err(e) => eprintln!("{e}: {} bytes handed back", e.data().len()),
    /// }
    /// # }
    /// ```
    ///
    /// An empty `data` is no message: it queues nothing, wakes nothing and
    /// returns `Ok(())` whatever the connection's state (as every send
    /// does: [`Socket`], [`Sender`], [`Pool`](crate::Pool), and
    /// [`Stream`](crate::Stream)'s `Ok(0)`).
    pub fn send(&self, data: impl AsRef<[u8]>) -> Result<(), SendError> {
        let data = data.as_ref();
        if data.is_empty() {
            return Ok(());
        }
        self.shared
            .push(None, data)
            .map(drop)
            .map_err(|r| self.shared.send_error(r, data.to_vec()))
    }

    /// Queues bytes, waiting while the queue is full. Every 64 KiB queued,
    /// it also waits until the connection has taken what is queued, as a
    /// `BufWriter` waits for its socket: a producer that runs on the
    /// connection's thread lets it write early instead of filling the whole
    /// queue first, and one faster than its socket keeps the queue short.
    ///
    /// Every call takes the queue's lock, as any task or thread may hold
    /// this handle; a producer of many small messages goes faster through
    /// its own [`Sender`](Connection::sender).
    ///
    /// An empty `data` returns `Ok(())` at once and queues nothing (see
    /// [`Connection::send`]).
    ///
    /// Cancel-safe: the bytes are queued whole or not at all. Dropped while
    /// it waits for room, the future has queued none of them; dropped after
    /// they were handed over (while it waits for the connection to take
    /// them), they stay queued and are sent.
    ///
    /// ```no_run
    /// # async fn f(conn: redial::Connection) -> Result<(), redial::SendError> {
    /// for i in 0..1_000_000u32 {
    ///     conn.write(i.to_be_bytes()).await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn write(&self, data: impl AsRef<[u8]>) -> Result<(), SendError> {
        let data = data.as_ref();
        if data.is_empty() {
            return Ok(());
        }
        // The common case inline: one lock, no waiting machinery set up.
        match self.shared.push(None, data) {
            Ok(p) => {
                if p.hand_over {
                    self.shared.hand_over_turn().await;
                }
                Ok(())
            }
            Err(Refused::Full { .. }) => self.shared.push_wait(None, data).await,
            Err(r) => Err(self.shared.send_error(r, data.to_vec())),
        }
    }

    /// A sending handle for one producer: it gathers sends in a buffer of
    /// its own and hands them over in batches, which makes many small
    /// sends cheaper than through this shared handle. See [`Sender`].
    ///
    /// ```no_run
    /// # async fn f(conn: redial::Connection) -> Result<(), redial::SendError> {
    /// let mut tx = conn.sender();
    /// for i in 0..1_000_000u32 {
    ///     tx.write(i.to_be_bytes()).await?;
    /// }
    /// tx.flush().await?;
    /// # Ok(()) }
    /// ```
    pub fn sender(&self) -> Sender {
        Sender::new(self.shared.clone())
    }

    /// The live socket, when connected.
    ///
    /// ```no_run
    /// # fn f(conn: &redial::Connection) {
    /// if let Some(sock) = conn.socket() {
    ///     println!("{:?}", sock.peer_addr());
    /// }
    /// # }
    /// ```
    pub fn socket(&self) -> Option<Socket> {
        self.shared.info().socket.clone()
    }

    /// Where the connection is in its life cycle.
    ///
    /// ```no_run
    /// # fn f(conn: &redial::Connection) {
    /// if conn.state() == redial::State::Connected { /* ... */ }
    /// # }
    /// ```
    pub fn state(&self) -> State {
        self.shared.state()
    }

    /// Counters since the connection was made.
    ///
    /// ```no_run
    /// # fn f(conn: &redial::Connection) {
    /// println!("{:?}", conn.stats());
    /// # }
    /// ```
    pub fn stats(&self) -> Stats {
        let c = &self.shared.counters;
        let (queued, ledger) = {
            let q = self.shared.queue();
            (q.held() as usize, q.ledger)
        };
        let info = self.shared.info();
        Stats {
            connects: c.connects.load(Ordering::Relaxed),
            resets: c.resets.load(Ordering::Relaxed),
            recycles: info.seldom().map_or(0, |s| s.recycles),
            failed_attempts: c.failed_attempts.load(Ordering::Relaxed),
            bytes_in: c.bytes_in.load(Ordering::Relaxed),
            bytes_out: ledger.written,
            queued,
            uptime: info
                .connected_since
                .map(|t| crate::clock::now().saturating_duration_since(t)),
            last_error: info.last_error().map(str::to_string),
            sender_dropped: info.seldom().map_or(0, |s| s.sender_dropped),
            discarded_bytes: ledger.discarded,
        }
    }

    /// Waits until connected (and `on_connect` has run); fails when the
    /// connection closes for good first. A connection that is lost again
    /// before the waiter runs is not reported: the wait goes on for the
    /// next one (count connects with [`Connection::stats`] to see those).
    /// Once `disconnect` or `abort` has been called it never succeeds: it
    /// waits for the close to finish and fails with how it ended.
    ///
    /// ```no_run
    /// # async fn f(conn: redial::Connection) -> Result<(), redial::ClosedError> {
    /// let sock = conn.wait_connected().await?;
    /// let _ = sock.send("hello");
    /// # Ok(()) }
    /// ```
    pub async fn wait_connected(&self) -> Result<Socket, ClosedError> {
        loop {
            match self.shared.wait_state(State::Connected).await {
                State::Closed => return Err(self.closed_error()),
                _ => {
                    if self.shared.command().is_some() {
                        // A disconnect was requested: the connection never
                        // connects again and its socket refuses writes,
                        // while its state may still read Connected as the
                        // close flushes. Wait for the close itself, which
                        // says how it ended.
                        self.shared.wait_state(State::Closed).await;
                        return Err(self.closed_error());
                    }
                    if let Some(s) = self.socket() {
                        return Ok(s);
                    }
                    // Lost again between the state change and this look;
                    // wait for the next connect.
                    tokio::task::yield_now().await;
                }
            }
        }
    }

    /// Blocks the calling thread until connected (and `on_connect` has
    /// run), for at most `timeout`: the synchronous
    /// [`wait_connected`](Connection::wait_connected). On a timeout the
    /// connection goes on trying; call it again to wait more.
    ///
    /// For threads outside tokio (a synchronous `main`, a thread of your
    /// own). Where a tokio runtime is entered (a runtime's worker, inside
    /// `block_on`, a `spawn_blocking` closure) it returns
    /// [`WaitError::InsideRuntime`] at once rather than stall the runtime:
    /// await `wait_connected()` there, or from `spawn_blocking` use
    /// `Handle::current().block_on(tokio::time::timeout(t, conn.wait_connected()))`.
    ///
    /// ```
    /// use std::io::Read;
    /// use std::time::Duration;
    ///
    /// // A server to talk to.
    /// let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// let addr = listener.local_addr()?;
    ///
    /// let cm = redial::Manager::new(); // outside tokio: owns a small runtime
    /// let conn = cm.connect(addr, redial::handler())?;
    /// let sock = conn.wait_connected_blocking(Duration::from_secs(10))?;
    /// sock.send("hello")?;
    ///
    /// let (mut peer, _) = listener.accept()?;
    /// let mut got = [0u8; 5];
    /// peer.read_exact(&mut got)?;
    /// assert_eq!(&got, b"hello");
    /// cm.disconnect_all().wait_blocking()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wait_connected_blocking(&self, timeout: Duration) -> Result<Socket, WaitError> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(WaitError::InsideRuntime);
        }
        // A timeout too large for the clock waits for ever.
        let deadline = std::time::Instant::now().checked_add(timeout);
        match block_on_until(self.wait_connected(), deadline) {
            Some(Ok(sock)) => Ok(sock),
            Some(Err(closed)) => Err(WaitError::Closed {
                reason: closed.reason,
            }),
            None => Err(WaitError::TimedOut { waited: timeout }),
        }
    }

    /// Waits until the connection has closed for good; returns why.
    ///
    /// ```no_run
    /// # async fn f(conn: redial::Connection) {
    /// let why = conn.closed().await;
    /// println!("{why}");
    /// # }
    /// ```
    pub async fn closed(&self) -> CloseReason {
        self.shared.wait_state(State::Closed).await;
        self.closed_error().reason
    }

    fn closed_error(&self) -> ClosedError {
        ClosedError {
            reason: self
                .shared
                .info()
                .close_reason()
                .cloned()
                .unwrap_or(CloseReason::Shutdown),
        }
    }

    /// Closes for good: stops reconnecting, flushes queued bytes within the
    /// grace period ([`Options::close_grace`](crate::Options::close_grace)),
    /// sends FIN. Calling it again is harmless. Await to wait for the close:
    /// once the await returns, `on_close` has run and no callback of this
    /// connection runs again, so the application may tear down what its
    /// handler uses. Dropped instead (fire-and-forget), the close goes on
    /// and callbacks (`on_data` while it flushes, `on_close`) may still
    /// run after the call.
    ///
    /// From the call on, every send (on this handle, its sockets and
    /// senders) is refused with
    /// [`SendError::Disconnected`]: what was
    /// queued before the call goes out, nothing after it. Once it has
    /// returned, no `on_connect` (nor `Resume::With` entry) starts: one
    /// already under way on another thread is waited for (not when called
    /// from inside one), and an attempt that completes later is closed
    /// without it.
    ///
    /// ```no_run
    /// # async fn f(conn: redial::Connection) {
    /// conn.disconnect().await;
    /// assert_eq!(conn.state(), redial::State::Closed);
    /// # }
    /// ```
    pub fn disconnect(&self) -> Disconnecting {
        self.shared.request(Command::Disconnect);
        Disconnecting::new(vec![self.shared.clone()]).keeping(self.runtime.clone())
    }

    /// Reconnects now: a connection that is backing off ends its wait and
    /// makes its next attempt at once, for the moment the application knows
    /// the network is back (an interface came up, a peer announced itself).
    /// The attempt still queues under the manager's cap on attempts in
    /// flight ([`ManagerBuilder::max_connecting`](crate::ManagerBuilder::max_connecting)),
    /// and a failed attempt backs off again on the usual schedule. A
    /// connection that is connected, connecting or closed is not touched;
    /// one that waits for another connection's probe of the same endpoint
    /// follows that probe ([`Manager::reconnect_now_to`](crate::Manager::reconnect_now_to)
    /// reaches them all).
    ///
    /// ```no_run
    /// # fn f(conn: redial::Connection) {
    /// conn.reconnect_now();
    /// # }
    /// ```
    pub fn reconnect_now(&self) {
        self.shared.kick();
    }

    /// Closes for good at once with RST; queued bytes are handed back in
    /// [`Close::unsent`](crate::Close::unsent). Sends are refused from the
    /// call on, and no `on_connect` starts once it has returned, as after
    /// [`Connection::disconnect`]; awaited, it returns once `on_close` has
    /// run, the connection's last callback.
    ///
    /// ```no_run
    /// # fn f(conn: redial::Connection) {
    /// conn.abort();
    /// # }
    /// ```
    pub fn abort(&self) -> Disconnecting {
        self.shared.request(Command::Abort);
        Disconnecting::new(vec![self.shared.clone()]).keeping(self.runtime.clone())
    }

    /// The endpoint this connection goes to.
    ///
    /// ```no_run
    /// # fn f(conn: &redial::Connection) {
    /// println!("{}", conn.endpoint());
    /// # }
    /// ```
    pub fn endpoint(&self) -> &Endpoint {
        &self.shared.endpoint
    }

    /// A number unique within the manager (connections made later have
    /// larger ids).
    ///
    /// ```no_run
    /// # fn f(conn: &redial::Connection) {
    /// println!("#{}", conn.id());
    /// # }
    /// ```
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    /// The name of the pool it belongs to, if any.
    ///
    /// ```no_run
    /// # fn f(conn: &redial::Connection) {
    /// println!("{:?}", conn.pool());
    /// # }
    /// ```
    pub fn pool(&self) -> Option<&str> {
        self.shared.pool.as_ref().map(|p| &*p.name)
    }

    pub(crate) fn queued(&self) -> usize {
        self.shared.queue().queued()
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.shared.id)
            .field("endpoint", &self.shared.endpoint)
            .field("state", &self.state())
            .finish()
    }
}
