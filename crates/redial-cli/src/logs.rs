//! The command's own log output: the library logs through `tracing`, and
//! this installs the subscriber that prints it, on stderr only, so that
//! logs never mix into the data a command writes on stdout.
//!
//! `RUST_LOG` picks what is printed (`RUST_LOG=debug`,
//! `RUST_LOG=redial=debug`, ...). Without it, the level comes from the
//! command's `-v` / `-q` flags: warnings by default, each `-v` one level
//! more (info, debug, trace), each `-q` one less (error, then nothing).
//! When both are given, `-v` / `-q` set the level and `RUST_LOG`'s
//! per-module directives still apply on top.

use tracing_subscriber::filter::{EnvFilter, LevelFilter};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;

/// Log lines carry the same UTC time of day as the command's own state
/// lines (`14:03:27.512`), so the two read as one timeline.
struct WallClock;

impl FormatTime for WallClock {
    fn format_time(&self, w: &mut Writer<'_>) -> std::fmt::Result {
        w.write_str(&crate::output::wall_clock())
    }
}

/// Installs the stderr subscriber. `level` comes from `-v` / `-q`;
/// `explicit` says whether any was given (then it overrides `RUST_LOG`'s
/// global level). Colour follows stderr: only on a terminal, never with
/// `NO_COLOR`, forced by `CLICOLOR_FORCE`.
///
/// Calling it twice does nothing the second time (the first subscriber
/// stays).
///
/// ```
/// use tracing_subscriber::filter::LevelFilter;
///
/// redial_cli::logs::init(LevelFilter::WARN, false);
/// ```
pub fn init(level: LevelFilter, explicit: bool) {
    let mut filter = EnvFilter::builder()
        .with_default_directive(level.into())
        .from_env_lossy();
    if explicit {
        filter = filter.add_directive(level.into());
    }
    let ansi = crate::output::colour_wanted(&std::io::stderr());
    // Fails only when a subscriber is already installed: keep that one.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_timer(WallClock)
        .with_ansi(ansi)
        .try_init();
}
