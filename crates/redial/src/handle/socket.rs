//! The live connection as the application sees it: [`Socket`].
//!
//! A `Socket` belongs to one connection (one generation). After a reset it
//! refuses writes, so bytes meant for an old connection never leak into the
//! next one; the [`Connection`](crate::Connection) handle is the one that
//! outlives reconnects.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use socket2::SockRef;
use tokio::net::{TcpStream, UnixStream};

use crate::driver::transport::Transport;
use crate::error::SendError;
use crate::handle::disconnect::Disconnecting;
use crate::queue::Refused;
use crate::shared::{Command, Shared};

pub(crate) struct SocketInner {
    pub(crate) shared: Arc<Shared>,
    pub(crate) generation: u64,
    pub(crate) io: Transport,
}

/// The live connection: cheap to clone and keep.
///
/// `send` queues without blocking; `write().await` waits for room; `tcp()`
/// and `sock_ref()` give the socket itself for options, addresses and
/// direct I/O. Once this connection is lost, every write is refused with
/// [`SendError::Closed`] (a kept `Socket` also keeps the dead socket's file
/// descriptor open until it is dropped).
///
/// # `Socket::send` or `Connection::send`?
///
/// A `Socket` is one connection: its sends go out on that connection or
/// are refused, never on the next one. A
/// [`Connection`](crate::Connection) outlives reconnects: its sends go on
/// whichever connection is current, so one that races a reconnect can go
/// out on the new connection (after `on_connect`), and with
/// [`Outage::Buffer`](crate::Outage::Buffer) bytes sent while down go out
/// on the next one by design. For request/response protocols that match
/// replies to requests in order *per connection* (a FIFO of pending
/// requests, cleared on reset), send requests with the `Socket` of the
/// connection the FIFO belongs to. For fire-and-forget data that may go on
/// any connection, `Connection::send` is simpler.
///
/// ```
/// use std::collections::VecDeque;
/// use std::sync::mpsc;
/// use redial::{Handler, Reset, Resume, Socket};
///
/// /// A pipelined client: replies come back in request order, per connection.
/// struct Client {
///     pending: VecDeque<u32>, // requests sent on the current connection, oldest first
///     next: u32,
///     replies: mpsc::Sender<u32>,
/// }
///
/// impl Client {
///     fn request(&mut self, sock: &Socket) {
///         // Tied to this connection: refused, not sent on the next one,
///         // once it is gone; `pending` never waits for a reply that will
///         // not come.
///         if sock.send(format!("req {}\n", self.next)).is_ok() {
///             self.pending.push_back(self.next);
///             self.next += 1;
///         }
///     }
/// }
///
/// impl Handler for Client {
///     fn on_connect(&mut self, sock: &Socket) {
///         self.request(sock);
///         self.request(sock);
///     }
///     fn on_data(&mut self, _sock: &Socket, data: &[u8]) {
///         // One reply per line (a real client keeps a partial line for later).
///         for _reply in data.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
///             if let Some(id) = self.pending.pop_front() {
///                 let _ = self.replies.send(id);
///             }
///         }
///     }
///     fn on_reset(&mut self, _: &Reset) -> Resume {
///         // The lost connection's replies will never come: resend or report.
///         self.pending.clear();
///         Resume::Reconnect
///     }
/// }
///
/// # let server = std::net::TcpListener::bind("127.0.0.1:0")?;
/// # let echo = server.local_addr()?;
/// # std::thread::spawn(move || for s in server.incoming().flatten() { std::thread::spawn(move || std::io::copy(&mut &s, &mut &s)); });
/// let (tx, replies) = mpsc::channel();
/// let cm = redial::Manager::new();
/// cm.connect(echo, Client { pending: VecDeque::new(), next: 1, replies: tx })?;
/// let timeout = std::time::Duration::from_secs(10);
/// assert_eq!(replies.recv_timeout(timeout)?, 1);
/// assert_eq!(replies.recv_timeout(timeout)?, 2);
/// cm.disconnect_all().wait_blocking()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Socket {
    pub(crate) inner: Arc<SocketInner>,
}

impl Socket {
    pub(crate) fn new(shared: Arc<Shared>, generation: u64, io: Transport) -> Self {
        Socket {
            inner: Arc::new(SocketInner {
                shared,
                generation,
                io,
            }),
        }
    }

    pub(crate) fn io(&self) -> &Transport {
        &self.inner.io
    }

    /// Queues bytes to be written, without blocking. Refused (with the
    /// bytes handed back) when the queue is full or this connection is gone.
    /// An empty `data` queues nothing and returns `Ok(())` (see
    /// [`Connection::send`](crate::Connection::send)).
    ///
    /// Tied to this one connection: the send for request/response
    /// protocols that match replies per connection (see
    /// [`Socket`#socketsend-or-connectionsend](Socket#socketsend-or-connectionsend)).
    ///
    /// ```no_run
    /// # fn f(sock: &redial::Socket) {
    /// if let Err(e) = sock.send(b"ping\r\n") {
    ///     eprintln!("not sent: {e} ({} bytes)", e.data().len());
    /// }
    /// # }
    /// ```
    pub fn send(&self, data: impl AsRef<[u8]>) -> Result<(), SendError> {
        let data = data.as_ref();
        if data.is_empty() {
            return Ok(());
        }
        self.inner
            .shared
            .push(Some(self.inner.generation), data)
            .map(drop)
            .map_err(|r| self.inner.shared.send_error(r, data.to_vec()))
    }

    /// Queues bytes, waiting while the queue is full. Every 64 KiB queued,
    /// it also waits until the connection has taken what is queued, as
    /// [`Connection::write`](crate::Connection::write) does. An empty
    /// `data` returns `Ok(())` at once.
    ///
    /// ```no_run
    /// # async fn f(sock: redial::Socket) -> Result<(), redial::SendError> {
    /// sock.write(vec![0u8; 1 << 20]).await?;
    /// # Ok(()) }
    /// ```
    pub async fn write(&self, data: impl AsRef<[u8]>) -> Result<(), SendError> {
        let (data, shared, generation) = (data.as_ref(), &self.inner.shared, self.inner.generation);
        if data.is_empty() {
            return Ok(());
        }
        // As `Connection::write`: the common case inline.
        match shared.push(Some(generation), data) {
            Ok(p) => {
                if p.hand_over {
                    shared.hand_over_turn().await;
                }
                Ok(())
            }
            Err(Refused::Full { .. }) => shared.push_wait(Some(generation), data).await,
            Err(r) => Err(shared.send_error(r, data.to_vec())),
        }
    }

    /// The TCP stream, for options, addresses and direct I/O (`try_write`
    /// bypasses the queue: do not mix the two for one message stream; under
    /// TLS it would bypass the encryption, so use it for options only).
    /// `None` for a Unix socket.
    ///
    /// ```no_run
    /// # fn f(sock: &redial::Socket) {
    /// if let Some(tcp) = sock.tcp() {
    ///     println!("talking to {:?}", tcp.peer_addr());
    /// }
    /// # }
    /// ```
    pub fn tcp(&self) -> Option<&TcpStream> {
        match &self.inner.io {
            Transport::Tcp(s) => Some(s),
            Transport::Unix(_) => None,
            #[cfg(feature = "tls")]
            Transport::Tls(t) => Some(&t.tcp),
        }
    }

    /// The Unix stream, when the endpoint is `unix:/path`.
    ///
    /// ```no_run
    /// # fn f(sock: &redial::Socket) {
    /// let is_unix = sock.unix().is_some();
    /// # let _ = is_unix;
    /// # }
    /// ```
    pub fn unix(&self) -> Option<&UnixStream> {
        match &self.inner.io {
            Transport::Unix(s) => Some(s),
            _ => None,
        }
    }

    /// The socket2 view, to read or set any socket option.
    ///
    /// ```no_run
    /// # fn f(sock: &redial::Socket) -> std::io::Result<()> {
    /// sock.sock_ref().set_send_buffer_size(1 << 20)?;
    /// # Ok(()) }
    /// ```
    pub fn sock_ref(&self) -> SockRef<'_> {
        self.inner.io.sock_ref()
    }

    /// The peer's address (`None` for Unix sockets or when the socket is gone).
    ///
    /// ```no_run
    /// # fn f(sock: &redial::Socket) {
    /// println!("{:?}", sock.peer_addr());
    /// # }
    /// ```
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.tcp().and_then(|t| t.peer_addr().ok())
    }

    /// Which connection of the managed connection this is (1 for the first).
    ///
    /// ```no_run
    /// # fn f(sock: &redial::Socket) {
    /// println!("connection number {}", sock.generation());
    /// # }
    /// ```
    pub fn generation(&self) -> u64 {
        self.inner.generation
    }

    /// The [`Connection::id`](crate::Connection::id) of the managed
    /// connection this socket belongs to: a handler that serves several
    /// connections, or keeps state per connection elsewhere, knows which
    /// one called it without a map of its own.
    ///
    /// ```
    /// use std::sync::mpsc;
    ///
    /// # let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// # let addr = listener.local_addr()?;
    /// let (tx, ids) = mpsc::channel();
    /// let cm = redial::Manager::new();
    /// let conn = cm.connect(addr, redial::handler().on_connect(move |sock| {
    ///     let _ = tx.send(sock.connection_id());
    /// }))?;
    /// assert_eq!(ids.recv_timeout(std::time::Duration::from_secs(10))?, conn.id());
    /// conn.disconnect().wait_blocking()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn connection_id(&self) -> u64 {
        self.inner.shared.id
    }

    /// Whether this connection still takes writes.
    ///
    /// ```no_run
    /// # fn f(sock: &redial::Socket) {
    /// if !sock.is_open() { /* a newer connection has replaced it */ }
    /// # }
    /// ```
    pub fn is_open(&self) -> bool {
        let q = self.inner.shared.queue();
        q.socket_open && !q.closed && q.generation == self.inner.generation
    }

    /// Ends the connection for every clone the application still holds.
    /// Without one, dropping the driver's handle closes the descriptor,
    /// which ends the connection just the same: the `shutdown` call would
    /// only add a system call and a second round of TCP state changes, seen
    /// by the descriptor's epoll registration, on every loss.
    pub(crate) fn close_shared(&self) {
        if Arc::strong_count(&self.inner) > 1 {
            let _ = self.sock_ref().shutdown(std::net::Shutdown::Both);
        }
    }

    /// **Ends the whole managed connection for good**, not only this
    /// socket: the same as [`Connection::disconnect`](crate::Connection::disconnect).
    /// It flushes what is queued, sends FIN and never reconnects; from the
    /// call on, sends are refused with
    /// [`SendError::Disconnected`]. Await the result to wait until it has
    /// closed (`on_close` has run, and no callback follows), or drop it.
    ///
    /// To drop just this connection and reconnect (after a protocol
    /// desync, say), there is no call of its own yet; one is planned. Until
    /// then, shut the socket down: the driver sees the connection end,
    /// calls `on_reset` (with [`ResetReason::PeerClosed`](crate::ResetReason::PeerClosed),
    /// as it cannot tell who closed it) and reconnects as `on_reset` says:
    /// `let _ = sock.sock_ref().shutdown(std::net::Shutdown::Both);`.
    ///
    /// ```no_run
    /// # async fn f(sock: redial::Socket) {
    /// sock.disconnect().await; // the managed connection is closed for good
    /// # }
    /// ```
    pub fn disconnect(&self) -> Disconnecting {
        self.inner.shared.request(Command::Disconnect);
        Disconnecting::new(vec![self.inner.shared.clone()])
    }
}

impl fmt::Debug for Socket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Socket")
            .field("endpoint", &self.inner.shared.endpoint)
            .field("generation", &self.inner.generation)
            .finish()
    }
}
