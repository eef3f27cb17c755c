//! [`Pool`]: a named set of managed connections, with a pick of a live
//! member and sends to whichever member is up.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use tokio::sync::Notify;

mod choose;
pub(crate) mod follow;
mod keyed;

use crate::endpoint::ToEndpoint;
use crate::error::ConnectError;
use crate::handle::connection::Connection;
use crate::handle::disconnect::Disconnecting;
use crate::handle::manager::ManagerInner;
use crate::handler::Handler;
use crate::options::Options;
use crate::shared::{Command, PoolTag, State};

pub(crate) struct PoolInner {
    name: Arc<str>,
    manager: Weak<ManagerInner>,
    members: Mutex<Vec<Connection>>,
    next: AtomicUsize,
    closed: AtomicBool,
    changed: Arc<Notify>,
    /// What each member keeps of its pool, shared by all of them.
    tag: Arc<PoolTag>,
}

/// A named set of managed connections. Cheap to clone.
///
/// ```no_run
/// # async fn f(cm: redial::Manager) -> Result<(), Box<dyn std::error::Error>> {
/// let pool = cm.create_pool("cache")?;
/// for port in [11211, 11212, 11213] {
///     pool.add_connection(("127.0.0.1", port), redial::handler().on_data(|_, _| {}))?;
/// }
/// pool.wait_live(1).await;
/// pool.send("version\r\n")?;
/// pool.disconnect().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Pool {
    inner: Arc<PoolInner>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Each count takes the members lock and releases it before the
        // next: holding it across both would deadlock (the lock is not
        // reentrant).
        let members = self.members().len();
        let live = self.live();
        f.debug_struct("Pool")
            .field("name", &self.inner.name)
            .field("members", &members)
            .field("live", &live)
            .field("closed", &self.inner.closed.load(Ordering::Acquire))
            .finish()
    }
}

impl Pool {
    /// A pool member whose connections were lost this many times in a row
    /// before [`Options::stable_after`](crate::Options::stable_after), each
    /// next one made without a connect attempt failing in between, flaps: a
    /// server that accepts and closes every connection. Pools skip it until
    /// its current connection has stayed up `stable_after`.
    ///
    /// Restarts are not flapping. While a server is down its port refuses
    /// (or attempts time out): such a failed attempt, or waiting for another
    /// connection's probe of the endpoint, ends the run of losses. And the
    /// loss of a connection made by the immediate retry that follows a loss
    /// is not counted: that retry often lands on the dying server, which
    /// accepts it and is gone a moment later, so one kill would otherwise
    /// count twice. An ordinary restart or two must not take a member out of
    /// rotation. Nor does flapping ever take a whole pool out: when every
    /// connected member flaps, the pool uses those that lost the fewest.
    ///
    /// Value: 3 losses in a row.
    ///
    /// ```
    /// assert_eq!(redial::Pool::FLAPPING_AFTER, 3);
    /// ```
    pub const FLAPPING_AFTER: u32 = crate::shared::FLAPPING_AFTER;
}

impl Pool {
    pub(crate) fn new(name: &str, manager: Weak<ManagerInner>) -> Self {
        let name: Arc<str> = name.into();
        let changed = Arc::new(Notify::new());
        Pool {
            inner: Arc::new(PoolInner {
                tag: Arc::new(PoolTag {
                    name: name.clone(),
                    changed: changed.clone(),
                }),
                name,
                manager,
                members: Mutex::new(Vec::new()),
                next: AtomicUsize::new(0),
                closed: AtomicBool::new(false),
                changed,
            }),
        }
    }

    fn members(&self) -> MutexGuard<'_, Vec<Connection>> {
        self.inner.members.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Closes the pool to new members and returns the members it has.
    /// Under the members lock, so no add can slip in between.
    pub(crate) fn close(&self) -> Vec<Arc<crate::shared::Shared>> {
        let m = self.members();
        self.inner.closed.store(true, Ordering::Release);
        // A pool that follows a name stops following.
        self.inner.changed.notify_waiters();
        m.iter().map(|c| c.shared.clone()).collect()
    }

    /// Whether `other` is a handle on this very pool (not merely one of
    /// the same name).
    pub(crate) fn same_as(&self, other: &Pool) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// The pool's name.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), redial::PoolError> {
    /// assert_eq!(redial::Manager::new().create_pool("p")?.name(), "p");
    /// # Ok(()) }
    /// ```
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Adds a managed connection with the default [`Options`].
    ///
    /// ```no_run
    /// # fn f(pool: redial::Pool) -> Result<(), redial::ConnectError> {
    /// pool.add_connection("10.0.0.1:11211", redial::handler())?;
    /// # Ok(()) }
    /// ```
    pub fn add_connection<H: Handler>(
        &self,
        endpoint: impl ToEndpoint,
        handler: H,
    ) -> Result<Connection, ConnectError> {
        self.add(endpoint.to_endpoint()?, handler, None)
    }

    /// Adds a managed connection with the given [`Options`].
    ///
    /// ```no_run
    /// # fn f(pool: redial::Pool) -> Result<(), redial::ConnectError> {
    /// pool.add_connection_with("10.0.0.1:11211", redial::handler(), redial::Options::new().max_attempts(5))?;
    /// # Ok(()) }
    /// ```
    pub fn add_connection_with<H: Handler>(
        &self,
        endpoint: impl ToEndpoint,
        handler: H,
        opts: Options,
    ) -> Result<Connection, ConnectError> {
        let endpoint = endpoint.to_endpoint()?;
        opts.validate()?;
        self.add(endpoint, handler, Some(opts))
    }

    fn add<H: Handler>(
        &self,
        endpoint: crate::endpoint::Endpoint,
        handler: H,
        opts: Option<Options>,
    ) -> Result<Connection, ConnectError> {
        // The closed flag is checked and the member pushed under the one
        // lock that `close` takes too: an add either lands before the pool
        // closes (and is disconnected with it) or is refused, never
        // between the two.
        let mut m = self.members();
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(ConnectError::PoolClosed {
                pool: self.inner.name.to_string(),
            });
        }
        let manager = self
            .inner
            .manager
            .upgrade()
            .ok_or(ConnectError::ManagerClosed)?;
        let opts = match opts {
            Some(o) => manager.share_options(o),
            None => crate::handle::manager::default_options(),
        };
        let conn = manager.spawn(endpoint, handler, opts, Some(self.inner.tag.clone()));
        m.retain(|c| c.state() != State::Closed);
        m.push(conn.clone());
        Ok(conn)
    }

    /// The members that are not closed, in the order they were added.
    ///
    /// ```no_run
    /// # fn f(pool: redial::Pool) {
    /// for c in pool.connections() {
    ///     println!("{} {}", c.endpoint(), c.state());
    /// }
    /// # }
    /// ```
    pub fn connections(&self) -> Vec<Connection> {
        let mut m = self.members();
        m.retain(|c| c.state() != State::Closed);
        m.clone()
    }

    /// Disconnects every member and removes the pool from its manager (the
    /// name can be used again). Await to wait until all have closed: once
    /// the await returns, no callback of any member runs again (see
    /// [`Disconnecting`]).
    ///
    /// From this call on the pool takes no new members:
    /// [`Pool::add_connection`] fails with
    /// [`ConnectError::PoolClosed`]. A member added before it is
    /// disconnected with the pool. Calling it again, or on an old handle
    /// after a new pool took the name, touches only this pool's members:
    /// the newer pool stays registered and open.
    ///
    /// ```no_run
    /// # async fn f(pool: redial::Pool) {
    /// pool.disconnect().await;
    /// # }
    /// ```
    pub fn disconnect(&self) -> Disconnecting {
        let members = self.close();
        if let Some(m) = self.inner.manager.upgrade() {
            m.remove_pool(self);
        }
        for c in &members {
            c.request(Command::Disconnect);
        }
        Disconnecting::new(members)
    }

    /// Reconnects every member that is backing off now
    /// ([`Connection::reconnect_now`]), under the manager's cap on attempts
    /// in flight.
    ///
    /// ```no_run
    /// # fn f(pool: redial::Pool) {
    /// pool.reconnect_now();
    /// # }
    /// ```
    pub fn reconnect_now(&self) {
        for c in self.connections() {
            c.reconnect_now();
        }
    }

    /// Whether [`Pool::disconnect`] (or [`Manager::disconnect_all`](crate::Manager::disconnect_all))
    /// was called: the pool then takes no new members.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), redial::PoolError> {
    /// let pool = redial::Manager::new().create_pool("p")?;
    /// assert!(!pool.is_closed());
    /// pool.disconnect().await;
    /// assert!(pool.is_closed());
    /// assert!(pool.add_connection("127.0.0.1:9", redial::handler()).is_err());
    /// # Ok(()) }
    /// ```
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

    /// A snapshot: members by state, how many take sends now
    /// ([`Pool::live`]) and how many there are. Cheap enough to call every
    /// second.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), redial::PoolError> {
    /// let pool = redial::Manager::new().create_pool("cache")?;
    /// let s = pool.status();
    /// println!("{}: {}/{} live", s.name, s.live, s.total);
    /// assert_eq!(s.members.total(), s.total);
    /// # Ok(()) }
    /// ```
    pub fn status(&self) -> crate::PoolStatus {
        let members = {
            let m = self.members();
            crate::handle::status::tally(m.iter().map(|c| &*c.shared)).0
        };
        crate::PoolStatus {
            name: self.inner.name.to_string(),
            live: self.live(),
            total: members.total(),
            members,
        }
    }
}
