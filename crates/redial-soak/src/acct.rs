//! "Nothing lost silently": the soak's side of the per-connection
//! equation in [`account`](crate::account), the same one `redial demo`
//! checks. Every data frame `send` accepted is echoed (in order), handed
//! back, lost in flight (a suffix of what a lost connection wrote) or
//! unanswered at the end; anything else is unaccounted.
//!
//! Frame numbers advance only when `send` accepts a frame, so what one TCP
//! connection carries is a run of consecutive numbers: the echo servers
//! check that on their side, independently of redial's counters.
//!
//! Every TCP connection starts with a hello frame (its generation), which
//! is written before any data frame and is not a data frame itself.
//!
//! Memory stays flat however long the run: only frames in flight are kept.

use std::sync::{Arc, Mutex, MutexGuard};

use redial::{Close, Connection, Reset, Resume, SendError, Socket, Unsent};

use crate::account::{unacked_max, Account, Counts};
use crate::frame::{decode, encode, Frame, DATA, FRAME, HELLO};

/// One connection's account and what the handler needs besides.
#[derive(Debug)]
pub struct Acct {
    pub idx: u32,
    account: Account,
    /// The number of the next data frame (advances on accept only).
    next_seq: u64,
    pub resets: u64,
    pub connects: u64,
    /// The current connection (generation).
    generation: u64,
    /// A connection is up, or was lost without being settled yet.
    live_gen: bool,
    rx: Vec<u8>,
    /// The kernel's acknowledged bytes summed over every connection, or
    /// `None` once one connection went without the kernel's word.
    acked: Option<u64>,
    /// What the close handed back: (non-data bytes written, cut data
    /// frame, whole data frames).
    close: Option<Returned>,
    pub closed: bool,
}

/// What one `Unsent` held.
#[derive(Debug, Default)]
struct Returned {
    /// Bytes of the hello written to the kernel (all, some, or none when
    /// it came back whole).
    hello_written: u64,
    /// The data frame cut mid-write: (number, bytes written).
    cut: Option<(u64, usize)>,
    /// The kernel's acknowledged count of the connection that ended.
    acked: Option<u64>,
    /// Whole data frames, in order.
    frames: Vec<u64>,
}

impl Acct {
    fn classify(&mut self, unsent: &Unsent) -> Returned {
        let mut r = Returned {
            hello_written: FRAME as u64,
            ..Returned::default()
        };
        if let Some(p) = unsent.partial() {
            match decode(&p.data) {
                Some(Frame { kind: HELLO, .. }) => r.hello_written = p.written as u64,
                Some(Frame {
                    kind: DATA,
                    conn,
                    n,
                    ..
                }) if conn == self.idx => r.cut = Some((n, p.written)),
                other => self
                    .account
                    .anomaly(format!("unexpected partial chunk: {other:?}")),
            }
        }
        let chunks: Vec<Option<Frame>> = unsent.chunks().map(decode).collect();
        for f in chunks {
            match f {
                Some(Frame { kind: HELLO, .. }) => r.hello_written = 0,
                Some(Frame {
                    kind: DATA,
                    conn,
                    n,
                    ..
                }) if conn == self.idx => r.frames.push(n),
                other => self
                    .account
                    .anomaly(format!("unexpected chunk handed back: {other:?}")),
            }
        }
        r
    }

    /// The bytes the peer's kernel acknowledged over all this connection's
    /// TCP connections, where the kernel told for every one of them.
    pub fn acked(&self) -> Option<u64> {
        self.acked
    }

    fn add_acked(&mut self, acked: Option<u64>) {
        self.acked = match (self.acked, acked) {
            (Some(sum), Some(a)) => Some(sum + a),
            _ => None,
        };
    }

    /// Frames accepted and not yet echoed, handed back or lost: in flight
    /// on the live connection.
    pub fn outstanding(&self) -> usize {
        self.account.waiting()
    }

    /// The counts so far.
    pub fn counts(&self) -> Counts {
        self.account.counts()
    }

    /// The first anomalies, described.
    pub fn notes(&self) -> &[String] {
        self.account.notes()
    }

    /// After the close: settles the last connection from the total bytes
    /// out. Returns whether this connection is clean.
    pub fn finish(&mut self, bytes_out: u64) -> bool {
        match self.close.take() {
            Some(r) => {
                if self.live_gen {
                    self.add_acked(r.acked);
                }
                self.account.closed(
                    bytes_out,
                    r.acked,
                    self.live_gen,
                    r.hello_written,
                    r.cut,
                    r.frames,
                );
                self.live_gen = false;
            }
            None => self.account.anomaly("no on_close".into()),
        }
        self.account.counts().is_clean()
    }
}

pub type Shared = Arc<Mutex<Acct>>;

pub fn lock(a: &Shared) -> MutexGuard<'_, Acct> {
    a.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn new(idx: u32) -> Shared {
    Arc::new(Mutex::new(Acct {
        idx,
        account: Account::new(FRAME).max_unacked(unacked_max()),
        next_seq: 0,
        resets: 0,
        connects: 0,
        generation: 0,
        live_gen: false,
        rx: Vec::new(),
        acked: Some(0),
        close: None,
        closed: false,
    }))
}

/// Sends the next data frame on `conn`, counting where it went. The lock
/// is held across `send`, so a loss reported meanwhile finds the frame.
pub fn send_next(acct: &Shared, conn: &Connection) {
    let mut a = lock(acct);
    let seq = a.next_seq;
    let frame = encode(DATA, a.idx, seq);
    match conn.send(frame) {
        Ok(()) => {
            a.next_seq += 1;
            a.account.accepted(seq);
        }
        Err(e) => {
            if e.data() != frame {
                a.account
                    .anomaly(format!("SendError handed back other bytes: {e}"));
            }
            if matches!(e, SendError::ConnectionClosed { .. }) && !a.closed {
                a.account
                    .anomaly("SendError::ConnectionClosed on an open connection".into());
            }
            a.account.refused();
        }
    }
}

/// The handler of one soak connection: hello on connect, echo checking on
/// data, settlement on reset and close.
pub fn handler(acct: Shared) -> impl redial::Handler {
    let (a1, a2, a3, a4) = (acct.clone(), acct.clone(), acct.clone(), acct);
    redial::handler()
        .on_connect(move |sock: &Socket| {
            let mut a = lock(&a1);
            a.connects += 1;
            a.generation = sock.generation();
            a.live_gen = true;
            a.rx.clear();
            a.account.connected();
            if let Err(e) = sock.send(encode(HELLO, a.idx, sock.generation())) {
                a.account.anomaly(format!("hello refused: {e}"));
            }
        })
        .on_data(move |_sock: &Socket, data: &[u8]| {
            let mut a = lock(&a2);
            a.rx.extend_from_slice(data);
            let whole = a.rx.len() / FRAME * FRAME;
            let rx = std::mem::take(&mut a.rx);
            for chunk in rx[..whole].chunks_exact(FRAME) {
                match decode(chunk) {
                    Some(Frame {
                        kind: HELLO,
                        conn,
                        n,
                    }) if conn == a.idx && n == a.generation => {}
                    Some(Frame {
                        kind: DATA,
                        conn,
                        n,
                    }) if conn == a.idx => a.account.echoed(n),
                    other => a.account.anomaly(format!("unexpected echo: {other:?}")),
                }
            }
            a.rx = rx;
            a.rx.drain(..whole);
        })
        .on_reset(move |reset: &Reset| {
            let mut a = lock(&a3);
            a.resets += 1;
            let current = a.generation;
            if reset.generation() != current {
                a.account.anomaly(format!(
                    "reset of generation {} while {} is current",
                    reset.generation(),
                    current
                ));
            }
            let r = a.classify(reset.unsent());
            let acked = kernel_acked_reset(reset);
            a.add_acked(acked);
            a.account
                .lost(reset.written(), acked, r.hello_written, r.cut, r.frames);
            a.live_gen = false;
            a.rx.clear();
            Resume::Reconnect
        })
        .on_close(move |close: &Close| {
            let mut a = lock(&a4);
            let mut r = a.classify(close.unsent());
            r.acked = kernel_acked_close(close);
            if a.closed {
                a.account.anomaly("on_close twice".into());
            }
            a.closed = true;
            a.close = Some(r);
        })
}

/// The kernel's count of acknowledged bytes at a loss, where redial
/// reports it.
fn kernel_acked_reset(reset: &Reset) -> Option<u64> {
    reset.acked()
}

/// The kernel's count of acknowledged bytes of the last connection at the
/// close, where redial reports it.
fn kernel_acked_close(close: &Close) -> Option<u64> {
    close.acked()
}

/// The sums over every connection's account.
pub struct Totals {
    pub frames: Counts,
    pub resets: u64,
    pub connects: u64,
    /// Frames in flight on live connections.
    pub outstanding: usize,
}

pub fn totals(accts: &[Shared]) -> Totals {
    let mut t = Totals {
        frames: Counts::default(),
        resets: 0,
        connects: 0,
        outstanding: 0,
    };
    for a in accts {
        let a = lock(a);
        t.frames.add(&a.counts());
        t.resets += a.resets;
        t.connects += a.connects;
        t.outstanding += a.outstanding();
    }
    t
}
