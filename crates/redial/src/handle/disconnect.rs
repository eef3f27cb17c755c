//! [`Disconnecting`]: the answer of every `disconnect`, awaitable or not.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;
use std::time::Instant;

use tokio::runtime::RuntimeFlavor;

use crate::error::WaitError;
use crate::handle::manager::OwnedRuntime;
use crate::shared::{Shared, State};

/// A disconnect that has been requested. The request is made when
/// `disconnect()` returns; awaiting this waits until every connection it
/// covers has closed: its `on_close` has returned, and it is the last
/// callback, so none of these connections calls its handler again once
/// the await (or [`Disconnecting::wait_blocking`]) returns. Dropping it is
/// fine (fire-and-forget): the close goes on, and its callbacks may run
/// after the call.
///
/// ```
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let server = std::net::TcpListener::bind("127.0.0.1:0")?;
/// # let echo = server.local_addr()?.to_string();
/// # std::thread::spawn(move || for s in server.incoming().flatten() { std::thread::spawn(move || std::io::copy(&mut &s, &mut &s)); });
/// # let addr = echo.as_str();
/// let cm = redial::Manager::new();
/// let conn = cm.connect(addr, redial::handler())?;
/// let other = cm.connect(addr, redial::handler())?;
/// conn.disconnect();            // fire-and-forget
/// cm.disconnect_all().await;    // wait until everything has closed
/// assert_eq!(other.state(), redial::State::Closed);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Disconnecting {
    targets: Vec<Arc<Shared>>,
    /// The manager's own runtime, held until the wait ends: a disconnect
    /// waited for after the manager and its connections were dropped still
    /// flushes instead of being cut short by a runtime shutdown.
    runtime: Option<Arc<OwnedRuntime>>,
}

impl Disconnecting {
    pub(crate) fn new(targets: Vec<Arc<Shared>>) -> Self {
        Disconnecting {
            targets,
            runtime: None,
        }
    }

    /// Holds the manager's own runtime (if any) until the wait ends.
    pub(crate) fn keeping(mut self, runtime: Option<Arc<OwnedRuntime>>) -> Self {
        self.runtime = runtime;
        self
    }

    /// How many connections this disconnect covers.
    ///
    /// ```no_run
    /// # fn f(cm: redial::Manager) {
    /// println!("closing {}", cm.disconnect_all().len());
    /// # }
    /// ```
    pub fn len(&self) -> usize {
        self.targets.len()
    }

    /// Blocks the calling thread until every connection it covers has
    /// closed: for synchronous programs. In async code, `.await` it instead.
    ///
    /// Inside a multi-threaded tokio runtime it blocks through
    /// [`tokio::task::block_in_place`], so that it never stalls the
    /// connections it waits for: on a worker the worker's other tasks move
    /// to another thread first.
    ///
    /// # Errors
    ///
    /// [`WaitError::CurrentThreadRuntime`], at once, inside a current-thread
    /// runtime (its `block_on`, `#[tokio::main(flavor = "current_thread")]`,
    /// its tasks and its `spawn_blocking` closures alike: tokio does not
    /// tell them apart), unless the connections run on a runtime of the
    /// manager's own: blocking the runtime's thread could only hang. The
    /// disconnect goes ahead all the same. `.await` it there, or from
    /// `spawn_blocking` use
    /// `Handle::current().block_on(disconnecting.into_future())`.
    ///
    /// ```
    /// let cm = redial::Manager::new(); // outside tokio: owns its runtime
    /// cm.disconnect_all().wait_blocking()?;
    /// # Ok::<(), redial::WaitError>(())
    /// ```
    pub fn wait_blocking(self) -> Result<(), WaitError> {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            block_on(self.into_future());
            return Ok(());
        };
        match handle.runtime_flavor() {
            // The connections run on the manager's own (multi-threaded)
            // runtime, not on this one: blocking here stalls none of them.
            RuntimeFlavor::CurrentThread if self.runtime.is_some() => {
                block_on(self.into_future());
            }
            RuntimeFlavor::CurrentThread => return Err(WaitError::CurrentThreadRuntime),
            _ => tokio::task::block_in_place(|| block_on(self.into_future())),
        }
        Ok(())
    }

    /// Whether it covers no connection.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// assert!(redial::Manager::new().disconnect_all().is_empty());
    /// # }
    /// ```
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }
}

impl IntoFuture for Disconnecting {
    type Output = ();
    type IntoFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            for t in &self.targets {
                t.wait_state(State::Closed).await;
            }
            drop(self.runtime);
        })
    }
}

/// Wakes a parked thread.
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs a future to completion on the calling thread. The futures given
/// here only wait on `Notify`, which needs no runtime.
fn block_on<F: Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

/// Runs a future on the calling thread until it completes (`Some`) or
/// `deadline` passes (`None`); no deadline waits for ever. As for
/// [`block_on`], the future must need no runtime.
pub(crate) fn block_on_until<F: Future>(fut: F, deadline: Option<Instant>) -> Option<F::Output> {
    let Some(deadline) = deadline else {
        return Some(block_on(fut));
    };
    let mut fut = std::pin::pin!(fut);
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return Some(v);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        // Wakes early on an unpark, or spuriously: the loop polls again.
        std::thread::park_timeout(left);
    }
}
