//! Help, version, and bad arguments rejected before anything starts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let out = assert_cmd::Command::new(support::BIN)
        .args(args)
        .timeout(Duration::from_secs(10))
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_command_has_help_with_an_example_and_exit_codes() {
    for cmd in [&[][..], &["demo"], &["connect"], &["watch"], &["chaos"]] {
        let mut args = cmd.to_vec();
        args.push("--help");
        let (code, out, _) = run(&args);
        assert_eq!(code, Some(0), "{args:?}");
        assert!(out.contains("Examples:"), "{args:?}:\n{out}");
        assert!(out.contains("Exit codes:"), "{args:?}:\n{out}");
        assert!(out.contains("  2  usage error"), "{args:?}:\n{out}");
    }
}

#[test]
fn version() {
    let (code, out, _) = run(&["--version"]);
    assert_eq!(code, Some(0));
    assert_eq!(out.trim(), format!("redial {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn bad_values_are_named_and_exit_2() {
    for (args, needle) in [
        (&["connect", "localhost"][..], "localhost"),
        (&["connect", "127.0.0.1:99999"], "127.0.0.1:99999"),
        (
            &["connect", "127.0.0.1:80", "--idle-timeout", "5parsecs"],
            "5parsecs",
        ),
        (
            &["connect", "127.0.0.1:80", "--connect-timeout", "250"],
            "250ms",
        ),
        (&["connect", "127.0.0.1:80", "--buffer", "12XB"], "12XB"),
        (
            &["connect", "127.0.0.1:80", "--backoff", "2s..1s"],
            "2s..1s",
        ),
        (&["watch", "db:5432", "nohost"], "nohost"),
        (
            &["chaos", "--listen", "nope", "--upstream", "127.0.0.1:9"],
            "nope",
        ),
        (
            &[
                "chaos",
                "--listen",
                "127.0.0.1:0",
                "--upstream",
                "127.0.0.1:0",
            ],
            "port 0",
        ),
        (
            &[
                "chaos",
                "--listen",
                "127.0.0.1:0",
                "--upstream",
                "127.0.0.1:9",
                "--latency",
                "fast",
            ],
            "fast",
        ),
        (
            &[
                "chaos",
                "--listen",
                "127.0.0.1:0",
                "--upstream",
                "127.0.0.1:9",
                "--bandwidth",
                "1 parsec",
            ],
            "1 parsec",
        ),
        (&["demo", "--seconds", "1"], "1"),
    ] {
        let (code, _, err) = run(args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

#[test]
fn runtime_failure_exits_1() {
    // Take a port, then ask chaos to listen on it.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, _, err) = run(&["chaos", "--listen", &addr, "--upstream", "127.0.0.1:9"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!("could not listen on {addr}")),
        "{err}"
    );
}

/// Every duration flag of every command, with the arguments it needs.
fn duration_flags() -> Vec<(Vec<&'static str>, &'static str)> {
    let connect = vec!["connect", "127.0.0.1:9"];
    let watch = vec!["watch", "127.0.0.1:9"];
    let chaos = vec![
        "chaos",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        "127.0.0.1:9",
    ];
    let mut all = Vec::new();
    for flag in [
        "--backoff",
        "--connect-timeout",
        "--idle-timeout",
        "--give-up-after",
    ] {
        all.push((connect.clone(), flag));
    }
    for flag in ["--backoff", "--connect-timeout", "--idle-timeout"] {
        all.push((watch.clone(), flag));
    }
    for flag in [
        "--reset-every",
        "--close-every",
        "--random-every",
        "--latency",
        "--jitter",
        "--slow-close",
        "--blackhole-after",
        "--refuse-after",
    ] {
        all.push((chaos.clone(), flag));
    }
    for (flag, needs) in [
        ("--for", "--blackhole-after"),
        ("--refuse-for", "--refuse-after"),
    ] {
        let mut args = chaos.clone();
        args.extend([needs, "1s"]);
        all.push((args, flag));
    }
    all
}

#[test]
fn durations_past_the_maximum_are_refused_with_exit_2() {
    // Once accepted, 200000000000000d overflowed the clock: the proxy
    // panicked on the first byte, `connect` lost its connection task.
    for (base, flag) in duration_flags() {
        for value in ["200000000000000d", "366d"] {
            let mut args = base.clone();
            args.extend([flag, value]);
            let (code, _, err) = run(&args);
            assert_eq!(code, Some(2), "{args:?}: {err}");
            assert!(
                err.contains(flag) && err.contains(value) && err.contains("maximum of 365d"),
                "{args:?}: {err}"
            );
        }
    }
}

#[test]
fn options_the_library_refuses_are_usage_errors_before_anything_starts() {
    // `--backoff-factor 0.5` used to pass the parser, fail when the
    // connection started, and exit 1 as if at run time.
    for cmd in [&["connect", "127.0.0.1:9"][..], &["watch", "127.0.0.1:9"]] {
        for (flag, value, needle) in [
            ("--backoff-factor", "0.5", "--backoff-factor 0.5"),
            ("--backoff-factor", "NaN", "--backoff-factor NaN"),
            ("--backoff-factor", "inf", "--backoff-factor inf"),
            (
                "--connect-timeout",
                "0",
                "--connect-timeout: must be above zero",
            ),
            ("--idle-timeout", "0s", "--idle-timeout: must be above zero"),
        ] {
            let mut args = cmd.to_vec();
            args.extend([flag, value]);
            let (code, out, err) = run(&args);
            assert_eq!(code, Some(2), "{args:?}: {err}");
            assert!(err.contains(needle), "{args:?}: {err}");
            // Nothing started: no "connecting to" line, no event.
            assert!(!err.contains("connecting"), "{args:?}: {err}");
            assert!(out.is_empty(), "{args:?}: {out}");
        }
    }
}
