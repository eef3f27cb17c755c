//! The life-cycle state machine driven by arbitrary events and times never
//! panics, and its invariants hold after every event.
//!
//! Input bytes: the first ones choose the options (backoff, jitter, stable
//! time, give-up policies, every duration anywhere in `Duration`'s range,
//! `Duration::MAX` included) and the seed; each following pair is one
//! event (what happened, how much time passed before it, sometimes any
//! duration). Invariants checked:
//! Closed is absorbing (reached at most once, nothing after it starts an
//! attempt); reset and connect_failed change nothing outside Connected and
//! Connecting; every delay is within the backoff bounds; max_attempts trips
//! exactly on the configured failure.

#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use redial::fuzzing::{Lifecycle, Phase};
use redial::{Backoff, CloseReason, Jitter, Options};

#[path = "../common/bytes.rs"]
mod bytes;
use bytes::Bytes;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fuzz_target!(|data: &[u8]| {
    let mut b = Bytes(data);
    // Options: every duration anywhere in `Duration`'s range (from zero
    // up, as `Options::validate` refuses only zero delays).
    let nonzero = |d: Duration| d.max(Duration::from_nanos(1));
    let initial = nonzero(b.duration());
    let multiplier = 1.0 + f64::from(b.u16()) / 256.0;
    let max = nonzero(b.duration());
    let jitter = match b.u8() % 4 {
        0 => Jitter::None,
        1 => Jitter::Proportional(f64::from(b.u8()) / 255.0),
        2 => Jitter::Full,
        _ => Jitter::Decorrelated,
    };
    let backoff = match Backoff::new(initial, multiplier, max) {
        Ok(backoff) => backoff.with_jitter(jitter),
        Err(e) => {
            assert!(max < initial, "refused a valid backoff: {e}");
            return;
        }
    };
    let mut opts = Options::new().backoff(backoff).stable_after(b.duration());
    let flags = b.u8();
    let max_attempts = (flags & 1 != 0).then(|| u32::from(b.u8() % 16) + 1);
    if let Some(n) = max_attempts {
        opts = opts.max_attempts(n);
    }
    if flags & 2 != 0 {
        opts = opts.give_up_after(nonzero(b.duration()));
    }
    if flags & 4 != 0 {
        opts = opts.restart_intensity(u32::from(b.u8() % 8) + 1, nonzero(b.duration()));
    }
    let seed = u64::from(b.u16());

    let mut lc = Lifecycle::new(std::sync::Arc::new(opts), seed);
    let mut now = Instant::now();
    let mut closed: Option<CloseReason> = None;
    let mut disconnected = false;
    // Failed attempts in a row, as the machine should count them.
    let mut failed = 0u32;

    while !b.0.is_empty() {
        let op = b.u8();
        // Mostly short pauses; sometimes any duration (skipped when the
        // clock cannot hold it: that is the target's arithmetic, not redial's).
        let pause = match b.u8() {
            255 => b.duration(),
            n => ms(u64::from(n) * 8),
        };
        now = now.checked_add(pause).unwrap_or(now);
        let before = lc.phase().clone();
        match op % 8 {
            0 => lc.start(now),
            1 => lc.connected(now),
            2 => {
                let out = lc.connect_failed(now);
                if matches!(before, Phase::Connecting { .. }) {
                    failed += 1;
                    if let Some(d) = out {
                        assert!(d <= max, "delay {d:?} above the cap {max:?}");
                        // Delays are computed in f64 seconds: past about
                        // 100 days they round to well under a microsecond.
                        let at_least = |lo: Duration| {
                            assert!(
                                d.as_secs_f64() >= lo.as_secs_f64() * (1.0 - 1e-12),
                                "delay {d:?} below {lo:?}"
                            )
                        };
                        match jitter {
                            Jitter::Decorrelated => at_least(initial.min(max)),
                            Jitter::None => at_least(initial),
                            _ => {}
                        }
                    }
                    if max_attempts.is_some_and(|m| failed >= m) {
                        assert_eq!(out, None, "max_attempts must trip at {failed}");
                        assert!(matches!(
                            lc.phase(),
                            Phase::Closed(CloseReason::GaveUp { attempts, .. }) if *attempts == failed
                        ));
                    }
                } else {
                    assert_eq!(out, None);
                    assert_eq!(lc.phase(), &before, "connect_failed outside Connecting");
                }
            }
            3 | 4 => {
                let out = lc.reset(now, op % 8 == 3);
                if let Phase::Connected { .. } = before {
                    if let Some(d) = out {
                        assert!(d <= max, "reset delay {d:?} above the cap");
                    }
                } else {
                    assert_eq!(out, None);
                    assert_eq!(lc.phase(), &before, "reset outside Connected");
                }
            }
            5 => {
                if let Some(t) = lc.poll_timeout() {
                    now = now.max(t);
                }
                lc.timeout(now);
            }
            6 => lc.timeout(now),
            _ => {
                lc.close(CloseReason::Disconnected);
                disconnected = true;
            }
        }

        // Failure counting follows the machine's rules.
        match lc.phase() {
            Phase::Connected { .. } => failed = 0,
            Phase::BackingOff { .. } | Phase::Connecting { .. }
                if matches!(before, Phase::Connected { .. }) =>
            {
                failed = 0
            }
            _ => {}
        }

        // Closed is absorbing: once there, the same reason for ever.
        if let Some(reason) = &closed {
            assert_eq!(lc.phase(), &Phase::Closed(reason.clone()), "left Closed");
            assert_eq!(lc.poll_timeout(), None);
        } else if let Phase::Closed(reason) = lc.phase() {
            closed = Some(reason.clone());
        }
        // Never an attempt after a local disconnect.
        if disconnected {
            assert!(matches!(lc.phase(), Phase::Closed(_)));
        }
        // The deadline is the backing-off phase's, and only then.
        match lc.phase() {
            Phase::BackingOff { until, attempt } => {
                assert_eq!(lc.poll_timeout(), Some(*until));
                if let Some(cap) = now.checked_add(max) {
                    assert!(*until <= cap, "deadline beyond the cap");
                }
                assert_eq!(*attempt, failed + 1);
            }
            Phase::Connecting { attempt } => {
                assert_eq!(lc.poll_timeout(), None);
                assert_eq!(*attempt, failed + 1);
            }
            _ => assert_eq!(lc.poll_timeout(), None),
        }
    }
});
