//! The live connection as the application sees it: [`Socket`].
//!
//! A `Socket` belongs to one connection (one generation). After a reset it
//! refuses writes, so bytes meant for an old connection never leak into the
//! next one; the [`Connection`](crate::Connection) handle is the one that
//! outlives reconnects.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use socket2::SockRef;
use tokio::net::{TcpStream, UnixStream};

use crate::disconnect::Disconnecting;
use crate::error::SendError;
use crate::shared::{Command, Shared};

/// The transport under a connection.
pub(crate) enum Transport {
    Tcp(TcpStream),
    Unix(UnixStream),
    #[cfg(feature = "tls")]
    Tls(Box<crate::tls::TlsTransport>),
}

impl Transport {
    pub(crate) async fn readable(&self) -> io::Result<()> {
        match self {
            Transport::Tcp(s) => s.readable().await,
            Transport::Unix(s) => s.readable().await,
            #[cfg(feature = "tls")]
            Transport::Tls(t) => t.tcp.readable().await,
        }
    }
    /// Polls for the directions asked for: `Ok(true)` when readable,
    /// `Ok(false)` when only writable. The wakers wait in the socket's own
    /// registration, so the connection's task carries no waiter for them.
    pub(crate) fn poll_ready(
        &self,
        cx: &mut std::task::Context<'_>,
        read: bool,
        write: bool,
    ) -> std::task::Poll<io::Result<bool>> {
        use std::task::Poll;
        let (r, w) = match self {
            Transport::Tcp(s) => (
                read.then(|| s.poll_read_ready(cx)),
                write.then(|| s.poll_write_ready(cx)),
            ),
            Transport::Unix(s) => (
                read.then(|| s.poll_read_ready(cx)),
                write.then(|| s.poll_write_ready(cx)),
            ),
            #[cfg(feature = "tls")]
            Transport::Tls(t) => (
                read.then(|| t.tcp.poll_read_ready(cx)),
                write.then(|| t.tcp.poll_write_ready(cx)),
            ),
        };
        match (r, w) {
            (Some(Poll::Ready(Err(e))), _) | (_, Some(Poll::Ready(Err(e)))) => Poll::Ready(Err(e)),
            (Some(Poll::Ready(Ok(()))), _) => Poll::Ready(Ok(true)),
            (_, Some(Poll::Ready(Ok(())))) => Poll::Ready(Ok(false)),
            _ => Poll::Pending,
        }
    }
    pub(crate) async fn writable(&self) -> io::Result<()> {
        match self {
            Transport::Tcp(s) => s.writable().await,
            Transport::Unix(s) => s.writable().await,
            #[cfg(feature = "tls")]
            Transport::Tls(t) => t.tcp.writable().await,
        }
    }
    pub(crate) fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Tcp(s) => s.try_read(buf),
            Transport::Unix(s) => s.try_read(buf),
            #[cfg(feature = "tls")]
            Transport::Tls(t) => t.try_read(buf),
        }
    }
    pub(crate) fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Tcp(s) => s.try_write(buf),
            Transport::Unix(s) => s.try_write(buf),
            #[cfg(feature = "tls")]
            Transport::Tls(t) => t.try_write(buf),
        }
    }
    pub(crate) fn sock_ref(&self) -> SockRef<'_> {
        match self {
            Transport::Tcp(s) => SockRef::from(s),
            Transport::Unix(s) => SockRef::from(s),
            #[cfg(feature = "tls")]
            Transport::Tls(t) => SockRef::from(&t.tcp),
        }
    }

    /// Writes what the transport itself still holds (TLS records);
    /// `Ok(true)` when nothing is left.
    pub(crate) fn flush_pending(&self) -> io::Result<bool> {
        match self {
            #[cfg(feature = "tls")]
            Transport::Tls(t) => t.flush_pending(),
            _ => Ok(true),
        }
    }

    /// Ends the session politely before the FIN (TLS close_notify).
    pub(crate) fn close_notify(&self) {
        #[cfg(feature = "tls")]
        if let Transport::Tls(t) = self {
            t.close_notify();
        }
    }
}

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
/// ```no_run
/// use redial::{Handler, Socket};
///
/// struct App { sock: Option<Socket> }
/// impl Handler for App {
///     fn on_connect(&mut self, sock: &Socket) {
///         sock.tcp().map(|t| t.set_ttl(32));
///         let _ = sock.send("hello\r\n");
///         self.sock = Some(sock.clone());
///     }
///     fn on_data(&mut self, _: &Socket, _: &[u8]) {}
/// }
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
        self.inner
            .shared
            .push(Some(self.inner.generation), data)
            .map(drop)
            .map_err(|r| self.inner.shared.send_error(r, data.to_vec()))
    }

    /// Queues bytes, waiting while the queue is full. Every 256 KiB queued
    /// that the connection has not yet taken, it also yields once, so a
    /// producer that runs on the connection's thread lets it write early
    /// instead of filling the whole queue first.
    ///
    /// ```no_run
    /// # async fn f(sock: redial::Socket) -> Result<(), redial::SendError> {
    /// sock.write(vec![0u8; 1 << 20]).await?;
    /// # Ok(()) }
    /// ```
    pub async fn write(&self, data: impl AsRef<[u8]>) -> Result<(), SendError> {
        self.inner
            .shared
            .push_wait(Some(self.inner.generation), data.as_ref())
            .await
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

    /// Disconnects the managed connection for good (not only this socket):
    /// flushes what is queued, sends FIN, never reconnects. Await the result
    /// to wait until it has closed, or drop it.
    ///
    /// ```no_run
    /// # async fn f(sock: redial::Socket) {
    /// sock.disconnect().await;
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
