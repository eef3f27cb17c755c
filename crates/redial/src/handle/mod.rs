//! What the application holds: the [`Manager`](crate::Manager) that makes
//! connections and pools, the handles on them ([`Connection`](crate::Connection),
//! [`Socket`](crate::Socket), [`Sender`](crate::Sender),
//! [`Stream`](crate::Stream), [`Pool`](crate::Pool)) and the answer of every
//! disconnect ([`Disconnecting`](crate::Disconnecting)).
//!
//! Handles never do I/O themselves: they queue bytes and commands in the
//! state they share with the connection's task (`crate::shared`).

pub(crate) mod connection;
pub(crate) mod disconnect;
#[cfg(test)]
mod empty_send_tests;
pub(crate) mod global;
pub(crate) mod manager;
pub(crate) mod pool;
pub(crate) mod sender;
pub(crate) mod socket;
pub(crate) mod status;
pub(crate) mod stream;
