//! `redial watch --json` reports the state changes of an endpoint the test
//! stops and starts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::TcpListener;
use std::time::Duration;

use serde_json::Value;
use support::Redial;

const T: Duration = Duration::from_secs(10);

fn event(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON: {line}: {e}"))
}

fn is(kind: &'static str) -> impl Fn(&str) -> bool {
    move |line| event(line)["event"] == kind
}

#[test]
fn json_events_follow_a_server_that_stops_and_starts() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let mut redial = Redial::spawn(&["watch", &addr, "--json", "--backoff", "20ms..100ms"]);

    let (conn, _) = listener.accept().unwrap();
    let up = event(&redial.stdout.wait_for("connected", T, is("connected")));
    assert_eq!(up["endpoint"], addr.as_str());
    assert_eq!(up["pool"], addr.as_str());
    assert_eq!(up["generation"], 1);
    assert!(up["time"].as_str().unwrap().ends_with('Z'));

    // The listener goes first: a lost connection is retried at once, and
    // must find nobody listening.
    drop(listener);
    drop(conn);
    let reset = event(&redial.stdout.wait_for("reset", T, is("reset")));
    assert_eq!(reset["reason"], "peer closed the connection");
    assert!(reset["uptime_ms"].is_u64());
    let failed = event(
        &redial
            .stdout
            .wait_for("connect_failed", T, is("connect_failed")),
    );
    assert!(
        failed["error"].as_str().unwrap().contains("refused"),
        "{failed}"
    );
    assert!(failed["retry_in_ms"].is_u64());

    let listener = TcpListener::bind(&addr).unwrap();
    let (_conn, _) = listener.accept().unwrap();
    let back = event(
        &redial
            .stdout
            .wait_for("connected again", T, is("connected")),
    );
    assert_eq!(back["generation"], 2);
    assert_eq!(back["connection"], up["connection"]);

    redial.signal("-INT");
    let closed = event(&redial.stdout.wait_for("closed", T, is("closed")));
    assert_eq!(closed["reason"], "disconnected by the application");
    let status = redial.wait(T);
    assert!(status.success(), "{status:?}");

    // Every line has exactly the documented keys, in the documented order.
    let kinds: Vec<String> = redial
        .stdout
        .seen
        .iter()
        .map(|line| matches_schema(line))
        .collect();
    for kind in [
        "connecting",
        "connected",
        "reset",
        "connect_failed",
        "closed",
    ] {
        assert!(kinds.iter().any(|k| k == kind), "no {kind} in {kinds:?}");
    }
}

#[test]
fn max_lifetime_replaces_the_connection_and_says_so() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    // Accept and hold every connection: the old one closes on its own.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });
    let mut redial = Redial::spawn(&["watch", &addr, "--json", "--max-lifetime", "300ms"]);
    let up = event(&redial.stdout.wait_for("connected", T, is("connected")));
    assert_eq!(up["generation"], 1);
    let recycled = event(&redial.stdout.wait_for("recycled", T, is("recycled")));
    assert_eq!(recycled["generation"], 1);
    assert!(recycled["uptime_ms"].as_u64().unwrap() >= 270, "{recycled}");
    let next = event(&redial.stdout.wait_for("the new one", T, is("connected")));
    assert_eq!(next["generation"], 2);
    assert_eq!(next["connection"], up["connection"]);
    redial.signal("-INT");
    let status = redial.wait(T);
    assert!(status.success(), "{status:?}");
    let lines = redial.stdout.rest(Duration::from_secs(1));
    assert!(!lines.iter().any(|l| is("reset")(l)), "{lines:?}");
    for line in &lines {
        matches_schema(line);
    }
}

/// Checks `line` against `redial_cli::watch::EVENT_FIELDS`; returns its kind.
fn matches_schema(line: &str) -> String {
    use redial_cli::watch::EVENT_FIELDS;
    let v: serde_json::Map<String, Value> =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("not an object: {line}: {e}"));
    let kind = v["event"].as_str().unwrap().to_string();
    let fields = |k: &str| EVENT_FIELDS.iter().find(|(n, _)| *n == k).map(|(_, f)| *f);
    let mut want: Vec<&str> = fields("*").unwrap().to_vec();
    want.extend(fields(&kind).unwrap_or_else(|| panic!("undocumented event {kind}: {line}")));
    let got: Vec<&str> = v.keys().map(String::as_str).collect();
    assert_eq!(got, want, "{line}");
    kind
}

#[test]
fn bad_line_in_the_endpoint_file_is_a_usage_error() {
    let dir = std::env::temp_dir().join(format!("redial-watch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("endpoints.txt");
    std::fs::write(&file, "# cache\n127.0.0.1:11211\nlocalhost:http\n").unwrap();
    let out = assert_cmd::Command::new(support::BIN)
        .args(["watch", "--file", file.to_str().unwrap()])
        .timeout(T)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("endpoints.txt:3") && err.contains("localhost:http"),
        "{err}"
    );
}
