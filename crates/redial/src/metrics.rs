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
//! Install the recorder before making connections: a connection takes its
//! handles on the byte counters when it is made, as the `metrics` crate's
//! handles do. [`describe`] gives each metric its help text and unit.
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

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use ::metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Counter,
    Gauge, Label, Unit,
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

/// Gives every metric its help text and unit, for exporters that show
/// them (Prometheus's `# HELP` lines). Call once, after installing the
/// recorder.
///
/// ```
/// redial::metrics::describe(); // a no-op without a recorder
/// ```
// A table of every metric's help text, not logic to split.
#[allow(clippy::too_many_lines)]
pub fn describe() {
    let counters: [(&'static str, Unit, &'static str); 13] = [
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
    for (name, unit, help) in counters {
        describe_counter!(name, unit, help);
    }
    describe_gauge!(CONNECTIONS, Unit::Count, "Connections by state");
    describe_gauge!(IN_FLIGHT, Unit::Count, "Connect attempts in flight");
    describe_gauge!(POOL_MEMBERS, Unit::Count, "Members of each pool");
    describe_gauge!(POOL_CONNECTED, Unit::Count, "Pool members that are up");
    describe_gauge!(
        "redial_queued_bytes",
        Unit::Bytes,
        "Bytes accepted and not yet written"
    );
    describe_histogram!(
        "redial_connect_duration_seconds",
        Unit::Seconds,
        "From the start of a connect attempt to connected or failed"
    );
    describe_histogram!(
        "redial_connection_lifetime_seconds",
        Unit::Seconds,
        "How long each connection was up"
    );
    describe_histogram!(
        "redial_downtime_seconds",
        Unit::Seconds,
        "From a loss to connected again"
    );
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
    /// The reason of the failed attempt whose event comes next.
    failure: Option<&'static str>,
}

/// What one connection keeps for its metrics: its labels, handles on the
/// counters of its hot paths, and what the gauges last heard from it.
pub(crate) struct ConnMetrics {
    labels: [Label; 2],
    /// `redial_connections` for each state it counts (connecting,
    /// connected, backing off), registered once: a state change, which
    /// comes just before `on_reset` after a loss, then costs two atomic
    /// adds instead of two registry look-ups.
    states: [Gauge; 3],
    /// The pool's `redial_pool_connected` and `redial_pool_members`.
    pool: Option<[Gauge; 2]>,
    sent: Counter,
    received: Counter,
    queued: Gauge,
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

/// Where a state's gauge is in `ConnMetrics::states` (none for closed).
fn state_index(code: u8) -> Option<usize> {
    (code < 3).then_some(code as usize)
}

impl ConnMetrics {
    /// A new connection, in state `Connecting`.
    pub(crate) fn new(endpoint: &crate::endpoint::Endpoint, pool: Option<&str>) -> Self {
        let labels = [
            Label::new("pool", pool.unwrap_or("").to_string()),
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
        let pool = pool.map(|p| {
            let l = [Label::new("pool", p.to_string())];
            [
                gauge!(POOL_CONNECTED, l.iter()),
                gauge!(POOL_MEMBERS, l.iter()),
            ]
        });
        let m = ConnMetrics {
            states,
            sent: counter!("redial_sent_bytes_total", labels.iter()),
            received: counter!("redial_received_bytes_total", labels.iter()),
            queued: gauge!("redial_queued_bytes", labels.iter()),
            last_queued: AtomicU64::new(0),
            state: AtomicU8::new(NO_STATE),
            times: Mutex::new(Times::default()),
            labels,
            pool,
        };
        if let Some([_, members]) = &m.pool {
            members.increment(1.0);
        }
        m.set_state(State::Connecting);
        m
    }

    fn times(&self) -> std::sync::MutexGuard<'_, Times> {
        self.times.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn with_label(&self, key: &'static str, value: &'static str) -> Vec<Label> {
        let mut l = self.labels.to_vec();
        l.push(Label::new(key, value));
        l
    }

    fn count(&self, name: &'static str, n: u64) {
        counter!(name, self.labels.iter()).increment(n);
    }

    fn count_why(&self, name: &'static str, reason: &'static str) {
        counter!(name, self.with_label("reason", reason)).increment(1);
    }

    fn seconds(&self, name: &'static str, d: std::time::Duration) {
        histogram!(name, self.labels.iter()).record(d.as_secs_f64());
    }

    /// The connection's state changed: moves it between the gauges.
    pub(crate) fn set_state(&self, s: State) {
        let new = state_code(s);
        let old = self.state.swap(new, Ordering::AcqRel);
        if old == new {
            return;
        }
        if let Some(g) = state_index(old).map(|i| &self.states[i]) {
            g.decrement(1.0);
        }
        if let Some(g) = state_index(new).map(|i| &self.states[i]) {
            g.increment(1.0);
        }
        if let Some([connected, members]) = &self.pool {
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

    /// `n` bytes reached the kernel; `queued` are still waiting.
    #[inline]
    pub(crate) fn wrote(&self, n: usize, queued: u64) {
        self.sent.increment(n as u64);
        self.queued_now(queued);
    }

    /// `n` bytes were read.
    #[inline]
    pub(crate) fn read(&self, n: usize) {
        self.received.increment(n as u64);
    }

    /// Moves the queued-bytes gauge by what changed since it last moved.
    pub(crate) fn queued_now(&self, queued: u64) {
        let now = queued;
        let before = self.last_queued.swap(now, Ordering::AcqRel);
        if now > before {
            self.queued.increment((now - before) as f64);
        } else if before > now {
            self.queued.decrement((before - now) as f64);
        }
    }

    /// `n` bytes handed back were dropped by no one taking them.
    pub(crate) fn discarded(&self, n: u64) {
        self.count("redial_discarded_bytes_total", n);
    }

    /// A send was refused.
    pub(crate) fn refused(&self, r: &Refused) {
        let reason = match r {
            Refused::Full { .. } => "full",
            Refused::NotConnected => "not_connected",
            Refused::OutageFull { .. } => "outage_full",
            Refused::Closed => "closed",
        };
        self.count_why(REFUSED, reason);
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
            }) => "outage_full",
            Some(StreamError::Down { .. }) => "not_connected",
            Some(StreamError::Closed { .. }) => "closed",
            _ => return,
        };
        self.count_why(REFUSED, reason);
    }

    /// A connect attempt failed with `err`: its reason, for the event that
    /// follows (which carries the error as text only).
    pub(crate) fn connect_failed(&self, err: &std::io::Error) {
        self.times().failure = Some(failure_reason(err));
    }

    /// What an event counts; `stable_after` tells a flap.
    pub(crate) fn event(&self, kind: &EventKind, at: Instant, stable_after: std::time::Duration) {
        match kind {
            EventKind::Connecting { .. } => {
                self.count("redial_connect_attempts_total", 1);
                self.times().attempt_started = Some(at);
            }
            EventKind::Connected { .. } => {
                self.count("redial_connections_opened_total", 1);
                let mut t = self.times();
                if let Some(s) = t.attempt_started.take() {
                    self.seconds(
                        "redial_connect_duration_seconds",
                        at.saturating_duration_since(s),
                    );
                }
                if let Some(lost) = t.lost_at.take() {
                    self.seconds(
                        "redial_downtime_seconds",
                        at.saturating_duration_since(lost),
                    );
                }
                t.connected_at = Some(at);
            }
            EventKind::ConnectFailed { retry_in, .. } => {
                let reason = self.times().failure.take().unwrap_or("other");
                self.count_why("redial_connect_failures_total", reason);
                if retry_in.is_none() {
                    self.count("redial_give_ups_total", 1);
                }
                if let Some(s) = self.times().attempt_started.take() {
                    self.seconds(
                        "redial_connect_duration_seconds",
                        at.saturating_duration_since(s),
                    );
                }
            }
            EventKind::Reset {
                reason,
                uptime,
                unsent_bytes,
            } => {
                self.count_why("redial_connection_losses_total", loss_reason(reason));
                self.count("redial_handed_back_bytes_total", *unsent_bytes as u64);
                self.seconds("redial_connection_lifetime_seconds", *uptime);
                if *uptime < stable_after {
                    self.count("redial_flaps_total", 1);
                }
                let mut t = self.times();
                t.connected_at = None;
                t.lost_at = Some(at);
            }
            EventKind::Closed {
                reason,
                unsent_bytes,
            } => {
                self.count_why("redial_connection_closes_total", close_reason(reason));
                self.count("redial_handed_back_bytes_total", *unsent_bytes as u64);
                if let Some(up) = self.times().connected_at.take() {
                    self.seconds(
                        "redial_connection_lifetime_seconds",
                        at.saturating_duration_since(up),
                    );
                }
                self.queued_now(0);
            }
            EventKind::Recycled { uptime, .. } => {
                self.count("redial_recycles_total", 1);
                self.seconds("redial_connection_lifetime_seconds", *uptime);
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
fn failure_reason(err: &std::io::Error) -> &'static str {
    use std::io::ErrorKind;
    match crate::driver::dial::failed_step(err) {
        Some(Step::Resolve) => "dns",
        Some(Step::Tls) => "tls",
        None => match err.kind() {
            ErrorKind::ConnectionRefused => "refused",
            ErrorKind::TimedOut => "timeout",
            _ => "other",
        },
    }
}

fn loss_reason(r: &ResetReason) -> &'static str {
    match r {
        ResetReason::PeerClosed => "peer_closed",
        ResetReason::PeerReset => "peer_reset",
        ResetReason::TimedOut => "timed_out",
        ResetReason::IdleTimeout => "idle_timeout",
        ResetReason::Io { .. } => "error",
    }
}

fn close_reason(r: &CloseReason) -> &'static str {
    match r {
        CloseReason::Disconnected => "disconnected",
        CloseReason::GraceExpired { .. } => "grace_expired",
        CloseReason::Aborted => "aborted",
        CloseReason::Stopped => "stopped",
        CloseReason::GaveUp { .. } => "gave_up",
        CloseReason::RestartIntensity { .. } => "restart_intensity",
        CloseReason::HandlerPanicked { .. } => "handler_panicked",
        CloseReason::Terminal { .. } => "terminal",
        CloseReason::Shutdown => "shutdown",
    }
}

#[cfg(test)]
mod tests {
    use std::io::{self, ErrorKind};

    use super::*;
    use crate::driver::dial::step_error;

    #[test]
    fn failure_reasons_by_type_not_wording() {
        let kind = |k: ErrorKind| failure_reason(&io::Error::new(k, "whatever the words"));
        assert_eq!(kind(ErrorKind::ConnectionRefused), "refused");
        assert_eq!(kind(ErrorKind::TimedOut), "timeout");
        assert_eq!(kind(ErrorKind::NetworkUnreachable), "other");
        assert_eq!(kind(ErrorKind::ConnectionReset), "other");
        // The words alone no longer decide.
        assert_eq!(
            failure_reason(&io::Error::other(
                "resolve x: Connection refused, TLS timed out"
            )),
            "other"
        );
        let step = |k, s| failure_reason(&step_error(k, s, "m".to_string()));
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
        assert_eq!(failure_reason(&err), "refused", "{err}");
    }
}
