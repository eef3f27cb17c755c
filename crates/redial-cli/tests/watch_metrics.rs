//! `redial watch --metrics ADDR`: the real binary answers Prometheus
//! scrapes over HTTP while the test stops and starts the server, and the
//! scraped counters move as the JSON events say.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::Redial;

const T: Duration = Duration::from_secs(20);

/// One sample of the text format: name, labels, value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the Prometheus text format (exposition format 0.0.4): `#`
/// lines are comments, every other line is `name{k="v",...} value`.
fn parse(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|e| panic!("bad value in {line}: {e}")),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series, BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("no }}: {line}"));
                (name, parse_labels(body))
            }
        };
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name {name:?}"
        );
        out.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    out
}

/// `k="v",k2="v2"` with the format's escapes (`\"`, `\\`, `\n`).
fn parse_labels(body: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut chars = body.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
        if key.is_empty() {
            break;
        }
        assert_eq!(chars.next(), Some('"'), "label {key} not quoted in {body}");
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(c) => value.push(c),
                    None => panic!("dangling escape in {body}"),
                },
                '"' => break,
                c => value.push(c),
            }
        }
        labels.insert(key.trim_start_matches(',').to_string(), value);
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    labels
}

/// GET /metrics over a fresh connection; the parsed body.
fn scrape(addr: &str) -> Vec<Sample> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    parse(body)
}

/// The sum of `name` over the samples whose labels include `with`.
fn sum(samples: &[Sample], name: &str, with: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            with.iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

/// Scrapes until `cond` holds; the scrape that made it hold.
fn scrape_until(addr: &str, what: &str, cond: impl Fn(&[Sample]) -> bool) -> Vec<Sample> {
    let start = Instant::now();
    loop {
        let s = scrape(addr);
        if cond(&s) {
            return s;
        }
        assert!(
            start.elapsed() < T,
            "no scrape with {what} within {T:?}: {s:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn scrapes_follow_a_server_that_goes_away_and_comes_back() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let ep = listener.local_addr().unwrap().to_string();
    let ep = ep.as_str();
    let mut redial = Redial::spawn(&[
        "watch",
        ep,
        "--json",
        "--backoff",
        "20ms..100ms",
        "--metrics",
        "127.0.0.1:0",
    ]);
    let line = redial.stderr.wait_contains("metrics: http://", T);
    let metrics = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.strip_suffix("/metrics"))
        .unwrap()
        .to_string();
    let m = metrics.as_str();
    let mine = [("endpoint", ep), ("pool", ep)];
    let connected = [("endpoint", ep), ("state", "connected")];

    let (conn, _) = listener.accept().unwrap();
    // The gauges are updated one after the other: wait for both.
    let s = scrape_until(m, "one connection up and its pool member counted", |s| {
        sum(s, "redial_connections", &connected) == 1.0
            && sum(s, "redial_pool_members", &[("pool", ep)]) == 1.0
    });
    assert_eq!(sum(&s, "redial_connections_opened_total", &mine), 1.0);
    assert_eq!(sum(&s, "redial_connection_losses_total", &mine), 0.0);

    // Away: the listener goes first, so the reconnects are refused.
    drop(listener);
    drop(conn);
    let s = scrape_until(m, "a loss and refused attempts", |s| {
        sum(s, "redial_connection_losses_total", &mine) == 1.0
            && sum(
                s,
                "redial_connect_failures_total",
                &[("endpoint", ep), ("reason", "refused")],
            ) >= 2.0
    });
    assert_eq!(
        sum(
            &s,
            "redial_connection_losses_total",
            &[("endpoint", ep), ("reason", "peer_closed")]
        ),
        1.0
    );
    assert_eq!(sum(&s, "redial_connections", &connected), 0.0);
    assert_eq!(
        sum(&s, "redial_pool_members_connected", &[("pool", ep)]),
        0.0
    );

    // Back.
    let listener = TcpListener::bind(ep).unwrap();
    let (_conn, _) = listener.accept().unwrap();
    let s = scrape_until(m, "the connection back", |s| {
        sum(s, "redial_connections", &connected) == 1.0
            && sum(s, "redial_connections_opened_total", &mine) == 2.0
    });
    assert_eq!(sum(&s, "redial_downtime_seconds_count", &mine), 1.0);
    assert!(sum(&s, "redial_downtime_seconds_sum", &mine) > 0.0);
    assert_eq!(
        sum(&s, "redial_connection_lifetime_seconds_count", &mine),
        1.0
    );
    let hist_inf = sum(
        &s,
        "redial_connect_duration_seconds_bucket",
        &[("endpoint", ep), ("le", "+Inf")],
    );
    assert_eq!(
        hist_inf,
        sum(&s, "redial_connect_duration_seconds_count", &mine)
    );
    assert!(
        !s.iter().any(|x| x.labels.contains_key("connection")),
        "no connection ids in labels"
    );

    // The events of the whole run, against the last scrape: nothing but
    // the final close happened after it (the connection stays up).
    redial.signal("-INT");
    let status = redial.wait(T);
    assert!(status.success(), "{status:?}");
    let lines = redial.stdout.rest(Duration::from_secs(2));
    let count = |kind: &str| {
        lines
            .iter()
            .filter(|l| serde_json::from_str::<Value>(l).unwrap()["event"] == kind)
            .count() as f64
    };
    assert_eq!(count("closed"), 1.0);
    assert_eq!(
        sum(&s, "redial_connect_attempts_total", &mine),
        count("connecting")
    );
    assert_eq!(
        sum(&s, "redial_connections_opened_total", &mine),
        count("connected")
    );
    assert_eq!(
        sum(&s, "redial_connect_failures_total", &mine),
        count("connect_failed")
    );
    assert_eq!(
        sum(&s, "redial_connection_losses_total", &mine),
        count("reset")
    );
    eprintln!(
        "{}",
        s.iter()
            .filter(|x| x.name.ends_with("_total"))
            .map(|x| format!("{} {:?} {}", x.name, x.labels, x.value))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
