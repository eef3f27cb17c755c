//! The soak's command line: how long it runs, how many connections in how
//! many pools, the frame rate and the seed of the fault schedule.

use std::time::Duration;

/// The longest run `--minutes` / `--seconds` take: 7 days.
pub const MAX_RUN: Duration = Duration::from_secs(7 * 24 * 3600);

/// What `--help` and a bad flag print.
pub const USAGE: &str =
    "usage: redial-soak [--minutes N | --seconds N] [--connections N] [--pools N] \
                 [--rate FRAMES_PER_S] [--seed N]";

#[derive(Debug, Clone)]
pub struct Args {
    pub duration: Duration,
    pub connections: usize,
    pub pools: usize,
    pub rate: u64,
    pub seed: u64,
}

impl Args {
    /// Connections in each pool (the remainder of an uneven split is left
    /// out).
    pub fn per_pool(&self) -> usize {
        self.connections / self.pools
    }
}

/// The process's arguments; `Err("")` for `--help`, else the reason.
pub fn parse_args() -> Result<Args, String> {
    parse_args_from(std::env::args().skip(1))
}

fn parse_args_from(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut args = Args {
        duration: Duration::from_secs(60),
        connections: 1000,
        pools: 4,
        rate: 4000,
        seed: 0x50A4,
    };
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            return Err(String::new());
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let n: u64 = value
            .parse()
            .map_err(|_| format!("{flag}: {value:?} is not a whole number"))?;
        match flag.as_str() {
            "--minutes" | "--seconds" => {
                let secs = if flag == "--minutes" {
                    n.saturating_mul(60)
                } else {
                    n
                };
                if secs > MAX_RUN.as_secs() {
                    return Err(format!(
                        "{flag} {value}: longer than the longest run, 7 days"
                    ));
                }
                args.duration = Duration::from_secs(secs);
            }
            "--connections" => args.connections = n as usize,
            "--pools" => args.pools = n as usize,
            "--rate" => args.rate = n,
            "--seed" => args.seed = n,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if args.pools == 0 || args.connections < args.pools {
        return Err("need at least one pool and one connection per pool".into());
    }
    if args.duration.is_zero() {
        return Err("the run needs a duration above zero".into());
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, String> {
        parse_args_from(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn run_lengths_past_the_maximum_are_refused_not_overflowed() {
        for args in [
            &["--minutes", "400000000000000000"][..],
            &["--minutes", "10081"],
            &["--seconds", "604801"],
        ] {
            let e = parse(args).err().unwrap_or_default();
            assert!(e.contains(args[0]) && e.contains("7 days"), "{args:?}: {e}");
        }
        let a = parse(&["--minutes", "10080"]).map(|a| a.duration);
        assert_eq!(a, Ok(MAX_RUN));
    }
}
