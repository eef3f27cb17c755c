//! `redial watch --follow NAME:PORT --json` prints the members of a name as
//! it changes: the member added for a new address, the one of an address
//! that left draining and closing, and a failed lookup that keeps them.
//!
//! The name lives in a hosts file of a network namespace the test makes
//! (`ip netns exec` binds `/etc/netns/NAME/hosts` over `/etc/hosts`), so
//! the real binary resolves it through the system resolver as any program
//! does, and the test changes the records by rewriting that file in place.
//! The test runs this binary again inside the namespace, where it starts
//! servers on 127.0.0.2 and 127.0.0.3 and the `redial` binary.
//!
//! Needs root and `ip`; without them it says why and passes, unless
//! `REDIAL_REQUIRE_SERVERS=1` (set by `.ci/run`), which makes it fail
//! instead.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::Redial;

/// Set in the process that runs inside the namespace: the hosts file.
const CHILD_HOSTS: &str = "REDIAL_WATCH_FOLLOW_HOSTS";
const TEST: &str = "follow_prints_members_added_and_drained_as_the_name_changes";
const NAME: &str = "cache.watch.test";
const PORT: u16 = 11311;
const T: Duration = Duration::from_secs(30);

fn required() -> bool {
    std::env::var("REDIAL_REQUIRE_SERVERS").is_ok_and(|v| v == "1")
}

fn find(binary: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
        .map(|d| Path::new(d).join(binary))
        .find(|p| p.is_file());
    found
}

/// Why this machine cannot run the test, if it cannot.
fn missing() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("not root (network namespaces need it)".into());
    }
    if find("ip").is_none() {
        return Some("`ip` is not installed (apt-get install iproute2)".into());
    }
    None
}

/// The namespace and its files; removed when dropped.
struct Namespace {
    name: String,
}

impl Namespace {
    fn create() -> Namespace {
        let ns = Namespace {
            name: format!("redial-watch-{}", std::process::id()),
        };
        ns.ip(&["netns", "add", &ns.name]);
        ns.ip(&["netns", "exec", &ns.name, "ip", "link", "set", "lo", "up"]);
        std::fs::create_dir_all(ns.etc()).unwrap();
        write_hosts(&ns.etc().join("hosts"), &["127.0.0.2"]);
        // Nobody answers DNS in the namespace: a name missing from the
        // hosts file fails at once.
        std::fs::write(
            ns.etc().join("resolv.conf"),
            "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n",
        )
        .unwrap();
        ns
    }

    fn etc(&self) -> PathBuf {
        Path::new("/etc/netns").join(&self.name)
    }

    fn ip(&self, args: &[&str]) {
        let st = Command::new(find("ip").unwrap())
            .args(args)
            .status()
            .unwrap();
        assert!(st.success(), "ip {args:?} failed: {st}");
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new(find("ip").unwrap_or_else(|| "ip".into()))
            .args(["netns", "del", &self.name])
            .status();
        let _ = std::fs::remove_dir_all(self.etc());
    }
}

/// Rewrites the hosts file in place (same inode: the bind mount over
/// `/etc/hosts` shows the new records).
fn write_hosts(path: &Path, ips: &[&str]) {
    let mut text = String::from("127.0.0.1 localhost\n");
    for ip in ips {
        text.push_str(&format!("{ip} {NAME}\n"));
    }
    std::fs::write(path, text).unwrap();
}

#[test]
fn follow_prints_members_added_and_drained_as_the_name_changes() {
    if let Ok(hosts) = std::env::var(CHILD_HOSTS) {
        return inside(Path::new(&hosts));
    }
    if let Some(why) = missing() {
        assert!(
            !required(),
            "{TEST} cannot run: {why} (REDIAL_REQUIRE_SERVERS=1)"
        );
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "SKIPPED {TEST}: {why}");
        return;
    }
    let ns = Namespace::create();
    let st = Command::new(find("ip").unwrap())
        .args(["netns", "exec", &ns.name])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", TEST, "--nocapture", "--test-threads=1"])
        .env(CHILD_HOSTS, ns.etc().join("hosts"))
        .status()
        .unwrap();
    assert!(st.success(), "the test inside the namespace failed: {st}");
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
fn inside(hosts: &Path) {
    let (a, b) = (serve("127.0.0.2"), serve("127.0.0.3"));
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
    write_hosts(hosts, &["127.0.0.3"]);
    let changed = Instant::now();
    let b_up = |l: &str| is("connected", "peer", b.to_string().into())(l);
    let a_closed = |l: &str| is("closed", "connection", first.clone())(l);
    let seen = wait_all(out, "the move to the other address", &[&b_up, &a_closed]);
    let to_done = changed.elapsed();
    let added = line_of(&seen, is("member_added", "address", b.to_string().into()));
    let second = added["connection"].clone();
    assert_ne!(second, first);
    assert_eq!(added["endpoint"], b.to_string().as_str());
    let draining = line_of(&seen, is("member_draining", "connection", first.clone()));
    assert_eq!(draining["address"], a.to_string().as_str());
    let closed = line_of(&seen, a_closed);
    assert_eq!(closed["reason"], "disconnected by the application");
    assert_eq!(closed["unsent_bytes"], 0);
    assert_eq!(line_of(&seen, b_up)["connection"], second);

    // The name disappears: the lookup fails and the member stays.
    write_hosts(hosts, &[]);
    let failed = event(&out.wait_for(
        "a failed lookup",
        T,
        is("resolve_failed", "event", "resolve_failed".into()),
    ));
    assert_eq!(failed["kept"], 1);
    assert_eq!(failed["connection"], 0);
    assert!(failed["error"].as_str().is_some_and(|e| !e.is_empty()));

    redial.signal("-INT");
    redial.stdout.wait_for(
        "the new member closed",
        T,
        is("closed", "connection", second.clone()),
    );
    let status = redial.wait(T);
    assert!(status.success(), "{status:?}");
    let seen = redial.stdout.rest(Duration::from_secs(1));
    assert!(
        !seen
            .iter()
            .any(|l| is("member_draining", "connection", second.clone())(l)),
        "the member of the address still in the name was drained:\n{}",
        seen.join("\n")
    );
    for line in &seen {
        matches_schema(line);
    }
    eprintln!(
        "hosts change to the new member connected and the old one closed: {to_done:?} \
         (re-resolving every 200ms)"
    );
}

/// Reads lines until each of `preds` matched one; returns every line seen.
fn wait_all(out: &mut support::Lines, what: &str, preds: &[&dyn Fn(&str) -> bool]) -> Vec<String> {
    let deadline = Instant::now() + T;
    while !preds.iter().all(|p| out.seen.iter().any(|l| p(l))) {
        let left = deadline.saturating_duration_since(Instant::now());
        out.wait_for(what, left, |_| true);
    }
    out.seen.clone()
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
