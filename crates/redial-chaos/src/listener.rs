//! The proxy's listening socket, held in a slot that can be emptied and
//! refilled at any time: emptying it really closes the socket (so connects
//! get ECONNREFUSED), refilling binds the same port again.
//!
//! The acceptor never owns the listener across an `.await`; it borrows it
//! under a short lock inside `poll_accept`. That is what lets `refuse()` be a
//! plain synchronous call that has taken effect when it returns.

use std::io;
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;

use crate::Error;

#[derive(Debug)]
struct Slot {
    listener: Option<TcpListener>,
    /// The acceptor's waker, so a refilled slot can wake it: the old
    /// listener's readiness registration died with the old socket.
    waker: Option<Waker>,
    shut_down: bool,
}

/// A listening socket that can be closed and reopened on the same address.
#[derive(Debug)]
pub(crate) struct ListenSlot {
    addr: SocketAddr,
    /// Rebinding happens from plain (possibly non-async) calls, and a Tokio
    /// listener must be registered with a runtime's reactor.
    runtime: Handle,
    slot: Mutex<Slot>,
}

/// Opens a listening socket. SO_REUSEADDR lets `accept()` rebind the port
/// while old connections on it linger in TIME_WAIT; it does not let two
/// listeners share a port, so "port in use" is still reported.
fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

impl ListenSlot {
    /// Binds `addr` (port 0 picks a free port) inside the current runtime.
    pub(crate) fn open(addr: SocketAddr, runtime: Handle) -> Result<Self, Error> {
        let bind_err = |source| Error::Bind { addr, source };
        let std_listener = bind(addr).map_err(bind_err)?;
        let local = std_listener.local_addr().map_err(bind_err)?;
        let listener = {
            let _entered = runtime.enter();
            TcpListener::from_std(std_listener).map_err(bind_err)?
        };
        Ok(Self {
            addr: local,
            runtime,
            slot: Mutex::new(Slot {
                listener: Some(listener),
                waker: None,
                shut_down: false,
            }),
        })
    }

    /// The bound address, with the real port if 0 was asked for.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn lock(&self) -> MutexGuard<'_, Slot> {
        // The slot holds no invariant a panicking holder could break, so a
        // poisoned lock is still usable.
        self.slot.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the proxy is currently listening.
    pub(crate) fn is_listening(&self) -> bool {
        self.lock().listener.is_some()
    }

    /// Closes the listening socket now. Returns once the port refuses.
    pub(crate) fn close(&self) {
        let old = self.lock().listener.take();
        drop(old);
    }

    /// Closes for good: later `reopen` calls fail.
    pub(crate) fn shut_down(&self) {
        let (old, waker) = {
            let mut slot = self.lock();
            slot.shut_down = true;
            (slot.listener.take(), slot.waker.take())
        };
        drop(old);
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Listens again on the same address; a no-op if already listening.
    pub(crate) fn reopen(&self) -> Result<(), Error> {
        let addr = self.addr;
        let bind_err = |source| Error::Bind { addr, source };
        {
            let slot = self.lock();
            if slot.shut_down {
                return Err(Error::ShutDown { addr });
            }
            if slot.listener.is_some() {
                return Ok(());
            }
        }
        let std_listener = bind(addr).map_err(bind_err)?;
        let listener = {
            let _entered = self.runtime.enter();
            TcpListener::from_std(std_listener).map_err(bind_err)?
        };
        let waker = {
            let mut slot = self.lock();
            if slot.shut_down {
                return Err(Error::ShutDown { addr });
            }
            // A concurrent reopen may have won; keep whichever came first.
            if slot.listener.is_none() {
                slot.listener = Some(listener);
            }
            slot.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    /// Accepts the next connection, or stays pending while refused.
    /// `Ready(None)` means the slot was shut down.
    pub(crate) fn poll_accept(
        &self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<io::Result<(TcpStream, SocketAddr)>>> {
        let mut slot = self.lock();
        if slot.shut_down {
            return Poll::Ready(None);
        }
        match &slot.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => slot.waker = Some(cx.waker().clone()),
        }
        match &slot.listener {
            Some(listener) => listener.poll_accept(cx).map(Some),
            None => Poll::Pending,
        }
    }
}
