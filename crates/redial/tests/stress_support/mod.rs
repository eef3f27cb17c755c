//! The stress test's parts: frames that trace every byte ([`frame`]), the
//! ledger that accounts for them ([`ledger`]), checking echo servers
//! ([`server`]), the checking handler ([`probe`]), the random operations
//! ([`ops`]) and the watchdog thread ([`watchdog`]).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod frame;
pub mod ledger;
pub mod ops;
pub mod probe;
pub mod server;
pub mod watchdog;

use std::sync::{Arc, Mutex};

/// Checks (and the operations that provoke them) of defects whose fix is
/// not on `main` yet: skipped unless `REDIAL_STRESS_ALL=1`. Put a name
/// here while its fix is pending, remove it once the fix has landed:
/// `send_wait` (the `Pool::send_wait` operations), `stale_pool_handle`
/// (disconnects through old pool handles), `add_during_pool_disconnect`
/// (adds racing a pool's disconnect), `connect_after_disconnect` (the
/// check of `on_connect` after `disconnect()` returned). Every one of them
/// has landed: the list is empty.
pub const AWAITING_FIX: &[&str] = &[];

/// Whether `check` runs.
pub fn enabled(check: &str) -> bool {
    !AWAITING_FIX.contains(&check)
        || std::env::var_os("REDIAL_STRESS_ALL").is_some_and(|v| v == "1")
}

/// Broken invariants, in the order they were seen.
#[derive(Clone, Default)]
pub struct Violations(Arc<Mutex<Vec<String>>>);

impl Violations {
    pub fn add(&self, what: String) {
        let mut v = self.0.lock().unwrap_or_else(|p| p.into_inner());
        // The first few tell the story; thousands of repeats do not.
        if v.len() < 200 {
            v.push(what);
        }
    }

    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn is_empty(&self) -> bool {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).is_empty()
    }
}

/// A deliberate handler panic says nothing; every other panic is reported
/// as usual.
pub fn quiet_deliberate_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let p = info.payload();
            let msg = p
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| p.downcast_ref::<String>().map(String::as_str));
            if msg != Some(probe::DELIBERATE) {
                default(info);
            }
        }));
    });
}

/// Open descriptors of this process.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// What each open descriptor is, for a report.
pub fn fd_targets() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    dir.flatten()
        .map(|e| match std::fs::read_link(e.path()) {
            Ok(t) => {
                let t = t.display().to_string();
                // A socket: say which (local and remote address, state).
                let inode = t.strip_prefix("socket:[").and_then(|s| s.strip_suffix(']'));
                let line = inode.and_then(|i| {
                    ["tcp", "tcp6", "unix", "udp", "netlink", "raw"]
                        .iter()
                        .find_map(|f| {
                            let table = std::fs::read_to_string(format!("/proc/net/{f}")).ok()?;
                            let l = table
                                .lines()
                                .find(|l| l.split_whitespace().any(|w| w == i))?;
                            Some(format!(
                                "{f}: {}",
                                l.split_whitespace().take(6).collect::<Vec<_>>().join(" ")
                            ))
                        })
                });
                format!(
                    "{}->{t} {}",
                    e.file_name().to_string_lossy(),
                    line.unwrap_or_default()
                )
            }
            Err(_) => e.file_name().to_string_lossy().into_owned(),
        })
        .collect()
}
