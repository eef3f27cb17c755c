//! "Nothing lost silently": per-connection accounting of every frame.
//!
//! Every data frame that `send` accepted ends in exactly one place:
//!
//! - **echoed**: it came back through the echo server, whole and in order;
//! - **handed back**: returned whole in `Reset::unsent` or `Close::unsent`,
//!   or cut (`Unsent::partial`);
//! - **lost in flight**: handed to the kernel on a connection that was then
//!   lost, and never echoed. redial no longer holds those bytes; it says how
//!   many there were with `Reset::written`, so the application can count
//!   them exactly: frames fully written on that connection, minus frames
//!   echoed from it.
//!
//! The balance is checked per connection: accepted = written whole + handed
//! back, and echoed + lost in flight = written whole. Frames refused by
//! `send` (`SendError`, bytes handed back at once) are counted apart.
//!
//! Counters only: memory stays flat however long the run.

use std::sync::{Arc, Mutex, MutexGuard};

use redial::{Close, Connection, Reset, Resume, SendError, Socket, Unsent};

use crate::frame::{decode, encode, Frame, DATA, FRAME, HELLO};

/// Kept anomalies per connection (the count goes on).
const KEEP: usize = 5;

#[derive(Debug, Default)]
pub struct Acct {
    pub idx: u32,
    next_seq: u64,
    pub accepted: u64,
    pub refused: u64,
    pub echoed: u64,
    pub handed_back: u64,
    pub partial: u64,
    pub written_whole: u64,
    pub lost_in_flight: u64,
    pub resets: u64,
    pub connects: u64,
    /// `Reset::written` summed over lost connections.
    reset_written: u64,
    /// The current connection (generation).
    generation: u64,
    /// The current connection is up or was lost without being settled yet.
    live_gen: bool,
    gen_echoed: u64,
    last_echoed: Option<u64>,
    rx: Vec<u8>,
    /// Set by `on_close`: what the last connection handed back.
    close: Option<CloseRec>,
    pub closed: bool,
    pub anomalies: u64,
    pub notes: Vec<String>,
}

#[derive(Debug, Default)]
struct CloseRec {
    hello_back: bool,
    partial: Option<(bool, usize)>,
}

/// What one `Unsent` held: whether the hello came back whole, the cut
/// chunk (is it the hello, bytes written), and whole data frames.
struct Returned {
    hello_back: bool,
    partial: Option<(bool, usize)>,
    frames: u64,
}

impl Acct {
    fn note(&mut self, what: String) {
        self.anomalies += 1;
        if self.notes.len() < KEEP {
            self.notes.push(what);
        }
    }

    fn classify(&mut self, unsent: &Unsent) -> Returned {
        let mut r = Returned {
            hello_back: false,
            partial: None,
            frames: 0,
        };
        let chunks: Vec<Option<Frame>> = unsent.chunks().map(decode).collect();
        for f in chunks {
            match f {
                Some(Frame { kind: HELLO, .. }) => r.hello_back = true,
                Some(Frame {
                    kind: DATA, conn, ..
                }) if conn == self.idx => r.frames += 1,
                other => self.note(format!("unexpected chunk handed back: {other:?}")),
            }
        }
        if let Some(p) = unsent.partial() {
            match decode(&p.data) {
                Some(Frame { kind: HELLO, .. }) => r.partial = Some((true, p.written)),
                Some(Frame { kind: DATA, .. }) => r.partial = Some((false, p.written)),
                other => self.note(format!("unexpected partial chunk: {other:?}")),
            }
        }
        r
    }

    /// Settles one finished connection: `written` bytes reached the kernel.
    fn settle(&mut self, written: u64, hello_back: bool, partial: Option<(bool, usize)>) {
        self.live_gen = false;
        let hello_written = match partial {
            Some((true, w)) => w as u64,
            _ if hello_back => 0,
            _ => FRAME as u64,
        };
        let partial_written = match partial {
            Some((false, w)) => w as u64,
            _ => 0,
        };
        let Some(data) = written.checked_sub(hello_written + partial_written) else {
            self.note(format!(
                "generation {}: written {written} is less than hello {hello_written} + partial {partial_written}",
                self.generation
            ));
            return;
        };
        if data % FRAME as u64 != 0 {
            self.note(format!(
                "generation {}: {data} data bytes written is not a whole number of frames",
                self.generation
            ));
        }
        let whole = data / FRAME as u64;
        if self.gen_echoed > whole {
            self.note(format!(
                "generation {}: {} frames echoed but only {whole} written",
                self.generation, self.gen_echoed
            ));
        }
        self.written_whole += whole;
        self.lost_in_flight += whole.saturating_sub(self.gen_echoed);
        self.gen_echoed = 0;
    }

    /// Frames accepted and not yet echoed, handed back or lost: in flight on
    /// the live connection.
    pub fn outstanding(&self) -> i64 {
        self.accepted as i64
            - (self.echoed + self.handed_back + self.partial + self.lost_in_flight) as i64
    }

    /// After the close: settles the last connection from the total bytes
    /// out, then checks the balance. Returns false when it does not hold.
    pub fn finish(&mut self, bytes_out: u64) -> bool {
        if let Some(close) = self.close.take() {
            if self.live_gen {
                let written = bytes_out.saturating_sub(self.reset_written);
                self.settle(written, close.hello_back, close.partial);
            }
        } else {
            self.note("no on_close".into());
        }
        let mut ok = true;
        if self.accepted != self.written_whole + self.handed_back + self.partial {
            self.note(format!(
                "accepted {} != written whole {} + handed back {} + partial {}",
                self.accepted, self.written_whole, self.handed_back, self.partial
            ));
            ok = false;
        }
        if self.echoed + self.lost_in_flight != self.written_whole {
            self.note(format!(
                "echoed {} + lost in flight {} != written whole {}",
                self.echoed, self.lost_in_flight, self.written_whole
            ));
            ok = false;
        }
        ok && self.anomalies == 0
    }
}

pub type Shared = Arc<Mutex<Acct>>;

pub fn lock(a: &Shared) -> MutexGuard<'_, Acct> {
    a.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn new(idx: u32) -> Shared {
    Arc::new(Mutex::new(Acct {
        idx,
        ..Acct::default()
    }))
}

/// Sends the next data frame on `conn`, counting where it went.
pub fn send_next(acct: &Shared, conn: &Connection) {
    let mut a = lock(acct);
    let seq = a.next_seq;
    a.next_seq += 1;
    let frame = encode(DATA, a.idx, seq);
    match conn.send(frame) {
        Ok(()) => a.accepted += 1,
        Err(e) => {
            if e.data() != frame {
                a.note(format!("SendError handed back other bytes: {e}"));
            }
            let closed = matches!(
                e,
                SendError::Closed { .. }
                    | SendError::ConnectionClosed { .. }
                    | SendError::Disconnected { .. }
            );
            if closed && !a.closed {
                a.note(format!("{e:?} on an open connection"));
            }
            a.refused += 1;
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
            a.gen_echoed = 0;
            a.rx.clear();
            if let Err(e) = sock.send(encode(HELLO, a.idx, sock.generation())) {
                a.note(format!("hello refused: {e}"));
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
                    }) if conn == a.idx && !matches!(a.last_echoed, Some(l) if n <= l) => {
                        a.last_echoed = Some(n);
                        a.echoed += 1;
                        a.gen_echoed += 1;
                    }
                    other => a.note(format!("unexpected echo: {other:?}")),
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
                a.note(format!(
                    "reset of generation {} while {} is current",
                    reset.generation(),
                    current
                ));
            }
            let r = a.classify(reset.unsent());
            a.handed_back += r.frames;
            if matches!(r.partial, Some((false, _))) {
                a.partial += 1;
            }
            a.reset_written += reset.written();
            a.settle(reset.written(), r.hello_back, r.partial);
            a.rx.clear();
            Resume::Reconnect
        })
        .on_close(move |close: &Close| {
            let mut a = lock(&a4);
            let r = a.classify(close.unsent());
            a.handed_back += r.frames;
            if matches!(r.partial, Some((false, _))) {
                a.partial += 1;
            }
            if a.closed {
                a.note("on_close twice".into());
            }
            a.closed = true;
            a.close = Some(CloseRec {
                hello_back: r.hello_back,
                partial: r.partial,
            });
        })
}
