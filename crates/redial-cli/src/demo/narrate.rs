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

/// Prints resets and recoveries as the manager reports them, labelling
/// each connection by `labels` (its id otherwise), with times from `clock`.
pub async fn narrate(
    mut events: redial::Events,
    labels: Arc<Mutex<HashMap<u64, String>>>,
    clock: Elapsed,
    paint: Paint,
) {
    #[derive(Default)]
    struct Down {
        since: Option<Instant>,
        failures: u32,
    }
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
        let line = match kind {
            EventKind::Connected { generation: 1, .. } => {
                format!("{stamp}  {label:<7} connected")
            }
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
                format!(
                    "{stamp}  {label:<7} {}{failed}",
                    paint.green(&format!("back after {after}"))
                )
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
                    "{stamp}  {label:<7} {} after {} up{back}",
                    paint.red(&format!("reset ({reason})")),
                    format_duration(uptime)
                )
            }
            EventKind::ConnectFailed {
                error, retry_in, ..
            } => {
                d.failures += 1;
                if d.failures > 1 {
                    continue;
                }
                let retry = retry_in
                    .map(|r| format!(", retrying in {}", format_duration(r)))
                    .unwrap_or_default();
                format!("{stamp}  {label:<7} connect failed: {error}{retry}")
            }
            EventKind::Closed { reason, .. } => {
                if reason == redial::CloseReason::Disconnected {
                    continue;
                }
                format!(
                    "{stamp}  {label:<7} {}",
                    paint.red(&format!("closed: {reason}"))
                )
            }
            _ => continue,
        };
        status(&line);
    }
}
