//! The pure core: what a connection should do next, decided from what
//! happened and when, with time passed in.
//!
//! Nothing here touches a socket or a runtime (no tokio, no socket2), so
//! every rule — the life cycle, the backoff schedule — is tested with a
//! fake clock and property tests, and the driver only carries out its
//! decisions.

pub(crate) mod backoff;
pub(crate) mod chunks;
pub(crate) mod ledger;
pub(crate) mod lifecycle;
#[cfg(test)]
mod props;
pub(crate) mod timers;
