//! `redial watch --follow NAME:PORT --json` prints the members of a name as
//! it changes: the member added for a new address, the one of an address
//! that left draining and closing, and a failed lookup that keeps them.
//!
//! The name is served by a real DNS server. The test makes a network
//! namespace with its loopback up and a `resolv.conf` of its own
//! (`ip netns exec` binds `/etc/netns/NAME/resolv.conf` over
//! `/etc/resolv.conf`), then runs this binary again inside it. There it
//! starts dnsmasq on 127.0.0.63, serving `cache.watch.test` from a hosts
//! file it re-reads on SIGHUP, servers on 127.0.0.12 and 127.0.0.13, and the
//! `redial` binary, which resolves the name through the system resolver as
//! any program does. The test moves the name to the other address, stops
//! dnsmasq (the lookup fails, the member stays) and starts it again with
//! both addresses. It prints how long the change took to show in the
//! output.
//!
//! Needs root, `ip` and `dnsmasq`; without them it says why and passes,
//! unless `REDIAL_REQUIRE_SERVERS=1` (set by `.ci/run`), which makes it
//! fail instead.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Read;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::Redial;

/// Set in the process that runs inside the namespace: the directory of
/// dnsmasq's hosts file and pid file.
const CHILD_DIR: &str = "REDIAL_WATCH_FOLLOW_DIR";
const TEST: &str = "follow_prints_members_added_and_drained_as_the_name_changes";
const NAME: &str = "cache.watch.test";
const PORT: u16 = 11311;
/// Addresses of their own, so this test and the library's DNS test can run
/// at the same time without sharing anything.
const DNS_IP: &str = "127.0.0.63";
const A_IP: &str = "127.0.0.12";
const B_IP: &str = "127.0.0.13";
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
    for b in ["ip", "dnsmasq"] {
        if find(b).is_none() {
            return Some(format!(
                "`{b}` is not installed (apt-get install dnsmasq iproute2)"
            ));
        }
    }
    None
}

/// The namespace and its files; removed when dropped.
struct Namespace {
    name: String,
    dir: PathBuf,
}

impl Namespace {
    fn create() -> Namespace {
        let name = format!("redial-watch-dns-{}", std::process::id());
        let dir = std::env::temp_dir().join(&name);
        let ns = Namespace { name, dir };
        ns.ip(&["netns", "add", &ns.name]);
        ns.ip(&["netns", "exec", &ns.name, "ip", "link", "set", "lo", "up"]);
        std::fs::create_dir_all(ns.etc()).unwrap();
        // One try of one second: a stopped DNS server fails a lookup fast.
        std::fs::write(
            ns.etc().join("resolv.conf"),
            format!("nameserver {DNS_IP}\noptions timeout:1 attempts:1\n"),
        )
        .unwrap();
        std::fs::create_dir_all(&ns.dir).unwrap();
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
        // A dnsmasq the child left behind (it kills its own on the way out).
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("pid")) {
            let _ = Command::new("kill")
                .arg(pid.trim())
                .stderr(Stdio::null())
                .status();
        }
        let _ = Command::new(find("ip").unwrap_or_else(|| "ip".into()))
            .args(["netns", "del", &self.name])
            .status();
        let _ = std::fs::remove_dir_all(self.etc());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn follow_prints_members_added_and_drained_as_the_name_changes() {
    if let Ok(dir) = std::env::var(CHILD_DIR) {
        return inside(Path::new(&dir));
    }
    if let Some(why) = missing() {
        assert!(
            !required(),
            "{TEST} cannot run: {why} (REDIAL_REQUIRE_SERVERS=1)"
        );
        // Straight to stderr: the harness keeps a passing test's output.
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "SKIPPED {TEST}: {why}");
        return;
    }
    let ns = Namespace::create();
    let st = Command::new(find("ip").unwrap())
        .args(["netns", "exec", &ns.name])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", TEST, "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, &ns.dir)
        .status()
        .unwrap();
    assert!(st.success(), "the test inside the namespace failed: {st}");
}

/// dnsmasq inside the namespace, killed when dropped.
struct Dnsmasq {
    child: Child,
    hosts: PathBuf,
}

impl Dnsmasq {
    /// Starts serving `addrs` and waits until the name resolves.
    fn start(dir: &Path, addrs: &[&str]) -> Dnsmasq {
        let hosts = dir.join("hosts");
        write_hosts(&hosts, addrs);
        let child = Command::new(find("dnsmasq").unwrap())
            .args([
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                "--user=root",
                "--local=/watch.test/",
                "--local-ttl=0",
            ])
            .arg(format!("--listen-address={DNS_IP}"))
            .arg(format!("--addn-hosts={}", hosts.display()))
            .arg(format!("--pid-file={}", dir.join("pid").display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dnsmasq");
        // dnsmasq answers once it has bound its socket.
        let t0 = Instant::now();
        while (NAME, PORT).to_socket_addrs().is_err() {
            assert!(t0.elapsed() < T, "dnsmasq does not answer");
            std::thread::sleep(Duration::from_millis(20));
        }
        Dnsmasq { child, hosts }
    }

    /// Serves `addrs` from now on (dnsmasq re-reads its hosts files on SIGHUP).
    fn set(&self, addrs: &[&str]) -> Instant {
        write_hosts(&self.hosts, addrs);
        let st = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
        Instant::now()
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_hosts(path: &Path, addrs: &[&str]) {
    let text: String = addrs.iter().map(|a| format!("{a} {NAME}\n")).collect();
    std::fs::write(path, text).unwrap();
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
    let dns = Dnsmasq::start(dir, &[A_IP]);
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
    let dns = Dnsmasq::start(dir, &[A_IP, B_IP]);
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
