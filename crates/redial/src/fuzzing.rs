//! Internals reachable only in fuzzing builds (`cargo fuzz` sets
//! `--cfg fuzzing`): the life-cycle state machine, the send path without
//! sockets and its byte ledger, and a view of a live connection's send
//! queue that the loopback data-path target checks its ledger against.

pub use crate::core::ledger::Ledger;
pub use crate::core::lifecycle::{Lifecycle, Phase};
pub use crate::data_path::DataPath;

/// A connection's queued bytes: `(queued, inflight, outage)` — queued and
/// not yet taken by the driver, taken and not yet written, and held in the
/// outage buffer for the next connection.
pub fn queue_bytes(conn: &crate::Connection) -> (usize, usize, usize) {
    let q = conn.shared.queue();
    (q.segs.len(), q.inflight, q.outage_len())
}
