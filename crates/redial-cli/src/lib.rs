//! The library behind the `redial` command: argument-free building blocks
//! that the binary wires to its flags.
//!
//! Modules are grouped by the command they serve; shared pieces sit at
//! the top:
//!
//! - [`demo`] — the `demo` scenario: [`demo::schedule`](mod@demo::schedule) says what breaks
//!   when, [`demo::tally`] counts the messages in an [`demo::account`] (the
//!   per-connection equation the soak checks too), [`demo::report`] sums
//!   them up, [`demo::narrate`] prints resets and recoveries,
//!   [`demo::echo`] is the echo server.
//! - [`connect`] — the reconnecting netcat; [`connect::ledger`] accounts
//!   for its input.
//! - [`watch`] — live table and JSON events for a set of endpoints;
//!   [`watch::prometheus`] answers scrapes of `--metrics`.
//! - [`chaos`] — the fault proxy as a tool, with its stdin commands.
//! - [`output`] — stderr state lines, timestamps, colour rules, and
//!   [`output::table`] for plain-text tables.
//! - [`units`] — durations and sizes as people write them (`250ms`, `64KiB`).
//! - [`logs`] — the library's `tracing` logs on stderr (`RUST_LOG`, `-v`, `-q`).
//! - [`stop`] — waiting for Ctrl-C or SIGTERM.
//!
//! Exit codes, shared by every command: 0 ok, 1 runtime failure (or gave
//! up), 2 usage error (see [`EXIT_OK`], [`EXIT_FAILURE`], [`EXIT_USAGE`]).

#![forbid(unsafe_code)]
// A function a reader cannot hold in view is split (threshold in
// clippy.toml; redial's tests/layers.rs counts every line).
#![warn(clippy::too_many_lines)]

pub mod chaos;
pub mod connect;
pub mod demo;
pub mod logs;
pub mod output;
pub mod stop;
pub mod units;
pub mod watch;

/// The command did what it was asked.
pub const EXIT_OK: u8 = 0;
/// Something failed at run time, or `connect` gave up reconnecting.
pub const EXIT_FAILURE: u8 = 1;
/// Bad arguments: nothing was started.
pub const EXIT_USAGE: u8 = 2;

/// A bad argument found after parsing (a value the library refuses, or a
/// combination of flags): the binary reports it as a usage error and exits
/// with [`EXIT_USAGE`]. The message names the flag.
///
/// ```
/// let e = redial_cli::UsageError("--connect-timeout: must be above zero".into());
/// assert!(e.to_string().starts_with("--connect-timeout"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// The error of starting a connection: an option the library refuses is a
/// [`UsageError`] (validation runs before anything starts); anything else
/// is a runtime failure.
pub fn start_error(e: redial::ConnectError) -> anyhow::Error {
    match e {
        redial::ConnectError::Options(o) => UsageError(o.to_string()).into(),
        other => other.into(),
    }
}
