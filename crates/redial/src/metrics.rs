//! Metrics through the [`metrics`](https://docs.rs/metrics) facade (the
//! `metrics` feature): counters, gauges and histograms of every managed
//! connection, for whichever exporter the application installs
//! (Prometheus, StatsD, OpenTelemetry, …). Without the feature none of
//! this is compiled in.
//!
//! ```toml
//! redial = { version = "0.1", features = ["metrics"] }
//! ```
//!
//! Install the recorder before making connections: the connections with
//! one label set (pool and endpoint) share handles on their metrics, taken
//! from the recorder when the first of them is made and kept as the
//! recorder keeps its series, so an event or a write moves a handle and
//! looks nothing up.
//! [`describe`] gives each metric its help text and unit.
//!
//! ```
//! // With any recorder, e.g. metrics-exporter-prometheus's:
//! // PrometheusBuilder::new().install_recorder()?;
//! redial::metrics::describe();
//! ```
//!
//! # The metrics
//!
//! Every metric carries the labels `pool` (empty for a connection outside
//! a pool) and `endpoint` (as written); a few carry a bounded `reason` or
//! `state`. None carries a connection id, so their number stays bounded by
//! the endpoints and pools. Units are in the names (`_bytes`, `_seconds`,
//! histograms in seconds as `f64`; the rest are counts), and [`describe`]
//! gives each its unit too. The right column maps each to the
//! OpenTelemetry connection-pool conventions (`db.client.connection.*`)
//! where one exists, or to Envoy's per-cluster statistics.
//!
//! | name | type | labels | what | OpenTelemetry / Envoy |
//! |---|---|---|---|---|
//! | `redial_connect_attempts_total` | counter | | connect attempts made | Envoy `upstream_cx_total` counts the successes |
//! | `redial_connect_failures_total` | counter | `reason`: `refused`, `timeout`, `dns`, `tls`, `other` | failed attempts, by the error's type: refused, the connect timed out, resolving the name failed, the TLS handshake failed or timed out, anything else | `db.client.connection.timeouts` (`reason="timeout"`); Envoy `upstream_cx_connect_fail`, `upstream_cx_connect_timeout` |
//! | `redial_connections_opened_total` | counter | | connections made | Envoy `upstream_cx_total` |
//! | `redial_connection_losses_total` | counter | `reason`: `peer_closed`, `peer_reset`, `timed_out` (keepalive or user timeout), `idle_timeout`, `error` | live connections lost ([`Reset`](crate::Reset)) | Envoy `upstream_cx_destroy_remote` |
//! | `redial_connection_closes_total` | counter | `reason`: `disconnected`, `grace_expired`, `aborted`, `stopped`, `gave_up`, `restart_intensity`, `handler_panicked`, `terminal`, `shutdown` | connections ended for good ([`Close`](crate::Close)) | Envoy `upstream_cx_destroy_local` |
//! | `redial_give_ups_total` | counter | | failure streaks that tripped the give-up policy | |
//! | `redial_recycles_total` | counter | | connections replaced, make-before-break, after [`Options::max_lifetime`](crate::Options::max_lifetime) | Envoy `upstream_cx_max_duration_reached` |
//! | `redial_flaps_total` | counter | | connections lost before [`Options::stable_after`](crate::Options::stable_after) | |
//! | `redial_sent_bytes_total` | counter | | bytes handed to the kernel (or TLS) | Envoy `upstream_cx_tx_bytes_total` |
//! | `redial_received_bytes_total` | counter | | bytes read | Envoy `upstream_cx_rx_bytes_total` |
//! | `redial_handed_back_bytes_total` | counter | | bytes handed back in a `Reset` or `Close` (those no handler took count in the next row too) | |
//! | `redial_discarded_bytes_total` | counter | | bytes no one took ([`Stats::discarded_bytes`](crate::Stats::discarded_bytes)) | |
//! | `redial_sends_refused_total` | counter | `reason`: `full`, `not_connected`, `outage_full`, `closed`; a pool's own also `pool_empty`, `no_live_member`, `timed_out` | sends the caller saw refused: of a `Connection`, `Socket`, `Sender` or [`Stream`](crate::Stream) write, under its endpoint; of [`Pool::send`](crate::Pool::send) or [`Pool::send_wait`](crate::Pool::send_wait), under the pool with an empty `endpoint` | Envoy `upstream_cx_overflow` (roughly) |
//! | `redial_connections` | gauge | `state`: `connecting`, `connected`, `backing_off` | connections by state | `db.client.connection.count{state}`; Envoy `upstream_cx_active` (`connected`) |
//! | `redial_connect_attempts_in_flight` | gauge | none | attempts in flight, every manager of the process | `db.client.connection.pending_requests` (roughly) |
//! | `redial_pool_members` | gauge | `pool` only | members of each pool | `db.client.connection.max` (the pool's size) |
//! | `redial_pool_members_connected` | gauge | `pool` only | members that are up (a flapping member counts, unlike [`Pool::live`](crate::Pool::live)) | `db.client.connection.count{state="idle"}` plus `"used"` |
//! | `redial_queued_bytes` | gauge | | bytes accepted and not yet written (the send queue and the outage buffer), as of the last write or state change | |
//! | `redial_connect_duration_seconds` | histogram | | from the start of an attempt (once the cap on attempts in flight let it through) to connected or failed | `db.client.connection.create_time`; Envoy `upstream_cx_connect_ms` |
//! | `redial_connection_lifetime_seconds` | histogram | | how long each connection was up, lost or closed | `db.client.connection.use_time` (roughly); Envoy `upstream_cx_length_ms` |
//! | `redial_downtime_seconds` | histogram | | from a loss to connected again | |

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, LazyLock, Mutex, OnceLock};
use std::time::Instant;

use ::metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Counter,
    Gauge, Histogram, Label, Unit,
};

use crate::driver::dial::Step;
use crate::error::SendError;
use crate::events::EventKind;
use crate::queue::Refused;
use crate::reset::{CloseReason, ResetReason};
use crate::shared::State;

const CONNECTIONS: &str = "redial_connections";
const IN_FLIGHT: &str = "redial_connect_attempts_in_flight";
const POOL_MEMBERS: &str = "redial_pool_members";
const POOL_CONNECTED: &str = "redial_pool_members_connected";
const REFUSED: &str = "redial_sends_refused_total";

/// Every counter: its name, unit and help text (for [`describe`]).
const COUNTERS: &[(&str, Unit, &str)] = &[
    (
        "redial_connect_attempts_total",
        Unit::Count,
        "Connect attempts made",
    ),
    (
        "redial_connect_failures_total",
        Unit::Count,
        "Connect attempts that failed, by reason",
    ),
    (
        "redial_connections_opened_total",
        Unit::Count,
        "Connections made",
    ),
    (
        "redial_connection_losses_total",
        Unit::Count,
        "Live connections lost, by reason",
    ),
    (
        "redial_connection_closes_total",
        Unit::Count,
        "Connections ended for good, by reason",
    ),
    (
        "redial_give_ups_total",
        Unit::Count,
        "Failure streaks that tripped the give-up policy",
    ),
    (
        "redial_recycles_total",
        Unit::Count,
        "Connections replaced after max_lifetime",
    ),
    (
        "redial_flaps_total",
        Unit::Count,
        "Connections lost before stable_after",
    ),
    (
        "redial_sent_bytes_total",
        Unit::Bytes,
        "Bytes handed to the kernel",
    ),
    ("redial_received_bytes_total", Unit::Bytes, "Bytes read"),
    (
        "redial_handed_back_bytes_total",
        Unit::Bytes,
        "Bytes handed back in a Reset or Close",
    ),
    (
        "redial_discarded_bytes_total",
        Unit::Bytes,
        "Bytes handed back that no handler took",
    ),
    (
        "redial_sends_refused_total",
        Unit::Count,
        "Sends refused, by reason",
    ),
];

/// Every gauge: its name, unit and help text (for [`describe`]).
const GAUGES: &[(&str, Unit, &str)] = &[
    (CONNECTIONS, Unit::Count, "Connections by state"),
    (IN_FLIGHT, Unit::Count, "Connect attempts in flight"),
    (POOL_MEMBERS, Unit::Count, "Members of each pool"),
    (POOL_CONNECTED, Unit::Count, "Pool members that are up"),
    (
        "redial_queued_bytes",
        Unit::Bytes,
        "Bytes accepted and not yet written",
    ),
];

/// Every histogram: its name, unit and help text (for [`describe`]).
const HISTOGRAMS: &[(&str, Unit, &str)] = &[
    (
        "redial_connect_duration_seconds",
        Unit::Seconds,
        "From the start of a connect attempt to connected or failed",
    ),
    (
        "redial_connection_lifetime_seconds",
        Unit::Seconds,
        "How long each connection was up",
    ),
    (
        "redial_downtime_seconds",
        Unit::Seconds,
        "From a loss to connected again",
    ),
];

/// Gives every metric its help text and unit, for exporters that show
/// them (Prometheus's `# HELP` lines). Call once, after installing the
/// recorder.
///
/// ```
/// redial::metrics::describe(); // a no-op without a recorder
/// ```
pub fn describe() {
    for &(name, unit, help) in COUNTERS {
        describe_counter!(name, unit, help);
    }
    for &(name, unit, help) in GAUGES {
        describe_gauge!(name, unit, help);
    }
    for &(name, unit, help) in HISTOGRAMS {
        describe_histogram!(name, unit, help);
    }
}

/// One more attempt in flight (`up`) or one fewer.
pub(crate) fn attempt_in_flight(up: bool) {
    let g = gauge!(IN_FLIGHT);
    if up {
        g.increment(1.0);
    } else {
        g.decrement(1.0);
    }
}

/// Times kept between events (locked only at events).
#[derive(Default)]
struct Times {
    attempt_started: Option<Instant>,
    connected_at: Option<Instant>,
    lost_at: Option<Instant>,
    /// The reason of the failed attempt whose event comes next (an index
    /// into [`FAILURES`]).
    failure: Option<usize>,
}

/// The counters without a `reason` label, in [`Series::plain`]'s order.
#[derive(Clone, Copy)]
enum Plain {
    Attempts,
    Opened,
    GiveUps,
    Recycles,
    Flaps,
    HandedBack,
    Discarded,
}

const PLAIN: [&str; 7] = [
    "redial_connect_attempts_total",
    "redial_connections_opened_total",
    "redial_give_ups_total",
    "redial_recycles_total",
    "redial_flaps_total",
    "redial_handed_back_bytes_total",
    "redial_discarded_bytes_total",
];

/// The histograms, in [`Series::seconds`]' order.
#[derive(Clone, Copy)]
enum Secs {
    ConnectDuration,
    Lifetime,
    Downtime,
}

const SECS: [&str; 3] = [
    "redial_connect_duration_seconds",
    "redial_connection_lifetime_seconds",
    "redial_downtime_seconds",
];

/// `reason`s of `redial_connect_failures_total`.
const FAILURES: [&str; 5] = ["refused", "timeout", "dns", "tls", "other"];
/// `reason`s of `redial_connection_losses_total`.
const LOSSES: [&str; 5] = [
    "peer_closed",
    "peer_reset",
    "timed_out",
    "idle_timeout",
    "error",
];
/// `reason`s of `redial_connection_closes_total`.
const CLOSES: [&str; 9] = [
    "disconnected",
    "grace_expired",
    "aborted",
    "stopped",
    "gave_up",
    "restart_intensity",
    "handler_panicked",
    "terminal",
    "shutdown",
];
/// `reason`s of `redial_sends_refused_total` for a connection's own sends.
const REFUSALS: [&str; 4] = ["full", "not_connected", "outage_full", "closed"];

/// One counter with a `reason` label: its name, its reasons, and a handle
/// for each reason, registered when that reason first comes.
struct ByReason<const N: usize> {
    name: &'static str,
    reasons: &'static [&'static str; N],
    handles: [OnceLock<Counter>; N],
}

impl<const N: usize> ByReason<N> {
    fn new(name: &'static str, reasons: &'static [&'static str; N]) -> Self {
        ByReason {
            name,
            reasons,
            handles: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    /// Counts one under `reasons[i]` (`i` comes from this file's tables).
    fn add(&self, labels: &[Label; 2], i: usize) {
        let Some(slot) = self.handles.get(i) else {
            return;
        };
        slot.get_or_init(|| {
            let mut l = labels.to_vec();
            l.push(Label::new("reason", self.reasons[i]));
            counter!(self.name, l)
        })
        .increment(1);
    }
}

/// The handles of one label set, `(pool, endpoint)`, which every
/// connection with that set shares (the metrics carry no connection id).
/// A connection to an endpoint already in use then costs one look-up in
/// [`SERIES`] instead of one in the recorder's registry per metric, and an
/// event moves a handle instead of looking the metric up with a freshly
/// allocated label set. Handles other than the state gauges and the byte
/// counters are registered when first used, so that a series appears in
/// the exporter when it first moves.
struct Series {
    /// The recorder the handles came from (see [`recorder_id`]).
    recorder: usize,
    labels: [Label; 2],
    /// `redial_connections` for each state it counts (connecting,
    /// connected, backing off): a state change, which comes just before
    /// `on_reset` after a loss, is two atomic adds.
    states: [Gauge; 3],
    /// The pool's `redial_pool_members_connected` and `redial_pool_members`.
    pool: Option<[Gauge; 2]>,
    sent: Counter,
    received: Counter,
    queued: Gauge,
    plain: [OnceLock<Counter>; PLAIN.len()],
    seconds: [OnceLock<Histogram>; SECS.len()],
    failures: ByReason<5>,
    losses: ByReason<5>,
    closes: ByReason<9>,
    refused: ByReason<4>,
}

/// Which recorder is in effect on this thread (the global one, a local
/// one, or none), by its address.
fn recorder_id() -> usize {
    ::metrics::with_recorder(|r| (r as *const dyn ::metrics::Recorder).cast::<()>().addr())
}

/// `(pool, endpoint)`, the pool empty for a connection outside one.
type SeriesKey = (String, crate::endpoint::Endpoint);

/// The label sets seen, each with the handles its connections share. A
/// set stays after its last connection went, as the recorder keeps its
/// series: a connection made again to the same endpoint (a fresh one per
/// request, or after a restart of the application's own logic) takes the
/// handles from here. Sets no connection holds are dropped when the map
/// has doubled since it was last swept, so endpoints that come and go do
/// not pile up.
struct SeriesMap {
    sets: HashMap<SeriesKey, Arc<Series>>,
    /// Sweep when `sets` reaches this many.
    sweep_at: usize,
}

/// The fewest label sets kept before idle ones are swept.
const KEEP_SETS: usize = 1024;

static SERIES: LazyLock<Mutex<SeriesMap>> = LazyLock::new(|| {
    Mutex::new(SeriesMap {
        sets: HashMap::new(),
        sweep_at: KEEP_SETS,
    })
});

impl Series {
    /// The handles of `key`'s label set: those registered for it before
    /// with the recorder now in effect, else new ones. A recorder
    /// installed after the first connections (whose handles went to no
    /// recorder), or a thread's local one, gets handles of its own.
    fn of(key: SeriesKey) -> Arc<Series> {
        let recorder = recorder_id();
        let mut map = SERIES.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = map.sets.get(&key).filter(|s| s.recorder == recorder) {
            return s.clone();
        }
        if map.sets.len() >= map.sweep_at {
            map.sets.retain(|_, s| Arc::strong_count(s) > 1);
            map.sweep_at = KEEP_SETS.max(2 * map.sets.len());
        }
        let s = Arc::new(Series::register(&key, recorder));
        map.sets.insert(key, s.clone());
        s
    }

    fn register((pool, endpoint): &SeriesKey, recorder: usize) -> Series {
        let labels = [
            Label::new("pool", pool.clone()),
            Label::new("endpoint", endpoint.to_string()),
        ];
        let state = |l: &'static str| {
            let mut with = labels.to_vec();
            with.push(Label::new("state", l));
            gauge!(CONNECTIONS, with)
        };
        let states = [
            state("connecting"),
            state("connected"),
            state("backing_off"),
        ];
        let pool = (!pool.is_empty()).then(|| {
            let l = [Label::new("pool", pool.clone())];
            [
                gauge!(POOL_CONNECTED, l.iter()),
                gauge!(POOL_MEMBERS, l.iter()),
            ]
        });
        Series {
            states,
            pool,
            sent: counter!("redial_sent_bytes_total", labels.iter()),
            received: counter!("redial_received_bytes_total", labels.iter()),
            queued: gauge!("redial_queued_bytes", labels.iter()),
            plain: std::array::from_fn(|_| OnceLock::new()),
            seconds: std::array::from_fn(|_| OnceLock::new()),
            failures: ByReason::new("redial_connect_failures_total", &FAILURES),
            losses: ByReason::new("redial_connection_losses_total", &LOSSES),
            closes: ByReason::new("redial_connection_closes_total", &CLOSES),
            refused: ByReason::new(REFUSED, &REFUSALS),
            labels,
            recorder,
        }
    }

    fn count(&self, which: Plain, n: u64) {
        let i = which as usize;
        self.plain[i]
            .get_or_init(|| counter!(PLAIN[i], self.labels.iter()))
            .increment(n);
    }

    fn seconds(&self, which: Secs, d: std::time::Duration) {
        let i = which as usize;
        self.seconds[i]
            .get_or_init(|| histogram!(SECS[i], self.labels.iter()))
            .record(d.as_secs_f64());
    }
}

/// What one connection keeps for its metrics: the handles of its label
/// set, shared with the other connections that have it, and what the
/// gauges last heard from this one.
pub(crate) struct ConnMetrics {
    series: Arc<Series>,
    last_queued: AtomicU64,
    /// The state the `redial_connections` gauge counts it in.
    state: AtomicU8,
    times: Mutex<Times>,
}

const NO_STATE: u8 = u8::MAX;

fn state_code(s: State) -> u8 {
    match s {
        State::Connecting => 0,
        State::Connected => 1,
        State::BackingOff => 2,
        State::Closed => NO_STATE,
    }
}

/// Where a state's gauge is in `Series::states` (none for closed).
fn state_index(code: u8) -> Option<usize> {
    (code < 3).then_some(code as usize)
}

impl ConnMetrics {
    /// A new connection, in state `Connecting`.
    pub(crate) fn new(endpoint: &crate::endpoint::Endpoint, pool: Option<&str>) -> Self {
        let series = Series::of((pool.unwrap_or("").to_string(), endpoint.clone()));
        let m = ConnMetrics {
            series,
            last_queued: AtomicU64::new(0),
            state: AtomicU8::new(NO_STATE),
            times: Mutex::new(Times::default()),
        };
        if let Some([_, members]) = &m.series.pool {
            members.increment(1.0);
        }
        m.set_state(State::Connecting);
        m
    }

    fn times(&self) -> std::sync::MutexGuard<'_, Times> {
        self.times.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The connection's state changed: moves it between the gauges.
    pub(crate) fn set_state(&self, s: State) {
        let new = state_code(s);
        let old = self.state.swap(new, Ordering::AcqRel);
        if old == new {
            return;
        }
        let series = &*self.series;
        if let Some(g) = state_index(old).map(|i| &series.states[i]) {
            g.decrement(1.0);
        }
        if let Some(g) = state_index(new).map(|i| &series.states[i]) {
            g.increment(1.0);
        }
        if let Some([connected, members]) = &series.pool {
            if old == state_code(State::Connected) {
                connected.decrement(1.0);
            }
            if new == state_code(State::Connected) {
                connected.increment(1.0);
            }
            if new == NO_STATE {
                members.decrement(1.0);
            }
        }
    }

    /// `n` bytes reached the kernel (one write call); `queued` are still
    /// waiting.
    #[inline]
    pub(crate) fn wrote(&self, n: usize, queued: u64) {
        self.series.sent.increment(n as u64);
        self.queued_now(queued);
    }

    /// `n` bytes were read (one read call).
    #[inline]
    pub(crate) fn read(&self, n: usize) {
        self.series.received.increment(n as u64);
    }

    /// Moves the queued-bytes gauge by what changed since it last moved.
    pub(crate) fn queued_now(&self, queued: u64) {
        let now = queued;
        let before = self.last_queued.swap(now, Ordering::AcqRel);
        if now > before {
            self.series.queued.increment((now - before) as f64);
        } else if before > now {
            self.series.queued.decrement((before - now) as f64);
        }
    }

    /// `n` bytes handed back were dropped by no one taking them.
    pub(crate) fn discarded(&self, n: u64) {
        self.series.count(Plain::Discarded, n);
    }

    /// A send was refused.
    pub(crate) fn refused(&self, r: &Refused) {
        let reason = match r {
            Refused::Full { .. } => 0,
            Refused::NotConnected => 1,
            Refused::OutageFull { .. } => 2,
            Refused::Closed => 3,
        };
        self.series.refused.add(&self.series.labels, reason);
    }

    /// A [`Stream`](crate::Stream) write failed with `err`: counted when
    /// it refused the bytes (down past the outage wait, or closed), not
    /// when it reports a loss.
    pub(crate) fn stream_refused(&self, err: &std::io::Error) {
        use crate::handle::stream::StreamError;
        let reason = match StreamError::of(err) {
            Some(StreamError::Down {
                outage_buffer_full: true,
                ..
            }) => 2,
            Some(StreamError::Down { .. }) => 1,
            Some(StreamError::Closed { .. }) => 3,
            _ => return,
        };
        self.series.refused.add(&self.series.labels, reason);
    }

    /// A connect attempt failed with `err`: its reason, for the event that
    /// follows (which carries the error as text only).
    pub(crate) fn connect_failed(&self, err: &std::io::Error) {
        self.times().failure = Some(failure_reason(err));
    }

    /// What an event counts; `stable_after` tells a flap.
    pub(crate) fn event(&self, kind: &EventKind, at: Instant, stable_after: std::time::Duration) {
        let s = &*self.series;
        match kind {
            EventKind::Connecting { .. } => {
                s.count(Plain::Attempts, 1);
                self.times().attempt_started = Some(at);
            }
            EventKind::Connected { .. } => {
                s.count(Plain::Opened, 1);
                let mut t = self.times();
                if let Some(start) = t.attempt_started.take() {
                    s.seconds(Secs::ConnectDuration, at.saturating_duration_since(start));
                }
                if let Some(lost) = t.lost_at.take() {
                    s.seconds(Secs::Downtime, at.saturating_duration_since(lost));
                }
                t.connected_at = Some(at);
            }
            EventKind::ConnectFailed { retry_in, .. } => {
                let mut t = self.times();
                s.failures.add(&s.labels, t.failure.take().unwrap_or(OTHER));
                if retry_in.is_none() {
                    s.count(Plain::GiveUps, 1);
                }
                if let Some(start) = t.attempt_started.take() {
                    s.seconds(Secs::ConnectDuration, at.saturating_duration_since(start));
                }
            }
            EventKind::Reset {
                reason,
                uptime,
                unsent_bytes,
            } => {
                s.losses.add(&s.labels, loss_reason(reason));
                s.count(Plain::HandedBack, *unsent_bytes as u64);
                s.seconds(Secs::Lifetime, *uptime);
                if *uptime < stable_after {
                    s.count(Plain::Flaps, 1);
                }
                let mut t = self.times();
                t.connected_at = None;
                t.lost_at = Some(at);
            }
            EventKind::Closed {
                reason,
                unsent_bytes,
            } => {
                s.closes.add(&s.labels, close_reason(reason));
                s.count(Plain::HandedBack, *unsent_bytes as u64);
                if let Some(up) = self.times().connected_at.take() {
                    s.seconds(Secs::Lifetime, at.saturating_duration_since(up));
                }
                self.queued_now(0);
            }
            EventKind::Recycled { uptime, .. } => {
                s.count(Plain::Recycles, 1);
                s.seconds(Secs::Lifetime, *uptime);
                // The new socket's `Connected` starts the next lifetime.
                self.times().connected_at = None;
            }
            // A pool's own events (members following a name) are counted
            // by the members' events.
            _ => {}
        }
    }
}

impl Drop for ConnMetrics {
    /// A connection whose task never finished (its runtime shut down)
    /// leaves the gauges all the same.
    fn drop(&mut self) {
        self.set_state(State::Closed);
        self.queued_now(0);
    }
}

/// A refusal of a pool's own (`Pool::send`, `Pool::send_wait`), counted
/// under the pool with an empty `endpoint`: no one member refused it.
pub(crate) fn pool_refused(pool: &str, err: &SendError) {
    let reason = match err {
        SendError::Full { .. } => "full",
        SendError::NotConnected { .. } => "not_connected",
        SendError::OutageBufferFull { .. } => "outage_full",
        SendError::PoolEmpty { .. } => "pool_empty",
        SendError::NoLiveMember { .. } => "no_live_member",
        SendError::TimedOut { .. } => "timed_out",
        _ => "closed",
    };
    let labels = [
        Label::new("pool", pool.to_string()),
        Label::new("endpoint", ""),
        Label::new("reason", reason),
    ];
    counter!(REFUSED, labels.iter()).increment(1);
}

/// The bounded reason of a failed attempt, by the error's type: the step
/// that failed (resolving, the TLS handshake), else its kind.
/// (An index into [`FAILURES`].)
fn failure_reason(err: &std::io::Error) -> usize {
    use std::io::ErrorKind;
    match crate::driver::dial::failed_step(err) {
        Some(Step::Resolve) => 2,
        Some(Step::Tls) => 3,
        None => match err.kind() {
            ErrorKind::ConnectionRefused => 0,
            ErrorKind::TimedOut => 1,
            _ => OTHER,
        },
    }
}

/// `other` in [`FAILURES`].
const OTHER: usize = 4;

/// A loss's index into [`LOSSES`].
fn loss_reason(r: &ResetReason) -> usize {
    match r {
        ResetReason::PeerClosed => 0,
        ResetReason::PeerReset => 1,
        ResetReason::TimedOut => 2,
        ResetReason::IdleTimeout => 3,
        ResetReason::Io { .. } => 4,
    }
}

/// A close's index into [`CLOSES`].
fn close_reason(r: &CloseReason) -> usize {
    match r {
        CloseReason::Disconnected => 0,
        CloseReason::GraceExpired { .. } => 1,
        CloseReason::Aborted => 2,
        CloseReason::Stopped => 3,
        CloseReason::GaveUp { .. } => 4,
        CloseReason::RestartIntensity { .. } => 5,
        CloseReason::HandlerPanicked { .. } => 6,
        CloseReason::Terminal { .. } => 7,
        CloseReason::Shutdown => 8,
    }
}

#[cfg(test)]
mod tests {
    use std::io::{self, ErrorKind};

    use super::*;
    use crate::driver::dial::step_error;

    /// A recorder that hands out live counters and remembers nothing. Not
    /// zero-sized: two of them must have two addresses.
    struct Counting(#[allow(dead_code)] u8);

    impl ::metrics::Recorder for Counting {
        fn describe_counter(
            &self,
            _: ::metrics::KeyName,
            _: Option<Unit>,
            _: ::metrics::SharedString,
        ) {
        }
        fn describe_gauge(
            &self,
            _: ::metrics::KeyName,
            _: Option<Unit>,
            _: ::metrics::SharedString,
        ) {
        }
        fn describe_histogram(
            &self,
            _: ::metrics::KeyName,
            _: Option<Unit>,
            _: ::metrics::SharedString,
        ) {
        }
        fn register_counter(&self, _: &::metrics::Key, _: &::metrics::Metadata<'_>) -> Counter {
            Counter::from_arc(Arc::new(AtomicU64::new(0)))
        }
        fn register_gauge(&self, _: &::metrics::Key, _: &::metrics::Metadata<'_>) -> Gauge {
            Gauge::from_arc(Arc::new(AtomicU64::new(0)))
        }
        fn register_histogram(&self, _: &::metrics::Key, _: &::metrics::Metadata<'_>) -> Histogram {
            Histogram::noop()
        }
    }

    /// Connections with one label set share handles while the recorder
    /// stays the same; a connection made under another recorder (one
    /// installed since, or a local one) gets handles of that recorder.
    #[test]
    fn a_label_set_shares_handles_per_recorder() {
        let endpoint = crate::ToEndpoint::to_endpoint("127.0.0.1:9").unwrap();
        let key = || ("shared-handles".to_string(), endpoint.clone());
        let (one, two) = (Counting(1), Counting(2));
        let first = ::metrics::with_local_recorder(&one, || Series::of(key()));
        let again = ::metrics::with_local_recorder(&one, || Series::of(key()));
        assert!(
            Arc::ptr_eq(&first, &again),
            "one recorder: one set of handles"
        );
        let other = ::metrics::with_local_recorder(&two, || Series::of(key()));
        assert!(
            !Arc::ptr_eq(&first, &other),
            "another recorder: its own handles"
        );
        // A connection made under the second recorder takes its handles.
        let m = ::metrics::with_local_recorder(&two, || {
            ConnMetrics::new(&endpoint, Some("shared-handles"))
        });
        assert!(Arc::ptr_eq(&m.series, &other));
    }

    #[test]
    fn failure_reasons_by_type_not_wording() {
        let kind =
            |k: ErrorKind| FAILURES[failure_reason(&io::Error::new(k, "whatever the words"))];
        assert_eq!(kind(ErrorKind::ConnectionRefused), "refused");
        assert_eq!(kind(ErrorKind::TimedOut), "timeout");
        assert_eq!(kind(ErrorKind::NetworkUnreachable), "other");
        assert_eq!(kind(ErrorKind::ConnectionReset), "other");
        // The words alone no longer decide.
        assert_eq!(
            FAILURES[failure_reason(&io::Error::other(
                "resolve x: Connection refused, TLS timed out"
            ))],
            "other"
        );
        let step = |k, s| FAILURES[failure_reason(&step_error(k, s, "m".to_string()))];
        // A resolve failure is `dns` whatever its kind (the resolver's
        // own kind is often uncategorized).
        assert_eq!(step(ErrorKind::Other, Step::Resolve), "dns");
        assert_eq!(step(ErrorKind::NotFound, Step::Resolve), "dns");
        assert_eq!(step(ErrorKind::InvalidData, Step::Tls), "tls");
        // A handshake that timed out failed at TLS, not at the connect.
        assert_eq!(step(ErrorKind::TimedOut, Step::Tls), "tls");
        // The step error keeps the kind and the words.
        let e = step_error(
            ErrorKind::TimedOut,
            Step::Tls,
            "connect a: TLS handshake timed out".into(),
        );
        assert_eq!(e.kind(), ErrorKind::TimedOut);
        assert_eq!(e.to_string(), "connect a: TLS handshake timed out");
    }

    /// A real attempt at a closed loopback port: the dialer's error is
    /// classified `refused`.
    #[tokio::test]
    async fn a_real_refused_attempt_is_classified_refused() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let endpoint = crate::ToEndpoint::to_endpoint(("127.0.0.1", port)).unwrap();
        let opts = crate::Options::new();
        let err = match crate::driver::dial::dial(&endpoint, &opts, 0).await {
            Ok(_) => panic!("nothing listens on 127.0.0.1:{port}"),
            Err(e) => e,
        };
        assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
        assert_eq!(FAILURES[failure_reason(&err)], "refused", "{err}");
    }
}
