//! The deadlines of a live connection — idle timeout, heartbeat, release of
//! a burst's buffers, close grace, the replacement of a connection past its
//! [`max_lifetime`](crate::Options::max_lifetime) — kept as plain data
//! with time passed in.
//!
//! The driver tells [`Timers`] what happened (`read`, a drain that armed a
//! [`Trim`]) and when, sleeps until [`Timers::poll_timeout`], and on waking
//! asks [`Timers::fire`] what is due. Nothing here sleeps, so every
//! deadline is tested below with a fake clock.
//!
//! The release of a burst's buffers is a separate [`Trim`] value: it is
//! kept with the buffers it releases (on the heap), so that the task of
//! every idle connection, which carries [`Timers`], stays small.

use std::time::{Duration, Instant};

use crate::core::lifecycle::deadline;
use crate::options::Options;

/// How long the send queue must stay empty before a burst's buffers are
/// released: long enough that a steady stream of sends keeps them.
pub(crate) const TRIM_AFTER: Duration = Duration::from_millis(250);

/// After its FIN, a disconnecting connection waits at most this long for
/// the peer's FIN (reading what still arrives), so closing does not turn
/// into an RST that could destroy the peer's unread data.
pub(crate) const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// The least wait before a replacement that could not be made is tried
/// again (otherwise a tenth of the lifetime): a server that refuses new
/// connections is not asked again at once while the old one still works.
pub(crate) const RECYCLE_RETRY_MIN: Duration = Duration::from_secs(1);

/// How long a connection made at `now` lives under `max`: `max` ×
/// (1 ± [`Options::MAX_LIFETIME_JITTER`]), the factor drawn uniformly from `draw`
/// (any random `u64`). Saturates far in the future for a huge `max`.
pub(crate) fn lifetime_deadline(now: Instant, max: Duration, draw: u64) -> Instant {
    // The top 53 bits as a uniform fraction in [0, 1).
    let unit = (draw >> 11) as f64 / (1u64 << 53) as f64;
    let jitter = Options::MAX_LIFETIME_JITTER;
    let factor = 1.0 - jitter + 2.0 * jitter * unit;
    let life = Duration::try_from_secs_f64(max.as_secs_f64() * factor).unwrap_or(Duration::MAX);
    deadline(now, life)
}

/// The deadlines of one connected period.
#[derive(Debug, Clone)]
pub(crate) struct Timers {
    /// When the peer last sent something (or reading was paused by the
    /// application, which is no silence of the peer's).
    last_read: Instant,
    /// When `on_idle` last ran.
    last_beat: Instant,
    /// Where the replacement after `max_lifetime` stands.
    recycle: Recycle,
}

/// The replacement of a connection past its `max_lifetime`: one value the
/// size of an `Instant`, as every connection's task carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recycle {
    /// No lifetime set.
    Never,
    /// Due then.
    At(Instant),
    /// Being made: not due again until it failed.
    Underway,
}

/// When to release a burst's buffers, and the batch count then: a batch
/// taken since means the connection was not idle after all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Trim {
    at: Instant,
    taken: u64,
}

impl Trim {
    /// The send queue drained at `now` with buffers larger than an idle
    /// connection should keep, after `taken` batches: release them
    /// [`TRIM_AFTER`] from now.
    pub(crate) fn drained(now: Instant, taken: u64) -> Self {
        Trim {
            at: deadline(now, TRIM_AFTER),
            taken,
        }
    }

    /// Takes the release out of `slot` if it is due at `now`: the batch
    /// count it was armed at, for the driver to compare with its own.
    pub(crate) fn fire(slot: &mut Option<Trim>, now: Instant) -> Option<u64> {
        let t = slot.take_if(|t| now >= t.at)?;
        Some(t.taken)
    }
}

/// What [`Timers::fire`] found due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Due {
    /// Nothing was read for `idle_timeout`: the connection counts as lost.
    pub idle: bool,
    /// Nothing was read or sent by `on_idle` for `heartbeat`: call it.
    pub heartbeat: bool,
    /// The connection outlived its `max_lifetime`: make its replacement.
    /// Counted as started: not due again until
    /// [`Timers::recycle_failed`] says when to try again.
    pub recycle: bool,
}

impl Timers {
    /// A connected period that began at `now`.
    pub(crate) fn new(now: Instant) -> Self {
        Timers {
            last_read: now,
            last_beat: now,
            recycle: Recycle::Never,
        }
    }

    /// A connected period that began at `now`, replaced once it outlives
    /// `opts.max_lifetime` (jittered with `draw`, any random number).
    pub(crate) fn with_lifetime(now: Instant, opts: &Options, draw: u64) -> Self {
        let mut t = Timers::new(now);
        if let Some(d) = opts.max_lifetime {
            t.recycle = Recycle::At(lifetime_deadline(now, d, draw));
        }
        t
    }

    /// A replacement is being made (found due, not yet failed): the
    /// driver looks for its result.
    pub(crate) fn replacing(&self) -> bool {
        self.recycle == Recycle::Underway
    }

    /// The replacement started at `now` could not be made: the next try
    /// is a tenth of the lifetime later, at least [`RECYCLE_RETRY_MIN`].
    pub(crate) fn recycle_failed(&mut self, now: Instant, opts: &Options) {
        if let Some(d) = opts.max_lifetime {
            self.recycle = Recycle::At(deadline(now, (d / 10).max(RECYCLE_RETRY_MIN)));
        }
    }

    /// The peer sent something at `now` (or reading was paused then).
    pub(crate) fn read(&mut self, now: Instant) {
        self.last_read = now;
    }

    /// The earliest deadline under `opts` and of the armed `trim`, if
    /// any: the driver sleeps until then.
    pub(crate) fn poll_timeout(&self, opts: &Options, trim: Option<&Trim>) -> Option<Instant> {
        let idle = opts.idle_timeout.map(|d| deadline(self.last_read, d));
        let beat = opts
            .heartbeat
            .map(|d| deadline(self.last_read.max(self.last_beat), d));
        let recycle = match self.recycle {
            Recycle::At(at) => Some(at),
            Recycle::Never | Recycle::Underway => None,
        };
        [idle, beat, trim.map(|t| t.at), recycle]
            .into_iter()
            .flatten()
            .min()
    }

    /// What is due at `now`. A heartbeat found due is counted as done (the
    /// driver calls `on_idle`); an idle timeout ends the connection, so it
    /// is left as it is.
    pub(crate) fn fire(&mut self, now: Instant, opts: &Options) -> Due {
        let mut due = Due::default();
        if opts
            .idle_timeout
            .is_some_and(|d| now >= deadline(self.last_read, d))
        {
            due.idle = true;
            return due;
        }
        if let Some(d) = opts.heartbeat {
            if now >= deadline(self.last_read.max(self.last_beat), d) {
                self.last_beat = now;
                due.heartbeat = true;
            }
        }
        if matches!(self.recycle, Recycle::At(at) if now >= at) {
            self.recycle = Recycle::Underway;
            due.recycle = true;
        }
        due
    }

    /// When a disconnect that begins at `now` must have flushed what is
    /// queued: after that the connection is reset.
    pub(crate) fn grace_deadline(now: Instant, opts: &Options) -> Instant {
        deadline(now, opts.close_grace)
    }

    /// How long, after our FIN at `now`, to wait for the peer's: at most
    /// [`CLOSE_LINGER`], and never past the grace deadline (nor before
    /// `now`).
    pub(crate) fn linger_until(now: Instant, grace: Instant) -> Instant {
        deadline(now, CLOSE_LINGER).min(grace.max(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(idle: Option<u64>, beat: Option<u64>) -> Options {
        let mut o = Options::new();
        o.idle_timeout = idle.map(Duration::from_secs);
        o.heartbeat = beat.map(Duration::from_secs);
        o
    }

    #[test]
    fn no_deadline_without_timers_or_a_burst() {
        let t0 = Instant::now();
        let t = Timers::new(t0);
        assert_eq!(t.poll_timeout(&opts(None, None), None), None);
    }

    #[test]
    fn idle_timeout_counts_from_the_last_read() {
        let t0 = Instant::now();
        let o = opts(Some(10), None);
        let mut t = Timers::new(t0);
        assert_eq!(t.poll_timeout(&o, None), Some(t0 + Duration::from_secs(10)));
        t.read(t0 + Duration::from_secs(4));
        assert_eq!(t.poll_timeout(&o, None), Some(t0 + Duration::from_secs(14)));
        assert!(!t.fire(t0 + Duration::from_secs(13), &o).idle);
        let due = t.fire(t0 + Duration::from_secs(14), &o);
        assert!(due.idle);
    }

    #[test]
    fn heartbeat_repeats_after_each_beat_and_waits_for_reads() {
        let t0 = Instant::now();
        let o = opts(None, Some(3));
        let mut t = Timers::new(t0);
        assert_eq!(t.poll_timeout(&o, None), Some(t0 + Duration::from_secs(3)));
        assert!(!t.fire(t0 + Duration::from_secs(2), &o).heartbeat);
        assert!(t.fire(t0 + Duration::from_secs(3), &o).heartbeat);
        // Counted as done: the next one is a period later.
        assert_eq!(t.poll_timeout(&o, None), Some(t0 + Duration::from_secs(6)));
        assert!(!t.fire(t0 + Duration::from_secs(3), &o).heartbeat);
        // A read pushes it out.
        t.read(t0 + Duration::from_secs(5));
        assert_eq!(t.poll_timeout(&o, None), Some(t0 + Duration::from_secs(8)));
    }

    #[test]
    fn idle_timeout_wins_over_a_heartbeat_due_at_the_same_time() {
        let t0 = Instant::now();
        let o = opts(Some(5), Some(5));
        let mut t = Timers::new(t0);
        let due = t.fire(t0 + Duration::from_secs(5), &o);
        assert_eq!(
            due,
            Due {
                idle: true,
                ..Due::default()
            }
        );
    }

    #[test]
    fn a_burst_is_released_after_the_queue_stayed_empty() {
        let t0 = Instant::now();
        let o = opts(None, None);
        let t = Timers::new(t0);
        let mut trim = Some(Trim::drained(t0, 7));
        assert_eq!(t.poll_timeout(&o, trim.as_ref()), Some(t0 + TRIM_AFTER));
        assert_eq!(Trim::fire(&mut trim, t0 + TRIM_AFTER / 2), None);
        assert!(trim.is_some(), "not due yet: still armed");
        assert_eq!(Trim::fire(&mut trim, t0 + TRIM_AFTER), Some(7));
        assert_eq!(trim, None);
        assert_eq!(t.poll_timeout(&o, trim.as_ref()), None);
    }

    #[test]
    fn the_earliest_deadline_is_the_one_slept_on() {
        let t0 = Instant::now();
        let o = opts(Some(60), Some(30));
        let mut t = Timers::new(t0);
        let mut trim = Some(Trim::drained(t0, 1));
        assert_eq!(t.poll_timeout(&o, trim.as_ref()), Some(t0 + TRIM_AFTER));
        assert_eq!(t.fire(t0 + TRIM_AFTER, &o), Due::default());
        assert_eq!(Trim::fire(&mut trim, t0 + TRIM_AFTER), Some(1));
        assert_eq!(
            t.poll_timeout(&o, trim.as_ref()),
            Some(t0 + Duration::from_secs(30))
        );
        assert!(t.fire(t0 + Duration::from_secs(30), &o).heartbeat);
        assert_eq!(t.poll_timeout(&o, None), Some(t0 + Duration::from_secs(60)));
    }

    #[test]
    fn huge_durations_mean_never_and_do_not_overflow() {
        let t0 = Instant::now();
        let mut o = opts(None, None);
        o.idle_timeout = Some(Duration::MAX);
        o.heartbeat = Some(Duration::MAX);
        o.close_grace = Duration::MAX;
        let mut t = Timers::new(t0);
        let at = t.poll_timeout(&o, None).expect("a deadline far away");
        assert!(at > t0 + Duration::from_secs(365 * 24 * 3600));
        assert_eq!(t.fire(t0 + Duration::from_secs(3600), &o), Due::default());
        assert!(Timers::grace_deadline(t0, &o) > t0);
    }

    fn with_lifetime(secs: u64) -> Options {
        let mut o = opts(None, None);
        o.max_lifetime = Some(Duration::from_secs(secs));
        o
    }

    #[test]
    fn lifetime_is_jittered_within_a_tenth_either_way() {
        let t0 = Instant::now();
        let max = Duration::from_secs(100);
        assert_eq!(lifetime_deadline(t0, max, 0), t0 + Duration::from_secs(90));
        assert_eq!(lifetime_deadline(t0, max, 1 << 63), t0 + max);
        let top = lifetime_deadline(t0, max, u64::MAX) - t0;
        assert!(top <= Duration::from_secs(110) && top > Duration::from_millis(109_999));
        // Spread over the range: of 1,000 draws, each tenth of the range
        // gets some (a fleet does not recycle in step).
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut buckets = [0u32; 10];
        for _ in 0..1000 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let d = lifetime_deadline(t0, max, x) - t0;
            assert!(d >= Duration::from_secs(90) && d <= Duration::from_secs(110));
            buckets[(((d.as_secs_f64() - 90.0) / 2.0) as usize).min(9)] += 1;
        }
        assert!(buckets.iter().all(|&n| n > 50), "{buckets:?}");
        // Huge lifetimes mean never, without overflow.
        assert!(lifetime_deadline(t0, Duration::MAX, u64::MAX) > t0 + max);
    }

    #[test]
    fn recycle_is_due_once_then_again_after_a_failed_replacement() {
        let t0 = Instant::now();
        let o = with_lifetime(100);
        let mut t = Timers::with_lifetime(t0, &o, 1 << 63);
        assert_eq!(
            t.poll_timeout(&o, None),
            Some(t0 + Duration::from_secs(100))
        );
        assert!(!t.fire(t0 + Duration::from_secs(99), &o).recycle);
        assert!(!t.replacing());
        assert!(t.fire(t0 + Duration::from_secs(100), &o).recycle);
        assert!(t.replacing());
        // Under way: not due again, no deadline of its own.
        assert!(!t.fire(t0 + Duration::from_secs(200), &o).recycle);
        assert_eq!(t.poll_timeout(&o, None), None);
        // It failed at 101 s: again a tenth of the lifetime later.
        t.recycle_failed(t0 + Duration::from_secs(101), &o);
        assert!(!t.replacing());
        assert_eq!(
            t.poll_timeout(&o, None),
            Some(t0 + Duration::from_secs(111))
        );
        assert!(t.fire(t0 + Duration::from_secs(111), &o).recycle);
        // A short lifetime waits at least RECYCLE_RETRY_MIN.
        let short = with_lifetime(2);
        let mut t = Timers::with_lifetime(t0, &short, 0);
        assert!(t.fire(t0 + Duration::from_millis(1800), &short).recycle);
        t.recycle_failed(t0 + Duration::from_secs(2), &short);
        assert_eq!(
            t.poll_timeout(&short, None),
            Some(t0 + Duration::from_secs(3))
        );
        // Without a lifetime: never.
        let none = opts(None, None);
        let mut t = Timers::with_lifetime(t0, &none, 0);
        assert_eq!(t.poll_timeout(&none, None), None);
        assert!(!t.fire(t0 + Duration::from_secs(1 << 30), &none).recycle);
    }

    #[test]
    fn linger_stops_at_the_grace_deadline() {
        let t0 = Instant::now();
        let mut o = opts(None, None);
        o.close_grace = Duration::from_millis(300);
        let grace = Timers::grace_deadline(t0, &o);
        assert_eq!(grace, t0 + Duration::from_millis(300));
        // FIN sent at once: the linger is cut to what is left of the grace.
        assert_eq!(Timers::linger_until(t0, grace), grace);
        // A long grace: the linger is the usual second.
        o.close_grace = Duration::from_secs(30);
        let grace = Timers::grace_deadline(t0, &o);
        assert_eq!(Timers::linger_until(t0, grace), t0 + CLOSE_LINGER);
        // Past the grace already: no wait at all.
        let late = grace + Duration::from_secs(1);
        assert_eq!(Timers::linger_until(late, grace), late);
    }
}
