//! A tiny seeded PRNG (SplitMix64) so that jitter and random faults repeat
//! exactly when a failing run is re-run with the same seed. Not for crypto.

use std::time::Duration;

/// SplitMix64: 64 bits of state, one add and a few mixes per number.
///
/// The same seed always yields the same sequence, on every platform.
///
/// ```
/// use redial_chaos::SplitMix64;
///
/// let mut a = SplitMix64::new(42);
/// let mut b = SplitMix64::new(42);
/// assert_eq!(a.next_u64(), b.next_u64());
/// assert!(a.below(10) < 10);
/// ```
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator starting from `seed`.
    ///
    /// ```
    /// let mut rng = redial_chaos::SplitMix64::new(7);
    /// let _ = rng.next_u64();
    /// ```
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 random bits.
    ///
    /// ```
    /// let mut rng = redial_chaos::SplitMix64::new(1);
    /// assert_ne!(rng.next_u64(), rng.next_u64());
    /// ```
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    ///
    /// Uses a widening multiply rather than `%`, which keeps the bias
    /// negligible without a rejection loop.
    ///
    /// ```
    /// let mut rng = redial_chaos::SplitMix64::new(3);
    /// assert!(rng.below(6) < 6);
    /// assert_eq!(rng.below(0), 0);
    /// ```
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// A number in `lo..=hi` (`lo` if `hi < lo`).
    ///
    /// ```
    /// let mut rng = redial_chaos::SplitMix64::new(3);
    /// let x = rng.between(5, 9);
    /// assert!((5..=9).contains(&x));
    /// let _any = rng.between(0, u64::MAX); // the whole range, no overflow
    /// ```
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        match (hi - lo).checked_add(1) {
            Some(n) => lo + self.below(n),
            // `0..=u64::MAX`: every value is in range.
            None => self.next_u64(),
        }
    }

    /// A duration in `0..=max`, at nanosecond resolution.
    ///
    /// ```
    /// use std::time::Duration;
    /// let mut rng = redial_chaos::SplitMix64::new(3);
    /// assert!(rng.duration_up_to(Duration::from_millis(5)) <= Duration::from_millis(5));
    /// ```
    pub fn duration_up_to(&mut self, max: Duration) -> Duration {
        let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(self.between(0, nanos))
    }

    /// A new generator whose sequence is independent of this one's, for
    /// handing each connection its own stream without sharing a lock.
    ///
    /// ```
    /// let mut parent = redial_chaos::SplitMix64::new(9);
    /// let mut child = parent.fork();
    /// let _ = child.next_u64();
    /// ```
    #[must_use]
    pub fn fork(&mut self) -> Self {
        Self::new(self.next_u64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_first_values() {
        // Reference values of SplitMix64 for seed 0.
        let mut rng = SplitMix64::new(0);
        assert_eq!(rng.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(rng.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn between_stays_in_range() {
        let mut rng = SplitMix64::new(11);
        for _ in 0..1000 {
            let x = rng.between(3, 5);
            assert!((3..=5).contains(&x));
        }
    }

    #[test]
    fn the_widest_ranges_do_not_overflow() {
        let mut rng = SplitMix64::new(11);
        let _ = rng.between(0, u64::MAX);
        assert!(rng.between(u64::MAX - 1, u64::MAX) >= u64::MAX - 1);
        assert!(rng.duration_up_to(std::time::Duration::MAX).as_nanos() <= u128::from(u64::MAX));
    }
}
