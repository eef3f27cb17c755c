//! The random operations of the stress test, run by several workers at
//! once against one manager: connects, sends on every path, pools (create,
//! add, send, pick, `send_wait`, disconnect through current and stale
//! handles, adds racing a disconnect), lookups, waits, `disconnect` and
//! `abort` in any phase, and `disconnect_all`. Each checks what redial
//! promises about its own result; the ledger and the probe check the rest.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redial::{
    Backoff, ConnectError, Connection, Jitter, Manager, Options, Outage, Pool, PoolError,
    SendError, Socket, State, ToEndpoint,
};
use redial_chaos::SplitMix64;
use tokio::task::JoinHandle;

use super::frame::{self, FrameId};
use super::ledger::Ledger;
use super::probe::{ConnState, PanicIn, Probe};
use super::watchdog::Watchdog;
use super::{enabled, Violations};

/// Connections not yet closed that the workers keep at most.
const MAX_LIVE: usize = 32;
/// Pool names: few, so that names are reused.
pub const POOL_NAMES: [&str; 3] = ["p0", "p1", "p2"];
/// How long a disconnect may take: grace (at most 0.5 s here), the wait
/// for the peer's FIN (1 s), and a busy machine.
const DISCONNECT_BOUND: Duration = Duration::from_secs(10);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A connection the test made, with the state its handler shares.
pub struct Tracked {
    pub conn: Connection,
    pub st: Arc<ConnState>,
    pub pool: Option<String>,
    /// Sockets handed out earlier, kept to send on once they are stale.
    sockets: Mutex<Vec<Socket>>,
}

/// A pool handle the test made.
pub struct PoolRec {
    pub pool: Pool,
    pub name: String,
    /// `disconnect` (or `disconnect_all`) is about to be called on it.
    pub closing: AtomicBool,
    /// ... and has returned: the pool must refuse new members.
    pub closed: AtomicBool,
    /// `add_connection` calls in flight.
    pub adds: AtomicUsize,
    /// Members whose `add_connection` returned `Ok`.
    pub members: Mutex<Vec<Arc<Tracked>>>,
}

pub struct World {
    pub cm: Manager,
    pub endpoints: Vec<SocketAddr>,
    pub conns: Mutex<Vec<Arc<Tracked>>>,
    /// The pool of each name the test considers current.
    pub pools: Mutex<HashMap<String, Arc<PoolRec>>>,
    /// Older handles, disconnected or replaced.
    pub stale: Mutex<Vec<Arc<PoolRec>>>,
    name_locks: HashMap<String, tokio::sync::Mutex<()>>,
    pub ledger: Arc<Ledger>,
    pub v: Violations,
    pub dog: Arc<Watchdog>,
    next_lane: AtomicU32,
    next_tag: AtomicU64,
    /// Checks that outlive the operation that started them.
    pub checks: Mutex<Vec<JoinHandle<()>>>,
    /// Counts of what was done, for the summary.
    pub done: Mutex<HashMap<&'static str, u64>>,
}

impl World {
    pub fn new(
        cm: Manager,
        endpoints: Vec<SocketAddr>,
        ledger: Arc<Ledger>,
        v: Violations,
        dog: Arc<Watchdog>,
    ) -> Arc<World> {
        Arc::new(World {
            cm,
            endpoints,
            conns: Mutex::default(),
            pools: Mutex::default(),
            stale: Mutex::default(),
            name_locks: POOL_NAMES
                .iter()
                .map(|n| (n.to_string(), tokio::sync::Mutex::new(())))
                .collect(),
            ledger,
            v,
            dog,
            next_lane: AtomicU32::new(1),
            next_tag: AtomicU64::new(1),
            checks: Mutex::default(),
            done: Mutex::default(),
        })
    }

    fn count(&self, what: &'static str) {
        *self.done.lock().unwrap().entry(what).or_default() += 1;
    }

    fn lane(&self, single_connection: bool) -> u32 {
        let lane = self.next_lane.fetch_add(1, Ordering::Relaxed);
        self.ledger.lane(lane, single_connection);
        lane
    }

    fn live(&self) -> usize {
        self.conns
            .lock()
            .unwrap()
            .iter()
            .filter(|t| t.conn.state() != State::Closed)
            .count()
    }

    fn pick_conn(&self, rng: &mut SplitMix64) -> Option<Arc<Tracked>> {
        let conns = self.conns.lock().unwrap();
        let open: Vec<&Arc<Tracked>> = conns.iter().filter(|t| !t.st.is_closed()).collect();
        if !open.is_empty() && rng.below(10) != 0 {
            return Some(open[rng.below(open.len() as u64) as usize].clone());
        }
        if conns.is_empty() {
            return None;
        }
        Some(conns[rng.below(conns.len() as u64) as usize].clone())
    }

    fn find(&self, id: u64) -> Option<Arc<Tracked>> {
        self.conns
            .lock()
            .unwrap()
            .iter()
            .find(|t| t.conn.id() == id)
            .cloned()
    }

    fn handler(&self, rng: &mut SplitMix64) -> Arc<ConnState> {
        let panic_in = match rng.below(20) {
            0 => Some(PanicIn::Connect(rng.between(1, 3) as u32)),
            1 => Some(PanicIn::Data(rng.between(1, 50) as u32)),
            2 => Some(PanicIn::Reset(rng.between(1, 3) as u32)),
            _ => None,
        };
        let tag = self.next_tag.fetch_add(1, Ordering::Relaxed);
        ConnState::new(
            tag,
            self.lane(true),
            panic_in,
            rng.fork(),
            self.ledger.clone(),
            self.v.clone(),
        )
    }

    fn track(&self, conn: Connection, st: Arc<ConnState>, pool: Option<String>) -> Arc<Tracked> {
        let t = Arc::new(Tracked {
            conn,
            st,
            pool,
            sockets: Mutex::default(),
        });
        self.conns.lock().unwrap().push(t.clone());
        t
    }

    /// Marks every connection in `ids` as asked to stop: from now on none
    /// of them may start a connection.
    fn stop_requested(&self, ids: &[u64]) {
        let conns = self.conns.lock().unwrap();
        for t in conns.iter().filter(|t| ids.contains(&t.conn.id())) {
            t.st.stop_requested.store(true, Ordering::SeqCst);
        }
    }
}

fn options(rng: &mut SplitMix64) -> Options {
    let backoff = Backoff::new(ms(rng.between(2, 20)), 2.0, ms(rng.between(50, 400)))
        .unwrap()
        .with_jitter(Jitter::Full);
    let mut o = Options::new()
        .backoff(backoff)
        .connect_timeout(Duration::from_secs(1))
        .stable_after(ms(rng.between(50, 1000)))
        .send_queue_limit(rng.between(16 << 10, 2 << 20) as usize)
        .close_grace(ms(rng.between(20, 500)));
    if rng.below(10) < 4 {
        o = o.outage(Outage::Buffer {
            max_bytes: rng.between(4 << 10, 512 << 10) as usize,
        });
    }
    if rng.below(10) < 2 {
        o = o.idle_timeout(Some(ms(rng.between(500, 2000))));
    }
    if rng.below(10) == 0 {
        o = o.max_attempts(rng.between(1, 10) as u32);
    }
    if rng.below(10) == 0 {
        o = o.heartbeat(Some(ms(rng.between(100, 1000))));
    }
    o
}

fn frame_size(rng: &mut SplitMix64) -> usize {
    (match rng.below(100) {
        0..=79 => rng.between(16, 300),
        80..=96 => rng.between(1 << 10, 16 << 10),
        _ => rng.between(32 << 10, 300 << 10),
    }) as usize
}

/// One randomly chosen operation.
pub async fn step(w: &Arc<World>, rng: &mut SplitMix64) {
    match rng.below(100) {
        0..=7 => connect(w, rng),
        8..=29 => send_burst(w, rng, Path::Send).await,
        30..=37 => send_burst(w, rng, Path::Write).await,
        38..=43 => send_burst(w, rng, Path::Socket).await,
        44..=51 => sender_burst(w, rng).await,
        52..=55 => create_pool(w, rng).await,
        56..=62 => pool_add(w, rng),
        63..=70 => pool_send(w, rng).await,
        71..=73 => pool_disconnect(w, rng, false).await,
        74..=75 if enabled("stale_pool_handle") => stale_pool_disconnect(w, rng).await,
        76 if enabled("add_during_pool_disconnect") => pool_disconnect(w, rng, true).await,
        77..=80 => lookups(w, rng),
        81..=86 => waits(w, rng).await,
        87..=95 => disconnect(w, rng).await,
        96 if rng.below(4) == 0 => disconnect_all(w, rng).await,
        _ => tokio::time::sleep(ms(rng.between(1, 20))).await,
    }
}

fn connect(w: &Arc<World>, rng: &mut SplitMix64) {
    if w.live() >= MAX_LIVE {
        return;
    }
    let ep = w.endpoints[rng.below(w.endpoints.len() as u64) as usize];
    let st = w.handler(rng);
    match w.cm.connect_with(ep, Probe(st.clone()), options(rng)) {
        Ok(conn) => {
            w.track(conn, st, None);
            w.count("connect");
        }
        Err(e) => w.v.add(format!("connect_with({ep}) failed: {e}")),
    }
}

#[derive(Debug, Clone, Copy)]
enum Path {
    Send,
    Write,
    Socket,
}

/// What an error handed back must be: the refused frame, whole.
fn check_refused(w: &World, id: FrameId, f: &[u8], e: &SendError, path: &str) {
    if e.data() != f {
        w.v.add(format!(
            "{path}: the error for {id} carries {} bytes, not the {} sent",
            e.data().len(),
            f.len()
        ));
    }
}

async fn send_burst(w: &Arc<World>, rng: &mut SplitMix64, path: Path) {
    let Some(t) = w.pick_conn(rng) else { return };
    let lane = w.lane(true);
    w.count(match path {
        Path::Send => "Connection::send burst",
        Path::Write => "Connection::write burst",
        Path::Socket => "Socket::send burst",
    });
    let sock = match path {
        Path::Socket => {
            let mut kept = t.sockets.lock().unwrap();
            if let Some(s) = t.conn.socket() {
                kept.push(s);
                if kept.len() > 3 {
                    kept.remove(0);
                }
            }
            match kept.len() {
                0 => return,
                n => Some(kept[rng.below(n as u64) as usize].clone()),
            }
        }
        _ => None,
    };
    for seq in 0..rng.between(1, 12) as u32 {
        let id = FrameId { lane, seq };
        let f = frame::encode(id, frame_size(rng));
        let r = match path {
            Path::Send => Some(t.conn.send(&f)),
            Path::Socket => sock.as_ref().map(|s| s.send(&f)),
            Path::Write => {
                let _op = w.dog.op(
                    format!("Connection::write on #{}", t.st.tag),
                    Duration::from_secs(1),
                );
                tokio::time::timeout(Duration::from_secs(1), t.conn.write(&f))
                    .await
                    .ok()
            }
        };
        match r {
            Some(Ok(())) => w.ledger.sent(&w.v, id, f.len(), Some(true)),
            Some(Err(e)) => {
                check_refused(w, id, &f, &e, &format!("{path:?}"));
                w.ledger.sent(&w.v, id, f.len(), Some(false));
            }
            None => {
                w.ledger.sent(&w.v, id, f.len(), None);
                return;
            }
        }
    }
}

async fn sender_burst(w: &Arc<World>, rng: &mut SplitMix64) {
    let Some(t) = w.pick_conn(rng) else { return };
    w.count("Sender burst");
    let lane = w.lane(true);
    let mut tx = t.conn.sender();
    let mut held: Vec<(FrameId, usize)> = Vec::new();
    for seq in 0..rng.between(1, 40) as u32 {
        let id = FrameId { lane, seq };
        let f = frame::encode(id, frame_size(rng));
        match tx.send(&f) {
            Ok(()) => {
                w.ledger.sent(&w.v, id, f.len(), Some(true));
                held.push((id, f.len()));
            }
            Err(e) => {
                // Every byte the sender held comes back, this frame last.
                if !e.data().ends_with(&f) {
                    w.v.add(format!(
                        "Sender::send: the error for {id} does not end with it"
                    ));
                }
                w.ledger.sent(&w.v, id, f.len(), Some(false));
                w.ledger.handed_back_bytes(&w.v, e.data(), Some(id));
                held.clear();
            }
        }
        if tx.held() == 0 {
            held.clear();
        }
    }
    if rng.below(2) == 0 {
        let _op = w.dog.op(
            format!("Sender::flush on #{}", t.st.tag),
            Duration::from_secs(1),
        );
        match tokio::time::timeout(Duration::from_secs(1), tx.flush()).await {
            Ok(Ok(())) => held.clear(),
            Ok(Err(e)) => {
                w.ledger.handed_back_bytes(&w.v, e.data(), None);
                held.clear();
            }
            Err(_) if tx.held() == 0 => held.clear(),
            Err(_) => {}
        }
    }
    let sum: usize = held.iter().map(|h| h.1).sum();
    if sum != tx.held() {
        w.v.add(format!(
            "Sender holds {} bytes, the frames it took since its last hand-over make {sum}",
            tx.held()
        ));
    }
    if !held.is_empty() {
        w.ledger.dropped_sender(&held);
    }
    drop(tx);
}

fn current_pool(w: &World, name: &str) -> Option<Arc<PoolRec>> {
    w.pools.lock().unwrap().get(name).cloned()
}

async fn create_pool(w: &Arc<World>, rng: &mut SplitMix64) {
    let name = POOL_NAMES[rng.below(POOL_NAMES.len() as u64) as usize];
    let _l = w.name_locks[name].lock().await;
    let live = current_pool(w, name).is_some_and(|r| !r.closing.load(Ordering::SeqCst));
    match w.cm.create_pool(name) {
        Ok(pool) => {
            w.count("create_pool");
            if live {
                w.v.add(format!(
                    "create_pool({name}) succeeded while the pool of that name is open"
                ));
            }
            let rec = Arc::new(PoolRec {
                pool,
                name: name.to_string(),
                closing: AtomicBool::new(false),
                closed: AtomicBool::new(false),
                adds: AtomicUsize::new(0),
                members: Mutex::default(),
            });
            if let Some(old) = w.pools.lock().unwrap().insert(name.to_string(), rec) {
                w.stale.lock().unwrap().push(old);
            }
        }
        Err(PoolError::NameTaken { .. }) if live => {}
        Err(e) => w.v.add(format!(
            "create_pool({name}) failed though no pool of that name is open: {e}"
        )),
    }
}

/// A pool handle: the current one of a name, or sometimes an old one.
fn pick_pool(w: &World, rng: &mut SplitMix64) -> Option<Arc<PoolRec>> {
    if rng.below(5) == 0 {
        let stale = w.stale.lock().unwrap();
        if !stale.is_empty() {
            return Some(stale[rng.below(stale.len() as u64) as usize].clone());
        }
    }
    let name = POOL_NAMES[rng.below(POOL_NAMES.len() as u64) as usize];
    current_pool(w, name)
}

fn add_to(w: &Arc<World>, rec: &Arc<PoolRec>, rng: &mut SplitMix64) -> bool {
    let was_closed = rec.closed.load(Ordering::SeqCst);
    rec.adds.fetch_add(1, Ordering::SeqCst);
    let ep = w.endpoints[rng.below(w.endpoints.len() as u64) as usize];
    let st = w.handler(rng);
    let r = rec
        .pool
        .add_connection_with(ep, Probe(st.clone()), options(rng));
    let added = match r {
        Ok(conn) => {
            if was_closed {
                w.v.add(format!(
                    "add_connection on pool {} returned Ok after its disconnect() had returned",
                    rec.name
                ));
            }
            let t = w.track(conn, st, Some(rec.name.clone()));
            rec.members.lock().unwrap().push(t);
            true
        }
        Err(ConnectError::PoolClosed { .. }) => {
            if !rec.closing.load(Ordering::SeqCst) {
                w.v.add(format!(
                    "add_connection on open pool {} refused: pool closed",
                    rec.name
                ));
            }
            false
        }
        Err(e) => {
            w.v.add(format!("add_connection on pool {}: {e}", rec.name));
            false
        }
    };
    rec.adds.fetch_sub(1, Ordering::SeqCst);
    added
}

fn pool_add(w: &Arc<World>, rng: &mut SplitMix64) {
    if w.live() >= MAX_LIVE {
        return;
    }
    if let Some(rec) = pick_pool(w, rng) {
        w.count("Pool::add_connection");
        add_to(w, &rec, rng);
    }
}

async fn pool_send(w: &Arc<World>, rng: &mut SplitMix64) {
    let Some(rec) = pick_pool(w, rng) else { return };
    let lane = w.lane(false);
    let how = rng.below(if enabled("send_wait") { 3 } else { 2 });
    w.count(["Pool::send", "Pool::pick + send", "Pool::send_wait"][how as usize]);
    for seq in 0..rng.between(1, 8) as u32 {
        let id = FrameId { lane, seq };
        let f = frame::encode(id, frame_size(rng));
        let r = match how {
            0 => Some(rec.pool.send(&f)),
            1 => match rec.pool.pick() {
                Some(c) => Some(c.send(&f)),
                None => return,
            },
            _ => {
                let timeout = ms(rng.between(10, 1000));
                let what = format!("Pool::send_wait({timeout:?}) on pool {}", rec.name);
                let _op = w.dog.op(what.clone(), timeout);
                let r = tokio::time::timeout(
                    timeout + Duration::from_secs(2),
                    rec.pool.send_wait(&f, timeout),
                )
                .await;
                if r.is_err() {
                    w.v.add(format!("{what} did not return by its timeout"));
                }
                r.ok()
            }
        };
        match r {
            Some(Ok(())) => w.ledger.sent(&w.v, id, f.len(), Some(true)),
            Some(Err(e)) => {
                check_refused(w, id, &f, &e, "pool send");
                w.ledger.sent(&w.v, id, f.len(), Some(false));
            }
            None => {
                w.ledger.sent(&w.v, id, f.len(), None);
                return;
            }
        }
    }
}

/// Disconnects the current pool of a random name; with `racing_adds`,
/// while another task keeps adding members to it.
async fn pool_disconnect(w: &Arc<World>, rng: &mut SplitMix64, racing_adds: bool) {
    let name = POOL_NAMES[rng.below(POOL_NAMES.len() as u64) as usize];
    let _l = w.name_locks[name].lock().await;
    let Some(rec) = current_pool(w, name) else {
        return;
    };
    w.count(if racing_adds {
        "Pool::disconnect racing adds"
    } else {
        "Pool::disconnect"
    });
    // A thread of its own, so that the adds and the disconnect overlap on
    // either runtime flavour.
    let adder = racing_adds.then(|| {
        let (w, rec, mut rng) = (w.clone(), rec.clone(), rng.fork());
        let started = Arc::new(AtomicBool::new(false));
        let s = started.clone();
        let h = std::thread::spawn(move || {
            for i in 0..200 {
                if !add_to(&w, &rec, &mut rng) {
                    break;
                }
                if i == 0 {
                    s.store(true, Ordering::SeqCst);
                }
            }
            s.store(true, Ordering::SeqCst);
        });
        while !started.load(Ordering::SeqCst) {
            std::hint::spin_loop();
        }
        h
    });
    let before: Vec<u64> = rec.pool.connections().iter().map(Connection::id).collect();
    rec.closing.store(true, Ordering::SeqCst);
    let d = rec.pool.disconnect();
    rec.closed.store(true, Ordering::SeqCst);
    w.stop_requested(&before);
    {
        let mut pools = w.pools.lock().unwrap();
        if pools.get(name).is_some_and(|r| Arc::ptr_eq(r, &rec)) {
            pools.remove(name);
        }
    }
    w.stale.lock().unwrap().push(rec.clone());
    if rng.below(2) == 0 {
        let _op = w
            .dog
            .op(format!("Pool::disconnect of {name}"), DISCONNECT_BOUND);
        if tokio::time::timeout(DISCONNECT_BOUND, d).await.is_err() {
            w.v.add(format!(
                "Pool::disconnect of {name} did not finish in {DISCONNECT_BOUND:?}"
            ));
        }
    }
    if let Some(a) = adder {
        let _ = tokio::task::spawn_blocking(move || a.join()).await;
    }
    // Every member whose add returned Ok must close with the pool.
    let (w2, rec2) = (w.clone(), rec.clone());
    let check = tokio::spawn(async move {
        let give_up = tokio::time::Instant::now() + DISCONNECT_BOUND;
        while rec2.adds.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < give_up {
            tokio::time::sleep(ms(5)).await;
        }
        loop {
            let open: Vec<(u64, State)> = rec2
                .members
                .lock()
                .unwrap()
                .iter()
                .filter(|t| t.conn.state() != State::Closed)
                .map(|t| (t.st.tag, t.conn.state()))
                .collect();
            if open.is_empty() {
                return;
            }
            if tokio::time::Instant::now() > give_up {
                w2.v.add(format!(
                    "pool {}: members added with Ok are still open {DISCONNECT_BOUND:?} after its disconnect: {open:?}",
                    rec2.name
                ));
                return;
            }
            tokio::time::sleep(ms(20)).await;
        }
    });
    w.checks.lock().unwrap().push(check);
}

/// Disconnects an old handle of a name; the newer pool of that name must
/// stay registered.
async fn stale_pool_disconnect(w: &Arc<World>, rng: &mut SplitMix64) {
    let name = POOL_NAMES[rng.below(POOL_NAMES.len() as u64) as usize];
    let _l = w.name_locks[name].lock().await;
    let old: Vec<Arc<PoolRec>> = w
        .stale
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.name == name)
        .cloned()
        .collect();
    if old.is_empty() {
        return;
    }
    w.count("Pool::disconnect of an old handle");
    let rec = &old[rng.below(old.len() as u64) as usize];
    rec.closing.store(true, Ordering::SeqCst);
    let before: Vec<u64> = rec.pool.connections().iter().map(Connection::id).collect();
    let _ = rec.pool.disconnect();
    rec.closed.store(true, Ordering::SeqCst);
    w.stop_requested(&before);
    let Some(current) = current_pool(w, name) else {
        return;
    };
    if current.closing.load(Ordering::SeqCst) {
        return;
    }
    if w.cm.get_pool(name).is_none() {
        w.v.add(format!(
            "disconnect() of an old handle of pool {name} removed the newer, open pool"
        ));
    }
    if let Ok(twin) = w.cm.create_pool(name) {
        w.v.add(format!("after disconnect() of an old handle, create_pool({name}) succeeded beside the open pool"));
        let _ = twin.disconnect();
    }
}

fn lookups(w: &Arc<World>, rng: &mut SplitMix64) {
    w.count("lookups");
    let ep = w.endpoints[rng.below(w.endpoints.len() as u64) as usize];
    let want = ep.to_endpoint().unwrap();
    if let Some(c) = w.cm.get_connection(ep) {
        if c.endpoint() != &want || c.pool().is_some() {
            w.v.add(format!(
                "get_connection({ep}) returned {c:?} in pool {:?}",
                c.pool()
            ));
        }
    }
    for c in w.cm.connections_to(ep) {
        if c.endpoint() != &want {
            w.v.add(format!("connections_to({ep}) returned {c:?}"));
        }
    }
    let name = POOL_NAMES[rng.below(POOL_NAMES.len() as u64) as usize];
    if let Some(p) = w.cm.get_pool(name) {
        if p.name() != name {
            w.v.add(format!("get_pool({name}) returned pool {}", p.name()));
        }
        let _ = (p.live(), p.is_ready(), p.connections().len());
    }
    let _ = w.cm.connections().len();
}

async fn waits(w: &Arc<World>, rng: &mut SplitMix64) {
    let bound = ms(rng.between(10, 500));
    if rng.below(3) == 0 {
        if let Some(rec) = pick_pool(w, rng) {
            w.count("Pool::wait_live");
            let _op = w.dog.op(format!("Pool::wait_live on {}", rec.name), bound);
            let _ = tokio::time::timeout(bound, rec.pool.wait_live(1)).await;
        }
        return;
    }
    let Some(t) = w.pick_conn(rng) else { return };
    w.count("Connection::wait_connected");
    let _op = w.dog.op(format!("wait_connected on #{}", t.st.tag), bound);
    match tokio::time::timeout(bound, t.conn.wait_connected()).await {
        Ok(Ok(sock)) => {
            if sock.generation() == 0 {
                w.v.add(format!(
                    "conn #{}: wait_connected gave a socket of generation 0",
                    t.st.tag
                ));
            }
            let mut kept = t.sockets.lock().unwrap();
            kept.push(sock);
            if kept.len() > 3 {
                kept.remove(0);
            }
        }
        Ok(Err(e)) => {
            if t.conn.state() != State::Closed {
                w.v.add(format!(
                    "conn #{}: wait_connected failed ({e}) in state {}",
                    t.st.tag,
                    t.conn.state()
                ));
            }
        }
        Err(_) => {}
    }
}

async fn disconnect(w: &Arc<World>, rng: &mut SplitMix64) {
    let Some(t) = w.pick_conn(rng) else { return };
    let abort = rng.below(10) < 3;
    w.count(if abort {
        "Connection::abort"
    } else {
        "Connection::disconnect"
    });
    let d = if abort {
        t.conn.abort()
    } else {
        t.conn.disconnect()
    };
    t.st.stop_requested.store(true, Ordering::SeqCst);
    if rng.below(2) == 0 {
        let _op = w
            .dog
            .op(format!("disconnect of #{}", t.st.tag), DISCONNECT_BOUND);
        if tokio::time::timeout(DISCONNECT_BOUND, d).await.is_err() {
            w.v.add(format!(
                "conn #{}: disconnect did not finish in {DISCONNECT_BOUND:?}",
                t.st.tag
            ));
            return;
        }
        let closes = t.st.closes.load(Ordering::SeqCst);
        if closes != 1 || t.conn.state() != State::Closed {
            w.v.add(format!(
                "conn #{}: awaited disconnect returned with on_close run {closes} times, state {}",
                t.st.tag,
                t.conn.state()
            ));
        }
    }
}

/// Holds every pool name: what the test knows of pools stays true while
/// a disconnect of all of them runs.
async fn lock_all_names(w: &World) -> Vec<tokio::sync::MutexGuard<'_, ()>> {
    let mut held = Vec::new();
    for name in POOL_NAMES {
        held.push(w.name_locks[name].lock().await);
    }
    held
}

async fn disconnect_all(w: &Arc<World>, rng: &mut SplitMix64) {
    w.count("Manager::disconnect_all");
    let names = lock_all_names(w).await;
    let before: Vec<u64> = w.cm.connections().iter().map(Connection::id).collect();
    let recs: Vec<Arc<PoolRec>> = w.pools.lock().unwrap().drain().map(|(_, r)| r).collect();
    for r in &recs {
        r.closing.store(true, Ordering::SeqCst);
    }
    let d = w.cm.disconnect_all();
    for r in &recs {
        r.closed.store(true, Ordering::SeqCst);
    }
    w.stop_requested(&before);
    w.stale.lock().unwrap().extend(recs);
    drop(names);
    if rng.below(2) == 0 {
        let _op = w.dog.op("Manager::disconnect_all", DISCONNECT_BOUND);
        if tokio::time::timeout(DISCONNECT_BOUND, d).await.is_err() {
            w.v.add(format!(
                "disconnect_all did not finish in {DISCONNECT_BOUND:?}"
            ));
        }
    }
}

/// Ends the round: every check started by an operation, then
/// `disconnect_all`, awaited; afterwards nothing may be open.
pub async fn finish(w: &Arc<World>) {
    let checks = std::mem::take(&mut *w.checks.lock().unwrap());
    for c in checks {
        let _ = c.await;
    }
    let names = lock_all_names(w).await;
    let before: Vec<u64> = w.cm.connections().iter().map(Connection::id).collect();
    for r in w.pools.lock().unwrap().values() {
        r.closing.store(true, Ordering::SeqCst);
    }
    let d = w.cm.disconnect_all();
    for r in w.pools.lock().unwrap().values() {
        r.closed.store(true, Ordering::SeqCst);
    }
    w.stop_requested(&before);
    drop(names);
    let _op = w.dog.op("the final disconnect_all", DISCONNECT_BOUND);
    if tokio::time::timeout(DISCONNECT_BOUND, d).await.is_err() {
        w.v.add(format!(
            "the final disconnect_all did not finish in {DISCONNECT_BOUND:?}"
        ));
    }
    let left = w.cm.connections();
    if !left.is_empty() {
        w.v.add(format!(
            "after the final disconnect_all the manager still lists {left:?}"
        ));
    }
    for t in w.conns.lock().unwrap().iter() {
        let closes = t.st.closes.load(Ordering::SeqCst);
        if closes != 1 || t.conn.state() != State::Closed {
            w.v.add(format!(
                "conn #{} (pool {:?}): after the final disconnect_all, on_close ran {closes} times, state {}",
                t.st.tag,
                t.pool,
                t.conn.state()
            ));
        }
        t.sockets.lock().unwrap().clear();
    }
}

/// `bytes_out` and `discarded_bytes` over every connection of the round,
/// and what is still queued anywhere.
pub fn totals(w: &World) -> (u64, u64, usize) {
    let conns = w.conns.lock().unwrap();
    conns.iter().fold((0, 0, 0), |(o, d, q), t| {
        let s = t.conn.stats();
        if s.discarded_bytes < s.sender_dropped {
            w.v.add(format!(
                "conn #{}: discarded_bytes {} below sender_dropped {}",
                t.st.tag, s.discarded_bytes, s.sender_dropped
            ));
        }
        (o + s.bytes_out, d + s.discarded_bytes, q + s.queued)
    })
}
