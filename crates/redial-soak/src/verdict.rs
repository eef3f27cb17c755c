//! The soak's checks: each printed as it is decided, the failed ones kept
//! for the exit code, and the wait that gives a count time to settle
//! before it is judged.

use std::time::{Duration, Instant};

/// How long counts (descriptors, tasks, echoes) get to settle.
pub const SETTLE_LIMIT: Duration = Duration::from_secs(30);

/// The checks, each printed as it is decided.
#[derive(Default)]
pub struct Verdict {
    pub failed: Vec<String>,
}

impl Verdict {
    pub fn check(&mut self, ok: bool, what: String) {
        println!("[{}] {what}", if ok { " ok " } else { "FAIL" });
        if !ok {
            self.failed.push(what);
        }
    }

    /// Checks that `count` settles back to at most `start`.
    pub async fn back_to_start(&mut self, what: &str, start: usize, count: impl Fn() -> usize) {
        let mut end = 0;
        let back = settle(SETTLE_LIMIT, || {
            end = count();
            end <= start
        })
        .await;
        self.check(back, format!("{what}: {start} -> {end}"));
    }
}

/// Polls `f` every 50 ms until it returns true or `limit` passes.
pub async fn settle(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if f() {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
