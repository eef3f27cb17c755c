//! The `metrics` feature, with a real recorder: through a real loss and
//! reconnect (a loopback server that goes away and comes back), the
//! counters, gauges and histograms move as the events say; and every send
//! a user sees refused is counted once, a pool's and a stream's included.
#![cfg(feature = "metrics")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use metrics::{
    Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};
use redial::{Backoff, EventKind, Jitter, Manager, Options};
use support::wait_until;
use support::TestServer;

/// A metric: its name and its labels, sorted.
type Id = (String, Vec<(String, String)>);

/// Every value recorded, by metric.
#[derive(Default)]
struct Store {
    counters: Mutex<BTreeMap<Id, Arc<AtomicU64>>>,
    gauges: Mutex<BTreeMap<Id, Arc<AtomicU64>>>,
    histograms: Mutex<BTreeMap<Id, Arc<Samples>>>,
    /// Each described metric's type.
    described: Mutex<BTreeMap<String, &'static str>>,
}

#[derive(Default)]
struct Samples(Mutex<Vec<f64>>);

impl HistogramFn for Samples {
    fn record(&self, value: f64) {
        self.0.lock().unwrap().push(value);
    }
}

fn id(key: &Key) -> Id {
    let mut labels: Vec<(String, String)> = key
        .labels()
        .map(|l| (l.key().to_string(), l.value().to_string()))
        .collect();
    labels.sort();
    (key.name().to_string(), labels)
}

struct Rec(&'static Store);

impl Rec {
    fn described(&self, k: KeyName, kind: &'static str) {
        let mut d = self.0.described.lock().unwrap();
        d.insert(k.as_str().to_string(), kind);
    }
}

impl Recorder for Rec {
    fn describe_counter(&self, k: KeyName, _: Option<Unit>, _: SharedString) {
        self.described(k, "counter");
    }
    fn describe_gauge(&self, k: KeyName, _: Option<Unit>, _: SharedString) {
        self.described(k, "gauge");
    }
    fn describe_histogram(&self, k: KeyName, _: Option<Unit>, _: SharedString) {
        self.described(k, "histogram");
    }
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let c = self
            .0
            .counters
            .lock()
            .unwrap()
            .entry(id(key))
            .or_default()
            .clone();
        Counter::from_arc(c)
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        let g = self
            .0
            .gauges
            .lock()
            .unwrap()
            .entry(id(key))
            .or_default()
            .clone();
        Gauge::from_arc(g)
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        let h = self
            .0
            .histograms
            .lock()
            .unwrap()
            .entry(id(key))
            .or_default()
            .clone();
        Histogram::from_arc(h)
    }
}

fn store() -> &'static Store {
    static STORE: OnceLock<&'static Store> = OnceLock::new();
    STORE.get_or_init(|| {
        let s: &'static Store = Box::leak(Box::default());
        metrics::set_global_recorder(Rec(s)).expect("the only recorder");
        s
    })
}

/// The labels of a metric of one endpoint in pool "p", plus `extra`.
fn labels(endpoint: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    labels_in("p", endpoint, extra)
}

/// The labels of a metric of one endpoint in `pool` ("" for none), plus
/// `extra`.
fn labels_in(pool: &str, endpoint: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut l: Vec<(String, String)> = [("endpoint", endpoint), ("pool", pool)]
        .iter()
        .chain(extra)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    l.sort();
    l
}

fn counter(name: &str, labels: Vec<(String, String)>) -> u64 {
    let c = store().counters.lock().unwrap();
    c.get(&(name.to_string(), labels))
        .map_or(0, |v| v.load(Ordering::SeqCst))
}

/// Sum of a counter over every value of its `reason` label.
fn counter_all_reasons(name: &str, endpoint: &str) -> u64 {
    let c = store().counters.lock().unwrap();
    c.iter()
        .filter(|((n, l), _)| n == name && l.iter().any(|(k, v)| k == "endpoint" && v == endpoint))
        .map(|(_, v)| v.load(Ordering::SeqCst))
        .sum()
}

fn gauge(name: &str, labels: Vec<(String, String)>) -> f64 {
    let g = store().gauges.lock().unwrap();
    g.get(&(name.to_string(), labels))
        .map_or(0.0, |v| f64::from_bits(v.load(Ordering::SeqCst)))
}

fn samples(name: &str, labels: Vec<(String, String)>) -> Vec<f64> {
    let h = store().histograms.lock().unwrap();
    h.get(&(name.to_string(), labels))
        .map_or(Vec::new(), |s| s.0.lock().unwrap().clone())
}

const SOON: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_move_as_events_say_through_a_loss_and_a_reconnect() {
    store();
    let mut server = TestServer::sink_on("127.0.0.1").await;
    let ep = server.addr.to_string();
    let ep = ep.as_str();
    let cm = Manager::new();
    let mut events = cm.events();
    let pool = cm.create_pool("p").unwrap();
    let opts = Options::new()
        .backoff(
            Backoff::new(Duration::from_millis(100), 1.0, Duration::from_millis(100))
                .unwrap()
                .with_jitter(Jitter::None),
        )
        .stable_after(Duration::from_secs(3600));
    let conn = pool
        .add_connection_with(server.addr, redial::handler(), opts)
        .unwrap();
    let connected = || gauge("redial_connections", labels(ep, &[("state", "connected")]));
    wait_until("connected gauge", SOON, || connected() == 1.0).await;
    assert_eq!(
        gauge("redial_pool_members", vec![("pool".into(), "p".into())]),
        1.0
    );
    assert_eq!(
        gauge(
            "redial_pool_members_connected",
            vec![("pool".into(), "p".into())]
        ),
        1.0
    );

    conn.send("hello").unwrap();
    wait_until("5 bytes sent", SOON, || {
        counter("redial_sent_bytes_total", labels(ep, &[])) == 5
    })
    .await;
    wait_until("5 bytes at the server", SOON, || server.received() == 5).await;

    server.down().await;
    wait_until("two refused attempts", SOON, || {
        counter(
            "redial_connect_failures_total",
            labels(ep, &[("reason", "refused")]),
        ) >= 2
    })
    .await;
    assert_eq!(connected(), 0.0);
    assert_eq!(
        gauge(
            "redial_pool_members_connected",
            vec![("pool".into(), "p".into())]
        ),
        0.0
    );
    assert!(conn.send("while down").is_err());
    assert_eq!(
        counter(
            "redial_sends_refused_total",
            labels(ep, &[("reason", "not_connected")])
        ),
        1
    );

    server.up().await;
    wait_until("connected again", SOON, || connected() == 1.0).await;
    cm.disconnect_all().await;

    // Every event of the connection so far, to hold the counters against.
    let (mut attempts, mut opened, mut failed, mut lost, mut closed) = (0, 0, 0, 0, 0);
    while let Some(e) = events.try_recv() {
        match e.kind {
            EventKind::Connecting { .. } => attempts += 1,
            EventKind::Connected { .. } => opened += 1,
            EventKind::ConnectFailed { .. } => failed += 1,
            EventKind::Reset { .. } => lost += 1,
            EventKind::Closed { .. } => closed += 1,
            _ => {}
        }
    }
    assert_eq!((opened, lost, closed), (2, 1, 1));
    assert!(failed >= 2);
    let c = |name| counter(name, labels(ep, &[]));
    assert_eq!(c("redial_connect_attempts_total"), attempts);
    assert_eq!(c("redial_connections_opened_total"), opened);
    assert_eq!(
        counter_all_reasons("redial_connect_failures_total", ep),
        failed
    );
    assert_eq!(
        counter_all_reasons("redial_connection_losses_total", ep),
        lost
    );
    assert_eq!(
        counter(
            "redial_connection_closes_total",
            labels(ep, &[("reason", "disconnected")])
        ),
        1
    );
    assert_eq!(c("redial_give_ups_total"), 0);
    // Lost well before `stable_after` (an hour): a flap.
    assert_eq!(c("redial_flaps_total"), 1);
    assert_eq!(c("redial_sent_bytes_total"), 5);
    assert_eq!(
        samples("redial_connect_duration_seconds", labels(ep, &[])).len() as u64,
        opened + failed
    );
    let downtime = samples("redial_downtime_seconds", labels(ep, &[]));
    assert_eq!(downtime.len(), 1);
    assert!(downtime[0] > 0.0);
    // One lifetime for the lost connection, one for the closed one.
    assert_eq!(
        samples("redial_connection_lifetime_seconds", labels(ep, &[])).len(),
        2
    );
    // Closed: it left every gauge.
    for state in ["connecting", "connected", "backing_off"] {
        assert_eq!(
            gauge("redial_connections", labels(ep, &[("state", state)])),
            0.0,
            "{state}"
        );
    }
    assert_eq!(
        gauge("redial_pool_members", vec![("pool".into(), "p".into())]),
        0.0
    );
    assert_eq!(gauge("redial_queued_bytes", labels(ep, &[])), 0.0);
    // The process's gauge: the other tests' attempts end too.
    wait_until("no attempt in flight", SOON, || {
        gauge("redial_connect_attempts_in_flight", vec![]) == 0.0
    })
    .await;
}

/// The labels of a pool's own refusal: the pool, no endpoint.
fn pool_refusal(pool: &str, reason: &str) -> u64 {
    let mut l: Vec<(String, String)> = [("endpoint", ""), ("pool", pool), ("reason", reason)]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    l.sort();
    counter("redial_sends_refused_total", l)
}

/// A loopback port nothing listens on.
fn closed_port() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pools_own_refusals_are_counted_under_the_pool() {
    store();
    let cm = Manager::new();
    let pool = cm.create_pool("refusing").unwrap();
    let err = pool.send("to no one").unwrap_err();
    assert!(matches!(err, redial::SendError::PoolEmpty { .. }), "{err}");
    assert_eq!(pool_refusal("refusing", "pool_empty"), 1);

    // A member that never connects: no live member, then a timed-out wait.
    let down = closed_port();
    let member = pool.add_connection(down, redial::handler()).unwrap();
    let err = pool.send("to a member that is down").unwrap_err();
    assert!(
        matches!(err, redial::SendError::NoLiveMember { .. }),
        "{err}"
    );
    assert_eq!(pool_refusal("refusing", "no_live_member"), 1);
    let err = pool
        .send_wait("waits in vain", Duration::from_millis(50))
        .await
        .unwrap_err();
    assert!(matches!(err, redial::SendError::TimedOut { .. }), "{err}");
    assert_eq!(pool_refusal("refusing", "timed_out"), 1);
    // Counted once, under the pool: the member refused nothing itself.
    let ep = down.to_string();
    let member_refusals = |reason: &str| {
        counter(
            "redial_sends_refused_total",
            labels_in("refusing", &ep, &[("reason", reason)]),
        )
    };
    for reason in ["full", "not_connected", "outage_full", "closed"] {
        assert_eq!(member_refusals(reason), 0, "{reason}");
    }
    // A refusal of the member's own is counted under the member.
    assert!(member.send("direct").is_err());
    assert_eq!(member_refusals("not_connected"), 1);
    cm.disconnect_all().await;
}

/// `Pool::send_wait` waiting for room in a member's queue when the member
/// is lost: the caller sees one refusal (the wait timed out), counted once
/// under the pool; the member's lost write is no refusal of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_lost_under_send_wait_is_no_refusal_of_the_member() {
    store();
    // Small fixed socket buffers on both sides (no autotuning): once the
    // queue is full it stays full while nobody reads.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let l = sock.listen(8).unwrap();
    let addr = l.local_addr().unwrap();
    let cm = Manager::new();
    let pool = cm.create_pool("losing").unwrap();
    let opts = Options::new()
        .send_queue_limit(64 * 1024)
        .configure_socket(|s| s.set_send_buffer_size(4096));
    pool.add_connection_with(addr, redial::handler(), opts)
        .unwrap();
    // Accepted and never read: the kernel's buffers fill, then the queue.
    let (peer, _) = tokio::time::timeout(SOON, l.accept())
        .await
        .unwrap()
        .unwrap();
    tokio::time::timeout(SOON, pool.wait_live(1)).await.unwrap();
    let chunk = vec![0u8; 16 * 1024];
    let full = || matches!(pool.send(&chunk), Err(redial::SendError::Full { .. }));
    wait_until("the member's queue is full", SOON, full).await;
    let mut waiting = Box::pin(pool.send_wait(vec![1u8; 16 * 1024], Duration::from_secs(1)));
    // Polled once, it finds no room and waits on the member's queue (it
    // stays full: nobody reads); then the member is lost and cannot come
    // back (nothing listens any more).
    assert!(
        support::poll_once(&mut waiting).await.is_pending(),
        "send_wait found room in a full queue"
    );
    drop(l);
    support::rst(peer);
    let err = tokio::time::timeout(SOON, waiting)
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, redial::SendError::TimedOut { .. }), "{err}");
    assert_eq!(pool_refusal("losing", "timed_out"), 1);
    let ep = addr.to_string();
    for reason in ["full", "not_connected", "outage_full", "closed"] {
        let member = counter(
            "redial_sends_refused_total",
            labels_in("losing", &ep, &[("reason", reason)]),
        );
        assert_eq!(member, 0, "the member counted a {reason} refusal");
    }
    cm.disconnect_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_writes_refused_are_counted() {
    use tokio::io::AsyncWriteExt;
    store();
    let down = closed_port();
    let ep = down.to_string();
    let cm = Manager::new();
    let mut stream = cm.stream(down, Options::new()).unwrap();
    stream.set_outage_wait(Some(Duration::from_millis(50)));
    let refused = |reason: &str| {
        counter(
            "redial_sends_refused_total",
            labels_in("", &ep, &[("reason", reason)]),
        )
    };
    let err = stream.write_all(b"while down").await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotConnected, "{err}");
    assert_eq!(refused("not_connected"), 1);

    stream.shutdown().await.unwrap();
    let err = stream.write_all(b"after the end").await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::BrokenPipe, "{err}");
    assert_eq!(refused("closed"), 1);
    // A flush that found the stream closed refused no bytes of its own.
    let _ = stream.flush().await;
    assert_eq!(refused("closed"), 1);
}

// A real failed handshake (a plaintext server behind a TLS connection) is
// counted `tls`, not by the words of its error.
#[cfg(feature = "tls")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_tls_handshake_is_counted_tls() {
    use tokio::io::AsyncWriteExt;
    store();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let _ = s.write_all(b"HTTP/1.0 200 OK\r\n\r\nplain").await;
        }
    });
    let cm = Manager::new();
    let opts = Options::new()
        .tls(redial::TlsConfig::webpki())
        .max_attempts(2)
        .backoff(Backoff::new(Duration::from_millis(10), 1.0, Duration::from_millis(10)).unwrap());
    let conn = cm.connect_with(addr, redial::handler(), opts).unwrap();
    tokio::time::timeout(SOON, conn.closed()).await.unwrap();
    let ep = addr.to_string();
    let failed = |reason: &str| {
        counter(
            "redial_connect_failures_total",
            labels_in("", &ep, &[("reason", reason)]),
        )
    };
    assert_eq!(failed("tls"), 2);
    assert_eq!(counter_all_reasons("redial_connect_failures_total", &ep), 2);
}

/// The metric table of the crate docs (`src/metrics.rs`): each name with
/// its type.
fn documented() -> BTreeMap<String, String> {
    include_str!("../src/metrics.rs")
        .lines()
        .filter_map(|l| l.strip_prefix("//! | `redial_"))
        .map(|row| {
            let (name, rest) = row.split_once('`').unwrap();
            let kind = rest.split('|').nth(1).unwrap().trim();
            (format!("redial_{name}"), kind.to_string())
        })
        .collect()
}

/// Every metric (any labels) whose `pool` label is `pool`, or that has no
/// labels at all, with its type.
fn emitted_in(pool: &str) -> BTreeMap<String, String> {
    let st = store();
    let ours = |(name, labels): &Id| {
        { labels.is_empty() || labels.iter().any(|(k, v)| k == "pool" && v == pool) }
            .then_some(name.clone())
    };
    let mut out = BTreeMap::new();
    for n in st.counters.lock().unwrap().keys().filter_map(ours) {
        out.insert(n, "counter".to_string());
    }
    for n in st.gauges.lock().unwrap().keys().filter_map(ours) {
        out.insert(n, "gauge".to_string());
    }
    for n in st.histograms.lock().unwrap().keys().filter_map(ours) {
        out.insert(n, "histogram".to_string());
    }
    out
}

/// The table in the crate docs is what the code emits and describes: a
/// pool whose members go through everything the table counts (attempts,
/// a failure and a give-up, data both ways, a recycle, a loss with bytes
/// no one took, a reconnect, a refused send, closes) emits every
/// documented metric with the documented type, and nothing else;
/// `describe()` describes the same set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_table_is_what_is_emitted() {
    use tokio::io::AsyncWriteExt;
    store();
    let table = documented();
    assert_eq!(table.len(), 21, "{table:?}");
    redial::metrics::describe();
    let described: BTreeMap<String, String> = store()
        .described
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.to_string()))
        .collect();
    assert_eq!(described, table, "describe() against the table");

    // A server that greets, never reads, and keeps what it accepted.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let l = sock.listen(8).unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, mut accepted) = tokio::sync::mpsc::unbounded_channel();
    let server = tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let _ = s.write_all(b"hi").await;
            let _ = tx.send(s);
        }
    });
    let cm = Manager::new();
    let pool = cm.create_pool("table").unwrap();
    let opts = Options::new()
        .stable_after(Duration::from_secs(3600))
        .max_lifetime(Duration::from_millis(200))
        .send_queue_limit(64 * 1024)
        .configure_socket(|s| s.set_send_buffer_size(4096));
    let conn = pool
        .add_connection_with(addr, redial::handler(), opts)
        .unwrap();
    let ep = addr.to_string();
    let c = |name: &str| counter(name, labels_in("table", &ep, &[]));
    wait_until("a recycle", SOON, || c("redial_recycles_total") >= 1).await;
    wait_until("bytes read", SOON, || c("redial_received_bytes_total") >= 4).await;
    // Fill the queue, then lose the connection: bytes no one takes.
    let chunk = vec![0u8; 16 * 1024];
    wait_until("a full queue", SOON, || {
        matches!(conn.send(&chunk), Err(redial::SendError::Full { .. }))
    })
    .await;
    let mut latest = None;
    while let Ok(s) = accepted.try_recv() {
        latest = Some(s);
    }
    support::rst(latest.unwrap());
    wait_until("bytes discarded", SOON, || {
        c("redial_discarded_bytes_total") > 0
    })
    .await;
    wait_until("a downtime", SOON, || {
        !samples("redial_downtime_seconds", labels_in("table", &ep, &[])).is_empty()
    })
    .await;
    // A member that gives up at once, and a send it refuses.
    let down = closed_port();
    let gives_up = pool
        .add_connection_with(down, redial::handler(), Options::new().max_attempts(1))
        .unwrap();
    tokio::time::timeout(SOON, gives_up.closed()).await.unwrap();
    assert!(gives_up.send("after the end").is_err());
    cm.disconnect_all().await;
    server.abort();

    assert_eq!(emitted_in("table"), table, "emitted against the table");
}
