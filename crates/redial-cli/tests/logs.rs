//! The library's `tracing` logs, printed by the real binary on stderr:
//! `RUST_LOG` and `-v` / `-q` choose them, and stdout stays data only.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::TcpListener;
use std::time::Duration;

/// A loopback port nobody listens on: connects to it are refused.
fn refused_port() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    addr
}

/// Runs `redial connect` against a refused port, giving up after three
/// attempts; returns (exit code, stdout, stderr).
fn connect_refused(env_log: Option<&str>, flags: &[&str]) -> (Option<i32>, String, String) {
    let addr = refused_port();
    let mut cmd = assert_cmd::Command::new(support::BIN);
    cmd.args(flags)
        .args([
            "connect",
            &addr,
            "--max-attempts",
            "3",
            "--backoff",
            "10ms..20ms",
        ])
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .write_stdin("")
        .timeout(Duration::from_secs(20));
    if let Some(filter) = env_log {
        cmd.env("RUST_LOG", filter);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn debug_lines(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.contains(" DEBUG ")).collect()
}

#[test]
fn rust_log_debug_shows_each_attempt_on_stderr_and_nothing_on_stdout() {
    let (code, out, err) = connect_refused(Some("debug"), &[]);
    assert_eq!(code, Some(1), "gave up after 3 attempts:\n{err}");
    assert_eq!(out, "", "stdout carries data only");
    let debug = debug_lines(&err);
    for attempt in 1..=3 {
        let tag = format!("attempt={attempt}");
        assert!(
            debug
                .iter()
                .any(|l| l.contains("connect failed") && l.contains(&tag)),
            "no library log of failed attempt {attempt}:\n{err}"
        );
    }
    // Stamped like the command's own lines: `14:03:27.512 DEBUG ...`.
    for line in &debug {
        let stamp = line.split(' ').next().unwrap();
        assert!(
            stamp.len() == 12 && &stamp[2..3] == ":" && &stamp[8..9] == ".",
            "{line}"
        );
    }
    // The library's span names the endpoint.
    assert!(debug.iter().all(|l| l.contains("redial")), "{err}");
    // The command's own lines are still there.
    assert!(err.contains("attempt 3 of 3"), "{err}");
}

#[test]
fn without_rust_log_the_default_hides_debug_and_v_flags_raise_it() {
    let (code, out, err) = connect_refused(None, &[]);
    assert_eq!(code, Some(1));
    assert_eq!(out, "");
    assert!(
        debug_lines(&err).is_empty(),
        "debug logs by default:\n{err}"
    );
    assert!(err.contains("attempt 3 of 3"), "{err}");

    let (code, out, err) = connect_refused(None, &["-vv"]);
    assert_eq!(code, Some(1));
    assert_eq!(out, "");
    assert!(
        debug_lines(&err)
            .iter()
            .any(|l| l.contains("connect failed")),
        "-vv shows debug logs:\n{err}"
    );
}

#[test]
fn q_lowers_the_level_below_rust_log() {
    let (code, out, err) = connect_refused(Some("debug"), &["-q"]);
    assert_eq!(code, Some(1));
    assert_eq!(out, "");
    assert!(debug_lines(&err).is_empty(), "-q hides debug logs:\n{err}");
    // -q quiets logs, not the command's own report of what happened.
    assert!(err.contains("gave up after 3 failed attempts"), "{err}");
}
