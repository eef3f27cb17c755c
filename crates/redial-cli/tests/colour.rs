//! Colour follows the shared rules: off when stderr is not a terminal,
//! forced by `CLICOLOR_FORCE`, off with `CLICOLOR=0`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::TcpListener;
use std::time::Duration;

/// `redial connect` to a refused loopback port, giving up at once; returns
/// its stderr.
fn stderr_with(env: &[(&str, &str)]) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    let mut cmd = assert_cmd::Command::new(support::BIN);
    cmd.args(["connect", &addr, "--max-attempts", "1"])
        .env_remove("NO_COLOR")
        .env_remove("CLICOLOR")
        .env_remove("CLICOLOR_FORCE")
        .write_stdin("")
        .timeout(Duration::from_secs(20));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn colour_only_when_forced_on_a_pipe() {
    let plain = stderr_with(&[]);
    assert!(plain.contains("failed"), "{plain}");
    assert!(!plain.contains('\x1b'), "colour on a pipe:\n{plain:?}");

    let forced = stderr_with(&[("CLICOLOR_FORCE", "1")]);
    assert!(
        forced.contains("\x1b["),
        "CLICOLOR_FORCE=1 gives colour:\n{forced:?}"
    );

    let off = stderr_with(&[("CLICOLOR", "0")]);
    assert!(!off.contains('\x1b'), "CLICOLOR=0 gives none:\n{off:?}");
}
