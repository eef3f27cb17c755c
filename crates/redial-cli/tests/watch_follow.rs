//! `redial watch --follow NAME:PORT --json` prints the members of a name as
//! it changes: the member added for a new address, the one of an address
//! that left draining and closing, and a failed lookup that keeps them.
//!
//! The name is served by a real DNS server. The test runs inside a
//! network namespace of its own (the library's `tests/support/dns.rs`),
//! where it starts dnsmasq on 127.0.0.63, serving `cache.watch.test` from
//! a hosts file it re-reads on SIGHUP, servers on 127.0.0.12 and
//! 127.0.0.13, and the `redial` binary, which resolves the name through the system resolver as
//! any program does. The test moves the name to the other address, stops
//! dnsmasq (the lookup fails, the member stays) and starts it again with
//! both addresses. It prints how long the change took to show in the
//! output.
//!
//! Needs root, `ip` and `dnsmasq`; without them it says why and passes,
//! unless `REDIAL_REQUIRE_SERVERS=1` (set by `.ci/run`), which makes it
//! fail instead.

#![allow(clippy::unwrap_used, clippy::expect_used)]

// The namespace and dnsmasq, shared with the library's DNS test.
#[path = "../../redial/tests/support/dns.rs"]
mod dns;
mod support;

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::time::{Duration, Instant};

use dns::{Dnsmasq, Setup};
use serde_json::Value;
use support::Redial;

/// The name, where its DNS server listens, and how the test finds itself
/// inside the namespace. Addresses of their own, so this test and the
/// library's DNS test can run at the same time without sharing anything.
const DNS: Setup = Setup {
    test: "follow_prints_members_added_and_drained_as_the_name_changes",
    child_dir: "REDIAL_WATCH_FOLLOW_DIR",
    namespace: "redial-watch-dns",
    dns_ip: "127.0.0.63",
    name: NAME,
};
const NAME: &str = "cache.watch.test";
const PORT: u16 = 11311;
const A_IP: &str = "127.0.0.12";
const B_IP: &str = "127.0.0.13";
const T: Duration = Duration::from_secs(30);

#[test]
fn follow_prints_members_added_and_drained_as_the_name_changes() {
    DNS.run(inside);
}

/// A server that accepts and reads every connection to its end.
fn serve(ip: &str) -> SocketAddr {
    let l = TcpListener::bind((ip, PORT)).unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
            });
        }
    });
    addr
}

fn event(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON: {line}: {e}"))
}

/// A line of `kind` about `address` (or, with `connection`, about it).
fn is<'a>(kind: &'a str, field: &'a str, want: Value) -> impl Fn(&str) -> bool + 'a {
    move |line| {
        let e = event(line);
        e["event"] == kind && e[field] == want
    }
}

/// The test proper, inside the namespace.
fn inside(dir: &Path) {
    let (a, b) = (serve(A_IP), serve(B_IP));
    let dns = Dnsmasq::start(dir, &DNS, &[A_IP]);
    dns.wait_answering(T);
    let target = format!("{NAME}:{PORT}");
    let mut redial = Redial::spawn(&[
        "watch",
        "--follow",
        &target,
        "--json",
        "--resolve-every",
        "200ms",
        "--backoff",
        "20ms..200ms",
    ]);
    let out = &mut redial.stdout;

    let added = event(&out.wait_for(
        "the first member added",
        T,
        is("member_added", "address", a.to_string().into()),
    ));
    let first = added["connection"].clone();
    assert_eq!(added["endpoint"], a.to_string().as_str());
    assert_eq!(added["pool"], target.as_str());
    out.wait_for(
        "it connected",
        T,
        is("connected", "connection", first.clone()),
    );

    // The name moves to the other address: a member for it, and the old
    // one drained, then closed (in whichever order the pool does them).
    let changed = dns.set(&[B_IP]);
    let b_added = |l: &str| is("member_added", "address", b.to_string().into())(l);
    let b_up = |l: &str| is("connected", "peer", b.to_string().into())(l);
    let a_closed = |l: &str| is("closed", "connection", first.clone())(l);
    let (seen, at) = wait_all(
        out,
        "the move to the other address",
        &[&b_added, &b_up, &a_closed],
    );
    let [to_added, to_connected, to_closed] = [0, 1, 2].map(|i| at[i] - changed);
    let added = line_of(&seen, b_added);
    let second = added["connection"].clone();
    assert_ne!(second, first);
    assert_eq!(added["endpoint"], b.to_string().as_str());
    let draining = line_of(&seen, is("member_draining", "connection", first.clone()));
    assert_eq!(draining["address"], a.to_string().as_str());
    let closed = line_of(&seen, a_closed);
    assert_eq!(closed["reason"], "disconnected by the application");
    assert_eq!(closed["unsent_bytes"], 0);
    assert_eq!(line_of(&seen, b_up)["connection"], second);

    // The DNS server stops: the lookup fails and the member stays.
    dns.stop();
    let failed = event(&out.wait_for(
        "a failed lookup",
        T,
        is("resolve_failed", "event", "resolve_failed".into()),
    ));
    assert_eq!(failed["kept"], 1);
    assert_eq!(failed["connection"], 0);
    assert!(failed["error"].as_str().is_some_and(|e| !e.is_empty()));

    // It starts again, serving the first address too: a new member for it.
    let dns = Dnsmasq::start(dir, &DNS, &[A_IP, B_IP]);
    dns.wait_answering(T);
    let back = event(&out.wait_for(
        "the returning address's member added",
        T,
        is("member_added", "address", a.to_string().into()),
    ));
    let third = back["connection"].clone();
    assert_ne!(third, first);
    out.wait_for(
        "the returning address's member connected",
        T,
        is("connected", "connection", third.clone()),
    );

    redial.signal("-INT");
    redial.stdout.wait_for(
        "the new member closed",
        T,
        is("closed", "connection", second.clone()),
    );
    let status = redial.wait(T);
    assert!(status.success(), "{status:?}");
    drop(dns);
    let seen = redial.stdout.rest(Duration::from_secs(1));
    for kept in [&second, &third] {
        assert!(
            !seen
                .iter()
                .any(|l| is("member_draining", "connection", kept.clone())(l)),
            "the member of an address still in the name was drained:\n{}",
            seen.join("\n")
        );
    }
    for line in &seen {
        matches_schema(line);
    }
    eprintln!(
        "DNS change (SIGHUP) to the new member's member_added: {to_added:?}, connected: \
         {to_connected:?}; to the old member closed: {to_closed:?} (re-resolving every 200ms)"
    );
}

/// Reads lines until each of `preds` matched one; returns every line seen
/// and when each predicate first matched (as the lines arrived).
fn wait_all(
    out: &mut support::Lines,
    what: &str,
    preds: &[&dyn Fn(&str) -> bool],
) -> (Vec<String>, Vec<Instant>) {
    let deadline = Instant::now() + T;
    let mut at: Vec<Option<Instant>> = preds
        .iter()
        .map(|p| out.seen.iter().any(|l| p(l)).then(Instant::now))
        .collect();
    while at.iter().any(Option::is_none) {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = out.wait_for(what, left, |_| true);
        for (p, t) in preds.iter().zip(&mut at) {
            if t.is_none() && p(&line) {
                *t = Some(Instant::now());
            }
        }
    }
    (out.seen.clone(), at.into_iter().flatten().collect())
}

/// The first line of `seen` that matches `pred`.
fn line_of(seen: &[String], pred: impl Fn(&str) -> bool) -> Value {
    let line = seen
        .iter()
        .find(|l| pred(l))
        .unwrap_or_else(|| panic!("no such line in:\n{}", seen.join("\n")));
    event(line)
}

/// Checks `line` against `redial_cli::watch::EVENT_FIELDS`.
fn matches_schema(line: &str) {
    use redial_cli::watch::EVENT_FIELDS;
    let v: serde_json::Map<String, Value> =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("not an object: {line}: {e}"));
    let kind = v["event"].as_str().unwrap().to_string();
    assert_ne!(kind, "other", "{line}");
    let fields = |k: &str| EVENT_FIELDS.iter().find(|(n, _)| *n == k).map(|(_, f)| *f);
    let mut want: Vec<&str> = fields("*").unwrap().to_vec();
    want.extend(fields(&kind).unwrap_or_else(|| panic!("undocumented event {kind}: {line}")));
    let got: Vec<&str> = v.keys().map(String::as_str).collect();
    assert_eq!(got, want, "{line}");
}
