//! The one recorder of what a connection reported: every handler callback
//! as a typed [`Cb`] (with the test's own marks in order among them) and
//! every byte `on_data` got; and [`EventLog`], a collector for
//! `Manager::events()`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redial::{Event, EventKind, FnHandler, Manager, Partial, ResetReason, Resume};

/// One handler callback, as recorded by [`Recorder`].
#[derive(Debug, Clone)]
pub enum Cb {
    Connect {
        generation: u64,
    },
    Reset {
        reason: ResetReason,
        generation: u64,
        uptime: Duration,
        written: u64,
        partial: Option<Partial>,
        chunks: Vec<Vec<u8>>,
        at: Instant,
    },
    ConnectFailed {
        attempt: u32,
        kind: std::io::ErrorKind,
        /// The error's text.
        error: String,
    },
    Close {
        reason: redial::CloseReason,
        chunks: Vec<Vec<u8>>,
        partial: Option<Partial>,
    },
    /// A mark the test made itself ([`Recorder::note`]), in order with
    /// the callbacks.
    Note(String),
}

impl Cb {
    /// A short label to match on: `connect 2`, `reset PeerClosed`,
    /// `failed 1 Connection refused (os error 111)`, `close Disconnected`, or the note.
    pub fn label(&self) -> String {
        match self {
            Cb::Connect { generation } => format!("connect {generation}"),
            Cb::Reset { reason, .. } => format!("reset {reason:?}"),
            Cb::ConnectFailed { attempt, error, .. } => format!("failed {attempt} {error}"),
            Cb::Close { reason, .. } => format!("close {reason:?}"),
            Cb::Note(s) => s.clone(),
        }
    }
}

/// Records every callback of a closure handler, and every byte `on_data`
/// got (concatenated, across connections).
#[derive(Clone, Default)]
pub struct Recorder {
    pub log: Arc<Mutex<Vec<Cb>>>,
    pub data: Arc<Mutex<Vec<u8>>>,
    /// What `on_data` got, per connection generation.
    pub per_gen: Arc<Mutex<BTreeMap<u64, Vec<u8>>>>,
    pub reads: Arc<AtomicU64>,
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder::default()
    }

    /// A handler that records everything and always reconnects.
    pub fn handler(&self) -> FnHandler {
        let (l1, l2, l3, l4) = (
            self.log.clone(),
            self.log.clone(),
            self.log.clone(),
            self.log.clone(),
        );
        let data = self.data.clone();
        let reads = self.reads.clone();
        let per_gen = self.per_gen.clone();
        redial::handler()
            .on_connect(move |sock| {
                l1.lock().unwrap().push(Cb::Connect {
                    generation: sock.generation(),
                })
            })
            .on_data(move |sock, d| {
                reads.fetch_add(1, Ordering::SeqCst);
                per_gen
                    .lock()
                    .unwrap()
                    .entry(sock.generation())
                    .or_default()
                    .extend_from_slice(d);
                data.lock().unwrap().extend_from_slice(d);
            })
            .on_reset(move |r| {
                l2.lock().unwrap().push(Cb::Reset {
                    reason: r.reason().clone(),
                    generation: r.generation(),
                    uptime: r.uptime(),
                    written: r.written(),
                    partial: r.unsent().partial().cloned(),
                    chunks: r.unsent().chunks().map(<[u8]>::to_vec).collect(),
                    at: Instant::now(),
                });
                Resume::Reconnect
            })
            .on_connect_failed(move |e, attempt| {
                l3.lock().unwrap().push(Cb::ConnectFailed {
                    attempt,
                    kind: e.kind(),
                    error: e.to_string(),
                })
            })
            .on_close(move |c| {
                l4.lock().unwrap().push(Cb::Close {
                    reason: c.reason().clone(),
                    chunks: c.unsent().chunks().map(<[u8]>::to_vec).collect(),
                    partial: c.unsent().partial().cloned(),
                })
            })
    }

    /// Records a mark of the test's own, in order with the callbacks.
    pub fn note(&self, s: impl Into<String>) {
        self.log.lock().unwrap().push(Cb::Note(s.into()));
    }

    /// Every callback's [`Cb::label`], in order.
    pub fn labels(&self) -> Vec<String> {
        self.log.lock().unwrap().iter().map(Cb::label).collect()
    }

    /// How many callbacks have a label starting with `prefix`.
    pub fn count(&self, prefix: &str) -> usize {
        let log = self.log.lock().unwrap();
        log.iter().filter(|c| c.label().starts_with(prefix)).count()
    }

    /// Waits until `count(prefix) >= n`, failing after `secs`.
    pub async fn wait(&self, prefix: &str, n: usize, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while self.count(prefix) < n {
            assert!(
                Instant::now() < deadline,
                "waited for {n} x {prefix:?}, calls: {:?}",
                self.labels()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits until `needle` occurs in what `on_data` got, failing after
    /// `secs`.
    pub async fn wait_saw(&self, needle: &[u8], secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !self.saw(needle) {
            assert!(
                Instant::now() < deadline,
                "waited for {:?} in the data, calls: {:?}",
                String::from_utf8_lossy(needle),
                self.labels()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub fn callbacks(&self) -> Vec<Cb> {
        self.log.lock().unwrap().clone()
    }

    pub fn resets(&self) -> Vec<Cb> {
        self.callbacks()
            .into_iter()
            .filter(|c| matches!(c, Cb::Reset { .. }))
            .collect()
    }

    pub fn reset_count(&self) -> usize {
        self.resets().len()
    }

    pub fn connects(&self) -> usize {
        self.callbacks()
            .iter()
            .filter(|c| matches!(c, Cb::Connect { .. }))
            .count()
    }

    pub fn connect_failures(&self) -> Vec<(u32, std::io::ErrorKind)> {
        self.callbacks()
            .iter()
            .filter_map(|c| match c {
                Cb::ConnectFailed { attempt, kind, .. } => Some((*attempt, *kind)),
                _ => None,
            })
            .collect()
    }

    pub fn received(&self) -> Vec<u8> {
        self.data.lock().unwrap().clone()
    }

    pub fn received_in(&self, generation: u64) -> Vec<u8> {
        self.per_gen
            .lock()
            .unwrap()
            .get(&generation)
            .cloned()
            .unwrap_or_default()
    }

    pub fn received_len(&self) -> usize {
        self.data.lock().unwrap().len()
    }

    /// Whether `needle` occurs in what `on_data` got.
    pub fn saw(&self, needle: &[u8]) -> bool {
        self.data
            .lock()
            .unwrap()
            .windows(needle.len())
            .any(|w| w == needle)
    }
}

/// Collects `Manager::events()` in the background. Subscribe before
/// connecting, or the first events are missed.
#[derive(Clone)]
pub struct EventLog {
    events: Arc<Mutex<Vec<Event>>>,
}

impl EventLog {
    pub fn start(cm: &Manager) -> EventLog {
        let events: Arc<Mutex<Vec<Event>>> = Arc::default();
        let mut rx = cm.events();
        let e = events.clone();
        tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                e.lock().unwrap().push(ev);
            }
        });
        EventLog { events }
    }

    pub fn all(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }

    pub fn kinds(&self) -> Vec<EventKind> {
        self.all().into_iter().map(|e| e.kind).collect()
    }

    /// The `Reset` events' reasons, in order.
    pub fn reset_reasons(&self) -> Vec<ResetReason> {
        self.kinds()
            .into_iter()
            .filter_map(|k| match k {
                EventKind::Reset { reason, .. } => Some(reason),
                _ => None,
            })
            .collect()
    }

    /// The generations of the `Connected` events, in order.
    pub fn connected_generations(&self) -> Vec<u64> {
        self.kinds()
            .into_iter()
            .filter_map(|k| match k {
                EventKind::Connected { generation, .. } => Some(generation),
                _ => None,
            })
            .collect()
    }

    pub fn count(&self, pred: impl Fn(&EventKind) -> bool) -> usize {
        self.kinds().iter().filter(|k| pred(k)).count()
    }
}
