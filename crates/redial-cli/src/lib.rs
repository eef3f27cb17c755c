//! The library behind the `redial` command: argument-free building blocks
//! that the binary wires to its flags.
//!
//! - [`units`] — durations and sizes as people write them (`250ms`, `64KiB`).
//! - [`output`] — stderr state lines, timestamps, colour rules.
//! - [`table`] — plain-text tables.
//! - [`demo`] — the `demo` scenario: [`schedule`] says what breaks when,
//!   [`tally`] counts the messages, [`report`] sums them up, [`narrate`]
//!   prints resets and recoveries, [`echo`] is the echo server.
//! - [`connect`] — the reconnecting netcat.
//! - [`watch`] — live table and JSON events for a set of endpoints.
//! - [`chaos`] — the fault proxy as a tool, with its stdin commands.
//! - [`stop`] — waiting for Ctrl-C or SIGTERM.
//!
//! Exit codes, shared by every command: 0 ok, 1 runtime failure (or gave
//! up), 2 usage error (see [`EXIT_OK`], [`EXIT_FAILURE`], [`EXIT_USAGE`]).

pub mod chaos;
pub mod connect;
pub mod demo;
pub mod echo;
pub mod narrate;
pub mod output;
pub mod report;
pub mod schedule;
pub mod stop;
pub mod table;
pub mod tally;
pub mod units;
pub mod watch;

/// The command did what it was asked.
pub const EXIT_OK: u8 = 0;
/// Something failed at run time, or `connect` gave up reconnecting.
pub const EXIT_FAILURE: u8 = 1;
/// Bad arguments: nothing was started.
pub const EXIT_USAGE: u8 = 2;
