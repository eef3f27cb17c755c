//! Durations and sizes as people write them: `250ms`, `5s`, `1m30s`,
//! `64KiB`, `1MiB`, `1000`; and the short forms the tool prints back.
//!
//! Parsing never panics, whatever the input (a fuzz target relies on it),
//! and every error quotes the input. Durations go up to [`MAX_DURATION`]
//! (365 days): anything longer is refused, so no timer the tool sets can
//! overflow a clock.
//!
//! ```
//! use redial_cli::units::{parse_duration, parse_size};
//! use std::time::Duration;
//!
//! assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
//! assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
//! assert_eq!(parse_size("64KiB").unwrap(), 64 * 1024);
//! assert_eq!(parse_size("1000").unwrap(), 1000);
//! assert!(parse_duration("5 parsecs").unwrap_err().to_string().contains("5 parsecs"));
//! ```

use std::fmt;
use std::time::Duration;

/// A duration or size that could not be read. The message quotes the input
/// and says what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitError {
    input: String,
    problem: String,
}

impl UnitError {
    fn new(input: &str, problem: impl Into<String>) -> Self {
        UnitError {
            input: input.to_string(),
            problem: problem.into(),
        }
    }

    /// The text that was rejected.
    pub fn input(&self) -> &str {
        &self.input
    }
}

impl fmt::Display for UnitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: {}", self.input, self.problem)
    }
}

impl std::error::Error for UnitError {}

/// The longest duration any flag or command takes: 365 days.
///
/// ```
/// use redial_cli::units::{parse_duration, MAX_DURATION};
///
/// assert_eq!(parse_duration("365d").unwrap(), MAX_DURATION);
/// let e = parse_duration("366d").unwrap_err().to_string();
/// assert!(e.contains("longer than the maximum of 365d"), "{e}");
/// ```
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 86_400);

const DURATION_HELP: &str =
    "expected a number with a unit (ns, us, ms, s, m, h or d), as in 250ms, 5s, 1m, 1h or 1m30s";
const SIZE_HELP: &str = "expected a byte count, as in 1000, 64KiB, 1MiB or 1.5MB \
     (units: B, KB, KiB, MB, MiB, GB, GiB, TB, TiB, PB, PiB)";

/// Whether `s` is only digits and dots: a number without a unit.
fn is_bare_number(s: &str) -> bool {
    s.chars().all(|c| c.is_ascii_digit() || c == '.')
}

/// `s` with every run of digits replaced by `1`: if that parses and `s`
/// does not, `s` failed only for its size.
fn with_small_numbers(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_digits = false;
    for c in s.chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push('1');
            }
            in_digits = true;
        } else {
            out.push(c);
            in_digits = false;
        }
    }
    out
}

/// A non-negative duration as `jiff`'s friendly format reads it, with a
/// day counted as 24 hours; `None` for anything else.
fn friendly(s: &str) -> Option<Duration> {
    let span: jiff::Span = s.parse().ok()?;
    let d = span
        .to_duration(jiff::SpanRelativeTo::days_are_24_hours())
        .ok()?;
    Duration::try_from(d).ok()
}

/// Reads a duration: one or more `<number><unit>` parts (`jiff`'s friendly
/// format: `250ms`, `1m30s`, `1.5s`, `2h`, `1d`, `1 day 2h`), with a day
/// counted as 24 hours. On top of it: a bare `0` is zero; any other bare
/// number is refused, since `250` could mean milliseconds or seconds;
/// negative durations and anything above [`MAX_DURATION`] are refused.
///
/// # Errors
///
/// A [`UnitError`] quoting the input: empty, no unit, unknown unit,
/// negative, or longer than [`MAX_DURATION`].
///
/// ```
/// use redial_cli::units::parse_duration;
/// use std::time::Duration;
///
/// assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
/// assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
/// assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
/// assert!(parse_duration("250").is_err());
/// ```
pub fn parse_duration(input: &str) -> Result<Duration, UnitError> {
    let s = input.trim();
    if s.is_empty() || s.starts_with(['-', '+']) {
        return Err(UnitError::new(input, DURATION_HELP));
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if is_bare_number(s) {
        return Err(UnitError::new(
            input,
            format!("no unit: write {s}ms or {s}s"),
        ));
    }
    // `.5s` is `0.5s`.
    let s = if s.starts_with('.') {
        format!("0{s}")
    } else {
        s.to_string()
    };
    let d = match friendly(&s) {
        Some(d) => d,
        None if friendly(&with_small_numbers(&s)).is_some() => {
            return Err(UnitError::new(input, "longer than the maximum of 365d"))
        }
        None => return Err(UnitError::new(input, DURATION_HELP)),
    };
    if d > MAX_DURATION {
        return Err(UnitError::new(input, "longer than the maximum of 365d"));
    }
    Ok(d)
}

/// Reads a byte count (`parse-size`): a bare number (bytes), or a number
/// with `B`, `KB`, `MB`, `GB` (powers of 1000) or `KiB`, `MiB`, `GiB`
/// (powers of 1024). On top of it: `K`, `M`, `G`, `T` and `P` alone mean
/// 1024-based, as in most tools. Units are not case sensitive and may
/// follow a space; fractions round down to a byte.
///
/// # Errors
///
/// A [`UnitError`] quoting the input: empty, unknown unit, or above
/// `u64::MAX`.
///
/// ```
/// use redial_cli::units::parse_size;
///
/// assert_eq!(parse_size("1MiB").unwrap(), 1 << 20);
/// assert_eq!(parse_size("1MB").unwrap(), 1_000_000);
/// assert_eq!(parse_size("1.5 KiB").unwrap(), 1536);
/// assert_eq!(parse_size("2K").unwrap(), 2048);
/// assert!(parse_size("12 parsecs").is_err());
/// ```
pub fn parse_size(input: &str) -> Result<u64, UnitError> {
    let s = input.trim();
    // A lone prefix letter is binary (`64K` = 64KiB).
    let binary = s.chars().last().is_some_and(|c| "kKmMgGtTpP".contains(c))
        && s.len() > 1
        && s[..s.len() - 1].ends_with(|c: char| c.is_ascii_digit() || c == ' ');
    let s = if binary {
        format!("{s}i")
    } else {
        s.to_string()
    };
    // parse-size reads `1e3` and `1_000`: people do not write sizes so.
    if s.contains(['e', 'E', '_']) && !s.ends_with(['b', 'B']) {
        return Err(UnitError::new(input, SIZE_HELP));
    }
    parse_size::Config::new()
        .parse_size(&s)
        .map_err(|e| match e {
            parse_size::Error::PosOverflow => UnitError::new(input, "too large"),
            _ => UnitError::new(input, SIZE_HELP),
        })
}

/// [`parse_size()`] for something that must fit in memory (a buffer).
///
/// # Errors
///
/// As [`parse_size()`], or when the count does not fit a `usize`.
///
/// ```
/// assert_eq!(redial_cli::units::parse_size_usize("4KiB").unwrap(), 4096);
/// ```
pub fn parse_size_usize(input: &str) -> Result<usize, UnitError> {
    let n = parse_size(input)?;
    usize::try_from(n).map_err(|_| UnitError::new(input, "too large for this machine"))
}

/// Reads a backoff range `INITIAL..MAX`, as in `100ms..30s`. A single
/// duration means the same delay every time (`1s` = `1s..1s`).
///
/// # Errors
///
/// A [`UnitError`] quoting the input when either side is not a duration,
/// the initial delay is zero, or it is above the maximum.
///
/// ```
/// use redial_cli::units::parse_backoff;
/// use std::time::Duration;
///
/// let (lo, hi) = parse_backoff("50ms..2s").unwrap();
/// assert_eq!((lo, hi), (Duration::from_millis(50), Duration::from_secs(2)));
/// assert!(parse_backoff("2s..50ms").is_err());
/// ```
pub fn parse_backoff(input: &str) -> Result<(Duration, Duration), UnitError> {
    let (a, b) = input.split_once("..").unwrap_or((input, input));
    let side = |s: &str| {
        parse_duration(s).map_err(|e| {
            UnitError::new(
                input,
                format!(
                    "expected INITIAL..MAX as in 100ms..30s; `{}`: {}",
                    e.input().trim(),
                    e.problem
                ),
            )
        })
    };
    let (lo, hi) = (side(a)?, side(b)?);
    if lo.is_zero() {
        return Err(UnitError::new(
            input,
            "the initial delay must be above zero",
        ));
    }
    if lo > hi {
        return Err(UnitError::new(
            input,
            "the initial delay is above the maximum",
        ));
    }
    Ok((lo, hi))
}

/// A duration the way a person reads it: `850us`, `48ms`, `1.99s`, `2m03s`,
/// `1h05m`.
///
/// ```
/// use redial_cli::units::format_duration;
/// use std::time::Duration;
///
/// assert_eq!(format_duration(Duration::from_millis(48)), "48ms");
/// assert_eq!(format_duration(Duration::from_millis(1990)), "1.99s");
/// assert_eq!(format_duration(Duration::from_secs(123)), "2m03s");
/// ```
pub fn format_duration(d: Duration) -> String {
    let us = d.as_micros();
    if us < 1_000 {
        format!("{us}us")
    } else if us < 1_000_000 {
        format!("{}ms", us / 1_000)
    } else if us < 60_000_000 {
        format!("{:.2}s", d.as_secs_f64())
    } else if us < 3_600_000_000 {
        let s = d.as_secs();
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        let m = d.as_secs() / 60;
        format!("{}h{:02}m", m / 60, m % 60)
    }
}

/// A byte count with a binary unit: `512 B`, `1.5 KiB`, `3.2 MiB`.
///
/// ```
/// use redial_cli::units::format_size;
///
/// assert_eq!(format_size(512), "512 B");
/// assert_eq!(format_size(1536), "1.5 KiB");
/// ```
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    format!("{v:.1} {}", UNITS[i])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn durations_people_write() {
        let ms = Duration::from_millis;
        for (s, d) in [
            ("250ms", ms(250)),
            ("5s", ms(5000)),
            ("1m", ms(60_000)),
            ("1h", ms(3_600_000)),
            ("1m30s", ms(90_000)),
            ("1.5s", ms(1500)),
            (".5s", ms(500)),
            ("100us", Duration::from_micros(100)),
            ("10ns", Duration::from_nanos(10)),
            (" 20ms ", ms(20)),
            ("0", Duration::ZERO),
            ("0s", Duration::ZERO),
        ] {
            assert_eq!(parse_duration(s).unwrap(), d, "{s}");
        }
    }

    #[test]
    fn bad_durations_name_the_input() {
        assert!(parse_duration("250")
            .unwrap_err()
            .to_string()
            .contains("write 250ms or 250s"));
        for s in [
            "",
            "250",
            "5 parsecs",
            "ms",
            "1.2.3s",
            "s5",
            "-1s",
            "1e3s",
            "5x",
        ] {
            let e = parse_duration(s).unwrap_err();
            assert!(e.to_string().contains(&format!("`{s}`")), "{s}: {e}");
        }
        for s in [
            "999999999999999999999999999999d",
            "99999999999999999999999h",
            "200000000000000d",
            "366d",
            "365d1ns",
            "8761h",
        ] {
            let e = parse_duration(s).unwrap_err().to_string();
            assert!(e.contains("maximum of 365d"), "{s}: {e}");
        }
        assert_eq!(parse_duration("8760h").unwrap(), MAX_DURATION);
    }

    #[test]
    fn sizes_people_write() {
        for (s, n) in [
            ("1000", 1000),
            ("64KiB", 65536),
            ("64kib", 65536),
            ("1MiB", 1 << 20),
            ("1MB", 1_000_000),
            ("2K", 2048),
            ("1.5KiB", 1536),
            ("10 B", 10),
            ("1GiB", 1 << 30),
        ] {
            assert_eq!(parse_size(s).unwrap(), n, "{s}");
        }
    }

    #[test]
    fn bad_sizes_name_the_input() {
        for s in ["", "KiB", "12 parsecs", "1KiB2", "-5", "1..2"] {
            let e = parse_size(s).unwrap_err();
            assert!(e.to_string().contains(&format!("`{s}`")), "{s}: {e}");
        }
        assert!(parse_size("99999999999TiB").is_err());
        assert_eq!(parse_size("2PiB").unwrap(), 2 << 50);
    }

    #[test]
    fn backoff_ranges() {
        assert_eq!(
            parse_backoff("1s").unwrap(),
            (Duration::from_secs(1), Duration::from_secs(1))
        );
        assert!(parse_backoff("0s..1s").is_err());
        let e = parse_backoff("5..10s").unwrap_err().to_string();
        assert!(e.contains("`5..10s`"), "{e}");
    }

    #[test]
    fn formats() {
        assert_eq!(format_duration(Duration::from_micros(850)), "850us");
        assert_eq!(format_duration(Duration::from_secs(3900)), "1h05m");
        assert_eq!(format_size(3 * 1024 * 1024 + 200 * 1024), "3.2 MiB");
    }
}
