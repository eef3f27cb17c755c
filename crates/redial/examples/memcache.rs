//! memcached through redial: a pool of connections and a tiny text-protocol
//! client (`set`, `get`, `version`) — the redial version of connman's
//! memcached example.
//!
//! How the client stays honest across reconnects:
//!
//! - Each connection has its own queue of requests waiting for a reply.
//!   memcached answers in order, so `on_data` completes the request at the
//!   front of the queue for every reply it parses.
//! - A request is written and queued under one lock, so the order of the
//!   queue is the order on the wire, and `on_reset` (which takes the same
//!   lock) sees every request that may have reached the server.
//! - `on_reset` fails every request still waiting with [`McError::Reset`]:
//!   none hangs. Whether memcached executed it is unknown, so the caller
//!   decides whether to retry.
//! - `on_reset` returns [`Resume::With`] an entry that sends `version`
//!   first on the new connection; the connection takes new requests only
//!   once that reply came back, so no work goes to a server that is not
//!   answering yet.
//!
//! ```text
//! cargo run -p redial --example memcache                    # memcached on 127.0.0.1:11211
//! cargo run -p redial --example memcache -- 10.0.0.5:11211  # or MEMCACHED_ADDR=10.0.0.5:11211
//! cargo run -p redial --example memcache -- --spawn         # start a local memcached (or REDIAL_SPAWN=1)
//! ```
//!
//! With `--spawn` the example starts its own memcached on a free port and
//! kills it (SIGKILL) half-way, then starts it again, so you can watch the
//! waiting requests fail, the reconnect with backoff and the `version`
//! re-check. Without a server it keeps retrying and reports each failure.
//! Other flags: `--rounds N` (default 10), `--connections N` (default 2).
//!
//! The client (everything above `main`) is also what
//! `tests/memcached.rs` drives against a real memcached: the test includes
//! this file, so the code you read here is the code that is tested.

use std::collections::{HashMap, VecDeque};
use std::error::Error;
use std::fmt;
use std::net::Shutdown;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use redial::{Backoff, Close, Handler, Manager, Options, Pool, Reset, Resume, Socket};
use tokio::sync::oneshot;

/// Why a memcached request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum McError {
    /// The connection was lost while the request waited for its reply. It
    /// may or may not have been executed.
    Reset(String),
    /// No connection is ready (down, reconnecting, or re-checking the
    /// server): nothing was sent.
    Unavailable,
    /// The connection was closed for good by the application.
    Closed,
    /// memcached answered with an error line.
    Server(String),
    /// The key cannot be sent in the text protocol (empty, over 250 bytes,
    /// or containing whitespace or control characters).
    BadKey,
}

impl McError {
    /// Whether the request failed because the connection was (or went)
    /// away, rather than because of what it asked.
    pub fn is_connection_loss(&self) -> bool {
        matches!(
            self,
            McError::Reset(_) | McError::Unavailable | McError::Closed
        )
    }
}

impl fmt::Display for McError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            McError::Reset(why) => write!(f, "connection lost before the reply ({why})"),
            McError::Unavailable => f.write_str("no memcached connection is ready"),
            McError::Closed => f.write_str("connection closed"),
            McError::Server(line) => write!(f, "memcached said: {line}"),
            McError::BadKey => f.write_str("invalid memcached key"),
        }
    }
}

impl Error for McError {}

type Reply<T> = oneshot::Sender<Result<T, McError>>;

/// A request waiting for its reply.
enum Pending {
    Store(Reply<()>),
    Get(Reply<Option<Vec<u8>>>),
    Version(Reply<String>),
    /// The `version` sent on every (re)connect; its reply makes the
    /// connection ready for new work.
    Check,
}

impl Pending {
    fn fail(self, err: McError) {
        // A caller that stopped waiting dropped its receiver: nothing to tell.
        match self {
            Pending::Store(tx) => drop(tx.send(Err(err))),
            Pending::Get(tx) => drop(tx.send(Err(err))),
            Pending::Version(tx) => drop(tx.send(Err(err))),
            Pending::Check => {}
        }
    }
}

/// One reply of the text protocol, as parsed from the byte stream.
#[derive(Debug)]
enum Parsed {
    Stored,
    Value(Vec<u8>),
    End,
    Version(String),
    Error(String),
}

/// Parses the reply at the start of `rx`: `Ok(None)` when it is not all
/// there yet, otherwise the reply and how many bytes it took.
fn parse_reply(rx: &[u8]) -> Result<Option<(Parsed, usize)>, String> {
    let Some(eol) = rx.windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    let line = std::str::from_utf8(&rx[..eol]).map_err(|_| "reply is not text".to_string())?;
    let after = eol + 2;
    let parsed = if line == "STORED" {
        Parsed::Stored
    } else if line == "END" {
        Parsed::End
    } else if let Some(v) = line.strip_prefix("VERSION ") {
        Parsed::Version(v.to_string())
    } else if let Some(header) = line.strip_prefix("VALUE ") {
        // VALUE <key> <flags> <bytes>\r\n<data>\r\nEND\r\n (one key per get)
        let len: usize = header
            .split(' ')
            .nth(2)
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("bad VALUE line: {line}"))?;
        let data_end = after + len;
        if rx.len() < data_end + 7 {
            return Ok(None);
        }
        if &rx[data_end..data_end + 7] != b"\r\nEND\r\n" {
            return Err("VALUE not followed by END".to_string());
        }
        return Ok(Some((
            Parsed::Value(rx[after..data_end].to_vec()),
            data_end + 7,
        )));
    } else if line == "ERROR"
        || [
            "CLIENT_ERROR",
            "SERVER_ERROR",
            "NOT_STORED",
            "EXISTS",
            "NOT_FOUND",
        ]
        .iter()
        .any(|p| line.starts_with(p))
    {
        Parsed::Error(line.to_string())
    } else {
        return Err(format!("unexpected reply: {line:?}"));
    };
    Ok(Some((parsed, after)))
}

/// One connection's side of the client: shared between its [`Handler`]
/// (driver task) and [`Memcache`] (callers).
#[derive(Default)]
struct ConnState {
    waiting: VecDeque<Pending>,
    /// Received bytes not yet parsed (a reply can span reads).
    rx: Vec<u8>,
    /// The `version` re-check of this connection has been answered.
    ready: bool,
    version: Option<String>,
}

impl ConnState {
    /// Completes `pending` with `reply`; `Err` when they do not match (the
    /// stream is out of step and the connection must be dropped).
    fn complete(&mut self, pending: Pending, reply: Parsed) -> Result<(), String> {
        match (pending, reply) {
            (Pending::Store(tx), Parsed::Stored) => drop(tx.send(Ok(()))),
            (Pending::Get(tx), Parsed::Value(v)) => drop(tx.send(Ok(Some(v)))),
            (Pending::Get(tx), Parsed::End) => drop(tx.send(Ok(None))),
            (Pending::Version(tx), Parsed::Version(v)) => drop(tx.send(Ok(v))),
            (Pending::Check, Parsed::Version(v)) => {
                self.ready = true;
                self.version = Some(v);
            }
            (Pending::Check, Parsed::Error(e)) => {
                return Err(format!("version check failed: {e}"));
            }
            (p, Parsed::Error(e)) => p.fail(McError::Server(e)),
            (p, r) => {
                p.fail(McError::Reset("reply out of step".to_string()));
                return Err(format!("reply {r:?} does not match the request"));
            }
        }
        Ok(())
    }

    /// Fails every waiting request; returns how many callers were told.
    fn fail_all(&mut self, err: &McError) -> usize {
        self.ready = false;
        self.rx.clear();
        let mut told = 0;
        for p in self.waiting.drain(..) {
            if !matches!(p, Pending::Check) {
                told += 1;
            }
            p.fail(err.clone());
        }
        told
    }
}

type SharedState = Arc<Mutex<ConnState>>;

fn lock(state: &SharedState) -> MutexGuard<'_, ConnState> {
    // Only plain data behind the lock: a panic elsewhere leaves it usable.
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// Sends `version` as the first request of a new connection. It runs in
/// `on_connect` and in the resume entry, before redial lets
/// `Connection::send` through, so nothing can overtake it.
fn start_check(state: &SharedState, sock: &Socket) {
    let mut st = lock(state);
    st.ready = false;
    st.rx.clear();
    if sock.send("version\r\n").is_ok() {
        st.waiting.push_back(Pending::Check);
    }
    // A refused send means this connection is already gone: on_reset follows.
}

/// The redial [`Handler`] of one memcached connection.
struct McHandler {
    state: SharedState,
    label: String,
    verbose: bool,
}

impl Handler for McHandler {
    fn on_connect(&mut self, sock: &Socket) {
        if self.verbose {
            println!("[{}] connected, checking with `version`", self.label);
        }
        start_check(&self.state, sock);
    }

    fn on_data(&mut self, sock: &Socket, data: &[u8]) {
        let mut st = lock(&self.state);
        // `data` is only valid during this call: keep a copy.
        st.rx.extend_from_slice(data);
        let mut used = 0;
        let broken = loop {
            match parse_reply(&st.rx[used..]) {
                Ok(None) => break None,
                Ok(Some((reply, n))) => {
                    used += n;
                    let Some(pending) = st.waiting.pop_front() else {
                        break Some("a reply nobody asked for".to_string());
                    };
                    if let Err(why) = st.complete(pending, reply) {
                        break Some(why);
                    }
                }
                Err(why) => break Some(why),
            }
        };
        if let Some(why) = broken {
            // Out of step with the server: replies can no longer be matched
            // to requests. Drop this connection; redial reconnects and
            // on_reset fails what is still waiting.
            eprintln!("[{}] protocol error ({why}); reconnecting", self.label);
            st.ready = false;
            st.rx.clear();
            let _ = sock.sock_ref().shutdown(Shutdown::Both);
            return;
        }
        st.rx.drain(..used);
    }

    fn on_reset(&mut self, reset: &Reset) -> Resume {
        let failed = lock(&self.state).fail_all(&McError::Reset(reset.reason().to_string()));
        if self.verbose {
            println!(
                "[{}] connection {} lost: {}; {failed} waiting request(s) failed",
                self.label,
                reset.generation(),
                reset.reason()
            );
        }
        let state = self.state.clone();
        let label = self.label.clone();
        let verbose = self.verbose;
        Resume::with(move |sock| {
            if verbose {
                println!(
                    "[{label}] reconnected (connection {}), re-checking with `version`",
                    sock.generation()
                );
            }
            start_check(&state, sock);
        })
    }

    fn on_connect_failed(&mut self, err: &std::io::Error, attempt: u32) -> redial::Retry {
        if self.verbose {
            println!("[{}] connect attempt {attempt} failed: {err}", self.label);
        }
        redial::Retry::OnSchedule
    }

    fn on_close(&mut self, close: &Close) {
        lock(&self.state).fail_all(&McError::Closed);
        if self.verbose {
            println!("[{}] closed: {}", self.label, close.reason());
        }
    }
}

/// A memcached client over a redial pool: requests go round robin to the
/// connections that are up and have passed their `version` check.
#[derive(Clone)]
pub struct Memcache {
    pool: Pool,
    states: Arc<HashMap<u64, SharedState>>,
}

impl Memcache {
    /// Creates pool `pool_name` with `connections` connections to `addr`.
    /// Returns at once; connections come up in the background.
    pub fn connect(
        cm: &Manager,
        pool_name: &str,
        addr: &str,
        connections: usize,
        opts: Options,
        verbose: bool,
    ) -> Result<Memcache, Box<dyn Error + Send + Sync>> {
        let pool = cm.create_pool(pool_name)?;
        let mut states = HashMap::new();
        for i in 0..connections {
            let state = SharedState::default();
            let handler = McHandler {
                state: state.clone(),
                label: format!("{pool_name}#{i}"),
                verbose,
            };
            let conn = pool.add_connection_with(addr, handler, opts.clone())?;
            states.insert(conn.id(), state);
        }
        Ok(Memcache {
            pool,
            states: Arc::new(states),
        })
    }

    /// The redial pool under the client.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// How many connections take requests right now.
    pub fn ready_connections(&self) -> usize {
        self.states.values().filter(|s| lock(s).ready).count()
    }

    /// Waits until `n` connections take requests, for at most `within`.
    pub async fn wait_ready(&self, n: usize, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        while self.ready_connections() < n {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    /// The version reported by the last `version` check of any connection.
    pub fn server_version(&self) -> Option<String> {
        self.states.values().find_map(|s| lock(s).version.clone())
    }

    /// Stores `value` under `key` (no flags, no expiry).
    pub async fn set(&self, key: &str, value: &[u8]) -> Result<(), McError> {
        check_key(key)?;
        let mut req = format!("set {key} 0 0 {}\r\n", value.len()).into_bytes();
        req.extend_from_slice(value);
        req.extend_from_slice(b"\r\n");
        self.call(&req, Pending::Store).await
    }

    /// Reads `key`: `None` when memcached does not have it.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, McError> {
        check_key(key)?;
        self.call(format!("get {key}\r\n").as_bytes(), Pending::Get)
            .await
    }

    /// Asks the server for its version.
    pub async fn version(&self) -> Result<String, McError> {
        self.call(b"version\r\n", Pending::Version).await
    }

    async fn call<T>(
        &self,
        request: &[u8],
        pending: impl FnOnce(Reply<T>) -> Pending,
    ) -> Result<T, McError> {
        let (tx, rx) = oneshot::channel();
        self.enqueue(request, pending(tx))?;
        // The handler always answers or drops the sender (on close).
        rx.await.unwrap_or(Err(McError::Closed))
    }

    fn enqueue(&self, request: &[u8], pending: Pending) -> Result<(), McError> {
        let mut pending = Some(pending);
        for _ in 0..self.states.len() {
            let Some(conn) = self.pool.pick() else { break };
            let Some(state) = self.states.get(&conn.id()) else {
                continue;
            };
            let mut st = lock(state);
            if !st.ready {
                continue;
            }
            // Write and queue under the lock: the queue's order is the
            // wire's order, and on_reset either sees this request or the
            // send is refused here.
            if conn.send(request).is_ok() {
                if let Some(p) = pending.take() {
                    st.waiting.push_back(p);
                }
                return Ok(());
            }
        }
        if let Some(p) = pending {
            p.fail(McError::Unavailable);
        }
        Err(McError::Unavailable)
    }
}

fn check_key(key: &str) -> Result<(), McError> {
    let ok = !key.is_empty()
        && key.len() <= 250
        && !key
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control());
    if ok {
        Ok(())
    } else {
        Err(McError::BadKey)
    }
}

/// A memcached started by the example (`--spawn`); killed when dropped.
struct LocalMemcached {
    child: std::process::Child,
    port: u16,
}

impl LocalMemcached {
    fn start(port: u16) -> std::io::Result<LocalMemcached> {
        let child = std::process::Command::new("memcached")
            // -U 0: no UDP; -u root: needed when run as root, ignored otherwise.
            .args([
                "-l",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "0",
                "-u",
                "root",
            ])
            .spawn()?;
        // Wait until it listens, so the first connect does not race it.
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(LocalMemcached { child, port })
    }

    /// SIGKILL, as in a crash: the kernel closes every client connection.
    fn kill(&mut self) -> std::io::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// A new process on the same port.
    fn start_again(&mut self) -> std::io::Result<()> {
        *self = LocalMemcached::start(self.port)?;
        Ok(())
    }
}

impl Drop for LocalMemcached {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Args {
    addr: String,
    spawn: bool,
    rounds: u32,
    connections: usize,
}

fn parse_args() -> Result<Args, Box<dyn Error + Send + Sync>> {
    let mut args = Args {
        addr: std::env::var("MEMCACHED_ADDR").unwrap_or_else(|_| "127.0.0.1:11211".into()),
        spawn: std::env::var("REDIAL_SPAWN").is_ok_and(|v| v == "1"),
        rounds: 10,
        connections: 2,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--spawn" => args.spawn = true,
            "--rounds" => args.rounds = it.next().ok_or("--rounds needs a number")?.parse()?,
            "--connections" => {
                args.connections = it.next().ok_or("--connections needs a number")?.parse()?
            }
            "-h" | "--help" => {
                println!("usage: memcache [HOST:PORT] [--spawn] [--rounds N] [--connections N]");
                std::process::exit(0);
            }
            a if !a.starts_with('-') => args.addr = a.to_string(),
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error + Send + Sync>> {
    let mut args = parse_args()?;
    let mut local = None;
    if args.spawn {
        // A free port, so a memcached you already run is left alone.
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        local = Some(LocalMemcached::start(port)?);
        args.addr = format!("127.0.0.1:{port}");
        println!("started memcached on {}", args.addr);
    }
    println!(
        "memcached at {}: pool of {} connection(s), {} rounds of set/get",
        args.addr, args.connections, args.rounds
    );

    let cm = Manager::new();
    let opts = Options::new().backoff(Backoff::new(
        Duration::from_millis(100),
        2.0,
        Duration::from_secs(2),
    )?);
    let mc = Memcache::connect(&cm, "memcached", &args.addr, args.connections, opts, true)?;
    if mc.wait_ready(1, Duration::from_secs(3)).await {
        println!("server version {}", mc.server_version().unwrap_or_default());
    }

    for round in 1..=args.rounds {
        if round == args.rounds / 2 + 1 {
            if let Some(server) = local.as_mut() {
                println!("--- killing memcached (SIGKILL), starting it again in 500 ms ---");
                server.kill()?;
                // Let the clients notice and fail a reconnect or two first.
                tokio::time::sleep(Duration::from_millis(500)).await;
                server.start_again()?;
                println!("--- memcached started again on the same port ---");
            }
        }
        let key = format!("redial:example:{round}");
        let value = format!("value {round}");
        match mc.set(&key, value.as_bytes()).await {
            Ok(()) => match mc.get(&key).await {
                Ok(Some(v)) => println!(
                    "round {round}: set {key} = {value:?}, read back {:?}",
                    String::from_utf8_lossy(&v)
                ),
                Ok(None) => println!("round {round}: {key} not found after set"),
                Err(e) => println!("round {round}: get failed: {e}"),
            },
            Err(e) => println!("round {round}: set failed: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    cm.disconnect_all().await;
    println!("all connections closed");
    drop(local);
    Ok(())
}
