//! A Redis subscriber that survives server restarts, on redial: it speaks
//! RESP on one connection, and a publisher sends on another.
//!
//! Redis forgets a client's subscriptions when the connection goes away,
//! so a subscriber must subscribe again on every new connection. Here the
//! subscriber's `on_reset` returns [`Resume::With`] an entry that sends
//! `SUBSCRIBE` again; redial runs it first on the next connection, before
//! anything else is sent. Redis pub/sub delivers at most once: messages
//! published while the subscriber is away are lost, and the publisher sees
//! that in the receiver count `PUBLISH` returns.
//!
//! ```text
//! cargo run -p redial --example redis_subscriber                    # Redis on 127.0.0.1:6379
//! cargo run -p redial --example redis_subscriber -- 10.0.0.5:6379   # or REDIS_ADDR=10.0.0.5:6379
//! cargo run -p redial --example redis_subscriber -- --spawn         # start a local redis-server (or REDIAL_SPAWN=1)
//! ```
//!
//! With `--spawn` the example starts its own redis-server on a free port,
//! kills it (SIGKILL) half-way and starts it again, so you can watch the
//! re-subscription. Without a server it keeps retrying and reports each
//! failure. Other flags: `--messages N` (default 10), `--channel NAME`.
//!
//! The client (everything above `main`) is also what `tests/redis.rs`
//! drives against a real Redis: the test includes this file.

use std::collections::VecDeque;
use std::error::Error;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use redial::{Backoff, Close, Connection, Handler, Manager, Options, Reset, Resume, Socket};
use tokio::sync::{mpsc, oneshot};

/// One RESP (version 2) value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resp {
    /// `+OK`
    Simple(String),
    /// `-ERR ...`
    Error(String),
    /// `:42`
    Int(i64),
    /// `None` is the null bulk string.
    Bulk(Option<Vec<u8>>),
    /// `None` is the null array.
    Array(Option<Vec<Resp>>),
}

impl Resp {
    /// The bytes of a bulk string, or the text of a simple string.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Resp::Bulk(Some(b)) => Some(b),
            Resp::Simple(s) => Some(s.as_bytes()),
            _ => None,
        }
    }
}

/// Encodes a command as a RESP array of bulk strings.
pub fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Parses the value at the start of `buf`: `Ok(None)` when it is not all
/// there yet, otherwise the value and how many bytes it took.
pub fn parse(buf: &[u8]) -> Result<Option<(Resp, usize)>, String> {
    let Some(eol) = buf.windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    let Some((&kind, rest)) = buf[..eol].split_first() else {
        return Err("empty line".to_string());
    };
    let line = std::str::from_utf8(rest).map_err(|_| "line is not text".to_string())?;
    let number = || {
        line.parse::<i64>()
            .map_err(|_| format!("bad number {line:?}"))
    };
    let after = eol + 2;
    Ok(Some(match kind {
        b'+' => (Resp::Simple(line.to_string()), after),
        b'-' => (Resp::Error(line.to_string()), after),
        b':' => (Resp::Int(number()?), after),
        b'$' => {
            let Ok(len) = usize::try_from(number()?) else {
                return Ok(Some((Resp::Bulk(None), after)));
            };
            if buf.len() < after + len + 2 {
                return Ok(None);
            }
            let data = buf[after..after + len].to_vec();
            (Resp::Bulk(Some(data)), after + len + 2)
        }
        b'*' => {
            let Ok(n) = usize::try_from(number()?) else {
                return Ok(Some((Resp::Array(None), after)));
            };
            let mut items = Vec::with_capacity(n.min(64));
            let mut at = after;
            for _ in 0..n {
                match parse(&buf[at..])? {
                    None => return Ok(None),
                    Some((item, used)) => {
                        items.push(item);
                        at += used;
                    }
                }
            }
            (Resp::Array(Some(items)), at)
        }
        other => return Err(format!("unknown RESP type byte {other:#x}")),
    }))
}

/// Parses every whole value in `rx`, hands each to `each`, and keeps the
/// incomplete rest. `Err` when the stream is not RESP.
fn drain_values(rx: &mut Vec<u8>, mut each: impl FnMut(Resp)) -> Result<(), String> {
    let mut used = 0;
    while let Some((value, n)) = parse(&rx[used..])? {
        used += n;
        each(value);
    }
    rx.drain(..used);
    Ok(())
}

/// What the subscriber hears.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubEvent {
    /// Redis confirmed a subscription.
    Subscribed {
        /// The channel subscribed to.
        channel: String,
        /// Which connection (1 for the first) the confirmation came on.
        generation: u64,
    },
    /// A message arrived.
    Message {
        /// The channel it was published on.
        channel: String,
        /// What was published.
        payload: Vec<u8>,
        /// Which connection (1 for the first) it came on.
        generation: u64,
    },
}

/// How often the subscriber sent `SUBSCRIBE`.
#[derive(Debug, Default)]
struct SubCounts {
    /// Every `SUBSCRIBE` sent (first connect and every reconnect).
    subscribes: AtomicU64,
    /// Those sent by the resume entry, after a reconnect.
    resubscribes: AtomicU64,
}

fn send_subscribe(sock: &Socket, channels: &[String], counts: &SubCounts) {
    let mut args: Vec<&[u8]> = vec![b"SUBSCRIBE"];
    args.extend(channels.iter().map(|c| c.as_bytes()));
    if sock.send(encode(&args)).is_ok() {
        counts.subscribes.fetch_add(1, Ordering::SeqCst);
    }
    // A refused send means this connection is already gone; the next
    // reconnect subscribes again.
}

/// The redial [`Handler`] of the subscriber connection.
struct SubHandler {
    channels: Arc<[String]>,
    counts: Arc<SubCounts>,
    events: mpsc::UnboundedSender<SubEvent>,
    /// Received bytes not yet parsed (a message can span reads).
    rx: Vec<u8>,
    verbose: bool,
}

impl Handler for SubHandler {
    fn on_connect(&mut self, sock: &Socket) {
        if self.verbose {
            println!("[subscriber] connected, subscribing to {:?}", self.channels);
        }
        send_subscribe(sock, &self.channels, &self.counts);
    }

    fn on_data(&mut self, sock: &Socket, data: &[u8]) {
        // `data` is only valid during this call: keep a copy.
        self.rx.extend_from_slice(data);
        let generation = sock.generation();
        let events = &self.events;
        let parsed = drain_values(&mut self.rx, |value| {
            let Resp::Array(Some(items)) = value else {
                return;
            };
            let text = |i: usize| {
                items
                    .get(i)
                    .and_then(Resp::as_bytes)
                    .map(|b| String::from_utf8_lossy(b).into_owned())
            };
            let event = match text(0).as_deref() {
                Some("subscribe") => SubEvent::Subscribed {
                    channel: text(1).unwrap_or_default(),
                    generation,
                },
                Some("message") => SubEvent::Message {
                    channel: text(1).unwrap_or_default(),
                    payload: items
                        .get(2)
                        .and_then(Resp::as_bytes)
                        .unwrap_or_default()
                        .to_vec(),
                    generation,
                },
                _ => return,
            };
            // Nobody listening any more is not an error for the connection.
            let _ = events.send(event);
        });
        if let Err(why) = parsed {
            eprintln!("[subscriber] protocol error ({why}); reconnecting");
            self.rx.clear();
            let _ = sock.sock_ref().shutdown(std::net::Shutdown::Both);
        }
    }

    fn on_reset(&mut self, reset: &Reset) -> Resume {
        self.rx.clear();
        if self.verbose {
            println!("[subscriber] connection lost: {}", reset.reason());
        }
        let channels = self.channels.clone();
        let counts = self.counts.clone();
        let verbose = self.verbose;
        // Redis dropped our subscriptions with the connection: the first
        // thing the next connection does is subscribe again.
        Resume::with(move |sock| {
            counts.resubscribes.fetch_add(1, Ordering::SeqCst);
            if verbose {
                println!(
                    "[subscriber] reconnected (connection {}), subscribing again",
                    sock.generation()
                );
            }
            send_subscribe(sock, &channels, &counts);
        })
    }

    fn on_connect_failed(&mut self, err: &std::io::Error, attempt: u32) -> redial::Retry {
        if self.verbose {
            println!("[subscriber] connect attempt {attempt} failed: {err}");
        }
        redial::Retry::OnSchedule
    }
}

/// A subscriber that stays subscribed across reconnects.
pub struct Subscriber {
    conn: Connection,
    counts: Arc<SubCounts>,
    events: mpsc::UnboundedReceiver<SubEvent>,
}

impl Subscriber {
    /// Connects to `addr` and subscribes to `channels` (and again after
    /// every reconnect). Returns at once.
    pub fn connect(
        cm: &Manager,
        addr: &str,
        channels: &[&str],
        opts: Options,
        verbose: bool,
    ) -> Result<Subscriber, Box<dyn Error + Send + Sync>> {
        // Unbounded: on_data cannot wait, and the application drains it.
        let (tx, events) = mpsc::unbounded_channel();
        let counts = Arc::new(SubCounts::default());
        let handler = SubHandler {
            channels: channels.iter().map(|c| c.to_string()).collect(),
            counts: counts.clone(),
            events: tx,
            rx: Vec::new(),
            verbose,
        };
        let conn = cm.connect_with(addr, handler, opts)?;
        Ok(Subscriber {
            conn,
            counts,
            events,
        })
    }

    /// The next subscription confirmation or message; `None` once the
    /// connection has closed for good.
    pub async fn next_event(&mut self) -> Option<SubEvent> {
        self.events.recv().await
    }

    /// An event already received, without waiting.
    pub fn try_next_event(&mut self) -> Option<SubEvent> {
        self.events.try_recv().ok()
    }

    /// `SUBSCRIBE` commands sent, on the first connect and every reconnect.
    pub fn subscribes_sent(&self) -> u64 {
        self.counts.subscribes.load(Ordering::SeqCst)
    }

    /// How often the resume entry subscribed again after a reconnect.
    pub fn resubscribes(&self) -> u64 {
        self.counts.resubscribes.load(Ordering::SeqCst)
    }

    /// The redial connection under the subscriber.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }
}

/// Why a Redis command failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisError {
    /// The connection was lost before the reply; the command may or may
    /// not have run.
    Reset(String),
    /// Not connected: nothing was sent.
    Unavailable,
    /// The connection was closed for good by the application.
    Closed,
    /// Redis answered with an error.
    Server(String),
    /// A reply of an unexpected type.
    Unexpected(Resp),
}

impl RedisError {
    /// Whether the command failed because the connection was (or went)
    /// away.
    pub fn is_connection_loss(&self) -> bool {
        matches!(
            self,
            RedisError::Reset(_) | RedisError::Unavailable | RedisError::Closed
        )
    }
}

impl fmt::Display for RedisError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedisError::Reset(why) => write!(f, "connection lost before the reply ({why})"),
            RedisError::Unavailable => f.write_str("not connected to Redis"),
            RedisError::Closed => f.write_str("connection closed"),
            RedisError::Server(e) => write!(f, "Redis said: {e}"),
            RedisError::Unexpected(r) => write!(f, "unexpected reply {r:?}"),
        }
    }
}

impl Error for RedisError {}

type Waiter = oneshot::Sender<Result<Resp, RedisError>>;

/// Commands waiting for replies, in the order they were sent.
#[derive(Default)]
struct CmdState {
    waiting: VecDeque<Waiter>,
    rx: Vec<u8>,
}

impl CmdState {
    fn fail_all(&mut self, err: &RedisError) {
        self.rx.clear();
        for w in self.waiting.drain(..) {
            let _ = w.send(Err(err.clone()));
        }
    }
}

fn lock(state: &Mutex<CmdState>) -> MutexGuard<'_, CmdState> {
    // Only plain data behind the lock: a panic elsewhere leaves it usable.
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// The redial [`Handler`] of a request/reply connection (the publisher).
struct CmdHandler {
    state: Arc<Mutex<CmdState>>,
    verbose: bool,
}

impl Handler for CmdHandler {
    fn on_connect(&mut self, _sock: &Socket) {
        if self.verbose {
            println!("[publisher] connected");
        }
    }

    fn on_data(&mut self, sock: &Socket, data: &[u8]) {
        let mut guard = lock(&self.state);
        let st = &mut *guard;
        st.rx.extend_from_slice(data);
        let waiting = &mut st.waiting;
        let mut unasked = false;
        let parsed = drain_values(&mut st.rx, |value| match waiting.pop_front() {
            Some(w) => drop(w.send(Ok(value))),
            None => unasked = true,
        });
        if parsed.is_err() || unasked {
            eprintln!("[publisher] protocol error; reconnecting");
            st.rx.clear();
            let _ = sock.sock_ref().shutdown(std::net::Shutdown::Both);
        }
    }

    fn on_connect_failed(&mut self, err: &std::io::Error, attempt: u32) -> redial::Retry {
        if self.verbose {
            println!("[publisher] connect attempt {attempt} failed: {err}");
        }
        redial::Retry::OnSchedule
    }

    fn on_reset(&mut self, reset: &Reset) -> Resume {
        lock(&self.state).fail_all(&RedisError::Reset(reset.reason().to_string()));
        if self.verbose {
            println!("[publisher] connection lost: {}", reset.reason());
        }
        Resume::Reconnect
    }

    fn on_close(&mut self, _close: &Close) {
        lock(&self.state).fail_all(&RedisError::Closed);
    }
}

/// A publisher: one request/reply connection.
#[derive(Clone)]
pub struct Publisher {
    conn: Connection,
    state: Arc<Mutex<CmdState>>,
}

impl Publisher {
    /// Connects to `addr`. Returns at once.
    pub fn connect(
        cm: &Manager,
        addr: &str,
        opts: Options,
        verbose: bool,
    ) -> Result<Publisher, Box<dyn Error + Send + Sync>> {
        let state = Arc::new(Mutex::new(CmdState::default()));
        let handler = CmdHandler {
            state: state.clone(),
            verbose,
        };
        let conn = cm.connect_with(addr, handler, opts)?;
        Ok(Publisher { conn, state })
    }

    /// Runs one command and returns its reply.
    pub async fn command(&self, args: &[&[u8]]) -> Result<Resp, RedisError> {
        let (tx, rx) = oneshot::channel();
        {
            let mut st = lock(&self.state);
            // Send and queue under the lock: the queue's order is the wire's
            // order, and on_reset either sees this command or the send is
            // refused here.
            self.conn
                .send(encode(args))
                .map_err(|_| RedisError::Unavailable)?;
            st.waiting.push_back(tx);
        }
        match rx.await.unwrap_or(Err(RedisError::Closed))? {
            Resp::Error(e) => Err(RedisError::Server(e)),
            other => Ok(other),
        }
    }

    /// Publishes `payload` on `channel`; returns how many subscribers got it.
    pub async fn publish(&self, channel: &str, payload: &[u8]) -> Result<i64, RedisError> {
        match self
            .command(&[b"PUBLISH", channel.as_bytes(), payload])
            .await?
        {
            Resp::Int(n) => Ok(n),
            other => Err(RedisError::Unexpected(other)),
        }
    }

    /// The redial connection under the publisher.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }
}

/// A redis-server started by the example (`--spawn`); killed when dropped.
struct LocalRedis {
    child: std::process::Child,
    port: u16,
}

impl LocalRedis {
    fn start(port: u16) -> std::io::Result<LocalRedis> {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()?;
        // Wait until it listens, so the first connect does not race it.
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(LocalRedis { child, port })
    }

    /// SIGKILL, as in a crash: the kernel closes every client connection.
    fn kill(&mut self) -> std::io::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// A new process on the same port.
    fn start_again(&mut self) -> std::io::Result<()> {
        *self = LocalRedis::start(self.port)?;
        Ok(())
    }
}

impl Drop for LocalRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Args {
    addr: String,
    spawn: bool,
    messages: u32,
    channel: String,
}

fn parse_args() -> Result<Args, Box<dyn Error + Send + Sync>> {
    let mut args = Args {
        addr: std::env::var("REDIS_ADDR").unwrap_or_else(|_| "127.0.0.1:6379".into()),
        spawn: std::env::var("REDIAL_SPAWN").is_ok_and(|v| v == "1"),
        messages: 10,
        channel: "redial-demo".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--spawn" => args.spawn = true,
            "--messages" => {
                args.messages = it.next().ok_or("--messages needs a number")?.parse()?
            }
            "--channel" => args.channel = it.next().ok_or("--channel needs a name")?,
            "-h" | "--help" => {
                println!(
                    "usage: redis_subscriber [HOST:PORT] [--spawn] [--messages N] [--channel NAME]"
                );
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
        // A free port, so a Redis you already run is left alone.
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        local = Some(LocalRedis::start(port)?);
        args.addr = format!("127.0.0.1:{port}");
        println!("started redis-server on {}", args.addr);
    }
    println!(
        "Redis at {}: {} messages on channel {:?}",
        args.addr, args.messages, args.channel
    );

    let cm = Manager::new();
    let opts = Options::new().backoff(Backoff::new(
        Duration::from_millis(100),
        2.0,
        Duration::from_secs(2),
    )?);
    let mut sub = Subscriber::connect(&cm, &args.addr, &[&args.channel], opts.clone(), true)?;
    let publisher = Publisher::connect(&cm, &args.addr, opts, true)?;

    // Both connections come up in the background; give them a moment so
    // the first message is not refused (a server that is down is fine: the
    // messages then report their failures).
    let _ = tokio::time::timeout(Duration::from_secs(3), async {
        let _ = sub.connection().wait_connected().await;
        let _ = publisher.connection().wait_connected().await;
    })
    .await;

    // Print what the subscriber hears while the main task publishes.
    let (done_tx, mut done_rx) = oneshot::channel::<()>();
    let listener = tokio::spawn(async move {
        loop {
            tokio::select! {
                ev = sub.next_event() => match ev {
                    Some(SubEvent::Subscribed { channel, generation }) => println!(
                        "[subscriber] subscribed to {channel:?} (connection {generation})"
                    ),
                    Some(SubEvent::Message { channel, payload, .. }) => println!(
                        "[subscriber] {channel:?}: {}",
                        String::from_utf8_lossy(&payload)
                    ),
                    None => break,
                },
                _ = &mut done_rx => break,
            }
        }
        sub
    });

    for n in 1..=args.messages {
        if n == args.messages / 2 + 1 {
            if let Some(server) = local.as_mut() {
                println!("--- killing redis-server (SIGKILL), starting it again in 500 ms ---");
                server.kill()?;
                tokio::time::sleep(Duration::from_millis(500)).await;
                server.start_again()?;
                println!("--- redis-server started again on the same port ---");
            }
        }
        let text = format!("message {n}");
        match publisher.publish(&args.channel, text.as_bytes()).await {
            Ok(receivers) => println!("[publisher] {text:?} -> {receivers} subscriber(s)"),
            Err(e) => println!("[publisher] {text:?} not published: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let _ = done_tx.send(());
    let sub = listener.await?;
    println!(
        "subscribed {} time(s), {} of them after a reconnect",
        sub.subscribes_sent(),
        sub.resubscribes()
    );
    cm.disconnect_all().await;
    println!("all connections closed");
    drop(local);
    Ok(())
}
