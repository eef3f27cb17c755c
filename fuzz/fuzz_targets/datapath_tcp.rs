//! The data path driven by arbitrary operation sequences against a real
//! loopback peer: sends on every path (`Connection::send`, `Socket::send`
//! on live and stale sockets, `Sender` sends, hand-overs and drops, a
//! `Stream`'s writes and `take_unsent`), partial writes (4 KiB socket
//! buffers and a peer that reads only when told), resets and closes from
//! the peer, local disconnects and aborts, and outage buffering.
//!
//! Input bytes: the first few choose the mode (callbacks or `Stream`) and
//! the options (queue limit, outage policy, close grace); each following
//! pair is one operation and its size. One current-thread runtime runs
//! the connection, and only while the target lets it (a "settle" step), so
//! between steps nothing moves and the ledger must hold exactly:
//!
//! accepted = written (`bytes_out`) + handed back (`SendError`s of
//! hand-overs, `Reset::unsent`, `Close::unsent`, `Stream::take_unsent`) +
//! queued (waiting, in flight, outage buffer) + held by senders +
//! discarded (`sender_dropped`),
//!
//! where a `Stream` may hold a reset's unsent bytes until they are taken
//! (so "≤" between steps, "=" once closed and taken). The peer never reads
//! more than was written.
//!
//! `REDIAL_FUZZ_CALLBACKS_ONLY=1` leaves out `Stream` mode, to fuzz the
//! rest while a `Stream` defect is open.

#![no_main]

use std::io::Read;
use std::net::TcpStream;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use redial::fuzzing::queue_bytes;
use redial::{
    Backoff, Connection, Manager, Options, Outage, Sender, Socket, State, Stream, Unsent,
};
use tokio::io::AsyncWrite;
use tokio::net::{TcpListener, TcpSocket};

#[path = "../common/bytes.rs"]
mod bytes;
use bytes::Bytes;

/// Operations per input: enough to cross every path, few enough that an
/// input runs in well under a second.
const MAX_OPS: usize = 200;

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
}

fuzz_target!(|data: &[u8]| {
    RUNTIME.with(|rt| rt.block_on(run(data)));
});

/// Unwritten bytes an `Unsent` hands back.
fn unsent_bytes(u: &Unsent) -> u64 {
    let partial = u.partial().map_or(0, |p| p.data.len() - p.written);
    (u.len() + partial) as u64
}

#[derive(Default)]
struct Record {
    handed_back: u64,
    closes: u32,
}

/// The application side under test: a callback connection or a `Stream`.
enum App {
    Callbacks {
        conn: Connection,
        senders: Vec<Sender>,
        sockets: Vec<Socket>,
        rec: Arc<Mutex<Record>>,
    },
    Stream {
        stream: Stream,
        taken: u64,
    },
}

impl App {
    fn conn(&self) -> &Connection {
        match self {
            App::Callbacks { conn, .. } => conn,
            App::Stream { stream, .. } => stream.connection(),
        }
    }
}

struct Peer {
    listener: TcpListener,
    conns: Vec<TcpStream>,
    read: u64,
}

impl Peer {
    fn accept(&mut self) {
        let mut cx = Context::from_waker(Waker::noop());
        while let Poll::Ready(Ok((s, _))) = self.listener.poll_accept(&mut cx) {
            // A plain (non-blocking) std stream: read and half-closed
            // without a runtime.
            if let Ok(s) = s.into_std() {
                self.conns.push(s);
            }
        }
    }

    fn read(&mut self, max: usize) {
        let mut buf = vec![0u8; max.max(1)];
        if let Some(mut s) = self.conns.last() {
            if let Ok(n) = s.read(&mut buf) {
                self.read += n as u64;
            }
        }
    }
}

async fn settle(rounds: usize, peer: &mut Peer) {
    for _ in 0..rounds {
        tokio::task::yield_now().await;
        peer.accept();
    }
}

fn payload(n: usize) -> Vec<u8> {
    (0..n).map(|i| i as u8).collect()
}

/// Checks the ledger; `exact` once nothing can hide in a `Stream`.
fn check(app: &App, accepted: u64, peer: &Peer, exact: bool) {
    let conn = app.conn();
    let s = conn.stats();
    let (waiting, inflight, outage) = queue_bytes(conn);
    assert_eq!(
        s.queued,
        waiting + inflight,
        "Stats::queued is what waits plus what is in flight"
    );
    let queued = (waiting + inflight + outage) as u64;
    let (handed_back, held) = match app {
        App::Callbacks { rec, senders, .. } => (
            rec.lock().unwrap().handed_back,
            senders.iter().map(|t| t.held() as u64).sum::<u64>(),
        ),
        App::Stream { taken, .. } => (*taken, 0),
    };
    let accounted = s.bytes_out + handed_back + queued + held + s.sender_dropped;
    let exact = exact || matches!(app, App::Callbacks { .. });
    let what = format!(
        "accepted {accepted}, written {}, handed back {handed_back}, queued {queued} (outage {outage}), \
         held by senders {held}, discarded {}",
        s.bytes_out, s.sender_dropped
    );
    if exact {
        assert_eq!(accepted, accounted, "ledger: {what}");
    } else {
        assert!(
            accounted <= accepted,
            "ledger, more accounted than accepted: {what}"
        );
    }
    assert!(
        peer.read <= s.bytes_out,
        "the peer read {} bytes of {} written",
        peer.read,
        s.bytes_out
    );
}

async fn run(data: &[u8]) {
    let mut b = Bytes(data);
    let stream_mode = b.u8() & 1 == 1 && std::env::var_os("REDIAL_FUZZ_CALLBACKS_ONLY").is_none();
    let limit = 1024 + usize::from(b.u16());
    let outage = match b.u8() % 3 {
        0 => Outage::Reject,
        _ => Outage::Buffer {
            max_bytes: usize::from(b.u16()),
        },
    };
    let grace = Duration::from_millis(u64::from(b.u8() % 40));
    let backoff = Backoff::new(Duration::from_millis(1), 2.0, Duration::from_millis(4))
        .expect("valid backoff");
    let opts = Options::new()
        .backoff(backoff)
        .send_queue_limit(limit)
        .outage(outage)
        .close_grace(grace)
        .keepalive(None)
        .configure_socket(|s| s.set_send_buffer_size(4096));

    let sock = TcpSocket::new_v4().expect("socket");
    sock.set_recv_buffer_size(4096).expect("recv buffer");
    sock.bind("127.0.0.1:0".parse().expect("addr"))
        .expect("bind");
    let listener = sock.listen(16).expect("listen");
    let addr = listener.local_addr().expect("addr");
    let mut peer = Peer {
        listener,
        conns: Vec::new(),
        read: 0,
    };

    let cm = Manager::new();
    let mut app = if stream_mode {
        App::Stream {
            stream: cm.stream(addr, opts).expect("stream"),
            taken: 0,
        }
    } else {
        let rec = Arc::new(Mutex::new(Record::default()));
        let (r1, r2) = (rec.clone(), rec.clone());
        let handler = redial::handler()
            .on_data(|_, _| {})
            .on_reset(move |reset| {
                r1.lock().unwrap().handed_back += unsent_bytes(reset.unsent());
                redial::Resume::Reconnect
            })
            .on_close(move |close| {
                let mut r = r2.lock().unwrap();
                r.handed_back += unsent_bytes(close.unsent());
                r.closes += 1;
            });
        App::Callbacks {
            conn: cm.connect_with(addr, handler, opts).expect("connect"),
            senders: Vec::new(),
            sockets: Vec::new(),
            rec,
        }
    };
    let mut accepted = 0u64;
    settle(4, &mut peer).await;

    for _ in 0..MAX_OPS {
        if b.0.is_empty() {
            break;
        }
        let op = b.u8();
        let arg = b.u8();
        // Sizes from 1 byte to 32 KiB, small ones most often.
        let len = 1 + (usize::from(arg) * usize::from(arg)) / 2;
        match (op % 12, &mut app) {
            (0, App::Callbacks { conn, .. }) => match conn.send(payload(len)) {
                Ok(()) => accepted += len as u64,
                Err(e) => assert_eq!(e.data().len(), len, "a refused send hands back its bytes"),
            },
            (
                1,
                App::Callbacks {
                    conn, senders, rec, ..
                },
            ) => {
                if senders.is_empty() || arg & 3 == 0 {
                    senders.push(conn.sender());
                }
                let i = usize::from(arg) % senders.len();
                let before = senders[i].held();
                match senders[i].send(payload(len)) {
                    Ok(()) => accepted += len as u64,
                    Err(e) => {
                        // Everything the sender held, this send last.
                        assert_eq!(
                            e.data().len(),
                            before + len,
                            "a refused hand-over hands back all"
                        );
                        rec.lock().unwrap().handed_back += before as u64;
                    }
                }
            }
            (2, App::Callbacks { senders, rec, .. }) if !senders.is_empty() => {
                let i = usize::from(arg) % senders.len();
                let before = senders[i].held();
                if let Err(e) = senders[i].try_flush() {
                    assert_eq!(
                        e.data().len(),
                        before,
                        "a refused flush hands back all it held"
                    );
                    rec.lock().unwrap().handed_back += before as u64;
                }
            }
            (3, App::Callbacks { senders, .. }) if !senders.is_empty() => {
                let i = usize::from(arg) % senders.len();
                drop(senders.remove(i));
            }
            (4, App::Callbacks { conn, sockets, .. }) => {
                if let Some(s) = conn.socket() {
                    sockets.push(s);
                }
                if !sockets.is_empty() {
                    let i = usize::from(arg) % sockets.len();
                    match sockets[i].send(payload(len)) {
                        Ok(()) => accepted += len as u64,
                        Err(e) => assert_eq!(e.data().len(), len),
                    }
                }
                if sockets.len() > 4 {
                    sockets.remove(0);
                }
            }
            (0 | 1 | 4, App::Stream { stream, .. }) => {
                let buf = payload(len);
                let mut cx = Context::from_waker(Waker::noop());
                if let Poll::Ready(Ok(n)) = Pin::new(&mut *stream).poll_write(&mut cx, &buf) {
                    assert!(n <= len);
                    accepted += n as u64;
                }
            }
            (2 | 3, App::Stream { stream, taken }) => {
                *taken += stream.take_unsent().iter().map(unsent_bytes).sum::<u64>();
            }
            (5 | 6, _) => peer.read(len * 4),
            (7, _) => {
                // Closing with unread bytes makes the kernel send RST;
                // otherwise FIN.
                if !peer.conns.is_empty() {
                    let i = usize::from(arg) % peer.conns.len();
                    drop(peer.conns.remove(i));
                }
            }
            (8, _) => {
                if let Some(s) = peer.conns.last() {
                    let _ = s.shutdown(std::net::Shutdown::Write);
                }
            }
            (9, _) if arg < 8 => {
                let _ = if arg & 1 == 0 {
                    app.conn().disconnect()
                } else {
                    app.conn().abort()
                };
            }
            _ => settle(1 + usize::from(arg % 8), &mut peer).await,
        }
        check(&app, accepted, &peer, false);
    }

    // The end: senders dropped, the connection closed, everything settled.
    if let App::Callbacks {
        senders, sockets, ..
    } = &mut app
    {
        senders.clear();
        sockets.clear();
    }
    let _ = app.conn().disconnect();
    let mut rounds = 0;
    while app.conn().state() != State::Closed {
        peer.read(1 << 16);
        settle(1, &mut peer).await;
        tokio::time::sleep(Duration::from_millis(1)).await;
        rounds += 1;
        assert!(
            rounds < 5000,
            "the connection did not close within about 5 s"
        );
    }
    if let App::Stream { stream, taken } = &mut app {
        *taken += stream.take_unsent().iter().map(unsent_bytes).sum::<u64>();
    }
    let (waiting, inflight, outage) = queue_bytes(app.conn());
    assert_eq!(
        (waiting, inflight, outage),
        (0, 0, 0),
        "nothing queued after the close"
    );
    check(&app, accepted, &peer, true);
    if let App::Callbacks { rec, .. } = &app {
        assert_eq!(rec.lock().unwrap().closes, 1, "on_close runs once");
    }
    drop(app);
    drop(cm);
    settle(2, &mut peer).await;
}
