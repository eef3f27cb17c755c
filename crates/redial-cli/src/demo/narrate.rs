//! The demo's running commentary: resets, failed connects and recoveries
//! as the manager reports them, one line each on stderr.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use redial::{Event, EventKind};

use crate::output::{status, Elapsed, Paint};
use crate::units::format_duration;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Where a connection stands between its loss and its recovery.
#[derive(Default)]
struct Down {
    since: Option<Instant>,
    failures: u32,
}

/// Prints resets and recoveries as the manager reports them, labelling
/// each connection by `labels` (its id otherwise), with times from `clock`.
pub async fn narrate(
    mut events: redial::Events,
    labels: Arc<Mutex<HashMap<u64, String>>>,
    clock: Elapsed,
    paint: Paint,
) {
    let mut down: HashMap<u64, Down> = HashMap::new();
    while let Some(Event {
        connection,
        at,
        kind,
        ..
    }) = events.recv().await
    {
        let label = lock(&labels)
            .get(&connection)
            .cloned()
            .unwrap_or_else(|| format!("#{connection}"));
        let stamp = paint.dim(&Elapsed::format(clock.at(at)));
        let d = down.entry(connection).or_default();
        if let Some(what) = describe(kind, at, d, paint) {
            status(&format!("{stamp}  {label:<7} {what}"));
        }
    }
}

/// What to say of an event that happened `at` to a connection that stands
/// at `d` (updated), if anything: a connection's first failed connect
/// after a loss, not the ones after it; no local disconnect.
fn describe(kind: EventKind, at: Instant, d: &mut Down, paint: Paint) -> Option<String> {
    let line = match kind {
        EventKind::Connected { generation: 1, .. } => "connected".to_string(),
        EventKind::Connected { .. } => {
            let after = d
                .since
                .map(|s| format_duration(at.saturating_duration_since(s)))
                .unwrap_or_default();
            let failed = match d.failures {
                0 => String::new(),
                1 => " (1 refused attempt)".into(),
                n => format!(" ({n} refused attempts)"),
            };
            *d = Down::default();
            format!("{}{failed}", paint.green(&format!("back after {after}")))
        }
        EventKind::Reset {
            reason,
            uptime,
            unsent_bytes,
        } => {
            d.since = Some(at);
            d.failures = 0;
            let back = if unsent_bytes > 0 {
                format!(", {unsent_bytes} unsent bytes handed back")
            } else {
                String::new()
            };
            format!(
                "{} after {} up{back}",
                paint.red(&format!("reset ({reason})")),
                format_duration(uptime)
            )
        }
        EventKind::ConnectFailed {
            error, retry_in, ..
        } => {
            d.failures += 1;
            if d.failures > 1 {
                return None;
            }
            let retry = retry_in
                .map(|r| format!(", retrying in {}", format_duration(r)))
                .unwrap_or_default();
            format!("connect failed: {error}{retry}")
        }
        EventKind::Closed { reason, .. } => {
            if reason == redial::CloseReason::Disconnected {
                return None;
            }
            paint.red(&format!("closed: {reason}"))
        }
        _ => return None,
    };
    Some(line)
}
