//! The handler every stress connection runs. It checks, as the callbacks
//! come, that calls for one connection never overlap, that none follows
//! `on_close`, that `on_close` runs once, that no connection starts after
//! its `disconnect()` returned, and that the echo of each connection is
//! made of whole frames (bytes of an old connection never leak into a new
//! one). It enters what resets and closes hand back in the ledger, and
//! sometimes panics, disconnects itself, or answers `Resume::With`/`Stop`.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use redial::{Close, Handler, Reset, Resume, Socket, Unsent};
use redial_chaos::SplitMix64;

use super::frame::{self, FrameId, Parser};
use super::ledger::Ledger;
use super::Violations;

pub const DELIBERATE: &str = "stress: deliberate panic";

/// The callback a panicky handler panics in, and on which call.
#[derive(Debug, Clone, Copy)]
pub enum PanicIn {
    Connect(u32),
    Data(u32),
    Reset(u32),
}

pub struct ConnState {
    /// The test's own number for this connection (redial's id is known
    /// only after `connect` returns, and callbacks may come first).
    pub tag: u64,
    in_callback: AtomicBool,
    closed: AtomicBool,
    pub closes: AtomicU32,
    pub connects: AtomicU32,
    /// Set once a `disconnect()`/`abort()` covering it has returned.
    pub stop_requested: AtomicBool,
    pub close_reason: Mutex<Option<String>>,
    hello_lane: u32,
    hello_seq: AtomicU32,
    echo: Mutex<(u64, Parser)>,
    calls: [AtomicU32; 3],
    panic_in: Option<PanicIn>,
    rng: Mutex<SplitMix64>,
    ledger: Arc<Ledger>,
    v: Violations,
}

/// Marks a callback as running; a panic unwinding through it ends it too.
struct InCallback<'a>(&'a AtomicBool);

impl Drop for InCallback<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

impl ConnState {
    pub fn new(
        tag: u64,
        hello_lane: u32,
        panic_in: Option<PanicIn>,
        rng: SplitMix64,
        ledger: Arc<Ledger>,
        v: Violations,
    ) -> Arc<ConnState> {
        ledger.lane(hello_lane, true);
        Arc::new(ConnState {
            tag,
            in_callback: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            closes: AtomicU32::new(0),
            connects: AtomicU32::new(0),
            stop_requested: AtomicBool::new(false),
            close_reason: Mutex::new(None),
            hello_lane,
            hello_seq: AtomicU32::new(0),
            echo: Mutex::new((0, Parser::default())),
            calls: Default::default(),
            panic_in,
            rng: Mutex::new(rng),
            ledger,
            v,
        })
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    fn enter(&self, callback: &str) -> InCallback<'_> {
        if self.in_callback.swap(true, Ordering::SeqCst) {
            self.v.add(format!(
                "conn #{}: {callback} overlaps another callback",
                self.tag
            ));
        }
        if self.closed.load(Ordering::SeqCst) {
            self.v
                .add(format!("conn #{}: {callback} after on_close", self.tag));
        }
        InCallback(&self.in_callback)
    }

    fn roll(&self, n: u64) -> u64 {
        self.rng.lock().unwrap().below(n)
    }

    fn maybe_panic(&self, slot: usize, wanted: impl Fn(PanicIn) -> Option<u32>) {
        let call = self.calls[slot].fetch_add(1, Ordering::SeqCst) + 1;
        if self.panic_in.and_then(wanted) == Some(call) {
            panic!("{DELIBERATE}");
        }
    }

    /// Enters what a reset or close hands back in the ledger: taken most of
    /// the time, otherwise only read (a handler that saw the bytes had them
    /// handed back either way; only the default handler's are discarded).
    fn hand_back(&self, unsent: &Unsent, take: impl FnOnce() -> Unsent, what: &str) {
        let what = format!("conn #{} {what}", self.tag);
        if self.roll(10) < 7 {
            self.ledger.unsent(&self.v, &take(), &what);
        } else {
            self.ledger.unsent(&self.v, unsent, &what);
        }
    }

    /// `on_connect`, or the entry of a `Resume::With`.
    fn connected(&self, sock: &Socket, callback: &str) {
        let _in = self.enter(callback);
        if self.stop_requested.load(Ordering::SeqCst) && super::enabled("connect_after_disconnect")
        {
            self.v.add(format!(
                "conn #{}: {callback} (generation {}) after its disconnect() had returned",
                self.tag,
                sock.generation()
            ));
        }
        self.connects.fetch_add(1, Ordering::SeqCst);
        *self.echo.lock().unwrap() = (sock.generation(), Parser::default());
        for _ in 0..self.roll(3) {
            let seq = self.hello_seq.fetch_add(1, Ordering::SeqCst);
            let id = FrameId {
                lane: self.hello_lane,
                seq,
            };
            let size = 16 + self.roll(200) as usize;
            let f = frame::encode(id, size);
            let ok = sock.send(&f).is_ok();
            self.ledger.sent(&self.v, id, f.len(), Some(ok));
        }
        self.maybe_panic(0, |p| match p {
            PanicIn::Connect(n) => Some(n),
            _ => None,
        });
    }
}

/// The handler: shares its state with the test.
pub struct Probe(pub Arc<ConnState>);

impl Handler for Probe {
    fn on_connect(&mut self, sock: &Socket) {
        self.0.connected(sock, "on_connect");
    }

    fn on_data(&mut self, sock: &Socket, data: &[u8]) {
        let st = &self.0;
        let _in = st.enter("on_data");
        {
            let mut echo = st.echo.lock().unwrap();
            if echo.0 != sock.generation() {
                st.v.add(format!(
                    "conn #{}: data of generation {} while generation {} is current",
                    st.tag,
                    sock.generation(),
                    echo.0
                ));
            }
            if let Err(e) = echo.1.push(data) {
                st.v.add(format!(
                    "conn #{}: echo on generation {}: {e}",
                    st.tag, echo.0
                ));
                echo.1 = Parser::default();
            }
        }
        st.maybe_panic(1, |p| match p {
            PanicIn::Data(n) => Some(n),
            _ => None,
        });
        if st.roll(5000) == 0 {
            let _ = sock.disconnect();
            st.stop_requested.store(true, Ordering::SeqCst);
        }
    }

    fn on_reset(&mut self, reset: &Reset) -> Resume {
        let st = &self.0;
        let _in = st.enter("on_reset");
        st.hand_back(reset.unsent(), || reset.take_unsent(), "reset");
        st.maybe_panic(2, |p| match p {
            PanicIn::Reset(n) => Some(n),
            _ => None,
        });
        match st.roll(10) {
            0 => Resume::Stop,
            1 | 2 => {
                let st = st.clone();
                Resume::with(move |sock: &Socket| st.connected(sock, "Resume::With entry"))
            }
            _ => Resume::Reconnect,
        }
    }

    fn on_connect_failed(&mut self, _err: &std::io::Error, _attempt: u32) -> redial::Retry {
        let _in = self.0.enter("on_connect_failed");
        redial::Retry::OnSchedule
    }

    fn on_idle(&mut self, _sock: &Socket) {
        let _in = self.0.enter("on_idle");
    }

    fn on_close(&mut self, close: &Close) {
        let st = &self.0;
        let _in = st.enter("on_close");
        let n = st.closes.fetch_add(1, Ordering::SeqCst) + 1;
        if n > 1 {
            st.v.add(format!("conn #{}: on_close ran {n} times", st.tag));
        }
        st.hand_back(close.unsent(), || close.take_unsent(), "close");
        *st.close_reason.lock().unwrap() = Some(close.reason().to_string());
        st.closed.store(true, Ordering::SeqCst);
    }
}
