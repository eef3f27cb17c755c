//! A name served by a real DNS server, for tests that resolve it through
//! the system resolver (`getaddrinfo`) as a user's program does.
//!
//! [`Setup::run`] makes a network namespace with its loopback up and a
//! `resolv.conf` of its own (`ip netns exec` binds
//! `/etc/netns/NAME/resolv.conf` over `/etc/resolv.conf`), then runs the
//! test binary again inside it, where the test starts [`Dnsmasq`] on the
//! setup's address, serving the name from a hosts file it re-reads on
//! SIGHUP.
//!
//! Needs root, `ip` and `dnsmasq`; without them a test says why and
//! passes, unless `REDIAL_REQUIRE_SERVERS=1` (set by `.ci/run`), which
//! makes it fail instead.
//!
//! Used by redial's `follow_dns.rs` (as `support::dns`) and by
//! redial-cli's `watch_follow.rs`, which mounts this file by its path:
//! it uses the standard library only.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::ToSocketAddrs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What a DNS test serves, and how its two processes find each other.
/// Each test has addresses of its own, so tests can run at the same time
/// without sharing anything.
pub struct Setup {
    /// The test's name, which the process inside the namespace runs.
    pub test: &'static str,
    /// Set in the process inside the namespace: the directory of the hosts
    /// file and of dnsmasq's pid file.
    pub child_dir: &'static str,
    /// The namespace's name, before the process id.
    pub namespace: &'static str,
    /// Where dnsmasq listens (a loopback address of the namespace).
    pub dns_ip: &'static str,
    /// The name served: the zone dnsmasq answers for is what follows its
    /// first dot.
    pub name: &'static str,
}

impl Setup {
    /// Runs `inside` in a namespace of its own, with the directory for
    /// [`Dnsmasq::start`]; or says why this machine cannot and returns.
    pub fn run(&self, inside: impl FnOnce(&Path)) {
        if let Ok(dir) = std::env::var(self.child_dir) {
            return inside(Path::new(&dir));
        }
        if let Some(why) = missing() {
            assert!(
                !required(),
                "{} cannot run: {why} (REDIAL_REQUIRE_SERVERS=1)",
                self.test
            );
            // Straight to stderr: the harness keeps a passing test's output.
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "SKIPPED {}: {why}", self.test);
            return;
        }
        let ns = Namespace::create(self);
        let st = Command::new(find("ip").unwrap())
            .args(["netns", "exec", &ns.name])
            .arg(std::env::current_exe().unwrap())
            .args(["--exact", self.test, "--nocapture", "--test-threads=1"])
            .env(self.child_dir, &ns.dir)
            .status()
            .unwrap();
        assert!(st.success(), "the test inside the namespace failed: {st}");
    }
}

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
    fn create(setup: &Setup) -> Namespace {
        let name = format!("{}-{}", setup.namespace, std::process::id());
        let dir = std::env::temp_dir().join(&name);
        let ns = Namespace { name, dir };
        ns.ip(&["netns", "add", &ns.name]);
        ns.ip(&["netns", "exec", &ns.name, "ip", "link", "set", "lo", "up"]);
        std::fs::create_dir_all(ns.etc()).unwrap();
        // One try of one second: a stopped DNS server fails a lookup fast.
        std::fs::write(
            ns.etc().join("resolv.conf"),
            format!(
                "nameserver {}\noptions timeout:1 attempts:1\n",
                setup.dns_ip
            ),
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

/// dnsmasq inside the namespace, killed when dropped.
pub struct Dnsmasq {
    child: Child,
    hosts: PathBuf,
    name: &'static str,
}

impl Dnsmasq {
    /// Starts serving `setup.name` as `addrs`, with its files in `dir`.
    pub fn start(dir: &Path, setup: &Setup, addrs: &[&str]) -> Dnsmasq {
        let hosts = dir.join("hosts");
        write_hosts(&hosts, setup.name, addrs);
        let zone = setup.name.split_once('.').map_or(setup.name, |(_, z)| z);
        let child = Command::new(find("dnsmasq").unwrap())
            .args([
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                "--user=root",
                "--local-ttl=0",
            ])
            .arg(format!("--local=/{zone}/"))
            .arg(format!("--listen-address={}", setup.dns_ip))
            .arg(format!("--addn-hosts={}", hosts.display()))
            .arg(format!("--pid-file={}", dir.join("pid").display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dnsmasq");
        Dnsmasq {
            child,
            hosts,
            name: setup.name,
        }
    }

    /// Waits until the name resolves (dnsmasq answers once it has bound
    /// its socket), at most `timeout`.
    pub fn wait_answering(&self, timeout: Duration) {
        let t0 = Instant::now();
        while (self.name, 1).to_socket_addrs().is_err() {
            assert!(t0.elapsed() < timeout, "dnsmasq does not answer");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Serves `addrs` from now on (dnsmasq re-reads its hosts files on
    /// SIGHUP); returns when it was told.
    pub fn set(&self, addrs: &[&str]) -> Instant {
        write_hosts(&self.hosts, self.name, addrs);
        let st = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
        Instant::now()
    }

    pub fn stop(mut self) {
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

fn write_hosts(path: &Path, name: &str, addrs: &[&str]) {
    let text: String = addrs.iter().map(|a| format!("{a} {name}\n")).collect();
    std::fs::write(path, text).unwrap();
}
