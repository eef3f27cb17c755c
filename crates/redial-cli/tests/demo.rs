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
        "0 of 4 connections unbalanced",
    ] {
        assert!(
            stdout.contains(needle),
            "no `{needle}` in stdout:\n{stdout}"
        );
    }
    // The tool's equation, checked here on every row on its own: errors of
    // two connections must not cancel out in the total.
    let mut rows = 0;
    for line in stdout.lines() {
        let mut cells = line.split_whitespace();
        let Some(label) = cells.next() else { continue };
        if !(label.starts_with("pool#") || label == "single" || label == "total") {
            continue;
        }
        let n: Vec<u64> = cells.map(|c| c.parse().unwrap()).collect();
        let [resets, recovered, sent, echoed, handed_back, in_flight, silently] = n[..] else {
            panic!("row {line:?}");
        };
        assert_eq!(sent, echoed + handed_back + in_flight, "{line}\n{stdout}");
        assert_eq!(silently, 0, "{line}\n{stdout}");
        if label == "total" {
            assert!(resets >= 8 && recovered >= 8, "{line}");
        } else {
            rows += 1;
            assert!(resets >= 2 && echoed > 0, "{line}");
        }
    }
    assert_eq!(rows, 4, "{stdout}");
    // Evidence that does not come from redial's counters: on Linux the
    // kernel's acknowledged count of every lost and closed connection was
    // checked against the echoes (an echoed message never acknowledged, or
    // more unacknowledged than a send buffer holds, would be an anomaly
    // and make a row unbalanced).
    if cfg!(target_os = "linux") {
        let line = stdout
            .lines()
            .find(|l| l.starts_with("kernel's word"))
            .unwrap_or_else(|| panic!("no kernel line:\n{stdout}"));
        let checked: u64 = line
            .split(" on ")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .unwrap()
            .parse()
            .unwrap();
        assert!(checked >= 8 + 4, "{line}");
        assert!(line.contains("every echoed message acknowledged"), "{line}");
    }
}
