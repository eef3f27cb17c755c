//! A watchdog on an OS thread of its own: it fails the run (exiting the
//! process, with the seed) when the runtime runs no task for a few
//! seconds, or when an operation outlives its own bound by as much. A
//! runtime that stopped cannot fail a test from inside.

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long the runtime may run nothing, or an operation overrun its bound.
pub const STALL: Duration = Duration::from_secs(5);

pub struct Watchdog {
    origin: Instant,
    /// Milliseconds since `origin` of the runtime's last tick; 0 = not watching.
    tick: AtomicU64,
    next_op: AtomicU64,
    ops: Mutex<HashMap<u64, (Instant, String)>>,
    label: Mutex<String>,
    done: AtomicBool,
}

/// An operation in flight; dropping it ends the watch on it.
pub struct OpGuard {
    dog: Arc<Watchdog>,
    id: u64,
}

impl Drop for OpGuard {
    fn drop(&mut self) {
        self.dog.ops.lock().unwrap().remove(&self.id);
    }
}

impl Watchdog {
    /// Starts the watching thread.
    pub fn start() -> Arc<Watchdog> {
        let dog = Arc::new(Watchdog {
            origin: Instant::now(),
            tick: AtomicU64::new(0),
            next_op: AtomicU64::new(0),
            ops: Mutex::new(HashMap::new()),
            label: Mutex::new(String::new()),
            done: AtomicBool::new(false),
        });
        let d = dog.clone();
        std::thread::spawn(move || d.watch());
        dog
    }

    /// What a failure report names (seed, runtime flavour, round).
    pub fn set_label(&self, label: String) {
        *self.label.lock().unwrap() = label;
    }

    pub fn stop(&self) {
        self.done.store(true, Ordering::SeqCst);
    }

    fn now_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64 + 1
    }

    /// The runtime is alive.
    pub fn tick(&self) {
        self.tick.store(self.now_ms(), Ordering::SeqCst);
    }

    /// Stops watching the runtime (it is being built or torn down).
    pub fn pause(&self) {
        self.tick.store(0, Ordering::SeqCst);
    }

    /// Watches an operation that must end within `bound` (plus [`STALL`]).
    pub fn op(self: &Arc<Self>, what: impl Into<String>, bound: Duration) -> OpGuard {
        let id = self.next_op.fetch_add(1, Ordering::Relaxed);
        let deadline = Instant::now() + bound + STALL;
        self.ops.lock().unwrap().insert(id, (deadline, what.into()));
        OpGuard {
            dog: self.clone(),
            id,
        }
    }

    fn watch(&self) {
        while !self.done.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(200));
            let last = self.tick.load(Ordering::SeqCst);
            let mut why = None;
            if last != 0 {
                let idle = self.now_ms().saturating_sub(last);
                if idle > STALL.as_millis() as u64 {
                    why = Some(format!("the runtime ran no task for {idle} ms"));
                }
            }
            let now = Instant::now();
            if why.is_none() {
                let ops = self.ops.lock().unwrap();
                if let Some((_, what)) = ops.values().find(|(deadline, _)| now > *deadline) {
                    why = Some(format!(
                        "an operation overran its bound by {STALL:?}: {what}"
                    ));
                }
            }
            if let Some(why) = why {
                let ops: Vec<String> = self
                    .ops
                    .lock()
                    .unwrap()
                    .values()
                    .map(|o| o.1.clone())
                    .collect();
                // Straight to the descriptor: the test harness captures
                // `eprintln!`, and its capture dies with the process.
                let _ = writeln!(
                    std::io::stderr(),
                    "\nstress: STALL ({}): {why}\nstress: operations in flight: {ops:#?}\n\
                     stress: replay with REDIAL_STRESS_SEED as above",
                    self.label.lock().unwrap()
                );
                std::process::exit(101);
            }
        }
    }
}
