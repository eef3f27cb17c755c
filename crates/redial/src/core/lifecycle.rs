//! The reconnect life cycle as a plain state machine.
//!
//! No sockets, no runtime: every input carries the time it happened
//! (`now`), and the machine answers with its next [`Phase`] and the one
//! deadline it waits for ([`Lifecycle::poll_timeout`]). The connection
//! driver feeds it I/O outcomes; tests feed it a fake clock.
//!
//! Rules it enforces:
//! - a failed attempt is followed by the next delay of the backoff schedule;
//! - a connection made after attempts that found the server down (an
//!   outage ended) starts the schedule over for the next outage, whose
//!   first loss is retried at once (the server restarted; it did not
//!   accept and drop). Attempts the server reached and dropped
//!   ([`Lifecycle::connect_dropped`]) do not count as an outage;
//! - a connection that stayed up for `stable_after` starts the schedule over
//!   and is retried at once when lost;
//! - one lost sooner is retried at once too, unless the connection before it
//!   was also short-lived: then it continues the schedule. A server that
//!   closes one connection is reconnected without delay; one that accepts
//!   and closes every connection gets one immediate retry, then the
//!   schedule;
//! - give-up by attempts, by time budget, and by restart intensity;
//! - [`Lifecycle::close`] is final: no input after it starts an attempt.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::core::backoff::Place;
use crate::options::Options;
use crate::reset::CloseReason;
use crate::State;

/// The farthest a backoff deadline is set: a century is "never" for a
/// connection, and stays far inside what an `Instant` can hold.
const FAR: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `now + delay`, without overflowing for a delay near `Duration::MAX`.
pub(crate) fn deadline(now: Instant, delay: Duration) -> Instant {
    now.checked_add(delay.min(FAR)).unwrap_or(now)
}

/// Where a managed connection is in its life cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Built, not started.
    Idle,
    /// Attempt number `attempt` (1-based within the failure streak) is under way.
    Connecting { attempt: u32 },
    /// Up since `since`.
    Connected { since: Instant },
    /// Waiting until `until` before attempt number `attempt`.
    BackingOff { until: Instant, attempt: u32 },
    /// Ended for good.
    Closed(CloseReason),
}

/// Where the driver is inside a phase, where that changes what the public
/// [`State`] shows: the phase alone says "connected" from the moment the
/// attempt succeeds, the application sees it once `on_connect` ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Within {
    /// Nothing more than the phase says.
    Plain,
    /// Connecting, but waiting while another connection probes the
    /// endpoint: shown as backing off.
    Parked,
    /// Connected and open to senders (`on_connect` ran).
    Open,
    /// Connected, but lost: shown as backing off while `on_reset` decides.
    Lost,
}

/// The life-cycle state machine of one managed connection.
#[derive(Debug)]
pub struct Lifecycle {
    phase: Phase,
    /// See [`Within`]; the public state is [`Lifecycle::state`].
    within: Within,
    /// Where the connection is in the backoff schedule.
    place: Place,
    /// The policy, shared with the other connections made with the same
    /// options rather than copied into each.
    opts: Arc<Options>,
    /// When the current failure streak began (None while connected).
    streak_start: Option<Instant>,
    /// Failed attempts in the current streak.
    failed: u32,
    /// Times of recent resets, only kept when restart intensity is on
    /// (boxed: most connections never use it, and an empty `VecDeque`
    /// still takes 32 bytes in every connection's task).
    #[allow(clippy::box_collection)]
    resets: Option<Box<VecDeque<Instant>>>,
    /// The last connected period ended before `stable_after`.
    short_lived: bool,
    /// An attempt since the last connection found the server down (not
    /// reached and dropped): the next connection ends an outage.
    found_down: bool,
}

impl Lifecycle {
    pub fn new(opts: Arc<Options>, seed: u64) -> Self {
        Lifecycle {
            phase: Phase::Idle,
            within: Within::Plain,
            place: Place::new(&opts.backoff, seed),
            opts,
            streak_start: None,
            failed: 0,
            resets: None,
            short_lived: false,
            found_down: false,
        }
    }

    /// The options the machine follows.
    pub fn options(&self) -> &Arc<Options> {
        &self.opts
    }

    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    /// The level of the schedule the last delay was drawn at (0: the
    /// initial delay), as events report it.
    pub fn level(&self) -> u32 {
        self.place.level().saturating_sub(1)
    }

    /// The jitter of a connected period's `max_lifetime`: a random number
    /// from the connection's seeded generator ([`Options::seed`], or the
    /// manager's seed and the connection's id), 0 without a lifetime, so
    /// the backoff's draws are the same as before for every other
    /// connection.
    pub fn lifetime_draw(&mut self) -> u64 {
        if self.opts.max_lifetime.is_some() {
            self.place.draw()
        } else {
            0
        }
    }

    /// The public state, derived from the phase (and where the driver is
    /// within it) here and nowhere else.
    pub fn state(&self) -> State {
        match (&self.phase, self.within) {
            (Phase::Idle, _) => State::Connecting,
            (Phase::Connecting { .. }, Within::Parked) => State::BackingOff,
            (Phase::Connecting { .. }, _) => State::Connecting,
            (Phase::Connected { .. }, Within::Open) => State::Connected,
            (Phase::Connected { .. }, Within::Lost) => State::BackingOff,
            // Up, but `on_connect` has not run yet.
            (Phase::Connected { .. }, _) => State::Connecting,
            (Phase::BackingOff { .. }, _) => State::BackingOff,
            (Phase::Closed(_), _) => State::Closed,
        }
    }

    /// While connecting: whether the attempt waits for another
    /// connection's probe of the endpoint.
    pub fn parked(&mut self, parked: bool) {
        if let Phase::Connecting { .. } = self.phase {
            self.within = if parked {
                Within::Parked
            } else {
                Within::Plain
            };
        }
    }

    /// While connected: `on_connect` ran, and the connection is open to
    /// senders.
    pub fn opened(&mut self) {
        if let Phase::Connected { .. } = self.phase {
            self.within = Within::Open;
        }
    }

    /// While connected: the connection was lost; [`Lifecycle::reset`]
    /// follows once the application said what comes next.
    pub fn lost(&mut self) {
        if let Phase::Connected { .. } = self.phase {
            self.within = Within::Lost;
        }
    }

    /// The one deadline the driver must wake up for, if any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::BackingOff { until, .. } => Some(until),
            _ => None,
        }
    }

    /// Starts the first attempt.
    pub fn start(&mut self, now: Instant) {
        if self.phase == Phase::Idle {
            self.streak_start = Some(now);
            self.phase = Phase::Connecting { attempt: 1 };
        }
    }

    /// The attempt under way succeeded.
    pub fn connected(&mut self, now: Instant) {
        if let Phase::Connecting { .. } = self.phase {
            self.within = Within::Plain;
            // Reached after attempts that found the server down: an outage
            // ended (the server restarted), so the next outage starts the
            // schedule over, and the next loss is retried at once whatever
            // came before it.
            if std::mem::take(&mut self.found_down) {
                self.place.reset(&self.opts.backoff);
                self.short_lived = false;
            }
            self.failed = 0;
            self.streak_start = None;
            self.phase = Phase::Connected { since: now };
        }
    }

    /// A connection past its `max_lifetime` was replaced at `now`, the new
    /// one made before the old one closed: still connected and open to
    /// senders, up since `now`. Nothing was lost, so the schedule, the
    /// restart intensity and the flapping count are left as they are.
    pub fn recycled(&mut self, now: Instant) {
        if let Phase::Connected { .. } = self.phase {
            self.phase = Phase::Connected { since: now };
        }
    }

    /// The attempt under way failed: the server could not be reached
    /// (refused, timed out, unreachable). Returns the delay before the next
    /// one, or `None` when the give-up policy closed the connection.
    pub fn connect_failed(&mut self, now: Instant) -> Option<Duration> {
        self.attempt_failed(now, true)
    }

    /// The attempt under way failed after reaching the server, which
    /// dropped it (reset during the connect or the handshake): as
    /// [`Lifecycle::connect_failed`], except that it is not an outage, so
    /// the connection made after it does not start the schedule over (a
    /// server that accepts and drops is not retried faster for it).
    pub fn connect_dropped(&mut self, now: Instant) -> Option<Duration> {
        self.attempt_failed(now, false)
    }

    fn attempt_failed(&mut self, now: Instant, down: bool) -> Option<Duration> {
        let Phase::Connecting { attempt } = self.phase else {
            return None;
        };
        self.within = Within::Plain;
        self.found_down |= down;
        self.failed = self.failed.saturating_add(1);
        let start = *self.streak_start.get_or_insert(now);
        let elapsed = now.saturating_duration_since(start);
        if self.opts.max_attempts.is_some_and(|max| self.failed >= max) {
            self.phase = Phase::Closed(CloseReason::GaveUp {
                attempts: self.failed,
                elapsed,
            });
            return None;
        }
        let delay = self.place.next(&self.opts.backoff);
        if let Some(budget) = self.opts.give_up_after {
            if elapsed.saturating_add(delay) > budget {
                self.phase = Phase::Closed(CloseReason::GaveUp {
                    attempts: self.failed,
                    elapsed,
                });
                return None;
            }
        }
        self.phase = Phase::BackingOff {
            until: deadline(now, delay),
            attempt: attempt.saturating_add(1),
        };
        Some(delay)
    }

    /// The live connection was lost. `resume` is false when the application
    /// asked to stop. Returns the delay before the next attempt (zero: at
    /// once), or `None` when the connection closed.
    pub fn reset(&mut self, now: Instant, resume: bool) -> Option<Duration> {
        let Phase::Connected { since } = self.phase else {
            return None;
        };
        self.within = Within::Plain;
        if !resume {
            self.phase = Phase::Closed(CloseReason::Stopped);
            return None;
        }
        if let Some((max, within)) = self.opts.restart_intensity {
            let resets = self.resets.get_or_insert_with(Box::default);
            resets.push_back(now);
            while resets
                .front()
                .is_some_and(|&t| now.saturating_duration_since(t) > within)
            {
                resets.pop_front();
            }
            if resets.len() > max as usize {
                self.phase = Phase::Closed(CloseReason::RestartIntensity {
                    resets: resets.len() as u32,
                    within,
                });
                return None;
            }
        }
        self.streak_start = Some(now);
        self.failed = 0;
        self.found_down = false;
        let stable = now.saturating_duration_since(since) >= self.opts.stable_after;
        let was_short_lived = std::mem::replace(&mut self.short_lived, !stable);
        if stable || !was_short_lived {
            if stable {
                self.place.reset(&self.opts.backoff);
            }
            self.phase = Phase::Connecting { attempt: 1 };
            Some(Duration::ZERO)
        } else {
            let delay = self.place.next(&self.opts.backoff);
            self.phase = Phase::BackingOff {
                until: deadline(now, delay),
                attempt: 1,
            };
            Some(delay)
        }
    }

    /// The application chose the delay of the backoff just begun (after a
    /// failed attempt): it ends `delay` from `now` instead. The delay it
    /// takes, `None` when not backing off (the give-up policy closed it).
    pub fn delay_to(&mut self, now: Instant, delay: Duration) -> Option<Duration> {
        if let Phase::BackingOff { until, .. } = &mut self.phase {
            *until = deadline(now, delay);
            return Some(delay);
        }
        None
    }

    /// The application asked to reconnect now: a backoff in progress ends
    /// and the next attempt starts (its number unchanged). Changes nothing
    /// in any other phase.
    pub fn retry_now(&mut self) {
        if let Phase::BackingOff { attempt, .. } = self.phase {
            self.phase = Phase::Connecting { attempt };
        }
    }

    /// Time passed; starts the next attempt when the backoff deadline is due.
    pub fn timeout(&mut self, now: Instant) {
        if let Phase::BackingOff { until, attempt } = self.phase {
            if now >= until {
                self.phase = Phase::Connecting { attempt };
            }
        }
    }

    /// Ends the connection for good. Final: later inputs change nothing.
    pub fn close(&mut self, reason: CloseReason) {
        if !matches!(self.phase, Phase::Closed(_)) {
            self.phase = Phase::Closed(reason);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::backoff::{Backoff, Jitter};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn opts() -> Options {
        Options::new()
            .backoff(
                Backoff::new(ms(100), 2.0, ms(1000))
                    .unwrap()
                    .with_jitter(Jitter::None),
            )
            .stable_after(ms(5000))
    }

    /// Drives failed attempts that fail at once: returns the delays seen.
    fn fail_n(lc: &mut Lifecycle, now: &mut Instant, n: usize) -> Vec<Duration> {
        fail_n_taking(lc, now, n, Duration::ZERO)
    }

    /// Drives failed attempts that each take `took` to fail (a connect
    /// timeout, say): returns the delays seen.
    fn fail_n_taking(
        lc: &mut Lifecycle,
        now: &mut Instant,
        n: usize,
        took: Duration,
    ) -> Vec<Duration> {
        let mut out = Vec::new();
        for _ in 0..n {
            *now += took;
            match lc.connect_failed(*now) {
                Some(d) => {
                    out.push(d);
                    *now += d;
                    lc.timeout(*now);
                }
                None => break,
            }
        }
        out
    }

    #[test]
    fn failed_attempts_follow_the_schedule_up_to_the_cap() {
        let mut now = Instant::now();
        let mut lc = Lifecycle::new(Arc::new(opts()), 1);
        lc.start(now);
        let d = fail_n(&mut lc, &mut now, 6);
        assert_eq!(d, [ms(100), ms(200), ms(400), ms(800), ms(1000), ms(1000)]);
        assert_eq!(lc.phase(), &Phase::Connecting { attempt: 7 });
        assert_eq!(lc.level(), 5);
    }

    #[test]
    fn delay_to_replaces_only_a_backoff_in_progress() {
        let now = Instant::now();
        let mut lc = Lifecycle::new(Arc::new(opts()), 1);
        lc.start(now);
        assert_eq!(lc.delay_to(now, ms(7)), None, "not backing off");
        assert_eq!(lc.connect_failed(now), Some(ms(100)));
        assert_eq!(lc.delay_to(now, ms(7)), Some(ms(7)));
        assert_eq!(lc.poll_timeout(), Some(now + ms(7)));
        lc.timeout(now + ms(7));
        assert_eq!(lc.phase(), &Phase::Connecting { attempt: 2 });
    }

    #[test]
    fn retry_now_ends_a_backoff_keeping_the_schedule() {
        let mut now = Instant::now();
        let mut lc = Lifecycle::new(Arc::new(opts()), 1);
        lc.start(now);
        lc.retry_now();
        assert_eq!(
            lc.phase(),
            &Phase::Connecting { attempt: 1 },
            "not backing off: untouched"
        );
        assert_eq!(lc.connect_failed(now), Some(ms(100)));
        assert_eq!(lc.connect_failed(now), None, "no failure while backing off");
        lc.retry_now();
        assert_eq!(lc.phase(), &Phase::Connecting { attempt: 2 });
        // The schedule goes on from where it was: the next delay is the second.
        now += ms(1);
        assert_eq!(lc.connect_failed(now), Some(ms(200)));
    }

    #[test]
    fn attempts_reached_and_dropped_are_no_outage() {
        let mut now = Instant::now();
        let mut lc = Lifecycle::new(Arc::new(opts()), 1);
        lc.start(now);
        // A server that accepts and drops, some connects reset on the way:
        // the schedule keeps climbing across the connections it allows.
        lc.connected(now);
        now += ms(1);
        assert_eq!(lc.reset(now, true), Some(Duration::ZERO));
        lc.connected(now);
        now += ms(1);
        assert_eq!(lc.reset(now, true), Some(ms(100)));
        now += ms(100);
        lc.timeout(now);
        assert_eq!(lc.connect_dropped(now), Some(ms(200)));
        now += ms(200);
        lc.timeout(now);
        lc.connected(now);
        now += ms(1);
        assert_eq!(lc.reset(now, true), Some(ms(400)), "went on climbing");
        // A refused attempt is an outage: the connection after it starts over.
        now += ms(400);
        lc.timeout(now);
        assert_eq!(lc.connect_failed(now), Some(ms(800)));
        now += ms(800);
        lc.timeout(now);
        lc.connected(now);
        now += ms(1);
        assert_eq!(lc.reset(now, true), Some(Duration::ZERO));
    }

    #[test]
    fn a_connection_made_after_an_outage_starts_the_schedule_over() {
        let mut now = Instant::now();
        let mut lc = Lifecycle::new(Arc::new(opts()), 1);
        lc.start(now);
        // A long outage climbs the schedule...
        fail_n_taking(&mut lc, &mut now, 5, ms(5000));
        assert_eq!(lc.level(), 4);
        now += ms(1000);
        lc.timeout(now);
        lc.connected(now);
        // ...and the connection made after it is lost 1 s later, retried
        // at once onto the dying server, lost again: the schedule starts
        // from its first delay, not where the outage left it.
        now += ms(1000);
        assert_eq!(lc.reset(now, true), Some(Duration::ZERO));
        lc.connected(now);
        now += ms(1);
        assert_eq!(lc.reset(now, true), Some(ms(100)));
        assert_eq!(lc.level(), 0);
        now += ms(100);
        lc.timeout(now);
        // The same after a short-lived connection before the outage: a
        // connection made after failed attempts is retried at once when
        // lost, not put on the schedule as a second short-lived one.
        fail_n(&mut lc, &mut now, 3);
        lc.connected(now);
        now += ms(1000);
        assert_eq!(lc.reset(now, true), Some(Duration::ZERO));
        lc.connected(now);
        now += ms(1);
        assert_eq!(lc.reset(now, true), Some(ms(100)));
        assert_eq!(lc.level(), 0);
    }

    #[test]
    fn backing_off_waits_for_its_deadline() {
        let now = Instant::now();
        let mut lc = Lifecycle::new(Arc::new(opts()), 1);
        lc.start(now);
        lc.connect_failed(now);
        assert_eq!(lc.poll_timeout(), Some(now + ms(100)));
        lc.timeout(now + ms(99));
        assert!(matches!(lc.phase(), Phase::BackingOff { .. }));
        lc.timeout(now + ms(100));
        assert_eq!(lc.phase(), &Phase::Connecting { attempt: 2 });
    }

    #[test]
    fn stable_connection_is_retried_at_once_and_schedule_restarts() {
        let mut now = Instant::now();
        let mut lc = Lifecycle::new(Arc::new(opts()), 1);
        lc.start(now);
        fail_n(&mut lc, &mut now, 3);
        lc.connected(now);
        now += ms(5000);
        assert_eq!(lc.reset(now, true), Some(Duration::ZERO));
        assert_eq!(lc.phase(), &Phase::Connecting { attempt: 1 });
        assert_eq!(fail_n(&mut lc, &mut now, 1), [ms(100)]);
    }

    #[test]
    fn flapping_connection_gets_one_immediate_retry_then_the_schedule() {
        let mut now = Instant::now();
        let mut lc = Lifecycle::new(Arc::new(opts()), 1);
        lc.start(now);
        let mut delays = Vec::new();
        for _ in 0..6 {
            lc.connected(now);
            now += ms(10);
            let d = lc.reset(now, true).unwrap();
            delays.push(d);
            now += d;
            lc.timeout(now);
        }
        assert_eq!(
            delays,
            [ms(0), ms(100), ms(200), ms(400), ms(800), ms(1000)]
        );
    }

    #[test]
    fn a_short_loss_after_a_stable_one_is_retried_at_once() {
        let mut now = Instant::now();
        let mut lc = Lifecycle::new(Arc::new(opts()), 1);
        lc.start(now);
        lc.connected(now);
        now += ms(10);
        assert_eq!(lc.reset(now, true), Some(Duration::ZERO), "first loss");
        lc.connected(now);
        now += ms(10);
        assert_eq!(lc.reset(now, true), Some(ms(100)), "second short loss");
        now += ms(100);
        lc.timeout(now);
        lc.connected(now);
        now += ms(5000);
        assert_eq!(lc.reset(now, true), Some(Duration::ZERO), "stable");
        lc.connected(now);
        now += ms(10);
        assert_eq!(
            lc.reset(now, true),
            Some(Duration::ZERO),
            "short after stable"
        );
    }

    #[test]
    fn gives_up_after_max_attempts() {
        let mut now = Instant::now();
        let mut lc = Lifecycle::new(Arc::new(opts().max_attempts(3)), 1);
        lc.start(now);
        assert_eq!(fail_n(&mut lc, &mut now, 10).len(), 2);
        assert!(matches!(
            lc.phase(),
            Phase::Closed(CloseReason::GaveUp { attempts: 3, .. })
        ));
    }

    #[test]
    fn gives_up_when_the_time_budget_is_spent() {
        let mut now = Instant::now();
        let mut lc = Lifecycle::new(Arc::new(opts().give_up_after(ms(1000))), 1);
        lc.start(now);
        // 100 + 200 + 400 = 700 elapsed; the next delay (800) would pass 1000.
        assert_eq!(fail_n(&mut lc, &mut now, 10), [ms(100), ms(200), ms(400)]);
        assert!(matches!(
            lc.phase(),
            Phase::Closed(CloseReason::GaveUp { attempts: 4, .. })
        ));
    }

    #[test]
    fn restart_intensity_trips_on_the_resets_beyond_the_limit() {
        let mut now = Instant::now();
        let mut lc = Lifecycle::new(
            Arc::new(opts().restart_intensity(2, ms(10_000)).stable_after(ms(1))),
            1,
        );
        lc.start(now);
        for _ in 0..2 {
            lc.connected(now);
            now += ms(5);
            assert_eq!(lc.reset(now, true), Some(Duration::ZERO));
        }
        lc.connected(now);
        assert_eq!(lc.reset(now + ms(5), true), None);
        assert!(matches!(
            lc.phase(),
            Phase::Closed(CloseReason::RestartIntensity { resets: 3, .. })
        ));
    }

    #[test]
    fn stop_from_on_reset_closes() {
        let now = Instant::now();
        let mut lc = Lifecycle::new(Arc::new(opts()), 1);
        lc.start(now);
        lc.connected(now);
        assert_eq!(lc.reset(now, false), None);
        assert_eq!(lc.phase(), &Phase::Closed(CloseReason::Stopped));
    }

    #[test]
    fn a_recycled_connection_stays_connected_up_since_the_replacement() {
        let mut lc = Lifecycle::new(Arc::new(opts()), 1);
        let t0 = Instant::now();
        lc.start(t0);
        lc.connected(t0);
        lc.opened();
        assert_eq!(lc.state(), State::Connected);
        let later = t0 + ms(60_000);
        lc.recycled(later);
        assert_eq!(lc.phase(), &Phase::Connected { since: later });
        assert_eq!(lc.state(), State::Connected);
        assert_eq!(lc.poll_timeout(), None);
        // Lost soon after: retried at once, the period before it was long.
        assert_eq!(lc.reset(later + ms(1), true), Some(Duration::ZERO));
        // Only a connected one is recycled.
        lc.recycled(later + ms(2));
        assert!(matches!(lc.phase(), Phase::Connecting { .. }));
    }

    #[test]
    fn the_lifetime_jitter_is_drawn_from_the_connections_seed() {
        let with = Arc::new(opts().max_lifetime(ms(1000)));
        let draws = |seed| {
            let mut lc = Lifecycle::new(with.clone(), seed);
            [lc.lifetime_draw(), lc.lifetime_draw()]
        };
        // Repeatable for a seed, different between seeds and between
        // connected periods.
        assert_eq!(draws(7), draws(7));
        assert_ne!(draws(7), draws(8));
        assert_ne!(draws(7)[0], draws(7)[1]);
        // Without a lifetime nothing is drawn: the backoff's jitter is
        // what it was.
        let mut lc = Lifecycle::new(Arc::new(opts()), 7);
        assert_eq!(lc.lifetime_draw(), 0);
    }

    #[test]
    fn close_is_final_in_every_phase() {
        let now = Instant::now();
        for setup in 0..4 {
            let mut lc = Lifecycle::new(Arc::new(opts()), 1);
            match setup {
                0 => {}
                1 => lc.start(now),
                2 => {
                    lc.start(now);
                    lc.connected(now);
                }
                _ => {
                    lc.start(now);
                    lc.connect_failed(now);
                }
            }
            lc.close(CloseReason::Disconnected);
            lc.start(now);
            lc.connected(now);
            lc.timeout(now + ms(100_000));
            assert_eq!(lc.reset(now, true), None);
            assert_eq!(lc.connect_failed(now), None);
            assert_eq!(
                lc.phase(),
                &Phase::Closed(CloseReason::Disconnected),
                "setup {setup}"
            );
            assert_eq!(lc.poll_timeout(), None);
        }
    }

    #[test]
    fn the_public_state_follows_the_phase_and_the_step_within_it() {
        let now = Instant::now();
        let mut lc = Lifecycle::new(Arc::new(opts()), 1);
        assert_eq!(lc.state(), State::Connecting);
        lc.start(now);
        assert_eq!(lc.state(), State::Connecting);
        lc.parked(true);
        assert_eq!(lc.state(), State::BackingOff, "waiting for the probe");
        lc.parked(false);
        assert_eq!(lc.state(), State::Connecting);
        lc.parked(true);
        lc.connected(now);
        assert_eq!(lc.state(), State::Connecting, "up, on_connect not run");
        lc.opened();
        assert_eq!(lc.state(), State::Connected);
        lc.lost();
        assert_eq!(lc.state(), State::BackingOff, "lost, on_reset deciding");
        lc.reset(now, true);
        assert_eq!(lc.state(), State::Connecting, "retried at once");
        // Inputs that do not apply to the phase change nothing.
        lc.opened();
        lc.lost();
        assert_eq!(lc.state(), State::Connecting);
        lc.connect_failed(now);
        assert_eq!(lc.state(), State::BackingOff);
        lc.parked(true);
        lc.timeout(now + ms(100_000));
        assert_eq!(lc.state(), State::Connecting);
        lc.close(CloseReason::Disconnected);
        assert_eq!(lc.state(), State::Closed);
    }

    #[test]
    fn a_parked_attempt_that_fails_is_not_shown_parked_on_the_next() {
        let now = Instant::now();
        let mut lc = Lifecycle::new(Arc::new(opts()), 1);
        lc.start(now);
        lc.parked(true);
        lc.connect_failed(now);
        lc.timeout(now + ms(100_000));
        assert_eq!(lc.phase(), &Phase::Connecting { attempt: 2 });
        assert_eq!(lc.state(), State::Connecting);
    }
}
