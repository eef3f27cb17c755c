//! The transport under a connection: TCP, a Unix socket, or TLS over
//! TCP, behind one enum the driver reads and writes without caring which.
//!
//! Only the driver and the [`Socket`](crate::Socket) it hands out touch
//! it; it is not part of the public API.

use std::io;

use socket2::SockRef;
use tokio::net::{TcpStream, UnixStream};

/// The transport under a connection.
pub(crate) enum Transport {
    Tcp(TcpStream),
    Unix(UnixStream),
    #[cfg(feature = "tls")]
    Tls(Box<crate::driver::tls::TlsTransport>),
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
    /// Writes `buf`. Neither socket raises SIGPIPE when the peer has
    /// gone: the standard library's TCP writes pass `MSG_NOSIGNAL`, and a
    /// Unix socket's (a plain `write(2)` there) go through [`send`].
    pub(crate) fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        use tokio::io::Interest;
        match self {
            Transport::Tcp(s) => s.try_write(buf),
            Transport::Unix(s) => s.try_io(Interest::WRITABLE, || send(s.into(), buf)),
            #[cfg(feature = "tls")]
            Transport::Tls(t) => t.try_write(buf),
        }
    }
    /// Writes `bufs` in one system call where the transport can (TCP and
    /// Unix sockets); TLS takes the first slice alone, as rustls copies
    /// what it encrypts anyway.
    pub(crate) fn try_write_vectored(&self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        use tokio::io::Interest;
        match self {
            Transport::Tcp(s) => s.try_io(Interest::WRITABLE, || send_vectored(s.into(), bufs)),
            Transport::Unix(s) => s.try_io(Interest::WRITABLE, || send_vectored(s.into(), bufs)),
            #[cfg(feature = "tls")]
            Transport::Tls(t) => t.try_write(bufs.first().map_or(&[][..], |b| &b[..])),
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

/// `sendmsg` with `MSG_NOSIGNAL`, not `writev` (what the streams'
/// `try_write_vectored` calls): a write to a connection the peer reset
/// raises SIGPIPE, which kills a process that does not ignore it (Rust's
/// `main` does; a C host or libFuzzer's driver does not). The standard
/// library's plain TCP writes pass the flag too.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn send_vectored(sock: SockRef<'_>, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
    sock.send_vectored_with_flags(bufs, libc::MSG_NOSIGNAL)
}

/// Elsewhere `SO_NOSIGPIPE` (set by the standard library on the platforms
/// that have it) keeps `sendmsg` from raising SIGPIPE.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn send_vectored(sock: SockRef<'_>, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
    sock.send_vectored(bufs)
}

/// `send` with `MSG_NOSIGNAL`, not `write` (what a Unix stream's
/// `try_write` calls, which raises SIGPIPE once the peer has gone; see
/// [`send_vectored`]).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn send(sock: SockRef<'_>, buf: &[u8]) -> io::Result<usize> {
    sock.send_with_flags(buf, libc::MSG_NOSIGNAL)
}

/// Elsewhere `SO_NOSIGPIPE` keeps `send` from raising SIGPIPE.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn send(sock: SockRef<'_>, buf: &[u8]) -> io::Result<usize> {
    sock.send(buf)
}
