//! A pool that follows a name served by a real DNS server, through the
//! system resolver (`getaddrinfo`), as a user's program resolves it.
//!
//! The test makes a network namespace with its loopback up and a
//! `resolv.conf` of its own (`ip netns exec` binds
//! `/etc/netns/NAME/resolv.conf` over `/etc/resolv.conf`), then runs this
//! binary again inside it. There it starts dnsmasq on 127.0.0.53, serving
//! `cache.fleet.test` from a hosts file it re-reads on SIGHUP, and servers
//! on 127.0.0.2-4, and checks the pool after each step: an address added,
//! one removed (its member drained, its queued bytes delivered or handed
//! back), the DNS server stopped (the last good set kept) and started
//! again. It prints how long a DNS change took to show in the pool.
//!
//! Needs root, `ip` and `dnsmasq`; without them it says why and passes,
//! unless `REDIAL_REQUIRE_SERVERS=1` (set by `.ci/run`), which makes it
//! fail instead.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redial::{CloseReason, Connection, EventKind, Follow, Manager, Pool, State};
use support::wait_until;
use support::TestServer;

/// Set in the process that runs inside the namespace: the directory of
/// the hosts file and dnsmasq's pid file.
const CHILD_DIR: &str = "REDIAL_FOLLOW_DNS_DIR";
const TEST: &str = "follows_a_name_served_by_dnsmasq_through_the_system_resolver";
const NAME: &str = "cache.fleet.test";
const PORT: u16 = 11211;
const DNS_IP: &str = "127.0.0.53";
/// How often the pool resolves the name: what a DNS change waits for.
const EVERY: Duration = Duration::from_secs(1);
const LONG: Duration = Duration::from_secs(30);

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
        let name = format!("redial-follow-{}", std::process::id());
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
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
        let _ = std::fs::remove_dir_all(self.etc());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn follows_a_name_served_by_dnsmasq_through_the_system_resolver() {
    if let Ok(dir) = std::env::var(CHILD_DIR) {
        return inside(PathBuf::from(dir));
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
                "--local=/fleet.test/",
                "--local-ttl=0",
            ])
            .arg(format!("--listen-address={DNS_IP}"))
            .arg(format!("--addn-hosts={}", hosts.display()))
            .arg(format!("--pid-file={}", dir.join("pid").display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dnsmasq");
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

fn addr(ip: &str) -> SocketAddr {
    format!("{ip}:{PORT}").parse().unwrap()
}

/// The members' addresses, sorted.
fn members(pool: &Pool) -> Vec<String> {
    let mut v: Vec<String> = pool
        .connections()
        .iter()
        .map(|c| c.endpoint().to_string())
        .collect();
    v.sort();
    v
}

fn expect(ips: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ips.iter().map(|i| addr(i).to_string()).collect();
    v.sort();
    v
}

fn member(pool: &Pool, ip: &str) -> Option<Connection> {
    let a = addr(ip).to_string();
    pool.connections()
        .into_iter()
        .find(|c| c.endpoint().to_string() == a)
}

/// The test proper, inside the namespace.
fn inside(dir: PathBuf) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let ips = ["127.0.0.2", "127.0.0.3", "127.0.0.4"];
        let mut servers = Vec::new();
        for ip in ips {
            servers.push(TestServer::sink_at(addr(ip)).await);
        }
        let dns = Dnsmasq::start(&dir, &ips[..2]);
        // dnsmasq answers once it has bound its socket.
        let t0 = Instant::now();
        while tokio::net::lookup_host((NAME, PORT)).await.is_err() {
            assert!(t0.elapsed() < LONG, "dnsmasq does not answer");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        let cm = Manager::new();
        let failed = Arc::new(AtomicU64::new(0));
        let f = failed.clone();
        let mut events = cm.events();
        tokio::spawn(async move {
            while let Some(e) = events.recv().await {
                if matches!(e.kind, EventKind::ResolveFailed { .. }) {
                    f.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        let unsent = Arc::new(AtomicU64::new(0));
        let closed: Arc<Mutex<Vec<(SocketAddr, CloseReason)>>> = Arc::default();
        let (u, cl) = (unsent.clone(), closed.clone());
        // The system resolver: the default.
        let follow = Follow::new(format!("{NAME}:{PORT}")).every(EVERY);
        let pool = cm
            .create_pool_following("fleet", follow, move |a| {
                let (u, cl) = (u.clone(), cl.clone());
                redial::handler().on_close(move |close| {
                    u.fetch_add(close.unsent().len() as u64, Ordering::SeqCst);
                    cl.lock().unwrap().push((a, close.reason().clone()));
                })
            })
            .unwrap();
        tokio::time::timeout(LONG, pool.wait_live(2)).await.unwrap();
        assert_eq!(members(&pool), expect(&ips[..2]));

        // An address added to the name: a member for it, connected.
        let changed = dns.set(&ips);
        wait_until("the new member connected", LONG, || {
            member(&pool, ips[2]).is_some_and(|c| c.state() == State::Connected)
        })
        .await;
        let to_connected = changed.elapsed();
        assert_eq!(members(&pool), expect(&ips));

        // An address removed while its member has bytes queued: drained.
        let leaving = member(&pool, ips[0]).unwrap();
        let sent: u64 = 4 << 20;
        for _ in 0..64 {
            leaving.send(vec![1u8; (sent / 64) as usize]).unwrap();
        }
        let changed = dns.set(&ips[1..]);
        wait_until("the removed member drained", LONG, || {
            leaving.state() == State::Closed
        })
        .await;
        let to_drained = changed.elapsed();
        wait_until("its close reported", LONG, || {
            !closed.lock().unwrap().is_empty()
        })
        .await;
        assert_eq!(
            *closed.lock().unwrap(),
            [(addr(ips[0]), CloseReason::Disconnected)]
        );
        wait_until("every queued byte delivered or handed back", LONG, || {
            servers[0].received() + unsent.load(Ordering::SeqCst) == sent
        })
        .await;
        assert_eq!(members(&pool), expect(&ips[1..]));

        // The DNS server stops: lookups fail, the members stay.
        dns.stop();
        let before = failed.load(Ordering::SeqCst);
        wait_until("failed lookups reported", LONG, || {
            failed.load(Ordering::SeqCst) >= before + 2
        })
        .await;
        assert_eq!(members(&pool), expect(&ips[1..]));
        assert_eq!(pool.live(), 2);

        // It starts again, serving the first address once more.
        let dns = Dnsmasq::start(&dir, &ips);
        let restarted = Instant::now();
        wait_until("the returning address's member connected", LONG, || {
            member(&pool, ips[0]).is_some_and(|c| c.state() == State::Connected)
        })
        .await;
        let recovered = restarted.elapsed();
        assert_eq!(members(&pool), expect(&ips));
        eprintln!(
            "DNS change to new member connected: {to_connected:?}; to removed member drained \
             ({} MiB queued): {to_drained:?}; DNS server back to member connected: {recovered:?} \
             (re-resolving every {EVERY:?})",
            sent >> 20
        );
        pool.disconnect().await;
        drop(dns);
    });
}
