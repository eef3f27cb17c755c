//! The commands `redial chaos` reads on stdin, one a line: what each one
//! is and how a line is read, with errors that quote the line.

use std::str::FromStr;
use std::time::Duration;

use crate::units::{parse_duration, parse_size};

/// A command typed on stdin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChaosCommand {
    /// `reset`: RST every connection.
    Reset,
    /// `close`: FIN every connection.
    Close,
    /// `refuse`: stop listening.
    Refuse,
    /// `accept`: listen again.
    Accept,
    /// `blackhole`: nothing moves.
    Blackhole,
    /// `heal`: every fault off.
    Heal,
    /// `latency DELAY [JITTER]`.
    Latency(Duration, Duration),
    /// `bandwidth BYTES` per second (0 = unlimited).
    Bandwidth(u64),
    /// `slice BYTES [DELAY]`.
    Slice(u64, Duration),
    /// `cut-after BYTES`.
    CutAfter(u64),
    /// `slow-close DELAY`.
    SlowClose(Duration),
    /// `random`: a random fault.
    Random,
    /// `stats`: counters to stdout.
    Stats,
    /// `help`.
    Help,
    /// `quit`: stop the proxy.
    Quit,
}

/// The commands, for `help`.
pub const COMMANDS_HELP: &str = "commands: reset | close | refuse | accept | blackhole | heal | \
latency DELAY [JITTER] | bandwidth BYTES | slice BYTES [DELAY] | cut-after BYTES | \
slow-close DELAY | random | stats | help | quit";

impl FromStr for ChaosCommand {
    type Err = String;

    fn from_str(line: &str) -> Result<Self, String> {
        let mut words = line.split_whitespace();
        let Some(cmd) = words.next() else {
            return Err("empty command".into());
        };
        let args: Vec<&str> = words.collect();
        let dur = |i: usize| -> Result<Duration, String> {
            args.get(i)
                .ok_or_else(|| format!("`{line}`: {cmd} needs a duration, as in 50ms"))
                .and_then(|a| parse_duration(a).map_err(|e| format!("`{line}`: {e}")))
        };
        let size = |i: usize| -> Result<u64, String> {
            args.get(i)
                .ok_or_else(|| format!("`{line}`: {cmd} needs a size, as in 64KiB"))
                .and_then(|a| parse_size(a).map_err(|e| format!("`{line}`: {e}")))
        };
        let opt_dur = |i: usize| {
            if args.len() > i {
                dur(i)
            } else {
                Ok(Duration::ZERO)
            }
        };
        let max_args = |n: usize| {
            if args.len() > n {
                Err(format!("`{line}`: too many arguments for {cmd}"))
            } else {
                Ok(())
            }
        };
        let c = match cmd.to_ascii_lowercase().as_str() {
            "reset" | "rst" => ChaosCommand::Reset,
            "close" | "fin" => ChaosCommand::Close,
            "refuse" => ChaosCommand::Refuse,
            "accept" => ChaosCommand::Accept,
            "blackhole" => ChaosCommand::Blackhole,
            "heal" => ChaosCommand::Heal,
            "random" => ChaosCommand::Random,
            "stats" => ChaosCommand::Stats,
            "help" | "?" => ChaosCommand::Help,
            "quit" | "exit" => ChaosCommand::Quit,
            "latency" => {
                max_args(2)?;
                ChaosCommand::Latency(dur(0)?, opt_dur(1)?)
            }
            "bandwidth" => {
                max_args(1)?;
                ChaosCommand::Bandwidth(size(0)?)
            }
            "slice" => {
                max_args(2)?;
                ChaosCommand::Slice(size(0)?, opt_dur(1)?)
            }
            "cut-after" | "cut" => {
                max_args(1)?;
                ChaosCommand::CutAfter(size(0)?)
            }
            "slow-close" => {
                max_args(1)?;
                ChaosCommand::SlowClose(dur(0)?)
            }
            other => return Err(format!("unknown command `{other}`; {COMMANDS_HELP}")),
        };
        if !matches!(
            c,
            ChaosCommand::Latency(..)
                | ChaosCommand::Bandwidth(_)
                | ChaosCommand::Slice(..)
                | ChaosCommand::CutAfter(_)
                | ChaosCommand::SlowClose(_)
        ) {
            max_args(0)?;
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn commands_parse() {
        let p = |s: &str| s.parse::<ChaosCommand>();
        assert_eq!(p("  heal ").unwrap(), ChaosCommand::Heal);
        assert_eq!(
            p("bandwidth 64KiB").unwrap(),
            ChaosCommand::Bandwidth(65536)
        );
        assert_eq!(
            p("latency 50ms 10ms").unwrap(),
            ChaosCommand::Latency(Duration::from_millis(50), Duration::from_millis(10))
        );
        assert_eq!(
            p("slice 16").unwrap(),
            ChaosCommand::Slice(16, Duration::ZERO)
        );
        assert!(p("reset now").unwrap_err().contains("too many"));
        assert!(p("latency").unwrap_err().contains("needs a duration"));
        assert!(p("explode").unwrap_err().contains("explode"));
        // Durations past the maximum are refused, naming the command.
        for line in [
            "latency 200000000000000d",
            "latency 1ms 400d",
            "slice 1 200000000000000d",
            "slow-close 366d",
        ] {
            let e = p(line).unwrap_err();
            assert!(e.contains(line) && e.contains("maximum of 365d"), "{e}");
        }
        assert!(p("").is_err());
    }
}
