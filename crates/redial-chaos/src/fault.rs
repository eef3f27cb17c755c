//! What can go wrong: the public [`Fault`] and [`Direction`] vocabulary, and
//! the internal [`FaultState`] snapshot that every connection watches.

use std::time::Duration;

use crate::SplitMix64;

/// The longest delay the proxy applies: one year (365 days).
///
/// Every delay given to the proxy (latency, jitter, slice delay, slow
/// close, the upstream connect timeout) saturates at this value. To a test
/// a year is forever, and the cap keeps the proxy's clock arithmetic far
/// from overflowing, so no delay, however large, can panic it.
///
/// ```
/// use redial_chaos::MAX_DELAY;
/// assert_eq!(MAX_DELAY.as_secs(), 365 * 24 * 3600);
/// ```
pub const MAX_DELAY: Duration = Duration::from_secs(365 * 24 * 3600);

/// `d`, or [`MAX_DELAY`] if it is longer.
pub(crate) fn capped(d: Duration) -> Duration {
    d.min(MAX_DELAY)
}

/// Which way data flows through the proxy.
///
/// ```
/// use redial_chaos::Direction;
///
/// assert!(Direction::Both.includes(Direction::Upstream));
/// assert!(!Direction::Downstream.includes(Direction::Upstream));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Client → server: bytes the client sends.
    Upstream,
    /// Server → client: bytes the server sends.
    Downstream,
    /// Both directions.
    Both,
}

impl Direction {
    /// Whether a fault set for `self` affects the single direction `other`.
    ///
    /// ```
    /// use redial_chaos::Direction;
    /// assert!(Direction::Upstream.includes(Direction::Upstream));
    /// ```
    pub fn includes(self, other: Direction) -> bool {
        self == Direction::Both || self == other
    }
}

/// One fault, as a value: what [`Proxy::apply`](crate::Proxy::apply) takes
/// and [`Proxy::random_fault`](crate::Proxy::random_fault) returns, so a test
/// can log exactly what it injected.
///
/// Each variant matches the `Proxy` method of the same name.
///
/// ```
/// use redial_chaos::{Direction, Fault, SplitMix64};
/// use std::time::Duration;
///
/// let f = Fault::Latency {
///     direction: Direction::Both,
///     delay: Duration::from_millis(20),
///     jitter: Duration::ZERO,
/// };
/// assert!(format!("{f:?}").contains("Latency"));
/// let _random = Fault::random(&mut SplitMix64::new(42));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// RST every live connection, both sides.
    ResetAll,
    /// FIN every live connection, both sides.
    CloseAll,
    /// Stop listening: new connects are refused.
    Refuse,
    /// Forward nothing, send nothing, keep connections open.
    Blackhole,
    /// Delay each chunk by `delay` plus up to `jitter`.
    Latency {
        /// Which way to delay.
        direction: Direction,
        /// Fixed delay.
        delay: Duration,
        /// Extra random delay, uniform in `0..=jitter`.
        jitter: Duration,
    },
    /// Limit throughput (0 = unlimited).
    Bandwidth {
        /// Which way to limit.
        direction: Direction,
        /// Bytes per second.
        bytes_per_s: u64,
    },
    /// Forward in chunks of at most `max_chunk` bytes, `delay` apart.
    Slice {
        /// Which way to slice.
        direction: Direction,
        /// Largest chunk written at once (0 = no slicing).
        max_chunk: usize,
        /// Pause between chunks.
        delay: Duration,
    },
    /// RST a connection once it has forwarded this many bytes.
    CutAfter {
        /// Byte budget per connection, both directions together.
        bytes: u64,
    },
    /// Hold each close (FIN or RST from a peer) this long before passing it on.
    SlowClose {
        /// How long to hold it.
        delay: Duration,
    },
}

impl Fault {
    /// Picks a fault with moderate random parameters from `rng`.
    ///
    /// Parameters stay in ranges a test survives in seconds: latency up to
    /// 200 ms, bandwidth at least 1 KiB/s, slow close up to 1 s.
    ///
    /// ```
    /// use redial_chaos::{Fault, SplitMix64};
    ///
    /// // Same seed, same fault: a failing run can be replayed.
    /// assert_eq!(
    ///     Fault::random(&mut SplitMix64::new(5)),
    ///     Fault::random(&mut SplitMix64::new(5))
    /// );
    /// ```
    pub fn random(rng: &mut SplitMix64) -> Fault {
        let direction = match rng.below(3) {
            0 => Direction::Upstream,
            1 => Direction::Downstream,
            _ => Direction::Both,
        };
        let ms = |lo, hi, rng: &mut SplitMix64| Duration::from_millis(rng.between(lo, hi));
        match rng.below(9) {
            0 => Fault::ResetAll,
            1 => Fault::CloseAll,
            2 => Fault::Refuse,
            3 => Fault::Blackhole,
            4 => Fault::Latency {
                direction,
                delay: ms(1, 200, rng),
                jitter: ms(0, 50, rng),
            },
            5 => Fault::Bandwidth {
                direction,
                bytes_per_s: rng.between(1024, 1024 * 1024),
            },
            6 => Fault::Slice {
                direction,
                max_chunk: rng.between(1, 64) as usize,
                delay: ms(0, 10, rng),
            },
            7 => Fault::CutAfter {
                bytes: rng.between(0, 64 * 1024),
            },
            _ => Fault::SlowClose {
                delay: ms(10, 1000, rng),
            },
        }
    }
}

/// Traffic shaping for one direction. All-zero means "forward as is".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Shaping {
    pub(crate) latency: Duration,
    pub(crate) jitter: Duration,
    /// Bytes per second; 0 = unlimited.
    pub(crate) bandwidth: u64,
    /// Largest write; 0 = no slicing.
    pub(crate) slice: usize,
    pub(crate) slice_delay: Duration,
}

impl Shaping {
    pub(crate) fn is_clear(&self) -> bool {
        *self == Shaping::default()
    }

    pub(crate) fn delays(&self) -> bool {
        !self.latency.is_zero() || !self.jitter.is_zero()
    }
}

/// Every switchable fault at one instant. Connections hold a copy and
/// refresh it when the proxy publishes a new one through a `watch` channel,
/// so the forwarding loop pays one atomic load per read to stay current.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct FaultState {
    pub(crate) blackhole: bool,
    pub(crate) up: Shaping,
    pub(crate) down: Shaping,
    pub(crate) cut_after: Option<u64>,
    pub(crate) slow_close: Duration,
    /// Bumped by `reset_all`; a connection resets when it sees a value
    /// newer than the one current when it was accepted, which is what makes
    /// the reset hit live connections only.
    pub(crate) reset_epoch: u64,
    /// Same idea for `close_all`.
    pub(crate) close_epoch: u64,
}

impl FaultState {
    pub(crate) fn shaping_mut(&mut self, direction: Direction, f: impl Fn(&mut Shaping)) {
        if direction.includes(Direction::Upstream) {
            f(&mut self.up);
        }
        if direction.includes(Direction::Downstream) {
            f(&mut self.down);
        }
    }

    /// Everything back to normal, except the epochs, which must only grow.
    pub(crate) fn healed(&self) -> FaultState {
        FaultState {
            reset_epoch: self.reset_epoch,
            close_epoch: self.close_epoch,
            ..FaultState::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shaping_applies_per_direction() {
        let mut s = FaultState::default();
        s.shaping_mut(Direction::Upstream, |sh| sh.bandwidth = 10);
        assert_eq!(s.up.bandwidth, 10);
        assert!(s.down.is_clear());
        s.shaping_mut(Direction::Both, |sh| sh.slice = 3);
        assert_eq!((s.up.slice, s.down.slice), (3, 3));
    }

    #[test]
    fn heal_keeps_epochs() {
        let s = FaultState {
            blackhole: true,
            reset_epoch: 4,
            ..FaultState::default()
        };
        let h = s.healed();
        assert!(!h.blackhole);
        assert_eq!(h.reset_epoch, 4);
    }
}
