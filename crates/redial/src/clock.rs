//! The one clock every time stamp of the library is read from: the
//! runtime's, the same one the life cycle's deadlines are measured on.
//!
//! `Stats::uptime`, `Event::at`, `connected_since`, the flapping test of
//! pools and the driver's deadlines all read [`now`], so under a paused
//! runtime (`tokio::time::pause`, `start_paused`) they agree with each
//! other and with the timers: an uptime does not read zero after an hour
//! of paused time has passed. Outside a runtime it is the system's
//! monotonic clock.

use std::time::Instant;

/// The current time on the runtime's clock.
pub(crate) fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}
