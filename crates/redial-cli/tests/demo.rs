//! `redial demo` end to end, on a short schedule.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

#[test]
fn short_demo_ends_with_a_clean_summary() {
    let out = assert_cmd::Command::new(support::BIN)
        .args(["demo", "--seconds", "8", "--seed", "7"])
        .env("NO_COLOR", "1")
        .timeout(Duration::from_secs(30))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    for needle in [
        "reset (peer closed the connection)",
        "reset (peer reset the connection)",
        "connect failed",
        "reset (idle timeout",
        "back after",
        "slow link",
    ] {
        assert!(
            stderr.contains(needle),
            "no `{needle}` in stderr:\n{stderr}"
        );
    }
    assert!(
        !stderr.contains('\x1b'),
        "colour despite NO_COLOR:\n{stderr}"
    );
    for needle in [
        "pool#1",
        "pool#2",
        "pool#3",
        "single",
        "total",
        "lost in flight",
        "lost silently: 0 ",
    ] {
        assert!(
            stdout.contains(needle),
            "no `{needle}` in stdout:\n{stdout}"
        );
    }
    // Every message is accounted for in the total row.
    let total: Vec<u64> = stdout
        .lines()
        .find(|l| l.starts_with("total"))
        .unwrap()
        .split_whitespace()
        .skip(1)
        .map(|n| n.parse().unwrap())
        .collect();
    let [resets, recovered, sent, echoed, handed_back, in_flight] = total[..] else {
        panic!("total row: {total:?}");
    };
    assert!(resets >= 8 && recovered >= 8, "{total:?}");
    assert_eq!(sent, echoed + handed_back + in_flight, "{stdout}");
}
