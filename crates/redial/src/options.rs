//! Per-connection settings: backoff, timeouts, give-up policy, queue
//! bounds, outage policy and socket options.
//!
//! Every default is a named constant below with the reason for its value.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use socket2::SockRef;

use crate::core::backoff::Backoff;
use crate::error::OptionsError;

/// The kernel's limits for socket options that take a duration (Linux:
/// `MAX_TCP_KEEPIDLE`, `MAX_TCP_KEEPINTVL`, `MAX_TCP_KEEPCNT`, and an `int`
/// of milliseconds for `TCP_USER_TIMEOUT`). Every other duration saturates:
/// one of centuries means "never".
const MAX_KEEPALIVE_TIME: Duration = Duration::from_secs(32_767);
const MAX_KEEPALIVE_RETRIES: u32 = 127;
const MAX_USER_TIMEOUT: Duration = Duration::from_millis(i32::MAX as u64);

/// TCP keepalive probe settings.
///
/// ```
/// use redial::{Keepalive, Options};
/// use std::time::Duration;
///
/// let opts = Options::new().keepalive(Some(Keepalive::new(
///     Duration::from_secs(10),
///     Duration::from_secs(2),
///     3,
/// )));
/// # let _ = opts;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Keepalive {
    /// Idle time before the first probe.
    pub idle: Duration,
    /// Time between probes.
    pub interval: Duration,
    /// Unanswered probes before the connection is reset.
    pub retries: u32,
}

impl Keepalive {
    /// Default keepalive idle time before the first probe. Together with
    /// [`Keepalive::DEFAULT_INTERVAL`] and [`Keepalive::DEFAULT_RETRIES`], a
    /// silent peer is declared dead 20 + 4 × 5 = 40 s after the last byte,
    /// the same bound as [`Options::DEFAULT_USER_TIMEOUT`] so the two detectors agree.
    /// gRPC pings every 20 s; 40 s keeps probes rare on idle fleets while still
    /// beating Linux's 2 h 11 min by two orders of magnitude.
    ///
    /// Value: 20 s.
    ///
    /// ```
    /// use std::time::Duration;
    /// assert_eq!(redial::Keepalive::DEFAULT_IDLE, Duration::from_secs(20));
    /// ```
    pub const DEFAULT_IDLE: Duration = Duration::from_secs(20);

    /// Default interval between keepalive probes.
    ///
    /// Value: 5 s.
    ///
    /// ```
    /// use std::time::Duration;
    /// assert_eq!(redial::Keepalive::DEFAULT_INTERVAL, Duration::from_secs(5));
    /// ```
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

    /// Default number of unanswered keepalive probes before the kernel resets.
    ///
    /// Value: 4.
    ///
    /// ```
    /// assert_eq!(redial::Keepalive::DEFAULT_RETRIES, 4);
    /// ```
    pub const DEFAULT_RETRIES: u32 = 4;
}

impl Keepalive {
    /// Probes after `idle` without traffic, then every `interval`; the
    /// connection is reset after `retries` unanswered probes.
    ///
    /// ```
    /// let k = redial::Keepalive::new(
    ///     std::time::Duration::from_secs(30),
    ///     std::time::Duration::from_secs(5),
    ///     4,
    /// );
    /// assert_eq!(k.retries, 4);
    /// ```
    pub fn new(idle: Duration, interval: Duration, retries: u32) -> Self {
        Keepalive {
            idle,
            interval,
            retries,
        }
    }
}

impl Default for Keepalive {
    fn default() -> Self {
        Keepalive {
            idle: Keepalive::DEFAULT_IDLE,
            interval: Keepalive::DEFAULT_INTERVAL,
            retries: Keepalive::DEFAULT_RETRIES,
        }
    }
}

/// What `Connection::send` does while the connection is down.
///
/// ```
/// use redial::{Options, Outage};
/// let opts = Options::new().outage(Outage::Buffer { max_bytes: 64 * 1024 });
/// # let _ = opts;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Outage {
    /// Refuse with [`SendError::NotConnected`](crate::SendError::NotConnected),
    /// handing the bytes back (the default: the application decides).
    #[default]
    Reject,
    /// Keep up to `max_bytes` and send them after `on_connect` of the next
    /// connection, in order, after whatever `on_connect` sent.
    Buffer {
        /// The bound; further sends get
        /// [`SendError::OutageBufferFull`](crate::SendError::OutageBufferFull).
        max_bytes: usize,
    },
}

type SocketHook = Arc<dyn Fn(&SockRef<'_>) -> io::Result<()> + Send + Sync>;

/// Settings of one managed connection, built with chained methods.
///
/// ```
/// use redial::{Backoff, Options, Outage};
/// use std::time::Duration;
///
/// let opts = Options::new()
///     .backoff(Backoff::new(Duration::from_millis(50), 2.0, Duration::from_secs(5))?)
///     .connect_timeout(Duration::from_secs(2))
///     .max_attempts(10)
///     .idle_timeout(Some(Duration::from_secs(30)))
///     .outage(Outage::Buffer { max_bytes: 1 << 20 });
/// # let _ = opts;
/// # Ok::<(), redial::OptionsError>(())
/// ```
#[derive(Clone)]
pub struct Options {
    pub(crate) backoff: Backoff,
    pub(crate) stable_after: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) max_attempts: Option<u32>,
    pub(crate) give_up_after: Option<Duration>,
    pub(crate) restart_intensity: Option<(u32, Duration)>,
    pub(crate) nodelay: bool,
    pub(crate) send_queue_limit: usize,
    pub(crate) outage: Outage,
    pub(crate) bind: Option<SocketAddr>,
    pub(crate) socket_hook: Option<SocketHook>,
    pub(crate) keepalive: Option<Keepalive>,
    pub(crate) user_timeout: Option<Duration>,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) heartbeat: Option<Duration>,
    pub(crate) close_grace: Duration,
    pub(crate) max_lifetime: Option<Duration>,
    pub(crate) seed: Option<u64>,
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<crate::driver::tls::TlsConfig>,
}

impl Options {
    /// Default connect timeout per address: a SYN that gets no answer in 10 s
    /// has met a dead host or a firewall that drops; waiting the kernel's ~2 min
    /// helps nobody.
    ///
    /// Value: 10 s.
    ///
    /// ```
    /// use std::time::Duration;
    /// assert_eq!(redial::Options::DEFAULT_CONNECT_TIMEOUT, Duration::from_secs(10));
    /// ```
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

    /// Default time a connection must stay up before the backoff schedule starts
    /// over: a server that accepts and closes at once is not "up".
    ///
    /// Value: 5 s.
    ///
    /// ```
    /// use std::time::Duration;
    /// assert_eq!(redial::Options::DEFAULT_STABLE_AFTER, Duration::from_secs(5));
    /// ```
    pub const DEFAULT_STABLE_AFTER: Duration = Duration::from_secs(5);

    /// Default bound of bytes accepted by `send` and not yet written to the
    /// kernel: large enough for bursts, small enough that a stalled peer cannot
    /// eat the process's memory.
    ///
    /// Value: 4 MiB.
    ///
    /// ```
    /// assert_eq!(redial::Options::DEFAULT_SEND_QUEUE_LIMIT, 4 * 1024 * 1024);
    /// ```
    pub const DEFAULT_SEND_QUEUE_LIMIT: usize = 4 * 1024 * 1024;

    /// Default time `disconnect` spends flushing queued bytes before it closes
    /// anyway and hands the rest back in [`Close::unsent`](crate::Close::unsent).
    ///
    /// Value: 5 s.
    ///
    /// ```
    /// use std::time::Duration;
    /// assert_eq!(redial::Options::DEFAULT_CLOSE_GRACE, Duration::from_secs(5));
    /// ```
    pub const DEFAULT_CLOSE_GRACE: Duration = Duration::from_secs(5);

    /// Default TCP_USER_TIMEOUT: data unacknowledged for this long resets the
    /// connection (Linux alone would retransmit for 15+ minutes). Equal to the
    /// keepalive bound so an idle and a busy dead peer are found equally fast.
    ///
    /// Value: 40 s.
    ///
    /// ```
    /// use std::time::Duration;
    /// assert_eq!(redial::Options::DEFAULT_USER_TIMEOUT, Duration::from_secs(40));
    /// ```
    pub const DEFAULT_USER_TIMEOUT: Duration = Duration::from_secs(40);

    /// The jitter of [`Options::max_lifetime`]: each connection's lifetime
    /// is drawn uniformly within ±10 % of the setting, so connections made
    /// together (a pool started at once, a fleet after an outage) are not
    /// all replaced at the same moment.
    ///
    /// ```
    /// assert_eq!(redial::Options::MAX_LIFETIME_JITTER, 0.10);
    /// ```
    pub const MAX_LIFETIME_JITTER: f64 = 0.10;
}

impl Options {
    /// Equal in every setting; hooks and TLS configurations count as equal
    /// when they are the same value (one `Arc`), not merely alike.
    pub(crate) fn same_as(&self, other: &Options) -> bool {
        // Destructured, so a new setting cannot be forgotten here.
        let Options {
            backoff,
            stable_after,
            connect_timeout,
            max_attempts,
            give_up_after,
            restart_intensity,
            nodelay,
            send_queue_limit,
            outage,
            bind,
            socket_hook,
            keepalive,
            user_timeout,
            idle_timeout,
            heartbeat,
            close_grace,
            max_lifetime,
            seed,
            #[cfg(feature = "tls")]
            tls,
        } = self;
        let hooks = match (socket_hook, &other.socket_hook) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        #[cfg(feature = "tls")]
        let hooks = hooks
            && match (tls, &other.tls) {
                (None, None) => true,
                (Some(a), Some(b)) => {
                    Arc::ptr_eq(&a.config, &b.config) && a.server_name == b.server_name
                }
                _ => false,
            };
        hooks
            && *backoff == other.backoff
            && *stable_after == other.stable_after
            && *connect_timeout == other.connect_timeout
            && *max_attempts == other.max_attempts
            && *give_up_after == other.give_up_after
            && *restart_intensity == other.restart_intensity
            && *nodelay == other.nodelay
            && *send_queue_limit == other.send_queue_limit
            && *outage == other.outage
            && *bind == other.bind
            && *keepalive == other.keepalive
            && *user_timeout == other.user_timeout
            && *idle_timeout == other.idle_timeout
            && *heartbeat == other.heartbeat
            && *close_grace == other.close_grace
            && *max_lifetime == other.max_lifetime
            && *seed == other.seed
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            backoff: Backoff::default(),
            stable_after: Options::DEFAULT_STABLE_AFTER,
            connect_timeout: Options::DEFAULT_CONNECT_TIMEOUT,
            max_attempts: None,
            give_up_after: None,
            restart_intensity: None,
            nodelay: true,
            send_queue_limit: Options::DEFAULT_SEND_QUEUE_LIMIT,
            outage: Outage::Reject,
            bind: None,
            socket_hook: None,
            keepalive: Some(Keepalive::default()),
            user_timeout: Some(Options::DEFAULT_USER_TIMEOUT),
            idle_timeout: None,
            heartbeat: None,
            close_grace: Options::DEFAULT_CLOSE_GRACE,
            max_lifetime: None,
            seed: None,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

impl fmt::Debug for Options {
    /// Every setting; the socket hook and the TLS configuration show
    /// whether they are set.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Destructured, so a new setting cannot be left out here.
        let Options {
            backoff,
            stable_after,
            connect_timeout,
            max_attempts,
            give_up_after,
            restart_intensity,
            nodelay,
            send_queue_limit,
            outage,
            bind,
            socket_hook,
            keepalive,
            user_timeout,
            idle_timeout,
            heartbeat,
            close_grace,
            max_lifetime,
            seed,
            #[cfg(feature = "tls")]
            tls,
        } = self;
        let mut d = f.debug_struct("Options");
        d.field("backoff", backoff)
            .field("stable_after", stable_after)
            .field("connect_timeout", connect_timeout)
            .field("max_attempts", max_attempts)
            .field("give_up_after", give_up_after)
            .field("restart_intensity", restart_intensity)
            .field("nodelay", nodelay)
            .field("send_queue_limit", send_queue_limit)
            .field("outage", outage)
            .field("bind", bind)
            .field("socket_hook", &socket_hook.is_some())
            .field("keepalive", keepalive)
            .field("user_timeout", user_timeout)
            .field("idle_timeout", idle_timeout)
            .field("heartbeat", heartbeat)
            .field("close_grace", close_grace)
            .field("max_lifetime", max_lifetime)
            .field("seed", seed);
        #[cfg(feature = "tls")]
        d.field("tls", &tls.is_some());
        d.finish()
    }
}

impl Options {
    /// The defaults (same as `Options::default()`).
    ///
    /// ```
    /// let o = redial::Options::new();
    /// # let _ = o;
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// The reconnect schedule (default: 100 ms × 2 up to 30 s, ±20 %).
    ///
    /// ```
    /// let o = redial::Options::new().backoff(redial::Backoff::default().with_jitter(redial::Jitter::Full));
    /// # let _ = o;
    /// ```
    #[must_use]
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// How long a connection must stay up before the backoff schedule starts
    /// over (default 5 s). A lost connection is retried at once, unless it
    /// and the connection before it were both lost sooner than this: then
    /// the retry waits for the running schedule, so a server that accepts
    /// and closes every connection is not hammered.
    ///
    /// ```
    /// let o = redial::Options::new().stable_after(std::time::Duration::from_secs(1));
    /// # let _ = o;
    /// ```
    #[must_use]
    pub fn stable_after(mut self, d: Duration) -> Self {
        self.stable_after = d;
        self
    }

    /// Timeout of one connect to one address (default 10 s); must be above zero.
    ///
    /// ```
    /// let o = redial::Options::new().connect_timeout(std::time::Duration::from_secs(1));
    /// # let _ = o;
    /// ```
    #[must_use]
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// Give up (close with [`CloseReason::GaveUp`](crate::CloseReason::GaveUp))
    /// after `n` failed attempts in a row (default: never). Must be at least 1.
    ///
    /// ```
    /// let o = redial::Options::new().max_attempts(5);
    /// # let _ = o;
    /// ```
    #[must_use]
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = Some(n);
        self
    }

    /// Give up when the next attempt would start more than `budget` after
    /// the failure streak began (the connection was lost, or the first
    /// attempt started). Default: never.
    ///
    /// ```
    /// let o = redial::Options::new().give_up_after(std::time::Duration::from_secs(60));
    /// # let _ = o;
    /// ```
    #[must_use]
    pub fn give_up_after(mut self, budget: Duration) -> Self {
        self.give_up_after = Some(budget);
        self
    }

    /// Close for good when more than `resets` connections are lost within
    /// `within` (an Erlang-style restart intensity). Default: off.
    ///
    /// ```
    /// let o = redial::Options::new().restart_intensity(10, std::time::Duration::from_secs(60));
    /// # let _ = o;
    /// ```
    #[must_use]
    pub fn restart_intensity(mut self, resets: u32, within: Duration) -> Self {
        self.restart_intensity = Some((resets, within));
        self
    }

    /// TCP_NODELAY (default on: writes are batched by redial already, so
    /// Nagle only adds latency).
    ///
    /// ```
    /// let o = redial::Options::new().nodelay(false);
    /// # let _ = o;
    /// ```
    #[must_use]
    pub fn nodelay(mut self, on: bool) -> Self {
        self.nodelay = on;
        self
    }

    /// Bytes `send` accepts before refusing with
    /// [`SendError::Full`](crate::SendError::Full) (default 4 MiB); counts
    /// queued bytes and the batch being written. Must be above zero.
    ///
    /// ```
    /// let o = redial::Options::new().send_queue_limit(64 * 1024);
    /// # let _ = o;
    /// ```
    #[must_use]
    pub fn send_queue_limit(mut self, bytes: usize) -> Self {
        self.send_queue_limit = bytes;
        self
    }

    /// What `Connection::send` does while the connection is down.
    ///
    /// ```
    /// let o = redial::Options::new().outage(redial::Outage::Reject);
    /// # let _ = o;
    /// ```
    #[must_use]
    pub fn outage(mut self, policy: Outage) -> Self {
        self.outage = policy;
        self
    }

    /// Local address to bind before connecting.
    ///
    /// ```
    /// let o = redial::Options::new().bind("127.0.0.2:0".parse().unwrap());
    /// # let _ = o;
    /// ```
    #[must_use]
    pub fn bind(mut self, local: SocketAddr) -> Self {
        self.bind = Some(local);
        self
    }

    /// A hook that sets any socket option before each connect; an error
    /// fails that attempt. It runs after redial's own options, so what it
    /// sets wins. A hook that clears TCP_USER_TIMEOUT should set
    /// TCP_KEEPCNT too: redial leaves the probe count to the kernel when a
    /// user timeout is set (see [`Options::keepalive`]).
    ///
    /// ```
    /// let o = redial::Options::new().configure_socket(|s| s.set_send_buffer_size(256 * 1024));
    /// # let _ = o;
    /// ```
    #[must_use]
    pub fn configure_socket<F>(mut self, hook: F) -> Self
    where
        F: Fn(&SockRef<'_>) -> io::Result<()> + Send + Sync + 'static,
    {
        self.socket_hook = Some(Arc::new(hook));
        self
    }

    /// TCP keepalive probes (default on: 20 s idle, 5 s × 4 probes); `None`
    /// turns them off. Linux takes at most 32,767 s for `idle` and
    /// `interval` and 127 `retries`; more is refused when connecting, with
    /// an [`OptionsError`] naming `keepalive`.
    ///
    /// Sets SO_KEEPALIVE, TCP_KEEPIDLE and TCP_KEEPINTVL. TCP_KEEPCNT
    /// (`retries`) is set only without a [`user_timeout`](Options::user_timeout)
    /// (or off Linux): with one, Linux closes a silent connection when the
    /// user timeout has passed since the last byte received and a probe
    /// went unanswered, and never reads the probe count.
    ///
    /// ```
    /// let o = redial::Options::new().keepalive(None);
    /// # let _ = o;
    /// ```
    #[must_use]
    pub fn keepalive(mut self, keepalive: Option<Keepalive>) -> Self {
        self.keepalive = keepalive;
        self
    }

    /// TCP_USER_TIMEOUT (Linux; default 40 s); `None` leaves the kernel's.
    /// With keepalive on, it also bounds an idle silent peer: the kernel
    /// closes the connection once this long has passed without a byte
    /// from the peer and a keepalive probe went unanswered, in place of
    /// the probe count.
    /// The kernel takes at most `i32::MAX` milliseconds (about 24.8 days);
    /// more is refused when connecting, with an [`OptionsError`] naming
    /// `user_timeout`.
    ///
    /// ```
    /// let o = redial::Options::new().user_timeout(Some(std::time::Duration::from_secs(10)));
    /// # let _ = o;
    /// ```
    #[must_use]
    pub fn user_timeout(mut self, d: Option<Duration>) -> Self {
        self.user_timeout = d;
        self
    }

    /// Reset with [`ResetReason::IdleTimeout`](crate::ResetReason::IdleTimeout)
    /// when no byte has been read for this long (default: off).
    ///
    /// ```
    /// let o = redial::Options::new().idle_timeout(Some(std::time::Duration::from_secs(30)));
    /// # let _ = o;
    /// ```
    #[must_use]
    pub fn idle_timeout(mut self, d: Option<Duration>) -> Self {
        self.idle_timeout = d;
        self
    }

    /// Call [`Handler::on_idle`](crate::Handler::on_idle) when no byte has
    /// been read for this long, so the application can send its own ping
    /// (default: off).
    ///
    /// ```
    /// let o = redial::Options::new().heartbeat(Some(std::time::Duration::from_secs(10)));
    /// # let _ = o;
    /// ```
    #[must_use]
    pub fn heartbeat(mut self, every: Option<Duration>) -> Self {
        self.heartbeat = every;
        self
    }

    /// How long `disconnect` flushes queued bytes before closing anyway
    /// (default 5 s). When it runs out, the connection is reset and closes
    /// with [`CloseReason::GraceExpired`](crate::CloseReason::GraceExpired).
    /// Like every duration here (except the kernel's socket options), a
    /// huge one saturates: `Duration::MAX` waits for as long as it takes.
    ///
    /// ```
    /// let o = redial::Options::new().close_grace(std::time::Duration::from_secs(1));
    /// # let _ = o;
    /// ```
    #[must_use]
    pub fn close_grace(mut self, d: Duration) -> Self {
        self.close_grace = d;
        self
    }

    /// Replaces a connection that has been up for `d` (± 10 %,
    /// [`Options::MAX_LIFETIME_JITTER`], drawn for each connection) with a fresh one,
    /// make-before-break (default: off). For load balancers and
    /// fleets: a long-lived connection otherwise stays on the server it
    /// first reached, and a server added later gets no share of it.
    ///
    /// How a replacement goes: a new connection is made first (its attempt
    /// counts under the manager's cap on attempts in flight; the old one
    /// keeps working meanwhile). Then the old one stops taking sends: what
    /// is queued at that moment is flushed on it within
    /// [`close_grace`](Self::close_grace), it sends FIN, and what the peer
    /// still sends (the answers to what was sent) goes to `on_data` until
    /// the peer's FIN or at most a second. Sends made meanwhile are held,
    /// whatever the [`Outage`] policy, and go out on the new connection
    /// after its `on_connect`, in order. The handler sees `on_connect` for
    /// the new socket and no `on_reset` (nothing was lost); the manager's
    /// events show [`EventKind::Recycled`](crate::EventKind::Recycled) for
    /// the old socket, then `Connected` for the new one, and
    /// [`Stats::recycles`](crate::Stats::recycles) counts them (`connects`
    /// counts the new socket too). The state stays `Connected` throughout.
    ///
    /// A disconnect while the old connection flushes flushes the held
    /// sends on it too; one in the replacement's last instant (after the
    /// old one's FIN, before the new one's `on_connect`) hands them back
    /// in `on_close`.
    ///
    /// If the replacement cannot be made, the old connection stays and the
    /// replacement is tried again a tenth of `d` later (at least a second
    /// after). If the old connection fails while it drains, or does not
    /// flush within the grace period, that is a loss like any other:
    /// `on_reset` gets what it did not write, and the connection reconnects.
    ///
    /// To move members onto servers added behind a name (a pool whose
    /// members all connect to one `host:port`, or to one
    /// [`Endpoint::any`](crate::Endpoint::any) list), a pool's members start
    /// their attempts at different addresses and move on by one at every
    /// attempt, so after one lifetime they are spread over every address
    /// that answers, a server added since included. (A pool that follows a
    /// name with [`Follow`](crate::Follow) needs none of this: each address
    /// has members of its own.)
    ///
    /// ```
    /// let o = redial::Options::new().max_lifetime(std::time::Duration::from_secs(600));
    /// # let _ = o;
    /// ```
    #[must_use]
    pub fn max_lifetime(mut self, d: Duration) -> Self {
        self.max_lifetime = Some(d);
        self
    }

    /// Seed of the backoff jitter, for a repeatable schedule (default: a
    /// different seed per connection).
    ///
    /// ```
    /// let o = redial::Options::new().seed(42);
    /// # let _ = o;
    /// ```
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Connect with TLS (feature `tls`): the handshake is part of each
    /// attempt, the endpoint's host is the server name unless
    /// [`TlsConfig::server_name`](crate::TlsConfig::server_name) says
    /// otherwise, and certificates are always verified.
    ///
    /// ```
    /// let o = redial::Options::new().tls(redial::TlsConfig::webpki());
    /// # let _ = o;
    /// ```
    #[cfg(feature = "tls")]
    #[must_use]
    pub fn tls(mut self, tls: crate::driver::tls::TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    pub(crate) fn validate(&self) -> Result<(), OptionsError> {
        self.backoff.validate()?;
        if self.connect_timeout.is_zero() {
            return Err(OptionsError::invalid(
                "connect_timeout",
                "must be above zero",
            ));
        }
        if self.max_attempts == Some(0) {
            return Err(OptionsError::invalid("max_attempts", "must be at least 1"));
        }
        if self.send_queue_limit == 0 {
            return Err(OptionsError::invalid(
                "send_queue_limit",
                "must be above zero",
            ));
        }
        if let Some((n, within)) = self.restart_intensity {
            if n == 0 || within.is_zero() {
                return Err(OptionsError::invalid(
                    "restart_intensity",
                    "needs at least 1 reset within a period above zero",
                ));
            }
        }
        for (name, d) in [
            ("idle_timeout", self.idle_timeout),
            ("heartbeat", self.heartbeat),
            ("user_timeout", self.user_timeout),
        ] {
            if d == Some(Duration::ZERO) {
                return Err(OptionsError::invalid(
                    name,
                    "must be above zero (use None to turn it off)",
                ));
            }
        }
        if self.max_lifetime == Some(Duration::ZERO) {
            return Err(OptionsError::invalid("max_lifetime", "must be above zero"));
        }
        if let Some(k) = self.keepalive {
            if k.idle.is_zero() || k.interval.is_zero() || k.retries == 0 {
                return Err(OptionsError::invalid(
                    "keepalive",
                    "idle, interval and retries must be above zero",
                ));
            }
            if k.idle > MAX_KEEPALIVE_TIME
                || k.interval > MAX_KEEPALIVE_TIME
                || k.retries > MAX_KEEPALIVE_RETRIES
            {
                return Err(OptionsError::invalid(
                    "keepalive",
                    "idle and interval at most 32767 s, retries at most 127 (the kernel's limits)",
                ));
            }
        }
        if self.user_timeout.is_some_and(|d| d > MAX_USER_TIMEOUT) {
            return Err(OptionsError::invalid(
                "user_timeout",
                "at most 2147483647 ms, about 24.8 days (the kernel's limit)",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_every_setting() {
        let text = format!("{:?}", Options::new().seed(7));
        for name in ["close_grace", "heartbeat", "seed: Some(7)", "socket_hook"] {
            assert!(text.contains(name), "{name} missing from {text}");
        }
    }

    #[test]
    fn options_are_the_same_when_every_setting_is() {
        let a = Options::new().max_attempts(3);
        assert!(a.same_as(&a.clone()));
        assert!(!a.same_as(&Options::new()));
        assert!(!a.same_as(&a.clone().stable_after(Duration::from_secs(1))));
        // Hooks: the same hook value, not a look-alike.
        let hooked = a.clone().configure_socket(|_| Ok(()));
        assert!(hooked.same_as(&hooked.clone()));
        assert!(!hooked.same_as(&a.clone().configure_socket(|_| Ok(()))));
    }
}
