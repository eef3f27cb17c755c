//! A pool that follows a name ([`Manager::create_pool_following`]): one or
//! more members per address the name resolves to, kept in step as the
//! name changes, as gRPC's DNS resolver and Envoy's STRICT_DNS clusters do
//! for a Kubernetes headless service, Consul's DNS or a round-robin record.
//!
//! One task per followed pool resolves the name, compares the answer with
//! the members it has, adds members for new addresses and drains those
//! whose address is gone. It resolves again on a schedule and soon after a
//! member's connection fails (the server may have moved), never more often
//! than a minimum gap. A lookup that fails, times out or returns nothing
//! changes nothing: the last good set stays, so DNS trouble never empties
//! a pool that still has servers.
//!
//! [`Manager::create_pool_following`]: crate::Manager::create_pool_following

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;
use tokio::time::Instant;
use tracing::{info, warn};

use super::Pool;
use crate::endpoint::{Endpoint, Kind};
use crate::events::{Event, EventKind};
use crate::handle::connection::Connection;
use crate::handle::manager::ManagerInner;
use crate::handler::Handler;
use crate::options::Options;

type Lookup = Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send>>;

/// Turns a host and port into addresses, for a pool that follows a name.
/// The default, [`Resolver::system`], is the operating system's resolver
/// (`getaddrinfo`, through `tokio::net::lookup_host`), which reads
/// `/etc/hosts`, `/etc/resolv.conf` and nsswitch as every other program
/// on the host does. [`Resolver::from_fn`] plugs in any other source.
///
/// ```
/// use std::net::SocketAddr;
///
/// let fixed = redial::Resolver::from_fn(|_host, port| async move {
///     Ok(vec![SocketAddr::from(([127, 0, 0, 1], port))])
/// });
/// # let _ = fixed;
/// ```
#[derive(Clone)]
pub struct Resolver {
    lookup: Arc<dyn Fn(String, u16) -> Lookup + Send + Sync>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Resolver")
    }
}

impl Default for Resolver {
    fn default() -> Self {
        Self::system()
    }
}

impl Resolver {
    /// The operating system's resolver.
    ///
    /// ```
    /// let r = redial::Resolver::system();
    /// # let _ = r;
    /// ```
    pub fn system() -> Self {
        Self::from_fn(|host, port| async move {
            Ok(tokio::net::lookup_host((host.as_str(), port))
                .await?
                .collect())
        })
    }

    /// A resolver from an async function of the host and port.
    ///
    /// ```
    /// let r = redial::Resolver::from_fn(|host, _port| async move {
    ///     Err(std::io::Error::other(format!("{host}: no such service")))
    /// });
    /// # let _ = r;
    /// ```
    pub fn from_fn<F, Fut>(f: F) -> Self
    where
        F: Fn(String, u16) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'static,
    {
        Resolver {
            lookup: Arc::new(move |host, port| Box::pin(f(host, port))),
        }
    }

    async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
        match tokio::time::timeout(Follow::LOOKUP_TIMEOUT, (self.lookup)(host.into(), port)).await {
            Err(_) => Err(format!(
                "lookup timed out after {:?}",
                Follow::LOOKUP_TIMEOUT
            )),
            Ok(Err(e)) => Err(e.to_string()),
            Ok(Ok(a)) if a.is_empty() => Err("the name has no addresses".into()),
            Ok(Ok(mut a)) => {
                a.sort();
                a.dedup();
                Ok(a)
            }
        }
    }
}

/// What a pool follows and how: the name, members per address, the
/// schedule, the resolver and the members' options.
///
/// ```
/// use std::time::Duration;
///
/// let follow = redial::Follow::new("cache.svc:11211")
///     .per_address(2)
///     .every(Duration::from_secs(10));
/// # let _ = follow;
/// ```
#[derive(Debug, Clone)]
pub struct Follow {
    target: String,
    per_address: usize,
    every: Duration,
    min_gap: Duration,
    resolver: Resolver,
    options: Option<Options>,
}

impl Follow {
    /// How often a followed name is resolved again when nothing fails: 30 s,
    /// gRPC's minimum re-resolution interval.
    ///
    /// Value: 30 s.
    ///
    /// ```
    /// use std::time::Duration;
    /// assert_eq!(redial::Follow::DEFAULT_EVERY, Duration::from_secs(30));
    /// ```
    pub const DEFAULT_EVERY: Duration = Duration::from_secs(30);

    /// The least time between two lookups when members' connections fail: a
    /// fleet that is down does not turn into a stream of DNS queries.
    ///
    /// Value: 1 s.
    ///
    /// ```
    /// use std::time::Duration;
    /// assert_eq!(redial::Follow::DEFAULT_MIN_GAP, Duration::from_secs(1));
    /// ```
    pub const DEFAULT_MIN_GAP: Duration = Duration::from_secs(1);

    /// How long one lookup may take before it counts as failed (the system
    /// resolver retries for about this long when its server does not answer).
    ///
    /// Value: 10 s.
    ///
    /// ```
    /// use std::time::Duration;
    /// assert_eq!(redial::Follow::LOOKUP_TIMEOUT, Duration::from_secs(10));
    /// ```
    pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);
}

impl Follow {
    /// Follows `target`, a `host:port` (an address works too, and then
    /// never changes): one member per address, resolved again every
    /// [`Follow::DEFAULT_EVERY`](Follow::DEFAULT_EVERY) and after failures, with the system
    /// resolver and the default [`Options`].
    ///
    /// ```
    /// let follow = redial::Follow::new("cache.svc.cluster.local:11211");
    /// # let _ = follow;
    /// ```
    pub fn new(target: impl Into<String>) -> Self {
        Follow {
            target: target.into(),
            per_address: 1,
            every: Follow::DEFAULT_EVERY,
            min_gap: Follow::DEFAULT_MIN_GAP,
            resolver: Resolver::system(),
            options: None,
        }
    }

    /// Members per address (default 1; at least 1).
    ///
    /// ```
    /// let follow = redial::Follow::new("cache.svc:11211").per_address(4);
    /// # let _ = follow;
    /// ```
    #[must_use]
    pub fn per_address(mut self, n: usize) -> Self {
        self.per_address = n.max(1);
        self
    }

    /// How often the name is resolved again when nothing fails (default
    /// [`Follow::DEFAULT_EVERY`](Follow::DEFAULT_EVERY)).
    ///
    /// ```
    /// let follow = redial::Follow::new("cache.svc:11211").every(std::time::Duration::from_secs(5));
    /// # let _ = follow;
    /// ```
    #[must_use]
    pub fn every(mut self, d: Duration) -> Self {
        self.every = d;
        self
    }

    /// The least time between two lookups, which a member's failed
    /// connection brings forward (default [`Follow::DEFAULT_MIN_GAP`](Follow::DEFAULT_MIN_GAP)).
    ///
    /// ```
    /// let follow = redial::Follow::new("cache.svc:11211").min_gap(std::time::Duration::from_secs(5));
    /// # let _ = follow;
    /// ```
    #[must_use]
    pub fn min_gap(mut self, d: Duration) -> Self {
        self.min_gap = d;
        self
    }

    /// Resolves with `resolver` instead of the system's.
    ///
    /// ```
    /// let follow = redial::Follow::new("cache.svc:11211").resolver(redial::Resolver::system());
    /// # let _ = follow;
    /// ```
    #[must_use]
    pub fn resolver(mut self, resolver: Resolver) -> Self {
        self.resolver = resolver;
        self
    }

    /// The options of every member (default [`Options::default`]).
    ///
    /// ```
    /// let follow = redial::Follow::new("cache.svc:11211").options(redial::Options::new().max_attempts(5));
    /// # let _ = follow;
    /// ```
    #[must_use]
    pub fn options(mut self, opts: Options) -> Self {
        self.options = Some(opts);
        self
    }

    /// The name followed, as given.
    ///
    /// ```
    /// assert_eq!(redial::Follow::new("cache.svc:11211").target(), "cache.svc:11211");
    /// ```
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The host and port to resolve, or why `target` is not one.
    pub(crate) fn host_port(&self) -> Result<(String, u16), String> {
        let e: Endpoint = self.target.parse().map_err(|e| format!("{e}"))?;
        match e.kind() {
            Kind::Host { host, port } => Ok((host.clone(), *port)),
            Kind::Addr(a) => Ok((a.ip().to_string(), a.port())),
            Kind::Unix(_) | Kind::Any(_) => Err("expected host:port".into()),
        }
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        self.host_port()?;
        if let Some(o) = &self.options {
            o.validate().map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// Starts following: the task runs on `manager`'s runtime until the pool
/// is disconnected.
pub(crate) fn start<H, F>(manager: &Arc<ManagerInner>, pool: Pool, follow: Follow, make: F)
where
    H: Handler,
    F: FnMut(SocketAddr) -> H + Send + 'static,
{
    let events = manager.events_sender();
    let rx = events.subscribe();
    let follower = Follower {
        pool,
        follow,
        make,
        members: BTreeMap::new(),
        events,
    };
    manager.runtime_handle().spawn(follower.run(rx));
}

struct Follower<F> {
    pool: Pool,
    follow: Follow,
    make: F,
    /// The members made for each address, in the order made.
    members: BTreeMap<SocketAddr, Vec<Connection>>,
    events: broadcast::Sender<Event>,
}

impl<H, F> Follower<F>
where
    H: Handler,
    F: FnMut(SocketAddr) -> H + Send + 'static,
{
    async fn run(mut self, mut rx: broadcast::Receiver<Event>) {
        let Ok((host, port)) = self.follow.host_port() else {
            return; // validated before the start
        };
        let endpoint: Endpoint = match self.follow.target.parse() {
            Ok(e) => e,
            Err(_) => return,
        };
        let mut last_lookup;
        loop {
            if self.pool.is_closed() {
                return;
            }
            last_lookup = Instant::now();
            match self.follow.resolver.resolve(&host, port).await {
                Ok(addrs) => {
                    if !self.reconcile(&addrs) {
                        return;
                    }
                }
                Err(error) => {
                    let kept = self.members.len();
                    warn!(pool = self.pool.name(), target = %self.follow.target, %error, kept,
                        "lookup failed: keeping the last good addresses");
                    self.emit(
                        0,
                        endpoint.clone(),
                        EventKind::ResolveFailed { error, kept },
                    );
                }
            }
            // Wait for the schedule, or a member's failure (then no sooner
            // than the minimum gap), or the pool's end.
            let scheduled = crate::driver::after(last_lookup, self.follow.every);
            loop {
                let changed = self.pool.inner.changed.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                if self.pool.is_closed() {
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep_until(scheduled) => break,
                    _ = changed => {}
                    ev = rx.recv() => match ev {
                        Ok(ev) if self.is_member_failure(&ev) => {
                            let soonest = crate::driver::after(last_lookup, self.follow.min_gap);
                            tokio::time::sleep_until(soonest.min(scheduled)).await;
                            break;
                        }
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(broadcast::error::RecvError::Closed) => return,
                    }
                }
            }
        }
    }

    /// A member of this pool failed to connect or lost its connection.
    fn is_member_failure(&self, ev: &Event) -> bool {
        matches!(
            ev.kind,
            EventKind::ConnectFailed { .. } | EventKind::Reset { .. }
        ) && self
            .members
            .values()
            .any(|m| m.iter().any(|c| c.id() == ev.connection))
    }

    /// Brings the members in line with `addrs`. False when the pool no
    /// longer takes members (it was disconnected).
    fn reconcile(&mut self, addrs: &[SocketAddr]) -> bool {
        // Addresses gone: drain their members. `disconnect` is the drain:
        // from the call on the member takes no sends and no picks, what is
        // queued is flushed within the grace period, and what could not
        // go out is handed back to its handler's `on_close`.
        let gone: Vec<SocketAddr> = self
            .members
            .keys()
            .filter(|a| !addrs.contains(a))
            .copied()
            .collect();
        for addr in gone {
            for c in self.members.remove(&addr).unwrap_or_default() {
                info!(pool = self.pool.name(), %addr, id = c.id(), "address gone from the name: draining its member");
                c.disconnect();
                self.emit(
                    c.id(),
                    c.endpoint().clone(),
                    EventKind::MemberDraining { address: addr },
                );
            }
        }
        for addr in addrs {
            let have = self.members.entry(*addr).or_default();
            // A member that closed on its own (gave up, `Resume::Stop`) is
            // replaced: the address is still in the name.
            have.retain(|c| c.state() != crate::State::Closed);
            let missing = self.follow.per_address.saturating_sub(have.len());
            for _ in 0..missing {
                let handler = (self.make)(*addr);
                let added = match &self.follow.options {
                    Some(o) => self.pool.add_connection_with(*addr, handler, o.clone()),
                    None => self.pool.add_connection(*addr, handler),
                };
                let Ok(c) = added else {
                    return false;
                };
                info!(pool = self.pool.name(), %addr, id = c.id(), "new address in the name: member added");
                let (id, ep) = (c.id(), c.endpoint().clone());
                if let Some(have) = self.members.get_mut(addr) {
                    have.push(c);
                }
                self.emit(id, ep, EventKind::MemberAdded { address: *addr });
            }
        }
        true
    }

    fn emit(&self, connection: u64, endpoint: Endpoint, kind: EventKind) {
        // No receiver but this task's own is no error.
        let _ = self.events.send(Event {
            connection,
            endpoint,
            pool: Some(self.pool.name().into()),
            at: crate::clock::now(),
            kind,
        });
    }
}
