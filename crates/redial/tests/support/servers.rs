//! Real memcached and redis-server processes for the end-to-end tests.
//!
//! Each test starts its own server on a free loopback port, kills it with
//! SIGKILL (no goodbye to the clients, as in a crash) and starts it again on
//! the same port. A [`Server`] kills its process when dropped, so a failing
//! test leaves nothing running.
//!
//! Without the server binary a test is skipped with a message saying why,
//! written straight to stderr so that the test harness does not swallow it;
//! with `REDIAL_REQUIRE_SERVERS=1` (set by `.ci/run`) a missing binary fails
//! the test instead, so CI can never pass by skipping.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a freshly started server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a probe (stats, INFO) may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Which server to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Memcached,
    Redis,
}

impl Kind {
    pub fn binary(self) -> &'static str {
        match self {
            Kind::Memcached => "memcached",
            Kind::Redis => "redis-server",
        }
    }

    /// The Debian package that provides the binary.
    pub fn package(self) -> &'static str {
        match self {
            Kind::Memcached => "memcached",
            Kind::Redis => "redis-server",
        }
    }

    fn command(self, port: u16) -> Command {
        let mut cmd = Command::new(self.binary());
        match self {
            // -U 0: no UDP listener; -u root is required when running as
            // root and ignored otherwise.
            Kind::Memcached => cmd.args(["-l", "127.0.0.1", "-p", &port.to_string(), "-U", "0"]),
            Kind::Redis => cmd.args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
            ]),
        };
        if self == Kind::Memcached {
            cmd.args(["-u", "root"]);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd
    }
}

/// Whether `REDIAL_REQUIRE_SERVERS=1`: the server tests must run.
pub fn servers_required() -> bool {
    std::env::var("REDIAL_REQUIRE_SERVERS").is_ok_and(|v| v == "1")
}

/// Whether `binary` is an executable file on `PATH`.
fn on_path(binary: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|dir| {
        std::fs::metadata(dir.join(binary))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// A port on 127.0.0.1 that nothing listens on right now.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

/// A running server process on a fixed loopback port.
pub struct Server {
    kind: Kind,
    port: u16,
    child: Option<Child>,
}

impl Server {
    /// Starts `kind` on a free port, or says why the test is skipped and
    /// returns `None` when the binary is not installed (panics instead when
    /// `REDIAL_REQUIRE_SERVERS=1`).
    pub fn start_or_skip(kind: Kind, test: &str) -> Option<Server> {
        if !on_path(kind.binary()) {
            if servers_required() {
                panic!(
                    "{test}: REDIAL_REQUIRE_SERVERS=1 but `{}` is not on PATH; \
                     install the Debian package `{}` (apt-get install {})",
                    kind.binary(),
                    kind.package(),
                    kind.package()
                );
            }
            // Straight to stderr: libtest captures print!/eprint! output of
            // passing tests, and a skip must be visible.
            let _ = writeln!(
                io::stderr(),
                "SKIPPED {test}: `{}` is not installed (apt-get install {}); \
                 set REDIAL_REQUIRE_SERVERS=1 to make this a failure",
                kind.binary(),
                kind.package()
            );
            return None;
        }
        let mut server = Server {
            kind,
            port: free_port(),
            child: None,
        };
        server.start();
        Some(server)
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Whether the process is running (not yet killed).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills the process with SIGKILL (std's `Child::kill` on Unix) and
    /// reaps it: the kernel closes every client connection, as in a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and returns the moment it
    /// accepted its first connection.
    pub fn restart(&mut self) -> Instant {
        self.kill();
        self.start()
    }

    /// Starts the process and waits until it accepts connections. The port
    /// may be briefly busy right after a kill, so a process that exits at
    /// once (could not bind) is started again a few times.
    fn start(&mut self) -> Instant {
        let deadline = Instant::now() + START_TIMEOUT;
        let mut tries = 0;
        loop {
            tries += 1;
            let mut child = self
                .kind
                .command(self.port)
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {}: {e}", self.kind.binary()));
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    assert!(
                        Instant::now() < deadline && tries < 20,
                        "{} on port {} keeps exiting at start ({status})",
                        self.kind.binary(),
                        self.port
                    );
                    std::thread::sleep(Duration::from_millis(100));
                    break;
                }
                if TcpStream::connect_timeout(&self.addr(), Duration::from_millis(200)).is_ok() {
                    let up = Instant::now();
                    self.child = Some(child);
                    return up;
                }
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "{} on port {} did not accept connections within {START_TIMEOUT:?}",
                        self.kind.binary(),
                        self.port
                    );
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends `request` on a fresh connection and reads until `complete` says
/// the reply is whole. The probe's own connection is closed on return.
async fn probe(
    addr: SocketAddr,
    request: &[u8],
    complete: impl Fn(&[u8]) -> bool,
) -> io::Result<String> {
    tokio::time::timeout(PROBE_TIMEOUT, async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream.write_all(request).await?;
        let mut reply = Vec::new();
        let mut buf = [0u8; 4096];
        while !complete(&reply) {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "server closed the probe connection",
                ));
            }
            reply.extend_from_slice(&buf[..n]);
        }
        Ok(String::from_utf8_lossy(&reply).into_owned())
    })
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "probe timed out"))?
}

/// The number after `name` in `name<sep>value` lines.
fn stat(text: &str, name: &str, sep: char) -> io::Result<u64> {
    text.lines()
        .find_map(|line| {
            let (k, v) = line.trim().split_once(sep)?;
            (k.trim() == name).then(|| v.trim().parse().ok())?
        })
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("no {name} in {text}")))
}

/// memcached's `curr_connections`: client connections open right now,
/// counting the probe's own.
pub async fn memcached_curr_connections(addr: SocketAddr) -> io::Result<u64> {
    let text = probe(addr, b"stats\r\n", |r| r.ends_with(b"END\r\n")).await?;
    stat(&text.replace("STAT ", ""), "curr_connections", ' ')
}

/// Redis's `INFO clients` `connected_clients`, counting the probe's own.
pub async fn redis_connected_clients(addr: SocketAddr) -> io::Result<u64> {
    redis_info(addr, "clients", "connected_clients").await
}

/// A numeric field of Redis's `INFO <section>`.
pub async fn redis_info(addr: SocketAddr, section: &str, field: &str) -> io::Result<u64> {
    let request = format!("INFO {section}\r\n");
    let text = probe(addr, request.as_bytes(), |r| {
        // A bulk string: `$<len>\r\n<len bytes>\r\n`.
        let Some(head_end) = r.windows(2).position(|w| w == b"\r\n") else {
            return false;
        };
        let len = std::str::from_utf8(&r[1..head_end])
            .ok()
            .and_then(|s| s.parse::<usize>().ok());
        len.is_some_and(|len| r.len() >= head_end + 2 + len + 2)
    })
    .await?;
    stat(&text, field, ':')
}

/// Waits until the server counts exactly `want` client connections
/// (including the probe's own); returns the last count seen.
pub async fn wait_client_count(server: &Server, want: u64, within: Duration) -> u64 {
    let deadline = tokio::time::Instant::now() + within;
    let mut last = u64::MAX;
    loop {
        let seen = match server.kind() {
            Kind::Memcached => memcached_curr_connections(server.addr()).await,
            Kind::Redis => redis_connected_clients(server.addr()).await,
        };
        if let Ok(n) = seen {
            last = n;
            if n == want {
                return n;
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Options for the restart tests: 50 ms x2 backoff capped at 1 s, so a
/// restarted server is found again well within the tests' recovery bound.
pub fn restart_options() -> redial::Options {
    redial::Options::new()
        .backoff(
            redial::Backoff::new(
                std::time::Duration::from_millis(50),
                2.0,
                std::time::Duration::from_secs(1),
            )
            .unwrap(),
        )
        .connect_timeout(std::time::Duration::from_secs(2))
}
