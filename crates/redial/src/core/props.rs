//! Property tests of the life-cycle state machine (random event sequences
//! and times).
//!
//! Each case draws random options (backoff, jitter, stable time, give-up
//! policies, seed) and a random sequence of up to 150 events (start,
//! connected, connect failed, reset with resume or stop, timeout, close)
//! separated by random pauses (none, a few ms, up to 20 s, or exactly up to
//! the backoff deadline), then checks the rules after every step:
//!
//! - Closed is absorbing and reached at most once (`on_close` exactly once
//!   and last); nothing after a local disconnect starts an attempt;
//! - an input that does not apply to the phase (a reset when not
//!   connected, a failure when not connecting, ...) changes nothing, not
//!   even hidden state (`on_reset` only after a connected state);
//! - every delay is within the backoff bounds of its jitter kind;
//! - the only deadline is the backoff deadline, and it is kept;
//! - the give-up policies trip exactly when configured: an independent
//!   model written from the rules predicts every phase and delay.
//!
//! Cases per property: [`CASES`].

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use crate::core::backoff::{Backoff, Delays, Jitter};
use crate::core::lifecycle::{Lifecycle, Phase};
use crate::options::Options;
use crate::reset::CloseReason;

/// Cases per property: each case is up to 150 events, so one property
/// checks a few hundred thousand transitions in well under a second.
const CASES: u32 = 2000;

/// Slack for comparing delays computed through `f64` seconds.
const EPS: Duration = Duration::from_micros(1);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The options of one case, kept as plain numbers so a failure prints them.
#[derive(Debug, Clone)]
struct Cfg {
    initial_ms: u64,
    multiplier: f64,
    /// The cap as a multiple of the initial delay.
    cap_factor: u32,
    jitter: Jitter,
    stable_after_ms: u64,
    max_attempts: Option<u32>,
    give_up_after_ms: Option<u64>,
    intensity: Option<(u32, u64)>,
    seed: u64,
    /// Every pause is a multiple of this: 1 ms, or 100 ms for the coarse
    /// cases, where every duration is on the same grid so that boundaries
    /// (exactly `stable_after`, exactly the budget, exactly the intensity
    /// period) are hit often instead of almost never.
    tick_ms: u64,
    /// Short pauses are below this many ticks.
    short_ticks: u64,
}

impl Cfg {
    fn initial(&self) -> Duration {
        ms(self.initial_ms)
    }

    fn max(&self) -> Duration {
        self.initial() * self.cap_factor
    }

    fn backoff(&self) -> Backoff {
        Backoff::new(self.initial(), self.multiplier, self.max())
            .unwrap()
            .with_jitter(self.jitter)
    }

    fn options(&self) -> Options {
        let mut o = Options::new()
            .backoff(self.backoff())
            .stable_after(ms(self.stable_after_ms));
        if let Some(n) = self.max_attempts {
            o = o.max_attempts(n);
        }
        if let Some(b) = self.give_up_after_ms {
            o = o.give_up_after(ms(b));
        }
        if let Some((n, within)) = self.intensity {
            o = o.restart_intensity(n, ms(within));
        }
        o.validate().unwrap();
        o
    }

    fn machine(&self) -> Lifecycle {
        Lifecycle::new(std::sync::Arc::new(self.options()), self.seed)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Ev {
    Start,
    Connected,
    ConnectFailed,
    Reset { resume: bool },
    Timeout,
    Close(CloseReason),
}

/// How much time passes before an event.
#[derive(Debug, Clone, Copy)]
enum Pause {
    /// A few ticks (the number modulo `short_ticks`).
    Ticks(u64),
    /// Up to 20 s, rounded down to the tick.
    Ms(u64),
    /// Up to the backoff deadline, if there is one (and not back in time).
    ToDeadline,
}

fn jitter() -> impl Strategy<Value = Jitter> {
    prop_oneof![
        Just(Jitter::None),
        (0.0..=1.0f64).prop_map(Jitter::Proportional),
        Just(Jitter::Full),
        Just(Jitter::Decorrelated),
    ]
}

/// Options of either kind, fine or coarse; `policies` says which give-up
/// policies may be drawn (max attempts, budget, intensity).
fn cfg(policies: [bool; 3]) -> impl Strategy<Value = Cfg> {
    prop_oneof![fine_cfg(policies), coarse_cfg(policies)]
}

/// Options with delays of a millisecond to minutes, any jitter.
fn fine_cfg(policies: [bool; 3]) -> impl Strategy<Value = Cfg> {
    let [attempts, budget, intensity] = policies;
    (
        (1..=2000u64, 1.0..=4.0f64, 1..=64u32, jitter()),
        0..=10_000u64,
        maybe(attempts, 1..=12u32),
        maybe(budget, 0..=60_000u64),
        maybe(intensity, (1..=6u32, 1..=30_000u64)),
        any::<u64>(),
    )
        .prop_map(
            |((initial_ms, multiplier, cap_factor, jitter), stable, att, bud, int, seed)| Cfg {
                initial_ms,
                multiplier,
                cap_factor,
                jitter,
                stable_after_ms: stable,
                max_attempts: att,
                give_up_after_ms: bud,
                intensity: int,
                seed,
                tick_ms: 1,
                short_ticks: 50,
            },
        )
}

/// Options on a 100 ms grid: no jitter, whole multipliers, so every delay,
/// deadline, budget and period is a multiple of the tick of the pauses.
fn coarse_cfg(policies: [bool; 3]) -> impl Strategy<Value = Cfg> {
    let [attempts, budget, intensity] = policies;
    (
        (1..=5u64, 1..=3u32, 1..=16u32),
        0..=20u64,
        maybe(attempts, 1..=6u32),
        maybe(budget, 0..=60u64),
        maybe(intensity, (1..=3u32, 1..=5u64)),
        any::<u64>(),
    )
        .prop_map(
            |((initial, multiplier, cap_factor), stable, att, bud, int, seed)| Cfg {
                initial_ms: initial * 100,
                multiplier: f64::from(multiplier),
                cap_factor,
                jitter: Jitter::None,
                stable_after_ms: stable * 100,
                max_attempts: att,
                give_up_after_ms: bud.map(|b| b * 100),
                intensity: int.map(|(n, within)| (n, within * 100)),
                seed,
                tick_ms: 100,
                short_ticks: 4,
            },
        )
}

/// A policy value more often set than not when `allowed`, never otherwise.
fn maybe<S>(allowed: bool, s: S) -> BoxedStrategy<Option<S::Value>>
where
    S: Strategy + 'static,
    S::Value: Clone,
{
    if allowed {
        prop::option::weighted(0.6, s).boxed()
    } else {
        Just(None).boxed()
    }
}

/// One event from a number: weighted so that sequences spend their length
/// in interesting phases (mostly attempts, successes, losses and
/// deadlines; starts and closes are rare, since one close ends the
/// interesting part of a sequence). Plain numbers instead of a union of
/// strategies keep generation and shrinking cheap in debug builds.
fn ev(k: u8, x: u32) -> Ev {
    match k % 30 {
        0 => Ev::Start,
        1..=6 => Ev::Connected,
        7..=14 => Ev::ConnectFailed,
        15..=19 => Ev::Reset { resume: true },
        20 => Ev::Reset { resume: false },
        21..=28 => Ev::Timeout,
        _ => Ev::Close(match x % 3 {
            0 => CloseReason::Disconnected,
            1 => CloseReason::Aborted,
            _ => CloseReason::Shutdown,
        }),
    }
}

/// A pause from a number: none to a few ms, up to the deadline, or up to
/// 20 s (past `stable_after`, budgets and intensity periods).
fn pause(x: u32) -> Pause {
    let n = u64::from(x / 7);
    match x % 7 {
        0..=2 => Pause::Ticks(n),
        3..=5 => Pause::ToDeadline,
        _ => Pause::Ms(n % 20_000),
    }
}

/// A sequence of events with pauses, with a `Start` put at a random early
/// position (so inputs before the start are exercised too).
fn events() -> impl Strategy<Value = Vec<(Ev, Pause)>> {
    (
        prop::collection::vec((any::<u8>(), any::<u32>()), 0..150),
        0..3usize,
    )
        .prop_map(|(raw, at)| {
            let mut v: Vec<(Ev, Pause)> = raw.iter().map(|&(k, x)| (ev(k, x), pause(x))).collect();
            v.insert(at.min(v.len()), (Ev::Start, Pause::Ticks(0)));
            v
        })
}

/// One step of a run: the input, and the machine before and after it.
#[derive(Debug, Clone)]
struct Step {
    at: Instant,
    ev: Ev,
    before: Phase,
    after: Phase,
    /// What `connect_failed` or `reset` returned; `None` for other inputs.
    out: Option<Duration>,
    poll: Option<Instant>,
}

fn advance(cfg: &Cfg, now: Instant, pause: Pause, lc: &Lifecycle) -> Instant {
    match pause {
        Pause::Ticks(n) => now + ms(n % cfg.short_ticks * cfg.tick_ms),
        Pause::Ms(n) => now + ms(n / cfg.tick_ms * cfg.tick_ms),
        Pause::ToDeadline => lc.poll_timeout().map_or(now, |t| now.max(t)),
    }
}

fn apply(lc: &mut Lifecycle, ev: &Ev, now: Instant) -> Option<Duration> {
    match ev {
        Ev::Start => lc.start(now),
        Ev::Connected => lc.connected(now),
        Ev::ConnectFailed => return lc.connect_failed(now),
        Ev::Reset { resume } => return lc.reset(now, *resume),
        Ev::Timeout => lc.timeout(now),
        Ev::Close(reason) => lc.close(reason.clone()),
    }
    None
}

fn run(cfg: &Cfg, evs: &[(Ev, Pause)]) -> Vec<Step> {
    let mut lc = cfg.machine();
    let mut now = Instant::now();
    let mut steps = Vec::with_capacity(evs.len());
    for (ev, pause) in evs {
        now = advance(cfg, now, *pause, &lc);
        let before = lc.phase().clone();
        let out = apply(&mut lc, ev, now);
        steps.push(Step {
            at: now,
            ev: ev.clone(),
            before,
            after: lc.phase().clone(),
            out,
            poll: lc.poll_timeout(),
        });
    }
    steps
}

fn is_closed(p: &Phase) -> bool {
    matches!(p, Phase::Closed(_))
}

/// Whether `ev` applies to `phase` at `now`, per the rules: anything else
/// must be a no-op.
fn applies(ev: &Ev, phase: &Phase, now: Instant) -> bool {
    match (ev, phase) {
        (Ev::Start, Phase::Idle) => true,
        (Ev::Connected | Ev::ConnectFailed, Phase::Connecting { .. }) => true,
        (Ev::Reset { .. }, Phase::Connected { .. }) => true,
        (Ev::Timeout, Phase::BackingOff { until, .. }) => now >= *until,
        (Ev::Close(_), p) => !is_closed(p),
        _ => false,
    }
}

/// The un-jittered delay at `level` of the schedule, capped.
fn base(cfg: &Cfg, level: u32) -> Duration {
    let secs = cfg.initial().as_secs_f64() * cfg.multiplier.powi(level.min(1024) as i32);
    if secs.is_finite() && secs < cfg.max().as_secs_f64() {
        Duration::from_secs_f64(secs)
    } else {
        cfg.max()
    }
}

/// Bounds of the delay drawn at `level` of the schedule, `prev` being the
/// delay drawn before it (the initial delay at the start of a schedule).
fn bounds(cfg: &Cfg, level: u32, prev: Duration) -> (Duration, Duration) {
    let b = base(cfg, level);
    let max = cfg.max();
    let (lo, hi) = match cfg.jitter {
        Jitter::None => (b, b),
        Jitter::Proportional(f) => (b.mul_f64(1.0 - f), b.mul_f64(1.0 + f)),
        Jitter::Full => (Duration::ZERO, b),
        Jitter::Decorrelated => (cfg.initial(), (prev * 3).max(cfg.initial())),
    };
    (lo.min(max).saturating_sub(EPS), hi.min(max))
}

/// An independent model of the rules, predicting the machine's next phase
/// and output. It shares only the random draws (a `Delays` with the same
/// seed, advanced and restarted where the rules say), since jitter values
/// cannot be predicted otherwise; `bounds` checks those draws separately.
struct Model {
    cfg: Cfg,
    phase: Phase,
    delays: Delays,
    failed: u32,
    streak_start: Instant,
    resets: VecDeque<Instant>,
    short_lived: bool,
}

impl Model {
    fn new(cfg: &Cfg) -> Self {
        Model {
            cfg: cfg.clone(),
            phase: Phase::Idle,
            delays: cfg.backoff().delays(cfg.seed),
            failed: 0,
            streak_start: Instant::now(),
            resets: VecDeque::new(),
            short_lived: false,
        }
    }

    fn gave_up(&self, now: Instant) -> Phase {
        Phase::Closed(CloseReason::GaveUp {
            attempts: self.failed,
            elapsed: now.saturating_duration_since(self.streak_start),
        })
    }

    /// Attempt number `attempt` failed at `now`: the expected delay.
    fn failed_attempt(&mut self, attempt: u32, now: Instant) -> Option<Duration> {
        self.failed += 1;
        // Max attempts: the n-th failure in a row closes.
        if self.cfg.max_attempts.is_some_and(|m| self.failed >= m) {
            self.phase = self.gave_up(now);
            return None;
        }
        let d = self.delays.next().unwrap();
        // Budget: the next attempt would start past it.
        let elapsed = now.saturating_duration_since(self.streak_start);
        if self
            .cfg
            .give_up_after_ms
            .is_some_and(|b| elapsed + d > ms(b))
        {
            self.phase = self.gave_up(now);
            return None;
        }
        self.phase = Phase::BackingOff {
            until: now + d,
            attempt: attempt + 1,
        };
        Some(d)
    }

    /// The connection up since `since` was lost at `now` and is to resume:
    /// the expected delay.
    fn lost(&mut self, since: Instant, now: Instant) -> Option<Duration> {
        // Intensity: more than N losses within T, this one included.
        if let Some((n, within)) = self.cfg.intensity {
            self.resets.push_back(now);
            self.resets.retain(|&t| now.duration_since(t) <= ms(within));
            if self.resets.len() > n as usize {
                self.phase = Phase::Closed(CloseReason::RestartIntensity {
                    resets: self.resets.len() as u32,
                    within: ms(within),
                });
                return None;
            }
        }
        self.streak_start = now;
        self.failed = 0;
        let stable = now.duration_since(since) >= ms(self.cfg.stable_after_ms);
        let after_short = self.short_lived;
        self.short_lived = !stable;
        if stable {
            self.delays.reset();
            self.phase = Phase::Connecting { attempt: 1 };
            Some(Duration::ZERO)
        } else if !after_short {
            self.phase = Phase::Connecting { attempt: 1 };
            Some(Duration::ZERO)
        } else {
            let d = self.delays.next().unwrap();
            self.phase = Phase::BackingOff {
                until: now + d,
                attempt: 1,
            };
            Some(d)
        }
    }

    /// Applies `ev` at `now`; returns the expected output.
    fn step(&mut self, ev: &Ev, now: Instant) -> Option<Duration> {
        if !applies(ev, &self.phase, now) {
            return None;
        }
        match (ev, self.phase.clone()) {
            (Ev::Start, _) => {
                self.streak_start = now;
                self.phase = Phase::Connecting { attempt: 1 };
                None
            }
            (Ev::Connected, _) => {
                // An outage ended: the next one starts the schedule over,
                // its first loss retried at once.
                if self.failed > 0 {
                    self.delays.reset();
                    self.short_lived = false;
                }
                self.failed = 0;
                self.phase = Phase::Connected { since: now };
                None
            }
            (Ev::ConnectFailed, Phase::Connecting { attempt }) => self.failed_attempt(attempt, now),
            (Ev::Reset { resume: false }, _) => {
                self.phase = Phase::Closed(CloseReason::Stopped);
                None
            }
            (Ev::Reset { resume: true }, Phase::Connected { since }) => self.lost(since, now),
            (Ev::Timeout, Phase::BackingOff { attempt, .. }) => {
                self.phase = Phase::Connecting { attempt };
                None
            }
            (Ev::Close(reason), _) => {
                self.phase = Phase::Closed(reason.clone());
                None
            }
            (ev, phase) => unreachable!("{ev:?} applies to {phase:?}"),
        }
    }
}

/// Runs the machine and the model side by side; both must agree on every
/// phase and every output.
fn matches_model(cfg: &Cfg, evs: &[(Ev, Pause)]) -> Result<(), TestCaseError> {
    let mut model = Model::new(cfg);
    for (i, s) in run(cfg, evs).iter().enumerate() {
        let want = model.step(&s.ev, s.at);
        prop_assert_eq!(s.out, want, "step {}: {:?} from {:?}", i, s.ev, s.before);
        prop_assert_eq!(
            &s.after,
            &model.phase,
            "step {}: {:?} from {:?}",
            i,
            s.ev,
            s.before
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// `on_close` exactly once and last: once Closed, every later input
    /// leaves the same Closed phase, returns nothing and sets no deadline;
    /// the first close reason is the one kept.
    #[test]
    fn closed_is_absorbing_and_reached_at_most_once(cfg in cfg([true; 3]), evs in events()) {
        let steps = run(&cfg, &evs);
        let mut entered = 0;
        for s in &steps {
            if is_closed(&s.before) {
                prop_assert_eq!(&s.after, &s.before, "left Closed on {:?}", s.ev);
                prop_assert_eq!(s.out, None);
                prop_assert_eq!(s.poll, None);
            } else if is_closed(&s.after) {
                entered += 1;
                if let Ev::Close(reason) = &s.ev {
                    prop_assert_eq!(&s.after, &Phase::Closed(reason.clone()));
                }
            }
        }
        prop_assert!(entered <= 1);
    }

    /// After `disconnect` (or `abort`) no input starts an attempt or sets
    /// a deadline, whatever the phase it came in.
    #[test]
    fn no_connect_attempt_after_a_local_disconnect(cfg in cfg([true; 3]), evs in events()) {
        let mut disconnected = false;
        for s in run(&cfg, &evs) {
            if matches!(s.ev, Ev::Close(CloseReason::Disconnected | CloseReason::Aborted)) {
                disconnected = true;
            }
            if disconnected {
                prop_assert!(is_closed(&s.after), "{:?} after a disconnect", s.after);
                prop_assert_eq!(s.poll, None);
            }
        }
    }

    /// `on_reset` only after a connected state: a reset outside Connected,
    /// and every other input that does not apply to the phase, changes
    /// nothing, hidden state included. A twin machine that never gets those
    /// inputs stays identical in every phase and output.
    #[test]
    fn inputs_that_do_not_apply_to_the_phase_change_nothing(
        cfg in cfg([true; 3]),
        evs in events(),
    ) {
        let (mut all, mut only) = (cfg.machine(), cfg.machine());
        let mut now = Instant::now();
        for (ev, pause) in &evs {
            now = advance(&cfg, now, *pause, &all);
            let before = all.phase().clone();
            let effective = applies(ev, &before, now);
            let out = apply(&mut all, ev, now);
            if effective {
                prop_assert_eq!(out, apply(&mut only, ev, now));
            } else {
                prop_assert_eq!(out, None, "{:?} in {:?} returned a delay", ev, before);
                prop_assert_eq!(all.phase(), &before, "{:?} changed {:?}", ev, before);
            }
            prop_assert_eq!(all.phase(), only.phase());
            prop_assert_eq!(all.poll_timeout(), only.poll_timeout());
        }
    }

    /// Every delay the machine returns is within the bounds of its jitter
    /// kind at its place in the schedule, never above the cap; a loss after
    /// `stable_after` is retried at once and restarts the schedule; a short
    /// loss after a stable one is retried at once and keeps its place; a
    /// connection made after failed attempts starts the schedule over.
    #[test]
    fn delays_stay_within_the_backoff_bounds(cfg in cfg([true; 3]), evs in events()) {
        // Place in the schedule, tracked from the rules alone.
        let mut level = 0u32;
        let mut prev = cfg.initial();
        let mut short_lived = false;
        // Failed attempts since the last connect.
        let mut failures = 0u32;
        for s in run(&cfg, &evs) {
            let draw = match (&s.ev, &s.before) {
                (Ev::Connected, Phase::Connecting { .. }) => {
                    // An outage ended: the next one starts over.
                    if failures > 0 {
                        level = 0;
                        prev = cfg.initial();
                        short_lived = false;
                    }
                    failures = 0;
                    false
                }
                (Ev::ConnectFailed, Phase::Connecting { .. }) => {
                    failures += 1;
                    !matches!(s.after, Phase::Closed(CloseReason::GaveUp { .. }))
                }
                (Ev::Reset { resume: true }, Phase::Connected { since }) => {
                    failures = 0;
                    let stable = s.at.duration_since(*since) >= ms(cfg.stable_after_ms);
                    let after_short = std::mem::replace(&mut short_lived, !stable);
                    if is_closed(&s.after) {
                        false
                    } else if stable {
                        prop_assert_eq!(s.out, Some(Duration::ZERO));
                        prop_assert_eq!(&s.after, &Phase::Connecting { attempt: 1 });
                        level = 0;
                        prev = cfg.initial();
                        false
                    } else if !after_short {
                        prop_assert_eq!(s.out, Some(Duration::ZERO));
                        prop_assert_eq!(&s.after, &Phase::Connecting { attempt: 1 });
                        false
                    } else {
                        true
                    }
                }
                _ => false,
            };
            if draw {
                let d = s.out.expect("a delay");
                let (lo, hi) = bounds(&cfg, level, prev);
                prop_assert!(
                    d >= lo && d <= hi,
                    "delay {:?} outside {:?}..={:?} at level {}", d, lo, hi, level
                );
                prop_assert!(d <= cfg.max());
                let until = match s.after {
                    Phase::BackingOff { until, .. } => until,
                    ref p => return Err(TestCaseError::fail(format!("{p:?} after a delay"))),
                };
                prop_assert_eq!(until, s.at + d);
                level += 1;
                prev = d;
            }
        }
    }

    /// The only deadline is the backoff deadline, and it is kept: a timeout
    /// before it changes nothing, one at or after it starts the attempt it
    /// announced; attempt numbers count the failures in a row.
    #[test]
    fn backing_off_waits_exactly_for_its_deadline(cfg in cfg([true; 3]), evs in events()) {
        let mut failed = 0u32;
        for s in run(&cfg, &evs) {
            match (&s.ev, &s.before) {
                (Ev::ConnectFailed, Phase::Connecting { .. }) => failed += 1,
                (Ev::Connected, Phase::Connecting { .. })
                | (Ev::Reset { .. }, Phase::Connected { .. }) => failed = 0,
                (Ev::Timeout, Phase::BackingOff { until, attempt }) => {
                    if s.at < *until {
                        prop_assert_eq!(&s.after, &s.before);
                    } else {
                        prop_assert_eq!(&s.after, &Phase::Connecting { attempt: *attempt });
                    }
                }
                _ => {}
            }
            match s.after {
                Phase::BackingOff { until, attempt } => {
                    prop_assert_eq!(s.poll, Some(until));
                    if !matches!(s.before, Phase::BackingOff { .. }) {
                        // A new deadline is never in the past.
                        prop_assert!(until >= s.at);
                    }
                    prop_assert_eq!(attempt, failed + 1);
                }
                Phase::Connecting { attempt } => {
                    prop_assert_eq!(s.poll, None);
                    prop_assert_eq!(attempt, failed + 1);
                }
                _ => prop_assert_eq!(s.poll, None),
            }
        }
    }

    /// `max_attempts` alone: the n-th failed attempt in a row closes with
    /// GaveUp { attempts: n }, never an earlier one.
    #[test]
    fn max_attempts_trips_on_exactly_the_nth_failure_in_a_row(
        cfg in cfg([true, false, false]),
        evs in events(),
    ) {
        matches_model(&cfg, &evs)?;
    }

    /// `give_up_after` alone: a failure closes exactly when the time since
    /// the streak began plus the next delay would pass the budget.
    #[test]
    fn time_budget_trips_exactly_when_the_next_attempt_would_pass_it(
        cfg in cfg([false, true, false]),
        evs in events(),
    ) {
        matches_model(&cfg, &evs)?;
    }

    /// `restart_intensity` alone: the loss that makes more than N within T
    /// closes with RestartIntensity, and no loss before it does.
    #[test]
    fn restart_intensity_trips_exactly_on_the_loss_beyond_the_limit(
        cfg in cfg([false, false, true]),
        evs in events(),
    ) {
        matches_model(&cfg, &evs)?;
    }

    /// Every policy mix, none included: the machine follows the model in
    /// every phase and every delay.
    #[test]
    fn the_machine_follows_the_rules_under_every_policy_mix(
        cfg in cfg([true; 3]),
        evs in events(),
    ) {
        matches_model(&cfg, &evs)?;
    }
}

/// Fails every attempt `n` times (waiting out each delay); returns the
/// number of delays seen.
fn fail_repeatedly(lc: &mut Lifecycle, n: usize) -> usize {
    let mut now = Instant::now();
    lc.start(now);
    for i in 0..n {
        match lc.connect_failed(now) {
            Some(_) => {
                now = lc.poll_timeout().unwrap_or(now);
                lc.timeout(now);
            }
            None => return i,
        }
    }
    n
}

// Regression (fixed): `Backoff::new` accepts any cap up to `Duration::MAX` (a natural
// way to say "no cap"), but `Lifecycle::connect_failed` computes
// `now + delay` for the BackingOff deadline, which panics ("overflow when
// adding duration to instant") once the exponential delay passes ~2^63 s,
// after about 64 failed attempts at 1 s × 2. In the driver that panic
// kills the connection's task.
#[test]
fn a_huge_backoff_cap_never_panics_the_machine() {
    let b = Backoff::new(Duration::from_secs(1), 2.0, Duration::MAX)
        .unwrap()
        .with_jitter(Jitter::None);
    let mut lc = Lifecycle::new(std::sync::Arc::new(Options::new().backoff(b)), 1);
    assert_eq!(fail_repeatedly(&mut lc, 100), 100);
}

// Regression (fixed): with the default ±20 % jitter and a cap near `Duration::MAX`,
// `Delays::next` (backoff.rs) panics in `Duration::mul_f64` ("overflow")
// as soon as the base delay times the jitter factor passes the range of a
// Duration, before the cap is applied.
#[test]
fn a_huge_backoff_cap_never_panics_the_schedule() {
    let b = Backoff::new(Duration::from_secs(1), 2.0, Duration::MAX).unwrap();
    assert!(b.delays(1).take(200).all(|d| d <= Duration::MAX));
}
