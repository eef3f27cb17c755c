//! How long to wait before the next connect attempt.
//!
//! [`Backoff`] is a validated value; [`Backoff::delays`] turns it into an
//! iterator of [`Duration`]s driven by a seeded random source, so the same
//! seed always yields the same schedule (tests and failing runs repeat).

use std::time::Duration;

use crate::error::OptionsError;

/// How delays are randomised so that many clients do not retry in lockstep.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Jitter {
    /// Exactly the exponential schedule.
    None,
    /// The exponential delay times a factor drawn from `1 ± fraction`
    /// (fraction in `0.0..=1.0`), never above the cap.
    Proportional(f64),
    /// A delay drawn uniformly from zero to the exponential delay: the best
    /// spread for large fleets, at the cost of some very short delays.
    Full,
    /// Each delay drawn from `initial..=3 × previous`, capped: spreads well
    /// and grows without a fixed exponent.
    Decorrelated,
}

/// An exponential backoff schedule: `initial`, then × `multiplier` per
/// failed attempt, never above `max`, randomised by [`Jitter`].
///
/// ```
/// use redial::{Backoff, Jitter};
/// use std::time::Duration;
///
/// let b = Backoff::new(Duration::from_millis(10), 2.0, Duration::from_millis(50))?
///     .with_jitter(Jitter::None);
/// let d: Vec<_> = b.delays(1).take(5).map(|d| d.as_millis()).collect();
/// assert_eq!(d, [10, 20, 40, 50, 50]);
/// # Ok::<(), redial::OptionsError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    initial: Duration,
    multiplier: f64,
    max: Duration,
    jitter: Jitter,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Self::DEFAULT_INITIAL,
            multiplier: Self::DEFAULT_MULTIPLIER,
            max: Self::DEFAULT_MAX,
            jitter: Self::DEFAULT_JITTER,
        }
    }
}

impl Backoff {
    /// Default first delay after a failed attempt: long enough that a refused
    /// port is not hammered, short enough that a restarting server is found
    /// within a fraction of a second.
    ///
    /// A lost connection is retried at once; while the server stays down the
    /// delays double from here (0.1, 0.2, 0.4, 0.8 s, …), so a server back
    /// after an outage of `T` is found within about `T` more: a process
    /// restart of a few hundred milliseconds within a fraction of a second, a
    /// 2 s outage within about 1.5 s. Every outage starts here again: a
    /// connection made after failed attempts starts the schedule over, as does
    /// one that stayed up [`Options::stable_after`](crate::Options::stable_after).
    /// For faster recovery from longer outages, choose a smaller multiplier or
    /// cap (with `Backoff::new(100 ms, 1.5, 1 s)` a 2 s outage is found within
    /// about 0.5 s, at the cost of more attempts against a server that is down).
    ///
    /// Value: 100 ms.
    ///
    /// ```
    /// use std::time::Duration;
    /// assert_eq!(redial::Backoff::DEFAULT_INITIAL, Duration::from_millis(100));
    /// ```
    pub const DEFAULT_INITIAL: Duration = Duration::from_millis(100);

    /// Default growth factor between successive delays.
    ///
    /// Value: 2.0.
    ///
    /// ```
    /// assert_eq!(redial::Backoff::DEFAULT_MULTIPLIER, 2.0);
    /// ```
    pub const DEFAULT_MULTIPLIER: f64 = 2.0;

    /// Default cap: a server that is down for minutes is still retried twice a
    /// minute, and recovery is noticed within 30 s at worst.
    ///
    /// Value: 30 s.
    ///
    /// ```
    /// use std::time::Duration;
    /// assert_eq!(redial::Backoff::DEFAULT_MAX, Duration::from_secs(30));
    /// ```
    pub const DEFAULT_MAX: Duration = Duration::from_secs(30);

    /// Default jitter: ±20 %, enough to spread a fleet's reconnects without
    /// making a single connection's schedule unpredictable.
    ///
    /// Value: ±20 % (`Jitter::Proportional(0.2)`).
    ///
    /// ```
    /// assert_eq!(redial::Backoff::DEFAULT_JITTER, redial::Jitter::Proportional(0.2));
    /// ```
    pub const DEFAULT_JITTER: Jitter = Jitter::Proportional(0.2);
}

impl Backoff {
    /// A schedule starting at `initial`, growing by `multiplier`, capped at
    /// `max`, with the default ±20 % jitter.
    ///
    /// Errors when `multiplier` is below 1 or not finite, or `max` is below
    /// `initial`.
    ///
    /// ```
    /// use redial::Backoff;
    /// use std::time::Duration;
    ///
    /// assert!(Backoff::new(Duration::from_secs(1), 0.5, Duration::from_secs(9)).is_err());
    /// ```
    pub fn new(initial: Duration, multiplier: f64, max: Duration) -> Result<Self, OptionsError> {
        if !multiplier.is_finite() || multiplier < 1.0 {
            return Err(OptionsError::invalid(
                "backoff multiplier",
                format!("{multiplier} (must be a finite number >= 1)"),
            ));
        }
        if max < initial {
            return Err(OptionsError::invalid(
                "backoff max",
                format!("{max:?} is below the initial delay {initial:?}"),
            ));
        }
        Ok(Backoff {
            initial,
            multiplier,
            max,
            jitter: Self::DEFAULT_JITTER,
        })
    }

    /// The same schedule with another [`Jitter`].
    ///
    /// ```
    /// let b = redial::Backoff::default().with_jitter(redial::Jitter::Full);
    /// assert_eq!(b.jitter(), redial::Jitter::Full);
    /// ```
    #[must_use]
    pub fn with_jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// The first delay.
    ///
    /// ```
    /// assert_eq!(redial::Backoff::default().initial().as_millis(), 100);
    /// ```
    pub fn initial(&self) -> Duration {
        self.initial
    }

    /// The growth factor.
    ///
    /// ```
    /// assert_eq!(redial::Backoff::default().multiplier(), 2.0);
    /// ```
    pub fn multiplier(&self) -> f64 {
        self.multiplier
    }

    /// The cap: no delay is ever longer.
    ///
    /// ```
    /// assert_eq!(redial::Backoff::default().max().as_secs(), 30);
    /// ```
    pub fn max(&self) -> Duration {
        self.max
    }

    /// The jitter kind.
    ///
    /// ```
    /// assert_eq!(redial::Backoff::default().jitter(), redial::Jitter::Proportional(0.2));
    /// ```
    pub fn jitter(&self) -> Jitter {
        self.jitter
    }

    pub(crate) fn validate(&self) -> Result<(), OptionsError> {
        Backoff::new(self.initial, self.multiplier, self.max)?;
        if let Jitter::Proportional(f) = self.jitter {
            if !(0.0..=1.0).contains(&f) {
                return Err(OptionsError::invalid(
                    "backoff jitter",
                    format!("{f} (a proportional jitter must be within 0.0..=1.0)"),
                ));
            }
        }
        Ok(())
    }

    /// The delays of this schedule, randomised from `seed`.
    ///
    /// ```
    /// let b = redial::Backoff::default();
    /// for d in b.delays(7).take(20) {
    ///     assert!(d <= b.max());
    /// }
    /// ```
    pub fn delays(&self, seed: u64) -> Delays {
        Delays {
            backoff: *self,
            place: Place::new(self, seed),
        }
    }
}

/// The delays of a [`Backoff`] schedule, one per failed attempt; endless.
///
/// ```
/// let mut d = redial::Backoff::default().delays(1);
/// let first = d.next().unwrap();
/// assert!(first.as_millis() >= 80 && first.as_millis() <= 120);
/// ```
#[derive(Debug, Clone)]
pub struct Delays {
    backoff: Backoff,
    place: Place,
}

/// Where a schedule is: its level, the previous delay and the jitter's
/// random state. Kept apart from the [`Backoff`] so a connection can hold
/// its place while the policy stays in the shared options.
#[derive(Debug, Clone)]
pub(crate) struct Place {
    level: u32,
    prev: Duration,
    rng: Rng,
}

impl Place {
    pub(crate) fn new(backoff: &Backoff, seed: u64) -> Self {
        Place {
            level: 0,
            prev: backoff.initial,
            rng: Rng::new(seed),
        }
    }

    /// Starts the schedule over from the initial delay.
    pub(crate) fn reset(&mut self, b: &Backoff) {
        self.level = 0;
        self.prev = b.initial;
    }

    /// The level the next delay is drawn at (0: the initial delay).
    pub(crate) fn level(&self) -> u32 {
        self.level
    }

    /// A random number from the connection's seeded generator, for other
    /// jitter than the backoff's (`max_lifetime`).
    pub(crate) fn draw(&mut self) -> u64 {
        self.rng.next_u64()
    }

    /// The un-jittered delay at the current level, capped.
    fn base(&self, b: &Backoff) -> Duration {
        let factor = b.multiplier.powi(self.level.min(1024) as i32);
        let secs = b.initial.as_secs_f64() * factor;
        if !secs.is_finite() || secs >= b.max.as_secs_f64() {
            b.max
        } else {
            Duration::from_secs_f64(secs)
        }
    }

    /// The next delay of schedule `b`.
    pub(crate) fn next(&mut self, b: &Backoff) -> Duration {
        let base = self.base(b).as_secs_f64();
        // Computed in seconds and capped before it becomes a Duration, so a
        // cap near Duration::MAX ("no cap") cannot overflow.
        let secs = match b.jitter {
            Jitter::None => base,
            Jitter::Proportional(f) => base * (1.0 - f + 2.0 * f * self.rng.unit()).max(0.0),
            Jitter::Full => base * self.rng.unit(),
            Jitter::Decorrelated => {
                let lo = b.initial.as_secs_f64();
                let hi = (self.prev.as_secs_f64() * 3.0).max(lo);
                lo + (hi - lo) * self.rng.unit()
            }
        };
        let d = Duration::try_from_secs_f64(secs)
            .unwrap_or(b.max)
            .min(b.max);
        self.prev = d;
        self.level = self.level.saturating_add(1);
        d
    }
}

impl Delays {
    /// Starts the schedule over from the initial delay.
    ///
    /// ```
    /// let b = redial::Backoff::default().with_jitter(redial::Jitter::None);
    /// let mut d = b.delays(0);
    /// d.next();
    /// d.next();
    /// d.reset();
    /// assert_eq!(d.next().unwrap().as_millis(), 100);
    /// ```
    pub fn reset(&mut self) {
        self.place.reset(&self.backoff);
    }
}

impl Iterator for Delays {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        Some(self.place.next(&self.backoff))
    }
}

/// SplitMix64: tiny, fast, and good enough to spread retries; not for
/// anything secret.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0.0..1.0`.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn cap_is_a_cap_for_every_jitter() {
        for jitter in [
            Jitter::None,
            Jitter::Proportional(0.2),
            Jitter::Proportional(1.0),
            Jitter::Full,
            Jitter::Decorrelated,
        ] {
            let b = Backoff::new(ms(10), 2.0, ms(1000))
                .unwrap()
                .with_jitter(jitter);
            for seed in 0..50 {
                for d in b.delays(seed).take(40) {
                    assert!(d <= ms(1000), "{jitter:?}: {d:?}");
                }
            }
        }
    }

    #[test]
    fn proportional_jitter_stays_within_its_band() {
        let b = Backoff::new(ms(100), 2.0, Duration::from_secs(30)).unwrap();
        for seed in 0..200 {
            for (i, d) in b.delays(seed).take(8).enumerate() {
                let base = 100.0 * 2f64.powi(i as i32);
                let got = d.as_secs_f64() * 1000.0;
                assert!(
                    got >= base * 0.8 - 1e-6 && got <= base * 1.2 + 1e-6,
                    "step {i}: {got} vs {base}"
                );
            }
        }
    }

    #[test]
    fn full_and_decorrelated_stay_in_range() {
        let b = Backoff::new(ms(100), 2.0, ms(5000)).unwrap();
        for seed in 0..100 {
            for (i, d) in b
                .with_jitter(Jitter::Full)
                .delays(seed)
                .take(10)
                .enumerate()
            {
                let base = (100.0 * 2f64.powi(i as i32)).min(5000.0);
                assert!(d.as_secs_f64() * 1000.0 <= base + 1e-6);
            }
            for d in b.with_jitter(Jitter::Decorrelated).delays(seed).take(10) {
                assert!(d >= ms(100) && d <= ms(5000));
            }
        }
    }

    #[test]
    fn same_seed_same_schedule() {
        let b = Backoff::default();
        let a: Vec<_> = b.delays(9).take(10).collect();
        let c: Vec<_> = b.delays(9).take(10).collect();
        assert_eq!(a, c);
    }

    #[test]
    fn invalid_values_are_named() {
        let e = Backoff::new(ms(10), f64::NAN, ms(20)).unwrap_err();
        assert!(e.to_string().contains("backoff multiplier"), "{e}");
        let e = Backoff::new(ms(10), 2.0, ms(5)).unwrap_err();
        assert!(e.to_string().contains("backoff max"), "{e}");
        let e = Backoff::default()
            .with_jitter(Jitter::Proportional(1.5))
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("jitter"), "{e}");
    }

    #[test]
    fn huge_levels_do_not_overflow() {
        let b = Backoff::new(ms(1), 10.0, Duration::from_secs(3600))
            .unwrap()
            .with_jitter(Jitter::None);
        let last = b.delays(0).nth(5000).unwrap();
        assert_eq!(last, Duration::from_secs(3600));
    }
}
