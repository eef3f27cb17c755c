//! Getting a connection up: the backoff between attempts, the waits on
//! another connection that probes or scouts the endpoint during an outage
//! (see `probe.rs`), one attempt through the manager's gate (see `dial.rs`
//! for the connect itself), and what a failed attempt leads to.

use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;

use tokio::sync::futures::Notified;
use tokio::time::{sleep_until, Instant};
use tracing::debug;

use super::dial::dial;
use super::{guarded, Driver};
use crate::events::EventKind;
use crate::handle::socket::Socket;
use crate::handler::Handler;
use crate::reset::CloseReason;
use crate::shared::Shared;

impl<H: Handler> Driver<H> {
    pub(super) async fn back_off(&mut self) {
        self.publish();
        let Some(until) = self.lifecycle.poll_timeout() else {
            return;
        };
        if !self.wait_for_scout(until).await {
            return;
        }
        let deadline = Instant::from_std(until);
        loop {
            if self.check_command() {
                return;
            }
            if self.shared.take_kick() {
                self.lifecycle.retry_now();
                return;
            }
            tokio::select! {
                _ = sleep_until(deadline) => {
                    self.lifecycle.timeout(crate::clock::now());
                    return;
                }
                _ = self.shared.wake.notified() => {}
            }
        }
    }

    /// Waits, without a timer, while another connection's attempt to this
    /// endpoint is due first (see `probe.rs`). False when a command closed
    /// the connection meanwhile.
    async fn wait_for_scout(&mut self, until: std::time::Instant) -> bool {
        let Some(health) = self.health.clone() else {
            return true;
        };
        let changed = health.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        if !health.wait_for_scout(self.shared.id, until) {
            return true;
        }
        loop {
            if self.check_command() {
                return false;
            }
            // Reconnect now: the backoff's loop takes the kick.
            if self.shared.kicked() {
                return true;
            }
            tokio::select! {
                _ = &mut changed => return true,
                _ = self.shared.wake.notified() => {}
            }
        }
    }

    /// Waits while another connection probes this endpoint. False when a
    /// command closed the connection meanwhile.
    async fn wait_for_probe(&mut self) -> bool {
        let Some(health) = self.health.clone() else {
            return true;
        };
        let (mut announced, mut counted) = (false, false);
        loop {
            // Not enabled: `changed` is only ever woken by
            // `notify_waiters`, which reaches a `Notified` from its
            // creation on, so the check below cannot miss a change; and
            // the common case (the endpoint is up) then never takes the
            // Notify's lock to register and unregister a waiter.
            let changed = health.changed.notified();
            tokio::pin!(changed);
            if health.may_attempt(self.shared.id) {
                return true;
            }
            if !announced {
                self.lifecycle.parked(true);
                self.publish();
                debug!("waiting for another connection's attempt to this endpoint");
                announced = true;
            }
            // Waiting for a probe that found the endpoint down counts as a
            // failed attempt; waiting for the verdict of one after a loss
            // does not (yet).
            if !counted && health.is_down() {
                self.shared.record_unreachable();
                counted = true;
            }
            tokio::select! {
                _ = changed => {}
                _ = self.shared.wake.notified() => {
                    if self.check_command() {
                        return false;
                    }
                }
            }
        }
    }

    /// Makes a connect attempt through the manager's gate: the new
    /// socket, or `None` when it failed or a command ended it. The run
    /// loop awaits the connected period itself (see [`Driver::run`]).
    pub(super) async fn attempt(&mut self, attempt: u32) -> Option<Socket> {
        let result = loop {
            if self.check_command() || !self.wait_for_probe().await {
                return None;
            }
            self.lifecycle.parked(false);
            self.publish();
            // A place under the manager's cap first, and only then the
            // attempt's state: thousands of connections waiting for one of
            // the places hold no memory for an attempt (a first connect of
            // 10,000 held 10,000 of them, ~1 KiB each, until its turn).
            // One wake-up registration for the wait and the attempt both.
            let wake = self.shared.wake.notified();
            tokio::pin!(wake);
            let entering = self.link.attempts.enter();
            let Some(place) = until_command(&self.shared, &mut wake, entering).await else {
                break None;
            };
            // Checked again with the place in hand: while this one queued,
            // another may have found the endpoint down.
            if self
                .health
                .as_ref()
                .is_some_and(|h| !h.may_attempt(self.shared.id))
            {
                continue; // parked: wait for the probe
            }
            // The attempt starts now (not when it ends): the event's time
            // is what "attempt -> connected" is measured from.
            self.emit(EventKind::Connecting { attempt });
            let (endpoint, opts) = (&self.shared.endpoint, self.lifecycle.options());
            let rotate = self.rotate as usize;
            // Boxed: an attempt's state (resolver, connect, TLS handshake)
            // is large and short-lived; inline, every idle connection's task
            // would carry its size for good.
            let dialing = Box::pin(async move {
                let _place = place;
                dial(endpoint, opts, rotate).await
            });
            let r = until_command(&self.shared, &mut wake, dialing).await;
            if r.is_some() {
                self.rotate = self.rotate.wrapping_add(1);
                debug!(attempt, "connect attempt made");
            }
            break r;
        };
        let now = crate::clock::now();
        if let (Some(h), Some(r)) = (&self.health, &result) {
            match r {
                Ok(_) => h.succeeded(),
                Err(_) => h.failed(self.shared.id, now),
            }
        }
        let io = match result {
            None => {
                self.check_command();
                return None;
            }
            Some(Err(err)) => {
                self.connect_failed(attempt, &err, now);
                return None;
            }
            Some(Ok(io)) => io,
        };
        self.lifecycle.connected(now);
        // A reconnect-now asked for while this attempt was made is spent.
        self.shared.take_kick();
        self.generation += 1;
        Some(Socket::new(self.shared.clone(), self.generation, io))
    }

    /// The attempt failed: counts it, asks `on_connect_failed` what next,
    /// and lets the life cycle schedule the next attempt (or close).
    fn connect_failed(&mut self, attempt: u32, err: &io::Error, now: std::time::Instant) {
        self.shared
            .counters
            .failed_attempts
            .fetch_add(1, Ordering::Relaxed);
        self.shared.record_failed_attempt(err);
        self.shared.info().set_last_error(&err);
        debug!(attempt, error = %err, "connect failed");
        let retry = match guarded("on_connect_failed", || {
            self.handler.on_connect_failed(err, attempt)
        }) {
            Ok(r) => r,
            Err(panicked) => {
                self.lifecycle.close(panicked.into());
                return;
            }
        };
        let mut retry_in = if crate::shared::reached_and_dropped(err) {
            self.lifecycle.connect_dropped(now)
        } else {
            self.lifecycle.connect_failed(now)
        };
        match retry {
            crate::Retry::GiveUp => {
                let (kind, error) = (err.kind(), err.to_string());
                let reason = CloseReason::Terminal {
                    attempt,
                    kind,
                    error,
                };
                self.lifecycle.close(reason);
                retry_in = None;
            }
            crate::Retry::After(d) => retry_in = self.lifecycle.delay_to(now, d),
            _ => {
                // The endpoint's probe looks more often than one schedule
                // (see `probe.rs`).
                let probe = match (&self.health, retry_in) {
                    (Some(h), Some(own)) => {
                        let schedule = &self.lifecycle.options().backoff;
                        h.probe_delay(self.shared.id, now, own, schedule)
                    }
                    _ => None,
                };
                if let Some(d) = probe {
                    retry_in = self.lifecycle.delay_to(now, d);
                }
            }
        }
        self.emit(EventKind::ConnectFailed {
            attempt,
            error: err.to_string(),
            retry_in,
            level: self.lifecycle.level(),
        });
    }
}

/// Awaits `fut` unless a command for the connection comes first (`None`),
/// watching for it with `wake` (renewed when it fires). `fut` is polled
/// first: its completion then costs no look at the wake-up, and a command
/// is still seen at once after.
async fn until_command<'a, F: std::future::Future>(
    shared: &'a Shared,
    wake: &mut Pin<&mut Notified<'a>>,
    fut: F,
) -> Option<F::Output> {
    tokio::pin!(fut);
    loop {
        tokio::select! {
            biased;
            r = &mut fut => return Some(r),
            _ = wake.as_mut() => {
                wake.set(shared.wake.notified());
                if shared.command().is_some() {
                    return None;
                }
            }
        }
    }
}
