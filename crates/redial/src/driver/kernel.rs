//! What the kernel knows about a TCP connection's sent bytes: how many the
//! peer's TCP acknowledged and how many the kernel still holds. Read when a
//! connection is lost or closed, before its descriptor is closed, so that a
//! [`Reset`](crate::Reset) or [`Close`](crate::Close) can say how much of
//! what was written is known to have arrived — evidence redial does not
//! produce itself.
//!
//! Linux only (`TCP_INFO` and the `SIOCOUTQ` ioctl); other platforms get
//! `None`. This is the crate's one exception to `unsafe_code = "deny"`:
//! two system calls on a descriptor the caller borrows, each writing into
//! a buffer whose size it is given. socket2 exposes neither.

use crate::reset::TcpCounts;

/// The counts of a connection's transport: plain TCP only. Under TLS the
/// kernel counts records, which cannot be compared with the application's
/// bytes, and a Unix socket has no acknowledgements.
pub(crate) fn of(transport: &crate::driver::transport::Transport) -> Option<TcpCounts> {
    match transport {
        crate::driver::transport::Transport::Tcp(s) => tcp_counts(s),
        _ => None,
    }
}

/// Reads the counts of a connected (or just lost) TCP socket; `None` when
/// the platform or kernel does not tell, or the socket is not TCP.
#[cfg(target_os = "linux")]
pub(crate) fn tcp_counts(sock: &impl std::os::fd::AsRawFd) -> Option<TcpCounts> {
    linux::tcp_counts(sock.as_raw_fd())
}

/// Reads the counts of a TCP socket: not available on this platform.
#[cfg(all(unix, not(target_os = "linux")))]
pub(crate) fn tcp_counts(_sock: &impl std::os::fd::AsRawFd) -> Option<TcpCounts> {
    None
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
mod linux {
    use std::mem::{offset_of, size_of, MaybeUninit};
    use std::os::fd::RawFd;

    use super::TcpCounts;

    pub(super) fn tcp_counts(fd: RawFd) -> Option<TcpCounts> {
        let info = tcp_info(fd)?;
        let unacked = out_queue(fd)?;
        // `tcpi_bytes_acked` counts acknowledged sequence numbers from the
        // initial one on: the SYN of a connection this side opened is one
        // of them (checked by the tests below), and a FIN's
        // acknowledgement adds one more, which the caller caps away with
        // what it wrote.
        Some(TcpCounts {
            acked: info.tcpi_bytes_acked.saturating_sub(1),
            unacked,
            not_sent: u64::from(info.tcpi_notsent_bytes),
        })
    }

    fn tcp_info(fd: RawFd) -> Option<libc::tcp_info> {
        let mut info = MaybeUninit::<libc::tcp_info>::zeroed();
        let mut len = size_of::<libc::tcp_info>() as libc::socklen_t;
        // SAFETY: `info` is a writable buffer of `len` bytes that outlives
        // the call; the kernel writes at most `len` bytes and stores how
        // many in `len`. A bad or closed `fd` makes the call fail, nothing
        // more.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                info.as_mut_ptr().cast(),
                &mut len,
            )
        };
        // Older kernels fill a shorter prefix: the fields read here must be
        // in it (bytes_acked since Linux 4.1, notsent_bytes since 4.6).
        let needed = offset_of!(libc::tcp_info, tcpi_notsent_bytes) + size_of::<u32>();
        if rc != 0 || (len as usize) < needed {
            return None;
        }
        // SAFETY: zeroed, then (partly) written by the kernel: every field
        // is a plain integer, for which any bit pattern is valid.
        Some(unsafe { info.assume_init() })
    }

    fn out_queue(fd: RawFd) -> Option<u64> {
        let mut n: libc::c_int = 0;
        // SAFETY: SIOCOUTQ (TIOCOUTQ on sockets) writes one `int` through
        // the pointer, which points to `n` for the duration of the call.
        let rc = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut n as *mut libc::c_int) };
        if rc != 0 {
            return None;
        }
        u64::try_from(n).ok()
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    /// Waits (without a fixed sleep) until the kernel reports what `done`
    /// looks for.
    fn counts_when(s: &TcpStream, done: impl Fn(&TcpCounts) -> bool) -> TcpCounts {
        for _ in 0..2000 {
            match tcp_counts(s) {
                Some(c) if done(&c) => return c,
                Some(_) => {}
                None => panic!("Linux reports TCP_INFO"),
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        panic!("the kernel never reported the expected counts");
    }

    #[test]
    fn a_fresh_connection_has_acknowledged_no_data() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let s = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let _peer = l.accept().unwrap();
        let c = tcp_counts(&s).unwrap();
        assert_eq!(c, TcpCounts::default(), "the SYN is not counted as data");
    }

    #[test]
    fn bytes_the_peer_read_were_acknowledged_and_the_rest_is_held() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut s = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut peer, _) = l.accept().unwrap();
        s.write_all(&[7u8; 100_000]).unwrap();
        let mut got = vec![0u8; 60_000];
        peer.read_exact(&mut got).unwrap();
        // What the peer read was acknowledged; acknowledged plus held is
        // what was written (the kernel's own balance, no FIN yet).
        let c = counts_when(&s, |c| c.acked >= 60_000);
        assert_eq!(c.acked + c.unacked, 100_000, "{c:?}");
        assert!(c.not_sent <= c.unacked, "{c:?}");
    }

    #[test]
    fn a_peer_that_does_not_read_leaves_bytes_unacknowledged() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let s = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (_peer, _) = l.accept().unwrap();
        s.set_nonblocking(true).unwrap();
        let mut written = 0u64;
        let chunk = [1u8; 65_536];
        loop {
            match (&s).write(&chunk) {
                Ok(n) => written += n as u64,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        let c = tcp_counts(&s).unwrap();
        assert!(c.unacked > 0 && c.not_sent > 0, "{c:?}");
        assert_eq!(c.acked + c.unacked, written, "{c:?}");
    }

    #[test]
    fn a_unix_socket_has_no_tcp_counts() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert_eq!(tcp_counts(&a), None);
    }
}
