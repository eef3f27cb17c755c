//! Where text goes and how it looks: state lines on stderr (with a
//! timestamp), colour by the shared rules (`NO_COLOR`, `CLICOLOR`,
//! `CLICOLOR_FORCE`, terminal or not) through `anstream` and `anstyle`.
//!
//! Data (what a server sent, tables, JSON) goes to stdout through the
//! callers; this module is for the lines about what is happening.

pub mod table;

use std::io::Write;
use std::time::{Duration, Instant, SystemTime};

/// Whether colour is wanted for a stream, by the rules command-line tools
/// share (through `anstream`): `CLICOLOR_FORCE` forces it; otherwise the
/// stream must be a terminal, `NO_COLOR` (<https://no-color.org>) unset and
/// `CLICOLOR` not `0`.
///
/// ```
/// // Under `cargo test` stderr is captured, so no colour.
/// let _ = redial_cli::output::colour_wanted(&std::io::stderr());
/// ```
pub fn colour_wanted(stream: &impl anstream::stream::RawStream) -> bool {
    anstream::AutoStream::choice(stream) != anstream::ColorChoice::Never
}

/// ANSI colours (`anstyle`), or plain text when colour is off.
///
/// ```
/// use redial_cli::output::Paint;
///
/// assert_eq!(Paint::plain().red("reset"), "reset");
/// assert_eq!(Paint::new(true).green("back"), "\x1b[32mback\x1b[0m");
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Paint {
    on: bool,
}

impl Paint {
    /// Colour on or off.
    pub fn new(on: bool) -> Self {
        Paint { on }
    }

    /// Never colours.
    pub fn plain() -> Self {
        Paint { on: false }
    }

    /// Colours by [`colour_wanted`] for stderr.
    pub fn stderr() -> Self {
        Paint::new(colour_wanted(&std::io::stderr()))
    }

    /// Colours by [`colour_wanted`] for stdout.
    pub fn stdout() -> Self {
        Paint::new(colour_wanted(&std::io::stdout()))
    }

    /// Whether this paints at all.
    pub fn is_on(&self) -> bool {
        self.on
    }

    fn wrap(&self, style: anstyle::Style, s: &str) -> String {
        if self.on {
            format!("{style}{s}{style:#}")
        } else {
            s.to_string()
        }
    }

    /// Red: something broke.
    pub fn red(&self, s: &str) -> String {
        self.wrap(anstyle::AnsiColor::Red.on_default(), s)
    }
    /// Green: something came back.
    pub fn green(&self, s: &str) -> String {
        self.wrap(anstyle::AnsiColor::Green.on_default(), s)
    }
    /// Yellow: a fault was switched, a warning.
    pub fn yellow(&self, s: &str) -> String {
        self.wrap(anstyle::AnsiColor::Yellow.on_default(), s)
    }
    /// Dim: timestamps and details.
    pub fn dim(&self, s: &str) -> String {
        self.wrap(anstyle::Style::new().dimmed(), s)
    }
    /// Bold: headings.
    pub fn bold(&self, s: &str) -> String {
        self.wrap(anstyle::Style::new().bold(), s)
    }
}

/// Writes one line to stderr. Errors (a closed stderr) are ignored: a
/// status line is never worth failing for.
pub fn status(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
}

/// Time since a start, as the demo prints it: `  2.01s`.
///
/// ```
/// let clock = redial_cli::output::Elapsed::start();
/// assert!(clock.stamp().trim_start().ends_with('s'));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Elapsed {
    start: Instant,
}

impl Elapsed {
    /// Starts counting now.
    pub fn start() -> Self {
        Elapsed {
            start: Instant::now(),
        }
    }

    /// Starts counting at `start`.
    pub fn since(start: Instant) -> Self {
        Elapsed { start }
    }

    /// Time since the start.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Time from the start to `at`.
    pub fn at(&self, at: Instant) -> Duration {
        at.saturating_duration_since(self.start)
    }

    /// `elapsed()` as a fixed-width stamp, `  2.01s`.
    pub fn stamp(&self) -> String {
        Self::format(self.elapsed())
    }

    /// A duration as a fixed-width stamp.
    pub fn format(d: Duration) -> String {
        format!("{:>6.2}s", d.as_secs_f64())
    }
}

/// The UTC time of day with milliseconds, `14:03:27.512`, for the state
/// lines of long-running commands.
///
/// ```
/// let t = redial_cli::output::wall_clock();
/// assert_eq!(t.len(), 12);
/// assert_eq!(&t[2..3], ":");
/// ```
pub fn wall_clock() -> String {
    // `2025-01-31T14:03:27.512Z` -> `14:03:27.512`
    rfc3339(SystemTime::now())[11..23].to_string()
}

/// A state line with the wall-clock stamp, dimmed when painting.
pub fn stamped(paint: Paint, msg: &str) {
    status(&format!("{} {msg}", paint.dim(&wall_clock())));
}

/// A time as RFC 3339 in UTC with milliseconds, `2025-01-31T14:03:27.512Z`.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
/// assert_eq!(redial_cli::output::rfc3339(t), "2023-11-14T22:13:20.123Z");
/// ```
pub fn rfc3339(t: SystemTime) -> String {
    // Before 1970 or past 9999 cannot come from a clock this tool reads.
    let t = jiff::Timestamp::try_from(t).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// The wall-clock time of a monotonic `Instant` (as events carry).
pub fn system_time_of(at: Instant) -> SystemTime {
    let now = Instant::now();
    let sys = SystemTime::now();
    match now.checked_duration_since(at) {
        Some(ago) => sys.checked_sub(ago).unwrap_or(sys),
        None => sys + at.duration_since(now),
    }
}
