//! One clock for every process of the run: CLOCK_MONOTONIC in nanoseconds.
//!
//! Servers, Rust clients and node clients all stamp their events with it
//! (node's `process.hrtime` reads the same clock), so a server's "close"
//! and a client's "reset" can be subtracted across processes.

use std::sync::OnceLock;
use std::time::Instant;

use rustix::time::{clock_gettime, ClockId};

/// Now, in nanoseconds of CLOCK_MONOTONIC.
pub fn now_ns() -> u64 {
    let t = clock_gettime(ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// Converts a `std::time::Instant` (CLOCK_MONOTONIC on Linux) to the same
/// nanosecond scale, through one anchor pair taken on first use.
pub fn instant_ns(i: Instant) -> u64 {
    static ANCHOR: OnceLock<(Instant, u64)> = OnceLock::new();
    let (a, n) = *ANCHOR.get_or_init(|| (Instant::now(), now_ns()));
    if i >= a {
        n + (i - a).as_nanos() as u64
    } else {
        n.saturating_sub((a - i).as_nanos() as u64)
    }
}
